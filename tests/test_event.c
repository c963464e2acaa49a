/*
 * Unit tests for event.c: parsing GitHub deliveries (both content types) into
 * the normalized event, and refusing bodies a 400 must answer.
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
#include "gpuhook/event.h"

#define assert_str_or_null(actual, expected)                                                       \
    do {                                                                                           \
        const char *a_ = (actual), *e_ = (expected);                                               \
        if (e_ == NULL)                                                                            \
            assert_null(a_);                                                                       \
        else {                                                                                     \
            assert_non_null(a_);                                                                   \
            assert_string_equal(a_, e_);                                                           \
        }                                                                                          \
    } while (0)

/* Reads tests/fixtures/github/NAME below $GPUHOOK_SOURCE_DIR (or "."). */
static char *read_fixture(const char *name, size_t *len) {
    const char *dir = getenv("GPUHOOK_SOURCE_DIR");
    char path[1024];
    char *data = NULL;
    long n;

    snprintf(path, sizeof(path), "%s/tests/fixtures/github/%s", dir ? dir : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    data = malloc((size_t)n + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    data[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return data;
}

/* Builds "a=1&payload=<urlencoded json>&b=two+words" as GitHub's form hooks do (caller frees). */
static char *form_encode(const char *json, size_t len, size_t *out_len) {
    static const char hex[] = "0123456789ABCDEF";
    const char *pre = "a=1&payload=", *post = "&b=two+words";
    char *out = malloc(strlen(pre) + len * 3 + strlen(post) + 1);
    size_t o = 0;

    assert_non_null(out);
    memcpy(out, pre, strlen(pre));
    o = strlen(pre);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)json[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~') {
            out[o++] = (char)c;
        } else if (c == ' ') {
            out[o++] = '+';
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    memcpy(out + o, post, strlen(post));
    o += strlen(post);
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* Parses a JSON text given as a C string (copied, since the parser may write). */
static int parse_json(struct event *ev, const char *event_name, const char *json, char *err,
                      size_t errlen) {
    size_t len = strlen(json);
    char *copy = malloc(len + 1);
    assert_non_null(copy);
    memcpy(copy, json, len + 1);
    int rc = event_parse_delivery(ev, event_name, "d-1", "42", "application/json", copy, len, err,
                                  errlen);
    free(copy);
    return rc;
}

/* Prints a cJSON tree, parses it as a delivery and frees the tree. */
static int parse_tree(struct event *ev, const char *event_name, cJSON *tree, char *err,
                      size_t errlen) {
    char *text = cJSON_PrintUnformatted(tree);
    assert_non_null(text);
    cJSON_Delete(tree);
    int rc = parse_json(ev, event_name, text, err, errlen);
    free(text);
    return rc;
}

static cJSON *load_fixture_tree(const char *name) {
    size_t len;
    char *text = read_fixture(name, &len);
    cJSON *tree = cJSON_ParseWithLength(text, len);
    free(text);
    assert_non_null(tree);
    return tree;
}

struct fixture_case {
    const char *file;
    const char *event;
    const char *action;
    const char *full_name;
    const char *repo_url;
    const char *ref;
    const char *branch;
    const char *tag;
    const char *revision;
    const char *base_branch;
    const char *pr_number;
    const char *message;
    const char *sender;
    const char *added_label;
    const char *first_label;
    size_t label_count;
    const char *first_path;
    size_t changed_count;
    bool deleted;
    bool draft;
};

static const struct fixture_case fixture_cases[] = {
    {.file = "push_with-new-branch.json",
     .event = "push",
     .full_name = "Codertocat/Hello-World",
     .repo_url = "https://github.com/Codertocat/Hello-World.git",
     .ref = "refs/heads/master",
     .branch = "master",
     .revision = "6113728f27ae82c7b1a177c8d03f9e96e0adf246",
     .message = "Initial commit",
     .sender = "Codertocat",
     .first_path = "README.md",
     .changed_count = 1},
    {.file = "push.json",
     .event = "push",
     .full_name = "Codertocat/Hello-World",
     .repo_url = "https://github.com/Codertocat/Hello-World.git",
     .ref = "refs/tags/simple-tag",
     .tag = "simple-tag",
     .revision = "0000000000000000000000000000000000000000",
     .sender = "Codertocat",
     .deleted = true},
    {.file = "pull_request_opened.json",
     .event = "pull_request",
     .action = "opened",
     .full_name = "Codertocat/Hello-World",
     .repo_url = "https://github.com/Codertocat/Hello-World.git",
     .ref = "refs/pull/2/head",
     .branch = "changes",
     .revision = "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
     .base_branch = "master",
     .pr_number = "2",
     .message = "Update the README with new information.",
     .sender = "Codertocat",
     .first_label = "bug",
     .label_count = 1},
    {.file = "pull_request_labeled.json",
     .event = "pull_request",
     .action = "labeled",
     .full_name = "Codertocat/Hello-World",
     .repo_url = "https://github.com/Codertocat/Hello-World.git",
     .ref = "refs/pull/2/head",
     .branch = "changes",
     .revision = "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
     .base_branch = "master",
     .pr_number = "2",
     .message = "Update the README with new information.",
     .sender = "Codertocat",
     .added_label = "bug",
     .first_label = "bug",
     .label_count = 1},
    {.file = "pull_request_synchronize.json",
     .event = "pull_request",
     .action = "synchronize",
     .full_name = "Codertocat/Hello-World",
     .repo_url = "https://github.com/Codertocat/Hello-World.git",
     .ref = "refs/pull/2/head",
     .branch = "changes",
     .revision = "ec26c3e57ca3a959ca5aad62de7213c562f8c821",
     .base_branch = "master",
     .pr_number = "2",
     .message = "Update the README with new information.",
     .sender = "Codertocat",
     .first_label = "bug",
     .label_count = 1},
    /* Other events keep the repository, the sender and the action, and nothing else. */
    {.file = "ping.json",
     .event = "ping",
     .full_name = "Octocoders/Hello-World",
     .repo_url = "https://github.com/Octocoders/Hello-World.git",
     .sender = "Codertocat"},
    {.file = "issue_comment_created.json",
     .event = "issue_comment",
     .action = "created",
     .full_name = "Codertocat/Hello-World",
     .repo_url = "https://github.com/Codertocat/Hello-World.git",
     .sender = "Codertocat"},
    {.file = "workflow_dispatch.json",
     .event = "workflow_dispatch",
     .full_name = "octo-org/octo-repo",
     .repo_url = "https://github.com/octo-org/octo-repo.git",
     .sender = "Codertocat"},
};

static void check_fixture_event(const struct event *ev, const struct fixture_case *c) {
    assert_str_or_null(ev->event, c->event);
    assert_str_or_null(ev->action, c->action);
    assert_str_or_null(ev->repo_full_name, c->full_name);
    assert_str_or_null(ev->repo_url, c->repo_url);
    assert_str_or_null(ev->ref, c->ref);
    assert_str_or_null(ev->branch, c->branch);
    assert_str_or_null(ev->tag, c->tag);
    assert_str_or_null(ev->revision, c->revision);
    assert_str_or_null(ev->base_branch, c->base_branch);
    assert_str_or_null(ev->pr_number, c->pr_number);
    assert_str_or_null(ev->message, c->message);
    assert_str_or_null(ev->sender, c->sender);
    assert_str_or_null(ev->added_label, c->added_label);
    assert_str_or_null(ev->delivery, "d-1");
    assert_str_or_null(ev->hook_id, "42");
    assert_int_equal(ev->label_count, c->label_count);
    if (c->first_label)
        assert_string_equal(ev->labels[0], c->first_label);
    assert_int_equal(ev->changed_count, c->changed_count);
    if (c->first_path)
        assert_string_equal(ev->changed_paths[0], c->first_path);
    assert_int_equal(ev->deleted, c->deleted);
    assert_int_equal(ev->draft, c->draft);
    assert_true(cJSON_IsObject(ev->body));
}

static void test_event_fixture_fields_are_extracted(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(fixture_cases) / sizeof(fixture_cases[0]); i++) {
        const struct fixture_case *c = &fixture_cases[i];
        struct event ev;
        char err[256];
        size_t len;
        char *body = read_fixture(c->file, &len);

        print_message("fixture %s\n", c->file);
        event_init(&ev);
        assert_int_equal(event_parse_delivery(&ev, c->event, "d-1", "42", "application/json", body,
                                              len, err, sizeof(err)),
                         0);
        check_fixture_event(&ev, c);
        event_cleanup(&ev);
        free(body);
    }
}

static void test_event_form_body_yields_the_same_event_as_json(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(fixture_cases) / sizeof(fixture_cases[0]); i++) {
        const struct fixture_case *c = &fixture_cases[i];
        struct event ev;
        char err[256];
        size_t len, form_len;
        char *json = read_fixture(c->file, &len);
        char *form = form_encode(json, len, &form_len);

        print_message("fixture %s\n", c->file);
        event_init(&ev);
        assert_int_equal(event_parse_delivery(&ev, c->event, "d-1", "42",
                                              "application/x-www-form-urlencoded", form, form_len,
                                              err, sizeof(err)),
                         0);
        check_fixture_event(&ev, c);
        event_cleanup(&ev);
        free(form);
        free(json);
    }
}

static void test_event_body_tree_is_kept_for_templates(void **state) {
    struct event ev;
    char err[256];
    size_t len;
    char *body = read_fixture("ping.json", &len);

    (void)state;
    event_init(&ev);
    assert_int_equal(event_parse_delivery(&ev, "ping", "d-1", "42", "application/json", body, len,
                                          err, sizeof(err)),
                     0);
    /* The event owns the tree, so the body buffer can go right away. */
    memset(body, 'x', len);
    free(body);
    const cJSON *hook = cJSON_GetObjectItemCaseSensitive(ev.body, "hook");
    assert_true(cJSON_IsObject(hook));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(hook, "type")->valuestring, "Repository");
    event_cleanup(&ev);
    assert_null(ev.body);
    assert_null(ev.event);
}

struct content_type_case {
    const char *value;
    int kind;
};

static const struct content_type_case content_type_cases[] = {
    {"application/json", EVENT_CONTENT_JSON},
    {"Application/JSON", EVENT_CONTENT_JSON},
    {"application/json; charset=utf-8", EVENT_CONTENT_JSON},
    {"application/json;charset=UTF-8", EVENT_CONTENT_JSON},
    {" application/json ; charset=\"utf-8\" ", EVENT_CONTENT_JSON},
    {"application/json; charset=utf-8; foo=bar", EVENT_CONTENT_JSON},
    {"application/x-www-form-urlencoded", EVENT_CONTENT_FORM},
    {"application/x-www-form-urlencoded; charset=utf-8", EVENT_CONTENT_FORM},
    {"application/json; charset=iso-8859-1", EVENT_CONTENT_UNSUPPORTED},
    {"application/json; charset=", EVENT_CONTENT_UNSUPPORTED},
    {"application/json; charset", EVENT_CONTENT_UNSUPPORTED},
    {"application/json, text/plain", EVENT_CONTENT_UNSUPPORTED},
    {"application/jsonx", EVENT_CONTENT_UNSUPPORTED},
    {"application/vnd.github+json", EVENT_CONTENT_UNSUPPORTED},
    {"text/plain", EVENT_CONTENT_UNSUPPORTED},
    {"multipart/form-data; boundary=x", EVENT_CONTENT_UNSUPPORTED},
    {"", EVENT_CONTENT_UNSUPPORTED},
    {NULL, EVENT_CONTENT_UNSUPPORTED},
};

static void test_event_content_type_accepts_json_and_form_only(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(content_type_cases) / sizeof(content_type_cases[0]); i++) {
        const struct content_type_case *c = &content_type_cases[i];
        print_message("content type %s\n", c->value ? c->value : "(null)");
        assert_int_equal(event_content_type_parse(c->value), c->kind);
    }
}

static void test_event_other_content_type_is_unsupported(void **state) {
    struct event ev;
    char err[256];
    char body[] = "{}";

    (void)state;
    event_init(&ev);
    assert_int_equal(event_parse_delivery(&ev, "push", "d-1", "42", "text/plain", body,
                                          strlen(body), err, sizeof(err)),
                     GHE_UNSUPPORTED);
    assert_string_equal(err, "content type is neither application/json nor "
                             "application/x-www-form-urlencoded");
    event_cleanup(&ev);
}

/* Each form body is sent with event "ping"; the decoded payload's "action" is compared. */
struct form_case {
    const char *form;
    int rc;
    const char *action_or_err;
};

static const struct form_case form_cases[] = {
    {"payload=%7B%22action%22%3A%22x%22%7D", 0, "x"},
    {"payload=%7b%22action%22%3a%22lower+hex%22%7d", 0, "lower hex"},
    {"payload={\"action\":\"a+b\"}", 0, "a b"},
    {"payload={\"action\":\"a%2Bb\"}", 0, "a+b"},
    {"payload={\"action\":\"100%25\"}", 0, "100%"},
    {"payload={\"action\":\"%26%3D%3B\"}", 0, "&=;"},
    {"payload={\"action\":\"%E2%9C%93\"}", 0, "\xE2\x9C\x93"},
    {"zen=ok&payload={\"action\":\"later\"}&hook_id=3", 0, "later"},
    {"payload={\"action\":\"first\"}&", 0, "first"},
    {"payloads=1&payload={\"action\":\"exact+name\"}", 0, "exact name"},
    {"payload={\"action\":\"x\"}%", GHE_INVAL,
     "form field \"payload\" has a bad %-escape at offset 14"},
    {"payload={\"action\":\"x\"}%7", GHE_INVAL,
     "form field \"payload\" has a bad %-escape at offset 14"},
    {"payload=%G0{}", GHE_INVAL, "form field \"payload\" has a bad %-escape at offset 0"},
    {"payload=%7B%22a%22%3A%FF%7D", GHE_INVAL, "body is not valid UTF-8 (byte 5)"},
    {"payload=", GHE_INVAL, "body is not a JSON object"},
    {"payload", GHE_INVAL, "body is not a JSON object"},
    {"zen=1&hook_id=2", GHE_INVAL, "form body lacks a \"payload\" field"},
    {"", GHE_INVAL, "form body lacks a \"payload\" field"},
    {"payload={}&payload={}", GHE_INVAL, "form body has more than one \"payload\" field"},
};

static void test_event_form_payload_is_url_decoded(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(form_cases) / sizeof(form_cases[0]); i++) {
        const struct form_case *c = &form_cases[i];
        struct event ev;
        char err[256] = "";
        char *body = strdup(c->form);

        print_message("form %s\n", c->form);
        assert_non_null(body);
        event_init(&ev);
        int rc = event_parse_delivery(&ev, "ping", "d-1", "42",
                                      "application/x-www-form-urlencoded; charset=utf-8", body,
                                      strlen(body), err, sizeof(err));
        assert_int_equal(rc, c->rc);
        if (rc == 0)
            assert_str_or_null(ev.action, c->action_or_err);
        else
            assert_string_equal(err, c->action_or_err);
        event_cleanup(&ev);
        free(body);
    }
}

struct bad_body_case {
    const char *event;
    const char *body;
    size_t len; /* 0: strlen(body) */
    const char *err;
};

static const struct bad_body_case bad_body_cases[] = {
    {"push", "", 0, "body is not a JSON object"},
    {"push", "   \n", 0, "body is not a JSON object"},
    {"push", "[]", 0, "body is not a JSON object"},
    {"ping", "[{\"a\":1}]", 0, "body is not a JSON object"},
    {"ping", "\"string\"", 0, "body is not a JSON object"},
    {"ping", "42", 0, "body is not a JSON object"},
    {"ping", "null", 0, "body is not a JSON object"},
    {"ping", "\xEF\xBB\xBF{}", 0, "body is not a JSON object"},
    {"ping", "{\"a\":}", 0, "body is not valid JSON"},
    {"ping", "{\"a\":1", 0, "body is not valid JSON"},
    {"ping", "{\"a\":\"unterminated}", 0, "body is not valid JSON"},
    {"ping", "{\"a\":[1}", 0, "body is not valid JSON"},
    {"ping", "{} {}", 0, "body has data after the JSON object (byte 3)"},
    {"ping", "{}x", 0, "body has data after the JSON object (byte 2)"},
    {"ping", "{\"a\":\"\x80\"}", 0, "body is not valid UTF-8 (byte 6)"},
    {"ping", "{\"a\":\"\xC0\xAF\"}", 0, "body is not valid UTF-8 (byte 6)"},
    {"ping", "{\"a\":\"\xE0\x80\xAF\"}", 0, "body is not valid UTF-8 (byte 6)"},
    {"ping", "{\"a\":\"\xED\xA0\x80\"}", 0, "body is not valid UTF-8 (byte 6)"},
    {"ping", "{\"a\":\"\xF4\x90\x80\x80\"}", 0, "body is not valid UTF-8 (byte 6)"},
    {"ping", "{\"a\":\"\xF5\x80\x80\x80\"}", 0, "body is not valid UTF-8 (byte 6)"},
    {"ping", "{\"a\":\"\xE2\x82\"}", 0, "body is not valid UTF-8 (byte 6)"},
    {"ping", "{\"a\":\"\xE2\x82", 0, "body is not valid UTF-8 (byte 6)"},
    {"ping", "{\"a\":\"x\0y\"}", 11, "body contains a NUL byte"},
    {"push", "{\"repository\":{\"clone_url\":\"https://x/y.git\"}}", 0,
     "push payload lacks \"after\""},
    {"push", "{\"after\":7,\"repository\":{\"clone_url\":\"https://x/y.git\"}}", 0,
     "push payload lacks \"after\""},
    {"push", "{\"after\":\"abc\"}", 0, "push payload lacks \"repository.clone_url\""},
    {"push", "{\"after\":\"abc\",\"repository\":{\"clone_url\":null}}", 0,
     "push payload lacks \"repository.clone_url\""},
    {"pull_request", "{\"pull_request\":{\"head\":{}},\"repository\":{\"clone_url\":\"u\"}}", 0,
     "pull_request payload lacks \"pull_request.head.sha\""},
    {"pull_request", "{\"repository\":{\"clone_url\":\"u\"}}", 0,
     "pull_request payload lacks \"pull_request.head.sha\""},
    {"pull_request", "{\"pull_request\":{\"head\":{\"sha\":\"abc\"}}}", 0,
     "pull_request payload lacks \"repository.clone_url\""},
};

static void test_event_bad_bodies_are_refused_with_a_message(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(bad_body_cases) / sizeof(bad_body_cases[0]); i++) {
        const struct bad_body_case *c = &bad_body_cases[i];
        size_t len = c->len ? c->len : strlen(c->body);
        char *body = malloc(len + 1);
        struct event ev;
        char err[256] = "";

        print_message("case %zu: %s\n", i, c->err);
        assert_non_null(body);
        memcpy(body, c->body, len);
        /* No terminator inside the length: the parser must respect len. */
        body[len] = '}';
        event_init(&ev);
        assert_int_equal(event_parse_delivery(&ev, c->event, "d-1", "42", "application/json", body,
                                              len, err, sizeof(err)),
                         GHE_INVAL);
        assert_string_equal(err, c->err);
        event_cleanup(&ev);
        free(body);
    }
}

static char *nested(int depth, const char *inner) {
    size_t n = strlen(inner);
    char *s = malloc((size_t)depth * 2 + n + 16);
    size_t o = 0;

    assert_non_null(s);
    s[o++] = '{';
    for (int d = 1; d < depth; d++) {
        memcpy(s + o, d == 1 ? "\"a\":[" : "[", d == 1 ? 5 : 1);
        o += d == 1 ? 5 : 1;
    }
    if (depth == 1) {
        memcpy(s + o, "\"a\":", 4);
        o += 4;
    }
    memcpy(s + o, inner, n);
    o += n;
    for (int d = 1; d < depth; d++)
        s[o++] = ']';
    s[o++] = '}';
    s[o] = '\0';
    return s;
}

static void test_event_nesting_deeper_than_64_is_refused(void **state) {
    struct event ev;
    char err[256];

    (void)state;
    char *ok = nested(EVENT_MAX_DEPTH, "1");
    event_init(&ev);
    assert_int_equal(parse_json(&ev, "ping", ok, err, sizeof(err)), 0);
    event_cleanup(&ev);
    free(ok);

    char *deep = nested(EVENT_MAX_DEPTH + 1, "1");
    event_init(&ev);
    assert_int_equal(parse_json(&ev, "ping", deep, err, sizeof(err)), GHE_INVAL);
    assert_string_equal(err, "body nests deeper than 64 levels");
    event_cleanup(&ev);
    free(deep);

    /* A million levels are refused by the scan, before cJSON recurses. */
    char *huge = nested(1000000, "1");
    event_init(&ev);
    assert_int_equal(parse_json(&ev, "ping", huge, err, sizeof(err)), GHE_INVAL);
    assert_string_equal(err, "body nests deeper than 64 levels");
    event_cleanup(&ev);
    free(huge);
}

static void test_event_brackets_inside_strings_do_not_count_as_nesting(void **state) {
    struct event ev;
    char err[256];
    char text[400];

    (void)state;
    /* 99 brackets and an escaped quote inside a string are not nesting. */
    snprintf(text, sizeof(text), "{\"action\":\"%s\\\"]]]}\"}",
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
             "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[");
    event_init(&ev);
    assert_int_equal(parse_json(&ev, "ping", text, err, sizeof(err)), 0);
    assert_int_equal(strlen(ev.action), 99 + 5);
    assert_int_equal(ev.action[99], '"');
    event_cleanup(&ev);

    char *inner = nested(EVENT_MAX_DEPTH, "\"[[[[{{{{\"");
    event_init(&ev);
    assert_int_equal(parse_json(&ev, "ping", inner, err, sizeof(err)), 0);
    event_cleanup(&ev);
    free(inner);
}

static void test_event_json_parse_allows_surrounding_whitespace_only(void **state) {
    cJSON *out = NULL;
    char err[256];
    const char ok[] = " \r\n\t{\"a\": [1, {\"b\": null}]} \n";

    (void)state;
    assert_int_equal(event_json_parse(ok, strlen(ok), &out, err, sizeof(err)), 0);
    assert_true(cJSON_IsObject(out));
    cJSON_Delete(out);
    assert_int_equal(event_json_parse("{}/", 3, &out, err, sizeof(err)), GHE_INVAL);
    assert_null(out);
    assert_string_equal(err, "body has data after the JSON object (byte 2)");
    /* Only the first len bytes count. */
    assert_int_equal(event_json_parse("{}garbage", 2, &out, err, sizeof(err)), 0);
    cJSON_Delete(out);
}

struct deleted_case {
    const char *after;
    const char *deleted; /* JSON literal or NULL for absent */
    bool expect;
};

static const struct deleted_case deleted_cases[] = {
    {"0000000000000000000000000000000000000000", "false", true},
    {"0000000000000000000000000000000000000000000000000000000000000000", NULL, true},
    {"1111111111111111111111111111111111111111", "true", true},
    {"6113728f27ae82c7b1a177c8d03f9e96e0adf246", "false", false},
    {"6113728f27ae82c7b1a177c8d03f9e96e0adf246", NULL, false},
    {"", NULL, false},
};

static void test_event_push_deleting_a_ref_is_marked_deleted(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(deleted_cases) / sizeof(deleted_cases[0]); i++) {
        const struct deleted_case *c = &deleted_cases[i];
        cJSON *tree = load_fixture_tree("push_with-new-branch.json");
        struct event ev;
        char err[256];

        cJSON_ReplaceItemInObjectCaseSensitive(tree, "after", cJSON_CreateString(c->after));
        cJSON_DeleteItemFromObjectCaseSensitive(tree, "deleted");
        if (c->deleted)
            cJSON_AddItemToObject(tree, "deleted", cJSON_Parse(c->deleted));
        event_init(&ev);
        assert_int_equal(parse_tree(&ev, "push", tree, err, sizeof(err)), 0);
        assert_int_equal(ev.deleted, c->expect);
        assert_string_equal(ev.revision, c->after);
        event_cleanup(&ev);
    }
}

static void test_event_draft_pull_request_is_marked_draft(void **state) {
    cJSON *tree = load_fixture_tree("pull_request_opened.json");
    struct event ev;
    char err[256];

    (void)state;
    cJSON *pr = cJSON_GetObjectItemCaseSensitive(tree, "pull_request");
    cJSON_ReplaceItemInObjectCaseSensitive(pr, "draft", cJSON_CreateTrue());
    event_init(&ev);
    assert_int_equal(parse_tree(&ev, "pull_request", tree, err, sizeof(err)), 0);
    assert_true(ev.draft);
    assert_string_equal(ev.revision, "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    event_cleanup(&ev);
}

static void test_event_pull_request_number_falls_back_to_the_pr_object(void **state) {
    struct event ev;
    char err[256];
    const char *json =
        "{\"action\":\"opened\",\"pull_request\":{\"number\":1234567,"
        "\"head\":{\"sha\":\"abc\",\"ref\":\"f\"},\"base\":{\"ref\":\"main\"},"
        "\"labels\":[{\"name\":\"a\"},{\"color\":\"x\"},{\"name\":\"gpu:original\"}]},"
        "\"repository\":{\"clone_url\":\"https://h/o/r.git\"}}";

    (void)state;
    event_init(&ev);
    assert_int_equal(parse_json(&ev, "pull_request", json, err, sizeof(err)), 0);
    assert_string_equal(ev.pr_number, "1234567");
    assert_string_equal(ev.ref, "refs/pull/1234567/head");
    assert_string_equal(ev.branch, "f");
    assert_string_equal(ev.base_branch, "main");
    assert_int_equal(ev.label_count, 2);
    assert_string_equal(ev.labels[0], "a");
    assert_string_equal(ev.labels[1], "gpu:original");
    assert_null(ev.added_label);
    assert_null(ev.message);
    assert_false(ev.draft);
    event_cleanup(&ev);
}

static void test_event_changed_paths_are_the_union_of_all_commits(void **state) {
    struct event ev;
    char err[256];
    const char *json =
        "{\"after\":\"abc\",\"ref\":\"refs/heads/dev\",\"repository\":{\"clone_url\":\"u\"},"
        "\"commits\":["
        "{\"added\":[\"docs/a.md\",\"src/x.c\"],\"modified\":[\"README.md\"],\"removed\":[]},"
        "{\"added\":[],\"modified\":[\"src/x.c\",\"docs/a.md\"],\"removed\":[\"old.c\"]},"
        "{\"modified\":[\"README.md\", 5]},"
        "\"not a commit\""
        "],\"head_commit\":null}";
    const char *expected[] = {"docs/a.md", "src/x.c", "README.md", "old.c"};

    (void)state;
    event_init(&ev);
    assert_int_equal(parse_json(&ev, "push", json, err, sizeof(err)), 0);
    assert_int_equal(ev.changed_count, 4);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(ev.changed_paths[i], expected[i]);
    assert_string_equal(ev.branch, "dev");
    assert_null(ev.tag);
    assert_null(ev.message);
    event_cleanup(&ev);
}

static void test_event_other_events_never_fail_on_an_object(void **state) {
    const char *events[] = {"ping", "issue_comment", "create", "delete", "release", "unknown"};

    (void)state;
    for (size_t i = 0; i < sizeof(events) / sizeof(events[0]); i++) {
        struct event ev;
        char err[256];

        event_init(&ev);
        assert_int_equal(
            parse_json(&ev, events[i], "{\"ref\":\"refs/heads/x\",\"after\":1}", err, sizeof(err)),
            0);
        assert_string_equal(ev.event, events[i]);
        assert_null(ev.ref);
        assert_null(ev.branch);
        assert_null(ev.revision);
        assert_null(ev.repo_url);
        event_cleanup(&ev);
    }
}

static const char *const hostile[] = {
    "quote\"d",
    "line\nbreak\r\ttab",
    "$(body.secret) $(tt.params.x)",
    "`id` $(id)",
    "back\\slash \\u0041",
    "caf\xC3\xA9-\xE3\x83\x96\xE3\x83\xA9\xE3\x83\xB3\xE3\x83\x81-\xF0\x9F\x9A\x80",
    "{\"injected\":true}",
    "'; DROP TABLE runs; --",
    "a&b=c%20d+e",
};

static void test_event_hostile_strings_survive_byte_for_byte(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        const char *h = hostile[i];
        char ref[256];

        snprintf(ref, sizeof(ref), "refs/heads/%s", h);
        for (int form = 0; form < 2; form++) {
            cJSON *tree = load_fixture_tree("push_with-new-branch.json");
            cJSON *hc = cJSON_GetObjectItemCaseSensitive(tree, "head_commit");
            cJSON *commit =
                cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(tree, "commits"), 0);
            cJSON *sender = cJSON_GetObjectItemCaseSensitive(tree, "sender");
            struct event ev;
            char err[256];

            cJSON_ReplaceItemInObjectCaseSensitive(tree, "ref", cJSON_CreateString(ref));
            cJSON_ReplaceItemInObjectCaseSensitive(hc, "message", cJSON_CreateString(h));
            cJSON_ReplaceItemInObjectCaseSensitive(sender, "login", cJSON_CreateString(h));
            cJSON *added = cJSON_CreateArray();
            cJSON_AddItemToArray(added, cJSON_CreateString(h));
            cJSON_ReplaceItemInObjectCaseSensitive(commit, "added", added);
            char *json = cJSON_PrintUnformatted(tree);
            cJSON_Delete(tree);
            assert_non_null(json);

            size_t len = strlen(json);
            char *body = form ? form_encode(json, len, &len) : strdup(json);
            assert_non_null(body);
            print_message("hostile %zu form %d\n", i, form);
            event_init(&ev);
            assert_int_equal(event_parse_delivery(&ev, "push", "d-1", "42",
                                                  form ? "application/x-www-form-urlencoded"
                                                       : "application/json",
                                                  body, len, err, sizeof(err)),
                             0);
            assert_string_equal(ev.ref, ref);
            assert_string_equal(ev.branch, h);
            assert_string_equal(ev.message, h);
            assert_string_equal(ev.sender, h);
            assert_int_equal(ev.changed_count, 1);
            assert_string_equal(ev.changed_paths[0], h);
            event_cleanup(&ev);
            free(body);
            free(json);
        }
    }
}

static void test_event_hostile_pull_request_title_and_branch_survive(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(hostile) / sizeof(hostile[0]); i++) {
        cJSON *tree = load_fixture_tree("pull_request_labeled.json");
        cJSON *pr = cJSON_GetObjectItemCaseSensitive(tree, "pull_request");
        cJSON *head = cJSON_GetObjectItemCaseSensitive(pr, "head");
        cJSON *base = cJSON_GetObjectItemCaseSensitive(pr, "base");
        cJSON *label = cJSON_GetObjectItemCaseSensitive(tree, "label");
        struct event ev;
        char err[256];

        cJSON_ReplaceItemInObjectCaseSensitive(pr, "title", cJSON_CreateString(hostile[i]));
        cJSON_ReplaceItemInObjectCaseSensitive(head, "ref", cJSON_CreateString(hostile[i]));
        cJSON_ReplaceItemInObjectCaseSensitive(base, "ref", cJSON_CreateString(hostile[i]));
        cJSON_ReplaceItemInObjectCaseSensitive(label, "name", cJSON_CreateString(hostile[i]));
        event_init(&ev);
        assert_int_equal(parse_tree(&ev, "pull_request", tree, err, sizeof(err)), 0);
        assert_string_equal(ev.message, hostile[i]);
        assert_string_equal(ev.branch, hostile[i]);
        assert_string_equal(ev.base_branch, hostile[i]);
        assert_string_equal(ev.added_label, hostile[i]);
        event_cleanup(&ev);
    }
}

static void test_event_json_escapes_decode_to_utf8(void **state) {
    struct event ev;
    char err[256];
    const char *json = "{\"after\":\"a\",\"ref\":\"refs/heads/\\u00e9\\ud83d\\ude80\\\"\\n\","
                       "\"repository\":{\"clone_url\":\"u\"}}";

    (void)state;
    event_init(&ev);
    assert_int_equal(parse_json(&ev, "push", json, err, sizeof(err)), 0);
    assert_string_equal(ev.branch, "\xC3\xA9\xF0\x9F\x9A\x80\"\n");
    event_cleanup(&ev);
}

static void test_event_header_get_ignores_case(void **state) {
    static const struct event_header headers[] = {
        {"X-GitHub-Event", "push"},
        {"Content-Type", "application/json"},
    };
    struct event ev;

    (void)state;
    event_init(&ev);
    ev.headers = headers;
    ev.header_count = 2;
    assert_string_equal(event_header_get(&ev, "x-github-event"), "push");
    assert_string_equal(event_header_get(&ev, "CONTENT-TYPE"), "application/json");
    assert_null(event_header_get(&ev, "X-GitHub-Delivery"));
    assert_null(event_header_get(&ev, NULL));
    event_cleanup(&ev);
}

static void test_event_set_copies_and_replaces(void **state) {
    char *field = NULL;
    char src[] = "first";

    (void)state;
    assert_int_equal(event_set(&field, src), 0);
    src[0] = 'X';
    assert_string_equal(field, "first");
    assert_int_equal(event_set(&field, "second"), 0);
    assert_string_equal(field, "second");
    assert_int_equal(event_set(&field, NULL), 0);
    assert_null(field);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_event_fixture_fields_are_extracted),
        cmocka_unit_test(test_event_form_body_yields_the_same_event_as_json),
        cmocka_unit_test(test_event_body_tree_is_kept_for_templates),
        cmocka_unit_test(test_event_content_type_accepts_json_and_form_only),
        cmocka_unit_test(test_event_other_content_type_is_unsupported),
        cmocka_unit_test(test_event_form_payload_is_url_decoded),
        cmocka_unit_test(test_event_bad_bodies_are_refused_with_a_message),
        cmocka_unit_test(test_event_nesting_deeper_than_64_is_refused),
        cmocka_unit_test(test_event_brackets_inside_strings_do_not_count_as_nesting),
        cmocka_unit_test(test_event_json_parse_allows_surrounding_whitespace_only),
        cmocka_unit_test(test_event_push_deleting_a_ref_is_marked_deleted),
        cmocka_unit_test(test_event_draft_pull_request_is_marked_draft),
        cmocka_unit_test(test_event_pull_request_number_falls_back_to_the_pr_object),
        cmocka_unit_test(test_event_changed_paths_are_the_union_of_all_commits),
        cmocka_unit_test(test_event_other_events_never_fail_on_an_object),
        cmocka_unit_test(test_event_hostile_strings_survive_byte_for_byte),
        cmocka_unit_test(test_event_hostile_pull_request_title_and_branch_survive),
        cmocka_unit_test(test_event_json_escapes_decode_to_utf8),
        cmocka_unit_test(test_event_header_get_ignores_case),
        cmocka_unit_test(test_event_set_copies_and_replaces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
