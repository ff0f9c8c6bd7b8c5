/*
 * plugin_password.c: the password table: each hasher plugin's own table (password.NAME), the
 * scheme new hashes are made with and the schemes accepted when verifying.
 *
 * Once the scheme is known, a hash of a random password is made with it: a log-in for an
 * unknown e-mail verifies against that hash, and costs as much as one with a wrong password.
 */
#include "autoconfig.h"

#include <lauxlib.h>
#include <lua.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"
#include "plugin_private.h"

static bool is_loaded_hasher(const void *loading, const char *name)
{
	const struct loading *ld = loading;
	for (size_t i = 0; i < ld->p->n; i++) {
		if (ld->p->v[i].h->kind == SESAME_PLUGIN_HASHER &&
		    strcmp(ld->p->v[i].name, name) == 0)
			return true;
	}
	return false;
}

const struct config_key plugin_password_keys[] = {
    {"scheme", NULL, 0, 0, 0},
    {"accept", NULL, 0, 0, 0},
    {NULL, NULL, 0, 0, 0},
};

static int init_plugin(struct loading *ld, struct plugin *pl, int tbl, const char *path)
{
	struct sesame_config cfg = host_config(ld, pl, tbl, path);
	return host_run_init(ld, pl, &cfg);
}

static int add_accepted(struct loading *ld, const char *name, const char *where)
{
	struct plugin *pl = plugin_find(ld->p, SESAME_PLUGIN_HASHER, name);
	if (pl == NULL) {
		config_error_at(ld->errs, ld->file, ld->src, where,
				"'%s' is not a loaded hasher plugin", name);
		return -1;
	}
	struct hasher *grown = realloc(ld->p->accept, (ld->p->naccept + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	ld->p->accept = grown;
	ld->p->accept[ld->p->naccept++] =
	    (struct hasher){.fn = (const void *)pl->h, .state = pl->state, .name = pl->name};
	return 0;
}

/*
 * A hash of a random password, made with the scheme and its settings: a log-in for an
 * unknown e-mail verifies against it, and takes as long as one with a wrong password.
 */
static void make_dummy(struct loading *ld)
{
	unsigned char rnd[16];
	char password[33];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(password, sizeof(password), rnd, sizeof(rnd));
	ld->p->dummy = malloc(512);
	if (ld->p->dummy == NULL ||
	    ld->p->scheme.fn->hash(ld->p->scheme.state, password, 32, ld->p->dummy, 512) != 0)
		config_errors_add(ld->errs, "plugin %s: cannot hash a password",
				  ld->p->scheme.name);
}

void plugin_password_read(struct loading *ld)
{
	lua_State *L = ld->L;
	int t = plugin_push_section(ld, "password");
	int tbl = t == LUA_TTABLE ? lua_gettop(L) : 0;
	char path[96];

	for (size_t i = 0; i < ld->p->n; i++) {
		struct plugin *pl = &ld->p->v[i];
		if (pl->h->kind != SESAME_PLUGIN_HASHER)
			continue;
		int sub = 0;
		if (tbl != 0) {
			lua_pushstring(L, pl->name);
			int kind = lua_rawget(L, tbl);
			if (kind == LUA_TTABLE)
				sub = lua_gettop(L);
			else if (kind != LUA_TNIL)
				plugin_not_a_table(ld, "password", pl->name);
		}
		snprintf(path, sizeof(path), "password.%s", pl->name);
		init_plugin(ld, pl, sub, path);
		if (tbl != 0)
			lua_pop(L, 1);
	}
	/* The password validator, when loaded, checks these keys: they are listed here. */
	for (const struct config_key *k = plugin_password_keys;
	     config_keys_recording() && k->name != NULL; k++)
		config_keys_note("password", k->name, NULL, NULL, NULL);
	if (tbl != 0)
		if (plugin_find(ld->p, SESAME_PLUGIN_VALIDATOR, "password") == NULL)
			plugin_check_keys(ld, tbl, "password", plugin_password_keys,
					  is_loaded_hasher);

	bool any = false;
	for (size_t i = 0; i < ld->p->n && !any; i++)
		any = ld->p->v[i].h->kind == SESAME_PLUGIN_HASHER;
	const char *scheme = "argon2id";
	if (tbl != 0) {
		lua_pushliteral(L, "scheme");
		if (lua_rawget(L, tbl) == LUA_TSTRING)
			scheme = lua_tostring(L, -1);
		else if (!lua_isnil(L, -1))
			config_error_at(ld->errs, ld->file, ld->src, "password.scheme",
					"expected a hasher name");
		lua_pushliteral(L, "accept");
		int at = lua_rawget(L, tbl);
		if (at == LUA_TTABLE) {
			for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
				lua_rawgeti(L, -1, i);
				if (lua_type(L, -1) == LUA_TSTRING)
					add_accepted(ld, lua_tostring(L, -1), "password.accept");
				else
					config_error_at(
					    ld->errs, ld->file, ld->src, "password.accept",
					    "item %lld: expected a hasher name", (long long)i);
				lua_pop(L, 1);
			}
		} else if (at != LUA_TNIL) {
			config_error_at(ld->errs, ld->file, ld->src, "password.accept",
					"expected a list of hasher names");
		}
		lua_pop(L, 1);
	}
	if (ld->p->naccept == 0) {
		for (size_t i = 0; i < ld->p->n; i++) {
			if (ld->p->v[i].h->kind == SESAME_PLUGIN_HASHER)
				add_accepted(ld, ld->p->v[i].name, "password.accept");
		}
	}
	if (any || tbl != 0) {
		struct plugin *pl = plugin_find(ld->p, SESAME_PLUGIN_HASHER, scheme);
		bool accepted = false;
		for (size_t i = 0; i < ld->p->naccept && !accepted; i++)
			accepted = strcmp(ld->p->accept[i].name, scheme) == 0;
		if (pl == NULL)
			config_error_at(ld->errs, ld->file, ld->src, "password.scheme",
					"'%s' is not a loaded hasher plugin", scheme);
		else if (!accepted)
			config_error_at(ld->errs, ld->file, ld->src, "password.scheme",
					"'%s' must be in password.accept too", scheme);
		else if (pl->inited) { /* else its init failed, and said why */
			ld->p->scheme = (struct hasher){
			    .fn = (const void *)pl->h, .state = pl->state, .name = pl->name};
			make_dummy(ld);
		}
	}
	if (tbl != 0)
		lua_pop(L, 1);
	lua_pop(L, 1);
}
