/*
 * Unit tests for ghsummary.c: Tekton's Succeeded condition (reasons from
 * tektoncd/pipeline's PipelineRunReason list) mapped to check-run status and
 * conclusion and commit-status state; the markdown summary, its escaping and
 * GitHub's 65535-character bound; status descriptions cut to 140 characters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "gpuhook/buf.h"
#include "gpuhook/ghsummary.h"

#define NONE NULL

static void test_ghsummary_maps_tekton_conditions(void **state) {
    (void)state;
    static const struct {
        const char *status, *reason, *check, *conclusion, *commit;
    } cases[] = {
        {NULL, NULL, "queued", NONE, "pending"},
        {"", "", "queued", NONE, "pending"},
        {"Unknown", "PipelineRunPending", "queued", NONE, "pending"},
        {"Unknown", "Started", "in_progress", NONE, "pending"},
        {"Unknown", "Running", "in_progress", NONE, "pending"},
        {"Unknown", "PipelineRunStopping", "in_progress", NONE, "pending"},
        {"Unknown", "CancelledRunningFinally", "in_progress", NONE, "pending"},
        {"Unknown", "StoppedRunningFinally", "in_progress", NONE, "pending"},
        /* "Cancelled" with Unknown: the cancellation is being processed. */
        {"Unknown", "Cancelled", "in_progress", NONE, "pending"},
        {"True", "Succeeded", "completed", "success", "success"},
        {"True", "Completed", "completed", "success", "success"},
        {"False", "Failed", "completed", "failure", "failure"},
        {"False", "Cancelled", "completed", "cancelled", "error"},
        {"False", "CancelledRunFinally", "completed", "cancelled", "error"},
        {"False", "StoppedRunFinally", "completed", "cancelled", "error"},
        {"False", "PipelineRunTimeout", "completed", "timed_out", "error"},
        {"False", "CouldntGetPipeline", "completed", "failure", "error"},
        {"False", "PipelineValidationFailed", "completed", "failure", "error"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct ghsummary_outcome o;
        ghsummary_map(cases[i].status, cases[i].reason, &o);
        assert_string_equal(o.check_status, cases[i].check);
        if (cases[i].conclusion)
            assert_string_equal(o.check_conclusion, cases[i].conclusion);
        else
            assert_null(o.check_conclusion);
        assert_string_equal(o.commit_state, cases[i].commit);
    }
}

static void test_ghsummary_renders_the_run(void **state) {
    (void)state;
    struct ghsummary_task tasks[] = {
        {"fetch", "Succeeded", 4200},
        {"train", "Failed", 125000},
        {"report", NULL, -1},
    };
    struct ghsummary_run r = {
        .pipelinerun = "ci/gpu-run-abc12",
        .variant = "lite",
        .rule = "pull_request to main",
        .reason = "gpu_fit: 1 of 2 GPUs free; queued 12s",
        .node = "gpu-node-1",
        .condition_reason = "Failed",
        .started_ms = 1796173323000LL,
        .finished_ms = 1796173323000LL + 3723000,
        .tasks = tasks,
        .ntasks = 3,
        .failing_task = "train",
        .step_summary = "**loss** 0.12\n\n- step 8 done",
    };
    char *title, *summary;
    assert_int_equal(ghsummary_render(&r, &title, &summary), 0);
    assert_string_equal(title, "lite: Failed");
    assert_non_null(strstr(summary, "| Variant | lite |"));
    assert_non_null(strstr(summary, "| Rule | pull\\_request to main |"));
    assert_non_null(strstr(summary, "| Reason | gpu\\_fit: 1 of 2 GPUs free; queued 12s |"));
    assert_non_null(strstr(summary, "| Node | gpu\\-node\\-1 |"));
    assert_non_null(strstr(summary, "| Started | 2026-12-02T01:02:03.000Z |"));
    assert_non_null(strstr(summary, "| Duration | 1h 02m 03s |"));
    assert_non_null(strstr(summary, "**Failed task:** train"));
    assert_non_null(strstr(summary, "| fetch | Succeeded | 4.2s |"));
    assert_non_null(strstr(summary, "| train | **Failed** | 2m 05s |"));
    assert_non_null(strstr(summary, "| report | - | - |"));
    /* The Pipeline's own markdown is kept as written. */
    assert_non_null(strstr(summary, "### Summary from the run\n\n**loss** 0.12\n\n- step 8 done"));
    free(title);
    free(summary);

    struct ghsummary_run queued = {.variant = "original"};
    assert_int_equal(ghsummary_render(&queued, &title, &summary), 0);
    assert_string_equal(title, "original: queued");
    assert_null(strstr(summary, "TaskRuns"));
    assert_null(strstr(summary, "Duration"));
    free(title);
    free(summary);
}

static void test_ghsummary_taskruns_table_escapes_names_and_marks_failures(void **state) {
    (void)state;
    struct ghsummary_task tasks[] = {
        {"unit_tests|gpu", "Succeeded", 1500},
        {"train*[x]", "TaskRunTimeout", 61000},
        {"<b>report</b>", "Skipped", -1},
        {"wait", "TaskRunCancelled", -1},
    };
    struct ghsummary_run r = {.variant = "lite",
                              .tasks = tasks,
                              .ntasks = 4,
                              .tasks_cut = true,
                              .failing_task = "train*[x]"};
    char *title, *summary;
    assert_int_equal(ghsummary_render(&r, &title, &summary), 0);
    assert_non_null(strstr(summary, "| unit\\_tests\\|gpu | Succeeded | 1.5s |\n"));
    assert_non_null(strstr(summary, "| train\\*\\[x\\] | **TaskRunTimeout** | 1m 01s |\n"));
    /* Skipped is no failure: not bold. */
    assert_non_null(strstr(summary, "| &lt;b&gt;report&lt;/b&gt; | Skipped | - |\n"));
    assert_non_null(strstr(summary, "| wait | **TaskRunCancelled** | - |\n"));
    assert_non_null(strstr(summary, "**Failed task:** train\\*\\[x\\]\n"));
    assert_non_null(strstr(summary, "*(the first 4 TaskRuns; the run has more)*"));
    /* No node known: no Node line at all, rather than a dash. */
    assert_null(strstr(summary, "| Node |"));
    free(title);
    free(summary);
}

static void test_ghsummary_escapes_markdown_and_html(void **state) {
    (void)state;
    struct buf b;
    buf_init(&b, 4096);
    const char *in = "a|b <script>&`x` [l](u) *e* _u_\nnext";
    assert_int_equal(ghsummary_escape(&b, in, strlen(in)), 0);
    assert_string_equal(b.data,
                        "a\\|b &lt;script&gt;&amp;\\`x\\` \\[l\\]\\(u\\) \\*e\\* \\_u\\_ next");
    buf_cleanup(&b);
}

static void test_ghsummary_cuts_to_githubs_limit(void **state) {
    (void)state;
    /* 70000 bytes of two-byte characters: more than GitHub's 65535. */
    size_t n = 70000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[n] = 0;
    struct ghsummary_run r = {.variant = "lite", .step_summary = big};
    char *title, *summary;
    assert_int_equal(ghsummary_render(&r, &title, &summary), 0);
    size_t len = strlen(summary);
    assert_true(len <= GHSUMMARY_MAX);
    assert_non_null(strstr(summary, "summary cut to GitHub's 65535 characters"));
    /* Still valid UTF-8: no half character before the note. */
    const char *note = strstr(summary, "\n\n*(summary cut");
    assert_true(((unsigned char)note[-1] == 0xa9));
    free(title);
    free(summary);
    free(big);
}

static bool utf8_ok(const unsigned char *s) {
    while (*s) {
        size_t n = *s < 0x80 ? 1 : (*s & 0xE0) == 0xC0 ? 2 : (*s & 0xF0) == 0xE0 ? 3 : 4;
        for (size_t k = 1; k < n; k++)
            if ((s[k] & 0xC0) != 0x80)
                return false;
        s += n;
    }
    return true;
}

/* A long variant or reason of three-byte characters is cut between characters, not inside. */
static void test_ghsummary_title_cut_keeps_utf8(void **state) {
    (void)state;
    char euros[3 * 40 + 1];
    for (int i = 0; i < 40; i++)
        memcpy(euros + 3 * i, "\xe2\x82\xac", 3);
    euros[3 * 40] = '\0';
    struct ghsummary_run r = {.variant = euros, .condition_reason = euros};
    char *title, *summary;
    assert_int_equal(ghsummary_render(&r, &title, &summary), 0);
    assert_true(utf8_ok((const unsigned char *)title));
    assert_non_null(strstr(title, "\xe2\x82\xac: \xe2\x82\xac"));
    free(title);
    free(summary);
}

/* A table too long for GitHub is cut after a whole row, so no half row is rendered. */
static void test_ghsummary_cut_ends_on_a_whole_line(void **state) {
    (void)state;
    struct ghsummary_task tasks[250];
    char names[250][320];
    for (int i = 0; i < 250; i++) {
        memset(names[i], 'a' + i % 26, 300);
        names[i][300] = '\0';
        tasks[i] = (struct ghsummary_task){names[i], "Succeeded", 1000};
    }
    struct ghsummary_run r = {.variant = "lite", .tasks = tasks, .ntasks = 250};
    char *title, *summary;
    assert_int_equal(ghsummary_render(&r, &title, &summary), 0);
    assert_true(strlen(summary) <= GHSUMMARY_MAX);
    const char *note = strstr(summary, "\n\n*(summary cut");
    assert_non_null(note);
    /* The last line before the note is a whole row: "| name | Succeeded | 1.0s |". */
    const char *last = note;
    while (last > summary && last[-1] != '\n')
        last--;
    assert_true(note - last > 4);
    assert_memory_equal(note - 2, " |", 2);
    free(title);
    free(summary);
}

static void test_ghsummary_clip_counts_characters(void **state) {
    (void)state;
    char out[600];
    ghsummary_clip("short", GHSUMMARY_DESCRIPTION_MAX, out, sizeof(out));
    assert_string_equal(out, "short");
    char longer[400];
    for (int i = 0; i < 150; i++)
        memcpy(longer + 2 * i, "\xc3\xa9", 2);
    longer[300] = 0;
    ghsummary_clip(longer, GHSUMMARY_DESCRIPTION_MAX, out, sizeof(out));
    /* 137 characters of two bytes, then "...": 140 characters. */
    assert_int_equal(strlen(out), 137 * 2 + 3);
    assert_string_equal(out + 274, "...");
    longer[280] = 0; /* exactly 140 characters: kept whole */
    ghsummary_clip(longer, GHSUMMARY_DESCRIPTION_MAX, out, sizeof(out));
    assert_int_equal(strlen(out), 280);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ghsummary_maps_tekton_conditions),
        cmocka_unit_test(test_ghsummary_renders_the_run),
        cmocka_unit_test(test_ghsummary_taskruns_table_escapes_names_and_marks_failures),
        cmocka_unit_test(test_ghsummary_escapes_markdown_and_html),
        cmocka_unit_test(test_ghsummary_cuts_to_githubs_limit),
        cmocka_unit_test(test_ghsummary_title_cut_keeps_utf8),
        cmocka_unit_test(test_ghsummary_cut_ends_on_a_whole_line),
        cmocka_unit_test(test_ghsummary_clip_counts_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
