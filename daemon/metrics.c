/*
 * metrics.c: the node's metrics, in one anonymous shared mapping that the master makes before
 * it forks the first worker and keeps for its whole life, so that counters survive reloads and
 * workers that die. Any worker answers GET /metrics from the whole segment: the node's totals.
 *
 * Counters and histograms are shared cells that every process adds to with relaxed atomic adds:
 * no lock, and a handful of adds per request. Slabs per worker, summed at scrape time, would
 * spare a contended cache line now and then, but a worker slot is shared by two generations
 * during a reload and a slab must outlive the worker that wrote it; with a few workers per node
 * the shared cells cost the same in practice, and a scrape reads one set instead of hundreds.
 * What belongs to one worker process (its job queue, its MariaDB pool, its revoked-id set) is a
 * gauge in that worker's record, which the master zeroes when it reaps the worker: a killed
 * worker leaves no queued jobs behind.
 *
 * Cardinality is fixed. Route labels are the registered route patterns (plus the built-ins and
 * "(unmatched)"), in a fixed table of names that workers fill as they load their scripts, with
 * "(other)" past its end; rate-limit rules likewise. Requests by (route, method, status) are
 * cells of a fixed open-addressing table whose keys are claimed with a compare-and-swap.
 */
#include "autoconfig.h"

#include "metrics.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "clock.h"

#define ROUTES	     128  /* route labels, built-ins and "(other)" included */
#define RULES	     32	  /* rate-limit rule labels, "(other)" included */
#define EVENT_NAMES  64	  /* auth event labels, "(other)" included */
#define NAME_MAX_LEN 128  /* a label value in the name tables, NUL included */
#define CELLS	     4096 /* (route, method, status) counters; a power of two */
#define BUCKETS	     14	  /* histogram bounds; the +Inf bucket comes after them */
#define SPINS	     200  /* yields spent waiting for a name being written */

/* NAME_WRITING and above: being written, by the process NAME_WRITING below it. */
enum name_state { NAME_FREE, NAME_READY, NAME_WRITING };

struct name_slot {
	_Atomic uint32_t state;
	char name[NAME_MAX_LEN];
};

struct histogram {
	_Atomic uint64_t bucket[BUCKETS + 1]; /* each observation in one, not cumulative */
	_Atomic uint64_t sum_ns;
};

struct cell {
	_Atomic uint32_t key; /* 0: free; else route << 14 | method << 10 | status */
	_Atomic uint64_t count;
};

/* A worker's own gauges: a cache line each, written by that worker alone. */
struct worker_gauges {
	_Atomic int64_t jobs_queued;
	_Atomic int64_t pool_busy, pool_idle;
	_Atomic int64_t revoked_ids;
	char pad[32];
};

#define LOGIN_OUTCOMES	6
#define STORAGE_RESULTS 7

struct segment {
	double start_time;
	_Atomic uint64_t generation, configured, serving;
	_Atomic bool complete; /* every worker slot has a serving worker (GET /readyz) */
	_Atomic uint64_t restarts[3];
	_Atomic uint64_t reloads[3];
	struct name_slot routes[ROUTES];
	struct name_slot rules[RULES];
	struct cell cells[CELLS];
	struct histogram duration[ROUTES];
	struct histogram hash[2];
	_Atomic uint64_t shed, dropped[2];
	_Atomic uint64_t signed_tokens[2];
	_Atomic uint64_t storage[METRICS_STORAGE_OPS][STORAGE_RESULTS];
	_Atomic uint64_t failovers, retries[2];
	_Atomic uint64_t revocations[3];
	_Atomic uint64_t revocation_fetches, revocation_overflow;
	_Atomic uint64_t rate_limited[RULES];
	struct name_slot events[EVENT_NAMES];
	_Atomic uint64_t events_total[EVENT_NAMES];
	_Atomic uint64_t logins[LOGIN_OUTCOMES];
	size_t nrecords;
	struct worker_gauges records[];
};

static struct segment *seg;
static struct worker_gauges *self;

/* Upper bounds of the duration buckets, in ns and as the le label writes them. */
static const uint64_t bound_ns[BUCKETS] = {
    500000,    1000000,	  2500000,   5000000,	 10000000,   25000000,	 50000000,
    100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000};
static const char *const bound_text[BUCKETS] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
						"0.025",  "0.05",  "0.1",    "0.25",  "0.5",
						"1",	  "2.5",   "5",	     "10"};

static const char *const methods[] = {"GET",	"POST",	   "HEAD",  "PUT",
				      "DELETE", "OPTIONS", "PATCH", "OTHER"};
static const char *const restart_reasons[] = {"crash", "exit", "hang"};
static const char *const reload_results[] = {"ok", "failed", "invalid"};
static const char *const drop_reasons[] = {"timeout", "client_gone"};
static const char *const sign_threads[] = {"loop", "job"};
static const char *const revocation_ops[] = {"revoke", "revoke_all", "reuse"};
static const char *const hash_ops[] = {"hash", "verify"};
static const char *const retry_reasons[] = {"conflict", "connection"};
static const char *const login_outcomes[LOGIN_OUTCOMES] = {"success", "invalid",   "locked",
							   "limited", "malformed", "unverified"};
/* Indexed by result + 2: enum sesame_storage_result runs from -2 to 4. */
static const char *const storage_results[STORAGE_RESULTS] = {
    "failed", "unavailable", "ok", "not_found", "conflict", "reused", "revoked"};
static const char *const storage_ops[METRICS_STORAGE_OPS] = {"user_create",
							     "user_find",
							     "user_set_password",
							     "family_create",
							     "family_rotate",
							     "token_revoke",
							     "revoked_since",
							     "subject_revoke",
							     "token_purge",
							     "failure_check",
							     "failure_record",
							     "failure_reset",
							     "ping",
							     "user_set_verified",
							     "user_set_email",
							     "user_delete",
							     "otp_create",
							     "otp_spend",
							     "otp_revoke",
							     "event_add",
							     "event_list",
							     "event_purge",
							     "query",
							     "otp_find"};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* ---- the name tables ---- */

/* A slot's writer: its state while it writes is NAME_WRITING plus its pid. */
static uint32_t writing_by_me(void)
{
	return NAME_WRITING + (uint32_t)getpid();
}

/* Takes slot s, whose state is from (free, or its dead writer's), and names it. */
static bool claim(struct name_slot *s, uint32_t from, const char *name)
{
	if (!atomic_compare_exchange_strong_explicit(&s->state, &from, writing_by_me(),
						     memory_order_acquire, memory_order_acquire))
		return false;
	snprintf(s->name, sizeof(s->name), "%s", name);
	atomic_store_explicit(&s->state, NAME_READY, memory_order_release);
	return true;
}

static bool writer_gone(uint32_t state)
{
	return kill((pid_t)(state - NAME_WRITING), 0) != 0 && errno == ESRCH;
}

/*
 * The index of name in v (n slots, the last one "(other)"), adding it when it is new. A slot
 * another process is writing takes it a few instructions: it is waited for, a short while
 * (this runs on a worker's loop). A writer killed in between leaves the slot unready for good:
 * it is taken over. One still alive but slow may be writing this very name: rather than
 * add it twice, this call counts under "(other)".
 */
static int name_index(struct name_slot *v, size_t n, const char *name)
{
	for (size_t i = 0; i + 1 < n; i++) {
		uint32_t state = atomic_load_explicit(&v[i].state, memory_order_acquire);
		if (state == NAME_FREE && claim(&v[i], NAME_FREE, name))
			return (int)i;
		for (int spin = 0; spin < SPINS; spin++) {
			state = atomic_load_explicit(&v[i].state, memory_order_acquire);
			if (state < NAME_WRITING)
				break;
			sched_yield();
		}
		if (state >= NAME_WRITING)
			return writer_gone(state) && claim(&v[i], state, name) ? (int)i
									       : (int)n - 1;
		if (state == NAME_READY && strncmp(v[i].name, name, NAME_MAX_LEN - 1) == 0)
			return (int)i;
	}
	return (int)n - 1;
}

static void name_preset(struct name_slot *v, size_t i, const char *name)
{
	snprintf(v[i].name, sizeof(v[i].name), "%s", name);
	atomic_store_explicit(&v[i].state, NAME_READY, memory_order_relaxed);
}

/* ---- set-up ---- */

int metrics_shared_init(size_t nrecords)
{
	size_t size = sizeof(struct segment) + nrecords * sizeof(struct worker_gauges);
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -1;
	seg = p;
	seg->nrecords = nrecords;
	seg->start_time = clock_wall_s();
	name_preset(seg->routes, METRICS_ROUTE_UNMATCHED, "(unmatched)");
	name_preset(seg->routes, METRICS_ROUTE_HEALTHZ, "/healthz");
	name_preset(seg->routes, METRICS_ROUTE_READYZ, "/readyz");
	name_preset(seg->routes, METRICS_ROUTE_METRICS, "/metrics");
	name_preset(seg->routes, ROUTES - 1, "(other)");
	name_preset(seg->rules, RULES - 1, "(other)");
	name_preset(seg->events, EVENT_NAMES - 1, "(other)");
	return 0;
}

void metrics_workers(unsigned generation, int configured, int serving, bool complete)
{
	if (seg == NULL)
		return;
	atomic_store_explicit(&seg->generation, generation, memory_order_relaxed);
	atomic_store_explicit(&seg->configured, (uint64_t)configured, memory_order_relaxed);
	atomic_store_explicit(&seg->serving, (uint64_t)serving, memory_order_relaxed);
	atomic_store_explicit(&seg->complete, complete, memory_order_relaxed);
}

void metrics_restart(enum metrics_restart reason)
{
	if (seg != NULL)
		add(&seg->restarts[reason], 1);
}

void metrics_reload(enum metrics_reload result)
{
	if (seg != NULL)
		add(&seg->reloads[result], 1);
}

void metrics_worker_gone(size_t rec)
{
	if (seg != NULL && rec < seg->nrecords)
		memset(&seg->records[rec], 0, sizeof(seg->records[rec]));
}

void metrics_worker_bind(size_t rec)
{
	if (seg != NULL && rec < seg->nrecords)
		self = &seg->records[rec];
}

bool metrics_workers_complete(void)
{
	if (seg == NULL)
		return true;
	return atomic_load_explicit(&seg->complete, memory_order_relaxed);
}

/* ---- recording ---- */

int metrics_route(const char *pattern)
{
	return seg != NULL ? name_index(seg->routes, ROUTES, pattern) : METRICS_ROUTE_UNMATCHED;
}

static uint32_t method_index(const char *method)
{
	for (uint32_t i = 0; i + 1 < COUNT(methods); i++) {
		if (strcmp(method, methods[i]) == 0)
			return i;
	}
	return COUNT(methods) - 1;
}

static void count_request(int route, const char *method, int status)
{
	if (route < 0 || route >= ROUTES)
		route = METRICS_ROUTE_UNMATCHED;
	uint32_t code = status >= 100 && status <= 999 ? (uint32_t)status : 0;
	uint32_t key = (uint32_t)route << 14 | method_index(method) << 10 | code;
	uint32_t i = (key * 2654435761u) >> 20;
	for (size_t probe = 0; probe < CELLS; probe++, i = (i + 1) & (CELLS - 1)) {
		struct cell *c = &seg->cells[i];
		uint32_t k = atomic_load_explicit(&c->key, memory_order_relaxed);
		if (k == 0) {
			uint32_t expected = 0;
			if (atomic_compare_exchange_strong_explicit(&c->key, &expected, key,
								    memory_order_relaxed,
								    memory_order_relaxed))
				k = key;
			else
				k = expected;
		}
		if (k == key) {
			add(&c->count, 1);
			return;
		}
	}
}

static void observe(struct histogram *h, uint64_t ns)
{
	size_t b = 0;
	while (b < BUCKETS && ns > bound_ns[b])
		b++;
	add(&h->bucket[b], 1);
	add(&h->sum_ns, ns);
}

void metrics_request(int route, const char *method, int status, uint64_t ns)
{
	if (seg == NULL)
		return;
	count_request(route, method, status);
	observe(&seg->duration[route >= 0 && route < ROUTES ? route : 0], ns);
}

void metrics_request_unparsed(const char *method, int status)
{
	if (seg != NULL)
		count_request(METRICS_ROUTE_UNMATCHED, method, status);
}

void metrics_hash(enum metrics_hash_op op, uint64_t ns)
{
	if (seg != NULL)
		observe(&seg->hash[op], ns);
}

void metrics_jobs_queued(int delta)
{
	if (self != NULL)
		atomic_fetch_add_explicit(&self->jobs_queued, delta, memory_order_relaxed);
}

void metrics_jobs_shed(void)
{
	if (seg != NULL)
		add(&seg->shed, 1);
}

void metrics_jobs_dropped(enum metrics_drop reason)
{
	if (seg != NULL)
		add(&seg->dropped[reason], 1);
}

void metrics_token_signed(enum metrics_sign where)
{
	if (seg != NULL)
		add(&seg->signed_tokens[where], 1);
}

void metrics_storage(enum metrics_storage_op op, int result)
{
	if (seg != NULL && result >= -2 && result <= 4)
		add(&seg->storage[op][result + 2], 1);
}

void metrics_storage_failover(void)
{
	if (seg != NULL)
		add(&seg->failovers, 1);
}

void metrics_storage_retry(enum metrics_retry reason)
{
	if (seg != NULL)
		add(&seg->retries[reason], 1);
}

void metrics_pool(int busy, int idle)
{
	if (self == NULL)
		return;
	atomic_store_explicit(&self->pool_busy, busy, memory_order_relaxed);
	atomic_store_explicit(&self->pool_idle, idle, memory_order_relaxed);
}

void metrics_revoked_ids(size_t n)
{
	if (self != NULL)
		atomic_store_explicit(&self->revoked_ids, (int64_t)n, memory_order_relaxed);
}

void metrics_revocation_fetch(void)
{
	if (seg != NULL)
		add(&seg->revocation_fetches, 1);
}

void metrics_revocation_overflow(void)
{
	if (seg != NULL)
		add(&seg->revocation_overflow, 1);
}

void metrics_revocation(enum metrics_revocation op)
{
	if (seg != NULL)
		add(&seg->revocations[op], 1);
}

void metrics_rate_limited(const char *rule)
{
	if (seg != NULL)
		add(&seg->rate_limited[name_index(seg->rules, RULES, rule)], 1);
}

void metrics_event(const char *name)
{
	if (seg != NULL)
		add(&seg->events_total[name_index(seg->events, EVENT_NAMES, name)], 1);
}

int metrics_count(const char *name, const char *value)
{
	if (strcmp(name, "logins") != 0)
		return -1;
	for (size_t i = 0; i < LOGIN_OUTCOMES; i++) {
		if (strcmp(value, login_outcomes[i]) == 0) {
			if (seg != NULL)
				add(&seg->logins[i], 1);
			return 0;
		}
	}
	return -1;
}

const char *metrics_count_values(const char *name)
{
	return strcmp(name, "logins") == 0
		   ? "success, invalid, locked, limited, malformed, unverified"
		   : NULL;
}

/* ---- the exposition ---- */

static void header(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* A label value, escaped as the text format wants: backslash, double quote, new line. */
static void label_value(FILE *f, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			fprintf(f, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", f);
		else
			fputc(*v, f);
	}
}

static void counters(FILE *f, const char *name, const char *label, const char *const *values,
		     _Atomic uint64_t *c, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s{%s=\"%s\"} %llu\n", name, label, values[i],
			(unsigned long long)get(&c[i]));
}

/* One histogram's series; labels is "" or `name="value",` with its trailing comma. */
static void histogram(FILE *f, const char *name, const char *labels, struct histogram *h)
{
	uint64_t total = 0;
	for (size_t b = 0; b <= BUCKETS; b++) {
		total += get(&h->bucket[b]);
		fprintf(f, "%s_bucket{%sle=\"%s\"} %llu\n", name, labels,
			b < BUCKETS ? bound_text[b] : "+Inf", (unsigned long long)total);
	}
	size_t len = strlen(labels);
	fprintf(f, "%s_sum{%.*s} %.9f\n", name, len > 0 ? (int)len - 1 : 0, labels,
		(double)get(&h->sum_ns) / 1e9);
	fprintf(f, "%s_count{%.*s} %llu\n", name, len > 0 ? (int)len - 1 : 0, labels,
		(unsigned long long)total);
}

static bool name_ready(struct name_slot *s)
{
	return atomic_load_explicit(&s->state, memory_order_acquire) == NAME_READY;
}

static void render_requests(FILE *f)
{
	header(f, "sesame_http_requests_total", "counter",
	       "HTTP requests answered, by route pattern, method and status.");
	for (size_t i = 0; i < CELLS; i++) {
		uint32_t key = atomic_load_explicit(&seg->cells[i].key, memory_order_relaxed);
		uint64_t n = get(&seg->cells[i].count);
		struct name_slot *route = &seg->routes[key >> 14];
		if (key == 0 || n == 0 || !name_ready(route))
			continue;
		fputs("sesame_http_requests_total{route=\"", f);
		label_value(f, route->name);
		fprintf(f, "\",method=\"%s\",status=\"%u\"} %llu\n", methods[(key >> 10) & 7],
			key & 1023, (unsigned long long)n);
	}
	header(f, "sesame_http_request_duration_seconds", "histogram",
	       "Time from a request's arrival to its answer, by route pattern.");
	for (size_t r = 0; r < ROUTES; r++) {
		if (!name_ready(&seg->routes[r]))
			continue;
		char labels[NAME_MAX_LEN * 2 + 16];
		size_t n = (size_t)snprintf(labels, sizeof(labels), "route=\"");
		for (const char *p = seg->routes[r].name; *p != '\0' && n + 4 < sizeof(labels);
		     p++) {
			if (*p == '\\' || *p == '"')
				labels[n++] = '\\';
			labels[n++] = *p == '\n' ? ' ' : *p;
		}
		snprintf(labels + n, sizeof(labels) - n, "\",");
		histogram(f, "sesame_http_request_duration_seconds", labels, &seg->duration[r]);
	}
}

static void render_jobs(FILE *f)
{
	header(f, "sesame_password_hash_duration_seconds", "histogram",
	       "Time a password hash or verification takes on a job thread.");
	for (size_t op = 0; op < COUNT(hash_ops); op++) {
		char labels[32];
		snprintf(labels, sizeof(labels), "op=\"%s\",", hash_ops[op]);
		histogram(f, "sesame_password_hash_duration_seconds", labels, &seg->hash[op]);
	}
	int64_t queued = 0, busy = 0, idle = 0, revoked = 0;
	for (size_t i = 0; i < seg->nrecords; i++) {
		struct worker_gauges *g = &seg->records[i];
		queued += atomic_load_explicit(&g->jobs_queued, memory_order_relaxed);
		busy += atomic_load_explicit(&g->pool_busy, memory_order_relaxed);
		idle += atomic_load_explicit(&g->pool_idle, memory_order_relaxed);
		int64_t r = atomic_load_explicit(&g->revoked_ids, memory_order_relaxed);
		revoked = r > revoked ? r : revoked;
	}
	header(f, "sesame_jobs_queued", "gauge",
	       "Jobs (hashes, storage calls) the workers hold, waiting or running.");
	fprintf(f, "sesame_jobs_queued %lld\n", (long long)(queued > 0 ? queued : 0));
	header(f, "sesame_jobs_shed_total", "counter",
	       "Requests answered 503 server busy because a job queue was full.");
	fprintf(f, "sesame_jobs_shed_total %llu\n", (unsigned long long)get(&seg->shed));
	header(f, "sesame_jobs_dropped_total", "counter",
	       "Jobs given up before they started: their request timed out or its client left.");
	counters(f, "sesame_jobs_dropped_total", "reason", drop_reasons, seg->dropped, 2);
	header(
	    f, "sesame_tokens_signed_total", "counter",
	    "Tokens signed: on a worker's loop, or on a job thread (RS keys, refresh families).");
	counters(f, "sesame_tokens_signed_total", "thread", sign_threads, seg->signed_tokens, 2);
	header(f, "sesame_db_pool_connections", "gauge",
	       "The workers' MariaDB connections: lent to a call, or open and waiting.");
	fprintf(f, "sesame_db_pool_connections{state=\"busy\"} %lld\n", (long long)busy);
	fprintf(f, "sesame_db_pool_connections{state=\"idle\"} %lld\n", (long long)idle);
	header(f, "sesame_revoked_ids", "gauge",
	       "Revoked token ids held in memory: the node's shared set (and a worker's own ids "
	       "while that set is full).");
	fprintf(f, "sesame_revoked_ids %lld\n", (long long)revoked);
	header(f, "sesame_revocation_fetches_total", "counter",
	       "Fetches of the newly revoked token ids from storage by this node.");
	fprintf(f, "sesame_revocation_fetches_total %llu\n",
		(unsigned long long)get(&seg->revocation_fetches));
	header(f, "sesame_revocation_overflow_total", "counter",
	       "Revoked ids that did not fit in the node's set (jwt.revocation_capacity).");
	fprintf(f, "sesame_revocation_overflow_total %llu\n",
		(unsigned long long)get(&seg->revocation_overflow));
}

static void render_storage(FILE *f)
{
	header(f, "sesame_storage_calls_total", "counter",
	       "Calls to the storage plugin, by call and result (failed and unavailable are "
	       "errors).");
	for (size_t op = 0; op < METRICS_STORAGE_OPS; op++) {
		for (size_t r = 0; r < STORAGE_RESULTS; r++) {
			uint64_t n = get(&seg->storage[op][r]);
			if (n > 0 || r < 3)
				fprintf(f,
					"sesame_storage_calls_total{op=\"%s\",result=\"%s\"} "
					"%llu\n",
					storage_ops[op], storage_results[r], (unsigned long long)n);
		}
	}
	header(f, "sesame_storage_failovers_total", "counter",
	       "Times a worker's MariaDB pool moved its new connections to another node.");
	fprintf(f, "sesame_storage_failovers_total %llu\n",
		(unsigned long long)get(&seg->failovers));
	header(f, "sesame_storage_retries_total", "counter",
	       "Storage calls run again: after a lost lock or certification conflict, or a "
	       "connection lost before the call could have changed anything.");
	counters(f, "sesame_storage_retries_total", "reason", retry_reasons, seg->retries, 2);
}

/* A counter per named label value (a name table's ready slots); head opens the label. */
static void named_counters(FILE *f, const char *head, struct name_slot *names,
			   _Atomic uint64_t *counts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (!name_ready(&names[i]))
			continue;
		fputs(head, f);
		label_value(f, names[i].name);
		fprintf(f, "\"} %llu\n", (unsigned long long)get(&counts[i]));
	}
}

static void render_accounts(FILE *f)
{
	header(f, "sesame_logins_total", "counter",
	       "Log-ins by outcome, as the route scripts count them (sesame.metrics.count).");
	counters(f, "sesame_logins_total", "outcome", login_outcomes, seg->logins, LOGIN_OUTCOMES);
	header(f, "sesame_rate_limited_total", "counter",
	       "Requests refused by a rate-limit rule (sesame.limit), by rule.");
	named_counters(f, "sesame_rate_limited_total{rule=\"", seg->rules, seg->rate_limited,
		       RULES);
	header(f, "sesame_events_total", "counter",
	       "Auth events emitted (sesame.emit, and those sesame emits itself), by event.");
	named_counters(f, "sesame_events_total{event=\"", seg->events, seg->events_total,
		       EVENT_NAMES);
	header(f, "sesame_revocations_total", "counter",
	       "Revocations: jwt.revoke, jwt.revoke_all, and refresh families revoked for reuse.");
	counters(f, "sesame_revocations_total", "op", revocation_ops, seg->revocations, 3);
}

static void render_process(FILE *f)
{
	header(f, "sesame_worker_restarts_total", "counter",
	       "Workers replaced after they died: killed by a signal, exited, or hung.");
	counters(f, "sesame_worker_restarts_total", "reason", restart_reasons, seg->restarts, 3);
	header(f, "sesame_reloads_total", "counter",
	       "Reloads: served, given up (their workers never all served), or refused (the "
	       "configuration or its schema).");
	counters(f, "sesame_reloads_total", "result", reload_results, seg->reloads, 3);
	header(f, "sesame_workers", "gauge", "Workers of the current generation that serve.");
	fprintf(f, "sesame_workers{state=\"serving\"} %llu\n",
		(unsigned long long)get(&seg->serving));
	header(f, "sesame_workers_configured", "gauge",
	       "Workers the current generation is configured with.");
	fprintf(f, "sesame_workers_configured %llu\n", (unsigned long long)get(&seg->configured));
	header(f, "sesame_generation", "gauge", "The serving generation: 1, plus one per reload.");
	fprintf(f, "sesame_generation %llu\n", (unsigned long long)get(&seg->generation));
	header(f, "sesame_start_time_seconds", "gauge", "When the master started, in Unix time.");
	fprintf(f, "sesame_start_time_seconds %.3f\n", seg->start_time);
	header(f, "sesame_build_info", "gauge", "Always 1: the version of sesamed.");
	fprintf(f, "sesame_build_info{version=\"%s\"} 1\n", PACKAGE_VERSION);
}

char *metrics_render(size_t *len)
{
	char *text = NULL;
	FILE *f = open_memstream(&text, len);
	if (f == NULL)
		return NULL;
	if (seg != NULL) {
		render_requests(f);
		render_jobs(f);
		render_storage(f);
		render_accounts(f);
		render_process(f);
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
