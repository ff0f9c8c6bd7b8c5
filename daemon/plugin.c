/*
 * plugin.c: loads the plugins the configuration names and gives each its configuration.
 *
 * The plugins table says which folder and which files: each file is opened and its
 * descriptor checked (plugin_open.c) before any of its code runs. Then the sections that
 * configure plugins are read, each initialising its plugins: the validators' tables
 * (plugin_validators.c), the password table (plugin_password.c) and the storage table
 * (plugin_storage.c), each plugin reading its own table through its host table (host.c).
 * Plugins are loaded in the master, so their states are shared by every worker after fork.
 */
#include "autoconfig.h"

#include "plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <glob.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"
#include "plugin_private.h"

#define DEFAULT_DIR PKGLIBDIR "/plugins"

/* ---- the plugins table ---- */

static const struct config_key plugins_keys[] = {
    {"path", NULL, 0, 0, 0},
    {"load", NULL, 0, 0, 0},
    {NULL, NULL, 0, 0, 0},
};

static char *plugin_dir(struct loading *ld, int tbl, bool *given)
{
	const char *dir = DEFAULT_DIR;
	*given = false;
	if (tbl != 0) {
		lua_pushliteral(ld->L, "path");
		int t = lua_rawget(ld->L, tbl);
		if (t == LUA_TSTRING) {
			dir = lua_tostring(ld->L, -1);
			*given = true;
		} else if (t != LUA_TNIL) {
			config_error_at(ld->errs, ld->file, ld->src, "plugins.path",
					"expected a folder path");
		}
	}
	char *out = file_resolve(ld->dir, dir);
	if (tbl != 0)
		lua_pop(ld->L, 1);
	return out;
}

static int add_plugin(struct loading *ld, const char *path)
{
	struct plugins *p = ld->p;
	struct plugin *grown = realloc(p->v, (p->n + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	p->v = grown;
	memset(&p->v[p->n], 0, sizeof(p->v[p->n]));
	p->n++;
	if (plugin_open(ld, &p->v[p->n - 1], path) != 0)
		return -1;
	for (size_t i = 0; i + 1 < p->n; i++) {
		if (strcmp(p->v[i].name, p->v[p->n - 1].name) == 0) {
			config_errors_add(ld->errs,
					  "plugin %s: a plugin named %s is loaded already", path,
					  p->v[i].name);
			return -1;
		}
	}
	return 0;
}

/* plugins.load names plugins in the folder; without it, every NAME.so there is loaded. */
static void load_files(struct loading *ld, int tbl, const char *dir, bool dir_given)
{
	lua_State *L = ld->L;
	int t = LUA_TNIL;
	if (tbl != 0) {
		lua_pushliteral(L, "load");
		t = lua_rawget(L, tbl);
	} else {
		lua_pushnil(L);
	}
	if (t == LUA_TTABLE) {
		size_t n = lua_rawlen(L, -1);
		for (size_t i = 1; i <= n; i++) {
			lua_rawgeti(L, -1, (lua_Integer)i);
			const char *name = lua_tostring(L, -1);
			char path[4200];
			if (lua_type(L, -1) != LUA_TSTRING || strchr(name, '/') != NULL) {
				config_error_at(ld->errs, ld->file, ld->src, "plugins.load",
						"item %zu: expected a plugin name", i);
			} else {
				snprintf(path, sizeof(path), "%s/%s.so", dir, name);
				add_plugin(ld, path);
			}
			lua_pop(L, 1);
		}
	} else if (t != LUA_TNIL) {
		config_error_at(ld->errs, ld->file, ld->src, "plugins.load",
				"expected a list of plugin names");
	} else {
		struct stat st;
		char pattern[4200];
		glob_t g;
		snprintf(pattern, sizeof(pattern), "%s/*.so", dir);
		if (stat(dir, &st) != 0 && dir_given)
			config_error_at(ld->errs, ld->file, ld->src, "plugins.path", "%s: %s", dir,
					strerror(errno));
		else if (glob(pattern, 0, NULL, &g) == 0) {
			for (size_t i = 0; i < g.gl_pathc; i++)
				add_plugin(ld, g.gl_pathv[i]);
			globfree(&g);
		}
	}
	lua_pop(L, 1);
}

struct plugins *plugins_load(const char *file, const char *dir, const char *src, lua_State *L,
			     int settings, struct config_errors *errs)
{
	size_t before = errs->n;
	struct loading ld = {.file = file,
			     .dir = dir,
			     .src = src,
			     .L = L,
			     .settings = lua_absindex(L, settings),
			     .errs = errs,
			     .p = calloc(1, sizeof(struct plugins))};
	if (ld.p == NULL)
		return NULL;
	int t = plugin_push_section(&ld, "plugins");
	int tbl = t == LUA_TTABLE ? lua_gettop(L) : 0;
	if (tbl != 0)
		plugin_check_keys(&ld, tbl, "plugins", plugins_keys, NULL);
	bool given;
	char *pdir = plugin_dir(&ld, tbl, &given);
	if (pdir != NULL)
		load_files(&ld, tbl, pdir, given);
	free(pdir);
	lua_pop(L, 1);
	if (errs->n == before) {
		plugin_pool_read(&ld);
		/* A plugin may borrow a connection in init: the master has a pool while they run.
		 */
		if (dbpool_start(plugins_pool(ld.p)) != 0)
			config_errors_add(errs, "storage.mariadb: out of memory");
		plugin_validators_read(&ld);
		plugin_password_read(&ld);
		plugin_storage_read(&ld);
		dbpool_stop();
	}
	if (errs->n > before) {
		plugins_free(ld.p);
		return NULL;
	}
	return ld.p;
}

void plugins_free(struct plugins *p)
{
	if (p == NULL)
		return;
	for (size_t i = p->n; i-- > 0;) {
		struct plugin *pl = &p->v[i];
		if (pl->inited)
			plugin_common(pl)->fini(pl->state);
		host_free_strings(pl);
		if (pl->handle != NULL)
			dlclose(pl->handle);
		free((void *)pl->h);
		free(pl->path);
		free(pl->name);
	}
	free(p->v);
	free(p->accept);
	free(p->dummy);
	for (int i = 0; i < 5; i++)
		free(p->users_names[i]);
	dbpool_config_clear(&p->db);
	free(p);
}

const struct hasher *plugins_scheme(const struct plugins *p)
{
	return p != NULL && p->scheme.fn != NULL ? &p->scheme : NULL;
}

const struct hasher *plugins_identify(const struct plugins *p, const char *stored)
{
	for (size_t i = 0; p != NULL && i < p->naccept; i++) {
		if (p->accept[i].fn->identify(p->accept[i].state, stored))
			return &p->accept[i];
	}
	return NULL;
}

const struct dbpool_config *plugins_pool(const struct plugins *p)
{
	return p != NULL && p->have_pool ? &p->db : NULL;
}

bool plugins_wants_migration(const struct plugins *p)
{
	return p != NULL && p->storage != NULL;
}

bool plugins_applies_migrations(const struct plugins *p)
{
	return p != NULL && p->migrate;
}

int plugins_migrate(struct plugins *p, bool always, char *err, size_t errlen)
{
	struct storage st;
	if (!plugins_storage(p, &st))
		return 0;
	return st.fn->migrate(st.state, p->migrate || always, err, errlen);
}

int plugins_worker_start(struct plugins *p)
{
	struct storage st;
	if (!plugins_storage(p, &st))
		return 0;
	return st.fn->worker_start(st.state);
}

void plugins_worker_stop(struct plugins *p)
{
	struct storage st;
	if (!plugins_storage(p, &st))
		return;
	st.fn->worker_stop(st.state);
}

const char *plugins_dummy_hash(const struct plugins *p)
{
	return p != NULL ? p->dummy : NULL;
}
