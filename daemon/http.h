/* http.h: the worker's HTTP server on evhttp, and the replies every route goes through. */
#ifndef SESAME_HTTP_H
#define SESAME_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "router.h"

struct config;
struct event;
struct event_base;
struct evhttp_connection;
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
	char remote[64]; /* the client's address: the peer's, or behind a trusted proxy */
	char peer[64];	 /* the socket peer's address */
	uint64_t start_ns;
	/* a built-in answer's route label in the metrics (metrics.h); a route has its own */
	int metric_route;
	struct event *close_ev; /* armed by http_watch_close */
	void (*gone)(void *arg);
	void *gone_arg;
};

/* Called for each request that matched a route; the callee must reply, now or later. */
typedef void (*http_dispatch_fn)(void *arg, struct http_request *r);
/* Called once a draining server has no request left. */
typedef void (*http_drained_fn)(void *arg);
/* Answers GET /readyz, now or later. */
typedef void (*http_ready_fn)(void *arg, struct http_request *r);

struct http_server *http_server_new(const struct config *cfg, struct event_base *base,
				    const int *fds, size_t nfds, const struct router *router,
				    http_dispatch_fn dispatch, void *arg);
void http_server_free(struct http_server *srv);

/* Serves GET /readyz with ready (until set, /readyz is not found). */
void http_server_set_ready(struct http_server *srv, http_ready_fn ready, void *arg);

/*
 * Stops accepting; answers what is in flight, and the requests still arriving once they have,
 * with "Connection: close"; closes the connections with nothing to read or write once they
 * have been so for a second (less with a short server.shutdown_timeout), so that a request a
 * client was already sending on one is answered; calls drained once nothing is left, at once
 * when nothing is there (drained may be called before this returns).
 */
void http_server_drain(struct http_server *srv, http_drained_fn drained, void *arg);
size_t http_server_inflight(const struct http_server *srv);
/* Requests whose first bytes have come and that are not handed over yet (evhttp reads them). */
size_t http_server_arriving(const struct http_server *srv);
/*
 * The drain's deadline: answers each request still arriving 503 with "Connection: close"
 * rather than cutting it mid-way; returns how many, and calls done once they are written.
 */
size_t http_server_cut(struct http_server *srv, http_drained_fn done, void *arg);

/*
 * Serves one request as evhttp hands it over (the built-in answers, routing, dispatch): the
 * request fuzz target calls it with requests it built itself.
 */
void http_server_handle(struct http_server *srv, struct evhttp_request *ev);

/* The name of an enum evhttp_cmd_type, "OTHER" for one sesame does not serve. */
const char *http_method_name(int cmd);

/* The address of ev's peer into out, "-" when it has none. */
void http_peer_address(struct evhttp_request *ev, char *out, size_t len);

/* The address of conn's peer into out, "-" when it has none (or conn is NULL). */
void http_connection_peer(struct evhttp_connection *conn, char *out, size_t len);

/* Adds a response header; -1 when the name or the value could split the response. */
int http_add_header(struct http_request *r, const char *name, const char *value);

/*
 * For an answer to HEAD (true): sets Content-Length to len, that of the body a GET would get
 * (none for a 204 or 304); the caller then sends no body. False for any other method.
 */
bool http_head_only(struct evhttp_request *ev, int status, size_t len);

/* Sends status with a JSON body (NULL for none) and frees r. */
void http_reply(struct http_request *r, int status, const char *json, size_t len);

/* Sends {"result":"fail","error":message}, with "detail" when the server runs with debug. */
void http_reply_error(struct http_request *r, int status, const char *message, const char *detail);

/*
 * Calls gone(arg) on the loop if the client closes its connection before r is answered; the
 * callee must then end r with http_reply_gone. Without a backend that reports a peer's close
 * (EV_FEATURE_EARLY_CLOSE: epoll has it), nothing is watched.
 */
void http_watch_close(struct http_request *r, void (*gone)(void *arg), void *arg);

/* Ends r, whose client has left: nothing is sent, the connection is closed, 499 is logged. */
void http_reply_gone(struct http_request *r);

#endif
