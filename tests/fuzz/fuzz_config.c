/*
 * Fuzz target 4: config loading. The input is written to a scratch
 * config/gpuhook.json beside copies of the shipped k8s/triggers files, so the
 * shipped config/gpuhook.json (which names ../k8s/triggers/...) loads as it
 * is, and loaded with config_load_offline(), which reads no secrets. A config
 * that loads is then used: its selection rules decide for the push fixture
 * and its template renders the result.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gpuhook/config.h"
#include "gpuhook/error.h"
#include "gpuhook/event.h"
#include "gpuhook/select.h"
#include "gpuhook/signature.h"
#include "gpuhook/template.h"

struct fuzz_cfg_state {
    char path[4200];
    struct event push;
};

static void fuzz_cfg_mkdir(const char *path) {
    FUZZ_REQUIRE(mkdir(path, 0700) == 0, "cannot make %s", path);
}

static struct fuzz_cfg_state *fuzz_cfg_state(void) {
    static struct fuzz_cfg_state s;
    static bool ready;
    static char data[64 * 1024];
    char dir[4200], path[4300], err[512];

    if (ready)
        return &s;
    fuzz_quiet();
    const char *tmp = fuzz_temp_dir();
    snprintf(dir, sizeof(dir), "%s/config", tmp);
    fuzz_cfg_mkdir(dir);
    snprintf(dir, sizeof(dir), "%s/k8s", tmp);
    fuzz_cfg_mkdir(dir);
    snprintf(dir, sizeof(dir), "%s/k8s/triggers", tmp);
    fuzz_cfg_mkdir(dir);
    snprintf(path, sizeof(path), "%s/trigger-template.yaml", dir);
    fuzz_copy_source("k8s/triggers/trigger-template.yaml", path);
    snprintf(path, sizeof(path), "%s/trigger-binding.yaml", dir);
    fuzz_copy_source("k8s/triggers/trigger-binding.yaml", path);
    snprintf(s.path, sizeof(s.path), "%s/config/gpuhook.json", tmp);

    fuzz_source_path(path, sizeof(path), "tests/fixtures/github/push.json");
    FILE *f = fopen(path, "rb");
    FUZZ_REQUIRE(f != NULL, "cannot open %s", path);
    size_t n = fread(data, 1, sizeof(data), f);
    fclose(f);
    event_init(&s.push);
    FUZZ_REQUIRE(event_parse_delivery(&s.push, "push", "72d3162e", "123456", "application/json",
                                      data, n, err, sizeof(err)) == 0,
                 "push.json: %s", err);
    ready = true;
    return &s;
}

static void fuzz_cfg_use(struct fuzz_cfg_state *s, struct config *cfg) {
    struct select_decision d;
    char err[512];
    cJSON *run = NULL;

    FUZZ_REQUIRE(cfg->refs == 1 && cfg->path && cfg->listen && cfg->listen_host,
                 "a loaded config is complete");
    FUZZ_REQUIRE(cfg->listen_port >= 0 && cfg->listen_port <= 65535, "port %d", cfg->listen_port);
    FUZZ_REQUIRE(cfg->max_body_bytes >= 1024 && cfg->max_body_bytes <= 64L * 1024 * 1024,
                 "max_body_bytes %ld", cfg->max_body_bytes);
    FUZZ_REQUIRE(cfg->kube_mode >= CONFIG_KUBE_LOCAL && cfg->kube_mode <= CONFIG_KUBE_DRY_RUN,
                 "kube mode %d", cfg->kube_mode);
    FUZZ_REQUIRE(cfg->secret_count >= 1 && cfg->secret_count <= SIGNATURE_MAX_KEYS,
                 "%zu secret files", cfg->secret_count);
    for (size_t i = 0; i < cfg->secret_count; i++)
        FUZZ_REQUIRE(cfg->secret_files[i] && cfg->secret_files[i][0], "secret file %zu", i);
    for (size_t i = 0; i < cfg->event_count; i++)
        FUZZ_REQUIRE(cfg->events[i] && cfg->events[i][0], "event %zu", i);
    FUZZ_REQUIRE(!cfg->keyring && !cfg->trigger_token, "offline loading read a secret");
    FUZZ_REQUIRE(cfg->tmpl && cfg->rules, "template and rules are compiled");
    FUZZ_REQUIRE(cfg->kube_mode == CONFIG_KUBE_IN_CLUSTER || cfg->kube_namespace,
                 "a namespace outside the cluster");
    FUZZ_REQUIRE(select_rules_gpu_fit(cfg->rules) != NULL, "a gpu_fit policy");

    struct config *ref = config_ref(cfg);
    FUZZ_REQUIRE(ref == cfg && cfg->refs == 2, "config_ref");
    config_unref(ref);

    select_decide(cfg->rules, &s->push, &d);
    FUZZ_REQUIRE(d.variant >= SELECT_LITE && d.variant <= SELECT_SKIP, "variant %d", d.variant);
    FUZZ_REQUIRE(d.rule[0] && d.reason[0], "a decision names its rule and reason");
    (void)select_rules_names_label(cfg->rules, "gpu:original");

    struct template_render_input in = {
        .ev = &s->push,
        .decision = &d,
        .namespace = cfg->kube_namespace,
        .name_key = {"123456", "72d3162e"},
    };
    int rc = template_render(cfg->tmpl, &in, &run, err, sizeof(err));
    FUZZ_REQUIRE(rc == 0 || rc == GHE_INVAL || rc == GHE_NOMEM, "render code %d", rc);
    FUZZ_REQUIRE(rc != 0 || cJSON_IsObject(run), "render result");
    cJSON_Delete(run);
}

int fuzz_config_one(const uint8_t *data, size_t size) {
    struct fuzz_cfg_state *s = fuzz_cfg_state();
    struct errlist el;
    struct config *cfg = NULL;

    fuzz_write_file(s->path, data, size);
    errlist_init(&el);
    int rc = config_load_offline(s->path, &cfg, &el);
    FUZZ_REQUIRE(rc == 0 || rc == GHE_INVAL || rc == GHE_IO || rc == GHE_NOMEM,
                 "unexpected code %d", rc);
    FUZZ_REQUIRE((rc == 0) == (cfg != NULL), "result and code disagree");
    FUZZ_REQUIRE(rc == 0 || el.count > 0, "failure %d without a message", rc);
    for (size_t i = 0; i < el.count; i++)
        FUZZ_REQUIRE(el.items[i] && el.items[i][0], "empty message %zu", i);
    if (cfg) {
        fuzz_cfg_use(s, cfg);
        config_unref(cfg);
    }
    errlist_cleanup(&el);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_config_one(data, size); }
#endif
