/*
 * GitHub credentials: the App's JWT and installation-token cache, or a token
 * file. See include/gpuhook/ghauth.h.
 */
#include "gpuhook/ghauth.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/error.h"
#include "gpuhook/fileio.h"
#include "gpuhook/logger.h"

#define GHAUTH_CACHE_MAX 64
#define GHAUTH_RESPONSE_MAX (64 * 1024)

struct ghauth_entry {
    long long installation_id;
    long long expires_ms;
    long long refresh_ms;
    char token[GHAUTH_TOKEN_MAX];
};

struct ghauth {
    char *api_url;
    char *user_agent;
    char *ca_file;
    long timeout_ms;
    long long app_id;
    EVP_PKEY *key;
    char *token_file;
    long long (*now_ms)(void);
    ghauth_fetch_fn fetch;
    void *fetch_arg;

    pthread_mutex_t lock; /* guards everything below */
    struct ghauth_entry cache[GHAUTH_CACHE_MAX];
    size_t ncache;
    unsigned long fetches;
    char file_token[GHAUTH_TOKEN_MAX];
    struct stat file_st;
    long long file_checked_ms;
};

static void ghauth_scrub(void *p, size_t n) { OPENSSL_cleanse(p, n); }

long ghauth_base64url(const unsigned char *in, size_t n, char *out, size_t outlen) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t need = n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
    size_t o = 0;

    if (need + 1 > outlen)
        return -1;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        size_t left = n - i;
        if (left > 1)
            v |= (unsigned)in[i + 1] << 8;
        if (left > 2)
            v |= in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        if (left > 1)
            out[o++] = alphabet[(v >> 6) & 63];
        if (left > 2)
            out[o++] = alphabet[v & 63];
    }
    out[o] = '\0';
    return (long)o;
}

static int ghauth_digits(const char **p, int n, int *v) {
    *v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        *v = *v * 10 + (**p - '0');
    }
    return 0;
}

int ghauth_parse_time(const char *s, long long *unix_ms) {
    int y, mo, d, h, mi, sec, ms = 0, oh = 0, om = 0, sign = 0;
    const char *p = s;

    if (!s || ghauth_digits(&p, 4, &y) || *p++ != '-' || ghauth_digits(&p, 2, &mo) || *p++ != '-' ||
        ghauth_digits(&p, 2, &d) || (*p != 'T' && *p != 't' && *p != ' '))
        return GHE_INVAL;
    p++;
    if (ghauth_digits(&p, 2, &h) || *p++ != ':' || ghauth_digits(&p, 2, &mi) || *p++ != ':' ||
        ghauth_digits(&p, 2, &sec))
        return GHE_INVAL;
    if (*p == '.') {
        int scale = 100;
        p++;
        if (*p < '0' || *p > '9')
            return GHE_INVAL;
        for (; *p >= '0' && *p <= '9'; p++, scale /= 10)
            ms += (*p - '0') * scale;
    }
    if (*p == 'Z' || *p == 'z')
        p++;
    else if (*p == '+' || *p == '-') {
        sign = *p++ == '+' ? 1 : -1;
        if (ghauth_digits(&p, 2, &oh) || *p++ != ':' || ghauth_digits(&p, 2, &om))
            return GHE_INVAL;
    } else
        return GHE_INVAL;
    if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60 || oh > 23 ||
        om > 59)
        return GHE_INVAL;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return GHE_INVAL;
    *unix_ms = ((long long)t - sign * (oh * 3600LL + om * 60LL)) * 1000 + ms;
    return 0;
}

long long ghauth_refresh_at(long long now, long long expires) {
    long long life = expires - now;
    if (life <= 0)
        return now;
    if (life < 20 * 60 * 1000LL)
        return now + life * 3 / 4;
    return expires - 5 * 60 * 1000LL;
}

static long long ghauth_now(const struct ghauth *a) {
    return a->now_ms ? a->now_ms() : clock_wall_ms();
}

static int ghauth_load_key(struct ghauth *a, const char *path, char *err, size_t errlen) {
    char *pem = NULL;
    size_t len = 0;
    char ferr[256];
    int rc = fileio_read(path, GHAUTH_FILE_MAX, 0, &pem, &len, ferr, sizeof(ferr));

    if (rc) {
        snprintf(err, errlen, "github app private key: %s", ferr);
        return rc;
    }
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    /* PEM_read_bio_PrivateKey takes PKCS#1 ("RSA PRIVATE KEY") and PKCS#8 alike. */
    a->key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, (void *)"") : NULL;
    BIO_free(bio);
    ghauth_scrub(pem, len);
    free(pem);
    if (!a->key || EVP_PKEY_base_id(a->key) != EVP_PKEY_RSA) {
        snprintf(err, errlen, "github app private key %s: not an RSA private key in PEM form",
                 path);
        return GHE_INVAL;
    }
    return 0;
}

/* Re-reads the token file when it changed; called with the lock held. */
static int ghauth_file_refresh(struct ghauth *a, bool force, char *err, size_t errlen) {
    struct stat st;
    long long now = clock_mono_ms();

    if (!force && a->file_token[0] && now - a->file_checked_ms < 1000)
        return 0;
    a->file_checked_ms = now;
    if (stat(a->token_file, &st) != 0) {
        snprintf(err, errlen, "github token file %s: cannot stat", a->token_file);
        return a->file_token[0] ? 0 : GHE_IO;
    }
    if (!force && a->file_token[0] && st.st_ino == a->file_st.st_ino &&
        st.st_size == a->file_st.st_size && st.st_mtim.tv_sec == a->file_st.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == a->file_st.st_mtim.tv_nsec)
        return 0;
    char *data = NULL;
    size_t len = 0;
    char ferr[256];
    int rc = fileio_read(a->token_file, GHAUTH_FILE_MAX, 0, &data, &len, ferr, sizeof(ferr));
    if (rc) {
        snprintf(err, errlen, "github token file: %s", ferr);
        /* A token read before stays in use while the file is being replaced. */
        return a->file_token[0] ? 0 : rc;
    }
    size_t b = 0, e = len;
    while (b < e && (data[b] == ' ' || data[b] == '\t' || data[b] == '\r' || data[b] == '\n'))
        b++;
    while (e > b && (data[e - 1] == ' ' || data[e - 1] == '\t' || data[e - 1] == '\r' ||
                     data[e - 1] == '\n'))
        e--;
    rc = 0;
    if (e == b || e - b >= GHAUTH_TOKEN_MAX || memchr(data + b, '\n', e - b) ||
        memchr(data + b, ' ', e - b)) {
        snprintf(err, errlen, "github token file %s: not one token on one line", a->token_file);
        rc = GHE_INVAL;
    } else {
        ghauth_scrub(a->file_token, sizeof(a->file_token));
        memcpy(a->file_token, data + b, e - b);
        a->file_token[e - b] = '\0';
        a->file_st = st;
    }
    ghauth_scrub(data, len);
    free(data);
    return rc;
}

int ghauth_new(const struct ghauth_config *cfg, struct ghauth **out, char *err, size_t errlen) {
    struct ghauth *a;
    int rc;

    *out = NULL;
    if (!cfg->api_url || strncmp(cfg->api_url, "http", 4) != 0) {
        snprintf(err, errlen, "github api_url must be an http(s) URL");
        return GHE_INVAL;
    }
    if ((cfg->app_id > 0) == (cfg->token_file != NULL)) {
        snprintf(err, errlen, "github: give either app_id with private_key_file, or token_file");
        return GHE_INVAL;
    }
    if (cfg->app_id > 0 && !cfg->private_key_file) {
        snprintf(err, errlen, "github: app_id %lld needs private_key_file", cfg->app_id);
        return GHE_INVAL;
    }
    if (!(a = calloc(1, sizeof(*a))))
        return GHE_NOMEM;
    pthread_mutex_init(&a->lock, NULL);
    size_t ulen = strlen(cfg->api_url);
    while (ulen > 0 && cfg->api_url[ulen - 1] == '/')
        ulen--;
    a->api_url = strndup(cfg->api_url, ulen);
    a->user_agent = strdup(cfg->user_agent ? cfg->user_agent : "gpuhook/" GPUHOOK_VERSION);
    a->ca_file = cfg->ca_file ? strdup(cfg->ca_file) : NULL;
    a->token_file = cfg->token_file ? strdup(cfg->token_file) : NULL;
    a->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 10000;
    a->app_id = cfg->app_id;
    a->now_ms = cfg->now_ms;
    a->fetch = cfg->fetch;
    a->fetch_arg = cfg->fetch_arg;
    if (!a->api_url || !a->user_agent || (cfg->ca_file && !a->ca_file) ||
        (cfg->token_file && !a->token_file)) {
        rc = GHE_NOMEM;
        goto fail;
    }
    if (a->app_id > 0)
        rc = ghauth_load_key(a, cfg->private_key_file, err, errlen);
    else
        rc = ghauth_file_refresh(a, true, err, errlen);
    if (rc)
        goto fail;
    *out = a;
    return 0;
fail:
    ghauth_free(a);
    return rc;
}

void ghauth_free(struct ghauth *a) {
    if (!a)
        return;
    ghauth_scrub(a->cache, sizeof(a->cache));
    ghauth_scrub(a->file_token, sizeof(a->file_token));
    EVP_PKEY_free(a->key);
    free(a->api_url);
    free(a->user_agent);
    free(a->ca_file);
    free(a->token_file);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

bool ghauth_is_app(const struct ghauth *a) { return a->app_id > 0; }

unsigned long ghauth_fetch_count(struct ghauth *a) {
    pthread_mutex_lock(&a->lock);
    unsigned long n = a->fetches;
    pthread_mutex_unlock(&a->lock);
    return n;
}

int ghauth_jwt(struct ghauth *a, long long now_s, char *out, size_t outlen) {
    static const char header[] = "{\"alg\":\"RS256\",\"typ\":\"JWT\"}";
    char claims[128], input[512];
    unsigned char sig[1024];
    size_t siglen = sizeof(sig);
    int rc = GHE_NOMEM;

    if (!a->key)
        return GHE_INVAL;
    /* iat 60 s back covers clock drift; exp 9 minutes on stays inside GitHub's 10. */
    snprintf(claims, sizeof(claims), "{\"iat\":%lld,\"exp\":%lld,\"iss\":\"%lld\"}", now_s - 60,
             now_s + 540, a->app_id);
    long h = ghauth_base64url((const unsigned char *)header, strlen(header), input, sizeof(input));
    if (h < 0)
        return GHE_TOOBIG;
    input[h] = '.';
    long c = ghauth_base64url((const unsigned char *)claims, strlen(claims), input + h + 1,
                              sizeof(input) - (size_t)h - 1);
    if (c < 0)
        return GHE_TOOBIG;
    size_t inlen = (size_t)(h + 1 + c);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, a->key) != 1 ||
        EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, inlen) != 1)
        goto out;
    rc = GHE_TOOBIG;
    if (inlen + 2 > outlen)
        goto out;
    memcpy(out, input, inlen);
    out[inlen] = '.';
    if (ghauth_base64url(sig, siglen, out + inlen + 1, outlen - inlen - 1) < 0)
        goto out;
    rc = 0;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

static size_t ghauth_collect(char *p, size_t size, size_t n, void *arg) {
    return buf_append(arg, p, size * n) == 0 ? size * n : 0;
}

/* The real exchange: POST .../app/installations/{id}/access_tokens with the JWT. */
static int ghauth_fetch_http(struct ghauth *a, long long id, const char *jwt, char *token,
                             size_t tokenlen, long long *expires_ms, char *err, size_t errlen) {
    char url[1024], auth[GHAUTH_TOKEN_MAX + 32], ua[300];
    struct curl_slist *hdrs = NULL;
    struct buf body;
    long status = 0;
    int rc = GHE_UNAVAILABLE;
    cJSON *doc = NULL;

    buf_init(&body, GHAUTH_RESPONSE_MAX);
    snprintf(url, sizeof(url), "%s/app/installations/%lld/access_tokens", a->api_url, id);
    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", jwt);
    snprintf(ua, sizeof(ua), "User-Agent: %s", a->user_agent);
    CURL *c = curl_easy_init();
    if (!c)
        return GHE_NOMEM;
    hdrs = curl_slist_append(hdrs, auth);
    hdrs = curl_slist_append(hdrs, ua);
    hdrs = curl_slist_append(hdrs, "Accept: application/vnd.github+json");
    hdrs = curl_slist_append(hdrs, "X-GitHub-Api-Version: 2022-11-28");
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, "{}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, ghauth_collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, a->timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    if (a->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, a->ca_file);
    CURLcode cc = curl_easy_perform(c);
    ghauth_scrub(auth, sizeof(auth));
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "installation token for %lld: %s", id, curl_easy_strerror(cc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 201) {
        /* A 403 with a rate limit or a 5xx is worth a retry; the rest is configuration. */
        rc = status >= 500 || status == 429 || status == 403 ? GHE_UNAVAILABLE : GHE_AUTH;
        snprintf(err, errlen, "installation token for %lld: HTTP %ld", id, status);
        goto out;
    }
    doc = cJSON_ParseWithLength(body.data ? body.data : "", body.len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "token");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "expires_at");
    rc = GHE_AUTH;
    if (!cJSON_IsString(t) || !cJSON_IsString(e) || strlen(t->valuestring) >= tokenlen ||
        ghauth_parse_time(e->valuestring, expires_ms) != 0) {
        snprintf(err, errlen, "installation token for %lld: no token or expires_at", id);
        goto out;
    }
    memcpy(token, t->valuestring, strlen(t->valuestring) + 1);
    rc = 0;
out:
    if (doc) {
        cJSON *t2 = cJSON_GetObjectItemCaseSensitive(doc, "token");
        if (cJSON_IsString(t2))
            ghauth_scrub(t2->valuestring, strlen(t2->valuestring));
        cJSON_Delete(doc);
    }
    if (body.data)
        ghauth_scrub(body.data, body.len);
    buf_cleanup(&body);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    return rc;
}

static struct ghauth_entry *ghauth_slot(struct ghauth *a, long long id) {
    size_t oldest = 0;
    for (size_t i = 0; i < a->ncache; i++) {
        if (a->cache[i].installation_id == id)
            return &a->cache[i];
        if (a->cache[i].expires_ms < a->cache[oldest].expires_ms)
            oldest = i;
    }
    if (a->ncache < GHAUTH_CACHE_MAX)
        oldest = a->ncache++;
    struct ghauth_entry *e = &a->cache[oldest];
    ghauth_scrub(e, sizeof(*e));
    e->installation_id = id;
    return e;
}

int ghauth_header(struct ghauth *a, long long installation_id, bool force, char *out, size_t outlen,
                  char *err, size_t errlen) {
    int rc = 0;
    const char *token;

    pthread_mutex_lock(&a->lock);
    if (a->app_id <= 0) {
        rc = ghauth_file_refresh(a, force, err, errlen);
        token = a->file_token;
    } else {
        if (installation_id <= 0) {
            snprintf(err, errlen, "github app: no installation id");
            rc = GHE_INVAL;
            goto out;
        }
        struct ghauth_entry *e = ghauth_slot(a, installation_id);
        long long now = ghauth_now(a);
        if (force || !e->token[0] || now >= e->refresh_ms) {
            char jwt[GHAUTH_TOKEN_MAX];
            long long expires = 0;
            e->token[0] = '\0';
            rc = ghauth_jwt(a, now / 1000, jwt, sizeof(jwt));
            if (rc == 0) {
                a->fetches++;
                rc = a->fetch ? a->fetch(a->fetch_arg, installation_id, jwt, e->token,
                                         sizeof(e->token), &expires)
                              : ghauth_fetch_http(a, installation_id, jwt, e->token,
                                                  sizeof(e->token), &expires, err, errlen);
            }
            ghauth_scrub(jwt, sizeof(jwt));
            if (rc) {
                e->token[0] = '\0';
                goto out;
            }
            e->expires_ms = expires;
            e->refresh_ms = ghauth_refresh_at(now, expires);
            char idtext[24], expires_text[CLOCK_RFC3339_MAX];
            snprintf(idtext, sizeof(idtext), "%lld", installation_id);
            LOGGER_DEBUG_("github installation token fetched", "installation", idtext, "expires_at",
                          clock_rfc3339(expires, expires_text));
        }
        token = e->token;
    }
    if (rc == 0 && (size_t)snprintf(out, outlen, "Bearer %s", token) >= outlen) {
        snprintf(err, errlen, "github token too long");
        rc = GHE_TOOBIG;
    }
out:
    pthread_mutex_unlock(&a->lock);
    return rc;
}
