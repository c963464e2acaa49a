/*
 * Prometheus metrics in text exposition format 0.0.4. Debian ships no C
 * client, so this is a small fixed set of counters, gauges and one histogram,
 * updated under a lock and rendered on GET /metrics. Label values come from
 * fixed sets (routes, outcomes, variants) or event names that the webhook
 * module has already checked against the configured list.
 */
#ifndef GPUHOOK_METRICS_H
#define GPUHOOK_METRICS_H

#include "gpuhook/buf.h"

void metrics_http_observe(const char *route, int code, double seconds);
void metrics_delivery(const char *event, const char *outcome);
void metrics_pipelinerun_created(const char *variant);
void metrics_signature_failure(void);
void metrics_kube_request(int code);
/* One create's final answer, by kube_answer_name: refused and blocked need an operator. */
void metrics_kube_answer(const char *answer);
void metrics_spool_depth_set(long depth);

/* Appends the whole exposition (GPU gauges included) to b. Returns 0 or an error. */
int metrics_render(struct buf *b);

/* Clears every series (for tests). */
void metrics_reset(void);

#endif
