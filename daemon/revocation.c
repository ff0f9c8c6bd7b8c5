/*
 * revocation.c: the revoked token ids a worker keeps in memory.
 *
 * A revoked token must be refused on every worker of every sesamed sharing the storage within
 * jwt.revocation_refresh, without a storage round trip per request. Each worker holds the ids
 * (jtis and refresh families' ids) revoked and not yet expired in a hash set, checked on the
 * event loop, and a thread of its own asks the storage for the ids revoked since its last
 * look. The thread is not one of the job threads: a queue of password hashes never delays it.
 * The loop only looks ids up and lists those it revokes itself; the thread files everything
 * into the set, and builds a grown or purged set outside the lock: a lookup never waits for
 * more than one insertion. When the thread purges expired token state it deletes the stored
 * events past events.retention too (events.c): one worker's purge would do, any will.
 *
 * The ids revoked since T are asked for with T a little before the previous fetch began
 * (FETCH_OVERLAP_MS): a revocation written by another process with a time just before that
 * fetch, but committed just after it, is seen by the next one. Adding an id twice is harmless.
 * Both times are the storage's clock (the database server's), never this host's: revocations
 * are stamped by it and each fetch reports it, so a host whose clock runs ahead or behind
 * neither misses other hosts' revocations nor hides its own.
 *
 * A subject's cutoff (SESAME_SUBJECT_CUTOFF_PREFIX and the subject, recorded when the subject
 * is logged out everywhere, disabled or deleted) is an id of the set too, kept with its
 * revocation time: tokens of the subject issued at or before it are refused (auth.c).
 *
 * The set keeps a 128-bit keyed hash (SipHash) of each id, not the id: 32 bytes an entry
 * however long the id, and ids chosen by anyone cannot aim at one bucket. A false match would
 * need two ids with one 128-bit hash under a key drawn when the worker starts.
 */
#include "autoconfig.h"

#include "revocation.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "config.h"
#include "events.h"
#include "log.h"
#include "metrics.h"

#define FETCH_OVERLAP_MS 10000
#define PURGE_EVERY_MS	 60000
#define MIN_CAPACITY	 64

struct entry {
	uint64_t h[2]; /* {0, 0}: an empty slot */
	long long expires_at;
	long long revoked_at; /* Unix ms, the store's clock; 0 for the ids revoked here */
};

struct revocation {
	const struct config *cfg;
	struct storage st;
	/*
	 * Held only briefly: for a lookup, one insertion, a swap of tables. The table changes on
	 * the fetching side alone (the thread, or the start before it), which builds a grown or
	 * purged table outside the lock; the event loop never waits for a rebuild.
	 */
	pthread_mutex_t lock;
	struct entry *slots;
	size_t cap, n;
	struct entry *own; /* ids this worker revoked itself, until the thread files them */
	size_t nown, capown;
	unsigned char key[crypto_shorthash_siphashx24_KEYBYTES];
	/* the thread */
	pthread_t thread;
	bool started;
	pthread_mutex_t wait_lock;
	pthread_cond_t wake; /* on CLOCK_MONOTONIC */
	bool stopping;
	long long since_ms; /* the next fetch asks for ids revoked since then; -1: all */
	bool failing;
};

/* ---- the set ---- */

static void hash_id(const struct revocation *rv, const char *id, uint64_t h[2])
{
	unsigned char out[crypto_shorthash_siphashx24_BYTES];
	crypto_shorthash_siphashx24(out, (const unsigned char *)id, strlen(id), rv->key);
	memcpy(h, out, sizeof(out));
	if (h[0] == 0 && h[1] == 0)
		h[0] = 1;
}

static struct entry *slot_of(struct entry *slots, size_t cap, const uint64_t h[2])
{
	size_t i = (size_t)h[0] & (cap - 1);
	while (slots[i].h[0] != 0 || slots[i].h[1] != 0) {
		if (slots[i].h[0] == h[0] && slots[i].h[1] == h[1])
			return &slots[i];
		i = (i + 1) & (cap - 1);
	}
	return &slots[i];
}

static bool expired(const struct entry *e, long long now_s, long leeway)
{
	return e->expires_at != 0 && e->expires_at + leeway < now_s;
}

/*
 * A new table of the live entries (the expired ones dropped: their tokens fail the exp check
 * anyway) with room for want more, built without the lock: only the fetching side, the caller,
 * changes the table. NULL when out of memory.
 */
static struct entry *build(const struct revocation *rv, size_t want, size_t *cap_out, size_t *n_out)
{
	size_t cap = MIN_CAPACITY;
	while (cap < (rv->n + want) * 2)
		cap *= 2;
	struct entry *slots = calloc(cap, sizeof(*slots));
	if (slots == NULL)
		return NULL;
	long long now_s = clock_wall_ms() / 1000;
	size_t n = 0;
	for (size_t i = 0; i < rv->cap; i++) {
		const struct entry *e = &rv->slots[i];
		if ((e->h[0] == 0 && e->h[1] == 0) || expired(e, now_s, rv->cfg->jwt.leeway))
			continue;
		*slot_of(slots, cap, e->h) = *e;
		n++;
	}
	*cap_out = cap;
	*n_out = n;
	return slots;
}

/* Replaces the table with a new one (from build); the fetching side only. */
static bool rebuild(struct revocation *rv, size_t want)
{
	size_t cap, n;
	struct entry *slots = build(rv, want, &cap, &n);
	if (slots == NULL)
		return false;
	pthread_mutex_lock(&rv->lock);
	struct entry *old = rv->slots;
	rv->slots = slots;
	rv->cap = cap;
	rv->n = n;
	pthread_mutex_unlock(&rv->lock);
	free(old);
	return true;
}

/* Files one id's hash into the table; the fetching side only. A later expiry wins, and so
 * does a later revocation time. */
static void file_entry(struct revocation *rv, const uint64_t h[2], long long expires_at,
		       long long revoked_at)
{
	if ((rv->n + 1) * 2 > rv->cap && !rebuild(rv, 1)) {
		log_error("revocation: out of memory: a revoked id is not kept");
		return;
	}
	pthread_mutex_lock(&rv->lock);
	struct entry *e = slot_of(rv->slots, rv->cap, h);
	if (e->h[0] == 0 && e->h[1] == 0) {
		*e = (struct entry){
		    .h = {h[0], h[1]}, .expires_at = expires_at, .revoked_at = revoked_at};
		rv->n++;
	} else {
		if (e->expires_at != 0 && (expires_at == 0 || expires_at > e->expires_at))
			e->expires_at = expires_at;
		if (revoked_at > e->revoked_at)
			e->revoked_at = revoked_at;
	}
	pthread_mutex_unlock(&rv->lock);
}

void revocation_add(struct revocation *rv, const char *id, long long expires_at)
{
	if (rv == NULL)
		return;
	struct entry e = {.expires_at = expires_at};
	hash_id(rv, id, e.h);
	pthread_mutex_lock(&rv->lock);
	if (rv->nown == rv->capown) {
		size_t cap = rv->capown ? rv->capown * 2 : 16;
		struct entry *grown = realloc(rv->own, cap * sizeof(*grown));
		if (grown == NULL) {
			pthread_mutex_unlock(&rv->lock);
			log_error("revocation: out of memory: a revoked id is refused here once "
				  "fetched");
			return;
		}
		rv->own = grown;
		rv->capown = cap;
	}
	rv->own[rv->nown++] = e;
	pthread_mutex_unlock(&rv->lock);
}

long long revocation_time(struct revocation *rv, const char *id)
{
	if (rv == NULL || id == NULL)
		return -1;
	long long at = -1;
	uint64_t h[2];
	hash_id(rv, id, h);
	pthread_mutex_lock(&rv->lock);
	if (rv->n > 0) {
		const struct entry *e = slot_of(rv->slots, rv->cap, h);
		if (e->h[0] != 0 || e->h[1] != 0)
			at = e->revoked_at;
	}
	pthread_mutex_unlock(&rv->lock);
	return at;
}

bool revocation_has(struct revocation *rv, const char *id)
{
	if (rv == NULL || id == NULL)
		return false;
	bool found = false;
	pthread_mutex_lock(&rv->lock);
	if (rv->n > 0 || rv->nown > 0) {
		uint64_t h[2];
		hash_id(rv, id, h);
		const struct entry *e = slot_of(rv->slots, rv->cap, h);
		found = e->h[0] != 0 || e->h[1] != 0;
		for (size_t i = 0; !found && i < rv->nown; i++)
			found = rv->own[i].h[0] == h[0] && rv->own[i].h[1] == h[1];
	}
	pthread_mutex_unlock(&rv->lock);
	return found;
}

/* Files the ids this worker revoked itself: into the table first, then out of its list, so
 * that a lookup finds them all along. The fetching side only. */
static void file_own(struct revocation *rv)
{
	pthread_mutex_lock(&rv->lock);
	size_t k = rv->nown;
	struct entry *copy = k > 0 ? malloc(k * sizeof(*copy)) : NULL;
	if (copy != NULL)
		memcpy(copy, rv->own, k * sizeof(*copy));
	pthread_mutex_unlock(&rv->lock);
	if (copy == NULL)
		return; /* nothing to file, or out of memory: they wait in the list */
	for (size_t i = 0; i < k; i++)
		file_entry(rv, copy[i].h, copy[i].expires_at, copy[i].revoked_at);
	free(copy);
	pthread_mutex_lock(&rv->lock);
	memmove(rv->own, rv->own + k, (rv->nown - k) * sizeof(*rv->own));
	rv->nown -= k;
	pthread_mutex_unlock(&rv->lock);
}

static void purge_memory(struct revocation *rv)
{
	if (!rebuild(rv, 0))
		log_error("revocation: out of memory while purging");
}

/* How many ids the table holds, for the metrics: read under the lock like every other
 * reader's look at the table. */
static size_t held(struct revocation *rv)
{
	pthread_mutex_lock(&rv->lock);
	size_t n = rv->n;
	pthread_mutex_unlock(&rv->lock);
	return n;
}

/* ---- fetching ---- */

static void each_revoked(void *ctx, const char *id, long long expires_at, long long revoked_at)
{
	struct revocation *rv = ctx;
	uint64_t h[2];
	hash_id(rv, id, h);
	file_entry(rv, h, expires_at, revoked_at);
}

/* Asks the storage for what was revoked since the last look; logs a change of state. */
static void fetch(struct revocation *rv)
{
	char err[LOG_ERR_MAX] = "";
	long long start = 0;
	/* Tokens are taken until exp + leeway, by this host's clock as every token check is:
	 * their revocations are kept as long. */
	long long alive_at = clock_wall_ms() / 1000 - rv->cfg->jwt.leeway;
	enum sesame_storage_result r = rv->st.fn->revoked_since(
	    rv->st.state, rv->since_ms, alive_at, each_revoked, rv, &start, err, sizeof(err));
	metrics_storage(METRICS_REVOKED_SINCE, r);
	metrics_revoked_ids(held(rv));
	if (r == SESAME_STORAGE_OK) {
		if (rv->failing)
			log_info("revocation: the revoked token ids are fetched again");
		rv->failing = false;
		rv->since_ms = start - FETCH_OVERLAP_MS;
		return;
	}
	if (!rv->failing)
		log_error("revocation: cannot fetch the revoked token ids (%s); tokens revoked "
			  "elsewhere from now on are refused here once the storage answers",
			  err);
	rv->failing = true;
}

static void purge_storage(struct revocation *rv)
{
	char err[LOG_ERR_MAX] = "";
	long long before = clock_wall_ms() / 1000 - rv->cfg->jwt.leeway - 60;
	enum sesame_storage_result r =
	    rv->st.fn->token_purge(rv->st.state, before, err, sizeof(err));
	metrics_storage(METRICS_TOKEN_PURGE, r);
	if (r != SESAME_STORAGE_OK && !rv->failing)
		log_warn("revocation: cannot purge expired token state: %s", err);
	events_purge(rv->cfg, &rv->st);
}

static void deadline_after(struct timespec *ts, long ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

static void *fetcher(void *arg)
{
	struct revocation *rv = arg;
	long interval = rv->cfg->jwt.revocation_refresh_ms;
	/* Workers purge at different moments: one of them is enough, any of them will do. */
	long long next_purge = clock_wall_ms() + randombytes_uniform(PURGE_EVERY_MS);
	purge_storage(rv);
	pthread_mutex_lock(&rv->wait_lock);
	while (!rv->stopping) {
		struct timespec until;
		deadline_after(&until, interval);
		while (!rv->stopping &&
		       pthread_cond_timedwait(&rv->wake, &rv->wait_lock, &until) != ETIMEDOUT)
			;
		if (rv->stopping)
			break;
		pthread_mutex_unlock(&rv->wait_lock);
		file_own(rv);
		fetch(rv);
		if (clock_wall_ms() >= next_purge) {
			purge_storage(rv);
			purge_memory(rv);
			next_purge = clock_wall_ms() + PURGE_EVERY_MS;
		}
		pthread_mutex_lock(&rv->wait_lock);
	}
	pthread_mutex_unlock(&rv->wait_lock);
	return NULL;
}

int revocation_start(const struct config *cfg, struct revocation **out)
{
	struct storage st;
	*out = NULL;
	if (!plugins_storage(cfg->plugins, &st))
		return 0;
	struct revocation *rv = calloc(1, sizeof(*rv));
	if (rv == NULL) {
		log_error("revocation: out of memory");
		return -1;
	}
	rv->cfg = cfg;
	rv->st = st;
	rv->since_ms = -1;
	randombytes_buf(rv->key, sizeof(rv->key));
	pthread_mutex_init(&rv->lock, NULL);
	pthread_mutex_init(&rv->wait_lock, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rv->wake, &ca);
	pthread_condattr_destroy(&ca);
	rebuild(rv, 0);
	uint64_t t0 = clock_mono_ns();
	fetch(rv); /* before the worker serves: a token revoked already is refused at once */
	log_info("revocation: %zu revoked ids loaded in %llu ms", held(rv),
		 (unsigned long long)((clock_mono_ns() - t0) / 1000000u));
	if (pthread_create(&rv->thread, NULL, fetcher, rv) != 0) {
		log_error("revocation: cannot start the thread that fetches revoked ids");
		revocation_stop(rv);
		return -1;
	}
	rv->started = true;
	*out = rv;
	return 0;
}

void revocation_stop(struct revocation *rv)
{
	if (rv == NULL)
		return;
	if (rv->started) {
		pthread_mutex_lock(&rv->wait_lock);
		rv->stopping = true;
		pthread_cond_signal(&rv->wake);
		pthread_mutex_unlock(&rv->wait_lock);
		pthread_join(rv->thread, NULL);
	}
	pthread_cond_destroy(&rv->wake);
	pthread_mutex_destroy(&rv->wait_lock);
	pthread_mutex_destroy(&rv->lock);
	free(rv->slots);
	free(rv->own);
	free(rv);
}
