#include "gpuhook/serve.h"
#include "routes.h"
#include "gpuhook/admission.h"
#include "gpuhook/app.h"
#include "gpuhook/bodybudget.h"
#include "gpuhook/clusterview.h"
#include "gpuhook/config.h"
#include "gpuhook/delivery.h"
#include "gpuhook/gpu.h"
#include "gpuhook/http.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"
#include "gpuhook/select.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

/* What takes effect at once, at start and on reload. */
static void serve_apply(const struct config *cfg) {
    logger_set_level(cfg->log_level);
    bodybudget_set_limit(cfg->unverified_body_budget_bytes);
    metrics_set_events((const char *const *)cfg->events, cfg->event_count);
}

static void serve_reload(struct app *app, const char *path) {
    struct errlist el;
    struct config *cfg = NULL;

    errlist_init(&el);
    if (config_load(path, &cfg, &el) != 0) {
        for (size_t i = 0; i < el.count; i++)
            LOGGER_ERROR_("reload refused; the old config stays in force", "error", el.items[i]);
        errlist_cleanup(&el);
        return;
    }
    struct config *old = app_config(app);
    /* The restart-only keys come from config.c's table. */
    struct errlist changed;
    errlist_init(&changed);
    config_restart_changes(old, cfg, &changed);
    for (size_t i = 0; i < changed.count; i++)
        LOGGER_WARN_("changed, but takes effect only after a restart", "key", changed.items[i]);
    errlist_cleanup(&changed);
    config_unref(old);
    serve_apply(cfg);
    gpu_set_options(&cfg->gpu);
    gpu_set_fit_policy(select_rules_gpu_fit(cfg->rules));
    admission_set_fit(admission_get(), cfg);
    app_config_swap(app, cfg);
    LOGGER_INFO_("config reloaded", "config", path);
    errlist_cleanup(&el);
}

int serve_run(struct config *cfg, const char *config_path) {
    struct errlist el;
    struct delivery *delivery = NULL;
    struct admission *admission = NULL;
    /*
     * Static: when the grace period ends with requests in flight, serve_run returns
     * and main _exits while their threads still use the app and what it holds.
     */
    static struct app app;
    struct http_server *server = NULL;
    sigset_t set;
    int sig = 0;

    errlist_init(&el);
    serve_apply(cfg);

    /*
     * Large buffers (a 25 MB body, a payload's tree) go straight to mmap and back
     * to the system when freed. glibc would otherwise raise its threshold after
     * the first such free and keep later ones in per-thread heaps for good.
     */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    mallopt(M_ARENA_MAX, 4);

    /* Signals go to this thread only: every thread created below inherits the mask. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    if (delivery_new(cfg, &delivery, &el) != 0) {
        for (size_t i = 0; i < el.count; i++)
            LOGGER_ERROR_("cannot start the delivery backend", "error", el.items[i]);
        config_unref(cfg);
        errlist_cleanup(&el);
        curl_global_cleanup();
        return 2;
    }
    if (delivery_watcher(delivery) &&
        admission_new(cfg, delivery_watcher(delivery), delivery_kube(delivery), &admission) != 0) {
        LOGGER_ERROR_("cannot start the admission queue");
        delivery_free(delivery);
        config_unref(cfg);
        errlist_cleanup(&el);
        curl_global_cleanup();
        return 2;
    }
    app_init(&app, cfg, delivery);
    gpu_set_fit_policy(select_rules_gpu_fit(cfg->rules));
    /* A probe already started (by a test harness injecting a source) is kept. */
    gpu_start(&cfg->gpu);
    if (clusterview_start(cfg, &el) == 0)
        server = http_server_start(&app, &routes_table, cfg, &el);
    if (!server) {
        for (size_t i = 0; i < el.count; i++)
            LOGGER_ERROR_("cannot serve", "error", el.items[i]);
        clusterview_stop();
        gpu_stop();
        app_cleanup(&app);
        admission_free(admission);
        errlist_cleanup(&el);
        curl_global_cleanup();
        return 2;
    }
    delivery_start(delivery);
    char port[16];
    snprintf(port, sizeof(port), "%d", http_server_port(server));
    LOGGER_INFO_("listening", "host", cfg->listen_host, "port", port, "config", config_path,
                 "kubernetes", config_kube_mode_name(cfg->kube_mode), "tls",
                 cfg->tls_cert_file ? "on" : "off");

    for (;;) {
        if (sigwait(&set, &sig) != 0)
            continue;
        if (sig == SIGHUP) {
            serve_reload(&app, config_path);
            continue;
        }
        break;
    }
    LOGGER_INFO_("shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
    struct config *now = app_config(&app);
    long grace = now->shutdown_grace_seconds;
    config_unref(now);
    if (!http_server_stop(server, grace))
        return SERVE_UNDRAINED;
    clusterview_stop();
    gpu_stop();
    app_cleanup(&app); /* frees the delivery, and with it the watcher */
    admission_free(admission);
    errlist_cleanup(&el);
    curl_global_cleanup();
    LOGGER_INFO_("stopped");
    return 0;
}
