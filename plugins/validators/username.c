/*
 * username.c: the username validator. It checks a username's characters and length.
 *
 * username.allowed names the characters a username may have besides '.', '_' and '-':
 * "ascii" (the default) allows the letters A to Z and a to z and the digits 0 to 9; "unicode"
 * allows any letter (general category L) and decimal digit (Nd) of any script, and combining
 * marks (M) after the first character, so that names written in scripts that need them can be
 * spelt. A username has username.min_length to username.max_length characters (3 and 64 by
 * default), counted in code points. The route trims the value before it gets here; an empty
 * username, or one with spaces or control characters, is not valid.
 *
 * An ASCII username is its own normal form. A Unicode one is put in NFC, so that the same name
 * typed with precomposed or combining characters is one account; its length is counted then.
 * Letter case is left alone: comparing usernames is for the storage to do.
 */
#include <sesame/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#define DEFAULT_MIN 3
#define DEFAULT_MAX 64
#define LIMIT	    1024

#define ASCII_ONLY   "The username may contain only the letters A to Z, digits, '.', '_' and '-'."
#define UNICODE_ONLY "The username may contain only letters, digits, '.', '_' and '-'."

struct username {
	long long min_length;
	long long max_length;
	bool unicode;
};

static int read_allowed(const struct sesame_host *host, struct sesame_config *cfg,
			struct username *u)
{
	const char *allowed = "ascii";
	enum sesame_config_result rc = host->config_string(cfg, "allowed", &allowed);
	if (rc != SESAME_CONFIG_OK)
		return rc == SESAME_CONFIG_WRONG ? -1 : 0;
	if (strcmp(allowed, "unicode") == 0)
		u->unicode = true;
	else if (strcmp(allowed, "ascii") != 0) {
		host->config_error(cfg, "allowed",
				   "expected \"ascii\" or \"unicode\", found \"%s\"", allowed);
		return -1;
	}
	return 0;
}

static int init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	struct username *u = calloc(1, sizeof(*u));
	long long v;
	if (u == NULL) {
		host->log(host, SESAME_LOG_ERROR, "out of memory");
		return -1;
	}
	u->min_length = DEFAULT_MIN;
	u->max_length = DEFAULT_MAX;
	/* v holds each key's default before the read, as the list of keys reports it. */
	v = u->min_length;
	enum sesame_config_result min = host->config_integer(cfg, "min_length", 1, LIMIT, &v);
	if (min == SESAME_CONFIG_OK)
		u->min_length = v;
	v = u->max_length;
	enum sesame_config_result max =
	    host->config_integer(cfg, "max_length", u->min_length, LIMIT, &v);
	if (max == SESAME_CONFIG_OK)
		u->max_length = v;
	if (max == SESAME_CONFIG_ABSENT && u->min_length > DEFAULT_MAX) {
		host->config_error(cfg, "min_length",
				   "%lld is more than max_length (%d when not set)", u->min_length,
				   DEFAULT_MAX);
		min = SESAME_CONFIG_WRONG;
	}
	int allowed = read_allowed(host, cfg, u);
	if (min == SESAME_CONFIG_WRONG || max == SESAME_CONFIG_WRONG || allowed != 0) {
		free(u);
		return -1;
	}
	*state = u;
	return 0;
}

static void fini(void *state)
{
	free(state);
}

static bool is_ascii_allowed(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* Combining marks too, but not first: see check_characters. */
static bool is_unicode_allowed(ucs4_t c)
{
	if (c < 0x80)
		return is_ascii_allowed((uint8_t)c);
	return uc_is_general_category(c, UC_CATEGORY_L) ||
	       uc_is_general_category(c, UC_CATEGORY_Nd) ||
	       uc_is_general_category(c, UC_CATEGORY_M);
}

/* Checks the characters of s (n octets of valid UTF-8); NULL, or why they are not allowed. */
static const char *check_characters(const struct username *u, const uint8_t *s, size_t n)
{
	ucs4_t c;
	for (size_t i = 0, k; i < n; i += k) {
		k = (size_t)u8_mbtouc(&c, s + i, n - i);
		if (!u->unicode && !is_ascii_allowed(s[i]))
			return ASCII_ONLY;
		if (u->unicode && i == 0 && uc_is_general_category(c, UC_CATEGORY_M))
			return "The username cannot start with a combining mark.";
		if (u->unicode && !is_unicode_allowed(c))
			return UNICODE_ONLY;
	}
	return NULL;
}

static int check(void *state, const char *value, size_t len, const char *const *related, char *out,
		 size_t outlen, char *msg, size_t msglen)
{
	const struct username *u = state;
	(void)related;
	const uint8_t *s = (const uint8_t *)value;
	uint8_t *nfc = NULL;
	size_t n = len;
	const char *why;
	int rc = 0;

	if (len == 0) {
		snprintf(msg, msglen, "The username cannot be empty.");
		return 0;
	}
	if (u8_check(s, len) != NULL) {
		snprintf(msg, msglen, "The username must be valid UTF-8 text.");
		return 0;
	}
	if (u->unicode) {
		nfc = u8_normalize(UNINORM_NFC, s, len, NULL, &n);
		if (nfc == NULL) {
			snprintf(msg, msglen, "The username could not be checked.");
			return 0;
		}
		s = nfc;
	}
	size_t chars = u8_mbsnlen(s, n);
	if ((why = check_characters(u, s, n)) != NULL)
		snprintf(msg, msglen, "%s", why);
	else if (chars < (size_t)u->min_length)
		snprintf(msg, msglen, "The username must have at least %lld %s.", u->min_length,
			 (u->min_length == 1 ? "character" : "characters"));
	else if (chars > (size_t)u->max_length)
		snprintf(msg, msglen, "The username must have at most %lld %s.", u->max_length,
			 (u->max_length == 1 ? "character" : "characters"));
	else if (n + 1 > outlen)
		rc = -1;
	else {
		memcpy(out, s, n);
		out[n] = '\0';
		rc = 1;
	}
	free(nfc);
	return rc;
}

SESAME_VALIDATOR_PLUGIN("username", PLUGIN_VERSION, .init = init, .fini = fini, .check = check);
