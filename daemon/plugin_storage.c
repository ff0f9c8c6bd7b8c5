/*
 * plugin_storage.c: the storage table: the core's MariaDB pool (storage.mariadb), the
 * backend, the users table's names, whether to migrate, and the backend plugin's own table
 * (storage.NAME).
 */
#include "autoconfig.h"

#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_private.h"

/* The most rows sesame.db.query returns, whatever the statement. */
#define QUERY_ROWS_MAX 1000000

static const struct config_key storage_keys[] = {
    {"backend", NULL, 0, 0, 0},
    {"users", NULL, 0, 0, 0},
    {"migrate", NULL, 0, 0, 0},
    {"mariadb", NULL, 0, 0, 0},
    {"query_rows", config_size, 1, QUERY_ROWS_MAX, offsetof(struct plugins, query_rows)},
    {NULL, NULL, 0, 0, 0},
};
static const struct config_key users_keys[] = {
    {"table", NULL, 0, 0, 0},	 {"id", NULL, 0, 0, 0},	      {"email", NULL, 0, 0, 0},
    {"username", NULL, 0, 0, 0}, {"password", NULL, 0, 0, 0}, {NULL, NULL, 0, 0, 0},
};

static bool is_loaded_storage(const void *loading, const char *name)
{
	const struct loading *ld = loading;
	return plugin_find(ld->p, SESAME_PLUGIN_STORAGE, name) != NULL;
}

static bool identifier(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n <= 64 &&
	       strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") == n;
}

/* storage.users: the users table and its columns, each a plain SQL identifier. */
static void read_users(struct loading *ld, int storage)
{
	static const char *const defaults[] = {"users", "id", "email", "username", "password"};
	lua_State *L = ld->L;
	int tbl = 0;
	lua_pushliteral(L, "users");
	int t = lua_rawget(L, storage);
	if (t == LUA_TTABLE) {
		tbl = lua_gettop(L);
		plugin_check_keys(ld, tbl, "storage.users", users_keys, NULL);
	} else if (t != LUA_TNIL) {
		config_error_at(ld->errs, ld->file, ld->src, "storage.users", "expected a table");
	}
	for (int i = 0; i < 5; i++) {
		const char *name = defaults[i];
		char keypath[64];
		snprintf(keypath, sizeof(keypath), "storage.users.%s", users_keys[i].name);
		if (tbl != 0) {
			lua_pushstring(L, users_keys[i].name);
			if (lua_rawget(L, tbl) == LUA_TSTRING)
				name = lua_tostring(L, -1);
			else if (!lua_isnil(L, -1))
				config_error_at(ld->errs, ld->file, ld->src, keypath,
						"expected a name");
		}
		if (!identifier(name))
			config_error_at(ld->errs, ld->file, ld->src, keypath,
					"'%s' is not a plain name (letters, digits, _; at most 64)",
					name);
		ld->p->users_names[i] = strdup(name);
		if (tbl != 0)
			lua_pop(L, 1);
	}
	ld->p->users = (struct sesame_users_schema){.table = ld->p->users_names[0],
						    .id = ld->p->users_names[1],
						    .email = ld->p->users_names[2],
						    .username = ld->p->users_names[3],
						    .password = ld->p->users_names[4]};
	lua_pop(L, 1);
}

/* storage.mariadb.hosts, a list the host functions do not read: the pool's nodes. */
static void read_hosts(struct loading *ld, int sub)
{
	struct config_reader rd = {
	    .L = ld->L, .errs = ld->errs, .file = ld->file, .src = ld->src, .dir = ld->dir};
	if (sub != 0) {
		lua_pushliteral(ld->L, "hosts");
		lua_rawget(ld->L, sub);
	} else {
		lua_pushnil(ld->L);
	}
	dbpool_config_hosts(&ld->p->db, &rd, sub);
	lua_pop(ld->L, 1);
	if (ld->pool.nseen < MAX_SEEN)
		snprintf(ld->pool.seen[ld->pool.nseen++], sizeof(ld->pool.seen[0]), "hosts");
}

/*
 * The core's MariaDB pool is configured whenever there is a storage table: its settings are
 * storage.mariadb, every key with a default. It is offered to every plugin (host->mariadb),
 * so it is read before any plugin's init runs.
 */
void plugin_pool_read(struct loading *ld)
{
	lua_State *L = ld->L;
	lua_pushliteral(L, "storage");
	if (lua_rawget(L, ld->settings) != LUA_TTABLE) { /* plugin_storage_read says why */
		lua_pop(L, 1);
		return;
	}
	lua_pushliteral(L, "mariadb");
	int t = lua_rawget(L, -2), sub = t == LUA_TTABLE ? lua_gettop(L) : 0;
	if (t != LUA_TTABLE && t != LUA_TNIL)
		plugin_not_a_table(ld, "storage", "mariadb");
	host_init(&ld->pool_reader, ld->dir);
	ld->pool = host_config(ld, &ld->pool_reader, sub, "storage.mariadb");
	dbpool_config_read(&ld->p->db, &ld->pool_reader.host, &ld->pool);
	read_hosts(ld, sub);
	/* The pool keeps copies: the reader's strings, a password among them, go now. */
	host_free_strings(&ld->pool_reader);
	ld->pool.tbl = 0;
	ld->p->have_pool = true;
	for (size_t i = 0; i < ld->p->n; i++)
		ld->p->v[i].host.mariadb = dbpool_host_api();
	lua_pop(L, 2);
}

/*
 * A backend whose table is the pool's (storage.mariadb) reads it after the pool: the keys the
 * pool read count as read for the backend.
 */
static bool share_pool_table(struct loading *ld, struct sesame_config *cfg)
{
	if (!ld->p->have_pool || strcmp(cfg->path, ld->pool.path) != 0)
		return false;
	memcpy(cfg->seen, ld->pool.seen, sizeof(cfg->seen));
	cfg->nseen = ld->pool.nseen;
	return true;
}

/* Without a backend reading it too, the pool's table is checked for keys no one reads. */
static void check_pool_keys(struct loading *ld, int storage)
{
	if (!ld->p->have_pool)
		return;
	lua_pushliteral(ld->L, "mariadb");
	if (lua_rawget(ld->L, storage) == LUA_TTABLE) {
		struct sesame_config cfg = ld->pool;
		cfg.tbl = lua_gettop(ld->L);
		host_check_unread(ld, &cfg, "the MariaDB pool");
	}
	lua_pop(ld->L, 1);
}

/* Initialises the backend pl with its table, storage.NAME; true when that is the pool's. */
static bool read_backend(struct loading *ld, int storage, struct plugin *pl)
{
	lua_State *L = ld->L;
	char path[96];
	snprintf(path, sizeof(path), "storage.%s", pl->name);
	lua_pushstring(L, pl->name);
	int t = lua_rawget(L, storage), sub = t == LUA_TTABLE ? lua_gettop(L) : 0;
	struct sesame_config cfg = host_config(ld, pl, sub, path);
	bool shared = share_pool_table(ld, &cfg);
	if (t != LUA_TTABLE && t != LUA_TNIL && !shared)
		plugin_not_a_table(ld, "storage", pl->name);
	pl->host.users = &ld->p->users;
	if (host_run_init(ld, pl, &cfg) == 0)
		ld->p->storage = pl;
	lua_pop(L, 1);
	return shared;
}

void plugin_storage_read(struct loading *ld)
{
	lua_State *L = ld->L;
	if (plugin_push_section(ld, "storage") != LUA_TTABLE) {
		lua_pop(L, 1);
		return;
	}
	int tbl = lua_gettop(L);
	bool shared = false;
	plugin_check_keys(ld, tbl, "storage", storage_keys, is_loaded_storage);
	read_users(ld, tbl);
	struct config_reader rd = {.L = L,
				   .errs = ld->errs,
				   .file = ld->file,
				   .src = ld->src,
				   .dir = ld->dir,
				   .base = ld->p};
	ld->p->query_rows = 1000;
	config_table_read_keys(&rd, tbl, "storage", storage_keys);
	ld->p->migrate = true;
	lua_pushliteral(L, "migrate");
	if (lua_rawget(L, tbl) == LUA_TBOOLEAN)
		ld->p->migrate = lua_toboolean(L, -1);
	else if (!lua_isnil(L, -1))
		config_error_at(ld->errs, ld->file, ld->src, "storage.migrate",
				"expected true or false");
	lua_pop(L, 1);

	lua_pushliteral(L, "backend");
	const char *backend = lua_rawget(L, tbl) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
	struct plugin *pl =
	    backend != NULL ? plugin_find(ld->p, SESAME_PLUGIN_STORAGE, backend) : NULL;
	if (backend == NULL)
		config_error_at(ld->errs, ld->file, ld->src, "storage.backend",
				"the storage backend is needed, as a name (\"mariadb\")");
	else if (pl == NULL)
		config_error_at(ld->errs, ld->file, ld->src, "storage.backend",
				"'%s' is not a loaded storage plugin", backend);
	if (pl != NULL)
		shared = read_backend(ld, tbl, pl);
	if (!shared)
		check_pool_keys(ld, tbl);
	lua_pop(L, 2);
}

size_t plugins_query_rows(const struct plugins *p)
{
	return p != NULL ? p->query_rows : 0;
}

bool plugins_storage(const struct plugins *p, struct storage *out)
{
	if (p == NULL || p->storage == NULL)
		return false;
	out->fn = (const struct sesame_storage *)p->storage->h;
	out->state = p->storage->state;
	return true;
}
