/*
 * ratelimit.h: rate limits: the rules of the `limits` table, and the node's per-key counters in
 * memory shared by the master and every worker.
 */
#ifndef SESAME_RATELIMIT_H
#define SESAME_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RATELIMIT_NAME_MAX 64

/* One rule, "N/second", "N/minute" or "N/hour": count requests per period; count 0 is off. */
struct ratelimit_rule {
	char name[RATELIMIT_NAME_MAX];
	uint32_t count;
	uint64_t period_ms;
};

/* The `limits` table: the shipped rules and the operator's own. */
struct ratelimit_rules {
	struct ratelimit_rule *v;
	size_t n;
};

/* Parses "N/second|minute|hour" into rule's count and period; -1 when it is not one. */
int ratelimit_parse(const char *text, struct ratelimit_rule *rule);

/* The shipped rules (register, login, login_failures; the account flows' verify, forgot, reset,
 * email) with their defaults. */
int ratelimit_rules_defaults(struct ratelimit_rules *rules);
/* Sets name's rule (a count of 0: off), adding it when it is new; -1 when out of memory. */
int ratelimit_rules_set(struct ratelimit_rules *rules, const char *name,
			const struct ratelimit_rule *rule);
const struct ratelimit_rule *ratelimit_rules_find(const struct ratelimit_rules *rules,
						  const char *name);
void ratelimit_rules_clear(struct ratelimit_rules *rules);

/*
 * The counters: a fixed-size table in a MAP_SHARED anonymous mapping, made once by the master
 * before it forks the workers and kept for its whole life (reloads do not reset counters).
 * sets is rounded up to a power of two; each set holds RATELIMIT_WAYS keys.
 */
#define RATELIMIT_WAYS 8
struct ratelimit_table;
struct ratelimit_table *ratelimit_table_new(size_t sets);
void ratelimit_table_free(struct ratelimit_table *t);
size_t ratelimit_table_bytes(const struct ratelimit_table *t);

/*
 * Counts one request of key under rule at now_ms (the monotonic clock): true when it is
 * allowed; else false with the milliseconds until one would be, in *retry_ms. An off rule
 * always allows. Safe from any process that shares t, and from any thread.
 */
bool ratelimit_take(struct ratelimit_table *t, const struct ratelimit_rule *rule, const char *key,
		    size_t keylen, uint64_t now_ms, uint64_t *retry_ms);

/* The node's table: made by ratelimit_shared_init in the master, inherited by the workers. */
int ratelimit_shared_init(void);
struct ratelimit_table *ratelimit_shared(void);

/*
 * The key an address counts under: an IPv6 address stands for its /64 (one host usually
 * owns a whole /64), written as "2001:db8:1:2::/64"; an IPv4 address (IPv4-mapped ones too)
 * for itself. Anything else is returned as it is. out has room for INET6_ADDRSTRLEN + 4.
 */
#define RATELIMIT_KEY_MAX 64
const char *ratelimit_address_key(const char *addr, char *out, size_t outlen);

#endif
