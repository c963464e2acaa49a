/*
 * The cluster GPU view (issue 19): what every GPU node can take, built from
 * three sources. Agents (`gpuhook agent` on each GPU node) answer GET
 * /gpu?verbose with NVML's figures; GPU Feature Discovery labels Nodes with the
 * model and its memory; the device plugin reports allocatable nvidia.com/gpu.
 * An EndpointSlice list says which agents exist and on which node.
 *
 * This module only models and judges: it parses the three inputs, marks agents
 * stale, renders GET /gpu's cluster body and the Prometheus lines, picks the
 * node for a variant (gpuview_fit) and renders the placement affinity. It does
 * no I/O and takes no lock: gpupoll.c fetches the agents, and the caller
 * serializes access to one struct gpuview (one writer, or a mutex around it).
 */
#ifndef GPUHOOK_GPUVIEW_H
#define GPUHOOK_GPUVIEW_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/buf.h"

struct cJSON;

/* Bounds: a view never holds more, so /gpu and /metrics stay bounded too. */
#define GPUVIEW_MAX_NODES 256
#define GPUVIEW_MAX_GPUS 16
#define GPUVIEW_NAME_MAX 254 /* a DNS subdomain (a node name) and its NUL */
#define GPUVIEW_URL_MAX 320
#define GPUVIEW_REASON_MAX 320

/* Where a figure comes from. */
enum gpuview_source {
    GPUVIEW_SRC_NONE = 0,
    GPUVIEW_SRC_AGENT,       /* the node's agent, read from NVML */
    GPUVIEW_SRC_GFD,         /* the nvidia.com/gpu.memory label: the model's memory */
    GPUVIEW_SRC_ALLOCATABLE, /* status.allocatable["nvidia.com/gpu"] */
};

/* What is known of an agent. */
enum gpuview_agent_state {
    GPUVIEW_AGENT_NONE = 0, /* no endpoint names this node */
    GPUVIEW_AGENT_PENDING,  /* listed, not answered yet, not yet stale */
    GPUVIEW_AGENT_FRESH,    /* answered within stale_after intervals */
    GPUVIEW_AGENT_STALE,    /* no answer for stale_after poll intervals */
    GPUVIEW_AGENT_NOT_READY /* the endpoint's conditions.ready is false */
};

struct gpuview_gpu {
    int index;
    char name[96];
    char uuid[64];
    long total_mib;   /* -1 unknown */
    long free_mib;    /* -1 unknown (GFD never knows it) */
    bool busy;        /* the agent saw compute processes on it */
    bool usable;      /* no fatal XID, no failed row remap */
    int total_source; /* enum gpuview_source */
    int free_source;  /* enum gpuview_source */
};

struct gpuview_node {
    char name[GPUVIEW_NAME_MAX];

    /* From the EndpointSlices. */
    int agent_state; /* enum gpuview_agent_state, refreshed by gpuview_refresh */
    char agent_url[GPUVIEW_URL_MAX];
    long long listed_at_ms; /* when the endpoint first appeared (wall clock) */
    bool in_endpoints;      /* listed in the latest EndpointSlice list */
    bool endpoint_ready;

    /* From the agent. */
    long long answered_at_ms; /* last good answer, 0 never */
    long long failed_at_ms;   /* last failed poll, 0 never */
    int failures;             /* consecutive failed polls */
    char agent_status[16];    /* "ok", "degraded", "unavailable" */
    char last_error[128];     /* why the last poll failed, "" after a good one */
    int gpu_count;
    struct gpuview_gpu gpus[GPUVIEW_MAX_GPUS];

    /* From the Node object. */
    bool has_node;
    bool schedulable;     /* not spec.unschedulable */
    long gfd_memory_mib;  /* nvidia.com/gpu.memory, -1 absent */
    int gfd_count;        /* nvidia.com/gpu.count, -1 absent */
    char gfd_product[96]; /* nvidia.com/gpu.product, "" absent */
    char hostname[64];    /* the kubernetes.io/hostname label, "" absent */
    long allocatable;     /* status.allocatable["nvidia.com/gpu"], -1 absent */
    long capacity;        /* status.capacity["nvidia.com/gpu"], -1 absent */
    long requested;       /* GPUs requested by pods on the node, -1 unknown */
    long requested_next;  /* the sum of the Pod list being read, page by page */
};

/* Where the pods' requests stand (the GFD fit's unallocated count). */
enum gpuview_pods_state {
    GPUVIEW_PODS_NONE = 0, /* never listed: unallocated is allocatable */
    GPUVIEW_PODS_LISTED,   /* the last Pod list was read whole */
    GPUVIEW_PODS_FAILED    /* the last Pod list failed: allocatable only, pods_error says why */
};

struct gpuview_options {
    long poll_interval_ms; /* how often the poller runs, >= 100 */
    int stale_after;       /* polls without an answer before an agent is stale, >= 1 */
};

struct gpuview {
    struct gpuview_options opts;
    struct gpuview_node *nodes; /* sorted by name */
    size_t count;
    bool endpoints_known; /* an EndpointSlice list was given */
    bool nodes_known;     /* a Node list was given */
    int pods_state;       /* enum gpuview_pods_state */
    char pods_error[128]; /* why the last Pod list failed, "" otherwise */
};

/* Fills o with the defaults: a 5000 ms interval, stale after 3 polls. */
void gpuview_options_init(struct gpuview_options *o);
/* Initializes an empty view (caller-owned struct); gpuview_cleanup frees. */
void gpuview_init(struct gpuview *v, const struct gpuview_options *o);
void gpuview_cleanup(struct gpuview *v);

/*
 * Replaces the agent list from a discovery.k8s.io/v1 EndpointSliceList (or one
 * EndpointSlice). An endpoint needs nodeName and an address; the port is the
 * slice's port named port_name (or its only port when port_name is NULL). Nodes
 * no longer listed lose their agent figures. now_ms is the wall clock. Returns
 * 0, or GHE_INVAL with a message in err naming the place (the view is then
 * unchanged), GHE_TOOBIG past GPUVIEW_MAX_NODES, GHE_NOMEM.
 */
int gpuview_set_endpoints(struct gpuview *v, const char *json, size_t len, const char *port_name,
                          long long now_ms, char *err, size_t errlen);

/*
 * Replaces the Node data from a v1 NodeList (or one Node): GFD labels,
 * allocatable and capacity nvidia.com/gpu, spec.unschedulable. Nodes with none
 * of these are skipped (they have no GPU to offer). Same errors as above.
 */
int gpuview_set_nodes(struct gpuview *v, const char *json, size_t len, char *err, size_t errlen);

/*
 * Sums the nvidia.com/gpu each node's pods request from a v1 PodList, as
 * kube-scheduler counts a pod: the larger of its containers' sum and its
 * largest init container (sidecars, restartPolicy Always, add to both), plus
 * spec.overhead; a container's request, else its limit. Pods without
 * spec.nodeName hold nothing yet; Succeeded and Failed pods hold nothing any
 * more. Without a list, requested stays unknown (-1) and the GFD fit counts
 * every allocatable GPU as unallocated. One whole list: gpuview_pods_begin,
 * gpuview_pods_page and gpuview_pods_commit in one call. Same errors as above.
 */
int gpuview_set_pods(struct gpuview *v, const char *json, size_t len, char *err, size_t errlen);

/*
 * A Pod list read in pages (limit and continue): begin clears the running sums,
 * each page adds to them and copies metadata.continue into cont ("" on the last
 * page; GHE_TOOBIG when it does not fit in contlen), and commit makes the sums
 * the nodes' requested figures. A failed page (GHE_INVAL with err) changes no
 * committed figure. Nodes must not change between begin and commit.
 */
void gpuview_pods_begin(struct gpuview *v);
int gpuview_pods_page(struct gpuview *v, const char *json, size_t len, char *cont, size_t contlen,
                      char *err, size_t errlen);
void gpuview_pods_commit(struct gpuview *v);

/*
 * The Pod list failed (forbidden, unreachable, not parsed): requests become
 * unknown, so the fit counts allocatable only and says why (why is copied).
 */
void gpuview_pods_failed(struct gpuview *v, const char *why);

/*
 * Records one agent answer: the JSON body of its GET /gpu?verbose, fetched at
 * now_ms. The node is matched by node_name (the endpoint's nodeName); a body
 * whose own "node" disagrees is refused. Returns 0, GHE_NOTFOUND for a node not
 * listed, or GHE_INVAL with a reason in err (which is also kept as the agent's
 * last error, and counts as a failed poll).
 */
int gpuview_agent_answer(struct gpuview *v, const char *node_name, const char *body, size_t len,
                         long long now_ms, char *err, size_t errlen);
/* Records a failed poll of node_name's agent, with a short reason (copied). */
int gpuview_agent_failed(struct gpuview *v, const char *node_name, const char *why,
                         long long now_ms);

/* Recomputes every agent's state for now_ms (call before reading the view). */
void gpuview_refresh(struct gpuview *v, long long now_ms);

/* The node named name, or NULL. */
const struct gpuview_node *gpuview_node_find(const struct gpuview *v, const char *name);

/* "agent", "gfd", "allocatable" or "none"; "fresh", "stale", … (static strings). */
const char *gpuview_source_name(int source);
const char *gpuview_agent_state_name(int state);

/* True when the view has anything to say: an agent answered, or GFD labels exist. */
bool gpuview_has_data(const struct gpuview *v);

/* ---------- The fit against the cluster (gpufit_cluster.c) ---------- */

/* One variant's need, as the fit check and GET /gpu's fit block take it. */
struct gpuview_need {
    const char *variant; /* "lite", "original" */
    long need_mib;
};

#define GPUVIEW_FIT_REJECTS_MAX 16

struct gpuview_fit {
    bool no_view; /* no agent answered and no node has GFD labels: keep the local view */
    bool fits;
    int source; /* GPUVIEW_SRC_AGENT or GPUVIEW_SRC_GFD, for the chosen node */
    char node[GPUVIEW_NAME_MAX];
    int gpu_index; /* -1 when the GFD fit has no index to name */
    char gpu_name[96];
    long free_mib; /* agent: free on that GPU; gfd: the model's memory */
    long need_mib;
    char reason[GPUVIEW_REASON_MAX];
    /* Why each other node did not take it, by node name; capped, with the total. */
    size_t reject_count;
    size_t reject_total;
    char rejects[GPUVIEW_FIT_REJECTS_MAX][GPUVIEW_REASON_MAX];
};

/*
 * Picks the node for a variant: among nodes whose agent is fresh, the usable
 * GPU with the most free memory, at least need_mib (ties by node name, then
 * GPU index); when no node has a fresh agent, a schedulable node whose GFD
 * model has at least need_mib and which has an unallocated GPU. Stale and
 * not-ready agents exclude their node. Call gpuview_refresh first. Fills out;
 * returns 0 (a fit or not), or GHE_INVAL for a NULL or negative need.
 */
int gpuview_fit(const struct gpuview *v, const struct gpuview_need *need, struct gpuview_fit *out);

/*
 * The taskRunTemplate.podTemplate.affinity object for a fit (caller frees with
 * cJSON_Delete): a required nvidia.com/gpu.memory Gt (need - 1) when any node
 * has GFD labels, and a preferred (weight 100) kubernetes.io/hostname In [node].
 * NULL when enabled is false, when the fit did not fit, when there is nothing
 * to say, or when memory runs out.
 */
struct cJSON *gpuview_affinity(const struct gpuview *v, const struct gpuview_fit *fit,
                               bool enabled);

/* ---------- Rendering (gpuview_json.c) ---------- */

/*
 * GET /gpu's cluster body (caller frees): nodes with their GPUs, free memory,
 * busy GPUs, agent state and the source of each figure; stale agents; and, for
 * each of needs, which node would take it. node_filter (NULL for all) narrows
 * the nodes to one name; *found is false when it matched none. Agent states are
 * those of the last gpuview_refresh (call it with the same now_ms first). NULL
 * only when memory runs out.
 */
char *gpuview_json(const struct gpuview *v, long long now_ms, const char *node_filter,
                   const struct gpuview_need *needs, size_t need_count, bool *found);

/*
 * Appends the per-node and per-GPU gauges in Prometheus text format: at most
 * one line per GPU per gauge, and one per node for the agent state.
 */
int gpuview_metrics_append(const struct gpuview *v, struct buf *b);

#endif
