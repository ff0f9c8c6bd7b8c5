/*
 * sesamectl.c: sesame's administration tool. Each subcommand is one function:
 *
 *   sesamectl [-c FILE] migrate          apply the storage schema's migrations now
 *   sesamectl keygen [-a ALG] FILE       write a new HMAC secret (mode 0600, never over a file)
 *   sesamectl [-c FILE] hash-bench [N]   time N hashes with the configured password scheme
 *
 * It reads the same configuration as sesamed, checked the same way.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "plugin.h"

static void usage(FILE *out)
{
	fprintf(out,
		"Usage: sesamectl [-c FILE] COMMAND [ARGS]\n"
		"\n"
		"  migrate              apply the storage schema's missing migrations\n"
		"  keygen [-a ALG] FILE write a new HMAC secret for jwt.secret_file (HS256, HS384,\n"
		"                       HS512; mode 0600; an existing file is never overwritten)\n"
		"  hash-bench [N]       time N password hashes (default 5) with password.scheme\n"
		"\n"
		"  -c FILE  configuration file (default: %s)\n",
		CONFIG_DEFAULT_PATH);
}

static struct config *load(const char *path)
{
	struct config_errors errs = {0};
	struct config *cfg = config_load(path, &errs);
	for (size_t i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msg[i]);
	config_errors_free(&errs);
	return cfg;
}

static int cmd_migrate(const char *path)
{
	struct config *cfg = load(path);
	char err[512];
	if (cfg == NULL)
		return 1;
	int rc = plugins_migrate(cfg->plugins, true, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "sesamectl: storage: %s\n", err);
	else
		printf("sesamectl: the schema is up to date\n");
	config_free(cfg);
	return rc == 0 ? 0 : 1;
}

static int cmd_keygen(int argc, char **argv)
{
	const char *alg = "HS256";
	int c;
	optind = 1;
	while ((c = getopt(argc, argv, "a:")) != -1) {
		if (c != 'a')
			return 2;
		alg = optarg;
	}
	if (optind != argc - 1 || tokens_alg_parse(alg) < 0) {
		fprintf(stderr, "sesamectl: keygen [-a HS256|HS384|HS512] FILE\n");
		return 2;
	}
	/* As many random bytes as the hash's output: 32, 48 or 64. */
	size_t bytes = strcmp(alg, "HS512") == 0 ? 64 : strcmp(alg, "HS384") == 0 ? 48 : 32;
	unsigned char key[64];
	char text[sodium_base64_ENCODED_LEN(64, sodium_base64_VARIANT_ORIGINAL)];
	randombytes_buf(key, bytes);
	sodium_bin2base64(text, sizeof(text), key, bytes, sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(key, sizeof(key));
	int fd = open(argv[optind], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		fprintf(stderr, "sesamectl: %s: %s\n", argv[optind], strerror(errno));
		sodium_memzero(text, sizeof(text));
		return 1;
	}
	size_t len = strlen(text);
	text[len++] = '\n';
	bool ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
	sodium_memzero(text, sizeof(text));
	if (close(fd) != 0 || !ok) {
		fprintf(stderr, "sesamectl: %s: cannot write the secret\n", argv[optind]);
		unlink(argv[optind]);
		return 1;
	}
	printf("sesamectl: wrote a %s secret to %s (mode 0600)\n", alg, argv[optind]);
	return 0;
}

static int cmd_hash_bench(const char *path, int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 5;
	struct config *cfg = load(path);
	if (cfg == NULL)
		return 1;
	const struct hasher *h = plugins_scheme(cfg->plugins);
	if (h == NULL || n < 1 || n > 1000) {
		fprintf(stderr, "sesamectl: %s\n",
			h == NULL ? "no password hasher is loaded" : "N is from 1 to 1000");
		config_free(cfg);
		return 1;
	}
	char out[512];
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		if (h->fn->hash(h->state, "hash-bench password", 19, out, sizeof(out)) != 0) {
			fprintf(stderr, "sesamectl: %s: hashing failed\n", h->name);
			config_free(cfg);
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	double ms = ((double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6) / n;
	/* The settings, without the salt and hash that follow them. */
	char *end = strrchr(out, '$');
	if (end != NULL && end > out) {
		*end = '\0';
		if ((end = strrchr(out, '$')) != NULL)
			*end = '\0';
	}
	printf("%s: %.1f ms per hash (%s), about %.0f hashes per second per job thread\n", h->name,
	       ms, out, 1000.0 / ms);
	config_free(cfg);
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = CONFIG_DEFAULT_PATH;
	int c;
	while ((c = getopt(argc, argv, "+c:h")) != -1) {
		switch (c) {
		case 'c':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	log_init(false);
	if (sodium_init() < 0)
		return 1;
	const char *cmd = argv[optind];
	if (strcmp(cmd, "migrate") == 0)
		return cmd_migrate(path);
	if (strcmp(cmd, "keygen") == 0)
		return cmd_keygen(argc - optind, argv + optind);
	if (strcmp(cmd, "hash-bench") == 0)
		return cmd_hash_bench(path, argc - optind, argv + optind);
	fprintf(stderr, "sesamectl: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
