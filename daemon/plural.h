/*
 * plural.h: a noun that agrees with its count, for messages: "1 worker", "2 workers".
 *
 *     log_info("with %d %s", n, plural(n, "worker", "workers"));
 *
 * Both forms are spelled out, so that irregular plurals read right ("1 entry", "2 entries").
 * Header only, with no state, for the daemon (the in-tree plugins spell their own out).
 */
#ifndef SESAME_PLURAL_H
#define SESAME_PLURAL_H

static inline const char *plural(long long n, const char *one, const char *many)
{
	return n == 1 ? one : many;
}

#endif
