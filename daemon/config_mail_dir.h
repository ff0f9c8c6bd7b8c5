/* config_mail_dir.h: checking the account flows' mail templates when the configuration loads. */
#ifndef SESAME_CONFIG_MAIL_DIR_H
#define SESAME_CONFIG_MAIL_DIR_H

#include "config_table.h"

/*
 * Reports (as accounts.mail_dir, with its line) a mail_dir that is missing, not a folder,
 * outside the configuration's folder, or without one of the templates the default routes
 * mail (each readable, below that folder, and a Subject: line then a blank line).
 */
void config_mail_dir_check(struct config_reader *rd, const char *mail_dir);

#endif
