/*
 * proxies.c: server.trusted_proxies, and the client's address behind them.
 *
 * The client's address is the socket peer's, unless the operator trusts the peer (a reverse
 * proxy or load balancer in front of sesame). Then X-Forwarded-For says who the proxy spoke
 * for: each proxy appends the address it received the request from, so the list is walked
 * from the right, past every proxy the operator trusts, and the first entry that is not one
 * is the client. Entries further left were written by the client itself, or by proxies no one
 * vouches for, and are never believed. An entry that is not an address ends the walk at the
 * last good one: a client's garbage cannot move the address anywhere it chooses.
 *
 * Networks are kept as IPv6 (IPv4 as IPv4-mapped, its prefix plus 96) so that one comparison
 * covers both families, and a peer on a dual-stack socket (::ffff:10.0.0.1) matches 10.0.0.0/8.
 */
#include "autoconfig.h"

#include "proxies.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* text as an IPv6 address (IPv4 mapped), into a16; false when it is neither. */
static bool parse_addr(const char *text, unsigned char *a16, bool *v4)
{
	struct in_addr a4;
	*v4 = inet_pton(AF_INET, text, &a4) == 1;
	if (*v4) {
		memset(a16, 0, 10);
		a16[10] = a16[11] = 0xff;
		memcpy(a16 + 12, &a4, 4);
		return true;
	}
	return inet_pton(AF_INET6, text, a16) == 1;
}

int proxies_parse(const char *text, struct proxies_net *out)
{
	char addr[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t len = slash != NULL ? (size_t)(slash - text) : strlen(text);
	bool v4;
	if (len == 0 || len >= sizeof(addr))
		return -1;
	memcpy(addr, text, len);
	addr[len] = '\0';
	if (!parse_addr(addr, out->addr, &v4))
		return -1;
	int max = v4 ? 32 : 128, prefix = max;
	if (slash != NULL) {
		const char *p = slash + 1;
		if (*p < '0' || *p > '9' || strlen(p) > 3 || strspn(p, "0123456789") != strlen(p))
			return -1;
		prefix = atoi(p);
		if (prefix > max)
			return -1;
	}
	out->prefix = prefix + (v4 ? 96 : 0);
	return 0;
}

int proxies_add(struct proxies *p, const struct proxies_net *net)
{
	struct proxies_net *grown = realloc(p->v, (p->n + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	p->v = grown;
	p->v[p->n++] = *net;
	return 0;
}

void proxies_clear(struct proxies *p)
{
	free(p->v);
	p->v = NULL;
	p->n = 0;
}

static bool in_net(const struct proxies_net *net, const unsigned char *a16)
{
	int full = net->prefix / 8, rest = net->prefix % 8;
	if (memcmp(net->addr, a16, (size_t)full) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (net->addr[full] & mask) == (a16[full] & mask);
}

static bool trusted16(const struct proxies *p, const unsigned char *a16)
{
	for (size_t i = 0; i < p->n; i++) {
		if (in_net(&p->v[i], a16))
			return true;
	}
	return false;
}

bool proxies_trusted(const struct proxies *p, const char *addr)
{
	unsigned char a16[16];
	bool v4;
	return p != NULL && p->n > 0 && parse_addr(addr, a16, &v4) && trusted16(p, a16);
}

/*
 * One X-Forwarded-For entry, s[0..len): an address, "1.2.3.4:port", "[v6]" or "[v6]:port",
 * with blanks around it. Its address into a16 and, written canonically, into text.
 */
static bool parse_entry(const char *s, size_t len, unsigned char *a16, char *text, size_t textlen)
{
	char buf[INET6_ADDRSTRLEN + 8];
	bool v4;
	while (len > 0 && (*s == ' ' || *s == '\t'))
		s++, len--;
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, s, len);
	buf[len] = '\0';
	char *addr = buf;
	if (buf[0] == '[') {
		char *close = strchr(buf, ']');
		if (close == NULL || (close[1] != '\0' && close[1] != ':'))
			return false;
		*close = '\0';
		addr = buf + 1;
	} else if (strchr(buf, ':') == strrchr(buf, ':') && strchr(buf, ':') != NULL) {
		*strchr(buf, ':') = '\0'; /* one colon: an IPv4 address and its port */
	}
	if (!parse_addr(addr, a16, &v4))
		return false;
	if (v4)
		return inet_ntop(AF_INET, a16 + 12, text, (socklen_t)textlen) != NULL;
	return inet_ntop(AF_INET6, a16, text, (socklen_t)textlen) != NULL;
}

void proxies_client(const struct proxies *p, const char *peer, const char *const *xff, size_t nxff,
		    char *out, size_t outlen)
{
	snprintf(out, outlen, "%s", peer);
	if (!proxies_trusted(p, peer))
		return;
	char text[INET6_ADDRSTRLEN];
	unsigned char a16[16];
	for (size_t h = nxff; h-- > 0;) {
		const char *v = xff[h];
		for (size_t end = strlen(v);;) {
			size_t start = end;
			while (start > 0 && v[start - 1] != ',')
				start--;
			if (!parse_entry(v + start, end - start, a16, text, sizeof(text)))
				return;
			snprintf(out, outlen, "%s", text);
			if (!trusted16(p, a16))
				return;
			if (start == 0)
				break;
			end = start - 1;
		}
	}
}
