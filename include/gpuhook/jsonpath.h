/*
 * Kubernetes JSONPath as Tekton Triggers applies it to a binding's $(...):
 * the text between "$(" and ")" is relaxed (".a.b", "{a.b}" and "{.a.b}"
 * mean "a.b") and then read as one k8s JSONPath: fields ("\." for a dot in a
 * key), "*" and "[*]" wildcards, ".." recursive descent, [N], [-N],
 * [start:end:step] slices, ['key'] and [a,b] unions, and filters
 * [?(@.x OP value)] with ==, !=, <, >, <=, >= or existence. The first field
 * names the root: body, header, extensions or context.
 *
 * Missing data follows client-go with AllowMissingKeys(false): a field no
 * input has, an index out of bounds, or an index or filter applied to what is
 * not an array is "missing"; a field on null is missing, an index on null
 * yields nothing. One result prints as itself (a string unquoted, null as
 * "null", other values as JSON); zero or several print as one JSON array.
 */
#ifndef GPUHOOK_JSONPATH_H
#define GPUHOOK_JSONPATH_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/jsonprune.h"

struct buf;
struct cJSON;

enum jsonpath_root { JSONPATH_BODY, JSONPATH_HEADER, JSONPATH_EXTENSIONS, JSONPATH_CONTEXT };

struct jsonpath;

/*
 * Compiles expr (the text inside "$(" and ")"). Returns 0 and sets *out (free
 * with jsonpath_free), GHE_INVAL with a reason in *why (a static string), or
 * GHE_NOMEM.
 */
int jsonpath_compile(const char *expr, struct jsonpath **out, const char **why);
void jsonpath_free(struct jsonpath *p);

enum jsonpath_root jsonpath_root(const struct jsonpath *p);

/* True when the path is only the root: $(body), $(header), ... */
bool jsonpath_is_root(const struct jsonpath *p);

/*
 * For $(header.NAME): the header's name, canonicalized as Go's
 * textproto.CanonicalMIMEHeaderKey does (Tekton looks headers up that way).
 * NULL when the path is anything else.
 */
const char *jsonpath_header_name(const struct jsonpath *p);

/*
 * The part of a body path that a pruning parser must keep (borrowed from p,
 * valid as long as p): every index, slice, union and wildcard becomes "every
 * element", and the path stops before a filter or a recursive descent, so the
 * whole array or subtree below it is kept. A path of no steps means the whole
 * body.
 */
struct jsonprune_path jsonpath_prune_path(const struct jsonpath *p);

/* The results of one evaluation (borrowed nodes of the tree evaluated). */
struct jsonpath_results {
    const struct cJSON **v;
    size_t n, cap;
};

void jsonpath_results_cleanup(struct jsonpath_results *r);

/*
 * Evaluates p's steps after the root on root (the value the root names).
 * Returns 0 with the results in *res (emptied first), 1 when the data is
 * missing, or GHE_NOMEM.
 */
int jsonpath_eval(const struct jsonpath *p, const struct cJSON *root, struct jsonpath_results *res);

/*
 * Appends the results as Tekton prints them (see above); *structured is set
 * when the text is a JSON array or object. Returns 0, GHE_NOMEM or GHE_TOOBIG.
 */
int jsonpath_print_results(const struct jsonpath_results *res, struct buf *out, bool *structured);

/*
 * Appends node as compact JSON. Numbers carry the text the payload wrote
 * (jsonprune keeps it in valuestring) and are printed from it.
 */
int jsonpath_print_json(const struct cJSON *node, struct buf *out);

/* Writes Go's CanonicalMIMEHeaderKey of name into out (size bytes, truncated). */
void jsonpath_canonical_header(const char *name, char *out, size_t size);

#endif
