/*
 * tokens.c: issues JSON Web Tokens with libjwt.
 *
 * The claims are flask-jwt-extended's, so that a Flask service sharing the secret accepts
 * sesame's tokens: iat and nbf (now), jti (a random UUID4), type ("access" or "refresh"), sub
 * (the identity, a string), fresh (access tokens only), exp (left out when the expiry is
 * false), and iss and aud when configured. The header is {"alg":...,"typ":"JWT"}. Signing is
 * an HMAC: it runs on the event loop.
 */
#include "autoconfig.h"

#include "tokens.h"

#include <jwt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int tokens_alg_parse(const char *name)
{
	if (strcmp(name, "HS256") == 0)
		return JWT_ALG_HS256;
	if (strcmp(name, "HS384") == 0)
		return JWT_ALG_HS384;
	if (strcmp(name, "HS512") == 0)
		return JWT_ALG_HS512;
	return -1;
}

/* A random (version 4) UUID, as flask-jwt-extended's jti. */
static void uuid4(char out[37])
{
	unsigned char b[16];
	randombytes_buf(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12],
		 b[13], b[14], b[15]);
}

char *tokens_issue(const struct token_config *tc, enum token_type type, const char *identity,
		   long expires, bool fresh, char *err, size_t errlen)
{
	jwt_t *jwt = NULL;
	char *token = NULL, jti[37];
	long now = (long)time(NULL);
	if (!tc->configured) {
		snprintf(err, errlen, "no JWT key is configured (jwt.secret or jwt.secret_file)");
		return NULL;
	}
	if (expires < 0)
		expires = type == TOKEN_ACCESS ? tc->access_expires : tc->refresh_expires;
	uuid4(jti);
	if (jwt_new(&jwt) != 0 ||
	    jwt_set_alg(jwt, (jwt_alg_t)tc->alg, tc->key, (int)tc->keylen) != 0)
		goto fail;
	int rc = 0;
	if (type == TOKEN_ACCESS)
		rc |= jwt_add_grant_bool(jwt, "fresh", fresh);
	rc |= jwt_add_grant_int(jwt, "iat", now);
	rc |= jwt_add_grant(jwt, "jti", jti);
	rc |= jwt_add_grant(jwt, "type", type == TOKEN_ACCESS ? "access" : "refresh");
	rc |= jwt_add_grant(jwt, "sub", identity);
	rc |= jwt_add_grant_int(jwt, "nbf", now);
	if (expires > 0)
		rc |= jwt_add_grant_int(jwt, "exp", now + expires);
	if (tc->issuer != NULL)
		rc |= jwt_add_grant(jwt, "iss", tc->issuer);
	if (tc->audience != NULL)
		rc |= jwt_add_grant(jwt, "aud", tc->audience);
	if (rc != 0 || (token = jwt_encode_str(jwt)) == NULL)
		goto fail;
	jwt_free(jwt);
	return token;
fail:
	snprintf(err, errlen, "cannot sign the token");
	jwt_free(jwt);
	return NULL;
}

void tokens_config_clear(struct token_config *tc)
{
	if (tc->key != NULL)
		sodium_memzero(tc->key, tc->keylen);
	free(tc->key);
	free(tc->issuer);
	free(tc->audience);
	memset(tc, 0, sizeof(*tc));
}
