/*
 * What the template files share and nobody else sees (curl's vtls_int.h
 * habit): the compiled form of a TriggerTemplate and its TriggerBinding, and
 * the few functions one part calls in another. template_load.c reads and
 * checks the files; template_compile.c turns binding values and the
 * PipelineRun's strings into parts, and the PipelineRun into text with holes;
 * template_render.c fills the holes per event. Other modules use
 * gpuhook/template.h only.
 */
#ifndef GPUHOOK_TEMPLATE_INT_H
#define GPUHOOK_TEMPLATE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "gpuhook/naming.h"
#include "gpuhook/template.h"

struct errlist;
struct jsonpath;
struct jsonprune_path;

#define TEMPLATE_PLACE_MAX 512
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

/*
 * The extensions gpuhook provides, by name (defined in template_compile.c; a
 * definition of another length does not compile).
 */
#define TPL_EXT_COUNT 18
extern const struct tpl_ext_def tpl_exts[TPL_EXT_COUNT];

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
#define TPL_LABEL_COUNT 5
#define TPL_NOTE_COUNT 8
extern const char *const tpl_label_keys[TPL_LABEL_COUNT];
extern const char *const tpl_note_keys[TPL_NOTE_COUNT];

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

/* Adds "FILE: PLACE: reason" to the load's error list (just "FILE: reason" without a place). */
void tpl_error(struct tpl_load *lc, const char *place, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Appends a child's step (".key", ["key"] or [N]) to place; returns the new length. */
size_t tpl_place_push(char *place, size_t used, const char *key, size_t index);
/* The index of the declared param of that name, or -1. */
ssize_t tpl_param_find(const struct template *t, const char *name);

/*
 * Compiles s into x (tpl_expr_cleanup frees it, also after a failure). For a
 * template (t set) only $(tt.params.X) and $(uid) are gpuhook's; for a binding
 * (t NULL) every "$(" must open a valid expression. Problems are reported at
 * place; returns GHE_INVAL after reporting, or GHE_NOMEM.
 */
int tpl_expr_compile(struct tpl_load *lc, const char *place, struct template *t, const char *s,
                     struct tpl_expr *x);
void tpl_expr_cleanup(struct tpl_expr *x);
/*
 * Walks the PipelineRun below node in pre-order and records every string value
 * and mapping key holding $(tt.params.X) or $(uid) as a site of t. place holds
 * node's place (used bytes of TEMPLATE_PLACE_MAX) and is restored on return.
 * Returns 0 (problems are reported in lc) or GHE_NOMEM.
 */
int tpl_scan(struct tpl_load *lc, struct template *t, const cJSON *node, char *place, size_t used);
/* Gathers the bindings' $(body...) paths for jsonprune. Returns 0 or GHE_NOMEM. */
int tpl_collect_body_paths(struct template *t);
/*
 * Compiles t->run into text and ops, once its sites are known. Returns 0 or
 * GHE_NOMEM (GHE_INVAL only for a site outside the tree: a bug).
 */
int tpl_compile(struct template *t);

#endif
