/* plugin.h: loading plugins, checking them, and giving them their configuration. */
#ifndef SESAME_PLUGIN_LOADER_H
#define SESAME_PLUGIN_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config_diag.h"
#include "sesame/plugin.h"

struct lua_State;
struct plugins;

/* A hasher ready to use: its functions and its state. */
struct hasher {
	const struct sesame_hasher *fn;
	void *state;
	const char *name;
};

/*
 * Loads the plugins the configuration names (the `plugins` table), checks each descriptor,
 * and initialises each with its configuration table; the settings are at index settings of
 * L, and src is the file's text, for line numbers. Returns NULL with the problems in errs.
 */
struct plugins *plugins_load(const char *file, const char *dir, const char *src,
			     struct lua_State *L, int settings, struct config_errors *errs);
void plugins_free(struct plugins *p);

/* One line per plugin loaded, for sesamed -t: its name, kind, version and file. */
void plugins_report(const struct plugins *p, FILE *out);

/* The scheme new hashes are made with (password.scheme). */
const struct hasher *plugins_scheme(const struct plugins *p);

/* The accepted hasher (password.accept) whose scheme stored belongs to, or NULL. */
const struct hasher *plugins_identify(const struct plugins *p, const char *stored);

/* A hash of a random password with the current scheme, for timing-safe failed log-ins. */
const char *plugins_dummy_hash(const struct plugins *p);

/* The validator plugin named name. */
struct validator {
	const struct sesame_validator *fn;
	void *state;
};
bool plugins_validator(const struct plugins *p, const char *name, struct validator *out);

/*
 * The verdict on value of validator name and of the one that judges next what it accepted
 * (the password policy: the password validator, then the blocklist validator when it is
 * loaded), as sesame.validate and sesamectl both take it. Returns 1 with the normal form in
 * out, 0 with a message for the client in msg ("" when the plugin gave none), -1 when out is
 * too small (len * 4 + 64 bytes is enough for the shipped validators), -2 when no validator
 * plugin named name is loaded. On the caller's thread; a copy of the value in between is
 * wiped.
 */
int plugins_validate(const struct plugins *p, const char *name, const char *value, size_t len,
		     const char *const *related, char *out, size_t outlen, char *msg,
		     size_t msglen);

/* The storage backend (storage.backend), or NULL when storage is not configured. */
struct storage {
	const struct sesame_storage *fn;
	void *state;
};
bool plugins_storage(const struct plugins *p, struct storage *out);

/* The most rows a route script's query may return (storage.query_rows). */
size_t plugins_query_rows(const struct plugins *p);

/* Whether there is a schema to apply or check before the workers start (a storage). */
bool plugins_wants_migration(const struct plugins *p);

/* Whether storage.migrate asks for the schema to be applied, not only checked. */
bool plugins_applies_migrations(const struct plugins *p);

/*
 * Before the workers start, in the master or a child of it: applies the schema when
 * storage.migrate is on, or always (sesamectl migrate); else checks that it is not older
 * than the storage plugin's migrations, and fails saying so when it is.
 */
int plugins_migrate(struct plugins *p, bool always, char *err, size_t errlen);

/*
 * The settings of the core's MariaDB pool (storage.mariadb), read with the plugins' sections,
 * or NULL when the configuration has none. The core starts the pool (dbpool_start) in each
 * worker before plugins_worker_start, and around plugins_migrate.
 */
struct dbpool_config;
const struct dbpool_config *plugins_pool(const struct plugins *p);

/* In each worker after fork, and before it exits: the storage's per-worker part. */
int plugins_worker_start(struct plugins *p);
void plugins_worker_stop(struct plugins *p);

#endif
