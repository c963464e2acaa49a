/* A re-list of 10 000 runs through kwatch (bench/results/2026-12-02-kwatch-relist.md says how to
 * build it). */
#include "gpuhook/kwatch.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
static char *big(size_t n, size_t skip, int base) {
    size_t cap = n * 96 + 128, len = 0;
    char *s = malloc(cap);
    len += snprintf(s + len, cap - len, "{\"metadata\":{\"resourceVersion\":\"%d\"},\"items\":[",
                    base);
    int first = 1;
    for (size_t k = n; k-- > 0;) {
        if (skip && k % skip == 0)
            continue;
        len += snprintf(s + len, cap - len,
                        "%s{\"metadata\":{\"name\":\"r%05zu\",\"namespace\":\"ns\","
                        "\"resourceVersion\":\"%d\"}}",
                        first ? "" : ",", k, k % 2 ? base : 1);
        first = 0;
    }
    snprintf(s + len, cap - len, "]}");
    return s;
}
static int cb(void *u, enum kwatch_event e, const cJSON *o) {
    (void)u;
    (void)e;
    (void)o;
    return 0;
}
int main(void) {
    char *a = big(10000, 0, 1), *b = big(10000, 10, 2);
    struct timespec t0, t1;
    double best = 1e9;
    for (int r = 0; r < 5; r++) {
        struct kwatch w;
        kwatch_init(&w, cb, NULL, 0, 0);
        kwatch_list(&w, a, strlen(a));
        clock_gettime(CLOCK_MONOTONIC, &t0);
        kwatch_list(&w, b, strlen(b));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double d = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (d < best)
            best = d;
        kwatch_cleanup(&w);
    }
    printf("relist of 10000 runs: %.1f ms (best of 5)\n", best);
    return 0;
}
