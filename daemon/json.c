/*
 * json.c: JSON <-> Lua conversion on top of jansson.
 *
 * JSON null becomes sesame.null (a light userdata) so that it survives inside arrays; JSON
 * arrays get the metatable sesame.array so that an empty one is still an array when encoded
 * back. A Lua table is encoded as an array when it carries that metatable or its keys are
 * exactly 1..n, as an object when its keys are all strings, and refused otherwise. Depth is
 * bounded both ways, so that no input reaches the C stack's limit.
 */
#include "autoconfig.h"

#include "json.h"

#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>

static const char null_sentinel;
static const char array_key;

void json_lua_init(lua_State *L)
{
	lua_newtable(L);
	lua_pushliteral(L, "array");
	lua_setfield(L, -2, "__name");
	lua_pushboolean(L, 0); /* not the scripts' to change (a __gc would be a finalizer) */
	lua_setfield(L, -2, "__metatable");
	lua_rawsetp(L, LUA_REGISTRYINDEX, &array_key);
}

void json_push_null(lua_State *L)
{
	lua_pushlightuserdata(L, (void *)&null_sentinel);
}

void json_mark_array(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
	lua_setmetatable(L, idx);
}

int json_push(lua_State *L, const json_t *v, int max_depth)
{
	if (max_depth < 0 || !lua_checkstack(L, 4))
		return -1;
	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char *key;
		json_t *item;
		lua_createtable(L, 0, (int)json_object_size(v));
		json_object_foreach ((json_t *)v, key, item) {
			if (json_push(L, item, max_depth - 1) != 0) {
				lua_pop(L, 1);
				return -1;
			}
			lua_setfield(L, -2, key);
		}
		return 0;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *item;
		lua_createtable(L, (int)json_array_size(v), 0);
		json_array_foreach (v, i, item) {
			if (json_push(L, item, max_depth - 1) != 0) {
				lua_pop(L, 1);
				return -1;
			}
			lua_rawseti(L, -2, (lua_Integer)i + 1);
		}
		json_mark_array(L, -1);
		return 0;
	}
	case JSON_STRING:
		lua_pushlstring(L, json_string_value(v), json_string_length(v));
		return 0;
	case JSON_INTEGER:
		lua_pushinteger(L, (lua_Integer)json_integer_value(v));
		return 0;
	case JSON_REAL:
		lua_pushnumber(L, json_real_value(v));
		return 0;
	case JSON_TRUE:
	case JSON_FALSE:
		lua_pushboolean(L, json_is_true(v));
		return 0;
	case JSON_NULL:
		json_push_null(L);
		return 0;
	}
	return -1;
}

static json_t *fail(char *err, size_t errlen, const char *msg)
{
	snprintf(err, errlen, "%s", msg);
	return NULL;
}

/* Is the table at idx a list: the array metatable, or keys exactly 1..n with n > 0? */
static int table_kind(lua_State *L, int idx, size_t *n, char *err, size_t errlen)
{
	if (lua_getmetatable(L, idx)) {
		lua_rawgetp(L, LUA_REGISTRYINDEX, &array_key);
		bool array = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
		if (array) {
			*n = (size_t)lua_rawlen(L, idx);
			return 'a';
		}
	}
	size_t count = 0, strings = 0, others = 0;
	lua_Integer maxkey = 0;
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		count++;
		if (lua_type(L, -1) == LUA_TSTRING) {
			strings++;
		} else if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
			lua_Integer k = lua_tointeger(L, -1);
			if (k > maxkey)
				maxkey = k;
		} else {
			others++; /* 0, negative, fractional, boolean... keys: neither kind */
		}
	}
	if (strings == count) {
		*n = count;
		return 'o';
	}
	if (strings == 0 && others == 0 && (size_t)maxkey == count) {
		*n = count;
		return 'a';
	}
	snprintf(err, errlen, "a table mixes list items and named keys, or has non-name keys");
	return 0;
}

static json_t *from_table(lua_State *L, int idx, int max_depth, char *err, size_t errlen)
{
	size_t n;
	int kind = table_kind(L, idx, &n, err, errlen);
	if (kind == 0)
		return NULL;
	json_t *out = kind == 'a' ? json_array() : json_object();
	if (out == NULL)
		return fail(err, errlen, "out of memory");
	if (kind == 'a') {
		for (size_t i = 1; i <= n; i++) {
			lua_rawgeti(L, idx, (lua_Integer)i);
			json_t *item = json_from_lua(L, -1, max_depth - 1, err, errlen);
			lua_pop(L, 1);
			if (item == NULL || json_array_append_new(out, item) != 0)
				goto fail;
		}
		return out;
	}
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		size_t klen;
		const char *key = lua_tolstring(L, -2, &klen);
		json_t *item = json_from_lua(L, -1, max_depth - 1, err, errlen);
		lua_pop(L, 1);
		if (item == NULL) {
			lua_pop(L, 1);
			goto fail;
		}
		if (json_object_setn_new(out, key, klen, item) != 0) {
			lua_pop(L, 1);
			snprintf(err, errlen, "a key is not valid UTF-8");
			goto fail;
		}
	}
	return out;
fail:
	json_decref(out);
	return NULL;
}

json_t *json_from_lua(lua_State *L, int idx, int max_depth, char *err, size_t errlen)
{
	idx = lua_absindex(L, idx);
	if (max_depth < 0 || !lua_checkstack(L, 4))
		return fail(err, errlen, "nested too deeply");
	switch (lua_type(L, idx)) {
	case LUA_TNIL:
		return json_null();
	case LUA_TBOOLEAN:
		return json_boolean(lua_toboolean(L, idx));
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx))
			return json_integer((json_int_t)lua_tointeger(L, idx));
		if (!isfinite(lua_tonumber(L, idx)))
			return fail(err, errlen, "NaN and infinity have no JSON form");
		return json_real(lua_tonumber(L, idx));
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		json_t *v = json_stringn(s, len);
		return v != NULL ? v : fail(err, errlen, "a string is not valid UTF-8");
	}
	case LUA_TLIGHTUSERDATA:
		if (lua_touserdata(L, idx) == &null_sentinel)
			return json_null();
		break;
	case LUA_TTABLE:
		return from_table(L, idx, max_depth, err, errlen);
	}
	snprintf(err, errlen, "a %s has no JSON form", luaL_typename(L, idx));
	return NULL;
}
