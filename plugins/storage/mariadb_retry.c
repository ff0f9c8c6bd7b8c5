/*
 * mariadb_retry.c: the MariaDB store's error classification and retry policy, one place for
 * every call of the store.
 *
 * Each call runs as tries of one function that acquires a connection, runs its statements (a
 * transaction between mariadb_begin and mariadb_commit, or one statement in autocommit) and
 * gives the connection back. A failed statement goes through mariadb_failed, which notes its
 * error code in this thread and whether the change may have been made all the same, then
 * gives the connection back: as broken when the error says the connection or its node is gone
 * (the pool then drops the node's connections and connects to the next node). After each try,
 * mariadb_retry says whether to run the call again (mariadb_verdict):
 *  - a deadlock, a lock wait timeout or a lost Galera certification (1213, 1205, at any
 *    statement or at COMMIT) changed nothing: run again as a whole, CONFLICT_TRIES in all,
 *    after a pause drawn at random so that the two that collided do not collide again;
 *  - a connection lost, or a node refusing clients (1047), before COMMIT was sent (or, in
 *    autocommit, before the statement was) changed nothing: run again once, on the next node;
 *  - a connection lost after COMMIT or an autocommit write was sent leaves the outcome
 *    unknown: run again only when the call is idempotent (reads, setting a given hash,
 *    revoking an id); else, as for a registration, UNAVAILABLE, and the client decides.
 * What is still lost after that answers UNAVAILABLE (503), never FAILED. Each retry is counted
 * in sesame_storage_retries_total through the host (ABI 1.2).
 */
#include "mariadb_private.h"

#include <errmsg.h>
#include <mysqld_error.h>
#include <stdio.h>
#include <time.h>

#define CONFLICT_TRIES 4 /* tries in all of a call that keeps losing conflicts */

/*
 * This thread's last failed statement: its code, whether its change may have been made
 * (unknown outcome), and whether a transaction is open before its COMMIT. In the static TLS
 * block that glibc keeps spare for dlopen'd modules: no block allocated per thread on first
 * use, and none that LeakSanitizer's walk of a thread's dynamic TLS would trip on.
 */
static _Thread_local unsigned int last_code __attribute__((tls_model("initial-exec")));
static _Thread_local bool last_unknown __attribute__((tls_model("initial-exec")));
static _Thread_local bool tx_open __attribute__((tls_model("initial-exec")));

void mariadb_forget_error(void)
{
	last_code = 0;
	last_unknown = false;
	tx_open = false;
}

bool mariadb_gone(unsigned int code)
{
	switch (code) {
	case ER_UNKNOWN_COM_ERROR: /* 1047: WSREP has not yet prepared node for application use */
	case ER_SERVER_SHUTDOWN:
	case ER_CONNECTION_KILLED:
	case CR_CONNECTION_ERROR:
	case CR_CONN_HOST_ERROR:
	case CR_SERVER_GONE_ERROR:
	case CR_SERVER_LOST:
	case CR_SERVER_LOST_EXTENDED:
	case CR_COMMANDS_OUT_OF_SYNC:
		return true;
	default:
		return false;
	}
}

/* Whether a statement that failed with code may have run: sent, and no answer came back. A
 * server's answer (1047, 1213...) or a statement never sent (2006) says it did not. */
static bool maybe_ran(unsigned int code)
{
	return code == CR_SERVER_LOST || code == CR_SERVER_LOST_EXTENDED ||
	       code == ER_CONNECTION_KILLED || code == ER_SERVER_SHUTDOWN;
}

static bool conflict(unsigned int code)
{
	return code == ER_LOCK_DEADLOCK || code == ER_LOCK_WAIT_TIMEOUT;
}

enum sesame_storage_result mariadb_failed(struct store *s, MYSQL *conn, unsigned int code,
					  const char *msg, char *err, size_t errlen)
{
	/* An error the server sent while a statement's rows were read (a lock wait timeout, a
	 * Galera abort during a locking read) is kept on the connection, not the statement. */
	if (code == 0 && mysql_errno(conn) != 0) {
		code = mysql_errno(conn);
		msg = mysql_error(conn);
	}
	snprintf(err, errlen, "MariaDB: %s", msg);
	last_code = code;
	/* Inside a transaction before its COMMIT, a lost connection takes the transaction with
	 * it: nothing was made. */
	last_unknown = !tx_open && maybe_ran(code);
	tx_open = false;
	/* An error without a connection code (a statement that could not be prepared) may
	 * still come from a dead connection: ask it. */
	bool gone = mariadb_gone(code) || (code != ER_DUP_ENTRY && mysql_ping(conn) != 0);
	/* A statement of a transaction (the token state's) may fail with the transaction
	 * open: the connection goes back without it. Outside one, a rollback does nothing. */
	if (!gone)
		mysql_rollback(conn);
	s->db->release(conn, gone);
	if (code == ER_DUP_ENTRY)
		return SESAME_STORAGE_CONFLICT;
	return gone || conflict(code) ? SESAME_STORAGE_UNAVAILABLE : SESAME_STORAGE_FAILED;
}

enum sesame_storage_result mariadb_not_prepared(struct store *s, MYSQL *conn)
{
	/* The prepare's own code, where the host keeps it (ABI 1.2): a transaction aborted by
	 * another node's write (1213) or a node gone says so there first. */
	unsigned int code = s->host->abi_minor >= 2 && s->db->prepare_errno != NULL
				? s->db->prepare_errno(conn)
				: 0;
	bool gone = mariadb_gone(code) || mysql_ping(conn) != 0;
	last_code = gone ? (code != 0 ? code : CR_SERVER_GONE_ERROR) : conflict(code) ? code : 0;
	last_unknown = false; /* the statement never ran */
	tx_open = false;
	if (!gone)
		mysql_rollback(conn);
	s->db->release(conn, gone);
	return gone || conflict(code) ? SESAME_STORAGE_UNAVAILABLE : SESAME_STORAGE_FAILED;
}

enum sesame_storage_result mariadb_begin(struct store *s, MYSQL *conn, char *err, size_t errlen)
{
	if (mysql_real_query(conn, "START TRANSACTION", 17) != 0)
		return mariadb_failed(s, conn, mysql_errno(conn), mysql_error(conn), err, errlen);
	tx_open = true;
	return SESAME_STORAGE_OK;
}

enum sesame_storage_result mariadb_commit(struct store *s, MYSQL *conn,
					  enum sesame_storage_result r, char *err, size_t errlen)
{
	/* A transaction the server rolled back on its own (a Galera node applying another
	 * node's write aborts a local one that holds its rows) is no longer open: it changed
	 * nothing, and is run again as a lost conflict, never committed as if whole. */
	unsigned int status = 0;
	if (mariadb_get_infov(conn, MARIADB_CONNECTION_SERVER_STATUS, &status) == 0 &&
	    (status & SERVER_STATUS_IN_TRANS) == 0)
		return mariadb_failed(s, conn, ER_LOCK_DEADLOCK,
				      "the transaction was rolled back by the server", err, errlen);
	/* From here, a connection lost leaves the outcome unknown. */
	tx_open = false;
	if (mysql_commit(conn) != 0)
		return mariadb_failed(s, conn, mysql_errno(conn), mysql_error(conn), err, errlen);
	s->db->release(conn, false);
	return r;
}

enum mariadb_verdict mariadb_verdict(unsigned int code, bool unknown, bool idempotent,
				     const struct mariadb_tries *t)
{
	if (conflict(code))
		return t->conflicts + 1 < CONFLICT_TRIES ? MARIADB_AGAIN_CONFLICT : MARIADB_FINAL;
	if (!mariadb_gone(code) || t->moved || (unknown && !idempotent))
		return MARIADB_FINAL;
	return MARIADB_AGAIN_CONNECTION;
}

static void count(struct store *s, const char *reason)
{
	const struct sesame_host *h = s->host;
	if (h->size >= offsetof(struct sesame_host, storage_retried) + sizeof(h->storage_retried) &&
	    h->storage_retried != NULL)
		h->storage_retried(h, reason);
}

/* A short pause, drawn at random and longer after each conflict. */
static void pause_after(struct store *s, int conflicts)
{
	uint32_t jitter;
	s->host->random(&jitter, sizeof(jitter));
	long ms = 5 + (long)(jitter % (20u << conflicts));
	struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&pause, NULL);
}

bool mariadb_retry(struct store *s, struct mariadb_tries *t, enum sesame_storage_result r,
		   bool idempotent)
{
	enum mariadb_verdict v = r == SESAME_STORAGE_UNAVAILABLE
				     ? mariadb_verdict(last_code, last_unknown, idempotent, t)
				     : MARIADB_FINAL;
	unsigned int code = last_code;
	mariadb_forget_error();
	if (v == MARIADB_AGAIN_CONFLICT) {
		t->conflicts++;
		pause_after(s, t->conflicts);
		s->host->log(s->host, SESAME_LOG_INFO,
			     "a transaction lost a lock conflict (%u): retried", code);
		count(s, "conflict");
	} else if (v == MARIADB_AGAIN_CONNECTION) {
		t->moved = true;
		s->host->log(s->host, SESAME_LOG_DEBUG,
			     "a call lost its connection (%u) before it could change anything: "
			     "retried",
			     code);
		count(s, "connection");
	}
	return v != MARIADB_FINAL;
}
