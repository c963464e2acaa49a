/*
 * Check run output and state mapping. See include/gpuhook/ghsummary.h.
 */
#include "gpuhook/ghsummary.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/error.h"

/* A summary's own bound: GitHub counts characters, so bytes are a safe stand-in. */
#define GHSUMMARY_BUF_MAX (4 * GHSUMMARY_MAX)
/* How far a cut may move back to end on a whole line (a table row is far shorter). */
#define GHSUMMARY_LINE_BACK 4096
#define GHSUMMARY_CUT_NOTE "\n\n*(summary cut to GitHub's 65535 characters)*\n"

static bool ghsummary_eq(const char *a, const char *b) { return a && strcmp(a, b) == 0; }

void ghsummary_map(const char *status, const char *reason, struct ghsummary_outcome *out) {
    out->check_conclusion = NULL;
    if (ghsummary_eq(status, "True")) {
        /* Succeeded, or Completed (succeeded with skipped tasks). */
        out->check_status = "completed";
        out->check_conclusion = "success";
        out->commit_state = "success";
    } else if (ghsummary_eq(status, "False")) {
        out->check_status = "completed";
        if (ghsummary_eq(reason, "Cancelled") || ghsummary_eq(reason, "StoppedRunFinally") ||
            ghsummary_eq(reason, "CancelledRunFinally")) {
            out->check_conclusion = "cancelled";
            out->commit_state = "error";
        } else if (ghsummary_eq(reason, "PipelineRunTimeout") ||
                   ghsummary_eq(reason, "TaskRunTimeout")) {
            out->check_conclusion = "timed_out";
            out->commit_state = "error";
        } else if (ghsummary_eq(reason, "Failed")) {
            out->check_conclusion = "failure";
            out->commit_state = "failure";
        } else {
            /* CouldntGetPipeline, PipelineValidationFailed, CreateRunFailed, ...: the run
             * never ran its tasks, which is the setup's failure rather than the code's. */
            out->check_conclusion = "failure";
            out->commit_state = "error";
        }
    } else if (!status || !*status || ghsummary_eq(reason, "PipelineRunPending") ||
               ghsummary_eq(reason, "Pending")) {
        /* No condition yet, or spec.status PipelineRunPending (gpuhook's admission queue). */
        out->check_status = "queued";
        out->commit_state = "pending";
    } else {
        /* Unknown: Started, Running, PipelineRunStopping, CancelledRunningFinally,
         * StoppedRunningFinally, Cancelled while being processed: still going. */
        out->check_status = "in_progress";
        out->commit_state = "pending";
    }
}

int ghsummary_escape(struct buf *b, const char *s, size_t n) {
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char c = s[i];
        if (c == '\n' || c == '\r' || c == '\t')
            rc = buf_append(b, " ", 1);
        else if (c == '<')
            rc = buf_appends(b, "&lt;");
        else if (c == '>')
            rc = buf_appends(b, "&gt;");
        else if (c == '&')
            rc = buf_appends(b, "&amp;");
        else if (strchr("\\`*_{}[]()#+-.!|~", c) && c)
            rc = buf_appendf(b, "\\%c", c);
        else if ((unsigned char)c < 0x20)
            continue;
        else
            rc = buf_append(b, &c, 1);
    }
    return rc;
}

static int ghsummary_text(struct buf *b, const char *s) {
    return s && *s ? ghsummary_escape(b, s, strlen(s)) : buf_appends(b, "-");
}

static int ghsummary_duration(struct buf *b, long long ms) {
    if (ms < 0)
        return buf_appends(b, "-");
    long long s = ms / 1000;
    if (s >= 3600)
        return buf_appendf(b, "%lldh %02lldm %02llds", s / 3600, s / 60 % 60, s % 60);
    if (s >= 60)
        return buf_appendf(b, "%lldm %02llds", s / 60, s % 60);
    return buf_appendf(b, "%lld.%llds", s, ms % 1000 / 100);
}

/* Cuts at most max bytes of s back to a UTF-8 boundary: the length kept. */
static size_t ghsummary_utf8_cut(const char *s, size_t len, size_t max) {
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

void ghsummary_clip(const char *s, size_t max, char *out, size_t outlen) {
    size_t chars = 0, i = 0, o = 0;
    size_t len = s ? strlen(s) : 0;

    if (outlen == 0)
        return;
    while (i < len && chars < max) {
        size_t n = 1;
        while (i + n < len && ((unsigned char)s[i + n] & 0xC0) == 0x80)
            n++;
        if (o + n >= outlen)
            break;
        if (chars + 1 == max && i + n < len)
            break; /* room for the dots */
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
        chars++;
    }
    if (i < len) {
        while (o > 0 && chars + 3 > max) {
            do
                o--;
            while (o > 0 && ((unsigned char)out[o] & 0xC0) == 0x80);
            chars--;
        }
        if (o + 3 < outlen) {
            memcpy(out + o, "...", 3);
            o += 3;
        }
    }
    out[o] = '\0';
}

static int ghsummary_body(struct buf *b, const struct ghsummary_run *r) {
    char t[CLOCK_RFC3339_MAX];
    int rc = 0;

    rc |= buf_appends(b, "| | |\n| --- | --- |\n| Variant | ");
    rc |= ghsummary_text(b, r->variant);
    rc |= buf_appends(b, " |\n| Rule | ");
    rc |= ghsummary_text(b, r->rule);
    rc |= buf_appends(b, " |\n| Reason | ");
    rc |= ghsummary_text(b, r->reason);
    if (r->node && *r->node) {
        rc |= buf_appends(b, " |\n| Node | ");
        rc |= ghsummary_text(b, r->node);
    }
    rc |= buf_appends(b, " |\n| PipelineRun | ");
    rc |= ghsummary_text(b, r->pipelinerun);
    if (r->started_ms > 0) {
        rc |= buf_appendf(b, " |\n| Started | %s", clock_rfc3339(r->started_ms, t));
    }
    if (r->started_ms > 0 && r->finished_ms >= r->started_ms) {
        rc |= buf_appends(b, " |\n| Duration | ");
        rc |= ghsummary_duration(b, r->finished_ms - r->started_ms);
    }
    rc |= buf_appends(b, " |\n");
    if (r->failing_task && *r->failing_task) {
        rc |= buf_appends(b, "\n**Failed task:** ");
        rc |= ghsummary_text(b, r->failing_task);
        rc |= buf_appends(b, "\n");
    }
    if (r->ntasks > 0) {
        rc |= buf_appends(b,
                          "\n### TaskRuns\n\n| Task | Outcome | Duration |\n| --- | --- | --- |\n");
        for (size_t i = 0; i < r->ntasks && rc == 0; i++) {
            const struct ghsummary_task *k = &r->tasks[i];
            bool bad = k->outcome && strcmp(k->outcome, "Succeeded") != 0 &&
                       strcmp(k->outcome, "Completed") != 0 && strcmp(k->outcome, "Running") != 0 &&
                       strcmp(k->outcome, "Started") != 0 && strcmp(k->outcome, "Pending") != 0 &&
                       strcmp(k->outcome, "Skipped") != 0;
            rc |= buf_appends(b, "| ");
            rc |= ghsummary_text(b, k->name);
            rc |= buf_appends(b, bad ? " | **" : " | ");
            rc |= ghsummary_text(b, k->outcome);
            rc |= buf_appends(b, bad ? "** | " : " | ");
            rc |= ghsummary_duration(b, k->duration_ms);
            rc |= buf_appends(b, " |\n");
        }
        if (r->tasks_cut)
            rc |= buf_appendf(b, "\n*(the first %zu TaskRuns; the run has more)*\n", r->ntasks);
    }
    if (r->step_summary && *r->step_summary) {
        rc |= buf_appends(b, "\n### Summary from the run\n\n");
        size_t len = strlen(r->step_summary);
        rc |=
            buf_append(b, r->step_summary, ghsummary_utf8_cut(r->step_summary, len, GHSUMMARY_MAX));
        rc |= buf_appends(b, "\n");
    }
    return rc ? GHE_TOOBIG : 0;
}

int ghsummary_render(const struct ghsummary_run *r, char **title, char **summary) {
    struct buf t, s;
    int rc;

    *title = *summary = NULL;
    buf_init(&t, 1024);
    buf_init(&s, GHSUMMARY_BUF_MAX);
    /* 64 characters of each, cut between characters: a cut inside one would be invalid
     * UTF-8, and GitHub refuses a body with that (400), which loses the update. */
    char variant[64 * 4 + 4], reason[64 * 4 + 4];
    ghsummary_clip(r->variant && *r->variant ? r->variant : "gpu", 64, variant, sizeof(variant));
    if (r->condition_reason && *r->condition_reason) {
        ghsummary_clip(r->condition_reason, 64, reason, sizeof(reason));
        rc = buf_appendf(&t, "%s: %s", variant, reason);
    } else {
        rc = buf_appendf(&t, "%s: %s", variant, r->started_ms > 0 ? "running" : "queued");
    }
    if (rc)
        goto fail;
    /* The step summary is cut to GitHub's bound first, then the whole to the bound. */
    rc = ghsummary_body(&s, r);
    if (rc == GHE_TOOBIG || s.len > GHSUMMARY_MAX) {
        size_t keep = ghsummary_utf8_cut(s.data, s.len, GHSUMMARY_MAX - strlen(GHSUMMARY_CUT_NOTE));
        /* After a whole line when one ends near, so that no half table row is rendered;
         * a long line of the step summary's own is cut where it is. */
        size_t line = keep;
        while (line > 0 && keep - line < GHSUMMARY_LINE_BACK && s.data[line - 1] != '\n')
            line--;
        if (line > 0 && s.data[line - 1] == '\n')
            keep = line - 1;
        s.len = keep;
        s.data[keep] = '\0';
        rc = buf_appends(&s, GHSUMMARY_CUT_NOTE);
    }
    if (rc)
        goto fail;
    *title = buf_detach(&t, NULL);
    *summary = buf_detach(&s, NULL);
    return 0;
fail:
    buf_cleanup(&t);
    buf_cleanup(&s);
    return GHE_NOMEM;
}
