#include "gpuhook/admission.h"
#include "gpuhook/clock.h"
#include "gpuhook/clusterview.h"
#include "gpuhook/config.h"
#include "gpuhook/error.h"
#include "gpuhook/event.h"
#include "gpuhook/gpu.h"
#include "gpuhook/kube.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"
#include "gpuhook/naming.h"
#include "gpuhook/queue.h"
#include "gpuhook/select.h"
#include "gpuhook/watcher.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>

#define ADMISSION_TICK_MS 1000
/* A run admitted here but not yet seen by the watch (spooled, or the watch lags). */
#define ADMISSION_PHANTOM_MS 30000
#define ADMISSION_LOCAL_RV "0"
/*
 * A run just started has not allocated its GPU memory yet, and the probe refreshes every
 * few seconds: its need stays reserved for this long after its start.
 */
#define ADMISSION_GPU_SETTLE_MS 60000
/* A downgrade's create: retried inside this deadline, then the next decision tries again. */
#define ADMISSION_CREATE_DEADLINE_MS 10000

struct admission {
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;
    pthread_t ticker;
    bool ticking, stopping;
    struct watcher *w;
    struct kube *kube; /* posts a downgrade's copy; NULL: downgrades wait */
    cJSON *store;      /* name -> PipelineRun, as the watch last said (or as admitted here) */
    cJSON *phantoms;   /* name -> admission time (ms) of runs not yet seen by the watch */
    bool leading;
    int inflight; /* patches sent, not answered */
    char *group_tmpl;
    struct queue_variant variants[2];
    struct queue_config qc;
    bool gpu_queue;    /* gpu_fit "queue": memory holds runs back */
    bool gpu_required; /* gpu.required: no GPU seen is no memory, not "no GPU source" */
};

static struct admission *admission_current;

struct admission *admission_get(void) {
    return admission_current;
}

static const char *const admission_fields[] = {"repo_full_name", "branch", "pr_number", "event",
                                               "variant",        "ref",    "tag",       "sender",
                                               "base_branch"};

static const char *admission_field(const struct event *ev, const char *variant, size_t i) {
    switch (i) {
    case 0:
        return ev->repo_full_name;
    case 1:
        return ev->branch;
    case 2:
        return ev->pr_number;
    case 3:
        return ev->event;
    case 4:
        return variant;
    case 5:
        return ev->ref;
    case 6:
        return ev->tag;
    case 7:
        return ev->sender;
    default:
        return ev->base_branch;
    }
}

/* Renders tmpl into out; ev NULL only checks it. Returns 0 or -1 (why says). */
static int admission_group_render(const char *tmpl, const struct event *ev, const char *variant,
                                  char *out, size_t n, char *why, size_t wn) {
    size_t o = 0;
    for (const char *p = tmpl; *p;) {
        if (*p != '{') {
            if (o + 1 < n)
                out[o++] = *p;
            p++;
            continue;
        }
        const char *end = strchr(p, '}');
        if (!end) {
            snprintf(why, wn, "an unclosed { in \"%s\"", tmpl);
            return -1;
        }
        size_t len = (size_t)(end - p - 1), i;
        for (i = 0; i < sizeof(admission_fields) / sizeof(admission_fields[0]); i++)
            if (strlen(admission_fields[i]) == len && strncmp(p + 1, admission_fields[i], len) == 0)
                break;
        if (i == sizeof(admission_fields) / sizeof(admission_fields[0])) {
            snprintf(why, wn,
                     "unknown field {%.*s}: use repo_full_name, branch, pr_number, event, "
                     "variant, ref, tag, sender or base_branch",
                     (int)(len > 64 ? 64 : len), p + 1);
            return -1;
        }
        const char *v = ev ? admission_field(ev, variant, i) : "";
        for (; v && *v && o + 1 < n; v++)
            out[o++] = *v;
        p = end + 1;
    }
    if (n)
        out[o] = '\0';
    return 0;
}

int admission_group_check(const char *tmpl, char *why, size_t n) {
    char out[512];
    return admission_group_render(tmpl, NULL, NULL, out, sizeof(out), why, n);
}

/* A label value unique to the group: its readable part and a hash (FNV-1a) of all of it. */
static void admission_group_label(const char *group, char out[NAMING_MAX + 1]) {
    char v[NAMING_MAX + 1];
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)group; *p; p++)
        h = (h ^ *p) * 16777619u;
    naming_label_value(group, v);
    if (strlen(v) > 53)
        v[53] = '\0';
    size_t n = strlen(v);
    while (n && !((v[n - 1] >= 'a' && v[n - 1] <= 'z') || (v[n - 1] >= 'A' && v[n - 1] <= 'Z') ||
                  (v[n - 1] >= '0' && v[n - 1] <= '9')))
        v[--n] = '\0';
    snprintf(out, NAMING_MAX + 1, "%.53s%s%08x", v, n ? "." : "", h); /* 53 + 1 + 8 <= 63 */
}

/* ---- the store ---- */

static cJSON *admission_obj(cJSON *parent, const char *key) {
    cJSON *o = cJSON_GetObjectItemCaseSensitive(parent, key);
    if (cJSON_IsObject(o))
        return o;
    cJSON_DeleteItemFromObjectCaseSensitive(parent, key);
    return cJSON_AddObjectToObject(parent, key);
}

static void admission_set(cJSON *obj, const char *key, const char *v) {
    cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
    cJSON_AddStringToObject(obj, key, v);
}

static const char *admission_name_of(const cJSON *obj) {
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(md, "name");
    return cJSON_IsString(n) ? n->valuestring : NULL;
}

/* True when the run's Succeeded condition is True or False: it holds no slot any more. */
static bool admission_finished(const cJSON *obj) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(
                              cJSON_GetObjectItemCaseSensitive(obj, "status"), "conditions")) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(c, "type");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(c, "status");
        if (cJSON_IsString(type) && strcmp(type->valuestring, "Succeeded") == 0)
            return cJSON_IsString(st) &&
                   (strcmp(st->valuestring, "True") == 0 || strcmp(st->valuestring, "False") == 0);
    }
    return false;
}

/*
 * Keeps the watch's view of a run, or forgets it once it finished: a finished run
 * takes no slot and waits for nothing, and every decision walks the whole store, so
 * the store holds the runs that are pending or running, not the namespace's history
 * (Tekton keeps finished PipelineRuns until they are pruned).
 */
static void admission_put(struct admission *a, const cJSON *obj) {
    const char *name = admission_name_of(obj);
    cJSON *copy;
    if (name && admission_finished(obj)) {
        cJSON_DeleteItemFromObjectCaseSensitive(a->store, name);
        cJSON_DeleteItemFromObjectCaseSensitive(a->phantoms, name);
        return;
    }
    if (!name || !(copy = cJSON_Duplicate(obj, 1)))
        return;
    if (cJSON_GetObjectItemCaseSensitive(a->store, name))
        cJSON_ReplaceItemInObjectCaseSensitive(a->store, name, copy);
    else
        cJSON_AddItemToObject(a->store, name, copy);
    cJSON_DeleteItemFromObjectCaseSensitive(a->phantoms, name);
}

/* Drops runs admitted here that the watch never showed. */
static void admission_expire(struct admission *a, long long now) {
    cJSON *p = a->phantoms ? a->phantoms->child : NULL;
    while (p) {
        cJSON *next = p->next;
        if (now - (long long)p->valuedouble > ADMISSION_PHANTOM_MS) {
            cJSON_DeleteItemFromObjectCaseSensitive(a->store, p->string);
            cJSON_DeleteItemFromObjectCaseSensitive(a->phantoms, p->string);
        }
        p = next;
    }
}

/* The store as queue_decide's input; extra (may be NULL) is added. Caller frees *runs. */
static int admission_runs(struct admission *a, const cJSON *extra, struct queue_run **runs,
                          size_t *n) {
    size_t cap = (size_t)cJSON_GetArraySize(a->store) + 1, k = 0;
    struct queue_run *r = calloc(cap, sizeof(*r));
    if (!r)
        return GHE_NOMEM;
    for (const cJSON *it = a->store->child; it; it = it->next)
        if (queue_run_from_object(it, &r[k]) == 0)
            k++;
    if (extra && queue_run_from_object(extra, &r[k]) == 0)
        k++;
    *runs = r;
    *n = k;
    return 0;
}

/* ---- the GPU figure ---- */

/*
 * The free memory the fit check judges by: the cluster view when it has data, else the
 * local probe. Without gpu_fit "queue", or with no GPU seen and gpu.required false (where
 * the fit check keeps every variant), memory never holds a run back. Lock held.
 */
static struct queue_gpu admission_gpu(const struct admission *a) {
    struct queue_gpu g = {false, 0};
    long long free_mib;
    bool seen = true;

    if (!a->gpu_queue)
        return g;
    if (!clusterview_free_mib(&free_mib)) {
        free_mib = gpu_free_mib(&seen);
        if (!seen && !a->gpu_required)
            return g;
    }
    g.known = true;
    g.free_mib = free_mib > 0 ? free_mib : 0;
    return g;
}

/* ---- the scheduler (leader only) ---- */

static void admission_decide(struct admission *a);

/* One patch on its way: counted when the API applied it. */
struct admission_patch {
    struct admission *a;
    enum queue_act kind;
    double waited;      /* START: seconds since queued-since */
    char *name, *patch; /* the sender frees them once watcher_patch returns */
    char *create;       /* DOWNGRADE: the copy to POST before the patch, or NULL */
};

static void admission_count(enum queue_act kind, double waited);

static void admission_patched(void *arg, int status, const char *body, size_t len) {
    struct admission_patch *ap = arg;
    struct admission *a = ap->a;
    if (status == 200)
        admission_count(ap->kind, ap->waited);
    free(ap->create);
    free(ap);
    pthread_mutex_lock(&a->lock);
    a->inflight--;
    if (status == 200) {
        /* The answer is the patched object: the next decision sees it before the watch does. */
        cJSON *obj = cJSON_ParseWithLength(body, len);
        if (obj)
            admission_put(a, obj);
        cJSON_Delete(obj);
    }
    pthread_mutex_unlock(&a->lock);
    if (status != 200 && status != 409)
        LOGGER_WARN_("admission: a scheduling patch failed; the next decision retries");
}

static void admission_count(enum queue_act kind, double waited) {
    switch (kind) {
    case QUEUE_ACT_START:
        metrics_queue_action("start");
        metrics_queue_waited(waited);
        break;
    case QUEUE_ACT_SUPERSEDE:
        metrics_queue_action("supersede");
        break;
    case QUEUE_ACT_CANCEL_RUNNING:
        metrics_queue_action("cancel_running");
        break;
    case QUEUE_ACT_REJECT:
        metrics_queue_action("reject");
        break;
    case QUEUE_ACT_DOWNGRADE:
        metrics_queue_action("downgrade");
        break;
    default:
        break;
    }
}

static const struct queue_run *admission_find(const struct queue_run *runs, size_t n,
                                              const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(runs[i].name, name) == 0)
            return &runs[i];
    return NULL;
}

/* The depth gauges: pending runs by variant that this plan does not start or cancel. */
static void admission_depth(const struct queue_run *runs, size_t n, const struct queue_plan *plan) {
    long depth[2] = {0, 0};
    for (size_t i = 0; i < n; i++) {
        bool acted = false;
        if (runs[i].spec != QUEUE_SPEC_PENDING || !runs[i].variant)
            continue;
        for (size_t k = 0; k < plan->count; k++)
            if (plan->actions[k].kind != QUEUE_ACT_NOTE &&
                strcmp(plan->actions[k].name, runs[i].name) == 0)
                acted = true;
        if (!acted)
            depth[strcmp(runs[i].variant, "original") == 0]++;
    }
    metrics_queue_depth_set("lite", depth[0]);
    metrics_queue_depth_set("original", depth[1]);
}

/*
 * Runs the decision with the lock held and returns the patches to send (after the lock is
 * released: watcher_patch may answer inline), names and bodies copied out of the store.
 */
static size_t admission_plan_locked(struct admission *a, struct admission_patch ***out) {
    struct queue_run *runs = NULL;
    struct queue_plan plan = {NULL, 0};
    size_t n = 0, k = 0;
    long long now = clock_wall_ms();

    *out = NULL;
    if (!a->leading || a->inflight > 0 || a->stopping || !watcher_is_leader(a->w))
        return 0;
    struct queue_gpu gpu = admission_gpu(a);
    admission_expire(a, now);
    if (admission_runs(a, NULL, &runs, &n) != 0)
        return 0;
    if (queue_decide(runs, n, &a->qc, &gpu, now, &plan) == 0 && plan.count &&
        (*out = calloc(plan.count, sizeof(**out)))) {
        admission_depth(runs, n, &plan);
        for (size_t i = 0; i < plan.count; i++) {
            const struct queue_action *act = &plan.actions[i];
            /* A note comes only when the reason's word changes (queue.c), not every tick. */
            const struct queue_run *r = admission_find(runs, n, act->name);
            if (act->kind == QUEUE_ACT_DOWNGRADE && act->create && !a->kube)
                continue;
            /* A run the watch has not shown (admitted here, or in the spool) cannot be
             * patched yet: its precondition would fail. The watch's event decides again. */
            if (r && r->resource_version && strcmp(r->resource_version, ADMISSION_LOCAL_RV) == 0)
                continue;
            struct admission_patch *ap = calloc(1, sizeof(*ap));
            if (!ap || !(ap->name = strdup(act->name)) || !(ap->patch = strdup(act->patch)) ||
                (act->create && !(ap->create = strdup(act->create)))) {
                if (ap) {
                    free(ap->name);
                    free(ap->patch);
                }
                free(ap);
                break; /* the tick decides again */
            }
            ap->a = a;
            ap->kind = act->kind;
            if (r) {
                long long since = r->queued_since_ms ? r->queued_since_ms : r->created_ms;
                ap->waited = now > since ? (double)(now - since) / 1000.0 : 0.0;
            }
            (*out)[k++] = ap;
        }
        a->inflight += (int)k;
    } else if (plan.count == 0) {
        admission_depth(runs, n, &plan);
    }
    queue_plan_cleanup(&plan);
    free(runs);
    return k;
}

static const char *admission_act_name(enum queue_act kind) {
    switch (kind) {
    case QUEUE_ACT_START:
        return "start";
    case QUEUE_ACT_DOWNGRADE:
        return "downgrade";
    case QUEUE_ACT_REJECT:
        return "reject";
    default:
        return "cancel";
    }
}

/* Sends ap's patch (leader only) and frees its name and patch; done counts it down. */
static void admission_send(struct admission_patch *ap) {
    struct admission *a = ap->a;
    char *name = ap->name, *patch = ap->patch;
    if (!watcher_is_leader(a->w)) { /* checked again before each patch */
        free(name);
        free(patch);
        admission_patched(ap, 0, "", 0);
        return;
    }
    LOGGER_INFO_("admission", "pipelinerun", name, "action", admission_act_name(ap->kind));
    /* On failure to queue, done has run already (status 0) and counted it down. */
    (void)watcher_patch(a->w, name, patch, strlen(patch), admission_patched, ap);
    free(name);
    free(patch);
}

/*
 * A downgrade's copy was posted (on the API client's thread). Created, or there already
 * (a repeat after a lost answer): the copy is held like an admitted run until the watch
 * shows it, and the original is cancelled. Else nothing is cancelled; the next decision
 * posts the copy again.
 */
static void admission_created(void *arg, const struct kube_result *r) {
    struct admission_patch *ap = arg;
    struct admission *a = ap->a;
    if (r->answer != KUBE_ANSWER_CREATED && r->answer != KUBE_ANSWER_EXISTS) {
        char status[16];
        snprintf(status, sizeof(status), "%d", r->status);
        LOGGER_WARN_("admission: a downgrade's copy was not created; the next decision retries",
                     "pipelinerun", ap->name, "status", status, "reason", r->reason);
        free(ap->name);
        free(ap->patch);
        admission_patched(ap, 0, "", 0);
        return;
    }
    cJSON *copy = cJSON_Parse(ap->create);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(copy, "metadata");
    const char *cname = admission_name_of(copy);
    if (md && cname && r->answer == KUBE_ANSWER_CREATED) {
        char ts[CLOCK_RFC3339_MAX];
        long long now = clock_wall_ms();
        admission_set(md, "resourceVersion", ADMISSION_LOCAL_RV);
        admission_set(md, "creationTimestamp", clock_rfc3339(now, ts));
        pthread_mutex_lock(&a->lock);
        if (!cJSON_GetObjectItemCaseSensitive(a->store, cname)) {
            admission_put(a, copy);
            cJSON_AddNumberToObject(a->phantoms, cname, (double)now);
        }
        pthread_mutex_unlock(&a->lock);
    }
    cJSON_Delete(copy);
    admission_send(ap);
}

/* Decides and sends; without the lock. Only while this replica holds the Lease. */
static void admission_decide(struct admission *a) {
    struct admission_patch **aps = NULL;
    pthread_mutex_lock(&a->lock);
    size_t k = admission_plan_locked(a, &aps);
    pthread_mutex_unlock(&a->lock);
    for (size_t i = 0; i < k; i++) {
        struct admission_patch *ap = aps[i];
        if (ap->create && watcher_is_leader(a->w)) {
            /* The copy first: a crash before the cancel leaves both, and the next decision
             * only cancels (queue.c's finish_downgrades). */
            LOGGER_INFO_("admission", "pipelinerun", ap->name, "action", "downgrade-create");
            (void)kube_create_async(a->kube, kube_namespace(a->kube), ap->create,
                                    strlen(ap->create), ADMISSION_CREATE_DEADLINE_MS,
                                    admission_created, ap);
            continue;
        }
        admission_send(ap);
    }
    free(aps);
}

static void admission_on_event(void *arg, enum watcher_event ev, const cJSON *obj) {
    struct admission *a = arg;
    pthread_mutex_lock(&a->lock);
    if (ev == WATCHER_DELETED) {
        const char *name = admission_name_of(obj);
        if (name)
            cJSON_DeleteItemFromObjectCaseSensitive(a->store, name);
    } else if (ev != WATCHER_RESYNCED) {
        admission_put(a, obj);
    }
    pthread_mutex_unlock(&a->lock);
    if (ev == WATCHER_RESYNCED || ev == WATCHER_MODIFIED || ev == WATCHER_ADDED ||
        ev == WATCHER_DELETED)
        admission_decide(a);
}

static void admission_on_leadership(void *arg, bool leading) {
    struct admission *a = arg;
    pthread_mutex_lock(&a->lock);
    a->leading = leading;
    pthread_mutex_unlock(&a->lock);
    metrics_queue_leader_set(leading);
    LOGGER_INFO_("admission", "leading", leading ? "true" : "false");
    if (leading)
        admission_decide(a);
}

/* The tick: a patch that got no answer, a phantom that expired. */
static void *admission_tick(void *arg) {
    struct admission *a = arg;
    pthread_mutex_lock(&a->lock);
    while (!a->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += ADMISSION_TICK_MS / 1000;
        pthread_cond_timedwait(&a->wake, &a->lock, &ts);
        if (a->stopping)
            break;
        pthread_mutex_unlock(&a->lock);
        admission_decide(a);
        pthread_mutex_lock(&a->lock);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

void admission_set_fit(struct admission *a, const struct config *cfg) {
    if (!a)
        return;
    const struct gpu_fit_policy *p = select_rules_gpu_fit(cfg->rules);
    pthread_mutex_lock(&a->lock);
    a->gpu_queue = p->on_insufficient == GPU_FIT_QUEUE;
    a->gpu_required = cfg->gpu.required;
    a->variants[0].need_mib = p->lite_min_free_mib;
    a->variants[1].need_mib = p->original_min_free_mib;
    a->qc.max_wait_ms = a->gpu_queue ? p->max_wait_seconds * 1000LL : 0;
    a->qc.fallback = a->qc.max_wait_ms <= 0                    ? QUEUE_FALLBACK_NONE
                     : p->on_timeout == GPU_FIT_TIMEOUT_REJECT ? QUEUE_FALLBACK_REJECT
                                                               : QUEUE_FALLBACK_DOWNGRADE;
    a->qc.downgrade_to = "lite";
    a->qc.gpu_settle_ms = ADMISSION_GPU_SETTLE_MS;
    pthread_mutex_unlock(&a->lock);
    /* The next tick decides with the new figures. */
}

bool admission_queues_gpu(struct admission *a) {
    if (!a)
        return false;
    pthread_mutex_lock(&a->lock);
    bool q = a->gpu_queue;
    pthread_mutex_unlock(&a->lock);
    return q;
}

int admission_new(const struct config *cfg, struct watcher *w, struct kube *k,
                  struct admission **out) {
    struct admission *a = calloc(1, sizeof(*a));

    *out = NULL;
    if (!a)
        return GHE_NOMEM;
    pthread_mutex_init(&a->lock, NULL);
    pthread_cond_init(&a->wake, NULL);
    a->w = w;
    a->kube = k;
    a->store = cJSON_CreateObject();
    a->phantoms = cJSON_CreateObject();
    a->group_tmpl = strdup(cfg->concurrency_group ? cfg->concurrency_group : "");
    a->variants[0] =
        (struct queue_variant){"lite", (int)cfg->concurrency_max_running_lite, 0, NULL};
    a->variants[1] =
        (struct queue_variant){"original", (int)cfg->concurrency_max_running_original, 0, NULL};
    a->qc.variants = a->variants;
    a->qc.nvariants = 2;
    a->qc.cancel_pending = cfg->concurrency_cancel_pending || cfg->concurrency_cancel_running;
    a->qc.cancel_running = cfg->concurrency_cancel_running;
    a->qc.fallback = QUEUE_FALLBACK_NONE;
    admission_set_fit(a, cfg);
    if (!a->store || !a->phantoms || !a->group_tmpl ||
        watcher_subscribe(w, admission_on_event, admission_on_leadership, a) != 0) {
        admission_free(a);
        return GHE_NOMEM;
    }
    if (pthread_create(&a->ticker, NULL, admission_tick, a) != 0) {
        admission_free(a);
        return GHE_NOMEM;
    }
    a->ticking = true;
    admission_current = a;
    *out = a;
    return 0;
}

void admission_free(struct admission *a) {
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_signal(&a->wake);
    pthread_mutex_unlock(&a->lock);
    if (a->ticking)
        pthread_join(a->ticker, NULL);
    if (admission_current == a)
        admission_current = NULL;
    cJSON_Delete(a->store);
    cJSON_Delete(a->phantoms);
    free(a->group_tmpl);
    pthread_cond_destroy(&a->wake);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* ---- admission at delivery time ---- */

/*
 * The run's position in its group's queue, from the view, and why it waits (into why, ""
 * when not waiting); 0 when not waiting.
 */
static int admission_position(const char *view, const char *name, char *why, size_t n) {
    cJSON *v = cJSON_Parse(view);
    int pos = 0;
    const cJSON *g, *w;
    why[0] = '\0';
    cJSON_ArrayForEach(g, cJSON_GetObjectItemCaseSensitive(v, "groups")) {
        cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(g, "waiting")) {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(w, "name");
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(w, "position");
            const cJSON *r = cJSON_GetObjectItemCaseSensitive(w, "waiting_for");
            if (!cJSON_IsString(nm) || strcmp(nm->valuestring, name) != 0 || !cJSON_IsNumber(p))
                continue;
            pos = p->valueint;
            if (cJSON_IsString(r))
                snprintf(why, n, "%s", r->valuestring);
        }
    }
    cJSON_Delete(v);
    return pos;
}

/* waiting-for as a person reads it: for the GPU, the numbers the fit check gives. */
static void admission_waiting_for(const struct admission *a, const char *variant,
                                  const struct queue_gpu *gpu, char *why, size_t n) {
    if (strcmp(why, "gpu") != 0)
        return;
    long long need = 0;
    for (size_t i = 0; i < a->qc.nvariants; i++)
        if (strcmp(a->variants[i].name, variant) == 0)
            need = a->variants[i].need_mib;
    if (need > gpu->free_mib)
        snprintf(why, n, "gpu: %s needs %lld MiB, %lld MiB free on the best GPU", variant, need,
                 gpu->free_mib);
    else /* queue.c reserved the memory of runs that started moments ago */
        snprintf(why, n,
                 "gpu: %s needs %lld MiB of the %lld MiB free on the best GPU, but runs started "
                 "in the last %llds have not taken theirs yet",
                 variant, need, gpu->free_mib, a->qc.gpu_settle_ms / 1000);
}

int admission_admit(struct admission *a, const struct event *ev, const char *variant, char **json,
                    size_t *len, int *position) {
    char group[512], label[NAMING_MAX + 1], why[256], ts[CLOCK_RFC3339_MAX];
    long long now = clock_wall_ms();
    struct queue_run *runs = NULL;
    struct queue_plan plan = {NULL, 0};
    struct queue_gpu gpu = {false, 0};
    size_t n = 0;
    char *view = NULL, wait_why[256] = "";
    bool starts = false;
    int rc = GHE_NOMEM;

    *position = 0;
    cJSON *pr = cJSON_ParseWithLength(*json, *len);
    const char *name = pr ? admission_name_of(pr) : NULL;
    if (!name) {
        cJSON_Delete(pr);
        return GHE_INVAL;
    }
    if (admission_group_render(a->group_tmpl, ev, variant, group, sizeof(group), why,
                               sizeof(why)) != 0) {
        cJSON_Delete(pr);
        return GHE_INVAL;
    }
    admission_group_label(group, label);
    cJSON *md = admission_obj(pr, "metadata");
    cJSON *labels = admission_obj(md, "labels"), *notes = admission_obj(md, "annotations");
    cJSON *spec = admission_obj(pr, "spec");
    admission_set(labels, ADMISSION_LABEL_MANAGED_BY, "gpuhook");
    admission_set(labels, QUEUE_LABEL_VARIANT, variant);
    admission_set(labels, QUEUE_LABEL_GROUP, label);
    admission_set(notes, ADMISSION_NOTE_GROUP, group);
    admission_set(notes, QUEUE_NOTE_QUEUED_SINCE, clock_rfc3339(now, ts));
    admission_set(spec, "status", "PipelineRunPending");

    pthread_mutex_lock(&a->lock);
    gpu = admission_gpu(a);
    bool known = cJSON_GetObjectItemCaseSensitive(a->store, name) != NULL;
    /* The candidate as the store would hold it: the decision sees it with the others. */
    cJSON *cand = cJSON_Duplicate(pr, 1);
    cJSON *cmd = cand ? cJSON_GetObjectItemCaseSensitive(cand, "metadata") : NULL;
    if (cmd) {
        admission_set(cmd, "resourceVersion", ADMISSION_LOCAL_RV);
        admission_set(cmd, "creationTimestamp", ts);
    }
    if (cmd && admission_runs(a, known ? NULL : cand, &runs, &n) == 0 &&
        queue_decide(runs, n, &a->qc, &gpu, now, &plan) == 0) {
        for (size_t i = 0; i < plan.count; i++)
            if (plan.actions[i].kind == QUEUE_ACT_START && strcmp(plan.actions[i].name, name) == 0)
                starts = true;
        if (!starts && queue_view_json(runs, n, &a->qc, &gpu, now, &view) == 0)
            *position = admission_position(view, name, wait_why, sizeof(wait_why));
        rc = 0;
    }
    if (rc == 0 && starts) {
        cJSON_DeleteItemFromObjectCaseSensitive(spec, "status");
        admission_set(notes, QUEUE_NOTE_STARTED_AT, ts);
        admission_set(notes, QUEUE_NOTE_WAITED, "0s for nothing");
        cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(cand, "spec"),
                                                "status");
        admission_set(cJSON_GetObjectItemCaseSensitive(cmd, "annotations"), QUEUE_NOTE_STARTED_AT,
                      ts);
    } else if (rc == 0) {
        if (*position == 0)
            *position = 1;
        if (wait_why[0]) {
            admission_waiting_for(a, variant, &gpu, wait_why, sizeof(wait_why));
            admission_set(notes, QUEUE_NOTE_WAITING_FOR, wait_why);
            admission_set(admission_obj(cmd, "annotations"), QUEUE_NOTE_WAITING_FOR, wait_why);
        }
    }
    if (rc == 0 && !known) {
        /* Held until the watch shows it, so that two deliveries never take one slot. */
        admission_put(a, cand);
        cJSON_AddNumberToObject(a->phantoms, name, (double)now);
    }
    pthread_mutex_unlock(&a->lock);
    queue_plan_cleanup(&plan);
    free(runs);
    free(view);
    cJSON_Delete(cand);
    if (rc == 0) {
        char *text = cJSON_PrintUnformatted(pr);
        if (!text) {
            rc = GHE_NOMEM;
        } else {
            free(*json);
            *json = text;
            *len = strlen(text);
            if (*position)
                metrics_queue_action("queued");
        }
    }
    cJSON_Delete(pr);
    return rc;
}

int admission_view_json(struct admission *a, char **json) {
    struct queue_run *runs = NULL;
    size_t n = 0;
    int rc;

    *json = NULL;
    pthread_mutex_lock(&a->lock);
    struct queue_gpu gpu = admission_gpu(a);
    rc = admission_runs(a, NULL, &runs, &n);
    if (rc == 0)
        rc = queue_view_json(runs, n, &a->qc, &gpu, clock_wall_ms(), json);
    pthread_mutex_unlock(&a->lock);
    free(runs);
    return rc;
}

int admission_spool_pending(struct admission *a, const char *name, const char *json, size_t len,
                            char **out, size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (!a || !name)
        return GHE_INVAL;
    cJSON *pr = cJSON_ParseWithLength(json, len);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(pr, "metadata");
    cJSON *notes = cJSON_GetObjectItemCaseSensitive(md, "annotations");
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(pr, "spec");
    int rc = GHE_INVAL;
    /* Only a run this queue admitted and decided to start: the others are pending already. */
    if (!cJSON_IsObject(spec) ||
        !cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_QUEUED_SINCE) ||
        !cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_STARTED_AT))
        goto out;
    rc = GHE_NOMEM;
    cJSON_DeleteItemFromObjectCaseSensitive(notes, QUEUE_NOTE_STARTED_AT);
    cJSON_DeleteItemFromObjectCaseSensitive(notes, QUEUE_NOTE_WAITED);
    admission_set(spec, "status", "PipelineRunPending");
    if (!(*out = cJSON_PrintUnformatted(pr)))
        goto out;
    *out_len = strlen(*out);
    /* The slot its start took in this replica's view is given back. */
    pthread_mutex_lock(&a->lock);
    cJSON *held = cJSON_GetObjectItemCaseSensitive(a->store, name);
    cJSON *hmd = cJSON_GetObjectItemCaseSensitive(held, "metadata");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(hmd, "resourceVersion");
    if (cJSON_IsString(rv) && strcmp(rv->valuestring, ADMISSION_LOCAL_RV) == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(hmd, "annotations"), QUEUE_NOTE_STARTED_AT);
        admission_set(admission_obj(held, "spec"), "status", "PipelineRunPending");
    }
    pthread_mutex_unlock(&a->lock);
    rc = 0;
out:
    cJSON_Delete(pr);
    return rc;
}
