/*
 * dbpool.c: the core's MariaDB connection pool, one per worker (and a short-lived one in the
 * master while plugins are initialised, closed before any fork, and in the process that
 * applies migrations). Plugins reach it through struct sesame_mariadb (host->mariadb); the
 * core starts and stops it, a plugin only borrows connections.
 *
 * A job thread acquires a connection, waiting at most connect_timeout in all for a free slot
 * and a connection; a slot connects lazily, so a worker started while the server is down
 * still starts, and a connection released as broken (server restarted, timeout) is closed and
 * made again on the next acquire, and one idle for a second or more is pinged first: sesamed
 * follows a server restart without being restarted itself. On a cluster (several nodes in
 * storage.mariadb.hosts), a slot connects to the first healthy node (dbpool_nodes.c); a
 * connection to a node that failed since it was made is closed at its next acquire, and one
 * to a less preferred node is closed when it is given back once it is DRAIN_MS old and a
 * preferred node is up again (or, once per rest of a preferred node down, to let the next
 * connection probe it), so that the pool returns there by itself. Prepared
 * statements are cached per connection, keyed by their SQL text. Each connection asks the server to
 * track changes to its session (system variables, schema, user variables, temporary tables,
 * transaction characteristics): the answer of a statement that made one is flagged, so that the
 * store can close, rather than pool, a connection a route script's statement changed
 * (mariadb_query.c).
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
#include "dbpool_nodes.h"
#include "log.h"
#include "metrics.h"

#define STMT_CACHE    32
#define IDLE_CHECK_MS 1000 /* idle this long, a connection is pinged before use */
#define DRAIN_MS      5000 /* a connection to a less preferred node lives this long at least */

struct slot {
	MYSQL *conn;
	bool busy;
	struct dbpool_where where;  /* the node the connection goes to */
	uint64_t opened;	    /* when it was made, on the monotonic clock (ms) */
	uint64_t used;		    /* when it was last given back */
	unsigned int prepare_errno; /* the last prepare's error code, 0 when it succeeded */
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
	struct dbpool_nodes *nodes;
};

static struct dbpool *current;

static struct dbpool *pool_new(const struct dbpool_config *cfg)
{
	struct dbpool *pool = calloc(1, sizeof(*pool));
	if (pool == NULL)
		return NULL;
	pool->cfg = cfg;
	pool->size = cfg->size;
	pool->slots = calloc((size_t)cfg->size, sizeof(struct slot));
	pool->nodes = dbpool_nodes_new(cfg);
	if (pool->slots == NULL || pool->nodes == NULL) {
		dbpool_nodes_free(pool->nodes);
		free(pool->slots);
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
	dbpool_nodes_free(pool->nodes);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->freed);
	free(pool->slots);
	free(pool);
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

/* The slot's connection, when there is one still worth using; else it is closed. */
static void check_slot(struct dbpool *pool, struct slot *s)
{
	if (s->conn == NULL)
		return;
	if (!dbpool_nodes_current(pool->nodes, &s->where)) {
		close_slot(s);
		return;
	}
	/* A connection idle for a while may have outlived its server (a restart): check it. */
	if (clock_mono_ms() - s->used >= IDLE_CHECK_MS && mysql_ping(s->conn) != 0) {
		dbpool_nodes_failed(pool->nodes, &s->where, mysql_errno(s->conn));
		close_slot(s);
	}
}

static void *acquire(char *err, size_t errlen)
{
	struct dbpool *pool = current;
	if (pool == NULL) {
		snprintf(err, errlen, "no MariaDB pool in this process");
		return NULL;
	}
	uint64_t deadline = clock_mono_ms() + (uint64_t)pool->cfg->connect_timeout * 1000;
	struct slot *s = wait_slot(pool, err, errlen);
	if (s == NULL)
		return NULL;
	check_slot(pool, s);
	if (s->conn == NULL) {
		s->conn = dbpool_nodes_connect(pool->nodes, deadline, &s->where, err, errlen);
		s->opened = clock_mono_ms();
	}
	if (s->conn == NULL) {
		give_back(pool, s);
		return NULL;
	}
	return s->conn;
}

/*
 * A broken connection is closed, and the error it failed with tells whether its node is gone
 * (then every connection to it goes). A sound one to a less preferred node is closed once old
 * enough, when a preferred node may be back: the next acquire tries that one first.
 */
static void release(void *conn, bool broken)
{
	struct dbpool *pool = current;
	struct slot *s = pool != NULL ? slot_of(pool, conn) : NULL;
	if (s == NULL)
		return;
	if (broken) {
		/* Closing a statement that failed to prepare cleared the connection's error. */
		unsigned int code = mysql_errno(s->conn);
		dbpool_nodes_failed(pool->nodes, &s->where, code != 0 ? code : s->prepare_errno);
	}
	s->prepare_errno = 0;
	s->used = clock_mono_ms();
	if (broken ||
	    (s->used - s->opened >= DRAIN_MS && dbpool_nodes_better(pool->nodes, &s->where)))
		close_slot(s);
	give_back(pool, s);
}

static void *prepare(void *conn, const char *sql, char *err, size_t errlen)
{
	struct slot *s = current != NULL ? slot_of(current, conn) : NULL;
	if (s == NULL) {
		snprintf(err, errlen, "not a pooled connection");
		return NULL;
	}
	s->prepare_errno = 0;
	for (size_t i = 0; i < s->nstmts; i++) {
		if (strcmp(s->stmts[i].sql, sql) == 0)
			return s->stmts[i].stmt;
	}
	MYSQL_STMT *stmt = mysql_stmt_init(s->conn);
	if (stmt == NULL || mysql_stmt_prepare(stmt, sql, (unsigned long)strlen(sql)) != 0) {
		snprintf(err, errlen, "cannot prepare a statement: %s",
			 stmt ? mysql_stmt_error(stmt) : mysql_error(s->conn));
		/* Closing the statement clears the connection's error: the code is kept here. */
		s->prepare_errno = stmt ? mysql_stmt_errno(stmt) : mysql_errno(s->conn);
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

/* The error code of conn's last failed prepare (a Galera conflict can surface there). */
static unsigned int prepare_errno(void *conn)
{
	struct slot *s = current != NULL ? slot_of(current, conn) : NULL;
	return s != NULL ? s->prepare_errno : 0;
}

const struct sesame_mariadb *dbpool_host_api(void)
{
	static const struct sesame_mariadb api = {.acquire = acquire,
						  .release = release,
						  .prepare = prepare,
						  .prepare_errno = prepare_errno};
	return &api;
}
