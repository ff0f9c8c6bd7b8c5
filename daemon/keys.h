/* keys.h: the RS and ES keys of JWT signatures: PEM files, JWK, thumbprints, signatures. */
#ifndef SESAME_KEYS_H
#define SESAME_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "jwa.h"

struct evp_pkey_st;
struct json_t;

#define KEYS_MIN_RSA_BITS 2048
#define KEYS_MAX_RSA_BITS 8192
#define KEYS_MAX_SIG	  (KEYS_MAX_RSA_BITS / 8) /* the widest signature, in bytes */
#define KEYS_KID_LEN	  44			  /* a base64url SHA-256 and its NUL */

/*
 * Loads the PEM key at path, private or public, and checks that it suits the algorithm: an
 * RSA key of KEYS_MIN_RSA_BITS to KEYS_MAX_RSA_BITS for RS*, a key on the algorithm's curve
 * for ES*. NULL with a message in err that names the file, never its content.
 */
struct evp_pkey_st *keys_load(const char *path, bool private_key, const struct jwa_alg *a,
			      char *err, size_t errlen);

void keys_free(struct evp_pkey_st *pkey);

/* A new key for the algorithm (bits: the RSA modulus'), or NULL. */
struct evp_pkey_st *keys_generate(const struct jwa_alg *a, int bits);

/*
 * The key in PEM: its private half (PKCS#8, unencrypted) or its public one. Returns malloc'd
 * text, NULL on failure; the caller wipes a private one before freeing it.
 */
char *keys_pem(struct evp_pkey_st *pkey, bool private_key);

/* Whether the two keys have the same public half. */
bool keys_match(const struct evp_pkey_st *a, const struct evp_pkey_st *b);

/* The key's RFC 7638 JWK thumbprint (SHA-256, base64url): its kid. */
bool keys_thumbprint(const struct evp_pkey_st *pkey, const struct jwa_alg *a,
		     char kid[KEYS_KID_LEN]);

/* The public JWK of the key named kid: kty, use, alg, kid, and n and e or crv, x and y; NULL on
 * failure. */
struct json_t *keys_jwk(const struct evp_pkey_st *pkey, const char *kid, const struct jwa_alg *a);

/*
 * Signs data with a private key, the JWS way: an RSA signature as wide as the modulus, an
 * ECDSA one as r||s of fixed width (RFC 7518 section 3.4). Returns the malloc'd signature
 * and its length in *siglen, or NULL.
 */
unsigned char *keys_sign(struct evp_pkey_st *pkey, const struct jwa_alg *a, const char *data,
			 size_t len, size_t *siglen);

/* Verifies a JWS signature (in the form keys_sign makes) of data. */
bool keys_verify(struct evp_pkey_st *pkey, const struct jwa_alg *a, const char *data, size_t len,
		 const unsigned char *sig, size_t siglen);

#endif
