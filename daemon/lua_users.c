/*
 * lua_api.c: the worker's Lua state, the `sesame` module, and the running of handlers.
 *
 * One state per worker, created after fork: the route scripts run once at start and declare
 * their routes with sesame.route; their handlers stay in the registry. Each request runs its
 * handler in a coroutine taken from a pool (reused after a clean return, not rebuilt per
 * request). A C function that must not block the loop (a file read now; hashing and storage
 * later) packs its work into a job, submits it to the job threads and yields; when it is done the
 * loop resumes the coroutine with the results. A count hook enforces the instruction budget across
 * all of a handler's resumptions, and the allocator enforces the state's memory limit while a
 * handler runs. A handler returns status, body table[, headers]; req:json() refuses bad input
 * by raising a client error, which becomes a 4xx answer instead of a 500.
 */
#include "autoconfig.h"

#include "lua_api.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "http.h"
#include "jobs.h"
#include "json.h"
#include "log.h"
#include "plugin.h"
#include "request.h"
#include "revocation.h"
#include "router.h"
#include "scoreboard.h"
#include "tokens.h"

#define HOOK_EVERY   1000 /* instructions between two budget checks */
#define POOL_MAX     256  /* idle coroutines kept for reuse */
#define READFILE_MAX (16u << 20)

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
	size_t active; /* handlers started and not yet answered */
	/* idle coroutines */
	lua_State *pool[POOL_MAX];
	int pool_ref[POOL_MAX];
	size_t npool;
};

/* The auth modes of opts.auth, kept as the route's options. */
enum { AUTH_NONE, AUTH_REQUIRED, AUTH_OPTIONAL, AUTH_REFRESH, AUTH_FRESH };
static const char *const auth_modes[] = {"", "required", "optional", "refresh", "fresh", NULL};

/* A request being handled: the coroutine's extra space points here. */
struct luaapi_call {
	struct luaapi *api;
	struct http_request *r; /* NULL once answered */
	lua_State *co;
	int co_ref;
	int req_ref; /* the request object, detached from this call when it ends */
	long instructions;
	struct luaapi_job *job; /* the job the handler waits on, if any */
	json_t *claims;		/* the verified token's, when the route asked for one */
	char identity[256];	/* its sub; "" when there is none */
	struct event *deadline; /* armed when the handler first waits */
};

/* The request object seen by Lua: a pointer to its call, cleared when the call ends. */
struct req_ud {
	struct luaapi_call *call;
};

static const char req_mt[] = "sesame.request";
static const char client_error_mt[] = "sesame.client_error";
static const char api_key; /* registry: light userdata of the struct luaapi */

static struct luaapi *get_api(lua_State *L)
{
	lua_rawgetp(L, LUA_REGISTRYINDEX, &api_key);
	struct luaapi *api = lua_touserdata(L, -1);
	lua_pop(L, 1);
	return api;
}

static struct luaapi_call *get_call(lua_State *L)
{
	return *(struct luaapi_call **)lua_getextraspace(L);
}

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

static void count_hook(lua_State *L, lua_Debug *ar)
{
	struct luaapi_call *call = get_call(L);
	if (call == NULL) {
		/* The scripts are loading, on the main state: they get one handler's budget. */
		struct luaapi *api = get_api(L);
		api->load_instructions += HOOK_EVERY;
		if (api->load_instructions > api->cfg->handler_instructions)
			luaL_error(L, "the route scripts exceed the instruction budget "
				      "(server.handler_instructions) while they load");
		return;
	}
	call->instructions += HOOK_EVERY;
	if (call->instructions > call->api->cfg->handler_instructions)
		luaL_error(L,
			   "handler exceeded its instruction budget (server.handler_instructions)");
}

/* ---- client errors ---- */

/* Raises an error that answers the client with status and message instead of a 500. */
static int client_error(lua_State *L, int status, const char *message)
{
	lua_createtable(L, 0, 2);
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	lua_pushstring(L, message);
	lua_setfield(L, -2, "error");
	luaL_setmetatable(L, client_error_mt);
	return lua_error(L);
}

/* ---- the request object ---- */

static struct luaapi_call *check_req(lua_State *L)
{
	struct req_ud *ud = luaL_checkudata(L, 1, req_mt);
	if (ud->call == NULL || ud->call->r == NULL)
		luaL_error(L, "this request has already been answered");
	return ud->call;
}

static void set_pair(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
	lua_State *L = arg;
	lua_pushlstring(L, name, nlen);
	if (lua_rawget(L, -2) != LUA_TNIL) { /* the first of repeated names wins */
		lua_pop(L, 1);
		return;
	}
	lua_pop(L, 1);
	lua_pushlstring(L, name, nlen);
	lua_pushlstring(L, value, vlen);
	lua_rawset(L, -3);
}

static void push_headers(lua_State *L, struct evhttp_request *ev)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(ev);
	lua_newtable(L);
	for (struct evkeyval *kv = h->tqh_first; kv != NULL; kv = kv->next.tqe_next) {
		char name[256];
		size_t len = strnlen(kv->key, sizeof(name) - 1);
		for (size_t i = 0; i < len; i++)
			name[i] = (char)(kv->key[i] >= 'A' && kv->key[i] <= 'Z' ? kv->key[i] + 32
										: kv->key[i]);
		name[len] = '\0';
		if (lua_getfield(L, -1, name) == LUA_TSTRING) {
			/* Repeated headers are joined as RFC 9110 allows. */
			lua_pushliteral(L, ", ");
			lua_pushstring(L, kv->value);
			lua_concat(L, 3);
		} else {
			lua_pop(L, 1);
			lua_pushstring(L, kv->value);
		}
		lua_setfield(L, -2, name);
	}
}

/*
 * Decoding buffers are Lua userdata, not malloc: a memory error raised while the results are
 * pushed leaves nothing behind that the collector cannot reclaim.
 */
static char *push_scratch(lua_State *L, size_t size)
{
	return lua_newuserdatauv(L, size, 0);
}

static void push_params(lua_State *L, const struct http_request *r)
{
	char *value = push_scratch(L, strlen(r->path) + 1);
	lua_createtable(L, 0, (int)r->params.n);
	for (size_t i = 0; i < r->params.n; i++) {
		const char *name = r->params.p[i].name;
		size_t nlen = strcspn(name, "/"), vlen;
		if (request_percent_decode(r->params.p[i].value, r->params.p[i].len, false, value,
					   &vlen) == 0) {
			lua_pushlstring(L, name, nlen);
			lua_pushlstring(L, value, vlen);
			lua_rawset(L, -3);
		}
	}
	lua_remove(L, -2);
}

static void push_query(lua_State *L, struct evhttp_request *ev)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
	const char *query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	char *scratch = push_scratch(L, (query != NULL ? strlen(query) : 0) + 2);
	lua_newtable(L);
	request_query(query, scratch, set_pair, L);
	lua_remove(L, -2);
}

static int push_body(lua_State *L, struct evhttp_request *ev)
{
	struct evbuffer *buf = evhttp_request_get_input_buffer(ev);
	size_t len = evbuffer_get_length(buf);
	unsigned char *data = len ? evbuffer_pullup(buf, -1) : NULL;
	lua_pushlstring(L, data != NULL ? (const char *)data : "", len);
	return 1;
}

/* Computes a field of the request; lazily, as most handlers read only a few. */
static int push_field(lua_State *L, struct luaapi_call *call, const char *key)
{
	struct http_request *r = call->r;
	struct evhttp_request *ev = r->ev;
	if (strcmp(key, "method") == 0) {
		lua_pushstring(L, r->method);
	} else if (strcmp(key, "path") == 0) {
		lua_pushstring(L, r->path);
	} else if (strcmp(key, "remote_addr") == 0) {
		lua_pushstring(L, r->remote);
	} else if (strcmp(key, "id") == 0) {
		lua_pushstring(L, r->id);
	} else if (strcmp(key, "headers") == 0) {
		push_headers(L, ev);
	} else if (strcmp(key, "query") == 0) {
		push_query(L, ev);
	} else if (strcmp(key, "cookies") == 0) {
		lua_newtable(L);
		request_cookies(evhttp_find_header(evhttp_request_get_input_headers(ev), "Cookie"),
				set_pair, L);
	} else if (strcmp(key, "body") == 0) {
		push_body(L, ev);
	} else if (strcmp(key, "params") == 0) {
		push_params(L, r);
	} else if (strcmp(key, "identity") == 0 && call->identity[0] != '\0') {
		lua_pushstring(L, call->identity);
	} else if (strcmp(key, "claims") == 0 && call->claims != NULL) {
		if (json_push(L, call->claims, 16) != 0)
			return 0;
	} else {
		/* identity and claims without a verified token, and any other name: nil. */
		return 0;
	}
	return 1;
}

static int req_json(lua_State *L);

static int req_index(lua_State *L)
{
	struct luaapi_call *call = check_req(L);
	const char *key = luaL_checkstring(L, 2);
	if (strcmp(key, "json") == 0) {
		lua_pushcfunction(L, req_json);
		return 1;
	}
	/* Computed fields are cached in the object's user value. */
	lua_getiuservalue(L, 1, 1);
	if (lua_getfield(L, -1, key) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	if (push_field(L, call, key) == 0)
		return 0;
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, key);
	return 1;
}

/* lua_pcall'd: pushes the JSON value at 1 within depth 2, or nothing when too deep. */
static int push_json(lua_State *L)
{
	const json_t *v = lua_touserdata(L, 1);
	int depth = (int)lua_tointeger(L, 2);
	return json_push(L, v, depth) == 0 ? 1 : 0;
}

static int req_json(lua_State *L)
{
	struct luaapi_call *call = check_req(L);
	lua_getiuservalue(L, 1, 1);
	if (lua_getfield(L, -1, "json") != LUA_TNIL)
		return 1; /* parsed before: the same table again */
	lua_pop(L, 1);
	struct evhttp_request *ev = call->r->ev;
	const char *ct = evhttp_find_header(evhttp_request_get_input_headers(ev), "Content-Type");
	if (!request_is_json(ct))
		return client_error(L, 415,
				    "request body must be JSON (Content-Type: application/json)");
	struct evbuffer *buf = evhttp_request_get_input_buffer(ev);
	size_t len = evbuffer_get_length(buf);
	const char *data = len ? (const char *)evbuffer_pullup(buf, -1) : "";
	json_error_t jerr;
	json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (v == NULL) {
		char msg[128];
		snprintf(msg, sizeof(msg), "request body is not valid JSON (line %d, column %d)",
			 jerr.line, jerr.column);
		return client_error(L, 400, msg);
	}
	if (!json_is_object(v)) {
		json_decref(v);
		return client_error(L, 400, "request body must be a JSON object");
	}
	/* Converted under protection, so that a memory error cannot leak v. */
	lua_pushcfunction(L, push_json);
	lua_pushlightuserdata(L, v);
	lua_pushinteger(L, call->api->cfg->json_depth);
	int rc = lua_pcall(L, 2, 1, 0);
	json_decref(v);
	if (rc != LUA_OK)
		return lua_error(L);
	if (lua_isnil(L, -1))
		return client_error(L, 400, "request body is nested too deeply");
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "json");
	return 1;
}

static int req_tostring(lua_State *L)
{
	struct req_ud *ud = luaL_checkudata(L, 1, req_mt);
	if (ud->call != NULL && ud->call->r != NULL)
		lua_pushfstring(L, "request %s %s", ud->call->r->method, ud->call->r->path);
	else
		lua_pushliteral(L, "request (answered)");
	return 1;
}

static void push_request(lua_State *L, struct luaapi_call *call)
{
	struct req_ud *ud = lua_newuserdatauv(L, sizeof(*ud), 1);
	ud->call = call;
	lua_newtable(L);
	lua_setiuservalue(L, -2, 1);
	luaL_setmetatable(L, req_mt);
}

/* ---- yielding on a job ---- */

struct luaapi_job {
	struct job job;
	struct luaapi_call *call;
	int (*push)(struct luaapi_job *lj, lua_State *co); /* in the coroutine, once resumed */
	void (*release)(struct luaapi_job *lj);
};

static void resume(struct luaapi_call *call, int nargs);
static void finish(struct luaapi_call *call, bool failed);

static void job_done(struct job *job)
{
	struct luaapi_call *call = ((struct luaapi_job *)job)->call;
	if (call->r == NULL) {
		/* The handler ran out of time and was answered: its coroutine is dropped. */
		finish(call, true);
		return;
	}
	resume(call, 0);
}

/* The continuation of a yielding function: pushes the job's results inside the coroutine,
 * where a memory error is the handler's error, not the worker's. */
static int job_continue(lua_State *L, int status, lua_KContext ctx)
{
	struct luaapi_call *call = get_call(L);
	struct luaapi_job *lj = call->job;
	int n = lj->push(lj, L);
	call->job = NULL;
	lj->release(lj);
	return n;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct luaapi_call *call = arg;
	log_error("%s: handler did not finish within server.handler_timeout (%d s)",
		  call->r->route->name, call->api->cfg->handler_timeout);
	http_reply_error(call->r, 503, "request timed out", NULL);
	call->r = NULL; /* the job still owns the call: job_done finishes it */
}

static void arm_deadline(struct luaapi_call *call)
{
	struct luaapi *api = call->api;
	if (call->deadline != NULL || api->base == NULL)
		return;
	uint64_t limit = (uint64_t)api->cfg->handler_timeout * 1000000000u;
	uint64_t spent = http_now_ns() - call->r->start_ns;
	uint64_t left = spent < limit ? limit - spent : 0;
	struct timeval tv = {.tv_sec = (time_t)(left / 1000000000u),
			     .tv_usec = (suseconds_t)(left % 1000000000u / 1000u)};
	call->deadline = evtimer_new(api->base, on_deadline, call);
	if (call->deadline != NULL)
		evtimer_add(call->deadline, &tv);
}

/* Submits lj and yields the calling coroutine until it is done. */
static int await_job(lua_State *L, struct luaapi_job *lj, const char *fname)
{
	struct luaapi_call *call = get_call(L);
	if (call == NULL || call->api->jobs == NULL || !lua_isyieldable(L)) {
		lj->release(lj);
		return luaL_error(
		    L,
		    "%s waits for a job thread: call it from a route handler itself, not "
		    "while scripts or modules load, from a metamethod, or from a function "
		    "that C code calls back (table.sort, string.gsub)",
		    fname);
	}
	/* A job whose results could not be pushed (its push raised, and the handler caught
	 * the error) is still the call's: done with now. */
	if (call->job != NULL)
		call->job->release(call->job);
	lj->call = call;
	lj->job.done = job_done;
	call->job = lj;
	arm_deadline(call);
	jobs_submit(call->api->jobs, &lj->job);
	return lua_yieldk(L, 0, 0, job_continue);
}

/*
 * A zeroed job of size bytes for a function (fname) that calls the storage, whose functions
 * go into *st; raises when no storage is configured, or when memory runs out.
 */
static void *new_storage_job(lua_State *L, size_t size, struct storage *st, const char *fname)
{
	if (!plugins_storage(get_api(L)->cfg->plugins, st))
		luaL_error(L, "%s needs storage: none is configured (storage.backend)", fname);
	void *job = calloc(1, size);
	if (job == NULL)
		luaL_error(L, "out of memory");
	return job;
}

/* sesame.readfile(path): reads a whole file on a job thread. */
struct readfile_job {
	struct luaapi_job lj;
	char *path;
	char *data;
	size_t len;
	int err;
};

static void readfile_run(struct job *job)
{
	struct readfile_job *rj = (struct readfile_job *)job;
	int fd = open(rj->path, O_RDONLY | O_CLOEXEC);
	size_t cap = 0;
	if (fd < 0) {
		rj->err = errno;
		return;
	}
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
		lua_pushstring(co, strerror(rj->err));
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
	struct luaapi *api = get_api(L);
	const char *path = luaL_checkstring(L, 1);
	struct readfile_job *rj = calloc(1, sizeof(*rj));
	if (rj == NULL)
		return luaL_error(L, "out of memory");
	size_t n = strlen(api->cfg->dir) + strlen(path) + 2;
	rj->path = malloc(n);
	if (rj->path == NULL) {
		free(rj);
		return luaL_error(L, "out of memory");
	}
	snprintf(rj->path, n, "%s%s%s", path[0] == '/' ? "" : api->cfg->dir,
		 path[0] == '/' ? "" : "/", path);
	rj->lj.job.run = readfile_run;
	rj->lj.push = readfile_push;
	rj->lj.release = readfile_release;
	return await_job(L, &rj->lj, "sesame.readfile");
}

/* sesame.hash(password) and sesame.verify(password, stored): on a job thread each. */
struct hash_job {
	struct luaapi_job lj;
	const struct hasher *hasher;
	const struct hasher *scheme; /* verify: the scheme new hashes use */
	char *password;
	size_t len;
	char *stored; /* verify */
	char out[512];
	int rc;
	bool rehash;
	bool dummy; /* verify against the dummy hash: never a match */
};

static void hash_run(struct job *job)
{
	struct hash_job *hj = (struct hash_job *)job;
	const struct sesame_hasher *fn = hj->hasher->fn;
	if (hj->stored == NULL) {
		hj->rc =
		    fn->hash(hj->hasher->state, hj->password, hj->len, hj->out, sizeof(hj->out));
		return;
	}
	hj->rc = fn->verify(hj->hasher->state, hj->password, hj->len, hj->stored);
	if (hj->dummy)
		hj->rc = 0;
	hj->rehash = hj->rc == 1 && (hj->scheme == NULL || hj->hasher->fn != hj->scheme->fn ||
				     fn->needs_rehash(hj->hasher->state, hj->stored));
}

static int hash_push(struct luaapi_job *lj, lua_State *co)
{
	struct hash_job *hj = (struct hash_job *)lj;
	if (hj->stored != NULL) {
		lua_pushboolean(co, hj->rc == 1);
		lua_pushboolean(co, hj->rehash);
		return 2;
	}
	if (hj->rc != 0)
		return luaL_error(co, "password hashing (%s) failed", hj->hasher->name);
	lua_pushstring(co, hj->out);
	return 1;
}

static void hash_release(struct luaapi_job *lj)
{
	struct hash_job *hj = (struct hash_job *)lj;
	if (hj->password != NULL)
		sodium_memzero(hj->password, hj->len);
	free(hj->password);
	free(hj->stored);
	sodium_memzero(hj->out, sizeof(hj->out));
	free(hj);
}

static struct hash_job *new_hash_job(lua_State *L, const struct hasher *h)
{
	size_t len;
	const char *pw = luaL_checklstring(L, 1, &len);
	struct hash_job *hj = calloc(1, sizeof(*hj));
	if (hj == NULL || (hj->password = malloc(len + 1)) == NULL) {
		free(hj);
		luaL_error(L, "out of memory");
		return NULL;
	}
	memcpy(hj->password, pw, len + 1);
	hj->len = len;
	hj->hasher = h;
	hj->lj.job.run = hash_run;
	hj->lj.push = hash_push;
	hj->lj.release = hash_release;
	return hj;
}

static int l_hash(lua_State *L)
{
	const struct hasher *scheme = plugins_scheme(get_api(L)->cfg->plugins);
	if (scheme == NULL)
		return luaL_error(L, "no password hasher is loaded (see plugins and password)");
	return await_job(L, &new_hash_job(L, scheme)->lj, "sesame.hash");
}

static int l_verify(lua_State *L)
{
	const struct plugins *p = get_api(L)->cfg->plugins;
	luaL_checkstring(L, 1);
	/* No stored hash (an unknown user): the work is done against a dummy, then refused. */
	bool dummy = lua_isnoneornil(L, 2) || (lua_isboolean(L, 2) && !lua_toboolean(L, 2));
	const char *stored = dummy ? plugins_dummy_hash(p) : luaL_checkstring(L, 2);
	const struct hasher *h = stored != NULL ? plugins_identify(p, stored) : NULL;
	if (h == NULL && !dummy && plugins_dummy_hash(p) != NULL) {
		/* A stored string no accepted scheme reads (a locked account): same work, refused.
		 */
		dummy = true;
		stored = plugins_dummy_hash(p);
		h = plugins_identify(p, stored);
	}
	if (h == NULL) {
		/* No accepted scheme reads it: it cannot match. */
		lua_pushboolean(L, 0);
		lua_pushboolean(L, 0);
		return 2;
	}
	struct hash_job *hj = new_hash_job(L, h);
	hj->scheme = plugins_scheme(p);
	hj->dummy = dummy;
	if ((hj->stored = strdup(stored)) == NULL) {
		hash_release(&hj->lj);
		return luaL_error(L, "out of memory");
	}
	return await_job(L, &hj->lj, "sesame.verify");
}

/* The identity argument of a jwt function: a string or a number. */
static const char *identity_arg(lua_State *L, int idx)
{
	int t = lua_type(L, idx);
	if (t != LUA_TSTRING && t != LUA_TNUMBER)
		luaL_argerror(L, idx, "the identity is a string or a number");
	return lua_tostring(L, idx);
}

/* The token id (a jti, a family) field name of the table at tbl: 1 to SESAME_TOKEN_ID_MAX
 * bytes, no NUL; NULL when it is anything else. The table keeps the string alive. */
static const char *token_id(lua_State *L, int tbl, const char *name)
{
	size_t len = 0;
	const char *id = NULL;
	if (lua_getfield(L, tbl, name) == LUA_TSTRING)
		id = lua_tolstring(L, -1, &len);
	lua_pop(L, 1);
	return id != NULL && len > 0 && len <= SESAME_TOKEN_ID_MAX && strlen(id) == len ? id : NULL;
}

/* The options of sesame.jwt.access and .refresh: {expires = n|false, fresh = bool, family}. */
static void issue_options(lua_State *L, int idx, struct token_request *tr)
{
	tr->expires = -1;
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	int et = lua_getfield(L, idx, "expires");
	if (et == LUA_TBOOLEAN && !lua_toboolean(L, -1))
		tr->expires = 0;
	else if (et != LUA_TNIL) {
		lua_Integer v = luaL_checkinteger(L, -1);
		luaL_argcheck(L, v >= 1, idx, "expires is a number of seconds or false");
		tr->expires = (long)v;
	}
	tr->fresh = lua_getfield(L, idx, "fresh") != LUA_TNIL && lua_toboolean(L, -1);
	int ft = lua_getfield(L, idx, "family");
	lua_pop(L, 3);
	if (ft != LUA_TNIL && (tr->family = token_id(L, idx, "family")) == NULL)
		luaL_argerror(L, idx, "family is the id sesame.jwt.refresh or .rotate returned");
}

/* Signs tr and pushes the token; raises when it cannot be signed. */
static void push_token(lua_State *L, const struct token_request *tr)
{
	char err[160];
	char *token = tokens_issue(&get_api(L)->cfg->jwt, tr, err, sizeof(err));
	if (token == NULL)
		luaL_error(L, "%s", err);
	lua_pushstring(L, token);
	sodium_memzero(token, strlen(token));
	free(token);
}

/*
 * sesame.jwt.access(identity[, {expires = n|false, fresh = bool, family = id}]): an access
 * token, signed on the loop. family is the refresh family it goes with (as .refresh and
 * .rotate return it): revoking the family revokes the access token too.
 */
static int l_jwt_access(lua_State *L)
{
	const struct token_config *tc = &get_api(L)->cfg->jwt;
	struct token_request tr = {.type = TOKEN_ACCESS, .identity = identity_arg(L, 1)};
	issue_options(L, 2, &tr);
	/* A family's access token lives no longer than jwt.access_expires: revoking the family
	 * revokes its id for as long as that (tokens_family_revoke_until). */
	if (tr.family != NULL && tc->access_expires > 0 &&
	    (tr.expires == 0 || tr.expires > tc->access_expires))
		tr.expires = tc->access_expires;
	push_token(L, &tr);
	return 1;
}

static void add_cookie(lua_State *L, const struct token_config *tc, const char *name,
		       const char *value, long max_age, bool http_only)
{
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	lua_pushfstring(L, "%s=%s; Path=/; SameSite=%s", name, value, tc->cookie_samesite);
	luaL_addvalue(&b);
	if (http_only)
		luaL_addstring(&b, "; HttpOnly");
	if (tc->cookie_secure)
		luaL_addstring(&b, "; Secure");
	if (max_age != 0) { /* -1: expired now, which clears the cookie */
		lua_pushfstring(L, "; Max-Age=%d", max_age < 0 ? 0 : (int)max_age);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/*
 * sesame.jwt.cookies(access_token[, refresh_token]): the Set-Cookie headers that carry the
 * tokens (HttpOnly) and their CSRF values (readable by the page's script), as a headers table
 * for a handler's answer; an empty table when jwt.cookies is off.
 */
static int l_jwt_cookies(lua_State *L)
{
	const struct token_config *tc = &get_api(L)->cfg->jwt;
	const char *access = luaL_optstring(L, 1, NULL), *refresh = luaL_optstring(L, 2, NULL);
	lua_newtable(L);
	if (!tc->cookies)
		return 1;
	lua_newtable(L);
	const char *tokens[2] = {access, refresh};
	const char *names[2][2] = {{TOKENS_ACCESS_COOKIE, TOKENS_ACCESS_CSRF_COOKIE},
				   {TOKENS_REFRESH_COOKIE, TOKENS_REFRESH_CSRF_COOKIE}};
	long ages[2] = {tc->access_expires, tc->refresh_expires};
	for (int i = 0; i < 2; i++) {
		char csrf[64];
		if (tokens[i] == NULL)
			continue;
		if (!tokens_csrf_of(tokens[i], csrf, sizeof(csrf)))
			return luaL_error(
			    L, "sesame.jwt.cookies: not a token sesame issued with cookies on");
		add_cookie(L, tc, names[i][0], tokens[i], ages[i], true);
		add_cookie(L, tc, names[i][1], csrf, ages[i], false);
	}
	lua_setfield(L, -2, "Set-Cookie");
	return 1;
}

/* ---- token state: refresh families and revocation, kept by the storage ---- */

enum token_op { FAMILY_NEW, FAMILY_ROTATE, TOKEN_REVOKE, SUBJECT_REVOKE };

struct token_job {
	struct luaapi_job lj;
	struct storage st;
	enum token_op op;
	long long now_ms, grace_ms;
	long long revoke_until; /* how long a revoked family's id stays revoked */
	char identity[256];
	char family[SESAME_TOKEN_ID_MAX + 1];
	long long family_end;		   /* Unix seconds */
	char jti[SESAME_TOKEN_ID_MAX + 1]; /* rotate: the token spent; revoke: the one revoked */
	long long jti_expires;		   /* revoke */
	bool adopt;			   /* rotate: a token without fam starts a family */
	char next[TOKENS_ID_LEN];	   /* the jti of the refresh token to issue */
	char current[SESAME_TOKEN_ID_MAX + 1]; /* rotate: the jti the storage says to issue */
	long expires;			       /* the refresh token's expires option */
	enum sesame_storage_result rc;
	char err[300];
	/* subject_revoke: the families revoked */
	char (*ids)[SESAME_TOKEN_ID_MAX + 1];
	size_t nids, capids, count;
};

static void collect_id(void *ctx, const char *id)
{
	struct token_job *tj = ctx;
	tj->count++;
	if (tj->nids == tj->capids) {
		size_t cap = tj->capids ? tj->capids * 2 : 8;
		void *grown = realloc(tj->ids, cap * sizeof(*tj->ids));
		if (grown == NULL)
			return; /* not kept here: the next fetch brings it */
		tj->ids = grown;
		tj->capids = cap;
	}
	snprintf(tj->ids[tj->nids++], sizeof(*tj->ids), "%s", id);
}

static void token_run(struct job *job)
{
	struct token_job *tj = (struct token_job *)job;
	const struct sesame_storage *fn = tj->st.fn;
	void *st = tj->st.state;
	tj->err[0] = '\0';
	if (tj->op == SUBJECT_REVOKE) {
		tj->rc = fn->subject_revoke(st, tj->identity, tj->revoke_until, collect_id, tj,
					    tj->err, sizeof(tj->err));
		return;
	}
	if (tj->op == TOKEN_REVOKE) {
		tj->rc = fn->token_revoke(st, tj->jti, tj->jti_expires,
					  tj->family[0] != '\0' ? tj->family : NULL,
					  tj->revoke_until, tj->err, sizeof(tj->err));
		return;
	}
	if (tj->op == FAMILY_NEW || tj->adopt) {
		struct sesame_family f = {.id = tj->family,
					  .subject = tj->identity,
					  .jti = tj->op == FAMILY_NEW ? tj->next : tj->jti,
					  .expires_at = tj->family_end};
		tj->rc = fn->family_create(st, &f, tj->err, sizeof(tj->err));
		/* Adopting, a racing refresh of the same token may have started it already. */
		bool go_on =
		    tj->adopt && (tj->rc == SESAME_STORAGE_OK || tj->rc == SESAME_STORAGE_CONFLICT);
		if (!go_on)
			return;
	}
	tj->rc =
	    fn->family_rotate(st, tj->family, tj->jti, tj->next, tj->grace_ms, tj->revoke_until,
			      tj->current, &tj->family_end, tj->err, sizeof(tj->err));
}

static int token_push(struct luaapi_job *lj, lua_State *co)
{
	struct token_job *tj = (struct token_job *)lj;
	struct luaapi *api = get_api(co);
	switch (tj->rc) {
	case SESAME_STORAGE_UNAVAILABLE:
		log_error("storage unavailable: %s", tj->err);
		return client_error(co, 503, "storage unavailable");
	case SESAME_STORAGE_OK:
		break;
	case SESAME_STORAGE_REUSED:
		log_warn("a spent refresh token of identity %s was presented again: its family is "
			 "revoked",
			 tj->identity);
		revocation_add(api->rv, tj->family, tj->revoke_until);
		/* fall through */
	case SESAME_STORAGE_REVOKED:
	case SESAME_STORAGE_NOT_FOUND:
		lua_pushnil(co);
		lua_pushliteral(co, "token revoked");
		return 2;
	case SESAME_STORAGE_FAILED:
		return luaL_error(co, "storage: %s", tj->err);
	default:
		return luaL_error(co, "storage: unexpected result %d", (int)tj->rc);
	}
	if (tj->op == SUBJECT_REVOKE) {
		/* This worker refuses them at once (the others within revocation_refresh); ids
		 * that could not be kept here for want of memory still reach it by the fetch. */
		for (size_t i = 0; i < tj->nids; i++)
			revocation_add(api->rv, tj->ids[i], tj->revoke_until);
		lua_pushinteger(co, (lua_Integer)tj->count);
		return 1;
	}
	if (tj->op == TOKEN_REVOKE) {
		if (tj->jti[0] != '\0')
			revocation_add(api->rv, tj->jti, tj->jti_expires);
		if (tj->family[0] != '\0')
			revocation_add(api->rv, tj->family, tj->revoke_until);
		lua_pushboolean(co, 1);
		return 1;
	}
	struct token_request tr = {.type = TOKEN_REFRESH,
				   .identity = tj->identity,
				   .expires = tj->expires,
				   .not_after = (long)tj->family_end,
				   .family = tj->family,
				   .jti = tj->op == FAMILY_NEW ? tj->next : tj->current};
	push_token(co, &tr);
	lua_pushstring(co, tj->family);
	return 2;
}

static void token_release(struct luaapi_job *lj)
{
	free(((struct token_job *)lj)->ids);
	free(lj);
}

/* A token job for identity (NULL: the caller sets it from claims); raises on a bad one. */
static struct token_job *new_token_job(lua_State *L, enum token_op op, const char *fname,
				       const char *identity)
{
	struct luaapi *api = get_api(L);
	struct storage st;
	if (identity != NULL && strlen(identity) >= sizeof(((struct token_job *)NULL)->identity))
		luaL_argerror(L, 1, "an identity is shorter than 256 bytes");
	struct token_job *tj = new_storage_job(L, sizeof(*tj), &st, fname);
	tj->st = st;
	tj->op = op;
	if (identity != NULL)
		snprintf(tj->identity, sizeof(tj->identity), "%s", identity);
	tj->now_ms = revocation_now_ms();
	tj->grace_ms = api->cfg->jwt.refresh_grace_ms;
	tj->family_end = tj->now_ms / 1000 + api->cfg->jwt.family_lifetime;
	tj->revoke_until = tokens_family_revoke_until(&api->cfg->jwt, tj->now_ms / 1000);
	tj->expires = -1;
	tj->lj.job.run = token_run;
	tj->lj.push = token_push;
	tj->lj.release = token_release;
	return tj;
}

/*
 * sesame.jwt.refresh(identity[, {expires = n|false}]): a refresh token starting a new family
 * (a log-in), recorded in storage; returns the token and the family's id, for the access
 * token's family option. Without storage, a token of no family, which cannot be rotated.
 */
static int l_jwt_refresh(lua_State *L)
{
	struct token_request tr = {.type = TOKEN_REFRESH, .identity = identity_arg(L, 1)};
	issue_options(L, 2, &tr);
	if (!plugins_storage(get_api(L)->cfg->plugins, &(struct storage){0})) {
		push_token(L, &tr);
		return 1;
	}
	struct token_job *tj = new_token_job(L, FAMILY_NEW, "sesame.jwt.refresh", tr.identity);
	tj->expires = tr.expires;
	tokens_uuid4(tj->family);
	tokens_uuid4(tj->next);
	return await_job(L, &tj->lj, "sesame.jwt.refresh");
}

/* The claims argument: a table with a jti and a sub, as req.claims holds them. */
static void claims_arg(lua_State *L, int idx, struct token_job *tj, const char *fname)
{
	const char *jti = token_id(L, idx, "jti");
	lua_getfield(L, idx, "sub");
	const char *sub = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
			      ? lua_tostring(L, -1)
			      : NULL;
	if (jti == NULL || sub == NULL || strlen(sub) >= sizeof(tj->identity)) {
		free(tj);
		luaL_error(L, "%s takes a verified token's claims (req.claims)", fname);
	}
	snprintf(tj->jti, sizeof(tj->jti), "%s", jti);
	snprintf(tj->identity, sizeof(tj->identity), "%s", sub);
	lua_pop(L, 1);
	lua_getfield(L, idx, "fam");
	if (!lua_isnil(L, -1) && token_id(L, idx, "fam") == NULL) {
		free(tj);
		luaL_error(L, "%s: the claims' fam is not a family id", fname);
	}
	lua_pop(L, 1);
	const char *fam = token_id(L, idx, "fam");
	if (fam != NULL)
		snprintf(tj->family, sizeof(tj->family), "%s", fam);
}

/*
 * sesame.jwt.rotate(claims): spends the refresh token whose claims these are (req.claims on
 * an auth = "refresh" route) and returns its successor and the family's id; or nil and
 * "token revoked" when the family is revoked or ended, or when the token was spent already,
 * which revokes its whole family (but within jwt.refresh_grace of its rotation, racing
 * refreshes of one client both get the successor). A refresh token without fam (issued by
 * flask-jwt-extended) starts a family named after its jti.
 */
static int l_jwt_rotate(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "type");
	const char *type = lua_tostring(L, -1);
	if (type == NULL || strcmp(type, "refresh") != 0)
		return luaL_error(L, "sesame.jwt.rotate takes a refresh token's claims");
	lua_pop(L, 1);
	struct token_job *tj = new_token_job(L, FAMILY_ROTATE, "sesame.jwt.rotate", NULL);
	claims_arg(L, 1, tj, "sesame.jwt.rotate");
	if (tj->family[0] == '\0') {
		snprintf(tj->family, sizeof(tj->family), "%s", tj->jti);
		tj->adopt = true;
	}
	tokens_uuid4(tj->next);
	return await_job(L, &tj->lj, "sesame.jwt.rotate");
}

/*
 * sesame.jwt.revoke(claims): revokes the token (its jti) and, when it belongs to one, its
 * refresh family: every worker of every sesamed on this storage refuses them within
 * jwt.revocation_refresh, this worker at once. Returns true.
 */
static int l_jwt_revoke(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	struct token_job *tj = new_token_job(L, TOKEN_REVOKE, "sesame.jwt.revoke", NULL);
	claims_arg(L, 1, tj, "sesame.jwt.revoke");
	lua_getfield(L, 1, "exp");
	double exp = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
	tj->jti_expires = exp >= 1 && exp < 1e15 ? (long long)ceil(exp) : 0; /* 0: for good */
	lua_pop(L, 1);
	return await_job(L, &tj->lj, "sesame.jwt.revoke");
}

/*
 * sesame.jwt.revoke_all(identity): logs identity out everywhere: revokes every refresh family
 * of it (each log-in's refresh and access tokens) on every worker of every sesamed within
 * jwt.revocation_refresh, this worker at once. Returns how many families were revoked.
 */
static int l_jwt_revoke_all(lua_State *L)
{
	struct token_job *tj =
	    new_token_job(L, SUBJECT_REVOKE, "sesame.jwt.revoke_all", identity_arg(L, 1));
	return await_job(L, &tj->lj, "sesame.jwt.revoke_all");
}

/* sesame.jwt.unset_cookies(): the Set-Cookie headers that clear the token cookies (logout). */
static int l_jwt_unset_cookies(lua_State *L)
{
	const struct token_config *tc = &get_api(L)->cfg->jwt;
	lua_newtable(L);
	if (!tc->cookies)
		return 1;
	lua_newtable(L);
	const char *names[] = {TOKENS_ACCESS_COOKIE, TOKENS_ACCESS_CSRF_COOKIE,
			       TOKENS_REFRESH_COOKIE, TOKENS_REFRESH_CSRF_COOKIE};
	for (int i = 0; i < 4; i++)
		add_cookie(L, tc, names[i], "", -1, i % 2 == 0);
	lua_setfield(L, -2, "Set-Cookie");
	return 1;
}

/* Is the token whose claims these are revoked, by its jti or its family? */
static bool revoked(struct luaapi *api, json_t *claims)
{
	return revocation_has(api->rv, json_string_value(json_object_get(claims, "jti"))) ||
	       revocation_has(api->rv, json_string_value(json_object_get(claims, "fam")));
}

/* Owns decoded claims while they are pushed: a memory error in between leaks nothing. */
static const char claims_box_mt[] = "sesame.claims_box";

static int claims_box_gc(lua_State *L)
{
	json_t **box = lua_touserdata(L, 1);
	json_decref(*box);
	*box = NULL;
	return 0;
}

/*
 * sesame.jwt.decode(token): the claims of an access or refresh token, verified as a route's
 * token is (algorithm, signature, exp and nbf, iss and aud, revocation); or nil and the
 * reason: "invalid token", "token expired" or "token revoked".
 */
static int l_jwt_decode(lua_State *L)
{
	struct luaapi *api = get_api(L);
	size_t len;
	const char *token = luaL_checklstring(L, 1, &len);
	char identity[256];
	json_t **box = lua_newuserdatauv(L, sizeof(json_t *), 0);
	*box = NULL;
	if (luaL_newmetatable(L, claims_box_mt)) {
		lua_pushcfunction(L, claims_box_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	enum token_verdict v =
	    tokens_verify(&api->cfg->jwt, token, len, WANT_ANY, box, identity, sizeof(identity));
	const char *why = v != TOKEN_OK	       ? tokens_verdict_message(v)
			  : revoked(api, *box) ? "token revoked"
					       : NULL;
	if (why != NULL || json_push(L, *box, 16) != 0) {
		lua_pushnil(L);
		lua_pushstring(L, why != NULL ? why : "invalid token");
		return 2;
	}
	return 1;
}

/* sesame.jwt.jwks(): the public keys' JWKS document, {keys = {...}}; keys is empty for HS. */
static int l_jwt_jwks(lua_State *L)
{
	json_t *doc = tokens_jwks(&get_api(L)->cfg->jwt);
	int rc = doc != NULL ? json_push(L, doc, 4) : -1;
	json_decref(doc);
	if (rc != 0)
		return luaL_error(L, "sesame.jwt.jwks: cannot build the document");
	return 1;
}

/*
 * sesame.validate(name, value[, related]): the validator plugin name's verdict, on the loop.
 * Returns the value's normal form, or nil and a message for the client.
 */
static int l_validate(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	struct validator v;
	const char *related[9] = {NULL};
	if (!plugins_validator(get_api(L)->cfg->plugins, name, &v))
		return luaL_error(L, "no validator plugin named '%s' is loaded", name);
	if (lua_type(L, 2) != LUA_TSTRING) {
		lua_pushnil(L);
		lua_pushfstring(L, "%s must be a string", name);
		return 2;
	}
	size_t len;
	const char *value = lua_tolstring(L, 2, &len);
	if (!lua_isnoneornil(L, 3)) {
		luaL_checktype(L, 3, LUA_TTABLE);
		for (int i = 0; i < 8; i++) {
			if (lua_rawgeti(L, 3, i + 1) == LUA_TSTRING)
				related[i] = lua_tostring(L, -1); /* kept alive on the stack */
			else if (!lua_isnil(L, -1))
				return luaL_argerror(L, 3, "a list of strings");
			else
				break;
		}
	}
	size_t outlen = len * 4 + 64;
	char *out = push_scratch(L, outlen), msg[256] = "";
	int rc = v.fn->check(v.state, value, len, related[0] != NULL ? related : NULL, out, outlen,
			     msg, sizeof(msg));
	if (rc < 0)
		return luaL_error(L, "validator %s: its normal form does not fit", name);
	if (rc == 0) {
		lua_pushnil(L);
		lua_pushstring(L, msg[0] != '\0' ? msg : "invalid value");
		return 2;
	}
	lua_pushstring(L, out);
	return 1;
}

/* sesame.users.create{...} and sesame.users.find{...}: storage calls on a job thread. */
enum user_op { USER_CREATE, USER_FIND, USER_SET_PASSWORD };

struct user_job {
	struct luaapi_job lj;
	struct storage st;
	enum user_op op;
	char *field[3]; /* create: email, username, password; find: column, value */
	long long id;
	enum sesame_storage_result rc;
	struct sesame_user found;
	char buf[2048];
	char err[300];
};

static void user_run(struct job *job)
{
	struct user_job *uj = (struct user_job *)job;
	uj->err[0] = '\0';
	if (uj->op == USER_CREATE) {
		struct sesame_user u = {
		    .email = uj->field[0], .username = uj->field[1], .password = uj->field[2]};
		uj->rc =
		    uj->st.fn->user_create(uj->st.state, &u, &uj->id, uj->err, sizeof(uj->err));
	} else if (uj->op == USER_SET_PASSWORD) {
		uj->rc = uj->st.fn->user_set_password(uj->st.state, uj->id, uj->field[0], uj->err,
						      sizeof(uj->err));
	} else {
		uj->rc = uj->st.fn->user_find(uj->st.state, uj->field[0], uj->field[1], &uj->found,
					      uj->buf, sizeof(uj->buf), uj->err, sizeof(uj->err));
	}
}

static int user_push(struct luaapi_job *lj, lua_State *co)
{
	struct user_job *uj = (struct user_job *)lj;
	switch (uj->rc) {
	case SESAME_STORAGE_UNAVAILABLE:
		log_error("storage unavailable: %s", uj->err);
		return client_error(co, 503, "storage unavailable");
	case SESAME_STORAGE_FAILED:
		return luaL_error(co, "storage: %s", uj->err);
	case SESAME_STORAGE_CONFLICT:
		lua_pushnil(co);
		lua_pushliteral(co, "exists");
		return 2;
	case SESAME_STORAGE_NOT_FOUND:
		lua_pushnil(co);
		return 1;
	case SESAME_STORAGE_OK:
		break;
	default:
		return luaL_error(co, "storage: unknown result %d", (int)uj->rc);
	}
	if (uj->op != USER_FIND) {
		lua_pushinteger(co, (lua_Integer)uj->id);
		return 1;
	}
	lua_createtable(co, 0, 4);
	lua_pushinteger(co, (lua_Integer)uj->found.id);
	lua_setfield(co, -2, "id");
	lua_pushstring(co, uj->found.email);
	lua_setfield(co, -2, "email");
	lua_pushstring(co, uj->found.username);
	lua_setfield(co, -2, "username");
	lua_pushstring(co, uj->found.password);
	lua_setfield(co, -2, "password");
	return 1;
}

static void user_release(struct luaapi_job *lj)
{
	struct user_job *uj = (struct user_job *)lj;
	for (int i = 0; i < 3; i++) {
		if (uj->field[i] != NULL)
			sodium_memzero(uj->field[i], strlen(uj->field[i]));
		free(uj->field[i]);
	}
	sodium_memzero(uj->buf, sizeof(uj->buf));
	free(uj);
}

static struct user_job *new_user_job(lua_State *L, enum user_op op)
{
	struct storage st;
	struct user_job *uj = new_storage_job(L, sizeof(*uj), &st, "sesame.users");
	uj->st = st;
	uj->op = op;
	uj->lj.job.run = user_run;
	uj->lj.push = user_push;
	uj->lj.release = user_release;
	return uj;
}

/* The string field name of the table at 1; raises when it is missing or not a string. */
static const char *string_field(lua_State *L, const char *name)
{
	if (lua_getfield(L, 1, name) != LUA_TSTRING)
		luaL_error(L, "sesame.users: '%s' must be a string", name);
	return lua_tostring(L, -1); /* left on the stack, which keeps it alive */
}

static int l_users_create(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *email = string_field(L, "email"), *username = string_field(L, "username"),
		   *password = string_field(L, "password");
	struct user_job *uj = new_user_job(L, USER_CREATE);
	uj->field[0] = strdup(email);
	uj->field[1] = strdup(username);
	uj->field[2] = strdup(password);
	if (uj->field[0] == NULL || uj->field[1] == NULL || uj->field[2] == NULL) {
		user_release(&uj->lj);
		return luaL_error(L, "out of memory");
	}
	return await_job(L, &uj->lj, "sesame.users.create");
}

/* sesame.users.update{id = ID, password = HASH}: the stored hash, after a rehash. */
static int l_users_update(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_pushnil(L);
	while (lua_next(L, 1) != 0) {
		lua_pop(L, 1);
		const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
		if (strcmp(key, "id") != 0 && strcmp(key, "password") != 0)
			return luaL_error(L, "sesame.users.update: '%s' cannot be updated", key);
	}
	lua_getfield(L, 1, "id");
	int isint = 0;
	lua_Integer id = lua_tointegerx(L, -1, &isint);
	if (!isint)
		return luaL_error(L, "sesame.users.update: 'id' must be a number");
	const char *password = string_field(L, "password");
	struct user_job *uj = new_user_job(L, USER_SET_PASSWORD);
	uj->id = (long long)id;
	if ((uj->field[0] = strdup(password)) == NULL) {
		user_release(&uj->lj);
		return luaL_error(L, "out of memory");
	}
	return await_job(L, &uj->lj, "sesame.users.update");
}

/* A user id as sesame writes it in sub: a positive decimal number, no sign, no zero first. */
static bool canonical_id(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n < 19 && s[0] >= '1' && s[0] <= '9' && strspn(s, "0123456789") == n;
}

static int l_users_find(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *by = lua_getfield(L, 1, "email") != LUA_TNIL ? "email" : "id";
	lua_pop(L, 1);
	int t = lua_getfield(L, 1, by);
	if (t != LUA_TSTRING && t != LUA_TNUMBER)
		return luaL_error(L, "sesame.users.find takes { email = ... } or { id = ... }");
	const char *value = lua_tostring(L, -1);
	if (strcmp(by, "id") == 0 && !canonical_id(value)) {
		/* "01", " 1", "1e0", "1abc": not an id sesame issued, so no one's. */
		lua_pushnil(L);
		return 1;
	}
	struct user_job *uj = new_user_job(L, USER_FIND);
	uj->field[0] = strdup(by);
	uj->field[1] = strdup(value);
	if (uj->field[0] == NULL || uj->field[1] == NULL) {
		user_release(&uj->lj);
		return luaL_error(L, "out of memory");
	}
	return await_job(L, &uj->lj, "sesame.users.find");
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
	lua_sethook(co, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
	return co;
}

/*
 * A coroutine that ended in an error is closed and dropped, not reused: an error raised from
 * the count hook leaves the thread with hooks disabled, and a reset does not restore them.
 */
static void give_coroutine(struct luaapi *api, lua_State *co, int ref, bool failed)
{
	*(struct luaapi_call **)lua_getextraspace(co) = NULL;
	if (failed) {
		lua_resetthread(co);
		luaL_unref(api->L, LUA_REGISTRYINDEX, ref);
		return;
	}
	lua_settop(co, 0);
	if (api->npool < POOL_MAX) {
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
			const char *value =
			    lua_type(co, -1) == LUA_TSTRING || lua_type(co, -1) == LUA_TNUMBER
				? lua_tostring(co, -1)
				: NULL;
			if (value == NULL || framing_header(name) ||
			    http_add_header(r, name, value) != 0)
				name = NULL;
			lua_pop(co, 1);
		}
		if (name == NULL) {
			snprintf(err, errlen, "header %s cannot be sent",
				 lua_type(co, -2) == LUA_TSTRING ? lua_tostring(co, -2)
								 : "(not a name)");
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
	char err[200];
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
	luaL_getmetatable(co, client_error_mt);
	bool yes = lua_rawequal(co, -1, -2);
	lua_pop(co, 2);
	return yes;
}

/* The handler raised an error: a client error answers 4xx, anything else 500. */
static void answer_error(struct luaapi_call *call)
{
	lua_State *co = call->co;
	struct http_request *r = call->r;
	if (is_client_error(co)) {
		lua_getfield(co, -1, "status");
		lua_getfield(co, -2, "error");
		http_reply_error(r, (int)lua_tointeger(co, -2), lua_tostring(co, -1), NULL);
		return;
	}
	const char *msg = lua_tostring(co, -1);
	luaL_traceback(call->api->L, co, msg != NULL ? msg : "(error object is not a string)", 0);
	log_error("%s: handler failed: %s", r->route->name, lua_tostring(call->api->L, -1));
	lua_pop(call->api->L, 1);
	http_reply_error(r, 500, "internal server error", msg);
}

static void finish(struct luaapi_call *call, bool failed)
{
	struct luaapi *api = call->api;
	/* The scoreboard names the route being served while any handler is in flight. */
	if (--api->active == 0)
		scoreboard_leave(api->slot);
	lua_rawgeti(api->L, LUA_REGISTRYINDEX, call->req_ref);
	struct req_ud *ud = lua_touserdata(api->L, -1);
	ud->call = NULL; /* a handler that kept req finds it answered, not freed */
	lua_pop(api->L, 1);
	luaL_unref(api->L, LUA_REGISTRYINDEX, call->req_ref);
	if (call->job != NULL)
		call->job->release(call->job);
	if (call->deadline != NULL)
		event_free(call->deadline);
	json_decref(call->claims);
	give_coroutine(api, call->co, call->co_ref, failed);
	free(call);
}

static void resume(struct luaapi_call *call, int nargs)
{
	struct luaapi *api = call->api;
	int nres = 0;
	scoreboard_enter(api->slot, call->r->route->name);
	api->enforce = true;
	int rc = lua_resume(call->co, api->L, nargs, &nres);
	api->enforce = false;

	if (rc == LUA_YIELD && call->job != NULL)
		return;
	if (rc == LUA_YIELD) {
		log_error("%s: handler yielded outside sesame", call->r->route->name);
		http_reply_error(call->r, 500, "internal server error", "handler yielded");
		call->r = NULL;
		finish(call, true);
		return;
	}
	if (rc == LUA_OK)
		answer(call, nres);
	else
		answer_error(call);
	call->r = NULL;
	finish(call, rc != LUA_OK);
}

/* The token of "Authorization: Bearer TOKEN", or NULL. */
static const char *bearer(struct http_request *r, size_t *len)
{
	const char *h =
	    evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	*len = strcspn(h, " ");
	return *len > 0 && h[*len] == '\0' ? h : NULL;
}

struct cookie_search {
	const char *name;
	const char *value;
	size_t len;
};

static void match_cookie(void *arg, const char *name, size_t nlen, const char *value, size_t vlen)
{
	struct cookie_search *cs = arg;
	if (cs->value == NULL && nlen == strlen(cs->name) && memcmp(name, cs->name, nlen) == 0) {
		cs->value = value;
		cs->len = vlen;
	}
}

/* The token of the cookie name, or NULL. */
static const char *cookie_token(struct http_request *r, const char *name, size_t *len)
{
	struct cookie_search cs = {.name = name};
	request_cookies(evhttp_find_header(evhttp_request_get_input_headers(r->ev), "Cookie"),
			match_cookie, &cs);
	*len = cs.len;
	return cs.value != NULL && cs.len > 0 ? cs.value : NULL;
}

/* A token from a cookie on a state-changing request needs the CSRF header to repeat its claim. */
static bool csrf_ok(struct http_request *r, json_t *claims)
{
	const char *m = r->method;
	if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || strcmp(m, "OPTIONS") == 0)
		return true;
	const char *want = json_string_value(json_object_get(claims, "csrf"));
	const char *got =
	    evhttp_find_header(evhttp_request_get_input_headers(r->ev), TOKENS_CSRF_HEADER);
	return want != NULL && got != NULL && strlen(want) == strlen(got) &&
	       sodium_memcmp(want, got, strlen(want)) == 0;
}

/*
 * Checks the token a route asks for; on failure answers 401 and returns false. A route with
 * auth = "optional" runs without identity when no token is sent, but not with a bad one.
 * With jwt.cookies, a request without an Authorization header may carry the token in a
 * cookie instead, and then, unless it only reads, the CSRF header.
 */
static bool authenticate(struct luaapi *api, struct http_request *r, struct luaapi_call *call)
{
	int mode = r->route->options;
	size_t len = 0;
	const char *token = bearer(r, &len);
	bool from_cookie = false;
	if (token == NULL && api->cfg->jwt.cookies) {
		token = cookie_token(
		    r, mode == AUTH_REFRESH ? TOKENS_REFRESH_COOKIE : TOKENS_ACCESS_COOKIE, &len);
		from_cookie = token != NULL;
	}
	if (token == NULL) {
		if (mode == AUTH_OPTIONAL)
			return true;
		http_add_header(r, "WWW-Authenticate", "Bearer");
		http_reply_error(r, 401, "missing token", NULL);
		return false;
	}
	enum token_want want = mode == AUTH_REFRESH ? WANT_REFRESH
			       : mode == AUTH_FRESH ? WANT_FRESH
						    : WANT_ACCESS;
	enum token_verdict v = tokens_verify(&api->cfg->jwt, token, len, want, &call->claims,
					     call->identity, sizeof(call->identity));
	if (v == TOKEN_OK && from_cookie && !csrf_ok(r, call->claims)) {
		http_reply_error(r, 401, "missing or wrong CSRF token", NULL);
		return false;
	}
	if (v == TOKEN_OK && revoked(api, call->claims)) {
		http_add_header(r, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
		http_reply_error(r, 401, "token revoked", NULL);
		return false;
	}
	if (v == TOKEN_OK)
		return true;
	http_add_header(r, "WWW-Authenticate",
			v == TOKEN_NOT_FRESH ? "Bearer error=\"insufficient_scope\""
					     : "Bearer error=\"invalid_token\"");
	http_reply_error(r, 401, tokens_verdict_message(v), NULL);
	return false;
}

void luaapi_dispatch(void *arg, struct http_request *r)
{
	struct luaapi *api = arg;
	struct luaapi_call *call = calloc(1, sizeof(*call));
	if (call == NULL) {
		http_reply_error(r, 500, "internal server error", "out of memory");
		return;
	}
	if (r->route->options != AUTH_NONE && !authenticate(api, r, call)) {
		json_decref(call->claims);
		free(call);
		return;
	}
	call->api = api;
	call->r = r;
	api->active++;
	call->co = take_coroutine(api, &call->co_ref);
	*(struct luaapi_call **)lua_getextraspace(call->co) = call;
	lua_rawgeti(call->co, LUA_REGISTRYINDEX, r->route->handler);
	push_request(call->co, call);
	lua_pushvalue(call->co, -1);
	call->req_ref = luaL_ref(call->co, LUA_REGISTRYINDEX);
	resume(call, 1);
}

/* ---- the sesame module ---- */

static int route_options(lua_State *L, int idx, const char *method, const char *path)
{
	int auth = AUTH_NONE;
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), "auth") != 0)
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
	lua_pop(L, 1);
	return auth;
}

static int l_route(lua_State *L)
{
	struct luaapi *api = get_api(L);
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
	char err[200];
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

static int open_sesame(lua_State *L)
{
	static const luaL_Reg funcs[] = {
	    {"route", l_route},	  {"readfile", l_readfile}, {"array", l_array}, {"hash", l_hash},
	    {"verify", l_verify}, {"validate", l_validate}, {NULL, NULL}};
	static const luaL_Reg logf[] = {
	    {"info", l_log_info}, {"warn", l_log_warn}, {"error", l_log_error}, {NULL, NULL}};
	static const luaL_Reg usersf[] = {{"create", l_users_create},
					  {"find", l_users_find},
					  {"update", l_users_update},
					  {NULL, NULL}};
	static const luaL_Reg jwtf[] = {{"access", l_jwt_access},
					{"refresh", l_jwt_refresh},
					{"rotate", l_jwt_rotate},
					{"revoke", l_jwt_revoke},
					{"revoke_all", l_jwt_revoke_all},
					{"decode", l_jwt_decode},
					{"cookies", l_jwt_cookies},
					{"unset_cookies", l_jwt_unset_cookies},
					{"jwks", l_jwt_jwks},
					{NULL, NULL}};
	luaL_newlib(L, funcs);
	luaL_newlib(L, logf);
	lua_setfield(L, -2, "log");
	luaL_newlib(L, jwtf);
	lua_setfield(L, -2, "jwt");
	luaL_newlib(L, usersf);
	lua_setfield(L, -2, "users");
	json_push_null(L);
	lua_setfield(L, -2, "null");
	lua_pushliteral(L, PACKAGE_VERSION);
	lua_setfield(L, -2, "version");
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
	luaL_newmetatable(L, req_mt);
	lua_pushcfunction(L, req_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, req_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pop(L, 1);
	luaL_newmetatable(L, client_error_mt);
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
	lua_sethook(L, count_hook, LUA_MASKCOUNT, HOOK_EVERY);
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
	lua_rawsetp(api->L, LUA_REGISTRYINDEX, &api_key);
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
