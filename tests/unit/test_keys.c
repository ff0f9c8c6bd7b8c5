/*
 * test_keys.c: unit tests of keys.c and of tokens.c with RS and ES keys.
 *
 * Keys are made with keys_generate, written as PEM to a temporary folder and read back with
 * keys_load, as the configuration does. Tokens are issued with tokens_issue and checked with
 * tokens_verify; forged variants are built from a good token by editing its parts, with
 * OpenSSL used directly where a test needs a signature in another form.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "keys.h"
#include "tokens.h"

#include <dirent.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char folder[] = "/tmp/sesame-test-keys-XXXXXX";

/* A new key for alg, written to NAME.pem and NAME.pub and loaded back: the private one. */
static struct evp_pkey_st *make_key(int alg, const char *name, char *pubpath, size_t len)
{
	const struct jwa_alg *a = jwa_get(alg);
	struct evp_pkey_st *pkey = keys_generate(a, 2048);
	assert_non_null(pkey);
	char path[256], err[512];
	for (int pub = 0; pub < 2; pub++) {
		char *pem = keys_pem(pkey, pub == 0);
		assert_non_null(pem);
		snprintf(path, sizeof(path), "%s/%s.%s", folder, name, pub ? "pub" : "pem");
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fputs(pem, f);
		fclose(f);
		free(pem);
	}
	snprintf(pubpath, len, "%s", path);
	keys_free(pkey);
	snprintf(path, sizeof(path), "%s/%s.pem", folder, name);
	pkey = keys_load(path, true, a, err, sizeof(err));
	assert_non_null(pkey);
	return pkey;
}

static void add_key(struct token_config *tc, struct evp_pkey_st *pkey)
{
	tc->keys = realloc(tc->keys, (tc->nkeys + 1) * sizeof(*tc->keys));
	assert_non_null(tc->keys);
	tc->keys[tc->nkeys].pkey = pkey;
	assert_true(keys_thumbprint(pkey, jwa_get(tc->alg), tc->keys[tc->nkeys].kid));
	tc->nkeys++;
}

static void init(struct token_config *tc, int alg)
{
	memset(tc, 0, sizeof(*tc));
	tc->configured = true;
	tc->alg = alg;
	tc->access_expires = 900;
	tc->refresh_expires = 3600;
}

static char *issue(const struct token_config *tc)
{
	struct token_request req = {.type = TOKEN_ACCESS, .identity = "42", .expires = -1};
	char err[128];
	char *token = tokens_issue(tc, &req, err, sizeof(err));
	assert_non_null(token);
	return token;
}

static enum token_verdict verify(const struct token_config *tc, const char *token)
{
	json_t *claims = NULL;
	char identity[64];
	enum token_verdict v = tokens_verify(tc, token, strlen(token), WANT_ACCESS, &claims,
					     identity, sizeof(identity));
	if (v == TOKEN_OK)
		assert_string_equal(identity, "42");
	json_decref(claims);
	return v;
}

static size_t unb64(const char *s, size_t len, unsigned char *out, size_t max)
{
	size_t n = 0;
	assert_int_equal(sodium_base642bin(out, max, s, len, NULL, &n, NULL,
					   sodium_base64_VARIANT_URLSAFE_NO_PADDING),
			 0);
	return n;
}

/* The token with its signature replaced by sig. */
static char *resign(const char *token, const unsigned char *sig, size_t n)
{
	size_t keep = (size_t)(strrchr(token, '.') + 1 - token);
	size_t cap = keep + sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	char *out = malloc(cap);
	assert_non_null(out);
	memcpy(out, token, keep);
	sodium_bin2base64(out + keep, cap - keep, sig, n, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return out;
}

static void test_es_tokens(int alg, size_t field)
{
	struct token_config tc;
	char pub[256];
	init(&tc, alg);
	add_key(&tc, make_key(alg, "es", pub, sizeof(pub)));
	char *token = issue(&tc);
	assert_int_equal(verify(&tc, token), TOKEN_OK);

	/* The header names the key; the signature is r||s, exactly 2 * field bytes. */
	unsigned char buf[1024];
	size_t n = unb64(token, (size_t)(strchr(token, '.') - token), buf, sizeof(buf));
	json_t *h = json_loadb((const char *)buf, n, 0, NULL);
	assert_string_equal(json_string_value(json_object_get(h, "kid")), tc.keys[0].kid);
	json_decref(h);
	const char *sig = strrchr(token, '.') + 1;
	unsigned char raw[132];
	n = unb64(sig, strlen(sig), raw, sizeof(raw));
	assert_int_equal(n, 2 * field);

	/* The same signature as DER is refused. */
	ECDSA_SIG *es = ECDSA_SIG_new();
	ECDSA_SIG_set0(es, BN_bin2bn(raw, (int)field, NULL),
		       BN_bin2bn(raw + field, (int)field, NULL));
	unsigned char *der = NULL;
	int derlen = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	char *forged = resign(token, der, (size_t)derlen);
	assert_int_equal(verify(&tc, forged), TOKEN_INVALID);
	free(forged);
	OPENSSL_free(der);

	/* r = s = 0, a flipped bit, one byte short. */
	unsigned char zero[132] = {0};
	forged = resign(token, zero, 2 * field);
	assert_int_equal(verify(&tc, forged), TOKEN_INVALID);
	free(forged);
	raw[field] ^= 1;
	forged = resign(token, raw, 2 * field);
	assert_int_equal(verify(&tc, forged), TOKEN_INVALID);
	free(forged);
	forged = resign(token, raw, 2 * field - 1);
	assert_int_equal(verify(&tc, forged), TOKEN_INVALID);
	free(forged);

	free(token);
	tokens_config_clear(&tc);
}

static void test_es256(void **state)
{
	(void)state;
	test_es_tokens(JWT_ALG_ES256, 32);
}

static void test_es512(void **state)
{
	(void)state;
	test_es_tokens(JWT_ALG_ES512, 66);
}

static void test_rs256_and_previous_keys(void **state)
{
	(void)state;
	struct token_config old, now, later;
	char oldpub[256], pub[256], err[512];
	init(&old, JWT_ALG_RS256);
	init(&now, JWT_ALG_RS256);
	init(&later, JWT_ALG_RS256);
	add_key(&old, make_key(JWT_ALG_RS256, "old", oldpub, sizeof(oldpub)));
	add_key(&now, make_key(JWT_ALG_RS256, "now", pub, sizeof(pub)));
	add_key(&later, keys_load(pub, false, jwa_get(JWT_ALG_RS256), err, sizeof(err)));
	assert_true(keys_match(now.keys[0].pkey, later.keys[0].pkey));
	assert_false(keys_match(now.keys[0].pkey, old.keys[0].pkey));
	char *token = issue(&old);
	assert_int_equal(verify(&now, token), TOKEN_INVALID);
	add_key(&now, keys_load(oldpub, false, jwa_get(JWT_ALG_RS256), err, sizeof(err)));
	assert_int_equal(verify(&now, token), TOKEN_OK);
	/* The kid names the old key; a token of the current key verifies with public keys only. */
	char *current = issue(&now);
	assert_int_equal(verify(&later, current), TOKEN_OK);
	assert_int_equal(verify(&later, token), TOKEN_INVALID);

	json_t *jwks = tokens_jwks(&now);
	json_t *keys = json_object_get(jwks, "keys");
	assert_int_equal(json_array_size(keys), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(keys, 1), "kid")),
			    old.keys[0].kid);
	assert_int_equal(json_string_length(json_object_get(json_array_get(keys, 0), "n")),
			 342); /* 256 bytes, base64url */
	json_decref(jwks);
	free(token);
	free(current);
	tokens_config_clear(&old);
	tokens_config_clear(&now);
	tokens_config_clear(&later);
}

static void test_load_refuses_other_keys(void **state)
{
	(void)state;
	char pub[256], err[512], path[300];
	keys_free(make_key(JWT_ALG_ES384, "p384", pub, sizeof(pub)));
	assert_null(keys_load(pub, false, jwa_get(JWT_ALG_ES256), err, sizeof(err)));
	assert_non_null(strstr(err, "on P-384; ES256 needs one on P-256"));
	assert_null(keys_load(pub, false, jwa_get(JWT_ALG_RS256), err, sizeof(err)));
	assert_non_null(strstr(err, "RS256 needs an RSA key"));
	snprintf(path, sizeof(path), "%s/p384.pem", folder);
	assert_null(keys_load(path, false, jwa_get(JWT_ALG_ES384), err, sizeof(err)));
	assert_non_null(strstr(err, "no PEM public key"));
	assert_null(strstr(err, "-----"));
	snprintf(path, sizeof(path), "%s/none.pem", folder);
	assert_null(keys_load(path, true, jwa_get(JWT_ALG_ES384), err, sizeof(err)));
	assert_non_null(strstr(err, "cannot read"));
}

static void test_hmac_jwks_is_empty(void **state)
{
	(void)state;
	struct token_config tc;
	init(&tc, JWT_ALG_HS256);
	json_t *jwks = tokens_jwks(&tc);
	char *text = json_dumps(jwks, JSON_COMPACT);
	assert_string_equal(text, "{\"keys\":[]}");
	free(text);
	json_decref(jwks);
}

/* Only an RSA signature is slow enough for a job thread. */
static void test_sign_slow_by_algorithm(void **state)
{
	(void)state;
	static const struct {
		const char *name;
		bool slow;
	} algs[] = {{"HS256", false}, {"HS512", false}, {"RS256", true},  {"RS384", true},
		    {"RS512", true},  {"ES256", false}, {"ES384", false}, {"ES512", false}};
	struct token_config tc;
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++) {
		init(&tc, jwa_parse(algs[i].name));
		assert_int_equal(tokens_sign_slow(&tc), algs[i].slow);
		tc.configured = false;
		assert_false(tokens_sign_slow(&tc));
	}
}

#define SIGNERS		  4
#define TOKENS_PER_SIGNER 16

struct signer {
	pthread_t thread;
	const struct token_config *tc;
	char *tokens[TOKENS_PER_SIGNER];
};

/* No cmocka assertion off the main thread: the main thread checks what was signed. */
static void *sign_many(void *arg)
{
	struct signer *sg = arg;
	struct token_request req = {.type = TOKEN_ACCESS, .identity = "42", .expires = -1};
	char err[128];
	for (int i = 0; i < TOKENS_PER_SIGNER; i++)
		sg->tokens[i] = tokens_issue(sg->tc, &req, err, sizeof(err));
	return NULL;
}

/* Threads sign with one key at once, as a worker's job threads do: every token verifies. */
static void test_rs_tokens_signed_on_threads_at_once(void **state)
{
	(void)state;
	struct token_config tc;
	struct signer signers[SIGNERS];
	char pub[256];
	init(&tc, JWT_ALG_RS256);
	add_key(&tc, make_key(JWT_ALG_RS256, "threads", pub, sizeof(pub)));
	for (int i = 0; i < SIGNERS; i++) {
		signers[i].tc = &tc;
		assert_int_equal(pthread_create(&signers[i].thread, NULL, sign_many, &signers[i]),
				 0);
	}
	for (int i = 0; i < SIGNERS; i++) {
		assert_int_equal(pthread_join(signers[i].thread, NULL), 0);
		for (int j = 0; j < TOKENS_PER_SIGNER; j++) {
			assert_non_null(signers[i].tokens[j]);
			assert_int_equal(verify(&tc, signers[i].tokens[j]), TOKEN_OK);
			free(signers[i].tokens[j]);
		}
	}
	tokens_config_clear(&tc);
}

static int make_folder(void **state)
{
	(void)state;
	return mkdtemp(folder) != NULL && sodium_init() >= 0 ? 0 : -1;
}

static int remove_folder(void **state)
{
	(void)state;
	DIR *d = opendir(folder);
	struct dirent *e;
	char path[300];
	while (d != NULL && (e = readdir(d)) != NULL) {
		snprintf(path, sizeof(path), "%s/%s", folder, e->d_name);
		if (e->d_name[0] != '.')
			unlink(path);
	}
	if (d != NULL)
		closedir(d);
	return rmdir(folder);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_es256),
	    cmocka_unit_test(test_es512),
	    cmocka_unit_test(test_rs256_and_previous_keys),
	    cmocka_unit_test(test_load_refuses_other_keys),
	    cmocka_unit_test(test_hmac_jwks_is_empty),
	    cmocka_unit_test(test_sign_slow_by_algorithm),
	    cmocka_unit_test(test_rs_tokens_signed_on_threads_at_once),
	};
	return cmocka_run_group_tests_name("keys", tests, make_folder, remove_folder);
}
