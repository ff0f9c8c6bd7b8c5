/*
 * test_dbpool.c: unit tests of the core's MariaDB pool against a real server.
 *
 * The group setup makes a private MariaDB (mariadb-install-db, then mariadbd on a Unix socket
 * in a temporary folder, no networking), as the integration tests do; the teardown stops that
 * server, and only it, by its pid, and removes the folder. The tests use the pool as plugins
 * do, through the host's functions (struct sesame_mariadb), and an administrator's connection
 * of their own to look at the server's side (connection ids, KILL).
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "dbpool.h"

#include <fcntl.h>
#include <ftw.h>
#include <mysql.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char folder[] = "/tmp/sesame-test-dbpool-XXXXXX";
static char socket_path[256];
static pid_t server = -1;
static const struct sesame_mariadb *db;

static void quiet(void)
{
	int null = open("/dev/null", O_WRONLY);
	dup2(null, 1);
	dup2(null, 2);
}

/* Runs argv with its output thrown away; its exit status, or -1. */
static int run(char *const argv[])
{
	pid_t pid = fork();
	if (pid == 0) {
		quiet();
		execvp(argv[0], argv);
		_exit(127);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static MYSQL *admin_connect(void)
{
	MYSQL *conn = mysql_init(NULL);
	if (conn != NULL &&
	    mysql_real_connect(conn, NULL, "root", NULL, NULL, 0, socket_path, 0) == NULL) {
		mysql_close(conn);
		return NULL;
	}
	return conn;
}

/* Starts mariadbd on the folder's data and waits until it answers. */
static int start_server(void)
{
	char datadir[300], pidfile[300], logfile[300], sock[300];
	snprintf(datadir, sizeof(datadir), "--datadir=%s/data", folder);
	snprintf(pidfile, sizeof(pidfile), "--pid-file=%s/mariadbd.pid", folder);
	snprintf(logfile, sizeof(logfile), "--log-error=%s/error.log", folder);
	snprintf(sock, sizeof(sock), "--socket=%s", socket_path);
	char *const argv[] = {"mariadbd",
			      "--no-defaults",
			      datadir,
			      sock,
			      "--skip-networking",
			      "--user=root",
			      pidfile,
			      logfile,
			      "--innodb-buffer-pool-size=32M",
			      "--innodb-log-file-size=16M",
			      NULL};
	server = fork();
	if (server == 0) {
		/* A test that crashes takes its server with it. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		quiet();
		execvp(argv[0], argv);
		execv("/usr/sbin/mariadbd", argv);
		_exit(127);
	}
	for (int i = 0; server > 0 && i < 600; i++) {
		MYSQL *conn = admin_connect();
		if (conn != NULL) {
			mysql_close(conn);
			return 0;
		}
		if (waitpid(server, NULL, WNOHANG) == server)
			break;
		usleep(100 * 1000);
	}
	server = -1;
	return -1;
}

static void stop_server(void)
{
	if (server <= 0)
		return;
	kill(server, SIGTERM);
	waitpid(server, NULL, 0);
	server = -1;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int group_setup(void **state)
{
	(void)state;
	char datadir[300];
	if (mkdtemp(folder) == NULL)
		return -1;
	snprintf(socket_path, sizeof(socket_path), "%s/mysqld.sock", folder);
	snprintf(datadir, sizeof(datadir), "--datadir=%s/data", folder);
	char *const install[] = {"mariadb-install-db",
				 "--no-defaults",
				 datadir,
				 "--auth-root-authentication-method=normal",
				 "--skip-test-db",
				 "--user=root",
				 NULL};
	if (run(install) != 0 || start_server() != 0) {
		fprintf(stderr, "test_dbpool: cannot start a MariaDB server in %s\n", folder);
		return -1;
	}
	MYSQL *admin = admin_connect();
	int rc = admin != NULL && mysql_query(admin, "CREATE DATABASE pooltest") == 0 ? 0 : -1;
	mysql_close(admin);
	db = dbpool_host_api();
	return rc;
}

static int group_teardown(void **state)
{
	(void)state;
	stop_server();
	nftw(folder, remove_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static struct dbpool_node the_server;

/* Starts a pool of size connections, waiting at most wait seconds for a free one. */
static void start_pool(struct dbpool_config *cfg, int size, int wait)
{
	the_server = (struct dbpool_node){.socket = socket_path};
	*cfg = (struct dbpool_config){.nodes = &the_server,
				      .nnodes = 1,
				      .user = "root",
				      .database = "pooltest",
				      .size = size,
				      .connect_timeout = wait,
				      .read_timeout = 5,
				      .write_timeout = 5};
	assert_int_equal(dbpool_start(cfg), 0);
}

static void *acquire(void)
{
	char err[256] = "";
	void *conn = db->acquire(err, sizeof(err));
	if (conn == NULL)
		fail_msg("acquire: %s", err);
	return conn;
}

static unsigned long connection_id(void *conn)
{
	assert_int_equal(mysql_query(conn, "SELECT CONNECTION_ID()"), 0);
	MYSQL_RES *res = mysql_store_result(conn);
	assert_non_null(res);
	MYSQL_ROW row = mysql_fetch_row(res);
	unsigned long id = strtoul(row[0], NULL, 10);
	mysql_free_result(res);
	return id;
}

static double seconds_since(const struct timespec *t0)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

static void test_acquire_query_release(void **state)
{
	(void)state;
	struct dbpool_config cfg;
	start_pool(&cfg, 2, 2);
	void *a = acquire(), *b = acquire();
	assert_ptr_not_equal(a, b);
	assert_int_not_equal(connection_id(a), connection_id(b));
	assert_int_equal(mysql_query(a, "CREATE TABLE t (n INT PRIMARY KEY)"), 0);
	assert_int_equal(mysql_query(b, "INSERT INTO t VALUES (1), (2)"), 0);
	assert_int_equal(mysql_affected_rows(b), 2);
	unsigned long id = connection_id(a);
	db->release(a, false);
	db->release(b, false);
	/* A connection given back is handed out again, not made anew. */
	void *c = acquire(), *d = acquire();
	assert_true(connection_id(c) == id || connection_id(d) == id);
	db->release(c, false);
	db->release(d, false);
	dbpool_stop();
}

static void test_prepared_statements_are_cached(void **state)
{
	(void)state;
	struct dbpool_config cfg;
	char err[256];
	start_pool(&cfg, 1, 2);
	void *conn = acquire();
	MYSQL_STMT *stmt = db->prepare(conn, "SELECT ? + 1", err, sizeof(err));
	assert_non_null(stmt);
	long long in = 41, out = 0;
	MYSQL_BIND param = {.buffer_type = MYSQL_TYPE_LONGLONG, .buffer = &in};
	MYSQL_BIND result = {.buffer_type = MYSQL_TYPE_LONGLONG, .buffer = &out};
	assert_int_equal(mysql_stmt_bind_param(stmt, &param), 0);
	assert_int_equal(mysql_stmt_execute(stmt), 0);
	assert_int_equal(mysql_stmt_bind_result(stmt, &result), 0);
	assert_int_equal(mysql_stmt_fetch(stmt), 0);
	assert_int_equal(out, 42);
	mysql_stmt_free_result(stmt);
	assert_ptr_equal(db->prepare(conn, "SELECT ? + 1", err, sizeof(err)), stmt);
	assert_null(db->prepare(conn, "SELEC nonsense", err, sizeof(err)));
	assert_non_null(strstr(err, "cannot prepare a statement"));
	assert_null(db->prepare(&cfg, "SELECT 1", err, sizeof(err)));
	assert_string_equal(err, "not a pooled connection");
	db->release(conn, false);
	dbpool_stop();
}

static void test_the_wait_for_a_free_connection_is_bounded(void **state)
{
	(void)state;
	struct dbpool_config cfg;
	char err[256];
	struct timespec t0;
	start_pool(&cfg, 1, 1);
	void *conn = acquire();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_null(db->acquire(err, sizeof(err)));
	double waited = seconds_since(&t0);
	assert_true(waited >= 0.9 && waited < 4); /* bounded, with room for a loaded machine */
	assert_string_equal(err, "no MariaDB connection free within 1 s (storage.mariadb.pool)");
	db->release(conn, false);
	dbpool_stop();
}

static void *release_later(void *conn)
{
	usleep(200 * 1000);
	dbpool_host_api()->release(conn, false);
	return NULL;
}

static void test_a_waiter_gets_the_connection_given_back(void **state)
{
	(void)state;
	struct dbpool_config cfg;
	pthread_t th;
	start_pool(&cfg, 1, 5);
	void *conn = acquire();
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(pthread_create(&th, NULL, release_later, conn), 0);
	void *again = acquire();
	assert_true(seconds_since(&t0) < 4); /* woken, not timed out at 5 s */
	assert_ptr_equal(again, conn);
	pthread_join(th, NULL);
	db->release(again, false);
	dbpool_stop();
}

static void kill_connection(unsigned long id)
{
	char sql[64];
	MYSQL *admin = admin_connect();
	assert_non_null(admin);
	snprintf(sql, sizeof(sql), "KILL CONNECTION %lu", id);
	assert_int_equal(mysql_query(admin, sql), 0);
	mysql_close(admin);
}

/* An idle connection is checked before it is handed out: one killed meanwhile is replaced. */
static void test_an_idle_connection_killed_is_made_again(void **state)
{
	(void)state;
	struct dbpool_config cfg;
	start_pool(&cfg, 1, 2);
	void *conn = acquire();
	unsigned long id = connection_id(conn);
	db->release(conn, false);
	kill_connection(id);
	sleep(2); /* idle long enough to be checked */
	conn = acquire();
	assert_int_not_equal(connection_id(conn), id);
	db->release(conn, false);
	dbpool_stop();
}

/* A connection released as broken is closed: the next acquire makes a new one at once. */
static void test_a_connection_released_broken_is_made_again(void **state)
{
	(void)state;
	struct dbpool_config cfg;
	start_pool(&cfg, 1, 2);
	void *conn = acquire();
	unsigned long id = connection_id(conn);
	kill_connection(id);
	assert_int_not_equal(mysql_query(conn, "SELECT 1"), 0);
	db->release(conn, true);
	conn = acquire();
	assert_int_not_equal(connection_id(conn), id);
	db->release(conn, false);
	dbpool_stop();
}

/* While the server is down acquire fails, and it works again once the server is back. */
static void test_the_pool_follows_a_server_restart(void **state)
{
	(void)state;
	struct dbpool_config cfg;
	char err[256];
	start_pool(&cfg, 1, 1);
	void *conn = acquire();
	unsigned long id = connection_id(conn);
	db->release(conn, false);
	stop_server();
	sleep(2);
	assert_null(db->acquire(err, sizeof(err)));
	assert_non_null(strstr(err, "cannot connect to MariaDB"));
	assert_int_equal(start_server(), 0);
	conn = acquire();
	assert_int_not_equal(connection_id(conn), id);
	assert_int_equal(mysql_query(conn, "SELECT COUNT(*) FROM t"), 0);
	mysql_free_result(mysql_store_result(conn));
	db->release(conn, false);
	dbpool_stop();
}

/* A pool of size connections to nodes, waiting at most wait seconds. */
static void start_nodes(struct dbpool_config *cfg, struct dbpool_node *nodes, size_t n, int size,
			int wait)
{
	start_pool(cfg, size, wait);
	cfg->nodes = nodes;
	cfg->nnodes = n;
	assert_int_equal(dbpool_start(cfg), 0);
}

/* A node that refuses (no socket there) is passed over; the next one serves. */
static void test_a_dead_node_is_passed_over(void **state)
{
	(void)state;
	char dead[300];
	struct dbpool_config cfg;
	snprintf(dead, sizeof(dead), "%s/nobody.sock", folder);
	struct dbpool_node nodes[] = {{.socket = dead}, {.socket = socket_path}};
	start_nodes(&cfg, nodes, 2, 2, 2);
	void *a = acquire(), *b = acquire();
	assert_int_not_equal(connection_id(a), connection_id(b));
	db->release(a, false);
	db->release(b, false);
	dbpool_stop();
}

/* Every node dead: acquire answers within about connect_timeout, naming how many it tried. */
static void test_no_node_answers_within_the_timeout(void **state)
{
	(void)state;
	char dead[300], err[256] = "";
	struct dbpool_config cfg;
	struct timespec t0;
	snprintf(dead, sizeof(dead), "%s/nobody.sock", folder);
	struct dbpool_node nodes[] = {{.socket = dead}, {.host = "127.0.0.1", .port = 1}};
	start_nodes(&cfg, nodes, 2, 1, 1);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 3; i++) {
		assert_null(db->acquire(err, sizeof(err)));
		assert_non_null(strstr(err, "2 of its 2 nodes tried, none healthy"));
	}
	assert_true(seconds_since(&t0) < 4);
	dbpool_stop();
}

/* The pool's two connections, acquired together: neither is connection old any more. */
static void acquire_two_but(unsigned long old)
{
	void *a = acquire(), *b = acquire();
	assert_int_not_equal(connection_id(a), old);
	assert_int_not_equal(connection_id(b), old);
	db->release(a, false);
	db->release(b, false);
}

/*
 * Two entries for the one server, as node 0 and node 1. A connection to node 0 killed
 * and released broken takes node 0 down: the other connection to it is dropped at its next
 * acquire, the new ones go to node 1; once node 0 has rested, a connection to node 1 old
 * enough is closed when given back, and the next one goes to node 0 again.
 */
static void test_a_node_gone_drops_its_connections_and_comes_back(void **state)
{
	(void)state;
	struct dbpool_config cfg;
	struct dbpool_node nodes[] = {{.socket = socket_path}, {.socket = socket_path}};
	start_nodes(&cfg, nodes, 2, 2, 2);
	void *a = acquire(), *b = acquire();
	unsigned long ida = connection_id(a), idb = connection_id(b);
	db->release(b, false);
	kill_connection(ida);
	assert_int_not_equal(mysql_query(a, "SELECT 1"), 0);
	db->release(a, true);
	a = acquire();
	b = acquire();
	unsigned long ida2 = connection_id(a), idb2 = connection_id(b);
	assert_true(ida2 != ida && ida2 != idb && idb2 != ida && idb2 != idb);
	db->release(b, false);
	sleep(6); /* node 0 rested (1 s), and a is older than the drain time (5 s) */
	db->release(a, false);
	acquire_two_but(ida2);
	dbpool_stop();
}

/*
 * A connection killed, found so at a prepare and released broken, takes its node down (the
 * error kept by prepare, since closing the failed statement cleared the connection's): the
 * other connection to that node is dropped at its next acquire.
 */
static void test_a_node_gone_at_prepare_is_marked_down(void **state)
{
	(void)state;
	char err[256];
	struct dbpool_config cfg;
	struct dbpool_node nodes[] = {{.socket = socket_path}, {.socket = socket_path}};
	start_nodes(&cfg, nodes, 2, 2, 2);
	void *a = acquire(), *b = acquire();
	unsigned long ida = connection_id(a), idb = connection_id(b);
	db->release(b, false);
	kill_connection(ida);
	assert_null(db->prepare(a, "SELECT ? + 2", err, sizeof(err)));
	assert_int_not_equal(db->prepare_errno(a), 0);
	db->release(a, true);
	acquire_two_but(idb);
	dbpool_stop();
}

static void test_no_pool_no_connection(void **state)
{
	(void)state;
	char err[256];
	assert_int_equal(dbpool_start(NULL), 0);
	assert_null(db->acquire(err, sizeof(err)));
	assert_string_equal(err, "no MariaDB pool in this process");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_acquire_query_release),
	    cmocka_unit_test(test_prepared_statements_are_cached),
	    cmocka_unit_test(test_the_wait_for_a_free_connection_is_bounded),
	    cmocka_unit_test(test_a_waiter_gets_the_connection_given_back),
	    cmocka_unit_test(test_an_idle_connection_killed_is_made_again),
	    cmocka_unit_test(test_a_connection_released_broken_is_made_again),
	    cmocka_unit_test(test_the_pool_follows_a_server_restart),
	    cmocka_unit_test(test_a_dead_node_is_passed_over),
	    cmocka_unit_test(test_no_node_answers_within_the_timeout),
	    cmocka_unit_test(test_a_node_gone_drops_its_connections_and_comes_back),
	    cmocka_unit_test(test_a_node_gone_at_prepare_is_marked_down),
	    cmocka_unit_test(test_no_pool_no_connection),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
