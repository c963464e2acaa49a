#include "gpuhook/select.h"
#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/event.h"
#include "gpuhook/gpu.h"

#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef FNM_CASEFOLD
#define FNM_CASEFOLD 0
#endif

/* Bounds on what a message or a reason quotes from a value, in input bytes. */
#define SELECT_QUOTE_MAX 64
#define SELECT_NAME_MAX 127
#define SELECT_MIB_MAX 16777216L
/* A week: a run that may wait longer should wait for ever (0). */
#define SELECT_WAIT_MAX 604800L

enum select_cond {
    SELECT_COND_EVENT,
    SELECT_COND_BRANCH,
    SELECT_COND_BASE_BRANCH,
    SELECT_COND_TAG,
    SELECT_COND_REPOSITORY,
    SELECT_COND_LABEL,
    SELECT_COND_MESSAGE,
    SELECT_COND_CHANGED_PATH,
    SELECT_COND_COUNT_
};

static const char *const select_cond_names[SELECT_COND_COUNT_] = {
    "event",      "branch", "base_branch",      "tag",
    "repository", "label",  "message_contains", "changed_path"};

/* The events a rule may name, as bits of select_rule.events. */
static const char *const select_event_names[] = {"push", "pull_request", "trigger"};
#define SELECT_EVENT_COUNT 3

/*
 * GitHub's author_association values (the REST API's "author-association"
 * schema), as bits of select_rule.assoc. A value not listed here (one GitHub
 * adds later) has no bit: it is in no list, so a "not" list admits it.
 */
static const char *const select_assoc_names[] = {
    "OWNER",       "MEMBER",    "COLLABORATOR", "CONTRIBUTOR", "FIRST_TIME_CONTRIBUTOR",
    "FIRST_TIMER", "MANNEQUIN", "NONE"};
#define SELECT_ASSOC_COUNT 8
#define SELECT_ASSOC_LIST                                                                          \
    "OWNER, MEMBER, COLLABORATOR, CONTRIBUTOR, FIRST_TIME_CONTRIBUTOR, FIRST_TIMER, MANNEQUIN, "   \
    "NONE"

struct select_rule {
    char *name;
    int variant;
    unsigned events;                /* bit i: select_event_names[i]; 0 when not a condition */
    char *cond[SELECT_COND_COUNT_]; /* string conditions; NULL when absent */
    int fork;                       /* 1 or 0: the condition; -1 when absent */
    unsigned assoc;                 /* bit i: select_assoc_names[i]; 0 when not a condition */
    bool assoc_not;                 /* the rule wants an association not in assoc */
    char assoc_text[160];           /* assoc as "OWNER, MEMBER", for the reason */
};

struct select_rules {
    struct select_rule *rules;
    size_t count;
    int default_variant;
    struct gpu_fit_policy fit;
};

const char *select_variant_name(int variant) {
    switch (variant) {
    case SELECT_LITE:
        return "lite";
    case SELECT_ORIGINAL:
        return "original";
    case SELECT_SKIP:
        return "skip";
    default:
        return "unknown";
    }
}

int select_variant_parse(const char *s) {
    if (!s)
        return -1;
    for (int v = SELECT_LITE; v <= SELECT_SKIP; v++) {
        if (strcmp(s, select_variant_name(v)) == 0)
            return v;
    }
    return -1;
}

/*
 * Writes s into out between double quotes, escaping quotes, backslashes and
 * control characters, and cutting it after SELECT_QUOTE_MAX bytes (at a UTF-8
 * boundary, marked "..."), so that no value can forge a message or bloat it.
 */
static void select_quote(char *out, size_t outlen, const char *s) {
    size_t n = strlen(s), cut = n, o = 0;

    if (outlen < 8) {
        if (outlen)
            out[0] = '\0';
        return;
    }
    if (cut > SELECT_QUOTE_MAX) {
        cut = SELECT_QUOTE_MAX;
        while (cut > 0 && ((unsigned char)s[cut] & 0xC0) == 0x80)
            cut--;
    }
    out[o++] = '"';
    for (size_t i = 0; i < cut; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        size_t elen;

        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            elen = 2;
        } else if (c == '\n' || c == '\r' || c == '\t') {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\r' ? 'r' : 't';
            elen = 2;
        } else if (c < 0x20 || c == 0x7F) {
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            elen = 4;
        } else {
            esc[0] = (char)c;
            elen = 1;
        }
        if (o + elen + 5 > outlen)
            break;
        memcpy(out + o, esc, elen);
        o += elen;
    }
    out[o++] = '"';
    if (cut < n) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* Formats a JSON key for a path: .name when it is plain, otherwise ["quoted"]. */
static void select_key(char *out, size_t outlen, const char *key) {
    bool plain = key[0] != '\0';
    char quoted[SELECT_QUOTE_MAX * 4 + 8];

    for (const char *p = key; *p && plain; p++)
        plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                *p == '_' || *p == '-';
    if (plain) {
        snprintf(out, outlen, ".%.*s", SELECT_QUOTE_MAX, key);
        return;
    }
    select_quote(quoted, sizeof(quoted), key);
    snprintf(out, outlen, "[%s]", quoted);
}

struct select_parse {
    const char *file;
    struct errlist *el;
    size_t errors;
};

static void select_error(struct select_parse *sp, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void select_error(struct select_parse *sp, const char *path, const char *fmt, ...) {
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    errlist_at(sp->el, sp->file, path, "%s", msg);
    sp->errors++;
}

/* Reports unknown and repeated keys of obj; known is NULL-terminated. */
static void select_check_keys(struct select_parse *sp, const cJSON *obj, const char *path,
                              const char *const *known, const char *what, const char *suffix) {
    const cJSON *item;

    cJSON_ArrayForEach(item, obj) {
        char key[SELECT_QUOTE_MAX * 4 + 16], kpath[512];
        bool found = false;

        select_key(key, sizeof(key), item->string ? item->string : "");
        snprintf(kpath, sizeof(kpath), "%s%s", path, key);
        for (const cJSON *prev = obj->child; prev != item; prev = prev->next) {
            if (prev->string && item->string && strcmp(prev->string, item->string) == 0) {
                select_error(sp, kpath, "duplicate %s%s", what, suffix);
                found = true;
                break;
            }
        }
        for (size_t i = 0; known[i] && !found; i++)
            found = item->string && strcmp(item->string, known[i]) == 0;
        if (!found)
            select_error(sp, kpath, "unknown %s%s", what, suffix);
    }
}

/* Reads a string-valued condition: a non-empty string, and a usable glob when glob is set. */
static char *select_parse_string(struct select_parse *sp, const cJSON *v, const char *path,
                                 bool glob, const char *suffix) {
    char quoted[SELECT_QUOTE_MAX * 4 + 8];

    if (!cJSON_IsString(v)) {
        select_error(sp, path, "expected a string%s", suffix);
        return NULL;
    }
    const char *s = v->valuestring;
    if (s[0] == '\0') {
        select_error(sp, path, "must not be empty%s", suffix);
        return NULL;
    }
    if (glob) {
        size_t backslashes = 0, n = strlen(s);
        while (backslashes < n && s[n - 1 - backslashes] == '\\')
            backslashes++;
        if (backslashes % 2) {
            select_quote(quoted, sizeof(quoted), s);
            select_error(sp, path, "%s ends with a lone backslash%s", quoted, suffix);
            return NULL;
        }
    }
    char *copy = strdup(s);
    if (!copy)
        select_error(sp, path, "out of memory");
    return copy;
}

static int select_event_bit(const char *s) {
    for (int i = 0; i < SELECT_EVENT_COUNT; i++) {
        if (strcmp(s, select_event_names[i]) == 0)
            return 1 << i;
    }
    return 0;
}

static unsigned select_parse_events(struct select_parse *sp, const cJSON *v, const char *path,
                                    const char *suffix) {
    char quoted[SELECT_QUOTE_MAX * 4 + 8], ipath[600];
    unsigned mask = 0;
    const cJSON *item;
    int i = 0;

    if (cJSON_IsString(v)) {
        int bit = select_event_bit(v->valuestring);
        if (!bit) {
            select_quote(quoted, sizeof(quoted), v->valuestring);
            select_error(sp, path, "%s is not one of push, pull_request, trigger%s", quoted,
                         suffix);
        }
        return (unsigned)bit;
    }
    if (!cJSON_IsArray(v)) {
        select_error(sp, path, "expected a string or a list of strings%s", suffix);
        return 0;
    }
    if (!v->child) {
        select_error(sp, path, "must not be an empty list%s", suffix);
        return 0;
    }
    cJSON_ArrayForEach(item, v) {
        snprintf(ipath, sizeof(ipath), "%s[%d]", path, i++);
        if (!cJSON_IsString(item)) {
            select_error(sp, ipath, "expected a string%s", suffix);
            continue;
        }
        int bit = select_event_bit(item->valuestring);
        if (!bit) {
            select_quote(quoted, sizeof(quoted), item->valuestring);
            select_error(sp, ipath, "%s is not one of push, pull_request, trigger%s", quoted,
                         suffix);
        }
        mask |= (unsigned)bit;
    }
    return mask;
}

static unsigned select_assoc_bit(const char *s) {
    for (int i = 0; s && i < SELECT_ASSOC_COUNT; i++) {
        if (strcmp(s, select_assoc_names[i]) == 0)
            return 1u << i;
    }
    return 0;
}

/* One author_association value of a list; adds its bit to *mask. */
static void select_parse_assoc_item(struct select_parse *sp, const cJSON *v, const char *path,
                                    unsigned *mask, const char *suffix) {
    char quoted[SELECT_QUOTE_MAX * 4 + 8];

    if (!cJSON_IsString(v)) {
        select_error(sp, path, "expected a string%s", suffix);
        return;
    }
    unsigned bit = select_assoc_bit(v->valuestring);
    if (!bit) {
        select_quote(quoted, sizeof(quoted), v->valuestring);
        select_error(sp, path, "%s is not one of " SELECT_ASSOC_LIST "%s", quoted, suffix);
    }
    *mask |= bit;
}

/* A string or a list of author_association values. */
static unsigned select_parse_assoc_list(struct select_parse *sp, const cJSON *v, const char *path,
                                        const char *suffix) {
    char ipath[600];
    unsigned mask = 0;
    const cJSON *item;
    int i = 0;

    if (cJSON_IsString(v)) {
        select_parse_assoc_item(sp, v, path, &mask, suffix);
        return mask;
    }
    if (!cJSON_IsArray(v)) {
        select_error(sp, path, "expected a string or a list of strings%s", suffix);
        return 0;
    }
    if (!v->child) {
        select_error(sp, path, "must not be an empty list%s", suffix);
        return 0;
    }
    cJSON_ArrayForEach(item, v) {
        snprintf(ipath, sizeof(ipath), "%s[%d]", path, i++);
        select_parse_assoc_item(sp, item, ipath, &mask, suffix);
    }
    return mask;
}

/* "author_association": a string, a list, or {"not": string or list}. */
static void select_parse_assoc(struct select_parse *sp, const cJSON *v, const char *path,
                               struct select_rule *r, const char *suffix) {
    static const char *const known[] = {"not", NULL};
    char npath[600];
    size_t o = 0;

    if (cJSON_IsObject(v)) {
        select_check_keys(sp, v, path, known, "key", suffix);
        snprintf(npath, sizeof(npath), "%s.not", path);
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(v, "not");
        if (!list) {
            select_error(sp, npath, "missing%s", suffix);
            return;
        }
        r->assoc_not = true;
        r->assoc = select_parse_assoc_list(sp, list, npath, suffix);
    } else if (cJSON_IsString(v) || cJSON_IsArray(v)) {
        r->assoc = select_parse_assoc_list(sp, v, path, suffix);
    } else {
        select_error(sp, path, "expected a string, a list of strings or {\"not\": [...]}%s",
                     suffix);
        return;
    }
    r->assoc_text[0] = '\0';
    for (int i = 0; i < SELECT_ASSOC_COUNT; i++) {
        if (r->assoc & (1u << i))
            o += (size_t)snprintf(r->assoc_text + o, sizeof(r->assoc_text) - o, "%s%s",
                                  o ? ", " : "", select_assoc_names[i]);
    }
}

static void select_parse_when(struct select_parse *sp, const cJSON *when, const char *path,
                              struct select_rule *r, const char *suffix) {
    static const char *const known[] = {
        "event", "branch",           "base_branch",  "tag",  "repository",
        "label", "message_contains", "changed_path", "fork", "author_association",
        NULL};
    const cJSON *item;

    if (!cJSON_IsObject(when)) {
        select_error(sp, path, "expected an object%s", suffix);
        return;
    }
    select_check_keys(sp, when, path, known, "condition", suffix);
    item = cJSON_GetObjectItemCaseSensitive(when, "fork");
    if (item) {
        char fpath[512];

        snprintf(fpath, sizeof(fpath), "%s.fork", path);
        if (cJSON_IsBool(item))
            r->fork = cJSON_IsTrue(item) ? 1 : 0;
        else
            select_error(sp, fpath, "expected true or false%s", suffix);
    }
    item = cJSON_GetObjectItemCaseSensitive(when, "author_association");
    if (item) {
        char apath[512];

        snprintf(apath, sizeof(apath), "%s.author_association", path);
        select_parse_assoc(sp, item, apath, r, suffix);
    }
    for (int c = 0; c < SELECT_COND_COUNT_; c++) {
        char cpath[512];

        item = cJSON_GetObjectItemCaseSensitive(when, select_cond_names[c]);
        if (!item)
            continue;
        snprintf(cpath, sizeof(cpath), "%s.%s", path, select_cond_names[c]);
        if (c == SELECT_COND_EVENT)
            r->events = select_parse_events(sp, item, cpath, suffix);
        else
            r->cond[c] = select_parse_string(sp, item, cpath, c != SELECT_COND_MESSAGE, suffix);
    }
}

/* Validates a rule's name; returns it (borrowed from the tree) when it is usable. */
static const char *select_parse_name(struct select_parse *sp, const struct select_rules *rules,
                                     size_t index, const cJSON *v, const char *path) {
    char quoted[SELECT_QUOTE_MAX * 4 + 8];

    if (!v) {
        select_error(sp, path, "missing");
        return NULL;
    }
    if (!cJSON_IsString(v)) {
        select_error(sp, path, "expected a string");
        return NULL;
    }
    const char *name = v->valuestring;
    select_quote(quoted, sizeof(quoted), name);
    if (name[0] == '\0') {
        select_error(sp, path, "must not be empty");
        return NULL;
    }
    if (strlen(name) > SELECT_NAME_MAX) {
        select_error(sp, path, "%s is longer than %d bytes", quoted, SELECT_NAME_MAX);
        return NULL;
    }
    for (const char *p = name; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7F) {
            select_error(sp, path, "%s contains a control character", quoted);
            return NULL;
        }
    }
    if (strcmp(name, "default") == 0) {
        select_error(sp, path, "\"default\" is reserved for the default decision");
        return NULL;
    }
    for (size_t i = 0; i < index; i++) {
        if (rules->rules[i].name && strcmp(rules->rules[i].name, name) == 0) {
            select_error(sp, path, "duplicate rule name %s (also .selection.rules[%zu])", quoted,
                         i);
            return NULL;
        }
    }
    return name;
}

static void select_parse_rule(struct select_parse *sp, struct select_rules *rules, size_t index,
                              const cJSON *item) {
    static const char *const known[] = {"name", "when", "variant", NULL};
    struct select_rule *r = &rules->rules[index];
    char path[64], fpath[128], suffix[SELECT_QUOTE_MAX * 4 + 32], quoted[SELECT_QUOTE_MAX * 4 + 8];

    r->variant = SELECT_LITE;
    r->fork = -1;
    snprintf(path, sizeof(path), ".selection.rules[%zu]", index);
    if (!cJSON_IsObject(item)) {
        select_error(sp, path, "expected an object");
        return;
    }

    snprintf(fpath, sizeof(fpath), "%s.name", path);
    const char *name =
        select_parse_name(sp, rules, index, cJSON_GetObjectItemCaseSensitive(item, "name"), fpath);
    suffix[0] = '\0';
    if (name) {
        r->name = strdup(name);
        if (!r->name) {
            select_error(sp, fpath, "out of memory");
            return;
        }
        select_quote(quoted, sizeof(quoted), name);
        snprintf(suffix, sizeof(suffix), " in rule %s", quoted);
    }

    select_check_keys(sp, item, path, known, "key", suffix);

    snprintf(fpath, sizeof(fpath), "%s.variant", path);
    const cJSON *variant = cJSON_GetObjectItemCaseSensitive(item, "variant");
    if (!variant) {
        select_error(sp, fpath, "missing%s", suffix);
    } else if (!cJSON_IsString(variant)) {
        select_error(sp, fpath, "expected a string%s", suffix);
    } else if ((r->variant = select_variant_parse(variant->valuestring)) < 0) {
        r->variant = SELECT_LITE;
        select_quote(quoted, sizeof(quoted), variant->valuestring);
        select_error(sp, fpath, "%s is not one of lite, original, skip%s", quoted, suffix);
    }

    /* A missing "when" is the same as an empty one: the rule matches every event. */
    const cJSON *when = cJSON_GetObjectItemCaseSensitive(item, "when");
    if (when) {
        snprintf(fpath, sizeof(fpath), "%s.when", path);
        select_parse_when(sp, when, fpath, r, suffix);
    }
}

static void select_parse_mib(struct select_parse *sp, const cJSON *fit, const char *key, long *out,
                             bool *ok) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(fit, key);
    char path[96];

    if (!v)
        return;
    snprintf(path, sizeof(path), ".selection.gpu_fit.%s", key);
    if (!cJSON_IsNumber(v)) {
        select_error(sp, path, "expected a number");
        *ok = false;
        return;
    }
    double d = v->valuedouble;
    if (d < 0) {
        select_error(sp, path, "%.15g must not be negative", d);
    } else if (d > (double)SELECT_MIB_MAX) {
        select_error(sp, path, "%.15g is more than %ld", d, SELECT_MIB_MAX);
    } else if ((double)(long)d != d) {
        select_error(sp, path, "%.15g is not a whole number", d);
    } else {
        *out = (long)d;
        return;
    }
    *ok = false;
}

/* A string key of gpu_fit that must be one of names[] (n of them); *out is its index. */
static void select_parse_choice(struct select_parse *sp, const cJSON *fit, const char *key,
                                const char *const *names, int n, int *out) {
    char quoted[SELECT_QUOTE_MAX * 4 + 8], path[96], list[128] = "";
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(fit, key);

    if (!v)
        return;
    snprintf(path, sizeof(path), ".selection.gpu_fit.%s", key);
    if (!cJSON_IsString(v)) {
        select_error(sp, path, "expected a string");
        return;
    }
    for (int i = 0; i < n; i++) {
        if (strcmp(v->valuestring, names[i]) == 0) {
            *out = i;
            return;
        }
        size_t used = strlen(list);
        snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", names[i]);
    }
    select_quote(quoted, sizeof(quoted), v->valuestring);
    select_error(sp, path, "%s is not one of %s", quoted, list);
}

static void select_parse_gpu_fit(struct select_parse *sp, const cJSON *fit,
                                 struct gpu_fit_policy *policy) {
    static const char *const known[] = {"lite_min_free_mib", "original_min_free_mib",
                                        "on_insufficient",   "max_wait_seconds",
                                        "on_timeout",        NULL};
    /*
     * modes[] and timeouts[] are in their enum's order (enum gpu_fit_mode, enum
     * gpu_fit_timeout); listed[] is the order messages name the modes in, the default first.
     */
    static const char *const modes[] = {"downgrade", "reject", "ignore", "queue"};
    static const char *const listed[] = {"queue", "downgrade", "reject", "ignore"};
    static const char *const timeouts[] = {"downgrade", "reject"};
    bool lite_ok = true, original_ok = true;

    if (!cJSON_IsObject(fit)) {
        select_error(sp, ".selection.gpu_fit", "expected an object");
        return;
    }
    select_check_keys(sp, fit, ".selection.gpu_fit", known, "key", "");
    select_parse_mib(sp, fit, "lite_min_free_mib", &policy->lite_min_free_mib, &lite_ok);
    select_parse_mib(sp, fit, "original_min_free_mib", &policy->original_min_free_mib,
                     &original_ok);
    if (lite_ok && original_ok && policy->lite_min_free_mib > policy->original_min_free_mib)
        select_error(sp, ".selection.gpu_fit",
                     "lite_min_free_mib (%ld) is more than original_min_free_mib (%ld)",
                     policy->lite_min_free_mib, policy->original_min_free_mib);

    int mode = -1;
    select_parse_choice(sp, fit, "on_insufficient", listed, 4, &mode);
    for (int i = 0; mode >= 0 && i < 4; i++)
        if (strcmp(listed[mode], modes[i]) == 0) {
            policy->on_insufficient = i;
            break;
        }
    select_parse_choice(sp, fit, "on_timeout", timeouts, 2, &policy->on_timeout);

    const cJSON *wait = cJSON_GetObjectItemCaseSensitive(fit, "max_wait_seconds");
    if (!wait)
        return;
    if (!cJSON_IsNumber(wait)) {
        select_error(sp, ".selection.gpu_fit.max_wait_seconds", "expected a number of seconds");
        return;
    }
    double d = wait->valuedouble;
    if (d < 0)
        select_error(sp, ".selection.gpu_fit.max_wait_seconds",
                     "%.15g must not be negative (0 waits for ever)", d);
    else if (d > (double)SELECT_WAIT_MAX)
        select_error(sp, ".selection.gpu_fit.max_wait_seconds", "%.15g is more than %ld", d,
                     SELECT_WAIT_MAX);
    else if ((double)(long)d != d)
        select_error(sp, ".selection.gpu_fit.max_wait_seconds", "%.15g is not a whole number", d);
    else
        policy->max_wait_seconds = (long)d;
}

void select_rules_free(struct select_rules *rules) {
    if (!rules)
        return;
    for (size_t i = 0; i < rules->count; i++) {
        free(rules->rules[i].name);
        for (int c = 0; c < SELECT_COND_COUNT_; c++)
            free(rules->rules[i].cond[c]);
    }
    free(rules->rules);
    free(rules);
}

int select_rules_parse(const cJSON *selection, const char *file, struct select_rules **out,
                       struct errlist *el) {
    static const char *const known[] = {"default", "rules", "gpu_fit", NULL};
    struct select_parse sp = {file ? file : "config", el, 0};
    struct select_rules *rules = calloc(1, sizeof(*rules));
    char quoted[SELECT_QUOTE_MAX * 4 + 8];
    int rc = 0;

    *out = NULL;
    if (!rules) {
        errlist_at(el, sp.file, ".selection", "out of memory");
        return GHE_NOMEM;
    }
    rules->default_variant = SELECT_LITE;
    gpu_fit_policy_init(&rules->fit);
    if (!selection)
        goto out;
    if (!cJSON_IsObject(selection)) {
        select_error(&sp, ".selection", "expected an object");
        goto out;
    }
    select_check_keys(&sp, selection, ".selection", known, "key", "");

    const cJSON *def = cJSON_GetObjectItemCaseSensitive(selection, "default");
    if (def && !cJSON_IsString(def)) {
        select_error(&sp, ".selection.default", "expected a string");
    } else if (def && (rules->default_variant = select_variant_parse(def->valuestring)) < 0) {
        rules->default_variant = SELECT_LITE;
        select_quote(quoted, sizeof(quoted), def->valuestring);
        select_error(&sp, ".selection.default", "%s is not one of lite, original, skip", quoted);
    }

    const cJSON *list = cJSON_GetObjectItemCaseSensitive(selection, "rules");
    if (list && !cJSON_IsArray(list)) {
        select_error(&sp, ".selection.rules", "expected a list");
    } else if (list) {
        size_t n = (size_t)cJSON_GetArraySize(list);
        const cJSON *item;

        if (n > 0) {
            rules->rules = calloc(n, sizeof(*rules->rules));
            if (!rules->rules) {
                select_error(&sp, ".selection.rules", "out of memory");
                goto out;
            }
        }
        cJSON_ArrayForEach(item, list) {
            rules->count++;
            select_parse_rule(&sp, rules, rules->count - 1, item);
        }
    }

    const cJSON *fit = cJSON_GetObjectItemCaseSensitive(selection, "gpu_fit");
    if (fit)
        select_parse_gpu_fit(&sp, fit, &rules->fit);

out:
    if (sp.errors) {
        select_rules_free(rules);
        rc = GHE_INVAL;
    } else {
        *out = rules;
    }
    return rc;
}

const struct gpu_fit_policy *select_rules_gpu_fit(const struct select_rules *rules) {
    static const struct gpu_fit_policy defaults = GPU_FIT_POLICY_DEFAULTS;
    return rules ? &rules->fit : &defaults;
}

/*
 * Globs are fnmatch patterns without FNM_PATHNAME, so a star also matches "/":
 * "feature/<star>" covers "feature/a/b", and "docs/<star>" every file below docs.
 * Repository names are compared ignoring case, as GitHub does.
 */
static bool select_glob(const char *pattern, const char *value, int flags) {
    return value && fnmatch(pattern, value, flags) == 0;
}

/* What a match used, for the reason sentence. */
struct select_match {
    const char *label;
    const char *path;
};

static bool select_event_is(const struct event *ev, const char *name) {
    return ev->event && strcmp(ev->event, name) == 0;
}

/*
 * A pull request comes from a fork when its head repository is not the base
 * repository (ignoring case, as GitHub does), or is gone (head.repo is null
 * once a fork is deleted). Returns 1 or 0, or -1 for an event that is not a
 * pull request.
 */
static int select_event_fork(const struct event *ev) {
    if (!select_event_is(ev, "pull_request"))
        return -1;
    return !ev->head_repo || !ev->repo_full_name ||
           strcasecmp(ev->head_repo, ev->repo_full_name) != 0;
}

/* Whether the event's author_association is one of the rule's (or, for "not", none of them). */
static bool select_assoc_matches(const struct select_rule *r, const struct event *ev) {
    bool in = ev->author_assoc && (select_assoc_bit(ev->author_assoc) & r->assoc);
    return r->assoc_not ? !in : in;
}

static bool select_rule_matches(const struct select_rule *r, const struct event *ev,
                                struct select_match *m) {
    char *const *cond = r->cond;

    if (r->events && !(ev->event && (r->events & (unsigned)select_event_bit(ev->event))))
        return false;
    if (cond[SELECT_COND_BRANCH] && !select_glob(cond[SELECT_COND_BRANCH], ev->branch, 0))
        return false;
    if (cond[SELECT_COND_BASE_BRANCH] &&
        !select_glob(cond[SELECT_COND_BASE_BRANCH], ev->base_branch, 0))
        return false;
    if (cond[SELECT_COND_TAG] && !select_glob(cond[SELECT_COND_TAG], ev->tag, 0))
        return false;
    if (cond[SELECT_COND_REPOSITORY] &&
        !select_glob(cond[SELECT_COND_REPOSITORY], ev->repo_full_name, FNM_CASEFOLD))
        return false;
    if (cond[SELECT_COND_MESSAGE] &&
        !(ev->message && strstr(ev->message, cond[SELECT_COND_MESSAGE])))
        return false;
    if (r->fork >= 0 && select_event_fork(ev) != r->fork)
        return false;
    if (r->assoc && !select_assoc_matches(r, ev))
        return false;
    if (cond[SELECT_COND_LABEL]) {
        m->label = NULL;
        for (size_t i = 0; i < ev->label_count && !m->label; i++) {
            if (select_glob(cond[SELECT_COND_LABEL], ev->labels[i], 0))
                m->label = ev->labels[i];
        }
        /* GitHub lists the added label too, but a hand-built event may not. */
        if (!m->label && select_glob(cond[SELECT_COND_LABEL], ev->added_label, 0))
            m->label = ev->added_label;
        if (!m->label)
            return false;
    }
    if (cond[SELECT_COND_CHANGED_PATH]) {
        m->path = NULL;
        for (size_t i = 0; i < ev->changed_count && !select_event_is(ev, "pull_request"); i++) {
            if (select_glob(cond[SELECT_COND_CHANGED_PATH], ev->changed_paths[i], 0)) {
                m->path = ev->changed_paths[i];
                break;
            }
        }
        if (!m->path)
            return false;
    }
    return true;
}

/*
 * A bounded sentence builder that never cuts a UTF-8 character. A sentence
 * that does not fit ends in "..." and takes nothing more.
 */
struct select_text {
    char *p;
    size_t cap; /* at least 4 */
    size_t len;
    bool full;
};

static void select_text_add(struct select_text *t, const char *s) {
    size_t n = strlen(s);

    if (t->full)
        return;
    /* len never passes cap - 4, so "..." and the terminator always fit. */
    if (n > t->cap - 4 - t->len) {
        n = t->cap - 4 - t->len;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
        t->full = true;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    if (t->full) {
        memcpy(t->p + t->len, "...", 3);
        t->len += 3;
    }
    t->p[t->len] = '\0';
}

static void select_text_quoted(struct select_text *t, const char *before, const char *value) {
    char quoted[SELECT_QUOTE_MAX * 4 + 8];

    select_quote(quoted, sizeof(quoted), value);
    select_text_add(t, before);
    select_text_add(t, quoted);
}

static void select_reason(const struct select_rule *r, const struct event *ev,
                          const struct select_match *m, char *out, size_t outlen) {
    struct select_text t = {out, outlen, 0, false};
    bool pr = select_event_is(ev, "pull_request");

    out[0] = '\0';
    select_text_quoted(&t, "rule ", r->name);
    select_text_add(&t, " matched: ");
    if (!ev->event)
        select_text_add(&t, "event");
    else if (select_event_bit(ev->event))
        select_text_add(&t, ev->event);
    else
        select_text_quoted(&t, "event ", ev->event);
    if (r->fork == 1 && ev->head_repo)
        select_text_quoted(&t, " from fork ", ev->head_repo);
    else if (r->fork == 1)
        select_text_add(&t, " from a fork whose repository is gone");
    else if (r->fork == 0)
        select_text_add(&t, " from the same repository");
    if (r->assoc && ev->author_assoc)
        select_text_quoted(&t, " by author association ", ev->author_assoc);
    else if (r->assoc)
        select_text_add(&t, " by no author association");
    if (r->assoc && r->assoc_not) {
        select_text_add(&t, " (not one of ");
        select_text_add(&t, r->assoc_text);
        select_text_add(&t, ")");
    }
    if (r->cond[SELECT_COND_BRANCH])
        select_text_quoted(&t, pr ? " from branch " : " to branch ", ev->branch);
    if (r->cond[SELECT_COND_BASE_BRANCH])
        select_text_quoted(&t, " into branch ", ev->base_branch);
    if (r->cond[SELECT_COND_TAG])
        select_text_quoted(&t, " of tag ", ev->tag);
    if (r->cond[SELECT_COND_REPOSITORY])
        select_text_quoted(&t, " in repository ", ev->repo_full_name);
    if (r->cond[SELECT_COND_LABEL])
        select_text_quoted(&t, " with label ", m->label);
    if (r->cond[SELECT_COND_MESSAGE])
        select_text_quoted(&t, " whose message contains ", r->cond[SELECT_COND_MESSAGE]);
    if (r->cond[SELECT_COND_CHANGED_PATH])
        select_text_quoted(&t, " changing ", m->path);
}

void select_decide(const struct select_rules *rules, const struct event *ev,
                   struct select_decision *d) {
    int def = rules ? rules->default_variant : SELECT_LITE;

    for (size_t i = 0; rules && ev && i < rules->count; i++) {
        struct select_match m = {NULL, NULL};
        const struct select_rule *r = &rules->rules[i];

        if (!select_rule_matches(r, ev, &m))
            continue;
        d->variant = r->variant;
        buf_copy_str(d->rule, sizeof(d->rule), r->name);
        select_reason(r, ev, &m, d->reason, sizeof(d->reason));
        return;
    }
    d->variant = def;
    snprintf(d->rule, sizeof(d->rule), "default");
    snprintf(d->reason, sizeof(d->reason), "no rule matched; default variant %s",
             select_variant_name(def));
}

bool select_rules_names_label(const struct select_rules *rules, const char *label) {
    for (size_t i = 0; rules && label && i < rules->count; i++) {
        const char *glob = rules->rules[i].cond[SELECT_COND_LABEL];
        if (glob && fnmatch(glob, label, 0) == 0)
            return true;
    }
    return false;
}
