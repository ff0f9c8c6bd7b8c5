/* detach.h: sesamed without -f: the daemon leaves its caller, which waits for its verdict. */
#ifndef SESAME_DETACH_H
#define SESAME_DETACH_H

struct config;

/*
 * Forks: the calling command waits in the parent, which never returns from here, until the
 * daemon writes to *report_fd 'R' (serving: the command exits 0) or 'E' and the reason it gave
 * up (printed on standard error; the command exits 1 once the daemon is gone). In the child,
 * the daemon, leaves the session and the terminal and returns 0, or -1.
 */
int detach_start(const struct config *cfg, int *report_fd);

#endif
