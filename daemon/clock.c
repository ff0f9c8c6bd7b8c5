/*
 * clock.c: the wall clock's test offset (see clock.h); the clocks themselves are inline.
 */
#include "autoconfig.h"

#include "clock.h"

#include <stdlib.h>

long long clock_wall_offset_ms;

void clock_init(void)
{
	const char *offset = getenv("SESAME_TEST_CLOCK_OFFSET_MS");
	char *end;
	if (offset == NULL || *offset == '\0')
		return;
	long long ms = strtoll(offset, &end, 10);
	if (*end == '\0')
		clock_wall_offset_ms = ms;
}
