/*
 * Holds GPU memory for check-on-gpu.sh's cluster check: allocates all but
 * LEAVE_MIB of device 0's free memory with cudaMalloc, prints what it holds
 * and what is left, and keeps it until SIGTERM or SIGINT. It is the "other
 * workload" whose memory the agent must see and the server's decision follow.
 *   hold_memory LEAVE_MIB
 */
#include <cuda_runtime_api.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    size_t free_b = 0, total_b = 0;
    void *p = NULL;
    sigset_t set;
    int sig = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: hold_memory LEAVE_MIB\n");
        return 2;
    }
    size_t leave = strtoull(argv[1], NULL, 10) << 20;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess || free_b <= leave) {
        fprintf(stderr, "hold_memory: cudaMemGetInfo failed or less than %zu MiB free\n",
                leave >> 20);
        return 1;
    }
    size_t want = free_b - leave;
    cudaError_t rc = cudaMalloc(&p, want);
    if (rc != cudaSuccess) {
        fprintf(stderr, "hold_memory: cudaMalloc(%zu MiB): %s\n", want >> 20, cudaGetErrorName(rc));
        return 1;
    }
    cudaMemGetInfo(&free_b, &total_b);
    printf("holding %zu MiB; free now %zu MiB of %zu MiB; pid %d\n", want >> 20, free_b >> 20,
           total_b >> 20, (int)getpid());
    fflush(stdout);
    sigwait(&set, &sig);
    cudaFree(p);
    return 0;
}
