/*
 * test_dbpool_config.c: the entries of storage.mariadb.hosts, parsed as `sesamed -t` and the
 * pool read them, and written back as the pool's log lines name the nodes.
 */
#include "autoconfig.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "dbpool.h"

/* Parses entry, which must be good, and checks it names itself as want. */
static void good(const char *entry, const char *socket, const char *host, int port,
		 const char *want)
{
	struct dbpool_node node;
	char why[256] = "", name[256];
	if (dbpool_node_parse(entry, &node, why, sizeof(why)) != 0)
		fail_msg("'%s' refused: %s", entry, why);
	if (socket != NULL)
		assert_string_equal(node.socket, socket);
	else
		assert_null(node.socket);
	if (host != NULL)
		assert_string_equal(node.host, host);
	else
		assert_null(node.host);
	assert_int_equal(node.port, port);
	dbpool_node_name(&node, name, sizeof(name));
	assert_string_equal(name, want);
	dbpool_node_clear(&node);
}

static void bad(const char *entry, const char *why_part)
{
	struct dbpool_node node;
	char why[256] = "";
	assert_int_equal(dbpool_node_parse(entry, &node, why, sizeof(why)), -1);
	if (strstr(why, why_part) == NULL)
		fail_msg("'%s': '%s' lacks '%s'", entry, why, why_part);
	assert_null(node.socket);
	assert_null(node.host);
}

static void test_sockets_hosts_and_ports(void **state)
{
	(void)state;
	good("/run/mysqld/mysqld.sock", "/run/mysqld/mysqld.sock", NULL, 3306,
	     "/run/mysqld/mysqld.sock");
	good("db3", NULL, "db3", 3306, "db3:3306");
	good("127.0.0.1:23306", NULL, "127.0.0.1", 23306, "127.0.0.1:23306");
	good("db-1.example.com:1", NULL, "db-1.example.com", 1, "db-1.example.com:1");
	good("[::1]:3307", NULL, "::1", 3307, "[::1]:3307");
	good("[fd00::5]", NULL, "fd00::5", 3306, "[fd00::5]:3306");
	good("db:65535", NULL, "db", 65535, "db:65535");
}

static void test_bad_entries_say_why(void **state)
{
	(void)state;
	bad("", "neither a socket (an absolute path) nor host[:port]");
	bad("run/mysqld.sock", "neither a socket");
	bad("db:0", "port '0' is not a number from 1 to 65535");
	bad("db:65536", "port '65536' is not a number from 1 to 65535");
	bad("db:", "port '' is not a number");
	bad("db:33o6", "port '33o6'");
	bad("db:-1", "port '-1'");
	bad("::1", "an IPv6 address goes in brackets ([::1]:3306)");
	bad("[::1", "is not [IPv6 address] or [IPv6 address]:port");
	bad("[]:3306", "is not [IPv6 address]");
	bad("[::1]3306", "is not [IPv6 address]");
	bad("[::1]:99999", "port '99999'");
	bad("db host", "neither a socket");
	char long_path[200];
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	bad(long_path, "is too long");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sockets_hosts_and_ports),
	    cmocka_unit_test(test_bad_entries_say_why),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
