/*
 * lua_jwt.c: sesame.jwt, the tokens a route issues, rotates, revokes and reads.
 *
 * Cookies, decoding and the JWKS are made or read on the loop; an access token is signed
 * where lua_jwt_sign.c decides (an RS one on a job thread). Refresh families and revocation
 * are token state that storage keeps: those functions run a token job on a job thread and
 * yield, and the refresh token of a family is signed inside that job, whatever the algorithm:
 * one hop. A job that revokes something also adds it to this worker's revoked ids, so that
 * the worker refuses it at once while the others learn of it within jwt.revocation_refresh.
 */
#include "autoconfig.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "clock.h"
#include "json.h"
#include "log.h"
#include "lua_private.h"
#include "metrics.h"
#include "revocation.h"
#include "tokens.h"

/* The identity argument of a jwt function: a string or a number. */
static const char *identity_arg(lua_State *L, int idx)
{
	int t = lua_type(L, idx);
	if (t != LUA_TSTRING && t != LUA_TNUMBER)
		luaL_argerror(L, idx, "the identity is a string or a number");
	return lua_tostring(L, idx);
}

/* The token id (a jti, a family) field name of the table at tbl: 1 to SESAME_TOKEN_ID_MAX
 * bytes, no NUL; NULL when it is anything else. The table keeps the string alive. */
static const char *token_id(lua_State *L, int tbl, const char *name)
{
	size_t len = 0;
	const char *id = NULL;
	if (lua_getfield(L, tbl, name) == LUA_TSTRING)
		id = lua_tolstring(L, -1, &len);
	lua_pop(L, 1);
	return id != NULL && len > 0 && len <= SESAME_TOKEN_ID_MAX && strlen(id) == len ? id : NULL;
}

static json_t **push_claims_box(lua_State *L);

/*
 * The operator's claims of the table at idx, as JSON in a box pushed on the stack (which
 * owns them): any JSON values, at most TOKENS_CLAIMS_MAX bytes encoded. A reserved name
 * raises, or with drop_reserved (a token's claims, rotated) is left out. NULL when the table
 * holds none.
 */
static json_t *custom_claims(lua_State *L, int idx, bool drop_reserved)
{
	char err[LOG_ERR_MAX];
	luaL_checktype(L, idx, LUA_TTABLE);
	json_t **box = push_claims_box(L);
	*box = json_from_lua(L, idx, luaapi_get(L)->cfg->json_depth, err, sizeof(err));
	if (*box == NULL)
		luaL_error(L, "claims: %s", err);
	if (json_is_array(*box) && json_array_size(*box) == 0)
		return NULL;
	if (!json_is_object(*box))
		luaL_error(L, "claims is a table of named claims");
	for (const char *const *name = tokens_reserved_claims; *name != NULL; name++) {
		if (json_object_get(*box, *name) != NULL && !drop_reserved)
			luaL_error(L, "claims: %s is a claim sesame sets itself", *name);
		json_object_del(*box, *name);
	}
	size_t size = json_dumpb(*box, NULL, 0, JSON_COMPACT);
	if (size > TOKENS_CLAIMS_MAX)
		luaL_error(L, "claims: %d bytes encoded, more than %d", (int)size,
			   TOKENS_CLAIMS_MAX);
	return json_object_size(*box) > 0 ? *box : NULL;
}

/* The options of sesame.jwt.access and .refresh: {expires = n|false, fresh = bool, family,
 * claims = {...}}; the claims' box stays on the stack. */
static void issue_options(lua_State *L, int idx, struct token_request *tr)
{
	tr->expires = -1;
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	int et = lua_getfield(L, idx, "expires");
	if (et == LUA_TBOOLEAN && !lua_toboolean(L, -1))
		tr->expires = 0;
	else if (et != LUA_TNIL) {
		lua_Integer v = luaL_checkinteger(L, -1);
		luaL_argcheck(L, v >= 1, idx, "expires is a number of seconds or false");
		tr->expires = (long)v;
	}
	tr->fresh = lua_getfield(L, idx, "fresh") != LUA_TNIL && lua_toboolean(L, -1);
	int ft = lua_getfield(L, idx, "family");
	lua_pop(L, 3);
	if (ft != LUA_TNIL && (tr->family = token_id(L, idx, "family")) == NULL)
		luaL_argerror(L, idx, "family is the id sesame.jwt.refresh or .rotate returned");
	if (lua_getfield(L, idx, "claims") == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	tr->claims = custom_claims(L, lua_gettop(L), false);
	lua_remove(L, -2); /* the claims table; the box above it owns tr->claims */
}

/*
 * sesame.jwt.access(identity[, {expires = n|false, fresh = bool, family = id}]): an access
 * token, signed on the loop, or with an RS key on a job thread (it yields). family is the refresh
 * family it goes with (as .refresh and .rotate return it): revoking the family revokes the access
 * token too.
 */
static int l_jwt_access(lua_State *L)
{
	const struct token_config *tc = &luaapi_get(L)->cfg->jwt;
	struct token_request tr = {.type = TOKEN_ACCESS, .identity = identity_arg(L, 1)};
	issue_options(L, 2, &tr);
	/* A family's access token lives no longer than jwt.access_expires: revoking the family
	 * revokes its id for as long as that (tokens_family_revoke_until). */
	if (tr.family != NULL && tc->access_expires > 0 &&
	    (tr.expires == 0 || tr.expires > tc->access_expires))
		tr.expires = tc->access_expires;
	return luaapi_jwt_sign(L, &tr, "sesame.jwt.access");
}

/*
 * Appends to the table on top the Set-Cookie of cookie c with value: its name and Path as
 * tokens_cookie_name and _path give them, HttpOnly for a token (the page's script reads only
 * the CSRF values), and max_age as it is (0 clears the cookie).
 */
static void add_cookie(lua_State *L, const struct token_config *tc, enum tokens_cookie c,
		       const char *value, long long max_age)
{
	char age[32];
	luaL_Buffer b;
	luaL_buffinit(L, &b);
	lua_pushfstring(L, "%s=%s; Path=%s; SameSite=%s", tokens_cookie_name(tc, c), value,
			tokens_cookie_path(tc, c), tc->cookie_samesite);
	luaL_addvalue(&b);
	if (c == TOKENS_COOKIE_ACCESS || c == TOKENS_COOKIE_REFRESH)
		luaL_addstring(&b, "; HttpOnly");
	if (tc->cookie_secure)
		luaL_addstring(&b, "; Secure");
	snprintf(age, sizeof(age), "; Max-Age=%lld", max_age);
	luaL_addstring(&b, age);
	luaL_pushresult(&b);
	lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/*
 * sesame.jwt.cookies(access_token[, refresh_token]): the Set-Cookie headers that carry the
 * tokens (HttpOnly) and their CSRF values (readable by the page's script), as a headers table
 * for a handler's answer; an empty table when jwt.cookies is off. Each lives as long as its
 * kind of token, capped at TOKENS_COOKIE_MAX_AGE (also for a token that never expires).
 */
static int l_jwt_cookies(lua_State *L)
{
	const struct token_config *tc = &luaapi_get(L)->cfg->jwt;
	const char *access = luaL_optstring(L, 1, NULL), *refresh = luaL_optstring(L, 2, NULL);
	lua_newtable(L);
	if (!tc->cookies)
		return 1;
	lua_newtable(L);
	const char *tokens[2] = {access, refresh};
	const enum tokens_cookie cookies[2][2] = {
	    {TOKENS_COOKIE_ACCESS, TOKENS_COOKIE_ACCESS_CSRF},
	    {TOKENS_COOKIE_REFRESH, TOKENS_COOKIE_REFRESH_CSRF}};
	long long ages[2] = {tokens_cookie_max_age(tc->access_expires),
			     tokens_cookie_max_age(tc->refresh_expires)};
	for (int i = 0; i < 2; i++) {
		char csrf[64];
		if (tokens[i] == NULL)
			continue;
		if (!tokens_csrf_of(tokens[i], csrf, sizeof(csrf)))
			return luaL_error(
			    L, "sesame.jwt.cookies: not a token sesame issued with cookies on");
		add_cookie(L, tc, cookies[i][0], tokens[i], ages[i]);
		add_cookie(L, tc, cookies[i][1], csrf, ages[i]);
	}
	lua_setfield(L, -2, "Set-Cookie");
	return 1;
}

/* ---- token state: refresh families and revocation, kept by the storage ---- */

enum token_op { FAMILY_NEW, FAMILY_ROTATE, TOKEN_REVOKE, SUBJECT_REVOKE };

struct token_job {
	struct luaapi_job lj;
	struct storage st;
	enum token_op op;
	long long now_ms, grace_ms;
	long long revoke_until; /* how long a revoked family's id stays revoked */
	char identity[256];
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

/* A token job for identity (NULL: the caller sets it from claims); raises on a bad one. */
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

/*
 * sesame.jwt.refresh(identity[, {expires = n|false}]): a refresh token starting a new family
 * (a log-in), recorded in storage; returns the token and the family's id, for the access
 * token's family option. Without storage, a token of no family, which cannot be rotated.
 */
static int l_jwt_refresh(lua_State *L)
{
	struct token_request tr = {.type = TOKEN_REFRESH, .identity = identity_arg(L, 1)};
	issue_options(L, 2, &tr);
	if (!plugins_storage(luaapi_get(L)->cfg->plugins, &(struct storage){0}))
		return luaapi_jwt_sign(L, &tr, "sesame.jwt.refresh");
	struct token_job *tj = new_token_job(L, FAMILY_NEW, "sesame.jwt.refresh", tr.identity);
	tj->expires = tr.expires;
	/* A copy of its own: the job thread reads it while the loop may release the Lua box's. */
	if (tr.claims != NULL && (tj->claims = json_deep_copy(tr.claims)) == NULL) {
		token_release(&tj->lj);
		return luaL_error(L, "out of memory");
	}
	tokens_uuid4(tj->family);
	tokens_uuid4(tj->next);
	return luaapi_await_job(L, &tj->lj, "sesame.jwt.refresh");
}

/* The claims argument: a table with a jti and a sub, as req.claims holds them. */
static void claims_arg(lua_State *L, int idx, struct token_job *tj, const char *fname)
{
	const char *jti = token_id(L, idx, "jti");
	lua_getfield(L, idx, "sub");
	const char *sub = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
			      ? lua_tostring(L, -1)
			      : NULL;
	if (jti == NULL || sub == NULL || strlen(sub) >= sizeof(tj->identity)) {
		free(tj);
		luaL_error(L, "%s takes a verified token's claims (req.claims)", fname);
	}
	snprintf(tj->jti, sizeof(tj->jti), "%s", jti);
	snprintf(tj->identity, sizeof(tj->identity), "%s", sub);
	lua_pop(L, 1);
	lua_getfield(L, idx, "fam");
	if (!lua_isnil(L, -1) && token_id(L, idx, "fam") == NULL) {
		free(tj);
		luaL_error(L, "%s: the claims' fam is not a family id", fname);
	}
	lua_pop(L, 1);
	const char *fam = token_id(L, idx, "fam");
	if (fam != NULL)
		snprintf(tj->family, sizeof(tj->family), "%s", fam);
}

/*
 * sesame.jwt.rotate(claims): spends the refresh token whose claims these are (req.claims on
 * an auth = "refresh" route) and returns its successor and the family's id; or nil and
 * "token revoked" when the family is revoked or ended, or when the token was spent already,
 * which revokes its whole family (but within jwt.refresh_grace of its rotation, racing
 * refreshes of one client both get the successor). A refresh token without fam (issued by
 * flask-jwt-extended) starts a family named after its jti. The successor carries the spent
 * token's own claims (the operator's, not sesame's), which come back as the third result
 * (nil when there are none), for the new access token's claims option.
 */
static int l_jwt_rotate(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "type");
	const char *type = lua_tostring(L, -1);
	if (type == NULL || strcmp(type, "refresh") != 0)
		return luaL_error(L, "sesame.jwt.rotate takes a refresh token's claims");
	lua_pop(L, 1);
	json_t *custom = custom_claims(L, 1, true);
	struct token_job *tj = new_token_job(L, FAMILY_ROTATE, "sesame.jwt.rotate", NULL);
	claims_arg(L, 1, tj, "sesame.jwt.rotate");
	if (custom != NULL && (tj->claims = json_deep_copy(custom)) == NULL) {
		token_release(&tj->lj);
		return luaL_error(L, "out of memory");
	}
	if (tj->family[0] == '\0') {
		snprintf(tj->family, sizeof(tj->family), "%s", tj->jti);
		tj->adopt = true;
	}
	tokens_uuid4(tj->next);
	return luaapi_await_job(L, &tj->lj, "sesame.jwt.rotate");
}

/* Owns claims in JSON while Lua works with them: an error raised in between leaks nothing. */
static const char claims_box_mt[] = "sesame.claims_box";

static int claims_box_gc(lua_State *L)
{
	json_t **box = lua_touserdata(L, 1);
	json_decref(*box);
	*box = NULL;
	return 0;
}

/* Pushes an empty box; the caller puts the claims in it. */
static json_t **push_claims_box(lua_State *L)
{
	json_t **box = lua_newuserdatauv(L, sizeof(json_t *), 0);
	*box = NULL;
	if (luaL_newmetatable(L, claims_box_mt)) {
		lua_pushcfunction(L, claims_box_gc);
		lua_setfield(L, -2, "__gc");
	}
	lua_setmetatable(L, -2);
	return box;
}

/*
 * The claims the revocation policy reads (jti, sub, fam, exp) of the table at idx, as JSON;
 * any other claim may hold what JSON cannot. A value of a type no claim has becomes null, which
 * the policy refuses. NULL when out of memory.
 */
static json_t *policy_claims(lua_State *L, int idx)
{
	static const char *const names[] = {"jti", "sub", "fam", "exp"};
	json_t *claims = json_object();
	for (size_t i = 0; claims != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
		json_t *v = NULL;
		size_t len;
		switch (lua_getfield(L, idx, names[i])) {
		case LUA_TNIL:
			break;
		case LUA_TSTRING: {
			const char *s = lua_tolstring(L, -1, &len);
			v = json_stringn_nocheck(s, len);
			break;
		}
		case LUA_TNUMBER:
			v = lua_isinteger(L, -1) ? json_integer(lua_tointeger(L, -1))
						 : json_real(lua_tonumber(L, -1));
			break;
		default:
			v = json_null();
			break;
		}
		lua_pop(L, 1);
		if (v != NULL && json_object_set_new(claims, names[i], v) != 0) {
			json_decref(claims);
			claims = NULL;
		}
	}
	return claims;
}

/*
 * sesame.jwt.revoke(claims): revokes the token (its jti) and, when it belongs to one, its
 * refresh family, as tokens_revocation decides: every worker of every sesamed on this storage
 * refuses them within jwt.revocation_refresh, this worker at once. Returns true.
 */
static int l_jwt_revoke(lua_State *L)
{
	const char *fname = "sesame.jwt.revoke";
	luaL_checktype(L, 1, LUA_TTABLE);
	struct luaapi *api = luaapi_get(L);
	json_t **box = push_claims_box(L);
	if ((*box = policy_claims(L, 1)) == NULL)
		return luaL_error(L, "out of memory");
	struct token_revocation rev;
	const char *why = tokens_revocation(&api->cfg->jwt, *box, clock_wall_ms() / 1000, &rev);
	if (why != NULL)
		return luaL_error(L, "%s: %s", fname, why);
	struct token_job *tj = new_token_job(L, TOKEN_REVOKE, fname, NULL);
	snprintf(tj->jti, sizeof(tj->jti), "%s", rev.jti);
	snprintf(tj->family, sizeof(tj->family), "%s", rev.family != NULL ? rev.family : "");
	tj->jti_expires = rev.jti_until;
	tj->revoke_until = rev.family_until;
	return luaapi_await_job(L, &tj->lj, fname);
}

/*
 * sesame.jwt.revoke_all(identity[, {except_family = id}]): logs identity out everywhere:
 * revokes every refresh family of it (each log-in's refresh and access tokens) but
 * except_family (the caller's own session, as req.claims.fam names it) on every worker of
 * every sesamed within jwt.revocation_refresh, this worker at once, and its tokens without
 * a family issued until now (its cutoff) within jwt.revocation_refresh. Returns how many
 * families were revoked.
 */
static int l_jwt_revoke_all(lua_State *L)
{
	const char *identity = identity_arg(L, 1), *except = NULL;
	char cutoff[SESAME_TOKEN_ID_MAX + 1];
	if (sesame_subject_cutoff_id(identity, cutoff) != 0)
		return luaL_argerror(L, 1,
				     "an identity to revoke is 1 to 60 printable ASCII bytes");
	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		int t = lua_getfield(L, 2, "except_family");
		lua_pop(L, 1);
		if (t != LUA_TNIL && (except = token_id(L, 2, "except_family")) == NULL)
			return luaL_argerror(L, 2, "except_family is a refresh family's id");
	}
	struct token_job *tj = new_token_job(L, SUBJECT_REVOKE, "sesame.jwt.revoke_all", identity);
	if (except != NULL)
		snprintf(tj->family, sizeof(tj->family), "%s", except);
	return luaapi_await_job(L, &tj->lj, "sesame.jwt.revoke_all");
}

/* sesame.jwt.unset_cookies(): the Set-Cookie headers that clear the token cookies (logout),
 * each with the name and Path it was set with: a browser matches both. */
static int l_jwt_unset_cookies(lua_State *L)
{
	const struct token_config *tc = &luaapi_get(L)->cfg->jwt;
	lua_newtable(L);
	if (!tc->cookies)
		return 1;
	lua_newtable(L);
	for (int c = TOKENS_COOKIE_ACCESS; c <= TOKENS_COOKIE_REFRESH_CSRF; c++)
		add_cookie(L, tc, (enum tokens_cookie)c, "", 0);
	lua_setfield(L, -2, "Set-Cookie");
	return 1;
}

/*
 * sesame.jwt.decode(token): the claims of an access or refresh token, verified as a route's
 * token is (algorithm, signature, exp and nbf, iss and aud, revocation); or nil and the
 * reason: "invalid token", "token expired" or "token revoked".
 */
static int l_jwt_decode(lua_State *L)
{
	struct luaapi *api = luaapi_get(L);
	size_t len;
	const char *token = luaL_checklstring(L, 1, &len);
	char identity[256];
	json_t **box = push_claims_box(L);
	enum token_verdict v =
	    tokens_verify(&api->cfg->jwt, token, len, WANT_ANY, box, identity, sizeof(identity));
	const char *why = v != TOKEN_OK			? tokens_verdict_message(v)
			  : auth_revoked(api->rv, *box) ? "token revoked"
							: NULL;
	if (why != NULL || json_push(L, *box, 16) != 0) {
		lua_pushnil(L);
		lua_pushstring(L, why != NULL ? why : "invalid token");
		return 2;
	}
	return 1;
}

/* sesame.jwt.jwks(): the public keys' JWKS document, {keys = {...}}; keys is empty for HS. */
static int l_jwt_jwks(lua_State *L)
{
	json_t *doc = tokens_jwks(&luaapi_get(L)->cfg->jwt);
	int rc = doc != NULL ? json_push(L, doc, 4) : -1;
	json_decref(doc);
	if (rc != 0)
		return luaL_error(L, "sesame.jwt.jwks: cannot build the document");
	return 1;
}

void luaapi_jwt_inject(lua_State *L)
{
	static const luaL_Reg funcs[] = {{"access", l_jwt_access},
					 {"refresh", l_jwt_refresh},
					 {"rotate", l_jwt_rotate},
					 {"revoke", l_jwt_revoke},
					 {"revoke_all", l_jwt_revoke_all},
					 {"decode", l_jwt_decode},
					 {"cookies", l_jwt_cookies},
					 {"unset_cookies", l_jwt_unset_cookies},
					 {"jwks", l_jwt_jwks},
					 {NULL, NULL}};
	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "jwt");
}
