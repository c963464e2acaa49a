/*
 * NVML, loaded at run time with dlopen so that the binary starts on machines
 * with no driver and is never linked to -lnvidia-ml. Only the few types and
 * entry points used here are declared, with NVML's versioned names; anything
 * missing from an older library is treated as "not supported". Everything here
 * runs on the refresh thread alone, so the state is plain statics.
 */
#include "gpu_backend.h"
#include "gpuhook/error.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

/* The subset of nvml.h this file needs. */
typedef int nvml_return;
typedef struct nvml_device_st *nvml_device;
typedef struct nvml_event_set_st *nvml_event_set;

#define NVML_SUCCESS 0
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_TIMEOUT 10
#define NVML_ERROR_FUNCTION_NOT_FOUND 13
#define NVML_ERROR_ARGUMENT_VERSION_MISMATCH 25
#define NVML_TEMPERATURE_GPU 0
#define NVML_MEMORY_ERROR_TYPE_UNCORRECTED 1
#define NVML_VOLATILE_ECC 0
#define NVML_EVENT_TYPE_XID_CRITICAL_ERROR 0x8ULL

struct nvml_memory_v1 {
    unsigned long long total;
    unsigned long long free;
    unsigned long long used;
};

struct nvml_memory_v2 {
    unsigned int version;
    unsigned long long total;
    unsigned long long reserved;
    unsigned long long free;
    unsigned long long used;
};

struct nvml_temperature_v1 {
    unsigned int version;
    int sensor_type;
    int temperature;
};

struct nvml_utilization {
    unsigned int gpu;
    unsigned int memory;
};

struct nvml_event_data {
    nvml_device device;
    unsigned long long event_type;
    unsigned long long event_data;
    unsigned int gpu_instance_id;
    unsigned int compute_instance_id;
};

/* NVML_STRUCT_VERSION: the struct's size in the low bits, its version in the top byte. */
#define NVML_STRUCT_VERSION(type, ver) ((unsigned int)(sizeof(type) | ((unsigned)(ver) << 24)))

/* The name and parameters of every entry point used; all return an nvml_return. */
#define NVML_FUNCTIONS(XX)                                                                         \
    XX(nvmlInit_v2, (void))                                                                        \
    XX(nvmlShutdown, (void))                                                                       \
    XX(nvmlSystemGetDriverVersion, (char *, unsigned int))                                         \
    XX(nvmlDeviceGetHandleByUUID, (const char *, nvml_device *))                                   \
    XX(nvmlDeviceGetHandleByPciBusId_v2, (const char *, nvml_device *))                            \
    XX(nvmlDeviceGetMemoryInfo_v2, (nvml_device, struct nvml_memory_v2 *))                         \
    XX(nvmlDeviceGetMemoryInfo, (nvml_device, struct nvml_memory_v1 *))                            \
    XX(nvmlDeviceGetTemperature, (nvml_device, int, unsigned int *))                               \
    XX(nvmlDeviceGetTemperatureV, (nvml_device, struct nvml_temperature_v1 *))                     \
    XX(nvmlDeviceGetPowerUsage, (nvml_device, unsigned int *))                                     \
    XX(nvmlDeviceGetUtilizationRates, (nvml_device, struct nvml_utilization *))                    \
    XX(nvmlDeviceGetCurrentClocksEventReasons, (nvml_device, unsigned long long *))                \
    XX(nvmlDeviceGetCurrentClocksThrottleReasons, (nvml_device, unsigned long long *))             \
    XX(nvmlDeviceGetEccMode, (nvml_device, int *, int *))                                          \
    XX(nvmlDeviceGetTotalEccErrors, (nvml_device, int, int, unsigned long long *))                 \
    XX(nvmlDeviceGetRemappedRows,                                                                  \
       (nvml_device, unsigned int *, unsigned int *, unsigned int *, unsigned int *))              \
    XX(nvmlDeviceGetMigMode, (nvml_device, unsigned int *, unsigned int *))                        \
    XX(nvmlDeviceGetComputeRunningProcesses_v3, (nvml_device, unsigned int *, void *))             \
    XX(nvmlDeviceGetSupportedEventTypes, (nvml_device, unsigned long long *))                      \
    XX(nvmlEventSetCreate, (nvml_event_set *))                                                     \
    XX(nvmlDeviceRegisterEvents, (nvml_device, unsigned long long, nvml_event_set))                \
    XX(nvmlEventSetWait_v2, (nvml_event_set, struct nvml_event_data *, unsigned int))              \
    XX(nvmlEventSetFree, (nvml_event_set))

struct nvml_api {
#define NVML_MEMBER_(name, params) nvml_return(*name) params;
    NVML_FUNCTIONS(NVML_MEMBER_)
#undef NVML_MEMBER_
    const char *(*nvmlErrorString)(nvml_return);
};

static struct {
    void *dl;
    bool initialized;
    struct nvml_api api;
    int count;
    bool bound[GPU_MAX_DEVICES];
    nvml_device handles[GPU_MAX_DEVICES];
    nvml_event_set events;
} n;

/* dlsym returns an object pointer; copying its bytes is how POSIX says to get a function. */
#define NVML_LOAD_(name, params)                                                                   \
    do {                                                                                           \
        void *sym_ = dlsym(n.dl, #name);                                                           \
        memcpy(&n.api.name, &sym_, sizeof(sym_));                                                  \
    } while (0);

static const char *gpu_nvml_error_name(nvml_return rc) {
    if (n.api.nvmlErrorString) {
        const char *s = n.api.nvmlErrorString(rc);
        if (s)
            return s;
    }
    return "unknown NVML error";
}

int gpu_nvml_open(void *ctx, struct gpu_snapshot *s) {
    (void)ctx;
    memset(&n, 0, sizeof(n));
    memset(&s->nvml, 0, sizeof(s->nvml));

    n.dl = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!n.dl) {
        const char *why = dlerror();
        s->nvml.error = -1;
        snprintf(s->nvml.error_name, sizeof(s->nvml.error_name), "%s",
                 why ? why : "libnvidia-ml.so.1 not found");
        return GHE_UNAVAILABLE;
    }
    NVML_FUNCTIONS(NVML_LOAD_) {
        void *sym = dlsym(n.dl, "nvmlErrorString");
        memcpy(&n.api.nvmlErrorString, &sym, sizeof(sym));
    }
    if (!n.api.nvmlInit_v2 || !n.api.nvmlShutdown) {
        s->nvml.error = NVML_ERROR_FUNCTION_NOT_FOUND;
        snprintf(s->nvml.error_name, sizeof(s->nvml.error_name), "nvmlInit_v2 not found");
        gpu_nvml_close(NULL);
        return GHE_UNAVAILABLE;
    }
    nvml_return rc = n.api.nvmlInit_v2();
    if (rc != NVML_SUCCESS) {
        s->nvml.error = rc;
        snprintf(s->nvml.error_name, sizeof(s->nvml.error_name), "%s", gpu_nvml_error_name(rc));
        gpu_nvml_close(NULL);
        return GHE_UNAVAILABLE;
    }
    n.initialized = true;
    s->nvml.loaded = true;
    if (n.api.nvmlSystemGetDriverVersion)
        n.api.nvmlSystemGetDriverVersion(s->nvml.driver_version,
                                         (unsigned int)sizeof(s->nvml.driver_version));

    /*
     * NVML ignores CUDA_VISIBLE_DEVICES and numbers devices its own way, so a
     * CUDA device is matched by its UUID, or failing that by its PCI bus id,
     * never by index.
     */
    n.count = s->cuda.device_count;
    for (int i = 0; i < n.count; i++) {
        nvml_device h = NULL;
        rc = -1;
        if (n.api.nvmlDeviceGetHandleByUUID)
            rc = n.api.nvmlDeviceGetHandleByUUID(s->cuda.devices[i].uuid, &h);
        if (rc != NVML_SUCCESS && n.api.nvmlDeviceGetHandleByPciBusId_v2)
            rc = n.api.nvmlDeviceGetHandleByPciBusId_v2(s->cuda.devices[i].pci_bus_id, &h);
        n.bound[i] = rc == NVML_SUCCESS;
        n.handles[i] = h;
    }

    /* XID events are optional: without them the thread only polls. */
    if (n.api.nvmlEventSetCreate && n.api.nvmlDeviceRegisterEvents && n.api.nvmlEventSetWait_v2 &&
        n.api.nvmlEventSetCreate(&n.events) == NVML_SUCCESS) {
        bool any = false;
        for (int i = 0; i < n.count; i++) {
            unsigned long long types = 0;
            if (!n.bound[i])
                continue;
            if (n.api.nvmlDeviceGetSupportedEventTypes &&
                n.api.nvmlDeviceGetSupportedEventTypes(n.handles[i], &types) == NVML_SUCCESS &&
                !(types & NVML_EVENT_TYPE_XID_CRITICAL_ERROR))
                continue;
            if (n.api.nvmlDeviceRegisterEvents(n.handles[i], NVML_EVENT_TYPE_XID_CRITICAL_ERROR,
                                               n.events) == NVML_SUCCESS)
                any = true;
        }
        if (!any) {
            if (n.api.nvmlEventSetFree)
                n.api.nvmlEventSetFree(n.events);
            n.events = NULL;
        }
    }
    s->nvml.xid_events = n.events != NULL;
    return 0;
}

/* Notes a failed call on d; "not supported" only means the value stays unknown. */
static bool gpu_nvml_ok(struct gpu_nvml_device *d, nvml_return rc) {
    if (rc == NVML_SUCCESS)
        return true;
    if (rc == GPU_NVML_ERROR_GPU_IS_LOST)
        d->lost = true;
    if (rc != NVML_ERROR_NOT_SUPPORTED && d->error == 0)
        d->error = rc;
    return false;
}

static void gpu_nvml_read_device(nvml_device h, struct gpu_nvml_device *d) {
    const struct nvml_api *a = &n.api;

    bool have_v2 = false;
    if (a->nvmlDeviceGetMemoryInfo_v2) {
        struct nvml_memory_v2 m = {.version = NVML_STRUCT_VERSION(struct nvml_memory_v2, 2)};
        nvml_return rc = a->nvmlDeviceGetMemoryInfo_v2(h, &m);
        if (rc == NVML_SUCCESS) {
            have_v2 = true;
            d->has_memory = true;
            d->mem_total = m.total;
            d->mem_reserved = m.reserved;
            d->mem_free = m.free;
            d->mem_used = m.used;
        } else if (rc != NVML_ERROR_ARGUMENT_VERSION_MISMATCH) {
            gpu_nvml_ok(d, rc);
        }
    }
    if (!have_v2 && !d->lost && a->nvmlDeviceGetMemoryInfo) {
        struct nvml_memory_v1 m;
        if (gpu_nvml_ok(d, a->nvmlDeviceGetMemoryInfo(h, &m))) {
            d->has_memory = true;
            d->mem_total = m.total;
            d->mem_free = m.free;
            d->mem_used = m.used;
        }
    }
    if (d->lost)
        return;

    unsigned int u = 0;
    if (a->nvmlDeviceGetTemperature) {
        if (gpu_nvml_ok(d, a->nvmlDeviceGetTemperature(h, NVML_TEMPERATURE_GPU, &u)))
            d->temperature_c = (int)u;
    } else if (a->nvmlDeviceGetTemperatureV) {
        struct nvml_temperature_v1 t = {.version =
                                            NVML_STRUCT_VERSION(struct nvml_temperature_v1, 1),
                                        .sensor_type = NVML_TEMPERATURE_GPU};
        if (gpu_nvml_ok(d, a->nvmlDeviceGetTemperatureV(h, &t)))
            d->temperature_c = t.temperature;
    }
    if (a->nvmlDeviceGetPowerUsage && gpu_nvml_ok(d, a->nvmlDeviceGetPowerUsage(h, &u)))
        d->power_mw = (long)u;

    struct nvml_utilization util;
    if (a->nvmlDeviceGetUtilizationRates &&
        gpu_nvml_ok(d, a->nvmlDeviceGetUtilizationRates(h, &util)))
        d->utilization_pct = (int)util.gpu;

    unsigned long long reasons = 0;
    nvml_return rc = -1;
    if (a->nvmlDeviceGetCurrentClocksEventReasons)
        rc = a->nvmlDeviceGetCurrentClocksEventReasons(h, &reasons);
    else if (a->nvmlDeviceGetCurrentClocksThrottleReasons)
        rc = a->nvmlDeviceGetCurrentClocksThrottleReasons(h, &reasons);
    if (rc != -1 && gpu_nvml_ok(d, rc)) {
        d->has_clocks_event_reasons = true;
        d->clocks_event_reasons = reasons;
    }

    int current = 0, pending = 0;
    if (a->nvmlDeviceGetEccMode && gpu_nvml_ok(d, a->nvmlDeviceGetEccMode(h, &current, &pending)))
        d->ecc_mode = current ? 1 : 0;
    unsigned long long count = 0;
    if (a->nvmlDeviceGetTotalEccErrors &&
        gpu_nvml_ok(d, a->nvmlDeviceGetTotalEccErrors(h, NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
                                                      NVML_VOLATILE_ECC, &count)))
        d->ecc_uncorrected_volatile = (long long)count;

    unsigned int corr = 0, unc = 0, is_pending = 0, failed = 0;
    if (a->nvmlDeviceGetRemappedRows &&
        gpu_nvml_ok(d, a->nvmlDeviceGetRemappedRows(h, &corr, &unc, &is_pending, &failed))) {
        d->has_remapped_rows = true;
        d->remapped_correctable = corr;
        d->remapped_uncorrectable = unc;
        d->remap_pending = is_pending != 0;
        d->remap_failure = failed != 0;
    }

    unsigned int mig = 0, mig_pending = 0;
    if (a->nvmlDeviceGetMigMode && gpu_nvml_ok(d, a->nvmlDeviceGetMigMode(h, &mig, &mig_pending)))
        d->mig_mode = mig ? 1 : 0;
    /*
     * With room for none, NVML answers SUCCESS when no compute process runs and
     * INSUFFICIENT_SIZE with the count when some do: the count is all the agent needs.
     */
    unsigned int procs = 0;
    if (a->nvmlDeviceGetComputeRunningProcesses_v3) {
        nvml_return prc = a->nvmlDeviceGetComputeRunningProcesses_v3(h, &procs, NULL);
        if (prc == NVML_SUCCESS)
            d->compute_processes = 0;
        else if (prc == NVML_ERROR_INSUFFICIENT_SIZE)
            d->compute_processes = (int)procs;
        else
            gpu_nvml_ok(d, prc);
    }
}

void gpu_nvml_read(void *ctx, struct gpu_snapshot *s) {
    (void)ctx;
    for (int i = 0; i < s->cuda.device_count && i < GPU_MAX_DEVICES; i++) {
        struct gpu_nvml_device *d = &s->devices[i];
        memset(d, 0, sizeof(*d));
        d->temperature_c = -1;
        d->power_mw = -1;
        d->utilization_pct = -1;
        d->ecc_mode = -1;
        d->mig_mode = -1;
        d->ecc_uncorrected_volatile = -1;
        d->compute_processes = -1;
        if (!n.initialized || i >= n.count || !n.bound[i])
            continue;
        d->matched = true;
        gpu_nvml_read_device(n.handles[i], d);
    }
}

int gpu_nvml_xid_wait(void *ctx, int timeout_ms, int *index, unsigned long long *xid) {
    (void)ctx;
    if (!n.events)
        return GHE_UNSUPPORTED;
    struct nvml_event_data data;
    memset(&data, 0, sizeof(data));
    nvml_return rc =
        n.api.nvmlEventSetWait_v2(n.events, &data, (unsigned int)(timeout_ms > 0 ? timeout_ms : 1));
    if (rc == NVML_ERROR_TIMEOUT)
        return 0;
    if (rc != NVML_SUCCESS)
        return GHE_IO;
    if (!(data.event_type & NVML_EVENT_TYPE_XID_CRITICAL_ERROR))
        return 0;
    for (int i = 0; i < n.count; i++) {
        if (n.bound[i] && n.handles[i] == data.device) {
            *index = i;
            *xid = data.event_data;
            return 1;
        }
    }
    return 0;
}

void gpu_nvml_close(void *ctx) {
    (void)ctx;
    if (n.events && n.api.nvmlEventSetFree)
        n.api.nvmlEventSetFree(n.events);
    if (n.initialized)
        n.api.nvmlShutdown();
    if (n.dl)
        dlclose(n.dl);
    memset(&n, 0, sizeof(n));
}
