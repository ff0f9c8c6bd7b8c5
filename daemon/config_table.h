/*
 * config_table.h: reading a section of the configuration through a table of its keys.
 *
 * As nginx's command tables do, one table per section names each key with its kind (the
 * function that reads it), its bounds and where in a struct it goes; the same table gives the
 * known keys, so an unknown key is reported with a "did you mean" and the list of keys and the
 * reading cannot disagree.
 */
#ifndef SESAME_CONFIG_TABLE_H
#define SESAME_CONFIG_TABLE_H

#include <stdbool.h>
#include <stddef.h>

#include "config_diag.h"

struct lua_State;
struct config_key;

/* A section being read: the Lua state, where problems go, and the struct it fills. */
struct config_reader {
	struct lua_State *L;
	struct config_errors *errs;
	const char *file; /* the configuration file, for messages */
	const char *src;  /* its text, for line numbers */
	const char *dir;  /* its folder, where relative paths resolve */
	void *base;	  /* the struct the keys' `where` offsets point into */
};

/*
 * Reads key's value, at the top of the stack and nil when unset (a kind keeps the default
 * then), into rd->base + key->where; tbl is the section's table, keypath names the key in
 * messages. A kind leaves the stack as it found it.
 */
typedef void config_kind(struct config_reader *rd, int tbl, const struct config_key *key,
			 const char *keypath);

struct config_key {
	const char *name;
	config_kind *kind; /* NULL: a known key that another key's kind or the plugins read */
	long min, max;	   /* the bounds of a number */
	size_t where;	   /* offsetof the field the value goes to in the reader's base */
};

/*
 * Reports every key of the table at tbl that is not in keys (terminated by a NULL name),
 * then reads each key in the table's order. section is the table's key path ("" at the top).
 */
void config_table_read(struct config_reader *rd, int tbl, const char *section,
		       const struct config_key *keys);

/* Whether name is known beyond a table's keys; ctx is the caller's. */
typedef bool config_known(const void *ctx, const char *name);

/* The two halves of config_table_read: the check, which known (or NULL) widens, and the reading. */
void config_table_check(struct config_reader *rd, int tbl, const char *section,
			const struct config_key *keys, config_known *known, const void *ctx);
void config_table_read_keys(struct config_reader *rd, int tbl, const char *section,
			    const struct config_key *keys);

/*
 * Reads the section at the top of the stack into base through keys; an unset section is read
 * as an empty table, so that every key keeps (and lists) its default. Whether it was set: false
 * when unset, and when it is not a table (reported).
 */
bool config_section_read(struct config_reader *rd, void *base, const char *keypath,
			 const struct config_key *keys);

/* The field key fills in the reader's base. */
void *config_field(const struct config_reader *rd, const struct config_key *key);

/* Whether the value at the top of the stack is a table; reports it when it is not. */
bool config_is_table(struct config_reader *rd, const char *keypath);

/* Reports "FILE:LINE: keypath: message". */
void config_fail(struct config_reader *rd, const char *keypath, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The string at the top of the stack, when set, into *out (malloc'd; the old value freed). */
void config_read_string(struct config_reader *rd, const char *keypath, char **out);

/* A string or a list of strings at idx into a malloc'd array of *n strings. */
void config_read_strings(struct config_reader *rd, int idx, const char *keypath, char ***out,
			 size_t *n);

/* The kinds most keys are: whole numbers from min to max into an int, a long or a size_t. */
config_kind config_int, config_long, config_size;
config_kind config_bool;   /* true or false */
config_kind config_string; /* a malloc'd copy into a char * */
config_kind config_ms;	   /* seconds, fractions allowed, from min to max ms, into a long of ms */
config_kind config_expiry; /* seconds from 1 to max into a long, or false for none (0) */
/* A log's destination into a char *: "stderr", a file (resolved), or false for none (NULL). */
config_kind config_log_file;
/* Reports keypath when file, a log's destination config_log_file read, cannot be opened for
 * appending (created when missing). */
void config_check_log(struct config_reader *rd, const char *keypath, const char *file);

#endif
