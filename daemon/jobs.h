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
	bool cpu;	      /* CPU-bound (a password hash): run by the hashing threads */
};

struct jobs;

/* The most threads of either kind a pool runs (server.threads, server.hash_threads). */
#define JOBS_MAX_THREADS 64

/*
 * The threads of a pool: those for blocking work, and those that hash, at a lower priority;
 * and how many jobs of each kind it holds at once (waiting, running or done and not yet
 * delivered), each kind bounded on its own.
 */
struct jobs_threads {
	int io;		  /* storage calls, file reads: jobs whose cpu is false */
	int cpu;	  /* password hashes: jobs whose cpu is true */
	int cpu_nice;	  /* added to the hashing threads' nice value; 0 keeps the loop's */
	size_t io_queue;  /* jobs whose cpu is false held at once */
	size_t cpu_queue; /* jobs whose cpu is true held at once */
};

/* Starts the threads delivering completions to base. evthread_use_pthreads() first. */
struct jobs *jobs_new(struct event_base *base, const struct jobs_threads *threads);

/*
 * Hashing threads for a worker when server.hash_threads is "auto": the node's cores shared
 * among its workers, rounded up, so that the node hashes on every core and no more; at most
 * JOBS_MAX_THREADS.
 */
int jobs_cpu_threads(int workers);

/*
 * Queues job; its done callback runs on base's loop after run. On the loop. -1, and job left
 * untouched, when as many jobs of its kind as the pool holds are pending already (io_queue or
 * cpu_queue): the caller sheds the work.
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
