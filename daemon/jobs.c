/*
 * jobs.c: the job threads of one worker.
 *
 * The event loop never blocks: password hashing, storage calls and file reads are packed into
 * a struct job and queued here. A job thread takes it, calls run (which touches neither Lua
 * nor libevent), and appends it to the completion list; the first completion of a batch
 * activates one event on the worker's base, whose callback runs each job's done on the loop.
 * That is where the waiting Lua coroutine is resumed.
 *
 * Two kinds of thread take jobs from two queues. Password hashes keep a core busy for their
 * whole run: they go to the hashing threads, as many as the worker's share of the node's cores,
 * so that the node hashes on every core without more hashes at once than cores. Those threads
 * run at a lower priority (a higher nice value) than the loop, so that a request that needs no
 * hash (a token check) is answered at once even while every core hashes. Storage calls and
 * file reads mostly wait: they go to the other threads, at the loop's priority, and never
 * queue behind a hash.
 *
 * The work is bounded, each queue on its own: past its lane's max_pending jobs a submission is
 * refused and the caller answers "busy" at once, rather than growing a backlog that answers
 * nobody in time. A backlog of hashes thus never refuses a storage call. A
 * job whose request is gone (timed out, client left) is cancelled: a thread that takes it skips
 * its run, so no password is hashed for a client that will never read the answer.
 */
#include "autoconfig.h"

#include "jobs.h"

#include <errno.h>
#include <event2/event.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"

/* One queue and the threads that take from it. */
struct lane {
	struct jobs *jobs;
	struct job *head, *tail; /* waiting for a thread */
	pthread_cond_t cond;
	int nice;	  /* added to its threads' nice value */
	const char *name; /* its threads' name, as top -H and /proc/PID/task/TID/comm show it */
	size_t pending, max_pending; /* submitted and not yet delivered; on the loop */
};

enum { LANE_IO, LANE_CPU, LANES };

struct jobs {
	pthread_mutex_t lock;
	struct lane lanes[LANES];
	struct job *done_head, *done_tail; /* run, waiting for the loop */
	bool stopping;
	struct event *done_ev;
	pthread_t *threads;
	int nthreads;
};

/*
 * Raises the calling thread's nice value by nice (on Linux, a thread's own). A failure (a
 * system call filter that refuses it) leaves the thread at the loop's priority: said once.
 */
static void lower_priority(int nice)
{
	static atomic_flag told = ATOMIC_FLAG_INIT;
	if (nice <= 0)
		return;
	errno = 0;
	int now = getpriority(PRIO_PROCESS, (id_t)gettid());
	if ((now == -1 && errno != 0) ||
	    setpriority(PRIO_PROCESS, (id_t)gettid(), now + nice > 19 ? 19 : now + nice) != 0) {
		if (!atomic_flag_test_and_set(&told))
			log_debug("hashing threads keep the loop's priority: %s", strerror(errno));
	}
}

/* The next job of lane, once there is one; NULL when the pool stops. Under the lock. */
static struct job *take(struct lane *lane)
{
	struct jobs *jobs = lane->jobs;
	while (lane->head == NULL && !jobs->stopping)
		pthread_cond_wait(&lane->cond, &jobs->lock);
	struct job *job = lane->head;
	if (job == NULL)
		return NULL;
	lane->head = job->next;
	if (lane->head == NULL)
		lane->tail = NULL;
	return job;
}

static void *thread_main(void *arg)
{
	struct lane *lane = arg;
	struct jobs *jobs = lane->jobs;
	pthread_setname_np(pthread_self(), lane->name);
	lower_priority(lane->nice);
	pthread_mutex_lock(&jobs->lock);
	struct job *job;
	while ((job = take(lane)) != NULL) {
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
		jobs->lanes[job->cpu ? LANE_CPU : LANE_IO].pending--;
		metrics_jobs_queued(-1);
		job->done(job);
		job = next;
	}
}

/* Starts n threads on lane; false when one cannot start. Signals already blocked. */
static bool start_threads(struct jobs *jobs, struct lane *lane, int n)
{
	for (int i = 0; i < n; i++, jobs->nthreads++) {
		if (pthread_create(&jobs->threads[jobs->nthreads], NULL, thread_main, lane) != 0)
			return false;
	}
	return true;
}

struct jobs *jobs_new(struct event_base *base, const struct jobs_threads *threads)
{
	struct jobs *jobs = calloc(1, sizeof(*jobs));
	if (jobs == NULL)
		return NULL;
	pthread_mutex_init(&jobs->lock, NULL);
	for (int i = 0; i < LANES; i++) {
		jobs->lanes[i].jobs = jobs;
		pthread_cond_init(&jobs->lanes[i].cond, NULL);
	}
	jobs->lanes[LANE_IO].name = "sesamed-jobs";
	jobs->lanes[LANE_CPU].name = "sesamed-hash";
	jobs->lanes[LANE_CPU].nice = threads->cpu_nice;
	jobs->lanes[LANE_IO].max_pending = threads->io_queue;
	jobs->lanes[LANE_CPU].max_pending = threads->cpu_queue;
	jobs->done_ev = event_new(base, -1, 0, on_done, jobs);
	jobs->threads = calloc((size_t)(threads->io + threads->cpu), sizeof(pthread_t));
	if (jobs->done_ev == NULL || jobs->threads == NULL)
		goto fail;

	/* Signals are the loop's business: job threads never take one. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	bool started = start_threads(jobs, &jobs->lanes[LANE_IO], threads->io) &&
		       start_threads(jobs, &jobs->lanes[LANE_CPU], threads->cpu);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!started) {
		log_error("cannot start job threads");
		goto fail;
	}
	return jobs;
fail:
	jobs_free(jobs);
	return NULL;
}

int jobs_cpu_threads(int workers)
{
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	if (cores < 1)
		cores = 1;
	if (workers < 1)
		workers = 1;
	long n = (cores + workers - 1) / workers;
	return n > JOBS_MAX_THREADS ? JOBS_MAX_THREADS : (int)n;
}

int jobs_submit(struct jobs *jobs, struct job *job)
{
	struct lane *lane = &jobs->lanes[job->cpu ? LANE_CPU : LANE_IO];
	if (lane->pending >= lane->max_pending)
		return -1;
	job->next = NULL;
	atomic_init(&job->cancelled, 0);
	lane->pending++;
	metrics_jobs_queued(1);
	pthread_mutex_lock(&jobs->lock);
	if (lane->tail != NULL)
		lane->tail->next = job;
	else
		lane->head = job;
	lane->tail = job;
	pthread_cond_signal(&lane->cond);
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
	return jobs->lanes[LANE_IO].pending + jobs->lanes[LANE_CPU].pending;
}

void jobs_free(struct jobs *jobs)
{
	if (jobs == NULL)
		return;
	pthread_mutex_lock(&jobs->lock);
	jobs->stopping = true;
	for (int i = 0; i < LANES; i++)
		pthread_cond_broadcast(&jobs->lanes[i].cond);
	pthread_mutex_unlock(&jobs->lock);
	for (int i = 0; i < jobs->nthreads; i++)
		pthread_join(jobs->threads[i], NULL);
	if (jobs->done_ev != NULL)
		event_free(jobs->done_ev);
	pthread_mutex_destroy(&jobs->lock);
	for (int i = 0; i < LANES; i++)
		pthread_cond_destroy(&jobs->lanes[i].cond);
	free(jobs->threads);
	free(jobs);
}
