/*
 * lua_json.c: sesame.json, JSON text for a script's own use: encode a Lua value, decode a text.
 *
 * A script keeps structured data in a string now and then (a one-time token's data, a row of
 * its own table) and reads it back later. Both ways go through json.c, as request bodies and
 * answers do, so a value means the same here as there: sesame.null is JSON null, a table
 * marked by sesame.array is an array, a table with string keys an object. Depth is bounded
 * by server.json_depth both ways. Encoding a value that has no JSON form is the script's
 * mistake and raises; decoding a text that is not JSON is the data's, and answers nil and why.
 */
#include "autoconfig.h"

#include <stdlib.h>

#include "json.h"
#include "lua_private.h"

/* sesame.json.encode(value) -> text: compact, UTF-8 as it is. */
static int l_json_encode(lua_State *L)
{
	luaL_checkany(L, 1);
	char err[128];
	json_t *doc = json_from_lua(L, 1, luaapi_get(L)->cfg->json_depth, err, sizeof(err));
	if (doc == NULL)
		return luaL_error(L, "sesame.json.encode: %s", err);
	char *text = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(doc);
	if (text == NULL)
		return luaL_error(L, "sesame.json.encode: out of memory");
	lua_pushstring(L, text);
	free(text);
	return 1;
}

/* sesame.json.decode(text) -> value; or nil and what is wrong with the text. */
static int l_json_decode(lua_State *L)
{
	size_t len;
	const char *text = luaL_checklstring(L, 1, &len);
	json_error_t error;
	json_t *doc = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &error);
	if (doc == NULL) {
		lua_pushnil(L);
		lua_pushfstring(L, "not JSON (line %d, column %d): %s", error.line, error.column,
				error.text);
		return 2;
	}
	int rc = json_push(L, doc, luaapi_get(L)->cfg->json_depth);
	json_decref(doc);
	if (rc != 0) {
		lua_pushnil(L);
		lua_pushliteral(L, "nested too deeply");
		return 2;
	}
	return 1;
}

void luaapi_json_inject(lua_State *L)
{
	static const luaL_Reg funcs[] = {
	    {"encode", l_json_encode}, {"decode", l_json_decode}, {NULL, NULL}};
	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "json");
}
