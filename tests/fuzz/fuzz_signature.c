/*
 * Fuzz target 1: the X-Hub-Signature-256 parser and the streaming HMAC check.
 *
 * The whole input is first tried as a header value. Then it is split at its
 * first '|' into header and body: the body is fed in chunks whose sizes come
 * from the body itself, and the verdict must match both the one-shot
 * signature_verify() and an independent HMAC computed with OpenSSL's HMAC().
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "gpuhook/error.h"
#include "gpuhook/signature.h"

/* The first is GitHub's documented example secret, so its example request is a seed. */
static const char *const fuzz_sig_secrets[] = {"It's a Secret to Everybody",
                                               "a-second-key-for-rotation"};
#define FUZZ_SIG_KEYS (sizeof(fuzz_sig_secrets) / sizeof(fuzz_sig_secrets[0]))

static struct signature_keyring *fuzz_sig_keyring(void) {
    static struct signature_keyring *kr;
    if (!kr) {
        size_t lens[FUZZ_SIG_KEYS];
        for (size_t i = 0; i < FUZZ_SIG_KEYS; i++)
            lens[i] = strlen(fuzz_sig_secrets[i]);
        kr = signature_keyring_new(fuzz_sig_secrets, lens, FUZZ_SIG_KEYS);
        FUZZ_REQUIRE(kr != NULL, "cannot build the keyring");
    }
    return kr;
}

static int fuzz_sig_hex(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* What signature_parse_header must decide, written independently. */
static bool fuzz_sig_header_ok(const char *h, unsigned char out[SIGNATURE_LEN]) {
    if (strncmp(h, "sha256=", 7) != 0 || strlen(h) != 7 + 2 * SIGNATURE_LEN)
        return false;
    for (size_t i = 0; i < SIGNATURE_LEN; i++) {
        int hi = fuzz_sig_hex(h[7 + 2 * i]), lo = fuzz_sig_hex(h[8 + 2 * i]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return true;
}

static void fuzz_sig_parse(const char *header) {
    unsigned char got[SIGNATURE_LEN], want[SIGNATURE_LEN];
    int rc = signature_parse_header(header, got);
    bool ok = fuzz_sig_header_ok(header, want);

    FUZZ_REQUIRE(rc == 0 || rc == GHE_AUTH, "unexpected code %d", rc);
    FUZZ_REQUIRE((rc == 0) == ok, "parser says %d, the model says %d", rc, ok);
    if (ok)
        FUZZ_REQUIRE(memcmp(got, want, SIGNATURE_LEN) == 0, "decoded bytes differ");
}

static void fuzz_sig_verify(const char *header, const uint8_t *body, size_t len) {
    struct signature_keyring *kr = fuzz_sig_keyring();
    unsigned char expected[SIGNATURE_LEN];
    bool parsed = fuzz_sig_header_ok(header, expected);
    bool model = false;

    for (size_t i = 0; parsed && i < FUZZ_SIG_KEYS; i++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        FUZZ_REQUIRE(HMAC(EVP_sha256(), fuzz_sig_secrets[i], (int)strlen(fuzz_sig_secrets[i]), body,
                          len, md, &mdlen) != NULL,
                     "HMAC failed");
        model = model || (mdlen == SIGNATURE_LEN && memcmp(md, expected, SIGNATURE_LEN) == 0);
    }

    bool oneshot = signature_verify(kr, header, body, len);
    FUZZ_REQUIRE(oneshot == model, "signature_verify says %d, HMAC says %d", oneshot, model);

    /* Streamed in chunks of 1 to 64 bytes, as libmicrohttpd hands them over. */
    struct signature_check c;
    FUZZ_REQUIRE(signature_check_init(&c, kr) == 0, "check_init failed");
    size_t off = 0;
    while (off < len) {
        size_t n = 1 + (body[off] & 63);
        if (n > len - off)
            n = len - off;
        signature_check_update(&c, body + off, n);
        off += n;
    }
    signature_check_update(&c, body, 0);
    static const unsigned char zero[SIGNATURE_LEN];
    bool streamed = signature_check_finish(&c, parsed ? expected : zero);
    signature_check_cleanup(&c); /* after finish: must be a no-op */
    if (parsed)
        FUZZ_REQUIRE(streamed == model, "streamed check says %d, HMAC says %d", streamed, model);

    /* A check abandoned mid-body (client went away) frees everything. */
    FUZZ_REQUIRE(signature_check_init(&c, kr) == 0, "check_init failed");
    signature_check_update(&c, body, len / 2);
    signature_check_cleanup(&c);
}

int fuzz_signature_one(const uint8_t *data, size_t size) {
    char *all = fuzz_strndup(data, size);
    const char *bar = memchr(data, '|', size);

    fuzz_sig_parse(all);
    FUZZ_REQUIRE(signature_parse_header(NULL, (unsigned char[SIGNATURE_LEN]){0}) == GHE_AUTH,
                 "a missing header must fail");
    if (bar) {
        size_t hlen = (size_t)(bar - (const char *)data);
        all[hlen] = '\0';
        fuzz_sig_verify(all, (const uint8_t *)bar + 1, size - hlen - 1);
    } else {
        fuzz_sig_verify(all, data, 0);
    }
    free(all);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_signature_one(data, size);
}
#endif
