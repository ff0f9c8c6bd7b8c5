/*
 * test_revocation.c: the node's shared set of revoked ids (revocation_shm.c): insertion,
 * lookup, the update of a subject cutoff's time, purge, a full table, the fetcher's lease and
 * schedule, and readers in other processes while a writer inserts, purges, or is killed.
 */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "revocation_shm.h"

static void hash(struct revocation_table *t, const char *id, uint64_t h[2])
{
	revocation_shm_hash(t, id, h);
}

static int put(struct revocation_table *t, const char *id, long long expires_at,
	       long long revoked_at)
{
	uint64_t h[2];
	hash(t, id, h);
	assert_int_equal(revocation_shm_lock(t), 0);
	int rc = revocation_shm_put(t, h, expires_at, revoked_at);
	revocation_shm_unlock(t);
	return rc;
}

static bool find(struct revocation_table *t, const char *id, long long *at)
{
	uint64_t h[2];
	hash(t, id, h);
	return revocation_shm_find(t, h, at);
}

static size_t purge(struct revocation_table *t, long long now_s)
{
	assert_int_equal(revocation_shm_lock(t), 0);
	size_t n = revocation_shm_purge(t, now_s);
	revocation_shm_unlock(t);
	return n;
}

static void test_insert_and_lookup(void **state)
{
	struct revocation_table *t = revocation_shm_new(1000);
	assert_non_null(t);
	assert_int_equal(revocation_shm_capacity(t), 1000);
	/* Two tables of 2048 slots (2 x 1000 rounded up) of 32 bytes, and their header. */
	assert_true(revocation_shm_bytes(t) >= 2 * 2048 * 32);
	long long at = 0;
	assert_false(find(t, "a", &at));
	assert_int_equal(at, -1);
	assert_int_equal(put(t, "a", 2000000000, 0), 0);
	assert_int_equal(put(t, "b", 0, 1700000000123LL), 0);
	assert_true(find(t, "a", &at));
	assert_int_equal(at, 0);
	assert_true(find(t, "b", &at));
	assert_int_equal(at, 1700000000123LL);
	assert_false(find(t, "c", NULL));
	assert_int_equal(revocation_shm_count(t), 2);
	/* The same id again is one entry. */
	assert_int_equal(put(t, "a", 2000000000, 0), 0);
	assert_int_equal(revocation_shm_count(t), 2);
	revocation_shm_free(t);
}

/* Two tables' hashes of one id differ: each node draws its own key. */
static void test_keyed_hash(void **state)
{
	struct revocation_table *t = revocation_shm_new(64), *u = revocation_shm_new(64);
	uint64_t a[2], b[2], c[2];
	hash(t, "some-id", a);
	hash(t, "some-id", b);
	hash(u, "some-id", c);
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_not_equal(a, c, sizeof(a));
	revocation_shm_free(t);
	revocation_shm_free(u);
}

/* A subject's cutoff revoked again later keeps the later time; an older one changes nothing;
 * the expiry grows to the later one, 0 (never) being the latest. */
static void test_cutoff_update(void **state)
{
	struct revocation_table *t = revocation_shm_new(64);
	long long at;
	assert_int_equal(put(t, "cutoff:42", 1000, 5000), 0);
	assert_int_equal(put(t, "cutoff:42", 900, 9000), 0);
	assert_true(find(t, "cutoff:42", &at));
	assert_int_equal(at, 9000);
	assert_int_equal(put(t, "cutoff:42", 1000, 7000), 0);
	assert_true(find(t, "cutoff:42", &at));
	assert_int_equal(at, 9000);
	/* The expiry was 1000: a purge at 1500 would drop it, unless it grew. */
	assert_int_equal(put(t, "cutoff:42", 2000, 0), 0);
	assert_int_equal(purge(t, 1500), 0);
	assert_true(find(t, "cutoff:42", NULL));
	assert_int_equal(put(t, "cutoff:42", 0, 0), 0);
	assert_int_equal(purge(t, 1LL << 40), 0);
	assert_true(find(t, "cutoff:42", &at));
	assert_int_equal(at, 9000);
	assert_int_equal(revocation_shm_count(t), 1);
	revocation_shm_free(t);
}

/* One table's purge; the slots an id lands on depend on the table's key. */
static void purge_one(void)
{
	struct revocation_table *t = revocation_shm_new(500);
	char id[32];
	for (int i = 0; i < 300; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		/* a third expired, a third alive, a third forever */
		long long exp = i % 3 == 0 ? 100 : i % 3 == 1 ? 10000 : 0;
		assert_int_equal(put(t, id, exp, i), 0);
	}
	assert_int_equal(revocation_shm_count(t), 300);
	assert_int_equal(purge(t, 5000), 100);
	assert_int_equal(revocation_shm_count(t), 200);
	for (int i = 0; i < 300; i++) {
		long long at;
		snprintf(id, sizeof(id), "id-%d", i);
		assert_int_equal(find(t, id, &at), i % 3 != 0);
		if (i % 3 != 0)
			assert_int_equal(at, i);
	}
	/* The purged table goes on taking ids; a second purge flips back. */
	assert_int_equal(put(t, "late", 0, 1), 0);
	assert_int_equal(purge(t, 20000), 100);
	assert_true(find(t, "late", NULL));
	assert_true(find(t, "id-2", NULL));
	assert_false(find(t, "id-1", NULL));
	assert_int_equal(revocation_shm_count(t), 101);
	revocation_shm_free(t);
}

/* Over several keys, so that ids land on every part of the tables: the first and last slots
 * too, which share their pages with the other table or the header. */
static void test_purge(void **state)
{
	for (int i = 0; i < 24; i++)
		purge_one();
}

/* A full table refuses a new id, still updates those it has, and takes ids again once a
 * purge made room. */
static void test_full_table(void **state)
{
	struct revocation_table *t = revocation_shm_new(64);
	char id[32];
	for (int i = 0; i < 64; i++) {
		snprintf(id, sizeof(id), "full-%d", i);
		assert_int_equal(put(t, id, i < 10 ? 100 : 0, 1), 0);
	}
	assert_int_equal(put(t, "one-more", 0, 1), -1);
	assert_false(find(t, "one-more", NULL));
	assert_int_equal(put(t, "full-20", 0, 77), 0);
	long long at;
	assert_true(find(t, "full-20", &at));
	assert_int_equal(at, 77);
	assert_int_equal(revocation_shm_count(t), 64);
	assert_int_equal(purge(t, 1000), 10);
	assert_int_equal(put(t, "one-more", 0, 1), 0);
	assert_true(find(t, "one-more", NULL));
	revocation_shm_free(t);
}

static void test_lease(void **state)
{
	struct revocation_table *t = revocation_shm_new(64);
	assert_int_equal(revocation_shm_holder(t), 0);
	assert_true(revocation_shm_lease(t, 100, 1000, 500));
	assert_int_equal(revocation_shm_holder(t), 100);
	/* Another pid waits for the deadline; the holder renews. */
	assert_false(revocation_shm_lease(t, 200, 1400, 500));
	assert_true(revocation_shm_lease(t, 100, 1400, 500));
	assert_false(revocation_shm_lease(t, 200, 1800, 500));
	/* Past its deadline a holder that stopped renewing loses it. */
	assert_true(revocation_shm_lease(t, 200, 1901, 500));
	assert_int_equal(revocation_shm_holder(t), 200);
	assert_false(revocation_shm_lease(t, 100, 2000, 500));
	/* Only the holder's release (or the master's, naming it) frees it. */
	assert_false(revocation_shm_release(t, 100));
	assert_int_equal(revocation_shm_holder(t), 200);
	assert_true(revocation_shm_release(t, 200));
	assert_int_equal(revocation_shm_holder(t), 0);
	assert_true(revocation_shm_lease(t, 4194303, 2001, 500)); /* the largest Linux pid */
	assert_int_equal(revocation_shm_holder(t), 4194303);
	assert_false(revocation_shm_release(NULL, 1));
	revocation_shm_free(t);
}

static void test_schedule_and_cursor(void **state)
{
	struct revocation_table *t = revocation_shm_new(64);
	assert_true(revocation_shm_due(t, REVOCATION_SHM_FETCH, 10000, 1000));
	assert_false(revocation_shm_due(t, REVOCATION_SHM_FETCH, 10500, 1000));
	assert_int_equal(revocation_shm_until(t, REVOCATION_SHM_FETCH, 10500), 500);
	/* A tick late: the pace is kept (due at 12000 next, not 12100). */
	assert_true(revocation_shm_due(t, REVOCATION_SHM_FETCH, 11100, 1000));
	assert_int_equal(revocation_shm_until(t, REVOCATION_SHM_FETCH, 11100), 900);
	/* A whole period behind: the pace starts again from now. */
	assert_true(revocation_shm_due(t, REVOCATION_SHM_FETCH, 15000, 1000));
	assert_int_equal(revocation_shm_until(t, REVOCATION_SHM_FETCH, 15000), 1000);
	/* The purge has its own schedule. */
	assert_true(revocation_shm_due(t, REVOCATION_SHM_PURGE, 15000, 60000));
	assert_false(revocation_shm_due(t, REVOCATION_SHM_PURGE, 16000, 60000));

	assert_false(revocation_shm_loaded(t));
	assert_int_equal(revocation_shm_since(t), -1);
	revocation_shm_fetched(t, false, 123);
	assert_false(revocation_shm_loaded(t));
	assert_int_equal(revocation_shm_since(t), -1);
	revocation_shm_fetched(t, true, 456);
	assert_true(revocation_shm_loaded(t));
	assert_int_equal(revocation_shm_since(t), 456);
	assert_int_equal(revocation_shm_attempts(t), 2);
	assert_false(revocation_shm_overflow(t));
	revocation_shm_set_overflow(t, true);
	assert_true(revocation_shm_overflow(t));
	revocation_shm_free(t);
}

static long long elapsed_ms(const struct timespec *t0)
{
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - t0->tv_sec) * 1000LL + (now.tv_nsec - t0->tv_nsec) / 1000000;
}

/* In a child: every id of base keeps being found, and none of absent ever is, for ms. */
static void reader(struct revocation_table *t, int n, int ms)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	char id[32];
	while (elapsed_ms(&t0) < ms) {
		for (int i = 0; i < n; i++) {
			snprintf(id, sizeof(id), "base-%d", i);
			if (!find(t, id, NULL))
				_exit(1);
			snprintf(id, sizeof(id), "absent-%d", i);
			if (find(t, id, NULL))
				_exit(2);
		}
	}
	_exit(0);
}

/* Readers in other processes never miss an id while a writer inserts and purges. */
static void test_readers_during_writes(void **state)
{
	struct revocation_table *t = revocation_shm_new(4096);
	char id[32];
	for (int i = 0; i < 500; i++) {
		snprintf(id, sizeof(id), "base-%d", i);
		assert_int_equal(put(t, id, 0, i), 0);
	}
	pid_t kids[2];
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0)
			reader(t, 500, 1500);
	}
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int round = 0; elapsed_ms(&t0) < 1500; round++) {
		for (int i = 0; i < 50; i++) {
			snprintf(id, sizeof(id), "churn-%d-%d", round, i);
			assert_int_equal(put(t, id, 100, 0),
					 0); /* expired: the next purge drops it */
		}
		purge(t, 1000);
	}
	for (int k = 0; k < 2; k++) {
		int status;
		assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	revocation_shm_free(t);
}

/* A writer killed (SIGKILL) at any moment, with the lock held or mid-write: the next
 * writer and every reader go on, and what was in the set stays. */
static void test_writer_killed(void **state)
{
	struct revocation_table *t = revocation_shm_new(100000);
	assert_int_equal(put(t, "kept", 0, 5), 0);
	for (int round = 0; round < 20; round++) {
		pid_t kid = fork();
		assert_true(kid >= 0);
		if (kid == 0) {
			char id[32];
			for (int i = 0;; i++) {
				snprintf(id, sizeof(id), "w-%d-%d", round, i % 50000);
				put(t, id, i % 2 ? 0 : 100, 0);
				if (i % 5000 == 4999)
					purge(t, 1000);
			}
		}
		usleep(2000 + 1000 * (useconds_t)(round % 7));
		kill(kid, SIGKILL);
		int status;
		assert_int_equal(waitpid(kid, &status, 0), kid);
		long long at;
		assert_true(find(t, "kept", &at));
		assert_int_equal(at, 5);
		assert_int_equal(put(t, "after", 0, round), 0);
		assert_true(find(t, "after", &at));
		assert_int_equal(at, round);
	}
	/* The count the repairs kept is the table's own. */
	size_t before = revocation_shm_count(t);
	assert_int_equal(purge(t, 0), 0);
	assert_int_equal(revocation_shm_count(t), before);
	revocation_shm_free(t);
}

/* A process that died holding the lock: readers go on, the next writer takes the lock over. */
static void test_lock_of_a_dead_process(void **state)
{
	struct revocation_table *t = revocation_shm_new(64);
	assert_int_equal(put(t, "x", 0, 1), 0);
	pid_t kid = fork();
	assert_true(kid >= 0);
	if (kid == 0) {
		revocation_shm_lock(t);
		_exit(0); /* dies holding it */
	}
	int status;
	assert_int_equal(waitpid(kid, &status, 0), kid);
	assert_true(find(t, "x", NULL));
	assert_int_equal(put(t, "y", 0, 1), 0);
	assert_true(find(t, "y", NULL));
	assert_int_equal(revocation_shm_count(t), 2);
	revocation_shm_free(t);
}

int main(void)
{
	if (sodium_init() < 0)
		return 1;
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_insert_and_lookup),
	    cmocka_unit_test(test_keyed_hash),
	    cmocka_unit_test(test_cutoff_update),
	    cmocka_unit_test(test_purge),
	    cmocka_unit_test(test_full_table),
	    cmocka_unit_test(test_lease),
	    cmocka_unit_test(test_schedule_and_cursor),
	    cmocka_unit_test(test_readers_during_writes),
	    cmocka_unit_test(test_writer_killed),
	    cmocka_unit_test(test_lock_of_a_dead_process),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
