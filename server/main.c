/*
 * gpuhook: parses arguments and hands over to the library: `render` to
 * render.c, serving to serve.c. Nothing else lives here.
 */
#include "gpuhook/agent.h"
#include "gpuhook/config.h"
#include "gpuhook/event.h"
#include "gpuhook/gpu.h"
#include "gpuhook/render.h"
#include "gpuhook/serve.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#define MAIN_DEFAULT_CONFIG "config/gpuhook.json"

static void main_usage(FILE *f) {
    fprintf(f, "usage: gpuhook [--config FILE] [--check-config]\n"
               "       gpuhook render --config FILE --event EVENT --payload FILE\n"
               "                      [--header 'Name: value']... [--delivery ID]\n"
               "       gpuhook agent [--listen HOST:PORT] [--node NAME]\n"
               "       gpuhook --version | --help\n"
               "\n"
               "Receives GitHub webhooks and creates Tekton PipelineRuns (lite or original).\n"
               "  --config FILE    the JSON config (default " MAIN_DEFAULT_CONFIG ")\n"
               "  --check-config   validate the config and the files it names, print ok\n"
               "  render           print the PipelineRun a delivery would create; exit 0 when\n"
               "                   a run would be created, 3 when ignored, 2 on errors\n"
               "  agent            serve only GET /gpu and /healthz for the cluster view\n"
               "                   (a DaemonSet on GPU nodes; no config, no secret)\n"
               "Signals: SIGHUP reloads the config, SIGTERM/SIGINT shut down gracefully.\n");
}

static void main_version(void) {
    curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    printf("gpuhook %s\n%s\nlibmicrohttpd %s\n%s\nlibcurl %s\ncJSON %s\n", GPUHOOK_VERSION,
           gpu_build_string(), MHD_get_version(), OpenSSL_version(OPENSSL_VERSION),
           cv ? cv->version : "?", cJSON_Version());
}

int main(int argc, char **argv) {
    const char *config_path = MAIN_DEFAULT_CONFIG;
    bool check_only = false;
    struct errlist el;
    struct config *cfg = NULL;

    event_global_init(); /* before any thread touches cJSON */
    if (argc > 1 && strcmp(argv[1], "render") == 0)
        return render_main(argc - 1, argv + 1, MAIN_DEFAULT_CONFIG);
    if (argc > 1 && strcmp(argv[1], "agent") == 0)
        return agent_main(argc - 1, argv + 1);
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
        for (size_t i = 0; i < el.count; i++)
            fprintf(stderr, "%s\n", el.items[i]);
        errlist_cleanup(&el);
        return 2;
    }
    errlist_cleanup(&el);
    if (check_only) {
        printf("ok\n");
        config_unref(cfg);
        return 0;
    }
    int rc = serve_run(cfg, config_path);
    if (rc == SERVE_UNDRAINED)
        _exit(0); /* threads still run: no atexit handlers under their feet */
    return rc;
}
