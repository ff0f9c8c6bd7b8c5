/* http_framing.h: strict HTTP/1.1 request framing (RFC 9112 6.3, 5.1), against smuggling. */
#ifndef SESAME_HTTP_FRAMING_H
#define SESAME_HTTP_FRAMING_H

struct evhttp;
struct evhttp_request;
struct evkeyvalq;

/* A request head as evhttp parsed it. */
struct http_framing_head {
	const struct evkeyvalq *headers;
	int method; /* enum evhttp_cmd_type */
	int major, minor;
	const char *target; /* the request target, as sent */
};

/*
 * 0 when head frames exactly one request that every reader delimits alike; else 400, with
 * *why the client's message. Pure: no I/O, no state.
 */
int http_framing_check(const struct http_framing_head *head, const char **why);

/* Checks every request http reads as soon as its headers are in, before its body. */
void http_framing_install(struct evhttp *http);

/* The verdict on ev's head: 0, or 400 with *why. For a request evhttp handed over whole. */
int http_framing_verdict(struct evhttp_request *ev, const char **why);

/*
 * evhttp is answering ev with an error page: 1 with *why when the reason is a refused head
 * (evhttp knows it only as a malformed request), else 0. Once per refusal.
 */
int http_framing_refused(const struct evhttp_request *ev, const char **why);

#endif
