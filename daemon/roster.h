/*
 * roster.h: the master's table of worker processes: each one's slot, generation and state,
 * the slots' respawn backoff, and the judgements made over them (is the worker set complete,
 * who is overdue or hung). The master alone uses it, on its loop.
 */
#ifndef SESAME_ROSTER_H
#define SESAME_ROSTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
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

/* Which workers roster_retire tells to drain. */
enum roster_which {
	ROSTER_ALL,	   /* every worker: sesamed stops */
	ROSTER_OTHER_GENS, /* those of generations other than gen: gen serves now */
	ROSTER_GEN,	   /* those of generation gen: a reload's that is given up */
};

/*
 * Tells workers to drain (SIGTERM), which as which says. A worker still alive at deadline
 * (monotonic ms) is killed by roster_kill_overdue.
 */
void roster_retire(enum roster_which which, unsigned gen, uint64_t deadline);
void roster_kill_overdue(uint64_t now);
/* The earliest kill_at of a draining worker; UINT64_MAX when none. */
uint64_t roster_next_kill(void);
/* Kills (SIGKILL) each serving worker whose heartbeat in sb is older than hang_ms. */
void roster_kill_hung(uint64_t now, const struct scoreboard_slot *sb, long hang_ms);

/*
 * Generation gen, of slots worker slots, starts: its slots start afresh (no failures, nothing
 * to respawn). Two generations at most have slots at once: the serving one and a reload's.
 */
void roster_gen_begin(unsigned gen, int slots);
/* Generation gen's slots are forgotten: none of its workers is respawned any more. */
void roster_gen_end(unsigned gen);
/* Does generation gen have slots, whose workers are respawned when they die? */
bool roster_gen_live(unsigned gen);
/* The worker of gen's slot is (re)spawned at when (monotonic ms). */
void roster_respawn_at(unsigned gen, int slot, uint64_t when);
/*
 * The worker of gen's slot died after lived_ms, as what says: counts a failure when it died
 * young, schedules its respawn, and returns the backoff delay chosen (0: at once).
 */
uint64_t roster_backoff(unsigned gen, int slot, uint64_t lived_ms, const char *what);
/* Calls spawn for each slot whose respawn is due; a failed spawn is tried again later. */
void roster_respawn_due(uint64_t now, int (*spawn)(unsigned gen, int slot));
/* The earliest respawn due; UINT64_MAX when none. */
uint64_t roster_next_respawn(void);
/*
 * Why generation gen is not complete, into out: each slot without a serving worker, with how
 * its last worker died or that its worker is still starting. Returns how many such slots.
 */
int roster_gen_unready(unsigned gen, char *out, size_t len);

/* Every worker alive, for sesamectl status: pid, slot, generation, state. */
json_t *roster_status(void);

#endif
