/*
 * argon2id.c: the argon2id password scheme, sesame's default, on libsodium.
 *
 * Hashes are PHC strings, "$argon2id$v=19$m=MEMORY,t=ITERATIONS,p=1$SALT$HASH", as every
 * argon2 library reads them. The parameters come from password.argon2id, with OWASP's
 * recommendation as the floor: 19 MiB of memory, 2 iterations, 1 lane (libsodium always uses
 * one). A stored hash made with less memory or fewer iterations than configured needs a rehash.
 *
 * A stored hash names its own cost, and a row written by anyone else could ask for 4 GiB or a
 * million passes: a hash asking for more than MAX_COST_FACTOR times the configured memory or
 * iterations (never less than the floors below, which the argon2 libraries' defaults stay
 * under), or more than MAX_LANES lanes, is refused without being run, and the refusal logged
 * with the parameter.
 */
#include <sesame/plugin.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX	       "$argon2id$"
#define MIN_MEMORY_KIB 19456
#define MIN_ITERATIONS 2

#define MAX_COST_FACTOR	     4
#define MAX_MEMORY_FLOOR     102400 /* KiB: argon2-cffi's former default */
#define MAX_ITERATIONS_FLOOR 10
#define MAX_LANES	     8

struct argon2id {
	unsigned long long memory_kib;
	unsigned long long iterations;
	unsigned long long max_memory_kib, max_iterations; /* the most a stored hash may ask */
	const struct sesame_host *host;
};

static unsigned long long cap(unsigned long long configured, unsigned long long floor)
{
	return configured * MAX_COST_FACTOR > floor ? configured * MAX_COST_FACTOR : floor;
}

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
	enum sesame_config_result rm, rt;
	v = a->memory_kib; /* each key's default before the read, for the list of keys */
	if ((rm = host->config_integer(cfg, "memory", MIN_MEMORY_KIB, 4LL << 20, &v)) ==
	    SESAME_CONFIG_OK)
		a->memory_kib = (unsigned long long)v;
	v = a->iterations;
	if ((rt = host->config_integer(cfg, "iterations", MIN_ITERATIONS, 1000, &v)) ==
	    SESAME_CONFIG_OK)
		a->iterations = (unsigned long long)v;
	if (rm == SESAME_CONFIG_WRONG || rt == SESAME_CONFIG_WRONG) {
		free(a);
		return -1;
	}
	a->max_memory_kib = cap(a->memory_kib, MAX_MEMORY_FLOOR);
	a->max_iterations = cap(a->iterations, MAX_ITERATIONS_FLOOR);
	a->host = host;
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

/* Reads "NAME=DIGITS" at *s; advances past it. */
static bool field(const char **s, const char *name, unsigned long long *out)
{
	size_t len = strlen(name);
	char *end;
	if (strncmp(*s, name, len) != 0 || (*s)[len] != '=' || (*s)[len + 1] < '0' ||
	    (*s)[len + 1] > '9')
		return false;
	*out = strtoull(*s + len + 1, &end, 10);
	*s = end;
	return true;
}

/* The parameters of a well-formed "$argon2id$v=19$m=M,t=T,p=P$SALT$HASH"; false otherwise. */
static bool parameters(const char *stored, unsigned long long *m, unsigned long long *t,
		       unsigned long long *p)
{
	const char *s = stored + strlen(PREFIX);
	unsigned long long v;
	if (!identify(NULL, stored) || !field(&s, "v", &v) || *s++ != '$' || !field(&s, "m", m) ||
	    *s++ != ',' || !field(&s, "t", t) || *s++ != ',' || !field(&s, "p", p) || *s++ != '$' ||
	    v != 19)
		return false;
	const char *dollar = strchr(s, '$');
	return dollar != NULL && dollar > s && dollar[1] != '\0' && strchr(dollar + 1, '$') == NULL;
}

/* The name of the first parameter past its limit, or NULL when the cost is acceptable. */
static const char *over_limit(const struct argon2id *a, unsigned long long m, unsigned long long t,
			      unsigned long long p)
{
	if (m > a->max_memory_kib)
		return "memory";
	if (t > a->max_iterations)
		return "iterations";
	return p > MAX_LANES ? "parallelism" : NULL;
}

static int verify(void *state, const char *password, size_t len, const char *stored)
{
	const struct argon2id *a = state;
	unsigned long long m, t, p;
	/* A string whose cost cannot be read is not run either: libsodium would read more. */
	if (strlen(stored) >= crypto_pwhash_STRBYTES || !parameters(stored, &m, &t, &p))
		return 0;
	const char *over = over_limit(a, m, t, p);
	if (over != NULL) {
		a->host->log(a->host, SESAME_LOG_WARN,
			     "stored hash refused: its %s is over the limit (m=%llu KiB, t=%llu, "
			     "p=%llu; at most m=%llu KiB, t=%llu, p=%d)",
			     over, m, t, p, a->max_memory_kib, a->max_iterations, MAX_LANES);
		return 0;
	}
	return crypto_pwhash_str_verify(stored, password, len) == 0;
}

static bool needs_rehash(void *state, const char *stored)
{
	const struct argon2id *a = state;
	unsigned long long m, t, p;
	if (!parameters(stored, &m, &t, &p))
		return true;
	return m < a->memory_kib || t < a->iterations || over_limit(a, m, t, p) != NULL;
}

SESAME_HASHER_PLUGIN("argon2id", PLUGIN_VERSION, .init = init, .fini = fini, .hash = hash,
		     .verify = verify, .identify = identify, .needs_rehash = needs_rehash);
