/*
 * Unit tests for ghtasks.c: a TaskRunList (shaped as Tekton v1 writes it: labels
 * tekton.dev/pipelineRun and tekton.dev/pipelineTask, status.conditions, podName, start
 * and completion times) becomes the check run's table in the run's order, with the
 * failing task; a Pod's node and GPU request; the node the decision chose.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "gpuhook/error.h"
#include "gpuhook/ghtasks.h"

#define TR(name, task, st, reason, start, end)                                                     \
    "{\"apiVersion\":\"tekton.dev/v1\",\"kind\":\"TaskRun\",\"metadata\":{\"name\":\"" name        \
    "\",\"labels\":{\"tekton.dev/pipelineRun\":\"run\",\"tekton.dev/pipelineTask\":\"" task        \
    "\"}},\"status\":{\"podName\":\"" name "-pod\",\"startTime\":\"" start "\"" end                \
    ",\"conditions\":[{\"type\":\"Succeeded\",\"status\":\"" st "\",\"reason\":\"" reason "\"}]}}"
#define END(t) ",\"completionTime\":\"" t "\""

/* Listed in key order (by name), as the API lists them. */
/* clang-format off */
static const char LIST[] =
    "{\"apiVersion\":\"tekton.dev/v1\",\"kind\":\"TaskRunList\",\"metadata\":{},\"items\":["
    TR("run-build", "build", "True", "Succeeded", "2026-12-02T10:00:10Z",
       END("2026-12-02T10:01:00Z"))
    "," TR("run-fetch", "fetch", "True", "Succeeded", "2026-12-02T10:00:00Z",
           END("2026-12-02T10:00:04Z"))
    "," TR("run-gpu-test", "gpu-test", "False", "Failed", "2026-12-02T10:01:00Z",
           END("2026-12-02T10:05:00Z"))
    "," TR("run-lint", "lint", "False", "TaskRunTimeout", "2026-12-02T10:01:00Z",
           END("2026-12-02T10:03:00Z"))
    "," TR("run-wait", "wait", "False", "TaskRunCancelled", "2026-12-02T10:01:00Z",
           END("2026-12-02T10:02:00Z"))
    "]}";
/* clang-format on */

static const char STATUS[] =
    "{\"childReferences\":["
    "{\"kind\":\"TaskRun\",\"name\":\"run-fetch\",\"pipelineTaskName\":\"fetch\"},"
    "{\"kind\":\"TaskRun\",\"name\":\"run-build\",\"pipelineTaskName\":\"build\"},"
    "{\"kind\":\"TaskRun\",\"name\":\"run-gpu-test\",\"pipelineTaskName\":\"gpu-test\"},"
    "{\"kind\":\"TaskRun\",\"name\":\"run-wait\",\"pipelineTaskName\":\"wait\"}],"
    "\"skippedTasks\":[{\"name\":\"report\",\"reason\":\"PipelineRun was stopping\"}]}";

static void test_ghtasks_table_in_run_order_and_first_failure_wins(void **state) {
    (void)state;
    cJSON *st = cJSON_Parse(STATUS);
    struct ghtasks t;
    char err[128];
    ghtasks_init(&t);
    assert_int_equal(ghtasks_parse(&t, LIST, strlen(LIST), st, err, sizeof(err)), 0);
    static const struct {
        const char *name, *outcome, *pod;
        long long ms;
    } want[] = {
        {"fetch", "Succeeded", "run-fetch-pod", 4000},
        {"build", "Succeeded", "run-build-pod", 50000},
        {"gpu-test", "Failed", "run-gpu-test-pod", 240000},
        {"wait", "TaskRunCancelled", "run-wait-pod", 60000},
        {"lint", "TaskRunTimeout", "run-lint-pod", 120000}, /* not in childReferences */
        {"report", "Skipped", NULL, -1},                    /* no TaskRun */
    };
    assert_int_equal(t.nrows, 6);
    for (size_t i = 0; i < 6; i++) {
        assert_string_equal(t.view[i].name, want[i].name);
        assert_string_equal(t.view[i].outcome, want[i].outcome);
        assert_int_equal(t.view[i].duration_ms, want[i].ms);
        if (want[i].pod)
            assert_string_equal(t.rows[i].pod, want[i].pod);
        else
            assert_null(t.rows[i].pod);
    }
    /* lint timed out at 10:03, before gpu-test failed at 10:05; the cancelled wait ended at
     * 10:02 but was stopped, not failed. */
    assert_string_equal(t.failing_task, "lint");
    assert_false(t.more);
    ghtasks_cleanup(&t);

    /* Only a cancelled TaskRun: nothing failed of its own. */
    /* clang-format off */
    const char *one = "{\"items\":["
        TR("run-wait", "wait", "False", "TaskRunCancelled", "2026-12-02T10:01:00Z", "")
        "],\"metadata\":{\"continue\":\"abc\"}}";
    /* clang-format on */
    assert_int_equal(ghtasks_parse(&t, one, strlen(one), NULL, err, sizeof(err)), 0);
    assert_int_equal(t.nrows, 1);
    assert_null(t.failing_task);
    assert_int_equal(t.view[0].duration_ms, -1); /* no completion time */
    assert_true(t.more);                         /* a continue token: the list had more */
    ghtasks_cleanup(&t);

    assert_int_equal(ghtasks_parse(&t, "{\"kind\":\"Status\"}", 17, st, err, sizeof(err)),
                     GHE_INVAL);
    assert_string_equal(err, "the TaskRun list has no items");
    assert_int_equal(ghtasks_parse(&t, "not json", 8, st, err, sizeof(err)), GHE_INVAL);
    assert_int_equal(t.nrows, 0);
    cJSON_Delete(st);
}

static void test_ghtasks_pod_node_and_gpu_request(void **state) {
    (void)state;
    char node[64];
    bool gpu;
    const char *gpu_pod = "{\"kind\":\"Pod\",\"spec\":{\"nodeName\":\"gpu-b\",\"containers\":["
                          "{\"name\":\"step-prepare\",\"resources\":{}},"
                          "{\"name\":\"step-test\",\"resources\":{\"limits\":"
                          "{\"nvidia.com/gpu\":\"1\",\"memory\":\"8Gi\"}}}]}}";
    assert_int_equal(ghtasks_pod_node(gpu_pod, strlen(gpu_pod), node, sizeof(node), &gpu), 0);
    assert_string_equal(node, "gpu-b");
    assert_true(gpu);
    const char *cpu_pod = "{\"spec\":{\"nodeName\":\"cpu-1\",\"containers\":[{\"resources\":"
                          "{\"requests\":{\"cpu\":\"1\"}}}]}}";
    assert_int_equal(ghtasks_pod_node(cpu_pod, strlen(cpu_pod), node, sizeof(node), &gpu), 0);
    assert_string_equal(node, "cpu-1");
    assert_false(gpu);
    const char *pending = "{\"spec\":{\"containers\":[]}}";
    assert_int_equal(ghtasks_pod_node(pending, strlen(pending), node, sizeof(node), &gpu), 0);
    assert_string_equal(node, "");
    assert_int_equal(ghtasks_pod_node("[]", 2, node, sizeof(node), &gpu), GHE_INVAL);
}

static void test_ghtasks_chosen_node_from_the_pod_template(void **state) {
    (void)state;
    static const struct {
        const char *run, *node;
    } cases[] = {
        {"{\"spec\":{\"taskRunTemplate\":{\"podTemplate\":{\"affinity\":{\"nodeAffinity\":{"
         "\"preferredDuringSchedulingIgnoredDuringExecution\":[{\"weight\":100,\"preference\":{"
         "\"matchExpressions\":[{\"key\":\"kubernetes.io/hostname\",\"operator\":\"In\","
         "\"values\":[\"gpu-7\"]}]}}]}}}}}}",
         "gpu-7"},
        {"{\"spec\":{\"taskRunTemplate\":{\"podTemplate\":{\"nodeSelector\":"
         "{\"kubernetes.io/hostname\":\"gpu-2\"}}}}}",
         "gpu-2"},
        {"{\"spec\":{\"taskRunTemplate\":{\"podTemplate\":{\"affinity\":{\"nodeAffinity\":{"
         "\"requiredDuringSchedulingIgnoredDuringExecution\":{\"nodeSelectorTerms\":[{"
         "\"matchExpressions\":[{\"key\":\"nvidia.com/gpu.memory\",\"operator\":\"Gt\","
         "\"values\":[\"40000\"]}]},{\"matchExpressions\":[{\"key\":\"kubernetes.io/hostname\","
         "\"operator\":\"In\",\"values\":[\"gpu-3\"]}]}]}}}}}}}",
         "gpu-3"},
        /* Only a GPU memory requirement: no one node was chosen. */
        {"{\"spec\":{\"taskRunTemplate\":{\"podTemplate\":{\"affinity\":{\"nodeAffinity\":{"
         "\"requiredDuringSchedulingIgnoredDuringExecution\":{\"nodeSelectorTerms\":[{"
         "\"matchExpressions\":[{\"key\":\"nvidia.com/gpu.memory\",\"operator\":\"Gt\","
         "\"values\":[\"40000\"]}]}]}}}}}}}",
         NULL},
        {"{\"spec\":{\"pipelineRef\":{\"name\":\"p\"}}}", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *run = cJSON_Parse(cases[i].run);
        assert_non_null(run);
        const char *got = ghtasks_chosen_node(run);
        if (cases[i].node)
            assert_string_equal(got, cases[i].node);
        else
            assert_null(got);
        cJSON_Delete(run);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ghtasks_table_in_run_order_and_first_failure_wins),
        cmocka_unit_test(test_ghtasks_pod_node_and_gpu_request),
        cmocka_unit_test(test_ghtasks_chosen_node_from_the_pod_template),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
