#include "gpuhook/retryafter.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

static bool ra_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static long ra_clamp(long long s) {
    return s < 0 ? 0 : s > RETRY_AFTER_MAX_SECONDS ? RETRY_AFTER_MAX_SECONDS : (long)s;
}

/* Reads exactly n digits at *p into *out. */
static bool ra_digits(const char **p, const char *end, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (*p >= end || **p < '0' || **p > '9')
            return false;
        v = v * 10 + (**p - '0');
    }
    *out = v;
    return true;
}

static bool ra_lit(const char **p, const char *end, const char *s) {
    size_t n = strlen(s);
    if ((size_t)(end - *p) < n || strncmp(*p, s, n) != 0)
        return false;
    *p += n;
    return true;
}

static int ra_month(const char **p, const char *end) {
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    if (end - *p < 3)
        return -1;
    for (int m = 0; m < 12; m++)
        if (strncmp(*p, months + 3 * m, 3) == 0) {
            *p += 3;
            return m;
        }
    return -1;
}

/* Skips a day name ("Sun" or "Sunday", as RFC 9110 spells them) and then sep, when set. */
static bool ra_dayname(const char **p, const char *end, char sep) {
    static const char *const days[] = {"Mon",      "Tue",    "Wed",      "Thu",     "Fri",
                                       "Sat",      "Sun",    "Monday",   "Tuesday", "Wednesday",
                                       "Thursday", "Friday", "Saturday", "Sunday"};
    const char *s = *p;
    while (s < end && ((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z')))
        s++;
    bool known = false;
    for (size_t i = 0; i < sizeof(days) / sizeof(days[0]) && !known; i++)
        known = strlen(days[i]) == (size_t)(s - *p) && strncmp(days[i], *p, (size_t)(s - *p)) == 0;
    if (!known)
        return false;
    if (sep) {
        if (s >= end || *s != sep)
            return false;
        s++;
    }
    *p = s;
    return true;
}

static bool ra_time(const char **p, const char *end, int *h, int *mi, int *sec) {
    return ra_digits(p, end, 2, h) && ra_lit(p, end, ":") && ra_digits(p, end, 2, mi) &&
           ra_lit(p, end, ":") && ra_digits(p, end, 2, sec) && *h < 24 && *mi < 60 && *sec <= 60;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian), with no libc time zone involved. */
static long long ra_days(long long y, int m, int d) {
    y -= m < 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 1 ? -2 : 10)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* IMF-fixdate, RFC 850 or asctime; returns seconds since the epoch or -1. */
static long long ra_date(const char *p, const char *end) {
    int d = 0, y = 0, h = 0, mi = 0, s = 0, m;
    const char *q = p;

    if (ra_dayname(&q, end, ',') && ra_lit(&q, end, " ")) {
        if (ra_digits(&q, end, 2, &d) && ra_lit(&q, end, " ")) {
            /* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
            if ((m = ra_month(&q, end)) < 0 || !ra_lit(&q, end, " ") ||
                !ra_digits(&q, end, 4, &y) || !ra_lit(&q, end, " "))
                return -1;
        } else {
            /* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT (two-digit years: 1970 to 2069) */
            q = p;
            ra_dayname(&q, end, ',');
            if (!ra_lit(&q, end, " ") || !ra_digits(&q, end, 2, &d) || !ra_lit(&q, end, "-") ||
                (m = ra_month(&q, end)) < 0 || !ra_lit(&q, end, "-") ||
                !ra_digits(&q, end, 2, &y) || !ra_lit(&q, end, " "))
                return -1;
            y += y < 70 ? 2000 : 1900;
        }
        if (!ra_time(&q, end, &h, &mi, &s) || !ra_lit(&q, end, " GMT") || q != end)
            return -1;
    } else {
        /* asctime: Sun Nov  6 08:49:37 1994 */
        q = p;
        if (!ra_dayname(&q, end, 0) || !ra_lit(&q, end, " ") || (m = ra_month(&q, end)) < 0 ||
            !ra_lit(&q, end, " "))
            return -1;
        if (q < end && *q == ' ') {
            q++;
            if (!ra_digits(&q, end, 1, &d))
                return -1;
        } else if (!ra_digits(&q, end, 2, &d)) {
            return -1;
        }
        if (!ra_lit(&q, end, " ") || !ra_time(&q, end, &h, &mi, &s) || !ra_lit(&q, end, " ") ||
            !ra_digits(&q, end, 4, &y) || q != end)
            return -1;
    }
    if (d < 1 || d > 31)
        return -1;
    return ra_days(y, m, d) * 86400 + h * 3600 + mi * 60 + s;
}

long retry_after_parse(const char *value, size_t len, time_t now) {
    const char *p = value, *end = value + len;

    if (!value)
        return -1;
    while (p < end && ra_blank(*p))
        p++;
    while (end > p && ra_blank(end[-1]))
        end--;
    if (p == end)
        return -1;
    if (*p >= '0' && *p <= '9') {
        /* delta-seconds: 1*DIGIT, saturated, so 99999999999999999999 is "a long time". */
        long long s = 0;
        for (; p < end; p++) {
            if (*p < '0' || *p > '9')
                return -1;
            if (s <= RETRY_AFTER_MAX_SECONDS)
                s = s * 10 + (*p - '0');
        }
        return ra_clamp(s);
    }
    long long at = ra_date(p, end);
    if (at < 0)
        return -1;
    return ra_clamp(at - (long long)now);
}
