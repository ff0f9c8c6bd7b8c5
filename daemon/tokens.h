/* tokens.h: issuing JSON Web Tokens, laid out as flask-jwt-extended lays them. */
#ifndef SESAME_TOKENS_H
#define SESAME_TOKENS_H

#include <stdbool.h>
#include <stddef.h>

#define TOKENS_MIN_SECRET 32

struct token_config {
	bool configured; /* a jwt table with a key was given */
	int alg;	 /* libjwt's jwt_alg_t */
	unsigned char *key;
	size_t keylen;
	long access_expires;  /* seconds; 0: access tokens never expire */
	long refresh_expires; /* seconds; 0: refresh tokens never expire */
	char *issuer;	      /* NULL when not configured */
	char *audience;
};

enum token_type { TOKEN_ACCESS, TOKEN_REFRESH };

/* "HS256" and the like to libjwt's algorithm; -1 when not one sesame signs with. */
int tokens_alg_parse(const char *name);

/*
 * Issues a token for identity (the sub claim). expires: seconds from now, 0 for none, -1 for
 * the configured default. fresh: access tokens only. Returns a malloc'd token, or NULL with
 * a message in err.
 */
char *tokens_issue(const struct token_config *tc, enum token_type type, const char *identity,
		   long expires, bool fresh, char *err, size_t errlen);

void tokens_config_clear(struct token_config *tc);

#endif
