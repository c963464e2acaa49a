/*
 * POST /webhook: GitHub deliveries. Headers are checked before any body byte
 * is read; the body is fed into the HMAC as it streams in and buffered once;
 * nothing is parsed before the signature holds. Then the event is parsed,
 * filtered (pipeline_should_ignore) and handed to the pipeline (pipeline.h).
 */
#include "gpuhook/app.h"
#include "gpuhook/bodybudget.h"
#include "gpuhook/buf.h"
#include "gpuhook/config.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"
#include "gpuhook/pipeline.h"
#include "gpuhook/select.h"
#include "gpuhook/signature.h"
#include "gpuhook/template.h"
#include "routes.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WEBHOOK_UNAUTHORIZED "invalid or missing X-Hub-Signature-256 signature"

/* The route's per-request state. */
struct webhook_state {
    struct signature_check sig;
    unsigned char sig_expected[SIGNATURE_LEN];
    int sig_verdict; /* 1 or -1 once checked early (a body in one piece), else 0 */
    bool body_started;
    char event[64];
};

static bool webhook_token_ok(const char *s, size_t max, bool digits_only) {
    size_t n = 0;
    if (!s || !*s)
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        bool digit = c >= '0' && c <= '9';
        bool ok = digits_only ? digit
                              : digit || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                    c == '-' || c == '_';
        if (!ok || n >= max)
            return false;
    }
    return true;
}

static void webhook_unauthorized(struct http_request *req, const struct webhook_state *st) {
    metrics_signature_failure();
    metrics_delivery(st->event[0] ? st->event : "unknown", "unauthorized");
    http_request_error(req, 401, WEBHOOK_UNAUTHORIZED);
}

static enum http_step webhook_begin(struct http_request *req, void *state) {
    struct webhook_state *st = state;
    const char *event = http_request_header(req, "X-GitHub-Event");
    const char *delivery = http_request_header(req, "X-GitHub-Delivery");
    const char *hook = http_request_header(req, "X-GitHub-Hook-ID");
    const char *ct = http_request_header(req, "Content-Type");

    if (!webhook_token_ok(event, 64, false)) {
        http_request_error(req, 400, "missing or malformed X-GitHub-Event header");
        return HTTP_RESPONDED;
    }
    buf_copy_str(st->event, sizeof(st->event), event);
    http_request_log(req, "event", event);
    if (!webhook_token_ok(delivery, 72, false)) {
        http_request_error(req, 400, "missing or malformed X-GitHub-Delivery header");
        return HTTP_RESPONDED;
    }
    http_request_log(req, "delivery", delivery);
    if (hook && !webhook_token_ok(hook, 20, true)) {
        http_request_error(req, 400, "malformed X-GitHub-Hook-ID header: expected digits");
        return HTTP_RESPONDED;
    }
    if (event_content_type_parse(ct) == EVENT_CONTENT_UNSUPPORTED) {
        http_request_error(req, 415,
                           "unsupported Content-Type: use application/json or "
                           "application/x-www-form-urlencoded");
        return HTTP_RESPONDED;
    }
    /* Only SHA-256 counts; a SHA-1 X-Hub-Signature alone is an unsigned delivery. */
    if (signature_parse_header(http_request_header(req, "X-Hub-Signature-256"), st->sig_expected) !=
        0) {
        webhook_unauthorized(req, st);
        return HTTP_RESPONDED;
    }
    if (signature_check_init(&st->sig, req->cfg->keyring) != 0) {
        http_request_error(req, 500, "out of memory");
        return HTTP_RESPONDED;
    }
    return HTTP_CONTINUE;
}

/*
 * Grows the body's buffer for n more bytes, drawing what it adds from the
 * budget for unverified bodies. Memory follows the bytes that arrived, never
 * the Content-Length a client announced. Returns 0, GHE_TOOBIG past
 * max_body_bytes, GHE_UNAVAILABLE when the budget is spent, or GHE_NOMEM.
 */
static int webhook_body_grow(struct http_request *req, size_t n) {
    struct buf *b = &req->body;
    if (n > b->max || b->len > b->max - n)
        return GHE_TOOBIG;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < need)
        cap *= 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    size_t more = cap - b->cap;
    if (!bodybudget_take(more, cap))
        return GHE_UNAVAILABLE;
    char *p = realloc(b->data, cap);
    if (!p) {
        bodybudget_give(more);
        return GHE_NOMEM;
    }
    b->data = p;
    b->cap = cap;
    req->body_budget += more;
    return 0;
}

static enum http_step webhook_upload(struct http_request *req, void *state, const char *data,
                                     size_t len) {
    struct webhook_state *st = state;
    /*
     * A small delivery usually arrives in one piece: check it before keeping a
     * copy, so that a forged one costs no allocation and no copy.
     */
    bool whole = !st->body_started && req->content_length > 0 &&
                 (unsigned long long)req->content_length == len && len <= req->body.max;
    if (whole) {
        signature_check_update(&st->sig, data, len);
        st->sig_verdict = signature_check_finish(&st->sig, st->sig_expected) ? 1 : -1;
        if (st->sig_verdict < 0) {
            st->body_started = true;
            return HTTP_CONTINUE; /* webhook_finish answers 401 */
        }
    }
    st->body_started = true;
    int rc = webhook_body_grow(req, len);
    if (rc == GHE_UNAVAILABLE) {
        metrics_body_budget_refusal();
        req->retry_after = 5;
        http_request_error(req, 503,
                           "too many unverified request bodies in memory "
                           "(unverified_body_budget_bytes is %ld); retry later",
                           bodybudget_limit());
        return HTTP_RESPONDED;
    }
    if (rc == GHE_NOMEM) {
        http_request_error(req, 500, "out of memory");
        return HTTP_RESPONDED;
    }
    if (rc || buf_append(&req->body, data, len) != 0) {
        http_request_error(req, 413, "request body exceeds max_body_bytes (%ld bytes)",
                           req->cfg->max_body_bytes);
        return HTTP_RESPONDED;
    }
    if (!whole)
        signature_check_update(&st->sig, data, len);
    return HTTP_CONTINUE;
}

static void webhook_ignore(struct http_request *req, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void webhook_ignore(struct http_request *req, const char *event, const char *fmt, ...) {
    char reason[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", "ignored");
    cJSON_AddStringToObject(o, "event", event);
    cJSON_AddStringToObject(o, "reason", reason);
    http_request_json(req, 200, o);
    cJSON_Delete(o);
    metrics_delivery(event, "ignored");
}

static enum http_step webhook_finish(struct http_request *req, void *state) {
    struct webhook_state *st = state;
    const char *event = http_request_header(req, "X-GitHub-Event");
    const char *delivery = http_request_header(req, "X-GitHub-Delivery");
    const char *hook = http_request_header(req, "X-GitHub-Hook-ID");
    const char *ct = http_request_header(req, "Content-Type");
    struct app_lru_entry hit;
    struct event ev;
    char err[512] = "", reason[512];

    enum http_step step = HTTP_RESPONDED;
    bool signed_ok =
        st->sig_verdict ? st->sig_verdict > 0 : signature_check_finish(&st->sig, st->sig_expected);
    if (!signed_ok) {
        webhook_unauthorized(req, st);
        return HTTP_RESPONDED;
    }
    /* Verified: the body no longer counts against the budget for strangers' bodies. */
    http_request_body_release(req);
    if (strcmp(event, "ping") == 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "ok");
        cJSON_AddStringToObject(o, "event", "ping");
        if (hook)
            cJSON_AddNumberToObject(o, "hook_id", strtod(hook, NULL));
        else
            cJSON_AddNullToObject(o, "hook_id");
        http_request_json(req, 200, o);
        cJSON_Delete(o);
        metrics_delivery("ping", "ok");
        return HTTP_RESPONDED;
    }
    if (pipeline_should_ignore(req->cfg, event, NULL, reason, sizeof(reason))) {
        webhook_ignore(req, event, "%s", reason);
        return HTTP_RESPONDED;
    }
    /* A redelivery already created: answer from memory without rendering again. */
    if (req->app && delivery_mode(req->app->delivery) != CONFIG_KUBE_DRY_RUN &&
        app_lru_get(req->app, NAMING_WEBHOOK, hook, delivery, &hit)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "exists");
        cJSON_AddStringToObject(o, "pipelinerun", hit.name);
        cJSON_AddStringToObject(o, "namespace", delivery_namespace(req->app->delivery));
        cJSON_AddStringToObject(o, "variant", hit.variant);
        cJSON_AddStringToObject(o, "rule", hit.rule);
        cJSON_AddStringToObject(o, "delivery", delivery);
        http_request_json(req, 200, o);
        cJSON_Delete(o);
        http_request_log(req, "pipelinerun", hit.name);
        metrics_delivery(event, "exists");
        return HTTP_RESPONDED;
    }

    event_init(&ev);
    ev.headers = req->headers;
    ev.header_count = req->header_count;
    /* Keep only what the event and the bindings read: the rest is validated, then dropped. */
    const struct jsonprune_path *keep = NULL;
    size_t nkeep = template_body_paths(req->cfg->tmpl, &keep);
    int rc = event_parse_delivery_paths(&ev, event, delivery, hook, ct,
                                        req->body.data ? req->body.data : "", req->body.len, keep,
                                        nkeep, err, sizeof(err));
    /* The tree holds what we need; drop the raw body to halve peak memory. */
    buf_cleanup(&req->body);
    if (rc == GHE_NOMEM) {
        http_request_error(req, 500, "out of memory");
        metrics_delivery(event, "error");
        goto out;
    }
    if (rc) {
        http_request_error(req, rc == GHE_UNSUPPORTED ? 415 : 400, "%s",
                           err[0] ? err : "invalid payload");
        metrics_delivery(event, "invalid");
        goto out;
    }
    if (pipeline_should_ignore(req->cfg, event, &ev, reason, sizeof(reason))) {
        webhook_ignore(req, event, "%s", reason);
        goto out;
    }
    struct pipeline_input in = {
        .ev = &ev,
        .forced_variant = -1,
        .name_kind = NAMING_WEBHOOK,
        .name_key = {hook ? hook : "", delivery},
    };
    step = routes_run_pipeline(req, &in);
out:
    event_cleanup(&ev);
    return step;
}

static void webhook_cleanup(struct http_request *req, void *state) {
    struct webhook_state *st = state;
    (void)req;
    signature_check_cleanup(&st->sig);
}

const struct http_route webhook_route = {
    .path = "/webhook",
    .name = "webhook",
    .method = "POST",
    .allow = "POST",
    .body_max = HTTP_BODY_MAX_CONFIG,
    .state_size = sizeof(struct webhook_state),
    .begin = webhook_begin,
    .upload = webhook_upload,
    .finish = webhook_finish,
    .cleanup = webhook_cleanup,
};
