/*
 * jobs.c: the job threads of one worker.
 *
 * The event loop never blocks: password hashing, storage calls and file reads are packed into
 * a struct job and queued here. A job thread takes it, calls run (which touches neither Lua
 * nor libevent), and appends it to the completion list; the first completion of a batch
 * activates one event on the worker's base, whose callback runs each job's done on the loop.
 * That is where the waiting Lua coroutine is resumed.
 *
 * The work is bounded: past max_pending jobs a submission is refused and the caller answers
 * "busy" at once, rather than growing a backlog that answers nobody in time. A job whose
 * request is gone (timed out, client left) is cancelled: a thread that takes it skips its run,
 * so no password is hashed for a client that will never read the answer.
 */
#include "autoconfig.h"

#include "jobs.h"

#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"
#include "metrics.h"

struct jobs {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct job *queue_head, *queue_tail; /* waiting for a thread */
	struct job *done_head, *done_tail;   /* run, waiting for the loop */
	bool stopping;
	size_t pending, max_pending;
	struct event *done_ev;
	pthread_t *threads;
	int nthreads;
};

static void *thread_main(void *arg)
{
	struct jobs *jobs = arg;
	pthread_mutex_lock(&jobs->lock);
	for (;;) {
		while (jobs->queue_head == NULL && !jobs->stopping)
			pthread_cond_wait(&jobs->cond, &jobs->lock);
		struct job *job = jobs->queue_head;
		if (job == NULL)
			break;
		jobs->queue_head = job->next;
		if (jobs->queue_head == NULL)
			jobs->queue_tail = NULL;
		pthread_mutex_unlock(&jobs->lock);

		int cancelled = atomic_exchange(&job->cancelled, -1); /* -1: taken, too late */
		if (cancelled == 0)
			job->run(job);
		else
			metrics_jobs_dropped((enum metrics_drop)(cancelled - 1));

		pthread_mutex_lock(&jobs->lock);
		job->next = NULL;
		bool first = jobs->done_head == NULL;
		if (jobs->done_tail != NULL)
			jobs->done_tail->next = job;
		else
			jobs->done_head = job;
		jobs->done_tail = job;
		if (first)
			event_active(jobs->done_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&jobs->lock);
	return NULL;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	struct jobs *jobs = arg;
	pthread_mutex_lock(&jobs->lock);
	struct job *job = jobs->done_head;
	jobs->done_head = jobs->done_tail = NULL;
	pthread_mutex_unlock(&jobs->lock);
	while (job != NULL) {
		struct job *next = job->next;
		jobs->pending--;
		metrics_jobs_queued(-1);
		job->done(job);
		job = next;
	}
}

struct jobs *jobs_new(struct event_base *base, int nthreads, size_t max_pending)
{
	struct jobs *jobs = calloc(1, sizeof(*jobs));
	if (jobs == NULL)
		return NULL;
	jobs->max_pending = max_pending;
	pthread_mutex_init(&jobs->lock, NULL);
	pthread_cond_init(&jobs->cond, NULL);
	jobs->done_ev = event_new(base, -1, 0, on_done, jobs);
	jobs->threads = calloc((size_t)nthreads, sizeof(pthread_t));
	if (jobs->done_ev == NULL || jobs->threads == NULL)
		goto fail;

	/* Signals are the loop's business: job threads never take one. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (; jobs->nthreads < nthreads; jobs->nthreads++) {
		if (pthread_create(&jobs->threads[jobs->nthreads], NULL, thread_main, jobs) != 0)
			break;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (jobs->nthreads < nthreads) {
		log_error("cannot start job threads");
		goto fail;
	}
	return jobs;
fail:
	jobs_free(jobs);
	return NULL;
}

int jobs_submit(struct jobs *jobs, struct job *job)
{
	if (jobs->pending >= jobs->max_pending)
		return -1;
	job->next = NULL;
	atomic_init(&job->cancelled, 0);
	jobs->pending++;
	metrics_jobs_queued(1);
	pthread_mutex_lock(&jobs->lock);
	if (jobs->queue_tail != NULL)
		jobs->queue_tail->next = job;
	else
		jobs->queue_head = job;
	jobs->queue_tail = job;
	pthread_cond_signal(&jobs->cond);
	pthread_mutex_unlock(&jobs->lock);
	return 0;
}

void jobs_cancel(struct job *job, enum metrics_drop reason)
{
	int wanted = 0;
	atomic_compare_exchange_strong(&job->cancelled, &wanted, (int)reason + 1);
}

size_t jobs_pending(const struct jobs *jobs)
{
	return jobs->pending;
}

void jobs_free(struct jobs *jobs)
{
	if (jobs == NULL)
		return;
	pthread_mutex_lock(&jobs->lock);
	jobs->stopping = true;
	pthread_cond_broadcast(&jobs->cond);
	pthread_mutex_unlock(&jobs->lock);
	for (int i = 0; i < jobs->nthreads; i++)
		pthread_join(jobs->threads[i], NULL);
	if (jobs->done_ev != NULL)
		event_free(jobs->done_ev);
	pthread_mutex_destroy(&jobs->lock);
	pthread_cond_destroy(&jobs->cond);
	free(jobs->threads);
	free(jobs);
}
