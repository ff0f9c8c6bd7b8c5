/* revocation.h: the revoked token ids every worker refuses: the node's shared set, fetched from
 * storage by one worker for all, and the worker's own. */
#ifndef SESAME_REVOCATION_H
#define SESAME_REVOCATION_H

#include <stdbool.h>

#include "plugin.h"

struct config;
struct revocation;

/*
 * In a worker, once its storage is started: joins the node's set (the master's segment; a set
 * of its own in a process no master forked), which the first worker after the master starts
 * loads whole while the others wait for it, then starts the thread that, while this worker
 * holds the node's lease, fetches the newly revoked ids every jwt.revocation_refresh and
 * purges expired state now and then. *out is NULL when there is no storage (no token is ever
 * revoked then). A first load that fails is logged, and retried by the thread. Returns 0, or
 * -1 when the set or the thread cannot be set up.
 */
int revocation_start(const struct config *cfg, struct revocation **out);

/* Stops the thread (waiting for a fetch in progress), gives the lease up, frees the own set. */
void revocation_stop(struct revocation *rv);

/* Is id (a jti or a refresh family's id) revoked? On the event loop, never blocks long. */
bool revocation_has(struct revocation *rv, const char *id);

/*
 * The revocation time of id (Unix milliseconds, the store's clock) as the storage reported
 * it, or -1 when id is not among the fetched ones: a subject's cutoff. On the event loop.
 */
long long revocation_time(struct revocation *rv, const char *id);

/* Adds an id this worker revoked itself: refused at once here, and by the node's other
 * workers as soon as the thread has filed it into the node's set. */
void revocation_add(struct revocation *rv, const char *id, long long expires_at);

#endif
