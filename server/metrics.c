#include "gpuhook/metrics.h"
#include "gpuhook/error.h"
#include "gpuhook/gpu.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define METRICS_MAX_SERIES 256
#define METRICS_KEY_MAX 160

enum metrics_family {
    METRICS_HTTP_REQUESTS,
    METRICS_DELIVERIES,
    METRICS_CREATED,
    METRICS_KUBE,
    METRICS_KUBE_ANSWERS,
    METRICS_FAMILY_COUNT
};

static const struct {
    const char *name;
    const char *help;
} metrics_families[METRICS_FAMILY_COUNT] = {
    {"gpuhook_http_requests_total", "HTTP requests by route and status code."},
    {"gpuhook_deliveries_total", "Webhook and trigger deliveries by event and outcome."},
    {"gpuhook_pipelineruns_created_total", "PipelineRuns created, by variant."},
    {"gpuhook_kube_requests_total", "Kubernetes API requests by status code (0: no answer)."},
    {"gpuhook_kube_answers_total",
     "Final answers to creates by class: created, exists, refused, blocked, unauthorized, retry."},
};

struct metrics_series {
    int family;
    char labels[METRICS_KEY_MAX];
    uint64_t value;
};

/* Routes have fixed names, so the histogram is a small fixed table. */
static const char *const metrics_routes[] = {"webhook", "trigger", "healthz", "readyz",
                                             "gpu",     "metrics", "other"};
#define METRICS_ROUTES (sizeof(metrics_routes) / sizeof(metrics_routes[0]))
static const double metrics_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define METRICS_BUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static struct metrics_series metrics_table[METRICS_MAX_SERIES];
static size_t metrics_count;
/* Requests by route and status (100 to 599), counted with the histogram under one lock. */
#define METRICS_CODE_MIN 100
#define METRICS_CODES 500
static uint64_t metrics_http_codes[METRICS_ROUTES][METRICS_CODES];
static uint64_t metrics_hist[METRICS_ROUTES][METRICS_BUCKETS];
static uint64_t metrics_hist_count[METRICS_ROUTES];
static double metrics_hist_sum[METRICS_ROUTES];
static uint64_t metrics_sig_failures;
static long metrics_spool_depth;

static void metrics_inc(int family, const char *labels) {
    pthread_mutex_lock(&metrics_lock);
    for (size_t i = 0; i < metrics_count; i++) {
        if (metrics_table[i].family == family && strcmp(metrics_table[i].labels, labels) == 0) {
            metrics_table[i].value++;
            goto out;
        }
    }
    /* A full table drops new series rather than growing without bound. */
    if (metrics_count < METRICS_MAX_SERIES) {
        struct metrics_series *s = &metrics_table[metrics_count++];
        s->family = family;
        snprintf(s->labels, sizeof(s->labels), "%s", labels);
        s->value = 1;
    }
out:
    pthread_mutex_unlock(&metrics_lock);
}

/* Label values here are known-safe names, but quote-escape anyway. */
static void metrics_label(char *out, size_t n, const char *v) {
    size_t j = 0;
    for (const char *p = v ? v : ""; *p && j + 2 < n; p++) {
        if (*p == '"' || *p == '\\' || *p == '\n')
            continue;
        out[j++] = *p;
    }
    out[j] = '\0';
}

void metrics_http_observe(const char *route, int code, double seconds) {
    size_t idx = METRICS_ROUTES - 1;

    for (size_t i = 0; i < METRICS_ROUTES - 1; i++)
        if (strcmp(route, metrics_routes[i]) == 0)
            idx = i;
    if (code < METRICS_CODE_MIN || code >= METRICS_CODE_MIN + METRICS_CODES)
        code = 500; /* cannot happen: libmicrohttpd sends only these */
    pthread_mutex_lock(&metrics_lock);
    metrics_http_codes[idx][code - METRICS_CODE_MIN]++;
    for (size_t b = 0; b < METRICS_BUCKETS; b++)
        if (seconds <= metrics_buckets[b])
            metrics_hist[idx][b]++;
    metrics_hist_count[idx]++;
    metrics_hist_sum[idx] += seconds;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_delivery(const char *event, const char *outcome) {
    char labels[METRICS_KEY_MAX], e[48], o[32];
    metrics_label(e, sizeof(e), event);
    metrics_label(o, sizeof(o), outcome);
    snprintf(labels, sizeof(labels), "event=\"%s\",outcome=\"%s\"", e, o);
    metrics_inc(METRICS_DELIVERIES, labels);
}

void metrics_pipelinerun_created(const char *variant) {
    char labels[METRICS_KEY_MAX], v[32];
    metrics_label(v, sizeof(v), variant);
    snprintf(labels, sizeof(labels), "variant=\"%s\"", v);
    metrics_inc(METRICS_CREATED, labels);
}

void metrics_signature_failure(void) {
    pthread_mutex_lock(&metrics_lock);
    metrics_sig_failures++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_kube_request(int code) {
    char labels[METRICS_KEY_MAX];
    snprintf(labels, sizeof(labels), "code=\"%d\"", code);
    metrics_inc(METRICS_KUBE, labels);
}

void metrics_kube_answer(const char *answer) {
    char labels[METRICS_KEY_MAX], a[32];
    metrics_label(a, sizeof(a), answer);
    snprintf(labels, sizeof(labels), "answer=\"%s\"", a);
    metrics_inc(METRICS_KUBE_ANSWERS, labels);
}

void metrics_spool_depth_set(long depth) {
    pthread_mutex_lock(&metrics_lock);
    metrics_spool_depth = depth;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_reset(void) {
    pthread_mutex_lock(&metrics_lock);
    metrics_count = 0;
    memset(metrics_http_codes, 0, sizeof(metrics_http_codes));
    memset(metrics_hist, 0, sizeof(metrics_hist));
    memset(metrics_hist_count, 0, sizeof(metrics_hist_count));
    memset(metrics_hist_sum, 0, sizeof(metrics_hist_sum));
    metrics_sig_failures = 0;
    metrics_spool_depth = 0;
    pthread_mutex_unlock(&metrics_lock);
}

/* The requests counted by route and status; the caller holds metrics_lock. */
static int metrics_render_http_codes(struct buf *b) {
    int rc = 0;
    for (size_t r = 0; r < METRICS_ROUTES && !rc; r++)
        for (size_t c = 0; c < METRICS_CODES && !rc; c++)
            if (metrics_http_codes[r][c])
                rc =
                    buf_appendf(b, "%s{route=\"%s\",code=\"%zu\"} %llu\n",
                                metrics_families[METRICS_HTTP_REQUESTS].name, metrics_routes[r],
                                c + METRICS_CODE_MIN, (unsigned long long)metrics_http_codes[r][c]);
    return rc;
}

int metrics_render(struct buf *b) {
    int rc = 0;

    pthread_mutex_lock(&metrics_lock);
    for (int f = 0; f < METRICS_FAMILY_COUNT && !rc; f++) {
        rc = buf_appendf(b, "# HELP %s %s\n# TYPE %s counter\n", metrics_families[f].name,
                         metrics_families[f].help, metrics_families[f].name);
        if (f == METRICS_HTTP_REQUESTS && !rc)
            rc = metrics_render_http_codes(b);
        for (size_t i = 0; i < metrics_count && !rc; i++)
            if (metrics_table[i].family == f)
                rc = buf_appendf(b, "%s{%s} %llu\n", metrics_families[f].name,
                                 metrics_table[i].labels,
                                 (unsigned long long)metrics_table[i].value);
    }
    if (!rc)
        rc = buf_appendf(b, "# HELP gpuhook_http_request_duration_seconds HTTP request latency.\n"
                            "# TYPE gpuhook_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r < METRICS_ROUTES && !rc; r++) {
        if (!metrics_hist_count[r])
            continue;
        for (size_t k = 0; k < METRICS_BUCKETS && !rc; k++)
            rc = buf_appendf(b,
                             "gpuhook_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"}"
                             " %llu\n",
                             metrics_routes[r], metrics_buckets[k],
                             (unsigned long long)metrics_hist[r][k]);
        if (!rc)
            rc = buf_appendf(
                b,
                "gpuhook_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
                "gpuhook_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                "gpuhook_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                metrics_routes[r], (unsigned long long)metrics_hist_count[r], metrics_routes[r],
                metrics_hist_sum[r], metrics_routes[r], (unsigned long long)metrics_hist_count[r]);
    }
    if (!rc)
        rc = buf_appendf(b,
                         "# HELP gpuhook_signature_failures_total Deliveries rejected for their "
                         "signature.\n# TYPE gpuhook_signature_failures_total counter\n"
                         "gpuhook_signature_failures_total %llu\n"
                         "# HELP gpuhook_spool_depth PipelineRuns waiting in the spool.\n"
                         "# TYPE gpuhook_spool_depth gauge\ngpuhook_spool_depth %ld\n",
                         (unsigned long long)metrics_sig_failures, metrics_spool_depth);
    pthread_mutex_unlock(&metrics_lock);
    if (!rc)
        rc = buf_appendf(b,
                         "# HELP gpuhook_build_info Build information.\n"
                         "# TYPE gpuhook_build_info gauge\n"
                         "gpuhook_build_info{version=\"%s\",cuda=\"%s\"} 1\n",
                         GPUHOOK_VERSION, gpu_build_string());
    if (!rc)
        rc = gpu_metrics_append(b);
    return rc;
}
