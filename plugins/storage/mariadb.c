/*
 * mariadb.c: the MariaDB user store, on the core's connection pool (host->mariadb).
 *
 * Every statement is prepared (the pool caches them per connection) with the table and
 * column names of storage.users, which are checked plain identifiers and quoted: the same
 * plugin runs on sesame's own `users` table and on a tutorial service's `user` table. The
 * e-mail column's case-insensitive collation makes two addresses differing in letter case one
 * account, and its unique key settles concurrent registrations: the loser gets CONFLICT.
 * Autocommit is on, so a row is committed when user_create returns.
 *
 * It also keeps the token state (refresh families, revoked ids) in sesame's own tables,
 * whatever storage.users says. Each token-state function is one transaction: the family's row
 * locked FOR UPDATE first (two rotations, or a rotation and a logout, of one family wait for
 * each other), then the time read, then the writes, whose lock waits are bounded to 5 s: a
 * revocation's time is never much older than its commit, which the workers' fetches need.
 * Every such time is the database server's (UTC_TIMESTAMP, whatever the session's time
 * zone), never this host's: nodes whose clocks disagree still agree on the order of
 * revocations and fetches.
 * Failed log-ins per account are one statement each, on the server's clock (NOW(3)), so that
 * every node counts the same guesses whatever its own clock says.
 *
 * The functions of ABI 1.1 (one-time tokens, events, route scripts' statements) live in
 * mariadb_accounts.c, on the helpers of this file (mariadb_private.h). Every call runs in a
 * loop of tries that mariadb_retry.c's policy ends: lost conflicts and connections lost
 * before anything could change are run again; an unknown outcome only for an idempotent call.
 *
 * migrate is mariadb_migrate.c's. A connection error (server down or restarted) answers
 * UNAVAILABLE and gives the connection back as broken, so the pool makes a new one.
 */
#include <sesame/plugin.h>

#include <mysql.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mariadb_private.h"

static int init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	struct store *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -1;
	if (host->size < sizeof(struct sesame_host) || host->mariadb == NULL ||
	    host->users == NULL) {
		host->log(host, SESAME_LOG_ERROR, "sesamed offers no MariaDB pool");
		free(s);
		return -1;
	}
	s->host = host;
	s->db = host->mariadb;
	s->users = host->users;
	const struct sesame_users_schema *u = s->users;
	snprintf(s->insert_sql, sizeof(s->insert_sql),
		 "INSERT INTO `%s` (`%s`, `%s`, `%s`) VALUES (?, ?, ?)", u->table, u->email,
		 u->username, u->password);
	/* The user and whether it is disabled in one query, for a known e-mail as for one
	 * not known: the time of a log-in does not tell them apart. */
	snprintf(
	    s->find_by_email_sql, sizeof(s->find_by_email_sql),
	    "SELECT u.`%s`, u.`%s`, u.`%s`, u.`%s`, st.`disabled_at`, st.`verified_at` FROM "
	    "`%s` u LEFT JOIN `sesame_user_state` st ON st.`user_id` = u.`%s` WHERE u.`%s` = ?",
	    u->id, u->email, u->username, u->password, u->table, u->id, u->email);
	snprintf(
	    s->find_by_id_sql, sizeof(s->find_by_id_sql),
	    "SELECT u.`%s`, u.`%s`, u.`%s`, u.`%s`, st.`disabled_at`, st.`verified_at` FROM "
	    "`%s` u LEFT JOIN `sesame_user_state` st ON st.`user_id` = u.`%s` WHERE u.`%s` = ?",
	    u->id, u->email, u->username, u->password, u->table, u->id, u->id);
	snprintf(s->set_password_sql, sizeof(s->set_password_sql),
		 "UPDATE `%s` SET `%s` = ? WHERE `%s` = ?", u->table, u->password, u->id);
	snprintf(s->list_sql, sizeof(s->list_sql),
		 "SELECT u.`%s`, u.`%s`, u.`%s`, u.`created_at`, st.`disabled_at` FROM `%s` u "
		 "LEFT JOIN `sesame_user_state` st ON st.`user_id` = u.`%s` WHERE u.`%s` > ? "
		 "ORDER BY u.`%s` LIMIT ?",
		 u->id, u->email, u->username, u->table, u->id, u->id, u->id);
	snprintf(s->list_bare_sql, sizeof(s->list_bare_sql),
		 "SELECT u.`%s`, u.`%s`, u.`%s`, NULL, st.`disabled_at` FROM `%s` u LEFT JOIN "
		 "`sesame_user_state` st ON st.`user_id` = u.`%s` WHERE u.`%s` > ? ORDER BY u.`%s` "
		 "LIMIT ?",
		 u->id, u->email, u->username, u->table, u->id, u->id, u->id);
	snprintf(s->delete_sql, sizeof(s->delete_sql), "DELETE FROM `%s` WHERE `%s` = ?", u->table,
		 u->id);
	mariadb_accounts_make_sql(s);
	*state = s;
	return 0;
}

static void fini(void *state)
{
	free(state);
}

static int worker_start(void *state)
{
	return 0;
}

static void worker_stop(void *state)
{
}

/* ---- users ---- */

void mariadb_bind_string(MYSQL_BIND *b, const char *s, unsigned long *len)
{
	memset(b, 0, sizeof(*b));
	*len = (unsigned long)strlen(s);
	b->buffer_type = MYSQL_TYPE_STRING;
	b->buffer = (void *)s;
	b->buffer_length = *len;
	b->length = len;
}

static enum sesame_storage_result create_once(void *state, const struct sesame_user *user,
					      long long *id, char *err, size_t errlen)
{
	struct store *s = state;
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_STMT *stmt = s->db->prepare(conn, s->insert_sql, err, errlen);
	if (stmt == NULL)
		return mariadb_not_prepared(s, conn);
	MYSQL_BIND params[3];
	unsigned long lens[3];
	mariadb_bind_string(&params[0], user->email, &lens[0]);
	mariadb_bind_string(&params[1], user->username, &lens[1]);
	mariadb_bind_string(&params[2], user->password, &lens[2]);
	if (mysql_stmt_bind_param(stmt, params) != 0 || mysql_stmt_execute(stmt) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	*id = (long long)mysql_stmt_insert_id(stmt);
	s->db->release(conn, false);
	return SESAME_STORAGE_OK;
}

/* Binds the six result columns: the strings go into buf, one after another; times[0] is
 * disabled_at, times[1] verified_at. */
static void bind_user(MYSQL_BIND *res, long long *id, long long *times, char *buf, size_t buflen,
		      unsigned long *lens, my_bool *nulls)
{
	memset(res, 0, 6 * sizeof(*res));
	res[0].buffer_type = MYSQL_TYPE_LONGLONG;
	res[0].buffer = id;
	res[0].is_null = &nulls[0];
	for (int i = 4; i < 6; i++) {
		res[i].buffer_type = MYSQL_TYPE_LONGLONG;
		res[i].buffer = &times[i - 4];
		res[i].is_null = &nulls[i];
	}
	size_t part = buflen / 3;
	for (int i = 1; i < 4; i++) {
		res[i].buffer_type = MYSQL_TYPE_STRING;
		res[i].buffer = buf + (size_t)(i - 1) * part;
		res[i].buffer_length = part - 1;
		res[i].length = &lens[i];
		res[i].is_null = &nulls[i];
	}
}

static enum sesame_storage_result find_once(void *state, const char *by, const char *value,
					    struct sesame_user *out, char *buf, size_t buflen,
					    char *err, size_t errlen)
{
	struct store *s = state;
	const char *sql = strcmp(by, "id") == 0 ? s->find_by_id_sql : s->find_by_email_sql;
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_STMT *stmt = s->db->prepare(conn, sql, err, errlen);
	if (stmt == NULL)
		return mariadb_not_prepared(s, conn);
	MYSQL_BIND param, res[6];
	unsigned long plen, lens[6] = {0};
	my_bool nulls[6] = {0};
	long long id = 0, wanted = 0, times[2] = {0, 0};
	if (sql == s->find_by_id_sql) {
		/* Bound as a number: a string compared with the id column compares as a double. */
		char *end;
		wanted = strtoll(value, &end, 10);
		memset(&param, 0, sizeof(param));
		param.buffer_type = MYSQL_TYPE_LONGLONG;
		param.buffer = &wanted;
		if (*value == '\0' || *end != '\0') {
			s->db->release(conn, false);
			return SESAME_STORAGE_NOT_FOUND;
		}
	} else {
		mariadb_bind_string(&param, value, &plen);
	}
	bind_user(res, &id, times, buf, buflen, lens, nulls);
	if (mysql_stmt_bind_param(stmt, &param) != 0 || mysql_stmt_execute(stmt) != 0 ||
	    mysql_stmt_bind_result(stmt, res) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	int rc = mysql_stmt_fetch(stmt);
	enum sesame_storage_result result = SESAME_STORAGE_OK;
	if (rc == MYSQL_NO_DATA) {
		result = SESAME_STORAGE_NOT_FOUND;
	} else if (rc != 0) {
		snprintf(err, errlen, "MariaDB: a user row does not fit (%d)", rc);
		result = SESAME_STORAGE_FAILED;
	} else {
		size_t part = buflen / 3;
		for (int i = 1; i < 4; i++)
			buf[(size_t)(i - 1) * part + (nulls[i] ? 0 : lens[i])] = '\0';
		*out = (struct sesame_user){.id = id,
					    .email = buf,
					    .username = buf + part,
					    .password = buf + 2 * part,
					    .disabled_at = nulls[4] ? 0 : times[0],
					    .verified_at = nulls[5] ? 0 : times[1]};
	}
	mysql_stmt_free_result(stmt);
	s->db->release(conn, false);
	return result;
}

static enum sesame_storage_result set_password_once(void *state, long long id, const char *password,
						    char *err, size_t errlen)
{
	struct store *s = state;
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_STMT *stmt = s->db->prepare(conn, s->set_password_sql, err, errlen);
	if (stmt == NULL)
		return mariadb_not_prepared(s, conn);
	MYSQL_BIND params[2];
	unsigned long len;
	mariadb_bind_string(&params[0], password, &len);
	memset(&params[1], 0, sizeof(params[1]));
	params[1].buffer_type = MYSQL_TYPE_LONGLONG;
	params[1].buffer = &id;
	if (mysql_stmt_bind_param(stmt, params) != 0 || mysql_stmt_execute(stmt) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	/* A new hash always differs from the old one (a new salt): 0 rows means no such user. */
	my_ulonglong changed = mysql_stmt_affected_rows(stmt);
	s->db->release(conn, false);
	return changed > 0 ? SESAME_STORAGE_OK : SESAME_STORAGE_NOT_FOUND;
}

static enum sesame_storage_result user_create(void *state, const struct sesame_user *user,
					      long long *id, char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = create_once(state, user, id, err, errlen);
	} while (mariadb_retry(state, &t, r, false));
	return r;
}

static enum sesame_storage_result user_find(void *state, const char *by, const char *value,
					    struct sesame_user *out, char *buf, size_t buflen,
					    char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = find_once(state, by, value, out, buf, buflen, err, errlen);
	} while (mariadb_retry(state, &t, r, true));
	return r;
}

static enum sesame_storage_result user_set_password(void *state, long long id, const char *password,
						    char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = set_password_once(state, id, password, err, errlen);
	} while (mariadb_retry(state, &t, r, true));
	return r;
}

/* ---- token state ---- */

#define NOW_SQL "SELECT " NOW_MS_SQL
#define FAMILY_INSERT_SQL                                                                          \
	"INSERT INTO `sesame_refresh_families` (`id`, `subject`, `current_jti`, `rotated_at`, "    \
	"`expires_at`) VALUES (?, ?, ?, " NOW_MS_SQL ", ?)"
#define FAMILY_GET_SQL                                                                             \
	"SELECT `current_jti`, `previous_jti`, `rotated_at`, `expires_at`, `revoked_at` FROM "     \
	"`sesame_refresh_families` WHERE `id` = ? FOR UPDATE"
#define FAMILY_ROTATE_SQL                                                                          \
	"UPDATE `sesame_refresh_families` SET `previous_jti` = `current_jti`, `current_jti` = "    \
	"?, `rotated_at` = ? WHERE `id` = ?"
#define FAMILY_REVOKE_SQL                                                                          \
	"UPDATE `sesame_refresh_families` SET `revoked_at` = ? WHERE `id` = ? AND `revoked_at` "   \
	"IS NULL"
/* Revoked again with a later expiry, the row takes it and a new time, so that every worker
 * fetches it again (the assignments run left to right: revoked_at reads the old expiry). A
 * lock wait after the revocation time is read is bounded well below the fetches' overlap. */
#define REVOKE_SQL                                                                                 \
	"SET STATEMENT innodb_lock_wait_timeout = 5 FOR INSERT INTO `sesame_revoked_tokens` "      \
	"(`id`, `revoked_at`, `expires_at`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE "             \
	"`revoked_at` = IF(`expires_at` <> 0 AND (VALUES(`expires_at`) = 0 OR "                    \
	"VALUES(`expires_at`) > `expires_at`), VALUES(`revoked_at`), `revoked_at`), "              \
	"`expires_at` = IF(`expires_at` <> 0 AND (VALUES(`expires_at`) = 0 OR "                    \
	"VALUES(`expires_at`) > `expires_at`), VALUES(`expires_at`), `expires_at`)"
#define FAMILY_LOCK_SQL "SELECT 1 FROM `sesame_refresh_families` WHERE `id` = ? FOR UPDATE"
/* A subject's cutoff always takes the new time (it only moves later) and the later expiry. */
#define CUTOFF_SQL                                                                                 \
	"SET STATEMENT innodb_lock_wait_timeout = 5 FOR INSERT INTO `sesame_revoked_tokens` "      \
	"(`id`, `revoked_at`, `expires_at`) VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE "             \
	"`expires_at` = IF(`expires_at` = 0 OR VALUES(`expires_at`) = 0, 0, "                      \
	"GREATEST(`expires_at`, VALUES(`expires_at`))), `revoked_at` = VALUES(`revoked_at`)"
#define REVOKED_SINCE_SQL                                                                          \
	"SELECT `id`, `expires_at`, `revoked_at` FROM `sesame_revoked_tokens` WHERE `revoked_at` " \
	">= ? AND (`expires_at` = 0 OR `expires_at` >= ?)"
#define PURGE_REVOKED_SQL                                                                          \
	"DELETE FROM `sesame_revoked_tokens` WHERE `expires_at` <> 0 AND `expires_at` < ?"
#define SUBJECT_FAMILIES_SQL                                                                       \
	"SELECT `id` FROM `sesame_refresh_families` WHERE `subject` = ? AND `revoked_at` IS "      \
	"NULL AND `expires_at` * 1000 > " NOW_MS_SQL " AND NOT (`id` <=> ?) FOR UPDATE"
#define PURGE_FAMILIES_SQL "DELETE FROM `sesame_refresh_families` WHERE `expires_at` < ?"
/* The server's clock, Unix milliseconds: every node counts failures on the same one. */
#define PURGE_FAILURES_SQL "DELETE FROM `sesame_login_failures` WHERE `tat` < " NOW_MS_SQL

void mariadb_bind_long(MYSQL_BIND *b, long long *v)
{
	memset(b, 0, sizeof(*b));
	b->buffer_type = MYSQL_TYPE_LONGLONG;
	b->buffer = v;
}

/*
 * Prepares sql on conn and runs it with params. NULL on failure, with the connection given
 * back (mariadb_failed() or mariadb_not_prepared()) and the result in *r; else the statement, whose
 * result the caller reads (if any) and resets.
 */
MYSQL_STMT *mariadb_execute(struct store *s, MYSQL *conn, const char *sql, MYSQL_BIND *params,
			    enum sesame_storage_result *r, char *err, size_t errlen)
{
	MYSQL_STMT *stmt = s->db->prepare(conn, sql, err, errlen);
	if (stmt == NULL) {
		*r = mariadb_not_prepared(s, conn);
		return NULL;
	}
	if (mysql_stmt_bind_param(stmt, params) != 0 || mysql_stmt_execute(stmt) != 0) {
		*r = mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				    errlen);
		return NULL;
	}
	return stmt;
}

/* Runs sql, which returns no rows; OK or the failure (the connection then given back). */
enum sesame_storage_result mariadb_execute_only(struct store *s, MYSQL *conn, const char *sql,
						MYSQL_BIND *params, char *err, size_t errlen)
{
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	mariadb_execute(s, conn, sql, params, &r, err, errlen);
	return r;
}

/*
 * The database server's time in *now_ms, Unix milliseconds: read once a transaction holds its
 * locks. On failure the connection is given back.
 */
static enum sesame_storage_result server_now(struct store *s, MYSQL *conn, long long *now_ms,
					     char *err, size_t errlen)
{
	MYSQL_BIND res;
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	MYSQL_STMT *stmt = mariadb_execute(s, conn, NOW_SQL, NULL, &r, err, errlen);
	if (stmt == NULL)
		return r;
	mariadb_bind_long(&res, now_ms);
	if (mysql_stmt_bind_result(stmt, &res) != 0 || mysql_stmt_fetch(stmt) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	mysql_stmt_free_result(stmt);
	return SESAME_STORAGE_OK;
}

/* Runs sql, which returns no rows, on a connection of its own. */
enum sesame_storage_result mariadb_run_alone(struct store *s, const char *sql, MYSQL_BIND *params,
					     char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	enum sesame_storage_result r = mariadb_execute_only(s, conn, sql, params, err, errlen);
	if (r == SESAME_STORAGE_OK)
		s->db->release(conn, false);
	return r;
}

static enum sesame_storage_result family_create_once(void *state, const struct sesame_family *f,
						     char *err, size_t errlen)
{
	MYSQL_BIND p[4];
	unsigned long lens[3];
	long long expires_at = f->expires_at;
	mariadb_bind_string(&p[0], f->id, &lens[0]);
	mariadb_bind_string(&p[1], f->subject, &lens[1]);
	mariadb_bind_string(&p[2], f->jti, &lens[2]);
	mariadb_bind_long(&p[3], &expires_at);
	return mariadb_run_alone(state, FAMILY_INSERT_SQL, p, err, errlen);
}

/* Runs REVOKE_SQL for id until until, at now_ms. */
static enum sesame_storage_result revoke_id(struct store *s, MYSQL *conn, const char *id,
					    long long until, long long now_ms, char *err,
					    size_t errlen)
{
	MYSQL_BIND p[3];
	unsigned long len;
	mariadb_bind_string(&p[0], id, &len);
	mariadb_bind_long(&p[1], &now_ms);
	mariadb_bind_long(&p[2], &until);
	return mariadb_execute_only(s, conn, REVOKE_SQL, p, err, errlen);
}

/*
 * In a transaction on conn: revokes jti until jti_until and family (its row too) until
 * family_until; either may be NULL. The family's row is locked first, as a rotation locks
 * it, so that a logout and a rotation of one family wait for each other, never deadlock;
 * the revocation time is read after it.
 */
static enum sesame_storage_result revoke_in(struct store *s, MYSQL *conn, const char *jti,
					    long long jti_until, const char *family,
					    long long family_until, char *err, size_t errlen)
{
	MYSQL_BIND p[2];
	unsigned long len;
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	if (family != NULL) {
		mariadb_bind_string(&p[0], family, &len);
		MYSQL_STMT *stmt = mariadb_execute(s, conn, FAMILY_LOCK_SQL, p, &r, err, errlen);
		if (stmt == NULL)
			return r;
		mysql_stmt_free_result(stmt);
	}
	long long now_ms = 0;
	r = server_now(s, conn, &now_ms, err, errlen);
	if (r == SESAME_STORAGE_OK && jti != NULL)
		r = revoke_id(s, conn, jti, jti_until, now_ms, err, errlen);
	if (r == SESAME_STORAGE_OK && family != NULL)
		r = revoke_id(s, conn, family, family_until, now_ms, err, errlen);
	if (r != SESAME_STORAGE_OK || family == NULL)
		return r;
	mariadb_bind_long(&p[0], &now_ms);
	mariadb_bind_string(&p[1], family, &len);
	return mariadb_execute_only(s, conn, FAMILY_REVOKE_SQL, p, err, errlen);
}

/* The family's row, locked until the transaction ends. */
struct family_row {
	char current[SESAME_TOKEN_ID_MAX + 1], previous[SESAME_TOKEN_ID_MAX + 1];
	unsigned long lens[2];
	my_bool nulls[5];
	long long rotated_at, expires_at, revoked_at;
};

static enum sesame_storage_result read_family(struct store *s, MYSQL *conn, const char *id,
					      struct family_row *row, char *err, size_t errlen)
{
	MYSQL_BIND p, res[5];
	unsigned long len;
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	mariadb_bind_string(&p, id, &len);
	MYSQL_STMT *stmt = mariadb_execute(s, conn, FAMILY_GET_SQL, &p, &r, err, errlen);
	if (stmt == NULL)
		return r;
	memset(res, 0, sizeof(res));
	memset(row, 0, sizeof(*row));
	char *text[2] = {row->current, row->previous};
	for (int i = 0; i < 2; i++) {
		res[i].buffer_type = MYSQL_TYPE_STRING;
		res[i].buffer = text[i];
		res[i].buffer_length = SESAME_TOKEN_ID_MAX;
		res[i].length = &row->lens[i];
	}
	long long *nums[3] = {&row->rotated_at, &row->expires_at, &row->revoked_at};
	for (int i = 2; i < 5; i++)
		mariadb_bind_long(&res[i], nums[i - 2]);
	for (int i = 0; i < 5; i++)
		res[i].is_null = &row->nulls[i];
	if (mysql_stmt_bind_result(stmt, res) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	int rc = mysql_stmt_fetch(stmt);
	if (rc == 0 || rc == MYSQL_DATA_TRUNCATED) {
		for (int i = 0; i < 2; i++)
			text[i][row->nulls[i] || row->lens[i] > SESAME_TOKEN_ID_MAX
				    ? 0
				    : row->lens[i]] = '\0';
		r = SESAME_STORAGE_OK;
	} else if (rc == MYSQL_NO_DATA) {
		r = SESAME_STORAGE_NOT_FOUND;
	} else {
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	}
	mysql_stmt_free_result(stmt);
	return r;
}

static enum sesame_storage_result rotate_once(struct store *s, const char *id, const char *jti,
					      const char *next, long long grace_ms,
					      long long revoke_until, char *current,
					      long long *expires_at, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	struct family_row row;
	enum sesame_storage_result r = mariadb_begin(s, conn, err, errlen);
	if (r != SESAME_STORAGE_OK)
		return r;
	/* SELECT ... FOR UPDATE: of two rotations of one family, the second waits for the
	 * first to commit, then reads its result. */
	r = read_family(s, conn, id, &row, err, errlen);
	if (r != SESAME_STORAGE_OK && r != SESAME_STORAGE_NOT_FOUND)
		return r;
	*expires_at = row.expires_at;
	if (r == SESAME_STORAGE_NOT_FOUND)
		return mariadb_commit(s, conn, r, err, errlen);
	long long now_ms = 0;
	r = server_now(s, conn, &now_ms, err, errlen);
	if (r != SESAME_STORAGE_OK)
		return r;
	long long since = now_ms - row.rotated_at;
	if (!row.nulls[4] || row.expires_at * 1000 <= now_ms)
		return mariadb_commit(s, conn, SESAME_STORAGE_REVOKED, err, errlen);
	if (strcmp(jti, row.current) == 0) {
		MYSQL_BIND p[3];
		unsigned long lens[2];
		mariadb_bind_string(&p[0], next, &lens[0]);
		mariadb_bind_long(&p[1], &now_ms);
		mariadb_bind_string(&p[2], id, &lens[1]);
		r = mariadb_execute_only(s, conn, FAMILY_ROTATE_SQL, p, err, errlen);
		if (r != SESAME_STORAGE_OK)
			return r;
		snprintf(current, SESAME_TOKEN_ID_MAX + 1, "%s", next);
		return mariadb_commit(s, conn, SESAME_STORAGE_OK, err, errlen);
	}
	/* rotated_at may come from another Galera node's clock, a few ms ahead of this one's:
	 * a rotation that lost to it (1213, retried) sees since < 0 and still has its grace. */
	if (!row.nulls[1] && strcmp(jti, row.previous) == 0 && since > -grace_ms &&
	    since < grace_ms) {
		snprintf(current, SESAME_TOKEN_ID_MAX + 1, "%s", row.current);
		return mariadb_commit(s, conn, SESAME_STORAGE_OK, err, errlen);
	}
	r = revoke_in(s, conn, NULL, 0, id, revoke_until, err, errlen);
	return r != SESAME_STORAGE_OK ? r
				      : mariadb_commit(s, conn, SESAME_STORAGE_REUSED, err, errlen);
}

static enum sesame_storage_result revoke_once(struct store *s, const char *jti, long long jti_until,
					      const char *family, long long family_until, char *err,
					      size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	enum sesame_storage_result r = mariadb_begin(s, conn, err, errlen);
	if (r == SESAME_STORAGE_OK)
		r = revoke_in(s, conn, jti, jti_until, family, family_until, err, errlen);
	return r != SESAME_STORAGE_OK ? r : mariadb_commit(s, conn, SESAME_STORAGE_OK, err, errlen);
}

typedef void (*revoked_each)(void *ctx, const char *id, long long expires_at, long long revoked_at);

static enum sesame_storage_result since_once(struct store *s, long long since_ms,
					     long long alive_at, revoked_each each, void *ctx,
					     long long *now_ms, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_BIND p[2], res[3];
	/* The time first: a revocation committed after the ids are read is stamped after it. */
	enum sesame_storage_result r = server_now(s, conn, now_ms, err, errlen);
	if (r != SESAME_STORAGE_OK)
		return r;
	mariadb_bind_long(&p[0], &since_ms);
	mariadb_bind_long(&p[1], &alive_at);
	MYSQL_STMT *stmt = mariadb_execute(s, conn, REVOKED_SINCE_SQL, p, &r, err, errlen);
	if (stmt == NULL)
		return r;
	char id[SESAME_TOKEN_ID_MAX + 1];
	unsigned long len = 0;
	long long expires_at = 0, revoked_at = 0;
	memset(res, 0, sizeof(res));
	res[0].buffer_type = MYSQL_TYPE_STRING;
	res[0].buffer = id;
	res[0].buffer_length = SESAME_TOKEN_ID_MAX;
	res[0].length = &len;
	mariadb_bind_long(&res[1], &expires_at);
	mariadb_bind_long(&res[2], &revoked_at);
	if (mysql_stmt_bind_result(stmt, res) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	int rc;
	while ((rc = mysql_stmt_fetch(stmt)) == 0) {
		id[len] = '\0';
		each(ctx, id, expires_at, revoked_at);
	}
	if (rc != MYSQL_NO_DATA)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	mysql_stmt_free_result(stmt);
	s->db->release(conn, false);
	return SESAME_STORAGE_OK;
}

static enum sesame_storage_result purge_once(struct store *s, long long before, char *err,
					     size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_BIND p;
	mariadb_bind_long(&p, &before);
	enum sesame_storage_result r =
	    mariadb_execute_only(s, conn, PURGE_REVOKED_SQL, &p, err, errlen);
	if (r == SESAME_STORAGE_OK)
		r = mariadb_execute_only(s, conn, PURGE_FAMILIES_SQL, &p, err, errlen);
	if (r == SESAME_STORAGE_OK)
		r = mariadb_execute_only(s, conn, PURGE_FAILURES_SQL, NULL, err, errlen);
	if (r == SESAME_STORAGE_OK)
		r = mariadb_execute_only(s, conn, MARIADB_PURGE_OTP_SQL, NULL, err, errlen);
	if (r == SESAME_STORAGE_OK)
		s->db->release(conn, false);
	return r;
}

/* The ids of subject's live families but except (NULL: none), locked; a malloc'd array of
 * *n. On failure the connection is given back. */
static enum sesame_storage_result subject_families(struct store *s, MYSQL *conn,
						   const char *subject, const char *except,
						   char (**ids)[SESAME_TOKEN_ID_MAX + 1], size_t *n,
						   char *err, size_t errlen)
{
	MYSQL_BIND p[2], res;
	unsigned long plen, elen, len = 0;
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	char id[SESAME_TOKEN_ID_MAX + 1];
	size_t cap = 0;
	*ids = NULL;
	*n = 0;
	mariadb_bind_string(&p[0], subject, &plen);
	if (except != NULL) {
		mariadb_bind_string(&p[1], except, &elen);
	} else {
		memset(&p[1], 0, sizeof(p[1]));
		p[1].buffer_type = MYSQL_TYPE_NULL;
	}
	MYSQL_STMT *stmt = mariadb_execute(s, conn, SUBJECT_FAMILIES_SQL, p, &r, err, errlen);
	if (stmt == NULL)
		return r;
	memset(&res, 0, sizeof(res));
	res.buffer_type = MYSQL_TYPE_STRING;
	res.buffer = id;
	res.buffer_length = SESAME_TOKEN_ID_MAX;
	res.length = &len;
	if (mysql_stmt_bind_result(stmt, &res) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	int rc = 0;
	bool oom = false;
	while (!oom && (rc = mysql_stmt_fetch(stmt)) == 0) {
		if (*n == cap) {
			void *grown = realloc(*ids, (cap ? cap * 2 : 8) * sizeof(**ids));
			if ((oom = grown == NULL))
				break;
			*ids = grown;
			cap = cap ? cap * 2 : 8;
		}
		id[len] = '\0';
		memcpy((*ids)[(*n)++], id, len + 1);
	}
	if (!oom && rc != MYSQL_NO_DATA)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	mysql_stmt_free_result(stmt);
	if (oom) {
		snprintf(err, errlen, "out of memory");
		mysql_rollback(conn);
		s->db->release(conn, false);
		return SESAME_STORAGE_FAILED;
	}
	return SESAME_STORAGE_OK;
}

/* Writes subject's cutoff id into id; false, with the reason in err, when it cannot have one. */
static bool cutoff_id(const char *subject, char id[SESAME_TOKEN_ID_MAX + 1], char *err,
		      size_t errlen)
{
	if (sesame_subject_cutoff_id(subject, id) == 0)
		return true;
	snprintf(err, errlen, "a subject is 1 to %d bytes of printable ASCII", SESAME_SUBJECT_MAX);
	return false;
}

/* In a transaction, the families locked: the subject's cutoff, at the server's time now. */
static enum sesame_storage_result revoke_cutoff(struct store *s, MYSQL *conn, const char *id,
						long long until, char *err, size_t errlen)
{
	long long now_ms = 0;
	enum sesame_storage_result r = server_now(s, conn, &now_ms, err, errlen);
	MYSQL_BIND p[3];
	unsigned long len;
	mariadb_bind_string(&p[0], id, &len);
	mariadb_bind_long(&p[1], &now_ms);
	mariadb_bind_long(&p[2], &until);
	return r == SESAME_STORAGE_OK ? mariadb_execute_only(s, conn, CUTOFF_SQL, p, err, errlen)
				      : r;
}

/* A subject's revoked families: the callers name them only once they are committed. */
struct revoked_families {
	char (*ids)[SESAME_TOKEN_ID_MAX + 1];
	size_t n;
};

/* In a transaction: revokes subject's live families but except until until and its cutoff
 * (cutoff, its id), the families' ids in *out (to free). On failure the connection is given
 * back. */
static enum sesame_storage_result revoke_subject_in(struct store *s, MYSQL *conn,
						    const char *subject, const char *cutoff,
						    const char *except, long long until,
						    struct revoked_families *out, char *err,
						    size_t errlen)
{
	enum sesame_storage_result r =
	    subject_families(s, conn, subject, except, &out->ids, &out->n, err, errlen);
	for (size_t i = 0; r == SESAME_STORAGE_OK && i < out->n; i++)
		r = revoke_in(s, conn, NULL, 0, out->ids[i], until, err, errlen);
	if (r == SESAME_STORAGE_OK)
		r = revoke_cutoff(s, conn, cutoff, until, err, errlen);
	return r;
}

static enum sesame_storage_result subject_revoke_once(struct store *s, const char *subject,
						      const char *cutoff, const char *except,
						      long long until,
						      void (*each)(void *ctx, const char *id),
						      void *ctx, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	struct revoked_families fam = {NULL, 0};
	enum sesame_storage_result r = mariadb_begin(s, conn, err, errlen);
	if (r == SESAME_STORAGE_OK)
		r = revoke_subject_in(s, conn, subject, cutoff, except, until, &fam, err, errlen);
	if (r == SESAME_STORAGE_OK)
		r = mariadb_commit(s, conn, SESAME_STORAGE_OK, err, errlen);
	for (size_t i = 0; r == SESAME_STORAGE_OK && i < fam.n; i++)
		each(ctx, fam.ids[i]);
	free(fam.ids);
	return r;
}

static enum sesame_storage_result subject_revoke(void *state, const char *subject,
						 const char *except_family, long long until,
						 void (*each)(void *ctx, const char *id), void *ctx,
						 char *err, size_t errlen)
{
	char cutoff[SESAME_TOKEN_ID_MAX + 1];
	if (!cutoff_id(subject, cutoff, err, errlen))
		return SESAME_STORAGE_FAILED;
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = subject_revoke_once(state, subject, cutoff, except_family, until, each, ctx,
					err, errlen);
	} while (mariadb_retry(state, &t, r, false));
	return r;
}

static enum sesame_storage_result family_create(void *state, const struct sesame_family *f,
						char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = family_create_once(state, f, err, errlen);
	} while (mariadb_retry(state, &t, r, false));
	return r;
}

static enum sesame_storage_result family_rotate(void *state, const char *id, const char *jti,
						const char *next, long long grace_ms,
						long long revoke_until, char *current,
						long long *expires_at, char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = rotate_once(state, id, jti, next, grace_ms, revoke_until, current, expires_at,
				err, errlen);
	} while (mariadb_retry(state, &t, r, false));
	return r;
}

static enum sesame_storage_result token_revoke(void *state, const char *jti, long long jti_until,
					       const char *family, long long family_until,
					       char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = revoke_once(state, jti, jti_until, family, family_until, err, errlen);
	} while (mariadb_retry(state, &t, r, true));
	return r;
}

static enum sesame_storage_result revoked_since(void *state, long long since_ms, long long alive_at,
						revoked_each each, void *ctx, long long *now_ms,
						char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = since_once(state, since_ms, alive_at, each, ctx, now_ms, err, errlen);
	} while (mariadb_retry(state, &t, r, true));
	return r;
}

static enum sesame_storage_result token_purge(void *state, long long before, char *err,
					      size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = purge_once(state, before, err, errlen);
	} while (mariadb_retry(state, &t, r, true));
	return r;
}

/* ---- failed log-ins ---- */

#define FAILURE_CHECK_SQL                                                                          \
	"SELECT GREATEST(`tat` - " NOW_MS_SQL " + ? - ?, 0) FROM `sesame_login_failures` WHERE "   \
	"`account` = ?"
/* One statement, so two nodes recording at once both count: the row lock orders them. */
#define FAILURE_RECORD_SQL                                                                         \
	"SET STATEMENT innodb_lock_wait_timeout = 5 FOR INSERT INTO `sesame_login_failures` "      \
	"(`account`, `tat`) VALUES (?, " NOW_MS_SQL " + ?) ON DUPLICATE KEY UPDATE `tat` = "       \
	"LEAST(GREATEST(`tat`, " NOW_MS_SQL ") + ?, " NOW_MS_SQL " + ?)"
#define FAILURE_RESET_SQL "DELETE FROM `sesame_login_failures` WHERE `account` = ?"

/* Runs sql with params on a connection of its own: its first row's first column in *out,
 * which stays 0 without a row. */
static enum sesame_storage_result read_long(struct store *s, const char *sql, MYSQL_BIND *params,
					    long long *out, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_BIND res;
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	MYSQL_STMT *stmt = mariadb_execute(s, conn, sql, params, &r, err, errlen);
	if (stmt == NULL)
		return r;
	*out = 0;
	mariadb_bind_long(&res, out);
	if (mysql_stmt_bind_result(stmt, &res) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	int rc = mysql_stmt_fetch(stmt);
	if (rc != 0 && rc != MYSQL_NO_DATA)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	mysql_stmt_free_result(stmt);
	s->db->release(conn, false);
	return SESAME_STORAGE_OK;
}

static enum sesame_storage_result check_once(struct store *s, const char *account,
					     long long interval_ms, long long period_ms,
					     long long *retry_ms, char *err, size_t errlen)
{
	MYSQL_BIND p[3];
	unsigned long len;
	mariadb_bind_long(&p[0], &interval_ms);
	mariadb_bind_long(&p[1], &period_ms);
	mariadb_bind_string(&p[2], account, &len);
	return read_long(s, FAILURE_CHECK_SQL, p, retry_ms, err, errlen);
}

static enum sesame_storage_result record_once(struct store *s, const char *account,
					      long long interval_ms, long long period_ms, char *err,
					      size_t errlen)
{
	MYSQL_BIND p[4];
	unsigned long len;
	mariadb_bind_string(&p[0], account, &len);
	mariadb_bind_long(&p[1], &interval_ms);
	mariadb_bind_long(&p[2], &interval_ms);
	mariadb_bind_long(&p[3], &period_ms);
	return mariadb_run_alone(s, FAILURE_RECORD_SQL, p, err, errlen);
}

static enum sesame_storage_result reset_once(struct store *s, const char *account, char *err,
					     size_t errlen)
{
	MYSQL_BIND p;
	unsigned long len;
	mariadb_bind_string(&p, account, &len);
	return mariadb_run_alone(s, FAILURE_RESET_SQL, &p, err, errlen);
}

static enum sesame_storage_result failure_check(void *state, const char *account,
						long long interval_ms, long long period_ms,
						long long *retry_ms, char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = check_once(state, account, interval_ms, period_ms, retry_ms, err, errlen);
	} while (mariadb_retry(state, &t, r, true));
	return r;
}

/* A failure counted twice is a guess counted twice: only a statement that never ran is
 * tried again. */
static enum sesame_storage_result failure_record(void *state, const char *account,
						 long long interval_ms, long long period_ms,
						 char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = record_once(state, account, interval_ms, period_ms, err, errlen);
	} while (mariadb_retry(state, &t, r, false));
	return r;
}

static enum sesame_storage_result failure_reset(void *state, const char *account, char *err,
						size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = reset_once(state, account, err, errlen);
	} while (mariadb_retry(state, &t, r, true));
	return r;
}

static enum sesame_storage_result ping_once(struct store *s, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	if (mysql_ping(conn) != 0)
		return mariadb_failed(s, conn, mysql_errno(conn), mysql_error(conn), err, errlen);
	s->db->release(conn, false);
	return SESAME_STORAGE_OK;
}

static enum sesame_storage_result ping(void *state, char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = ping_once(state, err, errlen);
	} while (mariadb_retry(state, &t, r, true));
	return r;
}

/* ---- user administration ---- */

#define STATE_DISABLE_SQL                                                                          \
	"INSERT INTO `sesame_user_state` (`user_id`, `disabled_at`) VALUES (?, UNIX_TIMESTAMP()) " \
	"ON DUPLICATE KEY UPDATE `disabled_at` = COALESCE(`disabled_at`, VALUES(`disabled_at`))"
#define STATE_ENABLE_SQL	    "UPDATE `sesame_user_state` SET `disabled_at` = NULL WHERE `user_id` = ?"
#define STATE_DELETE_SQL	    "DELETE FROM `sesame_user_state` WHERE `user_id` = ?"
#define SUBJECT_FAMILIES_DELETE_SQL "DELETE FROM `sesame_refresh_families` WHERE `subject` = ?"

static enum sesame_storage_result set_disabled_once(struct store *s, long long id, bool disabled,
						    char *err, size_t errlen)
{
	MYSQL_BIND p;
	mariadb_bind_long(&p, &id);
	return mariadb_run_alone(s, disabled ? STATE_DISABLE_SQL : STATE_ENABLE_SQL, &p, err,
				 errlen);
}

static enum sesame_storage_result user_set_disabled(void *state, long long id, bool disabled,
						    char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = set_disabled_once(state, id, disabled, err, errlen);
	} while (mariadb_retry(state, &t, r, true));
	return r;
}

typedef void (*user_each)(void *ctx, const struct sesame_user *user, const char *created,
			  long long disabled_at);

/* One row of user_list: the strings, each NUL-terminated in its own buffer. */
struct list_row {
	long long id, disabled_at;
	char text[3][256];
	unsigned long lens[5];
	my_bool nulls[5];
};

static void bind_list_row(MYSQL_BIND *res, struct list_row *row)
{
	memset(res, 0, 5 * sizeof(*res));
	mariadb_bind_long(&res[0], &row->id);
	mariadb_bind_long(&res[4], &row->disabled_at);
	for (int i = 1; i < 4; i++) {
		res[i].buffer_type = MYSQL_TYPE_STRING;
		res[i].buffer = row->text[i - 1];
		res[i].buffer_length = sizeof(row->text[i - 1]) - 1;
		res[i].length = &row->lens[i];
	}
	for (int i = 0; i < 5; i++)
		res[i].is_null = &row->nulls[i];
}

/* A users table of another application may have no created_at: the list then does without. */
static MYSQL_STMT *prepare_list(struct store *s, MYSQL *conn, char *err, size_t errlen)
{
	MYSQL_STMT *stmt = s->db->prepare(conn, s->list_sql, err, errlen);
	return stmt != NULL ? stmt : s->db->prepare(conn, s->list_bare_sql, err, errlen);
}

/* One user_list call: its callback, and how many rows it was handed over every try. */
struct list_call {
	user_each each;
	void *ctx;
	long long delivered;
};

static enum sesame_storage_result list_once(struct store *s, long long after, long long limit,
					    struct list_call *call, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_STMT *stmt = prepare_list(s, conn, err, errlen);
	if (stmt == NULL)
		return mariadb_not_prepared(s, conn);
	MYSQL_BIND p[2], res[5];
	struct list_row row;
	mariadb_bind_long(&p[0], &after);
	mariadb_bind_long(&p[1], &limit);
	bind_list_row(res, &row);
	if (mysql_stmt_bind_param(stmt, p) != 0 || mysql_stmt_execute(stmt) != 0 ||
	    mysql_stmt_bind_result(stmt, res) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	int rc;
	while ((rc = mysql_stmt_fetch(stmt)) == 0 || rc == MYSQL_DATA_TRUNCATED) {
		for (int i = 1; i < 4; i++)
			row.text[i - 1][row.nulls[i]	    ? 0
					: row.lens[i] < 255 ? row.lens[i]
							    : 255] = '\0';
		struct sesame_user u = {
		    .id = row.id, .email = row.text[0], .username = row.text[1]};
		call->delivered++;
		call->each(call->ctx, &u, row.nulls[3] ? NULL : row.text[2],
			   row.nulls[4] ? 0 : row.disabled_at);
	}
	if (rc != MYSQL_NO_DATA)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	mysql_stmt_free_result(stmt);
	s->db->release(conn, false);
	return SESAME_STORAGE_OK;
}

static enum sesame_storage_result user_list(void *state, long long after, long long limit,
					    user_each each, void *ctx, char *err, size_t errlen)
{
	struct mariadb_tries t = {0, false};
	struct list_call call = {each, ctx, 0};
	enum sesame_storage_result r;
	/* Once a row was handed over, a try again would hand it over twice: a failure is final. */
	do {
		mariadb_forget_error();
		r = list_once(state, after, limit, &call, err, errlen);
	} while (call.delivered == 0 && mariadb_retry(state, &t, r, true));
	return r;
}

/* In the transaction: what sesame keeps about the user deleted with it. */
static enum sesame_storage_result delete_state(struct store *s, MYSQL *conn, long long id,
					       const char *subject, const char *cutoff,
					       const char *email, long long until, char *err,
					       size_t errlen)
{
	MYSQL_BIND p;
	unsigned long len;
	struct revoked_families fam = {NULL, 0};
	enum sesame_storage_result r =
	    revoke_subject_in(s, conn, subject, cutoff, NULL, until, &fam, err, errlen);
	free(fam.ids);
	mariadb_bind_string(&p, subject, &len);
	if (r == SESAME_STORAGE_OK)
		r = mariadb_execute_only(s, conn, SUBJECT_FAMILIES_DELETE_SQL, &p, err, errlen);
	mariadb_bind_string(&p, email, &len);
	if (r == SESAME_STORAGE_OK)
		r = mariadb_execute_only(s, conn, FAILURE_RESET_SQL, &p, err, errlen);
	mariadb_bind_long(&p, &id);
	if (r == SESAME_STORAGE_OK)
		r = mariadb_execute_only(s, conn, STATE_DELETE_SQL, &p, err, errlen);
	if (r == SESAME_STORAGE_OK)
		r = mariadb_execute_only(s, conn, MARIADB_OTP_REVOKE_SQL, &p, err, errlen);
	return r;
}

static enum sesame_storage_result delete_once(struct store *s, long long id, const char *subject,
					      const char *cutoff, const char *email,
					      long long until, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	MYSQL_BIND p;
	enum sesame_storage_result r = mariadb_begin(s, conn, err, errlen);
	MYSQL_STMT *stmt = NULL;
	mariadb_bind_long(&p, &id);
	if (r == SESAME_STORAGE_OK)
		stmt = mariadb_execute(s, conn, s->delete_sql, &p, &r, err, errlen);
	if (stmt == NULL)
		return r;
	my_ulonglong deleted = mysql_stmt_affected_rows(stmt);
	if (deleted > 0)
		r = delete_state(s, conn, id, subject, cutoff, email, until, err, errlen);
	if (r == SESAME_STORAGE_OK)
		r = mariadb_commit(s, conn,
				   deleted > 0 ? SESAME_STORAGE_OK : SESAME_STORAGE_NOT_FOUND, err,
				   errlen);
	return r;
}

static enum sesame_storage_result user_delete(void *state, long long id, const char *subject,
					      const char *email, long long until, char *err,
					      size_t errlen)
{
	char cutoff[SESAME_TOKEN_ID_MAX + 1];
	if (!cutoff_id(subject, cutoff, err, errlen))
		return SESAME_STORAGE_FAILED;
	struct mariadb_tries t = {0, false};
	enum sesame_storage_result r;
	do {
		mariadb_forget_error();
		r = delete_once(state, id, subject, cutoff, email, until, err, errlen);
	} while (mariadb_retry(state, &t, r, false));
	return r;
}

SESAME_STORAGE_PLUGIN("mariadb", PLUGIN_VERSION, .init = init, .fini = fini,
		      .worker_start = worker_start, .worker_stop = worker_stop,
		      .user_create = user_create, .user_find = user_find,
		      .user_set_password = user_set_password, .family_create = family_create,
		      .family_rotate = family_rotate, .token_revoke = token_revoke,
		      .revoked_since = revoked_since, .subject_revoke = subject_revoke,
		      .token_purge = token_purge, .failure_check = failure_check,
		      .failure_record = failure_record, .failure_reset = failure_reset,
		      .ping = ping, .user_set_disabled = user_set_disabled, .user_list = user_list,
		      .user_delete = user_delete, .user_set_verified = mariadb_user_set_verified,
		      .user_set_email = mariadb_user_set_email, .otp_create = mariadb_otp_create,
		      .otp_spend = mariadb_otp_spend, .otp_revoke = mariadb_otp_revoke,
		      .event_add = mariadb_event_add, .event_list = mariadb_event_list,
		      .event_purge = mariadb_event_purge, .query = mariadb_query,
		      .otp_find = mariadb_otp_find, .migrate = mariadb_migrate);
