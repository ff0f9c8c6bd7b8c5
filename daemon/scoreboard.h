/* scoreboard.h: what each worker is doing, in memory shared with the master. */
#ifndef SESAME_SCOREBOARD_H
#define SESAME_SCOREBOARD_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct scoreboard_slot {
	pid_t pid;
	char route[120]; /* the route last resumed while any handler is in flight, else "" */
	_Atomic uint64_t heartbeat_ms; /* clock_mono_ms() when the worker's loop last turned */
};

/* Maps n slots of anonymous shared memory; NULL on failure. */
struct scoreboard_slot *scoreboard_new(size_t n);
void scoreboard_free(struct scoreboard_slot *slots, size_t n);

void scoreboard_enter(struct scoreboard_slot *slot, const char *route);
void scoreboard_leave(struct scoreboard_slot *slot);

/* The worker's loop turns: stamps the slot's heartbeat with the monotonic clock. */
void scoreboard_beat(struct scoreboard_slot *slot);

/* Milliseconds since the slot's last heartbeat, at now_ms (clock_mono_ms()). */
uint64_t scoreboard_silence_ms(const struct scoreboard_slot *slot, uint64_t now_ms);

#endif
