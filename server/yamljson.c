/*
 * YAML or JSON → cJSON, for the TriggerTemplate and TriggerBinding files. It
 * reads exactly one document with libyaml's event parser and builds the tree
 * as the events arrive. It refuses what would make a config mean something
 * other than it reads: anchors and aliases, several documents, duplicate keys,
 * non-scalar keys and custom tags. A file that starts with '{' or '[' and is
 * valid JSON is read by cJSON directly.
 */
#include "gpuhook/yamljson.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include <yaml.h>

#include "gpuhook/error.h"
#include "gpuhook/fileio.h"

#define YAMLJSON_DEPTH_MAX 128
#define YAMLJSON_KEYS_MAX 10000

struct yamljson_frame {
    cJSON *node;
    char *key;      /* the pending mapping key, or NULL */
    size_t members; /* keys so far, to bound duplicate-key checks */
};

struct yamljson_state {
    const char *name;
    struct yamljson_frame stack[YAMLJSON_DEPTH_MAX];
    size_t depth;
    cJSON *root;
    char *err;
    size_t errlen;
};

static int yamljson_fail(struct yamljson_state *st, const yaml_mark_t *mark, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes "FILE:LINE: reason" into the caller's buffer and returns GHE_INVAL. */
static int yamljson_fail(struct yamljson_state *st, const yaml_mark_t *mark, const char *fmt, ...) {
    char msg[256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (st->err && st->errlen)
        snprintf(st->err, st->errlen, "%s:%zu: %s", st->name, mark->line + 1, msg);
    return GHE_INVAL;
}

/* Only digits, at most 15 of them, fit a double exactly; others stay strings. */
static bool yamljson_is_int(const char *s, size_t n) {
    size_t i = (n > 0 && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
    size_t digits = n - i;

    if (digits == 0 || digits > 15)
        return false;
    if (s[i] == '0' && digits > 1)
        return false; /* 010 is octal to YAML 1.1 and decimal to 1.2: keep the text. */
    for (; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* A JSON number with a fraction or an exponent, so JSON files keep their numbers. */
static bool yamljson_is_float(const char *s, size_t n) {
    size_t i = 0;
    bool frac = false;

    if (i < n && s[i] == '-')
        i++;
    if (i >= n || s[i] < '0' || s[i] > '9')
        return false;
    if (s[i] == '0')
        i++;
    else
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    if (i < n && s[i] == '.') {
        size_t start = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
        frac = true;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t start = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == start)
            return false;
        frac = true;
    }
    return frac && i == n;
}

static bool yamljson_is_one_of(const char *s, const char *const *words) {
    for (; *words; words++)
        if (strcmp(s, *words) == 0)
            return true;
    return false;
}

/* Resolves a scalar the way YAML 1.2's core schema does, but only for plain scalars. */
static cJSON *yamljson_scalar(const yaml_event_t *e) {
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    const char *s = (const char *)e->data.scalar.value;
    size_t n = e->data.scalar.length;

    if (e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || e->data.scalar.tag)
        return cJSON_CreateString(s);
    if (yamljson_is_one_of(s, nulls))
        return cJSON_CreateNull();
    if (yamljson_is_one_of(s, trues))
        return cJSON_CreateTrue();
    if (yamljson_is_one_of(s, falses))
        return cJSON_CreateFalse();
    if (yamljson_is_int(s, n) || yamljson_is_float(s, n))
        return cJSON_CreateNumber(strtod(s, NULL));
    return cJSON_CreateString(s);
}

/* Attaches item under the current collection (or as the root); item is consumed. */
static int yamljson_attach(struct yamljson_state *st, cJSON *item, const yaml_mark_t *mark) {
    if (st->depth == 0) {
        st->root = item;
        return 0;
    }
    struct yamljson_frame *top = &st->stack[st->depth - 1];
    if (cJSON_IsArray(top->node)) {
        if (!cJSON_AddItemToArray(top->node, item)) {
            cJSON_Delete(item);
            return GHE_NOMEM;
        }
        return 0;
    }
    if (!top->key) {
        cJSON_Delete(item);
        return yamljson_fail(st, mark, "mapping keys must be scalars");
    }
    bool ok = cJSON_AddItemToObject(top->node, top->key, item);
    free(top->key);
    top->key = NULL;
    if (!ok) {
        cJSON_Delete(item);
        return GHE_NOMEM;
    }
    return 0;
}

static int yamljson_check_tag(struct yamljson_state *st, const yaml_char_t *tag,
                              const char *allowed, const yaml_mark_t *mark) {
    if (!tag || strcmp((const char *)tag, "!") == 0 || strcmp((const char *)tag, allowed) == 0)
        return 0;
    return yamljson_fail(st, mark, "tag %s is not supported", (const char *)tag);
}

static int yamljson_on_scalar(struct yamljson_state *st, const yaml_event_t *e) {
    const yaml_mark_t *mark = &e->start_mark;
    struct yamljson_frame *top = st->depth ? &st->stack[st->depth - 1] : NULL;
    int rc;

    if (e->data.scalar.anchor)
        return yamljson_fail(st, mark, "anchors are not supported (&%s)",
                             (const char *)e->data.scalar.anchor);
    rc = yamljson_check_tag(st, e->data.scalar.tag, "tag:yaml.org,2002:str", mark);
    if (rc)
        return rc;
    if (memchr(e->data.scalar.value, '\0', e->data.scalar.length))
        return yamljson_fail(st, mark, "a scalar holds a NUL character");

    if (top && cJSON_IsObject(top->node) && !top->key) {
        const char *key = (const char *)e->data.scalar.value;
        if (++top->members > YAMLJSON_KEYS_MAX)
            return yamljson_fail(st, mark, "a mapping holds too many keys");
        if (cJSON_GetObjectItemCaseSensitive(top->node, key))
            return yamljson_fail(st, mark, "duplicate key \"%s\"", key);
        top->key = strdup(key);
        return top->key ? 0 : GHE_NOMEM;
    }
    cJSON *item = yamljson_scalar(e);
    if (!item)
        return GHE_NOMEM;
    return yamljson_attach(st, item, mark);
}

static int yamljson_on_start(struct yamljson_state *st, const yaml_event_t *e) {
    const yaml_mark_t *mark = &e->start_mark;
    bool seq = e->type == YAML_SEQUENCE_START_EVENT;
    const yaml_char_t *anchor = seq ? e->data.sequence_start.anchor : e->data.mapping_start.anchor;
    const yaml_char_t *tag = seq ? e->data.sequence_start.tag : e->data.mapping_start.tag;
    int rc;

    if (anchor)
        return yamljson_fail(st, mark, "anchors are not supported (&%s)", (const char *)anchor);
    rc = yamljson_check_tag(st, tag, seq ? "tag:yaml.org,2002:seq" : "tag:yaml.org,2002:map", mark);
    if (rc)
        return rc;
    if (st->depth == YAMLJSON_DEPTH_MAX)
        return yamljson_fail(st, mark, "nesting is deeper than %d levels", YAMLJSON_DEPTH_MAX);
    cJSON *item = seq ? cJSON_CreateArray() : cJSON_CreateObject();
    if (!item)
        return GHE_NOMEM;
    rc = yamljson_attach(st, item, mark);
    if (rc)
        return rc;
    st->stack[st->depth].node = item;
    st->stack[st->depth].key = NULL;
    st->stack[st->depth].members = 0;
    st->depth++;
    return 0;
}

static int yamljson_parse_yaml(struct yamljson_state *st, const char *data, size_t len) {
    yaml_parser_t parser;
    yaml_event_t e;
    size_t docs = 0;
    int rc = 0;
    bool done = false;

    if (!yaml_parser_initialize(&parser))
        return GHE_NOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    while (!done && rc == 0) {
        if (!yaml_parser_parse(&parser, &e)) {
            if (parser.error == YAML_MEMORY_ERROR) {
                rc = GHE_NOMEM;
            } else if (st->err && st->errlen) {
                snprintf(st->err, st->errlen, "%s:%zu: %s%s%s", st->name,
                         parser.problem_mark.line + 1,
                         parser.problem ? parser.problem : "YAML syntax error",
                         parser.context ? " " : "", parser.context ? parser.context : "");
                rc = GHE_INVAL;
            } else {
                rc = GHE_INVAL;
            }
            break;
        }
        switch (e.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1)
                rc = yamljson_fail(st, &e.start_mark,
                                   "holds more than one document; put one object per file");
            break;
        case YAML_ALIAS_EVENT:
            rc = yamljson_fail(st, &e.start_mark, "aliases are not supported (*%s)",
                               (const char *)e.data.alias.anchor);
            break;
        case YAML_SCALAR_EVENT:
            rc = yamljson_on_scalar(st, &e);
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            rc = yamljson_on_start(st, &e);
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (st->depth > 0)
                st->depth--;
            break;
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        default:
            break;
        }
        yaml_event_delete(&e);
    }
    yaml_parser_delete(&parser);
    if (rc == 0 && !st->root) {
        if (st->err && st->errlen)
            snprintf(st->err, st->errlen, "%s: holds no document", st->name);
        rc = GHE_INVAL;
    }
    return rc;
}

/* The nesting depth of a cJSON tree, stopping once it passes the bound. */
static size_t yamljson_depth(const cJSON *n, size_t depth) {
    const cJSON *c;
    size_t max = depth;

    if (depth > YAMLJSON_DEPTH_MAX || !(cJSON_IsArray(n) || cJSON_IsObject(n)))
        return depth;
    cJSON_ArrayForEach(c, n) {
        size_t d = yamljson_depth(c, depth + 1);
        if (d > max)
            max = d;
        if (max > YAMLJSON_DEPTH_MAX)
            break;
    }
    return max == depth ? depth + 1 : max;
}

/* True when no object in the tree holds a key twice or more than YAMLJSON_KEYS_MAX keys. */
static bool yamljson_keys_ok(const cJSON *n) {
    size_t members = 0;

    for (const cJSON *c = n->child; c; c = c->next) {
        if (cJSON_IsObject(n)) {
            if (++members > YAMLJSON_KEYS_MAX)
                return false;
            for (const cJSON *d = n->child; d != c; d = d->next)
                if (strcmp(d->string, c->string) == 0)
                    return false;
        }
        if (!yamljson_keys_ok(c))
            return false;
    }
    return true;
}

int yamljson_load_string(const char *name, const char *data, size_t len, cJSON **out, char *err,
                         size_t errlen) {
    struct yamljson_state st;
    size_t i = 0;
    int rc;

    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (len > YAMLJSON_FILE_MAX) {
        if (err && errlen)
            snprintf(err, errlen, "%s: larger than %d bytes", name, YAMLJSON_FILE_MAX);
        return GHE_TOOBIG;
    }

    /* JSON is valid YAML, but cJSON reads it exactly and faster. */
    while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
        i++;
    if (i < len && (data[i] == '{' || data[i] == '[')) {
        const char *end = NULL;
        cJSON *doc = cJSON_ParseWithLengthOpts(data, len, &end, false);
        if (doc && yamljson_depth(doc, 0) > YAMLJSON_DEPTH_MAX) {
            cJSON_Delete(doc);
            if (err && errlen)
                snprintf(err, errlen, "%s: nesting is deeper than %d levels", name,
                         YAMLJSON_DEPTH_MAX);
            return GHE_INVAL;
        }
        /*
         * cJSON stops after the first value, keeps a key given twice and cuts a
         * string at \u0000. Such a file goes to the YAML reader instead, which
         * refuses all three and says on which line.
         */
        while (doc && end < data + len &&
               (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n'))
            end++;
        if (doc && end == data + len && yamljson_keys_ok(doc) && !memmem(data, len, "\\u0000", 6)) {
            *out = doc;
            return 0;
        }
        cJSON_Delete(doc);
    }

    memset(&st, 0, sizeof(st));
    st.name = name;
    st.err = err;
    st.errlen = errlen;
    rc = yamljson_parse_yaml(&st, data, len);
    for (size_t d = 0; d < YAMLJSON_DEPTH_MAX; d++)
        free(st.stack[d].key);
    if (rc) {
        cJSON_Delete(st.root);
        if (rc == GHE_NOMEM && err && errlen)
            snprintf(err, errlen, "%s: out of memory", name);
        return rc;
    }
    *out = st.root;
    return 0;
}

int yamljson_load_file(const char *path, cJSON **out, char *err, size_t errlen) {
    char *data = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    rc = fileio_read(path, YAMLJSON_FILE_MAX, 0, &data, &len, err, errlen);
    if (rc == 0)
        rc = yamljson_load_string(path, data, len, out, err, errlen);
    free(data);
    return rc;
}
