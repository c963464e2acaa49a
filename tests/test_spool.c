/*
 * Unit tests for spool.c: atomic writes (exclusive and replacing, no temp
 * files left), opening creates the folders, one file per name whatever the
 * number of puts, and the retry worker moving expired and unreadable entries
 * to failed/ beside a .error file. The worker's API is a closed local port.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "gpuhook/buf.h"
#include "gpuhook/config.h"
#include "gpuhook/error.h"
#include "gpuhook/kube.h"
#include "gpuhook/logger.h"

#include "testfs.h"
#include "gpuhook/metrics.h"
#include "gpuhook/spool.h"

#define RUN_JSON                                                                                   \
    "{\"apiVersion\":\"tekton.dev/v1\",\"kind\":\"PipelineRun\","                                  \
    "\"metadata\":{\"name\":\"gpu-run-0123456789\",\"namespace\":\"tekton-pipelines\"}}"

struct fixture {
    char dir[256];
};

static int setup(void **state) {
    struct fixture *fx = calloc(1, sizeof(*fx));
    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/gpuhook-test-spool-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    /* The worker logs each failure; the tests check files instead. */
    logger_set_level(LOGGER_ERROR + 1);
    metrics_reset();
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    struct fixture *fx = *state;
    testfs_remove_tree(fx->dir);
    free(fx);
    return 0;
}

static char *path_in(const char *dir, const char *name) {
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
    return p;
}

static bool exists(const char *dir, const char *name) {
    char *p = path_in(dir, name);
    bool ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

/* Reads dir/name whole (caller frees), or NULL. */
static char *slurp(const char *dir, const char *name) {
    char *p = path_in(dir, name);
    FILE *f = fopen(p, "rb");
    free(p);
    if (!f)
        return NULL;
    char *data = calloc(1, 65536);
    assert_non_null(data);
    size_t n = fread(data, 1, 65535, f);
    data[n] = '\0';
    fclose(f);
    return data;
}

/* Entries in dir other than "." and "..", and how many of them start with ".tmp". */
static int count_entries(const char *dir, int *temps) {
    DIR *d = opendir(dir);
    int n = 0;
    if (temps)
        *temps = 0;
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        if (temps && strncmp(de->d_name, ".tmp", 4) == 0)
            (*temps)++;
    }
    closedir(d);
    return n;
}

static void test_spool_exclusive_write_refuses_an_existing_file(void **state) {
    struct fixture *fx = *state;
    int temps;

    assert_int_equal(spool_write_atomic(fx->dir, "run.json", "first", 5, 1), 0);
    assert_int_equal(spool_write_atomic(fx->dir, "run.json", "second", 6, 1), GHE_EXISTS);
    char *data = slurp(fx->dir, "run.json");
    assert_string_equal(data, "first");
    free(data);
    assert_int_equal(count_entries(fx->dir, &temps), 1);
    assert_int_equal(temps, 0);
}

static void test_spool_replacing_write_replaces(void **state) {
    struct fixture *fx = *state;
    int temps;

    assert_int_equal(spool_write_atomic(fx->dir, "run.json", "first version", 13, 0), 0);
    assert_int_equal(spool_write_atomic(fx->dir, "run.json", "second", 6, 0), 0);
    char *data = slurp(fx->dir, "run.json");
    assert_string_equal(data, "second");
    free(data);
    assert_int_equal(count_entries(fx->dir, &temps), 1);
    assert_int_equal(temps, 0);

    /* Empty contents are written, not skipped. */
    assert_int_equal(spool_write_atomic(fx->dir, "empty.json", "", 0, 1), 0);
    data = slurp(fx->dir, "empty.json");
    assert_string_equal(data, "");
    free(data);
}

static void test_spool_write_into_a_missing_folder_fails_cleanly(void **state) {
    struct fixture *fx = *state;
    char *missing = path_in(fx->dir, "absent");

    assert_int_equal(spool_write_atomic(missing, "run.json", "x", 1, 1), GHE_IO);
    assert_int_equal(spool_write_atomic(missing, "run.json", "x", 1, 0), GHE_IO);
    assert_int_equal(count_entries(fx->dir, NULL), 0);
    free(missing);
}

static void test_spool_large_contents_are_written_whole(void **state) {
    struct fixture *fx = *state;
    size_t len = 3 * 1024 * 1024 + 17;
    char *big = malloc(len + 1);

    assert_non_null(big);
    for (size_t i = 0; i < len; i++)
        big[i] = (char)('a' + i % 26);
    big[len] = '\0';
    assert_int_equal(spool_write_atomic(fx->dir, "big.json", big, len, 1), 0);
    char *p = path_in(fx->dir, "big.json");
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, len);
    free(p);
    free(big);
}

static void test_spool_open_creates_the_folder_and_failed(void **state) {
    struct fixture *fx = *state;
    char *dir = path_in(fx->dir, "a/b/spool");
    char err[256] = "";
    struct spool *s = NULL;

    assert_int_equal(spool_open(dir, 72, &s, err, sizeof(err)), 0);
    assert_non_null(s);
    assert_string_equal(err, "");
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_true(exists(dir, "failed"));
    assert_int_equal(spool_depth(s), 0);
    spool_free(s);

    /* Opening again over the existing folders works. */
    assert_int_equal(spool_open(dir, 72, &s, err, sizeof(err)), 0);
    spool_free(s);
    free(dir);
}

static void test_spool_open_reports_a_folder_it_cannot_create(void **state) {
    struct fixture *fx = *state;
    char *file = path_in(fx->dir, "plainfile");
    char *dir = path_in(fx->dir, "plainfile/spool");
    char err[512] = "";
    struct spool *s = (struct spool *)1;
    FILE *f = fopen(file, "w");

    assert_non_null(f);
    fclose(f);
    assert_int_equal(spool_open(dir, 72, &s, err, sizeof(err)), GHE_IO);
    assert_null(s);
    char want[600];
    snprintf(want, sizeof(want), "spool_dir %s: Not a directory", dir);
    assert_string_equal(err, want);
    free(file);
    free(dir);
}

static void test_spool_put_same_name_twice_leaves_one_file(void **state) {
    struct fixture *fx = *state;
    char err[256];
    struct spool *s = NULL;
    int temps;

    assert_int_equal(spool_open(fx->dir, 72, &s, err, sizeof(err)), 0);
    assert_int_equal(spool_put(s, "gpu-run-0123456789", RUN_JSON, strlen(RUN_JSON)), 0);
    /* The second put of a name keeps the first file as it is. */
    assert_int_equal(spool_put(s, "gpu-run-0123456789", "{\"other\":1}", 11), GHE_EXISTS);
    /* The folder holds failed/ and one run; the depth counts runs, not puts. */
    assert_int_equal(count_entries(fx->dir, &temps), 2);
    assert_int_equal(temps, 0);
    char *data = slurp(fx->dir, "gpu-run-0123456789.json");
    assert_string_equal(data, RUN_JSON);
    free(data);
    assert_int_equal(spool_depth(s), 1);

    assert_int_equal(spool_put(s, "gpu-run-abcdefabcd", RUN_JSON, strlen(RUN_JSON)), 0);
    assert_int_equal(spool_depth(s), 2);

    /* The gauge follows the depth. */
    struct buf b;
    buf_init(&b, 1 << 20);
    assert_int_equal(metrics_render(&b), 0);
    assert_non_null(strstr(b.data, "\ngpuhook_spool_depth 2\n"));
    buf_cleanup(&b);
    spool_free(s);
}

/* A free local TCP port with nothing listening on it. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* A client for an API server that is down. */
static struct kube *kube_down(void) {
    struct config cfg;
    struct errlist el;
    struct kube *k = NULL;
    char url[64];

    memset(&cfg, 0, sizeof(cfg));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", closed_port());
    cfg.kube_mode = CONFIG_KUBE_URL;
    cfg.kube_url = url;
    cfg.kube_namespace = "tekton-pipelines";
    cfg.kube_timeout_seconds = 1;
    errlist_init(&el);
    assert_int_equal(kube_new(&cfg, &k, &el), 0);
    errlist_cleanup(&el);
    return k;
}

/* Waits up to ms for dir/name to exist. */
static bool wait_for(const char *dir, const char *name, int ms) {
    for (int waited = 0; waited < ms; waited += 20) {
        if (exists(dir, name))
            return true;
        usleep(20 * 1000);
    }
    return exists(dir, name);
}

static void set_age_hours(const char *dir, const char *name, int hours) {
    char *p = path_in(dir, name);
    struct timeval tv[2];
    gettimeofday(&tv[0], NULL);
    tv[0].tv_sec -= hours * 3600;
    tv[1] = tv[0];
    assert_int_equal(utimes(p, tv), 0);
    free(p);
}

static void test_spool_worker_moves_expired_runs_to_failed(void **state) {
    struct fixture *fx = *state;
    char err[256];
    struct spool *s = NULL;
    struct kube *k = kube_down();
    char *failed = path_in(fx->dir, "failed");

    /* A run left by an earlier process, two hours old, with a one-hour limit. */
    assert_int_equal(spool_open(fx->dir, 1, &s, err, sizeof(err)), 0);
    assert_int_equal(
        spool_write_atomic(fx->dir, "old-run-0123456789.json", RUN_JSON, strlen(RUN_JSON), 0), 0);
    set_age_hours(fx->dir, "old-run-0123456789.json", 2);
    assert_int_equal(spool_start(s, k), 0);

    assert_true(wait_for(failed, "old-run-0123456789.error", 5000));
    assert_true(wait_for(failed, "old-run-0123456789.json", 5000));
    assert_false(exists(fx->dir, "old-run-0123456789.json"));
    char *reason = slurp(failed, "old-run-0123456789.error");
    assert_non_null(strstr(reason, "expired"));
    free(reason);
    char *data = slurp(failed, "old-run-0123456789.json");
    assert_string_equal(data, RUN_JSON);
    free(data);
    /* The API was never asked. */
    spool_free(s);
    assert_int_equal(count_entries(fx->dir, NULL), 1);
    kube_free(k);
    free(failed);
}

static void test_spool_worker_moves_unreadable_entries_to_failed(void **state) {
    struct fixture *fx = *state;
    char err[256];
    struct spool *s = NULL;
    struct kube *k = kube_down();
    char *failed = path_in(fx->dir, "failed");
    static const char *bad = "{\"kind\":\"PipelineRun\",\"metadata\":{\"name\":\"x\"}}";

    assert_int_equal(spool_open(fx->dir, 72, &s, err, sizeof(err)), 0);
    assert_int_equal(spool_put(s, "no-namespace-0123456789", bad, strlen(bad)), 0);
    assert_int_equal(spool_start(s, k), 0);

    assert_true(wait_for(failed, "no-namespace-0123456789.json", 5000));
    assert_true(wait_for(failed, "no-namespace-0123456789.error", 5000));
    char *reason = slurp(failed, "no-namespace-0123456789.error");
    assert_non_null(strstr(reason, "namespace"));
    free(reason);
    assert_false(exists(fx->dir, "no-namespace-0123456789.json"));
    /* The worker recounts after its scan: nothing waits any more. */
    for (int i = 0; i < 100 && spool_depth(s) != 0; i++)
        usleep(20 * 1000);
    assert_int_equal(spool_depth(s), 0);
    spool_free(s);
    kube_free(k);
    free(failed);
}

static void test_spool_worker_keeps_runs_while_the_api_is_down(void **state) {
    struct fixture *fx = *state;
    char err[256];
    struct spool *s = NULL;
    struct kube *k = kube_down();
    char *failed = path_in(fx->dir, "failed");
    struct buf b;

    assert_int_equal(spool_open(fx->dir, 72, &s, err, sizeof(err)), 0);
    assert_int_equal(spool_put(s, "gpu-run-0123456789", RUN_JSON, strlen(RUN_JSON)), 0);
    assert_int_equal(spool_start(s, k), 0);

    /* Wait until the worker has tried the API at least once (no answer counts as code 0). */
    bool tried = false;
    for (int i = 0; i < 500 && !tried; i++) {
        buf_init(&b, 1 << 20);
        assert_int_equal(metrics_render(&b), 0);
        tried = strstr(b.data, "gpuhook_kube_requests_total{code=\"0\"}") != NULL;
        buf_cleanup(&b);
        if (!tried)
            usleep(20 * 1000);
    }
    assert_true(tried);
    assert_true(exists(fx->dir, "gpu-run-0123456789.json"));
    assert_int_equal(count_entries(failed, NULL), 0);
    assert_int_equal(spool_depth(s), 1);
    spool_free(s);
    /* Stopping the worker leaves the run for the next process. */
    assert_true(exists(fx->dir, "gpu-run-0123456789.json"));
    kube_free(k);
    free(failed);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spool_exclusive_write_refuses_an_existing_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_replacing_write_replaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spool_write_into_a_missing_folder_fails_cleanly, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_large_contents_are_written_whole, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_open_creates_the_folder_and_failed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_open_reports_a_folder_it_cannot_create, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_put_same_name_twice_leaves_one_file, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_worker_moves_expired_runs_to_failed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_worker_moves_unreadable_entries_to_failed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_spool_worker_keeps_runs_while_the_api_is_down, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
