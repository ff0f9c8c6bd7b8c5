/*
 * fuzz_token.c: token decoding and verification (tokens.c, jwa.c, keys.c).
 *
 * Two configurations, loaded as sesamed loads them: HS256 with a secret, an issuer, an
 * audience and leeway, and ES256 with a key pair (tests/fuzz/keys, a key for this target
 * only). An input with dots is a compact token: it is verified under both, for every kind of
 * token a route can want, from a buffer of exactly its length, as a header or cookie hands
 * it over. An input without dots is a claims set: it is signed with the HS256 secret here
 * and then verified, so that the claims checks (exp, nbf, iss, aud, type, sub, jti, fresh)
 * see fuzzed claims behind a good signature. Whatever verifies goes through the revocation
 * policy and the CSRF reader too. Every input is also base64url-decoded by b64url.c and by
 * libsodium, whose strictness it keeps on ASCII: a different verdict or different bytes abort.
 */
#include "autoconfig.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "b64url.h"
#include "fuzz.h"
#include "log.h"
#include "tokens.h"

#define SECRET "a secret for the token fuzz target, 48 bytes..."

static struct config *hs, *es;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_LEVEL_ERROR);
	if (sodium_init() < 0)
		abort();
	hs = fuzz_config("hs256",
			 "plugins = { path = \"%s\" }\n"
			 "jwt = { algorithm = \"HS256\", secret = \"%s\", issuer = \"sesame\",\n"
			 "        audience = \"app\", leeway = 30, cookies = true }\n"
			 "routes = {}\n",
			 FUZZ_PLUGINDIR, SECRET);
	es = fuzz_config("es256",
			 "plugins = { path = \"%s\" }\n"
			 "jwt = { algorithm = \"ES256\",\n"
			 "        private_key_file = \"%s/tests/fuzz/keys/es256.pem\",\n"
			 "        public_key_file = \"%s/tests/fuzz/keys/es256.pub\" }\n"
			 "routes = {}\n",
			 FUZZ_PLUGINDIR, FUZZ_SRCDIR, FUZZ_SRCDIR);
	return 0;
}

static void verify(const struct token_config *tc, const char *token, size_t len)
{
	static const enum token_want wants[] = {WANT_ACCESS, WANT_FRESH, WANT_REFRESH, WANT_ANY};
	for (size_t i = 0; i < sizeof(wants) / sizeof(wants[0]); i++) {
		json_t *claims = NULL;
		char identity[256];
		if (tokens_verify(tc, token, len, wants[i], &claims, identity, sizeof(identity)) !=
		    TOKEN_OK)
			continue;
		struct token_revocation rev;
		tokens_revocation(tc, claims, 1700000000, &rev);
		json_decref(claims);
	}
}

/* header.payload.signature for the claims text, signed with the HS256 secret. */
static char *sign(const uint8_t *claims, size_t size)
{
	static const char header[] = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"; /* HS256, JWT */
	size_t cap = sizeof(header) +
		     sodium_base64_ENCODED_LEN(size, sodium_base64_VARIANT_URLSAFE_NO_PADDING) + 64;
	char *token = malloc(cap);
	if (token == NULL)
		abort();
	size_t n = strlen(header);
	memcpy(token, header, n);
	token[n++] = '.';
	sodium_bin2base64(token + n, cap - n, claims, size,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	n += strlen(token + n);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)token, n, mac,
	     &maclen);
	token[n++] = '.';
	sodium_bin2base64(token + n, cap - n, mac, maclen,
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	return token;
}

/* The token check's decoder against libsodium's, on the raw input when it is ASCII (a byte
 * above 0x7f is refused by b64url.c and taken by libsodium as some letter). */
static void compare_b64url(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < size; i++) {
		if (data[i] > 0x7f)
			return;
	}
	unsigned char a[TOKENS_MAX_LEN], b[TOKENS_MAX_LEN];
	size_t alen = 0, blen = 0, max = size % 2 ? size * 3 / 4 : sizeof(a);
	if (max > sizeof(a))
		max = sizeof(a);
	int ra = b64url_decode((const char *)data, size, a, max, &alen);
	int rb = sodium_base642bin(b, max, (const char *)data, size, NULL, &blen, NULL,
				   sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	if (ra != rb || (ra == 0 && (alen != blen || memcmp(a, b, alen) != 0)))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	compare_b64url(data, size);
	if (memchr(data, '.', size) == NULL) {
		char *token = sign(data, size);
		verify(&hs->jwt, token, strlen(token));
		free(token);
		return 0;
	}
	/* Exactly the input's bytes: a parser that reads past its length is caught. */
	char *token = malloc(size ? size : 1);
	if (token == NULL)
		abort();
	memcpy(token, data, size);
	verify(&hs->jwt, token, size);
	verify(&es->jwt, token, size);
	free(token);
	char *s = fuzz_string(data, size);
	char csrf[64];
	tokens_csrf_of(s, csrf, sizeof(csrf));
	free(s);
	return 0;
}
