/*
 * The admission queue in the server (issue 18): the wiring between the pipeline, the
 * shared watcher (watcher.h) and queue.c's pure scheduler. It keeps a copy of the
 * watcher's store of gpuhook's PipelineRuns, decides at delivery time whether a new run
 * starts now or is created pending (spec.status PipelineRunPending), and, while this
 * replica holds the Lease, runs queue_decide after every change (and on a 1 s tick) and
 * sends each action's merge patch through watcher_patch (a downgrade first posts its copy
 * through the API client). With gpu_fit "queue" each decision also gets the GPU figure the
 * fit check judges by (the cluster view when it has data, else the local probe), and each
 * variant needs its *_min_free_mib; the tick re-reads the figure, so a change of free memory
 * is seen within a second. State lives in the cluster: labels, annotations and the runs
 * themselves; the copy is rebuilt by the watch.
 */
#ifndef GPUHOOK_ADMISSION_H
#define GPUHOOK_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct event;
struct kube;
struct watcher;

#define ADMISSION_LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define ADMISSION_NOTE_GROUP "gpuhook.dev/group"

struct admission;

/*
 * Checks a concurrency.group template: literal text and {name} with name one of
 * repo_full_name, branch, pr_number, event, variant, ref, tag, sender, base_branch.
 * Returns 0, or -1 with why written.
 */
int admission_group_check(const char *tmpl, char *why, size_t n);

/*
 * Builds the admission queue for cfg's concurrency block and gpu_fit policy and subscribes
 * it to w (before watcher_start). k (borrowed, may be NULL: then a downgrade waits) posts a
 * downgrade's copy. Sets the process's admission queue (admission_get). Returns 0,
 * GHE_INVAL or GHE_NOMEM.
 */
int admission_new(const struct config *cfg, struct watcher *w, struct kube *k,
                  struct admission **out);

/*
 * Takes cfg's gpu_fit policy and gpu.required (at start and on SIGHUP): whether the
 * scheduler waits for the GPU, each variant's need, max_wait_seconds and on_timeout.
 * NULL a is fine.
 */
void admission_set_fit(struct admission *a, const struct config *cfg);

/* True when a (may be NULL) waits for the GPU: gpu_fit "queue" has a scheduler. */
bool admission_queues_gpu(struct admission *a);
/* After the watcher is freed (its callbacks use a). NULL is fine. */
void admission_free(struct admission *a);
/* The process's admission queue, or NULL when concurrency is not configured. */
struct admission *admission_get(void);

/*
 * Admits one rendered run (JSON text, replaced in place; the caller frees it as before):
 * labels (managed-by, variant, group), annotations, and spec.status PipelineRunPending
 * when queue_decide over the current store plus this run does not start it, with
 * gpuhook.dev/waiting-for saying why (for the GPU, with the numbers). *position is
 * its place in its group's queue (1 = next), 0 when it starts now. Returns 0, or an error
 * with the text untouched.
 */
int admission_admit(struct admission *a, const struct event *ev, const char *variant, char **json,
                    size_t *len, int *position);

/*
 * The text to spool instead of json (len bytes) for run name when the API cannot take it
 * now: a run this queue decided to start is spooled pending (spec.status
 * PipelineRunPending, started-at and waited dropped), so that when the spool creates it,
 * maybe much later, the scheduler starts it from the cluster's state and max_running holds;
 * its slot in this replica's view is given back. Returns 0 with *out (caller frees), or
 * GHE_INVAL when the text needs no change (a NULL, a run not admitted here or pending), or
 * GHE_NOMEM.
 */
int admission_spool_pending(struct admission *a, const char *name, const char *json, size_t len,
                            char **out, size_t *out_len);

/* GET /queue: queue_view_json over the current store. *json is the caller's. */
int admission_view_json(struct admission *a, char **json);

#endif
