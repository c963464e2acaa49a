/*
 * Fuzz target 7: the list-and-watch decoder (kwatch.c), which reads what the
 * Kubernetes API sends for gpuhook's PipelineRuns: a List answer, then a watch
 * body of newline-delimited WatchEvents in chunks of any size.
 *
 * Input: byte 0 picks the chunk size (1 to 64) and byte 1 the store's limit
 * (1 to 16 objects); the rest is a List body, a NUL byte, and a watch body.
 * Invariants:
 *   - the list and every feed return 0 or a GHE_ code, and w->err says why on
 *     failure; a refused list changes neither the store nor the resourceVersion;
 *   - the store never holds more than its limit, never two objects with one
 *     namespace/name, and kwatch_get finds each object it holds;
 *   - feeding the watch body whole and in chunks gives the same callbacks in the
 *     same order, the same resourceVersion, the same store and the same next step
 *     (a reader cannot tell how the bytes were framed);
 *   - every callback's object has the key it is reported under.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/kwatch.h"

/* The callbacks of one run, as text: "A ns/name rv\n" per event. */
struct fuzz_kw_log {
    struct buf text;
};

static const char *fuzz_kw_meta(const cJSON *obj, const char *key) {
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static int fuzz_kw_cb(void *ud, enum kwatch_event ev, const cJSON *obj) {
    struct fuzz_kw_log *log = ud;
    static const char kinds[] = {'A', 'M', 'D'};
    char line[512];
    const char *name = fuzz_kw_meta(obj, "name");

    FUZZ_REQUIRE(obj != NULL, "a callback without an object");
    FUZZ_REQUIRE(ev == KWATCH_DELETED || name[0], "an %c event for an object without a name",
                 kinds[ev]);
    int n = snprintf(line, sizeof(line), "%c %.100s/%.300s %.63s\n", kinds[ev],
                     fuzz_kw_meta(obj, "namespace"), name, fuzz_kw_meta(obj, "resourceVersion"));
    FUZZ_REQUIRE(buf_append(&log->text, line, (size_t)n) == 0, "out of memory");
    return 0;
}

static bool fuzz_kw_rc_ok(int rc) {
    return rc == 0 || rc == GHE_INVAL || rc == GHE_TOOBIG || rc == GHE_NOMEM ||
           rc == GHE_NOTFOUND || rc == GHE_UNAVAILABLE;
}

/* The store's invariants: bounded, unique keys, each found by kwatch_get. */
static void fuzz_kw_check_store(const struct kwatch *w, size_t limit) {
    size_t n = kwatch_count(w);
    FUZZ_REQUIRE(n <= limit, "the store holds %zu objects, over its limit of %zu", n, limit);
    for (size_t i = 0; i < n; i++) {
        const cJSON *o = kwatch_object_at(w, i);
        const char *ns = fuzz_kw_meta(o, "namespace"), *name = fuzz_kw_meta(o, "name");
        FUZZ_REQUIRE(o && name[0], "stored object %zu has no name", i);
        FUZZ_REQUIRE(kwatch_get(w, ns, name) == o, "kwatch_get does not find %s/%s", ns, name);
        for (size_t j = i + 1; j < n; j++) {
            const cJSON *p = kwatch_object_at(w, j);
            FUZZ_REQUIRE(strcmp(ns, fuzz_kw_meta(p, "namespace")) != 0 ||
                             strcmp(name, fuzz_kw_meta(p, "name")) != 0,
                         "the store holds %s/%s twice", ns, name);
        }
    }
}

/* The store as sorted text, to compare two runs. Caller frees. */
static char *fuzz_kw_store_text(const struct kwatch *w) {
    size_t n = kwatch_count(w);
    char **keys = calloc(n ? n : 1, sizeof(*keys));
    struct buf b;
    FUZZ_REQUIRE(keys != NULL, "out of memory");
    buf_init(&b, 1u << 26);
    for (size_t i = 0; i < n; i++) {
        const cJSON *o = kwatch_object_at(w, i);
        char *text = cJSON_PrintUnformatted(o);
        FUZZ_REQUIRE(text != NULL, "out of memory");
        keys[i] = text;
    }
    for (size_t i = 1; i < n; i++) /* insertion sort: n is at most 16 */
        for (size_t j = i; j > 0 && strcmp(keys[j - 1], keys[j]) > 0; j--) {
            char *t = keys[j];
            keys[j] = keys[j - 1];
            keys[j - 1] = t;
        }
    for (size_t i = 0; i < n; i++) {
        FUZZ_REQUIRE(buf_appends(&b, keys[i]) == 0 && buf_append(&b, "\n", 1) == 0,
                     "out of memory");
        free(keys[i]);
    }
    free(keys);
    FUZZ_REQUIRE(buf_append(&b, "", 1) == 0, "out of memory");
    return b.data;
}

struct fuzz_kw_run {
    struct fuzz_kw_log log;
    char *store;
    char rv[KWATCH_RV_MAX];
    enum kwatch_next next;
    int first_error; /* the first non-zero feed result */
};

static void fuzz_kw_one_run(const char *list, size_t list_len, const char *watch, size_t watch_len,
                            size_t chunk, size_t limit, struct fuzz_kw_run *out) {
    struct kwatch w;

    memset(out, 0, sizeof(*out));
    buf_init(&out->log.text, 1u << 26);
    /* A small line limit, so that the fuzzer reaches the over-long line too. */
    kwatch_init(&w, fuzz_kw_cb, &out->log, 4096, limit);
    int rc = kwatch_list(&w, list, list_len);
    FUZZ_REQUIRE(fuzz_kw_rc_ok(rc), "kwatch_list returned %d", rc);
    if (rc) {
        FUZZ_REQUIRE(w.err[0], "a refused list (%d) says nothing", rc);
        FUZZ_REQUIRE(kwatch_count(&w) == 0 && !kwatch_resource_version(&w)[0],
                     "a refused list changed the store");
        FUZZ_REQUIRE(w.next == KWATCH_NEXT_LIST, "a refused list does not list again");
    } else {
        FUZZ_REQUIRE(kwatch_resource_version(&w)[0], "a list left no resourceVersion");
        FUZZ_REQUIRE(w.next == KWATCH_NEXT_WATCH, "a good list does not watch next");
    }
    fuzz_kw_check_store(&w, limit);
    if (kwatch_watch_status(&w, 200) == KWATCH_NEXT_READ) {
        for (size_t off = 0; off < watch_len; off += chunk) {
            size_t n = watch_len - off < chunk ? watch_len - off : chunk;
            rc = kwatch_feed(&w, watch + off, n);
            FUZZ_REQUIRE(fuzz_kw_rc_ok(rc), "kwatch_feed returned %d", rc);
            if (rc) {
                FUZZ_REQUIRE(w.err[0], "a failed feed (%d) says nothing", rc);
                if (!out->first_error)
                    out->first_error = rc;
            }
            fuzz_kw_check_store(&w, limit);
        }
        out->next = kwatch_end(&w, true);
    }
    snprintf(out->rv, sizeof(out->rv), "%s", kwatch_resource_version(&w));
    out->store = fuzz_kw_store_text(&w);
    FUZZ_REQUIRE(buf_append(&out->log.text, "", 1) == 0, "out of memory");
    kwatch_cleanup(&w);
}

int fuzz_kwatch_one(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    size_t chunk = (size_t)(data[0] % 64) + 1;
    size_t limit = (size_t)(data[1] % 16) + 1;
    const char *body = (const char *)data + 2;
    size_t len = size - 2;
    const char *nul = memchr(body, '\0', len);
    size_t list_len = nul ? (size_t)(nul - body) : len;
    const char *watch = nul ? nul + 1 : body + len;
    size_t watch_len = nul ? len - list_len - 1 : 0;
    struct fuzz_kw_run whole, chunked;

    fuzz_kw_one_run(body, list_len, watch, watch_len, watch_len ? watch_len : 1, limit, &whole);
    fuzz_kw_one_run(body, list_len, watch, watch_len, chunk, limit, &chunked);
    FUZZ_REQUIRE(strcmp(whole.log.text.data, chunked.log.text.data) == 0,
                 "chunks of %zu change the events:\n%s---\n%s", chunk, whole.log.text.data,
                 chunked.log.text.data);
    FUZZ_REQUIRE(strcmp(whole.rv, chunked.rv) == 0, "chunks change the resourceVersion");
    FUZZ_REQUIRE(strcmp(whole.store, chunked.store) == 0, "chunks change the store");
    FUZZ_REQUIRE(whole.next == chunked.next, "chunks change the next step (%d, %d)", whole.next,
                 chunked.next);
    FUZZ_REQUIRE(whole.first_error == chunked.first_error, "chunks change the error (%d, %d)",
                 whole.first_error, chunked.first_error);
    buf_cleanup(&whole.log.text);
    buf_cleanup(&chunked.log.text);
    free(whole.store);
    free(chunked.store);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_kwatch_one(data, size); }
#endif
