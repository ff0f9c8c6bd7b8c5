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

#include <stddef.h>

#include "lua_private.h"

static int l_refuse(lua_State *L)
{
	return luaL_error(L, "sesame.accounts is read-only: change the accounts table in the "
			     "configuration");
}

#define ACCOUNTS(field) offsetof(struct config_accounts, field)

/* The settings a script sees, each a field of struct config_accounts. */
static const struct setting {
	const char *name;
	char type; /* 'b' bool, 's' char *, 'l' long */
	size_t where;
} settings[] = {
    {"require_verified", 'b', ACCOUNTS(require_verified)},
    {"conceal_existing", 'b', ACCOUNTS(conceal_existing)},
    {"link_base", 's', ACCOUNTS(link_base)},
    {"verify_ttl", 'l', ACCOUNTS(verify_ttl)},
    {"reset_ttl", 'l', ACCOUNTS(reset_ttl)},
    {"email_ttl", 'l', ACCOUNTS(email_ttl)},
    {"mail_dir", 's', ACCOUNTS(mail_dir)},
};

static void push_settings(lua_State *L, const struct config_accounts *a)
{
	size_t n = sizeof(settings) / sizeof(settings[0]);
	lua_createtable(L, 0, (int)n);
	for (size_t i = 0; i < n; i++) {
		const void *field = (const char *)a + settings[i].where;
		if (settings[i].type == 'b')
			lua_pushboolean(L, *(const bool *)field);
		else if (settings[i].type == 'l')
			lua_pushinteger(L, *(const long *)field);
		else
			lua_pushstring(L, *(char *const *)field);
		lua_setfield(L, -2, settings[i].name);
	}
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
