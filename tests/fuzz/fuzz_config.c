/*
 * fuzz_config.c: the configuration loader (config.c and the section readers it calls:
 * config_jwt.c, config_table.c, config_diag.c, the plugin sections), on a fuzzed Lua text
 * written to a file as an operator writes it. The plugins line is the target's own, and the
 * text is appended to it.
 *
 * A configuration is a Lua chunk with the standard library: it can loop, which the loader's
 * instruction budget ends, and it can reach the system (os.execute, io.open, a MariaDB
 * server), which is its right as the operator's file but not a fuzzer's: a text that names
 * any of the ways out (see outside[]), or the plugins table, is skipped.
 */
#include "autoconfig.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "log.h"

static char path[128];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_LEVEL_ERROR);
	fuzz_pin_plugins();
	snprintf(path, sizeof(path), "%s/sesame.lua", fuzz_dir());
	return 0;
}

static bool name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

/* Does text hold name as a word of its own (a Lua name, or a string that is one)? */
static bool has_word(const char *text, const char *name)
{
	size_t len = strlen(name);
	for (const char *p = strstr(text, name); p != NULL; p = strstr(p + 1, name)) {
		if ((p == text || !name_char(p[-1])) && !name_char(p[len]))
			return true;
	}
	return false;
}

/* Names that lead out of the configuration's own data, or to the target's plugins line. */
static bool reaches_outside(const char *text)
{
	static const char *const outside[] = {
	    "os",      "io",	"require", "load", "loadstring",   "loadfile",	     "dofile",
	    "package", "debug", "_G",	   "_ENV", "getmetatable", "collectgarbage", "plugins",
	    "mariadb", NULL};
	for (const char *const *w = outside; *w != NULL; w++) {
		if (has_word(text, *w))
			return true;
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = fuzz_string(data, size);
	if (strlen(text) != size || reaches_outside(text)) {
		free(text);
		return -1; /* not added to the corpus */
	}
	FILE *f = fopen(path, "w");
	if (f == NULL)
		abort();
	fprintf(f, "plugins = { path = \"%s\" }\n%s", FUZZ_PLUGINDIR, text);
	fclose(f);
	free(text);
	struct config_errors errs = {0};
	struct config *cfg = config_load(path, &errs);
	/* A configuration loads, or says why not. */
	if ((cfg == NULL) != (errs.n > 0))
		abort();
	config_free(cfg);
	config_errors_free(&errs);
	return 0;
}
