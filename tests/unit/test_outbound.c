/*
 * test_outbound.c: unit tests of outbound.c, a worker's transfers on libcurl's multi
 * interface driven by a libevent loop.
 *
 * Real transfers on loopback: an HTTP answer from a socket this test serves itself on the same
 * loop (so that nothing but the loop can make progress), a port nobody listens on, and a peer
 * that never answers. Each checks how and when done is called: from the loop, once, never
 * inside outbound_start or outbound_cancel, and as cancelled when the pool is freed. The test
 * is linked with event_new wrapped (-Wl,--wrap=event_new): it makes the allocation fail on
 * demand, to show that a cancel needs no memory and a start that lacks it says so.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "outbound.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* When set, outbound.c's next event_new fails as when memory runs out. */
static bool fail_event_new;

struct event *__real_event_new(struct event_base *base, evutil_socket_t fd, short what,
			       event_callback_fn cb, void *arg);
struct event *__wrap_event_new(struct event_base *base, evutil_socket_t fd, short what,
			       event_callback_fn cb, void *arg);

struct event *__wrap_event_new(struct event_base *base, evutil_socket_t fd, short what,
			       event_callback_fn cb, void *arg)
{
	if (fail_event_new)
		return NULL;
	return __real_event_new(base, fd, what, cb, arg);
}

struct probe {
	struct outbound_transfer t;
	struct event_base *base;
	int calls;
	bool inside; /* set while the test is inside outbound_start or outbound_cancel */
	bool done_inside;
	char body[256];
	size_t len;
};

static void probe_done(struct outbound_transfer *t)
{
	struct probe *p = (struct probe *)t;
	p->calls++;
	p->done_inside = p->inside;
	event_base_loopbreak(p->base);
}

static size_t probe_write(char *data, size_t size, size_t n, void *arg)
{
	struct probe *p = arg;
	size_t len = size * n < sizeof(p->body) - 1 - p->len ? size * n : 0;
	memcpy(p->body + p->len, data, len);
	p->len += len;
	return size * n;
}

/* A listening socket on 127.0.0.1; its port in *port. */
static int listener(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

static void probe_init(struct probe *p, struct event_base *base, int port, long timeout_ms)
{
	char url[64];
	memset(p, 0, sizeof(*p));
	p->base = base;
	p->t.easy = curl_easy_init();
	p->t.done = probe_done;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
	curl_easy_setopt(p->t.easy, CURLOPT_URL, url);
	curl_easy_setopt(p->t.easy, CURLOPT_PROXY, "");
	curl_easy_setopt(p->t.easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(p->t.easy, CURLOPT_WRITEFUNCTION, probe_write);
	curl_easy_setopt(p->t.easy, CURLOPT_WRITEDATA, p);
}

static void start(struct outbound *ob, struct probe *p)
{
	p->inside = true;
	assert_int_equal(outbound_start(ob, &p->t), 0);
	p->inside = false;
}

/* The peer's side of one HTTP exchange, answered from the same loop once the request came. */
static void on_request(evutil_socket_t conn, short what, void *arg)
{
	static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
				     "Connection: close\r\n\r\nhello";
	char buf[1024];
	assert_true(read(conn, buf, sizeof(buf)) > 0);
	assert_int_equal(write(conn, answer, sizeof(answer) - 1), (int)sizeof(answer) - 1);
	close(conn);
}

static void on_peer(evutil_socket_t fd, short what, void *arg)
{
	int conn = accept(fd, NULL, NULL);
	assert_true(conn >= 0);
	assert_int_equal(event_base_once(arg, conn, EV_READ, on_request, NULL, NULL), 0);
}

static void test_transfer_completes_on_the_loop(void **state)
{
	struct event_base *base = event_base_new();
	struct outbound *ob = outbound_new(base);
	int port, fd = listener(&port);
	struct event *peer = event_new(base, fd, EV_READ, on_peer, base);
	struct probe p;
	event_add(peer, NULL);
	probe_init(&p, base, port, 5000);
	start(ob, &p);
	assert_int_equal(p.calls, 0);
	event_base_dispatch(base);
	assert_int_equal(p.calls, 1);
	assert_false(p.done_inside);
	assert_int_equal(p.t.result, CURLE_OK);
	assert_false(p.t.cancelled);
	assert_string_equal(p.body, "hello");
	curl_easy_cleanup(p.t.easy);
	event_free(peer);
	close(fd);
	outbound_free(ob);
	event_base_free(base);
}

static void test_refused_connection(void **state)
{
	struct event_base *base = event_base_new();
	struct outbound *ob = outbound_new(base);
	int port, fd = listener(&port);
	struct probe p;
	close(fd); /* nobody listens there now */
	probe_init(&p, base, port, 5000);
	start(ob, &p);
	event_base_dispatch(base);
	assert_int_equal(p.calls, 1);
	assert_int_equal(p.t.result, CURLE_COULDNT_CONNECT);
	assert_string_equal(outbound_failure(p.t.result), "connection refused");
	curl_easy_cleanup(p.t.easy);
	outbound_free(ob);
	event_base_free(base);
}

/* A cancel ends in done from the loop, never inside; starved: no memory is left for it. */
static void cancel_completes_later(bool starved)
{
	struct event_base *base = event_base_new();
	struct outbound *ob = outbound_new(base);
	int port, fd = listener(&port); /* accepts (the kernel does), never answers */
	struct probe p;
	probe_init(&p, base, port, 5000);
	start(ob, &p);
	event_base_loop(base, EVLOOP_NONBLOCK);
	fail_event_new = starved;
	p.inside = true;
	outbound_cancel(&p.t);
	p.inside = false;
	fail_event_new = false;
	assert_int_equal(p.calls, 0);
	event_base_loopexit(base, &(struct timeval){.tv_sec = 2});
	event_base_dispatch(base);
	assert_int_equal(p.calls, 1);
	assert_false(p.done_inside);
	assert_true(p.t.cancelled);
	curl_easy_cleanup(p.t.easy);
	close(fd);
	outbound_free(ob);
	event_base_free(base);
}

static void test_cancel_completes_later(void **state)
{
	cancel_completes_later(false);
}

static void test_cancel_needs_no_memory(void **state)
{
	cancel_completes_later(true);
}

static void test_timeout_and_free_in_flight(void **state)
{
	struct event_base *base = event_base_new();
	struct outbound *ob = outbound_new(base);
	int port, fd = listener(&port);
	struct probe slow, stuck;
	probe_init(&slow, base, port, 200);
	probe_init(&stuck, base, port, 60000);
	start(ob, &slow);
	start(ob, &stuck);
	event_base_dispatch(base); /* until the first done: slow's timeout */
	assert_int_equal(slow.calls, 1);
	assert_int_equal(slow.t.result, CURLE_OPERATION_TIMEDOUT);
	assert_int_equal(stuck.calls, 0);
	outbound_free(ob); /* stuck is still in flight: it ends as cancelled */
	assert_int_equal(stuck.calls, 1);
	assert_true(stuck.t.cancelled);
	curl_easy_cleanup(slow.t.easy);
	curl_easy_cleanup(stuck.t.easy);
	close(fd);
	event_base_free(base);
}

/* A start that cannot make its completion event fails, and its done never comes. */
static void test_start_without_memory_fails(void **state)
{
	struct event_base *base = event_base_new();
	struct outbound *ob = outbound_new(base);
	int port, fd = listener(&port);
	struct probe p;
	probe_init(&p, base, port, 5000);
	fail_event_new = true;
	assert_int_equal(outbound_start(ob, &p.t), -1);
	fail_event_new = false;
	assert_null(p.t.ob);
	outbound_free(ob);
	assert_int_equal(p.calls, 0);
	curl_easy_cleanup(p.t.easy);
	close(fd);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_transfer_completes_on_the_loop),
	    cmocka_unit_test(test_refused_connection),
	    cmocka_unit_test(test_cancel_completes_later),
	    cmocka_unit_test(test_timeout_and_free_in_flight),
	    cmocka_unit_test(test_cancel_needs_no_memory),
	    cmocka_unit_test(test_start_without_memory_fails),
	};
	curl_global_init(CURL_GLOBAL_DEFAULT);
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return failed;
}
