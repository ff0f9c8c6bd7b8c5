/*
 * lua_guard.c: xpcall and setmetatable for states whose instruction budget a count hook keeps
 * (the route scripts' and the configuration's).
 *
 * Lua runs two kinds of script code with its hooks off, where no count hook sees a loop: a
 * __gc finalizer, and the message handler of an error raised from inside a hook (the budget's
 * own error, when the budget runs out where the script cannot be stopped with a yield). A loop
 * there would hang the process. The finalizer is refused where it is declared (Lua marks an
 * object for finalization only when setmetatable gives it a metatable with __gc); the message
 * handler is skipped for the hook's error, which goes on as it is, and runs for every other
 * error with the hooks on.
 */
#include "autoconfig.h"

#include "lua_guard.h"

#include <lauxlib.h>
#include <string.h>

/*
 * The message handler xpcall installs: the script's (the upvalue), except when the error was
 * raised from inside a hook. Lua then calls the handler as the hook's callee (namewhat "hook"),
 * with the hooks off.
 */
static int handler(lua_State *L)
{
	lua_Debug ar;
	if (lua_getstack(L, 0, &ar) && lua_getinfo(L, "n", &ar) && ar.namewhat != NULL &&
	    strcmp(ar.namewhat, "hook") == 0)
		return 1;
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

/* xpcall's results: true and the function's (from index base + 1), or false and the error. */
static int results(lua_State *L, int status, lua_KContext base)
{
	if (status == LUA_OK || status == LUA_YIELD)
		return lua_gettop(L) - (int)base;
	lua_pushboolean(L, 0);
	lua_insert(L, -2);
	return 2;
}

/* xpcall(f, msgh, ...), with msgh behind handler. f may yield: results finishes then. */
static int l_xpcall(lua_State *L)
{
	int nargs = lua_gettop(L) - 2;
	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 2);
	lua_pushcclosure(L, handler, 1);
	lua_replace(L, 2);
	/* 1 f, 2 handler, then: 3 true (the first result if all goes well), 4 f, its arguments. */
	lua_pushboolean(L, 1);
	lua_pushvalue(L, 1);
	lua_rotate(L, 3, 2);
	return results(L, lua_pcallk(L, nargs, LUA_MULTRET, 2, 2, results), 2);
}

/* setmetatable(t, mt), refusing an mt with a __gc field (false too: its object is marked). */
static int l_setmetatable(lua_State *L)
{
	int type = lua_type(L, 2);
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_argexpected(L, type == LUA_TNIL || type == LUA_TTABLE, 2, "nil or table");
	if (type == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "setmetatable: no __gc finalizers here (Lua would run them "
					     "outside the instruction budget): close what must be "
					     "closed with a to-be-closed variable");
		lua_pop(L, 1);
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		return luaL_error(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return 1;
}

void lua_guard_open(lua_State *L)
{
	lua_pushcfunction(L, l_xpcall);
	lua_setglobal(L, "xpcall");
	lua_pushcfunction(L, l_setmetatable);
	lua_setglobal(L, "setmetatable");
}
