/* http.h: the worker's HTTP server on evhttp, and the replies every route goes through. */
#ifndef SESAME_HTTP_H
#define SESAME_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router.h"

struct config;
struct event_base;
struct evhttp_request;
struct http_server;

struct http_request {
	struct evhttp_request *ev;
	struct http_server *srv;
	const char *method;
	char *path; /* as sent, without the query string */
	const struct route *route;
	struct route_params params;
	char id[65];
	char remote[64];
	uint64_t start_ns;
};

/* Called for each request that matched a route; the callee must reply, now or later. */
typedef void (*http_dispatch_fn)(void *arg, struct http_request *r);
/* Called once a draining server has no request left. */
typedef void (*http_drained_fn)(void *arg);

struct http_server *http_server_new(const struct config *cfg, struct event_base *base,
				    const int *fds, size_t nfds, const struct router *router,
				    http_dispatch_fn dispatch, void *arg);
void http_server_free(struct http_server *srv);

/* Stops accepting; answers what is in flight with "Connection: close"; calls drained after. */
void http_server_drain(struct http_server *srv, http_drained_fn drained, void *arg);
size_t http_server_inflight(const struct http_server *srv);

/*
 * Serves one request as evhttp hands it over (the built-in answers, routing, dispatch): the
 * request fuzz target calls it with requests it built itself.
 */
void http_server_handle(struct http_server *srv, struct evhttp_request *ev);

/* Adds a response header; -1 when the name or the value could split the response. */
int http_add_header(struct http_request *r, const char *name, const char *value);

/* Sends status with a JSON body (NULL for none) and frees r. */
void http_reply(struct http_request *r, int status, const char *json, size_t len);

/* Sends {"result":"fail","error":message}, with "detail" when the server runs with debug. */
void http_reply_error(struct http_request *r, int status, const char *message, const char *detail);

#endif
