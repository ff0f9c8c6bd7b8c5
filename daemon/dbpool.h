/*
 * dbpool.h: the core's MariaDB pool, a service of its own: one per worker, offered to every
 * plugin through host->mariadb, and the pool sesame.db.query is to use. Its contract, for
 * plugin developers, is in <sesame/plugin.h> (struct sesame_mariadb) and docs/plugins.md.
 */
#ifndef SESAME_DBPOOL_H
#define SESAME_DBPOOL_H

#include <stdbool.h>
#include <stddef.h>

#include "config_table.h"
#include "sesame/plugin.h"

/* One database node: a Unix socket, or a host and port. */
struct dbpool_node {
	char *socket; /* an absolute path, or NULL for host:port */
	char *host;
	int port;
};

struct dbpool_config {
	struct dbpool_node *nodes; /* in order of preference: the local one first */
	size_t nnodes;
	char *user;
	char *password;
	char *database;
	int size;	     /* connections per worker */
	int connect_timeout; /* seconds */
	int read_timeout;
	int write_timeout;
};

/*
 * Makes this process's pool from cfg (nothing when cfg is NULL), replacing the one before:
 * the pool the host's MariaDB functions use. No connection is made until one is acquired.
 * 0, or -1 when out of memory. dbpool_stop closes it and its connections: the master calls it
 * before it forks, a worker before it exits.
 */
int dbpool_start(const struct dbpool_config *cfg);
void dbpool_stop(void);

/* The host's MariaDB functions (host->mariadb), on this process's pool. */
const struct sesame_mariadb *dbpool_host_api(void);

/*
 * dbpool_config.c: reads the pool's settings from its table (storage.mariadb) through host's
 * config functions, as a plugin reads its own; problems are reported through host.
 */
void dbpool_config_read(struct dbpool_config *db, const struct sesame_host *host,
			struct sesame_config *cfg);
/*
 * Reads storage.mariadb.hosts, the value at the top of rd's stack (nil when unset), into db's
 * nodes, replacing the one host/port/socket gave; tbl is the storage.mariadb table (0 when
 * absent), where hosts must not meet host, port or socket. Problems go to rd.
 */
void dbpool_config_hosts(struct dbpool_config *db, struct config_reader *rd, int tbl);
/*
 * Parses one entry of hosts: an absolute socket path ("/..."), or host[:port] with port 3306
 * by default and an IPv6 address in brackets ("[::1]:3306"). 0, or -1 with why.
 */
int dbpool_node_parse(const char *entry, struct dbpool_node *out, char *why, size_t whylen);
/* The node as an operator writes it, for messages: its socket, or host:port. */
void dbpool_node_name(const struct dbpool_node *node, char *out, size_t outlen);
void dbpool_node_clear(struct dbpool_node *node);
void dbpool_config_clear(struct dbpool_config *cfg);

#endif
