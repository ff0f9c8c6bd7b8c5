/*
 * plugin_private.h: what the loader's files share (plugin.c, plugin_files.c, plugin_open.c, host.c,
 * plugin_section.c and the readers of the sections plugins are configured in). Not an interface for
 * the rest of the daemon: that is plugin.h.
 */
#ifndef SESAME_PLUGIN_PRIVATE_H
#define SESAME_PLUGIN_PRIVATE_H

#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config_table.h"
#include "dbpool.h"
#include "plugin.h"

#define MAX_SEEN 64

struct plugin {
	struct sesame_host host; /* first: the host pointer a plugin gets leads back here */
	char *path;
	char *name;
	void *handle;
	const struct sesame_plugin_header *h; /* the core's copy of the descriptor (plugin_abi.c) */
	void *state;
	bool inited;
	char **strings; /* configuration strings handed to the plugin, kept until fini */
	size_t nstrings;
};

struct plugins {
	struct plugin *v;
	size_t n;
	struct hasher *accept; /* password.accept, in order */
	size_t naccept;
	struct hasher scheme;
	char *dummy; /* a hash no one knows the password of */
	/* storage */
	struct plugin *storage; /* the backend, NULL when storage is not configured */
	struct sesame_users_schema users;
	char *users_names[5];
	bool migrate;
	size_t query_rows; /* storage.query_rows */
	bool have_pool;
	struct dbpool_config db; /* the core's MariaDB pool's settings, read with the rest */
};

struct sesame_config {
	struct plugin *owner;
	lua_State *L;
	int tbl; /* absolute index of the table, 0 when the table is absent */
	char path[128];
	char seen[MAX_SEEN][64]; /* copies: a plugin's key may live on its own stack */
	size_t nseen;
	const char *file, *src;
	struct config_errors *errs;
	bool failed;
};

/* What loading needs at hand. */
struct loading {
	const char *file, *dir, *src;
	lua_State *L;
	int settings;
	struct config_errors *errs;
	struct plugins *p;
	struct plugin pool_reader; /* the core's pool reads its table as a plugin would */
	struct sesame_config pool; /* its table: the keys it read */
};

/* Every kind starts alike: the header, init, fini. */
struct common {
	struct sesame_plugin_header header;
	int (*init)(const struct sesame_host *host, struct sesame_config *cfg, void **state);
	void (*fini)(void *state);
};

/* host.c: the host table each plugin gets, and the reading of its configuration table. */
void host_init(struct plugin *pl, const char *config_dir);
struct sesame_config host_config(struct loading *ld, struct plugin *pl, int tbl, const char *path);
int host_run_init(struct loading *ld, struct plugin *pl, struct sesame_config *cfg);
void host_check_unread(struct loading *ld, const struct sesame_config *cfg, const char *reader);
void host_free_strings(struct plugin *pl);

/* plugin_abi.c: the members each ABI minor of a kind's descriptor holds. */
struct plugin_member {
	const char *name;
	size_t offset;
	unsigned minor; /* the minor of ABI 1 that introduced it */
	bool required;
};
struct plugin_kind {
	uint32_t kind;
	const char *name;
	size_t size; /* sizeof the descriptor in this sesamed */
	const struct plugin_member *members;
	size_t nmembers;
};
extern const struct plugin_kind plugin_kinds[]; /* ends with a NULL name */
size_t plugin_abi_size(const struct plugin_kind *k, unsigned minor);
/*
 * Checks the descriptor at sym, of which have bytes may be read, against kinds: returns 0 with
 * *copy a zeroed struct of the kind's full size holding the descriptor (free it), or -1 with
 * the reason in why.
 */
int plugin_abi_check(const struct plugin_kind *kinds, const void *sym, size_t have, void **copy,
		     char *why, size_t len);

/* plugin_files.c: the files the plugins table (at tbl, 0 when absent) names, in order. */
struct plugin_list {
	char **v;
	size_t n;
};
void plugin_files(struct loading *ld, int tbl, struct plugin_list *files);
void plugin_list_free(struct plugin_list *l);

/* plugin_open.c: dlopen and the checks of the descriptor, before any plugin code runs. */
int plugin_open(struct loading *ld, struct plugin *pl, const char *path);

/* plugin_section.c: helpers of the section readers. */
const struct common *plugin_common(const struct plugin *pl);
struct plugin *plugin_find(struct plugins *p, uint32_t kind, const char *name);
int plugin_push_section(struct loading *ld, const char *name);
void plugin_check_keys(struct loading *ld, int idx, const char *section,
		       const struct config_key *keys, config_known *extra);
void plugin_not_a_table(struct loading *ld, const char *section, const char *name);

/* The sections: each initialises the plugins it configures. The pool's comes first. */
void plugin_pool_read(struct loading *ld);
void plugin_validators_read(struct loading *ld);
void plugin_password_read(struct loading *ld);
extern const struct config_key plugin_password_keys[]; /* the password table's own keys */
void plugin_storage_read(struct loading *ld);

#endif
