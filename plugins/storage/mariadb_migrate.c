/*
 * mariadb_migrate.c: applies the numbered migrations of scripts/schema/mariadb, compiled in,
 * so that any number of starters (sesamed nodes, sesamectl migrate runs) may run them at once,
 * on one server or on a Galera cluster, and each migration is applied once.
 *
 * GET_LOCK and LOCK TABLES lock on one Galera node only, so the starters agree through rows.
 * sesame_migrations holds one row per migration done; its layout is the one every sesame has
 * written, so a database migrated by an older sesamed needs no upgrade (each row there is
 * done). sesame_migration_claims holds one row per migration being applied: its version (the
 * primary key), who claimed it and a heartbeat, both times on the database server's clock.
 *
 * A starter claims version N with an INSERT: the primary key lets one claim win (the loser's
 * INSERT meets the winner's row or, on Galera, the loser's commit fails certification with
 * 1213). The winner applies N's statements while a thread of its own renews the heartbeat
 * every HEARTBEAT_S seconds on a second connection of the pool, then records N as done and
 * deletes its claim in one transaction. The others poll until N is done, then go on with N+1.
 * A claim whose heartbeat is STALE_MS old belongs to a starter that died (kill -9, a host
 * lost): another takes it over with an UPDATE that only a stale claim matches, and applies N
 * again. A starter that finds everything done runs no DDL at all.
 *
 * Why this holds although DDL commits implicitly and, on Galera, runs in total order (TOI):
 * the claim commits, cluster-wide, before any statement of N runs; N's DDL is ordered before
 * the row that records N done on every node, so a node that sees N done has N's schema. What
 * no transaction can cover, a starter dying between its DDL and that row, is what the
 * heartbeat and the takeover settle: every migration is idempotent statement by statement
 * (IF NOT EXISTS, IF EXISTS), so applying N again after a partial run finishes it. A long DDL
 * on Galera holds the cluster's commits, the heartbeat's among them, so a claim may look stale
 * while its owner is still at work; the taker's DDL then waits for the owner's and finds
 * nothing left to do. The owner records N done only if it still owns the claim (its DELETE
 * of the claim, first in that transaction, must find the row): one that lost it waits, as any
 * other starter, until the taker has applied N again and recorded it, and only then goes on
 * with N+1, which the taker's replay of N cannot undo. A claim of a migration recorded done
 * is never taken over.
 */
#include "mariadb_private.h"

#include <mysqld_error.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct migration {
	int version;
	const char *name;
	const char *sql;
};

#include "mariadb_schema.h"

#define NMIGRATIONS    (sizeof(migrations) / sizeof(migrations[0]))
#define LATEST_VERSION (migrations[NMIGRATIONS - 1].version)

#define HEARTBEAT_S 2
#define STALE_MS    15000
#define POLL_MS	    250
/* How long a starter waits for a migration another one is applying, and heartbeating. */
#define WAIT_MAX_S 600
/* Failures in a row of the statements that claim or look, before a starter gives up. */
#define FAILURES_MAX 5
#define OWNER_MAX    160

#define RECORD_TABLE_SQL                                                                           \
	"CREATE TABLE IF NOT EXISTS `sesame_migrations` (`version` INT NOT NULL PRIMARY KEY, "     \
	"`name` VARCHAR(255) NOT NULL, `applied_at` TIMESTAMP NOT NULL DEFAULT "                   \
	"CURRENT_TIMESTAMP) ENGINE=InnoDB"
#define CLAIMS_TABLE_SQL                                                                           \
	"CREATE TABLE IF NOT EXISTS `sesame_migration_claims` (`version` INT NOT NULL PRIMARY "    \
	"KEY, `owner` VARCHAR(160) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, "               \
	"`claimed_ms` BIGINT NOT NULL, `heartbeat_ms` BIGINT NOT NULL) ENGINE=InnoDB"
#define LOOK_SQL                                                                                   \
	"SELECT EXISTS (SELECT 1 FROM `sesame_migrations` WHERE `version` = ?), "                  \
	"c.`owner`, " NOW_MS_SQL                                                                   \
	" - c.`heartbeat_ms` FROM (SELECT 1) AS `one` LEFT JOIN `sesame_migration_claims` c ON "   \
	"c.`version` = ?"
#define CLAIM_SQL                                                                                  \
	"INSERT INTO `sesame_migration_claims` (`version`, `owner`, `claimed_ms`, "                \
	"`heartbeat_ms`) "                                                                         \
	"VALUES (?, ?, " NOW_MS_SQL ", " NOW_MS_SQL ")"
#define TAKEOVER_SQL                                                                               \
	"UPDATE `sesame_migration_claims` SET `owner` = ?, `claimed_ms` = " NOW_MS_SQL ", "        \
	"`heartbeat_ms` = " NOW_MS_SQL                                                             \
	" WHERE `version` = ? AND `owner` = ? AND `heartbeat_ms` < " NOW_MS_SQL " - ? AND NOT "    \
	"EXISTS (SELECT 1 FROM `sesame_migrations` WHERE `version` = ?)"
#define HEARTBEAT_SQL                                                                              \
	"UPDATE `sesame_migration_claims` SET `heartbeat_ms` = " NOW_MS_SQL " WHERE `version` = "  \
	"? AND `owner` = ?"
#define UNCLAIM_SQL "DELETE FROM `sesame_migration_claims` WHERE `version` = ? AND `owner` = ?"
#define DONE_SQL                                                                                   \
	"INSERT INTO `sesame_migrations` (`version`, `name`) VALUES (?, ?) ON DUPLICATE KEY "      \
	"UPDATE `version` = `version`"

/* A claim of one migration: whose it is, and its heartbeat thread's state. */
struct claim {
	struct store *s;
	const struct migration *m;
	char owner[OWNER_MAX];
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop, lost;
};

static void pause_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&t, NULL);
}

static long long monotonic_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec;
}

/* Gives a connection back after a failure outside any statement of the pool's. */
static int give_back(struct store *s, MYSQL *conn, char *err, size_t errlen)
{
	snprintf(err, errlen, "MariaDB: %s", mysql_error(conn));
	s->db->release(conn, mysql_ping(conn) != 0);
	return -1;
}

/* Runs sql, DDL or a statement without parameters, on a connection of its own. */
static int run_text(struct store *s, const char *sql, size_t len, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return -1;
	if (mysql_real_query(conn, sql, (unsigned long)len) != 0)
		return give_back(s, conn, err, errlen);
	MYSQL_RES *res = mysql_store_result(conn);
	if (res != NULL)
		mysql_free_result(res);
	s->db->release(conn, false);
	return 0;
}

/* Runs sql with params on a connection of its own: the rows it changed in *changed. */
static enum sesame_storage_result run_changing(struct store *s, const char *sql, MYSQL_BIND *params,
					       long long *changed, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	MYSQL_STMT *stmt = mariadb_execute(s, conn, sql, params, &r, err, errlen);
	if (stmt == NULL)
		return r;
	*changed = (long long)mysql_stmt_affected_rows(stmt);
	s->db->release(conn, false);
	return SESAME_STORAGE_OK;
}

/* ---- what the database says ---- */

/* What a starter sees of one migration. */
struct look {
	bool done, claimed;
	long long age_ms; /* of the claim's heartbeat */
	char owner[OWNER_MAX + 1];
	unsigned long owner_len;
	my_bool nulls[3];
};

static void bind_look(MYSQL_BIND *res, struct look *l, long long *done)
{
	memset(res, 0, 3 * sizeof(*res));
	mariadb_bind_long(&res[0], done);
	res[1].buffer_type = MYSQL_TYPE_STRING;
	res[1].buffer = l->owner;
	res[1].buffer_length = OWNER_MAX;
	res[1].length = &l->owner_len;
	mariadb_bind_long(&res[2], &l->age_ms);
	for (int i = 0; i < 3; i++)
		res[i].is_null = &l->nulls[i];
}

static enum sesame_storage_result look_once(struct store *s, const struct migration *m,
					    struct look *l, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return SESAME_STORAGE_UNAVAILABLE;
	long long version = m->version, done = 0;
	MYSQL_BIND p[2], res[3];
	mariadb_bind_long(&p[0], &version);
	mariadb_bind_long(&p[1], &version);
	enum sesame_storage_result r = SESAME_STORAGE_OK;
	MYSQL_STMT *stmt = mariadb_execute(s, conn, LOOK_SQL, p, &r, err, errlen);
	if (stmt == NULL)
		return r;
	memset(l, 0, sizeof(*l));
	bind_look(res, l, &done);
	if (mysql_stmt_bind_result(stmt, res) != 0 || mysql_stmt_fetch(stmt) != 0)
		return mariadb_failed(s, conn, mysql_stmt_errno(stmt), mysql_stmt_error(stmt), err,
				      errlen);
	l->done = done != 0;
	l->claimed = !l->nulls[1];
	l->owner[l->claimed ? l->owner_len : 0] = '\0';
	mysql_stmt_free_result(stmt);
	s->db->release(conn, false);
	return SESAME_STORAGE_OK;
}

/* How many of this plugin's migrations are recorded done, and the latest of them; a missing
 * record table is none. */
static int read_done(struct store *s, long long *count, long long *latest, char *err, size_t errlen)
{
	MYSQL *conn = s->db->acquire(err, errlen);
	if (conn == NULL)
		return -1;
	char sql[128];
	snprintf(sql, sizeof(sql),
		 "SELECT COUNT(*), COALESCE(MAX(`version`), 0) FROM `sesame_migrations` WHERE "
		 "`version` <= %d",
		 LATEST_VERSION);
	*count = *latest = 0;
	if (mysql_real_query(conn, sql, (unsigned long)strlen(sql)) != 0) {
		if (mysql_errno(conn) != ER_NO_SUCH_TABLE)
			return give_back(s, conn, err, errlen);
		s->db->release(conn, false);
		return 0;
	}
	MYSQL_RES *res = mysql_store_result(conn);
	MYSQL_ROW row = res != NULL ? mysql_fetch_row(res) : NULL;
	if (row != NULL && row[0] != NULL && row[1] != NULL) {
		*count = atoll(row[0]);
		*latest = atoll(row[1]);
	}
	if (res != NULL)
		mysql_free_result(res);
	s->db->release(conn, false);
	return 0;
}

/* ---- the claim ---- */

/* Who this starter is, for the operator who finds its claim: host, process, a random tag. */
static void name_owner(struct store *s, char *owner, size_t len)
{
	char host[64] = "";
	uint32_t tag;
	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "?");
	for (char *c = host; *c != '\0'; c++) {
		if (*c <= ' ' || *c > '~')
			*c = '_';
	}
	s->host->random(&tag, sizeof(tag));
	snprintf(owner, len, "%s pid %ld #%08x", host, (long)getpid(), (unsigned)tag);
}

static void bind_claim(MYSQL_BIND *p, long long *version, const char *owner, unsigned long *len)
{
	mariadb_bind_long(&p[0], version);
	mariadb_bind_string(&p[1], owner, len);
}

/* Claims m: 1 when this starter won it, 0 when another did, -1 on a failure. */
static int claim(struct claim *c, char *err, size_t errlen)
{
	long long version = c->m->version, changed = 0;
	MYSQL_BIND p[2];
	unsigned long len;
	bind_claim(p, &version, c->owner, &len);
	enum sesame_storage_result r = run_changing(c->s, CLAIM_SQL, p, &changed, err, errlen);
	if (r == SESAME_STORAGE_CONFLICT)
		return 0;
	return r == SESAME_STORAGE_OK && changed == 1 ? 1 : -1;
}

/* Takes over the claim of a starter (l: what was seen of it) that stopped heartbeating: 1 when
 * done, 0 when another starter was quicker, -1 on a failure. */
static int take_over(struct claim *c, const struct look *l, char *err, size_t errlen)
{
	long long version = c->m->version, changed = 0, stale_ms = STALE_MS;
	MYSQL_BIND p[5];
	unsigned long lens[2];
	mariadb_bind_string(&p[0], c->owner, &lens[0]);
	mariadb_bind_long(&p[1], &version);
	mariadb_bind_string(&p[2], l->owner, &lens[1]);
	mariadb_bind_long(&p[3], &stale_ms);
	mariadb_bind_long(&p[4], &version);
	if (run_changing(c->s, TAKEOVER_SQL, p, &changed, err, errlen) != SESAME_STORAGE_OK)
		return -1;
	if (changed != 1)
		return 0;
	c->s->host->log(
	    c->s->host, SESAME_LOG_WARN,
	    "migration %s: its claim by %s has had no heartbeat for %lld s (that starter "
	    "died): applying it again",
	    c->m->name, l->owner, l->age_ms / 1000);
	return 1;
}

/* Renews c's heartbeat every HEARTBEAT_S seconds until told to stop; notes a claim lost. */
static void *heartbeat(void *arg)
{
	struct claim *c = arg;
	long long version = c->m->version;
	pthread_mutex_lock(&c->lock);
	while (!c->stop) {
		struct timespec at;
		clock_gettime(CLOCK_MONOTONIC, &at);
		at.tv_sec += HEARTBEAT_S;
		if (pthread_cond_timedwait(&c->wake, &c->lock, &at) == 0 || c->stop)
			continue;
		pthread_mutex_unlock(&c->lock);
		MYSQL_BIND p[2];
		unsigned long len;
		long long changed = 1;
		char err[256];
		bind_claim(p, &version, c->owner, &len);
		/* A beat that fails (no connection free, a lock wait) is tried at the next. */
		bool lost = run_changing(c->s, HEARTBEAT_SQL, p, &changed, err, sizeof(err)) ==
				SESAME_STORAGE_OK &&
			    changed == 0;
		pthread_mutex_lock(&c->lock);
		c->lost = c->lost || lost;
	}
	pthread_mutex_unlock(&c->lock);
	return NULL;
}

static bool claim_lost(struct claim *c)
{
	pthread_mutex_lock(&c->lock);
	bool lost = c->lost;
	pthread_mutex_unlock(&c->lock);
	return lost;
}

/* Gives up c's claim, so that another starter may try at once rather than after STALE_MS. */
static void unclaim(struct claim *c)
{
	long long version = c->m->version, changed = 0;
	MYSQL_BIND p[2];
	unsigned long len;
	char ignored[256];
	bind_claim(p, &version, c->owner, &len);
	run_changing(c->s, UNCLAIM_SQL, p, &changed, ignored, sizeof(ignored));
}

/* ---- applying one migration ---- */

/*
 * Runs m's statements, each ending with a ';' at the end of a line (the pool's connections
 * take one statement at a time), on the users table's names: 0, 1 when the claim was taken
 * over, -1 on a failure.
 */
static int run_statements(struct claim *c, char *sql, char *err, size_t errlen)
{
	for (char *p = sql; *p != '\0';) {
		char *end = strstr(p, ";\n");
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		bool blank = strspn(p, " \t\n") >= len;
		if (!blank && claim_lost(c))
			return 1;
		if (!blank && run_text(c->s, p, len, err, errlen) != 0)
			return -1;
		p += end != NULL ? len + 2 : len;
	}
	return 0;
}

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

/*
 * In a transaction on conn: drops c's claim then records m done, only while the claim is still
 * c's; 1 when another starter took it over (the transaction rolled back), else OK or the
 * failure (the connection then given back).
 */
static int record_in(struct claim *c, MYSQL *conn, enum sesame_storage_result *r, char *err,
		     size_t errlen)
{
	long long version = c->m->version;
	MYSQL_BIND p[2];
	unsigned long len;
	bind_claim(p, &version, c->owner, &len);
	MYSQL_STMT *stmt = mariadb_execute(c->s, conn, UNCLAIM_SQL, p, r, err, errlen);
	if (stmt == NULL)
		return 0;
	if (mysql_stmt_affected_rows(stmt) != 1) {
		mysql_rollback(conn);
		c->s->db->release(conn, false);
		return 1;
	}
	mariadb_bind_long(&p[0], &version);
	mariadb_bind_string(&p[1], c->m->name, &len);
	*r = mariadb_execute_only(c->s, conn, DONE_SQL, p, err, errlen);
	if (*r == SESAME_STORAGE_OK && mysql_commit(conn) != 0)
		*r = mariadb_failed(c->s, conn, mysql_errno(conn), mysql_error(conn), err, errlen);
	else if (*r == SESAME_STORAGE_OK)
		c->s->db->release(conn, false);
	return 0;
}

/*
 * Records m done and drops c's claim, in one transaction; tried again after a failure. 1 when
 * the claim is no longer c's: another starter took it over and applies m again, or a COMMIT
 * whose answer was lost made it (settle then finds m done).
 */
static int record_done(struct claim *c, char *err, size_t errlen)
{
	enum sesame_storage_result r = SESAME_STORAGE_FAILED;
	for (int tries = 0; r != SESAME_STORAGE_OK && tries < 3; tries++) {
		MYSQL *conn = c->s->db->acquire(err, errlen);
		if (conn == NULL)
			return -1;
		if (mysql_real_query(conn, "START TRANSACTION", 17) != 0) {
			give_back(c->s, conn, err, errlen);
			continue;
		}
		if (record_in(c, conn, &r, err, errlen) == 1)
			return 1;
	}
	return r == SESAME_STORAGE_OK ? 0 : -1;
}

/* Says which migration failed: "MariaDB: migration NAME: why". */
static void name_error(const struct migration *m, char *err, size_t errlen)
{
	char why[512];
	const char *prefix = "MariaDB: ";
	snprintf(why, sizeof(why), "%s",
		 strncmp(err, prefix, strlen(prefix)) == 0 ? err + strlen(prefix) : err);
	snprintf(err, errlen, "MariaDB: migration %s: %s", m->name, why);
}

/* Says that c's claim was taken over while c was applying its migration. */
static int log_lost(struct claim *c)
{
	c->s->host->log(c->s->host, SESAME_LOG_WARN,
			"migration %s: its claim was taken over by another starter while this one "
			"applied it: waiting for that one",
			c->m->name);
	return 1;
}

/* Applies m, claimed by c, with its heartbeat running; records it done. 0, 1 when another
 * starter took the claim over (c then waits as any other), -1 on a failure. */
static int apply_claimed(struct claim *c, char *err, size_t errlen)
{
	pthread_t beat;
	c->stop = c->lost = false;
	char *sql = expand(c->s->users, c->m->sql);
	if (sql == NULL) {
		snprintf(err, errlen, "out of memory");
		unclaim(c);
		return -1;
	}
	bool beating = pthread_create(&beat, NULL, heartbeat, c) == 0;
	int rc = run_statements(c, sql, err, errlen);
	free(sql);
	if (beating) {
		pthread_mutex_lock(&c->lock);
		c->stop = true;
		pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->lock);
		pthread_join(beat, NULL);
	}
	if (rc == 0)
		rc = record_done(c, err, errlen);
	if (rc == 1)
		return log_lost(c);
	if (rc != 0) {
		unclaim(c);
		name_error(c->m, err, errlen);
		return -1;
	}
	c->s->host->log(c->s->host, SESAME_LOG_INFO, "applied migration %s", c->m->name);
	return 0;
}

/* ---- every starter ---- */

/* What a starter does once it has looked: 1 when it won m's claim, 0 to wait, -1 on a failure. */
static int try_to_win(struct claim *c, const struct look *l, char *err, size_t errlen)
{
	if (!l->claimed)
		return claim(c, err, errlen);
	return l->age_ms >= STALE_MS ? take_over(c, l, err, errlen) : 0;
}

/* Polls until m is done, applying it when this starter wins its claim. */
static int settle(struct claim *c, char *err, size_t errlen)
{
	long long deadline = monotonic_s() + WAIT_MAX_S;
	struct look l = {.owner = "nobody"};
	int failures = 0, won = 0;
	while (monotonic_s() <= deadline) {
		if (look_once(c->s, c->m, &l, err, errlen) != SESAME_STORAGE_OK)
			won = -1;
		else if (l.done)
			return 0;
		else
			won = try_to_win(c, &l, err, errlen);
		if (won == 1 && (won = apply_claimed(c, err, errlen)) != 1)
			return won;
		/* A failure in a row of FAILURES_MAX is no passing lock conflict. */
		failures = won < 0 ? failures + 1 : 0;
		if (failures >= FAILURES_MAX)
			return -1;
		pause_ms(POLL_MS);
	}
	snprintf(
	    err, errlen,
	    "%s is still being applied by %s after %d s of waiting: run sesamectl migrate once "
	    "it is done",
	    c->m->name, l.owner, WAIT_MAX_S);
	return -1;
}

/* Applies every migration not yet done, in order, each once whoever else runs this. */
static int apply_all(struct store *s, char *err, size_t errlen)
{
	long long count = 0, latest = 0;
	if (read_done(s, &count, &latest, err, errlen) != 0)
		return -1;
	if (count == (long long)NMIGRATIONS)
		return 0;
	if (run_text(s, RECORD_TABLE_SQL, strlen(RECORD_TABLE_SQL), err, errlen) != 0 ||
	    run_text(s, CLAIMS_TABLE_SQL, strlen(CLAIMS_TABLE_SQL), err, errlen) != 0)
		return -1;
	struct claim c = {.s = s};
	name_owner(s, c.owner, sizeof(c.owner));
	pthread_mutex_init(&c.lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&c.wake, &attr);
	pthread_condattr_destroy(&attr);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < NMIGRATIONS; i++) {
		c.m = &migrations[i];
		rc = settle(&c, err, errlen);
	}
	pthread_cond_destroy(&c.wake);
	pthread_mutex_destroy(&c.lock);
	return rc;
}

int mariadb_migrate(void *state, bool apply, char *err, size_t errlen)
{
	struct store *s = state;
	long long count = 0, latest = 0;
	err[0] = '\0';
	if (apply)
		return apply_all(s, err, errlen);
	if (read_done(s, &count, &latest, err, errlen) != 0)
		return -1;
	if (count < (long long)NMIGRATIONS) {
		snprintf(err, errlen,
			 "the schema is at version %lld, this sesamed needs %d: run sesamectl "
			 "migrate",
			 latest, LATEST_VERSION);
		return -1;
	}
	return 0;
}
