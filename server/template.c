/*
 * TriggerTemplate and TriggerBinding: load, validate and compile once, then
 * render per event. Every string value of the PipelineRun that holds
 * $(tt.params.X) or $(uid) becomes a "site" with its parts compiled (a mapping
 * key holding them, a "key site"); every binding value becomes a list of
 * literal and JSONPath parts (gpuhook/jsonpath.h). The PipelineRun is then compiled into compact
 * JSON text with holes (sites, name, namespace, labels, annotations). A render evaluates the bound
 * params and appends text and values to one buffer. A value goes in as a JSON-escaped string, or,
 * when it was structured at its source, as JSON that cJSON printed; it is never scanned for
 * expressions again.
 */
#include "gpuhook/template.h"
#include "gpuhook/jsonpath.h"
#include "gpuhook/jsonprune.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <openssl/rand.h>

#include "gpuhook/buf.h"
#include "gpuhook/naming.h"

#define TEMPLATE_API_VERSION "triggers.tekton.dev/v1beta1"
#define TEMPLATE_API_VERSION_OLD "triggers.tekton.dev/v1alpha1" /* the same spec, still served */
#define TEMPLATE_OLD_ESCAPE "triggers.tekton.dev/old-escape-quotes"
#define TEMPLATE_RUN_API_VERSION "tekton.dev/v1"
#define TEMPLATE_RUN_API_VERSION_OLD "tekton.dev/v1beta1" /* posted to its own version */
#define TEMPLATE_VALUE_MAX (1024 * 1024)                  /* one param's rendered value */
#define TEMPLATE_STRING_MAX (4 * 1024 * 1024) /* one rendered string of the PipelineRun */
#define TEMPLATE_PLACE_MAX 512
#define TEMPLATE_MISSING 1 /* internal: a $(body...) or $(header...) had no value */
#define TEMPLATE_RENDER_MAX (64 * 1024 * 1024) /* the whole rendered PipelineRun */

/*
 * TPL_HEADER and TPL_EXT are the plain $(header.Name) and $(extensions.name),
 * read without building anything; every other binding expression is a
 * TPL_PATH, a JSONPath evaluated on the body or on the header, extensions or
 * context object a render builds when a path first needs it.
 */
enum tpl_kind { TPL_LIT, TPL_PARAM, TPL_UID, TPL_PATH, TPL_HEADER, TPL_EXT };

/* Where an extension's value comes from: the decision, or a string field of struct event. */
enum tpl_ext_source {
    TPL_FROM_VARIANT,
    TPL_FROM_RULE,
    TPL_FROM_REASON,
    TPL_FROM_EVENT,
    TPL_FROM_CHANGED /* a push's added, modified and removed files, joined with ',' */
};

struct tpl_ext_def {
    const char *name;
    enum tpl_ext_source source;
    size_t offset; /* of the char * in struct event, for TPL_FROM_EVENT */
};

#define TPL_EV(field)                                                                              \
    { #field, TPL_FROM_EVENT, offsetof(struct event, field) }

static const struct tpl_ext_def tpl_exts[] = {
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

#define TPL_EXT_COUNT (sizeof(tpl_exts) / sizeof(tpl_exts[0]))

#define TPL_EXT_LIST                                                                               \
    "variant, rule, reason, event, action, delivery, hook_id, sender, repo_url, "                  \
    "repo_full_name, ref, branch, tag, revision, base_branch, pr_number, message, changed_files"

struct tpl_part {
    enum tpl_kind kind;
    const char *text;      /* TPL_LIT: the bytes; others: the expression, NUL-terminated */
    size_t len;            /* TPL_LIT only */
    size_t param;          /* TPL_PARAM */
    size_t ext;            /* TPL_EXT: index into tpl_exts */
    struct jsonpath *path; /* TPL_PATH */
};

struct tpl_expr {
    char *src; /* a private copy of the source string that the parts point into */
    struct tpl_part *parts;
    size_t count;
};

struct tpl_param {
    char *name;
    char *def; /* the default as text, NULL when there is none */
    size_t def_len;
    cJSON *def_json;     /* the default when it is an array or an object */
    char *def_json_text; /* def_json printed compactly */
    struct tpl_expr bind;
    bool bound;
    bool used; /* some site references it */
};

struct tpl_site {
    const cJSON *node; /* a string node of template->run */
    char *place;       /* ".spec.resourcetemplates[0]..." for messages */
    struct tpl_expr expr;
};

/*
 * The labels and annotations every run gets. A template's own member with one
 * of these keys is replaced in place; the others are appended.
 */
static const char *const tpl_label_keys[] = {
    "app.kubernetes.io/managed-by", "gpuhook.dev/variant", "gpuhook.dev/event",
    "triggers.tekton.dev/triggers-eventid", "gpuhook.dev/repository"};
static const char *const tpl_note_keys[] = {"gpuhook.dev/rule",          "gpuhook.dev/reason",
                                            "gpuhook.dev/delivery",      "gpuhook.dev/ref",
                                            "gpuhook.dev/revision",      "gpuhook.dev/repository",
                                            "gpuhook.dev/request-sha256"};
#define TPL_LABEL_COUNT (sizeof(tpl_label_keys) / sizeof(tpl_label_keys[0]))
#define TPL_NOTE_COUNT (sizeof(tpl_note_keys) / sizeof(tpl_note_keys[0]))

/*
 * The PipelineRun is compiled at load into compact JSON text with holes, so a
 * render appends text and values to one buffer: no tree is copied per event.
 */
enum tpl_op_kind {
    TPL_OP_TEXT,       /* text[off, off + len) */
    TPL_OP_SITE,       /* the value of sites[index] */
    TPL_OP_NAME,       /* the run's name, quoted */
    TPL_OP_NS,         /* ,"namespace":"..." when the input sets one */
    TPL_OP_SKIP_IF_NS, /* skips the next skip ops when the input sets a namespace */
    TPL_OP_LABEL,      /* label index, quoted */
    TPL_OP_NOTE,       /* annotation index when it has a value, and then skips skip ops */
    TPL_OP_NOTE_ADD,   /* ,"key":"value" for annotation index when it has a value */
    TPL_OP_KEY,        /* the rendered mapping key of ksites[index], quoted */
};

struct tpl_op {
    enum tpl_op_kind kind;
    size_t off, len;
    size_t index;
    size_t skip;
};

struct template {
    cJSON *run; /* the PipelineRun, detached from the TriggerTemplate */
    char *text; /* the literal JSON text the ops point into */
    size_t text_len;
    struct tpl_op *ops;
    size_t nop, capop;
    bool notes_nonempty; /* the template's annotations have members of their own */
    char name_prefix[NAMING_MAX +
                     1]; /* static: generateName's (or pipelineRef.name's) literal start */
    struct tpl_param *params;
    size_t nparam;
    struct tpl_site *sites; /* in the tree's pre-order, the order render walks */
    size_t nsite;
    size_t capsite;
    struct tpl_site *ksites; /* mapping keys holding $(tt.params.X) or $(uid); node: the member */
    size_t nksite;
    bool uses_uid;
    bool old_escape; /* the old-escape-quotes annotation: values always stay strings */
    /* The bindings' $(body.…) paths, for the parser to keep (jsonprune). */
    struct jsonprune_path *body_paths;
    size_t nbody_paths;
};

struct tpl_load {
    struct errlist *el;
    const char *file;
    size_t errors;
};

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
    char uid[37];
    char *err;
    size_t errlen;
};

static void tpl_error(struct tpl_load *lc, const char *place, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Adds "FILE: PLACE: reason" to the error list. */
static void tpl_error(struct tpl_load *lc, const char *place, const char *fmt, ...) {
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (place && *place)
        errlist_add(lc->el, "%s: %s: %s", lc->file, place, msg);
    else
        errlist_add(lc->el, "%s: %s", lc->file, msg);
    lc->errors++;
}

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

static const char *tpl_type_name(const cJSON *n) {
    if (cJSON_IsString(n))
        return "a string";
    if (cJSON_IsNumber(n))
        return "a number";
    if (cJSON_IsBool(n))
        return "a boolean";
    if (cJSON_IsNull(n))
        return "null";
    if (cJSON_IsArray(n))
        return "a list";
    return "a mapping";
}

static bool tpl_key_is_simple(const char *k) {
    if (!*k)
        return false;
    for (; *k; k++) {
        unsigned char c = (unsigned char)*k;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Appends a child's step (".key", ["key"] or [N]) to place; returns the new length. */
static size_t tpl_place_push(char *place, size_t used, const char *key, size_t index) {
    int n;

    if (key && tpl_key_is_simple(key))
        n = snprintf(place + used, TEMPLATE_PLACE_MAX - used, ".%s", key);
    else if (key)
        n = snprintf(place + used, TEMPLATE_PLACE_MAX - used, "[\"%s\"]", key);
    else
        n = snprintf(place + used, TEMPLATE_PLACE_MAX - used, "[%zu]", index);
    if (n < 0)
        return used;
    used += (size_t)n;
    return used >= TEMPLATE_PLACE_MAX ? TEMPLATE_PLACE_MAX - 1 : used;
}

/* Reports every key of obj that is not in allowed (a NULL-terminated list). */
static void tpl_check_keys(struct tpl_load *lc, const cJSON *obj, const char *place,
                           const char *const *allowed) {
    const cJSON *c;

    cJSON_ArrayForEach(c, obj) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, c->string) != 0)
            a++;
        if (!*a) {
            char p[TEMPLATE_PLACE_MAX];
            snprintf(p, sizeof(p), "%s", place);
            tpl_place_push(p, strlen(p), c->string, 0);
            tpl_error(lc, p, "unknown key");
        }
    }
}

/* Checks that obj.key is the string want; reports and returns false otherwise. */
static bool tpl_expect_value(struct tpl_load *lc, const cJSON *obj, const char *place,
                             const char *key, const char *want) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    char p[TEMPLATE_PLACE_MAX];

    snprintf(p, sizeof(p), "%s", place);
    tpl_place_push(p, strlen(p), key, 0);
    if (!v) {
        tpl_error(lc, p, "missing; expected \"%s\"", want);
        return false;
    }
    if (!cJSON_IsString(v)) {
        tpl_error(lc, p, "expected \"%s\", found %s", want, tpl_type_name(v));
        return false;
    }
    if (strcmp(v->valuestring, want) != 0) {
        tpl_error(lc, p, "\"%s\" is not %s", v->valuestring, want);
        return false;
    }
    return true;
}

/* apiVersion: triggers.tekton.dev/v1beta1, or v1alpha1 (the same spec for what gpuhook reads). */
static void tpl_expect_api_version(struct tpl_load *lc, const cJSON *doc) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(doc, "apiVersion");
    if (!(cJSON_IsString(v) && strcmp(v->valuestring, TEMPLATE_API_VERSION_OLD) == 0))
        tpl_expect_value(lc, doc, "", "apiVersion", TEMPLATE_API_VERSION);
}

static void tpl_expr_cleanup(struct tpl_expr *x) {
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

static ssize_t tpl_param_find(const struct template *t, const char *name) {
    for (size_t i = 0; i < t->nparam; i++)
        if (strcmp(t->params[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
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
static int tpl_expr_compile(struct tpl_load *lc, const char *place, struct template *t,
                            const char *s, struct tpl_expr *x) {
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

/* Turns a scalar default or value into text; arrays and objects become compact JSON. */
static char *tpl_scalar_text(const cJSON *v) {
    if (cJSON_IsString(v))
        return strdup(v->valuestring);
    if (cJSON_IsTrue(v))
        return strdup("true");
    if (cJSON_IsFalse(v))
        return strdup("false");
    char *json = cJSON_PrintUnformatted(v);
    char *s = json ? strdup(json) : NULL;
    cJSON_free(json);
    return s;
}

static int tpl_param_default(struct tpl_param *p, const cJSON *d) {
    if (!d || cJSON_IsNull(d))
        return 0;
    if (!(p->def = tpl_scalar_text(d)))
        return GHE_NOMEM;
    p->def_len = strlen(p->def);
    /* Tekton writes array and object defaults as YAML or as JSON text. */
    if (cJSON_IsArray(d) || cJSON_IsObject(d)) {
        if (!(p->def_json = cJSON_Duplicate(d, 1)))
            return GHE_NOMEM;
    } else if (p->def[0] == '[' || p->def[0] == '{') {
        p->def_json = cJSON_ParseWithLength(p->def, p->def_len);
        if (p->def_json && !cJSON_IsArray(p->def_json) && !cJSON_IsObject(p->def_json)) {
            cJSON_Delete(p->def_json);
            p->def_json = NULL;
        }
    }
    if (p->def_json && !(p->def_json_text = cJSON_PrintUnformatted(p->def_json)))
        return GHE_NOMEM;
    return 0;
}

static bool tpl_is_param_name(const char *s) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.'))
            return false;
    return true;
}

static int tpl_load_params(struct tpl_load *lc, struct template *t, const cJSON *params) {
    static const char *const keys[] = {"name", "default", "description", NULL};
    const cJSON *item;
    size_t idx = 0;

    if (!params)
        return 0;
    if (!cJSON_IsArray(params)) {
        tpl_error(lc, ".spec.params", "expected a list, found %s", tpl_type_name(params));
        return 0;
    }
    t->params = calloc((size_t)cJSON_GetArraySize(params) + 1, sizeof(*t->params));
    if (!t->params)
        return GHE_NOMEM;
    cJSON_ArrayForEach(item, params) {
        char place[64];
        snprintf(place, sizeof(place), ".spec.params[%zu]", idx++);
        if (!cJSON_IsObject(item)) {
            tpl_error(lc, place, "expected a mapping, found %s", tpl_type_name(item));
            continue;
        }
        tpl_check_keys(lc, item, place, keys);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(item, "description");
        char sub[TEMPLATE_PLACE_MAX];
        if (!cJSON_IsString(name) || !tpl_is_param_name(name->valuestring)) {
            snprintf(sub, sizeof(sub), "%s.name", place);
            tpl_error(lc, sub,
                      "%s; a param name is a letter or '_' and then letters, digits, "
                      "'_', '-' or '.'",
                      name ? "not a valid param name" : "missing");
            continue;
        }
        if (desc && !cJSON_IsString(desc)) {
            snprintf(sub, sizeof(sub), "%s.description", place);
            tpl_error(lc, sub, "expected a string, found %s", tpl_type_name(desc));
        }
        if (tpl_param_find(t, name->valuestring) >= 0) {
            tpl_error(lc, place, "duplicate param \"%s\"", name->valuestring);
            continue;
        }
        struct tpl_param *p = &t->params[t->nparam];
        if (!(p->name = strdup(name->valuestring)))
            return GHE_NOMEM;
        t->nparam++;
        if (tpl_param_default(p, cJSON_GetObjectItemCaseSensitive(item, "default")))
            return GHE_NOMEM;
    }
    return 0;
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
static int tpl_scan(struct tpl_load *lc, struct template *t, const cJSON *node, char *place,
                    size_t used) {
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

/* Gives run a metadata mapping with labels and annotations, so render only fills them. */
static int tpl_prepare_metadata(struct tpl_load *lc, cJSON *run) {
    static const char *const maps[] = {"labels", "annotations"};
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(run, "metadata");

    if (!meta) {
        if (!(meta = cJSON_AddObjectToObject(run, "metadata")))
            return GHE_NOMEM;
    } else if (!cJSON_IsObject(meta)) {
        tpl_error(lc, ".spec.resourcetemplates[0].metadata", "expected a mapping, found %s",
                  tpl_type_name(meta));
        return 0;
    }
    for (size_t i = 0; i < 2; i++) {
        cJSON *m = cJSON_GetObjectItemCaseSensitive(meta, maps[i]);
        if (!m) {
            if (!cJSON_AddObjectToObject(meta, maps[i]))
                return GHE_NOMEM;
        } else if (!cJSON_IsObject(m)) {
            char place[TEMPLATE_PLACE_MAX];
            snprintf(place, sizeof(place), ".spec.resourcetemplates[0].metadata.%s", maps[i]);
            tpl_error(lc, place, "expected a mapping, found %s", tpl_type_name(m));
        }
    }
    return 0;
}

static int tpl_load_run(struct tpl_load *lc, struct template *t, cJSON *rts) {
    static const char *const keys[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    const char *place = ".spec.resourcetemplates[0]";
    char p[TEMPLATE_PLACE_MAX];

    if (!cJSON_IsArray(rts)) {
        tpl_error(lc, ".spec.resourcetemplates",
                  rts ? "expected a list holding one PipelineRun"
                      : "missing; expected a list "
                        "holding one PipelineRun");
        return 0;
    }
    int n = cJSON_GetArraySize(rts);
    if (n != 1) {
        tpl_error(lc, ".spec.resourcetemplates",
                  "holds %d resources; gpuhook renders exactly one PipelineRun", n);
        return 0;
    }
    cJSON *run = cJSON_GetArrayItem(rts, 0);
    if (!cJSON_IsObject(run)) {
        tpl_error(lc, place, "expected a mapping, found %s", tpl_type_name(run));
        return 0;
    }
    size_t before = lc->errors;
    const cJSON *version = cJSON_GetObjectItemCaseSensitive(run, "apiVersion");
    if (!cJSON_IsString(version) || strcmp(version->valuestring, TEMPLATE_RUN_API_VERSION_OLD) != 0)
        tpl_expect_value(lc, run, place, "apiVersion", TEMPLATE_RUN_API_VERSION);
    tpl_expect_value(lc, run, place, "kind", "PipelineRun");
    tpl_check_keys(lc, run, place, keys);
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(run, "spec")))
        tpl_error(lc, ".spec.resourcetemplates[0].spec", "missing or not a mapping");
    if (lc->errors != before)
        return 0;
    t->run = cJSON_DetachItemViaPointer(rts, run);
    /* apiVersion renders first, so the API client reads the version from the text's start. */
    cJSON *av = cJSON_DetachItemFromObjectCaseSensitive(t->run, "apiVersion");
    if (!av || !cJSON_InsertItemInArray(t->run, 0, av)) {
        cJSON_Delete(av);
        return GHE_NOMEM;
    }
    int rc = tpl_prepare_metadata(lc, t->run);
    if (rc)
        return rc;
    snprintf(p, sizeof(p), "%s", place);
    return tpl_scan(lc, t, t->run, p, strlen(p));
}

static int tpl_load_template(struct tpl_load *lc, struct template *t, const char *path) {
    static const char *const top[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    static const char *const spec_keys[] = {"params", "resourcetemplates", NULL};
    char err[512];
    cJSON *doc = NULL;
    int rc = yamljson_load_file(path, &doc, err, sizeof(err));

    if (rc) {
        errlist_add(lc->el, "%s", err);
        lc->errors++;
        return rc;
    }
    if (!cJSON_IsObject(doc)) {
        tpl_error(lc, NULL, "expected a TriggerTemplate mapping, found %s", tpl_type_name(doc));
        goto out;
    }
    tpl_expect_api_version(lc, doc);
    tpl_expect_value(lc, doc, "", "kind", "TriggerTemplate");
    tpl_check_keys(lc, doc, "", top);
    cJSON *meta = cJSON_GetObjectItemCaseSensitive(doc, "metadata");
    if (meta && !cJSON_IsObject(meta))
        tpl_error(lc, ".metadata", "expected a mapping, found %s", tpl_type_name(meta));
    const cJSON *notes = cJSON_GetObjectItemCaseSensitive(meta, "annotations");
    t->old_escape = cJSON_IsObject(notes) &&
                    cJSON_GetObjectItemCaseSensitive(notes, TEMPLATE_OLD_ESCAPE) != NULL;
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(doc, "spec");
    if (!cJSON_IsObject(spec)) {
        tpl_error(lc, ".spec", "missing or not a mapping");
        goto out;
    }
    tpl_check_keys(lc, spec, ".spec", spec_keys);
    rc = tpl_load_params(lc, t, cJSON_GetObjectItemCaseSensitive(spec, "params"));
    if (!rc)
        rc = tpl_load_run(lc, t, cJSON_GetObjectItemCaseSensitive(spec, "resourcetemplates"));
out:
    cJSON_Delete(doc);
    return rc;
}

/* Loads the binding; t_ok says whether the template's params can be cross-checked. */
static int tpl_load_binding(struct tpl_load *lc, struct template *t, bool t_ok, const char *path) {
    static const char *const top[] = {"apiVersion", "kind", "metadata", "spec", NULL};
    static const char *const spec_keys[] = {"params", NULL};
    static const char *const pkeys[] = {"name", "value", NULL};
    char err[512];
    cJSON *doc = NULL;
    const cJSON *item;
    size_t idx = 0;
    int rc = yamljson_load_file(path, &doc, err, sizeof(err));

    if (rc) {
        errlist_add(lc->el, "%s", err);
        lc->errors++;
        return rc;
    }
    rc = 0;
    if (!cJSON_IsObject(doc)) {
        tpl_error(lc, NULL, "expected a TriggerBinding mapping, found %s", tpl_type_name(doc));
        goto out;
    }
    tpl_expect_api_version(lc, doc);
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(doc, "kind");
    if (!(cJSON_IsString(kind) && strcmp(kind->valuestring, "ClusterTriggerBinding") == 0))
        tpl_expect_value(lc, doc, "", "kind", "TriggerBinding");
    tpl_check_keys(lc, doc, "", top);
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(doc, "spec");
    if (!cJSON_IsObject(spec)) {
        tpl_error(lc, ".spec", "missing or not a mapping");
        goto out;
    }
    tpl_check_keys(lc, spec, ".spec", spec_keys);
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(spec, "params");
    if (params && !cJSON_IsArray(params)) {
        tpl_error(lc, ".spec.params", "expected a list, found %s", tpl_type_name(params));
        goto out;
    }
    cJSON_ArrayForEach(item, params) {
        char place[64], vplace[64];
        snprintf(place, sizeof(place), ".spec.params[%zu]", idx);
        snprintf(vplace, sizeof(vplace), ".spec.params[%zu].value", idx++);
        if (!cJSON_IsObject(item)) {
            tpl_error(lc, place, "expected a mapping, found %s", tpl_type_name(item));
            continue;
        }
        tpl_check_keys(lc, item, place, pkeys);
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(item, "name");
        const cJSON *value = cJSON_GetObjectItemCaseSensitive(item, "value");
        if (!cJSON_IsString(name) || !*name->valuestring) {
            char nplace[64];
            snprintf(nplace, sizeof(nplace), ".spec.params[%zu].name", idx - 1);
            tpl_error(lc, nplace, "missing or not a string");
            continue;
        }
        if (!value || cJSON_IsNull(value) || cJSON_IsArray(value) || cJSON_IsObject(value)) {
            tpl_error(lc, vplace, "expected a string, found %s",
                      value ? tpl_type_name(value) : "nothing");
            continue;
        }
        /* A param the template does not declare is checked, then ignored, as in Tekton. */
        ssize_t pi = t_ok ? tpl_param_find(t, name->valuestring) : -1;
        bool dup = false;
        for (const cJSON *o = params->child; o != item; o = o->next) {
            const cJSON *on = cJSON_GetObjectItemCaseSensitive(o, "name");
            dup = dup || (cJSON_IsString(on) && strcmp(on->valuestring, name->valuestring) == 0);
        }
        if (dup) {
            tpl_error(lc, place, "param \"%s\" is bound twice", name->valuestring);
            continue;
        }
        char *text = tpl_scalar_text(value);
        struct tpl_expr x;
        if (!text) {
            rc = GHE_NOMEM;
            goto out;
        }
        rc = tpl_expr_compile(lc, vplace, NULL, text, &x);
        free(text);
        if (rc == 0 && pi >= 0) {
            t->params[pi].bind = x;
            t->params[pi].bound = true;
        } else {
            tpl_expr_cleanup(&x);
        }
        if (rc == GHE_NOMEM)
            goto out;
        rc = 0;
    }
out:
    cJSON_Delete(doc);
    return rc;
}

/*
 * Gathers the $(body...) paths of the bindings of used params as jsonprune
 * paths (borrowed from the compiled JSONPaths).
 */
static int tpl_collect_body_paths(struct template *t) {
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

/* ------------------------------------------------------------ compiling */

struct tpl_compile {
    struct template *t;
    struct buf text;
    size_t site; /* the next site in pre-order */
    int rc;
};

static struct tpl_op *tc_op(struct tpl_compile *c, enum tpl_op_kind kind, size_t index) {
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
static void tc_text(struct tpl_compile *c, const char *s, size_t n) {
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
    struct tpl_op *op = tc_op(c, TPL_OP_TEXT, 0);
    if (op) {
        op->off = off;
        op->len = n;
    }
}

static void tc_texts(struct tpl_compile *c, const char *s) { tc_text(c, s, strlen(s)); }

/* A scalar (or a key, as a string node) as cJSON prints it. */
static void tc_scalar(struct tpl_compile *c, const cJSON *node) {
    char *s = c->rc ? NULL : cJSON_PrintUnformatted(node);
    if (!s) {
        if (!c->rc)
            c->rc = GHE_NOMEM;
        return;
    }
    tc_texts(c, s);
    cJSON_free(s);
}

static void tc_key(struct tpl_compile *c, bool comma, const char *key) {
    for (size_t i = 0; i < c->t->nksite; i++) {
        if (c->t->ksites[i].node->string == key) {
            if (comma)
                tc_text(c, ",", 1);
            tc_op(c, TPL_OP_KEY, i);
            tc_text(c, ":", 1);
            return;
        }
    }
    cJSON k = {0};
    k.type = cJSON_String;
    k.valuestring = (char *)key;
    if (comma)
        tc_text(c, ",", 1);
    tc_scalar(c, &k);
    tc_text(c, ":", 1);
}

static bool tc_is_site(const struct tpl_compile *c, const cJSON *node) {
    return c->site < c->t->nsite && c->t->sites[c->site].node == node;
}

/* Steps over node and everything below it that a render leaves out. */
static void tc_skip(struct tpl_compile *c, const cJSON *node) {
    const cJSON *k;
    if (tc_is_site(c, node)) {
        c->site++;
        return;
    }
    cJSON_ArrayForEach(k, node) tc_skip(c, k);
}

static void tc_value(struct tpl_compile *c, const cJSON *node, int role);

enum { TC_PLAIN, TC_RUN, TC_METADATA, TC_LABELS, TC_NOTES };

static ssize_t tc_find(const char *const *keys, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0)
            return (ssize_t)i;
    return -1;
}

/*
 * Ends a skippable run of ops that began at op index at: sets its skip count, then
 * starts a fresh text op so that later text cannot merge into the skipped run.
 */
static void tc_end_skip(struct tpl_compile *c, size_t at) {
    if (c->rc)
        return;
    c->t->ops[at].skip = c->t->nop - at - 1;
    if (tc_op(c, TPL_OP_TEXT, 0))
        c->t->ops[c->t->nop - 1].off = c->text.len;
}

/*
 * Labels (notes false) and annotations (notes true): gpuhook's keys replace the
 * template's members in place and the rest are appended. A label always has a
 * value; an annotation without one keeps the template's member, or is left out.
 */
static void tc_ours(struct tpl_compile *c, const cJSON *obj, bool notes) {
    const char *const *keys = notes ? tpl_note_keys : tpl_label_keys;
    size_t n = notes ? TPL_NOTE_COUNT : TPL_LABEL_COUNT;
    bool have[TPL_NOTE_COUNT > TPL_LABEL_COUNT ? TPL_NOTE_COUNT : TPL_LABEL_COUNT] = {false};
    bool comma = false;
    const cJSON *k;

    tc_text(c, "{", 1);
    cJSON_ArrayForEach(k, obj) {
        ssize_t i = tc_find(keys, n, k->string);
        tc_key(c, comma, k->string);
        comma = true;
        if (i < 0) {
            tc_value(c, k, TC_PLAIN);
            continue;
        }
        have[i] = true;
        if (!notes) {
            tc_skip(c, k);
            tc_op(c, TPL_OP_LABEL, (size_t)i);
            continue;
        }
        size_t at = c->t->nop;
        if (!tc_op(c, TPL_OP_NOTE, (size_t)i))
            return;
        tc_value(c, k, TC_PLAIN);
        tc_end_skip(c, at);
    }
    if (notes)
        c->t->notes_nonempty = comma;
    for (size_t i = 0; i < n; i++) {
        if (have[i])
            continue;
        if (notes) {
            tc_op(c, TPL_OP_NOTE_ADD, i);
            continue;
        }
        tc_key(c, comma, keys[i]);
        comma = true;
        tc_op(c, TPL_OP_LABEL, i);
    }
    tc_text(c, "}", 1);
}

/* metadata: the name first, then the namespace, then the template's own members. */
static void tc_metadata(struct tpl_compile *c, const cJSON *obj) {
    const cJSON *k;

    tc_texts(c, "{\"name\":");
    tc_op(c, TPL_OP_NAME, 0);
    tc_op(c, TPL_OP_NS, 0);
    cJSON_ArrayForEach(k, obj) {
        if (strcmp(k->string, "name") == 0 || strcmp(k->string, "generateName") == 0) {
            tc_skip(c, k);
            continue;
        }
        size_t at = c->t->nop;
        bool ns = strcmp(k->string, "namespace") == 0;
        if (ns && !tc_op(c, TPL_OP_SKIP_IF_NS, 0))
            return;
        tc_key(c, true, k->string);
        tc_value(c, k,
                 strcmp(k->string, "labels") == 0        ? TC_LABELS
                 : strcmp(k->string, "annotations") == 0 ? TC_NOTES
                                                         : TC_PLAIN);
        if (ns)
            tc_end_skip(c, at);
    }
    tc_text(c, "}", 1);
}

static void tc_value(struct tpl_compile *c, const cJSON *node, int role) {
    const cJSON *k;
    bool comma = false;

    if (tc_is_site(c, node)) {
        tc_op(c, TPL_OP_SITE, c->site++);
        return;
    }
    if (cJSON_IsObject(node) && role == TC_METADATA) {
        tc_metadata(c, node);
        return;
    }
    if (cJSON_IsObject(node) && (role == TC_LABELS || role == TC_NOTES)) {
        tc_ours(c, node, role == TC_NOTES);
        return;
    }
    if (!cJSON_IsObject(node) && !cJSON_IsArray(node)) {
        tc_scalar(c, node);
        return;
    }
    tc_text(c, cJSON_IsObject(node) ? "{" : "[", 1);
    cJSON_ArrayForEach(k, node) {
        if (cJSON_IsObject(node))
            tc_key(c, comma, k->string);
        else if (comma)
            tc_text(c, ",", 1);
        comma = true;
        bool meta = role == TC_RUN && k->string && strcmp(k->string, "metadata") == 0;
        tc_value(c, k, meta ? TC_METADATA : TC_PLAIN);
    }
    tc_text(c, cJSON_IsObject(node) ? "}" : "]", 1);
}

/* The literal start (before any $(...)) of a string node, as the name's static prefix. */
static size_t tc_name_prefix(const cJSON *node, char out[NAMING_MAX + 1]) {
    return naming_static_prefix(cJSON_IsString(node) ? node->valuestring : NULL, out);
}

/* Compiles t->run into text and ops (after its sites are known). */
static int tpl_compile(struct template *t) {
    struct tpl_compile c = {t, {0}, 0, 0};
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(t->run, "metadata");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(t->run, "spec");
    const cJSON *ref = cJSON_GetObjectItemCaseSensitive(spec, "pipelineRef");

    buf_init(&c.text, TEMPLATE_RENDER_MAX);
    tc_value(&c, t->run, TC_RUN);
    if (!c.rc && c.site != t->nsite)
        c.rc = GHE_INVAL; /* cannot happen: every site lies in the tree walked */
    if (c.rc) {
        buf_cleanup(&c.text);
        return c.rc;
    }
    t->text_len = c.text.len;
    t->text = c.text.data ? c.text.data : strdup("");
    /* Never the rendered value: that may hold the variant, and a name must not. */
    if (!tc_name_prefix(cJSON_GetObjectItemCaseSensitive(meta, "generateName"), t->name_prefix))
        tc_name_prefix(cJSON_IsObject(ref) ? cJSON_GetObjectItemCaseSensitive(ref, "name") : NULL,
                       t->name_prefix);
    return t->text ? 0 : GHE_NOMEM;
}

size_t template_body_paths(const struct template *t, const struct jsonprune_path **out) {
    *out = t ? t->body_paths : NULL;
    return t ? t->nbody_paths : 0;
}

int template_load(const char *template_path, const char *bindings_path, struct template **out,
                  struct errlist *el) {
    struct template *t = calloc(1, sizeof(*t));
    struct tpl_load lt = {el, template_path, 0};
    struct tpl_load lb = {el, bindings_path, 0};
    int rc_t, rc_b = 0;

    *out = NULL;
    if (!t)
        return GHE_NOMEM;
    rc_t = tpl_load_template(&lt, t, template_path);
    bool t_ok = rc_t == 0 && lt.errors == 0;
    if (bindings_path && rc_t != GHE_NOMEM)
        rc_b = tpl_load_binding(&lb, t, t_ok, bindings_path);
    if (t_ok && rc_b == 0 && lb.errors == 0) {
        /* Tekton refuses nothing here; gpuhook refuses only what a run would miss. */
        for (size_t i = 0; i < t->nparam; i++) {
            if (t->params[i].def || t->params[i].bound || !t->params[i].used)
                continue;
            char place[64];
            snprintf(place, sizeof(place), ".spec.params[%zu]", i);
            if (bindings_path)
                tpl_error(&lt, place,
                          "param \"%s\" is used by the PipelineRun but has no default and no "
                          "binding in %s",
                          t->params[i].name, bindings_path);
            else
                tpl_error(&lt, place,
                          "param \"%s\" is used by the PipelineRun but has no default and no "
                          "binding file is set",
                          t->params[i].name);
        }
    }
    if (rc_t == GHE_NOMEM || rc_b == GHE_NOMEM) {
        template_free(t);
        return GHE_NOMEM;
    }
    if (rc_t || rc_b || lt.errors || lb.errors) {
        template_free(t);
        return (rc_t == GHE_IO || rc_b == GHE_IO) ? GHE_IO : GHE_INVAL;
    }
    if ((rc_t = tpl_collect_body_paths(t)) != 0 || (rc_t = tpl_compile(t)) != 0) {
        template_free(t);
        return rc_t;
    }
    *out = t;
    return 0;
}

void template_free(struct template *t) {
    if (!t)
        return;
    for (size_t i = 0; i < t->nparam; i++) {
        free(t->params[i].name);
        free(t->params[i].def);
        cJSON_Delete(t->params[i].def_json);
        cJSON_free(t->params[i].def_json_text);
        tpl_expr_cleanup(&t->params[i].bind);
    }
    free(t->params);
    for (size_t i = 0; i < t->nsite; i++) {
        free(t->sites[i].place);
        tpl_expr_cleanup(&t->sites[i].expr);
    }
    free(t->sites);
    for (size_t i = 0; i < t->nksite; i++) {
        free(t->ksites[i].place);
        tpl_expr_cleanup(&t->ksites[i].expr);
    }
    free(t->ksites);
    free(t->body_paths);
    cJSON_Delete(t->run);
    free(t->text);
    free(t->ops);
    free(t);
}

bool template_declares(const struct template *t, const char *param) {
    return t && param && tpl_param_find(t, param) >= 0;
}

bool template_param_from_variant(const struct template *t, const char *param) {
    ssize_t i = t && param ? tpl_param_find(t, param) : -1;
    const struct tpl_expr *x = i >= 0 && t->params[i].bound ? &t->params[i].bind : NULL;
    for (size_t k = 0; x && k < x->count; k++)
        if (x->parts[k].kind == TPL_EXT && strcmp(tpl_exts[x->parts[k].ext].name, "variant") == 0)
            return true;
    return false;
}

size_t template_param_count(const struct template *t) { return t ? t->nparam : 0; }

const char *template_param_name(const struct template *t, size_t i) {
    return t && i < t->nparam ? t->params[i].name : NULL;
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

static int tpl_uuid4(char out[37]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    size_t n = 0;

    if (RAND_bytes(b, sizeof(b)) != 1)
        return GHE_UNAVAILABLE;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[n++] = '-';
        out[n++] = hex[b[i] >> 4];
        out[n++] = hex[b[i] & 15];
    }
    out[n] = '\0';
    return 0;
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
        size_t len = p->kind == TPL_LIT ? p->len : p->kind == TPL_UID ? 36 : r->vals[p->param].len;
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
        size_t len = p->kind == TPL_LIT ? p->len : p->kind == TPL_UID ? 36 : r->vals[p->param].len;
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
        ev->revision,       ev->repo_full_name,   in->fingerprint};
    bool structured;
    int rc = 0;

    /* Every site is bounded, also those the output leaves out (a replaced label). */
    for (size_t i = 0; i < r->t->nsite && !rc; i++)
        rc = tpl_site_check(r, &r->t->sites[i], &structured);
    for (size_t i = 0; i < r->t->nksite && !rc; i++)
        rc = tpl_site_check(r, &r->t->ksites[i], &structured);
    if (rc)
        return rc;
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
    if (!rc && t->uses_uid && (rc = tpl_uuid4(r.uid)) != 0)
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
