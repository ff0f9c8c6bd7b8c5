/* json.h: converting between JSON (jansson) and Lua values. */
#ifndef SESAME_JSON_H
#define SESAME_JSON_H

#include <jansson.h>
#include <stddef.h>

struct lua_State;

/* Registers sesame's JSON sentinels in L: call once per state. */
void json_lua_init(struct lua_State *L);

/* Pushes the value sesame.null stands for JSON null with. */
void json_push_null(struct lua_State *L);

/* Gives the table at idx the array metatable: it encodes as a JSON array, even when empty. */
void json_mark_array(struct lua_State *L, int idx);

/* Pushes v as a Lua value; -1 (nothing pushed) when nested deeper than max_depth. */
int json_push(struct lua_State *L, const json_t *v, int max_depth);

/* The Lua value at idx as JSON; NULL with a message in err when it has no JSON form. */
json_t *json_from_lua(struct lua_State *L, int idx, int max_depth, char *err, size_t errlen);

#endif
