/*
 * lua_jwt_family.c: the token jobs of sesame.jwt: refresh families and revocation, the token
 * state that storage keeps.
 *
 * lua_jwt.c reads a function's arguments on the loop; the function then runs one token job
 * here and yields (luaapi_await_job). On the job thread the job makes its storage call(s)
 * and, for a family started or rotated, signs the family's next refresh token, whatever the
 * algorithm: one hop. Back on the loop it pushes the results; a job that revokes something
 * also adds it to this worker's revoked ids, so that the worker refuses it at once while the
 * others learn of it within jwt.revocation_refresh. A job owns copies of all it reads on its
 * thread (identity, ids, claims deep-copied): no Lua value and no JSON the loop may release.
 */
#include "autoconfig.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "json.h"
#include "log.h"
#include "lua_private.h"
#include "metrics.h"
#include "revocation.h"
#include "tokens.h"

enum token_op { FAMILY_NEW, FAMILY_ROTATE, TOKEN_REVOKE, SUBJECT_REVOKE };

struct token_job {
	struct luaapi_job lj;
	struct storage st;
	enum token_op op;
	long long now_ms, grace_ms;
	long long revoke_until; /* how long a revoked family's id stays revoked */
	char identity[LUAAPI_IDENTITY_MAX];
	char family[SESAME_TOKEN_ID_MAX + 1]; /* subject_revoke: the family spared, or "" */
	long long family_end;		      /* Unix seconds */
	char jti[SESAME_TOKEN_ID_MAX + 1];    /* rotate: the token spent; revoke: the one revoked */
	long long jti_expires;		      /* revoke */
	bool adopt;			      /* rotate: a token without fam starts a family */
	char next[TOKENS_ID_LEN];	      /* the jti of the refresh token to issue */
	char current[SESAME_TOKEN_ID_MAX + 1]; /* rotate: the jti the storage says to issue */
	long expires;			       /* the refresh token's expires option */
	json_t *claims;			       /* the operator's claims of the refresh token */
	enum sesame_storage_result rc;
	char err[LOG_ERR_MAX];
	/* refresh, rotate: the refresh token, signed on the job thread once the storage agreed */
	const struct token_config *tc;
	char *token;
	char sign_err[LOG_ERR_MAX];
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

/* The token job's storage call(s): its result in tj->rc. */
static void token_store(struct token_job *tj)
{
	const struct sesame_storage *fn = tj->st.fn;
	void *st = tj->st.state;
	tj->err[0] = '\0';
	if (tj->op == SUBJECT_REVOKE) {
		tj->rc =
		    fn->subject_revoke(st, tj->identity, tj->family[0] != '\0' ? tj->family : NULL,
				       tj->revoke_until, collect_id, tj, tj->err, sizeof(tj->err));
		metrics_storage(METRICS_SUBJECT_REVOKE, tj->rc);
		return;
	}
	if (tj->op == TOKEN_REVOKE) {
		tj->rc = fn->token_revoke(st, tj->jti, tj->jti_expires,
					  tj->family[0] != '\0' ? tj->family : NULL,
					  tj->revoke_until, tj->err, sizeof(tj->err));
		metrics_storage(METRICS_TOKEN_REVOKE, tj->rc);
		return;
	}
	if (tj->op == FAMILY_NEW || tj->adopt) {
		struct sesame_family f = {.id = tj->family,
					  .subject = tj->identity,
					  .jti = tj->op == FAMILY_NEW ? tj->next : tj->jti,
					  .expires_at = tj->family_end};
		tj->rc = fn->family_create(st, &f, tj->err, sizeof(tj->err));
		metrics_storage(METRICS_FAMILY_CREATE, tj->rc);
		/* Adopting, a racing refresh of the same token may have started it already. */
		bool go_on =
		    tj->adopt && (tj->rc == SESAME_STORAGE_OK || tj->rc == SESAME_STORAGE_CONFLICT);
		if (!go_on)
			return;
	}
	tj->rc =
	    fn->family_rotate(st, tj->family, tj->jti, tj->next, tj->grace_ms, tj->revoke_until,
			      tj->current, &tj->family_end, tj->err, sizeof(tj->err));
	metrics_storage(METRICS_FAMILY_ROTATE, tj->rc);
}

/* The refresh token of the family that tj started or rotated. */
static void token_sign(struct token_job *tj)
{
	struct token_request tr = {.type = TOKEN_REFRESH,
				   .identity = tj->identity,
				   .expires = tj->expires,
				   .not_after = (long)tj->family_end,
				   .family = tj->family,
				   .jti = tj->op == FAMILY_NEW ? tj->next : tj->current,
				   .claims = tj->claims};
	tj->token = luaapi_jwt_issue(tj->tc, &tr, true, tj->sign_err, sizeof(tj->sign_err));
}

static void token_run(struct job *job)
{
	struct token_job *tj = (struct token_job *)job;
	token_store(tj);
	if ((tj->op == FAMILY_NEW || tj->op == FAMILY_ROTATE) && tj->rc == SESAME_STORAGE_OK)
		token_sign(tj);
}

/* The refresh_reused event: whose token it was, and the family revoked for it. */
static void emit_reused(lua_State *co, const struct token_job *tj)
{
	json_t *ev = luaapi_event_new(co, "refresh_reused");
	if (ev == NULL)
		return;
	luaapi_event_user(ev, tj->identity);
	json_object_set_new(ev, "family", json_string(tj->family));
	luaapi_event_emit(co, ev);
}

static int token_push(struct luaapi_job *lj, lua_State *co)
{
	struct token_job *tj = (struct token_job *)lj;
	struct luaapi *api = luaapi_get(co);
	if (tj->rc == SESAME_STORAGE_REUSED) {
		log_warn("a spent refresh token of identity %s was presented again: its family is "
			 "revoked",
			 tj->identity);
		revocation_add(api->rv, tj->family, tj->revoke_until);
		metrics_revocation(METRICS_REVOKE_REUSE);
		emit_reused(co, tj);
	}
	/* A family the storage does not know (purged after its end) is as good as revoked. */
	int n = luaapi_storage_push(
	    co, tj->rc == SESAME_STORAGE_NOT_FOUND ? SESAME_STORAGE_REVOKED : tj->rc,
	    LUAAPI_REFUSAL(SESAME_STORAGE_REUSED) | LUAAPI_REFUSAL(SESAME_STORAGE_REVOKED),
	    tj->err);
	if (n != 0)
		return n;
	if (tj->op == SUBJECT_REVOKE) {
		metrics_revocation(METRICS_REVOKE_ALL);
		/* This worker refuses them at once (the others within revocation_refresh); ids
		 * that could not be kept here for want of memory still reach it by the fetch. */
		for (size_t i = 0; i < tj->nids; i++)
			revocation_add(api->rv, tj->ids[i], tj->revoke_until);
		lua_pushinteger(co, (lua_Integer)tj->count);
		return 1;
	}
	if (tj->op == TOKEN_REVOKE) {
		metrics_revocation(METRICS_REVOKE);
		if (tj->jti[0] != '\0')
			revocation_add(api->rv, tj->jti, tj->jti_expires);
		if (tj->family[0] != '\0')
			revocation_add(api->rv, tj->family, tj->revoke_until);
		lua_pushboolean(co, 1);
		return 1;
	}
	char *token = tj->token;
	tj->token = NULL; /* luaapi_jwt_push frees it, or raises with none */
	luaapi_jwt_push(co, token, tj->sign_err);
	lua_pushstring(co, tj->family);
	if (tj->op == FAMILY_NEW)
		return 2;
	if (tj->claims == NULL || json_push(co, tj->claims, api->cfg->json_depth) != 0)
		lua_pushnil(co);
	return 3;
}

static void token_release(struct luaapi_job *lj)
{
	char *token = ((struct token_job *)lj)->token;
	if (token != NULL)
		sodium_memzero(token, strlen(token));
	free(token);
	json_decref(((struct token_job *)lj)->claims);
	free(((struct token_job *)lj)->ids);
	free(lj);
}

/* A token job for identity (NULL: a revocation by id); raises on a bad one. */
static struct token_job *new_token_job(lua_State *L, enum token_op op, const char *fname,
				       const char *identity)
{
	struct luaapi *api = luaapi_get(L);
	struct storage st;
	if (identity != NULL && strlen(identity) >= sizeof(((struct token_job *)NULL)->identity))
		luaL_argerror(L, 1, "an identity is shorter than 256 bytes");
	struct token_job *tj = luaapi_storage_job(L, sizeof(*tj), &st, fname);
	tj->st = st;
	tj->op = op;
	if (identity != NULL)
		snprintf(tj->identity, sizeof(tj->identity), "%s", identity);
	tj->now_ms = clock_wall_ms();
	tj->grace_ms = api->cfg->jwt.refresh_grace_ms;
	tj->family_end = tj->now_ms / 1000 + api->cfg->jwt.family_lifetime;
	tj->revoke_until = tokens_family_revoke_until(&api->cfg->jwt, tj->now_ms / 1000);
	tj->expires = -1;
	tj->tc = &api->cfg->jwt;
	tj->lj.job.run = token_run;
	tj->lj.push = token_push;
	tj->lj.release = token_release;
	return tj;
}

/* A copy of claims (NULL: none) for tj, whose thread reads it while the loop may release the
 * caller's; raises, tj released, when out of memory. */
static void copy_claims(lua_State *L, struct token_job *tj, const json_t *claims)
{
	if (claims != NULL && (tj->claims = json_deep_copy(claims)) == NULL) {
		token_release(&tj->lj);
		luaL_error(L, "out of memory");
	}
}

int luaapi_family_start(lua_State *L, const struct token_request *tr, const char *fname)
{
	struct token_job *tj = new_token_job(L, FAMILY_NEW, fname, tr->identity);
	tj->expires = tr->expires;
	copy_claims(L, tj, tr->claims);
	tokens_uuid4(tj->family);
	tokens_uuid4(tj->next);
	return luaapi_await_job(L, &tj->lj, fname);
}

int luaapi_family_rotate(lua_State *L, const struct luaapi_spent *spent, const json_t *claims,
			 const char *fname)
{
	struct token_job *tj = new_token_job(L, FAMILY_ROTATE, fname, spent->sub);
	snprintf(tj->jti, sizeof(tj->jti), "%s", spent->jti);
	copy_claims(L, tj, claims);
	if (spent->fam != NULL) {
		snprintf(tj->family, sizeof(tj->family), "%s", spent->fam);
	} else {
		snprintf(tj->family, sizeof(tj->family), "%s", tj->jti);
		tj->adopt = true;
	}
	tokens_uuid4(tj->next);
	return luaapi_await_job(L, &tj->lj, fname);
}

int luaapi_token_revoke(lua_State *L, const struct token_revocation *rev, const char *fname)
{
	struct token_job *tj = new_token_job(L, TOKEN_REVOKE, fname, NULL);
	snprintf(tj->jti, sizeof(tj->jti), "%s", rev->jti);
	snprintf(tj->family, sizeof(tj->family), "%s", rev->family != NULL ? rev->family : "");
	tj->jti_expires = rev->jti_until;
	tj->revoke_until = rev->family_until;
	return luaapi_await_job(L, &tj->lj, fname);
}

int luaapi_subject_revoke(lua_State *L, const char *identity, const char *except, const char *fname)
{
	struct token_job *tj = new_token_job(L, SUBJECT_REVOKE, fname, identity);
	if (except != NULL)
		snprintf(tj->family, sizeof(tj->family), "%s", except);
	return luaapi_await_job(L, &tj->lj, fname);
}
