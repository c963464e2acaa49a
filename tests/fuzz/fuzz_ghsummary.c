/*
 * Fuzz target 9: what the Kubernetes API says about a run, turned into what
 * GitHub is told (ghtasks.c, ghsummary.c): a TaskRunList and the run's status
 * parsed into the table, a Pod into its node, the run's podTemplate into the
 * chosen node, and the check run's title and summary rendered from all of it.
 *
 * Input: three parts split at NUL bytes: a TaskRunList, the PipelineRun (its
 * status, spec and labels), and a Pod.
 * Invariants:
 *   - the parses return 0 or GHE_INVAL (with a reason) and stay within their bounds;
 *     the failing task is one of the rows, marked failed;
 *   - the summary is at most GHSUMMARY_MAX bytes (so at most that many characters),
 *     cut only at a UTF-8 boundary; title and summary are valid UTF-8 whenever the
 *     input is (cJSON would send invalid bytes as they are, and GitHub refuses such a
 *     body with 400, which loses the update);
 *   - every row of the markdown tables has exactly the header's columns: a task name
 *     or reason can never open a cell, a row or a heading;
 *   - ghsummary_map always answers one of GitHub's values.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "gpuhook/error.h"
#include "gpuhook/ghsummary.h"
#include "gpuhook/ghtasks.h"

/* True when s (n bytes) is well-formed UTF-8 (no overlongs, surrogates or past U+10FFFF). */
static bool fuzz_gs_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned c = s[i];
        size_t len = c < 0x80                 ? 1
                     : c >= 0xC2 && c <= 0xDF ? 2
                     : c >= 0xE0 && c <= 0xEF ? 3
                     : c >= 0xF0 && c <= 0xF4 ? 4
                                              : 0;
        if (!len || i + len > n)
            return false;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] > 0x9F) ||
            (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] > 0x8F))
            return false;
        i += len;
    }
    return true;
}

/* The number of table cells in a markdown line: its unescaped pipes, less one. */
static int fuzz_gs_cells(const char *line, size_t n) {
    int pipes = 0;
    for (size_t i = 0; i < n; i++) {
        if (line[i] == '\\' && i + 1 < n) {
            i++;
            continue;
        }
        if (line[i] == '|')
            pipes++;
    }
    return pipes - 1;
}

/* Every table row has its header's width; text never starts a heading or a row. */
static void fuzz_gs_check_tables(const char *summary, const char *step) {
    const char *p = summary;
    int width = 0;
    bool in_step = false;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (!in_step && n >= 24 && strncmp(p, "### Summary from the run", 24) == 0)
            in_step = true; /* the Pipeline's own markdown, kept as written */
        if (!in_step) {
            if (n && p[0] == '|') {
                int cells = fuzz_gs_cells(p, n);
                if (!width)
                    width = cells;
                FUZZ_REQUIRE(cells == width, "a table row of %d cells under a header of %d: %.*s",
                             cells, width, (int)(n > 200 ? 200 : n), p);
            } else {
                width = 0;
                FUZZ_REQUIRE(n == 0 || p[0] != '#' || strncmp(p, "### TaskRuns", 12) == 0,
                             "a heading the summary did not write: %.*s", (int)(n > 200 ? 200 : n),
                             p);
            }
        }
        p += n + (nl ? 1 : 0);
    }
    (void)step;
}

int fuzz_ghsummary_one(const uint8_t *data, size_t size) {
    char *storage = NULL, *parts[3] = {NULL, NULL, NULL};
    size_t n = fuzz_split(data, size, '\0', parts, 3, &storage);
    char err[256] = "", node[GHTASKS_NODE_MAX] = "";
    bool gpu = false, utf8 = fuzz_gs_utf8(data, size);
    struct ghtasks t;

    for (size_t i = n; i < 3; i++)
        parts[i] = (char *)"";
    cJSON *run = cJSON_Parse(parts[1]);
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(run, "status");

    ghtasks_init(&t);
    int rc = ghtasks_parse(&t, parts[0], strlen(parts[0]), status, err, sizeof(err));
    FUZZ_REQUIRE(rc == 0 || rc == GHE_INVAL || rc == GHE_NOMEM, "ghtasks_parse returned %d", rc);
    FUZZ_REQUIRE(rc != GHE_INVAL || err[0], "a refused TaskRun list without a reason");
    if (rc == 0) {
        bool found = t.failing_task == NULL;
        for (size_t i = 0; i < t.nrows; i++) {
            FUZZ_REQUIRE(t.rows[i].name && t.rows[i].outcome, "row %zu without name or outcome", i);
            if (t.failing_task == t.rows[i].name)
                found = t.rows[i].failed;
        }
        FUZZ_REQUIRE(found, "the failing task %s is not a failed row", t.failing_task);
    }
    int prc = ghtasks_pod_node(parts[2], strlen(parts[2]), node, sizeof(node), &gpu);
    FUZZ_REQUIRE(prc == 0 || prc == GHE_INVAL, "ghtasks_pod_node returned %d", prc);
    FUZZ_REQUIRE(memchr(node, '\0', sizeof(node)) != NULL, "an unterminated node");
    const char *chosen = ghtasks_chosen_node(run);

    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(run, "metadata"), "labels");
    const cJSON *variant = cJSON_GetObjectItemCaseSensitive(labels, "gpuhook.dev/variant");
    const char *cst = NULL, *creason = NULL;
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, "conditions")) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(c, "status");
        const cJSON *re = cJSON_GetObjectItemCaseSensitive(c, "reason");
        cst = cJSON_IsString(st) ? st->valuestring : NULL;
        creason = cJSON_IsString(re) ? re->valuestring : NULL;
    }
    const char *step = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, "results")) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(c, "value");
        if (cJSON_IsString(v))
            step = v->valuestring;
    }
    struct ghsummary_outcome o;
    ghsummary_map(cst, creason, &o);
    FUZZ_REQUIRE(o.check_status && o.commit_state, "ghsummary_map left a value out");
    FUZZ_REQUIRE(strcmp(o.check_status, "completed") == 0 ? o.check_conclusion != NULL
                                                          : o.check_conclusion == NULL,
                 "status %s with conclusion %s", o.check_status,
                 o.check_conclusion ? o.check_conclusion : "(none)");

    struct ghsummary_run r = {
        .pipelinerun = "gpu-runs/fuzz",
        .variant = cJSON_IsString(variant) ? variant->valuestring : NULL,
        .rule = creason,
        .reason = cst,
        .node = node[0] ? node : chosen,
        .condition_reason = creason,
        .started_ms = size > 7 ? 1764640000000LL : 0,
        .finished_ms = size > 7 ? 1764640000000LL + (long long)size * 997 : 0,
        .tasks = rc == 0 ? t.view : NULL,
        .ntasks = rc == 0 ? t.nrows : 0,
        .tasks_cut = rc == 0 && t.more,
        .failing_task = rc == 0 ? t.failing_task : NULL,
        .step_summary = step,
    };
    char *title = NULL, *summary = NULL;
    int src = ghsummary_render(&r, &title, &summary);
    FUZZ_REQUIRE(src == 0 || src == GHE_NOMEM, "ghsummary_render returned %d", src);
    if (src == 0) {
        size_t sl = strlen(summary);
        FUZZ_REQUIRE(sl <= GHSUMMARY_MAX, "a summary of %zu bytes", sl);
        FUZZ_REQUIRE(!utf8 || fuzz_gs_utf8((const unsigned char *)summary, sl),
                     "valid UTF-8 in, invalid summary out");
        FUZZ_REQUIRE(!utf8 || fuzz_gs_utf8((const unsigned char *)title, strlen(title)),
                     "valid UTF-8 in, invalid title out: %s", title);
        fuzz_gs_check_tables(summary, step);
    }
    free(title);
    free(summary);
    ghtasks_cleanup(&t);
    cJSON_Delete(run);
    free(storage);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_ghsummary_one(data, size);
}
#endif
