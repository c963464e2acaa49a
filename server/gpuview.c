/*
 * The cluster view's model: the three inputs parsed into per-node records, and
 * the agents' staleness. Rendering is in gpuview_json.c, the fit and the
 * affinity in gpufit_cluster.c.
 */
#include "gpuhook/gpuview.h"
#include "gpuhook/buf.h"
#include "gpuhook/error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GFD_MEMORY "nvidia.com/gpu.memory"
#define GFD_PRODUCT "nvidia.com/gpu.product"
#define GFD_COUNT "nvidia.com/gpu.count"
#define GPU_RESOURCE "nvidia.com/gpu"

void gpuview_options_init(struct gpuview_options *o) {
    o->poll_interval_ms = 5000;
    o->stale_after = 3;
}

void gpuview_init(struct gpuview *v, const struct gpuview_options *o) {
    memset(v, 0, sizeof(*v));
    if (o)
        v->opts = *o;
    else
        gpuview_options_init(&v->opts);
    if (v->opts.poll_interval_ms < 100)
        v->opts.poll_interval_ms = 100;
    if (v->opts.stale_after < 1)
        v->opts.stale_after = 1;
}

void gpuview_cleanup(struct gpuview *v) {
    free(v->nodes);
    v->nodes = NULL;
    v->count = 0;
}

const char *gpuview_source_name(int source) {
    switch (source) {
    case GPUVIEW_SRC_AGENT:
        return "agent";
    case GPUVIEW_SRC_GFD:
        return "gfd";
    case GPUVIEW_SRC_ALLOCATABLE:
        return "allocatable";
    default:
        return "none";
    }
}

const char *gpuview_agent_state_name(int state) {
    switch (state) {
    case GPUVIEW_AGENT_PENDING:
        return "pending";
    case GPUVIEW_AGENT_FRESH:
        return "fresh";
    case GPUVIEW_AGENT_STALE:
        return "stale";
    case GPUVIEW_AGENT_NOT_READY:
        return "not_ready";
    default:
        return "none";
    }
}

static void node_reset(struct gpuview_node *n, const char *name) {
    memset(n, 0, sizeof(*n));
    buf_copy_str(n->name, sizeof(n->name), name);
    n->gfd_memory_mib = -1;
    n->gfd_count = -1;
    n->allocatable = -1;
    n->capacity = -1;
    n->requested = -1;
    n->schedulable = true;
}

static struct gpuview_node *node_lookup(struct gpuview *v, const char *name) {
    for (size_t i = 0; i < v->count; i++)
        if (strcmp(v->nodes[i].name, name) == 0)
            return &v->nodes[i];
    return NULL;
}

const struct gpuview_node *gpuview_node_find(const struct gpuview *v, const char *name) {
    return name ? node_lookup((struct gpuview *)v, name) : NULL;
}

/* Finds or inserts a node, keeping the array sorted by name. NULL when full. */
static struct gpuview_node *node_get(struct gpuview *v, const char *name) {
    struct gpuview_node *n = node_lookup(v, name);
    if (n)
        return n;
    if (v->count >= GPUVIEW_MAX_NODES)
        return NULL;
    struct gpuview_node *grown = realloc(v->nodes, (v->count + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    v->nodes = grown;
    size_t at = 0;
    while (at < v->count && strcmp(v->nodes[at].name, name) < 0)
        at++;
    memmove(&v->nodes[at + 1], &v->nodes[at], (v->count - at) * sizeof(*grown));
    v->count++;
    node_reset(&v->nodes[at], name);
    return &v->nodes[at];
}

static void agent_clear(struct gpuview_node *n) {
    n->agent_state = GPUVIEW_AGENT_NONE;
    n->agent_url[0] = '\0';
    n->listed_at_ms = 0;
    n->in_endpoints = false;
    n->endpoint_ready = false;
    n->answered_at_ms = 0;
    n->failed_at_ms = 0;
    n->failures = 0;
    n->agent_status[0] = '\0';
    n->last_error[0] = '\0';
    n->gpu_count = 0;
}

static void nodeinfo_clear(struct gpuview_node *n) {
    n->has_node = false;
    n->schedulable = true;
    n->gfd_memory_mib = -1;
    n->gfd_count = -1;
    n->gfd_product[0] = '\0';
    n->hostname[0] = '\0';
    n->allocatable = -1;
    n->capacity = -1;
}

/* Drops nodes that no source speaks of any more. */
static void nodes_compact(struct gpuview *v) {
    size_t w = 0;
    for (size_t r = 0; r < v->count; r++) {
        const struct gpuview_node *n = &v->nodes[r];
        if (!n->in_endpoints && !n->has_node)
            continue;
        if (w != r)
            v->nodes[w] = v->nodes[r];
        w++;
    }
    v->count = w;
}

/* A Kubernetes name as it may stand in a label value and in /metrics. */
static bool name_ok(const char *s) {
    size_t len = strlen(s);
    if (len == 0 || len >= GPUVIEW_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
              (c >= 'A' && c <= 'Z') || c == '_'))
            return false;
    }
    return true;
}

/* A whole non-negative decimal, as GFD labels and plain GPU quantities are. */
static bool parse_count(const char *s, long *out) {
    char *end = NULL;
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (errno || *end != '\0' || n < 0)
        return false;
    *out = n;
    return true;
}

static cJSON *parse_root(const char *json, size_t len, const char *what, char *err, size_t errlen) {
    const char *end = NULL;
    if (!json || len == 0) {
        ghe_errf(err, errlen, "%s: empty body", what);
        return NULL;
    }
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, false);
    if (!root) {
        ghe_errf(err, errlen, "%s: not JSON (near byte %zu)", what,
                 end && end >= json ? (size_t)(end - json) : (size_t)0);
        return NULL;
    }
    if (!cJSON_IsObject(root)) {
        ghe_errf(err, errlen, "%s: not a JSON object", what);
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

/*
 * A List's items, or the object itself when it is one item of kind. Sets *one
 * when the root is the item.
 */
static const cJSON *list_items(const cJSON *root, const char *kind, const char *what, bool *one,
                               char *err, size_t errlen) {
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(root, "kind");
    *one = false;
    if (cJSON_IsString(k) && strcmp(k->valuestring, kind) == 0) {
        *one = true;
        return root;
    }
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(root, "items");
    if (!cJSON_IsArray(items)) {
        ghe_errf(err, errlen, "%s: .items: missing or not an array (expected a %sList or a %s)",
                 what, kind, kind);
        return NULL;
    }
    return items;
}

/* ---------- EndpointSlices ---------- */

struct ep_entry {
    char node[GPUVIEW_NAME_MAX];
    char url[GPUVIEW_URL_MAX];
    bool ready;
};

static int slice_port(const cJSON *slice, const char *port_name, long *port, char *err,
                      size_t errlen, const char *place) {
    const cJSON *ports = cJSON_GetObjectItemCaseSensitive(slice, "ports");
    const cJSON *p;
    int n = cJSON_GetArraySize(ports);
    if (!cJSON_IsArray(ports) || n == 0) {
        ghe_errf(err, errlen, "%s.ports: missing or empty", place);
        return GHE_INVAL;
    }
    cJSON_ArrayForEach(p, ports) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "name");
        const cJSON *num = cJSON_GetObjectItemCaseSensitive(p, "port");
        bool named = cJSON_IsString(name) && port_name && strcmp(name->valuestring, port_name) == 0;
        if (!port_name && n > 1) {
            ghe_errf(err, errlen, "%s.ports: %d ports and no port name to choose by", place, n);
            return GHE_INVAL;
        }
        if (port_name && !named)
            continue;
        if (!cJSON_IsNumber(num) || num->valuedouble < 1 || num->valuedouble > 65535) {
            ghe_errf(err, errlen, "%s.ports: port is not a number from 1 to 65535", place);
            return GHE_INVAL;
        }
        *port = (long)num->valuedouble;
        return 0;
    }
    ghe_errf(err, errlen, "%s.ports: no port named \"%s\"", place, port_name);
    return GHE_INVAL;
}

static int parse_slice(const cJSON *slice, const char *port_name, const char *place,
                       struct ep_entry *out, size_t *count, char *err, size_t errlen) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(slice, "addressType");
    const cJSON *eps = cJSON_GetObjectItemCaseSensitive(slice, "endpoints");
    const cJSON *ep;
    long port = 0;
    bool v6;
    int rc, i = 0;
    if (!cJSON_IsString(type) ||
        (strcmp(type->valuestring, "IPv4") != 0 && strcmp(type->valuestring, "IPv6") != 0)) {
        /* FQDN slices and unknown types name no address a poller can use. */
        ghe_errf(err, errlen, "%s.addressType: must be IPv4 or IPv6", place);
        return GHE_INVAL;
    }
    v6 = strcmp(type->valuestring, "IPv6") == 0;
    if (eps && !cJSON_IsArray(eps)) {
        ghe_errf(err, errlen, "%s.endpoints: not an array", place);
        return GHE_INVAL;
    }
    if (cJSON_GetArraySize(eps) == 0)
        return 0; /* A slice may be empty, and then needs no port either. */
    rc = slice_port(slice, port_name, &port, err, errlen, place);
    if (rc)
        return rc;
    cJSON_ArrayForEach(ep, eps) {
        const cJSON *node = cJSON_GetObjectItemCaseSensitive(ep, "nodeName");
        const cJSON *addrs = cJSON_GetObjectItemCaseSensitive(ep, "addresses");
        const cJSON *cond = cJSON_GetObjectItemCaseSensitive(ep, "conditions");
        const cJSON *ready = cJSON_GetObjectItemCaseSensitive(cond, "ready");
        const cJSON *addr = cJSON_GetArrayItem(addrs, 0);
        if (!cJSON_IsString(node) || !name_ok(node->valuestring)) {
            ghe_errf(err, errlen, "%s.endpoints[%d].nodeName: missing or not a node name", place,
                     i);
            return GHE_INVAL;
        }
        if (!cJSON_IsString(addr) || strlen(addr->valuestring) > 45 ||
            strspn(addr->valuestring, v6 ? "0123456789abcdefABCDEF:." : "0123456789.") !=
                strlen(addr->valuestring) ||
            addr->valuestring[0] == '\0') {
            ghe_errf(err, errlen, "%s.endpoints[%d].addresses[0]: missing or not an %s address",
                     place, i, v6 ? "IPv6" : "IPv4");
            return GHE_INVAL;
        }
        /* The API says a nil ready is an unknown state, to be read as ready. */
        bool is_ready = !cJSON_IsBool(ready) || cJSON_IsTrue(ready);
        size_t k;
        for (k = 0; k < *count; k++)
            if (strcmp(out[k].node, node->valuestring) == 0)
                break;
        if (k < *count && (out[k].ready || !is_ready)) {
            i++;
            continue; /* two agents on one node (a rollout): keep the ready one */
        }
        if (k == *count) {
            if (*count >= GPUVIEW_MAX_NODES) {
                ghe_errf(err, errlen, "%s: more than %d agent nodes", place, GPUVIEW_MAX_NODES);
                return GHE_TOOBIG;
            }
            (*count)++;
        }
        buf_copy_str(out[k].node, sizeof(out[k].node), node->valuestring);
        snprintf(out[k].url, sizeof(out[k].url),
                 v6 ? "http://[%s]:%ld/gpu?verbose" : "http://%s:%ld/gpu?verbose",
                 addr->valuestring, port);
        out[k].ready = is_ready;
        i++;
    }
    return 0;
}

int gpuview_set_endpoints(struct gpuview *v, const char *json, size_t len, const char *port_name,
                          long long now_ms, char *err, size_t errlen) {
    bool one;
    char place[64];
    size_t count = 0;
    int rc = 0, i = 0;
    const cJSON *slice;
    cJSON *root = parse_root(json, len, "EndpointSliceList", err, errlen);
    if (!root)
        return GHE_INVAL;
    struct ep_entry *eps = calloc(GPUVIEW_MAX_NODES, sizeof(*eps));
    const cJSON *items = list_items(root, "EndpointSlice", "EndpointSliceList", &one, err, errlen);
    if (!eps) {
        rc = GHE_NOMEM;
        goto out;
    }
    if (!items) {
        rc = GHE_INVAL;
        goto out;
    }
    if (one) {
        rc = parse_slice(items, port_name, "EndpointSlice", eps, &count, err, errlen);
    } else {
        cJSON_ArrayForEach(slice, items) {
            snprintf(place, sizeof(place), "EndpointSliceList.items[%d]", i++);
            rc = parse_slice(slice, port_name, place, eps, &count, err, errlen);
            if (rc)
                break;
        }
    }
    if (rc)
        goto out;
    /* Check room first, so that a failure leaves the view as it was. */
    size_t fresh = 0;
    for (size_t k = 0; k < count; k++)
        if (!node_lookup(v, eps[k].node))
            fresh++;
    if (v->count + fresh > GPUVIEW_MAX_NODES) {
        ghe_errf(err, errlen, "EndpointSliceList: more than %d nodes in the view",
                 GPUVIEW_MAX_NODES);
        rc = GHE_TOOBIG;
        goto out;
    }
    for (size_t k = 0; k < v->count; k++)
        v->nodes[k].in_endpoints = false;
    for (size_t k = 0; k < count; k++) {
        struct gpuview_node *n = node_get(v, eps[k].node);
        if (!n) {
            rc = GHE_NOMEM;
            goto out;
        }
        if (strcmp(n->agent_url, eps[k].url) != 0 || n->listed_at_ms == 0) {
            /* A new agent (or a new pod of it) starts over: its figures were another's. */
            agent_clear(n);
            buf_copy_str(n->agent_url, sizeof(n->agent_url), eps[k].url);
            n->listed_at_ms = now_ms;
        }
        n->in_endpoints = true;
        n->endpoint_ready = eps[k].ready;
    }
    for (size_t k = 0; k < v->count; k++)
        if (!v->nodes[k].in_endpoints)
            agent_clear(&v->nodes[k]);
    nodes_compact(v);
    v->endpoints_known = true;
    gpuview_refresh(v, now_ms);
out:
    free(eps);
    cJSON_Delete(root);
    return rc;
}

/* ---------- Nodes ---------- */

struct node_entry {
    char name[GPUVIEW_NAME_MAX];
    bool schedulable;
    long memory, count, allocatable, capacity;
    char product[96];
    char hostname[64];
};

static long quantity_of(const cJSON *obj, const char *key, const char *place, bool *bad, char *err,
                        size_t errlen) {
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(obj, key);
    long n;
    if (!q)
        return -1;
    if (cJSON_IsString(q) && parse_count(q->valuestring, &n))
        return n;
    ghe_errf(err, errlen, "%s[\"%s\"]: not a whole number", place, key);
    *bad = true;
    return -1;
}

static int parse_node(const cJSON *node, const char *place, struct node_entry *e, char *err,
                      size_t errlen) {
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(node, "metadata");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(meta, "name");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(meta, "labels");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(node, "spec");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(node, "status");
    const cJSON *product = cJSON_GetObjectItemCaseSensitive(labels, GFD_PRODUCT);
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(labels, "kubernetes.io/hostname");
    char sub[128];
    bool bad = false;
    if (!cJSON_IsString(name) || !name_ok(name->valuestring)) {
        ghe_errf(err, errlen, "%s.metadata.name: missing or not a node name", place);
        return GHE_INVAL;
    }
    memset(e, 0, sizeof(*e));
    buf_copy_str(e->name, sizeof(e->name), name->valuestring);
    e->schedulable = !cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(spec, "unschedulable"));
    snprintf(sub, sizeof(sub), "%s.metadata.labels", place);
    e->memory = quantity_of(labels, GFD_MEMORY, sub, &bad, err, errlen);
    e->count = quantity_of(labels, GFD_COUNT, sub, &bad, err, errlen);
    snprintf(sub, sizeof(sub), "%s.status.allocatable", place);
    e->allocatable = quantity_of(cJSON_GetObjectItemCaseSensitive(status, "allocatable"),
                                 GPU_RESOURCE, sub, &bad, err, errlen);
    snprintf(sub, sizeof(sub), "%s.status.capacity", place);
    e->capacity = quantity_of(cJSON_GetObjectItemCaseSensitive(status, "capacity"), GPU_RESOURCE,
                              sub, &bad, err, errlen);
    if (bad)
        return GHE_INVAL;
    if (cJSON_IsString(product))
        buf_copy_str(e->product, sizeof(e->product), product->valuestring);
    if (cJSON_IsString(host) && strlen(host->valuestring) < sizeof(e->hostname))
        buf_copy_str(e->hostname, sizeof(e->hostname), host->valuestring);
    return 0;
}

static bool node_entry_has_gpu(const struct node_entry *e) {
    return e->memory >= 0 || e->count >= 0 || e->product[0] || e->allocatable >= 0 ||
           e->capacity >= 0;
}

int gpuview_set_nodes(struct gpuview *v, const char *json, size_t len, char *err, size_t errlen) {
    bool one;
    char place[48];
    size_t count = 0;
    int rc = 0, i = 0;
    const cJSON *node;
    cJSON *root = parse_root(json, len, "NodeList", err, errlen);
    if (!root)
        return GHE_INVAL;
    struct node_entry *es = calloc(GPUVIEW_MAX_NODES, sizeof(*es));
    const cJSON *items = list_items(root, "Node", "NodeList", &one, err, errlen);
    if (!es || !items) {
        rc = es ? GHE_INVAL : GHE_NOMEM;
        goto out;
    }
    if (one) {
        rc = parse_node(items, "Node", &es[0], err, errlen);
        count = rc == 0 && node_entry_has_gpu(&es[0]) ? 1 : 0;
    } else {
        cJSON_ArrayForEach(node, items) {
            snprintf(place, sizeof(place), "NodeList.items[%d]", i++);
            if (count >= GPUVIEW_MAX_NODES) {
                ghe_errf(err, errlen, "NodeList: more than %d GPU nodes", GPUVIEW_MAX_NODES);
                rc = GHE_TOOBIG;
                break;
            }
            rc = parse_node(node, place, &es[count], err, errlen);
            if (rc)
                break;
            if (node_entry_has_gpu(&es[count]))
                count++;
        }
    }
    if (rc)
        goto out;
    size_t fresh = 0;
    for (size_t k = 0; k < count; k++)
        if (!node_lookup(v, es[k].name))
            fresh++;
    if (v->count + fresh > GPUVIEW_MAX_NODES) {
        ghe_errf(err, errlen, "NodeList: more than %d nodes in the view", GPUVIEW_MAX_NODES);
        rc = GHE_TOOBIG;
        goto out;
    }
    for (size_t k = 0; k < v->count; k++)
        nodeinfo_clear(&v->nodes[k]);
    for (size_t k = 0; k < count; k++) {
        struct gpuview_node *n = node_get(v, es[k].name);
        if (!n) {
            rc = GHE_NOMEM;
            goto out;
        }
        n->has_node = true;
        n->schedulable = es[k].schedulable;
        n->gfd_memory_mib = es[k].memory;
        n->gfd_count = es[k].count > INT_MAX ? INT_MAX : (int)es[k].count;
        buf_copy_str(n->gfd_product, sizeof(n->gfd_product), es[k].product);
        buf_copy_str(n->hostname, sizeof(n->hostname), es[k].hostname);
        n->allocatable = es[k].allocatable;
        n->capacity = es[k].capacity;
    }
    nodes_compact(v);
    v->nodes_known = true;
out:
    free(es);
    cJSON_Delete(root);
    return rc;
}

/* ---------- Pods ---------- */

/*
 * A container's nvidia.com/gpu request. The apiserver defaults a missing
 * request to the limit, and extended resources must have both equal, so a
 * limit alone is the request.
 */
static long container_gpus(const cJSON *c, bool *bad, char *err, size_t errlen, const char *place) {
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(c, "resources");
    long n = quantity_of(cJSON_GetObjectItemCaseSensitive(res, "requests"), GPU_RESOURCE, place,
                         bad, err, errlen);
    if (n < 0)
        n = quantity_of(cJSON_GetObjectItemCaseSensitive(res, "limits"), GPU_RESOURCE, place, bad,
                        err, errlen);
    return n < 0 ? 0 : n;
}

/*
 * A pod's request as kube-scheduler counts it (k8s.io/component-helpers
 * resource.PodRequests): init containers run one after another, each beside
 * the sidecars (restartPolicy Always) started before it, and sidecars keep
 * running beside the containers; the pod holds the larger of the two phases,
 * plus its overhead.
 */
static long pod_gpus(const cJSON *spec, bool *bad, char *err, size_t errlen, const char *place) {
    const cJSON *c;
    long sum = 0, sidecars = 0, init_max = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(spec, "containers")) {
        sum += container_gpus(c, bad, err, errlen, place);
    }
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(spec, "initContainers")) {
        const cJSON *policy = cJSON_GetObjectItemCaseSensitive(c, "restartPolicy");
        long g = container_gpus(c, bad, err, errlen, place), phase;
        if (cJSON_IsString(policy) && strcmp(policy->valuestring, "Always") == 0) {
            sum += g;
            sidecars += g;
            phase = sidecars;
        } else {
            phase = g + sidecars;
        }
        if (phase > init_max)
            init_max = phase;
    }
    long overhead = quantity_of(cJSON_GetObjectItemCaseSensitive(spec, "overhead"), GPU_RESOURCE,
                                place, bad, err, errlen);
    return (sum > init_max ? sum : init_max) + (overhead > 0 ? overhead : 0);
}

void gpuview_pods_begin(struct gpuview *v) {
    for (size_t k = 0; k < v->count; k++)
        v->nodes[k].requested_next = 0;
}

int gpuview_pods_page(struct gpuview *v, const char *json, size_t len, char *cont, size_t contlen,
                      char *err, size_t errlen) {
    bool one, bad = false;
    char place[64];
    int rc = 0, i = 0;
    const cJSON *pod;
    long *sums = NULL;
    if (cont && contlen)
        cont[0] = '\0';
    cJSON *root = parse_root(json, len, "PodList", err, errlen);
    if (!root)
        return GHE_INVAL;
    const cJSON *items = list_items(root, "Pod", "PodList", &one, err, errlen);
    if (!items || one) {
        if (one)
            ghe_errf(err, errlen, "PodList: expected a PodList, got one Pod");
        rc = GHE_INVAL;
        goto out;
    }
    /* Summed apart first, so that a bad pod leaves the running sums as they were. */
    sums = calloc(v->count ? v->count : 1, sizeof(*sums));
    if (!sums) {
        rc = GHE_NOMEM;
        goto out;
    }
    cJSON_ArrayForEach(pod, items) {
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(pod, "spec");
        const cJSON *phase = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(pod, "status"), "phase");
        const cJSON *node = cJSON_GetObjectItemCaseSensitive(spec, "nodeName");
        snprintf(place, sizeof(place), "PodList.items[%d].spec", i++);
        if (!cJSON_IsString(node) || !node->valuestring[0])
            continue; /* not bound yet: it holds nothing on any node */
        if (cJSON_IsString(phase) && (strcmp(phase->valuestring, "Succeeded") == 0 ||
                                      strcmp(phase->valuestring, "Failed") == 0))
            continue;
        struct gpuview_node *n = node_lookup(v, node->valuestring);
        if (!n)
            continue; /* not a GPU node */
        long g = pod_gpus(spec, &bad, err, errlen, place);
        if (bad) {
            rc = GHE_INVAL;
            goto out;
        }
        sums[n - v->nodes] += g;
    }
    const cJSON *next = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(root, "metadata"), "continue");
    if (cJSON_IsString(next) && next->valuestring[0] && cont) {
        if (strlen(next->valuestring) >= contlen) {
            ghe_errf(err, errlen, "PodList: .metadata.continue: longer than %zu bytes", contlen);
            rc = GHE_TOOBIG;
            goto out;
        }
        memcpy(cont, next->valuestring, strlen(next->valuestring) + 1);
    }
    for (size_t k = 0; k < v->count; k++)
        v->nodes[k].requested_next += sums[k];
out:
    free(sums);
    cJSON_Delete(root);
    return rc;
}

void gpuview_pods_commit(struct gpuview *v) {
    for (size_t k = 0; k < v->count; k++)
        v->nodes[k].requested = v->nodes[k].requested_next;
    v->pods_state = GPUVIEW_PODS_LISTED;
    v->pods_error[0] = '\0';
}

void gpuview_pods_failed(struct gpuview *v, const char *why) {
    for (size_t k = 0; k < v->count; k++)
        v->nodes[k].requested = -1;
    v->pods_state = GPUVIEW_PODS_FAILED;
    buf_copy_str(v->pods_error, sizeof(v->pods_error), why ? why : "the Pod list failed");
}

int gpuview_set_pods(struct gpuview *v, const char *json, size_t len, char *err, size_t errlen) {
    gpuview_pods_begin(v);
    int rc = gpuview_pods_page(v, json, len, NULL, 0, err, errlen);
    if (rc == 0)
        gpuview_pods_commit(v);
    return rc;
}

/* ---------- Agents ---------- */

static const cJSON *obj(const cJSON *o, const char *k) {
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static int parse_device(const cJSON *d, int i, struct gpuview_gpu *g, bool all_unusable, char *err,
                        size_t errlen) {
    const cJSON *index = obj(d, "index"), *name = obj(d, "name"), *uuid = obj(d, "uuid");
    const cJSON *mem = obj(d, "memory");
    const cJSON *total = obj(mem, "total_mib"), *freem = obj(mem, "free_mib");
    const cJSON *procs = obj(d, "compute_processes");
    const cJSON *xid_fatal = obj(obj(d, "last_xid"), "fatal");
    const cJSON *remap_failed = obj(obj(d, "remapped_rows"), "failure");
    memset(g, 0, sizeof(*g));
    if (!cJSON_IsNumber(index) || index->valuedouble < 0 || index->valuedouble > 1024) {
        ghe_errf(err, errlen, "agent body: .devices[%d].index: missing or not a device index", i);
        return GHE_INVAL;
    }
    if (!cJSON_IsNumber(total) || total->valuedouble < 0) {
        ghe_errf(err, errlen, "agent body: .devices[%d].memory.total_mib: missing or negative", i);
        return GHE_INVAL;
    }
    if (freem && !cJSON_IsNull(freem) && (!cJSON_IsNumber(freem) || freem->valuedouble < 0)) {
        ghe_errf(err, errlen, "agent body: .devices[%d].memory.free_mib: not a number or null", i);
        return GHE_INVAL;
    }
    if (procs && !cJSON_IsNumber(procs) && !cJSON_IsBool(procs) && !cJSON_IsNull(procs)) {
        ghe_errf(err, errlen, "agent body: .devices[%d].compute_processes: not a count", i);
        return GHE_INVAL;
    }
    g->index = (int)index->valuedouble;
    buf_copy_str(g->name, sizeof(g->name), cJSON_IsString(name) ? name->valuestring : "");
    buf_copy_str(g->uuid, sizeof(g->uuid), cJSON_IsString(uuid) ? uuid->valuestring : "");
    g->total_mib = (long)total->valuedouble;
    g->total_source = GPUVIEW_SRC_AGENT;
    if (cJSON_IsNumber(freem)) {
        g->free_mib = (long)freem->valuedouble;
        g->free_source = GPUVIEW_SRC_AGENT;
    } else {
        g->free_mib = -1;
        g->free_source = GPUVIEW_SRC_NONE;
    }
    g->busy = cJSON_IsTrue(procs) || (cJSON_IsNumber(procs) && procs->valuedouble > 0);
    g->usable = !all_unusable && !cJSON_IsTrue(xid_fatal) && !cJSON_IsTrue(remap_failed);
    return 0;
}

static int agent_parse(struct gpuview_node *n, const char *body, size_t len, char *err,
                       size_t errlen) {
    struct gpuview_gpu gpus[GPUVIEW_MAX_GPUS];
    const cJSON *d;
    int count = 0, rc = 0;
    cJSON *root = parse_root(body, len, "agent body", err, errlen);
    if (!root)
        return GHE_INVAL;
    const cJSON *status = obj(root, "status"), *node = obj(root, "node");
    const cJSON *devices = obj(root, "devices");
    if (!cJSON_IsString(status) ||
        (strcmp(status->valuestring, "ok") != 0 && strcmp(status->valuestring, "degraded") != 0 &&
         strcmp(status->valuestring, "unavailable") != 0)) {
        ghe_errf(err, errlen, "agent body: .status: missing or not ok, degraded or unavailable");
        rc = GHE_INVAL;
        goto out;
    }
    if (node && (!cJSON_IsString(node) || strcmp(node->valuestring, n->name) != 0)) {
        /* An answer from another node's agent would put its GPUs on the wrong node. */
        ghe_errf(err, errlen, "agent body: .node: \"%.64s\" is not the endpoint's node \"%.64s\"",
                 cJSON_IsString(node) ? node->valuestring : "?", n->name);
        rc = GHE_INVAL;
        goto out;
    }
    if (!cJSON_IsArray(devices)) {
        ghe_errf(err, errlen,
                 "agent body: .devices: missing or not an array (is it GET /gpu?verbose?)");
        rc = GHE_INVAL;
        goto out;
    }
    bool unavailable = strcmp(status->valuestring, "unavailable") == 0;
    cJSON_ArrayForEach(d, devices) {
        if (count >= GPUVIEW_MAX_GPUS)
            break; /* more GPUs than a view holds: the first ones are kept */
        rc = parse_device(d, count, &gpus[count], unavailable, err, errlen);
        if (rc)
            goto out;
        count++;
    }
    memcpy(n->gpus, gpus, (size_t)count * sizeof(gpus[0]));
    n->gpu_count = count;
    buf_copy_str(n->agent_status, sizeof(n->agent_status), status->valuestring);
out:
    cJSON_Delete(root);
    return rc;
}

int gpuview_agent_answer(struct gpuview *v, const char *node_name, const char *body, size_t len,
                         long long now_ms, char *err, size_t errlen) {
    struct gpuview_node *n = node_name ? node_lookup(v, node_name) : NULL;
    if (!n || !n->in_endpoints) {
        ghe_errf(err, errlen, "agent answer for a node not listed in the EndpointSlices");
        return GHE_NOTFOUND;
    }
    char why[sizeof(n->last_error)];
    int rc = agent_parse(n, body, len, why, sizeof(why));
    if (rc) {
        ghe_errf(err, errlen, "%s", why);
        gpuview_agent_failed(v, node_name, why, now_ms);
        return rc;
    }
    n->answered_at_ms = now_ms;
    n->failures = 0;
    n->last_error[0] = '\0';
    gpuview_refresh(v, now_ms);
    return 0;
}

int gpuview_agent_failed(struct gpuview *v, const char *node_name, const char *why,
                         long long now_ms) {
    struct gpuview_node *n = node_name ? node_lookup(v, node_name) : NULL;
    if (!n || !n->in_endpoints)
        return GHE_NOTFOUND;
    n->failed_at_ms = now_ms;
    n->failures++;
    buf_copy_str(n->last_error, sizeof(n->last_error), why ? why : "failed");
    gpuview_refresh(v, now_ms);
    return 0;
}

void gpuview_refresh(struct gpuview *v, long long now_ms) {
    long long limit = (long long)v->opts.stale_after * v->opts.poll_interval_ms;
    for (size_t k = 0; k < v->count; k++) {
        struct gpuview_node *n = &v->nodes[k];
        if (!n->in_endpoints) {
            n->agent_state = GPUVIEW_AGENT_NONE;
        } else if (!n->endpoint_ready) {
            n->agent_state = GPUVIEW_AGENT_NOT_READY;
        } else if (n->answered_at_ms) {
            n->agent_state =
                now_ms - n->answered_at_ms < limit ? GPUVIEW_AGENT_FRESH : GPUVIEW_AGENT_STALE;
        } else {
            /* Never answered: pending for as long as a silent agent would stay fresh. */
            n->agent_state =
                now_ms - n->listed_at_ms < limit ? GPUVIEW_AGENT_PENDING : GPUVIEW_AGENT_STALE;
        }
    }
}

bool gpuview_has_data(const struct gpuview *v) {
    for (size_t k = 0; k < v->count; k++) {
        const struct gpuview_node *n = &v->nodes[k];
        if (n->answered_at_ms || n->gfd_memory_mib >= 0)
            return true;
    }
    return false;
}
