/*
 * roster.c: the master's table of worker processes.
 *
 * A record per worker alive: its slot, its generation, and where it stands (starting until it
 * writes to its ready pipe, serving, draining once told to, hung once killed for a stale
 * heartbeat). A slot's worker that keeps dying young is respawned with a growing delay, up
 * to BACKOFF_MAX_MS, so that a crash loop costs little. The master forks, reaps and reads
 * signals; this file keeps the records and answers questions over them, such as whether every
 * slot has a serving worker (GET /readyz), of whichever generation: the older generation
 * drains only once the new one is complete, so that it covers the slots during a reload.
 */
#include "autoconfig.h"

#include "roster.h"

#include <signal.h>

#include "clock.h"
#include "log.h"
#include "scoreboard.h"

#define BACKOFF_MAX_MS 10000
#define STABLE_MS      2000 /* a worker that lived this long was not crash-looping */

struct slotstate {
	int failures;
	uint64_t respawn_at; /* 0: nothing to respawn */
};

static struct roster_worker w[ROSTER_RECORDS];
static struct slotstate slots_state[CONFIG_MAX_WORKERS];

struct roster_worker *roster_at(int rec)
{
	return &w[rec];
}

int roster_free_record(void)
{
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		if (w[i].pid == 0)
			return i;
	}
	return -1;
}

int roster_find(pid_t pid)
{
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		if (w[i].pid == pid)
			return i;
	}
	return -1;
}

int roster_alive(void)
{
	int n = 0;
	for (int i = 0; i < ROSTER_RECORDS; i++)
		n += w[i].pid != 0;
	return n;
}

int roster_serving(unsigned gen)
{
	int n = 0;
	for (int i = 0; i < ROSTER_RECORDS; i++)
		n += w[i].pid != 0 && w[i].gen == gen && w[i].ready && !w[i].retiring;
	return n;
}

/* A worker that takes requests now: it said it serves, and it is neither draining nor hung. */
static bool serving(const struct roster_worker *r)
{
	return r->pid != 0 && r->ready && !r->retiring && !r->hung;
}

/* A slot without a serving worker leaves its socket's connections waiting. */
bool roster_complete(int slots, bool shared)
{
	bool any = false;
	bool covered[CONFIG_MAX_WORKERS] = {false};
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		if (!serving(&w[i]))
			continue;
		any = true;
		if (w[i].slot >= 0 && w[i].slot < CONFIG_MAX_WORKERS)
			covered[w[i].slot] = true;
	}
	if (shared)
		return any;
	for (int slot = 0; slot < slots; slot++) {
		if (!covered[slot])
			return false;
	}
	return true;
}

void roster_retire(bool older_only, unsigned gen, uint64_t deadline)
{
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		if (w[i].pid == 0 || (older_only && w[i].gen == gen))
			continue;
		if (!w[i].retiring)
			w[i].kill_at = deadline;
		w[i].retiring = true;
		kill(w[i].pid, SIGTERM);
	}
}

void roster_kill_overdue(uint64_t now)
{
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		if (w[i].pid != 0 && w[i].retiring && w[i].kill_at <= now) {
			log_error("worker %ld (slot %d) did not stop in time: killing it",
				  (long)w[i].pid, w[i].slot);
			kill(w[i].pid, SIGKILL);
			w[i].kill_at = now + 1000;
		}
	}
}

uint64_t roster_next_kill(void)
{
	uint64_t next = UINT64_MAX;
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		if (w[i].pid != 0 && w[i].retiring && w[i].kill_at < next)
			next = w[i].kill_at;
	}
	return next;
}

/*
 * A serving worker whose loop has not turned for server.hang_timeout is stuck in C code that
 * the instruction budget cannot stop (a finalizer, a pattern match): it is killed and reaped
 * like a worker that died. Draining workers have kill_at for the same purpose.
 */
void roster_kill_hung(uint64_t now, const struct scoreboard_slot *sb, long hang_ms)
{
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		struct roster_worker *r = &w[i];
		if (r->pid == 0 || !r->ready || r->retiring || r->hung)
			continue;
		uint64_t silence = scoreboard_silence_ms(&sb[i], now);
		if (silence <= (uint64_t)hang_ms)
			continue;
		const char *route = sb[i].route[0] != '\0' ? sb[i].route : "no route";
		log_error("worker %ld (slot %d) hung: its loop has not turned for %.1f s "
			  "(server.hang_timeout) while serving %.120s: killing it",
			  (long)r->pid, r->slot, (double)silence / 1000.0, route);
		kill(r->pid, SIGKILL);
		r->hung = true;
	}
}

void roster_slot_reset(int slot)
{
	slots_state[slot] = (struct slotstate){0};
}

void roster_respawn_at(int slot, uint64_t when)
{
	slots_state[slot].respawn_at = when;
}

uint64_t roster_backoff(int slot, uint64_t lived_ms)
{
	struct slotstate *s = &slots_state[slot];
	s->failures = lived_ms < STABLE_MS ? s->failures + 1 : 0;
	uint64_t delay = 0;
	if (s->failures > 1) {
		delay = 100u << (s->failures - 2 < 7 ? s->failures - 2 : 7);
		if (delay > BACKOFF_MAX_MS)
			delay = BACKOFF_MAX_MS;
	}
	s->respawn_at = clock_mono_ms() + delay;
	return delay;
}

void roster_respawn_due(int slots, uint64_t now, int (*spawn)(int slot))
{
	for (int slot = 0; slot < slots; slot++) {
		struct slotstate *s = &slots_state[slot];
		if (s->respawn_at != 0 && s->respawn_at <= now) {
			s->respawn_at = 0;
			if (spawn(slot) != 0)
				s->respawn_at = now + 1000;
		}
	}
}

uint64_t roster_next_respawn(int slots)
{
	uint64_t next = UINT64_MAX;
	for (int slot = 0; slot < slots; slot++) {
		if (slots_state[slot].respawn_at != 0 && slots_state[slot].respawn_at < next)
			next = slots_state[slot].respawn_at;
	}
	return next;
}

static const char *state_of(const struct roster_worker *r)
{
	return r->hung ? "hung" : r->retiring ? "retiring" : r->ready ? "serving" : "starting";
}

json_t *roster_status(void)
{
	json_t *workers = json_array();
	for (int i = 0; workers != NULL && i < ROSTER_RECORDS; i++) {
		const struct roster_worker *r = &w[i];
		if (r->pid != 0)
			json_array_append_new(workers,
					      json_pack("{sI si sI ss}", "pid", (json_int_t)r->pid,
							"slot", r->slot, "generation",
							(json_int_t)r->gen, "state", state_of(r)));
	}
	return workers;
}
