/*
 * config_limits.c: reads the rate limits (the top-level `limits` table) and the proxies whose
 * X-Forwarded-For is believed (server.trusted_proxies).
 *
 * Every name in `limits` is a rule: the shipped ones (register, login, login_failures) keep
 * their defaults unless set, and any other name is the operator's own, for sesame.limit.
 * A rule is "N/second", "N/minute", "N/hour", or false for none. server.metrics names the
 * peers GET /metrics answers with the same addresses and networks.
 */
#include "autoconfig.h"

#include "config_limits.h"

#include <lauxlib.h>
#include <lua.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "ratelimit.h"
#include "proxies.h"

static void read_rule(struct config_reader *rd, struct ratelimit_rules *rules, const char *name)
{
	char keypath[RATELIMIT_NAME_MAX + 16];
	struct ratelimit_rule rule = {.count = 0};
	int t = lua_type(rd->L, -1);
	snprintf(keypath, sizeof(keypath), "limits.%s", name);
	if (t == LUA_TBOOLEAN && !lua_toboolean(rd->L, -1)) {
		rule.count = 0;
	} else if (t != LUA_TSTRING || ratelimit_parse(lua_tostring(rd->L, -1), &rule) != 0) {
		config_fail(rd, keypath,
			    "expected \"N/second\", \"N/minute\" or \"N/hour\" (N from 1 to "
			    "1000000), or false");
		return;
	}
	if (ratelimit_rules_set(rules, name, &rule) != 0)
		config_fail(rd, keypath, "a rule's name is 1 to %d bytes", RATELIMIT_NAME_MAX - 1);
}

void config_limits_read(struct config_reader *rd, int tbl, const struct config_key *key,
			const char *keypath)
{
	struct ratelimit_rules *rules = config_field(rd, key);
	lua_State *L = rd->L;
	if (lua_isnil(L, -1) || !config_is_table(rd, keypath))
		return;
	int limits = lua_absindex(L, -1);
	lua_pushnil(L);
	while (lua_next(L, limits) != 0) {
		if (lua_type(L, -2) != LUA_TSTRING)
			config_fail(rd, keypath, "rules are named: found a %s key",
				    luaL_typename(L, -2));
		else
			read_rule(rd, rules, lua_tostring(L, -2));
		lua_pop(L, 1);
	}
}

void config_trusted_proxies(struct config_reader *rd, int tbl, const struct config_key *key,
			    const char *keypath)
{
	struct proxies *p = config_field(rd, key);
	char **nets = NULL;
	size_t n = 0;
	if (lua_isnil(rd->L, -1))
		return;
	config_read_strings(rd, -1, keypath, &nets, &n);
	for (size_t i = 0; i < n; i++) {
		struct proxies_net net;
		if (proxies_parse(nets[i], &net) != 0)
			config_fail(rd, keypath,
				    "%s: expected an IPv4 or IPv6 address or network "
				    "(ADDRESS/PREFIX)",
				    nets[i]);
		else if (proxies_add(p, &net) != 0)
			config_fail(rd, keypath, "out of memory");
		free(nets[i]);
	}
	free(nets);
}

/* server.metrics.allow: replaces the default (loopback) when set. */
static void read_metrics_allow(struct config_reader *rd, int tbl, const struct config_key *key,
			       const char *keypath)
{
	if (lua_isnil(rd->L, -1))
		return;
	proxies_clear(config_field(rd, key));
	config_trusted_proxies(rd, tbl, key, keypath);
}

void config_metrics(struct config_reader *rd, int tbl, const struct config_key *key,
		    const char *keypath)
{
	static const struct config_key keys[] = {
	    {"allow", read_metrics_allow, 0, 0, offsetof(struct config_metrics, allow)},
	    {NULL, NULL, 0, 0, 0},
	};
	struct config_metrics *m = config_field(rd, key);
	int t = lua_type(rd->L, -1);
	if (t == LUA_TNIL)
		return;
	if (t == LUA_TBOOLEAN) {
		m->on = lua_toboolean(rd->L, -1);
		return;
	}
	if (t != LUA_TTABLE) {
		config_fail(rd, keypath, "expected true, false or a table { allow = ... }");
		return;
	}
	struct config_reader sub = *rd;
	sub.base = m;
	m->on = true;
	config_table_read(&sub, -1, keypath, keys);
}

void config_metrics_defaults(struct config_metrics *m)
{
	static const char *const loopback[] = {"127.0.0.0/8", "::1"};
	m->on = true;
	for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
		struct proxies_net net;
		if (proxies_parse(loopback[i], &net) == 0)
			proxies_add(&m->allow, &net);
	}
}
