/*
 * test_auth.c: unit tests of auth.c, the token check a request passes before its handler.
 *
 * A real configuration is loaded from a temporary folder (HS256, tokens in cookies too, the
 * sqlite storage plugin built here), and the worker's revoked ids are started on it as a
 * worker starts them. Requests are real evhttp requests with the headers a client would
 * send; tokens are issued with tokens_issue, so every branch of auth_check sees what it sees
 * in sesamed. The revocation policy of tokens.c (what revoking a token revokes) is tested here
 * too, on the same tokens.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "auth.h"

#include <event2/http.h>
#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "claims.h"
#include "config.h"
#include "http.h"
#include "jwa.h"
#include "plugin.h"
#include "revocation.h"
#include "tokens.h"

struct fixture {
	char dir[64];
	struct config_errors errs;
	struct config *cfg;
	struct revocation *rv;
	bool started;
};

static void write_config(const char *dir)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/sesame.lua", dir);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fprintf(f,
		"plugins = { path = \"%s\" }\n"
		"storage = { backend = \"sqlite\", sqlite = { path = \"sesame.db\" } }\n"
		"jwt = { secret = \"an HMAC secret of more than 32 bytes\", cookies = true }\n"
		"routes = { \"routes/*.lua\" }\n",
		TEST_PLUGINDIR);
	fclose(f);
	snprintf(path, sizeof(path), "%s/routes", dir);
	assert_int_equal(mkdir(path, 0700), 0);
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	assert_non_null(fx);
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/sesame-test-auth-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	write_config(fx->dir);
	char path[128], err[300];
	snprintf(path, sizeof(path), "%s/sesame.lua", fx->dir);
	fx->cfg = config_load(path, &fx->errs);
	assert_non_null(fx->cfg);
	assert_int_equal(plugins_migrate(fx->cfg->plugins, false, err, sizeof(err)), 0);
	assert_int_equal(plugins_worker_start(fx->cfg->plugins), 0);
	fx->started = true;
	assert_int_equal(revocation_start(fx->cfg, &fx->rv), 0);
	assert_non_null(fx->rv);
	*state = fx;
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *fx = *state;
	revocation_stop(fx->rv);
	if (fx->started)
		plugins_worker_stop(fx->cfg->plugins);
	config_free(fx->cfg);
	config_errors_free(&fx->errs);
	int rc = nftw(fx->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
	free(fx);
	return rc;
}

/* A request as evhttp hands it over, with no connection: the check only reads it. */
static struct http_request *request(const char *method)
{
	struct http_request *r = calloc(1, sizeof(*r));
	assert_non_null(r);
	r->ev = evhttp_request_new(NULL, NULL);
	assert_non_null(r->ev);
	r->method = method;
	return r;
}

static void add_header(struct http_request *r, const char *name, const char *value)
{
	assert_int_equal(evhttp_add_header(evhttp_request_get_input_headers(r->ev), name, value),
			 0);
}

static void add_bearer(struct http_request *r, const char *token)
{
	char value[TOKENS_MAX_LEN];
	snprintf(value, sizeof(value), "Bearer %s", token);
	add_header(r, "Authorization", value);
}

static void add_cookie(struct http_request *r, const char *name, const char *token)
{
	char value[TOKENS_MAX_LEN];
	snprintf(value, sizeof(value), "theme=dark; %s=%s", name, token);
	add_header(r, "Cookie", value);
}

static void free_request(struct http_request *r)
{
	evhttp_request_free(r->ev);
	free(r);
}

/* A token of type for identity 42; fresh for access tokens; not_after 0 or its end. */
static char *issue(struct fixture *fx, enum token_type type, bool fresh, long not_after,
		   const char *family)
{
	struct token_request tr = {.type = type,
				   .identity = "42",
				   .expires = -1,
				   .fresh = fresh,
				   .not_after = not_after,
				   .family = family};
	char err[160];
	char *token = tokens_issue(&fx->cfg->jwt, &tr, err, sizeof(err));
	assert_non_null(token);
	return token;
}

/* Runs the check and, when it passes, compares the identity and frees the claims. */
static struct auth_verdict check(struct fixture *fx, enum auth_mode mode, struct http_request *r,
				 const char *identity)
{
	struct claims claims;
	memset(&claims, 0xff, sizeof(claims));
	char id[256] = "x";
	struct auth_verdict v = auth_check(&fx->cfg->jwt, fx->rv, mode, r, &claims, id, sizeof(id));
	if (v.status == 0 && identity != NULL) {
		assert_true(claims_present(&claims));
		assert_string_equal(id, identity);
		assert_string_equal(claims.c[CLAIM_SUB].s, identity);
		assert_string_equal(json_string_value(json_object_get(claims_json(&claims), "sub")),
				    identity);
	} else {
		/* Refused, or passed without a token: nothing to free, no identity. */
		assert_false(claims_present(&claims));
		assert_string_equal(id, "");
	}
	claims_clear(&claims);
	free_request(r);
	return v;
}

static void assert_refused(struct auth_verdict v, const char *error, const char *challenge)
{
	assert_int_equal(v.status, 401);
	assert_string_equal(v.error, error);
	if (challenge == NULL)
		assert_null(v.challenge);
	else
		assert_string_equal(v.challenge, challenge);
}

#define INVALID "Bearer error=\"invalid_token\""

static void test_no_token(void **state)
{
	struct fixture *fx = *state;
	assert_refused(check(fx, AUTH_REQUIRED, request("GET"), NULL), "missing token", "Bearer");
	assert_refused(check(fx, AUTH_REFRESH, request("POST"), NULL), "missing token", "Bearer");
	assert_refused(check(fx, AUTH_FRESH, request("POST"), NULL), "missing token", "Bearer");
}

static void test_optional(void **state)
{
	struct fixture *fx = *state;
	assert_int_equal(check(fx, AUTH_OPTIONAL, request("GET"), NULL).status, 0);
	char *token = issue(fx, TOKEN_ACCESS, false, 0, NULL);
	struct http_request *r = request("GET");
	add_bearer(r, token);
	assert_int_equal(check(fx, AUTH_OPTIONAL, r, "42").status, 0);
	/* Optional is no token at all, not a bad one. */
	r = request("GET");
	add_bearer(r, "not.a.token");
	assert_refused(check(fx, AUTH_OPTIONAL, r, NULL), "invalid token", INVALID);
	free(token);
}

static void test_malformed_header(void **state)
{
	struct fixture *fx = *state;
	char *token = issue(fx, TOKEN_ACCESS, false, 0, NULL);
	char value[TOKENS_MAX_LEN];
	/* Around the token: another scheme, none, no token, two words, no space. */
	const char *forms[][2] = {{"Basic ", ""}, {"", ""},	    {"Bearer ", " extra"},
				  {"Bearer", ""}, {NULL, "Bearer"}, {NULL, "Bearer "}};
	for (size_t i = 0; i < sizeof(forms) / sizeof(*forms); i++) {
		struct http_request *r = request("GET");
		if (forms[i][0] != NULL)
			snprintf(value, sizeof(value), "%s%s%s", forms[i][0], token, forms[i][1]);
		else
			snprintf(value, sizeof(value), "%s", forms[i][1]);
		add_header(r, "Authorization", value);
		assert_refused(check(fx, AUTH_REQUIRED, r, NULL), "missing token", "Bearer");
	}
	struct http_request *r = request("GET");
	add_bearer(r, "not.a.token");
	assert_refused(check(fx, AUTH_REQUIRED, r, NULL), "invalid token", INVALID);
	free(token);
}

static void test_bearer_ok(void **state)
{
	struct fixture *fx = *state;
	char *token = issue(fx, TOKEN_ACCESS, false, 0, NULL);
	struct http_request *r = request("POST");
	char value[TOKENS_MAX_LEN];
	/* The scheme's case does not matter, nor spaces before the token. */
	snprintf(value, sizeof(value), "bearer   %s", token);
	add_header(r, "Authorization", value);
	assert_int_equal(check(fx, AUTH_REQUIRED, r, "42").status, 0);
	/* A bearer token on a request that changes state needs no CSRF header. */
	r = request("DELETE");
	add_bearer(r, token);
	assert_int_equal(check(fx, AUTH_REQUIRED, r, "42").status, 0);
	free(token);
}

static void test_cookie_ok(void **state)
{
	struct fixture *fx = *state;
	char *access = issue(fx, TOKEN_ACCESS, false, 0, NULL);
	char *refresh = issue(fx, TOKEN_REFRESH, false, 0, NULL);
	struct http_request *r = request("GET");
	add_cookie(r, TOKENS_ACCESS_COOKIE, access);
	assert_int_equal(check(fx, AUTH_REQUIRED, r, "42").status, 0);
	/* A refresh route reads the refresh cookie, not the access one. */
	char csrf[64];
	assert_true(tokens_csrf_of(refresh, csrf, sizeof(csrf)));
	r = request("POST");
	add_cookie(r, TOKENS_REFRESH_COOKIE, refresh);
	add_header(r, TOKENS_CSRF_HEADER, csrf);
	assert_int_equal(check(fx, AUTH_REFRESH, r, "42").status, 0);
	r = request("POST");
	add_cookie(r, TOKENS_ACCESS_COOKIE, access);
	assert_refused(check(fx, AUTH_REFRESH, r, NULL), "missing token", "Bearer");
	free(access);
	free(refresh);
}

static void test_cookie_csrf(void **state)
{
	struct fixture *fx = *state;
	char *token = issue(fx, TOKEN_ACCESS, false, 0, NULL);
	char csrf[64];
	assert_true(tokens_csrf_of(token, csrf, sizeof(csrf)));
	const char *reads[] = {"GET", "HEAD", "OPTIONS"};
	for (size_t i = 0; i < 3; i++) {
		struct http_request *r = request(reads[i]);
		add_cookie(r, TOKENS_ACCESS_COOKIE, token);
		assert_int_equal(check(fx, AUTH_REQUIRED, r, "42").status, 0);
	}
	struct http_request *r = request("POST");
	add_cookie(r, TOKENS_ACCESS_COOKIE, token);
	assert_refused(check(fx, AUTH_REQUIRED, r, NULL), "missing or wrong CSRF token", NULL);
	r = request("POST");
	add_cookie(r, TOKENS_ACCESS_COOKIE, token);
	add_header(r, TOKENS_CSRF_HEADER, "0123456789abcdef0123456789abcdef0123");
	assert_refused(check(fx, AUTH_REQUIRED, r, NULL), "missing or wrong CSRF token", NULL);
	r = request("POST");
	add_cookie(r, TOKENS_ACCESS_COOKIE, token);
	csrf[strlen(csrf) - 1] = '\0';
	add_header(r, TOKENS_CSRF_HEADER, csrf);
	assert_refused(check(fx, AUTH_REQUIRED, r, NULL), "missing or wrong CSRF token", NULL);
	assert_true(tokens_csrf_of(token, csrf, sizeof(csrf)));
	r = request("PUT");
	add_cookie(r, TOKENS_ACCESS_COOKIE, token);
	add_header(r, TOKENS_CSRF_HEADER, csrf);
	assert_int_equal(check(fx, AUTH_REQUIRED, r, "42").status, 0);
	free(token);
}

static void test_bearer_before_cookie(void **state)
{
	struct fixture *fx = *state;
	char *token = issue(fx, TOKEN_ACCESS, false, 0, NULL);
	struct http_request *r = request("GET");
	add_bearer(r, "not.a.token");
	add_cookie(r, TOKENS_ACCESS_COOKIE, token);
	assert_refused(check(fx, AUTH_REQUIRED, r, NULL), "invalid token", INVALID);
	/* With jwt.cookies off, a cookie is no token. */
	fx->cfg->jwt.cookies = false;
	r = request("GET");
	add_cookie(r, TOKENS_ACCESS_COOKIE, token);
	assert_refused(check(fx, AUTH_REQUIRED, r, NULL), "missing token", "Bearer");
	fx->cfg->jwt.cookies = true;
	free(token);
}

static void test_wrong_type(void **state)
{
	struct fixture *fx = *state;
	char *access = issue(fx, TOKEN_ACCESS, true, 0, NULL);
	char *refresh = issue(fx, TOKEN_REFRESH, false, 0, NULL);
	enum auth_mode access_modes[] = {AUTH_REQUIRED, AUTH_OPTIONAL, AUTH_FRESH};
	for (size_t i = 0; i < 3; i++) {
		struct http_request *r = request("GET");
		add_bearer(r, refresh);
		assert_refused(check(fx, access_modes[i], r, NULL), "wrong token type", INVALID);
	}
	struct http_request *r = request("POST");
	add_bearer(r, access);
	assert_refused(check(fx, AUTH_REFRESH, r, NULL), "wrong token type", INVALID);
	free(access);
	free(refresh);
}

static void test_fresh(void **state)
{
	struct fixture *fx = *state;
	char *stale = issue(fx, TOKEN_ACCESS, false, 0, NULL);
	char *fresh = issue(fx, TOKEN_ACCESS, true, 0, NULL);
	struct http_request *r = request("POST");
	add_bearer(r, stale);
	assert_refused(check(fx, AUTH_FRESH, r, NULL), "fresh token required",
		       "Bearer error=\"insufficient_scope\"");
	r = request("POST");
	add_bearer(r, fresh);
	assert_int_equal(check(fx, AUTH_FRESH, r, "42").status, 0);
	free(stale);
	free(fresh);
}

static void test_expired(void **state)
{
	struct fixture *fx = *state;
	char *token = issue(fx, TOKEN_ACCESS, false, (long)time(NULL) - 60, NULL);
	struct http_request *r = request("GET");
	add_bearer(r, token);
	assert_refused(check(fx, AUTH_REQUIRED, r, NULL), "token expired", INVALID);
	free(token);
}

static void test_revoked(void **state)
{
	struct fixture *fx = *state;
	char *by_jti = issue(fx, TOKEN_ACCESS, false, 0, NULL);
	char *by_family = issue(fx, TOKEN_REFRESH, false, 0, "family-of-test-revoked");
	char *other = issue(fx, TOKEN_ACCESS, false, 0, "another-family");
	json_t *claims = NULL;
	char id[256];
	assert_int_equal(tokens_verify(&fx->cfg->jwt, by_jti, strlen(by_jti), WANT_ACCESS, &claims,
				       id, sizeof(id)),
			 TOKEN_OK);
	revocation_add(fx->rv, json_string_value(json_object_get(claims, "jti")), 0);
	json_decref(claims);
	revocation_add(fx->rv, "family-of-test-revoked", 0);

	struct http_request *r = request("GET");
	add_bearer(r, by_jti);
	assert_refused(check(fx, AUTH_REQUIRED, r, NULL), "token revoked", INVALID);
	r = request("POST");
	add_bearer(r, by_family);
	assert_refused(check(fx, AUTH_REFRESH, r, NULL), "token revoked", INVALID);
	/* From a cookie too, with its CSRF header right. */
	char csrf[64];
	assert_true(tokens_csrf_of(by_family, csrf, sizeof(csrf)));
	r = request("POST");
	add_cookie(r, TOKENS_REFRESH_COOKIE, by_family);
	add_header(r, TOKENS_CSRF_HEADER, csrf);
	assert_refused(check(fx, AUTH_REFRESH, r, NULL), "token revoked", INVALID);
	r = request("GET");
	add_bearer(r, other);
	assert_int_equal(check(fx, AUTH_REQUIRED, r, "42").status, 0);
	free(by_jti);
	free(by_family);
	free(other);
}

static void test_auth_revoked(void **state)
{
	struct fixture *fx = *state;
	json_t *claims = json_pack("{s:s, s:s}", "jti", "some-jti", "fam", "some-family");
	assert_non_null(claims);
	assert_false(auth_revoked(NULL, claims));
	assert_false(auth_revoked(fx->rv, claims));
	revocation_add(fx->rv, "some-family", 0);
	assert_true(auth_revoked(fx->rv, claims));
	json_decref(claims);
}

/* The claims of token, verified. */
static json_t *claims_of(struct fixture *fx, const char *token)
{
	json_t *claims = NULL;
	char id[256];
	assert_int_equal(
	    tokens_verify(&fx->cfg->jwt, token, strlen(token), WANT_ANY, &claims, id, sizeof(id)),
	    TOKEN_OK);
	return claims;
}

static void test_revocation_policy(void **state)
{
	struct fixture *fx = *state;
	long long now = (long long)time(NULL);
	char *token = issue(fx, TOKEN_REFRESH, false, 0, "a-family");
	json_t *claims = claims_of(fx, token);
	struct token_revocation rev;
	assert_null(tokens_revocation(&fx->cfg->jwt, claims, now, &rev));
	assert_string_equal(rev.jti, json_string_value(json_object_get(claims, "jti")));
	assert_int_equal(rev.jti_until, json_integer_value(json_object_get(claims, "exp")));
	assert_string_equal(rev.family, "a-family");
	assert_int_equal(rev.family_until, tokens_family_revoke_until(&fx->cfg->jwt, now));
	/* No exp: the jti is revoked for good. No fam: no family. */
	json_object_del(claims, "exp");
	json_object_del(claims, "fam");
	assert_null(tokens_revocation(&fx->cfg->jwt, claims, now, &rev));
	assert_int_equal(rev.jti_until, 0);
	assert_null(rev.family);
	/* Not a token's claims. */
	assert_int_equal(json_object_set_new(claims, "fam", json_string("")), 0);
	assert_non_null(tokens_revocation(&fx->cfg->jwt, claims, now, &rev));
	json_object_del(claims, "fam");
	json_object_del(claims, "sub");
	assert_non_null(tokens_revocation(&fx->cfg->jwt, claims, now, &rev));
	json_decref(claims);
	free(token);
}

static enum token_verdict verify_with(const struct token_config *tc, const char *token)
{
	json_t *claims = NULL;
	char id[256];
	enum token_verdict v =
	    tokens_verify(tc, token, strlen(token), WANT_ANY, &claims, id, sizeof(id));
	json_decref(claims);
	return v;
}

/*
 * tokens.c keeps the HMAC keyed with the last secret and the last header accepted: a token
 * checked under another secret, or another algorithm, in between is decided on its own, and
 * the first configuration's verdicts do not change.
 */
static void test_prepared_state_follows_config(void **state)
{
	struct fixture *fx = *state;
	const struct token_config *tc = &fx->cfg->jwt;
	char *token = issue(fx, TOKEN_ACCESS, false, 0, NULL);
	assert_int_equal(verify_with(tc, token), TOKEN_OK);

	struct token_config other = *tc;
	unsigned char key[64];
	memcpy(key, tc->key, tc->keylen);
	key[tc->keylen - 1] ^= 1; /* the same length, one bit apart */
	other.key = key;
	assert_int_equal(verify_with(&other, token), TOKEN_INVALID);
	assert_int_equal(verify_with(tc, token), TOKEN_OK);
	assert_int_equal(verify_with(&other, token), TOKEN_INVALID);

	/* The header accepted for HS256 is not accepted for HS384, even with the same secret. */
	other.key = tc->key;
	other.alg = jwa_parse("HS384");
	assert_int_equal(verify_with(&other, token), TOKEN_INVALID);
	assert_int_equal(verify_with(tc, token), TOKEN_OK);

	/* A token with the header just accepted and a signature one character off is refused. */
	size_t len = strlen(token);
	token[len - 2] = token[len - 2] == 'A' ? 'B' : 'A';
	assert_int_equal(verify_with(tc, token), TOKEN_INVALID);
	free(token);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_no_token, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_optional, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed_header, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bearer_ok, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cookie_ok, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_cookie_csrf, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bearer_before_cookie, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_wrong_type, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_fresh, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_expired, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_revoked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_auth_revoked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_revocation_policy, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_prepared_state_follows_config, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
