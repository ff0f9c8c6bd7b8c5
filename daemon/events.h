/*
 * events.h: auth events (registered, logged_in, refresh_reused, ...): the audit log's JSON
 * lines, the rows in storage (events.store), their count in the metrics, and their purge.
 */
#ifndef SESAME_EVENTS_H
#define SESAME_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "plugin.h"

struct config;
struct jobs;

/* The longest event name, and an audit line's most bytes (the stored details are less). */
#define EVENTS_NAME_MAX 32
#define EVENTS_LINE_MAX 4000

/*
 * In a worker, or sesamectl, as root before privileges drop: opens events.audit_log of cfg,
 * which the events emitted until events_close follow. -1 when it cannot be opened (logged).
 */
int events_open(const struct config *cfg);
/*
 * In a worker: its job threads write the rows, without anyone waiting for them; without it
 * (sesamectl) a row is written on the caller's thread.
 */
void events_start(struct jobs *jobs);
void events_close(void);

/* Whether name is an event's: [a-z_], 1 to EVENTS_NAME_MAX bytes. */
bool events_name_ok(const char *name);

/* A new event {event = name, at = now (Unix seconds, a float)}; NULL when out of memory. */
json_t *events_new(const char *name);

/*
 * Emits ev, an object events_new made and its emitter filled in (user, request_id,
 * remote_addr, its details: strings, numbers and booleans, never a secret): one audit line,
 * a row when events.store (handed to a job thread in a worker: when its queue is full the row
 * is dropped, and said in the log), and one count in sesame_events_total. On the loop (or
 * sesamectl's only thread).
 */
void events_emit(const json_t *ev);

/*
 * Deletes the stored events older than events.retention, with events.store or without it (the
 * rows stored while it was on); on the thread that purges expired token state (revocation.c),
 * which is not the loop.
 */
void events_purge(const struct config *cfg, const struct storage *st);

#endif
