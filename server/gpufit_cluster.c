/*
 * The fit against the cluster, and the placement that follows from it. Agents'
 * free memory decides where any agent is fresh; GFD's per-model memory and the
 * unallocated GPU count decide otherwise. GFD cannot say how much memory is
 * free, so a GFD fit only says the model is big enough and a GPU is left.
 */
#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/gpuview.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/*
 * snprintf into a reason: a sentence cut at the buffer's end is still useful,
 * so truncation is accepted here rather than warned about at every call.
 */
static int say(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int say(char *dst, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(dst, size, fmt, ap);
    va_end(ap);
    return n;
}

/* What one node offers for a need: a score to rank by, or why it cannot. */
struct offer {
    bool ok;
    long score; /* free MiB (agent) or the model's MiB (gfd) */
    int gpu;    /* slot in n->gpus, -1 for gfd */
    long unallocated;
    char why[GPUVIEW_REASON_MAX];
};

static bool any_fresh(const struct gpuview *v) {
    for (size_t k = 0; k < v->count; k++)
        if (v->nodes[k].agent_state == GPUVIEW_AGENT_FRESH)
            return true;
    return false;
}

static void offer_agent(const struct gpuview_node *n, long need, struct offer *o) {
    int best = -1;
    if (n->has_node && !n->schedulable) {
        say(o->why, sizeof(o->why), "%s: unschedulable (cordoned)", n->name);
        return;
    }
    if (strcmp(n->agent_status, "unavailable") == 0) {
        say(o->why, sizeof(o->why), "%s: its agent reports the GPUs unavailable", n->name);
        return;
    }
    for (int i = 0; i < n->gpu_count; i++) {
        const struct gpuview_gpu *g = &n->gpus[i];
        if (!g->usable || g->free_mib < 0)
            continue;
        if (best < 0 || g->free_mib > n->gpus[best].free_mib)
            best = i;
    }
    if (best < 0) {
        say(o->why, sizeof(o->why), "%s: no usable GPU with a known free figure", n->name);
        return;
    }
    o->gpu = best;
    o->score = n->gpus[best].free_mib;
    /*
     * Free memory is the agent's figure, but the scheduler places by
     * nvidia.com/gpu: where pods request every allocatable GPU, none is given
     * to the run however much memory is free. Unknown requests exclude nothing.
     */
    if (n->has_node && n->allocatable >= 0 && n->requested >= 0 &&
        n->allocatable - n->requested <= 0) {
        say(o->why, sizeof(o->why),
            "%s: no GPU unallocated (%ld allocatable, %ld requested by pods), although %ld MiB "
            "are free on GPU %d",
            n->name, n->allocatable, n->requested, o->score, n->gpus[best].index);
        return;
    }
    if (o->score < need) {
        say(o->why, sizeof(o->why), "%s: at most %ld MiB free (GPU %d, %s), %ld MiB needed",
            n->name, o->score, n->gpus[best].index, n->gpus[best].name, need);
        return;
    }
    o->ok = true;
}

static void offer_gfd(const struct gpuview_node *n, long need, struct offer *o) {
    long gpus = n->allocatable >= 0 ? n->allocatable : -1;
    if (n->gfd_memory_mib < 0) {
        say(o->why, sizeof(o->why), "%s: no nvidia.com/gpu.memory label and no agent", n->name);
        return;
    }
    if (!n->schedulable) {
        say(o->why, sizeof(o->why), "%s: unschedulable (cordoned)", n->name);
        return;
    }
    o->score = n->gfd_memory_mib;
    if (n->gfd_memory_mib < need) {
        say(o->why, sizeof(o->why), "%s: its GPUs (%s) have %ld MiB, %ld MiB needed", n->name,
            n->gfd_product[0] ? n->gfd_product : "unknown model", n->gfd_memory_mib, need);
        return;
    }
    if (gpus < 0) {
        say(o->why, sizeof(o->why), "%s: no allocatable nvidia.com/gpu", n->name);
        return;
    }
    o->unallocated = gpus - (n->requested > 0 ? n->requested : 0);
    if (o->unallocated <= 0) {
        if (n->requested > 0)
            say(o->why, sizeof(o->why),
                "%s: no GPU unallocated (%ld allocatable, %ld requested by "
                "pods)",
                n->name, gpus, n->requested);
        else
            say(o->why, sizeof(o->why), "%s: no GPU unallocated (0 allocatable)", n->name);
        return;
    }
    o->ok = true;
}

static void offer_for(const struct gpuview_node *n, long need, bool agents, struct offer *o) {
    memset(o, 0, sizeof(*o));
    o->gpu = -1;
    switch (n->agent_state) {
    case GPUVIEW_AGENT_STALE:
        say(o->why, sizeof(o->why), "%s: agent stale (%s)", n->name,
            n->last_error[0] ? n->last_error : "no answer");
        return;
    case GPUVIEW_AGENT_NOT_READY:
        say(o->why, sizeof(o->why), "%s: agent not ready", n->name);
        return;
    case GPUVIEW_AGENT_FRESH:
        offer_agent(n, need, o);
        return;
    default:
        break;
    }
    if (agents) {
        /* Where agents answer, a node without one has no free figure to compare. */
        say(o->why, sizeof(o->why), "%s: %s", n->name,
            n->agent_state == GPUVIEW_AGENT_PENDING ? "agent has not answered yet"
                                                    : "no agent on this node");
        return;
    }
    offer_gfd(n, need, o);
}

static void add_reject(struct gpuview_fit *out, const char *why) {
    if (out->reject_count < GPUVIEW_FIT_REJECTS_MAX)
        buf_copy_str(out->rejects[out->reject_count++], GPUVIEW_REASON_MAX, why);
    out->reject_total++;
}

int gpuview_fit(const struct gpuview *v, const struct gpuview_need *need, struct gpuview_fit *out) {
    if (!v || !need || !need->variant || need->need_mib < 0 || !out)
        return GHE_INVAL;
    memset(out, 0, sizeof(*out));
    out->gpu_index = -1;
    out->need_mib = need->need_mib;
    if (!gpuview_has_data(v)) {
        out->no_view = true;
        say(out->reason, sizeof(out->reason),
            "no cluster view: no agent has answered and no node has GFD labels");
        return 0;
    }
    bool agents = any_fresh(v);
    struct offer o, best;
    memset(&best, 0, sizeof(best));
    size_t best_at = 0;
    bool found = false;
    for (size_t k = 0; k < v->count; k++) {
        offer_for(&v->nodes[k], need->need_mib, agents, &o);
        /* Nodes are sorted by name, so a strictly greater score breaks ties by name. */
        if (o.ok && (!found || o.score > best.score)) {
            best = o;
            best_at = k;
            found = true;
        }
    }
    for (size_t k = 0; k < v->count; k++) {
        if (found && k == best_at)
            continue;
        offer_for(&v->nodes[k], need->need_mib, agents, &o);
        if (o.ok)
            say(o.why, sizeof(o.why), "%s: %ld MiB %s, less than on %s", v->nodes[k].name, o.score,
                agents ? "free" : "per GPU", v->nodes[best_at].name);
        add_reject(out, o.why);
    }
    if (!found) {
        int w = say(out->reason, sizeof(out->reason), "%s fits on no node: %ld MiB needed",
                    need->variant, need->need_mib);
        for (size_t r = 0; r < out->reject_count && w > 0 && (size_t)w < sizeof(out->reason); r++)
            w += say(out->reason + w, sizeof(out->reason) - (size_t)w, "; %s", out->rejects[r]);
        if (out->reject_total == 0 && w > 0 && (size_t)w < sizeof(out->reason))
            say(out->reason + w, sizeof(out->reason) - (size_t)w, "; no GPU node is known");
        return 0;
    }
    const struct gpuview_node *n = &v->nodes[best_at];
    out->fits = true;
    buf_copy_str(out->node, sizeof(out->node), n->name);
    out->free_mib = best.score;
    if (best.gpu >= 0) {
        const struct gpuview_gpu *g = &n->gpus[best.gpu];
        out->source = GPUVIEW_SRC_AGENT;
        out->gpu_index = g->index;
        buf_copy_str(out->gpu_name, sizeof(out->gpu_name), g->name);
        say(out->reason, sizeof(out->reason),
            "%s fits on node %s, GPU %d (%s): %ld MiB free, %ld MiB needed", need->variant, n->name,
            g->index, g->name[0] ? g->name : "unnamed", g->free_mib, need->need_mib);
    } else {
        out->source = GPUVIEW_SRC_GFD;
        buf_copy_str(out->gpu_name, sizeof(out->gpu_name), n->gfd_product);
        char count[200];
        if (n->requested >= 0)
            say(count, sizeof(count), "%ld of %ld GPUs unallocated", best.unallocated,
                n->allocatable);
        else
            say(count, sizeof(count), "%ld allocatable GPUs; pod requests unknown: %s",
                n->allocatable,
                v->pods_state == GPUVIEW_PODS_FAILED ? v->pods_error : "Pods not listed");
        say(out->reason, sizeof(out->reason),
            "%s fits on node %s (%s, %ld MiB per GPU, %s): %ld MiB needed; free memory is not "
            "known without an agent",
            need->variant, n->name, n->gfd_product[0] ? n->gfd_product : "unknown model",
            n->gfd_memory_mib, count, need->need_mib);
    }
    return 0;
}

static bool any_gfd_memory(const struct gpuview *v) {
    for (size_t k = 0; k < v->count; k++)
        if (v->nodes[k].gfd_memory_mib >= 0)
            return true;
    return false;
}

/* {"key": key, "operator": op, "values": [value]} inside {"matchExpressions": [...]}. */
static cJSON *selector_term(const char *key, const char *op, const char *value) {
    cJSON *term = cJSON_CreateObject();
    cJSON *exprs = cJSON_AddArrayToObject(term, "matchExpressions");
    cJSON *e = cJSON_CreateObject();
    if (!exprs || !e || !cJSON_AddItemToArray(exprs, e)) {
        cJSON_Delete(e);
        cJSON_Delete(term);
        return NULL;
    }
    if (!cJSON_AddStringToObject(e, "key", key) || !cJSON_AddStringToObject(e, "operator", op)) {
        cJSON_Delete(term);
        return NULL;
    }
    cJSON *values = cJSON_AddArrayToObject(e, "values");
    if (!values || !cJSON_AddItemToArray(values, cJSON_CreateString(value))) {
        cJSON_Delete(term);
        return NULL;
    }
    return term;
}

cJSON *gpuview_affinity(const struct gpuview *v, const struct gpuview_fit *fit, bool enabled) {
    char gt[32];
    if (!enabled || !v || !fit || !fit->fits || fit->no_view)
        return NULL;
    bool required = any_gfd_memory(v);
    const struct gpuview_node *n = gpuview_node_find(v, fit->node);
    cJSON *aff = cJSON_CreateObject();
    cJSON *na = cJSON_AddObjectToObject(aff, "nodeAffinity");
    if (!na)
        goto fail;
    if (required) {
        /* Gt compares the label as an integer: greater than need - 1 is at least need. */
        snprintf(gt, sizeof(gt), "%ld", fit->need_mib > 0 ? fit->need_mib - 1 : 0);
        cJSON *req = cJSON_AddObjectToObject(na, "requiredDuringSchedulingIgnoredDuringExecution");
        cJSON *terms = cJSON_AddArrayToObject(req, "nodeSelectorTerms");
        cJSON *t = selector_term("nvidia.com/gpu.memory", "Gt", gt);
        if (!terms || !t || !cJSON_AddItemToArray(terms, t)) {
            cJSON_Delete(t);
            goto fail;
        }
    }
    if (n) {
        cJSON *pref = cJSON_AddArrayToObject(na, "preferredDuringSchedulingIgnoredDuringExecution");
        cJSON *p = cJSON_CreateObject();
        if (!pref || !p || !cJSON_AddItemToArray(pref, p)) {
            cJSON_Delete(p);
            goto fail;
        }
        /* The hostname label usually equals the node name; the Node says when it does not. */
        cJSON *t =
            selector_term("kubernetes.io/hostname", "In", n->hostname[0] ? n->hostname : n->name);
        if (!cJSON_AddNumberToObject(p, "weight", 100) || !t ||
            !cJSON_AddItemToObject(p, "preference", t)) {
            cJSON_Delete(t);
            goto fail;
        }
    }
    if (!required && !n)
        goto fail;
    return aff;
fail:
    cJSON_Delete(aff);
    return NULL;
}
