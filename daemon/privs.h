/*
 * privs.h: the account that sesamed's workers, its schema child and sesamectl's storage
 * commands run as (server.user, server.group), looked up where the configuration loads and
 * taken after fork.
 */
#ifndef SESAME_PRIVS_H
#define SESAME_PRIVS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct privs {
	char *user;  /* server.user; NULL when unset */
	char *group; /* server.group; NULL: the user's primary group */
	bool drop;   /* this process is root and the user is not: privs_drop changes to it */
	uid_t uid;
	gid_t gid;
	gid_t *groups; /* the user's supplementary groups, the group included */
	int ngroups;
};

enum privs_lookup {
	PRIVS_OK,
	PRIVS_IGNORED,	 /* not root: server.user names another user and is ignored */
	PRIVS_BAD_USER,	 /* server.user (or server.group without it) is wrong */
	PRIVS_BAD_GROUP, /* server.group is wrong */
};

/*
 * Looks server.user and server.group up in the process that loads the configuration, so that
 * no process looks a name up after fork, and settles p->drop. Not as root, nothing is looked
 * up: only root can change user. Anything but PRIVS_OK comes with the reason in why.
 */
enum privs_lookup privs_resolve(struct privs *p, char *why, size_t len);

/*
 * sesamed's rule: a process that runs as root serves only with server.user set ("root" is the
 * explicit opt-in). 0, or -1 with the reason in why.
 */
int privs_check_root(const struct privs *p, char *why, size_t len);

/*
 * In a child after fork (a worker, the schema child) or in sesamectl before it touches
 * storage: takes p's groups, group and user, checks that root cannot be taken back, and
 * forbids this process new privileges (PR_SET_NO_NEW_PRIVS). 0, or -1 with the reason in why:
 * the caller exits then.
 */
int privs_drop(const struct privs *p, char *why, size_t len);

void privs_clear(struct privs *p);

#endif
