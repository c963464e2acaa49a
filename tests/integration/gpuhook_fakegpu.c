/*
 * The real server with a fake GPU behind the probe's source interface, for the
 * end-to-end tests of the gpu_fit policies on machines without a GPU. It is
 * built only for tests; the shipped binary has no such switch.
 *
 * GPUHOOK_FAKE_FREE_MIB: free memory of the one fake device, or "none" for a
 * machine that sees no GPU at all. GPUHOOK_FAKE_FREE_MIB_FILE: a file holding the free
 * memory in MiB, read again at every probe (it wins over GPUHOOK_FAKE_FREE_MIB while it
 * holds a number), so a test can change the memory while the server runs.
 * GPUHOOK_FAKE_COMPUTE_PROCS: the device's compute process count (default 0).
 *
 * `gpuhook_fakegpu agent [--listen HOST:PORT] [--node NAME]` runs `gpuhook agent`
 * on the same fake device, for the cluster view's tests.
 */
#include "gpuhook/agent.h"
#include "gpuhook/gpu.h"
#include "gpuhook/config.h"
#include "gpu_backend.h"
#include "gpuhook/serve.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long fake_free_mib;
static int fake_none;
static int fake_procs;

static void fake_cuda_probe(void *ctx, struct gpu_cuda_probe *p) {
    (void)ctx;
    memset(p, 0, sizeof(*p));
    p->built = true;
    p->driver_version = 13000;
    p->runtime_version = 13000;
    if (fake_none) {
        p->error = GPU_CUDA_ERROR_NO_DRIVER;
        snprintf(p->error_name, sizeof(p->error_name), "cudaErrorInsufficientDriver");
        return;
    }
    p->device_count = 1;
    snprintf(p->devices[0].name, sizeof(p->devices[0].name), "Fake GPU");
    snprintf(p->devices[0].uuid, sizeof(p->devices[0].uuid),
             "GPU-00000000-0000-0000-0000-000000000000");
    snprintf(p->devices[0].pci_bus_id, sizeof(p->devices[0].pci_bus_id), "00000000:01:00.0");
    p->devices[0].cc_major = 9;
    p->devices[0].total_bytes = 16ULL << 30;
}

static int fake_nvml_open(void *ctx, struct gpu_snapshot *s) {
    (void)ctx;
    if (fake_none)
        return GHE_UNAVAILABLE;
    s->nvml.loaded = true;
    snprintf(s->nvml.driver_version, sizeof(s->nvml.driver_version), "580.00");
    s->devices[0].matched = true;
    return 0;
}

/* The file's number, else the start value: a test rewrites the file with rename(2). */
static unsigned long long fake_free_now(void) {
    const char *path = getenv("GPUHOOK_FAKE_FREE_MIB_FILE");
    unsigned long long v;
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f)
        return fake_free_mib;
    int n = fscanf(f, "%llu", &v);
    fclose(f);
    return n == 1 ? v : fake_free_mib;
}

static void fake_nvml_read(void *ctx, struct gpu_snapshot *s) {
    (void)ctx;
    struct gpu_nvml_device *d = &s->devices[0];
    unsigned long long free_mib = fake_free_now();
    d->has_memory = true;
    d->mem_total = 16ULL << 30;
    d->mem_free = free_mib << 20;
    d->mem_used = d->mem_total - d->mem_free;
    d->temperature_c = 40;
    d->ecc_mode = -1;
    d->mig_mode = -1;
    d->compute_processes = fake_procs;
}

static int fake_xid_wait(void *ctx, int timeout_ms, int *index, unsigned long long *xid) {
    (void)ctx;
    (void)timeout_ms;
    (void)index;
    (void)xid;
    return GHE_UNSUPPORTED;
}

static void fake_nvml_close(void *ctx) { (void)ctx; }

int main(int argc, char **argv) {
    const struct gpu_source src = {NULL,           fake_cuda_probe, fake_nvml_open,
                                   fake_nvml_read, fake_xid_wait,   fake_nvml_close};
    const char *free_mib = getenv("GPUHOOK_FAKE_FREE_MIB");
    struct errlist el;
    struct config *cfg = NULL;
    sigset_t set;

    const char *procs = getenv("GPUHOOK_FAKE_COMPUTE_PROCS");
    fake_procs = procs ? atoi(procs) : 0;
    if (argc >= 2 && strcmp(argv[1], "agent") == 0) {
        fake_none = !free_mib || strcmp(free_mib, "none") == 0;
        fake_free_mib = fake_none ? 0 : strtoull(free_mib, NULL, 10);
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGHUP);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        struct gpu_options go = {.refresh_seconds = 1, .required = false};
        gpu_start_source(&go, &src);
        gpu_refresh_now(2000);
        return agent_main(argc - 1, argv + 1);
    }
    if (argc != 3 || strcmp(argv[1], "--config") != 0) {
        fprintf(stderr, "usage: gpuhook_fakegpu --config FILE\n");
        return 2;
    }
    fake_none = !free_mib || strcmp(free_mib, "none") == 0;
    fake_free_mib = fake_none ? 0 : strtoull(free_mib, NULL, 10);
    errlist_init(&el);
    if (config_load(argv[2], &cfg, &el) != 0) {
        for (size_t i = 0; i < el.count; i++)
            fprintf(stderr, "%s\n", el.items[i]);
        return 2;
    }
    errlist_cleanup(&el);
    /* The probe thread must not take the signals serve_run waits for. */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    gpu_start_source(&cfg->gpu, &src);
    gpu_refresh_now(2000);
    return serve_run(cfg, argv[2]);
}
