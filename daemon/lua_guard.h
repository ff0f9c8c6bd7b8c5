/* lua_guard.h: base functions that cannot run a script's Lua with the hooks off. */
#ifndef SESAME_LUA_GUARD_H
#define SESAME_LUA_GUARD_H

#include <lua.h>

/*
 * Replaces the globals xpcall and setmetatable of L (its base library open) with ones that run
 * no Lua of the script's where Lua turns the hooks off, out of reach of an instruction budget
 * kept by a count hook: setmetatable refuses a metatable with a __gc field (a finalizer runs
 * with the hooks off whenever the collector comes round to it), and xpcall does not run its
 * message handler for an error raised from a hook (Lua would run it with the hooks off).
 */
void lua_guard_open(lua_State *L);

#endif
