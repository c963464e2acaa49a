/*
 * Delivery: lands one rendered PipelineRun exactly once through one of three
 * sinks picked by kubernetes.mode: the API (kube.c, with the durable spool.c
 * behind it; modes url and in-cluster), a local folder, or dry-run. Each sink
 * owns its threading, decided in delivery_deliver alone: dry-run answers
 * inline, a local write (fsync) runs on the sink's work pool, an API call on
 * the API client's loop thread with only spooling handed to the pool. The name is deterministic, so
 * "already exists" means a redelivery, never a failure. Delivery is built once at start-up; SIGHUP
 * does not rebuild it (the kubernetes section needs a restart).
 */
#ifndef GPUHOOK_DELIVERY_H
#define GPUHOOK_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>

struct buf;
struct config;
struct errlist;

enum delivery_outcome {
    DELIVERY_CREATED = 0,
    DELIVERY_EXISTS,
    DELIVERY_QUEUED,
    DELIVERY_DRY_RUN,
    DELIVERY_REJECTED,   /* the API refused it for good (400, 413, 415, 422) */
    DELIVERY_UNAVAILABLE /* neither created nor stored */
};

struct delivery_result {
    int outcome;       /* enum delivery_outcome */
    int api_status;    /* the API's last answer, 0 when none */
    char reason[64];   /* the API's Status reason for REJECTED */
    char message[512]; /* the API's message for REJECTED / UNAVAILABLE */
    /* EXISTS: what the existing object says (when it could be read back). */
    bool existing;
    char existing_variant[16];
    char existing_fingerprint[72];
    char existing_rule[128];
};

struct delivery;

/* Builds the sink for cfg (opens the spool, reads in-cluster settings). */
int delivery_new(const struct config *cfg, struct delivery **out, struct errlist *el);
void delivery_free(struct delivery *d);

/* Starts background work (the work pool, the spool's retry worker). */
int delivery_start(struct delivery *d);

struct watcher;
/*
 * The one shared watcher (watcher.h) of the process: in the API modes when the config has
 * concurrency, github.report or gpu_fit "queue" (the Lease from concurrency.lease), built by
 * delivery_new, started last by delivery_start, freed by delivery_free; NULL otherwise. Consumers
 * call watcher_subscribe between delivery_new and delivery_start.
 */
struct watcher *delivery_watcher(struct delivery *d);
struct kube;
/* The API client of the API modes (the scheduler posts a downgrade's copy with it), or NULL. */
struct kube *delivery_kube(struct delivery *d);
struct ghreport;
/* GitHub feedback (github.report), or NULL when off. */
struct ghreport *delivery_report(struct delivery *d);

/* The namespace runs go to. */
const char *delivery_namespace(const struct delivery *d);
int delivery_mode(const struct delivery *d);

/*
 * Lands one object (JSON text) named name in namespace ns; fills r. The API
 * is given deadline_ms (what is left of kubernetes.timeout_seconds since the
 * request arrived) before the run is spooled instead.
 */
void delivery_submit(struct delivery *d, const char *name, const char *ns, const char *json,
                     size_t len, long deadline_ms, struct delivery_result *r);

struct kube_result;

typedef void (*delivery_done_fn)(void *arg, const struct delivery_result *r);

/*
 * The sinks' one entry: lands the run and calls done(arg, r) exactly once,
 * inline (dry-run, or before delivery_start), from the work pool (local
 * folder, spooling) or from the API client's thread. json must stay valid
 * until done is called.
 */
void delivery_deliver(struct delivery *d, const char *name, const char *ns, const char *json,
                      size_t len, long deadline_ms, delivery_done_fn done, void *arg);

/*
 * The API sink: when a run named name already waits in the spool, hands its JSON text
 * (caller frees) and what it says (variant, fingerprint) back and returns 0, so that the
 * run that waits is the one delivered, never a later render under the same name. Returns
 * GHE_NOTFOUND otherwise.
 */
int delivery_spooled(struct delivery *d, const char *name, char **json, size_t *len,
                     struct delivery_result *r);

/*
 * The API modes without a blocking thread: starts creating the object and
 * returns 0; done(arg, kr) later runs on the API client's thread with the
 * API's final answer, which delivery_api_outcome turns into an outcome.
 * Returns GHE_UNSUPPORTED for the other modes (use delivery_submit).
 */
int delivery_submit_async(struct delivery *d, const char *ns, const char *json, size_t len,
                          long deadline_ms, void (*done)(void *arg, const struct kube_result *kr),
                          void *arg);

/*
 * True when that final answer means writing to disk: the run goes to the spool (out of
 * time, 5xx, 401, 403, 404, ...) or, refused for good, to the spool's failed/.
 */
bool delivery_api_spools(const struct kube_result *kr);

/*
 * Turns the API's final answer for the run called name into r through the table in
 * kube.h, spooling the run (or keeping it in failed/ with the API's Status) when
 * delivery_api_spools says so (which may block on fsync).
 */
void delivery_api_outcome(struct delivery *d, const char *name, const char *json, size_t len,
                          const struct kube_result *kr, struct delivery_result *r);

/*
 * Readiness of the sink, cached for about a second: true when a delivery can
 * be accepted and persisted now (local_dir or spool_dir takes a synced
 * write; dry-run always). In the API modes the API's reachability is
 * reported as "api" but does not count, since the spool absorbs an outage.
 * Appends JSON members ("delivery":{...},"spool":{"ok":..,"detail":..},...)
 * to detail, each check an object with at least "ok" and "detail".
 */
bool delivery_ready(struct delivery *d, struct buf *detail);

/* "created", "exists", "queued", "dry_run", "rejected", "unavailable". */
const char *delivery_outcome_name(int outcome);

#endif
