/*
 * ratelimit.c: rate limits. A rule ("20/minute") allows count requests per period; each key
 * (a client address, an account) under each rule has its own allowance.
 *
 * The algorithm is GCRA, the generic cell rate algorithm: a key keeps one number, its
 * theoretical arrival time (TAT). Each request moves it one interval (period / count) later,
 * starting from now when it lies in the past; a request that would move it more than one
 * period past now is refused, and the excess is how long the client must wait. That allows a
 * burst of count requests, then one per interval: O(1) per request, no timers, one number.
 *
 * The node's counters live in one table in a MAP_SHARED anonymous mapping that the master
 * makes before it forks the workers and keeps across reloads, so every worker counts with the
 * others. The table is set-associative and its size fixed (RATELIMIT_SETS sets of RATELIMIT_WAYS
 * entries, 16 bytes each: about 4.5 MB, 262,144 keys). A key is found by a keyed hash of
 * (rule, key), with a random key the master draws at start, so no client can aim many keys at
 * one set. A new key takes an entry of its set that has expired (TAT in the past: it would
 * allow a whole burst anyway), else the one whose TAT is earliest: the least busy key, the
 * nearest to expiry. A flood of distinct keys therefore evicts the flood's own one-request
 * keys before it touches a busy key's counter. Each set has a spinlock held for a few dozen
 * instructions; it records its holder's pid, so a process killed while holding it (it never
 * blocks there, so only a kill can) cannot wedge the set: a waiter takes over a dead holder's
 * lock. Times are the monotonic clock's: the table is shared only by one node's processes.
 */
#include "autoconfig.h"

#include "ratelimit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define RATELIMIT_SETS	    32768
#define RATELIMIT_COUNT_MAX 1000000
#define SPINS_BEFORE_CHECK  100000

/* ---- rules ---- */

int ratelimit_parse(const char *text, struct ratelimit_rule *rule)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"second", 1000}, {"minute", 60000}, {"hour", 3600000}};
	if (text[0] < '1' || text[0] > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long count = strtoul(text, &end, 10);
	if (errno != 0 || count > RATELIMIT_COUNT_MAX || *end != '/')
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end + 1, units[i].unit) == 0) {
			rule->count = (uint32_t)count;
			rule->period_ms = units[i].ms;
			return 0;
		}
	}
	return -1;
}

int ratelimit_rules_defaults(struct ratelimit_rules *rules)
{
	static const char *const shipped[][2] = {
	    {"register", "20/minute"},
	    {"login", "60/minute"},
	    {"login_failures", "100/hour"},
	    /* The account flows', each per client address and per account: most send mail. */
	    {"verify", "10/hour"},
	    {"forgot", "10/hour"},
	    {"reset", "20/hour"},
	    {"email", "10/hour"}};
	for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
		struct ratelimit_rule r;
		if (ratelimit_parse(shipped[i][1], &r) != 0 ||
		    ratelimit_rules_set(rules, shipped[i][0], &r) != 0)
			return -1;
	}
	return 0;
}

const struct ratelimit_rule *ratelimit_rules_find(const struct ratelimit_rules *rules,
						  const char *name)
{
	for (size_t i = 0; i < rules->n; i++) {
		if (strcmp(rules->v[i].name, name) == 0)
			return &rules->v[i];
	}
	return NULL;
}

int ratelimit_rules_set(struct ratelimit_rules *rules, const char *name,
			const struct ratelimit_rule *rule)
{
	size_t len = strlen(name);
	if (len == 0 || len >= RATELIMIT_NAME_MAX)
		return -1;
	struct ratelimit_rule *r = (struct ratelimit_rule *)ratelimit_rules_find(rules, name);
	if (r == NULL) {
		struct ratelimit_rule *grown = realloc(rules->v, (rules->n + 1) * sizeof(*grown));
		if (grown == NULL)
			return -1;
		rules->v = grown;
		r = &rules->v[rules->n++];
	}
	*r = *rule;
	memcpy(r->name, name, len + 1);
	return 0;
}

void ratelimit_rules_clear(struct ratelimit_rules *rules)
{
	free(rules->v);
	rules->v = NULL;
	rules->n = 0;
}

/* ---- the shared table ---- */

struct entry {
	uint64_t key; /* the keyed hash of (rule, key); 0: never used */
	uint64_t tat; /* microseconds on the monotonic clock */
};

struct set {
	_Atomic int32_t owner; /* the pid holding the set's lock; 0: free */
	uint32_t pad;
	struct entry e[RATELIMIT_WAYS];
};

struct ratelimit_table {
	size_t bytes;
	size_t mask;
	unsigned char seed[crypto_generichash_KEYBYTES];
	struct set sets[];
};

static struct ratelimit_table *shared;

struct ratelimit_table *ratelimit_table_new(size_t sets)
{
	size_t n = 1;
	while (n < sets)
		n <<= 1;
	size_t bytes = sizeof(struct ratelimit_table) + n * sizeof(struct set);
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	struct ratelimit_table *t = p; /* the mapping comes zeroed: every entry unused */
	t->bytes = bytes;
	t->mask = n - 1;
	randombytes_buf(t->seed, sizeof(t->seed));
	return t;
}

void ratelimit_table_free(struct ratelimit_table *t)
{
	if (t != NULL)
		munmap(t, t->bytes);
}

size_t ratelimit_table_bytes(const struct ratelimit_table *t)
{
	return t->bytes;
}

int ratelimit_shared_init(void)
{
	if (shared == NULL)
		shared = ratelimit_table_new(RATELIMIT_SETS);
	return shared != NULL ? 0 : -1;
}

struct ratelimit_table *ratelimit_shared(void)
{
	return shared;
}

static uint64_t key_hash(const struct ratelimit_table *t, const char *rule, const char *key,
			 size_t keylen)
{
	crypto_generichash_state st;
	uint64_t h;
	crypto_generichash_init(&st, t->seed, sizeof(t->seed), sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)rule, strlen(rule) + 1);
	crypto_generichash_update(&st, (const unsigned char *)key, keylen);
	crypto_generichash_final(&st, (unsigned char *)&h, sizeof(h));
	return h != 0 ? h : 1;
}

static void lock_set(struct set *s)
{
	int32_t me = (int32_t)getpid();
	for (unsigned long spins = 1;; spins++) {
		int32_t holder = 0;
		if (atomic_compare_exchange_weak_explicit(
			&s->owner, &holder, me, memory_order_acquire, memory_order_relaxed))
			return;
		if (spins % 64 == 0)
			sched_yield();
		/* A holder that no longer exists was killed inside: its lock is free. */
		if (spins % SPINS_BEFORE_CHECK == 0 && holder != 0 && holder != me &&
		    kill(holder, 0) != 0 && errno == ESRCH &&
		    atomic_compare_exchange_strong(&s->owner, &holder, me))
			return;
	}
}

static void unlock_set(struct set *s)
{
	atomic_store_explicit(&s->owner, 0, memory_order_release);
}

/* key's entry in s, or the one it takes: an expired one, else the least busy. */
static struct entry *entry_for(struct set *s, uint64_t key, uint64_t now)
{
	struct entry *victim = &s->e[0];
	for (int i = 0; i < RATELIMIT_WAYS; i++) {
		if (s->e[i].key == key)
			return &s->e[i];
	}
	for (int i = 0; i < RATELIMIT_WAYS && victim->tat > now; i++) {
		if (s->e[i].tat < victim->tat)
			victim = &s->e[i];
	}
	return victim;
}

bool ratelimit_take(struct ratelimit_table *t, const struct ratelimit_rule *rule, const char *key,
		    size_t keylen, uint64_t now_ms, uint64_t *retry_ms)
{
	*retry_ms = 0;
	if (t == NULL || rule->count == 0)
		return true;
	uint64_t h = key_hash(t, rule->name, key, keylen);
	uint64_t now = now_ms * 1000u, period = rule->period_ms * 1000u;
	uint64_t interval = period / rule->count;
	struct set *s = &t->sets[(h >> 32) & t->mask];
	lock_set(s);
	struct entry *e = entry_for(s, h, now);
	uint64_t tat = e->key == h && e->tat > now ? e->tat : now;
	bool allowed = tat + interval - now <= period;
	if (allowed)
		*e = (struct entry){.key = h, .tat = tat + interval};
	unlock_set(s);
	if (!allowed)
		*retry_ms = (tat + interval - period - now + 999u) / 1000u;
	return allowed;
}

/* ---- keys ---- */

const char *ratelimit_address_key(const char *addr, char *out, size_t outlen)
{
	struct in6_addr a6;
	char text[INET6_ADDRSTRLEN];
	if (inet_pton(AF_INET6, addr, &a6) != 1)
		return addr;
	if (IN6_IS_ADDR_V4MAPPED(&a6)) {
		if (inet_ntop(AF_INET, &a6.s6_addr[12], out, (socklen_t)outlen) == NULL)
			return addr;
		return out;
	}
	memset(&a6.s6_addr[8], 0, 8);
	if (inet_ntop(AF_INET6, &a6, text, sizeof(text)) == NULL)
		return addr;
	snprintf(out, outlen, "%s/64", text);
	return out;
}
