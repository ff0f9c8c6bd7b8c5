/*
 * proxies.h: server.trusted_proxies, and the client's address behind them.
 */
#ifndef SESAME_PROXIES_H
#define SESAME_PROXIES_H

#include <stdbool.h>
#include <stddef.h>

/* An address or a network: IPv4 ones are kept as IPv4-mapped IPv6, their prefix plus 96. */
struct proxies_net {
	unsigned char addr[16];
	int prefix; /* 0 to 128 */
};

struct proxies {
	struct proxies_net *v;
	size_t n;
};

/* The longest address text the client's address is written in, with its NUL. */
#define PROXIES_ADDR_MAX 64

/* Parses "ADDRESS" or "ADDRESS/PREFIX" (IPv4 or IPv6); -1 when it is not one. */
int proxies_parse(const char *text, struct proxies_net *out);
/* Adds net to p; -1 when out of memory. */
int proxies_add(struct proxies *p, const struct proxies_net *net);
void proxies_clear(struct proxies *p);

/* Whether addr (text, IPv4 or IPv6) is in one of p's networks. */
bool proxies_trusted(const struct proxies *p, const char *addr);

/*
 * The client's address: peer (the socket's) unless p trusts it; then the X-Forwarded-For
 * entries, xff[0..nxff) (each header's value, in the order received), are walked from the
 * right, and the first one p does not trust is the client. An entry that is not an address
 * (an optional port is allowed) ends the walk at the last good one. Written to out.
 */
void proxies_client(const struct proxies *p, const char *peer, const char *const *xff, size_t nxff,
		    char *out, size_t outlen);

#endif
