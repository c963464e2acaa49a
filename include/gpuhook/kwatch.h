/*
 * The list-and-watch state machine of a Kubernetes collection, as client-go's
 * reflector runs it, without any transport: the caller does the HTTP requests
 * and hands the bytes over. kwatch decodes a watch body (one WatchEvent JSON
 * object per line, in chunks of any size), keeps the objects it has seen (the
 * reflector's store, keyed by namespace/name), tracks the last resourceVersion
 * (bookmarks included), calls back on every ADDED, MODIFIED and DELETED, and
 * says what to do next: keep reading, watch again from the last version, or
 * list again, with the backoff to wait first. A List answer resyncs the store
 * and reports the objects whose DELETED event was missed; of two items with one
 * namespace/name the later wins, as in client-go's store.Replace.
 *
 * It does not open connections, parse HTTP or choose selectors; it is not
 * thread-safe (one reflector, one thread).
 */
#ifndef GPUHOOK_KWATCH_H
#define GPUHOOK_KWATCH_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

#include "gpuhook/buf.h"

/* etcd's object limit is 1.5 MiB; a line past 4 MiB is not an event, it is a fault. */
#define KWATCH_MAX_LINE_DEFAULT (4u * 1024 * 1024)
#define KWATCH_MAX_OBJECTS_DEFAULT 10000
/* resourceVersions are opaque strings; etcd's are decimal int64s. */
#define KWATCH_RV_MAX 64
#define KWATCH_ERR_MAX 256

/* client-go's reflector: 800 ms doubling to 30 s. */
#define KWATCH_BACKOFF_INITIAL_MS 800
#define KWATCH_BACKOFF_MAX_MS 30000

enum kwatch_event {
    KWATCH_ADDED,
    KWATCH_MODIFIED,
    KWATCH_DELETED,
};

enum kwatch_next {
    /* The stream is healthy: feed more bytes. */
    KWATCH_NEXT_READ,
    /* Open a new watch from kwatch_resource_version() after kwatch_backoff_ms(). */
    KWATCH_NEXT_WATCH,
    /* List again (without a resourceVersion: a consistent read) after the backoff. */
    KWATCH_NEXT_LIST,
};

/*
 * Called for every change to the store. object is borrowed: it lives until the
 * callback returns (for DELETED it is the last state seen, or the DELETED
 * event's object). A non-zero return stops the current feed or list, which
 * then returns that code and asks for a re-list.
 */
typedef int (*kwatch_event_cb)(void *ud, enum kwatch_event ev, const cJSON *object);

struct kwatch_item {
    char *key; /* "namespace/name" */
    char rv[KWATCH_RV_MAX];
    cJSON *object;
};

struct kwatch {
    kwatch_event_cb cb;
    void *ud;
    size_t max_line;
    size_t max_objects;
    struct buf line;
    bool skipping; /* the stream is abandoned: ignore the rest of it */
    enum kwatch_next next;
    char rv[KWATCH_RV_MAX];
    unsigned failures; /* consecutive failures, for the backoff */
    struct kwatch_item *items;
    size_t count, cap;
    unsigned long long events; /* ADDED/MODIFIED/DELETED seen on watches */
    unsigned long long bookmarks;
    char err[KWATCH_ERR_MAX]; /* the last error, in words; "" when none */
};

/*
 * Initializes w for a collection; max_line and max_objects of 0 take the
 * defaults. The first thing to do is a list (w->next is KWATCH_NEXT_LIST).
 */
void kwatch_init(struct kwatch *w, kwatch_event_cb cb, void *ud, size_t max_line,
                 size_t max_objects);
/* Frees the store and the line buffer. */
void kwatch_cleanup(struct kwatch *w);

/*
 * Takes a List answer (the body of a 200): replaces the store by its items,
 * calls back ADDED for new keys, MODIFIED for a changed resourceVersion and
 * DELETED for keys the list no longer holds, and sets the resourceVersion to
 * the list's. Then the next step is a watch, at once. Returns 0, or
 * GHE_INVAL (not a List; w->err says why; the store is unchanged), GHE_TOOBIG
 * or GHE_NOMEM, and the next step is a list after the backoff.
 */
int kwatch_list(struct kwatch *w, const char *body, size_t len);
/* The list request failed (transport error: status 0, or an HTTP status): list again later. */
void kwatch_list_failed(struct kwatch *w, int http_status);

/*
 * The HTTP status of a watch request, before its body. 200: read the body; 410:
 * list again; 429, 5xx and 0 (no connection): watch again after the backoff;
 * any other: list again after the backoff (client-go returns from ListAndWatch).
 * Returns the next step.
 */
enum kwatch_next kwatch_watch_status(struct kwatch *w, int http_status);

/*
 * Feeds n bytes of a watch body. Whole lines are decoded and applied at once;
 * a partial line waits for the rest. Returns 0 while the stream is usable, or
 * a negative code when it is not (a line over max_line, an undecodable line,
 * an ERROR event): w->next then says what to do and the rest of this stream is
 * ignored. An ERROR event with code 410 (or reason Expired/Gone) asks for a
 * list; other ERROR events ask for a list after the backoff, 429 for a watch.
 */
int kwatch_feed(struct kwatch *w, const char *data, size_t n);

/*
 * The watch body ended. clean is true when the stream ended normally (the
 * last chunk arrived); false for a dropped connection or a read timeout. A
 * clean end with no partial line watches again at once; otherwise a partial
 * line is dropped (it was never applied, so resuming from the last version
 * loses nothing) and the watch restarts after the backoff. Returns the next step.
 */
enum kwatch_next kwatch_end(struct kwatch *w, bool clean);

/* The resourceVersion to watch from: the last one seen ("" before the first list). */
const char *kwatch_resource_version(const struct kwatch *w);
/* How long to wait before the next step, jittered; 0 when it may go at once. */
long kwatch_backoff_ms(const struct kwatch *w);

/* The store: the objects as last seen, sorted by "namespace/name" (borrowed). */
size_t kwatch_count(const struct kwatch *w);
const cJSON *kwatch_object_at(const struct kwatch *w, size_t i);
/* The stored object with this namespace and name, or NULL. */
const cJSON *kwatch_get(const struct kwatch *w, const char *ns, const char *name);

#endif
