/*
 * lua_private.h: what the files of the Lua API share, and nothing the rest of the daemon sees
 * (that is lua_api.h).
 *
 * The API is split by surface, as lua-nginx-module splits its own: lua_state.c owns the state
 * and assembles the sesame table, calling one inject function per file; lua_run.c runs a
 * request's handler, a background task (sesame.defer), and their waits on job threads and on
 * outbound transfers; lua_request.c is the request object; lua_sesame.c, lua_hash.c,
 * lua_jwt.c (with lua_jwt_sign.c and lua_jwt_family.c), lua_users.c, lua_limit.c, lua_mail.c
 * and lua_http.c are the functions of the sesame table.
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
#include "tokens.h"

#define LUAAPI_HOOK_EVERY 1000 /* instructions between two budget checks */
#define LUAAPI_POOL_MAX	  256  /* idle coroutines kept for reuse */

struct event;
struct event_base;
struct http_request;
struct luaapi_call;
struct outbound;
struct revocation;
struct router;
struct scoreboard_slot;

/* The error of route scripts that run past server.handler_instructions while they load. */
extern const char luaapi_load_over_budget[];

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
	/* background tasks (luaapi_spawn): those waiting for the next turn, in order */
	struct luaapi_call *spawned, *spawned_last;
	struct event *spawn_ev;
	size_t tasks; /* spawned and not yet finished */
	unsigned long tasks_dropped;
	uint64_t tasks_warned_ns;
	struct outbound *outbound; /* created on the first transfer (luaapi_outbound) */
};

/* Where a call is: a task waiting for its first turn, running, or answered and dropped when
 * its wait ends (timed out, client gone). */
enum luaapi_call_state { LUAAPI_CALL_SPAWNED, LUAAPI_CALL_RUNNING, LUAAPI_CALL_ENDED };

/* A request being handled, or a background task: the coroutine's extra space points here. */
struct luaapi_call {
	struct luaapi *api;
	struct http_request *r; /* NULL once answered, and for a task */
	enum luaapi_call_state state;
	const char *name;   /* the route's, or the task's, for the log and the scoreboard */
	char task_name[64]; /* a task's name: name points here */
	uint64_t start_ns;  /* when it started: its deadline counts from here */
	bool task;	    /* a background task: it serves no request */
	bool in_handler;    /* runs an event handler, or a task spawned from one: its events
			       start no handlers (lua_events.c) */
	int nargs;	    /* a task's arguments, on its coroutine after its function */
	struct luaapi_call *next_spawned;
	lua_State *co;
	int co_ref;
	int req_ref;  /* the request object, detached from this call when it ends */
	int held_ref; /* a request's: the sesame.on handlers its events start once it ends, a
			 registry table (0: none; lua_events.c) */
	long instructions;
	struct luaapi_job *job; /* the job the handler waits on, if any */
	struct claims claims;	/* the verified token's, when the route asked for one */
	char identity[256];	/* its sub; "" when there is none */
	struct event *deadline; /* armed when the handler first waits */
	bool shed;		/* the job queue was full: answered 503, never resumed */
	bool shed_hash;		/* and that queue was the hashes' (server.hash_queue) */
	bool over_budget;	/* stopped by the count hook, with a yield */
	bool hook_raised;	/* the count hook's last check raised the budget's error */
	bool closing;		/* its pending to-be-closed variables are being closed */
};

/* Work a yielding function hands to the job threads. */
struct luaapi_job {
	struct job job;
	struct luaapi_call *call;
	int (*push)(struct luaapi_job *lj, lua_State *co); /* in the coroutine, once resumed */
	void (*release)(struct luaapi_job *lj);
	void (*cancel)(struct luaapi_job *lj); /* external work only (luaapi_await_external) */
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

/* lua_run.c: whether luaapi_await_job can wait here: L serves a handler or a task, the worker
 * has job threads, and L can yield (not while scripts load, in a metamethod, or in a function
 * C code calls back). */
bool luaapi_can_wait(lua_State *L);

/*
 * lua_jwt_sign.c: signs the token tr asks for and pushes it, returning 1 (or the results of
 * the wait): an RS token on a job thread while L yields, when it can (luaapi_can_wait);
 * any other on the loop. Raises when it cannot be signed. tr's strings and claims are copied.
 */
int luaapi_jwt_sign(lua_State *L, const struct token_request *tr, const char *fname);

/*
 * lua_jwt_sign.c: tokens_issue, counted as signed on a job thread or on the loop. A malloc'd
 * token, or NULL and the reason in err.
 */
char *luaapi_jwt_issue(const struct token_config *tc, const struct token_request *tr, bool on_job,
		       char *err, size_t errlen);

/* lua_jwt_sign.c: pushes token and wipes and frees it; raises err when token is NULL. */
void luaapi_jwt_push(lua_State *L, char *token, const char *err);

/* The longest identity (a sub) a token job takes, with its NUL. */
#define LUAAPI_IDENTITY_MAX 256

/*
 * lua_jwt_family.c: the token jobs, each run on a job thread while L yields (luaapi_await_job)
 * and its results pushed as the sesame.jwt function fname returns them; each raises when no
 * storage is configured. Strings and claims are copied.
 */
/* sesame.jwt.refresh with storage: a new family for tr->identity and its first refresh token. */
int luaapi_family_start(lua_State *L, const struct token_request *tr, const char *fname);
/* The refresh token sesame.jwt.rotate spends, as its verified claims name it. */
struct luaapi_spent {
	const char *jti, *sub;
	const char *fam; /* NULL: a token of no family (flask-jwt-extended's), which starts one */
};
/* sesame.jwt.rotate: spends it, its successor carrying claims (the operator's, or NULL). */
int luaapi_family_rotate(lua_State *L, const struct luaapi_spent *spent, const json_t *claims,
			 const char *fname);
/* sesame.jwt.revoke: the token and its family, as tokens_revocation decided. */
int luaapi_token_revoke(lua_State *L, const struct token_revocation *rev, const char *fname);
/* sesame.jwt.revoke_all: every family of identity but except (NULL: none). */
int luaapi_subject_revoke(lua_State *L, const char *identity, const char *except,
			  const char *fname);

/*
 * lua_run.c: yields the calling coroutine on work that is not a job-thread job (an outbound
 * transfer driven by the loop), already started. The work calls lj->job.done(&lj->job) on the
 * loop when finished, never from inside this function or inside cancel. cancel (the request
 * timed out or its client left) stops the work; done is still called afterwards, from the
 * loop. When the caller cannot wait (not in a handler or task), cancel is called, the error
 * raised, and lj released once done comes.
 */
int luaapi_await_external(lua_State *L, struct luaapi_job *lj,
			  void (*cancel)(struct luaapi_job *lj), const char *fname);

/*
 * lua_run.c: pops a function and its nargs arguments (pushed after it) from L, any coroutine
 * of the worker's state or its main state, and runs it at the next turn of the loop in a
 * coroutine of its own that serves no request: a background task, named name in the log and
 * the scoreboard, with a handler's budgets. The task inherits in_handler from the call L
 * serves. 0, or -1 when the worker already runs server.queue tasks (the task is dropped and a
 * warning logged, at most every 10 s).
 */
int luaapi_spawn(lua_State *L, int nargs, const char *name);

/* lua_run.c: the worker's outbound transfers, created on first use; NULL when out of memory
 * or only checking the scripts. */
struct outbound *luaapi_outbound(struct luaapi *api);

/* lua_run.c: ends the transfers in flight (as cancelled) and frees the tasks never started;
 * before the state closes. */
void luaapi_tasks_free(struct luaapi *api);

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

/*
 * lua_request.c: the string field name of the table at idx (an absolute index), left on the
 * stack, which keeps it alive, its length in *len unless len is NULL. NULL when the field is
 * nil and not required; another type, or nil when required, raises "FNAME: NAME must be a
 * string".
 */
const char *luaapi_string_field(lua_State *L, int idx, const char *name, bool required, size_t *len,
				const char *fname);

/*
 * lua_db.c: raises unless the storage backend has the function at member of struct
 * sesame_storage (name): "storage backend NAME lacks FUNCTION (ABI 1.1)" for a plugin of an
 * older minor; or when no storage is configured. Call it before the job is made.
 */
void luaapi_storage_need(lua_State *L, size_t member, const char *name);
#define LUAAPI_STORAGE_NEED(L, MEMBER)                                                             \
	luaapi_storage_need((L), offsetof(struct sesame_storage, MEMBER), #MEMBER)

/* Each adds its functions to the sesame table on top of the stack. */
void luaapi_sesame_inject(lua_State *L);  /* route, log, readfile, array, null, version */
void luaapi_hash_inject(lua_State *L);	  /* hash, verify, validate */
void luaapi_jwt_inject(lua_State *L);	  /* jwt */
void luaapi_users_inject(lua_State *L);	  /* users */
void luaapi_limit_inject(lua_State *L);	  /* limit */
void luaapi_onetime_inject(lua_State *L); /* onetime */
void luaapi_db_inject(lua_State *L);	  /* db */
void luaapi_run_inject(lua_State *L);	  /* defer */
void luaapi_mail_inject(lua_State *L);	  /* mail */
void luaapi_http_inject(lua_State *L);	  /* http */

/* lua_limit.c: a request refused by rule for key: counted, and a rate_limited event. */
void luaapi_rate_limited(lua_State *L, const char *rule, const char *key);

/* metrics */
void luaapi_metrics_inject(lua_State *L);

/* lua_events.c: sesame.emit and sesame.on. */
void luaapi_events_inject(lua_State *L);
/* A new event of name, with the request's id and address when L serves one; NULL: no memory. */
json_t *luaapi_event_new(lua_State *L, const char *name);
/* Sets the event's user: the identity (a sub), as a number when it is one. */
void luaapi_event_user(json_t *ev, const char *identity);
/*
 * Emits ev (events_emit) and starts its sesame.on handlers as background tasks; frees ev. The
 * handlers of a request's event are held on its call until luaapi_events_release.
 */
void luaapi_event_emit(lua_State *L, json_t *ev);
/* lua_run.c calls it once the call's client is done with (answered, timed out, gone) and as
 * the call finishes: its held handlers join the background tasks. */
void luaapi_events_release(struct luaapi_call *call);
/* accounts: the accounts settings, read-only */
void luaapi_accounts_inject(lua_State *L);
/* json: encode and decode */
void luaapi_json_inject(lua_State *L);

#endif
