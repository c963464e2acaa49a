/*
 * Unit tests for buf.c: the bound is enforced and a failed append changes
 * nothing, JSON escaping, printf-style growth and detaching the contents.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"

static void test_buf_starts_empty_and_appends_nul_terminated(void **state) {
    (void)state;
    struct buf b;

    buf_init(&b, 100);
    assert_int_equal(b.len, 0);
    assert_int_equal(buf_appends(&b, "abc"), 0);
    assert_int_equal(buf_append(&b, "de\0f", 4), 0);
    assert_int_equal(b.len, 7);
    assert_memory_equal(b.data, "abcde\0f", 7);
    assert_int_equal(b.data[7], '\0');
    /* Appending nothing keeps the string valid. */
    assert_int_equal(buf_append(&b, NULL, 0), 0);
    assert_int_equal(b.len, 7);
    buf_cleanup(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_buf_bound_is_enforced_exactly(void **state) {
    (void)state;
    struct buf b;
    char ten[10];

    memset(ten, 'x', sizeof(ten));
    buf_init(&b, 20);
    assert_int_equal(buf_append(&b, ten, 10), 0);
    assert_int_equal(buf_append(&b, ten, 10), 0);
    assert_int_equal(b.len, 20);
    assert_int_equal(buf_append(&b, ten, 1), GHE_TOOBIG);
    assert_int_equal(buf_appends(&b, "y"), GHE_TOOBIG);
    assert_int_equal(buf_appendf(&b, "%d", 7), GHE_TOOBIG);
    assert_int_equal(buf_reserve(&b, 1), GHE_TOOBIG);
    assert_int_equal(buf_reserve(&b, 0), 0);
    assert_true(b.cap <= b.max + 1);
    buf_cleanup(&b);
}

static void test_buf_failed_append_changes_nothing(void **state) {
    (void)state;
    struct buf b;
    char big[64];

    memset(big, 'z', sizeof(big));
    buf_init(&b, 50);
    assert_int_equal(buf_appends(&b, "kept"), 0);
    char *data = b.data;
    size_t cap = b.cap;

    assert_int_equal(buf_append(&b, big, 47), GHE_TOOBIG);
    assert_int_equal(buf_append(&b, big, SIZE_MAX), GHE_TOOBIG); /* no overflow in the check */
    assert_int_equal(buf_appendf(&b, "%s", "a string that does not fit in what is left over"),
                     GHE_TOOBIG);
    assert_int_equal(b.len, 4);
    assert_string_equal(b.data, "kept");
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    /* What still fits, fits. */
    assert_int_equal(buf_append(&b, big, 46), 0);
    assert_int_equal(b.len, 50);
    buf_cleanup(&b);
}

static void test_buf_failed_json_escape_changes_nothing(void **state) {
    (void)state;
    struct buf b;
    const char *s = "a\"b\"c\"d\"e\"f";

    /* The escaped form needs 16 bytes; 14 are left, so nothing of it may be kept. */
    buf_init(&b, 16);
    assert_int_equal(buf_appends(&b, "[:"), 0);
    assert_int_equal(buf_append_json_escaped(&b, s, strlen(s)), GHE_TOOBIG);
    assert_int_equal(b.len, 2);
    assert_string_equal(b.data, "[:");
    buf_cleanup(&b);
}

static void test_buf_json_escaping(void **state) {
    (void)state;
    static const struct {
        const char *in;
        size_t len;
        const char *out;
    } cases[] = {
        {"plain", 5, "plain"},
        {"say \"hi\"", 8, "say \\\"hi\\\""},
        {"back\\slash", 10, "back\\\\slash"},
        {"a\nb\rc\td", 7, "a\\nb\\rc\\td"},
        {"\x01\x1f\x7f", 3, "\\u0001\\u001f\x7f"},
        {"\b\f", 2, "\\u0008\\u000c"},
        {"nul\0byte", 8, "nul\\u0000byte"},
        {"caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x9a\x80", 14,
         "caf\xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x9a\x80"},
        {"</script>", 9, "</script>"},
        {"", 0, ""},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        buf_init(&b, 1024);
        assert_int_equal(buf_append_json_escaped(&b, cases[i].in, cases[i].len), 0);
        if (strcmp(b.data ? b.data : "", cases[i].out) != 0)
            fail_msg("case %zu: got \"%s\", expected \"%s\"", i, b.data, cases[i].out);
        buf_cleanup(&b);
    }
}

/* Every byte value escaped and wrapped in quotes parses back to the same bytes. */
static void test_buf_json_escaping_round_trips_through_cjson(void **state) {
    (void)state;
    struct buf b;
    char in[128];

    for (int i = 0; i < 127; i++)
        in[i] = (char)(i + 1);
    in[127] = '\0';
    buf_init(&b, 4096);
    assert_int_equal(buf_appends(&b, "\""), 0);
    assert_int_equal(buf_append_json_escaped(&b, in, 127), 0);
    assert_int_equal(buf_appends(&b, "\""), 0);
    cJSON *v = cJSON_Parse(b.data);
    assert_non_null(v);
    assert_true(cJSON_IsString(v));
    assert_string_equal(v->valuestring, in);
    cJSON_Delete(v);
    buf_cleanup(&b);
}

static void test_buf_appendf_grows_past_its_stack_buffer(void **state) {
    (void)state;
    struct buf b;
    char big[1000];

    memset(big, 'q', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    buf_init(&b, 1 << 20);
    assert_int_equal(buf_appendf(&b, "%d-%s", 42, "small"), 0);
    assert_int_equal(buf_appendf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 8 + 1 + 999 + 1);
    assert_int_equal(strncmp(b.data, "42-small[qqq", 12), 0);
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(strlen(b.data), b.len);
    /* Many appends grow the buffer geometrically and keep the contents. */
    for (int i = 0; i < 10000; i++)
        assert_int_equal(buf_appendf(&b, "%04d", i % 10000), 0);
    assert_int_equal(b.len, 1009 + 40000);
    assert_memory_equal(b.data + b.len - 8, "99989999", 8);
    buf_cleanup(&b);
}

static void test_buf_appendf_exact_fit_at_the_bound(void **state) {
    (void)state;
    struct buf b;
    char s[300];

    memset(s, 'k', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    buf_init(&b, 299);
    assert_int_equal(buf_appendf(&b, "%s", s), 0);
    assert_int_equal(b.len, 299);
    assert_int_equal(b.data[299], '\0');
    assert_int_equal(buf_appendf(&b, "%s", ""), 0);
    assert_int_equal(buf_appendf(&b, "x"), GHE_TOOBIG);
    buf_cleanup(&b);
}

static void test_buf_detach_hands_over_the_contents(void **state) {
    (void)state;
    struct buf b;
    size_t len = 99;

    buf_init(&b, 100);
    assert_int_equal(buf_appends(&b, "owned"), 0);
    char *s = buf_detach(&b, &len);
    assert_string_equal(s, "owned");
    assert_int_equal(len, 5);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
    free(s);

    /* The buffer is reusable, and detaching an empty one gives an empty string. */
    s = buf_detach(&b, &len);
    assert_non_null(s);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    free(s);
    assert_int_equal(buf_appends(&b, "again"), 0);
    s = buf_detach(&b, NULL);
    assert_string_equal(s, "again");
    free(s);
    buf_cleanup(&b);
}

static void test_buf_copy_str_cuts_and_terminates(void **state) {
    char d[4];
    (void)state;

    buf_copy_str(d, sizeof(d), "abc");
    assert_string_equal(d, "abc");
    buf_copy_str(d, sizeof(d), "abcdef");
    assert_string_equal(d, "abc");
    buf_copy_str(d, sizeof(d), NULL);
    assert_string_equal(d, "");
    buf_copy_str(d, 1, "x");
    assert_string_equal(d, "");
}

/* UTF-8: strict sequences only, each of the four lengths, and the refusals at their edges. */
static void test_buf_utf8_len(void **state) {
    static const struct {
        const char *s;
        size_t len;
    } cases[] = {
        {"a", 1},
        {"\xC3\xA9", 2},
        {"\xE2\x82\xAC", 3},
        {"\xF0\x9F\x98\x80", 4},
        {"\xC0\xAF", 0},
        {"\xC1\xBF", 0},
        {"\xE0\x80\xAF", 0},
        {"\xED\xA0\x80", 0},
        {"\xF4\x90\x80\x80", 0},
        {"\xF5\x80\x80\x80", 0},
        {"\x80", 0},
        {"\xC3", 0},
        {"\xE2\x82", 0},
        {"\xE2\x28\xA1", 0},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = buf_utf8_len((const unsigned char *)cases[i].s, strlen(cases[i].s));
        if (n != cases[i].len)
            fail_msg("case %zu: %zu, want %zu", i, n, cases[i].len);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_starts_empty_and_appends_nul_terminated),
        cmocka_unit_test(test_buf_bound_is_enforced_exactly),
        cmocka_unit_test(test_buf_failed_append_changes_nothing),
        cmocka_unit_test(test_buf_failed_json_escape_changes_nothing),
        cmocka_unit_test(test_buf_json_escaping),
        cmocka_unit_test(test_buf_json_escaping_round_trips_through_cjson),
        cmocka_unit_test(test_buf_appendf_grows_past_its_stack_buffer),
        cmocka_unit_test(test_buf_appendf_exact_fit_at_the_bound),
        cmocka_unit_test(test_buf_detach_hands_over_the_contents),
        cmocka_unit_test(test_buf_copy_str_cuts_and_terminates),
        cmocka_unit_test(test_buf_utf8_len),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
