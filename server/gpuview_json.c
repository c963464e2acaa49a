/*
 * The cluster view rendered: GET /gpu's cluster body with cJSON, and the
 * Prometheus gauges, one line per GPU (or per node) at most.
 */
#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/gpuview.h"
#include "gpuhook/promtext.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#define MIB (1024LL * 1024LL)

struct jctx {
    bool failed;
};

static cJSON *jc(struct jctx *j, cJSON *item) {
    if (!item)
        j->failed = true;
    return item;
}

static void jnum(struct jctx *j, cJSON *o, const char *k, bool known, double n) {
    jc(j, known ? cJSON_AddNumberToObject(o, k, n) : cJSON_AddNullToObject(o, k));
}

static void jstr(struct jctx *j, cJSON *o, const char *k, const char *s) {
    jc(j, s && s[0] ? cJSON_AddStringToObject(o, k, s) : cJSON_AddNullToObject(o, k));
}

static void jbool(struct jctx *j, cJSON *o, const char *k, bool b) {
    jc(j, cJSON_AddBoolToObject(o, k, b));
}

static void add_gpu(struct jctx *j, cJSON *arr, const struct gpuview_gpu *g) {
    cJSON *o = jc(j, cJSON_CreateObject());
    if (!o || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        j->failed = true;
        return;
    }
    jnum(j, o, "index", true, g->index);
    jstr(j, o, "name", g->name);
    jstr(j, o, "uuid", g->uuid);
    jnum(j, o, "total_mib", g->total_mib >= 0, (double)g->total_mib);
    jnum(j, o, "free_mib", g->free_mib >= 0, (double)g->free_mib);
    jbool(j, o, "busy", g->busy);
    jbool(j, o, "usable", g->usable);
    cJSON *src = jc(j, cJSON_AddObjectToObject(o, "source"));
    jstr(j, src, "total_mib", gpuview_source_name(g->total_source));
    jstr(j, src, "free_mib", gpuview_source_name(g->free_source));
}

/* The GPUs GFD describes where no agent has answered: the model, never free memory. */
static void add_gfd_gpus(struct jctx *j, cJSON *arr, const struct gpuview_node *n) {
    long count = n->gfd_count >= 0 ? n->gfd_count : n->capacity;
    for (long i = 0; i < count && i < GPUVIEW_MAX_GPUS; i++) {
        struct gpuview_gpu g;
        memset(&g, 0, sizeof(g));
        g.index = (int)i;
        buf_copy_str(g.name, sizeof(g.name), n->gfd_product);
        g.total_mib = n->gfd_memory_mib;
        g.total_source = n->gfd_memory_mib >= 0 ? GPUVIEW_SRC_GFD : GPUVIEW_SRC_NONE;
        g.free_mib = -1;
        g.free_source = GPUVIEW_SRC_NONE;
        g.usable = true;
        add_gpu(j, arr, &g);
    }
}

static void add_node(struct jctx *j, cJSON *arr, const struct gpuview_node *n, long long now_ms) {
    cJSON *o = jc(j, cJSON_CreateObject());
    if (!o || !cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        j->failed = true;
        return;
    }
    jstr(j, o, "name", n->name);
    if (n->in_endpoints) {
        cJSON *a = jc(j, cJSON_AddObjectToObject(o, "agent"));
        jstr(j, a, "state", gpuview_agent_state_name(n->agent_state));
        jstr(j, a, "url", n->agent_url);
        jstr(j, a, "status", n->agent_status);
        jnum(j, a, "age_ms", n->answered_at_ms > 0, (double)(now_ms - n->answered_at_ms));
        jnum(j, a, "failures", true, n->failures);
        jstr(j, a, "error", n->last_error);
    } else {
        jc(j, cJSON_AddNullToObject(o, "agent"));
    }
    if (n->has_node) {
        cJSON *g = jc(j, cJSON_AddObjectToObject(o, "gfd"));
        jstr(j, g, "product", n->gfd_product);
        jnum(j, g, "memory_mib", n->gfd_memory_mib >= 0, (double)n->gfd_memory_mib);
        jnum(j, g, "count", n->gfd_count >= 0, n->gfd_count);
        jnum(j, o, "allocatable_gpus", n->allocatable >= 0, (double)n->allocatable);
        jnum(j, o, "capacity_gpus", n->capacity >= 0, (double)n->capacity);
        jnum(j, o, "requested_gpus", n->requested >= 0, (double)n->requested);
        /* What the GFD fit counts on: requests unknown count as none, and the source says so. */
        jnum(j, o, "unallocated_gpus", n->allocatable >= 0,
             (double)(n->allocatable - (n->requested > 0 ? n->requested : 0)));
        jstr(j, o, "unallocated_source", n->requested >= 0 ? "pods" : "allocatable");
        jbool(j, o, "schedulable", n->schedulable);
    } else {
        jc(j, cJSON_AddNullToObject(o, "gfd"));
    }
    /* Who says how many GPUs there are: the agent, GFD's count, or the device plugin. */
    int count_source = n->answered_at_ms > 0              ? GPUVIEW_SRC_AGENT
                       : n->has_node && n->gfd_count >= 0 ? GPUVIEW_SRC_GFD
                       : n->has_node && n->capacity >= 0  ? GPUVIEW_SRC_ALLOCATABLE
                                                          : GPUVIEW_SRC_NONE;
    jstr(j, o, "gpus_source", gpuview_source_name(count_source));
    cJSON *gpus = jc(j, cJSON_AddArrayToObject(o, "gpus"));
    if (!gpus)
        return;
    if (n->answered_at_ms > 0)
        for (int i = 0; i < n->gpu_count; i++)
            add_gpu(j, gpus, &n->gpus[i]);
    else if (n->has_node)
        add_gfd_gpus(j, gpus, n);
}

static void add_fit(struct jctx *j, cJSON *fit, const struct gpuview *v,
                    const struct gpuview_need *needs, size_t need_count) {
    const char *recommended = NULL;
    long best_need = -1;
    for (size_t i = 0; i < need_count; i++) {
        struct gpuview_fit f;
        if (gpuview_fit(v, &needs[i], &f) != 0)
            continue;
        cJSON *o = jc(j, cJSON_AddObjectToObject(fit, needs[i].variant));
        jnum(j, o, "need_mib", true, (double)needs[i].need_mib);
        jbool(j, o, "fits", f.fits);
        jstr(j, o, "node", f.fits ? f.node : NULL);
        jnum(j, o, "gpu", f.fits && f.gpu_index >= 0, f.gpu_index);
        jstr(j, o, "source", f.fits ? gpuview_source_name(f.source) : NULL);
        jstr(j, o, "reason", f.reason);
        cJSON *rej = jc(j, cJSON_AddArrayToObject(o, "other_nodes"));
        for (size_t r = 0; rej && r < f.reject_count; r++)
            if (!cJSON_AddItemToArray(rej, jc(j, cJSON_CreateString(f.rejects[r]))))
                j->failed = true;
        /* The biggest need that fits is the variant to recommend. */
        if (f.fits && needs[i].need_mib > best_need) {
            best_need = needs[i].need_mib;
            recommended = needs[i].variant;
        }
    }
    jstr(j, fit, "recommended", recommended);
}

char *gpuview_json(const struct gpuview *v, long long now_ms, const char *node_filter,
                   const struct gpuview_need *needs, size_t need_count, bool *found) {
    struct jctx j = {false};
    char *out = NULL;
    int gpu_total = 0;
    bool matched = node_filter == NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    jstr(&j, root, "view", gpuview_has_data(v) ? "cluster" : "none");
    jnum(&j, root, "poll_interval_ms", true, (double)v->opts.poll_interval_ms);
    jnum(&j, root, "stale_after", true, v->opts.stale_after);
    /* Whether unallocated counts the pods' requests, or only allocatable (and why). */
    cJSON *pods = jc(&j, cJSON_AddObjectToObject(root, "pods"));
    jstr(&j, pods, "state",
         v->pods_state == GPUVIEW_PODS_LISTED   ? "listed"
         : v->pods_state == GPUVIEW_PODS_FAILED ? "failed"
                                                : "none");
    jstr(&j, pods, "error", v->pods_error[0] ? v->pods_error : NULL);
    jstr(&j, pods, "unallocated_from",
         v->pods_state == GPUVIEW_PODS_LISTED ? "pods" : "allocatable");
    cJSON *stale = jc(&j, cJSON_AddArrayToObject(root, "stale_agents"));
    cJSON *busy = jc(&j, cJSON_AddArrayToObject(root, "busy_gpus"));
    cJSON *nodes = jc(&j, cJSON_AddArrayToObject(root, "nodes"));
    for (size_t k = 0; nodes && k < v->count; k++) {
        const struct gpuview_node *n = &v->nodes[k];
        if (node_filter && strcmp(node_filter, n->name) != 0)
            continue;
        matched = true;
        if (n->agent_state == GPUVIEW_AGENT_STALE && stale &&
            !cJSON_AddItemToArray(stale, jc(&j, cJSON_CreateString(n->name))))
            j.failed = true;
        for (int i = 0; busy && n->answered_at_ms > 0 && i < n->gpu_count; i++) {
            if (!n->gpus[i].busy)
                continue;
            cJSON *b = jc(&j, cJSON_CreateObject());
            if (!b || !cJSON_AddItemToArray(busy, b)) {
                cJSON_Delete(b);
                j.failed = true;
                break;
            }
            jstr(&j, b, "node", n->name);
            jnum(&j, b, "gpu", true, n->gpus[i].index);
        }
        add_node(&j, nodes, n, now_ms);
        gpu_total += n->answered_at_ms > 0 ? n->gpu_count : 0;
    }
    jnum(&j, root, "node_count", true, (double)cJSON_GetArraySize(nodes));
    jnum(&j, root, "agent_gpu_count", true, gpu_total);
    if (needs && need_count) {
        /* The fit is the cluster's answer, so the node filter does not narrow it. */
        cJSON *fit = jc(&j, cJSON_AddObjectToObject(root, "fit"));
        if (fit)
            add_fit(&j, fit, v, needs, need_count);
    }
    if (found)
        *found = matched;
    if (!j.failed)
        out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

static int gauge_head(struct buf *b, const char *name, const char *help) {
    return buf_appendf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
}

static int gpu_line(struct buf *b, const char *metric, const struct gpuview_node *n,
                    const struct gpuview_gpu *g, long long value) {
    int rc = buf_appendf(b, "%s{node=\"", metric);
    if (!rc)
        rc = promtext_label_append(b, n->name);
    if (!rc)
        rc = buf_appendf(b, "\",gpu=\"%d\"} %lld\n", g->index, value);
    return rc;
}

int gpuview_metrics_append(const struct gpuview *v, struct buf *b) {
    int rc = gauge_head(b, "gpuhook_cluster_agent_up",
                        "1 when the node's GPU agent answered within stale_after polls, else 0.");
    for (size_t k = 0; !rc && k < v->count; k++) {
        const struct gpuview_node *n = &v->nodes[k];
        if (!n->in_endpoints)
            continue;
        rc = buf_appends(b, "gpuhook_cluster_agent_up{node=\"");
        if (!rc)
            rc = promtext_label_append(b, n->name);
        if (!rc)
            rc = buf_appendf(b, "\"} %d\n", n->agent_state == GPUVIEW_AGENT_FRESH);
    }
    if (!rc)
        rc = gauge_head(b, "gpuhook_cluster_gpu_memory_free_bytes",
                        "Free memory of each GPU as its node's fresh agent reports it.");
    for (size_t k = 0; !rc && k < v->count; k++) {
        const struct gpuview_node *n = &v->nodes[k];
        if (n->agent_state != GPUVIEW_AGENT_FRESH)
            continue;
        for (int i = 0; !rc && i < n->gpu_count; i++)
            if (n->gpus[i].free_mib >= 0)
                rc = gpu_line(b, "gpuhook_cluster_gpu_memory_free_bytes", n, &n->gpus[i],
                              n->gpus[i].free_mib * MIB);
    }
    bool any_alloc = false;
    for (size_t k = 0; k < v->count; k++)
        any_alloc = any_alloc || (v->nodes[k].has_node && v->nodes[k].allocatable >= 0);
    if (!rc && any_alloc)
        rc = gauge_head(b, "gpuhook_cluster_node_gpus_unallocated",
                        "nvidia.com/gpu allocatable on the node less what its pods request "
                        "(allocatable alone while the Pod list is unknown).");
    for (size_t k = 0; !rc && k < v->count; k++) {
        const struct gpuview_node *n = &v->nodes[k];
        if (!n->has_node || n->allocatable < 0)
            continue;
        long free_gpus = n->allocatable - (n->requested > 0 ? n->requested : 0);
        rc = buf_appends(b, "gpuhook_cluster_node_gpus_unallocated{node=\"");
        if (!rc)
            rc = promtext_label_append(b, n->name);
        if (!rc)
            rc = buf_appendf(b, "\"} %ld\n", free_gpus > 0 ? free_gpus : 0);
    }
    if (!rc)
        rc = gauge_head(b, "gpuhook_cluster_gpu_busy",
                        "1 when a fresh agent sees compute processes on the GPU, else 0.");
    for (size_t k = 0; !rc && k < v->count; k++) {
        const struct gpuview_node *n = &v->nodes[k];
        if (n->agent_state != GPUVIEW_AGENT_FRESH)
            continue;
        for (int i = 0; !rc && i < n->gpu_count; i++)
            rc = gpu_line(b, "gpuhook_cluster_gpu_busy", n, &n->gpus[i], n->gpus[i].busy);
    }
    return rc;
}
