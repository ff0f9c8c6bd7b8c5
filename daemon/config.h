/* config.h: loading and checking the Lua configuration file. */
#ifndef SESAME_CONFIG_H
#define SESAME_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "config_accounts.h"
#include "config_diag.h"
#include "config_outbound.h"
#include "config_events.h"
#include "ratelimit.h"
#include "log.h"
#include "privs.h"
#include "proxies.h"
#include "tokens.h"

struct lua_State;

/* Where sesamed and sesamectl look for the configuration without -c. */
#define CONFIG_DEFAULT_PATH SYSCONFDIR "/sesame/sesame.lua"

/* The most workers (server.workers, sesamed -w) one sesamed runs. */
#define CONFIG_MAX_WORKERS 128

/* server.metrics: whether GET /metrics is answered, and to which peers. */
struct config_metrics {
	bool on;
	struct proxies allow;
};

struct config {
	char *path; /* the file as given */
	char *dir;  /* its folder: relative paths resolve against it */

	/* server */
	char **listen;
	size_t nlisten;
	int workers;
	int threads;
	int hash_threads; /* password hashing threads per worker; 0: "auto" (jobs_cpu_threads) */
	int hash_nice;	  /* how much lower than the loop's the hashing threads' priority is */
	size_t max_body;
	size_t max_header;
	int timeout;	      /* seconds to read a request or write a response */
	int keepalive;	      /* seconds an idle connection is kept open */
	int shutdown_timeout; /* seconds in-flight requests get to finish on stop or reload */
	bool debug;
	char *access_log; /* "stderr", an absolute path, or NULL when off */
	enum log_level log_level;
	long handler_instructions; /* instruction budget of one request's handler */
	int handler_timeout;	   /* seconds a handler may take, waits on job threads included */
	size_t lua_memory;	   /* bytes the worker's Lua state may hold */
	int json_depth;
	int queue;	       /* jobs a worker holds at once; past it, requests get 503 */
	int hash_queue;	       /* the same for password hashes; 0: unset (config_hash_queue) */
	long hang_timeout_ms;  /* a worker whose loop has not turned for this long is killed */
	long start_timeout_ms; /* a new generation's workers must all serve within it */
	struct privs privs;    /* server.user and server.group, looked up */
	struct proxies trusted_proxies; /* peers whose X-Forwarded-For is believed */
	struct config_metrics metrics;
	char *control; /* the master's control socket (server.control), NULL when off */

	struct plugins *plugins; /* loaded and initialised */
	struct token_config jwt;
	struct ratelimit_rules limits; /* the `limits` table */
	struct config_mail mail;       /* mail: where sesame.mail.send delivers */
	struct config_http http;       /* http: the hosts sesame.http.request may reach */
	struct config_events events;
	struct config_accounts accounts;

	/* routes: the route script files, in load order */
	char **routes;
	size_t nroutes;
};

/* Loads and checks path; NULL when anything is wrong, with every problem in errs. */
struct config *config_load(const char *path, struct config_errors *errs);
/*
 * The file at path run as config_load runs it, and only server.control read (the rest keeps
 * its defaults): no plugin, no storage, no key file is touched. For sesamectl status.
 */
struct config *config_load_control(const char *path, struct config_errors *errs);
/*
 * As config_load, but without trying to open the log files (server.access_log,
 * events.audit_log): for sesamectl, whose commands that write a log open it themselves, so
 * that a user who may not write the logs can still run the others.
 */
struct config *config_load_unlogged(const char *path, struct config_errors *errs);
void config_free(struct config *cfg);

/* Overrides server.workers (sesamed -w). */
void config_set_workers(struct config *cfg, int workers);

/* server.hash_threads and server.hash_queue with "auto" and unset resolved, for the workers the
 * node runs (after sesamed -w): one place, so that the threads and their bound agree. */
int config_hash_threads(const struct config *cfg);
int config_hash_queue(const struct config *cfg);

#endif
