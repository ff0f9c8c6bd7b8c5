/*
 * test_b64url.c: unit tests of b64url.c, the base64url decoder of the token check: known
 * answers, and the same verdict and bytes as libsodium's decoder (whose strictness it keeps)
 * on every edge case and on random input.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "b64url.h"

#include <sodium.h>
#include <stdbool.h>
#include <string.h>

/* Both decoders on s, with room for max bytes: the same verdict, and the same bytes. */
static int both(const char *s, size_t len, size_t max)
{
	unsigned char a[64], b[64];
	size_t alen = 0, blen = 0;
	assert_true(max <= sizeof(a));
	int ra = b64url_decode(s, len, a, max, &alen);
	int rb = sodium_base642bin(b, max, s, len, NULL, &blen, NULL,
				   sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	assert_int_equal(ra, rb);
	if (ra == 0) {
		assert_int_equal(alen, blen);
		assert_memory_equal(a, b, alen);
	}
	return ra;
}

static void test_known(void **state)
{
	unsigned char out[16];
	size_t n;
	assert_int_equal(b64url_decode("eyJ4Ijo-fQ", 10, out, sizeof(out), &n), 0);
	assert_int_equal(n, 7);
	assert_memory_equal(out, "{\"x\":>}", 7);
	assert_int_equal(b64url_decode("_-8", 3, out, sizeof(out), &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(out[0], 0xff);
	assert_int_equal(out[1], 0xef);
	assert_int_equal(b64url_decode("", 0, out, sizeof(out), &n), 0);
	assert_int_equal(n, 0);
}

static void test_edges(void **state)
{
	static const char *const cases[] = {
	    "A",       "AA",
	    "AB",      "AAA",
	    "AAB",     "AAAA",
	    "AAAAA",   "QQ",
	    "QR",      "QUE",
	    "QUF",     "QUFB",
	    "QUFBQQ",  "QUFBQR",
	    "QQ==",    "QUE=",
	    "QUFB===", "a+b/",
	    "a b",     "ab\n",
	    "ab.c",    "ab=c",
	    "-_-_",    "__8",
	    "___",     "AAAAAAAAAAAAAAAAAAAAAA",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		both(cases[i], strlen(cases[i]), 64);
	}
	both("ab\0c", 4, 64); /* a NUL inside */
	/* Above ASCII: refused here, whatever libsodium makes of it. */
	unsigned char out[8];
	size_t n;
	assert_int_equal(b64url_decode("QUFB\xffQ", 6, out, sizeof(out), &n), -1);
	assert_int_equal(b64url_decode("QUFB\x80", 5, out, sizeof(out), &n), -1);
	/* Out of room: refused by both, at every size around the decoded one. */
	for (size_t max = 0; max < 6; max++)
		both("QUFBQUFB", 8, max);
	for (size_t max = 0; max < 6; max++)
		both("QUFBQUE", 7, max);
}

static void test_random(void **state)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=+/. ";
	char s[40];
	int accepted = 0;
	for (int round = 0; round < 200000; round++) {
		size_t len = randombytes_uniform(sizeof(s));
		bool clean = randombytes_uniform(2) == 0;
		for (size_t i = 0; i < len; i++)
			s[i] = alphabet[randombytes_uniform(clean ? 64 : sizeof(alphabet) - 1)];
		if (both(s, len, randombytes_uniform(4) == 0 ? randombytes_uniform(32) : 64) == 0)
			accepted++;
	}
	/* Both verdicts were seen many times. */
	assert_true(accepted > 10000 && accepted < 190000);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_known),
	    cmocka_unit_test(test_edges),
	    cmocka_unit_test(test_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
