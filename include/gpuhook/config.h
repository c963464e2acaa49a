/*
 * The configuration: one JSON file, read with cJSON, described by a table of
 * keys (type, default, bounds) and validated in one pass that reports every
 * error at once as "FILE: .json.path: reason". Relative paths resolve against
 * the config file's folder. Loading also reads the secrets and compiles the
 * selection rules and the template, so requests only execute. A loaded config
 * is immutable and reference-counted, so SIGHUP can swap it under requests
 * in flight.
 */
#ifndef GPUHOOK_CONFIG_H
#define GPUHOOK_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/error.h" /* the GHE_ codes config_load returns, struct errlist */
#include "gpuhook/gpu.h"   /* struct gpu_options is held by value */

/* Named only: their modules' headers are for the code that uses them. */
struct select_rules;
struct signature_keyring;
struct template;

enum config_kube_mode {
    CONFIG_KUBE_LOCAL = 0,
    CONFIG_KUBE_URL = 1,
    CONFIG_KUBE_IN_CLUSTER = 2,
    CONFIG_KUBE_DRY_RUN = 3
};

struct config {
    int refs;
    char *path;
    char *listen;      /* host:port as written */
    char *listen_host; /* parsed */
    int listen_port;
    int log_level;
    char *tls_cert_file;
    char *tls_key_file;
    long max_body_bytes;
    long unverified_body_budget_bytes; /* all unverified bodies together */
    long max_connections;
    long header_timeout_seconds;     /* for the whole request line and header block */
    long min_body_bytes_per_second;  /* average, enforced after header_timeout_seconds */
    long shutdown_grace_seconds;

    char **secret_files;
    size_t secret_count;
    struct signature_keyring *keyring;
    char **events;
    size_t event_count;

    char *trigger_token_file;
    char *trigger_token; /* file contents, trailing newline trimmed */
    char *trigger_default_repo_url;

    int kube_mode;
    char *kube_url;
    char *kube_namespace;
    char *kube_token_file;
    char *kube_ca_file;
    char *kube_local_dir;
    char *kube_proxy;
    long kube_timeout_seconds;

    char *template_path;
    char *bindings_path;
    struct template *tmpl;
    struct select_rules *rules;

    char *spool_dir;
    long spool_max_age_hours;
    long spool_retry_after_max_seconds; /* the most a Retry-After delays a spooled run */

    struct gpu_options gpu;

    /* cluster_gpu: the agents' view (clusterview.c); off without a service */
    char *cluster_gpu_service;
    char *cluster_gpu_port_name;
    long cluster_gpu_poll_seconds;
    int cluster_gpu_stale_after;
    bool cluster_gpu_nodes;
    bool cluster_gpu_placement;
    /* concurrency (issue 18): the admission queue; group NULL means not configured. */
    char *concurrency_group; /* a template over the event: {repo_full_name}/{branch} */
    bool concurrency_cancel_pending;
    bool concurrency_cancel_running;
    long concurrency_max_running_lite; /* 0: no cap */
    long concurrency_max_running_original;
    char *concurrency_lease_name;
    long concurrency_lease_duration_seconds;

    /* github.report (issue 20): check runs (App) or commit statuses (token). */
    char *report_api_url;
    long report_app_id; /* > 0: App mode */
    char *report_private_key_file;
    long report_installation_id; /* when a run carries none */
    char *report_token_file;     /* token mode */
    char *report_ca_file;
    char *report_details_url; /* template: {namespace}, {name} */
    long report_queue_max;
    long report_max_attempts;
};

/* True when github.report asks for reporting (an App or a token). */
#define CONFIG_REPORTS(cfg) ((cfg)->report_app_id > 0 || (cfg)->report_token_file != NULL)

/*
 * Loads, validates and compiles path. Returns 0 and sets *out (release with
 * config_unref), or GHE_INVAL / GHE_IO with every problem in el. Secrets are
 * named in messages, never printed.
 */
int config_load(const char *path, struct config **out, struct errlist *el);

/* Like config_load, but secrets are neither required nor read (for `gpuhook render`). */
int config_load_offline(const char *path, struct config **out, struct errlist *el);

/* Takes and drops references; the last unref frees. Thread-safe. */
struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/*
 * Whether SIGHUP applies a key: every key of config.c's table says so, next to
 * its validator, and why in a comment. Objects are CONFIG_NESTED (their keys
 * decide); 0 means "not said", which the table's compile and test_config refuse.
 */
enum config_reload { CONFIG_LIVE = 1, CONFIG_RESTART = 2, CONFIG_NESTED = 3 };

/*
 * Adds to changed the JSON path (".tls.key_file") of every restart-only key
 * whose value differs between old and cfg, in table order, and returns how
 * many. SIGHUP swaps in cfg anyway; these keep their old value until a restart.
 */
size_t config_restart_changes(const struct config *old, const struct config *cfg,
                              struct errlist *changed);

/*
 * The index-th key of the table that holds a value (objects are walked, not
 * counted), as its JSON path (".kubernetes.proxy", a thread-local copy), and
 * its enum config_reload in *reload. NULL past the last one.
 */
const char *config_key_at(size_t index, int *reload);

/* Returns "local", "url", "in-cluster" or "dry-run". */
const char *config_kube_mode_name(int mode);

/*
 * True when selection.gpu_fit.on_insufficient is "queue" (the default): the API modes then
 * build the watcher and the admission scheduler even without a concurrency block.
 */
bool config_gpu_queues(const struct config *cfg);

/* Reads a secret file: contents with one trailing newline (\n or \r\n) trimmed;
 * empty counts as an error. Returns 0 and sets *out (caller frees) or an error. */
int config_read_secret(const char *path, char **out, size_t *len);

#endif
