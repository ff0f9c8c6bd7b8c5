/*
 * scoreboard.c: a page of shared memory with one slot per worker process. A worker writes the
 * name of the route whose handler it resumes, and clears it once no handler is in flight, so that
 * when a worker dies the master can say which route it was serving. A timer of the worker's loop
 * stamps a heartbeat; a heartbeat gone stale tells the master that the loop is stuck (a script
 * in a finalizer or a pattern match that never returns), and on which route.
 */
#include "autoconfig.h"

#include "scoreboard.h"

#include <string.h>
#include <sys/mman.h>

#include "clock.h"

struct scoreboard_slot *scoreboard_new(size_t n)
{
	void *p = mmap(NULL, n * sizeof(struct scoreboard_slot), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void scoreboard_free(struct scoreboard_slot *slots, size_t n)
{
	if (slots != NULL)
		munmap(slots, n * sizeof(struct scoreboard_slot));
}

void scoreboard_enter(struct scoreboard_slot *slot, const char *route)
{
	if (slot == NULL)
		return;
	size_t len = strnlen(route, sizeof(slot->route) - 1);
	memcpy(slot->route, route, len);
	slot->route[len] = '\0';
}

void scoreboard_leave(struct scoreboard_slot *slot)
{
	if (slot != NULL)
		slot->route[0] = '\0';
}

void scoreboard_beat(struct scoreboard_slot *slot)
{
	if (slot != NULL)
		atomic_store_explicit(&slot->heartbeat_ms, clock_mono_ms(), memory_order_relaxed);
}

uint64_t scoreboard_silence_ms(const struct scoreboard_slot *slot, uint64_t now_ms)
{
	uint64_t beat = atomic_load_explicit(&slot->heartbeat_ms, memory_order_relaxed);
	return now_ms > beat ? now_ms - beat : 0;
}
