#include "gpuhook/bodybudget.h"

#include <stdatomic.h>

static atomic_long bodybudget_max = BODYBUDGET_DEFAULT_BYTES;
static atomic_long bodybudget_used;

void bodybudget_set_limit(long bytes) { atomic_store(&bodybudget_max, bytes); }

long bodybudget_limit(void) { return atomic_load(&bodybudget_max); }

bool bodybudget_take(size_t n, size_t own_total) {
    long max = atomic_load(&bodybudget_max);
    /* Large bodies stop short of the reserve kept for small ones. */
    long cap = own_total <= (size_t)BODYBUDGET_SMALL_BYTES ? max : max - max / 8;
    long used = atomic_load(&bodybudget_used);
    if (n > (size_t)max)
        return false;
    do {
        if (used + (long)n > cap)
            return false;
    } while (!atomic_compare_exchange_weak(&bodybudget_used, &used, used + (long)n));
    return true;
}

void bodybudget_give(size_t n) { atomic_fetch_sub(&bodybudget_used, (long)n); }

long bodybudget_in_use(void) { return atomic_load(&bodybudget_used); }
