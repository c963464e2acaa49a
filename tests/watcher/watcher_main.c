/*
 * A test driver for the shared watcher (server/watcher.c): runs one watcher against
 * an API server and prints one JSON line per event, per change of leadership and per
 * patch answer on stdout, each with "t" (wall clock, ms). Logs go to stderr. Used by
 * tests/integration/test_watcher.py.
 *
 *   gpuhook_watcher (--url URL | --in-cluster 1) [--token-file F] [--ca-file F] [--namespace NS]
 *                   [--selector S] [--watch-timeout S] [--lease NAME]
 *                   [--duration-ms N] [--deadline-ms N] [--retry-ms N]
 *                   [--identity ID] [--log-level L]
 *
 * --in-cluster 1 takes the API server, token, CA and namespace from the service account
 * and KUBERNETES_SERVICE_HOST/PORT, as gpuhook does in a pod.
 * Stdin lines: "PATCH NAME JSON" (a merge patch of the PipelineRun NAME).
 * Output lines:
 *   {"t", "started": true, "identity"}
 *   {"t", "type": "ADDED"|"MODIFIED"|"DELETED", "name", "rv", "reason"}   (reason: the
 *       Succeeded condition's, or null)
 *   {"t", "type": "RESYNCED", "count"}
 *   {"t", "leader": true|false, "identity"}
 *   {"t", "patch": NAME, "status", "rv", "reason"}   (the answer's resourceVersion, or
 *       its Status reason)
 *   {"t", "stopped": true, "lists", "watches", "events", "relists_410", "transitions"}
 *       after SIGTERM or SIGINT: the watcher is freed (the Lease released) first; the
 *       counters are watcher_stats' from just before.
 */
#include <cjson/cJSON.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "gpuhook/clock.h"
#include "gpuhook/config.h"
#include "gpuhook/error.h"
#include "gpuhook/kube.h"
#include "gpuhook/logger.h"
#include "gpuhook/watcher.h"

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t store_count; /* objects seen minus deleted: the watcher thread only */

/* Prints o as one line and frees it. */
static void out(cJSON *o) {
    cJSON_AddNumberToObject(o, "t", (double)clock_wall_ms());
    char *s = cJSON_PrintUnformatted(o);
    pthread_mutex_lock(&out_lock);
    if (s)
        printf("%s\n", s);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    free(s);
    cJSON_Delete(o);
}

static const char *str2(const cJSON *o, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, a), b);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *succeeded_reason(const cJSON *run) {
    const cJSON *conds = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(run, "status"), "conditions");
    const cJSON *c;
    cJSON_ArrayForEach(c, conds) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(c, "type");
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(c, "reason");
        if (cJSON_IsString(t) && strcmp(t->valuestring, "Succeeded") == 0 && cJSON_IsString(r))
            return r->valuestring;
    }
    return NULL;
}

static void on_event(void *arg, enum watcher_event ev, const cJSON *obj) {
    (void)arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", watcher_event_name(ev));
    if (ev == WATCHER_ADDED)
        store_count++;
    else if (ev == WATCHER_DELETED && store_count > 0)
        store_count--;
    if (ev == WATCHER_RESYNCED) {
        cJSON_AddNumberToObject(o, "count", (double)store_count);
    } else {
        const char *name = str2(obj, "metadata", "name");
        const char *rv = str2(obj, "metadata", "resourceVersion");
        const char *reason = succeeded_reason(obj);
        cJSON_AddStringToObject(o, "name", name ? name : "");
        cJSON_AddStringToObject(o, "rv", rv ? rv : "");
        if (reason)
            cJSON_AddStringToObject(o, "reason", reason);
        else
            cJSON_AddNullToObject(o, "reason");
    }
    out(o);
}

static void on_leadership(void *arg, bool leading) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "leader", leading);
    cJSON_AddStringToObject(o, "identity", watcher_identity(arg));
    out(o);
}

static void on_patched(void *arg, int status, const char *body, size_t len) {
    char *name = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON *ans = cJSON_ParseWithLength(body, len);
    const char *rv = str2(ans, "metadata", "resourceVersion");
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(ans, "reason");
    cJSON_AddStringToObject(o, "patch", name);
    cJSON_AddNumberToObject(o, "status", status);
    if (rv)
        cJSON_AddStringToObject(o, "rv", rv);
    if (cJSON_IsString(reason))
        cJSON_AddStringToObject(o, "reason", reason->valuestring);
    cJSON_Delete(ans);
    free(name);
    out(o);
}

/* "PATCH NAME JSON": queues the patch; anything else is reported and ignored. */
static void command(struct watcher *w, char *line) {
    char *nl = strchr(line, '\n');
    if (nl)
        *nl = '\0';
    if (strncmp(line, "PATCH ", 6) != 0) {
        if (*line)
            fprintf(stderr, "watcher_main: unknown command (want PATCH NAME JSON)\n");
        return;
    }
    char *name = line + 6, *json = strchr(name, ' ');
    if (!json) {
        fprintf(stderr, "watcher_main: PATCH needs a name and a JSON body\n");
        return;
    }
    *json++ = '\0';
    char *copy = strdup(name);
    if (copy)
        watcher_patch(w, name, json, strlen(json), on_patched, copy);
}

static void usage(void) {
    fprintf(stderr,
            "usage: gpuhook_watcher (--url URL | --in-cluster 1) [--token-file F] [--ca-file F] "
            "[--namespace NS] [--selector S] [--watch-timeout S] [--lease NAME] "
            "[--duration-ms N] [--deadline-ms N] [--retry-ms N] [--identity ID] "
            "[--log-level L]\n");
    exit(2);
}

int main(int argc, char **argv) {
    struct config cfg;
    struct watcher_config wc = {0};
    const char *level = "info";
    memset(&cfg, 0, sizeof(cfg));
    cfg.kube_mode = CONFIG_KUBE_URL;
    cfg.kube_timeout_seconds = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--url"))
            cfg.kube_url = (char *)v;
        else if (!strcmp(a, "--in-cluster") && !strcmp(v, "1"))
            cfg.kube_mode = CONFIG_KUBE_IN_CLUSTER;
        else if (!strcmp(a, "--token-file"))
            cfg.kube_token_file = (char *)v;
        else if (!strcmp(a, "--ca-file"))
            cfg.kube_ca_file = (char *)v;
        else if (!strcmp(a, "--namespace"))
            cfg.kube_namespace = (char *)v;
        else if (!strcmp(a, "--selector"))
            wc.label_selector = v;
        else if (!strcmp(a, "--watch-timeout"))
            wc.watch_timeout_s = atol(v);
        else if (!strcmp(a, "--lease"))
            wc.lease_name = v;
        else if (!strcmp(a, "--duration-ms"))
            wc.lease_duration_ms = atol(v);
        else if (!strcmp(a, "--deadline-ms"))
            wc.renew_deadline_ms = atol(v);
        else if (!strcmp(a, "--retry-ms"))
            wc.retry_period_ms = atol(v);
        else if (!strcmp(a, "--identity"))
            wc.identity = v;
        else if (!strcmp(a, "--log-level"))
            level = v;
        else
            usage();
    }
    if (!cfg.kube_url && cfg.kube_mode != CONFIG_KUBE_IN_CLUSTER)
        usage();
    logger_set_level(logger_level_parse(level) < 0 ? LOGGER_INFO : logger_level_parse(level));

    /* Signals are read from a signalfd: block them before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);

    struct errlist el = {0};
    struct kube *k = NULL;
    if (sfd < 0 || kube_new(&cfg, &k, &el) != 0) {
        fprintf(stderr, "watcher_main: cannot build the API client\n");
        return 1;
    }
    struct watcher *w = NULL;
    char err[256] = "";
    if (watcher_new(k, &wc, &w, err, sizeof(err)) != 0) {
        fprintf(stderr, "watcher_main: %s\n", err);
        kube_free(k);
        return 2;
    }
    watcher_subscribe(w, on_event, on_leadership, w);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "started", 1);
    cJSON_AddStringToObject(o, "identity", watcher_identity(w));
    out(o);
    if (watcher_start(w) != 0) {
        fprintf(stderr, "watcher_main: cannot start the watcher\n");
        return 1;
    }

    /* stdin is read with read(2), not stdio: poll must see every line. */
    static char line[1 << 16];
    size_t have = 0;
    bool stdin_open = true;
    for (;;) {
        struct pollfd p[2] = {{.fd = sfd, .events = POLLIN},
                              {.fd = stdin_open ? 0 : -1, .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            break;
        if (!p[1].revents)
            continue;
        ssize_t n = read(0, line + have, sizeof(line) - 1 - have);
        if (n <= 0) {
            stdin_open = false;
            continue;
        }
        have += (size_t)n;
        line[have] = '\0';
        char *start = line, *nl;
        while ((nl = strchr(start, '\n'))) {
            *nl = '\0';
            command(w, start);
            start = nl + 1;
        }
        have -= (size_t)(start - line);
        memmove(line, start, have);
        if (have == sizeof(line) - 1)
            have = 0; /* a line too long for a command: dropped */
    }
    struct watcher_stats st;
    watcher_stats(w, &st);
    watcher_free(w);
    o = cJSON_CreateObject();
    cJSON_AddBoolToObject(o, "stopped", 1);
    cJSON_AddNumberToObject(o, "lists", (double)st.lists);
    cJSON_AddNumberToObject(o, "watches", (double)st.watches);
    cJSON_AddNumberToObject(o, "events", (double)st.events);
    cJSON_AddNumberToObject(o, "relists_410", (double)st.relists_410);
    cJSON_AddNumberToObject(o, "transitions", (double)st.transitions);
    out(o);
    kube_free(k);
    close(sfd);
    return 0;
}
