/*
 * email.c: the e-mail address validator. It checks an address's syntax as python's
 * email_validator (1.3, with check_deliverability=False) does, and returns the same normal
 * form, so that sesame accepts the addresses a Python service using that library accepted.
 *
 * The address has exactly one @-sign. The local part is a dot-atom: runs of RFC 5322 atext,
 * or for an internationalised address of any letter, number, punctuation or symbol code point
 * (a combining mark too, but not first), separated by single dots; quoted local parts are
 * refused. Its normal form is its NFC, at most 64 octets. The domain goes through UTS #46
 * (non-transitional) and IDNA2008 with libidn2, which gives its ASCII form; that is checked as
 * a host name: labels of 1 to 63 letters, digits and inner hyphens, 253 octets in all, a dot,
 * a last character that is a letter, and not a special-use name (localhost, .local, .test...)
 * unless email.allow_special_domains is true. libidn2 does not apply the CONTEXTO rules of
 * RFC 5892, so they are checked here. The domain's normal form is its Unicode form, decoded
 * from the ASCII one: lower case and NFC, so two addresses that differ only in the case of
 * their domain have one normal form. The normal form is at most 254 octets, and so is the
 * address with its ASCII domain when the local part is ASCII. No DNS: this runs on the event
 * loop.
 *
 * Deliberate differences from email_validator: the local part's limit is 64 octets of its NFC
 * (RFC 5321), where email_validator counts 64 code points of what it was given; input over
 * INPUT_MAX octets is refused unread, though UTS #46 could shrink it; and libidn2's Unicode
 * tables may be older than those of python's idna, so a code point assigned recently may be
 * judged differently.
 */
#include <sesame/plugin.h>

#include <idn2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unictype.h>
#include <uninorm.h>
#include <unistr.h>

#define LOCAL_MAX   64
#define DOMAIN_MAX  253
#define LABEL_MAX   63
#define ADDRESS_MAX 254
#define INPUT_MAX   1024

/* Messages said in more than one place. */
#define LOCAL_DOTS                                                                                 \
	"The part before the @-sign cannot start or end with a dot, or have two dots in a row."
#define LOCAL_NOT_ALLOWED "The part before the @-sign contains a character that is not allowed."
#define LABEL_TOO_LONG	  "The domain name has a part longer than 63 characters."
#define EDGE_HYPHEN	  "The domain name cannot have a hyphen at the start or end of a part."
#define TWO_HYPHENS	  "The domain name cannot have two hyphens in the third and fourth places."
#define NOT_ALLOWED	  "The domain name contains a character that is not allowed."

struct email {
	bool allow_special;
};

/* email_validator's SPECIAL_USE_DOMAIN_NAMES: these and their subdomains get no mail. */
static const char *const special_use[] = {"arpa",  "invalid", "local", "localhost",
					  "onion", "test",    NULL};

static int init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	struct email *e = calloc(1, sizeof(*e));
	if (e == NULL) {
		host->log(host, SESAME_LOG_ERROR, "out of memory");
		return -1;
	}
	if (host->config_boolean(cfg, "allow_special_domains", &e->allow_special) ==
	    SESAME_CONFIG_WRONG) {
		free(e);
		return -1;
	}
	*state = e;
	return 0;
}

static void fini(void *state)
{
	free(state);
}

static bool is_ascii_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool is_atext(unsigned char c)
{
	return is_ascii_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* The code points email_validator allows in an internationalised local part. */
static bool local_code_point_ok(ucs4_t c, bool first)
{
	if (c < 0x80)
		return true; /* ASCII was checked as atext already */
	if (uc_is_general_category(c, UC_CATEGORY_L) || uc_is_general_category(c, UC_CATEGORY_N) ||
	    uc_is_general_category(c, UC_CATEGORY_P) || uc_is_general_category(c, UC_CATEGORY_S))
		return true;
	/* A combining mark first would combine with whatever precedes the address. */
	return !first && uc_is_general_category(c, UC_CATEGORY_M);
}

/*
 * Checks the local part s (n octets of valid UTF-8) and writes its NFC into nfc (LOCAL_MAX
 * octets); NULL, or why the local part is not valid.
 */
static const char *check_local(const uint8_t *s, size_t n, uint8_t nfc[LOCAL_MAX], size_t *nfclen,
			       bool *ascii)
{
	if (n == 0)
		return "There must be something before the @-sign.";
	*ascii = true;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.' && (i == 0 || i == n - 1 || s[i - 1] == '.'))
			return LOCAL_DOTS;
		if (s[i] >= 0x80)
			*ascii = false;
		else if (s[i] != '.' && !is_atext(s[i]))
			return LOCAL_NOT_ALLOWED;
	}
	if (*ascii) {
		if (n > LOCAL_MAX)
			return "The part before the @-sign is too long.";
		memcpy(nfc, s, n);
		*nfclen = n;
		return NULL;
	}
	/* u8_normalize writes into nfc when the result fits, else into memory it allocates. */
	*nfclen = LOCAL_MAX;
	uint8_t *r = u8_normalize(UNINORM_NFC, s, n, nfc, nfclen);
	if (r == NULL)
		return "The email address could not be checked.";
	if (r != nfc) {
		free(r);
		return "The part before the @-sign is too long.";
	}
	for (size_t i = 0; i < *nfclen;) {
		ucs4_t c;
		int k = u8_mbtouc(&c, nfc + i, *nfclen - i);
		if (!local_code_point_ok(c, i == 0))
			return LOCAL_NOT_ALLOWED;
		i += (size_t)k;
	}
	return NULL;
}

static bool in_script(ucs4_t c, const char *name)
{
	const uc_script_t *s = uc_script(c);
	return s != NULL && strcmp(s->name, name) == 0;
}

static bool label_has(const ucs4_t *l, size_t n, ucs4_t lo, ucs4_t hi)
{
	for (size_t i = 0; i < n; i++) {
		if (l[i] >= lo && l[i] <= hi)
			return true;
	}
	return false;
}

static bool label_has_kana_or_han(const ucs4_t *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (in_script(l[i], "Hiragana") || in_script(l[i], "Katakana") ||
		    in_script(l[i], "Han"))
			return true;
	}
	return false;
}

/* RFC 5892 appendix A.3 to A.9: where the CONTEXTO code points of a U-label may stand. */
static bool contexto_ok(const ucs4_t *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		ucs4_t c = l[i];
		bool ok = true;
		if (c == 0x00b7)
			ok = i > 0 && i + 1 < n && l[i - 1] == 'l' && l[i + 1] == 'l';
		else if (c == 0x0375)
			ok = i + 1 < n && in_script(l[i + 1], "Greek");
		else if (c == 0x05f3 || c == 0x05f4)
			ok = i > 0 && in_script(l[i - 1], "Hebrew");
		else if (c == 0x30fb)
			ok = label_has_kana_or_han(l, n);
		else if (c >= 0x0660 && c <= 0x0669)
			ok = !label_has(l, n, 0x06f0, 0x06f9);
		else if (c >= 0x06f0 && c <= 0x06f9)
			ok = !label_has(l, n, 0x0660, 0x0669);
		if (!ok)
			return false;
	}
	return true;
}

/* Checks the CONTEXTO rules in every label of the Unicode domain u. */
static bool domain_contexto_ok(const char *u)
{
	ucs4_t buf[DOMAIN_MAX + 1];
	size_t n = DOMAIN_MAX + 1;
	ucs4_t *cp = u8_to_u32((const uint8_t *)u, strlen(u), buf, &n);
	if (cp != buf) { /* a valid domain has fewer code points than its ASCII form has octets */
		free(cp);
		return false;
	}
	size_t start = 0;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || cp[i] == '.') {
			if (!contexto_ok(cp + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

static bool is_special_use(const char *a, size_t n)
{
	for (const char *const *d = special_use; *d != NULL; d++) {
		size_t dn = strlen(*d);
		if (strcmp(a, *d) == 0 ||
		    (n > dn && a[n - dn - 1] == '.' && strcmp(a + n - dn, *d) == 0))
			return true;
	}
	return false;
}

/* Why libidn2 refused a domain, for the client. */
static const char *idn2_message(int rc)
{
	switch (rc) {
	case IDN2_TOO_BIG_DOMAIN:
		return "The part after the @-sign is too long.";
	case IDN2_TOO_BIG_LABEL:
	case IDN2_PUNYCODE_BIG_OUTPUT:
		return LABEL_TOO_LONG;
	case IDN2_HYPHEN_STARTEND:
		return EDGE_HYPHEN;
	case IDN2_2HYPHEN:
		return TWO_HYPHENS;
	default:
		return NOT_ALLOWED;
	}
}

/* Checks one label of an ASCII domain as a host name label. */
static const char *check_label(const char *l, size_t n)
{
	if (n > LABEL_MAX)
		return LABEL_TOO_LONG;
	for (size_t i = 0; i < n; i++) {
		if (!is_ascii_alnum((unsigned char)l[i]) && l[i] != '-')
			return NOT_ALLOWED;
	}
	if (l[0] == '-' || l[n - 1] == '-')
		return EDGE_HYPHEN;
	/* IDNA2008 reserves "??--" for its own prefix. */
	if (n >= 4 && l[2] == '-' && l[3] == '-' && strncmp(l, "xn", 2) != 0)
		return TWO_HYPHENS;
	return NULL;
}

/* Checks the ASCII form of a domain a (lower case) as a host name that can receive mail. */
static const char *check_hostname(const char *a, bool allow_special)
{
	size_t n = strlen(a);
	if (n == 0)
		return "There must be something after the @-sign.";
	if (a[0] == '.')
		return "The part after the @-sign cannot start with a dot.";
	if (a[n - 1] == '.')
		return "An email address cannot end with a dot.";
	if (strstr(a, "..") != NULL)
		return "The part after the @-sign cannot have two dots in a row.";
	if (n > DOMAIN_MAX)
		return "The part after the @-sign is too long.";
	for (const char *l = a, *dot;; l = dot + 1) {
		dot = strchr(l, '.');
		const char *why = check_label(l, dot != NULL ? (size_t)(dot - l) : strlen(l));
		if (why != NULL)
			return why;
		if (dot == NULL)
			break;
	}
	if (strchr(a, '.') == NULL)
		return "The domain name must have a dot.";
	if (a[n - 1] < 'a' || a[n - 1] > 'z')
		return "The domain name does not end with a valid top-level domain.";
	if (!allow_special && is_special_use(a, n))
		return "The domain name is a special-use or reserved name.";
	return NULL;
}

/*
 * Checks the domain d (n octets of valid UTF-8 without NUL, n < INPUT_MAX) and gives its ASCII
 * and Unicode forms, to be freed by the caller; NULL, or why the domain is not valid.
 */
static const char *check_domain(const struct email *e, const char *d, size_t n, char **ascii,
				char **unicode)
{
	char buf[INPUT_MAX];
	if (n == 0)
		return "There must be something after the @-sign.";
	memcpy(buf, d, n);
	buf[n] = '\0';
	/* UTS #46 maps the domain to lower case (and full-width dots to dots) first. */
	int rc = idn2_lookup_u8((const uint8_t *)buf, (uint8_t **)ascii,
				IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
	if (rc != IDN2_OK)
		return idn2_message(rc);
	const char *why = check_hostname(*ascii, e->allow_special);
	if (why != NULL)
		return why;
	if (idn2_to_unicode_8z8z(*ascii, unicode, 0) != IDN2_OK || !domain_contexto_ok(*unicode))
		return NOT_ALLOWED;
	return NULL;
}

static int refuse(char *msg, size_t msglen, const char *why)
{
	snprintf(msg, msglen, "%s", why);
	return 0;
}

static int check(void *state, const char *value, size_t len, const char *const *related, char *out,
		 size_t outlen, char *msg, size_t msglen)
{
	const struct email *e = state;
	(void)related;
	uint8_t local[LOCAL_MAX];
	size_t locallen;
	bool ascii_local;
	char *ascii = NULL, *unicode = NULL;
	const char *why;
	int rc = 0;

	if (len >= INPUT_MAX)
		return refuse(msg, msglen, "The email address is too long.");
	if (memchr(value, '\0', len) != NULL || u8_check((const uint8_t *)value, len) != NULL)
		return refuse(msg, msglen,
			      "The email address contains a character that is not allowed.");
	const char *at = memchr(value, '@', len);
	if (at == NULL || memchr(at + 1, '@', len - (size_t)(at + 1 - value)) != NULL)
		return refuse(msg, msglen, "The email address must have exactly one @-sign.");
	why = check_local((const uint8_t *)value, (size_t)(at - value), local, &locallen,
			  &ascii_local);
	if (why == NULL)
		why = check_domain(e, at + 1, len - (size_t)(at + 1 - value), &ascii, &unicode);
	if (why == NULL) {
		size_t total = locallen + 1 + strlen(unicode);
		if (total > ADDRESS_MAX ||
		    (ascii_local && locallen + 1 + strlen(ascii) > ADDRESS_MAX))
			why = "The email address is too long.";
		else if (total + 1 > outlen)
			rc = -1;
		else {
			snprintf(out, outlen, "%.*s@%s", (int)locallen, (const char *)local,
				 unicode);
			rc = 1;
		}
	}
	if (why != NULL)
		refuse(msg, msglen, why);
	free(ascii);
	free(unicode);
	return rc;
}

SESAME_VALIDATOR_PLUGIN("email", PLUGIN_VERSION, .init = init, .fini = fini, .check = check);
