/*
 * Unit tests for config.c's reload flags: every key of the table says whether
 * SIGHUP applies it, and config_restart_changes reports exactly the
 * restart-only keys that changed. The expectations are this file's own list,
 * not the table, so a flag set wrong fails here. Configs are loaded offline
 * from a fresh temp folder; the template and bindings are the shipped ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpuhook/config.h"
#include "gpuhook/error.h"
#include "gpuhook/gpu.h"
#include "gpuhook/logger.h"
#include "gpuhook/select.h"

struct fixture {
    char dir[256];
    char path[300]; /* dir/gpuhook.json */
    char tmpl[1024];
    char bindings[1024];
};

static int setup(void **state) {
    struct fixture *fx = calloc(1, sizeof(*fx));
    const char *src = getenv("GPUHOOK_SOURCE_DIR");

    if (!fx || !src || src[0] != '/')
        return -1; /* the paths must be absolute: the config lives elsewhere */
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/gpuhook-test-reload-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->path, sizeof(fx->path), "%s/gpuhook.json", fx->dir);
    snprintf(fx->tmpl, sizeof(fx->tmpl), "%s/k8s/triggers/trigger-template.yaml", src);
    snprintf(fx->bindings, sizeof(fx->bindings), "%s/k8s/triggers/trigger-binding.yaml", src);
    logger_set_level(LOGGER_ERROR);
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    struct fixture *fx = *state;
    unlink(fx->path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* Replaces @D@ (the temp folder), @T@ (template) and @B@ (bindings). Caller frees. */
static char *subst(const struct fixture *fx, const char *in) {
    size_t cap = strlen(in) + 4096, n = 0;
    char *out = malloc(cap);

    assert_non_null(out);
    for (const char *p = in; *p;) {
        const char *with = strncmp(p, "@D@", 3) == 0   ? fx->dir
                           : strncmp(p, "@T@", 3) == 0 ? fx->tmpl
                           : strncmp(p, "@B@", 3) == 0 ? fx->bindings
                                                       : NULL;
        if (with) {
            assert_true(n + strlen(with) < cap);
            memcpy(out + n, with, strlen(with));
            n += strlen(with);
            p += 3;
        } else {
            assert_true(n + 1 < cap);
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return out;
}

static int load_json(const struct fixture *fx, const char *json, bool offline, struct config **out,
                     struct errlist *el) {
    char *text = subst(fx, json);
    FILE *f = fopen(fx->path, "wb");
    if (!f)
        fail_msg("cannot write %s: %s", fx->path, strerror(errno));
    fwrite(text, 1, strlen(text), f);
    fclose(f);
    free(text);
    return offline ? config_load_offline(fx->path, out, el) : config_load(fx->path, out, el);
}

static void dump_errors(const struct errlist *el) {
    for (size_t i = 0; i < el->count; i++)
        print_message("    got: %s\n", el->items[i]);
}

/*
 * The reload flags, checked against this list and not against the table: each
 * key is changed alone between two configs (FROM replaced by TO in the base
 * text), and exactly the keys marked restart here must be reported.
 */
static const struct {
    const char *key, *from, *to;
    bool restart;
} reload_cases[] = {
    {".listen", "\"listen\":\"127.0.0.1:8080\"", "\"listen\":\"127.0.0.1:8081\"", true},
    {".log_level", "\"log_level\":\"info\"", "\"log_level\":\"debug\"", false},
    {".tls.cert_file", "\"cert_file\":\"cert.pem\"", "\"cert_file\":\"cert2.pem\"", true},
    {".tls.key_file", "\"key_file\":\"key.pem\"", "\"key_file\":\"key2.pem\"", true},
    {".max_body_bytes", "\"max_body_bytes\":2048", "\"max_body_bytes\":4096", false},
    {".unverified_body_budget_bytes", "\"unverified_body_budget_bytes\":2097152",
     "\"unverified_body_budget_bytes\":4194304", false},
    {".max_connections", "\"max_connections\":100", "\"max_connections\":200", true},
    {".header_timeout_seconds", "\"header_timeout_seconds\":10", "\"header_timeout_seconds\":11",
     true},
    {".min_body_bytes_per_second", "\"min_body_bytes_per_second\":100",
     "\"min_body_bytes_per_second\":200", true},
    {".shutdown_grace_seconds", "\"shutdown_grace_seconds\":20", "\"shutdown_grace_seconds\":21",
     false},
    {".github.secret_files", "[\"secret\"]", "[\"secret2\"]", false},
    {".github.events", "[\"push\"]", "[\"push\",\"ping\"]", false},
    {".github.report.api_url", "\"https://api.example\"", "\"https://ghes.example/api/v3\"",
     true},
    {".github.report.app_id", "\"app_id\":7", "\"app_id\":8", true},
    {".github.report.private_key_file", "\"app.pem\"", "\"app2.pem\"", true},
    {".github.report.installation_id", "\"installation_id\":9", "\"installation_id\":10", true},
    {".github.report.token_file", "\"pat\"", "\"pat2\"", true},
    {".github.report.ca_file", "\"gh-ca.pem\"", "\"gh-ca2.pem\"", true},
    {".github.report.details_url", "\"https://d.example/{name}\"",
     "\"https://d.example/x/{name}\"", true},
    {".github.report.queue_max", "\"queue_max\":100", "\"queue_max\":101", true},
    {".github.report.max_attempts", "\"max_attempts\":3", "\"max_attempts\":4", true},
    {".trigger.token_file", "\"token_file\":\"token\"", "\"token_file\":\"secret\"", false},
    {".trigger.default_repo_url", "\"https://example.com/a\"", "\"https://example.com/b\"", false},
    {".kubernetes.mode", "\"mode\":\"url\"", "\"mode\":\"dry-run\"", true},
    {".kubernetes.url", "\"http://127.0.0.1:1\"", "\"http://127.0.0.1:2\"", true},
    {".kubernetes.namespace", "\"namespace\":\"ns1\"", "\"namespace\":\"ns2\"", true},
    {".kubernetes.token_file", "\"token_file\":\"ktoken\"", "\"token_file\":\"ktoken2\"", true},
    {".kubernetes.ca_file", "\"ca_file\":\"ca.pem\"", "\"ca_file\":\"ca2.pem\"", true},
    {".kubernetes.local_dir", "\"local_dir\":\"runs\"", "\"local_dir\":\"runs2\"", true},
    {".kubernetes.proxy", "\"proxy\":\"http://proxy:3128\"", "\"proxy\":\"http://proxy:3129\"",
     true},
    {".kubernetes.timeout_seconds", "\"timeout_seconds\":5", "\"timeout_seconds\":6", true},
    {".template", "\"template\":\"@T@\"", "\"template\":\"@D@/t2.yaml\"", false},
    {".bindings", "\"bindings\":\"@B@\"", "\"bindings\":\"@D@/b2.yaml\"", false},
    {".selection", "\"default\":\"lite\"", "\"default\":\"original\"", false},
    {".spool_dir", "\"spool_dir\":\"spool\"", "\"spool_dir\":\"spool2\"", true},
    {".spool_max_age_hours", "\"spool_max_age_hours\":72", "\"spool_max_age_hours\":73", true},
    {".spool_retry_after_max_seconds", "\"spool_retry_after_max_seconds\":300",
     "\"spool_retry_after_max_seconds\":301", true},
    {".gpu.refresh_seconds", "\"refresh_seconds\":5", "\"refresh_seconds\":6", false},
    {".gpu.required", "\"required\":false", "\"required\":true", false},
    {".cluster_gpu.service", "\"service\":\"agents\"", "\"service\":\"agents2\"", true},
    {".cluster_gpu.port_name", "\"port_name\":\"http\"", "\"port_name\":\"gpu\"", true},
    {".cluster_gpu.poll_seconds", "\"poll_seconds\":5", "\"poll_seconds\":6", true},
    {".cluster_gpu.stale_after", "\"stale_after\":3", "\"stale_after\":4", true},
    {".cluster_gpu.nodes", "\"nodes\":false", "\"nodes\":true", true},
    {".cluster_gpu.placement", "\"placement\":true", "\"placement\":false", false},
    {".concurrency.group", "{repo_full_name}", "{branch}", true},
    {".concurrency.cancel_pending", "\"cancel_pending\":true", "\"cancel_pending\":false", true},
    {".concurrency.cancel_running", "\"cancel_running\":false", "\"cancel_running\":true", true},
    {".concurrency.max_running.lite", "\"lite\":4", "\"lite\":5", true},
    {".concurrency.max_running.original", "\"original\":1", "\"original\":2", true},
    {".concurrency.lease.name", "\"name\":\"l1\"", "\"name\":\"l2\"", true},
    {".concurrency.lease.duration_seconds", "\"duration_seconds\":15", "\"duration_seconds\":16",
     true},
};

#define RELOAD_BASE                                                                                \
    "{\"listen\":\"127.0.0.1:8080\",\"log_level\":\"info\","                                       \
    "\"tls\":{\"cert_file\":\"cert.pem\",\"key_file\":\"key.pem\"},"                               \
    "\"max_body_bytes\":2048,\"unverified_body_budget_bytes\":2097152,"                            \
    "\"max_connections\":100,\"header_timeout_seconds\":10,\"min_body_bytes_per_second\":100,"     \
    "\"shutdown_grace_seconds\":20,"                                                               \
    "\"github\":{\"secret_files\":[\"secret\"],\"events\":[\"push\"],"                             \
    "\"report\":{\"api_url\":\"https://api.example\",\"app_id\":7,\"private_key_file\":\"app.pem\","  \
    "\"installation_id\":9,\"token_file\":\"pat\",\"ca_file\":\"gh-ca.pem\","                        \
    "\"details_url\":\"https://d.example/{name}\",\"queue_max\":100,\"max_attempts\":3}},"        \
    "\"trigger\":{\"token_file\":\"token\",\"default_repo_url\":\"https://example.com/a\"},"       \
    "\"kubernetes\":{\"mode\":\"url\",\"url\":\"http://127.0.0.1:1\",\"namespace\":\"ns1\","       \
    "\"token_file\":\"ktoken\",\"ca_file\":\"ca.pem\",\"local_dir\":\"runs\","                     \
    "\"proxy\":\"http://proxy:3128\",\"timeout_seconds\":5},"                                      \
    "\"template\":\"@T@\",\"bindings\":\"@B@\",\"selection\":{\"default\":\"lite\"},"              \
    "\"spool_dir\":\"spool\",\"spool_max_age_hours\":72,\"spool_retry_after_max_seconds\":300,"    \
    "\"gpu\":{\"refresh_seconds\":5,\"required\":false},"                                          \
    "\"cluster_gpu\":{\"service\":\"agents\",\"port_name\":\"http\",\"poll_seconds\":5,"          \
    "\"stale_after\":3,\"nodes\":false,\"placement\":true},"                                  \
    "\"concurrency\":{\"group\":\"{repo_full_name}\",\"cancel_pending\":true,"                     \
    "\"cancel_running\":false,\"max_running\":{\"lite\":4,\"original\":1},"                        \
    "\"lease\":{\"name\":\"l1\",\"duration_seconds\":15}}}"

static struct config *reload_load(const struct fixture *fx, const char *json) {
    struct config *cfg = NULL;
    struct errlist el;
    errlist_init(&el);
    int rc = load_json(fx, json, true, &cfg, &el);
    if (rc != 0)
        dump_errors(&el);
    assert_int_equal(rc, 0);
    errlist_cleanup(&el);
    return cfg;
}

static void test_config_restart_changes_name_exactly_the_restart_only_keys(void **state) {
    struct fixture *fx = *state;
    char t2[512], b2[512];

    snprintf(t2, sizeof(t2), "%s/t2.yaml", fx->dir);
    snprintf(b2, sizeof(b2), "%s/b2.yaml", fx->dir);
    assert_int_equal(symlink(fx->tmpl, t2), 0);
    assert_int_equal(symlink(fx->bindings, b2), 0);
    struct config *base = reload_load(fx, RELOAD_BASE);
    struct errlist changed;

    errlist_init(&changed);
    assert_int_equal(config_restart_changes(base, base, &changed), 0);
    for (size_t i = 0; i < sizeof(reload_cases) / sizeof(reload_cases[0]); i++) {
        const char *at = strstr(RELOAD_BASE, reload_cases[i].from);
        if (!at || strstr(at + 1, reload_cases[i].from))
            fail_msg("%s: \"%s\" is not in the base config exactly once", reload_cases[i].key,
                     reload_cases[i].from);
        char json[4096];
        snprintf(json, sizeof(json), "%.*s%s%s", (int)(at - RELOAD_BASE), RELOAD_BASE,
                 reload_cases[i].to, at + strlen(reload_cases[i].from));
        struct config *cfg = reload_load(fx, json);
        size_t n = config_restart_changes(base, cfg, &changed);
        if (reload_cases[i].restart) {
            if (n != 1 || strcmp(changed.items[0], reload_cases[i].key) != 0)
                fail_msg("%s: restart-only, but the change was reported as %zu key(s): %s",
                         reload_cases[i].key, n, n ? changed.items[0] : "none");
        } else if (n != 0) {
            fail_msg("%s: applied by SIGHUP, but reported as restart-only (%s)",
                     reload_cases[i].key, changed.items[0]);
        }
        errlist_cleanup(&changed);
        config_unref(cfg);
    }
    config_unref(base);
    unlink(t2);
    unlink(b2);
}

/* Every key of the table says whether SIGHUP applies it, and this test knows every key. */
static void test_config_every_key_has_a_reload_flag(void **state) {
    (void)state;
    size_t i = 0;
    const char *key;
    int reload = 0;

    for (; (key = config_key_at(i, &reload)) != NULL; i++) {
        if (reload != CONFIG_LIVE && reload != CONFIG_RESTART)
            fail_msg("%s: no reload flag in config.c's table (%d)", key, reload);
        bool known = false;
        for (size_t c = 0; c < sizeof(reload_cases) / sizeof(reload_cases[0]); c++)
            if (strcmp(reload_cases[c].key, key) == 0) {
                known = true;
                assert_int_equal(reload_cases[c].restart, reload == CONFIG_RESTART);
            }
        if (!known)
            fail_msg("%s: a key test_config's reload_cases does not change", key);
    }
    assert_int_equal(i, sizeof(reload_cases) / sizeof(reload_cases[0]));
}

/*
 * The gpu_fit keys live inside .selection (select.c parses them, not config.c's table), so
 * the table walk above does not see them. Each one is changed alone here: SIGHUP applies
 * it (the scheduler takes it through admission_set_fit), and the new value is loaded.
 */
static void test_config_gpu_fit_keys_are_applied_by_sighup(void **state) {
    struct fixture *fx = *state;
    static const struct {
        const char *key, *fit;
    } cases[] = {
        {".selection.gpu_fit.lite_min_free_mib", "\"lite_min_free_mib\":1024"},
        {".selection.gpu_fit.original_min_free_mib", "\"original_min_free_mib\":4096"},
        {".selection.gpu_fit.on_insufficient", "\"on_insufficient\":\"reject\""},
        {".selection.gpu_fit.max_wait_seconds", "\"max_wait_seconds\":30"},
        {".selection.gpu_fit.on_timeout", "\"on_timeout\":\"reject\""},
    };
    const char *from = "\"selection\":{\"default\":\"lite\"}";
    struct config *base = reload_load(fx, RELOAD_BASE);
    const struct gpu_fit_policy *b = select_rules_gpu_fit(base->rules);
    struct errlist changed;

    assert_int_equal(b->on_insufficient, GPU_FIT_QUEUE);
    const char *at = strstr(RELOAD_BASE, from);
    assert_non_null(at);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[4096];
        snprintf(json, sizeof(json), "%.*s\"selection\":{\"default\":\"lite\",\"gpu_fit\":{%s}}%s",
                 (int)(at - RELOAD_BASE), RELOAD_BASE, cases[i].fit, at + strlen(from));
        struct config *cfg = reload_load(fx, json);
        const struct gpu_fit_policy *p = select_rules_gpu_fit(cfg->rules);
        errlist_init(&changed);
        size_t n = config_restart_changes(base, cfg, &changed);
        if (n != 0)
            fail_msg("%s: applied by SIGHUP, but reported as restart-only (%s)", cases[i].key,
                     changed.items[0]);
        /* Exactly the one key differs from the defaults. */
        int differs = (p->lite_min_free_mib != b->lite_min_free_mib) +
                      (p->original_min_free_mib != b->original_min_free_mib) +
                      (p->on_insufficient != b->on_insufficient) +
                      (p->max_wait_seconds != b->max_wait_seconds) +
                      (p->on_timeout != b->on_timeout);
        if (differs != 1)
            fail_msg("%s: %d gpu_fit values changed, expected 1", cases[i].key, differs);
        errlist_cleanup(&changed);
        config_unref(cfg);
    }
    config_unref(base);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_restart_changes_name_exactly_the_restart_only_keys),
        cmocka_unit_test(test_config_gpu_fit_keys_are_applied_by_sighup),
        cmocka_unit_test(test_config_every_key_has_a_reload_flag),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
