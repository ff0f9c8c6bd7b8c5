/*
 * test_hashers.c: unit tests of the hasher plugins, loaded as sesamed loads them.
 *
 * Each plugin is dlopened from TEST_PLUGINDIR and driven through its descriptor with a small
 * host of our own: settings come from an in-test table, config_error records what it is told,
 * random reads /dev/urandom. pbkdf2_sha256 is checked against passlib both ways, with vectors
 * passlib makes while the test runs (passwords cross the shell hex-encoded, so any byte
 * survives); argon2id against libsodium's own PHC strings. Both are then fed malformed
 * strings, short buffers and four threads at once.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sesame/plugin.h>

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef TEST_PYTHON3
#define TEST_PYTHON3 "/usr/bin/python3"
#endif

#define PBKDF2_PREFIX	 "$pbkdf2-sha256$"
#define ARGON2ID_DEFAULT "$argon2id$v=19$m=19456,t=2,p=1$"
#define MAX_VECTORS	 64
#define HASH_MAX	 256
#define THREADS		 4

/* ---- the host ---- */

enum setting_type { SETTING_INTEGER, SETTING_STRING, SETTING_BOOLEAN };

struct setting {
	const char *key;
	enum setting_type type;
	long long integer;
	const char *string;
	bool boolean;
};

#define INTEGER(k, v)                                                                              \
	{                                                                                          \
		.key = (k), .type = SETTING_INTEGER, .integer = (v)                                \
	}
#define STRING(k, v)                                                                               \
	{                                                                                          \
		.key = (k), .type = SETTING_STRING, .string = (v)                                  \
	}

struct sesame_config {
	const struct setting *settings;
	size_t n;
	int errors;
	char error_key[64];
	char error[256];
};

static int urandom_fd = -1;

/* The plugins' last warning, for the tests that expect one. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char last_warning[512];

static void host_log(const struct sesame_host *host, enum sesame_log_level level, const char *fmt,
		     ...) __attribute__((format(printf, 3, 4)));
static void host_log(const struct sesame_host *host, enum sesame_log_level level, const char *fmt,
		     ...)
{
	va_list ap;
	char msg[512];
	(void)host;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "plugin log (level %d): %s\n", (int)level, msg);
	if (level == SESAME_LOG_WARN) {
		pthread_mutex_lock(&log_lock);
		memcpy(last_warning, msg, sizeof(msg));
		pthread_mutex_unlock(&log_lock);
	}
}

static void forget_warning(void)
{
	pthread_mutex_lock(&log_lock);
	last_warning[0] = '\0';
	pthread_mutex_unlock(&log_lock);
}

static void config_error(struct sesame_config *cfg, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void config_error(struct sesame_config *cfg, const char *key, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cfg->error, sizeof(cfg->error), fmt, ap);
	va_end(ap);
	snprintf(cfg->error_key, sizeof(cfg->error_key), "%s", key);
	cfg->errors++;
}

static const struct setting *find_setting(struct sesame_config *cfg, const char *key)
{
	for (size_t i = 0; cfg != NULL && i < cfg->n; i++) {
		if (strcmp(cfg->settings[i].key, key) == 0)
			return &cfg->settings[i];
	}
	return NULL;
}

static enum sesame_config_result config_string(struct sesame_config *cfg, const char *key,
					       const char **out)
{
	const struct setting *s = find_setting(cfg, key);
	if (s == NULL)
		return SESAME_CONFIG_ABSENT;
	if (s->type != SETTING_STRING) {
		config_error(cfg, key, "expected a string");
		return SESAME_CONFIG_WRONG;
	}
	*out = s->string;
	return SESAME_CONFIG_OK;
}

static enum sesame_config_result config_integer(struct sesame_config *cfg, const char *key,
						long long min, long long max, long long *out)
{
	const struct setting *s = find_setting(cfg, key);
	if (s == NULL)
		return SESAME_CONFIG_ABSENT;
	if (s->type != SETTING_INTEGER) {
		config_error(cfg, key, "expected a whole number");
		return SESAME_CONFIG_WRONG;
	}
	if (s->integer < min || s->integer > max) {
		config_error(cfg, key, "%lld is out of range (%lld to %lld)", s->integer, min, max);
		return SESAME_CONFIG_WRONG;
	}
	*out = s->integer;
	return SESAME_CONFIG_OK;
}

static enum sesame_config_result config_boolean(struct sesame_config *cfg, const char *key,
						bool *out)
{
	const struct setting *s = find_setting(cfg, key);
	if (s == NULL)
		return SESAME_CONFIG_ABSENT;
	if (s->type != SETTING_BOOLEAN) {
		config_error(cfg, key, "expected true or false");
		return SESAME_CONFIG_WRONG;
	}
	*out = s->boolean;
	return SESAME_CONFIG_OK;
}

static void host_random(void *buf, size_t len)
{
	unsigned char *p = buf;
	while (len > 0) {
		ssize_t n = read(urandom_fd, p, len);
		if (n <= 0)
			abort(); /* a host without random bytes must not hand out salts */
		p += n;
		len -= (size_t)n;
	}
}

static int host_memcmp_secret(const void *a, const void *b, size_t len)
{
	const volatile unsigned char *x = a, *y = b;
	unsigned char diff = 0;
	for (size_t i = 0; i < len; i++)
		diff |= x[i] ^ y[i];
	return diff != 0;
}

static const struct sesame_host test_host = {
    .size = sizeof(struct sesame_host),
    .abi_major = SESAME_PLUGIN_ABI_MAJOR,
    .abi_minor = SESAME_PLUGIN_ABI_MINOR,
    .log = host_log,
    .config_string = config_string,
    .config_integer = config_integer,
    .config_boolean = config_boolean,
    .config_error = config_error,
    .random = host_random,
    .memcmp_secret = host_memcmp_secret,
};

/* ---- the plugins ---- */

static void *pbkdf2_handle, *argon2id_handle;
static const struct sesame_hasher *pbkdf2, *argon2id;

static const struct sesame_hasher *load(const char *name, void **handle)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s.so", TEST_PLUGINDIR, name);
	*handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (*handle == NULL) {
		fprintf(stderr, "%s\n", dlerror());
		return NULL;
	}
	return dlsym(*handle, SESAME_PLUGIN_SYMBOL);
}

/* Starts a plugin with these settings, which must be accepted. */
static void *start(const struct sesame_hasher *h, const struct setting *settings, size_t n)
{
	struct sesame_config cfg = {.settings = settings, .n = n};
	void *state = NULL;
	assert_int_equal(h->init(&test_host, &cfg, &state), 0);
	if (cfg.errors != 0)
		fail_msg("%s: unexpected error for %s: %s", h->header.name, cfg.error_key,
			 cfg.error);
	return state;
}

/*
 * Does the plugin refuse key = value? sesamed fails the start when init returns -1 or has
 * reported an error through config_error (and then still calls fini when init returned 0).
 */
static bool refuses(const struct sesame_hasher *h, const struct setting *s)
{
	struct sesame_config cfg = {.settings = s, .n = 1};
	void *state = NULL;
	int rc = h->init(&test_host, &cfg, &state);
	if (rc == 0)
		h->fini(state);
	if (cfg.errors != 0)
		assert_string_equal(cfg.error_key, s->key);
	return rc != 0 || cfg.errors != 0;
}

/* ---- passwords and passlib ---- */

struct password {
	const char *s;
	size_t len;
};

#define PW(lit)                                                                                    \
	{                                                                                          \
		(lit), sizeof(lit) - 1                                                             \
	}

static char long500[501], key64[65], key65[66];

static const struct password passwords[] = {
    PW(""),
    PW("password"),
    PW("correct horse battery staple"),
    PW("p\xc3\xa4ssw\xc3\xb6rd \xe2\x98\x83"), /* "pässwörd ☃" */
    PW("$pbkdf2-sha256$29000$ dollar $ signs and spaces $"),
    PW("nul\0inside"),
    PW("\xff\xfe\x80 not UTF-8 \t\r\n"),
    {long500, 500},
    {key64, 64}, /* SHA-256's block: longer HMAC keys are hashed first */
    {key65, 65},
};
#define NPASSWORDS (sizeof(passwords) / sizeof(passwords[0]))

static void fill_passwords(void)
{
	static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789 $.+/";
	for (size_t i = 0; i < 500; i++)
		long500[i] = chars[i % (sizeof(chars) - 1)];
	memset(key64, 'k', 64);
	memset(key65, 'k', 65);
}

static void hex_encode(const char *s, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", (unsigned char)s[i]);
	out[2 * len] = '\0';
}

static size_t hex_decode(const char *hex, char *out, size_t max)
{
	size_t n = strlen(hex) / 2;
	assert_true(n <= max);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (char)v;
	}
	return n;
}

/* Appends " 'xHEX'" for one password: the x keeps the empty password a word. */
static size_t add_password_arg(char *args, size_t n, size_t cap, const struct password *p)
{
	char hex[2 * 512 + 1];
	hex_encode(p->s, p->len, hex);
	n += (size_t)snprintf(args + n, cap - n, " 'x%s'", hex);
	assert_true(n < cap);
	return n;
}

/* Runs a Python script under the system python3 (which has passlib); returns its output. */
static char *python(const char *script, const char *args)
{
	size_t cap = strlen(script) + strlen(args) + 64, len = 0, got;
	char *cmd = malloc(cap), *out = malloc(1);
	assert_non_null(cmd);
	assert_non_null(out);
	snprintf(cmd, cap, "%s -c '%s'%s", TEST_PYTHON3, script, args);
	FILE *f = popen(cmd, "r");
	free(cmd);
	assert_non_null(f);
	char chunk[4096];
	while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		char *grown = realloc(out, len + got + 1);
		assert_non_null(grown);
		out = grown;
		memcpy(out + len, chunk, got);
		len += got;
	}
	out[len] = '\0';
	int status = pclose(f);
	if (status != 0)
		fail_msg("%s failed (status %d): is python3-passlib installed?", TEST_PYTHON3,
			 status);
	return out;
}

/* ---- helpers ---- */

/* The n-th '$'-separated field of stored (field 1 is the scheme), into out. */
static void field(const char *stored, int n, char *out, size_t outlen)
{
	const char *p = stored;
	for (int i = 0; i < n; i++) {
		p = strchr(p, '$');
		assert_non_null(p);
		p++;
	}
	size_t len = strcspn(p, "$");
	assert_true(len < outlen);
	memcpy(out, p, len);
	out[len] = '\0';
}

/* The first n characters of s. */
static void head(char *out, const char *s, size_t n)
{
	assert_true(strlen(s) >= n);
	memcpy(out, s, n);
	out[n] = '\0';
}

/* A stored string put together from its pieces. */
struct shape {
	const char *params, *salt, *sep, *sum, *tail;
};

static void build(const struct shape *s, char *out, size_t outlen)
{
	int n = snprintf(out, outlen, "%s%s%s%s%s", s->params, s->salt, s->sep, s->sum, s->tail);
	assert_true(n > 0 && (size_t)n < outlen);
}

/* stored with its pbkdf2 rounds replaced by rounds (a string, so it may be anything). */
static void with_rounds(const char *stored, const char *rounds, char *out, size_t outlen)
{
	const char *rest = strchr(stored + strlen(PBKDF2_PREFIX), '$');
	assert_non_null(rest);
	assert_true((size_t)snprintf(out, outlen, PBKDF2_PREFIX "%s%s", rounds, rest) < outlen);
}

/* The same password with one byte changed, or one byte added to an empty one. */
static size_t altered(const struct password *p, char *out)
{
	memcpy(out, p->s, p->len);
	if (p->len == 0) {
		out[0] = 'a';
		return 1;
	}
	out[p->len - 1] ^= 0x01;
	return p->len;
}

static void assert_verifies(const struct sesame_hasher *h, void *st, const char *pw,
			    const char *stored)
{
	if (h->verify(st, pw, strlen(pw), stored) != 1)
		fail_msg("%s: '%s' does not verify against %s", h->header.name, pw, stored);
}

static void assert_rejected(const struct sesame_hasher *h, void *st, const char *pw,
			    const char *stored)
{
	if (h->verify(st, pw, strlen(pw), stored) != 0)
		fail_msg("%s: '%s' verifies against %s", h->header.name, pw, stored);
}

static void check_header(const struct sesame_hasher *h, const char *name)
{
	assert_non_null(h);
	assert_int_equal(h->header.magic, SESAME_PLUGIN_MAGIC);
	assert_int_equal(h->header.abi_major, SESAME_PLUGIN_ABI_MAJOR);
	assert_false(h->header.abi_minor > SESAME_PLUGIN_ABI_MINOR); /* no newer than this host */
	assert_int_equal(h->header.size, sizeof(struct sesame_hasher));
	assert_int_equal(h->header.kind, SESAME_PLUGIN_HASHER);
	assert_string_equal(h->header.name, name);
	assert_non_null(h->header.version);
	assert_true(h->header.version[0] != '\0');
	assert_non_null(h->init);
	assert_non_null(h->fini);
	assert_non_null(h->hash);
	assert_non_null(h->verify);
	assert_non_null(h->identify);
	assert_non_null(h->needs_rehash);
}

/* ---- both plugins ---- */

static void test_headers(void **state)
{
	(void)state;
	check_header(pbkdf2, "pbkdf2_sha256");
	check_header(argon2id, "argon2id");
}

/* A short out buffer gives -1 and nothing written past it; one byte more is enough. */
static void check_short_buffer(const struct sesame_hasher *h, void *st)
{
	char full[HASH_MAX], out[HASH_MAX];
	assert_int_equal(h->hash(st, "pw", 2, full, sizeof(full)), 0);
	size_t len = strlen(full);
	size_t sizes[] = {0, 1, 10, len - 1, len};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		memset(out, '#', sizeof(out));
		assert_int_equal(h->hash(st, "pw", 2, out, sizes[i]), -1);
		for (size_t j = sizes[i]; j < sizeof(out); j++)
			assert_int_equal(out[j], '#');
	}
	assert_int_equal(h->hash(st, "pw", 2, out, len + 1), 0);
	assert_int_equal(strlen(out), len);
	assert_verifies(h, st, "pw", out);
}

static void test_short_buffer(void **state)
{
	(void)state;
	const struct setting rounds[] = {INTEGER("rounds", 29000)};
	void *p = start(pbkdf2, rounds, 1), *a = start(argon2id, NULL, 0);
	check_short_buffer(pbkdf2, p);
	check_short_buffer(argon2id, a);
	pbkdf2->fini(p);
	argon2id->fini(a);
}

static void test_empty_stored(void **state)
{
	(void)state;
	const struct setting rounds[] = {INTEGER("rounds", 29000)};
	void *p = start(pbkdf2, rounds, 1), *a = start(argon2id, NULL, 0);
	assert_int_equal(pbkdf2->verify(p, "", 0, ""), 0);
	assert_int_equal(pbkdf2->verify(p, "pw", 2, ""), 0);
	assert_false(pbkdf2->identify(p, ""));
	assert_true(pbkdf2->needs_rehash(p, ""));
	assert_int_equal(argon2id->verify(a, "", 0, ""), 0);
	assert_int_equal(argon2id->verify(a, "pw", 2, ""), 0);
	assert_false(argon2id->identify(a, ""));
	assert_true(argon2id->needs_rehash(a, ""));
	pbkdf2->fini(p);
	argon2id->fini(a);
}

struct worker {
	pthread_t thread;
	pthread_barrier_t *barrier;
	const struct sesame_hasher *h;
	void *state;
	const char *shared; /* a hash of "shared secret", made before the threads start */
	int id, iterations, failures;
	char made[4][HASH_MAX];
};

static void *work(void *arg)
{
	struct worker *w = arg;
	const struct sesame_hasher *h = w->h;
	char pw[64];
	pthread_barrier_wait(w->barrier);
	for (int i = 0; i < w->iterations; i++) {
		size_t len =
		    (size_t)snprintf(pw, sizeof(pw), "thread %d, round %d \xe2\x98\x83", w->id, i);
		w->failures += h->hash(w->state, pw, len, w->made[i], HASH_MAX) != 0;
		w->failures += h->verify(w->state, pw, len, w->made[i]) != 1;
		w->failures += h->verify(w->state, "shared secret", 13, w->shared) != 1;
		pw[0] ^= 1;
		w->failures += h->verify(w->state, pw, len, w->made[i]) != 0;
		w->failures += !h->identify(w->state, w->made[i]);
		w->failures += h->needs_rehash(w->state, w->made[i]);
	}
	return NULL;
}

/* THREADS threads hash and verify at once; then every hash they made is checked again. */
static void run_threads(const struct sesame_hasher *h, void *st, int iterations)
{
	struct worker w[THREADS];
	pthread_barrier_t barrier;
	char shared[HASH_MAX], pw[64];
	assert_true(iterations <= 4);
	assert_int_equal(h->hash(st, "shared secret", 13, shared, sizeof(shared)), 0);
	assert_int_equal(pthread_barrier_init(&barrier, NULL, THREADS), 0);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){.barrier = &barrier,
				       .h = h,
				       .state = st,
				       .shared = shared,
				       .id = i,
				       .iterations = iterations};
		assert_int_equal(pthread_create(&w[i].thread, NULL, work, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(w[i].thread, NULL), 0);
	pthread_barrier_destroy(&barrier);
	for (int i = 0; i < THREADS; i++) {
		assert_int_equal(w[i].failures, 0);
		for (int j = 0; j < iterations; j++) {
			snprintf(pw, sizeof(pw), "thread %d, round %d \xe2\x98\x83", i, j);
			assert_verifies(h, st, pw, w[i].made[j]);
			for (int k = 0; k < i; k++)
				assert_string_not_equal(w[i].made[j], w[k].made[j]);
		}
	}
}

/* ---- pbkdf2_sha256 ---- */

struct vector {
	unsigned long rounds;
	int salt_size;
	char pw[512];
	size_t len;
	char hash[HASH_MAX];
};

/* Has passlib hash every password at 1000, 29000 and 12345 rounds, salts of 0, 16 and 64. */
static size_t passlib_vectors(struct vector *v, size_t max)
{
	static const char script[] =
	    "import sys\n"
	    "from passlib.hash import pbkdf2_sha256 as h\n"
	    "for i, arg in enumerate(sys.argv[1:]):\n"
	    "    pw = bytes.fromhex(arg[1:])\n"
	    "    for j, rounds in enumerate((1000, 29000, 12345)):\n"
	    "        size = (0, 16, 64)[(i + j) % 3]\n"
	    "        print(rounds, size, arg, h.using(rounds=rounds, salt_size=size).hash(pw))\n";
	char args[16384], *save = NULL;
	size_t n = 0, count = 0;
	for (size_t i = 0; i < NPASSWORDS; i++)
		n = add_password_arg(args, n, sizeof(args), &passwords[i]);
	char *out = python(script, args);
	for (char *line = strtok_r(out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		char *words[4], *wsave = NULL;
		assert_true(count < max);
		words[0] = strtok_r(line, " ", &wsave);
		for (int i = 1; i < 4; i++)
			words[i] = strtok_r(NULL, " ", &wsave);
		assert_non_null(words[3]);
		assert_int_equal(words[2][0], 'x');
		assert_true(strlen(words[3]) < HASH_MAX);
		v[count].rounds = strtoul(words[0], NULL, 10);
		v[count].salt_size = atoi(words[1]);
		v[count].len = hex_decode(words[2] + 1, v[count].pw, sizeof(v[count].pw));
		strcpy(v[count].hash, words[3]);
		count++;
	}
	free(out);
	return count;
}

static void test_pbkdf2_passlib_vectors(void **state)
{
	(void)state;
	static struct vector v[MAX_VECTORS];
	const struct setting rounds[] = {INTEGER("rounds", 29000)};
	void *st = start(pbkdf2, rounds, 1);
	size_t n = passlib_vectors(v, MAX_VECTORS);
	assert_int_equal(n, 3 * NPASSWORDS);
	assert_true(n >= 20);
	for (size_t i = 0; i < n; i++) {
		char salt[128], buf[512], r[32];
		struct password p = {v[i].pw, v[i].len};
		/* The vector is what it claims to be: the rounds and salt size asked for. */
		field(v[i].hash, 2, r, sizeof(r));
		assert_int_equal(strtoul(r, NULL, 10), v[i].rounds);
		field(v[i].hash, 3, salt, sizeof(salt));
		assert_int_equal(strlen(salt), (size_t)(v[i].salt_size * 4 + 2) / 3);
		assert_int_equal(v[i].len, passwords[i / 3].len);
		assert_true(memcmp(v[i].pw, passwords[i / 3].s, v[i].len) == 0);

		if (pbkdf2->verify(st, v[i].pw, v[i].len, v[i].hash) != 1)
			fail_msg("vector %zu (%lu rounds, %d-byte salt) does not verify: %s", i,
				 v[i].rounds, v[i].salt_size, v[i].hash);
		size_t len = altered(&p, buf);
		if (pbkdf2->verify(st, buf, len, v[i].hash) != 0)
			fail_msg("vector %zu verifies with a changed password: %s", i, v[i].hash);
		assert_true(pbkdf2->identify(st, v[i].hash));
		assert_int_equal(pbkdf2->needs_rehash(st, v[i].hash), v[i].rounds < 29000);
	}
	pbkdf2->fini(st);
}

static void test_pbkdf2_verified_by_passlib(void **state)
{
	(void)state;
	static const char script[] =
	    "import sys\n"
	    "from passlib.hash import pbkdf2_sha256 as h\n"
	    "a = sys.argv[1:]\n"
	    "for i in range(0, len(a), 2):\n"
	    "    pw = bytes.fromhex(a[i][1:])\n"
	    "    print(h.verify(pw, a[i + 1]), h.verify(pw + b\"!\", a[i + 1]))\n";
	const struct setting rounds[] = {INTEGER("rounds", 29000)};
	void *st = start(pbkdf2, rounds, 1);
	char args[16384], hashes[NPASSWORDS][HASH_MAX], *save = NULL;
	size_t n = 0, lines = 0;
	for (size_t i = 0; i < NPASSWORDS; i++) {
		assert_int_equal(
		    pbkdf2->hash(st, passwords[i].s, passwords[i].len, hashes[i], HASH_MAX), 0);
		assert_true(strncmp(hashes[i], PBKDF2_PREFIX "29000$", 21) == 0);
		assert_int_equal(pbkdf2->verify(st, passwords[i].s, passwords[i].len, hashes[i]),
				 1);
		assert_false(pbkdf2->needs_rehash(st, hashes[i]));
		n = add_password_arg(args, n, sizeof(args), &passwords[i]);
		n += (size_t)snprintf(args + n, sizeof(args) - n, " '%s'", hashes[i]);
		assert_true(n < sizeof(args));
	}
	/* A fresh salt each time. */
	assert_string_not_equal(hashes[1], hashes[2]);
	char again[HASH_MAX];
	assert_int_equal(pbkdf2->hash(st, passwords[1].s, passwords[1].len, again, HASH_MAX), 0);
	assert_string_not_equal(again, hashes[1]);

	char *out = python(script, args);
	for (char *line = strtok_r(out, "\n", &save); line != NULL;
	     line = strtok_r(NULL, "\n", &save)) {
		assert_true(lines < NPASSWORDS);
		if (strcmp(line, "True False") != 0)
			fail_msg("passlib on %s: %s", hashes[lines], line);
		lines++;
	}
	free(out);
	assert_int_equal(lines, NPASSWORDS);
	pbkdf2->fini(st);
}

static void test_pbkdf2_malformed(void **state)
{
	(void)state;
	/* A salt of 0xfb 0xef 0xbe bytes is "...." in ab64: room to put a '+' in. */
	static const char script[] =
	    "from passlib.hash import pbkdf2_sha256 as h\n"
	    "print(h.using(rounds=1000, salt=bytes([0xfb, 0xef, 0xbe] * 5 + [0xfb]))"
	    ".hash(b\"password\"), end=\"\")\n";
	const struct setting rounds[] = {INTEGER("rounds", 29000)};
	void *st = start(pbkdf2, rounds, 1);
	char *good = python(script, "");
	char salt[64], sum[64], bad[8192], big[2001];
	field(good, 3, salt, sizeof(salt));
	field(good, 4, sum, sizeof(sum));
	assert_int_equal(strlen(sum), 43);
	assert_non_null(strchr(salt, '.'));
	assert_verifies(pbkdf2, st, "password", good);

	const char *fixed[] = {
	    "$",
	    "$pbkdf2-sha256",
	    PBKDF2_PREFIX,
	    PBKDF2_PREFIX "1000",
	    PBKDF2_PREFIX "1000$",
	    PBKDF2_PREFIX "1000$$",
	    "$pbkdf2-sha512$1000$",
	};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
		assert_rejected(pbkdf2, st, "password", fixed[i]);
		assert_true(pbkdf2->needs_rehash(st, fixed[i]));
	}

	/* Rounds that passlib refuses too: zero, zero-padded, signed, spaced, not a number. */
	const char *rounds_fields[] = {
	    "0",	  "00",	   "01000", "-1000", "+1000",
	    " 1000",	  "1000x", "abc",   "",	     "99999999999999999999",
	    "4294968296", /* 1000 more than 2^32 */
	};
	for (size_t i = 0; i < sizeof(rounds_fields) / sizeof(rounds_fields[0]); i++) {
		with_rounds(good, rounds_fields[i], bad, sizeof(bad));
		assert_rejected(pbkdf2, st, "password", bad);
		assert_true(pbkdf2->needs_rehash(st, bad));
	}

	char sum42[43], sum40[41];
	head(sum42, sum, 42);
	head(sum40, sum, 40);
	const struct shape shapes[] = {
	    {PBKDF2_PREFIX "1000$", salt, "$", sum42, ""},   /* checksum one character short */
	    {PBKDF2_PREFIX "1000$", salt, "$", sum40, ""},   /* four short: 30 bytes */
	    {PBKDF2_PREFIX "1000$", salt, "$", sum, "AAAA"}, /* 35 bytes */
	    {PBKDF2_PREFIX "1000$", salt, "$", "", ""},	     /* no checksum */
	    {PBKDF2_PREFIX "1000$", salt, "", "", ""},	     /* no checksum field */
	    {PBKDF2_PREFIX "1000$", salt, "$", sum, "$"},    /* an empty fifth field */
	    {PBKDF2_PREFIX "1000$", salt, "$", sum, "$extra"},
	    {PBKDF2_PREFIX "1000$", salt, "$", sum, "="}, /* padding */
	    {PBKDF2_PREFIX "1000$", salt, "=$", sum, ""},
	    {PBKDF2_PREFIX "1000$", salt, "*$", sum, ""}, /* not ab64 */
	    {PBKDF2_PREFIX "1000$", salt, "$ ", sum, ""},
	    {PBKDF2_PREFIX "1000$", "", "$", salt, sum}, /* salt moved into the checksum */
	    {PBKDF2_PREFIX "1001$", salt, "$", sum, ""}, /* well formed, but not this hash */
	};
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		build(&shapes[i], bad, sizeof(bad));
		assert_rejected(pbkdf2, st, "password", bad);
	}

	/* One character changed late in the checksum, and early in the salt. */
	char other[64];
	strcpy(other, sum);
	other[40] = other[40] == 'A' ? 'B' : 'A';
	snprintf(bad, sizeof(bad), PBKDF2_PREFIX "1000$%s$%s", salt, other);
	assert_rejected(pbkdf2, st, "password", bad);
	strcpy(other, salt);
	other[1] = 'A';
	snprintf(bad, sizeof(bad), PBKDF2_PREFIX "1000$%s$%s", other, sum);
	assert_rejected(pbkdf2, st, "password", bad);

	/* passlib writes '.' where base64 has '+': a '+' is not its ab64. */
	char plus[64];
	strcpy(plus, salt);
	*strchr(plus, '.') = '+';
	snprintf(bad, sizeof(bad), PBKDF2_PREFIX "1000$%s$%s", plus, sum);
	assert_rejected(pbkdf2, st, "password", bad);
	assert_true(pbkdf2->needs_rehash(st, bad));

	/* A salt far longer than passlib's 1024 bytes, and one past the decoding buffer. */
	memset(big, 'A', 2000);
	big[2000] = '\0';
	snprintf(bad, sizeof(bad), PBKDF2_PREFIX "1000$%s$%s", big, sum);
	assert_rejected(pbkdf2, st, "password", bad);
	assert_true(pbkdf2->needs_rehash(st, bad));
	snprintf(bad, sizeof(bad), PBKDF2_PREFIX "1000$%s%s%s$%s", big, big, big, sum);
	assert_rejected(pbkdf2, st, "password", bad);
	snprintf(bad, sizeof(bad), PBKDF2_PREFIX "1000$%s$%s", salt, big);
	assert_rejected(pbkdf2, st, "password", bad);

	/* The good hash still verifies after all that. */
	assert_verifies(pbkdf2, st, "password", good);
	free(good);
	pbkdf2->fini(st);
}

static void test_pbkdf2_identify(void **state)
{
	(void)state;
	void *st = start(pbkdf2, NULL, 0);
	assert_true(pbkdf2->identify(st, PBKDF2_PREFIX "29000$c2FsdA$x"));
	assert_true(pbkdf2->identify(st, PBKDF2_PREFIX));
	assert_false(pbkdf2->identify(st, "$pbkdf2-sha256"));
	assert_false(pbkdf2->identify(st, "pbkdf2-sha256$29000$c2FsdA$x"));
	assert_false(pbkdf2->identify(st, "$pbkdf2$29000$c2FsdA$x"));
	assert_false(pbkdf2->identify(st, "$pbkdf2-sha512$29000$c2FsdA$x"));
	assert_false(pbkdf2->identify(st, "$PBKDF2-SHA256$29000$c2FsdA$x"));
	assert_false(pbkdf2->identify(st, ARGON2ID_DEFAULT "c2FsdHNhbHQ$x"));
	assert_false(pbkdf2->identify(st, ""));
	pbkdf2->fini(st);
}

static void test_pbkdf2_needs_rehash(void **state)
{
	(void)state;
	const struct setting r29000[] = {INTEGER("rounds", 29000)};
	const struct setting r30000[] = {INTEGER("rounds", 30000)};
	void *lo = start(pbkdf2, r29000, 1), *hi = start(pbkdf2, r30000, 1);
	void *dflt = start(pbkdf2, NULL, 0);
	char stored[HASH_MAX], other[HASH_MAX];
	assert_int_equal(pbkdf2->hash(lo, "pw", 2, stored, sizeof(stored)), 0);
	assert_false(pbkdf2->needs_rehash(lo, stored));
	assert_true(pbkdf2->needs_rehash(hi, stored));
	assert_true(pbkdf2->needs_rehash(dflt, stored));
	/* The default is OWASP's 600000 rounds: read off needs_rehash, not timed. */
	with_rounds(stored, "599999", other, sizeof(other));
	assert_true(pbkdf2->needs_rehash(dflt, other));
	with_rounds(stored, "600000", other, sizeof(other));
	assert_false(pbkdf2->needs_rehash(dflt, other));
	with_rounds(stored, "1000000", other, sizeof(other));
	assert_false(pbkdf2->needs_rehash(dflt, other));
	assert_false(pbkdf2->needs_rehash(lo, other));
	pbkdf2->fini(lo);
	pbkdf2->fini(hi);
	pbkdf2->fini(dflt);
}

static void test_pbkdf2_init_limits(void **state)
{
	(void)state;
	const struct setting low[] = {INTEGER("rounds", 28999)};
	const struct setting zero[] = {INTEGER("rounds", 0)};
	const struct setting negative[] = {INTEGER("rounds", -29000)};
	const struct setting huge[] = {INTEGER("rounds", 100000001)};
	const struct setting text[] = {STRING("rounds", "29000")};
	const struct setting ok[] = {INTEGER("rounds", 29000)};
	assert_true(refuses(pbkdf2, low));
	assert_true(refuses(pbkdf2, zero));
	assert_true(refuses(pbkdf2, negative));
	assert_true(refuses(pbkdf2, huge));
	assert_true(refuses(pbkdf2, text));
	assert_false(refuses(pbkdf2, ok));
}

/* Seconds on the monotonic clock. */
static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * stored is refused at once (a real run would take minutes or more), with a warning that
 * names want and never the stored string's salt or checksum.
 */
static void assert_refused_cost(const struct sesame_hasher *h, void *st, const char *stored,
				const char *want, const char *secret)
{
	forget_warning();
	double started = now();
	assert_int_equal(h->verify(st, "pw", 2, stored), 0);
	if (now() - started > 2.0)
		fail_msg("%s: refusing %s took %.1f s", h->header.name, stored, now() - started);
	if (strstr(last_warning, want) == NULL)
		fail_msg("%s: no warning naming '%s' for %s (got '%s')", h->header.name, want,
			 stored, last_warning);
	assert_null(strstr(last_warning, secret));
	assert_true(h->needs_rehash(st, stored));
}

static void test_pbkdf2_cost_limit(void **state)
{
	(void)state;
	const struct setting r29000[] = {INTEGER("rounds", 29000)};
	const struct setting r500000[] = {INTEGER("rounds", 500000)};
	void *lo = start(pbkdf2, r29000, 1), *hi = start(pbkdf2, r500000, 1);
	void *dflt = start(pbkdf2, NULL, 0);
	char stored[HASH_MAX], other[HASH_MAX], salt[64];
	assert_int_equal(pbkdf2->hash(lo, "pw", 2, stored, sizeof(stored)), 0);
	field(stored, 3, salt, sizeof(salt));

	/* Two billion rounds: the most parse() reads, hours of work. */
	with_rounds(stored, "2000000000", other, sizeof(other));
	assert_refused_cost(pbkdf2, dflt, other, "rounds 2000000000", salt);
	assert_refused_cost(pbkdf2, lo, other, "rounds 2000000000", salt);
	assert_string_equal(strstr(last_warning, "limit of "), "limit of 1000000");

	/* Four times the configured rounds, never under a million. */
	with_rounds(stored, "2400000", other, sizeof(other));
	assert_false(pbkdf2->needs_rehash(dflt, other));
	with_rounds(stored, "2400001", other, sizeof(other));
	assert_refused_cost(pbkdf2, dflt, other, "rounds 2400001", salt);
	with_rounds(stored, "2000000", other, sizeof(other));
	assert_false(pbkdf2->needs_rehash(hi, other));
	with_rounds(stored, "2000001", other, sizeof(other));
	assert_refused_cost(pbkdf2, hi, other, "rounds 2000001", salt);
	with_rounds(stored, "1000001", other, sizeof(other));
	assert_refused_cost(pbkdf2, lo, other, "rounds 1000001", salt);

	/* passlib's default rounds, and a hash at the limit, still verify everywhere. */
	assert_verifies(pbkdf2, dflt, "pw", stored);
	assert_verifies(pbkdf2, hi, "pw", stored);
	assert_int_equal(pbkdf2->hash(hi, "pw", 2, other, sizeof(other)), 0);
	assert_verifies(pbkdf2, lo, "pw", other);
	pbkdf2->fini(lo);
	pbkdf2->fini(hi);
	pbkdf2->fini(dflt);
}

static void test_pbkdf2_threads(void **state)
{
	(void)state;
	const struct setting rounds[] = {INTEGER("rounds", 29000)};
	void *st = start(pbkdf2, rounds, 1);
	run_threads(pbkdf2, st, 3);
	pbkdf2->fini(st);
}

/* ---- argon2id ---- */

static void test_argon2id_round_trip(void **state)
{
	(void)state;
	void *st = start(argon2id, NULL, 0);
	char stored[HASH_MAX], again[HASH_MAX];
	assert_int_equal(argon2id->hash(st, "correct horse", 13, stored, sizeof(stored)), 0);
	assert_true(strncmp(stored, ARGON2ID_DEFAULT, strlen(ARGON2ID_DEFAULT)) == 0);
	assert_verifies(argon2id, st, "correct horse", stored);
	assert_rejected(argon2id, st, "correct horsf", stored);
	assert_rejected(argon2id, st, "correct hors", stored);
	assert_rejected(argon2id, st, "correct horse ", stored);
	assert_rejected(argon2id, st, "", stored);
	assert_int_equal(argon2id->hash(st, "correct horse", 13, again, sizeof(again)), 0);
	assert_string_not_equal(stored, again);
	assert_verifies(argon2id, st, "correct horse", again);

	/* The length is the password's, NULs and all. */
	assert_int_equal(argon2id->hash(st, "nul\0inside", 10, stored, sizeof(stored)), 0);
	assert_int_equal(argon2id->verify(st, "nul\0inside", 10, stored), 1);
	assert_int_equal(argon2id->verify(st, "nul\0outside", 10, stored), 0);
	assert_int_equal(argon2id->verify(st, "nul", 3, stored), 0);

	assert_int_equal(argon2id->hash(st, "", 0, stored, sizeof(stored)), 0);
	assert_int_equal(argon2id->verify(st, "", 0, stored), 1);
	assert_int_equal(argon2id->verify(st, "\0", 1, stored), 0);
	argon2id->fini(st);
}

static void test_argon2id_identify(void **state)
{
	(void)state;
	void *st = start(argon2id, NULL, 0);
	char stored[HASH_MAX], argon2i[crypto_pwhash_STRBYTES];
	assert_int_equal(argon2id->hash(st, "pw", 2, stored, sizeof(stored)), 0);
	assert_true(argon2id->identify(st, stored));
	assert_true(argon2id->identify(st, "$argon2id$"));
	assert_int_equal(
	    crypto_pwhash_str_alg(argon2i, "pw", 2, 3, 8192 * 1024, crypto_pwhash_ALG_ARGON2I13),
	    0);
	assert_false(argon2id->identify(st, argon2i));
	assert_int_equal(argon2id->verify(st, "pw", 2, argon2i), 0);
	assert_false(argon2id->identify(st, "$argon2d$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$x"));
	assert_false(argon2id->identify(st, "$argon2id"));
	assert_false(argon2id->identify(st, "argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$x"));
	assert_false(argon2id->identify(st, "$ARGON2ID$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$x"));
	assert_false(argon2id->identify(st, PBKDF2_PREFIX "29000$c2FsdA$x"));
	assert_false(argon2id->identify(st, ""));
	argon2id->fini(st);
}

static void test_argon2id_needs_rehash(void **state)
{
	(void)state;
	const struct setting more_memory[] = {INTEGER("memory", 32768)};
	const struct setting more_time[] = {INTEGER("iterations", 3)};
	void *dflt = start(argon2id, NULL, 0);
	void *mem = start(argon2id, more_memory, 1), *slow = start(argon2id, more_time, 1);
	char stored[HASH_MAX], stronger[HASH_MAX], weak[crypto_pwhash_STRBYTES];
	assert_int_equal(argon2id->hash(dflt, "pw", 2, stored, sizeof(stored)), 0);
	assert_false(argon2id->needs_rehash(dflt, stored));
	assert_true(argon2id->needs_rehash(mem, stored));
	assert_true(argon2id->needs_rehash(slow, stored));

	assert_int_equal(argon2id->hash(mem, "pw", 2, stronger, sizeof(stronger)), 0);
	assert_true(strncmp(stronger, "$argon2id$v=19$m=32768,t=2,p=1$", 31) == 0);
	assert_false(argon2id->needs_rehash(mem, stronger));
	assert_false(argon2id->needs_rehash(dflt, stronger));
	assert_true(argon2id->needs_rehash(slow, stronger));
	assert_verifies(argon2id, dflt, "pw", stronger);

	/* Weaker than the floor, made elsewhere: still verifies, and wants a rehash. */
	assert_int_equal(
	    crypto_pwhash_str_alg(weak, "pw", 2, 1, 8192 * 1024, crypto_pwhash_ALG_ARGON2ID13), 0);
	assert_verifies(argon2id, dflt, "pw", weak);
	assert_true(argon2id->needs_rehash(dflt, weak));

	const char *malformed[] = {
	    "",
	    "garbage",
	    "$argon2id$",
	    "$argon2id$v=19$",
	    "$argon2id$v=19$m=abc,t=2,p=1$c2FsdHNhbHQ$x",
	    "$argon2id$m=65536,t=3,p=1$c2FsdHNhbHQ$x", /* before version 19 had v= */
	    "$argon2id$v=16$m=65536,t=3,p=1$c2FsdHNhbHQ$x",
	    "$argon2i$v=19$m=65536,t=3,p=1$c2FsdHNhbHQ$x",
	};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		if (!argon2id->needs_rehash(dflt, malformed[i]))
			fail_msg("'%s' needs no rehash", malformed[i]);
	}
	argon2id->fini(dflt);
	argon2id->fini(mem);
	argon2id->fini(slow);
}

/*
 * Strings whose parameters read well but which are not argon2id hashes: they cannot have
 * been made with the configured parameters, so they need a rehash like any malformed one.
 */
static void test_argon2id_needs_rehash_partial(void **state)
{
	(void)state;
	void *st = start(argon2id, NULL, 0);
	const char *malformed[] = {
	    "$argon2id$v=19$m=65536,t=3,p=1",
	    "$argon2id$v=19$m=65536,t=3,p=1$",
	    "$argon2id$v=19$m=-1,t=3,p=1$c2FsdHNhbHQ$x",
	    "$argon2id$v=19$m=65536,t=-1,p=1$c2FsdHNhbHQ$x",
	};
	const char *wrong = NULL;
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		assert_int_equal(argon2id->verify(st, "pw", 2, malformed[i]), 0);
		if (!argon2id->needs_rehash(st, malformed[i]) && wrong == NULL)
			wrong = malformed[i];
	}
	argon2id->fini(st);
	if (wrong != NULL)
		fail_msg("'%s' needs no rehash", wrong);
}

static void test_argon2id_init_limits(void **state)
{
	(void)state;
	const struct setting little_memory[] = {INTEGER("memory", 19455)};
	const struct setting one_pass[] = {INTEGER("iterations", 1)};
	const struct setting no_pass[] = {INTEGER("iterations", 0)};
	const struct setting too_much_memory[] = {INTEGER("memory", (4LL << 20) + 1)};
	const struct setting too_many_passes[] = {INTEGER("iterations", 1001)};
	const struct setting memory_text[] = {STRING("memory", "64MiB")};
	const struct setting floor_memory[] = {INTEGER("memory", 19456)};
	const struct setting floor_passes[] = {INTEGER("iterations", 2)};
	assert_true(refuses(argon2id, little_memory));
	assert_true(refuses(argon2id, one_pass));
	assert_true(refuses(argon2id, no_pass));
	assert_true(refuses(argon2id, too_much_memory));
	assert_true(refuses(argon2id, too_many_passes));
	assert_true(refuses(argon2id, memory_text));
	assert_false(refuses(argon2id, floor_memory));
	assert_false(refuses(argon2id, floor_passes));
}

static void test_argon2id_malformed(void **state)
{
	(void)state;
	void *st = start(argon2id, NULL, 0);
	char stored[HASH_MAX], salt[64], sum[64], bad[1024], big[300];
	assert_int_equal(argon2id->hash(st, "pw", 2, stored, sizeof(stored)), 0);
	field(stored, 4, salt, sizeof(salt));
	field(stored, 5, sum, sizeof(sum));
	assert_int_equal(strlen(salt), 22);
	assert_int_equal(strlen(sum), 43);
	memset(big, 'A', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';

	char sum42[43], sum20[21], salt8[9];
	head(sum42, sum, 42);
	head(sum20, sum, 20);
	head(salt8, salt, 8);
	const struct shape shapes[] = {
	    {ARGON2ID_DEFAULT, salt, "$", sum42, ""}, /* hash one character short */
	    {ARGON2ID_DEFAULT, salt, "$", sum20, ""}, /* 15 bytes: under argon2's minimum */
	    {ARGON2ID_DEFAULT, salt, "$", "", ""},
	    {ARGON2ID_DEFAULT, salt, "", "", ""},
	    {ARGON2ID_DEFAULT, "", "$", sum, ""},
	    {ARGON2ID_DEFAULT, salt8, "$", sum, ""}, /* 6-byte salt: under argon2's minimum */
	    {ARGON2ID_DEFAULT, salt, "$", sum, "$"},
	    {ARGON2ID_DEFAULT, salt, "$", sum, "="},
	    {ARGON2ID_DEFAULT, salt, "$", sum, "*"},
	    {ARGON2ID_DEFAULT, salt, "*$", sum, ""},
	    {"$argon2id$v=19$m=19456,t=2,p=0$", salt, "$", sum, ""},
	    {"$argon2id$v=19$m=19456,t=0,p=1$", salt, "$", sum, ""},
	    {"$argon2id$v=19$m=0,t=2,p=1$", salt, "$", sum, ""},
	    {"$argon2id$v=19$m=19456,t=2$", salt, "$", sum, ""},
	    {"$argon2id$v=18$m=19456,t=2,p=1$", salt, "$", sum, ""},
	    {"$argon2id$v=19$m=19456,t=3,p=1$", salt, "$", sum, ""}, /* not this hash */
	    {"$argon2i$v=19$m=19456,t=2,p=1$", salt, "$", sum, ""},
	    {"$argon2d$v=19$m=19456,t=2,p=1$", salt, "$", sum, ""},
	};
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		build(&shapes[i], bad, sizeof(bad));
		assert_rejected(argon2id, st, "pw", bad);
	}
	const char *fixed[] = {"$", "$argon2id$", "$argon2id$v=19$", ARGON2ID_DEFAULT,
			       ARGON2ID_DEFAULT "$"};
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		assert_rejected(argon2id, st, "pw", fixed[i]);

	/* Too long for any argon2id string libsodium writes. */
	snprintf(bad, sizeof(bad), ARGON2ID_DEFAULT "%s$%s", big, sum);
	assert_rejected(argon2id, st, "pw", bad);
	snprintf(bad, sizeof(bad), "%s%s", stored, big);
	assert_rejected(argon2id, st, "pw", bad);

	/* A changed character in the salt or the hash. */
	snprintf(bad, sizeof(bad), "%s", stored);
	char *s = bad + strlen(ARGON2ID_DEFAULT);
	*s = *s == 'A' ? 'B' : 'A';
	assert_rejected(argon2id, st, "pw", bad);
	snprintf(bad, sizeof(bad), "%s", stored);
	s = bad + strlen(bad) - 5;
	*s = *s == 'A' ? 'B' : 'A';
	assert_rejected(argon2id, st, "pw", bad);

	assert_verifies(argon2id, st, "pw", stored);
	argon2id->fini(st);
}

static void test_argon2id_libsodium(void **state)
{
	(void)state;
	void *st = start(argon2id, NULL, 0);
	char theirs[crypto_pwhash_STRBYTES], ours[HASH_MAX];
	const char pw[] = "p\xc3\xa4ssw\xc3\xb6rd \xe2\x98\x83";
	assert_int_equal(crypto_pwhash_str_alg(theirs, pw, strlen(pw), 3, 32768 * 1024,
					       crypto_pwhash_ALG_ARGON2ID13),
			 0);
	assert_true(strncmp(theirs, "$argon2id$v=19$m=32768,t=3,p=1$", 31) == 0);
	assert_true(argon2id->identify(st, theirs));
	assert_verifies(argon2id, st, pw, theirs);
	assert_rejected(argon2id, st, "p\xc3\xa4ssw\xc3\xb6rd", theirs);
	assert_false(argon2id->needs_rehash(st, theirs));

	assert_int_equal(argon2id->hash(st, pw, strlen(pw), ours, sizeof(ours)), 0);
	assert_int_equal(crypto_pwhash_str_verify(ours, pw, strlen(pw)), 0);
	assert_int_equal(crypto_pwhash_str_verify(ours, pw, strlen(pw) - 1), -1);
	assert_int_equal(crypto_pwhash_str_needs_rehash(ours, 2, 19456 * 1024), 0);
	argon2id->fini(st);
}

/* stored with its "m=M,t=T,p=P" replaced by params. */
static void with_params(const char *stored, const char *params, char *out, size_t outlen)
{
	const char *rest = strchr(stored + strlen("$argon2id$v=19$"), '$');
	assert_non_null(rest);
	assert_true((size_t)snprintf(out, outlen, "$argon2id$v=19$%s%s", params, rest) < outlen);
}

static void test_argon2id_cost_limit(void **state)
{
	(void)state;
	const struct setting more_memory[] = {INTEGER("memory", 65536)};
	void *dflt = start(argon2id, NULL, 0), *mem = start(argon2id, more_memory, 1);
	char stored[HASH_MAX], other[HASH_MAX], salt[64], theirs[crypto_pwhash_STRBYTES];
	assert_int_equal(argon2id->hash(dflt, "pw", 2, stored, sizeof(stored)), 0);
	field(stored, 4, salt, sizeof(salt));

	/* 4 GiB, a million passes, a thousand lanes, then just past each limit: 4 times the
	 * configured memory and passes, never under 100 MiB and 10; 8 lanes. None is run. */
	const struct {
		void *st;
		const char *params, *want;
	} refused[] = {
	    {dflt, "m=4194304,t=2,p=1", "memory is over the limit (m=4194304 KiB"},
	    {dflt, "m=19456,t=1000000,p=1", "iterations"},
	    {dflt, "m=19456,t=2,p=1000", "parallelism"},
	    {dflt, "m=18446744073709551615,t=2,p=1", "memory"},
	    {dflt, "m=102401,t=2,p=1", "memory"},
	    {dflt, "m=19456,t=11,p=1", "iterations"},
	    {dflt, "m=19456,t=2,p=9", "parallelism"},
	    {mem, "m=262145,t=2,p=1", "memory"},
	};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		with_params(stored, refused[i].params, other, sizeof(other));
		assert_refused_cost(argon2id, refused[i].st, other, refused[i].want, salt);
	}
	with_params(stored, "m=102400,t=10,p=8", other, sizeof(other));
	assert_false(argon2id->needs_rehash(dflt, other));
	with_params(stored, "m=262144,t=2,p=1", other, sizeof(other));
	assert_false(argon2id->needs_rehash(mem, other));

	/* Without "v=", libsodium would read the cost; sesame does not, and runs nothing. */
	forget_warning();
	snprintf(other, sizeof(other), "$argon2id$m=4194304,t=2,p=1%s",
		 strchr(stored + strlen("$argon2id$v=19$"), '$'));
	assert_int_equal(argon2id->verify(dflt, "pw", 2, other), 0);
	assert_true(argon2id->needs_rehash(dflt, other));

	/* The libraries' usual settings, dearer than configured, verify. */
	assert_int_equal(
	    crypto_pwhash_str_alg(theirs, "pw", 2, 3, 65536 * 1024, crypto_pwhash_ALG_ARGON2ID13),
	    0);
	assert_verifies(argon2id, dflt, "pw", theirs);
	assert_false(argon2id->needs_rehash(dflt, theirs));
	assert_verifies(argon2id, dflt, "pw", stored);
	argon2id->fini(dflt);
	argon2id->fini(mem);
}

static void test_argon2id_threads(void **state)
{
	(void)state;
	void *st = start(argon2id, NULL, 0);
	run_threads(argon2id, st, 2);
	argon2id->fini(st);
}

/* ---- the run ---- */

static int load_plugins(void **state)
{
	(void)state;
	fill_passwords();
	if (sodium_init() < 0)
		return -1;
	urandom_fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
	pbkdf2 = load("pbkdf2_sha256", &pbkdf2_handle);
	argon2id = load("argon2id", &argon2id_handle);
	return urandom_fd >= 0 && pbkdf2 != NULL && argon2id != NULL ? 0 : -1;
}

static int unload_plugins(void **state)
{
	(void)state;
	if (pbkdf2_handle != NULL)
		dlclose(pbkdf2_handle);
	if (argon2id_handle != NULL)
		dlclose(argon2id_handle);
	if (urandom_fd >= 0)
		close(urandom_fd);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_headers),
	    cmocka_unit_test(test_short_buffer),
	    cmocka_unit_test(test_empty_stored),
	    cmocka_unit_test(test_pbkdf2_passlib_vectors),
	    cmocka_unit_test(test_pbkdf2_verified_by_passlib),
	    cmocka_unit_test(test_pbkdf2_malformed),
	    cmocka_unit_test(test_pbkdf2_identify),
	    cmocka_unit_test(test_pbkdf2_needs_rehash),
	    cmocka_unit_test(test_pbkdf2_init_limits),
	    cmocka_unit_test(test_pbkdf2_cost_limit),
	    cmocka_unit_test(test_pbkdf2_threads),
	    cmocka_unit_test(test_argon2id_round_trip),
	    cmocka_unit_test(test_argon2id_identify),
	    cmocka_unit_test(test_argon2id_needs_rehash),
	    cmocka_unit_test(test_argon2id_needs_rehash_partial),
	    cmocka_unit_test(test_argon2id_init_limits),
	    cmocka_unit_test(test_argon2id_malformed),
	    cmocka_unit_test(test_argon2id_libsodium),
	    cmocka_unit_test(test_argon2id_cost_limit),
	    cmocka_unit_test(test_argon2id_threads),
	};
	return cmocka_run_group_tests_name("hashers", tests, load_plugins, unload_plugins);
}
