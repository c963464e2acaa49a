/*
 * The cluster GPU view: EndpointSlices, Nodes and Pods parsed with their
 * errors, agents' answers (recorded on the H200, tests/fixtures/gpu/) and
 * their staleness, the fit against the cluster with its sentences, the
 * placement affinity (checked against the Tekton v1 PipelineRun schema and the
 * official Kubernetes client's V1Affinity model), the JSON body and the metrics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/fileio.h"
#include "gpuhook/gpuview.h"

#define T0 1764640000000LL /* a wall-clock instant; the view only compares times */

static const char *src_dir(void) {
    const char *s = getenv("GPUHOOK_SOURCE_DIR");
    return s ? s : ".";
}

/* Reads tests/fixtures/gpu/NAME (caller frees). */
static char *fixture(const char *name, size_t *len) {
    char path[1024], err[256];
    char *out = NULL;
    size_t n = 0;
    snprintf(path, sizeof(path), "%s/tests/fixtures/gpu/%s", src_dir(), name);
    int rc = fileio_read(path, 1 << 20, 0, &out, &n, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
    if (len)
        *len = n;
    return out;
}

static int feed(struct gpuview *v, const char *kind, const char *name, const char *node,
                long long now, char *err, size_t errlen) {
    size_t len;
    char *body = fixture(name, &len);
    int rc;
    if (strcmp(kind, "endpoints") == 0)
        rc = gpuview_set_endpoints(v, body, len, "http", now, err, errlen);
    else if (strcmp(kind, "nodes") == 0)
        rc = gpuview_set_nodes(v, body, len, err, errlen);
    else if (strcmp(kind, "pods") == 0)
        rc = gpuview_set_pods(v, body, len, err, errlen);
    else
        rc = gpuview_agent_answer(v, node, body, len, now, err, errlen);
    free(body);
    return rc;
}

/* The three recorded agents, answered at T0: gpu-a idle, gpu-b busy, gpu-c two H100s. */
static void cluster_of_agents(struct gpuview *v) {
    char err[256] = "";
    gpuview_init(v, NULL);
    assert_int_equal(feed(v, "endpoints", "endpointslices.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(feed(v, "agent", "agent-h200-idle.json", "gpu-a", T0, err, sizeof(err)), 0);
    assert_int_equal(feed(v, "agent", "agent-h200-busy.json", "gpu-b", T0, err, sizeof(err)), 0);
    assert_int_equal(feed(v, "agent", "agent-h100x2.json", "gpu-c", T0, err, sizeof(err)), 0);
}

static const struct gpuview_need ORIGINAL = {"original", 8192};
static const struct gpuview_need LITE = {"lite", 2048};

/* ---------- Inputs ---------- */

static void test_gpuview_endpoints_name_agents_by_node(void **state) {
    (void)state;
    struct gpuview v;
    char err[256] = "";
    gpuview_init(&v, NULL);
    assert_int_equal(feed(&v, "endpoints", "endpointslices.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(v.count, 3);
    const struct gpuview_node *a = gpuview_node_find(&v, "gpu-a");
    assert_non_null(a);
    assert_string_equal(a->agent_url, "http://10.0.1.5:8080/gpu?verbose");
    assert_int_equal(a->agent_state, GPUVIEW_AGENT_PENDING);
    assert_string_equal(gpuview_node_find(&v, "gpu-c")->agent_url,
                        "http://10.0.3.5:8080/gpu?verbose");
    assert_false(gpuview_has_data(&v));

    /* An IPv6 slice gets brackets; a nil ready reads as ready; a later list replaces. */
    const char *v6 = "{\"kind\":\"EndpointSlice\",\"addressType\":\"IPv6\","
                     "\"ports\":[{\"name\":\"http\",\"port\":8080}],"
                     "\"endpoints\":[{\"addresses\":[\"fd00::5\"],\"nodeName\":\"gpu-z\"}]}";
    assert_int_equal(gpuview_set_endpoints(&v, v6, strlen(v6), "http", T0, err, sizeof(err)), 0);
    assert_int_equal(v.count, 1);
    assert_string_equal(v.nodes[0].agent_url, "http://[fd00::5]:8080/gpu?verbose");
    assert_true(v.nodes[0].endpoint_ready);
    gpuview_cleanup(&v);
}

static void test_gpuview_bad_endpoints_say_where_and_change_nothing(void **state) {
    (void)state;
    static const struct {
        const char *json;
        const char *port;
        const char *message;
    } cases[] = {
        {"not json", "http", "EndpointSliceList: not JSON"},
        {"[]", "http", "EndpointSliceList: not a JSON object"},
        {"{\"kind\":\"EndpointSliceList\"}", "http", ".items: missing or not an array"},
        {"{\"items\":[{\"addressType\":\"FQDN\",\"endpoints\":[]}]}", "http",
         "EndpointSliceList.items[0].addressType: must be IPv4 or IPv6"},
        {"{\"items\":[{\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"metrics\",\"port\":9090}],"
         "\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"nodeName\":\"n\"}]}]}",
         "http", "EndpointSliceList.items[0].ports: no port named \"http\""},
        {"{\"items\":[{\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":0}],"
         "\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"nodeName\":\"n\"}]}]}",
         "http", "ports: port is not a number from 1 to 65535"},
        {"{\"items\":[{\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":80}],"
         "\"endpoints\":[{\"addresses\":[\"10.0.0.1\"]}]}]}",
         "http", "EndpointSliceList.items[0].endpoints[0].nodeName: missing"},
        {"{\"items\":[{\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":80}],"
         "\"endpoints\":[{\"addresses\":[\"10.0.0.1/evil\"],\"nodeName\":\"n\"}]}]}",
         "http", "endpoints[0].addresses[0]: missing or not an IPv4 address"},
        {"{\"items\":[{\"addressType\":\"IPv4\",\"ports\":[{\"port\":80},{\"port\":81}],"
         "\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"nodeName\":\"n\"}]}]}",
         NULL, "2 ports and no port name to choose by"},
    };
    struct gpuview v;
    char err[256];
    gpuview_init(&v, NULL);
    assert_int_equal(feed(&v, "endpoints", "endpointslices.json", NULL, T0, err, sizeof(err)), 0);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        int rc = gpuview_set_endpoints(&v, cases[i].json, strlen(cases[i].json), cases[i].port, T0,
                                       err, sizeof(err));
        assert_int_equal(rc, GHE_INVAL);
        if (!strstr(err, cases[i].message))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].message);
        assert_int_equal(v.count, 3);
    }
    gpuview_cleanup(&v);
}

static void test_gpuview_nodes_carry_gfd_labels_and_allocatable(void **state) {
    (void)state;
    struct gpuview v;
    char err[256] = "";
    gpuview_init(&v, NULL);
    assert_int_equal(feed(&v, "nodes", "nodes.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(v.count, 4); /* cpu-1 has no GPU to offer */
    assert_null(gpuview_node_find(&v, "cpu-1"));
    const struct gpuview_node *c = gpuview_node_find(&v, "gpu-c");
    assert_string_equal(c->gfd_product, "NVIDIA-H100-80GB-HBM3");
    assert_int_equal(c->gfd_memory_mib, 81559);
    assert_int_equal(c->gfd_count, 2);
    assert_int_equal(c->allocatable, 2);
    assert_int_equal(c->capacity, 2);
    assert_int_equal(c->requested, -1);
    assert_string_equal(c->hostname, "gpu-c");
    assert_false(gpuview_node_find(&v, "gpu-d")->schedulable);
    assert_true(gpuview_has_data(&v));

    assert_int_equal(feed(&v, "pods", "pods.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(gpuview_node_find(&v, "gpu-a")->requested, 0); /* Succeeded */
    assert_int_equal(gpuview_node_find(&v, "gpu-b")->requested, 1);

    const char *bad = "{\"items\":[{\"metadata\":{\"name\":\"g\",\"labels\":"
                      "{\"nvidia.com/gpu.memory\":\"80GiB\"}}}]}";
    err[0] = '\0';
    assert_int_equal(gpuview_set_nodes(&v, bad, strlen(bad), err, sizeof(err)), GHE_INVAL);
    assert_string_equal(err, "NodeList.items[0].metadata.labels[\"nvidia.com/gpu.memory\"]: not a "
                             "whole number");
    assert_int_equal(v.count, 4);
    gpuview_cleanup(&v);
}

static void test_gpuview_agent_answers_give_figures_busy_and_sources(void **state) {
    (void)state;
    struct gpuview v;
    cluster_of_agents(&v);
    const struct gpuview_node *a = gpuview_node_find(&v, "gpu-a");
    assert_int_equal(a->agent_state, GPUVIEW_AGENT_FRESH);
    assert_int_equal(a->gpu_count, 1);
    assert_string_equal(a->gpus[0].name, "NVIDIA H200");
    assert_int_equal(a->gpus[0].total_mib, 143771);
    assert_int_equal(a->gpus[0].free_mib, 143152);
    assert_int_equal(a->gpus[0].free_source, GPUVIEW_SRC_AGENT);
    assert_false(a->gpus[0].busy);
    assert_true(gpuview_node_find(&v, "gpu-b")->gpus[0].busy);
    const struct gpuview_node *c = gpuview_node_find(&v, "gpu-c");
    assert_int_equal(c->gpu_count, 2);
    assert_true(c->gpus[0].busy);
    assert_false(c->gpus[1].busy);
    assert_int_equal(c->gpus[1].free_mib, 70000);

    /* The 503 body recorded with CUDA_VISIBLE_DEVICES="": no GPU, and the node cannot take work. */
    char err[256];
    struct gpuview_fit f;
    assert_int_equal(
        feed(&v, "agent", "agent-h200-no-device.json", "gpu-b", T0 + 1, err, sizeof(err)), 0);
    const struct gpuview_node *b = gpuview_node_find(&v, "gpu-b");
    assert_int_equal(b->gpu_count, 0);
    assert_string_equal(b->agent_status, "unavailable");
    assert_int_equal(gpuview_fit(&v, &LITE, &f), 0);
    assert_string_equal(f.rejects[0], "gpu-b: its agent reports the GPUs unavailable");
    gpuview_cleanup(&v);
}

static void test_gpuview_refuses_bad_agent_answers_as_failed_polls(void **state) {
    (void)state;
    static const struct {
        const char *body;
        const char *message;
    } cases[] = {
        {"<html>502</html>", "agent body: not JSON"},
        {"{\"status\":\"fine\",\"devices\":[]}", ".status: missing or not ok, degraded"},
        {"{\"status\":\"ok\"}", ".devices: missing or not an array (is it GET /gpu?verbose?)"},
        {"{\"status\":\"ok\",\"node\":\"gpu-b\",\"devices\":[]}",
         ".node: \"gpu-b\" is not the endpoint's node \"gpu-a\""},
        {"{\"status\":\"ok\",\"devices\":[{\"index\":0}]}",
         ".devices[0].memory.total_mib: missing or negative"},
        {"{\"status\":\"ok\",\"devices\":[{\"index\":0,\"memory\":{\"total_mib\":1,\"free_mib\":"
         "\"lots\"}}]}",
         ".devices[0].memory.free_mib: not a number or null"},
    };
    struct gpuview v;
    char err[256];
    cluster_of_agents(&v);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        int rc = gpuview_agent_answer(&v, "gpu-a", cases[i].body, strlen(cases[i].body), T0 + 1,
                                      err, sizeof(err));
        assert_int_equal(rc, GHE_INVAL);
        if (!strstr(err, cases[i].message))
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].message);
        const struct gpuview_node *a = gpuview_node_find(&v, "gpu-a");
        assert_int_equal(a->failures, (int)i + 1);
        assert_string_equal(a->last_error, err);
        /* The last good figures stay, and count as fresh until they age. */
        assert_int_equal(a->gpus[0].free_mib, 143152);
        assert_int_equal(a->agent_state, GPUVIEW_AGENT_FRESH);
    }
    assert_int_equal(gpuview_agent_answer(&v, "nowhere", "{}", 2, T0, err, sizeof(err)),
                     GHE_NOTFOUND);
    gpuview_cleanup(&v);
}

static void test_gpuview_agent_goes_stale_and_recovers(void **state) {
    (void)state;
    struct gpuview v;
    char err[256];
    cluster_of_agents(&v); /* defaults: 5000 ms interval, stale after 3 */
    gpuview_refresh(&v, T0 + 14999);
    assert_int_equal(gpuview_node_find(&v, "gpu-a")->agent_state, GPUVIEW_AGENT_FRESH);
    for (int i = 1; i <= 3; i++)
        gpuview_agent_failed(&v, "gpu-a", "Connection refused", T0 + 5000LL * i);
    assert_int_equal(gpuview_node_find(&v, "gpu-a")->agent_state, GPUVIEW_AGENT_STALE);
    assert_int_equal(gpuview_node_find(&v, "gpu-a")->failures, 3);
    assert_int_equal(
        feed(&v, "agent", "agent-h200-idle.json", "gpu-a", T0 + 20000, err, sizeof(err)), 0);
    assert_int_equal(gpuview_node_find(&v, "gpu-a")->agent_state, GPUVIEW_AGENT_FRESH);
    assert_int_equal(gpuview_node_find(&v, "gpu-a")->failures, 0);

    /* An agent that never answers is pending, then stale. */
    struct gpuview w;
    gpuview_init(&w, NULL);
    assert_int_equal(feed(&w, "endpoints", "endpointslices.json", NULL, T0, err, sizeof(err)), 0);
    gpuview_refresh(&w, T0 + 14999);
    assert_int_equal(gpuview_node_find(&w, "gpu-a")->agent_state, GPUVIEW_AGENT_PENDING);
    gpuview_refresh(&w, T0 + 15000);
    assert_int_equal(gpuview_node_find(&w, "gpu-a")->agent_state, GPUVIEW_AGENT_STALE);
    gpuview_cleanup(&w);
    gpuview_cleanup(&v);
}

/* ---------- Pods ---------- */

/* A PodList of one pod on gpu-c (2 allocatable) with the given spec. */
static long requested_for(const char *spec, const char *phase) {
    struct gpuview v;
    char err[256] = "", body[2048];
    gpuview_init(&v, NULL);
    assert_int_equal(feed(&v, "nodes", "nodes.json", NULL, T0, err, sizeof(err)), 0);
    snprintf(body, sizeof(body),
             "{\"kind\":\"PodList\",\"apiVersion\":\"v1\",\"metadata\":{},\"items\":[{\"metadata\":"
             "{\"name\":\"p\",\"namespace\":\"ci\"},\"spec\":{\"nodeName\":\"gpu-c\",%s},"
             "\"status\":{\"phase\":\"%s\"}}]}",
             spec, phase);
    if (gpuview_set_pods(&v, body, strlen(body), err, sizeof(err)) != 0)
        fail_msg("%s: %s", spec, err);
    long r = gpuview_node_find(&v, "gpu-c")->requested;
    gpuview_cleanup(&v);
    return r;
}

#define GPUS(n) "\"resources\":{\"limits\":{\"nvidia.com/gpu\":\"" #n "\"}}"
#define REQ(n) "\"resources\":{\"requests\":{\"nvidia.com/gpu\":\"" #n "\"}}"

/*
 * As kube-scheduler counts a pod (component-helpers resource.PodRequests): the sum of its
 * containers, or the largest init container if more, where sidecars (init containers with
 * restartPolicy Always) add to the sum and to every later init container; plus the overhead.
 */
static void test_gpuview_pods_count_requests_as_the_scheduler_does(void **state) {
    (void)state;
    static const struct {
        const char *spec;
        const char *phase;
        long want;
    } cases[] = {
        {"\"containers\":[{\"name\":\"a\"," GPUS(1) "}]", "Running", 1},
        {"\"containers\":[{\"name\":\"a\"," REQ(1) "}]", "Running", 1},
        {"\"containers\":[{\"name\":\"a\"," GPUS(1) "},{\"name\":\"b\"," GPUS(
             1) "},{\"name\":\"c\"}]",
         "Running", 2},
        {"\"initContainers\":[{\"name\":\"i\"," GPUS(2) "}],\"containers\":[{\"name\":\"a\"," GPUS(
             1) "}]",
         "Pending", 2},
        {"\"initContainers\":[{\"name\":\"i\"," GPUS(1) "},{\"name\":\"j\"," GPUS(
             1) "}],\"containers\":[{\"name\":\"a\"," GPUS(1) "},{\"name\":\"b\"," GPUS(1) "}]",
         "Running", 2},
        /* A sidecar runs beside the containers: 1 + 1. */
        {"\"initContainers\":[{\"name\":\"s\",\"restartPolicy\":\"Always\"," GPUS(
             1) "}],\"containers\":[{\"name\":\"a\"," GPUS(1) "}]",
         "Running", 2},
        /* An init container after a sidecar runs beside it: max(1 + 0, 1 + 1) = 2. */
        {"\"initContainers\":[{\"name\":\"s\",\"restartPolicy\":\"Always\"," GPUS(
             1) "},{\"name\":\"i\"," GPUS(1) "}],\"containers\":[{\"name\":\"a\"}]",
         "Running", 2},
        {"\"overhead\":{\"nvidia.com/gpu\":\"1\"},\"containers\":[{\"name\":\"a\"," GPUS(1) "}]",
         "Running", 2},
        {"\"containers\":[{\"name\":\"a\",\"resources\":{\"limits\":{\"cpu\":\"2\"}}}]", "Running",
         0},
        {"\"containers\":[{\"name\":\"a\"," GPUS(1) "}]", "Succeeded", 0},
        {"\"containers\":[{\"name\":\"a\"," GPUS(1) "}]", "Failed", 0},
        {"\"containers\":[{\"name\":\"a\"," GPUS(1) "}]", "Unknown", 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long got = requested_for(cases[i].spec, cases[i].phase);
        if (got != cases[i].want)
            fail_msg("case %zu (%s, %s): %ld GPUs requested, want %ld", i, cases[i].spec,
                     cases[i].phase, got, cases[i].want);
    }
}

/* A paged list adds up across pages; a failed list leaves allocatable only, and says so. */
static void test_gpuview_pods_pages_add_up_and_a_failed_list_falls_back(void **state) {
    (void)state;
    struct gpuview v;
    struct gpuview_fit f;
    char err[256] = "", cont[64];
    const char *page1 = "{\"kind\":\"PodList\",\"metadata\":{\"continue\":\"abc\","
                        "\"remainingItemCount\":1},\"items\":[{\"metadata\":{\"name\":\"p1\"},"
                        "\"spec\":{\"nodeName\":\"gpu-c\",\"containers\":[{\"name\":\"a\"," GPUS(
                            1) "}]},\"status\":{\"phase\":\"Running\"}}]}";
    const char *page2 =
        "{\"kind\":\"PodList\",\"metadata\":{},\"items\":[{\"metadata\":{\"name\":"
        "\"p2\"},\"spec\":{\"nodeName\":\"gpu-c\",\"containers\":[{\"name\":\"a\"," GPUS(
            1) "}]},\"status\":{\"phase\":\"Running\"}},{\"metadata\":{\"name\":"
               "\"p3\"},\"spec\":{\"nodeName\":\"gpu-a\",\"containers\":[{\"name\":\"a\"," GPUS(
                   1) "}]},\"status\":{\"phase\":\"Pending\"}}]}";
    gpuview_init(&v, NULL);
    assert_int_equal(feed(&v, "nodes", "nodes.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(v.pods_state, GPUVIEW_PODS_NONE);
    gpuview_pods_begin(&v);
    assert_int_equal(
        gpuview_pods_page(&v, page1, strlen(page1), cont, sizeof(cont), err, sizeof(err)), 0);
    assert_string_equal(cont, "abc");
    /* Nothing shows until the last page is in. */
    assert_int_equal(gpuview_node_find(&v, "gpu-c")->requested, -1);
    assert_int_equal(
        gpuview_pods_page(&v, page2, strlen(page2), cont, sizeof(cont), err, sizeof(err)), 0);
    assert_string_equal(cont, "");
    gpuview_pods_commit(&v);
    assert_int_equal(v.pods_state, GPUVIEW_PODS_LISTED);
    assert_int_equal(gpuview_node_find(&v, "gpu-c")->requested, 2);
    assert_int_equal(gpuview_node_find(&v, "gpu-a")->requested, 1);
    assert_int_equal(gpuview_node_find(&v, "gpu-b")->requested, 0);

    /* gpu-a and gpu-c are full: gpu-b takes it; gpu-c names what is taken. */
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    assert_string_equal(f.node, "gpu-b");
    assert_string_equal(f.rejects[0],
                        "gpu-a: no GPU unallocated (1 allocatable, 1 requested by pods)");
    assert_string_equal(f.rejects[1],
                        "gpu-c: no GPU unallocated (2 allocatable, 2 requested by pods)");

    /* The next list is forbidden: back to allocatable, in the figures and the reason. */
    gpuview_pods_failed(&v, "pods is forbidden (HTTP 403)");
    assert_int_equal(v.pods_state, GPUVIEW_PODS_FAILED);
    assert_string_equal(v.pods_error, "pods is forbidden (HTTP 403)");
    assert_int_equal(gpuview_node_find(&v, "gpu-c")->requested, -1);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    assert_string_equal(f.node, "gpu-a");
    assert_string_equal(f.reason,
                        "original fits on node gpu-a (NVIDIA-H200, 143771 MiB per GPU, 1 "
                        "allocatable GPUs; pod requests unknown: pods is forbidden (HTTP 403)): "
                        "8192 MiB needed; free memory is not known without an agent");
    bool found;
    char *body = gpuview_json(&v, T0, "gpu-a", NULL, 0, &found);
    cJSON *o = cJSON_Parse(body);
    char *pods = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "pods"));
    assert_string_equal(pods, "{\"state\":\"failed\",\"error\":\"pods is forbidden (HTTP 403)\","
                              "\"unallocated_from\":\"allocatable\"}");
    cJSON *a = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "nodes"), 0);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(a, "requested_gpus")));
    assert_int_equal(cJSON_GetObjectItem(a, "unallocated_gpus")->valueint, 1);
    assert_string_equal(cJSON_GetObjectItem(a, "unallocated_source")->valuestring, "allocatable");
    cJSON_free(pods);
    cJSON_Delete(o);
    cJSON_free(body);

    /* A bad page changes nothing that was committed. */
    gpuview_pods_begin(&v);
    assert_int_equal(
        gpuview_pods_page(&v, "{\"items\":3}", 11, cont, sizeof(cont), err, sizeof(err)),
        GHE_INVAL);
    assert_string_equal(err, "PodList: .items: missing or not an array (expected a PodList or a "
                             "Pod)");
    assert_int_equal(v.pods_state, GPUVIEW_PODS_FAILED);

    /* Listed again: the figures are the pods' once more. */
    gpuview_pods_begin(&v);
    assert_int_equal(
        gpuview_pods_page(&v, page2, strlen(page2), cont, sizeof(cont), err, sizeof(err)), 0);
    gpuview_pods_commit(&v);
    body = gpuview_json(&v, T0, "gpu-c", NULL, 0, &found);
    o = cJSON_Parse(body);
    a = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "nodes"), 0);
    assert_int_equal(cJSON_GetObjectItem(a, "allocatable_gpus")->valueint, 2);
    assert_int_equal(cJSON_GetObjectItem(a, "requested_gpus")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(a, "unallocated_gpus")->valueint, 1);
    assert_string_equal(cJSON_GetObjectItem(a, "unallocated_source")->valuestring, "pods");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "pods"), "state")->valuestring,
                        "listed");
    cJSON_Delete(o);
    cJSON_free(body);

    /* Per-node metrics: one line per node with the device plugin's figure. */
    struct buf b;
    buf_init(&b, 1 << 16);
    assert_int_equal(gpuview_metrics_append(&v, &b), 0);
    if (!strstr(b.data, "gpuhook_cluster_node_gpus_unallocated{node=\"gpu-c\"} 1\n") ||
        !strstr(b.data, "gpuhook_cluster_node_gpus_unallocated{node=\"gpu-a\"} 0\n"))
        fail_msg("metrics lack the unallocated gauge:\n%s", b.data);
    buf_cleanup(&b);
    gpuview_cleanup(&v);
}

/* With agents, a node whose every GPU is requested by pods takes nothing, however free. */
static void test_gpuview_agent_fit_skips_a_node_whose_gpus_are_all_requested(void **state) {
    (void)state;
    struct gpuview v;
    struct gpuview_fit f;
    char err[256] = "";
    const char *pods =
        "{\"kind\":\"PodList\",\"metadata\":{},\"items\":[{\"metadata\":{\"name\":"
        "\"p\"},\"spec\":{\"nodeName\":\"gpu-a\",\"containers\":[{\"name\":\"a\"," GPUS(
            1) "}]},\"status\":{\"phase\":\"Running\"}}]}";
    cluster_of_agents(&v);
    assert_int_equal(feed(&v, "nodes", "nodes.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(gpuview_set_pods(&v, pods, strlen(pods), err, sizeof(err)), 0);
    gpuview_refresh(&v, T0);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    assert_true(f.fits);
    assert_string_equal(f.node, "gpu-c");
    assert_string_equal(f.rejects[0], "gpu-a: no GPU unallocated (1 allocatable, 1 requested by "
                                      "pods), although 143152 MiB are free on GPU 0");
    gpuview_cleanup(&v);
}

/* ---------- Fit ---------- */

static void test_gpuview_fit_picks_the_node_with_most_free_and_names_it(void **state) {
    (void)state;
    struct gpuview v;
    struct gpuview_fit f;
    cluster_of_agents(&v);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    assert_false(f.no_view);
    assert_true(f.fits);
    assert_string_equal(f.node, "gpu-a");
    assert_int_equal(f.gpu_index, 0);
    assert_int_equal(f.source, GPUVIEW_SRC_AGENT);
    assert_string_equal(f.reason,
                        "original fits on node gpu-a, GPU 0 (NVIDIA H200): 143152 MiB free, 8192 "
                        "MiB needed");
    assert_int_equal(f.reject_total, 2);
    assert_string_equal(f.rejects[0],
                        "gpu-b: at most 4999 MiB free (GPU 0, NVIDIA H200), 8192 MiB needed");
    assert_string_equal(f.rejects[1], "gpu-c: 70000 MiB free, less than on gpu-a");

    /* gpu-a stops answering: the H100 with room is chosen, its second GPU named. */
    char err[256];
    assert_int_equal(
        feed(&v, "agent", "agent-h200-busy.json", "gpu-b", T0 + 15000, err, sizeof(err)), 0);
    assert_int_equal(feed(&v, "agent", "agent-h100x2.json", "gpu-c", T0 + 15000, err, sizeof(err)),
                     0);
    for (int i = 1; i <= 3; i++)
        gpuview_agent_failed(&v, "gpu-a", "Operation timed out", T0 + 5000LL * i);
    assert_int_equal(gpuview_node_find(&v, "gpu-a")->agent_state, GPUVIEW_AGENT_STALE);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    assert_true(f.fits);
    assert_string_equal(f.node, "gpu-c");
    assert_int_equal(f.gpu_index, 1);
    assert_string_equal(f.reason, "original fits on node gpu-c, GPU 1 (NVIDIA H100 80GB HBM3): "
                                  "70000 MiB free, 8192 MiB needed");
    assert_string_equal(f.rejects[0], "gpu-a: agent stale (Operation timed out)");

    /* Nothing has 100000 MiB free: every node says why. */
    struct gpuview_need big = {"original", 100000};
    assert_int_equal(gpuview_fit(&v, &big, &f), 0);
    assert_false(f.fits);
    assert_false(f.no_view);
    assert_string_equal(f.reason,
                        "original fits on no node: 100000 MiB needed; gpu-a: agent stale "
                        "(Operation timed out); gpu-b: at most 4999 MiB free (GPU 0, NVIDIA H200), "
                        "100000 MiB needed; gpu-c: at most 70000 MiB free (GPU 1, NVIDIA H100 80GB "
                        "HBM3), 100000 MiB needed");
    assert_int_equal(f.reject_total, 3);
    gpuview_cleanup(&v);
}

static void test_gpuview_fit_breaks_ties_by_node_name_and_skips_broken_gpus(void **state) {
    (void)state;
    struct gpuview v;
    struct gpuview_fit f;
    char err[256];
    const char *slices =
        "{\"items\":[{\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":8080}],"
        "\"endpoints\":[{\"addresses\":[\"10.0.0.2\"],\"nodeName\":\"gpu-y\"},"
        "{\"addresses\":[\"10.0.0.1\"],\"nodeName\":\"gpu-x\"},"
        "{\"addresses\":[\"10.0.0.3\"],\"nodeName\":\"gpu-w\"}]}]}";
    gpuview_init(&v, NULL);
    assert_int_equal(
        gpuview_set_endpoints(&v, slices, strlen(slices), "http", T0, err, sizeof(err)), 0);
    size_t len;
    char *idle = fixture("agent-h200-idle.json", &len);
    /* The same H200 figures on two nodes: the body's own node field is dropped. */
    cJSON *o = cJSON_ParseWithLength(idle, len);
    cJSON_DeleteItemFromObject(o, "node");
    char *anon = cJSON_PrintUnformatted(o);
    assert_int_equal(gpuview_agent_answer(&v, "gpu-y", anon, strlen(anon), T0, err, sizeof(err)),
                     0);
    assert_int_equal(feed(&v, "agent", "agent-h200-xid79.json", "gpu-x", T0, err, sizeof(err)), 0);
    assert_int_equal(gpuview_agent_answer(&v, "gpu-w", anon, strlen(anon), T0, err, sizeof(err)),
                     0);
    assert_int_equal(gpuview_fit(&v, &LITE, &f), 0);
    assert_string_equal(f.node, "gpu-w");
    assert_string_equal(f.rejects[0], "gpu-x: its agent reports the GPUs unavailable");
    assert_string_equal(f.rejects[1], "gpu-y: 143152 MiB free, less than on gpu-w");
    assert_false(gpuview_node_find(&v, "gpu-x")->gpus[0].usable);
    cJSON_free(anon);
    cJSON_Delete(o);
    free(idle);
    gpuview_cleanup(&v);
}

static void test_gpuview_fit_without_agents_uses_gfd_and_allocatable(void **state) {
    (void)state;
    struct gpuview v;
    struct gpuview_fit f;
    char err[256];
    gpuview_init(&v, NULL);
    assert_int_equal(feed(&v, "nodes", "nodes.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    assert_true(f.fits);
    assert_int_equal(f.source, GPUVIEW_SRC_GFD);
    assert_string_equal(f.node, "gpu-a");
    assert_int_equal(f.gpu_index, -1);
    assert_string_equal(f.reason,
                        "original fits on node gpu-a (NVIDIA-H200, 143771 MiB per GPU, 1 "
                        "allocatable GPUs; pod requests unknown: Pods not listed): 8192 MiB "
                        "needed; free memory is not known without an agent");

    /* gpu-a's pod finished, gpu-b's runs: gpu-b has no GPU left. */
    assert_int_equal(feed(&v, "pods", "pods.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    assert_string_equal(f.node, "gpu-a");
    assert_string_equal(f.rejects[0],
                        "gpu-b: no GPU unallocated (1 allocatable, 1 requested by pods)");
    assert_string_equal(f.rejects[1], "gpu-c: 81559 MiB per GPU, less than on gpu-a");
    assert_string_equal(f.rejects[2], "gpu-d: unschedulable (cordoned)");

    struct gpuview_need big = {"original", 100000};
    assert_int_equal(gpuview_fit(&v, &big, &f), 0);
    assert_true(f.fits);
    assert_string_equal(f.node, "gpu-a");
    assert_string_equal(
        f.rejects[1], "gpu-c: its GPUs (NVIDIA-H100-80GB-HBM3) have 81559 MiB, 100000 MiB needed");
    gpuview_cleanup(&v);
}

static void test_gpuview_fit_without_any_source_says_no_cluster_view(void **state) {
    (void)state;
    struct gpuview v;
    struct gpuview_fit f;
    char err[256];
    gpuview_init(&v, NULL);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    assert_true(f.no_view);
    assert_false(f.fits);
    assert_string_equal(f.reason,
                        "no cluster view: no agent has answered and no node has GFD labels");
    /* Agents listed but silent are still no view. */
    assert_int_equal(feed(&v, "endpoints", "endpointslices.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    assert_true(f.no_view);
    assert_null(gpuview_affinity(&v, &f, true));
    assert_int_equal(gpuview_fit(&v, NULL, &f), GHE_INVAL);
    gpuview_cleanup(&v);
}

/* ---------- Placement ---------- */

static char *affinity_text(const struct gpuview *v, const struct gpuview_fit *f, bool on) {
    cJSON *a = gpuview_affinity(v, f, on);
    char *s = a ? cJSON_PrintUnformatted(a) : NULL;
    cJSON_Delete(a);
    return s;
}

static void test_gpuview_affinity_requires_memory_and_prefers_the_node(void **state) {
    (void)state;
    struct gpuview v;
    struct gpuview_fit f;
    char err[256];
    cluster_of_agents(&v);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    char *s = affinity_text(&v, &f, true);
    /* No Node data: no GFD label to require, only the preference. */
    assert_string_equal(s,
                        "{\"nodeAffinity\":{\"preferredDuringSchedulingIgnoredDuringExecution\":"
                        "[{\"weight\":100,\"preference\":{\"matchExpressions\":[{\"key\":"
                        "\"kubernetes.io/hostname\",\"operator\":\"In\",\"values\":[\"gpu-a\"]}]}}"
                        "]}}");
    cJSON_free(s);
    assert_null(affinity_text(&v, &f, false));

    assert_int_equal(feed(&v, "nodes", "nodes.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    s = affinity_text(&v, &f, true);
    assert_string_equal(s,
                        "{\"nodeAffinity\":{\"requiredDuringSchedulingIgnoredDuringExecution\":"
                        "{\"nodeSelectorTerms\":[{\"matchExpressions\":[{\"key\":"
                        "\"nvidia.com/gpu.memory\",\"operator\":\"Gt\",\"values\":[\"8191\"]}]}]},"
                        "\"preferredDuringSchedulingIgnoredDuringExecution\":[{\"weight\":100,"
                        "\"preference\":{\"matchExpressions\":[{\"key\":\"kubernetes.io/hostname\","
                        "\"operator\":\"In\",\"values\":[\"gpu-a\"]}]}}]}}");
    cJSON_free(s);

    struct gpuview_need huge = {"original", 1000000};
    assert_int_equal(gpuview_fit(&v, &huge, &f), 0);
    assert_false(f.fits);
    assert_null(affinity_text(&v, &f, true));
    gpuview_cleanup(&v);
}

/*
 * A rendered run carrying the affinity under taskRunTemplate.podTemplate is
 * checked by tests/gpuview/check_affinity.py: the Tekton v1 PipelineRun schema
 * for the run, the kubernetes client's V1Affinity model for the affinity
 * (Tekton's schema leaves the affinity open).
 */
static void test_gpuview_affinity_in_a_run_passes_the_schemas(void **state) {
    (void)state;
    struct gpuview v;
    struct gpuview_fit f;
    char err[256], path[] = "/tmp/gpuview-run-XXXXXX", cmd[2048];
    cluster_of_agents(&v);
    assert_int_equal(feed(&v, "nodes", "nodes.json", NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(gpuview_fit(&v, &ORIGINAL, &f), 0);
    cJSON *run = cJSON_Parse("{\"apiVersion\":\"tekton.dev/v1\",\"kind\":\"PipelineRun\","
                             "\"metadata\":{\"generateName\":\"gpu-original-\"},"
                             "\"spec\":{\"pipelineRef\":{\"name\":\"gpu-original\"},"
                             "\"taskRunTemplate\":{\"podTemplate\":{}}}}");
    cJSON *pt = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(run, "spec"), "taskRunTemplate"), "podTemplate");
    assert_true(cJSON_AddItemToObject(pt, "affinity", gpuview_affinity(&v, &f, true)));
    char *text = cJSON_Print(run);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 %s/tests/gpuview/check_affinity.py %s %s",
             src_dir(), src_dir(), path);
    int rc = system(cmd);
    unlink(path);
    assert_int_equal(rc, 0);
    cJSON_free(text);
    cJSON_Delete(run);
    gpuview_cleanup(&v);
}

/* ---------- Rendering ---------- */

static void test_gpuview_json_shows_nodes_sources_stale_and_fit(void **state) {
    (void)state;
    struct gpuview v;
    char err[256];
    bool found = false;
    struct gpuview_need needs[] = {LITE, ORIGINAL};
    cluster_of_agents(&v);
    assert_int_equal(feed(&v, "nodes", "nodes.json", NULL, T0, err, sizeof(err)), 0);
    for (int i = 1; i <= 3; i++)
        gpuview_agent_failed(&v, "gpu-b", "Connection refused", T0 + 5000LL * i);
    gpuview_refresh(&v, T0 + 15000);
    /* gpu-a and gpu-c answered at T0: 15000 ms later they are stale too unless refreshed. */
    assert_int_equal(
        feed(&v, "agent", "agent-h200-idle.json", "gpu-a", T0 + 15000, err, sizeof(err)), 0);
    assert_int_equal(feed(&v, "agent", "agent-h100x2.json", "gpu-c", T0 + 15000, err, sizeof(err)),
                     0);
    char *body = gpuview_json(&v, T0 + 15250, NULL, needs, 2, &found);
    assert_non_null(body);
    assert_true(found);
    cJSON *o = cJSON_Parse(body);
    assert_string_equal(cJSON_GetObjectItem(o, "view")->valuestring, "cluster");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "nodes")), 4);
    char *stale = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "stale_agents"));
    assert_string_equal(stale, "[\"gpu-b\"]");
    char *busy = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "busy_gpus"));
    assert_string_equal(busy, "[{\"node\":\"gpu-b\",\"gpu\":0},{\"node\":\"gpu-c\",\"gpu\":0}]");
    cJSON *fit = cJSON_GetObjectItem(o, "fit");
    assert_string_equal(cJSON_GetObjectItem(fit, "recommended")->valuestring, "original");
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(fit, "original"), "node")->valuestring, "gpu-a");
    cJSON *nodes = cJSON_GetObjectItem(o, "nodes");
    cJSON *a = cJSON_GetArrayItem(nodes, 0);
    assert_string_equal(cJSON_GetObjectItem(a, "name")->valuestring, "gpu-a");
    char *agent = cJSON_PrintUnformatted(cJSON_GetObjectItem(a, "agent"));
    assert_string_equal(agent, "{\"state\":\"fresh\",\"url\":\"http://10.0.1.5:8080/gpu?verbose\","
                               "\"status\":\"ok\",\"age_ms\":250,\"failures\":0,\"error\":null}");
    char *gpu0 = cJSON_PrintUnformatted(cJSON_GetArrayItem(cJSON_GetObjectItem(a, "gpus"), 0));
    assert_string_equal(gpu0, "{\"index\":0,\"name\":\"NVIDIA H200\",\"uuid\":\"GPU-7bb4d547-63ba-"
                              "73f9-640a-fefc0f87bbc0\",\"total_mib\":143771,\"free_mib\":143152,"
                              "\"busy\":false,\"usable\":true,\"source\":{\"total_mib\":\"agent\","
                              "\"free_mib\":\"agent\"}}");
    assert_string_equal(cJSON_GetObjectItem(a, "gpus_source")->valuestring, "agent");
    assert_int_equal(cJSON_GetObjectItem(a, "unallocated_gpus")->valueint, 1);
    /* gpu-d has no agent: its GPU comes from GFD, without a free figure. */
    cJSON *d = cJSON_GetArrayItem(nodes, 3);
    assert_string_equal(cJSON_GetObjectItem(d, "gpus_source")->valuestring, "gfd");
    char *dgpu = cJSON_PrintUnformatted(cJSON_GetArrayItem(cJSON_GetObjectItem(d, "gpus"), 0));
    assert_string_equal(dgpu, "{\"index\":0,\"name\":\"NVIDIA-H200\",\"uuid\":null,\"total_mib\":"
                              "143771,\"free_mib\":null,\"busy\":false,\"usable\":true,\"source\":"
                              "{\"total_mib\":\"gfd\",\"free_mib\":\"none\"}}");
    cJSON_free(stale);
    cJSON_free(busy);
    cJSON_free(agent);
    cJSON_free(gpu0);
    cJSON_free(dgpu);
    cJSON_Delete(o);
    cJSON_free(body);

    body = gpuview_json(&v, T0 + 15250, "gpu-c", NULL, 0, &found);
    assert_true(found);
    o = cJSON_Parse(body);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "nodes")), 1);
    assert_null(cJSON_GetObjectItem(o, "fit"));
    assert_int_equal(cJSON_GetObjectItem(o, "agent_gpu_count")->valueint, 2);
    cJSON_Delete(o);
    cJSON_free(body);
    body = gpuview_json(&v, T0 + 15250, "gpu-zz", NULL, 0, &found);
    assert_false(found);
    cJSON_free(body);
    gpuview_cleanup(&v);
}

static void test_gpuview_metrics_one_line_per_gpu(void **state) {
    (void)state;
    struct gpuview v;
    struct buf b;
    char err[256];
    cluster_of_agents(&v);
    assert_int_equal(
        feed(&v, "agent", "agent-h200-idle.json", "gpu-a", T0 + 10000, err, sizeof(err)), 0);
    assert_int_equal(feed(&v, "agent", "agent-h100x2.json", "gpu-c", T0 + 10000, err, sizeof(err)),
                     0);
    gpuview_agent_failed(&v, "gpu-b", "Connection refused", T0 + 15000);
    buf_init(&b, 1 << 16);
    assert_int_equal(gpuview_metrics_append(&v, &b), 0);
    const char *want[] = {
        "gpuhook_cluster_agent_up{node=\"gpu-a\"} 1\n",
        "gpuhook_cluster_agent_up{node=\"gpu-b\"} 0\n",
        "gpuhook_cluster_gpu_memory_free_bytes{node=\"gpu-a\",gpu=\"0\"} 150105751552\n",
        "gpuhook_cluster_gpu_memory_free_bytes{node=\"gpu-c\",gpu=\"1\"} 73400320000\n",
        "gpuhook_cluster_gpu_busy{node=\"gpu-c\",gpu=\"0\"} 1\n",
        "gpuhook_cluster_gpu_busy{node=\"gpu-c\",gpu=\"1\"} 0\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(b.data, want[i]))
            fail_msg("metrics lack %s in:\n%s", want[i], b.data);
    /* gpu-b is stale: no figures for it. 3 agents, 2 gauges x 3 GPUs, 3 x 2 comment lines. */
    assert_null(strstr(b.data, "node=\"gpu-b\",gpu"));
    size_t lines = 0;
    for (const char *p = b.data; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 3 + 2 * 3 + 6);
    buf_cleanup(&b);
    gpuview_cleanup(&v);
}

static void test_gpuview_bounds_nodes_and_gpus(void **state) {
    (void)state;
    struct gpuview v;
    struct buf b;
    char err[256];
    gpuview_init(&v, NULL);
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_appends(&b, "{\"items\":[{\"addressType\":\"IPv4\",\"ports\":[{\"port\":"
                                     "80}],\"endpoints\":["),
                     0);
    for (int i = 0; i <= GPUVIEW_MAX_NODES; i++)
        assert_int_equal(buf_appendf(&b, "%s{\"addresses\":[\"10.0.%d.%d\"],\"nodeName\":\"n%d\"}",
                                     i ? "," : "", i / 250, i % 250, i),
                         0);
    assert_int_equal(buf_appends(&b, "]}]}"), 0);
    assert_int_equal(gpuview_set_endpoints(&v, b.data, b.len, NULL, T0, err, sizeof(err)),
                     GHE_TOOBIG);
    assert_int_equal(v.count, 0);

    /* 20 GPUs in an answer: the view keeps 16. */
    buf_cleanup(&b);
    buf_init(&b, 1 << 20);
    const char *one = "{\"items\":[{\"addressType\":\"IPv4\",\"ports\":[{\"port\":80}],"
                      "\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"nodeName\":\"big\"}]}]}";
    assert_int_equal(gpuview_set_endpoints(&v, one, strlen(one), NULL, T0, err, sizeof(err)), 0);
    assert_int_equal(buf_appends(&b, "{\"status\":\"ok\",\"devices\":["), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(buf_appendf(&b,
                                     "%s{\"index\":%d,\"memory\":{\"total_mib\":100,"
                                     "\"free_mib\":50}}",
                                     i ? "," : "", i),
                         0);
    assert_int_equal(buf_appends(&b, "]}"), 0);
    assert_int_equal(gpuview_agent_answer(&v, "big", b.data, b.len, T0, err, sizeof(err)), 0);
    assert_int_equal(gpuview_node_find(&v, "big")->gpu_count, GPUVIEW_MAX_GPUS);
    buf_cleanup(&b);
    gpuview_cleanup(&v);
}

/*
 * Every prefix of every fixture, and every fixture with one byte replaced, is
 * either taken or refused with a message, never more (run under ASan in CI).
 */
static void test_gpuview_cut_or_damaged_inputs_are_refused_with_a_message(void **state) {
    (void)state;
    static const struct {
        const char *file, *kind;
    } files[] = {
        {"agent-h200-idle.json", "agent"},
        {"agent-h100x2.json", "agent"},
        {"agent-h200-xid79.json", "agent"},
        {"endpointslices.json", "endpoints"},
        {"nodes.json", "nodes"},
        {"pods.json", "pods"},
    };
    static const char damage[] = {'"', '}', '-', '\x80'};
    char err[256];
    struct gpuview base;
    cluster_of_agents(&base);
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        size_t len;
        char *body = fixture(files[i].file, &len);
        struct gpuview v;
        for (size_t cut = 0; cut <= len; cut++) {
            for (size_t d = 0; d <= sizeof(damage); d++) {
                char saved = body[cut < len ? cut : 0];
                if (d < sizeof(damage) && cut < len)
                    body[cut] = damage[d];
                else if (d < sizeof(damage))
                    continue;
                size_t n = d < sizeof(damage) ? len : cut;
                /* A copy of the three-agent view, without reading the fixtures again. */
                v = base;
                v.nodes = malloc(base.count * sizeof(*base.nodes));
                assert_non_null(v.nodes);
                memcpy(v.nodes, base.nodes, base.count * sizeof(*base.nodes));
                err[0] = '\0';
                int rc;
                if (strcmp(files[i].kind, "agent") == 0)
                    rc = gpuview_agent_answer(&v, "gpu-a", body, n, T0, err, sizeof(err));
                else if (strcmp(files[i].kind, "endpoints") == 0)
                    rc = gpuview_set_endpoints(&v, body, n, "http", T0, err, sizeof(err));
                else if (strcmp(files[i].kind, "nodes") == 0)
                    rc = gpuview_set_nodes(&v, body, n, err, sizeof(err));
                else
                    rc = gpuview_set_pods(&v, body, n, err, sizeof(err));
                if (rc != 0 && (rc != GHE_INVAL || err[0] == '\0'))
                    fail_msg("%s cut at %zu, damage %zu: rc %d, \"%s\"", files[i].file, cut, d, rc,
                             err);
                gpuview_cleanup(&v);
                if (d < sizeof(damage) && cut < len)
                    body[cut] = saved;
            }
        }
        free(body);
    }
    gpuview_cleanup(&base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpuview_endpoints_name_agents_by_node),
        cmocka_unit_test(test_gpuview_bad_endpoints_say_where_and_change_nothing),
        cmocka_unit_test(test_gpuview_nodes_carry_gfd_labels_and_allocatable),
        cmocka_unit_test(test_gpuview_pods_count_requests_as_the_scheduler_does),
        cmocka_unit_test(test_gpuview_pods_pages_add_up_and_a_failed_list_falls_back),
        cmocka_unit_test(test_gpuview_agent_fit_skips_a_node_whose_gpus_are_all_requested),
        cmocka_unit_test(test_gpuview_agent_answers_give_figures_busy_and_sources),
        cmocka_unit_test(test_gpuview_refuses_bad_agent_answers_as_failed_polls),
        cmocka_unit_test(test_gpuview_agent_goes_stale_and_recovers),
        cmocka_unit_test(test_gpuview_fit_picks_the_node_with_most_free_and_names_it),
        cmocka_unit_test(test_gpuview_fit_breaks_ties_by_node_name_and_skips_broken_gpus),
        cmocka_unit_test(test_gpuview_fit_without_agents_uses_gfd_and_allocatable),
        cmocka_unit_test(test_gpuview_fit_without_any_source_says_no_cluster_view),
        cmocka_unit_test(test_gpuview_affinity_requires_memory_and_prefers_the_node),
        cmocka_unit_test(test_gpuview_affinity_in_a_run_passes_the_schemas),
        cmocka_unit_test(test_gpuview_json_shows_nodes_sources_stale_and_fit),
        cmocka_unit_test(test_gpuview_metrics_one_line_per_gpu),
        cmocka_unit_test(test_gpuview_bounds_nodes_and_gpus),
        cmocka_unit_test(test_gpuview_cut_or_damaged_inputs_are_refused_with_a_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
