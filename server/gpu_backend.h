/*
 * The inside of the GPU module, shared by gpu.c, its backends and the tests.
 *
 * A snapshot has two halves: what the CUDA runtime answered when it was probed
 * once at start (its errors are sticky, so asking again tells nothing new), and
 * what NVML reads on every refresh. A struct gpu_source supplies both, plus the
 * XID events that arrive between refreshes. gpu_start() uses the real source:
 * the backend CMake picked (gpu_cuda.c or gpu_none.c, both defining
 * gpu_backend_probe) and NVML loaded with dlopen (gpu_nvml.c). Tests hand a fake
 * source to gpu_start_source(), so the refresh thread, the status rules, the
 * JSON and the fit check run the same code either way.
 *
 * The pure functions at the end judge a snapshot at a given time, so the rules
 * can be checked without threads or clocks. Nothing here creates a CUDA context.
 */
#ifndef GPUHOOK_GPU_BACKEND_H
#define GPUHOOK_GPU_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/gpu.h"

#define GPU_MAX_DEVICES 16
#define GPU_NAME_MAX 256  /* cudaDeviceProp.name */
#define GPU_UUID_MAX 96   /* NVML_DEVICE_UUID_V2_BUFFER_SIZE */
#define GPU_PCI_ID_MAX 32 /* NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE */
#define GPU_ERROR_NAME_MAX 128
#define GPU_DRIVER_MAX 80 /* NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE */
#define GPU_VISIBLE_MAX 256

/* CUDA's error codes that decide a reason (driver_types.h). */
#define GPU_CUDA_ERROR_NO_DRIVER 35 /* cudaErrorInsufficientDriver */
#define GPU_CUDA_ERROR_STUB 34      /* cudaErrorStubLibrary: only the stub libcuda is there */
#define GPU_CUDA_ERROR_NO_DEVICE 100

/* NVML's return codes that the module acts on (nvml.h). */
#define GPU_NVML_ERROR_GPU_IS_LOST 15

/* The clock event reason bits of nvmlDeviceGetCurrentClocksEventReasons. */
#define GPU_CLOCKS_GPU_IDLE 0x1ULL
#define GPU_CLOCKS_APPLICATIONS_CLOCKS_SETTING 0x2ULL
#define GPU_CLOCKS_SW_POWER_CAP 0x4ULL
#define GPU_CLOCKS_HW_SLOWDOWN 0x8ULL
#define GPU_CLOCKS_SYNC_BOOST 0x10ULL
#define GPU_CLOCKS_SW_THERMAL_SLOWDOWN 0x20ULL
#define GPU_CLOCKS_HW_THERMAL_SLOWDOWN 0x40ULL
#define GPU_CLOCKS_HW_POWER_BRAKE_SLOWDOWN 0x80ULL
#define GPU_CLOCKS_DISPLAY_CLOCK_SETTING 0x100ULL

/* What cudaGetDeviceProperties says about one device. */
struct gpu_cuda_device {
    char name[GPU_NAME_MAX];
    char uuid[GPU_UUID_MAX];         /* "GPU-xxxxxxxx-xxxx-...", spelled as NVML spells it */
    char pci_bus_id[GPU_PCI_ID_MAX]; /* "00000000:19:00.0", spelled as NVML spells it */
    int cc_major;
    int cc_minor;
    bool ecc_enabled;
    unsigned long long total_bytes;
};

/* The CUDA runtime's answer, probed once at start. */
struct gpu_cuda_probe {
    bool built;          /* false for the "none" backend */
    int driver_version;  /* cudaDriverGetVersion: 13000 for 13.0, 0 without a driver */
    int runtime_version; /* cudaRuntimeGetVersion */
    int error;           /* cudaGetDeviceCount's cudaError_t, 0 when it succeeded */
    char error_name[GPU_ERROR_NAME_MAX];
    bool visible_devices_set; /* CUDA_VISIBLE_DEVICES, filled by gpu.c */
    char visible_devices[GPU_VISIBLE_MAX];
    int device_count;
    struct gpu_cuda_device devices[GPU_MAX_DEVICES];
};

/* Whether NVML could be loaded and initialized. */
struct gpu_nvml_info {
    bool loaded;
    char driver_version[GPU_DRIVER_MAX];
    int error; /* nvmlReturn_t of nvmlInit_v2, or -1 when the library could not be loaded */
    char error_name[GPU_ERROR_NAME_MAX];
    bool xid_events; /* XID events are subscribed on at least one device */
};

/*
 * What one refresh read from NVML about the CUDA device of the same index.
 * -1 (or a false has_ flag) marks a value that could not be read.
 */
struct gpu_nvml_device {
    bool matched; /* an NVML handle was found by UUID or PCI bus id */
    bool lost;    /* a call answered NVML_ERROR_GPU_IS_LOST */
    int error;    /* the first failure other than "not supported", 0 when none */
    bool has_memory;
    unsigned long long mem_total;
    unsigned long long mem_reserved;
    unsigned long long mem_free;
    unsigned long long mem_used;
    int temperature_c;
    long power_mw;
    int utilization_pct;
    bool has_clocks_event_reasons;
    unsigned long long clocks_event_reasons;
    int ecc_mode; /* current ECC mode: 1, 0 or -1 */
    int mig_mode; /* current MIG mode: 1, 0 or -1 */
    long long ecc_uncorrected_volatile;
    bool has_remapped_rows;
    unsigned remapped_correctable;
    unsigned remapped_uncorrectable;
    bool remap_pending;
    bool remap_failure;
    int compute_processes; /* nvmlDeviceGetComputeRunningProcesses' count, -1 unknown */
};

/* The last XID seen on a device, kept for the life of the process. */
struct gpu_xid {
    bool seen;
    unsigned long long xid;
    bool fatal;
    long long at_ms; /* wall clock, milliseconds since the epoch */
};

/* Everything GET /gpu reports; plain data, copied by value. */
struct gpu_snapshot {
    bool taken; /* false until the first refresh finished */
    struct gpu_cuda_probe cuda;
    struct gpu_nvml_info nvml;
    struct gpu_nvml_device devices[GPU_MAX_DEVICES]; /* indexed like cuda.devices */
    struct gpu_xid last_xid[GPU_MAX_DEVICES];
    long long checked_at_ms;    /* wall clock of the last refresh, ms since the epoch */
    long long checked_mono_ms;  /* monotonic clock of the last refresh, for its age */
    long long first_refresh_ms; /* from gpu_start to the first snapshot */
    long long refresh_ms;       /* how long the last refresh took */
};

/*
 * Where snapshots come from. All callbacks run on the refresh thread only, so a
 * source needs no locking of its own. ctx is passed back untouched.
 */
struct gpu_source {
    void *ctx;
    /* Fills *p once at start. Must not create a CUDA context. */
    void (*cuda_probe)(void *ctx, struct gpu_cuda_probe *p);
    /*
     * Loads the management library, fills s->nvml and binds every device of
     * s->cuda to its own handle. Returns 0 or GHE_UNAVAILABLE.
     */
    int (*nvml_open)(void *ctx, struct gpu_snapshot *s);
    /* Reads every bound device into s->devices. */
    void (*nvml_read)(void *ctx, struct gpu_snapshot *s);
    /*
     * Waits at most timeout_ms for an XID event. Returns 1 with the CUDA index
     * and the XID set, 0 when none came, or GHE_UNSUPPORTED when events cannot
     * be had (the caller then sleeps instead of asking again).
     */
    int (*xid_wait)(void *ctx, int timeout_ms, int *index, unsigned long long *xid);
    /* Releases what nvml_open took; safe when it failed. */
    void (*nvml_close)(void *ctx);
};

/* Provided by the backend CMake chose: gpu_cuda.c or gpu_none.c. */
void gpu_backend_probe(struct gpu_cuda_probe *p);

/* Provided by gpu_nvml.c: the real NVML, loaded with dlopen. ctx is unused. */
int gpu_nvml_open(void *ctx, struct gpu_snapshot *s);
void gpu_nvml_read(void *ctx, struct gpu_snapshot *s);
int gpu_nvml_xid_wait(void *ctx, int timeout_ms, int *index, unsigned long long *xid);
void gpu_nvml_close(void *ctx);

/*
 * Starts the refresh thread on src (copied) instead of the real source.
 * Returns 0, GHE_EXISTS when already started, GHE_NOMEM or GHE_IO.
 */
int gpu_start_source(const struct gpu_options *opts, const struct gpu_source *src);

/*
 * Asks the refresh thread for a fresh snapshot and waits until one read after
 * this call is published. Returns 0, GHE_UNAVAILABLE when not started, or
 * GHE_TIMEOUT.
 */
int gpu_refresh_now(int timeout_ms);

enum gpu_status { GPU_STATUS_OK = 0, GPU_STATUS_DEGRADED = 1, GPU_STATUS_UNAVAILABLE = 2 };

/*
 * The reasons, in the order they are listed in "reasons", with the status each
 * one forces on its own. A device-level "unavailable" reason makes the whole
 * status unavailable only when no other device is usable.
 */
#define GPU_REASON_MAP(XX)                                                                         \
    XX(STARTING, "starting", UNAVAILABLE)                                                          \
    XX(BUILT_WITHOUT_CUDA, "built_without_cuda", UNAVAILABLE)                                      \
    XX(NO_DRIVER, "no_driver", UNAVAILABLE)                                                        \
    XX(NO_DEVICE, "no_device", UNAVAILABLE)                                                        \
    XX(CUDA_ERROR, "cuda_error", UNAVAILABLE)                                                      \
    XX(STALE, "stale", UNAVAILABLE)                                                                \
    XX(XID_FATAL, "xid_fatal", UNAVAILABLE)                                                        \
    XX(GPU_LOST, "gpu_lost", UNAVAILABLE)                                                          \
    XX(ROW_REMAP_FAILED, "row_remap_failed", UNAVAILABLE)                                          \
    XX(NVML_UNAVAILABLE, "nvml_unavailable", DEGRADED)                                             \
    XX(NVML_UNMATCHED, "nvml_unmatched", DEGRADED)                                                 \
    XX(CLOCKS_HW_SLOWDOWN, "clocks_hw_slowdown", DEGRADED)                                         \
    XX(CLOCKS_THERMAL_SLOWDOWN, "clocks_thermal_slowdown", DEGRADED)                               \
    XX(CLOCKS_POWER_BRAKE_SLOWDOWN, "clocks_power_brake_slowdown", DEGRADED)                       \
    XX(ROW_REMAP_PENDING, "row_remap_pending", DEGRADED)                                           \
    XX(LOW_MEMORY, "low_memory", DEGRADED)

enum gpu_reason {
#define GPU_REASON_ENUM_(name, str, status) GPU_REASON_##name,
    GPU_REASON_MAP(GPU_REASON_ENUM_)
#undef GPU_REASON_ENUM_
        GPU_REASON_COUNT_
};

#define GPU_REASON_BIT(r) (1u << (r))

/* A snapshot judged at one moment. */
struct gpu_view {
    int status;         /* enum gpu_status */
    unsigned reasons;   /* GPU_REASON_BIT()s */
    int device_count;   /* CUDA devices seen */
    int usable_count;   /* devices with no unavailable reason of their own */
    long long free_mib; /* most free memory on a usable device, -1 when none is usable */
    long long age_ms;   /* -1 before the first snapshot */
};

/* "ok", "degraded" or "unavailable". */
const char *gpu_status_name(int status);
/* The reason's JSON string, or NULL when out of range. */
const char *gpu_reason_name(int reason);

/*
 * Judges s at now_mono_ms (CLOCK_MONOTONIC, ms). A snapshot older than three
 * refresh intervals is stale. policy->original_min_free_mib is the line under
 * which free memory is "low_memory". Always fills v.
 */
void gpu_snapshot_evaluate(const struct gpu_snapshot *s, long long now_mono_ms, int refresh_seconds,
                           const struct gpu_fit_policy *policy, struct gpu_view *v);

/*
 * Serializes s as judged in v: the default body, plus the verbose extras when
 * verbose is set. Returns the JSON text (caller frees) or NULL when memory runs
 * out.
 */
char *gpu_snapshot_json(const struct gpu_snapshot *s, const struct gpu_view *v,
                        const struct gpu_fit_policy *policy, int refresh_seconds, bool verbose);

/* gpu_fit_check() on a given view instead of the cached snapshot. */
int gpu_fit_decide(const struct gpu_view *v, const struct gpu_fit_policy *policy, bool required,
                   int variant, int *variant_out, char *reason, size_t reason_len);

#endif
