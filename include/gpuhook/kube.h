/*
 * The Kubernetes API client: creates PipelineRuns with POST ...?fieldValidation=Strict,
 * retrying 429, 5xx, connection errors and timeouts with exponential backoff and
 * jitter inside a deadline, honouring Retry-After. It reuses connections through a
 * pool of curl handles, re-reads the bearer token when the file changes and at once
 * after a 401, verifies TLS always, allows only http and https and ignores *_proxy
 * variables. It never spools: that is the delivery module's decision.
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
void kube_free(struct kube *k);

/* The namespace runs are created in (config, or the service account's). */
const char *kube_namespace(const struct kube *k);

/*
 * Creates one object (JSON text) in ns, retrying transient failures until
 * deadline_ms elapses. Returns 0 with r->status set to the final answer
 * (201, 409, 400, 422, ...) or 0 when none came.
 */
int kube_create(struct kube *k, const char *ns, const char *json, size_t len, long deadline_ms,
                struct kube_result *r);

/* Checks GET /readyz with the configured auth. Returns 0 when it answers 200. */
int kube_probe(struct kube *k, char *detail, size_t detail_len);

#endif
