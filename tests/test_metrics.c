/*
 * Unit tests for metrics.c: the exposition carries every required family with
 * HELP and TYPE lines, counters count under the right labels, the histogram's
 * buckets are cumulative with +Inf equal to the count, and the gauges and
 * build_info report what was set. The GPU gauges come from the GPU module.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/gpu.h"
#include "gpuhook/metrics.h"
#include "gpuhook/promtext.h"

static const char *const histogram_bounds[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                               "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                               "1",      "2.5",   "5",      "10",    "+Inf"};
#define BOUNDS (sizeof(histogram_bounds) / sizeof(histogram_bounds[0]))

static int reset(void **state) {
    (void)state;
    metrics_reset();
    return 0;
}

/* Renders the exposition (caller frees). */
static char *render(void) {
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(metrics_render(&b), 0);
    return buf_detach(&b, NULL);
}

/* The value of the sample whose name-and-labels part is exactly series, or -1 when absent. */
static double sample(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *line = text; line && *line;) {
        const char *end = strchr(line, '\n');
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return strtod(line + n + 1, NULL);
        line = end ? end + 1 : NULL;
    }
    return -1;
}

static bool has_line(const char *text, const char *line) {
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

static void test_metrics_every_required_family_has_help_and_type(void **state) {
    (void)state;
    static const struct {
        const char *name;
        const char *type;
    } families[] = {
        {"gpuhook_http_requests_total", "counter"},
        {"gpuhook_http_request_duration_seconds", "histogram"},
        {"gpuhook_deliveries_total", "counter"},
        {"gpuhook_pipelineruns_created_total", "counter"},
        {"gpuhook_signature_failures_total", "counter"},
        {"gpuhook_spool_depth", "gauge"},
        {"gpuhook_kube_requests_total", "counter"},
        {"gpuhook_build_info", "gauge"},
        {"gpuhook_gpu_up", "gauge"},
    };
    char *text = render();
    char line[256];

    for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
        snprintf(line, sizeof(line), "# TYPE %s %s", families[i].name, families[i].type);
        if (!has_line(text, line))
            fail_msg("missing \"%s\" in:\n%s", line, text);
        snprintf(line, sizeof(line), "# HELP %s ", families[i].name);
        const char *help = strstr(text, line);
        if (!help || (help != text && help[-1] != '\n'))
            fail_msg("missing HELP for %s", families[i].name);
        /* HELP comes right before TYPE, and once. */
        assert_null(strstr(help + 1, line));
        const char *type_line = strchr(help, '\n') + 1;
        assert_int_equal(strncmp(type_line, "# TYPE ", 7), 0);
    }
    free(text);
}

/* Every sample belongs to a family whose TYPE line came before it; no family is declared twice. */
static void test_metrics_exposition_is_well_formed(void **state) {
    (void)state;
    metrics_http_observe("webhook", 201, 0.01);
    metrics_delivery("push", "created");
    metrics_pipelinerun_created("lite");
    metrics_kube_request(201);
    metrics_signature_failure();
    metrics_spool_depth_set(2);
    char *text = render();
    char declared[64][96];
    size_t ndeclared = 0;

    assert_true(strlen(text) > 0);
    assert_int_equal(text[strlen(text) - 1], '\n');
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        assert_non_null(end);
        *end = '\0';
        if (strncmp(line, "# TYPE ", 7) == 0) {
            char name[96];
            assert_int_equal(sscanf(line + 7, "%95s", name), 1);
            for (size_t i = 0; i < ndeclared; i++)
                if (strcmp(declared[i], name) == 0)
                    fail_msg("TYPE of %s given twice", name);
            assert_true(ndeclared < 64);
            snprintf(declared[ndeclared++], sizeof(declared[0]), "%s", name);
        } else if (line[0] != '#') {
            size_t nlen = strcspn(line, "{ ");
            bool known = false;
            for (size_t i = 0; i < ndeclared && !known; i++) {
                size_t dlen = strlen(declared[i]);
                if (nlen >= dlen && strncmp(line, declared[i], dlen) == 0) {
                    const char *suffix = line + dlen;
                    known = nlen == dlen ||
                            (nlen - dlen == 7 && strncmp(suffix, "_bucket", 7) == 0) ||
                            (nlen - dlen == 4 && strncmp(suffix, "_sum", 4) == 0) ||
                            (nlen - dlen == 6 && strncmp(suffix, "_count", 6) == 0);
                }
            }
            if (!known)
                fail_msg("sample before its TYPE: %s", line);
            if (line[nlen] == '{') {
                char *close = strchr(line, '}');
                assert_non_null(close);
                assert_int_equal(close[1], ' ');
            }
            char *value = strrchr(line, ' ');
            char *endp = NULL;
            assert_non_null(value);
            strtod(value + 1, &endp);
            if (*endp != '\0')
                fail_msg("value is not a number: %s", line);
        }
        line = end + 1;
    }
    free(text);
}

static void test_metrics_counters_increment_under_their_labels(void **state) {
    (void)state;
    metrics_delivery("push", "created");
    metrics_delivery("push", "created");
    metrics_delivery("ping", "ignored");
    metrics_pipelinerun_created("original");
    metrics_pipelinerun_created("lite");
    metrics_pipelinerun_created("lite");
    metrics_pipelinerun_created("lite");
    metrics_kube_request(409);
    metrics_kube_request(0);
    metrics_kube_request(0);
    metrics_http_observe("webhook", 401, 0.001);
    metrics_http_observe("webhook", 401, 0.001);
    metrics_http_observe("webhook", 201, 0.001);
    metrics_http_observe("healthz", 200, 0.001);
    metrics_signature_failure();
    metrics_signature_failure();
    char *text = render();

    assert_true(sample(text, "gpuhook_deliveries_total{event=\"push\",outcome=\"created\"}") == 2);
    assert_true(sample(text, "gpuhook_deliveries_total{event=\"ping\",outcome=\"ignored\"}") == 1);
    assert_true(sample(text, "gpuhook_deliveries_total{event=\"push\",outcome=\"ignored\"}") == -1);
    assert_true(sample(text, "gpuhook_pipelineruns_created_total{variant=\"lite\"}") == 3);
    assert_true(sample(text, "gpuhook_pipelineruns_created_total{variant=\"original\"}") == 1);
    assert_true(sample(text, "gpuhook_kube_requests_total{code=\"409\"}") == 1);
    assert_true(sample(text, "gpuhook_kube_requests_total{code=\"0\"}") == 2);
    assert_true(sample(text, "gpuhook_http_requests_total{route=\"webhook\",code=\"401\"}") == 2);
    assert_true(sample(text, "gpuhook_http_requests_total{route=\"webhook\",code=\"201\"}") == 1);
    assert_true(sample(text, "gpuhook_http_requests_total{route=\"healthz\",code=\"200\"}") == 1);
    assert_true(sample(text, "gpuhook_signature_failures_total") == 2);
    free(text);
}

static void test_metrics_unknown_route_counts_as_other(void **state) {
    (void)state;
    metrics_http_observe("/etc/passwd", 404, 0.0001);
    metrics_http_observe("", 404, 0.0001);
    char *text = render();

    assert_true(sample(text, "gpuhook_http_requests_total{route=\"other\",code=\"404\"}") == 2);
    assert_null(strstr(text, "passwd"));
    assert_true(sample(text, "gpuhook_http_request_duration_seconds_count{route=\"other\"}") == 2);
    free(text);
}

/* Route labels are the route table's names: a route added to the table is counted as itself. */
static void test_metrics_route_labels_come_from_the_route_table(void **state) {
    (void)state;
    const char *const table[] = {"webhook", "queue", "other", NULL};
    metrics_set_routes(table, 4);
    metrics_http_observe("queue", 200, 0.0001);
    metrics_http_observe("healthz", 200, 0.0001); /* not in this table */
    char *text = render();
    assert_true(sample(text, "gpuhook_http_requests_total{route=\"queue\",code=\"200\"}") == 1);
    assert_true(sample(text, "gpuhook_http_requests_total{route=\"other\",code=\"200\"}") == 1);
    assert_null(strstr(text, "route=\"healthz\""));
    free(text);
    const char *const first[] = {"webhook", "trigger", "healthz", "readyz", "gpu", "metrics"};
    metrics_set_routes(first, 6);
}

static void test_metrics_label_values_cannot_break_the_format(void **state) {
    (void)state;
    metrics_delivery("pu\"sh\\\n", "created");
    metrics_delivery("push", "cre\"ated");
    char *text = render();

    /* Neither is a known value: both count under "other", and nothing else appears. */
    assert_true(sample(text, "gpuhook_deliveries_total{event=\"other\",outcome=\"created\"}") == 1);
    assert_true(sample(text, "gpuhook_deliveries_total{event=\"push\",outcome=\"other\"}") == 1);
    assert_null(strstr(text, "pu\""));
    free(text);
}

static void test_metrics_histogram_buckets_are_cumulative(void **state) {
    (void)state;
    /* One observation below the first bound, on a bound, between bounds, and above the last. */
    static const double seconds[] = {0.0001, 0.005, 0.3, 20};
    for (size_t i = 0; i < sizeof(seconds) / sizeof(seconds[0]); i++)
        metrics_http_observe("webhook", 201, seconds[i]);
    static const double expected[BOUNDS] = {1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4};
    char *text = render();
    char series[160];
    double prev = 0;

    for (size_t i = 0; i < BOUNDS; i++) {
        snprintf(series, sizeof(series),
                 "gpuhook_http_request_duration_seconds_bucket{route=\"webhook\",le=\"%s\"}",
                 histogram_bounds[i]);
        double v = sample(text, series);
        if (v != expected[i])
            fail_msg("%s is %g, expected %g", series, v, expected[i]);
        assert_true(v >= prev);
        prev = v;
    }
    double count = sample(text, "gpuhook_http_request_duration_seconds_count{route=\"webhook\"}");
    double inf =
        sample(text, "gpuhook_http_request_duration_seconds_bucket{route=\"webhook\",le=\"+Inf\"}");
    assert_true(count == 4);
    assert_true(inf == count);
    double sum = sample(text, "gpuhook_http_request_duration_seconds_sum{route=\"webhook\"}");
    assert_true(sum > 20.3050 && sum < 20.3052);
    /* Routes without observations have no series. */
    assert_true(sample(text, "gpuhook_http_request_duration_seconds_count{route=\"trigger\"}") ==
                -1);
    free(text);
}

static void test_metrics_spool_depth_is_a_gauge_that_goes_both_ways(void **state) {
    (void)state;
    char *text = render();
    assert_true(sample(text, "gpuhook_spool_depth") == 0);
    free(text);

    metrics_spool_depth_set(7);
    text = render();
    assert_true(sample(text, "gpuhook_spool_depth") == 7);
    free(text);

    metrics_spool_depth_set(3);
    text = render();
    assert_true(sample(text, "gpuhook_spool_depth") == 3);
    free(text);
}

static void test_metrics_build_info_names_version_and_cuda(void **state) {
    (void)state;
    char *text = render();
    char series[256];

    snprintf(series, sizeof(series), "gpuhook_build_info{version=\"%s\",cuda=\"%s\"}",
             GPUHOOK_VERSION, gpu_build_string());
    assert_true(sample(text, series) == 1);
    assert_true(strncmp(gpu_build_string(), "cuda ", 5) == 0);
    free(text);
}

static void test_metrics_reset_clears_every_series(void **state) {
    (void)state;
    metrics_delivery("push", "created");
    metrics_http_observe("webhook", 201, 0.01);
    metrics_signature_failure();
    metrics_spool_depth_set(5);
    metrics_reset();
    char *text = render();

    assert_null(strstr(text, "gpuhook_deliveries_total{"));
    assert_null(strstr(text, "gpuhook_http_request_duration_seconds_bucket"));
    assert_true(sample(text, "gpuhook_signature_failures_total") == 0);
    assert_true(sample(text, "gpuhook_spool_depth") == 0);
    free(text);
}

static size_t count_series(const char *text, const char *prefix) {
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, prefix)) != NULL; p++)
        n++;
    return n;
}

static void test_metrics_series_are_bounded_and_never_dropped(void **state) {
    (void)state;
    char name[32];
    const char *const events[] = {"push", "pull_request", "ping", "release"};

    metrics_set_events(events, 4);
    /* Far more distinct values than any family has series: they fold into fixed ones. */
    for (int code = 0; code < 1000; code++)
        metrics_kube_request(code);
    for (int i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "random-%d", i);
        metrics_delivery(name, "unauthorized");
        metrics_pipelinerun_created(name);
    }
    /* Then the known series still count. */
    metrics_delivery("release", "ignored");
    metrics_delivery("trigger", "created");
    metrics_pipelinerun_created("lite");
    metrics_kube_request(201);
    char *text = render();

    assert_true(count_series(text, "\ngpuhook_kube_requests_total{") == 501);
    assert_true(sample(text, "gpuhook_kube_requests_total{code=\"0\"}") == 500);
    assert_true(sample(text, "gpuhook_kube_requests_total{code=\"201\"}") == 2);
    assert_true(sample(text, "gpuhook_kube_requests_total{code=\"999\"}") == -1);
    assert_true(count_series(text, "\ngpuhook_deliveries_total{") == 3);
    assert_true(
        sample(text, "gpuhook_deliveries_total{event=\"other\",outcome=\"unauthorized\"}") == 1000);
    assert_true(sample(text, "gpuhook_deliveries_total{event=\"release\",outcome=\"ignored\"}") ==
                1);
    assert_true(sample(text, "gpuhook_deliveries_total{event=\"trigger\",outcome=\"created\"}") ==
                1);
    assert_true(sample(text, "gpuhook_pipelineruns_created_total{variant=\"other\"}") == 1000);
    assert_true(sample(text, "gpuhook_pipelineruns_created_total{variant=\"lite\"}") == 1);
    free(text);

    /* An event dropped from the config counts as "other" from then on. */
    metrics_set_events(events, 3);
    metrics_delivery("release", "ignored");
    text = render();
    assert_true(sample(text, "gpuhook_deliveries_total{event=\"release\",outcome=\"ignored\"}") ==
                1);
    assert_true(sample(text, "gpuhook_deliveries_total{event=\"other\",outcome=\"ignored\"}") == 1);
    free(text);
    metrics_set_events(events, 3);
}

static void test_metrics_render_respects_the_buffer_bound(void **state) {
    (void)state;
    struct buf b;

    buf_init(&b, 64);
    assert_int_equal(metrics_render(&b), GHE_TOOBIG);
    assert_true(b.len <= 64);
    buf_cleanup(&b);
}

static void *count_from_a_thread(void *arg) {
    (void)arg;
    for (int i = 0; i < 5000; i++) {
        metrics_delivery("push", "created");
        metrics_http_observe("webhook", 201, 0.002);
    }
    return NULL;
}

static void test_metrics_counting_from_threads_loses_nothing(void **state) {
    (void)state;
    pthread_t t[4];

    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, count_from_a_thread, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    char *text = render();
    assert_true(sample(text, "gpuhook_deliveries_total{event=\"push\",outcome=\"created\"}") ==
                20000);
    assert_true(sample(text, "gpuhook_http_request_duration_seconds_count{route=\"webhook\"}") ==
                20000);
    free(text);
}

/* One escaper: backslash, double quote and line feed, as the exposition format says. */
static void test_metrics_label_escaper_escapes_backslash_quote_and_newline(void **state) {
    (void)state;
    struct buf b;
    buf_init(&b, 1024);
    assert_int_equal(promtext_label_append(&b, "a\\b\"c\nd\te"), 0);
    assert_string_equal(b.data, "a\\\\b\\\"c\\nd\te");
    assert_int_equal(promtext_label_append(&b, ""), 0);
    assert_string_equal(b.data, "a\\\\b\\\"c\\nd\te");
    buf_cleanup(&b);
}

/* A configured event name is free text: its label is escaped, not written raw. */
static void test_metrics_configured_event_names_are_escaped(void **state) {
    (void)state;
    const char *const events[] = {"push", "pull_request", "ping", "od\"d\\na\nme"};
    metrics_set_events(events, 4);
    metrics_delivery("od\"d\\na\nme", "created");
    char *text = render();
    assert_true(
        sample(text,
               "gpuhook_deliveries_total{event=\"od\\\"d\\\\na\\nme\",outcome=\"created\"}") == 1);
    assert_null(strstr(text, "od\"d"));
    free(text);
    metrics_set_events(events, 3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_metrics_every_required_family_has_help_and_type, reset),
        cmocka_unit_test_setup(test_metrics_exposition_is_well_formed, reset),
        cmocka_unit_test_setup(test_metrics_counters_increment_under_their_labels, reset),
        cmocka_unit_test_setup(test_metrics_unknown_route_counts_as_other, reset),
        cmocka_unit_test_setup(test_metrics_route_labels_come_from_the_route_table, reset),
        cmocka_unit_test_setup(test_metrics_label_values_cannot_break_the_format, reset),
        cmocka_unit_test_setup(test_metrics_label_escaper_escapes_backslash_quote_and_newline,
                               reset),
        cmocka_unit_test_setup(test_metrics_configured_event_names_are_escaped, reset),
        cmocka_unit_test_setup(test_metrics_histogram_buckets_are_cumulative, reset),
        cmocka_unit_test_setup(test_metrics_spool_depth_is_a_gauge_that_goes_both_ways, reset),
        cmocka_unit_test_setup(test_metrics_build_info_names_version_and_cuda, reset),
        cmocka_unit_test_setup(test_metrics_reset_clears_every_series, reset),
        cmocka_unit_test_setup(test_metrics_series_are_bounded_and_never_dropped, reset),
        cmocka_unit_test_setup(test_metrics_render_respects_the_buffer_bound, reset),
        cmocka_unit_test_setup(test_metrics_counting_from_threads_loses_nothing, reset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
