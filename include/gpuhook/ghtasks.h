/*
 * What a PipelineRun's check run says about its TaskRuns (issue 20): the table of
 * pipeline tasks with their outcomes and durations, the failing task, and the node(s)
 * their Pods ran on. The parsing (ghtasks_parse, ghtasks_pod_node, ghtasks_chosen_node)
 * is pure; ghtasks_read does the reads, blocking, with the watcher's connection settings
 * (kube_conn_apply): one TaskRun list (labelSelector tekton.dev/pipelineRun=NAME, which
 * Tekton sets on every TaskRun of a run) and one GET per distinct Pod (status.podName),
 * at most GHTASKS_PODS_MAX of them, each bounded in time and size.
 *
 * Not here: when to read (ghreport.c, on its own thread, when a run starts and when it
 * ends) and how the summary looks (ghsummary.c).
 */
#ifndef GPUHOOK_GHTASKS_H
#define GPUHOOK_GHTASKS_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "gpuhook/ghsummary.h"

/* At most this many TaskRuns are listed (the list's limit) and shown. */
#define GHTASKS_TASKRUNS_MAX 250
/* At most this many Pods are read for the node line. */
#define GHTASKS_PODS_MAX 32
/* The node line: names joined by ", ". */
#define GHTASKS_NODE_MAX 512

struct ghtasks_row {
    char *name;                         /* the pipeline task */
    char *outcome;                      /* the TaskRun's Succeeded reason, or "Skipped" */
    char *pod;                          /* status.podName, or NULL */
    long long started_ms, completed_ms; /* 0: not known */
    long order;                         /* place in status.childReferences; -1: not there */
    bool failed;                        /* Succeeded False, not cancelled */
};

struct ghtasks {
    struct ghtasks_row *rows; /* in the run's order: childReferences, then start time */
    size_t nrows;
    bool more; /* the run has more TaskRuns than the list gave (its limit, a continue) */
    const char *failing_task;    /* a row's name, or NULL */
    struct ghsummary_task *view; /* rows as ghsummary_render takes them */
};

void ghtasks_init(struct ghtasks *t);
void ghtasks_cleanup(struct ghtasks *t);

/*
 * Fills t from a TaskRunList (JSON text) of the run whose status is run_status (its
 * childReferences give the order, its skippedTasks the rows without a TaskRun). The
 * failing task is the failed TaskRun (Succeeded False, not TaskRunCancelled) that
 * completed first; none when no TaskRun failed. Returns 0, GHE_INVAL (err says why) or
 * GHE_NOMEM.
 */
int ghtasks_parse(struct ghtasks *t, const char *json, size_t len, const cJSON *run_status,
                  char *err, size_t errlen);

/*
 * A Pod's spec.nodeName into node (nodelen bytes; "" when not scheduled yet) and whether
 * one of its containers asks for a GPU (a resources request or limit whose name ends in
 * /gpu, such as nvidia.com/gpu). Returns 0 or GHE_INVAL.
 */
int ghtasks_pod_node(const char *json, size_t len, char *node, size_t nodelen, bool *gpu);

/*
 * The node the decision chose for the run (spec.taskRunTemplate.podTemplate: a
 * kubernetes.io/hostname nodeSelector, else the preferred, else the required node
 * affinity on that label, as clusterview_place writes it), or NULL. Borrowed from run.
 */
const char *ghtasks_chosen_node(const cJSON *run);

struct kube;
/*
 * Reads the TaskRuns of run (the PipelineRun object) into t and the node(s) its Pods ran
 * on into node: the nodes of the Pods that ask for a GPU, or every distinct node when
 * none does; "" when no Pod could be read (403, say). Blocks for at most about
 * timeout_ms in all; stops early when *stop (read atomically) becomes true. Returns 0 when the
 * TaskRuns were read (the node may still be ""), or an error with err saying why (never a body).
 */
int ghtasks_read(struct kube *k, const cJSON *run, long timeout_ms, const bool *stop,
                 struct ghtasks *t, char *node, size_t nodelen, char *err, size_t errlen);

#endif
