/*
 * cycle.h: building a configuration to serve, the one sequence that sesamed's start and the
 * master's reload share: load and check the file, load the route scripts into a throwaway
 * state, then apply the storage schema.
 */
#ifndef SESAME_CYCLE_H
#define SESAME_CYCLE_H

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"

/*
 * Loads path and checks it and its route scripts; workers > 0 overrides server.workers.
 * NULL when anything is wrong, with every problem in errs. The schema is not applied yet.
 */
struct config *cycle_load(const char *path, int workers, struct config_errors *errs);

/*
 * sesamed -t and sesamectl check: loads and checks path as cycle_load does, prints every
 * problem on standard error or the verdict on standard output, and returns the exit status:
 * 0 when it is ok, 1 when not.
 */
int cycle_check(const char *path, int workers);

/*
 * A schema being applied, or checked, in a child process, so that the caller's loop keeps
 * turning.
 */
struct cycle_migration {
	pid_t pid;  /* 0: nothing to apply, or done */
	int fd;	    /* the child's report: empty when it succeeded, else the reason */
	bool apply; /* storage.migrate: applied; else only checked */
};

/*
 * Starts applying cfg's schema (when storage.migrate is on; else checking that it is not
 * older than the storage plugin's migrations) in a child process, which first
 * calls in_child (when not NULL: the caller's own clean-up after fork). Returns 0 with
 * mig->pid == 0 when there is nothing to apply, or -1 with the reason in errs.
 */
int cycle_migrate_start(struct config *cfg, struct cycle_migration *mig, void (*in_child)(void),
			struct config_errors *errs);

/*
 * Collects the child's verdict once it exited with status (as waitpid reports it): 0 when
 * the schema is in place, else -1 with the reason in errs.
 */
int cycle_migrate_finish(struct cycle_migration *mig, int status, struct config_errors *errs);

/* Applies cfg's schema and waits for it, as sesamed's start does: 0, or -1 with the reason. */
int cycle_migrate(struct config *cfg, struct config_errors *errs);

#endif
