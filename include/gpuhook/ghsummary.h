/*
 * What a PipelineRun looks like on GitHub: the check run's output (title and
 * markdown summary) rendered from a plain struct, and the mapping from the
 * run's Succeeded condition (status and reason, Tekton's words) to a check
 * run's status/conclusion and a commit status's state. No I/O, no allocation
 * beyond the returned strings.
 */
#ifndef GPUHOOK_GHSUMMARY_H
#define GPUHOOK_GHSUMMARY_H
#include <stdbool.h>
#include <stddef.h>

/* GitHub's bound on output.summary and output.text: 65535 characters. */
#define GHSUMMARY_MAX 65535
/* GitHub's bound on a commit status's description: 140 characters. */
#define GHSUMMARY_DESCRIPTION_MAX 140

struct ghsummary_task {
    const char *name;      /* the pipeline task's name */
    const char *outcome;   /* the TaskRun's Succeeded reason: Succeeded, Failed, ... */
    long long duration_ms; /* < 0: unknown */
};

struct ghsummary_run {
    const char *pipelinerun; /* namespace/name */
    const char *variant;     /* lite or original */
    const char *rule;        /* the selection rule that matched */
    const char *reason;      /* why: GPU fit, queueing, ... */
    const char *node;        /* the node(s) the run's Pods ran on; NULL or "": no Node line */
    const char *condition_reason; /* the run's Succeeded reason */
    long long started_ms;         /* unix ms; 0: not yet */
    long long finished_ms;        /* unix ms; 0: not yet */
    const struct ghsummary_task *tasks;
    size_t ntasks;
    bool tasks_cut; /* the run has more TaskRuns than tasks holds: said under the table */
    const char *failing_task;
    const char *step_summary; /* the Pipeline's own `summary` result (markdown), or NULL */
};

/* What GitHub is told for one state of the run; the strings are static. */
struct ghsummary_outcome {
    const char *check_status; /* queued, in_progress, completed */
    const char
        *check_conclusion;    /* NULL unless completed: success, failure, cancelled, timed_out */
    const char *commit_state; /* pending, success, failure, error */
};

/*
 * Maps the Succeeded condition's status ("True", "False", "Unknown"; NULL or
 * "" when the run has none yet) and reason to what GitHub shows. Never fails.
 */
void ghsummary_map(const char *status, const char *reason, struct ghsummary_outcome *out);

/*
 * Renders the check run's output.title (*title) and output.summary
 * (*summary, at most GHSUMMARY_MAX characters, cut with a note when longer).
 * Names and reasons are escaped for markdown; the step summary is the
 * Pipeline's own markdown and is kept as written. Caller frees both.
 * Returns 0 or GHE_NOMEM.
 */
int ghsummary_render(const struct ghsummary_run *r, char **title, char **summary);

/*
 * Copies s into out (outlen bytes) cut to at most max characters at a UTF-8
 * boundary, with "..." when it was cut: a commit status's description.
 */
void ghsummary_clip(const char *s, size_t max, char *out, size_t outlen);

/* Appends s (n bytes) to b escaped for a markdown table cell or line. Returns 0 or an error. */
struct buf;
int ghsummary_escape(struct buf *b, const char *s, size_t n);

#endif
