/*
 * The shared watcher's thread: a curl multi handle that carries at most one list or
 * watch (the reflector), at most one Lease request, and any number of patches, polled
 * with a short timeout so that stopping is prompt. The decisions are kwatch.c's and
 * lease.c's; this file only moves their bytes.
 */
#include "gpuhook/watcher.h"
#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/error.h"
#include "gpuhook/ids.h"
#include "gpuhook/kwatch.h"
#include "gpuhook/lease.h"
#include "gpuhook/logger.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#define WATCHER_POLL_MS 100
#define WATCHER_LIST_MAX (64u * 1024 * 1024) /* one whole List, unpaged */
#define WATCHER_ANSWER_MAX (1024u * 1024)    /* a Lease, a patched run or a Status */
#define WATCHER_LIST_TIMEOUT_MS 60000L
#define WATCHER_PATCH_TIMEOUT_MS 10000L
#define WATCHER_RELEASE_TIMEOUT_MS 2000L
#define WATCHER_CONNECT_TIMEOUT_MS 5000L
#define WATCHER_NAME_MAX 253
#define WATCHER_URL_MAX 2048

enum xfer_kind { XFER_LIST, XFER_WATCH, XFER_LEASE, XFER_PATCH };

struct wpatch {
    struct wpatch *next;
    char name[WATCHER_NAME_MAX + 1];
    char *body;
    size_t len;
    bool reauthed; /* retried once after a 401 */
    watcher_patch_fn done;
    void *arg;
};

/* One transfer on the multi handle. */
struct xfer {
    struct xfer *next; /* patches in flight */
    enum xfer_kind kind;
    CURL *h;
    struct curl_slist *hdrs;
    struct buf resp;
    char *body;        /* the request body, owned */
    long status;       /* watch: the status handed to kwatch, -1 before the first byte */
    bool feed_failed;  /* watch: kwatch abandoned the stream */
    enum lease_op lop; /* lease: what was sent */
    struct wpatch *patch;
    struct watcher *w;
};

struct watcher_sub {
    watcher_event_fn on_event;
    watcher_leader_fn on_leadership;
    void *arg;
};

struct watcher {
    struct kube *k;
    char ns[LEASE_NAME_MAX];
    char *selector_q; /* the label selector, URL-escaped */
    char identity[WATCHER_IDENTITY_MAX];
    long watch_timeout_s;
    bool use_lease;
    struct kwatch kw;
    struct lease_elector le;
    struct watcher_sub subs[WATCHER_SUBSCRIBERS_MAX];
    size_t nsubs;

    pthread_mutex_t lock; /* guards incoming, stopping, started */
    struct wpatch *incoming, *incoming_tail;
    bool stopping, started;
    pthread_t thread;
    CURLM *multi;

    _Atomic long long leader_until; /* mono ms; 0 when not leading */
    _Atomic unsigned long long n_lists, n_watches, n_events, n_relists_410, n_transitions;

    /* Owned by the thread. */
    struct xfer *reflector;
    long long reflector_due;
    struct xfer *lease_x;
    long long lease_due;
    struct xfer *patches;
    bool reported_leader;
    bool token_stale; /* a 401 came: the next request re-reads the token file */
};

/* One log line; detail holds no secret (statuses, resourceVersions, names). */
__attribute__((format(printf, 2, 3))) static void wlog(int level, const char *fmt, ...) {
    char m[512];
    va_list ap;
    if (!logger_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(m, sizeof(m), fmt, ap);
    va_end(ap);
    logger_write(level, "watcher", "detail", m, (const char *)NULL);
}

const char *watcher_event_name(enum watcher_event ev) {
    switch (ev) {
    case WATCHER_ADDED:
        return "ADDED";
    case WATCHER_MODIFIED:
        return "MODIFIED";
    case WATCHER_DELETED:
        return "DELETED";
    case WATCHER_RESYNCED:
        return "RESYNCED";
    }
    return "?";
}

static void emit(struct watcher *w, enum watcher_event ev, const cJSON *obj) {
    for (size_t i = 0; i < w->nsubs; i++)
        if (w->subs[i].on_event)
            w->subs[i].on_event(w->subs[i].arg, ev, obj);
}

static int kw_cb(void *ud, enum kwatch_event ev, const cJSON *obj) {
    struct watcher *w = ud;
    atomic_fetch_add(&w->n_events, 1);
    emit(w,
         ev == KWATCH_ADDED      ? WATCHER_ADDED
         : ev == KWATCH_MODIFIED ? WATCHER_MODIFIED
                                 : WATCHER_DELETED,
         obj);
    return 0;
}

static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > WATCHER_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '.'))
            return false;
    return true;
}

static void make_identity(char out[WATCHER_IDENTITY_MAX]) {
    char host[64] = "";
    const char *pod = getenv("POD_NAME");
    unsigned char r[4] = {0};
    if (!pod || !*pod) {
        if (gethostname(host, sizeof(host) - 1) != 0 || !*host)
            snprintf(host, sizeof(host), "gpuhook");
        pod = host;
    }
    ids_random_bytes(r, sizeof(r));
    snprintf(out, WATCHER_IDENTITY_MAX, "%.100s-%02x%02x%02x%02x", pod, r[0], r[1], r[2], r[3]);
}

int watcher_new(struct kube *k, const struct watcher_config *cfg, struct watcher **out, char *err,
                size_t err_size) {
    *out = NULL;
    const char *ns = cfg->namespace_ ? cfg->namespace_ : kube_namespace(k);
    if (!ns || !name_ok(ns) || strlen(ns) >= LEASE_NAME_MAX) {
        snprintf(err, err_size, "watcher: namespace: not a DNS label");
        return GHE_INVAL;
    }
    if (cfg->watch_timeout_s < 0 || cfg->watch_timeout_s > 3600) {
        snprintf(err, err_size, "watcher: watch timeout: must be 1 to 3600 seconds");
        return GHE_INVAL;
    }
    struct watcher *w = calloc(1, sizeof(*w));
    if (!w)
        return GHE_NOMEM;
    w->k = k;
    snprintf(w->ns, sizeof(w->ns), "%s", ns);
    w->watch_timeout_s =
        cfg->watch_timeout_s ? cfg->watch_timeout_s : WATCHER_WATCH_TIMEOUT_S_DEFAULT;
    if (cfg->identity && *cfg->identity)
        snprintf(w->identity, sizeof(w->identity), "%s", cfg->identity);
    else
        make_identity(w->identity);
    pthread_mutex_init(&w->lock, NULL);
    kwatch_init(&w->kw, kw_cb, w, 0, 0);
    const char *sel = cfg->label_selector ? cfg->label_selector : WATCHER_SELECTOR_DEFAULT;
    w->selector_q = curl_easy_escape(NULL, sel, 0);
    w->multi = curl_multi_init();
    if (!w->selector_q || !w->multi) {
        watcher_free(w);
        return GHE_NOMEM;
    }
    if (cfg->lease_name) {
        long d = cfg->lease_duration_ms ? cfg->lease_duration_ms : 15000;
        struct lease_config lc = {
            .namespace_ = w->ns,
            .name = cfg->lease_name,
            .identity = w->identity,
            .lease_duration_ms = d,
            .renew_deadline_ms = cfg->renew_deadline_ms ? cfg->renew_deadline_ms : d * 2 / 3,
            .retry_period_ms = cfg->retry_period_ms ? cfg->retry_period_ms : d * 2 / 15,
        };
        if (!name_ok(cfg->lease_name)) {
            snprintf(err, err_size, "watcher: lease name: not a DNS subdomain");
            watcher_free(w);
            return GHE_INVAL;
        }
        int rc = lease_init(&w->le, &lc, err, err_size);
        if (rc != 0) {
            watcher_free(w);
            return rc;
        }
        w->use_lease = true;
    }
    *out = w;
    return 0;
}

int watcher_subscribe(struct watcher *w, watcher_event_fn on_event, watcher_leader_fn on_leadership,
                      void *arg) {
    pthread_mutex_lock(&w->lock);
    bool ok = !w->started && w->nsubs < WATCHER_SUBSCRIBERS_MAX;
    if (ok)
        w->subs[w->nsubs++] = (struct watcher_sub){on_event, on_leadership, arg};
    pthread_mutex_unlock(&w->lock);
    return ok ? 0 : GHE_INVAL;
}

bool watcher_is_leader(const struct watcher *w) {
    long long until = atomic_load(&((struct watcher *)w)->leader_until);
    return until > 0 && clock_mono_ms() < until;
}

const char *watcher_identity(const struct watcher *w) { return w->identity; }

struct kube *watcher_kube(const struct watcher *w) {
    return w ? w->k : NULL;
}

void watcher_stats(const struct watcher *w, struct watcher_stats *out) {
    struct watcher *m = (struct watcher *)w;
    out->lists = atomic_load(&m->n_lists);
    out->watches = atomic_load(&m->n_watches);
    out->events = atomic_load(&m->n_events);
    out->relists_410 = atomic_load(&m->n_relists_410);
    out->transitions = atomic_load(&m->n_transitions);
}

/* ---- transfers ---- */

static void hdrs_free(struct curl_slist *l) {
    for (struct curl_slist *i = l; i; i = i->next)
        explicit_bzero(i->data, strlen(i->data));
    curl_slist_free_all(l);
}

static void xfer_free(struct xfer *x) {
    if (!x)
        return;
    if (x->h) {
        curl_multi_remove_handle(x->w->multi, x->h);
        curl_easy_cleanup(x->h);
    }
    hdrs_free(x->hdrs);
    buf_cleanup(&x->resp);
    free(x->body);
    free(x);
}

static size_t xfer_keep(char *p, size_t size, size_t nmemb, void *ud) {
    struct xfer *x = ud;
    size_t n = size * nmemb;
    if (x->resp.len + n > x->resp.max)
        return 0; /* too big: abort, the answer is unusable */
    return buf_append(&x->resp, p, n) == 0 ? n : 0;
}

static size_t xfer_watch_write(char *p, size_t size, size_t nmemb, void *ud) {
    struct xfer *x = ud;
    size_t n = size * nmemb;
    if (x->status < 0) {
        long code = 0;
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
        x->status = code;
        if (code == 401)
            x->w->token_stale = true;
        kwatch_watch_status(&x->w->kw, (int)code);
    }
    if (x->status != 200)
        return xfer_keep(p, size, nmemb, ud);
    if (kwatch_feed(&x->w->kw, p, n) != 0) {
        x->feed_failed = true;
        return 0; /* abandon the stream: kwatch says what comes next */
    }
    return n;
}

/*
 * A new transfer to path (below the base URL) with the client's connection settings.
 * method is "GET", "POST", "PUT" or "PATCH"; body (taken over) goes with the last three.
 */
static struct xfer *xfer_new(struct watcher *w, enum xfer_kind kind, const char *method,
                             const char *path, char *body, const char *content_type,
                             long timeout_ms, size_t resp_max) {
    char url[WATCHER_URL_MAX];
    struct xfer *x = calloc(1, sizeof(*x));
    if (!x) {
        free(body);
        return NULL;
    }
    x->w = w;
    x->kind = kind;
    x->body = body;
    x->status = -1;
    buf_init(&x->resp, resp_max);
    if (!(x->h = curl_easy_init()) || kube_conn_apply(w->k, x->h, &x->hdrs, w->token_stale) != 0)
        goto fail;
    struct curl_slist *l = curl_slist_append(x->hdrs, "Accept: application/json");
    if (!l)
        goto fail;
    x->hdrs = l;
    if (content_type) {
        char ct[96];
        snprintf(ct, sizeof(ct), "Content-Type: %s", content_type);
        if (!(l = curl_slist_append(x->hdrs, ct)))
            goto fail;
        x->hdrs = l;
    }
    if (snprintf(url, sizeof(url), "%s%s", kube_base_url(w->k), path) >= (int)sizeof(url))
        goto fail;
    curl_easy_setopt(x->h, CURLOPT_URL, url);
    curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdrs);
    curl_easy_setopt(x->h, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms < WATCHER_CONNECT_TIMEOUT_MS ? timeout_ms
                                                             : WATCHER_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(x->h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION,
                     kind == XFER_WATCH ? xfer_watch_write : xfer_keep);
    curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
    if (body) {
        curl_easy_setopt(x->h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(x->h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
        curl_easy_setopt(x->h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (curl_multi_add_handle(w->multi, x->h) != CURLM_OK)
        goto fail;
    w->token_stale = false;
    return x;
fail:
    if (x->h) {
        curl_easy_cleanup(x->h);
        x->h = NULL;
    }
    xfer_free(x);
    return NULL;
}

static long xfer_status(struct xfer *x, CURLcode cc) {
    long code = 0;
    if (cc != CURLE_OK && x->kind != XFER_WATCH)
        return 0; /* no usable answer */
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    if (code == 401)
        x->w->token_stale = true;
    return code;
}

/* ---- the reflector ---- */

static void reflector_start(struct watcher *w) {
    char path[1024];
    struct xfer *x;
    if (w->kw.next == KWATCH_NEXT_LIST) {
        snprintf(path, sizeof(path),
                 "/apis/tekton.dev/v1/namespaces/%s/pipelineruns?labelSelector=%s", w->ns,
                 w->selector_q);
        x = xfer_new(w, XFER_LIST, "GET", path, NULL, NULL, WATCHER_LIST_TIMEOUT_MS,
                     WATCHER_LIST_MAX);
    } else {
        char *rv = curl_easy_escape(NULL, kwatch_resource_version(&w->kw), 0);
        snprintf(path, sizeof(path),
                 "/apis/tekton.dev/v1/namespaces/%s/pipelineruns?labelSelector=%s&watch=1"
                 "&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%ld",
                 w->ns, w->selector_q, rv ? rv : "", w->watch_timeout_s);
        curl_free(rv);
        /* The server ends the watch at timeoutSeconds; ours is a backstop. */
        x = xfer_new(w, XFER_WATCH, "GET", path, NULL, NULL, (w->watch_timeout_s + 30) * 1000L,
                     64 * 1024);
        if (x)
            atomic_fetch_add(&w->n_watches, 1);
    }
    if (!x) {
        w->reflector_due = clock_mono_ms() + KWATCH_BACKOFF_INITIAL_MS;
        return;
    }
    w->reflector = x;
}

static void reflector_done(struct watcher *w, struct xfer *x, CURLcode cc) {
    if (x->kind == XFER_LIST) {
        long code = xfer_status(x, cc);
        if (code == 200 &&
            kwatch_list(&w->kw, x->resp.data ? x->resp.data : "", x->resp.len) == 0) {
            atomic_fetch_add(&w->n_lists, 1);
            emit(w, WATCHER_RESYNCED, NULL);
        } else {
            if (code == 200)
                wlog(LOGGER_WARN, "%s", w->kw.err);
            else
                wlog(LOGGER_WARN, "list: %s %ld",
                     code ? "HTTP" : "no answer:", code ? code : (long)cc);
            kwatch_list_failed(&w->kw, (int)code);
        }
    } else {
        enum kwatch_next next;
        if (x->status < 0) { /* no body came: the status alone */
            long code = xfer_status(x, cc);
            next = kwatch_watch_status(&w->kw, (int)code);
            if (next == KWATCH_NEXT_READ)
                next = kwatch_end(&w->kw, cc == CURLE_OK);
            else if (code == 410)
                atomic_fetch_add(&w->n_relists_410, 1);
        } else if (x->status == 200) {
            next = kwatch_end(&w->kw, cc == CURLE_OK && !x->feed_failed);
            if (x->feed_failed && next == KWATCH_NEXT_LIST)
                atomic_fetch_add(&w->n_relists_410, 1);
        } else {
            next = w->kw.next; /* kwatch_watch_status decided on the first byte */
            if (x->status == 410)
                atomic_fetch_add(&w->n_relists_410, 1);
        }
        if (next != KWATCH_NEXT_WATCH || kwatch_backoff_ms(&w->kw) > 0)
            wlog(LOGGER_INFO, "%s", w->kw.err[0] ? w->kw.err : "watch ended");
    }
    w->reflector_due = clock_mono_ms() + kwatch_backoff_ms(&w->kw);
}

/* ---- the Lease ---- */

static void watcher_lease_path(struct watcher *w, enum lease_op op, char *out, size_t n) {
    if (op == LEASE_OP_CREATE)
        snprintf(out, n, "/apis/coordination.k8s.io/v1/namespaces/%s/leases", w->ns);
    else
        snprintf(out, n, "/apis/coordination.k8s.io/v1/namespaces/%s/leases/%s", w->ns, w->le.name);
}

static long watcher_lease_timeout_ms(const struct watcher *w) {
    long t = w->le.deadline_ms / 2;
    return t < 500 ? 500 : t;
}

/* Carries out what the elector asked for; takes a's body. */
static void watcher_lease_apply(struct watcher *w, struct lease_action *a) {
    char path[1024];
    if (a->op == LEASE_OP_WAIT) {
        w->lease_due = a->at_mono_ms;
        lease_action_cleanup(a);
        return;
    }
    watcher_lease_path(w, a->op, path, sizeof(path));
    const char *method = a->op == LEASE_OP_GET ? "GET" : a->op == LEASE_OP_CREATE ? "POST" : "PUT";
    char *body = a->body;
    a->body = NULL;
    struct xfer *x = xfer_new(w, XFER_LEASE, method, path, body, body ? "application/json" : NULL,
                              watcher_lease_timeout_ms(w), WATCHER_ANSWER_MAX);
    if (!x) {
        /* Treated as a request that got no answer: the elector retries. */
        struct lease_action b = {0};
        long long now = clock_mono_ms();
        if (a->op == LEASE_OP_GET)
            lease_on_get(&w->le, 0, "", 0, now, clock_wall_ms(), &b);
        else
            lease_on_write(&w->le, 0, "", 0, now, clock_wall_ms(), &b);
        w->lease_due = b.op == LEASE_OP_WAIT ? b.at_mono_ms : now + w->le.retry_ms;
        lease_action_cleanup(&b);
        lease_action_cleanup(a);
        return;
    }
    x->lop = a->op;
    w->lease_x = x;
    lease_action_cleanup(a);
}

static void watcher_lease_done(struct watcher *w, struct xfer *x, CURLcode cc) {
    struct lease_action a = {0};
    long code = xfer_status(x, cc);
    const char *body = x->resp.data ? x->resp.data : "";
    long long now = clock_mono_ms(), wall = clock_wall_ms();
    int rc = x->lop == LEASE_OP_GET
                 ? lease_on_get(&w->le, (int)code, body, x->resp.len, now, wall, &a)
                 : lease_on_write(&w->le, (int)code, body, x->resp.len, now, wall, &a);
    if (code != 200 && code != 201 && !(x->lop == LEASE_OP_GET && code == 404))
        wlog(LOGGER_INFO, "lease %s answered %ld", x->lop == LEASE_OP_GET ? "read" : "write", code);
    if (rc != 0) {
        lease_action_cleanup(&a);
        w->lease_due = now + w->le.retry_ms;
        return;
    }
    watcher_lease_apply(w, &a);
}

static void watcher_lease_step(struct watcher *w, long long now) {
    struct lease_action a = {0};
    if (lease_next(&w->le, now, clock_wall_ms(), &a) != 0) {
        lease_action_cleanup(&a);
        w->lease_due = now + w->le.retry_ms;
        return;
    }
    watcher_lease_apply(w, &a);
}

static void leadership_check(struct watcher *w, long long now) {
    bool leading = w->use_lease && lease_is_leader(&w->le, now);
    atomic_store(&w->leader_until, leading ? w->le.last_ok_mono_ms + w->le.deadline_ms : 0);
    if (leading == w->reported_leader)
        return;
    w->reported_leader = leading;
    atomic_fetch_add(&w->n_transitions, 1);
    wlog(LOGGER_INFO, "%s the lease %s as %s", leading ? "holds" : "no longer holds", w->le.name,
         w->identity);
    for (size_t i = 0; i < w->nsubs; i++)
        if (w->subs[i].on_leadership)
            w->subs[i].on_leadership(w->subs[i].arg, leading);
}

/* One plain blocking transfer on the thread's way out, bounded; returns the status, 0 for none. */
static long watcher_lease_blocking(struct watcher *w, const char *method, char *body,
                                   struct buf *answer) {
    char path[1024];
    watcher_lease_path(w, LEASE_OP_UPDATE, path, sizeof(path));
    struct xfer *x = xfer_new(w, XFER_LEASE, method, path, body, body ? "application/json" : NULL,
                              WATCHER_RELEASE_TIMEOUT_MS, WATCHER_ANSWER_MAX);
    if (!x)
        return 0;
    curl_multi_remove_handle(w->multi, x->h);
    CURLcode cc = curl_easy_perform(x->h);
    long code = xfer_status(x, cc);
    if (answer && x->resp.data)
        buf_append(answer, x->resp.data, x->resp.len);
    curl_easy_cleanup(x->h);
    x->h = NULL;
    xfer_free(x);
    return code;
}

/*
 * The release PUT. A 409 means the Lease changed since it was last seen: a
 * renewal in flight at stop may have landed after all. The Lease is read once
 * more, and when this replica still holds it, that version is released; else
 * it is another's, and nothing is written.
 */
static void watcher_lease_release(struct watcher *w) {
    for (int attempt = 0; attempt < 2; attempt++) {
        struct lease_action a = {0};
        if (lease_release(&w->le, clock_mono_ms(), clock_wall_ms(), &a) != 0 || !a.body) {
            lease_action_cleanup(&a);
            return;
        }
        char *body = a.body;
        a.body = NULL;
        lease_action_cleanup(&a);
        long code = watcher_lease_blocking(w, "PUT", body, NULL);
        wlog(LOGGER_INFO, "released the lease %s: %ld", w->le.name, code);
        if (code != 409)
            return;
        struct buf fresh;
        buf_init(&fresh, WATCHER_ANSWER_MAX);
        cJSON *obj = watcher_lease_blocking(w, "GET", NULL, &fresh) == 200 && fresh.data
                         ? cJSON_ParseWithLength(fresh.data, fresh.len)
                         : NULL;
        buf_cleanup(&fresh);
        if (!obj)
            return;
        cJSON_Delete(w->le.observed);
        w->le.observed = obj; /* lease_release releases it only if it names this replica */
    }
}

/* ---- patches ---- */

static void patch_answer(struct wpatch *p, int status, const char *body, size_t len) {
    if (p->done)
        p->done(p->arg, status, body ? body : "", len);
    free(p->body);
    free(p);
}

int watcher_patch(struct watcher *w, const char *name, const char *patch, size_t len,
                  watcher_patch_fn done, void *arg) {
    struct wpatch *p = NULL;
    int rc = GHE_INVAL;
    if (!name || !name_ok(name) || !patch)
        goto fail;
    rc = GHE_NOMEM;
    if (!(p = calloc(1, sizeof(*p))) || !(p->body = malloc(len + 1)))
        goto fail;
    memcpy(p->body, patch, len);
    p->body[len] = '\0';
    p->len = len;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->done = done;
    p->arg = arg;
    pthread_mutex_lock(&w->lock);
    bool open = w->started && !w->stopping;
    if (open) {
        if (w->incoming_tail)
            w->incoming_tail->next = p;
        else
            w->incoming = p;
        w->incoming_tail = p;
    }
    pthread_mutex_unlock(&w->lock);
    if (!open) {
        rc = GHE_UNAVAILABLE;
        goto fail;
    }
    curl_multi_wakeup(w->multi);
    return 0;
fail:
    if (p)
        free(p->body);
    free(p);
    if (done)
        done(arg, 0, "", 0);
    return rc;
}

static void patch_start(struct watcher *w, struct wpatch *p) {
    char path[1024];
    snprintf(path, sizeof(path), "/apis/tekton.dev/v1/namespaces/%s/pipelineruns/%s", w->ns,
             p->name);
    char *body = strdup(p->body);
    if (!body) {
        patch_answer(p, 0, "", 0);
        return;
    }
    struct xfer *x = xfer_new(w, XFER_PATCH, "PATCH", path, body, "application/merge-patch+json",
                              WATCHER_PATCH_TIMEOUT_MS, WATCHER_ANSWER_MAX);
    if (!x) {
        patch_answer(p, 0, "", 0);
        return;
    }
    x->patch = p;
    x->next = w->patches;
    w->patches = x;
}

static void patch_done(struct watcher *w, struct xfer *x, CURLcode cc) {
    for (struct xfer **pp = &w->patches; *pp; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            break;
        }
    long code = xfer_status(x, cc);
    struct wpatch *p = x->patch;
    x->patch = NULL;
    if (code == 401 && !p->reauthed) {
        /* As the create path does: re-read the token at once and try once more. */
        p->reauthed = true;
        patch_start(w, p);
        return;
    }
    patch_answer(p, (int)code, x->resp.data, x->resp.len);
}

/* ---- the loop ---- */

static void reap(struct watcher *w) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(w->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct xfer *x = NULL;
        CURLcode cc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
        if (x->kind == XFER_LIST || x->kind == XFER_WATCH) {
            w->reflector = NULL;
            reflector_done(w, x, cc);
        } else if (x->kind == XFER_LEASE) {
            w->lease_x = NULL;
            watcher_lease_done(w, x, cc);
        } else {
            patch_done(w, x, cc);
        }
        xfer_free(x);
    }
}

static long long min_ll(long long a, long long b) { return a < b ? a : b; }

static void *watcher_main(void *arg) {
    struct watcher *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        bool stopping = w->stopping;
        struct wpatch *in = w->incoming;
        w->incoming = w->incoming_tail = NULL;
        pthread_mutex_unlock(&w->lock);
        if (stopping) {
            /* Queued patches are answered after the loop, with the rest. */
            pthread_mutex_lock(&w->lock);
            w->incoming = in;
            pthread_mutex_unlock(&w->lock);
            break;
        }
        while (in) {
            struct wpatch *next = in->next;
            in->next = NULL;
            patch_start(w, in);
            in = next;
        }
        long long now = clock_mono_ms();
        if (!w->reflector && now >= w->reflector_due)
            reflector_start(w);
        if (w->use_lease && !w->lease_x && now >= w->lease_due)
            watcher_lease_step(w, now);
        int running = 0;
        curl_multi_perform(w->multi, &running);
        reap(w);
        now = clock_mono_ms();
        leadership_check(w, now);

        long long wake = now + WATCHER_POLL_MS;
        if (!w->reflector)
            wake = min_ll(wake, w->reflector_due);
        if (w->use_lease && !w->lease_x)
            wake = min_ll(wake, w->lease_due);
        long long until = atomic_load(&w->leader_until);
        if (until > 0)
            wake = min_ll(wake, until);
        int timeout = wake > now ? (int)(wake - now) : 0;
        curl_multi_poll(w->multi, NULL, 0, timeout, NULL);
    }

    /* Stop: drop the watch, give up the Lease, answer every patch. */
    xfer_free(w->reflector);
    w->reflector = NULL;
    if (w->use_lease) {
        if (w->lease_x) {
            /* A write in flight has an unknown outcome: the elector treats it as failed. */
            struct xfer *x = w->lease_x;
            struct lease_action a = {0};
            long long now = clock_mono_ms();
            w->lease_x = NULL;
            if (x->lop == LEASE_OP_GET)
                lease_on_get(&w->le, 0, "", 0, now, clock_wall_ms(), &a);
            else
                lease_on_write(&w->le, 0, "", 0, now, clock_wall_ms(), &a);
            lease_action_cleanup(&a);
            xfer_free(x);
        }
        watcher_lease_release(w);
        leadership_check(w, clock_mono_ms());
    }
    while (w->patches) {
        struct xfer *x = w->patches;
        w->patches = x->next;
        patch_answer(x->patch, 0, "", 0);
        x->patch = NULL;
        xfer_free(x);
    }
    pthread_mutex_lock(&w->lock);
    struct wpatch *in = w->incoming;
    w->incoming = w->incoming_tail = NULL;
    pthread_mutex_unlock(&w->lock);
    while (in) {
        struct wpatch *next = in->next;
        patch_answer(in, 0, "", 0);
        in = next;
    }
    return NULL;
}

int watcher_start(struct watcher *w) {
    pthread_mutex_lock(&w->lock);
    if (w->started) {
        pthread_mutex_unlock(&w->lock);
        return GHE_INVAL;
    }
    w->started = true;
    pthread_mutex_unlock(&w->lock);
    if (pthread_create(&w->thread, NULL, watcher_main, w) != 0) {
        pthread_mutex_lock(&w->lock);
        w->started = false;
        pthread_mutex_unlock(&w->lock);
        return GHE_NOMEM;
    }
    return 0;
}

void watcher_free(struct watcher *w) {
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    bool started = w->started;
    w->stopping = true;
    pthread_mutex_unlock(&w->lock);
    if (started) {
        curl_multi_wakeup(w->multi);
        pthread_join(w->thread, NULL);
    }
    if (w->multi)
        curl_multi_cleanup(w->multi);
    curl_free(w->selector_q);
    kwatch_cleanup(&w->kw);
    if (w->use_lease)
        lease_cleanup(&w->le);
    pthread_mutex_destroy(&w->lock);
    free(w);
}
