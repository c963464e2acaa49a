/*
 * The gpu_fit defaults are written once (GPU_FIT_POLICY_DEFAULTS, gpu.h): a
 * selection without gpu_fit, no selection at all, the probe's initial copy and
 * gpu_fit_policy_init must all give the same policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "gpuhook/error.h"
#include "gpuhook/gpu.h"
#include "gpuhook/select.h"

static void assert_same_policy(const struct gpu_fit_policy *a, const struct gpu_fit_policy *b) {
    assert_int_equal(a->lite_min_free_mib, b->lite_min_free_mib);
    assert_int_equal(a->original_min_free_mib, b->original_min_free_mib);
    assert_int_equal(a->on_insufficient, b->on_insufficient);
    assert_int_equal(a->max_wait_seconds, b->max_wait_seconds);
    assert_int_equal(a->on_timeout, b->on_timeout);
}

static void test_gpufit_defaults_are_gpu_h_defaults(void **state) {
    struct select_rules *rules = NULL, *none = NULL;
    struct gpu_fit_policy p;
    struct errlist el;
    cJSON *sel = cJSON_Parse("{\"default\":\"lite\"}");

    (void)state;
    errlist_init(&el);
    gpu_fit_policy_init(&p);
    /* The documented values (README, docs/gpu.md); config/gpuhook.json sets lite to 4096. */
    assert_int_equal(p.lite_min_free_mib, 2048);
    assert_int_equal(p.original_min_free_mib, 8192);
    /* Issue 18: queue is the default; it waits for ever, and downgrade applies after a wait. */
    assert_int_equal(p.on_insufficient, GPU_FIT_QUEUE);
    assert_int_equal(p.max_wait_seconds, 0);
    assert_int_equal(p.on_timeout, GPU_FIT_TIMEOUT_DOWNGRADE);
    assert_int_equal(select_rules_parse(sel, "t.json", &rules, &el), 0);
    assert_int_equal(select_rules_parse(NULL, "t.json", &none, &el), 0);
    assert_same_policy(select_rules_gpu_fit(rules), &p);
    assert_same_policy(select_rules_gpu_fit(none), &p);
    assert_same_policy(select_rules_gpu_fit(NULL), &p);
    assert_int_equal(el.count, 0);
    select_rules_free(rules);
    select_rules_free(none);
    cJSON_Delete(sel);
    errlist_cleanup(&el);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpufit_defaults_are_gpu_h_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
