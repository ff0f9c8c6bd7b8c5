/*
 * sqlite_query.c: the SQLite store's query (ABI 1.1): a route script's own statement
 * (sesame.db.query and sesame.db.exec) on the connections of sqlite.c (sqlite_private.h).
 *
 * The statement is prepared on each call (it is the script's text, not one of the plugin's)
 * and must be exactly one statement. The parameters are bound by type, never pasted into the
 * text; the columns are read by their storage class, one row at a time, handed to the row
 * callback. It runs in autocommit: one that leaves a transaction open is rolled back and
 * refused, so that the connection goes back to the pool as it came.
 *
 * While it is prepared and run, and only then, the connection carries two guards that
 * sesame's own statements never see. A progress handler stops it once it has run longer than
 * storage.sqlite.query_timeout, so that no statement holds a job thread (and perhaps the
 * write lock) for ever. An authorizer refuses what would change the pooled connection for
 * sesame's own statements, or reach files outside the database: PRAGMA (but the few that
 * only describe a table), ATTACH and DETACH, VACUUM (SQLite runs it, INTO a file or not, as
 * an ATTACH), temporary tables and indexes (which would stay with the connection, and could
 * shadow sesame's tables), triggers and views of any kind (they would run inside sesame's own
 * statements, where no guard is on: operators create theirs with the sqlite3 tool), and the
 * functions fts3_tokenizer and load_extension (pointers and libraries). The connections also
 * allow no attached database at all, and are defensive (sqlite.c).
 */
#include "sqlite_private.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* The progress handler's period: SQLite virtual machine instructions between two looks at
 * the clock (some microseconds). */
#define PROGRESS_STEPS 1000

/* What a route script's statement runs under: its deadline, and what was refused. */
struct guard {
	long long deadline_ms, timeout_ms; /* CLOCK_MONOTONIC */
	bool late;			   /* the progress handler stopped it */
	char refused[64];		   /* the kind of statement the authorizer refused */
};

/* What a route script's statement works with. */
struct query_run {
	int (*row)(void *ctx, size_t ncols, const char *const *names,
		   const struct sesame_value *values);
	void *ctx;
	bool stopped; /* the row callback said so */
};

static bool blank(const char *s)
{
	return s == NULL || s[strspn(s, " \t\r\n")] == '\0';
}

/* Prepares sql, exactly one statement; 0, or -1 with the reason in err (SQLite's or ours). */
static int prepare_one(sqlite3 *db, const char *sql, size_t nparams, sqlite3_stmt **out, char *err,
		       size_t errlen)
{
	const char *tail = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, out, &tail);
	if (rc != SQLITE_OK)
		snprintf(err, errlen, "SQLite: %s", sqlite3_errmsg(db));
	else if (*out == NULL)
		snprintf(err, errlen, "SQLite: no statement to run");
	else if (!blank(tail))
		snprintf(err, errlen, "SQLite: one statement at a time: the text goes on after it");
	else if (sqlite3_column_count(*out) > SESAME_QUERY_COLUMNS_MAX)
		snprintf(err, errlen, "SQLite: a row of at most %d columns",
			 SESAME_QUERY_COLUMNS_MAX);
	else if ((size_t)sqlite3_bind_parameter_count(*out) != nparams)
		snprintf(err, errlen, "SQLite: the statement has %d %s, %zu %s given",
			 sqlite3_bind_parameter_count(*out),
			 (sqlite3_bind_parameter_count(*out) == 1 ? "placeholder" : "placeholders"),
			 nparams, (nparams == 1 ? "value" : "values"));
	else
		return 0;
	return -1;
}

static void bind_params(sqlite3_stmt *st, const struct sesame_value *params, size_t nparams)
{
	for (size_t i = 0; i < nparams; i++) {
		int at = (int)i + 1;
		const struct sesame_value *v = &params[i];
		if (v->type == SESAME_VALUE_INTEGER)
			sqlite3_bind_int64(st, at, v->integer);
		else if (v->type == SESAME_VALUE_REAL)
			sqlite3_bind_double(st, at, v->real);
		else if (v->type == SESAME_VALUE_TEXT)
			sqlite3_bind_text64(st, at, v->text, v->len, SQLITE_STATIC, SQLITE_UTF8);
		else
			sqlite3_bind_null(st, at);
	}
}

/* The current row's columns as values (their texts SQLite's, valid until the next step). */
static int pass_row(sqlite3_stmt *st, struct query_run *q)
{
	const char *names[SESAME_QUERY_COLUMNS_MAX];
	struct sesame_value values[SESAME_QUERY_COLUMNS_MAX];
	int n = sqlite3_column_count(st);
	for (int i = 0; i < n; i++) {
		struct sesame_value *v = &values[i];
		names[i] = sqlite3_column_name(st, i);
		*v = (struct sesame_value){.type = SESAME_VALUE_NULL};
		switch (sqlite3_column_type(st, i)) {
		case SQLITE_INTEGER:
			v->type = SESAME_VALUE_INTEGER;
			v->integer = sqlite3_column_int64(st, i);
			break;
		case SQLITE_FLOAT:
			v->type = SESAME_VALUE_REAL;
			v->real = sqlite3_column_double(st, i);
			break;
		case SQLITE_TEXT:
		case SQLITE_BLOB:
			v->type = SESAME_VALUE_TEXT;
			v->text = sqlite3_column_blob(st, i);
			v->len = (size_t)sqlite3_column_bytes(st, i);
			v->text = v->text != NULL ? v->text : "";
			break;
		default:
			break;
		}
	}
	q->stopped = q->row(q->ctx, (size_t)n, names, values) != 0;
	return q->stopped ? -1 : 0;
}

/* Steps st to its end, handing each row over; SQLITE_DONE, or the failing code (SQLITE_DONE
 * too when the row callback stopped it: q->stopped says so). */
static int run_query(sqlite3_stmt *st, struct query_run *q)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (pass_row(st, q) != 0)
			return SQLITE_DONE;
	}
	return rc;
}

/* ---- the guards ---- */

static long long monotonic_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The progress handler: non-zero stops the statement (SQLITE_INTERRUPT). */
static int past_deadline(void *ctx)
{
	struct guard *g = ctx;
	g->late = monotonic_ms() >= g->deadline_ms;
	return g->late;
}

/* The pragmas that only describe the schema, and change nothing. */
static bool describing(const char *pragma)
{
	static const char *const names[] = {"table_info",      "table_xinfo", "table_list",
					    "index_list",      "index_info",  "index_xinfo",
					    "foreign_key_list"};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (sqlite3_stricmp(pragma, names[i]) == 0)
			return true;
	}
	return false;
}

/* The functions that reach outside the database: fts3_tokenizer hands out and takes
 * function pointers (a bound blob registers one, whatever the connection's setting), and
 * load_extension loads a library. */
static bool reaching_out(const char *function)
{
	return function != NULL && (sqlite3_stricmp(function, "fts3_tokenizer") == 0 ||
				    sqlite3_stricmp(function, "load_extension") == 0);
}

/* A trigger or view, temporary or not: it would run inside sesame's own statements. */
static bool runs_later(int action)
{
	switch (action) {
	case SQLITE_CREATE_TEMP_TRIGGER:
	case SQLITE_CREATE_TEMP_VIEW:
	case SQLITE_CREATE_TRIGGER:
	case SQLITE_CREATE_VIEW:
		return true;
	default:
		return false;
	}
}

static bool creates(int action)
{
	switch (action) {
	case SQLITE_CREATE_INDEX:
	case SQLITE_CREATE_TABLE:
	case SQLITE_CREATE_TEMP_INDEX:
	case SQLITE_CREATE_TEMP_TABLE:
	case SQLITE_CREATE_VTABLE:
		return true;
	default:
		return false;
	}
}

/* The authorizer: SQLITE_DENY, with the kind refused in the guard, for what a route script's
 * statement may not do. */
static int authorize(void *ctx, int action, const char *a1, const char *a2, const char *db,
		     const char *trigger)
{
	struct guard *g = ctx;
	(void)trigger;
	if (action == SQLITE_ATTACH || action == SQLITE_DETACH)
		snprintf(g->refused, sizeof(g->refused), "ATTACH, DETACH or VACUUM");
	else if (action == SQLITE_PRAGMA && !describing(a1))
		snprintf(g->refused, sizeof(g->refused), "PRAGMA %.40s", a1);
	else if (action == SQLITE_FUNCTION && reaching_out(a2))
		snprintf(g->refused, sizeof(g->refused), "the function %.40s", a2);
	else if (runs_later(action))
		snprintf(g->refused, sizeof(g->refused), "a trigger or view");
	else if (creates(action) && db != NULL && strcmp(db, "temp") == 0)
		snprintf(g->refused, sizeof(g->refused), "a temporary table or index");
	else
		return SQLITE_OK;
	return SQLITE_DENY;
}

static void guard_on(sqlite3 *db, struct guard *g, long long timeout_ms)
{
	*g = (struct guard){.deadline_ms = monotonic_ms() + timeout_ms, .timeout_ms = timeout_ms};
	sqlite3_progress_handler(db, PROGRESS_STEPS, past_deadline, g);
	sqlite3_set_authorizer(db, authorize, g);
}

static void guard_off(sqlite3 *db)
{
	sqlite3_set_authorizer(db, NULL, NULL);
	sqlite3_progress_handler(db, 0, NULL, NULL);
}

/* Whether a guard stopped the statement; if so, why, into err (over SQLite's words). */
static bool guard_stopped(const struct guard *g, char *err, size_t errlen)
{
	if (g->refused[0] != '\0')
		snprintf(err, errlen, "SQLite: a route script's statement may not use %s",
			 g->refused);
	else if (g->late)
		snprintf(err, errlen,
			 "SQLite: the statement took longer than %lld ms "
			 "(storage.sqlite.query_timeout) and was stopped",
			 g->timeout_ms);
	else
		return false;
	return true;
}

/* ---- running it ---- */

/* Why a statement that SQLite ran without error is refused anyway, into err; FAILED. */
static enum sesame_storage_result refused(const struct query_run *q, char *err, size_t errlen)
{
	if (q->stopped)
		snprintf(err, errlen, "SQLite: the statement was stopped at a row");
	else
		snprintf(err, errlen,
			 "SQLite: a statement of a route script cannot leave a "
			 "transaction open (BEGIN): each one commits on its own");
	return SESAME_STORAGE_FAILED;
}

/* Prepares and runs the statement on db, under the guard g. */
static enum sesame_storage_result run(sqlite3 *db, const char *sql,
				      const struct sesame_value *params, size_t nparams,
				      struct query_run *q, const struct guard *g,
				      long long *affected, long long *insert_id, char *err,
				      size_t errlen)
{
	sqlite3_stmt *st = NULL;
	enum sesame_storage_result r = SESAME_STORAGE_FAILED;
	if (prepare_one(db, sql, nparams, &st, err, errlen) != 0)
		goto done;
	bind_params(st, params, nparams);
	sqlite3_int64 rowid = sqlite3_last_insert_rowid(db);
	sqlite3_int64 changes = sqlite3_total_changes64(db);
	int rc = run_query(st, q);
	bool in_txn = !sqlite3_get_autocommit(db);
	if (rc != SQLITE_DONE)
		r = sqlite_failed(db, rc, err, errlen);
	else if (q->stopped || in_txn)
		r = refused(q, err, errlen);
	else
		r = SESAME_STORAGE_OK;
	if (in_txn) {
		guard_off(db); /* the rollback must run, whatever the clock says */
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	}
	if (r == SESAME_STORAGE_OK) {
		*affected = (long long)(sqlite3_total_changes64(db) - changes);
		if (sqlite3_last_insert_rowid(db) != rowid)
			*insert_id = (long long)sqlite3_last_insert_rowid(db);
	}
done:
	sqlite3_finalize(st);
	if (r != SESAME_STORAGE_OK && guard_stopped(g, err, errlen))
		r = SESAME_STORAGE_FAILED;
	return r;
}

enum sesame_storage_result
sqlite_query(void *state, const char *sql, const struct sesame_value *params, size_t nparams,
	     int (*row)(void *ctx, size_t ncols, const char *const *names,
			const struct sesame_value *values),
	     void *ctx, long long *affected, long long *insert_id, char *err, size_t errlen)
{
	struct store *s = state;
	struct query_run q = {row, ctx, false};
	struct guard g;
	*affected = *insert_id = 0;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	if (strlen(sql) > SESAME_QUERY_SQL_MAX || nparams > SESAME_QUERY_PARAMS_MAX) {
		snprintf(err, errlen, "SQLite: a statement is at most %d bytes with %d values",
			 SESAME_QUERY_SQL_MAX, SESAME_QUERY_PARAMS_MAX);
		return SESAME_STORAGE_FAILED;
	}
	struct conn *c = sqlite_acquire(s->pool);
	guard_on(c->db, &g, s->query_timeout);
	enum sesame_storage_result r =
	    run(c->db, sql, params, nparams, &q, &g, affected, insert_id, err, errlen);
	guard_off(c->db);
	sqlite_release(s->pool, c);
	return r;
}
