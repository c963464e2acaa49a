/*
 * The GPU module's rules: which XIDs are fatal, how a snapshot is judged at a
 * given moment (status, reasons, usable devices, free memory), and the gpu_fit
 * decision on such a judgement. Pure functions of their arguments: no threads,
 * no clocks, no state, so the tests check them directly.
 */
#include "gpu_backend.h"
#include "gpuhook/gpu.h"

#include <stdio.h>
#include <string.h>

#define MIB (1024ULL * 1024ULL)
#define GPU_STALE_INTERVALS 3

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
    static const struct gpu_fit_policy defaults = GPU_FIT_POLICY_DEFAULTS;
    *p = defaults;
}

const char *gpu_fit_outcome_name(int outcome) {
    switch (outcome) {
    case GPU_FIT_KEEP:
        return "keep";
    case GPU_FIT_DOWNGRADED:
        return "downgraded";
    case GPU_FIT_REJECTED:
        return "rejected";
    case GPU_FIT_QUEUED:
        return "queued";
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

static unsigned gpu_cuda_reasons(const struct gpu_cuda_probe *c) {
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
    v->reasons |= gpu_cuda_reasons(&s->cuda);

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
static void gpu_reasons_join(unsigned reasons, char *out, size_t len) {
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

static const char *gpu_variant_word(int variant) { return variant == 1 ? "original" : "lite"; }

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
    gpu_reasons_join(v->reasons, why, sizeof(why));

    if (policy->on_insufficient == GPU_FIT_IGNORE) {
        if (v->usable_count > 0)
            snprintf(reason, reason_len,
                     "gpu_fit is ignore: kept %s, which needs %ld MiB, with %lld MiB free.",
                     gpu_variant_word(variant), need, v->free_mib);
        else
            snprintf(reason, reason_len,
                     "gpu_fit is ignore: kept %s, which needs %ld MiB, with no usable GPU (%s).",
                     gpu_variant_word(variant), need, why);
        return GPU_FIT_KEEP;
    }
    if (!seen) {
        snprintf(reason, reason_len,
                 "Rejected %s, which needs %ld MiB: gpu.required is true and no GPU is seen (%s).",
                 gpu_variant_word(variant), need, why);
        return GPU_FIT_REJECTED;
    }
    if (v->usable_count == 0) {
        snprintf(reason, reason_len,
                 "Rejected %s, which needs %ld MiB: the GPU is unavailable (%s).",
                 gpu_variant_word(variant), need, why);
        return GPU_FIT_REJECTED;
    }
    long long free_mib = v->free_mib;
    if (free_mib >= need) {
        snprintf(reason, reason_len, "%s fits: %lld MiB free, %ld MiB needed.",
                 variant == 1 ? "Original" : "Lite", free_mib, need);
        return GPU_FIT_KEEP;
    }
    if (policy->on_insufficient == GPU_FIT_QUEUE) {
        snprintf(reason, reason_len,
                 "Queued %s for the GPU: %lld MiB free is below the %ld MiB it needs.",
                 gpu_variant_word(variant), free_mib, need);
        return GPU_FIT_QUEUED;
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
