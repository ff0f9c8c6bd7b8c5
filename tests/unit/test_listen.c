/*
 * test_listen.c: unit tests of listen.c, listen addresses and their sockets.
 *
 * listen_parse is fed the address forms the configuration accepts and a set it must refuse.
 * listen_open is tried on a loopback port found free by binding port 0 first; it is opened
 * twice, as the master does for two workers, which only SO_REUSEPORT allows; and bound only,
 * as a reload opens a socket, which takes no connection of its port's until it listens.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static struct listen_addr parse_ok(const char *text)
{
	struct listen_addr a;
	char err[256] = "";
	if (listen_parse(text, &a, err, sizeof(err)) != 0)
		fail_msg("'%s' refused: %s", text, err);
	return a;
}

static void assert_ipv4(const struct listen_addr *a, const char *host, int port)
{
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
	char text[INET_ADDRSTRLEN];
	assert_int_equal(s4->sin_family, AF_INET);
	assert_int_equal(a->len, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(s4->sin_port), port);
	assert_non_null(inet_ntop(AF_INET, &s4->sin_addr, text, sizeof(text)));
	assert_string_equal(text, host);
}

static void test_parse_ipv4(void **state)
{
	struct listen_addr a = parse_ok("127.0.0.1:8080");
	assert_ipv4(&a, "127.0.0.1", 8080);
	a = parse_ok("10.1.2.3:65535");
	assert_ipv4(&a, "10.1.2.3", 65535);
	a = parse_ok("0.0.0.0:1");
	assert_ipv4(&a, "0.0.0.0", 1);
}

static void test_parse_ipv6(void **state)
{
	struct listen_addr a = parse_ok("[::1]:8080");
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a.ss;
	assert_int_equal(s6->sin6_family, AF_INET6);
	assert_int_equal(a.len, sizeof(struct sockaddr_in6));
	assert_int_equal(ntohs(s6->sin6_port), 8080);
	assert_memory_equal(&s6->sin6_addr, &in6addr_loopback, sizeof(in6addr_loopback));

	a = parse_ok("[2001:db8::5]:443");
	char text[INET6_ADDRSTRLEN];
	assert_non_null(inet_ntop(AF_INET6, &s6->sin6_addr, text, sizeof(text)));
	assert_string_equal(text, "2001:db8::5");
	assert_int_equal(ntohs(s6->sin6_port), 443);
}

static void test_parse_names(void **state)
{
	struct listen_addr a = parse_ok("localhost:80");
	assert_ipv4(&a, "127.0.0.1", 80);
	a = parse_ok("*:9000");
	assert_ipv4(&a, "0.0.0.0", 9000);
}

static void test_parse_refused(void **state)
{
	static const char *const bad[] = {
	    "127.0.0.1",
	    "127.0.0.1:0",
	    "127.0.0.1:65536",
	    "abc:80",
	    "[::1]80",
	    "1.2.3.4:",
	    "1.2.3.4:80x",
	    "",
	    ":80",
	    "1.2.3.4:-80",
	    "1.2.3.4:+80",
	    "[::1]",
	    "[::1]:",
	    "[127.0.0.1]:80",
	    "1.2.3.4: 80",
	    "[::1:80",
	    "example.com:80",
	    "1.2.3.4:99999999999999999999",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct listen_addr a;
		char err[256] = "", quoted[64];
		snprintf(quoted, sizeof(quoted), "'%s' is not a listen address", bad[i]);
		if (listen_parse(bad[i], &a, err, sizeof(err)) != -1)
			fail_msg("'%s' accepted", bad[i]);
		if (strstr(err, quoted) == NULL)
			fail_msg("'%s': message \"%s\" does not name it", bad[i], err);
	}
}

/* A loopback port nothing listens on right now. */
static int free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	close(fd);
	return ntohs(sin.sin_port);
}

static struct listen_addr loopback(int port)
{
	char text[32];
	snprintf(text, sizeof(text), "127.0.0.1:%d", port);
	return parse_ok(text);
}

static int open_ok(const struct listen_addr *a, bool listening)
{
	char err[256] = "";
	int fd = listen_open(a, listening, err, sizeof(err));
	if (fd < 0)
		fail_msg("listen_open: %s", err);
	return fd;
}

static int sockopt(int fd, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	assert_int_equal(getsockopt(fd, SOL_SOCKET, name, &v, &len), 0);
	return v;
}

static void test_open_twice(void **state)
{
	int port = free_port();
	struct listen_addr a = loopback(port);
	int fd1 = open_ok(&a, true);
	int fd2 = open_ok(&a, true);
	int fds[] = {fd1, fd2};
	for (size_t i = 0; i < 2; i++) {
		struct sockaddr_in bound;
		socklen_t len = sizeof(bound);
		assert_true(fcntl(fds[i], F_GETFL) & O_NONBLOCK);
		assert_true(fcntl(fds[i], F_GETFD) & FD_CLOEXEC);
		assert_int_equal(sockopt(fds[i], SO_REUSEPORT), 1);
		assert_int_equal(sockopt(fds[i], SO_ACCEPTCONN), 1);
		assert_int_equal(getsockname(fds[i], (struct sockaddr *)&bound, &len), 0);
		assert_int_equal(ntohs(bound.sin_port), port);
	}
	close(fd1);
	close(fd2);
}

static void test_open_address_in_use(void **state)
{
	/* A socket without SO_REUSEPORT holds the port: listen_open must fail, and say why. */
	int port = free_port();
	struct listen_addr a = loopback(port);
	int holder = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(holder >= 0);
	assert_int_equal(bind(holder, (const struct sockaddr *)&a.ss, a.len), 0);
	assert_int_equal(listen(holder, 1), 0);

	char err[256] = "";
	assert_int_equal(listen_open(&a, true, err, sizeof(err)), -1);
	assert_string_equal(err, strerror(EADDRINUSE));
	close(holder);
}

/* Connects n times to a (the connections are left to the kernel's queues). */
static void connect_n(const struct listen_addr *a, int *clients, int n)
{
	for (int i = 0; i < n; i++) {
		clients[i] = socket(AF_INET, SOCK_STREAM, 0);
		assert_true(clients[i] >= 0);
		assert_int_equal(connect(clients[i], (const struct sockaddr *)&a->ss, a->len), 0);
	}
}

static int accept_all(int fd)
{
	int n = 0, c;
	while ((c = accept(fd, NULL, NULL)) >= 0) {
		close(c);
		n++;
	}
	return n;
}

static void close_n(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/*
 * A reload's socket is bound but does not listen until its worker serves: the kernel must
 * give it no connection meanwhile, and its share once it listens.
 */
static void test_bound_socket_takes_nothing_until_it_listens(void **state)
{
	enum { N = 64 };
	int clients[N];
	struct listen_addr a = loopback(free_port());
	int serving = open_ok(&a, true), added = open_ok(&a, false);
	assert_int_equal(sockopt(added, SO_REUSEPORT), 1);
	assert_int_equal(sockopt(added, SO_ACCEPTCONN), 0);
	connect_n(&a, clients, N);
	assert_int_equal(accept(added, NULL, NULL), -1);
	assert_int_equal(accept_all(serving), N);
	close_n(clients, N);

	int both[] = {serving, added};
	assert_int_equal(listen_start(both, 2), 0);
	assert_int_equal(sockopt(added, SO_ACCEPTCONN), 1);
	connect_n(&a, clients, N);
	int taken = accept_all(added);
	assert_true(taken > 0);
	assert_int_equal(taken + accept_all(serving), N);
	close_n(clients, N);
	close(serving);
	close(added);
}

static size_t count_wanted(const struct listen_set *set, bool wanted)
{
	size_t n = 0;
	for (size_t i = 0; i < set->n; i++)
		n += set->socks[i].wanted == wanted;
	return n;
}

/* A reload keeps the sockets it still lists, opens only new ones, and closes the rest. */
static void test_set_across_reloads(void **state)
{
	char a[32], b[32];
	snprintf(a, sizeof(a), "127.0.0.1:%d", free_port());
	snprintf(b, sizeof(b), "127.0.0.1:%d", free_port());
	char *both[] = {a, b}, *only_b[] = {b};
	struct listen_set set = {0};

	assert_int_equal(listen_set_open(&set, both, 2, 2, true), 0);
	assert_int_equal(set.n, 4);
	int kept = -1;
	for (size_t i = 0; i < set.n; i++) {
		if (strcmp(set.socks[i].text, b) == 0 && set.socks[i].slot == 1)
			kept = set.socks[i].fd;
	}
	assert_true(kept >= 0);

	/* One address and one slot fewer: b's slot 1 stays open and wanted, a's sockets go. */
	assert_int_equal(listen_set_open(&set, only_b, 1, 1, false), 0);
	assert_int_equal(set.n, 4);
	assert_int_equal(count_wanted(&set, false), 2);
	listen_set_close_unwanted(&set);
	assert_int_equal(set.n, 2);
	bool found = false;
	for (size_t i = 0; i < set.n; i++) {
		assert_string_equal(set.socks[i].text, b);
		found |= set.socks[i].fd == kept;
	}
	assert_true(found);
	assert_int_equal(sockopt(kept, SO_ACCEPTCONN), 1);

	/* An address that cannot be opened undoes the whole reload's new sockets. */
	char bad[] = "192.0.2.1:1", *more[] = {b, a, bad};
	assert_int_equal(listen_set_open(&set, more, 3, 2, false), -1);
	assert_int_equal(set.n, 2);
	listen_set_free(&set);
	assert_int_equal(set.n, 0);
	assert_null(set.socks);
	assert_int_equal(fcntl(kept, F_GETFD), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_ipv4),
	    cmocka_unit_test(test_parse_ipv6),
	    cmocka_unit_test(test_parse_names),
	    cmocka_unit_test(test_parse_refused),
	    cmocka_unit_test(test_open_twice),
	    cmocka_unit_test(test_open_address_in_use),
	    cmocka_unit_test(test_set_across_reloads),
	    cmocka_unit_test(test_bound_socket_takes_nothing_until_it_listens),
	};
	return cmocka_run_group_tests_name("listen", tests, NULL, NULL);
}
