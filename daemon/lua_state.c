/*
 * lua_state.c: the worker's Lua state: its sandbox, its budgets, the sesame table, and the
 * loading of the route scripts.
 *
 * One state per worker, created after fork: the route scripts run once at start and declare
 * their routes with sesame.route; their handlers stay in the registry. The sandbox keeps only
 * what a route script needs (no io, no C modules, text chunks only). A count hook enforces the
 * instruction budget, on the scripts while they load and on each handler across all of its
 * resumptions; the allocator enforces the state's memory limit while the scripts load and
 * while a handler runs.
 * The sesame table is assembled here from one inject function per API surface.
 */
#include "autoconfig.h"

#include "lua_api.h"

#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "lua_guard.h"
#include "lua_private.h"
#include "router.h"

const char luaapi_key = 0;

/* ---- allocator and budget ---- */

static void *budget_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct luaapi *api = ud;
	size_t old = ptr != NULL ? osize : 0;
	if (nsize == 0) {
		free(ptr);
		api->used -= old;
		return NULL;
	}
	if (api->enforce && nsize > old && api->used + (nsize - old) > api->limit)
		return NULL;
	void *p = realloc(ptr, nsize);
	if (p != NULL)
		api->used = api->used - old + nsize;
	return p;
}

/* The sesame module: each API surface adds its part. */
static int open_sesame(lua_State *L)
{
	lua_newtable(L);
	luaapi_sesame_inject(L);
	luaapi_hash_inject(L);
	luaapi_jwt_inject(L);
	luaapi_users_inject(L);
	luaapi_limit_inject(L);
	luaapi_onetime_inject(L);
	luaapi_db_inject(L);
	luaapi_metrics_inject(L);
	luaapi_run_inject(L);
	luaapi_mail_inject(L);
	luaapi_http_inject(L);
	luaapi_events_inject(L);
	luaapi_accounts_inject(L);
	luaapi_json_inject(L);
	return 1;
}

/* load(chunk[, name[, mode[, env]]]) for text only: precompiled chunks can crash the VM. */
static int l_load_text(lua_State *L)
{
	lua_settop(L, 4);
	lua_pushliteral(L, "t");
	lua_replace(L, 3);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, 4, LUA_MULTRET);
	return lua_gettop(L);
}

/* collectgarbage("count") only: the rest would let a script stop or retune the collector. */
static int l_collectgarbage(lua_State *L)
{
	const char *opt = luaL_optstring(L, 1, "collect");
	if (strcmp(opt, "count") != 0)
		return luaL_error(L, "collectgarbage(\"%s\") is not allowed: only \"count\" is",
				  opt);
	lua_pushnumber(L, (lua_Number)lua_gc(L, LUA_GCCOUNT) +
			      (lua_Number)lua_gc(L, LUA_GCCOUNTB) / 1024);
	return 1;
}

/*
 * require's one file searcher: Lua source only (mode "t"), found on the path the core set,
 * kept as this function's upvalue, so that changing package.path reaches nothing else.
 */
static int search_source(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const char *path = lua_tostring(L, lua_upvalueindex(1));
	const char *file = luaL_gsub(L, name, ".", "/");
	luaL_Buffer tried;
	luaL_buffinit(L, &tried);
	for (const char *t = path; *t != '\0';) {
		const char *end = strchr(t, ';');
		size_t len = end != NULL ? (size_t)(end - t) : strlen(t);
		lua_pushlstring(L, t, len);
		const char *candidate = luaL_gsub(L, lua_tostring(L, -1), "?", file);
		if (access(candidate, R_OK) == 0) {
			if (luaL_loadfilex(L, candidate, "t") != LUA_OK)
				return luaL_error(L,
						  "error loading module '%s' from file '%s':\n\t%s",
						  name, candidate, lua_tostring(L, -1));
			lua_pushstring(L, candidate);
			return 2;
		}
		lua_pushfstring(L, "\n\tno file '%s'", candidate);
		lua_remove(L, -2);
		lua_remove(L, -2);
		luaL_addvalue(&tried);
		t += len + (end != NULL);
	}
	luaL_pushresult(&tried);
	return 1;
}

/* Does routes[i] lie in a folder one of routes[0..i-1] lay in? */
static bool folder_seen(char *const *routes, size_t i, size_t len)
{
	for (size_t j = 0; j < i; j++) {
		const char *slash = strrchr(routes[j], '/');
		if (slash != NULL && (size_t)(slash - routes[j]) == len &&
		    strncmp(routes[j], routes[i], len) == 0)
			return true;
	}
	return false;
}

/*
 * package.path: each route script's folder, lua/ beside that folder (etc/sesame/lua for
 * etc/sesame/routes, wherever the configuration that names them lives), and lua/ beside the
 * configuration.
 */
static void push_module_path(lua_State *L, const struct config *cfg)
{
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const char *slash = strrchr(cfg->routes[i], '/');
		size_t len = slash != NULL ? (size_t)(slash - cfg->routes[i]) : 0;
		if (slash == NULL || folder_seen(cfg->routes, i, len))
			continue;
		lua_pushlstring(L, cfg->routes[i], len);
		const char *dir = lua_tostring(L, -1);
		lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/../lua/?.lua;%s/../lua/?/init.lua;",
				dir, dir, dir, dir);
		lua_remove(L, -2);
		luaL_addvalue(&b);
	}
	lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua", cfg->dir, cfg->dir);
	luaL_addvalue(&b);
	luaL_pushresult(&b);
}

/* Only what a route script needs: no io, no C modules, no loading files by hand. */
static void open_libs(lua_State *L, const struct config *cfg)
{
	static const luaL_Reg libs[] = {
	    {LUA_GNAME, luaopen_base},	     {LUA_LOADLIBNAME, luaopen_package},
	    {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
	    {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8},
	    {LUA_OSLIBNAME, luaopen_os},     {NULL, NULL}};
	for (const luaL_Reg *lib = libs; lib->func != NULL; lib++) {
		luaL_requiref(L, lib->name, lib->func, 1);
		lua_pop(L, 1);
	}
	static const char *const drop_base[] = {"dofile", "loadfile", NULL};
	static const char *const drop_os[] = {"execute", "exit",      "remove", "rename",
					      "tmpname", "setlocale", "getenv", NULL};
	for (const char *const *k = drop_base; *k != NULL; k++) {
		lua_pushnil(L);
		lua_setglobal(L, *k);
	}
	lua_getglobal(L, "load");
	lua_pushcclosure(L, l_load_text, 1);
	lua_setglobal(L, "load");
	lua_pushcfunction(L, l_collectgarbage);
	lua_setglobal(L, "collectgarbage");
	lua_guard_open(L);
	/* Changed in place: package.loaded holds these very tables. */
	lua_getglobal(L, "string");
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 1);
	lua_getglobal(L, "os");
	for (const char *const *k = drop_os; *k != NULL; k++) {
		lua_pushnil(L);
		lua_setfield(L, -2, *k);
	}
	lua_pop(L, 1);

	/* require finds Lua source in the route folders and lua/, and never loads C. */
	lua_getglobal(L, "package");
	push_module_path(L, cfg);
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "path");
	lua_getfield(L, -2, "searchers");
	lua_insert(L, -2);
	lua_pushcclosure(L, search_source, 1);
	lua_rawseti(L, -2, 2);
	lua_pushnil(L);
	lua_rawseti(L, -2, 4);
	lua_pushnil(L);
	lua_rawseti(L, -2, 3);
	lua_pop(L, 1);
	lua_pushliteral(L, "");
	lua_setfield(L, -2, "cpath");
	lua_pushnil(L);
	lua_setfield(L, -2, "loadlib");
	lua_pushnil(L);
	lua_setfield(L, -2, "searchpath");
	lua_getfield(L, -1, "preload");
	lua_pushcfunction(L, open_sesame);
	lua_setfield(L, -2, "sesame");
	lua_pop(L, 2);

	luaL_requiref(L, "sesame", open_sesame, 1);
	lua_pop(L, 1);
	lua_getglobal(L, "sesame");
	lua_getfield(L, -1, "log");
	lua_getfield(L, -1, "info");
	lua_setglobal(L, "print");
	lua_pop(L, 2);
}

static void register_metatables(lua_State *L)
{
	luaapi_request_init(L);
	luaL_newmetatable(L, luaapi_client_error_mt);
	lua_pushboolean(L, 0); /* not the scripts' to change (a __gc would be a finalizer) */
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
	json_lua_init(L);
}

static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	luaL_traceback(L, L, msg != NULL ? msg : "(error object is not a string)", 1);
	return 1;
}

static int load_routes(struct luaapi *api, struct config_errors *errs)
{
	lua_State *L = api->L;
	int failures = 0;
	api->loading = true;
	api->enforce = true;
	lua_sethook(L, luaapi_count_hook, LUA_MASKCOUNT, LUAAPI_HOOK_EVERY);
	for (size_t i = 0; i < api->cfg->nroutes; i++) {
		const char *file = api->cfg->routes[i];
		lua_pushcfunction(L, traceback);
		if (luaL_loadfilex(L, file, "t") != LUA_OK || lua_pcall(L, 0, 0, -2) != LUA_OK) {
			config_errors_add(errs, "%s", lua_tostring(L, -1));
			failures++;
			lua_pop(L, 1);
		} else if (api->load_instructions > api->cfg->handler_instructions) {
			/* It ended in a tail call of the pcall that caught the budget's error. */
			config_errors_add(errs, "%s: %s", file, luaapi_load_over_budget);
			failures++;
		}
		lua_pop(L, 1);
	}
	lua_sethook(L, NULL, 0, 0);
	api->enforce = false;
	api->loading = false;
	return failures ? -1 : 0;
}

struct luaapi *luaapi_new(const struct config *cfg, struct event_base *base, struct jobs *jobs,
			  struct scoreboard_slot *slot, struct config_errors *errs)
{
	struct luaapi *api = calloc(1, sizeof(*api));
	if (api == NULL)
		return NULL;
	api->cfg = cfg;
	api->base = base;
	api->jobs = jobs;
	api->slot = slot;
	api->limit = cfg->lua_memory;
	api->router = router_new();
	api->L = lua_newstate(budget_alloc, api);
	if (api->router == NULL || api->L == NULL) {
		config_errors_add(errs, "cannot create the Lua state: out of memory");
		goto fail;
	}
	*(struct luaapi_call **)lua_getextraspace(api->L) = NULL;
	lua_pushlightuserdata(api->L, api);
	lua_rawsetp(api->L, LUA_REGISTRYINDEX, &luaapi_key);
	register_metatables(api->L);
	open_libs(api->L, cfg);
	if (load_routes(api, errs) != 0)
		goto fail;
	lua_gc(api->L, LUA_GCCOLLECT);
	return api;
fail:
	luaapi_free(api);
	return NULL;
}

void luaapi_free(struct luaapi *api)
{
	if (api == NULL)
		return;
	luaapi_tasks_free(api);
	if (api->L != NULL)
		lua_close(api->L);
	router_free(api->router);
	free(api);
}

void luaapi_set_revocation(struct luaapi *api, struct revocation *rv)
{
	api->rv = rv;
}

const struct router *luaapi_router(const struct luaapi *api)
{
	return api->router;
}

int luaapi_check(const struct config *cfg, struct config_errors *errs)
{
	struct luaapi *api = luaapi_new(cfg, NULL, NULL, NULL, errs);
	if (api == NULL)
		return -1;
	luaapi_free(api);
	return 0;
}
