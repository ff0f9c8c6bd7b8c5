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
 * migrate applies the numbered migrations of scripts/schema/mariadb, compiled in, recording
 * each in sesame_migrations. A connection error (server down or restarted) answers
 * UNAVAILABLE and gives the connection back as broken, so the pool makes a new one.
 */
#include <sesame/plugin.h>

#include <errmsg.h>
#include <mysql.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
};

#include "mariadb_schema.h"

struct store {
	const struct sesame_host *host;
	const struct sesame_mariadb *db;
	const struct sesame_users_schema *users;
	char insert_sql[512];
	char find_by_email_sql[512];
	char find_by_id_sql[512];
	char set_password_sql[512];
};

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
	snprintf(s->find_by_email_sql, sizeof(s->find_by_email_sql),
		 "SELECT `%s`, `%s`, `%s`, `%s` FROM `%s` WHERE `%s` = ?", u->id, u->email,
		 u->username, u->password, u->table, u->email);
	snprintf(s->find_by_id_sql, sizeof(s->find_by_id_sql),
		 "SELECT `%s`, `%s`, `%s`, `%s` FROM `%s` WHERE `%s` = ?", u->id, u->email,
		 u->username, u->password, u->table, u->id);
	snprintf(s->set_password_sql, sizeof(s->set_password_sql),
		 "UPDATE `%s` SET `%s` = ? WHERE `%s` = ?", u->table, u->password, u->id);
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

/* The error code of this thread's last failed statement. */
static _Thread_local unsigned int last_code;

static bool connection_error(unsigned int code)
{
	return code == CR_CONNECTION_ERROR || code == CR_CONN_HOST_ERROR ||
	       code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST ||
	       code == CR_SERVER_LOST_EXTENDED || code == CR_COMMANDS_OUT_OF_SYNC;
}

/* Classifies a failed statement and gives its connection back accordingly. */
static enum sesame_storage_result failed(struct store *s, MYSQL *conn, unsigned int code,
					 const char *msg, char *err, size_t errlen)
{
	snprintf(err, errlen, "MariaDB: %s", msg);
	last_code = code;
	/* An error without a connection code (a statement that could not be prepared) may
	 * still come from a dead connection: ask it. */
	bool gone = connection_error(code) || (code != ER_DUP_ENTRY && mysql_ping(conn) != 0);
	s->db->release(conn, gone);
	if (code == ER_DUP_ENTRY)
		return SESAME_STORAGE_CONFLICT;
	return gone ? SESAME_STORAGE_UNAVAILABLE : SESAME_STORAGE_FAILED;
}

/* A statement the pool could not prepare (its reason is in err already): a dead connection,
 * or a schema that does not match. */
static enum sesame_storage_result not_prepared(struct store *s, MYSQL *conn)
{
	bool gone = mysql_ping(conn) != 0;
	last_code = gone ? CR_SERVER_GONE_ERROR : 0; /* the statement never ran */
	s->db->release(conn, gone);
	return gone ? SESAME_STORAGE_UNAVAILABLE : SESAME_STORAGE_FAILED;
}

/* ---- migrations ---- */

/* Replaces {users}, {id}, ... with storage.users' names. */
static char *expand(const struct sesame_users_schema *u, const char *sql)
{
	const char *keys[] = {"{users}", "{id}", "{email}", "{username}", "{password}"};
	const char *vals[] = {u->table, u->id, u->email, u->username, u->password};
	size_t cap = strlen(sql) * 2 + 512, n = 0;
	char *out = malloc(cap);
	if (out == NULL)
		return NULL;
	for (const char *p = sql; *p != '\0';) {
		size_t k = 0;
		while (k < 5 && strncmp(p, keys[k], strlen(keys[k])) != 0)
			k++;
		const char *piece = k < 5 ? vals[k] : p;
		size_t len = k < 5 ? strlen(vals[k]) : 1;
		if (n + len + 1 > cap) {
			free(out);
			return NULL;
		}
		memcpy(out + n, piece, len);
		n += len;
		p += k < 5 ? strlen(keys[k]) : 1;
	}
	out[n] = '\0';
	return out;
}

static int run(MYSQL *conn, const char *sql, char *err, size_t errlen)
{
	if (mysql_real_query(conn, sql, (unsigned long)strlen(sql)) == 0) {
		MYSQL_RES *res = mysql_store_result(conn);
		if (res != NULL)
			mysql_free_result(res);
		return 0;
	}
	snprintf(err, errlen, "MariaDB: %s", mysql_error(conn));
	return -1;
}

static int run_select(MYSQL *conn, const char *sql)
{
	return mysql_real_query(conn, sql, (unsigned long)strlen(sql));
}

static int applied_version(MYSQL *conn, int *version, char *err, size_t errlen)
{
	if (run(conn,
		"CREATE TABLE IF NOT EXISTS `sesame_migrations` (`version` INT NOT NULL PRIMARY "
		"KEY, `name` VARCHAR(255) NOT NULL, `applied_at` TIMESTAMP NOT NULL DEFAULT "
		"CURRENT_TIMESTAMP) ENGINE=InnoDB",
		err, errlen) != 0 ||
	    run_select(conn, "SELECT COALESCE(MAX(`version`), 0) FROM `sesame_migrations`") != 0) {
		if (err[0] == '\0')
			snprintf(err, errlen, "MariaDB: %s", mysql_error(conn));
		return -1;
	}
	MYSQL_RES *res = mysql_store_result(conn);
	MYSQL_ROW row = res != NULL ? mysql_fetch_row(res) : NULL;
	*version = row != NULL && row[0] != NULL ? atoi(row[0]) : 0;
	if (res != NULL)
		mysql_free_result(res);
	return 0;
}

static int apply(struct store *s, MYSQL *conn, const struct migration *m, char *err, size_t errlen)
{
	char *sql = expand(s->users, m->sql);
	char record[400];
	if (sql == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = run(conn, sql, err, errlen);
	free(sql);
	snprintf(record, sizeof(record),
		 "INSERT INTO `sesame_migrations` (`version`, `name`) VALUES (%d, '%s')",
		 m->version, m->name);
	if (rc == 0)
		rc = run(conn, record, err, errlen);
	if (rc == 0)
		s->host->log(s->host, SESAME_LOG_INFO, "applied migration %s", m->name);
	return rc;
}

static int migrate(void *state, char *err, size_t errlen)
{
	struct store *s = state;
	int version = 0, rc = 0;
	err[0] = '\0';
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return -1;
	/* Two sesame masters starting together: the second waits, then finds nothing to do. */
	rc = run(conn, "SELECT GET_LOCK('sesame_migrate', 60)", err, errlen);
	if (rc == 0)
		rc = applied_version(conn, &version, err, errlen);
	for (size_t i = 0; rc == 0 && i < sizeof(migrations) / sizeof(migrations[0]); i++) {
		if (migrations[i].version > version)
			rc = apply(s, conn, &migrations[i], err, errlen);
	}
	char ignored[8];
	run(conn, "SELECT RELEASE_LOCK('sesame_migrate')", ignored, sizeof(ignored));
	s->db->release(conn, rc != 0 && connection_error(mysql_errno(conn)));
	return rc;
}

/* ---- users ---- */

static void bind_string(MYSQL_BIND *b, const char *s, unsigned long *len)
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
		return not_prepared(s, conn);
	MYSQL_BIND params[3];
	unsigned long lens[3];
	bind_string(&params[0], user->email, &lens[0]);
	bind_string(&params[1], user->username, &lens[1]);
	bind_string(&params[2], user->password, &lens[2]);
	if (mysql_stmt_bind_param(stmt, params) != 0 || mysql_stmt_execute(stmt) != 0)
		return failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err, errlen);
	*id = (long long)mysql_stmt_insert_id(stmt);
	mysql_stmt_reset(stmt);
	s->db->release(conn, false);
	return SESAME_STORAGE_OK;
}

/* Binds the four result columns: the strings go into buf, one after another. */
static void bind_user(MYSQL_BIND *res, long long *id, char *buf, size_t buflen, unsigned long *lens,
		      my_bool *nulls)
{
	memset(res, 0, 4 * sizeof(*res));
	res[0].buffer_type = MYSQL_TYPE_LONGLONG;
	res[0].buffer = id;
	res[0].is_null = &nulls[0];
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
		return not_prepared(s, conn);
	MYSQL_BIND param, res[4];
	unsigned long plen, lens[4] = {0};
	my_bool nulls[4] = {0};
	long long id = 0, wanted = 0;
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
		bind_string(&param, value, &plen);
	}
	bind_user(res, &id, buf, buflen, lens, nulls);
	if (mysql_stmt_bind_param(stmt, &param) != 0 || mysql_stmt_execute(stmt) != 0 ||
	    mysql_stmt_bind_result(stmt, res) != 0)
		return failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err, errlen);
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
		*out = (struct sesame_user){
		    .id = id, .email = buf, .username = buf + part, .password = buf + 2 * part};
	}
	mysql_stmt_free_result(stmt);
	mysql_stmt_reset(stmt);
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
		return not_prepared(s, conn);
	MYSQL_BIND params[2];
	unsigned long len;
	bind_string(&params[0], password, &len);
	memset(&params[1], 0, sizeof(params[1]));
	params[1].buffer_type = MYSQL_TYPE_LONGLONG;
	params[1].buffer = &id;
	if (mysql_stmt_bind_param(stmt, params) != 0 || mysql_stmt_execute(stmt) != 0)
		return failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err, errlen);
	/* A new hash always differs from the old one (a new salt): 0 rows means no such user. */
	my_ulonglong changed = mysql_stmt_affected_rows(stmt);
	mysql_stmt_reset(stmt);
	s->db->release(conn, false);
	return changed > 0 ? SESAME_STORAGE_OK : SESAME_STORAGE_NOT_FOUND;
}

/*
 * A connection that died while idle (a server restart) fails its next statement before the
 * statement runs: CR_SERVER_GONE_ERROR. Such a statement is tried once more, on a new
 * connection. Reads and the password update are tried again after any connection error:
 * running them twice is harmless, unlike an insert that may have been committed.
 */
static bool again(enum sesame_storage_result r, bool idempotent)
{
	bool retry = r == SESAME_STORAGE_UNAVAILABLE &&
		     (idempotent ? connection_error(last_code) : last_code == CR_SERVER_GONE_ERROR);
	last_code = 0;
	return retry;
}

static enum sesame_storage_result user_create(void *state, const struct sesame_user *user,
					      long long *id, char *err, size_t errlen)
{
	last_code = 0;
	enum sesame_storage_result r = create_once(state, user, id, err, errlen);
	return again(r, false) ? create_once(state, user, id, err, errlen) : r;
}

static enum sesame_storage_result user_find(void *state, const char *by, const char *value,
					    struct sesame_user *out, char *buf, size_t buflen,
					    char *err, size_t errlen)
{
	last_code = 0;
	enum sesame_storage_result r = find_once(state, by, value, out, buf, buflen, err, errlen);
	return again(r, true) ? find_once(state, by, value, out, buf, buflen, err, errlen) : r;
}

static enum sesame_storage_result user_set_password(void *state, long long id, const char *password,
						    char *err, size_t errlen)
{
	last_code = 0;
	enum sesame_storage_result r = set_password_once(state, id, password, err, errlen);
	return again(r, true) ? set_password_once(state, id, password, err, errlen) : r;
}

SESAME_PLUGIN_EXPORT const struct sesame_storage sesame_plugin = {
    .header = SESAME_PLUGIN_HEADER(struct sesame_storage, SESAME_PLUGIN_STORAGE, "mariadb",
				   PLUGIN_VERSION),
    .init = init,
    .fini = fini,
    .migrate = migrate,
    .worker_start = worker_start,
    .worker_stop = worker_stop,
    .user_create = user_create,
    .user_find = user_find,
    .user_set_password = user_set_password,
};
