/*
 * roster.c: the master's table of worker processes.
 *
 * A record per worker alive: its slot, its generation, and where it stands (starting until it
 * writes to its ready pipe, serving, draining once told to, hung once killed for a stale
 * heartbeat). A slot's worker that keeps dying young is respawned with a growing delay, up
 * to BACKOFF_MAX_MS, so that a crash loop costs little. Slots, with their backoff and how
 * their last worker died, belong to a generation: during a reload the serving generation and
 * the starting one each replace their own dead workers, and when the new one never gets
 * complete, the last deaths say why. The master forks, reaps and reads signals; this file
 * keeps the records and answers questions over them, such as whether every slot has a serving
 * worker (GET /readyz), of whichever generation: the older generation drains only once the
 * new one is complete, so that it covers the slots during a reload.
 */
#include "autoconfig.h"

#include "roster.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "plural.h"
#include "scoreboard.h"

#define BACKOFF_MAX_MS 10000
#define STABLE_MS      2000 /* a worker that lived this long was not crash-looping */

#define GENS	      2	  /* generations with slots: the serving one and a reload's */
#define LAST_EXIT_MAX 200 /* how a slot's last worker died, as the master described it */

struct slotstate {
	int failures;
	uint64_t respawn_at; /* 0: nothing to respawn */
	char last_exit[LAST_EXIT_MAX];
};

struct genslots {
	unsigned gen; /* 0: free */
	int slots;
	struct slotstate s[CONFIG_MAX_WORKERS];
};

static struct roster_worker w[ROSTER_RECORDS];
static struct genslots gens[GENS];

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

static void retire(struct roster_worker *r, uint64_t deadline)
{
	if (!r->retiring)
		r->kill_at = deadline;
	r->retiring = true;
	kill(r->pid, SIGTERM);
}

void roster_retire(enum roster_which which, unsigned gen, uint64_t deadline)
{
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		bool same = w[i].gen == gen;
		if (w[i].pid != 0 && (which == ROSTER_ALL || (which == ROSTER_GEN) == same))
			retire(&w[i], deadline);
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

/* Generation gen's slots, or a free entry when gen is 0; NULL when none. */
static struct genslots *gen_find(unsigned gen)
{
	for (int i = 0; i < GENS; i++) {
		if (gens[i].gen == gen)
			return &gens[i];
	}
	return NULL;
}

void roster_gen_begin(unsigned gen, int slots)
{
	struct genslots *g = gen_find(0);
	/* Never more than two, as the master keeps them; were there, the older would go. */
	if (g == NULL)
		g = gens[0].gen < gens[1].gen ? &gens[0] : &gens[1];
	memset(g, 0, sizeof(*g));
	g->gen = gen;
	g->slots = slots;
}

void roster_gen_end(unsigned gen)
{
	struct genslots *g = gen_find(gen);
	if (g != NULL)
		memset(g, 0, sizeof(*g));
}

bool roster_gen_live(unsigned gen)
{
	return gen != 0 && gen_find(gen) != NULL;
}

static struct slotstate *slot_find(unsigned gen, int slot)
{
	struct genslots *g = gen != 0 ? gen_find(gen) : NULL;
	return g != NULL && slot >= 0 && slot < g->slots ? &g->s[slot] : NULL;
}

void roster_respawn_at(unsigned gen, int slot, uint64_t when)
{
	struct slotstate *s = slot_find(gen, slot);
	if (s != NULL)
		s->respawn_at = when;
}

uint64_t roster_backoff(unsigned gen, int slot, uint64_t lived_ms, const char *what)
{
	struct slotstate *s = slot_find(gen, slot);
	if (s == NULL)
		return 0;
	snprintf(s->last_exit, sizeof(s->last_exit), "%s", what);
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

void roster_respawn_due(uint64_t now, int (*spawn)(unsigned gen, int slot))
{
	for (int i = 0; i < GENS; i++) {
		for (int slot = 0; gens[i].gen != 0 && slot < gens[i].slots; slot++) {
			struct slotstate *s = &gens[i].s[slot];
			if (s->respawn_at != 0 && s->respawn_at <= now) {
				s->respawn_at = 0;
				if (spawn(gens[i].gen, slot) != 0)
					s->respawn_at = now + 1000;
			}
		}
	}
}

uint64_t roster_next_respawn(void)
{
	uint64_t next = UINT64_MAX;
	for (int i = 0; i < GENS; i++) {
		for (int slot = 0; gens[i].gen != 0 && slot < gens[i].slots; slot++) {
			uint64_t at = gens[i].s[slot].respawn_at;
			if (at != 0 && at < next)
				next = at;
		}
	}
	return next;
}

/* The live worker of gen's slot that is not draining, or NULL. */
static const struct roster_worker *slot_worker(unsigned gen, int slot)
{
	for (int i = 0; i < ROSTER_RECORDS; i++) {
		if (w[i].pid != 0 && w[i].gen == gen && w[i].slot == slot && !w[i].retiring)
			return &w[i];
	}
	return NULL;
}

/* Appends to out why slot does not serve; returns the new length. */
static size_t slot_why(unsigned gen, int slot, const struct slotstate *s, char *out, size_t len,
		       size_t n)
{
	const struct roster_worker *r = slot_worker(gen, slot);
	int k;
	if (s->last_exit[0] != '\0')
		k = snprintf(out + n, len - n, "%s%s", n > 0 ? "; " : "", s->last_exit);
	else if (r != NULL)
		k = snprintf(out + n, len - n, "%sworker %ld (slot %d) is still starting",
			     n > 0 ? "; " : "", (long)r->pid, slot);
	else
		k = snprintf(out + n, len - n, "%sslot %d has no worker", n > 0 ? "; " : "", slot);
	return k < 0 ? n : n + (size_t)k >= len ? len - 1 : n + (size_t)k;
}

/* Names two slots at most, then counts the others: they mostly fail for one same reason. */
int roster_gen_unready(unsigned gen, char *out, size_t len)
{
	const struct genslots *g = gen_find(gen);
	int missing = 0;
	size_t n = 0;
	out[0] = '\0';
	for (int slot = 0; g != NULL && slot < g->slots; slot++) {
		const struct roster_worker *r = slot_worker(gen, slot);
		if (r != NULL && r->ready && !r->hung)
			continue;
		if (++missing <= 2)
			n = slot_why(gen, slot, &g->s[slot], out, len, n);
	}
	if (missing > 2)
		snprintf(out + n, len - n, " (and %d more %s)", missing - 2,
			 plural(missing - 2, "slot", "slots"));
	return missing;
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
