/*
 * A test driver for ghapi, ghauth and ghsummary: reads a script of updates
 * (one JSON object a line), runs them through the real client against
 * api_url, and prints one JSON line per outcome on stdout. Logs go to stderr
 * at the level given. Used by tests/integration/test_github_client.py.
 *
 *   ghclient --api-url URL (--app-id N --key PEM | --token-file F) [--ca-file F]
 *            [--backoff-ms N] [--max-attempts N] [--queue-max N] [--conns N]
 *            [--log-level L] < script
 *
 * Script lines:
 *   {"op": "submit", "kind": "check"|"status", "run", "owner", "repo", "head_sha",
 *    "installation_id", "check_run_id", "name", "details_url", "external_id",
 *    "status", "conclusion", "state", "description", "title", "summary",
 *    "started_ms", "completed_ms",
 *    "condition": {"status", "reason"},   (maps to status/conclusion/state)
 *    "render": {"variant", "rule", "reason", "node", "pipelinerun", "failing_task",
 *               "step_summary", "tasks": [{"name", "outcome", "duration_ms"}]}}
 *   {"op": "wait", "run": R}   waits for every update of R submitted so far
 *   {"op": "wait_all"}   {"op": "sleep", "ms": N}
 * Output lines: {"event": "result", ...}, {"event": "submit_error", ...}, and last
 * {"event": "stats", ...}.
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpuhook/ghapi.h"
#include "gpuhook/ghauth.h"
#include "gpuhook/ghsummary.h"
#include "gpuhook/logger.h"

#define RUNS_MAX 256

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static struct {
    char name[128];
    int submitted, finished;
} runs[RUNS_MAX];
static int nruns;

static int run_index(const char *name) {
    for (int i = 0; i < nruns; i++)
        if (strcmp(runs[i].name, name) == 0)
            return i;
    if (nruns == RUNS_MAX)
        return -1;
    snprintf(runs[nruns].name, sizeof(runs[nruns].name), "%s", name);
    return nruns++;
}

static void on_done(void *arg, const struct ghapi_result *r) {
    static const char *names[] = {"done", "gave_up", "superseded", "stopped"};
    (void)arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "result");
    cJSON_AddStringToObject(o, "run", r->run);
    cJSON_AddStringToObject(o, "what", r->what);
    cJSON_AddStringToObject(o, "outcome", names[r->outcome]);
    cJSON_AddNumberToObject(o, "check_run_id", (double)r->check_run_id);
    cJSON_AddNumberToObject(o, "http_status", r->http_status);
    cJSON_AddNumberToObject(o, "attempts", r->attempts);
    char *s = cJSON_PrintUnformatted(o);
    pthread_mutex_lock(&lock);
    printf("%s\n", s);
    fflush(stdout);
    int i = run_index(r->run);
    if (i >= 0)
        runs[i].finished++;
    pthread_cond_broadcast(&cond);
    pthread_mutex_unlock(&lock);
    free(s);
    cJSON_Delete(o);
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static long long num(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsNumber(v) ? (long long)v->valuedouble : 0;
}

static void wait_for(const char *run) {
    pthread_mutex_lock(&lock);
    for (;;) {
        int pending = 0;
        for (int i = 0; i < nruns; i++)
            if ((!run || strcmp(runs[i].name, run) == 0) && runs[i].finished < runs[i].submitted)
                pending = 1;
        if (!pending)
            break;
        pthread_cond_wait(&cond, &lock);
    }
    pthread_mutex_unlock(&lock);
}

static void submit(struct ghapi *g, const cJSON *line) {
    struct ghapi_update u = {
        .kind = str(line, "kind") && strcmp(str(line, "kind"), "status") == 0 ? GHAPI_COMMIT_STATUS
                                                                              : GHAPI_CHECK_RUN,
        .run = str(line, "run"),
        .owner = str(line, "owner"),
        .repo = str(line, "repo"),
        .head_sha = str(line, "head_sha"),
        .installation_id = num(line, "installation_id"),
        .check_run_id = num(line, "check_run_id"),
        .name = str(line, "name"),
        .details_url = str(line, "details_url"),
        .external_id = str(line, "external_id"),
        .status = str(line, "status"),
        .conclusion = str(line, "conclusion"),
        .state = str(line, "state"),
        .description = str(line, "description"),
        .title = str(line, "title"),
        .summary = str(line, "summary"),
        .started_ms = num(line, "started_ms"),
        .completed_ms = num(line, "completed_ms"),
    };
    const cJSON *cond_ = cJSON_GetObjectItemCaseSensitive(line, "condition");
    if (cond_) {
        struct ghsummary_outcome o;
        ghsummary_map(str(cond_, "status"), str(cond_, "reason"), &o);
        u.status = o.check_status;
        u.conclusion = o.check_conclusion;
        u.state = o.commit_state;
    }
    char *title = NULL, *summary = NULL;
    const cJSON *rd = cJSON_GetObjectItemCaseSensitive(line, "render");
    struct ghsummary_task tasks[32];
    if (rd) {
        const cJSON *ts = cJSON_GetObjectItemCaseSensitive(rd, "tasks"), *t;
        size_t n = 0;
        cJSON_ArrayForEach(t, ts) {
            if (n == 32)
                break;
            const cJSON *d = cJSON_GetObjectItemCaseSensitive(t, "duration_ms");
            tasks[n++] =
                (struct ghsummary_task){str(t, "name"), str(t, "outcome"),
                                        cJSON_IsNumber(d) ? (long long)d->valuedouble : -1};
        }
        struct ghsummary_run r = {.pipelinerun = str(rd, "pipelinerun"),
                                  .variant = str(rd, "variant"),
                                  .rule = str(rd, "rule"),
                                  .reason = str(rd, "reason"),
                                  .node = str(rd, "node"),
                                  .condition_reason = cond_ ? str(cond_, "reason") : NULL,
                                  .started_ms = u.started_ms,
                                  .finished_ms = u.completed_ms,
                                  .tasks = tasks,
                                  .ntasks = n,
                                  .failing_task = str(rd, "failing_task"),
                                  .step_summary = str(rd, "step_summary")};
        if (ghsummary_render(&r, &title, &summary) == 0) {
            u.title = title;
            u.summary = summary;
        }
    }
    char err[256];
    pthread_mutex_lock(&lock);
    int i = u.run ? run_index(u.run) : -1;
    if (i >= 0)
        runs[i].submitted++;
    pthread_mutex_unlock(&lock);
    int rc = ghapi_submit(g, &u, err, sizeof(err));
    if (rc) {
        pthread_mutex_lock(&lock);
        if (i >= 0)
            runs[i].submitted--;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "submit_error");
        cJSON_AddStringToObject(o, "run", u.run ? u.run : "");
        cJSON_AddStringToObject(o, "error", err);
        char *s = cJSON_PrintUnformatted(o);
        printf("%s\n", s);
        fflush(stdout);
        free(s);
        cJSON_Delete(o);
        pthread_mutex_unlock(&lock);
    }
    free(title);
    free(summary);
}

int main(int argc, char **argv) {
    struct ghauth_config ac = {0};
    struct ghapi_config gc = {0};
    const char *level = "info";
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--api-url") == 0)
            ac.api_url = gc.api_url = v;
        else if (strcmp(k, "--app-id") == 0)
            ac.app_id = atoll(v);
        else if (strcmp(k, "--key") == 0)
            ac.private_key_file = v;
        else if (strcmp(k, "--token-file") == 0)
            ac.token_file = v;
        else if (strcmp(k, "--ca-file") == 0)
            ac.ca_file = gc.ca_file = v;
        else if (strcmp(k, "--backoff-ms") == 0)
            gc.backoff_base_ms = atol(v);
        else if (strcmp(k, "--max-attempts") == 0)
            gc.max_attempts = atoi(v);
        else if (strcmp(k, "--conns") == 0)
            gc.conns = atoi(v);
        else if (strcmp(k, "--queue-max") == 0)
            gc.queue_max = (size_t)atol(v);
        else if (strcmp(k, "--log-level") == 0)
            level = v;
        else {
            fprintf(stderr, "ghclient: unknown option %s\n", k);
            return 2;
        }
    }
    logger_set_level(logger_level_parse(level));
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char err[512];
    struct ghauth *auth = NULL;
    struct ghapi *g = NULL;
    if (ghauth_new(&ac, &auth, err, sizeof(err)) != 0) {
        fprintf(stderr, "ghclient: %s\n", err);
        return 1;
    }
    gc.auth = auth;
    gc.done = on_done;
    gc.backoff_max_ms = 4000;
    if (ghapi_new(&gc, &g, err, sizeof(err)) != 0) {
        fprintf(stderr, "ghclient: %s\n", err);
        ghauth_free(auth);
        return 1;
    }
    char line[256 * 1024];
    while (fgets(line, sizeof(line), stdin)) {
        cJSON *o = cJSON_Parse(line);
        const char *op = str(o, "op");
        if (!op) {
            cJSON_Delete(o);
            continue;
        }
        if (strcmp(op, "submit") == 0)
            submit(g, o);
        else if (strcmp(op, "wait") == 0)
            wait_for(str(o, "run"));
        else if (strcmp(op, "wait_all") == 0)
            wait_for(NULL);
        else if (strcmp(op, "sleep") == 0)
            usleep((useconds_t)num(o, "ms") * 1000);
        cJSON_Delete(o);
    }
    wait_for(NULL);
    struct ghapi_stats st;
    ghapi_stats(g, &st);
    printf("{\"event\":\"stats\",\"submitted\":%lu,\"done\":%lu,\"requests\":%lu,\"retried\":%lu,"
           "\"rate_limited\":%lu,\"gave_up\":%lu,\"superseded\":%lu,\"queue_full\":%lu,"
           "\"token_fetches\":%lu}\n",
           st.submitted, st.done, st.requests, st.retried, st.rate_limited, st.gave_up,
           st.superseded, st.queue_full, ghauth_fetch_count(auth));
    ghapi_free(g);
    ghauth_free(auth);
    curl_global_cleanup();
    return 0;
}
