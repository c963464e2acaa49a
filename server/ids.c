#include "gpuhook/ids.h"
#include "gpuhook/clock.h"
#include "gpuhook/error.h"

#include <errno.h>
#include <openssl/rand.h>
#include <sys/random.h>

int ids_random_bytes(void *buf, size_t n) {
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got == n)
        return 0;
    /* A kernel without getrandom (or a seccomp filter that refuses it): OpenSSL's pool. */
    return n <= 0x7fffffff && RAND_bytes(p, (int)n) == 1 ? 0 : GHE_UNAVAILABLE;
}

int ids_uuid4(char out[IDS_UUID_LEN + 1]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    size_t n = 0;

    out[0] = '\0';
    if (ids_random_bytes(b, sizeof(b)) != 0)
        return GHE_UNAVAILABLE;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* version 4 */
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[n++] = '-';
        out[n++] = hex[b[i] >> 4];
        out[n++] = hex[b[i] & 15];
    }
    out[n] = '\0';
    return 0;
}

uint64_t ids_fast_random(void) {
    static _Thread_local uint64_t state;
    if (!state && (ids_random_bytes(&state, sizeof(state)) != 0 || !state))
        state = (uint64_t)clock_wall_ms() * 0x9E3779B97F4A7C15ULL | 1;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

long ids_jitter_ms(long base_ms) {
    if (base_ms <= 0)
        return 0;
    long half = base_ms / 2;
    return half + (long)(ids_fast_random() % (uint64_t)(base_ms - half + 1));
}
