/*
 * revocation_set.c: a worker's own revoked ids, beside the node's shared set (revocation.c).
 *
 * Two parts under one mutex, held only briefly: a list of the ids the worker revoked itself,
 * short-lived (its revocation thread files them into the node's set at once), and an
 * open-addressing table of the same 32-byte entries as the node's, for the ids that did not
 * fit there. The table changes on the revocation thread alone, which builds a grown or purged
 * table outside the lock and swaps it in: a lookup on the event loop never waits for a
 * rebuild, only, at worst, for one insertion.
 */
#include "autoconfig.h"

#include "revocation_set.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

#define MIN_CAPACITY 64

struct revocation_set {
	pthread_mutex_t lock;
	long leeway;
	struct revocation_entry *slots;
	size_t cap, n;
	struct revocation_entry *own; /* ids revoked here, until they are filed */
	size_t nown, capown;
};

static bool blank(const struct revocation_entry *e)
{
	return e->h[0] == 0 && e->h[1] == 0;
}

static struct revocation_entry *slot_of(struct revocation_entry *slots, size_t cap,
					const uint64_t h[2])
{
	size_t i = (size_t)h[0] & (cap - 1);
	while (!blank(&slots[i])) {
		if (slots[i].h[0] == h[0] && slots[i].h[1] == h[1])
			return &slots[i];
		i = (i + 1) & (cap - 1);
	}
	return &slots[i];
}

static bool expired(const struct revocation_entry *e, long long now_s, long leeway)
{
	return e->expires_at != 0 && e->expires_at + leeway < now_s;
}

/* A new table of the live entries (the expired ones dropped: their tokens fail the exp check
 * anyway) with room for want more, built without the lock. */
static bool rebuild(struct revocation_set *s, size_t want)
{
	size_t cap = MIN_CAPACITY, n = 0;
	while (cap < (s->n + want) * 2)
		cap *= 2;
	struct revocation_entry *slots = calloc(cap, sizeof(*slots));
	if (slots == NULL)
		return false;
	long long now_s = clock_wall_ms() / 1000;
	for (size_t i = 0; i < s->cap; i++) {
		const struct revocation_entry *e = &s->slots[i];
		if (blank(e) || expired(e, now_s, s->leeway))
			continue;
		*slot_of(slots, cap, e->h) = *e;
		n++;
	}
	pthread_mutex_lock(&s->lock);
	struct revocation_entry *old = s->slots;
	s->slots = slots;
	s->cap = cap;
	s->n = n;
	pthread_mutex_unlock(&s->lock);
	free(old);
	return true;
}

struct revocation_set *revocation_set_new(long leeway)
{
	struct revocation_set *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->leeway = leeway;
	pthread_mutex_init(&s->lock, NULL);
	if (!rebuild(s, 0)) {
		revocation_set_free(s);
		return NULL;
	}
	return s;
}

void revocation_set_free(struct revocation_set *s)
{
	if (s == NULL)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s->slots);
	free(s->own);
	free(s);
}

long long revocation_set_time(struct revocation_set *s, const uint64_t h[2])
{
	long long at = -1;
	pthread_mutex_lock(&s->lock);
	if (s->n > 0) {
		const struct revocation_entry *e = slot_of(s->slots, s->cap, h);
		if (!blank(e))
			at = e->revoked_at;
	}
	for (size_t i = 0; at < 0 && i < s->nown; i++) {
		if (s->own[i].h[0] == h[0] && s->own[i].h[1] == h[1])
			at = s->own[i].revoked_at;
	}
	pthread_mutex_unlock(&s->lock);
	return at;
}

int revocation_set_push(struct revocation_set *s, const struct revocation_entry *e)
{
	int rc = 0;
	pthread_mutex_lock(&s->lock);
	if (s->nown == s->capown) {
		size_t cap = s->capown ? s->capown * 2 : 16;
		struct revocation_entry *grown = realloc(s->own, cap * sizeof(*grown));
		if (grown == NULL) {
			rc = -1;
			goto done;
		}
		s->own = grown;
		s->capown = cap;
	}
	s->own[s->nown++] = *e;
done:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

struct revocation_entry *revocation_set_peek(struct revocation_set *s, size_t *n)
{
	pthread_mutex_lock(&s->lock);
	*n = s->nown;
	struct revocation_entry *copy = *n > 0 ? malloc(*n * sizeof(*copy)) : NULL;
	if (copy != NULL)
		memcpy(copy, s->own, *n * sizeof(*copy));
	pthread_mutex_unlock(&s->lock);
	return copy;
}

void revocation_set_pop(struct revocation_set *s, size_t n)
{
	pthread_mutex_lock(&s->lock);
	memmove(s->own, s->own + n, (s->nown - n) * sizeof(*s->own));
	s->nown -= n;
	pthread_mutex_unlock(&s->lock);
}

int revocation_set_file(struct revocation_set *s, const uint64_t h[2], long long expires_at,
			long long revoked_at)
{
	if ((s->n + 1) * 2 > s->cap && !rebuild(s, 1))
		return -1;
	pthread_mutex_lock(&s->lock);
	struct revocation_entry *e = slot_of(s->slots, s->cap, h);
	if (blank(e)) {
		*e = (struct revocation_entry){
		    .h = {h[0], h[1]}, .expires_at = expires_at, .revoked_at = revoked_at};
		s->n++;
	} else {
		if (e->expires_at != 0 && (expires_at == 0 || expires_at > e->expires_at))
			e->expires_at = expires_at;
		if (revoked_at > e->revoked_at)
			e->revoked_at = revoked_at;
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

size_t revocation_set_count(const struct revocation_set *s)
{
	return s->n;
}

void revocation_set_purge(struct revocation_set *s)
{
	rebuild(s, 0);
}

bool revocation_set_each(const struct revocation_set *s,
			 bool (*fn)(void *ctx, const struct revocation_entry *e), void *ctx)
{
	long long now_s = clock_wall_ms() / 1000;
	for (size_t i = 0; i < s->cap; i++) {
		const struct revocation_entry *e = &s->slots[i];
		if (!blank(e) && !expired(e, now_s, s->leeway) && !fn(ctx, e))
			return false;
	}
	return true;
}

void revocation_set_clear(struct revocation_set *s)
{
	struct revocation_entry *slots = calloc(MIN_CAPACITY, sizeof(*slots));
	if (slots == NULL)
		return;
	pthread_mutex_lock(&s->lock);
	struct revocation_entry *old = s->slots;
	s->slots = slots;
	s->cap = MIN_CAPACITY;
	s->n = 0;
	pthread_mutex_unlock(&s->lock);
	free(old);
}
