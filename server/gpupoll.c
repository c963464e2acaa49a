/*
 * The agent poller: one curl_multi, one easy handle per agent per round. Each
 * transfer carries its own timeouts, so a hanging agent costs its timeout and
 * no more, and the others are not held behind it.
 */
#include "gpuhook/gpupoll.h"
#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/error.h"

#include <curl/curl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct target {
    char node[GPUVIEW_NAME_MAX];
    char url[GPUVIEW_URL_MAX];
    CURL *h;
    struct buf body;
    bool toobig;
    bool done;
    bool ok;
    char why[128];
};

struct gpupoll {
    struct gpupoll_options opts;
    CURLM *multi;
    struct target *targets;
    size_t count;
    atomic_bool cancel;
    struct gpupoll_stats last;
};

void gpupoll_options_init(struct gpupoll_options *o) {
    o->timeout_ms = 1000;
    o->connect_timeout_ms = 500;
    o->max_body = 256 * 1024;
}

struct gpupoll *gpupoll_new(const struct gpupoll_options *o) {
    struct gpupoll *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    if (o)
        p->opts = *o;
    else
        gpupoll_options_init(&p->opts);
    if (p->opts.timeout_ms < 1)
        p->opts.timeout_ms = 1000;
    if (p->opts.connect_timeout_ms < 1 || p->opts.connect_timeout_ms > p->opts.timeout_ms)
        p->opts.connect_timeout_ms = p->opts.timeout_ms;
    if (p->opts.max_body < 1024)
        p->opts.max_body = 1024;
    atomic_init(&p->cancel, false);
    p->multi = curl_multi_init();
    if (!p->multi) {
        free(p);
        return NULL;
    }
    return p;
}

static void targets_clear(struct gpupoll *p) {
    for (size_t i = 0; i < p->count; i++) {
        if (p->targets[i].h) {
            curl_multi_remove_handle(p->multi, p->targets[i].h);
            curl_easy_cleanup(p->targets[i].h);
        }
        buf_cleanup(&p->targets[i].body);
    }
    free(p->targets);
    p->targets = NULL;
    p->count = 0;
}

void gpupoll_free(struct gpupoll *p) {
    if (!p)
        return;
    targets_clear(p);
    curl_multi_cleanup(p->multi);
    free(p);
}

int gpupoll_prepare(struct gpupoll *p, const struct gpuview *v) {
    size_t n = 0;
    targets_clear(p);
    for (size_t k = 0; k < v->count; k++)
        if (v->nodes[k].in_endpoints && v->nodes[k].endpoint_ready)
            n++;
    if (n == 0)
        return 0;
    p->targets = calloc(n, sizeof(*p->targets));
    if (!p->targets)
        return GHE_NOMEM;
    for (size_t k = 0; k < v->count; k++) {
        const struct gpuview_node *node = &v->nodes[k];
        if (!node->in_endpoints || !node->endpoint_ready)
            continue;
        struct target *t = &p->targets[p->count++];
        buf_copy_str(t->node, sizeof(t->node), node->name);
        buf_copy_str(t->url, sizeof(t->url), node->agent_url);
        buf_init(&t->body, p->opts.max_body);
    }
    return (int)p->count;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userp) {
    struct target *t = userp;
    size_t n = size * nmemb;
    if (buf_append(&t->body, data, n) != 0) {
        t->toobig = true;
        return 0; /* curl stops with CURLE_WRITE_ERROR */
    }
    return n;
}

static int target_start(struct gpupoll *p, struct target *t) {
    CURL *h = curl_easy_init();
    if (!h)
        return GHE_NOMEM;
    curl_easy_setopt(h, CURLOPT_URL, t->url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, p->opts.timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, p->opts.connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)p->opts.max_body);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(h, CURLOPT_PRIVATE, t);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "gpuhook-gpupoll");
    if (curl_multi_add_handle(p->multi, h) != CURLM_OK) {
        curl_easy_cleanup(h);
        return GHE_UNAVAILABLE;
    }
    t->h = h;
    return 0;
}

static void target_done(struct gpupoll *p, struct target *t, CURLcode code) {
    long status = 0;
    t->done = true;
    if (t->toobig || code == CURLE_FILESIZE_EXCEEDED) {
        snprintf(t->why, sizeof(t->why), "answer over %zu bytes", p->opts.max_body);
        return;
    }
    if (code != CURLE_OK) {
        snprintf(t->why, sizeof(t->why), "%s", curl_easy_strerror(code));
        return;
    }
    curl_easy_getinfo(t->h, CURLINFO_RESPONSE_CODE, &status);
    /* The agent answers 503 when its GPUs are unavailable; the body still says why. */
    if (status != 200 && status != 503) {
        snprintf(t->why, sizeof(t->why), "HTTP %ld from the agent", status);
        return;
    }
    t->ok = true;
}

int gpupoll_run(struct gpupoll *p) {
    int running = 0, rc = 0;
    long long start = clock_mono_ms();
    /* curl enforces each timeout; the deadline only guards against a stuck loop. */
    long long deadline = start + p->opts.timeout_ms + 500;
    for (size_t i = 0; i < p->count; i++) {
        rc = target_start(p, &p->targets[i]);
        if (rc) {
            snprintf(p->targets[i].why, sizeof(p->targets[i].why), "%s", ghe_strerror(rc));
            p->targets[i].done = true;
        }
    }
    rc = 0;
    for (;;) {
        CURLMsg *msg;
        int left;
        if (curl_multi_perform(p->multi, &running) != CURLM_OK) {
            rc = GHE_UNAVAILABLE;
            break;
        }
        while ((msg = curl_multi_info_read(p->multi, &left))) {
            struct target *t = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
            if (t)
                target_done(p, t, msg->data.result);
        }
        if (running == 0 || atomic_load(&p->cancel))
            break;
        long long now = clock_mono_ms();
        if (now >= deadline)
            break;
        long long wait = deadline - now < 200 ? deadline - now : 200;
        if (curl_multi_poll(p->multi, NULL, 0, (int)wait, NULL) != CURLM_OK) {
            rc = GHE_UNAVAILABLE;
            break;
        }
    }
    bool cancelled = atomic_exchange(&p->cancel, false);
    for (size_t i = 0; i < p->count; i++) {
        struct target *t = &p->targets[i];
        if (!t->done) {
            t->done = true;
            snprintf(t->why, sizeof(t->why), "%s",
                     cancelled ? "poll cancelled"
                     : rc      ? "curl_multi failed"
                               : "timed out");
        }
        if (t->h) {
            curl_multi_remove_handle(p->multi, t->h);
            curl_easy_cleanup(t->h);
            t->h = NULL;
        }
    }
    p->last.targets = p->count;
    p->last.round_ms = clock_mono_ms() - start;
    return rc;
}

int gpupoll_apply(struct gpupoll *p, struct gpuview *v, long long now_ms) {
    char err[160];
    size_t answered = 0, failed = 0;
    for (size_t i = 0; i < p->count; i++) {
        struct target *t = &p->targets[i];
        const struct gpuview_node *n = gpuview_node_find(v, t->node);
        if (!n || strcmp(n->agent_url, t->url) != 0)
            continue; /* the agent moved or left while the round ran */
        if (t->ok && gpuview_agent_answer(v, t->node, t->body.data ? t->body.data : "", t->body.len,
                                          now_ms, err, sizeof(err)) == 0) {
            answered++;
        } else {
            if (!t->ok)
                gpuview_agent_failed(v, t->node, t->why, now_ms);
            failed++;
        }
    }
    p->last.answered = answered;
    p->last.failed = failed;
    return (int)answered;
}

int gpupoll_round(struct gpupoll *p, struct gpuview *v, long long now_ms) {
    int rc = gpupoll_prepare(p, v);
    if (rc < 0)
        return rc;
    gpupoll_run(p);
    return gpupoll_apply(p, v, now_ms);
}

void gpupoll_cancel(struct gpupoll *p) {
    atomic_store(&p->cancel, true);
    curl_multi_wakeup(p->multi);
}

struct gpupoll_stats gpupoll_last(const struct gpupoll *p) {
    return p->last;
}
