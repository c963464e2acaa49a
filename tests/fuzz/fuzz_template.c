/*
 * Fuzz target 3: binding expressions, template rendering and the YAML reader.
 *
 * The first byte's low three bits pick a mode (modulo 5), its next two bits
 * the variant (lite, original, skip, or no decision) and bit 5 "no event":
 *   0  the shipped k8s/triggers template and binding, rendered for an event
 *      whose fields, headers, selection decision, /trigger override and
 *      payload come from the rest of the input (NUL-separated fields);
 *   1  the same with tests/fixtures/templates/subst-*.yaml, whose binding
 *      uses $(body...), $(header...) and mixed text;
 *   2  yamljson_load_string() on the rest of the input;
 *   3  the rest of the input as a TriggerBinding for the subst template;
 *   4  the rest of the input as a TriggerTemplate for the shipped binding.
 * Modes 3 and 4 render the push fixture with what loaded.
 *
 * Invariants: the shipped template renders every event (hostile values are
 * data, never a 400), carries revision and repository URL byte for byte, and
 * keeps the shape of its spec; every rendered object has a DNS-1123 name, the
 * namespace asked for, label-safe labels, and prints as JSON; a loaded YAML or
 * JSON file repeats no key, and what follows a JSON document is only ignored
 * where YAML allows it.
 */
#include "fuzz.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gpuhook/error.h"
#include "gpuhook/event.h"
#include "gpuhook/naming.h"
#include "gpuhook/select.h"
#include "gpuhook/template.h"
#include "gpuhook/yamljson.h"

#define FUZZ_TPL_SHIPPED "k8s/triggers/trigger-template.yaml"
#define FUZZ_TPL_SHIPPED_BINDING "k8s/triggers/trigger-binding.yaml"
#define FUZZ_TPL_SUBST "tests/fixtures/templates/subst-template.yaml"
#define FUZZ_TPL_SUBST_BINDING "tests/fixtures/templates/subst-binding.yaml"
#define FUZZ_TPL_NAMESPACE "gpu-ci"

enum {
    F_BRANCH,
    F_MESSAGE,
    F_REVISION,
    F_REPO_URL,
    F_REPO_NAME,
    F_REF,
    F_SENDER,
    F_DELIVERY,
    F_HOOK,
    F_TAG,
    F_BASE,
    F_PR,
    F_ACTION,
    F_EVENT,
    F_RULE,
    F_REASON,
    F_UA,
    F_GH_EVENT,
    F_OVERRIDE,
    F_BODY,
    F_COUNT
};

struct fuzz_tpl_state {
    struct template *shipped;
    struct template *subst;
    cJSON *shipped_spec; /* the spec rendered for a plain event: the shape to keep */
    struct event push;   /* tests/fixtures/github/push.json */
    struct event_header push_headers[3];
    char binding_path[4200];
    char template_path[4200];
    char subst_path[4096];
    char shipped_binding_path[4096];
};

static struct template *fuzz_tpl_load(const char *trel, const char *brel) {
    char tp[4096], bp[4096];
    struct errlist el;
    struct template *t = NULL;

    fuzz_source_path(tp, sizeof(tp), trel);
    fuzz_source_path(bp, sizeof(bp), brel);
    errlist_init(&el);
    int rc = template_load(tp, bp, &t, &el);
    FUZZ_REQUIRE(rc == 0, "%s: %s", trel, el.count ? el.items[0] : "load failed");
    errlist_cleanup(&el);
    return t;
}

static void fuzz_tpl_read_push(struct event *ev) {
    char path[4096], err[512];
    static char data[64 * 1024];

    fuzz_source_path(path, sizeof(path), "tests/fixtures/github/push.json");
    FILE *f = fopen(path, "rb");
    FUZZ_REQUIRE(f != NULL, "cannot open %s", path);
    size_t n = fread(data, 1, sizeof(data), f);
    fclose(f);
    event_init(ev);
    int rc = event_parse_delivery(ev, "push", "72d3162e-cc78-11e3-81ab-4c9367dc0958", "123456",
                                  "application/json", data, n, err, sizeof(err));
    FUZZ_REQUIRE(rc == 0, "push.json: %s", err);
}

static struct fuzz_tpl_state *fuzz_tpl_state(void) {
    static struct fuzz_tpl_state s;
    static bool ready;
    if (ready)
        return &s;
    fuzz_quiet();
    s.shipped = fuzz_tpl_load(FUZZ_TPL_SHIPPED, FUZZ_TPL_SHIPPED_BINDING);
    s.subst = fuzz_tpl_load(FUZZ_TPL_SUBST, FUZZ_TPL_SUBST_BINDING);
    fuzz_tpl_read_push(&s.push);
    s.push_headers[0] = (struct event_header){"X-GitHub-Event", "push"};
    s.push_headers[1] = (struct event_header){"User-Agent", "GitHub-Hookshot/044aadd"};
    s.push_headers[2] = (struct event_header){"X-GitHub-Delivery", "72d3162e"};
    s.push.headers = s.push_headers;
    s.push.header_count = 3;
    fuzz_source_path(s.subst_path, sizeof(s.subst_path), FUZZ_TPL_SUBST);
    fuzz_source_path(s.shipped_binding_path, sizeof(s.shipped_binding_path),
                     FUZZ_TPL_SHIPPED_BINDING);
    snprintf(s.binding_path, sizeof(s.binding_path), "%s/binding.yaml", fuzz_temp_dir());
    snprintf(s.template_path, sizeof(s.template_path), "%s/template.yaml", fuzz_temp_dir());

    /* The shape every rendering of the shipped template must keep. */
    struct select_decision d = {.variant = SELECT_LITE, .rule = "default", .reason = "r"};
    struct template_render_input in = {
        .ev = &s.push, .decision = &d, .namespace = FUZZ_TPL_NAMESPACE};
    cJSON *run = NULL;
    char err[512];
    FUZZ_REQUIRE(template_render(s.shipped, &in, &run, err, sizeof(err)) == 0, "%s", err);
    s.shipped_spec = cJSON_DetachItemFromObjectCaseSensitive(run, "spec");
    cJSON_Delete(run);
    ready = true;
    return &s;
}

/* True when some object in the tree holds a key twice (yamljson refuses duplicate keys). */
static bool fuzz_tpl_has_duplicate_key(const cJSON *n) {
    for (const cJSON *c = n ? n->child : NULL; c; c = c->next) {
        if (cJSON_IsObject(n))
            for (const cJSON *d = c->next; d; d = d->next)
                if (c->string && d->string && strcmp(c->string, d->string) == 0)
                    return true;
        if (fuzz_tpl_has_duplicate_key(c))
            return true;
    }
    return false;
}

/*
 * True when data starts as JSON ('{' or '[' first) and one JSON value is
 * followed by more than whitespace: a comment, a YAML "...", a second
 * document or garbage, which cJSON alone would ignore.
 */
static bool fuzz_tpl_json_with_trailer(const char *data, size_t size) {
    size_t i = 0;
    while (i < size && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
        i++;
    if (i == size || (data[i] != '{' && data[i] != '['))
        return false;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(data, size, &end, false);
    bool trailer = false;
    if (j && end) {
        for (const char *p = end; p < data + size && !trailer; p++)
            trailer = !(*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n');
    }
    cJSON_Delete(j);
    return trailer;
}

/* True when the YAML reader accepts data, which a leading comment line sends it to. */
static bool fuzz_tpl_yaml_accepts(const uint8_t *data, size_t size) {
    char *text = malloc(size + 2), err[256];
    cJSON *doc = NULL;
    FUZZ_REQUIRE(text != NULL, "out of memory");
    memcpy(text, "#\n", 2);
    if (size)
        memcpy(text + 2, data, size);
    int rc = yamljson_load_string("fuzz.yaml", text, size + 2, &doc, err, sizeof(err));
    cJSON_Delete(doc);
    free(text);
    return rc == 0;
}

/* Same keys in the same order and the same types all the way down; strings may differ. */
static bool fuzz_tpl_same_shape(const cJSON *a, const cJSON *b) {
    if ((a->type & 0xff) != (b->type & 0xff))
        return false;
    if ((a->string == NULL) != (b->string == NULL) ||
        (a->string && strcmp(a->string, b->string) != 0))
        return false;
    const cJSON *x = a->child, *y = b->child;
    for (; x && y; x = x->next, y = y->next)
        if (!fuzz_tpl_same_shape(x, y))
            return false;
    return !x && !y;
}

static bool fuzz_tpl_dns_label(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > NAMING_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i + 1 < n))
            return false;
    }
    return true;
}

static bool fuzz_tpl_label_value(const char *s) {
    size_t n = strlen(s);
    if (n > NAMING_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !((c == '-' || c == '_' || c == '.') && i > 0 && i + 1 < n))
            return false;
    }
    return true;
}

/* What every successful rendering must look like. */
static void fuzz_tpl_check_run(const cJSON *run) {
    FUZZ_REQUIRE(cJSON_IsObject(run), "the rendering is not an object");
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(run, "metadata");
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "name"));
    const char *ns = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(meta, "namespace"));
    FUZZ_REQUIRE(name && fuzz_tpl_dns_label(name), "metadata.name \"%s\"", name ? name : "(none)");
    FUZZ_REQUIRE(ns && strcmp(ns, FUZZ_TPL_NAMESPACE) == 0, "metadata.namespace");
    FUZZ_REQUIRE(!cJSON_GetObjectItemCaseSensitive(meta, "generateName"), "generateName kept");
    /* The labels gpuhook sets from the event; the template's own are the author's. */
    static const char *const ours[] = {"app.kubernetes.io/managed-by", "gpuhook.dev/variant",
                                       "gpuhook.dev/event", "triggers.tekton.dev/triggers-eventid",
                                       "gpuhook.dev/repository"};
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(meta, "labels");
    FUZZ_REQUIRE(cJSON_IsObject(labels), "metadata.labels");
    for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(labels, ours[i]);
        FUZZ_REQUIRE(cJSON_IsString(l) && fuzz_tpl_label_value(l->valuestring),
                     "label %s is missing or not a label value", ours[i]);
    }
    char *printed = cJSON_PrintUnformatted(run);
    FUZZ_REQUIRE(printed && fuzz_is_json(printed, strlen(printed)), "does not print as JSON");
    free(printed);
}

static const char *fuzz_tpl_param(const cJSON *run, const char *pname) {
    const cJSON *params =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(run, "spec"), "params");
    const cJSON *p;
    cJSON_ArrayForEach(p, params) {
        const char *n = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "name"));
        if (n && strcmp(n, pname) == 0)
            return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "value"));
    }
    return NULL;
}

static void fuzz_tpl_render_fields(struct fuzz_tpl_state *s, unsigned sel, const uint8_t *data,
                                   size_t size, bool shipped) {
    char *f[F_COUNT] = {0}, *storage = NULL;
    size_t nf = fuzz_split(data, size, '\0', f, F_COUNT, &storage);
    struct event ev;
    struct event_header headers[2];
    struct select_decision d;
    struct template_override ov;
    char err[512];
    cJSON *run = NULL;

    for (size_t i = nf; i < F_COUNT; i++)
        f[i] = NULL;
    memset(&ev, 0, sizeof(ev));
    ev.branch = f[F_BRANCH];
    ev.message = f[F_MESSAGE];
    ev.revision = f[F_REVISION];
    ev.repo_url = f[F_REPO_URL];
    ev.repo_full_name = f[F_REPO_NAME];
    ev.ref = f[F_REF];
    ev.sender = f[F_SENDER];
    ev.delivery = f[F_DELIVERY];
    ev.hook_id = f[F_HOOK];
    ev.tag = f[F_TAG];
    ev.base_branch = f[F_BASE];
    ev.pr_number = f[F_PR];
    ev.action = f[F_ACTION];
    ev.event = f[F_EVENT];
    size_t nh = 0;
    if (f[F_UA])
        headers[nh++] = (struct event_header){"User-Agent", f[F_UA]};
    if (f[F_GH_EVENT])
        headers[nh++] = (struct event_header){"X-GitHub-Event", f[F_GH_EVENT]};
    ev.headers = headers;
    ev.header_count = nh;
    if (f[F_BODY])
        ev.body = cJSON_Parse(f[F_BODY]);

    memset(&d, 0, sizeof(d));
    d.variant = (int)((sel >> 3) & 3);
    snprintf(d.rule, sizeof(d.rule), "%s", f[F_RULE] ? f[F_RULE] : "default");
    snprintf(d.reason, sizeof(d.reason), "%s", f[F_REASON] ? f[F_REASON] : "");
    bool no_decision = d.variant == 3;
    bool no_event = (sel & 0x20) != 0;

    struct template_render_input in = {
        .ev = no_event ? NULL : &ev,
        .decision = no_decision ? NULL : &d,
        .namespace = FUZZ_TPL_NAMESPACE,
        .name_key = {ev.hook_id, ev.delivery},
    };
    const char *ov_name = NULL;
    if (f[F_OVERRIDE]) {
        char *eq = strchr(f[F_OVERRIDE], '=');
        ov.name = f[F_OVERRIDE];
        ov.value = eq ? eq + 1 : NULL;
        if (eq)
            *eq = '\0';
        ov_name = ov.name;
        in.overrides = &ov;
        in.override_count = 1;
    }
    const struct template *t = shipped ? s->shipped : s->subst;
    bool declared = !ov_name || template_declares(t, ov_name);
    int rc = template_render(t, &in, &run, err, sizeof(err));
    FUZZ_REQUIRE(rc == 0 || rc == GHE_INVAL || rc == GHE_NOMEM, "unexpected code %d", rc);
    FUZZ_REQUIRE((rc == 0) == (run != NULL), "result and code disagree");
    if (!declared)
        FUZZ_REQUIRE(rc == GHE_INVAL, "an undeclared override was accepted");
    if (rc) {
        FUZZ_REQUIRE(err[0], "failure %d without a message", rc);
    } else {
        fuzz_tpl_check_run(run);
    }
    if (shipped && declared && size < 1024 * 1024) {
        /* Hostile values are data: the shipped template renders every event. */
        FUZZ_REQUIRE(rc == 0, "the shipped template refused an event: %s", err);
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(run, "spec");
        bool structured_override =
            ov_name && ov.value && (ov.value[0] == '[' || ov.value[0] == '{');
        if (!structured_override)
            FUZZ_REQUIRE(fuzz_tpl_same_shape(spec, s->shipped_spec), "the spec changed shape");
        const char *rev = fuzz_tpl_param(run, "git-revision");
        const char *url = fuzz_tpl_param(run, "git-repo-url");
        const struct event *e = in.ev;
        if (!ov_name || strcmp(ov_name, "git-revision") != 0)
            FUZZ_REQUIRE(rev && strcmp(rev, e && e->revision ? e->revision : "") == 0,
                         "git-revision is not the event's revision byte for byte");
        if (!ov_name || strcmp(ov_name, "git-repo-url") != 0)
            FUZZ_REQUIRE(url && strcmp(url, e && e->repo_url ? e->repo_url : "") == 0,
                         "git-repo-url is not the event's clone URL byte for byte");
    }
    cJSON_Delete(run);
    cJSON_Delete(ev.body);
    free(storage);
}

/* Loads a template from the files given and renders the push fixture with it. */
static void fuzz_tpl_load_render(struct fuzz_tpl_state *s, const char *tpath, const char *bpath) {
    struct errlist el;
    struct template *t = NULL;

    errlist_init(&el);
    int rc = template_load(tpath, bpath, &t, &el);
    FUZZ_REQUIRE(rc == 0 || rc == GHE_INVAL || rc == GHE_IO || rc == GHE_NOMEM,
                 "unexpected code %d", rc);
    FUZZ_REQUIRE((rc == 0) == (t != NULL), "result and code disagree");
    FUZZ_REQUIRE(rc == 0 || el.count > 0, "failure %d without a message", rc);
    for (size_t i = 0; i < el.count; i++)
        FUZZ_REQUIRE(el.items[i] && el.items[i][0], "empty message");
    errlist_cleanup(&el);
    if (!t)
        return;
    struct select_decision d = {.variant = SELECT_ORIGINAL, .rule = "r", .reason = "because"};
    struct template_override ov = {"branch", "[\"a\", {\"b\": 1}]"};
    struct template_render_input in = {
        .ev = &s->push,
        .decision = &d,
        .namespace = FUZZ_TPL_NAMESPACE,
        .name_key = {"123456", "72d3162e"},
        .overrides = &ov,
        .override_count = template_declares(t, "branch") ? 1 : 0,
    };
    char err[512];
    cJSON *run = NULL;
    rc = template_render(t, &in, &run, err, sizeof(err));
    FUZZ_REQUIRE(rc == 0 || rc == GHE_INVAL || rc == GHE_NOMEM, "unexpected code %d", rc);
    if (rc == 0)
        fuzz_tpl_check_run(run);
    else
        FUZZ_REQUIRE(err[0], "failure %d without a message", rc);
    cJSON_Delete(run);
    template_free(t);
}

int fuzz_template_one(const uint8_t *data, size_t size) {
    struct fuzz_tpl_state *s = fuzz_tpl_state();
    char err[512];

    if (size < 1)
        return 0;
    unsigned sel = data[0];
    data++;
    size--;
    switch ((sel & 7) % 5) {
    case 0:
    case 1:
        fuzz_tpl_render_fields(s, sel, data, size, (sel & 7) % 5 == 0);
        break;
    case 2: {
        cJSON *doc = NULL;
        err[0] = '\0';
        int rc =
            yamljson_load_string("fuzz.yaml", (const char *)data, size, &doc, err, sizeof(err));
        FUZZ_REQUIRE(rc == 0 || rc == GHE_INVAL || rc == GHE_TOOBIG || rc == GHE_NOMEM,
                     "unexpected code %d", rc);
        FUZZ_REQUIRE((rc == 0) == (doc != NULL), "result and code disagree");
        FUZZ_REQUIRE(rc == 0 || err[0], "failure %d without a message", rc);
        if (doc) {
            FUZZ_REQUIRE(!fuzz_tpl_has_duplicate_key(doc), "a duplicate key was accepted");
            /* What follows a JSON document must be what YAML allows there. */
            FUZZ_REQUIRE(!fuzz_tpl_json_with_trailer((const char *)data, size) ||
                             fuzz_tpl_yaml_accepts(data, size),
                         "data after the document was ignored");
            char *printed = cJSON_PrintUnformatted(doc);
            FUZZ_REQUIRE(printed && fuzz_is_json(printed, strlen(printed)),
                         "a loaded document does not print as JSON");
            free(printed);
        }
        cJSON_Delete(doc);
        break;
    }
    case 3:
        fuzz_write_file(s->binding_path, data, size);
        fuzz_tpl_load_render(s, s->subst_path, s->binding_path);
        break;
    default:
        fuzz_write_file(s->template_path, data, size);
        fuzz_tpl_load_render(s, s->template_path, s->shipped_binding_path);
        break;
    }
    return 0;
}

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_template_one(data, size);
}
#endif
