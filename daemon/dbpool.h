/*
 * dbpool.h: the core's MariaDB pool, a service of its own: one per worker, offered to every
 * plugin through host->mariadb, and the pool sesame.db.query is to use. Its contract, for
 * plugin developers, is in <sesame/plugin.h> (struct sesame_mariadb) and docs/plugins.md.
 */
#ifndef SESAME_DBPOOL_H
#define SESAME_DBPOOL_H

#include <stdbool.h>
#include <stddef.h>

#include "sesame/plugin.h"

struct dbpool_config {
	char *socket; /* a Unix socket, or NULL for host:port */
	char *host;
	int port;
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
void dbpool_config_clear(struct dbpool_config *cfg);

#endif
