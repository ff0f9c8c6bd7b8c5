/* activation.h: the listening sockets that systemd passes (socket activation). */
#ifndef SESAME_ACTIVATION_H
#define SESAME_ACTIVATION_H

struct listen_set;

/*
 * In the master, once at start: when LISTEN_PID names this process and LISTEN_FDS is above
 * 0, takes those sockets (fd 3 onwards) into set, which then serves them instead of
 * server.listen, and removes the variables from the environment. Returns how many were
 * taken (0: none passed), or -1 after logging why one cannot be served: anything but a
 * listening TCP socket is refused.
 */
int activation_take(struct listen_set *set);

#endif
