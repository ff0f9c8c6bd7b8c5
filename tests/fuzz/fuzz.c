/*
 * fuzz.c: the configuration the targets run with. Each target loads its own through
 * config_load, from a file in a temporary folder, so that the plugins are dlopen'd and
 * initialised and the keys read exactly as in sesamed.
 */
#include "autoconfig.h"

#include "fuzz.h"

#include <dlfcn.h>
#include <ftw.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static char dir[64];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static void remove_dir(void)
{
	if (dir[0] != '\0')
		nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_dir(void)
{
	if (dir[0] == '\0') {
		snprintf(dir, sizeof(dir), "/tmp/sesame-fuzz-XXXXXX");
		if (mkdtemp(dir) == NULL) {
			perror("mkdtemp");
			abort();
		}
		atexit(remove_dir);
	}
	return dir;
}

struct config *fuzz_config(const char *name, const char *fmt, ...)
{
	char path[128];
	snprintf(path, sizeof(path), "%s/%s.lua", fuzz_dir(), name);
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		abort();
	}
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
	struct config_errors errs = {0};
	struct config *cfg = config_load(path, &errs);
	if (cfg == NULL) {
		for (size_t i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msg[i]);
		abort();
	}
	config_errors_free(&errs);
	return cfg;
}

char *fuzz_string(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	return s;
}

void fuzz_pin_plugins(void)
{
	glob_t g;
	if (glob(FUZZ_PLUGINDIR "/*.so", 0, NULL, &g) != 0)
		abort();
	for (size_t i = 0; i < g.gl_pathc; i++) {
		if (dlopen(g.gl_pathv[i], RTLD_NOW | RTLD_NODELETE) == NULL) {
			fprintf(stderr, "%s\n", dlerror());
			abort();
		}
	}
	globfree(&g);
}
