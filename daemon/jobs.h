/* jobs.h: a worker's job threads, where blocking work runs off the event loop. */
#ifndef SESAME_JOBS_H
#define SESAME_JOBS_H

#include <stddef.h>

struct event_base;

struct job {
	void (*run)(struct job *job);  /* on a job thread: no Lua, no libevent */
	void (*done)(struct job *job); /* on the event loop, once run has returned */
	struct job *next;
};

struct jobs;

/* Starts nthreads job threads delivering completions to base. evthread_use_pthreads() first. */
struct jobs *jobs_new(struct event_base *base, int nthreads);

/* Queues job; its done callback runs on base's loop after run. */
void jobs_submit(struct jobs *jobs, struct job *job);

/* Jobs submitted whose done callback has not run yet. */
size_t jobs_pending(const struct jobs *jobs);

/* Stops the threads once the queue is empty, and frees the pool. */
void jobs_free(struct jobs *jobs);

#endif
