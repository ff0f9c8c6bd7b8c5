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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jwa.h"
#include "keys.h"
#include "listen.h"
#include "plugin.h"

#define MAX_WORKERS 128
#define MAX_THREADS 64

struct loader {
	lua_State *L;
	struct config *cfg;
	struct config_errors *errs;
	char *src; /* the file's text, to find lines in */
	long instructions;
};

static const char *const top_keys[] = {"server",  "routes", "plugins",	"password", "jwt",
				       "storage", "email",  "username", NULL};
static const char *const server_keys[] = {
    "listen",	       "workers",    "threads",	   "max_body",
    "max_header",      "timeout",    "keepalive",  "shutdown_timeout",
    "debug",	       "access_log", "log_level",  "handler_instructions",
    "handler_timeout", "lua_memory", "json_depth", NULL};

static void fail(struct loader *ld, const char *keypath, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fail(struct loader *ld, const char *keypath, const char *fmt, ...)
{
	char msg[768];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	config_error_at(ld->errs, ld->cfg->path, ld->src, keypath, "%s", msg);
}

/* ---- reading values ---- */

static void unknown_key(struct loader *ld, const char *prefix, const char *key,
			const char *const *known)
{
	char path[160];
	snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
	for (const char *const *k = known; *k != NULL; k++) {
		if (config_similar(key, *k)) {
			fail(ld, path, "unknown key (did you mean '%s'?)", *k);
			return;
		}
	}
	fail(ld, path, "unknown key");
}

/* Reports every key of the table at idx that is not in known. */
static void check_keys(struct loader *ld, int idx, const char *prefix, const char *const *known)
{
	lua_State *L = ld->L;
	idx = lua_absindex(L, idx);
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING) {
			fail(ld, prefix, "keys must be names, found a %s key",
			     luaL_typename(L, -1));
			continue;
		}
		const char *key = lua_tostring(L, -1);
		bool ok = false;
		for (const char *const *k = known; *k != NULL && !ok; k++)
			ok = strcmp(*k, key) == 0;
		if (!ok)
			unknown_key(ld, prefix, key, known);
	}
}

/* Pushes server[key] and returns its type, LUA_TNIL when unset. */
static int field(struct loader *ld, int tbl, const char *key)
{
	return lua_getfield(ld->L, tbl, key);
}

static void read_int(struct loader *ld, int tbl, const char *section, const char *key, long min,
		     long max, long *out)
{
	char path[96];
	snprintf(path, sizeof(path), "%s.%s", section, key);
	int t = field(ld, tbl, key);
	if (t != LUA_TNIL) {
		int isint = 0;
		lua_Integer v = lua_tointegerx(ld->L, -1, &isint);
		if (t != LUA_TNUMBER || !isint)
			fail(ld, path, "expected a whole number, found %s",
			     luaL_typename(ld->L, -1));
		else if (v < min || v > max)
			fail(ld, path, "%lld is out of range (%ld to %ld)", (long long)v, min, max);
		else
			*out = (long)v;
	}
	lua_pop(ld->L, 1);
}

static void read_bool(struct loader *ld, int tbl, const char *section, const char *key, bool *out)
{
	char path[96];
	snprintf(path, sizeof(path), "%s.%s", section, key);
	int t = field(ld, tbl, key);
	if (t == LUA_TBOOLEAN)
		*out = lua_toboolean(ld->L, -1);
	else if (t != LUA_TNIL)
		fail(ld, path, "expected true or false, found %s", luaL_typename(ld->L, -1));
	lua_pop(ld->L, 1);
}

static char *resolve_path(const struct config *cfg, const char *p)
{
	if (p[0] == '/')
		return strdup(p);
	size_t n = strlen(cfg->dir) + strlen(p) + 2;
	char *out = malloc(n);
	if (out != NULL)
		snprintf(out, n, "%s/%s", cfg->dir, p);
	return out;
}

/* Reads a string or a list of strings into a NULL-free array. */
static void read_strings(struct loader *ld, int idx, const char *path, char ***out, size_t *n)
{
	lua_State *L = ld->L;
	idx = lua_absindex(L, idx);
	if (lua_type(L, idx) == LUA_TSTRING) {
		*out = calloc(1, sizeof(char *));
		(*out)[0] = strdup(lua_tostring(L, idx));
		*n = 1;
		return;
	}
	if (lua_type(L, idx) != LUA_TTABLE) {
		fail(ld, path, "expected a string or a list of strings, found %s",
		     luaL_typename(L, idx));
		return;
	}
	size_t len = (size_t)luaL_len(L, idx);
	lua_pushnil(L);
	size_t count = 0;
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		count++;
	}
	if (count != len) {
		fail(ld, path, "expected a list of strings, found a table with other keys");
		return;
	}
	*out = calloc(len + 1, sizeof(char *));
	for (size_t i = 0; i < len; i++) {
		lua_rawgeti(L, idx, (lua_Integer)i + 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			fail(ld, path, "item %zu: expected a string, found %s", i + 1,
			     luaL_typename(L, -1));
		else
			(*out)[(*n)++] = strdup(lua_tostring(L, -1));
		lua_pop(L, 1);
	}
}

static void read_listen(struct loader *ld, int tbl)
{
	struct config *cfg = ld->cfg;
	if (field(ld, tbl, "listen") != LUA_TNIL) {
		for (size_t i = 0; i < cfg->nlisten; i++)
			free(cfg->listen[i]);
		free(cfg->listen);
		cfg->listen = NULL;
		cfg->nlisten = 0;
		read_strings(ld, -1, "server.listen", &cfg->listen, &cfg->nlisten);
	}
	bool typed = lua_isnil(ld->L, -1) || cfg->nlisten > 0 || lua_istable(ld->L, -1);
	lua_pop(ld->L, 1);
	if (cfg->nlisten == 0 && typed)
		fail(ld, "server.listen", "at least one address is needed");
	for (size_t i = 0; i < cfg->nlisten; i++) {
		struct listen_addr a;
		char err[160];
		if (listen_parse(cfg->listen[i], &a, err, sizeof(err)) != 0)
			fail(ld, "server.listen", "%s", err);
	}
}

static void read_workers(struct loader *ld, int tbl)
{
	int t = field(ld, tbl, "workers");
	lua_State *L = ld->L;
	if (t == LUA_TSTRING && strcmp(lua_tostring(L, -1), "auto") == 0) {
		ld->cfg->workers = 0;
	} else if (t != LUA_TNIL) {
		int isint = 0;
		lua_Integer v = lua_tointegerx(L, -1, &isint);
		if (t != LUA_TNUMBER || !isint || v < 1 || v > MAX_WORKERS)
			fail(ld, "server.workers", "expected \"auto\" or a number from 1 to %d",
			     MAX_WORKERS);
		else
			ld->cfg->workers = (int)v;
	}
	lua_pop(L, 1);
	if (ld->cfg->workers == 0) {
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		ld->cfg->workers = cores < 1 ? 1 : cores > MAX_WORKERS ? MAX_WORKERS : (int)cores;
	}
}

static void read_access_log(struct loader *ld, int tbl)
{
	lua_State *L = ld->L;
	int t = field(ld, tbl, "access_log");
	if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
		free(ld->cfg->access_log);
		ld->cfg->access_log = NULL;
	} else if (t == LUA_TSTRING) {
		const char *v = lua_tostring(L, -1);
		free(ld->cfg->access_log);
		ld->cfg->access_log =
		    strcmp(v, "stderr") == 0 ? strdup(v) : resolve_path(ld->cfg, v);
	} else if (t != LUA_TNIL) {
		fail(ld, "server.access_log", "expected \"stderr\", a file path or false");
	}
	lua_pop(L, 1);
	/* Workers open it after fork: find out now, not in a crash loop, that they cannot. */
	const char *file = ld->cfg->access_log;
	if (file != NULL && strcmp(file, "stderr") != 0) {
		int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			fail(ld, "server.access_log", "cannot open %s: %s", file, strerror(errno));
		else
			close(fd);
	}
}

static void read_log_level(struct loader *ld, int tbl)
{
	lua_State *L = ld->L;
	int t = field(ld, tbl, "log_level");
	if (t != LUA_TNIL &&
	    (t != LUA_TSTRING || log_level_parse(lua_tostring(L, -1), &ld->cfg->log_level) != 0))
		fail(ld, "server.log_level", "expected \"error\", \"warn\", \"info\" or \"debug\"");
	lua_pop(L, 1);
}

static void read_server(struct loader *ld)
{
	lua_State *L = ld->L;
	struct config *cfg = ld->cfg;
	if (lua_getfield(L, 1, "server") == LUA_TNIL) {
		lua_pop(L, 1);
		lua_newtable(L);
	} else if (!lua_istable(L, -1)) {
		fail(ld, "server", "expected a table, found %s", luaL_typename(L, -1));
		lua_pop(L, 1);
		return;
	}
	int tbl = lua_gettop(L);
	check_keys(ld, tbl, "server", server_keys);
	read_listen(ld, tbl);
	read_workers(ld, tbl);

	long v;
	v = cfg->threads;
	read_int(ld, tbl, "server", "threads", 1, MAX_THREADS, &v);
	cfg->threads = (int)v;
	v = (long)cfg->max_body;
	read_int(ld, tbl, "server", "max_body", 0, 64L << 20, &v);
	cfg->max_body = (size_t)v;
	v = (long)cfg->max_header;
	read_int(ld, tbl, "server", "max_header", 1024, 1L << 20, &v);
	cfg->max_header = (size_t)v;
	v = cfg->timeout;
	read_int(ld, tbl, "server", "timeout", 1, 3600, &v);
	cfg->timeout = (int)v;
	v = cfg->keepalive;
	read_int(ld, tbl, "server", "keepalive", 1, 3600, &v);
	cfg->keepalive = (int)v;
	v = cfg->shutdown_timeout;
	read_int(ld, tbl, "server", "shutdown_timeout", 1, 3600, &v);
	cfg->shutdown_timeout = (int)v;
	read_bool(ld, tbl, "server", "debug", &cfg->debug);
	read_access_log(ld, tbl);
	read_log_level(ld, tbl);
	read_int(ld, tbl, "server", "handler_instructions", 10000, 1L << 40,
		 &cfg->handler_instructions);
	v = cfg->handler_timeout;
	read_int(ld, tbl, "server", "handler_timeout", 1, 3600, &v);
	cfg->handler_timeout = (int)v;
	v = (long)cfg->lua_memory;
	read_int(ld, tbl, "server", "lua_memory", 1L << 20, 1L << 40, &v);
	cfg->lua_memory = (size_t)v;
	v = cfg->json_depth;
	read_int(ld, tbl, "server", "json_depth", 1, 1000, &v);
	cfg->json_depth = (int)v;
	lua_pop(L, 1);
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

static const char *const jwt_keys[] = {"algorithm",
				       "secret",
				       "secret_file",
				       "private_key_file",
				       "public_key_file",
				       "previous_keys",
				       "access_expires",
				       "refresh_expires",
				       "issuer",
				       "audience",
				       "leeway",
				       "cookies",
				       "cookie_secure",
				       "cookie_samesite",
				       "family_lifetime",
				       "refresh_grace",
				       "revocation_refresh",
				       NULL};

/* A duration in seconds, fractions allowed, into milliseconds. */
static void read_ms(struct loader *ld, int tbl, const char *key, long min_ms, long max_ms,
		    long *out)
{
	char path[64];
	snprintf(path, sizeof(path), "jwt.%s", key);
	int t = field(ld, tbl, key);
	if (t != LUA_TNIL) {
		double v = lua_tonumber(ld->L, -1) * 1000.0;
		if (t != LUA_TNUMBER || !(v >= (double)min_ms && v <= (double)max_ms))
			fail(ld, path, "expected a number of seconds from %g to %g",
			     (double)min_ms / 1000.0, (double)max_ms / 1000.0);
		else
			*out = (long)(v + 0.5);
	}
	lua_pop(ld->L, 1);
}

/* An expiry: seconds, or false for none (0). */
static void read_expiry(struct loader *ld, int tbl, const char *key, long *out)
{
	char path[64];
	snprintf(path, sizeof(path), "jwt.%s", key);
	int t = field(ld, tbl, key);
	if (t == LUA_TBOOLEAN && !lua_toboolean(ld->L, -1))
		*out = 0;
	else if (t != LUA_TNIL) {
		int isint = 0;
		lua_Integer v = lua_tointegerx(ld->L, -1, &isint);
		if (t != LUA_TNUMBER || !isint || v < 1 || v > 100L * 365 * 86400)
			fail(ld, path, "expected a number of seconds (1 or more) or false");
		else
			*out = (long)v;
	}
	lua_pop(ld->L, 1);
}

static void read_string(struct loader *ld, int tbl, const char *section, const char *key,
			char **out)
{
	char path[64];
	snprintf(path, sizeof(path), "%s.%s", section, key);
	int t = field(ld, tbl, key);
	if (t == LUA_TSTRING) {
		free(*out);
		*out = strdup(lua_tostring(ld->L, -1));
	} else if (t != LUA_TNIL) {
		fail(ld, path, "expected a string, found %s", luaL_typename(ld->L, -1));
	}
	lua_pop(ld->L, 1);
}

static char *read_file(const char *path);

/* The HMAC secret, inline or from a file; never shown in a message. */
static void read_secret(struct loader *ld, int tbl, struct token_config *tc)
{
	char *inline_secret = NULL, *file = NULL;
	size_t inline_len = 0;
	if (field(ld, tbl, "secret") == LUA_TSTRING)
		lua_tolstring(ld->L, -1, &inline_len);
	lua_pop(ld->L, 1);
	read_string(ld, tbl, "jwt", "secret", &inline_secret);
	read_string(ld, tbl, "jwt", "secret_file", &file);
	if (inline_secret != NULL && strlen(inline_secret) != inline_len) {
		fail(ld, "jwt.secret", "the secret holds a NUL byte: give it as text");
	} else if (inline_secret != NULL && file != NULL) {
		fail(ld, "jwt.secret_file", "give jwt.secret or jwt.secret_file, not both");
	} else if (inline_secret != NULL) {
		tc->keylen = strlen(inline_secret);
		tc->key = (unsigned char *)inline_secret;
		inline_secret = NULL;
	} else if (file != NULL) {
		char *path = resolve_path(ld->cfg, file);
		char *text = path != NULL ? read_file(path) : NULL;
		struct stat st;
		if (text == NULL) {
			fail(ld, "jwt.secret_file", "cannot read %s: %s", path ? path : file,
			     strerror(errno));
		} else if (stat(path, &st) == 0 && (size_t)st.st_size != strlen(text)) {
			fail(ld, "jwt.secret_file",
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
		fail(ld, "jwt", "a key is needed: jwt.secret or jwt.secret_file");
	}
	/* RFC 7518 3.2: at least the hash's output, and never less than 32 bytes. */
	size_t least = TOKENS_MIN_SECRET;
	if (tc->alg >= 0 && jwa_get(tc->alg)->family == 'H' &&
	    (size_t)EVP_MD_get_size(jwa_get(tc->alg)->md()) > least)
		least = (size_t)EVP_MD_get_size(jwa_get(tc->alg)->md());
	if (tc->key != NULL && tc->keylen < least)
		fail(ld, tc->keylen && file ? "jwt.secret_file" : "jwt.secret",
		     "the secret is %zu bytes long; an HMAC secret for %s needs at least %zu",
		     tc->keylen, jwa_get(tc->alg)->name, least);
	if (inline_secret != NULL)
		sodium_memzero(inline_secret, strlen(inline_secret));
	free(inline_secret);
	free(file);
}

/* Adds the key at file (private: the signing key, first) to tc->keys; keypath names it. */
static bool add_key(struct loader *ld, const char *keypath, const char *file, bool private_key)
{
	struct token_config *tc = &ld->cfg->jwt;
	const struct jwa_alg *a = jwa_get(tc->alg);
	char err[600] = "out of memory";
	struct token_key k = {0}, *grown;
	char *path = resolve_path(ld->cfg, file);
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
	fail(ld, keypath, "%s", err);
	keys_free(k.pkey);
	return false;
}

/* The public key file: the private key's other half, checked, then not kept. */
static void check_public_key(struct loader *ld, const char *file)
{
	struct token_config *tc = &ld->cfg->jwt;
	char err[600];
	char *path = resolve_path(ld->cfg, file);
	struct evp_pkey_st *pub =
	    path != NULL ? keys_load(path, false, jwa_get(tc->alg), err, sizeof(err)) : NULL;
	if (pub == NULL)
		fail(ld, "jwt.public_key_file", "%s", path != NULL ? err : "out of memory");
	else if (!keys_match(tc->keys[0].pkey, pub))
		fail(ld, "jwt.public_key_file", "%s is not the public half of jwt.private_key_file",
		     path);
	keys_free(pub);
	free(path);
}

/* An RS or ES key pair and the previous public keys, loaded now, once. */
static void read_key_pair(struct loader *ld, int tbl)
{
	const char *name = jwa_get(ld->cfg->jwt.alg)->name;
	char *private_file = NULL, *public_file = NULL, **previous = NULL;
	size_t nprevious = 0;
	read_string(ld, tbl, "jwt", "private_key_file", &private_file);
	read_string(ld, tbl, "jwt", "public_key_file", &public_file);
	if (field(ld, tbl, "previous_keys") != LUA_TNIL)
		read_strings(ld, -1, "jwt.previous_keys", &previous, &nprevious);
	lua_pop(ld->L, 1);
	if (private_file == NULL || public_file == NULL)
		fail(ld, private_file == NULL ? "jwt.private_key_file" : "jwt.public_key_file",
		     "%s signs with a key pair: jwt.private_key_file and jwt.public_key_file are "
		     "both needed (sesamectl keygen -a %s writes them)",
		     name, name);
	else if (add_key(ld, "jwt.private_key_file", private_file, true))
		check_public_key(ld, public_file);
	for (size_t i = 0; i < nprevious; i++) {
		add_key(ld, "jwt.previous_keys", previous[i], false);
		free(previous[i]);
	}
	free(previous);
	free(private_file);
	free(public_file);
}

/* One kind of key per algorithm: a secret for HS*, key files for RS* and ES*. */
static void read_key(struct loader *ld, int tbl)
{
	const struct jwa_alg *a = jwa_get(ld->cfg->jwt.alg);
	static const char *const secret_keys[] = {"secret", "secret_file", NULL};
	static const char *const pair_keys[] = {"private_key_file", "public_key_file",
						"previous_keys", NULL};
	const char *const *wrong = a->family == 'H' ? pair_keys : secret_keys;
	for (; *wrong != NULL; wrong++) {
		char keypath[64];
		snprintf(keypath, sizeof(keypath), "jwt.%s", *wrong);
		if (field(ld, tbl, *wrong) != LUA_TNIL)
			fail(ld, keypath, "%s signs with %s, not jwt.%s", a->name,
			     a->family == 'H' ? "a secret (jwt.secret or jwt.secret_file)"
					      : "a key pair (jwt.private_key_file and "
						"jwt.public_key_file)",
			     *wrong);
		lua_pop(ld->L, 1);
	}
	if (a->family == 'H')
		read_secret(ld, tbl, &ld->cfg->jwt);
	else
		read_key_pair(ld, tbl);
}

static void read_jwt(struct loader *ld)
{
	lua_State *L = ld->L;
	struct token_config *tc = &ld->cfg->jwt;
	int t = lua_getfield(L, 1, "jwt");
	if (t == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (t != LUA_TTABLE) {
		fail(ld, "jwt", "expected a table, found %s", luaL_typename(L, -1));
		lua_pop(L, 1);
		return;
	}
	int tbl = lua_gettop(L);
	check_keys(ld, tbl, "jwt", jwt_keys);
	char *alg = NULL;
	read_string(ld, tbl, "jwt", "algorithm", &alg);
	tc->alg = jwa_parse(alg != NULL ? alg : "HS256");
	if (tc->alg < 0)
		fail(ld, "jwt.algorithm",
		     "'%s' is not one of HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, "
		     "ES512",
		     alg);
	else
		read_key(ld, tbl);
	free(alg);
	read_expiry(ld, tbl, "access_expires", &tc->access_expires);
	read_expiry(ld, tbl, "refresh_expires", &tc->refresh_expires);
	read_int(ld, tbl, "jwt", "leeway", 0, 3600, &tc->leeway);
	read_int(ld, tbl, "jwt", "family_lifetime", 1, 100L * 365 * 86400, &tc->family_lifetime);
	read_ms(ld, tbl, "refresh_grace", 0, 60000, &tc->refresh_grace_ms);
	read_ms(ld, tbl, "revocation_refresh", 50, 3600000, &tc->revocation_refresh_ms);
	read_bool(ld, tbl, "jwt", "cookies", &tc->cookies);
	tc->cookie_secure = true;
	read_bool(ld, tbl, "jwt", "cookie_secure", &tc->cookie_secure);
	read_string(ld, tbl, "jwt", "cookie_samesite", &tc->cookie_samesite);
	if (tc->cookie_samesite == NULL)
		tc->cookie_samesite = strdup("Lax");
	else if (strcmp(tc->cookie_samesite, "Lax") != 0 &&
		 strcmp(tc->cookie_samesite, "Strict") != 0 &&
		 strcmp(tc->cookie_samesite, "None") != 0)
		fail(ld, "jwt.cookie_samesite", "expected \"Lax\", \"Strict\" or \"None\"");
	read_string(ld, tbl, "jwt", "issuer", &tc->issuer);
	read_string(ld, tbl, "jwt", "audience", &tc->audience);
	tc->configured = tc->key != NULL || tc->nkeys > 0;
	lua_pop(L, 1);
}

static void read_routes(struct loader *ld)
{
	lua_State *L = ld->L;
	char **patterns = NULL;
	size_t npatterns = 0;
	if (lua_getfield(L, 1, "routes") == LUA_TNIL) {
		patterns = calloc(2, sizeof(char *));
		patterns[0] = strdup("routes/*.lua");
		npatterns = 1;
	} else {
		read_strings(ld, -1, "routes", &patterns, &npatterns);
	}
	lua_pop(L, 1);

	for (size_t i = 0; i < npatterns; i++) {
		char *full = resolve_path(ld->cfg, patterns[i]);
		glob_t g;
		int rc = glob(full, 0, NULL, &g);
		if (rc == 0) {
			for (size_t j = 0; j < g.gl_pathc; j++)
				add_route_file(ld->cfg, g.gl_pathv[j]);
			globfree(&g);
		} else if (rc == GLOB_NOMATCH && has_glob_chars(patterns[i])) {
			log_warn("%s: routes: no file matches %s", ld->cfg->path, full);
		} else {
			fail(ld, "routes", "%s: %s", full,
			     rc == GLOB_NOMATCH ? "no such file" : "cannot be read");
		}
		free(full);
		free(patterns[i]);
	}
	free(patterns);
}

/* Reads every setting; lua_pcall'd with the settings at index 1 and the loader at 2. */
static int read_settings(lua_State *L)
{
	struct loader *ld = lua_touserdata(L, 2);
	lua_settop(L, 1);
	check_keys(ld, 1, "", top_keys);
	read_server(ld);
	read_routes(ld);
	read_jwt(ld);
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

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			char *grown = realloc(buf, cap);
			if (grown == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = grown;
		}
		size_t n = fread(buf + len, 1, 4096, f);
		len += n;
		if (n < 4096)
			break;
	}
	bool failed = ferror(f);
	fclose(f);
	if (failed) {
		free(buf);
		return NULL;
	}
	buf[len] = '\0';
	return buf;
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

	ld.src = cfg->dir != NULL ? read_file(path) : NULL;
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
	cfg->workers = workers < 1 ? 1 : workers > MAX_WORKERS ? MAX_WORKERS : workers;
}

static void free_strings(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
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
