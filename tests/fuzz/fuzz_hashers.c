/*
 * fuzz_hashers.c: the stored-hash parsers of the pbkdf2_sha256 (passlib's format) and argon2id
 * (PHC string) hasher plugins, dlopen'd and configured through config_load as sesamed loads
 * them. An input is a stored string, then optionally a newline and a password. The daemon's
 * path runs first (plugins_identify picks the hasher, which verifies), then every hasher's
 * identify and needs_rehash on the same string.
 *
 * A stored string sets its own cost, and a fuzzer that asks for 2,000,000,000 rounds only
 * times out. Until the hashers refuse such costs themselves, this target verifies only
 * strings whose costs are small (pbkdf2 rounds, argon2 m, t and p: see cheap()); identify and
 * needs_rehash, which run no hash, see every string.
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "log.h"
#include "plugin.h"

#define MAX_ROUNDS 2000 /* pbkdf2 */
#define MAX_MEMORY 1024 /* argon2: KiB */
#define MAX_PASSES 4	/* argon2: t, and p */

static struct config *cfg;
static const struct hasher *hashers[2];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_LEVEL_ERROR);
	cfg = fuzz_config("hashers",
			  "plugins = { path = \"%s\" }\n"
			  "password = { scheme = \"argon2id\", accept = { \"argon2id\", "
			  "\"pbkdf2_sha256\" },\n"
			  "             pbkdf2_sha256 = { rounds = 29000 } }\n"
			  "routes = {}\n",
			  FUZZ_PLUGINDIR);
	hashers[0] = plugins_scheme(cfg->plugins);
	hashers[1] = plugins_identify(cfg->plugins, "$pbkdf2-sha256$29000$c2FsdA$c3Vt");
	if (hashers[0] == NULL || hashers[1] == NULL || hashers[0] == hashers[1])
		abort();
	return 0;
}

/* Does every number after name in s stay within max? */
static bool within(const char *s, const char *name, unsigned long long max)
{
	size_t len = strlen(name);
	for (const char *p = strstr(s, name); p != NULL; p = strstr(p + 1, name)) {
		const char *d = p + len;
		while (*d == '0')
			d++;
		size_t digits = strspn(d, "0123456789");
		if (digits > 6 || strtoull(d, NULL, 10) > max)
			return false;
	}
	return true;
}

/* Is stored cheap enough to verify (see the comment at the top)? */
static bool cheap(const char *stored)
{
	return within(stored, "$pbkdf2-sha256$", MAX_ROUNDS) && within(stored, "m=", MAX_MEMORY) &&
	       within(stored, "t=", MAX_PASSES) && within(stored, "p=", MAX_PASSES);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *stored = fuzz_string(data, size);
	char *nl = strchr(stored, '\n');
	const char *password = nl != NULL ? nl + 1 : "correct horse";
	size_t plen = nl != NULL ? size - (size_t)(nl + 1 - stored) : strlen(password);
	if (nl != NULL)
		*nl = '\0';
	const struct hasher *h = plugins_identify(cfg->plugins, stored);
	if (h != NULL && cheap(stored)) {
		int rc = h->fn->verify(h->state, password, plen, stored);
		if (rc != 0 && rc != 1)
			abort();
	}
	for (size_t i = 0; i < 2; i++) {
		hashers[i]->fn->identify(hashers[i]->state, stored);
		hashers[i]->fn->needs_rehash(hashers[i]->state, stored);
	}
	free(stored);
	return 0;
}
