/*
 * A standalone harness for the GPU module, without the HTTP server: it starts
 * the real probe (CUDA backend and NVML), waits for the first snapshot, prints
 * what GET /gpu and /gpu?verbose would answer, the gauges, a fit decision, and
 * how long the first refresh and a cached gpu_status_json() call take. Built by
 * check-on-gpu.sh; used on the GPU machine to see the CUDA and NVML path work.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpuhook/buf.h"
#include "gpuhook/gpu.h"
#include "gpu_backend.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    int iterations = argc > 1 ? atoi(argv[1]) : 10000;
    struct gpu_options opts = {.refresh_seconds = 5, .required = false};
    int status = 0;

    printf("build: %s\n", gpu_build_string());
    double t0 = now_ms();
    if (gpu_start(&opts) != 0) {
        fprintf(stderr, "gpu_start failed\n");
        return 1;
    }
    int rc = gpu_refresh_now(60000);
    double t1 = now_ms();
    printf("first_snapshot_ms: %.1f (gpu_refresh_now rc %d)\n", t1 - t0, rc);

    char *body = gpu_status_json(false, &status);
    printf("gpu_http_status: %d\ngpu: %s\n", status, body ? body : "(null)");
    free(body);
    body = gpu_status_json(true, &status);
    printf("gpu_verbose: %s\n", body ? body : "(null)");
    free(body);

    if (iterations < 1)
        iterations = 1;
    double t2 = now_ms();
    for (int i = 0; i < iterations; i++) {
        body = gpu_status_json(false, &status);
        free(body);
    }
    double t3 = now_ms();
    printf("gpu_status_json_us: %.2f (mean of %d cached calls)\n", (t3 - t2) * 1e3 / iterations,
           iterations);
    t2 = now_ms();
    for (int i = 0; i < iterations; i++) {
        body = gpu_status_json(true, &status);
        free(body);
    }
    t3 = now_ms();
    printf("gpu_status_json_verbose_us: %.2f (mean of %d cached calls)\n",
           (t3 - t2) * 1e3 / iterations, iterations);

    rc = gpu_refresh_now(60000);
    body = gpu_status_json(true, &status);
    printf("second_refresh_rc: %d\ngpu_verbose_after: %s\n", rc, body ? body : "(null)");
    free(body);

    char reason[512];
    int variant = -1;
    int outcome = gpu_fit_check(NULL, false, 1, &variant, reason, sizeof(reason));
    printf("fit_original: %s, variant %d: %s\n", gpu_fit_outcome_name(outcome), variant, reason);

    struct buf b;
    buf_init(&b, 1 << 16);
    if (gpu_metrics_append(&b) == 0)
        printf("metrics:\n%s", b.data);
    buf_cleanup(&b);

    double t4 = now_ms();
    gpu_stop();
    printf("gpu_stop_ms: %.1f\n", now_ms() - t4);
    return 0;
}
