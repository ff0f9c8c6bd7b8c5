/*
 * ready.c: GET /readyz, answered by each worker on its own.
 *
 * /healthz says the worker's loop turns; /readyz says whether the requests that need storage
 * can be served, for a load balancer that takes a node out of rotation while its database is
 * away. The check is a storage ping (the plugin's ping) on a job thread, never on the loop,
 * and at most one per CHECK_EVERY_MS per worker: a request within that time gets the last
 * result; requests that arrive while a ping runs wait for it. A check of another kind
 * (another condition for being ready) goes into checks_fail, next to the storage's: the other
 * one is the worker set, which the master judges and keeps in the metrics segment. While a
 * worker slot has no serving worker of any generation (one died and waits for its respawn),
 * the node is not ready: a connection that the kernel hands to that slot's socket waits until
 * a worker serves it again. A reload keeps the node ready, since the older workers serve until
 * the new ones all do; with sockets from systemd, which every worker shares, only a node with
 * no serving worker at all is not ready.
 */
#include "autoconfig.h"

#include "ready.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "http.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"

#define CHECK_EVERY_MS 1000

struct ping_job {
	struct job job;
	struct ready *rd;
	enum sesame_storage_result result;
	char err[LOG_ERR_MAX];
};

struct ready {
	struct storage st;
	bool has_storage;
	struct jobs *jobs;
	struct ping_job ping;
	bool pinging;
	bool checked, storage_ok;
	uint64_t checked_ms; /* monotonic */
	struct http_request **waiting;
	size_t nwaiting, capwaiting;
};

struct ready *ready_new(const struct config *cfg, struct jobs *jobs)
{
	struct ready *rd = calloc(1, sizeof(*rd));
	if (rd == NULL) {
		log_error("readiness: out of memory");
		return NULL;
	}
	rd->jobs = jobs;
	rd->has_storage = plugins_storage(cfg->plugins, &rd->st);
	rd->ping.rd = rd;
	return rd;
}

void ready_free(struct ready *rd)
{
	if (rd == NULL)
		return;
	free(rd->waiting);
	free(rd);
}

/* The message of the first check that fails, or NULL when the worker is ready. */
static const char *checks_fail(const struct ready *rd)
{
	if (rd->has_storage && !rd->storage_ok)
		return "storage unavailable";
	if (!metrics_workers_complete())
		return "worker set incomplete";
	return NULL;
}

static void reply(const struct ready *rd, struct http_request *r)
{
	const char *why = checks_fail(rd);
	static const char ok[] = "{\"result\":\"success\",\"status\":\"ready\"}";
	if (why == NULL)
		http_reply(r, 200, ok, sizeof(ok) - 1);
	else
		http_reply_error(r, 503, why, NULL);
}

static void ping_run(struct job *job)
{
	struct ping_job *pj = (struct ping_job *)job;
	struct ready *rd = pj->rd;
	pj->err[0] = '\0';
	pj->result = rd->st.fn->ping(rd->st.state, pj->err, sizeof(pj->err));
	metrics_storage(METRICS_PING, pj->result);
}

/* On the loop: files the result, logs a change, answers everyone who waited for it. */
static void ping_done(struct job *job)
{
	struct ping_job *pj = (struct ping_job *)job;
	struct ready *rd = pj->rd;
	bool ok = pj->result == SESAME_STORAGE_OK;
	if (rd->checked && ok != rd->storage_ok) {
		if (ok)
			log_info("readiness: the storage answers again");
		else
			log_warn("readiness: the storage does not answer: %s", pj->err);
	}
	rd->storage_ok = ok;
	rd->checked = true;
	rd->checked_ms = clock_mono_ms();
	rd->pinging = false;
	size_t n = rd->nwaiting;
	rd->nwaiting = 0;
	for (size_t i = 0; i < n; i++)
		reply(rd, rd->waiting[i]);
}

static bool wait_for_ping(struct ready *rd, struct http_request *r)
{
	if (rd->nwaiting == rd->capwaiting) {
		size_t cap = rd->capwaiting ? rd->capwaiting * 2 : 8;
		struct http_request **grown = realloc(rd->waiting, cap * sizeof(*grown));
		if (grown == NULL)
			return false;
		rd->waiting = grown;
		rd->capwaiting = cap;
	}
	rd->waiting[rd->nwaiting++] = r;
	return true;
}

void ready_answer(void *arg, struct http_request *r)
{
	struct ready *rd = arg;
	bool fresh = rd->checked && clock_mono_ms() - rd->checked_ms < CHECK_EVERY_MS;
	if (!rd->has_storage || fresh) {
		reply(rd, r);
		return;
	}
	if (!wait_for_ping(rd, r)) {
		http_reply_error(r, 503, "out of memory", NULL);
		return;
	}
	if (rd->pinging)
		return;
	rd->pinging = true;
	rd->ping.job = (struct job){.run = ping_run, .done = ping_done};
	if (jobs_submit(rd->jobs, &rd->ping.job) == 0)
		return;
	/* The job queue is full (server.queue): the node is too busy to be sent more work. */
	rd->pinging = false;
	size_t n = rd->nwaiting;
	rd->nwaiting = 0;
	for (size_t i = 0; i < n; i++) {
		metrics_jobs_shed();
		http_add_header(rd->waiting[i], "Retry-After", "1");
		http_reply_error(rd->waiting[i], 503, "server busy", NULL);
	}
}
