/* GET /healthz, /readyz, /gpu and /metrics: the routes with no body and no state. */
#include "gpuhook/app.h"
#include "gpuhook/clusterview.h"
#include "gpuhook/config.h"
#include "gpuhook/delivery.h"
#include "gpuhook/gpu.h"
#include "gpuhook/metrics.h"
#include "routes.h"

#include <stdlib.h>
#include <string.h>

#define PROBES_METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"

static enum http_step probes_healthz(struct http_request *req, void *state) {
    (void)state;
    http_respond(req, 200, NULL, "{\"status\":\"ok\"}", strlen("{\"status\":\"ok\"}"));
    return HTTP_RESPONDED;
}

static enum http_step probes_readyz(struct http_request *req, void *state) {
    struct buf *o = &req->out;
    bool ok = true;
    (void)state;

    o->len = 0;
    buf_appends(o, "{\"checks\":{\"config\":{\"ok\":true,\"path\":\"");
    buf_append_json_escaped(o, req->cfg->path, strlen(req->cfg->path));
    buf_appends(o, "\"},");
    ok = delivery_ready(req->app->delivery, o) && ok;
    bool stopping = http_request_stopping(req);
    buf_appendf(o, ",\"shutdown\":{\"ok\":%s,\"detail\":\"%s\"}", stopping ? "false" : "true",
                stopping ? "shutting down" : "serving");
    ok = ok && !stopping;
    if (req->cfg->gpu.required) {
        bool g = gpu_ready();
        buf_appendf(o, ",\"gpu\":{\"ok\":%s}", g ? "true" : "false");
        ok = ok && g;
    }
    buf_appendf(o, "},\"status\":\"%s\",\"request_id\":\"%s\"}", ok ? "ok" : "unavailable",
                req->request_id);
    req->status = ok ? 200 : 503;
    return HTTP_RESPONDED;
}

enum http_step probes_local_gpu(struct http_request *req, bool verbose) {
    int status = 503;
    char *s = gpu_status_json(verbose, &status);
    if (!s) {
        http_request_error(req, 500, "out of memory");
        return HTTP_RESPONDED;
    }
    http_respond(req, status, NULL, s, strlen(s));
    free(s);
    return HTTP_RESPONDED;
}

static enum http_step probes_gpu(struct http_request *req, void *state) {
    (void)state;
    /* With cluster_gpu configured and data in: the cluster's body (?node= narrows it). */
    const char *node = http_request_arg(req, "node");
    bool found = true;
    char *c = clusterview_json(req->cfg, node, &found);
    if (c || !found) {
        if (!found)
            http_request_error(req, 404, "no node named \"%s\" in the cluster GPU view", node);
        else
            http_respond(req, 200, NULL, c, strlen(c));
        free(c);
        return HTTP_RESPONDED;
    }
    return probes_local_gpu(req, http_request_flag(req, "verbose"));
}

static enum http_step probes_metrics(struct http_request *req, void *state) {
    (void)state;
    req->out.len = 0;
    if (metrics_render(&req->out) == 0) {
        req->status = 200;
        req->content_type = PROBES_METRICS_TYPE;
    } else {
        http_request_error(req, 500, "the metrics exposition does not fit its buffer");
    }
    return HTTP_RESPONDED;
}

const struct http_route healthz_route = {
    .path = "/healthz",
    .name = "healthz",
    .method = "GET",
    .allow = "GET, HEAD",
    .finish = probes_healthz,
};
const struct http_route readyz_route = {
    .path = "/readyz",
    .name = "readyz",
    .method = "GET",
    .allow = "GET, HEAD",
    .finish = probes_readyz,
};
const struct http_route gpu_route = {
    .path = "/gpu",
    .name = "gpu",
    .method = "GET",
    .allow = "GET, HEAD",
    .finish = probes_gpu,
};
const struct http_route metrics_route = {
    .path = "/metrics",
    .name = "metrics",
    .method = "GET",
    .allow = "GET, HEAD",
    .finish = probes_metrics,
};
