/* lua_api.h: the worker's Lua state, the sesame module, and running handlers in coroutines. */
#ifndef SESAME_LUA_API_H
#define SESAME_LUA_API_H

#include "config.h"

struct event_base;
struct http_request;
struct jobs;
struct revocation;
struct router;
struct scoreboard_slot;

struct luaapi;

/*
 * Creates the Lua state and runs every route script in cfg, which declare the routes. base,
 * jobs and slot are NULL when only checking the scripts. NULL when a script fails, with its
 * errors.
 */
struct luaapi *luaapi_new(const struct config *cfg, struct event_base *base, struct jobs *jobs,
			  struct scoreboard_slot *slot, struct config_errors *errs);
void luaapi_free(struct luaapi *api);

const struct router *luaapi_router(const struct luaapi *api);

/* The worker's revoked ids (NULL without storage): checked on every authenticated route. */
void luaapi_set_revocation(struct luaapi *api, struct revocation *rv);

/* Background tasks (sesame.defer, event handlers) spawned and not yet finished. */
size_t luaapi_tasks(const struct luaapi *api);

/* Runs the request's handler in a coroutine: an http_dispatch_fn. */
void luaapi_dispatch(void *api, struct http_request *r);

/* Loads the route scripts of cfg into a throwaway state: sesamed -t and reloads. */
int luaapi_check(const struct config *cfg, struct config_errors *errs);

#endif
