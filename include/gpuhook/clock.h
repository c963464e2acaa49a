/*
 * Clocks and timestamps, shared by every module: monotonic and wall-clock
 * milliseconds, and RFC 3339 text in UTC. Nothing here allocates or fails.
 */
#ifndef GPUHOOK_CLOCK_H
#define GPUHOOK_CLOCK_H

#include <stddef.h>

/* "2026-12-02T00:41:16.123Z" plus NUL fits; room is left for out-of-range years. */
#define CLOCK_RFC3339_MAX 64

/* CLOCK_MONOTONIC in milliseconds, for ages and deadlines. */
long long clock_mono_ms(void);
/* CLOCK_REALTIME in milliseconds since the epoch, for timestamps people read. */
long long clock_wall_ms(void);
/*
 * Writes unix_ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" into out (at least
 * CLOCK_RFC3339_MAX bytes) and returns out. A time gmtime cannot represent is
 * written as the epoch.
 */
char *clock_rfc3339(long long unix_ms, char *out);

#endif
