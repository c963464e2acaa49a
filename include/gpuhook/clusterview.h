/*
 * The server's cluster GPU view, wired: one thread lists the agents'
 * EndpointSlices (and, with cluster_gpu.nodes, the Nodes and the Pods that
 * request their GPUs; a failed Pod list leaves allocatable alone) through the Kubernetes
 * connection and drives gpupoll each cluster_gpu.poll_seconds; the pipeline
 * asks it for the fit and the placement, GET /gpu and /metrics for its body.
 * Off (every call falls back to the local view) without cluster_gpu.service
 * or without a Kubernetes API (dry_run, local).
 */
#ifndef GPUHOOK_CLUSTERVIEW_H
#define GPUHOOK_CLUSTERVIEW_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/buf.h"

struct config;
struct errlist;

/* Starts the thread when cfg configures the view. Returns 0 (also when off). */
int clusterview_start(const struct config *cfg, struct errlist *el);
void clusterview_stop(void);

/*
 * The pipeline's fit: the cluster view when it has data, else gpu_fit_check.
 * Returns an enum gpu_fit_outcome, sets *variant_out and reason; *affinity gets
 * the placement's JSON text (free it) when cluster_gpu.placement is on and a node
 * was chosen, else NULL.
 */
int clusterview_fit_check(const struct config *cfg, int variant, int *variant_out, char *reason,
                          size_t reason_len, char **affinity);

/*
 * Merges affinity (JSON text) into the run's spec.taskRunTemplate.podTemplate.affinity,
 * keeping what the template set there (its own nodeAffinity wins). Returns 0 or a GHE_ code.
 */
int clusterview_place(struct buf *run, const char *affinity);

/*
 * GET /gpu's cluster body (node may be NULL); NULL when the view is off or has no
 * data yet. *found is false for an unknown ?node=.
 */
char *clusterview_json(const struct config *cfg, const char *node, bool *found);

/*
 * The admission scheduler's GPU figure (issue 18), by the fit check's rules: the most free
 * memory on one usable GPU of a fresh node (gpuview_fit with no need), -1 when no GPU is
 * usable. Returns false when the view is off or has no data (then the local view applies).
 */
bool clusterview_free_mib(long long *free_mib);

/* The per-node, per-GPU metrics; 0 and nothing when the view is off. */
int clusterview_metrics_append(struct buf *b);

#endif
