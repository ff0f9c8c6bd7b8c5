/* listen.h: listening addresses and the sockets bound to them. */
#ifndef SESAME_LISTEN_H
#define SESAME_LISTEN_H

#include <stddef.h>
#include <sys/socket.h>

struct listen_addr {
	struct sockaddr_storage ss;
	socklen_t len;
};

/* Parses "IPv4:PORT", "[IPv6]:PORT", "localhost:PORT" or "*:PORT" (all IPv4 addresses). */
int listen_parse(const char *text, struct listen_addr *out, char *err, size_t errlen);

/* A non-blocking SO_REUSEPORT socket listening on a; -1 with err set on failure. */
int listen_open(const struct listen_addr *a, char *err, size_t errlen);

#endif
