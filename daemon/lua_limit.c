/*
 * lua_limit.c: sesame.limit(rule, key), the node's rate limits for route scripts.
 *
 * rule names a rule of the `limits` table (the shipped register and login, or the
 * operator's own); key is what is counted, usually req.remote_addr. It answers on the event
 * loop, without waiting: the counters are in memory shared by the node's workers (ratelimit.c).
 * A key that is an IPv6 address counts for its whole /64.
 */
#include "autoconfig.h"

#include <string.h>

#include "clock.h"
#include "ratelimit.h"
#include "lua_private.h"
#include "metrics.h"

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
		metrics_rate_limited(name);
	lua_pushboolean(L, allowed);
	lua_pushinteger(L, allowed ? 0 : (lua_Integer)((retry_ms + 999) / 1000));
	return 2;
}

void luaapi_limit_inject(lua_State *L)
{
	lua_pushcfunction(L, l_limit);
	lua_setfield(L, -2, "limit");
}
