/* test_ratelimit.c: the rules and the shared GCRA table of ratelimit.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ratelimit.h"

static struct ratelimit_rule rule(const char *name, const char *text)
{
	struct ratelimit_rule r = {.count = 0};
	snprintf(r.name, sizeof(r.name), "%s", name);
	assert_int_equal(ratelimit_parse(text, &r), 0);
	return r;
}

static bool take(struct ratelimit_table *t, const struct ratelimit_rule *r, const char *key,
		 uint64_t now_ms, uint64_t *retry_ms)
{
	return ratelimit_take(t, r, key, strlen(key), now_ms, retry_ms);
}

static void test_parse(void **state)
{
	struct ratelimit_rule r;
	assert_int_equal(ratelimit_parse("20/minute", &r), 0);
	assert_int_equal(r.count, 20);
	assert_int_equal(r.period_ms, 60000);
	assert_int_equal(ratelimit_parse("1/second", &r), 0);
	assert_int_equal(r.period_ms, 1000);
	assert_int_equal(ratelimit_parse("100/hour", &r), 0);
	assert_int_equal(r.period_ms, 3600000);
	const char *bad[] = {"",
			     "20",
			     "20/",
			     "0/minute",
			     "-1/minute",
			     "20/min",
			     "20/minutes",
			     " 20/minute",
			     "20/minute ",
			     "x/hour",
			     "1000001/second",
			     "99999999999999999999/hour",
			     "+5/hour",
			     NULL};
	for (const char **b = bad; *b != NULL; b++)
		assert_int_equal(ratelimit_parse(*b, &r), -1);
}

static void test_defaults_and_set(void **state)
{
	struct ratelimit_rules rules = {0};
	assert_int_equal(ratelimit_rules_defaults(&rules), 0);
	assert_int_equal(rules.n, 7);
	assert_int_equal(ratelimit_rules_find(&rules, "register")->count, 20);
	assert_int_equal(ratelimit_rules_find(&rules, "forgot")->period_ms, 3600000);
	assert_int_equal(ratelimit_rules_find(&rules, "login")->count, 60);
	assert_int_equal(ratelimit_rules_find(&rules, "login_failures")->period_ms, 3600000);
	struct ratelimit_rule off = {.count = 0};
	assert_int_equal(ratelimit_rules_set(&rules, "login", &off), 0);
	assert_int_equal(rules.n, 7);
	assert_int_equal(ratelimit_rules_find(&rules, "login")->count, 0);
	struct ratelimit_rule mine = rule("x", "5/second");
	assert_int_equal(ratelimit_rules_set(&rules, "mine", &mine), 0);
	assert_string_equal(ratelimit_rules_find(&rules, "mine")->name, "mine");
	assert_int_equal(rules.n, 8);
	assert_null(ratelimit_rules_find(&rules, "nope"));
	ratelimit_rules_clear(&rules);
}

/* A burst of count, then refusal with the wait until the next, then recovery. */
static void test_burst_refusal_recovery(void **state)
{
	struct ratelimit_table *t = ratelimit_table_new(64);
	struct ratelimit_rule r = rule("login", "3/minute");
	uint64_t retry, now = 1000000;
	for (int i = 0; i < 3; i++) {
		assert_true(take(t, &r, "10.0.0.1", now, &retry));
		assert_int_equal(retry, 0);
	}
	assert_false(take(t, &r, "10.0.0.1", now, &retry));
	assert_int_equal(retry, 20000); /* one interval: 60 s / 3 */
	assert_false(take(t, &r, "10.0.0.1", now + 5000, &retry));
	assert_int_equal(retry, 15000);
	/* Another key and another rule count apart. */
	assert_true(take(t, &r, "10.0.0.2", now, &retry));
	struct ratelimit_rule other = rule("register", "3/minute");
	assert_true(take(t, &other, "10.0.0.1", now, &retry));
	/* One interval later, one more; a whole period later, a whole burst. */
	assert_true(take(t, &r, "10.0.0.1", now + 20000, &retry));
	assert_false(take(t, &r, "10.0.0.1", now + 20000, &retry));
	for (int i = 0; i < 3; i++)
		assert_true(take(t, &r, "10.0.0.1", now + 200000, &retry));
	assert_false(take(t, &r, "10.0.0.1", now + 200000, &retry));
	ratelimit_table_free(t);
}

static void test_off_rule_and_no_table(void **state)
{
	struct ratelimit_table *t = ratelimit_table_new(64);
	struct ratelimit_rule off = {.name = "login", .count = 0};
	uint64_t retry;
	for (int i = 0; i < 1000; i++)
		assert_true(take(t, &off, "k", 5, &retry));
	struct ratelimit_rule r = rule("login", "1/hour");
	assert_true(take(NULL, &r, "k", 5, &retry));
	assert_true(take(NULL, &r, "k", 5, &retry));
	ratelimit_table_free(t);
}

/* A million distinct keys, each one request, do not evict a key that is busy. */
static void test_flood_keeps_busy_key(void **state)
{
	struct ratelimit_table *t = ratelimit_table_new(1024); /* 8192 entries */
	struct ratelimit_rule r = rule("login", "10/minute");
	uint64_t retry, now = 1000000;
	char key[32];
	for (int i = 0; i < 9; i++)
		assert_true(take(t, &r, "busy", now, &retry));
	for (int i = 0; i < 1000000; i++) {
		snprintf(key, sizeof(key), "flood-%d", i);
		take(t, &r, key, now + (uint64_t)i / 1000, &retry);
	}
	/* 1 s of the flood later: the busy key has one request left, not a fresh ten. */
	now += 1000;
	assert_true(take(t, &r, "busy", now, &retry));
	assert_false(take(t, &r, "busy", now, &retry));
	assert_true(retry > 0 && retry <= 6000);
	ratelimit_table_free(t);
}

/* Two processes sharing the table count together: the burst is shared, not doubled. */
static void test_two_processes_count_together(void **state)
{
	struct ratelimit_table *t = ratelimit_table_new(64);
	struct ratelimit_rule r = rule("register", "1000/hour");
	int pipefd[2];
	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint64_t retry;
		int n = 0;
		for (int i = 0; i < 1000; i++)
			n += take(t, &r, "shared", 5000, &retry);
		ssize_t w = write(pipefd[1], &n, sizeof(n));
		_exit(w == sizeof(n) ? 0 : 1);
	}
	uint64_t retry;
	int mine = 0, theirs = 0, status;
	for (int i = 0; i < 1000; i++)
		mine += take(t, &r, "shared", 5000, &retry);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(read(pipefd[0], &theirs, sizeof(theirs)), sizeof(theirs));
	assert_int_equal(mine + theirs, 1000);
	assert_false(take(t, &r, "shared", 5000, &retry));
	close(pipefd[0]);
	close(pipefd[1]);
	ratelimit_table_free(t);
}

static void test_address_key(void **state)
{
	char out[RATELIMIT_KEY_MAX];
	assert_string_equal(ratelimit_address_key("2001:db8:1:2:aaaa::1", out, sizeof(out)),
			    "2001:db8:1:2::/64");
	assert_string_equal(ratelimit_address_key("2001:db8:1:2:ffff:1:2:3", out, sizeof(out)),
			    "2001:db8:1:2::/64");
	assert_string_equal(ratelimit_address_key("::ffff:192.0.2.7", out, sizeof(out)),
			    "192.0.2.7");
	assert_string_equal(ratelimit_address_key("192.0.2.7", out, sizeof(out)), "192.0.2.7");
	assert_string_equal(ratelimit_address_key("alice@example.com", out, sizeof(out)),
			    "alice@example.com");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_defaults_and_set),
	    cmocka_unit_test(test_burst_refusal_recovery),
	    cmocka_unit_test(test_off_rule_and_no_table),
	    cmocka_unit_test(test_flood_keeps_busy_key),
	    cmocka_unit_test(test_two_processes_count_together),
	    cmocka_unit_test(test_address_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
