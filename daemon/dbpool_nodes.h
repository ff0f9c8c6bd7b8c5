/*
 * dbpool_nodes.h: the nodes a pool connects to (storage.mariadb.hosts) and what it knows of
 * each one's health; dbpool.c's helper, not an interface for the rest of the daemon.
 */
#ifndef SESAME_DBPOOL_NODES_H
#define SESAME_DBPOOL_NODES_H

#include <mysql.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dbpool.h"

struct dbpool_nodes;

/* The nodes of cfg, each healthy until it fails; NULL when out of memory. */
struct dbpool_nodes *dbpool_nodes_new(const struct dbpool_config *cfg);
void dbpool_nodes_free(struct dbpool_nodes *nodes);

/* Where a connection goes: a node, and the node's epoch when it was made. */
struct dbpool_where {
	size_t node;
	uint64_t epoch;
};

/*
 * A new connection to the first healthy node, in order of preference, trying until deadline
 * (monotonic ms) at most, each node for its share of the time left; a node whose rest is over
 * is probed by one thread at a time. Then the nodes resting after a failure, so that a pool
 * whose every node failed still finds one that came back. NULL with the reason in err. From
 * any thread.
 */
MYSQL *dbpool_nodes_connect(struct dbpool_nodes *nodes, uint64_t deadline,
			    struct dbpool_where *where, char *err, size_t errlen);

/* A connection at where failed with code: the node is marked down when code says it is gone. */
void dbpool_nodes_failed(struct dbpool_nodes *nodes, const struct dbpool_where *where,
			 unsigned int code);

/* Whether a connection made at where still goes to a node that has not failed since. */
bool dbpool_nodes_current(struct dbpool_nodes *nodes, const struct dbpool_where *where);

/*
 * Whether a connection at where should make room for a preferred node: one that is up again
 * (a connection reached it since it failed), or, once per rest of a node down, one whose rest
 * is over (the connection closed lets the next one probe it).
 */
bool dbpool_nodes_better(struct dbpool_nodes *nodes, const struct dbpool_where *where);

/*
 * Whether a MariaDB error code means "not this node now": the connection is dead (2002, 2003,
 * 2006, 2013, 2055), it was killed (1927), the server shuts down (1053), or a Galera node is
 * not ready for clients (1047: not in the primary component, or not synced).
 */
bool dbpool_node_gone(unsigned int code);

#endif
