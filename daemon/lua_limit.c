/*
 * lua_limit.c: sesame.limit(rule, key), the node's rate limits for route scripts.
 *
 * rule names a rule of the `limits` table (the shipped register and login, or the
 * operator's own); key is what is counted, usually req.remote_addr. It answers on the event
 * loop, without waiting: the counters are in memory shared by the node's workers (ratelimit.c).
 * A key that is an IPv6 address counts for its whole /64. A refusal is a rate_limited event,
 * which names the key as an address, or as an account when it is anything else. So that a
 * flood of refusals cannot flood the audit log, storage and the handlers in turn, a worker
 * emits at most one per rule per second: the refusals in between are folded, counted in
 * sesame_events_total and sesame_rate_limited_total, and the rule's next event carries their
 * number (suppressed).
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <string.h>

#include "clock.h"
#include "ratelimit.h"
#include "lua_private.h"
#include "metrics.h"

#define FOLD_MS 1000 /* a rule's rate_limited events are at least this far apart, per worker */

/* A rule's last rate_limited event, and the refusals folded since. */
struct fold {
	uint64_t emitted_ms; /* 0: none yet */
	unsigned long suppressed;
};

/* Registry key: the worker's folds, a userdata array, one per rule of the limits table. */
static const char folds_key;

/* rule's fold, made on first use; NULL for a rule not in the limits table, or no memory. */
static struct fold *fold_of(lua_State *L, const char *rule)
{
	const struct ratelimit_rules *rules = &luaapi_get(L)->cfg->limits;
	const struct ratelimit_rule *r = ratelimit_rules_find(rules, rule);
	if (r == NULL)
		return NULL;
	struct fold *folds = NULL;
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &folds_key) == LUA_TUSERDATA)
		folds = lua_touserdata(L, -1);
	lua_pop(L, 1);
	if (folds == NULL && lua_checkstack(L, 1)) {
		folds = lua_newuserdatauv(L, rules->n * sizeof(*folds), 0);
		memset(folds, 0, rules->n * sizeof(*folds));
		lua_rawsetp(L, LUA_REGISTRYINDEX, &folds_key);
	}
	return folds != NULL ? &folds[r - rules->v] : NULL;
}

void luaapi_rate_limited(lua_State *L, const char *rule, const char *key)
{
	unsigned char addr[sizeof(struct in6_addr)];
	bool address = inet_pton(AF_INET, key, addr) == 1 || inet_pton(AF_INET6, key, addr) == 1;
	uint64_t now = clock_mono_ms();
	struct fold *f = fold_of(L, rule);
	metrics_rate_limited(rule);
	if (f != NULL && f->emitted_ms != 0 && now - f->emitted_ms < FOLD_MS) {
		f->suppressed++;
		metrics_event("rate_limited");
		return;
	}
	json_t *ev = luaapi_event_new(L, "rate_limited");
	if (ev == NULL)
		return;
	json_object_set_new(ev, "rule", json_string(rule));
	json_object_set_new(ev, address ? "address" : "account", json_string(key));
	if (f != NULL && f->suppressed > 0)
		json_object_set_new(ev, "suppressed", json_integer((json_int_t)f->suppressed));
	if (f != NULL)
		*f = (struct fold){.emitted_ms = now};
	luaapi_event_emit(L, ev);
}

/* sesame.limit(rule, key) -> allowed, retry_after (whole seconds, at least 1; 0 if allowed) */
static int l_limit(lua_State *L)
{
	struct luaapi *api = luaapi_get(L);
	const char *name = luaL_checkstring(L, 1);
	size_t keylen;
	const char *key = luaL_checklstring(L, 2, &keylen);
	const struct ratelimit_rule *rule = ratelimit_rules_find(&api->cfg->limits, name);
	if (rule == NULL)
		return luaL_error(L, "sesame.limit: no rule '%s' in the limits table", name);
	char normal[RATELIMIT_KEY_MAX];
	const char *counted = ratelimit_address_key(key, normal, sizeof(normal));
	if (counted != key)
		keylen = strlen(counted);
	uint64_t retry_ms;
	bool allowed =
	    ratelimit_take(ratelimit_shared(), rule, counted, keylen, clock_mono_ms(), &retry_ms);
	if (!allowed)
		luaapi_rate_limited(L, name, key);
	lua_pushboolean(L, allowed);
	lua_pushinteger(L, allowed ? 0 : (lua_Integer)((retry_ms + 999) / 1000));
	return 2;
}

void luaapi_limit_inject(lua_State *L)
{
	lua_pushcfunction(L, l_limit);
	lua_setfield(L, -2, "limit");
}
