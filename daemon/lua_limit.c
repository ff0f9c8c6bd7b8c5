/*
 * lua_limit.c: sesame.limit(rule, key), the node's rate limits for route scripts.
 *
 * rule names a rule of the `limits` table (the shipped register and login, or the
 * operator's own); key is what is counted, usually req.remote_addr. It answers on the event
 * loop, without waiting: the counters are in memory shared by the node's workers (ratelimit.c).
 * A key that is an IPv6 address counts for its whole /64. A refusal is a rate_limited event,
 * which names the key as an address, or as an account when it is anything else.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <string.h>

#include "clock.h"
#include "ratelimit.h"
#include "lua_private.h"
#include "metrics.h"

void luaapi_rate_limited(lua_State *L, const char *rule, const char *key)
{
	unsigned char addr[sizeof(struct in6_addr)];
	bool address = inet_pton(AF_INET, key, addr) == 1 || inet_pton(AF_INET6, key, addr) == 1;
	metrics_rate_limited(rule);
	json_t *ev = luaapi_event_new(L, "rate_limited");
	if (ev == NULL)
		return;
	json_object_set_new(ev, "rule", json_string(rule));
	json_object_set_new(ev, address ? "address" : "account", json_string(key));
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
