/*
 * argon2id.c: the argon2id password scheme, sesame's default, on libsodium.
 *
 * Hashes are PHC strings, "$argon2id$v=19$m=MEMORY,t=ITERATIONS,p=1$SALT$HASH", as every
 * argon2 library reads them. The parameters come from password.argon2id, with OWASP's
 * recommendation as the floor: 19 MiB of memory, 2 iterations, 1 lane (libsodium always uses
 * one). A stored hash made with less memory or fewer iterations than configured needs a rehash.
 */
#include <sesame/plugin.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX	       "$argon2id$"
#define MIN_MEMORY_KIB 19456
#define MIN_ITERATIONS 2

struct argon2id {
	unsigned long long memory_kib;
	unsigned long long iterations;
};

static int init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	struct argon2id *a = calloc(1, sizeof(*a));
	long long v;
	if (a == NULL || sodium_init() < 0) {
		free(a);
		host->log(host, SESAME_LOG_ERROR, "cannot initialise");
		return -1;
	}
	a->memory_kib = MIN_MEMORY_KIB;
	a->iterations = MIN_ITERATIONS;
	/* Memory in KiB, as the PHC string's m= says it. */
	if (host->config_integer(cfg, "memory", MIN_MEMORY_KIB, 4LL << 20, &v) == SESAME_CONFIG_OK)
		a->memory_kib = (unsigned long long)v;
	if (host->config_integer(cfg, "iterations", MIN_ITERATIONS, 1000, &v) == SESAME_CONFIG_OK)
		a->iterations = (unsigned long long)v;
	*state = a;
	return 0;
}

static void fini(void *state)
{
	free(state);
}

static int hash(void *state, const char *password, size_t len, char *out, size_t outlen)
{
	const struct argon2id *a = state;
	char buf[crypto_pwhash_STRBYTES];
	if (crypto_pwhash_str_alg(buf, password, len, a->iterations, a->memory_kib * 1024u,
				  crypto_pwhash_ALG_ARGON2ID13) != 0)
		return -1;
	if (strlen(buf) + 1 > outlen)
		return -1;
	memcpy(out, buf, strlen(buf) + 1);
	return 0;
}

static bool identify(void *state, const char *stored)
{
	return strncmp(stored, PREFIX, strlen(PREFIX)) == 0;
}

static int verify(void *state, const char *password, size_t len, const char *stored)
{
	if (!identify(state, stored) || strlen(stored) >= crypto_pwhash_STRBYTES)
		return 0;
	return crypto_pwhash_str_verify(stored, password, len) == 0;
}

static bool needs_rehash(void *state, const char *stored)
{
	const struct argon2id *a = state;
	unsigned version, m, t, p;
	if (sscanf(stored, PREFIX "v=%u$m=%u,t=%u,p=%u$", &version, &m, &t, &p) != 4)
		return true;
	return version != 19 || m < a->memory_kib || t < a->iterations;
}

SESAME_PLUGIN_EXPORT const struct sesame_hasher sesame_plugin = {
    .header = SESAME_PLUGIN_HEADER(struct sesame_hasher, SESAME_PLUGIN_HASHER, "argon2id",
				   PLUGIN_VERSION),
    .init = init,
    .fini = fini,
    .hash = hash,
    .verify = verify,
    .identify = identify,
    .needs_rehash = needs_rehash,
};
