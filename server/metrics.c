#include "gpuhook/metrics.h"
#include "gpuhook/clusterview.h"
#include "gpuhook/ghreport.h"
#include "gpuhook/bodybudget.h"
#include "gpuhook/error.h"
#include "gpuhook/gpu.h"
#include "gpuhook/promtext.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/*
 * Every label value that the network can influence maps onto a fixed set, so
 * the series count has a bound no client can raise and a known family never
 * loses a series:
 *   deliveries: (METRICS_EVENT_SLOTS events + trigger + other) x outcomes
 *   created:    variants (lite, original, spooled, other)
 *   kube:       code 0 plus 100..599
 *   answers:    the API answer classes of kube_answer_name, plus other
 *   http:       routes x codes 100..599
 * The event slots hold the names configured in github.events (at most 64,
 * the config's own bound), added at start and on reload while there is room;
 * an event that is not configured now counts as "other".
 */
#define METRICS_EVENT_SLOTS 64
#define METRICS_EVENT_NAME_MAX 65

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

static const char *const metrics_outcomes[] = {
    "created", "exists",       "queued",  "dry_run", "rejected",     "unavailable", "ignored",
    "ok",      "gpu_rejected", "invalid", "error",   "unauthorized", "other"};
#define METRICS_OUTCOMES (sizeof(metrics_outcomes) / sizeof(metrics_outcomes[0]))
/* kube_answer_name's words, then "other". */
static const char *const metrics_answers[] = {"retry",   "created", "exists", "unauthorized",
                                              "blocked", "refused", "other"};
#define METRICS_ANSWERS (sizeof(metrics_answers) / sizeof(metrics_answers[0]))
static const char *const metrics_variants[] = {"lite", "original", "spooled", "other"};
#define METRICS_VARIANTS (sizeof(metrics_variants) / sizeof(metrics_variants[0]))
/* Event slots: the configured ones, then trigger, then other. */
#define METRICS_EVENT_TRIGGER METRICS_EVENT_SLOTS
#define METRICS_EVENT_OTHER (METRICS_EVENT_SLOTS + 1)
#define METRICS_EVENTS (METRICS_EVENT_SLOTS + 2)

/*
 * Route labels come from the route table (metrics_set_routes, called when the
 * HTTP server starts); a request no route matched counts as "other", the last
 * slot. Until then the six routes of the first table stand in, for code that
 * counts without a server (tests, gpuhook render).
 */
#define METRICS_ROUTE_SLOTS 32
#define METRICS_ROUTE_NAME_MAX 32
#define METRICS_ROUTES (METRICS_ROUTE_SLOTS + 1)
static char metrics_routes[METRICS_ROUTES][METRICS_ROUTE_NAME_MAX] = {
    "webhook", "trigger", "healthz", "readyz", "gpu", "metrics"};
static size_t metrics_route_count = 6;
static const double metrics_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define METRICS_BUCKETS (sizeof(metrics_buckets) / sizeof(metrics_buckets[0]))

/* The admission queue: its actions, its depth by variant, the time runs waited. */
static const char *const metrics_queue_actions[] = {"queued", "start",     "supersede",
                                                    "cancel_running", "reject", "downgrade",
                                                    "other"};
#define METRICS_QUEUE_ACTIONS (sizeof(metrics_queue_actions) / sizeof(metrics_queue_actions[0]))
static const double metrics_wait_buckets[] = {1, 5, 15, 60, 300, 900, 3600, 14400};
#define METRICS_WAIT_BUCKETS (sizeof(metrics_wait_buckets) / sizeof(metrics_wait_buckets[0]))

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
/* Requests by route and status (100 to 599), counted with the histogram under one lock. */
#define METRICS_CODE_MIN 100
#define METRICS_CODES 500
/*
 * Every series' value, in one object that metrics_reset clears at once. One
 * per process for now: the callers (http, webhook, kube, spool) count without
 * a handle, so the object is reached through metrics_c.
 */
struct metrics_counters {
    uint64_t http_codes[METRICS_ROUTES][METRICS_CODES];
    uint64_t hist[METRICS_ROUTES][METRICS_BUCKETS];
    uint64_t hist_count[METRICS_ROUTES];
    double hist_sum[METRICS_ROUTES];
    uint64_t sig_failures;
    long spool_depth;
    uint64_t deliveries[METRICS_EVENTS][METRICS_OUTCOMES];
    uint64_t created[METRICS_VARIANTS];
    uint64_t kube_answers[METRICS_ANSWERS];
    uint64_t kube_none;                 /* code 0: no answer */
    uint64_t kube_codes[METRICS_CODES]; /* 100..599; others count as 0 */
    uint64_t budget_refusals;
    uint64_t conn_cut[METRICS_CONN_CUT_COUNT];
    int api_up; /* -1 until the first probe */
    uint64_t queue_actions[METRICS_QUEUE_ACTIONS];
    long queue_depth[METRICS_VARIANTS];
    uint64_t wait_hist[METRICS_WAIT_BUCKETS];
    uint64_t wait_count;
    double wait_sum;
    int queue_leader;
};
static struct metrics_counters metrics_c = {.api_up = -1};
/* The built-in defaults of github.events, for a process that never calls metrics_set_events. */
static char metrics_event_names[METRICS_EVENT_SLOTS][METRICS_EVENT_NAME_MAX] = {
    "push", "pull_request", "ping"};
static bool metrics_event_current[METRICS_EVENT_SLOTS] = {true, true, true};

static size_t metrics_index(const char *const *names, size_t n, const char *v) {
    for (size_t i = 0; i + 1 < n; i++)
        if (v && strcmp(v, names[i]) == 0)
            return i;
    return n - 1;
}

void metrics_set_events(const char *const *names, size_t n) {
    pthread_mutex_lock(&metrics_lock);
    for (size_t i = 0; i < METRICS_EVENT_SLOTS; i++)
        metrics_event_current[i] = false;
    for (size_t k = 0; k < n; k++) {
        if (strlen(names[k]) >= METRICS_EVENT_NAME_MAX || strcmp(names[k], "trigger") == 0 ||
            strcmp(names[k], "other") == 0)
            continue;
        size_t free_slot = METRICS_EVENT_SLOTS, i;
        for (i = 0; i < METRICS_EVENT_SLOTS; i++) {
            if (!metrics_event_names[i][0]) {
                if (free_slot == METRICS_EVENT_SLOTS)
                    free_slot = i;
            } else if (strcmp(metrics_event_names[i], names[k]) == 0) {
                break;
            }
        }
        if (i == METRICS_EVENT_SLOTS && free_slot < METRICS_EVENT_SLOTS) {
            i = free_slot;
            snprintf(metrics_event_names[i], METRICS_EVENT_NAME_MAX, "%s", names[k]);
        }
        if (i < METRICS_EVENT_SLOTS)
            metrics_event_current[i] = true;
    }
    pthread_mutex_unlock(&metrics_lock);
}

/* The slot of an event name; the caller holds metrics_lock. */
static size_t metrics_event_slot(const char *event) {
    if (event && strcmp(event, "trigger") == 0)
        return METRICS_EVENT_TRIGGER;
    for (size_t i = 0; event && i < METRICS_EVENT_SLOTS; i++)
        if (metrics_event_current[i] && strcmp(metrics_event_names[i], event) == 0)
            return i;
    return METRICS_EVENT_OTHER;
}

static const char *metrics_event_name(size_t slot) {
    return slot == METRICS_EVENT_TRIGGER ? "trigger"
           : slot == METRICS_EVENT_OTHER ? "other"
                                         : metrics_event_names[slot];
}

void metrics_set_routes(const char *const *names, size_t n) {
    pthread_mutex_lock(&metrics_lock);
    size_t k = 0;
    for (size_t i = 0; i < n && k < METRICS_ROUTE_SLOTS; i++)
        if (names[i] && strlen(names[i]) < METRICS_ROUTE_NAME_MAX && strcmp(names[i], "other"))
            snprintf(metrics_routes[k++], METRICS_ROUTE_NAME_MAX, "%s", names[i]);
    metrics_route_count = k;
    pthread_mutex_unlock(&metrics_lock);
}

/* The route's slot: "other" (the last one) for a name the table does not hold. */
static size_t metrics_route_index(const char *route) {
    for (size_t i = 0; route && i < metrics_route_count; i++)
        if (strcmp(route, metrics_routes[i]) == 0)
            return i;
    return METRICS_ROUTES - 1;
}

/* The label of slot r, which the caller knows to be used. */
static const char *metrics_route_name(size_t r) {
    return r == METRICS_ROUTES - 1 ? "other" : metrics_routes[r];
}

void metrics_http_observe(const char *route, int code, double seconds) {
    pthread_mutex_lock(&metrics_lock);
    size_t idx = metrics_route_index(route);
    pthread_mutex_unlock(&metrics_lock);
    if (code < METRICS_CODE_MIN || code >= METRICS_CODE_MIN + METRICS_CODES)
        code = 500; /* cannot happen: libmicrohttpd sends only these */
    pthread_mutex_lock(&metrics_lock);
    metrics_c.http_codes[idx][code - METRICS_CODE_MIN]++;
    for (size_t b = 0; b < METRICS_BUCKETS; b++)
        if (seconds <= metrics_buckets[b])
            metrics_c.hist[idx][b]++;
    metrics_c.hist_count[idx]++;
    metrics_c.hist_sum[idx] += seconds;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_delivery(const char *event, const char *outcome) {
    size_t o = metrics_index(metrics_outcomes, METRICS_OUTCOMES, outcome);
    pthread_mutex_lock(&metrics_lock);
    metrics_c.deliveries[metrics_event_slot(event)][o]++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_pipelinerun_created(const char *variant) {
    size_t v = metrics_index(metrics_variants, METRICS_VARIANTS, variant);
    pthread_mutex_lock(&metrics_lock);
    metrics_c.created[v]++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_signature_failure(void) {
    pthread_mutex_lock(&metrics_lock);
    metrics_c.sig_failures++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_kube_request(int code) {
    pthread_mutex_lock(&metrics_lock);
    if (code >= METRICS_CODE_MIN && code < METRICS_CODE_MIN + METRICS_CODES)
        metrics_c.kube_codes[code - METRICS_CODE_MIN]++;
    else
        metrics_c.kube_none++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_body_budget_refusal(void) {
    pthread_mutex_lock(&metrics_lock);
    metrics_c.budget_refusals++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_connection_cut(int reason) {
    if (reason < 0 || reason >= METRICS_CONN_CUT_COUNT)
        return;
    pthread_mutex_lock(&metrics_lock);
    metrics_c.conn_cut[reason]++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_api_up_set(int up) {
    pthread_mutex_lock(&metrics_lock);
    metrics_c.api_up = up;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_kube_answer(const char *answer) {
    size_t a = metrics_index(metrics_answers, METRICS_ANSWERS, answer);
    pthread_mutex_lock(&metrics_lock);
    metrics_c.kube_answers[a]++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_spool_depth_set(long depth) {
    pthread_mutex_lock(&metrics_lock);
    metrics_c.spool_depth = depth;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_queue_action(const char *action) {
    size_t a = metrics_index(metrics_queue_actions, METRICS_QUEUE_ACTIONS, action);
    pthread_mutex_lock(&metrics_lock);
    metrics_c.queue_actions[a]++;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_queue_depth_set(const char *variant, long depth) {
    size_t v = metrics_index(metrics_variants, METRICS_VARIANTS, variant);
    pthread_mutex_lock(&metrics_lock);
    metrics_c.queue_depth[v] = depth;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_queue_waited(double seconds) {
    pthread_mutex_lock(&metrics_lock);
    for (size_t k = 0; k < METRICS_WAIT_BUCKETS; k++)
        if (seconds <= metrics_wait_buckets[k])
            metrics_c.wait_hist[k]++;
    metrics_c.wait_count++;
    metrics_c.wait_sum += seconds;
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_queue_leader_set(bool leading) {
    pthread_mutex_lock(&metrics_lock);
    metrics_c.queue_leader = leading;
    pthread_mutex_unlock(&metrics_lock);
}

/* The admission queue's families; the caller holds metrics_lock. */
static int metrics_render_queue(struct buf *b) {
    int rc = buf_appendf(b, "# HELP gpuhook_queue_actions_total Admission queue actions: runs "
                            "created pending, started, superseded, cancelled, rejected.\n"
                            "# TYPE gpuhook_queue_actions_total counter\n");
    for (size_t a = 0; a < METRICS_QUEUE_ACTIONS && !rc; a++)
        rc = buf_appendf(b, "gpuhook_queue_actions_total{action=\"%s\"} %llu\n",
                         metrics_queue_actions[a], (unsigned long long)metrics_c.queue_actions[a]);
    if (!rc)
        rc = buf_appendf(b, "# HELP gpuhook_queue_depth Pending runs by variant, as this "
                            "replica's watch sees them.\n# TYPE gpuhook_queue_depth gauge\n");
    for (size_t v = 0; v < 2 && !rc; v++)
        rc = buf_appendf(b, "gpuhook_queue_depth{variant=\"%s\"} %ld\n", metrics_variants[v],
                         metrics_c.queue_depth[v]);
    if (!rc)
        rc = buf_appendf(b, "# HELP gpuhook_queue_wait_seconds Time from queued-since to the "
                            "start, for runs this replica started.\n"
                            "# TYPE gpuhook_queue_wait_seconds histogram\n");
    for (size_t k = 0; k < METRICS_WAIT_BUCKETS && !rc; k++)
        rc = buf_appendf(b, "gpuhook_queue_wait_seconds_bucket{le=\"%g\"} %llu\n",
                         metrics_wait_buckets[k], (unsigned long long)metrics_c.wait_hist[k]);
    if (!rc)
        rc = buf_appendf(b,
                         "gpuhook_queue_wait_seconds_bucket{le=\"+Inf\"} %llu\n"
                         "gpuhook_queue_wait_seconds_sum %.3f\n"
                         "gpuhook_queue_wait_seconds_count %llu\n"
                         "# HELP gpuhook_queue_leader Whether this replica holds the "
                         "scheduler's Lease.\n# TYPE gpuhook_queue_leader gauge\n"
                         "gpuhook_queue_leader %d\n",
                         (unsigned long long)metrics_c.wait_count, metrics_c.wait_sum,
                         (unsigned long long)metrics_c.wait_count, metrics_c.queue_leader);
    return rc;
}

void metrics_reset(void) {
    pthread_mutex_lock(&metrics_lock);
    memset(&metrics_c, 0, sizeof(metrics_c));
    metrics_c.api_up = -1;
    pthread_mutex_unlock(&metrics_lock);
}

/* The requests counted by route and status; the caller holds metrics_lock. */
static int metrics_render_http_codes(struct buf *b) {
    int rc = 0;
    for (size_t r = 0; r < METRICS_ROUTES && !rc; r++)
        for (size_t c = 0; c < METRICS_CODES && !rc; c++)
            if (metrics_c.http_codes[r][c])
                rc = buf_appendf(b, "%s{route=\"%s\",code=\"%zu\"} %llu\n",
                                 metrics_families[METRICS_HTTP_REQUESTS].name,
                                 metrics_route_name(r), c + METRICS_CODE_MIN,
                                 (unsigned long long)metrics_c.http_codes[r][c]);
    return rc;
}

/* The fixed-table families; the caller holds metrics_lock. */
static int metrics_render_family(struct buf *b, int f) {
    const char *name = metrics_families[f].name;
    int rc = 0;
    switch (f) {
    case METRICS_HTTP_REQUESTS:
        return metrics_render_http_codes(b);
    case METRICS_DELIVERIES:
        for (size_t e = 0; e < METRICS_EVENTS && !rc; e++)
            for (size_t o = 0; o < METRICS_OUTCOMES && !rc; o++)
                if (metrics_c.deliveries[e][o]) {
                    /* Event names come from github.events, which may hold any text. */
                    rc = buf_appendf(b, "%s{event=\"", name);
                    if (!rc)
                        rc = promtext_label_append(b, metrics_event_name(e));
                    if (!rc)
                        rc = buf_appendf(b, "\",outcome=\"%s\"} %llu\n", metrics_outcomes[o],
                                         (unsigned long long)metrics_c.deliveries[e][o]);
                }
        return rc;
    case METRICS_CREATED:
        for (size_t v = 0; v < METRICS_VARIANTS && !rc; v++)
            if (metrics_c.created[v])
                rc = buf_appendf(b, "%s{variant=\"%s\"} %llu\n", name, metrics_variants[v],
                                 (unsigned long long)metrics_c.created[v]);
        return rc;
    case METRICS_KUBE_ANSWERS:
        for (size_t a = 0; a < METRICS_ANSWERS && !rc; a++)
            if (metrics_c.kube_answers[a])
                rc = buf_appendf(b, "%s{answer=\"%s\"} %llu\n", name, metrics_answers[a],
                                 (unsigned long long)metrics_c.kube_answers[a]);
        return rc;
    default:
        if (metrics_c.kube_none)
            rc = buf_appendf(b, "%s{code=\"0\"} %llu\n", name,
                             (unsigned long long)metrics_c.kube_none);
        for (size_t c = 0; c < METRICS_CODES && !rc; c++)
            if (metrics_c.kube_codes[c])
                rc = buf_appendf(b, "%s{code=\"%zu\"} %llu\n", name, c + METRICS_CODE_MIN,
                                 (unsigned long long)metrics_c.kube_codes[c]);
        return rc;
    }
}

/* The gauges and counters of issue 15's controls; the caller holds metrics_lock. */
static int metrics_render_guards(struct buf *b) {
    static const char *const cut_names[METRICS_CONN_CUT_COUNT] = {"header_deadline", "body_rate",
                                                                  "evicted"};
    int rc = buf_appendf(
        b,
        "# HELP gpuhook_unverified_body_bytes Memory held by bodies not yet verified.\n"
        "# TYPE gpuhook_unverified_body_bytes gauge\ngpuhook_unverified_body_bytes %ld\n"
        "# HELP gpuhook_unverified_body_budget_bytes The budget for bodies not yet verified.\n"
        "# TYPE gpuhook_unverified_body_budget_bytes gauge\n"
        "gpuhook_unverified_body_budget_bytes %ld\n"
        "# HELP gpuhook_body_budget_refusals_total Bodies refused with 503: budget spent.\n"
        "# TYPE gpuhook_body_budget_refusals_total counter\n"
        "gpuhook_body_budget_refusals_total %llu\n"
        "# HELP gpuhook_connections_cut_total Connections closed for holding a slot.\n"
        "# TYPE gpuhook_connections_cut_total counter\n",
        bodybudget_in_use(), bodybudget_limit(), (unsigned long long)metrics_c.budget_refusals);
    for (int i = 0; i < METRICS_CONN_CUT_COUNT && !rc; i++)
        rc = buf_appendf(b, "gpuhook_connections_cut_total{reason=\"%s\"} %llu\n", cut_names[i],
                         (unsigned long long)metrics_c.conn_cut[i]);
    if (!rc && metrics_c.api_up >= 0)
        rc = buf_appendf(b,
                         "# HELP gpuhook_kube_api_up Whether the Kubernetes API answered the "
                         "last readiness probe.\n# TYPE gpuhook_kube_api_up gauge\n"
                         "gpuhook_kube_api_up %d\n",
                         metrics_c.api_up);
    return rc;
}

int metrics_render(struct buf *b) {
    int rc = 0;

    pthread_mutex_lock(&metrics_lock);
    for (int f = 0; f < METRICS_FAMILY_COUNT && !rc; f++) {
        rc = buf_appendf(b, "# HELP %s %s\n# TYPE %s counter\n", metrics_families[f].name,
                         metrics_families[f].help, metrics_families[f].name);
        if (!rc)
            rc = metrics_render_family(b, f);
    }
    if (!rc)
        rc = buf_appendf(b, "# HELP gpuhook_http_request_duration_seconds HTTP request latency.\n"
                            "# TYPE gpuhook_http_request_duration_seconds histogram\n");
    for (size_t r = 0; r < METRICS_ROUTES && !rc; r++) {
        if (!metrics_c.hist_count[r])
            continue;
        for (size_t k = 0; k < METRICS_BUCKETS && !rc; k++)
            rc = buf_appendf(b,
                             "gpuhook_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"}"
                             " %llu\n",
                             metrics_route_name(r), metrics_buckets[k],
                             (unsigned long long)metrics_c.hist[r][k]);
        if (!rc)
            rc = buf_appendf(
                b,
                "gpuhook_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n"
                "gpuhook_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                "gpuhook_http_request_duration_seconds_count{route=\"%s\"} %llu\n",
                metrics_route_name(r), (unsigned long long)metrics_c.hist_count[r],
                metrics_route_name(r), metrics_c.hist_sum[r], metrics_route_name(r),
                (unsigned long long)metrics_c.hist_count[r]);
    }
    if (!rc)
        rc = buf_appendf(b,
                         "# HELP gpuhook_signature_failures_total Deliveries rejected for their "
                         "signature.\n# TYPE gpuhook_signature_failures_total counter\n"
                         "gpuhook_signature_failures_total %llu\n"
                         "# HELP gpuhook_spool_depth PipelineRuns waiting in the spool.\n"
                         "# TYPE gpuhook_spool_depth gauge\ngpuhook_spool_depth %ld\n",
                         (unsigned long long)metrics_c.sig_failures, metrics_c.spool_depth);
    if (!rc)
        rc = metrics_render_guards(b);
    if (!rc)
        rc = metrics_render_queue(b);
    pthread_mutex_unlock(&metrics_lock);
    if (!rc)
        rc = buf_appendf(b,
                         "# HELP gpuhook_build_info Build information.\n"
                         "# TYPE gpuhook_build_info gauge\n"
                         "gpuhook_build_info{version=\"%s\",cuda=\"%s\"} 1\n",
                         GPUHOOK_VERSION, gpu_build_string());
    if (!rc)
        rc = gpu_metrics_append(b);
    if (!rc)
        rc = clusterview_metrics_append(b);
    if (!rc)
        rc = ghreport_metrics_append(b);
    return rc;
}
