/*
 * mariadb_accounts.c: the MariaDB store's functions of ABI 1.1: a user's confirmed address and
 * new address, one-time tokens, events, and the route scripts' own statements (sesame.db).
 *
 * Each is one statement on the core's pool, prepared and cached there, like mariadb.c's. A
 * one-time token is spent by one DELETE ... RETURNING: of two nodes spending it at once, the
 * row lock makes the second wait for the first, then find nothing. Expiries and event times
 * are the database server's clock, never the caller's. Route scripts' own statements are
 * mariadb_query.c's.
 */
#include "mariadb_private.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STATE_UNVERIFY_SQL "UPDATE `sesame_user_state` SET `verified_at` = NULL WHERE `user_id` = ?"
#define OTP_INSERT_SQL                                                                             \
	"INSERT INTO `sesame_onetime_tokens` (`hash`, `purpose`, `user_id`, `data`, "              \
	"`expires_at`) VALUES (?, ?, ?, ?, UNIX_TIMESTAMP() + ?)"
#define OTP_SPEND_SQL                                                                              \
	"DELETE FROM `sesame_onetime_tokens` WHERE `hash` = ? AND `purpose` = ? AND "              \
	"`expires_at` > UNIX_TIMESTAMP() RETURNING `user_id`, `data`, `expires_at`"
#define OTP_FIND_SQL                                                                               \
	"SELECT `user_id`, `data`, `expires_at` FROM `sesame_onetime_tokens` WHERE `hash` = ? "    \
	"AND "                                                                                     \
	"`purpose` = ? AND `expires_at` > UNIX_TIMESTAMP()"
#define OTP_REVOKE_PURPOSE_SQL                                                                     \
	"DELETE FROM `sesame_onetime_tokens` WHERE `user_id` = ? AND `purpose` = ?"
#define EVENT_INSERT_SQL                                                                           \
	"INSERT INTO `sesame_events` (`at_ms`, `name`, `user_id`, `data`) VALUES (" NOW_MS_SQL     \
	", ?, ?, ?)"
#define EVENT_LIST_SQL                                                                             \
	"SELECT `id`, `at_ms`, `name`, `user_id`, `data` FROM `sesame_events` WHERE `id` > ? AND " \
	"`at_ms` >= ? AND (? = 0 OR `user_id` = ?) ORDER BY `id` LIMIT ?"
#define EVENT_PURGE_SQL "DELETE FROM `sesame_events` WHERE `at_ms` < ?"

/* The longest event name and data event_list reads. */
#define EVENT_NAME_MAX 64
#define EVENT_DATA_MAX 4096

void mariadb_accounts_make_sql(struct store *s)
{
	const struct sesame_users_schema *u = s->users;
	snprintf(s->set_email_sql, sizeof(s->set_email_sql),
		 "UPDATE `%s` SET `%s` = ? WHERE `%s` = ?", u->table, u->email, u->id);
	snprintf(s->exists_sql, sizeof(s->exists_sql), "SELECT COUNT(*) FROM `%s` WHERE `%s` = ?",
		 u->table, u->id);
	/* Only a user that exists gets a row: no state waits for an id not yet given. */
	snprintf(
	    s->verify_sql, sizeof(s->verify_sql),
	    "INSERT INTO `sesame_user_state` (`user_id`, `verified_at`) SELECT `%s`, "
	    "UNIX_TIMESTAMP() FROM `%s` WHERE `%s` = ? ON DUPLICATE KEY UPDATE `verified_at` = "
	    "COALESCE(`verified_at`, VALUES(`verified_at`))",
	    u->id, u->table, u->id);
}

/* Runs once(s, ctx, err, errlen) as the retry policy says (mariadb_retry.c); idempotent says
 * whether it may run twice. */
static enum sesame_storage_result
with_retries(struct store *s,
	     enum sesame_storage_result (*once)(struct store *, void *, char *, size_t), void *ctx,
	     bool idempotent, char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = once(s, ctx, err, errlen);
	} while (mariadb_retry(s, &t, r, idempotent));
	return r;
}

/* ---- users ---- */

struct user_args {
	long long id;
	bool verified;
	const char *email;
};

static enum sesame_storage_result verified_once(struct store *s, void *ctx, char *err,
						size_t errlen)
{
	struct user_args *a = ctx;
	MYSQL_BIND p;
	mariadb_bind_long(&p, &a->id);
	return mariadb_run_alone(s, a->verified ? s->verify_sql : STATE_UNVERIFY_SQL, &p, err,
				 errlen);
}

enum sesame_storage_result mariadb_user_set_verified(void *state, long long id, bool verified,
						     char *err, size_t errlen)
{
	struct user_args a = {.id = id, .verified = verified};
	return with_retries(state, verified_once, &a, true, err, errlen);
}

/* Does user id exist? On conn, which goes back on failure. */
static enum sesame_storage_result user_exists(struct store *s, MYSQL *conn, long long id, char *err,
					      size_t errlen)
{
	MYSQL_BIND p, res;
	long long n = 0;
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	mariadb_bind_long(&p, &id);
	MYSQL_STMT *stmt = mariadb_execute(s, conn, s->exists_sql, &p, &r, err, errlen);
	if (stmt == NULL)
		return r;
	mariadb_bind_long(&res, &n);
	if (mysql_stmt_bind_result(stmt, &res) != 0 || mysql_stmt_fetch(stmt) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	mysql_stmt_free_result(stmt);
	return n > 0 ? SESAME_STORAGE_OK : SESAME_STORAGE_NOT_FOUND;
}

static enum sesame_storage_result email_once(struct store *s, void *ctx, char *err, size_t errlen)
{
	struct user_args *a = ctx;
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_BIND p[2];
	unsigned long len;
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	mariadb_bind_string(&p[0], a->email, &len);
	mariadb_bind_long(&p[1], &a->id);
	MYSQL_STMT *stmt = mariadb_execute(s, conn, s->set_email_sql, p, &r, err, errlen);
	if (stmt == NULL)
		return r;
	my_ulonglong changed = mysql_stmt_affected_rows(stmt);
	/* The same address again changes no row: whether the user is there tells. */
	if (changed == 0 && (r = user_exists(s, conn, a->id, err, errlen)) != SESAME_STORAGE_OK &&
	    r != SESAME_STORAGE_NOT_FOUND)
		return r;
	s->db->release(conn, false);
	return r;
}

enum sesame_storage_result mariadb_user_set_email(void *state, long long id, const char *email,
						  char *err, size_t errlen)
{
	struct user_args a = {.id = id, .email = email};
	return with_retries(state, email_once, &a, true, err, errlen);
}

/* ---- one-time tokens ---- */

struct otp_args {
	const struct sesame_otp *otp;
	long long ttl;
	const char *hash, *purpose;
	struct sesame_otp *out;
	char *buf;
	size_t buflen;
	long long user_id;
};

static enum sesame_storage_result create_once(struct store *s, void *ctx, char *err, size_t errlen)
{
	struct otp_args *a = ctx;
	MYSQL_BIND p[5];
	unsigned long lens[3];
	long long user_id = a->otp->user_id;
	mariadb_bind_string(&p[0], a->otp->hash, &lens[0]);
	mariadb_bind_string(&p[1], a->otp->purpose, &lens[1]);
	mariadb_bind_long(&p[2], &user_id);
	if (a->otp->data != NULL && a->otp->data[0] != '\0') {
		mariadb_bind_string(&p[3], a->otp->data, &lens[2]);
	} else {
		memset(&p[3], 0, sizeof(p[3]));
		p[3].buffer_type = MYSQL_TYPE_NULL;
	}
	mariadb_bind_long(&p[4], &a->ttl);
	return mariadb_run_alone(s, OTP_INSERT_SQL, p, err, errlen);
}

enum sesame_storage_result mariadb_otp_create(void *state, const struct sesame_otp *otp,
					      long long ttl, char *err, size_t errlen)
{
	struct otp_args a = {.otp = otp, .ttl = ttl};
	return with_retries(state, create_once, &a, false, err, errlen);
}

/* The spent token's row: its data straight into the caller's buffer. */
static void bind_spent(MYSQL_BIND *res, struct otp_args *a, long long *user_id,
		       long long *expires_at, unsigned long *len, my_bool *nulls)
{
	memset(res, 0, 3 * sizeof(*res));
	mariadb_bind_long(&res[0], user_id);
	res[1].buffer_type = MYSQL_TYPE_STRING;
	res[1].buffer = a->buf;
	res[1].buffer_length = a->buflen > 0 ? a->buflen - 1 : 0;
	res[1].length = len;
	res[1].is_null = &nulls[1];
	mariadb_bind_long(&res[2], expires_at);
}

/*
 * Reads the token's row out of stmt, to the result's end: only MYSQL_NO_DATA after it says
 * the statement ended well (an error after the row, such as a commit that failed, is not a
 * spend). r is the outcome so far; on a failure conn goes back, as mariadb_failed does.
 */
static enum sesame_storage_result fetch_token(struct store *s, MYSQL *conn, MYSQL_STMT *stmt,
					      struct otp_args *a, char *err, size_t errlen)
{
	MYSQL_BIND res[3];
	unsigned long len = 0;
	my_bool nulls[3] = {0, 0, 0};
	long long user_id = 0, expires_at = 0;
	enum sesame_storage_result r = SESAME_STORAGE_NOT_FOUND;
	bind_spent(res, a, &user_id, &expires_at, &len, nulls);
	if (mysql_stmt_bind_result(stmt, res) != 0)
		goto fail;
	int rc = mysql_stmt_fetch(stmt);
	if (rc == MYSQL_DATA_TRUNCATED) {
		snprintf(err, errlen, "MariaDB: a one-time token's data does not fit in %zu bytes",
			 a->buflen);
		r = SESAME_STORAGE_FAILED;
	} else if (rc == 0) {
		a->buf[nulls[1] ? 0 : len] = '\0';
		*a->out = (struct sesame_otp){
		    .user_id = user_id, .data = nulls[1] ? NULL : a->buf, .expires_at = expires_at};
		r = SESAME_STORAGE_OK;
	}
	while (rc == 0 || rc == MYSQL_DATA_TRUNCATED)
		rc = mysql_stmt_fetch(stmt);
	if (rc != MYSQL_NO_DATA)
		goto fail;
	mysql_stmt_free_result(stmt);
	s->db->release(conn, false);
	return r;
fail:
	/* An error met while rows come is the connection's, not yet the statement's. */
	if (mysql_stmt_errno(stmt) == 0)
		return mariadb_failed(s, conn, mysql_errno(conn), mysql_error(conn), err, errlen);
	return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err, errlen);
}

/* Runs sql (OTP_SPEND_SQL or OTP_FIND_SQL) for the token of a->hash and a->purpose. */
static enum sesame_storage_result token_once(struct store *s, struct otp_args *a, const char *sql,
					     char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_BIND p[2];
	unsigned long lens[2];
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	mariadb_bind_string(&p[0], a->hash, &lens[0]);
	mariadb_bind_string(&p[1], a->purpose, &lens[1]);
	MYSQL_STMT *stmt = mariadb_execute(s, conn, sql, p, &r, err, errlen);
	if (stmt == NULL)
		return r;
	return fetch_token(s, conn, stmt, a, err, errlen);
}

static enum sesame_storage_result spend_once(struct store *s, void *ctx, char *err, size_t errlen)
{
	return token_once(s, ctx, OTP_SPEND_SQL, err, errlen);
}

static enum sesame_storage_result find_once(struct store *s, void *ctx, char *err, size_t errlen)
{
	return token_once(s, ctx, OTP_FIND_SQL, err, errlen);
}

/* Spent, a token is gone: a spend that may have run is never run again. */
enum sesame_storage_result mariadb_otp_spend(void *state, const char *hash, const char *purpose,
					     struct sesame_otp *out, char *buf, size_t buflen,
					     char *err, size_t errlen)
{
	struct otp_args a = {
	    .hash = hash, .purpose = purpose, .out = out, .buf = buf, .buflen = buflen};
	return with_retries(state, spend_once, &a, false, err, errlen);
}

/* A look changes nothing: it may run again. */
enum sesame_storage_result mariadb_otp_find(void *state, const char *hash, const char *purpose,
					    struct sesame_otp *out, char *buf, size_t buflen,
					    char *err, size_t errlen)
{
	struct otp_args a = {
	    .hash = hash, .purpose = purpose, .out = out, .buf = buf, .buflen = buflen};
	return with_retries(state, find_once, &a, true, err, errlen);
}

static enum sesame_storage_result revoke_once(struct store *s, void *ctx, char *err, size_t errlen)
{
	struct otp_args *a = ctx;
	MYSQL_BIND p[2];
	unsigned long len;
	mariadb_bind_long(&p[0], &a->user_id);
	if (a->purpose == NULL)
		return mariadb_run_alone(s, MARIADB_OTP_REVOKE_SQL, p, err, errlen);
	mariadb_bind_string(&p[1], a->purpose, &len);
	return mariadb_run_alone(s, OTP_REVOKE_PURPOSE_SQL, p, err, errlen);
}

enum sesame_storage_result mariadb_otp_revoke(void *state, long long user_id, const char *purpose,
					      char *err, size_t errlen)
{
	struct otp_args a = {.user_id = user_id, .purpose = purpose};
	return with_retries(state, revoke_once, &a, true, err, errlen);
}

/* ---- events ---- */

static enum sesame_storage_result event_add_once(struct store *s, void *ctx, char *err,
						 size_t errlen)
{
	const struct sesame_event *e = ctx;
	MYSQL_BIND p[3];
	unsigned long lens[2];
	long long user_id = e->user_id;
	mariadb_bind_string(&p[0], e->name, &lens[0]);
	mariadb_bind_long(&p[1], &user_id);
	if (user_id == 0) {
		memset(&p[1], 0, sizeof(p[1]));
		p[1].buffer_type = MYSQL_TYPE_NULL;
	}
	mariadb_bind_string(&p[2], e->data != NULL ? e->data : "{}", &lens[1]);
	return mariadb_run_alone(s, EVENT_INSERT_SQL, p, err, errlen);
}

enum sesame_storage_result mariadb_event_add(void *state, const struct sesame_event *event,
					     char *err, size_t errlen)
{
	return with_retries(state, event_add_once, (void *)event, false, err, errlen);
}

/* One row of event_list. */
struct event_row {
	long long id, at_ms, user_id;
	char name[EVENT_NAME_MAX + 1], data[EVENT_DATA_MAX + 1];
	unsigned long lens[5];
	my_bool nulls[5];
};

static void bind_event_row(MYSQL_BIND *res, struct event_row *row)
{
	memset(res, 0, 5 * sizeof(*res));
	mariadb_bind_long(&res[0], &row->id);
	mariadb_bind_long(&res[1], &row->at_ms);
	mariadb_bind_long(&res[3], &row->user_id);
	res[2].buffer_type = MYSQL_TYPE_STRING;
	res[2].buffer = row->name;
	res[2].buffer_length = EVENT_NAME_MAX;
	res[4].buffer_type = MYSQL_TYPE_STRING;
	res[4].buffer = row->data;
	res[4].buffer_length = EVENT_DATA_MAX;
	for (int i = 0; i < 5; i++) {
		res[i].length = &row->lens[i];
		res[i].is_null = &row->nulls[i];
	}
}

struct list_args {
	long long user_id, since_ms, after_id, limit;
	void (*each)(void *ctx, const struct sesame_event *e);
	void *ctx;
};

/* Reads the events into row, one at a time, on a connection of its own. */
static enum sesame_storage_result list_rows(struct store *s, struct list_args *a,
					    struct event_row *row, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_BIND p[5], res[5];
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	long long *args[5] = {&a->after_id, &a->since_ms, &a->user_id, &a->user_id, &a->limit};
	for (int i = 0; i < 5; i++)
		mariadb_bind_long(&p[i], args[i]);
	MYSQL_STMT *stmt = mariadb_execute(s, conn, EVENT_LIST_SQL, p, &r, err, errlen);
	if (stmt == NULL)
		return r;
	bind_event_row(res, row);
	if (mysql_stmt_bind_result(stmt, res) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	int rc;
	while ((rc = mysql_stmt_fetch(stmt)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
		row->name[row->lens[2] < EVENT_NAME_MAX ? row->lens[2] : EVENT_NAME_MAX] = '\0';
		row->data[row->lens[4] < EVENT_DATA_MAX ? row->lens[4] : EVENT_DATA_MAX] = '\0';
		struct sesame_event e = {.id = row->id,
					 .at_ms = row->at_ms,
					 .name = row->name,
					 .user_id = row->nulls[3] ? 0 : row->user_id,
					 .data = row->data};
		a->each(a->ctx, &e);
	}
	if (rc != MYSQL_NO_DATA)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	mysql_stmt_free_result(stmt);
	s->db->release(conn, false);
	return SESAME_STORAGE_OK;
}

static enum sesame_storage_result list_once(struct store *s, void *ctx, char *err, size_t errlen)
{
	struct event_row *row = calloc(1, sizeof(*row));
	if (row == NULL) {
		snprintf(err, errlen, "out of memory");
		return SESAME_STORAGE_FAILED;
	}
	enum sesame_storage_result r = list_rows(s, ctx, row, err, errlen);
	free(row);
	return r;
}

/* A listing is only tried again when the connection was gone before any row was read. */
enum sesame_storage_result mariadb_event_list(void *state, long long user_id, long long since_ms,
					      long long after_id, long long limit,
					      void (*each)(void *ctx, const struct sesame_event *e),
					      void *ctx, char *err, size_t errlen)
{
	struct list_args a = {user_id, since_ms, after_id, limit, each, ctx};
	return with_retries(state, list_once, &a, false, err, errlen);
}

static enum sesame_storage_result purge_once(struct store *s, void *ctx, char *err, size_t errlen)
{
	MYSQL_BIND p;
	mariadb_bind_long(&p, ctx);
	return mariadb_run_alone(s, EVENT_PURGE_SQL, &p, err, errlen);
}

enum sesame_storage_result mariadb_event_purge(void *state, long long before_ms, char *err,
					       size_t errlen)
{
	return with_retries(state, purge_once, &before_ms, true, err, errlen);
}
