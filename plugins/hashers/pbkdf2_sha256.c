/*
 * pbkdf2_sha256.c: passlib's pbkdf2_sha256 scheme, byte for byte, so that the hashes a
 * passlib service stored keep verifying, and the hashes sesame writes verify in passlib.
 *
 * The format is "$pbkdf2-sha256$ROUNDS$SALT$CHECKSUM": SALT and CHECKSUM in passlib's "ab64"
 * (standard base64 with '.' for '+' and no padding), CHECKSUM the 32-byte PBKDF2-HMAC-SHA256
 * of the password. New hashes use a 16-byte salt and password.pbkdf2_sha256.rounds (600000 by
 * default, as OWASP recommends; no fewer than passlib's default of 29000). A stored hash with
 * fewer rounds than configured needs a rehash.
 *
 * A stored hash names its own rounds, and a row written by anyone else could ask for two
 * billion of them: a hash asking for more than MAX_ROUNDS_FACTOR times the configured rounds
 * (never less than MAX_ROUNDS_FLOOR, above passlib's and OWASP's defaults) is refused without
 * being run, and the refusal logged with its rounds.
 *
 * The derivation is sha256.c's PBKDF2, on the CPU's SHA extensions where present, chosen once
 * at init: the key's pad states computed once per password, two compressions per round.
 */
#include <sesame/plugin.h>

#include "sha256.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX	       "$pbkdf2-sha256$"
#define SALT_BYTES     16
#define CHECKSUM_BYTES 32
#define MAX_SALT_BYTES 1024

#define MAX_ROUNDS_FACTOR 4
#define MAX_ROUNDS_FLOOR  1000000UL

struct pbkdf2 {
	unsigned long rounds;
	unsigned long max_rounds; /* the most a stored hash may ask for */
	const struct sha256_impl *sha256;
	const struct sesame_host *host;
};

static int init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	struct pbkdf2 *p = calloc(1, sizeof(*p));
	long long v;
	if (p == NULL || sodium_init() < 0) {
		free(p);
		return -1;
	}
	p->host = host;
	p->sha256 = sha256_best();
	p->rounds = 600000;
	v = p->rounds; /* the default before the read, for the list of keys */
	enum sesame_config_result rc = host->config_integer(cfg, "rounds", 29000, 100000000, &v);
	if (rc == SESAME_CONFIG_WRONG) {
		free(p);
		return -1;
	}
	if (rc == SESAME_CONFIG_OK)
		p->rounds = (unsigned long)v;
	p->max_rounds = p->rounds * MAX_ROUNDS_FACTOR;
	if (p->max_rounds < MAX_ROUNDS_FLOOR)
		p->max_rounds = MAX_ROUNDS_FLOOR;
	*state = p;
	return 0;
}

static void fini(void *state)
{
	free(state);
}

static void ab64_encode(const unsigned char *bin, size_t len, char *out, size_t outlen)
{
	sodium_bin2base64(out, outlen, bin, len, sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
	for (char *c = out; *c != '\0'; c++) {
		if (*c == '+')
			*c = '.';
	}
}

/* Decodes ab64 text of len bytes; -1 when it is not ab64 or does not fit. */
static int ab64_decode(const char *text, size_t len, unsigned char *bin, size_t max, size_t *binlen)
{
	char buf[2 * MAX_SALT_BYTES];
	if (len >= sizeof(buf))
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (text[i] == '+')
			return -1; /* passlib writes '.', never '+' */
		buf[i] = text[i] == '.' ? '+' : text[i];
	}
	return sodium_base642bin(bin, max, buf, len, NULL, binlen, NULL,
				 sodium_base64_VARIANT_ORIGINAL_NO_PADDING);
}

static void derive(const struct pbkdf2 *p, const char *password, size_t len,
		   const unsigned char *salt, size_t saltlen, unsigned long rounds,
		   unsigned char out[CHECKSUM_BYTES])
{
	sha256_pbkdf2(p->sha256, password, len, salt, saltlen, rounds, out, CHECKSUM_BYTES);
}

static int hash(void *state, const char *password, size_t len, char *out, size_t outlen)
{
	const struct pbkdf2 *p = state;
	unsigned char salt[SALT_BYTES], sum[CHECKSUM_BYTES];
	char salt64[64], sum64[64];
	p->host->random(salt, sizeof(salt));
	if (len > 0x7fffffff)
		return -1;
	derive(p, password, len, salt, sizeof(salt), p->rounds, sum);
	ab64_encode(salt, sizeof(salt), salt64, sizeof(salt64));
	ab64_encode(sum, sizeof(sum), sum64, sizeof(sum64));
	sodium_memzero(sum, sizeof(sum));
	int n = snprintf(out, outlen, PREFIX "%lu$%s$%s", p->rounds, salt64, sum64);
	return n > 0 && (size_t)n < outlen ? 0 : -1;
}

static bool identify(void *state, const char *stored)
{
	return strncmp(stored, PREFIX, strlen(PREFIX)) == 0;
}

/* Splits a stored hash into rounds, salt and checksum; -1 when it is malformed. */
static int parse(const char *stored, unsigned long *rounds, unsigned char *salt, size_t *saltlen,
		 unsigned char sum[CHECKSUM_BYTES])
{
	const char *r = stored + strlen(PREFIX);
	char *end;
	size_t sumlen;
	if (!identify(NULL, stored) || *r < '1' || *r > '9')
		return -1;
	*rounds = strtoul(r, &end, 10);
	if (*end != '$' || *rounds == 0 || *rounds > 0x7fffffff)
		return -1;
	const char *s = end + 1, *dollar = strchr(s, '$');
	if (dollar == NULL ||
	    ab64_decode(s, (size_t)(dollar - s), salt, MAX_SALT_BYTES, saltlen) != 0 ||
	    ab64_decode(dollar + 1, strlen(dollar + 1), sum, CHECKSUM_BYTES, &sumlen) != 0 ||
	    sumlen != CHECKSUM_BYTES)
		return -1;
	return 0;
}

static int verify(void *state, const char *password, size_t len, const char *stored)
{
	const struct pbkdf2 *p = state;
	unsigned char salt[MAX_SALT_BYTES], want[CHECKSUM_BYTES], got[CHECKSUM_BYTES];
	unsigned long rounds;
	size_t saltlen;
	if (len > 0x7fffffff || parse(stored, &rounds, salt, &saltlen, want) != 0)
		return 0;
	if (rounds > p->max_rounds) {
		p->host->log(p->host, SESAME_LOG_WARN,
			     "stored hash refused: rounds %lu is over the limit of %lu", rounds,
			     p->max_rounds);
		return 0;
	}
	derive(p, password, len, salt, saltlen, rounds, got);
	int ok = sodium_memcmp(want, got, CHECKSUM_BYTES) == 0;
	sodium_memzero(got, sizeof(got));
	return ok;
}

static bool needs_rehash(void *state, const char *stored)
{
	const struct pbkdf2 *p = state;
	unsigned char salt[MAX_SALT_BYTES], sum[CHECKSUM_BYTES];
	unsigned long rounds;
	size_t saltlen;
	return parse(stored, &rounds, salt, &saltlen, sum) != 0 || rounds < p->rounds ||
	       rounds > p->max_rounds;
}

SESAME_HASHER_PLUGIN("pbkdf2_sha256", PLUGIN_VERSION, .init = init, .fini = fini, .hash = hash,
		     .verify = verify, .identify = identify, .needs_rehash = needs_rehash);
