/*
 * tokens.c: issues and verifies JSON Web Tokens.
 *
 * The claims are flask-jwt-extended's, so that a Flask service sharing the secret accepts
 * sesame's tokens: iat and nbf (now), jti (a random UUID4), type ("access" or "refresh"), sub
 * (the identity, a string), fresh (access tokens only), exp (left out when the expiry is
 * false), iss and aud when configured, and with cookies csrf (flask-jwt-extended's, which
 * the CSRF cookie and header repeat). sesame adds fam, the refresh family a token belongs to,
 * which flask-jwt-extended ignores, and the operator's own claims last (none of those names).
 * libjwt lays the claims out; an HMAC token is
 * signed by libjwt too, with the header {"alg":...,"typ":"JWT"}. An RS or ES token is signed
 * here with the key loaded at start (libjwt would parse its PEM file again for every token),
 * and its header adds the key's kid. Issuing is thread-safe: an HMAC or an ECDSA signature
 * takes microseconds and is made on the event loop, an RSA one milliseconds and is made on a
 * job thread (tokens_sign_slow; lua_jwt_sign.c decides).
 *
 * Verification is sesame's own, per RFC 8725 (see tokens.h). It runs on every forward-auth
 * request, so its hot path does no repeated set-up: the HMAC context is keyed once and
 * re-initialised per token, a header identical to the last one accepted is not decoded again,
 * the parts are base64url-decoded by table (b64url.c), and the claims are read by claims.c's
 * scanner, the JSON object only built when a caller asks for it.
 */
#include "autoconfig.h"

#include "tokens.h"

#include <jansson.h>
#include <jwt.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/params.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "b64url.h"
#include "claims.h"
#include "clock.h"
#include "jwa.h"
#include "keys.h"
#include "sesame/plugin.h"

void tokens_uuid4(char out[TOKENS_ID_LEN])
{
	unsigned char b[16];
	randombytes_buf(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, TOKENS_ID_LEN,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
		 b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
		 b[15]);
}

const char *const tokens_reserved_claims[] = {"iat", "nbf", "jti", "type",  "sub",  "exp",
					      "iss", "aud", "fam", "fresh", "csrf", NULL};

/* The operator's claims, after sesame's: a reserved name among them is refused. */
static int add_custom_claims(jwt_t *jwt, const json_t *claims)
{
	for (const char *const *name = tokens_reserved_claims; *name != NULL; name++) {
		if (json_object_get(claims, *name) != NULL)
			return -1;
	}
	char *text = json_dumps(claims, JSON_COMPACT);
	int rc =
	    text != NULL && strlen(text) <= TOKENS_CLAIMS_MAX ? jwt_add_grants_json(jwt, text) : -1;
	free(text);
	return rc;
}

/* The claims of the token req asks for. */
static int add_claims(jwt_t *jwt, const struct token_config *tc, const struct token_request *req)
{
	char jti[TOKENS_ID_LEN];
	long now = (long)clock_wall_s(), expires = req->expires;
	enum token_type type = req->type;
	if (expires < 0)
		expires = type == TOKEN_ACCESS ? tc->access_expires : tc->refresh_expires;
	if (req->jti != NULL)
		snprintf(jti, sizeof(jti), "%s", req->jti);
	else
		tokens_uuid4(jti);
	int rc = 0;
	if (type == TOKEN_ACCESS)
		rc |= jwt_add_grant_bool(jwt, "fresh", req->fresh);
	rc |= jwt_add_grant_int(jwt, "iat", now);
	rc |= jwt_add_grant(jwt, "jti", jti);
	rc |= jwt_add_grant(jwt, "type", type == TOKEN_ACCESS ? "access" : "refresh");
	rc |= jwt_add_grant(jwt, "sub", req->identity);
	if (req->family != NULL)
		rc |= jwt_add_grant(jwt, "fam", req->family);
	/* With cookies, each token carries the value its CSRF cookie and header must repeat. */
	if (tc->cookies) {
		char csrf[TOKENS_ID_LEN];
		tokens_uuid4(csrf);
		rc |= jwt_add_grant(jwt, "csrf", csrf);
	}
	rc |= jwt_add_grant_int(jwt, "nbf", now);
	long exp = expires > 0 ? now + expires : 0;
	if (req->not_after > 0 && (exp == 0 || exp > req->not_after))
		exp = req->not_after;
	if (exp > 0)
		rc |= jwt_add_grant_int(jwt, "exp", exp);
	if (tc->issuer != NULL)
		rc |= jwt_add_grant(jwt, "iss", tc->issuer);
	if (tc->audience != NULL)
		rc |= jwt_add_grant(jwt, "aud", tc->audience);
	if (req->claims != NULL)
		rc |= add_custom_claims(jwt, req->claims);
	return rc;
}

/* Appends base64url(bin) to out at *at; out has room (the caller sized it). */
static void append_b64url(char *out, size_t *at, size_t cap, const unsigned char *bin, size_t n)
{
	sodium_bin2base64(out + *at, cap - *at, bin, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	*at += strlen(out + *at);
}

/* header.claims.signature, signed with the current RS or ES key. */
static char *sign_with_key(const struct token_config *tc, jwt_t *jwt)
{
	const struct jwa_alg *a = jwa_get(tc->alg);
	json_t *h =
	    json_pack("{s:s, s:s, s:s}", "alg", a->name, "kid", tc->keys[0].kid, "typ", "JWT");
	char *header = h != NULL ? json_dumps(h, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
	char *claims = jwt_get_grants_json(jwt, NULL);
	char *token = NULL;
	unsigned char *sig = NULL;
	size_t siglen = 0, at = 0, cap;
	json_decref(h);
	if (header == NULL || claims == NULL)
		goto done;
	/* Each part's encoded length counts a NUL: room enough for the two dots. */
	cap = sodium_base64_ENCODED_LEN(strlen(header), sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
	      sodium_base64_ENCODED_LEN(strlen(claims), sodium_base64_VARIANT_URLSAFE_NO_PADDING) +
	      sodium_base64_ENCODED_LEN(KEYS_MAX_SIG, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	if ((token = malloc(cap)) == NULL)
		goto done;
	append_b64url(token, &at, cap, (const unsigned char *)header, strlen(header));
	token[at++] = '.';
	append_b64url(token, &at, cap, (const unsigned char *)claims, strlen(claims));
	sig = keys_sign(tc->keys[0].pkey, a, token, at, &siglen);
	if (sig == NULL || siglen > KEYS_MAX_SIG) {
		free(token);
		token = NULL;
		goto done;
	}
	token[at++] = '.';
	append_b64url(token, &at, cap, sig, siglen);
done:
	free(sig);
	free(header);
	free(claims);
	return token;
}

bool tokens_sign_slow(const struct token_config *tc)
{
	return tc->configured && jwa_get(tc->alg)->family == 'R';
}

char *tokens_issue(const struct token_config *tc, const struct token_request *req, char *err,
		   size_t errlen)
{
	jwt_t *jwt = NULL;
	char *token = NULL;
	if (!tc->configured) {
		snprintf(err, errlen,
			 "no JWT key is configured (jwt.secret, jwt.secret_file or "
			 "jwt.private_key_file)");
		return NULL;
	}
	if (jwt_new(&jwt) != 0 || add_claims(jwt, tc, req) != 0)
		goto fail;
	if (jwa_get(tc->alg)->family != 'H')
		token = sign_with_key(tc, jwt);
	else if (jwt_set_alg(jwt, (jwt_alg_t)tc->alg, tc->key, (int)tc->keylen) == 0)
		token = jwt_encode_str(jwt);
	if (token == NULL)
		goto fail;
	jwt_free(jwt);
	return token;
fail:
	snprintf(err, errlen, "cannot sign the token");
	jwt_free(jwt);
	return NULL;
}

static void hmac_forget(void);

void tokens_config_clear(struct token_config *tc)
{
	if (tc->key != NULL)
		sodium_memzero(tc->key, tc->keylen);
	free(tc->key);
	for (size_t i = 0; i < tc->nkeys; i++)
		keys_free(tc->keys[i].pkey);
	free(tc->keys);
	free(tc->issuer);
	free(tc->audience);
	free(tc->cookie_samesite);
	free(tc->refresh_cookie_path);
	memset(tc, 0, sizeof(*tc));
	hmac_forget(); /* its copy of the secret goes with the secret */
}

/* ---- verification ---- */

/* Decodes a base64url JSON object part; NULL when it is anything else. */
static json_t *decode_part(const char *s, size_t len)
{
	unsigned char buf[TOKENS_MAX_LEN];
	size_t n;
	if (len == 0 || b64url_decode(s, len, buf, sizeof(buf), &n) != 0)
		return NULL;
	json_t *v = json_loadb((const char *)buf, n, JSON_REJECT_DUPLICATES, NULL);
	if (v != NULL && !json_is_object(v)) {
		json_decref(v);
		return NULL;
	}
	return v;
}

/*
 * The last header accepted, in its base64url form: the tokens a client sends, and those a
 * server issues, all carry one header, and deciding it again costs a base64 decoding and a
 * JSON parse. Kept with it is what the verdict depends on besides the text: the algorithm,
 * and whether the header names a kid, and which key's (kids are key thumbprints: a key with
 * that kid is that key). Successes only; on the event loop only, as tokens_verify is.
 */
#define HEADER_SEEN_MAX 256

static struct {
	char text[HEADER_SEEN_MAX];
	size_t len; /* 0: nothing kept */
	int alg;
	bool has_kid;
	size_t key; /* with a kid: the index of the key it named; SIZE_MAX: there were no keys */
	char kid[KEYS_KID_LEN];
} header_seen;

static bool header_seen_before(const struct token_config *tc, const char *s, size_t len,
			       const struct token_key **key)
{
	if (header_seen.len != len || len == 0 || header_seen.alg != tc->alg ||
	    memcmp(header_seen.text, s, len) != 0)
		return false;
	*key = NULL;
	if (!header_seen.has_kid)
		return true;
	if (header_seen.key == SIZE_MAX)
		return tc->nkeys == 0;
	if (header_seen.key >= tc->nkeys ||
	    strcmp(tc->keys[header_seen.key].kid, header_seen.kid) != 0)
		return false;
	*key = &tc->keys[header_seen.key];
	return true;
}

static void header_keep(const struct token_config *tc, const char *s, size_t len, bool has_kid,
			const struct token_key *key)
{
	if (len > sizeof(header_seen.text))
		return;
	memcpy(header_seen.text, s, len);
	header_seen.len = len;
	header_seen.alg = tc->alg;
	header_seen.has_kid = has_kid;
	header_seen.key = key != NULL ? (size_t)(key - tc->keys) : SIZE_MAX;
	snprintf(header_seen.kid, sizeof(header_seen.kid), "%s", key != NULL ? key->kid : "");
}

/*
 * The header: exactly the configured algorithm, nothing this code does not understand. With a
 * key pair, *key is the key its kid names (a kid no configured key has is refused), or NULL
 * when it names none.
 */
static bool header_ok(const struct token_config *tc, const char *s, size_t len,
		      const struct token_key **key)
{
	if (header_seen_before(tc, s, len, key))
		return true;
	json_t *h = decode_part(s, len);
	const char *alg = h != NULL ? json_string_value(json_object_get(h, "alg")) : NULL;
	json_t *typ = h != NULL ? json_object_get(h, "typ") : NULL;
	json_t *kid = h != NULL ? json_object_get(h, "kid") : NULL;
	bool ok =
	    alg != NULL && strcmp(alg, jwa_get(tc->alg)->name) == 0 &&
	    json_object_get(h, "crit") == NULL &&
	    (typ == NULL || (json_is_string(typ) && strcmp(json_string_value(typ), "JWT") == 0));
	*key = NULL;
	if (ok && kid != NULL && tc->nkeys > 0) {
		ok = false;
		for (size_t i = 0; i < tc->nkeys && json_is_string(kid) && !ok; i++) {
			ok = strcmp(json_string_value(kid), tc->keys[i].kid) == 0;
			*key = &tc->keys[i];
		}
	}
	if (ok)
		header_keep(tc, s, len, kid != NULL, *key);
	json_decref(h);
	return ok;
}

/*
 * The HMAC of the configured secret, keyed once: OpenSSL 3's one-shot HMAC() fetches the
 * digest and hashes the secret into its pads on every call, which cost as much as the rest
 * of a token check. The prepared context is re-initialised with the same key for each token
 * (OpenSSL then copies the saved pad states). One per process, for the last secret and
 * algorithm used (a worker has one); tokens_verify runs on the event loop only.
 */
static struct {
	EVP_MAC_CTX *ctx;
	int alg;
	unsigned char *key;
	size_t keylen;
} hmac_prep;

static void hmac_forget(void)
{
	EVP_MAC_CTX_free(hmac_prep.ctx);
	if (hmac_prep.key != NULL)
		sodium_memzero(hmac_prep.key, hmac_prep.keylen);
	free(hmac_prep.key);
	memset(&hmac_prep, 0, sizeof(hmac_prep));
}

/* The context keyed with tc's secret, prepared now if the last one was another's; NULL when
 * out of memory. */
static EVP_MAC_CTX *hmac_prepared(const struct token_config *tc)
{
	if (hmac_prep.ctx != NULL && hmac_prep.alg == tc->alg && hmac_prep.keylen == tc->keylen &&
	    memcmp(hmac_prep.key, tc->key, tc->keylen) == 0)
		return hmac_prep.ctx;
	hmac_forget();
	EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
	EVP_MAC_free(mac);
	unsigned char *key = malloc(tc->keylen > 0 ? tc->keylen : 1);
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
					     (char *)EVP_MD_get0_name(jwa_get(tc->alg)->md()), 0),
	    OSSL_PARAM_construct_end()};
	if (ctx == NULL || key == NULL || !EVP_MAC_init(ctx, tc->key, tc->keylen, params)) {
		EVP_MAC_CTX_free(ctx);
		free(key);
		return NULL;
	}
	memcpy(key, tc->key, tc->keylen);
	hmac_prep.ctx = ctx;
	hmac_prep.alg = tc->alg;
	hmac_prep.key = key;
	hmac_prep.keylen = tc->keylen;
	return ctx;
}

static bool hmac_ok(const struct token_config *tc, const char *token, size_t signed_len,
		    const unsigned char *got, size_t gotlen)
{
	unsigned char want[EVP_MAX_MD_SIZE];
	size_t wantlen = 0;
	EVP_MAC_CTX *ctx = hmac_prepared(tc);
	if (ctx == NULL || !EVP_MAC_init(ctx, NULL, 0, NULL) ||
	    !EVP_MAC_update(ctx, (const unsigned char *)token, signed_len) ||
	    !EVP_MAC_final(ctx, want, &wantlen, sizeof(want)) || gotlen != wantlen)
		return false;
	return CRYPTO_memcmp(want, got, wantlen) == 0;
}

/*
 * RS and ES tokens whose signature was verified already, by a keyed 128-bit hash of the whole
 * token. A client behind forward auth sends one token with every request, and an ECDSA or RSA
 * check costs many times the rest of the request. A signature that was good under this
 * process's keys stays good (other keys mean another configuration, hence other workers);
 * only successes are kept, so a forged token is checked every time. Direct-mapped: a token
 * evicted is verified again. tokens_verify runs on the event loop only.
 */
#define SIG_CACHE_SLOTS 4096

static struct {
	uint64_t h[2];
} sig_cache[SIG_CACHE_SLOTS];
static unsigned char sig_cache_key[crypto_shorthash_siphashx24_KEYBYTES];
static bool sig_cache_keyed;
static pthread_once_t sig_cache_once = PTHREAD_ONCE_INIT;

/* A forked child (a worker) starts with an empty cache and draws a key of its own. */
static void sig_cache_forget(void)
{
	memset(sig_cache, 0, sizeof(sig_cache));
	sig_cache_keyed = false;
}

static void sig_cache_init(void)
{
	pthread_atfork(NULL, NULL, sig_cache_forget);
}

static uint64_t *sig_cache_slot(const char *token, size_t len, uint64_t h[2])
{
	if (!sig_cache_keyed) {
		pthread_once(&sig_cache_once, sig_cache_init);
		randombytes_buf(sig_cache_key, sizeof(sig_cache_key));
		sig_cache_keyed = true;
	}
	unsigned char out[crypto_shorthash_siphashx24_BYTES];
	crypto_shorthash_siphashx24(out, (const unsigned char *)token, len, sig_cache_key);
	memcpy(h, out, sizeof(out));
	return sig_cache[h[0] % SIG_CACHE_SLOTS].h;
}

/* The signature, by the key the header named, or else by any configured key. */
static bool signature_ok(const struct token_config *tc, const struct token_key *key,
			 const char *token, size_t signed_len, const char *sig, size_t siglen)
{
	unsigned char got[KEYS_MAX_SIG];
	size_t gotlen;
	const struct jwa_alg *a = jwa_get(tc->alg);
	if (b64url_decode(sig, siglen, got, sizeof(got), &gotlen) != 0)
		return false;
	if (a->family == 'H')
		return hmac_ok(tc, token, signed_len, got, gotlen);
	uint64_t h[2];
	uint64_t *slot = sig_cache_slot(token, signed_len + 1 + siglen, h);
	if (slot[0] == h[0] && slot[1] == h[1] && (h[0] != 0 || h[1] != 0))
		return true;
	bool ok = false;
	if (key != NULL)
		ok = keys_verify(key->pkey, a, token, signed_len, got, gotlen);
	for (size_t i = 0; key == NULL && !ok && i < tc->nkeys; i++)
		ok = keys_verify(tc->keys[i].pkey, a, token, signed_len, got, gotlen);
	if (ok) {
		slot[0] = h[0];
		slot[1] = h[1];
	}
	return ok;
}

/* A NumericDate claim: absent is 1 with *present false; a number gives 1; else 0. */
static int numeric_date(const struct claim *v, double *out, bool *present)
{
	*present = v->kind != CLAIM_ABSENT;
	if (!*present)
		return 1;
	if (v->kind != CLAIM_INTEGER && v->kind != CLAIM_REAL)
		return 0;
	*out = v->d;
	return 1;
}

static bool audience_ok(struct claims *c, const char *audience)
{
	const struct claim *aud = &c->c[CLAIM_AUD];
	if (aud->kind == CLAIM_STRING)
		return strcmp(aud->s, audience) == 0;
	size_t i;
	json_t *item;
	json_array_foreach (json_object_get(c->json, "aud"), i, item) {
		if (json_is_string(item) && strcmp(json_string_value(item), audience) == 0)
			return true;
	}
	return false;
}

/* A jti or fam: a string of 1 to SESAME_TOKEN_ID_MAX bytes, no NUL (the storage keeps it). */
static bool token_id_ok(const struct claim *v)
{
	return v->kind == CLAIM_STRING && v->len > 0 && v->len <= SESAME_TOKEN_ID_MAX &&
	       strlen(v->s) == v->len;
}

/* A string claim's value, or NULL. */
static const char *string_of(const struct claim *v)
{
	return v->kind == CLAIM_STRING ? v->s : NULL;
}

static enum token_verdict claims_ok(const struct token_config *tc, struct claims *c,
				    enum token_want want, char *identity, size_t idlen)
{
	double now = clock_wall_s(), exp = 0, nbf = 0;
	bool has_exp, has_nbf;
	const char *type = string_of(&c->c[CLAIM_TYPE]);
	const struct claim *sub = &c->c[CLAIM_SUB];
	const char *iss = string_of(&c->c[CLAIM_ISS]);
	if (!numeric_date(&c->c[CLAIM_EXP], &exp, &has_exp) ||
	    !numeric_date(&c->c[CLAIM_NBF], &nbf, &has_nbf) || !token_id_ok(&c->c[CLAIM_JTI]) ||
	    type == NULL ||
	    (c->c[CLAIM_FAM].kind != CLAIM_ABSENT && !token_id_ok(&c->c[CLAIM_FAM])))
		return TOKEN_INVALID;
	if (sub->kind == CLAIM_STRING && sub->len > 0 && sub->len < idlen)
		snprintf(identity, idlen, "%s", sub->s);
	else if (sub->kind == CLAIM_INTEGER)
		snprintf(identity, idlen, "%lld", sub->i);
	else
		return TOKEN_INVALID;
	if ((tc->issuer != NULL && (iss == NULL || strcmp(iss, tc->issuer) != 0)) ||
	    (tc->audience != NULL && !audience_ok(c, tc->audience)) ||
	    (tc->audience == NULL && c->c[CLAIM_AUD].kind != CLAIM_ABSENT) ||
	    (has_nbf && now + (double)tc->leeway < nbf))
		return TOKEN_INVALID;
	bool refresh = strcmp(type, "refresh") == 0;
	if (want == WANT_ANY ? !refresh && strcmp(type, "access") != 0
			     : strcmp(type, want == WANT_REFRESH ? "refresh" : "access") != 0)
		return TOKEN_WRONG_TYPE;
	/* A token without exp is taken only where sesame itself issues tokens without one. */
	long configured = refresh ? tc->refresh_expires : tc->access_expires;
	if (!has_exp && configured != 0)
		return TOKEN_INVALID;
	if (has_exp && now - (double)tc->leeway >= exp)
		return TOKEN_EXPIRED;
	if (want == WANT_FRESH && c->c[CLAIM_FRESH].kind != CLAIM_TRUE)
		return TOKEN_NOT_FRESH;
	return TOKEN_OK;
}

/* The claims part, base64url-decoded and read into c; false when it is no JSON object. */
static bool decode_claims(const char *s, size_t len, struct claims *c)
{
	unsigned char buf[TOKENS_MAX_LEN];
	size_t n;
	return len > 0 && b64url_decode(s, len, buf, sizeof(buf), &n) == 0 &&
	       claims_parse(c, (const char *)buf, n);
}

enum token_verdict tokens_check(const struct token_config *tc, const char *token, size_t len,
				enum token_want want, struct claims *claims, char *identity,
				size_t idlen)
{
	memset(claims, 0, sizeof(*claims));
	if (!tc->configured || len == 0 || len > TOKENS_MAX_LEN)
		return TOKEN_INVALID;
	/*
	 * Within len only: a token cut out of a header or a cookie is not NUL-terminated. Each
	 * part is checked to be base64url by its decoding (the header by the one it passed when
	 * it was kept), so the dots are the only other characters a token can hold.
	 */
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 =
	    dot1 != NULL ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (dot2 == NULL || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)) != NULL ||
	    dot2 + 1 == token + len)
		return TOKEN_INVALID;
	const struct token_key *key;
	if (!header_ok(tc, token, (size_t)(dot1 - token), &key) ||
	    !signature_ok(tc, key, token, (size_t)(dot2 - token), dot2 + 1,
			  len - (size_t)(dot2 + 1 - token)) ||
	    !decode_claims(dot1 + 1, (size_t)(dot2 - dot1 - 1), claims))
		return TOKEN_INVALID;
	enum token_verdict v = claims_ok(tc, claims, want, identity, idlen);
	if (v != TOKEN_OK)
		claims_clear(claims);
	return v;
}

enum token_verdict tokens_verify(const struct token_config *tc, const char *token, size_t len,
				 enum token_want want, json_t **claims, char *identity,
				 size_t idlen)
{
	struct claims c;
	enum token_verdict v = tokens_check(tc, token, len, want, &c, identity, idlen);
	*claims = v == TOKEN_OK ? json_incref(claims_json(&c)) : NULL;
	claims_clear(&c);
	return v == TOKEN_OK && *claims == NULL ? TOKEN_INVALID : v;
}

/*
 * How long a revoked family's id must stay revoked: until the last of its tokens has expired.
 * Its refresh tokens end with the family, at most family_lifetime from now; an access token
 * of it lives at most access_expires (sesame.jwt.access caps it), and never expires when
 * access tokens do not: then the revocation is for good.
 */
long long tokens_family_revoke_until(const struct token_config *tc, long long now_s)
{
	if (tc->access_expires == 0)
		return 0;
	long refresh = tc->refresh_expires != 0 && tc->refresh_expires < tc->family_lifetime
			   ? tc->refresh_expires
			   : tc->family_lifetime;
	return now_s + (refresh > tc->access_expires ? refresh : tc->access_expires);
}

const char *tokens_revocation(const struct token_config *tc, const json_t *claims, long long now_s,
			      struct token_revocation *out)
{
	struct claims c = {0};
	claims_from_json(&c, claims);
	const struct claim *jti = &c.c[CLAIM_JTI], *fam = &c.c[CLAIM_FAM], *sub = &c.c[CLAIM_SUB];
	enum claim_kind exp = c.c[CLAIM_EXP].kind;
	if (!token_id_ok(jti) ||
	    !(sub->kind == CLAIM_STRING || sub->kind == CLAIM_INTEGER || sub->kind == CLAIM_REAL))
		return "a verified token's claims have a jti and a sub";
	if (fam->kind != CLAIM_ABSENT && !token_id_ok(fam))
		return "the claims' fam is not a family id";
	double e = exp == CLAIM_INTEGER || exp == CLAIM_REAL ? c.c[CLAIM_EXP].d : 0;
	out->jti = jti->s;
	out->jti_until = e >= 1 && e < 1e15 ? (long long)ceil(e) : 0;
	out->family = fam->kind == CLAIM_STRING ? fam->s : NULL;
	out->family_until = tokens_family_revoke_until(tc, now_s);
	return NULL;
}

const char *tokens_verdict_message(enum token_verdict v)
{
	switch (v) {
	case TOKEN_EXPIRED:
		return "token expired";
	case TOKEN_NOT_FRESH:
		return "fresh token required";
	case TOKEN_WRONG_TYPE:
		return "wrong token type";
	default:
		return "invalid token";
	}
}

json_t *tokens_jwks(const struct token_config *tc)
{
	json_t *keys = json_array();
	json_t *doc = json_pack("{s:o}", "keys", keys);
	for (size_t i = 0; doc != NULL && i < tc->nkeys; i++) {
		if (json_array_append_new(
			keys, keys_jwk(tc->keys[i].pkey, tc->keys[i].kid, jwa_get(tc->alg))) != 0) {
			json_decref(doc);
			doc = NULL;
		}
	}
	return doc;
}

bool tokens_csrf_of(const char *token, char *out, size_t outlen)
{
	const char *dot1 = strchr(token, '.');
	const char *dot2 = dot1 != NULL ? strchr(dot1 + 1, '.') : NULL;
	json_t *payload = dot2 != NULL ? decode_part(dot1 + 1, (size_t)(dot2 - dot1 - 1)) : NULL;
	const char *csrf = json_string_value(json_object_get(payload, "csrf"));
	bool found = csrf != NULL && strlen(csrf) < outlen;
	if (found)
		snprintf(out, outlen, "%s", csrf);
	json_decref(payload);
	return found;
}

/* ---- cookies ---- */

const char *tokens_cookie_name(const struct token_config *tc, enum tokens_cookie c)
{
	static const char *const plain[] = {TOKENS_ACCESS_COOKIE, TOKENS_ACCESS_CSRF_COOKIE,
					    TOKENS_REFRESH_COOKIE, TOKENS_REFRESH_CSRF_COOKIE};
	static const char *const host[] = {
	    "__Host-" TOKENS_ACCESS_COOKIE, "__Host-" TOKENS_ACCESS_CSRF_COOKIE,
	    "__Host-" TOKENS_REFRESH_COOKIE, "__Host-" TOKENS_REFRESH_CSRF_COOKIE};
	if (!tc->cookie_host_prefix)
		return plain[c];
	if (c == TOKENS_COOKIE_REFRESH && strcmp(tokens_cookie_path(tc, c), "/") != 0)
		return "__Secure-" TOKENS_REFRESH_COOKIE;
	return host[c];
}

const char *tokens_cookie_path(const struct token_config *tc, enum tokens_cookie c)
{
	if (c != TOKENS_COOKIE_REFRESH)
		return "/";
	return tc->refresh_cookie_path != NULL ? tc->refresh_cookie_path
					       : TOKENS_REFRESH_COOKIE_PATH;
}

long long tokens_cookie_max_age(long expires)
{
	long long age = expires;
	return age <= 0 || age > TOKENS_COOKIE_MAX_AGE ? TOKENS_COOKIE_MAX_AGE : age;
}
