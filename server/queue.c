/*
 * The admission queue's decisions. Everything the scheduler knows is in the
 * runs themselves (labels, annotations, spec.status, the Succeeded
 * condition), so a restarted or newly elected scheduler continues where the
 * last one stopped: there is no state here to lose.
 */
#include "gpuhook/queue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/clock.h"
#include "gpuhook/error.h"
#include "gpuhook/lease.h"

#define WHY_SLOT "max_running"
#define WHY_GPU "gpu"
#define WHY_FIFO "fifo"

/* What the scheduler made of one run. */
struct slot {
    const struct queue_run *r;
    int variant; /* index into cfg->variants, or -1 */
    bool running, waiting;
    bool acted;      /* an action removes it from the queue (or starts it) */
    int act;         /* index into the plan, or -1 */
    const char *why; /* WHY_*: why it still waits */
    int start_round; /* the admission round that started it, 0 for none */
    int variant_now; /* after a downgrade */
};

struct state {
    struct slot *slots;
    size_t n;
    int *running; /* per configured variant */
    long long free_mib;
    size_t *order; /* waiting slots in (created, name) order */
    size_t nwaiting;
};

static int variant_index(const struct queue_config *cfg, const char *name) {
    if (!name)
        return -1;
    for (size_t i = 0; i < cfg->nvariants; i++)
        if (strcmp(cfg->variants[i].name, name) == 0)
            return (int)i;
    return -1;
}

static bool finished(const struct queue_run *r) {
    return r->succeeded == QUEUE_COND_TRUE || r->succeeded == QUEUE_COND_FALSE;
}

/* A downgrade's copy keeps the original's queued-since, and so its place. */
static long long age_of(const struct queue_run *r) {
    return r->queued_since_ms ? r->queued_since_ms : r->created_ms;
}

static int older(const struct queue_run *a, const struct queue_run *b) {
    if (age_of(a) != age_of(b))
        return age_of(a) < age_of(b) ? -1 : 1;
    return strcmp(a->name, b->name);
}

static const char *group_of(const struct queue_run *r) {
    return r->group && r->group[0] ? r->group : NULL;
}

static bool same_group(const struct queue_run *a, const struct queue_run *b) {
    const char *ga = group_of(a), *gb = group_of(b);
    if (!ga || !gb)
        return a == b;
    return strcmp(ga, gb) == 0;
}

/* ---- Patches ---- */

static cJSON *patch_new(const struct queue_run *r, cJSON **annotations) {
    cJSON *p = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(p, "metadata");
    if (md && r->resource_version)
        cJSON_AddStringToObject(md, "resourceVersion", r->resource_version);
    *annotations = cJSON_AddObjectToObject(md, "annotations");
    if (!*annotations) {
        cJSON_Delete(p);
        return NULL;
    }
    return p;
}

static cJSON *spec_of(cJSON *p) {
    cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "spec");
    return s ? s : cJSON_AddObjectToObject(p, "spec");
}

/* The annotations a start writes: when, and what it waited for and how long. */
static void note_start(cJSON *notes, cJSON *p, const struct queue_run *r, long long now_ms) {
    char ts[CLOCK_RFC3339_MAX], waited[160];
    cJSON_AddStringToObject(notes, QUEUE_NOTE_STARTED_AT, clock_rfc3339(now_ms, ts));
    long long since = r->queued_since_ms ? r->queued_since_ms : r->created_ms;
    long long secs = now_ms > since ? (now_ms - since) / 1000 : 0;
    snprintf(waited, sizeof(waited), "%llds for %s", secs,
             r->waiting_for && r->waiting_for[0] ? r->waiting_for : "nothing");
    cJSON_AddStringToObject(notes, QUEUE_NOTE_WAITED, waited);
    cJSON_AddNullToObject(notes, QUEUE_NOTE_WAITING_FOR);
    cJSON_AddNullToObject(spec_of(p), "status");
}

struct builder {
    struct queue_plan *plan;
    size_t cap;
    int rc;
};

static int plan_add(struct builder *b, enum queue_act kind, const struct queue_run *r, bool starts,
                    cJSON *patch) {
    char *text = patch ? cJSON_PrintUnformatted(patch) : NULL;
    cJSON_Delete(patch);
    if (!text) {
        b->rc = GHE_NOMEM;
        return -1;
    }
    if (b->plan->count == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 8;
        struct queue_action *a = realloc(b->plan->actions, cap * sizeof(*a));
        if (!a) {
            free(text);
            b->rc = GHE_NOMEM;
            return -1;
        }
        b->plan->actions = a;
        b->cap = cap;
    }
    struct queue_action *a = &b->plan->actions[b->plan->count];
    a->kind = kind;
    a->name = r->name;
    a->starts = starts;
    a->patch = text;
    a->create = NULL;
    return (int)b->plan->count++;
}

static void act_start(struct builder *b, struct slot *s, long long now_ms) {
    cJSON *notes;
    cJSON *p = patch_new(s->r, &notes);
    if (p)
        note_start(notes, p, s->r, now_ms);
    s->act = plan_add(b, QUEUE_ACT_START, s->r, true, p);
    s->acted = true;
}

static void act_cancel(struct builder *b, struct slot *s, enum queue_act kind, const char *status,
                       const char *note, const char *value) {
    cJSON *notes;
    cJSON *p = patch_new(s->r, &notes);
    if (p) {
        cJSON_AddStringToObject(notes, note, value);
        if (kind != QUEUE_ACT_CANCEL_RUNNING)
            cJSON_AddNullToObject(notes, QUEUE_NOTE_WAITING_FOR);
        cJSON_AddStringToObject(spec_of(p), "status", status);
    }
    s->act = plan_add(b, kind, s->r, false, p);
    s->acted = true;
}

/* ---- The decision ---- */

static void state_cleanup(struct state *st) {
    free(st->slots);
    free(st->running);
    free(st->order);
    memset(st, 0, sizeof(*st));
}

static struct state *sort_state; /* qsort has no context argument in C11 */
static int cmp_order(const void *a, const void *b) {
    const struct slot *x = &sort_state->slots[*(const size_t *)a];
    const struct slot *y = &sort_state->slots[*(const size_t *)b];
    return older(x->r, y->r);
}

static int classify(struct state *st, const struct queue_run *runs, size_t n,
                    const struct queue_config *cfg, const struct queue_gpu *gpu, long long now_ms) {
    st->n = n;
    st->slots = calloc(n ? n : 1, sizeof(*st->slots));
    st->running = calloc(cfg->nvariants ? cfg->nvariants : 1, sizeof(*st->running));
    st->order = calloc(n ? n : 1, sizeof(*st->order));
    if (!st->slots || !st->running || !st->order)
        return GHE_NOMEM;
    long long reserved = 0;
    for (size_t i = 0; i < n; i++) {
        struct slot *s = &st->slots[i];
        const struct queue_run *r = &runs[i];
        s->r = r;
        s->act = -1;
        s->variant = s->variant_now = variant_index(cfg, r->variant);
        if (finished(r))
            continue;
        /* A queued run cancelled before it started never ran; spec none is running. */
        bool never_started = r->queued_since_ms > 0 && r->started_ms == 0;
        if (r->spec == QUEUE_SPEC_PENDING)
            s->waiting = true;
        else if (r->spec == QUEUE_SPEC_NONE || !never_started)
            s->running = true;
        if (s->running && s->variant >= 0) {
            st->running[s->variant]++;
            if (r->started_ms > 0 && now_ms - r->started_ms < cfg->gpu_settle_ms)
                reserved += cfg->variants[s->variant].need_mib;
        }
        if (s->waiting)
            st->order[st->nwaiting++] = i;
    }
    st->free_mib = gpu && gpu->known ? gpu->free_mib - reserved : 0;
    sort_state = st;
    qsort(st->order, st->nwaiting, sizeof(*st->order), cmp_order);
    sort_state = NULL;
    return 0;
}

/* The newest run of r's group (any state), by creation time then name. */
static const struct queue_run *newest_of_group(const struct state *st, const struct queue_run *r) {
    const struct queue_run *best = r;
    for (size_t i = 0; i < st->n; i++) {
        const struct queue_run *o = st->slots[i].r;
        if (same_group(o, r) && older(best, o) < 0)
            best = o;
    }
    return best;
}

static void supersede(struct state *st, const struct queue_config *cfg, struct builder *b) {
    if (!cfg->cancel_pending && !cfg->cancel_running)
        return;
    for (size_t i = 0; i < st->n && b->rc == 0; i++) {
        struct slot *s = &st->slots[i];
        if (s->acted || !group_of(s->r) || (!s->waiting && !s->running))
            continue;
        const struct queue_run *newest = newest_of_group(st, s->r);
        if (newest == s->r)
            continue;
        /* cancel_running implies cancel_pending: a run started now would be cancelled next. */
        if (s->waiting && (cfg->cancel_pending || cfg->cancel_running)) {
            act_cancel(b, s, QUEUE_ACT_SUPERSEDE, "Cancelled", QUEUE_NOTE_SUPERSEDED_BY,
                       newest->name);
        } else if (s->running && cfg->cancel_running && s->r->spec == QUEUE_SPEC_NONE) {
            /* It still holds its slot until Tekton finishes it: the count stays. */
            act_cancel(b, s, QUEUE_ACT_CANCEL_RUNNING, "CancelledRunFinally",
                       QUEUE_NOTE_SUPERSEDED_BY, newest->name);
        }
    }
}

/* Whether variant v may start now: a slot, and the memory. Returns NULL or why not. */
static const char *blocker(const struct state *st, const struct queue_config *cfg,
                           const struct queue_gpu *gpu, int v) {
    if (v < 0)
        return NULL; /* a variant the config does not know is not capped */
    const struct queue_variant *qv = &cfg->variants[v];
    if (qv->max_running > 0 && st->running[v] >= qv->max_running)
        return WHY_SLOT;
    if (gpu && gpu->known && qv->need_mib > st->free_mib)
        return WHY_GPU;
    return NULL;
}

static void take(struct state *st, const struct queue_config *cfg, int v) {
    if (v < 0)
        return;
    st->running[v]++;
    st->free_mib -= cfg->variants[v].need_mib;
}

/*
 * Round robin over the groups: each round offers every unblocked group's head
 * once, oldest head first. A head that cannot start blocks its group for the
 * rest of this pass (FIFO), not the other groups.
 */
static void admit(struct state *st, const struct queue_config *cfg, const struct queue_gpu *gpu,
                  long long now_ms, struct builder *b) {
    for (int round = 1; b->rc == 0; round++) {
        bool progress = false;
        for (size_t k = 0; k < st->nwaiting && b->rc == 0; k++) {
            struct slot *s = &st->slots[st->order[k]];
            if (s->acted || s->why)
                continue;
            bool head = true;
            for (size_t j = 0; j < k && head; j++) {
                const struct slot *o = &st->slots[st->order[j]];
                if (!same_group(o->r, s->r))
                    continue;
                /* An older run of its group still waits, or the group had its turn. */
                if (!o->acted || o->start_round == round)
                    head = false;
            }
            if (!head)
                continue;
            const char *why = blocker(st, cfg, gpu, s->variant);
            if (why) {
                s->why = why;
                continue;
            }
            take(st, cfg, s->variant);
            act_start(b, s, now_ms);
            s->start_round = round;
            progress = true;
        }
        if (!progress)
            break;
    }
    for (size_t k = 0; k < st->nwaiting; k++) {
        struct slot *s = &st->slots[st->order[k]];
        if (!s->acted && !s->why)
            s->why = WHY_FIFO;
    }
}

/* The copy's name: the original's, cut to leave room for "-<variant>" within 63. */
static void copy_name(char *out, size_t size, const char *name, const char *variant) {
    char base[64];
    size_t room = 63 - 1 - strlen(variant);
    if (strlen(variant) > 20)
        room = 63 - 21;
    snprintf(base, sizeof(base), "%.*s", (int)room, name);
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '-')
        base[--n] = '\0';
    snprintf(out, size, "%s-%.20s", base, variant);
}

/* The Pipeline of variant t for r: the one rendered for r, else the config's (may be NULL). */
static const char *pipeline_of(const struct queue_run *r, const struct queue_config *cfg, int t) {
    return r->downgrade_pipeline && r->downgrade_pipeline[0] ? r->downgrade_pipeline
                                                             : cfg->variants[t].pipeline;
}

/* The PipelineRun to create in place of s: its spec with the smaller variant's Pipeline. */
static cJSON *downgrade_copy(const struct slot *s, const struct queue_config *cfg, int t,
                             const char *why, long long now_ms, char *name, size_t name_size) {
    static const char *const drop[] = {
        "resourceVersion", "uid",          "creationTimestamp", "generation", "managedFields",
        "selfLink",        "generateName", "ownerReferences",   "finalizers"};
    cJSON *obj = cJSON_Duplicate(s->r->object, 1);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
    if (!cJSON_IsObject(md) || !cJSON_IsObject(spec)) {
        cJSON_Delete(obj);
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        cJSON_DeleteItemFromObjectCaseSensitive(md, drop[i]);
    copy_name(name, name_size, s->r->name, cfg->variants[t].name);
    cJSON_DeleteItemFromObjectCaseSensitive(md, "name");
    cJSON_AddStringToObject(md, "name", name);
    cJSON *labels = cJSON_GetObjectItemCaseSensitive(md, "labels");
    if (!labels)
        labels = cJSON_AddObjectToObject(md, "labels");
    cJSON *notes = cJSON_GetObjectItemCaseSensitive(md, "annotations");
    if (!notes)
        notes = cJSON_AddObjectToObject(md, "annotations");
    cJSON_DeleteItemFromObjectCaseSensitive(labels, QUEUE_LABEL_VARIANT);
    cJSON_AddStringToObject(labels, QUEUE_LABEL_VARIANT, cfg->variants[t].name);
    cJSON_DeleteItemFromObjectCaseSensitive(notes, QUEUE_NOTE_DOWNGRADED_FROM);
    cJSON_AddStringToObject(notes, QUEUE_NOTE_DOWNGRADED_FROM, s->r->name);
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "pipelineRef");
    cJSON *ref = cJSON_AddObjectToObject(spec, "pipelineRef");
    cJSON_AddStringToObject(ref, "name", pipeline_of(s->r, cfg, t));
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "status");
    cJSON_DeleteItemFromObjectCaseSensitive(notes, QUEUE_NOTE_WAITING_FOR);
    if (why) {
        cJSON_AddStringToObject(spec, "status", "PipelineRunPending");
        cJSON_AddStringToObject(notes, QUEUE_NOTE_WAITING_FOR, why);
    } else {
        char ts[CLOCK_RFC3339_MAX], waited[160];
        long long since = s->r->queued_since_ms ? s->r->queued_since_ms : s->r->created_ms;
        cJSON_DeleteItemFromObjectCaseSensitive(notes, QUEUE_NOTE_STARTED_AT);
        cJSON_DeleteItemFromObjectCaseSensitive(notes, QUEUE_NOTE_WAITED);
        cJSON_AddStringToObject(notes, QUEUE_NOTE_STARTED_AT, clock_rfc3339(now_ms, ts));
        snprintf(waited, sizeof(waited), "%llds for gpu", (now_ms - since) / 1000);
        cJSON_AddStringToObject(notes, QUEUE_NOTE_WAITED, waited);
    }
    if (!ref || !cJSON_GetObjectItemCaseSensitive(md, "name")) {
        cJSON_Delete(obj);
        return NULL;
    }
    return obj;
}

/* Whether a copy of s made by an earlier downgrade exists already. */
static bool has_copy(const struct state *st, const struct slot *s) {
    for (size_t i = 0; i < st->n; i++) {
        const char *from = st->slots[i].r->downgraded_from;
        if (from && strcmp(from, s->r->name) == 0)
            return true;
    }
    return false;
}

static void downgrade(struct state *st, const struct queue_config *cfg, const struct queue_gpu *gpu,
                      struct slot *s, int t, long long now_ms, struct builder *b) {
    char name[64] = "";
    cJSON *copy = NULL;
    const char *why = NULL;
    if (!has_copy(st, s)) {
        if (!s->r->object)
            return; /* nothing to copy from: it keeps waiting */
        why = blocker(st, cfg, gpu, t);
        copy = downgrade_copy(s, cfg, t, why, now_ms, name, sizeof(name));
        if (!copy) {
            b->rc = GHE_NOMEM;
            return;
        }
        if (!why)
            take(st, cfg, t);
    }
    char *create = copy ? cJSON_PrintUnformatted(copy) : NULL;
    cJSON_Delete(copy);
    if (name[0] && !create) {
        b->rc = GHE_NOMEM;
        return;
    }
    cJSON *notes;
    cJSON *p = patch_new(s->r, &notes);
    if (p) {
        cJSON_AddStringToObject(notes, QUEUE_NOTE_DOWNGRADED_TO, cfg->variants[t].name);
        cJSON_AddNullToObject(notes, QUEUE_NOTE_WAITING_FOR);
        cJSON_AddStringToObject(spec_of(p), "status", "Cancelled");
    }
    s->act = plan_add(b, QUEUE_ACT_DOWNGRADE, s->r, false, p);
    s->acted = true;
    if (s->act >= 0)
        b->plan->actions[s->act].create = create;
    else
        free(create);
}

static void fall_back(struct state *st, const struct queue_config *cfg, const struct queue_gpu *gpu,
                      long long now_ms, struct builder *b) {
    if (cfg->max_wait_ms <= 0 || cfg->fallback == QUEUE_FALLBACK_NONE)
        return;
    for (size_t k = 0; k < st->nwaiting && b->rc == 0; k++) {
        struct slot *s = &st->slots[st->order[k]];
        if (s->acted || !s->why || strcmp(s->why, WHY_GPU) != 0)
            continue;
        long long since = s->r->queued_since_ms ? s->r->queued_since_ms : s->r->created_ms;
        if (now_ms - since < cfg->max_wait_ms)
            continue;
        const struct queue_variant *qv = s->variant >= 0 ? &cfg->variants[s->variant] : NULL;
        if (cfg->fallback == QUEUE_FALLBACK_REJECT) {
            char why[200];
            snprintf(why, sizeof(why),
                     "waited %llds for GPU memory (needs %lld MiB, %lld MiB free); "
                     "max_wait_seconds is %lld",
                     (now_ms - since) / 1000, qv ? qv->need_mib : 0, st->free_mib,
                     cfg->max_wait_ms / 1000);
            act_cancel(b, s, QUEUE_ACT_REJECT, "Cancelled", QUEUE_NOTE_REJECTED, why);
            continue;
        }
        int t = variant_index(cfg, cfg->downgrade_to);
        if (t < 0 || t == s->variant || !pipeline_of(s->r, cfg, t))
            continue; /* nothing smaller to switch to: it keeps waiting */
        downgrade(st, cfg, gpu, s, t, now_ms, b);
    }
}

/* Whether waiting-for (as written: "gpu: original needs ...", or a bare WHY_*) says why. */
static bool same_reason(const char *written, const char *why) {
    size_t n = strlen(why);
    return written && strncmp(written, why, n) == 0 && (written[n] == '\0' || written[n] == ':');
}

/* waiting-for for a person: the reason's word, then what it is about. */
static void reason_text(const struct state *st, const struct queue_config *cfg,
                        const struct slot *s, char *out, size_t n) {
    const struct queue_variant *qv = s->variant >= 0 ? &cfg->variants[s->variant] : NULL;
    if (qv && strcmp(s->why, WHY_SLOT) == 0)
        snprintf(out, n, "%s: %d of %d %s runs are running", WHY_SLOT, st->running[s->variant],
                 qv->max_running, qv->name);
    else if (qv && strcmp(s->why, WHY_GPU) == 0)
        snprintf(out, n, "%s: %s needs %lld MiB, %lld MiB free on the best GPU", WHY_GPU, qv->name,
                 qv->need_mib, st->free_mib > 0 ? st->free_mib : 0);
    else if (strcmp(s->why, WHY_FIFO) == 0)
        snprintf(out, n, "%s: an older run of its group waits first", WHY_FIFO);
    else
        snprintf(out, n, "%s", s->why);
}

/*
 * A waiting run whose reason changed (behind its group, then for the cap, then for the
 * GPU) gets waiting-for patched. Only the reason's word is compared, not its numbers, so
 * free memory that moves does not patch the run on every decision.
 */
static void note_reasons(struct state *st, const struct queue_config *cfg, struct builder *b) {
    char text[256];
    for (size_t k = 0; k < st->nwaiting && b->rc == 0; k++) {
        struct slot *s = &st->slots[st->order[k]];
        if (s->acted || s->act >= 0 || !s->why)
            continue;
        if (same_reason(s->r->waiting_for, s->why))
            continue;
        cJSON *notes;
        cJSON *p = patch_new(s->r, &notes);
        reason_text(st, cfg, s, text, sizeof(text));
        if (p)
            cJSON_AddStringToObject(notes, QUEUE_NOTE_WAITING_FOR, text);
        s->act = plan_add(b, QUEUE_ACT_NOTE, s->r, false, p);
    }
}

/* A downgrade interrupted between its create and its cancel: finish the cancel first. */
static void finish_downgrades(struct state *st, const struct queue_config *cfg,
                              const struct queue_gpu *gpu, long long now_ms, struct builder *b) {
    for (size_t k = 0; k < st->nwaiting && b->rc == 0; k++) {
        struct slot *s = &st->slots[st->order[k]];
        int t = variant_index(cfg, cfg->downgrade_to);
        if (!s->acted && t >= 0 && has_copy(st, s))
            downgrade(st, cfg, gpu, s, t, now_ms, b);
    }
}

static int compute(const struct queue_run *runs, size_t n, const struct queue_config *cfg,
                   const struct queue_gpu *gpu, long long now_ms, struct state *st,
                   struct queue_plan *plan) {
    memset(st, 0, sizeof(*st));
    memset(plan, 0, sizeof(*plan));
    struct builder b = {plan, 0, 0};
    b.rc = classify(st, runs, n, cfg, gpu, now_ms);
    if (b.rc == 0)
        finish_downgrades(st, cfg, gpu, now_ms, &b);
    if (b.rc == 0)
        supersede(st, cfg, &b);
    if (b.rc == 0)
        admit(st, cfg, gpu, now_ms, &b);
    if (b.rc == 0)
        fall_back(st, cfg, gpu, now_ms, &b);
    if (b.rc == 0)
        note_reasons(st, cfg, &b);
    if (b.rc) {
        queue_plan_cleanup(plan);
        state_cleanup(st);
    }
    return b.rc;
}

int queue_decide(const struct queue_run *runs, size_t n, const struct queue_config *cfg,
                 const struct queue_gpu *gpu, long long now_ms, struct queue_plan *plan) {
    struct state st;
    int rc = compute(runs, n, cfg, gpu, now_ms, &st, plan);
    state_cleanup(&st);
    return rc;
}

void queue_plan_cleanup(struct queue_plan *plan) {
    for (size_t i = 0; i < plan->count; i++) {
        free(plan->actions[i].patch);
        free(plan->actions[i].create);
    }
    free(plan->actions);
    plan->actions = NULL;
    plan->count = 0;
}

/* ---- GET /queue ---- */

static cJSON *counts_object(const struct queue_config *cfg, const int *values) {
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i < cfg->nvariants; i++)
        cJSON_AddNumberToObject(o, cfg->variants[i].name, values[i]);
    return o;
}

int queue_view_json(const struct queue_run *runs, size_t n, const struct queue_config *cfg,
                    const struct queue_gpu *gpu, long long now_ms, char **json) {
    *json = NULL;
    struct state st;
    struct queue_plan plan;
    int rc = compute(runs, n, cfg, gpu, now_ms, &st, &plan);
    if (rc)
        return rc;
    rc = GHE_NOMEM;
    int *waiting = calloc(cfg->nvariants ? cfg->nvariants : 1, sizeof(*waiting));
    int *caps = calloc(cfg->nvariants ? cfg->nvariants : 1, sizeof(*caps));
    bool *shown = calloc(st.nwaiting ? st.nwaiting : 1, sizeof(*shown));
    cJSON *root = cJSON_CreateObject();
    cJSON *groups = cJSON_AddArrayToObject(root, "groups");
    if (!waiting || !caps || !shown || !groups)
        goto out;
    /* Groups in the order of their oldest waiting run; runs in FIFO order within each. */
    for (size_t k = 0; k < st.nwaiting; k++) {
        const struct slot *s = &st.slots[st.order[k]];
        if (shown[k] || s->acted)
            continue;
        cJSON *g = cJSON_CreateObject();
        cJSON_AddItemToArray(groups, g);
        const char *gname = group_of(s->r);
        if (gname)
            cJSON_AddStringToObject(g, "group", gname);
        else
            cJSON_AddNullToObject(g, "group");
        cJSON *list = cJSON_AddArrayToObject(g, "waiting");
        int position = 0;
        for (size_t j = k; j < st.nwaiting; j++) {
            const struct slot *o = &st.slots[st.order[j]];
            if (o->acted || shown[j] || !same_group(o->r, s->r))
                continue;
            shown[j] = true;
            cJSON *w = cJSON_CreateObject();
            cJSON_AddItemToArray(list, w);
            int v = o->variant_now;
            const char *variant = v >= 0 ? cfg->variants[v].name : o->r->variant;
            if (v >= 0)
                waiting[v]++;
            char ts[CLOCK_RFC3339_MAX];
            long long since = o->r->queued_since_ms ? o->r->queued_since_ms : o->r->created_ms;
            cJSON_AddStringToObject(w, "name", o->r->name);
            cJSON_AddStringToObject(w, "variant", variant ? variant : "");
            cJSON_AddNumberToObject(w, "position", ++position);
            cJSON_AddStringToObject(w, "waiting_for", o->why ? o->why : WHY_FIFO);
            cJSON_AddStringToObject(w, "queued_since", clock_rfc3339(since, ts));
            cJSON_AddNumberToObject(w, "waited_seconds",
                                    (double)(now_ms > since ? (now_ms - since) / 1000 : 0));
        }
    }
    for (size_t i = 0; i < cfg->nvariants; i++)
        caps[i] = cfg->variants[i].max_running;
    /* Running counts as they will be once the plan's starts are applied. */
    if (!cJSON_AddItemToObject(root, "running", counts_object(cfg, st.running)) ||
        !cJSON_AddItemToObject(root, "waiting", counts_object(cfg, waiting)) ||
        !cJSON_AddItemToObject(root, "max_running", counts_object(cfg, caps)))
        goto out;
    *json = cJSON_PrintUnformatted(root);
    rc = *json ? 0 : GHE_NOMEM;
out:
    cJSON_Delete(root);
    free(waiting);
    free(caps);
    free(shown);
    queue_plan_cleanup(&plan);
    state_cleanup(&st);
    return rc;
}

/* ---- From a PipelineRun object ---- */

static const char *map_str(const cJSON *map, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(map, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static long long time_ms(const char *s) {
    long long us;
    return s && lease_microtime_parse(s, &us) == 0 ? us / 1000 : 0;
}

int queue_run_from_object(const cJSON *pr, struct queue_run *r) {
    memset(r, 0, sizeof(*r));
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(pr, "metadata");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(md, "labels");
    const cJSON *notes = cJSON_GetObjectItemCaseSensitive(md, "annotations");
    r->name = map_str(md, "name");
    r->resource_version = map_str(md, "resourceVersion");
    r->created_ms = time_ms(map_str(md, "creationTimestamp"));
    if (!r->name || !r->resource_version || r->created_ms == 0)
        return GHE_INVAL;
    r->variant = map_str(labels, QUEUE_LABEL_VARIANT);
    r->group = map_str(labels, QUEUE_LABEL_GROUP);
    r->queued_since_ms = time_ms(map_str(notes, QUEUE_NOTE_QUEUED_SINCE));
    r->started_ms = time_ms(map_str(notes, QUEUE_NOTE_STARTED_AT));
    r->waiting_for = map_str(notes, QUEUE_NOTE_WAITING_FOR);
    r->downgraded_from = map_str(notes, QUEUE_NOTE_DOWNGRADED_FROM);
    r->downgrade_pipeline = map_str(notes, QUEUE_NOTE_DOWNGRADE_PIPELINE);
    r->object = pr;
    const char *spec = map_str(cJSON_GetObjectItemCaseSensitive(pr, "spec"), "status");
    static const struct {
        const char *text;
        enum queue_spec spec;
    } specs[] = {{"PipelineRunPending", QUEUE_SPEC_PENDING},
                 {"Cancelled", QUEUE_SPEC_CANCELLED},
                 {"CancelledRunFinally", QUEUE_SPEC_CANCELLED_RUN_FINALLY},
                 {"StoppedRunFinally", QUEUE_SPEC_STOPPED_RUN_FINALLY}};
    r->spec = spec ? QUEUE_SPEC_OTHER : QUEUE_SPEC_NONE;
    for (size_t i = 0; spec && i < sizeof(specs) / sizeof(specs[0]); i++)
        if (strcmp(spec, specs[i].text) == 0)
            r->spec = specs[i].spec;
    const cJSON *conds = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(pr, "status"), "conditions");
    const cJSON *c;
    cJSON_ArrayForEach(c, conds) {
        const char *type = map_str(c, "type");
        if (!type || strcmp(type, "Succeeded") != 0)
            continue;
        const char *st = map_str(c, "status");
        r->succeeded = !st                        ? QUEUE_COND_NONE
                       : strcmp(st, "True") == 0  ? QUEUE_COND_TRUE
                       : strcmp(st, "False") == 0 ? QUEUE_COND_FALSE
                                                  : QUEUE_COND_UNKNOWN;
        r->reason = map_str(c, "reason");
    }
    return 0;
}
