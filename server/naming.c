#include "gpuhook/naming.h"

#include <ctype.h>
#include <string.h>

#include <openssl/evp.h>

static int naming_is_alnum(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
}

void naming_pipelinerun(const char *prefix, const char *a, const char *b, const char *c,
                        char out[NAMING_MAX + 1]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    const char *parts[3] = {a ? a : "", b ? b : "", c ? c : ""};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    /* Each part is followed by a NUL so ("ab","c") and ("a","bc") differ. */
    if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        for (int i = 0; i < 3; i++)
            EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1);
        EVP_DigestFinal_ex(ctx, md, &mdlen);
    }
    EVP_MD_CTX_free(ctx);
    if (mdlen < 5)
        memset(md, 0, sizeof(md));

    /* Lower-case the prefix, map anything else to '-', collapse runs. */
    size_t n = 0;
    const size_t room = NAMING_MAX - 11;
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
    for (int i = 0; i < 5; i++) {
        out[n++] = hex[md[i] >> 4];
        out[n++] = hex[md[i] & 15];
    }
    out[n] = '\0';
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
