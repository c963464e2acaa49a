/*
 * Unit tests for the route table and the HTTP layer's request API, driven
 * without a socket: http_request_new/add_header/begin/upload/finish/free on
 * routes.c's table (webhook, trigger, probes) and on a table of the test's
 * own, which checks the per-request state, the hooks' order and an answer
 * that comes from another thread (suspend/resume).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "gpuhook/http.h"
#include "routes.h"

#include "testapp.h"

struct answer {
    int status;
    char body[1 << 16];
    const char *content_type;
    const char *route;
    char www_authenticate[64];
    char log_pipelinerun[80];
    char log_delivery[80];
};

/* One request through the table; body may be NULL. */
static void run_request(struct testapp *t, const struct http_routes *routes, const char *method,
                        const char *path, const char *const *headers, const char *body,
                        struct answer *a) {
    char cl[32], bare[256];
    memset(a, 0, sizeof(*a));
    snprintf(bare, sizeof(bare), "%.*s", (int)strcspn(path, "?"), path);
    struct http_request *req = http_request_new(&t->app, routes, method, bare);
    assert_non_null(req);
    for (const char *const *h = headers; h && *h; h += 2)
        http_request_add_header(req, h[0], h[1]);
    if (body) {
        snprintf(cl, sizeof(cl), "%zu", strlen(body));
        http_request_add_header(req, "Content-Length", cl);
    }
    const char *q = strchr(path, '?');
    if (q && strcmp(q + 1, "dry_run=true") == 0)
        http_request_add_arg(req, "dry_run", "true");
    if (!http_request_begin(req)) {
        if (body && *body)
            assert_true(http_request_upload(req, body, strlen(body)));
        http_request_finish(req);
    }
    a->status = req->status;
    assert_true(req->out.len < sizeof(a->body));
    memcpy(a->body, req->out.data ? req->out.data : "", req->out.len);
    a->content_type = req->content_type;
    a->route = req->route_name;
    for (size_t i = 0; i < req->extra_count; i++)
        if (strcmp(req->extra[i].name, "WWW-Authenticate") == 0)
            snprintf(a->www_authenticate, sizeof(a->www_authenticate), "%s", req->extra[i].value);
    for (size_t i = 0; i < HTTP_LOG_FIELDS; i++) {
        if (req->log[i].key && strcmp(req->log[i].key, "pipelinerun") == 0)
            snprintf(a->log_pipelinerun, sizeof(a->log_pipelinerun), "%s", req->log[i].value);
        if (req->log[i].key && strcmp(req->log[i].key, "delivery") == 0)
            snprintf(a->log_delivery, sizeof(a->log_delivery), "%s", req->log[i].value);
    }
    http_request_free(req);
}

static const char *json_field(const char *body, const char *key, char *out, size_t n) {
    cJSON *o = cJSON_Parse(body);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(out, n, "%s", cJSON_IsString(v) ? v->valuestring : "");
    cJSON_Delete(o);
    return out;
}

static void test_routes_table_lists_every_route(void **state) {
    static const char *const names[] = {"webhook", "trigger", "healthz",
                                        "readyz",  "gpu",     "metrics", "queue"};
    (void)state;
    assert_int_equal(routes_table.count, sizeof(names) / sizeof(names[0]));
    for (size_t i = 0; i < routes_table.count; i++) {
        assert_string_equal(routes_table.list[i]->name, names[i]);
        assert_true(routes_table.list[i]->path[0] == '/');
        assert_non_null(routes_table.list[i]->finish);
    }
}

static void test_routes_unknown_path_and_method(void **state) {
    struct testapp *t = testapp_new("dry-run", false);
    struct answer a;
    char v[256];
    (void)state;

    run_request(t, &routes_table, "GET", "/nowhere", NULL, NULL, &a);
    assert_int_equal(a.status, 404);
    assert_string_equal(a.route, "other");
    assert_string_equal(json_field(a.body, "error", v, sizeof(v)), "no such endpoint: /nowhere");

    run_request(t, &routes_table, "GET", "/webhook", NULL, NULL, &a);
    assert_int_equal(a.status, 405);
    assert_string_equal(a.route, "webhook");
    testapp_free(t);
}

static void test_routes_probes(void **state) {
    struct testapp *t = testapp_new("dry-run", false);
    struct answer a;
    char v[64];
    (void)state;

    run_request(t, &routes_table, "GET", "/healthz", NULL, NULL, &a);
    assert_int_equal(a.status, 200);
    assert_null(a.content_type);
    assert_string_equal(json_field(a.body, "status", v, sizeof(v)), "ok");

    run_request(t, &routes_table, "HEAD", "/readyz", NULL, NULL, &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_field(a.body, "status", v, sizeof(v)), "ok");

    run_request(t, &routes_table, "GET", "/metrics", NULL, NULL, &a);
    assert_int_equal(a.status, 200);
    assert_non_null(a.content_type);
    assert_true(strncmp(a.content_type, "text/plain", 10) == 0);
    assert_non_null(strstr(a.body, "gpuhook_http_requests_total"));
    testapp_free(t);
}

#define TRIGGER_BODY "{\"variant\":\"lite\",\"revision\":\"0123456789abcdef\"}"

static void test_routes_trigger_checks_and_answers(void **state) {
    struct testapp *t = testapp_new("dry-run", false);
    const char *const bad[] = {"Authorization", "Bearer wrong", "Content-Type", "application/json",
                               NULL};
    const char *const good[] = {"Authorization", "Bearer " TESTAPP_TOKEN, "Content-Type",
                                "application/json", NULL};
    struct answer a;
    char v[64];
    (void)state;

    run_request(t, &routes_table, "POST", "/trigger", bad, TRIGGER_BODY, &a);
    assert_int_equal(a.status, 401);
    assert_string_equal(a.www_authenticate, "Bearer realm=\"gpuhook\"");

    run_request(t, &routes_table, "POST", "/trigger?dry_run=true", good, TRIGGER_BODY, &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_field(a.body, "status", v, sizeof(v)), "dry_run");
    assert_string_equal(json_field(a.body, "variant", v, sizeof(v)), "lite");
    assert_true(a.log_pipelinerun[0] != '\0');

    run_request(t, &routes_table, "POST", "/trigger", good, "{\"revision\":7}", &a);
    assert_int_equal(a.status, 400);
    assert_string_equal(json_field(a.body, "error", v, sizeof(v)),
                        "revision: required, a non-empty string, not 7");
    testapp_free(t);
}

/* Through the local sink's work pool: finish suspends, the pool's thread resumes. */
static void test_routes_trigger_local_sink_resumes(void **state) {
    struct testapp *t = testapp_new("local", true);
    const char *const good[] = {"Authorization",
                                "Bearer " TESTAPP_TOKEN,
                                "Content-Type",
                                "application/json",
                                "Idempotency-Key",
                                "unit-key-1",
                                NULL};
    struct answer a;
    char v[128];
    (void)state;

    run_request(t, &routes_table, "POST", "/trigger", good, TRIGGER_BODY, &a);
    assert_int_equal(a.status, 201);
    assert_string_equal(json_field(a.body, "status", v, sizeof(v)), "created");
    assert_string_equal(json_field(a.body, "delivery", v, sizeof(v)), "unit-key-1");
    assert_string_equal(a.log_delivery, "unit-key-1");
    assert_string_equal(json_field(a.body, "pipelinerun", v, sizeof(v)), a.log_pipelinerun);

    run_request(t, &routes_table, "POST", "/trigger", good, TRIGGER_BODY, &a);
    assert_int_equal(a.status, 200);
    assert_string_equal(json_field(a.body, "status", v, sizeof(v)), "exists");

    /* The same key with another body is refused, and says why. */
    run_request(t, &routes_table, "POST", "/trigger", good,
                "{\"variant\":\"original\",\"revision\":\"0123456789abcdef\"}", &a);
    assert_int_equal(a.status, 422);
    testapp_free(t);
}

static void sign(const char *body, char out[80]) {
    unsigned char mac[32];
    unsigned int n = 0;
    HMAC(EVP_sha256(), TESTAPP_SECRET, (int)strlen(TESTAPP_SECRET), (const unsigned char *)body,
         strlen(body), mac, &n);
    strcpy(out, "sha256=");
    for (unsigned int i = 0; i < n; i++)
        sprintf(out + 7 + 2 * i, "%02x", mac[i]);
}

static void test_routes_webhook_signature_and_dry_run(void **state) {
    struct testapp *t = testapp_new("dry-run", false);
    char path[1024], sig[80], v[64];
    struct answer a;
    (void)state;

    testapp_source(path, sizeof(path), "tests/fixtures/github/push_one-commit.json");
    char *body = testapp_slurp(path, NULL);
    sign(body, sig);
    const char *headers[] = {"X-GitHub-Event",
                             "push",
                             "X-GitHub-Delivery",
                             "d0b8c2a0-0000-4000-8000-000000000001",
                             "Content-Type",
                             "application/json",
                             "X-Hub-Signature-256",
                             sig,
                             NULL};
    run_request(t, &routes_table, "POST", "/webhook", headers, body, &a);
    assert_int_equal(a.status, 200);
    if (strcmp(json_field(a.body, "status", v, sizeof(v)), "dry_run") != 0)
        print_error("%s\n", a.body);
    assert_string_equal(json_field(a.body, "status", v, sizeof(v)), "dry_run");
    assert_string_equal(a.route, "webhook");

    headers[7] = "sha256=0000000000000000000000000000000000000000000000000000000000000000";
    run_request(t, &routes_table, "POST", "/webhook", headers, body, &a);
    assert_int_equal(a.status, 401);
    free(body);
    testapp_free(t);
}

/* A route of the test's own: state, hook order, an answer from another thread. */
struct probe_state {
    int begun;
    size_t bytes;
    pthread_t thread;
    bool started;
    struct http_request *req;
};

static int probe_cleanups;

static void *probe_later(void *arg) {
    struct probe_state *st = arg;
    struct timespec ts = {0, 20 * 1000000L};
    nanosleep(&ts, NULL);
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"bytes\":%zu,\"begun\":%d}", st->bytes, st->begun);
    http_respond(st->req, 207, "application/x-test", body, (size_t)n);
    http_request_resume(st->req);
    return NULL;
}

static enum http_step probe_begin(struct http_request *req, void *state) {
    struct probe_state *st = state;
    assert_int_equal(st->begun, 0); /* zeroed */
    st->begun++;
    st->req = req;
    return HTTP_CONTINUE;
}

static enum http_step probe_upload(struct http_request *req, void *state, const char *data,
                                   size_t len) {
    struct probe_state *st = state;
    (void)req;
    (void)data;
    st->bytes += len;
    return HTTP_CONTINUE;
}

static enum http_step probe_finish(struct http_request *req, void *state) {
    struct probe_state *st = state;
    (void)req;
    assert_int_equal(pthread_create(&st->thread, NULL, probe_later, st), 0);
    st->started = true;
    return HTTP_SUSPENDED;
}

static void probe_cleanup(struct http_request *req, void *state) {
    struct probe_state *st = state;
    (void)req;
    if (st->started)
        pthread_join(st->thread, NULL);
    probe_cleanups++;
}

static const struct http_route probe_route = {
    .path = "/probe",
    .name = "probe",
    .method = "POST",
    .allow = "POST",
    .body_max = 16,
    .state_size = sizeof(struct probe_state),
    .begin = probe_begin,
    .upload = probe_upload,
    .finish = probe_finish,
    .cleanup = probe_cleanup,
};

static const struct http_route *const probe_list[] = {&probe_route};
static const struct http_routes probe_table = {probe_list, 1};

static void test_routes_own_table_state_and_resume(void **state) {
    struct testapp *t = testapp_new("dry-run", false);
    struct answer a;
    (void)state;

    probe_cleanups = 0;
    run_request(t, &probe_table, "POST", "/probe", NULL, "0123456789", &a);
    assert_int_equal(a.status, 207);
    assert_string_equal(a.content_type, "application/x-test");
    assert_string_equal(a.body, "{\"bytes\":10,\"begun\":1}");
    assert_string_equal(a.route, "probe");
    assert_int_equal(probe_cleanups, 1);

    /* The route's body limit holds before a byte is read; routes.c's table is not consulted. */
    run_request(t, &probe_table, "POST", "/probe", NULL, "0123456789abcdefXYZ", &a);
    assert_int_equal(a.status, 413);
    assert_int_equal(probe_cleanups, 2); /* begin never ran; cleanup sees the zeroed state */
    run_request(t, &probe_table, "POST", "/healthz", NULL, NULL, &a);
    assert_int_equal(a.status, 404);
    testapp_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_table_lists_every_route),
        cmocka_unit_test(test_routes_unknown_path_and_method),
        cmocka_unit_test(test_routes_probes),
        cmocka_unit_test(test_routes_trigger_checks_and_answers),
        cmocka_unit_test(test_routes_trigger_local_sink_resumes),
        cmocka_unit_test(test_routes_webhook_signature_and_dry_run),
        cmocka_unit_test(test_routes_own_table_state_and_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
