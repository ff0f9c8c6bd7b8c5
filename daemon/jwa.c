/*
 * jwa.c: the JSON Web Algorithms sesame knows: HS, RS and ES with SHA-256, 384 and 512.
 *
 * One table names each algorithm as libjwt and RFC 7518 do, with the digest and, for ECDSA,
 * the curve and the width of r and s that a JWS signature lays out. Tokens, keys and the
 * configuration look algorithms up here, so none of them depends on another for it.
 */
#include "autoconfig.h"

#include "jwa.h"

#include <jwt.h>
#include <openssl/evp.h>
#include <string.h>

static const struct jwa_alg algs[] = {
    {JWT_ALG_HS256, "HS256", 'H', EVP_sha256, NULL, NULL, 0},
    {JWT_ALG_HS384, "HS384", 'H', EVP_sha384, NULL, NULL, 0},
    {JWT_ALG_HS512, "HS512", 'H', EVP_sha512, NULL, NULL, 0},
    {JWT_ALG_RS256, "RS256", 'R', EVP_sha256, NULL, NULL, 0},
    {JWT_ALG_RS384, "RS384", 'R', EVP_sha384, NULL, NULL, 0},
    {JWT_ALG_RS512, "RS512", 'R', EVP_sha512, NULL, NULL, 0},
    {JWT_ALG_ES256, "ES256", 'E', EVP_sha256, "prime256v1", "P-256", 32},
    {JWT_ALG_ES384, "ES384", 'E', EVP_sha384, "secp384r1", "P-384", 48},
    {JWT_ALG_ES512, "ES512", 'E', EVP_sha512, "secp521r1", "P-521", 66},
};

int jwa_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		if (strcmp(name, algs[i].name) == 0)
			return algs[i].alg;
	}
	return -1;
}

const struct jwa_alg *jwa_get(int alg)
{
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		if (algs[i].alg == alg)
			return &algs[i];
	}
	return &algs[0];
}
