/*
 * `gpuhook agent`: a config built from two flags, the GPU probe, and an HTTP
 * server with the agent's route table (GET /gpu, GET /healthz). No delivery,
 * no secret, no reload.
 */
#include "gpuhook/agent.h"
#include "gpuhook/app.h"
#include "gpuhook/config.h"
#include "gpuhook/gpu.h"
#include "gpuhook/http.h"
#include "gpuhook/logger.h"
#include "routes.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AGENT_DEFAULT_LISTEN "0.0.0.0:8080"

/* GET /gpu on the agent: always the verbose body, which the server's poller parses. */
static enum http_step agent_gpu(struct http_request *req, void *state) {
    (void)state;
    return probes_local_gpu(req, true);
}

static const struct http_route agent_gpu_route = {
    .path = "/gpu",
    .name = "gpu",
    .method = "GET",
    .allow = "GET, HEAD",
    .finish = agent_gpu,
};

static const struct http_route *const agent_routes_list[] = {&agent_gpu_route, &healthz_route};
static const struct http_routes agent_routes = {
    agent_routes_list, sizeof(agent_routes_list) / sizeof(agent_routes_list[0])};

/* Splits "host:port" ("[v6]:port" too) into cfg's listen fields. */
static int agent_listen(struct config *cfg, const char *listen) {
    const char *colon = strrchr(listen, ':');
    char *end = NULL;
    if (!colon || colon == listen)
        return -1;
    long port = strtol(colon + 1, &end, 10);
    if (!colon[1] || *end || port < 0 || port > 65535)
        return -1;
    const char *h = listen;
    size_t hl = (size_t)(colon - listen);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    cfg->listen = strdup(listen);
    cfg->listen_host = strndup(h, hl);
    cfg->listen_port = (int)port;
    return cfg->listen && cfg->listen_host ? 0 : -1;
}

static struct config *agent_config(const char *listen) {
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg)
        return NULL;
    cfg->refs = 1;
    cfg->path = strdup("(agent)");
    cfg->log_level = LOGGER_INFO;
    cfg->max_body_bytes = 1024;
    cfg->max_connections = 64;
    cfg->header_timeout_seconds = 10;
    cfg->min_body_bytes_per_second = 1024;
    cfg->shutdown_grace_seconds = 2;
    cfg->gpu.refresh_seconds = 2;
    if (!cfg->path || agent_listen(cfg, listen) != 0) {
        config_unref(cfg);
        return NULL;
    }
    return cfg;
}

static void agent_usage(FILE *f) {
    fprintf(
        f,
        "usage: gpuhook agent [--listen HOST:PORT] [--node NAME]\n"
        "  --listen  the address to serve (else $GPUHOOK_AGENT_LISTEN, else " AGENT_DEFAULT_LISTEN
        ")\n"
        "  --node    this node's name (else $NODE_NAME, from the downward API)\n");
}

int agent_main(int argc, char **argv) {
    const char *listen = getenv("GPUHOOK_AGENT_LISTEN");
    const char *node = getenv("NODE_NAME");
    static struct app app; /* static as in serve_run: threads may outlive a timed-out drain */
    struct errlist el;
    sigset_t set;
    int sig = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen = argv[++i];
        } else if (strcmp(argv[i], "--node") == 0 && i + 1 < argc) {
            node = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0) {
            agent_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "gpuhook agent: unknown argument %s\n", argv[i]);
            agent_usage(stderr);
            return 2;
        }
    }
    if (!listen || !*listen)
        listen = AGENT_DEFAULT_LISTEN;
    if (!node || !*node || strlen(node) > 253) {
        fprintf(stderr, "gpuhook agent: no node name: pass --node or set NODE_NAME (the downward "
                        "API's spec.nodeName)\n");
        return 2;
    }
    struct config *cfg = agent_config(listen);
    if (!cfg) {
        fprintf(stderr, "gpuhook agent: --listen %s is not HOST:PORT\n", listen);
        return 2;
    }
    logger_set_level(cfg->log_level);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    gpu_set_node_name(node);
    app_init(&app, cfg, NULL);
    gpu_start(&cfg->gpu); /* keeps a probe a test harness already started */
    errlist_init(&el);
    struct http_server *server = http_server_start(&app, &agent_routes, cfg, &el);
    if (!server) {
        for (size_t i = 0; i < el.count; i++)
            LOGGER_ERROR_("cannot serve", "error", el.items[i]);
        errlist_cleanup(&el);
        gpu_stop();
        app_cleanup(&app);
        return 2;
    }
    errlist_cleanup(&el);
    char port[16];
    snprintf(port, sizeof(port), "%d", http_server_port(server));
    LOGGER_INFO_("agent listening", "host", cfg->listen_host, "port", port, "node", node);
    while (sigwait(&set, &sig) != 0)
        ;
    if (!http_server_stop(server, 2))
        return 0;
    gpu_stop();
    app_cleanup(&app);
    LOGGER_INFO_("agent stopped");
    return 0;
}
