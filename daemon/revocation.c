/*
 * revocation.c: the revoked token ids every worker refuses, fetched from storage once per node.
 *
 * A revoked token must be refused on every worker of every sesamed sharing the storage within
 * jwt.revocation_refresh, without a storage round trip per request. The node's workers share
 * one set of the ids (jtis and refresh families' ids) revoked and not yet expired, in the
 * segment the master maps before it forks (revocation_shm.c), checked lock free on the event
 * loops. One worker at a time, the holder of the set's lease, asks the storage every
 * jwt.revocation_refresh for the ids revoked since its last look and files them in: one query
 * per node, whatever its number of workers. Each worker has a thread of its own (not one of
 * the job threads: a queue of password hashes never delays it) that wakes every quarter of
 * jwt.revocation_refresh (a second at most) to take the lease when it is free or stale: the
 * master clears the lease of a worker it reaps, a worker that stops releases it, so another
 * worker takes over well within jwt.revocation_refresh. The holder also purges expired ids
 * from the set, and expired token state and old events (events.c) from storage, every minute
 * and when it takes the lease over.
 * A new worker, after a reload or a crash, finds the node's set already there; only the first
 * worker after the master starts loads it all, and the others wait (a few seconds at most)
 * for that load before they serve.
 *
 * The ids a worker revokes itself are refused by it at once: they wait in a short list of its
 * own (revocation_set.c) until its thread, woken at once, files them into the node's set for
 * the other workers, which refuse them from then on: within milliseconds.
 *
 * The ids revoked since T are asked for with T a little before the previous fetch began
 * (FETCH_OVERLAP_MS): a revocation written by another process with a time just before that
 * fetch, but committed just after it, is seen by the next one. Adding an id twice is harmless.
 * Both times are the storage's clock (the database server's), never this host's: revocations
 * are stamped by it and each fetch reports it, so a host whose clock runs ahead or behind
 * neither misses other hosts' revocations nor hides its own. A cluster's database nodes each
 * have a clock, though: an id stamped by a node whose clock lags the one fetched from by more
 * than the overlap would fall behind the cursor, so once a minute the fetch asks for every live
 * id, which bounds what such skew can delay to a minute.
 *
 * A subject's cutoff (SESAME_SUBJECT_CUTOFF_PREFIX and the subject, recorded when the subject
 * is logged out everywhere, disabled or deleted) is an id of the set too, kept with its
 * revocation time: tokens of the subject issued at or before it are refused (auth.c).
 *
 * The node's set has a fixed size (jwt.revocation_capacity). An id that does not fit is never
 * dropped: it goes to the worker's own set (revocation_set.c), the error is logged (once a
 * minute) and counted, and the node's set is marked overflowing: while it is, every worker
 * fetches the whole set for itself as well, as each did before the set was shared, and the
 * holder purges the node's set before each fetch. Once a purge frees a tenth of it the holder
 * fetches everything again, and when all of it fits the mark goes and the workers give their
 * own sets back.
 */
#include "autoconfig.h"

#include "revocation.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "events.h"
#include "log.h"
#include "metrics.h"
#include "plural.h"
#include "revocation_set.h"
#include "revocation_shm.h"

#define FETCH_OVERLAP_MS 10000
#define PURGE_EVERY_MS	 60000
/* A worker waits this long at most for another's first load: until that attempt ends, loaded
 * or failed (bounded by the storage's own timeouts), or the lease of a holder that died ends. */
#define FIRST_LOAD_WAIT_MS 30000
#define OVERFLOW_LOG_MS	   60000
#define TICK_MIN_MS	   10
#define TICK_MAX_MS	   1000

struct revocation {
	const struct config *cfg;
	struct storage st;
	struct revocation_table *t; /* the node's; this process's own without a master */
	bool own_table;
	pid_t pid;
	/* The worker's own ids: those it revoked, until filed into the node's set; those that
	 * did not fit there; and, while the node's set overflows, the whole set. */
	struct revocation_set *own;
	long long since_ms; /* the own set's fetches: the next asks for ids revoked since */
	uint64_t next_own_fetch, next_own_purge;
	bool holding; /* the lease, at the last look */
	bool refetch; /* as the holder: a purge made room while the node's set overflowed */
	bool full;    /* as the holder: the minute's fetch of every live revoked id is due */
	uint64_t overflow_logged;
	/* the thread */
	pthread_t thread;
	bool started;
	pthread_mutex_t wait_lock;
	pthread_cond_t wake; /* on CLOCK_MONOTONIC */
	bool stopping, kicked;
	bool failing;
};

/* ---- lookups, on the event loop ---- */

static void kick(struct revocation *rv)
{
	pthread_mutex_lock(&rv->wait_lock);
	rv->kicked = true;
	pthread_cond_signal(&rv->wake);
	pthread_mutex_unlock(&rv->wait_lock);
}

void revocation_add(struct revocation *rv, const char *id, long long expires_at)
{
	if (rv == NULL)
		return;
	struct revocation_entry e = {.expires_at = expires_at};
	revocation_shm_hash(rv->t, id, e.h);
	if (revocation_set_push(rv->own, &e) != 0) {
		log_error("revocation: out of memory: a revoked id is refused here once fetched");
		return;
	}
	if (rv->started)
		kick(rv);
}

long long revocation_time(struct revocation *rv, const char *id)
{
	if (rv == NULL || id == NULL)
		return -1;
	uint64_t h[2];
	long long shared = -1;
	revocation_shm_hash(rv->t, id, h);
	revocation_shm_find(rv->t, h, &shared);
	long long own = revocation_set_time(rv->own, h);
	return own > shared ? own : shared;
}

bool revocation_has(struct revocation *rv, const char *id)
{
	if (rv == NULL || id == NULL)
		return false;
	uint64_t h[2];
	revocation_shm_hash(rv->t, id, h);
	return revocation_shm_find(rv->t, h, NULL) || revocation_set_time(rv->own, h) >= 0;
}

/* ---- the node's set ---- */

/* An id did not fit in the node's set: said once a minute, counted each time. */
static void overflowed(struct revocation *rv)
{
	uint64_t now = clock_mono_ms();
	metrics_revocation_overflow();
	revocation_shm_set_overflow(rv->t, true);
	if (rv->overflow_logged != 0 && now - rv->overflow_logged < OVERFLOW_LOG_MS)
		return;
	rv->overflow_logged = now;
	log_error("revocation: the node's set of revoked ids is full (jwt.revocation_capacity = "
		  "%zu): every worker keeps and fetches the whole set itself until expired ids "
		  "make room",
		  revocation_shm_capacity(rv->t));
}

static bool put_shared(struct revocation *rv, const uint64_t h[2], long long expires_at,
		       long long revoked_at)
{
	if (revocation_shm_lock(rv->t) != 0)
		return false;
	int rc = revocation_shm_put(rv->t, h, expires_at, revoked_at);
	revocation_shm_unlock(rv->t);
	return rc == 0;
}

/* Files one id into the worker's own set; the thread only. */
static void file_own_set(struct revocation *rv, const uint64_t h[2], long long expires_at,
			 long long revoked_at)
{
	if (revocation_set_file(rv->own, h, expires_at, revoked_at) != 0)
		log_error("revocation: out of memory: a revoked id is not kept");
}

/* Files one id into the node's set; one that does not fit goes to the own set. The thread. */
static bool file_shared(struct revocation *rv, const uint64_t h[2], long long expires_at,
			long long revoked_at)
{
	if (put_shared(rv, h, expires_at, revoked_at))
		return true;
	overflowed(rv);
	file_own_set(rv, h, expires_at, revoked_at);
	return false;
}

/* Files the ids this worker revoked itself: into the node's set first, then out of its list,
 * so that a lookup finds them all along. The thread only. */
static void file_own(struct revocation *rv)
{
	size_t k;
	struct revocation_entry *copy = revocation_set_peek(rv->own, &k);
	if (copy == NULL)
		return; /* nothing to file, or out of memory: they wait in the list */
	for (size_t i = 0; i < k; i++)
		file_shared(rv, copy[i].h, copy[i].expires_at, copy[i].revoked_at);
	free(copy);
	revocation_set_pop(rv->own, k);
}

static bool give_one(void *ctx, const struct revocation_entry *e)
{
	return put_shared(ctx, e->h, e->expires_at, e->revoked_at);
}

/* The node's set has room again: the own set goes into it, and away when all of it fits. */
static void give_back(struct revocation *rv)
{
	if (!revocation_set_each(rv->own, give_one, rv)) {
		overflowed(rv);
		return;
	}
	revocation_set_clear(rv->own);
	rv->since_ms = -1;
}

/* ---- fetching ---- */

static void each_shared(void *ctx, const char *id, long long expires_at, long long revoked_at)
{
	struct revocation *rv = ctx;
	uint64_t h[2];
	revocation_shm_hash(rv->t, id, h);
	if (!file_shared(rv, h, expires_at, revoked_at))
		rv->refetch = false; /* this fetch did not make it fit */
}

static void each_own(void *ctx, const char *id, long long expires_at, long long revoked_at)
{
	struct revocation *rv = ctx;
	uint64_t h[2];
	revocation_shm_hash(rv->t, id, h);
	file_own_set(rv, h, expires_at, revoked_at);
}

/* Asks the storage for what was revoked since since_ms; logs a change of state. */
static enum sesame_storage_result fetch(struct revocation *rv, long long since_ms,
					void (*each)(void *, const char *, long long, long long),
					long long *start)
{
	char err[LOG_ERR_MAX] = "";
	/* Tokens are taken until exp + leeway, by this host's clock as every token check is:
	 * their revocations are kept as long. */
	long long alive_at = clock_wall_ms() / 1000 - rv->cfg->jwt.leeway;
	enum sesame_storage_result r = rv->st.fn->revoked_since(rv->st.state, since_ms, alive_at,
								each, rv, start, err, sizeof(err));
	metrics_storage(METRICS_REVOKED_SINCE, r);
	metrics_revocation_fetch();
	if (r == SESAME_STORAGE_OK) {
		if (rv->failing)
			log_info("revocation: the revoked token ids are fetched again");
		rv->failing = false;
		return r;
	}
	if (!rv->failing)
		log_error("revocation: cannot fetch the revoked token ids (%s); tokens revoked "
			  "elsewhere from now on are refused here once the storage answers",
			  err);
	rv->failing = true;
	return r;
}

/* As the holder of the lease: the node's fetch. */
static void fetch_node(struct revocation *rv)
{
	bool full = rv->refetch || rv->full;
	long long start = 0;
	enum sesame_storage_result r =
	    fetch(rv, full ? -1 : revocation_shm_since(rv->t), each_shared, &start);
	revocation_shm_fetched(rv->t, r == SESAME_STORAGE_OK, start - FETCH_OVERLAP_MS);
	if (r != SESAME_STORAGE_OK || !full)
		return;
	rv->full = false;
	if (!rv->refetch)
		return;
	revocation_shm_set_overflow(rv->t, false);
	log_info("revocation: the node's set holds every revoked id again");
	rv->refetch = false;
}

/* While the node's set overflows: this worker's own fetch of the whole set. */
static void fetch_own(struct revocation *rv)
{
	long long start = 0;
	if (fetch(rv, rv->since_ms, each_own, &start) == SESAME_STORAGE_OK)
		rv->since_ms = start - FETCH_OVERLAP_MS;
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

/*
 * As the holder: expired ids out of the node's set. While it overflows, a purge that made room
 * (a tenth of it) has the next fetch ask for everything again, to see whether all of it fits.
 */
static void purge_memory(struct revocation *rv)
{
	if (revocation_shm_lock(rv->t) == 0) {
		revocation_shm_purge(rv->t, clock_wall_ms() / 1000 - rv->cfg->jwt.leeway);
		revocation_shm_unlock(rv->t);
	}
	size_t cap = revocation_shm_capacity(rv->t);
	if (revocation_shm_overflow(rv->t) && revocation_shm_count(rv->t) + cap / 10 < cap)
		rv->refetch = true;
}

/* ---- the thread ---- */

static uint64_t refresh_ms(const struct revocation *rv)
{
	return (uint64_t)rv->cfg->jwt.revocation_refresh_ms;
}

/* How often the thread looks at the lease. */
static uint64_t tick_ms(const struct revocation *rv)
{
	uint64_t ms = refresh_ms(rv) / 4;
	return ms < TICK_MIN_MS ? TICK_MIN_MS : ms > TICK_MAX_MS ? TICK_MAX_MS : ms;
}

/* A holder that stops renewing (stuck in a storage call) loses the lease after this. */
static uint64_t lease_ttl(const struct revocation *rv)
{
	return 3 * refresh_ms(rv) + 1000;
}

static bool hold_lease(struct revocation *rv, uint64_t now)
{
	return revocation_shm_lease(rv->t, rv->pid, now, lease_ttl(rv));
}

/* As the holder: the node's fetch when due (after a purge of the set while it overflows), and
 * the purges every minute and when this worker just took the lease over. */
static void as_holder(struct revocation *rv, bool just_took, uint64_t now)
{
	if (revocation_shm_due(rv->t, REVOCATION_SHM_FETCH, now, refresh_ms(rv))) {
		if (revocation_shm_overflow(rv->t))
			purge_memory(rv);
		fetch_node(rv);
	}
	if (revocation_shm_due(rv->t, REVOCATION_SHM_PURGE, now, PURGE_EVERY_MS) || just_took) {
		purge_storage(rv);
		purge_memory(rv);
		/* Once a minute the next fetch asks for every live id, not those since the cursor:
		 * an id stamped by a database node whose clock lags the one fetched from by more
		 * than the overlap (Galera nodes each have their own) is missed at most a minute.
		 */
		rv->full = true;
	}
}

/* The own set: the whole set fetched while the node's overflows, given back after. */
static void own_set(struct revocation *rv, uint64_t now)
{
	if (!revocation_shm_overflow(rv->t)) {
		if (revocation_set_count(rv->own) > 0)
			give_back(rv);
		return;
	}
	if (now >= rv->next_own_fetch) {
		rv->next_own_fetch = now + refresh_ms(rv);
		fetch_own(rv);
	}
	if (now >= rv->next_own_purge) {
		rv->next_own_purge = now + PURGE_EVERY_MS;
		revocation_set_purge(rv->own);
	}
}

/* One look at the lease and the sets. Returns how long to wait for the next. */
static uint64_t tick(struct revocation *rv)
{
	uint64_t now = clock_mono_ms(), wait = tick_ms(rv);
	bool held = rv->holding;
	rv->holding = hold_lease(rv, now);
	if (rv->holding) {
		as_holder(rv, !held, now);
		uint64_t until = revocation_shm_until(rv->t, REVOCATION_SHM_FETCH, clock_mono_ms());
		wait = until < wait ? until : wait;
	}
	own_set(rv, now);
	metrics_revoked_ids(revocation_shm_count(rv->t) + revocation_set_count(rv->own));
	return wait > 0 ? wait : 1;
}

static void deadline_after(struct timespec *ts, uint64_t ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)(ms / 1000);
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Waits until the deadline, a kick (an id revoked here) or the stop; with wait_lock held.
 * True when the deadline came. */
static bool wait_for(struct revocation *rv, const struct timespec *until)
{
	while (!rv->stopping && !rv->kicked) {
		if (pthread_cond_timedwait(&rv->wake, &rv->wait_lock, until) == ETIMEDOUT)
			return true;
	}
	rv->kicked = false;
	return false;
}

static void *fetcher(void *arg)
{
	struct revocation *rv = arg;
	struct timespec until;
	deadline_after(&until, tick_ms(rv));
	pthread_mutex_lock(&rv->wait_lock);
	while (!rv->stopping) {
		bool due = wait_for(rv, &until);
		if (rv->stopping)
			break;
		pthread_mutex_unlock(&rv->wait_lock);
		file_own(rv);
		if (due)
			deadline_after(&until, tick(rv));
		pthread_mutex_lock(&rv->wait_lock);
	}
	pthread_mutex_unlock(&rv->wait_lock);
	return NULL;
}

/* ---- start and stop ---- */

/*
 * Before the worker serves, so that a token revoked already is refused at once: the node's
 * set when it is loaded; else this worker loads it, or waits for the one that does (until its
 * first fetch is done, FIRST_LOAD_WAIT_MS at most). While the set overflows, the own set too.
 */
static void first_load(struct revocation *rv)
{
	uint64_t t0 = clock_mono_ms();
	uint64_t tried = revocation_shm_attempts(rv->t);
	bool loaded_here = false;
	while (!revocation_shm_loaded(rv->t)) {
		uint64_t now = clock_mono_ms();
		if (hold_lease(rv, now)) {
			revocation_shm_due(rv->t, REVOCATION_SHM_FETCH, now, refresh_ms(rv));
			fetch_node(rv);
			loaded_here = true;
			break;
		}
		if (revocation_shm_attempts(rv->t) != tried || now - t0 >= FIRST_LOAD_WAIT_MS)
			break;
		nanosleep(&(struct timespec){.tv_nsec = 10000000L}, NULL);
	}
	if (revocation_shm_overflow(rv->t)) {
		rv->next_own_fetch = clock_mono_ms() + refresh_ms(rv);
		fetch_own(rv);
	}
	size_t n = revocation_shm_count(rv->t) + revocation_set_count(rv->own);
	log_info("revocation: %zu revoked %s %s in %llu ms", n, plural((long long)n, "id", "ids"),
		 loaded_here ? "loaded" : "found in the node's set",
		 (unsigned long long)(clock_mono_ms() - t0));
}

static int init_sync(struct revocation *rv)
{
	pthread_condattr_t ca;
	pthread_mutex_init(&rv->wait_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&rv->wake, &ca);
	pthread_condattr_destroy(&ca);
	rv->own = revocation_set_new(rv->cfg->jwt.leeway);
	return rv->own != NULL ? 0 : -1;
}

/* The node's set, or, in a process no master forked (a test), a set of its own. */
static int attach(struct revocation *rv)
{
	rv->t = revocation_shm_node();
	if (rv->t != NULL)
		return 0;
	rv->t = revocation_shm_new((size_t)rv->cfg->jwt.revocation_capacity);
	rv->own_table = true;
	return rv->t != NULL ? 0 : -1;
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
	rv->pid = getpid();
	if (attach(rv) != 0 || init_sync(rv) != 0) {
		log_error("revocation: cannot set up the set of revoked ids");
		goto fail;
	}
	first_load(rv);
	if (pthread_create(&rv->thread, NULL, fetcher, rv) != 0) {
		log_error("revocation: cannot start the thread that fetches revoked ids");
		goto fail;
	}
	rv->started = true;
	*out = rv;
	return 0;
fail:
	revocation_stop(rv);
	return -1;
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
	if (rv->t != NULL) {
		revocation_shm_release(rv->t,
				       rv->pid); /* another worker fetches from its next tick */
		if (rv->own_table)
			revocation_shm_free(rv->t);
	}
	pthread_cond_destroy(&rv->wake);
	pthread_mutex_destroy(&rv->wait_lock);
	revocation_set_free(rv->own);
	free(rv);
}
