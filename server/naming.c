#include "gpuhook/naming.h"

#include <ctype.h>
#include <string.h>

#include <openssl/evp.h>

#define NAMING_HEX 16 /* 64 bits of SHA-256 */

static int naming_is_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

static const char *const naming_kinds[] = {"webhook", "trigger"};
static const char *const naming_marks[] = {"gh", "tr"};

void naming_pipelinerun(const char *prefix, int kind, const char *a, const char *b,
                        char out[NAMING_MAX + 1]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    int k = kind == NAMING_TRIGGER ? NAMING_TRIGGER : NAMING_WEBHOOK;
    const char *parts[3] = {naming_kinds[k], a ? a : "", b ? b : ""};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    /*
     * The kind comes first, so webhook and trigger identities never share a hash; each
     * part is followed by a NUL so ("ab","c") and ("a","bc") differ.
     */
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        for (int i = 0; i < 3; i++)
            EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1);
        EVP_DigestFinal_ex(ctx, md, &mdlen);
    }
    EVP_MD_CTX_free(ctx);
    if (mdlen < NAMING_HEX / 2)
        memset(md, 0, sizeof(md));

    /* Lower-case the prefix, map anything else to '-', collapse runs. */
    size_t n = 0;
    const size_t room = NAMING_MAX - (NAMING_HEX + 4);
    for (const char *p = prefix ? prefix : ""; *p && n < room; p++) {
        unsigned char ch = (unsigned char)tolower((unsigned char)*p);
        if (!naming_is_alnum(ch))
            ch = '-';
        if (ch == '-' && (n == 0 || out[n - 1] == '-'))
            continue;
        out[n++] = (char)ch;
    }
    while (n > 0 && out[n - 1] == '-')
        n--;
    if (n == 0) {
        memcpy(out, "run", 3);
        n = 3;
    }
    out[n++] = '-';
    memcpy(out + n, naming_marks[k], 2);
    n += 2;
    out[n++] = '-';
    for (int i = 0; i < NAMING_HEX / 2; i++) {
        out[n++] = hex[md[i] >> 4];
        out[n++] = hex[md[i] & 15];
    }
    out[n] = '\0';
}

size_t naming_static_prefix(const char *s, char out[NAMING_MAX + 1]) {
    size_t n = 0;
    const char *end = s ? strstr(s, "$(") : NULL;
    size_t len = s ? (end ? (size_t)(end - s) : strlen(s)) : 0;
    for (size_t i = 0; i < len && n < NAMING_MAX; i++)
        out[n++] = s[i];
    out[n] = '\0';
    return n;
}

bool naming_dns1123_label(const char *s, size_t max) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-')
            return false;
        if ((i == 0 || i == n - 1) && !alnum)
            return false;
    }
    return true;
}

bool naming_dns1123_subdomain(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        bool edge = i == 0 || i == n - 1 || s[i - 1] == '.' || s[i + 1] == '.';
        if (!alnum && c != '-' && c != '.')
            return false;
        if (edge && !alnum)
            return false;
    }
    return true;
}

void naming_label_value(const char *s, char out[NAMING_MAX + 1]) {
    size_t n = 0;
    for (const char *p = s ? s : ""; *p && n < NAMING_MAX; p++) {
        unsigned char ch = (unsigned char)*p;
        out[n++] = (naming_is_alnum(ch) || ch == '-' || ch == '_' || ch == '.') ? (char)ch : '_';
    }
    out[n] = '\0';
    /* Label values must begin and end with an alphanumeric character. */
    size_t start = 0;
    while (start < n && !naming_is_alnum((unsigned char)out[start]))
        start++;
    while (n > start && !naming_is_alnum((unsigned char)out[n - 1]))
        n--;
    memmove(out, out + start, n - start);
    out[n - start] = '\0';
}
