/*
 * Unit tests for kwatch.c: list and watch as client-go's reflector does it,
 * fed with a session recorded from the stand-in API (tests/kubeapi/record_watch.py
 * wrote tests/fixtures/kubeapi/) and with hostile streams made by hand.
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
#include "gpuhook/kwatch.h"

struct rec {
    char log[8192];
    int fail_on; /* fail the nth callback (1-based), 0 never */
    int calls;
};

static int record(void *ud, enum kwatch_event ev, const cJSON *obj) {
    struct rec *r = ud;
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(md, "name");
    static const char tag[] = {'A', 'M', 'D'};
    size_t len = strlen(r->log);
    snprintf(r->log + len, sizeof(r->log) - len, "%c:%s;", tag[ev],
             cJSON_IsString(name) ? name->valuestring : "?");
    r->calls++;
    return r->calls == r->fail_on ? GHE_NOMEM : 0;
}

static char *fixture(const char *name, size_t *len) {
    const char *dir = getenv("GPUHOOK_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof(path), "%s/tests/fixtures/kubeapi/%s", dir ? dir : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (set GPUHOOK_SOURCE_DIR)", path);
    static char data[1 << 20];
    size_t n = fread(data, 1, sizeof(data) - 1, f);
    fclose(f);
    data[n] = '\0';
    *len = n;
    char *copy = malloc(n + 1);
    memcpy(copy, data, n + 1);
    return copy;
}

/* The store's run names joined in sorted order, and the phase of one of them. */
static const char *succeeded_of(const struct kwatch *w, const char *name) {
    const cJSON *o = kwatch_get(w, "tekton-pipelines", name);
    const cJSON *conds = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(o, "status"), "conditions");
    const cJSON *c;
    cJSON_ArrayForEach(c, conds) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(c, "status");
        if (cJSON_IsString(st))
            return st->valuestring;
    }
    return "none";
}

static void start_from_list(struct kwatch *w, struct rec *r) {
    size_t len;
    char *list = fixture("list.json", &len);
    kwatch_init(w, record, r, 0, 0);
    assert_int_equal(w->next, KWATCH_NEXT_LIST);
    assert_int_equal(kwatch_list(w, list, len), 0);
    free(list);
    assert_int_equal(w->next, KWATCH_NEXT_WATCH);
    assert_string_equal(kwatch_resource_version(w), "7");
    assert_int_equal(kwatch_count(w), 3);
    assert_string_equal(r->log, "A:gpu-a-original-0000000001;A:gpu-b-original-0000000002;"
                                "A:gpu-c-lite-0000000003;");
    r->log[0] = '\0';
    assert_int_equal(kwatch_watch_status(w, 200), KWATCH_NEXT_READ);
}

static const char *const RECORDED_EVENTS =
    "A:gpu-d-lite-0000000004;M:gpu-d-lite-0000000004;M:gpu-a-original-0000000001;"
    "D:gpu-c-lite-0000000003;";

static void check_after_watch(struct kwatch *w, struct rec *r) {
    assert_string_equal(r->log, RECORDED_EVENTS);
    /* The bookmark moved the version past the Lease write the selector hid. */
    assert_string_equal(kwatch_resource_version(w), "13");
    assert_int_equal(w->bookmarks, 1);
    assert_int_equal(kwatch_count(w), 3);
    assert_null(kwatch_get(w, "tekton-pipelines", "gpu-c-lite-0000000003"));
    assert_non_null(kwatch_get(w, "tekton-pipelines", "gpu-d-lite-0000000004"));
    assert_string_equal(succeeded_of(w, "gpu-a-original-0000000001"), "True");
    assert_int_equal(kwatch_end(w, true), KWATCH_NEXT_WATCH);
    assert_int_equal(kwatch_backoff_ms(w), 0);
}

static void test_kwatch_recorded_session_whole(void **state) {
    (void)state;
    struct kwatch w;
    struct rec r = {0};
    start_from_list(&w, &r);
    size_t len;
    char *body = fixture("watch.ndjson", &len);
    assert_int_equal(kwatch_feed(&w, body, len), 0);
    check_after_watch(&w, &r);
    free(body);
    kwatch_cleanup(&w);
}

/* Every way of cutting the stream in two, and one byte at a time, decodes the same events. */
static void test_kwatch_recorded_session_split_at_every_byte(void **state) {
    (void)state;
    size_t len;
    char *body = fixture("watch.ndjson", &len);
    for (size_t cut = 0; cut <= len; cut++) {
        struct kwatch w;
        struct rec r = {0};
        start_from_list(&w, &r);
        assert_int_equal(kwatch_feed(&w, body, cut), 0);
        assert_int_equal(kwatch_feed(&w, body + cut, len - cut), 0);
        check_after_watch(&w, &r);
        kwatch_cleanup(&w);
    }
    struct kwatch w;
    struct rec r = {0};
    start_from_list(&w, &r);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(kwatch_feed(&w, body + i, 1), 0);
    check_after_watch(&w, &r);
    kwatch_cleanup(&w);
    free(body);
}

static void test_kwatch_expired_error_event_asks_for_a_list(void **state) {
    (void)state;
    struct kwatch w;
    struct rec r = {0};
    start_from_list(&w, &r);
    size_t len;
    char *gone = fixture("watch-410.ndjson", &len);
    assert_int_equal(kwatch_feed(&w, gone, len), GHE_NOTFOUND);
    assert_int_equal(w.next, KWATCH_NEXT_LIST);
    assert_non_null(strstr(w.err, "410"));
    /* Not our fault: no backoff; the version is kept for the logs, the list replaces it. */
    assert_int_equal(kwatch_backoff_ms(&w), 0);
    assert_string_equal(kwatch_resource_version(&w), "7");
    /* What follows on that stream is ignored. */
    const char *more = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\","
                       "\"namespace\":\"tekton-pipelines\",\"resourceVersion\":\"99\"}}}\n";
    assert_int_equal(kwatch_feed(&w, more, strlen(more)), 0);
    assert_string_equal(r.log, "");
    assert_int_equal(kwatch_end(&w, true), KWATCH_NEXT_LIST);
    free(gone);
    kwatch_cleanup(&w);
}

/* The list after a 410 reports what the missed events would have: a delete, two adds, a change. */
static void test_kwatch_relist_reports_missed_deletes(void **state) {
    (void)state;
    struct kwatch w;
    struct rec r = {0};
    start_from_list(&w, &r);
    size_t len;
    char *relist = fixture("relist.json", &len);
    assert_int_equal(kwatch_list(&w, relist, len), 0);
    assert_string_equal(r.log, "D:gpu-c-lite-0000000003;M:gpu-a-original-0000000001;"
                               "A:gpu-d-lite-0000000004;A:gpu-e-lite-0000000005;");
    assert_string_equal(kwatch_resource_version(&w), "15");
    assert_int_equal(kwatch_count(&w), 4);
    assert_int_equal(w.next, KWATCH_NEXT_WATCH);
    /* The same list again changes nothing. */
    r.log[0] = '\0';
    assert_int_equal(kwatch_list(&w, relist, len), 0);
    assert_string_equal(r.log, "");
    free(relist);
    kwatch_cleanup(&w);
}

static void test_kwatch_bad_list_changes_nothing(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{\"items\":[]}",
        "{\"metadata\":{\"resourceVersion\":\"5\"}}",
        "{\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[{\"metadata\":{\"name\":\"a\"}}]}",
        "{\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[{\"metadata\":"
        "{\"resourceVersion\":\"3\"}}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct kwatch w;
        struct rec r = {0};
        start_from_list(&w, &r);
        assert_int_equal(kwatch_list(&w, bad[i], strlen(bad[i])), GHE_INVAL);
        assert_int_equal(w.next, KWATCH_NEXT_LIST);
        assert_true(kwatch_backoff_ms(&w) >= KWATCH_BACKOFF_INITIAL_MS / 2);
        assert_true(w.err[0] != '\0');
        assert_int_equal(kwatch_count(&w), 3);
        assert_string_equal(kwatch_resource_version(&w), "7");
        assert_string_equal(r.log, "");
        kwatch_cleanup(&w);
    }
}

/* Two items with one name (a broken answer): the later wins, as client-go's store.Replace. */
static void test_kwatch_list_repeated_name_keeps_the_last(void **state) {
    (void)state;
    struct kwatch w;
    struct rec r = {0};
    kwatch_init(&w, record, &r, 0, 0);
    const char *list = "{\"metadata\":{\"resourceVersion\":\"9\"},\"items\":["
                       "{\"metadata\":{\"name\":\"b\",\"resourceVersion\":\"1\"}},"
                       "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"2\"}},"
                       "{\"metadata\":{\"name\":\"b\",\"resourceVersion\":\"3\"}}]}";
    assert_int_equal(kwatch_list(&w, list, strlen(list)), 0);
    assert_int_equal(kwatch_count(&w), 2);
    assert_string_equal(r.log, "A:a;A:b;");
    const cJSON *b = kwatch_get(&w, "", "b");
    assert_non_null(b);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(
                            cJSON_GetObjectItemCaseSensitive(b, "metadata"), "resourceVersion")
                            ->valuestring,
                        "3");
    kwatch_cleanup(&w);
}

/* A watch that would grow the store past its limit asks for a list (ASan: the key is freed). */
static void test_kwatch_watch_past_the_limit_asks_for_a_list(void **state) {
    (void)state;
    struct kwatch w;
    struct rec r = {0};
    kwatch_init(&w, record, &r, 0, 1);
    const char *list = "{\"metadata\":{\"resourceVersion\":\"5\"},\"items\":["
                       "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"1\"}}]}";
    const char *ev = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"b\","
                     "\"resourceVersion\":\"6\"}}}\n";
    assert_int_equal(kwatch_list(&w, list, strlen(list)), 0);
    assert_int_equal(kwatch_watch_status(&w, 200), KWATCH_NEXT_READ);
    assert_int_equal(kwatch_feed(&w, ev, strlen(ev)), GHE_TOOBIG);
    assert_int_equal(w.next, KWATCH_NEXT_LIST);
    assert_int_equal(kwatch_count(&w), 1);
    assert_string_equal(kwatch_resource_version(&w), "5");
    assert_string_equal(r.log, "A:a;");
    kwatch_cleanup(&w);
}

/* A list of n runs as text: names r00000.. in reverse order, each at version base + i. */
static char *big_list(size_t n, size_t skip_every, int base) {
    size_t cap = n * 96 + 128, len = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    len += (size_t)snprintf(s + len, cap - len,
                            "{\"metadata\":{\"resourceVersion\":\"%d\"},\"items\":[", base);
    bool first = true;
    for (size_t k = n; k-- > 0;) {
        if (skip_every && k % skip_every == 0)
            continue;
        len += (size_t)snprintf(s + len, cap - len,
                                "%s{\"metadata\":{\"name\":\"r%05zu\",\"namespace\":\"ns\","
                                "\"resourceVersion\":\"%d\"}}",
                                first ? "" : ",", k, k % 2 ? base : 1);
        first = false;
    }
    snprintf(s + len, cap - len, "]}");
    return s;
}

struct counts {
    size_t added, modified, deleted;
};

static int count_events(void *ud, enum kwatch_event ev, const cJSON *obj) {
    struct counts *c = ud;
    (void)obj;
    if (ev == KWATCH_ADDED)
        c->added++;
    else if (ev == KWATCH_MODIFIED)
        c->modified++;
    else
        c->deleted++;
    return 0;
}

/* The store's limit of runs, re-listed after missed events: the resync is exact. */
static void test_kwatch_relist_of_ten_thousand_runs_is_exact(void **state) {
    (void)state;
    struct kwatch w;
    struct counts c = {0, 0, 0};
    kwatch_init(&w, count_events, &c, 0, 0);
    char *first = big_list(KWATCH_MAX_OBJECTS_DEFAULT, 0, 1);
    assert_int_equal(kwatch_list(&w, first, strlen(first)), 0);
    assert_int_equal(c.added, KWATCH_MAX_OBJECTS_DEFAULT);
    /* Every tenth run gone, the odd ones changed (version 2). */
    char *second = big_list(KWATCH_MAX_OBJECTS_DEFAULT, 10, 2);
    memset(&c, 0, sizeof(c));
    assert_int_equal(kwatch_list(&w, second, strlen(second)), 0);
    assert_int_equal(c.deleted, KWATCH_MAX_OBJECTS_DEFAULT / 10);
    assert_int_equal(c.modified, KWATCH_MAX_OBJECTS_DEFAULT / 2);
    assert_int_equal(c.added, 0);
    assert_int_equal(kwatch_count(&w),
                     KWATCH_MAX_OBJECTS_DEFAULT - KWATCH_MAX_OBJECTS_DEFAULT / 10);
    assert_null(kwatch_get(&w, "ns", "r00010"));
    assert_non_null(kwatch_get(&w, "ns", "r09999"));
    assert_null(kwatch_get(&w, "other", "r09999"));
    /* Sorted, so the watch's inserts and deletes keep lookups right. */
    const char *ev = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"r00010\","
                     "\"namespace\":\"ns\",\"resourceVersion\":\"3\"}}}\n"
                     "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"r00011\","
                     "\"namespace\":\"ns\",\"resourceVersion\":\"4\"}}}\n";
    assert_int_equal(kwatch_watch_status(&w, 200), KWATCH_NEXT_READ);
    assert_int_equal(kwatch_feed(&w, ev, strlen(ev)), 0);
    assert_non_null(kwatch_get(&w, "ns", "r00010"));
    assert_null(kwatch_get(&w, "ns", "r00011"));
    for (size_t i = 1; i < kwatch_count(&w); i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(kwatch_object_at(&w, i - 1), "metadata");
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(kwatch_object_at(&w, i), "metadata");
        assert_true(strcmp(cJSON_GetObjectItemCaseSensitive(a, "name")->valuestring,
                           cJSON_GetObjectItemCaseSensitive(b, "name")->valuestring) < 0);
    }
    free(first);
    free(second);
    kwatch_cleanup(&w);
}

static void test_kwatch_list_over_object_limit_is_refused(void **state) {
    (void)state;
    struct kwatch w;
    struct rec r = {0};
    kwatch_init(&w, record, &r, 0, 2);
    const char *list = "{\"metadata\":{\"resourceVersion\":\"5\"},\"items\":["
                       "{\"metadata\":{\"name\":\"a\",\"resourceVersion\":\"1\"}},"
                       "{\"metadata\":{\"name\":\"b\",\"resourceVersion\":\"2\"}},"
                       "{\"metadata\":{\"name\":\"c\",\"resourceVersion\":\"3\"}}]}";
    assert_int_equal(kwatch_list(&w, list, strlen(list)), GHE_TOOBIG);
    assert_int_equal(kwatch_count(&w), 0);
    assert_string_equal(r.log, "");
    kwatch_cleanup(&w);
}

/* A stream cut inside an event applies what came whole and resumes from its version. */
static void test_kwatch_truncated_line_rewatches_from_last_whole_event(void **state) {
    (void)state;
    struct kwatch w;
    struct rec r = {0};
    start_from_list(&w, &r);
    size_t len;
    char *body = fixture("watch.ndjson", &len);
    const char *second = (const char *)memchr(body, '\n', len) + 1;
    size_t cut = (size_t)(second - body) + 40;
    assert_int_equal(kwatch_feed(&w, body, cut), 0);
    assert_string_equal(r.log, "A:gpu-d-lite-0000000004;");
    const cJSON *d = kwatch_get(&w, "tekton-pipelines", "gpu-d-lite-0000000004");
    const char *rv = cJSON_GetObjectItemCaseSensitive(
                         cJSON_GetObjectItemCaseSensitive(d, "metadata"), "resourceVersion")
                         ->valuestring;
    assert_string_equal(kwatch_resource_version(&w), rv);
    assert_int_equal(kwatch_end(&w, false), KWATCH_NEXT_WATCH);
    assert_true(kwatch_backoff_ms(&w) > 0);
    assert_non_null(strstr(w.err, "inside an event"));
    /* A clean end that still holds half a line is a truncation too. */
    assert_int_equal(kwatch_watch_status(&w, 200), KWATCH_NEXT_READ);
    assert_int_equal(kwatch_feed(&w, second, 10), 0);
    assert_int_equal(kwatch_end(&w, true), KWATCH_NEXT_WATCH);
    assert_true(kwatch_backoff_ms(&w) > 0);
    free(body);
    kwatch_cleanup(&w);
}

static void test_kwatch_garbage_lines_abandon_the_stream(void **state) {
    (void)state;
    static const char *const garbage[] = {
        "garbage\n",
        "{\"type\":\"ADDED\"}\n",
        "{\"type\":\"ADDED\",\"object\":[]}\n",
        "{\"type\":\"RENAMED\",\"object\":{\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"9\"}}"
        "}\n",
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\"}}}\n",
        "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{}}}\n",
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"x\",\"resourceVersion\":\"9\"}}"
        "\n",
        "\x01\x02\xff\n",
    };
    for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
        struct kwatch w;
        struct rec r = {0};
        start_from_list(&w, &r);
        int rc = kwatch_feed(&w, garbage[i], strlen(garbage[i]));
        assert_int_equal(rc, GHE_INVAL);
        assert_int_equal(w.next, KWATCH_NEXT_WATCH);
        assert_string_equal(kwatch_resource_version(&w), "7");
        assert_string_equal(r.log, "");
        assert_int_equal(kwatch_end(&w, true), KWATCH_NEXT_WATCH);
        assert_true(kwatch_backoff_ms(&w) > 0);
        /* The next stream starts clean. */
        assert_int_equal(kwatch_watch_status(&w, 200), KWATCH_NEXT_READ);
        const char *ok = "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":"
                         "{\"resourceVersion\":\"8\"}}}\n";
        assert_int_equal(kwatch_feed(&w, ok, strlen(ok)), 0);
        assert_string_equal(kwatch_resource_version(&w), "8");
        assert_int_equal(kwatch_backoff_ms(&w), 0);
        kwatch_cleanup(&w);
    }
}

/* A line over the limit is refused as soon as it passes the limit, without holding it. */
static void test_kwatch_huge_line_is_an_error_not_an_allocation(void **state) {
    (void)state;
    struct kwatch w;
    struct rec r = {0};
    kwatch_init(&w, record, &r, 4096, 0);
    assert_int_equal(kwatch_watch_status(&w, 200), KWATCH_NEXT_READ);
    static char chunk[1000];
    memset(chunk, 'x', sizeof(chunk));
    int rc = 0;
    size_t fed = 0;
    while (rc == 0 && fed < 64 * 1024 * 1024) {
        rc = kwatch_feed(&w, chunk, sizeof(chunk));
        fed += sizeof(chunk);
        assert_true(w.line.cap <= 4096 + 1);
    }
    assert_int_equal(rc, GHE_TOOBIG);
    assert_true(fed <= 5000);
    assert_int_equal(w.next, KWATCH_NEXT_WATCH);
    assert_non_null(strstr(w.err, "over 4096"));
    /* The rest of that line, and its end, are ignored. */
    assert_int_equal(kwatch_feed(&w, "yyy\n", 4), 0);
    assert_int_equal(kwatch_end(&w, true), KWATCH_NEXT_WATCH);
    kwatch_cleanup(&w);

    /* Exactly the limit is fine. */
    kwatch_init(&w, record, &r, 96, 0);
    kwatch_watch_status(&w, 200);
    const char *bm =
        "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"12\"}}}";
    char line[128];
    size_t n = strlen(bm);
    assert_true(n < 96);
    memcpy(line, bm, n);
    memset(line + n, ' ', 96 - n);
    line[96] = '\n';
    assert_int_equal(kwatch_feed(&w, line, 97), 0);
    assert_string_equal(kwatch_resource_version(&w), "12");
    kwatch_cleanup(&w);
}

static void test_kwatch_watch_status_table(void **state) {
    (void)state;
    static const struct {
        int status;
        enum kwatch_next next;
        int backoff; /* 1 when a wait is due */
    } cases[] = {
        {200, KWATCH_NEXT_READ, 0},  {410, KWATCH_NEXT_LIST, 0},  {0, KWATCH_NEXT_WATCH, 1},
        {429, KWATCH_NEXT_WATCH, 1}, {500, KWATCH_NEXT_WATCH, 1}, {503, KWATCH_NEXT_WATCH, 1},
        {401, KWATCH_NEXT_LIST, 1},  {403, KWATCH_NEXT_LIST, 1},  {404, KWATCH_NEXT_LIST, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct kwatch w;
        kwatch_init(&w, NULL, NULL, 0, 0);
        assert_int_equal(kwatch_watch_status(&w, cases[i].status), cases[i].next);
        assert_int_equal(kwatch_backoff_ms(&w) > 0, cases[i].backoff);
        kwatch_cleanup(&w);
    }
}

static void test_kwatch_error_events_table(void **state) {
    (void)state;
    static const struct {
        const char *status;
        int rc;
        enum kwatch_next next;
    } cases[] = {
        {"{\"code\":410,\"reason\":\"Expired\"}", GHE_NOTFOUND, KWATCH_NEXT_LIST},
        {"{\"code\":410,\"reason\":\"Gone\"}", GHE_NOTFOUND, KWATCH_NEXT_LIST},
        {"{\"reason\":\"Expired\"}", GHE_NOTFOUND, KWATCH_NEXT_LIST},
        {"{\"code\":429,\"reason\":\"TooManyRequests\"}", GHE_UNAVAILABLE, KWATCH_NEXT_WATCH},
        {"{\"code\":504,\"reason\":\"Timeout\"}", GHE_UNAVAILABLE, KWATCH_NEXT_LIST},
        {"{\"code\":500,\"reason\":\"InternalError\"}", GHE_UNAVAILABLE, KWATCH_NEXT_LIST},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct kwatch w;
        kwatch_init(&w, NULL, NULL, 0, 0);
        kwatch_watch_status(&w, 200);
        char line[256];
        snprintf(line, sizeof(line), "{\"type\":\"ERROR\",\"object\":%s}\n", cases[i].status);
        assert_int_equal(kwatch_feed(&w, line, strlen(line)), cases[i].rc);
        assert_int_equal(w.next, cases[i].next);
        kwatch_cleanup(&w);
    }
}

static void test_kwatch_backoff_doubles_to_a_cap(void **state) {
    (void)state;
    struct kwatch w;
    kwatch_init(&w, NULL, NULL, 0, 0);
    long prev_max = 0;
    for (int i = 1; i <= 12; i++) {
        kwatch_watch_status(&w, 503);
        long want = KWATCH_BACKOFF_INITIAL_MS;
        for (int k = 1; k < i && want < KWATCH_BACKOFF_MAX_MS; k++)
            want *= 2;
        if (want > KWATCH_BACKOFF_MAX_MS)
            want = KWATCH_BACKOFF_MAX_MS;
        long got = kwatch_backoff_ms(&w);
        assert_true(got >= want / 2 && got <= want);
        assert_true(want >= prev_max);
        prev_max = want;
    }
    assert_int_equal(prev_max, KWATCH_BACKOFF_MAX_MS);
    kwatch_cleanup(&w);
}

/* A callback that fails stops the feed and asks for a list, since its state is unknown. */
static void test_kwatch_callback_failure_asks_for_a_list(void **state) {
    (void)state;
    struct kwatch w;
    struct rec r = {0};
    start_from_list(&w, &r);
    r.fail_on = r.calls + 2;
    size_t len;
    char *body = fixture("watch.ndjson", &len);
    assert_int_equal(kwatch_feed(&w, body, len), GHE_NOMEM);
    assert_int_equal(w.next, KWATCH_NEXT_LIST);
    assert_string_equal(r.log, "A:gpu-d-lite-0000000004;M:gpu-d-lite-0000000004;");
    free(body);
    kwatch_cleanup(&w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kwatch_recorded_session_whole),
        cmocka_unit_test(test_kwatch_recorded_session_split_at_every_byte),
        cmocka_unit_test(test_kwatch_expired_error_event_asks_for_a_list),
        cmocka_unit_test(test_kwatch_relist_reports_missed_deletes),
        cmocka_unit_test(test_kwatch_bad_list_changes_nothing),
        cmocka_unit_test(test_kwatch_list_over_object_limit_is_refused),
        cmocka_unit_test(test_kwatch_list_repeated_name_keeps_the_last),
        cmocka_unit_test(test_kwatch_watch_past_the_limit_asks_for_a_list),
        cmocka_unit_test(test_kwatch_relist_of_ten_thousand_runs_is_exact),
        cmocka_unit_test(test_kwatch_truncated_line_rewatches_from_last_whole_event),
        cmocka_unit_test(test_kwatch_garbage_lines_abandon_the_stream),
        cmocka_unit_test(test_kwatch_huge_line_is_an_error_not_an_allocation),
        cmocka_unit_test(test_kwatch_watch_status_table),
        cmocka_unit_test(test_kwatch_error_events_table),
        cmocka_unit_test(test_kwatch_backoff_doubles_to_a_cap),
        cmocka_unit_test(test_kwatch_callback_failure_asks_for_a_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
