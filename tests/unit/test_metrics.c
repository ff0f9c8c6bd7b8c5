/* The metrics segment's name tables: a slot left half-written by a killed process. The
 * segment's internals are the subject here, so the file itself is compiled in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/wait.h>

#include <cmocka.h>

#include "metrics.c"

static uint32_t dead_writer(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, NULL, 0), pid);
	return NAME_WRITING + (uint32_t)pid;
}

static int setup(void **state)
{
	return metrics_shared_init(1);
}

static void test_a_dead_writers_slot_is_taken_over(void **state)
{
	int first = metrics_route("/first");
	atomic_store(&seg->routes[first + 1].state, dead_writer());
	uint64_t started = clock_mono_ms();
	int next = metrics_route("/second");
	assert_int_equal(next, first + 1);
	assert_int_equal(metrics_route("/second"), next);
	assert_true(clock_mono_ms() - started < 1000);
	size_t len;
	char *text = metrics_render(&len);
	assert_non_null(strstr(text, "route=\"/second\""));
	free(text);
}

static void test_a_slow_writers_slot_counts_under_other(void **state)
{
	/* This very process is alive: as a writer, it is merely slow. */
	int first = metrics_route("/third");
	_Atomic uint32_t *busy = &seg->routes[first + 1].state;
	atomic_store(busy, writing_by_me());
	atomic_store(&seg->rules[0].state, writing_by_me());
	uint64_t started = clock_mono_ms();
	for (int i = 0; i < 1000; i++) {
		assert_int_equal(metrics_route("/fourth"), ROUTES - 1);
		metrics_rate_limited("login");
	}
	/* On the loop, for every 429: never more than a short wait each. */
	assert_true(clock_mono_ms() - started < 5000);
	assert_int_equal(get(&seg->rate_limited[RULES - 1]), 1000);
	/* Once the writer is done, the names after it are added as usual. */
	snprintf(seg->routes[first + 1].name, NAME_MAX_LEN, "/elsewhere");
	atomic_store(busy, NAME_READY);
	assert_int_equal(metrics_route("/fourth"), first + 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_a_dead_writers_slot_is_taken_over, setup),
	    cmocka_unit_test_setup(test_a_slow_writers_slot_counts_under_other, setup),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
