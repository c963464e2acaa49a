/*
 * Prometheus metrics in text exposition format 0.0.4. Debian ships no C
 * client, so this is a small fixed set of counters, gauges and one histogram,
 * updated under a lock and rendered on GET /metrics. Label values come from
 * fixed sets (routes, outcomes, variants, status codes) or event names
 * mapped onto the configured list (anything else counts as "other"), so no
 * client can add series: see metrics.c for the worst-case count.
 */
#ifndef GPUHOOK_METRICS_H
#define GPUHOOK_METRICS_H

#include "gpuhook/buf.h"

#include <stdbool.h>
#include <stddef.h>

/*
 * The route labels, from the route table (names borrowed for the call only; at
 * most 32, "other" is reserved for requests no route matched).
 */
void metrics_set_routes(const char *const *names, size_t n);
void metrics_http_observe(const char *route, int code, double seconds);
void metrics_delivery(const char *event, const char *outcome);
void metrics_pipelinerun_created(const char *variant);
void metrics_signature_failure(void);
void metrics_kube_request(int code);
/* One create's final answer, by kube_answer_name: refused and blocked need an operator. */
void metrics_kube_answer(const char *answer);
void metrics_spool_depth_set(long depth);
/* A body refused because the unverified-body budget was spent. */
void metrics_body_budget_refusal(void);

enum metrics_conn_cut {
    METRICS_CONN_CUT_HEADER_DEADLINE,
    METRICS_CONN_CUT_BODY_RATE,
    METRICS_CONN_CUT_EVICTED,
    METRICS_CONN_CUT_COUNT
};
/* A connection closed by the slow-client guard, for reason (enum metrics_conn_cut). */
void metrics_connection_cut(int reason);
/* 1 when the Kubernetes API answered the last probe, 0 when not. */
void metrics_api_up_set(int up);

/*
 * The event names that count under their own label (github.events); others
 * count as "other", "trigger" always has its own. Names stay registered
 * across calls while the 64 slots last, so a reload never relabels a counter.
 */
void metrics_set_events(const char *const *names, size_t n);

/* Appends the whole exposition (GPU gauges included) to b. Returns 0 or an error. */
int metrics_render(struct buf *b);

/* Clears every series (for tests). */
void metrics_reset(void);

/* The admission queue: an action ("queued", "start", "supersede", "cancel_running",
 * "reject", "downgrade"; others count as "other"), the pending runs of a variant, the
 * seconds a started run waited, and whether this replica leads. */
void metrics_queue_action(const char *action);
void metrics_queue_depth_set(const char *variant, long depth);
void metrics_queue_waited(double seconds);
void metrics_queue_leader_set(bool leading);

#endif
