/*
 * Fuzz target 2: delivery parsing and normalization.
 *
 * The first byte picks the content type (JSON, the form's payload= field with
 * its URL-decoding, JSON with a charset, or a Content-Type taken from the
 * input's first line) and the X-GitHub-Event name; the rest is the body, in a
 * buffer of exactly its size so that ASan sees any read past its end. The
 * body also goes through event_json_parse() on its own.
 */
#include "fuzz.h"

#include <stdlib.h>
#include <string.h>

#include "gpuhook/error.h"
#include "gpuhook/event.h"

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
        FUZZ_REQUIRE(!ev->pr_number || strspn(ev->pr_number, "0123456789") ==
                                           strlen(ev->pr_number),
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

int fuzz_event_one(const uint8_t *data, size_t size) {
    static const struct event_header headers[] = {
        {"X-GitHub-Event", "push"},
        {"User-Agent", "GitHub-Hookshot/fuzz"},
    };
    char ctype_buf[256];
    const char *ctype;
    char err[512];
    struct event ev;

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

    /* The body is parsed in place (the form is URL-decoded), so it gets its own copy. */
    char *body = malloc(size ? size : 1);
    if (!body)
        return 0;
    if (size)
        memcpy(body, data, size);

    event_init(&ev);
    ev.headers = headers;
    ev.header_count = sizeof(headers) / sizeof(headers[0]);
    err[0] = 'x';
    err[1] = '\0';
    int rc = event_parse_delivery(&ev, name, "72d3162e-cc78-11e3-81ab-4c9367dc0958", "123456",
                                  ctype, body, size, err, sizeof(err));
    FUZZ_REQUIRE(rc == 0 || rc == GHE_INVAL || rc == GHE_UNSUPPORTED || rc == GHE_NOMEM,
                 "unexpected code %d", rc);
    if (rc == 0) {
        FUZZ_REQUIRE(err[0] == '\0', "success leaves a message: %s", err);
        fuzz_event_check(&ev, name);
        FUZZ_REQUIRE(strcmp(event_header_get(&ev, "user-agent"), "GitHub-Hookshot/fuzz") == 0,
                     "header lookup ignores case");
    } else {
        FUZZ_REQUIRE(err[0] != '\0', "failure %d without a message", rc);
    }
    event_cleanup(&ev);
    /* event_cleanup leaves an empty event that may be cleaned again. */
    event_cleanup(&ev);

    /* The raw body as /trigger would see it. */
    memcpy(body, data, size);
    cJSON *obj = NULL;
    rc = event_json_parse(body, size, &obj, err, sizeof(err));
    FUZZ_REQUIRE(rc == 0 || rc == GHE_INVAL || rc == GHE_NOMEM, "unexpected code %d", rc);
    FUZZ_REQUIRE((rc == 0) == (obj != NULL), "result and code disagree");
    if (obj) {
        FUZZ_REQUIRE(cJSON_IsObject(obj), "event_json_parse returned a non-object");
        char *printed = cJSON_PrintUnformatted(obj);
        FUZZ_REQUIRE(printed && fuzz_is_json(printed, strlen(printed)),
                     "a parsed body does not print back to JSON");
        free(printed);
        cJSON_Delete(obj);
    }
    free(body);
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_event_one(data, size);
}
#endif
