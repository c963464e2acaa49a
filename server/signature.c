#include "gpuhook/signature.h"
#include "gpuhook/buf.h"
#include "gpuhook/error.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

struct signature_keyring {
    EVP_MAC *mac;
    EVP_MAC_CTX *prepared[SIGNATURE_MAX_KEYS];
    size_t n;
};

struct signature_keyring *signature_keyring_new(const char *const *secrets, const size_t *lens,
                                                size_t n) {
    struct signature_keyring *kr = calloc(1, sizeof(*kr));
    if (!kr || n == 0 || n > SIGNATURE_MAX_KEYS)
        goto fail;
    kr->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (!kr->mac)
        goto fail;
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    for (size_t i = 0; i < n; i++) {
        /* Each key's HMAC state is prepared once; requests only duplicate it. */
        EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(kr->mac);
        if (!ctx)
            goto fail;
        kr->prepared[kr->n++] = ctx;
        if (EVP_MAC_init(ctx, (const unsigned char *)secrets[i], lens[i], params) != 1)
            goto fail;
    }
    return kr;
fail:
    signature_keyring_free(kr);
    return NULL;
}

void signature_keyring_free(struct signature_keyring *kr) {
    if (!kr)
        return;
    for (size_t i = 0; i < kr->n; i++)
        EVP_MAC_CTX_free(kr->prepared[i]);
    EVP_MAC_free(kr->mac);
    free(kr);
}

int signature_parse_header(const char *header, unsigned char out[SIGNATURE_LEN]) {
    static const char prefix[] = "sha256=";
    if (!header || strncmp(header, prefix, sizeof(prefix) - 1) != 0)
        return GHE_AUTH;
    const char *hex = header + sizeof(prefix) - 1;
    if (strlen(hex) != SIGNATURE_LEN * 2)
        return GHE_AUTH;
    for (size_t i = 0; i < SIGNATURE_LEN; i++) {
        int hi = buf_hex_value(hex[2 * i]);
        int lo = buf_hex_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return GHE_AUTH;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

int signature_check_init(struct signature_check *c, const struct signature_keyring *kr) {
    c->n = 0;
    for (size_t i = 0; kr && i < kr->n; i++) {
        EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(kr->prepared[i]);
        if (!ctx) {
            signature_check_cleanup(c);
            return GHE_NOMEM;
        }
        c->ctx[c->n++] = ctx;
    }
    return 0;
}

void signature_check_update(struct signature_check *c, const void *data, size_t len) {
    for (size_t i = 0; i < c->n; i++)
        EVP_MAC_update(c->ctx[i], data, len);
}

bool signature_check_finish(struct signature_check *c,
                            const unsigned char expected[SIGNATURE_LEN]) {
    int match = 0;
    for (size_t i = 0; i < c->n; i++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        size_t mdlen = 0;
        if (EVP_MAC_final(c->ctx[i], md, &mdlen, sizeof(md)) == 1 && mdlen == SIGNATURE_LEN)
            match |= CRYPTO_memcmp(md, expected, SIGNATURE_LEN) == 0;
    }
    signature_check_cleanup(c);
    return match != 0;
}

void signature_check_cleanup(struct signature_check *c) {
    for (size_t i = 0; i < c->n; i++)
        EVP_MAC_CTX_free(c->ctx[i]);
    c->n = 0;
}

bool signature_verify(const struct signature_keyring *kr, const char *header, const void *body,
                      size_t len) {
    unsigned char expected[SIGNATURE_LEN];
    struct signature_check c;

    if (signature_parse_header(header, expected) != 0)
        return false;
    if (signature_check_init(&c, kr) != 0)
        return false;
    signature_check_update(&c, body, len);
    return signature_check_finish(&c, expected);
}
