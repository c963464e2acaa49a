#include "gpuhook/config.h"
#include "gpuhook/admission.h"
#include "gpuhook/fileio.h"
#include "gpuhook/gpu.h"
#include "gpuhook/logger.h"
#include "gpuhook/select.h"
#include "gpuhook/signature.h"
#include "gpuhook/template.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define CONFIG_FILE_MAX (1024 * 1024)
#define CONFIG_SECRET_MAX (64 * 1024)

enum config_type {
    CONFIG_T_STRING,
    CONFIG_T_PATH,
    CONFIG_T_INT,   /* stored in a long */
    CONFIG_T_INT32, /* stored in an int (fields shared with other modules' structs) */
    CONFIG_T_BOOL,
    CONFIG_T_ENUM,
    CONFIG_T_STRING_LIST,
    CONFIG_T_PATH_LIST,
    CONFIG_T_OBJECT,
    CONFIG_T_SELECTION
};

/* One key of the config: its type, where it lands, its default and bounds. */
struct config_key {
    const char *name;
    int type;
    size_t offset; /* into struct config; count follows lists at offset_count */
    size_t offset_count;
    const char *def; /* default for strings and paths, NULL for none */
    long idef, min, max;
    const char *const *choices; /* enum: names, index is the value */
    const struct config_key *children;
    bool required;
    /*
     * enum config_reload: whether SIGHUP applies a change (CONFIG_LIVE) or the
     * running value stays until a restart (CONFIG_RESTART). Last, so that a key
     * written without it is a missing initializer, which -Wextra -Werror refuse;
     * test_config checks that every key has one.
     */
    int reload;
};

#define CFG_OFF(f) offsetof(struct config, f)
#define CFG_END                                                                                    \
    { NULL, 0, 0, 0, NULL, 0, 0, 0, NULL, NULL, false, 0 }
#define LIVE CONFIG_LIVE
#define RESTART CONFIG_RESTART
#define NESTED CONFIG_NESTED

static const char *const config_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const config_modes[] = {"local", "url", "in-cluster", "dry-run", NULL};

static const struct config_key config_tls_keys[] = {
    /* http.c reads the PEM files once, when the server starts */
    {"cert_file", CONFIG_T_PATH, CFG_OFF(tls_cert_file), 0, NULL, 0, 0, 0, NULL, NULL, true,
     RESTART},
    /* read with cert_file, at start only */
    {"key_file", CONFIG_T_PATH, CFG_OFF(tls_key_file), 0, NULL, 0, 0, 0, NULL, NULL, true, RESTART},
    CFG_END};
/* ghreport.c builds its client once, at start (delivery_new): every key needs a restart. */
static const struct config_key config_report_keys[] = {
    {"api_url", CONFIG_T_STRING, CFG_OFF(report_api_url), 0, "https://api.github.com", 0, 0, 0,
     NULL, NULL, false, RESTART},
    {"app_id", CONFIG_T_INT, CFG_OFF(report_app_id), 0, NULL, 0, 0, 1000000000000L, NULL, NULL,
     false, RESTART},
    {"private_key_file", CONFIG_T_PATH, CFG_OFF(report_private_key_file), 0, NULL, 0, 0, 0, NULL,
     NULL, false, RESTART},
    {"installation_id", CONFIG_T_INT, CFG_OFF(report_installation_id), 0, NULL, 0, 0,
     1000000000000000L, NULL, NULL, false, RESTART},
    /* ghauth re-reads the file itself when it changes */
    {"token_file", CONFIG_T_PATH, CFG_OFF(report_token_file), 0, NULL, 0, 0, 0, NULL, NULL, false,
     RESTART},
    {"ca_file", CONFIG_T_PATH, CFG_OFF(report_ca_file), 0, NULL, 0, 0, 0, NULL, NULL, false,
     RESTART},
    {"details_url", CONFIG_T_STRING, CFG_OFF(report_details_url), 0, NULL, 0, 0, 0, NULL, NULL,
     false, RESTART},
    {"queue_max", CONFIG_T_INT, CFG_OFF(report_queue_max), 0, NULL, 1024, 1, 1000000, NULL, NULL,
     false, RESTART},
    {"max_attempts", CONFIG_T_INT, CFG_OFF(report_max_attempts), 0, NULL, 10, 1, 100, NULL, NULL,
     false, RESTART},
    CFG_END};
static const struct config_key config_github_keys[] = {
    /* the keyring is built by the load and swapped with the config */
    {"secret_files", CONFIG_T_PATH_LIST, CFG_OFF(secret_files), CFG_OFF(secret_count), NULL, 0, 1,
     SIGNATURE_MAX_KEYS, NULL, NULL, true, LIVE},
    /* webhook.c reads the current config; serve.c re-registers metric labels */
    {"events", CONFIG_T_STRING_LIST, CFG_OFF(events), CFG_OFF(event_count),
     "push,pull_request,ping", 0, 0, 64, NULL, NULL, false, LIVE},
    {"report", CONFIG_T_OBJECT, 0, 0, NULL, 0, 0, 0, NULL, config_report_keys, false, NESTED},
    CFG_END};
static const struct config_key config_trigger_keys[] = {
    /* the token is read by the load and swapped with the config */
    {"token_file", CONFIG_T_PATH, CFG_OFF(trigger_token_file), 0, NULL, 0, 0, 0, NULL, NULL, false,
     LIVE},
    /* trigger.c reads the current config */
    {"default_repo_url", CONFIG_T_STRING, CFG_OFF(trigger_default_repo_url), 0, NULL, 0, 0, 0, NULL,
     NULL, false, LIVE},
    CFG_END};
static const struct config_key config_kube_keys[] = {
    /* the delivery backend is chosen once, at start */
    {"mode", CONFIG_T_ENUM, CFG_OFF(kube_mode), 0, NULL, CONFIG_KUBE_LOCAL, 0, 0, config_modes,
     NULL, false, RESTART},
    /* the API client is made once, at start */
    {"url", CONFIG_T_STRING, CFG_OFF(kube_url), 0, NULL, 0, 0, 0, NULL, NULL, false, RESTART},
    /* the API client and the spool keep the start value */
    {"namespace", CONFIG_T_STRING, CFG_OFF(kube_namespace), 0, NULL, 0, 0, 0, NULL, NULL, false,
     RESTART},
    /* the client copies the path at start; it re-reads that file when it changes */
    {"token_file", CONFIG_T_PATH, CFG_OFF(kube_token_file), 0, NULL, 0, 0, 0, NULL, NULL, false,
     RESTART},
    /* the client copies the path at start and hands it to curl */
    {"ca_file", CONFIG_T_PATH, CFG_OFF(kube_ca_file), 0, NULL, 0, 0, 0, NULL, NULL, false, RESTART},
    /* the local sink is opened once, at start */
    {"local_dir", CONFIG_T_PATH, CFG_OFF(kube_local_dir), 0, NULL, 0, 0, 0, NULL, NULL, false,
     RESTART},
    /* the client copies it at start */
    {"proxy", CONFIG_T_STRING, CFG_OFF(kube_proxy), 0, NULL, 0, 0, 0, NULL, NULL, false, RESTART},
    /* the client and the delivery keep the start value (only the request deadline would follow) */
    {"timeout_seconds", CONFIG_T_INT, CFG_OFF(kube_timeout_seconds), 0, NULL, 5, 1, 9, NULL, NULL,
     false, RESTART},
    CFG_END};
static const struct config_key config_gpu_keys[] = {
    /* serve.c passes it to gpu_set_options */
    {"refresh_seconds", CONFIG_T_INT32, CFG_OFF(gpu.refresh_seconds), 0, NULL, 5, 1, 3600, NULL,
     NULL, false, LIVE},
    /* serve.c passes it to gpu_set_options; dispatch reads the current config */
    {"required", CONFIG_T_BOOL, CFG_OFF(gpu.required), 0, NULL, 0, 0, 1, NULL, NULL, false, LIVE},
    CFG_END};
static const struct config_key config_cluster_gpu_keys[] = {
    /* clusterview.c reads them once, at start */
    {"service", CONFIG_T_STRING, CFG_OFF(cluster_gpu_service), 0, NULL, 0, 0, 0, NULL, NULL, false,
     RESTART},
    {"port_name", CONFIG_T_STRING, CFG_OFF(cluster_gpu_port_name), 0, "http", 0, 0, 0, NULL, NULL,
     false, RESTART},
    {"poll_seconds", CONFIG_T_INT, CFG_OFF(cluster_gpu_poll_seconds), 0, NULL, 5, 1, 3600, NULL,
     NULL, false, RESTART},
    {"stale_after", CONFIG_T_INT32, CFG_OFF(cluster_gpu_stale_after), 0, NULL, 3, 1, 100, NULL,
     NULL, false, RESTART},
    {"nodes", CONFIG_T_BOOL, CFG_OFF(cluster_gpu_nodes), 0, NULL, 0, 0, 1, NULL, NULL, false,
     RESTART},
    /* the pipeline reads the current config per run */
    {"placement", CONFIG_T_BOOL, CFG_OFF(cluster_gpu_placement), 0, NULL, 1, 0, 1, NULL, NULL,
     false, LIVE},
    CFG_END};
/* The admission queue (admission.c) copies all of these when it starts. */
static const struct config_key config_max_running_keys[] = {
    {"lite", CONFIG_T_INT, CFG_OFF(concurrency_max_running_lite), 0, NULL, 0, 0, 100000, NULL, NULL,
     false, RESTART},
    {"original", CONFIG_T_INT, CFG_OFF(concurrency_max_running_original), 0, NULL, 0, 0, 100000,
     NULL, NULL, false, RESTART},
    CFG_END};
static const struct config_key config_lease_keys[] = {
    /* the shared watcher is built once, at start */
    {"name", CONFIG_T_STRING, CFG_OFF(concurrency_lease_name), 0, "gpuhook-scheduler", 0, 0, 0,
     NULL, NULL, false, RESTART},
    {"duration_seconds", CONFIG_T_INT, CFG_OFF(concurrency_lease_duration_seconds), 0, NULL, 15, 2,
     3600, NULL, NULL, false, RESTART},
    CFG_END};
static const struct config_key config_concurrency_keys[] = {
    {"group", CONFIG_T_STRING, CFG_OFF(concurrency_group), 0, NULL, 0, 0, 0, NULL, NULL, true,
     RESTART},
    {"cancel_pending", CONFIG_T_BOOL, CFG_OFF(concurrency_cancel_pending), 0, NULL, 1, 0, 1, NULL,
     NULL, false, RESTART},
    {"cancel_running", CONFIG_T_BOOL, CFG_OFF(concurrency_cancel_running), 0, NULL, 0, 0, 1, NULL,
     NULL, false, RESTART},
    {"max_running", CONFIG_T_OBJECT, 0, 0, NULL, 0, 0, 0, NULL, config_max_running_keys, false,
     NESTED},
    {"lease", CONFIG_T_OBJECT, 0, 0, NULL, 0, 0, 0, NULL, config_lease_keys, false, NESTED},
    CFG_END};
static const struct config_key config_top_keys[] = {
    /* the socket is bound once */
    {"listen", CONFIG_T_STRING, CFG_OFF(listen), 0, "127.0.0.1:8080", 0, 0, 0, NULL, NULL, false,
     RESTART},
    /* serve_apply sets it */
    {"log_level", CONFIG_T_ENUM, CFG_OFF(log_level), 0, NULL, LOGGER_INFO, 0, 0, config_levels,
     NULL, false, LIVE},
    {"tls", CONFIG_T_OBJECT, 0, 0, NULL, 0, 0, 0, NULL, config_tls_keys, false, NESTED},
    /* http.c reads the current config per request */
    {"max_body_bytes", CONFIG_T_INT, CFG_OFF(max_body_bytes), 0, NULL, 26214400, 1024,
     64L * 1024 * 1024, NULL, NULL, false, LIVE},
    /* serve_apply sets the budget */
    {"unverified_body_budget_bytes", CONFIG_T_INT, CFG_OFF(unverified_body_budget_bytes), 0, NULL,
     64L * 1024 * 1024, 1024L * 1024, 4096L * 1024 * 1024, NULL, NULL, false, LIVE},
    /* a libmicrohttpd daemon option, set at start */
    {"max_connections", CONFIG_T_INT, CFG_OFF(max_connections), 0, NULL, 4096, 16, 65536, NULL,
     NULL, false, RESTART},
    /* the slow-client guard keeps the start value */
    {"header_timeout_seconds", CONFIG_T_INT, CFG_OFF(header_timeout_seconds), 0, NULL, 10, 1, 300,
     NULL, NULL, false, RESTART},
    /* the slow-client guard keeps the start value */
    {"min_body_bytes_per_second", CONFIG_T_INT, CFG_OFF(min_body_bytes_per_second), 0, NULL, 16384,
     0, 1024L * 1024 * 1024, NULL, NULL, false, RESTART},
    /* serve.c reads the config in force at shutdown */
    {"shutdown_grace_seconds", CONFIG_T_INT, CFG_OFF(shutdown_grace_seconds), 0, NULL, 20, 0, 600,
     NULL, NULL, false, LIVE},
    {"github", CONFIG_T_OBJECT, 0, 0, NULL, 0, 0, 0, NULL, config_github_keys, true, NESTED},
    {"trigger", CONFIG_T_OBJECT, 0, 0, NULL, 0, 0, 0, NULL, config_trigger_keys, false, NESTED},
    {"kubernetes", CONFIG_T_OBJECT, 0, 0, NULL, 0, 0, 0, NULL, config_kube_keys, false, NESTED},
    /* compiled by the load and swapped with the config */
    {"template", CONFIG_T_PATH, CFG_OFF(template_path), 0, NULL, 0, 0, 0, NULL, NULL, true, LIVE},
    /* compiled by the load and swapped with the config */
    {"bindings", CONFIG_T_PATH, CFG_OFF(bindings_path), 0, NULL, 0, 0, 0, NULL, NULL, true, LIVE},
    /* compiled by the load; serve.c passes gpu_fit to the probe */
    {"selection", CONFIG_T_SELECTION, 0, 0, NULL, 0, 0, 0, NULL, NULL, false, LIVE},
    /* the spool is opened once, at start */
    {"spool_dir", CONFIG_T_PATH, CFG_OFF(spool_dir), 0, NULL, 0, 0, 0, NULL, NULL, false, RESTART},
    /* spool_open takes it at start */
    {"spool_max_age_hours", CONFIG_T_INT, CFG_OFF(spool_max_age_hours), 0, NULL, 72, 1, 24 * 365,
     NULL, NULL, false, RESTART},
    /* the delivery sets it on the spool at start */
    {"spool_retry_after_max_seconds", CONFIG_T_INT, CFG_OFF(spool_retry_after_max_seconds), 0, NULL,
     300, 1, 86400, NULL, NULL, false, RESTART},
    {"gpu", CONFIG_T_OBJECT, 0, 0, NULL, 0, 0, 0, NULL, config_gpu_keys, false, NESTED},
    {"cluster_gpu", CONFIG_T_OBJECT, 0, 0, NULL, 0, 0, 0, NULL, config_cluster_gpu_keys, false,
     NESTED},
    {"concurrency", CONFIG_T_OBJECT, 0, 0, NULL, 0, 0, 0, NULL, config_concurrency_keys, false,
     NESTED},
    CFG_END};

struct config_ctx {
    struct config *cfg;
    const char *file; /* as given, for messages */
    char *dir;        /* the config file's folder */
    struct errlist *el;
    const cJSON *selection;
};

/* Writes a short, printable rendering of a bad value for messages. */
static void config_value_str(const cJSON *v, char *out, size_t n) {
    char *s = cJSON_PrintUnformatted(v);
    if (!s) {
        snprintf(out, n, "(value)");
        return;
    }
    if (strlen(s) > 60)
        memcpy(s + 57, "...", 4);
    snprintf(out, n, "%s", s);
    free(s);
}

/* Writes "PARENT.KEY" into out; a path too long for out is cut (keys are short, names of
 * unknown keys in messages are not). */
static void config_join(char *out, size_t n, const char *parent, const char *key) {
    if (snprintf(out, n, "%s.%s", parent, key) >= (int)n && n > 4)
        memcpy(out + n - 4, "...", 4);
}

static char *config_resolve(const struct config_ctx *c, const char *p) {
    char *out = NULL;
    if (p[0] == '/')
        return strdup(p);
    if (asprintf(&out, "%s/%s", c->dir, p) < 0)
        return NULL;
    return out;
}

/* Stores an integer already checked against the key's bounds, in the field's own width. */
static void config_store_int(struct config *cfg, const struct config_key *k, long v) {
    char *base = (char *)cfg;
    if (k->type == CONFIG_T_INT32)
        *(int *)(base + k->offset) = (int)v;
    else
        *(long *)(base + k->offset) = v;
}

static int config_set_default(struct config_ctx *c, const struct config_key *k) {
    char *base = (char *)c->cfg;
    switch (k->type) {
    case CONFIG_T_STRING:
    case CONFIG_T_PATH:
        if (k->def) {
            char *v = k->type == CONFIG_T_PATH ? config_resolve(c, k->def) : strdup(k->def);
            if (!v)
                return GHE_NOMEM;
            *(char **)(base + k->offset) = v;
        }
        break;
    case CONFIG_T_INT:
    case CONFIG_T_INT32:
        config_store_int(c->cfg, k, k->idef);
        break;
    case CONFIG_T_ENUM:
        *(int *)(base + k->offset) = (int)k->idef;
        break;
    case CONFIG_T_BOOL:
        *(bool *)(base + k->offset) = k->idef != 0;
        break;
    case CONFIG_T_STRING_LIST:
        if (k->def) {
            /* Defaults of lists are comma-separated. */
            char *copy = strdup(k->def), *save = NULL;
            size_t n = 0;
            char **items = calloc(16, sizeof(char *));
            if (!copy || !items) {
                free(copy);
                free(items);
                return GHE_NOMEM;
            }
            for (char *t = strtok_r(copy, ",", &save); t && n < 16; t = strtok_r(NULL, ",", &save))
                items[n++] = strdup(t);
            free(copy);
            *(char ***)(base + k->offset) = items;
            *(size_t *)(base + k->offset_count) = n;
        }
        break;
    default:
        break;
    }
    return 0;
}

static void config_parse_object(struct config_ctx *c, const cJSON *obj, const char *path,
                                const struct config_key *keys);

static void config_parse_key(struct config_ctx *c, const cJSON *v, const char *path,
                             const struct config_key *k) {
    char *base = (char *)c->cfg;
    char shown[96];

    config_value_str(v, shown, sizeof(shown));
    switch (k->type) {
    case CONFIG_T_STRING:
    case CONFIG_T_PATH:
        if (!cJSON_IsString(v) || !v->valuestring[0]) {
            errlist_at(c->el, c->file, path, "%s is not a non-empty string", shown);
            return;
        }
        free(*(char **)(base + k->offset));
        *(char **)(base + k->offset) =
            k->type == CONFIG_T_PATH ? config_resolve(c, v->valuestring) : strdup(v->valuestring);
        return;
    case CONFIG_T_INT:
    case CONFIG_T_INT32:
        /* Compare as doubles first: casting an out-of-range double to long is undefined. */
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble)) {
            errlist_at(c->el, c->file, path, "%s is not an integer", shown);
            return;
        }
        if (v->valuedouble < (double)k->min || v->valuedouble > (double)k->max) {
            errlist_at(c->el, c->file, path, "%s is out of range [%ld, %ld]", shown, k->min,
                       k->max);
            return;
        }
        config_store_int(c->cfg, k, (long)v->valuedouble);
        return;
    case CONFIG_T_BOOL:
        if (!cJSON_IsBool(v)) {
            errlist_at(c->el, c->file, path, "%s is not true or false", shown);
            return;
        }
        *(bool *)(base + k->offset) = cJSON_IsTrue(v);
        return;
    case CONFIG_T_ENUM: {
        char choices[160] = "";
        for (int i = 0; k->choices[i]; i++) {
            if (cJSON_IsString(v) && strcmp(v->valuestring, k->choices[i]) == 0) {
                *(int *)(base + k->offset) = i;
                return;
            }
            snprintf(choices + strlen(choices), sizeof(choices) - strlen(choices), "%s%s",
                     i ? ", " : "", k->choices[i]);
        }
        errlist_at(c->el, c->file, path, "%s is not one of %s", shown, choices);
        return;
    }
    case CONFIG_T_STRING_LIST:
    case CONFIG_T_PATH_LIST: {
        int n = cJSON_IsArray(v) ? cJSON_GetArraySize(v) : -1;
        if (n < 0 || n < k->min || n > k->max) {
            errlist_at(c->el, c->file, path, "%s must be a list of %ld to %ld strings", shown,
                       k->min, k->max);
            return;
        }
        char ***items = (char ***)(base + k->offset);
        size_t *count = (size_t *)(base + k->offset_count);
        for (size_t i = 0; i < *count; i++)
            free((*items)[i]);
        free(*items);
        *items = calloc((size_t)n + 1, sizeof(char *));
        *count = 0;
        if (!*items)
            return;
        const cJSON *it;
        int i = 0;
        cJSON_ArrayForEach(it, v) {
            if (!cJSON_IsString(it) || !it->valuestring[0]) {
                char item[96], at[280];
                config_value_str(it, item, sizeof(item));
                snprintf(at, sizeof(at), "%s[%d]", path, i);
                errlist_at(c->el, c->file, at, "%s is not a non-empty string", item);
            } else {
                (*items)[(*count)++] = k->type == CONFIG_T_PATH_LIST
                                           ? config_resolve(c, it->valuestring)
                                           : strdup(it->valuestring);
            }
            i++;
        }
        return;
    }
    case CONFIG_T_OBJECT:
        if (!cJSON_IsObject(v)) {
            errlist_at(c->el, c->file, path, "%s is not an object", shown);
            return;
        }
        config_parse_object(c, v, path, k->children);
        return;
    case CONFIG_T_SELECTION:
        c->selection = v;
        return;
    }
}

static void config_parse_object(struct config_ctx *c, const cJSON *obj, const char *path,
                                const struct config_key *keys) {
    char sub[256];
    const cJSON *it;

    cJSON_ArrayForEach(it, obj) {
        const struct config_key *k = keys;
        config_join(sub, sizeof(sub), path, it->string);
        while (k->name && strcmp(k->name, it->string) != 0)
            k++;
        if (!k->name)
            errlist_at(c->el, c->file, sub, "unknown key");
        /* cJSON keeps duplicates and lookups see the first: say so rather than guess. */
        for (const cJSON *prev = obj->child; prev != it; prev = prev->next)
            if (strcmp(prev->string, it->string) == 0) {
                errlist_at(c->el, c->file, sub, "duplicate key");
                break;
            }
    }
    for (const struct config_key *k = keys; k->name; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, k->name);
        config_join(sub, sizeof(sub), path, k->name);
        if (!v) {
            if (k->required)
                errlist_at(c->el, c->file, sub, "required key is missing");
            continue;
        }
        config_parse_key(c, v, sub, k);
    }
}

static void config_defaults(struct config_ctx *c, const struct config_key *keys) {
    for (const struct config_key *k = keys; k->name; k++) {
        if (k->type == CONFIG_T_OBJECT)
            config_defaults(c, k->children);
        else
            config_set_default(c, k);
    }
}

/*
 * fileio_read with errno set to the reason, for the messages that name it
 * ("cannot read PATH: Is a directory"): fileio_read refuses what is not a
 * regular file without an errno of its own, and a file over max is EFBIG.
 */
static int config_read_bounded(const char *path, size_t max, char **out, size_t *len) {
    int rc = fileio_read(path, max, 0, out, len, NULL, 0);
    int e = errno;
    struct stat st;

    if (rc == GHE_TOOBIG)
        e = EFBIG;
    else if (rc == GHE_IO && stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
    errno = e;
    return rc;
}

int config_read_secret(const char *path, char **out, size_t *len) {
    char *data = NULL;
    size_t n = 0;
    int rc = config_read_bounded(path, CONFIG_SECRET_MAX, &data, &n);

    *out = NULL;
    if (rc)
        return rc == GHE_NOMEM ? GHE_NOMEM : GHE_IO;
    if (n > 0 && data[n - 1] == '\n')
        n--;
    if (n > 0 && data[n - 1] == '\r')
        n--;
    data[n] = '\0';
    if (n == 0) {
        free(data);
        return GHE_INVAL;
    }
    *out = data;
    if (len)
        *len = n;
    return 0;
}

static void config_check_listen(struct config_ctx *c) {
    struct config *cfg = c->cfg;
    const char *colon = cfg->listen ? strrchr(cfg->listen, ':') : NULL;
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;

    if (!colon || colon == cfg->listen || !end || *end || colon[1] == '\0' || port < 0 ||
        port > 65535) {
        errlist_at(c->el, c->file, ".listen", "\"%s\" is not HOST:PORT",
                   cfg->listen ? cfg->listen : "");
        return;
    }
    cfg->listen_host = strndup(cfg->listen, (size_t)(colon - cfg->listen));
    cfg->listen_port = (int)port;
}

/* Files the config names must exist and be readable; secrets must be non-empty. */
static void config_check_files(struct config_ctx *c) {
    struct config *cfg = c->cfg;
    const char *secrets[SIGNATURE_MAX_KEYS];
    size_t lens[SIGNATURE_MAX_KEYS];
    size_t nsec = 0;

    for (size_t i = 0; i < cfg->secret_count; i++) {
        char *s = NULL;
        size_t len = 0;
        char at[64];
        int rc = config_read_secret(cfg->secret_files[i], &s, &len);
        snprintf(at, sizeof(at), ".github.secret_files[%zu]", i);
        if (rc == GHE_INVAL)
            errlist_at(c->el, c->file, at, "%s is empty", cfg->secret_files[i]);
        else if (rc)
            errlist_at(c->el, c->file, at, "cannot read %s: %s", cfg->secret_files[i],
                       strerror(errno));
        else {
            secrets[nsec] = s;
            lens[nsec++] = len;
        }
    }
    if (nsec == cfg->secret_count && nsec > 0) {
        cfg->keyring = signature_keyring_new(secrets, lens, nsec);
        if (!cfg->keyring)
            errlist_at(c->el, c->file, ".github.secret_files", "cannot prepare HMAC keys");
    }
    for (size_t i = 0; i < nsec; i++) {
        explicit_bzero((char *)secrets[i], lens[i]);
        free((char *)secrets[i]);
    }
    if (cfg->trigger_token_file) {
        int rc = config_read_secret(cfg->trigger_token_file, &cfg->trigger_token, NULL);
        if (rc == GHE_INVAL)
            errlist_at(c->el, c->file, ".trigger.token_file", "%s is empty",
                       cfg->trigger_token_file);
        else if (rc)
            errlist_at(c->el, c->file, ".trigger.token_file", "cannot read %s: %s",
                       cfg->trigger_token_file, strerror(errno));
    }
    const struct {
        const char *key;
        const char *path;
    } files[] = {{".tls.cert_file", cfg->tls_cert_file},
                 {".tls.key_file", cfg->tls_key_file},
                 {".kubernetes.ca_file", cfg->kube_ca_file},
                 {".kubernetes.token_file", cfg->kube_token_file}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (files[i].path && access(files[i].path, R_OK) != 0)
            errlist_at(c->el, c->file, files[i].key, "cannot read %s: %s", files[i].path,
                       strerror(errno));
}

static void config_check_kube(struct config_ctx *c) {
    struct config *cfg = c->cfg;

    switch (cfg->kube_mode) {
    case CONFIG_KUBE_URL:
        if (!cfg->kube_url)
            errlist_at(c->el, c->file, ".kubernetes.url", "required when mode is \"url\"");
        else if (strncmp(cfg->kube_url, "http://", 7) != 0 &&
                 strncmp(cfg->kube_url, "https://", 8) != 0)
            errlist_at(c->el, c->file, ".kubernetes.url",
                       "\"%s\" is not an http:// or https:// URL", cfg->kube_url);
        break;
    case CONFIG_KUBE_LOCAL:
        if (!cfg->kube_local_dir)
            errlist_at(c->el, c->file, ".kubernetes.local_dir", "required when mode is \"local\"");
        break;
    default:
        break;
    }
    if ((cfg->kube_mode == CONFIG_KUBE_URL || cfg->kube_mode == CONFIG_KUBE_IN_CLUSTER) &&
        !cfg->spool_dir)
        errlist_at(c->el, c->file, ".spool_dir", "required when kubernetes.mode is \"%s\"",
                   config_kube_mode_name(cfg->kube_mode));
    if (cfg->concurrency_group) {
        char why[256];
        if (admission_group_check(cfg->concurrency_group, why, sizeof(why)) != 0)
            errlist_at(c->el, c->file, ".concurrency.group", "%s", why);
        /* Outside the API modes there is no cluster to hold a queue: it is off (README). */
    }
    if (cfg->kube_mode != CONFIG_KUBE_IN_CLUSTER && !cfg->kube_namespace)
        cfg->kube_namespace = strdup("tekton-pipelines");
}

/*
 * github.report's credentials: an App (app_id with private_key_file) or a token file,
 * exactly one, and readable. Checked with the other files (not by `gpuhook render`).
 */
static void config_check_report_credentials(struct config_ctx *c) {
    struct config *cfg = c->cfg;

    if (cfg->report_app_id > 0 && cfg->report_token_file)
        errlist_at(c->el, c->file, ".github.report",
                   "app_id and token_file are both set: use an App or a token, not both");
    if (cfg->report_app_id > 0 && !cfg->report_private_key_file)
        errlist_at(c->el, c->file, ".github.report.private_key_file", "required with app_id");
    if (cfg->report_private_key_file && cfg->report_app_id <= 0)
        errlist_at(c->el, c->file, ".github.report.app_id", "required with private_key_file");
    if (CONFIG_REPORTS(cfg) && cfg->kube_mode != CONFIG_KUBE_URL &&
        cfg->kube_mode != CONFIG_KUBE_IN_CLUSTER)
        errlist_at(c->el, c->file, ".github.report",
                   "needs kubernetes.mode \"url\" or \"in-cluster\" (it follows the runs there)");
    const char *const files[][2] = {{".github.report.private_key_file", cfg->report_private_key_file},
                                    {".github.report.token_file", cfg->report_token_file},
                                    {".github.report.ca_file", cfg->report_ca_file}};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
        if (files[i][1] && access(files[i][1], R_OK) != 0)
            errlist_at(c->el, c->file, files[i][0], "cannot read %s: %s", files[i][1],
                       strerror(errno));
}

/* github.report: a usable api_url, and a mode that follows the runs. */
static void config_check_report(struct config_ctx *c) {
    struct config *cfg = c->cfg;
    const char *u = cfg->report_api_url;

    if (u && strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)
        errlist_at(c->el, c->file, ".github.report.api_url",
                   "\"%s\" is not an http:// or https:// URL", u);
}

/* Whether two values of key k differ; only keys with a field (not objects, not selection). */
static bool config_key_differs(const struct config_key *k, const struct config *a,
                               const struct config *b) {
    const char *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
    switch (k->type) {
    case CONFIG_T_STRING:
    case CONFIG_T_PATH: {
        const char *sa = *(char *const *)pa, *sb = *(char *const *)pb;
        return (sa == NULL) != (sb == NULL) || (sa && strcmp(sa, sb) != 0);
    }
    case CONFIG_T_INT:
        return *(const long *)pa != *(const long *)pb;
    case CONFIG_T_INT32:
    case CONFIG_T_ENUM:
        return *(const int *)pa != *(const int *)pb;
    case CONFIG_T_BOOL:
        return *(const bool *)pa != *(const bool *)pb;
    case CONFIG_T_STRING_LIST:
    case CONFIG_T_PATH_LIST: {
        size_t na = *(const size_t *)((const char *)a + k->offset_count);
        size_t nb = *(const size_t *)((const char *)b + k->offset_count);
        char *const *la = *(char **const *)pa, *const *lb = *(char **const *)pb;
        if (na != nb)
            return true;
        for (size_t i = 0; i < na; i++)
            if (strcmp(la[i], lb[i]) != 0)
                return true;
        return false;
    }
    default:
        return false;
    }
}

static void config_walk_restart(const struct config_key *keys, const char *prefix,
                                const struct config *a, const struct config *b,
                                struct errlist *changed, size_t *n) {
    char path[256];
    for (const struct config_key *k = keys; k->name; k++) {
        config_join(path, sizeof(path), prefix, k->name);
        if (k->reload == CONFIG_NESTED)
            config_walk_restart(k->children, path, a, b, changed, n);
        else if (k->reload == CONFIG_RESTART && config_key_differs(k, a, b)) {
            errlist_add(changed, "%s", path);
            (*n)++;
        }
    }
}

size_t config_restart_changes(const struct config *old, const struct config *cfg,
                              struct errlist *changed) {
    size_t n = 0;
    config_walk_restart(config_top_keys, "", old, cfg, changed, &n);
    return n;
}

/* Finds the index-th leaf key in table order; *seen counts the leaves passed. */
static const struct config_key *config_leaf(const struct config_key *keys, const char *prefix,
                                            size_t index, size_t *seen, char *path, size_t n) {
    for (const struct config_key *k = keys; k->name; k++) {
        char sub[256];
        config_join(sub, sizeof(sub), prefix, k->name);
        if (k->type == CONFIG_T_OBJECT) {
            const struct config_key *f = config_leaf(k->children, sub, index, seen, path, n);
            if (f)
                return f;
        } else if ((*seen)++ == index) {
            snprintf(path, n, "%s", sub);
            return k;
        }
    }
    return NULL;
}

const char *config_key_at(size_t index, int *reload) {
    static _Thread_local char path[256];
    size_t seen = 0;
    const struct config_key *k = config_leaf(config_top_keys, "", index, &seen, path, sizeof(path));
    if (!k)
        return NULL;
    if (reload)
        *reload = k->reload;
    return path;
}

bool config_gpu_queues(const struct config *cfg) {
    return select_rules_gpu_fit(cfg->rules)->on_insufficient == GPU_FIT_QUEUE;
}

const char *config_kube_mode_name(int mode) {
    return mode >= 0 && mode <= CONFIG_KUBE_DRY_RUN ? config_modes[mode] : "unknown";
}

static int config_load_ctx(const char *path, struct config **out, struct errlist *el,
                           bool offline) {
    struct config_ctx c = {0};
    char *text = NULL, *pathcopy = NULL;
    size_t len = 0;
    cJSON *root = NULL;
    size_t before = el->count;
    int rc;

    *out = NULL;
    c.file = path;
    c.el = el;
    rc = config_read_bounded(path, CONFIG_FILE_MAX, &text, &len);
    if (rc) {
        errlist_add(el, "%s: cannot read: %s", path,
                    rc == GHE_TOOBIG ? "larger than 1 MiB" : strerror(errno));
        return GHE_IO;
    }
    root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        int line = 1;
        for (const char *p = text; at && p < at && *p; p++)
            line += *p == '\n';
        errlist_add(el, "%s: line %d: not a JSON object", path, line);
        rc = GHE_INVAL;
        goto out;
    }
    c.cfg = calloc(1, sizeof(*c.cfg));
    pathcopy = strdup(path);
    if (!c.cfg || !pathcopy) {
        rc = GHE_NOMEM;
        goto out;
    }
    c.cfg->refs = 1;
    c.cfg->path = strdup(path);
    c.dir = strdup(dirname(pathcopy));
    config_defaults(&c, config_top_keys);
    config_parse_object(&c, root, "", config_top_keys);
    /* Fill gaps left by the generic pass (the kube mode decides local_dir's default). */
    if (c.cfg->kube_mode == CONFIG_KUBE_LOCAL && !c.cfg->kube_local_dir)
        c.cfg->kube_local_dir = config_resolve(&c, "../var/pipelineruns");
    config_check_listen(&c);
    config_check_kube(&c);
    config_check_report(&c);
    if (!offline) {
        config_check_files(&c);
        config_check_report_credentials(&c);
    }
    if (select_rules_parse(c.selection, path, &c.cfg->rules, el) != 0 && el->count == before)
        errlist_at(el, path, ".selection", "invalid");
    if (c.cfg->template_path && c.cfg->bindings_path)
        template_load(c.cfg->template_path, c.cfg->bindings_path, &c.cfg->tmpl, el);
    rc = el->count == before ? 0 : GHE_INVAL;
out:
    cJSON_Delete(root);
    free(text);
    free(pathcopy);
    free(c.dir);
    if (rc == 0)
        *out = c.cfg;
    else if (c.cfg)
        config_unref(c.cfg);
    return rc;
}

int config_load(const char *path, struct config **out, struct errlist *el) {
    return config_load_ctx(path, out, el, false);
}

int config_load_offline(const char *path, struct config **out, struct errlist *el) {
    return config_load_ctx(path, out, el, true);
}

struct config *config_ref(struct config *cfg) {
    if (cfg)
        __atomic_add_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL);
    return cfg;
}

static void config_free_list(char **items, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(items[i]);
    free(items);
}

void config_unref(struct config *cfg) {
    if (!cfg || __atomic_sub_fetch(&cfg->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(cfg->path);
    free(cfg->listen);
    free(cfg->listen_host);
    free(cfg->tls_cert_file);
    free(cfg->tls_key_file);
    config_free_list(cfg->secret_files, cfg->secret_count);
    signature_keyring_free(cfg->keyring);
    config_free_list(cfg->events, cfg->event_count);
    free(cfg->trigger_token_file);
    if (cfg->trigger_token) {
        explicit_bzero(cfg->trigger_token, strlen(cfg->trigger_token));
        free(cfg->trigger_token);
    }
    free(cfg->trigger_default_repo_url);
    free(cfg->kube_url);
    free(cfg->kube_namespace);
    free(cfg->kube_token_file);
    free(cfg->kube_ca_file);
    free(cfg->kube_local_dir);
    free(cfg->kube_proxy);
    free(cfg->template_path);
    free(cfg->bindings_path);
    template_free(cfg->tmpl);
    select_rules_free(cfg->rules);
    free(cfg->spool_dir);
    free(cfg->cluster_gpu_service);
    free(cfg->cluster_gpu_port_name);
    free(cfg->concurrency_group);
    free(cfg->concurrency_lease_name);
    free(cfg->report_api_url);
    free(cfg->report_private_key_file);
    free(cfg->report_token_file);
    free(cfg->report_ca_file);
    free(cfg->report_details_url);
    free(cfg);
}
