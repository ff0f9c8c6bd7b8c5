/*
 * listen.c: parses listen addresses and opens the sockets the workers accept on.
 *
 * The master opens one socket per address and worker slot, all with SO_REUSEPORT, so that the
 * kernel spreads new connections across the workers and a socket outlives the worker serving
 * it: connections that arrive while a worker is being replaced wait in the socket's queue.
 * The set of those sockets lives as long as the master, across reloads: a reload opens only
 * the sockets it adds, and closes those it no longer wants once its workers serve. The
 * sockets a reload adds are only bound: a bound socket that does not listen is no member of
 * its port's SO_REUSEPORT group, so the kernel gives it no connection until the worker given
 * it calls listen() (listen_start) just before it serves. Under
 * socket activation the set holds the sockets systemd passed instead (activation.c), each
 * served by every worker, and no configuration opens or closes any of them.
 */
#include "autoconfig.h"

#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

static int parse_port(const char *s, in_port_t *port)
{
	char *end;
	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno != 0 || *end != '\0' || v == 0 || v > 65535)
		return -1;
	*port = htons((in_port_t)v);
	return 0;
}

int listen_parse(const char *text, struct listen_addr *out, char *err, size_t errlen)
{
	char host[64];
	const char *colon;
	memset(out, 0, sizeof(*out));
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':' || (size_t)(close - text - 1) >= sizeof(host))
			goto bad;
		memcpy(host, text + 1, (size_t)(close - text - 1));
		host[close - text - 1] = '\0';
		colon = close + 1;
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
		s6->sin6_family = AF_INET6;
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1 ||
		    parse_port(colon + 1, &s6->sin6_port) != 0)
			goto bad;
		out->len = sizeof(*s6);
		return 0;
	}
	colon = strrchr(text, ':');
	if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
		goto bad;
	memcpy(host, text, (size_t)(colon - text));
	host[colon - text] = '\0';
	struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
	s4->sin_family = AF_INET;
	if (strcmp(host, "*") == 0)
		s4->sin_addr.s_addr = htonl(INADDR_ANY);
	else if (strcmp(host, "localhost") == 0)
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	else if (inet_pton(AF_INET, host, &s4->sin_addr) != 1)
		goto bad;
	if (parse_port(colon + 1, &s4->sin_port) != 0)
		goto bad;
	out->len = sizeof(*s4);
	return 0;
bad:
	snprintf(
	    err, errlen,
	    "'%s' is not a listen address: use IPv4:PORT, [IPv6]:PORT, localhost:PORT or *:PORT",
	    text);
	return -1;
}

int listen_open(const struct listen_addr *a, bool listening, char *err, size_t errlen)
{
	int one = 1;
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		goto fail;
	if (a->ss.ss_family == AF_INET6 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&a->ss, a->len) != 0 ||
	    (listening && listen(fd, LISTEN_BACKLOG) != 0))
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "%s", strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int listen_format(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
	int n = -1;
	if (ss->ss_family == AF_INET && inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host)))
		n = snprintf(out, len, "%s:%u", host, ntohs(s4->sin_port));
	else if (ss->ss_family == AF_INET6 &&
		 inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host)))
		n = snprintf(out, len, "[%s]:%u", host, ntohs(s6->sin6_port));
	return n > 0 && (size_t)n < len ? 0 : -1;
}

static struct listen_sock *find_sock(struct listen_set *set, const char *text, int slot)
{
	for (size_t i = 0; i < set->n; i++) {
		if (set->socks[i].slot == slot && strcmp(set->socks[i].text, text) == 0)
			return &set->socks[i];
	}
	return NULL;
}

static void drop_sock(struct listen_set *set, size_t i)
{
	close(set->socks[i].fd);
	free(set->socks[i].text);
	set->socks[i] = set->socks[--set->n];
}

static bool listed(char *const *addrs, size_t naddrs, const char *text)
{
	for (size_t a = 0; a < naddrs; a++) {
		if (strcmp(addrs[a], text) == 0)
			return true;
	}
	return false;
}

/* Opens the socket of addr for slot and adds it to set: 0, or -1 after logging why. */
static int add_sock(struct listen_set *set, const char *addr, int slot, bool listening)
{
	struct listen_addr la;
	char err[LOG_ERR_MAX];
	int fd = -1;
	if (listen_parse(addr, &la, err, sizeof(err)) == 0)
		fd = listen_open(&la, listening, err, sizeof(err));
	struct listen_sock *grown =
	    fd >= 0 ? realloc(set->socks, (set->n + 1) * sizeof(*grown)) : NULL;
	char *text = grown != NULL ? strdup(addr) : NULL;
	if (text == NULL) {
		log_error("cannot listen on %s: %s", addr, fd >= 0 ? "out of memory" : err);
		if (fd >= 0)
			close(fd);
		if (grown != NULL)
			set->socks = grown;
		return -1;
	}
	set->socks = grown;
	set->socks[set->n++] =
	    (struct listen_sock){.text = text, .slot = slot, .fd = fd, .wanted = true};
	return 0;
}

int listen_set_adopt(struct listen_set *set, int fd, const char *text)
{
	struct listen_sock *grown = realloc(set->socks, (set->n + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	set->socks = grown;
	char *copy = strdup(text);
	if (copy == NULL)
		return -1;
	set->socks[set->n++] =
	    (struct listen_sock){.text = copy, .slot = LISTEN_EVERY_SLOT, .fd = fd, .wanted = true};
	set->inherited = true;
	return 0;
}

bool listen_sock_serves(const struct listen_sock *s, int slot, int workers)
{
	return slot >= 0 && (s->slot == LISTEN_EVERY_SLOT || s->slot % workers == slot);
}

/* Is the address text (as configured) among the passed sockets? */
static bool passed(const struct listen_set *set, const char *text)
{
	struct listen_addr la;
	char err[LOG_ERR_MAX], canon[INET6_ADDRSTRLEN + 8];
	if (listen_parse(text, &la, err, sizeof(err)) != 0 ||
	    listen_format(&la.ss, canon, sizeof(canon)) != 0)
		return false;
	for (size_t i = 0; i < set->n; i++) {
		if (strcmp(set->socks[i].text, canon) == 0)
			return true;
	}
	return false;
}

/* Under socket activation: warns when server.listen names other addresses than systemd's. */
static void compare_passed(const struct listen_set *set, char *const *addrs, size_t naddrs)
{
	bool same = naddrs == set->n;
	for (size_t a = 0; a < naddrs && same; a++)
		same = passed(set, addrs[a]);
	if (!same)
		log_warn("server.listen (%s%s) is not what systemd passed: serving on its %zu "
			 "socket%s (%s%s) only",
			 naddrs > 0 ? addrs[0] : "none", naddrs > 1 ? " and more" : "", set->n,
			 set->n == 1 ? "" : "s", set->socks[0].text, set->n > 1 ? " and more" : "");
}

int listen_set_open(struct listen_set *set, char *const *addrs, size_t naddrs, int slots,
		    bool listening)
{
	if (set->inherited) {
		compare_passed(set, addrs, naddrs);
		return 0;
	}
	for (size_t i = 0; i < set->n; i++)
		set->socks[i].wanted = listed(addrs, naddrs, set->socks[i].text);
	size_t before = set->n;
	for (size_t a = 0; a < naddrs; a++) {
		for (int slot = 0; slot < slots; slot++) {
			struct listen_sock *s = find_sock(set, addrs[a], slot);
			if (s != NULL) {
				s->wanted = true;
			} else if (add_sock(set, addrs[a], slot, listening) != 0) {
				while (set->n > before)
					drop_sock(set, set->n - 1);
				return -1;
			}
		}
	}
	return 0;
}

void listen_set_close_unwanted(struct listen_set *set)
{
	for (size_t i = set->n; i-- > 0;) {
		if (!set->socks[i].wanted)
			drop_sock(set, i);
	}
}

int listen_start(const int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int on = 0;
		socklen_t len = sizeof(on);
		/* One that listens keeps its backlog: systemd's, or ours. */
		if (getsockopt(fds[i], SOL_SOCKET, SO_ACCEPTCONN, &on, &len) != 0 ||
		    (!on && listen(fds[i], LISTEN_BACKLOG) != 0)) {
			log_error("worker %ld: cannot listen: %s", (long)getpid(), strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* New sockets go at the end, and none is dropped while a reload's workers start. */
void listen_set_truncate(struct listen_set *set, size_t n)
{
	while (set->n > n)
		drop_sock(set, set->n - 1);
}

void listen_set_free(struct listen_set *set)
{
	listen_set_truncate(set, 0);
	free(set->socks);
	set->socks = NULL;
}
