/*
 * clock.h: the daemon's clocks, read one way everywhere.
 *
 * The monotonic clock measures intervals (timeouts, backoff, durations): it never jumps when
 * the wall clock is set. The wall clock gives the times that are shared with other hosts and
 * kept in storage (token claims, revocations). Both are read with clock_gettime, never time():
 * glibc's time() reads a coarse clock that lags the real one by up to a tick after each second
 * begins, long enough to refuse, with no leeway, a token another host issued with nbf = now.
 *
 * For tests only, SESAME_TEST_CLOCK_OFFSET_MS in sesamed's environment moves its wall clock by
 * that many milliseconds (clock_init): one host of a test can run ahead of, or behind, the
 * others. Never set it in production.
 */
#ifndef SESAME_CLOCK_H
#define SESAME_CLOCK_H

#include <stdint.h>
#include <time.h>

/* Added to every wall-clock reading: 0 unless a test asks otherwise (clock_init). */
extern long long clock_wall_offset_ms;

/* Reads SESAME_TEST_CLOCK_OFFSET_MS once, at start, before any thread. */
void clock_init(void);

/* Nanoseconds on the monotonic clock. */
static inline uint64_t clock_mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Milliseconds on the monotonic clock. */
static inline uint64_t clock_mono_ms(void)
{
	return clock_mono_ns() / 1000000u;
}

/* Milliseconds since the Unix epoch. */
static inline long long clock_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + clock_wall_offset_ms;
}

/* Seconds since the Unix epoch, with their fraction. */
static inline double clock_wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 + (double)clock_wall_offset_ms / 1e3;
}

#endif
