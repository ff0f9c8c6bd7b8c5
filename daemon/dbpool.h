/* dbpool.h: a worker's pool of MariaDB connections, used from job threads. */
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

struct dbpool;

struct dbpool *dbpool_new(const struct dbpool_config *cfg);
void dbpool_free(struct dbpool *pool);

/* The pool the host's MariaDB functions (struct sesame_mariadb) use in this process. */
void dbpool_set_current(struct dbpool *pool);
const struct sesame_mariadb *dbpool_host_api(void);

/*
 * dbpool_config.c: reads the pool's settings from its table (storage.mariadb) through host's
 * config functions, as a plugin reads its own; problems are reported through host.
 */
void dbpool_config_read(struct dbpool_config *cfg, const struct sesame_host *host,
			struct sesame_config *table);
void dbpool_config_clear(struct dbpool_config *cfg);

#endif
