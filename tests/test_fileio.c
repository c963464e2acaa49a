/*
 * Unit tests for fileio.c: a bounded whole-file read returns the bytes, refuses
 * what is over the bound with a message that says so, and refuses FIFOs,
 * folders and (when asked) symbolic links without blocking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpuhook/error.h"
#include "gpuhook/fileio.h"

struct tmp {
    char dir[64];
    char path[128];
};

static int setup(void **state) {
    struct tmp *t = calloc(1, sizeof(*t));
    snprintf(t->dir, sizeof(t->dir), "/tmp/gpuhook-fileio-XXXXXX");
    if (!mkdtemp(t->dir))
        return -1;
    *state = t;
    return 0;
}

static int teardown(void **state) {
    struct tmp *t = *state;
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", t->dir);
    int rc = system(cmd);
    free(t);
    return rc == 0 ? 0 : -1;
}

static const char *make_file(struct tmp *t, const char *name, const char *data, size_t n) {
    snprintf(t->path, sizeof(t->path), "%s/%s", t->dir, name);
    FILE *f = fopen(t->path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return t->path;
}

static void test_fileio_reads_exactly_the_bytes(void **state) {
    struct tmp *t = *state;
    char *out = NULL;
    size_t len = 0;
    char err[256];
    const char *p = make_file(t, "a", "ab\0cd", 5);
    assert_int_equal(fileio_read(p, 5, 0, &out, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 5);
    assert_memory_equal(out, "ab\0cd", 5);
    assert_int_equal(out[5], '\0');
    free(out);
    p = make_file(t, "empty", "", 0);
    assert_int_equal(fileio_read(p, 5, 0, &out, &len, err, sizeof(err)), 0);
    assert_int_equal(len, 0);
    assert_string_equal(out, "");
    free(out);
}

static void test_fileio_refuses_a_file_over_the_bound_and_says_so(void **state) {
    struct tmp *t = *state;
    char *out = (char *)1;
    size_t len = 7;
    char err[256];
    char want[256];
    const char *p = make_file(t, "big", "123456", 6);
    assert_int_equal(fileio_read(p, 5, 0, &out, &len, err, sizeof(err)), GHE_TOOBIG);
    assert_null(out);
    assert_int_equal(len, 0);
    snprintf(want, sizeof(want), "%s: larger than 5 bytes", p);
    assert_string_equal(err, want);
}

static void test_fileio_refuses_fifos_folders_and_missing_files(void **state) {
    struct tmp *t = *state;
    char *out = NULL;
    size_t len = 0;
    char err[256];
    char fifo[160];
    snprintf(fifo, sizeof(fifo), "%s/f.json", t->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* No writer: a blocking open would hang here forever. */
    assert_int_equal(fileio_read(fifo, 100, 0, &out, &len, err, sizeof(err)), GHE_IO);
    assert_non_null(strstr(err, "not a regular file"));
    assert_int_equal(fileio_read(t->dir, 100, 0, &out, &len, err, sizeof(err)), GHE_IO);
    assert_non_null(strstr(err, "not a regular file"));
    snprintf(fifo, sizeof(fifo), "%s/missing", t->dir);
    assert_int_equal(fileio_read(fifo, 100, 0, &out, &len, err, sizeof(err)), GHE_IO);
    assert_non_null(strstr(err, "cannot open: No such file or directory"));
}

static void test_fileio_follows_symlinks_unless_told_not_to(void **state) {
    struct tmp *t = *state;
    char *out = NULL;
    size_t len = 0;
    char err[256];
    char link[160];
    const char *p = make_file(t, "target", "xyz", 3);
    snprintf(link, sizeof(link), "%s/link", t->dir);
    assert_int_equal(symlink(p, link), 0);
    /* Kubernetes mounts Secrets as symbolic links, so config files follow them. */
    assert_int_equal(fileio_read(link, 10, 0, &out, &len, err, sizeof(err)), 0);
    assert_string_equal(out, "xyz");
    free(out);
    assert_int_equal(fileio_read(link, 10, FILEIO_NOFOLLOW, &out, &len, err, sizeof(err)), GHE_IO);
    assert_null(out);
    assert_non_null(strstr(err, "is a symbolic link"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fileio_reads_exactly_the_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fileio_refuses_a_file_over_the_bound_and_says_so,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_fileio_refuses_fifos_folders_and_missing_files, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fileio_follows_symlinks_unless_told_not_to, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
