/*
 * Unit tests for workpool.c: every job runs, a burst of blocking jobs gets a
 * thread each up to the bound, the threads of a burst leave once idle, down to
 * the minimum, and freeing runs what is still queued.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "gpuhook/workpool.h"

static atomic_int ran;
static atomic_int running;
static atomic_int most;

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void blocking_job(void *arg) {
    int now = atomic_fetch_add(&running, 1) + 1;
    int seen = atomic_load(&most);
    while (now > seen && !atomic_compare_exchange_weak(&most, &seen, now))
        ;
    sleep_ms((long)(intptr_t)arg);
    atomic_fetch_sub(&running, 1);
    atomic_fetch_add(&ran, 1);
}

static int reset(void **state) {
    (void)state;
    atomic_store(&ran, 0);
    atomic_store(&running, 0);
    atomic_store(&most, 0);
    return 0;
}

static void test_workpool_a_burst_gets_threads_then_shrinks_to_the_minimum(void **state) {
    (void)state;
    struct workpool *p = workpool_new(2, 64, 200);
    assert_non_null(p);
    assert_int_equal(workpool_threads(p), 2);
    for (int i = 0; i < 40; i++)
        assert_int_equal(workpool_submit(p, blocking_job, (void *)(intptr_t)300), 0);
    sleep_ms(100);
    assert_true(workpool_threads(p) >= 40);
    assert_true(atomic_load(&most) >= 40);
    /* 300 ms of work, then 200 ms idle: the burst's threads leave. */
    for (int i = 0; i < 50 && workpool_threads(p) > 2; i++)
        sleep_ms(50);
    assert_int_equal(atomic_load(&ran), 40);
    assert_int_equal(workpool_threads(p), 2);
    /* The minimum stays through more idle time, and still serves. */
    sleep_ms(500);
    assert_int_equal(workpool_threads(p), 2);
    assert_int_equal(workpool_submit(p, blocking_job, (void *)(intptr_t)1), 0);
    for (int i = 0; i < 100 && atomic_load(&ran) < 41; i++)
        sleep_ms(10);
    assert_int_equal(atomic_load(&ran), 41);
    workpool_free(p);
}

static void test_workpool_never_exceeds_its_bound(void **state) {
    (void)state;
    struct workpool *p = workpool_new(0, 4, 100);
    for (int i = 0; i < 20; i++)
        assert_int_equal(workpool_submit(p, blocking_job, (void *)(intptr_t)20), 0);
    assert_true(workpool_threads(p) <= 4);
    workpool_free(p); /* runs the queued jobs first */
    assert_int_equal(atomic_load(&ran), 20);
    assert_true(atomic_load(&most) <= 4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_workpool_a_burst_gets_threads_then_shrinks_to_the_minimum,
                               reset),
        cmocka_unit_test_setup(test_workpool_never_exceeds_its_bound, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
