#include "gpuhook/trigger.h"
#include "gpuhook/buf.h"
#include "gpuhook/dispatch.h"
#include "gpuhook/select.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define TRIGGER_MAX_PARAMS 64

/* Compares two secrets in time independent of where they differ or their lengths. */
static bool trigger_token_equal(const char *given, const char *want) {
    unsigned char a[32], b[32];
    unsigned int la = 0, lb = 0;
    if (EVP_Digest(given, strlen(given), a, &la, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(want, strlen(want), b, &lb, EVP_sha256(), NULL) != 1)
        return false;
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

bool trigger_begin(struct http_request *req) {
    const char *auth = http_request_header(req, "Authorization");
    const char *ct = http_request_header(req, "Content-Type");

    snprintf(req->log_event, sizeof(req->log_event), "trigger");
    if (!req->cfg->trigger_token) {
        http_request_error(req, 403, "POST /trigger is disabled: trigger.token_file is not set");
        return true;
    }
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 ||
        !trigger_token_equal(auth + 7, req->cfg->trigger_token)) {
        req->www_authenticate = true;
        http_request_error(req, 401, "missing or invalid bearer token");
        return true;
    }
    size_t n = strlen("application/json");
    if (!ct || strncasecmp(ct, "application/json", n) != 0 || (ct[n] && ct[n] != ';')) {
        http_request_error(req, 415, "unsupported Content-Type: use application/json");
        return true;
    }
    return false;
}

/* Derives owner/name from a GitHub-style clone URL, for the repository rule. */
static char *trigger_full_name(const char *url) {
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : strrchr(url, ':');
    if (!p || !p[1])
        return NULL;
    char *s = strdup(p + 1);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    if (n > 4 && strcmp(s + n - 4, ".git") == 0)
        s[n - 4] = '\0';
    return s;
}

static void trigger_uuid(char out[37]) {
    unsigned char r[16] = {0};
    if (getrandom(r, sizeof(r), 0) != sizeof(r))
        memset(r, 0, sizeof(r));
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40);
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

static bool trigger_key_ok(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
            return false;
    return true;
}

void trigger_finish(struct http_request *req) {
    static const char *const known[] = {"variant", "revision", "repo_url", "branch", "params"};
    struct template_override ov[TRIGGER_MAX_PARAMS];
    size_t nov = 0;
    struct event ev;
    char uuid[37];
    cJSON *body = NULL;
    const cJSON *it;
    int forced = -1;
    char err[256] = "";

    event_init(&ev);
    if (event_json_parse(req->body.data ? req->body.data : "", req->body.len, &body, err,
                         sizeof(err)) != 0) {
        http_request_error(req, 400, "%s", err[0] ? err : "body is not a JSON object");
        goto out;
    }
    cJSON_ArrayForEach(it, body) {
        bool ok = false;
        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            ok = ok || strcmp(it->string, known[i]) == 0;
        if (!ok) {
            http_request_error(req, 400,
                               "unknown field \"%s\"; expected variant, revision, "
                               "repo_url, branch, params",
                               it->string);
            goto out;
        }
    }
    const cJSON *variant = cJSON_GetObjectItemCaseSensitive(body, "variant");
    const cJSON *revision = cJSON_GetObjectItemCaseSensitive(body, "revision");
    const cJSON *repo = cJSON_GetObjectItemCaseSensitive(body, "repo_url");
    const cJSON *branch = cJSON_GetObjectItemCaseSensitive(body, "branch");
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(body, "params");
    if (variant &&
        (!cJSON_IsString(variant) ||
         (strcmp(variant->valuestring, "auto") != 0 &&
          ((forced = select_variant_parse(variant->valuestring)) < 0 || forced == SELECT_SKIP)))) {
        http_request_error(req, 400, "variant: must be one of lite, original, auto");
        goto out;
    }
    if (!cJSON_IsString(revision) || !revision->valuestring[0]) {
        http_request_error(req, 400, "revision: required, a non-empty string");
        goto out;
    }
    const char *repo_url = req->cfg->trigger_default_repo_url;
    if (repo && (!cJSON_IsString(repo) || !repo->valuestring[0])) {
        http_request_error(req, 400, "repo_url: must be a non-empty string");
        goto out;
    }
    if (repo)
        repo_url = repo->valuestring;
    if (!repo_url) {
        http_request_error(req, 400,
                           "repo_url: required (no trigger.default_repo_url is configured)");
        goto out;
    }
    if (branch && !cJSON_IsString(branch)) {
        http_request_error(req, 400, "branch: must be a string");
        goto out;
    }
    if (params && !cJSON_IsObject(params)) {
        http_request_error(req, 400, "params: must be an object of strings");
        goto out;
    }
    cJSON_ArrayForEach(it, params) {
        if (!cJSON_IsString(it)) {
            http_request_error(req, 400, "params.%s: must be a string", it->string);
            goto out;
        }
        if (!template_declares(req->cfg->tmpl, it->string)) {
            http_request_error(req, 400, "params.%s: the template declares no such param",
                               it->string);
            goto out;
        }
        if (nov == TRIGGER_MAX_PARAMS) {
            http_request_error(req, 400, "params: more than %d entries", TRIGGER_MAX_PARAMS);
            goto out;
        }
        ov[nov].name = it->string;
        ov[nov].value = it->valuestring;
        nov++;
    }
    const char *key = http_request_header(req, "Idempotency-Key");
    if (key && !trigger_key_ok(key)) {
        http_request_error(req, 400, "Idempotency-Key: 1 to 128 visible ASCII characters");
        goto out;
    }
    if (!key) {
        trigger_uuid(uuid);
        key = uuid;
    }

    int rc = event_set(&ev.event, "trigger") | event_set(&ev.revision, revision->valuestring) |
             event_set(&ev.repo_url, repo_url) | event_set(&ev.delivery, key) |
             event_set(&ev.sender, "trigger");
    ev.repo_full_name = trigger_full_name(repo_url);
    if (branch && branch->valuestring[0]) {
        rc |= event_set(&ev.branch, branch->valuestring);
        if (asprintf(&ev.ref, "refs/heads/%s", branch->valuestring) < 0)
            ev.ref = NULL;
    }
    if (rc) {
        http_request_error(req, 500, "out of memory");
        goto out;
    }
    ev.headers = req->headers;
    ev.header_count = req->header_count;
    buf_copy_str(req->log_delivery, sizeof(req->log_delivery), key);
    struct dispatch_input in = {
        .ev = &ev,
        .forced_variant = forced,
        .overrides = ov,
        .override_count = nov,
        .name_key = {"trigger", key},
        .preview = req->dry_run_query,
    };
    dispatch_run(req, &in);
out:
    event_cleanup(&ev);
    cJSON_Delete(body);
}
