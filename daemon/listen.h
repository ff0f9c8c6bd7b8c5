/* listen.h: listening addresses and the sockets bound to them. */
#ifndef SESAME_LISTEN_H
#define SESAME_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* Parses "IPv4:PORT", "[IPv6]:PORT", "localhost:PORT" or "*:PORT" (all IPv4 addresses). */
int listen_parse(const char *text, struct listen_addr *out, char *err, size_t errlen);

#define LISTEN_BACKLOG 511

/*
 * A non-blocking SO_REUSEPORT socket bound to a, and listening unless listening is false;
 * -1 with err set on failure.
 */
int listen_open(const struct listen_addr *a, bool listening, char *err, size_t errlen);

/* Writes an IPv4 or IPv6 address as listen_parse reads it ("[::1]:8080"); 0, or -1. */
int listen_format(const struct sockaddr_storage *ss, char *out, size_t len);

/* The slot of a socket that every worker slot serves (one that systemd passed). */
#define LISTEN_EVERY_SLOT (-1)

/*
 * The master's sockets: one per (address, worker slot), kept across reloads so that no queued
 * connection is lost.
 */
struct listen_sock {
	char *text; /* the address as configured */
	int slot;
	int fd;
	bool wanted; /* by the configuration last opened */
};

struct listen_set {
	struct listen_sock *socks;
	size_t n;
	bool inherited; /* the sockets came from systemd (activation.c): server.listen opens none */
};

/* Adds a listening socket that every worker slot serves; 0, or -1 (out of memory). */
int listen_set_adopt(struct listen_set *set, int fd, const char *text);

/* Does the worker of slot (of workers slots) serve on s? */
bool listen_sock_serves(const struct listen_sock *s, int slot, int workers);

/*
 * Opens the sockets that addrs (naddrs of them) and slots worker slots need and that are not
 * open yet, and marks every socket wanted or not; on failure, logs why and closes what it
 * opened. The sockets of slots beyond a smaller worker count stay open and wanted, served by
 * the remaining slots: closing one would reset the connections queued in it. Sockets that
 * systemd passed stay as they are: the addresses are only compared with them, with a warning
 * when they differ. The sockets it opens listen at once, or, listening false, are only bound
 * (a reload's, until listen_start in their worker).
 */
int listen_set_open(struct listen_set *set, char *const *addrs, size_t naddrs, int slots,
		    bool listening);

/*
 * In a worker about to serve: each of its n sockets fds that is only bound starts listening.
 * 0, or -1 after logging why.
 */
int listen_start(const int *fds, size_t n);

/* Closes the sockets the configuration last opened does not use. */
void listen_set_close_unwanted(struct listen_set *set);

/*
 * Closes the sockets opened since the set held n of them: those a configuration added that is
 * given up before its workers served (a reload abandoned).
 */
void listen_set_truncate(struct listen_set *set, size_t n);

/* Closes them all. */
void listen_set_free(struct listen_set *set);

#endif
