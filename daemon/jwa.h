/* jwa.h: the JSON Web Algorithms (RFC 7518) sesame signs and verifies tokens with. */
#ifndef SESAME_JWA_H
#define SESAME_JWA_H

#include <stddef.h>

struct evp_md_st;

/* What sesame knows of a JWS algorithm (RFC 7518 section 3.1). */
struct jwa_alg {
	int alg;	  /* libjwt's jwt_alg_t */
	const char *name; /* "HS256" ... */
	char family;	  /* 'H' HMAC, 'R' RSASSA-PKCS1-v1_5, 'E' ECDSA */
	const struct evp_md_st *(*md)(void);
	const char *group; /* ES: OpenSSL's name of the curve */
	const char *crv;   /* ES: its JWK name */
	size_t field;	   /* ES: the bytes of r and of s */
};

/* "HS256" and the like to libjwt's algorithm; -1 when not one sesame signs with. */
int jwa_parse(const char *name);

/* The algorithm's description; alg is one jwa_parse returned. */
const struct jwa_alg *jwa_get(int alg);

#endif
