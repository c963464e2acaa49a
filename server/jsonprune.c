#include "gpuhook/jsonprune.h"
#include "gpuhook/buf.h"
#include "gpuhook/error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Bit i set: path i is still possible below the current node. */
typedef uint64_t jsonprune_set;

struct jsonprune {
    const char *p, *end;
    const struct jsonprune_path *paths;
    size_t npaths;
    int max_depth;
    int status; /* 0, GHE_INVAL or GHE_NOMEM */
    const char *why;
    char *scratch; /* decoded string bytes */
    size_t scratch_cap;
};

static void jsonprune_fail(struct jsonprune *j, int status, const char *why) {
    if (!j->status) {
        j->status = status;
        j->why = why;
    }
}

static inline bool jsonprune_is_ws(char c) {
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* Skips whitespace. Compact JSON has none, so the first byte usually decides. */
static inline void jsonprune_ws(struct jsonprune *j) {
    const char *p = j->p;
    if (p == j->end || (unsigned char)*p > ' ')
        return;
#ifdef __SSE2__
    /* Indentation comes in runs: sixteen bytes per step. */
    while (j->end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        __m128i ws = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(' ')),
                                               _mm_cmpeq_epi8(v, _mm_set1_epi8('\n'))),
                                  _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\r')),
                                               _mm_cmpeq_epi8(v, _mm_set1_epi8('\t'))));
        unsigned mask = (unsigned)_mm_movemask_epi8(ws) ^ 0xFFFFu;
        if (mask) {
            j->p = p + __builtin_ctz(mask);
            return;
        }
        p += 16;
    }
#endif
    while (p < j->end && jsonprune_is_ws(*p))
        p++;
    j->p = p;
}

/*
 * Which paths continue below a child. key is the child's key (objects) or
 * NULL; index its index (arrays) or -1. *whole is set when a path ends here.
 */
static jsonprune_set jsonprune_step(const struct jsonprune *j, jsonprune_set live, int depth,
                                    const char *key, size_t keylen, long index, bool *whole) {
    jsonprune_set next = 0;
    for (jsonprune_set set = live; set; set &= set - 1) {
        size_t i = (size_t)__builtin_ctzll(set);
        const struct jsonprune_seg *s = &j->paths[i].segs[depth];
        bool match = false;
        if (s->any) {
            match = true; /* every element, and every member */
        } else if (key && s->key) {
            if (keylen && s->key[0] != key[0])
                continue; /* the common case: no match from the first byte */
            /*
             * A key decoded from \u0000 holds a NUL, and cJSON (so the whole tree)
             * sees the key only up to it: compare that much, and never read s->key
             * past its own end.
             */
            size_t k = 0;
            while (k < keylen && key[k] && s->key[k] == key[k])
                k++;
            match = s->key[k] == '\0' && (k == keylen || key[k] == '\0');
        } else if (!key) {
            match = s->index >= 0 && s->index == index;
        }
        if (!match)
            continue;
        if ((size_t)depth + 1 == j->paths[i].n)
            *whole = true;
        else
            next |= (jsonprune_set)1 << i;
    }
    return next;
}

static bool jsonprune_u4(struct jsonprune *j, unsigned *out) {
    unsigned v = 0;
    if (j->end - j->p < 4)
        return false;
    for (int i = 0; i < 4; i++) {
        int h = buf_hex_value(j->p[i]);
        if (h < 0)
            return false;
        v = v << 4 | (unsigned)h;
    }
    j->p += 4;
    *out = v;
    return true;
}

static bool jsonprune_scratch_put(struct jsonprune *j, size_t *n, const char *s, size_t len) {
    if (*n + len + 1 > j->scratch_cap) {
        size_t cap = j->scratch_cap ? j->scratch_cap : 256;
        while (cap < *n + len + 1)
            cap *= 2;
        char *p = realloc(j->scratch, cap);
        if (!p) {
            jsonprune_fail(j, GHE_NOMEM, "out of memory");
            return false;
        }
        j->scratch = p;
        j->scratch_cap = cap;
    }
    memcpy(j->scratch + *n, s, len);
    *n += len;
    return true;
}

/*
 * Parses a string at j->p (on the opening quote). With decode, the value is
 * left NUL-terminated in j->scratch and its length in *outlen; otherwise it is
 * only validated. A string without escapes is reported in place through
 * raw and rawlen, so keys need no copy.
 */
static bool jsonprune_string(struct jsonprune *j, bool decode, const char **raw, size_t *rawlen,
                             size_t *outlen) {
    const char *start = ++j->p;
    size_t n = 0;
    bool escaped = false;

    for (;;) {
        /* Plain ASCII runs to the next quote, backslash, control or non-ASCII byte. */
        const char *q = j->p + buf_json_plain(j->p, (size_t)(j->end - j->p), true);
        if (decode && escaped && q > j->p &&
            !jsonprune_scratch_put(j, &n, j->p, (size_t)(q - j->p)))
            return false;
        j->p = q;
        if (q == j->end || (unsigned char)*q < 0x20) {
            jsonprune_fail(j, GHE_INVAL, "body is not valid JSON");
            return false;
        }
        if ((unsigned char)*q >= 0x80) {
            /* Not ASCII: one whole, strict UTF-8 sequence, or the body is refused. */
            size_t n8 = buf_utf8_len((const unsigned char *)q, (size_t)(j->end - q));
            if (!n8) {
                jsonprune_fail(j, GHE_INVAL, "body is not valid UTF-8");
                return false;
            }
            if (decode && escaped && !jsonprune_scratch_put(j, &n, q, n8))
                return false;
            j->p = q + n8;
            continue;
        }
        if (*q == '"')
            break;
        /* Bytes are copied only once an escape shows they must be: most strings have none. */
        if (decode && !escaped && q > start &&
            !jsonprune_scratch_put(j, &n, start, (size_t)(q - start)))
            return false;
        escaped = true;
        if (j->end - j->p < 2) {
            jsonprune_fail(j, GHE_INVAL, "body is not valid JSON");
            return false;
        }
        char e = j->p[1], c = 0;
        j->p += 2;
        switch (e) {
        case '"':
            c = '"';
            break;
        case '\\':
            c = '\\';
            break;
        case '/':
            c = '/';
            break;
        case 'b':
            c = '\b';
            break;
        case 'f':
            c = '\f';
            break;
        case 'n':
            c = '\n';
            break;
        case 'r':
            c = '\r';
            break;
        case 't':
            c = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            if (!jsonprune_u4(j, &cp))
                goto bad;
            if (cp >= 0xDC00 && cp <= 0xDFFF)
                goto bad;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (j->end - j->p < 6 || j->p[0] != '\\' || j->p[1] != 'u')
                    goto bad;
                j->p += 2;
                if (!jsonprune_u4(j, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    goto bad;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            char u[4];
            size_t ul;
            if (cp < 0x80) {
                u[0] = (char)cp;
                ul = 1;
            } else if (cp < 0x800) {
                u[0] = (char)(0xC0 | cp >> 6);
                u[1] = (char)(0x80 | (cp & 0x3F));
                ul = 2;
            } else if (cp < 0x10000) {
                u[0] = (char)(0xE0 | cp >> 12);
                u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[2] = (char)(0x80 | (cp & 0x3F));
                ul = 3;
            } else {
                u[0] = (char)(0xF0 | cp >> 18);
                u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
                u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u[3] = (char)(0x80 | (cp & 0x3F));
                ul = 4;
            }
            if (decode && !jsonprune_scratch_put(j, &n, u, ul))
                return false;
            continue;
        }
        default:
            goto bad;
        }
        if (decode && !jsonprune_scratch_put(j, &n, &c, 1))
            return false;
    }
    if (raw) {
        *raw = escaped ? NULL : start;
        *rawlen = (size_t)(j->p - start);
    }
    j->p++; /* the closing quote */
    if (decode) {
        /* An unescaped string is read in place through raw; without raw it is copied. */
        if (!escaped && raw)
            return true;
        if (!escaped && !jsonprune_scratch_put(j, &n, start, (size_t)(j->p - 1 - start)))
            return false;
        if (!jsonprune_scratch_put(j, &n, "", 1))
            return false;
        *outlen = n - 1;
    }
    return true;
bad:
    jsonprune_fail(j, GHE_INVAL, "body is not valid JSON");
    return false;
}

/* Parses a number; with out, its value, and with raw, its text as written (cJSON_malloc). */
static bool jsonprune_number(struct jsonprune *j, double *out, char **raw) {
    const char *s = j->p, *p = j->p;
    if (p < j->end && *p == '-')
        p++;
    if (p < j->end && *p == '0')
        p++;
    else if (p < j->end && *p >= '1' && *p <= '9')
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    else
        goto bad;
    if (p < j->end && *p == '.') {
        p++;
        if (p == j->end || *p < '0' || *p > '9')
            goto bad;
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->end && (*p == '+' || *p == '-'))
            p++;
        if (p == j->end || *p < '0' || *p > '9')
            goto bad;
        while (p < j->end && *p >= '0' && *p <= '9')
            p++;
    }
    j->p = p;
    if (out) {
        /* strtod needs a NUL; a long number (its exponent may come last) gets the heap. */
        char tmp[64], *buf = tmp;
        size_t n = (size_t)(p - s);
        if (n >= sizeof(tmp) && !(buf = malloc(n + 1))) {
            jsonprune_fail(j, GHE_NOMEM, "out of memory");
            return false;
        }
        memcpy(buf, s, n);
        buf[n] = '\0';
        *out = strtod(buf, NULL);
        if (buf != tmp)
            free(buf);
    }
    if (raw) {
        size_t n = (size_t)(p - s);
        if (!(*raw = cJSON_malloc(n + 1))) {
            jsonprune_fail(j, GHE_NOMEM, "out of memory");
            return false;
        }
        memcpy(*raw, s, n);
        (*raw)[n] = '\0';
    }
    return true;
bad:
    jsonprune_fail(j, GHE_INVAL, "body is not valid JSON");
    return false;
}

static bool jsonprune_literal(struct jsonprune *j, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) {
        jsonprune_fail(j, GHE_INVAL, "body is not valid JSON");
        return false;
    }
    j->p += n;
    return true;
}

/*
 * Parses one value. keep: build a node for it (returned through *out), with
 * everything below when whole is set, or only the parts live paths reach.
 */
static void jsonprune_value(struct jsonprune *j, int depth, bool keep, bool whole,
                            jsonprune_set live, cJSON **out);

static void jsonprune_container(struct jsonprune *j, int depth, bool keep, bool whole,
                                jsonprune_set live, cJSON **out, bool object) {
    cJSON *node = NULL;
    long index = 0;

    if (depth >= j->max_depth) {
        jsonprune_fail(j, GHE_INVAL, "body nests too deep");
        return;
    }
    if (keep) {
        node = object ? cJSON_CreateObject() : cJSON_CreateArray();
        if (!node) {
            jsonprune_fail(j, GHE_NOMEM, "out of memory");
            return;
        }
    }
    j->p++;
    jsonprune_ws(j);
    if (j->p < j->end && *j->p == (object ? '}' : ']')) {
        j->p++;
        *out = node;
        return;
    }
    for (;;) {
        const char *key = NULL;
        size_t keylen = 0, declen = 0;
        char *keycopy = NULL;
        if (object) {
            jsonprune_ws(j);
            if (j->p == j->end || *j->p != '"') {
                jsonprune_fail(j, GHE_INVAL, "body is not valid JSON");
                break;
            }
            /* Keys are decoded only while something below could be kept. */
            bool want = whole || live;
            if (!jsonprune_string(j, want, &key, &keylen, &declen))
                break;
            if (want && !key) {
                key = j->scratch;
                keylen = declen;
            }
            if (want && keep) {
                keycopy = cJSON_malloc(keylen + 1);
                if (!keycopy) {
                    jsonprune_fail(j, GHE_NOMEM, "out of memory");
                    break;
                }
                memcpy(keycopy, key, keylen);
                keycopy[keylen] = '\0';
                key = keycopy;
            }
            jsonprune_ws(j);
            if (j->p == j->end || *j->p != ':') {
                cJSON_free(keycopy);
                jsonprune_fail(j, GHE_INVAL, "body is not valid JSON");
                break;
            }
            j->p++;
        }
        bool child_whole = whole;
        jsonprune_set child_live = 0;
        if (!whole && live)
            child_live = object ? jsonprune_step(j, live, depth, key, keylen, -1, &child_whole)
                                : jsonprune_step(j, live, depth, NULL, 0, index, &child_whole);
        bool child_keep = keep && (child_whole || child_live);
        cJSON *child = NULL;
        jsonprune_ws(j);
        jsonprune_value(j, depth + 1, child_keep, child_whole, child_live, &child);
        if (j->status) {
            cJSON_free(keycopy);
            cJSON_Delete(child);
            break;
        }
        if (child) {
            /* An object's members are a list like an array's, each carrying its key. */
            child->string = keycopy;
            keycopy = NULL;
            cJSON_AddItemToArray(node, child);
        }
        cJSON_free(keycopy);
        index++;
        jsonprune_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->end && *j->p == (object ? '}' : ']')) {
            j->p++;
            *out = node;
            return;
        }
        jsonprune_fail(j, GHE_INVAL, "body is not valid JSON");
        break;
    }
    cJSON_Delete(node);
}

static void jsonprune_value(struct jsonprune *j, int depth, bool keep, bool whole,
                            jsonprune_set live, cJSON **out) {
    *out = NULL;
    if (j->p == j->end) {
        jsonprune_fail(j, GHE_INVAL, "body is not valid JSON");
        return;
    }
    switch (*j->p) {
    case '{':
        jsonprune_container(j, depth, keep, whole, live, out, true);
        return;
    case '[':
        jsonprune_container(j, depth, keep, whole, live, out, false);
        return;
    case '"': {
        size_t n = 0;
        if (!jsonprune_string(j, keep, NULL, NULL, &n) || !keep)
            return;
        /* The decoded bytes may hold a NUL from \u0000; cJSON strings end at it, as
         * cJSON's own parser does. */
        *out = cJSON_CreateString(j->scratch);
        break;
    }
    case 't':
        if (jsonprune_literal(j, "true") && keep)
            *out = cJSON_CreateTrue();
        break;
    case 'f':
        if (jsonprune_literal(j, "false") && keep)
            *out = cJSON_CreateFalse();
        break;
    case 'n':
        if (jsonprune_literal(j, "null") && keep)
            *out = cJSON_CreateNull();
        break;
    default: {
        double d = 0;
        char *raw = NULL;
        /* A kept number carries its text, so it is printed as the payload wrote it. */
        if (jsonprune_number(j, keep ? &d : NULL, keep ? &raw : NULL) && keep) {
            if ((*out = cJSON_CreateNumber(d)) != NULL)
                (*out)->valuestring = raw;
            else
                cJSON_free(raw);
        }
    }
    }
    if (keep && !j->status && !*out)
        jsonprune_fail(j, GHE_NOMEM, "out of memory");
    (void)whole;
    (void)live;
    (void)depth;
}

int jsonprune_parse(const char *text, size_t len, const struct jsonprune_path *paths, size_t npaths,
                    int max_depth, cJSON **out, char *err, size_t errlen) {
    struct jsonprune j = {text, text + len, paths, npaths, max_depth, 0, NULL, NULL, 0};
    jsonprune_set live = 0;
    bool whole = false;
    cJSON *root = NULL;

    *out = NULL;
    if (npaths > JSONPRUNE_MAX_PATHS) {
        snprintf(err, errlen, "too many paths to keep");
        return GHE_INVAL;
    }
    for (size_t i = 0; i < npaths; i++) {
        if (paths[i].n == 0)
            whole = true;
        else
            live |= (jsonprune_set)1 << i;
    }
    jsonprune_ws(&j);
    if (j.p == j.end || *j.p != '{') {
        snprintf(err, errlen, "body is not a JSON object");
        return GHE_INVAL;
    }
    jsonprune_value(&j, 0, true, whole, live, &root);
    if (!j.status) {
        jsonprune_ws(&j);
        if (j.p != j.end) {
            snprintf(err, errlen, "body has data after the JSON object (byte %zu)",
                     (size_t)(j.p - text));
            free(j.scratch);
            cJSON_Delete(root);
            return GHE_INVAL;
        }
    }
    free(j.scratch);
    if (j.status) {
        cJSON_Delete(root);
        if (strcmp(j.why, "body nests too deep") == 0)
            snprintf(err, errlen, "body nests deeper than %d levels", max_depth);
        else
            snprintf(err, errlen, "%s", j.why);
        return j.status;
    }
    *out = root;
    return 0;
}
