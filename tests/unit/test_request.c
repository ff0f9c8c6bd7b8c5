/*
 * test_request.c: unit tests of request.c, the parsers of the raw parts of a request.
 *
 * Cookie headers and query strings are fed in as a client could send them; the pairs the
 * parser hands to its callback are collected and compared. The percent decoder, the JSON
 * content-type check and the request-id check are tested directly.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PAIRS 8

/* The pairs a parser passed to its callback, as NUL-terminated copies. */
struct pairs {
	size_t n;
	char name[MAX_PAIRS][64];
	char value[MAX_PAIRS][64];
	size_t vlen[MAX_PAIRS];
};

static void collect(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct pairs *ps = arg;
	assert_true(ps->n < MAX_PAIRS);
	assert_true(nlen < sizeof(ps->name[0]) && vlen < sizeof(ps->value[0]));
	memcpy(ps->name[ps->n], name, nlen);
	ps->name[ps->n][nlen] = '\0';
	memcpy(ps->value[ps->n], value, vlen);
	ps->value[ps->n][vlen] = '\0';
	ps->vlen[ps->n] = vlen;
	ps->n++;
}

static void assert_pair(const struct pairs *ps, size_t i, const char *name, const char *value)
{
	assert_true(i < ps->n);
	assert_string_equal(ps->name[i], name);
	assert_string_equal(ps->value[i], value);
	assert_int_equal(ps->vlen[i], strlen(value));
}

static struct pairs cookies(const char *header)
{
	struct pairs ps = {0};
	size_t n = request_cookies(header, collect, &ps);
	assert_int_equal(n, ps.n);
	return ps;
}

static struct pairs query(const char *q)
{
	struct pairs ps = {0};
	char *scratch = malloc(strlen(q) + 2);
	assert_non_null(scratch);
	size_t n = request_query(q, scratch, collect, &ps);
	free(scratch);
	assert_int_equal(n, ps.n);
	return ps;
}

static void test_cookies_plain(void **state)
{
	struct pairs ps = cookies("sid=abc123; theme=dark");
	assert_int_equal(ps.n, 2);
	assert_pair(&ps, 0, "sid", "abc123");
	assert_pair(&ps, 1, "theme", "dark");
	ps = cookies("a=b=c");
	assert_int_equal(ps.n, 1);
	assert_pair(&ps, 0, "a", "b=c");
}

static void test_cookies_spaces(void **state)
{
	struct pairs ps = cookies("  sid = abc ;\ttheme=dark\t;lang= en  ");
	assert_int_equal(ps.n, 3);
	assert_pair(&ps, 0, "sid", "abc");
	assert_pair(&ps, 1, "theme", "dark");
	assert_pair(&ps, 2, "lang", "en");
}

static void test_cookies_quoted(void **state)
{
	struct pairs ps = cookies("token=\"x y\"; empty=\"\"; lone=\"");
	assert_int_equal(ps.n, 3);
	assert_pair(&ps, 0, "token", "x y");
	assert_pair(&ps, 1, "empty", "");
	/* A lone quote is not a quoted value: it is kept. */
	assert_pair(&ps, 2, "lone", "\"");
}

static void test_cookies_empty_value(void **state)
{
	struct pairs ps = cookies("a=; b=2; c=");
	assert_int_equal(ps.n, 3);
	assert_pair(&ps, 0, "a", "");
	assert_pair(&ps, 1, "b", "2");
	assert_pair(&ps, 2, "c", "");
}

static void test_cookies_without_equals(void **state)
{
	struct pairs ps = cookies("flag; a=1; other");
	assert_int_equal(ps.n, 1);
	assert_pair(&ps, 0, "a", "1");
	ps = cookies("=nameless; b=2");
	assert_int_equal(ps.n, 1);
	assert_pair(&ps, 0, "b", "2");
}

static void test_cookies_trailing_semicolon(void **state)
{
	struct pairs ps = cookies("a=1;");
	assert_int_equal(ps.n, 1);
	assert_pair(&ps, 0, "a", "1");
	ps = cookies("a=1;; ;b=2; ");
	assert_int_equal(ps.n, 2);
	assert_pair(&ps, 1, "b", "2");
	assert_int_equal(cookies("").n, 0);
	assert_int_equal(cookies(";;").n, 0);
	assert_int_equal(request_cookies(NULL, collect, NULL), 0);
}

static void test_query_decoded(void **state)
{
	struct pairs ps = query("a=1&msg=hello%20world&q=x+y&first%5Fname=Ann&plus=%2B&e=%C3%A9");
	assert_int_equal(ps.n, 6);
	assert_pair(&ps, 0, "a", "1");
	assert_pair(&ps, 1, "msg", "hello world");
	assert_pair(&ps, 2, "q", "x y");
	assert_pair(&ps, 3, "first_name", "Ann");
	assert_pair(&ps, 4, "plus", "+");
	assert_pair(&ps, 5, "e", "\xc3\xa9");
	ps = query("full+name=A+B");
	assert_pair(&ps, 0, "full name", "A B");
}

static void test_query_without_equals(void **state)
{
	struct pairs ps = query("flag&a=1&debug");
	assert_int_equal(ps.n, 3);
	assert_pair(&ps, 0, "flag", "");
	assert_pair(&ps, 1, "a", "1");
	assert_pair(&ps, 2, "debug", "");
	ps = query("a=");
	assert_int_equal(ps.n, 1);
	assert_pair(&ps, 0, "a", "");
}

static void test_query_empty_names_skipped(void **state)
{
	struct pairs ps = query("=x&a=1&&=&b=2&");
	assert_int_equal(ps.n, 2);
	assert_pair(&ps, 0, "a", "1");
	assert_pair(&ps, 1, "b", "2");
	assert_int_equal(query("").n, 0);
	assert_int_equal(request_query(NULL, NULL, collect, NULL), 0);
}

static void test_query_bad_escapes_skipped(void **state)
{
	struct pairs ps = query("a=%4&b=%zz&c=ok&d%=1&e=%&f=%g1&g=%4");
	assert_int_equal(ps.n, 1);
	assert_pair(&ps, 0, "c", "ok");
}

static void test_query_nul_rejected(void **state)
{
	struct pairs ps = query("a=%00&b=1&c%00=2&d=x%00y");
	assert_int_equal(ps.n, 1);
	assert_pair(&ps, 0, "b", "1");
}

/* Decodes s whole; returns the decoder's result, the text in out. */
static int decode(const char *s, bool plus, char *out, size_t *outlen)
{
	return request_percent_decode(s, strlen(s), plus, out, outlen);
}

static void test_percent_decode(void **state)
{
	char out[64];
	size_t n = 99;
	assert_int_equal(decode("abc%41%62", false, out, &n), 0);
	assert_string_equal(out, "abcAb");
	assert_int_equal(n, 5);
	assert_int_equal(decode("%c3%A9+%2b", false, out, &n), 0);
	assert_string_equal(out, "\xc3\xa9+"
				 "+");
	assert_int_equal(decode("a+b", true, out, &n), 0);
	assert_string_equal(out, "a b");
	assert_int_equal(decode("%FF", false, out, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal((unsigned char)out[0], 0xff);
	assert_int_equal(decode("", true, out, &n), 0);
	assert_int_equal(n, 0);
	assert_string_equal(out, "");
}

static void test_percent_decode_bad(void **state)
{
	static const char *const bad[] = {"%4", "%zz", "%", "a%2", "%0g", "%g0", "%00", "x%00"};
	char out[64];
	size_t n;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (decode(bad[i], false, out, &n) != -1)
			fail_msg("'%s' decoded", bad[i]);
	}
}

static void test_percent_decode_bounded(void **state)
{
	char out[8];
	size_t n;
	/* Only s[0..len) is read: an escape cut by len is bad, text after len is ignored. */
	assert_int_equal(request_percent_decode("%41", 2, false, out, &n), -1);
	assert_int_equal(request_percent_decode("ab%41", 2, false, out, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(out, "ab");
}

static void test_is_json(void **state)
{
	assert_true(request_is_json("application/json"));
	assert_true(request_is_json("application/json; charset=utf-8"));
	assert_true(request_is_json("application/json;charset=UTF-8"));
	assert_true(request_is_json("  application/json"));
	assert_true(request_is_json("Application/JSON"));
	assert_true(request_is_json("application/problem+json"));
	assert_true(request_is_json("application/vnd.api+JSON; charset=utf-8"));
}

static void test_is_not_json(void **state)
{
	assert_false(request_is_json(NULL));
	assert_false(request_is_json(""));
	assert_false(request_is_json("text/plain"));
	assert_false(request_is_json("application/jsonx"));
	assert_false(request_is_json("application/json5"));
	assert_false(request_is_json("application/x-www-form-urlencoded"));
	assert_false(request_is_json("text/json"));
	assert_false(request_is_json("text/x+json"));
	assert_false(request_is_json("application/a/b+json"));
	/* "+json" needs a subtype in front of it. */
	assert_false(request_is_json("application/+json"));
	assert_true(request_is_json("application/a+json"));
}

static void test_request_id_ok(void **state)
{
	char id[66];
	assert_true(request_id_ok("a"));
	assert_true(request_id_ok("req-1.2_3:x"));
	assert_true(request_id_ok("0123456789ABCDEFabcdef"));
	memset(id, 'a', 64);
	id[64] = '\0';
	assert_true(request_id_ok(id));
}

static void test_request_id_refused(void **state)
{
	char id[66];
	memset(id, 'a', 65);
	id[65] = '\0';
	assert_false(request_id_ok(id));
	assert_false(request_id_ok(""));
	assert_false(request_id_ok("a b"));
	assert_false(request_id_ok("a\"b"));
	assert_false(request_id_ok("a'b"));
	assert_false(request_id_ok("a/b"));
	assert_false(request_id_ok("a\tb"));
	assert_false(request_id_ok("a\r\nX-Evil: 1"));
	assert_false(request_id_ok("\xc3\xa9"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cookies_plain),
	    cmocka_unit_test(test_cookies_spaces),
	    cmocka_unit_test(test_cookies_quoted),
	    cmocka_unit_test(test_cookies_empty_value),
	    cmocka_unit_test(test_cookies_without_equals),
	    cmocka_unit_test(test_cookies_trailing_semicolon),
	    cmocka_unit_test(test_query_decoded),
	    cmocka_unit_test(test_query_without_equals),
	    cmocka_unit_test(test_query_empty_names_skipped),
	    cmocka_unit_test(test_query_bad_escapes_skipped),
	    cmocka_unit_test(test_query_nul_rejected),
	    cmocka_unit_test(test_percent_decode),
	    cmocka_unit_test(test_percent_decode_bad),
	    cmocka_unit_test(test_percent_decode_bounded),
	    cmocka_unit_test(test_is_json),
	    cmocka_unit_test(test_is_not_json),
	    cmocka_unit_test(test_request_id_ok),
	    cmocka_unit_test(test_request_id_refused),
	};
	return cmocka_run_group_tests_name("request", tests, NULL, NULL);
}
