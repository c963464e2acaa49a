/*
 * gpuhook: parses arguments, installs signal handling and wires the modules
 * together. Everything else lives in the library.
 */
#include "gpuhook/app.h"
#include "gpuhook/config.h"
#include "gpuhook/delivery.h"
#include "gpuhook/gpu.h"
#include "gpuhook/http.h"
#include "gpuhook/logger.h"
#include "gpuhook/select.h"
#include "gpuhook/template.h"
#include "gpuhook/webhook.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#define MAIN_DEFAULT_CONFIG "config/gpuhook.json"
#define MAIN_RENDER_MAX_HEADERS 32

static void main_usage(FILE *f) {
    fprintf(f, "usage: gpuhook [--config FILE] [--check-config]\n"
               "       gpuhook render --config FILE --event EVENT --payload FILE\n"
               "                      [--header 'Name: value']... [--delivery ID]\n"
               "       gpuhook --version | --help\n"
               "\n"
               "Receives GitHub webhooks and creates Tekton PipelineRuns (lite or original).\n"
               "  --config FILE    the JSON config (default " MAIN_DEFAULT_CONFIG ")\n"
               "  --check-config   validate the config and the files it names, print ok\n"
               "  render           print the PipelineRun a delivery would create; exit 0 when\n"
               "                   a run would be created, 3 when ignored, 2 on errors\n"
               "Signals: SIGHUP reloads the config, SIGTERM/SIGINT shut down gracefully.\n");
}

static void main_version(void) {
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    printf("gpuhook %s\n%s\nlibmicrohttpd %s\n%s\nlibcurl %s\ncJSON %s\n", GPUHOOK_VERSION,
           gpu_build_string(), MHD_get_version(), OpenSSL_version(OPENSSL_VERSION),
           cv ? cv->version : "?", cJSON_Version());
}

static void main_print_errors(const struct errlist *el) {
    for (size_t i = 0; i < el->count; i++)
        fprintf(stderr, "%s\n", el->items[i]);
}

static char *main_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *data = malloc(cap + 1);
    while (data) {
        size_t r = fread(data + n, 1, cap - n, f);
        n += r;
        if (n < cap)
            break;
        if (cap >= (size_t)64 << 20) {
            free(data);
            data = NULL;
            break;
        }
        char *p = realloc(data, cap * 2 + 1);
        if (!p) {
            free(data);
            data = NULL;
            break;
        }
        data = p;
        cap *= 2;
    }
    fclose(f);
    if (data) {
        data[n] = '\0';
        *len = n;
    }
    return data;
}

/* gpuhook render: the offline twin of POST /webhook. */
static int main_render(int argc, char **argv) {
    const char *config_path = MAIN_DEFAULT_CONFIG, *event_name = NULL, *payload = NULL;
    const char *delivery = "00000000-0000-0000-0000-000000000000";
    struct event_header headers[MAIN_RENDER_MAX_HEADERS];
    char header_buf[MAIN_RENDER_MAX_HEADERS][512];
    size_t nh = 0;
    struct errlist el;
    struct config *cfg = NULL;
    struct event ev;
    char err[512] = "", reason[512];
    int rc = 2;
    char *body = NULL;
    size_t len = 0;

    errlist_init(&el);
    event_init(&ev);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "render: %s needs a value\n", a);
            goto out;
        }
        i++;
        if (strcmp(a, "--config") == 0) {
            config_path = v;
        } else if (strcmp(a, "--event") == 0) {
            event_name = v;
        } else if (strcmp(a, "--payload") == 0) {
            payload = v;
        } else if (strcmp(a, "--delivery") == 0) {
            delivery = v;
        } else if (strcmp(a, "--header") == 0) {
            const char *colon = strchr(v, ':');
            if (!colon || nh == MAIN_RENDER_MAX_HEADERS || strlen(v) >= 512) {
                fprintf(stderr, "render: --header %s: expected 'Name: value'\n", v);
                goto out;
            }
            snprintf(header_buf[nh], sizeof(header_buf[nh]), "%s", v);
            header_buf[nh][colon - v] = '\0';
            const char *val = header_buf[nh] + (colon - v) + 1;
            while (*val == ' ')
                val++;
            headers[nh].name = header_buf[nh];
            headers[nh].value = val;
            nh++;
        } else {
            fprintf(stderr, "render: unknown option %s\n", a);
            goto out;
        }
    }
    if (!event_name || !payload) {
        fprintf(stderr, "render: --event and --payload are required\n");
        goto out;
    }
    if (config_load_offline(config_path, &cfg, &el) != 0) {
        main_print_errors(&el);
        goto out;
    }
    body = main_read_file(payload, &len);
    if (!body) {
        fprintf(stderr, "render: %s: cannot read the payload\n", payload);
        goto out;
    }
    const char *hook = NULL;
    for (size_t i = 0; i < nh; i++)
        if (strcasecmp(headers[i].name, "X-GitHub-Hook-ID") == 0)
            hook = headers[i].value;
    if (webhook_should_ignore(cfg, event_name, NULL, reason, sizeof(reason))) {
        fprintf(stderr, "ignored: %s\n", reason);
        rc = 3;
        goto out;
    }
    ev.headers = headers;
    ev.header_count = nh;
    if (event_parse_delivery(&ev, event_name, delivery, hook, "application/json", body, len, err,
                             sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", payload, err);
        goto out;
    }
    if (webhook_should_ignore(cfg, event_name, &ev, reason, sizeof(reason))) {
        fprintf(stderr, "ignored: %s\n", reason);
        rc = 3;
        goto out;
    }
    struct select_decision d;
    select_decide(cfg->rules, &ev, &d);
    if (d.variant == SELECT_SKIP) {
        fprintf(stderr, "ignored: rule %s: %s\n", d.rule, d.reason);
        rc = 3;
        goto out;
    }
    struct template_render_input in = {
        .ev = &ev,
        .decision = &d,
        .namespace = cfg->kube_namespace ? cfg->kube_namespace : "tekton-pipelines",
        .name_key = {hook ? hook : "", delivery, select_variant_name(d.variant)},
    };
    cJSON *obj = NULL;
    if (template_render(cfg->tmpl, &in, &obj, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", payload, err);
        goto out;
    }
    char *text = cJSON_Print(obj);
    if (text)
        printf("%s\n", text);
    free(text);
    cJSON_Delete(obj);
    fprintf(stderr, "variant: %s\nrule: %s\nreason: %s\n", select_variant_name(d.variant), d.rule,
            d.reason);
    rc = text ? 0 : 2;
out:
    free(body);
    event_cleanup(&ev);
    config_unref(cfg);
    errlist_cleanup(&el);
    return rc;
}

static bool main_same(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void main_reload(struct app *app, const char *path) {
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
    if (!main_same(old->listen, cfg->listen) || !main_same(old->tls_cert_file, cfg->tls_cert_file) ||
        old->kube_mode != cfg->kube_mode || !main_same(old->kube_url, cfg->kube_url) ||
        !main_same(old->spool_dir, cfg->spool_dir) ||
        !main_same(old->kube_local_dir, cfg->kube_local_dir) ||
        !main_same(old->kube_namespace, cfg->kube_namespace))
        LOGGER_WARN_("listen, tls and kubernetes settings take effect only after a restart");
    config_unref(old);
    logger_set_level(cfg->log_level);
    gpu_set_options(&cfg->gpu);
    app_config_swap(app, cfg);
    LOGGER_INFO_("config reloaded", "config", path);
    errlist_cleanup(&el);
}

int main(int argc, char **argv) {
    const char *config_path = MAIN_DEFAULT_CONFIG;
    bool check_only = false;
    struct errlist el;
    struct config *cfg = NULL;
    struct delivery *delivery = NULL;
    struct app app;
    struct http_server *server = NULL;
    sigset_t set;
    int sig = 0;

    if (argc > 1 && strcmp(argv[1], "render") == 0)
        return main_render(argc - 1, argv + 1);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config_path = argv[++i];
        } else if (strcmp(argv[i], "--check-config") == 0) {
            check_only = true;
        } else if (strcmp(argv[i], "--version") == 0) {
            main_version();
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            main_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "gpuhook: unknown argument %s\n", argv[i]);
            main_usage(stderr);
            return 2;
        }
    }

    errlist_init(&el);
    if (config_load(config_path, &cfg, &el) != 0) {
        main_print_errors(&el);
        errlist_cleanup(&el);
        return 2;
    }
    if (check_only) {
        printf("ok\n");
        config_unref(cfg);
        errlist_cleanup(&el);
        return 0;
    }
    logger_set_level(cfg->log_level);

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
    app_init(&app, cfg, delivery);
    gpu_start(&cfg->gpu);
    server = http_server_start(&app, cfg, &el);
    if (!server) {
        for (size_t i = 0; i < el.count; i++)
            LOGGER_ERROR_("cannot serve", "error", el.items[i]);
        gpu_stop();
        app_cleanup(&app);
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
            main_reload(&app, config_path);
            continue;
        }
        break;
    }
    LOGGER_INFO_("shutting down", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM");
    struct config *now = app_config(&app);
    long grace = now->shutdown_grace_seconds;
    config_unref(now);
    http_server_stop(server, grace);
    gpu_stop();
    app_cleanup(&app);
    errlist_cleanup(&el);
    curl_global_cleanup();
    LOGGER_INFO_("stopped");
    return 0;
}
