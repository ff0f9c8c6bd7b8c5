/* revocation.h: the revoked token ids a worker keeps in memory, refreshed from storage. */
#ifndef SESAME_REVOCATION_H
#define SESAME_REVOCATION_H

#include <stdbool.h>

#include "plugin.h"

struct config;
struct revocation;

/*
 * In a worker, once its storage is started: loads every revoked id that has not expired, then
 * starts the thread that fetches the newly revoked ones every jwt.revocation_refresh and
 * purges expired state from storage now and then. *out is NULL when there is no storage (no
 * token is ever revoked then). A first load that fails is logged, and retried by the thread.
 * Returns 0, or -1 when the thread cannot start.
 */
int revocation_start(const struct config *cfg, struct revocation **out);

/* Stops the thread (waiting for a fetch in progress) and frees the set. */
void revocation_stop(struct revocation *rv);

/* Is id (a jti or a refresh family's id) revoked? On the event loop, never blocks long. */
bool revocation_has(struct revocation *rv, const char *id);

/*
 * The revocation time of id (Unix milliseconds, the store's clock) as the storage reported
 * it, or -1 when id is not among the fetched ones: a subject's cutoff. On the event loop.
 */
long long revocation_time(struct revocation *rv, const char *id);

/* Adds an id this worker revoked itself, so that it is refused at once here. */
void revocation_add(struct revocation *rv, const char *id, long long expires_at);

#endif
