/*
 * privs.c: leaving root for server.user and server.group.
 *
 * The names are looked up once, where the configuration loads (the master, or sesamectl), into
 * numbers and the user's group list (getgrouplist): a process forked from the master does no
 * NSS lookup, and a user that does not exist is a configuration error with its line, not a
 * crash loop of workers. The change itself happens in the child after fork, in the order that
 * cannot leave a way back: setgroups, setgid, setuid; then the process checks that its real,
 * effective and saved ids are the user's and that setuid(0) fails, and forbids itself new
 * privileges. A process that is not root cannot change user: server.user is then ignored with
 * a warning, as nginx does, so that one configuration serves both a root start and a start by
 * the service account itself (systemd's User=).
 */
#include "autoconfig.h"

#include "privs.h"
#include "leakcheck.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* The user's groups, as initgroups would set them, into p->groups. */
static int group_list(struct privs *p, const char *name, char *why, size_t len)
{
	int n = 16;
	for (;;) {
		gid_t *list = realloc(p->groups, (size_t)n * sizeof(gid_t));
		if (list == NULL) {
			snprintf(why, len, "out of memory");
			return -1;
		}
		p->groups = list;
		int want = n;
		if (getgrouplist(name, p->gid, p->groups, &want) >= 0) {
			p->ngroups = want;
			return 0;
		}
		if (want <= n) {
			snprintf(why, len, "cannot list the groups of user \"%s\"", name);
			return -1;
		}
		n = want;
	}
}

static enum privs_lookup lookup_group(struct privs *p, char *why, size_t len)
{
	errno = 0;
	const struct group *gr = getgrnam(p->group);
	if (gr != NULL) {
		p->gid = gr->gr_gid;
		return PRIVS_OK;
	}
	if (errno != 0 && errno != ENOENT)
		snprintf(why, len, "cannot look group \"%s\" up: %s", p->group, strerror(errno));
	else
		snprintf(why, len, "no such group \"%s\"", p->group);
	return PRIVS_BAD_GROUP;
}

static enum privs_lookup lookup_user(struct privs *p, char *why, size_t len)
{
	errno = 0;
	const struct passwd *pw = getpwnam(p->user);
	if (pw == NULL) {
		if (errno != 0 && errno != ENOENT)
			snprintf(why, len, "cannot look user \"%s\" up: %s", p->user,
				 strerror(errno));
		else
			snprintf(why, len, "no such user \"%s\"", p->user);
		return PRIVS_BAD_USER;
	}
	p->uid = pw->pw_uid;
	p->gid = pw->pw_gid;
	char *name = strdup(pw->pw_name);
	enum privs_lookup rc = PRIVS_OK;
	if (name == NULL) {
		snprintf(why, len, "out of memory");
		rc = PRIVS_BAD_USER;
	} else if (p->group != NULL) {
		rc = lookup_group(p, why, len);
	}
	if (rc == PRIVS_OK && group_list(p, name, why, len) != 0)
		rc = PRIVS_BAD_USER;
	free(name);
	return rc;
}

/* Not root: server.user is ignored, with a warning when it names another user. */
static enum privs_lookup not_root(const struct privs *p, char *why, size_t len)
{
	uid_t me = geteuid();
	const struct passwd *pw = getpwuid(me);
	if (pw != NULL && strcmp(pw->pw_name, p->user) == 0)
		return PRIVS_OK;
	snprintf(why, len,
		 "\"%s\" is ignored: only a process started as root changes user, "
		 "and this one runs as uid %ld",
		 p->user, (long)me);
	return PRIVS_IGNORED;
}

enum privs_lookup privs_resolve(struct privs *p, char *why, size_t len)
{
	p->drop = false;
	if (p->user == NULL) {
		if (p->group == NULL)
			return PRIVS_OK;
		snprintf(why, len, "needs server.user: the group is that user's");
		return PRIVS_BAD_GROUP;
	}
	if (geteuid() != 0)
		return not_root(p, why, len);
	enum privs_lookup rc = lookup_user(p, why, len);
	p->drop = rc == PRIVS_OK && p->uid != 0;
	return rc;
}

int privs_check_root(const struct privs *p, char *why, size_t len)
{
	if (geteuid() != 0 || p->user != NULL)
		return 0;
	snprintf(why, len,
		 "%s runs as root and server.user is not set: set it to the account the "
		 "workers run as (server.user = \"root\" keeps them root, on purpose)",
		 program_invocation_short_name);
	return -1;
}

static int change(const struct privs *p, char *why, size_t len)
{
	const char *step = "setgroups";
	if (setgroups((size_t)p->ngroups, p->groups) == 0) {
		step = "setgid";
		if (setgid(p->gid) == 0) {
			step = "setuid";
			if (setuid(p->uid) == 0)
				return 0;
		}
	}
	snprintf(why, len, "cannot change to user \"%s\": %s: %s", p->user, step, strerror(errno));
	return -1;
}

static int verify(const struct privs *p, char *why, size_t len)
{
	uid_t ru, eu, su;
	gid_t rg, eg, sg;
	if (getresuid(&ru, &eu, &su) != 0 || getresgid(&rg, &eg, &sg) != 0 || ru != p->uid ||
	    eu != p->uid || su != p->uid || rg != p->gid || eg != p->gid || sg != p->gid ||
	    getgroups(0, NULL) != p->ngroups) {
		snprintf(why, len, "changed to user \"%s\", yet the process's ids are not all its",
			 p->user);
		return -1;
	}
	/* Root's group is no way back when it is the group asked for (server.group = "root"). */
	if (setuid(0) == 0 || (p->gid != 0 && setgid(0) == 0)) {
		snprintf(why, len, "changed to user \"%s\", yet root can be taken back", p->user);
		return -1;
	}
	return 0;
}

int privs_drop(const struct privs *p, char *why, size_t len)
{
	if (p->drop && (change(p, why, len) != 0 || verify(p, why, len) != 0))
		return -1;
#ifdef LEAKCHECK_ASAN
	/*
	 * Changing user made the process undumpable, which keeps the user's other processes from
	 * reading the keys in its memory. A sanitizer build makes it dumpable again: its leak
	 * check stops the process's threads through ptrace, which an undumpable process refuses.
	 */
	if (p->drop && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) {
		snprintf(why, len, "cannot make the process dumpable: %s", strerror(errno));
		return -1;
	}
#endif
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		snprintf(why, len, "cannot forbid new privileges: %s", strerror(errno));
		return -1;
	}
	return 0;
}

void privs_clear(struct privs *p)
{
	free(p->user);
	free(p->group);
	free(p->groups);
	*p = (struct privs){0};
}
