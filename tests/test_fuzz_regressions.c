/*
 * Replays every input under tests/fuzz/regressions/<target>/ (each a crash
 * the fuzzers found, minimised) and the seed corpus tests/fuzz/corpus/<target>/
 * through the fuzz targets' own bodies, in the normal build. The bodies check
 * invariants, not only memory safety: a status never 500, hostile values
 * carried byte for byte, messages on every failure. A broken invariant aborts.
 *
 * The fuzzers' findings also get a table of cases of their own below, with the
 * exact outcome each must have.
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
#include "fuzz/fuzz_ghsummary.c"
#include "fuzz/fuzz_gpuview.c"
#include "fuzz/fuzz_kwatch.c"
#include "fuzz/fuzz_retryafter.c"
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
    {"request", fuzz_request_one},     {"retryafter", fuzz_retryafter_one},
    {"kwatch", fuzz_kwatch_one},       {"gpuview", fuzz_gpuview_one},
    {"ghsummary", fuzz_ghsummary_one},
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

/*
 * fuzz_template found that a template or binding file that starts like JSON
 * was read by cJSON alone, which ignores what follows the first value, keeps
 * a key given twice and cuts a string at \u0000, though yamljson refuses all
 * of these in YAML. Such files now go to the YAML reader.
 */
struct yamljson_case {
    const char *text;
    int rc;
    const char *message; /* the message, or the document printed compactly */
};

static const struct yamljson_case yamljson_cases[] = {
    {"{}}", GHE_INVAL, "t.json:1: did not find expected <document start>"},
    {"{\"a\":1}\n---\n{\"b\":2}\n", GHE_INVAL,
     "t.json:2: holds more than one document; put one object per file"},
    {"{\"a\":1,\"a\":2}", GHE_INVAL, "t.json:1: duplicate key \"a\""},
    {"{\n \"k\": {\"b\": 1,\n  \"b\": 1}}", GHE_INVAL, "t.json:3: duplicate key \"b\""},
    {"{\"a\":\"x\\u0000y\"}", GHE_INVAL, "t.json:1: a scalar holds a NUL character"},
    /* What the fast path is for still takes it, and a YAML comment after JSON is fine. */
    {" {\"a\": [1, 2.5e3, \"s\", true, null], \"b\": {\"a\": 1}}\r\n", 0,
     "{\"a\":[1,2500,\"s\",true,null],\"b\":{\"a\":1}}"},
    {"[1] # a comment\n", 0, "[1]"},
    {"[]\n...\n", 0, "[]"},
};

static void test_yamljson_json_files_are_refused_as_yaml_would_be(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(yamljson_cases) / sizeof(yamljson_cases[0]); i++) {
        const struct yamljson_case *c = &yamljson_cases[i];
        cJSON *doc = NULL;
        char err[256] = "";
        int rc = yamljson_load_string("t.json", c->text, strlen(c->text), &doc, err, sizeof(err));
        print_message("case %zu: %s\n", i, c->text);
        assert_int_equal(rc, c->rc);
        if (rc) {
            assert_null(doc);
            assert_string_equal(err, c->message);
        } else {
            char *printed = cJSON_PrintUnformatted(doc);
            assert_non_null(printed);
            assert_string_equal(printed, c->message);
            free(printed);
            cJSON_Delete(doc);
        }
    }
}

/*
 * fuzz_event found two bugs in the pruning parser behind the webhook
 * (jsonprune.c): a key decoded from \u0000 made the path match read past the
 * end of the path's key (ASan: global-buffer-overflow), and numbers longer than
 * 63 characters were cut before strtod, so 1 followed by 70 zeros and e-69 read
 * as 1e62. Both readings must now be cJSON's, whole or pruned.
 */
static void test_jsonprune_reads_nul_keys_and_long_numbers_as_cjson_does(void **state) {
    static const char zeros[] =
        "0000000000000000000000000000000000000000000000000000000000000000000000";
    char body[512], text[512];
    (void)state;

    snprintf(text, sizeof(text),
             "{\"ref\\u0000\":\"refs/heads/x\",\"after\":\"abc\",\"number\":1%se-69,"
             "\"repository\":{\"clone_url\":\"u\"},\"pull_request\":{\"head\":{\"sha\":\"s\"},"
             "\"number\":1%s}}",
             zeros, zeros);
    for (int pruned = 0; pruned < 2; pruned++) {
        for (int pr = 0; pr < 2; pr++) {
            struct event ev;
            char err[256] = "";
            int rc;
            event_init(&ev);
            memcpy(body, text, strlen(text));
            if (pruned)
                rc = event_parse_delivery_paths(&ev, pr ? "pull_request" : "push", "d", "1",
                                                "application/json", body, strlen(text), NULL, 0,
                                                err, sizeof(err));
            else
                rc = event_parse_delivery(&ev, pr ? "pull_request" : "push", "d", "1",
                                          "application/json", body, strlen(text), err, sizeof(err));
            print_message("pruned %d, pull_request %d: %s\n", pruned, pr, err);
            assert_int_equal(rc, 0);
            if (pr) {
                /* number is 10, not 1e62; pull_request.number is past 2^53, so ignored. */
                assert_string_equal(ev.pr_number, "10");
            } else {
                assert_string_equal(ev.ref, "refs/heads/x");
                assert_string_equal(ev.branch, "x");
            }
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(ev.body, "number");
            assert_true(cJSON_IsNumber(n));
            assert_true(n->valuedouble == 10.0);
            event_cleanup(&ev);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fuzz_regressions_keep_their_invariants),
        cmocka_unit_test(test_fuzz_seed_corpus_keeps_its_invariants),
        cmocka_unit_test(test_yamljson_json_files_are_refused_as_yaml_would_be),
        cmocka_unit_test(test_jsonprune_reads_nul_keys_and_long_numbers_as_cjson_does),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
