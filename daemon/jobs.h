/* jobs.h: a worker's job threads, where blocking work runs off the event loop. */
#ifndef SESAME_JOBS_H
#define SESAME_JOBS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "metrics.h"

struct event_base;

struct job {
	void (*run)(struct job *job);  /* on a job thread: no Lua, no libevent */
	void (*done)(struct job *job); /* on the event loop, once run has returned or was skipped */
	struct job *next;
	atomic_int cancelled; /* 0; jobs_cancel's reason + 1; -1 once a thread took it */
};

struct jobs;

/*
 * Starts nthreads job threads delivering completions to base, with room for max_pending jobs
 * at once (waiting, running or done and not yet delivered). evthread_use_pthreads() first.
 */
struct jobs *jobs_new(struct event_base *base, int nthreads, size_t max_pending);

/*
 * Queues job; its done callback runs on base's loop after run. On the loop. -1, and job left
 * untouched, when max_pending jobs are pending already: the caller sheds the work.
 */
int jobs_submit(struct jobs *jobs, struct job *job);

/*
 * Marks a submitted job as no longer wanted, for reason (its request timed out, its client
 * left): a job thread that has not started it skips run, counts it as dropped for reason, and
 * done is called all the same. A job already running or run is neither stopped nor counted.
 * From the loop; safe against the threads.
 */
void jobs_cancel(struct job *job, enum metrics_drop reason);

/* Jobs submitted whose done callback has not run yet. */
size_t jobs_pending(const struct jobs *jobs);

/* Stops the threads once the queue is empty, and frees the pool. */
void jobs_free(struct jobs *jobs);

#endif
