/*
 * config_mail_dir.c: checks accounts.mail_dir when the configuration loads (sesamed -t, a
 * start, a reload), so that a missing or misplaced template is a line in the configuration's
 * report rather than the first mail of a flow failing with a 500.
 *
 * The routes read the templates with sesame.readfile, which reads only below the
 * configuration's folder, symbolic links resolved: the folder and each template are resolved
 * with realpath and held to the same rule. Each template the default routes mail must be a
 * file that can be read and starts as account_mail.lua's render expects it to: "Subject:",
 * the subject's line, a blank line. A template's text is not checked further: its
 * placeholders are the operator's to choose.
 */
#include "autoconfig.h"

#include "config_mail_dir.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "file.h"

#define KEY "accounts.mail_dir"

/* The templates the default routes mail (etc/sesame/lua/account_mail.lua). */
static const char *const templates[] = {"verify",	 "reset",  "email_change",
					"email_changed", "exists", "email_taken"};

/* Is real (a resolved path) top itself or below it? */
static bool inside(const char *real, const char *top)
{
	size_t len = strlen(top);
	return strncmp(real, top, len) == 0 && (real[len] == '\0' || real[len] == '/');
}

/* "Subject: ...", then a blank line ("\n\n" or "\r\n\r\n"). */
static bool well_formed(const char *text)
{
	const char *eol = strncmp(text, "Subject:", 8) == 0 ? strchr(text, '\n') : NULL;
	return eol != NULL && (eol[1] == '\n' || strncmp(eol + 1, "\r\n", 2) == 0);
}

static void check_template(struct config_reader *rd, const char *dir, const char *top,
			   const char *name)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s.txt", dir, name);
	char *real = realpath(path, NULL), *text = NULL;
	if (real == NULL)
		config_fail(rd, KEY, "template %s: %s", path, strerror(errno));
	else if (!inside(real, top))
		config_fail(rd, KEY, "template %s leads outside the configuration folder %s", path,
			    top);
	else if ((text = file_read(real)) == NULL)
		config_fail(rd, KEY, "template %s: %s", path, strerror(errno));
	else if (!well_formed(text))
		config_fail(rd, KEY,
			    "template %s: expected a Subject: line, a blank line, then the text",
			    path);
	free(text);
	free(real);
}

void config_mail_dir_check(struct config_reader *rd, const char *mail_dir)
{
	char *dir = file_resolve(rd->dir, mail_dir);
	char *top = realpath(rd->dir, NULL), *real = NULL;
	struct stat st;
	if (dir == NULL || top == NULL)
		config_fail(rd, KEY, "%s: %s", rd->dir, strerror(errno));
	else if ((real = realpath(dir, NULL)) == NULL)
		config_fail(rd, KEY, "%s: %s", dir, strerror(errno));
	else if (!inside(real, top))
		config_fail(rd, KEY,
			    "%s is outside the configuration folder %s: sesame.readfile reads "
			    "only below it",
			    dir, top);
	else if (stat(real, &st) != 0 || !S_ISDIR(st.st_mode))
		config_fail(rd, KEY, "%s is not a folder", dir);
	else
		for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++)
			check_template(rd, real, top, templates[i]);
	free(real);
	free(top);
	free(dir);
}
