/*
 * Rendering a compiled template for one event: each used param gets its value
 * (a /trigger override, else its binding evaluated over the event, else its
 * default), then the compiled text is written out with the values, the run's
 * name, namespace, labels and annotations in its holes. A value goes in as a
 * JSON-escaped string or, when it was structured at its source, as JSON that
 * cJSON printed; it is never scanned for expressions again. Nothing here
 * reads a file or changes the template, so renders may run on several threads
 * at once.
 */
#include "template_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/event.h"
#include "gpuhook/ids.h"
#include "gpuhook/jsonpath.h"
#include "gpuhook/select.h"

#define TEMPLATE_VALUE_MAX (1024 * 1024)      /* one param's rendered value */
#define TEMPLATE_STRING_MAX (4 * 1024 * 1024) /* one rendered string of the PipelineRun */
#define TEMPLATE_MISSING 1 /* internal: a $(body...) or $(header...) had no value */

/* One param's value during a render. */
struct tpl_val {
    const char *s;
    size_t len;
    const cJSON *node; /* the value as an array or object when it may become one */
    const char *json;  /* node as compact JSON text, once known */
    char *owned;       /* free() */
    char *owned_print; /* cJSON_free() */
    cJSON *owned_node; /* cJSON_Delete() */
};

struct tpl_render {
    const struct template *t;
    const struct template_render_input *in;
    const struct event *ev;
    struct tpl_val *vals;
    cJSON *roots[4]; /* by enum jsonpath_root: built on first use, but the body's */
    char uid[IDS_UUID_LEN + 1];
    char *err;
    size_t errlen;
};

static void tpl_render_error(struct tpl_render *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void tpl_render_error(struct tpl_render *r, const char *fmt, ...) {
    va_list ap;

    if (!r->err || !r->errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
}

/* An extension's value: borrowed, or joined into *owned (free()). NULL when out of memory. */
static const char *tpl_ext_value(const struct tpl_render *r, size_t ext, char **owned) {
    const struct tpl_ext_def *x = &tpl_exts[ext];
    const struct select_decision *d = r->in->decision;
    const char *v = NULL;

    switch (x->source) {
    case TPL_FROM_VARIANT:
        v = d ? select_variant_name(d->variant) : NULL;
        break;
    case TPL_FROM_RULE:
        v = d ? d->rule : NULL;
        break;
    case TPL_FROM_REASON:
        v = d ? d->reason : NULL;
        break;
    case TPL_FROM_EVENT:
        v = *(char *const *)(const void *)((const char *)r->ev + x->offset);
        break;
    case TPL_FROM_CHANGED:
        if (!r->ev->changed_count)
            break;
        return *owned = event_changed_files(r->ev);
    }
    return v ? v : "";
}

/* $(extensions): every extension gpuhook provides, as strings. */
static cJSON *tpl_ext_object(const struct tpl_render *r) {
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i < TPL_EXT_COUNT; i++) {
        char *owned = NULL;
        const char *v = tpl_ext_value(r, i, &owned);
        if (!v || !cJSON_AddStringToObject(o, tpl_exts[i].name, v)) {
            cJSON_Delete(o);
            o = NULL;
        }
        free(owned);
    }
    return o;
}

/* The value a path's root names, building the header, extensions or context object once. */
static const cJSON *tpl_root(struct tpl_render *r, enum jsonpath_root root, bool *oom) {
    *oom = false;
    if (root == JSONPATH_BODY)
        return r->ev->body;
    if (!r->roots[root]) {
        if (root == JSONPATH_HEADER) {
            r->roots[root] = event_header_object(r->ev);
        } else if (root == JSONPATH_EXTENSIONS) {
            r->roots[root] = tpl_ext_object(r);
        } else if ((r->roots[root] = cJSON_CreateObject()) != NULL &&
                   !cJSON_AddStringToObject(r->roots[root], "eventID",
                                            r->ev->delivery ? r->ev->delivery : "")) {
            cJSON_Delete(r->roots[root]);
            r->roots[root] = NULL;
        }
        *oom = !r->roots[root];
    }
    return r->roots[root];
}

/* Evaluates a JSONPath part as Tekton prints it, into *owned (free()). */
static int tpl_path_eval(struct tpl_render *r, const struct tpl_part *p, const char **s,
                         size_t *len, bool *structured, char **owned) {
    struct jsonpath_results res = {0};
    struct buf b;
    bool oom;
    const cJSON *root = tpl_root(r, jsonpath_root(p->path), &oom);
    int rc;

    if (oom)
        return GHE_NOMEM;
    rc = jsonpath_eval(p->path, root, &res);
    if (rc == 1)
        rc = TEMPLATE_MISSING;
    if (rc) {
        jsonpath_results_cleanup(&res);
        return rc;
    }
    buf_init(&b, TEMPLATE_VALUE_MAX);
    rc = jsonpath_print_results(&res, &b, structured);
    jsonpath_results_cleanup(&res);
    if (rc) {
        buf_cleanup(&b);
        return rc;
    }
    if (!(*owned = buf_detach(&b, len)))
        return GHE_NOMEM;
    *s = *owned;
    return 0;
}

/*
 * Evaluates one part of a binding into (*s, *len): borrowed, or in *owned
 * (free()). *structured says the text is a JSON array or object. Returns 0,
 * TEMPLATE_MISSING, GHE_TOOBIG or GHE_NOMEM.
 */
static int tpl_part_eval(struct tpl_render *r, const struct tpl_part *p, const char **s,
                         size_t *len, bool *structured, char **owned) {
    bool oom = false;

    *structured = false;
    switch (p->kind) {
    case TPL_LIT:
        *s = p->text;
        *len = p->len;
        return 0;
    case TPL_EXT:
        if (!(*s = tpl_ext_value(r, p->ext, owned)))
            return GHE_NOMEM;
        break;
    case TPL_HEADER:
        if (!(*s = event_header_joined(r->ev, p->text, owned, &oom)))
            return oom ? GHE_NOMEM : TEMPLATE_MISSING;
        break;
    case TPL_PATH:
        return tpl_path_eval(r, p, s, len, structured, owned);
    default:
        *s = "";
        break;
    }
    *len = strlen(*s);
    return 0;
}

static int tpl_missing(struct tpl_render *r, const struct tpl_param *pm, const struct tpl_part *p) {
    enum jsonpath_root root = p->kind == TPL_PATH ? jsonpath_root(p->path) : JSONPATH_HEADER;
    if (p->kind == TPL_HEADER)
        tpl_render_error(r, "request lacks header %s required by param \"%s\"", p->text, pm->name);
    else if (root == JSONPATH_BODY)
        tpl_render_error(r, "payload lacks %s required by param \"%s\"", p->text, pm->name);
    else if (root == JSONPATH_HEADER)
        tpl_render_error(r, "request headers lack %s required by param \"%s\"", p->text, pm->name);
    else
        tpl_render_error(r, "the event lacks %s required by param \"%s\"", p->text, pm->name);
    return GHE_INVAL;
}

/* Evaluates a param's binding into v; a missing part falls back to the default. */
static int tpl_bind_eval(struct tpl_render *r, const struct tpl_param *pm, struct tpl_val *v) {
    const struct tpl_expr *x = &pm->bind;
    const struct tpl_part *missing = NULL;
    struct buf b;
    int rc = 0;

    if (x->count == 1) {
        bool structured;
        rc = tpl_part_eval(r, &x->parts[0], &v->s, &v->len, &structured, &v->owned);
        if (rc == 0 && structured)
            v->json = v->s; /* an array or object, printed: it may stay one */
        if (rc == TEMPLATE_MISSING)
            missing = &x->parts[0];
        else if (rc != GHE_TOOBIG)
            return rc;
    } else {
        buf_init(&b, TEMPLATE_VALUE_MAX);
        for (size_t i = 0; i < x->count && !rc; i++) {
            const char *s = "";
            size_t len = 0;
            bool structured;
            char *owned = NULL;
            rc = tpl_part_eval(r, &x->parts[i], &s, &len, &structured, &owned);
            if (rc == 0)
                rc = buf_append(&b, s, len);
            else if (rc == TEMPLATE_MISSING)
                missing = &x->parts[i];
            free(owned);
        }
        if (rc == 0) {
            v->owned = buf_detach(&b, &v->len);
            if (!v->owned)
                return GHE_NOMEM;
            v->s = v->owned;
            return 0;
        }
        buf_cleanup(&b);
        if (rc != TEMPLATE_MISSING && rc != GHE_TOOBIG)
            return rc;
    }
    if (rc == GHE_TOOBIG) {
        tpl_render_error(r, "param \"%s\" is longer than %d bytes", pm->name, TEMPLATE_VALUE_MAX);
        return GHE_INVAL;
    }
    free(v->owned);
    v->owned = NULL;
    v->json = NULL;
    if (!pm->def)
        return tpl_missing(r, pm, missing);
    v->s = pm->def;
    v->len = pm->def_len;
    v->node = pm->def_json;
    v->json = pm->def_json_text;
    return 0;
}

static const struct template_override *tpl_override_find(const struct template_render_input *in,
                                                         const char *name) {
    for (size_t i = 0; i < in->override_count; i++)
        if (in->overrides[i].name && strcmp(in->overrides[i].name, name) == 0)
            return &in->overrides[i];
    return NULL;
}

/*
 * Gives each used param its value: an override, else its binding, else its
 * default. Only values that were structured at their source (a default, an
 * override, or a $(body...) that is an array or object) may become arrays or
 * objects: a string from the payload that happens to look like JSON stays a
 * string, so no branch name or commit message can change the object's shape.
 */
static int tpl_values(struct tpl_render *r) {
    const struct template *t = r->t;

    for (size_t i = 0; i < r->in->override_count; i++) {
        if (!r->in->overrides[i].name || tpl_param_find(t, r->in->overrides[i].name) < 0) {
            tpl_render_error(r, "param \"%s\" is not declared by the template",
                             r->in->overrides[i].name ? r->in->overrides[i].name : "");
            return GHE_INVAL;
        }
    }
    for (size_t i = 0; i < t->nparam; i++) {
        const struct tpl_param *pm = &t->params[i];
        struct tpl_val *v = &r->vals[i];
        const struct template_override *o;
        int rc;

        if (!pm->used)
            continue;
        if ((o = tpl_override_find(r->in, pm->name)) != NULL) {
            v->s = o->value ? o->value : "";
            v->len = strlen(v->s);
            if (v->s[0] == '[' || v->s[0] == '{') {
                cJSON *j = cJSON_ParseWithLength(v->s, v->len);
                if (cJSON_IsArray(j) || cJSON_IsObject(j))
                    v->node = v->owned_node = j;
                else
                    cJSON_Delete(j);
            }
            continue;
        }
        if (pm->bound) {
            rc = tpl_bind_eval(r, pm, v);
            if (rc)
                return rc;
            continue;
        }
        v->s = pm->def ? pm->def : "";
        v->len = pm->def ? pm->def_len : 0;
        v->node = pm->def_json;
        v->json = pm->def_json_text;
    }
    return 0;
}

static void tpl_values_free(struct tpl_val *vals, size_t n) {
    for (size_t i = 0; vals && i < n; i++) {
        free(vals[i].owned);
        cJSON_free(vals[i].owned_print);
        cJSON_Delete(vals[i].owned_node);
    }
    free(vals);
}

/* The JSON text of a structured value (an array or object param), or NULL. */
static const char *tpl_val_json(struct tpl_val *v) {
    if (v->json)
        return v->json;
    if (!v->node)
        return NULL;
    v->owned_print = cJSON_PrintUnformatted(v->node);
    return v->json = v->owned_print;
}

/* A site's value as a string (its parts concatenated); false when it is structured. */
static int tpl_site_check(struct tpl_render *r, const struct tpl_site *site, bool *structured) {
    const struct tpl_expr *x = &site->expr;
    size_t total = 0;

    /* Under old-escape-quotes every value stays a string, as Tekton's quote-escaping made it. */
    *structured = !r->t->old_escape && x->count == 1 && x->parts[0].kind == TPL_PARAM &&
                  (r->vals[x->parts[0].param].node || r->vals[x->parts[0].param].json);
    if (*structured)
        return 0;
    for (size_t i = 0; i < x->count; i++) {
        const struct tpl_part *p = &x->parts[i];
        size_t len = p->kind == TPL_LIT   ? p->len
                     : p->kind == TPL_UID ? IDS_UUID_LEN
                                          : r->vals[p->param].len;
        if (len > TEMPLATE_STRING_MAX - total) {
            tpl_render_error(r, "the value rendered at %s is longer than %d bytes", site->place,
                             TEMPLATE_STRING_MAX);
            return GHE_INVAL;
        }
        total += len;
    }
    return 0;
}

/* Appends a string site's parts, raw (escape false) or escaped for JSON. */
static int tpl_site_parts(struct tpl_render *r, const struct tpl_site *site, struct buf *out,
                          bool escape) {
    const struct tpl_expr *x = &site->expr;
    int rc = 0;

    for (size_t i = 0; i < x->count && !rc; i++) {
        const struct tpl_part *p = &x->parts[i];
        const char *s = p->kind == TPL_LIT   ? p->text
                        : p->kind == TPL_UID ? r->uid
                                             : r->vals[p->param].s;
        size_t len = p->kind == TPL_LIT   ? p->len
                     : p->kind == TPL_UID ? IDS_UUID_LEN
                                          : r->vals[p->param].len;
        rc = escape ? buf_append_json_escaped(out, s, len) : buf_append(out, s, len);
    }
    return rc;
}

/* Appends a site's value as JSON: a string, or the structured value it stands for. */
static int tpl_site_emit(struct tpl_render *r, const struct tpl_site *site, struct buf *out) {
    bool structured;
    int rc = tpl_site_check(r, site, &structured);

    if (rc)
        return rc;
    if (structured) {
        const char *json = tpl_val_json(&r->vals[site->expr.parts[0].param]);
        return json ? buf_appends(out, json) : GHE_NOMEM;
    }
    if ((rc = buf_append(out, "\"", 1)) || (rc = tpl_site_parts(r, site, out, true)))
        return rc;
    return buf_append(out, "\"", 1);
}

static int tpl_append_quoted(struct buf *out, const char *s) {
    int rc;
    if ((rc = buf_append(out, "\"", 1)) || (rc = buf_append_json_escaped(out, s, strlen(s))))
        return rc;
    return buf_append(out, "\"", 1);
}

/* Runs the compiled program: literal text, site values, name, namespace, labels, annotations. */
static int tpl_run(struct tpl_render *r, const char *name, const char *const *labels,
                   const char *const *notes, struct buf *out) {
    const struct template *t = r->t;
    const char *ns = r->in->namespace;
    bool note_comma = t->notes_nonempty;
    int rc = 0;

    for (size_t i = 0; i < t->nop && !rc; i++) {
        const struct tpl_op *op = &t->ops[i];
        switch (op->kind) {
        case TPL_OP_TEXT:
            rc = buf_append(out, t->text + op->off, op->len);
            break;
        case TPL_OP_SITE:
            rc = tpl_site_emit(r, &t->sites[op->index], out);
            break;
        case TPL_OP_KEY:
            if (!(rc = buf_append(out, "\"", 1)) &&
                !(rc = tpl_site_parts(r, &t->ksites[op->index], out, true)))
                rc = buf_append(out, "\"", 1);
            break;
        case TPL_OP_NAME:
            rc = tpl_append_quoted(out, name);
            break;
        case TPL_OP_NS:
            if (ns && !(rc = buf_appends(out, ",\"namespace\":")))
                rc = tpl_append_quoted(out, ns);
            break;
        case TPL_OP_SKIP_IF_NS:
            if (ns)
                i += op->skip;
            break;
        case TPL_OP_LABEL:
            rc = tpl_append_quoted(out, labels[op->index]);
            break;
        case TPL_OP_NOTE:
            if (notes[op->index]) {
                rc = tpl_append_quoted(out, notes[op->index]);
                i += op->skip;
            }
            break;
        case TPL_OP_NOTE_ADD:
            if (!notes[op->index])
                break;
            if (note_comma)
                rc = buf_append(out, ",", 1);
            note_comma = true;
            if (!rc && !(rc = tpl_append_quoted(out, tpl_note_keys[op->index])) &&
                !(rc = buf_append(out, ":", 1)))
                rc = tpl_append_quoted(out, notes[op->index]);
            break;
        }
    }
    return rc;
}

/* Computes the name, the labels and the annotations, then runs the program. */
static int tpl_render_text(struct tpl_render *r, struct buf *out, char name[NAMING_MAX + 1]) {
    const struct template_render_input *in = r->in;
    const struct select_decision *d = in->decision;
    const struct event *ev = r->ev;
    char safe[TPL_LABEL_COUNT][NAMING_MAX + 1];
    const char *labels[TPL_LABEL_COUNT], *notes[TPL_NOTE_COUNT];
    const char *label_src[TPL_LABEL_COUNT] = {NULL, d ? select_variant_name(d->variant) : NULL,
                                              ev->event, ev->delivery, ev->repo_full_name};
    const char *note_src[TPL_NOTE_COUNT] = {
        d ? d->rule : NULL, d ? d->reason : NULL, ev->delivery,   ev->ref,
        ev->revision,       ev->repo_full_name,   in->fingerprint, NULL};
    char installation[24]; /* the delivery's installation.id, for GitHub feedback */
    const cJSON *inst = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(ev->body, "installation"), "id");
    bool structured;
    int rc = 0;

    /* Every site is bounded, also those the output leaves out (a replaced label). */
    for (size_t i = 0; i < r->t->nsite && !rc; i++)
        rc = tpl_site_check(r, &r->t->sites[i], &structured);
    for (size_t i = 0; i < r->t->nksite && !rc; i++)
        rc = tpl_site_check(r, &r->t->ksites[i], &structured);
    if (rc)
        return rc;
    if (cJSON_IsNumber(inst) && inst->valuedouble >= 1 && inst->valuedouble < 1e15 &&
        inst->valuedouble == (double)(long long)inst->valuedouble) {
        snprintf(installation, sizeof(installation), "%lld", (long long)inst->valuedouble);
        note_src[TPL_NOTE_COUNT - 1] = installation;
    }
    naming_pipelinerun(r->t->name_prefix, in->name_kind, in->name_key[0], in->name_key[1], name);
    labels[0] = "gpuhook";
    for (size_t i = 1; i < TPL_LABEL_COUNT; i++) {
        naming_label_value(label_src[i], safe[i]);
        labels[i] = safe[i];
    }
    memcpy(notes, note_src, sizeof(notes));
    /* One allocation for the usual run: the literal text and room for the values. */
    buf_reserve(out, r->t->text_len + 2048);
    rc = tpl_run(r, name, labels, notes, out);
    if (rc == GHE_TOOBIG) {
        tpl_render_error(r, "the rendered PipelineRun is longer than %zu bytes", out->max);
        rc = GHE_INVAL;
    }
    return rc;
}

int template_render_json(const struct template *t, const struct template_render_input *in,
                         struct buf *out, char name[NAMING_MAX + 1], char *err, size_t errlen) {
    static const struct event no_event;
    struct tpl_render r;
    int rc;

    name[0] = '\0';
    if (err && errlen)
        err[0] = '\0';
    memset(&r, 0, sizeof(r));
    r.t = t;
    r.in = in;
    r.ev = in->ev ? in->ev : &no_event;
    r.err = err;
    r.errlen = errlen;
    r.vals = calloc(t->nparam + 1, sizeof(*r.vals));
    if (!r.vals)
        return GHE_NOMEM;
    rc = tpl_values(&r);
    if (!rc && t->uses_uid && (rc = ids_uuid4(r.uid)) != 0)
        tpl_render_error(&r, "no random bytes for $(uid)");
    if (!rc)
        rc = tpl_render_text(&r, out, name);
    tpl_values_free(r.vals, t->nparam);
    for (size_t i = 0; i < sizeof(r.roots) / sizeof(r.roots[0]); i++)
        cJSON_Delete(r.roots[i]);
    if (rc == GHE_NOMEM && err && errlen)
        snprintf(err, errlen, "out of memory while rendering the PipelineRun");
    return rc;
}

int template_render(const struct template *t, const struct template_render_input *in, cJSON **out,
                    char *err, size_t errlen) {
    char name[NAMING_MAX + 1];
    struct buf text;
    int rc;

    *out = NULL;
    buf_init(&text, TEMPLATE_RENDER_MAX);
    rc = template_render_json(t, in, &text, name, err, errlen);
    if (!rc && !(*out = cJSON_ParseWithLength(text.data, text.len))) {
        /* Out of memory, or a bug in the compiled text: a code of its own for the fuzzers. */
        rc = GHE_PERMANENT;
        if (err && errlen)
            snprintf(err, errlen, "the rendered PipelineRun does not parse back as JSON");
    }
    buf_cleanup(&text);
    return rc;
}
