/*
 * roster.h: the master's table of worker processes: each one's slot, generation and state,
 * the slots' respawn backoff, and the judgements made over them (is the worker set complete,
 * who is overdue or hung). The master alone uses it, on its loop.
 */
#ifndef SESAME_ROSTER_H
#define SESAME_ROSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config.h"

/* Workers alive at once: the serving generation and up to three older ones still draining. */
#define ROSTER_RECORDS (4 * CONFIG_MAX_WORKERS)

struct scoreboard_slot;

struct roster_worker {
	pid_t pid; /* 0: free record */
	int slot;
	unsigned gen;
	int ready_fd; /* the worker writes one byte to it once it serves; -1 once read */
	bool ready;
	bool retiring;
	bool hung; /* killed for a stale heartbeat */
	uint64_t started_ms;
	uint64_t kill_at; /* when retiring: SIGKILL if still alive then */
};

/* Record rec, 0 <= rec < ROSTER_RECORDS. */
struct roster_worker *roster_at(int rec);
/* A free record's index, or -1 when ROSTER_RECORDS workers are alive. */
int roster_free_record(void);
/* The record of the worker pid, or -1. */
int roster_find(pid_t pid);

/* Workers alive, in any state. */
int roster_alive(void);
/* Workers of generation gen that serve and are not draining. */
int roster_serving(unsigned gen);
/*
 * Whether each of slots worker slots has a worker that serves now (ready, neither draining nor
 * hung), of any generation; with shared sockets (every worker serves them all), whether any
 * worker serves.
 */
bool roster_complete(int slots, bool shared);

/*
 * Tells workers to drain (SIGTERM): all of them, or those of generations other than gen. A
 * worker still alive at deadline (monotonic ms) is killed by roster_kill_overdue.
 */
void roster_retire(bool older_only, unsigned gen, uint64_t deadline);
void roster_kill_overdue(uint64_t now);
/* The earliest kill_at of a draining worker; UINT64_MAX when none. */
uint64_t roster_next_kill(void);
/* Kills (SIGKILL) each serving worker whose heartbeat in sb is older than hang_ms. */
void roster_kill_hung(uint64_t now, const struct scoreboard_slot *sb, long hang_ms);

/* A new generation's slot starts afresh: no failures, nothing to respawn. */
void roster_slot_reset(int slot);
/* The worker of slot is (re)spawned at when (monotonic ms). */
void roster_respawn_at(int slot, uint64_t when);
/*
 * Slot's worker died after lived_ms: counts a failure when it died young, schedules its
 * respawn, and returns the backoff delay chosen (0: at once).
 */
uint64_t roster_backoff(int slot, uint64_t lived_ms);
/* Calls spawn for each of slots whose respawn is due; a failed spawn is tried again later. */
void roster_respawn_due(int slots, uint64_t now, int (*spawn)(int slot));
/* The earliest respawn due of slots; UINT64_MAX when none. */
uint64_t roster_next_respawn(int slots);

/* Every worker alive, for sesamectl status: pid, slot, generation, state. */
json_t *roster_status(void);

#endif
