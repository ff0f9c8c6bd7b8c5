/*
 * sesame/plugin.h: the interface between sesamed and its plugins. Self-contained C11.
 *
 * A plugin is one shared object exporting one data symbol, SESAME_PLUGIN_SYMBOL: a descriptor
 * whose first member is struct sesame_plugin_header, followed by the table of functions of its
 * kind (struct sesame_validator, struct sesame_hasher, ...). sesamed checks the header (magic,
 * ABI major and minor, the descriptor's size, kind, name) before it calls anything in the
 * plugin, and refuses a plugin built for another ABI with a message saying so.
 *
 * ABI 1.0 is frozen. The rules:
 *  - Nothing in ABI 1 changes meaning, type or place. A new minor (1.1, 1.2, ...) only adds
 *    members at the end of a kind's descriptor or of struct sesame_host; a change of anything
 *    else is a new major.
 *  - sesamed loads a plugin of its own major built for any minor. From an older minor it
 *    reads only the descriptor's own size (header.size) and treats the members that minor
 *    lacks as absent; a function is required only when the plugin's minor had it. From a
 *    newer minor it reads the members it knows and ignores the rest: the plugin cannot count
 *    on sesamed calling functions a newer minor added.
 *  - A plugin built for another major, older or newer, is refused, with a message that names
 *    the plugin, the ABI it was built for and the one this sesamed loads.
 *  - A plugin reads a host member only when host->size says it is there (a host of an older
 *    minor is smaller), and may read host->abi_minor.
 *  - The descriptor's size is sizeof its kind's struct, set by the kind's macro below.
 *  - struct sesame_user also grows at the end only: sesamed always allocates it, zeroed, so a
 *    plugin of an older minor leaves the members it does not know zero.
 *
 * ABI 1.1 added, for the account flows: struct sesame_user's verified_at; the storage
 * functions user_set_verified, user_set_email, otp_create, otp_spend, otp_revoke, event_add,
 * event_list, event_purge, query and otp_find; and struct sesame_otp, sesame_event and
 * sesame_value.
 *
 * ABI 1.2 added, for clusters: struct sesame_host's storage_retried.
 *
 * Define the descriptor with its kind's macro (SESAME_VALIDATOR_PLUGIN, SESAME_HASHER_PLUGIN,
 * SESAME_STORAGE_PLUGIN), which exports it, and build with hidden visibility:
 *
 *     cc -shared -fPIC -fvisibility=hidden $(pkg-config --cflags sesame-plugin) -o NAME.so NAME.c
 */
#ifndef SESAME_PLUGIN_H
#define SESAME_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SESAME_PLUGIN_MAGIC	0x5345534dU /* "SESM" */
#define SESAME_PLUGIN_ABI_MAJOR 1
#define SESAME_PLUGIN_ABI_MINOR 2
#define SESAME_PLUGIN_SYMBOL	"sesame_plugin"

#if defined(__GNUC__)
#define SESAME_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define SESAME_PLUGIN_EXPORT
#endif

enum sesame_plugin_kind {
	SESAME_PLUGIN_VALIDATOR = 1,
	SESAME_PLUGIN_HASHER = 2,
	SESAME_PLUGIN_STORAGE = 3,
};

struct sesame_plugin_header {
	uint32_t magic;	    /* SESAME_PLUGIN_MAGIC */
	uint16_t abi_major; /* SESAME_PLUGIN_ABI_MAJOR the plugin was built with */
	uint16_t abi_minor; /* SESAME_PLUGIN_ABI_MINOR the plugin was built with */
	uint32_t size;	    /* sizeof the whole descriptor */
	uint32_t kind;	    /* enum sesame_plugin_kind */
	const char *name;   /* the plugin's name: its file is NAME.so */
	const char *version;
};

/* Fills a header for a descriptor of type TYPE. Prefer the kind's macro below. */
#define SESAME_PLUGIN_HEADER(TYPE, KIND, NAME, VERSION)                                            \
	{                                                                                          \
		SESAME_PLUGIN_MAGIC, SESAME_PLUGIN_ABI_MAJOR, SESAME_PLUGIN_ABI_MINOR,             \
		    (uint32_t)sizeof(TYPE), (KIND), (NAME), (VERSION)                              \
	}

/*
 * Defines the plugin's exported descriptor, one macro per kind, which ties the table's type,
 * the kind and the size together: the rest are the kind's functions, as designated
 * initialisers. A table of another kind does not compile (a hasher's .hash is no member of
 * struct sesame_validator), nor, with -Werror, does a function of the wrong type:
 *
 *     SESAME_HASHER_PLUGIN("myscheme", "1.0", .init = init, .fini = fini, .hash = hash,
 *                          .verify = verify, .identify = identify, .needs_rehash = needs_rehash);
 */
#define SESAME_PLUGIN_DESCRIPTOR(TYPE, KIND, NAME, VERSION, ...)                                   \
	SESAME_PLUGIN_EXPORT const TYPE sesame_plugin = {                                          \
	    .header = SESAME_PLUGIN_HEADER(TYPE, KIND, NAME, VERSION), __VA_ARGS__}
#define SESAME_VALIDATOR_PLUGIN(NAME, VERSION, ...)                                                \
	SESAME_PLUGIN_DESCRIPTOR(struct sesame_validator, SESAME_PLUGIN_VALIDATOR, NAME, VERSION,  \
				 __VA_ARGS__)
#define SESAME_HASHER_PLUGIN(NAME, VERSION, ...)                                                   \
	SESAME_PLUGIN_DESCRIPTOR(struct sesame_hasher, SESAME_PLUGIN_HASHER, NAME, VERSION,        \
				 __VA_ARGS__)
#define SESAME_STORAGE_PLUGIN(NAME, VERSION, ...)                                                  \
	SESAME_PLUGIN_DESCRIPTOR(struct sesame_storage, SESAME_PLUGIN_STORAGE, NAME, VERSION,      \
				 __VA_ARGS__)

enum sesame_log_level {
	SESAME_LOG_ERROR = 0,
	SESAME_LOG_WARN = 1,
	SESAME_LOG_INFO = 2,
	SESAME_LOG_DEBUG = 3,
};

/* The plugin's own configuration table; read it through the host's config functions. */
struct sesame_config;

/* Results of the config functions. */
enum sesame_config_result {
	SESAME_CONFIG_OK = 0,
	SESAME_CONFIG_ABSENT = 1, /* not set: keep the default */
	SESAME_CONFIG_WRONG = -1, /* set, but not of that type: an error is already reported */
};

/* What a storage call gives back. */
enum sesame_storage_result {
	SESAME_STORAGE_OK = 0,
	SESAME_STORAGE_NOT_FOUND = 1,
	SESAME_STORAGE_CONFLICT = 2,	 /* a unique value (the e-mail) is taken */
	SESAME_STORAGE_REUSED = 3,	 /* a spent refresh token: its family is revoked now */
	SESAME_STORAGE_REVOKED = 4,	 /* a refresh family revoked before, or past its end */
	SESAME_STORAGE_UNAVAILABLE = -1, /* the store cannot be reached: the client gets 503 */
	SESAME_STORAGE_FAILED = -2,	 /* anything else: 500, the reason in the log */
};

/* Where the users live: the table and its column names (storage.users). */
struct sesame_users_schema {
	const char *table;
	const char *id;
	const char *email;
	const char *username;
	const char *password;
};

/* A user. The strings of a user found live in the buffer the caller passed. */
struct sesame_user {
	long long id;
	const char *email;
	const char *username;
	const char *password; /* the stored hash */
	/*
	 * When the user was disabled (sesamectl user disable), Unix seconds by the store's
	 * clock; 0 while it is enabled. user_find fills it in (in the same query as the rest);
	 * user_create ignores it.
	 */
	long long disabled_at;
	/*
	 * ABI 1.1: when the user's e-mail address was confirmed (the account flows), Unix seconds
	 * by the store's clock; 0 while it is not. user_find fills it in, in the same query.
	 */
	long long verified_at;
};

/* The longest token id (a jti, or a refresh family's id) sesamed accepts, in bytes. */
#define SESAME_TOKEN_ID_MAX 64

/*
 * A subject's cutoff: subject_revoke and user_delete revoke, besides the subject's refresh
 * families, the id SESAME_SUBJECT_CUTOFF_PREFIX followed by the subject (the sub claim),
 * whose revocation time is the transaction's: sesamed refuses every token of the subject
 * without a fam claim that was issued (iat) at or before it, such as an access token that a
 * service sharing the secret issued. Subjects are at most SESAME_SUBJECT_MAX bytes of
 * printable ASCII, so that the id fits SESAME_TOKEN_ID_MAX.
 */
#define SESAME_SUBJECT_CUTOFF_PREFIX "sub:"
#define SESAME_SUBJECT_MAX	     (SESAME_TOKEN_ID_MAX - 4)

/* Writes subject's cutoff id into id (SESAME_TOKEN_ID_MAX + 1 bytes): 0, or -1 when subject
 * is not 1 to SESAME_SUBJECT_MAX bytes of printable ASCII. */
static inline int sesame_subject_cutoff_id(const char *subject, char *id)
{
	const char *prefix = SESAME_SUBJECT_CUTOFF_PREFIX;
	size_t n = 0, p = 0;
	for (; subject[n] != '\0'; n++) {
		if (n >= SESAME_SUBJECT_MAX || subject[n] < 0x20 || subject[n] > 0x7e)
			return -1;
	}
	if (n == 0)
		return -1;
	for (; prefix[p] != '\0'; p++)
		id[p] = prefix[p];
	for (size_t i = 0; i <= n; i++)
		id[p + i] = subject[i];
	return 0;
}

/*
 * A refresh family: the refresh tokens one log-in leads to, each spent by the next (rotation).
 * Its id is the fam claim of each of its tokens, access tokens included.
 */
struct sesame_family {
	const char *id;
	const char *subject;  /* whose it is: the sub claim */
	const char *jti;      /* its first refresh token's jti */
	long long expires_at; /* Unix seconds: its absolute end, whatever the rotations */
};

/*
 * ABI 1.1. A one-time token (an e-mail confirmation or password reset link): the token itself
 * is 32 random bytes that only its holder knows; the store keeps its SHA-256, as 64 lower-case
 * hex digits (hash), with what it is for (purpose: "verify", "reset", "email", or a route
 * script's own, at most 32 bytes of [a-z0-9_]), whose it is (user_id; 0 for no user yet, a
 * registration waiting for its link), an optional string (data, at most 1024 bytes: the new
 * address of an e-mail change) and its expiry.
 */
struct sesame_otp {
	const char *hash;
	const char *purpose;
	long long user_id;
	const char *data;     /* NULL or "" for none */
	long long expires_at; /* Unix seconds by the store's clock: set by otp_spend, otp_find */
};

/*
 * ABI 1.1. An auth event (events.store): what happened (name: "registered", "logged_in",
 * ...), to whom (user_id, 0 for none: a failed log-in for an unknown address) and its details
 * as one JSON object's text (data, at most 4096 bytes). The store stamps it with its own clock
 * (at_ms, Unix milliseconds) and an increasing id.
 */
struct sesame_event {
	long long id;	 /* event_list: the row's; ignored by event_add */
	long long at_ms; /* event_list: when; ignored by event_add */
	const char *name;
	long long user_id;
	const char *data;
};

/* ABI 1.1. A value of a parameterised query (query): a parameter, or a column of a row. */
enum sesame_value_type {
	SESAME_VALUE_NULL = 0,
	SESAME_VALUE_INTEGER = 1,
	SESAME_VALUE_REAL = 2,
	SESAME_VALUE_TEXT = 3, /* bytes, not NUL-terminated necessarily: use len */
};

struct sesame_value {
	enum sesame_value_type type;
	long long integer;
	double real;
	const char *text;
	size_t len;
};

/* The longest SQL text and the most parameters and columns that query handles. */
#define SESAME_QUERY_SQL_MAX	 16384
#define SESAME_QUERY_PARAMS_MAX	 64
#define SESAME_QUERY_COLUMNS_MAX 64

/*
 * The core's MariaDB pool (host->mariadb), for any plugin that wants MariaDB: the mariadb
 * storage backend, a validator that reads a table of its own; route scripts' sesame.db.query
 * is to use it too. Each worker has its own pool of storage.mariadb.pool connections, made
 * when first needed; one idle for a second or more is pinged before it is handed out, and
 * one released as broken is closed and made again on the next acquire. acquire waits at
 * most storage.mariadb.connect_timeout seconds in all for a free connection and, when it must
 * make one, for a healthy node. On a cluster (storage.mariadb.hosts) a connection goes to the
 * first healthy node: one that answers and, on Galera, is ready (wsrep_ready). Release a
 * connection whose statement failed with a connection error, or with 1047 (a Galera node not
 * ready), as broken: the pool reads the error from it, and when the error says the node is
 * gone it drops every connection to that node and makes new ones on the next. Call these functions
 * on job threads, in migrate, or in init (the master has a pool of its own while plugins are
 * initialised, closed before the workers fork; the master waits while init does, so read
 * little there): never on the event loop, where a validator's check runs, and never keep a
 * connection past the call that acquired it.
 */
struct sesame_mariadb {
	/* A connection of this worker's pool (a MYSQL *), or NULL with the reason in err. */
	void *(*acquire)(char *err, size_t errlen);
	/* Gives it back; broken when it failed in a way that needs a new connection. */
	void (*release)(void *mysql, bool broken);
	/* A prepared statement (a MYSQL_STMT *) for sql on this connection, cached; NULL on error.
	 */
	void *(*prepare)(void *mysql, const char *sql, char *err, size_t errlen);
	/*
	 * From ABI 1.2 (host->abi_minor >= 2): the error code (mysql_errno's) of the last prepare
	 * on this connection that failed, 0 after one that succeeded. A prepare can fail for the
	 * transaction's sake, not the statement's: on a Galera cluster a transaction another
	 * node's write aborted reports 1213 at its next command, a prepare included.
	 */
	unsigned int (*prepare_errno)(void *mysql);
};

/* What sesamed offers a plugin. Valid from init until fini. */
struct sesame_host {
	uint32_t size; /* sizeof(struct sesame_host) in sesamed: members past it are absent */
	uint16_t abi_major;
	uint16_t abi_minor;

	/* Writes to sesamed's log, prefixed with the plugin's name. Never log a secret. */
	void (*log)(const struct sesame_host *host, enum sesame_log_level level, const char *fmt,
		    ...)
#if defined(__GNUC__)
	    __attribute__((format(printf, 3, 4)))
#endif
	    ;

	/*
	 * Reads one key of the plugin's configuration table. Every key the plugin does not read
	 * during init is reported to the operator as unknown, so read each key you support.
	 * Strings stay valid until fini. A table key gives a nested struct sesame_config.
	 * *out holds the key's default when called (sesamed --config-keys lists it as such) and
	 * is left as it is when the key is absent.
	 */
	enum sesame_config_result (*config_string)(struct sesame_config *cfg, const char *key,
						   const char **out);
	enum sesame_config_result (*config_integer)(struct sesame_config *cfg, const char *key,
						    long long min, long long max, long long *out);
	enum sesame_config_result (*config_boolean)(struct sesame_config *cfg, const char *key,
						    bool *out);

	/* Reports a bad value of key, with the file and line where it is set; init then fails. */
	void (*config_error)(struct sesame_config *cfg, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
	    __attribute__((format(printf, 3, 4)))
#endif
	    ;

	/* Cryptographically secure random bytes. */
	void (*random)(void *buf, size_t len);

	/* Compares two secrets of len bytes in constant time: 0 when equal. */
	int (*memcmp_secret)(const void *a, const void *b, size_t len);

	/*
	 * For storage plugins: the users table. For every plugin: the core's MariaDB pool,
	 * NULL when the configuration has no storage table (and so no pool).
	 */
	const struct sesame_users_schema *users;
	const struct sesame_mariadb *mariadb;

	/* The configuration file's folder: relative paths in a plugin's table resolve against it.
	 */
	const char *config_dir;

	/*
	 * ABI 1.2. A storage plugin tells sesamed that it runs a call again: reason is
	 * "conflict" (a deadlock, a lock wait timeout or a lost Galera certification) or
	 * "connection" (a connection lost before the call could have changed anything), counted
	 * in sesame_storage_retries_total. From any thread. Absent from an older sesamed: read
	 * it only when host->size covers it.
	 */
	void (*storage_retried)(const struct sesame_host *host, const char *reason);
};

/*
 * Every kind starts with the header, then init and fini:
 *
 * init reads the configuration and returns the plugin's state in *state (NULL is a valid
 * state). It returns 0, or -1 after reporting what is wrong through host->config_error or
 * host->log. It runs once in the master, before the workers are forked: the state is shared
 * by every worker, read-only, and by their job threads.
 */

/* Checks (and may normalise) one value, on the event loop: no blocking. */
struct sesame_validator {
	struct sesame_plugin_header header;
	int (*init)(const struct sesame_host *host, struct sesame_config *cfg, void **state);
	void (*fini)(void *state);
	/*
	 * Returns 1 when value is valid, with its normal form in out (NUL-terminated, at most
	 * outlen bytes including the NUL); 0 when it is not, with a message for the client in
	 * msg; -1 when out is too small. related is NULL or a NULL-terminated list of the other
	 * values of the same request (for the password: the e-mail and the username), which a
	 * validator may compare value with.
	 */
	int (*check)(void *state, const char *value, size_t len, const char *const *related,
		     char *out, size_t outlen, char *msg, size_t msglen);
};

/* One password scheme. Called on job threads: every function must be thread-safe. */
struct sesame_hasher {
	struct sesame_plugin_header header;
	int (*init)(const struct sesame_host *host, struct sesame_config *cfg, void **state);
	void (*fini)(void *state);
	/* Hashes password into out (NUL-terminated); 0, or -1 on failure or when out is short. */
	int (*hash)(void *state, const char *password, size_t len, char *out, size_t outlen);
	/* 1 when password matches stored, 0 when not or when stored is malformed. Constant time. */
	int (*verify)(void *state, const char *password, size_t len, const char *stored);
	/* Does stored belong to this scheme? */
	bool (*identify)(void *state, const char *stored);
	/* Was stored made with weaker parameters than configured now? */
	bool (*needs_rehash)(void *state, const char *stored);
};

/*
 * The user store. init runs in the master; migrate in a child process of the master, before
 * the workers are forked (at every start and reload): the core's pool there is the child's.
 * worker_start runs in each worker after fork (connections belong to
 * one process); every other function runs on job threads, concurrently.
 */
struct sesame_storage {
	struct sesame_plugin_header header;
	int (*init)(const struct sesame_host *host, struct sesame_config *cfg, void **state);
	void (*fini)(void *state);
	/*
	 * apply (storage.migrate, sesamectl migrate): creates or upgrades the schema; several
	 * processes, on several nodes, may run it at once against one store, and each
	 * migration is applied once. Without apply, changes nothing and fails when the schema is
	 * older than the plugin's migrations, with err saying "the schema is at version N,
	 * this sesamed needs M: run sesamectl migrate": a sesamed on an old schema refuses to
	 * start rather than fail every request. 0, or -1 with the reason in err.
	 */
	int (*migrate)(void *state, bool apply, char *err, size_t errlen);
	int (*worker_start)(void *state);
	void (*worker_stop)(void *state);
	/* Inserts user (id ignored) and commits; *id is the new row's. */
	enum sesame_storage_result (*user_create)(void *state, const struct sesame_user *user,
						  long long *id, char *err, size_t errlen);
	/*
	 * Finds the user whose column by ("id" or "email") equals value; e-mails ignore case.
	 * One query, whether the user is disabled included (out->disabled_at): a known e-mail
	 * costs what an unknown one does.
	 */
	enum sesame_storage_result (*user_find)(void *state, const char *by, const char *value,
						struct sesame_user *out, char *buf, size_t buflen,
						char *err, size_t errlen);
	/* Replaces user id's stored hash (a rehash after log-in) and commits. */
	enum sesame_storage_result (*user_set_password)(void *state, long long id,
							const char *password, char *err,
							size_t errlen);

	/*
	 * Token state. Ids are at most SESAME_TOKEN_ID_MAX bytes and compared byte for byte.
	 * Ends and expiries are Unix seconds: a revoked id's expiry may be 0 (never), a family's
	 * end is always a time. The times of rotations and revocations are the store's own
	 * clock (the database server's, Unix milliseconds), never the calling host's, read once
	 * the transaction holds its locks: a revocation's time must never be more than a few
	 * seconds older than its commit, since workers ask for the ids revoked since shortly
	 * (10 s) before the store's time at their previous look. Bound lock waits accordingly.
	 * So a sesamed whose clock is off cannot hide its revocations from the other nodes, nor
	 * miss theirs; token expiry still needs the nodes' clocks in step within jwt.leeway.
	 */

	/* Records a new family, its first refresh token current. CONFLICT when id exists. */
	enum sesame_storage_result (*family_create)(void *state, const struct sesame_family *f,
						    char *err, size_t errlen);
	/*
	 * Spends refresh token jti of family id, atomically. When jti is the family's current
	 * token, next becomes current. When jti is the one current before it, replaced less
	 * than grace_ms ago by the store's clock (two refreshes racing), the current one stays.
	 * Either way OK, with the current jti in current (SESAME_TOKEN_ID_MAX + 1 bytes) and the
	 * family's end in *expires_at. Any other jti is a spent token presented again: in the same
	 * transaction the family is revoked until revoke_until, as token_revoke(NULL, 0, id,
	 * revoke_until) does, and the answer is REUSED. A family revoked before or past its
	 * end: REVOKED. No such family: NOT_FOUND.
	 */
	enum sesame_storage_result (*family_rotate)(void *state, const char *id, const char *jti,
						    const char *next, long long grace_ms,
						    long long revoke_until, char *current,
						    long long *expires_at, char *err,
						    size_t errlen);
	/*
	 * Revokes, in one transaction, the token jti until jti_until and the refresh family
	 * until family_until, which revokes every token of the family and ends its rotations
	 * (either id may be NULL). Revoking an id again is OK: it keeps the later expiry.
	 */
	enum sesame_storage_result (*token_revoke)(void *state, const char *jti,
						   long long jti_until, const char *family,
						   long long family_until, char *err,
						   size_t errlen);
	/*
	 * Calls each(ctx, id, expires_at, revoked_at) for every id revoked at since_ms or later
	 * (the store's clock) whose expiry is 0 or alive_at or later, revoked_at being its
	 * revocation time (Unix milliseconds, the store's clock: a subject's cutoff), and sets
	 * *now_ms to the store's time read before the ids: the caller's next since_ms derives
	 * from it, never from its own clock. since_ms is -1 for every id. Each worker of each
	 * sesamed asks this every jwt.revocation_refresh: it must be cheap (an index on the
	 * revocation time).
	 */
	enum sesame_storage_result (*revoked_since)(
	    void *state, long long since_ms, long long alive_at,
	    void (*each)(void *ctx, const char *id, long long expires_at, long long revoked_at),
	    void *ctx, long long *now_ms, char *err, size_t errlen);
	/*
	 * Log out everywhere: revokes, in one transaction and until until, every family of
	 * subject that is neither revoked nor ended but except_family (NULL: none), calling
	 * each(ctx, id) for each of them (before the commit: the caller trusts the ids only on
	 * OK), and the subject's cutoff (SESAME_SUBJECT_CUTOFF_PREFIX), whose revocation time
	 * becomes the transaction's even when it was revoked before, and whose expiry becomes
	 * the later of the two (0 is later than any).
	 */
	enum sesame_storage_result (*subject_revoke)(void *state, const char *subject,
						     const char *except_family, long long until,
						     void (*each)(void *ctx, const char *id),
						     void *ctx, char *err, size_t errlen);
	/*
	 * Deletes revoked ids and families that ended before before (Unix seconds), and the
	 * failed log-ins whose count has run out (on the store's clock); from ABI 1.1 also the
	 * one-time tokens that expired (on the store's clock).
	 */
	enum sesame_storage_result (*token_purge)(void *state, long long before, char *err,
						  size_t errlen);

	/*
	 * Failed log-ins per account (limits.login_failures), counted in the store so that
	 * every node of a cluster counts the same guesses, on the store's own clock (the
	 * database server's, never the host's). account is a normalised e-mail, at most 254
	 * bytes, compared as the users table compares e-mails; it need not belong to a user.
	 * The count is a GCRA: one time per account (its theoretical arrival time, TAT, in
	 * milliseconds), each failure moving it interval_ms later, from now when it lies in
	 * the past; a log-in is refused while the next failure would move it past now +
	 * period_ms. Each is one statement; rows whose TAT has passed are purged by
	 * token_purge.
	 */
	/* *retry_ms: 0 when a log-in may be tried, else the milliseconds until one may. */
	enum sesame_storage_result (*failure_check)(void *state, const char *account,
						    long long interval_ms, long long period_ms,
						    long long *retry_ms, char *err, size_t errlen);
	/* Counts one failure: TAT = min(max(TAT, now) + interval_ms, now + period_ms). */
	enum sesame_storage_result (*failure_record)(void *state, const char *account,
						     long long interval_ms, long long period_ms,
						     char *err, size_t errlen);
	/* A successful log-in: forgets the account's failures. */
	enum sesame_storage_result (*failure_reset)(void *state, const char *account, char *err,
						    size_t errlen);
	/*
	 * Does the store answer? A cheap round trip (GET /readyz asks it about once a second
	 * per worker): OK, or UNAVAILABLE with the reason in err.
	 */
	enum sesame_storage_result (*ping)(void *state, char *err, size_t errlen);

	/*
	 * User administration (sesamectl user, sesame.users.find's disabled flag). The state
	 * sesame keeps about a user beyond the users table (whether it is disabled) lives in a
	 * table of sesame's own, keyed by the user's id, so that a users table of another
	 * application is never altered.
	 */
	/*
	 * Disables user id (disabled true: a disabled one keeps its time, Unix seconds by the
	 * store's clock) or enables it. It does not log the user out: the caller does
	 * (subject_revoke). OK also when there is no such user.
	 */
	enum sesame_storage_result (*user_set_disabled)(void *state, long long id, bool disabled,
							char *err, size_t errlen);
	/*
	 * Calls each(ctx, user, created, disabled_at) for at most limit users whose id is
	 * greater than after, in order of id. user->password is NULL; created is the row's
	 * created_at as the store writes it, or NULL when the users table has no such column;
	 * disabled_at as user_find gives it.
	 */
	enum sesame_storage_result (*user_list)(void *state, long long after, long long limit,
						void (*each)(void *ctx,
							     const struct sesame_user *user,
							     const char *created,
							     long long disabled_at),
						void *ctx, char *err, size_t errlen);
	/*
	 * Deletes user id and, in the same transaction, everything sesame keeps about it: every
	 * refresh family of subject (its id as the sub claim) is revoked until until, as
	 * subject_revoke(subject, NULL, until) revokes them and the subject's cutoff (so that
	 * its outstanding access tokens are refused), and deleted; the failed log-ins of email
	 * and its state are deleted (from ABI 1.1: its one-time tokens too; its events stay,
	 * until events.retention). NOT_FOUND when there is no such user.
	 */
	enum sesame_storage_result (*user_delete)(void *state, long long id, const char *subject,
						  const char *email, long long until, char *err,
						  size_t errlen);

	/* ---- ABI 1.1: the account flows, events and route scripts' own queries ---- */

	/*
	 * Marks user id's address confirmed now (verified true; one confirmed before keeps its
	 * time) or not confirmed. Kept in sesame's own per-user table, as disabled is. OK also
	 * when there is no such user.
	 */
	enum sesame_storage_result (*user_set_verified)(void *state, long long id, bool verified,
							char *err, size_t errlen);
	/*
	 * Replaces user id's e-mail address (normalised by the caller) and commits: CONFLICT
	 * when another user has it (as user_create compares e-mails), NOT_FOUND when there is no
	 * such user. The address's confirmation is the caller's (user_set_verified).
	 */
	enum sesame_storage_result (*user_set_email)(void *state, long long id, const char *email,
						     char *err, size_t errlen);
	/*
	 * Stores a one-time token that lives ttl seconds from now by the store's clock (otp's
	 * expires_at is ignored). CONFLICT when its hash exists already.
	 */
	enum sesame_storage_result (*otp_create)(void *state, const struct sesame_otp *otp,
						 long long ttl, char *err, size_t errlen);
	/*
	 * Spends the token whose hash and purpose are these, atomically: it is deleted, and out
	 * gets its user_id, data (in buf) and expires_at. NOT_FOUND alike for a token that never
	 * was, was spent, expired (by the store's clock), or is for another purpose: only one of
	 * two nodes spending the same token at once gets OK.
	 */
	enum sesame_storage_result (*otp_spend)(void *state, const char *hash, const char *purpose,
						struct sesame_otp *out, char *buf, size_t buflen,
						char *err, size_t errlen);
	/* Deletes every token of user_id for purpose (NULL: every purpose). OK when none. */
	enum sesame_storage_result (*otp_revoke)(void *state, long long user_id,
						 const char *purpose, char *err, size_t errlen);
	/* Records an event, stamped with the store's clock. */
	enum sesame_storage_result (*event_add)(void *state, const struct sesame_event *event,
						char *err, size_t errlen);
	/*
	 * Calls each(ctx, event) for at most limit events whose id is greater than after_id, at or
	 * after since_ms (Unix milliseconds, the store's clock; 0: any), of user_id (0: anyone's),
	 * in order of id.
	 */
	enum sesame_storage_result (*event_list)(void *state, long long user_id, long long since_ms,
						 long long after_id, long long limit,
						 void (*each)(void *ctx,
							      const struct sesame_event *event),
						 void *ctx, char *err, size_t errlen);
	/* Deletes the events older than before_ms (Unix milliseconds, the store's clock). */
	enum sesame_storage_result (*event_purge)(void *state, long long before_ms, char *err,
						  size_t errlen);
	/*
	 * A route script's own statement (sesame.db.query and sesame.db.exec): sql with ?
	 * placeholders, bound to the nparams params, run as one statement and committed. For each
	 * row it returns, row(ctx, ncols, names, values) is called; a row callback that returns
	 * non-zero stops the statement with FAILED (too many rows). *affected is the rows changed
	 * (0 for a query), *insert_id the AUTO_INCREMENT / rowid it made (0 for none). A statement
	 * the store refuses (syntax, a constraint) is FAILED with the store's message in err;
	 * a duplicate key CONFLICT.
	 */
	enum sesame_storage_result (*query)(void *state, const char *sql,
					    const struct sesame_value *params, size_t nparams,
					    int (*row)(void *ctx, size_t ncols,
						       const char *const *names,
						       const struct sesame_value *values),
					    void *ctx, long long *affected, long long *insert_id,
					    char *err, size_t errlen);
	/*
	 * Finds the token whose hash and purpose are these, as otp_spend does, but leaves it
	 * there: out gets its user_id, data (in buf) and expires_at. NOT_FOUND alike for a token
	 * that never was, was spent, expired (by the store's clock), or is for another purpose.
	 * A token found may still be spent by another request: only otp_spend says who gets it.
	 * A route checks a token with it before work that can fail, and spends it after.
	 */
	enum sesame_storage_result (*otp_find)(void *state, const char *hash, const char *purpose,
					       struct sesame_otp *out, char *buf, size_t buflen,
					       char *err, size_t errlen);
};

#ifdef __cplusplus
}
#endif

#endif
