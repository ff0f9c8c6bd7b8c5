/*
 * lua_jwt.c: sesame.jwt, the tokens a route issues, rotates, revokes and reads.
 *
 * Cookies, decoding and the JWKS are made or read on the loop; an access token is signed
 * where lua_jwt_sign.c decides (an RS one on a job thread). Refresh families and revocation
 * are token state that storage keeps: those functions read their arguments here and run a
 * token job (lua_jwt_family.c) on a job thread, which also signs a family's refresh token.
 */
#include "autoconfig.h"

#include <stdio.h>
#include <string.h>

#include "auth.h"
#include "clock.h"
#include "json.h"
#include "log.h"
#include "lua_private.h"
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
	return luaapi_family_start(L, &tr, "sesame.jwt.refresh");
}

/*
 * The ids of the refresh token whose claims are the table at idx, as req.claims holds them:
 * a jti, a sub (left on the stack, which keeps a number's string alive) and a fam or none.
 */
static void spent_arg(lua_State *L, int idx, struct luaapi_spent *spent, const char *fname)
{
	spent->jti = token_id(L, idx, "jti");
	int st = lua_getfield(L, idx, "sub");
	spent->sub = st == LUA_TSTRING || st == LUA_TNUMBER ? lua_tostring(L, -1) : NULL;
	if (spent->jti == NULL || spent->sub == NULL || strlen(spent->sub) >= LUAAPI_IDENTITY_MAX)
		luaL_error(L, "%s takes a verified token's claims (req.claims)", fname);
	int ft = lua_getfield(L, idx, "fam");
	lua_pop(L, 1);
	spent->fam = token_id(L, idx, "fam");
	if (ft != LUA_TNIL && spent->fam == NULL)
		luaL_error(L, "%s: the claims' fam is not a family id", fname);
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
	struct luaapi_spent spent;
	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "type");
	const char *type = lua_tostring(L, -1);
	if (type == NULL || strcmp(type, "refresh") != 0)
		return luaL_error(L, "sesame.jwt.rotate takes a refresh token's claims");
	lua_pop(L, 1);
	json_t *custom = custom_claims(L, 1, true);
	spent_arg(L, 1, &spent, "sesame.jwt.rotate");
	return luaapi_family_rotate(L, &spent, custom, "sesame.jwt.rotate");
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
	return luaapi_token_revoke(L, &rev, fname);
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
	return luaapi_subject_revoke(L, identity, except, "sesame.jwt.revoke_all");
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
