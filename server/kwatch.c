/*
 * List and watch, as client-go's reflector does it: a List gives the store and
 * the resourceVersion to watch from; the watch stream is newline-delimited
 * WatchEvents; a 410 means the version fell out of the server's watch cache
 * and only a new List can resync.
 */
#include "gpuhook/kwatch.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/error.h"
#include "gpuhook/ids.h"

static void set_err(struct kwatch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct kwatch *w, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, sizeof(w->err), fmt, ap);
    va_end(ap);
}

void kwatch_init(struct kwatch *w, kwatch_event_cb cb, void *ud, size_t max_line,
                 size_t max_objects) {
    memset(w, 0, sizeof(*w));
    w->cb = cb;
    w->ud = ud;
    w->max_line = max_line ? max_line : KWATCH_MAX_LINE_DEFAULT;
    w->max_objects = max_objects ? max_objects : KWATCH_MAX_OBJECTS_DEFAULT;
    /* The line buffer holds one line plus its terminator. */
    buf_init(&w->line, w->max_line + 1);
    w->next = KWATCH_NEXT_LIST;
}

static void items_free(struct kwatch_item *items, size_t count) {
    for (size_t i = 0; i < count; i++) {
        free(items[i].key);
        cJSON_Delete(items[i].object);
    }
    free(items);
}

void kwatch_cleanup(struct kwatch *w) {
    items_free(w->items, w->count);
    w->items = NULL;
    w->count = w->cap = 0;
    buf_cleanup(&w->line);
}

const char *kwatch_resource_version(const struct kwatch *w) { return w->rv; }

long kwatch_backoff_ms(const struct kwatch *w) {
    if (w->failures == 0)
        return 0;
    long ms = KWATCH_BACKOFF_INITIAL_MS;
    for (unsigned i = 1; i < w->failures && ms < KWATCH_BACKOFF_MAX_MS; i++)
        ms *= 2;
    if (ms > KWATCH_BACKOFF_MAX_MS)
        ms = KWATCH_BACKOFF_MAX_MS;
    return ids_jitter_ms(ms);
}

size_t kwatch_count(const struct kwatch *w) { return w->count; }

const cJSON *kwatch_object_at(const struct kwatch *w, size_t i) {
    return i < w->count ? w->items[i].object : NULL;
}

/* Fills key ("ns/name") and rv from an object's metadata. Returns 0 or GHE_INVAL. */
static int object_key(const cJSON *obj, char **key, char rv[KWATCH_RV_MAX]) {
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(md, "name");
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(md, "namespace");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
    if (!cJSON_IsString(name) || !name->valuestring[0] || !cJSON_IsString(v) ||
        !v->valuestring[0] || strlen(v->valuestring) >= KWATCH_RV_MAX)
        return GHE_INVAL;
    const char *nss = cJSON_IsString(ns) ? ns->valuestring : "";
    size_t n = strlen(nss) + strlen(name->valuestring) + 2;
    *key = malloc(n);
    if (!*key)
        return GHE_NOMEM;
    snprintf(*key, n, "%s/%s", nss, name->valuestring);
    buf_copy_str(rv, KWATCH_RV_MAX, v->valuestring);
    return 0;
}

/*
 * The store is kept sorted by key, so that a lookup is a binary search and a
 * re-list of n objects costs n log n, not n squared (10 000 runs is the limit).
 * Sets *at to where key is, or would go; returns whether it is there.
 */
static bool find(const struct kwatch_item *items, size_t count, const char *key, size_t *at) {
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(items[mid].key, key);
        if (c == 0) {
            *at = mid;
            return true;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *at = lo;
    return false;
}

const cJSON *kwatch_get(const struct kwatch *w, const char *ns, const char *name) {
    size_t n = strlen(ns) + strlen(name) + 2, at;
    char small[320], *key = n <= sizeof(small) ? small : malloc(n);
    const cJSON *found = NULL;

    if (!key)
        return NULL;
    snprintf(key, n, "%s/%s", ns, name);
    if (find(w->items, w->count, key, &at))
        found = w->items[at].object;
    if (key != small)
        free(key);
    return found;
}

/* A List's item and its place in the list, for sorting. */
struct kwatch_ordered {
    struct kwatch_item item;
    size_t seq;
};

static int ordered_cmp(const void *a, const void *b) {
    const struct kwatch_ordered *x = a, *y = b;
    int c = strcmp(x->item.key, y->item.key);
    return c ? c : (x->seq < y->seq ? -1 : x->seq > y->seq);
}

/*
 * Sorts a List's items by key; of items with one key the last wins, as
 * client-go's store.Replace keeps them. Returns the count left (the dropped
 * items are freed), or (size_t)-1 when memory runs out (items unchanged).
 */
static size_t items_sort(struct kwatch_item *items, size_t count) {
    struct kwatch_ordered *o = calloc(count ? count : 1, sizeof(*o));
    size_t out = 0;

    if (!o)
        return (size_t)-1;
    for (size_t i = 0; i < count; i++)
        o[i] = (struct kwatch_ordered){items[i], i};
    qsort(o, count, sizeof(*o), ordered_cmp);
    for (size_t i = 0; i < count; i++) {
        if (i + 1 < count && strcmp(o[i].item.key, o[i + 1].item.key) == 0) {
            free(o[i].item.key);
            cJSON_Delete(o[i].item.object);
            continue;
        }
        items[out++] = o[i].item;
    }
    free(o);
    return out;
}

static void fail(struct kwatch *w, enum kwatch_next next) {
    w->failures++;
    w->next = next;
}

void kwatch_list_failed(struct kwatch *w, int http_status) {
    set_err(w, "list failed (HTTP %d)", http_status);
    fail(w, KWATCH_NEXT_LIST);
}

int kwatch_list(struct kwatch *w, const char *body, size_t len) {
    struct kwatch_item *items = NULL;
    size_t count = 0;
    bool applied = false;
    int rc = 0;
    cJSON *root = cJSON_ParseWithLength(body, len);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(root, "metadata");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "items");
    if (!cJSON_IsObject(root) || !cJSON_IsArray(arr) || !cJSON_IsString(rv) ||
        !rv->valuestring[0] || strlen(rv->valuestring) >= KWATCH_RV_MAX) {
        set_err(w, "list: not a List with metadata.resourceVersion and items");
        rc = GHE_INVAL;
        goto out;
    }
    size_t n = (size_t)cJSON_GetArraySize(arr);
    if (n > w->max_objects) {
        set_err(w, "list: %zu items, over the limit of %zu", n, w->max_objects);
        rc = GHE_TOOBIG;
        goto out;
    }
    items = calloc(n ? n : 1, sizeof(*items));
    if (!items) {
        rc = GHE_NOMEM;
        goto out;
    }
    /* Validate and copy everything before touching the store, so a bad list changes nothing. */
    int idx = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        struct kwatch_item *dst = &items[count];
        rc = object_key(it, &dst->key, dst->rv);
        if (rc == GHE_INVAL)
            set_err(w, "list: items[%d] has no metadata.name or resourceVersion", idx);
        if (rc)
            goto out;
        dst->object = cJSON_Duplicate(it, 1);
        count++;
        if (!dst->object) {
            rc = GHE_NOMEM;
            goto out;
        }
        idx++;
    }
    size_t sorted = items_sort(items, count);
    if (sorted == (size_t)-1) {
        rc = GHE_NOMEM;
        goto out;
    }
    count = sorted;
    /* The resync, in the order a reader expects: gone, then new or changed. Both sorted. */
    size_t at;
    for (size_t i = 0; i < w->count && rc == 0; i++)
        if (!find(items, count, w->items[i].key, &at) && w->cb)
            rc = w->cb(w->ud, KWATCH_DELETED, w->items[i].object);
    for (size_t i = 0; i < count && rc == 0; i++) {
        if (!find(w->items, w->count, items[i].key, &at)) {
            if (w->cb)
                rc = w->cb(w->ud, KWATCH_ADDED, items[i].object);
        } else if (strcmp(w->items[at].rv, items[i].rv) != 0 && w->cb) {
            rc = w->cb(w->ud, KWATCH_MODIFIED, items[i].object);
        }
    }
    /* The list is the truth now, even if a callback objected. */
    items_free(w->items, w->count);
    w->items = items;
    w->count = w->cap = count;
    items = NULL;
    count = 0;
    applied = true;
    buf_copy_str(w->rv, sizeof(w->rv), rv->valuestring);
    if (rc) {
        set_err(w, "list: the event callback failed (%s)", ghe_strerror(rc));
        fail(w, KWATCH_NEXT_LIST);
    } else {
        w->err[0] = '\0';
        w->failures = 0;
        w->next = KWATCH_NEXT_WATCH;
    }
out:
    if (rc && !applied)
        fail(w, KWATCH_NEXT_LIST);
    items_free(items, count);
    cJSON_Delete(root);
    return rc;
}

enum kwatch_next kwatch_watch_status(struct kwatch *w, int http_status) {
    buf_cleanup(&w->line);
    buf_init(&w->line, w->max_line + 1);
    w->skipping = false;
    if (http_status == 200) {
        w->next = KWATCH_NEXT_READ;
    } else if (http_status == 410) {
        set_err(w, "watch: 410 Gone, resourceVersion %s is too old", w->rv);
        w->failures = 0;
        w->next = KWATCH_NEXT_LIST;
    } else if (http_status == 0 || http_status == 429 || http_status >= 500) {
        set_err(w, "watch: HTTP %d, retrying", http_status);
        fail(w, KWATCH_NEXT_WATCH);
    } else {
        set_err(w, "watch: HTTP %d, listing again", http_status);
        fail(w, KWATCH_NEXT_LIST);
    }
    return w->next;
}

/* Takes key (frees it on every path that does not store it). */
static int store_put(struct kwatch *w, char *key, const char *rv, const cJSON *obj,
                     enum kwatch_event *ev) {
    cJSON *copy = cJSON_Duplicate(obj, 1);
    if (!copy) {
        free(key);
        return GHE_NOMEM;
    }
    size_t i;
    if (find(w->items, w->count, key, &i)) {
        cJSON_Delete(w->items[i].object);
        w->items[i].object = copy;
        buf_copy_str(w->items[i].rv, KWATCH_RV_MAX, rv);
        free(key);
        *ev = KWATCH_MODIFIED;
        return 0;
    }
    if (w->count >= w->max_objects) {
        cJSON_Delete(copy);
        free(key);
        return GHE_TOOBIG;
    }
    if (w->count == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        struct kwatch_item *n = realloc(w->items, cap * sizeof(*n));
        if (!n) {
            cJSON_Delete(copy);
            free(key);
            return GHE_NOMEM;
        }
        w->items = n;
        w->cap = cap;
    }
    memmove(&w->items[i + 1], &w->items[i], (w->count - i) * sizeof(*w->items));
    w->items[i].key = key;
    w->items[i].object = copy;
    buf_copy_str(w->items[i].rv, KWATCH_RV_MAX, rv);
    w->count++;
    *ev = KWATCH_ADDED;
    return 0;
}

/* Ends the current stream with an error: the rest of its bytes are ignored. */
static int abandon(struct kwatch *w, int rc, enum kwatch_next next) {
    w->skipping = true;
    fail(w, next);
    return rc;
}

static int apply_error_event(struct kwatch *w, const cJSON *status) {
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(status, "code");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(status, "reason");
    int c = cJSON_IsNumber(code) ? code->valueint : 0;
    const char *r = cJSON_IsString(reason) ? reason->valuestring : "";
    set_err(w, "watch: ERROR event, code %d, reason %.40s", c, r);
    if (c == 410 || strcmp(r, "Expired") == 0 || strcmp(r, "Gone") == 0) {
        /* Not a failure of ours: the version aged out. List at once. */
        w->skipping = true;
        w->failures = 0;
        w->next = KWATCH_NEXT_LIST;
        return GHE_NOTFOUND;
    }
    if (c == 429)
        return abandon(w, GHE_UNAVAILABLE, KWATCH_NEXT_WATCH);
    return abandon(w, GHE_UNAVAILABLE, KWATCH_NEXT_LIST);
}

static int apply_line(struct kwatch *w, const char *line, size_t n) {
    while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
        n--;
    if (n == 0)
        return 0;
    int rc = 0;
    char *key = NULL;
    char rv[KWATCH_RV_MAX];
    cJSON *ev = cJSON_ParseWithLength(line, n);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(ev, "object");
    if (!cJSON_IsString(type) || !cJSON_IsObject(obj)) {
        set_err(w, "watch: a line of %zu bytes is not a WatchEvent", n);
        rc = abandon(w, GHE_INVAL, KWATCH_NEXT_WATCH);
        goto out;
    }
    const char *t = type->valuestring;
    if (strcmp(t, "ERROR") == 0) {
        rc = apply_error_event(w, obj);
        goto out;
    }
    if (strcmp(t, "BOOKMARK") == 0) {
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
        if (!cJSON_IsString(v) || !v->valuestring[0] || strlen(v->valuestring) >= KWATCH_RV_MAX) {
            set_err(w, "watch: BOOKMARK without metadata.resourceVersion");
            rc = abandon(w, GHE_INVAL, KWATCH_NEXT_WATCH);
            goto out;
        }
        buf_copy_str(w->rv, sizeof(w->rv), v->valuestring);
        w->bookmarks++;
        goto out;
    }
    bool added = strcmp(t, "ADDED") == 0, modified = strcmp(t, "MODIFIED") == 0;
    bool deleted = strcmp(t, "DELETED") == 0;
    if (!added && !modified && !deleted) {
        set_err(w, "watch: unknown event type %.20s", t);
        rc = abandon(w, GHE_INVAL, KWATCH_NEXT_WATCH);
        goto out;
    }
    rc = object_key(obj, &key, rv);
    if (rc) {
        set_err(w, "watch: %s event without metadata.name or resourceVersion", t);
        rc = abandon(w, rc, KWATCH_NEXT_WATCH);
        goto out;
    }
    enum kwatch_event kind = KWATCH_DELETED;
    if (deleted) {
        size_t i;
        if (find(w->items, w->count, key, &i)) {
            cJSON *last = w->items[i].object;
            free(w->items[i].key);
            memmove(&w->items[i], &w->items[i + 1], (w->count - i - 1) * sizeof(*w->items));
            w->count--;
            cJSON_Delete(last);
        }
    } else {
        /* An ADDED for a known key (after a re-watch) is a change, and vice versa. */
        rc = store_put(w, key, rv, obj, &kind);
        key = NULL;
        if (rc) {
            set_err(w, "watch: the store is full or out of memory (%s)", ghe_strerror(rc));
            rc = abandon(w, rc, KWATCH_NEXT_LIST);
            goto out;
        }
    }
    buf_copy_str(w->rv, sizeof(w->rv), rv);
    w->events++;
    if (w->cb && (rc = w->cb(w->ud, kind, obj)) != 0) {
        set_err(w, "watch: the event callback failed (%s)", ghe_strerror(rc));
        rc = abandon(w, rc, KWATCH_NEXT_LIST);
    }
out:
    free(key);
    cJSON_Delete(ev);
    return rc;
}

int kwatch_feed(struct kwatch *w, const char *data, size_t n) {
    if (w->skipping)
        return 0;
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        size_t take = nl ? (size_t)(nl - data) : n;
        if (w->line.len + take > w->max_line) {
            set_err(w, "watch: a line over %zu bytes", w->max_line);
            buf_cleanup(&w->line);
            return abandon(w, GHE_TOOBIG, KWATCH_NEXT_WATCH);
        }
        int rc;
        if (!nl) {
            if ((rc = buf_append(&w->line, data, take)) != 0)
                return abandon(w, rc, KWATCH_NEXT_WATCH);
            return 0;
        }
        if (w->line.len == 0) {
            rc = apply_line(w, data, take); /* the common case: no copy */
        } else {
            if ((rc = buf_append(&w->line, data, take)) != 0)
                return abandon(w, rc, KWATCH_NEXT_WATCH);
            rc = apply_line(w, w->line.data, w->line.len);
            w->line.len = 0;
        }
        if (rc)
            return rc;
        data += take + 1;
        n -= take + 1;
    }
    /* A healthy stream that delivered something resets the backoff. */
    w->failures = 0;
    return 0;
}

enum kwatch_next kwatch_end(struct kwatch *w, bool clean) {
    bool partial = w->line.len > 0;
    w->line.len = 0;
    if (w->skipping) {
        w->skipping = false;
        return w->next;
    }
    if (clean && !partial) {
        w->next = KWATCH_NEXT_WATCH;
        return w->next;
    }
    set_err(w, "watch: the stream %s%s", clean ? "ended" : "broke off",
            partial ? " inside an event" : "");
    fail(w, KWATCH_NEXT_WATCH);
    return w->next;
}
