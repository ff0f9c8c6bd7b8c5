/*
 * http_conns.c: the worker's HTTP connections, watched so that a drain never cuts a request.
 *
 * evhttp hands a request over only once its body has been read whole, and libevent 2.1 has no
 * hook for a request that has begun (no evhttp_set_newreqcb): a draining worker that counted
 * only the requests it was handed could exit with half a body read. So evhttp makes each
 * connection's bufferevent through our callback (evhttp_set_bevcb), and evbuffer callbacks
 * on its input and output tell a request's bytes arriving from its answer being written:
 *
 *   idle --bytes in--> arriving --evhttp hands it over--> dispatched --answer out--> idle
 *                                                                   (or arriving, if the
 *                                                                    next one is already in)
 *
 * The bufferevent callback runs before evhttp has made its connection; the connection is
 * picked up on the same turn of the loop, before anything is read from it (attach: evhttp
 * makes the connection the bufferevent's callback argument), and it tells us of its end
 * through its close callback. A reference on the bufferevent keeps it alive until then.
 * Connections are found by their descriptor, which the kernel numbers densely.
 *
 * A draining server closes the kept-alive connections between requests (nothing unread in
 * the kernel either) and waits for the arriving requests as for the dispatched ones. At its
 * deadline an arriving request is answered here, since evhttp cannot answer a request it has not
 * finished reading: the connection is taken from evhttp (our callbacks on its bufferevent), a
 * canned 503 is written, the sending side is shut, and what the client still sends is read and
 * dropped until it closes (or for a second), so that the answer is not lost to a reset; then evhttp
 * frees the connection.
 */
#include "autoconfig.h"

#include "http_conns.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "metrics.h"

#define LINGER_S 1

struct http_conn {
	struct http_conns *set;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* NULL until attached */
	struct evbuffer_cb_entry *in_cb, *out_cb;
	evutil_socket_t fd;
	bool arriving;	 /* bytes of a request sesame has not been handed */
	bool dispatched; /* its request is sesame's until the answer is written */
	bool cut;	 /* answered 503 by http_conns_cut; closes once that is written */
	bool served;	 /* has had a request answered: kept alive */
	struct http_conn *next_new;
};

struct http_conns {
	struct event_base *base;
	struct event *attach_ev;
	struct http_conn *fresh; /* made by the bufferevent callback, not attached yet */
	struct http_conn **by_fd;
	size_t cap;
	size_t cutting;
	void (*cut_done)(void *arg);
	void *cut_arg;
};

static const char CUT_BODY[] = "{\"result\":\"fail\",\"error\":\"server shutting down\"}";

static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct http_conn *c = arg;
	if (info->n_added > 0 && !c->dispatched)
		c->arriving = true;
}

/* The answer of a dispatched request is being written: what arrives next is a new request. */
static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct http_conn *c = arg;
	if (info->n_added == 0 || !c->dispatched)
		return;
	c->dispatched = false;
	c->arriving = evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
}

/* Unhooks c from its bufferevent and frees it. */
static void conn_free(struct http_conn *c)
{
	if (c->in_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
	if (c->out_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_cb);
	free(c);
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
	struct http_conn *c = arg;
	struct http_conns *set = c->set;
	bool was_cut = c->cut;
	evhttp_connection_set_closecb(evcon, NULL, NULL);
	if ((size_t)c->fd < set->cap && set->by_fd[c->fd] == c)
		set->by_fd[c->fd] = NULL;
	conn_free(c);
	if (was_cut && --set->cutting == 0 && set->cut_done != NULL)
		set->cut_done(set->cut_arg);
}

static int table_put(struct http_conns *set, struct http_conn *c)
{
	size_t fd = (size_t)c->fd;
	if (fd >= set->cap) {
		size_t cap = set->cap > 0 ? set->cap : 64;
		while (cap <= fd)
			cap *= 2;
		struct http_conn **t = realloc(set->by_fd, cap * sizeof(*t));
		if (t == NULL)
			return -1;
		memset(t + set->cap, 0, (cap - set->cap) * sizeof(*t));
		set->by_fd = t;
		set->cap = cap;
	}
	set->by_fd[fd] = c;
	return 0;
}

/* c's bufferevent now belongs to an evhttp connection (or evhttp has already freed it). */
static void attach(struct http_conns *set, struct http_conn *c)
{
	bufferevent_event_cb evcb = NULL;
	void *evcon = NULL;
	bufferevent_getcb(c->bev, NULL, NULL, &evcb, &evcon);
	c->fd = bufferevent_getfd(c->bev);
	if (evcb == NULL || evcon == NULL || c->fd < 0 || table_put(set, c) != 0) {
		/* Freed by evhttp already (out of memory), or not ours to watch: left as it is. */
		struct bufferevent *bev = c->bev;
		conn_free(c);
		bufferevent_decref(bev);
		return;
	}
	c->evcon = evcon;
	evhttp_connection_set_closecb(c->evcon, on_close, c);
	bufferevent_decref(c->bev);
}

static void on_attach(evutil_socket_t fd, short what, void *arg)
{
	struct http_conns *set = arg;
	while (set->fresh != NULL) {
		struct http_conn *c = set->fresh;
		set->fresh = c->next_new;
		attach(set, c);
	}
}

/* evhttp's bufferevent callback: the bufferevent evhttp would make, with our watch on it. */
static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
	struct http_conns *set = arg;
	struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
	struct http_conn *c = calloc(1, sizeof(*c));
	if (bev == NULL || c == NULL)
		goto fail;
	c->set = set;
	c->bev = bev;
	c->fd = -1;
	c->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
	c->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), on_output, c);
	if (c->in_cb == NULL || c->out_cb == NULL)
		goto fail;
	bufferevent_incref(bev);
	c->next_new = set->fresh;
	set->fresh = c;
	event_active(set->attach_ev, EV_TIMEOUT, 1);
	return bev;
fail:
	/* An unwatched connection still works; a drain just cannot see its request. */
	if (c != NULL && bev != NULL)
		conn_free(c);
	else
		free(c);
	return bev;
}

struct http_conns *http_conns_new(struct evhttp *http, struct event_base *base)
{
	struct http_conns *set = calloc(1, sizeof(*set));
	if (set == NULL)
		return NULL;
	set->base = base;
	set->attach_ev = event_new(base, -1, 0, on_attach, set);
	if (set->attach_ev == NULL) {
		free(set);
		return NULL;
	}
	evhttp_set_bevcb(http, make_bev, set);
	return set;
}

void http_conns_free(struct http_conns *set)
{
	if (set == NULL)
		return;
	/* Made but never attached: evhttp has freed them with the server, but for our
	 * reference. */
	while (set->fresh != NULL) {
		struct http_conn *c = set->fresh;
		set->fresh = c->next_new;
		struct bufferevent *bev = c->bev;
		conn_free(c);
		bufferevent_decref(bev);
	}
	event_free(set->attach_ev);
	free(set->by_fd);
	free(set);
}

static struct http_conn *find(const struct http_conns *set, struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	if (evcon == NULL)
		return NULL;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;
	if (fd < 0 || (size_t)fd >= set->cap)
		return NULL;
	struct http_conn *c = set->by_fd[fd];
	return c != NULL && c->bev == bev ? c : NULL;
}

void http_conns_dispatched(struct http_conns *set, struct evhttp_request *req)
{
	struct http_conn *c = find(set, req);
	if (c == NULL)
		return;
	c->arriving = false;
	c->dispatched = true;
	c->served = true;
}

size_t http_conns_arriving(const struct http_conns *set)
{
	size_t n = 0;
	for (size_t fd = 0; fd < set->cap; fd++) {
		const struct http_conn *c = set->by_fd[fd];
		if (c != NULL && (c->arriving || c->cut))
			n++;
	}
	return n;
}

/* evhttp reads from c (it is not writing an answer of its own, which it reads nothing in). */
static bool reading(const struct http_conn *c)
{
	bufferevent_data_cb readcb = NULL;
	bufferevent_getcb(c->bev, &readcb, NULL, NULL, NULL);
	return readcb != NULL;
}

/* Bytes the kernel holds for c that the loop has not read yet: a request, most likely. */
static bool unread(const struct http_conn *c)
{
	int n = 0;
	return ioctl(c->fd, FIONREAD, &n) != 0 || n > 0;
}

/*
 * A kept-alive connection between requests. A new one is not idle: its client connected to
 * send a request, which may be a moment behind; it is served, or closed when the worker exits.
 */
static bool idle(const struct http_conn *c)
{
	return c->served && !c->arriving && !c->dispatched && !c->cut && reading(c) &&
	       evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && !unread(c);
}

void http_conns_close_idle(struct http_conns *set)
{
	for (size_t fd = 0; fd < set->cap; fd++) {
		struct http_conn *c = set->by_fd[fd];
		if (c != NULL && idle(c))
			evhttp_connection_free(c->evcon); /* on_close forgets c */
	}
}

/* Reads and drops what a cut request's client still sends (evhttp's deferred read too). */
static void cut_read(struct bufferevent *bev, void *arg)
{
	struct evbuffer *in = bufferevent_get_input(bev);
	evbuffer_drain(in, evbuffer_get_length(in));
}

/* The 503 is out: the client reads it, then sees the end of the stream. */
static void cut_written(struct bufferevent *bev, void *arg)
{
	struct http_conn *c = arg;
	shutdown(c->fd, SHUT_WR);
}

/* The client closed, failed, or lingered past LINGER_S. */
static void cut_event(struct bufferevent *bev, short what, void *arg)
{
	struct http_conn *c = arg;
	evhttp_connection_free(c->evcon);
}

static int write_503(struct evbuffer *out)
{
	char date[64] = "";
	time_t now = time(NULL);
	struct tm tm;
	if (gmtime_r(&now, &tm) != NULL)
		evutil_date_rfc1123(date, sizeof(date), &tm);
	return evbuffer_add_printf(out,
				   "HTTP/1.1 503 Service Unavailable\r\n"
				   "Content-Type: application/json\r\n"
				   "Content-Length: %zu\r\n"
				   "Connection: close\r\n"
				   "Retry-After: 1\r\n"
				   "Date: %s\r\n"
				   "\r\n%s",
				   sizeof(CUT_BODY) - 1, date, CUT_BODY);
}

static void log_cut(struct http_conn *c)
{
	char *addr = NULL;
	ev_uint16_t port = 0;
	evhttp_connection_get_peer(c->evcon, &addr, &port);
	struct access_entry e = {
	    .method = "-",
	    .path = "-",
	    .status = 503,
	    .remote = addr != NULL ? addr : "-",
	    .request_id = "-",
	};
	accesslog_write(&e);
	metrics_request_unparsed("-", 503);
}

/* Takes c from evhttp and answers its request 503 (or closes it, if that cannot be done). */
static void cut_one(struct http_conn *c)
{
	struct timeval linger = {.tv_sec = LINGER_S};
	bufferevent_setcb(c->bev, cut_read, cut_written, cut_event, c);
	bufferevent_set_timeouts(c->bev, &linger, &linger);
	cut_read(c->bev, c); /* what came with the request so far is not read any further */
	if (write_503(bufferevent_get_output(c->bev)) < 0 ||
	    bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0) {
		evhttp_connection_free(c->evcon);
		return;
	}
	log_cut(c);
	c->cut = true;
	c->set->cutting++;
}

size_t http_conns_cut(struct http_conns *set, void (*done)(void *arg), void *arg)
{
	set->cut_done = done;
	set->cut_arg = arg;
	http_conns_close_idle(set);
	for (size_t fd = 0; fd < set->cap; fd++) {
		struct http_conn *c = set->by_fd[fd];
		if (c != NULL && c->arriving && !c->cut && reading(c))
			cut_one(c);
	}
	return set->cutting;
}
