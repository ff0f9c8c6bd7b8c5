/*
 * test_router.c: unit tests of router.c, the route table.
 *
 * Each test builds a small table with router_add and asks router_match what a request would
 * reach: the route, its captured ":name" parameters, or 404 and 405 with the Allow header. The
 * handler numbers stand in for the Lua registry references the daemon stores.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "router.h"

#include <stdio.h>
#include <string.h>

static int setup(void **state)
{
	*state = router_new();
	return *state == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	router_free(*state);
	return 0;
}

static void add_ok(struct router *r, const char *method, const char *pattern, int handler)
{
	char err[256] = "";
	if (router_add(r, method, pattern, handler, 0, err, sizeof(err)) != 0)
		fail_msg("router_add %s %s: %s", method, pattern, err);
}

/* Adding must fail, with needle in the message. */
static void add_bad(struct router *r, const char *method, const char *pattern, const char *needle)
{
	char err[256] = "";
	if (router_add(r, method, pattern, 1, 0, err, sizeof(err)) == 0)
		fail_msg("router_add %s '%s' was accepted", method, pattern);
	if (strstr(err, needle) == NULL)
		fail_msg("router_add %s '%s': \"%s\" lacks \"%s\"", method, pattern, err, needle);
}

/* The handler the request reaches, or -404 / -405. */
static int reach(const struct router *r, const char *method, const char *path,
		 struct route_params *params)
{
	const struct route *rt = NULL;
	char allow[128];
	switch (router_match(r, method, path, &rt, params, allow, sizeof(allow))) {
	case ROUTER_FOUND:
		assert_non_null(rt);
		return rt->handler;
	case ROUTER_NO_PATH:
		return -404;
	case ROUTER_NO_METHOD:
		return -405;
	}
	return 0;
}

/* Parameter i is name=value; its name ends at the pattern's next '/'. */
static void assert_param(const struct route_params *params, size_t i, const char *name,
			 const char *value)
{
	assert_true(i < params->n);
	size_t nlen = strcspn(params->p[i].name, "/");
	assert_int_equal(nlen, strlen(name));
	assert_memory_equal(params->p[i].name, name, nlen);
	assert_int_equal(params->p[i].len, strlen(value));
	assert_memory_equal(params->p[i].value, value, params->p[i].len);
}

static void test_literal_route(void **state)
{
	struct router *r = *state;
	struct route_params params;
	const struct route *rt = NULL;
	char allow[64];
	add_ok(r, "GET", "/", 1);
	add_ok(r, "GET", "/health", 2);
	assert_int_equal(router_match(r, "GET", "/health", &rt, &params, allow, sizeof(allow)),
			 ROUTER_FOUND);
	assert_int_equal(rt->handler, 2);
	assert_string_equal(rt->method, "GET");
	assert_string_equal(rt->pattern, "/health");
	assert_string_equal(rt->name, "GET /health");
	assert_int_equal(params.n, 0);
	assert_int_equal(reach(r, "GET", "/", &params), 1);
	assert_int_equal(reach(r, "GET", "/healthz", &params), -404);
	assert_int_equal(reach(r, "GET", "health", &params), -404);
}

static void test_params_captured(void **state)
{
	struct router *r = *state;
	struct route_params params;
	const char *path = "/users/42/posts/hello-world";
	add_ok(r, "GET", "/users/:id/posts/:post_slug", 7);
	assert_int_equal(reach(r, "GET", path, &params), 7);
	assert_int_equal(params.n, 2);
	assert_param(&params, 0, "id", "42");
	assert_param(&params, 1, "post_slug", "hello-world");
	/* Slices of the request path, not copies. */
	assert_ptr_equal(params.p[0].value, path + 7);
	assert_ptr_equal(params.p[1].value, path + 16);
	assert_int_equal(reach(r, "GET", "/users/42/posts", &params), -404);
	assert_int_equal(reach(r, "GET", "/users/42/comments/1", &params), -404);
}

static void test_literal_beats_param(void **state)
{
	struct router *r = *state;
	struct route_params params;
	add_ok(r, "GET", "/users/:id", 1);
	add_ok(r, "GET", "/users/me", 2);
	assert_int_equal(reach(r, "GET", "/users/me", &params), 2);
	assert_int_equal(params.n, 0);
	assert_int_equal(reach(r, "GET", "/users/mee", &params), 1);
	assert_param(&params, 0, "id", "mee");
}

static void test_more_literal_param_route_wins(void **state)
{
	struct router *r = *state;
	struct route_params params;
	add_ok(r, "GET", "/a/:x/b", 1);
	add_ok(r, "GET", "/:kind/:id", 2);
	add_ok(r, "GET", "/items/:id", 3);
	add_ok(r, "GET", "/:kind/:id/edit", 4);
	add_ok(r, "GET", "/items/:id/:action", 5);
	/* Declared later, but literal where the other has a parameter. */
	assert_int_equal(reach(r, "GET", "/items/5", &params), 3);
	assert_int_equal(params.n, 1);
	assert_param(&params, 0, "id", "5");
	assert_int_equal(reach(r, "GET", "/tags/5", &params), 2);
	assert_int_equal(params.n, 2);
	assert_param(&params, 0, "kind", "tags");
	assert_param(&params, 1, "id", "5");
	/* The first differing segment decides, not the count of literal ones. */
	assert_int_equal(reach(r, "GET", "/items/5/edit", &params), 5);
	assert_param(&params, 1, "action", "edit");
	assert_int_equal(reach(r, "GET", "/tags/5/edit", &params), 4);
}

static void test_first_of_equal_param_routes_wins(void **state)
{
	struct router *r = *state;
	struct route_params params;
	add_ok(r, "GET", "/files/:name", 1);
	add_ok(r, "GET", "/files/:path", 2);
	assert_int_equal(reach(r, "GET", "/files/a.txt", &params), 1);
	assert_int_equal(params.n, 1);
	assert_param(&params, 0, "name", "a.txt");
	/* A route that fails half-way leaves no parameter of its own behind. */
	add_ok(r, "GET", "/a/:x/b", 3);
	add_ok(r, "GET", "/a/:y/c", 4);
	assert_int_equal(reach(r, "GET", "/a/1/c", &params), 4);
	assert_int_equal(params.n, 1);
	assert_param(&params, 0, "y", "1");
}

static void test_head_falls_back_to_get(void **state)
{
	struct router *r = *state;
	struct route_params params;
	add_ok(r, "GET", "/page", 1);
	add_ok(r, "POST", "/form", 2);
	add_ok(r, "GET", "/files/:name", 3);
	assert_int_equal(reach(r, "HEAD", "/page", &params), 1);
	assert_int_equal(reach(r, "HEAD", "/files/a.txt", &params), 3);
	assert_param(&params, 0, "name", "a.txt");
	assert_int_equal(reach(r, "HEAD", "/form", &params), -405);
}

static void test_method_not_allowed(void **state)
{
	struct router *r = *state;
	struct route_params params;
	const struct route *rt = NULL;
	char allow[128];
	add_ok(r, "GET", "/users/:id", 1);
	add_ok(r, "POST", "/users/:id", 2);
	add_ok(r, "DELETE", "/users/:id", 3);
	add_ok(r, "POST", "/login", 4);
	assert_int_equal(router_match(r, "PUT", "/users/9", &rt, &params, allow, sizeof(allow)),
			 ROUTER_NO_METHOD);
	assert_string_equal(allow, "GET, HEAD, POST, DELETE");
	assert_int_equal(router_match(r, "GET", "/login", &rt, &params, allow, sizeof(allow)),
			 ROUTER_NO_METHOD);
	assert_string_equal(allow, "POST");
	assert_int_equal(reach(r, "DELETE", "/users/9", &params), 3);
}

static void test_allow_truncated_safely(void **state)
{
	struct router *r = *state;
	struct route_params params;
	const struct route *rt = NULL;
	char allow[12];
	memset(allow, 'x', sizeof(allow));
	add_ok(r, "GET", "/x", 1);
	add_ok(r, "POST", "/x", 2);
	add_ok(r, "PATCH", "/x", 3);
	assert_int_equal(router_match(r, "PUT", "/x", &rt, &params, allow, sizeof(allow)),
			 ROUTER_NO_METHOD);
	/* Cut short, but terminated and a prefix of the whole list. */
	assert_true(memchr(allow, '\0', sizeof(allow)) != NULL);
	assert_true(strlen(allow) > 0);
	assert_memory_equal(allow, "GET, HEAD, POST, PATCH", strlen(allow));
}

static void test_not_found(void **state)
{
	struct router *r = *state;
	struct route_params params;
	const struct route *rt = NULL;
	char allow[64];
	assert_int_equal(router_match(r, "GET", "/", &rt, &params, allow, sizeof(allow)),
			 ROUTER_NO_PATH);
	add_ok(r, "GET", "/users/:id", 1);
	assert_int_equal(router_match(r, "GET", "/groups/1", &rt, &params, allow, sizeof(allow)),
			 ROUTER_NO_PATH);
	assert_null(rt);
	assert_int_equal(reach(r, "POST", "/nope", &params), -404);
}

static void test_duplicate_refused(void **state)
{
	struct router *r = *state;
	struct route_params params;
	add_ok(r, "GET", "/a/:id", 1);
	add_bad(r, "GET", "/a/:id", "route GET /a/:id is defined twice");
	add_ok(r, "POST", "/a/:id", 2);
	assert_int_equal(router_count(r), 2);
	assert_int_equal(reach(r, "GET", "/a/1", &params), 1);
}

static void test_bad_method_refused(void **state)
{
	struct router *r = *state;
	add_bad(r, "HEAD", "/a", "'HEAD' is not a route method");
	add_bad(r, "get", "/a", "'get' is not a route method");
	add_bad(r, "TRACE", "/a", "use GET, POST, PUT, DELETE, PATCH or OPTIONS");
	add_bad(r, "", "/a", "'' is not a route method");
	add_ok(r, "OPTIONS", "/a", 1);
	add_ok(r, "PATCH", "/a", 2);
	add_ok(r, "PUT", "/a", 3);
	assert_int_equal(router_count(r), 3);
}

static void test_bad_patterns_refused(void **state)
{
	struct router *r = *state;
	add_bad(r, "GET", "users", "route path 'users' must start with '/'");
	add_bad(r, "GET", "", "must start with '/'");
	add_bad(r, "GET", "/users/:", "a parameter is ':' and a name");
	add_bad(r, "GET", "/users/:1st", "a parameter is ':' and a name");
	add_bad(r, "GET", "/users/:a-b", "a parameter is ':' and a name");
	add_bad(r, "GET", "/a b", "' ' is not allowed");
	add_bad(r, "GET", "/a?b", "'?' is not allowed");
	add_bad(r, "GET", "/a#b", "'#' is not allowed");
	add_bad(r, "GET", "/a\"b", "'\"' is not allowed");
	add_bad(r, "GET", "/:a/:b/:c/:d/:e/:f/:g/:h/:i", "has more than 8 parameters");
	assert_int_equal(router_count(r), 0);
	add_ok(r, "GET", "/:a/:b/:c/:d/:e/:f/:g/:h", 1);
	add_ok(r, "GET", "/v1/user_s/a-b.c~d/:_id9", 2);
	assert_int_equal(router_count(r), 2);
}

static void test_eight_params_captured(void **state)
{
	struct router *r = *state;
	struct route_params params;
	add_ok(r, "GET", "/:a/:b/:c/:d/:e/:f/:g/:h", 1);
	assert_int_equal(reach(r, "GET", "/1/2/3/4/5/6/7/8", &params), 1);
	assert_int_equal(params.n, 8);
	assert_param(&params, 0, "a", "1");
	assert_param(&params, 7, "h", "8");
	assert_int_equal(reach(r, "GET", "/1/2/3/4/5/6/7/8/9", &params), -404);
}

static void test_trailing_slash_significant(void **state)
{
	struct router *r = *state;
	struct route_params params;
	add_ok(r, "GET", "/about", 1);
	add_ok(r, "GET", "/users/:id", 2);
	add_ok(r, "GET", "/docs/", 3);
	assert_int_equal(reach(r, "GET", "/about/", &params), -404);
	assert_int_equal(reach(r, "GET", "/users/1/", &params), -404);
	assert_int_equal(reach(r, "GET", "/docs", &params), -404);
	assert_int_equal(reach(r, "GET", "/docs/", &params), 3);
}

static void test_empty_segment_not_a_param(void **state)
{
	struct router *r = *state;
	struct route_params params;
	add_ok(r, "GET", "/users/:id", 1);
	add_ok(r, "GET", "/a/:x/b", 2);
	assert_int_equal(reach(r, "GET", "/users/", &params), -404);
	assert_int_equal(reach(r, "GET", "/a//b", &params), -404);
	assert_int_equal(reach(r, "GET", "/users", &params), -404);
}

static void test_count_and_at(void **state)
{
	struct router *r = *state;
	assert_int_equal(router_count(r), 0);
	assert_null(router_at(r, 0));
	add_ok(r, "GET", "/b", 10);
	add_ok(r, "POST", "/a/:id", 11);
	add_bad(r, "GET", "/b", "defined twice");
	add_ok(r, "GET", "/a/:id", 12);
	assert_int_equal(router_count(r), 3);
	assert_string_equal(router_at(r, 0)->name, "GET /b");
	assert_int_equal(router_at(r, 0)->handler, 10);
	assert_string_equal(router_at(r, 1)->name, "POST /a/:id");
	assert_int_equal(router_at(r, 1)->handler, 11);
	assert_string_equal(router_at(r, 2)->method, "GET");
	assert_string_equal(router_at(r, 2)->pattern, "/a/:id");
	assert_int_equal(router_at(r, 2)->handler, 12);
	assert_null(router_at(r, 3));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_literal_route, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_params_captured, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_literal_beats_param, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_more_literal_param_route_wins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_first_of_equal_param_routes_wins, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_head_falls_back_to_get, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_method_not_allowed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_allow_truncated_safely, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_not_found, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_duplicate_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_method_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_patterns_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_eight_params_captured, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_trailing_slash_significant, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_segment_not_a_param, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_count_and_at, setup, teardown),
	};
	return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
