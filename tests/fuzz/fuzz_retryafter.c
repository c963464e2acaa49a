/*
 * Fuzz target 6: the Retry-After parser (kube.c reads the header of every API answer
 * with it). The whole input is the header's value. Invariants: the result is -1 or
 * within [0, RETRY_AFTER_MAX_SECONDS] whatever the input (no overflow: a UBSan build
 * aborts on one); delta-seconds give exactly the saturated value; an accepted
 * IMF-fixdate gives what strptime and timegm make of it, clamped.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpuhook/retryafter.h"

/* Sun, 06 Nov 1994 08:49:37 GMT: RFC 9110's example date. */
#define FUZZ_RA_NOW ((time_t)784111777)

int fuzz_retryafter_one(const uint8_t *data, size_t size) {
    const char *v = (const char *)data;
    long got = retry_after_parse(v, size, FUZZ_RA_NOW);

    FUZZ_REQUIRE(got == -1 || (got >= 0 && got <= RETRY_AFTER_MAX_SECONDS),
                 "Retry-After gave %ld, outside [-1, %ld]", got, RETRY_AFTER_MAX_SECONDS);
    FUZZ_REQUIRE(retry_after_parse(v, size, FUZZ_RA_NOW) == got, "not deterministic");

    /* Trimmed of blanks, all digits: the saturated number. */
    size_t a = 0, b = size;
    while (a < b && memchr(" \t\r\n", v[a], 4))
        a++;
    while (b > a && memchr(" \t\r\n", v[b - 1], 4))
        b--;
    bool digits = a < b;
    long long want = 0;
    for (size_t i = a; i < b && digits; i++) {
        digits = v[i] >= '0' && v[i] <= '9';
        if (digits && want <= RETRY_AFTER_MAX_SECONDS)
            want = want * 10 + (v[i] - '0');
    }
    if (digits)
        FUZZ_REQUIRE(got == (want > RETRY_AFTER_MAX_SECONDS ? RETRY_AFTER_MAX_SECONDS : want),
                     "delta-seconds gave %ld, want %lld", got, want);

    /* An accepted IMF-fixdate (29 bytes, "..., DD Mon YYYY HH:MM:SS GMT") agrees with libc. */
    if (got >= 0 && !digits && b - a == 29 && v[a + 3] == ',') {
        char text[30];
        struct tm tm;
        memcpy(text, v + a, 29);
        text[29] = '\0';
        memset(&tm, 0, sizeof(tm));
        const char *end = strptime(text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        FUZZ_REQUIRE(end && *end == '\0', "accepted \"%s\", which strptime refuses", text);
        long long at = (long long)timegm(&tm) - (long long)FUZZ_RA_NOW;
        long long clamped = at < 0                         ? 0
                            : at > RETRY_AFTER_MAX_SECONDS ? RETRY_AFTER_MAX_SECONDS
                                                           : at;
        FUZZ_REQUIRE(got == clamped, "\"%s\" gave %ld, libc says %lld", text, got, clamped);
    }
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_retryafter_one(data, size);
}
#endif
