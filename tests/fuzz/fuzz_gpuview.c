/*
 * Fuzz target 8: the cluster GPU view (gpuview.c, gpufit_cluster.c,
 * gpuview_json.c), which reads what other machines send: the EndpointSlices,
 * Nodes and Pods of the Kubernetes API, and the GET /gpu answers of every agent.
 *
 * Input: byte 0 picks the two needs (MiB) and the port name; then four parts
 * split at NUL bytes: an EndpointSliceList, a NodeList, a PodList, and an
 * agent's body, which is given as the answer of every node the view holds.
 * Invariants:
 *   - every setter returns 0 or a GHE_ code and says why on GHE_INVAL;
 *   - the view stays bounded (GPUVIEW_MAX_NODES nodes, GPUVIEW_MAX_GPUS GPUs each),
 *     sorted by name without repeats, with strings NUL-terminated in their arrays;
 *   - a fit names a node the view holds, with a reason; an agent fit has at least
 *     the need free on the GPU it names; a refusal says why;
 *   - the affinity, GET /gpu's body (for all nodes and for one) and every metric
 *     line are well formed: JSON that cJSON reads, "name{labels} number" lines.
 */
#include "fuzz.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/gpuview.h"

#define FUZZ_GV_NOW 1764640000000LL

static bool fuzz_gv_rc_ok(int rc) {
    return rc == 0 || rc == GHE_INVAL || rc == GHE_TOOBIG || rc == GHE_NOMEM || rc == GHE_NOTFOUND;
}

static void fuzz_gv_check_rc(const char *what, int rc, const char *err) {
    FUZZ_REQUIRE(fuzz_gv_rc_ok(rc), "%s returned %d", what, rc);
    FUZZ_REQUIRE(rc != GHE_INVAL || err[0], "%s refused its input without a reason", what);
}

static bool fuzz_gv_terminated(const char *s, size_t size) { return memchr(s, '\0', size) != NULL; }

static void fuzz_gv_check_view(const struct gpuview *v) {
    FUZZ_REQUIRE(v->count <= GPUVIEW_MAX_NODES, "%zu nodes", v->count);
    for (size_t i = 0; i < v->count; i++) {
        const struct gpuview_node *n = &v->nodes[i];
        FUZZ_REQUIRE(fuzz_gv_terminated(n->name, sizeof(n->name)) && n->name[0],
                     "node %zu has no name", i);
        FUZZ_REQUIRE(i == 0 || strcmp(v->nodes[i - 1].name, n->name) < 0,
                     "nodes not sorted or repeated at %zu", i);
        FUZZ_REQUIRE(n->gpu_count >= 0 && n->gpu_count <= GPUVIEW_MAX_GPUS, "%d GPUs on %s",
                     n->gpu_count, n->name);
        FUZZ_REQUIRE(fuzz_gv_terminated(n->agent_url, sizeof(n->agent_url)) &&
                         fuzz_gv_terminated(n->last_error, sizeof(n->last_error)) &&
                         fuzz_gv_terminated(n->gfd_product, sizeof(n->gfd_product)) &&
                         fuzz_gv_terminated(n->agent_status, sizeof(n->agent_status)),
                     "an unterminated string on %s", n->name);
        FUZZ_REQUIRE(n->requested >= -1, "requested %ld on %s", n->requested, n->name);
        for (int g = 0; g < n->gpu_count; g++)
            FUZZ_REQUIRE(fuzz_gv_terminated(n->gpus[g].name, sizeof(n->gpus[g].name)) &&
                             fuzz_gv_terminated(n->gpus[g].uuid, sizeof(n->gpus[g].uuid)),
                         "an unterminated GPU string on %s", n->name);
    }
}

static void fuzz_gv_check_fit(const struct gpuview *v, const struct gpuview_need *need) {
    struct gpuview_fit fit;
    int rc = gpuview_fit(v, need, &fit);
    FUZZ_REQUIRE(rc == 0, "gpuview_fit returned %d for %ld MiB", rc, need->need_mib);
    FUZZ_REQUIRE(fuzz_gv_terminated(fit.reason, sizeof(fit.reason)), "unterminated reason");
    FUZZ_REQUIRE(fit.reject_count <= GPUVIEW_FIT_REJECTS_MAX &&
                     fit.reject_count <= fit.reject_total,
                 "%zu rejects of %zu", fit.reject_count, fit.reject_total);
    if (fit.fits) {
        FUZZ_REQUIRE(gpuview_node_find(v, fit.node) != NULL, "the fit names %s, not in the view",
                     fit.node);
        FUZZ_REQUIRE(fit.reason[0], "a fit without a reason");
        if (fit.source == GPUVIEW_SRC_AGENT)
            FUZZ_REQUIRE(fit.free_mib >= need->need_mib, "an agent fit with %ld MiB for %ld",
                         fit.free_mib, need->need_mib);
    } else if (!fit.no_view) {
        FUZZ_REQUIRE(fit.reason[0], "a refusal without a reason");
    }
    for (int enabled = 0; enabled < 2; enabled++) {
        cJSON *aff = gpuview_affinity(v, &fit, enabled != 0);
        FUZZ_REQUIRE(enabled || !aff, "an affinity while placement is off");
        if (aff) {
            char *text = cJSON_PrintUnformatted(aff);
            FUZZ_REQUIRE(text && fuzz_is_json(text, strlen(text)), "the affinity is not JSON");
            free(text);
            cJSON_Delete(aff);
        }
    }
}

/* A Prometheus text line: a comment, or name{labels} value with a number. */
static void fuzz_gv_check_metrics(const struct buf *b) {
    const char *p = b->data ? b->data : "", *end = p + b->len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        FUZZ_REQUIRE(nl != NULL, "the metrics do not end with a newline");
        if (*p != '#') {
            const char *sp = nl;
            while (sp > p && sp[-1] != ' ')
                sp--;
            FUZZ_REQUIRE(sp > p, "a metric line without a value");
            char *stop = NULL;
            double d = strtod(sp, &stop);
            FUZZ_REQUIRE(stop == nl && !isnan(d), "a metric value that is not a number");
            for (const char *q = p; q < nl; q++)
                FUZZ_REQUIRE(*q != '\0' && *q != '\r', "a NUL or CR in a metric line");
        }
        p = nl + 1;
    }
}

int fuzz_gpuview_one(const uint8_t *data, size_t size) {
    char *storage = NULL, *parts[4] = {NULL, NULL, NULL, NULL};
    size_t lens[4] = {0, 0, 0, 0};
    if (size < 1)
        return 0;
    unsigned pick = data[0];
    size_t n = fuzz_split(data + 1, size - 1, '\0', parts, 4, &storage);
    char err[256];
    struct gpuview v;
    struct buf metrics;

    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(parts[i]);
    for (size_t i = n; i < 4; i++)
        parts[i] = (char *)"";
    struct gpuview_need needs[2] = {{"lite", (long)(pick & 15) * 1024},
                                    {"original", (long)(pick >> 4) * 8192}};

    gpuview_init(&v, NULL);
    err[0] = '\0';
    fuzz_gv_check_rc("gpuview_set_endpoints",
                     gpuview_set_endpoints(&v, parts[0], lens[0], pick & 1 ? "http" : NULL,
                                           FUZZ_GV_NOW, err, sizeof(err)),
                     err);
    fuzz_gv_check_view(&v);
    err[0] = '\0';
    fuzz_gv_check_rc("gpuview_set_nodes",
                     gpuview_set_nodes(&v, parts[1], lens[1], err, sizeof(err)), err);
    fuzz_gv_check_view(&v);
    err[0] = '\0';
    fuzz_gv_check_rc("gpuview_set_pods", gpuview_set_pods(&v, parts[2], lens[2], err, sizeof(err)),
                     err);
    fuzz_gv_check_view(&v);
    for (size_t i = 0; i < v.count; i++) {
        char name[GPUVIEW_NAME_MAX];
        memcpy(name, v.nodes[i].name, sizeof(name));
        err[0] = '\0';
        fuzz_gv_check_rc(
            "gpuview_agent_answer",
            gpuview_agent_answer(&v, name, parts[3], lens[3], FUZZ_GV_NOW, err, sizeof(err)), err);
    }
    fuzz_gv_check_view(&v);
    gpuview_refresh(&v, FUZZ_GV_NOW + 1000);
    for (size_t i = 0; i < 2; i++)
        fuzz_gv_check_fit(&v, &needs[i]);

    bool found = false;
    char *body = gpuview_json(&v, FUZZ_GV_NOW + 1000, NULL, needs, 2, &found);
    FUZZ_REQUIRE(body && fuzz_is_json(body, strlen(body)), "GET /gpu's body is not JSON");
    free(body);
    if (v.count) {
        body = gpuview_json(&v, FUZZ_GV_NOW + 1000, v.nodes[0].name, needs, 2, &found);
        FUZZ_REQUIRE(body && fuzz_is_json(body, strlen(body)) && found,
                     "GET /gpu?node=%s is not JSON or not found", v.nodes[0].name);
        free(body);
    }
    buf_init(&metrics, 1u << 24);
    FUZZ_REQUIRE(gpuview_metrics_append(&v, &metrics) == 0, "the metrics failed");
    fuzz_gv_check_metrics(&metrics);
    buf_cleanup(&metrics);
    gpuview_cleanup(&v);
    free(storage);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_gpuview_one(data, size);
}
#endif
