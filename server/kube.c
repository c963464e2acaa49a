#include "gpuhook/kube.h"
#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/config.h"
#include "gpuhook/error.h"
#include "gpuhook/ids.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"
#include "gpuhook/naming.h"
#include "gpuhook/retryafter.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define KUBE_POOL_MAX 64
#define KUBE_CONNS_MAX 32
#define KUBE_STATUS_MAX (64 * 1024)       /* what a POST's answer keeps: a Status fits */
#define KUBE_OBJECT_MAX (4 * 1024 * 1024) /* what a GET keeps: the object, bounded by etcd */
#define KUBE_TOKEN_CHECK_SECONDS 10
#define KUBE_IDLE_POLL_MS 1000
#define KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define KUBE_SHUTTING_DOWN "the API client is shutting down"

/*
 * A curl handle with its constant options set once. Its header list (which
 * holds the token) is rebuilt only when the token changes.
 */
struct kube_handle {
    CURL *curl;
    struct curl_slist *hdrs;
    unsigned token_gen;
    struct kube_handle *next; /* in the loop's free list */
};

static void kube_handle_free(struct kube_handle *kh);

/*
 * One create, from kube_create_async until its done callback. It sits in exactly one
 * list: incoming (shared, under jobs_lock), waiting for its retry time, or in flight
 * (both owned by the loop thread).
 */
struct kube_job {
    struct kube_job *next;
    struct kube_job *prev; /* in flight only */
    char url[1024];
    char get_url[1200]; /* the object's own URL, for the GET after 409 AlreadyExists */
    const char *json;
    size_t len;
    long start_ms;
    long deadline_ms;
    long due_ms; /* when a waiting job's next attempt starts */
    long backoff_ms;
    long retry_after; /* seconds, from the last answer; -1 when absent */
    int reauthed;
    bool getting;          /* after 409 AlreadyExists: reading the existing object */
    struct kube_handle *h; /* while in flight */
    struct buf resp;
    struct kube_result r;
    kube_done_fn done;
    void *arg;
};

struct kube {
    char *base_url;
    char *ca_file;
    char *token_file;
    char *namespace;
    char *proxy;
    long timeout_seconds;

    pthread_mutex_t lock; /* guards the token */
    char *token;
    unsigned token_gen; /* bumped whenever the token changes */
    struct timespec token_mtime;
    off_t token_size;
    time_t token_checked;
    pthread_mutex_t probe_lock; /* guards probe */
    struct kube_handle *probe;  /* the spare handle for kube_probe */
    int blocked_status;         /* under lock: the last 403/404, 0 once a create gets through */
    char blocked_message[256];

    pthread_mutex_t jobs_lock; /* guards incoming and stopping */
    struct kube_job *incoming;
    struct kube_job *incoming_tail;
    bool stopping;

    /* Owned by the loop thread while it runs, then by kube_free. */
    CURLM *multi;
    pthread_t thread;
    bool loop_running;
    struct kube_job *waiting; /* sorted by due_ms */
    struct kube_job *flight;
    struct kube_handle *spare; /* free easy handles for the loop */
    size_t spare_len;
};

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

static int kube_loop_start(struct kube *k);
static void kube_loop_stop(struct kube *k);

int kube_new(const struct config *cfg, struct kube **out, struct errlist *el) {
    struct kube *k = calloc(1, sizeof(*k));
    int rc = GHE_INVAL;
    *out = NULL;
    if (!k)
        return GHE_NOMEM;
    pthread_mutex_init(&k->lock, NULL);
    pthread_mutex_init(&k->jobs_lock, NULL);
    pthread_mutex_init(&k->probe_lock, NULL);
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
    if (kube_loop_start(k) != 0) {
        errlist_add(el, "kubernetes: cannot start the API client's thread");
        rc = GHE_NOMEM;
        goto fail;
    }
    *out = k;
    return 0;
fail:
    kube_free(k);
    return rc;
}

void kube_stop(struct kube *k) {
    if (k)
        kube_loop_stop(k);
}

void kube_free(struct kube *k) {
    if (!k)
        return;
    kube_loop_stop(k);
    kube_handle_free(k->probe);
    if (k->token) {
        explicit_bzero(k->token, strlen(k->token));
        free(k->token);
    }
    free(k->base_url);
    free(k->ca_file);
    free(k->token_file);
    free(k->namespace);
    free(k->proxy);
    pthread_mutex_destroy(&k->probe_lock);
    pthread_mutex_destroy(&k->jobs_lock);
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

/* The connection options every request to the API server carries: kube's own and the watcher's. */
static void kube_conn_options(const struct kube *k, CURL *h) {
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
}

static struct kube_handle *kube_handle_new(struct kube *k) {
    struct kube_handle *kh = calloc(1, sizeof(*kh));
    if (!kh || !(kh->curl = curl_easy_init())) {
        free(kh);
        return NULL;
    }
    CURL *h = kh->curl;
    kh->token_gen = (unsigned)-1;
    kube_conn_options(k, h);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, kube_write_cb);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, kube_header_cb);
    return kh;
}

static size_t kube_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata) {
    struct buf *b = userdata;
    /*
     * Keep what fits and drop the rest, never abort: aborting a 201 because its body is
     * large would turn a created run into a retry that answers 409.
     */
    if (b->len < b->max)
        buf_append(b, ptr, size * nmemb < b->max - b->len ? size * nmemb : b->max - b->len);
    return size * nmemb;
}

static size_t kube_header_cb(char *ptr, size_t size, size_t nitems, void *userdata) {
    long *retry_after = userdata;
    size_t n = size * nitems;
    static const char name[] = "retry-after:";
    if (n >= sizeof(name) && strncasecmp(ptr, name, sizeof(name) - 1) == 0)
        *retry_after =
            retry_after_parse(ptr + sizeof(name) - 1, n - (sizeof(name) - 1), time(NULL));
    return n;
}

/*
 * Sets one exchange's options on kh: a POST of body when body is set, else a GET.
 * The answer goes into resp and its Retry-After into *retry_after.
 */
static void kube_handle_prepare(struct kube *k, struct kube_handle *kh, const char *url,
                                const char *body, size_t len, long timeout_ms, struct buf *resp,
                                long *retry_after) {
    CURL *h = kh->curl;

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
    if (body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }
}

/*
 * The status of a finished exchange, or 0 when no answer came (with the curl error
 * in msg). Counts the attempt in the metrics.
 */
static int kube_exchange_status(CURL *h, CURLcode cc, char *msg, size_t msglen) {
    long code = 0;
    if (cc != CURLE_OK) {
        snprintf(msg, msglen, "%s", curl_easy_strerror(cc));
        metrics_kube_request(0);
        return 0;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    metrics_kube_request((int)code);
    return (int)code;
}

/* Copies a Status object's message (or a fallback), its reason and the Status itself into r. */
static void kube_status_read(const struct buf *resp, int code, struct kube_result *r) {
    cJSON *st = resp->len ? cJSON_ParseWithLength(resp->data, resp->len) : NULL;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(st, "message");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(st, "reason");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(st, "kind");
    if (cJSON_IsString(m))
        snprintf(r->message, sizeof(r->message), "%s", m->valuestring);
    else
        snprintf(r->message, sizeof(r->message), "HTTP %d from the API server", code);
    snprintf(r->reason, sizeof(r->reason), "%s", cJSON_IsString(reason) ? reason->valuestring : "");
    r->status_json[0] = '\0';
    if (cJSON_IsString(kind) && strcmp(kind->valuestring, "Status") == 0 &&
        resp->len < sizeof(r->status_json)) {
        memcpy(r->status_json, resp->data, resp->len);
        r->status_json[resp->len] = '\0';
    }
    cJSON_Delete(st);
}

int kube_answer_of(int status, const char *reason) {
    switch (status) {
    case 201:
        return KUBE_ANSWER_CREATED;
    case 409:
        return reason && strcmp(reason, "AlreadyExists") == 0 ? KUBE_ANSWER_EXISTS
                                                              : KUBE_ANSWER_RETRY;
    case 400:
    case 413:
    case 415:
    case 422:
        return KUBE_ANSWER_REFUSED;
    case 401:
        return KUBE_ANSWER_UNAUTHORIZED;
    case 403:
    case 404:
        return KUBE_ANSWER_BLOCKED;
    default:
        /* 0 (no answer), 408, 429, 5xx and anything unexpected: retrying loses nothing. */
        return KUBE_ANSWER_RETRY;
    }
}

const char *kube_answer_name(int answer) {
    static const char *const names[] = {"retry",        "created", "exists",
                                        "unauthorized", "blocked", "refused"};
    return answer >= 0 && answer <= KUBE_ANSWER_REFUSED ? names[answer] : "unknown";
}

bool kube_blocked(struct kube *k, int *status, char *msg, size_t msglen) {
    pthread_mutex_lock(&k->lock);
    *status = k->blocked_status;
    snprintf(msg, msglen, "%s", k->blocked_message);
    pthread_mutex_unlock(&k->lock);
    return *status != 0;
}

/* Remembers (or clears) the last 403/404 for /readyz. */
static void kube_note_answer(struct kube *k, const struct kube_result *r, int answer) {
    if (answer == KUBE_ANSWER_RETRY || answer == KUBE_ANSWER_UNAUTHORIZED)
        return;
    pthread_mutex_lock(&k->lock);
    k->blocked_status = answer == KUBE_ANSWER_BLOCKED ? r->status : 0;
    buf_copy_str(k->blocked_message, sizeof(k->blocked_message),
                 answer == KUBE_ANSWER_BLOCKED ? r->message : "");
    pthread_mutex_unlock(&k->lock);
}

/* Reads the variant label and the request fingerprint of an existing object into r. */
void kube_existing_read(const char *json, size_t len, struct kube_result *r) {
    cJSON *o = cJSON_ParseWithLength(json, len);
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(o, "metadata");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(meta, "labels"), "gpuhook.dev/variant");
    const cJSON *notes = cJSON_GetObjectItemCaseSensitive(meta, "annotations");
    const cJSON *fp = cJSON_GetObjectItemCaseSensitive(notes, "gpuhook.dev/request-sha256");
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(notes, "gpuhook.dev/rule");
    r->existing = cJSON_IsObject(meta);
    snprintf(r->existing_variant, sizeof(r->existing_variant), "%s",
             cJSON_IsString(v) ? v->valuestring : "");
    snprintf(r->existing_fingerprint, sizeof(r->existing_fingerprint), "%s",
             cJSON_IsString(fp) ? fp->valuestring : "");
    buf_copy_str(r->existing_rule, sizeof(r->existing_rule),
                 cJSON_IsString(rule) ? rule->valuestring : "");
    cJSON_Delete(o);
}

/* The loop's free easy handles; only the loop thread (or kube_free after it) uses them. */
static struct kube_handle *kube_spare_get(struct kube *k) {
    struct kube_handle *kh = k->spare;
    if (!kh)
        return kube_handle_new(k);
    k->spare = kh->next;
    k->spare_len--;
    kh->next = NULL;
    return kh;
}

static void kube_spare_put(struct kube *k, struct kube_handle *kh) {
    if (!kh)
        return;
    if (k->spare_len >= KUBE_POOL_MAX) {
        kube_handle_free(kh);
        return;
    }
    kh->next = k->spare;
    k->spare = kh;
    k->spare_len++;
}

static void kube_job_finish(struct kube *k, struct kube_job *job) {
    metrics_kube_answer(kube_answer_name(job->r.answer));
    kube_spare_put(k, job->h);
    job->h = NULL;
    job->done(job->arg, &job->r);
    free(job);
}

static void kube_flight_unlink(struct kube *k, struct kube_job *job) {
    if (job->prev)
        job->prev->next = job->next;
    else
        k->flight = job->next;
    if (job->next)
        job->next->prev = job->prev;
    job->next = job->prev = NULL;
}

static void kube_job_answered(struct kube *k, struct kube_job *job, int code);

/* Starts the job's next attempt, or finishes it when too little time is left. */
static void kube_job_attempt(struct kube *k, struct kube_job *job) {
    long left = job->deadline_ms - ((long)clock_mono_ms() - job->start_ms);
    if (left < 50) {
        kube_job_finish(k, job);
        return;
    }
    if (!job->h && !(job->h = kube_spare_get(k))) {
        job->r.status = 0;
        snprintf(job->r.message, sizeof(job->r.message), "out of memory");
        kube_job_finish(k, job);
        return;
    }
    buf_init(&job->resp, job->getting ? KUBE_OBJECT_MAX : KUBE_STATUS_MAX);
    job->retry_after = -1;
    if (!job->getting)
        job->r.attempts++;
    kube_handle_prepare(k, job->h, job->getting ? job->get_url : job->url,
                        job->getting ? NULL : job->json, job->len, left, &job->resp,
                        &job->retry_after);
    curl_easy_setopt(job->h->curl, CURLOPT_PRIVATE, job);
    CURLMcode mc = curl_multi_add_handle(k->multi, job->h->curl);
    if (mc != CURLM_OK) {
        /* Counted and retried like a transfer that got no answer. */
        snprintf(job->r.message, sizeof(job->r.message), "%s", curl_multi_strerror(mc));
        metrics_kube_request(0);
        kube_job_answered(k, job, 0);
        return;
    }
    job->prev = NULL;
    job->next = k->flight;
    if (k->flight)
        k->flight->prev = job;
    k->flight = job;
}

/* Sets job->get_url to the URL of the object the job posts; false when it has no usable name. */
static bool kube_job_get_url(struct kube_job *job) {
    cJSON *o = cJSON_ParseWithLength(job->json, job->len);
    const cJSON *name =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "metadata"), "name");
    bool ok = cJSON_IsString(name) && naming_dns1123_subdomain(name->valuestring);
    if (ok) {
        size_t n = strcspn(job->url, "?");
        snprintf(job->get_url, sizeof(job->get_url), "%.*s/%s", (int)n, job->url,
                 name->valuestring);
    }
    cJSON_Delete(o);
    return ok;
}

/* Decides what follows an attempt's answer: done, a retry now, or a retry later. */
static void kube_job_answered(struct kube *k, struct kube_job *job, int code) {
    if (job->getting) {
        /* The 409 stands whatever the GET says; the object's labels come only from a 200. */
        if (code == 200)
            kube_existing_read(job->resp.data ? job->resp.data : "", job->resp.len, &job->r);
        buf_cleanup(&job->resp);
        job->getting = false;
        kube_job_finish(k, job);
        return;
    }
    job->r.status = code;
    job->r.retry_after_s = job->retry_after;
    job->r.reason[0] = '\0';
    job->r.status_json[0] = '\0';
    /* Only a failure's Status is worth parsing: a 201 carries nothing we need. */
    if (code && (code < 200 || code > 299))
        kube_status_read(&job->resp, code, &job->r);
    buf_cleanup(&job->resp);
    int answer = kube_answer_of(code, job->r.reason);
    job->r.answer = answer;
    kube_note_answer(k, &job->r, answer);
    if (answer == KUBE_ANSWER_EXISTS && kube_job_get_url(job)) {
        /* The name is taken: read the object, so the caller can answer with its variant. */
        job->getting = true;
        kube_job_attempt(k, job);
        return;
    }
    if (answer == KUBE_ANSWER_UNAUTHORIZED && !job->reauthed) {
        /* A rotated token: re-read it at once and retry once. */
        job->reauthed = 1;
        pthread_mutex_lock(&k->lock);
        kube_token_refresh(k, 1);
        pthread_mutex_unlock(&k->lock);
        kube_job_attempt(k, job);
        return;
    }
    if (answer != KUBE_ANSWER_RETRY) {
        kube_job_finish(k, job);
        return;
    }
    long wait = ids_jitter_ms(job->backoff_ms);
    if (job->retry_after >= 0)
        wait = job->retry_after * 1000L;
    job->backoff_ms = job->backoff_ms * 2 > 2000 ? 2000 : job->backoff_ms * 2;
    long now = (long)clock_mono_ms();
    if (wait >= job->deadline_ms - (now - job->start_ms)) {
        kube_job_finish(k, job);
        return;
    }
    /* The connection stays in the multi's cache; the handle can serve others meanwhile. */
    kube_spare_put(k, job->h);
    job->h = NULL;
    job->due_ms = now + wait;
    struct kube_job **at = &k->waiting;
    while (*at && (*at)->due_ms <= job->due_ms)
        at = &(*at)->next;
    job->next = *at;
    *at = job;
}

/* Takes every finished transfer off the multi handle and acts on its answer. */
static void kube_loop_reap(struct kube *k) {
    CURLMsg *m;
    int queued;
    while ((m = curl_multi_info_read(k->multi, &queued)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *h = m->easy_handle;
        CURLcode cc = m->data.result;
        void *priv = NULL;
        curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
        struct kube_job *job = priv;
        curl_multi_remove_handle(k->multi, h);
        kube_flight_unlink(k, job);
        char scratch[128];
        /* A failed GET keeps the 409's message. */
        int code = job->getting
                       ? kube_exchange_status(h, cc, scratch, sizeof(scratch))
                       : kube_exchange_status(h, cc, job->r.message, sizeof(job->r.message));
        kube_job_answered(k, job, code);
    }
}

static void kube_job_shut(struct kube *k, struct kube_job *job) {
    job->r.status = 0;
    snprintf(job->r.message, sizeof(job->r.message), KUBE_SHUTTING_DOWN);
    kube_job_finish(k, job);
}

/* Fails every job of a list (incoming or waiting) with the shutdown message. */
static void kube_jobs_shut(struct kube *k, struct kube_job *list) {
    while (list) {
        struct kube_job *job = list;
        list = list->next;
        kube_job_shut(k, job);
    }
}

/* Takes the whole incoming list, and says whether the client is stopping. */
static struct kube_job *kube_take_incoming(struct kube *k, bool *stopping) {
    pthread_mutex_lock(&k->jobs_lock);
    struct kube_job *in = k->incoming;
    k->incoming = k->incoming_tail = NULL;
    *stopping = k->stopping;
    pthread_mutex_unlock(&k->jobs_lock);
    return in;
}

static void *kube_loop_main(void *arg) {
    struct kube *k = arg;
    for (;;) {
        bool stopping;
        struct kube_job *in = kube_take_incoming(k, &stopping);
        if (stopping) {
            kube_jobs_shut(k, in);
            break;
        }
        while (in) {
            struct kube_job *job = in;
            in = in->next;
            job->next = NULL;
            kube_job_attempt(k, job);
        }
        long now = (long)clock_mono_ms();
        while (k->waiting && k->waiting->due_ms <= now) {
            struct kube_job *job = k->waiting;
            k->waiting = job->next;
            job->next = NULL;
            kube_job_attempt(k, job);
        }
        int running = 0;
        curl_multi_perform(k->multi, &running);
        kube_loop_reap(k);

        /*
         * curl_multi_poll shortens this to curl's own next timeout; the nearest retry
         * bounds it from our side, and curl_multi_wakeup ends it when a job comes in.
         */
        long timeout = KUBE_IDLE_POLL_MS;
        if (k->waiting) {
            long due = k->waiting->due_ms - (long)clock_mono_ms();
            timeout = due < 0 ? 0 : due < timeout ? due : timeout;
        }
        curl_multi_poll(k->multi, NULL, 0, (int)timeout, NULL);
    }
    return NULL;
}

static int kube_loop_start(struct kube *k) {
    sigset_t all, old;

    k->multi = curl_multi_init();
    if (!k->multi)
        return GHE_NOMEM;
    /*
     * A burst of creates queues for a bounded set of keep-alive connections instead of
     * opening one each, and those connections stay cached between bursts.
     */
    curl_multi_setopt(k->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)KUBE_CONNS_MAX);
    curl_multi_setopt(k->multi, CURLMOPT_MAXCONNECTS, (long)KUBE_CONNS_MAX);
    /* Signals belong to main; the loop thread must never take one. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&k->thread, NULL, kube_loop_main, k);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        return GHE_NOMEM;
    k->loop_running = true;
    return 0;
}

/* Ends the loop thread, then fails every job it left behind. */
static void kube_loop_stop(struct kube *k) {
    bool stopping;

    pthread_mutex_lock(&k->jobs_lock);
    k->stopping = true;
    pthread_mutex_unlock(&k->jobs_lock);
    if (k->loop_running) {
        curl_multi_wakeup(k->multi);
        pthread_join(k->thread, NULL);
        k->loop_running = false;
    }
    kube_jobs_shut(k, kube_take_incoming(k, &stopping));
    kube_jobs_shut(k, k->waiting);
    k->waiting = NULL;
    while (k->flight) {
        struct kube_job *job = k->flight;
        curl_multi_remove_handle(k->multi, job->h->curl);
        kube_flight_unlink(k, job);
        buf_cleanup(&job->resp);
        kube_job_shut(k, job);
    }
    while (k->spare) {
        struct kube_handle *kh = k->spare;
        k->spare = kh->next;
        kube_handle_free(kh);
    }
    k->spare_len = 0;
    if (k->multi)
        curl_multi_cleanup(k->multi);
    k->multi = NULL;
}

int kube_create_async(struct kube *k, const char *ns, const char *json, size_t len,
                      long deadline_ms, kube_done_fn done, void *arg) {
    struct kube_job *job = calloc(1, sizeof(*job));
    if (!job) {
        struct kube_result r = {.status = 0, .answer = KUBE_ANSWER_RETRY, .retry_after_s = -1};
        snprintf(r.message, sizeof(r.message), "out of memory");
        done(arg, &r);
        return GHE_NOMEM;
    }
    /* The version the object names: templates render apiVersion as the first member. */
    static const char beta[] = "{\"apiVersion\":\"tekton.dev/v1beta1\"";
    const char *version =
        len >= sizeof(beta) - 1 && memcmp(json, beta, sizeof(beta) - 1) == 0 ? "v1beta1" : "v1";
    snprintf(job->url, sizeof(job->url),
             "%s/apis/tekton.dev/%s/namespaces/%s/pipelineruns?fieldValidation=Strict", k->base_url,
             version, ns);
    job->json = json;
    job->len = len;
    job->start_ms = (long)clock_mono_ms();
    job->deadline_ms = deadline_ms;
    job->backoff_ms = 100;
    job->r.answer = KUBE_ANSWER_RETRY;
    job->r.retry_after_s = -1;
    job->done = done;
    job->arg = arg;

    pthread_mutex_lock(&k->jobs_lock);
    if (k->stopping) {
        pthread_mutex_unlock(&k->jobs_lock);
        snprintf(job->r.message, sizeof(job->r.message), KUBE_SHUTTING_DOWN);
        done(arg, &job->r);
        free(job);
        return GHE_UNAVAILABLE;
    }
    bool was_empty = k->incoming == NULL;
    if (k->incoming_tail)
        k->incoming_tail->next = job;
    else
        k->incoming = job;
    k->incoming_tail = job;
    /*
     * Only the first job of a batch wakes the loop: it has not taken the list yet, so
     * it sees the rest too. Waking under the lock means kube_free, which sets stopping
     * under it, never tears the multi handle down beneath a wakeup.
     */
    if (was_empty)
        curl_multi_wakeup(k->multi);
    pthread_mutex_unlock(&k->jobs_lock);
    return 0;
}

struct kube_waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    struct kube_result *r;
};

static void kube_waiter_done(void *arg, const struct kube_result *r) {
    struct kube_waiter *w = arg;
    pthread_mutex_lock(&w->lock);
    *w->r = *r;
    w->done = true;
    /* Signalled under the lock: the waiter frees w as soon as it sees done. */
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

int kube_create(struct kube *k, const char *ns, const char *json, size_t len, long deadline_ms,
                struct kube_result *r) {
    struct kube_waiter w = {.done = false, .r = r};

    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&w.lock, NULL);
    pthread_cond_init(&w.cond, NULL);
    int rc = kube_create_async(k, ns, json, len, deadline_ms, kube_waiter_done, &w);
    pthread_mutex_lock(&w.lock);
    while (!w.done)
        pthread_cond_wait(&w.cond, &w.lock);
    pthread_mutex_unlock(&w.lock);
    pthread_cond_destroy(&w.cond);
    pthread_mutex_destroy(&w.lock);
    return rc;
}

int kube_probe(struct kube *k, char *detail, size_t detail_len) {
    struct buf resp;
    long retry_after = -1;
    char url[1024];

    /*
     * Probes run on their callers' threads, rarely (readiness is cached), so one
     * spare handle is kept; a probe that finds it taken makes its own.
     */
    pthread_mutex_lock(&k->probe_lock);
    struct kube_handle *h = k->probe;
    k->probe = NULL;
    pthread_mutex_unlock(&k->probe_lock);
    if (!h && !(h = kube_handle_new(k)))
        return GHE_NOMEM;
    snprintf(url, sizeof(url), "%s/readyz", k->base_url);
    buf_init(&resp, 64 * 1024);
    kube_handle_prepare(k, h, url, NULL, 0, 2000, &resp, &retry_after);
    int code = kube_exchange_status(h->curl, curl_easy_perform(h->curl), detail, detail_len);
    if (code && code != 200)
        snprintf(detail, detail_len, "GET /readyz answered %d", code);
    buf_cleanup(&resp);
    pthread_mutex_lock(&k->probe_lock);
    if (!k->probe) {
        k->probe = h;
        h = NULL;
    }
    pthread_mutex_unlock(&k->probe_lock);
    kube_handle_free(h);
    return code == 200 ? 0 : GHE_UNAVAILABLE;
}

const char *kube_base_url(const struct kube *k) { return k->base_url; }

int kube_conn_apply(struct kube *k, void *h, struct curl_slist **headers, bool reread_token) {
    char auth[8192];
    struct curl_slist *l = *headers;

    kube_conn_options(k, h);

    pthread_mutex_lock(&k->lock);
    kube_token_refresh(k, reread_token);
    if (k->token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", k->token);
        l = curl_slist_append(l, auth);
        explicit_bzero(auth, sizeof(auth));
    }
    pthread_mutex_unlock(&k->lock);
    if (k->token && !l)
        return GHE_NOMEM;
    *headers = l;
    return 0;
}
