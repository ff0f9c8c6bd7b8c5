/*
 * dbpool.c: the core's MariaDB connection pool, one per worker (and a short-lived one in the
 * master while plugins are initialised, closed before any fork, and in the process that
 * applies migrations). Plugins reach it through struct sesame_mariadb (host->mariadb); the
 * core starts and stops it, a plugin only borrows connections.
 *
 * A job thread acquires a connection, waiting at most connect_timeout for a free one; a slot
 * connects lazily, so a worker started while the server is down still starts, and a
 * connection released as broken (server restarted, timeout) is closed and made again on the
 * next acquire, and one idle for a second or more is pinged first: sesamed follows a server
 * restart without being restarted itself. Prepared statements are cached per connection,
 * keyed by their SQL text. Each connection asks the server to track changes to its session
 * (system variables, schema, user variables, temporary tables, transaction characteristics):
 * the answer of a statement that made one is flagged, so that the store can close, rather
 * than pool, a connection a route script's statement changed (mariadb_query.c).
 */
#include "autoconfig.h"

#include "dbpool.h"

#include <errno.h>
#include <mysql.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

#define STMT_CACHE    32
#define IDLE_CHECK_MS 1000 /* idle this long, a connection is pinged before use */

struct slot {
	MYSQL *conn;
	bool busy;
	uint64_t used; /* when it was last given back, on the monotonic clock (ms) */
	struct {
		char *sql;
		MYSQL_STMT *stmt;
	} stmts[STMT_CACHE];
	size_t nstmts;
};

struct dbpool {
	const struct dbpool_config *cfg;
	pthread_mutex_t lock;
	pthread_cond_t freed;
	struct slot *slots;
	int size;
};

static struct dbpool *current;
static pthread_once_t library_once = PTHREAD_ONCE_INIT;

static void library_init(void)
{
	mysql_library_init(0, NULL, NULL);
}

static struct dbpool *pool_new(const struct dbpool_config *cfg)
{
	struct dbpool *pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		return NULL;
	pool->cfg = cfg;
	pool->size = cfg->size;
	pool->slots = calloc((size_t)cfg->size, sizeof(struct slot));
	if (pool->slots == NULL) {
		free(pool);
		return NULL;
	}
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->freed, NULL);
	return pool;
}

static void close_slot(struct slot *s)
{
	for (size_t i = 0; i < s->nstmts; i++) {
		mysql_stmt_close(s->stmts[i].stmt);
		free(s->stmts[i].sql);
	}
	s->nstmts = 0;
	if (s->conn != NULL)
		mysql_close(s->conn);
	s->conn = NULL;
}

static void pool_free(struct dbpool *pool)
{
	if (pool == NULL)
		return;
	for (int i = 0; i < pool->size; i++)
		close_slot(&pool->slots[i]);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->freed);
	free(pool->slots);
	free(pool);
}

static MYSQL *connect_one(const struct dbpool_config *cfg, char *err, size_t errlen)
{
	/* Only a process that connects needs the client library: a pool may go unused. */
	pthread_once(&library_once, library_init);
	MYSQL *conn = mysql_init(NULL);
	unsigned int ct = (unsigned)cfg->connect_timeout, rt = (unsigned)cfg->read_timeout,
		     wt = (unsigned)cfg->write_timeout;
	if (conn == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	mysql_optionsv(conn, MYSQL_OPT_CONNECT_TIMEOUT, &ct);
	mysql_optionsv(conn, MYSQL_OPT_READ_TIMEOUT, &rt);
	mysql_optionsv(conn, MYSQL_OPT_WRITE_TIMEOUT, &wt);
	mysql_optionsv(conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_optionsv(conn, MYSQL_INIT_COMMAND,
		       "SET SESSION session_track_state_change = ON, "
		       "session_track_system_variables = '*', session_track_schema = ON, "
		       "session_track_transaction_info = 'CHARACTERISTICS'");
	if (mysql_real_connect(conn, cfg->socket != NULL ? NULL : cfg->host, cfg->user,
			       cfg->password, cfg->database, (unsigned)cfg->port, cfg->socket,
			       0) == NULL) {
		snprintf(err, errlen, "cannot connect to MariaDB: %s", mysql_error(conn));
		mysql_close(conn);
		return NULL;
	}
	return conn;
}

/* Under the pool's lock: the worker's pool gauges. A slot's connection changes only while the
 * slot is busy, so the count is exact. */
static void publish_use(const struct dbpool *pool)
{
	int busy = 0, idle = 0;
	for (int i = 0; i < pool->size; i++) {
		if (pool->slots[i].busy)
			busy++;
		else if (pool->slots[i].conn != NULL)
			idle++;
	}
	metrics_pool(busy, idle);
}

static struct slot *wait_slot(struct dbpool *pool, char *err, size_t errlen)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += pool->cfg->connect_timeout;
	pthread_mutex_lock(&pool->lock);
	for (;;) {
		for (int i = 0; i < pool->size; i++) {
			if (!pool->slots[i].busy) {
				pool->slots[i].busy = true;
				publish_use(pool);
				pthread_mutex_unlock(&pool->lock);
				return &pool->slots[i];
			}
		}
		if (pthread_cond_timedwait(&pool->freed, &pool->lock, &until) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&pool->lock);
	snprintf(err, errlen, "no MariaDB connection free within %d s (storage.mariadb.pool)",
		 pool->cfg->connect_timeout);
	return NULL;
}

static struct slot *slot_of(struct dbpool *pool, void *conn)
{
	for (int i = 0; i < pool->size; i++) {
		if (pool->slots[i].conn == conn)
			return &pool->slots[i];
	}
	return NULL;
}

static void give_back(struct dbpool *pool, struct slot *s)
{
	pthread_mutex_lock(&pool->lock);
	s->busy = false;
	publish_use(pool);
	pthread_cond_signal(&pool->freed);
	pthread_mutex_unlock(&pool->lock);
}

static void *acquire(char *err, size_t errlen)
{
	struct dbpool *pool = current;
	if (pool == NULL) {
		snprintf(err, errlen, "no MariaDB pool in this process");
		return NULL;
	}
	struct slot *s = wait_slot(pool, err, errlen);
	if (s == NULL)
		return NULL;
	/* A connection idle for a while may have outlived its server (a restart): check it. */
	if (s->conn != NULL && clock_mono_ms() - s->used >= IDLE_CHECK_MS &&
	    mysql_ping(s->conn) != 0)
		close_slot(s);
	if (s->conn == NULL && (s->conn = connect_one(pool->cfg, err, errlen)) == NULL) {
		give_back(pool, s);
		return NULL;
	}
	return s->conn;
}

static void release(void *conn, bool broken)
{
	struct dbpool *pool = current;
	struct slot *s = pool != NULL ? slot_of(pool, conn) : NULL;
	if (s == NULL)
		return;
	if (broken)
		close_slot(s);
	s->used = clock_mono_ms();
	give_back(pool, s);
}

static void *prepare(void *conn, const char *sql, char *err, size_t errlen)
{
	struct slot *s = current != NULL ? slot_of(current, conn) : NULL;
	if (s == NULL) {
		snprintf(err, errlen, "not a pooled connection");
		return NULL;
	}
	for (size_t i = 0; i < s->nstmts; i++) {
		if (strcmp(s->stmts[i].sql, sql) == 0)
			return s->stmts[i].stmt;
	}
	MYSQL_STMT *stmt = mysql_stmt_init(s->conn);
	if (stmt == NULL || mysql_stmt_prepare(stmt, sql, (unsigned long)strlen(sql)) != 0) {
		snprintf(err, errlen, "cannot prepare a statement: %s",
			 stmt ? mysql_stmt_error(stmt) : mysql_error(s->conn));
		if (stmt != NULL)
			mysql_stmt_close(stmt);
		return NULL;
	}
	if (s->nstmts == STMT_CACHE) {
		/* Full: the oldest statement makes room. */
		mysql_stmt_close(s->stmts[0].stmt);
		free(s->stmts[0].sql);
		memmove(&s->stmts[0], &s->stmts[1], (STMT_CACHE - 1) * sizeof(s->stmts[0]));
		s->nstmts--;
	}
	char *copy = strdup(sql);
	if (copy == NULL) {
		mysql_stmt_close(stmt);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->stmts[s->nstmts].sql = copy;
	s->stmts[s->nstmts].stmt = stmt;
	s->nstmts++;
	return stmt;
}

int dbpool_start(const struct dbpool_config *cfg)
{
	pool_free(current);
	current = NULL;
	if (cfg == NULL)
		return 0;
	current = pool_new(cfg);
	return current != NULL ? 0 : -1;
}

void dbpool_stop(void)
{
	pool_free(current);
	current = NULL;
}

const struct sesame_mariadb *dbpool_host_api(void)
{
	static const struct sesame_mariadb api = {
	    .acquire = acquire, .release = release, .prepare = prepare};
	return &api;
}
