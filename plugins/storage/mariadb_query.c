/*
 * mariadb_query.c: the MariaDB store's query (ABI 1.1): a route script's own statement
 * (sesame.db.query and sesame.db.exec) on the core's pool.
 *
 * The statement is prepared through the pool, which caches it like the plugin's own; the
 * connections have no multi statements, so the text is exactly one statement or the server
 * refuses it. The parameters are bound by type (NULL, integer, double, bytes), never pasted
 * into the text. The columns are read by type: integers (an unsigned one past the signed
 * range as a double), floating point, DECIMAL as an integer when it has no fraction and a
 * double when it has one, and everything else as bytes, read into a buffer of 256 bytes per
 * column that grows, for the row that needs it, to the value's length. Rows are fetched one at
 * a time, never stored whole on the client: a row callback that stops the statement has read
 * no more than it needed. A statement that leaves a transaction open, or autocommit off, is
 * rolled back, refused and its connection closed. One that changes the session otherwise
 * (USE, SET SESSION or SET NAMES, a user variable set with SET, a temporary table, LOCK
 * TABLES, SET TRANSACTION) succeeds, and its connection is closed rather than pooled: the
 * pool tracks these changes (dbpool.c), and the server flags the answer of the statement that
 * made one. What no flag reveals stays with the connection: a lock taken with GET_LOCK until
 * RELEASE_LOCK, and a user variable assigned inside a SELECT (@v := ..., SELECT ... INTO @v).
 */
#include "mariadb_private.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLUMN_START 256 /* bytes at first for a column read as text */

typedef int (*query_row)(void *ctx, size_t ncols, const char *const *names,
			 const struct sesame_value *values);

/* One column of the result: where it is fetched into. */
struct column {
	enum enum_field_types type;
	bool is_unsigned, decimal;
	long long integer;
	double real;
	char *text;
	unsigned long cap, len;
	my_bool is_null, error;
};

/* What one run of a statement works with. */
struct query_run {
	const char *sql;
	const struct sesame_value *params;
	size_t nparams;
	query_row row;
	void *ctx;
	long long *affected, *insert_id;
	long long delivered; /* rows handed to the row callback, over every try */
	/* the result's columns */
	size_t ncols;
	MYSQL_BIND res[SESAME_QUERY_COLUMNS_MAX];
	struct column cols[SESAME_QUERY_COLUMNS_MAX];
	const char *names[SESAME_QUERY_COLUMNS_MAX];
	struct sesame_value values[SESAME_QUERY_COLUMNS_MAX];
};

static void bind_params(const struct query_run *q, MYSQL_BIND *p, unsigned long *lens)
{
	for (size_t i = 0; i < q->nparams; i++) {
		const struct sesame_value *v = &q->params[i];
		memset(&p[i], 0, sizeof(p[i]));
		p[i].buffer_type = MYSQL_TYPE_NULL;
		if (v->type == SESAME_VALUE_INTEGER) {
			p[i].buffer_type = MYSQL_TYPE_LONGLONG;
			p[i].buffer = (void *)&v->integer;
		} else if (v->type == SESAME_VALUE_REAL) {
			p[i].buffer_type = MYSQL_TYPE_DOUBLE;
			p[i].buffer = (void *)&v->real;
		} else if (v->type == SESAME_VALUE_TEXT) {
			lens[i] = (unsigned long)v->len;
			p[i].buffer_type = MYSQL_TYPE_STRING;
			p[i].buffer = (void *)(v->text != NULL ? v->text : "");
			p[i].buffer_length = lens[i];
			p[i].length = &lens[i];
		}
	}
}

static bool integer_type(enum enum_field_types t)
{
	return t == MYSQL_TYPE_TINY || t == MYSQL_TYPE_SHORT || t == MYSQL_TYPE_LONG ||
	       t == MYSQL_TYPE_INT24 || t == MYSQL_TYPE_LONGLONG || t == MYSQL_TYPE_YEAR;
}

/* Binds column i as its field's type asks; -1 when out of memory. */
static int bind_column(struct query_run *q, size_t i, const MYSQL_FIELD *f)
{
	struct column *c = &q->cols[i];
	MYSQL_BIND *b = &q->res[i];
	memset(b, 0, sizeof(*b));
	c->type = f->type;
	c->is_unsigned = (f->flags & UNSIGNED_FLAG) != 0;
	c->decimal = f->type == MYSQL_TYPE_NEWDECIMAL || f->type == MYSQL_TYPE_DECIMAL;
	b->is_null = &c->is_null;
	b->error = &c->error;
	b->length = &c->len;
	if (integer_type(f->type)) {
		b->buffer_type = MYSQL_TYPE_LONGLONG;
		b->buffer = &c->integer;
		b->is_unsigned = c->is_unsigned;
	} else if (f->type == MYSQL_TYPE_FLOAT || f->type == MYSQL_TYPE_DOUBLE) {
		b->buffer_type = MYSQL_TYPE_DOUBLE;
		b->buffer = &c->real;
	} else {
		if (c->text == NULL && (c->text = malloc(COLUMN_START)) == NULL)
			return -1;
		c->cap = COLUMN_START;
		b->buffer_type = MYSQL_TYPE_STRING;
		b->buffer = c->text;
		b->buffer_length = c->cap - 1;
	}
	free((char *)q->names[i]);
	q->names[i] = strdup(f->name);
	return q->names[i] != NULL ? 0 : -1;
}

/* Reads again, into a buffer grown to its length, each text column the fetch cut short. */
static int fetch_long_columns(MYSQL_STMT *stmt, struct query_run *q, bool *grown)
{
	for (size_t i = 0; i < q->ncols; i++) {
		struct column *c = &q->cols[i];
		MYSQL_BIND *b = &q->res[i];
		if (b->buffer_type != MYSQL_TYPE_STRING || !c->error || c->len < c->cap - 1)
			continue;
		char *bigger = realloc(c->text, (size_t)c->len + 1);
		if (bigger == NULL)
			return -1;
		c->text = bigger;
		c->cap = c->len + 1;
		b->buffer = c->text;
		b->buffer_length = c->cap - 1;
		if (mysql_stmt_fetch_column(stmt, b, (unsigned)i, 0) != 0)
			return -1;
		*grown = true;
	}
	return 0;
}

/* A DECIMAL's text as a number: an integer when it has no fraction and fits one. */
static void decimal_value(struct sesame_value *v, const char *text)
{
	char *end;
	long long n = strtoll(text, &end, 10);
	if (*end == '\0' && n != LLONG_MAX && n != LLONG_MIN) {
		v->type = SESAME_VALUE_INTEGER;
		v->integer = n;
		return;
	}
	v->type = SESAME_VALUE_REAL;
	v->real = strtod(text, NULL);
}

static void column_value(struct column *c, const MYSQL_BIND *b, struct sesame_value *v)
{
	*v = (struct sesame_value){.type = SESAME_VALUE_NULL};
	if (c->is_null)
		return;
	if (b->buffer_type == MYSQL_TYPE_LONGLONG && c->is_unsigned &&
	    (unsigned long long)c->integer > (unsigned long long)LLONG_MAX) {
		v->type = SESAME_VALUE_REAL;
		v->real = (double)(unsigned long long)c->integer;
	} else if (b->buffer_type == MYSQL_TYPE_LONGLONG) {
		v->type = SESAME_VALUE_INTEGER;
		v->integer = c->integer;
	} else if (b->buffer_type == MYSQL_TYPE_DOUBLE) {
		v->type = SESAME_VALUE_REAL;
		v->real = c->real;
	} else {
		c->text[c->len < c->cap ? c->len : c->cap - 1] = '\0';
		v->type = SESAME_VALUE_TEXT;
		v->text = c->text;
		v->len = c->len;
		if (c->decimal)
			decimal_value(v, c->text);
	}
}

/* Binds the result's columns; -1 when out of memory. */
static int bind_result(MYSQL_STMT *stmt, struct query_run *q)
{
	MYSQL_RES *meta = mysql_stmt_result_metadata(stmt);
	if (meta == NULL)
		return -1;
	const MYSQL_FIELD *fields = mysql_fetch_fields(meta);
	int rc = 0;
	/* The names live in the metadata's memory: bind_column copies them. */
	for (size_t i = 0; rc == 0 && i < q->ncols; i++)
		rc = bind_column(q, i, &fields[i]);
	mysql_free_result(meta);
	return rc == 0 && mysql_stmt_bind_result(stmt, q->res) == 0 ? 0 : -1;
}

/* Fetches the rows, handing each to the row callback: 0, 1 when it stopped the statement, -1
 * on an error. */
static int fetch_rows(MYSQL_STMT *stmt, struct query_run *q)
{
	int rc;
	while ((rc = mysql_stmt_fetch(stmt)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
		bool grown = false;
		if (rc == MYSQL_DATA_TRUNCATED && fetch_long_columns(stmt, q, &grown) != 0)
			return -1;
		if (grown && mysql_stmt_bind_result(stmt, q->res) != 0)
			return -1;
		for (size_t i = 0; i < q->ncols; i++)
			column_value(&q->cols[i], &q->res[i], &q->values[i]);
		q->delivered++;
		if (q->row(q->ctx, q->ncols, q->names, q->values) != 0)
			return 1;
	}
	return rc == MYSQL_NO_DATA ? 0 : -1;
}

/* Did the statement leave the session out of autocommit, or in a transaction? */
static bool left_open(MYSQL *conn)
{
	unsigned int status = 0;
	if (mariadb_get_infov(conn, MARIADB_CONNECTION_SERVER_STATUS, &status) != 0)
		return true;
	return (status & SERVER_STATUS_IN_TRANS) != 0 || (status & SERVER_STATUS_AUTOCOMMIT) == 0;
}

/* Did the statement change the session (dbpool.c turns on the tracking that says so)? */
static bool session_changed(MYSQL *conn)
{
	unsigned int status = 0;
	if (mariadb_get_infov(conn, MARIADB_CONNECTION_SERVER_STATUS, &status) != 0)
		return true;
	return (status & SERVER_SESSION_STATE_CHANGED) != 0;
}

/* The statement ran: its rows, its counts; the connection given back either way. */
static enum sesame_storage_result finish(struct store *s, MYSQL *conn, MYSQL_STMT *stmt,
					 struct query_run *q, char *err, size_t errlen)
{
	int rc = 0;
	if (q->ncols > 0 && bind_result(stmt, q) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), "cannot read the rows", err,
				      errlen);
	if (q->ncols > 0 && (rc = fetch_rows(stmt, q)) < 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	if (q->ncols == 0) {
		*q->affected = (long long)mysql_stmt_affected_rows(stmt);
		*q->insert_id = (long long)mysql_stmt_insert_id(stmt);
	}
	mysql_stmt_free_result(stmt);
	bool changed = session_changed(conn);
	if (left_open(conn)) {
		mysql_rollback(conn);
		s->db->release(conn, true);
		snprintf(err, errlen,
			 "MariaDB: a statement of a route script cannot leave a "
			 "transaction open or autocommit off: each one commits on its own");
		return SESAME_STORAGE_FAILED;
	}
	s->db->release(conn, changed);
	if (rc == 1)
		snprintf(err, errlen, "MariaDB: the statement was stopped at a row");
	return rc == 1 ? SESAME_STORAGE_FAILED : SESAME_STORAGE_OK;
}

/*
 * A result of more columns than can be read, announced only once the statement ran (and, in
 * autocommit, committed): its rows are dropped with the connection, the statement fails.
 */
static enum sesame_storage_result too_wide(struct store *s, MYSQL *conn, MYSQL_STMT *stmt,
					   size_t ncols, char *err, size_t errlen)
{
	snprintf(err, errlen,
		 "MariaDB: the statement ran, but its result has %zu columns, more than %d: "
		 "name the columns it returns",
		 ncols, SESAME_QUERY_COLUMNS_MAX);
	mysql_stmt_free_result(stmt);
	s->db->release(conn, true);
	return SESAME_STORAGE_FAILED;
}

static enum sesame_storage_result query_once(struct store *s, struct query_run *q, char *err,
					     size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_STMT *stmt = s->db->prepare(conn, q->sql, err, errlen);
	if (stmt == NULL)
		return mariadb_not_prepared(s, conn);
	q->ncols = mysql_stmt_field_count(stmt);
	if (mysql_stmt_param_count(stmt) != q->nparams || q->ncols > SESAME_QUERY_COLUMNS_MAX) {
		snprintf(err, errlen,
			 "MariaDB: the statement has %lu %s (%zu %s given) and %zu %s (at most %d)",
			 mysql_stmt_param_count(stmt),
			 (mysql_stmt_param_count(stmt) == 1 ? "placeholder" : "placeholders"),
			 q->nparams, (q->nparams == 1 ? "value" : "values"), q->ncols,
			 (q->ncols == 1 ? "column" : "columns"), SESAME_QUERY_COLUMNS_MAX);
		s->db->release(conn, false);
		return SESAME_STORAGE_FAILED;
	}
	MYSQL_BIND p[SESAME_QUERY_PARAMS_MAX];
	unsigned long lens[SESAME_QUERY_PARAMS_MAX];
	bind_params(q, p, lens);
	if ((q->nparams > 0 && mysql_stmt_bind_param(stmt, p) != 0) ||
	    mysql_stmt_execute(stmt) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	/* A DELETE ... RETURNING has a result its preparation did not announce. */
	q->ncols = mysql_stmt_field_count(stmt);
	if (q->ncols > SESAME_QUERY_COLUMNS_MAX)
		return too_wide(s, conn, stmt, q->ncols, err, errlen);
	return finish(s, conn, stmt, q, err, errlen);
}

static void free_run(struct query_run *q)
{
	for (size_t i = 0; i < SESAME_QUERY_COLUMNS_MAX; i++) {
		free(q->cols[i].text);
		free((char *)q->names[i]);
	}
	free(q);
}

enum sesame_storage_result mariadb_query(void *state, const char *sql,
					 const struct sesame_value *params, size_t nparams,
					 query_row row, void *ctx, long long *affected,
					 long long *insert_id, char *err, size_t errlen)
{
	*affected = *insert_id = 0;
	if (strlen(sql) > SESAME_QUERY_SQL_MAX || nparams > SESAME_QUERY_PARAMS_MAX) {
		snprintf(err, errlen, "MariaDB: a statement is at most %d bytes with %d values",
			 SESAME_QUERY_SQL_MAX, SESAME_QUERY_PARAMS_MAX);
		return SESAME_STORAGE_FAILED;
	}
	struct query_run *q = calloc(1, sizeof(*q));
	if (q == NULL) {
		snprintf(err, errlen, "out of memory");
		return SESAME_STORAGE_FAILED;
	}
	*q = (struct query_run){.sql = sql,
				.params = params,
				.nparams = nparams,
				.row = row,
				.ctx = ctx,
				.affected = affected,
				.insert_id = insert_id};
	/* A route script's statement may write: run again only when it surely did not run, and
	 * no row of it was handed over (it would be handed over twice). */
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = query_once(state, q, err, errlen);
	} while (q->delivered == 0 && mariadb_retry(state, &t, r, false));
	free_run(q);
	return r;
}
