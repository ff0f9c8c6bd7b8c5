/*
 * config_jwt.c: reads the jwt section of the configuration: the algorithm, its key, the
 * tokens' lifetimes and cookies.
 *
 * Most keys are read by the section's table. The key material is not: which keys the
 * algorithm needs (a secret for HS*, a key pair for RS* and ES*) depends on the algorithm, so
 * the algorithm's kind reads them, refuses the other family's, and loads the keys now, once:
 * a secret (inline or from a file, never shown in a message, at least as long as the hash's
 * output) or the PEM key pair, its public half checked, and the previous public keys.
 */
#include "autoconfig.h"

#include "config_jwt.h"

#include <errno.h>
#include <lua.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file.h"
#include "jwa.h"
#include "keys.h"
#include "log.h"
#include "plural.h"
#include "tokens.h"

/* The token settings the section is read into. */
static struct token_config *tc_of(const struct config_reader *rd)
{
	return rd->base;
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
		char *path = file_resolve(rd->dir, file);
		size_t len = 0;
		char *text = path != NULL ? file_read_len(path, &len) : NULL;
		if (text == NULL) {
			config_fail(rd, "jwt.secret_file", "cannot read %s: %s", path ? path : file,
				    strerror(errno));
		} else if (len != strlen(text)) {
			config_fail(
			    rd, "jwt.secret_file",
			    "%s holds a NUL byte: a secret file is text (sesamectl keygen writes "
			    "one)",
			    path);
			file_free_secret(text, len);
		} else {
			/* A trailing newline is the editor's, not the secret's. */
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
		config_fail(rd, tc->keylen && file ? "jwt.secret_file" : "jwt.secret",
			    "the secret is %zu %s long; an HMAC secret for %s needs at least %zu",
			    tc->keylen, plural((long long)tc->keylen, "byte", "bytes"),
			    jwa_get(tc->alg)->name, least);
	if (inline_secret != NULL)
		file_free_secret(inline_secret, strlen(inline_secret));
	free(file);
}

/* Adds the key at file (private: the signing key, first) to tc->keys; keypath names it. */
static bool add_key(struct config_reader *rd, const char *keypath, const char *file,
		    bool private_key)
{
	struct token_config *tc = tc_of(rd);
	const struct jwa_alg *a = jwa_get(tc->alg);
	char err[LOG_ERR_MAX] = "out of memory";
	struct token_key k = {0}, *grown;
	char *path = file_resolve(rd->dir, file);
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
	struct token_config *tc = tc_of(rd);
	char err[LOG_ERR_MAX];
	char *path = file_resolve(rd->dir, file);
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
	const char *name = jwa_get(tc_of(rd)->alg)->name;
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
	const struct jwa_alg *a = jwa_get(tc_of(rd)->alg);
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
		read_secret(rd, tbl, tc_of(rd));
	else
		read_key_pair(rd, tbl);
}

/* jwt.algorithm, and then the key it signs with. */
static void read_algorithm(struct config_reader *rd, int tbl, const struct config_key *key,
			   const char *keypath)
{
	int *out = config_field(rd, key);
	char *alg = NULL;
	config_read_string(rd, keypath, &alg);
	*out = jwa_parse(alg != NULL ? alg : "HS256");
	if (*out < 0)
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
	char **samesite = config_field(rd, key);
	config_read_string(rd, keypath, samesite);
	if (*samesite == NULL)
		*samesite = strdup("Lax");
	else if (strcmp(*samesite, "Lax") != 0 && strcmp(*samesite, "Strict") != 0 &&
		 strcmp(*samesite, "None") != 0)
		config_fail(rd, keypath, "expected \"Lax\", \"Strict\" or \"None\"");
}

/* A cookie Path (RFC 6265 path-value) kept to printable characters without ';' or space, so
 * that it cannot add an attribute of its own. */
static bool cookie_path_ok(const char *path)
{
	if (path[0] != '/')
		return false;
	for (const char *p = path; *p != '\0'; p++) {
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == ';')
			return false;
	}
	return true;
}

static void read_cookie_path(struct config_reader *rd, int tbl, const struct config_key *key,
			     const char *keypath)
{
	char **path = config_field(rd, key);
	config_read_string(rd, keypath, path);
	if (*path == NULL)
		*path = strdup(TOKENS_REFRESH_COOKIE_PATH);
	else if (!cookie_path_ok(*path))
		config_fail(rd, keypath,
			    "expected a path that starts with / and holds printable characters, "
			    "no ';' or space");
}

#define JWT(field)  offsetof(struct token_config, field)
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
    {"revocation_capacity", config_long, 64, 67108864, JWT(revocation_capacity)},
    {"cookies", config_bool, 0, 0, JWT(cookies)},
    {"cookie_secure", config_bool, 0, 0, JWT(cookie_secure)},
    {"cookie_samesite", read_samesite, 0, 0, JWT(cookie_samesite)},
    {"cookie_host_prefix", config_bool, 0, 0, JWT(cookie_host_prefix)},
    {"refresh_cookie_path", read_cookie_path, 0, 0, JWT(refresh_cookie_path)},
    {"issuer", config_string, 0, 0, JWT(issuer)},
    {"audience", config_string, 0, 0, JWT(audience)},
    {NULL, NULL, 0, 0, 0},
};

void config_jwt_read(struct config_reader *rd, int top, const struct config_key *key,
		     const char *keypath)
{
	struct token_config *tc = config_field(rd, key);
	struct config_reader section = *rd;
	if (lua_isnil(rd->L, -1) || !config_is_table(rd, keypath))
		return;
	section.base = tc;
	tc->cookie_secure = true;
	config_table_read(&section, -1, keypath, jwt_keys);
	if (tc->cookie_host_prefix && !tc->cookie_secure)
		config_fail(rd, "jwt.cookie_host_prefix",
			    "a browser takes __Host- and __Secure- cookies only with Secure: "
			    "jwt.cookie_secure cannot be false");
	tc->configured = tc->key != NULL || tc->nkeys > 0;
}
