/*
 * plugin_validators.c: the validator plugins' tables, and finding a validator by name.
 *
 * A validator NAME reads the top-level table NAME. The password table is shared: the
 * password validator's keys (min_length, ...) sit beside the hashing keys, which count as
 * read for it. The password policy is two validators: password, then blocklist (common
 * passwords) when it is loaded; plugins_validate runs that chain for sesame.validate and
 * sesamectl alike.
 */
#include "autoconfig.h"

#include <lua.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plugin_private.h"

void plugin_validators_read(struct loading *ld)
{
	lua_State *L = ld->L;
	for (size_t i = 0; i < ld->p->n; i++) {
		struct plugin *pl = &ld->p->v[i];
		if (pl->h->kind != SESAME_PLUGIN_VALIDATOR)
			continue;
		int tbl = plugin_push_section(ld, pl->name) == LUA_TTABLE ? lua_gettop(L) : 0;
		struct sesame_config cfg = host_config(ld, pl, tbl, pl->name);
		if (strcmp(pl->name, "password") == 0) {
			for (const struct config_key *k = plugin_password_keys; k->name != NULL;
			     k++)
				snprintf(cfg.seen[cfg.nseen++], sizeof(cfg.seen[0]), "%s", k->name);
			for (size_t j = 0; j < ld->p->n && cfg.nseen < MAX_SEEN; j++) {
				if (ld->p->v[j].h->kind == SESAME_PLUGIN_HASHER)
					snprintf(cfg.seen[cfg.nseen++], sizeof(cfg.seen[0]), "%s",
						 ld->p->v[j].name);
			}
		}
		host_run_init(ld, pl, &cfg);
		lua_pop(L, 1);
	}
	/* A table for a validator that is not loaded would be silently ignored: say so. */
	static const char *const own[] = {"email", "username", "blocklist", NULL};
	for (const char *const *k = own; *k != NULL; k++) {
		lua_pushstring(L, *k);
		if (lua_rawget(L, ld->settings) != LUA_TNIL &&
		    plugin_find(ld->p, SESAME_PLUGIN_VALIDATOR, *k) == NULL)
			config_error_at(ld->errs, ld->file, ld->src, *k,
					"no validator plugin named %s is loaded", *k);
		lua_pop(L, 1);
	}
}

bool plugins_validator(const struct plugins *p, const char *name, struct validator *out)
{
	for (size_t i = 0; p != NULL && i < p->n; i++) {
		if (p->v[i].h->kind == SESAME_PLUGIN_VALIDATOR && strcmp(p->v[i].name, name) == 0) {
			out->fn = (const struct sesame_validator *)p->v[i].h;
			out->state = p->v[i].state;
			return true;
		}
	}
	return false;
}

/* The validator that judges next what name accepted, when one does. */
static bool validator_then(const struct plugins *p, const char *name, struct validator *out)
{
	return strcmp(name, "password") == 0 && plugins_validator(p, "blocklist", out);
}

int plugins_validate(const struct plugins *p, const char *name, const char *value, size_t len,
		     const char *const *related, char *out, size_t outlen, char *msg, size_t msglen)
{
	struct validator v;
	if (!plugins_validator(p, name, &v))
		return -2;
	int rc = v.fn->check(v.state, value, len, related, out, outlen, msg, msglen);
	if (rc != 1 || !validator_then(p, name, &v))
		return rc;
	/* The next one judges the normal form, from a copy: out is its output. */
	size_t first_len = strlen(out);
	char *first = malloc(first_len + 1);
	if (first == NULL)
		return -1;
	memcpy(first, out, first_len + 1);
	rc = v.fn->check(v.state, first, first_len, related, out, outlen, msg, msglen);
	sodium_memzero(first, first_len);
	free(first);
	return rc;
}
