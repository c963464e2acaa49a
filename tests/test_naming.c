/*
 * Unit tests for naming.c: deterministic PipelineRun names that are valid
 * DNS-1123 labels whatever the prefix, and Kubernetes label values.
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

/* The last 11 characters are "-" and 10 lower-case hex digits. */
static void assert_hash_suffix(const char *name) {
    size_t n = strlen(name);
    assert_true(n > 11);
    assert_int_equal(name[n - 11], '-');
    for (size_t i = n - 10; i < n; i++)
        if (!((name[i] >= '0' && name[i] <= '9') || (name[i] >= 'a' && name[i] <= 'f')))
            fail_msg("%s: suffix is not lower-case hex", name);
}

static void test_naming_same_parts_give_the_same_name(void **state) {
    (void)state;
    char a[NAMING_MAX + 1], b[NAMING_MAX + 1];

    naming_pipelinerun("gpu-real-8-step-workflow-lite", "123456",
                       "72d3162e-cc78-11e3-81ab-4c9367dc0958", "lite", a);
    naming_pipelinerun("gpu-real-8-step-workflow-lite", "123456",
                       "72d3162e-cc78-11e3-81ab-4c9367dc0958", "lite", b);
    assert_string_equal(a, b);
    assert_true(strncmp(a, "gpu-real-8-step-workflow-lite-", 30) == 0);
    assert_int_equal(strlen(a), 30 + 10);
    assert_hash_suffix(a);
    assert_true(is_dns1123_label(a));
}

/* The hash is SHA-256 over the parts, each followed by a NUL; pin one value so it never drifts. */
static void test_naming_hash_is_stable_across_builds(void **state) {
    (void)state;
    char a[NAMING_MAX + 1];

    /* printf 'h\0d\0v\0' | sha256sum | cut -c1-10 */
    naming_pipelinerun("p", "h", "d", "v", a);
    assert_string_equal(a, "p-7a38f1cd1b");
}

static void test_naming_each_part_changes_the_name(void **state) {
    (void)state;
    static const char *const parts[][3] = {
        {"1", "delivery", "lite"},
        {"2", "delivery", "lite"},     /* hook ID differs */
        {"1", "delivery2", "lite"},    /* delivery ID differs */
        {"1", "delivery", "original"}, /* variant differs */
        {"1d", "elivery", "lite"},     /* same bytes, different split */
        {"1", "deliverylite", ""},     /* same bytes, different split */
        {"", "", ""},
    };
    enum { N = sizeof(parts) / sizeof(parts[0]) };
    char names[N][NAMING_MAX + 1];

    for (size_t i = 0; i < N; i++) {
        naming_pipelinerun("run", parts[i][0], parts[i][1], parts[i][2], names[i]);
        assert_true(is_dns1123_label(names[i]));
        for (size_t j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                fail_msg("cases %zu and %zu share the name %s", i, j, names[i]);
    }
}

static void test_naming_null_parts_count_as_empty(void **state) {
    (void)state;
    char a[NAMING_MAX + 1], b[NAMING_MAX + 1];

    naming_pipelinerun("run", NULL, NULL, NULL, a);
    naming_pipelinerun("run", "", "", "", b);
    assert_string_equal(a, b);
}

/* Whatever the prefix, the name is a DNS-1123 label; the expected prefix part is given. */
static void test_naming_odd_prefixes_become_valid_labels(void **state) {
    (void)state;
    static const struct {
        const char *prefix;
        const char *expected_start; /* the name minus "-<10 hex>" */
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
        naming_pipelinerun(cases[i].prefix, "1", "2", "lite", name);
        if (!is_dns1123_label(name))
            fail_msg("prefix %zu gave an invalid label: %s", i, name);
        assert_hash_suffix(name);
        size_t plen = strlen(name) - 11;
        if (plen != strlen(cases[i].expected_start) ||
            strncmp(name, cases[i].expected_start, plen) != 0)
            fail_msg("prefix %zu gave %s, expected %s-<hash>", i, name, cases[i].expected_start);
    }
}

static void test_naming_long_prefix_is_cut_to_63(void **state) {
    (void)state;
    char prefix[300], name[NAMING_MAX + 1], other[NAMING_MAX + 1];

    memset(prefix, 'a', sizeof(prefix) - 1);
    prefix[sizeof(prefix) - 1] = '\0';
    naming_pipelinerun(prefix, "1", "2", "lite", name);
    assert_int_equal(strlen(name), 63);
    assert_true(is_dns1123_label(name));
    assert_hash_suffix(name);

    /* A cut that lands on a '-' never leaves "--" or a '-' before the hash separator. */
    for (size_t cut = 40; cut < 60; cut++) {
        memset(prefix, 'b', sizeof(prefix) - 1);
        prefix[cut] = '-';
        naming_pipelinerun(prefix, "1", "2", "lite", name);
        assert_true(strlen(name) <= 63);
        if (!is_dns1123_label(name) || strstr(name, "--"))
            fail_msg("dash at %zu gave %s", cut, name);
    }

    /* Prefixes that differ only past the cut still differ by their parts. */
    memset(prefix, 'c', sizeof(prefix) - 1);
    naming_pipelinerun(prefix, "1", "2", "lite", name);
    naming_pipelinerun(prefix, "1", "3", "lite", other);
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
        cmocka_unit_test(test_naming_same_parts_give_the_same_name),
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
