/*
 * Unit tests for delivery.c in the modes that need no API server: local
 * (one <name>.json per run, created exclusively so a redelivery is "exists")
 * and dry-run (nothing is written anywhere).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "gpuhook/buf.h"
#include "gpuhook/config.h"
#include "gpuhook/delivery.h"
#include "gpuhook/error.h"
#include "gpuhook/logger.h"

#include "testfs.h"

#define NAME "gpu-real-8-step-workflow-lite-0123456789"
#define RUN_JSON                                                                                   \
    "{\"apiVersion\":\"tekton.dev/v1\",\"kind\":\"PipelineRun\",\"metadata\":{\"name\":\"" NAME    \
    "\",\"namespace\":\"tekton-pipelines\"},\"spec\":{\"params\":[{\"name\":\"message\","          \
    "\"value\":\"quote \\\" newline \\n $(x) `y` caf\xc3\xa9\"}]}}"

struct fixture {
    char dir[256];
    char local_dir[300];
};

static int setup(void **state) {
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/gpuhook-test-delivery-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->local_dir, sizeof(fx->local_dir), "%s/var/pipelineruns", fx->dir);
    logger_set_level(LOGGER_ERROR + 1);
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    struct fixture *fx = *state;
    testfs_remove_tree(fx->dir);
    free(fx);
    return 0;
}

/* The fields delivery_new reads, as config_load would leave them. */
static void config_for(struct config *cfg, int mode, char *local_dir) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->refs = 1;
    cfg->kube_mode = mode;
    cfg->kube_local_dir = local_dir;
    cfg->kube_namespace = "tekton-pipelines";
    cfg->kube_timeout_seconds = 5;
    cfg->spool_max_age_hours = 72;
}

static struct delivery *new_delivery(int mode, char *local_dir) {
    struct config cfg;
    struct errlist el;
    struct delivery *d = NULL;

    config_for(&cfg, mode, local_dir);
    errlist_init(&el);
    int rc = delivery_new(&cfg, &d, &el);
    for (size_t i = 0; i < el.count; i++)
        print_error("delivery_new: %s\n", el.items[i]);
    assert_int_equal(rc, 0);
    assert_int_equal(el.count, 0);
    assert_non_null(d);
    errlist_cleanup(&el);
    return d;
}

/* Entries in dir other than "." and "..". */
static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static char *slurp(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *data = calloc(1, 65536);
    assert_non_null(data);
    size_t n = fread(data, 1, 65535, f);
    data[n] = '\0';
    fclose(f);
    return data;
}

static void test_delivery_local_creates_the_folder(void **state) {
    struct fixture *fx = *state;
    struct delivery *d = new_delivery(CONFIG_KUBE_LOCAL, fx->local_dir);
    struct stat st;

    assert_int_equal(stat(fx->local_dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(count_entries(fx->local_dir), 0);
    assert_int_equal(delivery_mode(d), CONFIG_KUBE_LOCAL);
    assert_string_equal(delivery_namespace(d), "tekton-pipelines");
    assert_int_equal(delivery_start(d), 0);
    delivery_free(d);
}

static void test_delivery_local_writes_the_json_byte_for_byte(void **state) {
    struct fixture *fx = *state;
    struct delivery *d = new_delivery(CONFIG_KUBE_LOCAL, fx->local_dir);
    struct delivery_result r;

    delivery_submit(d, NAME, "tekton-pipelines", RUN_JSON, strlen(RUN_JSON), 5000, &r);
    assert_int_equal(r.outcome, DELIVERY_CREATED);
    assert_int_equal(r.api_status, 0);
    assert_string_equal(r.message, "");
    char *data = slurp(fx->local_dir, NAME ".json");
    assert_non_null(data);
    assert_string_equal(data, RUN_JSON);
    free(data);
    /* Only the run: no temp file left behind. */
    assert_int_equal(count_entries(fx->local_dir), 1);
    delivery_free(d);
}

static void test_delivery_local_same_name_again_is_exists(void **state) {
    struct fixture *fx = *state;
    struct delivery *d = new_delivery(CONFIG_KUBE_LOCAL, fx->local_dir);
    struct delivery_result r;
    static const char *other = "{\"kind\":\"PipelineRun\",\"metadata\":{\"name\":\"changed\"}}";

    delivery_submit(d, NAME, "tekton-pipelines", RUN_JSON, strlen(RUN_JSON), 5000, &r);
    assert_int_equal(r.outcome, DELIVERY_CREATED);
    /* A redelivery maps to the same name: it is reported, and the first file is kept. */
    delivery_submit(d, NAME, "tekton-pipelines", other, strlen(other), 5000, &r);
    assert_int_equal(r.outcome, DELIVERY_EXISTS);
    char *data = slurp(fx->local_dir, NAME ".json");
    assert_string_equal(data, RUN_JSON);
    free(data);
    assert_int_equal(count_entries(fx->local_dir), 1);

    /* A new delivery object (another sink, as after a restart) sees the same file. */
    delivery_free(d);
    d = new_delivery(CONFIG_KUBE_LOCAL, fx->local_dir);
    delivery_submit(d, NAME, "tekton-pipelines", RUN_JSON, strlen(RUN_JSON), 5000, &r);
    assert_int_equal(r.outcome, DELIVERY_EXISTS);

    /* Another name is another run. */
    delivery_submit(d, "gpu-real-8-step-workflow-lite-abcdefabcd", "tekton-pipelines", other,
                    strlen(other), 5000, &r);
    assert_int_equal(r.outcome, DELIVERY_CREATED);
    assert_int_equal(count_entries(fx->local_dir), 2);
    delivery_free(d);
}

static void test_delivery_local_unwritable_folder_is_unavailable(void **state) {
    struct fixture *fx = *state;
    struct delivery *d = new_delivery(CONFIG_KUBE_LOCAL, fx->local_dir);
    struct delivery_result r;

    /* The folder disappears after start-up. */
    assert_int_equal(rmdir(fx->local_dir), 0);
    delivery_submit(d, NAME, "tekton-pipelines", RUN_JSON, strlen(RUN_JSON), 5000, &r);
    assert_int_equal(r.outcome, DELIVERY_UNAVAILABLE);
    assert_string_equal(r.message, "cannot write to kubernetes.local_dir");
    assert_int_equal(access(fx->local_dir, F_OK), -1);
    delivery_free(d);
}

static void test_delivery_local_folder_that_cannot_be_made_is_an_error(void **state) {
    struct fixture *fx = *state;
    char file[300], dir[400];
    struct config cfg;
    struct errlist el;
    struct delivery *d = (struct delivery *)1;

    snprintf(file, sizeof(file), "%s/plainfile", fx->dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);
    snprintf(dir, sizeof(dir), "%s/runs", file);
    config_for(&cfg, CONFIG_KUBE_LOCAL, dir);
    errlist_init(&el);
    assert_int_not_equal(delivery_new(&cfg, &d, &el), 0);
    assert_null(d);
    assert_int_equal(el.count, 1);
    char want[600];
    snprintf(want, sizeof(want), "kubernetes.local_dir %s: Not a directory", dir);
    assert_string_equal(el.items[0], want);
    errlist_cleanup(&el);
}

static void test_delivery_dry_run_creates_nothing(void **state) {
    struct fixture *fx = *state;
    struct delivery *d = new_delivery(CONFIG_KUBE_DRY_RUN, fx->local_dir);
    struct delivery_result r;

    assert_int_equal(delivery_mode(d), CONFIG_KUBE_DRY_RUN);
    assert_int_equal(delivery_start(d), 0);
    delivery_submit(d, NAME, "tekton-pipelines", RUN_JSON, strlen(RUN_JSON), 5000, &r);
    assert_int_equal(r.outcome, DELIVERY_DRY_RUN);
    delivery_submit(d, NAME, "tekton-pipelines", RUN_JSON, strlen(RUN_JSON), 5000, &r);
    assert_int_equal(r.outcome, DELIVERY_DRY_RUN); /* never "exists": nothing was kept */
    delivery_free(d);
    /* Not even the local folder was made; the temp folder is as empty as it started. */
    assert_int_equal(access(fx->local_dir, F_OK), -1);
    assert_int_equal(count_entries(fx->dir), 0);
}

/* Parses "{" + detail + "}" and returns the "delivery" member's tree (caller deletes root). */
static cJSON *ready_detail(struct delivery *d, bool *ok) {
    struct buf b;
    buf_init(&b, 4096);
    assert_int_equal(buf_appends(&b, "{"), 0);
    *ok = delivery_ready(d, &b);
    assert_int_equal(buf_appends(&b, "}"), 0);
    cJSON *root = cJSON_Parse(b.data);
    if (!root)
        fail_msg("readiness detail is not JSON: %s", b.data);
    buf_cleanup(&b);
    return root;
}

static void test_delivery_ready_reports_local_and_dry_run(void **state) {
    struct fixture *fx = *state;
    struct delivery *d = new_delivery(CONFIG_KUBE_LOCAL, fx->local_dir);
    bool ok = false;

    cJSON *root = ready_detail(d, &ok);
    assert_true(ok);
    const cJSON *del = cJSON_GetObjectItemCaseSensitive(root, "delivery");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(del, "ok")));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(del, "mode")->valuestring, "local");
    assert_non_null(
        strstr(cJSON_GetObjectItemCaseSensitive(del, "detail")->valuestring, "is writable"));
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "spool"));
    cJSON_Delete(root);
    /* The readiness probe leaves nothing behind in the folder. */
    assert_int_equal(count_entries(fx->local_dir), 0);
    delivery_free(d);

    d = new_delivery(CONFIG_KUBE_DRY_RUN, fx->local_dir);
    root = ready_detail(d, &ok);
    assert_true(ok);
    del = cJSON_GetObjectItemCaseSensitive(root, "delivery");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(del, "mode")->valuestring, "dry-run");
    cJSON_Delete(root);
    delivery_free(d);
}

static void test_delivery_ready_fails_when_the_local_folder_is_gone(void **state) {
    struct fixture *fx = *state;
    struct delivery *d = new_delivery(CONFIG_KUBE_LOCAL, fx->local_dir);
    bool ok = true;

    assert_int_equal(rmdir(fx->local_dir), 0);
    cJSON *root = ready_detail(d, &ok);
    assert_false(ok);
    const cJSON *del = cJSON_GetObjectItemCaseSensitive(root, "delivery");
    assert_true(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(del, "ok")));
    assert_non_null(
        strstr(cJSON_GetObjectItemCaseSensitive(del, "detail")->valuestring, "is not writable"));
    cJSON_Delete(root);
    delivery_free(d);
}

static void test_delivery_namespace_defaults_to_tekton_pipelines(void **state) {
    struct fixture *fx = *state;
    struct config cfg;
    struct errlist el;
    struct delivery *d = NULL;

    config_for(&cfg, CONFIG_KUBE_DRY_RUN, fx->local_dir);
    cfg.kube_namespace = NULL;
    errlist_init(&el);
    assert_int_equal(delivery_new(&cfg, &d, &el), 0);
    assert_string_equal(delivery_namespace(d), "tekton-pipelines");
    delivery_free(d);
    cfg.kube_namespace = "ci";
    assert_int_equal(delivery_new(&cfg, &d, &el), 0);
    assert_string_equal(delivery_namespace(d), "ci");
    delivery_free(d);
    errlist_cleanup(&el);
}

static void test_delivery_outcome_names(void **state) {
    (void)state;
    assert_string_equal(delivery_outcome_name(DELIVERY_CREATED), "created");
    assert_string_equal(delivery_outcome_name(DELIVERY_EXISTS), "exists");
    assert_string_equal(delivery_outcome_name(DELIVERY_QUEUED), "queued");
    assert_string_equal(delivery_outcome_name(DELIVERY_DRY_RUN), "dry_run");
    assert_string_equal(delivery_outcome_name(DELIVERY_REJECTED), "rejected");
    assert_string_equal(delivery_outcome_name(DELIVERY_UNAVAILABLE), "unavailable");
    assert_string_equal(delivery_outcome_name(-1), "unknown");
    assert_string_equal(delivery_outcome_name(DELIVERY_UNAVAILABLE + 1), "unknown");
}

/* delivery_deliver: the sinks' one entry, each deciding its own threading. */
struct deliver_seen {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int calls;
    pthread_t thread;
    struct delivery_result r;
};

static void deliver_done(void *arg, const struct delivery_result *r) {
    struct deliver_seen *s = arg;
    pthread_mutex_lock(&s->lock);
    s->calls++;
    s->thread = pthread_self();
    s->r = *r;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static void deliver_wait(struct deliver_seen *s) {
    pthread_mutex_lock(&s->lock);
    while (s->calls == 0)
        pthread_cond_wait(&s->cond, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

static void deliver_seen_init(struct deliver_seen *s) {
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
}

static void test_delivery_deliver_dry_run_answers_inline(void **state) {
    struct fixture *fx = *state;
    struct delivery *d = new_delivery(CONFIG_KUBE_DRY_RUN, fx->local_dir);
    struct deliver_seen s;

    deliver_seen_init(&s);
    assert_int_equal(delivery_start(d), 0);
    delivery_deliver(d, NAME, "tekton-pipelines", RUN_JSON, strlen(RUN_JSON), 5000, deliver_done,
                     &s);
    assert_int_equal(s.calls, 1);
    assert_true(pthread_equal(s.thread, pthread_self()));
    assert_int_equal(s.r.outcome, DELIVERY_DRY_RUN);
    delivery_free(d);
}

/* Before delivery_start there is no pool: the local sink writes inline. */
static void test_delivery_deliver_local_without_pool_is_inline(void **state) {
    struct fixture *fx = *state;
    struct delivery *d = new_delivery(CONFIG_KUBE_LOCAL, fx->local_dir);
    struct deliver_seen s;

    deliver_seen_init(&s);
    delivery_deliver(d, NAME, "tekton-pipelines", RUN_JSON, strlen(RUN_JSON), 5000, deliver_done,
                     &s);
    assert_int_equal(s.calls, 1);
    assert_true(pthread_equal(s.thread, pthread_self()));
    assert_int_equal(s.r.outcome, DELIVERY_CREATED);
    delivery_free(d);
}

/* Started, the local sink's fsync runs on its own pool, and done comes from there once. */
static void test_delivery_deliver_local_runs_on_the_pool(void **state) {
    struct fixture *fx = *state;
    struct delivery *d = new_delivery(CONFIG_KUBE_LOCAL, fx->local_dir);
    struct deliver_seen s1, s2;

    deliver_seen_init(&s1);
    deliver_seen_init(&s2);
    assert_int_equal(delivery_start(d), 0);
    delivery_deliver(d, NAME, "tekton-pipelines", RUN_JSON, strlen(RUN_JSON), 5000, deliver_done,
                     &s1);
    deliver_wait(&s1);
    assert_false(pthread_equal(s1.thread, pthread_self()));
    assert_int_equal(s1.r.outcome, DELIVERY_CREATED);
    delivery_deliver(d, NAME, "tekton-pipelines", RUN_JSON, strlen(RUN_JSON), 5000, deliver_done,
                     &s2);
    deliver_wait(&s2);
    assert_int_equal(s2.r.outcome, DELIVERY_EXISTS);
    delivery_free(d);
    assert_int_equal(s1.calls, 1);
    assert_int_equal(s2.calls, 1);
    assert_int_equal(count_entries(fx->local_dir), 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_delivery_local_creates_the_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_local_writes_the_json_byte_for_byte, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delivery_local_same_name_again_is_exists, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delivery_local_unwritable_folder_is_unavailable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delivery_local_folder_that_cannot_be_made_is_an_error,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_dry_run_creates_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_ready_reports_local_and_dry_run, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delivery_ready_fails_when_the_local_folder_is_gone,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_delivery_namespace_defaults_to_tekton_pipelines, setup,
                                        teardown),
        cmocka_unit_test(test_delivery_outcome_names),
        cmocka_unit_test_setup_teardown(test_delivery_deliver_dry_run_answers_inline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delivery_deliver_local_without_pool_is_inline, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_delivery_deliver_local_runs_on_the_pool, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
