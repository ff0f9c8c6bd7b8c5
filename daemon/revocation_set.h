/*
 * revocation_set.h: a worker's own revoked ids, beside the node's set: those it revoked itself
 * until its thread files them into the node's set, and those that did not fit there.
 */
#ifndef SESAME_REVOCATION_SET_H
#define SESAME_REVOCATION_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct revocation_entry {
	uint64_t h[2];	      /* the id's keyed hash (revocation_shm_hash); {0, 0}: an empty slot */
	long long expires_at; /* Unix seconds; 0: never */
	long long revoked_at; /* Unix ms, the store's clock; 0 for the ids revoked here */
};

struct revocation_set;

/* An empty set; its ids expire leeway seconds after their expiry. NULL when out of memory. */
struct revocation_set *revocation_set_new(long leeway);
void revocation_set_free(struct revocation_set *s);

/* h's revocation time in the set or the list of ids revoked here, or -1. From any thread:
 * it waits at most for one insertion. */
long long revocation_set_time(struct revocation_set *s, const uint64_t h[2]);

/* An id revoked here goes to the list; -1 when out of memory. From any thread. */
int revocation_set_push(struct revocation_set *s, const struct revocation_entry *e);
/*
 * A copy of the list (malloc'd, *n entries; NULL when empty or out of memory), which stays
 * in the list, found by lookups, until revocation_set_pop(s, n) once they are filed.
 */
struct revocation_entry *revocation_set_peek(struct revocation_set *s, size_t *n);
void revocation_set_pop(struct revocation_set *s, size_t n);

/*
 * The set itself changes on one thread only (the worker's revocation thread), which builds a
 * grown or purged table outside the lock. Files h: a later expiry and a later revocation
 * time win. -1 when out of memory.
 */
int revocation_set_file(struct revocation_set *s, const uint64_t h[2], long long expires_at,
			long long revoked_at);
size_t revocation_set_count(const struct revocation_set *s);
/* Drops the expired ids. */
void revocation_set_purge(struct revocation_set *s);
/* Calls fn with each live id until it returns false; true when it never did. */
bool revocation_set_each(const struct revocation_set *s,
			 bool (*fn)(void *ctx, const struct revocation_entry *e), void *ctx);
/* Empties the set (not the list). */
void revocation_set_clear(struct revocation_set *s);

#endif
