/*
 * The agent poller (issue 19): GET /gpu?verbose from every listed agent at
 * once, on one curl_multi handle, with short timeouts and a bounded answer,
 * and the answers fed to a struct gpuview.
 *
 * It is a step the caller drives, not a thread of its own. A round has three
 * steps so that the view's lock is never held across the network:
 * gpupoll_prepare copies the targets out of the view, gpupoll_run does the
 * I/O (touching no view), and gpupoll_apply feeds the results back. The
 * caller (the cluster-view thread of the wiring step, which also re-lists
 * EndpointSlices and Nodes) owns the cadence, the lock and the shutdown;
 * gpupoll_cancel cuts a running round short from another thread. The curl_multi
 * handle lives as long as the poller, so connections to agents are reused
 * between rounds. curl_global_init must have been called (main does).
 */
#ifndef GPUHOOK_GPUPOLL_H
#define GPUHOOK_GPUPOLL_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/gpuview.h"

struct gpupoll_options {
    long timeout_ms;         /* one agent's whole request, default 1000 */
    long connect_timeout_ms; /* default 500 */
    size_t max_body;         /* bytes per answer, default 256 KiB */
};

struct gpupoll_stats {
    size_t targets;     /* agents polled in the last round */
    size_t answered;    /* answers the view took */
    size_t failed;      /* timeouts, refusals, bad status, bad or oversized bodies */
    long long round_ms; /* how long gpupoll_run took */
};

struct gpupoll;

/* Fills o with the defaults above. */
void gpupoll_options_init(struct gpupoll_options *o);
/* A poller (caller frees with gpupoll_free), or NULL when memory or curl fails. */
struct gpupoll *gpupoll_new(const struct gpupoll_options *o);
void gpupoll_free(struct gpupoll *p);

/*
 * Copies the URL of every listed agent whose endpoint is ready out of v.
 * Returns the number of targets, or GHE_NOMEM.
 */
int gpupoll_prepare(struct gpupoll *p, const struct gpuview *v);

/*
 * Polls the prepared targets concurrently and waits for all of them, at most
 * timeout_ms and a little more. Touches no view. Returns 0, or GHE_UNAVAILABLE
 * when curl itself fails (every target then counts as failed).
 */
int gpupoll_run(struct gpupoll *p);

/*
 * Feeds the last run's results into v at now_ms (wall clock): answers through
 * gpuview_agent_answer, failures through gpuview_agent_failed. Targets that
 * left the view meanwhile are dropped. Returns the number of answers taken.
 */
int gpupoll_apply(struct gpupoll *p, struct gpuview *v, long long now_ms);

/* prepare, run and apply in one call, for a caller that holds v alone. */
int gpupoll_round(struct gpupoll *p, struct gpuview *v, long long now_ms);

/*
 * Makes a running gpupoll_run return soon, its unfinished targets failed with
 * "poll cancelled" (safe from another thread). Called between rounds, it
 * cancels the next one.
 */
void gpupoll_cancel(struct gpupoll *p);

/* The last round's counts. */
struct gpupoll_stats gpupoll_last(const struct gpupoll *p);

#endif
