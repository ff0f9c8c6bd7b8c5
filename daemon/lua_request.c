/*
 * lua_request.c: the request object a handler gets, req.
 *
 * A userdata that points to its call, cleared when the call ends, so that a handler that kept
 * req finds it answered, not freed. Its fields (method, path, headers, query, cookies, body,
 * params, identity, claims...) are computed when first read and cached in its user value, as
 * most handlers read only a few; req:json() parses the body once, and refuses bad input by
 * raising a client error: a table with status and error, which lua_run.c answers as such
 * instead of as a 500. It also keeps the small helpers the API's functions share to read their
 * arguments (luaapi_string_field) and to decode (luaapi_push_scratch).
 */
#include "autoconfig.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <string.h>

#include "http.h"
#include "json.h"
#include "lua_private.h"
#include "request.h"

/* The request object seen by Lua: a pointer to its call, cleared when the call ends. */
struct req_ud {
	struct luaapi_call *call;
};

static const char req_mt[] = "sesame.request";

const char luaapi_client_error_mt[] = "sesame.client_error";

/* Raises an error that answers the client with status and message instead of a 500. */
int luaapi_client_error(lua_State *L, int status, const char *message)
{
	lua_createtable(L, 0, 2);
	lua_pushinteger(L, status);
	lua_setfield(L, -2, "status");
	lua_pushstring(L, message);
	lua_setfield(L, -2, "error");
	luaL_setmetatable(L, luaapi_client_error_mt);
	return lua_error(L);
}

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

char *luaapi_push_scratch(lua_State *L, size_t size)
{
	return lua_newuserdatauv(L, size, 0);
}

const char *luaapi_string_field(lua_State *L, int idx, const char *name, bool required, size_t *len,
				const char *fname)
{
	int t = lua_getfield(L, idx, name);
	if (t == LUA_TNIL && !required)
		return NULL;
	if (t != LUA_TSTRING)
		luaL_error(L, "%s: %s must be a string", fname, name);
	return lua_tolstring(L, -1, len);
}

static void push_params(lua_State *L, const struct http_request *r)
{
	char *value = luaapi_push_scratch(L, strlen(r->path) + 1);
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
	char *scratch = luaapi_push_scratch(L, (query != NULL ? strlen(query) : 0) + 2);
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
	} else if (strcmp(key, "peer_addr") == 0) {
		lua_pushstring(L, r->peer);
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
	} else if (strcmp(key, "claims") == 0 && claims_present(&call->claims)) {
		json_t *claims = claims_json(&call->claims);
		if (claims == NULL || json_push(L, claims, 16) != 0)
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
		return luaapi_client_error(
		    L, 415, "request body must be JSON (Content-Type: application/json)");
	struct evbuffer *buf = evhttp_request_get_input_buffer(ev);
	size_t len = evbuffer_get_length(buf);
	const char *data = len ? (const char *)evbuffer_pullup(buf, -1) : "";
	json_error_t jerr;
	json_t *v = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (v == NULL) {
		char msg[128];
		snprintf(msg, sizeof(msg), "request body is not valid JSON (line %d, column %d)",
			 jerr.line, jerr.column);
		return luaapi_client_error(L, 400, msg);
	}
	if (!json_is_object(v)) {
		json_decref(v);
		return luaapi_client_error(L, 400, "request body must be a JSON object");
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
		return luaapi_client_error(L, 400, "request body is nested too deeply");
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

void luaapi_request_push(lua_State *L, struct luaapi_call *call)
{
	struct req_ud *ud = lua_newuserdatauv(L, sizeof(*ud), 1);
	ud->call = call;
	lua_newtable(L);
	lua_setiuservalue(L, -2, 1);
	luaL_setmetatable(L, req_mt);
}

void luaapi_request_init(lua_State *L)
{
	luaL_newmetatable(L, req_mt);
	lua_pushcfunction(L, req_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, req_tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushboolean(L, 0); /* not the scripts' to change */
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
}

/* Ends the request object of ref, which the call kept: reads of it say it was answered. */
void luaapi_request_detach(lua_State *L, int ref)
{
	lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
	struct req_ud *ud = lua_touserdata(L, -1);
	ud->call = NULL;
	lua_pop(L, 1);
	luaL_unref(L, LUA_REGISTRYINDEX, ref);
}
