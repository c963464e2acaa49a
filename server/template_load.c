/*
 * Loading and checking a TriggerTemplate and a TriggerBinding: reads both files
 * (gpuhook/yamljson.h), checks every key, type and name against what Tekton
 * Triggers accepts, reports every problem at once as "FILE: .place: reason",
 * and cross-checks the binding's params against the template's. It hands the
 * strings that hold expressions to template_compile.c and, once both files are
 * clean, has the PipelineRun compiled. It renders nothing
 * (template_render.c) and parses no expression itself.
 */
#include "template_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpuhook/error.h"
#include "gpuhook/yamljson.h"

#define TEMPLATE_API_VERSION "triggers.tekton.dev/v1beta1"
#define TEMPLATE_API_VERSION_OLD "triggers.tekton.dev/v1alpha1" /* the same spec, still served */
#define TEMPLATE_OLD_ESCAPE "triggers.tekton.dev/old-escape-quotes"
#define TEMPLATE_RUN_API_VERSION "tekton.dev/v1"
#define TEMPLATE_RUN_API_VERSION_OLD "tekton.dev/v1beta1" /* posted to its own version */

void tpl_error(struct tpl_load *lc, const char *place, const char *fmt, ...) {
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

size_t tpl_place_push(char *place, size_t used, const char *key, size_t index) {
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

ssize_t tpl_param_find(const struct template *t, const char *name) {
    for (size_t i = 0; i < t->nparam; i++)
        if (strcmp(t->params[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
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
