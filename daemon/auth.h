/* auth.h: the token check of a request, before its handler runs: which token, and the verdict. */
#ifndef SESAME_AUTH_H
#define SESAME_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

struct claims;
struct http_request;
struct revocation;
struct token_config;

/* What a route asks of its token (sesame.route's opts.auth), kept as the route's options. */
enum auth_mode { AUTH_NONE, AUTH_REQUIRED, AUTH_OPTIONAL, AUTH_REFRESH, AUTH_FRESH };

/*
 * A route option beside the mode (route options are mode | flags): the route answers a reverse
 * proxy's forward-auth sub-request, a GET that carries the client's credentials, so the CSRF
 * check judges the client's method as the proxy reports it (X-Forwarded-Method,
 * X-Original-Method) instead of the sub-request's own.
 */
#define AUTH_FORWARDED	   0x100
#define AUTH_MODE(options) ((enum auth_mode)((options)&0xff))

/* The verdict on a request's token: status 0 lets the handler run; else the 401 to answer. */
struct auth_verdict {
	int status;
	const char *error;     /* the message for the client */
	const char *challenge; /* the WWW-Authenticate header, or NULL for none */
};

/*
 * Checks the token that options (an auth_mode, not AUTH_NONE, and flags) ask of r, from
 * "Authorization: Bearer" or, with jwt.cookies and no such header, from its cookie, then with
 * the CSRF header unless the request only reads (with AUTH_FORWARDED: unless every method
 * header the proxy sent names a method that only reads, and there is at least one); verified as
 * tokens_verify does, and not revoked in rv (NULL: nothing is). Under AUTH_OPTIONAL a request
 * without a token passes, but not one with a bad token. On a pass with a token, *claims (the caller
 * claims_clear's it) and identity are set; else *claims is empty and identity "". On the event
 * loop: reads r, answers nothing.
 */
struct auth_verdict auth_check(const struct token_config *tc, struct revocation *rv, int options,
			       const struct http_request *r, struct claims *claims, char *identity,
			       size_t idlen);

/* Answers a request that v refused. */
void auth_reply(struct http_request *r, const struct auth_verdict *v);

/* Is the token whose claims these are revoked in rv, by its jti or its refresh family? */
bool auth_revoked(struct revocation *rv, const json_t *claims);

#endif
