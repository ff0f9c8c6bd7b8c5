/* tokens.h: issuing and verifying JSON Web Tokens, laid out as flask-jwt-extended lays them. */
#ifndef SESAME_TOKENS_H
#define SESAME_TOKENS_H

#include <stdbool.h>
#include <stddef.h>

#include "keys.h"

struct json_t;
struct claims;
struct evp_pkey_st;

#define TOKENS_MIN_SECRET 32

/* An RS or ES key, loaded once from its PEM file, and its RFC 7638 thumbprint. */
struct token_key {
	struct evp_pkey_st *pkey; /* OpenSSL's EVP_PKEY */
	char kid[KEYS_KID_LEN];
};

struct token_config {
	bool configured;    /* a jwt table with a key was given */
	int alg;	    /* libjwt's jwt_alg_t */
	unsigned char *key; /* HS: the secret */
	size_t keylen;
	/* RS and ES: keys[0] signs (its private half is loaded); keys[1...] are previous_keys,
	 * public keys still accepted when a token is verified. */
	struct token_key *keys;
	size_t nkeys;
	long access_expires;  /* seconds; 0: access tokens never expire */
	long refresh_expires; /* seconds; 0: refresh tokens never expire */
	char *issuer;	      /* NULL when not configured */
	char *audience;
	long leeway; /* seconds of clock skew allowed on exp and nbf */
	/* Tokens in cookies too, with CSRF double submit, as flask-jwt-extended does it. */
	bool cookies;
	bool cookie_secure;
	char *cookie_samesite;	   /* "Lax", "Strict" or "None" */
	char *refresh_cookie_path; /* the refresh token cookie's Path: the refresh route */
	bool cookie_host_prefix;   /* names with __Host- (__Secure- for a narrower Path) */
	/* Refresh families and revocation (storage keeps them). */
	long family_lifetime;  /* seconds: a log-in's refresh tokens end then, rotated or not */
	long refresh_grace_ms; /* a spent refresh token still rotates this long after */
	long revocation_refresh_ms; /* how often a node fetches the newly revoked ids */
	long revocation_capacity;   /* the node's set of revoked ids holds this many */
};

/* flask-jwt-extended's names. */
#define TOKENS_ACCESS_COOKIE	   "access_token_cookie"
#define TOKENS_REFRESH_COOKIE	   "refresh_token_cookie"
#define TOKENS_ACCESS_CSRF_COOKIE  "csrf_access_token"
#define TOKENS_REFRESH_CSRF_COOKIE "csrf_refresh_token"
#define TOKENS_CSRF_HEADER	   "X-CSRF-TOKEN"

/* The default Path of the refresh token's cookie: the only route that reads it. */
#define TOKENS_REFRESH_COOKIE_PATH "/token/refresh"

/* Cookies longer than this (RFC 6265bis' 400 days) are capped by browsers anyway. */
#define TOKENS_COOKIE_MAX_AGE (400LL * 86400)

/* The token cookies, in the order sesame.jwt.cookies sets them. */
enum tokens_cookie {
	TOKENS_COOKIE_ACCESS,
	TOKENS_COOKIE_ACCESS_CSRF,
	TOKENS_COOKIE_REFRESH,
	TOKENS_COOKIE_REFRESH_CSRF
};

/*
 * A cookie's name: flask-jwt-extended's, or with jwt.cookie_host_prefix the same with
 * "__Host-" (which a browser only accepts Secure, with Path=/ and no Domain), or "__Secure-"
 * for the refresh token's when its Path is narrower than "/".
 */
const char *tokens_cookie_name(const struct token_config *tc, enum tokens_cookie c);

/* A cookie's Path: jwt.refresh_cookie_path for the refresh token's, "/" for the others (the
 * page's script reads the CSRF cookies, and every route reads the access token). */
const char *tokens_cookie_path(const struct token_config *tc, enum tokens_cookie c);

/* The Max-Age of a cookie for a token living expires seconds (0: for ever): never negative,
 * at most TOKENS_COOKIE_MAX_AGE. */
long long tokens_cookie_max_age(long expires);

#define TOKENS_MAX_LEN 8192

/* What a route asks of a token. */
enum token_want { WANT_ACCESS, WANT_FRESH, WANT_REFRESH, WANT_ANY };

/* Why a token was refused, for the client. */
enum token_verdict { TOKEN_OK, TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_NOT_FRESH, TOKEN_WRONG_TYPE };

enum token_type { TOKEN_ACCESS, TOKEN_REFRESH };

/* What a token to issue says. */
struct token_request {
	enum token_type type;
	const char *identity; /* the sub claim */
	long expires;	      /* seconds from now; 0 for none; -1 for the configured default */
	long not_after;	      /* 0, or a time exp may not pass (the end of a refresh family) */
	bool fresh;	      /* access tokens only */
	const char *family;   /* the fam claim (the refresh family), or NULL */
	const char *jti;      /* NULL: a new random one */
	const struct json_t *claims; /* NULL, or the operator's own claims: an object */
};

/* The operator's claims of a token: at most this many bytes of JSON, none of these names. */
#define TOKENS_CLAIMS_MAX 4096
extern const char *const tokens_reserved_claims[];

#define TOKENS_ID_LEN 37 /* a UUID and its NUL */

/* A random (version 4) UUID, as flask-jwt-extended's jti. */
void tokens_uuid4(char out[TOKENS_ID_LEN]);

/*
 * Whether a signature with the signing key takes long enough to hold up an event loop: an RSA
 * one (RS256/384/512) takes 1 to 5 ms with a 2048- to 4096-bit key, an HMAC or an ECDSA one
 * microseconds.
 */
bool tokens_sign_slow(const struct token_config *tc);

/*
 * Issues a token. Returns a malloc'd token, or NULL with a message in err. Thread-safe, on
 * the loop or a job thread: tc is only read, the key signs with a context of its own per call.
 */
char *tokens_issue(const struct token_config *tc, const struct token_request *req, char *err,
		   size_t errlen);

/*
 * Verifies a compact token per RFC 8725: three parts, size-capped; the header's alg exactly
 * the configured one (never "none"), no "crit"; for RS and ES a kid, when present, names one
 * of the configured keys (without one, each is tried); the signature (an HMAC is compared in
 * constant time);
 * then exp and nbf (with leeway), iss and aud when configured, the type the route wants, a
 * sub and a jti. On TOKEN_OK, *claims is the payload (the caller json_decref's it) and
 * identity holds sub as a string.
 *
 * Not thread-safe: tokens_verify and tokens_check keep per-process state (the prepared HMAC
 * context, the last header accepted, the remembered signatures) and are called from one
 * thread only, the worker's event loop (or sesamectl's only thread).
 */
enum token_verdict tokens_verify(const struct token_config *tc, const char *token, size_t len,
				 enum token_want want, struct json_t **claims, char *identity,
				 size_t idlen);

/* tokens_verify, the claims read into *claims (claims.h; the caller claims_clear's it, empty
 * unless TOKEN_OK), their JSON object built only when claims_json asks for it. */
enum token_verdict tokens_check(const struct token_config *tc, const char *token, size_t len,
				enum token_want want, struct claims *claims, char *identity,
				size_t idlen);

const char *tokens_verdict_message(enum token_verdict v);

/*
 * Until when (Unix seconds; 0: for good) a refresh family revoked at now_s stays revoked: until
 * the last of its tokens could expire. Its access tokens live at most access_expires
 * (sesame.jwt.access caps them), its refresh tokens end with the family.
 */
long long tokens_family_revoke_until(const struct token_config *tc, long long now_s);

/* What revoking a token revokes: ids point into the claims they were read from. */
struct token_revocation {
	const char *jti;	/* the token itself */
	long long jti_until;	/* Unix seconds; 0: for good */
	const char *family;	/* its refresh family, or NULL */
	long long family_until; /* as tokens_family_revoke_until */
};

/*
 * The revocation policy, decided once for sesame.jwt.revoke and sesamectl token revoke: a token
 * revoked at now_s is refused by its jti until its exp (for good when it has none) and, when
 * it belongs to one, its whole refresh family until every token of it could have expired.
 * NULL, or why the claims are not a token's (no jti or sub, or a jti or fam that is no id).
 */
const char *tokens_revocation(const struct token_config *tc, const struct json_t *claims,
			      long long now_s, struct token_revocation *out);

/* The JWKS document (RFC 7517) of the public keys, current first: {"keys":[]} for HS. */
struct json_t *tokens_jwks(const struct token_config *tc);

/* The csrf claim of a token sesame issued, into out; false when it has none. */
bool tokens_csrf_of(const char *token, char *out, size_t outlen);

void tokens_config_clear(struct token_config *tc);

#endif
