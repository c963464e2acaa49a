/*
 * GitHub feedback (issue 20): a consumer of the shared watcher (watcher.h) that turns
 * each PipelineRun's Succeeded condition into a check run (App credentials) or a
 * commit status (a token), sent by ghapi.h's client.
 *
 * What a run reports comes from what gpuhook put on it when it was created: the
 * variant label, and the annotations gpuhook.dev/repository (owner/name),
 * gpuhook.dev/revision (the head sha), gpuhook.dev/rule, gpuhook.dev/reason and,
 * when the delivery had one, gpuhook.dev/installation-id. What was already reported
 * is kept on the run too: gpuhook.dev/check-run-id and gpuhook.dev/github-reported
 * (queued, in_progress, completed/success, ... or a commit state), patched through
 * watcher_patch once GitHub took the update, so that a restart or the other replica
 * continues the same check run and reports only what changed.
 *
 * A check run's summary also shows the run's TaskRuns, its failing task and the node
 * its Pods ran on (ghtasks.h): a thread of the reporter's own reads them, when a run
 * starts and when it ends, through the watcher's API client (watcher_kube), before it
 * hands the update to ghapi; a read that fails sends the update without them.
 *
 * Only the Lease holder reports. Every callback runs on the watcher's thread and
 * only queues (the reader's queue, ghapi_submit, watcher_patch): nothing there waits
 * for GitHub or for the reads.
 */
#ifndef GPUHOOK_GHREPORT_H
#define GPUHOOK_GHREPORT_H

#include <stddef.h>

struct watcher;
struct ghreport;

#define GHREPORT_ANN_CHECK_RUN "gpuhook.dev/check-run-id"
#define GHREPORT_ANN_REPORTED "gpuhook.dev/github-reported"
#define GHREPORT_ANN_INSTALLATION "gpuhook.dev/installation-id"

struct ghreport_config {
    const char *api_url;
    long long app_id; /* > 0: App mode, with private_key_file */
    const char *private_key_file;
    long long installation_id; /* used when a run has no installation-id annotation */
    const char *token_file;    /* token mode */
    const char *ca_file;
    const char *details_url; /* template with {namespace} and {name}; NULL: none */
    const char *namespace_;  /* the runs' namespace, for {namespace} and the run key */
    size_t queue_max;
    int max_attempts;
};

/* Counters for the metrics. */
struct ghreport_stats {
    unsigned long submitted, done, gave_up, superseded, queue_full, rate_limited, retried,
        requests, token_fetches, patch_failed;
};

/*
 * Reads the credentials (a bad key fails here), starts the GitHub client and
 * subscribes to w, which must not be started yet. Returns 0 with *out, or an error
 * with err filled (never with key or token material).
 */
int ghreport_new(const struct ghreport_config *cfg, struct watcher *w, struct ghreport **out,
                 char *err, size_t errlen);
/*
 * Stops the client (updates not yet sent are dropped; the runs' annotations say what
 * is left, so the next start reports it). Call before watcher_free, since the client
 * patches through the watcher; later watcher callbacks are ignored. NULL is fine.
 */
void ghreport_stop(struct ghreport *r);
/* Frees r (stopping it first if needed). Call after watcher_free. NULL is fine. */
void ghreport_free(struct ghreport *r);

void ghreport_stats(struct ghreport *r, struct ghreport_stats *out);

/*
 * Appends the gpuhook_github_* families (fixed names, no per-run labels) of the
 * running reporter to b, nothing when reporting is off. Returns 0 or an error.
 */
struct buf;
int ghreport_metrics_append(struct buf *b);

/*
 * Expands {namespace} and {name} in tmpl into out (outlen bytes); other text is
 * kept. Returns 0, or GHE_TOOBIG when out is too small.
 */
int ghreport_details_url(const char *tmpl, const char *ns, const char *name, char *out,
                         size_t outlen);

#endif
