/*
 * GitHub webhook signatures: X-Hub-Signature-256: sha256=<64 hex>, the
 * HMAC-SHA256 of the raw body. Keys are compiled once into a keyring; each
 * request clones the prepared HMAC states and feeds body chunks as they
 * stream in, then compares 32 bytes in constant time against every key, so a
 * secret can rotate without downtime. SHA-1 signatures are never accepted.
 */
#ifndef GPUHOOK_SIGNATURE_H
#define GPUHOOK_SIGNATURE_H

#include <stdbool.h>
#include <stddef.h>

#define SIGNATURE_MAX_KEYS 8
#define SIGNATURE_LEN 32

struct signature_keyring;

/* Builds a keyring from n secrets (copied). Returns NULL on failure. */
struct signature_keyring *signature_keyring_new(const char *const *secrets, const size_t *lens,
                                                size_t n);
void signature_keyring_free(struct signature_keyring *kr);

/*
 * Parses "sha256=<64 hex>" (hex case-insensitive) into out. Returns 0, or
 * GHE_AUTH for a missing header, another algorithm or malformed hex.
 */
int signature_parse_header(const char *header, unsigned char out[SIGNATURE_LEN]);

/* Per-request state; caller owns it. */
struct signature_check {
    void *ctx[SIGNATURE_MAX_KEYS];
    size_t n;
};

/* Starts a check (clones the keyring's prepared states). Returns 0 or GHE_NOMEM. */
int signature_check_init(struct signature_check *c, const struct signature_keyring *kr);
void signature_check_update(struct signature_check *c, const void *data, size_t len);
/* True when expected matches the HMAC under any key. Frees the state. */
bool signature_check_finish(struct signature_check *c, const unsigned char expected[SIGNATURE_LEN]);
/* Frees the state without a verdict (safe after finish). */
void signature_check_cleanup(struct signature_check *c);

/* One-shot helper: verifies header over body. */
bool signature_verify(const struct signature_keyring *kr, const char *header, const void *body,
                      size_t len);

#endif
