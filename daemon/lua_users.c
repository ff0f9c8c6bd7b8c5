/*
 * lua_users.c: sesame.users, the user store: create, find (with the disabled flag that
 * sesamectl user disable sets, and whether the address is verified), update (the password
 * hash, the e-mail address, the verified flag), delete (the user and its token state, as
 * sesamectl user delete), and the failed log-ins per account (failures, failed, succeeded)
 * that limits.login_failures bounds.
 *
 * Each is a storage call on a job thread: the fields are copied into a user job (and wiped
 * when it is released, as one is a password hash) and the handler yields until the storage
 * plugin answers. Failed log-ins are counted by the store, on its clock, so that every node
 * sharing it counts the same guesses.
 */
#include "autoconfig.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "lua_private.h"
#include "metrics.h"
#include "ratelimit.h"
#include "tokens.h"

/* sesame.users.create{...}, .find{...}, .update{...} and .delete(id): storage calls on a job
 * thread. */
enum user_op { USER_CREATE, USER_FIND, USER_UPDATE, USER_DELETE };

struct user_job {
	struct luaapi_job lj;
	struct storage st;
	enum user_op op;
	/* create: email, username, password; find: column, value; update: password, email */
	char *field[3];
	long long id;
	int verified;	  /* update: 1 or 0 to set, -1 to leave */
	long long until;  /* delete: how long its families stay revoked */
	char subject[24]; /* delete: the id as sub writes it */
	enum sesame_storage_result rc;
	struct sesame_user found;
	char buf[2048];
	char err[LOG_ERR_MAX];
};

static void user_find_run(struct user_job *uj, const char *by, const char *value)
{
	uj->rc = uj->st.fn->user_find(uj->st.state, by, value, &uj->found, uj->buf, sizeof(uj->buf),
				      uj->err, sizeof(uj->err));
	metrics_storage(METRICS_USER_FIND, uj->rc);
}

/* The changes update asks for, in order, until one is refused. */
static void user_update_run(struct user_job *uj)
{
	const struct sesame_storage *fn = uj->st.fn;
	uj->rc = SESAME_STORAGE_OK;
	if (uj->field[0] != NULL) {
		uj->rc = fn->user_set_password(uj->st.state, uj->id, uj->field[0], uj->err,
					       sizeof(uj->err));
		metrics_storage(METRICS_USER_SET_PASSWORD, uj->rc);
	}
	if (uj->rc == SESAME_STORAGE_OK && uj->field[1] != NULL) {
		uj->rc = fn->user_set_email(uj->st.state, uj->id, uj->field[1], uj->err,
					    sizeof(uj->err));
		metrics_storage(METRICS_USER_SET_EMAIL, uj->rc);
	}
	if (uj->rc == SESAME_STORAGE_OK && uj->verified >= 0) {
		uj->rc = fn->user_set_verified(uj->st.state, uj->id, uj->verified == 1, uj->err,
					       sizeof(uj->err));
		metrics_storage(METRICS_USER_SET_VERIFIED, uj->rc);
	}
}

/* The user's e-mail first (its failed log-ins go with it), then the user and its state. */
static void user_delete_run(struct user_job *uj)
{
	user_find_run(uj, "id", uj->subject);
	if (uj->rc != SESAME_STORAGE_OK)
		return;
	uj->rc = uj->st.fn->user_delete(uj->st.state, uj->id, uj->subject, uj->found.email,
					uj->until, uj->err, sizeof(uj->err));
	metrics_storage(METRICS_USER_DELETE, uj->rc);
}

static void user_run(struct job *job)
{
	struct user_job *uj = (struct user_job *)job;
	uj->err[0] = '\0';
	if (uj->op == USER_CREATE) {
		struct sesame_user u = {
		    .email = uj->field[0], .username = uj->field[1], .password = uj->field[2]};
		uj->rc =
		    uj->st.fn->user_create(uj->st.state, &u, &uj->id, uj->err, sizeof(uj->err));
		metrics_storage(METRICS_USER_CREATE, uj->rc);
	} else if (uj->op == USER_UPDATE) {
		user_update_run(uj);
	} else if (uj->op == USER_DELETE) {
		user_delete_run(uj);
	} else {
		user_find_run(uj, uj->field[0], uj->field[1]);
	}
}

static int user_push(struct luaapi_job *lj, lua_State *co)
{
	struct user_job *uj = (struct user_job *)lj;
	int n = luaapi_storage_push(co, uj->rc,
				    LUAAPI_REFUSAL(SESAME_STORAGE_CONFLICT) |
					LUAAPI_REFUSAL(SESAME_STORAGE_NOT_FOUND),
				    uj->err);
	if (n != 0)
		return n;
	if (uj->op == USER_DELETE) {
		lua_pushboolean(co, 1);
		return 1;
	}
	if (uj->op != USER_FIND) {
		lua_pushinteger(co, (lua_Integer)uj->id);
		return 1;
	}
	lua_createtable(co, 0, 6);
	lua_pushinteger(co, (lua_Integer)uj->found.id);
	lua_setfield(co, -2, "id");
	lua_pushstring(co, uj->found.email);
	lua_setfield(co, -2, "email");
	lua_pushstring(co, uj->found.username);
	lua_setfield(co, -2, "username");
	lua_pushstring(co, uj->found.password);
	lua_setfield(co, -2, "password");
	if (uj->found.disabled_at != 0) {
		lua_pushboolean(co, 1);
		lua_setfield(co, -2, "disabled");
	}
	if (uj->found.verified_at != 0) {
		lua_pushboolean(co, 1);
		lua_setfield(co, -2, "verified");
	}
	return 1;
}

static void user_release(struct luaapi_job *lj)
{
	struct user_job *uj = (struct user_job *)lj;
	for (int i = 0; i < 3; i++) {
		if (uj->field[i] != NULL)
			sodium_memzero(uj->field[i], strlen(uj->field[i]));
		free(uj->field[i]);
	}
	sodium_memzero(uj->buf, sizeof(uj->buf));
	free(uj);
}

static struct user_job *new_user_job(lua_State *L, enum user_op op)
{
	struct storage st;
	struct user_job *uj = luaapi_storage_job(L, sizeof(*uj), &st, "sesame.users");
	uj->st = st;
	uj->op = op;
	uj->lj.job.run = user_run;
	uj->lj.push = user_push;
	uj->lj.release = user_release;
	return uj;
}

static int l_users_create(lua_State *L)
{
	static const char fname[] = "sesame.users.create";
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *email = luaapi_string_field(L, 1, "email", true, NULL, fname),
		   *username = luaapi_string_field(L, 1, "username", true, NULL, fname),
		   *password = luaapi_string_field(L, 1, "password", true, NULL, fname);
	struct user_job *uj = new_user_job(L, USER_CREATE);
	uj->field[0] = strdup(email);
	uj->field[1] = strdup(username);
	uj->field[2] = strdup(password);
	if (uj->field[0] == NULL || uj->field[1] == NULL || uj->field[2] == NULL) {
		user_release(&uj->lj);
		return luaL_error(L, "out of memory");
	}
	return luaapi_await_job(L, &uj->lj, "sesame.users.create");
}

/* Only the keys update knows, and at least one change besides the id. */
static void check_update_keys(lua_State *L)
{
	static const char *const known[] = {"id", "password", "email", "verified", NULL};
	int changes = 0;
	lua_pushnil(L);
	while (lua_next(L, 1) != 0) {
		lua_pop(L, 1);
		const char *key = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
		size_t i = 0;
		while (known[i] != NULL && strcmp(key, known[i]) != 0)
			i++;
		if (known[i] == NULL)
			luaL_error(L, "sesame.users.update: '%s' cannot be updated", key);
		changes += i > 0;
	}
	if (changes == 0)
		luaL_error(L, "sesame.users.update: nothing to update (password, email, verified)");
}

/* A user id: a positive integer, or a string of one. */
static long long id_field(lua_State *L, int idx, const char *fname)
{
	int isint = 0;
	lua_Integer id = lua_tointegerx(L, idx, &isint);
	if (!isint || id <= 0)
		luaL_error(L, "%s: 'id' must be a positive integer", fname);
	return (long long)id;
}

/*
 * sesame.users.update{id = ID[, password = HASH][, email = ADDRESS][, verified = BOOL]}: the
 * stored hash (after a rehash), the e-mail address (normalised by the caller: nil, "exists"
 * when another user has it), whether it is verified; in that order. Returns the id, or nil
 * when there is no such user.
 */
static int l_users_update(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	check_update_keys(L);
	lua_getfield(L, 1, "id");
	long long id = id_field(L, -1, "sesame.users.update");
	const char *password =
		       luaapi_string_field(L, 1, "password", false, NULL, "sesame.users.update"),
		   *email = luaapi_string_field(L, 1, "email", false, NULL, "sesame.users.update");
	int t = lua_getfield(L, 1, "verified");
	if (t != LUA_TNIL && t != LUA_TBOOLEAN)
		return luaL_error(L, "sesame.users.update: 'verified' must be true or false");
	if (email != NULL)
		LUAAPI_STORAGE_NEED(L, user_set_email);
	if (t == LUA_TBOOLEAN)
		LUAAPI_STORAGE_NEED(L, user_set_verified);
	struct user_job *uj = new_user_job(L, USER_UPDATE);
	uj->id = id;
	uj->verified = t == LUA_TBOOLEAN ? lua_toboolean(L, -1) : -1;
	if ((password != NULL && (uj->field[0] = strdup(password)) == NULL) ||
	    (email != NULL && (uj->field[1] = strdup(email)) == NULL)) {
		user_release(&uj->lj);
		return luaL_error(L, "out of memory");
	}
	return luaapi_await_job(L, &uj->lj, "sesame.users.update");
}

/*
 * sesame.users.delete(id) -> true, or nil when there is no such user: the user and, in the
 * same transaction, its refresh families (revoked, then deleted), its cutoff (its access
 * tokens refused by every worker within jwt.revocation_refresh), its failed log-ins, its
 * one-time tokens and its state, as sesamectl user delete does.
 */
static int l_users_delete(lua_State *L)
{
	struct luaapi *api = luaapi_get(L);
	long long id = id_field(L, 1, "sesame.users.delete");
	struct user_job *uj = new_user_job(L, USER_DELETE);
	uj->id = id;
	snprintf(uj->subject, sizeof(uj->subject), "%lld", id);
	uj->until = tokens_family_revoke_until(&api->cfg->jwt, clock_wall_ms() / 1000);
	return luaapi_await_job(L, &uj->lj, "sesame.users.delete");
}

/* A user id as sesame writes it in sub: a positive decimal number, no sign, no zero first. */
static bool canonical_id(const char *s)
{
	size_t n = strlen(s);
	return n > 0 && n < 19 && s[0] >= '1' && s[0] <= '9' && strspn(s, "0123456789") == n;
}

static int l_users_find(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	const char *by = lua_getfield(L, 1, "email") != LUA_TNIL ? "email" : "id";
	lua_pop(L, 1);
	int t = lua_getfield(L, 1, by);
	if (t != LUA_TSTRING && t != LUA_TNUMBER)
		return luaL_error(L, "sesame.users.find takes { email = ... } or { id = ... }");
	const char *value = lua_tostring(L, -1);
	if (strcmp(by, "id") == 0 && !canonical_id(value)) {
		/* "01", " 1", "1e0", "1abc": not an id sesame issued, so no one's. */
		lua_pushnil(L);
		return 1;
	}
	struct user_job *uj = new_user_job(L, USER_FIND);
	uj->field[0] = strdup(by);
	uj->field[1] = strdup(value);
	if (uj->field[0] == NULL || uj->field[1] == NULL) {
		user_release(&uj->lj);
		return luaL_error(L, "out of memory");
	}
	return luaapi_await_job(L, &uj->lj, "sesame.users.find");
}

/* sesame.users.failures/failed/succeeded(email): limits.login_failures, kept by storage. */
enum failure_op { FAILURE_CHECK, FAILURE_RECORD, FAILURE_RESET };

/* The longest account: an e-mail address. */
#define ACCOUNT_MAX 254

struct failure_job {
	struct luaapi_job lj;
	struct storage st;
	enum failure_op op;
	char account[ACCOUNT_MAX + 1];
	long long interval_ms, period_ms, retry_ms;
	enum sesame_storage_result rc;
	char err[LOG_ERR_MAX];
};

static void failure_run(struct job *job)
{
	struct failure_job *fj = (struct failure_job *)job;
	const struct sesame_storage *fn = fj->st.fn;
	fj->err[0] = '\0';
	if (fj->op == FAILURE_CHECK)
		fj->rc = fn->failure_check(fj->st.state, fj->account, fj->interval_ms,
					   fj->period_ms, &fj->retry_ms, fj->err, sizeof(fj->err));
	else if (fj->op == FAILURE_RECORD)
		fj->rc = fn->failure_record(fj->st.state, fj->account, fj->interval_ms,
					    fj->period_ms, fj->err, sizeof(fj->err));
	else
		fj->rc = fn->failure_reset(fj->st.state, fj->account, fj->err, sizeof(fj->err));
	metrics_storage(fj->op == FAILURE_CHECK	   ? METRICS_FAILURE_CHECK
			: fj->op == FAILURE_RECORD ? METRICS_FAILURE_RECORD
						   : METRICS_FAILURE_RESET,
			fj->rc);
}

static int failure_push(struct luaapi_job *lj, lua_State *co)
{
	struct failure_job *fj = (struct failure_job *)lj;
	int n = luaapi_storage_push(co, fj->rc, 0, fj->err);
	if (n != 0 || fj->op != FAILURE_CHECK)
		return n;
	if (fj->retry_ms > 0)
		luaapi_rate_limited(co, "login_failures", fj->account);
	lua_pushboolean(co, fj->retry_ms <= 0);
	lua_pushinteger(co, fj->retry_ms <= 0 ? 0 : (lua_Integer)((fj->retry_ms + 999) / 1000));
	return 2;
}

static void failure_release(struct luaapi_job *lj)
{
	free(lj);
}

/*
 * Starts op on the account at 1 (an e-mail: letter case ignored) under limits.login_failures;
 * returns 0 without waiting when the rule is off.
 */
static int failure_call(lua_State *L, enum failure_op op, const char *fname)
{
	size_t len;
	const char *email = luaL_checklstring(L, 1, &len);
	if (len > ACCOUNT_MAX)
		return luaL_error(L, "%s: an account is at most %d bytes", fname, ACCOUNT_MAX);
	const struct ratelimit_rule *rule =
	    ratelimit_rules_find(&luaapi_get(L)->cfg->limits, "login_failures");
	if (rule == NULL || rule->count == 0) {
		if (op != FAILURE_CHECK)
			return 0;
		lua_pushboolean(L, 1);
		lua_pushinteger(L, 0);
		return 2;
	}
	struct storage st;
	struct failure_job *fj = luaapi_storage_job(L, sizeof(*fj), &st, fname);
	fj->st = st;
	fj->op = op;
	for (size_t i = 0; i < len; i++)
		fj->account[i] =
		    (char)(email[i] >= 'A' && email[i] <= 'Z' ? email[i] + 32 : email[i]);
	fj->period_ms = (long long)rule->period_ms;
	fj->interval_ms = fj->period_ms / rule->count;
	fj->lj.job.run = failure_run;
	fj->lj.push = failure_push;
	fj->lj.release = failure_release;
	return luaapi_await_job(L, &fj->lj, fname);
}

/* sesame.users.failures(email) -> allowed, retry_after: may a log-in be tried now? */
static int l_users_failures(lua_State *L)
{
	return failure_call(L, FAILURE_CHECK, "sesame.users.failures");
}

/* sesame.users.failed(email): counts a failed log-in (a wrong password, an unknown e-mail). */
static int l_users_failed(lua_State *L)
{
	return failure_call(L, FAILURE_RECORD, "sesame.users.failed");
}

/* sesame.users.succeeded(email): a log-in succeeded; the account's failures are forgotten. */
static int l_users_succeeded(lua_State *L)
{
	return failure_call(L, FAILURE_RESET, "sesame.users.succeeded");
}

void luaapi_users_inject(lua_State *L)
{
	static const luaL_Reg funcs[] = {
	    {"create", l_users_create},	      {"find", l_users_find},
	    {"update", l_users_update},	      {"delete", l_users_delete},
	    {"failures", l_users_failures},   {"failed", l_users_failed},
	    {"succeeded", l_users_succeeded}, {NULL, NULL}};
	luaL_newlib(L, funcs);
	lua_setfield(L, -2, "users");
}
