/*
 * lua_db.c: sesame.db, a route script's own statements on the configured storage:
 * sesame.db.query(sql, ...) returns the rows, sesame.db.exec(sql, ...) what changed.
 *
 * The statement goes to the storage plugin's query function (ABI 1.1) on a job thread, with
 * ? placeholders bound to the values after it, never pasted into the text: nil and
 * sesame.null are NULL, integers, floats, strings and booleans (1 or 0) are themselves, and
 * anything else raises. The job copies the text and the values, and the rows, as the job
 * thread receives them, into its own memory (at most storage.query_rows of them: past that
 * the statement is stopped and the call raises); the handler turns them into tables once it
 * is resumed on the loop. A duplicate key answers nil, "exists"; any other refusal of the
 * store raises, the store's message going to the log.
 *
 * It also holds the check every binding of an ABI 1.1 storage function makes first: a
 * storage plugin of ABI 1.0 lacks them.
 */
#include "autoconfig.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "lua_private.h"
#include "metrics.h"

void luaapi_storage_need(lua_State *L, size_t member, const char *name)
{
	struct storage st;
	void (*fn)(void) = NULL;
	if (!plugins_storage(luaapi_get(L)->cfg->plugins, &st))
		luaL_error(L, "sesame: %s needs storage: none is configured (storage.backend)",
			   name);
	memcpy(&fn, (const char *)st.fn + member, sizeof(fn));
	if (fn == NULL)
		luaL_error(L, "storage backend %s lacks %s (ABI 1.1)", st.fn->header.name, name);
}

/* One value of a row the job received, its text its own. */
struct cell {
	struct sesame_value v;
	char *owned;
};

struct db_job {
	struct luaapi_job lj;
	struct storage st;
	char *sql;
	struct sesame_value params[SESAME_QUERY_PARAMS_MAX];
	size_t nparams;
	bool rows_wanted; /* query: the rows; exec: the counts */
	size_t max_rows;
	/* what came back */
	char *names[SESAME_QUERY_COLUMNS_MAX];
	size_t ncols, nrows, cap;
	struct cell *cells; /* nrows * ncols */
	bool too_many, oom;
	long long affected, insert_id;
	enum sesame_storage_result rc;
	char err[LOG_ERR_MAX];
};

static int keep_names(struct db_job *dj, size_t ncols, const char *const *names)
{
	dj->ncols = ncols;
	for (size_t i = 0; i < ncols; i++) {
		if ((dj->names[i] = strdup(names[i] != NULL ? names[i] : "")) == NULL)
			return -1;
	}
	return 0;
}

static int keep_cell(struct cell *c, const struct sesame_value *v)
{
	c->v = *v;
	c->owned = NULL;
	if (v->type != SESAME_VALUE_TEXT)
		return 0;
	if ((c->owned = malloc(v->len + 1)) == NULL)
		return -1;
	memcpy(c->owned, v->text, v->len);
	c->owned[v->len] = '\0';
	c->v.text = c->owned;
	return 0;
}

/* On the job thread: a row, copied; non-zero stops the statement. */
static int keep_row(void *ctx, size_t ncols, const char *const *names,
		    const struct sesame_value *values)
{
	struct db_job *dj = ctx;
	if (!dj->rows_wanted)
		return 0;
	if (dj->nrows == dj->max_rows) {
		dj->too_many = true;
		return 1;
	}
	if (dj->nrows == 0 && keep_names(dj, ncols, names) != 0)
		return dj->oom = true;
	if (ncols != dj->ncols)
		return dj->oom = true;
	if (dj->nrows == dj->cap) {
		size_t cap = dj->cap ? dj->cap * 2 : 16;
		void *grown = realloc(dj->cells, cap * (ncols ? ncols : 1) * sizeof(*dj->cells));
		if (grown == NULL)
			return dj->oom = true;
		dj->cells = grown;
		dj->cap = cap;
	}
	struct cell *row = &dj->cells[dj->nrows * ncols];
	for (size_t i = 0; i < ncols; i++) {
		if (keep_cell(&row[i], &values[i]) != 0) {
			for (size_t j = 0; j < i; j++)
				free(row[j].owned);
			return dj->oom = true;
		}
	}
	dj->nrows++;
	return 0;
}

static void db_run(struct job *job)
{
	struct db_job *dj = (struct db_job *)job;
	dj->err[0] = '\0';
	dj->rc = dj->st.fn->query(dj->st.state, dj->sql, dj->params, dj->nparams, keep_row, dj,
				  &dj->affected, &dj->insert_id, dj->err, sizeof(dj->err));
	metrics_storage(METRICS_QUERY, dj->rc);
}

static void push_cell(lua_State *co, const struct cell *c)
{
	switch (c->v.type) {
	case SESAME_VALUE_INTEGER:
		lua_pushinteger(co, (lua_Integer)c->v.integer);
		break;
	case SESAME_VALUE_REAL:
		lua_pushnumber(co, (lua_Number)c->v.real);
		break;
	case SESAME_VALUE_TEXT:
		lua_pushlstring(co, c->v.text, c->v.len);
		break;
	default:
		json_push_null(co);
		break;
	}
}

static int db_push(struct luaapi_job *lj, lua_State *co)
{
	struct db_job *dj = (struct db_job *)lj;
	if (dj->too_many)
		return luaL_error(co, "sesame.db.query: more than %I rows (storage.query_rows)",
				  (lua_Integer)dj->max_rows);
	if (dj->oom)
		return luaL_error(co, "sesame.db: out of memory");
	int n = luaapi_storage_push(co, dj->rc, LUAAPI_REFUSAL(SESAME_STORAGE_CONFLICT), dj->err);
	if (n != 0)
		return n;
	if (!dj->rows_wanted) {
		lua_pushinteger(co, (lua_Integer)dj->affected);
		lua_pushinteger(co, (lua_Integer)dj->insert_id);
		return 2;
	}
	lua_createtable(co, (int)dj->nrows, 0);
	for (size_t r = 0; r < dj->nrows; r++) {
		lua_createtable(co, 0, (int)dj->ncols);
		for (size_t i = 0; i < dj->ncols; i++) {
			push_cell(co, &dj->cells[r * dj->ncols + i]);
			lua_setfield(co, -2, dj->names[i]);
		}
		lua_rawseti(co, -2, (lua_Integer)r + 1);
	}
	return 1;
}

static void db_release(struct luaapi_job *lj)
{
	struct db_job *dj = (struct db_job *)lj;
	for (size_t i = 0; i < dj->nrows * dj->ncols; i++)
		free(dj->cells[i].owned);
	for (size_t i = 0; i < SESAME_QUERY_COLUMNS_MAX; i++)
		free(dj->names[i]);
	for (size_t i = 0; i < dj->nparams; i++)
		free((char *)dj->params[i].text);
	free(dj->cells);
	free(dj->sql);
	free(dj);
}

/* The value at idx as parameter p (its text copied): 0, -1 for one of no SQL type, -2 when
 * memory runs out. */
static int take_param(lua_State *L, int idx, struct sesame_value *p)
{
	*p = (struct sesame_value){.type = SESAME_VALUE_NULL};
	json_push_null(L);
	bool null = lua_isnil(L, idx) || lua_rawequal(L, idx, -1);
	lua_pop(L, 1);
	if (null)
		return 0;
	switch (lua_type(L, idx)) {
	case LUA_TNUMBER:
		if (lua_isinteger(L, idx)) {
			p->type = SESAME_VALUE_INTEGER;
			p->integer = (long long)lua_tointeger(L, idx);
		} else {
			p->type = SESAME_VALUE_REAL;
			p->real = (double)lua_tonumber(L, idx);
		}
		return 0;
	case LUA_TBOOLEAN:
		p->type = SESAME_VALUE_INTEGER;
		p->integer = lua_toboolean(L, idx);
		return 0;
	case LUA_TSTRING: {
		size_t len;
		const char *s = lua_tolstring(L, idx, &len);
		char *copy = malloc(len + 1);
		if (copy == NULL)
			return -2;
		memcpy(copy, s, len + 1);
		*p = (struct sesame_value){.type = SESAME_VALUE_TEXT, .text = copy, .len = len};
		return 0;
	}
	default:
		return -1;
	}
}

/* sesame.db.query and exec: the statement at 1, its values after it. */
static int db_call(lua_State *L, bool rows, const char *fname)
{
	size_t len;
	const char *sql = luaL_checklstring(L, 1, &len);
	int nparams = lua_gettop(L) - 1;
	if (len > SESAME_QUERY_SQL_MAX || strlen(sql) != len)
		return luaL_error(L, "%s: a statement is at most %d bytes, without NUL", fname,
				  SESAME_QUERY_SQL_MAX);
	if (nparams > SESAME_QUERY_PARAMS_MAX)
		return luaL_error(L, "%s: at most %d values", fname, SESAME_QUERY_PARAMS_MAX);
	LUAAPI_STORAGE_NEED(L, query);
	struct storage st;
	struct db_job *dj = luaapi_storage_job(L, sizeof(*dj), &st, fname);
	dj->st = st;
	dj->rows_wanted = rows;
	dj->max_rows = plugins_query_rows(luaapi_get(L)->cfg->plugins);
	dj->lj.job.run = db_run;
	dj->lj.push = db_push;
	dj->lj.release = db_release;
	for (int i = 0; i < nparams; i++) {
		int rc = take_param(L, i + 2, &dj->params[i]);
		if (rc != 0) {
			const char *type = luaL_typename(L, i + 2);
			db_release(&dj->lj);
			if (rc == -2)
				return luaL_error(L, "out of memory");
			return luaL_error(L,
					  "%s: value %d is a %s: a statement takes nil, "
					  "sesame.null, numbers, strings and booleans",
					  fname, i + 1, type);
		}
		dj->nparams++;
	}
	if ((dj->sql = strdup(sql)) == NULL) {
		db_release(&dj->lj);
		return luaL_error(L, "out of memory");
	}
	return luaapi_await_job(L, &dj->lj, fname);
}

/* sesame.db.query(sql, ...) -> an array of rows, each a table keyed by column name. */
static int l_db_query(lua_State *L)
{
	return db_call(L, true, "sesame.db.query");
}

/* sesame.db.exec(sql, ...) -> affected, insert_id; or nil, "exists" for a duplicate key. */
static int l_db_exec(lua_State *L)
{
	return db_call(L, false, "sesame.db.exec");
}

void luaapi_db_inject(lua_State *L)
{
	static const luaL_Reg funcs[] = {{"query", l_db_query}, {"exec", l_db_exec}, {NULL, NULL}};
	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "db");
}
