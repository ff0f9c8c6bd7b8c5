/*
 * lua_accounts.c: sesame.accounts, the accounts settings as the route scripts read them.
 *
 * The account flows are Lua (etc/sesame/routes/accounts.lua): they ask whether log-in needs a
 * confirmed address, where the mails' links point and how long each flow's token lives. The
 * settings come from the configuration the worker runs; the table a script sees is an empty
 * proxy whose __index holds them and whose __newindex refuses: a script cannot change a
 * setting for the scripts that run after it.
 */
#include "autoconfig.h"

#include "lua_private.h"

static int l_refuse(lua_State *L)
{
	return luaL_error(L, "sesame.accounts is read-only: change the accounts table in the "
			     "configuration");
}

static void push_settings(lua_State *L, const struct config_accounts *a)
{
	lua_createtable(L, 0, 7);
	lua_pushboolean(L, a->require_verified);
	lua_setfield(L, -2, "require_verified");
	lua_pushboolean(L, a->conceal_existing);
	lua_setfield(L, -2, "conceal_existing");
	lua_pushstring(L, a->link_base);
	lua_setfield(L, -2, "link_base");
	lua_pushinteger(L, a->verify_ttl);
	lua_setfield(L, -2, "verify_ttl");
	lua_pushinteger(L, a->reset_ttl);
	lua_setfield(L, -2, "reset_ttl");
	lua_pushinteger(L, a->email_ttl);
	lua_setfield(L, -2, "email_ttl");
	lua_pushstring(L, a->mail_dir);
	lua_setfield(L, -2, "mail_dir");
}

void luaapi_accounts_inject(lua_State *L)
{
	lua_newtable(L); /* the proxy */
	lua_createtable(L, 0, 3);
	push_settings(L, &luaapi_get(L)->cfg->accounts);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, l_refuse);
	lua_setfield(L, -2, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
	lua_setfield(L, -2, "accounts");
}
