#include "gpuhook/gpu.h"
#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/error.h"
#include "gpuhook/gpu_backend.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIB (1024ULL * 1024ULL)
/* Short enough that gpu_stop() and a refresh request are served promptly. */
#define GPU_WAIT_SLICE_MS 250
#define GPU_STALE_INTERVALS 3

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
    .policy = {.lite_min_free_mib = 2048,
               .original_min_free_mib = 8192,
               .on_insufficient = GPU_FIT_DOWNGRADE},
};
static pthread_once_t g_cond_once = PTHREAD_ONCE_INIT;

static void cond_init_once(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&g.cond, &attr);
    pthread_condattr_destroy(&attr);
}

static void cond_wait_until(long long deadline_mono_ms) {
    struct timespec ts = {.tv_sec = deadline_mono_ms / 1000,
                          .tv_nsec = (deadline_mono_ms % 1000) * 1000000};
    int rc;
    do {
        rc = pthread_cond_timedwait(&g.cond, &g.lock, &ts);
    } while (rc == EINTR);
}

/* ---------- Rules ---------- */

bool gpu_xid_is_fatal(unsigned long long xid) {
    switch (xid) {
    case 13:  /* graphics engine exception: usually the application's own fault */
    case 31:  /* GPU memory page fault: likewise */
    case 43:  /* GPU stopped processing: the application was killed */
    case 45:  /* preemptive cleanup after a previous error */
    case 68:  /* video processor exception */
    case 109: /* context switch timeout */
        return false;
    default:
        return true;
    }
}

void gpu_fit_policy_init(struct gpu_fit_policy *p) {
    p->lite_min_free_mib = 2048;
    p->original_min_free_mib = 8192;
    p->on_insufficient = GPU_FIT_DOWNGRADE;
}

const char *gpu_fit_outcome_name(int outcome) {
    switch (outcome) {
    case GPU_FIT_KEEP:
        return "keep";
    case GPU_FIT_DOWNGRADED:
        return "downgraded";
    case GPU_FIT_REJECTED:
        return "rejected";
    default:
        return "unknown";
    }
}

const char *gpu_status_name(int status) {
    switch (status) {
    case GPU_STATUS_OK:
        return "ok";
    case GPU_STATUS_DEGRADED:
        return "degraded";
    default:
        return "unavailable";
    }
}

static const char *const reason_names[] = {
#define GPU_REASON_NAME_(name, str, status) str,
    GPU_REASON_MAP(GPU_REASON_NAME_)
#undef GPU_REASON_NAME_
};

static const int reason_status[] = {
#define GPU_REASON_STATUS_(name, str, status) GPU_STATUS_##status,
    GPU_REASON_MAP(GPU_REASON_STATUS_)
#undef GPU_REASON_STATUS_
};

const char *gpu_reason_name(int reason) {
    if (reason < 0 || reason >= GPU_REASON_COUNT_)
        return NULL;
    return reason_names[reason];
}

/* Reasons that are about the whole probe rather than one device. */
#define GLOBAL_UNAVAILABLE                                                                         \
    (GPU_REASON_BIT(GPU_REASON_STARTING) | GPU_REASON_BIT(GPU_REASON_BUILT_WITHOUT_CUDA) |         \
     GPU_REASON_BIT(GPU_REASON_NO_DRIVER) | GPU_REASON_BIT(GPU_REASON_NO_DEVICE) |                 \
     GPU_REASON_BIT(GPU_REASON_CUDA_ERROR) | GPU_REASON_BIT(GPU_REASON_STALE))

static unsigned cuda_reasons(const struct gpu_cuda_probe *c) {
    if (!c->built)
        return GPU_REASON_BIT(GPU_REASON_BUILT_WITHOUT_CUDA);
    switch (c->error) {
    case 0:
        return c->device_count > 0 ? 0 : GPU_REASON_BIT(GPU_REASON_NO_DEVICE);
    case GPU_CUDA_ERROR_NO_DRIVER:
    case GPU_CUDA_ERROR_STUB:
        return GPU_REASON_BIT(GPU_REASON_NO_DRIVER);
    case GPU_CUDA_ERROR_NO_DEVICE:
        return GPU_REASON_BIT(GPU_REASON_NO_DEVICE);
    default:
        return GPU_REASON_BIT(GPU_REASON_CUDA_ERROR);
    }
}

void gpu_snapshot_evaluate(const struct gpu_snapshot *s, long long now_mono_ms, int refresh_seconds,
                           const struct gpu_fit_policy *policy, struct gpu_view *v) {
    memset(v, 0, sizeof(*v));
    v->free_mib = -1;
    v->age_ms = -1;
    if (!s->taken) {
        v->reasons = GPU_REASON_BIT(GPU_REASON_STARTING);
        v->status = GPU_STATUS_UNAVAILABLE;
        return;
    }
    if (refresh_seconds < 1)
        refresh_seconds = 1;
    v->age_ms = now_mono_ms - s->checked_mono_ms;
    if (v->age_ms < 0)
        v->age_ms = 0;
    if (v->age_ms > (long long)GPU_STALE_INTERVALS * refresh_seconds * 1000)
        v->reasons |= GPU_REASON_BIT(GPU_REASON_STALE);
    v->reasons |= cuda_reasons(&s->cuda);

    int n = s->cuda.error ? 0 : s->cuda.device_count;
    if (n > GPU_MAX_DEVICES)
        n = GPU_MAX_DEVICES;
    if (n < 0)
        n = 0;
    v->device_count = n;
    if (n > 0 && !s->nvml.loaded)
        v->reasons |= GPU_REASON_BIT(GPU_REASON_NVML_UNAVAILABLE);

    for (int i = 0; i < n; i++) {
        const struct gpu_nvml_device *d = &s->devices[i];
        unsigned own = 0;
        if (s->last_xid[i].seen && s->last_xid[i].fatal)
            own |= GPU_REASON_BIT(GPU_REASON_XID_FATAL);
        if (d->lost)
            own |= GPU_REASON_BIT(GPU_REASON_GPU_LOST);
        if (d->has_remapped_rows && d->remap_failure)
            own |= GPU_REASON_BIT(GPU_REASON_ROW_REMAP_FAILED);
        if (s->nvml.loaded && !d->matched)
            own |= GPU_REASON_BIT(GPU_REASON_NVML_UNMATCHED);
        if (d->has_remapped_rows && d->remap_pending && !d->remap_failure)
            own |= GPU_REASON_BIT(GPU_REASON_ROW_REMAP_PENDING);
        if (d->has_clocks_event_reasons) {
            unsigned long long c = d->clocks_event_reasons;
            if (c & GPU_CLOCKS_HW_SLOWDOWN)
                own |= GPU_REASON_BIT(GPU_REASON_CLOCKS_HW_SLOWDOWN);
            if (c & (GPU_CLOCKS_SW_THERMAL_SLOWDOWN | GPU_CLOCKS_HW_THERMAL_SLOWDOWN))
                own |= GPU_REASON_BIT(GPU_REASON_CLOCKS_THERMAL_SLOWDOWN);
            if (c & GPU_CLOCKS_HW_POWER_BRAKE_SLOWDOWN)
                own |= GPU_REASON_BIT(GPU_REASON_CLOCKS_POWER_BRAKE_SLOWDOWN);
        }
        v->reasons |= own;

        bool unusable = false;
        for (int r = 0; r < GPU_REASON_COUNT_; r++)
            if ((own & GPU_REASON_BIT(r)) && reason_status[r] == GPU_STATUS_UNAVAILABLE)
                unusable = true;
        if (unusable)
            continue;
        v->usable_count++;
        /*
         * Without NVML the free memory is unknown; the total from CUDA is the
         * best bound there is, and "nvml_unavailable" already says so.
         */
        long long free_mib = d->has_memory ? (long long)(d->mem_free / MIB)
                                           : (long long)(s->cuda.devices[i].total_bytes / MIB);
        if (free_mib > v->free_mib)
            v->free_mib = free_mib;
    }

    if (v->reasons & GLOBAL_UNAVAILABLE) {
        v->usable_count = 0;
        v->free_mib = -1;
    }
    if (v->usable_count > 0 && policy && v->free_mib < policy->original_min_free_mib)
        v->reasons |= GPU_REASON_BIT(GPU_REASON_LOW_MEMORY);

    if (v->usable_count == 0)
        v->status = GPU_STATUS_UNAVAILABLE;
    else if (v->reasons)
        v->status = GPU_STATUS_DEGRADED;
    else
        v->status = GPU_STATUS_OK;
}

/* Writes the reasons as "a,b,c" into out (always NUL-terminated). */
static void reasons_join(unsigned reasons, char *out, size_t len) {
    size_t used = 0;
    out[0] = '\0';
    for (int r = 0; r < GPU_REASON_COUNT_; r++) {
        if (!(reasons & GPU_REASON_BIT(r)))
            continue;
        int w = snprintf(out + used, len - used, "%s%s", used ? "," : "", reason_names[r]);
        if (w < 0 || (size_t)w >= len - used)
            return;
        used += (size_t)w;
    }
}

static const char *variant_word(int variant) { return variant == 1 ? "original" : "lite"; }

int gpu_fit_decide(const struct gpu_view *v, const struct gpu_fit_policy *policy, bool required,
                   int variant, int *variant_out, char *reason, size_t reason_len) {
    struct gpu_fit_policy defaults;
    char why[256];
    char scratch[8];
    if (!reason || reason_len == 0) {
        reason = scratch;
        reason_len = sizeof(scratch);
    }
    reason[0] = '\0';
    *variant_out = variant;
    if (!policy) {
        gpu_fit_policy_init(&defaults);
        policy = &defaults;
    }
    if (variant != 0 && variant != 1)
        return GPU_FIT_KEEP;

    bool seen = v->device_count > 0;
    if (!seen && !required)
        return GPU_FIT_KEEP;

    long need = variant == 1 ? policy->original_min_free_mib : policy->lite_min_free_mib;
    long lite = policy->lite_min_free_mib;
    reasons_join(v->reasons, why, sizeof(why));

    if (policy->on_insufficient == GPU_FIT_IGNORE) {
        if (v->usable_count > 0)
            snprintf(reason, reason_len,
                     "gpu_fit is ignore: kept %s, which needs %ld MiB, with %lld MiB free.",
                     variant_word(variant), need, v->free_mib);
        else
            snprintf(reason, reason_len,
                     "gpu_fit is ignore: kept %s, which needs %ld MiB, with no usable GPU (%s).",
                     variant_word(variant), need, why);
        return GPU_FIT_KEEP;
    }
    if (!seen) {
        snprintf(reason, reason_len,
                 "Rejected %s, which needs %ld MiB: gpu.required is true and no GPU is seen (%s).",
                 variant_word(variant), need, why);
        return GPU_FIT_REJECTED;
    }
    if (v->usable_count == 0) {
        snprintf(reason, reason_len,
                 "Rejected %s, which needs %ld MiB: the GPU is unavailable (%s).",
                 variant_word(variant), need, why);
        return GPU_FIT_REJECTED;
    }
    long long free_mib = v->free_mib;
    if (free_mib >= need) {
        snprintf(reason, reason_len, "%s fits: %lld MiB free, %ld MiB needed.",
                 variant == 1 ? "Original" : "Lite", free_mib, need);
        return GPU_FIT_KEEP;
    }
    if (variant == 1 && policy->on_insufficient == GPU_FIT_DOWNGRADE && free_mib >= lite) {
        *variant_out = 0;
        snprintf(reason, reason_len,
                 "Downgraded original to lite: %lld MiB free is below the %ld MiB original needs "
                 "but covers the %ld MiB lite needs.",
                 free_mib, need, lite);
        return GPU_FIT_DOWNGRADED;
    }
    if (variant == 0)
        snprintf(reason, reason_len, "Rejected lite: %lld MiB free is below the %ld MiB it needs.",
                 free_mib, need);
    else if (free_mib >= lite)
        snprintf(reason, reason_len,
                 "Rejected original: %lld MiB free is below the %ld MiB it needs, and gpu_fit "
                 "is reject.",
                 free_mib, need);
    else
        snprintf(reason, reason_len,
                 "Rejected original: %lld MiB free is below the %ld MiB it needs and the %ld MiB "
                 "lite needs.",
                 free_mib, need, lite);
    return GPU_FIT_REJECTED;
}

/* ---------- JSON ---------- */

/* cJSON's Add functions return NULL on failure, also when the parent is NULL. */
struct json_ctx {
    bool failed;
};

static cJSON *jcheck(struct json_ctx *j, cJSON *item) {
    if (!item)
        j->failed = true;
    return item;
}

static void jnum(struct json_ctx *j, cJSON *o, const char *k, double n) {
    jcheck(j, cJSON_AddNumberToObject(o, k, n));
}

static void jnum_or_null(struct json_ctx *j, cJSON *o, const char *k, bool known, double n) {
    if (known)
        jnum(j, o, k, n);
    else
        jcheck(j, cJSON_AddNullToObject(o, k));
}

static void jstr(struct json_ctx *j, cJSON *o, const char *k, const char *s) {
    if (s)
        jcheck(j, cJSON_AddStringToObject(o, k, s));
    else
        jcheck(j, cJSON_AddNullToObject(o, k));
}

static void jbool(struct json_ctx *j, cJSON *o, const char *k, bool b) {
    jcheck(j, cJSON_AddBoolToObject(o, k, b));
}

/* 13000 -> "13.0", as nvidia-smi prints "CUDA Version". */
static const char *cuda_version_string(int v, char *out, size_t len) {
    if (v <= 0)
        return NULL;
    snprintf(out, len, "%d.%d", v / 1000, (v % 1000) / 10);
    return out;
}

static const struct {
    unsigned long long bit;
    const char *name; /* nvidia-smi's clocks_event_reasons.* */
} clocks_names[] = {
    {GPU_CLOCKS_GPU_IDLE, "gpu_idle"},
    {GPU_CLOCKS_APPLICATIONS_CLOCKS_SETTING, "applications_clocks_setting"},
    {GPU_CLOCKS_SW_POWER_CAP, "sw_power_cap"},
    {GPU_CLOCKS_HW_SLOWDOWN, "hw_slowdown"},
    {GPU_CLOCKS_SYNC_BOOST, "sync_boost"},
    {GPU_CLOCKS_SW_THERMAL_SLOWDOWN, "sw_thermal_slowdown"},
    {GPU_CLOCKS_HW_THERMAL_SLOWDOWN, "hw_thermal_slowdown"},
    {GPU_CLOCKS_HW_POWER_BRAKE_SLOWDOWN, "hw_power_brake_slowdown"},
    {GPU_CLOCKS_DISPLAY_CLOCK_SETTING, "display_clock_setting"},
};

static void add_device(struct json_ctx *j, cJSON *arr, const struct gpu_snapshot *s, int i) {
    const struct gpu_cuda_device *c = &s->cuda.devices[i];
    const struct gpu_nvml_device *d = &s->devices[i];
    const struct gpu_xid *x = &s->last_xid[i];
    char tmp[64];
    cJSON *o = jcheck(j, cJSON_CreateObject());
    if (!o)
        return;
    if (!cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        j->failed = true;
        return;
    }
    jnum(j, o, "index", i);
    jstr(j, o, "name", c->name);
    jstr(j, o, "uuid", c->uuid);
    jstr(j, o, "pci_bus_id", c->pci_bus_id);
    snprintf(tmp, sizeof(tmp), "%d.%d", c->cc_major, c->cc_minor);
    jstr(j, o, "compute_capability", tmp);
    jbool(j, o, "ecc_enabled", d->ecc_mode >= 0 ? d->ecc_mode == 1 : c->ecc_enabled);
    jstr(j, o, "mig_mode", d->mig_mode < 0 ? NULL : d->mig_mode ? "enabled" : "disabled");

    cJSON *m = jcheck(j, cJSON_AddObjectToObject(o, "memory"));
    jnum(j, m, "total_mib", (double)((d->has_memory ? d->mem_total : c->total_bytes) / MIB));
    jnum_or_null(j, m, "used_mib", d->has_memory, (double)(d->mem_used / MIB));
    jnum_or_null(j, m, "free_mib", d->has_memory, (double)(d->mem_free / MIB));
    jnum_or_null(j, m, "reserved_mib", d->has_memory, (double)(d->mem_reserved / MIB));

    jnum_or_null(j, o, "temperature_c", d->temperature_c >= 0, d->temperature_c);
    jnum_or_null(j, o, "power_w", d->power_mw >= 0, (double)d->power_mw / 1000.0);
    jnum_or_null(j, o, "utilization_pct", d->utilization_pct >= 0, d->utilization_pct);

    if (d->has_clocks_event_reasons) {
        cJSON *cr = jcheck(j, cJSON_AddObjectToObject(o, "clocks_event_reasons"));
        snprintf(tmp, sizeof(tmp), "0x%016llx", d->clocks_event_reasons);
        jstr(j, cr, "active", tmp);
        cJSON *names = jcheck(j, cJSON_AddArrayToObject(cr, "reasons"));
        for (size_t k = 0; names && k < sizeof(clocks_names) / sizeof(clocks_names[0]); k++)
            if (d->clocks_event_reasons & clocks_names[k].bit)
                if (!cJSON_AddItemToArray(names,
                                          jcheck(j, cJSON_CreateString(clocks_names[k].name))))
                    j->failed = true;
    } else {
        jcheck(j, cJSON_AddNullToObject(o, "clocks_event_reasons"));
    }

    jnum_or_null(j, o, "ecc_uncorrected_volatile", d->ecc_uncorrected_volatile >= 0,
                 (double)d->ecc_uncorrected_volatile);

    if (d->has_remapped_rows) {
        cJSON *rr = jcheck(j, cJSON_AddObjectToObject(o, "remapped_rows"));
        jnum(j, rr, "correctable", d->remapped_correctable);
        jnum(j, rr, "uncorrectable", d->remapped_uncorrectable);
        jbool(j, rr, "pending", d->remap_pending);
        jbool(j, rr, "failure", d->remap_failure);
    } else {
        jcheck(j, cJSON_AddNullToObject(o, "remapped_rows"));
    }

    if (x->seen) {
        cJSON *xo = jcheck(j, cJSON_AddObjectToObject(o, "last_xid"));
        jnum(j, xo, "xid", (double)x->xid);
        jbool(j, xo, "fatal", x->fatal);
        char at[CLOCK_RFC3339_MAX];
        jstr(j, xo, "at", clock_rfc3339(x->at_ms, at));
    } else {
        jcheck(j, cJSON_AddNullToObject(o, "last_xid"));
    }
}

static void add_verbose(struct json_ctx *j, cJSON *root, const struct gpu_snapshot *s,
                        const struct gpu_view *v, int refresh_seconds) {
    char tmp[32];
    cJSON *cuda = jcheck(j, cJSON_AddObjectToObject(root, "cuda"));
    jstr(j, cuda, "driver_version", cuda_version_string(s->cuda.driver_version, tmp, sizeof(tmp)));
    char rt[32];
    jstr(j, cuda, "runtime_version", cuda_version_string(s->cuda.runtime_version, rt, sizeof(rt)));
    if (s->cuda.error) {
        cJSON *e = jcheck(j, cJSON_AddObjectToObject(cuda, "error"));
        jnum(j, e, "code", s->cuda.error);
        jstr(j, e, "name", s->cuda.error_name);
    } else {
        jcheck(j, cJSON_AddNullToObject(cuda, "error"));
    }
    jstr(j, cuda, "visible_devices", s->cuda.visible_devices_set ? s->cuda.visible_devices : NULL);

    cJSON *nvml = jcheck(j, cJSON_AddObjectToObject(root, "nvml"));
    jbool(j, nvml, "loaded", s->nvml.loaded);
    jstr(j, nvml, "driver_version", s->nvml.loaded ? s->nvml.driver_version : NULL);
    if (!s->nvml.loaded && s->taken) {
        cJSON *e = jcheck(j, cJSON_AddObjectToObject(nvml, "error"));
        jnum(j, e, "code", s->nvml.error);
        jstr(j, e, "name", s->nvml.error_name);
    } else {
        jcheck(j, cJSON_AddNullToObject(nvml, "error"));
    }
    jbool(j, nvml, "xid_events", s->nvml.xid_events);

    cJSON *probe = jcheck(j, cJSON_AddObjectToObject(root, "probe"));
    jnum(j, probe, "refresh_seconds", refresh_seconds);
    jnum_or_null(j, probe, "first_refresh_ms", s->taken, (double)s->first_refresh_ms);
    jnum_or_null(j, probe, "last_refresh_ms", s->taken, (double)s->refresh_ms);

    cJSON *devs = jcheck(j, cJSON_AddArrayToObject(root, "devices"));
    for (int i = 0; devs && i < v->device_count; i++)
        add_device(j, devs, s, i);
}

char *gpu_snapshot_json(const struct gpu_snapshot *s, const struct gpu_view *v,
                        const struct gpu_fit_policy *policy, int refresh_seconds, bool verbose) {
    struct gpu_fit_policy defaults;
    struct json_ctx j = {false};
    char when[CLOCK_RFC3339_MAX];
    char *out = NULL;
    if (!policy) {
        gpu_fit_policy_init(&defaults);
        policy = &defaults;
    }
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    jstr(&j, root, "status", gpu_status_name(v->status));
    cJSON *reasons = jcheck(&j, cJSON_AddArrayToObject(root, "reasons"));
    for (int r = 0; reasons && r < GPU_REASON_COUNT_; r++)
        if (v->reasons & GPU_REASON_BIT(r))
            if (!cJSON_AddItemToArray(reasons, jcheck(&j, cJSON_CreateString(reason_names[r]))))
                j.failed = true;
    if (s->taken) {
        jstr(&j, root, "checked_at", clock_rfc3339(s->checked_at_ms, when));
    } else {
        jstr(&j, root, "checked_at", NULL);
    }
    jnum_or_null(&j, root, "age_ms", v->age_ms >= 0, (double)v->age_ms);
    jnum(&j, root, "device_count", v->device_count);

    bool usable = v->status != GPU_STATUS_UNAVAILABLE && v->free_mib >= 0;
    bool lite_fits = usable && v->free_mib >= policy->lite_min_free_mib;
    bool original_fits = usable && v->free_mib >= policy->original_min_free_mib;
    cJSON *fit = jcheck(&j, cJSON_AddObjectToObject(root, "fit"));
    cJSON *lite = jcheck(&j, cJSON_AddObjectToObject(fit, "lite"));
    jnum(&j, lite, "need_mib", (double)policy->lite_min_free_mib);
    jbool(&j, lite, "fits", lite_fits);
    cJSON *orig = jcheck(&j, cJSON_AddObjectToObject(fit, "original"));
    jnum(&j, orig, "need_mib", (double)policy->original_min_free_mib);
    jbool(&j, orig, "fits", original_fits);
    jstr(&j, fit, "recommended", original_fits ? "original" : lite_fits ? "lite" : NULL);

    if (verbose)
        add_verbose(&j, root, s, v, refresh_seconds);
    if (!j.failed)
        out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

/* ---------- The refresh thread ---------- */

static void default_cuda_probe(void *ctx, struct gpu_cuda_probe *p) {
    (void)ctx;
    gpu_backend_probe(p);
}

static const struct gpu_source default_source = {
    .ctx = NULL,
    .cuda_probe = default_cuda_probe,
    .nvml_open = gpu_nvml_open,
    .nvml_read = gpu_nvml_read,
    .xid_wait = gpu_nvml_xid_wait,
    .nvml_close = gpu_nvml_close,
};

static void record_xid(struct gpu_snapshot *s, int index, unsigned long long xid) {
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
static bool wait_for_next(const struct gpu_source *src, struct gpu_snapshot *work,
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
            cond_wait_until(now + slice);
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
            record_xid(work, index, xid);
            pthread_mutex_lock(&g.lock);
            g.snap.last_xid[index] = work->last_xid[index];
            pthread_mutex_unlock(&g.lock);
        }
    }
}

static void *refresh_main(void *arg) {
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

        if (!wait_for_next(src, work, started, &events))
            break;
    }
    src->nvml_close(src->ctx);
    free(work);
    return NULL;
}

int gpu_start_source(const struct gpu_options *opts, const struct gpu_source *src) {
    pthread_once(&g_cond_once, cond_init_once);
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
    int rc = pthread_create(&g.thread, NULL, refresh_main, work);
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
    pthread_once(&g_cond_once, cond_init_once);
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
    pthread_once(&g_cond_once, cond_init_once);
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
    pthread_once(&g_cond_once, cond_init_once);
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
        cond_wait_until(deadline);
    }
    if (!g.running)
        rc = GHE_UNAVAILABLE;
    pthread_mutex_unlock(&g.lock);
    return rc;
}

/* ---------- What handlers call ---------- */

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
static void view_locked(struct gpu_view *v) {
    gpu_snapshot_evaluate(&g.snap, clock_mono_ms(), g.opts.refresh_seconds, &g.policy, v);
}

bool gpu_ready(void) {
    struct gpu_view v;
    pthread_mutex_lock(&g.lock);
    view_locked(&v);
    pthread_mutex_unlock(&g.lock);
    return v.status != GPU_STATUS_UNAVAILABLE;
}

int gpu_fit_check(const struct gpu_fit_policy *policy, bool required, int variant, int *variant_out,
                  char *reason, size_t reason_len) {
    struct gpu_view v;
    pthread_mutex_lock(&g.lock);
    view_locked(&v);
    pthread_mutex_unlock(&g.lock);
    return gpu_fit_decide(&v, policy, required, variant, variant_out, reason, reason_len);
}

/* Prometheus label values escape backslash, quote and newline. */
static int append_label(struct buf *b, const char *s) {
    int rc = 0;
    for (; *s && rc == 0; s++) {
        if (*s == '\\')
            rc = buf_appends(b, "\\\\");
        else if (*s == '"')
            rc = buf_appends(b, "\\\"");
        else if (*s == '\n')
            rc = buf_appends(b, "\\n");
        else
            rc = buf_append(b, s, 1);
    }
    return rc;
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
            rc = append_label(b, s->cuda.devices[i].uuid);
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
            rc = append_label(b, s->cuda.devices[i].uuid);
        if (!rc)
            rc = buf_appendf(b, "\"} %d\n", s->devices[i].temperature_c);
    }
out:
    free(s);
    return rc;
}
