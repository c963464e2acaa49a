/*
 * Unit tests for app.c: the recent-deliveries LRU (hits, misses, eviction
 * after APP_LRU_SIZE entries) and swapping the config under references held
 * by requests in flight.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/app.h"
#include "gpuhook/config.h"
#include "gpuhook/naming.h"

/* A config with nothing loaded: enough for reference counting (config_unref frees it). */
static struct config *bare_config(const char *listen) {
    struct config *cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    cfg->refs = 1;
    cfg->listen = strdup(listen);
    return cfg;
}

static int setup(void **state) {
    struct app *app = malloc(sizeof(*app));
    if (!app)
        return -1;
    app_init(app, bare_config("first:1"), NULL);
    *state = app;
    return 0;
}

static int teardown(void **state) {
    struct app *app = *state;
    app_cleanup(app);
    free(app);
    return 0;
}

static void test_app_lru_misses_when_empty(void **state) {
    struct app *app = *state;
    struct app_lru_entry e;

    assert_false(
        app_lru_get(app, NAMING_WEBHOOK, "123", "72d3162e-cc78-11e3-81ab-4c9367dc0958", &e));
    assert_false(app_lru_get(app, NAMING_WEBHOOK, "", "", &e));
    assert_false(app_lru_get(app, NAMING_WEBHOOK, NULL, NULL, &e));
}

static void test_app_lru_hit_returns_what_was_put(void **state) {
    struct app *app = *state;
    struct app_lru_entry e;

    app_lru_put(app, NAMING_WEBHOOK, "123", "guid-1", "gpu-workflow-lite-0123456789", "lite",
                "main-lite");
    memset(&e, 0, sizeof(e));
    assert_true(app_lru_get(app, NAMING_WEBHOOK, "123", "guid-1", &e));
    assert_string_equal(e.name, "gpu-workflow-lite-0123456789");
    assert_string_equal(e.variant, "lite");
    assert_string_equal(e.rule, "main-lite");
}

static void test_app_lru_key_is_hook_and_delivery(void **state) {
    struct app *app = *state;
    struct app_lru_entry e;

    app_lru_put(app, NAMING_WEBHOOK, "123", "guid-1", "run-a", "lite", "default");
    /* Same delivery from another hook, or another delivery from the same hook: misses. */
    assert_false(app_lru_get(app, NAMING_WEBHOOK, "124", "guid-1", &e));
    assert_false(app_lru_get(app, NAMING_WEBHOOK, "123", "guid-2", &e));
    assert_false(app_lru_get(app, NAMING_WEBHOOK, "12", "3guid-1", &e));
    assert_false(app_lru_get(app, NAMING_WEBHOOK, NULL, "guid-1", &e));
    /* A delivery without a hook ID is its own key. */
    app_lru_put(app, NAMING_WEBHOOK, NULL, "guid-9", "run-b", "original", "r");
    assert_true(app_lru_get(app, NAMING_WEBHOOK, NULL, "guid-9", &e));
    assert_string_equal(e.name, "run-b");
    assert_true(app_lru_get(app, NAMING_WEBHOOK, "", "guid-9", &e));
    /* A trigger's key never answers for a webhook delivery of the same text, nor back. */
    app_lru_put(app, NAMING_TRIGGER, NULL, "key-1", "run-t", "lite", "manual");
    assert_false(app_lru_get(app, NAMING_WEBHOOK, NULL, "key-1", &e));
    assert_false(app_lru_get(app, NAMING_WEBHOOK, "", "key-1", &e));
    assert_true(app_lru_get(app, NAMING_TRIGGER, NULL, "key-1", &e));
    assert_string_equal(e.name, "run-t");
    assert_false(app_lru_get(app, NAMING_TRIGGER, NULL, "guid-9", &e));
}

static void test_app_lru_recent_entries_hit_and_memory_is_bounded(void **state) {
    struct app *app = *state;
    struct app_lru_entry e;
    char delivery[32], name[64];
    int hits = 0;

    /* The cache is direct-mapped: whatever was put last always hits. */
    for (int i = 0; i < 10 * APP_LRU_SIZE; i++) {
        snprintf(delivery, sizeof(delivery), "d-%d", i);
        snprintf(name, sizeof(name), "run-%d", i);
        app_lru_put(app, NAMING_WEBHOOK, "1", delivery, name, "lite", "default");
        assert_true(app_lru_get(app, NAMING_WEBHOOK, "1", delivery, &e));
        assert_string_equal(e.name, name);
    }
    /* It holds at most APP_LRU_SIZE entries, and a miss is never a wrong hit. */
    for (int i = 0; i < 10 * APP_LRU_SIZE; i++) {
        snprintf(delivery, sizeof(delivery), "d-%d", i);
        snprintf(name, sizeof(name), "run-%d", i);
        if (app_lru_get(app, NAMING_WEBHOOK, "1", delivery, &e)) {
            assert_string_equal(e.name, name);
            hits++;
        }
    }
    assert_true(hits > 0);
    assert_true(hits <= APP_LRU_SIZE);
}

static void test_app_lru_long_values_are_cut_not_overflowed(void **state) {
    struct app *app = *state;
    struct app_lru_entry e;
    char rule[300];

    memset(rule, 'r', sizeof(rule) - 1);
    rule[sizeof(rule) - 1] = '\0';
    app_lru_put(app, NAMING_WEBHOOK, "1", "d", "name", "a-variant-name-longer-than-sixteen", rule);
    assert_true(app_lru_get(app, NAMING_WEBHOOK, "1", "d", &e));
    assert_int_equal(strlen(e.variant), sizeof(e.variant) - 1);
    assert_int_equal(strlen(e.rule), sizeof(e.rule) - 1);
}

static void test_app_config_swap_keeps_borrowed_configs_alive(void **state) {
    struct app *app = *state;

    /* A request takes a reference to the current config... */
    struct config *held = app_config(app);
    assert_string_equal(held->listen, "first:1");
    assert_int_equal(held->refs, 2);

    /* ...SIGHUP installs a new one: the app drops its reference, the request keeps its own. */
    struct config *next = bare_config("second:2");
    app_config_swap(app, next);
    assert_int_equal(held->refs, 1);
    assert_string_equal(held->listen, "first:1"); /* still alive (ASan would tell) */

    struct config *now = app_config(app);
    assert_ptr_equal(now, next);
    assert_string_equal(now->listen, "second:2");
    assert_int_equal(next->refs, 2);
    config_unref(now);
    assert_int_equal(next->refs, 1);

    /* The request finishes: the old config is freed now, not before. */
    config_unref(held);
}

static void test_app_config_swap_frees_an_unborrowed_config(void **state) {
    struct app *app = *state;

    /* Nobody holds the first config: swapping frees it (ASan reports a leak otherwise). */
    app_config_swap(app, bare_config("second:2"));
    app_config_swap(app, bare_config("third:3"));
    struct config *now = app_config(app);
    assert_string_equal(now->listen, "third:3");
    assert_int_equal(now->refs, 2);
    config_unref(now);
}

struct swapper {
    struct app *app;
    int rounds;
};

static void *swap_many(void *arg) {
    struct swapper *s = arg;
    for (int i = 0; i < s->rounds; i++)
        app_config_swap(s->app, bare_config("swapped:1"));
    return NULL;
}

static void test_app_config_readers_and_swaps_race_safely(void **state) {
    struct app *app = *state;
    struct swapper s = {app, 2000};
    pthread_t t;

    assert_int_equal(pthread_create(&t, NULL, swap_many, &s), 0);
    for (int i = 0; i < 20000; i++) {
        struct config *cfg = app_config(app);
        assert_non_null(cfg->listen);
        config_unref(cfg);
    }
    pthread_join(t, NULL);
    struct config *cfg = app_config(app);
    assert_int_equal(cfg->refs, 2);
    config_unref(cfg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_app_lru_misses_when_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_app_lru_hit_returns_what_was_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_app_lru_key_is_hook_and_delivery, setup, teardown),
        cmocka_unit_test_setup_teardown(test_app_lru_recent_entries_hit_and_memory_is_bounded,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_app_lru_long_values_are_cut_not_overflowed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_app_config_swap_keeps_borrowed_configs_alive, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_app_config_swap_frees_an_unborrowed_config, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_app_config_readers_and_swaps_race_safely, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
