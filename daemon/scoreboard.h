/* scoreboard.h: what each worker is doing, in memory shared with the master. */
#ifndef SESAME_SCOREBOARD_H
#define SESAME_SCOREBOARD_H

#include <stddef.h>
#include <sys/types.h>

struct scoreboard_slot {
	pid_t pid;
	char route[120]; /* the route last resumed while any handler is in flight, else "" */
};

/* Maps n slots of anonymous shared memory; NULL on failure. */
struct scoreboard_slot *scoreboard_new(size_t n);
void scoreboard_free(struct scoreboard_slot *slots, size_t n);

void scoreboard_enter(struct scoreboard_slot *slot, const char *route);
void scoreboard_leave(struct scoreboard_slot *slot);

#endif
