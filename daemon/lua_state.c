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

#include "json.h"
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
					      "tmpname", "setlocale", NULL};
	for (const char *const *k = drop_base; *k != NULL; k++) {
		lua_pushnil(L);
		lua_setglobal(L, *k);
	}
	lua_getglobal(L, "load");
	lua_pushcclosure(L, l_load_text, 1);
	lua_setglobal(L, "load");
	lua_getglobal(L, "os");
	for (const char *const *k = drop_os; *k != NULL; k++) {
		lua_pushnil(L);
		lua_setfield(L, -2, *k);
	}
	lua_pop(L, 1);

	/* require finds Lua modules beside the config, in lua/, and never loads C. */
	lua_getglobal(L, "package");
	lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua", cfg->dir, cfg->dir);
	lua_setfield(L, -2, "path");
	lua_pushliteral(L, "");
	lua_setfield(L, -2, "cpath");
	lua_pushnil(L);
	lua_setfield(L, -2, "loadlib");
	lua_getfield(L, -1, "searchers");
	lua_pushnil(L);
	lua_rawseti(L, -2, 4);
	lua_pushnil(L);
	lua_rawseti(L, -2, 3);
	lua_pop(L, 1);
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
