/* config_accounts.h: the accounts section of the configuration: the account flows' settings. */
#ifndef SESAME_CONFIG_ACCOUNTS_H
#define SESAME_CONFIG_ACCOUNTS_H

#include <stdbool.h>

#include "config_table.h"

/* What the default routes' account flows read as sesame.accounts. */
struct config_accounts {
	bool require_verified; /* log-in refused (403) until the address is confirmed */
	bool conceal_existing; /* registration of a taken address answers as a new one's */
	char *link_base;       /* the front end's URL the mails' links start with */
	long verify_ttl;       /* seconds the tokens of each flow live */
	long reset_ttl;
	long email_ttl;
	char *mail_dir; /* the mail templates' folder, relative to the configuration's */
	bool table_set; /* the file has an accounts table: the default routes' flows are meant */
};

/*
 * The kind of the top level's accounts key: reads the section into the struct
 * config_accounts its table entry points to; the settings that send mail need the top
 * level's mail table.
 */
config_kind config_accounts_read;

/*
 * Warns (log lines, not errors) when mail is on and the links in mails would point to this
 * machine's loopback, or when mail is on, no accounts table is set and mail_dir lacks the
 * templates; rd gives the file, its text for the line and its folder.
 */
void config_accounts_warn(const struct config_reader *rd, const struct config_accounts *a,
			  bool mail);

/* The defaults, set before the file is read; config_accounts_clear frees what was read. */
void config_accounts_defaults(struct config_accounts *a);
void config_accounts_clear(struct config_accounts *a);

#endif
