/*
 * events.c: auth events, the C side of sesame.emit.
 *
 * An event is one JSON object: {event, at, user, request_id, remote_addr, and its details}.
 * Emitting it writes the object as one line to the audit log (events.audit_log, a log sink
 * as the access log is: one write(2) per line, so that the lines of several workers never
 * interleave), counts it in sesame_events_total, and with events.store hands a row to a job
 * thread that nobody waits for: the answer of the request that emitted it is never delayed,
 * and when the job queue is full the row is dropped (and said in the log) rather than the
 * request refused. The row keeps the name and the user's id in columns and the rest of the
 * object as its details (a user that is not an id, a Flask sub, among them). Stored events
 * are purged after events.retention whether events.store is on or not. The Lua side
 * (lua_events.c) runs the scripts' sesame.on handlers.
 */
#include "autoconfig.h"

#include "events.h"

#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config.h"
#include "jobs.h"
#include "log.h"
#include "metrics.h"
#include "plural.h"

/* "at" as milliseconds show it, not as a double's 17 digits would. */
#define LINE_FLAGS                                                                                 \
	(JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(15))

static struct log_sink audit = LOG_SINK_NONE;
static const struct config *events_cfg;
static struct jobs *events_jobs;
static unsigned long dropped;
static uint64_t dropped_warned_ns;

/* A row for storage, written on a job thread. */
struct row_job {
	struct job job;
	struct storage st;
	long long user_id;
	char name[EVENTS_NAME_MAX + 1];
	char *data;
	enum sesame_storage_result rc;
	char err[LOG_ERR_MAX];
};

int events_open(const struct config *cfg)
{
	events_cfg = cfg;
	return log_sink_open(&audit, cfg->events.audit_log, "audit log");
}

void events_start(struct jobs *jobs)
{
	events_jobs = jobs;
}

void events_close(void)
{
	log_sink_close(&audit);
	events_jobs = NULL;
	events_cfg = NULL;
}

bool events_name_ok(const char *name)
{
	size_t n = strspn(name, "abcdefghijklmnopqrstuvwxyz_");
	return n > 0 && n <= EVENTS_NAME_MAX && name[n] == '\0';
}

json_t *events_new(const char *name)
{
	return json_pack("{s:s, s:f}", "event", name, "at", (double)clock_wall_ms() / 1000.0);
}

/* The user of ev as the row's user_id: its id, or 0 when it is none or not a number. */
static long long user_id_of(const json_t *ev)
{
	const json_t *u = json_object_get(ev, "user");
	if (json_is_integer(u))
		return json_integer_value(u) > 0 ? json_integer_value(u) : 0;
	const char *s = json_string_value(u);
	char *end = NULL;
	long long id = s != NULL ? strtoll(s, &end, 10) : 0;
	return s != NULL && *s != '\0' && *end == '\0' && id > 0 ? id : 0;
}

static void row_run(struct job *job)
{
	struct row_job *rj = (struct row_job *)job;
	struct sesame_event e = {.name = rj->name, .user_id = rj->user_id, .data = rj->data};
	rj->err[0] = '\0';
	rj->rc = rj->st.fn->event_add(rj->st.state, &e, rj->err, sizeof(rj->err));
}

static void row_free(struct row_job *rj)
{
	free(rj->data);
	free(rj);
}

static void row_done(struct job *job)
{
	struct row_job *rj = (struct row_job *)job;
	if (rj->rc != SESAME_STORAGE_OK)
		log_warn("events: cannot store a %s event: %s", rj->name,
			 rj->err[0] != '\0' ? rj->err : "storage failed");
	row_free(rj);
}

/* The row of ev: its details are everything but the columns' (event, at, user as an id). */
static struct row_job *row_of(const json_t *ev, const struct storage *st)
{
	struct row_job *rj = calloc(1, sizeof(*rj));
	json_t *details = json_copy((json_t *)ev);
	if (rj == NULL || details == NULL)
		goto fail;
	json_object_del(details, "event");
	json_object_del(details, "at");
	rj->user_id = user_id_of(ev);
	/* A user that is no id (a Flask sub) stays in the details: the column holds ids. */
	if (rj->user_id != 0 || !json_is_string(json_object_get(ev, "user")))
		json_object_del(details, "user");
	rj->data = json_dumps(details, LINE_FLAGS);
	if (rj->data == NULL)
		goto fail;
	json_decref(details);
	rj->st = *st;
	snprintf(rj->name, sizeof(rj->name), "%s", json_string_value(json_object_get(ev, "event")));
	rj->job.run = row_run;
	rj->job.done = row_done;
	return rj;
fail:
	json_decref(details);
	free(rj);
	return NULL;
}

/* A full job queue drops the row, not the request: said at most every 10 s. */
static void drop_row(struct row_job *rj)
{
	uint64_t now = clock_mono_ns();
	dropped++;
	if (dropped_warned_ns == 0 || now - dropped_warned_ns > 10000000000u) {
		log_warn("events: the job queue is full (server.queue): %lu %s not stored so "
			 "far (said at most every 10 s)",
			 dropped, plural((long long)dropped, "event", "events"));
		dropped_warned_ns = now;
	}
	row_free(rj);
}

static void store(const json_t *ev)
{
	struct storage st;
	if (!plugins_storage(events_cfg->plugins, &st) || st.fn->event_add == NULL)
		return;
	struct row_job *rj = row_of(ev, &st);
	if (rj == NULL) {
		log_warn("events: out of memory: an event is not stored");
		return;
	}
	if (events_jobs == NULL) {
		row_run(&rj->job);
		row_done(&rj->job);
	} else if (jobs_submit(events_jobs, &rj->job) != 0) {
		drop_row(rj);
	}
}

void events_emit(const json_t *ev)
{
	const char *name = json_string_value(json_object_get(ev, "event"));
	metrics_event(name);
	char *line = json_dumps(ev, LINE_FLAGS);
	if (line != NULL && audit.fd >= 0) {
		size_t n = strlen(line);
		line[n] = '\n'; /* over the NUL: write(2) takes the length */
		log_sink_write(&audit, line, n + 1);
	}
	free(line);
	if (events_cfg != NULL && events_cfg->events.store)
		store(ev);
}

void events_purge(const struct config *cfg, const struct storage *st)
{
	/* Without events.store too: the rows stored before it was turned off expire as well. */
	if (st->fn->event_purge == NULL)
		return;
	char err[LOG_ERR_MAX] = "";
	long long before = clock_wall_ms() - cfg->events.retention * 1000;
	if (st->fn->event_purge(st->state, before, err, sizeof(err)) != SESAME_STORAGE_OK)
		log_warn("events: cannot delete the events older than events.retention: %s", err);
}
