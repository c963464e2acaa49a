/*
 * The Kubernetes API client: creates PipelineRuns with POST ...?fieldValidation=Strict,
 * retrying 429, 5xx, connection errors and timeouts with exponential backoff and
 * jitter inside a deadline, honouring Retry-After. Each client runs one loop thread
 * that drives every create through a curl multi handle, so one wake-up serves many
 * calls, retries wait without holding a thread, and the multi's connection cache keeps
 * connections to the API server alive between calls. It re-reads the bearer token when
 * the file changes and at once after a 401, verifies TLS always, allows only http and
 * https and ignores *_proxy variables. It never spools: that is the delivery module's
 * decision.
 */
#ifndef GPUHOOK_KUBE_H
#define GPUHOOK_KUBE_H

#include <stddef.h>

#include "gpuhook/config.h"

struct kube;

struct kube_result {
    int status; /* last HTTP status, 0 when no answer came */
    int attempts;
    char message[512]; /* the API's Status message, or the transport error */
};

/*
 * Builds a client for cfg's url or in-cluster mode. In-cluster reads
 * KUBERNETES_SERVICE_HOST/PORT and the service-account folder
 * ($GPUHOOK_SERVICEACCOUNT_DIR or /var/run/secrets/kubernetes.io/serviceaccount).
 * Returns 0 and sets *out, or an error with messages in el.
 */
int kube_new(const struct config *cfg, struct kube **out, struct errlist *el);
/*
 * Stops the loop thread and frees the client. Every create still queued, waiting for
 * a retry or in flight completes first, with status 0 and the message "the API client
 * is shutting down". No call may be started on k once kube_free has begun, and
 * kube_free must not be called from a kube_done_fn.
 */
void kube_free(struct kube *k);

/* The namespace runs are created in (config, or the service account's). */
const char *kube_namespace(const struct kube *k);

/* Receives a create's final result; r is valid only during the call. */
typedef void (*kube_done_fn)(void *arg, const struct kube_result *r);

/*
 * Starts creating one PipelineRun (JSON text) in ns, posted to tekton.dev/v1beta1 when the
 * text starts with that apiVersion (as templates render it) and to tekton.dev/v1 otherwise,
 * with exactly the retry semantics of
 * kube_create (below). done runs exactly once with the final result, on the client's
 * loop thread (or before this returns, when the job cannot be started: then r->status is 0
 * and r->message says why). json must stay valid and unchanged until done runs; ns is
 * copied. done must not block for long: it holds up every other API call. Safe to call
 * from any number of threads at once. Returns 0, or GHE_NOMEM or GHE_UNAVAILABLE (shutting
 * down) after done has run.
 */
int kube_create_async(struct kube *k, const char *ns, const char *json, size_t len,
                      long deadline_ms, kube_done_fn done, void *arg);

/*
 * Creates one object (JSON text) in ns, retrying transient failures (no answer, 401,
 * 403, 404, 408, 429, 5xx) until deadline_ms elapses. Returns 0 with r->status set to
 * the final answer (201, 409, 400, 422, ...) or 0 when none came, or an error with r
 * filled as by kube_create_async. Blocks; never call it from a kube_done_fn.
 */
int kube_create(struct kube *k, const char *ns, const char *json, size_t len, long deadline_ms,
                struct kube_result *r);

/* Checks GET /readyz with the configured auth. Returns 0 when it answers 200. */
int kube_probe(struct kube *k, char *detail, size_t detail_len);

#endif
