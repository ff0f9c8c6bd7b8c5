/*
 * test_sha256.c: known answers for the pbkdf2_sha256 hasher's SHA-256, HMAC-SHA256 and
 * PBKDF2-HMAC-SHA256, on each implementation called directly.
 *
 * Every vector runs on the portable path and on the SHA extensions; on a CPU without them the
 * second set is skipped and says so. The vectors: FIPS 180-4's (NIST's examples and a million
 * 'a's), RFC 4231's HMAC cases, RFC 7914's PBKDF2 cases and the usual dkLen-32 ones, and hashes
 * passlib wrote. Then both paths and OpenSSL must agree on random inputs (the portable path
 * and OpenSSL alone where the CPU has no SHA extensions).
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "../../plugins/hashers/sha256.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RANDOM_RUNS 300

/* ---- the implementations ---- */

static const struct sha256_impl *portable = &sha256_portable;

/* The SHA-extension path, or NULL (and a message) when this CPU or build has none. */
static const struct sha256_impl *shani(void)
{
#if defined(__x86_64__) || defined(__i386__)
	if (sha256_shani_supported())
		return &sha256_shani;
	print_message("skipped: this CPU has no SHA extensions (CPUID leaf 7 EBX bit 29)\n");
#else
	print_message("skipped: the SHA extensions are x86 only\n");
#endif
	return NULL;
}

/* The implementation a test runs on: its prestate names the path. */
static const struct sha256_impl *impl_of(void **state)
{
	const struct sha256_impl *impl = strcmp(*state, "portable") == 0 ? portable : shani();
	if (impl == NULL)
		skip();
	return impl;
}

static void hex(const uint8_t *bin, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", bin[i]);
	out[2 * len] = '\0';
}

static void assert_hex(const uint8_t *bin, size_t len, const char *want)
{
	char got[2 * 128 + 1];
	assert_true(len <= 128);
	hex(bin, len, got);
	assert_string_equal(got, want);
}

/* ---- SHA-256 ---- */

static void digest(const struct sha256_impl *impl, const void *msg, size_t len, uint8_t *out)
{
	struct sha256_ctx c;
	sha256_begin(&c, impl);
	sha256_update(&c, msg, len);
	sha256_finish(&c, out);
}

static void test_sha256_nist(void **state)
{
	static const struct {
		const char *msg, *want;
	} v[] = {
	    {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	    {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	    {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
	     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
	    {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmn"
	     "opqrlmnopqrsmnopqrstnopqrstu",
	     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
	};
	const struct sha256_impl *impl = impl_of(state);
	uint8_t out[SHA256_DIGEST_BYTES];
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		digest(impl, v[i].msg, strlen(v[i].msg), out);
		assert_hex(out, sizeof(out), v[i].want);
	}
}

/* A million 'a's, whole and in pieces of awkward sizes, across block boundaries. */
static void test_sha256_million(void **state)
{
	static const char *want =
	    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
	const struct sha256_impl *impl = impl_of(state);
	uint8_t out[SHA256_DIGEST_BYTES];
	char *a = malloc(1000000);
	struct sha256_ctx c;
	assert_non_null(a);
	memset(a, 'a', 1000000);
	digest(impl, a, 1000000, out);
	assert_hex(out, sizeof(out), want);
	sha256_begin(&c, impl);
	for (size_t done = 0, step = 1; done < 1000000; step = step % 199 + 1) {
		size_t n = 1000000 - done < step ? 1000000 - done : step;
		sha256_update(&c, a + done, n);
		done += n;
	}
	sha256_finish(&c, out);
	assert_hex(out, sizeof(out), want);
	free(a);
}

/* ---- HMAC-SHA256: RFC 4231 section 4 ---- */

static void test_hmac_rfc4231(void **state)
{
	uint8_t k20b[20], k20a[20], k25[25], k20c[20], k131[131], dd[50], cd[50];
	memset(k20b, 0x0b, sizeof(k20b));
	memset(k20a, 0xaa, sizeof(k20a));
	memset(k20c, 0x0c, sizeof(k20c));
	memset(k131, 0xaa, sizeof(k131));
	memset(dd, 0xdd, sizeof(dd));
	memset(cd, 0xcd, sizeof(cd));
	for (int i = 0; i < 25; i++)
		k25[i] = (uint8_t)(i + 1);
	const struct {
		const void *key;
		size_t keylen;
		const void *msg;
		size_t len;
		const char *want; /* case 5 is truncated to 128 bits */
	} v[] = {
	    {k20b, 20, "Hi There", 8,
	     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"},
	    {"Jefe", 4, "what do ya want for nothing?", 28,
	     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
	    {k20a, 20, dd, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"},
	    {k25, 25, cd, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"},
	    {k20c, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b"},
	    {k131, 131, "Test Using Larger Than Block-Size Key - Hash Key First", 54,
	     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"},
	    {k131, 131,
	     "This is a test using a larger than block-size key and a larger than block-size "
	     "data. The key needs to be hashed before being used by the HMAC algorithm.",
	     152, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"},
	};
	const struct sha256_impl *impl = impl_of(state);
	uint8_t out[SHA256_DIGEST_BYTES];
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		sha256_hmac(impl, v[i].key, v[i].keylen, v[i].msg, v[i].len, out);
		assert_hex(out, strlen(v[i].want) / 2, v[i].want);
	}
}

/* ---- PBKDF2-HMAC-SHA256 ---- */

static void test_pbkdf2_vectors(void **state)
{
	static const struct {
		const char *password, *salt;
		unsigned long rounds;
		size_t dklen;
		const char *want;
	} v[] = {
	    /* RFC 7914 section 11 */
	    {"passwd", "salt", 1, 64,
	     "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc49ca9cccf179b64599166"
	     "4"
	     "b39d77ef317c71b845b1e30bd509112041d3a19783"},
	    {"Password", "NaCl", 80000, 64,
	     "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56a1d425a1225833549adb8"
	     "4"
	     "1b51c9b3176a272bdebba1d078478f62b397f33c8d"},
	    /* the dkLen-32 answers published with the PBKDF2-HMAC-SHA256 test vectors */
	    {"password", "salt", 1, 32,
	     "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"},
	    {"password", "salt", 2, 32,
	     "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43"},
	    {"password", "salt", 4096, 32,
	     "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"},
	};
	const struct sha256_impl *impl = impl_of(state);
	uint8_t out[64];
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		sha256_pbkdf2(impl, v[i].password, strlen(v[i].password), v[i].salt,
			      strlen(v[i].salt), v[i].rounds, out, v[i].dklen);
		assert_hex(out, v[i].dklen, v[i].want);
	}
}

/* passlib's ab64: base64 with '.' for '+', unpadded. */
static size_t ab64_decode(const char *text, size_t len, uint8_t *out, size_t max)
{
	char buf[128];
	size_t n = 0;
	assert_true(len < sizeof(buf));
	for (size_t i = 0; i < len; i++)
		buf[i] = text[i] == '.' ? '+' : text[i];
	assert_int_equal(sodium_base642bin(out, max, buf, len, NULL, &n, NULL,
					   sodium_base64_VARIANT_ORIGINAL_NO_PADDING),
			 0);
	return n;
}

/* Hashes passlib 1.7.4 wrote (pbkdf2_sha256.using(rounds=29000).hash), checked here. */
static void test_pbkdf2_passlib(void **state)
{
	static const struct {
		const char *password, *stored;
	} v[] = {
	    {"password", "$pbkdf2-sha256$29000$FmLMWeu9N4ZQ6j1HyLm39g$"
			 "ZlaC5hFprOnSIbBi3SPASbIZYrFdueBmXIOmnpOQihw"},
	    {"p\xc3\xa4ssw\xc3\xb6rd \xe2\x98\x83", "$pbkdf2-sha256$29000$xVgrJcTYm/PeGwMg5DyH0A$"
						    "tKdluqLODC7NZnZqEh7LQmn5kZxDoEHD8F.bFyGXiqE"},
	    {"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk", /* 65 bytes */
	     "$pbkdf2-sha256$29000$gZDynlNqba3VWitlDGGsNQ$"
	     "Yu98O/wlhCtdA/8fosEEh3SAXGxv..MpSdA1mG10Vj4"},
	    {"", "$pbkdf2-sha256$29000$Z2ztXctZy9m7V6o15tx7Tw$"
		 "8m9kzR0DkjI89vk4bYQlZm4Au./ZwqCeDZ.dSzGUqW4"},
	};
	const struct sha256_impl *impl = impl_of(state);
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		const char *salt64 = strchr(v[i].stored + strlen("$pbkdf2-sha256$"), '$') + 1;
		const char *sum64 = strchr(salt64, '$') + 1;
		uint8_t salt[64], want[64], got[SHA256_DIGEST_BYTES];
		size_t saltlen =
		    ab64_decode(salt64, (size_t)(sum64 - 1 - salt64), salt, sizeof(salt));
		assert_int_equal(ab64_decode(sum64, strlen(sum64), want, sizeof(want)), 32);
		sha256_pbkdf2(impl, v[i].password, strlen(v[i].password), salt, saltlen, 29000, got,
			      sizeof(got));
		assert_memory_equal(got, want, sizeof(got));
	}
}

/* ---- both paths, and OpenSSL, on random inputs ---- */

static uint32_t below(uint32_t n)
{
	return randombytes_uniform(n);
}

static void agree_sha256(const struct sha256_impl *fast, const uint8_t *msg, size_t len)
{
	uint8_t a[SHA256_DIGEST_BYTES], b[SHA256_DIGEST_BYTES], c[SHA256_DIGEST_BYTES];
	digest(portable, msg, len, a);
	digest(fast, msg, len, b);
	SHA256(msg, len, c);
	if (memcmp(a, b, sizeof(a)) != 0 || memcmp(a, c, sizeof(a)) != 0)
		fail_msg("SHA-256 of %zu bytes differs", len);
}

static void agree_pbkdf2(const struct sha256_impl *fast, const uint8_t *pw, size_t len,
			 const uint8_t *salt, size_t saltlen, unsigned long rounds, size_t dklen)
{
	uint8_t a[96], b[96], c[96];
	sha256_pbkdf2(portable, pw, len, salt, saltlen, rounds, a, dklen);
	sha256_pbkdf2(fast, pw, len, salt, saltlen, rounds, b, dklen);
	assert_int_equal(PKCS5_PBKDF2_HMAC((const char *)pw, (int)len, salt, (int)saltlen,
					   (int)rounds, EVP_sha256(), (int)dklen, c),
			 1);
	if (memcmp(a, b, dklen) != 0 || memcmp(a, c, dklen) != 0)
		fail_msg("PBKDF2 differs: password %zu bytes, salt %zu, rounds %lu, dkLen %zu", len,
			 saltlen, rounds, dklen);
}

/* PBKDF2's loop itself, from random states, on both paths. */
static void agree_iterate(const struct sha256_impl *fast, unsigned long count)
{
	uint32_t inner[8], outer[8], u[2][8], t[2][8];
	randombytes_buf(inner, sizeof(inner));
	randombytes_buf(outer, sizeof(outer));
	randombytes_buf(u[0], sizeof(u[0]));
	randombytes_buf(t[0], sizeof(t[0]));
	memcpy(u[1], u[0], sizeof(u[0]));
	memcpy(t[1], t[0], sizeof(t[0]));
	portable->iterate(inner, outer, u[0], t[0], count);
	fast->iterate(inner, outer, u[1], t[1], count);
	if (memcmp(u[0], u[1], sizeof(u[0])) != 0 || memcmp(t[0], t[1], sizeof(t[0])) != 0)
		fail_msg("the PBKDF2 loop differs after %lu rounds", count);
}

static void test_paths_agree(void **state)
{
	const struct sha256_impl *fast = shani();
	uint8_t pw[200], salt[200];
	if (fast == NULL)
		fast = portable; /* then still against OpenSSL */
	for (int i = 0; i < RANDOM_RUNS; i++) {
		size_t len = below(201), saltlen = below(201);
		randombytes_buf(pw, sizeof(pw));
		randombytes_buf(salt, sizeof(salt));
		agree_sha256(fast, pw, len);
		agree_pbkdf2(fast, pw, len, salt, saltlen, 1 + below(100), 1 + below(96));
		agree_iterate(fast, below(100));
	}
	agree_pbkdf2(fast, pw, 64, salt, 16, 29000, 32); /* passlib's own */
}

/* The plugin takes the SHA extensions wherever the CPU has them. */
static void test_best(void **state)
{
#if defined(__x86_64__) || defined(__i386__)
	assert_ptr_equal(sha256_best(),
			 sha256_shani_supported() ? &sha256_shani : &sha256_portable);
#else
	assert_ptr_equal(sha256_best(), &sha256_portable);
#endif
}

#define BOTH(test)                                                                                 \
	{#test " (portable)", test, NULL, NULL, "portable"},                                       \
	{                                                                                          \
#test " (sha-ni)", test, NULL, NULL, "sha-ni"                                      \
	}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    BOTH(test_sha256_nist),	 BOTH(test_sha256_million),
	    BOTH(test_hmac_rfc4231),	 BOTH(test_pbkdf2_vectors),
	    BOTH(test_pbkdf2_passlib),	 cmocka_unit_test(test_paths_agree),
	    cmocka_unit_test(test_best),
	};
	if (sodium_init() < 0)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
