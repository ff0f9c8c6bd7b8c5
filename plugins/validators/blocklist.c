/*
 * blocklist.c: the blocklist validator. It refuses a password found in a list of common,
 * expected or compromised passwords, as NIST SP 800-63B asks of a verifier.
 *
 * The list (blocklist.file) is a text file, one password per line, matched exactly (with
 * blocklist.ignore_case, after Unicode case folding): no comments, no trimming but the line's
 * end (LF or CRLF); empty lines are skipped, duplicates counted once. Without a file the
 * validator refuses nothing. sesamed runs it after the password validator wherever a route
 * asks for sesame.validate("password", ...).
 *
 * The list is read once, in init, into an open-addressing hash table (linear probing, at
 * most 70% full) of 64-bit fingerprints: SipHash-2-4 of each password under a random key
 * (libsodium's crypto_shorthash), so 8 bytes a slot, 11 to 23 bytes a password, in one
 * allocation; a lookup costs one hash and a probe or two. The passwords
 * themselves are not kept. Two passwords share a fingerprint with a probability of about
 * n / 2^64 per lookup (1 in 18 trillion for a million passwords): such a collision refuses a
 * good password, which the user changes; it never accepts a listed one. The random key makes
 * collisions impossible to aim at.
 */
#include <sesame/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unicase.h>
#include <unistd.h>

#define MESSAGE "password is too common"

struct blocklist {
	uint64_t *slots; /* 0 is an empty slot */
	size_t mask;	 /* slots - 1: their number is a power of two */
	size_t n;
	bool ignore_case;
	unsigned char key[crypto_shorthash_KEYBYTES];
};

/* ---- fingerprints ---- */

static uint64_t fingerprint(const struct blocklist *b, const char *s, size_t len)
{
	unsigned char h[crypto_shorthash_BYTES];
	uint64_t fp;
	uint8_t buf[512];
	size_t flen = sizeof(buf);
	uint8_t *folded = NULL;
	if (b->ignore_case)
		folded = u8_casefold((const uint8_t *)s, len, NULL, NULL, buf, &flen);
	if (folded != NULL) {
		crypto_shorthash(h, folded, flen, b->key);
		if (folded != buf)
			free(folded);
	} else {
		/* Not UTF-8 (a list may hold other bytes): matched exactly. */
		crypto_shorthash(h, (const unsigned char *)s, len, b->key);
	}
	memcpy(&fp, h, sizeof(fp));
	return fp != 0 ? fp : 1;
}

static bool contains(const struct blocklist *b, uint64_t fp)
{
	for (size_t i = fp & b->mask; b->slots[i] != 0; i = (i + 1) & b->mask) {
		if (b->slots[i] == fp)
			return true;
	}
	return false;
}

/* Adds fp unless it is there; false when it was. */
static bool insert(struct blocklist *b, uint64_t fp)
{
	size_t i = fp & b->mask;
	for (; b->slots[i] != 0; i = (i + 1) & b->mask) {
		if (b->slots[i] == fp)
			return false;
	}
	b->slots[i] = fp;
	b->n++;
	return true;
}

/* ---- reading the list ---- */

/* A table for at most lines passwords, at most 70% full. */
static int make_table(struct blocklist *b, size_t lines)
{
	size_t slots = 16;
	while (slots / 10 * 7 < lines) {
		if (slots > SIZE_MAX / 2 / sizeof(uint64_t))
			return -1;
		slots *= 2;
	}
	b->slots = calloc(slots, sizeof(uint64_t));
	b->mask = slots - 1;
	return b->slots != NULL ? 0 : -1;
}

/* Every line of text; *dups counts the ones listed already. */
static int read_lines(struct blocklist *b, const char *text, size_t size, size_t *dups)
{
	size_t lines = 1;
	for (const char *p = text; (p = memchr(p, '\n', size - (size_t)(p - text))) != NULL; p++)
		lines++;
	if (make_table(b, lines) != 0)
		return -1;
	for (const char *p = text, *end = text + size; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *eol = nl != NULL ? nl : end;
		size_t len = (size_t)(eol - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len > 0 && !insert(b, fingerprint(b, p, len)))
			(*dups)++;
		p = eol + 1;
	}
	return 0;
}

static double ms_since(const struct timespec *t0)
{
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

/* The whole file in *text (NUL-terminated), its length in *size; -1 with errno set. */
static int slurp(int fd, char **text, size_t *size)
{
	struct stat st;
	size_t cap, n = 0;
	ssize_t got = 1;
	if (fstat(fd, &st) != 0)
		return -1;
	cap = (size_t)st.st_size + 1;
	char *buf = malloc(cap);
	while (buf != NULL && got > 0) {
		if (n + 1 == cap) {
			char *grown = realloc(buf, cap *= 2);
			if (grown == NULL)
				break;
			buf = grown;
		}
		got = read(fd, buf + n, cap - n - 1);
		if (got > 0)
			n += (size_t)got;
		else if (got < 0 && errno == EINTR)
			got = 1;
	}
	if (buf == NULL || got != 0) {
		int e = buf == NULL || got > 0 ? ENOMEM : errno;
		free(buf);
		errno = e;
		return -1;
	}
	buf[n] = '\0';
	*text = buf;
	*size = n;
	return 0;
}

static int load(const struct sesame_host *host, struct sesame_config *cfg, struct blocklist *b,
		const char *path)
{
	struct timespec t0;
	size_t size, dups = 0;
	char *text = NULL;
	int rc = -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || slurp(fd, &text, &size) != 0) {
		host->config_error(cfg, "file", "%s: %s", path, strerror(errno));
		goto done;
	}
	if (read_lines(b, text, size, &dups) != 0) {
		host->config_error(cfg, "file", "%s: out of memory", path);
		goto done;
	}
	size_t bytes = (b->mask + 1) * sizeof(uint64_t);
	host->log(host, b->n > 0 ? SESAME_LOG_INFO : SESAME_LOG_WARN,
		  "%zu %s from %s (%zu listed twice), %zu %s, read in %.0f ms", b->n,
		  (b->n == 1 ? "password" : "passwords"), path, dups, bytes,
		  (bytes == 1 ? "byte" : "bytes"), ms_since(&t0));
	rc = 0;
done:
	free(text);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* ---- the plugin ---- */

static int init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	struct blocklist *b = calloc(1, sizeof(*b));
	const char *file = NULL;
	char path[4096];
	if (b == NULL)
		return -1;
	host->random(b->key, sizeof(b->key));
	enum sesame_config_result fr = host->config_string(cfg, "file", &file);
	enum sesame_config_result cr = host->config_boolean(cfg, "ignore_case", &b->ignore_case);
	if (fr == SESAME_CONFIG_WRONG || cr == SESAME_CONFIG_WRONG)
		goto fail;
	if (fr == SESAME_CONFIG_OK) {
		if (file[0] == '/' || host->config_dir == NULL)
			snprintf(path, sizeof(path), "%s", file);
		else
			snprintf(path, sizeof(path), "%s/%s", host->config_dir, file);
		if (load(host, cfg, b, path) != 0)
			goto fail;
	}
	*state = b;
	return 0;
fail:
	free(b->slots);
	free(b);
	return -1;
}

static void fini(void *state)
{
	struct blocklist *b = state;
	free(b->slots);
	free(b);
}

static int check(void *state, const char *value, size_t len, const char *const *related, char *out,
		 size_t outlen, char *msg, size_t msglen)
{
	const struct blocklist *b = state;
	(void)related;
	if (b->n > 0 && contains(b, fingerprint(b, value, len))) {
		snprintf(msg, msglen, MESSAGE);
		return 0;
	}
	if (len + 1 > outlen)
		return -1;
	memcpy(out, value, len);
	out[len] = '\0';
	return 1;
}

SESAME_VALIDATOR_PLUGIN("blocklist", PLUGIN_VERSION, .init = init, .fini = fini, .check = check);
