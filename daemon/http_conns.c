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
 * through its close callback (ours alone: see http_conns.h). A reference on the bufferevent
 * keeps it alive until then. The bufferevent closes its descriptor when it is freed
 * (BEV_OPT_CLOSE_ON_FREE), as evhttp's own does: libevent 2.2's evhttp_connection_free leaves
 * the closing to the bufferevent, and 2.1's closes the descriptor itself only for a
 * bufferevent without that option. So the descriptor lives as long as the bufferevent: if
 * evhttp frees the connection before attach (it failed to make its request), the client is
 * closed when attach lets go of it, on the same turn. One gap is left, from libevent itself
 * and on out-of-memory paths only: if evhttp cannot enable the bufferevent, it closes the
 * descriptor after freeing the connection, and the bufferevent closes it again when it goes.
 * Connections are found by their descriptor, which the kernel numbers densely.
 *
 * A draining server closes the silent connections (kept alive between two requests, or new
 * and their request not begun; nothing unread in the kernel either) once they have been silent
 * for a grace its caller sets, counted from the drain's start or their last answer's last byte
 * (http_conns_close_silent), and waits for the arriving requests and the answers being written
 * as for the dispatched ones. An answer whose next request is already coming (pipelined) keeps its
 * connection open (http_conns_pending), so that request is read to its end too. At the deadline
 * an arriving request is answered here, since evhttp cannot answer a request it has not finished
 * reading: the connection is taken from evhttp (our callbacks on its bufferevent), a canned 503
 * is written, the sending side is shut, and what the client still sends is read and dropped
 * until it closes, LINGER_S after the 503 went out at most, so that the answer is not lost to a
 * reset; then evhttp frees the connection. A pass every CUT_PASS_MS cuts the connections whose
 * next request shows up behind an answer still being written, and tells the caller once no
 * answer is left to write.
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

#include "clock.h"
#include "http.h"
#include "log.h"
#include "metrics.h"

#define LINGER_S    1
#define CUT_PASS_MS 50

struct http_conn {
	struct http_conns *set;
	struct bufferevent *bev;
	struct evhttp_connection *evcon; /* NULL until attached */
	struct evbuffer_cb_entry *in_cb, *out_cb;
	struct event *linger_ev; /* once cut: the end of the wait for the client's close */
	evutil_socket_t fd;
	bool arriving;	 /* bytes of a request sesame has not been handed */
	bool dispatched; /* its request is sesame's until the answer is written */
	bool cut;	 /* answered 503 by http_conns_cut; closes once that is written */
	bool peer_done;	 /* cut, and the client has closed its side */
	uint64_t quiet_ns; /* draining: since when nothing was read or written (monotonic) */
	struct http_conn *next_new;
};

struct http_conns {
	struct event_base *base;
	struct event *attach_ev;
	struct http_conn *fresh; /* made by the bufferevent callback, not attached yet */
	struct http_conn **by_fd;
	size_t cap;
	bool draining;	      /* quiet_ns is kept */
	struct event *cut_ev; /* the deadline's pass, every CUT_PASS_MS */
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

/* Bytes the kernel holds for c that the loop has not read yet: a request, most likely. */
static bool unread(const struct http_conn *c)
{
	int n = 0;
	return ioctl(c->fd, FIONREAD, &n) != 0 || n > 0;
}

/* The next request's bytes are in, read or not (evhttp reads nothing while it serves one). */
static bool next_in(const struct http_conn *c)
{
	return evbuffer_get_length(bufferevent_get_input(c->bev)) > 0 || unread(c);
}

/*
 * The answer of a dispatched request is being written: what arrives next is a new request.
 * Bytes of it still in the kernel are asked about only when a drain looks (coming, idle), so
 * that an answer costs no system call.
 */
static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct http_conn *c = arg;
	/* A draining server's grace for the next request counts from an answer's last byte. */
	if (c->set->draining && info->n_deleted > 0 && evbuffer_get_length(buf) == 0)
		c->quiet_ns = clock_mono_ns();
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
	if (c->linger_ev != NULL)
		event_free(c->linger_ev);
	free(c);
}

static void on_close(struct evhttp_connection *evcon, void *arg)
{
	struct http_conn *c = arg;
	struct http_conns *set = c->set;
	evhttp_connection_set_closecb(evcon, NULL, NULL);
	if ((size_t)c->fd < set->cap && set->by_fd[c->fd] == c)
		set->by_fd[c->fd] = NULL;
	conn_free(c);
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
	if (set->by_fd[fd] != NULL) /* its close callback would have cleared it */
		log_error("http_conns: descriptor %zu is watched twice", fd);
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
	struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
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
	if (set->cut_ev != NULL)
		event_free(set->cut_ev);
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
}

bool http_conns_pending(const struct http_conns *set, struct evhttp_request *req)
{
	const struct http_conn *c = find(set, req);
	return c != NULL && c->dispatched && next_in(c);
}

/* An answer is being written on c: a reply, or an error page of evhttp's own. */
static bool answering(const struct http_conn *c)
{
	return !c->dispatched && !c->cut && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0;
}

/* A request sesame has not been handed is coming on c: bytes read, or still in the kernel. */
static bool coming(const struct http_conn *c)
{
	return !c->dispatched && !c->cut && (c->arriving || unread(c));
}

size_t http_conns_arriving(const struct http_conns *set)
{
	size_t n = 0;
	for (size_t fd = 0; fd < set->cap; fd++) {
		const struct http_conn *c = set->by_fd[fd];
		if (c != NULL && (c->cut || answering(c) || coming(c)))
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

/*
 * Nothing to read on c, nothing to write: kept alive between two requests, or new and its
 * request not begun. Its client may send one any moment.
 */
static bool silent(const struct http_conn *c)
{
	return !c->arriving && !c->dispatched && !c->cut && reading(c) &&
	       evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 && !unread(c);
}

void http_conns_drain(struct http_conns *set)
{
	uint64_t now = clock_mono_ns();
	set->draining = true;
	for (size_t fd = 0; fd < set->cap; fd++)
		if (set->by_fd[fd] != NULL)
			set->by_fd[fd]->quiet_ns = now;
}

size_t http_conns_close_silent(struct http_conns *set, uint64_t before_ns)
{
	size_t left = 0;
	for (size_t fd = 0; fd < set->cap; fd++) {
		struct http_conn *c = set->by_fd[fd];
		if (c == NULL || !silent(c))
			continue;
		if (c->quiet_ns <= before_ns)
			evhttp_connection_free(c->evcon); /* on_close forgets c */
		else
			left++;
	}
	return left;
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
	struct timeval linger = {.tv_sec = LINGER_S};
	if (c->peer_done || shutdown(c->fd, SHUT_WR) != 0 ||
	    evtimer_add(c->linger_ev, &linger) != 0)
		evhttp_connection_free(c->evcon);
}

/* The client closed or failed, or the 503 could not be written for LINGER_S. */
static void cut_event(struct bufferevent *bev, short what, void *arg)
{
	struct http_conn *c = arg;
	if ((what & BEV_EVENT_EOF) && evbuffer_get_length(bufferevent_get_output(bev)) > 0) {
		/* A half-close: the 503 is still read; cut_written closes once it is out. */
		c->peer_done = true;
		bufferevent_disable(bev, EV_READ);
		return;
	}
	evhttp_connection_free(c->evcon);
}

/* LINGER_S since the 503 went out, and the client still has not closed. */
static void cut_linger(evutil_socket_t fd, short what, void *arg)
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
	char remote[64];
	http_connection_peer(c->evcon, remote, sizeof(remote));
	struct access_entry e = {
	    .method = "-",
	    .path = "-",
	    .status = 503,
	    .remote = remote,
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
	/* No read timeout: a client still sending is read until LINGER_S after the 503. */
	bufferevent_set_timeouts(c->bev, NULL, &linger);
	cut_read(c->bev, c); /* what came with the request so far is not read any further */
	c->linger_ev = evtimer_new(c->set->base, cut_linger, c);
	if (c->linger_ev == NULL || write_503(bufferevent_get_output(c->bev)) < 0 ||
	    bufferevent_enable(c->bev, EV_READ | EV_WRITE) != 0) {
		evhttp_connection_free(c->evcon);
		return;
	}
	log_cut(c);
	c->cut = true;
}

/* One pass of the deadline: cuts the requests coming; returns how many answers are left. */
static size_t cut_pass(struct http_conns *set)
{
	size_t left = 0;
	http_conns_close_silent(set, UINT64_MAX);
	for (size_t fd = 0; fd < set->cap; fd++) {
		struct http_conn *c = set->by_fd[fd];
		if (c != NULL && reading(c) && coming(c))
			cut_one(c); /* which may close it */
		c = set->by_fd[fd];
		if (c != NULL && (c->cut || answering(c)))
			left++;
	}
	return left;
}

static void on_cut_pass(evutil_socket_t fd, short what, void *arg)
{
	struct http_conns *set = arg;
	if (cut_pass(set) > 0)
		return;
	event_del(set->cut_ev);
	set->cut_done(set->cut_arg);
}

size_t http_conns_cut(struct http_conns *set, void (*done)(void *arg), void *arg)
{
	struct timeval every = {.tv_usec = CUT_PASS_MS * 1000};
	size_t left = cut_pass(set);
	if (left == 0 || set->cut_ev != NULL)
		return left;
	set->cut_done = done;
	set->cut_arg = arg;
	set->cut_ev = event_new(set->base, -1, EV_PERSIST, on_cut_pass, set);
	if (set->cut_ev == NULL || event_add(set->cut_ev, &every) != 0)
		return 0; /* done would never be called: the caller waits for nothing */
	return left;
}
