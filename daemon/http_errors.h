/* http_errors.h: evhttp's own error answers, in sesame's JSON envelope. */
#ifndef SESAME_HTTP_ERRORS_H
#define SESAME_HTTP_ERRORS_H

#include <stddef.h>

struct evhttp;

/*
 * Makes the answers evhttp gives by itself (a request it cannot parse, too large, a method it
 * does not serve) JSON; max_header (server.max_header) tells a head too large from a
 * malformed one.
 */
void http_errors_install(struct evhttp *http, size_t max_header);

/* {"result":"fail","error":message[,"detail":detail]} and its length; NULL without memory. */
char *http_error_body(const char *message, const char *detail, size_t *len);

#endif
