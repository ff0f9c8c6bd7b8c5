/*
 * lua_hash.c: passwords and values: sesame.hash, sesame.verify and sesame.validate.
 *
 * Hashing and verifying run on a job thread (the hasher plugins are slow by design): the
 * password is copied into the job, wiped when it is released, and the handler yields. A
 * verification with no stored hash, or one no accepted scheme reads, does the same work against
 * a dummy hash and refuses, so that an unknown user takes as long as a wrong password. A
 * failed verification against a cheaper hash (another scheme, or weaker settings) then also
 * verifies against the dummy hash: a user on a legacy hash takes no less time than an unknown
 * one. Sleeping until the dummy's measured time instead would tie up the job thread all the
 * same, and a time measured once is only as good as the load it was measured under.
 * Validation is quick and runs on the loop.
 */
#include "autoconfig.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "lua_private.h"
#include "metrics.h"

/* sesame.hash(password) and sesame.verify(password, stored): on a job thread each. */
struct hash_job {
	struct luaapi_job lj;
	const struct hasher *hasher;
	const struct hasher *scheme; /* verify: the scheme new hashes use */
	char *password;
	size_t len;
	char *stored;		/* verify */
	const char *dummy_hash; /* verify: the scheme's dummy, run too when stored is cheaper */
	char out[512];
	int rc;
	bool rehash;
	bool dummy; /* verify against the dummy hash: never a match */
};

static void hash_work(struct hash_job *hj)
{
	const struct sesame_hasher *fn = hj->hasher->fn;
	if (hj->stored == NULL) {
		hj->rc =
		    fn->hash(hj->hasher->state, hj->password, hj->len, hj->out, sizeof(hj->out));
		return;
	}
	hj->rc = fn->verify(hj->hasher->state, hj->password, hj->len, hj->stored);
	if (hj->dummy)
		hj->rc = 0;
	bool cheaper = hj->scheme == NULL || hj->hasher->fn != hj->scheme->fn ||
		       fn->needs_rehash(hj->hasher->state, hj->stored);
	hj->rehash = hj->rc == 1 && cheaper;
	if (hj->rc != 1 && !hj->dummy && cheaper && hj->scheme != NULL && hj->dummy_hash != NULL)
		hj->scheme->fn->verify(hj->scheme->state, hj->password, hj->len, hj->dummy_hash);
}

static void hash_run(struct job *job)
{
	struct hash_job *hj = (struct hash_job *)job;
	uint64_t start = clock_mono_ns();
	hash_work(hj);
	metrics_hash(hj->stored == NULL ? METRICS_HASH : METRICS_VERIFY, clock_mono_ns() - start);
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
	if (hj->stored != NULL)
		sodium_memzero(hj->stored, strlen(hj->stored));
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
	hj->lj.job.cpu = true;
	hj->lj.push = hash_push;
	hj->lj.release = hash_release;
	return hj;
}

static int l_hash(lua_State *L)
{
	const struct hasher *scheme = plugins_scheme(luaapi_get(L)->cfg->plugins);
	if (scheme == NULL)
		return luaL_error(L, "no password hasher is loaded (see plugins and password)");
	return luaapi_await_job(L, &new_hash_job(L, scheme)->lj, "sesame.hash");
}

static int l_verify(lua_State *L)
{
	const struct plugins *p = luaapi_get(L)->cfg->plugins;
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
	hj->dummy_hash = plugins_dummy_hash(p);
	hj->dummy = dummy;
	if ((hj->stored = strdup(stored)) == NULL) {
		hash_release(&hj->lj);
		return luaL_error(L, "out of memory");
	}
	return luaapi_await_job(L, &hj->lj, "sesame.verify");
}

/*
 * sesame.validate(name, value[, related]): the validator plugin name's verdict, on the loop,
 * and that of the one that follows it (the password policy: password, then blocklist).
 * Returns the value's normal form, or nil and a message for the client.
 */
static int l_validate(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);
	const struct plugins *p = luaapi_get(L)->cfg->plugins;
	struct validator v;
	const char *related[9] = {NULL};
	if (!plugins_validator(p, name, &v))
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
	const char *const *rel = related[0] != NULL ? related : NULL;
	char msg[256] = "";
	size_t outlen = len * 4 + 64;
	char *out = luaapi_push_scratch(L, outlen);
	int rc = plugins_validate(p, name, value, len, rel, out, outlen, msg, sizeof(msg));
	if (rc < 0)
		return luaL_error(L, "validator %s: its normal form does not fit", name);
	if (rc == 1)
		lua_pushstring(L, out);
	if (rc == 0) {
		lua_pushnil(L);
		lua_pushstring(L, msg[0] != '\0' ? msg : "invalid value");
		return 2;
	}
	return 1;
}

void luaapi_hash_inject(lua_State *L)
{
	static const luaL_Reg funcs[] = {
	    {"hash", l_hash}, {"verify", l_verify}, {"validate", l_validate}, {NULL, NULL}};
	luaL_setfuncs(L, funcs, 0);
}
