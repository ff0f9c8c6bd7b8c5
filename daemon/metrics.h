/*
 * metrics.h: the node's counters, gauges and histograms in memory shared by the master and
 * every worker, and their Prometheus text exposition (GET /metrics).
 */
#ifndef SESAME_METRICS_H
#define SESAME_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The route label of requests no route matched, and of the built-in answers. */
#define METRICS_ROUTE_UNMATCHED 0
#define METRICS_ROUTE_HEALTHZ	1
#define METRICS_ROUTE_READYZ	2
#define METRICS_ROUTE_METRICS	3

enum metrics_hash_op { METRICS_HASH, METRICS_VERIFY };
enum metrics_drop { METRICS_DROP_TIMEOUT, METRICS_DROP_CLIENT_GONE };
enum metrics_restart { METRICS_RESTART_CRASH, METRICS_RESTART_EXIT, METRICS_RESTART_HANG };
enum metrics_reload { METRICS_RELOAD_OK, METRICS_RELOAD_FAILED, METRICS_RELOAD_INVALID };
enum metrics_revocation { METRICS_REVOKE, METRICS_REVOKE_ALL, METRICS_REVOKE_REUSE };

/*
 * One per storage ABI call that sesamed's workers make (struct sesame_storage), counted where
 * it is made. The calls only sesamectl makes (user_list, user_set_disabled) run in its own
 * process, outside the segment, and have none; user_delete is both (sesame.users.delete).
 */
enum metrics_storage_op {
	METRICS_USER_CREATE,
	METRICS_USER_FIND,
	METRICS_USER_SET_PASSWORD,
	METRICS_FAMILY_CREATE,
	METRICS_FAMILY_ROTATE,
	METRICS_TOKEN_REVOKE,
	METRICS_REVOKED_SINCE,
	METRICS_SUBJECT_REVOKE,
	METRICS_TOKEN_PURGE,
	METRICS_FAILURE_CHECK,
	METRICS_FAILURE_RECORD,
	METRICS_FAILURE_RESET,
	METRICS_PING,
	METRICS_USER_SET_VERIFIED,
	METRICS_USER_SET_EMAIL,
	METRICS_USER_DELETE,
	METRICS_OTP_CREATE,
	METRICS_OTP_SPEND,
	METRICS_OTP_REVOKE,
	METRICS_EVENT_ADD,
	METRICS_EVENT_LIST,
	METRICS_EVENT_PURGE,
	METRICS_QUERY,
	METRICS_OTP_FIND,
	METRICS_STORAGE_OPS
};

/*
 * In the master, before any fork: maps the segment, with one set of gauges per worker record
 * (nrecords, the master's bound on workers alive at once). It lives as long as the master,
 * across reloads. -1 when it cannot be mapped. Without it every function below does nothing.
 */
int metrics_shared_init(size_t nrecords);

/* ---- the master ---- */

/*
 * The current generation, its configured workers and how many of them serve; and whether
 * the node's worker set is complete, which the master judges over every generation.
 */
void metrics_workers(unsigned generation, int configured, int serving, bool complete);
/* A worker of the current generation died and is replaced. */
void metrics_restart(enum metrics_restart reason);
/* A reload ended: its generation serves, was given up, or never started (invalid). */
void metrics_reload(enum metrics_reload result);
/* Record rec's worker is gone (reaped): its gauges return to zero. */
void metrics_worker_gone(size_t rec);

/* ---- a worker ---- */

/* In a newly forked worker: its gauges are record rec's. */
void metrics_worker_bind(size_t rec);

/* Whether the master last found the worker set complete (GET /readyz). */
bool metrics_workers_complete(void);

/*
 * The route label's index for a registered route pattern: found, or added to the segment's
 * fixed set of names (every worker of every generation agrees on it). Past that set, the
 * index of route="(other)". At worker start, never per request.
 */
int metrics_route(const char *pattern);

/* One answered request: route index, method ("GET"...), status, and its duration (ns). */
void metrics_request(int route, const char *method, int status, uint64_t ns);
/* One request libevent answered by itself (it could not be parsed): no duration. */
void metrics_request_unparsed(const char *method, int status);

void metrics_hash(enum metrics_hash_op op, uint64_t ns); /* on a job thread */
void metrics_jobs_queued(int delta);			 /* on the worker's loop */
void metrics_jobs_shed(void);
void metrics_jobs_dropped(enum metrics_drop reason);
/* A token signed (lua_jwt_sign.c): on the worker's loop, or on a job thread; from any thread. */
enum metrics_sign { METRICS_SIGN_LOOP, METRICS_SIGN_JOB };
void metrics_token_signed(enum metrics_sign where);
/* One storage call's result (an enum sesame_storage_result); from any thread. */
void metrics_storage(enum metrics_storage_op op, int result);
/* Why a storage call was run again (sesame_storage_retries_total's reason). */
enum metrics_retry { METRICS_RETRY_CONFLICT, METRICS_RETRY_CONNECTION };
/* A worker's MariaDB pool moved its new connections to another node; from any thread. */
void metrics_storage_failover(void);
/* A storage call run again, from any thread. */
void metrics_storage_retry(enum metrics_retry reason);
/* The worker's MariaDB pool: connections lent out, and open ones waiting to be. */
void metrics_pool(int busy, int idle);
/* The worker's set of revoked ids holds n. */
void metrics_revoked_ids(size_t n);
/* A fetch of the revoked ids from storage; an id that did not fit in the node's set. */
void metrics_revocation_fetch(void);
void metrics_revocation_overflow(void);
void metrics_revocation(enum metrics_revocation op);
/* A request refused by the rate-limit rule of that name. */
void metrics_rate_limited(const char *rule);
/* An auth event of that name emitted (events.c). */
void metrics_event(const char *name);

/*
 * A route script's own count of a declared counter (sesame.metrics.count): name "logins"
 * with label value outcome. -1 when name or value is not declared.
 */
int metrics_count(const char *name, const char *value);
/* The declared values of name, as "a, b, c" for a message; NULL when name is not declared. */
const char *metrics_count_values(const char *name);

/* The exposition: every metric, summed over the whole segment. malloc'd; NULL if out of
 * memory. */
char *metrics_render(size_t *len);

#endif
