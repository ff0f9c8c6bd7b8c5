/*
 * host.c: the host table (struct sesame_host) each plugin gets, and the reading of its
 * configuration table through it.
 *
 * Each plugin gets a table of its own, so that its log lines carry its name and the strings
 * it reads stay its own until fini. A struct sesame_config wraps one Lua table of the
 * configuration: the host functions read a key raw (no metamethod runs) and note it as read;
 * after init, every key of the table nobody read is reported as unknown, with its line.
 */
#include "autoconfig.h"

#include <lauxlib.h>
#include <lua.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_keys.h"
#include "log.h"
#include "metrics.h"
#include "plugin_private.h"

/* ---- host functions ---- */

static void host_log(const struct sesame_host *host, enum sesame_log_level level, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));
static void host_config_error(struct sesame_config *cfg, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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

static void host_config_error(struct sesame_config *cfg, const char *key, const char *fmt, ...)
{
	char keypath[192], msg[LOG_ERR_MAX];
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

/*
 * For the list of keys (--config-keys): what the plugin asks for, and what *out holds before
 * (its default). *out is read only then: a plugin that leaves it unset breaks that list, never
 * a start.
 */
static void note_string(const struct sesame_config *cfg, const char *key, const char *const *out)
{
	char v[160];
	if (!config_keys_recording())
		return;
	const char *def = *out;
	snprintf(v, sizeof(v), "\"%s\"", def != NULL ? def : "");
	config_keys_note(cfg->path, key, "string", NULL, def != NULL ? v : NULL);
}

static void note_integer(const struct sesame_config *cfg, const char *key, long long min,
			 long long max, const long long *out)
{
	char range[64], v[32];
	if (!config_keys_recording())
		return;
	long long def = *out;
	snprintf(range, sizeof(range), "%lld..%lld", min, max);
	snprintf(v, sizeof(v), "%lld", def);
	config_keys_note(cfg->path, key, "integer", range, v);
}

static enum sesame_config_result host_read_string(struct sesame_config *cfg, const char *key,
						  const char **out)
{
	note_string(cfg, key, out);
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
			host_config_error(cfg, key, "out of memory");
			rc = SESAME_CONFIG_WRONG;
		} else {
			cfg->owner->strings[cfg->owner->nstrings++] = copy;
			*out = copy;
			rc = SESAME_CONFIG_OK;
		}
	} else if (t != LUA_TNIL) {
		host_config_error(cfg, key, "expected a string, found %s",
				  luaL_typename(cfg->L, -1));
		rc = SESAME_CONFIG_WRONG;
	}
	lua_pop(cfg->L, 1);
	return rc;
}

static enum sesame_config_result host_read_integer(struct sesame_config *cfg, const char *key,
						   long long min, long long max, long long *out)
{
	note_integer(cfg, key, min, max, out);
	int t = get_key(cfg, key), isint = 0;
	enum sesame_config_result rc = SESAME_CONFIG_ABSENT;
	if (t != LUA_TNIL) {
		lua_Integer v = lua_tointegerx(cfg->L, -1, &isint);
		rc = SESAME_CONFIG_WRONG;
		if (t != LUA_TNUMBER || !isint)
			host_config_error(cfg, key, "expected a whole number, found %s",
					  luaL_typename(cfg->L, -1));
		else if (v < min || v > max)
			host_config_error(cfg, key, "%lld is out of range (%lld to %lld)",
					  (long long)v, min, max);
		else {
			*out = (long long)v;
			rc = SESAME_CONFIG_OK;
		}
	}
	lua_pop(cfg->L, 1);
	return rc;
}

static enum sesame_config_result host_read_boolean(struct sesame_config *cfg, const char *key,
						   bool *out)
{
	if (config_keys_recording())
		config_keys_note(cfg->path, key, "boolean", NULL, *out ? "true" : "false");
	int t = get_key(cfg, key);
	enum sesame_config_result rc = SESAME_CONFIG_ABSENT;
	if (t == LUA_TBOOLEAN) {
		*out = lua_toboolean(cfg->L, -1);
		rc = SESAME_CONFIG_OK;
	} else if (t != LUA_TNIL) {
		host_config_error(cfg, key, "expected true or false, found %s",
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

static void host_storage_retried(const struct sesame_host *host, const char *reason)
{
	(void)host;
	if (strcmp(reason, "conflict") == 0)
		metrics_storage_retry(METRICS_RETRY_CONFLICT);
	else if (strcmp(reason, "connection") == 0)
		metrics_storage_retry(METRICS_RETRY_CONNECTION);
}

void host_init(struct plugin *pl, const char *config_dir)
{
	pl->host = (struct sesame_host){
	    .size = sizeof(struct sesame_host),
	    .abi_major = SESAME_PLUGIN_ABI_MAJOR,
	    .abi_minor = SESAME_PLUGIN_ABI_MINOR,
	    .log = host_log,
	    .config_string = host_read_string,
	    .config_integer = host_read_integer,
	    .config_boolean = host_read_boolean,
	    .config_error = host_config_error,
	    .random = host_random,
	    .memcmp_secret = host_memcmp_secret,
	    .config_dir = config_dir,
	    .storage_retried = host_storage_retried,
	};
}

/* ---- a plugin's configuration table ---- */

/* A reader of the table at tbl (0 when absent) for pl; path names the table in messages. */
struct sesame_config host_config(struct loading *ld, struct plugin *pl, int tbl, const char *path)
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
int host_run_init(struct loading *ld, struct plugin *pl, struct sesame_config *cfg)
{
	int top = lua_gettop(ld->L);
	int rc = plugin_common(pl)->init(&pl->host, cfg, &pl->state);
	lua_settop(ld->L, top);
	if (rc != 0 || cfg->failed) {
		if (!cfg->failed)
			config_errors_add(ld->errs, "plugin %s: cannot start", pl->path);
		if (rc == 0)
			pl->inited = true;
		return -1;
	}
	pl->inited = true;
	char who[96];
	snprintf(who, sizeof(who), "plugin %s", pl->name);
	host_check_unread(ld, cfg, who);
	return 0;
}

/* Reports each key of cfg's table that no one read; reader names who reads that table. */
void host_check_unread(struct loading *ld, const struct sesame_config *cfg, const char *reader)
{
	if (cfg->tbl == 0)
		return;
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
					"unknown key (%s does not read it)", reader);
		}
	}
}

/* Among them, perhaps, a database password. */
void host_free_strings(struct plugin *pl)
{
	for (size_t j = 0; j < pl->nstrings; j++) {
		sodium_memzero(pl->strings[j], strlen(pl->strings[j]));
		free(pl->strings[j]);
	}
	free(pl->strings);
	pl->strings = NULL;
	pl->nstrings = 0;
}
