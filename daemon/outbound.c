/*
 * outbound.c: a worker's outbound transfers (mail over SMTP, HTTP requests) on libcurl's multi
 * interface, driven by the worker's own libevent loop.
 *
 * As libcurl's hiperfifo example does it: curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when its next timeout is due (CURLMOPT_TIMERFUNCTION); one
 * libevent event per socket and one timer hand each readiness back to curl_multi_socket_action,
 * after which the finished transfers are read off curl_multi_info_read and their done callbacks
 * run. Nothing here blocks: name lookups run on curl's resolver thread. A cancelled transfer
 * leaves the multi handle at once, and its done runs on a later turn of the loop, never inside
 * the caller. The pool is created on first use, so a worker that sends nothing pays nothing.
 */
#include "autoconfig.h"

#include "outbound.h"

#include <event2/event.h>
#include <stdlib.h>

#include "log.h"

struct outbound {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	struct outbound_transfer *transfers; /* in flight, or cancelled and not yet done */
};

static void unlink_transfer(struct outbound_transfer *t)
{
	struct outbound *ob = t->ob;
	if (t->prev != NULL)
		t->prev->next = t->next;
	else if (ob->transfers == t)
		ob->transfers = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	t->prev = t->next = NULL;
}

/* The transfer leaves the pool and its owner hears of it. */
static void complete(struct outbound_transfer *t)
{
	unlink_transfer(t);
	if (t->later != NULL) {
		event_free(t->later);
		t->later = NULL;
	}
	t->ob = NULL;
	t->done(t);
}

static void read_finished(struct outbound *ob)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(ob->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		struct outbound_transfer *t = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
		CURLcode result = msg->data.result;
		curl_multi_remove_handle(ob->multi, msg->easy_handle);
		t->result = result;
		complete(t);
	}
}

static void on_socket(evutil_socket_t fd, short what, void *arg)
{
	struct outbound *ob = arg;
	int flags =
	    (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
	int running;
	curl_multi_socket_action(ob->multi, fd, flags, &running);
	read_finished(ob);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct outbound *ob = arg;
	int running;
	curl_multi_socket_action(ob->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	read_finished(ob);
}

/* CURLMOPT_SOCKETFUNCTION: watch s as curl asks; its event is kept as the socket's pointer. */
static int watch_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct outbound *ob = userp;
	struct event *ev = socketp;
	if (ev != NULL) {
		event_free(ev);
		curl_multi_assign(ob->multi, s, NULL);
	}
	if (what == CURL_POLL_REMOVE)
		return 0;
	short kind = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
	ev = event_new(ob->base, s, kind | EV_PERSIST, on_socket, ob);
	if (ev == NULL || event_add(ev, NULL) != 0) {
		if (ev != NULL)
			event_free(ev);
		log_error("outbound: cannot watch a socket: out of memory");
		return -1;
	}
	curl_multi_assign(ob->multi, s, ev);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: one timer, re-armed as curl asks; -1 stops it. */
static int arm_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct outbound *ob = userp;
	if (timeout_ms < 0)
		return evtimer_del(ob->timer);
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	return evtimer_add(ob->timer, &tv);
}

struct outbound *outbound_new(struct event_base *base)
{
	struct outbound *ob = calloc(1, sizeof(*ob));
	if (ob == NULL)
		return NULL;
	ob->base = base;
	ob->multi = curl_multi_init();
	ob->timer = evtimer_new(base, on_timer, ob);
	if (ob->multi == NULL || ob->timer == NULL) {
		outbound_free(ob);
		return NULL;
	}
	curl_multi_setopt(ob->multi, CURLMOPT_SOCKETFUNCTION, watch_socket);
	curl_multi_setopt(ob->multi, CURLMOPT_SOCKETDATA, ob);
	curl_multi_setopt(ob->multi, CURLMOPT_TIMERFUNCTION, arm_timer);
	curl_multi_setopt(ob->multi, CURLMOPT_TIMERDATA, ob);
	return ob;
}

void outbound_free(struct outbound *ob)
{
	if (ob == NULL)
		return;
	while (ob->transfers != NULL) {
		struct outbound_transfer *t = ob->transfers;
		if (!t->cancelled)
			curl_multi_remove_handle(ob->multi, t->easy);
		t->cancelled = true;
		t->result = CURLE_ABORTED_BY_CALLBACK;
		complete(t);
	}
	/* The multi handle first: its cleanup may still ask for sockets to be unwatched. */
	if (ob->multi != NULL)
		curl_multi_cleanup(ob->multi);
	if (ob->timer != NULL)
		event_free(ob->timer);
	free(ob);
}

static void on_later(evutil_socket_t fd, short what, void *arg)
{
	complete(arg);
}

int outbound_start(struct outbound *ob, struct outbound_transfer *t)
{
	t->ob = ob;
	t->cancelled = false;
	t->result = CURLE_OK;
	/* Made now, so that a cancel, which must end in done, has nothing left to allocate. */
	t->later = evtimer_new(ob->base, on_later, t);
	curl_easy_setopt(t->easy, CURLOPT_PRIVATE, (char *)t);
	if (t->later == NULL || curl_multi_add_handle(ob->multi, t->easy) != CURLM_OK) {
		if (t->later != NULL)
			event_free(t->later);
		t->later = NULL;
		t->ob = NULL;
		return -1;
	}
	t->prev = NULL;
	t->next = ob->transfers;
	if (ob->transfers != NULL)
		ob->transfers->prev = t;
	ob->transfers = t;
	return 0;
}

void outbound_cancel(struct outbound_transfer *t)
{
	struct outbound *ob = t->ob;
	if (ob == NULL || t->cancelled)
		return;
	curl_multi_remove_handle(ob->multi, t->easy);
	t->cancelled = true;
	t->result = CURLE_ABORTED_BY_CALLBACK;
	/* Made active, not added as a timer: that cannot fail (an add may grow the timer heap). */
	event_active(t->later, EV_TIMEOUT, 1);
}

/* How transfers fail, in a few words; shown: words a script's caller may see too. */
static const struct {
	CURLcode result;
	const char *words;
	bool shown;
} failures[] = {
    {CURLE_COULDNT_CONNECT, "connection refused", true},
    {CURLE_OPERATION_TIMEDOUT, "timed out", true},
    {CURLE_FILESIZE_EXCEEDED, "response too large", true},
    {CURLE_COULDNT_RESOLVE_HOST, "host name not found", false},
    {CURLE_ABORTED_BY_CALLBACK, "cancelled", false},
    {CURLE_LOGIN_DENIED, "login denied", false},
    {CURLE_USE_SSL_FAILED, "the server offers no TLS", false},
};

const char *outbound_failure(CURLcode result)
{
	for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
		if (failures[i].result == result)
			return failures[i].words;
	}
	return curl_easy_strerror(result);
}

const char *outbound_failure_shown(CURLcode result, const char *other)
{
	for (size_t i = 0; i < sizeof(failures) / sizeof(failures[0]); i++) {
		if (failures[i].result == result && failures[i].shown)
			return failures[i].words;
	}
	return other;
}
