/*
 * A run's TaskRuns and Pods for its check run. See include/gpuhook/ghtasks.h.
 */
#include "gpuhook/ghtasks.h"

#include <curl/curl.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/error.h"
#include "gpuhook/ghauth.h"
#include "gpuhook/kube.h"

/* A TaskRun list with its Steps' states can be large; a Pod is far smaller. */
#define GHTASKS_LIST_BYTES_MAX (8 * 1024 * 1024)
#define GHTASKS_POD_BYTES_MAX (1024 * 1024)
/* One request's bound, inside the caller's total. */
#define GHTASKS_REQUEST_MS 5000L
#define GHTASKS_CONNECT_MS 3000L
#define GHTASKS_HOSTNAME "kubernetes.io/hostname"

static const char *ghtasks_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const cJSON *ghtasks_get(const cJSON *obj, const char *key) {
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

static long long ghtasks_time(const cJSON *status, const char *key) {
    const char *s = ghtasks_str(status, key);
    long long ms = 0;
    return s && ghauth_parse_time(s, &ms) == 0 ? ms : 0;
}

void ghtasks_init(struct ghtasks *t) { memset(t, 0, sizeof(*t)); }

void ghtasks_cleanup(struct ghtasks *t) {
    for (size_t i = 0; i < t->nrows; i++) {
        free(t->rows[i].name);
        free(t->rows[i].outcome);
        free(t->rows[i].pod);
    }
    free(t->rows);
    free(t->view);
    ghtasks_init(t);
}

/* Childreferences first, in their order (Tekton's order of creation), then by start. */
static int ghtasks_cmp(const void *a, const void *b) {
    const struct ghtasks_row *x = a, *y = b;
    long ox = x->order < 0 ? LONG_MAX : x->order, oy = y->order < 0 ? LONG_MAX : y->order;
    if (ox != oy)
        return ox < oy ? -1 : 1;
    if (x->started_ms != y->started_ms)
        return x->started_ms < y->started_ms ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The TaskRun's place in the run's childReferences and its pipeline task there. */
static long ghtasks_child(const cJSON *run_status, const char *trname, const char **task) {
    const cJSON *c;
    long i = 0;
    cJSON_ArrayForEach(c, ghtasks_get(run_status, "childReferences")) {
        const char *n = ghtasks_str(c, "name");
        if (n && trname && strcmp(n, trname) == 0) {
            *task = ghtasks_str(c, "pipelineTaskName");
            return i;
        }
        i++;
    }
    *task = NULL;
    return -1;
}

static int ghtasks_row_fill(struct ghtasks_row *row, const cJSON *tr, const cJSON *run_status) {
    const cJSON *meta = ghtasks_get(tr, "metadata"), *st = ghtasks_get(tr, "status");
    const char *trname = ghtasks_str(meta, "name"), *child_task, *cst = NULL, *reason = NULL;
    const char *task = ghtasks_str(ghtasks_get(meta, "labels"), "tekton.dev/pipelineTask");
    const cJSON *c;

    row->order = ghtasks_child(run_status, trname, &child_task);
    if (!task)
        task = child_task ? child_task : trname ? trname : "?";
    cJSON_ArrayForEach(c, ghtasks_get(st, "conditions")) {
        const char *type = ghtasks_str(c, "type");
        if (type && strcmp(type, "Succeeded") == 0) {
            cst = ghtasks_str(c, "status");
            reason = ghtasks_str(c, "reason");
        }
    }
    row->failed =
        cst && strcmp(cst, "False") == 0 && !(reason && strcmp(reason, "TaskRunCancelled") == 0);
    row->started_ms = ghtasks_time(st, "startTime");
    row->completed_ms = ghtasks_time(st, "completionTime");
    row->name = strdup(task);
    row->outcome = strdup(reason                             ? reason
                          : cst && strcmp(cst, "False") == 0 ? "Failed"
                                                             : "Pending");
    const char *pod = ghtasks_str(st, "podName");
    row->pod = pod && *pod ? strdup(pod) : NULL;
    return row->name && row->outcome && (!pod || !*pod || row->pod) ? 0 : GHE_NOMEM;
}

int ghtasks_parse(struct ghtasks *t, const char *json, size_t len, const cJSON *run_status,
                  char *err, size_t errlen) {
    cJSON *doc = cJSON_ParseWithLength(json ? json : "", len);
    const cJSON *items = ghtasks_get(doc, "items"), *it;
    const cJSON *skipped = ghtasks_get(run_status, "skippedTasks");
    int rc = GHE_NOMEM;

    ghtasks_cleanup(t);
    if (!doc || !cJSON_IsArray(items)) {
        snprintf(err, errlen, "the TaskRun list %s", doc ? "has no items" : "does not parse");
        cJSON_Delete(doc);
        return GHE_INVAL;
    }
    size_t n = (size_t)cJSON_GetArraySize(items);
    size_t ns = cJSON_IsArray(skipped) ? (size_t)cJSON_GetArraySize(skipped) : 0;
    const char *cont = ghtasks_str(ghtasks_get(doc, "metadata"), "continue");
    t->more = n > GHTASKS_TASKRUNS_MAX || (cont && *cont);
    if (n > GHTASKS_TASKRUNS_MAX)
        n = GHTASKS_TASKRUNS_MAX;
    if (ns > GHTASKS_TASKRUNS_MAX)
        ns = GHTASKS_TASKRUNS_MAX;
    if (n + ns > 0 && !(t->rows = calloc(n + ns, sizeof(*t->rows))))
        goto out;
    cJSON_ArrayForEach(it, items) {
        if (t->nrows == n)
            break;
        struct ghtasks_row *row = &t->rows[t->nrows++];
        if (ghtasks_row_fill(row, it, run_status) != 0)
            goto out;
    }
    if (t->nrows > 1) /* qsort of a NULL array is undefined, even of none */
        qsort(t->rows, t->nrows, sizeof(*t->rows), ghtasks_cmp);
    /* Skipped tasks have no TaskRun: Tekton names them in the run's status only. */
    cJSON_ArrayForEach(it, skipped) {
        const char *name = ghtasks_str(it, "name");
        if (t->nrows == n + ns)
            break;
        if (!name)
            continue;
        struct ghtasks_row *row = &t->rows[t->nrows++];
        row->order = -1;
        row->name = strdup(name);
        row->outcome = strdup("Skipped");
        if (!row->name || !row->outcome)
            goto out;
    }
    /* The failed TaskRun that completed first; a cancelled one is no failure of its own. */
    long long first = LLONG_MAX;
    for (size_t i = 0; i < t->nrows; i++) {
        const struct ghtasks_row *r = &t->rows[i];
        long long when = r->completed_ms > 0 ? r->completed_ms : LLONG_MAX - 1;
        if (r->failed && when < first) {
            first = when;
            t->failing_task = r->name;
        }
    }
    if (t->nrows && !(t->view = calloc(t->nrows, sizeof(*t->view))))
        goto out;
    for (size_t i = 0; i < t->nrows; i++) {
        const struct ghtasks_row *r = &t->rows[i];
        t->view[i].name = r->name;
        t->view[i].outcome = r->outcome;
        t->view[i].duration_ms = r->started_ms > 0 && r->completed_ms >= r->started_ms
                                     ? r->completed_ms - r->started_ms
                                     : -1;
    }
    rc = 0;
out:
    cJSON_Delete(doc);
    if (rc) {
        snprintf(err, errlen, "out of memory");
        ghtasks_cleanup(t);
    }
    return rc;
}

/* True when a resources map (requests or limits) names a GPU: nvidia.com/gpu, amd.com/gpu. */
static bool ghtasks_gpu_resources(const cJSON *res) {
    const cJSON *kind, *q;
    cJSON_ArrayForEach(kind, res) {
        cJSON_ArrayForEach(q, kind) {
            size_t n = q->string ? strlen(q->string) : 0;
            if (n > 4 && strcmp(q->string + n - 4, "/gpu") == 0)
                return true;
        }
    }
    return false;
}

int ghtasks_pod_node(const char *json, size_t len, char *node, size_t nodelen, bool *gpu) {
    cJSON *doc = cJSON_ParseWithLength(json ? json : "", len);
    const cJSON *spec = ghtasks_get(doc, "spec"), *c;
    static const char *const lists[] = {"containers", "initContainers"};

    *gpu = false;
    if (nodelen)
        node[0] = '\0';
    if (!cJSON_IsObject(spec)) {
        cJSON_Delete(doc);
        return GHE_INVAL;
    }
    const char *n = ghtasks_str(spec, "nodeName");
    if (n)
        buf_copy_str(node, nodelen, n);
    for (size_t i = 0; i < 2 && !*gpu; i++)
        cJSON_ArrayForEach(c, ghtasks_get(spec, lists[i])) {
            if (ghtasks_gpu_resources(ghtasks_get(c, "resources")))
                *gpu = true;
        }
    cJSON_Delete(doc);
    return 0;
}

/* The first value of an `In` expression on the hostname label in a node selector term. */
static const char *ghtasks_term_host(const cJSON *term) {
    const cJSON *e;
    cJSON_ArrayForEach(e, ghtasks_get(term, "matchExpressions")) {
        const char *key = ghtasks_str(e, "key"), *op = ghtasks_str(e, "operator");
        const cJSON *values = ghtasks_get(e, "values");
        if (key && op && strcmp(key, GHTASKS_HOSTNAME) == 0 && strcmp(op, "In") == 0 &&
            cJSON_IsString(cJSON_GetArrayItem(values, 0)))
            return cJSON_GetArrayItem(values, 0)->valuestring;
    }
    return NULL;
}

const char *ghtasks_chosen_node(const cJSON *run) {
    const cJSON *pt =
        ghtasks_get(ghtasks_get(ghtasks_get(run, "spec"), "taskRunTemplate"), "podTemplate");
    const cJSON *na = ghtasks_get(ghtasks_get(pt, "affinity"), "nodeAffinity"), *p;
    const char *host = ghtasks_str(ghtasks_get(pt, "nodeSelector"), GHTASKS_HOSTNAME);

    if (host)
        return host;
    cJSON_ArrayForEach(p, ghtasks_get(na, "preferredDuringSchedulingIgnoredDuringExecution")) {
        if ((host = ghtasks_term_host(ghtasks_get(p, "preference"))))
            return host;
    }
    cJSON_ArrayForEach(
        p, ghtasks_get(ghtasks_get(na, "requiredDuringSchedulingIgnoredDuringExecution"),
                       "nodeSelectorTerms")) {
        if ((host = ghtasks_term_host(p)))
            return host;
    }
    return NULL;
}

/* --- the reads ------------------------------------------------------------------------ */

struct ghtasks_io {
    struct kube *k;
    CURL *h; /* one handle for every read: its connection is kept alive between them */
    long long deadline_ms;
    const bool *stop; /* another thread sets it: read atomically */
    struct buf body;
};

static size_t ghtasks_write(char *p, size_t size, size_t n, void *arg) {
    struct buf *b = arg;
    return buf_append(b, p, size * n) == 0 ? size * n : 0;
}

static int ghtasks_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    const bool *stop = arg;
    (void)dt, (void)dn, (void)ut, (void)un;
    return stop && __atomic_load_n(stop, __ATOMIC_RELAXED) ? 1 : 0;
}

/*
 * GET path into io->body (at most max bytes), re-reading the token file first with reread.
 * Returns the HTTP status, 0 when none came.
 */
static long ghtasks_fetch_once(struct ghtasks_io *io, const char *path, size_t max, bool reread,
                               char *err, size_t errlen) {
    struct curl_slist *hdrs = NULL;
    char url[1024];
    long status = 0, left = (long)(io->deadline_ms - clock_mono_ms());

    buf_cleanup(&io->body);
    buf_init(&io->body, max);
    if (left <= 0 || (io->stop && __atomic_load_n(io->stop, __ATOMIC_RELAXED))) {
        snprintf(err, errlen, "%s", left <= 0 ? "out of time" : "stopping");
        return 0;
    }
    if (snprintf(url, sizeof(url), "%s%s", kube_base_url(io->k), path) >= (int)sizeof(url)) {
        snprintf(err, errlen, "the URL is too long");
        return 0;
    }
    if (kube_conn_apply(io->k, io->h, &hdrs, reread) != 0 ||
        !(hdrs = curl_slist_append(hdrs, "Accept: application/json"))) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    curl_easy_setopt(io->h, CURLOPT_URL, url);
    curl_easy_setopt(io->h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(io->h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(io->h, CURLOPT_TIMEOUT_MS,
                     left < GHTASKS_REQUEST_MS ? left : GHTASKS_REQUEST_MS);
    curl_easy_setopt(io->h, CURLOPT_CONNECTTIMEOUT_MS,
                     left < GHTASKS_CONNECT_MS ? left : GHTASKS_CONNECT_MS);
    curl_easy_setopt(io->h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(io->h, CURLOPT_WRITEFUNCTION, ghtasks_write);
    curl_easy_setopt(io->h, CURLOPT_WRITEDATA, &io->body);
    curl_easy_setopt(io->h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(io->h, CURLOPT_XFERINFOFUNCTION, ghtasks_progress);
    curl_easy_setopt(io->h, CURLOPT_XFERINFODATA, (void *)io->stop);
    CURLcode cc = curl_easy_perform(io->h);
    if (cc == CURLE_OK)
        curl_easy_getinfo(io->h, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(err, errlen, "%s",
                 cc == CURLE_WRITE_ERROR ? "the answer is too large" : curl_easy_strerror(cc));
out:
    /* The handle keeps a pointer to the list: drop it before the list goes. */
    curl_easy_setopt(io->h, CURLOPT_HTTPHEADER, NULL);
    for (struct curl_slist *s = hdrs; s; s = s->next) /* it holds the token */
        explicit_bzero(s->data, strlen(s->data));
    curl_slist_free_all(hdrs);
    return status;
}

/* A 401 means a token rotated since it was read (a projected one, hourly): once more. */
static long ghtasks_fetch(struct ghtasks_io *io, const char *path, size_t max, char *err,
                          size_t errlen) {
    long st = ghtasks_fetch_once(io, path, max, false, err, errlen);
    return st == 401 ? ghtasks_fetch_once(io, path, max, true, err, errlen) : st;
}

/* Kubernetes names (DNS labels and subdomains) need no escaping in a path or a query. */
static bool ghtasks_name_ok(const char *s) {
    if (!s || !*s || strlen(s) > 253)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '.'))
            return false;
    return true;
}

/* Adds name to the ", "-joined list in out unless it is there already. */
static void ghtasks_add_node(char *out, size_t outlen, const char *name) {
    size_t n = strlen(name), len = strlen(out);
    for (const char *p = out; *p;) {
        const char *end = strstr(p, ", ");
        size_t l = end ? (size_t)(end - p) : strlen(p);
        if (l == n && strncmp(p, name, n) == 0)
            return;
        p += l + (end ? 2 : 0);
    }
    if (len + (len ? 2 : 0) + n + 1 > outlen)
        return;
    snprintf(out + len, outlen - len, "%s%s", len ? ", " : "", name);
}

int ghtasks_read(struct kube *k, const cJSON *run, long timeout_ms, const bool *stop,
                 struct ghtasks *t, char *node, size_t nodelen, char *err, size_t errlen) {
    const cJSON *meta = ghtasks_get(run, "metadata");
    const char *ns = ghtasks_str(meta, "namespace"), *name = ghtasks_str(meta, "name");
    struct ghtasks_io io = {.k = k, .stop = stop, .deadline_ms = clock_mono_ms() + timeout_ms};
    char path[768], gpu_nodes[GHTASKS_NODE_MAX] = "", all_nodes[GHTASKS_NODE_MAX] = "";
    int rc = GHE_INVAL;
    long st;

    if (nodelen)
        node[0] = '\0';
    buf_init(&io.body, 0);
    if (!ghtasks_name_ok(ns) || !ghtasks_name_ok(name)) {
        snprintf(err, errlen, "the run has no namespace and name to look its TaskRuns up by");
        return GHE_INVAL;
    }
    if (!(io.h = curl_easy_init())) {
        snprintf(err, errlen, "out of memory");
        return GHE_NOMEM;
    }
    snprintf(path, sizeof(path),
             "/apis/tekton.dev/v1/namespaces/%s/taskruns?labelSelector=tekton.dev%%2FpipelineRun"
             "%%3D%s&limit=%d",
             ns, name, GHTASKS_TASKRUNS_MAX);
    st = ghtasks_fetch(&io, path, GHTASKS_LIST_BYTES_MAX, err, errlen);
    if (st != 200) {
        if (st != 0)
            snprintf(err, errlen, "the TaskRun list answered %ld", st);
        rc = st == 0 ? GHE_UNAVAILABLE : GHE_IO;
        goto out;
    }
    if ((rc = ghtasks_parse(t, io.body.data, io.body.len, ghtasks_get(run, "status"), err,
                            errlen)) != 0)
        goto out;
    /* The node line is best effort: the table stands without it. */
    size_t read = 0;
    for (size_t i = 0; i < t->nrows && read < GHTASKS_PODS_MAX; i++) {
        const char *pod = t->rows[i].pod;
        char n[256], perr[128];
        bool gpu = false, seen = false;
        if (!pod || !ghtasks_name_ok(pod))
            continue;
        for (size_t j = 0; j < i && !seen; j++)
            seen = t->rows[j].pod && strcmp(t->rows[j].pod, pod) == 0;
        if (seen)
            continue;
        read++;
        snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods/%s", ns, pod);
        st = ghtasks_fetch(&io, path, GHTASKS_POD_BYTES_MAX, perr, sizeof(perr));
        if (st == 403 || st == 401 || st == 0)
            break; /* not allowed, or out of time: no other Pod will do better */
        if (st != 200 || ghtasks_pod_node(io.body.data, io.body.len, n, sizeof(n), &gpu) != 0 ||
            !n[0])
            continue; /* gone (404), or not scheduled yet */
        ghtasks_add_node(all_nodes, sizeof(all_nodes), n);
        if (gpu)
            ghtasks_add_node(gpu_nodes, sizeof(gpu_nodes), n);
    }
    buf_copy_str(node, nodelen, gpu_nodes[0] ? gpu_nodes : all_nodes);
out:
    buf_cleanup(&io.body);
    curl_easy_cleanup(io.h);
    return rc;
}
