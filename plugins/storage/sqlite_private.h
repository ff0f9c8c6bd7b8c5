/*
 * sqlite_private.h: what the SQLite store's files share (sqlite.c: connections, migrations,
 * users and token state; sqlite_accounts.c: the account flows' state and events;
 * sqlite_query.c: route scripts' own statements). Not an interface of the plugin: that is
 * <sesame/plugin.h>.
 */
#ifndef SESAME_SQLITE_PRIVATE_H
#define SESAME_SQLITE_PRIVATE_H

#include <sesame/plugin.h>

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>

/* Connections per worker: enough for its job threads to rarely wait for one another. */
#define CONNECTIONS 4

/* Every statement a connection prepares once, on first use. */
enum {
	INSERT,
	FIND_BY_ID,
	FIND_BY_EMAIL,
	SET_PASSWORD,
	SET_EMAIL,
	BEGIN,
	COMMIT,
	ROLLBACK,
	FAMILY_INSERT,
	FAMILY_GET,
	FAMILY_ROTATE,
	FAMILY_REVOKE,
	REVOKE,
	REVOKED_SINCE,
	PURGE_REVOKED,
	PURGE_FAMILIES,
	SUBJECT_FAMILIES,
	FAILURE_CHECK,
	FAILURE_RECORD,
	FAILURE_RESET,
	PURGE_FAILURES,
	NOW,
	PING,
	USER_LIST,
	USER_LIST_BARE,
	USER_DELETE,
	CUTOFF,
	STATE_DISABLE,
	STATE_ENABLE,
	STATE_DELETE,
	SUBJECT_FAMILIES_DELETE,
	STATE_VERIFY,
	STATE_UNVERIFY,
	OTP_INSERT,
	OTP_SPEND,
	OTP_FIND,
	OTP_REVOKE,
	OTP_REVOKE_PURPOSE,
	PURGE_OTP,
	EVENT_INSERT,
	EVENT_LIST,
	EVENT_PURGE,
	STATEMENTS
};

/* SQLite's clock, Unix milliseconds: constant within one statement. */
#define SQLITE_MS "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
/* SQLite's clock, Unix seconds. */
#define SQLITE_S "CAST(strftime('%s', 'now') AS INTEGER)"

struct conn {
	sqlite3 *db;
	sqlite3_stmt *stmt[STATEMENTS]; /* prepared on first use */
	bool taken;
};

/* One worker's connections. */
struct pool {
	pthread_mutex_t lock;
	pthread_cond_t freed;
	struct conn conns[CONNECTIONS];
};

struct store {
	const struct sesame_host *host;
	const struct sesame_users_schema *users;
	char *path;
	int busy_timeout;	 /* ms */
	long long query_timeout; /* ms, a route script's statement */
	char sql[STATEMENTS][640];
	struct pool *pool; /* set in each worker, after fork, by worker_start */
};

/* sqlite.c: a connection of this worker's, for one thread at a time, and its statements. */
struct conn *sqlite_acquire(struct pool *p);
void sqlite_release(struct pool *p, struct conn *c);
/* The connection's statement which, prepared on first use; NULL on error. */
sqlite3_stmt *sqlite_statement(const struct store *s, struct conn *c, int which);
/* Resets st and clears its bindings, for its next use. */
void sqlite_done_with(sqlite3_stmt *st);
/* Classifies the error rc of db: what the client is told, the reason in err. */
enum sesame_storage_result sqlite_failed(sqlite3 *db, int rc, char *err, size_t errlen);
/* A job outside a started worker (worker_start opens the connections). */
enum sesame_storage_result sqlite_not_started(char *err, size_t errlen);
/* Runs statement which, its parameters bound by bind(st, ctx); 0 or the result code. */
int sqlite_run_stmt(const struct store *s, struct conn *c, int which,
		    void (*bind)(sqlite3_stmt *st, const void *ctx), const void *ctx);
/* Runs which, a statement that returns no rows, bound by bind, on a connection of its own. */
enum sesame_storage_result sqlite_run_alone(struct store *s, int which,
					    void (*bind)(sqlite3_stmt *, const void *),
					    const void *ctx, char *err, size_t errlen);
/* Binds the long long at ctx as parameter 1. */
void sqlite_bind_id(sqlite3_stmt *st, const void *ctx);

/* sqlite_accounts.c: the statements of ABI 1.1 (NULL for the others), and the one that names
 * the users table (SET_EMAIL), written into s->sql. */
extern const char *const sqlite_accounts_sql[STATEMENTS];
void sqlite_accounts_make_sql(struct store *s);

/* sqlite_accounts.c: the functions of ABI 1.1. */
enum sesame_storage_result sqlite_user_set_verified(void *state, long long id, bool verified,
						    char *err, size_t errlen);
enum sesame_storage_result sqlite_user_set_email(void *state, long long id, const char *email,
						 char *err, size_t errlen);
enum sesame_storage_result sqlite_otp_create(void *state, const struct sesame_otp *otp,
					     long long ttl, char *err, size_t errlen);
enum sesame_storage_result sqlite_otp_spend(void *state, const char *hash, const char *purpose,
					    struct sesame_otp *out, char *buf, size_t buflen,
					    char *err, size_t errlen);
enum sesame_storage_result sqlite_otp_find(void *state, const char *hash, const char *purpose,
					   struct sesame_otp *out, char *buf, size_t buflen,
					   char *err, size_t errlen);
enum sesame_storage_result sqlite_otp_revoke(void *state, long long user_id, const char *purpose,
					     char *err, size_t errlen);
enum sesame_storage_result sqlite_event_add(void *state, const struct sesame_event *event,
					    char *err, size_t errlen);
enum sesame_storage_result sqlite_event_list(void *state, long long user_id, long long since_ms,
					     long long after_id, long long limit,
					     void (*each)(void *ctx, const struct sesame_event *e),
					     void *ctx, char *err, size_t errlen);
enum sesame_storage_result sqlite_event_purge(void *state, long long before_ms, char *err,
					      size_t errlen);

/* sqlite_query.c: a route script's own statement (ABI 1.1). */
enum sesame_storage_result
sqlite_query(void *state, const char *sql, const struct sesame_value *params, size_t nparams,
	     int (*row)(void *ctx, size_t ncols, const char *const *names,
			const struct sesame_value *values),
	     void *ctx, long long *affected, long long *insert_id, char *err, size_t errlen);

#endif
