/*
 * Variant selection: ordered rules from the config's "selection" object,
 * compiled at load time and evaluated per event. The first matching rule wins;
 * when none matches, the default applies. It knows nothing about GPUs: the
 * gpu_fit policy (struct gpu_fit_policy, gpu.h) is parsed here, with the
 * rules, and applied by gpu_fit_check().
 *
 * Globs are fnmatch() patterns without FNM_PATHNAME or FNM_PERIOD, so a star
 * also matches "/" and a leading dot: "feature/" followed by a star covers
 * "feature/a/b", and "docs/" followed by a star every file below docs.
 * Repository globs ignore case, as GitHub does; the others do not. A
 * condition on a value the event lacks does not match, except
 * "author_association": {"not": [...]}, which an event without an
 * association (a push, a trigger) satisfies. "fork" holds for a pull request
 * whose head repository is not the base repository or is gone, and never
 * for another event.
 */
#ifndef GPUHOOK_SELECT_H
#define GPUHOOK_SELECT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* Named only. */
struct errlist;
struct event;
struct gpu_fit_policy;

enum select_variant { SELECT_LITE = 0, SELECT_ORIGINAL = 1, SELECT_SKIP = 2 };

/* Returns "lite", "original" or "skip". */
const char *select_variant_name(int variant);
/* Parses "lite", "original" or "skip"; returns the variant or -1. */
int select_variant_parse(const char *s);

struct select_rules;

/*
 * Compiles the "selection" object, gpu_fit included (the one parse of the
 * policy). file names the config file for messages; every problem is added to
 * el as "FILE: .selection.rules[N]...: reason in rule \"NAME\"", through
 * errlist_at. Returns 0 and sets *out (caller frees with select_rules_free),
 * or GHE_INVAL. A NULL selection means: default lite, no rules, and
 * GPU_FIT_POLICY_DEFAULTS.
 */
int select_rules_parse(const cJSON *selection, const char *file, struct select_rules **out,
                       struct errlist *el);
void select_rules_free(struct select_rules *rules);

/* The gpu_fit policy that came with the rules (borrowed). */
const struct gpu_fit_policy *select_rules_gpu_fit(const struct select_rules *rules);

struct select_decision {
    int variant;      /* enum select_variant */
    char rule[128];   /* the matching rule's name, or "default" */
    char reason[512]; /* one readable sentence */
};

/* Evaluates the rules against ev; always fills d. */
void select_decide(const struct select_rules *rules, const struct event *ev,
                   struct select_decision *d);

/* True when some rule's "label" glob matches label (for pull_request "labeled"). */
bool select_rules_names_label(const struct select_rules *rules, const char *label);

#endif
