/*
 * test_claims.c: unit tests of claims.c, the claims reader of the token check: which texts
 * its scanner reads itself, and that what claims_parse accepts and the values it reads are
 * jansson's (JSON_REJECT_DUPLICATES) on every rule, whether the scanner or jansson read them.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "claims.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

static void assert_same_claim(const struct claim *a, const struct claim *b)
{
	assert_int_equal(a->kind, b->kind);
	if (a->kind == CLAIM_STRING) {
		assert_int_equal(a->len, b->len);
		assert_memory_equal(a->s, b->s, a->len);
		assert_int_equal(a->s[a->len], '\0');
	}
	if (a->kind == CLAIM_INTEGER)
		assert_true(a->i == b->i);
	if (a->kind == CLAIM_INTEGER || a->kind == CLAIM_REAL)
		assert_true(a->d == b->d);
}

/* claims_parse on text: jansson's verdict and values; returns whether the scanner read it. */
static bool parse(const char *text)
{
	size_t n = strlen(text);
	struct claims c = {0}, j = {0};
	bool ok = claims_parse(&c, text, n);
	json_t *v = json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
	assert_int_equal(ok, json_is_object(v));
	bool scanned = c.text != NULL;
	if (ok) {
		claims_from_json(&j, v);
		for (size_t k = 0; k < CLAIMS_KNOWN; k++)
			assert_same_claim(&c.c[k], &j.c[k]);
		assert_true(claims_present(&c));
		assert_true(json_equal(claims_json(&c), v));
	} else {
		assert_false(claims_present(&c));
	}
	json_decref(v);
	claims_clear(&c);
	return scanned;
}

static void test_scanned(void **state)
{
	(void)state;
	assert_true(parse("{\"fresh\":false,\"iat\":1700000000,\"jti\":\"4a0c5d0e-1b2c-4d5e-8f90-"
			  "0123456789ab\",\"type\":\"access\",\"sub\":\"42\",\"nbf\":1700000000,"
			  "\"exp\":1700000900}"));
	assert_true(parse(" \t\r\n{ \"sub\" : 42 , \"fresh\" : true , \"x\" : null } \n"));
	assert_true(parse("{}"));
	assert_true(parse("{ }"));
	assert_true(parse("{\"iat\":-0,\"exp\":-17,\"nbf\":0,\"a\":123456789012345678}"));
	assert_true(parse("{\"\":\"\",\"iss\":\"a b/c~\",\"aud\":\"app\",\"csrf\":\"x\"}"));
	assert_true(parse("{\"fam\":\"f\",\"type\":\"refresh\",\"exp\":-123456789012345678}"));
}

static void test_left_to_jansson(void **state)
{
	(void)state;
	/* Escapes, bytes beyond printable ASCII, reals, nested values, long integers. */
	assert_false(parse("{\"sub\":\"a\\/b\",\"jti\":\"\\u00e9\\ud83d\\ude00\"}"));
	assert_false(parse("{\"sub\":\"caf\xc3\xa9\"}"));
	assert_false(parse("{\"sub\":\"\x7f\"}"));
	assert_false(parse("{\"exp\":1700000000.5}"));
	assert_false(parse("{\"exp\":17e8,\"nbf\":1E2}"));
	assert_false(parse("{\"exp\":0.0}"));
	assert_false(parse("{\"aud\":[\"app\",\"other\"]}"));
	assert_false(parse("{\"sub\":{\"id\":42}}"));
	assert_false(parse("{\"iat\":1234567890123456789}"));
	assert_false(parse("{\"iat\":-1234567890123456789}"));
	assert_false(parse("{\"jti\":\"a\\u0000b\"}"));
	char many[512] = "{";
	for (int i = 0; i < 33; i++)
		snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s\"k%d\":%d",
			 i > 0 ? "," : "", i, i);
	strcat(many, "}");
	assert_false(parse(many));
}

static void test_refused(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "",
	    " ",
	    "[]",
	    "\"sub\"",
	    "42",
	    "null",
	    "{",
	    "{\"sub\"",
	    "{\"sub\":}",
	    "{\"sub\" \"42\"}",
	    "{\"sub\":\"42\",}",
	    "{,}",
	    "{\"sub\":\"42\"} x",
	    "{\"sub\":\"42\"}{}",
	    "{\"sub\":\"42\"",
	    "{\"sub\":\"42}",
	    "{sub:42}",
	    "{'sub':42}",
	    "{\"sub\":\"42\",\"sub\":\"43\"}",
	    "{\"x\":1,\"y\":2,\"x\":3}",
	    "{\"sub\":\"a\tb\"}",
	    "{\"sub\":\"a\nb\"}",
	    "{\"sub\":\"\\x41\"}",
	    "{\"sub\":\"\\ud800\"}",
	    "{\"sub\":\"\xc3\"}",
	    "{\"sub\":\"\xff\"}",
	    "{\"sub\":\"\xc0\xaf\"}",
	    "{\"exp\":01}",
	    "{\"exp\":-}",
	    "{\"exp\":1.}",
	    "{\"exp\":.5}",
	    "{\"exp\":+1}",
	    "{\"exp\":1e}",
	    "{\"exp\":12345678901234567890}",
	    "{\"exp\":1x}",
	    "{\"fresh\":truex}",
	    "{\"fresh\":tru}",
	    "{\"fresh\":True}",
	    "{\"fresh\":nul}",
	    "{\"fresh\":falsey}",
	    "\xef\xbb\xbf{}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct claims c = {0};
		assert_false(claims_parse(&c, bad[i], strlen(bad[i])));
		assert_false(parse(bad[i]));
	}
	/* A NUL byte inside the text, where a plain string would end. */
	struct claims c = {0};
	assert_false(claims_parse(&c, "{\"sub\":\"4\0\"}", 11));
	assert_false(claims_parse(&c, "{}\0", 3));
}

/* Within n bytes only: the text is not NUL-terminated, and the scanner keeps its own copy. */
static void test_bounds(void **state)
{
	(void)state;
	const char text[] = "{\"sub\":\"42\",\"jti\":\"j\"}trailing";
	struct claims c = {0};
	assert_true(claims_parse(&c, text, 22));
	assert_string_equal(c.c[CLAIM_SUB].s, "42");
	assert_string_equal(c.c[CLAIM_JTI].s, "j");
	assert_int_equal(c.c[CLAIM_EXP].kind, CLAIM_ABSENT);
	assert_string_equal(json_string_value(json_object_get(claims_json(&c), "sub")), "42");
	claims_clear(&c);
	assert_false(claims_present(&c));
	assert_false(claims_parse(&c, text, 21));
}

/* Random texts made of JSON's pieces: the scanner's and jansson's readings never differ. */
static void test_random(void **state)
{
	(void)state;
	static const char *const pieces[] = {
	    "{",     "}",    "\"sub\"", "\"jti\"",  "\"exp\"",
	    "\"x\"", ":",    ",",	" ",	    "\"a\"",
	    "42",    "-0",   "01",	"1.5",	    "true",
	    "false", "null", "[",	"]",	    "\\",
	    "\"",    "\t",   "\x01",	"\xc3\xa9", "9999999999999999999"};
	int scanned = 0, refused = 0;
	for (int round = 0; round < 100000; round++) {
		char text[256] = "{";
		size_t count = 1 + randombytes_uniform(12);
		for (size_t i = 0; i < count; i++)
			strcat(text,
			       pieces[randombytes_uniform(sizeof(pieces) / sizeof(pieces[0]))]);
		if (randombytes_uniform(2) == 0)
			strcat(text, "}");
		struct claims c = {0};
		bool ok = claims_parse(&c, text, strlen(text));
		refused += !ok;
		scanned += c.text != NULL;
		claims_clear(&c);
		parse(text);
	}
	assert_true(scanned > 100 && refused > 1000);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_scanned), cmocka_unit_test(test_left_to_jansson),
	    cmocka_unit_test(test_refused), cmocka_unit_test(test_bounds),
	    cmocka_unit_test(test_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
