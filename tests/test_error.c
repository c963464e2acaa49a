/*
 * Unit tests for error.c: every code has its name, and errlist_at writes the
 * one "FILE: PATH: message" form that config.c and select.c report with.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "gpuhook/error.h"

static void test_error_every_code_has_a_name(void **state) {
    (void)state;
    assert_string_equal(ghe_strerror(GHE_OK), "ok");
    assert_string_equal(ghe_strerror(GHE_TOOBIG), "too big");
    assert_string_equal(ghe_strerror(GHE_UNSUPPORTED), "unsupported");
    assert_string_equal(ghe_strerror(12345), "unknown error");
}

static void test_error_errlist_at_writes_file_path_message(void **state) {
    struct errlist el;

    (void)state;
    errlist_init(&el);
    errlist_at(&el, "config/gpuhook.json", ".selection.rules[0].variant", "\"%s\" is not one of %s",
               "huge", "lite, original, skip");
    errlist_add(&el, "%s: line %d: not a JSON object", "x.json", 3);
    assert_int_equal(el.count, 2);
    assert_string_equal(el.items[0], "config/gpuhook.json: .selection.rules[0].variant: \"huge\" "
                                     "is not one of lite, original, skip");
    assert_string_equal(el.items[1], "x.json: line 3: not a JSON object");
    /* Messages keep their order past the first growth of the list. */
    for (int i = 0; i < 20; i++)
        errlist_at(&el, "f", ".k", "%d", i);
    assert_int_equal(el.count, 22);
    assert_string_equal(el.items[21], "f: .k: 19");
    errlist_cleanup(&el);
    assert_int_equal(el.count, 0);
    assert_null(el.items);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_every_code_has_a_name),
        cmocka_unit_test(test_error_errlist_at_writes_file_path_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
