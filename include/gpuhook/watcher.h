/*
 * The shared watcher: one thread that lists and watches gpuhook's PipelineRuns in a
 * namespace (kwatch.c's reflector over a streamed libcurl watch), runs leader election
 * on a coordination.k8s.io/v1 Lease (lease.c's elector), tells its subscribers about
 * every change and every change of leadership, and sends merge patches for them. It
 * takes its connection settings (base URL, token, CA, proxy, TLS) from a struct kube
 * (kube_conn_apply), so it talks to the API server exactly as the create path does.
 *
 * All callbacks run on the watcher's thread, one at a time, in order: they must not
 * block and must not call watcher_free. Objects passed to them are borrowed for the
 * call.
 */
#ifndef GPUHOOK_WATCHER_H
#define GPUHOOK_WATCHER_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "gpuhook/kube.h"

#define WATCHER_SELECTOR_DEFAULT "app.kubernetes.io/managed-by=gpuhook"
#define WATCHER_WATCH_TIMEOUT_S_DEFAULT 240
#define WATCHER_SUBSCRIBERS_MAX 8
#define WATCHER_IDENTITY_MAX 128

struct watcher_config {
    const char *namespace_;     /* NULL: kube_namespace() */
    const char *label_selector; /* NULL: WATCHER_SELECTOR_DEFAULT */
    long watch_timeout_s;       /* the watch's timeoutSeconds; 0: the default */
    const char *lease_name;     /* NULL: no leader election (never leader) */
    long lease_duration_ms;     /* 0: 15 s */
    long renew_deadline_ms;     /* 0: 2/3 of the duration (client-go's ratio) */
    long retry_period_ms;       /* 0: 2/15 of the duration */
    const char *identity;       /* NULL: $POD_NAME or the hostname, "-", 8 random hex */
};

enum watcher_event {
    WATCHER_ADDED,
    WATCHER_MODIFIED,
    WATCHER_DELETED,
    /* A List was applied (the first one, or a re-list after 410 or an error): the
     * store now matches the server; the ADDED/MODIFIED/DELETED it implied came first.
     * The object is NULL. */
    WATCHER_RESYNCED,
};

typedef void (*watcher_event_fn)(void *arg, enum watcher_event ev, const cJSON *object);
typedef void (*watcher_leader_fn)(void *arg, bool leading);
/*
 * A patch's answer: status is the HTTP status (200 applied, 409 the resourceVersion
 * precondition failed, 404 no such run, ...) or 0 when no answer came (transport
 * error, or the watcher stopped); body is the answer (the patched object or a Status),
 * bounded, may be empty.
 */
typedef void (*watcher_patch_fn)(void *arg, int status, const char *body, size_t len);

struct watcher;

/* "ADDED", "MODIFIED", "DELETED", "RESYNCED". */
const char *watcher_event_name(enum watcher_event ev);

/*
 * Builds a watcher over k (borrowed: it must outlive the watcher). Nothing is sent
 * until watcher_start. Returns 0, GHE_INVAL (err says why) or GHE_NOMEM.
 */
int watcher_new(struct kube *k, const struct watcher_config *cfg, struct watcher **out, char *err,
                size_t err_size);
/*
 * Adds a consumer, before watcher_start (GHE_INVAL after, or when full). Either
 * callback may be NULL.
 */
int watcher_subscribe(struct watcher *w, watcher_event_fn on_event, watcher_leader_fn on_leadership,
                      void *arg);
/* Starts the thread. Returns 0 or GHE_NOMEM. */
int watcher_start(struct watcher *w);
/*
 * Stops the thread: ends the watch, answers every queued patch with status 0, and
 * when this replica holds the Lease hands it back (one PUT, bounded by 2 s); the
 * leadership callback then says false. Frees w. NULL is fine.
 */
void watcher_free(struct watcher *w);

/* True while this replica holds the Lease (within its renew deadline). Any thread. */
bool watcher_is_leader(const struct watcher *w);
/* This replica's identity in the Lease. */
const char *watcher_identity(const struct watcher *w);
/*
 * The API client the watcher talks through (borrowed, as given to watcher_new), for a
 * consumer's own reads with the same connection settings (kube_conn_apply). NULL for NULL.
 */
struct kube *watcher_kube(const struct watcher *w);

/*
 * Queues a JSON merge patch (RFC 7386) of the PipelineRun name to the watcher's
 * thread and returns at once; done runs there with the answer, exactly once (also on
 * failure to queue: then before this returns, status 0). A
 * metadata.resourceVersion in the patch is a precondition: a stale one answers 409.
 * patch is copied; done may be NULL (fire and forget). An answer of 401 re-reads the token
 * file and sends the patch once more, as the create path does. Any thread. Returns 0, GHE_INVAL (a
 * bad name), GHE_NOMEM or GHE_UNAVAILABLE (stopping, or not started).
 */
int watcher_patch(struct watcher *w, const char *name, const char *patch, size_t len,
                  watcher_patch_fn done, void *arg);

/* Counters for metrics and tests; any thread. */
struct watcher_stats {
    unsigned long long lists, watches, events, relists_410, transitions;
};
void watcher_stats(const struct watcher *w, struct watcher_stats *out);

#endif
