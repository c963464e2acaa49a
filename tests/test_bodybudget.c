/*
 * Unit tests for bodybudget.c: the budget is never exceeded, large bodies stop
 * short of the eighth kept for small ones, what is given back can be taken
 * again, and threads taking and giving at once lose nothing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>

#include "gpuhook/bodybudget.h"

#define MIB (1024L * 1024)

static int reset(void **state) {
    (void)state;
    bodybudget_set_limit(8 * MIB);
    return 0;
}

static void test_bodybudget_large_bodies_leave_the_small_reserve(void **state) {
    (void)state;
    /* Large bodies may take 7 MiB of 8; the last MiB is for small ones. */
    assert_true(bodybudget_take(4 * MIB, 4 * MIB));
    assert_true(bodybudget_take(3 * MIB, 3 * MIB));
    assert_false(bodybudget_take(4096, 3 * MIB + 4096));
    assert_int_equal(bodybudget_in_use(), 7 * MIB);
    /* Small bodies still fit, up to the whole budget and not a byte more. */
    for (int i = 0; i < 4; i++)
        assert_true(bodybudget_take(256 * 1024, 256 * 1024));
    assert_int_equal(bodybudget_in_use(), 8 * MIB);
    assert_false(bodybudget_take(1, 1));
    /* Given back, it can be taken again, up to the same line. */
    bodybudget_give(4 * MIB);
    assert_true(bodybudget_take(3 * MIB, 3 * MIB));
    assert_false(bodybudget_take(MIB, 4 * MIB));
    bodybudget_give(7 * MIB);
    assert_int_equal(bodybudget_in_use(), 0);
}

static void test_bodybudget_refuses_more_than_the_whole_budget(void **state) {
    (void)state;
    assert_false(bodybudget_take(9 * MIB, 1));
    assert_int_equal(bodybudget_in_use(), 0);
}

static void *churn(void *arg) {
    int *taken = arg;
    for (int i = 0; i < 100000; i++) {
        if (bodybudget_take(4096, 4096)) {
            (*taken)++;
            bodybudget_give(4096);
        }
    }
    return NULL;
}

static void test_bodybudget_threads_take_and_give_back_exactly(void **state) {
    (void)state;
    pthread_t t[4];
    int taken[4] = {0};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, churn, &taken[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(bodybudget_in_use(), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(taken[i], 100000);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_bodybudget_large_bodies_leave_the_small_reserve, reset),
        cmocka_unit_test_setup(test_bodybudget_refuses_more_than_the_whole_budget, reset),
        cmocka_unit_test_setup(test_bodybudget_threads_take_and_give_back_exactly, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
