/*
 * Unit tests for the pipeline (dispatch.c) without a socket or an HTTP
 * request: the shipped config and template, a push fixture, and a dry-run or
 * local sink. The completion callback receives the outcome the routes turn
 * into answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/event.h"
#include "gpuhook/naming.h"
#include "gpuhook/pipeline.h"
#include "gpuhook/select.h"

#include "testapp.h"

#define DELIVERY_ID "72d3162e-cc78-11e3-81ab-4c9367dc0958"
#define HOOK_ID "4242"

/* What the completion callback saw, and from which thread. */
struct seen {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    pthread_t thread;
    struct pipeline_outcome o;
    char run[1 << 16];
    char delivery[80]; /* o.delivery lives as long as the call */
};

static void seen_init(struct seen *s) {
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void seen_done(void *arg, const struct pipeline_outcome *o) {
    struct seen *s = arg;
    pthread_mutex_lock(&s->lock);
    s->calls++;
    s->thread = pthread_self();
    s->o = *o;
    if (o->run && o->run_len < sizeof(s->run))
        memcpy(s->run, o->run, o->run_len);
    s->o.run = NULL;
    snprintf(s->delivery, sizeof(s->delivery), "%s", o->delivery ? o->delivery : "");
    s->o.delivery = s->o.event = NULL;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void seen_wait(struct seen *s) {
    pthread_mutex_lock(&s->lock);
    while (s->calls == 0)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

/* The push fixture as the webhook route would hand it over. */
static void push_event(struct event *ev, const char *message) {
    char path[1024];
    char err[256] = "";
    size_t len = 0;

    testapp_source(path, sizeof(path), "tests/fixtures/github/push.json");
    char *body = testapp_slurp(path, &len);
    event_init(ev);
    int rc = event_parse_delivery_paths(ev, "push", DELIVERY_ID, HOOK_ID, "application/json", body,
                                        len, NULL, 0, err, sizeof(err));
    free(body);
    if (rc)
        print_error("event: %s\n", err);
    assert_int_equal(rc, 0);
    if (message) {
        free(ev->message);
        ev->message = strdup(message);
    }
}

static struct pipeline_input push_input(struct event *ev) {
    struct pipeline_input in = {
        .ev = ev,
        .forced_variant = -1,
        .name_kind = NAMING_WEBHOOK,
        .name_key = {HOOK_ID, DELIVERY_ID},
        .request_id = "unit",
        .start_ms = (long)clock_mono_ms(),
    };
    return in;
}

static void test_pipeline_prepare_renders_the_run(void **state) {
    struct testapp *t = testapp_new("dry-run", false);
    struct event ev;
    struct pipeline_outcome o;
    struct buf text;
    (void)state;

    push_event(&ev, NULL);
    struct pipeline_input in = push_input(&ev);
    memset(&o, 0, sizeof(o));
    buf_init(&text, PIPELINE_RUN_MAX);
    assert_int_equal(pipeline_prepare(t->app.cfg, "tekton-pipelines", &in, &text, &o),
                     PIPELINE_PREVIEW);
    assert_true(strcmp(o.variant, "lite") == 0 || strcmp(o.variant, "original") == 0);
    assert_string_equal(o.ns, "tekton-pipelines");
    assert_true(o.name[0] != '\0');
    cJSON *run = cJSON_ParseWithLength(text.data, text.len);
    assert_non_null(run);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(run, "metadata");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(meta, "name")->valuestring, o.name);
    cJSON_Delete(run);
    buf_cleanup(&text);
    event_cleanup(&ev);
    testapp_free(t);
}

static void test_pipeline_forced_variant_is_manual(void **state) {
    struct testapp *t = testapp_new("dry-run", false);
    struct event ev;
    struct pipeline_outcome o;
    struct buf text;
    (void)state;

    push_event(&ev, NULL);
    struct pipeline_input in = push_input(&ev);
    in.forced_variant = SELECT_ORIGINAL;
    memset(&o, 0, sizeof(o));
    buf_init(&text, PIPELINE_RUN_MAX);
    assert_int_equal(pipeline_prepare(t->app.cfg, "tekton-pipelines", &in, &text, &o),
                     PIPELINE_PREVIEW);
    assert_string_equal(o.variant, "original");
    assert_string_equal(o.rule, "manual");
    buf_cleanup(&text);
    event_cleanup(&ev);
    testapp_free(t);
}

static void test_pipeline_skip_rule_ignores(void **state) {
    struct testapp *t = testapp_new("dry-run", false);
    struct event ev;
    struct seen s;
    (void)state;

    seen_init(&s);
    push_event(&ev, "docs only [skip gpu]");
    struct pipeline_input in = push_input(&ev);
    pipeline_run(&t->app, t->app.cfg, &in, seen_done, &s);
    assert_int_equal(s.calls, 1); /* nothing to deliver: answered before returning */
    assert_int_equal(s.o.status, PIPELINE_IGNORED);
    assert_string_equal(s.o.rule, "skip-marker");
    assert_true(s.o.name[0] == '\0');
    event_cleanup(&ev);
    testapp_free(t);
}

static void test_pipeline_dry_run_sink_answers_inline(void **state) {
    struct testapp *t = testapp_new("dry-run", true);
    struct event ev;
    struct seen s;
    (void)state;

    seen_init(&s);
    push_event(&ev, NULL);
    struct pipeline_input in = push_input(&ev);
    pipeline_run(&t->app, t->app.cfg, &in, seen_done, &s);
    assert_int_equal(s.calls, 1);
    assert_true(pthread_equal(s.thread, pthread_self()));
    assert_int_equal(s.o.status, PIPELINE_DELIVERED);
    assert_int_equal(s.o.result.outcome, DELIVERY_DRY_RUN);
    assert_string_equal(s.delivery, DELIVERY_ID);
    event_cleanup(&ev);
    testapp_free(t);
}

static void test_pipeline_preview_delivers_nothing(void **state) {
    struct testapp *t = testapp_new("local", true);
    struct event ev;
    struct seen s;
    char file[512];
    struct stat st;
    (void)state;

    seen_init(&s);
    push_event(&ev, NULL);
    struct pipeline_input in = push_input(&ev);
    in.preview = true;
    pipeline_run(&t->app, t->app.cfg, &in, seen_done, &s);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.o.status, PIPELINE_PREVIEW);
    cJSON *run = cJSON_Parse(s.run);
    assert_non_null(run);
    cJSON_Delete(run);
    snprintf(file, sizeof(file), "%s/%s.json", t->local_dir, s.o.name);
    assert_int_not_equal(stat(file, &st), 0);
    event_cleanup(&ev);
    testapp_free(t);
}

/* A local sink writes (fsync) on its own work pool: the callback comes from there. */
static void test_pipeline_local_sink_creates_then_exists(void **state) {
    struct testapp *t = testapp_new("local", true);
    struct event ev;
    struct seen s1, s2;
    char file[512];
    struct stat st;
    (void)state;

    seen_init(&s1);
    seen_init(&s2);
    push_event(&ev, NULL);
    struct pipeline_input in = push_input(&ev);
    pipeline_run(&t->app, t->app.cfg, &in, seen_done, &s1);
    seen_wait(&s1);
    assert_false(pthread_equal(s1.thread, pthread_self()));
    assert_int_equal(s1.o.status, PIPELINE_DELIVERED);
    assert_int_equal(s1.o.result.outcome, DELIVERY_CREATED);
    snprintf(file, sizeof(file), "%s/%s.json", t->local_dir, s1.o.name);
    assert_int_equal(stat(file, &st), 0);

    pipeline_run(&t->app, t->app.cfg, &in, seen_done, &s2);
    seen_wait(&s2);
    assert_int_equal(s2.calls, 1);
    assert_int_equal(s2.o.status, PIPELINE_DELIVERED);
    assert_int_equal(s2.o.result.outcome, DELIVERY_EXISTS);
    assert_string_equal(s2.o.name, s1.o.name);
    assert_string_equal(s2.o.variant, s1.o.variant);
    event_cleanup(&ev);
    testapp_free(t);
}

/* The input filter, shared by the webhook route and gpuhook render. */
static void test_pipeline_should_ignore(void **state) {
    struct testapp *t = testapp_new("dry-run", false);
    char reason[256];
    (void)state;

    assert_true(pipeline_should_ignore(t->app.cfg, "issues", NULL, reason, sizeof(reason)));
    assert_string_equal(reason, "event issues is not in github.events");
    assert_true(pipeline_should_ignore(t->app.cfg, "ping", NULL, reason, sizeof(reason)));
    assert_string_equal(reason, "event ping does not start runs");
    assert_false(pipeline_should_ignore(t->app.cfg, "push", NULL, reason, sizeof(reason)));
    testapp_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pipeline_prepare_renders_the_run),
        cmocka_unit_test(test_pipeline_forced_variant_is_manual),
        cmocka_unit_test(test_pipeline_skip_rule_ignores),
        cmocka_unit_test(test_pipeline_dry_run_sink_answers_inline),
        cmocka_unit_test(test_pipeline_preview_delivers_nothing),
        cmocka_unit_test(test_pipeline_local_sink_creates_then_exists),
        cmocka_unit_test(test_pipeline_should_ignore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
