/*
 * dbpool_nodes.c: the nodes of a worker's pool (storage.mariadb.hosts, the local one first)
 * and their health, for dbpool.c.
 *
 * A new connection goes to the first node in the list that is healthy: it accepts the
 * connection and, on a Galera node (wsrep_on), says wsrep_ready = ON (asked once per
 * connection; a plain server is healthy once it answers). A node that refuses, times out, is not
 * ready, or whose connection fails with an error that means it is gone (dbpool_node_gone) is down:
 * it rests for a second, twice as long after each failure in a row up to 30 s, while the next
 * node takes the connections, and its epoch moves on, so that the pool drops every connection
 * made to it before (they are all dead). Once its rest is over it is tried first again, by one
 * thread at a time (the one that claims the probe; the others pass it over meanwhile), and
 * connections to a less preferred node are drained toward it only once it answered (one is
 * closed per rest, so that a new connection makes the probe); when it answers, it is up. A
 * node is given a share of the time left, so that one that does not answer at all (packets
 * dropped) leaves time for the next. Each change is logged once per process (down: a
 * warning; back: info), and each move of new connections to another node counts in
 * sesame_storage_failovers_total.
 * The states are shared by the job threads, under a lock held for a few loads and stores,
 * never over a connection attempt.
 */
#include "autoconfig.h"

#include "dbpool_nodes.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"

#define REST_FIRST_MS 1000
#define REST_MAX_MS   30000
#define NAME_MAX_LEN  128

struct node_state {
	char name[NAME_MAX_LEN];
	bool down;
	uint64_t rest_until; /* monotonic ms: not tried before, unless every node is down */
	uint64_t rest_ms;    /* the next rest */
	uint64_t epoch;	     /* moves on when the node goes down */
	bool drained;	     /* one connection elsewhere closed, for a probe, this rest */
};

struct dbpool_nodes {
	const struct dbpool_config *cfg;
	pthread_mutex_t lock;
	size_t serving; /* where the last new connection went */
	size_t n;
	struct node_state node[];
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

static void library_init(void)
{
	mysql_library_init(0, NULL, NULL);
}

struct dbpool_nodes *dbpool_nodes_new(const struct dbpool_config *cfg)
{
	struct dbpool_nodes *nodes =
	    calloc(1, sizeof(*nodes) + cfg->nnodes * sizeof(struct node_state));
	if (nodes == NULL)
		return NULL;
	nodes->cfg = cfg;
	nodes->n = cfg->nnodes;
	for (size_t i = 0; i < nodes->n; i++) {
		dbpool_node_name(&cfg->nodes[i], nodes->node[i].name, NAME_MAX_LEN);
		nodes->node[i].rest_ms = REST_FIRST_MS;
	}
	pthread_mutex_init(&nodes->lock, NULL);
	return nodes;
}

void dbpool_nodes_free(struct dbpool_nodes *nodes)
{
	if (nodes == NULL)
		return;
	pthread_mutex_destroy(&nodes->lock);
	free(nodes);
}

bool dbpool_node_gone(unsigned int code)
{
	switch (code) {
	case ER_UNKNOWN_COM_ERROR: /* 1047: WSREP has not yet prepared node for application use */
	case ER_SERVER_SHUTDOWN:
	case ER_CONNECTION_KILLED:
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_SERVER_LOST_EXTENDED:
		return true;
	default:
		return false;
	}
}

/* The value of the one row a SHOW ... LIKE statement answers, into out ("" without a row);
 * false when the statement fails. */
static bool show_value(MYSQL *conn, const char *sql, char *out, size_t outlen)
{
	if (mysql_query(conn, sql) != 0)
		return false;
	MYSQL_RES *res = mysql_store_result(conn);
	if (res == NULL)
		return false;
	MYSQL_ROW row = mysql_fetch_row(res);
	snprintf(out, outlen, "%s", row != NULL && row[1] != NULL ? row[1] : "");
	mysql_free_result(res);
	return true;
}

/* Whether the node is a plain server, or a Galera node ready for clients. */
static bool ready(MYSQL *conn, char *why, size_t whylen)
{
	char on[16], is_ready[16];
	if (!show_value(conn, "SHOW VARIABLES LIKE 'wsrep_on'", on, sizeof(on)) ||
	    (strcmp(on, "ON") == 0 &&
	     !show_value(conn, "SHOW STATUS LIKE 'wsrep_ready'", is_ready, sizeof(is_ready)))) {
		snprintf(why, whylen, "%s", mysql_error(conn));
		return false;
	}
	if (strcmp(on, "ON") == 0 && strcmp(is_ready, "ON") != 0) {
		snprintf(why, whylen,
			 "wsrep_ready is OFF (not in the primary component, or not synced)");
		return false;
	}
	return true;
}

static MYSQL *connect_node(const struct dbpool_config *cfg, const struct dbpool_node *node,
			   unsigned int timeout, char *why, size_t whylen)
{
	pthread_once(&library_once, library_init);
	MYSQL *conn = mysql_init(NULL);
	unsigned int rt = (unsigned)cfg->read_timeout, wt = (unsigned)cfg->write_timeout;
	if (conn == NULL) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	mysql_optionsv(conn, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);
	mysql_optionsv(conn, MYSQL_OPT_READ_TIMEOUT, &rt);
	mysql_optionsv(conn, MYSQL_OPT_WRITE_TIMEOUT, &wt);
	mysql_optionsv(conn, MYSQL_SET_CHARSET_NAME, "utf8mb4");
	mysql_optionsv(conn, MYSQL_INIT_COMMAND,
		       "SET SESSION session_track_state_change = ON, "
		       "session_track_system_variables = '*', session_track_schema = ON, "
		       "session_track_transaction_info = 'CHARACTERISTICS'");
	if (mysql_real_connect(conn, node->socket != NULL ? NULL : node->host, cfg->user,
			       cfg->password, cfg->database, (unsigned)node->port, node->socket,
			       0) == NULL) {
		snprintf(why, whylen, "%s", mysql_error(conn));
		mysql_close(conn);
		return NULL;
	}
	if (!ready(conn, why, whylen)) {
		mysql_close(conn);
		return NULL;
	}
	return conn;
}

static void mark_down(struct dbpool_nodes *nodes, size_t i, const char *why)
{
	struct node_state *st = &nodes->node[i];
	pthread_mutex_lock(&nodes->lock);
	bool was = st->down;
	st->down = true;
	st->epoch++;
	st->rest_until = clock_mono_ms() + st->rest_ms;
	st->rest_ms = st->rest_ms * 2 < REST_MAX_MS ? st->rest_ms * 2 : REST_MAX_MS;
	st->drained = false;
	pthread_mutex_unlock(&nodes->lock);
	if (!was)
		log_warn("MariaDB node %s is down: %s%s", st->name, why,
			 nodes->n > 1 ? "; connections go to the next node" : "");
}

/* The node answered: it is up, and new connections go to it. */
static uint64_t mark_up(struct dbpool_nodes *nodes, size_t i)
{
	struct node_state *st = &nodes->node[i];
	pthread_mutex_lock(&nodes->lock);
	bool was = st->down, moved = nodes->serving != i;
	st->down = false;
	st->rest_until = 0;
	st->rest_ms = REST_FIRST_MS;
	nodes->serving = i;
	uint64_t epoch = st->epoch;
	pthread_mutex_unlock(&nodes->lock);
	if (was)
		log_info("MariaDB node %s is back", st->name);
	if (moved) {
		log_info("MariaDB: new connections go to node %s", st->name);
		metrics_storage_failover();
	}
	return epoch;
}

/*
 * Whether node i may be tried now: it is up, or its rest is over (or force: the last resort).
 * A down node's probe is claimed: it rests for the attempt's time (ms), so that the other
 * threads pass it over meanwhile rather than all wait on a node that may not answer.
 */
static bool claim(struct dbpool_nodes *nodes, size_t i, uint64_t attempt_ms, bool force)
{
	struct node_state *st = &nodes->node[i];
	uint64_t now = clock_mono_ms();
	pthread_mutex_lock(&nodes->lock);
	bool may = !st->down || st->rest_until <= now || force;
	if (may && st->down && st->rest_until < now + attempt_ms)
		st->rest_until = now + attempt_ms;
	pthread_mutex_unlock(&nodes->lock);
	return may;
}

/*
 * A node's share of the time left until deadline: the time left divided among the nodes not
 * tried yet (left of them), in whole seconds (the client's unit), within 1 and connect_timeout,
 * so that a node that does not answer leaves time for the next.
 */
static unsigned int attempt_timeout(const struct dbpool_config *cfg, uint64_t deadline, size_t left)
{
	uint64_t now = clock_mono_ms(), most = (uint64_t)cfg->connect_timeout;
	uint64_t share = deadline > now ? (deadline - now) / left / 1000 : 0;
	if (share < 1)
		share = 1;
	return (unsigned)(share < most ? share : most);
}

static void connect_failed(const struct dbpool_nodes *nodes, size_t tried, const char *why,
			   char *err, size_t errlen)
{
	if (nodes->n == 1)
		snprintf(err, errlen, "cannot connect to MariaDB: %s", why);
	else if (tried == 0)
		snprintf(err, errlen, "cannot connect to MariaDB: no time left to try a node");
	else
		snprintf(err, errlen,
			 "cannot connect to MariaDB: %zu of its %zu nodes tried, none healthy (the "
			 "last: %s)",
			 tried, nodes->n, why);
}

MYSQL *dbpool_nodes_connect(struct dbpool_nodes *nodes, uint64_t deadline,
			    struct dbpool_where *where, char *err, size_t errlen)
{
	char why[LOG_ERR_MAX] = "";
	size_t tried = 0;
	bool *done = calloc(nodes->n, sizeof(bool));
	if (done == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	/* First the nodes not resting, in order; then, when all failed, the resting ones. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < nodes->n; i++) {
			if (done[i])
				continue;
			if (tried > 0 && clock_mono_ms() >= deadline)
				goto fail;
			unsigned int timeout =
			    attempt_timeout(nodes->cfg, deadline, nodes->n - tried);
			if (!claim(nodes, i, timeout * 1000ULL, pass == 1))
				continue;
			done[i] = true;
			tried++;
			MYSQL *conn = connect_node(nodes->cfg, &nodes->cfg->nodes[i], timeout, why,
						   sizeof(why));
			if (conn != NULL) {
				free(done);
				*where = (struct dbpool_where){i, mark_up(nodes, i)};
				return conn;
			}
			mark_down(nodes, i, why);
		}
	}
fail:
	free(done);
	connect_failed(nodes, tried, why, err, errlen);
	return NULL;
}

void dbpool_nodes_failed(struct dbpool_nodes *nodes, const struct dbpool_where *where,
			 unsigned int code)
{
	char why[64];
	if (!dbpool_node_gone(code) || !dbpool_nodes_current(nodes, where))
		return;
	snprintf(why, sizeof(why), "a connection failed (error %u)", code);
	mark_down(nodes, where->node, why);
}

bool dbpool_nodes_current(struct dbpool_nodes *nodes, const struct dbpool_where *where)
{
	pthread_mutex_lock(&nodes->lock);
	bool same = nodes->node[where->node].epoch == where->epoch;
	pthread_mutex_unlock(&nodes->lock);
	return same;
}

bool dbpool_nodes_better(struct dbpool_nodes *nodes, const struct dbpool_where *where)
{
	uint64_t now = clock_mono_ms();
	bool better = false;
	pthread_mutex_lock(&nodes->lock);
	for (size_t i = 0; i < where->node && !better; i++) {
		struct node_state *st = &nodes->node[i];
		/* Up again (a connection reached it); or past its rest and no connection closed
		 * for it yet: this one is, so that a new one probes the node. */
		better = !st->down || (st->rest_until <= now && !st->drained);
		if (better && st->down)
			st->drained = true;
	}
	pthread_mutex_unlock(&nodes->lock);
	return better;
}
