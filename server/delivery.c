#include "gpuhook/delivery.h"
#include "gpuhook/admission.h"
#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/config.h"
#include "gpuhook/fileio.h"
#include "gpuhook/ghreport.h"
#include "gpuhook/kube.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"
#include "gpuhook/spool.h"
#include "gpuhook/watcher.h"
#include "gpuhook/workpool.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DELIVERY_READY_CACHE_MS 1000
#define DELIVERY_FILE_MAX (64 * 1024 * 1024) /* a rendered run, as pipeline.h bounds it */
/* A work-pool thread idle this long exits, down to the pool's minimum. */
#define DELIVERY_POOL_IDLE_MS 10000

struct delivery {
    int mode;
    long timeout_ms;
    char *namespace;
    char *local_dir;
    char *spool_dir;
    struct kube *kube;
    struct spool *spool;
    struct workpool *pool; /* the threads that may block (fsync); NULL: deliver inline */
    struct watcher *watcher; /* the shared watcher (API modes with concurrency); NULL else */
    bool watcher_started;
    struct ghreport *report; /* GitHub feedback (github.report); NULL: off */

    pthread_mutex_t lock; /* guards the readiness cache */
    long ready_at_ms;
    bool ready_ok;
    bool api_ok;
    char ready_detail[512];
    char api_detail[512];
};

static const char *const delivery_names[] = {"created", "exists",   "queued",
                                             "dry_run", "rejected", "unavailable"};

const char *delivery_outcome_name(int outcome) {
    return outcome >= 0 && outcome <= DELIVERY_UNAVAILABLE ? delivery_names[outcome] : "unknown";
}

static int delivery_report_new(struct delivery *d, const struct config *cfg, struct errlist *el);

int delivery_new(const struct config *cfg, struct delivery **out, struct errlist *el) {
    struct delivery *d = calloc(1, sizeof(*d));
    char err[512];

    *out = NULL;
    if (!d)
        return GHE_NOMEM;
    pthread_mutex_init(&d->lock, NULL);
    d->mode = cfg->kube_mode;
    d->timeout_ms = cfg->kube_timeout_seconds * 1000L;
    if (d->mode == CONFIG_KUBE_URL || d->mode == CONFIG_KUBE_IN_CLUSTER) {
        if (kube_new(cfg, &d->kube, el) != 0)
            goto fail;
        d->namespace = strdup(kube_namespace(d->kube));
        if (spool_open(cfg->spool_dir, cfg->spool_max_age_hours, &d->spool, err, sizeof(err))) {
            errlist_add(el, "%s", err);
            goto fail;
        }
        spool_set_retry_after_max(d->spool, cfg->spool_retry_after_max_seconds);
        d->spool_dir = strdup(cfg->spool_dir);
        if (cfg->concurrency_group || CONFIG_REPORTS(cfg) || config_gpu_queues(cfg)) {
            struct watcher_config wc = {
                .namespace_ = d->namespace,
                .lease_name = cfg->concurrency_lease_name ? cfg->concurrency_lease_name
                                                     : "gpuhook-scheduler",
                .lease_duration_ms = cfg->concurrency_lease_duration_seconds > 0
                                         ? cfg->concurrency_lease_duration_seconds * 1000L
                                         : 15000,
            };
            if (watcher_new(d->kube, &wc, &d->watcher, err, sizeof(err)) != 0) {
                errlist_add(el, "the PipelineRun watcher: %s", err);
                goto fail;
            }
        }
        if (CONFIG_REPORTS(cfg) && delivery_report_new(d, cfg, el) != 0)
            goto fail;
    } else {
        d->namespace = strdup(cfg->kube_namespace ? cfg->kube_namespace : "tekton-pipelines");
    }
    if (d->mode == CONFIG_KUBE_LOCAL) {
        d->local_dir = strdup(cfg->kube_local_dir);
        if (spool_mkdirs(d->local_dir) != 0) {
            errlist_add(el, "kubernetes.local_dir %s: %s", d->local_dir, strerror(errno));
            goto fail;
        }
    }
    *out = d;
    return 0;
fail:
    delivery_free(d);
    return GHE_INVAL;
}

/* github.report: the reporter subscribes to the watcher before it starts. */
static int delivery_report_new(struct delivery *d, const struct config *cfg, struct errlist *el) {
    char err[512];
    struct watcher *w = d->watcher;
    struct ghreport_config rc = {.api_url = cfg->report_api_url,
                                 .app_id = cfg->report_app_id,
                                 .private_key_file = cfg->report_private_key_file,
                                 .installation_id = cfg->report_installation_id,
                                 .token_file = cfg->report_token_file,
                                 .ca_file = cfg->report_ca_file,
                                 .details_url = cfg->report_details_url,
                                 .namespace_ = d->namespace,
                                 .queue_max = (size_t)cfg->report_queue_max,
                                 .max_attempts = (int)cfg->report_max_attempts};
    if (!w) {
        errlist_add(el, "github.report: cannot watch the PipelineRuns");
        return GHE_INVAL;
    }
    if (ghreport_new(&rc, w, &d->report, err, sizeof(err)) != 0) {
        errlist_add(el, "github.report: %s", err);
        return GHE_INVAL;
    }
    return 0;
}

struct ghreport *delivery_report(struct delivery *d) { return d ? d->report : NULL; }

int delivery_start(struct delivery *d) {
    if (d->mode != CONFIG_KUBE_DRY_RUN && !d->pool &&
        !(d->pool = workpool_new(4, 256, DELIVERY_POOL_IDLE_MS)))
        return GHE_NOMEM;
    int rc = d->spool ? spool_start(d->spool, d->kube) : 0;
    /* Last: every consumer subscribed between delivery_new and here. */
    if (!rc && d->watcher && !d->watcher_started) {
        rc = watcher_start(d->watcher);
        d->watcher_started = rc == 0;
    }
    return rc;
}

struct watcher *delivery_watcher(struct delivery *d) { return d ? d->watcher : NULL; }

struct kube *delivery_kube(struct delivery *d) { return d ? d->kube : NULL; }

void delivery_free(struct delivery *d) {
    if (!d)
        return;
    ghreport_stop(d->report); /* before the watcher it patches through */
    watcher_free(d->watcher); /* first: it borrows the API client */
    ghreport_free(d->report);
    workpool_free(d->pool);
    /*
     * The API client first: a spool attempt in flight ends at once instead of at its
     * deadline (the entry stays in the spool for the next start), so SIGTERM with the
     * API down does not wait 5 s for it.
     */
    kube_stop(d->kube);
    spool_free(d->spool);
    kube_free(d->kube);
    free(d->namespace);
    free(d->local_dir);
    free(d->spool_dir);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

const char *delivery_namespace(const struct delivery *d) { return d->namespace; }

int delivery_mode(const struct delivery *d) { return d->mode; }

bool delivery_api_spools(const struct kube_result *kr) {
    return kr->answer != KUBE_ANSWER_CREATED && kr->answer != KUBE_ANSWER_EXISTS;
}

/* The existing object's variant and fingerprint, for an "exists" answer. */
static void delivery_existing(struct delivery_result *r, const struct kube_result *kr) {
    r->existing = kr->existing;
    buf_copy_str(r->existing_variant, sizeof(r->existing_variant), kr->existing_variant);
    buf_copy_str(r->existing_fingerprint, sizeof(r->existing_fingerprint),
                 kr->existing_fingerprint);
    buf_copy_str(r->existing_rule, sizeof(r->existing_rule), kr->existing_rule);
}

static void delivery_read_existing(const char *dir, const char *file, struct delivery_result *r);

void delivery_api_outcome(struct delivery *d, const char *name, const char *json, size_t len,
                          const struct kube_result *kr, struct delivery_result *r) {
    char status[16];

    memset(r, 0, sizeof(*r));
    r->api_status = kr->status;
    buf_copy_str(r->message, sizeof(r->message), kr->message);
    buf_copy_str(r->reason, sizeof(r->reason), kr->reason);
    snprintf(status, sizeof(status), "%d", kr->status);
    switch (kr->answer) {
    case KUBE_ANSWER_CREATED:
        r->outcome = DELIVERY_CREATED;
        return;
    case KUBE_ANSWER_EXISTS:
        r->outcome = DELIVERY_EXISTS;
        delivery_existing(r, kr);
        return;
    case KUBE_ANSWER_REFUSED:
        /* Final: retrying cannot help. The object and the API's Status stay in failed/. */
        r->outcome = DELIVERY_REJECTED;
        LOGGER_ERROR_("API refused the PipelineRun", "pipelinerun", name, "status", status,
                      "reason", kr->reason, "error", kr->message);
        if (spool_put_failed(d->spool, name, json, len, kr) != 0)
            LOGGER_ERROR_("cannot keep the refused run in failed/", "pipelinerun", name, "error",
                          strerror(errno));
        return;
    default:
        break;
    }
    /* Out of time: keep it durably and let the worker finish the job. */
    char *pending = NULL; /* admission.c's pending form of a run it started */
    size_t pending_len = 0;
    if (admission_spool_pending(admission_get(), name, json, len, &pending, &pending_len) == 0) {
        json = pending;
        len = pending_len;
    }
    int rc = spool_put(d->spool, name, json, len);
    free(pending);
    if (rc == 0 || rc == GHE_EXISTS) {
        r->outcome = DELIVERY_QUEUED;
        if (rc == GHE_EXISTS && d->spool_dir) {
            /* Already waiting: answer for the run that waits, as "exists" does. */
            char file[128];
            snprintf(file, sizeof(file), "%s.json", name);
            delivery_read_existing(d->spool_dir, file, r);
        }
        LOGGER_WARN_("API unavailable, run spooled", "pipelinerun", name, "status", status, "error",
                     kr->message);
    } else {
        r->outcome = DELIVERY_UNAVAILABLE;
        LOGGER_ERROR_("API unavailable and the spool refused the run", "pipelinerun", name,
                      "status", status, "error", strerror(errno));
    }
}

/* Reads dir/file whole into b; false when it cannot be read or is larger than a run may be. */
static bool delivery_read_file(const char *dir, const char *file, struct buf *b) {
    char path[4096], err[512] = "";
    char *data = NULL;
    size_t len = 0;

    snprintf(path, sizeof(path), "%s/%s", dir, file);
    buf_init(b, DELIVERY_FILE_MAX);
    int rc = fileio_read(path, DELIVERY_FILE_MAX, 0, &data, &len, err, sizeof(err));
    if (rc == GHE_TOOBIG)
        LOGGER_WARN_("cannot read back a run", "error", err);
    if (rc)
        return false;
    b->data = data;
    b->len = len;
    b->cap = len + 1;
    return true;
}

/* Reads back a run's file (local mode, or the spool), as the API path reads the object. */
static void delivery_read_existing(const char *dir, const char *file, struct delivery_result *r) {
    struct buf b;
    struct kube_result kr;

    if (delivery_read_file(dir, file, &b)) {
        memset(&kr, 0, sizeof(kr));
        kube_existing_read(b.data ? b.data : "", b.len, &kr);
        delivery_existing(r, &kr);
    }
    buf_cleanup(&b);
}

int delivery_spooled(struct delivery *d, const char *name, char **json, size_t *len,
                     struct delivery_result *r) {
    char file[128];
    struct buf b;
    struct kube_result kr;

    memset(r, 0, sizeof(*r));
    /* Only the API sink has a spool in front of it. */
    if ((d->mode != CONFIG_KUBE_URL && d->mode != CONFIG_KUBE_IN_CLUSTER) || !d->spool_dir)
        return GHE_NOTFOUND;
    snprintf(file, sizeof(file), "%s.json", name);
    if (!delivery_read_file(d->spool_dir, file, &b) || !b.len) {
        buf_cleanup(&b);
        return GHE_NOTFOUND;
    }
    memset(&kr, 0, sizeof(kr));
    kube_existing_read(b.data, b.len, &kr);
    delivery_existing(r, &kr);
    if (!r->existing) { /* not an object: leave it to the worker, which moves it to failed/ */
        buf_cleanup(&b);
        return GHE_NOTFOUND;
    }
    *json = buf_detach(&b, len);
    return 0;
}

int delivery_submit_async(struct delivery *d, const char *ns, const char *json, size_t len,
                          long deadline_ms, void (*done)(void *arg, const struct kube_result *kr),
                          void *arg) {
    if (d->mode != CONFIG_KUBE_URL && d->mode != CONFIG_KUBE_IN_CLUSTER)
        return GHE_UNSUPPORTED;
    return kube_create_async(d->kube, ns, json, len, deadline_ms, done, arg);
}

void delivery_submit(struct delivery *d, const char *name, const char *ns, const char *json,
                     size_t len, long deadline_ms, struct delivery_result *r) {
    char file[128];
    int rc;

    memset(r, 0, sizeof(*r));
    switch (d->mode) {
    case CONFIG_KUBE_DRY_RUN:
        r->outcome = DELIVERY_DRY_RUN;
        return;
    case CONFIG_KUBE_LOCAL:
        snprintf(file, sizeof(file), "%s.json", name);
        rc = spool_write_atomic(d->local_dir, file, json, len, 1);
        r->outcome = rc == 0            ? DELIVERY_CREATED
                     : rc == GHE_EXISTS ? DELIVERY_EXISTS
                                        : DELIVERY_UNAVAILABLE;
        if (rc == GHE_EXISTS)
            delivery_read_existing(d->local_dir, file, r);
        if (r->outcome == DELIVERY_UNAVAILABLE)
            snprintf(r->message, sizeof(r->message), "cannot write to kubernetes.local_dir");
        return;
    default: {
        struct kube_result kr;
        kube_create(d->kube, ns, json, len, deadline_ms, &kr);
        delivery_api_outcome(d, name, json, len, &kr, r);
    }
    }
}

/*
 * The one place where a delivery's threading is decided. A job is freed by
 * its done callback's caller (here) once done has returned.
 */
struct delivery_job {
    struct delivery *d;
    char name[64];
    char ns[256];
    const char *json;
    size_t len;
    long deadline_ms;
    delivery_done_fn done;
    void *arg;
    struct kube_result api;
};

static void delivery_job_finish(struct delivery_job *job, const struct delivery_result *r) {
    job->done(job->arg, r);
    free(job);
}

/* On a work-pool thread: a local write (fsync). */
static void delivery_local_task(void *arg) {
    struct delivery_job *job = arg;
    struct delivery_result r;
    delivery_submit(job->d, job->name, job->ns, job->json, job->len, job->deadline_ms, &r);
    delivery_job_finish(job, &r);
}

/* On a work-pool thread: the API's answer means spooling (fsync). */
static void delivery_spool_task(void *arg) {
    struct delivery_job *job = arg;
    struct delivery_result r;
    delivery_api_outcome(job->d, job->name, job->json, job->len, &job->api, &r);
    delivery_job_finish(job, &r);
}

/* On the API client's thread: the final answer. Only spooling goes to the pool. */
static void delivery_api_done(void *arg, const struct kube_result *kr) {
    struct delivery_job *job = arg;
    struct delivery_result r;

    if (delivery_api_spools(kr)) {
        job->api = *kr;
        if (workpool_submit(job->d->pool, delivery_spool_task, job) != 0)
            delivery_spool_task(job); /* no thread to spare: here rather than drop it */
        return;
    }
    delivery_api_outcome(job->d, job->name, job->json, job->len, kr, &r);
    delivery_job_finish(job, &r);
}

void delivery_deliver(struct delivery *d, const char *name, const char *ns, const char *json,
                      size_t len, long deadline_ms, delivery_done_fn done, void *arg) {
    struct delivery_result r;
    struct delivery_job *job = NULL;

    /* Dry-run blocks nothing; without a pool (not started: tests, fuzzers) all runs here. */
    if (d->mode != CONFIG_KUBE_DRY_RUN && d->pool)
        job = calloc(1, sizeof(*job));
    if (!job) {
        delivery_submit(d, name, ns, json, len, deadline_ms, &r);
        done(arg, &r);
        return;
    }
    job->d = d;
    buf_copy_str(job->name, sizeof(job->name), name);
    buf_copy_str(job->ns, sizeof(job->ns), ns);
    job->json = json;
    job->len = len;
    job->deadline_ms = deadline_ms;
    job->done = done;
    job->arg = arg;
    if (d->mode == CONFIG_KUBE_LOCAL) {
        if (workpool_submit(d->pool, delivery_local_task, job) != 0)
            delivery_local_task(job);
        return;
    }
    /* The API needs no thread of its own: the API client's loop drives the call (done
     * runs in every case, before kube_create_async returns when the job cannot start). */
    (void)kube_create_async(d->kube, ns, json, len, deadline_ms, delivery_api_done, job);
}

/*
 * Writes and syncs 4 KiB to an unnamed file in dir, then drops it: access(2)
 * says yes to root even on a read-only mount, and only a write that reaches
 * the disk shows a full one. Writes the reason to msg when it fails.
 */
static bool delivery_dir_writable(const char *key, const char *dir, char *msg, size_t n) {
    static const char block[4096];
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
    bool ok =
        fd >= 0 && write(fd, block, sizeof(block)) == (ssize_t)sizeof(block) && fsync(fd) == 0;
    int err = errno;
    if (fd >= 0)
        close(fd);
    if (ok)
        snprintf(msg, n, "%s %s is writable", key, dir);
    else
        snprintf(msg, n, "%s %s is not writable: %s", key, dir, strerror(err));
    return ok;
}

static void delivery_ready_check(struct buf *o, const char *name, bool ok, const char *msg) {
    buf_appendf(o, ",\"%s\":{\"ok\":%s,\"detail\":\"", name, ok ? "true" : "false");
    buf_append_json_escaped(o, msg, strlen(msg));
    buf_appends(o, "\"");
}

bool delivery_ready(struct delivery *d, struct buf *detail) {
    long now = (long)clock_mono_ms();
    bool ok, api_ok = false;
    char msg[512] = "", api_msg[512] = "";

    pthread_mutex_lock(&d->lock);
    if (d->ready_at_ms && now - d->ready_at_ms < DELIVERY_READY_CACHE_MS) {
        ok = d->ready_ok;
        api_ok = d->api_ok;
        buf_copy_str(msg, sizeof(msg), d->ready_detail);
        buf_copy_str(api_msg, sizeof(api_msg), d->api_detail);
        pthread_mutex_unlock(&d->lock);
        goto report;
    }
    pthread_mutex_unlock(&d->lock);

    switch (d->mode) {
    case CONFIG_KUBE_DRY_RUN:
        ok = true;
        snprintf(msg, sizeof(msg), "dry-run: nothing is sent");
        break;
    case CONFIG_KUBE_LOCAL:
        ok = delivery_dir_writable("kubernetes.local_dir", d->local_dir, msg, sizeof(msg));
        break;
    default:
        /* A delivery is accepted when it can be spooled: the API may be down meanwhile. */
        ok = delivery_dir_writable("spool_dir", d->spool_dir, msg, sizeof(msg));
        api_ok = kube_probe(d->kube, api_msg, sizeof(api_msg)) == 0;
        if (api_ok)
            snprintf(api_msg, sizeof(api_msg), "API server answers");
        metrics_api_up_set(api_ok);
    }
    pthread_mutex_lock(&d->lock);
    d->ready_at_ms = (long)clock_mono_ms();
    d->ready_ok = ok;
    d->api_ok = api_ok;
    buf_copy_str(d->ready_detail, sizeof(d->ready_detail), msg);
    buf_copy_str(d->api_detail, sizeof(d->api_detail), api_msg);
    pthread_mutex_unlock(&d->lock);
report:
    buf_appendf(detail, "\"delivery\":{\"ok\":%s,\"mode\":\"%s\",\"detail\":\"",
                ok ? "true" : "false", config_kube_mode_name(d->mode));
    buf_append_json_escaped(detail, msg, strlen(msg));
    int blocked = 0;
    char blocked_msg[256];
    /* RBAC or a missing namespace or CRD: runs wait in the spool until an operator fixes it. */
    if (d->kube && kube_blocked(d->kube, &blocked, blocked_msg, sizeof(blocked_msg))) {
        buf_appendf(detail, "\",\"blocked\":\"HTTP %d, runs wait in the spool: ", blocked);
        buf_append_json_escaped(detail, blocked_msg, strlen(blocked_msg));
    }
    buf_appends(detail, "\"}");
    if (d->spool) {
        delivery_ready_check(detail, "spool", ok, msg);
        buf_appendf(detail, ",\"depth\":%ld}", spool_depth(d->spool));
        /* Reported, never failing readiness: the spool absorbs an API outage. */
        delivery_ready_check(detail, "api", api_ok, api_msg);
        buf_appends(detail, ",\"required\":false}");
    }
    return ok;
}
