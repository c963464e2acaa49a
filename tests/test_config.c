/*
 * Unit tests for config.c: one case per kind of config error, each with its
 * exact message ("FILE: .json.path: reason"), every error reported at once,
 * secrets named but never printed, defaults, relative paths, and the offline
 * load that skips secrets. Configs are written into a fresh temp folder; the
 * template and bindings are the shipped k8s/triggers/ files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "gpuhook/config.h"
#include "gpuhook/error.h"
#include "gpuhook/logger.h"
#include "gpuhook/signature.h"

/* The webhook secret's text: it must never appear in any message. */
#define SECRET_TEXT "s3cr3t-Never-Print-Me"
#define TOKEN_TEXT "tok3n-Never-Print-Me"

/* "github", "template" and "bindings": the smallest valid config's members. */
#define BASE "\"github\":{\"secret_files\":[\"secret\"]},\"template\":\"@T@\",\"bindings\":\"@B@\""

struct fixture {
    char dir[256];
    char path[300]; /* dir/gpuhook.json */
    char tmpl[1024];
    char bindings[1024];
};

static void write_file(const char *dir, const char *name, const char *data) {
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    fwrite(data, 1, strlen(data), f);
    fclose(f);
}

static int setup(void **state) {
    struct fixture *fx = calloc(1, sizeof(*fx));
    const char *src = getenv("GPUHOOK_SOURCE_DIR");

    if (!fx)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/gpuhook-test-config-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->path, sizeof(fx->path), "%s/gpuhook.json", fx->dir);
    snprintf(fx->tmpl, sizeof(fx->tmpl), "%s/k8s/triggers/trigger-template.yaml", src ? src : ".");
    snprintf(fx->bindings, sizeof(fx->bindings), "%s/k8s/triggers/trigger-binding.yaml",
             src ? src : ".");
    if (src && src[0] != '/')
        return -1; /* the paths must be absolute: the config lives elsewhere */
    write_file(fx->dir, "secret", SECRET_TEXT "\n");
    write_file(fx->dir, "secret2", "second-" SECRET_TEXT "\r\n");
    write_file(fx->dir, "token", TOKEN_TEXT "\n");
    write_file(fx->dir, "empty", "");
    write_file(fx->dir, "newline", "\n");
    write_file(fx->dir, "cert.pem", "not really a cert\n");
    write_file(fx->dir, "key.pem", "not really a key\n");
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/adir", fx->dir);
    mkdir(sub, 0700);
    /* Only errors, so a failing load does not clutter the test output. */
    logger_set_level(LOGGER_ERROR);
    *state = fx;
    return 0;
}

static int teardown(void **state) {
    struct fixture *fx = *state;
    static const char *const names[] = {"secret",  "secret2",      "token",
                                        "empty",   "newline",      "cert.pem",
                                        "key.pem", "gpuhook.json", "unreadable"};
    char path[512];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", fx->dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/adir", fx->dir);
    rmdir(path);
    rmdir(fx->dir);
    free(fx);
    return 0;
}

/* Replaces @D@ (the temp folder), @T@ (template) and @B@ (bindings). Caller frees. */
static char *subst(const struct fixture *fx, const char *in) {
    size_t cap = strlen(in) + 4096, n = 0;
    char *out = malloc(cap);

    assert_non_null(out);
    for (const char *p = in; *p;) {
        const char *with = NULL;
        if (strncmp(p, "@D@", 3) == 0)
            with = fx->dir;
        else if (strncmp(p, "@T@", 3) == 0)
            with = fx->tmpl;
        else if (strncmp(p, "@B@", 3) == 0)
            with = fx->bindings;
        if (with) {
            assert_true(n + strlen(with) < cap);
            memcpy(out + n, with, strlen(with));
            n += strlen(with);
            p += 3;
        } else {
            assert_true(n + 1 < cap);
            out[n++] = *p++;
        }
    }
    out[n] = '\0';
    return out;
}

/* Writes json (after subst) as the config and loads it. */
static int load_json(const struct fixture *fx, const char *json, bool offline, struct config **out,
                     struct errlist *el) {
    char *text = subst(fx, json);
    write_file(fx->dir, "gpuhook.json", text);
    free(text);
    return offline ? config_load_offline(fx->path, out, el) : config_load(fx->path, out, el);
}

static void dump_errors(const struct errlist *el) {
    for (size_t i = 0; i < el->count; i++)
        print_message("    got: %s\n", el->items[i]);
}

/* Asserts that no message carries the secret's or the token's text. */
static void assert_no_secret_text(const struct errlist *el) {
    for (size_t i = 0; i < el->count; i++)
        if (strstr(el->items[i], SECRET_TEXT) || strstr(el->items[i], TOKEN_TEXT))
            fail_msg("a message prints a secret: %s", el->items[i]);
}

static void test_config_minimal_config_loads_with_defaults(void **state) {
    struct fixture *fx = *state;
    struct config *cfg = NULL;
    struct errlist el;
    char want[512];

    errlist_init(&el);
    int rc = load_json(fx, "{" BASE "}", false, &cfg, &el);
    if (rc != 0)
        dump_errors(&el);
    assert_int_equal(rc, 0);
    assert_int_equal(el.count, 0);
    assert_non_null(cfg);

    assert_string_equal(cfg->path, fx->path);
    assert_string_equal(cfg->listen, "127.0.0.1:8080");
    assert_string_equal(cfg->listen_host, "127.0.0.1");
    assert_int_equal(cfg->listen_port, 8080);
    assert_int_equal(cfg->log_level, LOGGER_INFO);
    assert_null(cfg->tls_cert_file);
    assert_null(cfg->tls_key_file);
    assert_int_equal(cfg->max_body_bytes, 26214400);
    assert_int_equal(cfg->shutdown_grace_seconds, 20);
    assert_int_equal(cfg->unverified_body_budget_bytes, 64L * 1024 * 1024);
    assert_int_equal(cfg->max_connections, 4096);
    assert_int_equal(cfg->header_timeout_seconds, 10);
    assert_int_equal(cfg->min_body_bytes_per_second, 16384);
    assert_int_equal(cfg->event_count, 3);
    assert_string_equal(cfg->events[0], "push");
    assert_string_equal(cfg->events[1], "pull_request");
    assert_string_equal(cfg->events[2], "ping");
    assert_null(cfg->trigger_token_file);
    assert_null(cfg->trigger_token);
    assert_int_equal(cfg->kube_mode, CONFIG_KUBE_LOCAL);
    assert_string_equal(cfg->kube_namespace, "tekton-pipelines");
    assert_int_equal(cfg->kube_timeout_seconds, 5);
    snprintf(want, sizeof(want), "%s/../var/pipelineruns", fx->dir);
    assert_string_equal(cfg->kube_local_dir, want);
    assert_null(cfg->kube_url);
    assert_null(cfg->spool_dir);
    assert_int_equal(cfg->spool_max_age_hours, 72);
    assert_int_equal(cfg->spool_retry_after_max_seconds, 300);
    assert_int_equal(cfg->gpu.refresh_seconds, 5);
    assert_false(cfg->gpu.required);
    assert_string_equal(cfg->template_path, fx->tmpl);
    assert_string_equal(cfg->bindings_path, fx->bindings);
    assert_non_null(cfg->tmpl);
    assert_non_null(cfg->rules);
    assert_non_null(cfg->keyring);
    assert_int_equal(cfg->refs, 1);
    config_unref(cfg);
    errlist_cleanup(&el);
}

/* HMAC-SHA256 of body under secret as "sha256=<hex>". */
static void sign(const char *secret, const char *body, char header[8 + 64]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    assert_non_null(HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body,
                         strlen(body), md, &mdlen));
    memcpy(header, "sha256=", 7);
    for (unsigned int i = 0; i < mdlen; i++) {
        header[7 + 2 * i] = hex[md[i] >> 4];
        header[8 + 2 * i] = hex[md[i] & 15];
    }
    header[7 + 64] = '\0';
}

static void test_config_secrets_are_trimmed_and_keyed_for_rotation(void **state) {
    struct fixture *fx = *state;
    struct config *cfg = NULL;
    struct errlist el;
    char h1[72], h2[72], h3[72];

    errlist_init(&el);
    int rc = load_json(fx,
                       "{\"github\":{\"secret_files\":[\"secret\",\"secret2\"]},"
                       "\"trigger\":{\"token_file\":\"token\"},"
                       "\"template\":\"@T@\",\"bindings\":\"@B@\"}",
                       false, &cfg, &el);
    if (rc != 0)
        dump_errors(&el);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg->secret_count, 2);
    /* One trailing "\n" or "\r\n" is not part of the secret. */
    sign(SECRET_TEXT, "{}", h1);
    sign("second-" SECRET_TEXT, "{}", h2);
    sign(SECRET_TEXT "\n", "{}", h3);
    assert_true(signature_verify(cfg->keyring, h1, "{}", 2));
    assert_true(signature_verify(cfg->keyring, h2, "{}", 2));
    assert_false(signature_verify(cfg->keyring, h3, "{}", 2));
    assert_string_equal(cfg->trigger_token, TOKEN_TEXT);
    config_unref(cfg);
    errlist_cleanup(&el);
}

static void test_config_relative_paths_resolve_against_the_config_folder(void **state) {
    struct fixture *fx = *state;
    struct config *cfg = NULL;
    struct errlist el;
    char want[600];

    errlist_init(&el);
    int rc = load_json(fx,
                       "{" BASE ",\"trigger\":{\"token_file\":\"token\"},"
                       "\"kubernetes\":{\"mode\":\"url\",\"url\":\"http://127.0.0.1:8001\","
                       "\"local_dir\":\"runs/out\",\"ca_file\":\"@D@/cert.pem\"},"
                       "\"spool_dir\":\"../spool\"}",
                       false, &cfg, &el);
    if (rc != 0)
        dump_errors(&el);
    assert_int_equal(rc, 0);
    snprintf(want, sizeof(want), "%s/secret", fx->dir);
    assert_string_equal(cfg->secret_files[0], want);
    snprintf(want, sizeof(want), "%s/token", fx->dir);
    assert_string_equal(cfg->trigger_token_file, want);
    snprintf(want, sizeof(want), "%s/runs/out", fx->dir);
    assert_string_equal(cfg->kube_local_dir, want);
    snprintf(want, sizeof(want), "%s/../spool", fx->dir);
    assert_string_equal(cfg->spool_dir, want);
    /* An absolute path is kept as written. */
    snprintf(want, sizeof(want), "%s/cert.pem", fx->dir);
    assert_string_equal(cfg->kube_ca_file, want);
    assert_string_equal(cfg->template_path, fx->tmpl);
    config_unref(cfg);
    errlist_cleanup(&el);
}

static void test_config_explicit_values_override_defaults(void **state) {
    struct fixture *fx = *state;
    struct config *cfg = NULL;
    struct errlist el;

    errlist_init(&el);
    int rc = load_json(fx,
                       "{\"template\":\"@T@\",\"bindings\":\"@B@\","
                       "\"listen\":\"[::1]:9090\",\"log_level\":\"debug\","
                       "\"max_body_bytes\":1024,\"shutdown_grace_seconds\":0,"
                       "\"github\":{\"secret_files\":[\"secret\"],\"events\":[\"push\"]},"
                       "\"tls\":{\"cert_file\":\"cert.pem\",\"key_file\":\"key.pem\"},"
                       "\"kubernetes\":{\"mode\":\"dry-run\",\"namespace\":\"ci\","
                       "\"timeout_seconds\":9},"
                       "\"spool_max_age_hours\":1,\"spool_retry_after_max_seconds\":7,"
                       "\"gpu\":{\"refresh_seconds\":3600,"
                       "\"required\":true}}",
                       false, &cfg, &el);
    if (rc != 0)
        dump_errors(&el);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg->listen_host, "[::1]");
    assert_int_equal(cfg->listen_port, 9090);
    assert_int_equal(cfg->log_level, LOGGER_DEBUG);
    assert_int_equal(cfg->max_body_bytes, 1024);
    assert_int_equal(cfg->shutdown_grace_seconds, 0);
    assert_int_equal(cfg->event_count, 1);
    assert_string_equal(cfg->events[0], "push");
    assert_non_null(cfg->tls_cert_file);
    assert_non_null(cfg->tls_key_file);
    assert_int_equal(cfg->kube_mode, CONFIG_KUBE_DRY_RUN);
    assert_string_equal(cfg->kube_namespace, "ci");
    assert_int_equal(cfg->kube_timeout_seconds, 9);
    assert_int_equal(cfg->spool_max_age_hours, 1);
    assert_int_equal(cfg->spool_retry_after_max_seconds, 7);
    assert_int_equal(cfg->gpu.refresh_seconds, 3600);
    assert_true(cfg->gpu.required);
    config_unref(cfg);
    errlist_cleanup(&el);
}

/*
 * One case per kind of error. Each expected message follows "FILE: ", with @D@
 * standing for the temp folder; the load must give exactly these messages.
 */
struct bad_case {
    const char *why;
    const char *json;
    const char *messages[4];
};

static const struct bad_case bad_cases[] = {
    {"unknown key at top level", "{" BASE ",\"colour\":\"blue\"}", {".colour: unknown key"}},
    {"unknown key nested",
     "{" BASE ",\"kubernetes\":{\"mode\":\"local\",\"flavour\":1}}",
     {".kubernetes.flavour: unknown key"}},
    {"unknown key two levels down is named by its full path",
     "{\"github\":{\"secret_files\":[\"secret\"],\"secrets\":[]},"
     "\"template\":\"@T@\",\"bindings\":\"@B@\"}",
     {".github.secrets: unknown key"}},
    {"keys are case-sensitive", "{" BASE ",\"Listen\":\"0.0.0.0:1\"}", {".Listen: unknown key"}},
    {"string given a number",
     "{" BASE ",\"listen\":8080}",
     {".listen: 8080 is not a non-empty string"}},
    {"string given empty",
     "{" BASE ",\"spool_dir\":\"\"}",
     {".spool_dir: \"\" is not a non-empty string"}},
    {"integer given a string",
     "{" BASE ",\"max_body_bytes\":\"25MB\"}",
     {".max_body_bytes: \"25MB\" is not an integer"}},
    {"integer given a fraction",
     "{" BASE ",\"shutdown_grace_seconds\":1.5}",
     {".shutdown_grace_seconds: 1.5 is not an integer"}},
    {"integer given a bool",
     "{" BASE ",\"gpu\":{\"refresh_seconds\":true}}",
     {".gpu.refresh_seconds: true is not an integer"}},
    {"bool given a string",
     "{" BASE ",\"gpu\":{\"required\":\"yes\"}}",
     {".gpu.required: \"yes\" is not true or false"}},
    {"object given a list",
     "{\"github\":[],\"template\":\"@T@\",\"bindings\":\"@B@\"}",
     {".github: [] is not an object"}},
    {"object given a string", "{" BASE ",\"tls\":\"on\"}", {".tls: \"on\" is not an object"}},
    {"list given a string",
     "{\"github\":{\"secret_files\":\"secret\"},\"template\":\"@T@\",\"bindings\":\"@B@\"}",
     {".github.secret_files: \"secret\" must be a list of 1 to 8 strings"}},
    {"list empty where one item is required",
     "{\"github\":{\"secret_files\":[]},\"template\":\"@T@\",\"bindings\":\"@B@\"}",
     {".github.secret_files: [] must be a list of 1 to 8 strings"}},
    {"list item not a string",
     "{\"github\":{\"secret_files\":[\"secret\"],\"events\":[\"push\",3]},"
     "\"template\":\"@T@\",\"bindings\":\"@B@\"}",
     {".github.events[1]: 3 is not a non-empty string"}},
    {"integer below range",
     "{" BASE ",\"max_body_bytes\":100}",
     {".max_body_bytes: 100 is out of range [1024, 67108864]"}},
    {"integer above range",
     "{" BASE ",\"max_body_bytes\":67108865}",
     {".max_body_bytes: 67108865 is out of range [1024, 67108864]"}},
    {"integer far above range",
     "{" BASE ",\"max_body_bytes\":1e30}",
     {".max_body_bytes: 1e+30 is out of range [1024, 67108864]"}},
    {"budget below its floor",
     "{" BASE ",\"unverified_body_budget_bytes\":1000}",
     {".unverified_body_budget_bytes: 1000 is out of range [1048576, 4294967296]"}},
    {"no header deadline",
     "{" BASE ",\"header_timeout_seconds\":0}",
     {".header_timeout_seconds: 0 is out of range [1, 300]"}},
    {"negative integer",
     "{" BASE ",\"shutdown_grace_seconds\":-1}",
     {".shutdown_grace_seconds: -1 is out of range [0, 600]"}},
    {"nested integer out of range",
     "{" BASE ",\"kubernetes\":{\"timeout_seconds\":0}}",
     {".kubernetes.timeout_seconds: 0 is out of range [1, 9]"}},
    {"bad enum",
     "{" BASE ",\"kubernetes\":{\"mode\":\"cloud\"}}",
     {".kubernetes.mode: \"cloud\" is not one of local, url, in-cluster, dry-run"}},
    {"enum given a number",
     "{" BASE ",\"log_level\":3}",
     {".log_level: 3 is not one of debug, info, warn, error"}},
    {"missing github",
     "{\"template\":\"@T@\",\"bindings\":\"@B@\"}",
     {".github: required key is missing"}},
    {"missing template",
     "{\"github\":{\"secret_files\":[\"secret\"]},\"bindings\":\"@B@\"}",
     {".template: required key is missing"}},
    {"missing bindings",
     "{\"github\":{\"secret_files\":[\"secret\"]},\"template\":\"@T@\"}",
     {".bindings: required key is missing"}},
    {"missing github.secret_files",
     "{\"github\":{\"events\":[\"push\"]},\"template\":\"@T@\",\"bindings\":\"@B@\"}",
     {".github.secret_files: required key is missing"}},
    {"empty secret file",
     "{\"github\":{\"secret_files\":[\"secret\",\"empty\"]},\"template\":\"@T@\","
     "\"bindings\":\"@B@\"}",
     {".github.secret_files[1]: @D@/empty is empty"}},
    {"secret file holding only a newline",
     "{\"github\":{\"secret_files\":[\"newline\"]},\"template\":\"@T@\",\"bindings\":\"@B@\"}",
     {".github.secret_files[0]: @D@/newline is empty"}},
    {"missing secret file",
     "{\"github\":{\"secret_files\":[\"secret\",\"nope\"]},\"template\":\"@T@\","
     "\"bindings\":\"@B@\"}",
     {".github.secret_files[1]: cannot read @D@/nope: No such file or directory"}},
    {"secret file that is a folder",
     "{\"github\":{\"secret_files\":[\"adir\"]},\"template\":\"@T@\",\"bindings\":\"@B@\"}",
     {".github.secret_files[0]: cannot read @D@/adir: Is a directory"}},
    {"empty trigger token",
     "{" BASE ",\"trigger\":{\"token_file\":\"empty\"}}",
     {".trigger.token_file: @D@/empty is empty"}},
    {"missing trigger token",
     "{" BASE ",\"trigger\":{\"token_file\":\"nope\"}}",
     {".trigger.token_file: cannot read @D@/nope: No such file or directory"}},
    {"listen without a port",
     "{" BASE ",\"listen\":\"localhost\"}",
     {".listen: \"localhost\" is not HOST:PORT"}},
    {"listen without a host",
     "{" BASE ",\"listen\":\":8080\"}",
     {".listen: \":8080\" is not HOST:PORT"}},
    {"listen with an empty port",
     "{" BASE ",\"listen\":\"localhost:\"}",
     {".listen: \"localhost:\" is not HOST:PORT"}},
    {"listen with a port over 65535",
     "{" BASE ",\"listen\":\"127.0.0.1:65536\"}",
     {".listen: \"127.0.0.1:65536\" is not HOST:PORT"}},
    {"listen with a named port",
     "{" BASE ",\"listen\":\"127.0.0.1:http\"}",
     {".listen: \"127.0.0.1:http\" is not HOST:PORT"}},
    {"url mode without url",
     "{" BASE ",\"kubernetes\":{\"mode\":\"url\"},\"spool_dir\":\"s\"}",
     {".kubernetes.url: required when mode is \"url\""}},
    {"url mode with a non-http URL",
     "{" BASE ",\"kubernetes\":{\"mode\":\"url\",\"url\":\"ftp://k8s.local\"},\"spool_dir\":\"s\"}",
     {".kubernetes.url: \"ftp://k8s.local\" is not an http:// or https:// URL"}},
    {"url mode with a file URL",
     "{" BASE ",\"kubernetes\":{\"mode\":\"url\",\"url\":\"file:///etc/passwd\"},"
     "\"spool_dir\":\"s\"}",
     {".kubernetes.url: \"file:///etc/passwd\" is not an http:// or https:// URL"}},
    {"url mode without spool_dir",
     "{" BASE ",\"kubernetes\":{\"mode\":\"url\",\"url\":\"http://127.0.0.1:8001\"}}",
     {".spool_dir: required when kubernetes.mode is \"url\""}},
    {"in-cluster mode without spool_dir",
     "{" BASE ",\"kubernetes\":{\"mode\":\"in-cluster\"}}",
     {".spool_dir: required when kubernetes.mode is \"in-cluster\""}},
    {"tls cert without key",
     "{" BASE ",\"tls\":{\"cert_file\":\"cert.pem\"}}",
     {".tls.key_file: required key is missing"}},
    {"tls key without cert",
     "{" BASE ",\"tls\":{\"key_file\":\"key.pem\"}}",
     {".tls.cert_file: required key is missing"}},
    {"tls cert unreadable",
     "{" BASE ",\"tls\":{\"cert_file\":\"nope.pem\",\"key_file\":\"key.pem\"}}",
     {".tls.cert_file: cannot read @D@/nope.pem: No such file or directory"}},
    {"kubernetes ca_file unreadable",
     "{" BASE ",\"kubernetes\":{\"mode\":\"url\",\"url\":\"https://k8s:6443\","
     "\"ca_file\":\"ca.crt\"},\"spool_dir\":\"s\"}",
     {".kubernetes.ca_file: cannot read @D@/ca.crt: No such file or directory"}},
    {"invalid JSON names its line",
     "{\n  " BASE ",\n  \"listen\": \"127.0.0.1:1\"\n  oops\n}\n",
     {"line 4: not a JSON object"}},
    {"JSON that is not an object", "\n[1, 2]\n", {"line 1: not a JSON object"}},
    {"empty file", "", {"line 1: not a JSON object"}},
    {"three problems give three messages",
     "{" BASE ",\"colour\":\"blue\",\"max_body_bytes\":1,"
     "\"kubernetes\":{\"mode\":\"cloud\"}}",
     {".colour: unknown key", ".max_body_bytes: 1 is out of range [1024, 67108864]",
      ".kubernetes.mode: \"cloud\" is not one of local, url, in-cluster, dry-run"}},
    {"file and value problems are reported together",
     "{\"github\":{\"secret_files\":[\"empty\",\"nope\"]},\"template\":\"@T@\","
     "\"bindings\":\"@B@\",\"listen\":\"nowhere\"}",
     {".listen: \"nowhere\" is not HOST:PORT", ".github.secret_files[0]: @D@/empty is empty",
      ".github.secret_files[1]: cannot read @D@/nope: No such file or directory"}},
};

static void test_config_each_kind_of_error_has_its_message(void **state) {
    struct fixture *fx = *state;
    int failures = 0;

    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *bc = &bad_cases[i];
        struct config *cfg = (struct config *)1;
        struct errlist el;
        size_t want = 0;
        bool ok = true;

        errlist_init(&el);
        int rc = load_json(fx, bc->json, false, &cfg, &el);
        if (rc == 0 || cfg != NULL)
            ok = false;
        while (want < 4 && bc->messages[want])
            want++;
        if (el.count != want)
            ok = false;
        for (size_t m = 0; m < want && ok; m++) {
            char *tail = subst(fx, bc->messages[m]);
            char full[2048];
            bool found = false;
            snprintf(full, sizeof(full), "%s: %s", fx->path, tail);
            free(tail);
            for (size_t j = 0; j < el.count; j++)
                found |= strcmp(el.items[j], full) == 0;
            if (!found) {
                print_error("  missing: %s\n", full);
                ok = false;
            }
        }
        assert_no_secret_text(&el);
        if (!ok) {
            print_error("case \"%s\": rc %d, %zu message(s), %zu expected\n", bc->why, rc, el.count,
                        want);
            dump_errors(&el);
            failures++;
        }
        if (rc == 0 && cfg)
            config_unref(cfg);
        errlist_cleanup(&el);
    }
    assert_int_equal(failures, 0);
}

static void test_config_unreadable_secret_is_named_without_its_contents(void **state) {
    struct fixture *fx = *state;
    struct config *cfg = NULL;
    struct errlist el;
    char path[512], want[1024];

    /* Permission bits do not stop root, so this case only runs for other users. */
    if (geteuid() == 0) {
        skip();
        return;
    }
    snprintf(path, sizeof(path), "%s/unreadable", fx->dir);
    write_file(fx->dir, "unreadable", SECRET_TEXT);
    assert_int_equal(chmod(path, 0), 0);
    errlist_init(&el);
    assert_int_equal(load_json(fx,
                               "{\"github\":{\"secret_files\":[\"unreadable\"]},"
                               "\"template\":\"@T@\",\"bindings\":\"@B@\"}",
                               false, &cfg, &el),
                     GHE_INVAL);
    assert_null(cfg);
    assert_int_equal(el.count, 1);
    snprintf(want, sizeof(want), "%s: .github.secret_files[0]: cannot read %s: Permission denied",
             fx->path, path);
    assert_string_equal(el.items[0], want);
    assert_no_secret_text(&el);
    errlist_cleanup(&el);
}

static void test_config_missing_config_file_is_an_io_error(void **state) {
    struct fixture *fx = *state;
    struct config *cfg = (struct config *)1;
    struct errlist el;
    char path[512], want[1024];

    snprintf(path, sizeof(path), "%s/absent.json", fx->dir);
    errlist_init(&el);
    assert_int_equal(config_load(path, &cfg, &el), GHE_IO);
    assert_null(cfg);
    assert_int_equal(el.count, 1);
    snprintf(want, sizeof(want), "%s: cannot read: No such file or directory", path);
    assert_string_equal(el.items[0], want);
    errlist_cleanup(&el);
}

static void test_config_offline_load_skips_secrets(void **state) {
    struct fixture *fx = *state;
    static const char *json = "{\"github\":{\"secret_files\":[\"nope\",\"empty\"]},"
                              "\"trigger\":{\"token_file\":\"absent-token\"},"
                              "\"template\":\"@T@\",\"bindings\":\"@B@\"}";
    struct config *cfg = NULL;
    struct errlist el;
    char want[512];

    /* The full load refuses the missing and empty secrets and the missing token... */
    errlist_init(&el);
    assert_int_equal(load_json(fx, json, false, &cfg, &el), GHE_INVAL);
    assert_null(cfg);
    assert_int_equal(el.count, 3);
    errlist_cleanup(&el);

    /* ...the offline load reads none of them, and still validates and compiles the rest. */
    errlist_init(&el);
    int rc = load_json(fx, json, true, &cfg, &el);
    if (rc != 0)
        dump_errors(&el);
    assert_int_equal(rc, 0);
    assert_int_equal(el.count, 0);
    assert_non_null(cfg);
    assert_null(cfg->keyring);
    assert_null(cfg->trigger_token);
    assert_int_equal(cfg->secret_count, 2);
    snprintf(want, sizeof(want), "%s/nope", fx->dir);
    assert_string_equal(cfg->secret_files[0], want);
    assert_non_null(cfg->tmpl);
    config_unref(cfg);
    errlist_cleanup(&el);

    /* Offline still reports errors that are not about secrets. */
    errlist_init(&el);
    assert_int_equal(load_json(fx, "{" BASE ",\"colour\":1}", true, &cfg, &el), GHE_INVAL);
    assert_int_equal(el.count, 1);
    snprintf(want, sizeof(want), "%s: .colour: unknown key", fx->path);
    assert_string_equal(el.items[0], want);
    errlist_cleanup(&el);
}

static void test_config_read_secret_trims_one_newline(void **state) {
    struct fixture *fx = *state;
    static const struct {
        const char *contents;
        int rc;
        const char *secret;
    } cases[] = {
        {"abc", 0, "abc"},       {"abc\n", 0, "abc"},       {"abc\r\n", 0, "abc"},
        {"abc\n\n", 0, "abc\n"}, {" abc ", 0, " abc "},     {"", GHE_INVAL, NULL},
        {"\n", GHE_INVAL, NULL}, {"\r\n", GHE_INVAL, NULL},
    };
    char path[512];

    snprintf(path, sizeof(path), "%s/unreadable", fx->dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *s = (char *)1;
        size_t len = 0;
        write_file(fx->dir, "unreadable", cases[i].contents);
        assert_int_equal(config_read_secret(path, &s, &len), cases[i].rc);
        if (cases[i].secret) {
            assert_string_equal(s, cases[i].secret);
            assert_int_equal(len, strlen(cases[i].secret));
            free(s);
        } else {
            assert_null(s);
        }
    }
    char *s = (char *)1;
    snprintf(path, sizeof(path), "%s/nope", fx->dir);
    assert_int_equal(config_read_secret(path, &s, NULL), GHE_IO);
    assert_null(s);
}

static void test_config_references_keep_it_alive_until_the_last_unref(void **state) {
    struct fixture *fx = *state;
    struct config *cfg = NULL;
    struct errlist el;

    errlist_init(&el);
    assert_int_equal(load_json(fx, "{" BASE "}", false, &cfg, &el), 0);
    assert_ptr_equal(config_ref(cfg), cfg);
    assert_int_equal(cfg->refs, 2);
    config_unref(cfg);
    assert_int_equal(cfg->refs, 1);
    assert_string_equal(cfg->listen, "127.0.0.1:8080"); /* still readable (ASan would say) */
    config_unref(cfg);
    config_unref(NULL);
    assert_null(config_ref(NULL));
    errlist_cleanup(&el);
}

static void test_config_kube_mode_names(void **state) {
    (void)state;
    assert_string_equal(config_kube_mode_name(CONFIG_KUBE_LOCAL), "local");
    assert_string_equal(config_kube_mode_name(CONFIG_KUBE_URL), "url");
    assert_string_equal(config_kube_mode_name(CONFIG_KUBE_IN_CLUSTER), "in-cluster");
    assert_string_equal(config_kube_mode_name(CONFIG_KUBE_DRY_RUN), "dry-run");
    assert_string_equal(config_kube_mode_name(-1), "unknown");
    assert_string_equal(config_kube_mode_name(4), "unknown");
}

static void test_config_shipped_config_validates_offline(void **state) {
    (void)state;
    const char *src = getenv("GPUHOOK_SOURCE_DIR");
    char path[1024];
    struct config *cfg = NULL;
    struct errlist el;

    snprintf(path, sizeof(path), "%s/config/gpuhook.json", src ? src : ".");
    errlist_init(&el);
    int rc = config_load_offline(path, &cfg, &el);
    if (rc != 0)
        dump_errors(&el);
    assert_int_equal(rc, 0);
    assert_int_equal(cfg->kube_mode, CONFIG_KUBE_LOCAL);
    config_unref(cfg);
    errlist_cleanup(&el);
}

/* Secrets and the config are read through fileio: bounded, loud, regular files only. */
static void test_config_files_are_read_bounded_and_never_block(void **state) {
    struct fixture *fx = *state;
    char fifo[512], big[512], want[1200];
    char *text = NULL;
    struct errlist el;
    struct config *cfg = NULL;

    snprintf(fifo, sizeof(fifo), "%s/fifo", fx->dir);
    snprintf(big, sizeof(big), "%s/big", fx->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    /* A FIFO with no writer would block an open: it is refused at once instead. */
    assert_int_equal(config_read_secret(fifo, &text, NULL), GHE_IO);
    assert_int_equal(errno, EINVAL);
    assert_null(text);

    FILE *f = fopen(big, "wb");
    assert_non_null(f);
    for (int i = 0; i < 64 * 1024 + 1; i++)
        fputc('x', f);
    fclose(f);
    assert_int_equal(config_read_secret(big, &text, NULL), GHE_IO);
    assert_int_equal(errno, EFBIG);

    errlist_init(&el);
    assert_int_not_equal(
        load_json(fx, "{" BASE ",\"trigger\":{\"token_file\":\"big\"}}", false, &cfg, &el), 0);
    snprintf(want, sizeof(want), "%s: .trigger.token_file: cannot read %s: File too large",
             fx->path, big);
    assert_int_equal(el.count, 1);
    assert_string_equal(el.items[0], want);
    errlist_cleanup(&el);

    /* The config itself: over 1 MiB says so. */
    f = fopen(fx->path, "wb");
    assert_non_null(f);
    fputc('{', f);
    for (int i = 0; i < 1024 * 1024; i++)
        fputc(' ', f);
    fputc('}', f);
    fclose(f);
    errlist_init(&el);
    assert_int_equal(config_load(fx->path, &cfg, &el), GHE_IO);
    snprintf(want, sizeof(want), "%s: cannot read: larger than 1 MiB", fx->path);
    assert_int_equal(el.count, 1);
    assert_string_equal(el.items[0], want);
    errlist_cleanup(&el);
    unlink(fifo);
    unlink(big);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_minimal_config_loads_with_defaults),
        cmocka_unit_test(test_config_secrets_are_trimmed_and_keyed_for_rotation),
        cmocka_unit_test(test_config_relative_paths_resolve_against_the_config_folder),
        cmocka_unit_test(test_config_explicit_values_override_defaults),
        cmocka_unit_test(test_config_each_kind_of_error_has_its_message),
        cmocka_unit_test(test_config_unreadable_secret_is_named_without_its_contents),
        cmocka_unit_test(test_config_missing_config_file_is_an_io_error),
        cmocka_unit_test(test_config_offline_load_skips_secrets),
        cmocka_unit_test(test_config_read_secret_trims_one_newline),
        cmocka_unit_test(test_config_references_keep_it_alive_until_the_last_unref),
        cmocka_unit_test(test_config_kube_mode_names),
        cmocka_unit_test(test_config_shipped_config_validates_offline),
        cmocka_unit_test(test_config_files_are_read_bounded_and_never_block),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
