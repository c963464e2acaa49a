/*
 * Compiling a template: binding values and the PipelineRun's strings become
 * lists of literal and expression parts (JSONPaths through gpuhook/jsonpath.h,
 * params, $(uid), headers, extensions), and the PipelineRun becomes compact
 * JSON text with holes (the ops of struct template) that a render fills in
 * order. It runs once, at load; it reads no file (template_load.c) and
 * evaluates no expression (template_render.c).
 */
#include "template_int.h"

#include <stdlib.h>
#include <string.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/event.h"
#include "gpuhook/jsonpath.h"
#include "gpuhook/jsonprune.h"

#define TPL_EV(field)                                                                              \
    { #field, TPL_FROM_EVENT, offsetof(struct event, field) }

const struct tpl_ext_def tpl_exts[] = {
    {"variant", TPL_FROM_VARIANT, 0},
    {"rule", TPL_FROM_RULE, 0},
    {"reason", TPL_FROM_REASON, 0},
    TPL_EV(event),
    TPL_EV(action),
    TPL_EV(delivery),
    TPL_EV(hook_id),
    TPL_EV(sender),
    TPL_EV(repo_url),
    TPL_EV(repo_full_name),
    TPL_EV(ref),
    TPL_EV(branch),
    TPL_EV(tag),
    TPL_EV(revision),
    TPL_EV(base_branch),
    TPL_EV(pr_number),
    TPL_EV(message),
    {"changed_files", TPL_FROM_CHANGED, 0},
};

#define TPL_EXT_LIST                                                                               \
    "variant, rule, reason, event, action, delivery, hook_id, sender, repo_url, "                  \
    "repo_full_name, ref, branch, tag, revision, base_branch, pr_number, message, changed_files"

const char *const tpl_label_keys[] = {"app.kubernetes.io/managed-by", "gpuhook.dev/variant",
                                      "gpuhook.dev/event", "triggers.tekton.dev/triggers-eventid",
                                      "gpuhook.dev/repository"};
const char *const tpl_note_keys[] = {"gpuhook.dev/rule",          "gpuhook.dev/reason",
                                     "gpuhook.dev/delivery",      "gpuhook.dev/ref",
                                     "gpuhook.dev/revision",      "gpuhook.dev/repository",
                                     "gpuhook.dev/request-sha256", "gpuhook.dev/installation-id"};

void tpl_expr_cleanup(struct tpl_expr *x) {
    for (size_t i = 0; i < x->count; i++)
        jsonpath_free(x->parts[i].path);
    free(x->parts);
    free(x->src);
    memset(x, 0, sizeof(*x));
}

static struct tpl_part *tpl_expr_add(struct tpl_expr *x, enum tpl_kind kind) {
    struct tpl_part *parts = realloc(x->parts, (x->count + 1) * sizeof(*parts));
    if (!parts)
        return NULL;
    x->parts = parts;
    memset(&parts[x->count], 0, sizeof(parts[0]));
    parts[x->count].kind = kind;
    return &parts[x->count++];
}

static int tpl_expr_add_literal(struct tpl_expr *x, size_t from, size_t to) {
    if (to <= from)
        return 0;
    struct tpl_part *p = tpl_expr_add(x, TPL_LIT);
    if (!p)
        return GHE_NOMEM;
    p->text = x->src + from;
    p->len = to - from;
    return 0;
}

static bool tpl_is_header_name(const char *s) {
    if (!*s)
        return false;
    for (; *s; s++)
        if (!strchr("!#$%&'*+-.^_`|~", *s) &&
            !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9')))
            return false;
    return true;
}

/*
 * Compiles one binding expression (the text between "$(" and ")") as Tekton
 * reads it: a JSONPath on body, header, extensions or context.
 */
static int tpl_binding_part(struct tpl_expr *x, const char *e, const char **why) {
    struct jsonpath *path = NULL;
    struct tpl_part *p;
    const char *h;
    int rc;

    if (strstr(e, "$("))
        return (*why = "a nested \"$(\" (Tekton's validation refuses it too)", GHE_INVAL);
    if ((rc = jsonpath_compile(e, &path, why)) != 0)
        return rc;
    if (!(p = tpl_expr_add(x, TPL_PATH))) {
        jsonpath_free(path);
        return GHE_NOMEM;
    }
    p->text = e;
    p->path = path;
    if ((h = jsonpath_header_name(path)) != NULL && tpl_is_header_name(h)) {
        p->kind = TPL_HEADER;
        p->text = h;
        return 0;
    }
    if (jsonpath_root(path) == JSONPATH_EXTENSIONS && strncmp(e, "extensions.", 11) == 0 &&
        tpl_is_header_name(e + 11)) {
        /* A plain name: one of gpuhook's, or a mistake worth reporting at load. */
        for (size_t i = 0; i < TPL_EXT_COUNT; i++) {
            if (strcmp(e + 11, tpl_exts[i].name) == 0) {
                p->kind = TPL_EXT;
                p->ext = i;
                return 0;
            }
        }
        return (*why = "unknown extension (gpuhook provides " TPL_EXT_LIST ")", GHE_INVAL);
    }
    return 0;
}

/* Compiles $(uid) or $(tt.params.X) and marks the param used. */
static int tpl_template_part(struct template *t, struct tpl_expr *x, const char *e,
                             const char **why) {
    struct tpl_part *p;

    if (strcmp(e, "uid") == 0) {
        if (!tpl_expr_add(x, TPL_UID))
            return GHE_NOMEM;
        t->uses_uid = true;
        return 0;
    }
    if (e[10] == '\0')
        return (*why = "names no param", GHE_INVAL);
    ssize_t i = tpl_param_find(t, e + 10);
    if (i < 0)
        return (*why = "is not declared in .spec.params", GHE_INVAL);
    if (!(p = tpl_expr_add(x, TPL_PARAM)))
        return GHE_NOMEM;
    p->text = e;
    p->param = (size_t)i;
    t->params[i].used = true;
    return 0;
}

/*
 * Compiles s into x. For a template (t set) only $(tt.params.X) and $(uid) are
 * ours: Tekton's own $(params.x), $(context...) and the like stay literal. For
 * a binding (t NULL) every "$(" must open a valid expression. Problems are
 * reported at place; returns GHE_INVAL after reporting, or GHE_NOMEM.
 */
int tpl_expr_compile(struct tpl_load *lc, const char *place, struct template *t, const char *s,
                     struct tpl_expr *x) {
    size_t lit = 0, i = 0;
    int rc = 0, bad = 0;

    memset(x, 0, sizeof(*x));
    if (!(x->src = strdup(s)))
        return GHE_NOMEM;
    for (;;) {
        char *open = strstr(x->src + i, "$(");
        if (!open)
            break;
        char *e = open + 2;
        if (t && strncmp(e, "tt.params.", 10) != 0 && strncmp(e, "uid)", 4) != 0) {
            i = (size_t)(e - x->src);
            continue;
        }
        /* As Tekton finds them: the expression ends at the first unbalanced ')'. */
        char *close = e;
        for (int depth = 0; *close; close++) {
            if (*close == '(' && !t)
                depth++;
            else if (*close == ')' && depth-- == 0)
                break;
        }
        if (!*close) {
            tpl_error(lc, place, "unterminated \"$(\" at byte %zu", (size_t)(open - x->src));
            bad = 1;
            break;
        }
        rc = tpl_expr_add_literal(x, lit, (size_t)(open - x->src));
        if (rc)
            break;
        *close = '\0';
        const char *why = NULL;
        rc = t ? tpl_template_part(t, x, e, &why) : tpl_binding_part(x, e, &why);
        if (rc == GHE_INVAL) {
            if (t)
                tpl_error(lc, place, "$(%s) %s", e, why);
            else
                tpl_error(lc, place, "$(%s): %s", e, why);
            bad = 1;
            rc = 0;
        } else if (rc) {
            break;
        }
        lit = i = (size_t)(close + 1 - x->src);
    }
    if (!rc)
        rc = tpl_expr_add_literal(x, lit, strlen(s));
    if (!rc && bad)
        rc = GHE_INVAL;
    return rc;
}

/* A mapping key holding our expressions: Tekton substitutes keys too (label keys, mostly). */
static int tpl_ksite_add(struct template *t, const cJSON *member, const char *place,
                         struct tpl_expr *x) {
    struct tpl_site *k = realloc(t->ksites, (t->nksite + 1) * sizeof(*k));
    if (!k)
        return GHE_NOMEM;
    t->ksites = k;
    if (!(k[t->nksite].place = strdup(place)))
        return GHE_NOMEM;
    k[t->nksite].node = member;
    k[t->nksite].expr = *x;
    t->nksite++;
    return 0;
}

static int tpl_site_add(struct template *t, const cJSON *node, const char *place,
                        struct tpl_expr *x) {
    if (t->nsite == t->capsite) {
        size_t cap = t->capsite ? t->capsite * 2 : 8;
        struct tpl_site *s = realloc(t->sites, cap * sizeof(*s));
        if (!s)
            return GHE_NOMEM;
        t->sites = s;
        t->capsite = cap;
    }
    struct tpl_site *s = &t->sites[t->nsite];
    if (!(s->place = strdup(place)))
        return GHE_NOMEM;
    s->node = node;
    s->expr = *x;
    t->nsite++;
    return 0;
}

/* Walks the PipelineRun in pre-order and records every string value holding our expressions. */
int tpl_scan(struct tpl_load *lc, struct template *t, const cJSON *node, char *place, size_t used) {
    const cJSON *c;
    size_t idx = 0;
    int rc = 0;

    cJSON_ArrayForEach(c, node) {
        size_t n = tpl_place_push(place, used, c->string, idx++);
        if (c->string && strstr(c->string, "$(")) {
            struct tpl_expr x;
            rc = tpl_expr_compile(lc, place, t, c->string, &x);
            if (rc == 0 && (x.count > 1 || (x.count == 1 && x.parts[0].kind != TPL_LIT))) {
                if ((rc = tpl_ksite_add(t, c, place, &x)) != 0)
                    tpl_expr_cleanup(&x);
            } else {
                tpl_expr_cleanup(&x);
            }
            if (rc == GHE_INVAL)
                rc = 0;
            if (rc)
                break;
        }
        if (cJSON_IsString(c) && strstr(c->valuestring, "$(")) {
            struct tpl_expr x;
            rc = tpl_expr_compile(lc, place, t, c->valuestring, &x);
            if (rc == 0 && (x.count > 1 || (x.count == 1 && x.parts[0].kind != TPL_LIT))) {
                rc = tpl_site_add(t, c, place, &x);
                if (rc)
                    tpl_expr_cleanup(&x);
            } else {
                tpl_expr_cleanup(&x);
            }
            if (rc == GHE_INVAL)
                rc = 0;
        } else if (cJSON_IsArray(c) || cJSON_IsObject(c)) {
            rc = tpl_scan(lc, t, c, place, n);
        }
        place[used] = '\0';
        if (rc)
            break;
    }
    return rc;
}

/*
 * Gathers the $(body...) paths of the bindings of used params as jsonprune
 * paths (borrowed from the compiled JSONPaths).
 */
int tpl_collect_body_paths(struct template *t) {
    size_t n = 0;
    for (size_t i = 0; i < t->nparam; i++)
        for (size_t k = 0; k < t->params[i].bind.count; k++)
            n += t->params[i].bind.parts[k].kind == TPL_PATH;
    if (n == 0)
        return 0;
    t->body_paths = calloc(n, sizeof(*t->body_paths));
    if (!t->body_paths)
        return GHE_NOMEM;
    for (size_t i = 0; i < t->nparam; i++) {
        if (!t->params[i].used)
            continue;
        for (size_t k = 0; k < t->params[i].bind.count; k++) {
            const struct tpl_part *part = &t->params[i].bind.parts[k];
            if (part->kind == TPL_PATH && jsonpath_root(part->path) == JSONPATH_BODY)
                t->body_paths[t->nbody_paths++] = jsonpath_prune_path(part->path);
        }
    }
    return 0;
}

struct tpl_compile {
    struct template *t;
    struct buf text;
    size_t site; /* the next site in pre-order */
    int rc;
};

static struct tpl_op *tpl_compile_op(struct tpl_compile *c, enum tpl_op_kind kind, size_t index) {
    struct template *t = c->t;
    if (c->rc)
        return NULL;
    if (t->nop == t->capop) {
        size_t cap = t->capop ? t->capop * 2 : 32;
        struct tpl_op *ops = realloc(t->ops, cap * sizeof(*ops));
        if (!ops) {
            c->rc = GHE_NOMEM;
            return NULL;
        }
        t->ops = ops;
        t->capop = cap;
    }
    struct tpl_op *op = &t->ops[t->nop++];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->index = index;
    return op;
}

/* Appends literal text, growing the previous text op when it ends where this starts. */
static void tpl_compile_text(struct tpl_compile *c, const char *s, size_t n) {
    size_t off = c->text.len;
    if (c->rc || n == 0)
        return;
    if ((c->rc = buf_append(&c->text, s, n)) != 0)
        return;
    struct tpl_op *last = c->t->nop ? &c->t->ops[c->t->nop - 1] : NULL;
    if (last && last->kind == TPL_OP_TEXT && last->off + last->len == off) {
        last->len += n;
        return;
    }
    struct tpl_op *op = tpl_compile_op(c, TPL_OP_TEXT, 0);
    if (op) {
        op->off = off;
        op->len = n;
    }
}

static void tpl_compile_texts(struct tpl_compile *c, const char *s) {
    tpl_compile_text(c, s, strlen(s));
}

/* A scalar (or a key, as a string node) as cJSON prints it. */
static void tpl_compile_scalar(struct tpl_compile *c, const cJSON *node) {
    char *s = c->rc ? NULL : cJSON_PrintUnformatted(node);
    if (!s) {
        if (!c->rc)
            c->rc = GHE_NOMEM;
        return;
    }
    tpl_compile_texts(c, s);
    cJSON_free(s);
}

static void tpl_compile_key(struct tpl_compile *c, bool comma, const char *key) {
    for (size_t i = 0; i < c->t->nksite; i++) {
        if (c->t->ksites[i].node->string == key) {
            if (comma)
                tpl_compile_text(c, ",", 1);
            tpl_compile_op(c, TPL_OP_KEY, i);
            tpl_compile_text(c, ":", 1);
            return;
        }
    }
    cJSON k = {0};
    k.type = cJSON_String;
    k.valuestring = (char *)key;
    if (comma)
        tpl_compile_text(c, ",", 1);
    tpl_compile_scalar(c, &k);
    tpl_compile_text(c, ":", 1);
}

static bool tpl_compile_is_site(const struct tpl_compile *c, const cJSON *node) {
    return c->site < c->t->nsite && c->t->sites[c->site].node == node;
}

/* Steps over node and everything below it that a render leaves out. */
static void tpl_compile_skip(struct tpl_compile *c, const cJSON *node) {
    const cJSON *k;
    if (tpl_compile_is_site(c, node)) {
        c->site++;
        return;
    }
    cJSON_ArrayForEach(k, node) tpl_compile_skip(c, k);
}

static void tpl_compile_value(struct tpl_compile *c, const cJSON *node, int role);

enum { TPL_ROLE_PLAIN, TPL_ROLE_RUN, TPL_ROLE_METADATA, TPL_ROLE_LABELS, TPL_ROLE_NOTES };

static ssize_t tpl_compile_find(const char *const *keys, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0)
            return (ssize_t)i;
    return -1;
}

/*
 * Ends a skippable run of ops that began at op index at: sets its skip count, then
 * starts a fresh text op so that later text cannot merge into the skipped run.
 */
static void tpl_compile_end_skip(struct tpl_compile *c, size_t at) {
    if (c->rc)
        return;
    c->t->ops[at].skip = c->t->nop - at - 1;
    if (tpl_compile_op(c, TPL_OP_TEXT, 0))
        c->t->ops[c->t->nop - 1].off = c->text.len;
}

/*
 * Labels (notes false) and annotations (notes true): gpuhook's keys replace the
 * template's members in place and the rest are appended. A label always has a
 * value; an annotation without one keeps the template's member, or is left out.
 */
static void tpl_compile_ours(struct tpl_compile *c, const cJSON *obj, bool notes) {
    const char *const *keys = notes ? tpl_note_keys : tpl_label_keys;
    size_t n = notes ? TPL_NOTE_COUNT : TPL_LABEL_COUNT;
    bool have[TPL_NOTE_COUNT > TPL_LABEL_COUNT ? TPL_NOTE_COUNT : TPL_LABEL_COUNT] = {false};
    bool comma = false;
    const cJSON *k;

    tpl_compile_text(c, "{", 1);
    cJSON_ArrayForEach(k, obj) {
        ssize_t i = tpl_compile_find(keys, n, k->string);
        tpl_compile_key(c, comma, k->string);
        comma = true;
        if (i < 0) {
            tpl_compile_value(c, k, TPL_ROLE_PLAIN);
            continue;
        }
        have[i] = true;
        if (!notes) {
            tpl_compile_skip(c, k);
            tpl_compile_op(c, TPL_OP_LABEL, (size_t)i);
            continue;
        }
        size_t at = c->t->nop;
        if (!tpl_compile_op(c, TPL_OP_NOTE, (size_t)i))
            return;
        tpl_compile_value(c, k, TPL_ROLE_PLAIN);
        tpl_compile_end_skip(c, at);
    }
    if (notes)
        c->t->notes_nonempty = comma;
    for (size_t i = 0; i < n; i++) {
        if (have[i])
            continue;
        if (notes) {
            tpl_compile_op(c, TPL_OP_NOTE_ADD, i);
            continue;
        }
        tpl_compile_key(c, comma, keys[i]);
        comma = true;
        tpl_compile_op(c, TPL_OP_LABEL, i);
    }
    tpl_compile_text(c, "}", 1);
}

/* metadata: the name first, then the namespace, then the template's own members. */
static void tpl_compile_metadata(struct tpl_compile *c, const cJSON *obj) {
    const cJSON *k;

    tpl_compile_texts(c, "{\"name\":");
    tpl_compile_op(c, TPL_OP_NAME, 0);
    tpl_compile_op(c, TPL_OP_NS, 0);
    cJSON_ArrayForEach(k, obj) {
        if (strcmp(k->string, "name") == 0 || strcmp(k->string, "generateName") == 0) {
            tpl_compile_skip(c, k);
            continue;
        }
        size_t at = c->t->nop;
        bool ns = strcmp(k->string, "namespace") == 0;
        if (ns && !tpl_compile_op(c, TPL_OP_SKIP_IF_NS, 0))
            return;
        tpl_compile_key(c, true, k->string);
        tpl_compile_value(c, k,
                          strcmp(k->string, "labels") == 0        ? TPL_ROLE_LABELS
                          : strcmp(k->string, "annotations") == 0 ? TPL_ROLE_NOTES
                                                                  : TPL_ROLE_PLAIN);
        if (ns)
            tpl_compile_end_skip(c, at);
    }
    tpl_compile_text(c, "}", 1);
}

static void tpl_compile_value(struct tpl_compile *c, const cJSON *node, int role) {
    const cJSON *k;
    bool comma = false;

    if (tpl_compile_is_site(c, node)) {
        tpl_compile_op(c, TPL_OP_SITE, c->site++);
        return;
    }
    if (cJSON_IsObject(node) && role == TPL_ROLE_METADATA) {
        tpl_compile_metadata(c, node);
        return;
    }
    if (cJSON_IsObject(node) && (role == TPL_ROLE_LABELS || role == TPL_ROLE_NOTES)) {
        tpl_compile_ours(c, node, role == TPL_ROLE_NOTES);
        return;
    }
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) {
        tpl_compile_scalar(c, node);
        return;
    }
    tpl_compile_text(c, cJSON_IsObject(node) ? "{" : "[", 1);
    cJSON_ArrayForEach(k, node) {
        if (cJSON_IsObject(node))
            tpl_compile_key(c, comma, k->string);
        else if (comma)
            tpl_compile_text(c, ",", 1);
        comma = true;
        bool meta = role == TPL_ROLE_RUN && k->string && strcmp(k->string, "metadata") == 0;
        tpl_compile_value(c, k, meta ? TPL_ROLE_METADATA : TPL_ROLE_PLAIN);
    }
    tpl_compile_text(c, cJSON_IsObject(node) ? "}" : "]", 1);
}

/* The literal start (before any $(...)) of a string node, as the name's static prefix. */
static size_t tpl_compile_name_prefix(const cJSON *node, char out[NAMING_MAX + 1]) {
    return naming_static_prefix(cJSON_IsString(node) ? node->valuestring : NULL, out);
}

/* Compiles t->run into text and ops (after its sites are known). */
int tpl_compile(struct template *t) {
    struct tpl_compile c = {t, {0}, 0, 0};
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(t->run, "metadata");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(t->run, "spec");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(spec, "pipelineRef");

    buf_init(&c.text, TEMPLATE_RENDER_MAX);
    tpl_compile_value(&c, t->run, TPL_ROLE_RUN);
    if (!c.rc && c.site != t->nsite)
        c.rc = GHE_INVAL; /* cannot happen: every site lies in the tree walked */
    if (c.rc) {
        buf_cleanup(&c.text);
        return c.rc;
    }
    t->text_len = c.text.len;
    t->text = c.text.data ? c.text.data : strdup("");
    /* Never the rendered value: that may hold the variant, and a name must not. */
    if (!tpl_compile_name_prefix(cJSON_GetObjectItemCaseSensitive(meta, "generateName"),
                                 t->name_prefix))
        tpl_compile_name_prefix(cJSON_IsObject(ref) ? cJSON_GetObjectItemCaseSensitive(ref, "name")
                                                    : NULL,
                                t->name_prefix);
    return t->text ? 0 : GHE_NOMEM;
}
