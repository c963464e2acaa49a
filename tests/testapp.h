/*
 * For the unit tests of the routes and the pipeline: an app on the shipped
 * config and template, made to run in a scratch folder with a sink of the
 * test's choosing (dry-run or local), a webhook secret and a trigger token.
 * Header-only: each test_<module>.c is one executable.
 */
#ifndef GPUHOOK_TESTAPP_H
#define GPUHOOK_TESTAPP_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "gpuhook/app.h"
#include "gpuhook/config.h"
#include "gpuhook/delivery.h"
#include "gpuhook/error.h"
#include "gpuhook/logger.h"
#include "testfs.h"

#define TESTAPP_SECRET "It's a Secret to Everybody"
#define TESTAPP_TOKEN "unit-trigger-token"

struct testapp {
    char dir[256];
    char local_dir[300];
    struct app app;
};

static void testapp_source(char *out, size_t n, const char *rel) {
    const char *root = getenv("GPUHOOK_SOURCE_DIR");
    snprintf(out, n, "%s/%s", root ? root : "..", rel);
}

static void testapp_write(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    fclose(f);
}

static char *testapp_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *data = calloc(1, 1 << 20);
    assert_non_null(data);
    size_t n = fread(data, 1, (1 << 20) - 1, f);
    fclose(f);
    if (len)
        *len = n;
    return data;
}

/* mode: "dry-run" or "local"; start: delivery_start (the sink's work pool) too. */
static struct testapp *testapp_new(const char *mode, bool start) {
    struct testapp *t = calloc(1, sizeof(*t));
    char src[1024], p[1100];
    struct errlist el;
    struct config *cfg = NULL;
    struct delivery *d = NULL;

    assert_non_null(t);
    logger_set_level(LOGGER_ERROR + 1);
    snprintf(t->dir, sizeof(t->dir), "/tmp/gpuhook-test-app-XXXXXX");
    assert_non_null(mkdtemp(t->dir));
    snprintf(t->local_dir, sizeof(t->local_dir), "%s/runs", t->dir);

    testapp_source(src, sizeof(src), "config/gpuhook.json");
    size_t n = 0;
    char *text = testapp_slurp(src, &n);
    cJSON *root = cJSON_ParseWithLength(text, n);
    free(text);
    assert_non_null(root);
    cJSON_DeleteItemFromObjectCaseSensitive(root, "spool_dir");
    cJSON *github = cJSON_GetObjectItemCaseSensitive(root, "github");
    snprintf(p, sizeof(p), "%s/webhook-secret", t->dir);
    testapp_write(p, TESTAPP_SECRET "\n");
    const char *secrets[] = {p};
    cJSON_ReplaceItemInObjectCaseSensitive(github, "secret_files",
                                           cJSON_CreateStringArray(secrets, 1));
    cJSON *trigger = cJSON_GetObjectItemCaseSensitive(root, "trigger");
    snprintf(p, sizeof(p), "%s/trigger-token", t->dir);
    testapp_write(p, TESTAPP_TOKEN "\n");
    cJSON_ReplaceItemInObjectCaseSensitive(trigger, "token_file", cJSON_CreateString(p));
    cJSON *kube = cJSON_CreateObject();
    cJSON_AddStringToObject(kube, "mode", mode);
    cJSON_AddStringToObject(kube, "namespace", "tekton-pipelines");
    if (strcmp(mode, "local") == 0)
        cJSON_AddStringToObject(kube, "local_dir", t->local_dir);
    cJSON_ReplaceItemInObjectCaseSensitive(root, "kubernetes", kube);
    testapp_source(p, sizeof(p), "k8s/triggers/trigger-template.yaml");
    cJSON_ReplaceItemInObjectCaseSensitive(root, "template", cJSON_CreateString(p));
    testapp_source(p, sizeof(p), "k8s/triggers/trigger-binding.yaml");
    cJSON_ReplaceItemInObjectCaseSensitive(root, "bindings", cJSON_CreateString(p));
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    snprintf(p, sizeof(p), "%s/gpuhook.json", t->dir);
    testapp_write(p, out);
    free(out);

    errlist_init(&el);
    int rc = config_load(p, &cfg, &el);
    if (rc == 0)
        rc = delivery_new(cfg, &d, &el);
    for (size_t i = 0; i < el.count; i++)
        print_error("testapp: %s\n", el.items[i]);
    errlist_cleanup(&el);
    assert_int_equal(rc, 0);
    if (start)
        assert_int_equal(delivery_start(d), 0);
    assert_int_equal(app_init(&t->app, cfg, d), 0);
    return t;
}

static void testapp_free(struct testapp *t) {
    app_cleanup(&t->app);
    testfs_remove_tree(t->dir);
    free(t);
}

#endif
