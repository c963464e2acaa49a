#include "gpuhook/clock.h"

#include <stdio.h>
#include <time.h>

static long long clock_read_ms(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long clock_mono_ms(void) { return clock_read_ms(CLOCK_MONOTONIC); }

long long clock_wall_ms(void) { return clock_read_ms(CLOCK_REALTIME); }

char *clock_rfc3339(long long unix_ms, char *out) {
    long long secs = unix_ms / 1000;
    int ms = (int)(unix_ms % 1000);
    if (ms < 0) {
        ms += 1000;
        secs--;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        t = 0;
        ms = 0;
        gmtime_r(&t, &tm);
    }
    /* The return value is checked so that GCC's -Wformat-truncation knows a cut is handled. */
    int n =
        snprintf(out, CLOCK_RFC3339_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
    if (n < 0 || n >= CLOCK_RFC3339_MAX)
        out[0] = '\0';
    return out;
}
