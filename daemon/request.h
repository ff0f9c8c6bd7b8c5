/* request.h: parsing the parts of an HTTP request that evhttp leaves raw. */
#ifndef SESAME_REQUEST_H
#define SESAME_REQUEST_H

#include <stdbool.h>
#include <stddef.h>

typedef void (*request_pair_cb)(void *arg, const char *name, size_t nlen, const char *value,
				size_t vlen);

/* Calls cb for each "name=value" of a Cookie header; returns the number of pairs. */
size_t request_cookies(const char *header, request_pair_cb cb, void *arg);

/*
 * Calls cb for each pair of a query string, percent-decoded ('+' is a space); a pair that
 * does not decode is skipped. scratch holds strlen(query) + 2 bytes: no allocation is made,
 * so cb may raise a Lua error. Returns the number of pairs passed to cb.
 */
size_t request_query(const char *query, char *scratch, request_pair_cb cb, void *arg);

/* Decodes %XX escapes of s[0..len) into out (len + 1 bytes); -1 on a bad or NUL escape. */
int request_percent_decode(const char *s, size_t len, bool plus_is_space, char *out,
			   size_t *outlen);

/* application/json, or application/SUBTYPE+json, with or without parameters. */
bool request_is_json(const char *content_type);

/* A client's X-Request-Id is kept when it is 1 to 64 of [A-Za-z0-9._:-]. */
bool request_id_ok(const char *id);

#endif
