/*
 * Fuzz target 2: delivery parsing and normalization.
 *
 * The first byte picks the content type (JSON, the form's payload= field with
 * its URL-decoding, JSON with a charset, or a Content-Type taken from the
 * input's first line) and the X-GitHub-Event name; the rest is the body, in a
 * buffer of exactly its size so that ASan sees any read past its end.
 *
 * Each body is parsed three ways, which must agree: whole
 * (event_parse_delivery), pruned to what the event reads, and pruned with
 * extra binding paths (event_parse_delivery_paths). A JSON body accepted by
 * the pruning parser must also be accepted by cJSON (event_json_parse) and
 * give the same tree, and kept paths must hold what the whole tree holds.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gpuhook/error.h"
#include "gpuhook/event.h"
#include "gpuhook/jsonprune.h"

static const char *const fuzz_event_names[] = {"push", "pull_request", "ping", "issue_comment"};

static void fuzz_event_check(const struct event *ev, const char *name) {
    FUZZ_REQUIRE(cJSON_IsObject(ev->body), "a parsed delivery has an object body");
    FUZZ_REQUIRE(ev->event && strcmp(ev->event, name) == 0, "event name lost");
    if (strcmp(name, "push") == 0) {
        FUZZ_REQUIRE(ev->revision && ev->repo_url, "a push needs after and clone_url");
        FUZZ_REQUIRE(!ev->branch || !ev->tag, "a ref is a branch or a tag, not both");
    }
    if (strcmp(name, "pull_request") == 0) {
        FUZZ_REQUIRE(ev->revision && ev->repo_url, "a pull request needs head.sha and clone_url");
        FUZZ_REQUIRE(!ev->pr_number || strspn(ev->pr_number, "0123456789") == strlen(ev->pr_number),
                     "pr_number \"%s\" is not decimal", ev->pr_number);
    }
    for (size_t i = 0; i < ev->label_count; i++)
        FUZZ_REQUIRE(ev->labels[i] != NULL, "label %zu is NULL", i);
    for (size_t i = 0; i < ev->changed_count; i++) {
        FUZZ_REQUIRE(ev->changed_paths[i] != NULL, "path %zu is NULL", i);
        for (size_t j = 0; j < i; j++)
            FUZZ_REQUIRE(strcmp(ev->changed_paths[i], ev->changed_paths[j]) != 0,
                         "changed path \"%s\" listed twice", ev->changed_paths[i]);
    }
}

static bool fuzz_event_same_str(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void fuzz_event_same_list(char **a, size_t na, char **b, size_t nb, const char *what) {
    FUZZ_REQUIRE(na == nb, "%s: %zu and %zu entries", what, na, nb);
    for (size_t i = 0; i < na; i++)
        FUZZ_REQUIRE(strcmp(a[i], b[i]) == 0, "%s[%zu] differs", what, i);
}

/* Two parses of one delivery must give the same event. */
static void fuzz_event_same(const struct event *a, const struct event *b, const char *how) {
    const struct {
        const char *name, *x, *y;
    } f[] = {
        {"event", a->event, b->event},
        {"action", a->action, b->action},
        {"repo_full_name", a->repo_full_name, b->repo_full_name},
        {"repo_url", a->repo_url, b->repo_url},
        {"ref", a->ref, b->ref},
        {"branch", a->branch, b->branch},
        {"tag", a->tag, b->tag},
        {"revision", a->revision, b->revision},
        {"base_branch", a->base_branch, b->base_branch},
        {"pr_number", a->pr_number, b->pr_number},
        {"message", a->message, b->message},
        {"sender", a->sender, b->sender},
        {"added_label", a->added_label, b->added_label},
    };
    for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
        FUZZ_REQUIRE(fuzz_event_same_str(f[i].x, f[i].y), "%s: %s differs", how, f[i].name);
    FUZZ_REQUIRE(a->deleted == b->deleted && a->draft == b->draft, "%s: flags differ", how);
    fuzz_event_same_list(a->labels, a->label_count, b->labels, b->label_count, "labels");
    fuzz_event_same_list(a->changed_paths, a->changed_count, b->changed_paths, b->changed_count,
                         "changed_paths");
}

/* Extra paths as bindings would ask for them: $(body.commits.0.id), $(body.pull_request), ... */
#define FUZZ_SEG(k, i)                                                                             \
    { k, i, false }
static const struct jsonprune_seg fuzz_seg_commit_id[] = {FUZZ_SEG("commits", -1), FUZZ_SEG("0", 0),
                                                          FUZZ_SEG("id", -1)};
static const struct jsonprune_seg fuzz_seg_pr[] = {FUZZ_SEG("pull_request", -1)};
static const struct jsonprune_seg fuzz_seg_a1[] = {FUZZ_SEG("a", -1), FUZZ_SEG(NULL, 1)};
static const struct jsonprune_seg fuzz_seg_ids[] = {
    FUZZ_SEG("commits", -1), {NULL, -1, true}, FUZZ_SEG("id", -1)};
static const struct jsonprune_path fuzz_extra[] = {
    {fuzz_seg_commit_id, 3}, {fuzz_seg_pr, 1}, {fuzz_seg_a1, 2}, {fuzz_seg_ids, 3}};
#define FUZZ_EXTRA_CHECKED 3 /* the last has an "any" step: its values are not looked up */

/*
 * Equal trees: same types, keys in the same order, same values. cJSON_Compare
 * looks members up by key, which goes wrong when a key repeats.
 */
static bool fuzz_event_json_equal(const cJSON *a, const cJSON *b) {
    if (!a || !b)
        return a == b;
    if ((a->type & 0xff) != (b->type & 0xff) || !fuzz_event_same_str(a->string, b->string))
        return false;
    if (cJSON_IsString(a))
        return strcmp(a->valuestring, b->valuestring) == 0;
    if (cJSON_IsNumber(a))
        return a->valuedouble == b->valuedouble;
    const cJSON *x = a->child, *y = b->child;
    for (; x && y; x = x->next, y = y->next)
        if (!fuzz_event_json_equal(x, y))
            return false;
    return !x && !y;
}

/* Follows a path the way $(body...) does. */
static const cJSON *fuzz_event_follow(const cJSON *n, const struct jsonprune_path *p) {
    for (size_t i = 0; i < p->n && n; i++) {
        const struct jsonprune_seg *s = &p->segs[i];
        if (cJSON_IsArray(n))
            n = s->index >= 0 ? cJSON_GetArrayItem(n, (int)s->index) : NULL;
        else if (cJSON_IsObject(n) && s->key)
            n = cJSON_GetObjectItemCaseSensitive(n, s->key);
        else
            n = NULL;
    }
    return n;
}

int fuzz_event_one(const uint8_t *data, size_t size) {
    static const struct event_header headers[] = {
        {"X-GitHub-Event", "push"},
        {"User-Agent", "GitHub-Hookshot/fuzz"},
    };
    char ctype_buf[256];
    const char *ctype;
    char err[512];

    if (size < 1)
        return 0;
    unsigned sel = data[0];
    data++;
    size--;
    const char *name = fuzz_event_names[(sel >> 2) & 3];
    switch (sel & 3) {
    case 0:
        ctype = "application/json";
        break;
    case 1:
        ctype = "application/x-www-form-urlencoded";
        break;
    case 2:
        ctype = "application/json; charset=utf-8";
        break;
    default: {
        const uint8_t *nl = memchr(data, '\n', size);
        size_t n = nl ? (size_t)(nl - data) : size;
        if (n >= sizeof(ctype_buf))
            n = sizeof(ctype_buf) - 1;
        memcpy(ctype_buf, data, n);
        ctype_buf[n] = '\0';
        ctype = ctype_buf;
        int kind = event_content_type_parse(ctype);
        FUZZ_REQUIRE(kind >= EVENT_CONTENT_UNSUPPORTED && kind <= EVENT_CONTENT_FORM,
                     "content type kind %d", kind);
        size_t skip = nl ? (size_t)(nl - data) + 1 : size;
        data += skip;
        size -= skip;
    }
    }

    /* The body is parsed in place (the form is URL-decoded), so each parse gets a copy. */
    char *body = malloc(size ? size : 1);
    FUZZ_REQUIRE(body != NULL, "out of memory");
    struct event ev[3];
    int rc[3];
    for (int k = 0; k < 3; k++) {
        if (size)
            memcpy(body, data, size);
        event_init(&ev[k]);
        ev[k].headers = headers;
        ev[k].header_count = sizeof(headers) / sizeof(headers[0]);
        err[0] = 'x';
        err[1] = '\0';
        if (k == 0)
            rc[k] = event_parse_delivery(&ev[k], name, "72d3162e-cc78-11e3-81ab-4c9367dc0958",
                                         "123456", ctype, body, size, err, sizeof(err));
        else
            rc[k] = event_parse_delivery_paths(
                &ev[k], name, "72d3162e-cc78-11e3-81ab-4c9367dc0958", "123456", ctype, body, size,
                k == 1 ? NULL : fuzz_extra, k == 1 ? 0 : sizeof(fuzz_extra) / sizeof(fuzz_extra[0]),
                err, sizeof(err));
        FUZZ_REQUIRE(rc[k] == 0 || rc[k] == GHE_INVAL || rc[k] == GHE_UNSUPPORTED ||
                         rc[k] == GHE_NOMEM,
                     "unexpected code %d", rc[k]);
        if (rc[k] == 0) {
            FUZZ_REQUIRE(err[0] == '\0', "success leaves a message: %s", err);
            fuzz_event_check(&ev[k], name);
        } else {
            FUZZ_REQUIRE(err[0] != '\0', "failure %d without a message", rc[k]);
        }
    }
    FUZZ_REQUIRE(rc[0] == rc[1] && rc[0] == rc[2], "whole %d, pruned %d, with bindings %d", rc[0],
                 rc[1], rc[2]);
    if (rc[0] == 0) {
        fuzz_event_same(&ev[0], &ev[1], "pruned");
        fuzz_event_same(&ev[0], &ev[2], "with bindings");
        FUZZ_REQUIRE(strcmp(event_header_get(&ev[0], "user-agent"), "GitHub-Hookshot/fuzz") == 0,
                     "header lookup ignores case");
        for (size_t i = 0; i < FUZZ_EXTRA_CHECKED; i++) {
            const cJSON *want = fuzz_event_follow(ev[0].body, &fuzz_extra[i]);
            const cJSON *got = fuzz_event_follow(ev[2].body, &fuzz_extra[i]);
            FUZZ_REQUIRE(fuzz_event_json_equal(want, got),
                         "binding path %zu differs from the whole payload", i);
        }
    }

    /* The raw body as /trigger would see it, parsed by cJSON: the reference. */
    memcpy(body, data, size);
    cJSON *obj = NULL;
    int jrc = event_json_parse(body, size, &obj, err, sizeof(err));
    FUZZ_REQUIRE(jrc == 0 || jrc == GHE_INVAL || jrc == GHE_NOMEM, "unexpected code %d", jrc);
    FUZZ_REQUIRE((jrc == 0) == (obj != NULL), "result and code disagree");
    if (rc[0] == 0 && event_content_type_parse(ctype) == EVENT_CONTENT_JSON) {
        FUZZ_REQUIRE(jrc == 0, "the pruning parser accepted what cJSON refuses: %s", err);
        FUZZ_REQUIRE(fuzz_event_json_equal(obj, ev[0].body), "cJSON and the pruning parser "
                                                             "give different trees");
    }
    if (obj) {
        FUZZ_REQUIRE(cJSON_IsObject(obj), "event_json_parse returned a non-object");
        char *printed = cJSON_PrintUnformatted(obj);
        FUZZ_REQUIRE(printed && fuzz_is_json(printed, strlen(printed)),
                     "a parsed body does not print back to JSON");
        free(printed);
        cJSON_Delete(obj);
    }
    for (int k = 0; k < 3; k++) {
        event_cleanup(&ev[k]);
        event_cleanup(&ev[k]); /* cleaning an empty event again is harmless */
    }
    free(body);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fuzz_event_one(data, size); }
#endif
