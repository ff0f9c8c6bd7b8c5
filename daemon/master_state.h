/*
 * master_state.h: the master's state, shared by master.c (the processes, the signals, the
 * loop) and master_reload.c (a reload, from SIGHUP until its generation serves or is given
 * up), and what each of the two files offers the other. Nothing but the master includes it.
 */
#ifndef SESAME_MASTER_STATE_H
#define SESAME_MASTER_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cycle.h"
#include "listen.h"

struct config;
struct master_opts;
struct roster_worker;
struct scoreboard_slot;

struct master_state {
	struct config *cfg; /* the serving generation's configuration */
	unsigned gen;	    /* the serving generation */
	unsigned last_gen;  /* the newest generation started: no number serves twice */
	const struct master_opts *opts;
	struct listen_set socks;
	struct scoreboard_slot *sb;
	int sigfd;
	bool announced;		 /* READY=1 sent for the first generation */
	int parent_fd;		 /* a detaching sesamed's parent waits on this for startup */
	uint64_t start_deadline; /* detached: the first generation serves by then, or we stop */
	bool stopping;
	bool start_failed; /* the first generation could not start: exit 1 */
	uint64_t watchdog_ms, next_watchdog;
	uint64_t next_hang_check;
	int control_fd; /* server.control, as the first configuration set it */
	char *control_path;
	uint64_t started_ms;
	/* A reload, master_reload.c's: */
	struct config *pending;	    /* its configuration while its schema is applied */
	struct cycle_migration mig; /* that schema's child process */
	bool reload_again;	    /* SIGHUP came during a reload, or before the first READY */
	struct config *next;	    /* its configuration while its generation starts */
	unsigned next_gen;	    /* that generation */
	size_t socks_before;	    /* how many sockets were open before it added its own */
	uint64_t reload_deadline; /* its generation serves by then (monotonic ms), or is given up */
};

extern struct master_state master_state;

/* master.c's */
/*
 * Opens the sockets cfg needs and marks those it does not want: 0, or -1 after logging why.
 * The sockets it adds listen at once, or (listening false: a reload's) only once the worker
 * given each calls listen(), just before it serves.
 */
int master_open_sockets(const struct config *cfg, bool listening);
/* Starts every slot's worker of generation gen (the serving one, or a reload's next). */
void master_spawn_generation(unsigned gen);
/* Tells the metrics segment of the workers: the serving generation, and /readyz's verdict. */
void master_publish_workers(void);
/* When a worker running cfg that is told to drain now is killed if still alive (monotonic ms). */
uint64_t master_retire_deadline(const struct config *cfg);
/* Logs that the serving generation serves, and tells systemd and a waiting parent. */
void master_announce_ready(void);
/* In a child forked from the master that runs no worker: closes what is the master's. */
void master_shed_fds(void);
/*
 * Did a worker exit (status as waitpid says, described by what) because it cannot run as
 * server.user? Then why says so.
 */
bool master_cannot_drop(int status, const char *what, char *why, size_t len);

/* master_reload.c's */
/*
 * SIGHUP: loads and checks the configuration, then applies its schema in a child; before the
 * first generation serves, only notes that a reload is asked for.
 */
void master_reload(void);
/* The first generation serves: a reload asked for before starts now. */
void master_reload_deferred(void);
/* The schema's child exited with status (as waitpid says). */
void master_reload_migrated(int status);
/* A worker of the reload's generation said it serves: once all do, that generation serves. */
void master_reload_check_ready(void);
/*
 * The worker w of the reload's generation exited with status (described by what) in a way no
 * respawn mends: the reload is given up at once. Returns whether it was.
 */
bool master_reload_worker_failed(const struct roster_worker *w, int status, const char *what);
/* Gives up the reload whose generation did not serve by its deadline. */
void master_reload_tick(uint64_t now);
/* sesamed stops: a schema's child is told to stop too. */
void master_reload_stop(void);
/* At the master's exit. */
void master_reload_free(void);

#endif
