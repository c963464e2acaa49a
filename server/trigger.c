/*
 * POST /trigger: manual runs with curl, authenticated with a bearer token
 * compared in constant time. The JSON body names the variant (or auto), the
 * revision, the repository and param overrides; an Idempotency-Key header
 * makes retries create one run, and ?dry_run=true returns the object instead.
 */
#include "gpuhook/buf.h"
#include "gpuhook/config.h"
#include "gpuhook/ids.h"
#include "gpuhook/naming.h"
#include "gpuhook/pipeline.h"
#include "gpuhook/select.h"
#include "gpuhook/template.h"
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define TRIGGER_MAX_PARAMS 64
#define TRIGGER_BODY_MAX (1024 * 1024)

/* Compares two secrets in time independent of where they differ or their lengths. */
static bool trigger_token_equal(const char *given, const char *want) {
    unsigned char a[32], b[32];
    unsigned int la = 0, lb = 0;
    if (EVP_Digest(given, strlen(given), a, &la, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(want, strlen(want), b, &lb, EVP_sha256(), NULL) != 1)
        return false;
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

static enum http_step trigger_begin(struct http_request *req, void *state) {
    const char *auth = http_request_header(req, "Authorization");
    const char *ct = http_request_header(req, "Content-Type");
    (void)state;

    http_request_log(req, "event", "trigger");
    if (!req->cfg->trigger_token) {
        http_request_error(req, 403, "POST /trigger is disabled: trigger.token_file is not set");
        return HTTP_RESPONDED;
    }
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 ||
        !trigger_token_equal(auth + 7, req->cfg->trigger_token)) {
        http_respond_header(req, "WWW-Authenticate", "Bearer realm=\"gpuhook\"");
        http_request_error(req, 401, "missing or invalid bearer token");
        return HTTP_RESPONDED;
    }
    size_t n = strlen("application/json");
    if (!ct || strncasecmp(ct, "application/json", n) != 0 || (ct[n] && ct[n] != ';')) {
        http_request_error(req, 415, "unsupported Content-Type: use application/json");
        return HTTP_RESPONDED;
    }
    return HTTP_CONTINUE;
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

static bool trigger_key_ok(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
            return false;
    return true;
}

/* The value as compact JSON, cut to fit, for a 400 that names what was wrong. */
static const char *trigger_value(const cJSON *v, char *out, size_t n) {
    char *text = cJSON_PrintUnformatted(v);
    size_t len = text ? strlen(text) : 0;
    if (len + 1 > n && n > 4)
        snprintf(out, n, "%.*s...", (int)(n - 4), text);
    else
        snprintf(out, n, "%s", text ? text : "?");
    cJSON_free(text);
    return out;
}

static int trigger_key_cmp(const void *a, const void *b) {
    return strcmp((*(const cJSON *const *)a)->string, (*(const cJSON *const *)b)->string);
}

static void trigger_hash_add(EVP_MD_CTX *ctx, const char *name, const cJSON *v) {
    char *text = v ? cJSON_PrintUnformatted(v) : NULL;
    EVP_DigestUpdate(ctx, name, strlen(name) + 1);
    EVP_DigestUpdate(ctx, text ? text : "", text ? strlen(text) + 1 : 0);
    cJSON_free(text);
}

/*
 * The request's fingerprint for Idempotency-Key: SHA-256 over the body's fields in a
 * fixed order, params sorted by name, each value as compact JSON, so key order and
 * white space do not count but every value does. Writes 64 hex digits; false on failure.
 */
static bool trigger_fingerprint(const cJSON *body, const cJSON *params, size_t nparams,
                                char out[65]) {
    static const char *const fields[] = {"variant", "revision", "repo_url", "branch"};
    const cJSON *sorted[TRIGGER_MAX_PARAMS];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    size_t n = 0;
    const cJSON *it;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return false;
    }
    EVP_DigestUpdate(ctx, "gpuhook-trigger-v1", 19);
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        trigger_hash_add(ctx, fields[i], cJSON_GetObjectItemCaseSensitive(body, fields[i]));
    cJSON_ArrayForEach(it, params) {
        if (n < nparams && n < TRIGGER_MAX_PARAMS)
            sorted[n++] = it;
    }
    qsort(sorted, n, sizeof(sorted[0]), trigger_key_cmp);
    for (size_t i = 0; i < n; i++)
        trigger_hash_add(ctx, sorted[i]->string, sorted[i]);
    bool ok = EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
    EVP_MD_CTX_free(ctx);
    for (unsigned int i = 0; ok && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return ok;
}

/* "git-repo-url, git-revision" (the params a /trigger may set), for a 400. */
static void trigger_param_list(const struct template *t, char *out, size_t n) {
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < template_param_count(t) && len < n; i++) {
        const char *p = template_param_name(t, i);
        if (template_param_from_variant(t, p))
            continue;
        len += (size_t)snprintf(out + len, n - len, "%s%s", len ? ", " : "", p);
    }
    if (!out[0])
        snprintf(out, n, "none");
}

static enum http_step trigger_finish(struct http_request *req, void *state) {
    static const char *const known[] = {"variant", "revision", "repo_url", "branch", "params"};
    struct template_override ov[TRIGGER_MAX_PARAMS];
    size_t nov = 0;
    struct event ev;
    char uuid[37], shown[80], allowed[256], fingerprint[65];
    cJSON *body = NULL;
    const cJSON *it;
    int forced = -1;
    char err[256] = "";
    enum http_step step = HTTP_RESPONDED;
    (void)state;

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
                               "unknown field \"%s\": the fields are variant, revision, "
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
        http_request_error(req, 400, "variant %s is not one of lite, original, auto",
                           trigger_value(variant, shown, sizeof(shown)));
        goto out;
    }
    if (!revision) {
        http_request_error(req, 400, "revision: required, a non-empty string");
        goto out;
    }
    if (!cJSON_IsString(revision) || !revision->valuestring[0]) {
        http_request_error(req, 400, "revision: required, a non-empty string, not %s",
                           trigger_value(revision, shown, sizeof(shown)));
        goto out;
    }
    const char *repo_url = req->cfg->trigger_default_repo_url;
    if (repo && (!cJSON_IsString(repo) || !repo->valuestring[0])) {
        http_request_error(req, 400, "repo_url: must be a non-empty string, not %s",
                           trigger_value(repo, shown, sizeof(shown)));
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
        http_request_error(req, 400, "branch: must be a string, not %s",
                           trigger_value(branch, shown, sizeof(shown)));
        goto out;
    }
    if (params && !cJSON_IsObject(params)) {
        http_request_error(req, 400, "params: must be an object of strings, not %s",
                           trigger_value(params, shown, sizeof(shown)));
        goto out;
    }
    trigger_param_list(req->cfg->tmpl, allowed, sizeof(allowed));
    cJSON_ArrayForEach(it, params) {
        if (!cJSON_IsString(it)) {
            http_request_error(req, 400, "params.%s: must be a string, not %s", it->string,
                               trigger_value(it, shown, sizeof(shown)));
            goto out;
        }
        if (!template_declares(req->cfg->tmpl, it->string)) {
            http_request_error(req, 400,
                               "params.%s: the template declares no such param; params may "
                               "set %s",
                               it->string, allowed);
            goto out;
        }
        if (template_param_from_variant(req->cfg->tmpl, it->string)) {
            http_request_error(req, 400,
                               "params.%s: set by the variant alone (its binding is "
                               "$(extensions.variant)); choose it with \"variant\": lite, "
                               "original or auto; params may set %s",
                               it->string, allowed);
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
        http_request_error(req, 400,
                           "Idempotency-Key: 1 to 128 visible ASCII characters, got %zu bytes",
                           strlen(key));
        goto out;
    }
    /* With a key, the run records what was asked, so a reuse with another body is told apart. */
    bool keyed = key != NULL;
    if (keyed && !trigger_fingerprint(body, params, nov, fingerprint)) {
        http_request_error(req, 500, "cannot compute the request's fingerprint");
        goto out;
    }
    if (!key) {
        if (ids_uuid4(uuid) != 0) /* no randomness: as before, the zero UUID, never no key */
            snprintf(uuid, sizeof(uuid), "00000000-0000-4000-8000-000000000000");
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
    http_request_log(req, "delivery", key);
    struct pipeline_input in = {
        .ev = &ev,
        .forced_variant = forced,
        .overrides = ov,
        .override_count = nov,
        .name_kind = NAMING_TRIGGER,
        .name_key = {key, NULL},
        .fingerprint = keyed ? fingerprint : NULL,
        .preview = http_request_flag(req, "dry_run"),
    };
    step = routes_run_pipeline(req, &in);
out:
    event_cleanup(&ev);
    cJSON_Delete(body);
    return step;
}

const struct http_route trigger_route = {
    .path = "/trigger",
    .name = "trigger",
    .method = "POST",
    .allow = "POST",
    .body_max = TRIGGER_BODY_MAX,
    .begin = trigger_begin,
    .finish = trigger_finish,
};
