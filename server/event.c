#include "gpuhook/event.h"
#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/jsonpath.h"
#include "gpuhook/jsonprune.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <pthread.h>

/*
 * A payload's cJSON tree is hundreds of small nodes and strings that live and
 * die together, so while a payload is parsed cJSON allocates from a bump
 * arena owned by the event, and the tree is dropped with the arena. The arena
 * is per thread for the length of one parse; outside a parse cJSON uses
 * malloc and free as usual.
 */
struct event_arena {
    struct event_arena *next;
    size_t used, cap;
    max_align_t data[];
};

#define EVENT_ARENA_FIRST (32 * 1024)
#define EVENT_ARENA_MAX_CHUNK (4 * 1024 * 1024)

static _Thread_local struct event_arena **event_arena_current;
static pthread_once_t event_hooks_once = PTHREAD_ONCE_INIT;

static void *event_arena_alloc(size_t n) {
    struct event_arena **head = event_arena_current;
    if (!head)
        return malloc(n);
    n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    struct event_arena *a = *head;
    if (!a || a->cap - a->used < n) {
        size_t cap = a ? a->cap * 2 : EVENT_ARENA_FIRST;
        if (cap > EVENT_ARENA_MAX_CHUNK)
            cap = EVENT_ARENA_MAX_CHUNK;
        if (cap < n)
            cap = n;
        struct event_arena *c = malloc(sizeof(*c) + cap);
        if (!c)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a;
        *head = c;
        a = c;
    }
    void *p = (char *)a->data + a->used;
    a->used += n;
    return p;
}

/* Inside a parse every allocation is the arena's, freed with it. */
static void event_arena_release(void *p) {
    if (!event_arena_current)
        free(p);
}

static void event_hooks_install(void) {
    cJSON_Hooks hooks = {event_arena_alloc, event_arena_release};
    cJSON_InitHooks(&hooks);
}

void event_global_init(void) { pthread_once(&event_hooks_once, event_hooks_install); }

static void event_arena_free(struct event_arena *a) {
    while (a) {
        struct event_arena *next = a->next;
        free(a);
        a = next;
    }
}

void event_init(struct event *ev) { *ev = (struct event){0}; }

static void event_strv_free(char **v, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void event_cleanup(struct event *ev) {
    char **fields[] = {
        &ev->event,   &ev->action, &ev->repo_full_name, &ev->repo_url,    &ev->ref,
        &ev->branch,  &ev->tag,    &ev->revision,       &ev->base_branch, &ev->pr_number,
        &ev->message, &ev->sender, &ev->delivery,       &ev->hook_id,     &ev->added_label};

    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        free(*fields[i]);
    free(ev->head_repo);
    free(ev->author_assoc);
    event_strv_free(ev->labels, ev->label_count);
    event_strv_free(ev->changed_paths, ev->changed_count);
    if (ev->arena)
        event_arena_free(ev->arena); /* the tree lives in it */
    else
        cJSON_Delete(ev->body);
    event_init(ev);
}

int event_set(char **field, const char *s) {
    char *copy = NULL;

    if (s) {
        copy = strdup(s);
        if (!copy)
            return GHE_NOMEM;
    }
    free(*field);
    *field = copy;
    return 0;
}

const char *event_header_get(const struct event *ev, const char *name) {
    if (!name)
        return NULL;
    for (size_t i = 0; i < ev->header_count; i++) {
        if (ev->headers[i].name && strcasecmp(ev->headers[i].name, name) == 0)
            return ev->headers[i].value;
    }
    return NULL;
}

/* Joins n strings with ',' into a fresh string (free()), or NULL when out of memory. */
static char *event_join(const char *const *v, size_t n) {
    struct buf b;
    int rc = 0;

    buf_init(&b, 1024 * 1024);
    for (size_t i = 0; i < n && !rc; i++)
        if (!(i && (rc = buf_append(&b, ",", 1))))
            rc = buf_appends(&b, v[i]);
    if (rc) {
        buf_cleanup(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

char *event_changed_files(const struct event *ev) {
    return event_join((const char *const *)ev->changed_paths, ev->changed_count);
}

bool event_header_secret(const char *name) {
    static const char *const secret[] = {"Authorization", "Proxy-Authorization", "Cookie",
                                         "X-Hub-Signature", "X-Hub-Signature-256"};
    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
        if (strcasecmp(name, secret[i]) == 0)
            return true;
    return false;
}

const char *event_header_joined(const struct event *ev, const char *name, char **owned, bool *oom) {
    const char *list[EVENT_HEADER_JOIN_MAX];
    size_t n = 0;

    *oom = false;
    if (event_header_secret(name))
        return NULL;
    for (size_t i = 0; i < ev->header_count && n < EVENT_HEADER_JOIN_MAX; i++)
        if (ev->headers[i].name && strcasecmp(ev->headers[i].name, name) == 0)
            list[n++] = ev->headers[i].value ? ev->headers[i].value : "";
    if (n <= 1)
        return n ? list[0] : NULL;
    if (!(*owned = event_join(list, n)))
        *oom = true;
    return *owned;
}

cJSON *event_header_object(const struct event *ev) {
    cJSON *o = cJSON_CreateObject();
    char names[EVENT_HEADER_JOIN_MAX][256];
    size_t n = 0;

    for (size_t i = 0; o && i < ev->header_count && n < EVENT_HEADER_JOIN_MAX; i++) {
        if (!ev->headers[i].name || event_header_secret(ev->headers[i].name))
            continue;
        char canon[256];
        jsonpath_canonical_header(ev->headers[i].name, canon, sizeof(canon));
        size_t k = 0;
        while (k < n && strcmp(names[k], canon) != 0)
            k++;
        if (k == n)
            memcpy(names[n++], canon, sizeof(canon));
    }
    /* Sorted, as Go prints a map; insertion sort, for a few dozen names at most. */
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && strcmp(names[k - 1], names[k]) > 0; k--) {
            char tmp[256];
            memcpy(tmp, names[k], sizeof(tmp));
            memcpy(names[k], names[k - 1], sizeof(tmp));
            memcpy(names[k - 1], tmp, sizeof(tmp));
        }
    for (size_t i = 0; o && i < n; i++) {
        char *owned = NULL;
        bool oom;
        const char *v = event_header_joined(ev, names[i], &owned, &oom);
        if (oom || !cJSON_AddStringToObject(o, names[i], v ? v : "")) {
            cJSON_Delete(o);
            o = NULL;
        }
        free(owned);
    }
    return o;
}

/* RFC 9110 token characters. */
static bool event_is_tchar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *event_skip_ows(const char *p) {
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static bool event_charset_is_utf8(const char *v) {
    return strcasecmp(v, "utf-8") == 0 || strcasecmp(v, "utf8") == 0 ||
           strcasecmp(v, "us-ascii") == 0;
}

int event_content_type_parse(const char *content_type) {
    static const char json[] = "application/json";
    static const char form[] = "application/x-www-form-urlencoded";
    int kind;

    if (!content_type)
        return EVENT_CONTENT_UNSUPPORTED;
    const char *p = event_skip_ows(content_type);
    const char *start = p;
    while (event_is_tchar(*p) || *p == '/')
        p++;
    size_t n = (size_t)(p - start);
    if (n == sizeof(json) - 1 && strncasecmp(start, json, n) == 0)
        kind = EVENT_CONTENT_JSON;
    else if (n == sizeof(form) - 1 && strncasecmp(start, form, n) == 0)
        kind = EVENT_CONTENT_FORM;
    else
        return EVENT_CONTENT_UNSUPPORTED;

    for (;;) {
        char value[32];
        size_t vlen = 0;
        bool too_long = false;

        p = event_skip_ows(p);
        if (*p == '\0')
            return kind;
        if (*p != ';')
            return EVENT_CONTENT_UNSUPPORTED;
        p = event_skip_ows(p + 1);
        if (*p == '\0')
            return kind;
        const char *name = p;
        while (event_is_tchar(*p))
            p++;
        size_t name_len = (size_t)(p - name);
        if (name_len == 0 || *p != '=')
            return EVENT_CONTENT_UNSUPPORTED;
        p++;
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++) {
                if (*p == '\\' && p[1])
                    p++;
                if (vlen < sizeof(value) - 1)
                    value[vlen++] = *p;
                else
                    too_long = true;
            }
            if (*p != '"')
                return EVENT_CONTENT_UNSUPPORTED;
            p++;
        } else {
            for (; event_is_tchar(*p); p++) {
                if (vlen < sizeof(value) - 1)
                    value[vlen++] = *p;
                else
                    too_long = true;
            }
            if (vlen == 0)
                return EVENT_CONTENT_UNSUPPORTED;
        }
        value[vlen] = '\0';
        if (name_len == 7 && strncasecmp(name, "charset", 7) == 0 &&
            (too_long || !event_charset_is_utf8(value)))
            return EVENT_CONTENT_UNSUPPORTED;
    }
}

/*
 * Returns the offset of the first byte that breaks strict UTF-8 (overlong
 * forms, surrogates and code points past U+10FFFF included) or is a NUL, or
 * len. Runs of plain ASCII are skipped eight bytes at a time: a payload is
 * mostly ASCII, and this scan touches every byte of it.
 */
static size_t event_utf8_invalid_offset(const unsigned char *s, size_t len) {
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];

        if (c < 0x80) {
            if (c == 0)
                return i;
            i++;
            while (i + 8 <= len) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                /* No high bit and no zero byte in the word: eight plain characters. */
                if ((w & 0x8080808080808080ULL) ||
                    ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL))
                    break;
                i += 8;
            }
            continue;
        }
        size_t n = buf_utf8_len(s + i, len - i);
        if (!n)
            return i;
        i += n;
    }
    return len;
}

static bool event_is_json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int event_json_parse(const char *text, size_t len, cJSON **out, char *err, size_t errlen) {
    size_t i = 0, begin;
    int depth = 0;
    bool in_string = false;

    *out = NULL;
    if (len > 0 && !text)
        len = 0;
    size_t bad = event_utf8_invalid_offset((const unsigned char *)text, len);
    if (bad < len && text[bad] == '\0') {
        ghe_errf(err, errlen, "body contains a NUL byte");
        return GHE_INVAL;
    }
    if (bad < len) {
        ghe_errf(err, errlen, "body is not valid UTF-8 (byte %zu)", bad);
        return GHE_INVAL;
    }

    /*
     * cJSON recurses once per nesting level, so the depth is bounded by a
     * cheap scan first. The same scan finds where the top-level object ends,
     * which lets trailing data be refused although cJSON_ParseWithLength
     * stops at the end of the first value.
     */
    while (i < len && event_is_json_ws(text[i]))
        i++;
    if (i == len || text[i] != '{') {
        ghe_errf(err, errlen, "body is not a JSON object");
        return GHE_INVAL;
    }
    begin = i;
    for (; i < len; i++) {
        char c = text[i];

        if (in_string) {
            /* Jump to the next quote; it closes the string unless an odd run of backslashes
             * escapes it. Strings are most of a payload, and memchr is fast. */
            const char *q = memchr(text + i, '"', len - i);
            if (!q) {
                i = len;
                break;
            }
            size_t k = (size_t)(q - text), bs = 0;
            while (k - bs > i && text[k - bs - 1] == '\\')
                bs++;
            i = k;
            if (bs % 2 == 0)
                in_string = false;
            continue;
        }
        if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > EVENT_MAX_DEPTH) {
                ghe_errf(err, errlen, "body nests deeper than %d levels", EVENT_MAX_DEPTH);
                return GHE_INVAL;
            }
        } else if (c == '}' || c == ']') {
            if (--depth == 0)
                break;
        }
    }
    if (i >= len) {
        ghe_errf(err, errlen, "body is not valid JSON");
        return GHE_INVAL;
    }
    size_t end = i + 1;
    for (i = end; i < len; i++) {
        if (!event_is_json_ws(text[i])) {
            ghe_errf(err, errlen, "body has data after the JSON object (byte %zu)", i);
            return GHE_INVAL;
        }
    }

    cJSON *root = cJSON_ParseWithLength(text + begin, end - begin);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        ghe_errf(err, errlen, "body is not valid JSON");
        return GHE_INVAL;
    }
    *out = root;
    return 0;
}

/*
 * Finds the payload field of a form body and URL-decodes it in place. Field
 * names are compared as sent: GitHub never encodes "payload".
 */
static int event_form_payload(char *body, size_t len, char **value, size_t *value_len, char *err,
                              size_t errlen) {
    char *found = NULL;
    size_t found_len = 0;
    size_t i = 0;

    while (body && i <= len) {
        size_t start = i;

        while (i < len && body[i] != '&')
            i++;
        char *eq = memchr(body + start, '=', i - start);
        size_t name_len = eq ? (size_t)(eq - (body + start)) : i - start;
        if (name_len == 7 && memcmp(body + start, "payload", 7) == 0) {
            if (found) {
                ghe_errf(err, errlen, "form body has more than one \"payload\" field");
                return GHE_INVAL;
            }
            found = eq ? eq + 1 : body + i;
            found_len = (size_t)(body + i - found);
        }
        i++;
    }
    if (!found) {
        ghe_errf(err, errlen, "form body lacks a \"payload\" field");
        return GHE_INVAL;
    }

    size_t o = 0;
    for (size_t k = 0; k < found_len; k++) {
        char c = found[k];

        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            int hi = k + 2 < found_len ? buf_hex_value(found[k + 1]) : -1;
            int lo = hi >= 0 ? buf_hex_value(found[k + 2]) : -1;
            if (lo < 0) {
                ghe_errf(err, errlen, "form field \"payload\" has a bad %%-escape at offset %zu",
                         k);
                return GHE_INVAL;
            }
            c = (char)(hi << 4 | lo);
            k += 2;
        }
        found[o++] = c;
    }
    *value = found;
    *value_len = o;
    return 0;
}

static const cJSON *event_obj_get(const cJSON *o, const char *key) {
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL;
}

static const char *event_obj_string(const cJSON *o, const char *key) {
    const cJSON *v = event_obj_get(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *event_strip_prefix(const char *s, const char *prefix) {
    size_t n = strlen(prefix);
    return s && strncmp(s, prefix, n) == 0 ? s + n : NULL;
}

/* True for a SHA of only zeros, which GitHub sends as "after" when a ref is deleted. */
static bool event_sha_is_zero(const char *s) {
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s != '0')
            return false;
    }
    return true;
}

/* Formats a JSON number that holds a non-negative whole number below 2^53. */
static bool event_number_format(const cJSON *v, char *out, size_t outlen) {
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || (double)(long long)d != d)
        return false;
    snprintf(out, outlen, "%lld", (long long)d);
    return true;
}

/* Appends a copy of s to *v. */
static int event_strv_push(char ***v, size_t *n, const char *s) {
    char *copy = strdup(s);
    if (!copy)
        return GHE_NOMEM;
    char **grown = realloc(*v, (*n + 1) * sizeof(**v));
    if (!grown) {
        free(copy);
        return GHE_NOMEM;
    }
    grown[(*n)++] = copy;
    *v = grown;
    return 0;
}

struct path_ref {
    const char *s;
    size_t idx;
};

static int event_path_ref_cmp(const void *a, const void *b) {
    const struct path_ref *x = a, *y = b;
    int c = strcmp(x->s, y->s);
    if (c)
        return c;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/*
 * Collects the union of commits[].added/modified/removed, in order of first
 * appearance. Sorting keeps this O(n log n) for pushes with many files.
 */
static int event_collect_paths(struct event *ev, const cJSON *commits) {
    static const char *const lists[] = {"added", "modified", "removed"};
    const char **all = NULL;
    struct path_ref *sorted = NULL;
    bool *keep = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    const cJSON *commit;

    if (!cJSON_IsArray(commits))
        return 0;
    cJSON_ArrayForEach(commit, commits) {
        for (size_t l = 0; l < 3; l++) {
            const cJSON *list = event_obj_get(commit, lists[l]);
            const cJSON *p;

            if (!cJSON_IsArray(list))
                continue;
            cJSON_ArrayForEach(p, list) {
                if (!cJSON_IsString(p))
                    continue;
                if (n == cap) {
                    size_t ncap = cap ? cap * 2 : 16;
                    const char **grown = realloc(all, ncap * sizeof(*all));
                    if (!grown) {
                        rc = GHE_NOMEM;
                        goto out;
                    }
                    all = grown;
                    cap = ncap;
                }
                all[n++] = p->valuestring;
            }
        }
    }
    if (n == 0)
        goto out;

    sorted = malloc(n * sizeof(*sorted));
    keep = calloc(n, sizeof(*keep));
    ev->changed_paths = calloc(n, sizeof(*ev->changed_paths));
    if (!sorted || !keep || !ev->changed_paths) {
        rc = GHE_NOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        sorted[i] = (struct path_ref){all[i], i};
    qsort(sorted, n, sizeof(*sorted), event_path_ref_cmp);
    for (size_t i = 0; i < n; i++)
        keep[sorted[i].idx] = i == 0 || strcmp(sorted[i].s, sorted[i - 1].s) != 0;
    for (size_t i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        ev->changed_paths[ev->changed_count] = strdup(all[i]);
        if (!ev->changed_paths[ev->changed_count]) {
            rc = GHE_NOMEM;
            goto out;
        }
        ev->changed_count++;
    }

out:
    free(all);
    free(sorted);
    free(keep);
    return rc;
}

static int event_fill_push(struct event *ev, const cJSON *b, char *err, size_t errlen) {
    const char *after = event_obj_string(b, "after");
    const char *ref = event_obj_string(b, "ref");
    int rc;

    if (!after) {
        ghe_errf(err, errlen, "push payload lacks \"after\"");
        return GHE_INVAL;
    }
    if (!ev->repo_url) {
        ghe_errf(err, errlen, "push payload lacks \"repository.clone_url\"");
        return GHE_INVAL;
    }
    if ((rc = event_set(&ev->revision, after)) || (rc = event_set(&ev->ref, ref)) ||
        (rc = event_set(&ev->branch, event_strip_prefix(ref, "refs/heads/"))) ||
        (rc = event_set(&ev->tag, event_strip_prefix(ref, "refs/tags/"))) ||
        (rc =
             event_set(&ev->message, event_obj_string(event_obj_get(b, "head_commit"), "message"))))
        return rc;
    ev->deleted = cJSON_IsTrue(event_obj_get(b, "deleted")) || event_sha_is_zero(after);
    return event_collect_paths(ev, event_obj_get(b, "commits"));
}

static int event_fill_pull_request(struct event *ev, const cJSON *b, char *err, size_t errlen) {
    const cJSON *pr = event_obj_get(b, "pull_request");
    const cJSON *head = event_obj_get(pr, "head");
    const char *sha = event_obj_string(head, "sha");
    const cJSON *labels = event_obj_get(pr, "labels");
    const cJSON *label;
    char number[32], ref[64];
    int rc;

    if (!sha) {
        ghe_errf(err, errlen, "pull_request payload lacks \"pull_request.head.sha\"");
        return GHE_INVAL;
    }
    if (!ev->repo_url) {
        ghe_errf(err, errlen, "pull_request payload lacks \"repository.clone_url\"");
        return GHE_INVAL;
    }
    if ((rc = event_set(&ev->revision, sha)) ||
        (rc = event_set(&ev->branch, event_obj_string(head, "ref"))) ||
        (rc = event_set(&ev->base_branch, event_obj_string(event_obj_get(pr, "base"), "ref"))) ||
        (rc = event_set(&ev->message, event_obj_string(pr, "title"))) ||
        (rc = event_set(&ev->head_repo,
                        event_obj_string(event_obj_get(head, "repo"), "full_name"))) ||
        (rc = event_set(&ev->author_assoc, event_obj_string(pr, "author_association"))))
        return rc;
    if (event_number_format(event_obj_get(b, "number"), number, sizeof(number)) ||
        event_number_format(event_obj_get(pr, "number"), number, sizeof(number))) {
        snprintf(ref, sizeof(ref), "refs/pull/%s/head", number);
        if ((rc = event_set(&ev->pr_number, number)) || (rc = event_set(&ev->ref, ref)))
            return rc;
    }
    ev->draft = cJSON_IsTrue(event_obj_get(pr, "draft"));
    if (ev->action && strcmp(ev->action, "labeled") == 0 &&
        (rc = event_set(&ev->added_label, event_obj_string(event_obj_get(b, "label"), "name"))))
        return rc;
    if (cJSON_IsArray(labels)) {
        cJSON_ArrayForEach(label, labels) {
            const char *name = event_obj_string(label, "name");
            if (name && (rc = event_strv_push(&ev->labels, &ev->label_count, name)))
                return rc;
        }
    }
    return 0;
}

/* What the event itself reads from a payload; see event_fill_push and _pull_request. */
#define EVENT_SEG(k)                                                                               \
    { k, -1, false }
#define EVENT_ANY                                                                                  \
    { NULL, -1, true }
static const struct jsonprune_seg event_seg_action[] = {EVENT_SEG("action")};
static const struct jsonprune_seg event_seg_number[] = {EVENT_SEG("number")};
static const struct jsonprune_seg event_seg_ref[] = {EVENT_SEG("ref")};
static const struct jsonprune_seg event_seg_after[] = {EVENT_SEG("after")};
static const struct jsonprune_seg event_seg_deleted[] = {EVENT_SEG("deleted")};
static const struct jsonprune_seg event_seg_repo_name[] = {EVENT_SEG("repository"),
                                                           EVENT_SEG("full_name")};
static const struct jsonprune_seg event_seg_repo_url[] = {EVENT_SEG("repository"),
                                                          EVENT_SEG("clone_url")};
static const struct jsonprune_seg event_seg_sender[] = {EVENT_SEG("sender"), EVENT_SEG("login")};
static const struct jsonprune_seg event_seg_message[] = {EVENT_SEG("head_commit"),
                                                         EVENT_SEG("message")};
static const struct jsonprune_seg event_seg_added[] = {EVENT_SEG("commits"), EVENT_ANY,
                                                       EVENT_SEG("added")};
static const struct jsonprune_seg event_seg_modified[] = {EVENT_SEG("commits"), EVENT_ANY,
                                                          EVENT_SEG("modified")};
static const struct jsonprune_seg event_seg_removed[] = {EVENT_SEG("commits"), EVENT_ANY,
                                                         EVENT_SEG("removed")};
static const struct jsonprune_seg event_seg_pr_sha[] = {EVENT_SEG("pull_request"),
                                                        EVENT_SEG("head"), EVENT_SEG("sha")};
static const struct jsonprune_seg event_seg_pr_head[] = {EVENT_SEG("pull_request"),
                                                         EVENT_SEG("head"), EVENT_SEG("ref")};
static const struct jsonprune_seg event_seg_pr_base[] = {EVENT_SEG("pull_request"),
                                                         EVENT_SEG("base"), EVENT_SEG("ref")};
static const struct jsonprune_seg event_seg_pr_title[] = {EVENT_SEG("pull_request"),
                                                          EVENT_SEG("title")};
static const struct jsonprune_seg event_seg_pr_draft[] = {EVENT_SEG("pull_request"),
                                                          EVENT_SEG("draft")};
static const struct jsonprune_seg event_seg_pr_number[] = {EVENT_SEG("pull_request"),
                                                           EVENT_SEG("number")};
static const struct jsonprune_seg event_seg_pr_labels[] = {
    EVENT_SEG("pull_request"), EVENT_SEG("labels"), EVENT_ANY, EVENT_SEG("name")};
static const struct jsonprune_seg event_seg_label[] = {EVENT_SEG("label"), EVENT_SEG("name")};
static const struct jsonprune_seg event_seg_pr_repo[] = {
    EVENT_SEG("pull_request"), EVENT_SEG("head"), EVENT_SEG("repo"), EVENT_SEG("full_name")};
static const struct jsonprune_seg event_seg_pr_assoc[] = {EVENT_SEG("pull_request"),
                                                          EVENT_SEG("author_association")};
/* GitHub feedback (issue 20) keeps the delivery's installation on the run. */
static const struct jsonprune_seg event_seg_installation[] = {EVENT_SEG("installation"),
                                                              EVENT_SEG("id")};
#define EVENT_PATH(a)                                                                              \
    { a, sizeof(a) / sizeof(a[0]) }
static const struct jsonprune_path event_paths[] = {
    EVENT_PATH(event_seg_action),      EVENT_PATH(event_seg_number),
    EVENT_PATH(event_seg_ref),         EVENT_PATH(event_seg_after),
    EVENT_PATH(event_seg_deleted),     EVENT_PATH(event_seg_repo_name),
    EVENT_PATH(event_seg_repo_url),    EVENT_PATH(event_seg_sender),
    EVENT_PATH(event_seg_message),     EVENT_PATH(event_seg_added),
    EVENT_PATH(event_seg_modified),    EVENT_PATH(event_seg_removed),
    EVENT_PATH(event_seg_pr_sha),      EVENT_PATH(event_seg_pr_head),
    EVENT_PATH(event_seg_pr_base),     EVENT_PATH(event_seg_pr_title),
    EVENT_PATH(event_seg_pr_draft),    EVENT_PATH(event_seg_pr_number),
    EVENT_PATH(event_seg_pr_labels),   EVENT_PATH(event_seg_label),
    EVENT_PATH(event_seg_pr_repo),     EVENT_PATH(event_seg_pr_assoc),
    EVENT_PATH(event_seg_installation)};
#define EVENT_NPATHS (sizeof(event_paths) / sizeof(event_paths[0]))

int event_parse_delivery(struct event *ev, const char *event_name, const char *delivery,
                         const char *hook_id, const char *content_type, char *body, size_t len,
                         char *err, size_t errlen) {
    static const struct jsonprune_path whole = {NULL, 0};
    return event_parse_delivery_paths(ev, event_name, delivery, hook_id, content_type, body, len,
                                      &whole, 1, err, errlen);
}

int event_parse_delivery_paths(struct event *ev, const char *event_name, const char *delivery,
                               const char *hook_id, const char *content_type, char *body,
                               size_t len, const struct jsonprune_path *extra, size_t nextra,
                               char *err, size_t errlen) {
    char *json = body;
    size_t json_len = len;
    int rc;

    if (err && errlen)
        err[0] = '\0';
    if ((rc = event_set(&ev->event, event_name)) || (rc = event_set(&ev->delivery, delivery)) ||
        (rc = event_set(&ev->hook_id, hook_id)))
        goto out;

    int kind = event_content_type_parse(content_type);
    if (kind == EVENT_CONTENT_UNSUPPORTED) {
        ghe_errf(err, errlen,
                 "content type is neither application/json nor "
                 "application/x-www-form-urlencoded");
        return GHE_UNSUPPORTED;
    }
    if (kind == EVENT_CONTENT_FORM &&
        (rc = event_form_payload(body, len, &json, &json_len, err, errlen)))
        return rc;

    if (ev->arena)
        event_arena_free(ev->arena);
    else
        cJSON_Delete(ev->body);
    ev->body = NULL;
    ev->arena = NULL;
    struct jsonprune_path paths[JSONPRUNE_MAX_PATHS];
    size_t npaths = 0;
    for (size_t i = 0; i < EVENT_NPATHS; i++)
        paths[npaths++] = event_paths[i];
    for (size_t i = 0; i < nextra && npaths < JSONPRUNE_MAX_PATHS; i++)
        paths[npaths++] = extra[i];
    if (npaths < EVENT_NPATHS + nextra) {
        ghe_errf(err, errlen, "the bindings name too many $(body...) paths");
        return GHE_INVAL;
    }
    event_global_init();
    event_arena_current = (struct event_arena **)&ev->arena;
    rc = jsonprune_parse(json, json_len, paths, npaths, EVENT_MAX_DEPTH, &ev->body, err, errlen);
    event_arena_current = NULL;
    if (rc == GHE_INVAL) {
        /*
         * jsonprune checks UTF-8 and NULs as it goes, so only a refused body needs
         * this scan, for the more precise of the two reasons.
         */
        size_t bad = event_utf8_invalid_offset((const unsigned char *)json, json_len);
        if (bad < json_len && json[bad] == '\0')
            ghe_errf(err, errlen, "body contains a NUL byte");
        else if (bad < json_len)
            ghe_errf(err, errlen, "body is not valid UTF-8 (byte %zu)", bad);
    }
    if (rc)
        return rc;

    const cJSON *b = ev->body;
    const cJSON *repo = event_obj_get(b, "repository");
    if ((rc = event_set(&ev->action, event_obj_string(b, "action"))) ||
        (rc = event_set(&ev->repo_full_name, event_obj_string(repo, "full_name"))) ||
        (rc = event_set(&ev->repo_url, event_obj_string(repo, "clone_url"))) ||
        (rc = event_set(&ev->sender, event_obj_string(event_obj_get(b, "sender"), "login"))))
        goto out;

    if (event_name && strcmp(event_name, "push") == 0)
        rc = event_fill_push(ev, b, err, errlen);
    else if (event_name && strcmp(event_name, "pull_request") == 0)
        rc = event_fill_pull_request(ev, b, err, errlen);

out:
    if (rc == GHE_NOMEM)
        ghe_errf(err, errlen, "out of memory");
    return rc;
}
