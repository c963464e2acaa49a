/*
 * The admission queue's scheduler, as a pure function of the cluster's state:
 * given gpuhook's PipelineRuns as the watch sees them, the concurrency config,
 * the GPU's free memory and the time, it returns the actions to take, each a
 * JSON merge patch for one run, ready to send (with metadata.resourceVersion
 * as a precondition, so a patch computed from a stale view fails with 409).
 * Feeding the same state twice gives the same actions; feeding the state after
 * the actions were applied gives none. It also renders the queue as JSON for
 * GET /queue.
 *
 * It does not talk to the API, read the clock, create runs or render
 * templates; it keeps no state between calls.
 */
#ifndef GPUHOOK_QUEUE_H
#define GPUHOOK_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#define QUEUE_LABEL_VARIANT "gpuhook.dev/variant"
#define QUEUE_LABEL_GROUP "gpuhook.dev/group"
#define QUEUE_NOTE_QUEUED_SINCE "gpuhook.dev/queued-since"
#define QUEUE_NOTE_WAITING_FOR "gpuhook.dev/waiting-for"
#define QUEUE_NOTE_STARTED_AT "gpuhook.dev/started-at"
#define QUEUE_NOTE_WAITED "gpuhook.dev/waited"
#define QUEUE_NOTE_SUPERSEDED_BY "gpuhook.dev/superseded-by"
#define QUEUE_NOTE_REJECTED "gpuhook.dev/rejected"
#define QUEUE_NOTE_DOWNGRADED_FROM "gpuhook.dev/downgraded-from"
#define QUEUE_NOTE_DOWNGRADED_TO "gpuhook.dev/downgraded-to"
/* The Pipeline of downgrade_to for this run, rendered at delivery; wins over the config's. */
#define QUEUE_NOTE_DOWNGRADE_PIPELINE "gpuhook.dev/downgrade-pipeline"

/* spec.status of a PipelineRun. */
enum queue_spec {
    QUEUE_SPEC_NONE,
    QUEUE_SPEC_PENDING,               /* PipelineRunPending */
    QUEUE_SPEC_CANCELLED,             /* Cancelled */
    QUEUE_SPEC_CANCELLED_RUN_FINALLY, /* CancelledRunFinally */
    QUEUE_SPEC_STOPPED_RUN_FINALLY,   /* StoppedRunFinally */
    QUEUE_SPEC_OTHER,
};

/* The Succeeded condition's status. */
enum queue_cond {
    QUEUE_COND_NONE,
    QUEUE_COND_UNKNOWN,
    QUEUE_COND_TRUE,
    QUEUE_COND_FALSE,
};

/* One PipelineRun as the scheduler needs it. Strings are borrowed. */
struct queue_run {
    const char *name;
    const char *resource_version;
    const char *variant; /* label gpuhook.dev/variant */
    const char *group;   /* label gpuhook.dev/group; NULL or "" is a group of its own */
    enum queue_spec spec;
    enum queue_cond succeeded;
    const char *reason;          /* the condition's reason, or NULL */
    long long created_ms;        /* metadata.creationTimestamp, unix ms */
    long long queued_since_ms;   /* annotation queued-since, 0 when absent */
    long long started_ms;        /* annotation started-at, 0 when absent */
    const char *waiting_for;     /* annotation waiting-for, or NULL */
    const char *downgraded_from; /* annotation downgraded-from: the run this one replaces */
    const cJSON *object;         /* the PipelineRun itself, for a downgrade's copy; may be NULL */
    const char *downgrade_pipeline; /* annotation downgrade-pipeline, or NULL */
};

/* Per variant: the cap on running runs, the GPU memory it needs, its Pipeline. */
struct queue_variant {
    const char *name;
    int max_running;      /* 0: no cap */
    long long need_mib;   /* 0: needs no GPU memory */
    const char *pipeline; /* spec.pipelineRef.name of this variant, for a downgrade; may be NULL */
};

enum queue_fallback {
    QUEUE_FALLBACK_NONE,      /* wait for as long as it takes */
    QUEUE_FALLBACK_DOWNGRADE, /* replace a pending run by a copy of it as downgrade_to */
    QUEUE_FALLBACK_REJECT,    /* cancel it, with the reason */
};

struct queue_config {
    const struct queue_variant *variants;
    size_t nvariants;
    bool cancel_pending; /* a newer run of a group cancels the group's pending ones */
    bool cancel_running; /* ... and its running ones, with CancelledRunFinally (implies pending) */
    long long max_wait_ms; /* for a run that waits for the GPU; 0: no limit */
    enum queue_fallback fallback;
    const char *downgrade_to; /* the variant a downgrade switches to */
    /* A started run may not hold its GPU memory yet: its need is reserved for this long. */
    long long gpu_settle_ms;
};

/* The GPU's free memory now; known false means no GPU source: memory never blocks. */
struct queue_gpu {
    bool known;
    long long free_mib;
};

enum queue_act {
    QUEUE_ACT_START,          /* remove spec.status */
    QUEUE_ACT_SUPERSEDE,      /* a pending run: spec.status Cancelled */
    QUEUE_ACT_CANCEL_RUNNING, /* a running run: spec.status CancelledRunFinally */
    /*
     * Tekton lets nothing in spec but spec.status change before a run is done,
     * so a downgrade is two requests, in this order: POST create (a copy of the
     * run as the smaller variant, started or pending), then the patch that
     * cancels the original. A crash between the two leaves both; the next
     * decision sees the copy (downgraded-from) and only cancels the original.
     * create is NULL when the copy exists already.
     */
    QUEUE_ACT_DOWNGRADE,
    QUEUE_ACT_REJECT, /* a pending run waited too long: spec.status Cancelled */
    QUEUE_ACT_NOTE,   /* a pending run waits for another reason now */
};

struct queue_action {
    enum queue_act kind;
    const char *name; /* borrowed from the input run */
    bool starts;      /* the patch removes spec.status */
    char *patch;      /* the merge patch (JSON); queue_plan_cleanup frees it */
    char *create;     /* DOWNGRADE: the PipelineRun to POST first, or NULL */
};

struct queue_plan {
    struct queue_action *actions;
    size_t count;
};

/*
 * Computes the actions for runs (n of them) at now_ms. Returns 0 or
 * GHE_NOMEM; on error the plan is empty. queue_plan_cleanup frees the plan.
 */
int queue_decide(const struct queue_run *runs, size_t n, const struct queue_config *cfg,
                 const struct queue_gpu *gpu, long long now_ms, struct queue_plan *plan);
void queue_plan_cleanup(struct queue_plan *plan);

/*
 * The queue as GET /queue shows it, after the actions of queue_decide:
 * {"groups":[{"group","waiting":[{"name","variant","position","waiting_for",
 * "queued_since","waited_seconds"}]}],"running":{variant:n},"waiting":{variant:n},
 * "max_running":{variant:n}}. Groups in the order of their oldest waiting run.
 * Returns 0 or GHE_NOMEM; *json is the caller's to free.
 */
int queue_view_json(const struct queue_run *runs, size_t n, const struct queue_config *cfg,
                    const struct queue_gpu *gpu, long long now_ms, char **json);

/*
 * Fills r from a PipelineRun object (borrowed: r points into it, and r->object
 * is pr). Returns 0,
 * or GHE_INVAL when it has no name, resourceVersion or creationTimestamp.
 */
int queue_run_from_object(const cJSON *pr, struct queue_run *r);

#endif
