/*
 * The backend for builds without the CUDA Toolkit: it sees no device and says
 * why, so GET /gpu answers 503 with "built_without_cuda" while everything else
 * in the server works as usual.
 */
#include "gpu_backend.h"
#include "gpuhook/gpu.h"

#include <string.h>

const char *gpu_build_string(void) { return "cuda off"; }

void gpu_backend_probe(struct gpu_cuda_probe *p) {
    memset(p, 0, sizeof(*p));
    p->built = false;
}
