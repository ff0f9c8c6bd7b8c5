/*
 * lua_run.c: running a request's handler, and background tasks.
 *
 * Each request runs its handler in a coroutine taken from a pool (reused after a clean return,
 * not rebuilt per request). A C function that must not block the loop (a file read, hashing,
 * storage) packs its work into a job, submits it to the job threads and yields; work the loop
 * drives itself (an outbound transfer) yields the same way on luaapi_await_external. When it
 * is done the loop resumes the coroutine with the results, inside the coroutine, and a
 * deadline armed at the first wait ends a handler that takes too long. When the worker's job queue
 * is full (server.queue) the handler is not resumed at all: the request is answered 503 "server
 * busy" with Retry-After. A job whose request timed out or whose client left is cancelled, so that
 * no job thread starts it. A handler returns status, body
 * table[, headers]; a client error it raises (req:json() refusing bad input, storage that is
 * down) becomes a 4xx or 503 answer instead of a 500.
 * A background task (luaapi_spawn, sesame.defer) is a call that serves no request: it starts
 * on a later turn of the loop, has a handler's budgets and deadline, and its error is logged
 * with its name and traceback; at most server.queue of them exist at once per worker.
 */
#include "autoconfig.h"

#include "lua_api.h"

#include <event2/event.h>
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "clock.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "lua_private.h"
#include "metrics.h"
#include "outbound.h"
#include "plural.h"
#include "router.h"
#include "scoreboard.h"

static const char over_budget[] =
    "handler exceeded its instruction budget (server.handler_instructions)";
const char luaapi_load_over_budget[] =
    "the route scripts exceed the instruction budget (server.handler_instructions) while they "
    "load";

/* Enforces server.handler_instructions, on the main state and on coroutines. */
void luaapi_count_hook(lua_State *L, lua_Debug *ar)
{
	struct luaapi_call *call = luaapi_current(L);
	if (call == NULL) {
		struct luaapi *api = luaapi_get(L);
		/* The scripts are loading, on the main state: they get one handler's budget. */
		api->load_instructions += LUAAPI_HOOK_EVERY;
		if (api->load_instructions <= api->cfg->handler_instructions)
			return;
		/* From every instruction on: a pcall that caught it lets no line run. */
		lua_sethook(L, luaapi_count_hook, LUA_MASKCOUNT, 1);
		luaL_error(L, "%s", luaapi_load_over_budget);
	}
	call->instructions += LUAAPI_HOOK_EVERY;
	call->hook_raised = false;
	if (call->instructions <= call->api->cfg->handler_instructions)
		return;
	/*
	 * Stopped with a yield where it can be (resume ends it): an error raised from a hook
	 * leaves the thread's hooks off, and its to-be-closed variables would then close
	 * unbounded.
	 */
	if (!call->closing && lua_isyieldable(L)) {
		call->over_budget = true;
		lua_yield(L, 0);
		return;
	}
	if (!call->closing) {
		/*
		 * Where it cannot yield (a table.sort comparator, a gsub callback) only an error
		 * stops it. Checked at every instruction from now on, so that a pcall catching
		 * it lets no line of the handler run, and hook_raised still set when the
		 * handler ends says the error came from here: hooks off (close_pending).
		 */
		call->hook_raised = true;
		lua_sethook(L, luaapi_count_hook, LUA_MASKCOUNT, 1);
	}
	luaL_error(L, "%s", over_budget);
}

static void resume(struct luaapi_call *call, int nargs);
static void finish(struct luaapi_call *call, bool failed);

static void job_done(struct job *job)
{
	struct luaapi_call *call = ((struct luaapi_job *)job)->call;
	if (call->state == LUAAPI_CALL_ENDED) {
		/* The call ran out of time (or its client left): its coroutine is dropped. */
		finish(call, true);
		return;
	}
	resume(call, 0);
}

/* The continuation of a yielding function: pushes the job's results inside the coroutine,
 * where a memory error is the handler's error, not the worker's. */
static int job_continue(lua_State *L, int status, lua_KContext ctx)
{
	struct luaapi_call *call = luaapi_current(L);
	struct luaapi_job *lj = call->job;
	int n = lj->push(lj, L);
	call->job = NULL;
	lj->release(lj);
	return n;
}

/* The call's wait is no longer wanted: a job no thread started is skipped, external work
 * stopped. Its done still comes, and finishes the call. */
static void stop_wait(struct luaapi_call *call, enum metrics_drop reason)
{
	struct luaapi_job *lj = call->job;
	call->state = LUAAPI_CALL_ENDED;
	if (lj == NULL)
		return;
	if (lj->cancel != NULL)
		lj->cancel(lj);
	else
		jobs_cancel(&lj->job, reason);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct luaapi_call *call = arg;
	stop_wait(call, METRICS_DROP_TIMEOUT);
	log_error("%s: %s did not finish within server.handler_timeout (%d s)", call->name,
		  call->task ? "task" : "handler", call->api->cfg->handler_timeout);
	if (call->r != NULL)
		http_reply_error(call->r, 503, "request timed out", NULL);
	call->r = NULL; /* the job still owns the call: job_done finishes it */
	luaapi_events_release(call);
}

/* The client closed its connection while the handler waits: nobody will read the answer. */
static void on_gone(void *arg)
{
	struct luaapi_call *call = arg;
	stop_wait(call, METRICS_DROP_CLIENT_GONE);
	if (call->deadline != NULL)
		evtimer_del(call->deadline);
	http_reply_gone(call->r);
	call->r = NULL; /* the job still owns the call: job_done finishes it */
	luaapi_events_release(call);
}

static void arm_deadline(struct luaapi_call *call)
{
	struct luaapi *api = call->api;
	if (call->deadline != NULL || api->base == NULL)
		return;
	uint64_t limit = (uint64_t)api->cfg->handler_timeout * 1000000000u;
	uint64_t spent = clock_mono_ns() - call->start_ns;
	uint64_t left = spent < limit ? limit - spent : 0;
	struct timeval tv = {.tv_sec = (time_t)(left / 1000000000u),
			     .tv_usec = (suseconds_t)(left % 1000000000u / 1000u)};
	call->deadline = evtimer_new(api->base, on_deadline, call);
	if (call->deadline != NULL)
		evtimer_add(call->deadline, &tv);
}

static const char cannot_wait[] =
    "%s waits for %s: call it from a route handler itself or a background task, not while "
    "scripts or modules load, from a metamethod, or from a function that C code calls back "
    "(table.sort, string.gsub)";

/*
 * The call L serves, when it can wait there: not on the main state (while the scripts load),
 * not in a worker only checking the scripts, not where L cannot yield; and, with need_jobs,
 * only when the worker has job threads.
 */
static struct luaapi_call *yieldable_call(lua_State *L, bool need_jobs)
{
	struct luaapi_call *call = luaapi_current(L);
	if (call == NULL || call->api->base == NULL || !lua_isyieldable(L) ||
	    (need_jobs && call->api->jobs == NULL))
		return NULL;
	return call;
}

/*
 * The call L serves, ready to wait: a job whose results could not be pushed (its push raised,
 * and the handler caught the error) is still the call's, and done with now. NULL when L cannot
 * wait (yieldable_call).
 */
static struct luaapi_call *waiting_call(lua_State *L, bool need_jobs)
{
	struct luaapi_call *call = yieldable_call(L, need_jobs);
	if (call == NULL)
		return NULL;
	if (call->job != NULL)
		call->job->release(call->job);
	call->job = NULL;
	return call;
}

/* Suspends the call on lj until its done: the deadline armed, the client watched. */
static int wait_on(lua_State *L, struct luaapi_call *call, struct luaapi_job *lj)
{
	lj->call = call;
	call->job = lj;
	arm_deadline(call);
	if (call->r != NULL)
		http_watch_close(call->r, on_gone, call);
	return lua_yieldk(L, 0, 0, job_continue);
}

bool luaapi_can_wait(lua_State *L)
{
	return yieldable_call(L, true) != NULL;
}

/* Submits lj and yields the calling coroutine until it is done. */
int luaapi_await_job(lua_State *L, struct luaapi_job *lj, const char *fname)
{
	struct luaapi_call *call = waiting_call(L, true);
	if (call == NULL) {
		lj->release(lj);
		return luaL_error(L, cannot_wait, fname, "a job thread");
	}
	lj->call = call;
	lj->cancel = NULL;
	lj->job.done = job_done;
	if (jobs_submit(call->api->jobs, &lj->job) != 0) {
		/* Queue full: the call is suspended here for good and shed (resume). */
		call->shed = true;
		call->shed_hash = lj->job.cpu;
		lj->release(lj);
		return lua_yield(L, 0);
	}
	return wait_on(L, call, lj);
}

/* External work whose caller could not wait: released once its done comes. */
static void orphan_done(struct job *job)
{
	struct luaapi_job *lj = (struct luaapi_job *)job;
	lj->release(lj);
}

int luaapi_await_external(lua_State *L, struct luaapi_job *lj,
			  void (*cancel)(struct luaapi_job *lj), const char *fname)
{
	struct luaapi_call *call = waiting_call(L, false);
	lj->cancel = cancel;
	if (call == NULL) {
		lj->job.done = orphan_done;
		cancel(lj);
		return luaL_error(L, cannot_wait, fname, "the network");
	}
	lj->job.done = job_done;
	return wait_on(L, call, lj);
}

/*
 * A zeroed job of size bytes for a function (fname) that calls the storage, whose functions
 * go into *st; raises when no storage is configured, or when memory runs out.
 */
void *luaapi_storage_job(lua_State *L, size_t size, struct storage *st, const char *fname)
{
	if (!plugins_storage(luaapi_get(L)->cfg->plugins, st))
		luaL_error(L, "%s needs storage: none is configured (storage.backend)", fname);
	void *job = calloc(1, size);
	if (job == NULL)
		luaL_error(L, "out of memory");
	return job;
}

/* The message a refusal comes with; NULL for none (not found). */
static const char *refusal_message(enum sesame_storage_result rc)
{
	switch (rc) {
	case SESAME_STORAGE_CONFLICT:
		return "exists";
	case SESAME_STORAGE_REUSED:
	case SESAME_STORAGE_REVOKED:
		return "token revoked";
	default:
		return NULL;
	}
}

int luaapi_storage_push(lua_State *co, enum sesame_storage_result rc, unsigned refusals,
			const char *err)
{
	switch (rc) {
	case SESAME_STORAGE_OK:
		return 0;
	case SESAME_STORAGE_UNAVAILABLE:
		log_error("storage unavailable: %s", err);
		return luaapi_client_error(co, 503, "storage unavailable");
	case SESAME_STORAGE_FAILED:
		return luaL_error(co, "storage: %s", err);
	default:
		break;
	}
	if (rc < 0 || !(refusals & LUAAPI_REFUSAL(rc)))
		return luaL_error(co, "storage: unexpected result %d", (int)rc);
	lua_pushnil(co);
	const char *message = refusal_message(rc);
	if (message == NULL)
		return 1;
	lua_pushstring(co, message);
	return 2;
}

/* ---- running a handler ---- */

static lua_State *take_coroutine(struct luaapi *api, int *ref)
{
	if (api->npool > 0) {
		api->npool--;
		*ref = api->pool_ref[api->npool];
		return api->pool[api->npool];
	}
	lua_State *co = lua_newthread(api->L);
	*ref = luaL_ref(api->L, LUA_REGISTRYINDEX);
	lua_sethook(co, luaapi_count_hook, LUA_MASKCOUNT, LUAAPI_HOOK_EVERY);
	return co;
}

/*
 * The to-be-closed variables a handler left pending when it failed or was abandoned (its
 * deadline passed, its client left: `local undo <close> = ...` in a route) are closed now,
 * with the call still current and a budget of their own. Closing cannot wait (a reset is not
 * yieldable: storage, hashing and mail refuse), but sesame.defer can start what must. An
 * error raised there is logged with the call's name: one that is not the handler's own error,
 * which went to the log already. Not when its budget ran out where it could not yield: the
 * error from the hook left the thread's hooks off, so they are left unclosed, and logged.
 */
static void close_pending(struct luaapi_call *call)
{
	struct luaapi *api = call->api;
	lua_State *co = call->co;
	int before = lua_status(co);
	bool had_error = before != LUA_OK && before != LUA_YIELD;
	if (had_error && call->hook_raised) {
		log_error("%s: the %s's to-be-closed variables are not closed: its instruction "
			  "budget ran out where it could not yield (in a function that C code "
			  "calls back, such as a table.sort comparator)",
			  call->name, call->task ? "task" : "handler");
		return;
	}
	lua_sethook(co, luaapi_count_hook, LUA_MASKCOUNT, LUAAPI_HOOK_EVERY);
	if (had_error) {
		lua_pushvalue(co, -1);
		lua_xmove(co, api->L, 1);
	}
	call->closing = true;
	call->instructions = 0;
	bool enforce = api->enforce;
	api->enforce = true;
	int rc = lua_resetthread(co);
	api->enforce = enforce;
	if (had_error)
		lua_xmove(api->L, co, 1);
	if (rc != LUA_OK && !(had_error && lua_rawequal(co, -1, -2))) {
		const char *msg = lua_tostring(co, had_error ? -2 : -1);
		log_error("%s: closing the %s's to-be-closed variables failed: %s", call->name,
			  call->task ? "task" : "handler",
			  msg != NULL ? msg : "(error object is not a string)");
	}
	lua_settop(co, 0);
}

/*
 * A coroutine that ended in an error is closed and dropped, not reused: an error raised from
 * the count hook leaves the thread with hooks disabled, and a reset does not restore them.
 */
static void give_coroutine(struct luaapi_call *call, bool failed)
{
	struct luaapi *api = call->api;
	lua_State *co = call->co;
	int ref = call->co_ref;
	if (failed)
		close_pending(call);
	*(struct luaapi_call **)lua_getextraspace(co) = NULL;
	if (failed) {
		luaL_unref(api->L, LUA_REGISTRYINDEX, ref);
		return;
	}
	lua_settop(co, 0);
	/* A pooled coroutine counts at the usual pace, whatever its last handler did. */
	lua_sethook(co, luaapi_count_hook, LUA_MASKCOUNT, LUAAPI_HOOK_EVERY);
	if (api->npool < LUAAPI_POOL_MAX) {
		api->pool[api->npool] = co;
		api->pool_ref[api->npool] = ref;
		api->npool++;
	} else {
		luaL_unref(api->L, LUA_REGISTRYINDEX, ref);
	}
}

/* Headers that frame the response are sesame's: a handler's would corrupt it. */
static bool framing_header(const char *name)
{
	static const char *const names[] = {"Content-Type", "Content-Length", "Transfer-Encoding",
					    "Connection",   "Keep-Alive",     "Upgrade",
					    "Trailer",	    "Date",	      NULL};
	for (const char *const *n = names; *n != NULL; n++) {
		if (strcasecmp(name, *n) == 0)
			return true;
	}
	return false;
}

/* name for a log line, at most size - 1 bytes, every byte outside printable ASCII a '?'. */
static void shown_name(char *out, size_t size, const char *name)
{
	size_t n = 0;
	for (; name[n] != '\0' && n + 1 < size; n++)
		out[n] = name[n] > ' ' && name[n] < 0x7f ? name[n] : '?';
	out[n] = '\0';
}

/* Adds the handler's headers table (at idx) to the response; -1 with err on a bad one. */
static int add_headers(lua_State *co, int idx, struct http_request *r, char *err, size_t errlen)
{
	if (lua_isnoneornil(co, idx))
		return 0;
	if (!lua_istable(co, idx)) {
		snprintf(err, errlen, "headers must be a table");
		return -1;
	}
	lua_pushnil(co);
	while (lua_next(co, idx) != 0) {
		const char *name = lua_type(co, -2) == LUA_TSTRING ? lua_tostring(co, -2) : NULL;
		int n = lua_istable(co, -1) ? (int)lua_rawlen(co, -1) : 1;
		for (int i = 1; name != NULL && i <= n; i++) {
			if (lua_istable(co, -1))
				lua_rawgeti(co, -1, i);
			else
				lua_pushvalue(co, -1);
			size_t vlen = 0;
			const char *value =
			    lua_type(co, -1) == LUA_TSTRING || lua_type(co, -1) == LUA_TNUMBER
				? lua_tolstring(co, -1, &vlen)
				: NULL;
			/* A NUL would cut the value short: refused as any control character. */
			if (value == NULL || strlen(value) != vlen || framing_header(name) ||
			    http_add_header(r, name, value) != 0)
				name = NULL;
			lua_pop(co, 1);
		}
		if (name == NULL) {
			/* The name only, made printable: never the value, which may hold a secret.
			 */
			char shown[64] = "(not a name)";
			if (lua_type(co, -2) == LUA_TSTRING)
				shown_name(shown, sizeof(shown), lua_tostring(co, -2));
			snprintf(err, errlen, "header %s cannot be sent", shown);
			lua_pop(co, 2);
			return -1;
		}
		lua_pop(co, 1);
	}
	return 0;
}

/* Sends what the handler returned: status, body[, headers]. */
static void answer(struct luaapi_call *call, int nres)
{
	lua_State *co = call->co;
	struct http_request *r = call->r;
	char err[LOG_ERR_MAX];
	int isint = 0;
	lua_Integer status = nres >= 1 ? lua_tointegerx(co, 1, &isint) : 0;
	if (!isint || status < 200 || status > 599) {
		log_error("%s: handler returned %s instead of a status from 200 to 599",
			  r->route->name, nres >= 1 ? luaL_typename(co, 1) : "nothing");
		http_reply_error(r, 500, "internal server error",
				 "handler returned no valid status");
		return;
	}
	json_t *body = NULL;
	if (nres >= 2 && !lua_isnil(co, 2)) {
		body = json_from_lua(co, 2, call->api->cfg->json_depth + 16, err, sizeof(err));
		if (body == NULL) {
			log_error("%s: cannot encode the response body: %s", r->route->name, err);
			http_reply_error(r, 500, "internal server error", err);
			return;
		}
	}
	if (add_headers(co, 3, r, err, sizeof(err)) != 0) {
		json_decref(body);
		log_error("%s: %s", r->route->name, err);
		evhttp_clear_headers(evhttp_request_get_output_headers(r->ev));
		http_reply_error(r, 500, "internal server error", err);
		return;
	}
	char *text = body != NULL ? json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(body);
	http_reply(r, (int)status, text, text != NULL ? strlen(text) : 0);
	free(text);
}

static bool is_client_error(lua_State *co)
{
	if (!lua_istable(co, -1) || !lua_getmetatable(co, -1))
		return false;
	luaL_getmetatable(co, luaapi_client_error_mt);
	bool yes = lua_rawequal(co, -1, -2);
	lua_pop(co, 2);
	return yes;
}

/* The handler raised an error: a client error answers 4xx, anything else 500. */
static void answer_error(struct luaapi_call *call)
{
	lua_State *co = call->co;
	struct http_request *r = call->r;
	if (r != NULL && !call->over_budget && is_client_error(co)) {
		lua_getfield(co, -1, "status");
		lua_getfield(co, -2, "error");
		int status = (int)lua_tointeger(co, -2);
		/* A 503 (storage unavailable) passes: the client may try again in a moment. */
		if (status == 503)
			http_add_header(r, "Retry-After", "1");
		http_reply_error(r, status, lua_tostring(co, -1), NULL);
		return;
	}
	const char *msg = call->over_budget ? over_budget : lua_tostring(co, -1);
	luaL_traceback(call->api->L, co, msg != NULL ? msg : "(error object is not a string)", 0);
	log_error("%s: %s failed: %s", call->name, r != NULL ? "handler" : "task",
		  lua_tostring(call->api->L, -1));
	lua_pop(call->api->L, 1);
	if (r != NULL)
		http_reply_error(r, 500, "internal server error", msg);
}

/*
 * Gives the call's coroutine back. The scoreboard names the Lua that runs: resume() names each
 * call it resumes, and a failed call is named while its variables close, so that a hang in a
 * __close is blamed on its route. Nothing needs restoring after: no Lua runs until the next
 * resume names its own call.
 */
static void give_named(struct luaapi_call *call, bool failed)
{
	if (failed)
		scoreboard_enter(call->api->slot, call->name);
	give_coroutine(call, failed);
}

static void finish(struct luaapi_call *call, bool failed)
{
	struct luaapi *api = call->api;
	if (call->task)
		api->tasks--;
	else
		luaapi_request_detach(api->L, call->req_ref);
	if (call->job != NULL)
		call->job->release(call->job);
	if (call->deadline != NULL)
		event_free(call->deadline);
	claims_clear(&call->claims);
	give_named(call, failed);
	/* After the closing, whose events are held on the call too. */
	luaapi_events_release(call);
	if (--api->active == 0)
		scoreboard_leave(api->slot);
	free(call);
}

/* The job queue was full: 503 at once (a task is dropped), and the coroutine unfinished. */
static void shed(struct luaapi_call *call)
{
	struct luaapi *api = call->api;
	uint64_t now = clock_mono_ns();
	api->shed++;
	metrics_jobs_shed();
	if (api->shed_warned_ns == 0 || now - api->shed_warned_ns > 10000000000u) {
		log_warn("job queue full (server.%s = %d): %lu %s answered 503 so far "
			 "(said at most every 10 s)",
			 call->shed_hash ? "hash_queue" : "queue",
			 call->shed_hash ? config_hash_queue(api->cfg) : api->cfg->queue, api->shed,
			 plural((long long)api->shed, "request", "requests"));
		api->shed_warned_ns = now;
	}
	if (call->r != NULL) {
		http_add_header(call->r, "Retry-After", "1");
		http_reply_error(call->r, 503, "server busy", NULL);
	} else {
		log_warn("%s: task dropped: the job queue is full", call->name);
	}
	call->r = NULL;
	finish(call, true);
}

static void resume(struct luaapi_call *call, int nargs)
{
	struct luaapi *api = call->api;
	int nres = 0;
	scoreboard_enter(api->slot, call->name);
	api->enforce = true;
	int rc = lua_resume(call->co, api->L, nargs, &nres);
	api->enforce = false;

	/* Its error is over_budget, which answer_error takes from the call: after a hook's yield
	 * the coroutine's stack has no free slot to push it on. */
	if (rc == LUA_YIELD && call->over_budget)
		rc = LUA_ERRRUN;
	/* A pcall in a tail call (`return pcall(table.sort, t, cmp)`) caught the hook's error
	 * and no instruction ran after it: over budget all the same, and its coroutine goes. */
	if (rc == LUA_OK && call->hook_raised) {
		call->over_budget = true;
		rc = LUA_ERRRUN;
	}
	if (rc == LUA_YIELD && call->shed) {
		shed(call);
		return;
	}
	if (rc == LUA_YIELD && call->job != NULL)
		return;
	if (rc == LUA_YIELD) {
		log_error("%s: %s yielded outside sesame", call->name,
			  call->task ? "task" : "handler");
		if (call->r != NULL)
			http_reply_error(call->r, 500, "internal server error", "handler yielded");
		call->r = NULL;
		finish(call, true);
		return;
	}
	if (rc == LUA_OK && call->r != NULL)
		answer(call, nres);
	else if (rc != LUA_OK)
		answer_error(call);
	call->r = NULL;
	finish(call, rc != LUA_OK);
}

void luaapi_dispatch(void *arg, struct http_request *r)
{
	struct luaapi *api = arg;
	struct luaapi_call *call = calloc(1, sizeof(*call));
	if (call == NULL) {
		http_reply_error(r, 500, "internal server error", "out of memory");
		return;
	}
	if (r->route->options != AUTH_NONE) {
		struct auth_verdict v =
		    auth_check(&api->cfg->jwt, api->rv, r->route->options, r, &call->claims,
			       call->identity, sizeof(call->identity));
		if (v.status != 0) {
			auth_reply(r, &v);
			free(call);
			return;
		}
	}
	call->api = api;
	call->r = r;
	call->state = LUAAPI_CALL_RUNNING;
	call->start_ns = r->start_ns;
	call->name = r->route->name;
	api->active++;
	call->co = take_coroutine(api, &call->co_ref);
	*(struct luaapi_call **)lua_getextraspace(call->co) = call;
	lua_rawgeti(call->co, LUA_REGISTRYINDEX, r->route->handler);
	luaapi_request_push(call->co, call);
	lua_pushvalue(call->co, -1);
	call->req_ref = luaL_ref(call->co, LUA_REGISTRYINDEX);
	resume(call, 1);
}

/* ---- background tasks ---- */

/* The worker's transfers, created on the first one. */
struct outbound *luaapi_outbound(struct luaapi *api)
{
	if (api->outbound == NULL && api->base != NULL)
		api->outbound = outbound_new(api->base);
	return api->outbound;
}

size_t luaapi_tasks(const struct luaapi *api)
{
	return api->tasks;
}

/* A task refused for the bound: said at most every 10 s. */
static void warn_dropped(struct luaapi *api, const char *name)
{
	uint64_t now = clock_mono_ns();
	api->tasks_dropped++;
	if (api->tasks_warned_ns != 0 && now - api->tasks_warned_ns <= 10000000000u)
		return;
	log_warn("%s: background task dropped: the worker runs server.queue = %d already "
		 "(%lu dropped so far, said at most every 10 s)",
		 name, api->cfg->queue, api->tasks_dropped);
	api->tasks_warned_ns = now;
}

/* Runs the tasks spawned before this turn, in order; those they spawn wait for the next. */
static void on_spawned(evutil_socket_t fd, short what, void *arg)
{
	struct luaapi *api = arg;
	struct luaapi_call *call = api->spawned;
	api->spawned = api->spawned_last = NULL;
	while (call != NULL) {
		struct luaapi_call *next = call->next_spawned;
		call->state = LUAAPI_CALL_RUNNING;
		call->start_ns = clock_mono_ns();
		api->active++;
		resume(call, call->nargs);
		call = next;
	}
}

/* A call for a task named name, on a coroutine of its own; NULL when memory runs out. */
static struct luaapi_call *new_task(struct luaapi *api, const char *name)
{
	struct luaapi_call *call = calloc(1, sizeof(*call));
	if (call == NULL)
		return NULL;
	call->api = api;
	call->task = true;
	call->state = LUAAPI_CALL_SPAWNED;
	call->req_ref = LUA_NOREF;
	snprintf(call->task_name, sizeof(call->task_name), "%s", name);
	call->name = call->task_name;
	/* The coroutine is the worker's, not the spawning handler's: outside its budget. */
	bool enforce = api->enforce;
	api->enforce = false;
	call->co = take_coroutine(api, &call->co_ref);
	api->enforce = enforce;
	*(struct luaapi_call **)lua_getextraspace(call->co) = call;
	return call;
}

int luaapi_spawn(lua_State *L, int nargs, const char *name)
{
	struct luaapi *api = luaapi_get(L);
	if (api->base == NULL) {
		/* Only checking the scripts: nothing runs. */
		lua_pop(L, nargs + 1);
		return 0;
	}
	if (api->tasks >= (size_t)api->cfg->queue) {
		lua_pop(L, nargs + 1);
		warn_dropped(api, name);
		return -1;
	}
	if (api->spawn_ev == NULL &&
	    (api->spawn_ev = evtimer_new(api->base, on_spawned, api)) == NULL)
		return luaL_error(L, "out of memory");
	struct luaapi_call *call = new_task(api, name);
	if (call != NULL && !lua_checkstack(call->co, nargs + 1)) {
		give_coroutine(call, true);
		free(call);
		call = NULL;
	}
	if (call == NULL)
		return luaL_error(L, "out of memory");
	call->nargs = nargs;
	/* What an event handler starts is the handler's still: it cannot feed itself through it. */
	call->in_handler = luaapi_current(L) != NULL && luaapi_current(L)->in_handler;
	lua_xmove(L, call->co, nargs + 1);
	if (api->spawned_last != NULL)
		api->spawned_last->next_spawned = call;
	else
		api->spawned = call;
	api->spawned_last = call;
	api->tasks++;
	evtimer_add(api->spawn_ev, &(struct timeval){0});
	return 0;
}

/* Tasks spawned and never started, as the state closes: their coroutines go with it. */
void luaapi_tasks_free(struct luaapi *api)
{
	outbound_free(api->outbound);
	api->outbound = NULL;
	while (api->spawned != NULL) {
		struct luaapi_call *next = api->spawned->next_spawned;
		free(api->spawned);
		api->spawned = next;
	}
	if (api->spawn_ev != NULL)
		event_free(api->spawn_ev);
	api->spawn_ev = NULL;
}

/* sesame.defer(fn, ...): fn(...) once the current handler has answered; false when dropped. */
static int l_defer(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TFUNCTION);
	int nargs = lua_gettop(L) - 1;
	lua_pushboolean(L, luaapi_spawn(L, nargs, "sesame.defer") == 0);
	return 1;
}

void luaapi_run_inject(lua_State *L)
{
	lua_pushcfunction(L, l_defer);
	lua_setfield(L, -2, "defer");
}
