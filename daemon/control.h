/*
 * control.h: the master's control socket (server.control), where sesamectl status asks for
 * the master's state.
 */
#ifndef SESAME_CONTROL_H
#define SESAME_CONTROL_H

#include <jansson.h>

#include "privs.h"

/*
 * Listens on the unix socket path (mode 0660, group privs->group when set), replacing a
 * stale socket file; returns the listening descriptor (non-blocking), or -1 after logging a
 * warning: the master serves on without it.
 */
int control_open(const char *path, const struct privs *privs);

/* Answers every connection waiting on fd with doc, one JSON line, and closes it; no waits. */
void control_answer(int fd, const json_t *doc);

/* Stops listening and removes the socket file. */
void control_close(int fd, const char *path);

#endif
