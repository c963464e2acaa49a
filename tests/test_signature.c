/*
 * Unit tests for signature.c: X-Hub-Signature-256 parsing, HMAC-SHA256 over a
 * streamed body, and key rotation through a keyring of several secrets.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/error.h"
#include "gpuhook/signature.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* GitHub's published test vector ("Validating webhook deliveries"). */
#define VECTOR_SECRET "It's a Secret to Everybody"
#define VECTOR_BODY "Hello, World!"
#define VECTOR_HEX "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
#define VECTOR_HEADER "sha256=" VECTOR_HEX

static struct signature_keyring *keyring_of(const char *const *secrets, size_t n) {
    size_t lens[SIGNATURE_MAX_KEYS];
    for (size_t i = 0; i < n; i++)
        lens[i] = strlen(secrets[i]);
    struct signature_keyring *kr = signature_keyring_new(secrets, lens, n);
    assert_non_null(kr);
    return kr;
}

static struct signature_keyring *vector_keyring(void) {
    const char *secrets[] = {VECTOR_SECRET};
    return keyring_of(secrets, 1);
}

static void test_signature_github_test_vector_verifies(void **state) {
    (void)state;
    struct signature_keyring *kr = vector_keyring();

    assert_true(signature_verify(kr, VECTOR_HEADER, VECTOR_BODY, strlen(VECTOR_BODY)));
    signature_keyring_free(kr);
}

static void test_signature_parse_header_decodes_32_bytes(void **state) {
    (void)state;
    unsigned char out[SIGNATURE_LEN];
    static const unsigned char expected[SIGNATURE_LEN] = {
        0x75, 0x71, 0x07, 0xea, 0x0e, 0xb2, 0x50, 0x9f, 0xc2, 0x11, 0x22,
        0x1c, 0xce, 0x98, 0x4b, 0x8a, 0x37, 0x57, 0x0b, 0x6d, 0x75, 0x86,
        0xc2, 0x2c, 0x46, 0xf4, 0x37, 0x9c, 0x8b, 0x04, 0x3e, 0x17};

    assert_int_equal(signature_parse_header(VECTOR_HEADER, out), 0);
    assert_memory_equal(out, expected, SIGNATURE_LEN);
}

static void test_signature_uppercase_hex_is_accepted(void **state) {
    (void)state;
    struct signature_keyring *kr = vector_keyring();
    char header[sizeof(VECTOR_HEADER)];

    snprintf(header, sizeof(header), "%s", VECTOR_HEADER);
    for (char *p = header + 7; *p; p++)
        if (*p >= 'a' && *p <= 'f')
            *p = (char)(*p - 'a' + 'A');
    assert_true(signature_verify(kr, header, VECTOR_BODY, strlen(VECTOR_BODY)));
    signature_keyring_free(kr);
}

static void test_signature_streaming_in_chunks_of_every_size_equals_one_shot(void **state) {
    (void)state;
    struct signature_keyring *kr = vector_keyring();
    unsigned char expected[SIGNATURE_LEN];
    const char *body = VECTOR_BODY;
    size_t len = strlen(body);

    assert_int_equal(signature_parse_header(VECTOR_HEADER, expected), 0);
    for (size_t chunk = 1; chunk <= len; chunk++) {
        struct signature_check c;
        assert_int_equal(signature_check_init(&c, kr), 0);
        for (size_t off = 0; off < len; off += chunk)
            signature_check_update(&c, body + off, off + chunk <= len ? chunk : len - off);
        if (!signature_check_finish(&c, expected))
            fail_msg("chunks of %zu bytes gave a different HMAC", chunk);
    }
    signature_keyring_free(kr);
}

static void test_signature_empty_updates_do_not_change_the_hmac(void **state) {
    (void)state;
    struct signature_keyring *kr = vector_keyring();
    unsigned char expected[SIGNATURE_LEN];
    struct signature_check c;

    assert_int_equal(signature_parse_header(VECTOR_HEADER, expected), 0);
    assert_int_equal(signature_check_init(&c, kr), 0);
    signature_check_update(&c, "", 0);
    signature_check_update(&c, "Hello,", 6);
    signature_check_update(&c, "", 0);
    signature_check_update(&c, " World!", 7);
    assert_true(signature_check_finish(&c, expected));
    signature_keyring_free(kr);
}

static void test_signature_one_byte_change_after_signing_fails(void **state) {
    (void)state;
    struct signature_keyring *kr = vector_keyring();
    char body[] = VECTOR_BODY;

    for (size_t i = 0; i < strlen(VECTOR_BODY); i++) {
        body[i] ^= 1;
        if (signature_verify(kr, VECTOR_HEADER, body, strlen(VECTOR_BODY)))
            fail_msg("flipping a bit of byte %zu still verified", i);
        body[i] ^= 1;
    }
    /* A truncated or extended body fails too. */
    assert_false(signature_verify(kr, VECTOR_HEADER, VECTOR_BODY, strlen(VECTOR_BODY) - 1));
    assert_false(signature_verify(kr, VECTOR_HEADER, VECTOR_BODY "\n", strlen(VECTOR_BODY) + 1));
    signature_keyring_free(kr);
}

static void test_signature_one_changed_digit_in_header_fails(void **state) {
    (void)state;
    struct signature_keyring *kr = vector_keyring();
    char header[] = VECTOR_HEADER;

    header[sizeof(header) - 2] = header[sizeof(header) - 2] == '7' ? '8' : '7';
    assert_false(signature_verify(kr, header, VECTOR_BODY, strlen(VECTOR_BODY)));
    signature_keyring_free(kr);
}

/* Every malformed or foreign header: the parser says GHE_AUTH and verify says no. */
static void test_signature_malformed_headers_are_rejected(void **state) {
    (void)state;
    static const struct {
        const char *why;
        const char *header;
    } cases[] = {
        {"NULL (unsigned delivery)", NULL},
        {"empty", ""},
        {"SHA-1 X-Hub-Signature", "sha1=1f2d3a4b5c6d7e8f9012345678901234567890ab"},
        {"SHA-1 prefix with a sha256-length digest", "sha1=" VECTOR_HEX},
        {"md5 prefix", "md5=" VECTOR_HEX},
        {"sha512 prefix", "sha512=" VECTOR_HEX},
        {"no prefix", VECTOR_HEX},
        {"uppercase prefix", "SHA256=" VECTOR_HEX},
        {"prefix only", "sha256="},
        {"63 hex digits", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e1"},
        {"65 hex digits", VECTOR_HEADER "7"},
        {"non-hex digit",
         "sha256=g57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"},
        {"space inside", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e 7"},
        {"leading space", " " VECTOR_HEADER},
        {"trailing space", VECTOR_HEADER " "},
        {"trailing newline", VECTOR_HEADER "\n"},
        {"0x prefix on the digest",
         "sha256=0x757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b04"},
    };
    struct signature_keyring *kr = vector_keyring();

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char out[SIGNATURE_LEN];
        if (signature_parse_header(cases[i].header, out) != GHE_AUTH)
            fail_msg("parse accepted: %s", cases[i].why);
        if (signature_verify(kr, cases[i].header, VECTOR_BODY, strlen(VECTOR_BODY)))
            fail_msg("verify accepted: %s", cases[i].why);
    }
    signature_keyring_free(kr);
}

/* Formats "sha256=<hex>" for body under secret with OpenSSL's one-shot HMAC. */
static void sign(const char *secret, const void *body, size_t len, char header[8 + 64]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), body, len, md, &mdlen));
    assert_int_equal(mdlen, SIGNATURE_LEN);
    memcpy(header, "sha256=", 7);
    for (unsigned int i = 0; i < mdlen; i++) {
        header[7 + 2 * i] = hex[md[i] >> 4];
        header[7 + 2 * i + 1] = hex[md[i] & 15];
    }
    header[7 + 64] = '\0';
}

static void test_signature_independent_hmac_agrees_with_the_vector(void **state) {
    (void)state;
    char header[8 + 64];

    sign(VECTOR_SECRET, VECTOR_BODY, strlen(VECTOR_BODY), header);
    assert_string_equal(header, VECTOR_HEADER);
}

static void test_signature_long_body_streamed_in_chunks_of_every_size_verifies(void **state) {
    (void)state;
    enum { LEN = 3000 };
    unsigned char *body = malloc(LEN);
    unsigned char expected[SIGNATURE_LEN];
    char header[8 + 64];
    struct signature_keyring *kr = vector_keyring();

    assert_non_null(body);
    for (size_t i = 0; i < LEN; i++)
        body[i] = (unsigned char)(i * 131 + 7); /* every byte value, NULs included */
    sign(VECTOR_SECRET, body, LEN, header);
    assert_int_equal(signature_parse_header(header, expected), 0);
    assert_true(signature_verify(kr, header, body, LEN));
    for (size_t chunk = 1; chunk <= LEN; chunk++) {
        struct signature_check c;
        assert_int_equal(signature_check_init(&c, kr), 0);
        for (size_t off = 0; off < LEN; off += chunk)
            signature_check_update(&c, body + off, off + chunk <= LEN ? chunk : LEN - off);
        if (!signature_check_finish(&c, expected))
            fail_msg("chunks of %zu bytes gave a different HMAC", chunk);
    }
    free(body);
    signature_keyring_free(kr);
}

static void test_signature_cleanup_without_finish_frees_the_state(void **state) {
    (void)state;
    struct signature_keyring *kr = vector_keyring();
    struct signature_check c;

    /* Under ASan a leak here fails the run; after cleanup, a second cleanup is harmless. */
    assert_int_equal(signature_check_init(&c, kr), 0);
    assert_int_equal(c.n, 1);
    signature_check_update(&c, "partial", 7);
    signature_check_cleanup(&c);
    assert_int_equal(c.n, 0);
    signature_check_cleanup(&c);
    signature_keyring_free(kr);
}

static void test_signature_rotation_either_key_verifies(void **state) {
    (void)state;
    const char *secrets[] = {"the new secret", VECTOR_SECRET};
    struct signature_keyring *kr = keyring_of(secrets, 2);
    char with_new[8 + 64], with_old[8 + 64];

    sign("the new secret", VECTOR_BODY, strlen(VECTOR_BODY), with_new);
    sign(VECTOR_SECRET, VECTOR_BODY, strlen(VECTOR_BODY), with_old);
    assert_string_equal(with_old, VECTOR_HEADER);
    assert_true(signature_verify(kr, with_new, VECTOR_BODY, strlen(VECTOR_BODY)));
    assert_true(signature_verify(kr, with_old, VECTOR_BODY, strlen(VECTOR_BODY)));

    /* Streaming checks against both keys at once too. */
    unsigned char expected[SIGNATURE_LEN];
    struct signature_check c;
    assert_int_equal(signature_parse_header(with_new, expected), 0);
    assert_int_equal(signature_check_init(&c, kr), 0);
    assert_int_equal(c.n, 2);
    signature_check_update(&c, "Hello, ", 7);
    signature_check_update(&c, "World!", 6);
    assert_true(signature_check_finish(&c, expected));
    signature_keyring_free(kr);
}

static void test_signature_rotation_third_unknown_key_fails(void **state) {
    (void)state;
    const char *secrets[] = {"the new secret", VECTOR_SECRET};
    struct signature_keyring *kr = keyring_of(secrets, 2);
    char header[8 + 64];

    sign("a third, unknown secret", VECTOR_BODY, strlen(VECTOR_BODY), header);
    assert_false(signature_verify(kr, header, VECTOR_BODY, strlen(VECTOR_BODY)));
    /* A key that is a prefix of a known one is a different key. */
    sign("It's a Secret", VECTOR_BODY, strlen(VECTOR_BODY), header);
    assert_false(signature_verify(kr, header, VECTOR_BODY, strlen(VECTOR_BODY)));
    signature_keyring_free(kr);
}

static void test_signature_keyring_refuses_zero_or_too_many_keys(void **state) {
    (void)state;
    const char *secrets[SIGNATURE_MAX_KEYS + 1];
    size_t lens[SIGNATURE_MAX_KEYS + 1];

    for (size_t i = 0; i <= SIGNATURE_MAX_KEYS; i++) {
        secrets[i] = "k";
        lens[i] = 1;
    }
    assert_null(signature_keyring_new(secrets, lens, 0));
    assert_null(signature_keyring_new(secrets, lens, SIGNATURE_MAX_KEYS + 1));
    struct signature_keyring *kr = signature_keyring_new(secrets, lens, SIGNATURE_MAX_KEYS);
    assert_non_null(kr);
    signature_keyring_free(kr);
    signature_keyring_free(NULL);
}

static void test_signature_secret_bytes_after_a_nul_count(void **state) {
    (void)state;
    /* Lengths are explicit, so a secret is not cut at an embedded NUL. */
    const char *secrets[] = {"ab\0cd"};
    size_t lens[] = {5};
    struct signature_keyring *kr = signature_keyring_new(secrets, lens, 1);
    char header[8 + 64];

    assert_non_null(kr);
    sign("ab", VECTOR_BODY, strlen(VECTOR_BODY), header);
    assert_false(signature_verify(kr, header, VECTOR_BODY, strlen(VECTOR_BODY)));
    signature_keyring_free(kr);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signature_github_test_vector_verifies),
        cmocka_unit_test(test_signature_parse_header_decodes_32_bytes),
        cmocka_unit_test(test_signature_uppercase_hex_is_accepted),
        cmocka_unit_test(test_signature_streaming_in_chunks_of_every_size_equals_one_shot),
        cmocka_unit_test(test_signature_empty_updates_do_not_change_the_hmac),
        cmocka_unit_test(test_signature_one_byte_change_after_signing_fails),
        cmocka_unit_test(test_signature_one_changed_digit_in_header_fails),
        cmocka_unit_test(test_signature_malformed_headers_are_rejected),
        cmocka_unit_test(test_signature_independent_hmac_agrees_with_the_vector),
        cmocka_unit_test(test_signature_long_body_streamed_in_chunks_of_every_size_verifies),
        cmocka_unit_test(test_signature_cleanup_without_finish_frees_the_state),
        cmocka_unit_test(test_signature_rotation_either_key_verifies),
        cmocka_unit_test(test_signature_rotation_third_unknown_key_fails),
        cmocka_unit_test(test_signature_keyring_refuses_zero_or_too_many_keys),
        cmocka_unit_test(test_signature_secret_bytes_after_a_nul_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
