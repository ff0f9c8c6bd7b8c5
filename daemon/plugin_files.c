/*
 * plugin_files.c: which plugin files the plugins table names.
 *
 * plugins.path is a folder or a list of folders, searched in order; without it, the folder
 * `make install` put sesame's own plugins in. The installed folder is not implied once a path
 * is given: an operator who keeps a plugin of their own beside sesame's lists both. With
 * plugins.load each name is looked up in every folder; without it every NAME.so of every
 * folder is taken. A name found in two folders is an error that names both files, so that
 * the file loaded never depends on the order of a list nobody remembers writing. Nothing is
 * opened here: plugin.c opens the files in the order found.
 */
#include "autoconfig.h"

#include <errno.h>
#include <dirent.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"
#include "plugin_private.h"

#define DEFAULT_DIR PKGLIBDIR "/plugins"

static int list_add(struct plugin_list *l, const char *s)
{
	char **grown = realloc(l->v, (l->n + 1) * sizeof(*grown));
	if (grown == NULL)
		return -1;
	l->v = grown;
	l->v[l->n] = strdup(s);
	if (l->v[l->n] == NULL)
		return -1;
	l->n++;
	return 0;
}

void plugin_list_free(struct plugin_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	*l = (struct plugin_list){0};
}

#define PATH_ERROR(ld, ...)                                                                        \
	config_error_at((ld)->errs, (ld)->file, (ld)->src, "plugins.path", __VA_ARGS__)

/* One folder of plugins.path: resolved, there, and not listed before. */
static void add_folder(struct loading *ld, struct plugin_list *dirs, const char *dir, bool given)
{
	struct stat st;
	char *path = file_resolve(ld->dir, dir);
	/* "/opt/acme/" is "/opt/acme": the same folder, listed twice if both are. */
	for (size_t n = path != NULL ? strlen(path) : 0; n > 1 && path[n - 1] == '/'; n--)
		path[n - 1] = '\0';
	if (path == NULL || list_add(dirs, path) != 0) {
		config_errors_add(ld->errs, "plugins.path: out of memory");
	} else if (given && stat(path, &st) != 0) {
		PATH_ERROR(ld, "%s: %s", path, strerror(errno));
	} else if (given && !S_ISDIR(st.st_mode)) {
		PATH_ERROR(ld, "%s: not a folder", path);
	} else {
		for (size_t i = 0; i + 1 < dirs->n; i++) {
			if (strcmp(dirs->v[i], path) == 0)
				PATH_ERROR(ld, "%s is listed twice", path);
		}
	}
	free(path);
}

/* The folders of plugins.path, at the top of the stack. */
static void read_folders(struct loading *ld, struct plugin_list *dirs)
{
	lua_State *L = ld->L;
	int t = lua_type(L, -1);
	if (t == LUA_TNIL) {
		add_folder(ld, dirs, DEFAULT_DIR, false);
	} else if (t == LUA_TSTRING) {
		add_folder(ld, dirs, lua_tostring(L, -1), true);
	} else if (t != LUA_TTABLE) {
		PATH_ERROR(ld, "expected a folder or a list of folders");
	} else if (lua_rawlen(L, -1) == 0) {
		PATH_ERROR(ld, "an empty list: name one folder at least (the default is %s)",
			   DEFAULT_DIR);
	} else {
		for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -1); i++) {
			if (lua_rawgeti(L, -1, i) == LUA_TSTRING)
				add_folder(ld, dirs, lua_tostring(L, -1), true);
			else
				PATH_ERROR(ld, "item %lld: expected a folder", (long long)i);
			lua_pop(L, 1);
		}
	}
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash != NULL ? slash + 1 : path;
}

/*
 * Adds path unless it is there already (plugins.load names it twice), or a file of the same
 * name came from another folder: then both are named.
 */
static void add_file(struct loading *ld, struct plugin_list *files, const char *path)
{
	const char *base = base_name(path);
	for (size_t i = 0; i < files->n; i++) {
		if (strcmp(files->v[i], path) == 0) {
			config_error_at(ld->errs, ld->file, ld->src, "plugins.load",
					"%.*s is listed twice", (int)(strlen(base) - 3), base);
			return;
		}
		if (strcmp(base_name(files->v[i]), base) == 0) {
			PATH_ERROR(ld, "plugin %.*s found twice: %s and %s",
				   (int)(strlen(base) - 3), base, files->v[i], path);
			return;
		}
	}
	if (list_add(files, path) != 0)
		config_errors_add(ld->errs, "plugins.path: out of memory");
}

/* dir/name followed by suffix, malloc'd, as long as it takes; NULL when out of memory. */
static char *plugin_file(const char *dir, const char *name, const char *suffix)
{
	size_t size = strlen(dir) + 1 + strlen(name) + strlen(suffix) + 1;
	char *path = malloc(size);
	if (path != NULL)
		snprintf(path, size, "%s/%s%s", dir, name, suffix);
	return path;
}

/* scandir's filter: NAME.so, not hidden (as the shell's *.so). */
static int is_plugin_name(const struct dirent *e)
{
	size_t n = strlen(e->d_name);
	return e->d_name[0] != '.' && n > 3 && strcmp(e->d_name + n - 3, ".so") == 0;
}

/* Adds dir/file, or says that memory ran out. */
static void add_found(struct loading *ld, struct plugin_list *files, const char *dir,
		      const char *file)
{
	char *path = plugin_file(dir, file, "");
	if (path == NULL)
		config_errors_add(ld->errs, "plugins.path: out of memory");
	else
		add_file(ld, files, path);
	free(path);
}

/* Without plugins.load: every NAME.so of every folder, each folder's in name order; read
 * with scandir, not glob, so that a folder's name is never taken for a pattern. */
static void find_all(struct loading *ld, const struct plugin_list *dirs, struct plugin_list *files)
{
	for (size_t d = 0; d < dirs->n; d++) {
		struct dirent **names;
		int n = scandir(dirs->v[d], &names, is_plugin_name, alphasort);
		for (int i = 0; i < n; i++) {
			add_found(ld, files, dirs->v[d], names[i]->d_name);
			free(names[i]);
		}
		if (n >= 0)
			free(names);
	}
}

static void no_such_plugin(struct loading *ld, const struct plugin_list *dirs, size_t item,
			   const char *name)
{
	char where[2048] = "";
	size_t used = 0;
	for (size_t d = 0; d < dirs->n && used < sizeof(where); d++)
		used += (size_t)snprintf(where + used, sizeof(where) - used, "%s%s",
					 d == 0		   ? ""
					 : d + 1 < dirs->n ? ", "
							   : " or ",
					 dirs->v[d]);
	config_error_at(ld->errs, ld->file, ld->src, "plugins.load", "item %zu: no %s.so in %s",
			item, name, where);
}

/* plugins.load's item (a name) in every folder. */
static void find_named(struct loading *ld, const struct plugin_list *dirs, size_t item,
		       const char *name, struct plugin_list *files)
{
	size_t before = files->n, errors = ld->errs->n;
	for (size_t d = 0; d < dirs->n; d++) {
		struct stat st;
		char *path = plugin_file(dirs->v[d], name, ".so");
		if (path == NULL)
			config_errors_add(ld->errs, "plugins.path: out of memory");
		else if (stat(path, &st) == 0)
			add_file(ld, files, path);
		free(path);
	}
	if (files->n == before && ld->errs->n == errors)
		no_such_plugin(ld, dirs, item, name);
}

/* The names of plugins.load, at the top of the stack. */
static void find_listed(struct loading *ld, const struct plugin_list *dirs,
			struct plugin_list *files)
{
	lua_State *L = ld->L;
	if (lua_type(L, -1) != LUA_TTABLE) {
		config_error_at(ld->errs, ld->file, ld->src, "plugins.load",
				"expected a list of plugin names");
		return;
	}
	size_t n = lua_rawlen(L, -1);
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, (lua_Integer)i);
		const char *name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		if (name == NULL || *name == '\0' || strchr(name, '/') != NULL)
			config_error_at(ld->errs, ld->file, ld->src, "plugins.load",
					"item %zu: expected a plugin name", i);
		else
			find_named(ld, dirs, i, name, files);
		lua_pop(L, 1);
	}
}

static int push_key(struct loading *ld, int tbl, const char *key)
{
	if (tbl == 0) {
		lua_pushnil(ld->L);
		return LUA_TNIL;
	}
	lua_pushstring(ld->L, key);
	return lua_rawget(ld->L, tbl);
}

void plugin_files(struct loading *ld, int tbl, struct plugin_list *files)
{
	struct plugin_list dirs = {0};
	size_t before = ld->errs->n;
	push_key(ld, tbl, "path");
	read_folders(ld, &dirs);
	lua_pop(ld->L, 1);
	if (ld->errs->n == before) {
		if (push_key(ld, tbl, "load") == LUA_TNIL)
			find_all(ld, &dirs, files);
		else
			find_listed(ld, &dirs, files);
		lua_pop(ld->L, 1);
	}
	plugin_list_free(&dirs);
}
