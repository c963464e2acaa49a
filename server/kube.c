#include "gpuhook/kube.h"
#include "gpuhook/buf.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define KUBE_POOL_MAX 64
#define KUBE_RESPONSE_MAX (1024 * 1024)
#define KUBE_TOKEN_CHECK_SECONDS 10
#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/*
 * A pooled curl handle with its constant options set once. Its header list
 * (which holds the token) is rebuilt only when the token changes.
 */
struct kube_handle {
    CURL *curl;
    struct curl_slist *hdrs;
    unsigned token_gen;
};

static void kube_handle_free(struct kube_handle *kh);

struct kube {
    char *base_url;
    char *ca_file;
    char *token_file;
    char *namespace;
    char *proxy;
    long timeout_seconds;

    pthread_mutex_t lock; /* guards the token and the handle pool */
    char *token;
    unsigned token_gen; /* bumped whenever the token changes */
    struct timespec token_mtime;
    off_t token_size;
    time_t token_checked;
    struct kube_handle *pool[KUBE_POOL_MAX];
    size_t pool_len;
};

static long kube_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Re-reads the token when its file changed; force skips the rate limit. */
static void kube_token_refresh(struct kube *k, int force) {
    struct stat st;
    time_t now = time(NULL);

    if (!k->token_file)
        return;
    if (!force && k->token && now - k->token_checked < KUBE_TOKEN_CHECK_SECONDS)
        return;
    k->token_checked = now;
    if (stat(k->token_file, &st) != 0)
        return;
    if (!force && k->token && st.st_mtim.tv_sec == k->token_mtime.tv_sec &&
        st.st_mtim.tv_nsec == k->token_mtime.tv_nsec && st.st_size == k->token_size)
        return;
    char *t = NULL;
    if (config_read_secret(k->token_file, &t, NULL) != 0)
        return;
    if (k->token) {
        explicit_bzero(k->token, strlen(k->token));
        free(k->token);
    }
    k->token = t;
    k->token_gen++;
    k->token_mtime = st.st_mtim;
    k->token_size = st.st_size;
}

static char *kube_read_small(const char *path) {
    char *s = NULL;
    if (config_read_secret(path, &s, NULL) != 0)
        return NULL;
    return s;
}

int kube_new(const struct config *cfg, struct kube **out, struct errlist *el) {
    struct kube *k = calloc(1, sizeof(*k));
    *out = NULL;
    if (!k)
        return GHE_NOMEM;
    pthread_mutex_init(&k->lock, NULL);
    k->timeout_seconds = cfg->kube_timeout_seconds;
    k->proxy = cfg->kube_proxy ? strdup(cfg->kube_proxy) : NULL;
    if (cfg->kube_mode == CONFIG_KUBE_IN_CLUSTER) {
        const char *host = getenv("KUBERNETES_SERVICE_HOST");
        const char *port = getenv("KUBERNETES_SERVICE_PORT");
        const char *dir = getenv("GPUHOOK_SERVICEACCOUNT_DIR");
        if (!dir || !*dir)
            dir = KUBE_SA_DIR;
        if (!host || !*host || !port || !*port) {
            errlist_add(el, "in-cluster mode: KUBERNETES_SERVICE_HOST and "
                            "KUBERNETES_SERVICE_PORT must be set");
            goto fail;
        }
        /* An IPv6 service address needs brackets in a URL. */
        if (asprintf(&k->base_url, strchr(host, ':') ? "https://[%s]:%s" : "https://%s:%s", host,
                     port) < 0)
            goto fail;
        if (asprintf(&k->token_file, "%s/token", dir) < 0 ||
            asprintf(&k->ca_file, "%s/ca.crt", dir) < 0)
            goto fail;
        if (cfg->kube_namespace) {
            k->namespace = strdup(cfg->kube_namespace);
        } else {
            char *nsfile = NULL;
            if (asprintf(&nsfile, "%s/namespace", dir) >= 0)
                k->namespace = kube_read_small(nsfile);
            if (!k->namespace)
                errlist_add(el, "in-cluster mode: cannot read the namespace from %s", nsfile);
            free(nsfile);
            if (!k->namespace)
                goto fail;
        }
        if (access(k->token_file, R_OK) != 0 || access(k->ca_file, R_OK) != 0) {
            errlist_add(el, "in-cluster mode: cannot read %s/token and %s/ca.crt", dir, dir);
            goto fail;
        }
    } else {
        k->base_url = strdup(cfg->kube_url);
        k->namespace = strdup(cfg->kube_namespace ? cfg->kube_namespace : "default");
        k->ca_file = cfg->kube_ca_file ? strdup(cfg->kube_ca_file) : NULL;
        k->token_file = cfg->kube_token_file ? strdup(cfg->kube_token_file) : NULL;
    }
    /* A trailing slash would double up with the paths we append. */
    size_t n = strlen(k->base_url);
    while (n > 0 && k->base_url[n - 1] == '/')
        k->base_url[--n] = '\0';
    kube_token_refresh(k, 1);
    if (k->token_file && !k->token) {
        errlist_add(el, "kubernetes: cannot read a token from %s", k->token_file);
        goto fail;
    }
    *out = k;
    return 0;
fail:
    kube_free(k);
    return GHE_INVAL;
}

void kube_free(struct kube *k) {
    if (!k)
        return;
    for (size_t i = 0; i < k->pool_len; i++)
        kube_handle_free(k->pool[i]);
    if (k->token) {
        explicit_bzero(k->token, strlen(k->token));
        free(k->token);
    }
    free(k->base_url);
    free(k->ca_file);
    free(k->token_file);
    free(k->namespace);
    free(k->proxy);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

const char *kube_namespace(const struct kube *k) { return k->namespace; }

static void kube_slist_free(struct curl_slist *l) {
    for (struct curl_slist *i = l; i; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
}

static void kube_handle_free(struct kube_handle *kh) {
    if (!kh)
        return;
    curl_easy_cleanup(kh->curl);
    kube_slist_free(kh->hdrs);
    free(kh);
}

static size_t kube_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata);
static size_t kube_header_cb(char *ptr, size_t size, size_t nitems, void *userdata);

static struct kube_handle *kube_handle_new(struct kube *k) {
    struct kube_handle *kh = calloc(1, sizeof(*kh));
    if (!kh || !(kh->curl = curl_easy_init())) {
        free(kh);
        return NULL;
    }
    CURL *h = kh->curl;
    kh->token_gen = (unsigned)-1;
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_PROXY, k->proxy ? k->proxy : "");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    if (k->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, k->ca_file);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "gpuhook/" GPUHOOK_VERSION);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, kube_write_cb);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, kube_header_cb);
    return kh;
}

static struct kube_handle *kube_handle_get(struct kube *k) {
    struct kube_handle *kh = NULL;
    pthread_mutex_lock(&k->lock);
    if (k->pool_len > 0)
        kh = k->pool[--k->pool_len];
    pthread_mutex_unlock(&k->lock);
    return kh ? kh : kube_handle_new(k);
}

static void kube_handle_put(struct kube *k, struct kube_handle *kh) {
    pthread_mutex_lock(&k->lock);
    if (k->pool_len < KUBE_POOL_MAX) {
        k->pool[k->pool_len++] = kh;
        kh = NULL;
    }
    pthread_mutex_unlock(&k->lock);
    kube_handle_free(kh);
}

static size_t kube_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
    struct buf *b = userdata;
    /* Returning less than given aborts the transfer of an oversized answer. */
    return buf_append(b, ptr, size * nmemb) == 0 ? size * nmemb : 0;
}

static size_t kube_header_cb(char *ptr, size_t size, size_t nitems, void *userdata) {
    long *retry_after = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n > sizeof(name) && strncasecmp(ptr, name, sizeof(name) - 1) == 0)
        *retry_after = strtol(ptr + sizeof(name) - 1, NULL, 10);
    return n;
}

/*
 * One HTTP exchange. Returns the HTTP status, or 0 when no answer came (with
 * the curl error in msg). The body goes into resp.
 */
static int kube_exchange(struct kube *k, struct kube_handle *kh, const char *method,
                         const char *path, const char *body, size_t len, long timeout_ms,
                         struct buf *resp, long *retry_after, char *msg, size_t msglen) {
    char url[1024];
    long code = 0;
    CURL *h = kh->curl;

    snprintf(url, sizeof(url), "%s%s", k->base_url, path);
    pthread_mutex_lock(&k->lock);
    kube_token_refresh(k, 0);
    if (kh->token_gen != k->token_gen || !kh->hdrs) {
        /* The token changed (or this handle is new): rebuild its headers. */
        char auth[8192];
        kube_slist_free(kh->hdrs);
        kh->hdrs = curl_slist_append(NULL, "Accept: application/json");
        kh->hdrs = curl_slist_append(kh->hdrs, "Content-Type: application/json");
        if (k->token) {
            snprintf(auth, sizeof(auth), "Authorization: Bearer %s", k->token);
            kh->hdrs = curl_slist_append(kh->hdrs, auth);
            explicit_bzero(auth, sizeof(auth));
        }
        kh->token_gen = k->token_gen;
    }
    pthread_mutex_unlock(&k->lock);

    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, kh->hdrs);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 2000 ? timeout_ms : 2000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, retry_after);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
    CURLcode cc = curl_easy_perform(h);
    if (cc != CURLE_OK) {
        snprintf(msg, msglen, "%s", curl_easy_strerror(cc));
        metrics_kube_request(0);
        return 0;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    metrics_kube_request((int)code);
    return (int)code;
}

/* Copies a Status object's message (or a fallback) into msg. */
static void kube_status_message(const struct buf *resp, int code, char *msg, size_t msglen) {
    cJSON *st = resp->len ? cJSON_ParseWithLength(resp->data, resp->len) : NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(st, "message");
    if (cJSON_IsString(m))
        snprintf(msg, msglen, "%s", m->valuestring);
    else
        snprintf(msg, msglen, "HTTP %d from the API server", code);
    cJSON_Delete(st);
}

static int kube_is_transient(int code) {
    return code == 0 || code == 429 || code >= 500 || code == 401 || code == 403 || code == 404 ||
           code == 408;
}

int kube_create(struct kube *k, const char *ns, const char *json, size_t len, long deadline_ms,
                struct kube_result *r) {
    char path[512];
    long start = kube_now_ms();
    long backoff = 100;
    int reauthed = 0;
    struct kube_handle *h = kube_handle_get(k);

    memset(r, 0, sizeof(*r));
    if (!h)
        return GHE_NOMEM;
    snprintf(path, sizeof(path),
             "/apis/tekton.dev/v1/namespaces/%s/pipelineruns?fieldValidation=Strict", ns);
    for (;;) {
        struct buf resp;
        long retry_after = -1;
        long left = deadline_ms - (kube_now_ms() - start);
        if (left < 50)
            break;
        buf_init(&resp, KUBE_RESPONSE_MAX);
        r->attempts++;
        r->status = kube_exchange(k, h, "POST", path, json, len, left, &resp, &retry_after,
                                  r->message, sizeof(r->message));
        /* Only a failure's Status is worth parsing: a 201 carries nothing we need. */
        if (r->status && (r->status < 200 || r->status > 299))
            kube_status_message(&resp, r->status, r->message, sizeof(r->message));
        buf_cleanup(&resp);
        if (r->status == 401 && !reauthed) {
            /* A rotated token: re-read it at once and retry once. */
            reauthed = 1;
            pthread_mutex_lock(&k->lock);
            kube_token_refresh(k, 1);
            pthread_mutex_unlock(&k->lock);
            continue;
        }
        if (!kube_is_transient(r->status))
            break;
        unsigned int rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
            rnd = (unsigned int)kube_now_ms();
        long wait = backoff / 2 + (long)(rnd % (unsigned int)(backoff / 2 + 1));
        if (retry_after >= 0)
            wait = retry_after * 1000L;
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
        left = deadline_ms - (kube_now_ms() - start);
        if (wait >= left)
            break;
        struct timespec ts = {wait / 1000, (wait % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
    kube_handle_put(k, h);
    return 0;
}

int kube_probe(struct kube *k, char *detail, size_t detail_len) {
    struct buf resp;
    long retry_after = -1;
    struct kube_handle *h = kube_handle_get(k);
    int code;

    if (!h)
        return GHE_NOMEM;
    buf_init(&resp, 64 * 1024);
    code = kube_exchange(k, h, "GET", "/readyz", NULL, 0, 2000, &resp, &retry_after, detail,
                         detail_len);
    if (code && code != 200)
        snprintf(detail, detail_len, "GET /readyz answered %d", code);
    buf_cleanup(&resp);
    kube_handle_put(k, h);
    return code == 200 ? 0 : GHE_UNAVAILABLE;
}
