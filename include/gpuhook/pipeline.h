/*
 * The pipeline (formerly dispatch.c), the part of a delivery shared by
 * /webhook and /trigger, with no HTTP in it: input (a normalized event, or a trigger's forced
 * variant and overrides) -> decision (variant, rule, reason, GPU fit) -> rendered run -> delivery
 * through the sink (delivery.h), ending in one completion callback with an outcome. The routes turn
 * outcomes into HTTP answers; `gpuhook render` calls pipeline_prepare, the same decide-and-render
 * step.
 */
#ifndef GPUHOOK_PIPELINE_H
#define GPUHOOK_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/delivery.h"
#include "gpuhook/select.h"

struct app;
struct buf;
struct config;
struct event;
struct template_override;

struct pipeline_input {
    struct event *ev;
    int forced_variant; /* -1 runs the selection rules */
    const struct template_override *overrides;
    size_t override_count;
    int name_kind;           /* enum naming_kind */
    const char *name_key[2]; /* the run's identity: (hook ID, delivery ID) or (key, NULL) */
    const char *fingerprint; /* /trigger with an Idempotency-Key: the request's SHA-256 hex */
    bool preview;            /* ?dry_run=true: return the object, create nothing */
    const char *request_id;  /* for the delivery's log line */
    long start_ms;           /* arrival (clock_mono_ms): the API's deadline runs from it */
};

enum pipeline_status {
    PIPELINE_IGNORED,      /* a rule skipped it (reason, rule) */
    PIPELINE_GPU_REJECTED, /* the GPU fit policy refused it (reason, variant) */
    PIPELINE_INVALID,      /* the input cannot make a run (message) */
    PIPELINE_ERROR,        /* out of memory, a broken template (message) */
    PIPELINE_PREVIEW,      /* rendered, not delivered (run) */
    PIPELINE_DELIVERED,    /* the sink answered (result); the checks below passed */
    PIPELINE_UNVERIFIED,   /* an Idempotency-Key's run exists but could not be read back */
    PIPELINE_KEY_REUSED    /* an Idempotency-Key's run was made from another request */
};

struct pipeline_outcome {
    int status; /* enum pipeline_status */
    const char *event;
    const char *delivery; /* the delivery ID or Idempotency-Key; NULL when none */
    char variant[16];
    char rule[128];
    char reason[512];
    char name[64]; /* the PipelineRun's name */
    char ns[256];
    char message[1024];
    const char *run; /* PREVIEW: the rendered run's JSON text */
    size_t run_len;
    struct delivery_result result; /* DELIVERED */
    int queue_position; /* created pending by the admission queue: its place (1 = next); 0 else */
};

/*
 * The input stage's filter: decides whether a delivery starts nothing: an
 * event not configured or not push/pull_request, a deleted ref, a draft, an
 * uninteresting PR action. With ev NULL only the event name is judged. Writes
 * the reason when it returns true.
 */
bool pipeline_should_ignore(const struct config *cfg, const char *event, const struct event *ev,
                            char *reason, size_t n);

typedef void (*pipeline_done_fn)(void *arg, const struct pipeline_outcome *o);

/*
 * Decides and renders into text (its max set by the caller): fills o's
 * variant, rule, reason, name and ns, and returns PIPELINE_PREVIEW when a run
 * was rendered, else the status that stops it (message or reason set).
 */
int pipeline_prepare(const struct config *cfg, const char *ns, const struct pipeline_input *in,
                     struct buf *text, struct pipeline_outcome *o);

/*
 * Runs the pipeline for in against app's sink with cfg's rules and template;
 * done(arg, outcome) runs exactly once, before this returns or later from the
 * sink's thread. The outcome is valid during the call only.
 */
void pipeline_run(struct app *app, const struct config *cfg, const struct pipeline_input *in,
                  pipeline_done_fn done, void *arg);

#define PIPELINE_RUN_MAX (64 * 1024 * 1024) /* a rendered PipelineRun */

#endif
