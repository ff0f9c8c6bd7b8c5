/*
 * mariadb_private.h: what the MariaDB store's files share (mariadb.c: users and token state;
 * mariadb_migrate.c: the schema's migrations; mariadb_accounts.c: the account flows' state,
 * events and route scripts' own statements; mariadb_retry.c: errors and retries). Not an
 * interface of the plugin: that is
 * <sesame/plugin.h>.
 */
#ifndef SESAME_MARIADB_PRIVATE_H
#define SESAME_MARIADB_PRIVATE_H

#include <sesame/plugin.h>

#include <mysql.h>
#include <stdbool.h>
#include <stddef.h>

/* The database server's time, Unix milliseconds; UTC, so no time zone can make it ambiguous. */
#define NOW_MS_SQL "(TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6)) DIV 1000)"

/* A user's one-time tokens, and the expired ones: user_delete and token_purge delete them. */
#define MARIADB_OTP_REVOKE_SQL "DELETE FROM `sesame_onetime_tokens` WHERE `user_id` = ?"
#define MARIADB_PURGE_OTP_SQL                                                                      \
	"DELETE FROM `sesame_onetime_tokens` WHERE `expires_at` <= UNIX_TIMESTAMP()"

struct store {
	const struct sesame_host *host;
	const struct sesame_mariadb *db;
	const struct sesame_users_schema *users;
	char insert_sql[512];
	char find_by_email_sql[512];
	char find_by_id_sql[512];
	char set_password_sql[512];
	char list_sql[640];
	char list_bare_sql[640];
	char delete_sql[512];
	/* mariadb_accounts.c's, made by mariadb_accounts_make_sql */
	char set_email_sql[512];
	char exists_sql[512];
	char verify_sql[640];
};

/* mariadb_retry.c: the classification of errors and the retry policy of every call. */
/* Forgets this thread's last error, before each try of a call. */
void mariadb_forget_error(void);
/* Whether code says the connection or its node is gone (the node's connections go too). */
bool mariadb_gone(unsigned int code);
/* Classifies a failed statement and gives its connection back accordingly: CONFLICT for a
 * duplicate key, UNAVAILABLE for a connection or node gone or a conflict, else FAILED. With
 * code 0 the connection's error is taken: the one the server sent while rows were read. */
enum sesame_storage_result mariadb_failed(struct store *s, MYSQL *conn, unsigned int code,
					  const char *msg, char *err, size_t errlen);
/* A statement the pool could not prepare: gives the connection back; UNAVAILABLE or FAILED. */
enum sesame_storage_result mariadb_not_prepared(struct store *s, MYSQL *conn);
/* Begins a transaction on conn; on failure the connection is given back. */
enum sesame_storage_result mariadb_begin(struct store *s, MYSQL *conn, char *err, size_t errlen);
/* Commits, and gives the connection back either way; r when it committed. */
enum sesame_storage_result mariadb_commit(struct store *s, MYSQL *conn,
					  enum sesame_storage_result r, char *err, size_t errlen);

/* What one call spent of its retries so far. */
struct mariadb_tries {
	int conflicts; /* runs again after a lost conflict */
	bool moved;    /* run again after a lost connection */
};
enum mariadb_verdict { MARIADB_FINAL, MARIADB_AGAIN_CONFLICT, MARIADB_AGAIN_CONNECTION };
/*
 * Whether a try that failed with code runs again, and why; unknown: its change may have been
 * made (a connection lost after COMMIT, or after an autocommit statement, was sent);
 * idempotent: the call may run twice. Pure: the policy itself.
 */
enum mariadb_verdict mariadb_verdict(unsigned int code, bool unknown, bool idempotent,
				     const struct mariadb_tries *t);
/*
 * After a try that gave r: whether to run the call again, after this thread's last error
 * (mariadb_verdict); it counts the retry and, after a conflict, pauses first. Use as
 *     struct mariadb_tries t = {0};
 *     do { mariadb_forget_error(); r = once(...); } while (mariadb_retry(s, &t, r, idem));
 */
bool mariadb_retry(struct store *s, struct mariadb_tries *t, enum sesame_storage_result r,
		   bool idempotent);

/* mariadb.c: the helpers every function uses. */
void mariadb_bind_string(MYSQL_BIND *b, const char *s, unsigned long *len);
void mariadb_bind_long(MYSQL_BIND *b, long long *v);
/* Prepares sql on conn and runs it with params: the statement, or NULL with the connection
 * given back and the result in *r. */
MYSQL_STMT *mariadb_execute(struct store *s, MYSQL *conn, const char *sql, MYSQL_BIND *params,
			    enum sesame_storage_result *r, char *err, size_t errlen);
/* Runs sql, which returns no rows; OK or the failure (the connection then given back). */
enum sesame_storage_result mariadb_execute_only(struct store *s, MYSQL *conn, const char *sql,
						MYSQL_BIND *params, char *err, size_t errlen);
/* Runs sql, which returns no rows, on a connection of its own. */
enum sesame_storage_result mariadb_run_alone(struct store *s, const char *sql, MYSQL_BIND *params,
					     char *err, size_t errlen);

/* mariadb_migrate.c: the storage kind's migrate, safe for any number of starters at once. */
int mariadb_migrate(void *state, bool apply, char *err, size_t errlen);

/* mariadb_accounts.c: the statements that name the users table, written into s. */
void mariadb_accounts_make_sql(struct store *s);

/* mariadb_accounts.c: the functions of ABI 1.1. */
enum sesame_storage_result mariadb_user_set_verified(void *state, long long id, bool verified,
						     char *err, size_t errlen);
enum sesame_storage_result mariadb_user_set_email(void *state, long long id, const char *email,
						  char *err, size_t errlen);
enum sesame_storage_result mariadb_otp_create(void *state, const struct sesame_otp *otp,
					      long long ttl, char *err, size_t errlen);
enum sesame_storage_result mariadb_otp_spend(void *state, const char *hash, const char *purpose,
					     struct sesame_otp *out, char *buf, size_t buflen,
					     char *err, size_t errlen);
enum sesame_storage_result mariadb_otp_find(void *state, const char *hash, const char *purpose,
					    struct sesame_otp *out, char *buf, size_t buflen,
					    char *err, size_t errlen);
enum sesame_storage_result mariadb_otp_revoke(void *state, long long user_id, const char *purpose,
					      char *err, size_t errlen);
enum sesame_storage_result mariadb_event_add(void *state, const struct sesame_event *event,
					     char *err, size_t errlen);
enum sesame_storage_result mariadb_event_list(void *state, long long user_id, long long since_ms,
					      long long after_id, long long limit,
					      void (*each)(void *ctx, const struct sesame_event *e),
					      void *ctx, char *err, size_t errlen);
enum sesame_storage_result mariadb_event_purge(void *state, long long before_ms, char *err,
					       size_t errlen);
enum sesame_storage_result
mariadb_query(void *state, const char *sql, const struct sesame_value *params, size_t nparams,
	      int (*row)(void *ctx, size_t ncols, const char *const *names,
			 const struct sesame_value *values),
	      void *ctx, long long *affected, long long *insert_id, char *err, size_t errlen);

#endif
