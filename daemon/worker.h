/* worker.h: a worker process, from fork to exit. */
#ifndef SESAME_WORKER_H
#define SESAME_WORKER_H

#include <stddef.h>
#include <sys/types.h>

struct config;
struct scoreboard_slot;

struct worker_spec {
	const struct config *cfg;
	const int *fds; /* the listening sockets of this worker's slot */
	size_t nfds;
	int ready_fd; /* written once the worker serves, then closed */
	struct scoreboard_slot *slot;
	pid_t master; /* the worker stops when its parent is no longer this process */
};

/*
 * The exit status of a worker that could not change to server.user: no worker of that
 * configuration will do better, so a start stops on it rather than respawning.
 */
#define WORKER_EXIT_PRIVS 3

/* Runs a worker in the freshly forked child; returns its exit status. */
int worker_run(const struct worker_spec *spec);

#endif
