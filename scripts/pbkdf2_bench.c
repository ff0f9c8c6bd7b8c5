/*
 * pbkdf2_bench.c: times the pbkdf2_sha256 hasher against OpenSSL's PKCS5_PBKDF2_HMAC, for
 * scripts/bench.
 *
 *   cc -O2 -I"$top/daemon" -o pbkdf2_bench scripts/pbkdf2_bench.c -ldl -lcrypto
 *   pbkdf2_bench PLUGIN.so ROUNDS COUNT
 *
 * Loads the plugin with dlopen, configured with ROUNDS, then COUNT times hashes one password
 * through the plugin's hash (as sesamed's job threads do) and derives the same password with
 * the salt read back from that hash through OpenSSL, the two turns alternating so that the
 * machine's load weighs on both alike. Every OpenSSL result must equal the hash's checksum
 * (else exit 1, naming the round). Prints "SESAME_MS OPENSSL_MS", the mean milliseconds of
 * one hash each.
 */
#include <sesame/plugin.h>

#include <dlfcn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PASSWORD "correct horse battery staple"
#define PREFIX	 "$pbkdf2-sha256$"

struct sesame_config {
	long long rounds;
};

static void host_log(const struct sesame_host *host, enum sesame_log_level level, const char *fmt,
		     ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void config_error(struct sesame_config *cfg, const char *key, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "%s: ", key);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static enum sesame_config_result config_integer(struct sesame_config *cfg, const char *key,
						long long min, long long max, long long *out)
{
	if (strcmp(key, "rounds") != 0)
		return SESAME_CONFIG_ABSENT;
	if (cfg->rounds < min || cfg->rounds > max) {
		config_error(cfg, key, "%lld is out of range (%lld to %lld)", cfg->rounds, min,
			     max);
		return SESAME_CONFIG_WRONG;
	}
	*out = cfg->rounds;
	return SESAME_CONFIG_OK;
}

static enum sesame_config_result config_string(struct sesame_config *cfg, const char *key,
					       const char **out)
{
	return SESAME_CONFIG_ABSENT;
}

static enum sesame_config_result config_boolean(struct sesame_config *cfg, const char *key,
						bool *out)
{
	return SESAME_CONFIG_ABSENT;
}

static void random_bytes(void *buf, size_t len)
{
	FILE *f = fopen("/dev/urandom", "rb");
	if (f == NULL || fread(buf, 1, len, f) != len)
		abort();
	fclose(f);
}

static int memcmp_secret(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len);
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* passlib's ab64 (base64 with '.' for '+', unpadded) of len chars; the bytes, or -1. */
static int ab64_decode(const char *text, size_t len, unsigned char *out, size_t max)
{
	char buf[128];
	size_t padded = (len + 3) / 4 * 4;
	if (padded >= sizeof(buf) || padded / 4 * 3 > max)
		return -1;
	for (size_t i = 0; i < padded; i++)
		buf[i] = i >= len ? '=' : text[i] == '.' ? '+' : text[i];
	int n = EVP_DecodeBlock(out, (const unsigned char *)buf, (int)padded);
	return n < 0 ? -1 : n - (int)(padded - len);
}

/* Splits "$pbkdf2-sha256$ROUNDS$SALT$CHECKSUM"; 0, or -1 when it is not that. */
static int split(const char *stored, unsigned char *salt, int *saltlen, unsigned char *sum)
{
	const char *s = strncmp(stored, PREFIX, strlen(PREFIX)) == 0
			    ? strchr(stored + strlen(PREFIX), '$')
			    : NULL;
	const char *c = s != NULL ? strchr(s + 1, '$') : NULL;
	if (c == NULL)
		return -1;
	*saltlen = ab64_decode(s + 1, (size_t)(c - s - 1), salt, 64);
	return *saltlen < 0 || ab64_decode(c + 1, strlen(c + 1), sum, 33) != 32 ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct sesame_host host = {.size = sizeof(host),
				   .abi_major = SESAME_PLUGIN_ABI_MAJOR,
				   .abi_minor = SESAME_PLUGIN_ABI_MINOR,
				   .log = host_log,
				   .config_string = config_string,
				   .config_integer = config_integer,
				   .config_boolean = config_boolean,
				   .config_error = config_error,
				   .random = random_bytes,
				   .memcmp_secret = memcmp_secret};
	if (argc != 4 || atoll(argv[2]) <= 0 || atol(argv[3]) <= 0) {
		fprintf(stderr, "usage: pbkdf2_bench PLUGIN.so ROUNDS COUNT\n");
		return 2;
	}
	struct sesame_config cfg = {.rounds = atoll(argv[2])};
	long count = atol(argv[3]);
	void *dl = dlopen(argv[1], RTLD_NOW);
	const struct sesame_hasher *h = dl ? dlsym(dl, SESAME_PLUGIN_SYMBOL) : NULL;
	void *state;
	if (h == NULL) {
		fprintf(stderr, "%s\n", dl ? "no plugin descriptor" : dlerror());
		return 1;
	}
	if (strcmp(h->header.name, "pbkdf2_sha256") != 0 || h->init(&host, &cfg, &state) != 0) {
		fprintf(stderr, "%s: not a pbkdf2_sha256 plugin that accepts %lld rounds\n",
			argv[1], cfg.rounds);
		return 1;
	}
	double sesame = 0, openssl = 0;
	for (long i = 0; i < count; i++) {
		char stored[256];
		unsigned char salt[64], sum[33], got[32];
		int saltlen;
		double t0 = now();
		int rc = h->hash(state, PASSWORD, strlen(PASSWORD), stored, sizeof(stored));
		double t1 = now();
		if (rc != 0 || split(stored, salt, &saltlen, sum) != 0) {
			fprintf(stderr, "round %ld: the plugin wrote no pbkdf2_sha256 hash\n", i);
			return 1;
		}
		double t2 = now();
		if (PKCS5_PBKDF2_HMAC(PASSWORD, (int)strlen(PASSWORD), salt, saltlen,
				      (int)cfg.rounds, EVP_sha256(), sizeof(got), got) != 1 ||
		    memcmp(got, sum, sizeof(got)) != 0) {
			fprintf(stderr, "round %ld: OpenSSL derives another checksum for %s\n", i,
				stored);
			return 1;
		}
		sesame += t1 - t0;
		openssl += now() - t2;
	}
	printf("%.3f %.3f\n", sesame * 1e3 / (double)count, openssl * 1e3 / (double)count);
	h->fini(state);
	dlclose(dl);
	return 0;
}
