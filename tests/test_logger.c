/*
 * Unit tests for logger.c: stderr is captured into a temp file, and each test
 * checks that every line is one JSON object (parsed with cJSON) with an RFC
 * 3339 UTC timestamp, that levels filter, numeric fields are numbers, values
 * are escaped and cut at 1 KiB, and an overlong line still closes properly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "gpuhook/logger.h"

static FILE *capture_file;
static int saved_stderr = -1;

/* Points fd 2 at a fresh temp file. Assert nothing until capture_end(): cmocka reports there. */
static void capture_begin(void) {
    fflush(stderr);
    capture_file = tmpfile();
    assert_non_null(capture_file);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(capture_file), STDERR_FILENO) >= 0);
}

/* Restores stderr and returns what was written (caller frees). */
static char *capture_end(void) {
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    saved_stderr = -1;
    long n = ftell(capture_file) >= 0 ? lseek(fileno(capture_file), 0, SEEK_END) : 0;
    char *out = calloc(1, (size_t)n + 1);
    assert_non_null(out);
    assert_int_equal(pread(fileno(capture_file), out, (size_t)n, 0), n);
    fclose(capture_file);
    capture_file = NULL;
    return out;
}

/* Splits text into lines; each must end in "\n" and parse as one JSON object. */
static size_t parse_lines(char *text, cJSON **objs, size_t max) {
    size_t n = 0;
    char *line = text;

    while (*line) {
        char *end = strchr(line, '\n');
        if (!end)
            fail_msg("last line has no newline: %s", line);
        *end = '\0';
        assert_true(n < max);
        const char *parse_end = NULL;
        cJSON *o = cJSON_ParseWithOpts(line, &parse_end, true);
        if (!cJSON_IsObject(o))
            fail_msg("line %zu is not one JSON object: %s", n + 1, line);
        objs[n++] = o;
        line = end + 1;
    }
    return n;
}

static void free_objs(cJSON **objs, size_t n) {
    for (size_t i = 0; i < n; i++)
        cJSON_Delete(objs[i]);
}

static const char *str_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int reset_level(void **state) {
    (void)state;
    logger_set_level(LOGGER_INFO);
    return 0;
}

static void test_logger_writes_one_json_object_per_line(void **state) {
    (void)state;
    cJSON *objs[8];

    capture_begin();
    LOGGER_INFO_("started", "port", "8080");
    LOGGER_WARN_("slow", "request_id", "abc");
    LOGGER_ERROR_("failed");
    char *text = capture_end();

    size_t n = parse_lines(text, objs, 8);
    assert_int_equal(n, 3);
    assert_string_equal(str_field(objs[0], "level"), "info");
    assert_string_equal(str_field(objs[0], "msg"), "started");
    assert_string_equal(str_field(objs[1], "level"), "warn");
    assert_string_equal(str_field(objs[1], "request_id"), "abc");
    assert_string_equal(str_field(objs[2], "level"), "error");
    assert_string_equal(str_field(objs[2], "msg"), "failed");
    /* ts, level and msg come first, in that order. */
    assert_string_equal(objs[0]->child->string, "ts");
    assert_string_equal(objs[0]->child->next->string, "level");
    assert_string_equal(objs[0]->child->next->next->string, "msg");
    free_objs(objs, n);
    free(text);
}

static void test_logger_ts_is_rfc3339_utc_with_z(void **state) {
    (void)state;
    cJSON *objs[2];
    time_t before = time(NULL);

    capture_begin();
    LOGGER_INFO_("tick");
    char *text = capture_end();
    time_t after = time(NULL);

    assert_int_equal(parse_lines(text, objs, 2), 1);
    const char *ts = str_field(objs[0], "ts");
    assert_non_null(ts);
    /* YYYY-MM-DDTHH:MM:SS.mmmZ */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    assert_int_equal(strlen(ts), strlen(shape));
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? (ts[i] < '0' || ts[i] > '9') : ts[i] != shape[i])
            fail_msg("ts %s does not match %s at %zu", ts, shape, i);
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    assert_non_null(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm);
    assert_true(t >= before - 1 && t <= after + 1);
    free_objs(objs, 1);
    free(text);
}

static void test_logger_level_filters_lower_levels(void **state) {
    (void)state;
    cJSON *objs[8];

    logger_set_level(LOGGER_WARN);
    assert_false(logger_enabled(LOGGER_DEBUG));
    assert_false(logger_enabled(LOGGER_INFO));
    assert_true(logger_enabled(LOGGER_WARN));
    assert_true(logger_enabled(LOGGER_ERROR));
    capture_begin();
    LOGGER_DEBUG_("debug line");
    LOGGER_INFO_("info line");
    LOGGER_WARN_("warn line");
    LOGGER_ERROR_("error line");
    char *text = capture_end();
    size_t n = parse_lines(text, objs, 8);
    assert_int_equal(n, 2);
    assert_string_equal(str_field(objs[0], "msg"), "warn line");
    assert_string_equal(str_field(objs[1], "msg"), "error line");
    free_objs(objs, n);
    free(text);

    logger_set_level(LOGGER_DEBUG);
    capture_begin();
    LOGGER_DEBUG_("debug line");
    text = capture_end();
    n = parse_lines(text, objs, 8);
    assert_int_equal(n, 1);
    assert_string_equal(str_field(objs[0], "level"), "debug");
    free_objs(objs, n);
    free(text);
}

static void test_logger_level_names_parse(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int level;
    } cases[] = {
        {"debug", LOGGER_DEBUG},
        {"info", LOGGER_INFO},
        {"warn", LOGGER_WARN},
        {"error", LOGGER_ERROR},
        {"WARN", -1},
        {"warning", -1},
        {"", -1},
        {"fatal", -1},
        {NULL, -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(logger_level_parse(cases[i].name), cases[i].level);
}

/* Numeric keys with numeric values are JSON numbers; anything else stays a string. */
static void test_logger_numeric_fields_are_numbers(void **state) {
    (void)state;
    static const struct {
        const char *key;
        const char *value;
        bool number;
        double as_number;
    } cases[] = {
        {"status", "201", true, 201},        {"code", "0", true, 0},
        {"duration_ms", "12.5", true, 12.5}, {"port", "8080", true, 8080},
        {"depth", "-3", true, -3},           {"attempt", "2", true, 2},
        {"status", "abc", false, 0},         {"status", "", false, 0},
        {"status", "1.2.3", false, 0},       {"status", "-", false, 0},
        {"status", ".", false, 0},           {"status", "5.", false, 0},
        {"status", "007", false, 0},         {"status", "--1", false, 0},
        {"status", "1-2", false, 0},         {"request_id", "123", false, 0},
        {"pipelinerun", "42", false, 0},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *objs[2];
        capture_begin();
        LOGGER_INFO_("numbers", cases[i].key, cases[i].value);
        char *text = capture_end();
        char copy[512];
        snprintf(copy, sizeof(copy), "%s", text);
        assert_int_equal(parse_lines(text, objs, 2), 1);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(objs[0], cases[i].key);
        if (cases[i].number) {
            if (!cJSON_IsNumber(v) || v->valuedouble != cases[i].as_number)
                fail_msg("case %zu: expected the number %g in %s", i, cases[i].as_number, copy);
        } else {
            if (!cJSON_IsString(v) || strcmp(v->valuestring, cases[i].value) != 0)
                fail_msg("case %zu: expected the string \"%s\" in %s", i, cases[i].value, copy);
        }
        free_objs(objs, 1);
        free(text);
    }
}

static void test_logger_escapes_quotes_newlines_and_control_characters(void **state) {
    (void)state;
    cJSON *objs[2];
    static const char *msg = "a \"quoted\"\nmessage";
    static const char *value = "back\\slash \"q\" \n\r\t \x01\x1f caf\xc3\xa9 $(x) `y` </script>";

    capture_begin();
    LOGGER_INFO_(msg, "branch", value);
    char *text = capture_end();
    /* Exactly one newline: the terminator. */
    assert_int_equal(strchr(text, '\n') - text, strlen(text) - 1);
    assert_int_equal(parse_lines(text, objs, 2), 1);
    assert_string_equal(str_field(objs[0], "msg"), msg);
    assert_string_equal(str_field(objs[0], "branch"), value);
    free_objs(objs, 1);
    free(text);
}

static void test_logger_null_value_skips_the_field(void **state) {
    (void)state;
    cJSON *objs[2];

    capture_begin();
    LOGGER_INFO_("partial", "request_id", (const char *)NULL, "event", "push");
    char *text = capture_end();
    assert_int_equal(parse_lines(text, objs, 2), 1);
    assert_null(cJSON_GetObjectItemCaseSensitive(objs[0], "request_id"));
    assert_string_equal(str_field(objs[0], "event"), "push");
    free_objs(objs, 1);
    free(text);
}

static void test_logger_values_are_cut_at_1_kib(void **state) {
    (void)state;
    cJSON *objs[2];
    char *big = malloc(5001);

    assert_non_null(big);
    memset(big, 'v', 5000);
    big[5000] = '\0';
    capture_begin();
    LOGGER_INFO_("big", "error", big, "event", "push");
    char *text = capture_end();
    assert_int_equal(parse_lines(text, objs, 2), 1);
    assert_int_equal(strlen(str_field(objs[0], "error")), 1024);
    /* The fields after the cut one are still there. */
    assert_string_equal(str_field(objs[0], "event"), "push");
    free_objs(objs, 1);
    free(text);
    free(big);
}

static bool valid_utf8(const unsigned char *s) {
    while (*s) {
        int n = *s < 0x80             ? 0
                : (*s & 0xe0) == 0xc0 ? 1
                : (*s & 0xf0) == 0xe0 ? 2
                : (*s & 0xf8) == 0xf0 ? 3
                                      : -1;
        if (n < 0)
            return false;
        s++;
        for (int i = 0; i < n; i++, s++)
            if ((*s & 0xc0) != 0x80)
                return false;
    }
    return true;
}

static void test_logger_cut_never_splits_a_utf8_character(void **state) {
    (void)state;
    char big[1100];

    /* 1023 ASCII bytes, then two-byte characters: the limit falls inside one. */
    memset(big, 'a', 1023);
    for (size_t i = 1023; i + 2 < sizeof(big); i += 2) {
        big[i] = '\xc3';
        big[i + 1] = '\xa9';
    }
    big[sizeof(big) - 1] = '\0';
    capture_begin();
    LOGGER_INFO_("utf8", "message", big);
    char *text = capture_end();
    assert_true(valid_utf8((const unsigned char *)text));
    cJSON *objs[2];
    assert_int_equal(parse_lines(text, objs, 2), 1);
    const char *v = str_field(objs[0], "message");
    assert_true(strlen(v) <= 1024);
    assert_true(strlen(v) >= 1023);
    free_objs(objs, 1);
    free(text);
}

/* Far more than the 16 KiB line limit: the line is still one closed JSON object. */
static void test_logger_overlong_line_stays_one_json_object(void **state) {
    (void)state;
    char quotes[1025];

    memset(quotes, '"', 1024); /* each escapes to two bytes */
    quotes[1024] = '\0';
    for (int pad = 0; pad < 24; pad++) {
        char msg[64];
        cJSON *objs[2];
        memset(msg, 'm', (size_t)pad);
        msg[pad] = '\0';
        capture_begin();
        LOGGER_INFO_(msg, "a", quotes, "b", quotes, "c", quotes, "d", quotes, "e", quotes, "f",
                     quotes, "g", quotes, "h", quotes, "i", quotes, "j", "\x01\x01\x01\x01",
                     "status", "200", "event", "push");
        char *text = capture_end();
        assert_true(strlen(text) <= 16384);
        assert_int_equal(parse_lines(text, objs, 2), 1);
        assert_string_equal(str_field(objs[0], "msg"), msg);
        assert_string_equal(str_field(objs[0], "a"), quotes);
        /* Fields are whole or absent, never half-written. */
        for (const cJSON *f = objs[0]->child; f; f = f->next)
            if (strlen(f->string) == 1 && f->string[0] <= 'i')
                assert_string_equal(f->valuestring, quotes);
        free_objs(objs, 1);
        free(text);
    }
}

static void *log_from_a_thread(void *arg) {
    char id[16];
    snprintf(id, sizeof(id), "%d", *(int *)arg);
    for (int i = 0; i < 200; i++)
        LOGGER_INFO_("concurrent line with some length to it", "request_id", id, "status", "200");
    return NULL;
}

static void test_logger_lines_from_threads_never_interleave(void **state) {
    (void)state;
    pthread_t t[4];
    int ids[4] = {0, 1, 2, 3};
    static cJSON *objs[800];

    capture_begin();
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, log_from_a_thread, &ids[i]);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    char *text = capture_end();
    size_t n = parse_lines(text, objs, 800);
    assert_int_equal(n, 800);
    free_objs(objs, n);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_logger_writes_one_json_object_per_line, reset_level),
        cmocka_unit_test_setup(test_logger_ts_is_rfc3339_utc_with_z, reset_level),
        cmocka_unit_test_setup(test_logger_level_filters_lower_levels, reset_level),
        cmocka_unit_test_setup(test_logger_level_names_parse, reset_level),
        cmocka_unit_test_setup(test_logger_numeric_fields_are_numbers, reset_level),
        cmocka_unit_test_setup(test_logger_escapes_quotes_newlines_and_control_characters,
                               reset_level),
        cmocka_unit_test_setup(test_logger_null_value_skips_the_field, reset_level),
        cmocka_unit_test_setup(test_logger_values_are_cut_at_1_kib, reset_level),
        cmocka_unit_test_setup(test_logger_cut_never_splits_a_utf8_character, reset_level),
        cmocka_unit_test_setup(test_logger_overlong_line_stays_one_json_object, reset_level),
        cmocka_unit_test_setup(test_logger_lines_from_threads_never_interleave, reset_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
