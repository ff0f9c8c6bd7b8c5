/*
 * plugin.c: loads the plugins the configuration names and gives each its configuration.
 *
 * The plugins table says which folders and which files (plugin_files.c): each file is opened
 * and its descriptor checked (plugin_open.c) before any of its code runs. Then the sections that
 * configure plugins are read, each initialising its plugins: the validators' tables
 * (plugin_validators.c), the password table (plugin_password.c) and the storage table
 * (plugin_storage.c), each plugin reading its own table through its host table (host.c).
 * Plugins are loaded in the master, so their states are shared by every worker after fork.
 */
#include "autoconfig.h"

#include "plugin.h"

#include <dlfcn.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_private.h"

/* ---- the plugins table ---- */

static const struct config_key plugins_keys[] = {
    {"path", NULL, 0, 0, 0},
    {"load", NULL, 0, 0, 0},
    {NULL, NULL, 0, 0, 0},
};

static int add_plugin(struct loading *ld, const char *path)
{
	struct plugins *p = ld->p;
	struct plugin *grown = realloc(p->v, (p->n + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	p->v = grown;
	memset(&p->v[p->n], 0, sizeof(p->v[p->n]));
	p->n++;
	return plugin_open(ld, &p->v[p->n - 1], path);
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
	struct plugin_list files = {0};
	plugin_files(&ld, tbl, &files);
	for (size_t i = 0; i < files.n; i++)
		add_plugin(&ld, files.v[i]);
	plugin_list_free(&files);
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

void plugins_report(const struct plugins *p, FILE *out)
{
	for (size_t i = 0; p != NULL && i < p->n; i++) {
		const struct sesame_plugin_header *h = p->v[i].h;
		const struct plugin_kind *k = plugin_kinds;
		while (k->name != NULL && k->kind != h->kind)
			k++;
		fprintf(out, "sesamed: plugin %s (%s %s): %s\n", h->name, k->name ? k->name : "?",
			h->version ? h->version : "?", p->v[i].path);
	}
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
