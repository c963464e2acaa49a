#include "gpuhook/dispatch.h"
#include "gpuhook/buf.h"
#include "gpuhook/gpu.h"
#include "gpuhook/kube.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"
#include "gpuhook/naming.h"
#include "gpuhook/runcheck.h"
#include "gpuhook/select.h"
#include "gpuhook/workpool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DISPATCH_RUN_MAX (64 * 1024 * 1024) /* a rendered PipelineRun */

static void dispatch_note(struct http_request *req, const char *variant, const char *name) {
    if (variant)
        buf_copy_str(req->log_variant, sizeof(req->log_variant), variant);
    if (name)
        buf_copy_str(req->log_pipelinerun, sizeof(req->log_pipelinerun), name);
}

static void dispatch_respond(struct http_request *req, int status, const char *outcome,
                             const struct dispatch_pending *pd) {
    const char *fields[] = {"status",   outcome,      "pipelinerun", pd->name, "namespace",
                            pd->ns,     "variant",    pd->variant,   "rule",   pd->rule,
                            "delivery", pd->delivery, NULL};
    http_request_fields(req, status, fields);
}

void dispatch_pending_free(struct dispatch_pending *p) {
    if (!p)
        return;
    free(p->json);
    free(p->delivery);
    free(p->hook_id);
    free(p);
}

static long dispatch_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/*
 * The run's name was taken (or already waits in the spool). The answer names the existing
 * run's own variant (read back from the API, the local file or the spooled file), and a
 * /trigger Idempotency-Key must come with the same request as the first time (its
 * fingerprint is an annotation on the object).
 * Returns false with the response set when the answer is not "exists".
 */
static bool dispatch_exists(struct http_request *req, struct dispatch_pending *pd,
                            const struct delivery_result *r) {
    if (r->existing && r->existing_variant[0])
        buf_copy_str(pd->variant, sizeof(pd->variant), r->existing_variant);
    if (r->existing && r->existing_rule[0])
        buf_copy_str(pd->rule, sizeof(pd->rule), r->existing_rule);
    if (!pd->fingerprint[0])
        return true;
    if (!r->existing) {
        http_request_error(req, 503,
                           "Idempotency-Key \"%s\": run %s exists but could not be read back to "
                           "compare requests; retry",
                           pd->delivery, pd->name);
        return false;
    }
    if (strcmp(r->existing_fingerprint, pd->fingerprint) != 0) {
        http_request_error(req, 422,
                           "Idempotency-Key \"%s\" was already used for run %s with a different "
                           "request body; use a new key for a new request",
                           pd->delivery, pd->name);
        return false;
    }
    return true;
}

/* A created run that had waited in the spool: answer for it, as for an existing one. */
static bool dispatch_spooled_check(struct http_request *req, struct dispatch_pending *pd) {
    struct delivery_result known;
    memset(&known, 0, sizeof(known));
    known.existing = true;
    buf_copy_str(known.existing_variant, sizeof(known.existing_variant), pd->spool_variant);
    buf_copy_str(known.existing_fingerprint, sizeof(known.existing_fingerprint),
                 pd->spool_fingerprint);
    buf_copy_str(known.existing_rule, sizeof(known.existing_rule), pd->spool_rule);
    return dispatch_exists(req, pd, &known);
}

/* When the name already waits in the spool, the run that waits is what gets sent. */
static void dispatch_prefer_spooled(struct http_request *req, struct dispatch_pending *pd) {
    struct delivery_result known;
    char *json = NULL;
    size_t len = 0;

    if (delivery_spooled(req->app->delivery, pd->name, &json, &len, &known) != 0)
        return;
    free(pd->json);
    pd->json = json;
    pd->len = len;
    pd->from_spool = true;
    buf_copy_str(pd->spool_variant, sizeof(pd->spool_variant), known.existing_variant);
    buf_copy_str(pd->spool_fingerprint, sizeof(pd->spool_fingerprint), known.existing_fingerprint);
    buf_copy_str(pd->spool_rule, sizeof(pd->spool_rule), known.existing_rule);
}

/* Counts, logs and answers a delivery's outcome; frees the pending state. */
static void dispatch_finish(struct http_request *req, struct dispatch_pending *pd,
                            const struct delivery_result *r) {
    metrics_delivery(pd->event, delivery_outcome_name(r->outcome));
    LOGGER_INFO_("delivery", "request_id", req->request_id, "delivery", pd->delivery, "event",
                 pd->event, "variant", pd->variant, "rule", pd->rule, "pipelinerun", pd->name,
                 "outcome", delivery_outcome_name(r->outcome));
    switch (r->outcome) {
    case DELIVERY_CREATED:
        if (pd->from_spool && !dispatch_spooled_check(req, pd))
            goto out;
        metrics_pipelinerun_created(pd->variant);
        dispatch_respond(req, 201, "created", pd);
        break;
    case DELIVERY_EXISTS:
        if (!dispatch_exists(req, pd, r))
            goto out;
        dispatch_respond(req, 200, "exists", pd);
        break;
    case DELIVERY_QUEUED:
        /* The name already waits in the spool: the same checks as for a created run. */
        if (r->existing && !dispatch_exists(req, pd, r))
            goto out;
        dispatch_respond(req, 202, "queued", pd);
        break;
    case DELIVERY_DRY_RUN:
        dispatch_respond(req, 200, "dry_run", pd);
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
    if ((r->outcome == DELIVERY_CREATED || r->outcome == DELIVERY_EXISTS) && pd->delivery)
        app_lru_put(req->app, pd->name_kind, pd->hook_id, pd->delivery, pd->name, pd->variant,
                    pd->rule);
out:
    dispatch_pending_free(pd);
}

/* The deadline runs from the request's arrival, so time spent queued counts. */
static long dispatch_deadline(const struct http_request *req) {
    return req->cfg->kube_timeout_seconds * 1000L - (dispatch_now_ms() - req->start_ms);
}

void dispatch_complete(struct http_request *req) {
    struct dispatch_pending *pd = req->pending;
    struct delivery_result r;

    req->pending = NULL;
    if (!pd)
        return;
    if (delivery_mode(req->app->delivery) == CONFIG_KUBE_URL ||
        delivery_mode(req->app->delivery) == CONFIG_KUBE_IN_CLUSTER)
        dispatch_prefer_spooled(req, pd);
    delivery_submit(req->app->delivery, pd->name, pd->ns, pd->json, pd->len, dispatch_deadline(req),
                    &r);
    dispatch_finish(req, pd, &r);
}

/* Answers an asynchronous delivery, then lets the connection go. */
static void dispatch_answer(struct http_request *req, const struct kube_result *kr) {
    struct dispatch_pending *pd = req->pending;
    void (*finished)(struct http_request *) = pd->finished;
    struct delivery_result r;

    req->pending = NULL;
    delivery_api_outcome(req->app->delivery, pd->name, pd->json, pd->len, kr, &r);
    dispatch_finish(req, pd, &r);
    finished(req);
}

/* On a work-pool thread: the API ran out of time, so spool the run (fsync), then answer. */
static void dispatch_spool_task(void *arg) {
    struct http_request *req = arg;
    dispatch_answer(req, &req->pending->api);
}

/* On the API client's thread: the final answer. Only spooling is handed to the pool. */
static void dispatch_api_done(void *arg, const struct kube_result *kr) {
    struct http_request *req = arg;
    struct dispatch_pending *pd = req->pending;

    if (!delivery_api_spools(kr)) {
        dispatch_answer(req, kr);
        return;
    }
    pd->api = *kr;
    if (workpool_submit(pd->pool, dispatch_spool_task, req) != 0)
        dispatch_spool_task(req);
}

bool dispatch_complete_async(struct http_request *req, struct workpool *pool,
                             void (*finished)(struct http_request *req)) {
    struct dispatch_pending *pd = req->pending;

    if (!pd || delivery_mode(req->app->delivery) == CONFIG_KUBE_LOCAL ||
        delivery_mode(req->app->delivery) == CONFIG_KUBE_DRY_RUN)
        return false;
    pd->pool = pool;
    pd->finished = finished;
    dispatch_prefer_spooled(req, pd);
    /* done runs in every case but the unsupported mode, which was ruled out above. */
    return delivery_submit_async(req->app->delivery, pd->ns, pd->json, pd->len,
                                 dispatch_deadline(req), dispatch_api_done, req) != GHE_UNSUPPORTED;
}

void dispatch_run(struct http_request *req, const struct dispatch_input *in) {
    struct config *cfg = req->cfg;
    struct event *ev = in->ev;
    struct select_decision d;
    char err[512] = "", fit_reason[256] = "", name[NAMING_MAX + 1];
    struct buf text;
    const char *event_name = ev->event ? ev->event : "unknown";

    memset(&d, 0, sizeof(d));
    buf_init(&text, DISPATCH_RUN_MAX);
    if (in->forced_variant >= 0) {
        d.variant = in->forced_variant;
        snprintf(d.rule, sizeof(d.rule), "manual");
        snprintf(d.reason, sizeof(d.reason), "variant %s was requested by POST /trigger",
                 select_variant_name(d.variant));
    } else {
        select_decide(cfg->rules, ev, &d);
    }
    if (d.variant == SELECT_SKIP) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ignored");
        cJSON_AddStringToObject(o, "reason", d.reason);
        cJSON_AddStringToObject(o, "rule", d.rule);
        http_request_json(req, 200, o);
        cJSON_Delete(o);
        metrics_delivery(event_name, "ignored");
        return;
    }

    int variant = d.variant;
    int fit = gpu_fit_check(select_rules_gpu_fit(cfg->rules), cfg->gpu.required, d.variant,
                            &variant, fit_reason, sizeof(fit_reason));
    if (fit == GPU_FIT_REJECTED) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "error", "insufficient GPU memory");
        cJSON_AddStringToObject(o, "reason", fit_reason);
        cJSON_AddStringToObject(o, "variant", select_variant_name(d.variant));
        http_request_json(req, 503, o);
        cJSON_Delete(o);
        metrics_delivery(event_name, "gpu_rejected");
        return;
    }
    if (fit_reason[0]) {
        size_t n = strlen(d.reason);
        snprintf(d.reason + n, sizeof(d.reason) - n, "%s%s", n ? " " : "", fit_reason);
    }
    d.variant = variant;
    const char *vname = select_variant_name(d.variant);

    struct template_render_input ri = {
        .ev = ev,
        .decision = &d,
        .namespace = delivery_namespace(req->app->delivery),
        .name_kind = in->name_kind,
        .name_key = {in->name_key[0], in->name_key[1]},
        .fingerprint = in->fingerprint,
        .overrides = in->overrides,
        .override_count = in->override_count,
    };
    int rc = template_render_json(cfg->tmpl, &ri, &text, name, err, sizeof(err));
    if (rc == GHE_INVAL) {
        http_request_error(req, 400, "%s", err);
        metrics_delivery(event_name, "invalid");
        goto out;
    }
    if (rc) {
        http_request_error(req, 500, "cannot render the PipelineRun: %s", ghe_strerror(rc));
        metrics_delivery(event_name, "error");
        goto out;
    }
    if (runcheck_names(text.data ? text.data : "", text.len, err, sizeof(err)) != 0) {
        http_request_error(req, 400, "%s", err);
        metrics_delivery(event_name, "invalid");
        goto out;
    }
    const char *ns = ri.namespace;
    if (!ns) {
        http_request_error(req, 500, "the rendered PipelineRun has no namespace");
        goto out;
    }
    dispatch_note(req, vname, name);

    if (in->preview) {
        cJSON *run = cJSON_ParseWithLength(text.data, text.len);
        if (!run) {
            http_request_error(req, 500, "out of memory");
            goto out;
        }
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "dry_run");
        cJSON_AddStringToObject(o, "variant", vname);
        cJSON_AddStringToObject(o, "rule", d.rule);
        cJSON_AddStringToObject(o, "reason", d.reason);
        cJSON_AddItemToObject(o, "pipelinerun", run);
        http_request_json(req, 200, o);
        cJSON_Delete(o);
        metrics_delivery(event_name, "dry_run");
        goto out;
    }

    struct dispatch_pending *pd = calloc(1, sizeof(*pd));
    if (!pd) {
        http_request_error(req, 500, "out of memory");
        goto out;
    }
    pd->json = buf_detach(&text, &pd->len);
    buf_copy_str(pd->name, sizeof(pd->name), name);
    buf_copy_str(pd->ns, sizeof(pd->ns), ns);
    buf_copy_str(pd->variant, sizeof(pd->variant), vname);
    buf_copy_str(pd->rule, sizeof(pd->rule), d.rule);
    buf_copy_str(pd->event, sizeof(pd->event), event_name);
    pd->delivery = ev->delivery ? strdup(ev->delivery) : NULL;
    pd->hook_id = ev->hook_id ? strdup(ev->hook_id) : NULL;
    pd->name_kind = in->name_kind;
    buf_copy_str(pd->fingerprint, sizeof(pd->fingerprint), in->fingerprint ? in->fingerprint : "");
    req->pending = pd;
    if (!req->defer_ok || delivery_mode(req->app->delivery) == CONFIG_KUBE_DRY_RUN)
        dispatch_complete(req);
out:
    buf_cleanup(&text);
}
