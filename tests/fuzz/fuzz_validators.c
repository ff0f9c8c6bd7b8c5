/*
 * fuzz_validators.c: the e-mail, username and password validator plugins, dlopen'd and
 * configured through config_load as sesamed loads them (internationalised addresses and the
 * special-use domains allowed, so that more of the e-mail checks run). Each input is checked
 * by all three, from a buffer of exactly its length, with the output buffer sized as
 * sesame.validate sizes it; the password is compared with an e-mail and a username, as the
 * registration route does.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "log.h"
#include "plugin.h"

static struct config *cfg;
static struct validator validators[3];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const names[] = {"email", "username", "password"};
	log_set_level(LOG_LEVEL_ERROR);
	cfg = fuzz_config("validators",
			  "plugins = { path = \"%s\" }\n"
			  "email = { allow_special_domains = true }\n"
			  "username = { min_length = 1, max_length = 64 }\n"
			  "password = { min_length = 8, max_length = 128 }\n"
			  "routes = {}\n",
			  FUZZ_PLUGINDIR);
	for (size_t i = 0; i < 3; i++) {
		if (!plugins_validator(cfg->plugins, names[i], &validators[i]))
			abort();
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const related[] = {"alice@example.com", "alice", NULL};
	/* Exactly the input's bytes: a validator that reads past its length is caught. */
	char *value = malloc(size ? size : 1);
	size_t outlen = size * 4 + 64;
	char *out = malloc(outlen), msg[256] = "";
	if (value == NULL || out == NULL)
		abort();
	memcpy(value, data, size);
	for (size_t i = 0; i < 3; i++) {
		const struct validator *v = &validators[i];
		int rc = v->fn->check(v->state, value, size, i == 2 ? related : NULL, out, outlen,
				      msg, sizeof(msg));
		/* A valid value comes with its NUL-terminated normal form. */
		if (rc == 1 && memchr(out, '\0', outlen) == NULL)
			abort();
		if (rc < 0)
			abort(); /* out was sized as sesame.validate sizes it */
	}
	free(out);
	free(value);
	return 0;
}
