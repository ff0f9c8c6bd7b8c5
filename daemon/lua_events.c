/*
 * lua_events.c: sesame.emit(name, fields) and sesame.on(name, fn), the Lua side of events.c.
 *
 * sesame.on records a handler while the scripts load, in a registry table by event name ("*"
 * for every event). An event, emitted by a script or by sesame itself (a reused refresh
 * token, a rate-limit refusal), goes to events.c (audit line, row, metric), then each of its
 * handlers runs as a background task (luaapi_spawn) with its own copy of the event table.
 * The handlers of a request's event are held on its call (a registry table of {fn, event,
 * task name}) and spawned only once its client is done with (lua_run.c: answered, timed out,
 * or its client gone, even while its job still runs) and again as the call finishes (for the
 * events its to-be-closed variables emit), so that they never compete with the request they
 * came from;
 * an event of a task, or of C code serving no call, starts its handlers at once (they run at
 * the loop's next turn). A handler runs wrapped in
 * run_handler, which marks its call (in_handler), and every task spawned from it (sesame.defer,
 * and theirs) inherits the mark: an event emitted from any of them is logged and stored but
 * runs no handlers, so that a handler cannot feed itself for ever.
 * Fields are flat (strings, numbers, booleans) and never a secret: a field whose name, split
 * into words on '_', ends in the word password, token or secret, or in api then key (in any
 * case: new_password, reset_token, API_KEY), is refused, naming the field; token_count and
 * password_policy, which name a count and a policy, pass.
 */
#include "autoconfig.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "events.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "lua_private.h"

/* Registry key: the handlers by event name. */
static const char handlers_key;

/* Names the event table sets itself: no field has them. */
static const char *const reserved[] = {"event", "at", "request_id", "remote_addr", NULL};
static bool listed(const char *const *names, const char *name)
{
	for (const char *const *n = names; *n != NULL; n++) {
		if (strcasecmp(*n, name) == 0)
			return true;
	}
	return false;
}

/*
 * Secret field names. A name is split into words at every character that is not a letter or a
 * digit, where a lower-case letter meets an upper-case one, and where letters meet digits
 * (newPassword, reset_token, client-secret, token1, API_KEY). It is a secret's when one of its
 * words is in secret_words, or a word of key_owners comes right before "key" (api_key,
 * privateKey) -- unless its last word says which property of the secret it is: a count, a
 * policy (token_count, password_policy, secret_age).
 */
static const char *const secret_words[] = {"password", "passwd", "passphrase", "secret",
					   "token",    "cookie", NULL};
static const char *const key_owners[] = {"api", "private", "secret", "access", "signing", NULL};
static const char *const properties[] = {
    "count",   "policy", "length", "type",   "kind",	"name",	   "id",    "ids",
    "expires", "expiry", "age",	   "status", "changed", "expired", "valid", NULL};

struct name_word {
	const char *at;
	size_t len;
};

static bool word_in(struct name_word w, const char *const *list)
{
	for (const char *const *n = list; *n != NULL; n++) {
		if (strlen(*n) == w.len && strncasecmp(w.at, *n, w.len) == 0)
			return true;
	}
	return false;
}

/* The next word of a name from *p on (len 0 at its end), *p moved past it. */
static struct name_word next_word(const char **p)
{
	const char *s = *p;
	while (*s != '\0' && !isalnum((unsigned char)*s))
		s++;
	const char *e = s;
	while (*e != '\0' && isalnum((unsigned char)*e)) {
		unsigned char c = (unsigned char)e[0], d = (unsigned char)e[1];
		e++;
		if (d == '\0' || !isalnum(d) || (islower(c) && isupper(d)) ||
		    (isdigit(c) != 0) != (isdigit(d) != 0))
			break;
	}
	*p = e;
	return (struct name_word){s, (size_t)(e - s)};
}

/* The secret word of name (see secret_words), or NULL for a name that is none. */
static const char *secret_in(const char *name)
{
	const char *found = NULL, *p = name;
	struct name_word prev = {NULL, 0}, last = {NULL, 0};
	for (struct name_word w = next_word(&p); w.len > 0; w = next_word(&p)) {
		if (word_in(w, secret_words))
			found = "a password, token or secret";
		else if (prev.len > 0 && word_in(prev, key_owners) && w.len == 3 &&
			 strncasecmp(w.at, "key", 3) == 0)
			found = "a key";
		prev = last = w;
	}
	return found != NULL && !word_in(last, properties) ? found : NULL;
}

/* Pushes the handlers table, made on first use. */
static void push_handlers(lua_State *L)
{
	if (lua_rawgetp(L, LUA_REGISTRYINDEX, &handlers_key) == LUA_TTABLE)
		return;
	lua_pop(L, 1);
	lua_newtable(L);
	lua_pushvalue(L, -1);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &handlers_key);
}

/* sesame.on(name, fn): fn(event) runs for each event of that name ("*": every event). */
static int l_on(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	luaL_checktype(L, 2, LUA_TFUNCTION);
	if (!luaapi_get(L)->loading)
		return luaL_error(L,
				  "sesame.on is called while the scripts load, not from a handler");
	if (strcmp(name, "*") != 0 && !events_name_ok(name))
		return luaL_argerror(L, 1, "an event name is 1 to 32 of [a-z_], or \"*\"");
	push_handlers(L);
	if (lua_getfield(L, -1, name) != LUA_TTABLE) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lua_setfield(L, -3, name);
	}
	lua_pushvalue(L, 2);
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
	return 0;
}

static bool running_handler(lua_State *L)
{
	struct luaapi_call *call = luaapi_current(L);
	return call != NULL && call->in_handler;
}

static int handler_traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);
	luaL_traceback(L, L, msg != NULL ? msg : "(error object is not a string)", 1);
	return 1;
}

/* After the handler: its error (with the handler's own traceback) raised on. */
static int handler_finish(lua_State *L, int status, lua_KContext ctx)
{
	if (status != LUA_OK && status != LUA_YIELD) {
		/* The pcall's recovery turned hooks on again: the handler's variables closed
		 * there, so none are left unclosed (lua_run.c's close_pending). */
		luaapi_current(L)->hook_raised = false;
		return lua_error(L);
	}
	return 0;
}

/* The background task of a handler: run_handler(fn, event). */
static int run_handler(lua_State *L)
{
	luaapi_current(L)->in_handler = true; /* a task: it has a call, which ends with it */
	lua_pushcfunction(L, handler_traceback);
	lua_insert(L, 1);
	int status = lua_pcallk(L, 1, 0, 1, 0, handler_finish);
	return handler_finish(L, status, 0);
}

/* Pops a handler and its event (fn, ev on top) and spawns run_handler(fn, ev) as task. */
static void spawn_one(lua_State *L, const char *task)
{
	lua_pushcfunction(L, run_handler);
	lua_insert(L, -3);
	luaapi_spawn(L, 2, task);
}

/* The table of handlers held on call, made on first use, pushed. */
static void push_held(lua_State *L, struct luaapi_call *call)
{
	if (call->held_ref > 0) {
		lua_rawgeti(L, LUA_REGISTRYINDEX, call->held_ref);
		return;
	}
	lua_newtable(L);
	lua_pushvalue(L, -1);
	call->held_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Pops a handler and its event and holds them on call, with the task's name: {fn, ev, task}. */
static void hold(lua_State *L, struct luaapi_call *call, const char *task)
{
	lua_createtable(L, 3, 0);
	lua_insert(L, -3);
	lua_rawseti(L, -3, 2);
	lua_rawseti(L, -2, 1);
	lua_pushstring(L, task);
	lua_rawseti(L, -2, 3);
	push_held(L, call);
	lua_insert(L, -2);
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
	lua_pop(L, 1);
}

/*
 * For each handler of list (a field of the handlers table on top), if any: a task, or, when
 * held is a request's call, an entry held on it until it finishes.
 */
static void spawn_handlers(lua_State *L, const char *list, const json_t *ev, const char *task,
			   struct luaapi_call *held)
{
	if (lua_getfield(L, -1, list) != LUA_TTABLE) {
		lua_pop(L, 1);
		return;
	}
	lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		if (json_push(L, ev, 4) != 0) {
			lua_pop(L, 1);
			continue;
		}
		if (held != NULL)
			hold(L, held, task);
		else
			spawn_one(L, task);
	}
	lua_pop(L, 1);
}

/* On the main state, protected: a task for each entry of the held table (argument 1). */
static int spawn_held(lua_State *L)
{
	char task[EVENTS_NAME_MAX + 8];
	lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
	for (lua_Integer i = 1; i <= n; i++) {
		lua_rawgeti(L, 1, i);
		lua_rawgeti(L, -1, 3);
		snprintf(task, sizeof(task), "%s", lua_tostring(L, -1));
		lua_pop(L, 1);
		lua_rawgeti(L, -1, 1);
		lua_rawgeti(L, -2, 2);
		spawn_one(L, task);
		lua_pop(L, 1);
	}
	return 0;
}

void luaapi_events_release(struct luaapi_call *call)
{
	lua_State *L = call->api->L;
	if (call->held_ref <= 0)
		return;
	if (lua_checkstack(L, 2)) {
		lua_pushcfunction(L, spawn_held);
		lua_rawgeti(L, LUA_REGISTRYINDEX, call->held_ref);
		if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
			log_error("%s: the sesame.on handlers of its events cannot start: %s",
				  call->name, lua_tostring(L, -1));
			lua_pop(L, 1);
		}
	}
	luaL_unref(L, LUA_REGISTRYINDEX, call->held_ref);
	call->held_ref = 0;
}

json_t *luaapi_event_new(lua_State *L, const char *name)
{
	struct luaapi_call *call = luaapi_current(L);
	json_t *ev = events_new(name);
	if (ev == NULL || call == NULL || call->r == NULL)
		return ev;
	json_object_set_new(ev, "request_id", json_string(call->r->id));
	json_object_set_new(ev, "remote_addr", json_string(call->r->remote));
	return ev;
}

void luaapi_event_user(json_t *ev, const char *identity)
{
	char *end = NULL;
	long long id = strtoll(identity, &end, 10);
	bool number = identity[0] >= '1' && identity[0] <= '9' && *end == '\0';
	json_object_set_new(ev, "user", number ? json_integer(id) : json_string(identity));
}

void luaapi_event_emit(lua_State *L, json_t *ev)
{
	const char *name = json_string_value(json_object_get(ev, "event"));
	char task[EVENTS_NAME_MAX + 8];
	events_emit(ev);
	if (luaapi_get(L)->base != NULL && lua_checkstack(L, 8) && !running_handler(L)) {
		struct luaapi_call *call = luaapi_current(L);
		struct luaapi_call *held = call != NULL && !call->task ? call : NULL;
		snprintf(task, sizeof(task), "on %s", name);
		push_handlers(L);
		spawn_handlers(L, name, ev, task, held);
		spawn_handlers(L, "*", ev, task, held);
		lua_pop(L, 1);
	}
	json_decref(ev);
}

/* Checks the fields table at idx: flat, no secret, no name the event sets; raises if not. */
static size_t check_fields(lua_State *L, int idx)
{
	size_t n = 0;
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L, "sesame.emit: fields are named: found a %s key",
				   luaL_typename(L, -2));
		const char *key = lua_tostring(L, -2);
		int t = lua_type(L, -1);
		if (secret_in(key) != NULL)
			luaL_error(L,
				   "sesame.emit: field %s: an event never carries a secret (the "
				   "name says it holds %s)",
				   key, secret_in(key));
		if (listed(reserved, key))
			luaL_error(L, "sesame.emit: field %s is set by sesame", key);
		if (t != LUA_TSTRING && t != LUA_TNUMBER && t != LUA_TBOOLEAN)
			luaL_error(L,
				   "sesame.emit: field %s is a %s: fields are strings, numbers "
				   "or booleans",
				   key, luaL_typename(L, -1));
		if (strcmp(key, "user") == 0 && t != LUA_TSTRING && !lua_isinteger(L, -1))
			luaL_error(L, "sesame.emit: field user is the user's id");
		lua_pop(L, 1);
		n++;
	}
	return n;
}

/* sesame.emit(name[, fields]): records an auth event and runs its handlers. */
static int l_emit(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	char err[LOG_ERR_MAX] = "out of memory";
	if (!events_name_ok(name))
		return luaL_argerror(L, 1, "an event name is 1 to 32 of [a-z_]");
	if (luaapi_get(L)->loading)
		return luaL_error(L, "sesame.emit is for handlers, not while the scripts load");
	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TTABLE);
	size_t n = lua_isnoneornil(L, 2) ? 0 : check_fields(L, 2);
	json_t *fields = n > 0 ? json_from_lua(L, 2, 1, err, sizeof(err)) : NULL;
	json_t *ev = n == 0 || fields != NULL ? luaapi_event_new(L, name) : NULL;
	bool made = ev != NULL && (fields == NULL || json_object_update(ev, fields) == 0);
	json_decref(fields);
	if (made && json_dumpb(ev, NULL, 0, JSON_COMPACT | JSON_ENSURE_ASCII) > EVENTS_LINE_MAX)
		snprintf(err, sizeof(err), "the event is larger than %d bytes", EVENTS_LINE_MAX);
	else if (made)
		err[0] = '\0';
	if (err[0] != '\0') {
		json_decref(ev);
		return luaL_error(L, "sesame.emit: %s", err);
	}
	luaapi_event_emit(L, ev);
	return 0;
}

void luaapi_events_inject(lua_State *L)
{
	lua_pushcfunction(L, l_emit);
	lua_setfield(L, -2, "emit");
	lua_pushcfunction(L, l_on);
	lua_setfield(L, -2, "on");
}
