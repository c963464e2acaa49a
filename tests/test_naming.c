/*
 * Unit tests for naming.c: PipelineRun names that depend on a run's identity only
 * (never its variant), valid DNS-1123 labels whatever the prefix, and label values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "gpuhook/naming.h"

/* RFC 1123 label as Kubernetes checks it: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63. */
static bool is_dns1123_label(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-')
            return false;
        if ((i == 0 || i == n - 1) && !alnum)
            return false;
    }
    return true;
}

/* Label value: empty, or [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, at most 63. */
static bool is_label_value(const char *s) {
    size_t n = strlen(s);
    if (n == 0)
        return true;
    if (n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '_' && c != '.')
            return false;
        if ((i == 0 || i == n - 1) && !alnum)
            return false;
    }
    return true;
}

/* The last 21 characters are "-gh-" or "-tr-" and 16 lower-case hex digits. */
#define SUFFIX 20
static void assert_hash_suffix(const char *name) {
    size_t n = strlen(name);
    assert_true(n > SUFFIX);
    if (strncmp(name + n - SUFFIX, "-gh-", 4) != 0 && strncmp(name + n - SUFFIX, "-tr-", 4) != 0)
        fail_msg("%s: no -gh- or -tr- before the hash", name);
    for (size_t i = n - 16; i < n; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            fail_msg("%s: suffix is not lower-case hex", name);
}

static void test_naming_same_identity_gives_the_same_name(void **state) {
    (void)state;
    char a[NAMING_MAX + 1], b[NAMING_MAX + 1];

    naming_pipelinerun("gpu-real-8-step-workflow", NAMING_WEBHOOK, "123456",
                       "72d3162e-cc78-11e3-81ab-4c9367dc0958", a);
    naming_pipelinerun("gpu-real-8-step-workflow", NAMING_WEBHOOK, "123456",
                       "72d3162e-cc78-11e3-81ab-4c9367dc0958", b);
    assert_string_equal(a, b);
    assert_true(strncmp(a, "gpu-real-8-step-workflow-gh-", 28) == 0);
    assert_int_equal(strlen(a), 28 + 16);
    assert_hash_suffix(a);
    assert_true(is_dns1123_label(a));
    assert_true(naming_dns1123_label(a, 63));
}

/* The hash is SHA-256 over kind, then the parts, each followed by a NUL; pinned so it never drifts.
 */
static void test_naming_hash_is_stable_across_builds(void **state) {
    (void)state;
    char a[NAMING_MAX + 1];

    /* printf 'webhook\0h\0d\0' | sha256sum | cut -c1-16 */
    naming_pipelinerun("p", NAMING_WEBHOOK, "h", "d", a);
    assert_string_equal(a, "p-gh-866e43eebff9acd3");
    /* printf 'trigger\0k\0\0' | sha256sum | cut -c1-16 */
    naming_pipelinerun("p", NAMING_TRIGGER, "k", NULL, a);
    assert_string_equal(a, "p-tr-4bcdddd4f511f092");
}

static void test_naming_each_part_changes_the_name(void **state) {
    (void)state;
    static const struct {
        int kind;
        const char *a, *b;
    } parts[] = {
        {NAMING_WEBHOOK, "1", "delivery"},  {NAMING_WEBHOOK, "2", "delivery"}, /* hook ID differs */
        {NAMING_WEBHOOK, "1", "delivery2"}, /* delivery ID differs */
        {NAMING_WEBHOOK, "1d", "elivery"},  /* same bytes, different split */
        {NAMING_WEBHOOK, "", "key-1"},      /* a delivery without hook ID ... */
        {NAMING_TRIGGER, "key-1", NULL},    /* ... and a trigger key with the same text */
        {NAMING_TRIGGER, "", "key-1"},      {NAMING_WEBHOOK, "", ""},
        {NAMING_TRIGGER, "", ""},
    };
    enum { N = sizeof(parts) / sizeof(parts[0]) };
    char names[N][NAMING_MAX + 1], hashes[N][17];

    for (size_t i = 0; i < N; i++) {
        naming_pipelinerun("run", parts[i].kind, parts[i].a, parts[i].b, names[i]);
        assert_true(is_dns1123_label(names[i]));
        /* The hashes differ too, not only the -gh-/-tr- marks. */
        memcpy(hashes[i], names[i] + strlen(names[i]) - 16, 17);
        for (size_t j = 0; j < i; j++)
            if (strcmp(hashes[i], hashes[j]) == 0)
                fail_msg("cases %zu and %zu share the hash of %s", i, j, names[i]);
    }
}

static void test_naming_null_parts_count_as_empty(void **state) {
    (void)state;
    char a[NAMING_MAX + 1], b[NAMING_MAX + 1];

    naming_pipelinerun("run", NAMING_WEBHOOK, NULL, NULL, a);
    naming_pipelinerun("run", NAMING_WEBHOOK, "", "", b);
    assert_string_equal(a, b);
}

/* The prefix is the template text before its first $(...): static, whatever the variant. */
static void test_naming_static_prefix_stops_at_the_first_hole(void **state) {
    (void)state;
    char out[NAMING_MAX + 1];

    assert_int_equal(
        naming_static_prefix("gpu-real-8-step-workflow-$(tt.params.pipeline-version)-", out), 25);
    assert_string_equal(out, "gpu-real-8-step-workflow-");
    assert_int_equal(naming_static_prefix("$(tt.params.x)", out), 0);
    assert_int_equal(naming_static_prefix("plain", out), 5);
    assert_int_equal(naming_static_prefix(NULL, out), 0);
}

static void test_naming_validators(void **state) {
    (void)state;
    assert_true(naming_dns1123_label("gpu-real-8-step-workflow-lite", 63));
    assert_false(naming_dns1123_label("gpu-real-8-step-workflow-../../x", 63));
    assert_false(naming_dns1123_label("Upper", 63));
    assert_false(naming_dns1123_label("-x", 63));
    assert_false(naming_dns1123_label("", 63));
    assert_true(naming_dns1123_subdomain("a.b-c.d"));
    assert_false(naming_dns1123_subdomain("a..b"));
    assert_false(naming_dns1123_subdomain("a.-b"));
    assert_false(naming_dns1123_subdomain("../x"));
}

/* Whatever the prefix, the name is a DNS-1123 label; the expected prefix part is given. */
static void test_naming_odd_prefixes_become_valid_labels(void **state) {
    (void)state;
    static const struct {
        const char *prefix;
        const char *expected_start; /* the name minus "-gh-<16 hex>" */
    } cases[] = {
        {"gpu-workflow", "gpu-workflow"},
        {"GPU-Workflow", "gpu-workflow"},
        {"gpu.workflow.v1", "gpu-workflow-v1"},
        {"gpu_workflow", "gpu-workflow"},
        {"--gpu--workflow--", "gpu-workflow"},
        {"  spaced  out  ", "spaced-out"},
        {"caf\xc3\xa9-r\xc3\xa9sum\xc3\xa9", "caf-r-sum"},
        {"\xe6\x97\xa5\xe6\x9c\xac", "run"},
        {"", "run"},
        {NULL, "run"},
        {"-", "run"},
        {"...", "run"},
        {"9lives", "9lives"},
        {"$(params.x)`rm -rf`", "params-x-rm-rf"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[NAMING_MAX + 1];
        naming_pipelinerun(cases[i].prefix, NAMING_WEBHOOK, "1", "2", name);
        if (!is_dns1123_label(name))
            fail_msg("prefix %zu gave an invalid label: %s", i, name);
        assert_hash_suffix(name);
        size_t plen = strlen(name) - SUFFIX;
        if (plen != strlen(cases[i].expected_start) ||
            strncmp(name, cases[i].expected_start, plen) != 0)
            fail_msg("prefix %zu gave %s, expected %s-gh-<hash>", i, name, cases[i].expected_start);
    }
}

static void test_naming_long_prefix_is_cut_to_63(void **state) {
    (void)state;
    char prefix[300], name[NAMING_MAX + 1], other[NAMING_MAX + 1];

    memset(prefix, 'a', sizeof(prefix) - 1);
    prefix[sizeof(prefix) - 1] = '\0';
    naming_pipelinerun(prefix, NAMING_TRIGGER, "1", NULL, name);
    assert_int_equal(strlen(name), 63);
    assert_true(is_dns1123_label(name));
    assert_hash_suffix(name);

    /* A cut that lands on a '-' never leaves "--" or a '-' before the hash separator. */
    for (size_t cut = 30; cut < 60; cut++) {
        memset(prefix, 'b', sizeof(prefix) - 1);
        prefix[cut] = '-';
        naming_pipelinerun(prefix, NAMING_WEBHOOK, "1", "2", name);
        assert_true(strlen(name) <= 63);
        if (!is_dns1123_label(name) || strstr(name, "--"))
            fail_msg("dash at %zu gave %s", cut, name);
    }

    /* Prefixes that differ only past the cut still differ by their parts. */
    memset(prefix, 'c', sizeof(prefix) - 1);
    naming_pipelinerun(prefix, NAMING_WEBHOOK, "1", "2", name);
    naming_pipelinerun(prefix, NAMING_WEBHOOK, "1", "3", other);
    assert_string_not_equal(name, other);
}

static void test_naming_label_values_are_valid(void **state) {
    (void)state;
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {
        {"lite", "lite"},
        {"Main_Branch.v1-2", "Main_Branch.v1-2"},
        {"refs/heads/main", "refs_heads_main"},
        {"feature/caf\xc3\xa9", "feature_caf"},
        {"-_.edge._-", "edge"},
        {"a b", "a_b"},
        {"", ""},
        {NULL, ""},
        {"___", ""},
        {"\xe6\x97\xa5", ""},
        {"octo-org/octo-repo", "octo-org_octo-repo"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[NAMING_MAX + 1];
        naming_label_value(cases[i].in, out);
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\", expected \"%s\"", i, out, cases[i].out);
        assert_true(is_label_value(out));
    }
}

static void test_naming_long_label_value_is_cut_to_63_with_alnum_ends(void **state) {
    (void)state;
    char in[200], out[NAMING_MAX + 1];

    memset(in, 'x', sizeof(in) - 1);
    in[sizeof(in) - 1] = '\0';
    naming_label_value(in, out);
    assert_int_equal(strlen(out), 63);
    assert_true(is_label_value(out));

    /* The 63rd character is a separator: it is trimmed, not kept at the end. */
    in[62] = '.';
    naming_label_value(in, out);
    assert_int_equal(strlen(out), 62);
    assert_true(is_label_value(out));

    /* Leading junk is dropped after the cut, so the value may be shorter. */
    memset(in, '/', 70);
    naming_label_value(in, out);
    assert_true(is_label_value(out));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_naming_same_identity_gives_the_same_name),
        cmocka_unit_test(test_naming_static_prefix_stops_at_the_first_hole),
        cmocka_unit_test(test_naming_validators),
        cmocka_unit_test(test_naming_hash_is_stable_across_builds),
        cmocka_unit_test(test_naming_each_part_changes_the_name),
        cmocka_unit_test(test_naming_null_parts_count_as_empty),
        cmocka_unit_test(test_naming_odd_prefixes_become_valid_labels),
        cmocka_unit_test(test_naming_long_prefix_is_cut_to_63),
        cmocka_unit_test(test_naming_label_values_are_valid),
        cmocka_unit_test(test_naming_long_label_value_is_cut_to_63_with_alnum_ends),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
