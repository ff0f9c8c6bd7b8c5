/*
 * plugin_section.c: what every reader of a section that configures plugins needs: the
 * section's table, its keys checked against the names it knows, and the loaded plugins found
 * by kind and name. Below the readers (plugin_*.c, host.c) and plugin.c, and calling none of
 * them.
 */
#include "autoconfig.h"

#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <string.h>

#include "plugin_private.h"

/* Pushes settings[name] when it is a table, else nil (reporting a wrong type). */
int plugin_push_section(struct loading *ld, const char *name)
{
	lua_pushstring(ld->L, name);
	int t = lua_rawget(ld->L, ld->settings);
	if (t != LUA_TNIL && t != LUA_TTABLE) {
		config_error_at(ld->errs, ld->file, ld->src, name, "expected a table, found %s",
				luaL_typename(ld->L, -1));
		lua_pop(ld->L, 1);
		lua_pushnil(ld->L);
		return LUA_TNIL;
	}
	return t;
}

/* Reports every key of the table at idx that is neither in keys nor accepted by extra(ld). */
void plugin_check_keys(struct loading *ld, int idx, const char *section,
		       const struct config_key *keys, config_known *extra)
{
	struct config_reader rd = {
	    .L = ld->L, .errs = ld->errs, .file = ld->file, .src = ld->src, .dir = ld->dir};
	config_table_check(&rd, idx, section, keys, extra, ld);
}

/* A plugin's configuration is a table: anything else would be ignored without a word. */
void plugin_not_a_table(struct loading *ld, const char *section, const char *name)
{
	char keypath[160];
	snprintf(keypath, sizeof(keypath), "%s.%s", section, name);
	config_error_at(ld->errs, ld->file, ld->src, keypath, "expected a table, found %s",
			luaL_typename(ld->L, -1));
}

const struct common *plugin_common(const struct plugin *pl)
{
	return (const struct common *)pl->h;
}

struct plugin *plugin_find(struct plugins *p, uint32_t kind, const char *name)
{
	for (size_t i = 0; i < p->n; i++) {
		if (p->v[i].h->kind == kind && strcmp(p->v[i].name, name) == 0)
			return &p->v[i];
	}
	return NULL;
}
