/*
 * lua_metrics.c: sesame.metrics.count(name, value), the route scripts' share of GET /metrics.
 *
 * Some outcomes are decided in Lua alone: whether a log-in succeeded, was refused, locked out
 * or malformed is the route script's knowledge. A script counts them in counters that the core
 * declares (metrics.c), with label values from a fixed list, so that a script can neither add
 * series nor grow the metrics without bound: an undeclared name or value is an error.
 */
#include "autoconfig.h"

#include "lua_private.h"
#include "metrics.h"

/* sesame.metrics.count(name, value): adds one to counter name's series for value. */
static int l_count(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const char *value = luaL_checkstring(L, 2);
	if (metrics_count(name, value) == 0)
		return 0;
	const char *values = metrics_count_values(name);
	if (values == NULL)
		return luaL_error(L, "sesame.metrics.count: no counter '%s' (there is: logins)",
				  name);
	return luaL_error(L, "sesame.metrics.count: %s has no value '%s' (it has: %s)", name, value,
			  values);
}

void luaapi_metrics_inject(lua_State *L)
{
	static const luaL_Reg funcs[] = {{"count", l_count}, {NULL, NULL}};
	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "metrics");
}
