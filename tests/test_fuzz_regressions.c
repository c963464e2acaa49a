/*
 * Replays every input under tests/fuzz/regressions/<target>/ (each a crash
 * the fuzzers found, minimised) and the seed corpus tests/fuzz/corpus/<target>/
 * through the fuzz targets' own bodies, in the normal build. The bodies check
 * invariants, not only memory safety: a status never 500, hostile values
 * carried byte for byte, messages on every failure. A broken invariant aborts.
 *
 * The targets are compiled into this test (FUZZ_NO_MAIN drops their libFuzzer
 * entry point), so it needs neither Clang nor tests/fuzz/CMakeLists.txt,
 * which is only read with ENABLE_FUZZING.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NO_MAIN 1
#include "fuzz/fuzz_common.c"
#include "fuzz/fuzz_config.c"
#include "fuzz/fuzz_event.c"
#include "fuzz/fuzz_request.c"
#include "fuzz/fuzz_signature.c"
#include "fuzz/fuzz_template.c"

typedef int (*fuzz_entry)(const uint8_t *data, size_t size);

static uint8_t *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long n;

    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    data = malloc((size_t)n + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *size = (size_t)n;
    return data;
}

/* Runs every file in tests/fuzz/<kind>/<target>/ through entry; returns how many ran. */
static size_t replay(const char *kind, const char *target, fuzz_entry entry) {
    char rel[256], dir[4096], path[8192];
    size_t count = 0;

    snprintf(rel, sizeof(rel), "tests/fuzz/%s/%s", kind, target);
    fuzz_source_path(dir, sizeof(dir), rel);
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t size = 0;
        if (e->d_name[0] == '.' || strncmp(e->d_name, "README", 6) == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        uint8_t *data = read_all(path, &size);
        print_message("%s/%s/%s\n", kind, target, e->d_name);
        entry(data, size);
        free(data);
        count++;
    }
    closedir(d);
    return count;
}

struct target_case {
    const char *name;
    fuzz_entry entry;
};

static const struct target_case targets[] = {
    {"signature", fuzz_signature_one}, {"event", fuzz_event_one},
    {"template", fuzz_template_one},   {"config", fuzz_config_one},
    {"request", fuzz_request_one},
};

static void test_fuzz_regressions_keep_their_invariants(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++)
        replay("regressions", targets[i].name, targets[i].entry);
}

static void test_fuzz_seed_corpus_keeps_its_invariants(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        /* Every target has seeds: an empty folder means make-corpus.sh was not run. */
        if (replay("corpus", targets[i].name, targets[i].entry) == 0)
            fail_msg("tests/fuzz/corpus/%s has no seeds", targets[i].name);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fuzz_regressions_keep_their_invariants),
        cmocka_unit_test(test_fuzz_seed_corpus_keeps_its_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
