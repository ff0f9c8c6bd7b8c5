/*
 * config.c: loads the Lua configuration file and checks every key in it.
 *
 * The file is a Lua chunk run in an environment of its own: the globals it sets (server,
 * routes, ...) are the settings, and the standard library stays readable through __index.
 * Each setting is then read into struct config, key by key, against a fixed list of known keys
 * with their types and bounds. Nothing stops at the first problem: every unknown key, wrong
 * type and bad value is collected as "FILE:LINE: message" (config_diag.c finds the line).
 */
#include "autoconfig.h"

#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <lauxlib.h>
#include <libgen.h>
#include <lua.h>
#include <lualib.h>
#include <openssl/evp.h>
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_table.h"
#include "file.h"
#include "jwa.h"
#include "keys.h"
#include "listen.h"
#include "plugin.h"

#define MAX_THREADS 64

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
		char err[160];
		if (listen_parse(cfg->listen[i], &a, err, sizeof(err)) != 0)
			config_fail(rd, keypath, "%s", err);
	}
}

static void read_workers(struct config_reader *rd, int tbl, const struct config_key *key,
			 const char *keypath)
{
	struct config *cfg = cfg_of(rd);
	lua_State *L = rd->L;
	int t = lua_type(L, -1);
	if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "auto") == 0) {
		cfg->workers = 0;
	} else if (t != LUA_TNIL) {
		int isint = 0;
		lua_Integer v = lua_tointegerx(L, -1, &isint);
		if (t != LUA_TNUMBER || !isint || v < key->min || v > key->max)
			config_fail(rd, keypath, "expected \"auto\" or a number from %ld to %ld",
				    key->min, key->max);
		else
			cfg->workers = (int)v;
	}
	if (cfg->workers == 0) {
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		cfg->workers = cores < 1 ? 1 : cores > key->max ? (int)key->max : (int)cores;
	}
}

static void read_access_log(struct config_reader *rd, int tbl, const struct config_key *key,
			    const char *keypath)
{
	struct config *cfg = cfg_of(rd);
	lua_State *L = rd->L;
	int t = lua_type(L, -1);
	if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
		free(cfg->access_log);
		cfg->access_log = NULL;
	} else if (t == LUA_TSTRING) {
		const char *v = lua_tostring(L, -1);
		free(cfg->access_log);
		cfg->access_log = strcmp(v, "stderr") == 0 ? strdup(v) : file_resolve(cfg->dir, v);
	} else if (t != LUA_TNIL) {
		config_fail(rd, keypath, "expected \"stderr\", a file path or false");
	}
	/* Workers open it after fork: find out now, not in a crash loop, that they cannot. */
	const char *file = cfg->access_log;
	if (file != NULL && strcmp(file, "stderr") != 0) {
		int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			config_fail(rd, keypath, "cannot open %s: %s", file, strerror(errno));
		else
			close(fd);
	}
}

static void read_log_level(struct config_reader *rd, int tbl, const struct config_key *key,
			   const char *keypath)
{
	int t = lua_type(rd->L, -1);
	if (t != LUA_TNIL && (t != LUA_TSTRING || log_level_parse(lua_tostring(rd->L, -1),
								  &cfg_of(rd)->log_level) != 0))
		config_fail(rd, keypath, "expected \"error\", \"warn\", \"info\" or \"debug\"");
}

#define SERVER(field) offsetof(struct config, field)

static const struct config_key server_keys[] = {
    {"listen", read_listen, 0, 0, SERVER(listen)},
    {"workers", read_workers, 1, CONFIG_MAX_WORKERS, SERVER(workers)},
    {"threads", config_int, 1, MAX_THREADS, SERVER(threads)},
    {"max_body", config_size, 0, 64L << 20, SERVER(max_body)},
    {"max_header", config_size, 1024, 1L << 20, SERVER(max_header)},
    {"timeout", config_int, 1, 3600, SERVER(timeout)},
    {"keepalive", config_int, 1, 3600, SERVER(keepalive)},
    {"shutdown_timeout", config_int, 1, 3600, SERVER(shutdown_timeout)},
    {"debug", config_bool, 0, 0, SERVER(debug)},
    {"access_log", read_access_log, 0, 0, SERVER(access_log)},
    {"log_level", read_log_level, 0, 0, SERVER(log_level)},
    {"handler_instructions", config_long, 10000, 1L << 40, SERVER(handler_instructions)},
    {"handler_timeout", config_int, 1, 3600, SERVER(handler_timeout)},
    {"lua_memory", config_size, 1L << 20, 1L << 40, SERVER(lua_memory)},
    {"json_depth", config_int, 1, 1000, SERVER(json_depth)},
    {NULL, NULL, 0, 0, 0},
};

static void read_server(struct config_reader *rd, int top, const struct config_key *key,
			const char *keypath)
{
	/* Unset, it is read as an empty table: each key settles its default. */
	bool unset = lua_isnil(rd->L, -1);
	if (unset)
		lua_newtable(rd->L);
	if (unset || config_is_table(rd, keypath))
		config_table_read(rd, -1, keypath, server_keys);
	if (unset)
		lua_pop(rd->L, 1);
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

/* jwt.name: key material, read with the algorithm rather than by the table. */
static void jwt_string(struct config_reader *rd, int tbl, const char *name, char **out)
{
	char keypath[64];
	snprintf(keypath, sizeof(keypath), "jwt.%s", name);
	lua_getfield(rd->L, tbl, name);
	config_read_string(rd, keypath, out);
	lua_pop(rd->L, 1);
}

/* The HMAC secret, inline or from a file; never shown in a message. */
static void read_secret(struct config_reader *rd, int tbl, struct token_config *tc)
{
	char *inline_secret = NULL, *file = NULL;
	size_t inline_len = 0;
	if (lua_getfield(rd->L, tbl, "secret") == LUA_TSTRING)
		lua_tolstring(rd->L, -1, &inline_len);
	lua_pop(rd->L, 1);
	jwt_string(rd, tbl, "secret", &inline_secret);
	jwt_string(rd, tbl, "secret_file", &file);
	if (inline_secret != NULL && strlen(inline_secret) != inline_len) {
		config_fail(rd, "jwt.secret", "the secret holds a NUL byte: give it as text");
	} else if (inline_secret != NULL && file != NULL) {
		config_fail(rd, "jwt.secret_file", "give jwt.secret or jwt.secret_file, not both");
	} else if (inline_secret != NULL) {
		tc->keylen = strlen(inline_secret);
		tc->key = (unsigned char *)inline_secret;
		inline_secret = NULL;
	} else if (file != NULL) {
		char *path = file_resolve(cfg_of(rd)->dir, file);
		char *text = path != NULL ? file_read(path) : NULL;
		struct stat st;
		if (text == NULL) {
			config_fail(rd, "jwt.secret_file", "cannot read %s: %s", path ? path : file,
				    strerror(errno));
		} else if (stat(path, &st) == 0 && (size_t)st.st_size != strlen(text)) {
			config_fail(
			    rd, "jwt.secret_file",
			    "%s holds a NUL byte: a secret file is text (sesamectl keygen writes "
			    "one)",
			    path);
			sodium_memzero(text, (size_t)st.st_size);
			free(text);
		} else {
			/* A trailing newline is the editor's, not the secret's. */
			size_t len = strlen(text);
			while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
				text[--len] = '\0';
			tc->key = (unsigned char *)text;
			tc->keylen = len;
		}
		free(path);
	} else {
		config_fail(rd, "jwt", "a key is needed: jwt.secret or jwt.secret_file");
	}
	/* RFC 7518 3.2: at least the hash's output, and never less than 32 bytes. */
	size_t least = TOKENS_MIN_SECRET;
	if (tc->alg >= 0 && jwa_get(tc->alg)->family == 'H' &&
	    (size_t)EVP_MD_get_size(jwa_get(tc->alg)->md()) > least)
		least = (size_t)EVP_MD_get_size(jwa_get(tc->alg)->md());
	if (tc->key != NULL && tc->keylen < least)
		config_fail(
		    rd, tc->keylen && file ? "jwt.secret_file" : "jwt.secret",
		    "the secret is %zu bytes long; an HMAC secret for %s needs at least %zu",
		    tc->keylen, jwa_get(tc->alg)->name, least);
	if (inline_secret != NULL)
		sodium_memzero(inline_secret, strlen(inline_secret));
	free(inline_secret);
	free(file);
}

/* Adds the key at file (private: the signing key, first) to tc->keys; keypath names it. */
static bool add_key(struct config_reader *rd, const char *keypath, const char *file,
		    bool private_key)
{
	struct token_config *tc = &cfg_of(rd)->jwt;
	const struct jwa_alg *a = jwa_get(tc->alg);
	char err[600] = "out of memory";
	struct token_key k = {0}, *grown;
	char *path = file_resolve(cfg_of(rd)->dir, file);
	if (path != NULL)
		k.pkey = keys_load(path, private_key, a, err, sizeof(err));
	free(path);
	if (k.pkey == NULL)
		goto refused;
	if (!keys_thumbprint(k.pkey, a, k.kid)) {
		snprintf(err, sizeof(err), "cannot compute the key's thumbprint");
		goto refused;
	}
	if ((grown = realloc(tc->keys, (tc->nkeys + 1) * sizeof(*grown))) == NULL) {
		snprintf(err, sizeof(err), "out of memory");
		goto refused;
	}
	tc->keys = grown;
	tc->keys[tc->nkeys++] = k;
	return true;
refused:
	config_fail(rd, keypath, "%s", err);
	keys_free(k.pkey);
	return false;
}

/* The public key file: the private key's other half, checked, then not kept. */
static void check_public_key(struct config_reader *rd, const char *file)
{
	struct token_config *tc = &cfg_of(rd)->jwt;
	char err[600];
	char *path = file_resolve(cfg_of(rd)->dir, file);
	struct evp_pkey_st *pub =
	    path != NULL ? keys_load(path, false, jwa_get(tc->alg), err, sizeof(err)) : NULL;
	if (pub == NULL)
		config_fail(rd, "jwt.public_key_file", "%s", path != NULL ? err : "out of memory");
	else if (!keys_match(tc->keys[0].pkey, pub))
		config_fail(rd, "jwt.public_key_file",
			    "%s is not the public half of jwt.private_key_file", path);
	keys_free(pub);
	free(path);
}

/* An RS or ES key pair and the previous public keys, loaded now, once. */
static void read_key_pair(struct config_reader *rd, int tbl)
{
	const char *name = jwa_get(cfg_of(rd)->jwt.alg)->name;
	char *private_file = NULL, *public_file = NULL, **previous = NULL;
	size_t nprevious = 0;
	jwt_string(rd, tbl, "private_key_file", &private_file);
	jwt_string(rd, tbl, "public_key_file", &public_file);
	if (lua_getfield(rd->L, tbl, "previous_keys") != LUA_TNIL)
		config_read_strings(rd, -1, "jwt.previous_keys", &previous, &nprevious);
	lua_pop(rd->L, 1);
	if (private_file == NULL || public_file == NULL)
		config_fail(
		    rd, private_file == NULL ? "jwt.private_key_file" : "jwt.public_key_file",
		    "%s signs with a key pair: jwt.private_key_file and jwt.public_key_file are "
		    "both needed (sesamectl keygen -a %s writes them)",
		    name, name);
	else if (add_key(rd, "jwt.private_key_file", private_file, true))
		check_public_key(rd, public_file);
	for (size_t i = 0; i < nprevious; i++) {
		add_key(rd, "jwt.previous_keys", previous[i], false);
		free(previous[i]);
	}
	free(previous);
	free(private_file);
	free(public_file);
}

/* One kind of key per algorithm: a secret for HS*, key files for RS* and ES*. */
static void read_key(struct config_reader *rd, int tbl)
{
	const struct jwa_alg *a = jwa_get(cfg_of(rd)->jwt.alg);
	static const char *const secret_keys[] = {"secret", "secret_file", NULL};
	static const char *const pair_keys[] = {"private_key_file", "public_key_file",
						"previous_keys", NULL};
	const char *const *wrong = a->family == 'H' ? pair_keys : secret_keys;
	for (; *wrong != NULL; wrong++) {
		char keypath[64];
		snprintf(keypath, sizeof(keypath), "jwt.%s", *wrong);
		if (lua_getfield(rd->L, tbl, *wrong) != LUA_TNIL)
			config_fail(rd, keypath, "%s signs with %s, not jwt.%s", a->name,
				    a->family == 'H' ? "a secret (jwt.secret or jwt.secret_file)"
						     : "a key pair (jwt.private_key_file and "
						       "jwt.public_key_file)",
				    *wrong);
		lua_pop(rd->L, 1);
	}
	if (a->family == 'H')
		read_secret(rd, tbl, &cfg_of(rd)->jwt);
	else
		read_key_pair(rd, tbl);
}

/* jwt.algorithm, and then the key it signs with. */
static void read_algorithm(struct config_reader *rd, int tbl, const struct config_key *key,
			   const char *keypath)
{
	struct token_config *tc = &cfg_of(rd)->jwt;
	char *alg = NULL;
	config_read_string(rd, keypath, &alg);
	tc->alg = jwa_parse(alg != NULL ? alg : "HS256");
	if (tc->alg < 0)
		config_fail(rd, keypath,
			    "'%s' is not one of HS256, HS384, HS512, RS256, RS384, RS512, ES256, "
			    "ES384, ES512",
			    alg);
	else
		read_key(rd, tbl);
	free(alg);
}

static void read_samesite(struct config_reader *rd, int tbl, const struct config_key *key,
			  const char *keypath)
{
	char **samesite = &cfg_of(rd)->jwt.cookie_samesite;
	config_read_string(rd, keypath, samesite);
	if (*samesite == NULL)
		*samesite = strdup("Lax");
	else if (strcmp(*samesite, "Lax") != 0 && strcmp(*samesite, "Strict") != 0 &&
		 strcmp(*samesite, "None") != 0)
		config_fail(rd, keypath, "expected \"Lax\", \"Strict\" or \"None\"");
}

#define JWT(field)  offsetof(struct config, jwt.field)
#define MAX_SECONDS (100L * 365 * 86400)

static const struct config_key jwt_keys[] = {
    {"algorithm", read_algorithm, 0, 0, JWT(alg)},
    /* Read with the algorithm, which decides which of them a key needs. */
    {"secret", NULL, 0, 0, 0},
    {"secret_file", NULL, 0, 0, 0},
    {"private_key_file", NULL, 0, 0, 0},
    {"public_key_file", NULL, 0, 0, 0},
    {"previous_keys", NULL, 0, 0, 0},
    {"access_expires", config_expiry, 1, MAX_SECONDS, JWT(access_expires)},
    {"refresh_expires", config_expiry, 1, MAX_SECONDS, JWT(refresh_expires)},
    {"leeway", config_long, 0, 3600, JWT(leeway)},
    {"family_lifetime", config_long, 1, MAX_SECONDS, JWT(family_lifetime)},
    {"refresh_grace", config_ms, 0, 60000, JWT(refresh_grace_ms)},
    {"revocation_refresh", config_ms, 50, 3600000, JWT(revocation_refresh_ms)},
    {"cookies", config_bool, 0, 0, JWT(cookies)},
    {"cookie_secure", config_bool, 0, 0, JWT(cookie_secure)},
    {"cookie_samesite", read_samesite, 0, 0, JWT(cookie_samesite)},
    {"issuer", config_string, 0, 0, JWT(issuer)},
    {"audience", config_string, 0, 0, JWT(audience)},
    {NULL, NULL, 0, 0, 0},
};

static void read_jwt(struct config_reader *rd, int top, const struct config_key *key,
		     const char *keypath)
{
	struct token_config *tc = &cfg_of(rd)->jwt;
	if (lua_isnil(rd->L, -1) || !config_is_table(rd, keypath))
		return;
	tc->cookie_secure = true;
	config_table_read(rd, -1, keypath, jwt_keys);
	tc->configured = tc->key != NULL || tc->nkeys > 0;
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
		char *full = file_resolve(cfg->dir, patterns[i]);
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

/* The settings' own names: plugins, password, storage and the validators' tables are the
 * plugin loader's. */
static const struct config_key top_keys[] = {
    {"server", read_server, 0, 0, 0}, {"routes", read_routes, 0, 0, 0}, {"plugins", NULL, 0, 0, 0},
    {"password", NULL, 0, 0, 0},      {"jwt", read_jwt, 0, 0, 0},	{"storage", NULL, 0, 0, 0},
    {"email", NULL, 0, 0, 0},	      {"username", NULL, 0, 0, 0},	{NULL, NULL, 0, 0, 0},
};

/* Reads every setting; lua_pcall'd with the settings at index 1 and the loader at 2. */
static int read_settings(lua_State *L)
{
	struct loader *ld = lua_touserdata(L, 2);
	struct config_reader rd = {
	    .L = L, .errs = ld->errs, .file = ld->cfg->path, .src = ld->src, .base = ld->cfg};
	lua_settop(L, 1);
	config_table_read(&rd, 1, "", top_keys);
	return 0;
}

/* A configuration is data: one that runs this long is stuck in a loop. */
static void count_hook(lua_State *L, lua_Debug *ar)
{
	struct loader *ld = *(struct loader **)lua_getextraspace(L);
	ld->instructions += 1000;
	if (ld->instructions > 100000000)
		luaL_error(L, "the configuration runs too long (stuck in a loop?)");
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
	cfg->max_body = 65536;
	cfg->max_header = 16384;
	cfg->timeout = 30;
	cfg->keepalive = 15;
	cfg->shutdown_timeout = 30;
	cfg->access_log = strdup("stderr");
	cfg->log_level = LOG_LEVEL_INFO;
	cfg->handler_instructions = 50000000;
	cfg->handler_timeout = 30;
	cfg->jwt.access_expires = 900;
	cfg->jwt.refresh_expires = 2592000;
	cfg->jwt.family_lifetime = 90L * 86400;
	cfg->jwt.refresh_grace_ms = 2000;
	cfg->jwt.revocation_refresh_ms = 1000;
	cfg->lua_memory = 256u << 20;
	cfg->json_depth = 32;
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

struct config *config_load(const char *path, struct config_errors *errs)
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
	*(struct loader **)lua_getextraspace(ld.L) = &ld;
	lua_sethook(ld.L, count_hook, LUA_MASKCOUNT, 1000);
	if (run_chunk(&ld) != 0)
		goto fail;
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
	if (errs->n > before)
		goto fail;
	lua_close(ld.L);
	free(ld.src);
	return cfg;
fail:
	if (ld.L != NULL)
		lua_close(ld.L);
	free(ld.src);
	config_free(cfg);
	return NULL;
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
	tokens_config_clear(&cfg->jwt);
	free(cfg);
}
