/*
 * activation.c: socket activation. systemd (a sesamed.socket unit) binds the listening
 * sockets and starts sesamed with them open from fd 3 on, LISTEN_FDS saying how many and
 * LISTEN_PID naming the process they are for. The master then serves those sockets instead
 * of opening server.listen's: each is shared by every worker (no SO_REUSEPORT socket per
 * slot: the kernel queues a connection on the one socket and an idle worker accepts it) and
 * kept, like the master's own sockets, across reloads. With libsystemd the variables are read
 * by sd_listen_fds; without it, by the same rules here. Either way they are removed from the
 * environment, so that no child takes them for its own.
 */
#include "autoconfig.h"

#include "activation.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "listen.h"
#include "log.h"

#define FIRST_FD 3 /* SD_LISTEN_FDS_START */

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>

/* How many sockets were passed to this process, or -errno. */
static int passed_count(void)
{
	return sd_listen_fds(1);
}

/* 1 when fd is a stream socket that listens, 0 when not, or -errno. */
static int is_listening_stream(int fd)
{
	return sd_is_socket(fd, AF_UNSPEC, SOCK_STREAM, 1);
}
#else
/* Reads an environment variable as a positive number: the number, 0 when unset, or -1. */
static long env_number(const char *name)
{
	const char *text = getenv(name);
	char *end;
	if (text == NULL)
		return 0;
	errno = 0;
	long v = strtol(text, &end, 10);
	return errno != 0 || end == text || *end != '\0' || v <= 0 ? -1 : v;
}

/* What sd_listen_fds(1) does, for a build without libsystemd. */
static int passed_count(void)
{
	long pid = env_number("LISTEN_PID"), n = env_number("LISTEN_FDS");
	int rc = 0;
	if (pid > 0 && pid == (long)getpid())
		rc = n < 0 || n > 4096 ? -EINVAL : (int)n;
	for (int fd = FIRST_FD; fd < FIRST_FD + rc; fd++) {
		if (fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
			rc = -errno;
			break;
		}
	}
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return rc;
}

static int is_listening_stream(int fd)
{
	int type = 0, listening = 0;
	socklen_t len = sizeof(type), len2 = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len2) != 0)
		return errno == ENOTSOCK ? 0 : -errno;
	return type == SOCK_STREAM && listening;
}
#endif

/* Checks one passed fd and adds it to set: 0, or -1 after logging why not. */
static int take_one(struct listen_set *set, int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char text[128];
	int rc = is_listening_stream(fd);
	if (rc <= 0) {
		log_error("socket activation: fd %d is not a listening stream socket%s%s: "
			  "sesamed serves only what a ListenStream= line makes",
			  fd, rc < 0 ? ": " : "", rc < 0 ? strerror(-rc) : "");
		return -1;
	}
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
	    listen_format(&ss, text, sizeof(text)) != 0) {
		log_error("socket activation: fd %d is not an IPv4 or IPv6 socket: sesamed serves "
			  "HTTP over TCP only",
			  fd);
		return -1;
	}
	/* Every worker accepts on it: one that loses the race must not block in accept. */
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 ||
	    listen_set_adopt(set, fd, text) != 0) {
		log_error("socket activation: fd %d: %s", fd, strerror(errno));
		return -1;
	}
	return 0;
}

/* "127.0.0.1:8080, [::1]:8080" into out, shortened with "..." when it does not fit. */
static void describe(const struct listen_set *set, char *out, size_t len)
{
	size_t used = 0;
	out[0] = '\0';
	for (size_t i = 0; i < set->n && used < len; i++) {
		int n =
		    snprintf(out + used, len - used, "%s%s", i > 0 ? ", " : "", set->socks[i].text);
		used += n > 0 ? (size_t)n : 0;
	}
	if (used >= len && len > 4)
		memcpy(out + len - 4, "...", 4);
}

int activation_take(struct listen_set *set)
{
	int n = passed_count();
	if (n < 0) {
		log_error("socket activation: cannot read LISTEN_FDS: %s", strerror(-n));
		return -1;
	}
	for (int fd = FIRST_FD; fd < FIRST_FD + n; fd++) {
		if (take_one(set, fd) != 0)
			return -1;
	}
	if (n > 0) {
		char list[512];
		describe(set, list, sizeof(list));
		log_info("socket activation: serving on the %d socket%s systemd passed: %s", n,
			 n == 1 ? "" : "s", list);
	}
	return n;
}
