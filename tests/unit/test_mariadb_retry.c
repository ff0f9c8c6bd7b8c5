/*
 * test_mariadb_retry.c: the MariaDB store's retry policy (plugins/storage/mariadb_retry.c),
 * the pure part: which failure runs a call again, and how many times.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errmsg.h>
#include <mysqld_error.h>

#include "../../plugins/storage/mariadb_private.h"

/* Runs the policy over a call that fails with code every time: how many tries it makes. */
static int tries_of(unsigned int code, bool unknown, bool idempotent)
{
	struct mariadb_tries t = {0, false};
	int tries = 1;
	for (;;) {
		enum mariadb_verdict v = mariadb_verdict(code, unknown, idempotent, &t);
		if (v == MARIADB_FINAL)
			return tries;
		if (v == MARIADB_AGAIN_CONFLICT)
			t.conflicts++;
		else
			t.moved = true;
		tries++;
		assert_true(tries < 100);
	}
}

static void test_conflicts_run_again_a_bounded_number_of_times(void **state)
{
	(void)state;
	struct mariadb_tries t = {0, false};
	assert_int_equal(mariadb_verdict(ER_LOCK_DEADLOCK, false, false, &t),
			 MARIADB_AGAIN_CONFLICT);
	assert_int_equal(mariadb_verdict(ER_LOCK_WAIT_TIMEOUT, false, false, &t),
			 MARIADB_AGAIN_CONFLICT);
	/* Whatever the call: a lost conflict rolled everything back. */
	assert_int_equal(tries_of(ER_LOCK_DEADLOCK, false, false), 4);
	assert_int_equal(tries_of(ER_LOCK_DEADLOCK, true, true), 4);
	assert_int_equal(tries_of(ER_LOCK_WAIT_TIMEOUT, false, true), 4);
}

static void test_a_lost_connection_runs_again_once_when_nothing_was_made(void **state)
{
	(void)state;
	const unsigned int gone[] = {
	    ER_UNKNOWN_COM_ERROR, CR_SERVER_GONE_ERROR,	   CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR,
	    CR_SERVER_LOST,	  CR_SERVER_LOST_EXTENDED, ER_CONNECTION_KILLED};
	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		assert_true(mariadb_gone(gone[i]));
		assert_int_equal(tries_of(gone[i], false, false), 2);
		assert_int_equal(tries_of(gone[i], false, true), 2);
	}
}

static void test_an_unknown_outcome_runs_again_only_when_idempotent(void **state)
{
	(void)state;
	/* A registration whose COMMIT (or autocommit INSERT) was sent, then the connection
	 * lost: it may be there; not repeated blindly. */
	assert_int_equal(tries_of(CR_SERVER_LOST, true, false), 1);
	assert_int_equal(tries_of(ER_CONNECTION_KILLED, true, false), 1);
	/* A read, a password set to a given hash, a revocation: run again. */
	assert_int_equal(tries_of(CR_SERVER_LOST, true, true), 2);
}

static void test_other_failures_are_final(void **state)
{
	(void)state;
	const unsigned int final[] = {0, ER_DUP_ENTRY, ER_NO_SUCH_TABLE, ER_PARSE_ERROR,
				      ER_ACCESS_DENIED_ERROR};
	for (size_t i = 0; i < sizeof(final) / sizeof(final[0]); i++) {
		assert_false(mariadb_gone(final[i]));
		assert_int_equal(tries_of(final[i], false, true), 1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_conflicts_run_again_a_bounded_number_of_times),
	    cmocka_unit_test(test_a_lost_connection_runs_again_once_when_nothing_was_made),
	    cmocka_unit_test(test_an_unknown_outcome_runs_again_only_when_idempotent),
	    cmocka_unit_test(test_other_failures_are_final),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
