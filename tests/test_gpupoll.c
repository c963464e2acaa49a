/*
 * The agent poller against real HTTP servers on loopback: fake agents
 * (tests/gpuview/fake_agent.py, serving the recorded H200 bodies of
 * tests/fixtures/gpu/) that answer, hang, answer garbage, answer too much,
 * answer 404, or go away and come back. The agents are found through an
 * EndpointSliceList, as the server will find them, and once through the lists
 * that the stand-in kube-apiserver (tests/kubeapi/) answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/error.h"
#include "gpuhook/fileio.h"
#include "gpuhook/gpupoll.h"
#include "gpuhook/gpuview.h"

#define T0 1764640000000LL
#define TIMEOUT_MS 500

static const char *AGENTS[] = {
    "gpu-a=serve:agent-h200-idle.json",
    "gpu-b=serve:agent-h200-busy.json",
    "gpu-c=serve:agent-h100x2.json",
    "gpu-hang=hang",
    "gpu-garbage=garbage",
    "gpu-huge=huge",
    "gpu-404=notfound",
    "gpu-flood=flood",
};
#define NAGENTS (sizeof(AGENTS) / sizeof(AGENTS[0]))

static pid_t agent_pid = -1;
static cJSON *ports;

static const char *src_dir(void) {
    const char *s = getenv("GPUHOOK_SOURCE_DIR");
    return s ? s : ".";
}

static int port_of(const char *name) {
    const cJSON *p = cJSON_GetObjectItem(ports, name);
    return p ? p->valueint : -1;
}

/* Starts the fake agents and reads their ports from the first line they print. */
static int agents_start(void **state) {
    (void)state;
    char script[1024], fixtures[1024], line[4096];
    const char *argv[NAGENTS + 5];
    int fds[2];
    snprintf(script, sizeof(script), "%s/tests/gpuview/fake_agent.py", src_dir());
    snprintf(fixtures, sizeof(fixtures), "%s/tests/fixtures/gpu", src_dir());
    argv[0] = "/usr/bin/python3";
    argv[1] = script;
    argv[2] = fixtures;
    for (size_t i = 0; i < NAGENTS; i++)
        argv[3 + i] = AGENTS[i];
    argv[3 + NAGENTS] = NULL;
    if (pipe(fds) != 0)
        return -1;
    agent_pid = fork();
    if (agent_pid < 0)
        return -1;
    if (agent_pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    if (!f || !fgets(line, sizeof(line), f)) {
        fprintf(stderr, "fake_agent.py printed no ports\n");
        return -1;
    }
    fclose(f);
    ports = cJSON_Parse(line);
    return ports && port_of("control") > 0 ? 0 : -1;
}

static int agents_stop(void **state) {
    (void)state;
    if (agent_pid > 0) {
        kill(agent_pid, SIGTERM);
        waitpid(agent_pid, NULL, 0);
    }
    cJSON_Delete(ports);
    return 0;
}

static size_t discard(char *d, size_t s, size_t n, void *u) {
    (void)d;
    (void)u;
    return s * n;
}

/* GET /stop/NAME, /start/NAME on the fake agents' control port. */
static void control(const char *verb, const char *name) {
    char url[256];
    long status = 0;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/%s/%s", port_of("control"), verb, name);
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    assert_int_equal(curl_easy_perform(h), CURLE_OK);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 200);
    curl_easy_cleanup(h);
}

/* One EndpointSlice per agent (each has its own port), all ready, on 127.0.0.1. */
static void view_of_agents(struct gpuview *v, const char *only) {
    struct gpuview_options o = {1000, 3};
    struct buf b;
    char err[256] = "";
    gpuview_init(v, &o);
    buf_init(&b, 1 << 16);
    assert_int_equal(buf_appends(&b, "{\"kind\":\"EndpointSliceList\",\"items\":["), 0);
    int n = 0;
    for (size_t i = 0; i < NAGENTS; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(AGENTS[i], "="), AGENTS[i]);
        if (only && strcmp(only, name) != 0)
            continue;
        assert_int_equal(
            buf_appendf(&b,
                        "%s{\"addressType\":\"IPv4\",\"ports\":[{\"name\":\"http\",\"port\":%d}],"
                        "\"endpoints\":[{\"addresses\":[\"127.0.0.1\"],\"nodeName\":\"%s\","
                        "\"conditions\":{\"ready\":true}}]}",
                        n++ ? "," : "", port_of(name), name),
            0);
    }
    assert_int_equal(buf_appends(&b, "]}"), 0);
    assert_int_equal(gpuview_set_endpoints(v, b.data, b.len, "http", T0, err, sizeof(err)), 0);
    buf_cleanup(&b);
}

static struct gpupoll *poller(void) {
    struct gpupoll_options o;
    gpupoll_options_init(&o);
    o.timeout_ms = TIMEOUT_MS;
    o.connect_timeout_ms = 250;
    struct gpupoll *p = gpupoll_new(&o);
    assert_non_null(p);
    return p;
}

static void assert_error_has(const struct gpuview *v, const char *node, const char *text) {
    const struct gpuview_node *n = gpuview_node_find(v, node);
    assert_non_null(n);
    if (!strstr(n->last_error, text))
        fail_msg("%s: last error \"%s\" lacks \"%s\"", node, n->last_error, text);
}

static void test_gpupoll_polls_all_agents_at_once_within_the_timeout(void **state) {
    (void)state;
    struct gpuview v;
    struct gpupoll *p = poller();
    view_of_agents(&v, NULL);
    long long start = clock_mono_ms();
    int answered = gpupoll_round(p, &v, T0 + 100);
    long long took = clock_mono_ms() - start;
    struct gpupoll_stats st = gpupoll_last(p);
    assert_int_equal(answered, 3);
    assert_int_equal(st.targets, NAGENTS);
    assert_int_equal(st.answered, 3);
    assert_int_equal(st.failed, 5);
    print_message("a round of %zu agents, one hanging: %lld ms (timeout %d ms)\n", NAGENTS, took,
                  TIMEOUT_MS);
    /*
     * One hanging agent costs its timeout once, not once per agent (which would be
     * 8 x 500 ms). The upper bound leaves room for a loaded machine.
     */
    if (took < TIMEOUT_MS - 50 || took > 3 * TIMEOUT_MS)
        fail_msg("a round took %lld ms with a %d ms timeout", took, TIMEOUT_MS);

    const struct gpuview_node *a = gpuview_node_find(&v, "gpu-a");
    assert_int_equal(a->agent_state, GPUVIEW_AGENT_FRESH);
    assert_int_equal(a->gpus[0].free_mib, 143152);
    assert_true(gpuview_node_find(&v, "gpu-b")->gpus[0].busy);
    assert_int_equal(gpuview_node_find(&v, "gpu-c")->gpus[1].free_mib, 70000);
    assert_error_has(&v, "gpu-hang", "Timeout was reached");
    assert_error_has(&v, "gpu-garbage", "agent body: not JSON");
    assert_error_has(&v, "gpu-huge", "answer over 262144 bytes");
    assert_error_has(&v, "gpu-404", "HTTP 404 from the agent");
    /* Without a Content-Length the bound is the write callback's. */
    assert_error_has(&v, "gpu-flood", "answer over 262144 bytes");
    assert_int_equal(gpuview_node_find(&v, "gpu-hang")->gpu_count, 0);

    struct gpuview_need original = {"original", 8192};
    struct gpuview_fit f;
    assert_int_equal(gpuview_fit(&v, &original, &f), 0);
    assert_string_equal(f.reason, "original fits on node gpu-a, GPU 0 (NVIDIA H200): 143152 MiB "
                                  "free, 8192 MiB needed");
    gpupoll_free(p);
    gpuview_cleanup(&v);
}

static void test_gpupoll_agent_that_goes_away_goes_stale_and_recovers(void **state) {
    (void)state;
    struct gpuview v;
    struct gpuview_fit f;
    struct gpuview_need original = {"original", 8192};
    struct gpupoll *p = poller();
    view_of_agents(&v, NULL);
    assert_int_equal(gpupoll_round(p, &v, T0), 3);
    control("stop", "gpu-a");
    /* The view's clock is driven here: each round stands for one 1000 ms interval. */
    for (int i = 1; i <= 3; i++)
        assert_int_equal(gpupoll_round(p, &v, T0 + 1000LL * i), 2);
    const struct gpuview_node *a = gpuview_node_find(&v, "gpu-a");
    assert_int_equal(a->agent_state, GPUVIEW_AGENT_STALE);
    assert_int_equal(a->failures, 3);
    assert_error_has(&v, "gpu-a", "Couldn't connect to server");

    assert_int_equal(gpuview_fit(&v, &original, &f), 0);
    assert_string_equal(f.node, "gpu-c");
    assert_int_equal(f.gpu_index, 1);
    char *body = gpuview_json(&v, T0 + 3000, NULL, NULL, 0, NULL);
    cJSON *o = cJSON_Parse(body);
    char *stale = cJSON_PrintUnformatted(cJSON_GetObjectItem(o, "stale_agents"));
    assert_string_equal(
        stale, "[\"gpu-404\",\"gpu-a\",\"gpu-flood\",\"gpu-garbage\",\"gpu-hang\",\"gpu-huge\"]");
    cJSON_free(stale);
    cJSON_Delete(o);
    cJSON_free(body);

    control("start", "gpu-a");
    assert_int_equal(gpupoll_round(p, &v, T0 + 4000), 3);
    assert_int_equal(gpuview_node_find(&v, "gpu-a")->agent_state, GPUVIEW_AGENT_FRESH);
    assert_int_equal(gpuview_node_find(&v, "gpu-a")->failures, 0);
    assert_int_equal(gpuview_fit(&v, &original, &f), 0);
    assert_string_equal(f.node, "gpu-a");
    gpupoll_free(p);
    gpuview_cleanup(&v);
}

static void *cancel_later(void *arg) {
    usleep(100 * 1000);
    gpupoll_cancel(arg);
    return NULL;
}

static void test_gpupoll_cancel_cuts_a_round_short(void **state) {
    (void)state;
    struct gpuview v;
    pthread_t t;
    struct gpupoll_options o;
    gpupoll_options_init(&o);
    o.timeout_ms = 5000;
    struct gpupoll *p = gpupoll_new(&o);
    view_of_agents(&v, "gpu-hang");
    assert_int_equal(gpupoll_prepare(p, &v), 1);
    long long start = clock_mono_ms();
    assert_int_equal(pthread_create(&t, NULL, cancel_later, p), 0);
    assert_int_equal(gpupoll_run(p), 0);
    long long took = clock_mono_ms() - start;
    pthread_join(t, NULL);
    if (took > 1000)
        fail_msg("a cancelled round took %lld ms", took);
    assert_int_equal(gpupoll_apply(p, &v, T0 + 10), 0);
    assert_error_has(&v, "gpu-hang", "poll cancelled");
    gpupoll_free(p);
    gpuview_cleanup(&v);
}

static void test_gpupoll_drops_results_of_agents_that_left_the_view(void **state) {
    (void)state;
    struct gpuview v;
    char err[256];
    struct gpupoll *p = poller();
    view_of_agents(&v, "gpu-a");
    assert_int_equal(gpupoll_prepare(p, &v), 1);
    assert_int_equal(gpupoll_run(p), 0);
    /* Meanwhile the EndpointSlices change: gpu-a is gone. */
    const char *none = "{\"items\":[]}";
    assert_int_equal(gpuview_set_endpoints(&v, none, strlen(none), "http", T0, err, sizeof(err)),
                     0);
    assert_int_equal(gpupoll_apply(p, &v, T0 + 10), 0);
    assert_null(gpuview_node_find(&v, "gpu-a"));
    assert_int_equal(gpupoll_prepare(p, &v), 0);
    gpupoll_free(p);
    gpuview_cleanup(&v);
}

/* Reads a file the stand-in API's lists were written to (caller frees). */
static char *slurp(const char *dir, const char *name, size_t *len) {
    char path[1024], err[256];
    char *out = NULL;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (fileio_read(path, 1 << 20, 0, &out, len, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return out;
}

/*
 * The agents and GPU Nodes as the stand-in kube-apiserver (tests/kubeapi/)
 * lists them, through tests/gpuview/kubeapi_lists.py: the view finds the
 * agents by the Service's EndpointSlices, the poller reaches them, the fit
 * names the node, and the affinity requires GFD's memory label.
 */
static void test_gpupoll_agents_and_nodes_as_the_api_lists_them(void **state) {
    (void)state;
    char dir[] = "/tmp/gpupoll-api-XXXXXX", cmd[2048], err[256] = "";
    size_t len;
    struct gpuview v;
    struct gpuview_fit f;
    struct gpuview_need original = {"original", 8192};
    struct gpuview_options o = {1000, 3};
    assert_non_null(mkdtemp(dir));
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 %s/tests/gpuview/kubeapi_lists.py %s %s gpu-a=%d gpu-b=%d "
             "gpu-c=%d",
             src_dir(), src_dir(), dir, port_of("gpu-a"), port_of("gpu-b"), port_of("gpu-c"));
    assert_int_equal(system(cmd), 0);
    char *slices = slurp(dir, "endpointslices.json", &len);
    size_t nlen;
    char *nodes = slurp(dir, "nodes.json", &nlen);

    /* GFD only, before any agent answers: the H200 nodes fit by their model. */
    gpuview_init(&v, &o);
    assert_int_equal(gpuview_set_nodes(&v, nodes, nlen, err, sizeof(err)), 0);
    assert_int_equal(v.count, 3);
    assert_int_equal(gpuview_fit(&v, &original, &f), 0);
    assert_true(f.fits);
    assert_int_equal(f.source, GPUVIEW_SRC_GFD);
    assert_string_equal(f.node, "gpu-a");

    assert_int_equal(gpuview_set_endpoints(&v, slices, len, "http", T0, err, sizeof(err)), 0);
    assert_null(gpuview_node_find(&v, "cpu-1")); /* another Service's slice is not listed */
    struct gpupoll *p = poller();
    assert_int_equal(gpupoll_round(p, &v, T0 + 10), 3);
    assert_int_equal(gpuview_fit(&v, &original, &f), 0);
    assert_int_equal(f.source, GPUVIEW_SRC_AGENT);
    assert_string_equal(f.reason, "original fits on node gpu-a, GPU 0 (NVIDIA H200): 143152 MiB "
                                  "free, 8192 MiB needed");
    cJSON *aff = gpuview_affinity(&v, &f, true);
    char *text = cJSON_PrintUnformatted(aff);
    assert_non_null(strstr(text, "{\"key\":\"nvidia.com/gpu.memory\",\"operator\":\"Gt\","
                                 "\"values\":[\"8191\"]}"));
    assert_non_null(strstr(text, "{\"key\":\"kubernetes.io/hostname\",\"operator\":\"In\","
                                 "\"values\":[\"gpu-a\"]}"));
    cJSON_free(text);
    cJSON_Delete(aff);
    gpupoll_free(p);
    gpuview_cleanup(&v);
    free(slices);
    free(nodes);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gpupoll_polls_all_agents_at_once_within_the_timeout),
        cmocka_unit_test(test_gpupoll_agent_that_goes_away_goes_stale_and_recovers),
        cmocka_unit_test(test_gpupoll_cancel_cuts_a_round_short),
        cmocka_unit_test(test_gpupoll_drops_results_of_agents_that_left_the_view),
        cmocka_unit_test(test_gpupoll_agents_and_nodes_as_the_api_lists_them),
    };
    int rc = cmocka_run_group_tests(tests, agents_start, agents_stop);
    curl_global_cleanup();
    return rc;
}
