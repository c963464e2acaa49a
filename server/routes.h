/*
 * The routes (private to the server): each route's file exports its const
 * struct http_route; routes.c lists them in the one table the HTTP layer
 * receives, and turns the pipeline's outcomes into HTTP answers for the two
 * routes that run it. A new route (/queue, the agent's) is a file exporting
 * one struct and one line in routes.c's table.
 */
#ifndef GPUHOOK_ROUTES_H
#define GPUHOOK_ROUTES_H

#include <stdbool.h>

#include "gpuhook/http.h"

struct pipeline_input;
struct pipeline_outcome;

extern const struct http_route webhook_route; /* POST /webhook (webhook.c) */
extern const struct http_route trigger_route; /* POST /trigger (trigger.c) */
extern const struct http_route healthz_route; /* GET /healthz (probes.c) */
extern const struct http_route readyz_route;  /* GET /readyz (probes.c) */
extern const struct http_route gpu_route;     /* GET /gpu (probes.c) */
extern const struct http_route metrics_route; /* GET /metrics (probes.c) */

/* Answers GET /gpu from this machine's own GPU snapshot (probes.c; the agent's /gpu too). */
enum http_step probes_local_gpu(struct http_request *req, bool verbose);
extern const struct http_route queue_route; /* GET /queue (queueroute.c) */

/* The table: every route the server answers. */
extern const struct http_routes routes_table;

/* Sets req's answer for a pipeline outcome (status, JSON body, access-log fields). */
void routes_answer(struct http_request *req, const struct pipeline_outcome *o);

/*
 * Runs the pipeline for req and answers it: returns the finish hook's step
 * (HTTP_SUSPENDED; the answer may already be set when the delivery ran inline).
 */
enum http_step routes_run_pipeline(struct http_request *req, struct pipeline_input *in);

#endif
