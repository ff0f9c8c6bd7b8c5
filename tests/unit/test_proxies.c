/* test_proxies.c: server.trusted_proxies and the client's address behind them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxies.h"

static struct proxies trust(const char *const *nets)
{
	struct proxies p = {0};
	for (; *nets != NULL; nets++) {
		struct proxies_net n;
		assert_int_equal(proxies_parse(*nets, &n), 0);
		assert_int_equal(proxies_add(&p, &n), 0);
	}
	return p;
}

static void test_parse(void **state)
{
	struct proxies_net n;
	const char *good[] = {"127.0.0.1", "10.0.0.0/8", "0.0.0.0/0",	 "::1", "2001:db8::/32",
			      "fd00::/8",  "::/0",	 "192.0.2.1/32", NULL};
	for (const char **g = good; *g != NULL; g++)
		assert_int_equal(proxies_parse(*g, &n), 0);
	const char *bad[] = {
	    "",		 "10.0.0.0/33", "::1/129", "10.0.0.0/",	 "10.0.0.0/-1",	  "10.0.0.0/8x",
	    "localhost", "10.0.0",	"/8",	   "1.2.3.4/ 8", "10.0.0.0/0008", NULL};
	for (const char **b = bad; *b != NULL; b++)
		assert_int_equal(proxies_parse(*b, &n), -1);
}

static void test_trusted(void **state)
{
	const char *nets[] = {"10.0.0.0/8", "192.0.2.7", "2001:db8:a::/48", NULL};
	struct proxies p = trust(nets);
	assert_true(proxies_trusted(&p, "10.1.2.3"));
	assert_true(proxies_trusted(&p, "::ffff:10.1.2.3"));
	assert_true(proxies_trusted(&p, "192.0.2.7"));
	assert_false(proxies_trusted(&p, "192.0.2.8"));
	assert_false(proxies_trusted(&p, "11.0.0.1"));
	assert_true(proxies_trusted(&p, "2001:db8:a:ffff::1"));
	assert_false(proxies_trusted(&p, "2001:db8:b::1"));
	assert_false(proxies_trusted(&p, "garbage"));
	proxies_clear(&p);
	assert_false(proxies_trusted(&p, "10.1.2.3"));
}

static const char *client(const struct proxies *p, const char *peer, const char *const *xff,
			  size_t n)
{
	static char out[PROXIES_ADDR_MAX];
	proxies_client(p, peer, xff, n, out, sizeof(out));
	return out;
}

static void test_client(void **state)
{
	const char *nets[] = {"127.0.0.1", "10.0.0.0/8", "fd00::/8", NULL};
	struct proxies p = trust(nets);
	const char *one[] = {"203.0.113.9"};
	const char *spoofed[] = {"1.1.1.1, 203.0.113.9, 10.0.0.2"};
	const char *two[] = {"6.6.6.6, 203.0.113.9", "10.0.0.3"};
	const char *bad[] = {"203.0.113.9, not-an-address, 10.0.0.2"};
	const char *ports[] = {"[2001:db8::5]:443, 198.51.100.4:8080"};
	const char *v6[] = {"2001:DB8::0005"};
	const char *all[] = {"10.0.0.9, 10.0.0.8"};
	const char *empty[] = {""};
	/* An untrusted peer: its header is the client's own say, never believed. */
	assert_string_equal(client(&p, "198.51.100.1", one, 1), "198.51.100.1");
	assert_string_equal(client(&p, "127.0.0.1", NULL, 0), "127.0.0.1");
	assert_string_equal(client(&p, "127.0.0.1", one, 1), "203.0.113.9");
	/* The right-most untrusted entry, whatever the client wrote to its left. */
	assert_string_equal(client(&p, "127.0.0.1", spoofed, 1), "203.0.113.9");
	assert_string_equal(client(&p, "127.0.0.1", two, 2), "203.0.113.9");
	/* A malformed entry stops the walk at the last good address. */
	assert_string_equal(client(&p, "127.0.0.1", bad, 1), "10.0.0.2");
	assert_string_equal(client(&p, "127.0.0.1", empty, 1), "127.0.0.1");
	assert_string_equal(client(&p, "127.0.0.1", ports, 1), "198.51.100.4");
	assert_string_equal(client(&p, "127.0.0.1", v6, 1), "2001:db8::5");
	/* Every entry trusted: the left-most is as far as anyone knows. */
	assert_string_equal(client(&p, "127.0.0.1", all, 1), "10.0.0.9");
	proxies_clear(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_trusted),
	    cmocka_unit_test(test_client),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
