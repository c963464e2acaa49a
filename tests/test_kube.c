/*
 * Unit tests for kube.c against an in-process API server (libmicrohttpd on a
 * loopback port): the request's shape, which answers are final and which are
 * retried, Retry-After, the deadline, token re-reading after a 401, many
 * concurrent creates over few connections, and kube_free failing the jobs it
 * still holds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "gpuhook/buf.h"
#include "gpuhook/config.h"
#include "gpuhook/error.h"
#include "gpuhook/kube.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"
#include "gpuhook/retryafter.h"

#define NS "tekton-pipelines"
#define RUNS_PATH "/apis/tekton.dev/v1/namespaces/" NS "/pipelineruns"
#define SCRIPT_MAX 8

/* One scripted answer; the last one repeats. */
struct answer {
    int status;
    const char *retry_after; /* header value, or NULL */
    const char *message;     /* a Status message for the body, or NULL */
};

/* The stand-in API server and what it saw. */
struct fake_api {
    struct MHD_Daemon *daemon;
    int port;
    pthread_mutex_t lock;
    struct answer script[SCRIPT_MAX];
    size_t script_len;
    size_t next;
    char token[64]; /* the bearer token it accepts; empty accepts any */
    int delay_ms;   /* how long each answer takes, until released */
    atomic_bool released;
    int posts;
    int connections;
    char method[16];
    char url[256];
    char query[64];
    char auth[128];
    char auths[4][128]; /* the first few Authorization headers */
    struct buf body;    /* the last POST body */
};

struct fake_request {
    struct buf body;
};

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void fake_notify(void *cls, struct MHD_Connection *c, void **socket_context,
                        enum MHD_ConnectionNotificationCode toe) {
    struct fake_api *api = cls;
    (void)c;
    (void)socket_context;
    if (toe != MHD_CONNECTION_NOTIFY_STARTED)
        return;
    pthread_mutex_lock(&api->lock);
    api->connections++;
    pthread_mutex_unlock(&api->lock);
}

static void fake_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                           enum MHD_RequestTerminationCode toe) {
    struct fake_request *fr = *req_cls;
    (void)cls;
    (void)c;
    (void)toe;
    if (!fr)
        return;
    buf_cleanup(&fr->body);
    free(fr);
    *req_cls = NULL;
}

static enum MHD_Result fake_access(void *cls, struct MHD_Connection *c, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **req_cls) {
    struct fake_api *api = cls;
    struct fake_request *fr = *req_cls;
    (void)version;

    if (!fr) {
        fr = calloc(1, sizeof(*fr));
        if (!fr)
            return MHD_NO;
        buf_init(&fr->body, 4 * 1024 * 1024);
        *req_cls = fr;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (buf_append(&fr->body, upload_data, *upload_data_size) != 0)
            return MHD_NO;
        *upload_data_size = 0;
        return MHD_YES;
    }
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *fv = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "fieldValidation");
    char want[128];
    struct answer a;

    pthread_mutex_lock(&api->lock);
    snprintf(want, sizeof(want), "Bearer %s", api->token);
    if (strcmp(method, "POST") == 0) {
        if (api->posts < 4)
            snprintf(api->auths[api->posts], sizeof(api->auths[0]), "%s", auth ? auth : "");
        api->posts++;
    }
    snprintf(api->method, sizeof(api->method), "%s", method);
    snprintf(api->url, sizeof(api->url), "%s", url);
    snprintf(api->query, sizeof(api->query), "%s", fv ? fv : "");
    snprintf(api->auth, sizeof(api->auth), "%s", auth ? auth : "");
    buf_cleanup(&api->body);
    buf_init(&api->body, 4 * 1024 * 1024);
    buf_append(&api->body, fr->body.data ? fr->body.data : "", fr->body.len);
    if (api->token[0] && (!auth || strcmp(auth, want) != 0)) {
        a = (struct answer){401, NULL, "Unauthorized"};
    } else {
        a = api->script[api->next];
        if (api->next + 1 < api->script_len)
            api->next++;
    }
    pthread_mutex_unlock(&api->lock);
    for (int waited = 0; waited < api->delay_ms && !atomic_load(&api->released); waited += 10)
        usleep(10 * 1000);

    /* A created object that happens to carry a "message" key, to show 2xx bodies go unread. */
    char body[512];
    /* A real apiserver gives 409 "... already exists" the reason AlreadyExists. */
    const char *reason = a.status == 409 && a.message && strstr(a.message, "already exists")
                             ? ",\"reason\":\"AlreadyExists\""
                             : "";
    if (a.message)
        snprintf(body, sizeof(body),
                 "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\","
                 "\"message\":\"%s\"%s,\"code\":%d}",
                 a.message, reason, a.status);
    else if (a.status >= 200 && a.status <= 299)
        snprintf(body, sizeof(body), "{\"kind\":\"PipelineRun\",\"message\":\"not a Status\"}");
    else
        snprintf(body, sizeof(body), "no JSON here");
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (a.retry_after)
        MHD_add_response_header(resp, "Retry-After", a.retry_after);
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)a.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static struct fake_api *fake_start(const struct answer *script, size_t n) {
    struct fake_api *api = calloc(1, sizeof(*api));
    struct sockaddr_in sa;

    assert_non_null(api);
    assert_true(n >= 1 && n <= SCRIPT_MAX);
    memcpy(api->script, script, n * sizeof(*script));
    api->script_len = n;
    pthread_mutex_init(&api->lock, NULL);
    buf_init(&api->body, 4 * 1024 * 1024);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* A thread per connection, so that a delayed answer holds up only its own. */
    api->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ERROR_LOG, 0,
        NULL, NULL, fake_access, api, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_NOTIFY_CONNECTION, fake_notify, api, MHD_OPTION_NOTIFY_COMPLETED, fake_completed,
        api, MHD_OPTION_END);
    assert_non_null(api->daemon);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(api->daemon, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(info);
    api->port = info->port;
    return api;
}

static void fake_stop(struct fake_api *api) {
    atomic_store(&api->released, true);
    MHD_stop_daemon(api->daemon);
    buf_cleanup(&api->body);
    pthread_mutex_destroy(&api->lock);
    free(api);
}

static int fake_posts(struct fake_api *api) {
    pthread_mutex_lock(&api->lock);
    int n = api->posts;
    pthread_mutex_unlock(&api->lock);
    return n;
}

static struct kube *kube_for(const struct fake_api *api, const char *token_file) {
    struct config cfg;
    struct errlist el;
    struct kube *k = NULL;
    char url[64];

    memset(&cfg, 0, sizeof(cfg));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", api->port);
    cfg.kube_mode = CONFIG_KUBE_URL;
    cfg.kube_url = url;
    cfg.kube_namespace = NS;
    cfg.kube_token_file = (char *)token_file;
    cfg.kube_timeout_seconds = 5;
    errlist_init(&el);
    assert_int_equal(kube_new(&cfg, &k, &el), 0);
    errlist_cleanup(&el);
    return k;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

static const char run_json[] =
    "{\"apiVersion\":\"tekton.dev/v1\",\"kind\":\"PipelineRun\","
    "\"metadata\":{\"name\":\"gpu-run-0123456789\",\"namespace\":\"" NS "\"}}";

static int group_setup(void **state) {
    (void)state;
    logger_set_level(LOGGER_ERROR + 1);
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    curl_global_cleanup();
    return 0;
}

static void test_kube_create_posts_the_run_with_strict_validation_and_bearer(void **state) {
    static const struct answer script[] = {{201, NULL, NULL}};
    struct fake_api *api = fake_start(script, 1);
    char tok[] = "/tmp/gpuhook-test-kube-token-XXXXXX";
    int fd = mkstemp(tok);
    struct kube_result r;
    struct buf big;
    (void)state;

    assert_true(fd >= 0);
    close(fd);
    write_file(tok, "token-one\n");
    struct kube *k = kube_for(api, tok);
    /* A body bigger than one socket read, with every byte value JSON allows in a string. */
    buf_init(&big, 1024 * 1024);
    assert_int_equal(buf_appends(&big, "{\"kind\":\"PipelineRun\",\"spec\":{\"x\":\""), 0);
    for (int i = 0; i < 300 * 1024; i++)
        assert_int_equal(buf_append(&big, &"abcdefghijklmnopqrstuvwxyz0123456789"[i % 36], 1), 0);
    assert_int_equal(buf_appends(&big, "\"}}"), 0);

    assert_int_equal(kube_create(k, NS, big.data, big.len, 3000, &r), 0);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.attempts, 1);
    /* A 2xx body is not read for a Status message. */
    assert_string_equal(r.message, "");
    assert_int_equal(fake_posts(api), 1);
    assert_string_equal(api->method, "POST");
    assert_string_equal(api->url, RUNS_PATH);
    assert_string_equal(api->query, "Strict");
    assert_string_equal(api->auth, "Bearer token-one");
    assert_int_equal(api->body.len, big.len);
    assert_memory_equal(api->body.data, big.data, big.len);

    kube_free(k);
    fake_stop(api);
    buf_cleanup(&big);
    unlink(tok);
}

/* A table of scripted answers and what kube_create must make of them. */
struct retry_case {
    const char *name;
    struct answer script[3];
    size_t script_len;
    int status;
    int attempts;
    const char *message; /* expected r.message, or NULL not to check */
};

static const struct retry_case retry_cases[] = {
    {"409 AlreadyExists is final", {{409, NULL, "already exists"}}, 1, 409, 1, "already exists"},
    {"409 Conflict retries",
     {{409, NULL,
       "Operation cannot be fulfilled on resourcequotas q: the object has been modified"},
      {201, NULL, NULL}},
     2,
     201,
     2,
     NULL},
    {"413 is final", {{413, NULL, "Request entity too large: limit is 3145728"}}, 1, 413, 1, NULL},
    {"415 is final", {{415, NULL, "unsupported media type"}}, 1, 415, 1, NULL},
    {"403 goes to the spool at once", {{403, NULL, "forbidden"}}, 1, 403, 1, "forbidden"},
    {"404 goes to the spool at once", {{404, NULL, "no CRD yet"}}, 1, 404, 1, NULL},
    {"401 twice: re-read, retried once, then spooled",
     {{401, NULL, "Unauthorized"}},
     1,
     401,
     2,
     NULL},
    {"422 is final with its Status message",
     {{422, NULL, "spec.params: Invalid value"}},
     1,
     422,
     1,
     "spec.params: Invalid value"},
    {"400 without a Status gets a fallback message",
     {{400, NULL, NULL}},
     1,
     400,
     1,
     "HTTP 400 from the API server"},
    {"503 then 201 retries", {{503, NULL, "busy"}, {201, NULL, NULL}}, 2, 201, 2, NULL},
    {"429 with Retry-After: 0 retries at once",
     {{429, "0", "slow down"}, {201, NULL, NULL}},
     2,
     201,
     2,
     NULL},
    {"408 then 503 then 201 retries both",
     {{408, NULL, "timeout"}, {503, NULL, "busy"}, {201, NULL, NULL}},
     3,
     201,
     3,
     NULL},
};

static void test_kube_create_retries_only_transient_answers(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(retry_cases) / sizeof(retry_cases[0]); i++) {
        const struct retry_case *c = &retry_cases[i];
        struct fake_api *api = fake_start(c->script, c->script_len);
        struct kube *k = kube_for(api, NULL);
        struct kube_result r;

        print_message("case: %s\n", c->name);
        assert_int_equal(kube_create(k, NS, run_json, strlen(run_json), 5000, &r), 0);
        assert_int_equal(r.status, c->status);
        assert_int_equal(r.attempts, c->attempts);
        assert_int_equal(fake_posts(api), c->attempts);
        if (c->message)
            assert_string_equal(r.message, c->message);
        kube_free(k);
        fake_stop(api);
    }
}

static void test_kube_create_gives_up_at_the_deadline(void **state) {
    static const struct answer script[] = {{503, NULL, "etcd is down"}};
    struct fake_api *api = fake_start(script, 1);
    struct kube *k = kube_for(api, NULL);
    struct kube_result r;
    (void)state;

    long t0 = now_ms();
    assert_int_equal(kube_create(k, NS, run_json, strlen(run_json), 800, &r), 0);
    long took = now_ms() - t0;
    assert_int_equal(r.status, 503);
    assert_string_equal(r.message, "etcd is down");
    assert_true(r.attempts >= 2);
    assert_int_equal(fake_posts(api), r.attempts);
    assert_true(took < 3000);
    kube_free(k);
    fake_stop(api);
}

static void test_kube_create_rereads_the_token_after_a_401(void **state) {
    static const struct answer script[] = {{201, NULL, NULL}};
    struct fake_api *api = fake_start(script, 1);
    char tok[] = "/tmp/gpuhook-test-kube-token-XXXXXX";
    int fd = mkstemp(tok);
    struct kube_result r;
    (void)state;

    assert_true(fd >= 0);
    close(fd);
    write_file(tok, "token-one\n");
    snprintf(api->token, sizeof(api->token), "token-one");
    struct kube *k = kube_for(api, tok);
    assert_int_equal(kube_create(k, NS, run_json, strlen(run_json), 3000, &r), 0);
    assert_int_equal(r.status, 201);

    /* The file and the API rotate together; the client still holds the old token. */
    write_file(tok, "token-two-longer\n");
    pthread_mutex_lock(&api->lock);
    snprintf(api->token, sizeof(api->token), "token-two-longer");
    pthread_mutex_unlock(&api->lock);
    assert_int_equal(kube_create(k, NS, run_json, strlen(run_json), 3000, &r), 0);
    assert_int_equal(r.status, 201);
    assert_int_equal(r.attempts, 2);
    assert_int_equal(fake_posts(api), 3);
    assert_string_equal(api->auths[0], "Bearer token-one");
    assert_string_equal(api->auths[1], "Bearer token-one");
    assert_string_equal(api->auths[2], "Bearer token-two-longer");
    kube_free(k);
    fake_stop(api);
    unlink(tok);
}

static void test_kube_create_async_with_no_time_left_makes_no_attempt(void **state) {
    static const struct answer script[] = {{201, NULL, NULL}};
    struct fake_api *api = fake_start(script, 1);
    struct kube *k = kube_for(api, NULL);
    struct kube_result r;
    (void)state;

    assert_int_equal(kube_create(k, NS, run_json, strlen(run_json), 10, &r), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.attempts, 0);
    assert_int_equal(fake_posts(api), 0);
    kube_free(k);
    fake_stop(api);
}

/* Retry-After in both forms (RFC 9110 10.2.3), clamped, and never an overflow. */
static void test_retry_after_parses_both_forms_and_clamps(void **state) {
    /* Sun, 06 Nov 1994 08:49:37 GMT */
    const time_t now = 784111777;
    static const struct {
        const char *v;
        long want;
    } cases[] = {
        {"0", 0},
        {"5", 5},
        {" 120\r\n", 120},
        {"99999999999999999999", RETRY_AFTER_MAX_SECONDS},
        {"184467440737095516160000", RETRY_AFTER_MAX_SECONDS},
        {"86401", RETRY_AFTER_MAX_SECONDS},
        {"-1", -1},
        {"5s", -1},
        {"1.5", -1},
        {"", -1},
        {"Sun, 06 Nov 1994 08:49:47 GMT", 10},
        {"Sun, 06 Nov 1994 08:49:37 GMT", 0},
        {"Sat, 05 Nov 1994 08:49:37 GMT", 0}, /* the past: at once */
        {"Sunday, 06-Nov-94 08:50:37 GMT", 60},
        {"Sun Nov  6 08:51:37 1994", 120},
        {"Fri, 31 Dec 9999 23:59:59 GMT", RETRY_AFTER_MAX_SECONDS},
        {"Sun, 06 Nov 1994 08:49:47 UTC", -1},
        {"Sun, 06 Nov 1994 25:49:47 GMT", -1},
        {"Sun, 06 Foo 1994 08:49:47 GMT", -1},
        {"Sun, 6 Nov 1994 08:49:47 GMT", -1},
        {"soon", -1},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long got = retry_after_parse(cases[i].v, strlen(cases[i].v), now);
        if (got != cases[i].want)
            fail_msg("Retry-After \"%s\": got %ld, want %ld", cases[i].v, got, cases[i].want);
    }
    assert_int_equal(retry_after_parse(NULL, 0, now), -1);
}

/* The one table of answers. */
static void test_kube_answer_table(void **state) {
    (void)state;
    assert_int_equal(kube_answer_of(201, NULL), KUBE_ANSWER_CREATED);
    assert_int_equal(kube_answer_of(409, "AlreadyExists"), KUBE_ANSWER_EXISTS);
    assert_int_equal(kube_answer_of(409, "Conflict"), KUBE_ANSWER_RETRY);
    assert_int_equal(kube_answer_of(409, NULL), KUBE_ANSWER_RETRY);
    for (int c = 0; c < 4; c++)
        assert_int_equal(kube_answer_of((int[]){400, 413, 415, 422}[c], "x"), KUBE_ANSWER_REFUSED);
    assert_int_equal(kube_answer_of(401, NULL), KUBE_ANSWER_UNAUTHORIZED);
    assert_int_equal(kube_answer_of(403, NULL), KUBE_ANSWER_BLOCKED);
    assert_int_equal(kube_answer_of(404, NULL), KUBE_ANSWER_BLOCKED);
    for (int c = 0; c < 6; c++)
        assert_int_equal(kube_answer_of((int[]){0, 408, 429, 500, 503, 504}[c], NULL),
                         KUBE_ANSWER_RETRY);
    assert_string_equal(kube_answer_name(KUBE_ANSWER_REFUSED), "refused");
}

#define BURST_THREADS 8
#define BURST_PER_THREAD 25
#define BURST_JOBS (BURST_THREADS * BURST_PER_THREAD)

struct burst {
    struct kube *k;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int finished;
    atomic_int calls[BURST_JOBS];
    atomic_int status[BURST_JOBS];
    atomic_int attempts[BURST_JOBS];
    atomic_int message_ok[BURST_JOBS];
};

struct burst_slot {
    struct burst *b;
    int index;
};

static void burst_done(void *arg, const struct kube_result *r) {
    struct burst_slot *s = arg;
    struct burst *b = s->b;
    atomic_fetch_add(&b->calls[s->index], 1);
    atomic_store(&b->status[s->index], r->status);
    atomic_store(&b->attempts[s->index], r->attempts);
    atomic_store(&b->message_ok[s->index],
                 strcmp(r->message, "the API client is shutting down") == 0);
    pthread_mutex_lock(&b->lock);
    b->finished++;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
}

struct burst_thread {
    struct burst *b;
    struct burst_slot slots[BURST_PER_THREAD];
    int first;
    int count;
    long deadline_ms;
};

static void *burst_main(void *arg) {
    struct burst_thread *t = arg;
    for (int i = 0; i < t->count; i++) {
        t->slots[i] = (struct burst_slot){t->b, t->first + i};
        if (kube_create_async(t->b->k, NS, run_json, strlen(run_json), t->deadline_ms, burst_done,
                              &t->slots[i]) != 0)
            return NULL;
    }
    return NULL;
}

/* Waits up to ms for n callbacks in all. */
static bool burst_wait(struct burst *b, int n, long ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&b->lock);
    while (b->finished < n && pthread_cond_timedwait(&b->cond, &b->lock, &until) == 0)
        ;
    bool ok = b->finished >= n;
    pthread_mutex_unlock(&b->lock);
    return ok;
}

static struct burst *burst_new(struct kube *k) {
    struct burst *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    b->k = k;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    return b;
}

static void burst_free(struct burst *b) {
    pthread_cond_destroy(&b->cond);
    pthread_mutex_destroy(&b->lock);
    free(b);
}

static void test_kube_create_async_serves_a_burst_over_few_connections(void **state) {
    static const struct answer script[] = {{201, NULL, NULL}};
    struct fake_api *api = fake_start(script, 1);
    struct kube *k = kube_for(api, NULL);
    struct burst *b = burst_new(k);
    struct burst_thread threads[BURST_THREADS];
    pthread_t tid[BURST_THREADS];
    (void)state;

    for (int i = 0; i < BURST_THREADS; i++) {
        threads[i] = (struct burst_thread){
            .b = b, .first = i * BURST_PER_THREAD, .count = BURST_PER_THREAD, .deadline_ms = 5000};
        assert_int_equal(pthread_create(&tid[i], NULL, burst_main, &threads[i]), 0);
    }
    for (int i = 0; i < BURST_THREADS; i++)
        pthread_join(tid[i], NULL);
    assert_true(burst_wait(b, BURST_JOBS, 8000));
    for (int i = 0; i < BURST_JOBS; i++) {
        assert_int_equal(atomic_load(&b->calls[i]), 1);
        assert_int_equal(atomic_load(&b->status[i]), 201);
        assert_int_equal(atomic_load(&b->attempts[i]), 1);
    }
    assert_int_equal(fake_posts(api), BURST_JOBS);
    pthread_mutex_lock(&api->lock);
    int conns = api->connections;
    pthread_mutex_unlock(&api->lock);
    print_message("%d creates over %d connections\n", BURST_JOBS, conns);
    assert_true(conns >= 1 && conns <= 40);

    /* Later calls reuse the cached connections. */
    struct kube_result r;
    assert_int_equal(kube_create(k, NS, run_json, strlen(run_json), 3000, &r), 0);
    assert_int_equal(r.status, 201);
    pthread_mutex_lock(&api->lock);
    assert_int_equal(api->connections, conns);
    pthread_mutex_unlock(&api->lock);

    kube_free(k);
    burst_free(b);
    fake_stop(api);
}

static void test_kube_free_fails_jobs_in_flight_and_waiting(void **state) {
    /* Slow answers keep jobs in flight; a long Retry-After keeps others waiting. */
    static const struct answer slow[] = {{201, NULL, NULL}};
    static const struct answer later[] = {{503, "5", "come back later"}};
    struct fake_api *slow_api = fake_start(slow, 1);
    struct fake_api *later_api = fake_start(later, 1);
    struct kube *ks = kube_for(slow_api, NULL);
    struct kube *kl = kube_for(later_api, NULL);
    struct burst *bs = burst_new(ks);
    struct burst *bl = burst_new(kl);
    struct burst_thread ts = {.b = bs, .first = 0, .count = 5, .deadline_ms = 20000};
    struct burst_thread tl = {.b = bl, .first = 0, .count = 5, .deadline_ms = 20000};
    (void)state;

    slow_api->delay_ms = 20000;
    burst_main(&ts);
    burst_main(&tl);
    /* Every job has reached the server once: five in flight, five waiting. */
    for (int waited = 0; waited < 5000; waited += 10) {
        if (fake_posts(slow_api) == 5 && fake_posts(later_api) == 5)
            break;
        usleep(10 * 1000);
    }
    assert_int_equal(fake_posts(slow_api), 5);
    assert_int_equal(fake_posts(later_api), 5);
    usleep(50 * 1000); /* lets the 503s be read and the jobs parked */

    long t0 = now_ms();
    kube_free(ks);
    kube_free(kl);
    assert_true(now_ms() - t0 < 3000);
    assert_int_equal(bs->finished, 5);
    assert_int_equal(bl->finished, 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(atomic_load(&bs->calls[i]), 1);
        assert_int_equal(atomic_load(&bs->status[i]), 0);
        assert_int_equal(atomic_load(&bs->message_ok[i]), 1);
        assert_int_equal(atomic_load(&bl->calls[i]), 1);
        assert_int_equal(atomic_load(&bl->status[i]), 0);
        assert_int_equal(atomic_load(&bl->attempts[i]), 1);
        assert_int_equal(atomic_load(&bl->message_ok[i]), 1);
    }
    burst_free(bs);
    burst_free(bl);
    fake_stop(slow_api);
    fake_stop(later_api);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kube_create_posts_the_run_with_strict_validation_and_bearer),
        cmocka_unit_test(test_kube_create_retries_only_transient_answers),
        cmocka_unit_test(test_kube_create_gives_up_at_the_deadline),
        cmocka_unit_test(test_retry_after_parses_both_forms_and_clamps),
        cmocka_unit_test(test_kube_answer_table),
        cmocka_unit_test(test_kube_create_rereads_the_token_after_a_401),
        cmocka_unit_test(test_kube_create_async_with_no_time_left_makes_no_attempt),
        cmocka_unit_test(test_kube_create_async_serves_a_burst_over_few_connections),
        cmocka_unit_test(test_kube_free_fails_jobs_in_flight_and_waiting),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
