/*
 * test_json.c: unit tests of json.c, the conversion between JSON and Lua values.
 *
 * Each test runs in a fresh Lua state set up with json_lua_init. Round trips parse a JSON
 * text with jansson, push it into Lua, encode it back and compare the two with json_equal;
 * the Lua side is checked too where the mapping matters (integers, null, arrays). Lua values
 * with no JSON form are built with small chunks and must be refused with a message.
 */
#include "autoconfig.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "json.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#define DEPTH 32

static int setup(void **state)
{
	lua_State *L = luaL_newstate();
	if (L == NULL)
		return -1;
	luaL_openlibs(L);
	json_lua_init(L);
	*state = L;
	return 0;
}

static int teardown(void **state)
{
	lua_close(*state);
	return 0;
}

static json_t *parse(const char *text)
{
	json_error_t jerr;
	json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
	if (v == NULL)
		fail_msg("bad test JSON '%s': %s", text, jerr.text);
	return v;
}

/* Pushes the JSON text as a Lua value, which stays on the stack. */
static void push_text(lua_State *L, const char *text)
{
	json_t *v = parse(text);
	int top = lua_gettop(L);
	assert_int_equal(json_push(L, v, DEPTH), 0);
	assert_int_equal(lua_gettop(L), top + 1);
	json_decref(v);
}

/* Encodes the value on top of the stack, which must succeed and leave the stack as it was. */
static json_t *encode_top(lua_State *L)
{
	char err[256] = "";
	int top = lua_gettop(L);
	json_t *v = json_from_lua(L, -1, DEPTH, err, sizeof(err));
	if (v == NULL)
		fail_msg("json_from_lua: %s", err);
	assert_int_equal(lua_gettop(L), top);
	return v;
}

static void assert_round_trip(lua_State *L, const char *text)
{
	json_t *in = parse(text);
	push_text(L, text);
	json_t *out = encode_top(L);
	if (!json_equal(in, out)) {
		char *got = json_dumps(out, JSON_ENCODE_ANY);
		print_error("sent %s, got %s\n", text, got);
		free(got);
		fail();
	}
	lua_pop(L, 1);
	json_decref(in);
	json_decref(out);
}

/* Runs a chunk that returns one value, left on the stack. */
static void push_lua(lua_State *L, const char *chunk)
{
	if (luaL_dostring(L, chunk) != LUA_OK)
		fail_msg("bad test chunk: %s", lua_tostring(L, -1));
}

/* The value the chunk returns must be refused, with needle in the message. */
static void assert_refused(lua_State *L, const char *chunk, const char *needle)
{
	char err[256] = "";
	push_lua(L, chunk);
	int top = lua_gettop(L);
	json_t *v = json_from_lua(L, -1, DEPTH, err, sizeof(err));
	if (v != NULL) {
		char *got = json_dumps(v, JSON_ENCODE_ANY);
		print_error("%s gave %s\n", chunk, got);
		free(got);
		json_decref(v);
		fail();
	}
	assert_int_equal(lua_gettop(L), top);
	if (strstr(err, needle) == NULL)
		fail_msg("%s: message \"%s\" lacks \"%s\"", chunk, err, needle);
	lua_pop(L, 1);
}

static void test_round_trip_objects(void **state)
{
	lua_State *L = *state;
	assert_round_trip(L, "{}");
	assert_round_trip(L, "{\"a\": 1, \"b\": \"two\", \"c\": true}");
	assert_round_trip(
	    L, "{\"user\": {\"id\": 7, \"roles\": [\"admin\", \"dev\"]}, \"ok\": false}");
	assert_round_trip(L, "[[1, [2, [3, {\"deep\": [null]}]]], {}]");
}

static void test_round_trip_strings(void **state)
{
	lua_State *L = *state;
	assert_round_trip(L, "\"\"");
	assert_round_trip(L, "\"caf\\u00e9 \\u2603 \\ud83d\\ude00\"");
	assert_round_trip(L, "{\"cl\\u00e9\": \"\\\"quoted\\\" \\\\ \\n\"}");

	/* The Lua string holds the UTF-8 bytes, escapes decoded. */
	push_text(L, "\"caf\\u00e9 \\u2603\"");
	size_t len;
	const char *s = lua_tolstring(L, -1, &len);
	assert_int_equal(len, strlen("caf\xc3\xa9 \xe2\x98\x83"));
	assert_memory_equal(s, "caf\xc3\xa9 \xe2\x98\x83", len);
	lua_pop(L, 1);
}

static void test_integers_and_reals(void **state)
{
	lua_State *L = *state;
	push_text(L, "[1, 1.0, 1.5, -9007199254740993, 0]");
	lua_rawgeti(L, -1, 1);
	assert_true(lua_isinteger(L, -1));
	assert_int_equal(lua_tointeger(L, -1), 1);
	lua_rawgeti(L, -2, 2);
	assert_false(lua_isinteger(L, -1));
	lua_rawgeti(L, -3, 4);
	assert_true(lua_isinteger(L, -1));
	assert_true(lua_tointeger(L, -1) == -9007199254740993LL);
	lua_pop(L, 3);

	json_t *out = encode_top(L);
	assert_true(json_is_integer(json_array_get(out, 0)));
	assert_true(json_is_real(json_array_get(out, 1)));
	assert_true(json_real_value(json_array_get(out, 1)) == 1.0);
	assert_true(json_is_real(json_array_get(out, 2)));
	assert_true(json_integer_value(json_array_get(out, 3)) == -9007199254740993LL);
	json_decref(out);
	lua_pop(L, 1);
}

static void test_booleans_and_null(void **state)
{
	lua_State *L = *state;
	assert_round_trip(L, "[true, false, null]");
	assert_round_trip(L, "null");
	assert_round_trip(L, "[null, null, 3]");

	/* null is the sentinel, so an array of nulls keeps its length. */
	push_text(L, "[null, 2, null]");
	assert_int_equal(lua_rawlen(L, -1), 3);
	lua_rawgeti(L, -1, 3);
	json_push_null(L);
	assert_true(lua_rawequal(L, -1, -2));
	assert_int_equal(lua_type(L, -1), LUA_TLIGHTUSERDATA);
	lua_pop(L, 3);

	/* Lua's nil has nothing else to be but null. */
	lua_pushnil(L);
	json_t *v = encode_top(L);
	assert_true(json_is_null(v));
	json_decref(v);
	lua_pop(L, 1);
}

static void test_empty_array_stays_array(void **state)
{
	lua_State *L = *state;
	push_text(L, "{\"items\": []}");
	lua_getfield(L, -1, "items");
	assert_int_equal(lua_type(L, -1), LUA_TTABLE);
	assert_int_equal(lua_rawlen(L, -1), 0);
	lua_pop(L, 1);
	json_t *out = encode_top(L);
	assert_true(json_is_array(json_object_get(out, "items")));
	assert_int_equal(json_array_size(json_object_get(out, "items")), 0);
	json_decref(out);
	lua_pop(L, 1);
	assert_round_trip(L, "[]");
	assert_round_trip(L, "[[], {}]");
}

static void test_empty_table_is_object(void **state)
{
	lua_State *L = *state;
	push_lua(L, "return {}");
	json_t *v = encode_top(L);
	assert_true(json_is_object(v));
	assert_int_equal(json_object_size(v), 0);
	json_decref(v);
	lua_pop(L, 1);
}

static void test_marked_array(void **state)
{
	lua_State *L = *state;
	push_lua(L, "return {}");
	json_mark_array(L, -1);
	json_t *v = encode_top(L);
	assert_true(json_is_array(v));
	assert_int_equal(json_array_size(v), 0);
	json_decref(v);
	lua_pop(L, 1);

	/* Marked through a relative index, below another value. */
	push_lua(L, "return { 'a', 'b' }");
	lua_pushinteger(L, 0);
	json_mark_array(L, -2);
	lua_pop(L, 1);
	v = encode_top(L);
	json_t *want = parse("[\"a\", \"b\"]");
	assert_true(json_equal(v, want));
	json_decref(v);
	json_decref(want);
	lua_pop(L, 1);
}

static void test_sequence_is_array(void **state)
{
	lua_State *L = *state;
	push_lua(L, "return { 10, 'x', { a = 1 }, false }");
	json_t *v = encode_top(L);
	json_t *want = parse("[10, \"x\", {\"a\": 1}, false]");
	assert_true(json_equal(v, want));
	json_decref(v);
	json_decref(want);
	lua_pop(L, 1);

	push_lua(L, "return { [3] = 'c', [1] = 'a', [2] = 'b' }");
	v = encode_top(L);
	want = parse("[\"a\", \"b\", \"c\"]");
	assert_true(json_equal(v, want));
	json_decref(v);
	json_decref(want);
	lua_pop(L, 1);
}

static void test_mixed_keys_refused(void **state)
{
	lua_State *L = *state;
	const char *msg = "a table mixes list items and named keys";
	assert_refused(L, "return { 1, 2, name = 'x' }", msg);
	assert_refused(L, "return { [1] = 'a', [3] = 'c' }", msg);
	assert_refused(L, "return { [1.5] = 'x' }", msg);
	assert_refused(L, "return { [true] = 1 }", msg);
	assert_refused(L, "return { data = { 1, k = 2 } }", msg);
	/* Integer keys that are not exactly 1..n, though as many as n and up to n. */
	assert_refused(L, "return { [0] = 'z', [2] = 'b' }", msg);
	assert_refused(L, "return { [-1] = 'z', [2] = 'b' }", msg);
	assert_refused(L, "return { [2] = 'b', [0.5] = 'h' }", msg);
	assert_refused(L, "return { [2] = 'b', [true] = 'y' }", msg);
}

static void test_nan_refused(void **state)
{
	lua_State *L = *state;
	const char *msg = "NaN and infinity have no JSON form";
	assert_refused(L, "return 0/0", msg);
	assert_refused(L, "return { ratio = math.huge }", msg);
	assert_refused(L, "return { -math.huge }", msg);
}

static void test_bad_utf8_refused(void **state)
{
	lua_State *L = *state;
	assert_refused(L, "return '\\xff\\xfe'", "a string is not valid UTF-8");
	assert_refused(L, "return { 'ok', 'caf\\xe9' }", "a string is not valid UTF-8");
	assert_refused(L, "return { ['\\xc3'] = 1 }", "a key is not valid UTF-8");
}

static void test_function_refused(void **state)
{
	lua_State *L = *state;
	assert_refused(L, "return print", "a function has no JSON form");
	assert_refused(L, "return { handler = function() end }", "a function has no JSON form");
	assert_refused(L, "return coroutine.create(print)", "a thread has no JSON form");
	assert_refused(L, "return io.stdout", "has no JSON form");
}

static void test_push_depth_limit(void **state)
{
	lua_State *L = *state;
	json_t *v = parse("[[[1]]]");
	int top = lua_gettop(L);
	assert_int_equal(json_push(L, v, 3), 0);
	assert_int_equal(lua_gettop(L), top + 1);
	lua_pop(L, 1);
	assert_int_equal(json_push(L, v, 2), -1);
	assert_int_equal(lua_gettop(L), top);
	json_decref(v);

	/* Failing deep inside, after siblings were pushed, still leaves nothing. */
	v = parse("{\"a\": 1, \"b\": [2, {\"c\": {\"d\": [3]}}]}");
	assert_int_equal(json_push(L, v, 4), -1);
	assert_int_equal(lua_gettop(L), top);
	assert_int_equal(json_push(L, v, 5), 0);
	assert_int_equal(lua_gettop(L), top + 1);
	lua_pop(L, 1);
	json_decref(v);
}

static void test_from_lua_depth_limit(void **state)
{
	lua_State *L = *state;
	char err[256] = "";
	push_lua(L, "return { { { 1 } } }");
	int top = lua_gettop(L);
	json_t *v = json_from_lua(L, -1, 3, err, sizeof(err));
	assert_non_null(v);
	json_decref(v);
	assert_null(json_from_lua(L, -1, 2, err, sizeof(err)));
	assert_non_null(strstr(err, "nested too deeply"));
	assert_int_equal(lua_gettop(L), top);
	lua_pop(L, 1);
}

static void test_self_reference_refused(void **state)
{
	lua_State *L = *state;
	assert_refused(L, "local t = { name = 'loop' }; t.self = t; return t", "nested too deeply");
	assert_refused(L, "local t = {}; t[1] = t; return t", "nested too deeply");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_round_trip_objects, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_round_trip_strings, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_integers_and_reals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_booleans_and_null, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_array_stays_array, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_empty_table_is_object, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_marked_array, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_sequence_is_array, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_mixed_keys_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_nan_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_utf8_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_function_refused, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_push_depth_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_from_lua_depth_limit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_self_reference_refused, setup, teardown),
	};
	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
