/*
 * Unit tests for select.c: loading the "selection" rules with every error
 * reported at its place, and choosing a variant for an event.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/error.h"
#include "gpuhook/event.h"
#include "gpuhook/gpu.h"
#include "gpuhook/select.h"

#define FILE_NAME "gpuhook.json"
#define MAX_LIST 4

/* Parses a selection given as JSON text; the text must be valid JSON. */
static int parse_selection(const char *json, struct select_rules **out, struct errlist *el) {
    cJSON *sel = cJSON_Parse(json);
    assert_non_null(sel);
    int rc = select_rules_parse(sel, FILE_NAME, out, el);
    cJSON_Delete(sel);
    return rc;
}

static struct select_rules *load_rules(const char *json) {
    struct select_rules *rules = NULL;
    struct errlist el;

    errlist_init(&el);
    int rc = parse_selection(json, &rules, &el);
    for (size_t i = 0; i < el.count; i++)
        print_error("unexpected: %s\n", el.items[i]);
    assert_int_equal(rc, 0);
    assert_int_equal(el.count, 0);
    assert_non_null(rules);
    errlist_cleanup(&el);
    return rules;
}

/* An event described by its values; NULL means the event lacks it. */
struct event_spec {
    const char *event;
    const char *branch;
    const char *base_branch;
    const char *tag;
    const char *repo;
    const char *message;
    const char *labels[MAX_LIST];
    const char *paths[MAX_LIST];
    const char *added_label;
    const char *head_repo;   /* pull_request.head.repo.full_name */
    const char *association; /* pull_request.author_association */
};

static char **strv_dup(const char *const *src, size_t *count) {
    char **v = calloc(MAX_LIST, sizeof(*v));
    assert_non_null(v);
    *count = 0;
    for (size_t i = 0; i < MAX_LIST && src[i]; i++) {
        v[i] = strdup(src[i]);
        assert_non_null(v[i]);
        (*count)++;
    }
    return v;
}

static void event_from_spec(struct event *ev, const struct event_spec *s) {
    event_init(ev);
    assert_int_equal(event_set(&ev->event, s->event), 0);
    assert_int_equal(event_set(&ev->branch, s->branch), 0);
    assert_int_equal(event_set(&ev->base_branch, s->base_branch), 0);
    assert_int_equal(event_set(&ev->tag, s->tag), 0);
    assert_int_equal(event_set(&ev->repo_full_name, s->repo), 0);
    assert_int_equal(event_set(&ev->message, s->message), 0);
    assert_int_equal(event_set(&ev->added_label, s->added_label), 0);
    assert_int_equal(event_set(&ev->head_repo, s->head_repo), 0);
    assert_int_equal(event_set(&ev->author_assoc, s->association), 0);
    ev->labels = strv_dup(s->labels, &ev->label_count);
    ev->changed_paths = strv_dup(s->paths, &ev->changed_count);
}

static const char *const ordered_rules =
    "{\"default\":\"lite\",\"rules\":["
    "{\"name\":\"skip-marker\",\"when\":{\"message_contains\":\"[skip "
    "gpu]\"},\"variant\":\"skip\"},"
    "{\"name\":\"main-full\",\"when\":{\"event\":\"push\",\"branch\":\"main\"},"
    "\"variant\":\"original\"},"
    "{\"name\":\"release-tags\",\"when\":{\"event\":[\"push\"],\"tag\":\"v*\"},"
    "\"variant\":\"original\"},"
    "{\"name\":\"pr-to-release\",\"when\":{\"event\":\"pull_request\",\"base_branch\":\"release/"
    "*\"},\"variant\":\"original\"},"
    "{\"name\":\"gpu-label\",\"when\":{\"label\":\"gpu:orig*\"},\"variant\":\"original\"},"
    "{\"name\":\"big-org\",\"when\":{\"repository\":\"big-org/*\",\"event\":[\"trigger\"]},"
    "\"variant\":\"original\"},"
    "{\"name\":\"docs-only\",\"when\":{\"changed_path\":\"docs/*\"},\"variant\":\"skip\"},"
    "{\"name\":\"feature\",\"when\":{\"branch\":\"feature/*\"},\"variant\":\"lite\"},"
    "{\"name\":\"original-marker\",\"when\":{\"message_contains\":\"[gpu:original]\"},"
    "\"variant\":\"original\"}"
    "]}";

struct decide_case {
    const char *title;
    struct event_spec ev;
    int variant;
    const char *rule;
    const char *reason;
};

static const struct decide_case decide_cases[] = {
    {"event and branch",
     {.event = "push", .branch = "main", .message = "fix"},
     SELECT_ORIGINAL,
     "main-full",
     "rule \"main-full\" matched: push to branch \"main\""},
    {"first matching rule wins",
     {.event = "push", .branch = "main", .message = "wip [skip gpu]"},
     SELECT_SKIP,
     "skip-marker",
     "rule \"skip-marker\" matched: push whose message contains \"[skip gpu]\""},
    {"event list and tag glob",
     {.event = "push", .tag = "v1.2.0"},
     SELECT_ORIGINAL,
     "release-tags",
     "rule \"release-tags\" matched: push of tag \"v1.2.0\""},
    {"tag glob that does not match",
     {.event = "push", .tag = "nightly"},
     SELECT_LITE,
     "default",
     "no rule matched; default variant lite"},
    {"base branch glob",
     {.event = "pull_request", .branch = "fix", .base_branch = "release/1.0"},
     SELECT_ORIGINAL,
     "pr-to-release",
     "rule \"pr-to-release\" matched: pull_request into branch \"release/1.0\""},
    {"base branch needs the event too",
     {.event = "push", .branch = "x", .base_branch = "release/1.0"},
     SELECT_LITE,
     "default",
     "no rule matched; default variant lite"},
    {"any label matches",
     {.event = "pull_request", .branch = "x", .labels = {"bug", "gpu:original"}},
     SELECT_ORIGINAL,
     "gpu-label",
     "rule \"gpu-label\" matched: pull_request with label \"gpu:original\""},
    {"added label counts as a label",
     {.event = "pull_request", .branch = "x", .added_label = "gpu:original"},
     SELECT_ORIGINAL,
     "gpu-label",
     "rule \"gpu-label\" matched: pull_request with label \"gpu:original\""},
    {"repository glob ignores case",
     {.event = "trigger", .repo = "Big-Org/Model"},
     SELECT_ORIGINAL,
     "big-org",
     "rule \"big-org\" matched: trigger in repository \"Big-Org/Model\""},
    {"repository rule limited to trigger",
     {.event = "push", .repo = "big-org/model"},
     SELECT_LITE,
     "default",
     "no rule matched; default variant lite"},
    {"changed path glob spans folders",
     {.event = "push", .branch = "dev", .paths = {"src/a.c", "docs/guide/a.md"}},
     SELECT_SKIP,
     "docs-only",
     "rule \"docs-only\" matched: push changing \"docs/guide/a.md\""},
    {"changed path never matches a pull request",
     {.event = "pull_request", .branch = "dev", .paths = {"docs/a.md"}},
     SELECT_LITE,
     "default",
     "no rule matched; default variant lite"},
    {"branch glob on a push",
     {.event = "push", .branch = "feature/a/b"},
     SELECT_LITE,
     "feature",
     "rule \"feature\" matched: push to branch \"feature/a/b\""},
    {"branch glob on a pull request head",
     {.event = "pull_request", .branch = "feature/x", .base_branch = "main"},
     SELECT_LITE,
     "feature",
     "rule \"feature\" matched: pull_request from branch \"feature/x\""},
    {"message substring",
     {.event = "push", .branch = "dev", .message = "speed up\n\n[gpu:original] please"},
     SELECT_ORIGINAL,
     "original-marker",
     "rule \"original-marker\" matched: push whose message contains \"[gpu:original]\""},
    {"message is case-sensitive",
     {.event = "push", .branch = "dev", .message = "[GPU:ORIGINAL]"},
     SELECT_LITE,
     "default",
     "no rule matched; default variant lite"},
    {"nothing matches",
     {.event = "push", .branch = "dev"},
     SELECT_LITE,
     "default",
     "no rule matched; default variant lite"},
    {"branch glob is anchored",
     {.event = "push", .branch = "my-main"},
     SELECT_LITE,
     "default",
     "no rule matched; default variant lite"},
};

static void test_select_rules_are_tried_in_order_first_match_wins(void **state) {
    struct select_rules *rules = load_rules(ordered_rules);

    (void)state;
    for (size_t i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
        const struct decide_case *c = &decide_cases[i];
        struct select_decision d;
        struct event ev;

        print_message("case: %s\n", c->title);
        event_from_spec(&ev, &c->ev);
        select_decide(rules, &ev, &d);
        assert_int_equal(d.variant, c->variant);
        assert_string_equal(d.rule, c->rule);
        assert_string_equal(d.reason, c->reason);
        event_cleanup(&ev);
    }
    select_rules_free(rules);
}

/* One rule with a single condition, and an event that lacks the value it tests. */
struct missing_case {
    const char *when;
    struct event_spec ev;
};

static const struct missing_case missing_cases[] = {
    {"{\"event\":\"push\"}", {.branch = "main"}},
    {"{\"branch\":\"*\"}", {.event = "push", .tag = "v1"}},
    {"{\"base_branch\":\"*\"}", {.event = "push", .branch = "main"}},
    {"{\"tag\":\"*\"}", {.event = "push", .branch = "main"}},
    {"{\"repository\":\"*\"}", {.event = "push", .branch = "main"}},
    {"{\"label\":\"*\"}", {.event = "pull_request", .branch = "main"}},
    {"{\"message_contains\":\"x\"}", {.event = "push", .branch = "main"}},
    {"{\"changed_path\":\"*\"}", {.event = "push", .branch = "main"}},
    {"{\"event\":\"push\"}", {.event = "ping"}},
};

static void test_select_condition_on_a_missing_value_does_not_match(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(missing_cases) / sizeof(missing_cases[0]); i++) {
        char json[256];
        struct select_decision d;
        struct event ev;

        snprintf(json, sizeof(json),
                 "{\"default\":\"skip\",\"rules\":[{\"name\":\"r\",\"when\":%s,"
                 "\"variant\":\"original\"}]}",
                 missing_cases[i].when);
        print_message("when %s\n", missing_cases[i].when);
        struct select_rules *rules = load_rules(json);
        event_from_spec(&ev, &missing_cases[i].ev);
        select_decide(rules, &ev, &d);
        assert_int_equal(d.variant, SELECT_SKIP);
        assert_string_equal(d.rule, "default");
        assert_string_equal(d.reason, "no rule matched; default variant skip");
        event_cleanup(&ev);
        select_rules_free(rules);
    }
}

static void test_select_every_condition_of_a_rule_must_hold(void **state) {
    struct select_rules *rules =
        load_rules("{\"rules\":[{\"name\":\"all\",\"when\":{\"event\":[\"push\",\"trigger\"],"
                   "\"branch\":\"ma*\",\"repository\":\"o/*\",\"message_contains\":\"go\","
                   "\"changed_path\":\"*.cu\"},\"variant\":\"original\"}]}");
    const struct event_spec full = {.event = "push",
                                    .branch = "main",
                                    .repo = "o/r",
                                    .message = "go!",
                                    .paths = {"README", "k/x.cu"}};
    struct event_spec partial[5];
    struct select_decision d;
    struct event ev;

    (void)state;
    event_from_spec(&ev, &full);
    select_decide(rules, &ev, &d);
    assert_int_equal(d.variant, SELECT_ORIGINAL);
    assert_string_equal(d.reason, "rule \"all\" matched: push to branch \"main\" in repository "
                                  "\"o/r\" whose message contains \"go\" changing \"k/x.cu\"");
    event_cleanup(&ev);

    for (size_t i = 0; i < 5; i++)
        partial[i] = full;
    partial[0].event = "pull_request";
    partial[1].branch = "dev";
    partial[2].repo = "p/r";
    partial[3].message = "stop";
    partial[4].paths[1] = "k/x.c";
    for (size_t i = 0; i < 5; i++) {
        event_from_spec(&ev, &partial[i]);
        select_decide(rules, &ev, &d);
        assert_int_equal(d.variant, SELECT_LITE);
        assert_string_equal(d.rule, "default");
        event_cleanup(&ev);
    }
    select_rules_free(rules);
}

static void test_select_empty_or_missing_when_matches_every_event(void **state) {
    const char *configs[] = {
        "{\"rules\":[{\"name\":\"all\",\"when\":{},\"variant\":\"original\"}]}",
        "{\"rules\":[{\"name\":\"all\",\"variant\":\"original\"}]}",
    };
    const struct event_spec events[] = {{.event = "push", .branch = "x"},
                                        {.event = "pull_request"},
                                        {.event = "trigger"},
                                        {.event = "ping"}};
    const char *reasons[] = {"rule \"all\" matched: push", "rule \"all\" matched: pull_request",
                             "rule \"all\" matched: trigger",
                             "rule \"all\" matched: event \"ping\""};

    (void)state;
    for (size_t c = 0; c < 2; c++) {
        struct select_rules *rules = load_rules(configs[c]);
        for (size_t i = 0; i < 4; i++) {
            struct select_decision d;
            struct event ev;

            event_from_spec(&ev, &events[i]);
            select_decide(rules, &ev, &d);
            assert_int_equal(d.variant, SELECT_ORIGINAL);
            assert_string_equal(d.rule, "all");
            assert_string_equal(d.reason, reasons[i]);
            event_cleanup(&ev);
        }
        select_rules_free(rules);
    }
}

static void test_select_default_applies_when_no_rule_matches(void **state) {
    const char *configs[] = {"{}", "{\"default\":\"lite\"}", "{\"default\":\"original\"}",
                             "{\"default\":\"skip\",\"rules\":[]}"};
    const int variants[] = {SELECT_LITE, SELECT_LITE, SELECT_ORIGINAL, SELECT_SKIP};
    const char *reasons[] = {
        "no rule matched; default variant lite", "no rule matched; default variant lite",
        "no rule matched; default variant original", "no rule matched; default variant skip"};
    const struct event_spec spec = {.event = "push", .branch = "main"};

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        struct select_rules *rules = load_rules(configs[i]);
        struct select_decision d;
        struct event ev;

        event_from_spec(&ev, &spec);
        select_decide(rules, &ev, &d);
        assert_int_equal(d.variant, variants[i]);
        assert_string_equal(d.rule, "default");
        assert_string_equal(d.reason, reasons[i]);
        event_cleanup(&ev);
        select_rules_free(rules);
    }
}

static void test_select_null_selection_means_default_lite_and_default_gpu_fit(void **state) {
    struct select_rules *rules = NULL;
    struct select_decision d;
    struct errlist el;
    struct event ev;
    const struct event_spec spec = {.event = "push", .branch = "main"};

    (void)state;
    errlist_init(&el);
    assert_int_equal(select_rules_parse(NULL, FILE_NAME, &rules, &el), 0);
    assert_non_null(rules);
    assert_int_equal(el.count, 0);
    const struct gpu_fit_policy *fit = select_rules_gpu_fit(rules);
    assert_int_equal(fit->lite_min_free_mib, 2048);
    assert_int_equal(fit->original_min_free_mib, 8192);
    assert_int_equal(fit->on_insufficient, GPU_FIT_QUEUE);
    assert_int_equal(fit->max_wait_seconds, 0);
    assert_int_equal(fit->on_timeout, GPU_FIT_TIMEOUT_DOWNGRADE);
    event_from_spec(&ev, &spec);
    select_decide(rules, &ev, &d);
    assert_int_equal(d.variant, SELECT_LITE);
    assert_string_equal(d.rule, "default");
    event_cleanup(&ev);
    select_rules_free(rules);
    errlist_cleanup(&el);
}

static void test_select_gpu_fit_values_are_loaded(void **state) {
    struct select_rules *rules =
        load_rules("{\"gpu_fit\":{\"lite_min_free_mib\":0,\"original_min_free_mib\":40000,"
                   "\"on_insufficient\":\"reject\"}}");
    const struct gpu_fit_policy *fit = select_rules_gpu_fit(rules);

    (void)state;
    assert_int_equal(fit->lite_min_free_mib, 0);
    assert_int_equal(fit->original_min_free_mib, 40000);
    assert_int_equal(fit->on_insufficient, GPU_FIT_REJECT);
    select_rules_free(rules);

    rules = load_rules("{\"gpu_fit\":{\"on_insufficient\":\"ignore\",\"lite_min_free_mib\":8192}}");
    fit = select_rules_gpu_fit(rules);
    assert_int_equal(fit->lite_min_free_mib, 8192);
    assert_int_equal(fit->original_min_free_mib, 8192);
    assert_int_equal(fit->on_insufficient, GPU_FIT_IGNORE);
    select_rules_free(rules);

    rules = load_rules("{\"gpu_fit\":{\"on_insufficient\":\"queue\",\"max_wait_seconds\":600,"
                       "\"on_timeout\":\"reject\"}}");
    fit = select_rules_gpu_fit(rules);
    assert_int_equal(fit->on_insufficient, GPU_FIT_QUEUE);
    assert_int_equal(fit->max_wait_seconds, 600);
    assert_int_equal(fit->on_timeout, GPU_FIT_TIMEOUT_REJECT);
    select_rules_free(rules);

    rules = load_rules("{\"gpu_fit\":{\"max_wait_seconds\":0,\"on_timeout\":\"downgrade\"}}");
    fit = select_rules_gpu_fit(rules);
    assert_int_equal(fit->max_wait_seconds, 0);
    assert_int_equal(fit->on_timeout, GPU_FIT_TIMEOUT_DOWNGRADE);
    select_rules_free(rules);
}

static void test_select_rules_names_label_matches_label_globs_only(void **state) {
    struct select_rules *rules = load_rules(
        "{\"rules\":[{\"name\":\"b\",\"when\":{\"branch\":\"gpu:*\"},\"variant\":\"lite\"},"
        "{\"name\":\"l\",\"when\":{\"label\":\"gpu:*\"},\"variant\":\"original\"},"
        "{\"name\":\"m\",\"when\":{\"label\":\"run-[ab]\"},\"variant\":\"lite\"}]}");

    (void)state;
    assert_true(select_rules_names_label(rules, "gpu:original"));
    assert_true(select_rules_names_label(rules, "gpu:"));
    assert_true(select_rules_names_label(rules, "run-b"));
    assert_false(select_rules_names_label(rules, "run-c"));
    assert_false(select_rules_names_label(rules, "bug"));
    assert_false(select_rules_names_label(rules, "GPU:original"));
    assert_false(select_rules_names_label(rules, NULL));
    assert_false(select_rules_names_label(NULL, "gpu:original"));
    select_rules_free(rules);
}

static bool utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t n = *p < 0x80 ? 0 : *p < 0xE0 ? 1 : *p < 0xF0 ? 2 : 3;
        if (*p >= 0x80 && *p < 0xC2)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((p[k] & 0xC0) != 0x80)
                return false;
        }
        p += n + 1;
    }
    return true;
}

static void test_select_reason_escapes_and_caps_payload_values(void **state) {
    struct select_rules *rules =
        load_rules("{\"rules\":[{\"name\":\"any \\\"q\\\"\",\"when\":{\"branch\":\"*\","
                   "\"label\":\"*\",\"tag\":\"*\",\"base_branch\":\"*\",\"repository\":\"*\","
                   "\"changed_path\":\"*\"},\"variant\":\"original\"}]}");
    char big[2000];
    struct event_spec spec = {.event = "push"};
    struct select_decision d;
    struct event ev;

    (void)state;
    /* Quotes, newlines, $(...), backticks and 3-byte characters, far past any cap. */
    size_t o = 0;
    while (o + 16 < sizeof(big)) {
        memcpy(big + o, "\"\n$(x)`\xE2\x9C\x93", 10);
        o += 10;
    }
    big[o] = '\0';
    spec.branch = spec.base_branch = spec.tag = spec.repo = big;
    spec.labels[0] = spec.paths[0] = big;
    event_from_spec(&ev, &spec);
    select_decide(rules, &ev, &d);
    assert_int_equal(d.variant, SELECT_ORIGINAL);
    assert_string_equal(d.rule, "any \"q\"");
    assert_true(strlen(d.reason) < sizeof(d.reason));
    const char *prefix =
        "rule \"any \\\"q\\\"\" matched: push to branch \"\\\"\\n$(x)`\xE2\x9C\x93";
    assert_true(strncmp(d.reason, prefix, strlen(prefix)) == 0);
    assert_null(strchr(d.reason, '\n'));
    assert_true(utf8_valid(d.reason));
    assert_non_null(strstr(d.reason, "\"..."));
    /* Six quoted values overflow the sentence, which then ends in "...". */
    assert_true(strlen(d.reason) > sizeof(d.reason) - 8);
    assert_string_equal(d.reason + strlen(d.reason) - 3, "...");
    event_cleanup(&ev);
    select_rules_free(rules);
}

struct error_case {
    const char *selection;
    const char *errors[6];
};

static const struct error_case error_cases[] = {
    {"{\"rules\":[{\"name\":\"a\",\"when\":{},\"variant\":\"huge\"}]}",
     {"gpuhook.json: .selection.rules[0].variant: \"huge\" is not one of lite, original, skip in "
      "rule \"a\""}},
    {"{\"rules\":[{\"name\":\"ok\",\"variant\":\"lite\"},{\"name\":\"name\",\"when\":{\"color\":"
     "\"red\"},\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[1].when.color: unknown condition in rule \"name\""}},
    {"{\"rules\":[{\"name\":\"a\",\"variant\":\"lite\"},{\"name\":\"b\",\"variant\":\"lite\"},"
     "{\"name\":\"a\",\"variant\":\"skip\"}]}",
     {"gpuhook.json: .selection.rules[2].name: duplicate rule name \"a\" (also "
      ".selection.rules[0])"}},
    {"{\"rules\":[{\"when\":{},\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].name: missing"}},
    {"{\"rules\":[{\"name\":7,\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].name: expected a string"}},
    {"{\"rules\":[{\"name\":\"\",\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].name: must not be empty"}},
    {"{\"rules\":[{\"name\":\"default\",\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].name: \"default\" is reserved for the default "
      "decision"}},
    {"{\"rules\":[{\"name\":\"a\\nb\",\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].name: \"a\\nb\" contains a control character"}},
    {"{\"rules\":[{\"name\":"
     "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].name: "
      "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"... is longer than 127 "
      "bytes"}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{}}]}",
     {"gpuhook.json: .selection.rules[0].variant: missing in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"variant\":1}]}",
     {"gpuhook.json: .selection.rules[0].variant: expected a string in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"variant\":\"Lite\"}]}",
     {"gpuhook.json: .selection.rules[0].variant: \"Lite\" is not one of lite, original, skip in "
      "rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":[],\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].when: expected an object in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"branch\":[\"main\"]},\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].when.branch: expected a string in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"tag\":\"\"},\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].when.tag: must not be empty in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"changed_path\":\"ab\\\\\"},\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].when.changed_path: \"ab\\\\\" ends with a lone backslash "
      "in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"message_contains\":null},\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].when.message_contains: expected a string in rule "
      "\"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"event\":\"issues\"},\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].when.event: \"issues\" is not one of push, "
      "pull_request, trigger in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"event\":[\"push\",\"ping\",3]},\"variant\":"
     "\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].when.event[1]: \"ping\" is not one of push, "
      "pull_request, trigger in rule \"a\"",
      "gpuhook.json: .selection.rules[0].when.event[2]: expected a string in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"event\":[]},\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].when.event: must not be an empty list in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"event\":true},\"variant\":\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].when.event: expected a string or a list of strings in "
      "rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"branch\":\"x\",\"branch\":\"y\"},\"variant\":"
     "\"lite\"}]}",
     {"gpuhook.json: .selection.rules[0].when.branch: duplicate condition in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"variant\":\"lite\",\"colour\":\"red\"}]}",
     {"gpuhook.json: .selection.rules[0].colour: unknown key in rule \"a\""}},
    {"{\"rules\":[\"a\"]}", {"gpuhook.json: .selection.rules[0]: expected an object"}},
    {"{\"rules\":{}}", {"gpuhook.json: .selection.rules: expected a list"}},
    {"{\"default\":\"big\"}",
     {"gpuhook.json: .selection.default: \"big\" is not one of lite, original, skip"}},
    {"{\"default\":1}", {"gpuhook.json: .selection.default: expected a string"}},
    {"{\"extra\":1,\"we ird\\n\":2}",
     {"gpuhook.json: .selection.extra: unknown key",
      "gpuhook.json: .selection[\"we ird\\n\"]: unknown key"}},
    {"{\"default\":\"lite\",\"default\":\"skip\"}",
     {"gpuhook.json: .selection.default: duplicate key"}},
    {"[]", {"gpuhook.json: .selection: expected an object"}},
    {"{\"gpu_fit\":[]}", {"gpuhook.json: .selection.gpu_fit: expected an object"}},
    {"{\"gpu_fit\":{\"lite_min_free_mib\":-1}}",
     {"gpuhook.json: .selection.gpu_fit.lite_min_free_mib: -1 must not be negative"}},
    {"{\"gpu_fit\":{\"original_min_free_mib\":1.5}}",
     {"gpuhook.json: .selection.gpu_fit.original_min_free_mib: 1.5 is not a whole number"}},
    {"{\"gpu_fit\":{\"original_min_free_mib\":\"8G\"}}",
     {"gpuhook.json: .selection.gpu_fit.original_min_free_mib: expected a number"}},
    {"{\"gpu_fit\":{\"original_min_free_mib\":1e12}}",
     {"gpuhook.json: .selection.gpu_fit.original_min_free_mib: 1000000000000 is more than "
      "16777216"}},
    {"{\"gpu_fit\":{\"lite_min_free_mib\":9000}}",
     {"gpuhook.json: .selection.gpu_fit: lite_min_free_mib (9000) is more than "
      "original_min_free_mib (8192)"}},
    {"{\"gpu_fit\":{\"on_insufficient\":\"explode\"}}",
     {"gpuhook.json: .selection.gpu_fit.on_insufficient: \"explode\" is not one of queue, "
      "downgrade, reject, ignore"}},
    {"{\"gpu_fit\":{\"max_wait_seconds\":-1}}",
     {"gpuhook.json: .selection.gpu_fit.max_wait_seconds: -1 must not be negative (0 waits "
      "for ever)"}},
    {"{\"gpu_fit\":{\"max_wait_seconds\":2.5}}",
     {"gpuhook.json: .selection.gpu_fit.max_wait_seconds: 2.5 is not a whole number"}},
    {"{\"gpu_fit\":{\"max_wait_seconds\":\"1h\"}}",
     {"gpuhook.json: .selection.gpu_fit.max_wait_seconds: expected a number of seconds"}},
    {"{\"gpu_fit\":{\"max_wait_seconds\":1e9}}",
     {"gpuhook.json: .selection.gpu_fit.max_wait_seconds: 1000000000 is more than 604800"}},
    {"{\"gpu_fit\":{\"on_timeout\":\"queue\"}}",
     {"gpuhook.json: .selection.gpu_fit.on_timeout: \"queue\" is not one of downgrade, reject"}},
    {"{\"gpu_fit\":{\"on_timeout\":true}}",
     {"gpuhook.json: .selection.gpu_fit.on_timeout: expected a string"}},
    {"{\"gpu_fit\":{\"on_insufficient\":0}}",
     {"gpuhook.json: .selection.gpu_fit.on_insufficient: expected a string"}},
    {"{\"gpu_fit\":{\"lite_free\":1}}",
     {"gpuhook.json: .selection.gpu_fit.lite_free: unknown key"}},
    {"{\"rules\":[{\"name\":\"a\",\"variant\":\"a\\\"b\\nc$(x)`\"}]}",
     {"gpuhook.json: .selection.rules[0].variant: \"a\\\"b\\nc$(x)`\" is not one of lite, "
      "original, skip in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"fork\":\"yes\"},\"variant\":\"skip\"}]}",
     {"gpuhook.json: .selection.rules[0].when.fork: expected true or false in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"author_association\":\"owner\"},\"variant\":"
     "\"skip\"}]}",
     {"gpuhook.json: .selection.rules[0].when.author_association: \"owner\" is not one of "
      "OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, FIRST_TIME_CONTRIBUTOR, FIRST_TIMER, MANNEQUIN, "
      "NONE in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"author_association\":[\"OWNER\",1]},\"variant\":"
     "\"skip\"}]}",
     {"gpuhook.json: .selection.rules[0].when.author_association[1]: expected a string in rule "
      "\"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"author_association\":[]},\"variant\":\"skip\"}]}",
     {"gpuhook.json: .selection.rules[0].when.author_association: must not be an empty list in "
      "rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"author_association\":{\"not\":[\"OWNER\"],"
     "\"or\":1}},\"variant\":\"skip\"}]}",
     {"gpuhook.json: .selection.rules[0].when.author_association.or: unknown key in rule "
      "\"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"author_association\":{}},\"variant\":\"skip\"}]}",
     {"gpuhook.json: .selection.rules[0].when.author_association.not: missing in rule \"a\""}},
    {"{\"rules\":[{\"name\":\"a\",\"when\":{\"author_association\":7},\"variant\":\"skip\"}]}",
     {"gpuhook.json: .selection.rules[0].when.author_association: expected a string, a list of "
      "strings or {\"not\": [...]} in rule \"a\""}},
    /* Every error is reported at once, in order. */
    {"{\"default\":\"none\",\"rules\":[{\"name\":\"r1\",\"when\":{\"colour\":1},\"variant\":"
     "\"huge\"},{\"variant\":\"lite\"},{\"name\":\"r1\",\"variant\":\"lite\"}],\"gpu_fit\":{"
     "\"on_insufficient\":\"x\"}}",
     {"gpuhook.json: .selection.default: \"none\" is not one of lite, original, skip",
      "gpuhook.json: .selection.rules[0].variant: \"huge\" is not one of lite, original, skip in "
      "rule \"r1\"",
      "gpuhook.json: .selection.rules[0].when.colour: unknown condition in rule \"r1\"",
      "gpuhook.json: .selection.rules[1].name: missing",
      "gpuhook.json: .selection.rules[2].name: duplicate rule name \"r1\" (also "
      ".selection.rules[0])",
      "gpuhook.json: .selection.gpu_fit.on_insufficient: \"x\" is not one of queue, downgrade, "
      "reject, "
      "ignore"}},
};

static void test_select_config_errors_name_the_place_and_the_rule(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        const struct error_case *c = &error_cases[i];
        struct select_rules *rules = (struct select_rules *)&rules;
        struct errlist el;
        size_t expected = 0;

        while (expected < 6 && c->errors[expected])
            expected++;
        print_message("selection %s\n", c->selection);
        errlist_init(&el);
        assert_int_equal(parse_selection(c->selection, &rules, &el), GHE_INVAL);
        assert_null(rules);
        for (size_t k = 0; k < el.count; k++)
            print_message("  got %s\n", el.items[k]);
        assert_int_equal(el.count, expected);
        for (size_t k = 0; k < expected; k++)
            assert_string_equal(el.items[k], c->errors[k]);
        errlist_cleanup(&el);
    }
}

static void test_select_variant_names_round_trip(void **state) {
    (void)state;
    for (int v = SELECT_LITE; v <= SELECT_SKIP; v++)
        assert_int_equal(select_variant_parse(select_variant_name(v)), v);
    assert_string_equal(select_variant_name(SELECT_ORIGINAL), "original");
    assert_int_equal(select_variant_parse("auto"), -1);
    assert_int_equal(select_variant_parse(NULL), -1);
    assert_string_equal(select_variant_name(7), "unknown");
}

/* The shipped-style rules against the recorded GitHub payloads, end to end through event.c. */
struct fixture_case {
    const char *file;
    const char *event;
    int variant;
    const char *rule;
    const char *reason;
};

static const char *const fixture_rules =
    "{\"default\":\"lite\",\"rules\":["
    "{\"name\":\"skip-marker\",\"when\":{\"message_contains\":\"[skip "
    "gpu]\"},\"variant\":\"skip\"},"
    "{\"name\":\"master-full\",\"when\":{\"event\":\"push\",\"branch\":\"master\"},"
    "\"variant\":\"original\"},"
    "{\"name\":\"readme-only\",\"when\":{\"event\":\"pull_request\",\"changed_path\":\"*\"},"
    "\"variant\":\"skip\"},"
    "{\"name\":\"bug-label\",\"when\":{\"event\":\"pull_request\",\"label\":\"b?g\","
    "\"base_branch\":\"master\"},\"variant\":\"original\"}],"
    "\"gpu_fit\":{\"lite_min_free_mib\":1024,\"original_min_free_mib\":4096,"
    "\"on_insufficient\":\"downgrade\"}}";

static const struct fixture_case fixture_cases[] = {
    {"push_with-new-branch.json", "push", SELECT_ORIGINAL, "master-full",
     "rule \"master-full\" matched: push to branch \"master\""},
    {"push.json", "push", SELECT_LITE, "default", "no rule matched; default variant lite"},
    {"pull_request_opened.json", "pull_request", SELECT_ORIGINAL, "bug-label",
     "rule \"bug-label\" matched: pull_request into branch \"master\" with label \"bug\""},
    {"pull_request_labeled.json", "pull_request", SELECT_ORIGINAL, "bug-label",
     "rule \"bug-label\" matched: pull_request into branch \"master\" with label \"bug\""},
};

static char *read_fixture(const char *name, size_t *len) {
    const char *dir = getenv("GPUHOOK_SOURCE_DIR");
    char path[1024];

    snprintf(path, sizeof(path), "%s/tests/fixtures/github/%s", dir ? dir : ".", name);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n > 0);
    rewind(f);
    char *data = malloc((size_t)n + 1);
    assert_non_null(data);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    data[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return data;
}

static void test_select_decides_recorded_github_payloads(void **state) {
    struct select_rules *rules = load_rules(fixture_rules);

    (void)state;
    for (size_t i = 0; i < sizeof(fixture_cases) / sizeof(fixture_cases[0]); i++) {
        const struct fixture_case *c = &fixture_cases[i];
        struct select_decision d;
        struct event ev;
        char err[256];
        size_t len;
        char *body = read_fixture(c->file, &len);

        print_message("fixture %s\n", c->file);
        event_init(&ev);
        assert_int_equal(event_parse_delivery(&ev, c->event, "d", "1", "application/json", body,
                                              len, err, sizeof(err)),
                         0);
        select_decide(rules, &ev, &d);
        assert_int_equal(d.variant, c->variant);
        assert_string_equal(d.rule, c->rule);
        assert_string_equal(d.reason, c->reason);
        event_cleanup(&ev);
        free(body);
    }
    assert_true(select_rules_names_label(rules, "bug"));
    assert_int_equal(select_rules_gpu_fit(rules)->original_min_free_mib, 4096);
    select_rules_free(rules);
}

/* Pull requests from forks and from untrusted authors, as the shipped rules skip them. */
static const char *const trust_rules =
    "{\"default\":\"lite\",\"rules\":["
    "{\"name\":\"skip-fork\",\"when\":{\"event\":\"pull_request\",\"fork\":true},"
    "\"variant\":\"skip\"},"
    "{\"name\":\"skip-untrusted\",\"when\":{\"event\":\"pull_request\",\"author_association\":"
    "{\"not\":[\"OWNER\",\"MEMBER\",\"COLLABORATOR\"]}},\"variant\":\"skip\"},"
    "{\"name\":\"owner-original\",\"when\":{\"author_association\":\"OWNER\",\"fork\":false},"
    "\"variant\":\"original\"},"
    "{\"name\":\"team\",\"when\":{\"author_association\":[\"MEMBER\",\"COLLABORATOR\"]},"
    "\"variant\":\"lite\"}]}";

static const struct decide_case trust_cases[] = {
    {"an owner's pull request from the same repository",
     {.event = "pull_request", .repo = "o/r", .head_repo = "o/r", .association = "OWNER"},
     SELECT_ORIGINAL,
     "owner-original",
     "rule \"owner-original\" matched: pull_request from the same repository by author "
     "association \"OWNER\""},
    {"a pull request from a fork, even by the owner",
     {.event = "pull_request", .repo = "o/r", .head_repo = "evil/r", .association = "OWNER"},
     SELECT_SKIP,
     "skip-fork",
     "rule \"skip-fork\" matched: pull_request from fork \"evil/r\""},
    {"a pull request whose head repository was deleted is a fork",
     {.event = "pull_request", .repo = "o/r", .association = "MEMBER"},
     SELECT_SKIP,
     "skip-fork",
     "rule \"skip-fork\" matched: pull_request from a fork whose repository is gone"},
    {"repository names compare ignoring case",
     {.event = "pull_request", .repo = "o/r", .head_repo = "O/R", .association = "MEMBER"},
     SELECT_LITE,
     "team",
     "rule \"team\" matched: pull_request by author association \"MEMBER\""},
    {"an untrusted author",
     {.event = "pull_request", .repo = "o/r", .head_repo = "o/r", .association = "CONTRIBUTOR"},
     SELECT_SKIP,
     "skip-untrusted",
     "rule \"skip-untrusted\" matched: pull_request by author association \"CONTRIBUTOR\" (not "
     "one of OWNER, MEMBER, COLLABORATOR)"},
    {"a value GitHub may add later is not trusted",
     {.event = "pull_request", .repo = "o/r", .head_repo = "o/r", .association = "STRANGER"},
     SELECT_SKIP,
     "skip-untrusted",
     "rule \"skip-untrusted\" matched: pull_request by author association \"STRANGER\" (not "
     "one of OWNER, MEMBER, COLLABORATOR)"},
    {"a pull request without an association is not trusted",
     {.event = "pull_request", .repo = "o/r", .head_repo = "o/r"},
     SELECT_SKIP,
     "skip-untrusted",
     "rule \"skip-untrusted\" matched: pull_request by no author association (not one of "
     "OWNER, MEMBER, COLLABORATOR)"},
    {"a push has neither: fork and a positive association do not match",
     {.event = "push", .repo = "o/r", .branch = "main"},
     SELECT_LITE,
     "default",
     "no rule matched; default variant lite"},
    {"a trigger has neither",
     {.event = "trigger", .repo = "o/r"},
     SELECT_LITE,
     "default",
     "no rule matched; default variant lite"},
};

static void test_select_fork_and_author_association(void **state) {
    struct select_rules *rules = load_rules(trust_rules);

    (void)state;
    for (size_t i = 0; i < sizeof(trust_cases) / sizeof(trust_cases[0]); i++) {
        const struct decide_case *c = &trust_cases[i];
        struct select_decision d;
        struct event ev;

        print_message("case %s\n", c->title);
        event_from_spec(&ev, &c->ev);
        select_decide(rules, &ev, &d);
        assert_string_equal(d.rule, c->rule);
        assert_string_equal(d.reason, c->reason);
        assert_int_equal(d.variant, c->variant);
        event_cleanup(&ev);
    }
    select_rules_free(rules);
}

/* The rules config/gpuhook.json ships, against the recorded payloads. */
static void test_select_shipped_trust_rules_on_recorded_payloads(void **state) {
    const char *dir = getenv("GPUHOOK_SOURCE_DIR");
    char path[1024];
    struct select_rules *rules = NULL;
    struct errlist el;

    (void)state;
    snprintf(path, sizeof(path), "%s/config/gpuhook.json", dir ? dir : ".");
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s", path);
    char text[16384];
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    cJSON *cfg = cJSON_Parse(text);
    assert_non_null(cfg);
    errlist_init(&el);
    assert_int_equal(
        select_rules_parse(cJSON_GetObjectItemCaseSensitive(cfg, "selection"), path, &rules, &el),
        0);
    errlist_cleanup(&el);
    cJSON_Delete(cfg);

    /* The recorded pull request: the owner's, from the same repository, runs. */
    size_t len;
    char *body = read_fixture("pull_request_opened.json", &len);
    struct select_decision d;
    struct event ev;
    char err[256];

    event_init(&ev);
    assert_int_equal(event_parse_delivery(&ev, "pull_request", "d", "1", "application/json", body,
                                          len, err, sizeof(err)),
                     0);
    assert_string_equal(ev.author_assoc, "OWNER");
    assert_string_equal(ev.head_repo, "Codertocat/Hello-World");
    select_decide(rules, &ev, &d);
    assert_int_not_equal(d.variant, SELECT_SKIP);

    /* The same pull request from a fork is skipped, with the reason. */
    assert_int_equal(event_set(&ev.head_repo, "mallory/Hello-World"), 0);
    select_decide(rules, &ev, &d);
    assert_int_equal(d.variant, SELECT_SKIP);
    assert_string_equal(d.rule, "skip-fork");
    assert_string_equal(
        d.reason, "rule \"skip-fork\" matched: pull_request from fork \"mallory/Hello-World\"");

    /* And from a first-time contributor of the same repository. */
    assert_int_equal(event_set(&ev.head_repo, "Codertocat/Hello-World"), 0);
    assert_int_equal(event_set(&ev.author_assoc, "FIRST_TIME_CONTRIBUTOR"), 0);
    select_decide(rules, &ev, &d);
    assert_int_equal(d.variant, SELECT_SKIP);
    assert_string_equal(d.rule, "skip-untrusted-author");
    event_cleanup(&ev);
    free(body);
    select_rules_free(rules);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_select_rules_are_tried_in_order_first_match_wins),
        cmocka_unit_test(test_select_condition_on_a_missing_value_does_not_match),
        cmocka_unit_test(test_select_every_condition_of_a_rule_must_hold),
        cmocka_unit_test(test_select_empty_or_missing_when_matches_every_event),
        cmocka_unit_test(test_select_default_applies_when_no_rule_matches),
        cmocka_unit_test(test_select_null_selection_means_default_lite_and_default_gpu_fit),
        cmocka_unit_test(test_select_gpu_fit_values_are_loaded),
        cmocka_unit_test(test_select_rules_names_label_matches_label_globs_only),
        cmocka_unit_test(test_select_reason_escapes_and_caps_payload_values),
        cmocka_unit_test(test_select_config_errors_name_the_place_and_the_rule),
        cmocka_unit_test(test_select_variant_names_round_trip),
        cmocka_unit_test(test_select_decides_recorded_github_payloads),
        cmocka_unit_test(test_select_fork_and_author_association),
        cmocka_unit_test(test_select_shipped_trust_rules_on_recorded_payloads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
