/*
 * GET /gpu's body: a snapshot as judged in a view, serialized with cJSON. The
 * default body answers "can this GPU take work"; verbose adds every reading.
 */
#include "gpu_backend.h"
#include "gpuhook/clock.h"
#include "gpuhook/gpu.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024ULL * 1024ULL)

/* cJSON's Add functions return NULL on failure, also when the parent is NULL. */
struct json_ctx {
    bool failed;
};

/* The agent's node name (gpu_set_node_name), "" on the server. */
static char gpu_json_node[254];

void gpu_set_node_name(const char *name) {
    snprintf(gpu_json_node, sizeof(gpu_json_node), "%s", name ? name : "");
}

static cJSON *gpu_json_check(struct json_ctx *j, cJSON *item) {
    if (!item)
        j->failed = true;
    return item;
}

static void gpu_json_num(struct json_ctx *j, cJSON *o, const char *k, double n) {
    gpu_json_check(j, cJSON_AddNumberToObject(o, k, n));
}

static void gpu_json_num_or_null(struct json_ctx *j, cJSON *o, const char *k, bool known,
                                 double n) {
    if (known)
        gpu_json_num(j, o, k, n);
    else
        gpu_json_check(j, cJSON_AddNullToObject(o, k));
}

static void gpu_json_str(struct json_ctx *j, cJSON *o, const char *k, const char *s) {
    if (s)
        gpu_json_check(j, cJSON_AddStringToObject(o, k, s));
    else
        gpu_json_check(j, cJSON_AddNullToObject(o, k));
}

static void gpu_json_bool(struct json_ctx *j, cJSON *o, const char *k, bool b) {
    gpu_json_check(j, cJSON_AddBoolToObject(o, k, b));
}

/* 13000 -> "13.0", as nvidia-smi prints "CUDA Version". */
static const char *gpu_json_cuda_version(int v, char *out, size_t len) {
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

static void gpu_json_add_device(struct json_ctx *j, cJSON *arr, const struct gpu_snapshot *s,
                                int i) {
    const struct gpu_cuda_device *c = &s->cuda.devices[i];
    const struct gpu_nvml_device *d = &s->devices[i];
    const struct gpu_xid *x = &s->last_xid[i];
    char tmp[64];
    cJSON *o = gpu_json_check(j, cJSON_CreateObject());
    if (!o)
        return;
    if (!cJSON_AddItemToArray(arr, o)) {
        cJSON_Delete(o);
        j->failed = true;
        return;
    }
    gpu_json_num(j, o, "index", i);
    gpu_json_str(j, o, "name", c->name);
    gpu_json_str(j, o, "uuid", c->uuid);
    gpu_json_str(j, o, "pci_bus_id", c->pci_bus_id);
    snprintf(tmp, sizeof(tmp), "%d.%d", c->cc_major, c->cc_minor);
    gpu_json_str(j, o, "compute_capability", tmp);
    gpu_json_bool(j, o, "ecc_enabled", d->ecc_mode >= 0 ? d->ecc_mode == 1 : c->ecc_enabled);
    gpu_json_str(j, o, "mig_mode", d->mig_mode < 0 ? NULL : d->mig_mode ? "enabled" : "disabled");

    cJSON *m = gpu_json_check(j, cJSON_AddObjectToObject(o, "memory"));
    gpu_json_num(j, m, "total_mib",
                 (double)((d->has_memory ? d->mem_total : c->total_bytes) / MIB));
    gpu_json_num_or_null(j, m, "used_mib", d->has_memory, (double)(d->mem_used / MIB));
    gpu_json_num_or_null(j, m, "free_mib", d->has_memory, (double)(d->mem_free / MIB));
    gpu_json_num_or_null(j, m, "reserved_mib", d->has_memory, (double)(d->mem_reserved / MIB));

    gpu_json_num_or_null(j, o, "temperature_c", d->temperature_c >= 0, d->temperature_c);
    gpu_json_num_or_null(j, o, "power_w", d->power_mw >= 0, (double)d->power_mw / 1000.0);
    gpu_json_num_or_null(j, o, "utilization_pct", d->utilization_pct >= 0, d->utilization_pct);

    if (d->has_clocks_event_reasons) {
        cJSON *cr = gpu_json_check(j, cJSON_AddObjectToObject(o, "clocks_event_reasons"));
        snprintf(tmp, sizeof(tmp), "0x%016llx", d->clocks_event_reasons);
        gpu_json_str(j, cr, "active", tmp);
        cJSON *names = gpu_json_check(j, cJSON_AddArrayToObject(cr, "reasons"));
        for (size_t k = 0; names && k < sizeof(clocks_names) / sizeof(clocks_names[0]); k++)
            if (d->clocks_event_reasons & clocks_names[k].bit)
                if (!cJSON_AddItemToArray(
                        names, gpu_json_check(j, cJSON_CreateString(clocks_names[k].name))))
                    j->failed = true;
    } else {
        gpu_json_check(j, cJSON_AddNullToObject(o, "clocks_event_reasons"));
    }

    gpu_json_num_or_null(j, o, "ecc_uncorrected_volatile", d->ecc_uncorrected_volatile >= 0,
                         (double)d->ecc_uncorrected_volatile);

    if (d->has_remapped_rows) {
        cJSON *rr = gpu_json_check(j, cJSON_AddObjectToObject(o, "remapped_rows"));
        gpu_json_num(j, rr, "correctable", d->remapped_correctable);
        gpu_json_num(j, rr, "uncorrectable", d->remapped_uncorrectable);
        gpu_json_bool(j, rr, "pending", d->remap_pending);
        gpu_json_bool(j, rr, "failure", d->remap_failure);
    } else {
        gpu_json_check(j, cJSON_AddNullToObject(o, "remapped_rows"));
    }

    if (x->seen) {
        cJSON *xo = gpu_json_check(j, cJSON_AddObjectToObject(o, "last_xid"));
        gpu_json_num(j, xo, "xid", (double)x->xid);
        gpu_json_bool(j, xo, "fatal", x->fatal);
        char at[CLOCK_RFC3339_MAX];
        gpu_json_str(j, xo, "at", clock_rfc3339(x->at_ms, at));
    } else {
        gpu_json_check(j, cJSON_AddNullToObject(o, "last_xid"));
    }
    /* The agent's "busy": how many compute processes hold the device. */
    gpu_json_num_or_null(j, o, "compute_processes", d->matched && d->compute_processes >= 0,
                         d->compute_processes);
}

static void gpu_json_add_verbose(struct json_ctx *j, cJSON *root, const struct gpu_snapshot *s,
                                 const struct gpu_view *v, int refresh_seconds) {
    char tmp[32];
    cJSON *cuda = gpu_json_check(j, cJSON_AddObjectToObject(root, "cuda"));
    gpu_json_str(j, cuda, "driver_version",
                 gpu_json_cuda_version(s->cuda.driver_version, tmp, sizeof(tmp)));
    char rt[32];
    gpu_json_str(j, cuda, "runtime_version",
                 gpu_json_cuda_version(s->cuda.runtime_version, rt, sizeof(rt)));
    if (s->cuda.error) {
        cJSON *e = gpu_json_check(j, cJSON_AddObjectToObject(cuda, "error"));
        gpu_json_num(j, e, "code", s->cuda.error);
        gpu_json_str(j, e, "name", s->cuda.error_name);
    } else {
        gpu_json_check(j, cJSON_AddNullToObject(cuda, "error"));
    }
    gpu_json_str(j, cuda, "visible_devices",
                 s->cuda.visible_devices_set ? s->cuda.visible_devices : NULL);

    cJSON *nvml = gpu_json_check(j, cJSON_AddObjectToObject(root, "nvml"));
    gpu_json_bool(j, nvml, "loaded", s->nvml.loaded);
    gpu_json_str(j, nvml, "driver_version", s->nvml.loaded ? s->nvml.driver_version : NULL);
    if (!s->nvml.loaded && s->taken) {
        cJSON *e = gpu_json_check(j, cJSON_AddObjectToObject(nvml, "error"));
        gpu_json_num(j, e, "code", s->nvml.error);
        gpu_json_str(j, e, "name", s->nvml.error_name);
    } else {
        gpu_json_check(j, cJSON_AddNullToObject(nvml, "error"));
    }
    gpu_json_bool(j, nvml, "xid_events", s->nvml.xid_events);

    cJSON *probe = gpu_json_check(j, cJSON_AddObjectToObject(root, "probe"));
    gpu_json_num(j, probe, "refresh_seconds", refresh_seconds);
    gpu_json_num_or_null(j, probe, "first_refresh_ms", s->taken, (double)s->first_refresh_ms);
    gpu_json_num_or_null(j, probe, "last_refresh_ms", s->taken, (double)s->refresh_ms);

    cJSON *devs = gpu_json_check(j, cJSON_AddArrayToObject(root, "devices"));
    for (int i = 0; devs && i < v->device_count; i++)
        gpu_json_add_device(j, devs, s, i);
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
    if (gpu_json_node[0])
        gpu_json_str(&j, root, "node", gpu_json_node);
    gpu_json_str(&j, root, "status", gpu_status_name(v->status));
    cJSON *reasons = gpu_json_check(&j, cJSON_AddArrayToObject(root, "reasons"));
    for (int r = 0; reasons && r < GPU_REASON_COUNT_; r++)
        if (v->reasons & GPU_REASON_BIT(r))
            if (!cJSON_AddItemToArray(reasons,
                                      gpu_json_check(&j, cJSON_CreateString(gpu_reason_name(r)))))
                j.failed = true;
    if (s->taken) {
        gpu_json_str(&j, root, "checked_at", clock_rfc3339(s->checked_at_ms, when));
    } else {
        gpu_json_str(&j, root, "checked_at", NULL);
    }
    gpu_json_num_or_null(&j, root, "age_ms", v->age_ms >= 0, (double)v->age_ms);
    gpu_json_num(&j, root, "device_count", v->device_count);

    bool usable = v->status != GPU_STATUS_UNAVAILABLE && v->free_mib >= 0;
    bool lite_fits = usable && v->free_mib >= policy->lite_min_free_mib;
    bool original_fits = usable && v->free_mib >= policy->original_min_free_mib;
    cJSON *fit = gpu_json_check(&j, cJSON_AddObjectToObject(root, "fit"));
    cJSON *lite = gpu_json_check(&j, cJSON_AddObjectToObject(fit, "lite"));
    gpu_json_num(&j, lite, "need_mib", (double)policy->lite_min_free_mib);
    gpu_json_bool(&j, lite, "fits", lite_fits);
    cJSON *orig = gpu_json_check(&j, cJSON_AddObjectToObject(fit, "original"));
    gpu_json_num(&j, orig, "need_mib", (double)policy->original_min_free_mib);
    gpu_json_bool(&j, orig, "fits", original_fits);
    gpu_json_str(&j, fit, "recommended", original_fits ? "original" : lite_fits ? "lite" : NULL);

    if (verbose)
        gpu_json_add_verbose(&j, root, s, v, refresh_seconds);
    if (!j.failed)
        out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}
