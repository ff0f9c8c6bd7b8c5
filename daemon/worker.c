/*
 * worker.c: one worker process.
 *
 * Everything a worker owns is created after fork: its event base (with libevent's pthreads
 * locking, so that job threads can wake it), its job threads, its Lua state with the route
 * scripts, and its HTTP server on the slot's sockets. It then tells the master it is serving
 * and runs its loop. SIGTERM starts a graceful stop: the server drains, the background tasks
 * finish, the jobs nobody waits for (the events' rows) are done, and the loop ends once nothing
 * is in flight, or when server.shutdown_timeout runs out. Then the requests still arriving
 * (their bodies not read whole) are answered 503 rather than cut mid-way, and the loop ends
 * once those answers are written, CUT_GRACE_S at most. The drain is logged at its start and
 * then once a second while its counts change. A worker also stops when its master
 * dies. A timer stamps the worker's heartbeat in the scoreboard while the loop turns: the
 * master kills a worker whose heartbeat goes stale (server.hang_timeout).
 */
#include "autoconfig.h"

#include "worker.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "config.h"
#include "dbpool.h"
#include "events.h"
#include "http.h"
#include "jobs.h"
#include "log.h"
#include "listen.h"
#include "lua_api.h"
#include "plugin.h"
#include "privs.h"
#include "ready.h"
#include "revocation.h"
#include "scoreboard.h"

#define HEARTBEAT_MS 250
/* A drain's counts are logged when they change, every DRAIN_LOG_BEATS heartbeats at most. */
#define DRAIN_LOG_BEATS 4
/* How long the 503s of a drain's deadline get to be written: below the master's margin. */
#define CUT_GRACE_S 2

struct worker {
	const struct worker_spec *spec;
	struct event_base *base;
	struct http_server *srv;
	struct luaapi *api;
	struct jobs *jobs;
	struct event *term_ev, *deadline_ev, *beat_ev, *tasks_ev;
	bool timed_out;
	unsigned drain_beats;
	size_t logged_inflight, logged_arriving;
};

/* The drain's counts; first (with its limit) at its start, then only when they change. */
static void log_drain(struct worker *w, bool first)
{
	size_t arriving = http_server_arriving(w->srv), inflight = http_server_inflight(w->srv);
	if (!first && arriving == w->logged_arriving && inflight == w->logged_inflight)
		return;
	w->logged_arriving = arriving;
	w->logged_inflight = inflight;
	if (first)
		log_info("worker %ld: draining: waiting for the requests in flight (%zu) and still "
			 "arriving (%zu), %d s at most",
			 (long)getpid(), inflight, arriving, w->spec->cfg->shutdown_timeout);
	else
		log_info("worker %ld: draining: waiting for the requests in flight (%zu) and still "
			 "arriving (%zu)",
			 (long)getpid(), inflight, arriving);
}

static void on_beat(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	scoreboard_beat(w->spec->slot);
	if (w->deadline_ev != NULL && !w->timed_out && ++w->drain_beats % DRAIN_LOG_BEATS == 0)
		log_drain(w, false);
}

/* Stamps the heartbeat now and then every HEARTBEAT_MS while the loop turns. */
static int start_heartbeat(struct worker *w)
{
	struct timeval every = {.tv_usec = HEARTBEAT_MS * 1000};
	scoreboard_beat(w->spec->slot);
	w->beat_ev = event_new(w->base, -1, EV_PERSIST, on_beat, w);
	return w->beat_ev != NULL ? event_add(w->beat_ev, &every) : -1;
}

/* Nothing left but requests: no background task, and no job (an event's row) to be done. */
static bool idle(const struct worker *w)
{
	return luaapi_tasks(w->api) == 0 && jobs_pending(w->jobs) == 0;
}

/* No request is left: the loop ends once the tasks and the jobs have finished too. */
static void on_tasks(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	if (idle(w))
		event_base_loopbreak(w->base);
}

static void on_drained(void *arg)
{
	struct worker *w = arg;
	struct timeval every = {.tv_usec = 50000};
	if (idle(w)) {
		event_base_loopbreak(w->base);
		return;
	}
	w->tasks_ev = event_new(w->base, -1, EV_PERSIST, on_tasks, w);
	if (w->tasks_ev == NULL || event_add(w->tasks_ev, &every) != 0)
		event_base_loopbreak(w->base);
}

static void on_cut(void *arg)
{
	struct worker *w = arg;
	event_base_loopbreak(w->base);
}

/* server.shutdown_timeout has run out; then, at the second call, so has CUT_GRACE_S. */
static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct timeval grace = {.tv_sec = CUT_GRACE_S};
	if (w->timed_out) {
		event_base_loopbreak(w->base);
		return;
	}
	w->timed_out = true;
	log_warn("worker %ld: shutdown timeout: answering 503 to the requests still arriving "
		 "(%zu); dropping the requests (%zu), background tasks (%zu) and jobs (%zu) still "
		 "in flight",
		 (long)getpid(), http_server_arriving(w->srv), http_server_inflight(w->srv),
		 luaapi_tasks(w->api), jobs_pending(w->jobs));
	if (http_server_cut(w->srv, on_cut, w) == 0 || evtimer_add(w->deadline_ev, &grace) != 0)
		event_base_loopbreak(w->base);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
	struct worker *w = arg;
	struct timeval limit = {.tv_sec = w->spec->cfg->shutdown_timeout};
	if (w->deadline_ev != NULL)
		return;
	w->deadline_ev = evtimer_new(w->base, on_deadline, w);
	if (w->deadline_ev != NULL)
		evtimer_add(w->deadline_ev, &limit);
	log_drain(w, true);
	http_server_drain(w->srv, on_drained, w);
}

/* The master blocked every signal to read them from a signalfd: a worker starts afresh. */
static void reset_signals(void)
{
	sigset_t none;
	sigemptyset(&none);
	for (int sig = 1; sig < NSIG; sig++) {
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN); /* a terminal's ^C reaches the master, which stops the workers */
	signal(SIGHUP, SIG_IGN);
	sigprocmask(SIG_SETMASK, &none, NULL);
}

static void tell_ready(const struct worker_spec *spec)
{
	char c = 'R';
	ssize_t n = write(spec->ready_fd, &c, 1);
	(void)n;
	close(spec->ready_fd);
}

/* libevent's own warnings go to the daemon's log. */
static void libevent_log(int severity, const char *msg)
{
	if (severity >= EVENT_LOG_ERR)
		log_error("libevent: %s", msg);
	else if (severity == EVENT_LOG_WARN)
		log_warn("libevent: %s", msg);
	else
		log_debug("libevent: %s", msg);
}

int worker_run(const struct worker_spec *spec)
{
	const struct config *cfg = spec->cfg;
	struct worker w = {.spec = spec};
	struct jobs *jobs = NULL;
	struct luaapi *api = NULL;
	struct revocation *rv = NULL;
	struct ready *rd = NULL;
	struct config_errors errs = {0};
	int status = 1;
	bool storage_started = false;

	reset_signals();
	spec->slot->pid = getpid();
	log_set_level(cfg->log_level);
	/* The logs are opened as root; everything after, route scripts included, as server.user. */
	if (accesslog_open(cfg->access_log) != 0 || events_open(cfg) != 0)
		goto done;
	char why[LOG_ERR_MAX];
	if (privs_drop(&cfg->privs, why, sizeof(why)) != 0) {
		log_error("worker %ld: %s", (long)getpid(), why);
		status = WORKER_EXIT_PRIVS;
		goto done;
	}
	/* After the change of user, which clears it. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != spec->master) {
		log_error("worker %ld: the master is gone before the worker started",
			  (long)getpid());
		goto done;
	}
	event_set_log_callback(libevent_log);
	if (evthread_use_pthreads() != 0 || (w.base = event_base_new()) == NULL) {
		log_error("cannot create the event base");
		goto done;
	}
	struct jobs_threads threads = {.io = cfg->threads,
				       .cpu = config_hash_threads(cfg),
				       .cpu_nice = cfg->hash_nice,
				       .io_queue = (size_t)cfg->queue,
				       .cpu_queue = (size_t)config_hash_queue(cfg)};
	if ((jobs = jobs_new(w.base, &threads)) == NULL)
		goto done;
	w.jobs = jobs;
	events_start(jobs);
	if (dbpool_start(plugins_pool(cfg->plugins)) != 0 ||
	    plugins_worker_start(cfg->plugins) != 0) {
		log_error("worker %ld: the storage cannot start", (long)getpid());
		goto done;
	}
	storage_started = true;
	if (revocation_start(cfg, &rv) != 0)
		goto done;
	api = luaapi_new(cfg, w.base, jobs, spec->slot, &errs);
	if (api == NULL) {
		for (size_t i = 0; i < errs.n; i++)
			log_error("%s", errs.msg[i]);
		goto done;
	}
	luaapi_set_revocation(api, rv);
	w.api = api;
	if ((rd = ready_new(cfg, jobs)) == NULL)
		goto done;
	w.srv = http_server_new(cfg, w.base, spec->fds, spec->nfds, luaapi_router(api),
				luaapi_dispatch, api);
	w.term_ev = evsignal_new(w.base, SIGTERM, on_term, &w);
	if (w.srv == NULL || w.term_ev == NULL || evsignal_add(w.term_ev, NULL) != 0 ||
	    start_heartbeat(&w) != 0)
		goto done;
	http_server_set_ready(w.srv, ready_answer, rd);
	/* A reload's new sockets take connections from now on, and no sooner (listen.c). */
	if (listen_start(spec->fds, spec->nfds) != 0)
		goto done;
	tell_ready(spec);
	event_base_dispatch(w.base);
	if ((w.timed_out && http_server_inflight(w.srv) > 0) || jobs_pending(jobs) > 0 ||
	    luaapi_tasks(api) > 0) {
		/*
		 * Handlers still wait on jobs (a job thread may be blocked for good): their
		 * requests and threads are abandoned, not freed or joined. A deadline that left
		 * nothing in flight (only requests cut) ends as a drain does, freeing everything.
		 */
		log_warn("worker %ld: leaving %zu jobs unfinished", (long)getpid(),
			 jobs_pending(jobs));
		_exit(0);
	}
	status = 0;
done:
	if (w.term_ev != NULL)
		event_free(w.term_ev);
	if (w.deadline_ev != NULL)
		event_free(w.deadline_ev);
	if (w.beat_ev != NULL)
		event_free(w.beat_ev);
	if (w.tasks_ev != NULL)
		event_free(w.tasks_ev);
	http_server_free(w.srv);
	ready_free(rd);
	luaapi_free(api);
	jobs_free(jobs);
	revocation_stop(rv);
	if (storage_started)
		plugins_worker_stop(cfg->plugins);
	dbpool_stop();
	if (w.base != NULL)
		event_base_free(w.base);
	config_errors_free(&errs);
	events_close();
	accesslog_close();
	return status;
}
