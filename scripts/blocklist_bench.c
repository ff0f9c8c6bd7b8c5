/*
 * blocklist_bench.c: times the blocklist validator as sesamed runs it, for scripts/bench.
 *
 *   blocklist_bench PLUGIN.so LIST N
 *
 * Loads the plugin with dlopen, reads LIST through its init (as sesamed's master does), then
 * checks N passwords, half of them listed ("pw-%07d" for the line numbers LIST was written
 * with) and half not, and prints "load_ms lookups_per_second bytes_per_password".
 */
#include <sesame/plugin.h>

#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct sesame_config {
	const char *file;
};

static char logged[512];

static void host_log(const struct sesame_host *host, enum sesame_log_level level, const char *fmt,
		     ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(logged, sizeof(logged), fmt, ap);
	va_end(ap);
}

static enum sesame_config_result config_string(struct sesame_config *cfg, const char *key,
					       const char **out)
{
	if (strcmp(key, "file") != 0)
		return SESAME_CONFIG_ABSENT;
	*out = cfg->file;
	return SESAME_CONFIG_OK;
}

static enum sesame_config_result config_boolean(struct sesame_config *cfg, const char *key,
						bool *out)
{
	return SESAME_CONFIG_ABSENT;
}

static void config_error(struct sesame_config *cfg, const char *key, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void random_bytes(void *buf, size_t len)
{
	FILE *f = fopen("/dev/urandom", "rb");
	if (f == NULL || fread(buf, 1, len, f) != len)
		abort();
	fclose(f);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	struct sesame_host host = {.size = sizeof(host),
				   .abi_major = SESAME_PLUGIN_ABI_MAJOR,
				   .abi_minor = SESAME_PLUGIN_ABI_MINOR,
				   .log = host_log,
				   .config_string = config_string,
				   .config_boolean = config_boolean,
				   .config_error = config_error,
				   .random = random_bytes};
	if (argc != 4) {
		fprintf(stderr, "usage: blocklist_bench PLUGIN.so LIST N\n");
		return 2;
	}
	struct sesame_config cfg = {.file = argv[2]};
	void *dl = dlopen(argv[1], RTLD_NOW);
	const struct sesame_validator *v = dl ? dlsym(dl, SESAME_PLUGIN_SYMBOL) : NULL;
	void *state;
	long n = atol(argv[3]), refused = 0;
	if (v == NULL) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	double t0 = now();
	if (v->init(&host, &cfg, &state) != 0)
		return 1;
	double t1 = now();
	char pw[32], out[64], msg[64];
	for (long i = 0; i < n; i++) {
		int len = snprintf(pw, sizeof(pw), i % 2 ? "pw-%07ld" : "not-%07ld", i / 2);
		refused +=
		    v->check(state, pw, (size_t)len, NULL, out, sizeof(out), msg, sizeof(msg)) == 0;
	}
	double t2 = now();
	size_t count = 0, dups = 0, bytes = 0;
	const char *paren = strstr(logged, " (");
	if (sscanf(logged, "%zu", &count) != 1 || paren == NULL ||
	    sscanf(paren, " (%zu listed twice), %zu bytes", &dups, &bytes) != 2 || count == 0 ||
	    refused != n / 2) {
		fprintf(stderr, "unexpected: %s; %ld of %ld refused\n", logged, refused, n);
		return 1;
	}
	printf("%.0f %.0f %.1f\n", (t1 - t0) * 1e3, (double)n / (t2 - t1), (double)bytes / count);
	v->fini(state);
	dlclose(dl);
	return 0;
}
