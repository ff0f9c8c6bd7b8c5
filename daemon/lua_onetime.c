/*
 * lua_onetime.c: sesame.onetime, the one-time tokens of the account flows (an e-mail
 * confirmation, a password reset, a route script's own): issue, check, spend, revoke.
 *
 * A token is 32 random bytes from libsodium, given to the script as 43 characters of
 * base64url; the store keeps only its SHA-256 (hex), with its purpose, its user, an optional
 * string and an expiry on the store's clock, so a copy of the database holds no usable token.
 * Spending deletes it in the store in one statement: of two requests spending one token at
 * once, on any nodes, one gets the user. Checking one reads it without spending it, so that a
 * route can refuse a bad link before work that can fail, and spend it once that work is done.
 * A token that is not 43 characters of base64url is
 * no one's: it is answered nil without a storage call, as an unknown, spent, expired or
 * foreign one is. The token and its hash are wiped from the job's memory when it ends; no
 * token reaches a log.
 */
#include "autoconfig.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "lua_private.h"
#include "metrics.h"

#define TOKEN_BYTES    32
#define TOKEN_CHARS    43 /* base64url of 32 bytes, unpadded */
#define HASH_HEX       (crypto_hash_sha256_BYTES * 2)
#define PURPOSE_MAX    32
#define DATA_MAX       1024
#define TTL_DEFAULT    3600
#define TTL_MAX	       (366LL * 86400)
#define USER_ID_DIGITS 19

enum onetime_op { ONETIME_ISSUE, ONETIME_CHECK, ONETIME_SPEND, ONETIME_REVOKE };

struct onetime_job {
	struct luaapi_job lj;
	struct storage st;
	enum onetime_op op;
	char token[TOKEN_CHARS + 1];
	char hash[HASH_HEX + 1];
	char purpose[PURPOSE_MAX + 1]; /* "" for every purpose (revoke) */
	long long user_id, ttl;
	char *data;
	struct sesame_otp spent;
	char buf[DATA_MAX + 1];
	enum sesame_storage_result rc;
	char err[LOG_ERR_MAX];
};

static void onetime_run(struct job *job)
{
	struct onetime_job *oj = (struct onetime_job *)job;
	const struct sesame_storage *fn = oj->st.fn;
	const char *purpose = oj->purpose[0] != '\0' ? oj->purpose : NULL;
	oj->err[0] = '\0';
	if (oj->op == ONETIME_ISSUE) {
		struct sesame_otp otp = {.hash = oj->hash,
					 .purpose = oj->purpose,
					 .user_id = oj->user_id,
					 .data = oj->data};
		oj->rc = fn->otp_create(oj->st.state, &otp, oj->ttl, oj->err, sizeof(oj->err));
		metrics_storage(METRICS_OTP_CREATE, oj->rc);
	} else if (oj->op == ONETIME_CHECK) {
		oj->rc = fn->otp_find(oj->st.state, oj->hash, oj->purpose, &oj->spent, oj->buf,
				      sizeof(oj->buf), oj->err, sizeof(oj->err));
		metrics_storage(METRICS_OTP_FIND, oj->rc);
	} else if (oj->op == ONETIME_SPEND) {
		oj->rc = fn->otp_spend(oj->st.state, oj->hash, oj->purpose, &oj->spent, oj->buf,
				       sizeof(oj->buf), oj->err, sizeof(oj->err));
		metrics_storage(METRICS_OTP_SPEND, oj->rc);
	} else {
		oj->rc =
		    fn->otp_revoke(oj->st.state, oj->user_id, purpose, oj->err, sizeof(oj->err));
		metrics_storage(METRICS_OTP_REVOKE, oj->rc);
	}
}

static int onetime_push(struct luaapi_job *lj, lua_State *co)
{
	struct onetime_job *oj = (struct onetime_job *)lj;
	int n = luaapi_storage_push(co, oj->rc, LUAAPI_REFUSAL(SESAME_STORAGE_NOT_FOUND), oj->err);
	if (n != 0)
		return n;
	if (oj->op == ONETIME_ISSUE) {
		lua_pushstring(co, oj->token);
		return 1;
	}
	if (oj->op == ONETIME_REVOKE) {
		lua_pushboolean(co, 1);
		return 1;
	}
	lua_pushinteger(co, (lua_Integer)oj->spent.user_id);
	if (oj->spent.data != NULL)
		lua_pushstring(co, oj->spent.data);
	else
		lua_pushnil(co);
	return 2;
}

static void onetime_release(struct luaapi_job *lj)
{
	struct onetime_job *oj = (struct onetime_job *)lj;
	if (oj->data != NULL)
		sodium_memzero(oj->data, strlen(oj->data));
	free(oj->data);
	sodium_memzero(oj, sizeof(*oj));
	free(oj);
}

/* The purpose at idx: 1 to 32 bytes of [a-z0-9_]; raises on any other. */
static const char *purpose_arg(lua_State *L, int idx)
{
	size_t len;
	const char *p = luaL_checklstring(L, idx, &len);
	if (len == 0 || len > PURPOSE_MAX ||
	    strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_") != len)
		luaL_argerror(L, idx, "a purpose is 1 to 32 characters of a-z, 0-9 and _");
	return p;
}

/* The user id at idx: a positive integer, or a string of one (as sub writes it). */
static long long user_arg(lua_State *L, int idx)
{
	int isint = 0;
	lua_Integer id = lua_tointegerx(L, idx, &isint);
	size_t len = 0;
	const char *s = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &len) : NULL;
	if (s != NULL && (len == 0 || len > USER_ID_DIGITS || strspn(s, "0123456789") != len))
		isint = 0;
	if (!isint || id <= 0)
		luaL_argerror(L, idx, "a user id is a positive integer");
	return (long long)id;
}

static struct onetime_job *new_onetime_job(lua_State *L, enum onetime_op op, const char *fname)
{
	struct storage st;
	struct onetime_job *oj = luaapi_storage_job(L, sizeof(*oj), &st, fname);
	oj->st = st;
	oj->op = op;
	oj->lj.job.run = onetime_run;
	oj->lj.push = onetime_push;
	oj->lj.release = onetime_release;
	return oj;
}

/* The SHA-256 of token, in hex, into hash. */
static void hash_token(const char *token, char hash[HASH_HEX + 1])
{
	unsigned char digest[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(digest, (const unsigned char *)token, strlen(token));
	sodium_bin2hex(hash, HASH_HEX + 1, digest, sizeof(digest));
	sodium_memzero(digest, sizeof(digest));
}

/* The options table at idx (or none): ttl and data; raises on a bad one. */
static void issue_options(lua_State *L, int idx, long long *ttl, const char **data)
{
	*ttl = TTL_DEFAULT;
	*data = NULL;
	if (lua_isnoneornil(L, idx))
		return;
	luaL_checktype(L, idx, LUA_TTABLE);
	if (lua_getfield(L, idx, "ttl") != LUA_TNIL) {
		int isint = 0;
		*ttl = (long long)lua_tointegerx(L, -1, &isint);
		if (!isint || *ttl < 1 || *ttl > TTL_MAX)
			luaL_argerror(L, idx, "ttl is whole seconds, from 1 to 366 days");
	}
	size_t len = 0;
	if (lua_getfield(L, idx, "data") != LUA_TNIL) {
		*data = lua_tolstring(L, -1, &len);
		if (lua_type(L, -1) != LUA_TSTRING || len > DATA_MAX || strlen(*data) != len)
			luaL_argerror(L, idx,
				      "data is a string of at most 1024 bytes, without NUL");
	}
}

/* sesame.onetime.issue(purpose, user_id[, {ttl = seconds, data = string}]) -> token. A
 * user_id of 0 is no user yet: a registration that waits for its link keeps its account in
 * data, and no user's revoke reaches it. */
static int l_onetime_issue(lua_State *L)
{
	const char *purpose = purpose_arg(L, 1), *data;
	bool nobody = lua_isinteger(L, 2) && lua_tointeger(L, 2) == 0;
	long long user_id = nobody ? 0 : user_arg(L, 2);
	long long ttl;
	issue_options(L, 3, &ttl, &data);
	LUAAPI_STORAGE_NEED(L, otp_create);
	struct onetime_job *oj = new_onetime_job(L, ONETIME_ISSUE, "sesame.onetime.issue");
	unsigned char raw[TOKEN_BYTES];
	randombytes_buf(raw, sizeof(raw));
	sodium_bin2base64(oj->token, sizeof(oj->token), raw, sizeof(raw),
			  sodium_base64_VARIANT_URLSAFE_NO_PADDING);
	sodium_memzero(raw, sizeof(raw));
	hash_token(oj->token, oj->hash);
	memcpy(oj->purpose, purpose, strlen(purpose) + 1);
	oj->user_id = user_id;
	oj->ttl = ttl;
	if (data != NULL && data[0] != '\0' && (oj->data = strdup(data)) == NULL) {
		onetime_release(&oj->lj);
		return luaL_error(L, "out of memory");
	}
	return luaapi_await_job(L, &oj->lj, "sesame.onetime.issue");
}

/* Is token 43 characters of base64url, as issue makes them? */
static bool well_formed(const char *token, size_t len)
{
	return len == TOKEN_CHARS &&
	       strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
		   len;
}

/* A token's look-up, checked or spent: purpose, then the token at 2. */
static int find_token(lua_State *L, enum onetime_op op, const char *fname)
{
	const char *purpose = purpose_arg(L, 1);
	size_t len = 0;
	const char *token = lua_type(L, 2) == LUA_TSTRING ? lua_tolstring(L, 2, &len) : NULL;
	if (token == NULL || !well_formed(token, len)) {
		lua_pushnil(L);
		return 1;
	}
	if (op == ONETIME_CHECK)
		LUAAPI_STORAGE_NEED(L, otp_find);
	else
		LUAAPI_STORAGE_NEED(L, otp_spend);
	struct onetime_job *oj = new_onetime_job(L, op, fname);
	hash_token(token, oj->hash);
	memcpy(oj->purpose, purpose, strlen(purpose) + 1);
	return luaapi_await_job(L, &oj->lj, fname);
}

/* sesame.onetime.spend(purpose, token) -> user_id, data; or nil (unknown, spent, expired,
 * for another purpose, malformed: all alike). */
static int l_onetime_spend(lua_State *L)
{
	return find_token(L, ONETIME_SPEND, "sesame.onetime.spend");
}

/* sesame.onetime.check(purpose, token) -> user_id, data, as spend answers, the token left. */
static int l_onetime_check(lua_State *L)
{
	return find_token(L, ONETIME_CHECK, "sesame.onetime.check");
}

/* sesame.onetime.revoke(user_id[, purpose]) -> true: the user's tokens (of that purpose). */
static int l_onetime_revoke(lua_State *L)
{
	long long user_id = user_arg(L, 1);
	const char *purpose = lua_isnoneornil(L, 2) ? "" : purpose_arg(L, 2);
	LUAAPI_STORAGE_NEED(L, otp_revoke);
	struct onetime_job *oj = new_onetime_job(L, ONETIME_REVOKE, "sesame.onetime.revoke");
	oj->user_id = user_id;
	memcpy(oj->purpose, purpose, strlen(purpose) + 1);
	return luaapi_await_job(L, &oj->lj, "sesame.onetime.revoke");
}

void luaapi_onetime_inject(lua_State *L)
{
	static const luaL_Reg funcs[] = {{"issue", l_onetime_issue},
					 {"check", l_onetime_check},
					 {"spend", l_onetime_spend},
					 {"revoke", l_onetime_revoke},
					 {NULL, NULL}};
	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "onetime");
}
