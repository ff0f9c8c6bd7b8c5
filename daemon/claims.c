/*
 * claims.c: reads a token's claims set into the values the checks read.
 *
 * Every forward-auth request reads one, and a general JSON parser (building an object, a
 * hash table and a string per member, then freeing them) cost more than the rest of the token
 * check. The claims sesame and flask-jwt-extended issue are one flat object of plain strings,
 * integers and booleans, so a scanner reads those in one pass over a copy of the text: each
 * string is ended in place, integers are read as jansson reads them, and duplicate names are
 * refused. It accepts only a subset of what jansson accepts; on anything else (an escape, a
 * byte outside printable ASCII in a string, a real, a nested value, a syntax error, an integer
 * of 19 digits or more) it gives up and jansson reads the text, so that the verdict and the
 * values never differ from jansson's. The JSON object itself is built only when asked for
 * (req.claims).
 */
#include "autoconfig.h"

#include "claims.h"

#include <stdlib.h>
#include <string.h>

static const char *const names[CLAIMS_KNOWN] = {
    [CLAIM_EXP] = "exp", [CLAIM_NBF] = "nbf",	  [CLAIM_IAT] = "iat",	 [CLAIM_JTI] = "jti",
    [CLAIM_FAM] = "fam", [CLAIM_SUB] = "sub",	  [CLAIM_TYPE] = "type", [CLAIM_ISS] = "iss",
    [CLAIM_AUD] = "aud", [CLAIM_FRESH] = "fresh", [CLAIM_CSRF] = "csrf"};

static const size_t name_len[CLAIMS_KNOWN] = {
    [CLAIM_EXP] = 3, [CLAIM_NBF] = 3,	[CLAIM_IAT] = 3,  [CLAIM_JTI] = 3,
    [CLAIM_FAM] = 3, [CLAIM_SUB] = 3,	[CLAIM_TYPE] = 4, [CLAIM_ISS] = 3,
    [CLAIM_AUD] = 3, [CLAIM_FRESH] = 5, [CLAIM_CSRF] = 4};

/* More members than this are left to jansson (duplicates are found by comparing all pairs). */
#define SCAN_MAX_MEMBERS 32

/* Integers of up to this many digits cannot overflow a long long. */
#define SCAN_MAX_DIGITS 18

static char *skip_ws(char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/* A string of printable ASCII without escapes, p at its opening quote: ended in place. */
static char *scan_string(char *p, const char *end, struct claim *out)
{
	char *s = ++p;
	while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p <= 0x7e && *p != '"' &&
	       *p != '\\')
		p++;
	if (p == end || *p != '"')
		return NULL;
	*out = (struct claim){.kind = CLAIM_STRING, .s = s, .len = (size_t)(p - s)};
	*p = '\0';
	return p + 1;
}

/* An integer as JSON writes it (no leading zero, no fraction, no exponent). */
static char *scan_integer(char *p, const char *end, struct claim *out)
{
	bool neg = *p == '-';
	char *digits = neg ? p + 1 : p;
	long long v = 0;
	for (p = digits; p < end && *p >= '0' && *p <= '9'; p++) {
		if (p - digits == SCAN_MAX_DIGITS)
			return NULL;
		v = v * 10 + (*p - '0');
	}
	if (p == digits || (*digits == '0' && p - digits > 1) ||
	    (p < end && (*p == '.' || *p == 'e' || *p == 'E')))
		return NULL;
	*out = (struct claim){.kind = CLAIM_INTEGER, .i = neg ? -v : v};
	out->d = (double)out->i;
	return p;
}

static char *scan_literal(char *p, const char *end, const char *word, enum claim_kind kind,
			  struct claim *out)
{
	size_t n = strlen(word);
	if ((size_t)(end - p) < n || memcmp(p, word, n) != 0)
		return NULL;
	*out = (struct claim){.kind = kind};
	return p + n;
}

static char *scan_value(char *p, const char *end, struct claim *out)
{
	if (p == end)
		return NULL;
	if (*p == '"')
		return scan_string(p, end, out);
	if (*p == '-' || (*p >= '0' && *p <= '9'))
		return scan_integer(p, end, out);
	if (*p == 't')
		return scan_literal(p, end, "true", CLAIM_TRUE, out);
	if (*p == 'f')
		return scan_literal(p, end, "false", CLAIM_FALSE, out);
	if (*p == 'n')
		return scan_literal(p, end, "null", CLAIM_NULL, out);
	return NULL; /* an object, an array or not JSON: jansson's */
}

/* Keeps a member: false when its name was seen before. */
static bool keep_member(struct claims *c, struct claim *seen, size_t *nseen,
			const struct claim *name, const struct claim *value)
{
	for (size_t k = 0; k < CLAIMS_KNOWN; k++) {
		if (name->len == name_len[k] && memcmp(name->s, names[k], name->len) == 0) {
			if (c->c[k].kind != CLAIM_ABSENT)
				return false;
			c->c[k] = *value;
			return true;
		}
	}
	/* Other names, compared with the other names seen. */
	for (size_t i = 0; i < *nseen; i++) {
		if (seen[i].len == name->len && memcmp(seen[i].s, name->s, name->len) == 0)
			return false;
	}
	seen[(*nseen)++] = *name;
	return true;
}

/* The members of the object whose '{' p is past; returns past its '}', or NULL. */
static char *scan_members(struct claims *c, char *p, const char *end)
{
	struct claim seen[SCAN_MAX_MEMBERS], name, value;
	size_t nseen = 0, members = 0;
	if ((p = skip_ws(p, end)) < end && *p == '}')
		return p + 1;
	for (;;) {
		if (p == end || *p != '"' || members++ == SCAN_MAX_MEMBERS ||
		    (p = scan_string(p, end, &name)) == NULL || (p = skip_ws(p, end)) == end ||
		    *p != ':' || (p = scan_value(skip_ws(p + 1, end), end, &value)) == NULL ||
		    !keep_member(c, seen, &nseen, &name, &value) || (p = skip_ws(p, end)) == end)
			return NULL;
		if (*p == '}')
			return p + 1;
		if (*p != ',')
			return NULL;
		p = skip_ws(p + 1, end);
	}
}

bool claims_scan(struct claims *c, const char *text, size_t n)
{
	char *buf = malloc(2 * n + 2);
	if (buf == NULL)
		return false;
	memcpy(buf, text, n);
	buf[n] = '\0';
	char *p = buf + n + 1, *end = p + n;
	memcpy(p, text, n);
	*end = '\0';
	p = skip_ws(p, end);
	if (p == end || *p != '{' || (p = scan_members(c, p + 1, end)) == NULL ||
	    skip_ws(p, end) != end) {
		free(buf);
		memset(c, 0, sizeof(*c));
		return false;
	}
	c->text = buf;
	c->len = n;
	return true;
}

static struct claim claim_of(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_STRING:
		return (struct claim){
		    .kind = CLAIM_STRING, .s = json_string_value(v), .len = json_string_length(v)};
	case JSON_INTEGER:
		return (struct claim){.kind = CLAIM_INTEGER,
				      .i = (long long)json_integer_value(v),
				      .d = json_number_value(v)};
	case JSON_REAL:
		return (struct claim){.kind = CLAIM_REAL, .d = json_real_value(v)};
	case JSON_TRUE:
		return (struct claim){.kind = CLAIM_TRUE};
	case JSON_FALSE:
		return (struct claim){.kind = CLAIM_FALSE};
	case JSON_NULL:
		return (struct claim){.kind = CLAIM_NULL};
	default:
		return (struct claim){.kind = CLAIM_OTHER};
	}
}

void claims_from_json(struct claims *c, const json_t *obj)
{
	for (size_t k = 0; k < CLAIMS_KNOWN; k++) {
		const json_t *v = json_object_get(obj, names[k]);
		c->c[k] = v != NULL ? claim_of(v) : (struct claim){.kind = CLAIM_ABSENT};
	}
}

bool claims_parse(struct claims *c, const char *text, size_t n)
{
	if (claims_scan(c, text, n))
		return true;
	json_t *v = json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
	if (!json_is_object(v)) {
		json_decref(v);
		return false;
	}
	claims_from_json(c, v);
	c->json = v;
	return true;
}

bool claims_present(const struct claims *c)
{
	return c->json != NULL || c->text != NULL;
}

json_t *claims_json(struct claims *c)
{
	if (c->json == NULL && c->text != NULL)
		c->json = json_loadb(c->text, c->len, JSON_REJECT_DUPLICATES, NULL);
	return c->json;
}

void claims_clear(struct claims *c)
{
	json_decref(c->json);
	free(c->text);
	memset(c, 0, sizeof(*c));
}
