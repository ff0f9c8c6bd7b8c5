/*
 * revocation_shm.c: the node's set of revoked token ids, shared by every worker, so that one
 * process per node fetches it from storage instead of every worker.
 *
 * The master maps it before it forks the first worker (MAP_SHARED | MAP_ANONYMOUS) and keeps it
 * across reloads: a new worker finds the node's set there, with no fetch of its own. Its size
 * is fixed at start (jwt.revocation_capacity ids). It holds two open-addressing tables of
 * 32-byte slots (an id's 128-bit SipHash under a key drawn once per node, its expiry and its
 * revocation time), each of twice the capacity's slots rounded up to a power of two, so that
 * a probe stays short; one of them is active, the other is where a purge rebuilds the live
 * ids before it flips an index. Pages nobody wrote cost nothing, and a purge gives the
 * emptied table's pages back (MADV_REMOVE).
 *
 * Readers (every request's token check, on the event loops) take no lock: a sequence number,
 * odd while a writer changes the active table or flips it, tells them to read again (a
 * seqlock; every field is read and written with atomics). A write is a few stores, so a
 * reader retries at most a few times. Writers (the fetcher, and each worker's thread filing
 * the ids it revoked itself) take a process-shared robust mutex: a writer killed while it
 * holds it (kill -9) hands the next locker EOWNERDEAD, who makes the sequence even again and
 * counts the table afresh; a half-written slot is an entry no id matches. A reader that finds
 * the sequence odd for long tries the lock itself, never waiting on it, to do that repair.
 *
 * The fetcher holds a lease: one 64-bit word, the holder's pid and a deadline on the monotonic
 * clock, taken by compare-and-swap when free or past its deadline, renewed on each of its
 * ticks, released when it stops and cleared by the master when it reaps the holder. The
 * fetches' cursor and schedule live here too, so that whoever holds the lease next goes on
 * where the last one stopped.
 */
#include "autoconfig.h"

#include "revocation_shm.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <sodium.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define LEASE_PID_SHIFT	    42 /* Linux pids fit in 22 bits */
#define LEASE_TIME_MASK	    ((UINT64_C(1) << LEASE_PID_SHIFT) - 1)
#define SPINS_BEFORE_REPAIR 64

struct slot {
	_Atomic uint64_t h0, h1; /* {0, 0}: empty */
	_Atomic int64_t expires_at;
	_Atomic int64_t revoked_at;
};

struct revocation_table {
	size_t bytes, capacity, nslots; /* fixed at creation */
	unsigned char key[crypto_shorthash_siphashx24_KEYBYTES];
	pthread_mutex_t writer;
	_Atomic uint64_t seq;	  /* odd while the active table changes */
	_Atomic uint32_t active;  /* 0 or 1 */
	_Atomic uint64_t count;	  /* ids in the active table */
	_Atomic uint64_t lease;	  /* pid << LEASE_PID_SHIFT | deadline ms; 0: free */
	_Atomic int64_t since_ms; /* the next fetch's cursor; -1: everything */
	_Atomic uint64_t attempts;
	_Atomic uint32_t loaded, overflow;
	_Atomic uint64_t next[2]; /* enum revocation_shm_task: when it is due next */
	struct slot slots[];	  /* two tables of nslots each */
};

static struct revocation_table *node;

/* ---- the mapping ---- */

static int init_writer(pthread_mutex_t *mu)
{
	pthread_mutexattr_t a;
	if (pthread_mutexattr_init(&a) != 0)
		return -1;
	int rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (rc == 0)
		rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (rc == 0)
		rc = pthread_mutex_init(mu, &a);
	pthread_mutexattr_destroy(&a);
	return rc == 0 ? 0 : -1;
}

struct revocation_table *revocation_shm_new(size_t capacity)
{
	size_t nslots = 64;
	while (nslots < capacity * 2)
		nslots *= 2;
	size_t bytes = sizeof(struct revocation_table) + 2 * nslots * sizeof(struct slot);
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	struct revocation_table *t = p; /* zeroed: both tables empty, the lease free */
	t->bytes = bytes;
	t->capacity = capacity;
	t->nslots = nslots;
	atomic_init(&t->since_ms, -1);
	randombytes_buf(t->key, sizeof(t->key));
	if (init_writer(&t->writer) != 0) {
		munmap(p, bytes);
		return NULL;
	}
	return t;
}

void revocation_shm_free(struct revocation_table *t)
{
	if (t == NULL)
		return;
	pthread_mutex_destroy(&t->writer);
	munmap(t, t->bytes);
}

size_t revocation_shm_capacity(const struct revocation_table *t)
{
	return t->capacity;
}

size_t revocation_shm_count(const struct revocation_table *t)
{
	return (size_t)atomic_load_explicit(&t->count, memory_order_relaxed);
}

size_t revocation_shm_bytes(const struct revocation_table *t)
{
	return t->bytes;
}

int revocation_shm_init(size_t capacity)
{
	if (node == NULL)
		node = revocation_shm_new(capacity);
	return node != NULL ? 0 : -1;
}

struct revocation_table *revocation_shm_node(void)
{
	return node;
}

void revocation_shm_hash(const struct revocation_table *t, const char *id, uint64_t h[2])
{
	unsigned char out[crypto_shorthash_siphashx24_BYTES];
	crypto_shorthash_siphashx24(out, (const unsigned char *)id, strlen(id), t->key);
	memcpy(h, out, sizeof(out));
	if (h[0] == 0 && h[1] == 0)
		h[0] = 1;
}

/* ---- slots ---- */

static struct slot *table(struct revocation_table *t, uint32_t which)
{
	return &t->slots[(size_t)which * t->nslots];
}

static bool empty(struct slot *s)
{
	return atomic_load_explicit(&s->h0, memory_order_relaxed) == 0 &&
	       atomic_load_explicit(&s->h1, memory_order_relaxed) == 0;
}

static bool holds(struct slot *s, const uint64_t h[2])
{
	return atomic_load_explicit(&s->h0, memory_order_relaxed) == h[0] &&
	       atomic_load_explicit(&s->h1, memory_order_relaxed) == h[1];
}

/* h's slot in tab, or the empty one where it would go; NULL when a probe of every slot found
 * neither (only a reader racing two purges can see such a table). */
static struct slot *probe(struct slot *tab, size_t nslots, const uint64_t h[2])
{
	size_t i = (size_t)h[0] & (nslots - 1);
	for (size_t n = 0; n < nslots; n++, i = (i + 1) & (nslots - 1)) {
		if (empty(&tab[i]) || holds(&tab[i], h))
			return &tab[i];
	}
	return NULL;
}

static void store(_Atomic int64_t *field, long long v)
{
	atomic_store_explicit(field, v, memory_order_relaxed);
}

static long long load(_Atomic int64_t *field)
{
	return atomic_load_explicit(field, memory_order_relaxed);
}

/* ---- the seqlock ---- */

static void write_begin(struct revocation_table *t)
{
	uint64_t s = atomic_load_explicit(&t->seq, memory_order_relaxed);
	atomic_store_explicit(&t->seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static void write_end(struct revocation_table *t)
{
	uint64_t s = atomic_load_explicit(&t->seq, memory_order_relaxed);
	atomic_store_explicit(&t->seq, s + 1, memory_order_release);
}

/* After a writer died holding the lock: the sequence even again, the count true. */
static void repair(struct revocation_table *t)
{
	if (atomic_load_explicit(&t->seq, memory_order_relaxed) & 1)
		write_end(t);
	struct slot *tab = table(t, atomic_load_explicit(&t->active, memory_order_relaxed));
	uint64_t n = 0;
	for (size_t i = 0; i < t->nslots; i++)
		n += !empty(&tab[i]);
	atomic_store_explicit(&t->count, n, memory_order_relaxed);
}

int revocation_shm_lock(struct revocation_table *t)
{
	int rc = pthread_mutex_lock(&t->writer);
	if (rc == EOWNERDEAD) {
		repair(t);
		rc = pthread_mutex_consistent(&t->writer);
	}
	return rc == 0 ? 0 : -1;
}

void revocation_shm_unlock(struct revocation_table *t)
{
	pthread_mutex_unlock(&t->writer);
}

/* A reader that found the sequence odd for long: a writer may have died inside. The lock is
 * only tried: a live writer is left to finish. */
static void reader_repair(struct revocation_table *t)
{
	int rc = pthread_mutex_trylock(&t->writer);
	if (rc == EOWNERDEAD) {
		repair(t);
		pthread_mutex_consistent(&t->writer);
	} else if (rc != 0) {
		return;
	} else if (atomic_load_explicit(&t->seq, memory_order_relaxed) & 1) {
		repair(t);
	}
	pthread_mutex_unlock(&t->writer);
}

bool revocation_shm_find(struct revocation_table *t, const uint64_t h[2], long long *revoked_at)
{
	for (unsigned spins = 1;; spins++) {
		uint64_t s = atomic_load_explicit(&t->seq, memory_order_acquire);
		if (s & 1) {
			if (spins % SPINS_BEFORE_REPAIR == 0)
				reader_repair(t);
			else
				sched_yield();
			continue;
		}
		struct slot *tab = table(t, atomic_load_explicit(&t->active, memory_order_relaxed));
		struct slot *e = probe(tab, t->nslots, h);
		bool found = e != NULL && !empty(e);
		long long at = found ? load(&e->revoked_at) : -1;
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(&t->seq, memory_order_relaxed) != s)
			continue;
		if (revoked_at != NULL)
			*revoked_at = at;
		return found;
	}
}

/* ---- writers ---- */

int revocation_shm_put(struct revocation_table *t, const uint64_t h[2], long long expires_at,
		       long long revoked_at)
{
	struct slot *e = probe(table(t, atomic_load(&t->active)), t->nslots, h);
	if (e == NULL || (empty(e) && revocation_shm_count(t) >= t->capacity))
		return -1;
	write_begin(t);
	if (empty(e)) {
		store(&e->expires_at, expires_at);
		store(&e->revoked_at, revoked_at);
		atomic_store_explicit(&e->h1, h[1], memory_order_relaxed);
		atomic_store_explicit(&e->h0, h[0], memory_order_relaxed);
		atomic_fetch_add_explicit(&t->count, 1, memory_order_relaxed);
	} else {
		long long exp = load(&e->expires_at);
		if (exp != 0 && (expires_at == 0 || expires_at > exp))
			store(&e->expires_at, expires_at);
		if (revoked_at > load(&e->revoked_at))
			store(&e->revoked_at, revoked_at);
	}
	write_end(t);
	return 0;
}

static void zero(struct slot *from, struct slot *to)
{
	for (struct slot *s = from; s < to; s++) {
		atomic_store_explicit(&s->h0, 0, memory_order_relaxed);
		atomic_store_explicit(&s->h1, 0, memory_order_relaxed);
		store(&s->expires_at, 0);
		store(&s->revoked_at, 0);
	}
}

/*
 * Empties a table: its whole pages go back to the system (MADV_REMOVE frees a shared
 * mapping's pages; they read as zeros after), the rest is zeroed. A reader still in it sees
 * empty slots, then the sequence moved, and reads again.
 */
static void clear(struct revocation_table *t, uint32_t which)
{
	/* Whatever moved the table's sequence before (in this process or the last holder's) is
	 * seen before any slot is zeroed, by a reader still on this table from before a flip. */
	atomic_thread_fence(memory_order_release);
	struct slot *tab = table(t, which), *end = tab + t->nslots;
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t from = ((uintptr_t)tab + page - 1) & ~(page - 1);
	uintptr_t to = (uintptr_t)end & ~(page - 1);
	if (to <= from || madvise((void *)from, to - from, MADV_REMOVE) != 0) {
		zero(tab, end);
		return;
	}
	/* The slots on the partial pages at either end, whole: a table need not start on a
	 * slot's boundary from the page's start. */
	size_t sz = sizeof(*tab);
	zero(tab, tab + (from - (uintptr_t)tab + sz - 1) / sz);
	zero(tab + (to - (uintptr_t)tab) / sz, end);
}

size_t revocation_shm_purge(struct revocation_table *t, long long now_s)
{
	uint32_t from = atomic_load(&t->active), to = 1 - from;
	struct slot *old = table(t, from), *fresh = table(t, to);
	clear(t, to);
	uint64_t n = 0, before = revocation_shm_count(t);
	for (size_t i = 0; i < t->nslots; i++) {
		struct slot *e = &old[i];
		long long exp = load(&e->expires_at);
		uint64_t h[2] = {atomic_load_explicit(&e->h0, memory_order_relaxed),
				 atomic_load_explicit(&e->h1, memory_order_relaxed)};
		if ((h[0] == 0 && h[1] == 0) || (exp != 0 && exp < now_s))
			continue;
		struct slot *d = probe(fresh, t->nslots, h);
		store(&d->expires_at, exp);
		store(&d->revoked_at, load(&e->revoked_at));
		atomic_store_explicit(&d->h1, h[1], memory_order_relaxed);
		atomic_store_explicit(&d->h0, h[0], memory_order_relaxed);
		n++;
	}
	write_begin(t);
	atomic_store_explicit(&t->active, to, memory_order_relaxed);
	atomic_store_explicit(&t->count, n, memory_order_relaxed);
	write_end(t);
	clear(t, from);
	return before > n ? (size_t)(before - n) : 0;
}

/* ---- the lease ---- */

bool revocation_shm_lease(struct revocation_table *t, pid_t pid, uint64_t now_ms, uint64_t ttl_ms)
{
	uint64_t mine = (uint64_t)pid << LEASE_PID_SHIFT | ((now_ms + ttl_ms) & LEASE_TIME_MASK);
	uint64_t cur = atomic_load(&t->lease);
	for (;;) {
		pid_t holder = (pid_t)(cur >> LEASE_PID_SHIFT);
		if (holder != 0 && holder != pid && (cur & LEASE_TIME_MASK) > now_ms)
			return false;
		if (atomic_compare_exchange_weak(&t->lease, &cur, mine))
			return true;
	}
}

bool revocation_shm_release(struct revocation_table *t, pid_t pid)
{
	if (t == NULL)
		return false;
	uint64_t cur = atomic_load(&t->lease);
	while ((pid_t)(cur >> LEASE_PID_SHIFT) == pid && pid != 0) {
		if (atomic_compare_exchange_weak(&t->lease, &cur, 0))
			return true;
	}
	return false;
}

pid_t revocation_shm_holder(const struct revocation_table *t)
{
	if (t == NULL)
		return 0;
	return (pid_t)(atomic_load(&t->lease) >> LEASE_PID_SHIFT);
}

/* ---- the fetcher's state ---- */

bool revocation_shm_due(struct revocation_table *t, enum revocation_shm_task task, uint64_t now_ms,
			uint64_t every_ms)
{
	uint64_t next = atomic_load(&t->next[task]);
	if (now_ms < next)
		return false;
	/* On the old pace, unless it fell a whole period behind. */
	uint64_t after = next + every_ms > now_ms ? next + every_ms : now_ms + every_ms;
	return atomic_compare_exchange_strong(&t->next[task], &next, after);
}

uint64_t revocation_shm_until(const struct revocation_table *t, enum revocation_shm_task task,
			      uint64_t now_ms)
{
	uint64_t next = atomic_load(&t->next[task]);
	return next > now_ms ? next - now_ms : 0;
}

long long revocation_shm_since(const struct revocation_table *t)
{
	return atomic_load(&t->since_ms);
}

void revocation_shm_fetched(struct revocation_table *t, bool ok, long long next_since)
{
	if (ok) {
		atomic_store(&t->since_ms, next_since);
		atomic_store(&t->loaded, 1);
	}
	atomic_fetch_add(&t->attempts, 1);
}

bool revocation_shm_loaded(const struct revocation_table *t)
{
	return atomic_load(&t->loaded) != 0;
}

uint64_t revocation_shm_attempts(const struct revocation_table *t)
{
	return atomic_load(&t->attempts);
}

bool revocation_shm_overflow(const struct revocation_table *t)
{
	return atomic_load(&t->overflow) != 0;
}

void revocation_shm_set_overflow(struct revocation_table *t, bool on)
{
	atomic_store(&t->overflow, on ? 1 : 0);
}
