/*
 * http.c: the worker's HTTP server.
 *
 * evhttp accepts on the worker's slot sockets with every limit set (body, headers, timeouts).
 * Each request gets a struct http_request; the built-in /healthz is answered here, /readyz by
 * the worker's readiness checks (ready.c) it was given, /metrics (metrics.c) to the peers
 * server.metrics allows, an unknown
 * path gets 404 and a known path with another method 405 with Allow, and everything else goes
 * to the dispatcher (the Lua layer), which replies through http_reply, now or after its
 * coroutine has waited on a job. Every reply, built-in or not, is JSON, carries X-Request-Id
 * and writes one access-log line.
 *
 * evhttp answers requests it cannot parse (too large, malformed) by itself: http_errors.c makes
 * those answers JSON too. Each head is checked for ambiguous framing before its body is read
 * (http_framing.c); a refused one is answered 400 and its connection closed.
 *
 * A request that waits on a job thread can be watched for its client leaving: evhttp reads
 * nothing from a connection while its request is being served, so it would learn of a close
 * only when the answer is written. An EV_CLOSED event on the socket learns it at once, and the
 * waiting work is dropped (http_watch_close).
 *
 * A draining server has given its listening sockets back (the master keeps them open, so the
 * queue survives) and closes each connection after its current response. A connection a
 * request may come on any moment (kept alive between two requests, or new and silent so far)
 * stays open for SILENT_GRACE_MS from the drain's start or its last answer's last byte: a
 * client answered a moment before may be sending its next request already, and closing the
 * connection under it would leave that request unanswered; sent within the grace, it is
 * answered (Connection: close). It reports drained once nothing is in flight, no request is
 * still arriving and no answer is still being written (http_conns.c sees a request from its
 * first byte, long before evhttp hands it over, and an answer until its last byte is with the
 * kernel), and no connection is left in its grace: at once, when no client is connected. At
 * the drain's deadline, http_server_cut answers the requests still arriving 503 and closes the
 * silent connections.
 */
#include "autoconfig.h"

#include "http.h"
#include "http_conns.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "http_errors.h"
#include "http_framing.h"
#include "log.h"
#include "metrics.h"
#include "proxies.h"
#include "request.h"

/*
 * How long a draining server keeps open a connection a request may come on any moment (half of
 * server.shutdown_timeout at most).
 */
#define SILENT_GRACE_MS 1000

struct http_server {
	struct evhttp *http;
	struct http_conns *conns; /* every connection, to see requests still arriving */
	struct event_base *base;
	const struct router *router;
	http_dispatch_fn dispatch;
	void *arg;
	struct evhttp_bound_socket **bound;
	size_t nbound;
	struct timeval timeout, keepalive;
	bool debug;
	const struct proxies *proxies; /* server.trusted_proxies */
	const struct proxies *metrics; /* server.metrics.allow; NULL when it is off */
	size_t inflight;
	uint64_t grace_ns; /* SILENT_GRACE_MS, or less with a short server.shutdown_timeout */
	bool draining;
	http_drained_fn drained;
	http_ready_fn ready;
	void *ready_arg;
	void *drained_arg;
	struct event *drain_timer;
	struct event *resume_accept; /* accepting paused: out of file descriptors */
	uint64_t accept_warned_ns;
	char id_prefix[17];
	uint64_t id_counter;
};

/*
 * The listener's error callback carries no argument of ours, and a worker runs one server:
 * this is it.
 */
static struct http_server *the_server;

const char *http_method_name(int cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return "OTHER";
	}
}

void http_connection_peer(struct evhttp_connection *conn, char *out, size_t len)
{
	const char *addr = NULL;
	ev_uint16_t port = 0;
	snprintf(out, len, "-");
	if (conn == NULL)
		return;
	/* The address is a char ** on libevent 2.1, a const char ** on 2.2. */
	evhttp_connection_get_peer(conn, (void *)&addr, &port);
	if (addr != NULL)
		snprintf(out, len, "%s", addr);
}

void http_peer_address(struct evhttp_request *ev, char *out, size_t len)
{
	http_connection_peer(evhttp_request_get_connection(ev), out, len);
}

/* The most X-Forwarded-For headers a request's client address is looked for in. */
#define XFF_MAX 16

/* The client's address into r->remote: the peer's, or the one its trusted proxy names. */
static void client_address(struct http_server *srv, struct http_request *r)
{
	const char *xff[XFF_MAX];
	size_t n = 0;
	struct evkeyval *h;
	if (!proxies_trusted(srv->proxies, r->peer)) {
		snprintf(r->remote, sizeof(r->remote), "%s", r->peer);
		return;
	}
	/* Several headers are one list, in order; the right-most ones are the nearest. */
	TAILQ_FOREACH(h, evhttp_request_get_input_headers(r->ev), next)
	{
		if (evutil_ascii_strcasecmp(h->key, "X-Forwarded-For") != 0)
			continue;
		if (n == XFF_MAX)
			memmove(xff, xff + 1, --n * sizeof(*xff));
		xff[n++] = h->value;
	}
	proxies_client(srv->proxies, r->peer, xff, n, r->remote, sizeof(r->remote));
}

static void log_access(const char *method, const char *path, int status, uint64_t start_ns,
		       const char *remote, const char *id)
{
	struct access_entry e = {
	    .method = method,
	    .path = path,
	    .status = status,
	    .duration_ms = start_ns ? (double)(clock_mono_ns() - start_ns) / 1e6 : 0.0,
	    .remote = remote,
	    .request_id = id,
	};
	accesslog_write(&e);
}

/* A field value (RFC 9110 5.5): visible characters, spaces and tabs; no CR, LF, NUL or other
 * control character, so that it cannot split the response. */
static bool field_value_ok(const char *value)
{
	for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
		if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
			return false;
	}
	return true;
}

int http_add_header(struct http_request *r, const char *name, const char *value)
{
	size_t nlen = strlen(name);
	if (nlen == 0 ||
	    strspn(name, "!#$%&'*+-.^_`|~0123456789"
			 "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != nlen ||
	    !field_value_ok(value))
		return -1;
	return evhttp_add_header(evhttp_request_get_output_headers(r->ev), name, value);
}

/* Before the connection can close: an event left on its descriptor would outlive it. */
static void unwatch(struct http_request *r)
{
	if (r->close_ev != NULL)
		event_free(r->close_ev);
	r->close_ev = NULL;
}

/* The end of r, answered or not: its log line, its memory. */
static void request_end(struct http_request *r, int status)
{
	/* A parameterised route logs its pattern: a parameter may be a secret (a reset token). */
	const char *logged = r->route != NULL && r->params.n > 0 ? r->route->pattern : r->path;
	log_access(r->method, logged, status, r->start_ns, r->remote, r->id);
	metrics_request(r->route != NULL ? r->route->metric : r->metric_route, r->method, status,
			clock_mono_ns() - r->start_ns);
	r->srv->inflight--;
	free(r->path);
	free(r);
}

bool http_head_only(struct evhttp_request *ev, int status, size_t len)
{
	if (evhttp_request_get_command(ev) != EVHTTP_REQ_HEAD)
		return false;
	/* libevent gives a HEAD answer no length and writes whatever body it is handed. */
	if (status != 204 && status != 304) {
		struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
		char n[24];
		snprintf(n, sizeof(n), "%zu", len);
		evhttp_remove_header(out, "Content-Length");
		evhttp_add_header(out, "Content-Length", n);
	}
	return true;
}

/* Sends status with body (NULL for none) of type ctype, and frees r. */
static void send_reply(struct http_request *r, int status, const char *ctype, const char *json,
		       size_t len)
{
	struct http_server *srv = r->srv;
	unwatch(r);
	struct evkeyvalq *out = evhttp_request_get_output_headers(r->ev);
	struct evbuffer *buf = NULL;
	evhttp_remove_header(out, "Content-Type");
	evhttp_add_header(out, "Content-Type", ctype);
	evhttp_add_header(out, "X-Request-Id", r->id);
	/* Not while the next request is arriving behind it: that one is read and answered too. */
	if (srv->draining && !http_conns_pending(srv->conns, r->ev))
		evhttp_add_header(out, "Connection", "close");
	bool head = http_head_only(r->ev, status, json != NULL ? len : 0);
	if (json != NULL && status != 204 && status != 304 && !head) {
		buf = evbuffer_new();
		if (buf != NULL)
			evbuffer_add(buf, json, len);
	}
	struct evhttp_connection *conn = evhttp_request_get_connection(r->ev);
	evhttp_send_reply(r->ev, status, NULL, buf);
	/* The reply is written on a later turn of the loop (a draining worker waits for it:
	 * http_conns_arriving). Between requests, a connection waits only as long as keepalive
	 * allows. */
	if (conn != NULL)
		evhttp_connection_set_timeout_tv(conn, &srv->keepalive);
	if (buf != NULL)
		evbuffer_free(buf);
	request_end(r, status);
}

void http_reply(struct http_request *r, int status, const char *json, size_t len)
{
	send_reply(r, status, "application/json", json, len);
}

/* GET /metrics: the node's metrics in Prometheus's text format. */
static void reply_metrics(struct http_request *r)
{
	size_t len = 0;
	char *text = metrics_render(&len);
	if (text == NULL) {
		http_reply_error(r, 500, "internal server error", "out of memory");
		return;
	}
	send_reply(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

static void on_peer_closed(evutil_socket_t fd, short what, void *arg)
{
	struct http_request *r = arg;
	r->gone(r->gone_arg);
}

void http_watch_close(struct http_request *r, void (*gone)(void *arg), void *arg)
{
	struct evhttp_connection *conn = evhttp_request_get_connection(r->ev);
	if (r->close_ev != NULL || conn == NULL ||
	    !(event_base_get_features(r->srv->base) & EV_FEATURE_EARLY_CLOSE))
		return;
	evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(conn));
	if (fd < 0)
		return;
	r->gone = gone;
	r->gone_arg = arg;
	r->close_ev = event_new(r->srv->base, fd, EV_CLOSED, on_peer_closed, r);
	if (r->close_ev != NULL && event_add(r->close_ev, NULL) != 0) {
		event_free(r->close_ev);
		r->close_ev = NULL;
	}
}

void http_reply_gone(struct http_request *r)
{
	/* Freeing the connection frees its request too: nothing is written to a closed peer. */
	struct evhttp_connection *conn = evhttp_request_get_connection(r->ev);
	unwatch(r);
	if (conn != NULL)
		evhttp_connection_free(conn);
	else
		evhttp_request_free(r->ev);
	request_end(r, 499);
}

void http_reply_error(struct http_request *r, int status, const char *message, const char *detail)
{
	size_t len;
	char *body = http_error_body(message, r->srv->debug ? detail : NULL, &len);
	http_reply(r, status, body, len);
	free(body);
}

static void reply_literal(struct http_request *r, int status, const char *json)
{
	http_reply(r, status, json, strlen(json));
}

static void make_id(struct http_server *srv, struct http_request *r)
{
	const char *given =
	    evhttp_find_header(evhttp_request_get_input_headers(r->ev), "X-Request-Id");
	if (given != NULL && request_id_ok(given))
		snprintf(r->id, sizeof(r->id), "%s", given);
	else
		snprintf(r->id, sizeof(r->id), "%s%08llx", srv->id_prefix,
			 (unsigned long long)++srv->id_counter);
}

static struct http_request *request_new(struct http_server *srv, struct evhttp_request *ev)
{
	struct http_request *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->ev = ev;
	r->srv = srv;
	r->start_ns = clock_mono_ns();
	r->method = http_method_name(evhttp_request_get_command(ev));
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	r->path = strdup(path != NULL && path[0] != '\0' ? path : "/");
	if (r->path == NULL) {
		free(r);
		return NULL;
	}
	http_peer_address(ev, r->peer, sizeof(r->peer));
	client_address(srv, r);
	make_id(srv, r);
	return r;
}

static void on_request(struct evhttp_request *ev, void *arg)
{
	struct http_server *srv = arg;
	http_conns_dispatched(srv->conns, ev);
	struct http_request *r = request_new(srv, ev);
	if (r == NULL) {
		evhttp_send_error(ev, HTTP_INTERNAL, NULL);
		return;
	}
	srv->inflight++;
	struct evhttp_connection *conn = evhttp_request_get_connection(ev);
	if (conn != NULL)
		evhttp_connection_set_timeout_tv(conn, &srv->timeout);

	const char *why;
	if (http_framing_verdict(ev, &why) != 0) {
		evhttp_add_header(evhttp_request_get_output_headers(ev), "Connection", "close");
		http_reply_error(r, 400, why, NULL);
		return;
	}
	if (r->path[0] != '/') {
		http_reply_error(r, 400, "malformed request", NULL);
		return;
	}
	bool get = strcmp(r->method, "GET") == 0 || strcmp(r->method, "HEAD") == 0;
	if (strcmp(r->path, "/healthz") == 0)
		r->metric_route = METRICS_ROUTE_HEALTHZ;
	if (get && strcmp(r->path, "/healthz") == 0) {
		reply_literal(r, 200, "{\"result\":\"success\",\"status\":\"ok\"}");
		return;
	}
	bool readyz = srv->ready != NULL && strcmp(r->path, "/readyz") == 0;
	if (readyz)
		r->metric_route = METRICS_ROUTE_READYZ;
	if (get && readyz) {
		srv->ready(srv->ready_arg, r);
		return;
	}
	/* A peer the metrics are not for finds no such path (or a route script's). */
	bool metrics = srv->metrics != NULL && strcmp(r->path, "/metrics") == 0 &&
		       proxies_trusted(srv->metrics, r->peer);
	if (metrics)
		r->metric_route = METRICS_ROUTE_METRICS;
	if (get && metrics) {
		reply_metrics(r);
		return;
	}
	char allow[128];
	switch (router_match(srv->router, r->method, r->path, &r->route, &r->params, allow,
			     sizeof(allow))) {
	case ROUTER_FOUND:
		srv->dispatch(srv->arg, r);
		return;
	case ROUTER_NO_METHOD:
		evhttp_add_header(evhttp_request_get_output_headers(ev), "Allow", allow);
		reply_literal(r, 405, "{\"result\":\"fail\",\"error\":\"method not allowed\"}");
		return;
	case ROUTER_NO_PATH:
		break;
	}
	if (strcmp(r->path, "/healthz") == 0 || readyz || metrics) {
		evhttp_add_header(evhttp_request_get_output_headers(ev), "Allow", "GET, HEAD");
		reply_literal(r, 405, "{\"result\":\"fail\",\"error\":\"method not allowed\"}");
		return;
	}
	reply_literal(r, 404, "{\"result\":\"fail\",\"error\":\"not found\"}");
}

void http_server_handle(struct http_server *srv, struct evhttp_request *ev)
{
	on_request(ev, srv);
}

static void set_accepting(struct http_server *srv, bool on)
{
	for (size_t i = 0; i < srv->nbound; i++) {
		struct evconnlistener *l = evhttp_bound_socket_get_listener(srv->bound[i]);
		if (on)
			evconnlistener_enable(l);
		else
			evconnlistener_disable(l);
	}
}

static void on_resume_accept(evutil_socket_t fd, short what, void *arg)
{
	set_accepting(arg, true);
}

/*
 * accept() failed for a reason other than a retriable one: out of file descriptors, most
 * likely. The socket stays readable, so accepting pauses for a moment instead of spinning;
 * the waiting connections stay queued in the kernel meanwhile.
 */
static void on_accept_error(struct evconnlistener *listener, void *arg)
{
	struct http_server *srv = the_server;
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval pause = {.tv_usec = 100000};
	if (srv == NULL || srv->draining)
		return;
	if (!evtimer_pending(srv->resume_accept, NULL)) {
		uint64_t now = clock_mono_ns();
		if (now - srv->accept_warned_ns > 10000000000u || srv->accept_warned_ns == 0) {
			log_warn("cannot accept connections: %s; pausing accepts (said at most "
				 "every 10 s)",
				 evutil_socket_error_to_string(err));
			srv->accept_warned_ns = now;
		}
		set_accepting(srv, false);
		evtimer_add(srv->resume_accept, &pause);
	}
}

struct http_server *http_server_new(const struct config *cfg, struct event_base *base,
				    const int *fds, size_t nfds, const struct router *router,
				    http_dispatch_fn dispatch, void *arg)
{
	struct http_server *srv = calloc(1, sizeof(*srv));
	if (srv == NULL)
		return NULL;
	srv->base = base;
	srv->router = router;
	srv->dispatch = dispatch;
	srv->arg = arg;
	srv->debug = cfg->debug;
	srv->proxies = &cfg->trusted_proxies;
	srv->metrics = cfg->metrics.on ? &cfg->metrics.allow : NULL;
	srv->timeout = (struct timeval){.tv_sec = cfg->timeout};
	srv->keepalive = (struct timeval){.tv_sec = cfg->keepalive};
	srv->grace_ns = (uint64_t)SILENT_GRACE_MS * 1000000u;
	if (srv->grace_ns > (uint64_t)cfg->shutdown_timeout * 500000000u)
		srv->grace_ns = (uint64_t)cfg->shutdown_timeout * 500000000u;
	unsigned char rnd[8];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(srv->id_prefix, sizeof(srv->id_prefix), rnd, 4);
	srv->http = evhttp_new(base);
	srv->bound = calloc(nfds ? nfds : 1, sizeof(*srv->bound));
	if (srv->http == NULL || srv->bound == NULL ||
	    (srv->conns = http_conns_new(srv->http, base)) == NULL)
		goto fail;
	evhttp_set_max_body_size(srv->http, (ev_ssize_t)cfg->max_body);
	evhttp_set_max_headers_size(srv->http, (ev_ssize_t)cfg->max_header);
	evhttp_set_timeout_tv(srv->http, &srv->timeout);
	evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						  EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						  EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(srv->http, on_request, srv);
	http_errors_install(srv->http, cfg->max_header);
	http_framing_install(srv->http);
	/* A body too large is read to its end before the 413 goes out, so that the client sees
	 * the answer rather than a reset (bounded by server.timeout, like any read). */
	evhttp_set_flags(srv->http, EVHTTP_SERVER_LINGERING_CLOSE);
	for (size_t i = 0; i < nfds; i++) {
		srv->bound[i] = evhttp_accept_socket_with_handle(srv->http, fds[i]);
		if (srv->bound[i] == NULL) {
			log_error("cannot accept on socket %d", fds[i]);
			goto fail;
		}
		srv->nbound++;
		evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(srv->bound[i]),
					    on_accept_error);
	}
	srv->resume_accept = evtimer_new(base, on_resume_accept, srv);
	if (srv->resume_accept == NULL)
		goto fail;
	the_server = srv;
	return srv;
fail:
	http_server_free(srv);
	return NULL;
}

void http_server_set_ready(struct http_server *srv, http_ready_fn ready, void *arg)
{
	srv->ready = ready;
	srv->ready_arg = arg;
}

void http_server_free(struct http_server *srv)
{
	if (srv == NULL)
		return;
	if (srv->drain_timer != NULL)
		event_free(srv->drain_timer);
	if (srv->resume_accept != NULL)
		event_free(srv->resume_accept);
	if (the_server == srv)
		the_server = NULL;
	if (srv->http != NULL)
		evhttp_free(srv->http);
	http_conns_free(srv->conns);
	free(srv->bound);
	free(srv);
}

static void check_drained(evutil_socket_t fd, short what, void *arg)
{
	struct http_server *srv = arg;
	uint64_t now = clock_mono_ns();
	uint64_t before = now > srv->grace_ns ? now - srv->grace_ns : 0;
	size_t waiting = http_conns_close_silent(srv->conns, before);
	if (srv->inflight > 0 || http_conns_arriving(srv->conns) > 0 || waiting > 0)
		return;
	if (srv->drain_timer != NULL)
		event_del(srv->drain_timer);
	srv->drained(srv->drained_arg);
}

void http_server_drain(struct http_server *srv, http_drained_fn drained, void *arg)
{
	if (srv->draining)
		return;
	srv->draining = true;
	srv->drained = drained;
	srv->drained_arg = arg;
	/* Freeing the listener closes this worker's copy of each socket, not the master's. */
	for (size_t i = 0; i < srv->nbound; i++)
		evhttp_del_accept_socket(srv->http, srv->bound[i]);
	srv->nbound = 0;
	http_conns_drain(srv->conns);
	srv->drain_timer = event_new(srv->base, -1, EV_PERSIST, check_drained, srv);
	struct timeval every = {.tv_usec = 50000};
	if (srv->drain_timer == NULL || event_add(srv->drain_timer, &every) != 0) {
		/* Nothing would look again: no connection is left waiting for a grace. */
		log_error("http: cannot watch the drain: closing the idle connections at once");
		http_conns_close_silent(srv->conns, UINT64_MAX);
		if (srv->drain_timer != NULL)
			event_free(srv->drain_timer);
		srv->drain_timer = NULL;
		return;
	}
	check_drained(-1, 0, srv); /* nothing to wait for: drained now */
}

size_t http_server_inflight(const struct http_server *srv)
{
	return srv->inflight;
}

size_t http_server_arriving(const struct http_server *srv)
{
	return http_conns_arriving(srv->conns);
}

size_t http_server_cut(struct http_server *srv, http_drained_fn done, void *arg)
{
	return http_conns_cut(srv->conns, done, arg);
}
