/*
 * lua_private.h: what the files of the Lua API share, and nothing the rest of the daemon sees
 * (that is lua_api.h).
 *
 * The API is split by surface, as lua-nginx-module splits its own: lua_state.c owns the state
 * and assembles the sesame table, calling one inject function per file; lua_run.c runs a
 * request's handler and its waits on job threads; lua_request.c is the request object;
 * lua_sesame.c, lua_hash.c, lua_jwt.c, lua_users.c and lua_limit.c are the functions of the
 * sesame table.
 */
#ifndef SESAME_LUA_PRIVATE_H
#define SESAME_LUA_PRIVATE_H

#include <jansson.h>
#include <lauxlib.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "claims.h"
#include "config.h"
#include "jobs.h"
#include "plugin.h"

#define LUAAPI_HOOK_EVERY 1000 /* instructions between two budget checks */
#define LUAAPI_POOL_MAX	  256  /* idle coroutines kept for reuse */

struct event;
struct event_base;
struct http_request;
struct revocation;
struct router;
struct scoreboard_slot;

struct luaapi {
	lua_State *L;
	const struct config *cfg;
	struct event_base *base;
	struct jobs *jobs;
	struct scoreboard_slot *slot;
	struct router *router;
	struct revocation *rv; /* the revoked ids; NULL without storage */
	bool loading;	       /* sesame.route is allowed only while the scripts load */
	long load_instructions;
	/* the allocator */
	size_t used, limit;
	bool enforce;
	size_t active;	    /* handlers started and not yet answered */
	unsigned long shed; /* requests answered 503 for a full job queue */
	uint64_t shed_warned_ns;
	/* idle coroutines */
	lua_State *pool[LUAAPI_POOL_MAX];
	int pool_ref[LUAAPI_POOL_MAX];
	size_t npool;
};

/* A request being handled: the coroutine's extra space points here. */
struct luaapi_call {
	struct luaapi *api;
	struct http_request *r; /* NULL once answered */
	lua_State *co;
	int co_ref;
	int req_ref; /* the request object, detached from this call when it ends */
	long instructions;
	struct luaapi_job *job; /* the job the handler waits on, if any */
	struct claims claims;	/* the verified token's, when the route asked for one */
	char identity[256];	/* its sub; "" when there is none */
	struct event *deadline; /* armed when the handler first waits */
	bool shed;		/* the job queue was full: answered 503, never resumed */
	bool shed_hash;		/* and that queue was the hashes' (server.hash_queue) */
};

/* Work a yielding function hands to the job threads. */
struct luaapi_job {
	struct job job;
	struct luaapi_call *call;
	int (*push)(struct luaapi_job *lj, lua_State *co); /* in the coroutine, once resumed */
	void (*release)(struct luaapi_job *lj);
};

/* lua_state.c: the registry key of the worker's struct luaapi, a light userdata. */
extern const char luaapi_key;

/* The worker's API, from any of its coroutines. */
static inline struct luaapi *luaapi_get(lua_State *L)
{
	lua_rawgetp(L, LUA_REGISTRYINDEX, &luaapi_key);
	struct luaapi *api = lua_touserdata(L, -1);
	lua_pop(L, 1);
	return api;
}

/* The call the running coroutine serves: NULL on the main state, while the scripts load. */
static inline struct luaapi_call *luaapi_current(lua_State *L)
{
	return *(struct luaapi_call **)lua_getextraspace(L);
}

/* lua_run.c: enforces server.handler_instructions, on the main state and on coroutines. */
void luaapi_count_hook(lua_State *L, lua_Debug *ar);

/* lua_request.c: raises an error that answers the client with status and message, not a 500. */
extern const char luaapi_client_error_mt[];
int luaapi_client_error(lua_State *L, int status, const char *message);

/* lua_run.c: submits lj and yields the calling coroutine until it is done. */
int luaapi_await_job(lua_State *L, struct luaapi_job *lj, const char *fname);

/*
 * lua_run.c: a zeroed job of size bytes for a function (fname) that calls the storage, whose
 * functions go into *st; raises when no storage is configured, or when memory runs out.
 */
void *luaapi_storage_job(lua_State *L, size_t size, struct storage *st, const char *fname);

/* A storage result that a function answers with nil (and a message), in a set of them. */
#define LUAAPI_REFUSAL(rc) (1u << (unsigned)(rc))

/*
 * lua_run.c: what a storage result means to the function that waited on it. OK pushes nothing
 * and returns 0: the caller pushes its results. A result in refusals (LUAAPI_REFUSAL bits)
 * pushes nil and, but for "not found", a message ("exists", "token revoked"), and returns their
 * number. A store that cannot be reached ends the handler with 503; any other result raises,
 * err going to the log.
 */
int luaapi_storage_push(lua_State *co, enum sesame_storage_result rc, unsigned refusals,
			const char *err);

/* lua_request.c: the request object, its metatable, and its end. */
void luaapi_request_init(lua_State *L);
void luaapi_request_push(lua_State *L, struct luaapi_call *call);
void luaapi_request_detach(lua_State *L, int ref);

/*
 * lua_request.c: a scratch buffer for decoding, as Lua userdata, not malloc: a memory error
 * raised while the results are pushed leaves nothing behind that the collector cannot reclaim.
 */
char *luaapi_push_scratch(lua_State *L, size_t size);

/* Each adds its functions to the sesame table on top of the stack. */
void luaapi_sesame_inject(lua_State *L); /* route, log, readfile, array, null, version */
void luaapi_hash_inject(lua_State *L);	 /* hash, verify, validate */
void luaapi_jwt_inject(lua_State *L);	 /* jwt */
void luaapi_users_inject(lua_State *L);	 /* users */
void luaapi_limit_inject(lua_State *L);	 /* limit */

/* metrics */
void luaapi_metrics_inject(lua_State *L);

/* accounts: the accounts settings, read-only */
void luaapi_accounts_inject(lua_State *L);

#endif
