/*
 * lua_jwt_sign.c: where the tokens sesame.jwt issues are signed: on the loop or on a job thread.
 *
 * An HMAC or an ECDSA signature takes microseconds: it is made on the loop, and the function
 * returns at once. An RSA one takes milliseconds with a 3072- or 4096-bit key, long enough to
 * hold up every other request of the worker: the token is signed on an I/O job thread while
 * the calling coroutine yields (luaapi_await_job), as a storage call does; the I/O threads,
 * not the hashing ones, so that a signature never queues behind password hashes. A function
 * that runs a storage job anyway (sesame.jwt.refresh with storage, .rotate) signs inside that
 * job (lua_jwt.c). Where the caller cannot yield (while the scripts load, in a metamethod), an
 * RSA token is signed on the loop, as it always was there.
 *
 * The job owns copies of all the token says (identity, family, jti, the claims deep-copied):
 * its thread reads no Lua value and no JSON the loop may release meanwhile. The key is the
 * worker's, only read once loaded; keys_sign makes a signing context of its own per token.
 */
#include "autoconfig.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "lua_private.h"
#include "metrics.h"

char *luaapi_jwt_issue(const struct token_config *tc, const struct token_request *tr, bool on_job,
		       char *err, size_t errlen)
{
	char *token = tokens_issue(tc, tr, err, errlen);
	if (token != NULL)
		metrics_token_signed(on_job ? METRICS_SIGN_JOB : METRICS_SIGN_LOOP);
	return token;
}

void luaapi_jwt_push(lua_State *L, char *token, const char *err)
{
	if (token == NULL)
		luaL_error(L, "%s", err);
	lua_pushstring(L, token);
	sodium_memzero(token, strlen(token));
	free(token);
}

/* A token to sign on a job thread, and what it said. */
struct sign_job {
	struct luaapi_job lj;
	const struct token_config *tc;
	struct token_request tr; /* its strings and claims are the copies below */
	char *identity, *family, *jti;
	json_t *claims;
	char *token; /* the result, or NULL and err */
	char err[LOG_ERR_MAX];
};

static void sign_run(struct job *job)
{
	struct sign_job *sj = (struct sign_job *)job;
	sj->token = luaapi_jwt_issue(sj->tc, &sj->tr, true, sj->err, sizeof(sj->err));
}

static int sign_push(struct luaapi_job *lj, lua_State *co)
{
	struct sign_job *sj = (struct sign_job *)lj;
	char *token = sj->token;
	sj->token = NULL; /* luaapi_jwt_push frees it, or raises with none */
	luaapi_jwt_push(co, token, sj->err);
	return 1;
}

static void sign_release(struct luaapi_job *lj)
{
	struct sign_job *sj = (struct sign_job *)lj;
	if (sj->token != NULL)
		sodium_memzero(sj->token, strlen(sj->token));
	free(sj->token);
	free(sj->identity);
	free(sj->family);
	free(sj->jti);
	json_decref(sj->claims);
	free(sj);
}

/* strdup of s, NULL staying NULL; false when out of memory. */
static bool copy_string(char **out, const char *s)
{
	*out = s != NULL ? strdup(s) : NULL;
	return s == NULL || *out != NULL;
}

/* The job for tr, with copies of its strings and claims; NULL when out of memory. */
static struct sign_job *sign_job_new(const struct token_config *tc, const struct token_request *tr)
{
	struct sign_job *sj = calloc(1, sizeof(*sj));
	if (sj == NULL)
		return NULL;
	sj->lj.release = sign_release;
	if (!copy_string(&sj->identity, tr->identity) || !copy_string(&sj->family, tr->family) ||
	    !copy_string(&sj->jti, tr->jti) ||
	    (tr->claims != NULL && (sj->claims = json_deep_copy(tr->claims)) == NULL)) {
		sign_release(&sj->lj);
		return NULL;
	}
	sj->tc = tc;
	sj->tr = *tr;
	sj->tr.identity = sj->identity;
	sj->tr.family = sj->family;
	sj->tr.jti = sj->jti;
	sj->tr.claims = sj->claims;
	sj->lj.job.run = sign_run;
	sj->lj.push = sign_push;
	return sj;
}

int luaapi_jwt_sign(lua_State *L, const struct token_request *tr, const char *fname)
{
	const struct token_config *tc = &luaapi_get(L)->cfg->jwt;
	char err[LOG_ERR_MAX];
	if (!tokens_sign_slow(tc) || !luaapi_can_wait(L)) {
		luaapi_jwt_push(L, luaapi_jwt_issue(tc, tr, false, err, sizeof(err)), err);
		return 1;
	}
	struct sign_job *sj = sign_job_new(tc, tr);
	if (sj == NULL)
		return luaL_error(L, "out of memory");
	return luaapi_await_job(L, &sj->lj, fname);
}
