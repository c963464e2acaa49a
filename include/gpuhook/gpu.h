/*
 * GPU health. A background thread refreshes a snapshot from the CUDA runtime
 * (probed once at start, since its errors are sticky) and from NVML (loaded
 * with dlopen at run time); handlers only serialize the cached copy. The
 * backend is chosen by CMake: gpu_cuda.c, or gpu_none.c which reports "built
 * without CUDA". Nothing here creates a CUDA context.
 */
#ifndef GPUHOOK_GPU_H
#define GPUHOOK_GPU_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/buf.h"

struct gpu_options {
    int refresh_seconds; /* gpu.refresh_seconds, >= 1 */
    bool required;       /* gpu.required */
};

/*
 * What a variant that does not fit gets. QUEUE (the default) needs the admission
 * scheduler (admission.h): the run is created pending and waits for the GPU; where
 * there is no scheduler (dry_run, local) it acts as DOWNGRADE and the reason says so.
 */
enum gpu_fit_mode {
    GPU_FIT_DOWNGRADE = 0,
    GPU_FIT_REJECT = 1,
    GPU_FIT_IGNORE = 2,
    GPU_FIT_QUEUE = 3,
};

/* gpu_fit.on_timeout: what a run that waited max_wait_seconds for the GPU gets. */
enum gpu_fit_timeout { GPU_FIT_TIMEOUT_DOWNGRADE = 0, GPU_FIT_TIMEOUT_REJECT = 1 };

/*
 * selection.gpu_fit: parsed once, by select_rules_parse, into the config's
 * rules; the probe keeps a copy (gpu_set_fit_policy) only to report it on
 * GET /gpu. The defaults are GPU_FIT_POLICY_DEFAULTS, here and nowhere else.
 */
struct gpu_fit_policy {
    long lite_min_free_mib;
    long original_min_free_mib;
    int on_insufficient;   /* enum gpu_fit_mode */
    long max_wait_seconds; /* QUEUE: how long a run waits for the GPU; 0 for ever */
    int on_timeout;        /* enum gpu_fit_timeout, after max_wait_seconds */
};

/*
 * The gpu_fit defaults: 2048 MiB for lite, 8192 MiB for original, queue, waiting
 * for ever (on_timeout downgrade applies once max_wait_seconds is set).
 */
#define GPU_FIT_POLICY_DEFAULTS                                                                    \
    {                                                                                              \
        .lite_min_free_mib = 2048, .original_min_free_mib = 8192,                                  \
        .on_insufficient = GPU_FIT_QUEUE, .max_wait_seconds = 0,                                   \
        .on_timeout = GPU_FIT_TIMEOUT_DOWNGRADE                                                    \
    }

/* Starts the refresh thread (probing CUDA once). Returns 0 or an error code. */
int gpu_start(const struct gpu_options *opts);
/* Stops the refresh thread; safe to call when not started. */
void gpu_stop(void);
/* Changes the options of a running probe (on SIGHUP). */
void gpu_set_options(const struct gpu_options *opts);

/* `gpuhook agent`: GET /gpu's body names this node ("node"); set once, before serving. */
void gpu_set_node_name(const char *name);

/*
 * Serializes the cached snapshot as the body of GET /gpu (caller frees) and
 * sets *http_status to 200 (ok, degraded) or 503 (unavailable). Returns NULL
 * only when memory runs out.
 */
char *gpu_status_json(bool verbose, int *http_status);

/* Appends gpuhook_gpu_up and the per-device gauges in Prometheus text format. */
int gpu_metrics_append(struct buf *b);

/* True when the snapshot says the GPU is usable (status ok or degraded). */
bool gpu_ready(void);

enum gpu_fit_outcome {
    GPU_FIT_KEEP = 0,
    GPU_FIT_DOWNGRADED = 1,
    GPU_FIT_REJECTED = 2,
    GPU_FIT_QUEUED = 3, /* QUEUE: a usable GPU has too little free memory; the variant is kept */
};

/*
 * Applies the gpu_fit policy to a chosen variant (0 lite, 1 original) given the
 * cached free memory. Sets *variant_out, and writes one readable sentence with
 * the numbers into reason (or leaves it empty when the check was skipped
 * because no GPU is seen and required is false). Returns an enum gpu_fit_outcome.
 * QUEUE queues only for memory: no usable GPU is still a rejection.
 */
int gpu_fit_check(const struct gpu_fit_policy *policy, bool required, int variant, int *variant_out,
                  char *reason, size_t reason_len);

/*
 * The figure the fit check judges by, for the admission scheduler: the most free memory
 * on one usable device of the cached snapshot, -1 when no device is usable. *seen says
 * whether any device is seen at all.
 */
long long gpu_free_mib(bool *seen);

/* "cuda <runtime version>" or "cuda off" (static string). */
const char *gpu_build_string(void);

/* Fills p with GPU_FIT_POLICY_DEFAULTS. */
void gpu_fit_policy_init(struct gpu_fit_policy *p);

/*
 * Sets the needs that GET /gpu reports under "fit" and that "low_memory" is
 * judged by (copied; call again on SIGHUP). Until called, the defaults apply.
 */
void gpu_set_fit_policy(const struct gpu_fit_policy *policy);

/* "keep", "downgraded", "rejected" or "queued", for logs and annotations. */
const char *gpu_fit_outcome_name(int outcome);

/*
 * True when an XID means the GPU should not take work. Every XID is fatal but
 * 13, 31, 43, 45, 68 and 109, which the NVIDIA device plugin also skips: they
 * are errors of one application, not of the device.
 */
bool gpu_xid_is_fatal(unsigned long long xid);

#endif
