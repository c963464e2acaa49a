/*
 * Fuzz target 5: the whole request handler, without sockets (the way h2o
 * fuzzes its HTTP layer). The input is a request in HTTP/1-like text:
 *
 *   METHOD SP TARGET [SP CHUNK] LF     TARGET is a path with an optional ?query
 *   Name: value LF                     any number of header lines
 *   LF
 *   body
 *
 * Three values are filled in by the harness, so that the fuzzer gets past the
 * secrets: "X-Hub-Signature-256: sha256=auto" becomes the body's real
 * signature, "Authorization: Bearer auto" the trigger token, and
 * "Content-Length: auto" the body's length. The body reaches the handler as
 * libmicrohttpd would pass it: only with Content-Length or Transfer-Encoding,
 * cut at Content-Length, in CHUNK-byte pieces; a body shorter than its
 * Content-Length is a client that went away (no finish).
 *
 * The app runs the shipped config's rules and template in kubernetes mode
 * "dry-run" with a scratch secret and token; the GPU thread is not started.
 * Invariants: every request gets a status between 200 and 599 but never 500,
 * and a JSON body (text for GET /metrics).
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "gpuhook/app.h"
#include "gpuhook/config.h"
#include "gpuhook/delivery.h"
#include "gpuhook/error.h"
#include "gpuhook/gpu.h"
#include "gpuhook/http.h"
#include "gpuhook/select.h"
#include "routes.h"

#define FUZZ_REQ_SECRET "It's a Secret to Everybody"
#define FUZZ_REQ_TOKEN "fuzz-trigger-token"
#define FUZZ_REQ_MAX_BODY 65536
#define FUZZ_REQ_MAX_ARGS 16

/* Writes the request config: the shipped one, made to run offline and in memory. */
static void fuzz_req_write_config(const char *dir, const char *path) {
    char src[4096], p[4200];
    static char text[1024 * 1024];

    fuzz_source_path(src, sizeof(src), "config/gpuhook.json");
    FILE *f = fopen(src, "rb");
    FUZZ_REQUIRE(f != NULL, "cannot open %s", src);
    size_t n = fread(text, 1, sizeof(text), f);
    fclose(f);
    cJSON *root = cJSON_ParseWithLength(text, n);
    FUZZ_REQUIRE(cJSON_IsObject(root), "%s is not a JSON object", src);

    cJSON_ReplaceItemInObjectCaseSensitive(root, "log_level", cJSON_CreateString("error"));
    cJSON_ReplaceItemInObjectCaseSensitive(root, "max_body_bytes",
                                           cJSON_CreateNumber(FUZZ_REQ_MAX_BODY));
    cJSON_DeleteItemFromObjectCaseSensitive(root, "spool_dir");

    cJSON *github = cJSON_GetObjectItemCaseSensitive(root, "github");
    int pn = snprintf(p, sizeof(p), "%s/webhook-secret", dir);
    FUZZ_REQUIRE(pn > 0 && (size_t)pn < sizeof(p), "%s: path too long", dir);
    fuzz_write_file(p, FUZZ_REQ_SECRET "\n", strlen(FUZZ_REQ_SECRET) + 1);
    const char *secrets[] = {p};
    cJSON_ReplaceItemInObjectCaseSensitive(github, "secret_files",
                                           cJSON_CreateStringArray(secrets, 1));

    cJSON *trigger = cJSON_GetObjectItemCaseSensitive(root, "trigger");
    pn = snprintf(p, sizeof(p), "%s/trigger-token", dir);
    FUZZ_REQUIRE(pn > 0 && (size_t)pn < sizeof(p), "%s: path too long", dir);
    fuzz_write_file(p, FUZZ_REQ_TOKEN "\n", strlen(FUZZ_REQ_TOKEN) + 1);
    cJSON_ReplaceItemInObjectCaseSensitive(trigger, "token_file", cJSON_CreateString(p));

    cJSON *kube = cJSON_CreateObject();
    cJSON_AddStringToObject(kube, "mode", "dry-run");
    cJSON_AddStringToObject(kube, "namespace", "tekton-pipelines");
    cJSON_ReplaceItemInObjectCaseSensitive(root, "kubernetes", kube);

    fuzz_source_path(p, sizeof(p), "k8s/triggers/trigger-template.yaml");
    cJSON_ReplaceItemInObjectCaseSensitive(root, "template", cJSON_CreateString(p));
    fuzz_source_path(p, sizeof(p), "k8s/triggers/trigger-binding.yaml");
    cJSON_ReplaceItemInObjectCaseSensitive(root, "bindings", cJSON_CreateString(p));

    char *out = cJSON_Print(root);
    FUZZ_REQUIRE(out != NULL, "cannot print the config");
    fuzz_write_file(path, out, strlen(out));
    free(out);
    cJSON_Delete(root);
}

static struct app *fuzz_req_app(void) {
    static struct app app;
    static bool ready;
    char dir[4200], path[4300];
    struct errlist el;
    struct config *cfg = NULL;
    struct delivery *d = NULL;

    if (ready)
        return &app;
    fuzz_quiet();
    snprintf(dir, sizeof(dir), "%s/request", fuzz_temp_dir());
    FUZZ_REQUIRE(mkdir(dir, 0700) == 0, "cannot make %s", dir);
    snprintf(path, sizeof(path), "%s/gpuhook.json", dir);
    fuzz_req_write_config(dir, path);
    errlist_init(&el);
    FUZZ_REQUIRE(config_load(path, &cfg, &el) == 0, "request config: %s",
                 el.count ? el.items[0] : "?");
    FUZZ_REQUIRE(delivery_new(cfg, &d, &el) == 0, "delivery: %s", el.count ? el.items[0] : "?");
    errlist_cleanup(&el);
    FUZZ_REQUIRE(app_init(&app, cfg, d) == 0, "app_init");
    gpu_set_fit_policy(select_rules_gpu_fit(cfg->rules));
    ready = true;
    return &app;
}

/* Cuts the next line (LF, an optional CR before it) from *p; NULL at the end. */
static char *fuzz_req_line(char **p, char *end) {
    if (*p >= end)
        return NULL;
    char *line = *p;
    char *nl = memchr(line, '\n', (size_t)(end - line));
    char *stop = nl ? nl : end;
    *p = nl ? nl + 1 : end;
    if (stop > line && stop[-1] == '\r')
        stop--;
    *stop = '\0';
    return line;
}

static char *fuzz_req_trim(char *s) {
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

struct fuzz_req {
    char *method, *path, *query;
    size_t chunk;
    struct event_header headers[HTTP_MAX_HEADERS + 20];
    size_t nheader;
    const char *arg_key[FUZZ_REQ_MAX_ARGS], *arg_val[FUZZ_REQ_MAX_ARGS];
    size_t narg;
    char *body;
    size_t body_len;
    /* Values the harness fills in. */
    char sig[80], length[32], bearer[64];
};

static void fuzz_req_parse(struct fuzz_req *r, char *text, size_t size) {
    char *p = text, *end = text + size, *line;

    memset(r, 0, sizeof(*r));
    line = fuzz_req_line(&p, end);
    if (!line)
        line = text + size; /* the copy's terminating NUL */
    r->method = strsep(&line, " ");
    r->path = line ? strsep(&line, " ") : "";
    if (line)
        r->chunk = strtoul(line, NULL, 10);
    r->query = strchr(r->path, '?');
    if (r->query)
        *r->query++ = '\0';
    for (char *q = r->query; q && r->narg < FUZZ_REQ_MAX_ARGS;) {
        char *kv = strsep(&q, "&");
        char *eq = strchr(kv, '=');
        if (eq)
            *eq++ = '\0';
        r->arg_key[r->narg] = kv;
        r->arg_val[r->narg++] = eq;
    }
    while ((line = fuzz_req_line(&p, end)) && *line) {
        char *colon = strchr(line, ':');
        if (!colon || colon == line || r->nheader == sizeof(r->headers) / sizeof(r->headers[0]))
            continue;
        *colon = '\0';
        r->headers[r->nheader].name = line;
        r->headers[r->nheader++].value = fuzz_req_trim(colon + 1);
    }
    r->body = p;
    r->body_len = (size_t)(end - p);
}

/* Cuts the body as libmicrohttpd frames it; returns false for a client that stalls. */
static bool fuzz_req_frame(struct fuzz_req *r) {
    const char *cl = NULL;
    bool te = false;

    for (size_t i = 0; i < r->nheader; i++) {
        if (strcasecmp(r->headers[i].name, "Transfer-Encoding") == 0)
            te = true;
        else if (strcasecmp(r->headers[i].name, "Content-Length") == 0 && !cl) {
            if (strcmp(r->headers[i].value, "auto") == 0) {
                snprintf(r->length, sizeof(r->length), "%zu", r->body_len);
                r->headers[i].value = r->length;
            }
            cl = r->headers[i].value;
        }
    }
    if (te)
        return true;
    char *endp = NULL;
    unsigned long long want = cl && *cl ? strtoull(cl, &endp, 10) : 0;
    if (!cl || !endp || *endp || *cl == '-' || *cl == '+') {
        r->body_len = 0;
        return true;
    }
    if (want > r->body_len)
        return false;
    r->body_len = (size_t)want;
    return true;
}

static void fuzz_req_fill_secrets(struct fuzz_req *r) {
    for (size_t i = 0; i < r->nheader; i++) {
        const char *n = r->headers[i].name, *v = r->headers[i].value;
        if (strcasecmp(n, "X-Hub-Signature-256") == 0 && strcmp(v, "sha256=auto") == 0) {
            unsigned char md[EVP_MAX_MD_SIZE];
            unsigned int len = 0;
            HMAC(EVP_sha256(), FUZZ_REQ_SECRET, (int)strlen(FUZZ_REQ_SECRET),
                 (const unsigned char *)r->body, r->body_len, md, &len);
            memcpy(r->sig, "sha256=", 7);
            for (unsigned int k = 0; k < len && k < 32; k++)
                snprintf(r->sig + 7 + 2 * k, 3, "%02x", md[k]);
            r->headers[i].value = r->sig;
        } else if (strcasecmp(n, "Authorization") == 0 && strcmp(v, "Bearer auto") == 0) {
            snprintf(r->bearer, sizeof(r->bearer), "Bearer %s", FUZZ_REQ_TOKEN);
            r->headers[i].value = r->bearer;
        }
    }
}

static void fuzz_req_check(const struct http_request *req, const struct fuzz_req *r) {
    FUZZ_REQUIRE(req->status >= 200 && req->status <= 599, "status %d", req->status);
    FUZZ_REQUIRE(req->status != 500, "a 500 for %s %s: %.*s", r->method, r->path,
                 (int)(req->out.len < 400 ? req->out.len : 400),
                 req->out.data ? req->out.data : "");
    bool metrics = strcmp(req->route_name, "metrics") == 0 && req->status == 200;
    if (metrics)
        return;
    FUZZ_REQUIRE(req->out.data && fuzz_is_json(req->out.data, req->out.len),
                 "status %d with a body that is not JSON: %.*s", req->status,
                 (int)(req->out.len < 400 ? req->out.len : 400),
                 req->out.data ? req->out.data : "");
    if (req->status >= 400) {
        cJSON *o = cJSON_ParseWithLength(req->out.data, req->out.len);
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "request_id"));
        FUZZ_REQUIRE(cJSON_GetObjectItemCaseSensitive(o, "error") || req->status == 503,
                     "error %d without a message", req->status);
        FUZZ_REQUIRE(!id || strcmp(id, req->request_id) == 0, "request_id differs");
        cJSON_Delete(o);
    }
    if (req->status == 405)
        FUZZ_REQUIRE(req->allow != NULL, "a 405 without Allow");
}

int fuzz_request_one(const uint8_t *data, size_t size) {
    struct app *app = fuzz_req_app();
    char *text = fuzz_strndup(data, size);
    struct fuzz_req *r = calloc(1, sizeof(*r));

    FUZZ_REQUIRE(r != NULL, "out of memory");
    fuzz_req_parse(r, text, size);
    bool complete = fuzz_req_frame(r);
    fuzz_req_fill_secrets(r);

    struct http_request *req = http_request_new(app, &routes_table, r->method, r->path);
    FUZZ_REQUIRE(req != NULL, "http_request_new");
    for (size_t i = 0; i < r->nheader; i++)
        http_request_add_header(req, r->headers[i].name, r->headers[i].value);
    for (size_t i = 0; i < r->narg; i++)
        http_request_add_arg(req, r->arg_key[i], r->arg_val[i]);

    bool answered = true;
    if (!http_request_begin(req)) {
        size_t chunk = r->chunk ? r->chunk : (r->body_len ? r->body_len : 1);
        bool cut = false;
        for (size_t off = 0; off < r->body_len && !cut; off += chunk) {
            size_t n = r->body_len - off < chunk ? r->body_len - off : chunk;
            cut = !http_request_upload(req, r->body + off, n);
        }
        answered = complete && !cut;
        if (answered)
            http_request_finish(req);
    }
    if (answered) {
        /* GPUHOOK_FUZZ_VERBOSE=1 prints each answer, to check what seeds reach. */
        static int verbose = -1;
        if (verbose < 0)
            verbose = getenv("GPUHOOK_FUZZ_VERBOSE") != NULL;
        if (verbose)
            fprintf(stderr, "%s %s -> %d %.*s\n", r->method, r->path, req->status,
                    (int)(req->out.len < 300 ? req->out.len : 300),
                    req->out.data ? req->out.data : "");
        fuzz_req_check(req, r);
    }
    http_request_free(req);
    free(r);
    free(text);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_request_one(data, size);
}
#endif
