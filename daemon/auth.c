/*
 * auth.c: the token check of a request, made before its handler runs; no Lua in it.
 *
 * A route declares what it asks of a token (required, optional, refresh, fresh). The token
 * comes from "Authorization: Bearer", or with jwt.cookies from the access or refresh cookie,
 * flask-jwt-extended's way: a token from a cookie on a request that changes state must come
 * with the CSRF header repeating its csrf claim (double submit), since a browser sends cookies
 * on its own. On a forward-auth route that request is the client's, whose method the proxy
 * reports in a header. The token is verified (tokens_verify), then looked up among the worker's
 * revoked ids by its jti and its refresh family, or, for a token without a family (such as one
 * a service sharing the secret issued), by its subject's cutoff: logged out everywhere,
 * disabled or deleted, a subject's tokens issued (iat) at or before that time are refused. A
 * token with a family needs no cutoff: its family was revoked with it, and so a client that
 * logs in again at once is not refused for a token issued in the cutoff's second. The verdict is
 * the answer a refusal gets: 401, with the RFC 6750 challenge that tells a client whether to log in
 * again or to re-authenticate.
 */
#include "autoconfig.h"

#include "auth.h"

#include <event2/http.h>
#include <sodium.h>
#include <string.h>
#include <strings.h>

#include "claims.h"
#include "http.h"
#include "request.h"
#include "revocation.h"
#include "tokens.h"

static const struct auth_verdict pass = {0};

/* A token without fam issued at or before its subject's cutoff; one without iat, when the
 * subject has a cutoff at all. */
static bool before_cutoff(struct revocation *rv, const struct claims *claims)
{
	const struct claim *sub = &claims->c[CLAIM_SUB], *iat = &claims->c[CLAIM_IAT];
	char number[24], id[SESAME_TOKEN_ID_MAX + 1];
	const char *subject = sub->kind == CLAIM_STRING ? sub->s : NULL;
	if (sub->kind == CLAIM_INTEGER) {
		snprintf(number, sizeof(number), "%lld", sub->i);
		subject = number;
	}
	if (subject == NULL || sesame_subject_cutoff_id(subject, id) != 0)
		return false; /* no such subject can have a cutoff */
	long long cutoff = revocation_time(rv, id);
	if (cutoff < 0)
		return false;
	return (iat->kind != CLAIM_INTEGER && iat->kind != CLAIM_REAL) ||
	       iat->d * 1000.0 <= (double)cutoff;
}

static bool revoked(struct revocation *rv, const struct claims *claims)
{
	const struct claim *jti = &claims->c[CLAIM_JTI], *fam = &claims->c[CLAIM_FAM];
	return revocation_has(rv, jti->kind == CLAIM_STRING ? jti->s : NULL) ||
	       (fam->kind == CLAIM_STRING ? revocation_has(rv, fam->s) : before_cutoff(rv, claims));
}

bool auth_revoked(struct revocation *rv, const json_t *claims)
{
	struct claims c = {0};
	claims_from_json(&c, claims);
	return revoked(rv, &c);
}

/* The token of "Authorization: Bearer TOKEN", or NULL. */
static const char *bearer(const struct http_request *r, size_t *len)
{
	const char *h =
	    evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	*len = strcspn(h, " ");
	return *len > 0 && h[*len] == '\0' ? h : NULL;
}

struct cookie_search {
	const char *name;
	const char *value;
	size_t len;
};

static void match_cookie(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct cookie_search *cs = arg;
	if (cs->value == NULL && nlen == strlen(cs->name) && memcmp(name, cs->name, nlen) == 0) {
		cs->value = value;
		cs->len = vlen;
	}
}

/* The token of the cookie name, or NULL. */
static const char *cookie_token(const struct http_request *r, const char *name, size_t *len)
{
	struct cookie_search cs = {.name = name};
	request_cookies(evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Cookie"),
			match_cookie, &cs);
	*len = cs.len;
	return cs.value != NULL && cs.len > 0 ? cs.value : NULL;
}

/* GET, HEAD, OPTIONS and TRACE only read (RFC 9110 9.2.1); any other method may change state. */
static bool only_reads(const char *m)
{
	return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0 ||
	       strcmp(m, "TRACE") == 0;
}

/*
 * Does the client's request only read? On a forward-auth route the request is the proxy's
 * GET sub-request, so the client's method is the one the proxy reports: Traefik's (and
 * Caddy's) X-Forwarded-Method, or X-Original-Method as nginx configurations set it. When the
 * proxy reports none, or two that disagree, the method is unknown and judged as one that
 * changes state: a missing header fails closed.
 */
static bool client_only_reads(const struct http_request *r, int options)
{
	if (!(options & AUTH_FORWARDED))
		return only_reads(r->method);
	struct evkeyvalq *in = evhttp_request_get_input_headers(r->ev);
	static const char *const names[] = {"X-Forwarded-Method", "X-Original-Method"};
	bool seen = false;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *m = evhttp_find_header(in, names[i]);
		if (m == NULL)
			continue;
		if (!only_reads(m))
			return false;
		seen = true;
	}
	return seen;
}

/* A token from a cookie on a state-changing request needs the CSRF header to repeat its claim. */
static bool csrf_ok(const struct http_request *r, int options, const struct claims *claims)
{
	if (client_only_reads(r, options))
		return true;
	const struct claim *csrf = &claims->c[CLAIM_CSRF];
	const char *want = csrf->kind == CLAIM_STRING ? csrf->s : NULL;
	const char *got =
	    evhttp_find_header(evhttp_request_get_input_headers(r->ev), TOKENS_CSRF_HEADER);
	return want != NULL && got != NULL && strlen(want) == strlen(got) &&
	       sodium_memcmp(want, got, strlen(want)) == 0;
}

static struct auth_verdict refuse(const char *error, const char *challenge)
{
	return (struct auth_verdict){.status = 401, .error = error, .challenge = challenge};
}

/* The verdict on a token that tokens_verify accepted, whose claims these are. */
static struct auth_verdict check_claims(struct revocation *rv, const struct http_request *r,
					int options, bool from_cookie, const struct claims *claims)
{
	if (from_cookie && !csrf_ok(r, options, claims))
		return refuse("missing or wrong CSRF token", NULL);
	if (revoked(rv, claims))
		return refuse("token revoked", "Bearer error=\"invalid_token\"");
	return pass;
}

struct auth_verdict auth_check(const struct token_config *tc, struct revocation *rv, int options,
			       const struct http_request *r, struct claims *claims, char *identity,
			       size_t idlen)
{
	enum auth_mode mode = AUTH_MODE(options);
	memset(claims, 0, sizeof(*claims));
	identity[0] = '\0';
	size_t len = 0;
	const char *token = bearer(r, &len);
	bool from_cookie = false;
	if (token == NULL && tc->cookies) {
		token = cookie_token(r,
				     tokens_cookie_name(tc, mode == AUTH_REFRESH
								? TOKENS_COOKIE_REFRESH
								: TOKENS_COOKIE_ACCESS),
				     &len);
		from_cookie = token != NULL;
	}
	if (token == NULL)
		return mode == AUTH_OPTIONAL ? pass : refuse("missing token", "Bearer");
	enum token_want want = mode == AUTH_REFRESH ? WANT_REFRESH
			       : mode == AUTH_FRESH ? WANT_FRESH
						    : WANT_ACCESS;
	enum token_verdict v = tokens_check(tc, token, len, want, claims, identity, idlen);
	struct auth_verdict verdict =
	    v != TOKEN_OK ? refuse(tokens_verdict_message(v),
				   v == TOKEN_NOT_FRESH ? "Bearer error=\"insufficient_scope\""
							: "Bearer error=\"invalid_token\"")
			  : check_claims(rv, r, options, from_cookie, claims);
	if (verdict.status != 0) {
		claims_clear(claims);
		identity[0] = '\0';
	}
	return verdict;
}

void auth_reply(struct http_request *r, const struct auth_verdict *v)
{
	if (v->challenge != NULL)
		http_add_header(r, "WWW-Authenticate", v->challenge);
	http_reply_error(r, v->status, v->error, NULL);
}
