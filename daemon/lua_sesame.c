/*
 * lua_sesame.c: the small functions of the sesame table itself: route, log, readfile, array,
 * null and version.
 *
 * sesame.route records a route and its handler while the scripts load, with the auth mode of
 * its options. The rest are the few helpers a script needs besides the API surfaces of their
 * own: the daemon's log (with the script's file and line), a file read on a job thread, JSON
 * arrays and null.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "file.h"
#include "json.h"
#include "log.h"
#include "lua_private.h"
#include "router.h"

#define READFILE_MAX (16u << 20)

/* opts.auth's names, indexed by enum auth_mode. */
static const char *const auth_modes[] = {"", "required", "optional", "refresh", "fresh", NULL};

/* sesame.readfile(path): reads a whole file on a job thread. */
struct readfile_job {
	struct luaapi_job lj;
	const char *dir; /* the configuration's folder: nothing outside it is read */
	char *path;
	char *data;
	size_t len;
	int err;
};

/*
 * The file's real path when it lies below dir, symlinks resolved; NULL with errno set
 * otherwise (EXDEV: outside it).
 */
static char *below(const char *dir, const char *path)
{
	char *real = realpath(path, NULL);
	int err = errno;
	char *top = real != NULL ? realpath(dir, NULL) : NULL;
	if (real != NULL &&
	    (top == NULL || strncmp(real, top, strlen(top)) != 0 || real[strlen(top)] != '/')) {
		free(real);
		real = NULL;
		err = EXDEV;
	}
	free(top);
	errno = err;
	return real;
}

static void readfile_run(struct job *job)
{
	struct readfile_job *rj = (struct readfile_job *)job;
	char *real = below(rj->dir, rj->path);
	int fd = real != NULL ? open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW) : -1;
	size_t cap = 0;
	if (fd < 0) {
		rj->err = errno;
		free(real);
		return;
	}
	free(real);
	for (;;) {
		if (rj->len == cap) {
			/* One byte past the limit tells a file of exactly the limit from a longer
			 * one. */
			char *grown = NULL;
			if (cap <= READFILE_MAX) {
				cap = cap == 0		       ? 4096
				      : cap * 2 > READFILE_MAX ? READFILE_MAX + 1
							       : cap * 2;
				grown = realloc(rj->data, cap);
			}
			if (grown == NULL) {
				rj->err = rj->len > READFILE_MAX ? EFBIG : ENOMEM;
				break;
			}
			rj->data = grown;
		}
		ssize_t n = read(fd, rj->data + rj->len, cap - rj->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			rj->err = n < 0 ? errno : 0;
			break;
		}
		rj->len += (size_t)n;
	}
	if (rj->err == 0 && rj->len > READFILE_MAX)
		rj->err = EFBIG;
	close(fd);
}

static int readfile_push(struct luaapi_job *lj, lua_State *co)
{
	struct readfile_job *rj = (struct readfile_job *)lj;
	if (rj->err != 0) {
		lua_pushnil(co);
		lua_pushstring(co, rj->err == EXDEV ? "outside the configuration folder"
						    : strerror(rj->err));
		return 2;
	}
	lua_pushlstring(co, rj->data != NULL ? rj->data : "", rj->len);
	return 1;
}

static void readfile_release(struct luaapi_job *lj)
{
	struct readfile_job *rj = (struct readfile_job *)lj;
	free(rj->path);
	free(rj->data);
	free(rj);
}

static int l_readfile(lua_State *L)
{
	struct luaapi *api = luaapi_get(L);
	const char *path = luaL_checkstring(L, 1);
	struct readfile_job *rj = calloc(1, sizeof(*rj));
	if (rj == NULL)
		return luaL_error(L, "out of memory");
	rj->dir = api->cfg->dir;
	rj->path = file_resolve(api->cfg->dir, path);
	if (rj->path == NULL) {
		free(rj);
		return luaL_error(L, "out of memory");
	}
	rj->lj.job.run = readfile_run;
	rj->lj.push = readfile_push;
	rj->lj.release = readfile_release;
	return luaapi_await_job(L, &rj->lj, "sesame.readfile");
}

/* A route's options: the auth mode of opts.auth, with AUTH_FORWARDED for opts.forward_auth. */
static int route_options(lua_State *L, int idx, const char *method, const char *path)
{
	int auth = AUTH_NONE;
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING ||
		    (strcmp(lua_tostring(L, -1), "auth") != 0 &&
		     strcmp(lua_tostring(L, -1), "forward_auth") != 0))
			return luaL_error(L, "route %s %s: unknown option '%s'", method, path,
					  luaL_tolstring(L, -1, NULL));
	}
	if (lua_getfield(L, idx, "auth") != LUA_TNIL) {
		const char *mode = lua_tostring(L, -1);
		for (int i = 1; auth_modes[i] != NULL && auth == AUTH_NONE; i++) {
			if (mode != NULL && strcmp(mode, auth_modes[i]) == 0)
				auth = i;
		}
		if (auth == AUTH_NONE)
			return luaL_error(L,
					  "route %s %s: auth is \"required\", \"optional\", "
					  "\"refresh\" or \"fresh\"",
					  method, path);
	}
	int ft = lua_getfield(L, idx, "forward_auth");
	if (ft != LUA_TNIL && ft != LUA_TBOOLEAN)
		return luaL_error(L, "route %s %s: forward_auth is true or false", method, path);
	if (lua_toboolean(L, -1)) {
		if (auth == AUTH_NONE)
			return luaL_error(L, "route %s %s: forward_auth needs an auth mode", method,
					  path);
		auth |= AUTH_FORWARDED;
	}
	lua_pop(L, 2);
	return auth;
}

static int l_route(lua_State *L)
{
	struct luaapi *api = luaapi_get(L);
	if (!api->loading)
		return luaL_error(L,
				  "routes are declared when the scripts load, not from a handler");
	const char *method = luaL_checkstring(L, 1);
	const char *path = luaL_checkstring(L, 2);
	int fn = 3, auth = AUTH_NONE;
	if (lua_istable(L, 3)) {
		auth = route_options(L, 3, method, path);
		fn = 4;
	}
	luaL_checktype(L, fn, LUA_TFUNCTION);
	lua_pushvalue(L, fn);
	int ref = luaL_ref(L, LUA_REGISTRYINDEX);
	char err[LOG_ERR_MAX];
	if (router_add(api->router, method, path, ref, auth, err, sizeof(err)) != 0) {
		luaL_unref(L, LUA_REGISTRYINDEX, ref);
		return luaL_error(L, "%s", err);
	}
	return 0;
}

static int log_at(lua_State *L, enum log_level level)
{
	int n = lua_gettop(L);
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, ' ');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	lua_Debug ar;
	if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar) && ar.currentline > 0)
		log_msg(level, "%s:%d: %s", ar.short_src, ar.currentline, lua_tostring(L, -1));
	else
		log_msg(level, "%s", lua_tostring(L, -1));
	return 0;
}

static int l_log_info(lua_State *L)
{
	return log_at(L, LOG_LEVEL_INFO);
}

static int l_log_warn(lua_State *L)
{
	return log_at(L, LOG_LEVEL_WARN);
}

static int l_log_error(lua_State *L)
{
	return log_at(L, LOG_LEVEL_ERROR);
}

/* sesame.array([t]): t (or a new table) encoded as a JSON array, even when empty. */
static int l_array(lua_State *L)
{
	if (lua_isnoneornil(L, 1)) {
		lua_settop(L, 0);
		lua_newtable(L);
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_settop(L, 1);
	json_mark_array(L, 1);
	return 1;
}

void luaapi_sesame_inject(lua_State *L)
{
	static const luaL_Reg funcs[] = {
	    {"route", l_route}, {"readfile", l_readfile}, {"array", l_array}, {NULL, NULL}};
	static const luaL_Reg logf[] = {
	    {"info", l_log_info}, {"warn", l_log_warn}, {"error", l_log_error}, {NULL, NULL}};
	luaL_setfuncs(L, funcs, 0);
	luaL_newlib(L, logf);
	lua_setfield(L, -2, "log");
	json_push_null(L);
	lua_setfield(L, -2, "null");
	lua_pushliteral(L, PACKAGE_VERSION);
	lua_setfield(L, -2, "version");
}
