/*
 * request.c: small parsers for the raw parts of a request: cookies, query strings, percent
 * escapes, the JSON content type and request ids. They work on plain strings, so the unit
 * tests can feed them anything a client might send.
 */
#include "autoconfig.h"

#include "request.h"

#include <string.h>
#include <strings.h>

static void trim(const char **s, size_t *len)
{
	while (*len > 0 && (**s == ' ' || **s == '\t')) {
		(*s)++;
		(*len)--;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		(*len)--;
}

size_t request_cookies(const char *header, request_pair_cb cb, void *arg)
{
	size_t count = 0;
	for (const char *p = header; p != NULL && *p != '\0';) {
		size_t len = strcspn(p, ";");
		const char *eq = memchr(p, '=', len);
		if (eq != NULL) {
			const char *name = p, *value = eq + 1;
			size_t nlen = (size_t)(eq - p), vlen = len - nlen - 1;
			trim(&name, &nlen);
			trim(&value, &vlen);
			if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') {
				value++;
				vlen -= 2;
			}
			if (nlen > 0) {
				cb(arg, name, nlen, value, vlen);
				count++;
			}
		}
		p += len;
		if (*p == ';')
			p++;
	}
	return count;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int request_percent_decode(const char *s, size_t len, bool plus_is_space, char *out, size_t *outlen)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '%') {
			int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
			int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
			if (lo < 0 || (hi == 0 && lo == 0))
				return -1;
			out[n++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[n++] = plus_is_space && s[i] == '+' ? ' ' : s[i];
		}
	}
	out[n] = '\0';
	*outlen = n;
	return 0;
}

size_t request_query(const char *query, char *scratch, request_pair_cb cb, void *arg)
{
	size_t count = 0;
	for (const char *p = query; p != NULL && *p != '\0';) {
		size_t len = strcspn(p, "&");
		if (len > 0) {
			const char *eq = memchr(p, '=', len);
			size_t nlen = eq ? (size_t)(eq - p) : len;
			size_t vlen = eq ? len - nlen - 1 : 0;
			/* Decoding never lengthens: the pair fits in len + 2 bytes of scratch. */
			char *name = scratch, *value = scratch + nlen + 1;
			size_t dn, dv;
			if (request_percent_decode(p, nlen, true, name, &dn) == 0 &&
			    request_percent_decode(eq ? eq + 1 : "", vlen, true, value, &dv) == 0 &&
			    dn > 0) {
				cb(arg, name, dn, value, dv);
				count++;
			}
		}
		p += len;
		if (*p == '&')
			p++;
	}
	return count;
}

bool request_is_json(const char *ct)
{
	if (ct == NULL)
		return false;
	while (*ct == ' ')
		ct++;
	size_t len = strcspn(ct, "; \t");
	if (len == 16 && strncasecmp(ct, "application/json", 16) == 0)
		return true;
	return len > 17 && strncasecmp(ct, "application/", 12) == 0 &&
	       strncasecmp(ct + len - 5, "+json", 5) == 0 && memchr(ct + 12, '/', len - 12) == NULL;
}

bool request_id_ok(const char *id)
{
	size_t len = strlen(id);
	if (len == 0 || len > 64)
		return false;
	return strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-") ==
	       len;
}
