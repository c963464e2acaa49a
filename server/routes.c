#include "routes.h"
#include "gpuhook/app.h"
#include "gpuhook/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct http_route *const routes_list[] = {
    &webhook_route, &trigger_route, &healthz_route, &readyz_route, &gpu_route, &metrics_route,
    &queue_route,
};

const struct http_routes routes_table = {routes_list, sizeof(routes_list) / sizeof(routes_list[0])};

static void routes_fields(struct http_request *req, int status, const char *outcome,
                          const struct pipeline_outcome *o) {
    const char *fields[] = {"status",   outcome,     "pipelinerun", o->name, "namespace",
                            o->ns,      "variant",   o->variant,    "rule",  o->rule,
                            "delivery", o->delivery, NULL};
    http_request_fields(req, status, fields);
}

/* Created pending by the admission queue: 202, with its place in its group's queue. */
static void routes_admitted(struct http_request *req, const struct pipeline_outcome *o) {
    cJSON *obj = cJSON_CreateObject();
    if (!obj) {
        http_request_error(req, 500, "out of memory");
        return;
    }
    cJSON_AddStringToObject(obj, "status", "queued");
    cJSON_AddStringToObject(obj, "pipelinerun", o->name);
    cJSON_AddStringToObject(obj, "namespace", o->ns);
    cJSON_AddNumberToObject(obj, "position", o->queue_position);
    cJSON_AddStringToObject(obj, "variant", o->variant);
    cJSON_AddStringToObject(obj, "rule", o->rule);
    if (o->delivery)
        cJSON_AddStringToObject(obj, "delivery", o->delivery);
    http_request_json(req, 202, obj);
    cJSON_Delete(obj);
}

static void routes_preview(struct http_request *req, const struct pipeline_outcome *o) {
    cJSON *run = cJSON_ParseWithLength(o->run, o->run_len);
    if (!run) {
        http_request_error(req, 500, "out of memory");
        return;
    }
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddStringToObject(obj, "status", "dry_run");
    cJSON_AddStringToObject(obj, "variant", o->variant);
    cJSON_AddStringToObject(obj, "rule", o->rule);
    cJSON_AddStringToObject(obj, "reason", o->reason);
    cJSON_AddItemToObject(obj, "pipelinerun", run);
    http_request_json(req, 200, obj);
    cJSON_Delete(obj);
}

static void routes_delivered(struct http_request *req, const struct pipeline_outcome *o) {
    const struct delivery_result *r = &o->result;
    switch (r->outcome) {
    case DELIVERY_CREATED:
        if (o->queue_position > 0)
            routes_admitted(req, o);
        else
            routes_fields(req, 201, "created", o);
        break;
    case DELIVERY_EXISTS:
        routes_fields(req, 200, "exists", o);
        break;
    case DELIVERY_QUEUED:
        routes_fields(req, 202, "queued", o);
        break;
    case DELIVERY_DRY_RUN:
        routes_fields(req, 200, "dry_run", o);
        break;
    case DELIVERY_REJECTED:
        /* The API's own words (its Status names the field, never echoes the payload). */
        http_request_error(req, 502,
                           "the Kubernetes API refused the PipelineRun for good (HTTP %d%s%s): "
                           "%s; it is kept in the spool's failed/",
                           r->api_status, r->reason[0] ? " " : "", r->reason, r->message);
        break;
    default:
        http_request_error(req, 503, "no delivery backend is ready: %s", r->message);
    }
}

void routes_answer(struct http_request *req, const struct pipeline_outcome *o) {
    cJSON *obj;

    if (o->name[0]) {
        http_request_log(req, "variant", o->variant);
        http_request_log(req, "pipelinerun", o->name);
    }
    switch (o->status) {
    case PIPELINE_IGNORED:
        obj = cJSON_CreateObject();
        cJSON_AddStringToObject(obj, "status", "ignored");
        cJSON_AddStringToObject(obj, "reason", o->reason);
        cJSON_AddStringToObject(obj, "rule", o->rule);
        http_request_json(req, 200, obj);
        cJSON_Delete(obj);
        break;
    case PIPELINE_GPU_REJECTED:
        obj = cJSON_CreateObject();
        cJSON_AddStringToObject(obj, "error", "insufficient GPU memory");
        cJSON_AddStringToObject(obj, "reason", o->reason);
        cJSON_AddStringToObject(obj, "variant", o->variant);
        http_request_json(req, 503, obj);
        cJSON_Delete(obj);
        break;
    case PIPELINE_INVALID:
        http_request_error(req, 400, "%s", o->message);
        break;
    case PIPELINE_PREVIEW:
        routes_preview(req, o);
        break;
    case PIPELINE_DELIVERED:
        routes_delivered(req, o);
        break;
    case PIPELINE_UNVERIFIED:
        http_request_error(req, 503,
                           "Idempotency-Key \"%s\": run %s exists but could not be read back to "
                           "compare requests; retry",
                           o->delivery, o->name);
        break;
    case PIPELINE_KEY_REUSED:
        http_request_error(req, 422,
                           "Idempotency-Key \"%s\" was already used for run %s with a different "
                           "request body; use a new key for a new request",
                           o->delivery, o->name);
        break;
    default:
        http_request_error(req, 500, "%s", o->message);
    }
}

/* The pipeline's completion: the answer, then the connection may go. */
static void routes_pipeline_done(void *arg, const struct pipeline_outcome *o) {
    struct http_request *req = arg;
    routes_answer(req, o);
    http_request_resume(req);
}

enum http_step routes_run_pipeline(struct http_request *req, struct pipeline_input *in) {
    in->request_id = req->request_id;
    in->start_ms = req->start_ms;
    pipeline_run(req->app, req->cfg, in, routes_pipeline_done, req);
    return HTTP_SUSPENDED;
}
