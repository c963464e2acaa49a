/*
 * JSONPath as Tekton Triggers applies it. The cases come from Kubernetes
 * client-go util/jsonpath/jsonpath_test.go (TestTypesInput, TestStructInput,
 * TestJSONInput, TestKubernetes, written as JSON) and tektoncd/triggers
 * pkg/template/jsonpath_test.go; client-go prints several results separated
 * by spaces where Tekton prints one JSON array, so the expected text here is
 * Tekton's. Every case is also evaluated on the tree the pruning parser builds
 * from the path, which must give the same result as the whole tree.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/jsonpath.h"
#include "gpuhook/jsonprune.h"

#define TYPES                                                                                      \
    "{\"body\": {\"bools\": [true, false, true, false], \"integers\": [1, 2, 3, 4],"               \
    " \"floats\": [1.0, 2.2, 3.3, 4.0], \"strings\": [\"one\", \"two\", \"three\", \"four\"],"     \
    " \"maps\": [{\"name\": \"one\", \"value\": 1}, {\"name\": \"two\", \"value\": 2.02},"         \
    " {\"name\": \"three\", \"value\": 3.03}, {\"name\": \"four\", \"value\": 4.04}]}}"
#define STORE                                                                                      \
    "{\"body\": {\"Name\": \"jsonpath\", \"Book\": ["                                              \
    "{\"Category\": \"reference\", \"Author\": \"Nigel Rees\", \"Price\": 8.95},"                  \
    "{\"Category\": \"fiction\", \"Author\": \"Evelyn Waugh\", \"Price\": 12.99},"                 \
    "{\"Category\": \"fiction\", \"Author\": \"Herman Melville\", \"Price\": 8.99}],"              \
    " \"Bicycle\": [{\"Color\": \"red\", \"Price\": 19.95, \"IsNew\": true},"                      \
    " {\"Color\": \"green\", \"Price\": 20.01, \"IsNew\": false}],"                                \
    " \"Labels\": {\"engieer\": 10, \"web/html\": 15, \"k8s-app\": 20}}}"
#define POINTS                                                                                     \
    "{\"body\": [{\"id\": \"i1\", \"x\": 4, \"y\": -5}, {\"id\": \"i2\", \"x\": -2, \"y\": -5, "   \
    "\"z\": 1}, {\"id\": \"i3\", \"x\": 8, \"y\": 3}, {\"id\": \"i5\", \"x\": 0, \"y\": 2, "       \
    "\"z\": 1}]}"
#define NODES                                                                                      \
    "{\"body\": {\"kind\": \"List\", \"items\": [{\"kind\": \"None\", \"metadata\": {\"name\": "   \
    "\"127.0.0.1\", \"labels\": {\"kubernetes.io/hostname\": \"127.0.0.1\"}}, \"status\": "        \
    "{\"ready\": true, \"addresses\": [{\"type\": \"LegacyHostIP\", \"address\": "                 \
    "\"127.0.0.1\"}]}}, {\"kind\": \"None\", \"metadata\": {\"name\": \"127.0.0.2\"}, "            \
    "\"status\": {\"ready\": false, \"addresses\": [{\"type\": \"LegacyHostIP\", \"address\": "    \
    "\"127.0.0.2\"}, {\"type\": \"another\", \"address\": \"127.0.0.3\"}]}}], \"users\": "         \
    "[{\"name\": \"myself\", \"user\": {}}, {\"name\": \"e2e\", \"user\": {\"username\": "         \
    "\"admin\", \"password\": \"secret\"}}]}}"
#define TEKTON                                                                                     \
    "{\"body\": {\"a\": \"v\\r\\n\xe7\x83\x88\", \"c\": {\"d\": \"e\"}, \"empty\": \"\", "         \
    "\"null\": null, \"number\": 42, \"arr\": [{\"a\": \"b\"}, {\"c\": \"d\"}, {\"e\": \"f\"}], "  \
    "\"child\": [{\"a\": \"b\", \"w\": \"1\"}, {\"a\": \"c\", \"w\": \"2\"}, "                     \
    "{\"a\": \"d\", \"w\": \"3\"}], \"key\": \"val\"}}"

struct jp_case {
    const char *json;
    const char *expr;
    const char *want; /* NULL: missing */
};

static const struct jp_case cases[] = {
    /* client-go TestTypesInput */
    {TYPES, "body.bools", "[true,false,true,false]"},
    {TYPES, "body.bools[0]", "true"},
    {TYPES, "body.bools[-1]", "false"},
    {TYPES, "body.bools[0:2]", "[true,false]"},
    {TYPES, "body.bools[:4:2]", "[true,true]"},
    {TYPES, "body.integers[-2]", "3"},
    {TYPES, "body.integers[:4:2]", "[1,3]"},
    {TYPES, "body.floats[-2]", "3.3"},
    {TYPES, "body.strings[-2]", "three"},
    {TYPES, "body.strings[:2]", "[\"one\",\"two\"]"},
    {TYPES, "body.maps[-2]", "{\"name\":\"three\",\"value\":3.03}"},
    {TYPES, "body.maps[::2]",
     "[{\"name\":\"one\",\"value\":1},{\"name\":\"three\",\"value\":3.03}]"},
    {TYPES, "body.maps[1::2]",
     "[{\"name\":\"two\",\"value\":2.02},{\"name\":\"four\",\"value\":4.04}]"},
    /* client-go TestStructInput */
    {STORE, "body.Labels.web/html", "15"},
    {STORE, "body.Labels.k8s-app", "20"},
    {STORE, "body.Bicycle[*].Color", "[\"red\",\"green\"]"},
    {STORE, "body.Book[*].Author", "[\"Nigel Rees\",\"Evelyn Waugh\",\"Herman Melville\"]"},
    {STORE, "body..Price", "[8.95,12.99,8.99,19.95,20.01]"},
    {STORE, "body...Price", "[8.95,12.99,8.99,19.95,20.01]"},
    {STORE, "body.Book[-1:].Author", "Herman Melville"},
    {STORE, "body..Book[2].Author", "Herman Melville"},
    {STORE, "body.Bicycle[?(@.IsNew==true)].Color", "red"},
    {STORE, "body.Book[?(@.Price<10.0)].Author", "[\"Nigel Rees\",\"Herman Melville\"]"},
    {STORE, "body.hello", NULL},
    {STORE, "body.Labels[0]", NULL},
    /* client-go TestJSONInput */
    {POINTS, "body[?(@.z)].id", "[\"i2\",\"i5\"]"},
    {POINTS, "body[0]['id']", "i1"},
    {POINTS, "body[1,3].id", "[\"i2\",\"i5\"]"},
    /* client-go TestKubernetes */
    {NODES, "body.items[*].status.addresses[*].address",
     "[\"127.0.0.1\",\"127.0.0.2\",\"127.0.0.3\"]"},
    {NODES, "body.items[*].metadata.name", "[\"127.0.0.1\",\"127.0.0.2\"]"},
    {NODES, "body.users[?(@.name==\"e2e\")].user.password", "secret"},
    {NODES, "body.items[0].metadata.labels.kubernetes\\.io/hostname", "127.0.0.1"},
    {NODES, "body.items[?(@..ready==true)].metadata.name", "127.0.0.1"},
    /* a compared element that lacks the field fails the expression (AllowMissingKeys(false)) */
    {NODES, "body.items[?(@.metadata.labels.kubernetes\\.io/hostname==\"127.0.0.1\")].kind", NULL},
    /* tektoncd/triggers TestParseJSONPath and TestParseJSONPath_Error */
    {TEKTON, "body.a", "v\r\n\xe7\x83\x88"},
    {TEKTON, "body.empty", ""},
    {TEKTON, "body.number", "42"},
    {TEKTON, "body.null", "null"},
    {TEKTON, "body.c", "{\"d\":\"e\"}"},
    {TEKTON, "body.arr[:2]", "[{\"a\":\"b\"},{\"c\":\"d\"}]"},
    {TEKTON, "body.child[?(@.a == 'd')].w", "3"},
    {TEKTON, "{.body.key}", "val"},
    {TEKTON, ".body.key", "val"},
    {TEKTON, "body.missing", NULL},
    {TEKTON, "body.key[0]", NULL},
    /* client-go evalField and evalArray on null: a field is missing, an index yields nothing */
    {TEKTON, "body.null.x", NULL},
    {TEKTON, "body.null[0]", "[]"},
    {TEKTON, "body.arr[3]", NULL},
    {TEKTON, "body.arr[2:1]", NULL},
    {TEKTON, "body.arr[1:1]", "[]"},
};

static char *eval_text(const struct jsonpath *p, const cJSON *root, int *rc) {
    struct jsonpath_results res = {0};
    struct buf b;
    bool structured;

    *rc = jsonpath_eval(p, cJSON_GetObjectItemCaseSensitive(root, "body"), &res);
    if (*rc) {
        jsonpath_results_cleanup(&res);
        return NULL;
    }
    buf_init(&b, 1 << 20);
    assert_int_equal(jsonpath_print_results(&res, &b, &structured), 0);
    jsonpath_results_cleanup(&res);
    return buf_detach(&b, NULL);
}

static void test_jsonpath_cases(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct jp_case *c = &cases[i];
        struct jsonpath *p = NULL;
        const char *why = NULL;
        char err[256];
        int rc, prc;

        if (jsonpath_compile(c->expr, &p, &why) != 0)
            fail_msg("case %zu %s: compile: %s", i, c->expr, why);
        cJSON *whole = cJSON_Parse(c->json);
        assert_non_null(whole);
        char *got = eval_text(p, whole, &rc);
        if (c->want ? (rc != 0 || strcmp(got, c->want) != 0) : rc != 1)
            fail_msg("case %zu %s: rc %d got '%s', want '%s'", i, c->expr, rc, got ? got : "",
                     c->want ? c->want : "(missing)");
        /* The pruned tree: the path's prune form under the body, and nothing else. */
        struct jsonprune_path pp = jsonpath_prune_path(p);
        struct jsonprune_seg segs[32];
        segs[0] = (struct jsonprune_seg){"body", -1, false};
        assert_true(pp.n < 31);
        memcpy(segs + 1, pp.segs, pp.n * sizeof(segs[0]));
        struct jsonprune_path keep = {segs, pp.n + 1};
        cJSON *pruned = NULL;
        assert_int_equal(
            jsonprune_parse(c->json, strlen(c->json), &keep, 1, 64, &pruned, err, sizeof(err)), 0);
        char *pgot = eval_text(p, pruned, &prc);
        if (prc != rc || (got && strcmp(got, pgot) != 0))
            fail_msg("case %zu %s: pruned rc %d '%s', whole rc %d '%s'", i, c->expr, prc,
                     pgot ? pgot : "", rc, got ? got : "");
        free(got);
        free(pgot);
        cJSON_Delete(whole);
        cJSON_Delete(pruned);
        jsonpath_free(p);
    }
}

static void test_jsonpath_numbers_keep_their_text(void **state) {
    static const char json[] = "{\"body\": {\"n\": 9007199254740993, \"e\": 1e20, \"d\": 1.50,"
                               " \"l\": [1.0, -0, 2E+3]}}";
    static const struct jsonprune_seg all[] = {{"body", -1, false}};
    static const struct jsonprune_path keep = {all, 1};
    static const char *const exprs[][2] = {
        {"body.n", "9007199254740993"},
        {"body.e", "1e20"},
        {"body.d", "1.50"},
        {"body.l", "[1.0,-0,2E+3]"},
        {"body", "{\"n\":9007199254740993,\"e\":1e20,\"d\":1.50,\"l\":[1.0,-0,2E+3]}"},
    };
    char err[128];
    cJSON *tree = NULL;
    (void)state;

    assert_int_equal(jsonprune_parse(json, strlen(json), &keep, 1, 64, &tree, err, sizeof(err)), 0);
    for (size_t i = 0; i < sizeof(exprs) / sizeof(exprs[0]); i++) {
        struct jsonpath *p;
        const char *why;
        int rc;
        assert_int_equal(jsonpath_compile(exprs[i][0], &p, &why), 0);
        char *got = eval_text(p, tree, &rc);
        assert_int_equal(rc, 0);
        assert_string_equal(got, exprs[i][1]);
        free(got);
        jsonpath_free(p);
    }
    cJSON_Delete(tree);
}

static void test_jsonpath_refuses_what_tekton_cannot_parse(void **state) {
    /* tektoncd/triggers TestTektonJSONPathExpression_Error and TestParseJSONPath_Error */
    static const char *const bad[] = {"{.hello", "{body.a",  "body.a}", "{{body.a}}",
                                      "[1",      "body[1",   "",        "body.a[?(@.x <> 1)]",
                                      "foo.bar", "body[a:b]"};
    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct jsonpath *p = NULL;
        const char *why = NULL;
        if (jsonpath_compile(bad[i], &p, &why) != GHE_INVAL)
            fail_msg("'%s' compiled", bad[i]);
        assert_non_null(why);
        assert_null(p);
    }
}

static void test_jsonpath_canonical_headers(void **state) {
    /* tektoncd/triggers TestFindTektonExpressions: header names as CanonicalMIMEHeaderKey */
    static const char *const cases2[][2] = {{"one", "One"},
                                            {"ONE-TWO", "One-Two"},
                                            {"x-github-EVENT", "X-Github-Event"},
                                            {"Bad Name", "Bad Name"},
                                            {"a_b", "A_b"}};
    char out[64];
    (void)state;
    for (size_t i = 0; i < sizeof(cases2) / sizeof(cases2[0]); i++) {
        jsonpath_canonical_header(cases2[i][0], out, sizeof(out));
        assert_string_equal(out, cases2[i][1]);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jsonpath_cases),
        cmocka_unit_test(test_jsonpath_numbers_keep_their_text),
        cmocka_unit_test(test_jsonpath_refuses_what_tekton_cannot_parse),
        cmocka_unit_test(test_jsonpath_canonical_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
