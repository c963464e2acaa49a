/* jsonprune: validates all of a document, keeps only the paths asked for. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "gpuhook/error.h"
#include "gpuhook/jsonprune.h"

static const struct jsonprune_path whole = {NULL, 0};

static char *read_fixture(const char *name, size_t *len) {
    const char *dir = getenv("GPUHOOK_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/tests/fixtures/github/%s", dir ? dir : ".", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *data = malloc(1 << 20);
    *len = fread(data, 1, 1 << 20, f);
    fclose(f);
    return data;
}

static void test_jsonprune_whole_equals_cjson_on_every_fixture(void **state) {
    static const char *const names[] = {"push.json",
                                        "push_with-new-branch.json",
                                        "pull_request_opened.json",
                                        "pull_request_labeled.json",
                                        "pull_request_synchronize.json",
                                        "ping.json",
                                        "issue_comment_created.json",
                                        "workflow_dispatch.json"};
    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t len;
        char *text = read_fixture(names[i], &len);
        char err[256];
        cJSON *mine = NULL, *ref = cJSON_ParseWithLength(text, len);
        assert_int_equal(jsonprune_parse(text, len, &whole, 1, 64, &mine, err, sizeof(err)), 0);
        assert_true(cJSON_Compare(mine, ref, 1));
        cJSON_Delete(mine);
        cJSON_Delete(ref);
        free(text);
    }
}

static void test_jsonprune_keeps_only_the_paths_asked_for(void **state) {
    static const struct jsonprune_seg repo[] = {{"repository", -1, false},
                                                {"full_name", -1, false}};
    static const struct jsonprune_seg added[] = {
        {"commits", -1, false}, {NULL, -1, true}, {"added", -1, false}};
    static const struct jsonprune_seg second_id[] = {
        {"commits", -1, false}, {"1", 1, false}, {"id", -1, false}};
    const struct jsonprune_path paths[] = {{repo, 2}, {added, 3}, {second_id, 3}};
    const char *text = "{\"repository\":{\"full_name\":\"o/r\",\"big\":\"xxxx\"},"
                       "\"commits\":[{\"id\":\"a\",\"added\":[\"x.c\"]},"
                       "{\"id\":\"b\",\"added\":[],\"msg\":\"m\"}],\"other\":[1,2,{\"k\":null}]}";
    char err[256];
    cJSON *out = NULL;
    (void)state;
    assert_int_equal(jsonprune_parse(text, strlen(text), paths, 3, 64, &out, err, sizeof(err)), 0);
    char *s = cJSON_PrintUnformatted(out);
    assert_string_equal(
        s, "{\"repository\":{\"full_name\":\"o/r\"},\"commits\":[{\"added\":[\"x.c\"]},"
           "{\"id\":\"b\",\"added\":[]}]}");
    free(s);
    cJSON_Delete(out);
}

static void test_jsonprune_decodes_escapes_and_surrogates(void **state) {
    const char *text =
        "{\"s\":\"q\\\" b\\\\ s\\/ \\b\\f\\n\\r\\t \\u00e9 \\ud83d\\ude80 \\u2603\"}";
    char err[256];
    cJSON *out = NULL, *ref = cJSON_Parse(text);
    (void)state;
    assert_int_equal(jsonprune_parse(text, strlen(text), &whole, 1, 64, &out, err, sizeof(err)), 0);
    assert_string_equal(cJSON_GetObjectItem(out, "s")->valuestring,
                        "q\" b\\ s/ \b\f\n\r\t \xc3\xa9 \xf0\x9f\x9a\x80 \xe2\x98\x83");
    assert_true(cJSON_Compare(out, ref, 1));
    cJSON_Delete(out);
    cJSON_Delete(ref);
}

static void test_jsonprune_rejects_what_is_not_json(void **state) {
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        {"", "body is not a JSON object"},
        {"[1]", "body is not a JSON object"},
        {"\"s\"", "body is not a JSON object"},
        {"{", "body is not valid JSON"},
        {"{\"a\"}", "body is not valid JSON"},
        {"{\"a\":}", "body is not valid JSON"},
        {"{\"a\":1,}", "body is not valid JSON"},
        {"{\"a\":[1,]}", "body is not valid JSON"},
        {"{\"a\":01}", "body is not valid JSON"},
        {"{\"a\":1.}", "body is not valid JSON"},
        {"{\"a\":-}", "body is not valid JSON"},
        {"{\"a\":1e}", "body is not valid JSON"},
        {"{\"a\":tru}", "body is not valid JSON"},
        {"{\"a\":\"\\x\"}", "body is not valid JSON"},
        {"{\"a\":\"\\u12\"}", "body is not valid JSON"},
        {"{\"a\":\"\\udc00\"}", "body is not valid JSON"},
        {"{\"a\":\"\\ud800x\"}", "body is not valid JSON"},
        {"{\"a\":\"tab\there\"}", "body is not valid JSON"},
        {"{\"a\":\"unterminated}", "body is not valid JSON"},
        {"{'a':1}", "body is not valid JSON"},
        {"{\"a\":1} x", "body has data after the JSON object (byte 8)"},
        {"{\"a\":1}{}", "body has data after the JSON object (byte 7)"},
        /* UTF-8 is checked inside strings, kept or skipped, keys too; past 16 bytes as well. */
        {"{\"a\":\"\xC3\"}", "body is not valid UTF-8"},
        {"{\"a\":\"\xED\xA0\x80\"}", "body is not valid UTF-8"},
        {"{\"\xC0\xAF\":1}", "body is not valid UTF-8"},
        {"{\"a\":\"0123456789abcdef0123456789\xF5\x80\x80\x80\"}", "body is not valid UTF-8"},
        {"{\"a\":\xC3\xA9}", "body is not valid JSON"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256] = "";
        cJSON *out = NULL;
        int rc = jsonprune_parse(cases[i].text, strlen(cases[i].text), &whole, 1, 64, &out, err,
                                 sizeof(err));
        if (rc != GHE_INVAL || strcmp(err, cases[i].msg) != 0)
            fail_msg("case %zu (%s): rc %d, \"%s\"", i, cases[i].text, rc, err);
        assert_null(out);
    }
}

/* Valid multi-byte text goes through the 16-byte scan intact, escaped or not. */
static void test_jsonprune_keeps_utf8_intact(void **state) {
    const char *text =
        "{\"k\xC3\xA9\":\"0123456789abcdef\xE2\x82\xAC\xF0\x9F\x98\x80 \\n\xC3\xA9\"}";
    char err[256];
    cJSON *out = NULL;
    (void)state;

    assert_int_equal(jsonprune_parse(text, strlen(text), &whole, 1, 64, &out, err, sizeof(err)), 0);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(out, "k\xC3\xA9");
    assert_non_null(v);
    assert_string_equal(v->valuestring, "0123456789abcdef\xE2\x82\xAC\xF0\x9F\x98\x80 \n\xC3\xA9");
    cJSON_Delete(out);
}

static void test_jsonprune_depth_is_bounded_even_in_skipped_values(void **state) {
    static const struct jsonprune_seg a[] = {{"a", -1, false}};
    const struct jsonprune_path keep_a = {a, 1};
    char text[400];
    size_t n = 0;
    (void)state;
    n += (size_t)snprintf(text + n, sizeof(text) - n, "{\"skip\":");
    for (int i = 0; i < 64; i++)
        text[n++] = '[';
    for (int i = 0; i < 64; i++)
        text[n++] = ']';
    n += (size_t)snprintf(text + n, sizeof(text) - n, ",\"a\":1}");
    char err[256];
    cJSON *out = NULL;
    assert_int_equal(jsonprune_parse(text, n, &keep_a, 1, 64, &out, err, sizeof(err)), GHE_INVAL);
    assert_string_equal(err, "body nests deeper than 64 levels");
    /* 63 inner levels plus the top object is exactly 64: accepted. */
    memmove(text + 8, text + 9, n - 9);
    n--;
    memmove(text + 8 + 63, text + 8 + 64, n - 8 - 64);
    n--;
    assert_int_equal(jsonprune_parse(text, n, &keep_a, 1, 64, &out, err, sizeof(err)), 0);
    assert_int_equal(cJSON_GetObjectItem(out, "a")->valueint, 1);
    assert_null(cJSON_GetObjectItem(out, "skip"));
    cJSON_Delete(out);
}

static void test_jsonprune_numbers_and_literals_match_cjson(void **state) {
    const char *text = "{\"n\":[0,-0,12,-3.5,1e3,2E-2,1.5e+2,123456789012],\"t\":true,"
                       "\"f\":false,\"z\":null,\"e\":{},\"a\":[]}";
    char err[256];
    cJSON *out = NULL, *ref = cJSON_Parse(text);
    (void)state;
    assert_int_equal(jsonprune_parse(text, strlen(text), &whole, 1, 64, &out, err, sizeof(err)), 0);
    assert_true(cJSON_Compare(out, ref, 1));
    cJSON_Delete(out);
    cJSON_Delete(ref);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonprune_whole_equals_cjson_on_every_fixture),
        cmocka_unit_test(test_jsonprune_keeps_only_the_paths_asked_for),
        cmocka_unit_test(test_jsonprune_decodes_escapes_and_surrogates),
        cmocka_unit_test(test_jsonprune_rejects_what_is_not_json),
        cmocka_unit_test(test_jsonprune_keeps_utf8_intact),
        cmocka_unit_test(test_jsonprune_depth_is_bounded_even_in_skipped_values),
        cmocka_unit_test(test_jsonprune_numbers_and_literals_match_cjson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
