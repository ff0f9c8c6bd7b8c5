/*
 * config_table.c: reads a section of the configuration through the table of its keys.
 *
 * The table is walked twice: once over the section's own keys, to report each one the table
 * does not name (with the nearest known name, when one is close), then over the table, to
 * read each key in order with its kind. The two walks can be made apart, where some known
 * names are learnt only later (the top level: the tables of the plugins once they load). A kind
 * reads a nil value too, keeping the default, so a key whose default depends on others
 * (server.workers = "auto") is settled in one place.
 */
#include "autoconfig.h"

#include "config_table.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_keys.h"
#include "file.h"
#include "log.h"

void config_fail(struct config_reader *rd, const char *keypath, const char *fmt, ...)
{
	char msg[LOG_ERR_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	config_error_at(rd->errs, rd->file, rd->src, keypath, "%s", msg);
}

static void unknown_key(struct config_reader *rd, const char *section, const char *key,
			const struct config_key *keys)
{
	char path[160];
	snprintf(path, sizeof(path), "%s%s%s", section, *section ? "." : "", key);
	for (const struct config_key *k = keys; k->name != NULL; k++) {
		if (config_similar(key, k->name)) {
			config_fail(rd, path, "unknown key (did you mean '%s'?)", k->name);
			return;
		}
	}
	config_fail(rd, path, "unknown key");
}

static bool is_known(const char *key, const struct config_key *keys)
{
	for (const struct config_key *k = keys; k->name != NULL; k++) {
		if (strcmp(k->name, key) == 0)
			return true;
	}
	return false;
}

/* The type each shared kind reads; a section's own kinds are "other". */
static const struct {
	config_kind *kind;
	const char *type;
} kind_types[] = {
    {config_int, "integer"},   {config_long, "integer"},	 {config_size, "integer"},
    {config_ms, "seconds"},    {config_expiry, "seconds|false"}, {config_bool, "boolean"},
    {config_string, "string"},
};

/* What a key's kind reads, and its bounds, for the list of keys. */
static void note_key(const char *section, const struct config_key *k)
{
	char range[64] = "";
	const char *type = k->kind == NULL ? NULL : "other";
	for (size_t i = 0; i < sizeof(kind_types) / sizeof(kind_types[0]); i++) {
		if (kind_types[i].kind == k->kind)
			type = kind_types[i].type;
	}
	if (k->kind == config_ms)
		snprintf(range, sizeof(range), "%g..%g", (double)k->min / 1000.0,
			 (double)k->max / 1000.0);
	else if (k->kind == config_expiry)
		snprintf(range, sizeof(range), "1..%ld", k->max);
	else if (type != NULL && strcmp(type, "integer") == 0)
		snprintf(range, sizeof(range), "%ld..%ld", k->min, k->max);
	config_keys_note(section, k->name, type, range[0] ? range : NULL, NULL);
}

/* The value a key's kind left in its field: after a reading of nothing, its default. */
static void note_value(const struct config_reader *rd, const char *section,
		       const struct config_key *k)
{
	char v[64] = "";
	const void *f = config_field(rd, k);
	if (k->kind == config_int)
		snprintf(v, sizeof(v), "%d", *(const int *)f);
	else if (k->kind == config_long)
		snprintf(v, sizeof(v), "%ld", *(const long *)f);
	else if (k->kind == config_size)
		snprintf(v, sizeof(v), "%zu", *(const size_t *)f);
	else if (k->kind == config_ms)
		snprintf(v, sizeof(v), "%g", (double)*(const long *)f / 1000.0);
	else if (k->kind == config_expiry)
		snprintf(v, sizeof(v), *(const long *)f ? "%ld" : "false", *(const long *)f);
	else if (k->kind == config_bool)
		snprintf(v, sizeof(v), "%s", *(const bool *)f ? "true" : "false");
	else if (k->kind == config_string && *(char *const *)f != NULL)
		snprintf(v, sizeof(v), "\"%s\"", *(char *const *)f);
	config_keys_note(section, k->name, NULL, NULL, v[0] ? v : NULL);
}

void config_table_check(struct config_reader *rd, int tbl, const char *section,
			const struct config_key *keys, config_known *known, const void *ctx)
{
	lua_State *L = rd->L;
	for (const struct config_key *k = keys; config_keys_recording() && k->name != NULL; k++)
		note_key(section, k);
	tbl = lua_absindex(L, tbl);
	lua_pushnil(L);
	while (lua_next(L, tbl) != 0) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			config_fail(rd, section, "keys must be names, found a %s key",
				    luaL_typename(L, -1));
		else if (!is_known(lua_tostring(L, -1), keys) &&
			 (known == NULL || !known(ctx, lua_tostring(L, -1))))
			unknown_key(rd, section, lua_tostring(L, -1), keys);
	}
}

void config_table_read(struct config_reader *rd, int tbl, const char *section,
		       const struct config_key *keys)
{
	config_table_check(rd, tbl, section, keys, NULL, NULL);
	config_table_read_keys(rd, tbl, section, keys);
}

void config_table_read_keys(struct config_reader *rd, int tbl, const char *section,
			    const struct config_key *keys)
{
	tbl = lua_absindex(rd->L, tbl);
	for (const struct config_key *k = keys; k->name != NULL; k++) {
		if (k->kind == NULL)
			continue;
		char keypath[96];
		snprintf(keypath, sizeof(keypath), "%s%s%s", section, *section ? "." : "", k->name);
		lua_getfield(rd->L, tbl, k->name);
		k->kind(rd, tbl, k, keypath);
		lua_pop(rd->L, 1);
		if (config_keys_recording())
			note_value(rd, section, k);
	}
}

void *config_field(const struct config_reader *rd, const struct config_key *key)
{
	return (char *)rd->base + key->where;
}

bool config_is_table(struct config_reader *rd, const char *keypath)
{
	if (lua_istable(rd->L, -1))
		return true;
	config_fail(rd, keypath, "expected a table, found %s", luaL_typename(rd->L, -1));
	return false;
}

/* The whole number at the top of the stack, within the key's bounds; false when it is not. */
static bool whole_number(struct config_reader *rd, const struct config_key *key,
			 const char *keypath, long *out)
{
	int isint = 0;
	lua_Integer v = lua_tointegerx(rd->L, -1, &isint);
	if (lua_type(rd->L, -1) != LUA_TNUMBER || !isint) {
		config_fail(rd, keypath, "expected a whole number, found %s",
			    luaL_typename(rd->L, -1));
		return false;
	}
	if (v < key->min || v > key->max) {
		config_fail(rd, keypath, "%lld is out of range (%ld to %ld)", (long long)v,
			    key->min, key->max);
		return false;
	}
	*out = (long)v;
	return true;
}

void config_int(struct config_reader *rd, int tbl, const struct config_key *key,
		const char *keypath)
{
	long v;
	if (!lua_isnil(rd->L, -1) && whole_number(rd, key, keypath, &v))
		*(int *)config_field(rd, key) = (int)v;
}

void config_long(struct config_reader *rd, int tbl, const struct config_key *key,
		 const char *keypath)
{
	long v;
	if (!lua_isnil(rd->L, -1) && whole_number(rd, key, keypath, &v))
		*(long *)config_field(rd, key) = v;
}

void config_size(struct config_reader *rd, int tbl, const struct config_key *key,
		 const char *keypath)
{
	long v;
	if (!lua_isnil(rd->L, -1) && whole_number(rd, key, keypath, &v))
		*(size_t *)config_field(rd, key) = (size_t)v;
}

void config_bool(struct config_reader *rd, int tbl, const struct config_key *key,
		 const char *keypath)
{
	int t = lua_type(rd->L, -1);
	if (t == LUA_TBOOLEAN)
		*(bool *)config_field(rd, key) = lua_toboolean(rd->L, -1);
	else if (t != LUA_TNIL)
		config_fail(rd, keypath, "expected true or false, found %s",
			    luaL_typename(rd->L, -1));
}

void config_read_string(struct config_reader *rd, const char *keypath, char **out)
{
	int t = lua_type(rd->L, -1);
	if (t == LUA_TSTRING) {
		free(*out);
		*out = strdup(lua_tostring(rd->L, -1));
	} else if (t != LUA_TNIL) {
		config_fail(rd, keypath, "expected a string, found %s", luaL_typename(rd->L, -1));
	}
}

void config_string(struct config_reader *rd, int tbl, const struct config_key *key,
		   const char *keypath)
{
	config_read_string(rd, keypath, config_field(rd, key));
}

void config_ms(struct config_reader *rd, int tbl, const struct config_key *key, const char *keypath)
{
	int t = lua_type(rd->L, -1);
	if (t == LUA_TNIL)
		return;
	double v = lua_tonumber(rd->L, -1) * 1000.0;
	if (t != LUA_TNUMBER || !(v >= (double)key->min && v <= (double)key->max))
		config_fail(rd, keypath, "expected a number of seconds from %g to %g",
			    (double)key->min / 1000.0, (double)key->max / 1000.0);
	else
		*(long *)config_field(rd, key) = (long)(v + 0.5);
}

void config_expiry(struct config_reader *rd, int tbl, const struct config_key *key,
		   const char *keypath)
{
	int t = lua_type(rd->L, -1);
	if (t == LUA_TBOOLEAN && !lua_toboolean(rd->L, -1)) {
		*(long *)config_field(rd, key) = 0;
	} else if (t != LUA_TNIL) {
		int isint = 0;
		lua_Integer v = lua_tointegerx(rd->L, -1, &isint);
		if (t != LUA_TNUMBER || !isint || v < 1 || v > key->max)
			config_fail(rd, keypath,
				    "expected a number of seconds (1 or more) or false");
		else
			*(long *)config_field(rd, key) = (long)v;
	}
}

void config_read_strings(struct config_reader *rd, int idx, const char *keypath, char ***out,
			 size_t *n)
{
	lua_State *L = rd->L;
	idx = lua_absindex(L, idx);
	if (lua_type(L, idx) == LUA_TSTRING) {
		*out = calloc(1, sizeof(char *));
		(*out)[0] = strdup(lua_tostring(L, idx));
		*n = 1;
		return;
	}
	if (lua_type(L, idx) != LUA_TTABLE) {
		config_fail(rd, keypath, "expected a string or a list of strings, found %s",
			    luaL_typename(L, idx));
		return;
	}
	size_t len = (size_t)luaL_len(L, idx);
	lua_pushnil(L);
	size_t count = 0;
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		count++;
	}
	if (count != len) {
		config_fail(rd, keypath,
			    "expected a list of strings, found a table with other keys");
		return;
	}
	*out = calloc(len + 1, sizeof(char *));
	for (size_t i = 0; i < len; i++) {
		lua_rawgeti(L, idx, (lua_Integer)i + 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			config_fail(rd, keypath, "item %zu: expected a string, found %s", i + 1,
				    luaL_typename(L, -1));
		else
			(*out)[(*n)++] = strdup(lua_tostring(L, -1));
		lua_pop(L, 1);
	}
}

/* Workers open the file after fork, as root: find out now, not in a crash loop, that they
 * cannot. */
void config_log_file(struct config_reader *rd, int tbl, const struct config_key *key,
		     const char *keypath)
{
	char **log = config_field(rd, key);
	lua_State *L = rd->L;
	int t = lua_type(L, -1);
	if (t == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
		free(*log);
		*log = NULL;
	} else if (t == LUA_TSTRING) {
		const char *v = lua_tostring(L, -1);
		free(*log);
		*log = strcmp(v, "stderr") == 0 ? strdup(v) : file_resolve(rd->dir, v);
	} else if (t != LUA_TNIL) {
		config_fail(rd, keypath, "expected \"stderr\", a file path or false");
	}
}

bool config_section_read(struct config_reader *rd, void *base, const char *keypath,
			 const struct config_key *keys)
{
	struct config_reader section = *rd;
	bool unset = lua_isnil(rd->L, -1);
	if (!unset && !config_is_table(rd, keypath))
		return false;
	if (unset)
		lua_newtable(rd->L);
	section.base = base;
	config_table_read(&section, -1, keypath, keys);
	if (unset)
		lua_pop(rd->L, 1);
	return !unset;
}

void config_check_log(struct config_reader *rd, const char *keypath, const char *file)
{
	if (file == NULL || strcmp(file, "stderr") == 0)
		return;
	int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		config_fail(rd, keypath, "cannot open %s: %s", file, strerror(errno));
	else
		close(fd);
}
