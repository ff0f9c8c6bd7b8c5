/*
 * config_accounts.c: reads the accounts section of the configuration, the settings of the
 * account flows that the default routes run (verification, password reset, e-mail change).
 *
 * The keys are read by the section's table, then checked together: the links in the mails
 * start with link_base, an http(s) URL without a query or fragment (the flows append
 * "/verify?token=..."), and the two settings that answer a client "check your mail"
 * (require_verified, conceal_existing) are refused when no mail table is configured: nobody
 * could ever confirm an address. With the mail table and the accounts table set, mail_dir
 * must hold the templates (config_mail_dir.c); with mail and no accounts table, a problem
 * with them is a warning: the default routes' flows would fail to mail, but an application
 * of its own that only calls sesame.mail.send needs none. Route scripts read the result as
 * sesame.accounts. A link_base on loopback while mail is on is warned about, not refused: it
 * is right on a developer's machine and wrong anywhere else.
 */
#include "autoconfig.h"

#include "config_accounts.h"
#include "config_mail_dir.h"
#include "config_outbound.h"

#include <lua.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"

#define ACCOUNTS(field) offsetof(struct config_accounts, field)
#define MAX_TTL		(30L * 86400)

static const struct config_key accounts_keys[] = {
    {"require_verified", config_bool, 0, 0, ACCOUNTS(require_verified)},
    {"conceal_existing", config_bool, 0, 0, ACCOUNTS(conceal_existing)},
    {"link_base", config_string, 0, 0, ACCOUNTS(link_base)},
    {"verify_ttl", config_long, 1, MAX_TTL, ACCOUNTS(verify_ttl)},
    {"reset_ttl", config_long, 1, MAX_TTL, ACCOUNTS(reset_ttl)},
    {"email_ttl", config_long, 1, MAX_TTL, ACCOUNTS(email_ttl)},
    {"mail_dir", config_string, 0, 0, ACCOUNTS(mail_dir)},
    {NULL, NULL, 0, 0, 0},
};

/* "http(s)://HOST[:PORT][/PATH]": a host, printable characters, no query or fragment. */
static bool link_base_ok(const char *url)
{
	size_t scheme = strncasecmp(url, "https://", 8) == 0  ? 8
			: strncasecmp(url, "http://", 7) == 0 ? 7
							      : 0;
	if (scheme == 0 || url[scheme] == '\0' || url[scheme] == '/')
		return false;
	for (const char *p = url; *p != '\0'; p++) {
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || *p == '?' || *p == '#')
			return false;
	}
	return true;
}

/* The links append "/verify?token=...": a trailing slash would double. */
static void trim_slashes(char *url)
{
	size_t len = strlen(url);
	while (len > 0 && url[len - 1] == '/')
		url[--len] = '\0';
}

/* Is the top level's mail table set? (It is read with the outbound settings.) */
static bool mail_configured(struct config_reader *rd, int top)
{
	lua_pushliteral(rd->L, "mail");
	bool set = lua_rawget(rd->L, top) == LUA_TTABLE;
	lua_pop(rd->L, 1);
	return set;
}

static void check(struct config_reader *rd, int top, struct config_accounts *a, bool table_set)
{
	if (!link_base_ok(a->link_base))
		config_fail(rd, "accounts.link_base",
			    "expected an http:// or https:// URL with a host and no query or "
			    "fragment, like \"https://app.example.com/account\"");
	else
		trim_slashes(a->link_base);
	if (a->mail_dir[0] == '\0')
		config_fail(rd, "accounts.mail_dir", "expected a folder");
	else if (table_set && mail_configured(rd, top))
		config_mail_dir_check(rd, a->mail_dir);
	static const char *const mailing[] = {"accounts.require_verified",
					      "accounts.conceal_existing"};
	bool on[] = {a->require_verified, a->conceal_existing};
	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
		if (on[i] && !mail_configured(rd, top))
			config_fail(rd, mailing[i],
				    "needs the mail table: the address is confirmed by a mail "
				    "that sesame sends (mail = { url = ..., from = ... })");
	}
}

void config_accounts_read(struct config_reader *rd, int top, const struct config_key *key,
			  const char *keypath)
{
	struct config_accounts *a = config_field(rd, key);
	struct config_reader section = *rd;
	/* Unset, it is read as an empty table: each key settles its default. */
	bool unset = lua_isnil(rd->L, -1);
	if (unset)
		lua_newtable(rd->L);
	section.base = a;
	a->table_set = !unset;
	if (unset || config_is_table(rd, keypath)) {
		config_table_read(&section, -1, keypath, accounts_keys);
		check(rd, top, a, !unset);
	}
	if (unset)
		lua_pop(rd->L, 1);
}

/* The templates' problems as warnings, with no accounts table set (see the top). */
static void warn_templates(const struct config_reader *rd, const struct config_accounts *a)
{
	struct config_errors found = {0};
	struct config_reader scratch = *rd;
	scratch.errs = &found;
	config_mail_dir_check(&scratch, a->mail_dir);
	for (size_t i = 0; i < found.n; i++)
		log_warn("%s (mail is on and no accounts table is set: the default routes' account "
			 "flows cannot mail without it; a route that only calls sesame.mail.send "
			 "needs no template)",
			 found.msg[i]);
	config_errors_free(&found);
}

static void warn_loopback(const struct config_reader *rd, const struct config_accounts *a)
{
	if (a->link_base == NULL || !config_outbound_loopback_url(a->link_base, NULL))
		return;
	int line = config_find_line(rd->src, "accounts.link_base");
	char at[16] = "";
	if (line > 0)
		snprintf(at, sizeof(at), ":%d", line);
	log_warn("%s%s: accounts.link_base: the links in mails point to %s, this machine's "
		 "loopback: set it to the public URL of the front end's pages",
		 rd->file, at, a->link_base);
}

void config_accounts_warn(const struct config_reader *rd, const struct config_accounts *a,
			  bool mail)
{
	if (!mail)
		return;
	if (!a->table_set && a->mail_dir != NULL && a->mail_dir[0] != '\0')
		warn_templates(rd, a);
	warn_loopback(rd, a);
}

void config_accounts_defaults(struct config_accounts *a)
{
	*a = (struct config_accounts){.link_base = strdup("http://127.0.0.1:8080"),
				      .verify_ttl = 86400,
				      .reset_ttl = 3600,
				      .email_ttl = 86400,
				      .mail_dir = strdup("mail")};
}

void config_accounts_clear(struct config_accounts *a)
{
	free(a->link_base);
	free(a->mail_dir);
	*a = (struct config_accounts){0};
}
