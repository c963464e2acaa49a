/*
 * The cluster view's thread and its three readers (the pipeline's fit, GET
 * /gpu, /metrics). The model (gpuview.c) has no lock: cv.lock serializes it.
 * Each round lists the EndpointSlices (and the Nodes and Pods when allowed), then polls
 * every agent at once with gpupoll, outside the lock, and applies the answers.
 */
#include "gpuhook/clusterview.h"
#include "gpuhook/clock.h"
#include "gpuhook/config.h"
#include "gpuhook/error.h"
#include "gpuhook/gpu.h"
#include "gpuhook/gpupoll.h"
#include "gpuhook/gpuview.h"
#include "gpuhook/kube.h"
#include "gpuhook/logger.h"
#include "gpuhook/select.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define CLUSTERVIEW_LIST_MAX (8L * 1024 * 1024)
/*
 * Pods are listed in pages so that one answer stays far below the list bound:
 * a Pod with its managedFields is some 5 to 20 KiB. The page count bounds a
 * server that never stops answering with a continue token.
 */
#define CLUSTERVIEW_POD_PAGE 200
#define CLUSTERVIEW_POD_PAGES_MAX 1000
#define CLUSTERVIEW_CONTINUE_MAX 2048
/* Pods that hold resources; Succeeded and Failed ones hold nothing any more. */
#define CLUSTERVIEW_POD_FIELDS "status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed"

static struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t thread;
    bool running;
    bool stopping;
    bool node_denied_logged;
    bool pods_failed_logged;
    struct gpuview view;
    struct gpupoll *poll;
    struct kube *kube;
    char *ns;
    char *selector_path; /* the EndpointSlice list's path and query */
    char *port_name;
    bool nodes;
    long interval_ms;
} cv = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static size_t clusterview_write(char *p, size_t size, size_t n, void *arg) {
    struct buf *b = arg;
    return buf_append(b, p, size * n) == 0 ? size * n : 0;
}

/* GET path from the API into body; returns the HTTP status, 0 when none came. */
static long clusterview_get(const char *path, struct buf *body, char *err, size_t errlen) {
    CURL *h = curl_easy_init();
    struct curl_slist *hdrs = NULL;
    long status = 0;
    char url[1024 + 3 * CLUSTERVIEW_CONTINUE_MAX];

    body->len = 0;
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return 0;
    }
    snprintf(url, sizeof(url), "%s%s", kube_base_url(cv.kube), path);
    if (kube_conn_apply(cv.kube, h, &hdrs, false) == 0) {
        hdrs = curl_slist_append(hdrs, "Accept: application/json");
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, clusterview_write);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, body);
        CURLcode rc = curl_easy_perform(h);
        if (rc == CURLE_OK)
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        else
            snprintf(err, errlen, "%s", curl_easy_strerror(rc));
    } else {
        snprintf(err, errlen, "out of memory");
    }
    curl_easy_cleanup(h);
    for (struct curl_slist *s = hdrs; s; s = s->next) /* it holds the token */
        explicit_bzero(s->data, strlen(s->data));
    curl_slist_free_all(hdrs);
    return status;
}

/* The Status answer's reason and message, for the log ("" when the body is not one). */
static void clusterview_status_text(const struct buf *body, char *reason, size_t rlen,
                                    char *message, size_t mlen) {
    reason[0] = message[0] = '\0';
    cJSON *st = cJSON_ParseWithLength(body->data ? body->data : "", body->len);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(st, "reason");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(st, "message");
    if (cJSON_IsString(r))
        buf_copy_str(reason, rlen, r->valuestring);
    if (cJSON_IsString(m))
        buf_copy_str(message, mlen, m->valuestring);
    cJSON_Delete(st);
}

static bool clusterview_has_gpu_nodes(void) {
    bool any = false;
    pthread_mutex_lock(&cv.lock);
    for (size_t k = 0; k < cv.view.count && !any; k++)
        any = cv.view.nodes[k].has_node && cv.view.nodes[k].allocatable >= 0;
    pthread_mutex_unlock(&cv.lock);
    return any;
}

/*
 * Lists the Pods across namespaces, page by page, and makes their requests the
 * nodes' requested GPUs. On any failure the view falls back to allocatable
 * only (gpuview_pods_failed), and the first failure of a run of them is logged.
 */
static void clusterview_pods(struct buf *body) {
    char err[256] = "", why[128] = "", reason[64], message[256];
    char path[256 + 3 * CLUSTERVIEW_CONTINUE_MAX], cont[CLUSTERVIEW_CONTINUE_MAX] = "";
    bool restarted = false;
    long st = 0;

    if (!clusterview_has_gpu_nodes())
        return; /* nothing to count on: spare the API a cluster-wide list */
    pthread_mutex_lock(&cv.lock);
    gpuview_pods_begin(&cv.view);
    pthread_mutex_unlock(&cv.lock);
    message[0] = '\0';
    for (int page = 0;; page++) {
        if (page >= CLUSTERVIEW_POD_PAGES_MAX) {
            snprintf(why, sizeof(why), "the Pod list has more than %d pages",
                     CLUSTERVIEW_POD_PAGES_MAX);
            break;
        }
        int n = snprintf(path, sizeof(path), "/api/v1/pods?fieldSelector=%s&limit=%d",
                         CLUSTERVIEW_POD_FIELDS, CLUSTERVIEW_POD_PAGE);
        if (cont[0]) {
            char *esc = curl_easy_escape(NULL, cont, 0);
            if (!esc) {
                snprintf(why, sizeof(why), "out of memory");
                break;
            }
            snprintf(path + n, sizeof(path) - (size_t)n, "&continue=%s", esc);
            curl_free(esc);
        }
        err[0] = '\0';
        st = clusterview_get(path, body, err, sizeof(err));
        if (st == 410 && cont[0] && !restarted) {
            /* The continue token expired under a busy cluster: start over once. */
            restarted = true;
            cont[0] = '\0';
            page = -1;
            pthread_mutex_lock(&cv.lock);
            gpuview_pods_begin(&cv.view);
            pthread_mutex_unlock(&cv.lock);
            continue;
        }
        if (st != 200) {
            clusterview_status_text(body, reason, sizeof(reason), message, sizeof(message));
            if (st == 0)
                ghe_errf(why, sizeof(why), "the Pod list failed: %s", err);
            else if (st == 403)
                snprintf(why, sizeof(why), "the Pod list is forbidden (HTTP 403)");
            else
                ghe_errf(why, sizeof(why), "the Pod list failed (HTTP %ld%s%s)", st,
                         reason[0] ? " " : "", reason);
            break;
        }
        pthread_mutex_lock(&cv.lock);
        int rc = gpuview_pods_page(&cv.view, body->data, body->len, cont, sizeof(cont), err,
                                   sizeof(err));
        if (rc == 0 && !cont[0])
            gpuview_pods_commit(&cv.view);
        pthread_mutex_unlock(&cv.lock);
        if (rc) {
            snprintf(why, sizeof(why), "the Pod list does not parse");
            ghe_errf(message, sizeof(message), "%s", err);
            break;
        }
        if (!cont[0])
            break;
    }
    if (!why[0]) {
        if (cv.pods_failed_logged)
            LOGGER_INFO_("cluster view: the Pod list works again; unallocated GPUs count the "
                         "pods' requests");
        cv.pods_failed_logged = false;
        return;
    }
    pthread_mutex_lock(&cv.lock);
    gpuview_pods_failed(&cv.view, why);
    pthread_mutex_unlock(&cv.lock);
    if (cv.pods_failed_logged)
        return; /* said once for this run of failures, not every poll */
    cv.pods_failed_logged = true;
    if (st == 403)
        LOGGER_WARN_("cluster view: cannot list Pods (403); unallocated GPUs count allocatable "
                     "only. Apply k8s/components/cluster-gpu-nodes to allow it",
                     "error", message[0] ? message : why);
    else
        LOGGER_WARN_("cluster view: cannot list Pods; unallocated GPUs count allocatable only "
                     "until a list succeeds",
                     "error", why, "detail", message[0] ? message : "");
}

static void clusterview_list(struct buf *body) {
    char err[256] = "";
    long st = clusterview_get(cv.selector_path, body, err, sizeof(err));
    if (st == 200) {
        pthread_mutex_lock(&cv.lock);
        int rc = gpuview_set_endpoints(&cv.view, body->data, body->len, cv.port_name,
                                       clock_wall_ms(), err, sizeof(err));
        pthread_mutex_unlock(&cv.lock);
        if (rc)
            LOGGER_WARN_("cluster view: the EndpointSlice list does not parse", "error", err);
    } else {
        char s[16];
        snprintf(s, sizeof(s), "%ld", st);
        LOGGER_WARN_("cluster view: cannot list the agents' EndpointSlices", "status", s, "error",
                     err[0] ? err : "unexpected status");
    }
    if (!cv.nodes)
        return;
    st = clusterview_get("/api/v1/nodes", body, err, sizeof(err));
    if (st == 200) {
        pthread_mutex_lock(&cv.lock);
        int rc = gpuview_set_nodes(&cv.view, body->data, body->len, err, sizeof(err));
        pthread_mutex_unlock(&cv.lock);
        if (rc)
            LOGGER_WARN_("cluster view: the Node list does not parse", "error", err);
    } else if (st == 403) {
        if (!cv.node_denied_logged)
            LOGGER_WARN_("cluster view: no access to Nodes (403); GFD labels are not used. Apply "
                         "k8s/components/cluster-gpu-nodes to allow it");
        cv.node_denied_logged = true;
    }
    clusterview_pods(body);
}

static void *clusterview_main(void *arg) {
    struct buf body;
    (void)arg;
    buf_init(&body, CLUSTERVIEW_LIST_MAX);
    pthread_mutex_lock(&cv.lock);
    while (!cv.stopping) {
        pthread_mutex_unlock(&cv.lock);
        clusterview_list(&body);
        pthread_mutex_lock(&cv.lock);
        int targets = gpupoll_prepare(cv.poll, &cv.view); /* how many, or a GHE_ code */
        pthread_mutex_unlock(&cv.lock);
        if (targets > 0)
            gpupoll_run(cv.poll);
        pthread_mutex_lock(&cv.lock);
        if (targets > 0)
            gpupoll_apply(cv.poll, &cv.view, clock_wall_ms());
        gpuview_refresh(&cv.view, clock_wall_ms());
        if (cv.stopping)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long long ns = until.tv_nsec + (cv.interval_ms % 1000) * 1000000LL;
        until.tv_sec += cv.interval_ms / 1000 + ns / 1000000000LL;
        until.tv_nsec = ns % 1000000000LL;
        pthread_cond_timedwait(&cv.wake, &cv.lock, &until);
    }
    pthread_mutex_unlock(&cv.lock);
    buf_cleanup(&body);
    return NULL;
}

int clusterview_start(const struct config *cfg, struct errlist *el) {
    struct gpuview_options vo;
    struct gpupoll_options po;
    char path[512];

    if (!cfg->cluster_gpu_service || !cfg->cluster_gpu_service[0])
        return 0;
    if (cfg->kube_mode != CONFIG_KUBE_URL && cfg->kube_mode != CONFIG_KUBE_IN_CLUSTER) {
        LOGGER_WARN_("cluster_gpu.service is set but there is no Kubernetes API (kubernetes.mode "
                     "is dry_run or local): the local GPU view is used");
        return 0;
    }
    int rc = kube_new(cfg, &cv.kube, el);
    if (rc)
        return rc;
    cv.ns = strdup(kube_namespace(cv.kube));
    cv.port_name = strdup(cfg->cluster_gpu_port_name ? cfg->cluster_gpu_port_name : "http");
    char *sel = curl_easy_escape(NULL, cfg->cluster_gpu_service, 0);
    snprintf(path, sizeof(path),
             "/apis/discovery.k8s.io/v1/namespaces/%s/endpointslices?labelSelector="
             "kubernetes.io%%2Fservice-name%%3D%s",
             cv.ns ? cv.ns : "", sel ? sel : "");
    curl_free(sel);
    cv.selector_path = strdup(path);
    cv.nodes = cfg->cluster_gpu_nodes;
    cv.interval_ms = cfg->cluster_gpu_poll_seconds * 1000L;
    gpuview_options_init(&vo);
    vo.poll_interval_ms = cv.interval_ms;
    vo.stale_after = cfg->cluster_gpu_stale_after;
    gpuview_init(&cv.view, &vo);
    gpupoll_options_init(&po);
    cv.poll = gpupoll_new(&po);
    if (!cv.ns || !cv.port_name || !cv.selector_path || !cv.poll ||
        pthread_create(&cv.thread, NULL, clusterview_main, NULL) != 0) {
        errlist_add(el, "cluster_gpu: cannot start the cluster view");
        clusterview_stop();
        return GHE_NOMEM;
    }
    cv.running = true;
    LOGGER_INFO_("cluster view: polling the agents", "service", cfg->cluster_gpu_service,
                 "namespace", cv.ns);
    return 0;
}

void clusterview_stop(void) {
    if (cv.running) {
        pthread_mutex_lock(&cv.lock);
        cv.stopping = true;
        pthread_cond_signal(&cv.wake);
        pthread_mutex_unlock(&cv.lock);
        gpupoll_cancel(cv.poll);
        pthread_join(cv.thread, NULL);
        gpuview_cleanup(&cv.view);
    }
    gpupoll_free(cv.poll);
    kube_free(cv.kube);
    free(cv.ns);
    free(cv.selector_path);
    free(cv.port_name);
    cv.poll = NULL;
    cv.kube = NULL;
    cv.ns = cv.selector_path = cv.port_name = NULL;
    cv.running = cv.stopping = false;
}

static const char *clusterview_word(int variant) { return variant == 1 ? "original" : "lite"; }

int clusterview_fit_check(const struct config *cfg, int variant, int *variant_out, char *reason,
                          size_t reason_len, char **affinity) {
    const struct gpu_fit_policy *p = select_rules_gpu_fit(cfg->rules);
    struct gpu_fit_policy defaults;
    struct gpuview_fit fit, lite;
    cJSON *aff = NULL;
    int out = GPU_FIT_KEEP;

    *affinity = NULL;
    if (!p) {
        gpu_fit_policy_init(&defaults);
        p = &defaults;
    }
    if (!cv.running || (variant != 0 && variant != 1))
        return gpu_fit_check(p, cfg->gpu.required, variant, variant_out, reason, reason_len);
    *variant_out = variant;
    struct gpuview_need need = {clusterview_word(variant),
                                variant == 1 ? p->original_min_free_mib : p->lite_min_free_mib};
    pthread_mutex_lock(&cv.lock);
    gpuview_refresh(&cv.view, clock_wall_ms());
    if (gpuview_fit(&cv.view, &need, &fit) != 0 || fit.no_view) {
        pthread_mutex_unlock(&cv.lock);
        return gpu_fit_check(p, cfg->gpu.required, variant, variant_out, reason, reason_len);
    }
    if (fit.fits || p->on_insufficient == GPU_FIT_IGNORE) {
        snprintf(reason, reason_len, "%s%s.",
                 fit.fits ? "" : "gpu_fit is ignore: kept the variant although ", fit.reason);
        if (fit.fits)
            aff = gpuview_affinity(&cv.view, &fit, cfg->cluster_gpu_placement);
    } else if (variant == 1 && p->on_insufficient == GPU_FIT_DOWNGRADE) {
        struct gpuview_need ln = {"lite", p->lite_min_free_mib};
        if (gpuview_fit(&cv.view, &ln, &lite) == 0 && lite.fits) {
            snprintf(reason, reason_len, "Downgraded to lite: %s; %s.", fit.reason, lite.reason);
            *variant_out = 0;
            out = GPU_FIT_DOWNGRADED;
            aff = gpuview_affinity(&cv.view, &lite, cfg->cluster_gpu_placement);
        } else {
            snprintf(reason, reason_len, "Rejected original and lite: %s.", fit.reason);
            out = GPU_FIT_REJECTED;
        }
    } else {
        snprintf(reason, reason_len, "Rejected %s: %s.", need.variant, fit.reason);
        out = GPU_FIT_REJECTED;
    }
    pthread_mutex_unlock(&cv.lock);
    if (aff) {
        *affinity = cJSON_PrintUnformatted(aff);
        cJSON_Delete(aff);
    }
    return out;
}

static cJSON *clusterview_child(cJSON *parent, const char *key) {
    cJSON *c = cJSON_GetObjectItemCaseSensitive(parent, key);
    if (cJSON_IsObject(c))
        return c;
    if (c)
        return NULL; /* not an object: the template's, left alone */
    return cJSON_AddObjectToObject(parent, key);
}

int clusterview_place(struct buf *run, const char *affinity) {
    if (!affinity)
        return 0;
    cJSON *root = cJSON_ParseWithLength(run->data ? run->data : "", run->len);
    cJSON *add = cJSON_Parse(affinity);
    int rc = GHE_NOMEM;
    if (!root || !add)
        goto out;
    cJSON *pt = clusterview_child(
        clusterview_child(clusterview_child(root, "spec"), "taskRunTemplate"), "podTemplate");
    cJSON *aff = pt ? clusterview_child(pt, "affinity") : NULL;
    if (!aff) {
        rc = 0; /* the template's shape is not ours to change */
        goto out;
    }
    cJSON *item;
    while ((item = add->child) != NULL) {
        cJSON_DetachItemViaPointer(add, item);
        if (cJSON_GetObjectItemCaseSensitive(aff, item->string))
            cJSON_Delete(item); /* the template's own term wins */
        else
            cJSON_AddItemToObject(aff, item->string, item);
    }
    char *text = cJSON_PrintUnformatted(root);
    if (!text)
        goto out;
    run->len = 0;
    rc = buf_appends(run, text);
    free(text);
out:
    cJSON_Delete(root);
    cJSON_Delete(add);
    return rc;
}

char *clusterview_json(const struct config *cfg, const char *node, bool *found) {
    const struct gpu_fit_policy *p = select_rules_gpu_fit(cfg->rules);
    struct gpu_fit_policy defaults;
    char *out = NULL;
    *found = true;
    if (!cv.running)
        return NULL;
    if (!p) {
        gpu_fit_policy_init(&defaults);
        p = &defaults;
    }
    pthread_mutex_lock(&cv.lock);
    gpuview_refresh(&cv.view, clock_wall_ms());
    if (gpuview_has_data(&cv.view)) {
        struct gpuview_need needs[2] = {{"lite", p->lite_min_free_mib},
                                        {"original", p->original_min_free_mib}};
        out = gpuview_json(&cv.view, clock_wall_ms(), node, needs, 2, found);
    }
    pthread_mutex_unlock(&cv.lock);
    return out;
}

int clusterview_metrics_append(struct buf *b) {
    int rc = 0;
    if (!cv.running)
        return 0;
    pthread_mutex_lock(&cv.lock);
    rc = gpuview_metrics_append(&cv.view, b);
    pthread_mutex_unlock(&cv.lock);
    return rc;
}

bool clusterview_free_mib(long long *free_mib) {
    struct gpuview_need any = {"any", 0};
    struct gpuview_fit fit;
    bool known = false;

    if (!cv.running)
        return false;
    pthread_mutex_lock(&cv.lock);
    gpuview_refresh(&cv.view, clock_wall_ms());
    if (gpuview_fit(&cv.view, &any, &fit) == 0 && !fit.no_view) {
        known = true;
        *free_mib = fit.fits ? fit.free_mib : -1;
    }
    pthread_mutex_unlock(&cv.lock);
    return known;
}
