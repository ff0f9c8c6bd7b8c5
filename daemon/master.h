/* master.h: the master process: sockets, workers, signals, reloads. */
#ifndef SESAME_MASTER_H
#define SESAME_MASTER_H

#include <stdbool.h>

struct config;

struct master_opts {
	bool foreground; /* -f: do not detach */
	int workers;	 /* -w N: overrides server.workers, kept across reloads; 0 when not given */
};

/* Serves until stopped; takes cfg (loaded and checked). Returns the exit status. */
int master_run(struct config *cfg, const struct master_opts *opts);

#endif
