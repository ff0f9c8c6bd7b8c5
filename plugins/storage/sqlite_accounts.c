/*
 * sqlite_accounts.c: the SQLite store's functions of ABI 1.1: a user's confirmed address and
 * new address, one-time tokens and events (the route scripts' own statements are in
 * sqlite_query.c).
 *
 * They run on the connections of sqlite.c (sqlite_private.h), each statement prepared once
 * per connection like the others. A one-time token is spent by one DELETE ... RETURNING
 * (SQLite 3.35 and later): the write lock orders two spends of one token, and only the first
 * finds its row. Expiries are SQLite's clock ('now'), never the caller's.
 */
#include "sqlite_private.h"

#include <stdio.h>
#include <string.h>

const char *const sqlite_accounts_sql[STATEMENTS] = {
    [STATE_UNVERIFY] = "UPDATE \"sesame_user_state\" SET \"verified_at\" = NULL WHERE "
		       "\"user_id\" = ?1",
    [OTP_INSERT] = "INSERT INTO \"sesame_onetime_tokens\" (\"hash\", \"purpose\", \"user_id\", "
		   "\"data\", \"expires_at\") VALUES (?1, ?2, ?3, ?4, " SQLITE_S " + ?5)",
    [OTP_SPEND] =
	"DELETE FROM \"sesame_onetime_tokens\" WHERE \"hash\" = ?1 AND \"purpose\" = "
	"?2 AND \"expires_at\" > " SQLITE_S " RETURNING \"user_id\", \"data\", \"expires_at\"",
    [OTP_FIND] = "SELECT \"user_id\", \"data\", \"expires_at\" FROM \"sesame_onetime_tokens\" "
		 "WHERE \"hash\" = ?1 AND \"purpose\" = ?2 AND \"expires_at\" > " SQLITE_S,
    [OTP_REVOKE] = "DELETE FROM \"sesame_onetime_tokens\" WHERE \"user_id\" = ?1",
    [OTP_REVOKE_PURPOSE] = "DELETE FROM \"sesame_onetime_tokens\" WHERE \"user_id\" = ?1 AND "
			   "\"purpose\" = ?2",
    [PURGE_OTP] = "DELETE FROM \"sesame_onetime_tokens\" WHERE \"expires_at\" <= " SQLITE_S,
    [EVENT_INSERT] = "INSERT INTO \"sesame_events\" (\"at_ms\", \"name\", \"user_id\", \"data\") "
		     "VALUES (" SQLITE_MS ", ?1, ?2, ?3)",
    [EVENT_LIST] = "SELECT \"id\", \"at_ms\", \"name\", \"user_id\", \"data\" FROM "
		   "\"sesame_events\" WHERE \"id\" > ?1 AND \"at_ms\" >= ?2 AND (?3 = 0 OR "
		   "\"user_id\" = ?3) ORDER BY \"id\" LIMIT ?4",
    [EVENT_PURGE] = "DELETE FROM \"sesame_events\" WHERE \"at_ms\" < ?1",
};

void sqlite_accounts_make_sql(struct store *s)
{
	const struct sesame_users_schema *u = s->users;
	snprintf(s->sql[SET_EMAIL], sizeof(s->sql[SET_EMAIL]),
		 "UPDATE \"%s\" SET \"%s\" = ?1 WHERE \"%s\" = ?2", u->table, u->email, u->id);
	/* Only a user that exists gets a row: no state waits for an id not yet given. */
	snprintf(s->sql[STATE_VERIFY], sizeof(s->sql[STATE_VERIFY]),
		 "INSERT INTO \"sesame_user_state\" (\"user_id\", \"verified_at\") SELECT "
		 "\"%s\", %s FROM \"%s\" WHERE \"%s\" = ?1 ON CONFLICT (\"user_id\") DO UPDATE "
		 "SET \"verified_at\" = COALESCE(\"verified_at\", excluded.\"verified_at\")",
		 u->id, SQLITE_S, u->table, u->id);
}

/* ---- users ---- */

enum sesame_storage_result sqlite_user_set_verified(void *state, long long id, bool verified,
						    char *err, size_t errlen)
{
	return sqlite_run_alone(state, verified ? STATE_VERIFY : STATE_UNVERIFY, sqlite_bind_id,
				&id, err, errlen);
}

struct email_args {
	const char *email;
	long long id;
};

static void bind_email(sqlite3_stmt *st, const void *ctx)
{
	const struct email_args *a = ctx;
	sqlite3_bind_text(st, 1, a->email, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, a->id);
}

enum sesame_storage_result sqlite_user_set_email(void *state, long long id, const char *email,
						 char *err, size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct email_args a = {email, id};
	struct conn *c = sqlite_acquire(s->pool);
	int rc = sqlite_run_stmt(s, c, SET_EMAIL, bind_email, &a);
	enum sesame_storage_result r = rc != 0 ? sqlite_failed(c->db, rc, err, errlen)
				       : sqlite3_changes(c->db) == 0 ? SESAME_STORAGE_NOT_FOUND
								     : SESAME_STORAGE_OK;
	sqlite_release(s->pool, c);
	return r;
}

/* ---- one-time tokens ---- */

struct otp_args {
	const struct sesame_otp *otp;
	const char *purpose;
	long long ttl, user_id;
};

static void bind_otp(sqlite3_stmt *st, const void *ctx)
{
	const struct otp_args *a = ctx;
	sqlite3_bind_text(st, 1, a->otp->hash, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->otp->purpose, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, a->otp->user_id);
	if (a->otp->data != NULL && a->otp->data[0] != '\0')
		sqlite3_bind_text(st, 4, a->otp->data, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 5, a->ttl);
}

enum sesame_storage_result sqlite_otp_create(void *state, const struct sesame_otp *otp,
					     long long ttl, char *err, size_t errlen)
{
	struct otp_args a = {.otp = otp, .ttl = ttl};
	return sqlite_run_alone(state, OTP_INSERT, bind_otp, &a, err, errlen);
}

/* The spent token's row into out, its data copied into buf. */
static enum sesame_storage_result copy_otp(sqlite3_stmt *st, struct sesame_otp *out, char *buf,
					   size_t buflen, char *err, size_t errlen)
{
	const unsigned char *data = sqlite3_column_text(st, 1);
	size_t len = data != NULL ? (size_t)sqlite3_column_bytes(st, 1) : 0;
	out->user_id = sqlite3_column_int64(st, 0);
	out->expires_at = sqlite3_column_int64(st, 2);
	out->data = NULL;
	if (data == NULL)
		return SESAME_STORAGE_OK;
	if (len + 1 > buflen) {
		snprintf(err, errlen, "SQLite: a one-time token's data does not fit in %zu bytes",
			 buflen);
		return SESAME_STORAGE_FAILED;
	}
	memcpy(buf, data, len);
	buf[len] = '\0';
	out->data = buf;
	return SESAME_STORAGE_OK;
}

/* The token's row by statement which (OTP_SPEND or OTP_FIND), read to its end. */
static enum sesame_storage_result otp_row(struct store *s, int which, const char *hash,
					  const char *purpose, struct sesame_otp *out, char *buf,
					  size_t buflen, char *err, size_t errlen)
{
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	sqlite3_stmt *st = sqlite_statement(s, c, which);
	enum sesame_storage_result r = SESAME_STORAGE_NOT_FOUND;
	int rc = st == NULL ? sqlite3_extended_errcode(c->db) : SQLITE_OK;
	if (st != NULL) {
		sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, purpose, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			r = copy_otp(st, out, buf, buflen, err, errlen);
			/* To its end: the autocommit commits a deletion here. */
			rc = sqlite3_step(st);
		}
	}
	if (rc != SQLITE_DONE)
		r = sqlite_failed(c->db, rc, err, errlen);
	if (st != NULL)
		sqlite_done_with(st);
	sqlite_release(s->pool, c);
	return r;
}

enum sesame_storage_result sqlite_otp_spend(void *state, const char *hash, const char *purpose,
					    struct sesame_otp *out, char *buf, size_t buflen,
					    char *err, size_t errlen)
{
	return otp_row(state, OTP_SPEND, hash, purpose, out, buf, buflen, err, errlen);
}

enum sesame_storage_result sqlite_otp_find(void *state, const char *hash, const char *purpose,
					   struct sesame_otp *out, char *buf, size_t buflen,
					   char *err, size_t errlen)
{
	return otp_row(state, OTP_FIND, hash, purpose, out, buf, buflen, err, errlen);
}

static void bind_revoke(sqlite3_stmt *st, const void *ctx)
{
	const struct otp_args *a = ctx;
	sqlite3_bind_int64(st, 1, a->user_id);
	if (a->purpose != NULL)
		sqlite3_bind_text(st, 2, a->purpose, -1, SQLITE_STATIC);
}

enum sesame_storage_result sqlite_otp_revoke(void *state, long long user_id, const char *purpose,
					     char *err, size_t errlen)
{
	struct otp_args a = {.user_id = user_id, .purpose = purpose};
	return sqlite_run_alone(state, purpose != NULL ? OTP_REVOKE_PURPOSE : OTP_REVOKE,
				bind_revoke, &a, err, errlen);
}

/* ---- events ---- */

static void bind_event(sqlite3_stmt *st, const void *ctx)
{
	const struct sesame_event *e = ctx;
	sqlite3_bind_text(st, 1, e->name, -1, SQLITE_STATIC);
	if (e->user_id != 0)
		sqlite3_bind_int64(st, 2, e->user_id);
	sqlite3_bind_text(st, 3, e->data != NULL ? e->data : "{}", -1, SQLITE_STATIC);
}

enum sesame_storage_result sqlite_event_add(void *state, const struct sesame_event *event,
					    char *err, size_t errlen)
{
	return sqlite_run_alone(state, EVENT_INSERT, bind_event, event, err, errlen);
}

static const char *text_or_empty(sqlite3_stmt *st, int i)
{
	const unsigned char *text = sqlite3_column_text(st, i);
	return text != NULL ? (const char *)text : "";
}

enum sesame_storage_result sqlite_event_list(void *state, long long user_id, long long since_ms,
					     long long after_id, long long limit,
					     void (*each)(void *ctx, const struct sesame_event *e),
					     void *ctx, char *err, size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	sqlite3_stmt *st = sqlite_statement(s, c, EVENT_LIST);
	int rc = st == NULL ? sqlite3_extended_errcode(c->db) : SQLITE_OK;
	if (st != NULL) {
		sqlite3_bind_int64(st, 1, after_id);
		sqlite3_bind_int64(st, 2, since_ms);
		sqlite3_bind_int64(st, 3, user_id);
		sqlite3_bind_int64(st, 4, limit);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			struct sesame_event e = {.id = sqlite3_column_int64(st, 0),
						 .at_ms = sqlite3_column_int64(st, 1),
						 .name = text_or_empty(st, 2),
						 .user_id = sqlite3_column_int64(st, 3),
						 .data = text_or_empty(st, 4)};
			each(ctx, &e);
		}
		sqlite_done_with(st);
	}
	enum sesame_storage_result r =
	    rc == SQLITE_DONE ? SESAME_STORAGE_OK : sqlite_failed(c->db, rc, err, errlen);
	sqlite_release(s->pool, c);
	return r;
}

static void bind_before(sqlite3_stmt *st, const void *ctx)
{
	sqlite3_bind_int64(st, 1, *(const long long *)ctx);
}

enum sesame_storage_result sqlite_event_purge(void *state, long long before_ms, char *err,
					      size_t errlen)
{
	return sqlite_run_alone(state, EVENT_PURGE, bind_before, &before_ms, err, errlen);
}
