/*
 * The GPU module's state: one refresh thread that takes snapshots from a
 * source (the real CUDA/NVML backends, or a test's fake) and publishes a copy
 * under a lock, and the calls handlers make on that copy. The rules that judge
 * a snapshot are in gpu_rules.c, its JSON in gpu_json.c.
 */
#include "gpuhook/gpu.h"
#include "gpu_backend.h"
#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/error.h"
#include "gpuhook/promtext.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Short enough that gpu_stop() and a refresh request are served promptly. */
#define GPU_WAIT_SLICE_MS 250

struct gpu_state {
    pthread_mutex_t lock;
    pthread_cond_t cond; /* CLOCK_MONOTONIC; signals stop, requests and new snapshots */
    pthread_t thread;
    bool running;
    bool stop;
    unsigned long requested; /* refresh requests made by gpu_refresh_now() */
    unsigned long served;    /* requests covered by the last published snapshot */
    struct gpu_options opts;
    struct gpu_fit_policy policy;
    struct gpu_source source;
    struct gpu_snapshot snap; /* the published copy that handlers read */
    long long started_mono_ms;
};

static struct gpu_state g = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .opts = {.refresh_seconds = 5, .required = false},
    .policy = GPU_FIT_POLICY_DEFAULTS,
};
static pthread_once_t g_cond_once = PTHREAD_ONCE_INIT;

static void gpu_cond_init_once(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g.cond, &attr);
    pthread_condattr_destroy(&attr);
}

static void gpu_cond_wait_until(long long deadline_mono_ms) {
    struct timespec ts = {.tv_sec = deadline_mono_ms / 1000,
                          .tv_nsec = (deadline_mono_ms % 1000) * 1000000};
    int rc;
    do {
        rc = pthread_cond_timedwait(&g.cond, &g.lock, &ts);
    } while (rc == EINTR);
}

/* The refresh thread. */

static void gpu_default_cuda_probe(void *ctx, struct gpu_cuda_probe *p) {
    (void)ctx;
    gpu_backend_probe(p);
}

static const struct gpu_source default_source = {
    .ctx = NULL,
    .cuda_probe = gpu_default_cuda_probe,
    .nvml_open = gpu_nvml_open,
    .nvml_read = gpu_nvml_read,
    .xid_wait = gpu_nvml_xid_wait,
    .nvml_close = gpu_nvml_close,
};

static void gpu_record_xid(struct gpu_snapshot *s, int index, unsigned long long xid) {
    struct gpu_xid *x = &s->last_xid[index];
    x->seen = true;
    x->xid = xid;
    x->fatal = gpu_xid_is_fatal(xid);
    x->at_ms = clock_wall_ms();
}

/*
 * Waits until the next refresh is due, a refresh is requested or the thread is
 * told to stop; XID events are taken in short slices meanwhile. Returns false
 * when the thread must stop. Called and returns with g.lock not held.
 */
static bool gpu_wait_for_next(const struct gpu_source *src, struct gpu_snapshot *work,
                              long long started, bool *events) {
    for (;;) {
        pthread_mutex_lock(&g.lock);
        bool stop = g.stop;
        bool requested = g.requested != g.served;
        long long deadline = started + (long long)g.opts.refresh_seconds * 1000;
        long long now = clock_mono_ms();
        if (stop || requested || now >= deadline) {
            pthread_mutex_unlock(&g.lock);
            return !stop;
        }
        long long slice = deadline - now;
        if (slice > GPU_WAIT_SLICE_MS)
            slice = GPU_WAIT_SLICE_MS;
        if (!*events) {
            gpu_cond_wait_until(now + slice);
            pthread_mutex_unlock(&g.lock);
            continue;
        }
        pthread_mutex_unlock(&g.lock);

        int index = -1;
        unsigned long long xid = 0;
        int rc = src->xid_wait(src->ctx, (int)slice, &index, &xid);
        if (rc < 0) {
            *events = false;
            work->nvml.xid_events = false;
        } else if (rc == 1 && index >= 0 && index < work->cuda.device_count &&
                   index < GPU_MAX_DEVICES) {
            gpu_record_xid(work, index, xid);
            pthread_mutex_lock(&g.lock);
            g.snap.last_xid[index] = work->last_xid[index];
            pthread_mutex_unlock(&g.lock);
        }
    }
}

static void *gpu_refresh_main(void *arg) {
    struct gpu_snapshot *work = arg;
    const struct gpu_source *src = &g.source;
    bool events = true;

    src->cuda_probe(src->ctx, &work->cuda);
    if (work->cuda.device_count < 0 || work->cuda.error)
        work->cuda.device_count = 0;
    if (work->cuda.device_count > GPU_MAX_DEVICES)
        work->cuda.device_count = GPU_MAX_DEVICES;
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    work->cuda.visible_devices_set = visible != NULL;
    if (visible)
        snprintf(work->cuda.visible_devices, sizeof(work->cuda.visible_devices), "%s", visible);
    if (src->nvml_open(src->ctx, work) != 0)
        events = false;

    for (;;) {
        pthread_mutex_lock(&g.lock);
        unsigned long covers = g.requested;
        pthread_mutex_unlock(&g.lock);

        long long started = clock_mono_ms();
        src->nvml_read(src->ctx, work);
        long long done = clock_mono_ms();

        pthread_mutex_lock(&g.lock);
        if (!work->taken)
            work->first_refresh_ms = done - g.started_mono_ms;
        work->taken = true;
        work->checked_at_ms = clock_wall_ms();
        work->checked_mono_ms = done;
        work->refresh_ms = done - started;
        g.snap = *work;
        g.served = covers;
        pthread_cond_broadcast(&g.cond);
        pthread_mutex_unlock(&g.lock);

        if (!gpu_wait_for_next(src, work, started, &events))
            break;
    }
    src->nvml_close(src->ctx);
    free(work);
    return NULL;
}

int gpu_start_source(const struct gpu_options *opts, const struct gpu_source *src) {
    pthread_once(&g_cond_once, gpu_cond_init_once);
    struct gpu_snapshot *work = calloc(1, sizeof(*work));
    if (!work)
        return GHE_NOMEM;

    pthread_mutex_lock(&g.lock);
    if (g.running) {
        pthread_mutex_unlock(&g.lock);
        free(work);
        return GHE_EXISTS;
    }
    if (opts)
        g.opts = *opts;
    if (g.opts.refresh_seconds < 1)
        g.opts.refresh_seconds = 1;
    g.source = *src;
    g.stop = false;
    memset(&g.snap, 0, sizeof(g.snap));
    g.requested = 0;
    g.served = 0;
    g.started_mono_ms = clock_mono_ms();

    /* Signals belong to main; the refresh thread must never take one. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&g.thread, NULL, gpu_refresh_main, work);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_mutex_unlock(&g.lock);
        free(work);
        return GHE_IO;
    }
    g.running = true;
    pthread_mutex_unlock(&g.lock);
    return 0;
}

int gpu_start(const struct gpu_options *opts) { return gpu_start_source(opts, &default_source); }

void gpu_stop(void) {
    pthread_once(&g_cond_once, gpu_cond_init_once);
    pthread_mutex_lock(&g.lock);
    if (!g.running) {
        pthread_mutex_unlock(&g.lock);
        return;
    }
    g.stop = true;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);

    pthread_join(g.thread, NULL);

    pthread_mutex_lock(&g.lock);
    g.running = false;
    memset(&g.snap, 0, sizeof(g.snap));
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
}

void gpu_set_options(const struct gpu_options *opts) {
    pthread_once(&g_cond_once, gpu_cond_init_once);
    pthread_mutex_lock(&g.lock);
    g.opts = *opts;
    if (g.opts.refresh_seconds < 1)
        g.opts.refresh_seconds = 1;
    pthread_cond_broadcast(&g.cond);
    pthread_mutex_unlock(&g.lock);
}

void gpu_set_fit_policy(const struct gpu_fit_policy *policy) {
    pthread_mutex_lock(&g.lock);
    g.policy = *policy;
    pthread_mutex_unlock(&g.lock);
}

int gpu_refresh_now(int timeout_ms) {
    pthread_once(&g_cond_once, gpu_cond_init_once);
    int rc = 0;
    pthread_mutex_lock(&g.lock);
    if (!g.running) {
        pthread_mutex_unlock(&g.lock);
        return GHE_UNAVAILABLE;
    }
    unsigned long mine = ++g.requested;
    pthread_cond_broadcast(&g.cond);
    long long deadline = clock_mono_ms() + timeout_ms;
    while (g.running && (long)(g.served - mine) < 0) {
        if (clock_mono_ms() >= deadline) {
            rc = GHE_TIMEOUT;
            break;
        }
        gpu_cond_wait_until(deadline);
    }
    if (!g.running)
        rc = GHE_UNAVAILABLE;
    pthread_mutex_unlock(&g.lock);
    return rc;
}

/* What handlers call: the published snapshot, read under the lock. */

char *gpu_status_json(bool verbose, int *http_status) {
    struct gpu_view v;
    struct gpu_snapshot *s = malloc(sizeof(*s));
    if (!s)
        return NULL;
    pthread_mutex_lock(&g.lock);
    *s = g.snap;
    struct gpu_fit_policy policy = g.policy;
    int refresh_seconds = g.opts.refresh_seconds;
    pthread_mutex_unlock(&g.lock);

    gpu_snapshot_evaluate(s, clock_mono_ms(), refresh_seconds, &policy, &v);
    char *body = gpu_snapshot_json(s, &v, &policy, refresh_seconds, verbose);
    free(s);
    if (http_status)
        *http_status = v.status == GPU_STATUS_UNAVAILABLE ? 503 : 200;
    return body;
}

/* Judges the published snapshot now; g.lock must be held. */
static void gpu_view_locked(struct gpu_view *v) {
    gpu_snapshot_evaluate(&g.snap, clock_mono_ms(), g.opts.refresh_seconds, &g.policy, v);
}

bool gpu_ready(void) {
    struct gpu_view v;
    pthread_mutex_lock(&g.lock);
    gpu_view_locked(&v);
    pthread_mutex_unlock(&g.lock);
    return v.status != GPU_STATUS_UNAVAILABLE;
}

long long gpu_free_mib(bool *seen) {
    struct gpu_view v;
    pthread_mutex_lock(&g.lock);
    gpu_view_locked(&v);
    pthread_mutex_unlock(&g.lock);
    *seen = v.device_count > 0;
    return v.usable_count > 0 ? v.free_mib : -1;
}

int gpu_fit_check(const struct gpu_fit_policy *policy, bool required, int variant, int *variant_out,
                  char *reason, size_t reason_len) {
    struct gpu_view v;
    pthread_mutex_lock(&g.lock);
    gpu_view_locked(&v);
    pthread_mutex_unlock(&g.lock);
    return gpu_fit_decide(&v, policy, required, variant, variant_out, reason, reason_len);
}

int gpu_metrics_append(struct buf *b) {
    struct gpu_view v;
    struct gpu_snapshot *s = malloc(sizeof(*s));
    int rc;
    if (!s)
        return GHE_NOMEM;
    pthread_mutex_lock(&g.lock);
    *s = g.snap;
    gpu_snapshot_evaluate(s, clock_mono_ms(), g.opts.refresh_seconds, &g.policy, &v);
    pthread_mutex_unlock(&g.lock);

    rc = buf_appendf(b,
                     "# HELP gpuhook_gpu_up 1 when GET /gpu reports ok or degraded, else 0.\n"
                     "# TYPE gpuhook_gpu_up gauge\n"
                     "gpuhook_gpu_up %d\n",
                     v.status == GPU_STATUS_UNAVAILABLE ? 0 : 1);
    if (rc)
        goto out;
    rc = buf_appends(b, "# HELP gpuhook_gpu_memory_free_bytes Free GPU memory as NVML reports "
                        "it.\n# TYPE gpuhook_gpu_memory_free_bytes gauge\n");
    for (int i = 0; rc == 0 && i < v.device_count; i++) {
        if (!s->devices[i].has_memory)
            continue;
        rc = buf_appends(b, "gpuhook_gpu_memory_free_bytes{uuid=\"");
        if (!rc)
            rc = promtext_label_append(b, s->cuda.devices[i].uuid);
        if (!rc)
            rc = buf_appendf(b, "\"} %llu\n", s->devices[i].mem_free);
    }
    if (rc)
        goto out;
    rc = buf_appends(b, "# HELP gpuhook_gpu_temperature_celsius GPU die temperature.\n"
                        "# TYPE gpuhook_gpu_temperature_celsius gauge\n");
    for (int i = 0; rc == 0 && i < v.device_count; i++) {
        if (s->devices[i].temperature_c < 0)
            continue;
        rc = buf_appends(b, "gpuhook_gpu_temperature_celsius{uuid=\"");
        if (!rc)
            rc = promtext_label_append(b, s->cuda.devices[i].uuid);
        if (!rc)
            rc = buf_appendf(b, "\"} %d\n", s->devices[i].temperature_c);
    }
out:
    free(s);
    return rc;
}
