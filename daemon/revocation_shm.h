/*
 * revocation_shm.h: the node's set of revoked token ids, in memory shared by the master and
 * every worker, and the lease that lets one worker at a time fetch it from storage.
 */
#ifndef SESAME_REVOCATION_SHM_H
#define SESAME_REVOCATION_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct revocation_table;

/*
 * Maps a table for capacity ids (MAP_SHARED | MAP_ANONYMOUS: untouched pages cost nothing)
 * with its hashing key drawn now. NULL when it cannot be mapped.
 */
struct revocation_table *revocation_shm_new(size_t capacity);
void revocation_shm_free(struct revocation_table *t);
size_t revocation_shm_capacity(const struct revocation_table *t);
/* The ids the table holds now. */
size_t revocation_shm_count(const struct revocation_table *t);
/* The bytes the mapping spans (its two tables and their header). */
size_t revocation_shm_bytes(const struct revocation_table *t);

/* The node's table: made once by the master before it forks, kept across reloads. */
int revocation_shm_init(size_t capacity);
struct revocation_table *revocation_shm_node(void);

/* The 128-bit keyed hash (SipHash) the table keeps of id; never {0, 0}. */
void revocation_shm_hash(const struct revocation_table *t, const char *id, uint64_t h[2]);

/*
 * Is h in the table? Sets *revoked_at (may be NULL) to its revocation time. Lock free: it
 * never waits for a writer but to retry a read that a write overlapped. From any thread.
 */
bool revocation_shm_find(struct revocation_table *t, const uint64_t h[2], long long *revoked_at);

/*
 * Writers hold the table's lock, a process-shared robust mutex: a writer killed inside it
 * leaves the table usable to the next. Never on an event loop (a purge holds it for a scan).
 */
int revocation_shm_lock(struct revocation_table *t);
void revocation_shm_unlock(struct revocation_table *t);
/*
 * Files h (under the lock): a new id, or a later expiry (0: never) or revocation time for one
 * the table has. 0, or -1 when h is new and the table is full.
 */
int revocation_shm_put(struct revocation_table *t, const uint64_t h[2], long long expires_at,
		       long long revoked_at);
/* Drops the ids expired before now_s (under the lock): readers go on meanwhile. Returns how
 * many were dropped. */
size_t revocation_shm_purge(struct revocation_table *t, long long now_s);

/*
 * The fetcher's lease: takes it for pid when it is free or its deadline has passed, or renews
 * it when pid holds it, until now_ms + ttl_ms (the monotonic clock). True when pid holds it.
 */
bool revocation_shm_lease(struct revocation_table *t, pid_t pid, uint64_t now_ms, uint64_t ttl_ms);
/* Frees the lease if pid holds it (a worker that stops, or the master reaping one). */
bool revocation_shm_release(struct revocation_table *t, pid_t pid);
/* The pid holding the lease, or 0. */
pid_t revocation_shm_holder(const struct revocation_table *t);

/* The fetcher's schedule, shared so that a new fetcher keeps the old one's pace. */
enum revocation_shm_task { REVOCATION_SHM_FETCH, REVOCATION_SHM_PURGE };
/* True (and the next time moved every_ms on) when task is due at now_ms. */
bool revocation_shm_due(struct revocation_table *t, enum revocation_shm_task task, uint64_t now_ms,
			uint64_t every_ms);
/* Milliseconds until task is due at now_ms (0: due). */
uint64_t revocation_shm_until(const struct revocation_table *t, enum revocation_shm_task task,
			      uint64_t now_ms);

/*
 * The fetches' cursor: the next fetch asks for the ids revoked since then (the store's
 * clock; -1: all of them). A fetch that ends sets the next cursor (ok) or not (failed);
 * either way the count of attempts moves on.
 */
long long revocation_shm_since(const struct revocation_table *t);
void revocation_shm_fetched(struct revocation_table *t, bool ok, long long next_since);
/* Has a fetch ever succeeded (the set is loaded)? And how many were attempted. */
bool revocation_shm_loaded(const struct revocation_table *t);
uint64_t revocation_shm_attempts(const struct revocation_table *t);

/*
 * Whether ids did not fit in the table: while it is set every worker keeps (and fetches) the
 * whole set in its own memory too. Set by a writer whose put failed, cleared by the fetcher.
 */
bool revocation_shm_overflow(const struct revocation_table *t);
void revocation_shm_set_overflow(struct revocation_table *t, bool on);

#endif
