/*
 * Tekton Triggers TriggerTemplate and TriggerBinding, read from YAML or JSON
 * with libyaml, validated and compiled at load time, then rendered per event.
 * Values enter the output only as JSON-escaped strings (or, when structured at
 * their source, as JSON printed by cJSON), so no payload value can add a field
 * or break the object.
 */
#ifndef GPUHOOK_TEMPLATE_H
#define GPUHOOK_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/naming.h"

struct buf;
struct cJSON;
struct errlist;
struct event;
struct jsonprune_path;
struct select_decision;
struct template;

/*
 * Loads and cross-checks a TriggerTemplate and a TriggerBinding (paths are
 * used as given; bindings_path may be NULL when every param has a default).
 * Every problem goes into el as "FILE: .place: reason", all at once. Returns 0
 * and sets *out (free with template_free) or GHE_INVAL / GHE_IO / GHE_NOMEM.
 *
 * The template's PipelineRun may use $(tt.params.NAME) and $(uid) in string
 * values and mapping keys; other $(...) (Tekton's own $(params.x)) stay as they
 * are. Binding values may mix literal text with JSONPath expressions as Tekton
 * Triggers reads them (gpuhook/jsonpath.h) over body, header, extensions
 * (variant, rule, reason, event, action, delivery, hook_id, sender, repo_url,
 * repo_full_name, ref, branch, tag, revision, base_branch, pr_number, message,
 * changed_files) and context (eventID). As in Tekton, binding params the
 * template does not declare are ignored; a param the PipelineRun uses with no
 * default and no binding is an error. docs/tekton-compat.md has the details.
 */
int template_load(const char *template_path, const char *bindings_path, struct template **out,
                  struct errlist *el);
void template_free(struct template *t);

/*
 * The $(body.…) paths the bindings use (borrowed, valid as long as t), so a
 * delivery's parser can keep just those. A path of no steps means the whole
 * body. Returns how many.
 */
size_t template_body_paths(const struct template *t, const struct jsonprune_path **out);

/* True when the template declares a param of that name. */
bool template_declares(const struct template *t, const char *param);
/*
 * True when the binding of that param uses $(extensions.variant) (pipeline-version in the
 * shipped binding): the variant alone decides it, so /trigger may not override it.
 */
bool template_param_from_variant(const struct template *t, const char *param);
/* The declared params, in the template's order. */
size_t template_param_count(const struct template *t);
const char *template_param_name(const struct template *t, size_t i);

struct template_override {
    const char *name;
    const char *value;
};

struct template_render_input {
    const struct event *ev; /* borrowed */
    const struct select_decision *decision;
    const char *namespace;   /* kubernetes.namespace */
    int name_kind;           /* enum naming_kind */
    const char *name_key[2]; /* the identity, for naming_pipelinerun */
    const char *fingerprint; /* annotation gpuhook.dev/request-sha256 when set (/trigger) */
    const struct template_override *overrides; /* /trigger params, already checked */
    size_t override_count;
};

/*
 * Renders the PipelineRun: substitutes params, sets metadata.name (from the
 * identity in name_kind and name_key, after the literal start of the template's
 * metadata.generateName or else spec.pipelineRef.name: never a rendered value),
 * namespace, labels and annotations. Returns 0 and sets *out (caller frees with cJSON_Delete), or
 * GHE_INVAL with a message for a 400 in err (a $(body.path) or header missing
 * with no default, an undeclared override, a value over 1 MiB or a rendered
 * string over 4 MiB), GHE_NOMEM, GHE_UNAVAILABLE (no random bytes for
 * $(uid)) or GHE_PERMANENT (the text did not parse back: out of memory, or a
 * bug the fuzzers look for). ev and decision may be NULL (their extensions are then ""); JSON
 * null in the payload renders as "null", as in Tekton. Only values structured
 * at their source (a default, an override, a $(body...) array or object, or
 * several JSONPath results) become arrays or objects, and none does under the
 * old-escape-quotes annotation; strings from the payload always stay strings.
 * Safe to call from several threads on one template.
 */
int template_render(const struct template *t, const struct template_render_input *in,
                    struct cJSON **out, char *err, size_t errlen);

/*
 * The same render written as compact JSON text, appended to out (bounded by
 * out->max), with the run's name in name. This is the delivery path: the
 * template was compiled at load into text and holes, so no tree is built.
 * template_render is this text parsed back into a tree.
 */
int template_render_json(const struct template *t, const struct template_render_input *in,
                         struct buf *out, char name[NAMING_MAX + 1], char *err, size_t errlen);

#endif
