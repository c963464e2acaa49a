/*
 * Dispatch: the part of a delivery shared by /webhook and /trigger. From a
 * normalized event it selects the variant (or takes a forced one), applies
 * the GPU fit policy, renders the PipelineRun, lands it through the delivery
 * sink and writes the response and metrics.
 */
#ifndef GPUHOOK_DISPATCH_H
#define GPUHOOK_DISPATCH_H

#include <stdbool.h>

#include "gpuhook/http.h"
#include "gpuhook/kube.h"
#include "gpuhook/template.h"

struct workpool;

/* A rendered run waiting for a thread that may block. */
struct dispatch_pending {
    char *json;
    size_t len;
    char name[64];
    char ns[256];
    char variant[16];
    char rule[128];
    char event[64];
    char *delivery;
    char *hook_id;
    int name_kind;        /* enum naming_kind: the cache keeps the kinds apart too */
    char fingerprint[72]; /* /trigger with an Idempotency-Key: the request's SHA-256 */
    bool from_spool;      /* json is the run that already waited in the spool */
    char spool_variant[16];
    char spool_rule[128];
    char spool_fingerprint[72];
    /* dispatch_complete_async */
    struct workpool *pool;
    void (*finished)(struct http_request *req);
    struct kube_result api;
};

struct dispatch_input {
    struct event *ev;
    int forced_variant; /* -1 runs the selection rules */
    const struct template_override *overrides;
    size_t override_count;
    int name_kind;           /* enum naming_kind */
    const char *name_key[2]; /* the run's identity: (hook ID, delivery ID) or (key, NULL) */
    const char *fingerprint; /* /trigger with an Idempotency-Key: the request's SHA-256 hex */
    bool preview;            /* ?dry_run=true: return the object, create nothing */
};

/*
 * Runs the delivery up to the point where it would block. When req->defer_ok
 * is set and the sink may block (API or local folder), it leaves the rendered
 * run in req->pending and sets no response: the caller then runs
 * dispatch_complete() on a thread that may block. Otherwise it completes inline.
 */
void dispatch_run(struct http_request *req, const struct dispatch_input *in);

/* Lands req->pending and sets the response; frees the pending state. */
void dispatch_complete(struct http_request *req);

/*
 * For the API modes: lands req->pending without blocking a thread, sets the
 * response and then calls finished(req), from the API client's thread (or
 * from pool's when the run has to be spooled, or before returning). Returns
 * false, doing nothing, for the modes that must block (use dispatch_complete).
 */
bool dispatch_complete_async(struct http_request *req, struct workpool *pool,
                             void (*finished)(struct http_request *req));

/* Frees pending state that was never completed (safe on NULL). */
void dispatch_pending_free(struct dispatch_pending *p);

#endif
