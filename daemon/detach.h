/* detach.h: sesamed without -f: the daemon leaves its caller, which waits for its verdict. */
#ifndef SESAME_DETACH_H
#define SESAME_DETACH_H

struct config;

/*
 * Forks: the calling command waits in the parent, which never returns from here, until the
 * daemon writes to *report_fd 'R' (serving: the command exits 0) or 'E' and the reason it gave
 * up (printed on standard error; the command exits 1 once the daemon is gone). SIGINT, SIGTERM
 * or SIGHUP to the waiting command stops the daemon too (SIGTERM), and the command exits 1
 * once it is gone. In the child,
 * the daemon, leaves the session and the terminal and returns 0, or -1.
 */
int detach_start(const struct config *cfg, int *report_fd);

/*
 * In the daemon: tells the waiting command, if any (*report_fd >= 0), how the start went:
 * verdict 'R' (serving; why is "") or 'E' and why. 'R' is final: *report_fd is closed and set
 * to -1. After 'E' it stays open, so that the command returns once the daemon is gone.
 */
void detach_tell(int *report_fd, char verdict, const char *why);

#endif
