/*
 * sesamectl.h: what sesamectl's command files share: the exit statuses every command keeps
 * (sesamectl(8), EXIT STATUS), and loading the configuration and the storage the way the
 * storage commands do.
 */
#ifndef SESAME_SESAMECTL_H
#define SESAME_SESAMECTL_H

#include <stdbool.h>

#include "config.h"
#include "plugin.h"

enum ctl_status {
	CTL_OK = 0,	   /* done */
	CTL_FAILED = 1,	   /* the operation failed: storage, the master unreachable, ... */
	CTL_USAGE = 2,	   /* the command line is wrong */
	CTL_NOT_FOUND = 3, /* no such user */
	CTL_REFUSED = 4,   /* refused: validation or policy, a user that exists, not confirmed */
};

/* The configuration at path, checked (the log files not tried: the commands that write one
 * open it); NULL with every problem on standard error. */
struct config *ctl_load(const char *path);

/*
 * The configuration at path, with this process changed to server.user when started as root,
 * and its storage started as a worker's is (pool, schema check, per-worker part); NULL with
 * the reason on standard error. emits: the command emits events, and events.audit_log is
 * opened (as root, before the change) for them. ctl_storage_close undoes it.
 */
struct config *ctl_storage_open(const char *path, struct storage *st, bool emits);
void ctl_storage_close(struct config *cfg);

/* sesamectl keygen [options] FILE [PUBLIC]: argv[0] is "keygen". */
int ctl_keygen(int argc, char **argv);

/* sesamectl user SUBCOMMAND ...: argv[0] is "user". */
int ctl_user(const char *path, int argc, char **argv);

/* sesamectl events [--user ID] [--since T] [--limit N] [--json]: argv[0] is "events". */
int ctl_events(const char *path, int argc, char **argv);

/* sesamectl status [--json]: argv[0] is "status". */
int ctl_status(const char *path, int argc, char **argv);

#endif
