/*
 * Unit tests for ids.c: UUIDs in RFC 4122's version 4 form that do not repeat,
 * random bytes that are not all equal, and jitter that stays in its range.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "gpuhook/ids.h"

static bool is_uuid4(const char *s) {
    if (strlen(s) != IDS_UUID_LEN)
        return false;
    for (int i = 0; i < IDS_UUID_LEN; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash != (s[i] == '-'))
            return false;
        if (!dash && !strchr("0123456789abcdef", s[i]))
            return false;
    }
    return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

static void test_ids_uuid4_has_the_version_4_form_and_does_not_repeat(void **state) {
    (void)state;
    char seen[64][IDS_UUID_LEN + 1];
    for (int i = 0; i < 64; i++) {
        assert_int_equal(ids_uuid4(seen[i]), 0);
        assert_true(is_uuid4(seen[i]));
        for (int j = 0; j < i; j++)
            assert_string_not_equal(seen[i], seen[j]);
    }
}

static void test_ids_random_bytes_fill_the_whole_buffer(void **state) {
    (void)state;
    /* 4096 bytes all equal to their first would mean the buffer was not filled. */
    static unsigned char b[4096];
    memset(b, 0xAA, sizeof(b));
    assert_int_equal(ids_random_bytes(b, sizeof(b)), 0);
    int same_as_fill = 0;
    for (size_t i = 0; i < sizeof(b); i++)
        same_as_fill += b[i] == 0xAA;
    assert_true(same_as_fill < 100); /* about 16 expected */
}

static void test_ids_jitter_stays_within_half_and_whole(void **state) {
    (void)state;
    long bases[] = {1, 2, 3, 1000, 300000};
    for (size_t k = 0; k < sizeof(bases) / sizeof(bases[0]); k++) {
        long lo = bases[k], hi = 0;
        for (int i = 0; i < 2000; i++) {
            long w = ids_jitter_ms(bases[k]);
            assert_true(w >= bases[k] / 2 && w <= bases[k]);
            lo = w < lo ? w : lo;
            hi = w > hi ? w : hi;
        }
        /* Both ends are reached for the large bases: the draw is not constant. */
        if (bases[k] >= 1000)
            assert_true(hi - lo > bases[k] / 4);
    }
    assert_int_equal(ids_jitter_ms(0), 0);
    assert_int_equal(ids_jitter_ms(-5), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ids_uuid4_has_the_version_4_form_and_does_not_repeat),
        cmocka_unit_test(test_ids_random_bytes_fill_the_whole_buffer),
        cmocka_unit_test(test_ids_jitter_stays_within_half_and_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
