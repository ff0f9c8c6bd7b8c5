/*
 * config.c: loads the Lua configuration file and checks every key in it.
 *
 * The file is a Lua chunk run in an environment of its own: the globals it sets (server,
 * routes, ...) are the settings, and the standard library stays readable through __index.
 * Each section is then read into struct config through the table of its keys (config_table.c),
 * which names the known keys too: server and routes here, jwt in config_jwt.c, and plugins,
 * password and storage in the plugin loader (mail and http: config_outbound.c). Nothing
 * stops at the first problem: every unknown key, wrong type and bad value is collected as
 * "FILE:LINE: message" (config_diag.c).
 */
#include "autoconfig.h"

#include "config.h"

#include <errno.h>
#include <glob.h>
#include <lauxlib.h>
#include <libgen.h>
#include <lua.h>
#include <lualib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_jwt.h"
#include "config_limits.h"
#include "config_table.h"
#include "file.h"
#include "jobs.h"
#include "listen.h"
#include "lua_guard.h"
#include "plugin.h"

#define MAX_THREADS JOBS_MAX_THREADS
/*
 * server.queue and server.hash_queue, unset: jobs per job thread of their kind a worker holds
 * before it sheds. At a password hash of about 0.1 s the last of them waits some 6 s: well
 * inside server.handler_timeout, so queued work is still wanted when it runs; storage jobs take
 * milliseconds, so it is ample for them.
 */
#define QUEUE_PER_THREAD 64

struct loader {
	lua_State *L;
	struct config *cfg;
	struct config_errors *errs;
	char *src; /* the file's text, to find lines in */
	long instructions;
};

static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* The configuration a section of it is read into. */
static struct config *cfg_of(const struct config_reader *rd)
{
	return rd->base;
}

static void read_listen(struct config_reader *rd, int tbl, const struct config_key *key,
			const char *keypath)
{
	struct config *cfg = cfg_of(rd);
	if (!lua_isnil(rd->L, -1)) {
		free_strings(cfg->listen, cfg->nlisten);
		cfg->listen = NULL;
		cfg->nlisten = 0;
		config_read_strings(rd, -1, keypath, &cfg->listen, &cfg->nlisten);
	}
	bool typed = lua_isnil(rd->L, -1) || cfg->nlisten > 0 || lua_istable(rd->L, -1);
	if (cfg->nlisten == 0 && typed)
		config_fail(rd, keypath, "at least one address is needed");
	for (size_t i = 0; i < cfg->nlisten; i++) {
		struct listen_addr a;
		char err[LOG_ERR_MAX];
		if (listen_parse(cfg->listen[i], &a, err, sizeof(err)) != 0)
			config_fail(rd, keypath, "%s", err);
	}
}

/* "auto" (0) or a number in the key's range; unset, the field keeps its default. */
static void read_auto(struct config_reader *rd, int tbl, const struct config_key *key,
		      const char *keypath)
{
	int *field = config_field(rd, key);
	lua_State *L = rd->L;
	int t = lua_type(L, -1);
	if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "auto") == 0) {
		*field = 0;
	} else if (t != LUA_TNIL) {
		int isint = 0;
		lua_Integer v = lua_tointegerx(L, -1, &isint);
		if (t != LUA_TNUMBER || !isint || v < key->min || v > key->max)
			config_fail(rd, keypath, "expected \"auto\" or a number from %ld to %ld",
				    key->min, key->max);
		else
			*field = (int)v;
	}
}

static void read_workers(struct config_reader *rd, int tbl, const struct config_key *key,
			 const char *keypath)
{
	int *workers = config_field(rd, key);
	read_auto(rd, tbl, key, keypath);
	if (*workers == 0) {
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		*workers = cores < 1 ? 1 : cores > key->max ? (int)key->max : (int)cores;
	}
}

/* server.control: the master's control socket, a path, or false for none. */
static void read_control(struct config_reader *rd, int tbl, const struct config_key *key,
			 const char *keypath)
{
	char **control = config_field(rd, key);
	int t = lua_type(rd->L, -1);
	if (t == LUA_TBOOLEAN && !lua_toboolean(rd->L, -1)) {
		free(*control);
		*control = NULL;
	} else if (t == LUA_TSTRING && lua_tostring(rd->L, -1)[0] != '\0') {
		free(*control);
		*control = file_resolve(rd->dir, lua_tostring(rd->L, -1));
	} else if (t != LUA_TNIL) {
		config_fail(rd, keypath, "expected a socket path or false");
	}
}

static void read_log_level(struct config_reader *rd, int tbl, const struct config_key *key,
			   const char *keypath)
{
	int t = lua_type(rd->L, -1);
	if (t != LUA_TNIL && (t != LUA_TSTRING ||
			      log_level_parse(lua_tostring(rd->L, -1), config_field(rd, key)) != 0))
		config_fail(rd, keypath, "expected \"error\", \"warn\", \"info\" or \"debug\"");
}

#define SERVER(field) offsetof(struct config, field)

static const struct config_key server_keys[] = {
    {"listen", read_listen, 0, 0, SERVER(listen)},
    {"workers", read_workers, 1, CONFIG_MAX_WORKERS, SERVER(workers)},
    {"user", config_string, 0, 0, SERVER(privs.user)},
    {"group", config_string, 0, 0, SERVER(privs.group)},
    {"threads", config_int, 1, MAX_THREADS, SERVER(threads)},
    {"hash_threads", read_auto, 1, MAX_THREADS, SERVER(hash_threads)},
    {"hash_nice", config_int, 0, 19, SERVER(hash_nice)},
    {"max_body", config_size, 0, 64L << 20, SERVER(max_body)},
    {"max_header", config_size, 1024, 1L << 20, SERVER(max_header)},
    {"timeout", config_int, 1, 3600, SERVER(timeout)},
    {"keepalive", config_int, 1, 3600, SERVER(keepalive)},
    {"shutdown_timeout", config_int, 1, 3600, SERVER(shutdown_timeout)},
    {"debug", config_bool, 0, 0, SERVER(debug)},
    {"access_log", config_log_file, 0, 0, SERVER(access_log)},
    {"log_level", read_log_level, 0, 0, SERVER(log_level)},
    {"handler_instructions", config_long, 10000, 1L << 40, SERVER(handler_instructions)},
    {"handler_timeout", config_int, 1, 3600, SERVER(handler_timeout)},
    {"lua_memory", config_size, 1L << 20, 1L << 40, SERVER(lua_memory)},
    {"json_depth", config_int, 1, 1000, SERVER(json_depth)},
    {"queue", config_int, 1, 1 << 20, SERVER(queue)},
    {"hash_queue", config_int, 1, 1 << 20, SERVER(hash_queue)},
    {"hang_timeout", config_ms, 1000, 3600000, SERVER(hang_timeout_ms)},
    {"start_timeout", config_ms, 1000, 3600000, SERVER(start_timeout_ms)},
    {"trusted_proxies", config_trusted_proxies, 0, 0, SERVER(trusted_proxies)},
    {"metrics", config_metrics, 0, 0, SERVER(metrics)},
    {"control", read_control, 0, 0, SERVER(control)},
    {NULL, NULL, 0, 0, 0},
};

/* server.user and server.group into ids, here and not after fork. */
static void read_privs(struct config_reader *rd)
{
	char why[LOG_ERR_MAX];
	switch (privs_resolve(&cfg_of(rd)->privs, why, sizeof(why))) {
	case PRIVS_OK:
		break;
	case PRIVS_IGNORED:
		log_warn("%s: server.user: %s", rd->file, why);
		break;
	case PRIVS_BAD_USER:
		config_fail(rd, "server.user", "%s", why);
		break;
	case PRIVS_BAD_GROUP:
		config_fail(rd, "server.group", "%s", why);
		break;
	}
}

static void read_server(struct config_reader *rd, int top, const struct config_key *key,
			const char *keypath)
{
	/* Unset, it is read as an empty table: each key settles its default. */
	bool unset = lua_isnil(rd->L, -1);
	if (unset)
		lua_newtable(rd->L);
	if (unset || config_is_table(rd, keypath))
		config_table_read(rd, -1, keypath, server_keys);
	read_privs(rd);
	if (unset)
		lua_pop(rd->L, 1);
	struct config *cfg = cfg_of(rd);
	if (cfg->queue == 0)
		cfg->queue = QUEUE_PER_THREAD * cfg->threads;
}

static bool has_glob_chars(const char *s)
{
	return strpbrk(s, "*?[") != NULL;
}

static void add_route_file(struct config *cfg, const char *file)
{
	for (size_t i = 0; i < cfg->nroutes; i++) {
		if (strcmp(cfg->routes[i], file) == 0)
			return;
	}
	char **grown = realloc(cfg->routes, (cfg->nroutes + 2) * sizeof(*grown));
	if (grown == NULL)
		return;
	cfg->routes = grown;
	cfg->routes[cfg->nroutes++] = strdup(file);
	cfg->routes[cfg->nroutes] = NULL;
}

static void read_routes(struct config_reader *rd, int top, const struct config_key *key,
			const char *keypath)
{
	struct config *cfg = cfg_of(rd);
	char **patterns = NULL;
	size_t npatterns = 0;
	if (lua_isnil(rd->L, -1)) {
		patterns = calloc(2, sizeof(char *));
		patterns[0] = strdup("routes/*.lua");
		npatterns = 1;
	} else {
		config_read_strings(rd, -1, keypath, &patterns, &npatterns);
	}
	for (size_t i = 0; i < npatterns; i++) {
		char *full = file_resolve(rd->dir, patterns[i]);
		glob_t g;
		int rc = glob(full, 0, NULL, &g);
		if (rc == 0) {
			for (size_t j = 0; j < g.gl_pathc; j++)
				add_route_file(cfg, g.gl_pathv[j]);
			globfree(&g);
		} else if (rc == GLOB_NOMATCH && has_glob_chars(patterns[i])) {
			log_warn("%s: routes: no file matches %s", cfg->path, full);
		} else {
			config_fail(rd, keypath, "%s: %s", full,
				    rc == GLOB_NOMATCH ? "no such file" : "cannot be read");
		}
		free(full);
		free(patterns[i]);
	}
	free(patterns);
}

/*
 * The top level: plugins, password, storage and the validators' tables (email, username) are
 * read by the plugin loader.
 */
static const struct config_key top_keys[] = {
    {"server", read_server, 0, 0, 0},
    {"routes", read_routes, 0, 0, 0},
    {"plugins", NULL, 0, 0, 0},
    {"password", NULL, 0, 0, 0},
    {"jwt", config_jwt_read, 0, 0, offsetof(struct config, jwt)},
    {"storage", NULL, 0, 0, 0},
    {"email", NULL, 0, 0, 0},
    {"username", NULL, 0, 0, 0},
    {"limits", config_limits_read, 0, 0, offsetof(struct config, limits)},
    {"mail", config_mail_read, 0, 0, offsetof(struct config, mail)},
    {"http", config_http_read, 0, 0, offsetof(struct config, http)},
    {"events", config_events_read, 0, 0, offsetof(struct config, events)},
    {"accounts", config_accounts_read, 0, 0, offsetof(struct config, accounts)},
    {NULL, NULL, 0, 0, 0},
};

/*
 * Reads every setting; lua_pcall'd with the settings at index 1 and the loader at 2. The top
 * level's names are checked once the plugins have loaded: a validator's table is named after it.
 */
static int read_settings(lua_State *L)
{
	struct loader *ld = lua_touserdata(L, 2);
	struct config_reader rd = {.L = L,
				   .errs = ld->errs,
				   .file = ld->cfg->path,
				   .src = ld->src,
				   .dir = ld->cfg->dir,
				   .base = ld->cfg};
	lua_settop(L, 1);
	config_table_read_keys(&rd, 1, "", top_keys);
	return 0;
}

/*
 * A top-level table named after a loaded validator is that validator's configuration. When the
 * plugins were not loaded (the file has errors already), any table may be one: only the next
 * check, once those are mended, can tell.
 */
static bool names_validator(const void *loader, const char *name)
{
	const struct loader *ld = loader;
	struct validator v;
	if (ld->cfg->plugins != NULL)
		return plugins_validator(ld->cfg->plugins, name, &v);
	lua_pushstring(ld->L, name);
	bool table = lua_rawget(ld->L, 1) == LUA_TTABLE;
	lua_pop(ld->L, 1);
	return table;
}

/* A configuration is data: one that runs this long is stuck in a loop. */
#define CONFIG_INSTRUCTIONS 100000000
static const char runs_too_long[] = "the configuration runs too long (stuck in a loop?)";

static void count_hook(lua_State *L, lua_Debug *ar)
{
	struct loader *ld = *(struct loader **)lua_getextraspace(L);
	ld->instructions += 1000;
	if (ld->instructions <= CONFIG_INSTRUCTIONS)
		return;
	/* From every instruction on: a pcall that caught it lets no line run. */
	lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
	luaL_error(L, "%s", runs_too_long);
}

/* __newindex of the config's environment: only names are settings. */
static int env_newindex(lua_State *L)
{
	if (lua_type(L, 2) != LUA_TSTRING)
		return luaL_error(L, "settings are named: cannot set a %s key",
				  luaL_typename(L, 2));
	lua_rawset(L, 1);
	return 0;
}

/* Runs the chunk; leaves its environment (the settings) at index 1. */
static int run_chunk(struct loader *ld)
{
	lua_State *L = ld->L;
	const char *path = ld->cfg->path;
	lua_newtable(L); /* the settings: index 1 */
	lua_newtable(L);
	lua_pushglobaltable(L);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, env_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_setmetatable(L, 1);

	char chunkname[4200];
	snprintf(chunkname, sizeof(chunkname), "@%s", path);
	if (luaL_loadbufferx(L, ld->src, strlen(ld->src), chunkname, "t") != LUA_OK) {
		config_errors_add(ld->errs, "%s", lua_tostring(L, -1));
		return -1;
	}
	lua_pushvalue(L, 1);
	lua_setupvalue(L, -2, 1); /* _ENV */
	if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
		config_errors_add(ld->errs, "%s", lua_tostring(L, -1));
		return -1;
	}
	/* Over the budget all the same: it ended in a tail call of the pcall that caught it. */
	if (ld->instructions > CONFIG_INSTRUCTIONS) {
		config_errors_add(ld->errs, "%s: %s", path, runs_too_long);
		return -1;
	}
	/* From here on the settings are read raw: __index would show the standard library. */
	lua_pushnil(L);
	lua_setmetatable(L, 1);
	return 0;
}

static void set_defaults(struct config *cfg)
{
	cfg->listen = calloc(2, sizeof(char *));
	cfg->listen[0] = strdup("127.0.0.1:8080");
	cfg->nlisten = 1;
	cfg->workers = 0;
	cfg->threads = 2;
	cfg->hash_nice = 10;
	cfg->max_body = 65536;
	cfg->max_header = 16384;
	cfg->timeout = 30;
	cfg->keepalive = 15;
	cfg->shutdown_timeout = 30;
	cfg->access_log = strdup("stderr");
	cfg->control = strdup("/run/sesame/control");
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->handler_instructions = 50000000;
	cfg->handler_timeout = 30;
	cfg->jwt.access_expires = 900;
	cfg->jwt.refresh_expires = 2592000;
	cfg->jwt.family_lifetime = 90L * 86400;
	cfg->jwt.refresh_grace_ms = 2000;
	cfg->jwt.revocation_refresh_ms = 1000;
	cfg->jwt.revocation_capacity = 262144;
	cfg->lua_memory = 256u << 20;
	cfg->json_depth = 32;
	cfg->hang_timeout_ms = 10000;
	cfg->start_timeout_ms = 60000;
	ratelimit_rules_defaults(&cfg->limits);
	config_metrics_defaults(&cfg->metrics);
	config_events_defaults(&cfg->events);
	config_accounts_defaults(&cfg->accounts);
}

/* The file's folder as an absolute path: the daemon may change directory later. */
static char *dir_of(const char *path)
{
	char *real = realpath(path, NULL);
	if (real == NULL)
		return NULL;
	char *d = strdup(dirname(real));
	free(real);
	return d;
}

/* server.control alone, from the settings at index 1 (raw: no metamethod runs). */
static void read_control_only(struct loader *ld)
{
	static const struct config_key key = {"control", read_control, 0, 0, SERVER(control)};
	struct config_reader rd = {.L = ld->L,
				   .errs = ld->errs,
				   .file = ld->cfg->path,
				   .src = ld->src,
				   .dir = ld->cfg->dir,
				   .base = ld->cfg};
	lua_pushstring(ld->L, "server");
	if (lua_rawget(ld->L, 1) == LUA_TTABLE) {
		lua_pushstring(ld->L, "control");
		lua_rawget(ld->L, -2);
		read_control(&rd, lua_gettop(ld->L) - 1, &key, "server.control");
		lua_pop(ld->L, 1);
	}
	lua_pop(ld->L, 1);
}

/* What load reads: everything, server.control alone, or everything but trying the logs. */
enum load_part { LOAD_ALL, LOAD_CONTROL, LOAD_NO_LOGS };

static struct config *load(const char *path, struct config_errors *errs, enum load_part part)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	struct loader ld = {.cfg = cfg, .errs = errs};
	size_t before = errs->n;
	if (cfg == NULL)
		return NULL;
	/* Absolute: a detached daemon changes directory, and reloads read the file again. */
	char *real = realpath(path, NULL);
	cfg->path = real != NULL ? real : strdup(path);
	cfg->dir = dir_of(path);
	set_defaults(cfg);

	ld.src = cfg->dir != NULL ? file_read(path) : NULL;
	if (ld.src == NULL) {
		config_errors_add(errs, "%s: cannot read: %s", path, strerror(errno));
		goto fail;
	}
	ld.L = luaL_newstate();
	if (ld.L == NULL)
		goto fail;
	luaL_openlibs(ld.L);
	lua_guard_open(ld.L);
	*(struct loader **)lua_getextraspace(ld.L) = &ld;
	lua_sethook(ld.L, count_hook, LUA_MASKCOUNT, 1000);
	if (run_chunk(&ld) != 0)
		goto fail;
	if (part == LOAD_CONTROL) {
		read_control_only(&ld);
		if (errs->n > before)
			goto fail;
		goto done;
	}
	/* Reading runs protected too: a metamethod in the settings may raise an error. */
	lua_pushcfunction(ld.L, read_settings);
	lua_pushvalue(ld.L, 1);
	lua_pushlightuserdata(ld.L, &ld);
	if (lua_pcall(ld.L, 2, 0, 0) != LUA_OK) {
		config_errors_add(errs, "%s: %s", cfg->path, lua_tostring(ld.L, -1));
		goto fail;
	}
	if (errs->n == before)
		cfg->plugins = plugins_load(cfg->path, cfg->dir, ld.src, ld.L, 1, errs);
	struct config_reader rd = {
	    .L = ld.L, .errs = errs, .file = cfg->path, .src = ld.src, .dir = cfg->dir};
	config_table_check(&rd, 1, "", top_keys, names_validator, &ld);
	if (part == LOAD_ALL) {
		config_check_log(&rd, "server.access_log", cfg->access_log);
		config_check_log(&rd, "events.audit_log", cfg->events.audit_log);
		config_accounts_warn(&rd, &cfg->accounts, cfg->mail.configured);
	}
	if (cfg->events.store && cfg->plugins != NULL &&
	    !plugins_storage(cfg->plugins, &(struct storage){0}))
		config_fail(&rd, "events.store",
			    "storing events needs a storage (storage.backend)");
	/* A mail still under way at the handler's deadline cannot give the route its error. The
	 * mail's clock starts only once the handler has done its work before it (a password
	 * hash that may queue for a job thread, storage calls), so the mail gets half of the
	 * handler's time at most, whatever the scale, and the rest is left for that work. */
	if (cfg->mail.configured && cfg->mail.timeout_ms * 2 > cfg->handler_timeout * 1000L)
		config_fail(&rd, "mail.timeout",
			    "must be at most half of server.handler_timeout (%d s): a route mails "
			    "after its own work (a registration hashes the password and makes the "
			    "account first), and a silent mail server must fail the mail while the "
			    "handler still has time to answer its error",
			    cfg->handler_timeout);
	if (errs->n > before)
		goto fail;
done:
	lua_close(ld.L);
	file_free_secret(ld.src, strlen(ld.src)); /* it may set jwt.secret or a password */
	return cfg;
fail:
	if (ld.L != NULL)
		lua_close(ld.L);
	if (ld.src != NULL)
		file_free_secret(ld.src, strlen(ld.src));
	config_free(cfg);
	return NULL;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
	return load(path, errs, LOAD_ALL);
}

struct config *config_load_control(const char *path, struct config_errors *errs)
{
	return load(path, errs, LOAD_CONTROL);
}

struct config *config_load_unlogged(const char *path, struct config_errors *errs)
{
	return load(path, errs, LOAD_NO_LOGS);
}

int config_hash_threads(const struct config *cfg)
{
	return cfg->hash_threads > 0 ? cfg->hash_threads : jobs_cpu_threads(cfg->workers);
}

int config_hash_queue(const struct config *cfg)
{
	return cfg->hash_queue > 0 ? cfg->hash_queue : QUEUE_PER_THREAD * config_hash_threads(cfg);
}

void config_set_workers(struct config *cfg, int workers)
{
	cfg->workers = workers < 1		      ? 1
		       : workers > CONFIG_MAX_WORKERS ? CONFIG_MAX_WORKERS
						      : workers;
}

void config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	/* Plugins first: host->config_dir (cfg->dir) is theirs until fini. */
	plugins_free(cfg->plugins);
	free(cfg->path);
	free(cfg->dir);
	free_strings(cfg->listen, cfg->nlisten);
	free_strings(cfg->routes, cfg->nroutes);
	free(cfg->access_log);
	free(cfg->control);
	privs_clear(&cfg->privs);
	tokens_config_clear(&cfg->jwt);
	ratelimit_rules_clear(&cfg->limits);
	config_accounts_clear(&cfg->accounts);
	proxies_clear(&cfg->trusted_proxies);
	proxies_clear(&cfg->metrics.allow);
	config_outbound_clear(&cfg->mail, &cfg->http);
	config_events_clear(&cfg->events);
	free(cfg);
}
