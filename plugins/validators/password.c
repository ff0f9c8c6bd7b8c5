/*
 * password.c: the password validator. It checks a new password's length and that it is not
 * one of the request's other values, and leaves the password as it is.
 *
 * A password is valid UTF-8 without NUL (the host passes the normal form on as a C string, so
 * a NUL would cut it short), of password.min_length to password.max_length characters (8 and
 * 128 by default, as NIST SP 800-63B suggests). Length counts code points, not octets, so
 * that "ü" is one character as the user sees it; nothing is truncated. The password must not
 * equal any related value of the request (the username, the e-mail address), nor an e-mail
 * address in other letter case. Its normal form is the password unchanged: the hash must
 * see the octets the user typed, as the hashes stored by earlier services saw them.
 */
#include <sesame/plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unicase.h>
#include <unistr.h>

#define DEFAULT_MIN 8
#define DEFAULT_MAX 128

struct password {
	long long min_length;
	long long max_length;
};

static int init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	struct password *p = calloc(1, sizeof(*p));
	long long v;
	if (p == NULL) {
		host->log(host, SESAME_LOG_ERROR, "out of memory");
		return -1;
	}
	p->min_length = DEFAULT_MIN;
	p->max_length = DEFAULT_MAX;
	/* v holds each key's default before the read, as the list of keys reports it. */
	v = p->min_length;
	enum sesame_config_result min = host->config_integer(cfg, "min_length", 1, 1024, &v);
	if (min == SESAME_CONFIG_OK)
		p->min_length = v;
	v = p->max_length;
	enum sesame_config_result max =
	    host->config_integer(cfg, "max_length", p->min_length, 4096, &v);
	if (max == SESAME_CONFIG_OK)
		p->max_length = v;
	if (min == SESAME_CONFIG_OK && max == SESAME_CONFIG_ABSENT && p->min_length > DEFAULT_MAX) {
		host->config_error(cfg, "min_length",
				   "%lld is more than max_length (%d when not set)", p->min_length,
				   DEFAULT_MAX);
		min = SESAME_CONFIG_WRONG;
	}
	if (min == SESAME_CONFIG_WRONG || max == SESAME_CONFIG_WRONG) {
		free(p);
		return -1;
	}
	*state = p;
	return 0;
}

static void fini(void *state)
{
	free(state);
}

/* Is the password (valid UTF-8) one of the related values, or an e-mail address in any case? */
static bool is_related(const char *value, size_t len, const char *const *related)
{
	for (const char *const *r = related; r != NULL && *r != NULL; r++) {
		size_t rlen = strlen(*r);
		int order;
		if (rlen == len && memcmp(value, *r, len) == 0)
			return true;
		if (strchr(*r, '@') != NULL &&
		    u8_casecmp((const uint8_t *)value, len, (const uint8_t *)*r, rlen, NULL, NULL,
			       &order) == 0 &&
		    order == 0)
			return true;
	}
	return false;
}

static int check(void *state, const char *value, size_t len, const char *const *related, char *out,
		 size_t outlen, char *msg, size_t msglen)
{
	const struct password *p = state;
	if (u8_check((const uint8_t *)value, len) != NULL) {
		snprintf(msg, msglen, "The password must be valid UTF-8 text.");
		return 0;
	}
	if (memchr(value, '\0', len) != NULL) {
		snprintf(msg, msglen, "The password cannot contain a NUL character.");
		return 0;
	}
	size_t n = u8_mbsnlen((const uint8_t *)value, len);
	if (n < (size_t)p->min_length) {
		snprintf(msg, msglen, "The password must have at least %lld %s.", p->min_length,
			 (p->min_length == 1 ? "character" : "characters"));
		return 0;
	}
	if (n > (size_t)p->max_length) {
		snprintf(msg, msglen, "The password must have at most %lld %s.", p->max_length,
			 (p->max_length == 1 ? "character" : "characters"));
		return 0;
	}
	if (is_related(value, len, related)) {
		snprintf(msg, msglen, "The password cannot be your username or email address.");
		return 0;
	}
	if (len + 1 > outlen)
		return -1;
	memcpy(out, value, len);
	out[len] = '\0';
	return 1;
}

SESAME_VALIDATOR_PLUGIN("password", PLUGIN_VERSION, .init = init, .fini = fini, .check = check);
