/*
 * Unit tests for queue.c: the admission queue's scheduler as a pure function.
 * A small model cluster applies each plan's merge patches (checking their
 * resourceVersion preconditions) and plays Tekton's part, so every rule is
 * checked over a sequence of decisions: start, complete, start the next.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/clock.h"
#include "gpuhook/error.h"
#include "gpuhook/lease.h"
#include "gpuhook/queue.h"

#define T0 1796175000000LL /* 2026-12-02T01:30:00Z */
#define MAXRUNS 64

struct trun {
    char name[64], rv[16], variant[16], group[64], waiting_for[256];
    char superseded_by[64], rejected[256], downgraded_from[64], downgraded_to[16];
    char pipeline[64], waited[64], downgrade_pipeline[64];
    enum queue_spec spec;
    enum queue_cond cond;
    long long created, queued_since, started;
    int rvn;
};

struct cluster {
    struct trun runs[MAXRUNS];
    size_t n;
    struct queue_run view[MAXRUNS];
    cJSON *objects[MAXRUNS];
};

static void cluster_cleanup(struct cluster *c) {
    for (size_t i = 0; i < MAXRUNS; i++) {
        cJSON_Delete(c->objects[i]);
        c->objects[i] = NULL;
    }
}

/* The run as the API would show it, enough for a downgrade's copy. */
static cJSON *object_of(const struct trun *r) {
    char ts[CLOCK_RFC3339_MAX], pipeline[80];
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "apiVersion", "tekton.dev/v1");
    cJSON_AddStringToObject(o, "kind", "PipelineRun");
    cJSON *md = cJSON_AddObjectToObject(o, "metadata");
    cJSON_AddStringToObject(md, "name", r->name);
    cJSON_AddStringToObject(md, "namespace", "gpu-runs");
    cJSON_AddStringToObject(md, "resourceVersion", r->rv);
    cJSON_AddStringToObject(md, "uid", "0b0e7c52-0000-4000-8000-000000000000");
    cJSON_AddStringToObject(md, "creationTimestamp", clock_rfc3339(r->created, ts));
    cJSON *labels = cJSON_AddObjectToObject(md, "labels");
    cJSON_AddStringToObject(labels, QUEUE_LABEL_VARIANT, r->variant);
    cJSON_AddStringToObject(labels, QUEUE_LABEL_GROUP, r->group);
    cJSON *notes = cJSON_AddObjectToObject(md, "annotations");
    if (r->queued_since)
        cJSON_AddStringToObject(notes, QUEUE_NOTE_QUEUED_SINCE, clock_rfc3339(r->queued_since, ts));
    if (r->waiting_for[0])
        cJSON_AddStringToObject(notes, QUEUE_NOTE_WAITING_FOR, r->waiting_for);
    if (r->downgrade_pipeline[0])
        cJSON_AddStringToObject(notes, QUEUE_NOTE_DOWNGRADE_PIPELINE, r->downgrade_pipeline);
    cJSON *spec = cJSON_AddObjectToObject(o, "spec");
    snprintf(pipeline, sizeof(pipeline), "gpu-real-8-step-workflow-%s", r->variant);
    cJSON_AddStringToObject(cJSON_AddObjectToObject(spec, "pipelineRef"), "name",
                            r->pipeline[0] ? r->pipeline : pipeline);
    if (r->spec == QUEUE_SPEC_PENDING)
        cJSON_AddStringToObject(spec, "status", "PipelineRunPending");
    cJSON_AddObjectToObject(o, "status");
    return o;
}

static const struct queue_variant VARIANTS[] = {
    {"original", 1, 8192, "gpu-real-8-step-workflow-original"},
    {"lite", 4, 4096, "gpu-real-8-step-workflow-lite"},
};

static struct queue_config base_config(void) {
    struct queue_config c = {0};
    c.variants = VARIANTS;
    c.nvariants = 2;
    c.gpu_settle_ms = 60000;
    c.downgrade_to = "lite";
    return c;
}

static const struct queue_gpu NO_GPU = {false, 0};

/* A run as gpuhook creates it: pending, queued now, waiting for a slot. */
static struct trun *add(struct cluster *c, const char *name, const char *variant, const char *group,
                        long long created, bool pending) {
    struct trun *r = &c->runs[c->n++];
    memset(r, 0, sizeof(*r));
    snprintf(r->name, sizeof(r->name), "%s", name);
    snprintf(r->variant, sizeof(r->variant), "%s", variant);
    snprintf(r->group, sizeof(r->group), "%s", group);
    r->created = created;
    r->rvn = (int)c->n;
    snprintf(r->rv, sizeof(r->rv), "%d", r->rvn);
    if (pending) {
        r->spec = QUEUE_SPEC_PENDING;
        r->queued_since = created;
        snprintf(r->waiting_for, sizeof(r->waiting_for), "max_running");
    } else {
        r->cond = QUEUE_COND_UNKNOWN;
    }
    return r;
}

static struct trun *find(struct cluster *c, const char *name) {
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->runs[i].name, name) == 0)
            return &c->runs[i];
    fail_msg("no run %s", name);
    return NULL;
}

static size_t view(struct cluster *c) {
    cluster_cleanup(c);
    for (size_t i = 0; i < c->n; i++) {
        struct trun *r = &c->runs[i];
        c->objects[i] = object_of(r);
        c->view[i] = (struct queue_run){r->name,
                                        r->rv,
                                        r->variant,
                                        r->group,
                                        r->spec,
                                        r->cond,
                                        NULL,
                                        r->created,
                                        r->queued_since,
                                        r->started,
                                        r->waiting_for[0] ? r->waiting_for : NULL,
                                        r->downgraded_from[0] ? r->downgraded_from : NULL,
                                        c->objects[i],
                                        r->downgrade_pipeline[0] ? r->downgrade_pipeline : NULL};
    }
    return c->n;
}

static void set_str(char *dst, size_t size, const cJSON *v) {
    if (cJSON_IsNull(v))
        dst[0] = '\0';
    else if (cJSON_IsString(v))
        snprintf(dst, size, "%s", v->valuestring);
}

static long long note_time(const cJSON *notes, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(notes, key);
    long long us;
    if (!cJSON_IsString(v) || lease_microtime_parse(v->valuestring, &us) != 0)
        return 0;
    return us / 1000;
}

/* POSTs a downgrade's copy: a new run, as the apiserver would store it. */
static void create(struct cluster *c, const char *body, long long now) {
    cJSON *o = cJSON_Parse(body);
    assert_non_null(o);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(o, "metadata");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(md, "name");
    assert_true(cJSON_IsString(name));
    assert_true(strlen(name->valuestring) <= 63);
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->runs[i].name, name->valuestring) == 0)
            fail_msg("create of %s: 409 AlreadyExists", name->valuestring);
    /* What the server fills in must not be sent. */
    assert_null(cJSON_GetObjectItemCaseSensitive(md, "resourceVersion"));
    assert_null(cJSON_GetObjectItemCaseSensitive(md, "uid"));
    assert_null(cJSON_GetObjectItemCaseSensitive(md, "creationTimestamp"));
    assert_null(cJSON_GetObjectItemCaseSensitive(o, "status"));
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(md, "labels");
    const cJSON *notes = cJSON_GetObjectItemCaseSensitive(md, "annotations");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(o, "spec");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(spec, "status");
    bool pending = cJSON_IsString(status);
    if (pending)
        assert_string_equal(status->valuestring, "PipelineRunPending");
    struct trun *r =
        add(c, name->valuestring,
            cJSON_GetObjectItemCaseSensitive(labels, QUEUE_LABEL_VARIANT)->valuestring,
            cJSON_GetObjectItemCaseSensitive(labels, QUEUE_LABEL_GROUP)->valuestring, now, pending);
    r->queued_since = note_time(notes, QUEUE_NOTE_QUEUED_SINCE);
    r->started = note_time(notes, QUEUE_NOTE_STARTED_AT);
    r->waiting_for[0] = '\0';
    set_str(r->waiting_for, sizeof(r->waiting_for),
            cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_WAITING_FOR));
    set_str(r->downgraded_from, sizeof(r->downgraded_from),
            cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_DOWNGRADED_FROM));
    set_str(r->waited, sizeof(r->waited),
            cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_WAITED));
    set_str(r->pipeline, sizeof(r->pipeline),
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "pipelineRef"),
                                             "name"));
    cJSON_Delete(o);
}

/* Applies one merge patch as the apiserver would, after its resourceVersion precondition. */
static void apply(struct cluster *c, const struct queue_action *a, long long now) {
    if (a->create)
        create(c, a->create, now);
    struct trun *r = find(c, a->name);
    cJSON *p = cJSON_Parse(a->patch);
    assert_non_null(p);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(p, "metadata");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
    assert_true(cJSON_IsString(rv));
    assert_string_equal(rv->valuestring, r->rv);
    cJSON *notes = cJSON_GetObjectItemCaseSensitive(md, "annotations");
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_WAITING_FOR)))
        set_str(r->waiting_for, sizeof(r->waiting_for), v);
    if ((v = cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_SUPERSEDED_BY)))
        set_str(r->superseded_by, sizeof(r->superseded_by), v);
    if ((v = cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_REJECTED)))
        set_str(r->rejected, sizeof(r->rejected), v);
    if ((v = cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_DOWNGRADED_TO)))
        set_str(r->downgraded_to, sizeof(r->downgraded_to), v);
    if ((v = cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_WAITED)))
        set_str(r->waited, sizeof(r->waited), v);
    if (cJSON_GetObjectItemCaseSensitive(notes, QUEUE_NOTE_STARTED_AT))
        r->started = now;
    v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(md, "labels"),
                                         QUEUE_LABEL_VARIANT);
    set_str(r->variant, sizeof(r->variant), v);
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(p, "spec");
    v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(spec, "pipelineRef"),
                                         "name");
    set_str(r->pipeline, sizeof(r->pipeline), v);
    v = cJSON_GetObjectItemCaseSensitive(spec, "status");
    if (cJSON_IsNull(v)) {
        r->spec = QUEUE_SPEC_NONE;
        r->cond = QUEUE_COND_UNKNOWN; /* Tekton starts it */
    } else if (cJSON_IsString(v)) {
        r->spec = strcmp(v->valuestring, "Cancelled") == 0 ? QUEUE_SPEC_CANCELLED
                                                           : QUEUE_SPEC_CANCELLED_RUN_FINALLY;
    }
    snprintf(r->rv, sizeof(r->rv), "%d", r->rvn += 100);
    cJSON_Delete(p);
}

/* Decides, checks the plan is the same when asked twice, applies it; returns its summary. */
static void step(struct cluster *c, const struct queue_config *cfg, const struct queue_gpu *gpu,
                 long long now, char *summary, size_t size) {
    static const char *const kinds[] = {"start",     "supersede", "cancel-running",
                                        "downgrade", "reject",    "note"};
    struct queue_plan p1, p2;
    size_t n = view(c);
    assert_int_equal(queue_decide(c->view, n, cfg, gpu, now, &p1), 0);
    assert_int_equal(queue_decide(c->view, n, cfg, gpu, now, &p2), 0);
    assert_int_equal(p1.count, p2.count);
    summary[0] = '\0';
    for (size_t i = 0; i < p1.count; i++) {
        assert_string_equal(p1.actions[i].patch, p2.actions[i].patch);
        if (p1.actions[i].create || p2.actions[i].create)
            assert_string_equal(p1.actions[i].create, p2.actions[i].create);
        size_t len = strlen(summary);
        snprintf(summary + len, size - len, "%s%s %s", i ? ", " : "", kinds[p1.actions[i].kind],
                 p1.actions[i].name);
    }
    for (size_t i = 0; i < p1.count; i++)
        apply(c, &p1.actions[i], now);
    queue_plan_cleanup(&p1);
    queue_plan_cleanup(&p2);
    /* The state after the actions gives none. */
    n = view(c);
    assert_int_equal(queue_decide(c->view, n, cfg, gpu, now, &p1), 0);
    if (p1.count)
        fail_msg("after applying [%s], still: %s", summary, p1.actions[0].patch);
    queue_plan_cleanup(&p1);
    cluster_cleanup(c);
}

#define EXPECT(c, cfg, gpu, now, want)                                                             \
    do {                                                                                           \
        char got_[1024];                                                                           \
        step(c, cfg, gpu, now, got_, sizeof(got_));                                                \
        assert_string_equal(got_, want);                                                           \
    } while (0)

/* Tekton finishes a run. */
static void finish(struct cluster *c, const char *name, enum queue_cond cond) {
    find(c, name)->cond = cond;
}

static int running_of(struct cluster *c, const char *variant) {
    int n = 0;
    for (size_t i = 0; i < c->n; i++) {
        struct trun *r = &c->runs[i];
        if (strcmp(r->variant, variant) == 0 && r->spec == QUEUE_SPEC_NONE &&
            r->cond == QUEUE_COND_UNKNOWN)
            n++;
    }
    return n;
}

static void test_queue_three_originals_with_max_running_one(void **state) {
    (void)state;
    struct cluster c = {0};
    struct queue_config cfg = base_config();
    add(&c, "o1", "original", "o-r-main", T0, true);
    add(&c, "o2", "original", "o-r-dev", T0 + 1000, true);
    add(&c, "o3", "original", "o-r-fix", T0 + 2000, true);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 3000, "start o1");
    assert_int_equal(running_of(&c, "original"), 1);
    assert_string_equal(find(&c, "o1")->waited, "3s for max_running");
    assert_string_equal(find(&c, "o1")->waiting_for, "");
    EXPECT(&c, &cfg, &NO_GPU, T0 + 9000, "");
    finish(&c, "o1", QUEUE_COND_TRUE);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 10000, "start o2");
    finish(&c, "o2", QUEUE_COND_FALSE);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 11000, "start o3");
    finish(&c, "o3", QUEUE_COND_TRUE);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 12000, "");
}

static void test_queue_supersession_of_three_pushes_while_one_runs(void **state) {
    (void)state;
    struct cluster c = {0};
    struct queue_config cfg = base_config();
    cfg.cancel_pending = true;
    add(&c, "p1", "original", "o-r-main", T0, false);
    add(&c, "p2", "original", "o-r-main", T0 + 1000, true);
    add(&c, "p3", "original", "o-r-main", T0 + 2000, true);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 3000, "supersede p2");
    assert_int_equal(find(&c, "p1")->spec, QUEUE_SPEC_NONE); /* never touched */
    assert_int_equal(find(&c, "p2")->spec, QUEUE_SPEC_CANCELLED);
    assert_string_equal(find(&c, "p2")->superseded_by, "p3");
    assert_int_equal(find(&c, "p3")->spec, QUEUE_SPEC_PENDING);
    /* Tekton marks the cancelled pending run finished; nothing changes for the queue. */
    finish(&c, "p2", QUEUE_COND_FALSE);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 4000, "");
    finish(&c, "p1", QUEUE_COND_TRUE);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 5000, "start p3");
}

static void test_queue_cancel_running_uses_cancelled_run_finally(void **state) {
    (void)state;
    struct cluster c = {0};
    struct queue_config cfg = base_config();
    cfg.cancel_pending = true;
    cfg.cancel_running = true;
    add(&c, "p1", "original", "o-r-main", T0, false);
    add(&c, "p2", "original", "o-r-main", T0 + 1000, true);
    add(&c, "p3", "original", "o-r-main", T0 + 2000, true);
    add(&c, "other", "original", "o-r-dev", T0 - 5000, true);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 3000, "cancel-running p1, supersede p2");
    assert_int_equal(find(&c, "p1")->spec, QUEUE_SPEC_CANCELLED_RUN_FINALLY);
    assert_string_equal(find(&c, "p1")->superseded_by, "p3");
    /* p1 holds its slot until its finally tasks are done. */
    assert_int_equal(find(&c, "p3")->spec, QUEUE_SPEC_PENDING);
    finish(&c, "p1", QUEUE_COND_FALSE);
    /* The slot goes to the oldest head: the other group's run, created first. */
    EXPECT(&c, &cfg, &NO_GPU, T0 + 4000, "start other");
    finish(&c, "other", QUEUE_COND_TRUE);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 5000, "start p3");
    /* Without cancel_pending the pending ones stay. */
    struct cluster d = {0};
    cfg.cancel_pending = false;
    cfg.cancel_running = false;
    add(&d, "p1", "original", "g", T0, false);
    add(&d, "p2", "original", "g", T0 + 1000, true);
    add(&d, "p3", "original", "g", T0 + 2000, true);
    EXPECT(&d, &cfg, &NO_GPU, T0 + 3000, "note p3");
    assert_string_equal(find(&d, "p3")->waiting_for, "fifo: an older run of its group waits first");
    /* Only the reason's word counts: the same reason again patches nothing. */
    EXPECT(&d, &cfg, &NO_GPU, T0 + 3500, "");
    finish(&d, "p1", QUEUE_COND_TRUE);
    EXPECT(&d, &cfg, &NO_GPU, T0 + 4000, "start p2, note p3");
    assert_string_equal(find(&d, "p3")->waiting_for,
                        "max_running: 1 of 1 original runs are running");
}

static void test_queue_waits_for_gpu_memory_then_starts(void **state) {
    (void)state;
    struct cluster c = {0};
    struct queue_config cfg = base_config();
    add(&c, "o1", "original", "g1", T0, true);
    struct queue_gpu short_gpu = {true, 1024};
    EXPECT(&c, &cfg, &short_gpu, T0 + 1000, "note o1");
    assert_string_equal(find(&c, "o1")->waiting_for,
                        "gpu: original needs 8192 MiB, 1024 MiB free on the best GPU");
    EXPECT(&c, &cfg, &short_gpu, T0 + 5000, "");
    /* Free memory that moves but still falls short patches nothing (no churn). */
    struct queue_gpu moved = {true, 2048};
    EXPECT(&c, &cfg, &moved, T0 + 6000, "");
    /* admission.c writes the GPU's words at delivery; they count as the same reason. */
    snprintf(find(&c, "o1")->waiting_for, sizeof(find(&c, "o1")->waiting_for), "%s",
             "gpu: original needs 8192 MiB, 999 MiB free on the best GPU");
    EXPECT(&c, &cfg, &moved, T0 + 7000, "");
    struct queue_gpu freed = {true, 80000};
    EXPECT(&c, &cfg, &freed, T0 + 9000, "start o1");
    assert_true(strncmp(find(&c, "o1")->waited, "9s for gpu: original needs 8192 MiB", 35) == 0);
}

/* Memory counts the runs started in the same pass and those still settling. */
static void test_queue_gpu_memory_is_reserved_for_runs_just_started(void **state) {
    (void)state;
    struct cluster c = {0};
    struct queue_config cfg = base_config();
    add(&c, "l1", "lite", "a", T0, true);
    add(&c, "l2", "lite", "b", T0 + 1, true);
    add(&c, "l3", "lite", "c", T0 + 2, true);
    struct queue_gpu gpu = {true, 10000};
    EXPECT(&c, &cfg, &gpu, T0 + 1000, "start l1, start l2, note l3");
    assert_true(strncmp(find(&c, "l3")->waiting_for, "gpu: lite needs 4096 MiB, ", 26) == 0);
    /* 30 s later the probe still says 10000 free (the two have not allocated yet). */
    EXPECT(&c, &cfg, &gpu, T0 + 31000, "");
    /* After the settle time the probe's number is trusted: the two hold theirs by now. */
    struct queue_gpu after = {true, 10000 - 2 * 4096};
    EXPECT(&c, &cfg, &after, T0 + 62000, "");
    struct queue_gpu freed = {true, 6000};
    EXPECT(&c, &cfg, &freed, T0 + 63000, "start l3");
}

static void test_queue_max_wait_falls_back_as_configured(void **state) {
    (void)state;
    struct queue_gpu tight = {true, 5000}; /* lite fits, original does not */
    struct queue_gpu none = {true, 100};
    /* reject */
    struct cluster c = {0};
    struct queue_config cfg = base_config();
    cfg.max_wait_ms = 600000;
    cfg.fallback = QUEUE_FALLBACK_REJECT;
    add(&c, "o1", "original", "g", T0, true);
    EXPECT(&c, &cfg, &tight, T0 + 1000, "note o1");
    EXPECT(&c, &cfg, &tight, T0 + 599000, "");
    EXPECT(&c, &cfg, &tight, T0 + 600000, "reject o1");
    assert_int_equal(find(&c, "o1")->spec, QUEUE_SPEC_CANCELLED);
    assert_string_equal(find(&c, "o1")->rejected,
                        "waited 600s for GPU memory (needs 8192 MiB, 5000 MiB free); "
                        "max_wait_seconds is 600");
    /* downgrade, and lite fits: a started lite copy replaces it */
    struct cluster d = {0};
    cfg.fallback = QUEUE_FALLBACK_DOWNGRADE;
    add(&d, "o1", "original", "g", T0, true);
    EXPECT(&d, &cfg, &tight, T0 + 1000, "note o1");
    EXPECT(&d, &cfg, &tight, T0 + 600000, "downgrade o1");
    struct trun *r = find(&d, "o1");
    assert_int_equal(r->spec, QUEUE_SPEC_CANCELLED);
    assert_string_equal(r->downgraded_to, "lite");
    assert_int_equal(running_of(&d, "original"), 0);
    r = find(&d, "o1-lite");
    assert_string_equal(r->variant, "lite");
    assert_string_equal(r->group, "g");
    assert_string_equal(r->pipeline, "gpu-real-8-step-workflow-lite");
    assert_string_equal(r->downgraded_from, "o1");
    assert_string_equal(r->waited, "600s for gpu");
    assert_int_equal(r->spec, QUEUE_SPEC_NONE);
    assert_true(r->queued_since == T0);
    assert_int_equal(running_of(&d, "lite"), 1);
    cluster_cleanup(&d);
    /* downgrade, and lite does not fit either: the copy waits as lite, in the same place */
    struct cluster e = {0};
    add(&e, "o1", "original", "g", T0, true);
    add(&e, "later", "lite", "h", T0 + 1000, true);
    EXPECT(&e, &cfg, &none, T0 + 600000, "downgrade o1, note later");
    r = find(&e, "o1-lite");
    assert_int_equal(r->spec, QUEUE_SPEC_PENDING);
    assert_string_equal(r->waiting_for, "gpu");
    EXPECT(&e, &cfg, &none, T0 + 900000, "");
    /* It keeps its place: the older of the two lite runs starts first. */
    EXPECT(&e, &cfg, &tight, T0 + 901000, "start o1-lite");
    assert_int_equal(find(&e, "later")->spec, QUEUE_SPEC_PENDING);
    cluster_cleanup(&e);
    /* A crash between the create and the cancel: the next decision only cancels. */
    struct cluster g = {0};
    add(&g, "o1", "original", "g", T0, true);
    struct queue_plan plan;
    size_t n = view(&g);
    assert_int_equal(queue_decide(g.view, n, &cfg, &tight, T0 + 600000, &plan), 0);
    assert_int_equal(plan.count, 1);
    assert_non_null(plan.actions[0].create);
    create(&g, plan.actions[0].create, T0 + 600000);
    queue_plan_cleanup(&plan);
    n = view(&g);
    assert_int_equal(queue_decide(g.view, n, &cfg, &tight, T0 + 601000, &plan), 0);
    assert_int_equal(plan.count, 1);
    assert_int_equal(plan.actions[0].kind, QUEUE_ACT_DOWNGRADE);
    assert_null(plan.actions[0].create);
    queue_plan_cleanup(&plan);
    EXPECT(&g, &cfg, &tight, T0 + 601000, "downgrade o1");
    assert_int_equal(find(&g, "o1")->spec, QUEUE_SPEC_CANCELLED);
    assert_int_equal(running_of(&g, "lite"), 1);
    cluster_cleanup(&g);
    /* A run waiting for a slot is not the GPU's business: no fallback. */
    struct cluster f = {0};
    add(&f, "running", "original", "x", T0 - 1, false);
    add(&f, "o1", "original", "g", T0, true);
    struct queue_gpu plenty = {true, 80000};
    EXPECT(&f, &cfg, &plenty, T0 + 700000, "");
}

/*
 * The server renders the smaller variant's Pipeline name at delivery time and leaves it on the
 * run (downgrade-pipeline): it wins over the config's, and stands in when the config has none.
 */
static void test_queue_downgrade_uses_the_runs_own_pipeline_name(void **state) {
    (void)state;
    static const struct queue_variant bare[] = {
        {"original", 1, 8192, NULL},
        {"lite", 4, 4096, NULL},
    };
    struct queue_gpu tight = {true, 5000};
    struct queue_config cfg = base_config();
    cfg.variants = bare;
    cfg.max_wait_ms = 2000;
    cfg.fallback = QUEUE_FALLBACK_DOWNGRADE;
    struct cluster c = {0};
    struct trun *o = add(&c, "o1", "original", "g", T0, true);
    snprintf(o->downgrade_pipeline, sizeof(o->downgrade_pipeline), "team-lite-pipeline");
    /* Without a name from either, nothing to switch to: it keeps waiting. */
    add(&c, "o2", "original", "h", T0, true);
    EXPECT(&c, &cfg, &tight, T0 + 2000, "downgrade o1, note o2");
    assert_string_equal(find(&c, "o1-lite")->pipeline, "team-lite-pipeline");
    assert_int_equal(find(&c, "o2")->spec, QUEUE_SPEC_PENDING);
    assert_int_equal(running_of(&c, "lite"), 1);
    cluster_cleanup(&c);

    struct cluster d = {0};
    cfg.variants = VARIANTS;
    o = add(&d, "o1", "original", "g", T0, true);
    snprintf(o->downgrade_pipeline, sizeof(o->downgrade_pipeline), "team-lite-pipeline");
    EXPECT(&d, &cfg, &tight, T0 + 2000, "downgrade o1");
    assert_string_equal(find(&d, "o1-lite")->pipeline, "team-lite-pipeline");
    cluster_cleanup(&d);
}

/* Round robin of the groups' heads, oldest head first; FIFO inside a group. */
static void test_queue_fair_across_groups_fifo_within(void **state) {
    (void)state;
    struct cluster c = {0};
    struct queue_config cfg = base_config();
    struct queue_variant two[] = {{"lite", 2, 0, NULL}};
    cfg.variants = two;
    cfg.nvariants = 1;
    add(&c, "a1", "lite", "A", T0, true);
    add(&c, "a2", "lite", "A", T0 + 1, true);
    add(&c, "a3", "lite", "A", T0 + 2, true);
    add(&c, "b1", "lite", "B", T0 + 10, true);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 1000, "start a1, start b1, note a3");
    finish(&c, "a1", QUEUE_COND_TRUE);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 2000, "start a2, note a3");
    /* Equal creation times: by name. */
    struct cluster d = {0};
    struct queue_variant one[] = {{"lite", 1, 0, NULL}};
    cfg.variants = one;
    add(&d, "zz", "lite", "G", T0, true);
    add(&d, "aa", "lite", "G", T0, true);
    EXPECT(&d, &cfg, &NO_GPU, T0 + 1000, "start aa");
    assert_string_equal(find(&d, "zz")->waiting_for, "max_running"); /* as written: same word */
    /* A head that cannot start blocks its own group only. */
    struct cluster e = {0};
    cfg.variants = VARIANTS;
    cfg.nvariants = 2;
    add(&e, "busy", "original", "X", T0 - 100, false);
    add(&e, "o1", "original", "A", T0, true);
    add(&e, "l1", "lite", "A", T0 + 1, true);
    add(&e, "l2", "lite", "B", T0 + 2, true);
    EXPECT(&e, &cfg, &NO_GPU, T0 + 1000, "start l2, note l1");
    assert_string_equal(find(&e, "l1")->waiting_for, "fifo: an older run of its group waits first");
}

/* A restarted scheduler sees only the cluster: the same state gives the same decisions. */
static void test_queue_restart_continues_from_the_cluster_state(void **state) {
    (void)state;
    struct queue_config cfg = base_config();
    cfg.cancel_pending = true;
    struct cluster c = {0};
    add(&c, "p1", "original", "main", T0, false);
    add(&c, "p2", "original", "main", T0 + 1000, true);
    add(&c, "q1", "lite", "dev", T0 + 1500, true);
    add(&c, "p3", "original", "main", T0 + 2000, true);
    /* Half the plan was applied before the crash: only the first action. */
    struct queue_plan plan;
    size_t n = view(&c);
    assert_int_equal(queue_decide(c.view, n, &cfg, &NO_GPU, T0 + 3000, &plan), 0);
    assert_int_equal(plan.count, 2);
    apply(&c, &plan.actions[0], T0 + 3000);
    char first[64];
    snprintf(first, sizeof(first), "%s", plan.actions[0].name);
    queue_plan_cleanup(&plan);
    /* The new leader computes the rest, and nothing twice. */
    char got[256];
    step(&c, &cfg, &NO_GPU, T0 + 20000, got, sizeof(got));
    assert_null(strstr(got, first));
    assert_true(strlen(got) > 0);
    EXPECT(&c, &cfg, &NO_GPU, T0 + 21000, "");
    assert_int_equal(find(&c, "p2")->spec, QUEUE_SPEC_CANCELLED);
    assert_int_equal(find(&c, "q1")->spec, QUEUE_SPEC_NONE);
}

/* Random clusters: every plan keeps the caps, and applying it leaves nothing to do. */
static void test_queue_random_states_keep_the_caps(void **state) {
    (void)state;
    uint64_t x = 0x2545F4914F6CDD1DULL;
    for (int round = 0; round < 300; round++) {
        struct cluster c = {0};
        struct queue_config cfg = base_config();
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        cfg.cancel_pending = x & 1;
        cfg.cancel_running = (x >> 1) & 1;
        cfg.max_wait_ms = (x >> 2) & 1 ? 60000 : 0;
        cfg.fallback = (enum queue_fallback)((x >> 3) % 3);
        int nruns = 1 + (int)((x >> 8) % 20);
        for (int i = 0; i < nruns; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            char name[16], group[8];
            snprintf(name, sizeof(name), "r%02d", i);
            snprintf(group, sizeof(group), "g%d", (int)(x % 4));
            bool pending = (x >> 4) % 3 != 0;
            struct trun *r = add(&c, name, (x >> 6) & 1 ? "lite" : "original", group,
                                 T0 + (long long)((x >> 10) % 5) * 1000, pending);
            if (!pending && (x >> 20) % 3 == 0)
                r->cond = QUEUE_COND_TRUE;
        }
        struct queue_gpu gpu = {(x >> 30) & 1, (long long)((x >> 32) % 30000)};
        char got[2048];
        long long now = T0 + (long long)((x >> 40) % 120) * 1000;
        /* Started runs before the plan may exceed a cap (made by hand); the plan never adds. */
        int before_o = running_of(&c, "original"), before_l = running_of(&c, "lite");
        step(&c, &cfg, &gpu, now, got, sizeof(got));
        int after_o = running_of(&c, "original"), after_l = running_of(&c, "lite");
        assert_true(after_o <= (before_o > 1 ? before_o : 1));
        assert_true(after_l <= (before_l > 4 ? before_l : 4));
    }
}

static void test_queue_patches_are_merge_patches_with_preconditions(void **state) {
    (void)state;
    struct cluster c = {0};
    struct queue_config cfg = base_config();
    cfg.cancel_pending = true;
    add(&c, "a", "lite", "g", T0, true);
    add(&c, "b", "lite", "g", T0 + 1, true);
    add(&c, "s", "lite", "h", T0 + 2, true);
    struct queue_plan plan;
    size_t n = view(&c);
    assert_int_equal(queue_decide(c.view, n, &cfg, &NO_GPU, T0 + 5000, &plan), 0);
    assert_int_equal(plan.count, 3);
    assert_string_equal(plan.actions[0].patch,
                        "{\"metadata\":{\"resourceVersion\":\"1\",\"annotations\":{"
                        "\"gpuhook.dev/superseded-by\":\"b\",\"gpuhook.dev/waiting-for\":null}},"
                        "\"spec\":{\"status\":\"Cancelled\"}}");
    assert_int_equal(plan.actions[1].kind, QUEUE_ACT_START);
    assert_true(plan.actions[1].starts);
    assert_string_equal(plan.actions[1].name, "b");
    assert_string_equal(plan.actions[1].patch,
                        "{\"metadata\":{\"resourceVersion\":\"2\",\"annotations\":{"
                        "\"gpuhook.dev/started-at\":\"2026-12-02T01:30:05.000Z\","
                        "\"gpuhook.dev/waited\":\"4s for max_running\","
                        "\"gpuhook.dev/waiting-for\":null}},\"spec\":{\"status\":null}}");
    assert_string_equal(plan.actions[2].name, "s");
    queue_plan_cleanup(&plan);
    cluster_cleanup(&c);
}

static void test_queue_view_json_shows_groups_in_order(void **state) {
    (void)state;
    struct cluster c = {0};
    struct queue_config cfg = base_config();
    add(&c, "run", "original", "main", T0 - 10000, false);
    add(&c, "o1", "original", "main", T0, true);
    add(&c, "o2", "original", "main", T0 + 1000, true);
    add(&c, "o3", "original", "dev", T0 + 500, true);
    add(&c, "l1", "lite", "dev", T0 + 2000, true);
    char *json;
    size_t n = view(&c);
    assert_int_equal(queue_view_json(c.view, n, &cfg, &NO_GPU, T0 + 60000, &json), 0);
    assert_string_equal(
        json,
        "{\"groups\":[{\"group\":\"main\",\"waiting\":["
        "{\"name\":\"o1\",\"variant\":\"original\",\"position\":1,\"waiting_for\":\"max_running\","
        "\"queued_since\":\"2026-12-02T01:30:00.000Z\",\"waited_seconds\":60},"
        "{\"name\":\"o2\",\"variant\":\"original\",\"position\":2,\"waiting_for\":\"fifo\","
        "\"queued_since\":\"2026-12-02T01:30:01.000Z\",\"waited_seconds\":59}]},"
        "{\"group\":\"dev\",\"waiting\":["
        "{\"name\":\"o3\",\"variant\":\"original\",\"position\":1,\"waiting_for\":\"max_running\","
        "\"queued_since\":\"2026-12-02T01:30:00.500Z\",\"waited_seconds\":59},"
        "{\"name\":\"l1\",\"variant\":\"lite\",\"position\":2,\"waiting_for\":\"fifo\","
        "\"queued_since\":\"2026-12-02T01:30:02.000Z\",\"waited_seconds\":58}]}],"
        "\"running\":{\"original\":1,\"lite\":0},\"waiting\":{\"original\":3,\"lite\":1},"
        "\"max_running\":{\"original\":1,\"lite\":4}}");
    free(json);
    cluster_cleanup(&c);
}

/* The runs of the recorded session, as the watch hands them over. */
static void test_queue_run_from_recorded_objects(void **state) {
    (void)state;
    const char *dir = getenv("GPUHOOK_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/fixtures/kubeapi/list.json", dir ? dir : ".");
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char data[1 << 16];
    size_t len = fread(data, 1, sizeof(data) - 1, f);
    fclose(f);
    data[len] = '\0';
    cJSON *list = cJSON_Parse(data);
    cJSON *items = cJSON_GetObjectItemCaseSensitive(list, "items");
    assert_int_equal(cJSON_GetArraySize(items), 3);
    struct queue_run r[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(queue_run_from_object(cJSON_GetArrayItem(items, i), &r[i]), 0);
    assert_string_equal(r[0].name, "gpu-a-original-0000000001");
    assert_string_equal(r[0].variant, "original");
    assert_string_equal(r[0].group, "o-r-main");
    assert_int_equal(r[0].spec, QUEUE_SPEC_NONE);
    assert_int_equal(r[0].succeeded, QUEUE_COND_UNKNOWN);
    assert_string_equal(r[0].reason, "Running");
    assert_true(r[0].created_ms > T0 - 86400000LL * 365);
    assert_int_equal(r[1].spec, QUEUE_SPEC_PENDING);
    assert_true(r[1].queued_since_ms == T0);
    assert_string_equal(r[1].waiting_for, "max_running");
    assert_int_equal(r[2].spec, QUEUE_SPEC_PENDING);
    assert_string_equal(r[2].variant, "lite");
    /* With the defaults: a is running original, so b waits; c (lite) starts. */
    struct queue_config cfg = base_config();
    struct queue_plan plan;
    assert_int_equal(queue_decide(r, 3, &cfg, &NO_GPU, T0 + 1000, &plan), 0);
    assert_int_equal(plan.count, 1);
    assert_string_equal(plan.actions[0].name, "gpu-c-lite-0000000003");
    assert_int_equal(plan.actions[0].kind, QUEUE_ACT_START);
    queue_plan_cleanup(&plan);
    /* Not a run: no name, no resourceVersion, no creationTimestamp. */
    static const char *const bad[] = {"{}", "{\"metadata\":{\"name\":\"x\"}}",
                                      "{\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"1\"}}",
                                      "{\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"1\","
                                      "\"creationTimestamp\":\"yesterday\"}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *o = cJSON_Parse(bad[i]);
        struct queue_run q;
        assert_int_equal(queue_run_from_object(o, &q), GHE_INVAL);
        cJSON_Delete(o);
    }
    cJSON_Delete(list);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_three_originals_with_max_running_one),
        cmocka_unit_test(test_queue_supersession_of_three_pushes_while_one_runs),
        cmocka_unit_test(test_queue_cancel_running_uses_cancelled_run_finally),
        cmocka_unit_test(test_queue_waits_for_gpu_memory_then_starts),
        cmocka_unit_test(test_queue_gpu_memory_is_reserved_for_runs_just_started),
        cmocka_unit_test(test_queue_max_wait_falls_back_as_configured),
        cmocka_unit_test(test_queue_downgrade_uses_the_runs_own_pipeline_name),
        cmocka_unit_test(test_queue_fair_across_groups_fifo_within),
        cmocka_unit_test(test_queue_restart_continues_from_the_cluster_state),
        cmocka_unit_test(test_queue_random_states_keep_the_caps),
        cmocka_unit_test(test_queue_patches_are_merge_patches_with_preconditions),
        cmocka_unit_test(test_queue_view_json_shows_groups_in_order),
        cmocka_unit_test(test_queue_run_from_recorded_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
