/*
 * test_validators.c: unit tests of the validator plugins email, password and username.
 *
 * Each plugin is loaded from the build tree (TEST_PLUGINDIR/NAME.so) with dlopen, as sesamed
 * loads it, and started with a host of the test's own: its configuration is a small table of
 * keys and values given by each test; it records the keys the plugin asked for and the last
 * error the plugin reported. The email validator is compared with python's email_validator
 * (validate_email with check_deliverability=False) on a corpus of tricky addresses, run through
 * /usr/bin/python3 when the test runs; that test is skipped when the library is not installed.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <sesame/plugin.h>

#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PYTHON	   "/usr/bin/python3"
#define CORPUS_MAX 160

/* ---- the test's host ---- */

enum kv_type { KV_STRING, KV_INTEGER, KV_BOOLEAN };

/* One key of a plugin's configuration table; a table ends with a NULL key. */
struct kv {
	const char *key;
	enum kv_type type;
	const char *s;
	long long i;
	bool b;
};

#define STR(k, v)                                                                                  \
	{                                                                                          \
		.key = (k), .type = KV_STRING, .s = (v)                                            \
	}
#define INT(k, v)                                                                                  \
	{                                                                                          \
		.key = (k), .type = KV_INTEGER, .i = (v)                                           \
	}
#define BOOL(k, v)                                                                                 \
	{                                                                                          \
		.key = (k), .type = KV_BOOLEAN, .b = (v)                                           \
	}

struct sesame_config {
	const struct kv *kv;
	const char *asked[16];
	size_t nasked;
	char error_key[64];
	char error[256];
};

static char last_log[1024]; /* the plugin's last log line */

static void host_log(const struct sesame_host *host, enum sesame_log_level level, const char *fmt,
		     ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(last_log, sizeof(last_log), fmt, ap);
	va_end(ap);
	fprintf(stderr, "plugin log %d: %s\n", (int)level, last_log);
}

static void host_config_error(struct sesame_config *cfg, const char *key, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	snprintf(cfg->error_key, sizeof(cfg->error_key), "%s", key);
	vsnprintf(cfg->error, sizeof(cfg->error), fmt, ap);
	va_end(ap);
}

/* Records that key was asked for and finds it: NULL when it is absent. */
static const struct kv *lookup(struct sesame_config *cfg, const char *key)
{
	if (cfg->nasked < sizeof(cfg->asked) / sizeof(cfg->asked[0]))
		cfg->asked[cfg->nasked++] = key;
	for (const struct kv *kv = cfg->kv; kv != NULL && kv->key != NULL; kv++) {
		if (strcmp(kv->key, key) == 0)
			return kv;
	}
	return NULL;
}

static enum sesame_config_result host_config_string(struct sesame_config *cfg, const char *key,
						    const char **out)
{
	const struct kv *kv = lookup(cfg, key);
	if (kv == NULL)
		return SESAME_CONFIG_ABSENT;
	if (kv->type != KV_STRING) {
		host_config_error(cfg, key, "expected a string");
		return SESAME_CONFIG_WRONG;
	}
	*out = kv->s;
	return SESAME_CONFIG_OK;
}

static enum sesame_config_result host_config_integer(struct sesame_config *cfg, const char *key,
						     long long min, long long max, long long *out)
{
	const struct kv *kv = lookup(cfg, key);
	if (kv == NULL)
		return SESAME_CONFIG_ABSENT;
	if (kv->type != KV_INTEGER) {
		host_config_error(cfg, key, "expected a whole number");
		return SESAME_CONFIG_WRONG;
	}
	if (kv->i < min || kv->i > max) {
		host_config_error(cfg, key, "%lld is out of range (%lld to %lld)", kv->i, min, max);
		return SESAME_CONFIG_WRONG;
	}
	*out = kv->i;
	return SESAME_CONFIG_OK;
}

static enum sesame_config_result host_config_boolean(struct sesame_config *cfg, const char *key,
						     bool *out)
{
	const struct kv *kv = lookup(cfg, key);
	if (kv == NULL)
		return SESAME_CONFIG_ABSENT;
	if (kv->type != KV_BOOLEAN) {
		host_config_error(cfg, key, "expected true or false");
		return SESAME_CONFIG_WRONG;
	}
	*out = kv->b;
	return SESAME_CONFIG_OK;
}

static void host_random(void *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		((unsigned char *)buf)[i] = (unsigned char)(i * 131 + 7);
}

static int host_memcmp_secret(const void *a, const void *b, size_t len)
{
	unsigned char d = 0;
	for (size_t i = 0; i < len; i++)
		d |= ((const unsigned char *)a)[i] ^ ((const unsigned char *)b)[i];
	return d;
}

static const struct sesame_host host = {
    .size = sizeof(struct sesame_host),
    .abi_major = SESAME_PLUGIN_ABI_MAJOR,
    .abi_minor = SESAME_PLUGIN_ABI_MINOR,
    .log = host_log,
    .config_string = host_config_string,
    .config_integer = host_config_integer,
    .config_boolean = host_config_boolean,
    .config_error = host_config_error,
    .random = host_random,
    .memcmp_secret = host_memcmp_secret,
};

/* ---- loading and running a validator ---- */

struct validator {
	void *dl;
	const struct sesame_validator *v;
	void *state;
	bool started;
	struct sesame_config cfg;
	char out[1100];
	char msg[256];
};

/* Loads TEST_PLUGINDIR/NAME.so, checks its descriptor and runs init with the table kv. */
static struct validator *load(const char *name, const struct kv *kv)
{
	struct validator *t = calloc(1, sizeof(*t));
	char path[512];
	assert_non_null(t);
	snprintf(path, sizeof(path), "%s/%s.so", TEST_PLUGINDIR, name);
	t->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (t->dl == NULL)
		fail_msg("%s", dlerror());
	t->v = dlsym(t->dl, SESAME_PLUGIN_SYMBOL);
	assert_non_null(t->v);
	assert_int_equal(t->v->header.magic, SESAME_PLUGIN_MAGIC);
	assert_int_equal(t->v->header.abi_major, SESAME_PLUGIN_ABI_MAJOR);
	assert_int_equal(t->v->header.abi_minor, SESAME_PLUGIN_ABI_MINOR);
	assert_int_equal(t->v->header.size, sizeof(struct sesame_validator));
	assert_int_equal(t->v->header.kind, SESAME_PLUGIN_VALIDATOR);
	assert_string_equal(t->v->header.name, name);
	assert_non_null(t->v->init);
	assert_non_null(t->v->fini);
	assert_non_null(t->v->check);
	t->cfg.kv = kv;
	return t;
}

static void unload(struct validator *t)
{
	if (t->started)
		t->v->fini(t->state);
	dlclose(t->dl);
	free(t);
}

/* A started validator: init must succeed. */
static struct validator *start(const char *name, const struct kv *kv)
{
	struct validator *t = load(name, kv);
	if (t->v->init(&host, &t->cfg, &t->state) != 0)
		fail_msg("%s: init failed: %s: %s", name, t->cfg.error_key, t->cfg.error);
	t->started = true;
	return t;
}

/* init must fail, with an error reported on key. */
static void assert_init_fails(const char *name, const struct kv *kv, const char *key)
{
	struct validator *t = load(name, kv);
	assert_int_equal(t->v->init(&host, &t->cfg, &t->state), -1);
	assert_string_equal(t->cfg.error_key, key);
	unload(t);
}

static bool asked(const struct validator *t, const char *key)
{
	for (size_t i = 0; i < t->cfg.nasked; i++) {
		if (strcmp(t->cfg.asked[i], key) == 0)
			return true;
	}
	return false;
}

static int run(struct validator *t, const char *value, size_t len, const char *const *related)
{
	memset(t->out, 'X', sizeof(t->out));
	memset(t->msg, 'X', sizeof(t->msg));
	int rc = t->v->check(t->state, value, len, related, t->out, sizeof(t->out), t->msg,
			     sizeof(t->msg));
	if (rc == 0)
		assert_non_null(memchr(t->msg, '\0', sizeof(t->msg)));
	return rc;
}

/* For literals, which may hold a NUL. */
#define RUN(t, lit) run((t), (lit), sizeof(lit) - 1, NULL)

static void assert_valid(struct validator *t, const char *value, size_t len, const char *want)
{
	int rc = run(t, value, len, NULL);
	if (rc != 1)
		fail_msg("'%.*s' refused (%d): %s", (int)len, value, rc, rc == 0 ? t->msg : "");
	assert_string_equal(t->out, want);
}

static void assert_invalid(struct validator *t, const char *value, size_t len, const char *msg)
{
	int rc = run(t, value, len, NULL);
	if (rc != 0)
		fail_msg("'%.*s' accepted (%d) as '%s'", (int)len, value, rc,
			 rc == 1 ? t->out : "");
	if (msg != NULL)
		assert_string_equal(t->msg, msg);
}

#define VALID(t, lit, want)  assert_valid((t), (lit), sizeof(lit) - 1, (want))
#define INVALID(t, lit, msg) assert_invalid((t), (lit), sizeof(lit) - 1, (msg))

/* A string of k copies of s, then tail; the caller frees it. */
static char *repeat(const char *s, size_t k, const char *tail)
{
	size_t n = strlen(s), tn = strlen(tail);
	char *r = malloc(n * k + tn + 1);
	assert_non_null(r);
	for (size_t i = 0; i < k; i++)
		memcpy(r + i * n, s, n);
	memcpy(r + n * k, tail, tn + 1);
	return r;
}

static char *concat(char *a, char *b)
{
	char *r = malloc(strlen(a) + strlen(b) + 1);
	assert_non_null(r);
	strcpy(r, a);
	strcat(r, b);
	free(a);
	free(b);
	return r;
}

/* ---- email: compared with email_validator ---- */

/*
 * The corpus. differs marks an address on which the plugin deliberately disagrees with
 * email_validator 1.3; the test checks that both verdicts are as documented in email.c.
 */
struct address {
	char *text;
	bool differs;
};

static const char *const corpus_fixed[] = {
    /* valid */
    "simple@example.com",
    "very.common@example.com",
    "x@example.com",
    "user.name+tag+sorting@example.com",
    "disposable.style.email.with+symbol@example.com",
    "other.email-with-hyphen@example.com",
    "example-indeed@strange-example.com",
    "#!$%&'*+-/=?^_`{}|~@example.org",
    "Alice@Example.COM",
    "ALICE@EXAMPLE.COM",
    "user@sub.domain.example.co.uk",
    "user@123.example.com",
    "user@example.c",
    "user@xn--mnchen-3ya.de",
    "user@XN--MNCHEN-3YA.DE",
    "user@MÜNCHEN.de",
    "user@ß.de",
    "user@xn--zca.de",
    "user@xn--55qx5d.cn",
    "用户@例子.广告",
    "अजय@डाटा.भारत",
    "квіточка@пошта.укр",
    "θσερ@εχαμπλε.ψομ",
    "Dörte@Sörensen.example.com",
    "коля@пример.рф",
    "user@ｅｘａｍｐｌｅ．ｃｏｍ",
    "user@例え。テスト",
    "user@l·l.cat",
    "user@͵α.gr",
    "user@א׳.com",
    "user@ア・イ.jp",
    "user@exa\u00admple.com",
    "e\u0301@example.com",
    "☃@example.com",
    "😀@example.com",
    "a\u0301b@example.com",
    "user@arpa.example.com",
    /* invalid */
    "",
    "@",
    "plainaddress",
    "@example.com",
    "user@",
    "a@b@example.com",
    "\"quoted\"@example.com",
    "\"a@b\"@example.com",
    "\"a b\"@example.com",
    "user@[192.168.0.1]",
    "user@[IPv6:2001:db8::1]",
    ".user@example.com",
    "user.@example.com",
    "us..er@example.com",
    "user@.example.com",
    "user@example.com.",
    "user@example..com",
    "user@example。com。",
    "user@-example.com",
    "user@example-.com",
    "user@ex--ample.com",
    "user@example",
    "user@example.123",
    "user@a.b1",
    "user@1.2.3.4",
    "user@localhost",
    "user@mail.local",
    "user@example.test",
    "user@x.invalid",
    "user@foo.onion",
    "user@1.168.192.in-addr.arpa",
    "user name@example.com",
    "user@exa mple.com",
    "user\t@example.com",
    "user@example.com\n",
    " user@example.com",
    "user\x01@example.com",
    "user\x7f@example.com",
    "user@exa_mple.com",
    "user@xn--a.com",
    "user@xn--.com",
    "user@xn--abc-.com",
    "user@a·b.com",
    "user@͵a.com",
    "user@׳א.com",
    "user@a・b.jp",
    "user@٠۰.com",
    "user@💩.la",
    "user@xn--ls8h.la",
    "user@⒈.com",
    "user@a\u200db.com",
    "\u0301user@example.com",
    "us\u00a0er@example.com",
    "us\u200ber@example.com",
    "us\u2028er@example.com",
    "us\ue000er@example.com",
    "\U000e0080@example.com",
    "a(comment)@example.com",
    "a,b@example.com",
    "a;b@example.com",
    "a<b>@example.com",
    "a\\b@example.com",
    "a[b]@example.com",
    "a:b@example.com",
};

/* Builds the corpus into v (room for CORPUS_MAX) and returns how many addresses it has. */
static size_t build_corpus(struct address *v)
{
	size_t n = 0;
	for (size_t i = 0; i < sizeof(corpus_fixed) / sizeof(corpus_fixed[0]); i++)
		v[n++] = (struct address){strdup(corpus_fixed[i]), false};
	char *l63 = repeat("b", 63, ""), *l55u = repeat("a", 55, "ü");
	/* The local part at 64 and 65 octets; at 64 and 66 octets in 32 and 33 code points (a
	 * deliberate difference); and 90 octets whose NFC is 60. */
	v[n++] = (struct address){repeat("a", 64, "@example.com"), false};
	v[n++] = (struct address){repeat("a", 65, "@example.com"), false};
	v[n++] = (struct address){repeat("é", 32, "@example.com"), false};
	v[n++] = (struct address){repeat("é", 33, "@example.com"), true};
	v[n++] = (struct address){repeat("é", 65, "@example.com"), false};
	v[n++] = (struct address){repeat("e\u0301", 30, "@example.com"), false};
	/* Labels of 63 and 64 octets, in ASCII and once encoded. */
	v[n++] = (struct address){concat(strdup("user@"), repeat("a", 63, ".com")), false};
	v[n++] = (struct address){concat(strdup("user@"), repeat("a", 64, ".com")), false};
	v[n++] = (struct address){concat(strdup("user@"), repeat("例", 57, ".com")), false};
	v[n++] = (struct address){concat(strdup("user@"), repeat("例", 58, ".com")), false};
	/* The whole address at 254 and 255 octets; the domain at 252, 253 and 254. */
	for (size_t d = 57; d <= 58; d++) {
		char *domain = concat(concat(strdup(l63), strdup(".")), repeat("c", 63, "."));
		domain = concat(domain, repeat("d", d, ".com"));
		v[n++] = (struct address){concat(repeat("a", 64, "@"), domain), false};
	}
	for (size_t d = 60; d <= 62; d++) {
		char *domain = concat(concat(strdup(l63), strdup(".")), repeat("c", 63, "."));
		domain = concat(concat(domain, repeat("d", 63, ".")), repeat("e", d, ""));
		v[n++] = (struct address){concat(strdup("a@"), domain), false};
	}
	/* The UTF-8 form over 254 octets while the ASCII form is short. */
	for (size_t k = 4; k <= 5; k++) {
		char *domain = concat(repeat("例", 57, "."), repeat("例", k, ".com"));
		v[n++] = (struct address){concat(repeat("a", 64, "@"), domain), false};
	}
	/* The ASCII form over 254 octets while the UTF-8 one is short: it counts for an ASCII
	 * local part only. */
	char *domain = concat(concat(strdup(l55u), strdup(".")), concat(strdup(l55u), strdup(".")));
	domain = concat(domain, concat(strdup(l55u), strdup(".com")));
	v[n++] = (struct address){concat(repeat("a", 58, "@"), strdup(domain)), false};
	v[n++] = (struct address){concat(repeat("a", 59, "@"), strdup(domain)), false};
	v[n++] = (struct address){concat(repeat("a", 58, "é@"), strdup(domain)), false};
	free(domain);
	/* Ignorable code points that UTS #46 removes, past the plugin's input limit. */
	v[n++] = (struct address){repeat("\u00ad", 600, "a@example.com"), false};
	v[n++] = (struct address){concat(strdup("a@exa"), repeat("\u00ad", 600, "mple.com")), true};
	free(l63);
	free(l55u);
	return n;
}

static const char validate_script[] =
    "import sys\n"
    "from email_validator import validate_email, EmailNotValidError\n"
    "for a in sys.argv[1:]:\n"
    "    try:\n"
    "        r = validate_email(bytes.fromhex(a[1:]).decode(), check_deliverability=False)\n"
    "        print(\"1\", r.email.encode().hex())\n"
    "    except EmailNotValidError:\n"
    "        print(\"0 -\")\n";

/* Runs email_validator on the corpus: verdicts[i] is 1 or 0, normal[i] the hex normal form. */
static void run_email_validator(const struct address *v, size_t n, int *verdicts, char **normal)
{
	size_t cmdlen = sizeof(validate_script) + 64;
	for (size_t i = 0; i < n; i++)
		cmdlen += 2 * strlen(v[i].text) + 3;
	char *cmd = malloc(cmdlen), *p = cmd;
	assert_non_null(cmd);
	p += sprintf(p, "%s -c '%s'", PYTHON, validate_script);
	for (size_t i = 0; i < n; i++) {
		p += sprintf(p, " x");
		for (const unsigned char *c = (const unsigned char *)v[i].text; *c != '\0'; c++)
			p += sprintf(p, "%02x", *c);
	}
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	char line[1200];
	for (size_t i = 0; i < n; i++) {
		char hex[1100];
		assert_non_null(fgets(line, sizeof(line), f));
		assert_int_equal(sscanf(line, "%d %1099s", &verdicts[i], hex), 2);
		normal[i] = strdup(hex);
	}
	assert_int_equal(pclose(f), 0);
	free(cmd);
}

static char *to_hex(const char *s)
{
	char *h = malloc(2 * strlen(s) + 1), *p = h;
	assert_non_null(h);
	*p = '\0';
	for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++)
		p += sprintf(p, "%02x", *c);
	return h;
}

static void test_email_matches_email_validator(void **state)
{
	if (system(PYTHON " -c 'import email_validator' 2>/dev/null") != 0)
		skip();
	struct address v[CORPUS_MAX];
	int verdicts[CORPUS_MAX];
	char *normal[CORPUS_MAX];
	size_t n = build_corpus(v);
	assert_true(n <= CORPUS_MAX);
	run_email_validator(v, n, verdicts, normal);
	struct validator *t = start("email", NULL);
	size_t valid = 0, failures = 0;
	for (size_t i = 0; i < n; i++) {
		int rc = run(t, v[i].text, strlen(v[i].text), NULL);
		int want = v[i].differs ? !verdicts[i] : verdicts[i];
		char *got = rc == 1 ? to_hex(t->out) : strdup("-");
		valid += rc == 1;
		if (rc != want || (rc == 1 && !v[i].differs && strcmp(got, normal[i]) != 0)) {
			print_error("corpus %zu '%s': plugin %d (%s), email_validator %d (%s)%s\n",
				    i, v[i].text, rc, rc == 1 ? t->out : t->msg, verdicts[i],
				    normal[i], v[i].differs ? ", a deliberate difference" : "");
			failures++;
		}
		free(got);
		free(normal[i]);
		free(v[i].text);
	}
	unload(t);
	print_message("%zu addresses, %zu valid\n", n, valid);
	assert_int_equal(failures, 0);
}

/* ---- email: the plugin on its own ---- */

static void test_email_normal_form(void **state)
{
	struct validator *t = start("email", NULL);
	VALID(t, "Alice@Example.COM", "Alice@example.com");
	VALID(t, "Alice@EXAMPLE.com", "Alice@example.com");
	VALID(t, "user@MÜNCHEN.de", "user@münchen.de");
	VALID(t, "user@xn--mnchen-3ya.DE", "user@münchen.de");
	VALID(t, "user@ｅｘａｍｐｌｅ．ｃｏｍ", "user@example.com");
	VALID(t, "e\u0301q\u0301@example.com", "éq\u0301@example.com");
	VALID(t, "user@exa\u00admple.com", "user@example.com");
	unload(t);
}

static void test_email_messages(void **state)
{
	struct validator *t = start("email", NULL);
	INVALID(t, "a@b@example.com", "The email address must have exactly one @-sign.");
	INVALID(t, "example.com", "The email address must have exactly one @-sign.");
	INVALID(t, "@example.com", "There must be something before the @-sign.");
	INVALID(t, "user@", "There must be something after the @-sign.");
	INVALID(t, "us..er@example.com",
		"The part before the @-sign cannot start or end with a dot, or have two dots in a "
		"row.");
	INVALID(t, "\"user\"@example.com",
		"The part before the @-sign contains a character that is not allowed.");
	INVALID(t, "user@example.com.", "An email address cannot end with a dot.");
	INVALID(t, "user@example", "The domain name must have a dot.");
	INVALID(t, "user@example.123",
		"The domain name does not end with a valid top-level domain.");
	INVALID(t, "user@example.test", "The domain name is a special-use or reserved name.");
	INVALID(t, "user@exa_mple.com",
		"The domain name contains a character that is not allowed.");
	INVALID(t, "user@-example.com",
		"The domain name cannot have a hyphen at the start or end of a part.");
	INVALID(t, "user@ab--cd.com",
		"The domain name cannot have two hyphens in the third and fourth places.");
	INVALID(t, "user@xn--ab-0ea.com",
		"The domain name contains a character that is not allowed."); /* CONTEXTO */
	char *label = concat(strdup("user@"), repeat("例", 58, ".com"));
	assert_invalid(t, label, strlen(label),
		       "The domain name has a part longer than 63 characters.");
	free(label);
	/* A message longer than msg is cut, and still terminated. */
	char msg[8];
	assert_int_equal(
	    t->v->check(t->state, "x", 1, NULL, t->out, sizeof(t->out), msg, sizeof(msg)), 0);
	assert_string_equal(msg, "The ema");
	unload(t);
}

static void test_email_refuses_bytes(void **state)
{
	struct validator *t = start("email", NULL);
	const char *bad = "The email address contains a character that is not allowed.";
	INVALID(t, "us\0er@example.com", bad);
	INVALID(t, "user@example.com\0", bad);
	INVALID(t,
		"us\xff"
		"er@example.com",
		bad);
	INVALID(t, "user@exa\xc3mple.com", bad);
	INVALID(t,
		"\xc0\xae"
		"user@example.com",
		bad); /* overlong "." */
	INVALID(t,
		"us\xed\xa0\x80"
		"er@example.com",
		bad); /* a surrogate */
	INVALID(t,
		"us\xf4\x90\x80\x80"
		"er@example.com",
		bad); /* past U+10FFFF */
	/* len is authoritative: what follows it is not read. */
	assert_int_equal(run(t, "user@example.com\xff", 16, NULL), 1);
	assert_string_equal(t->out, "user@example.com");
	unload(t);
}

static void test_email_out_too_small(void **state)
{
	struct validator *t = start("email", NULL);
	char out[17], msg[64];
	const char *addr = "user@EXAMPLE.COM";
	assert_int_equal(t->v->check(t->state, addr, 16, NULL, out, 16, msg, sizeof(msg)), -1);
	assert_int_equal(t->v->check(t->state, addr, 16, NULL, out, 17, msg, sizeof(msg)), 1);
	assert_string_equal(out, "user@example.com");
	/* Too small only matters for a valid address. */
	assert_int_equal(t->v->check(t->state, "user@", 5, NULL, out, 1, msg, sizeof(msg)), 0);
	unload(t);
}

static void test_email_config(void **state)
{
	struct validator *t = start("email", NULL);
	assert_true(asked(t, "allow_special_domains"));
	INVALID(t, "user@example.test", NULL);
	unload(t);

	const struct kv special[] = {BOOL("allow_special_domains", true), {0}};
	t = start("email", special);
	VALID(t, "user@example.test", "user@example.test");
	VALID(t, "user@mail.LOCAL", "user@mail.local");
	INVALID(t, "user@localhost", "The domain name must have a dot.");
	unload(t);

	const struct kv wrong[] = {STR("allow_special_domains", "yes"), {0}};
	assert_init_fails("email", wrong, "allow_special_domains");
}

/* ---- password ---- */

static void test_password_length(void **state)
{
	struct validator *t = start("password", NULL);
	assert_true(asked(t, "min_length") && asked(t, "max_length"));
	INVALID(t, "", "The password must have at least 8 characters.");
	INVALID(t, "1234567", "The password must have at least 8 characters.");
	VALID(t, "12345678", "12345678");
	/* Code points, not octets: 7 of 2, 3 and 4 octets each are still too few. */
	INVALID(t, "ééééééé", "The password must have at least 8 characters.");
	INVALID(t, "日本語日本語日", "The password must have at least 8 characters.");
	INVALID(t, "😀😀😀😀😀😀😀", "The password must have at least 8 characters.");
	VALID(t, "éééééééé", "éééééééé");
	VALID(t, "😀😀😀😀😀😀😀😀", "😀😀😀😀😀😀😀😀");
	/* Not normalised: a combining accent is a character of its own. */
	VALID(t, "e\u0301e\u0301e\u0301e\u0301", "e\u0301e\u0301e\u0301e\u0301");
	char *p = repeat("ü", 128, "");
	assert_valid(t, p, strlen(p), p);
	free(p);
	p = repeat("ü", 129, "");
	assert_invalid(t, p, strlen(p), "The password must have at most 128 characters.");
	free(p);
	unload(t);
}

static void test_password_config(void **state)
{
	const struct kv range[] = {INT("min_length", 12), INT("max_length", 16), {0}};
	struct validator *t = start("password", range);
	INVALID(t, "12345678901", "The password must have at least 12 characters.");
	VALID(t, "123456789012", "123456789012");
	VALID(t, "1234567890123456", "1234567890123456");
	INVALID(t, "12345678901234567", "The password must have at most 16 characters.");
	unload(t);

	/* No truncation, however long. */
	const struct kv longest[] = {INT("max_length", 4096), {0}};
	t = start("password", longest);
	char *p = repeat("x", 1000, "!");
	assert_valid(t, p, strlen(p), p);
	free(p);
	unload(t);

	const struct kv one[] = {INT("min_length", 1), INT("max_length", 1), {0}};
	t = start("password", one);
	VALID(t, "ß", "ß");
	INVALID(t, "", "The password must have at least 1 character.");
	INVALID(t, "ss", "The password must have at most 1 character.");
	unload(t);

	const struct kv zero[] = {INT("min_length", 0), {0}};
	assert_init_fails("password", zero, "min_length");
	const struct kv inverted[] = {INT("min_length", 20), INT("max_length", 10), {0}};
	assert_init_fails("password", inverted, "max_length");
	const struct kv over_default[] = {INT("min_length", 200), {0}};
	assert_init_fails("password", over_default, "min_length");
	const struct kv too_long[] = {INT("max_length", 4097), {0}};
	assert_init_fails("password", too_long, "max_length");
	const struct kv text[] = {STR("min_length", "8"), {0}};
	assert_init_fails("password", text, "min_length");
}

static void test_password_bytes(void **state)
{
	struct validator *t = start("password", NULL);
	const char *utf8 = "The password must be valid UTF-8 text.";
	INVALID(t, "password\xff", utf8);
	INVALID(t, "pass\xc3word", utf8);
	INVALID(t, "pass\xc0\xafword", utf8);
	INVALID(t, "pass\xed\xa0\x80word", utf8);
	INVALID(t, "pass\xf4\x90\x80\x80word", utf8);
	INVALID(t, "pass\0word", "The password cannot contain a NUL character.");
	VALID(t, "pass word\t!", "pass word\t!");
	unload(t);
}

static void test_password_related(void **state)
{
	struct validator *t = start("password", NULL);
	const char *const related[] = {"alice.smith", "Alice.Smith@Example.com", NULL};
	const char *same = "The password cannot be your username or email address.";
	assert_int_equal(run(t, "alice.smith", 11, related), 0);
	assert_string_equal(t->msg, same);
	assert_int_equal(run(t, "Alice.Smith@Example.com", 23, related), 0);
	assert_int_equal(run(t, "alice.smith@example.COM", 23, related), 0);
	assert_string_equal(t->msg, same);
	/* The username is compared byte for byte only; a part of a value is no match. */
	assert_int_equal(run(t, "ALICE.SMITH", 11, related), 1);
	assert_int_equal(run(t, "alice.smith@example", 19, related), 1);
	assert_int_equal(run(t, "alice.smith1", 12, related), 1);
	const char *const unicode[] = {"Dörte@Example.com", NULL};
	const char *upper = "DÖRTE@example.com";
	assert_int_equal(run(t, upper, strlen(upper), unicode), 0);
	const char *const none[] = {NULL};
	assert_int_equal(run(t, "alice.smith", 11, none), 1);
	unload(t);
}

/* No message repeats the password it refuses. */
static void test_password_messages_keep_it_secret(void **state)
{
	struct validator *t = start("password", NULL);
	const char *const related[] = {"hunter2hunter2", NULL};
	const char *refused[] = {"hunter2", "hunter2\xff", "hunter2hunter2"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		assert_int_equal(run(t, refused[i], strlen(refused[i]), related), 0);
		assert_null(strstr(t->msg, "hunter"));
	}
	char out[8], msg[64];
	assert_int_equal(t->v->check(t->state, "12345678", 8, NULL, out, 8, msg, sizeof(msg)), -1);
	unload(t);
}

/* ---- username ---- */

static void test_username_ascii(void **state)
{
	struct validator *t = start("username", NULL);
	assert_true(asked(t, "min_length") && asked(t, "max_length") && asked(t, "allowed"));
	const char *chars = "The username may contain only the letters A to Z, digits, '.', '_' "
			    "and '-'.";
	VALID(t, "alice", "alice");
	VALID(t, "Alice.Smith_2-b", "Alice.Smith_2-b");
	VALID(t, "a.b", "a.b");
	VALID(t, "___", "___");
	INVALID(t, "", "The username cannot be empty.");
	INVALID(t, "al", "The username must have at least 3 characters.");
	INVALID(t, "alice smith", chars);
	INVALID(t, " alice", chars);
	INVALID(t, "alice@example.com", chars);
	INVALID(t, "alice\0", chars);
	INVALID(t, "ålice", chars);
	INVALID(t, "alice\xff", "The username must be valid UTF-8 text.");
	char *u = repeat("a", 64, "");
	assert_valid(t, u, strlen(u), u);
	free(u);
	u = repeat("a", 65, "");
	assert_invalid(t, u, strlen(u), "The username must have at most 64 characters.");
	free(u);
	char out[6], msg[64];
	assert_int_equal(t->v->check(t->state, "alice", 5, NULL, out, 5, msg, sizeof(msg)), -1);
	assert_int_equal(t->v->check(t->state, "alice", 5, NULL, out, 6, msg, sizeof(msg)), 1);
	unload(t);
}

static void test_username_unicode(void **state)
{
	const struct kv unicode[] = {STR("allowed", "unicode"), {0}};
	struct validator *t = start("username", unicode);
	const char *chars = "The username may contain only letters, digits, '.', '_' and '-'.";
	VALID(t, "alice", "alice");
	VALID(t, "ålice", "ålice");
	VALID(t, "Ñandú_7", "Ñandú_7");
	VALID(t, "用户名", "用户名");
	VALID(t, "अजय", "अजय"); /* a vowel sign, a combining mark, is needed */
	VALID(t, "١٢٣", "١٢٣");
	VALID(t, "ééé", "ééé");
	/* NFC, and the length counted after it. */
	VALID(t, "Do\u0308rte", "Dörte");
	INVALID(t, "e\u0301e\u0301", "The username must have at least 3 characters.");
	INVALID(t, "\u0301abc", "The username cannot start with a combining mark.");
	INVALID(t, "a☃b", chars);
	INVALID(t, "a b", chars);
	INVALID(t, "a\u00a0b", chars);
	INVALID(t, "ab\u200dc", chars);
	INVALID(t, "a\tbc", chars);
	INVALID(t, "abc\0", chars);
	INVALID(t, "ⅫⅫⅫ", chars);
	INVALID(t, "alice\xc3", "The username must be valid UTF-8 text.");
	char *u = repeat("ü", 64, "");
	assert_valid(t, u, strlen(u), u);
	free(u);
	u = repeat("ü", 65, "");
	assert_invalid(t, u, strlen(u), "The username must have at most 64 characters.");
	free(u);
	unload(t);
}

static void test_username_config(void **state)
{
	const struct kv range[] = {
	    INT("min_length", 1), INT("max_length", 4), STR("allowed", "ascii"), {0}};
	struct validator *t = start("username", range);
	VALID(t, "a", "a");
	VALID(t, "abcd", "abcd");
	INVALID(t, "abcde", "The username must have at most 4 characters.");
	INVALID(t, "", "The username cannot be empty.");
	unload(t);

	const struct kv one[] = {INT("min_length", 1), INT("max_length", 1), {0}};
	t = start("username", one);
	INVALID(t, "ab", "The username must have at most 1 character.");
	unload(t);

	const struct kv bad_allowed[] = {STR("allowed", "letters"), {0}};
	assert_init_fails("username", bad_allowed, "allowed");
	const struct kv not_string[] = {BOOL("allowed", true), {0}};
	assert_init_fails("username", not_string, "allowed");
	const struct kv inverted[] = {INT("min_length", 5), INT("max_length", 4), {0}};
	assert_init_fails("username", inverted, "max_length");
	const struct kv over_default[] = {INT("min_length", 65), {0}};
	assert_init_fails("username", over_default, "min_length");
	const struct kv zero[] = {INT("min_length", 0), {0}};
	assert_init_fails("username", zero, "min_length");
}

/* ---- blocklist ---- */

static char list_dir[64];

/* Writes text (len bytes) to a file of the test's folder; returns its path (static). */
static const char *list_file(const char *name, const char *text, size_t len)
{
	static char path[128];
	if (list_dir[0] == '\0') {
		snprintf(list_dir, sizeof(list_dir), "/tmp/test_blocklist.XXXXXX");
		assert_non_null(mkdtemp(list_dir));
	}
	snprintf(path, sizeof(path), "%s/%s", list_dir, name);
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, len, f), len);
	assert_int_equal(fclose(f), 0);
	return path;
}

#define LIST(name, lit) list_file((name), (lit), sizeof(lit) - 1)

/* The counts of the plugin's "N passwords from PATH (D listed twice), B bytes" log line. */
static void logged_counts(size_t *n, size_t *dups, size_t *bytes)
{
	const char *paren = strstr(last_log, " (");
	assert_non_null(strstr(last_log, " passwords from "));
	assert_non_null(paren);
	assert_int_equal(sscanf(last_log, "%zu", n), 1);
	assert_int_equal(sscanf(paren, " (%zu listed twice), %zu bytes", dups, bytes), 2);
}

static void test_blocklist_lookups(void **state)
{
	const struct kv cfg[] = {STR("file", LIST("common.txt", "password1234\nqwerty123\r\n"
								"letmein!\n\n  spaced  \n"
								"\xc3\xbcn\xc3\xaf"
								"c\xc3\xb6"
								"d\xc3\xa9"
								"1\nlast-no-newline")),
				 {0}};
	struct validator *t = start("blocklist", cfg);
	size_t n, dups, bytes;
	logged_counts(&n, &dups, &bytes);
	assert_int_equal(n, 6);
	assert_int_equal(dups, 0);
	assert_true(asked(t, "file") && asked(t, "ignore_case"));
	INVALID(t, "password1234", "password is too common");
	INVALID(t, "qwerty123", "password is too common"); /* its CR is no part of it */
	INVALID(t, "letmein!", "password is too common");
	INVALID(t, "  spaced  ", "password is too common");
	INVALID(t,
		"\xc3\xbcn\xc3\xaf"
		"c\xc3\xb6"
		"d\xc3\xa9"
		"1",
		"password is too common");
	INVALID(t, "last-no-newline", "password is too common");
	/* Exact matches only: another case, a prefix, the spaces trimmed, a CR kept. */
	VALID(t, "Password1234", "Password1234");
	VALID(t, "password123", "password123");
	VALID(t, "spaced", "spaced");
	VALID(t, "qwerty123\r", "qwerty123\r");
	VALID(t, "", "");
	char tiny[4];
	assert_int_equal(t->v->check(t->state, "not listed", 10, NULL, tiny, sizeof(tiny), t->msg,
				     sizeof(t->msg)),
			 -1);
	unload(t);
}

static void test_blocklist_ignore_case(void **state)
{
	const struct kv cfg[] = {STR("file", LIST("case.txt", "Password1234\n\xc3\xbc"
							      "ber-geheim\n")),
				 BOOL("ignore_case", true),
				 {0}};
	struct validator *t = start("blocklist", cfg);
	INVALID(t, "password1234", "password is too common");
	INVALID(t, "PASSWORD1234", "password is too common");
	INVALID(t,
		"\xc3\x9c"
		"BER-GEHEIM",
		"password is too common"); /* \u00dc: the folded case of \u00fc */
	VALID(t, "PASSWORD12345", "PASSWORD12345");
	VALID(t, "\xff\xfe not UTF-8", "\xff\xfe not UTF-8");
	unload(t);
}

static void test_blocklist_duplicates_and_long_lines(void **state)
{
	char *longline = repeat("x", 100000, "");
	size_t len = strlen(longline);
	char *text = malloc(len + 64);
	assert_non_null(text);
	int head = snprintf(text, len + 64, "same\nsame\r\nsame\n");
	memcpy(text + head, longline, len);
	memcpy(text + head + len, "\n", 2);
	const struct kv cfg[] = {STR("file", list_file("dups.txt", text, head + len + 1)), {0}};
	struct validator *t = start("blocklist", cfg);
	size_t n, dups, bytes;
	logged_counts(&n, &dups, &bytes);
	assert_int_equal(n, 2);
	assert_int_equal(dups, 2);
	INVALID(t, "same", "password is too common");
	assert_int_equal(run(t, longline, len, NULL), 0);
	assert_int_equal(run(t, longline, len - 1, NULL), -1); /* valid, but out is too small */
	longline[len - 1] = '\0';
	assert_int_equal(
	    t->v->check(t->state, longline, len - 1, NULL, text, len + 64, t->msg, sizeof(t->msg)),
	    1);
	unload(t);
	free(text);
	free(longline);
}

static void test_blocklist_empty_absent_missing(void **state)
{
	const struct kv empty[] = {STR("file", LIST("empty.txt", "")), {0}};
	struct validator *t = start("blocklist", empty);
	size_t n, dups, bytes;
	logged_counts(&n, &dups, &bytes);
	assert_int_equal(n, 0);
	VALID(t, "password1234", "password1234");
	unload(t);
	/* No list: it refuses nothing. */
	t = start("blocklist", NULL);
	VALID(t, "password1234", "password1234");
	unload(t);
	char path[128];
	snprintf(path, sizeof(path), "%s/not-there.txt", list_dir);
	const struct kv missing[] = {STR("file", path), {0}};
	t = load("blocklist", missing);
	assert_int_equal(t->v->init(&host, &t->cfg, &t->state), -1);
	assert_string_equal(t->cfg.error_key, "file");
	char want[256];
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(t->cfg.error, want);
	unload(t);
	const struct kv not_bool[] = {STR("ignore_case", "yes"), {0}};
	assert_init_fails("blocklist", not_bool, "ignore_case");
}

/* A million passwords: read fast, in at most 32 bytes each. */
static void test_blocklist_a_million(void **state)
{
	enum { N = 1000000 };
	char *text = malloc((size_t)N * 16), *p = text;
	assert_non_null(text);
	for (int i = 0; i < N; i++)
		p += sprintf(p, "pw-%07d-%x\n", i, (unsigned)(i * 2654435761u) >> 20);
	const struct kv cfg[] = {STR("file", list_file("million.txt", text, (size_t)(p - text))),
				 {0}};
	free(text);
	struct timespec t0, t1;
	struct mallinfo2 before = mallinfo2();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	struct validator *t = start("blocklist", cfg);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	struct mallinfo2 after = mallinfo2();
	double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	size_t n, dups, bytes;
	logged_counts(&n, &dups, &bytes);
	assert_int_equal(n, N);
	assert_int_equal(dups, 0);
	assert_true(bytes <= (size_t)N * 32);
	/* The heap says the same (a sanitizer's allocator reports nothing here). */
	size_t used = (after.uordblks + after.hblkhd) - (before.uordblks + before.hblkhd);
	if (after.uordblks + after.hblkhd > 0)
		assert_true(used <= (size_t)N * 32 && used >= bytes);
	if (seconds > 10)
		fail_msg("a million passwords took %.1f s to read", seconds);
	INVALID(t, "pw-0000000-0", "password is too common");
	char pw[32];
	for (int i = 1; i < N; i += 9973) {
		snprintf(pw, sizeof(pw), "pw-%07d-%x", i, (unsigned)(i * 2654435761u) >> 20);
		assert_int_equal(run(t, pw, strlen(pw), NULL), 0);
		pw[3] = 'X';
		assert_int_equal(run(t, pw, strlen(pw), NULL), 1);
	}
	unload(t);
}

static int remove_lists(void **state)
{
	char cmd[128];
	if (list_dir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", list_dir);
		return system(cmd) == 0 ? 0 : -1;
	}
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_email_matches_email_validator),
	    cmocka_unit_test(test_email_normal_form),
	    cmocka_unit_test(test_email_messages),
	    cmocka_unit_test(test_email_refuses_bytes),
	    cmocka_unit_test(test_email_out_too_small),
	    cmocka_unit_test(test_email_config),
	    cmocka_unit_test(test_password_length),
	    cmocka_unit_test(test_password_config),
	    cmocka_unit_test(test_password_bytes),
	    cmocka_unit_test(test_password_related),
	    cmocka_unit_test(test_password_messages_keep_it_secret),
	    cmocka_unit_test(test_username_ascii),
	    cmocka_unit_test(test_username_unicode),
	    cmocka_unit_test(test_username_config),
	    cmocka_unit_test(test_blocklist_lookups),
	    cmocka_unit_test(test_blocklist_ignore_case),
	    cmocka_unit_test(test_blocklist_duplicates_and_long_lines),
	    cmocka_unit_test(test_blocklist_empty_absent_missing),
	    cmocka_unit_test(test_blocklist_a_million),
	};
	return cmocka_run_group_tests(tests, NULL, remove_lists);
}
