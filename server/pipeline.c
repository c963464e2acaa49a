#include "gpuhook/pipeline.h"
#include "gpuhook/admission.h"
#include "gpuhook/app.h"
#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/clusterview.h"
#include "gpuhook/config.h"
#include "gpuhook/event.h"
#include "gpuhook/gpu.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"
#include "gpuhook/naming.h"
#include "gpuhook/queue.h"
#include "gpuhook/runcheck.h"
#include "gpuhook/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool pipeline_event_enabled(const struct config *cfg, const char *event) {
    for (size_t i = 0; i < cfg->event_count; i++)
        if (strcmp(cfg->events[i], event) == 0)
            return true;
    return false;
}

static bool pipeline_pr_action_runs(const struct config *cfg, const struct event *ev) {
    static const char *const actions[] = {"opened", "synchronize", "reopened", "ready_for_review"};
    for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++)
        if (ev->action && strcmp(ev->action, actions[i]) == 0)
            return true;
    return ev->action && strcmp(ev->action, "labeled") == 0 && ev->added_label &&
           select_rules_names_label(cfg->rules, ev->added_label);
}

bool pipeline_should_ignore(const struct config *cfg, const char *event, const struct event *ev,
                            char *reason, size_t n) {
    if (!pipeline_event_enabled(cfg, event)) {
        snprintf(reason, n, "event %s is not in github.events", event);
        return true;
    }
    if (strcmp(event, "push") != 0 && strcmp(event, "pull_request") != 0) {
        snprintf(reason, n, "event %s does not start runs", event);
        return true;
    }
    if (!ev)
        return false;
    if (ev->deleted) {
        snprintf(reason, n, "push deletes %s", ev->ref ? ev->ref : "a ref");
        return true;
    }
    if (strcmp(event, "pull_request") != 0)
        return false;
    if (!pipeline_pr_action_runs(cfg, ev)) {
        snprintf(reason, n, "pull_request action %s does not start runs",
                 ev->action ? ev->action : "(none)");
        return true;
    }
    if (ev->draft) {
        snprintf(reason, n, "pull request #%s is a draft", ev->pr_number ? ev->pr_number : "?");
        return true;
    }
    return false;
}

/* A rendered run on its way through the sink. */
struct pipeline_job {
    struct app *app;
    pipeline_done_fn done;
    void *arg;
    struct pipeline_outcome o;
    char *json;
    size_t len;
    char event[64];
    char *delivery;
    char *hook_id;
    int name_kind;        /* enum naming_kind: the cache keeps the kinds apart too */
    char fingerprint[72]; /* /trigger with an Idempotency-Key: the request's SHA-256 */
    char request_id[65];
    bool from_spool; /* json is the run that already waited in the spool */
    char spool_variant[16];
    char spool_rule[128];
    char spool_fingerprint[72];
};

static void pipeline_job_free(struct pipeline_job *job) {
    if (!job)
        return;
    free(job->json);
    free(job->delivery);
    free(job->hook_id);
    free(job);
}

/*
 * The run's name was taken (or already waits in the spool). The outcome names the existing
 * run's own variant (read back from the API, the local file or the spooled file), and a
 * /trigger Idempotency-Key must come with the same request as the first time (its
 * fingerprint is an annotation on the object). Returns false with o->status set otherwise.
 */
static bool pipeline_exists(struct pipeline_job *job, const struct delivery_result *r) {
    struct pipeline_outcome *o = &job->o;
    if (r->existing && r->existing_variant[0])
        buf_copy_str(o->variant, sizeof(o->variant), r->existing_variant);
    if (r->existing && r->existing_rule[0])
        buf_copy_str(o->rule, sizeof(o->rule), r->existing_rule);
    if (!job->fingerprint[0])
        return true;
    if (!r->existing) {
        o->status = PIPELINE_UNVERIFIED;
        return false;
    }
    if (strcmp(r->existing_fingerprint, job->fingerprint) != 0) {
        o->status = PIPELINE_KEY_REUSED;
        return false;
    }
    return true;
}

/* A created run that had waited in the spool: answer for it, as for an existing one. */
static bool pipeline_spooled_check(struct pipeline_job *job) {
    struct delivery_result known;
    memset(&known, 0, sizeof(known));
    known.existing = true;
    buf_copy_str(known.existing_variant, sizeof(known.existing_variant), job->spool_variant);
    buf_copy_str(known.existing_fingerprint, sizeof(known.existing_fingerprint),
                 job->spool_fingerprint);
    buf_copy_str(known.existing_rule, sizeof(known.existing_rule), job->spool_rule);
    return pipeline_exists(job, &known);
}

/* When the name already waits in the spool, the run that waits is what gets sent. */
static void pipeline_prefer_spooled(struct pipeline_job *job) {
    struct delivery_result known;
    char *json = NULL;
    size_t len = 0;

    if (delivery_spooled(job->app->delivery, job->o.name, &json, &len, &known) != 0)
        return;
    free(job->json);
    job->json = json;
    job->len = len;
    job->from_spool = true;
    buf_copy_str(job->spool_variant, sizeof(job->spool_variant), known.existing_variant);
    buf_copy_str(job->spool_fingerprint, sizeof(job->spool_fingerprint),
                 known.existing_fingerprint);
    buf_copy_str(job->spool_rule, sizeof(job->spool_rule), known.existing_rule);
}

/* The sink's answer: counts, logs, checks, caches, completes; frees the job. */
static void pipeline_delivered(void *arg, const struct delivery_result *r) {
    struct pipeline_job *job = arg;
    struct pipeline_outcome *o = &job->o;

    metrics_delivery(job->event, delivery_outcome_name(r->outcome));
    LOGGER_INFO_("delivery", "request_id", job->request_id, "delivery", job->delivery, "event",
                 job->event, "variant", o->variant, "rule", o->rule, "pipelinerun", o->name,
                 "outcome", delivery_outcome_name(r->outcome));
    o->result = *r;
    o->status = PIPELINE_DELIVERED;
    bool ok = true;
    if (r->outcome == DELIVERY_CREATED && job->from_spool)
        ok = pipeline_spooled_check(job);
    else if (r->outcome == DELIVERY_EXISTS || (r->outcome == DELIVERY_QUEUED && r->existing))
        ok = pipeline_exists(job, r); /* a name waiting in the spool: the same checks */
    if (ok && r->outcome == DELIVERY_CREATED)
        metrics_pipelinerun_created(o->variant);
    if (ok && (r->outcome == DELIVERY_CREATED || r->outcome == DELIVERY_EXISTS) && job->delivery)
        app_lru_put(job->app, job->name_kind, job->hook_id, job->delivery, o->name, o->variant,
                    o->rule);
    job->done(job->arg, o);
    pipeline_job_free(job);
}

/*
 * The fit check, and what "queue" adds to it. With a scheduler, a variant that does not fit a
 * usable GPU keeps its variant and is admitted pending (GPU_FIT_QUEUED); the cluster view
 * judges with its own words, so its rejection becomes a queueing when the view has a usable
 * GPU. Without a scheduler (dry_run, local) "queue" acts as downgrade, and says so.
 */
static int pipeline_fit(const struct config *cfg, int variant, int *variant_out, char *reason,
                        size_t n, char **affinity) {
    const struct gpu_fit_policy *p = select_rules_gpu_fit(cfg->rules);
    long long free_mib;

    *affinity = NULL;
    if (p->on_insufficient == GPU_FIT_QUEUE && !admission_queues_gpu(admission_get())) {
        static const char prefix[] = "gpu_fit is queue but there is no scheduler (no Kubernetes "
                                     "API), so it acts as downgrade: ";
        struct gpu_fit_policy dp = *p;
        char why[400];
        dp.on_insufficient = GPU_FIT_DOWNGRADE;
        int fit = gpu_fit_check(&dp, cfg->gpu.required, variant, variant_out, why, sizeof(why));
        snprintf(reason, n, "%s%s", fit == GPU_FIT_KEEP ? "" : prefix, why);
        return fit;
    }
    int fit = clusterview_fit_check(cfg, variant, variant_out, reason, n, affinity);
    if (fit == GPU_FIT_REJECTED && p->on_insufficient == GPU_FIT_QUEUE &&
        clusterview_free_mib(&free_mib) && free_mib >= 0 && (variant == 0 || variant == 1)) {
        long need = variant == 1 ? p->original_min_free_mib : p->lite_min_free_mib;
        *variant_out = variant;
        snprintf(reason, n,
                 "Queued %s for the GPU: %lld MiB free on the best GPU of the cluster is below "
                 "the %ld MiB it needs.",
                 select_variant_name(variant), free_mib, need);
        return GPU_FIT_QUEUED;
    }
    return fit;
}

/*
 * A run queued for the GPU as original may be replaced by a lite copy after max_wait_seconds;
 * only the template knows lite's Pipeline, so it is rendered now and left on the run
 * (gpuhook.dev/downgrade-pipeline, read by queue.c's downgrade). Best effort: without it the
 * run keeps waiting instead of being downgraded.
 */
static void pipeline_note_downgrade(const struct config *cfg, const struct template_render_input *ri,
                                    struct buf *text) {
    struct select_decision lite = *ri->decision;
    struct template_render_input li = *ri;
    struct buf other;
    char err[256], name[NAMING_MAX + 1];

    lite.variant = SELECT_LITE;
    li.decision = &lite;
    buf_init(&other, PIPELINE_RUN_MAX);
    cJSON *l = NULL, *root = NULL;
    if (template_render_json(cfg->tmpl, &li, &other, name, err, sizeof(err)) != 0 ||
        !(l = cJSON_ParseWithLength(other.data ? other.data : "", other.len)) ||
        !(root = cJSON_ParseWithLength(text->data ? text->data : "", text->len)))
        goto out;
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(l, "spec"),
                                         "pipelineRef"),
        "name");
    cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    cJSON *notes = cJSON_GetObjectItemCaseSensitive(md, "annotations");
    if (!notes && cJSON_IsObject(md))
        notes = cJSON_AddObjectToObject(md, "annotations");
    if (!cJSON_IsString(ref) || !cJSON_IsObject(notes))
        goto out;
    cJSON_DeleteItemFromObjectCaseSensitive(notes, QUEUE_NOTE_DOWNGRADE_PIPELINE);
    cJSON_AddStringToObject(notes, QUEUE_NOTE_DOWNGRADE_PIPELINE, ref->valuestring);
    char *out = cJSON_PrintUnformatted(root);
    if (out) {
        text->len = 0;
        if (buf_appends(text, out) != 0)
            text->len = 0; /* cannot happen: the text only grew by one short annotation */
        free(out);
    }
out:
    cJSON_Delete(l);
    cJSON_Delete(root);
    buf_cleanup(&other);
}

/* Stops the pipeline early: o's status and message say why. */
static int pipeline_stop(struct pipeline_outcome *o, int status, const char *metric,
                         const char *fmt, const char *arg) {
    o->status = status;
    snprintf(o->message, sizeof(o->message), fmt, arg);
    if (metric)
        metrics_delivery(o->event, metric);
    return status;
}

int pipeline_prepare(const struct config *cfg, const char *ns, const struct pipeline_input *in,
                     struct buf *text, struct pipeline_outcome *o) {
    struct event *ev = in->ev;
    struct select_decision d;
    char err[512] = "", fit_reason[512] = "", name[NAMING_MAX + 1];
    char *affinity = NULL; /* the cluster view's placement, merged after rendering */

    memset(&d, 0, sizeof(d));
    o->event = ev->event ? ev->event : "unknown";
    o->delivery = ev->delivery;
    if (in->forced_variant >= 0) {
        d.variant = in->forced_variant;
        snprintf(d.rule, sizeof(d.rule), "manual");
        snprintf(d.reason, sizeof(d.reason), "variant %s was requested by POST /trigger",
                 select_variant_name(d.variant));
    } else {
        select_decide(cfg->rules, ev, &d);
    }
    buf_copy_str(o->rule, sizeof(o->rule), d.rule);
    if (d.variant == SELECT_SKIP) {
        buf_copy_str(o->reason, sizeof(o->reason), d.reason);
        o->status = PIPELINE_IGNORED;
        metrics_delivery(o->event, "ignored");
        return o->status;
    }
    int variant = d.variant;
    int fit = pipeline_fit(cfg, d.variant, &variant, fit_reason, sizeof(fit_reason), &affinity);
    if (fit == GPU_FIT_REJECTED) {
        buf_copy_str(o->reason, sizeof(o->reason), fit_reason);
        buf_copy_str(o->variant, sizeof(o->variant), select_variant_name(d.variant));
        o->status = PIPELINE_GPU_REJECTED;
        metrics_delivery(o->event, "gpu_rejected");
        return o->status;
    }
    if (fit_reason[0]) {
        size_t n = strlen(d.reason);
        snprintf(d.reason + n, sizeof(d.reason) - n, "%s%s", n ? " " : "", fit_reason);
    }
    d.variant = variant;
    buf_copy_str(o->variant, sizeof(o->variant), select_variant_name(d.variant));
    buf_copy_str(o->reason, sizeof(o->reason), d.reason);

    struct template_render_input ri = {
        .ev = ev,
        .decision = &d,
        .namespace = ns,
        .name_kind = in->name_kind,
        .name_key = {in->name_key[0], in->name_key[1]},
        .fingerprint = in->fingerprint,
        .overrides = in->overrides,
        .override_count = in->override_count,
    };
    int rc = template_render_json(cfg->tmpl, &ri, text, name, err, sizeof(err));
    if (rc == 0)
        rc = clusterview_place(text, affinity);
    free(affinity);
    if (rc == 0 && fit == GPU_FIT_QUEUED && d.variant == SELECT_ORIGINAL)
        pipeline_note_downgrade(cfg, &ri, text);
    if (rc == GHE_INVAL)
        return pipeline_stop(o, PIPELINE_INVALID, "invalid", "%s", err);
    if (rc)
        return pipeline_stop(o, PIPELINE_ERROR, "error", "cannot render the PipelineRun: %s",
                             ghe_strerror(rc));
    if (runcheck_names(text->data ? text->data : "", text->len, err, sizeof(err)) != 0)
        return pipeline_stop(o, PIPELINE_INVALID, "invalid", "%s", err);
    if (!ri.namespace)
        return pipeline_stop(o, PIPELINE_ERROR, NULL, "%s",
                             "the rendered PipelineRun has no namespace");
    buf_copy_str(o->name, sizeof(o->name), name);
    buf_copy_str(o->ns, sizeof(o->ns), ri.namespace);
    o->status = PIPELINE_PREVIEW;
    return o->status;
}

void pipeline_run(struct app *app, const struct config *cfg, const struct pipeline_input *in,
                  pipeline_done_fn done, void *arg) {
    struct pipeline_job *job = calloc(1, sizeof(*job));
    struct pipeline_outcome oom;
    struct buf text;

    if (!job) {
        memset(&oom, 0, sizeof(oom));
        oom.event = in->ev->event ? in->ev->event : "unknown";
        pipeline_stop(&oom, PIPELINE_ERROR, NULL, "%s", "out of memory");
        done(arg, &oom);
        return;
    }
    struct pipeline_outcome *o = &job->o;
    buf_init(&text, PIPELINE_RUN_MAX);
    if (pipeline_prepare(cfg, delivery_namespace(app->delivery), in, &text, o) !=
        PIPELINE_PREVIEW) {
        done(arg, o);
        goto out;
    }
    if (in->preview) {
        o->run = text.data;
        o->run_len = text.len;
        metrics_delivery(o->event, "dry_run");
        done(arg, o);
        goto out;
    }
    job->app = app;
    job->done = done;
    job->arg = arg;
    job->json = buf_detach(&text, &job->len);
    buf_copy_str(job->event, sizeof(job->event), o->event);
    job->delivery = in->ev->delivery ? strdup(in->ev->delivery) : NULL;
    job->hook_id = in->ev->hook_id ? strdup(in->ev->hook_id) : NULL;
    job->name_kind = in->name_kind;
    buf_copy_str(job->fingerprint, sizeof(job->fingerprint),
                 in->fingerprint ? in->fingerprint : "");
    buf_copy_str(job->request_id, sizeof(job->request_id), in->request_id ? in->request_id : "");
    o->event = job->event;
    o->delivery = job->delivery;
    pipeline_prefer_spooled(job);
    if (!job->from_spool && admission_get() &&
        admission_admit(admission_get(), in->ev, o->variant, &job->json, &job->len,
                        &o->queue_position) != 0)
        LOGGER_WARN_("admission: cannot label the run; it is created as rendered", "pipelinerun",
                     o->name);
    /* The deadline runs from the request's arrival, so time spent queued counts. */
    long deadline = cfg->kube_timeout_seconds * 1000L - (long)(clock_mono_ms() - in->start_ms);
    delivery_deliver(app->delivery, o->name, o->ns, job->json, job->len, deadline,
                     pipeline_delivered, job);
    return;
out:
    buf_cleanup(&text);
    pipeline_job_free(job);
}
