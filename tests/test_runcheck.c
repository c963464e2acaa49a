/*
 * Unit tests for runcheck.c: every rendered field that names a Kubernetes object must
 * be a valid name before a PipelineRun is sent, and the message names field and value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "gpuhook/error.h"
#include "gpuhook/runcheck.h"

static int check(const char *json, char *err, size_t n) {
    err[0] = '\0';
    return runcheck_names(json, strlen(json), err, n);
}

static void test_runcheck_accepts_a_shipped_shaped_run(void **state) {
    char err[512];
    (void)state;
    assert_int_equal(
        check(
            "{\"metadata\":{\"name\":\"gpu-real-8-step-workflow-gh-866e43eebff9acd3\"},"
            "\"spec\":{\"pipelineRef\":{\"name\":\"gpu-real-8-step-workflow-lite\"},"
            "\"taskRunTemplate\":{\"serviceAccountName\":\"gpu.runner\"},"
            "\"workspaces\":[{\"name\":\"shared-storage\",\"volumeClaimTemplate\":{}},"
            "{\"name\":\"c\",\"persistentVolumeClaim\":{\"claimName\":\"data-1\"}},"
            "{\"name\":\"m\",\"configMap\":{\"name\":\"cfg\"}},"
            "{\"name\":\"s\",\"secret\":{\"secretName\":\"creds\"}}],"
            "\"taskRunSpecs\":[{\"pipelineTaskName\":\"A_task\",\"serviceAccountName\":\"sa\"}]}}",
            err, sizeof(err)),
        0);
    /* A resolver reference has no name: nothing to check. */
    assert_int_equal(check("{\"metadata\":{\"name\":\"r\"},\"spec\":{\"pipelineRef\":"
                           "{\"resolver\":\"git\"}}}",
                           err, sizeof(err)),
                     0);
}

static void test_runcheck_names_the_field_and_the_value(void **state) {
    static const struct {
        const char *json;
        const char *message;
    } cases[] = {
        {"{\"metadata\":{\"name\":\"r\"},\"spec\":{\"pipelineRef\":{\"name\":\"p-../../x\"}}}",
         "the rendered spec.pipelineRef.name \"p-../../x\" is not a valid Kubernetes name: use "
         "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, at "
         "most 63 characters"},
        {"{\"metadata\":{\"name\":\"r\"},\"spec\":{\"pipelineRef\":{\"name\":\"Upper\"}}}",
         "the rendered spec.pipelineRef.name \"Upper\""},
        {"{\"metadata\":{\"name\":\"r\"},\"spec\":{\"pipelineRef\":{\"name\":"
         "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}}}",
         "the rendered spec.pipelineRef.name \"aaaa"},
        {"{\"metadata\":{\"name\":\"r\"},\"spec\":{\"pipelineRef\":{\"name\":[\"a\"]}}}",
         "the rendered spec.pipelineRef.name is not a string"},
        {"{\"metadata\":{\"name\":\"r\"},\"spec\":{\"taskRunTemplate\":{\"serviceAccountName\":"
         "\"a b\"}}}",
         "the rendered spec.taskRunTemplate.serviceAccountName \"a b\""},
        {"{\"metadata\":{\"name\":\"r\"},\"spec\":{\"workspaces\":[{\"name\":\"w\"},"
         "{\"name\":\"c\",\"persistentVolumeClaim\":{\"claimName\":\"-x\"}}]}}",
         "the rendered spec.workspaces[1].persistentVolumeClaim.claimName \"-x\""},
        {"{\"metadata\":{\"name\":\"r\"},\"spec\":{\"workspaces\":[{\"configMap\":{\"name\":"
         "\"a..b\"}}]}}",
         "the rendered spec.workspaces[0].configMap.name \"a..b\""},
        {"{\"metadata\":{\"name\":\"r\"},\"spec\":{\"workspaces\":[{\"secret\":{\"secretName\":"
         "\"\"}}]}}",
         "the rendered spec.workspaces[0].secret.secretName \"\""},
        {"{\"metadata\":{\"name\":\"r\"},\"spec\":{\"taskRunSpecs\":[{},{\"serviceAccountName\":"
         "\"x/y\"}]}}",
         "the rendered spec.taskRunSpecs[1].serviceAccountName \"x/y\""},
        {"{\"metadata\":{\"name\":\"Run\"}}", "the rendered metadata.name \"Run\""},
        {"{\"metadata\":", "the rendered PipelineRun does not parse as JSON"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[512];
        if (check(cases[i].json, err, sizeof(err)) != GHE_INVAL)
            fail_msg("case %zu passed: %s", i, cases[i].json);
        if (strncmp(err, cases[i].message, strlen(cases[i].message)) != 0)
            fail_msg("case %zu: \"%s\" does not start with \"%s\"", i, err, cases[i].message);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_runcheck_accepts_a_shipped_shaped_run),
        cmocka_unit_test(test_runcheck_names_the_field_and_the_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
