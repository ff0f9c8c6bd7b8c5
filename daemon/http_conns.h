/* http_conns.h: the worker's HTTP connections, watched so that a drain never cuts a request. */
#ifndef SESAME_HTTP_CONNS_H
#define SESAME_HTTP_CONNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evhttp;
struct evhttp_request;
struct http_conns;

/*
 * Watches every connection http accepts from now on (it makes their bufferevents). The
 * connections' close callbacks are http_conns' own: nothing else may set one
 * (evhttp_connection_set_closecb), or a closed connection would stay in the set.
 */
struct http_conns *http_conns_new(struct evhttp *http, struct event_base *base);
/* After evhttp_free: the connections are gone. */
void http_conns_free(struct http_conns *set);

/* req, whole, is handed to sesame: its connection carries no request still arriving. */
void http_conns_dispatched(struct http_conns *set, struct evhttp_request *req);

/* req is being answered and the next request's first bytes are already in (pipelined). */
bool http_conns_pending(const struct http_conns *set, struct evhttp_request *req);

/*
 * What a drain waits for besides the requests in flight: connections that have received bytes
 * (part of a request line, headers or a body, read or still in the kernel) of a request sesame
 * has not been handed yet, whose answer is still being written (a reply, an error page of
 * evhttp's own), or that are being answered 503 by http_conns_cut.
 */
size_t http_conns_arriving(const struct http_conns *set);

/* A drain begins: each connection is silent since now at the latest (http_conns_close_silent). */
void http_conns_drain(struct http_conns *set);

/*
 * Closes the connections that have nothing to read or write (kept alive between two requests,
 * or new and their request not begun) and have been so since before_ns or earlier (monotonic;
 * UINT64_MAX: all of them); returns how many such connections it left open.
 */
size_t http_conns_close_silent(struct http_conns *set, uint64_t before_ns);

/*
 * The deadline of a drain: closes the idle connections and answers each request still
 * arriving 503 (JSON, Connection: close) instead of reading the rest of it, and lets the
 * answers being written finish (a connection whose next request arrives behind its answer
 * gets the 503 once that is out). Returns how many connections are being answered so; done(arg)
 * is called once none is left, each answer written and its connection closed.
 */
size_t http_conns_cut(struct http_conns *set, void (*done)(void *arg), void *arg);

#endif
