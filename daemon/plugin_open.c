/*
 * plugin.c: loads plugins with dlopen, checks their descriptors, and initialises them.
 *
 * Nothing in a plugin runs before its descriptor has passed every check: the exported
 * symbol's size (from the ELF symbol table, so a truncated descriptor is caught before it is
 * read), the magic, the ABI major and minor, the kind and its table size, the name against
 * the file name, and the functions the kind requires. A plugin that fails any of them is
 * refused with a message naming the file, what it was built for and what is needed.
 *
 * Each plugin then gets its own struct sesame_host (so that its log lines carry its name) and
 * its configuration table: password.NAME for a hasher. The host records which keys the plugin
 * reads; any other key in its table is reported as unknown, with its line. Plugins are loaded
 * in the master, so their states are shared by every worker after fork.
 */
#include "autoconfig.h"

#include "plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <glob.h>
#include <lauxlib.h>
#include <link.h>
#include <lua.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dbpool.h"
#include "log.h"

#define DEFAULT_DIR PKGLIBDIR "/plugins"
#define MAX_SEEN    64

struct plugin {
	struct sesame_host host; /* first: the host pointer a plugin gets leads back here */
	char *path;
	char *name;
	void *handle;
	const struct sesame_plugin_header *h;
	void *state;
	bool inited;
	char **strings; /* configuration strings handed to the plugin, kept until fini */
	size_t nstrings;
};

struct plugins {
	struct plugin *v;
	size_t n;
	struct hasher *accept; /* password.accept, in order */
	size_t naccept;
	struct hasher scheme;
	char *dummy; /* a hash no one knows the password of */
	/* storage */
	struct plugin *storage; /* the backend, NULL when storage is not configured */
	struct sesame_users_schema users;
	char *users_names[5];
	bool migrate;
	bool have_pool;
	struct dbpool_config db;
	struct dbpool *pool; /* in a worker, or the master while it migrates */
};

struct sesame_config {
	struct plugin *owner;
	lua_State *L;
	int tbl; /* absolute index of the table, 0 when the table is absent */
	char path[128];
	char seen[MAX_SEEN][64]; /* copies: a plugin's key may live on its own stack */
	size_t nseen;
	const char *file, *src;
	struct config_errors *errs;
	bool failed;
};

/* What loading needs at hand. */
struct loading {
	const char *file, *dir, *src;
	lua_State *L;
	int settings;
	struct config_errors *errs;
	struct plugins *p;
};

/* ---- host functions ---- */

static void host_log(const struct sesame_host *host, enum sesame_log_level level, const char *fmt,
		     ...)
{
	const struct plugin *pl = (const struct plugin *)host;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if ((int)level < SESAME_LOG_ERROR)
		level = SESAME_LOG_ERROR;
	if (level > SESAME_LOG_DEBUG)
		level = SESAME_LOG_DEBUG;
	log_msg((enum log_level)level, "plugin %s: %s", pl->name, msg);
}

static void config_error(struct sesame_config *cfg, const char *key, const char *fmt, ...)
{
	char keypath[192], msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(keypath, sizeof(keypath), "%s.%s", cfg->path, key);
	config_error_at(cfg->errs, cfg->file, cfg->src, keypath, "%s", msg);
	cfg->failed = true;
}

/* Pushes cfg[key] (raw: a configuration's metamethods are not run) and notes the key read. */
static int get_key(struct sesame_config *cfg, const char *key)
{
	if (cfg->nseen < MAX_SEEN)
		snprintf(cfg->seen[cfg->nseen++], sizeof(cfg->seen[0]), "%s", key);
	if (cfg->tbl == 0) {
		lua_pushnil(cfg->L);
		return LUA_TNIL;
	}
	lua_pushstring(cfg->L, key);
	return lua_rawget(cfg->L, cfg->tbl);
}

static enum sesame_config_result config_string(struct sesame_config *cfg, const char *key,
					       const char **out)
{
	int t = get_key(cfg, key);
	enum sesame_config_result rc = SESAME_CONFIG_ABSENT;
	if (t == LUA_TSTRING) {
		char **grown =
		    realloc(cfg->owner->strings, (cfg->owner->nstrings + 1) * sizeof(*grown));
		char *copy = strdup(lua_tostring(cfg->L, -1));
		if (grown != NULL)
			cfg->owner->strings = grown;
		if (grown == NULL || copy == NULL) {
			free(copy);
			config_error(cfg, key, "out of memory");
			rc = SESAME_CONFIG_WRONG;
		} else {
			cfg->owner->strings[cfg->owner->nstrings++] = copy;
			*out = copy;
			rc = SESAME_CONFIG_OK;
		}
	} else if (t != LUA_TNIL) {
		config_error(cfg, key, "expected a string, found %s", luaL_typename(cfg->L, -1));
		rc = SESAME_CONFIG_WRONG;
	}
	lua_pop(cfg->L, 1);
	return rc;
}

static enum sesame_config_result config_integer(struct sesame_config *cfg, const char *key,
						long long min, long long max, long long *out)
{
	int t = get_key(cfg, key), isint = 0;
	enum sesame_config_result rc = SESAME_CONFIG_ABSENT;
	if (t != LUA_TNIL) {
		lua_Integer v = lua_tointegerx(cfg->L, -1, &isint);
		rc = SESAME_CONFIG_WRONG;
		if (t != LUA_TNUMBER || !isint)
			config_error(cfg, key, "expected a whole number, found %s",
				     luaL_typename(cfg->L, -1));
		else if (v < min || v > max)
			config_error(cfg, key, "%lld is out of range (%lld to %lld)", (long long)v,
				     min, max);
		else {
			*out = (long long)v;
			rc = SESAME_CONFIG_OK;
		}
	}
	lua_pop(cfg->L, 1);
	return rc;
}

static enum sesame_config_result config_boolean(struct sesame_config *cfg, const char *key,
						bool *out)
{
	int t = get_key(cfg, key);
	enum sesame_config_result rc = SESAME_CONFIG_ABSENT;
	if (t == LUA_TBOOLEAN) {
		*out = lua_toboolean(cfg->L, -1);
		rc = SESAME_CONFIG_OK;
	} else if (t != LUA_TNIL) {
		config_error(cfg, key, "expected true or false, found %s",
			     luaL_typename(cfg->L, -1));
		rc = SESAME_CONFIG_WRONG;
	}
	lua_pop(cfg->L, 1);
	return rc;
}

static void host_random(void *buf, size_t len)
{
	randombytes_buf(buf, len);
}

static int host_memcmp_secret(const void *a, const void *b, size_t len)
{
	return sodium_memcmp(a, b, len);
}

static void init_host(struct plugin *pl)
{
	pl->host = (struct sesame_host){
	    .size = sizeof(struct sesame_host),
	    .abi_major = SESAME_PLUGIN_ABI_MAJOR,
	    .abi_minor = SESAME_PLUGIN_ABI_MINOR,
	    .log = host_log,
	    .config_string = config_string,
	    .config_integer = config_integer,
	    .config_boolean = config_boolean,
	    .config_error = config_error,
	    .random = host_random,
	    .memcmp_secret = host_memcmp_secret,
	};
}

/* ---- checking a descriptor ---- */

static const char *kind_name(uint32_t kind)
{
	switch (kind) {
	case SESAME_PLUGIN_VALIDATOR:
		return "validator";
	case SESAME_PLUGIN_HASHER:
		return "hasher";
	case SESAME_PLUGIN_STORAGE:
		return "storage";
	default:
		return NULL;
	}
}

/* The descriptor size a kind needs, or 0 for a kind this sesamed cannot load. */
static size_t kind_size(uint32_t kind)
{
	switch (kind) {
	case SESAME_PLUGIN_VALIDATOR:
		return sizeof(struct sesame_validator);
	case SESAME_PLUGIN_HASHER:
		return sizeof(struct sesame_hasher);
	case SESAME_PLUGIN_STORAGE:
		return sizeof(struct sesame_storage);
	default:
		return 0;
	}
}

static bool functions_present(const struct sesame_plugin_header *h)
{
	if (h->kind == SESAME_PLUGIN_VALIDATOR) {
		const struct sesame_validator *v = (const void *)h;
		return v->init && v->fini && v->check;
	}
	if (h->kind == SESAME_PLUGIN_STORAGE) {
		const struct sesame_storage *st = (const void *)h;
		return st->init && st->fini && st->migrate && st->worker_start && st->worker_stop &&
		       st->user_create && st->user_find && st->user_set_password &&
		       st->family_create && st->family_rotate && st->token_revoke &&
		       st->revoked_since && st->subject_revoke && st->token_purge;
	}
	const struct sesame_hasher *x = (const void *)h;
	return x->init && x->fini && x->hash && x->verify && x->identify && x->needs_rehash;
}

static char *name_of_file(const char *path)
{
	const char *base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	size_t len = strlen(base);
	if (len > 3 && strcmp(base + len - 3, ".so") == 0)
		len -= 3;
	return strndup(base, len);
}

/* Checks the descriptor at sym; returns 0, or -1 with the reason in why. */
static int check_descriptor(struct plugin *pl, const void *sym, char *why, size_t len)
{
	Dl_info info;
	const ElfW(Sym) *esym = NULL;
	size_t have = 0;
	if (dladdr1(sym, &info, (void **)&esym, RTLD_DL_SYMENT) != 0 && esym != NULL)
		have = esym->st_size;
	if (have < sizeof(struct sesame_plugin_header)) {
		snprintf(why, len,
			 "its descriptor is truncated (%zu bytes; the header alone is %zu)", have,
			 sizeof(struct sesame_plugin_header));
		return -1;
	}
	const struct sesame_plugin_header *h = sym;
	if (h->magic != SESAME_PLUGIN_MAGIC) {
		snprintf(why, len, "it is not a sesame plugin (magic 0x%08x, not 0x%08x)",
			 (unsigned)h->magic, SESAME_PLUGIN_MAGIC);
		return -1;
	}
	if (h->abi_major != SESAME_PLUGIN_ABI_MAJOR || h->abi_minor > SESAME_PLUGIN_ABI_MINOR) {
		snprintf(why, len,
			 "it was built for sesame plugin ABI %u.%u; this sesamed loads ABI %d.0 "
			 "to %d.%d%s",
			 (unsigned)h->abi_major, (unsigned)h->abi_minor, SESAME_PLUGIN_ABI_MAJOR,
			 SESAME_PLUGIN_ABI_MAJOR, SESAME_PLUGIN_ABI_MINOR,
			 h->abi_major == SESAME_PLUGIN_ABI_MAJOR ? ": upgrade sesamed"
								 : ": rebuild the plugin");
		return -1;
	}
	size_t need = kind_size(h->kind);
	if (need == 0) {
		snprintf(why, len, "its kind %u (%s) is not one this sesamed loads",
			 (unsigned)h->kind, kind_name(h->kind) ? kind_name(h->kind) : "unknown");
		return -1;
	}
	if (h->size < need || have < need || have < h->size) {
		snprintf(
		    why, len,
		    "its %s descriptor is truncated (it says %u bytes, exports %zu; %zu needed)",
		    kind_name(h->kind), (unsigned)h->size, have, need);
		return -1;
	}
	if (h->name == NULL || strcmp(h->name, pl->name) != 0) {
		snprintf(why, len, "it is named '%s', but its file is %s.so",
			 h->name ? h->name : "(none)", pl->name);
		return -1;
	}
	if (!functions_present(h)) {
		snprintf(why, len, "its %s descriptor lacks a required function",
			 kind_name(h->kind));
		return -1;
	}
	return 0;
}

static int open_plugin(struct loading *ld, struct plugin *pl, const char *path)
{
	char why[300];
	pl->path = strdup(path);
	pl->name = name_of_file(path);
	if (pl->path == NULL || pl->name == NULL)
		goto nomem;
	init_host(pl);
	pl->host.config_dir = ld->dir;
	pl->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (pl->handle == NULL) {
		config_errors_add(ld->errs, "plugin %s: cannot be loaded: %s", path, dlerror());
		return -1;
	}
	const void *sym = dlsym(pl->handle, SESAME_PLUGIN_SYMBOL);
	if (sym == NULL) {
		config_errors_add(ld->errs, "plugin %s: it exports no %s descriptor", path,
				  SESAME_PLUGIN_SYMBOL);
		return -1;
	}
	if (check_descriptor(pl, sym, why, sizeof(why)) != 0) {
		config_errors_add(ld->errs, "plugin %s: refused: %s", path, why);
		return -1;
	}
	pl->h = sym;
	return 0;
nomem:
	config_errors_add(ld->errs, "plugin %s: out of memory", path);
	return -1;
}

/* ---- the plugins table ---- */

static const char *const plugins_keys[] = {"path", "load", NULL};

static bool known(const char *key, const char *const *list)
{
	for (; *list != NULL; list++) {
		if (strcmp(*list, key) == 0)
			return true;
	}
	return false;
}

/* Pushes settings[name] when it is a table, else nil (reporting a wrong type). */
static int push_section(struct loading *ld, const char *name)
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

/* Reports every key of the table at idx that is neither in list nor accepted by extra. */
static void check_section_keys(struct loading *ld, int idx, const char *section,
			       const char *const *list,
			       bool (*extra)(struct loading *, const char *))
{
	lua_State *L = ld->L;
	idx = lua_absindex(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		char keypath[192];
		if (key != NULL && (known(key, list) || (extra != NULL && extra(ld, key))))
			continue;
		snprintf(keypath, sizeof(keypath), "%s.%s", section, key ? key : "?");
		config_error_at(ld->errs, ld->file, ld->src, keypath, "unknown key");
	}
}

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
	char *out = malloc(strlen(ld->dir) + strlen(dir) + 2);
	if (out != NULL)
		sprintf(out, "%s%s%s", dir[0] == '/' ? "" : ld->dir, dir[0] == '/' ? "" : "/", dir);
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
	if (open_plugin(ld, &p->v[p->n - 1], path) != 0)
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

/* A plugin's configuration is a table: anything else would be ignored without a word. */
static void not_a_table(struct loading *ld, const char *section, const char *name)
{
	char keypath[160];
	snprintf(keypath, sizeof(keypath), "%s.%s", section, name);
	config_error_at(ld->errs, ld->file, ld->src, keypath, "expected a table, found %s",
			luaL_typename(ld->L, -1));
}

/* ---- hashers and the password table ---- */

static bool is_loaded_hasher(struct loading *ld, const char *name)
{
	for (size_t i = 0; i < ld->p->n; i++) {
		if (ld->p->v[i].h->kind == SESAME_PLUGIN_HASHER &&
		    strcmp(ld->p->v[i].name, name) == 0)
			return true;
	}
	return false;
}

static const char *const password_keys[] = {"scheme", "accept", NULL};

/* Every kind starts alike: the header, init, fini. */
struct common {
	struct sesame_plugin_header header;
	int (*init)(const struct sesame_host *host, struct sesame_config *cfg, void **state);
	void (*fini)(void *state);
};

static const struct common *common(const struct plugin *pl)
{
	return (const struct common *)pl->h;
}

/*
 * Runs init with the plugin's table (at tbl, 0 when absent) and checks the keys it read;
 * host_keys are keys of the same table that sesamed itself reads.
 */
static struct sesame_config make_config(struct loading *ld, struct plugin *pl, int tbl,
					const char *path)
{
	struct sesame_config cfg = {.owner = pl,
				    .L = ld->L,
				    .tbl = tbl,
				    .file = ld->file,
				    .src = ld->src,
				    .errs = ld->errs};
	snprintf(cfg.path, sizeof(cfg.path), "%s", path);
	return cfg;
}

/* Runs init with cfg, whose keys sesamed may have read already, and checks the keys left. */
static int run_init(struct loading *ld, struct plugin *pl, struct sesame_config *cfg)
{
	int top = lua_gettop(ld->L);
	int rc = common(pl)->init(&pl->host, cfg, &pl->state);
	lua_settop(ld->L, top);
	if (rc != 0 || cfg->failed) {
		if (!cfg->failed)
			config_errors_add(ld->errs, "plugin %s: cannot start", pl->path);
		if (rc == 0)
			pl->inited = true;
		return -1;
	}
	pl->inited = true;
	if (cfg->tbl == 0)
		return 0;
	lua_pushnil(ld->L);
	while (lua_next(ld->L, cfg->tbl) != 0) {
		lua_pop(ld->L, 1);
		const char *key =
		    lua_type(ld->L, -1) == LUA_TSTRING ? lua_tostring(ld->L, -1) : "?";
		bool read = false;
		for (size_t i = 0; i < cfg->nseen && !read; i++)
			read = strcmp(cfg->seen[i], key) == 0;
		if (!read) {
			char keypath[192];
			snprintf(keypath, sizeof(keypath), "%s.%s", cfg->path, key);
			config_error_at(ld->errs, ld->file, ld->src, keypath,
					"unknown key (plugin %s does not read it)", pl->name);
		}
	}
	return 0;
}

static int init_plugin(struct loading *ld, struct plugin *pl, int tbl, const char *path)
{
	struct sesame_config cfg = make_config(ld, pl, tbl, path);
	return run_init(ld, pl, &cfg);
}

static struct plugin *find(struct plugins *p, uint32_t kind, const char *name)
{
	for (size_t i = 0; i < p->n; i++) {
		if (p->v[i].h->kind == kind && strcmp(p->v[i].name, name) == 0)
			return &p->v[i];
	}
	return NULL;
}

static int add_accepted(struct loading *ld, const char *name, const char *where)
{
	struct plugin *pl = find(ld->p, SESAME_PLUGIN_HASHER, name);
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

static void read_password(struct loading *ld)
{
	lua_State *L = ld->L;
	int t = push_section(ld, "password");
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
				not_a_table(ld, "password", pl->name);
		}
		snprintf(path, sizeof(path), "password.%s", pl->name);
		init_plugin(ld, pl, sub, path);
		if (tbl != 0)
			lua_pop(L, 1);
	}
	if (tbl != 0)
		if (find(ld->p, SESAME_PLUGIN_VALIDATOR, "password") == NULL)
			check_section_keys(ld, tbl, "password", password_keys, is_loaded_hasher);

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
		struct plugin *pl = find(ld->p, SESAME_PLUGIN_HASHER, scheme);
		bool accepted = false;
		for (size_t i = 0; i < ld->p->naccept && !accepted; i++)
			accepted = strcmp(ld->p->accept[i].name, scheme) == 0;
		if (pl == NULL)
			config_error_at(ld->errs, ld->file, ld->src, "password.scheme",
					"'%s' is not a loaded hasher plugin", scheme);
		else if (!accepted)
			config_error_at(ld->errs, ld->file, ld->src, "password.scheme",
					"'%s' must be in password.accept too", scheme);
		else {
			ld->p->scheme = (struct hasher){
			    .fn = (const void *)pl->h, .state = pl->state, .name = pl->name};
			make_dummy(ld);
		}
	}
	if (tbl != 0)
		lua_pop(L, 1);
	lua_pop(L, 1);
}

/* ---- validators ---- */

/*
 * A validator NAME reads the top-level table NAME. The password table is shared: the
 * password validator's keys (min_length, ...) sit beside the hashing keys, which count as
 * read for it.
 */
static void read_validators(struct loading *ld)
{
	lua_State *L = ld->L;
	for (size_t i = 0; i < ld->p->n; i++) {
		struct plugin *pl = &ld->p->v[i];
		if (pl->h->kind != SESAME_PLUGIN_VALIDATOR)
			continue;
		int tbl = push_section(ld, pl->name) == LUA_TTABLE ? lua_gettop(L) : 0;
		struct sesame_config cfg = make_config(ld, pl, tbl, pl->name);
		if (strcmp(pl->name, "password") == 0) {
			for (const char *const *k = password_keys; *k != NULL; k++)
				snprintf(cfg.seen[cfg.nseen++], sizeof(cfg.seen[0]), "%s", *k);
			for (size_t j = 0; j < ld->p->n && cfg.nseen < MAX_SEEN; j++) {
				if (ld->p->v[j].h->kind == SESAME_PLUGIN_HASHER)
					snprintf(cfg.seen[cfg.nseen++], sizeof(cfg.seen[0]), "%s",
						 ld->p->v[j].name);
			}
		}
		run_init(ld, pl, &cfg);
		lua_pop(L, 1);
	}
	/* A table for a validator that is not loaded would be silently ignored: say so. */
	static const char *const own[] = {"email", "username", NULL};
	for (const char *const *k = own; *k != NULL; k++) {
		lua_pushstring(L, *k);
		if (lua_rawget(L, ld->settings) != LUA_TNIL &&
		    find(ld->p, SESAME_PLUGIN_VALIDATOR, *k) == NULL)
			config_error_at(ld->errs, ld->file, ld->src, *k,
					"no validator plugin named %s is loaded", *k);
		lua_pop(L, 1);
	}
}

bool plugins_validator(const struct plugins *p, const char *name, struct validator *out)
{
	for (size_t i = 0; p != NULL && i < p->n; i++) {
		if (p->v[i].h->kind == SESAME_PLUGIN_VALIDATOR && strcmp(p->v[i].name, name) == 0) {
			out->fn = (const struct sesame_validator *)p->v[i].h;
			out->state = p->v[i].state;
			return true;
		}
	}
	return false;
}

/* ---- storage ---- */

static const char *const storage_keys[] = {"backend", "users", "migrate", NULL};
static const char *const users_keys[] = {"table", "id", "email", "username", "password", NULL};

static bool is_loaded_storage(struct loading *ld, const char *name)
{
	return find(ld->p, SESAME_PLUGIN_STORAGE, name) != NULL;
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
		check_section_keys(ld, tbl, "storage.users", users_keys, NULL);
	} else if (t != LUA_TNIL) {
		config_error_at(ld->errs, ld->file, ld->src, "storage.users", "expected a table");
	}
	for (int i = 0; i < 5; i++) {
		const char *name = defaults[i];
		char keypath[64];
		snprintf(keypath, sizeof(keypath), "storage.users.%s", users_keys[i]);
		if (tbl != 0) {
			lua_pushstring(L, users_keys[i]);
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

static char *copy_or(const char *v, const char *fallback)
{
	return v != NULL ? strdup(v) : fallback != NULL ? strdup(fallback) : NULL;
}

/* storage.mariadb's connection keys: sesamed's own pool reads them, not the plugin. */
static void read_pool(struct loading *ld, struct sesame_config *cfg)
{
	const struct sesame_host *host = &cfg->owner->host;
	struct dbpool_config *db = &ld->p->db;
	const char *socket = NULL, *hostname = NULL, *user = NULL, *password = NULL,
		   *password_file = NULL, *database = NULL;
	long long port = 3306, size = 8, ct = 5, rt = 30, wt = 30;
	host->config_string(cfg, "socket", &socket);
	host->config_string(cfg, "host", &hostname);
	host->config_integer(cfg, "port", 1, 65535, &port);
	host->config_string(cfg, "user", &user);
	host->config_string(cfg, "password", &password);
	host->config_string(cfg, "password_file", &password_file);
	host->config_string(cfg, "database", &database);
	host->config_integer(cfg, "pool", 1, 256, &size);
	host->config_integer(cfg, "connect_timeout", 1, 300, &ct);
	host->config_integer(cfg, "read_timeout", 1, 3600, &rt);
	host->config_integer(cfg, "write_timeout", 1, 3600, &wt);
	if (socket == NULL && hostname == NULL)
		socket = "/run/mysqld/mysqld.sock";
	*db = (struct dbpool_config){.socket = copy_or(socket, NULL),
				     .host = copy_or(hostname, NULL),
				     .port = (int)port,
				     .user = copy_or(user, "sesame"),
				     .database = copy_or(database, "sesame"),
				     .size = (int)size,
				     .connect_timeout = (int)ct,
				     .read_timeout = (int)rt,
				     .write_timeout = (int)wt};
	if (password != NULL && password_file != NULL) {
		config_error(cfg, "password_file", "give password or password_file, not both");
	} else if (password_file != NULL) {
		char path[4200];
		snprintf(path, sizeof(path), "%s%s%s", password_file[0] == '/' ? "" : ld->dir,
			 password_file[0] == '/' ? "" : "/", password_file);
		FILE *f = fopen(path, "r");
		char buf[512] = "";
		if (f == NULL || fgets(buf, sizeof(buf), f) == NULL)
			config_error(cfg, "password_file", "cannot read %s", path);
		buf[strcspn(buf, "\r\n")] = '\0';
		db->password = strdup(buf);
		sodium_memzero(buf, sizeof(buf));
		if (f != NULL)
			fclose(f);
	} else {
		db->password = copy_or(password, NULL);
	}
	ld->p->have_pool = true;
}

static void read_storage(struct loading *ld)
{
	lua_State *L = ld->L;
	if (push_section(ld, "storage") != LUA_TTABLE) {
		lua_pop(L, 1);
		return;
	}
	int tbl = lua_gettop(L);
	check_section_keys(ld, tbl, "storage", storage_keys, is_loaded_storage);
	read_users(ld, tbl);
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
	struct plugin *pl = backend != NULL ? find(ld->p, SESAME_PLUGIN_STORAGE, backend) : NULL;
	if (backend == NULL)
		config_error_at(ld->errs, ld->file, ld->src, "storage.backend",
				"the storage backend is needed, as a name (\"mariadb\")");
	else if (pl == NULL)
		config_error_at(ld->errs, ld->file, ld->src, "storage.backend",
				"'%s' is not a loaded storage plugin", backend);
	if (pl != NULL) {
		char path[96];
		snprintf(path, sizeof(path), "storage.%s", backend);
		lua_pushstring(L, backend);
		int t = lua_rawget(L, tbl), sub = t == LUA_TTABLE ? lua_gettop(L) : 0;
		if (t != LUA_TTABLE && t != LUA_TNIL)
			not_a_table(ld, "storage", backend);
		struct sesame_config cfg = make_config(ld, pl, sub, path);
		if (strcmp(backend, "mariadb") == 0) {
			read_pool(ld, &cfg);
			pl->host.mariadb = dbpool_host_api();
		}
		pl->host.users = &ld->p->users;
		if (run_init(ld, pl, &cfg) == 0)
			ld->p->storage = pl;
		lua_pop(L, 1);
	}
	lua_pop(L, 2);
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
	int t = push_section(&ld, "plugins");
	int tbl = t == LUA_TTABLE ? lua_gettop(L) : 0;
	if (tbl != 0)
		check_section_keys(&ld, tbl, "plugins", plugins_keys, NULL);
	bool given;
	char *pdir = plugin_dir(&ld, tbl, &given);
	if (pdir != NULL)
		load_files(&ld, tbl, pdir, given);
	free(pdir);
	lua_pop(L, 1);
	if (errs->n == before) {
		read_validators(&ld);
		read_password(&ld);
		read_storage(&ld);
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
			common(pl)->fini(pl->state);
		/* Among them, perhaps, a database password. */
		for (size_t j = 0; j < pl->nstrings; j++) {
			sodium_memzero(pl->strings[j], strlen(pl->strings[j]));
			free(pl->strings[j]);
		}
		free(pl->strings);
		if (pl->handle != NULL)
			dlclose(pl->handle);
		free(pl->path);
		free(pl->name);
	}
	free(p->v);
	free(p->accept);
	free(p->dummy);
	for (int i = 0; i < 5; i++)
		free(p->users_names[i]);
	dbpool_free(p->pool);
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

bool plugins_storage(const struct plugins *p, struct storage *out)
{
	if (p == NULL || p->storage == NULL)
		return false;
	out->fn = (const struct sesame_storage *)p->storage->h;
	out->state = p->storage->state;
	return true;
}

static int start_pool(struct plugins *p)
{
	if (!p->have_pool)
		return 0;
	p->pool = dbpool_new(&p->db);
	if (p->pool == NULL)
		return -1;
	dbpool_set_current(p->pool);
	return 0;
}

static void stop_pool(struct plugins *p)
{
	dbpool_free(p->pool);
	p->pool = NULL;
}

bool plugins_wants_migration(const struct plugins *p)
{
	return p != NULL && p->storage != NULL && p->migrate;
}

int plugins_migrate(struct plugins *p, bool always, char *err, size_t errlen)
{
	struct storage st;
	if (!plugins_storage(p, &st) || !(p->migrate || always))
		return 0;
	if (start_pool(p) != 0) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* The master's connections close before any fork: workers make their own. */
	int rc = st.fn->migrate(st.state, err, errlen);
	stop_pool(p);
	return rc;
}

int plugins_worker_start(struct plugins *p)
{
	struct storage st;
	if (!plugins_storage(p, &st))
		return 0;
	if (start_pool(p) != 0)
		return -1;
	return st.fn->worker_start(st.state);
}

void plugins_worker_stop(struct plugins *p)
{
	struct storage st;
	if (!plugins_storage(p, &st))
		return;
	st.fn->worker_stop(st.state);
	stop_pool(p);
}

const char *plugins_dummy_hash(const struct plugins *p)
{
	return p != NULL ? p->dummy : NULL;
}
