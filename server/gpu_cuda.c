/*
 * The CUDA backend: asks the CUDA runtime, linked statically, what it sees.
 * Only calls that create no context are made here (no cudaMemGetInfo, no
 * cudaSetDevice, no allocation): a context would cost about 0.5 GiB of GPU
 * memory and 100 ms for the life of the process.
 */
#include "gpu_backend.h"
#include "gpuhook/gpu.h"

#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static char build_string[32];
static pthread_once_t build_once = PTHREAD_ONCE_INIT;

static void gpu_cuda_build_string_init(void) {
    snprintf(build_string, sizeof(build_string), "cuda %d.%d", CUDART_VERSION / 1000,
             (CUDART_VERSION % 1000) / 10);
}

const char *gpu_build_string(void) {
    pthread_once(&build_once, gpu_cuda_build_string_init);
    return build_string;
}

/* NVML spells a UUID "GPU-" and the 16 bytes as 8-4-4-4-12 hex digits. */
static void gpu_cuda_format_uuid(const unsigned char *b, char *out, size_t len) {
    snprintf(out, len, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
             b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

void gpu_backend_probe(struct gpu_cuda_probe *p) {
    memset(p, 0, sizeof(*p));
    p->built = true;

    int version = 0;
    if (cudaDriverGetVersion(&version) == cudaSuccess)
        p->driver_version = version;
    version = 0;
    if (cudaRuntimeGetVersion(&version) == cudaSuccess)
        p->runtime_version = version;

    /* Without a driver this answers 35 and leaves count unwritten, hence the 0. */
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err != cudaSuccess) {
        p->error = (int)err;
        snprintf(p->error_name, sizeof(p->error_name), "%s", cudaGetErrorName(err));
        return;
    }
    if (count > GPU_MAX_DEVICES)
        count = GPU_MAX_DEVICES;

    for (int i = 0; i < count; i++) {
        struct cudaDeviceProp prop;
        struct gpu_cuda_device *d = &p->devices[i];
        err = cudaGetDeviceProperties(&prop, i);
        if (err != cudaSuccess) {
            p->error = (int)err;
            snprintf(p->error_name, sizeof(p->error_name), "%s", cudaGetErrorName(err));
            return;
        }
        snprintf(d->name, sizeof(d->name), "%s", prop.name);
        gpu_cuda_format_uuid((const unsigned char *)prop.uuid.bytes, d->uuid, sizeof(d->uuid));
        snprintf(d->pci_bus_id, sizeof(d->pci_bus_id), "%08X:%02X:%02X.0",
                 (unsigned)prop.pciDomainID, (unsigned)prop.pciBusID, (unsigned)prop.pciDeviceID);
        d->cc_major = prop.major;
        d->cc_minor = prop.minor;
        d->ecc_enabled = prop.ECCEnabled != 0;
        d->total_bytes = (unsigned long long)prop.totalGlobalMem;
    }
    p->device_count = count;
}
