/*
 * Unit tests for ghauth.c: base64url, RFC 3339 times, the App JWT (header,
 * claims and an RS256 signature verified here with the public key, for PKCS#1
 * and PKCS#8 keys), the installation-token cache against a fake clock, and
 * the token file re-read when it changes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gpuhook/error.h"
#include "gpuhook/ghauth.h"

static void test_ghauth_base64url_has_no_padding(void **state) {
    (void)state;
    static const struct {
        const char *in;
        const char *want;
    } cases[] = {
        /* RFC 4648 section 10's vectors, without the '=' padding. */
        {"", ""},
        {"f", "Zg"},
        {"fo", "Zm8"},
        {"foo", "Zm9v"},
        {"foob", "Zm9vYg"},
        {"fooba", "Zm9vYmE"},
        {"foobar", "Zm9vYmFy"},
        /* 0xfb 0xff: '+' and '/' in base64 become '-' and '_'. */
        {"\xfb\xff", "-_8"},
    };
    char out[64];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long n = ghauth_base64url((const unsigned char *)cases[i].in, strlen(cases[i].in), out,
                                  sizeof(out));
        assert_int_equal(n, (long)strlen(cases[i].want));
        assert_string_equal(out, cases[i].want);
    }
    assert_int_equal(ghauth_base64url((const unsigned char *)"foobar", 6, out, 8), -1);
}

static void test_ghauth_parse_time_reads_rfc3339(void **state) {
    (void)state;
    long long ms = 0;
    /* date -u -d 2026-12-02T01:02:03Z +%s is 1796173323. */
    assert_int_equal(ghauth_parse_time("2026-12-02T01:02:03Z", &ms), 0);
    assert_true(ms == 1796173323000LL);
    assert_int_equal(ghauth_parse_time("2026-12-02T01:02:03.250Z", &ms), 0);
    assert_true(ms == 1796173323250LL);
    assert_int_equal(ghauth_parse_time("2026-12-02T03:02:03+02:00", &ms), 0);
    assert_true(ms == 1796173323000LL);
    static const char *bad[] = {"",
                                "2026-12-02",
                                "2026-12-02T01:02:03",
                                "2026-13-02T01:02:03Z",
                                "2026-12-02T01:02:03Zjunk",
                                "yesterday"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(ghauth_parse_time(bad[i], &ms), GHE_INVAL);
}

/* base64url decoding, for reading the JWT back. */
static size_t b64url_decode(const char *in, size_t n, unsigned char *out) {
    size_t o = 0;
    unsigned v = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        const char *p = strchr(al, in[i]);
        assert_non_null(p);
        v = v << 6 | (unsigned)(p - al);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(v >> bits);
        }
    }
    return o;
}

static char keydir[64];

static EVP_PKEY *write_key(const char *path, int pkcs8) {
    EVP_PKEY *k = EVP_RSA_gen(2048);
    assert_non_null(k);
    BIO *f = BIO_new_file(path, "w");
    assert_non_null(f);
    if (pkcs8)
        assert_int_equal(PEM_write_bio_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL), 1);
    else
        assert_int_equal(PEM_write_bio_PrivateKey_traditional(f, k, NULL, NULL, 0, NULL, NULL), 1);
    BIO_free(f);
    return k;
}

static int setup_dir(void **state) {
    (void)state;
    snprintf(keydir, sizeof(keydir), "/tmp/test_ghauth.XXXXXX");
    return mkdtemp(keydir) ? 0 : -1;
}

static int teardown_dir(void **state) {
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", keydir);
    return system(cmd) == 0 ? 0 : -1;
}

static void check_jwt(const char *jwt, EVP_PKEY *pub, long long now) {
    const char *d1 = strchr(jwt, '.');
    assert_non_null(d1);
    const char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    assert_null(strchr(jwt, '='));
    unsigned char part[2048];
    size_t n = b64url_decode(jwt, (size_t)(d1 - jwt), part);
    part[n] = 0;
    cJSON *h = cJSON_Parse((char *)part);
    assert_string_equal(cJSON_GetObjectItem(h, "alg")->valuestring, "RS256");
    assert_string_equal(cJSON_GetObjectItem(h, "typ")->valuestring, "JWT");
    cJSON_Delete(h);
    n = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), part);
    part[n] = 0;
    cJSON *c = cJSON_Parse((char *)part);
    assert_string_equal(cJSON_GetObjectItem(c, "iss")->valuestring, "4242");
    long long iat = (long long)cJSON_GetObjectItem(c, "iat")->valuedouble;
    long long exp = (long long)cJSON_GetObjectItem(c, "exp")->valuedouble;
    assert_true(iat == now - 60);
    assert_true(exp > now && exp - iat <= 600 && exp - now <= 600);
    cJSON_Delete(c);
    unsigned char sig[1024];
    size_t siglen = b64url_decode(d2 + 1, strlen(d2 + 1), sig);
    assert_int_equal(siglen, 256);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
    assert_int_equal(
        EVP_DigestVerify(md, sig, siglen, (const unsigned char *)jwt, (size_t)(d2 - jwt)), 1);
    /* One flipped bit in the claims breaks it. */
    char *bad = strdup(jwt);
    bad[(d1 - jwt) + 3] ^= 1;
    assert_int_equal(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
    assert_int_not_equal(
        EVP_DigestVerify(md, sig, siglen, (const unsigned char *)bad, (size_t)(d2 - jwt)), 1);
    free(bad);
    EVP_MD_CTX_free(md);
}

static void test_ghauth_jwt_verifies_with_public_key(void **state) {
    (void)state;
    for (int pkcs8 = 0; pkcs8 < 2; pkcs8++) {
        char path[128], err[256], jwt[GHAUTH_TOKEN_MAX];
        snprintf(path, sizeof(path), "%s/key%d.pem", keydir, pkcs8);
        EVP_PKEY *k = write_key(path, pkcs8);
        struct ghauth_config cfg = {
            .api_url = "https://api.github.com", .app_id = 4242, .private_key_file = path};
        struct ghauth *a = NULL;
        assert_int_equal(ghauth_new(&cfg, &a, err, sizeof(err)), 0);
        assert_true(ghauth_is_app(a));
        long long now = (long long)time(NULL);
        assert_int_equal(ghauth_jwt(a, now, jwt, sizeof(jwt)), 0);
        check_jwt(jwt, k, now);
        ghauth_free(a);
        EVP_PKEY_free(k);
    }
}

static void test_ghauth_refuses_bad_keys_without_echoing_them(void **state) {
    (void)state;
    char path[128], err[256];
    snprintf(path, sizeof(path), "%s/bad.pem", keydir);
    FILE *f = fopen(path, "w");
    fputs("-----BEGIN RSA PRIVATE KEY-----\nU0VDUkVUS0VZTUFURVJJQUw=\n-----END RSA PRIVATE "
          "KEY-----\n",
          f);
    fclose(f);
    struct ghauth_config cfg = {
        .api_url = "https://api.github.com", .app_id = 1, .private_key_file = path};
    struct ghauth *a = NULL;
    assert_int_equal(ghauth_new(&cfg, &a, err, sizeof(err)), GHE_INVAL);
    assert_null(a);
    assert_non_null(strstr(err, "not an RSA private key"));
    assert_null(strstr(err, "U0VDUkVU"));
    cfg.private_key_file = "/nonexistent/key.pem";
    assert_int_equal(ghauth_new(&cfg, &a, err, sizeof(err)), GHE_IO);
    assert_non_null(strstr(err, "/nonexistent/key.pem"));
    /* Neither or both ways of authenticating. */
    struct ghauth_config none = {.api_url = "https://api.github.com"};
    assert_int_equal(ghauth_new(&none, &a, err, sizeof(err)), GHE_INVAL);
}

static long long fake_now;
static long long fake_clock(void) { return fake_now; }

struct fetches {
    int calls;
    long long last_id;
    long long ttl_ms;
    int fail;
};

static int fake_fetch(void *arg, long long id, const char *jwt, char *token, size_t tokenlen,
                      long long *expires_ms) {
    struct fetches *f = arg;
    assert_non_null(strchr(jwt, '.'));
    if (f->fail)
        return GHE_UNAVAILABLE;
    f->calls++;
    f->last_id = id;
    snprintf(token, tokenlen, "ghs_token%d", f->calls);
    *expires_ms = fake_now + f->ttl_ms;
    return 0;
}

static void test_ghauth_caches_installation_tokens_until_near_expiry(void **state) {
    (void)state;
    char path[128], err[256], hdr[GHAUTH_TOKEN_MAX];
    snprintf(path, sizeof(path), "%s/cache.pem", keydir);
    EVP_PKEY_free(write_key(path, 0));
    struct fetches f = {.ttl_ms = 3600 * 1000LL};
    struct ghauth_config cfg = {.api_url = "http://127.0.0.1:1",
                                .app_id = 4242,
                                .private_key_file = path,
                                .now_ms = fake_clock,
                                .fetch = fake_fetch,
                                .fetch_arg = &f};
    struct ghauth *a = NULL;
    fake_now = 1796173323000LL;
    assert_int_equal(ghauth_new(&cfg, &a, err, sizeof(err)), 0);
    assert_int_equal(ghauth_header(a, 7, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghs_token1");
    assert_int_equal(f.calls, 1);
    /* 54 minutes on: still cached. */
    fake_now += 54 * 60 * 1000LL;
    assert_int_equal(ghauth_header(a, 7, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghs_token1");
    /* 56 minutes: within five minutes of expires_at, so a new one. */
    fake_now += 2 * 60 * 1000LL;
    assert_int_equal(ghauth_header(a, 7, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghs_token2");
    /* Another installation has its own token. */
    assert_int_equal(ghauth_header(a, 8, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghs_token3");
    assert_true(f.last_id == 8);
    assert_int_equal(ghauth_header(a, 7, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghs_token2");
    /* A 401 forces a new one. */
    assert_int_equal(ghauth_header(a, 7, true, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghs_token4");
    /* Short-lived tokens are replaced after three quarters of their life. */
    f.ttl_ms = 8000;
    assert_int_equal(ghauth_header(a, 9, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghs_token5");
    fake_now += 5999;
    assert_int_equal(ghauth_header(a, 9, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghs_token5");
    fake_now += 1;
    assert_int_equal(ghauth_header(a, 9, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghs_token6");
    /* A failed fetch is an error, not the stale token. */
    fake_now += 8000;
    f.fail = 1;
    assert_int_equal(ghauth_header(a, 9, false, hdr, sizeof(hdr), err, sizeof(err)),
                     GHE_UNAVAILABLE);
    assert_int_equal(ghauth_header(a, 0, false, hdr, sizeof(hdr), err, sizeof(err)), GHE_INVAL);
    assert_int_equal((int)ghauth_fetch_count(a), 7);
    ghauth_free(a);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_ghauth_token_file_is_reread_when_it_changes(void **state) {
    (void)state;
    char path[128], tmp[140], err[256], hdr[GHAUTH_TOKEN_MAX];
    snprintf(path, sizeof(path), "%s/token", keydir);
    snprintf(tmp, sizeof(tmp), "%s/token.new", keydir);
    write_file(path, "ghp_first\n");
    struct ghauth_config cfg = {.api_url = "https://ghe.example/api/v3", .token_file = path};
    struct ghauth *a = NULL;
    assert_int_equal(ghauth_new(&cfg, &a, err, sizeof(err)), 0);
    assert_false(ghauth_is_app(a));
    assert_int_equal(ghauth_header(a, 0, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghp_first");
    /* A Secret update: a new file renamed into place (a new inode). */
    write_file(tmp, "  ghp_second  \n");
    assert_int_equal(rename(tmp, path), 0);
    usleep(1100 * 1000);
    assert_int_equal(ghauth_header(a, 0, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghp_second");
    /* Removed: the token read before stays in use. */
    unlink(path);
    usleep(1100 * 1000);
    assert_int_equal(ghauth_header(a, 0, false, hdr, sizeof(hdr), err, sizeof(err)), 0);
    assert_string_equal(hdr, "Bearer ghp_second");
    ghauth_free(a);
    /* An empty file or two tokens are refused at start. */
    write_file(path, "\n");
    assert_int_equal(ghauth_new(&cfg, &a, err, sizeof(err)), GHE_INVAL);
    write_file(path, "ghp_a\nghp_b\n");
    assert_int_equal(ghauth_new(&cfg, &a, err, sizeof(err)), GHE_INVAL);
    assert_null(strstr(err, "ghp_a"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ghauth_base64url_has_no_padding),
        cmocka_unit_test(test_ghauth_parse_time_reads_rfc3339),
        cmocka_unit_test(test_ghauth_jwt_verifies_with_public_key),
        cmocka_unit_test(test_ghauth_refuses_bad_keys_without_echoing_them),
        cmocka_unit_test(test_ghauth_caches_installation_tokens_until_near_expiry),
        cmocka_unit_test(test_ghauth_token_file_is_reread_when_it_changes),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
