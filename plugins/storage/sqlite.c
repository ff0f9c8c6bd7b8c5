/*
 * sqlite.c: the SQLite user store, sesame's embedded default for one machine and for trying
 * sesame out. One database file (storage.sqlite.path), shared by every worker.
 *
 * Nothing stays open across fork: init only reads the configuration, migrate (in a child of
 * the master, as server.user) opens the file, made 0600 when it is new, applies the numbered
 * migrations of scripts/schema/sqlite, compiled in, and closes it. Each worker opens a small
 * set of connections in worker_start (WAL, so readers never wait for the writer;
 * synchronous=FULL; foreign keys; a busy timeout for the other workers' writes; defensive, with
 * no fts3_tokenizer and an untrusted schema: harden); a job thread
 * borrows one connection at a time, so no connection is ever used by two threads at once.
 * Statements are prepared once per connection, on first use, with the table and column names of
 * storage.users, which are checked plain identifiers and quoted: the same plugin runs on sesame's
 * own `users` table and on a tutorial's `user`.
 *
 * E-mails are compared with NOCASE, and a unique NOCASE index settles concurrent registrations
 * of one address: the loser gets CONFLICT. NOCASE folds ASCII letters only (the email
 * validator lower-cases domains already; a local part's other letters keep their case).
 * Autocommit is on, so a row is committed when user_create returns; synchronous=FULL makes
 * that commit durable, a power loss included: an answered registration is never lost.
 *
 * It also keeps the token state (refresh families, revoked ids) in sesame's own tables,
 * whatever storage.users says. Each token-state function is one transaction begun with BEGIN
 * IMMEDIATE, which takes the write lock first (waiting up to the busy timeout); the time is
 * read after, so a revocation's time is never older than its commit by more than the writes.
 * Failed log-ins per account are one statement each, on SQLite's own clock.
 * The time is SQLite's own ('now'): the store's clock, as the MariaDB store's is its server's.
 * The functions of ABI 1.1 live in sqlite_accounts.c (one-time tokens, events) and
 * sqlite_query.c (route scripts' statements), on the connections and helpers of this file
 * (sqlite_private.h).
 */
#include <sesame/plugin.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
};

#include "sqlite_private.h"
#include "sqlite_schema.h"

#define DEFAULT_PATH "/var/lib/sesame/sesame.db"

/* The token state's statements: sesame's own tables, whatever storage.users says. */
static const char *const token_sql[STATEMENTS] = {
    [BEGIN] = "BEGIN IMMEDIATE",
    [COMMIT] = "COMMIT",
    [ROLLBACK] = "ROLLBACK",
    [FAMILY_INSERT] =
	"INSERT INTO \"sesame_refresh_families\" (\"id\", \"subject\", "
	"\"current_jti\", \"rotated_at\", \"expires_at\") VALUES (?1, ?2, ?3, ?4, ?5)",
    [FAMILY_GET] = "SELECT \"current_jti\", \"previous_jti\", \"rotated_at\", \"expires_at\", "
		   "\"revoked_at\" FROM \"sesame_refresh_families\" WHERE \"id\" = ?1",
    [FAMILY_ROTATE] = "UPDATE \"sesame_refresh_families\" SET \"previous_jti\" = "
		      "\"current_jti\", \"current_jti\" = ?2, \"rotated_at\" = ?3 WHERE \"id\" = "
		      "?1",
    [FAMILY_REVOKE] = "UPDATE \"sesame_refresh_families\" SET \"revoked_at\" = ?2 WHERE "
		      "\"id\" = ?1 AND \"revoked_at\" IS NULL",
    /* Revoked again with a later expiry: the row takes it, and a new time, so that every
     * worker fetches it again. */
    [REVOKE] = "INSERT INTO \"sesame_revoked_tokens\" (\"id\", \"revoked_at\", \"expires_at\") "
	       "VALUES (?1, ?2, ?3) ON CONFLICT (\"id\") DO UPDATE SET \"expires_at\" = "
	       "excluded.\"expires_at\", \"revoked_at\" = excluded.\"revoked_at\" WHERE "
	       "\"expires_at\" <> 0 AND (excluded.\"expires_at\" = 0 OR excluded.\"expires_at\" > "
	       "\"expires_at\")",
    /* A subject's cutoff always takes the new time (it only moves later) and the later
     * expiry. */
    [CUTOFF] = "INSERT INTO \"sesame_revoked_tokens\" (\"id\", \"revoked_at\", \"expires_at\") "
	       "VALUES (?1, ?2, ?3) ON CONFLICT (\"id\") DO UPDATE SET \"revoked_at\" = "
	       "excluded.\"revoked_at\", \"expires_at\" = CASE WHEN \"expires_at\" = 0 OR "
	       "excluded.\"expires_at\" = 0 THEN 0 ELSE MAX(\"expires_at\", "
	       "excluded.\"expires_at\") END",
    [REVOKED_SINCE] = "SELECT \"id\", \"expires_at\", \"revoked_at\" FROM "
		      "\"sesame_revoked_tokens\" WHERE \"revoked_at\" >= ?1 AND (\"expires_at\" "
		      "= 0 OR \"expires_at\" >= ?2)",
    [PURGE_REVOKED] = "DELETE FROM \"sesame_revoked_tokens\" WHERE \"expires_at\" <> 0 AND "
		      "\"expires_at\" < ?1",
    [PURGE_FAMILIES] = "DELETE FROM \"sesame_refresh_families\" WHERE \"expires_at\" < ?1",
    [SUBJECT_FAMILIES] = "SELECT \"id\" FROM \"sesame_refresh_families\" WHERE \"subject\" = ?1 "
			 "AND \"revoked_at\" IS NULL AND \"expires_at\" * 1000 > ?2 AND \"id\" IS "
			 "NOT ?3",
    [FAILURE_CHECK] = "SELECT MAX(\"tat\" - " SQLITE_MS " + ?2 - ?3, 0) FROM "
		      "\"sesame_login_failures\" WHERE \"account\" = ?1",
    [FAILURE_RECORD] = "INSERT INTO \"sesame_login_failures\" (\"account\", \"tat\") VALUES "
		       "(?1, " SQLITE_MS " + ?2) ON CONFLICT (\"account\") DO UPDATE SET "
		       "\"tat\" = MIN(MAX(\"tat\", " SQLITE_MS ") + ?2, " SQLITE_MS " + ?3)",
    [FAILURE_RESET] = "DELETE FROM \"sesame_login_failures\" WHERE \"account\" = ?1",
    [PURGE_FAILURES] = "DELETE FROM \"sesame_login_failures\" WHERE \"tat\" < " SQLITE_MS,
    /* Unix milliseconds: julianday counts days from noon, 24 November 4714 BC. */
    [NOW] = "SELECT " SQLITE_MS,
    /* Reads the schema from the file: a file gone or unreadable fails here. */
    [PING] = "SELECT count(*) FROM \"sqlite_master\"",
    [STATE_DISABLE] = "INSERT INTO \"sesame_user_state\" (\"user_id\", \"disabled_at\") VALUES "
		      "(?1, " SQLITE_S ") ON CONFLICT (\"user_id\") DO "
		      "UPDATE SET \"disabled_at\" = COALESCE(\"disabled_at\", "
		      "excluded.\"disabled_at\")",
    [STATE_ENABLE] = "UPDATE \"sesame_user_state\" SET \"disabled_at\" = NULL WHERE "
		     "\"user_id\" = ?1",
    [STATE_DELETE] = "DELETE FROM \"sesame_user_state\" WHERE \"user_id\" = ?1",
    [SUBJECT_FAMILIES_DELETE] = "DELETE FROM \"sesame_refresh_families\" WHERE \"subject\" = ?1",
};

/* ---- configuration ---- */

/* storage.sqlite.path; a relative one resolves against the configuration's folder. */
static char *resolve(const struct sesame_host *host, const char *path)
{
	bool has_dir = host->size >= offsetof(struct sesame_host, config_dir) + sizeof(char *) &&
		       host->config_dir != NULL;
	const char *dir = path[0] != '/' && has_dir ? host->config_dir : "";
	size_t n = strlen(dir) + strlen(path) + 2;
	char *out = malloc(n);
	if (out != NULL)
		snprintf(out, n, "%s%s%s", dir, dir[0] != '\0' ? "/" : "", path);
	return out;
}

static void make_sql(struct store *s)
{
	const struct sesame_users_schema *u = s->users;
	snprintf(s->sql[INSERT], sizeof(s->sql[INSERT]),
		 "INSERT INTO \"%s\" (\"%s\", \"%s\", \"%s\") VALUES (?1, ?2, ?3) RETURNING \"%s\"",
		 u->table, u->email, u->username, u->password, u->id);
	/* The user and whether it is disabled in one query, for a known e-mail as for one not
	 * known: the time of a log-in does not tell them apart. */
	snprintf(s->sql[FIND_BY_ID], sizeof(s->sql[FIND_BY_ID]),
		 "SELECT u.\"%s\", u.\"%s\", u.\"%s\", u.\"%s\", st.\"disabled_at\", "
		 "st.\"verified_at\" FROM \"%s\" u LEFT JOIN \"sesame_user_state\" st ON "
		 "st.\"user_id\" = u.\"%s\" WHERE u.\"%s\" = ?1",
		 u->id, u->email, u->username, u->password, u->table, u->id, u->id);
	/* The explicit NOCASE also holds on a table whose column was made without it. */
	snprintf(s->sql[FIND_BY_EMAIL], sizeof(s->sql[FIND_BY_EMAIL]),
		 "SELECT u.\"%s\", u.\"%s\", u.\"%s\", u.\"%s\", st.\"disabled_at\", "
		 "st.\"verified_at\" FROM \"%s\" u LEFT JOIN \"sesame_user_state\" st ON "
		 "st.\"user_id\" = u.\"%s\" WHERE u.\"%s\" = ?1 COLLATE NOCASE",
		 u->id, u->email, u->username, u->password, u->table, u->id, u->email);
	snprintf(s->sql[SET_PASSWORD], sizeof(s->sql[SET_PASSWORD]),
		 "UPDATE \"%s\" SET \"%s\" = ?1 WHERE \"%s\" = ?2", u->table, u->password, u->id);
	/* A users table of another application may have no created_at: USER_LIST_BARE then. */
	snprintf(s->sql[USER_LIST], sizeof(s->sql[USER_LIST]),
		 "SELECT u.\"%s\", u.\"%s\", u.\"%s\", u.\"created_at\", st.\"disabled_at\" FROM "
		 "\"%s\" u LEFT JOIN \"sesame_user_state\" st ON st.\"user_id\" = u.\"%s\" WHERE "
		 "u.\"%s\" > ?1 ORDER BY u.\"%s\" LIMIT ?2",
		 u->id, u->email, u->username, u->table, u->id, u->id, u->id);
	snprintf(s->sql[USER_LIST_BARE], sizeof(s->sql[USER_LIST_BARE]),
		 "SELECT u.\"%s\", u.\"%s\", u.\"%s\", NULL, st.\"disabled_at\" FROM \"%s\" u "
		 "LEFT JOIN \"sesame_user_state\" st ON st.\"user_id\" = u.\"%s\" WHERE u.\"%s\" > "
		 "?1 ORDER BY u.\"%s\" LIMIT ?2",
		 u->id, u->email, u->username, u->table, u->id, u->id, u->id);
	snprintf(s->sql[USER_DELETE], sizeof(s->sql[USER_DELETE]),
		 "DELETE FROM \"%s\" WHERE \"%s\" = ?1", u->table, u->id);
	for (int i = BEGIN; i < STATEMENTS; i++) {
		const char *sql = token_sql[i] != NULL ? token_sql[i] : sqlite_accounts_sql[i];
		if (sql != NULL)
			snprintf(s->sql[i], sizeof(s->sql[i]), "%s", sql);
	}
	sqlite_accounts_make_sql(s);
}

static int init(const struct sesame_host *host, struct sesame_config *cfg, void **state)
{
	const char *path = DEFAULT_PATH;
	long long timeout = 5000, query_timeout = 5000;
	if (host->users == NULL || sqlite3_threadsafe() == 0) {
		host->log(host, SESAME_LOG_ERROR, "%s",
			  host->users == NULL ? "sesamed gives no users table (storage.users)"
					      : "libsqlite3 was built without thread support");
		return -1;
	}
	if (host->config_string(cfg, "path", &path) == SESAME_CONFIG_OK && path[0] == '\0')
		host->config_error(cfg, "path", "expected a file name");
	host->config_integer(cfg, "busy_timeout", 0, 3600000, &timeout);
	host->config_integer(cfg, "query_timeout", 1, 3600000, &query_timeout);
	struct store *s = calloc(1, sizeof(*s));
	char *full = resolve(host, path);
	if (s == NULL || full == NULL) {
		host->log(host, SESAME_LOG_ERROR, "out of memory");
		free(full);
		free(s);
		return -1;
	}
	*s = (struct store){.host = host,
			    .users = host->users,
			    .path = full,
			    .busy_timeout = (int)timeout,
			    .query_timeout = query_timeout};
	make_sql(s);
	*state = s;
	return 0;
}

static void fini(void *state)
{
	struct store *s = state;
	if (s != NULL)
		free(s->path);
	free(s);
}

/* ---- connections ---- */

/* Runs sql, which yields at most one row; its first column, if any, goes into out. */
static int exec(sqlite3 *db, const char *sql, char *out, size_t outlen, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW && out != NULL && sqlite3_column_text(st, 0) != NULL)
		snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		snprintf(err, errlen, "SQLite: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* 0 when sesamed may make files in dir, else why not. */
static int folder_error(const char *dir)
{
	struct stat st;
	if (stat(dir, &st) != 0)
		return errno;
	if (!S_ISDIR(st.st_mode))
		return ENOTDIR;
	return access(dir, W_OK | X_OK) != 0 ? errno : 0;
}

/*
 * Says why path cannot be opened. SQLite's errno is that of its last attempt, a read-only
 * retry, which says "no such file" even when the folder is there but may not be written: the
 * folder itself tells the operator more.
 */
static void cannot_open(const char *path, sqlite3 *db, int rc, char *err, size_t errlen)
{
	char *copy = strdup(path);
	const char *dir = copy != NULL ? dirname(copy) : ".";
	int e = folder_error(dir), sys = db != NULL ? sqlite3_system_errno(db) : 0;
	const char *msg = db != NULL ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
	if (e != 0)
		snprintf(err, errlen, "SQLite: cannot open %s: %s (%s: %s)", path, msg, dir,
			 strerror(e));
	else if (sys != 0)
		snprintf(err, errlen, "SQLite: cannot open %s: %s (%s)", path, msg, strerror(sys));
	else
		snprintf(err, errlen, "SQLite: cannot open %s: %s", path, msg);
	free(copy);
}

/*
 * SQLite makes a new database 0644 less the umask, and gives its -wal and -shm the database's
 * mode (and owner): a new database is made here first, empty, 0600 whatever the umask. When
 * that fails, sqlite3_open_v2 fails too and says why; an existing file keeps its mode. The
 * database is never opened through a symbolic link (SQLITE_OPEN_NOFOLLOW): a link planted in
 * the state folder cannot make a root sesamectl write elsewhere.
 */
static void create_private(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	if (fchmod(fd, 0600) != 0) {
		close(fd);
		unlink(path);
		return;
	}
	close(fd);
}

/* Takes from the connection what neither sesame nor a route script needs and what would
 * reach outside the database: attached databases (sesame attaches none; a route script may
 * not, sqlite_query.c), fts3_tokenizer's pointers, functions run from the schema (a trigger
 * or view someone else put there), and the statements that can corrupt the file on purpose
 * (writable_schema, writes to shadow tables: defensive mode). 0, or -1 with the reason. */
static int harden(sqlite3 *db, char *err, size_t errlen)
{
	static const struct {
		int option, value;
		const char *name;
	} settings[] = {
	    {SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, "ENABLE_FTS3_TOKENIZER"},
	    {SQLITE_DBCONFIG_DEFENSIVE, 1, "DEFENSIVE"},
	    {SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, "TRUSTED_SCHEMA"},
	};
	sqlite3_limit(db, SQLITE_LIMIT_ATTACHED, 0);
	for (size_t i = 0; i < sizeof(settings) / sizeof(settings[0]); i++) {
		int now = -1;
		if (sqlite3_db_config(db, settings[i].option, settings[i].value, &now) !=
			SQLITE_OK ||
		    now != settings[i].value) {
			snprintf(err, errlen, "SQLite: cannot set %s on the connection",
				 settings[i].name);
			return -1;
		}
	}
	return 0;
}

static int open_db(const struct store *s, sqlite3 **out, char *err, size_t errlen)
{
	sqlite3 *db = NULL;
	char mode[16] = "";
	create_private(s->path);
	int rc = sqlite3_open_v2(s->path, &db,
				 SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
				     SQLITE_OPEN_NOFOLLOW,
				 NULL);
	if (rc != SQLITE_OK) {
		cannot_open(s->path, db, rc, err, errlen);
		goto fail;
	}
	if (sqlite3_db_readonly(db, "main") == 1) {
		snprintf(err, errlen, "SQLite: %s is read-only for sesamed", s->path);
		goto fail;
	}
	sqlite3_extended_result_codes(db, 1);
	sqlite3_busy_timeout(db, s->busy_timeout);
	if (harden(db, err, errlen) != 0)
		goto fail;
	if (exec(db, "PRAGMA journal_mode = WAL", mode, sizeof(mode), err, errlen) != 0 ||
	    exec(db, "PRAGMA synchronous = FULL", NULL, 0, err, errlen) != 0 ||
	    exec(db, "PRAGMA foreign_keys = ON", NULL, 0, err, errlen) != 0)
		goto fail;
	if (strcmp(mode, "wal") != 0) {
		snprintf(err, errlen, "SQLite: %s cannot use write-ahead logging (journal mode %s)",
			 s->path, mode);
		goto fail;
	}
	*out = db;
	return 0;
fail:
	sqlite3_close(db);
	return -1;
}

static void close_pool(struct pool *p)
{
	for (int i = 0; i < CONNECTIONS; i++) {
		for (int j = 0; j < STATEMENTS; j++)
			sqlite3_finalize(p->conns[i].stmt[j]);
		sqlite3_close(p->conns[i].db);
	}
	pthread_cond_destroy(&p->freed);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* In each worker, after fork: the connections belong to this process alone. */
static int worker_start(void *state)
{
	struct store *s = state;
	char err[512];
	struct pool *p = calloc(1, sizeof(*p));
	if (p == NULL) {
		s->host->log(s->host, SESAME_LOG_ERROR, "out of memory");
		return -1;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->freed, NULL);
	for (int i = 0; i < CONNECTIONS; i++) {
		if (open_db(s, &p->conns[i].db, err, sizeof(err)) != 0) {
			s->host->log(s->host, SESAME_LOG_ERROR, "%s", err);
			close_pool(p);
			return -1;
		}
	}
	s->pool = p;
	return 0;
}

/* After the job threads are gone. */
static void worker_stop(void *state)
{
	struct store *s = state;
	if (s->pool != NULL)
		close_pool(s->pool);
	s->pool = NULL;
}

struct conn *sqlite_acquire(struct pool *p)
{
	pthread_mutex_lock(&p->lock);
	for (;;) {
		for (int i = 0; i < CONNECTIONS; i++) {
			if (!p->conns[i].taken) {
				p->conns[i].taken = true;
				pthread_mutex_unlock(&p->lock);
				return &p->conns[i];
			}
		}
		pthread_cond_wait(&p->freed, &p->lock);
	}
}

void sqlite_release(struct pool *p, struct conn *c)
{
	pthread_mutex_lock(&p->lock);
	c->taken = false;
	pthread_cond_signal(&p->freed);
	pthread_mutex_unlock(&p->lock);
}

/* The connection's statement which, prepared on first use; NULL on error. */
sqlite3_stmt *sqlite_statement(const struct store *s, struct conn *c, int which)
{
	if (c->stmt[which] == NULL)
		sqlite3_prepare_v3(c->db, s->sql[which], -1, SQLITE_PREPARE_PERSISTENT,
				   &c->stmt[which], NULL);
	return c->stmt[which];
}

/* Classifies the error rc of db: what the client is told, the reason in err. */
enum sesame_storage_result sqlite_failed(sqlite3 *db, int rc, char *err, size_t errlen)
{
	snprintf(err, errlen, "SQLite: %s", sqlite3_errmsg(db));
	switch (rc & 0xff) {
	case SQLITE_CONSTRAINT:
		return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY
			   ? SESAME_STORAGE_CONFLICT
			   : SESAME_STORAGE_FAILED;
	case SQLITE_BUSY: /* still locked when the busy timeout ran out */
	case SQLITE_LOCKED:
	case SQLITE_CANTOPEN:
	case SQLITE_IOERR:
	case SQLITE_FULL:
		return SESAME_STORAGE_UNAVAILABLE;
	default:
		return SESAME_STORAGE_FAILED;
	}
}

void sqlite_done_with(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

/* ---- migrations ---- */

/* Writes sql with {users}, {id}, ... replaced by storage.users' names into out (when not
 * NULL); returns the length. */
static size_t expand_into(const struct sesame_users_schema *u, const char *sql, char *out)
{
	const char *keys[] = {"{users}", "{id}", "{email}", "{username}", "{password}"};
	const char *vals[] = {u->table, u->id, u->email, u->username, u->password};
	size_t n = 0;
	for (const char *p = sql; *p != '\0';) {
		size_t k = 0;
		while (k < 5 && strncmp(p, keys[k], strlen(keys[k])) != 0)
			k++;
		size_t len = k < 5 ? strlen(vals[k]) : 1;
		if (out != NULL)
			memcpy(out + n, k < 5 ? vals[k] : p, len);
		n += len;
		p += k < 5 ? strlen(keys[k]) : 1;
	}
	if (out != NULL)
		out[n] = '\0';
	return n;
}

static char *expand(const struct sesame_users_schema *u, const char *sql)
{
	char *out = malloc(expand_into(u, sql, NULL) + 1);
	if (out != NULL)
		expand_into(u, sql, out);
	return out;
}

static int applied_version(sqlite3 *db, int *version, char *err, size_t errlen)
{
	char v[32] = "0";
	if (exec(db, "SELECT COALESCE(MAX(\"version\"), 0) FROM \"sesame_migrations\"", v,
		 sizeof(v), err, errlen) != 0)
		return -1;
	*version = atoi(v);
	return 0;
}

static int record(sqlite3 *db, const struct migration *m, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(
	    db, "INSERT INTO \"sesame_migrations\" (\"version\", \"name\") VALUES (?1, ?2)", -1,
	    &st, NULL);
	if (rc == SQLITE_OK) {
		sqlite3_bind_int(st, 1, m->version);
		sqlite3_bind_text(st, 2, m->name, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE)
		snprintf(err, errlen, "SQLite: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/*
 * Applies m and records it in one transaction. BEGIN IMMEDIATE takes the write lock first, so
 * of two processes migrating at once the second sees the first one's record and skips m.
 */
static int apply(struct store *s, sqlite3 *db, const struct migration *m, char *err, size_t errlen)
{
	int version = 0;
	char *sql = NULL, *errmsg = NULL;
	if (exec(db, "BEGIN IMMEDIATE", NULL, 0, err, errlen) != 0)
		return -1;
	if (applied_version(db, &version, err, errlen) != 0)
		goto fail;
	if (m->version <= version) { /* another process applied it meanwhile */
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
		return 0;
	}
	if ((sql = expand(s->users, m->sql)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (sqlite3_exec(db, sql, NULL, NULL, &errmsg) != SQLITE_OK) {
		snprintf(err, errlen, "SQLite: migration %s: %s", m->name,
			 errmsg != NULL ? errmsg : sqlite3_errmsg(db));
		goto fail;
	}
	if (record(db, m, err, errlen) != 0 || exec(db, "COMMIT", NULL, 0, err, errlen) != 0)
		goto fail;
	free(sql);
	s->host->log(s->host, SESAME_LOG_INFO, "applied migration %s", m->name);
	return 0;
fail:
	sqlite3_free(errmsg);
	free(sql);
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -1;
}

#define LATEST_VERSION (migrations[sizeof(migrations) / sizeof(migrations[0]) - 1].version)

/* Without apply: is the schema as new as this plugin's migrations? */
static int check_version(sqlite3 *db, char *err, size_t errlen)
{
	char have[8] = "0";
	int version = 0;
	int rc = exec(db,
		      "SELECT count(*) FROM \"sqlite_master\" WHERE \"type\" = 'table' AND "
		      "\"name\" = 'sesame_migrations'",
		      have, sizeof(have), err, errlen);
	if (rc == 0 && strcmp(have, "0") != 0)
		rc = applied_version(db, &version, err, errlen);
	if (rc == 0 && version < LATEST_VERSION) {
		snprintf(
		    err, errlen,
		    "the schema is at version %d, this sesamed needs %d: run sesamectl migrate",
		    version, LATEST_VERSION);
		rc = -1;
	}
	sqlite3_close(db);
	return rc;
}

/* In a child of the master, before any fork: opens, migrates (or checks) and closes. */
static int migrate(void *state, bool upgrade, char *err, size_t errlen)
{
	struct store *s = state;
	sqlite3 *db = NULL;
	int version = 0;
	err[0] = '\0';
	if (open_db(s, &db, err, errlen) != 0)
		return -1;
	if (!upgrade)
		return check_version(db, err, errlen);
	int rc = exec(db,
		      "CREATE TABLE IF NOT EXISTS \"sesame_migrations\" (\"version\" INTEGER NOT "
		      "NULL PRIMARY KEY, \"name\" TEXT NOT NULL, \"applied_at\" TEXT NOT NULL "
		      "DEFAULT CURRENT_TIMESTAMP)",
		      NULL, 0, err, errlen);
	if (rc == 0)
		rc = applied_version(db, &version, err, errlen);
	/* Only a pending migration takes the write lock: a reload with none pending waits for
	 * no worker. */
	for (size_t i = 0; rc == 0 && i < sizeof(migrations) / sizeof(migrations[0]); i++) {
		if (migrations[i].version > version)
			rc = apply(s, db, &migrations[i], err, errlen);
	}
	sqlite3_close(db);
	return rc;
}

/* ---- users ---- */

/* A job outside a started worker (worker_start opens the connections). */
enum sesame_storage_result sqlite_not_started(char *err, size_t errlen)
{
	snprintf(err, errlen, "SQLite: the store is not started in this process");
	return SESAME_STORAGE_FAILED;
}

static enum sesame_storage_result user_create(void *state, const struct sesame_user *user,
					      long long *id, char *err, size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	sqlite3_stmt *st = sqlite_statement(s, c, INSERT);
	enum sesame_storage_result result = SESAME_STORAGE_OK;
	int rc = sqlite3_extended_errcode(c->db);
	if (st != NULL) {
		sqlite3_bind_text(st, 1, user->email, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, user->username, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, user->password, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			*id = sqlite3_column_int64(st, 0);
			/* Runs the statement to its end: the autocommit commits here. */
			rc = sqlite3_step(st);
		}
	}
	if (rc != SQLITE_DONE)
		result = sqlite_failed(c->db, rc, err, errlen);
	if (st != NULL)
		sqlite_done_with(st);
	sqlite_release(s->pool, c);
	return result;
}

/* Copies the found row's strings into buf, one after another. */
static enum sesame_storage_result copy_user(sqlite3_stmt *st, struct sesame_user *out, char *buf,
					    size_t buflen, char *err, size_t errlen)
{
	const char *col[3];
	size_t used = 0;
	for (int i = 0; i < 3; i++) {
		const unsigned char *text = sqlite3_column_text(st, i + 1);
		size_t len = text != NULL ? (size_t)sqlite3_column_bytes(st, i + 1) : 0;
		if (used + len + 1 > buflen) {
			snprintf(err, errlen, "SQLite: a user row does not fit in %zu bytes",
				 buflen);
			return SESAME_STORAGE_FAILED;
		}
		if (len > 0)
			memcpy(buf + used, text, len);
		buf[used + len] = '\0';
		col[i] = buf + used;
		used += len + 1;
	}
	*out = (struct sesame_user){.id = sqlite3_column_int64(st, 0),
				    .email = col[0],
				    .username = col[1],
				    .password = col[2],
				    .disabled_at = sqlite3_column_int64(st, 4),
				    .verified_at = sqlite3_column_int64(st, 5)};
	return SESAME_STORAGE_OK;
}

static enum sesame_storage_result user_find(void *state, const char *by, const char *value,
					    struct sesame_user *out, char *buf, size_t buflen,
					    char *err, size_t errlen)
{
	struct store *s = state;
	int which = strcmp(by, "id") == 0 ? FIND_BY_ID : FIND_BY_EMAIL;
	if (which == FIND_BY_EMAIL && strcmp(by, "email") != 0) {
		snprintf(err, errlen, "SQLite: users are found by id or email, not by %s", by);
		return SESAME_STORAGE_FAILED;
	}
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	sqlite3_stmt *st = sqlite_statement(s, c, which);
	enum sesame_storage_result result = SESAME_STORAGE_NOT_FOUND;
	int rc = sqlite3_extended_errcode(c->db);
	if (st != NULL) {
		/* An id is bound as a number, never as text: " 1" or "1.0" is nobody's id. */
		char *end;
		long long id = which == FIND_BY_ID ? strtoll(value, &end, 10) : 0;
		if (which == FIND_BY_ID && (*value == '\0' || *end != '\0'))
			sqlite3_bind_null(st, 1);
		else if (which == FIND_BY_ID)
			sqlite3_bind_int64(st, 1, id);
		else
			sqlite3_bind_text(st, 1, value, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
	}
	if (rc == SQLITE_ROW)
		result = copy_user(st, out, buf, buflen, err, errlen);
	else if (rc != SQLITE_DONE)
		result = sqlite_failed(c->db, rc, err, errlen);
	if (st != NULL)
		sqlite_done_with(st);
	sqlite_release(s->pool, c);
	return result;
}

static enum sesame_storage_result user_set_password(void *state, long long id, const char *password,
						    char *err, size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	sqlite3_stmt *st = sqlite_statement(s, c, SET_PASSWORD);
	enum sesame_storage_result result = SESAME_STORAGE_OK;
	int rc = sqlite3_extended_errcode(c->db);
	if (st != NULL) {
		sqlite3_bind_text(st, 1, password, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, id);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_DONE)
		result = sqlite_failed(c->db, rc, err, errlen);
	else if (sqlite3_changes(c->db) == 0)
		result = SESAME_STORAGE_NOT_FOUND;
	if (st != NULL)
		sqlite_done_with(st);
	sqlite_release(s->pool, c);
	return result;
}

/* ---- token state ---- */

/* Steps st to its end: 0, or the failing result code. */
static int run_to_end(sqlite3_stmt *st)
{
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		;
	return rc == SQLITE_DONE ? 0 : rc;
}

/* Runs statement which, its parameters bound by bind(st, ctx); 0 or the result code. */
int sqlite_run_stmt(const struct store *s, struct conn *c, int which,
		    void (*bind)(sqlite3_stmt *st, const void *ctx), const void *ctx)
{
	sqlite3_stmt *st = sqlite_statement(s, c, which);
	if (st == NULL)
		return sqlite3_extended_errcode(c->db);
	if (bind != NULL)
		bind(st, ctx);
	int rc = run_to_end(st);
	sqlite_done_with(st);
	return rc;
}

/* SQLite's clock in *now_ms, Unix milliseconds: read once a transaction holds the write lock.
 * 0, or the failing result code. */
static int store_now(const struct store *s, struct conn *c, long long *now_ms)
{
	sqlite3_stmt *st = sqlite_statement(s, c, NOW);
	if (st == NULL)
		return sqlite3_extended_errcode(c->db);
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*now_ms = sqlite3_column_int64(st, 0);
		rc = sqlite3_step(st);
	}
	sqlite_done_with(st);
	return rc == SQLITE_DONE ? 0 : rc;
}

struct family_args {
	const struct sesame_family *f;
	const char *id, *next;
	long long now_ms, until;
};

static void bind_family_insert(sqlite3_stmt *st, const void *ctx)
{
	const struct family_args *a = ctx;
	sqlite3_bind_text(st, 1, a->f->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->f->subject, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->f->jti, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 4, a->now_ms);
	sqlite3_bind_int64(st, 5, a->f->expires_at);
}

static void bind_rotate(sqlite3_stmt *st, const void *ctx)
{
	const struct family_args *a = ctx;
	sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->next, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 3, a->now_ms);
}

static void bind_family_revoke(sqlite3_stmt *st, const void *ctx)
{
	const struct family_args *a = ctx;
	sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, a->now_ms);
}

static void bind_revoke(sqlite3_stmt *st, const void *ctx)
{
	const struct family_args *a = ctx;
	sqlite3_bind_text(st, 1, a->id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, a->now_ms);
	sqlite3_bind_int64(st, 3, a->until);
}

static void bind_before(sqlite3_stmt *st, const void *ctx)
{
	sqlite3_bind_int64(st, 1, *(const long long *)ctx);
}

static enum sesame_storage_result family_create(void *state, const struct sesame_family *f,
						char *err, size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct family_args a = {.f = f};
	struct conn *c = sqlite_acquire(s->pool);
	int rc = store_now(s, c, &a.now_ms);
	if (rc == 0)
		rc = sqlite_run_stmt(s, c, FAMILY_INSERT, bind_family_insert, &a);
	enum sesame_storage_result r =
	    rc == 0 ? SESAME_STORAGE_OK : sqlite_failed(c->db, rc, err, errlen);
	sqlite_release(s->pool, c);
	return r;
}

/* In a transaction: revokes jti until jti_until, and family (its row too) until
 * family_until; either may be NULL. */
static int revoke_in(const struct store *s, struct conn *c, const char *jti, long long jti_until,
		     const char *family, long long family_until)
{
	long long now = 0;
	int rc = store_now(s, c, &now);
	struct family_args j = {.id = jti, .now_ms = now, .until = jti_until};
	struct family_args f = {.id = family, .now_ms = now, .until = family_until};
	if (rc == 0 && jti != NULL)
		rc = sqlite_run_stmt(s, c, REVOKE, bind_revoke, &j);
	if (rc == 0 && family != NULL)
		rc = sqlite_run_stmt(s, c, REVOKE, bind_revoke, &f);
	if (rc == 0 && family != NULL)
		rc = sqlite_run_stmt(s, c, FAMILY_REVOKE, bind_family_revoke, &f);
	return rc;
}

/* The family's row, read inside the rotation's transaction. */
struct family_row {
	bool found, revoked;
	char current[SESAME_TOKEN_ID_MAX + 1], previous[SESAME_TOKEN_ID_MAX + 1];
	long long rotated_at, expires_at;
};

static int read_family(const struct store *s, struct conn *c, const char *id,
		       struct family_row *row)
{
	sqlite3_stmt *st = sqlite_statement(s, c, FAMILY_GET);
	if (st == NULL)
		return sqlite3_extended_errcode(c->db);
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	memset(row, 0, sizeof(*row));
	if (rc == SQLITE_ROW) {
		const unsigned char *cur = sqlite3_column_text(st, 0);
		const unsigned char *prev = sqlite3_column_text(st, 1);
		row->found = true;
		snprintf(row->current, sizeof(row->current), "%s", cur ? (const char *)cur : "");
		snprintf(row->previous, sizeof(row->previous), "%s",
			 prev ? (const char *)prev : "");
		row->rotated_at = sqlite3_column_int64(st, 2);
		row->expires_at = sqlite3_column_int64(st, 3);
		row->revoked = sqlite3_column_type(st, 4) != SQLITE_NULL;
		rc = sqlite3_step(st);
	}
	sqlite_done_with(st);
	return rc == SQLITE_DONE ? 0 : rc;
}

/* Begins a write transaction: BEGIN IMMEDIATE takes the write lock first (waiting up to the
 * busy timeout), so that nothing another process writes comes between a read and a write. */
static int begin(const struct store *s, struct conn *c)
{
	return sqlite_run_stmt(s, c, BEGIN, NULL, NULL);
}

/* Commits when rc is 0, else rolls back; the result, and the reason in err. */
static enum sesame_storage_result end(const struct store *s, struct conn *c, int rc,
				      enum sesame_storage_result r, char *err, size_t errlen)
{
	if (rc == 0)
		rc = sqlite_run_stmt(s, c, COMMIT, NULL, NULL);
	if (rc == 0)
		return r;
	r = sqlite_failed(c->db, rc, err, errlen);
	sqlite_run_stmt(s, c, ROLLBACK, NULL, NULL);
	return r;
}

static enum sesame_storage_result family_rotate(void *state, const char *id, const char *jti,
						const char *next, long long grace_ms,
						long long revoke_until, char *current,
						long long *expires_at, char *err, size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct family_row row;
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	struct conn *c = sqlite_acquire(s->pool);
	int rc = begin(s, c);
	long long now = 0;
	if (rc == 0)
		rc = read_family(s, c, id, &row);
	if (rc == 0)
		rc = store_now(s, c, &now);
	if (rc == 0) {
		long long since = now - row.rotated_at;
		struct family_args a = {.id = id, .next = next, .now_ms = now};
		*expires_at = row.expires_at;
		if (!row.found) {
			r = SESAME_STORAGE_NOT_FOUND;
		} else if (row.revoked || row.expires_at * 1000 <= now) {
			r = SESAME_STORAGE_REVOKED;
		} else if (strcmp(jti, row.current) == 0) {
			rc = sqlite_run_stmt(s, c, FAMILY_ROTATE, bind_rotate, &a);
			snprintf(current, SESAME_TOKEN_ID_MAX + 1, "%s", next);
		} else if (strcmp(jti, row.previous) == 0 && since >= 0 && since < grace_ms) {
			snprintf(current, SESAME_TOKEN_ID_MAX + 1, "%s", row.current);
		} else {
			rc = revoke_in(s, c, NULL, 0, id, revoke_until);
			r = SESAME_STORAGE_REUSED;
		}
	}
	r = end(s, c, rc, r, err, errlen);
	sqlite_release(s->pool, c);
	return r;
}

static enum sesame_storage_result token_revoke(void *state, const char *jti, long long jti_until,
					       const char *family, long long family_until,
					       char *err, size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	int rc = begin(s, c);
	if (rc == 0)
		rc = revoke_in(s, c, jti, jti_until, family, family_until);
	enum sesame_storage_result r = end(s, c, rc, SESAME_STORAGE_OK, err, errlen);
	sqlite_release(s->pool, c);
	return r;
}

/* The ids of subject's live families but except (NULL: none), read in the transaction; a
 * malloc'd array of *n. */
static int subject_families(const struct store *s, struct conn *c, const char *subject,
			    const char *except, long long now,
			    char (**ids)[SESAME_TOKEN_ID_MAX + 1], size_t *n)
{
	sqlite3_stmt *st = sqlite_statement(s, c, SUBJECT_FAMILIES);
	size_t cap = 0;
	int rc;
	*ids = NULL;
	*n = 0;
	if (st == NULL)
		return sqlite3_extended_errcode(c->db);
	sqlite3_bind_text(st, 1, subject, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, now);
	if (except != NULL)
		sqlite3_bind_text(st, 3, except, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (*n == cap) {
			cap = cap ? cap * 2 : 8;
			void *grown = realloc(*ids, cap * sizeof(**ids));
			if (grown == NULL) {
				rc = SQLITE_NOMEM;
				break;
			}
			*ids = grown;
		}
		const unsigned char *id = sqlite3_column_text(st, 0);
		snprintf((*ids)[(*n)++], SESAME_TOKEN_ID_MAX + 1, "%s", id ? (const char *)id : "");
	}
	sqlite_done_with(st);
	return rc == SQLITE_DONE ? 0 : rc;
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

/* A subject's revoked families: the callers name them only once they are committed. */
struct revoked_families {
	char (*ids)[SESAME_TOKEN_ID_MAX + 1];
	size_t n;
};

/* In a transaction: revokes subject's live families but except until until, their ids in
 * *out (to free), and its cutoff (cutoff, its id). 0, or the failing result code. */
static int revoke_subject_in(const struct store *s, struct conn *c, const char *subject,
			     const char *cutoff, const char *except, long long until,
			     struct revoked_families *out)
{
	long long now = 0;
	int rc = store_now(s, c, &now);
	if (rc == 0)
		rc = subject_families(s, c, subject, except, now, &out->ids, &out->n);
	for (size_t i = 0; rc == 0 && i < out->n; i++)
		rc = revoke_in(s, c, NULL, 0, out->ids[i], until);
	struct family_args a = {.id = cutoff, .now_ms = now, .until = until};
	if (rc == 0)
		rc = sqlite_run_stmt(s, c, CUTOFF, bind_revoke, &a);
	return rc;
}

static enum sesame_storage_result subject_revoke(void *state, const char *subject,
						 const char *except_family, long long until,
						 void (*each)(void *ctx, const char *id), void *ctx,
						 char *err, size_t errlen)
{
	struct store *s = state;
	char cutoff[SESAME_TOKEN_ID_MAX + 1];
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	if (!cutoff_id(subject, cutoff, err, errlen))
		return SESAME_STORAGE_FAILED;
	struct revoked_families fam = {NULL, 0};
	struct conn *c = sqlite_acquire(s->pool);
	int rc = begin(s, c);
	if (rc == 0)
		rc = revoke_subject_in(s, c, subject, cutoff, except_family, until, &fam);
	enum sesame_storage_result r = end(s, c, rc, SESAME_STORAGE_OK, err, errlen);
	sqlite_release(s->pool, c);
	for (size_t i = 0; r == SESAME_STORAGE_OK && i < fam.n; i++)
		each(ctx, fam.ids[i]);
	free(fam.ids);
	return r;
}

static enum sesame_storage_result
revoked_since(void *state, long long since_ms, long long alive_at,
	      void (*each)(void *ctx, const char *id, long long expires_at, long long revoked_at),
	      void *ctx, long long *now_ms, char *err, size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	/* The time first: a revocation committed after the ids are read is stamped after it. */
	int rc = store_now(s, c, now_ms);
	sqlite3_stmt *st = rc == 0 ? sqlite_statement(s, c, REVOKED_SINCE) : NULL;
	if (rc == 0)
		rc = sqlite3_extended_errcode(c->db);
	if (st != NULL) {
		sqlite3_bind_int64(st, 1, since_ms);
		sqlite3_bind_int64(st, 2, alive_at);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			const unsigned char *id = sqlite3_column_text(st, 0);
			if (id != NULL)
				each(ctx, (const char *)id, sqlite3_column_int64(st, 1),
				     sqlite3_column_int64(st, 2));
		}
		sqlite_done_with(st);
	}
	enum sesame_storage_result r =
	    rc == SQLITE_DONE ? SESAME_STORAGE_OK : sqlite_failed(c->db, rc, err, errlen);
	sqlite_release(s->pool, c);
	return r;
}

static enum sesame_storage_result token_purge(void *state, long long before, char *err,
					      size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	int rc = sqlite_run_stmt(s, c, PURGE_REVOKED, bind_before, &before);
	if (rc == 0)
		rc = sqlite_run_stmt(s, c, PURGE_FAMILIES, bind_before, &before);
	if (rc == 0)
		rc = sqlite_run_stmt(s, c, PURGE_FAILURES, NULL, NULL);
	if (rc == 0)
		rc = sqlite_run_stmt(s, c, PURGE_OTP, NULL, NULL);
	enum sesame_storage_result r =
	    rc == 0 ? SESAME_STORAGE_OK : sqlite_failed(c->db, rc, err, errlen);
	sqlite_release(s->pool, c);
	return r;
}

/* ---- failed log-ins ---- */

struct failure_args {
	const char *account;
	long long interval_ms, period_ms;
};

static void bind_failure(sqlite3_stmt *st, const void *ctx)
{
	const struct failure_args *a = ctx;
	sqlite3_bind_text(st, 1, a->account, -1, SQLITE_STATIC);
	if (sqlite3_bind_parameter_count(st) >= 3) {
		sqlite3_bind_int64(st, 2, a->interval_ms);
		sqlite3_bind_int64(st, 3, a->period_ms);
	}
}

/* Runs which, bound by bind, on a connection of its own: its first row's first column in
 * *out, which stays 0 without a row. */
static enum sesame_storage_result read_integer(struct store *s, int which,
					       void (*bind)(sqlite3_stmt *, const void *),
					       const void *ctx, long long *out, char *err,
					       size_t errlen)
{
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	sqlite3_stmt *st = sqlite_statement(s, c, which);
	int rc = st == NULL ? sqlite3_extended_errcode(c->db) : 0;
	*out = 0;
	if (st != NULL) {
		bind(st, ctx);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW)
			*out = sqlite3_column_int64(st, 0);
		rc = rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : rc;
		sqlite_done_with(st);
	}
	enum sesame_storage_result r =
	    rc == 0 ? SESAME_STORAGE_OK : sqlite_failed(c->db, rc, err, errlen);
	sqlite_release(s->pool, c);
	return r;
}

static enum sesame_storage_result failure_check(void *state, const char *account,
						long long interval_ms, long long period_ms,
						long long *retry_ms, char *err, size_t errlen)
{
	struct failure_args a = {account, interval_ms, period_ms};
	return read_integer(state, FAILURE_CHECK, bind_failure, &a, retry_ms, err, errlen);
}

/* Runs which, a statement that returns no rows, bound by bind, on a connection of its own. */
enum sesame_storage_result sqlite_run_alone(struct store *s, int which,
					    void (*bind)(sqlite3_stmt *, const void *),
					    const void *ctx, char *err, size_t errlen)
{
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	int rc = sqlite_run_stmt(s, c, which, bind, ctx);
	enum sesame_storage_result r =
	    rc == 0 ? SESAME_STORAGE_OK : sqlite_failed(c->db, rc, err, errlen);
	sqlite_release(s->pool, c);
	return r;
}

static enum sesame_storage_result failure_record(void *state, const char *account,
						 long long interval_ms, long long period_ms,
						 char *err, size_t errlen)
{
	struct failure_args a = {account, interval_ms, period_ms};
	return sqlite_run_alone(state, FAILURE_RECORD, bind_failure, &a, err, errlen);
}

static enum sesame_storage_result failure_reset(void *state, const char *account, char *err,
						size_t errlen)
{
	struct failure_args a = {.account = account};
	return sqlite_run_alone(state, FAILURE_RESET, bind_failure, &a, err, errlen);
}

static enum sesame_storage_result ping(void *state, char *err, size_t errlen)
{
	return sqlite_run_alone(state, PING, NULL, NULL, err, errlen);
}

/* ---- user administration ---- */

void sqlite_bind_id(sqlite3_stmt *st, const void *ctx)
{
	sqlite3_bind_int64(st, 1, *(const long long *)ctx);
}

static enum sesame_storage_result user_set_disabled(void *state, long long id, bool disabled,
						    char *err, size_t errlen)
{
	return sqlite_run_alone(state, disabled ? STATE_DISABLE : STATE_ENABLE, sqlite_bind_id, &id,
				err, errlen);
}

typedef void (*user_each)(void *ctx, const struct sesame_user *user, const char *created,
			  long long disabled_at);

static const char *column(sqlite3_stmt *st, int i)
{
	const unsigned char *text = sqlite3_column_text(st, i);
	return text != NULL ? (const char *)text : NULL;
}

static enum sesame_storage_result user_list(void *state, long long after, long long limit,
					    user_each each, void *ctx, char *err, size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	struct conn *c = sqlite_acquire(s->pool);
	sqlite3_stmt *st = sqlite_statement(s, c, USER_LIST);
	if (st == NULL)
		st = sqlite_statement(s, c, USER_LIST_BARE);
	int rc = st == NULL ? sqlite3_extended_errcode(c->db) : 0;
	if (st != NULL) {
		sqlite3_bind_int64(st, 1, after);
		sqlite3_bind_int64(st, 2, limit);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
			struct sesame_user u = {.id = sqlite3_column_int64(st, 0),
						.email = column(st, 1),
						.username = column(st, 2)};
			each(ctx, &u, column(st, 3), sqlite3_column_int64(st, 4));
		}
		rc = rc == SQLITE_DONE ? 0 : rc;
		sqlite_done_with(st);
	}
	enum sesame_storage_result r =
	    rc == 0 ? SESAME_STORAGE_OK : sqlite_failed(c->db, rc, err, errlen);
	sqlite_release(s->pool, c);
	return r;
}

static void bind_subject(sqlite3_stmt *st, const void *ctx)
{
	sqlite3_bind_text(st, 1, ctx, -1, SQLITE_STATIC);
}

static enum sesame_storage_result user_delete(void *state, long long id, const char *subject,
					      const char *email, long long until, char *err,
					      size_t errlen)
{
	struct store *s = state;
	if (s->pool == NULL)
		return sqlite_not_started(err, errlen);
	char cutoff[SESAME_TOKEN_ID_MAX + 1];
	if (!cutoff_id(subject, cutoff, err, errlen))
		return SESAME_STORAGE_FAILED;
	struct failure_args fa = {.account = email};
	struct revoked_families fam = {NULL, 0};
	struct conn *c = sqlite_acquire(s->pool);
	int rc = begin(s, c);
	if (rc == 0)
		rc = sqlite_run_stmt(s, c, USER_DELETE, sqlite_bind_id, &id);
	bool found = rc == 0 && sqlite3_changes(c->db) > 0;
	if (rc == 0 && found)
		rc = revoke_subject_in(s, c, subject, cutoff, NULL, until, &fam);
	free(fam.ids);
	if (rc == 0 && found)
		rc = sqlite_run_stmt(s, c, SUBJECT_FAMILIES_DELETE, bind_subject, subject);
	if (rc == 0 && found)
		rc = sqlite_run_stmt(s, c, FAILURE_RESET, bind_failure, &fa);
	if (rc == 0 && found)
		rc = sqlite_run_stmt(s, c, STATE_DELETE, sqlite_bind_id, &id);
	if (rc == 0 && found)
		rc = sqlite_run_stmt(s, c, OTP_REVOKE, sqlite_bind_id, &id);
	enum sesame_storage_result r =
	    end(s, c, rc, found ? SESAME_STORAGE_OK : SESAME_STORAGE_NOT_FOUND, err, errlen);
	sqlite_release(s->pool, c);
	return r;
}

SESAME_STORAGE_PLUGIN(
    "sqlite", PLUGIN_VERSION, .init = init, .fini = fini, .migrate = migrate,
    .worker_start = worker_start, .worker_stop = worker_stop, .user_create = user_create,
    .user_find = user_find, .user_set_password = user_set_password, .family_create = family_create,
    .family_rotate = family_rotate, .token_revoke = token_revoke, .revoked_since = revoked_since,
    .subject_revoke = subject_revoke, .token_purge = token_purge, .failure_check = failure_check,
    .failure_record = failure_record, .failure_reset = failure_reset, .ping = ping,
    .user_set_disabled = user_set_disabled, .user_list = user_list, .user_delete = user_delete,
    .user_set_verified = sqlite_user_set_verified, .user_set_email = sqlite_user_set_email,
    .otp_create = sqlite_otp_create, .otp_spend = sqlite_otp_spend, .otp_revoke = sqlite_otp_revoke,
    .event_add = sqlite_event_add, .event_list = sqlite_event_list,
    .event_purge = sqlite_event_purge, .query = sqlite_query, .otp_find = sqlite_otp_find);
