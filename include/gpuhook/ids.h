/*
 * Randomness and identifiers, shared by every module: unpredictable bytes for
 * ids that must not collide (UUIDs), a cheap per-thread generator for request
 * ids and retry jitter, and the jittered wait every backoff uses.
 */
#ifndef GPUHOOK_IDS_H
#define GPUHOOK_IDS_H

#include <stddef.h>
#include <stdint.h>

#define IDS_UUID_LEN 36

/*
 * Fills buf with n unpredictable bytes (getrandom, else OpenSSL's RAND_bytes).
 * Returns 0 or GHE_UNAVAILABLE; never fills in a predictable fallback.
 */
int ids_random_bytes(void *buf, size_t n);
/* A random (version 4) UUID in lower case, NUL-terminated. Returns 0 or GHE_UNAVAILABLE. */
int ids_uuid4(char out[IDS_UUID_LEN + 1]);
/*
 * A per-thread xorshift64 generator seeded once from ids_random_bytes (the
 * clock when that fails): unique enough for request ids and jitter, not secret.
 */
uint64_t ids_fast_random(void);
/* "Equal jitter": a wait drawn uniformly from [base_ms / 2, base_ms]; 0 for base_ms <= 0. */
long ids_jitter_ms(long base_ms);

#endif
