/*
 * Unit tests for template_load.c, template_compile.c, template_render.c and
 * yamljson.c: loading TriggerTemplate and TriggerBinding files, every load-time error, every substitution rule, the
 * metadata gpuhook sets, the shipped k8s/triggers files, and a property test
 * that hostile values never change the rendered object's shape.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/event.h"
#include "gpuhook/naming.h"
#include "gpuhook/select.h"
#include "gpuhook/template.h"
#include "gpuhook/yamljson.h"

#define FX "tests/fixtures/templates/"

/* Writes $GPUHOOK_SOURCE_DIR/rel (or ./rel) into out. */
static void src_path(char *out, size_t n, const char *rel) {
    const char *dir = getenv("GPUHOOK_SOURCE_DIR");
    snprintf(out, n, "%s/%s", dir && *dir ? dir : ".", rel);
}

static cJSON *read_json(const char *rel) {
    char path[1024], err[512];
    cJSON *doc = NULL;

    src_path(path, sizeof(path), rel);
    if (yamljson_load_file(path, &doc, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    return doc;
}

static void print_errors(const struct errlist *el) {
    for (size_t i = 0; i < el->count; i++)
        print_message("  error: %s\n", el->items[i]);
}

/* Loads a template (and binding, unless NULL) that must be valid. */
static struct template *load_ok(const char *tpl_rel, const char *bind_rel) {
    char tp[1024], bp[1024];
    struct template *t = NULL;
    struct errlist el;

    errlist_init(&el);
    src_path(tp, sizeof(tp), tpl_rel);
    if (bind_rel)
        src_path(bp, sizeof(bp), bind_rel);
    int rc = template_load(tp, bind_rel ? bp : NULL, &t, &el);
    print_errors(&el);
    assert_int_equal(rc, 0);
    assert_int_equal(el.count, 0);
    assert_non_null(t);
    errlist_cleanup(&el);
    return t;
}

/*
 * Looks up obj by a dotted path with [N] indexes (which also count an object's
 * members) and ["key"] for keys with dots, e.g. "metadata.labels[\"a.b/c\"]".
 */
static const cJSON *at(const cJSON *obj, const char *path) {
    char key[256];
    const char *p = path;

    while (obj && *p) {
        size_t n = 0;
        if (p[0] == '[' && p[1] == '"') {
            for (p += 2; *p && *p != '"' && n + 1 < sizeof(key);)
                key[n++] = *p++;
            key[n] = '\0';
            obj = cJSON_GetObjectItemCaseSensitive(obj, key);
            p += 2;
        } else if (*p == '[') {
            obj = cJSON_GetArrayItem(obj, atoi(p + 1));
            p = strchr(p, ']') + 1;
        } else {
            if (*p == '.')
                p++;
            while (*p && *p != '.' && *p != '[' && n + 1 < sizeof(key))
                key[n++] = *p++;
            key[n] = '\0';
            obj = cJSON_GetObjectItemCaseSensitive(obj, key);
        }
    }
    return obj;
}

static const char *str_at(const cJSON *obj, const char *path) {
    const cJSON *v = at(obj, path);
    if (!cJSON_IsString(v))
        fail_msg("%s is not a string", path);
    return v->valuestring;
}

/* The value of the PipelineRun's spec.params entry with that name. */
static const cJSON *run_param(const cJSON *run, const char *name) {
    const cJSON *p;
    cJSON_ArrayForEach(p, at(run, "spec.params")) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(p, "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0)
            return cJSON_GetObjectItemCaseSensitive(p, "value");
    }
    fail_msg("no spec.params entry %s", name);
    return NULL;
}

static const char *run_param_str(const cJSON *run, const char *name) {
    const cJSON *v = run_param(run, name);
    if (!cJSON_IsString(v))
        fail_msg("param %s is not a string", name);
    return v->valuestring;
}

static void assert_json_equal(const cJSON *actual, const char *expected_json) {
    cJSON *e = cJSON_Parse(expected_json);
    assert_non_null(e);
    if (!cJSON_Compare(actual, e, 1)) {
        char *a = cJSON_Print(actual);
        fail_msg("got %s\nwant %s", a, expected_json);
    }
    cJSON_Delete(e);
}

static struct select_decision decision(int variant, const char *rule, const char *reason) {
    struct select_decision d;
    memset(&d, 0, sizeof(d));
    d.variant = variant;
    snprintf(d.rule, sizeof(d.rule), "%s", rule);
    snprintf(d.reason, sizeof(d.reason), "%s", reason);
    return d;
}

static struct template_render_input input(const struct event *ev, const struct select_decision *d) {
    struct template_render_input in;
    memset(&in, 0, sizeof(in));
    in.ev = ev;
    in.decision = d;
    in.namespace = "gpu-ci";
    in.name_key[0] = ev->hook_id;
    in.name_key[1] = ev->delivery;
    return in;
}

/* ---- yamljson ---------------------------------------------------------------------------- */

struct scalar_case {
    const char *yaml;
    const char *json; /* what the "a" value must equal */
};

static void test_yamljson_types_only_plain_scalars(void **state) {
    static const struct scalar_case cases[] = {
        {"a: 1", "1"},
        {"a: -12", "-12"},
        {"a: \"1\"", "\"1\""},
        {"a: '1'", "\"1\""},
        {"a: true", "true"},
        {"a: False", "false"},
        {"a: \"true\"", "\"true\""},
        {"a: yes", "\"yes\""},
        {"a: on", "\"on\""},
        {"a: ~", "null"},
        {"a: null", "null"},
        {"a:", "null"},
        {"a: ''", "\"\""},
        {"a: 1.5", "1.5"},
        {"a: 1e3", "1000"},
        {"a: 007", "\"007\""},
        {"a: 0x1F", "\"0x1F\""},
        {"a: 1234567890123456", "\"1234567890123456\""},
        {"a: 123456789012345", "123456789012345"},
        {"a: 12abc", "\"12abc\""},
        {"a: 1h", "\"1h\""},
        {"a: 50Gi", "\"50Gi\""},
        {"a: !!str 12", "\"12\""},
        {"a: ! true", "\"true\""},
        {"a: \"line\\none\\t\\\"q\\\" \\\\ $(x)\"", "\"line\\none\\t\\\"q\\\" \\\\ $(x)\""},
        {"a: |\n  x\n  y\n", "\"x\\ny\\n\""},
        {"a: >-\n  x\n  y\n", "\"x y\""},
        {"a: [1, \"2\", x]", "[1, \"2\", \"x\"]"},
        {"a: {b: c}", "{\"b\": \"c\"}"},
        {"a: \xc3\xa9\xe6\x97\xa5", "\"\xc3\xa9\xe6\x97\xa5\""},
        {"\"a\": 1\n\"1\": x", "1"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *doc = NULL;
        char err[256];
        int rc = yamljson_load_string("case.yaml", cases[i].yaml, strlen(cases[i].yaml), &doc, err,
                                      sizeof(err));
        if (rc)
            fail_msg("case %zu (%s): %s", i, cases[i].yaml, err);
        assert_json_equal(cJSON_GetObjectItemCaseSensitive(doc, "a"), cases[i].json);
        cJSON_Delete(doc);
    }
}

struct yaml_error_case {
    const char *yaml;
    int rc;
    const char *message;
};

static void test_yamljson_rejects_with_file_and_line(void **state) {
    static char deep[600], deep_json[300];
    static const struct yaml_error_case cases[] = {
        {"a: 1\nb: &x 2\n", GHE_INVAL, "in.yaml:2: anchors are not supported (&x)"},
        {"a: 1\nb: *x\n", GHE_INVAL, "in.yaml:2: aliases are not supported (*x)"},
        {"a: &m {b: 1}\n", GHE_INVAL, "in.yaml:1: anchors are not supported (&m)"},
        {"a: 1\n---\nb: 2\n", GHE_INVAL,
         "in.yaml:2: holds more than one document; put one object per file"},
        {"a: 1\na: 2\n", GHE_INVAL, "in.yaml:2: duplicate key \"a\""},
        {"? [a]\n: 1\n", GHE_INVAL, "in.yaml:1: mapping keys must be scalars"},
        {"a: !custom x\n", GHE_INVAL, "in.yaml:1: tag !custom is not supported"},
        {"a: !!binary aGk=\n", GHE_INVAL,
         "in.yaml:1: tag tag:yaml.org,2002:binary is not supported"},
        {"a: \"x\\0y\"\n", GHE_INVAL, "in.yaml:1: a scalar holds a NUL character"},
        {"", GHE_INVAL, "in.yaml: holds no document"},
        {"# only a comment\n", GHE_INVAL, "in.yaml: holds no document"},
        {"a: [1, 2\nb: 3\n", GHE_INVAL,
         "in.yaml:2: did not find expected ',' or ']' while parsing a flow sequence"},
        {"a:\n\tb: 1\n", GHE_INVAL,
         "in.yaml:2: found character that cannot start any token while scanning for the next "
         "token"},
        {deep, GHE_INVAL, "in.yaml:1: nesting is deeper than 128 levels"},
        {deep_json, GHE_INVAL, "in.yaml: nesting is deeper than 128 levels"},
    };
    (void)state;
    memcpy(deep, "a: ", 3);
    memset(deep + 3, '[', 300);
    memset(deep + 303, ']', 290);
    memset(deep_json, '[', 140);
    memset(deep_json + 140, ']', 140);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *doc = NULL;
        char err[256];
        int rc = yamljson_load_string("in.yaml", cases[i].yaml, strlen(cases[i].yaml), &doc, err,
                                      sizeof(err));
        if (rc != cases[i].rc || strcmp(err, cases[i].message) != 0)
            fail_msg("case %zu: rc %d, message '%s', want '%s'", i, rc, err, cases[i].message);
        assert_null(doc);
    }
}

static void test_yamljson_reads_json_files_and_reports_missing_ones(void **state) {
    char path[1024], err[512], want[1100];
    cJSON *doc = NULL;
    (void)state;

    doc = read_json(FX "prop-template.json");
    assert_string_equal(str_at(doc, "spec.params[0].description"), "JSON works too");
    assert_int_equal(at(doc, "spec.resourcetemplates[0].spec.retries")->valueint, 2);
    cJSON_Delete(doc);

    src_path(path, sizeof(path), FX "no-such-file.yaml");
    assert_int_equal(yamljson_load_file(path, &doc, err, sizeof(err)), GHE_IO);
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
    assert_string_equal(err, want);
    assert_null(doc);

    /* A YAML flow mapping that is not JSON still loads through libyaml. */
    const char *flow = "{a: 1, b: [x, \"y\"]}";
    assert_int_equal(yamljson_load_string("f.yaml", flow, strlen(flow), &doc, err, sizeof(err)), 0);
    assert_json_equal(doc, "{\"a\": 1, \"b\": [\"x\", \"y\"]}");
    cJSON_Delete(doc);
}

/*
 * A template path that is not a regular file, or is larger than the bound, is refused with the
 * path and the reason (fileio_read): a FIFO must not block start-up, and a large file is never
 * read cut short.
 */
static void test_yamljson_refuses_special_and_oversized_files(void **state) {
    char dir[] = "/tmp/test_template.XXXXXX";
    char fifo[64], big[64], want[160], err[512];
    cJSON *doc = NULL;
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(fifo, sizeof(fifo), "%s/fifo.yaml", dir);
    snprintf(big, sizeof(big), "%s/big.yaml", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    FILE *f = fopen(big, "w");
    assert_non_null(f);
    fputs("a: \"", f);
    for (size_t i = 0; i < YAMLJSON_FILE_MAX; i++)
        fputc('x', f);
    fputs("\"\n", f);
    fclose(f);

    const struct {
        const char *path;
        int rc;
        const char *why;
    } cases[] = {
        {dir, GHE_IO, "not a regular file"},
        {fifo, GHE_IO, "not a regular file"},
        {big, GHE_TOOBIG, "larger than 1048576 bytes"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = yamljson_load_file(cases[i].path, &doc, err, sizeof(err));
        snprintf(want, sizeof(want), "%s: %s", cases[i].path, cases[i].why);
        if (rc != cases[i].rc || strcmp(err, want) != 0)
            fail_msg("case %zu: rc %d, message '%s', want '%s'", i, rc, err, want);
        assert_null(doc);
    }
    unlink(fifo);
    unlink(big);
    rmdir(dir);
}

/* ---- load-time errors -------------------------------------------------------------------- */

struct load_case {
    const char *tpl;
    const char *bind;
    int rc;
    /* Each message starts with T or B: the template's or the binding's path follows; "{T}" and
     * "{B}" inside stand for the other file's path. */
    const char *msgs[20];
};

static void expand(char *out, size_t n, const char *msg, const char *tp, const char *bp) {
    struct buf b;
    const char *p = msg + 1;

    buf_init(&b, 8192);
    assert_int_equal(buf_appends(&b, msg[0] == 'T' ? tp : bp), 0);
    while (*p) {
        if (strncmp(p, "{T}", 3) == 0 || strncmp(p, "{B}", 3) == 0) {
            assert_int_equal(buf_appends(&b, p[1] == 'T' ? tp : bp), 0);
            p += 3;
        } else {
            assert_int_equal(buf_append(&b, p++, 1), 0);
        }
    }
    snprintf(out, n, "%s", b.data);
    buf_cleanup(&b);
}

static void test_template_load_errors_name_file_and_place(void **state) {
    /* One case per entry reads better than one field per line. */
    // clang-format off
    static const struct load_case cases[] = {
        {FX "bad-kind-taskrun.yaml", NULL, GHE_INVAL,
         {"T: .spec.resourcetemplates[0].kind: \"TaskRun\" is not PipelineRun"}},
        {FX "bad-run-api-version.yaml", NULL, GHE_INVAL,
         {"T: .spec.resourcetemplates[0].apiVersion: \"tekton.dev/v1alpha1\" is not "
          "tekton.dev/v1"}},
        {FX "bad-two-runs.yaml", NULL, GHE_INVAL,
         {"T: .spec.resourcetemplates: holds 2 resources; gpuhook renders exactly one "
          "PipelineRun"}},
        {FX "bad-no-runs.yaml", NULL, GHE_INVAL,
         {"T: .spec.resourcetemplates: holds 0 resources; gpuhook renders exactly one "
          "PipelineRun"}},
        {FX "bad-api-version.yaml", NULL, GHE_INVAL,
         {"T: .apiVersion: \"triggers.tekton.dev/v1\" is not triggers.tekton.dev/v1beta1"}},
        {FX "bad-kind.yaml", NULL, GHE_INVAL,
         {"T: .kind: \"EventListener\" is not TriggerTemplate"}},
        {FX "bad-unknown-keys.yaml", NULL, GHE_INVAL,
         {"T: .status: unknown key", "T: .spec.serviceAccountName: unknown key",
          "T: .spec.params[0].type: unknown key",
          "T: .spec.resourcetemplates[0].status: unknown key"}},
        {FX "bad-undeclared-param.yaml", NULL, GHE_INVAL,
         {"T: .spec.resourcetemplates[0].metadata.labels[\"app.kubernetes.io/name\"]: "
          "$(tt.params.undeclared-label) is not declared in .spec.params",
          "T: .spec.resourcetemplates[0].spec.params[0].value: $(tt.params.nope) is not "
          "declared in .spec.params",
          "T: .spec.resourcetemplates[0].spec.params[1].value: $(tt.params.) names no param",
          "T: .spec.resourcetemplates[0].spec.params[2].value: unterminated \"$(\" at byte 3"}},
        {FX "bad-params.yaml", NULL, GHE_INVAL,
         {"T: .spec.params[1]: duplicate param \"dup\"",
          "T: .spec.params[2].name: not a valid param name; a param name is a letter or '_' "
          "and then letters, digits, '_', '-' or '.'",
          "T: .spec.params[3].name: missing; a param name is a letter or '_' and then letters, "
          "digits, '_', '-' or '.'",
          "T: .spec.params[4]: expected a mapping, found a string",
          "T: .spec.params[5].description: expected a string, found a list"}},
        {FX "bad-structure.yaml", NULL, GHE_INVAL,
         {"T: .spec.params: expected a list, found a mapping",
          "T: .spec.resourcetemplates[0].metadata.labels: expected a mapping, found a list",
          "T: .spec.resourcetemplates[0].metadata.annotations: expected a mapping, found a "
          "string"}},
        {FX "bad-run-not-mapping.yaml", NULL, GHE_INVAL,
         {"T: .spec.resourcetemplates[0]: expected a mapping, found a string"}},
        {FX "bad-run-no-spec.yaml", NULL, GHE_INVAL,
         {"T: .spec.resourcetemplates[0].spec: missing or not a mapping"}},
        {FX "bad-not-mapping.yaml", NULL, GHE_INVAL,
         {"T: expected a TriggerTemplate mapping, found a list"}},
        {FX "needs-binding-template.yaml", FX "binds-bound-only.yaml", GHE_INVAL,
         {"T: .spec.params[1]: param \"unbound\" is used by the PipelineRun but has no default "
          "and no binding in {B}"}},
        {FX "needs-binding-template.yaml", NULL, GHE_INVAL,
         {"T: .spec.params[0]: param \"bound\" is used by the PipelineRun but has no default "
          "and no binding file is set",
          "T: .spec.params[1]: param \"unbound\" is used by the PipelineRun but has no default "
          "and no binding file is set"}},
        /* A param the template does not declare ("other") is ignored, as in Tekton. */
        {FX "needs-binding-template.yaml", FX "bad-binding-undeclared.yaml", GHE_INVAL,
         {"B: .spec.params[3]: param \"bound\" is bound twice"}},
        {FX "needs-binding-template.yaml", FX "bad-binding-exprs.yaml", GHE_INVAL,
         {"B: .spec.params[0].value: $(extensions.nope): unknown extension (gpuhook provides "
          "variant, rule, reason, event, action, delivery, hook_id, sender, repo_url, "
          "repo_full_name, ref, branch, tag, revision, base_branch, pr_number, message, "
          "changed_files)",
          "B: .spec.params[1].value: $(nope.x): expected body, header, extensions or context",
          "B: .spec.params[2].value: $(body.commits[x].id): an array index is not a number or "
          "a slice",
          "B: .spec.params[3].value: unterminated \"$(\" at byte 4",
          "B: .spec.params[4].value: $(tt.params.bound): expected body, header, extensions or "
          "context",
          "B: .spec.params[5].value: expected a string, found a list",
          "B: .spec.params[6].value: $(bodyx): expected body, header, extensions or context",
          "B: .spec.params[7].value: $(header.Bad Name): expected '.' or '[' in the path",
          "B: .spec.params[8].value: expected a string, found nothing",
          "B: .spec.params[9].value: $(body.test-$(body.param1)): a nested \"$(\" (Tekton's "
          "validation refuses it too)",
          "B: .spec.params[10].value: $($(body.param1)): a nested \"$(\" (Tekton's validation "
          "refuses it too)",
          "B: .spec.params[11].value: $({body.a): unbalanced '{' or '}'",
          "B: .spec.params[12].value: $(body.a[1): an unterminated '['",
          "B: .spec.params[13].value: $(body.a[?(@.x ~ 'd')]): expected '.' or '[' in the path",
          "B: .spec.params[14].value: $(body.a[?(@.x == 'd')): an unterminated filter; "
          "expected \")]\"",
          "B: .spec.params[15].value: $(body.a[1:2:x]): an array index is not a number or a "
          "slice"}},
        /* A ClusterTriggerBinding has a TriggerBinding's spec. */
        {FX "bad-kind.yaml", FX "bad-binding-kind.yaml", GHE_INVAL,
         {"T: .kind: \"EventListener\" is not TriggerTemplate",
          "B: .kind: \"EventListener\" is not TriggerBinding"}},
        {FX "bad-anchor.yaml", NULL, GHE_INVAL, {"T:8: anchors are not supported (&base)"}},
        {FX "bad-alias.yaml", NULL, GHE_INVAL, {"T:8: aliases are not supported (*nowhere)"}},
        {FX "bad-multi-doc.yaml", NULL, GHE_INVAL,
         {"T:14: holds more than one document; put one object per file"}},
        {FX "bad-duplicate-key.yaml", NULL, GHE_INVAL,
         {"T:14: duplicate key \"resourcetemplates\""}},
        {FX "bad-syntax.yaml", NULL, GHE_INVAL,
         {"T:7: did not find expected ',' or ']' while parsing a flow sequence"}},
        {FX "bad-tag.yaml", NULL, GHE_INVAL, {"T:5: tag !custom is not supported"}},
        {FX "bad-empty.yaml", NULL, GHE_INVAL, {"T: holds no document"}},
        {FX "bad-tabs.yaml", NULL, GHE_INVAL,
         {"T:4: found character that cannot start any token while scanning for the next "
          "token"}},
        {FX "no-such-template.yaml", FX "binds-bound-only.yaml", GHE_IO,
         {"T: cannot open: No such file or directory"}},
        {FX "needs-binding-template.yaml", FX "no-such-binding.yaml", GHE_IO,
         {"B: cannot open: No such file or directory"}},
    };
    // clang-format on
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct load_case *c = &cases[i];
        char tp[1024], bp[1024], want[2048];
        struct template *t = (struct template *)&tp; /* must be reset to NULL */
        struct errlist el;
        size_t want_count = 0;

        errlist_init(&el);
        src_path(tp, sizeof(tp), c->tpl);
        if (c->bind)
            src_path(bp, sizeof(bp), c->bind);
        int rc = template_load(tp, c->bind ? bp : NULL, &t, &el);
        if (rc != c->rc) {
            print_errors(&el);
            fail_msg("case %zu (%s): rc %d, want %d", i, c->tpl, rc, c->rc);
        }
        assert_null(t);
        for (; want_count < 20 && c->msgs[want_count]; want_count++) {
            size_t k = 0;
            expand(want, sizeof(want), c->msgs[want_count], tp, bp);
            while (k < el.count && strcmp(el.items[k], want) != 0)
                k++;
            if (k == el.count) {
                print_errors(&el);
                fail_msg("case %zu (%s): no error '%s'", i, c->tpl, want);
            }
        }
        if (el.count != want_count) {
            print_errors(&el);
            fail_msg("case %zu (%s): %zu errors, want %zu", i, c->tpl, el.count, want_count);
        }
        errlist_cleanup(&el);
    }
}

/* ---- the shipped files ------------------------------------------------------------------- */

static void event_fill(struct event *ev, const char *fixture) {
    char rel[256];

    event_init(ev);
    snprintf(rel, sizeof(rel), "tests/fixtures/github/%s", fixture);
    ev->body = read_json(rel);
    ev->repo_full_name = strdup(str_at(ev->body, "repository.full_name"));
    ev->repo_url = strdup(str_at(ev->body, "repository.clone_url"));
    ev->sender = strdup(str_at(ev->body, "sender.login"));
    ev->delivery = strdup("72d3162e-cc78-11e3-81ab-4c9367dc0958");
    ev->hook_id = strdup("292430182");
}

static void test_template_shipped_files_render_a_push(void **state) {
    struct template *t =
        load_ok("k8s/triggers/trigger-template.yaml", "k8s/triggers/trigger-binding.yaml");
    struct event ev;
    struct select_decision d = decision(SELECT_LITE, "default", "No rule matched; lite.");
    cJSON *run = NULL;
    char err[256], name[NAMING_MAX + 1], want[4096];
    (void)state;

    event_fill(&ev, "push_with-new-branch.json");
    ev.event = strdup("push");
    ev.ref = strdup(str_at(ev.body, "ref"));
    ev.branch = strdup("master");
    ev.revision = strdup(str_at(ev.body, "after"));
    ev.message = strdup(str_at(ev.body, "head_commit.message"));
    struct template_render_input in = input(&ev, &d);
    assert_int_equal(template_render(t, &in, &run, err, sizeof(err)), 0);

    naming_pipelinerun("gpu-real-8-step-workflow", NAMING_WEBHOOK, "292430182",
                       "72d3162e-cc78-11e3-81ab-4c9367dc0958", name);
    snprintf(want, sizeof(want),
             "{\"apiVersion\": \"tekton.dev/v1\", \"kind\": \"PipelineRun\","
             " \"metadata\": {\"name\": \"%s\", \"namespace\": \"gpu-ci\","
             "  \"labels\": {\"app.kubernetes.io/managed-by\": \"gpuhook\","
             "   \"gpuhook.dev/variant\": \"lite\", \"gpuhook.dev/event\": \"push\","
             "   \"triggers.tekton.dev/triggers-eventid\": "
             "\"72d3162e-cc78-11e3-81ab-4c9367dc0958\","
             "   \"gpuhook.dev/repository\": \"Codertocat_Hello-World\"},"
             "  \"annotations\": {\"gpuhook.dev/rule\": \"default\","
             "   \"gpuhook.dev/reason\": \"No rule matched; lite.\","
             "   \"gpuhook.dev/delivery\": \"72d3162e-cc78-11e3-81ab-4c9367dc0958\","
             "   \"gpuhook.dev/ref\": \"refs/heads/master\","
             "   \"gpuhook.dev/revision\": \"%s\","
             "   \"gpuhook.dev/repository\": \"Codertocat/Hello-World\","
             "   \"gpuhook.dev/installation-id\": \"1\"}},"
             " \"spec\": {\"pipelineRef\": {\"name\": \"gpu-real-8-step-workflow-lite\"},"
             "  \"params\": [{\"name\": \"git-repo-url\","
             "    \"value\": \"https://github.com/Codertocat/Hello-World.git\"},"
             "   {\"name\": \"git-revision\", \"value\": \"%s\"}],"
             "  \"taskRunTemplate\": {\"podTemplate\": {"
             "   \"nodeSelector\": {\"nvidia.com/gpu.present\": \"true\"},"
             "   \"tolerations\": [{\"key\": \"nvidia.com/gpu\", \"operator\": \"Exists\","
             "    \"effect\": \"NoSchedule\"}],"
             "   \"securityContext\": {\"runAsNonRoot\": true, \"runAsUser\": 1001,"
             "    \"runAsGroup\": 1000, \"fsGroup\": 1000,"
             "    \"fsGroupChangePolicy\": \"OnRootMismatch\","
             "    \"seccompProfile\": {\"type\": \"RuntimeDefault\"}}}},"
             "  \"timeouts\": {\"pipeline\": \"4h\", \"finally\": \"15m\"},"
             "  \"workspaces\": [{\"name\": \"shared-storage\", \"volumeClaimTemplate\": {"
             "   \"spec\": {\"accessModes\": [\"ReadWriteOnce\"],"
             "    \"resources\": {\"requests\": {\"storage\": \"50Gi\"}}}}}]}}",
             name, ev.revision, ev.revision);
    assert_json_equal(run, want);

    cJSON_Delete(run);
    event_cleanup(&ev);
    template_free(t);
}

static void test_template_shipped_files_render_a_pull_request(void **state) {
    struct template *t =
        load_ok("k8s/triggers/trigger-template.yaml", "k8s/triggers/trigger-binding.yaml");
    struct event ev;
    struct select_decision d =
        decision(SELECT_ORIGINAL, "label-original", "The PR carries the label gpu:original.");
    cJSON *run = NULL;
    char err[256], name[NAMING_MAX + 1];
    (void)state;

    event_fill(&ev, "pull_request_opened.json");
    ev.event = strdup("pull_request");
    ev.action = strdup("opened");
    ev.ref = strdup("refs/pull/2/head");
    ev.branch = strdup(str_at(ev.body, "pull_request.head.ref"));
    ev.base_branch = strdup(str_at(ev.body, "pull_request.base.ref"));
    ev.revision = strdup(str_at(ev.body, "pull_request.head.sha"));
    ev.pr_number = strdup("2");
    struct template_render_input in = input(&ev, &d);
    assert_int_equal(template_render(t, &in, &run, err, sizeof(err)), 0);

    /* The same delivery as the lite run above gets the same name: the variant is no part of it. */
    naming_pipelinerun("gpu-real-8-step-workflow", NAMING_WEBHOOK, "292430182",
                       "72d3162e-cc78-11e3-81ab-4c9367dc0958", name);
    assert_string_equal(str_at(run, "metadata.name"), name);
    assert_null(at(run, "metadata.generateName"));
    assert_string_equal(str_at(run, "metadata.namespace"), "gpu-ci");
    /* name and namespace come first in the printed object. */
    assert_string_equal(at(run, "metadata")->child->string, "name");
    assert_string_equal(at(run, "metadata")->child->next->string, "namespace");
    assert_string_equal(str_at(run, "spec.pipelineRef.name"), "gpu-real-8-step-workflow-original");
    assert_string_equal(run_param_str(run, "git-revision"),
                        "ec26c3e57ca3a959ca5aad62de7213c562f8c821");
    assert_string_equal(run_param_str(run, "git-repo-url"),
                        "https://github.com/Codertocat/Hello-World.git");
    const cJSON *labels = at(run, "metadata.labels");
    assert_json_equal(labels, "{\"app.kubernetes.io/managed-by\": \"gpuhook\","
                              " \"gpuhook.dev/variant\": \"original\","
                              " \"gpuhook.dev/event\": \"pull_request\","
                              " \"triggers.tekton.dev/triggers-eventid\":"
                              " \"72d3162e-cc78-11e3-81ab-4c9367dc0958\","
                              " \"gpuhook.dev/repository\": \"Codertocat_Hello-World\"}");
    assert_json_equal(at(run, "metadata.annotations"),
                      "{\"gpuhook.dev/rule\": \"label-original\","
                      " \"gpuhook.dev/reason\": \"The PR carries the label gpu:original.\","
                      " \"gpuhook.dev/delivery\": \"72d3162e-cc78-11e3-81ab-4c9367dc0958\","
                      " \"gpuhook.dev/ref\": \"refs/pull/2/head\","
                      " \"gpuhook.dev/revision\": \"ec26c3e57ca3a959ca5aad62de7213c562f8c821\","
                      " \"gpuhook.dev/repository\": \"Codertocat/Hello-World\",\"gpuhook.dev/installation-id\": \"1\"}");
    assert_string_equal(str_at(run, "spec.workspaces[0].volumeClaimTemplate.spec.resources."
                                    "requests.storage"),
                        "50Gi");

    /* The same delivery renders the same name; the template itself is never modified. */
    cJSON *again = NULL;
    assert_int_equal(template_render(t, &in, &again, err, sizeof(err)), 0);
    assert_true(cJSON_Compare(run, again, 1));
    cJSON_Delete(again);

    cJSON_Delete(run);
    event_cleanup(&ev);
    template_free(t);
}

/* The deployment guide's TriggerTemplate is the shipped file, read here verbatim. */
static void test_template_deployment_guide_template_declares_its_params(void **state) {
    struct template *t =
        load_ok("k8s/triggers/trigger-template.yaml", "k8s/triggers/trigger-binding.yaml");
    cJSON *doc = read_json("k8s/triggers/trigger-template.yaml");
    (void)state;

    assert_true(template_declares(t, "git-repo-url"));
    assert_true(template_declares(t, "git-revision"));
    assert_true(template_declares(t, "pipeline-version"));
    assert_false(template_declares(t, "pipeline_version"));
    assert_false(template_declares(t, ""));
    assert_string_equal(str_at(doc, "spec.params[2].default"), "lite");
    /*
     * The shipped file still says what the deployment guide says, plus the run's
     * pod template and timeouts (issue 17: placement, Pod Security, no 1h limit).
     */
    cJSON *guide = read_json(FX "deployment-guide-template.yaml");
    cJSON *shipped = cJSON_Duplicate(doc, 1);
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetArrayItem(at(shipped, "spec.resourcetemplates"), 0), "spec");
    assert_non_null(cJSON_GetObjectItemCaseSensitive(spec, "taskRunTemplate"));
    assert_non_null(cJSON_GetObjectItemCaseSensitive(spec, "timeouts"));
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "taskRunTemplate");
    cJSON_DeleteItemFromObjectCaseSensitive(spec, "timeouts");
    assert_true(cJSON_Compare(shipped, guide, 1));
    cJSON_Delete(shipped);
    cJSON_Delete(guide);
    assert_string_equal(str_at(doc, "spec.resourcetemplates[0].spec.pipelineRef.name"),
                        "gpu-real-8-step-workflow-$(tt.params.pipeline-version)");
    cJSON_Delete(doc);

    /* With no binding, the pipeline-version default applies and extensions are not used. */
    struct template *t2 = NULL;
    struct errlist el;
    char tp[1024];
    errlist_init(&el);
    src_path(tp, sizeof(tp), "k8s/triggers/trigger-template.yaml");
    assert_int_equal(template_load(tp, NULL, &t2, &el), GHE_INVAL);
    assert_int_equal(el.count, 2);
    errlist_cleanup(&el);
    template_free(t);
}

/* ---- substitution rules ------------------------------------------------------------------ */

static const char subst_body[] =
    "{\"pull_request\": {\"head\": {\"sha\": \"abc123\"}},"
    " \"commits\": [{\"id\": \"c0\"}, {\"id\": \"c1\"}],"
    " \"after\": \"def456\", \"number\": 42, \"deleted\": false,"
    " \"repo\": {\"name\": \"r\", \"tags\": [1, \"two\"]},"
    " \"labels\": [{\"name\": \"gpu:original\"}, {\"name\": \"x\"}],"
    " \"json_like\": \"[\\\"not\\\", \\\"an array\\\"]\","
    " \"annotations\": {\"app.kubernetes.io/name\": \"dotted\"},"
    " \"sneaky\": \"$(tt.params.literal) $(uid) \\\"q\\\" \\\\ \\n`x`\"}";

struct subst_fixture {
    struct template *t;
    struct event ev;
    struct event_header headers[2];
    struct select_decision d;
};

static void subst_setup(struct subst_fixture *f, const char *body) {
    f->t = load_ok(FX "subst-template.yaml", FX "subst-binding.yaml");
    event_init(&f->ev);
    f->ev.body = body ? cJSON_Parse(body) : NULL;
    f->ev.event = strdup("push");
    f->ev.ref = strdup("refs/heads/feature/x");
    f->ev.branch = strdup("feature/x");
    f->ev.delivery = strdup("d-1");
    f->ev.hook_id = strdup("h-1");
    f->headers[0] = (struct event_header){"X-GitHub-Event", "push"};
    f->headers[1] = (struct event_header){"user-agent", "GitHub-Hookshot/abc"};
    f->ev.headers = f->headers;
    f->ev.header_count = 2;
    f->d = decision(SELECT_ORIGINAL, "main", "Pushes to main run the original pipeline.");
}

static void subst_teardown(struct subst_fixture *f) {
    event_cleanup(&f->ev);
    template_free(f->t);
}

struct subst_case {
    const char *param;
    const char *json; /* the rendered value */
};

static void test_template_substitutes_every_expression_kind(void **state) {
    static const struct subst_case cases[] = {
        {"sha", "\"abc123\""},          /* dotted body path */
        {"first-id-dotted", "\"c0\""},  /* commits.0.id */
        {"first-id-bracket", "\"c1\""}, /* commits[1].id */
        {"event-header", "\"push\""},   /* header name in any case */
        {"branch", "\"feature/x\""},    /* extension */
        {"multi", "\"ref=refs/heads/feature/x sha=def456 by GitHub-Hookshot/abc!\""},
        {"number", "\"42\""},  /* numbers as JSON text */
        {"flag", "\"false\""}, /* booleans as JSON text */
        {"repo-text", "\"repo={\\\"name\\\":\\\"r\\\",\\\"tags\\\":[1,\\\"two\\\"]}\""},
        {"labels", "[{\"name\": \"gpu:original\"}, {\"name\": \"x\"}]"},
        {"labels-in-text", "\"labels: [{\\\"name\\\":\\\"gpu:original\\\"},"
                           "{\\\"name\\\":\\\"x\\\"}]\""},
        {"default-list", "[\"a\", \"b\"]"},      /* YAML list default */
        {"default-json-text", "{\"k\": \"v\"}"}, /* JSON-text default */
        {"with-default", "\"fallback\""},        /* missing path, default */
        {"literal", "\"plain text\""},
        {"json-like", "\"[\\\"not\\\", \\\"an array\\\"]\""}, /* payload strings stay strings */
        {"dotted-key", "\"dotted\""},                         /* \. inside a key */
        {"sneaky", "\"$(tt.params.literal) $(uid) \\\"q\\\" \\\\ \\n`x`\""}, /* not re-scanned */
        {"overridden", "\"original\""},
        {"quoted-number", "\"007\""},
        {"two-params", "\"feature/x@abc123 [plain text]\""},
        {"tekton-runtime", "\"$(params.foo) $(context.pipelineRun.name) $(tasks.a.results.b)\""},
    };
    struct subst_fixture f;
    cJSON *run = NULL;
    char err[256];
    (void)state;

    subst_setup(&f, subst_body);
    struct template_render_input in = input(&f.ev, &f.d);
    int rc = template_render(f.t, &in, &run, err, sizeof(err));
    if (rc)
        fail_msg("render: %s", err);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const cJSON *v = run_param(run, cases[i].param);
        cJSON *want = cJSON_Parse(cases[i].json);
        assert_non_null(want);
        if (!cJSON_Compare(v, want, 1))
            fail_msg("param %s: got %s, want %s", cases[i].param, cJSON_PrintUnformatted(v),
                     cases[i].json);
        cJSON_Delete(want);
    }
    /* generateName is gone; the name is its literal start and the identity's hash. */
    char name[NAMING_MAX + 1];
    naming_pipelinerun("subst", NAMING_WEBHOOK, "h-1", "d-1", name);
    assert_string_equal(str_at(run, "metadata.name"), name);
    assert_null(at(run, "metadata.generateName"));
    /* The template's own labels and annotations stay; gpuhook's win where they collide. */
    assert_string_equal(str_at(run, "metadata.labels.team"), "ml");
    assert_string_equal(str_at(run, "metadata.annotations.note"), "keep");
    assert_string_equal(str_at(run, "metadata.labels[\"gpuhook.dev/variant\"]"), "original");
    assert_string_equal(str_at(run, "metadata.labels[1]"), "original"); /* kept its place */
    assert_string_equal(str_at(run, "spec.timeouts.pipeline"), "1h");
    cJSON_Delete(run);
    subst_teardown(&f);
}

static bool is_uuid4(const char *s) {
    if (strlen(s) != 36 || s[14] != '4' || !strchr("89ab", s[19]))
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !strchr("0123456789abcdef", s[i]))
            return false;
    }
    return true;
}

static void test_template_uid_is_one_fresh_uuid_per_render(void **state) {
    struct subst_fixture f;
    cJSON *a = NULL, *b = NULL;
    char err[256], id_a[64];
    (void)state;

    subst_setup(&f, subst_body);
    struct template_render_input in = input(&f.ev, &f.d);
    assert_int_equal(template_render(f.t, &in, &a, err, sizeof(err)), 0);
    assert_int_equal(template_render(f.t, &in, &b, err, sizeof(err)), 0);
    snprintf(id_a, sizeof(id_a), "id=%s", run_param_str(a, "run-id"));
    assert_true(is_uuid4(run_param_str(a, "run-id")));
    assert_string_equal(run_param_str(a, "run-id-again"), id_a);
    assert_true(is_uuid4(run_param_str(b, "run-id")));
    assert_string_not_equal(run_param_str(a, "run-id"), run_param_str(b, "run-id"));
    /* Everything but the uid is deterministic. */
    assert_string_equal(str_at(a, "metadata.name"), str_at(b, "metadata.name"));
    cJSON_Delete(a);
    cJSON_Delete(b);
    subst_teardown(&f);
}

static void test_template_overrides_replace_bound_values(void **state) {
    static const struct template_override ov[] = {
        {"branch", "from-trigger"},
        {"labels", "[\"overridden\", {\"k\": 1}]"},
        {"with-default", "{not json"},
        {"sha", "fixed-sha"},
    };
    static const struct template_override bad[] = {{"undeclared", "x"}};
    struct subst_fixture f;
    cJSON *run = NULL;
    char err[256];
    (void)state;

    /* The body lacks pull_request.head.sha, but the override means it is not needed. */
    subst_setup(&f, subst_body);
    cJSON_DeleteItemFromObjectCaseSensitive(f.ev.body, "pull_request");
    struct template_render_input in = input(&f.ev, &f.d);
    in.overrides = ov;
    in.override_count = 4;
    int rc = template_render(f.t, &in, &run, err, sizeof(err));
    if (rc)
        fail_msg("render: %s", err);
    assert_string_equal(run_param_str(run, "branch"), "from-trigger");
    assert_string_equal(run_param_str(run, "sha"), "fixed-sha");
    assert_json_equal(run_param(run, "labels"), "[\"overridden\", {\"k\": 1}]");
    assert_string_equal(run_param_str(run, "with-default"), "{not json");
    assert_string_equal(run_param_str(run, "first-id-dotted"), "c0");
    assert_string_equal(run_param_str(run, "two-params"), "from-trigger@fixed-sha [plain text]");
    cJSON_Delete(run);

    in.overrides = bad;
    in.override_count = 1;
    assert_int_equal(template_render(f.t, &in, &run, err, sizeof(err)), GHE_INVAL);
    assert_string_equal(err, "param \"undeclared\" is not declared by the template");
    assert_null(run);
    subst_teardown(&f);
}

static void test_template_oversized_values_are_refused(void **state) {
    struct subst_fixture f;
    cJSON *run = NULL;
    char err[256];
    size_t big = 5u << 20;
    (void)state;

    subst_setup(&f, subst_body);
    struct template_render_input in = input(&f.ev, &f.d);
    free(f.ev.branch);
    f.ev.branch = malloc(big + 1);
    assert_non_null(f.ev.branch);
    memset(f.ev.branch, 'b', big);
    f.ev.branch[big] = '\0';
    assert_int_equal(template_render(f.t, &in, &run, err, sizeof(err)), GHE_INVAL);
    assert_string_equal(err, "the value rendered at .spec.resourcetemplates[0].metadata."
                             "generateName is longer than 4194304 bytes");
    assert_null(run);

    /* A value built from several parts is bounded while it is built. */
    f.ev.branch[0] = '\0';
    cJSON_ReplaceItemInObjectCaseSensitive(f.ev.body, "after", cJSON_CreateString(f.ev.branch + 1));
    assert_int_equal(template_render(f.t, &in, &run, err, sizeof(err)), GHE_INVAL);
    assert_string_equal(err, "param \"multi\" is longer than 1048576 bytes");
    assert_null(run);
    subst_teardown(&f);
}

struct missing_case {
    const char *body; /* NULL: no payload at all, as for /trigger */
    bool with_agent;
    int rc;
    const char *result; /* the error, or "rev|title|agent|mixed" */
};

static void test_template_missing_paths_use_default_or_fail(void **state) {
    static const struct missing_case cases[] = {
        {"{\"number\": 7, \"pull_request\": {\"head\": {\"sha\": \"s1\", \"ref\": \"br\"},"
         " \"title\": \"T\"}}",
         true, 0, "s1|T|ua|pr-7-br"},
        {"{\"pull_request\": {\"head\": {\"sha\": \"s1\"}}}", true, 0,
         "s1|untitled|ua|mixed-default"},
        /* JSON null is a value, printed as Tekton prints it (pkg/template/jsonpath_test.go) */
        {"{\"pull_request\": {\"head\": {\"sha\": \"s1\"}, \"title\": null}}", true, 0,
         "s1|null|ua|mixed-default"},
        {"{\"pull_request\": {\"head\": {}}}", true, GHE_INVAL,
         "payload lacks body.pull_request.head.sha required by param \"git-revision\""},
        {"{\"pull_request\": [1, 2]}", true, GHE_INVAL,
         "payload lacks body.pull_request.head.sha required by param \"git-revision\""},
        {NULL, true, GHE_INVAL,
         "payload lacks body.pull_request.head.sha required by param \"git-revision\""},
        {"{\"pull_request\": {\"head\": {\"sha\": \"s1\"}}}", false, GHE_INVAL,
         "request lacks header User-Agent required by param \"agent\""},
    };
    (void)state;
    struct template *t = load_ok(FX "missing-template.yaml", FX "missing-binding.yaml");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct missing_case *c = &cases[i];
        struct event ev;
        struct event_header h = {"USER-AGENT", "ua"};
        struct select_decision d = decision(SELECT_LITE, "default", "r");
        cJSON *run = (cJSON *)&ev;
        char err[256], got[512];

        event_init(&ev);
        ev.body = c->body ? cJSON_Parse(c->body) : NULL;
        ev.headers = &h;
        ev.header_count = c->with_agent ? 1 : 0;
        struct template_render_input in = input(&ev, &d);
        int rc = template_render(t, &in, &run, err, sizeof(err));
        if (rc == 0) {
            snprintf(got, sizeof(got), "%s|%s|%s|%s", run_param_str(run, "git-revision"),
                     run_param_str(run, "title"), run_param_str(run, "agent"),
                     run_param_str(run, "mixed"));
        } else {
            snprintf(got, sizeof(got), "%s", err);
            assert_null(run);
        }
        if (rc != c->rc || strcmp(got, c->result) != 0)
            fail_msg("case %zu: rc %d '%s', want %d '%s'", i, rc, got, c->rc, c->result);
        cJSON_Delete(run);
        event_cleanup(&ev);
    }
    template_free(t);
}

static void test_template_null_extensions_are_empty(void **state) {
    struct template *t = load_ok(FX "prop-template.yaml", FX "prop-binding.yaml");
    struct event ev;
    cJSON *run = NULL;
    char err[256], name[NAMING_MAX + 1];
    (void)state;

    event_init(&ev);
    struct template_render_input in;
    memset(&in, 0, sizeof(in));
    in.ev = &ev;
    assert_int_equal(template_render(t, &in, &run, err, sizeof(err)), 0);
    assert_string_equal(run_param_str(run, "branch"), "");
    assert_string_equal(run_param_str(run, "combined"), "@: ");
    assert_string_equal(run_param_str(run, "body-message"), "no-message");
    naming_pipelinerun("prop", NAMING_WEBHOOK, NULL, NULL, name);
    assert_string_equal(str_at(run, "metadata.name"), name);
    assert_null(at(run, "metadata.namespace"));
    /* Absent values leave no annotation; labels are present and label-safe (empty). */
    assert_json_equal(at(run, "metadata.annotations"), "{\"example.com/branch\": \"\"}");
    assert_string_equal(str_at(run, "metadata.labels[\"gpuhook.dev/variant\"]"), "");
    cJSON_Delete(run);
    event_cleanup(&ev);
    template_free(t);
}

/* Renders through the text path and checks that it parses, names the run and matches the tree. */
static cJSON *render_both(const struct template *t, const struct template_render_input *in) {
    char err[256], name[NAMING_MAX + 1];
    struct buf text;
    cJSON *run = NULL, *again = NULL;

    buf_init(&text, 1 << 20);
    assert_int_equal(template_render_json(t, in, &text, name, err, sizeof(err)), 0);
    assert_non_null(run = cJSON_ParseWithLength(text.data, text.len));
    assert_string_equal(str_at(run, "metadata.name"), name);
    assert_int_equal(template_render(t, in, &again, err, sizeof(err)), 0);
    assert_true(cJSON_Compare(run, again, true));
    cJSON_Delete(again);
    buf_cleanup(&text);
    return run;
}

static void test_template_metadata_rules(void **state) {
    struct template *t = load_ok(FX "meta-template.yaml", NULL);
    struct event ev;
    struct select_decision d;
    char name[NAMING_MAX + 1];
    (void)state;

    /* No namespace, no decision, no event fields: the template's namespace and notes stay. */
    event_init(&ev);
    struct template_render_input in;
    memset(&in, 0, sizeof(in));
    in.ev = &ev;
    cJSON *run = render_both(t, &in);
    /* Neither generateName nor pipelineRef.name has a literal start: the prefix is "run". */
    naming_pipelinerun("run", NAMING_WEBHOOK, NULL, NULL, name);
    assert_string_equal(str_at(run, "metadata.name"), name);
    assert_null(at(run, "metadata.generateName"));
    assert_string_equal(at(run, "metadata")->child->string, "name");
    assert_string_equal(at(run, "metadata")->child->next->string, "namespace");
    assert_string_equal(str_at(run, "metadata.namespace"), "template-ns");
    assert_json_equal(
        at(run, "metadata.labels"),
        "{\"gpuhook.dev/event\": \"\", \"team\": \"ml\","
        " \"app.kubernetes.io/managed-by\": \"gpuhook\", \"gpuhook.dev/variant\": \"\","
        " \"triggers.tekton.dev/triggers-eventid\": \"\","
        " \"gpuhook.dev/repository\": \"\"}");
    assert_json_equal(
        at(run, "metadata.annotations"),
        "{\"gpuhook.dev/ref\": \"template-ref\", \"gpuhook.dev/rule\": \"from-default\","
        " \"other\": \"from-default\"}");
    assert_json_equal(at(run, "spec.pipelineRef.name"), "[\"a\", \"b\"]");
    cJSON_Delete(run);

    /* A namespace and values: gpuhook's replace the template's in place, the rest follow. */
    memset(&d, 0, sizeof(d));
    d.variant = SELECT_ORIGINAL;
    snprintf(d.rule, sizeof(d.rule), "r1");
    snprintf(d.reason, sizeof(d.reason), "because");
    ev.ref = strdup("refs/heads/main");
    ev.delivery = strdup("d-1");
    in.decision = &d;
    in.namespace = "ns";
    run = render_both(t, &in);
    assert_string_equal(at(run, "metadata")->child->next->string, "namespace");
    assert_string_equal(str_at(run, "metadata.namespace"), "ns");
    assert_int_equal(cJSON_GetArraySize(at(run, "metadata")), 4);
    assert_json_equal(at(run, "metadata.annotations"),
                      "{\"gpuhook.dev/ref\": \"refs/heads/main\", \"gpuhook.dev/rule\": \"r1\","
                      " \"other\": \"from-default\", \"gpuhook.dev/reason\": \"because\","
                      " \"gpuhook.dev/delivery\": \"d-1\"}");
    assert_string_equal(str_at(run, "metadata.labels[\"gpuhook.dev/variant\"]"), "original");
    cJSON_Delete(run);
    event_cleanup(&ev);
    template_free(t);
}

static void test_template_loads_json_templates(void **state) {
    struct template *t = load_ok(FX "prop-template.json", NULL);
    struct event ev;
    cJSON *run = NULL;
    char err[256];
    (void)state;

    event_init(&ev);
    struct template_render_input in;
    memset(&in, 0, sizeof(in));
    in.ev = &ev;
    in.namespace = "ns";
    assert_int_equal(template_render(t, &in, &run, err, sizeof(err)), 0);
    assert_string_equal(str_at(run, "spec.params[0].value"), "main");
    assert_int_equal(at(run, "spec.retries")->valueint, 2);
    assert_string_equal(str_at(run, "metadata.namespace"), "ns");
    cJSON_Delete(run);
    event_cleanup(&ev);
    template_free(t);
}

/* ---- property: hostile values keep the shape and arrive byte for byte -------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static void append_utf8(struct buf *b, uint32_t cp) {
    unsigned char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    assert_int_equal(buf_append(b, u, n), 0);
}

/* A random hostile string: pieces that break naive substitution, random code points, or both. */
static char *hostile_string(size_t iter) {
    static const char *const pieces[] = {
        "\"",
        "\\",
        "\n",
        "\r\n",
        "\t",
        "$(tt.params.branch)",
        "$(tt.params.x)",
        "$(body.a)",
        "$(uid)",
        "$(extensions.branch)",
        "`",
        "$(",
        ")",
        "{\"a\":1}",
        "[1,2]",
        "{",
        "[",
        "]",
        "}",
        "\\u0000",
        "\\\"",
        "\xc3\xa9",
        "\xe6\x97\xa5\xe6\x9c\xac",
        "\xf0\x9f\x98\x80",
        "\x01",
        "\x1f",
        "\x7f",
        "</script>",
        "'",
        "%s%n",
        "${x}",
        " ",
        "null",
        "true",
        ",",
        ":",
        "\xe2\x80\xa8",
        "\xef\xbb\xbf",
        "refs/heads/",
        "..",
        "@{",
        "a",
    };
    const size_t npieces = sizeof(pieces) / sizeof(pieces[0]);
    struct buf b;
    size_t n;

    buf_init(&b, 1 << 20);
    switch (iter % 8) {
    case 0: /* JSON that must not become structure */
        assert_int_equal(
            buf_appends(&b, iter % 16 ? "{\"injected\": [1, {\"x\": \"y\"}]}" : "[\"a\", \"b\"]"),
            0);
        break;
    case 1: /* long */
        n = 4096 + rng() % 60000;
        for (size_t i = 0; i < n; i++)
            assert_int_equal(buf_appends(&b, pieces[rng() % npieces]), 0);
        break;
    case 2: /* random code points, valid UTF-8, no NUL, no surrogates */
        n = rng() % 200;
        for (size_t i = 0; i < n; i++) {
            uint32_t cp = 1 + rng() % 0x10fffe;
            if (cp >= 0xd800 && cp <= 0xdfff)
                cp -= 0x800;
            append_utf8(&b, cp);
        }
        break;
    case 3: /* random bytes below 0x80 */
        n = rng() % 100;
        for (size_t i = 0; i < n; i++)
            append_utf8(&b, 1 + rng() % 0x7f);
        break;
    case 4: /* empty */
        break;
    default:
        n = rng() % 40;
        for (size_t i = 0; i < n; i++) {
            if (rng() % 4 == 0)
                append_utf8(&b, 1 + rng() % 0xd7ff);
            else
                assert_int_equal(buf_appends(&b, pieces[rng() % npieces]), 0);
        }
        break;
    }
    return buf_detach(&b, NULL);
}

/* Describes the shape (every path and its type) so two renders can be compared. */
static void shape(const cJSON *n, struct buf *path, struct buf *out) {
    const cJSON *c;
    size_t idx = 0;

    assert_int_equal(buf_appendf(out, "%s:%d\n", path->data ? path->data : "", n->type & 0xff), 0);
    cJSON_ArrayForEach(c, n) {
        size_t len = path->len;
        if (c->string)
            assert_int_equal(buf_appendf(path, "/%s", c->string), 0);
        else
            assert_int_equal(buf_appendf(path, "[%zu]", idx), 0);
        idx++;
        shape(c, path, out);
        path->len = len;
        path->data[len] = '\0';
    }
}

static char *shape_of(const cJSON *n) {
    struct buf path, out;
    buf_init(&path, 1 << 16);
    buf_init(&out, 1 << 20);
    assert_int_equal(buf_appends(&path, ""), 0);
    shape(n, &path, &out);
    buf_cleanup(&path);
    return buf_detach(&out, NULL);
}

static cJSON *render_hostile(const struct template *t, const char *branch, const char *rev,
                             const char *msg, const char *repo, char **printed) {
    struct event ev;
    struct select_decision d = decision(SELECT_LITE, "default", "r");
    cJSON *run = NULL, *body = cJSON_CreateObject(), *hc = cJSON_CreateObject();
    char err[256];

    event_init(&ev);
    assert_non_null(cJSON_AddStringToObject(hc, "message", msg));
    cJSON_AddItemToObject(body, "head_commit", hc);
    ev.body = body;
    ev.event = strdup("push");
    ev.branch = strdup(branch);
    ev.revision = strdup(rev);
    ev.message = strdup(msg);
    ev.repo_full_name = strdup(repo);
    ev.delivery = strdup(branch);
    ev.hook_id = strdup("1");
    struct template_render_input in = input(&ev, &d);
    int rc = template_render(t, &in, &run, err, sizeof(err));
    if (rc)
        fail_msg("render: %s", err);
    *printed = cJSON_PrintUnformatted(run);
    assert_non_null(*printed);
    cJSON_Delete(run);
    event_cleanup(&ev);
    return cJSON_Parse(*printed);
}

static bool label_safe(const char *s) {
    size_t n = strlen(s);
    if (n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && c != '-' && c != '_' && c != '.')
            return false;
        if ((i == 0 || i == n - 1) && !alnum)
            return false;
    }
    return true;
}

/*
 * The plain build walks 2400 hostile values; under AddressSanitizer, where each
 * costs ten times as much, the first 600 (the fuzzers cover far more).
 */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_HOSTILE_ITERATIONS 600
#else
#define TEST_HOSTILE_ITERATIONS 2400
#endif

static void test_template_property_hostile_values_keep_shape_and_bytes(void **state) {
    struct template *t = load_ok(FX "prop-template.yaml", FX "prop-binding.yaml");
    char *printed = NULL;
    (void)state;

    cJSON *plain = render_hostile(t, "main", "abc", "hello", "o/r", &printed);
    assert_non_null(plain);
    char *want_shape = shape_of(plain);
    cJSON_Delete(plain);
    cJSON_free(printed);

    for (size_t iter = 0; iter < TEST_HOSTILE_ITERATIONS; iter++) {
        char *branch = hostile_string(iter);
        char *rev = hostile_string(iter + 3);
        char *msg = hostile_string(iter * 7 + 5);
        char *repo = hostile_string(iter + 1);
        cJSON *run = render_hostile(t, branch, rev, msg, repo, &printed);
        if (!run)
            fail_msg("iteration %zu: the rendered object does not parse: %.200s", iter, printed);
        char *got_shape = shape_of(run);
        if (strcmp(got_shape, want_shape) != 0)
            fail_msg("iteration %zu: shape changed for branch '%.80s'\n%s", iter, branch,
                     got_shape);
        free(got_shape);

        size_t combined_len = strlen(branch) + strlen(rev) + strlen(msg) + 3;
        char *combined = malloc(combined_len + 1), *env1 = malloc(strlen(msg) + 5);
        assert_non_null(combined);
        assert_non_null(env1);
        snprintf(combined, combined_len + 1, "%s@%s: %s", branch, rev, msg);
        snprintf(env1, strlen(msg) + 5, "x-%s-y", msg);
        assert_string_equal(run_param_str(run, "branch"), branch);
        assert_string_equal(run_param_str(run, "revision"), rev);
        assert_string_equal(run_param_str(run, "message"), msg);
        assert_string_equal(run_param_str(run, "body-message"), msg);
        assert_string_equal(run_param_str(run, "combined"), combined);
        assert_string_equal(str_at(run, "spec.taskRunTemplate.podTemplate.env[0]"), branch);
        assert_string_equal(str_at(run, "spec.taskRunTemplate.podTemplate.env[1]"), env1);
        assert_string_equal(str_at(run, "metadata.annotations[\"example.com/branch\"]"), branch);
        assert_string_equal(str_at(run, "metadata.annotations[\"gpuhook.dev/delivery\"]"), branch);
        assert_string_equal(str_at(run, "metadata.annotations[\"gpuhook.dev/revision\"]"), rev);
        assert_string_equal(str_at(run, "metadata.annotations[\"gpuhook.dev/repository\"]"), repo);
        const cJSON *l;
        cJSON_ArrayForEach(l, at(run, "metadata.labels")) {
            if (!label_safe(l->valuestring))
                fail_msg("iteration %zu: label %s='%s' is not label-safe", iter, l->string,
                         l->valuestring);
        }
        free(combined);
        free(env1);
        cJSON_free(printed);
        cJSON_Delete(run);
        free(branch);
        free(rev);
        free(msg);
        free(repo);
    }
    free(want_shape);
    template_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yamljson_types_only_plain_scalars),
        cmocka_unit_test(test_yamljson_rejects_with_file_and_line),
        cmocka_unit_test(test_yamljson_reads_json_files_and_reports_missing_ones),
        cmocka_unit_test(test_yamljson_refuses_special_and_oversized_files),
        cmocka_unit_test(test_template_load_errors_name_file_and_place),
        cmocka_unit_test(test_template_shipped_files_render_a_push),
        cmocka_unit_test(test_template_shipped_files_render_a_pull_request),
        cmocka_unit_test(test_template_deployment_guide_template_declares_its_params),
        cmocka_unit_test(test_template_substitutes_every_expression_kind),
        cmocka_unit_test(test_template_uid_is_one_fresh_uuid_per_render),
        cmocka_unit_test(test_template_overrides_replace_bound_values),
        cmocka_unit_test(test_template_missing_paths_use_default_or_fail),
        cmocka_unit_test(test_template_oversized_values_are_refused),
        cmocka_unit_test(test_template_null_extensions_are_empty),
        cmocka_unit_test(test_template_metadata_rules),
        cmocka_unit_test(test_template_loads_json_templates),
        cmocka_unit_test(test_template_property_hostile_values_keep_shape_and_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
