/*
 * Unit tests for clock.c: RFC 3339 text for known instants (checked against
 * date(1)'s answers), times before the epoch, and clocks that move forward.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <string.h>

#include "gpuhook/clock.h"

static void test_clock_rfc3339_formats_known_instants(void **state) {
    (void)state;
    static const struct {
        long long ms;
        const char *want;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        /* date -u -d @1764636076 +%FT%T: 2025-12-02T00:41:16 */
        {1764636076123LL, "2025-12-02T00:41:16.123Z"},
        /* The leap day of 2024: date -u -d 2024-02-29T23:59:59Z +%s is 1709251199. */
        {1709251199999LL, "2024-02-29T23:59:59.999Z"},
        /* Before the epoch the milliseconds still count forward within the second. */
        {-1, "1969-12-31T23:59:59.999Z"},
        {-1500, "1969-12-31T23:59:58.500Z"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[CLOCK_RFC3339_MAX];
        assert_string_equal(clock_rfc3339(cases[i].ms, out), cases[i].want);
    }
}

static void test_clock_rfc3339_never_overflows_its_buffer(void **state) {
    (void)state;
    char out[CLOCK_RFC3339_MAX];
    /* Years gmtime cannot hold, or that need more than four digits, still fit. */
    long long extremes[] = {LLONG_MAX, LLONG_MIN, 253402300800000LL /* year 10000 */};
    for (size_t i = 0; i < sizeof(extremes) / sizeof(extremes[0]); i++) {
        clock_rfc3339(extremes[i], out);
        assert_true(strlen(out) < CLOCK_RFC3339_MAX);
    }
    assert_string_equal(clock_rfc3339(253402300800000LL, out), "10000-01-01T00:00:00.000Z");
}

static void test_clock_monotonic_and_wall_move_forward(void **state) {
    (void)state;
    long long m0 = clock_mono_ms();
    long long w0 = clock_wall_ms();
    assert_true(m0 >= 0);
    /* After 2026-01-01: a wall clock read as seconds, or as microseconds, fails this. */
    assert_true(w0 > 1767225600000LL && w0 < 4102444800000LL);
    assert_true(clock_mono_ms() >= m0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clock_rfc3339_formats_known_instants),
        cmocka_unit_test(test_clock_rfc3339_never_overflows_its_buffer),
        cmocka_unit_test(test_clock_monotonic_and_wall_move_forward),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
