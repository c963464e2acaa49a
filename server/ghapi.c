/*
 * The GitHub reporting client. See include/gpuhook/ghapi.h.
 *
 * One thread owns the curl multi handle, every run's active update and every
 * request; ghapi_submit only touches the runs list and pending updates, under
 * the lock. Runs are kept after their updates are sent, so a later update
 * knows the check run id, up to GHAPI_RUNS_MAX idle runs.
 */
#include "gpuhook/ghapi.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/crypto.h>

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/error.h"
#include "gpuhook/ghauth.h"
#include "gpuhook/ghsummary.h"
#include "gpuhook/ids.h"
#include "gpuhook/logger.h"

#define GHAPI_RESPONSE_MAX (256 * 1024)
#define GHAPI_RUNS_MAX 4096
#define GHAPI_IDLE_POLL_MS 1000
/* GitHub: without Retry-After, wait at least a minute after a secondary limit. */
#define GHAPI_SECONDARY_WAIT_MS 60000
/* A rate limit can hold an update back this many times before it gives up. */
#define GHAPI_RATE_WAITS_MAX 50

struct ghjob {
    enum ghapi_kind kind;
    char *what;    /* status or state, for the result */
    cJSON *fields; /* the body, without head_sha (POST adds it) */
    char *external_id;
    char *name;
    long long check_run_id;
    int attempts;
    int rate_waits;
    bool token_retried;
    bool force_token;
    bool lookup; /* a create whose answer was lost: find it before sending again */
};

struct ghrun {
    struct ghrun *next;
    char *key, *owner, *repo, *sha;
    long long installation_id;
    long long check_run_id;
    struct ghjob *active;  /* loop thread only */
    struct ghjob *pending; /* under the lock */
    long long due_ms;      /* loop thread only */
    long long used_ms;
    bool in_flight;
    struct ghreq *req; /* the request in flight; loop thread only */
};

struct ghreq {
    struct ghapi *g;
    struct ghrun *run;
    CURL *curl;
    struct curl_slist *hdrs;
    char *body;
    struct buf resp;
    long long remaining; /* X-RateLimit-Remaining, -1 when absent */
    long long reset_s;   /* X-RateLimit-Reset */
    long long retry_after_s;
    bool is_lookup;
    bool is_create;
};

struct dead {
    struct dead *next;
    struct ghjob *job;
    char *key;
    long long check_run_id;
    enum ghapi_outcome outcome;
};

struct ghapi {
    struct ghauth *auth;
    char *api_url, *ca_file, *user_agent;
    size_t queue_max;
    int max_attempts, conns;
    long backoff_base_ms, backoff_max_ms, timeout_ms;
    ghapi_done_fn done;
    void *done_arg;
    CURLM *multi;
    pthread_t thread;
    bool started;
    int in_flight;           /* loop thread only */
    long long blocked_until; /* mono ms; loop thread only */

    pthread_mutex_t lock; /* guards what follows */
    bool stopping;
    struct ghrun *runs;
    size_t nruns, queued;
    struct dead *dead;
    struct ghapi_stats stats;
};

static char *ghapi_dup(const char *s) { return s ? strdup(s) : NULL; }

static void ghjob_free(struct ghjob *j) {
    if (!j)
        return;
    free(j->what);
    free(j->external_id);
    free(j->name);
    cJSON_Delete(j->fields);
    free(j);
}

static void ghapi_time(cJSON *o, const char *key, long long ms) {
    char t[32];
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&s, &tm))
        return;
    strftime(t, sizeof(t), "%Y-%m-%dT%H:%M:%SZ", &tm);
    cJSON_AddStringToObject(o, key, t);
}

static bool ghapi_oneof(const char *s, const char *const *set) {
    for (; s && *set; set++)
        if (strcmp(s, *set) == 0)
            return true;
    return false;
}

/* Checks an update and builds its job. Returns 0, GHE_INVAL or GHE_NOMEM. */
static int ghjob_build(const struct ghapi_update *u, bool app, struct ghjob **out, char *err,
                       size_t errlen) {
    static const char *const statuses[] = {"queued", "in_progress", "completed", NULL};
    static const char *const conclusions[] = {"success",         "failure", "neutral",
                                              "cancelled",       "skipped", "timed_out",
                                              "action_required", NULL};
    static const char *const states[] = {"pending", "success", "failure", "error", NULL};
    struct ghjob *j;

    if (!u->run || !*u->run || !u->owner || !*u->owner || !u->repo || !*u->repo || !u->head_sha ||
        !*u->head_sha || !u->name || !*u->name) {
        snprintf(err, errlen, "github update: run, owner, repo, head_sha and name are required");
        return GHE_INVAL;
    }
    if ((u->kind == GHAPI_CHECK_RUN) != app) {
        snprintf(err, errlen, "github update: %s need %s credentials",
                 app ? "commit statuses" : "check runs", app ? "token" : "GitHub App");
        return GHE_INVAL;
    }
    if (u->kind == GHAPI_CHECK_RUN) {
        if (!ghapi_oneof(u->status, statuses)) {
            snprintf(err, errlen, "github update: status must be queued, in_progress or completed");
            return GHE_INVAL;
        }
        if ((strcmp(u->status, "completed") == 0) != ghapi_oneof(u->conclusion, conclusions)) {
            snprintf(err, errlen, "github update: a conclusion goes with completed, and only then");
            return GHE_INVAL;
        }
        if (u->installation_id <= 0 || (!u->title != !u->summary)) {
            snprintf(err, errlen,
                     "github update: check runs need installation_id, and title "
                     "and summary together");
            return GHE_INVAL;
        }
    } else if (!ghapi_oneof(u->state, states)) {
        snprintf(err, errlen, "github update: state must be pending, success, failure or error");
        return GHE_INVAL;
    }
    if (!(j = calloc(1, sizeof(*j))))
        return GHE_NOMEM;
    j->kind = u->kind;
    j->check_run_id = u->check_run_id;
    j->what =
        strdup(u->kind == GHAPI_CHECK_RUN ? (u->conclusion ? u->conclusion : u->status) : u->state);
    j->name = strdup(u->name);
    j->external_id = ghapi_dup(u->external_id);
    cJSON *f = j->fields = cJSON_CreateObject();
    if (!f || !j->what || !j->name || (u->external_id && !j->external_id))
        goto nomem;
    if (u->kind == GHAPI_CHECK_RUN) {
        cJSON_AddStringToObject(f, "name", u->name);
        cJSON_AddStringToObject(f, "status", u->status);
        if (u->conclusion)
            cJSON_AddStringToObject(f, "conclusion", u->conclusion);
        if (u->details_url)
            cJSON_AddStringToObject(f, "details_url", u->details_url);
        if (u->external_id)
            cJSON_AddStringToObject(f, "external_id", u->external_id);
        ghapi_time(f, "started_at", u->started_ms);
        ghapi_time(f, "completed_at", u->completed_ms);
        if (u->title) {
            cJSON *o = cJSON_AddObjectToObject(f, "output");
            char title[256];
            ghsummary_clip(u->title, 200, title, sizeof(title));
            if (!o || !cJSON_AddStringToObject(o, "title", title))
                goto nomem;
            /* ghsummary_render keeps to GitHub's bound; a caller's own text is cut here. */
            char *s = strndup(u->summary, GHSUMMARY_MAX);
            if (!s)
                goto nomem;
            size_t n = strlen(s);
            while (n > 0 && n == GHSUMMARY_MAX && ((unsigned char)s[n - 1] & 0x80))
                s[--n] = '\0';
            bool ok = cJSON_AddStringToObject(o, "summary", s) != NULL;
            free(s);
            if (!ok)
                goto nomem;
        }
    } else {
        cJSON_AddStringToObject(f, "state", u->state);
        cJSON_AddStringToObject(f, "context", u->name);
        if (u->details_url)
            cJSON_AddStringToObject(f, "target_url", u->details_url);
        if (u->description) {
            char d[GHSUMMARY_DESCRIPTION_MAX * 4 + 4];
            ghsummary_clip(u->description, GHSUMMARY_DESCRIPTION_MAX, d, sizeof(d));
            cJSON_AddStringToObject(f, "description", d);
        }
    }
    *out = j;
    return 0;
nomem:
    ghjob_free(j);
    return GHE_NOMEM;
}

static void ghrun_free(struct ghrun *r) {
    ghjob_free(r->active);
    ghjob_free(r->pending);
    free(r->key);
    free(r->owner);
    free(r->repo);
    free(r->sha);
    free(r);
}

/* Queues a finished or superseded job for its callback; called with the lock held. */
static void ghapi_bury(struct ghapi *g, struct ghrun *r, struct ghjob *j, enum ghapi_outcome o) {
    struct dead *d = calloc(1, sizeof(*d));
    if (!d) {
        ghjob_free(j);
        return;
    }
    d->job = j;
    d->key = strdup(r->key);
    d->check_run_id = r->check_run_id;
    d->outcome = o;
    struct dead **at = &g->dead;
    while (*at)
        at = &(*at)->next;
    *at = d;
}

/* Drops the least recently used idle run when there are too many; lock held. */
static void ghapi_evict(struct ghapi *g) {
    struct ghrun **oldest = NULL;
    if (g->nruns < GHAPI_RUNS_MAX)
        return;
    for (struct ghrun **at = &g->runs; *at; at = &(*at)->next)
        if (!(*at)->active && !(*at)->pending && (!oldest || (*at)->used_ms < (*oldest)->used_ms))
            oldest = at;
    if (oldest) {
        struct ghrun *r = *oldest;
        *oldest = r->next;
        ghrun_free(r);
        g->nruns--;
    }
}

int ghapi_submit(struct ghapi *g, const struct ghapi_update *u, char *err, size_t errlen) {
    struct ghjob *j = NULL;
    int rc = ghjob_build(u, ghauth_is_app(g->auth), &j, err, errlen);
    if (rc)
        return rc;
    pthread_mutex_lock(&g->lock);
    struct ghrun *r = g->runs;
    while (r && strcmp(r->key, u->run) != 0)
        r = r->next;
    if (g->stopping) {
        snprintf(err, errlen, "github client is stopping");
        rc = GHE_UNAVAILABLE;
        goto out;
    }
    if (g->queued >= g->queue_max && !(r && r->pending)) {
        g->stats.queue_full++;
        snprintf(err, errlen, "github update queue full (%zu updates wait)", g->queued);
        rc = GHE_TOOBIG;
        goto out;
    }
    if (!r) {
        ghapi_evict(g);
        rc = GHE_NOMEM;
        if (!(r = calloc(1, sizeof(*r))))
            goto out;
        r->key = strdup(u->run);
        r->owner = strdup(u->owner);
        r->repo = strdup(u->repo);
        r->sha = strdup(u->head_sha);
        if (!r->key || !r->owner || !r->repo || !r->sha) {
            ghrun_free(r);
            goto out;
        }
        r->next = g->runs;
        g->runs = r;
        g->nruns++;
    }
    r->installation_id = u->installation_id;
    if (u->check_run_id > 0)
        r->check_run_id = u->check_run_id;
    r->used_ms = clock_mono_ms();
    if (r->pending) {
        ghapi_bury(g, r, r->pending, GHAPI_SUPERSEDED);
        g->stats.superseded++;
        g->queued--;
    }
    r->pending = j;
    j = NULL;
    g->queued++;
    g->stats.submitted++;
    rc = 0;
out:
    pthread_mutex_unlock(&g->lock);
    ghjob_free(j);
    if (rc == 0)
        curl_multi_wakeup(g->multi);
    return rc;
}

void ghapi_stats(struct ghapi *g, struct ghapi_stats *out) {
    pthread_mutex_lock(&g->lock);
    *out = g->stats;
    pthread_mutex_unlock(&g->lock);
}

/* Reports the buried jobs; called without the lock. */
static void ghapi_report_dead(struct ghapi *g) {
    pthread_mutex_lock(&g->lock);
    struct dead *d = g->dead;
    g->dead = NULL;
    pthread_mutex_unlock(&g->lock);
    while (d) {
        struct dead *next = d->next;
        if (g->done) {
            struct ghapi_result res = {.run = d->key,
                                       .what = d->job->what,
                                       .outcome = d->outcome,
                                       .check_run_id = d->check_run_id,
                                       .attempts = d->job->attempts};
            g->done(g->done_arg, &res);
        }
        ghjob_free(d->job);
        free(d->key);
        free(d);
        d = next;
    }
}

/* Ends a run's active job with its callback. */
static void ghapi_finish(struct ghapi *g, struct ghrun *r, enum ghapi_outcome o, int status) {
    struct ghjob *j = r->active;
    pthread_mutex_lock(&g->lock);
    long long id = r->check_run_id;
    g->queued--;
    if (o == GHAPI_DONE)
        g->stats.done++;
    else
        g->stats.gave_up++;
    pthread_mutex_unlock(&g->lock);
    /* The run stays active during the callback, so ghapi_evict cannot take it away. */
    if (g->done) {
        struct ghapi_result res = {.run = r->key,
                                   .what = j->what,
                                   .outcome = o,
                                   .check_run_id = id,
                                   .http_status = status,
                                   .attempts = j->attempts};
        g->done(g->done_arg, &res);
    }
    pthread_mutex_lock(&g->lock);
    r->active = NULL;
    pthread_mutex_unlock(&g->lock);
    ghjob_free(j);
}

/* Records the run's check run id; submit reads and writes it too. */
static void ghapi_set_id(struct ghapi *g, struct ghrun *r, long long id) {
    pthread_mutex_lock(&g->lock);
    r->check_run_id = id;
    pthread_mutex_unlock(&g->lock);
}

static void ghapi_retry(struct ghapi *g, struct ghrun *r, int status, const char *why) {
    struct ghjob *j = r->active;
    if (j->attempts >= g->max_attempts) {
        char st[16];
        snprintf(st, sizeof(st), "%d", status);
        LOGGER_WARN_("github update given up after retries", "run", r->key, "status", st, "reason",
                     why);
        ghapi_finish(g, r, GHAPI_GAVE_UP, status);
        return;
    }
    long wait = g->backoff_base_ms;
    for (int i = 1; i < j->attempts && wait < g->backoff_max_ms; i++)
        wait *= 2;
    if (wait > g->backoff_max_ms)
        wait = g->backoff_max_ms;
    r->due_ms = clock_mono_ms() + ids_jitter_ms(wait);
    pthread_mutex_lock(&g->lock);
    g->stats.retried++;
    pthread_mutex_unlock(&g->lock);
    LOGGER_DEBUG_("github update retried", "run", r->key, "reason", why);
}

static size_t ghapi_on_body(char *p, size_t size, size_t n, void *arg) {
    struct ghreq *q = arg;
    return buf_append(&q->resp, p, size * n) == 0 ? size * n : 0;
}

static size_t ghapi_on_header(char *p, size_t size, size_t n, void *arg) {
    struct ghreq *q = arg;
    size_t len = size * n;
    char line[128];
    if (len >= sizeof(line))
        return len;
    memcpy(line, p, len);
    line[len] = '\0';
    long long v;
    if (strncasecmp(line, "x-ratelimit-remaining:", 22) == 0 && sscanf(line + 22, "%lld", &v) == 1)
        q->remaining = v;
    else if (strncasecmp(line, "x-ratelimit-reset:", 18) == 0 && sscanf(line + 18, "%lld", &v) == 1)
        q->reset_s = v;
    else if (strncasecmp(line, "retry-after:", 12) == 0 && sscanf(line + 12, "%lld", &v) == 1)
        q->retry_after_s = v;
    return len;
}

static void ghreq_free(struct ghreq *q) {
    if (!q)
        return;
    if (q->curl)
        curl_easy_cleanup(q->curl);
    curl_slist_free_all(q->hdrs);
    free(q->body);
    buf_cleanup(&q->resp);
    free(q);
}

/* Percent-encodes s for a query value into out. */
static void ghapi_query_value(const char *s, char *out, size_t outlen) {
    size_t o = 0;
    for (; *s && o + 4 < outlen; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, outlen - o, "%%%02X", c);
    }
    out[o] = '\0';
}

/* Starts the run's active job: builds the request and hands it to the multi handle. */
static void ghapi_start(struct ghapi *g, struct ghrun *r) {
    struct ghjob *j = r->active;
    char auth[GHAUTH_TOKEN_MAX + 32], err[256], url[2048], ua[300];
    struct ghreq *q = calloc(1, sizeof(*q));
    const char *method = "POST";

    pthread_mutex_lock(&g->lock);
    if (j->check_run_id <= 0)
        j->check_run_id = r->check_run_id;
    long long installation_id = r->installation_id;
    pthread_mutex_unlock(&g->lock);
    j->attempts++;
    if (!q)
        goto nomem;
    q->g = g;
    q->run = r;
    q->remaining = q->reset_s = q->retry_after_s = -1;
    buf_init(&q->resp, GHAPI_RESPONSE_MAX);
    memcpy(auth, "Authorization: ", 15);
    int rc = ghauth_header(g->auth, installation_id, j->force_token, auth + 15, sizeof(auth) - 15,
                           err, sizeof(err));
    j->force_token = false;
    if (rc) {
        ghreq_free(q);
        if (rc == GHE_UNAVAILABLE) {
            ghapi_retry(g, r, 0, err);
        } else {
            LOGGER_WARN_("github update given up: no credentials", "run", r->key, "reason", err);
            ghapi_finish(g, r, GHAPI_GAVE_UP, 0);
        }
        return;
    }
    if (j->kind == GHAPI_COMMIT_STATUS) {
        snprintf(url, sizeof(url), "%s/repos/%s/%s/statuses/%s", g->api_url, r->owner, r->repo,
                 r->sha);
    } else if (j->check_run_id > 0) {
        method = "PATCH";
        snprintf(url, sizeof(url), "%s/repos/%s/%s/check-runs/%lld", g->api_url, r->owner, r->repo,
                 j->check_run_id);
    } else if (j->lookup) {
        char name[512];
        method = "GET";
        q->is_lookup = true;
        ghapi_query_value(j->name, name, sizeof(name));
        snprintf(url, sizeof(url),
                 "%s/repos/%s/%s/commits/%s/check-runs?check_name=%s&filter=all&per_page=100",
                 g->api_url, r->owner, r->repo, r->sha, name);
    } else {
        q->is_create = true;
        snprintf(url, sizeof(url), "%s/repos/%s/%s/check-runs", g->api_url, r->owner, r->repo);
    }
    if (!q->is_lookup) {
        cJSON *body = cJSON_Duplicate(j->fields, 1);
        if (body && q->is_create)
            cJSON_AddStringToObject(body, "head_sha", r->sha);
        q->body = body ? cJSON_PrintUnformatted(body) : NULL;
        cJSON_Delete(body);
        if (!q->body)
            goto nomem;
    }
    snprintf(ua, sizeof(ua), "User-Agent: %s", g->user_agent);
    if (!(q->curl = curl_easy_init()))
        goto nomem;
    q->hdrs = curl_slist_append(q->hdrs, auth);
    q->hdrs = curl_slist_append(q->hdrs, ua);
    q->hdrs = curl_slist_append(q->hdrs, "Accept: application/vnd.github+json");
    q->hdrs = curl_slist_append(q->hdrs, "X-GitHub-Api-Version: 2022-11-28");
    q->hdrs = curl_slist_append(q->hdrs, "Content-Type: application/json");
    OPENSSL_cleanse(auth, sizeof(auth));
    if (!q->hdrs)
        goto nomem;
    curl_easy_setopt(q->curl, CURLOPT_URL, url);
    curl_easy_setopt(q->curl, CURLOPT_HTTPHEADER, q->hdrs);
    curl_easy_setopt(q->curl, CURLOPT_CUSTOMREQUEST, method);
    if (q->body)
        curl_easy_setopt(q->curl, CURLOPT_POSTFIELDS, q->body);
    curl_easy_setopt(q->curl, CURLOPT_WRITEFUNCTION, ghapi_on_body);
    curl_easy_setopt(q->curl, CURLOPT_WRITEDATA, q);
    curl_easy_setopt(q->curl, CURLOPT_HEADERFUNCTION, ghapi_on_header);
    curl_easy_setopt(q->curl, CURLOPT_HEADERDATA, q);
    curl_easy_setopt(q->curl, CURLOPT_PRIVATE, q);
    curl_easy_setopt(q->curl, CURLOPT_TIMEOUT_MS, g->timeout_ms);
    curl_easy_setopt(q->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(q->curl, CURLOPT_PROTOCOLS_STR, "http,https");
    if (g->ca_file)
        curl_easy_setopt(q->curl, CURLOPT_CAINFO, g->ca_file);
    if (curl_multi_add_handle(g->multi, q->curl) != CURLM_OK)
        goto nomem;
    r->in_flight = true;
    r->req = q;
    g->in_flight++;
    pthread_mutex_lock(&g->lock);
    g->stats.requests++;
    pthread_mutex_unlock(&g->lock);
    LOGGER_DEBUG_("github request", "run", r->key, "method", method, "what", j->what);
    return;
nomem:
    OPENSSL_cleanse(auth, sizeof(auth));
    ghreq_free(q);
    ghapi_retry(g, r, 0, "out of memory");
}

/* After a lost create: the check run of this name and external_id on the commit, or 0. */
static long long ghapi_lookup_id(const struct ghjob *j, const struct buf *resp) {
    long long id = 0;
    cJSON *doc = cJSON_ParseWithLength(resp->data ? resp->data : "", resp->len);
    const cJSON *runs = cJSON_GetObjectItemCaseSensitive(doc, "check_runs");
    const cJSON *cr;
    cJSON_ArrayForEach(cr, runs) {
        const cJSON *ext = cJSON_GetObjectItemCaseSensitive(cr, "external_id");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(cr, "name");
        const cJSON *cid = cJSON_GetObjectItemCaseSensitive(cr, "id");
        if (cJSON_IsString(name) && strcmp(name->valuestring, j->name) == 0 &&
            cJSON_IsString(ext) && strcmp(ext->valuestring, j->external_id) == 0 &&
            cJSON_IsNumber(cid)) {
            id = (long long)cid->valuedouble;
            break;
        }
    }
    cJSON_Delete(doc);
    return id;
}

/* Blocks every run until the wall-clock reset (unix s) or for wait_ms. */
static void ghapi_block(struct ghapi *g, long long wait_ms) {
    if (wait_ms < 0)
        wait_ms = 0;
    long long until = clock_mono_ms() + wait_ms;
    if (until > g->blocked_until)
        g->blocked_until = until;
    pthread_mutex_lock(&g->lock);
    g->stats.rate_limited++;
    pthread_mutex_unlock(&g->lock);
}

static bool ghapi_secondary(const struct ghreq *q) {
    return q->resp.data && strstr(q->resp.data, "secondary rate limit") != NULL;
}

/* Acts on one answer (or its absence) of the run's active job. */
static void ghapi_answered(struct ghapi *g, struct ghreq *q, CURLcode cc) {
    struct ghrun *r = q->run;
    struct ghjob *j = r->active;
    long status = 0;
    char st[16];

    r->in_flight = false;
    r->req = NULL;
    g->in_flight--;
    if (cc != CURLE_OK) {
        /* A create may have happened with its answer lost: look before creating again. */
        if (q->is_create && j->external_id)
            j->lookup = true;
        ghapi_retry(g, r, 0, curl_easy_strerror(cc));
        return;
    }
    curl_easy_getinfo(q->curl, CURLINFO_RESPONSE_CODE, &status);
    snprintf(st, sizeof(st), "%ld", status);
    LOGGER_DEBUG_("github answer", "run", r->key, "status", st);
    if (q->remaining == 0 && q->reset_s > 0 && status >= 200 && status < 300) {
        /* The last call of the hour went through: the next one waits for the reset. */
        ghapi_block(g, q->reset_s * 1000 - clock_wall_ms() + 1000);
    }
    if (status >= 200 && status < 300) {
        if (q->is_lookup) {
            j->lookup = false;
            long long id = ghapi_lookup_id(j, &q->resp);
            if (id > 0) {
                j->check_run_id = id;
                ghapi_set_id(g, r, id);
            }
            r->due_ms = 0;
            return;
        }
        if (j->kind == GHAPI_CHECK_RUN && j->check_run_id <= 0) {
            cJSON *doc = cJSON_ParseWithLength(q->resp.data ? q->resp.data : "", q->resp.len);
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
            if (cJSON_IsNumber(id))
                ghapi_set_id(g, r, (long long)id->valuedouble);
            cJSON_Delete(doc);
        }
        ghapi_finish(g, r, GHAPI_DONE, (int)status);
        return;
    }
    if (status == 401 && !j->token_retried) {
        /* An installation token that expired early or was revoked: one fresh one. */
        j->token_retried = j->force_token = true;
        j->attempts--;
        r->due_ms = 0;
        LOGGER_INFO_("github credentials refused, fetching a new token", "run", r->key);
        return;
    }
    if ((status == 403 || status == 429) &&
        (q->remaining == 0 || q->retry_after_s >= 0 || ghapi_secondary(q))) {
        long long wait;
        const char *kind;
        if (q->retry_after_s >= 0) {
            wait = q->retry_after_s * 1000;
            kind = "secondary";
        } else if (ghapi_secondary(q)) {
            wait = GHAPI_SECONDARY_WAIT_MS;
            kind = "secondary";
        } else {
            wait = q->reset_s > 0 ? q->reset_s * 1000 - clock_wall_ms() + 1000 : 60000;
            kind = "primary";
        }
        if (++j->rate_waits > GHAPI_RATE_WAITS_MAX) {
            LOGGER_WARN_("github update given up: rate limited too often", "run", r->key, "status",
                         st);
            ghapi_finish(g, r, GHAPI_GAVE_UP, (int)status);
            return;
        }
        j->attempts--;
        ghapi_block(g, wait);
        r->due_ms = 0;
        char ms[24];
        snprintf(ms, sizeof(ms), "%lld", wait);
        LOGGER_INFO_("github rate limit, waiting", "run", r->key, "limit", kind, "wait_ms", ms);
        return;
    }
    if (status >= 500 || status == 429) {
        if (q->is_create && j->external_id)
            j->lookup = true;
        ghapi_retry(g, r, (int)status, "server error");
        return;
    }
    if (q->is_lookup) {
        /* The list cannot be read (a token without checks: read): create as before. */
        j->lookup = false;
        r->due_ms = 0;
        return;
    }
    /* A 4xx GitHub will keep refusing: the request, the credentials or the permissions. */
    LOGGER_WARN_("github update refused, given up", "run", r->key, "status", st, "repo", r->repo,
                 "what", j->what, "kind",
                 j->kind == GHAPI_CHECK_RUN ? "check run" : "commit status");
    ghapi_finish(g, r, GHAPI_GAVE_UP, (int)status);
}

static void ghapi_reap(struct ghapi *g) {
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(g->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct ghreq *q = NULL;
        CURLcode cc = m->data.result;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, &q);
        curl_multi_remove_handle(g->multi, m->easy_handle);
        ghapi_answered(g, q, cc);
        ghreq_free(q);
    }
}

/*
 * Promotes pending jobs, and picks the runs due to send now (at most room).
 * Returns how many were put in pick; *next_ms is the nearest later due time.
 */
static size_t ghapi_pick(struct ghapi *g, struct ghrun **pick, size_t room, long long now,
                         long long *next_ms, bool *stopping) {
    size_t n = 0;
    pthread_mutex_lock(&g->lock);
    *stopping = g->stopping;
    for (struct ghrun *r = g->runs; r && !*stopping; r = r->next) {
        if (!r->active && r->pending) {
            r->active = r->pending;
            r->pending = NULL;
            r->due_ms = 0;
        }
        if (!r->active || r->in_flight)
            continue;
        long long due = r->due_ms > g->blocked_until ? r->due_ms : g->blocked_until;
        /* Due but no connection free: an answer on one wakes the poll, so no deadline. */
        if (due <= now) {
            if (n < room)
                pick[n++] = r;
        } else if (due < *next_ms)
            *next_ms = due;
    }
    pthread_mutex_unlock(&g->lock);
    return n;
}

static void *ghapi_main(void *arg) {
    struct ghapi *g = arg;
    struct ghrun *pick[64];
    bool stopping = false;

    while (!stopping) {
        ghapi_report_dead(g);
        long long now = clock_mono_ms();
        long long next = now + GHAPI_IDLE_POLL_MS;
        size_t room = g->conns > g->in_flight ? (size_t)(g->conns - g->in_flight) : 0;
        if (room > sizeof(pick) / sizeof(pick[0]))
            room = sizeof(pick) / sizeof(pick[0]);
        size_t n = ghapi_pick(g, pick, room, now, &next, &stopping);
        for (size_t i = 0; i < n && !stopping; i++)
            ghapi_start(g, pick[i]);
        int running = 0;
        curl_multi_perform(g->multi, &running);
        ghapi_reap(g);
        ghapi_report_dead(g);
        if (stopping)
            break;
        long long wait = next - clock_mono_ms();
        /* A run whose retry came due meanwhile (a 401, a lookup) goes at once. */
        pthread_mutex_lock(&g->lock);
        for (struct ghrun *r = g->runs; r; r = r->next)
            if (((r->active && !r->in_flight) || (!r->active && r->pending)) && r->due_ms <= now &&
                g->blocked_until <= now && g->in_flight < g->conns)
                wait = 0;
        pthread_mutex_unlock(&g->lock);
        curl_multi_poll(g->multi, NULL, 0, (int)(wait < 0 ? 0 : wait > 1000 ? 1000 : wait), NULL);
    }
    return NULL;
}

int ghapi_new(const struct ghapi_config *cfg, struct ghapi **out, char *err, size_t errlen) {
    struct ghapi *g;
    *out = NULL;
    if (!cfg->auth || !cfg->api_url || strncmp(cfg->api_url, "http", 4) != 0) {
        snprintf(err, errlen, "github client: credentials and an http(s) api_url are required");
        return GHE_INVAL;
    }
    if (!(g = calloc(1, sizeof(*g))))
        return GHE_NOMEM;
    pthread_mutex_init(&g->lock, NULL);
    g->auth = cfg->auth;
    size_t ulen = strlen(cfg->api_url);
    while (ulen > 0 && cfg->api_url[ulen - 1] == '/')
        ulen--;
    g->api_url = strndup(cfg->api_url, ulen);
    g->ca_file = ghapi_dup(cfg->ca_file);
    g->user_agent = strdup(cfg->user_agent ? cfg->user_agent : "gpuhook/" GPUHOOK_VERSION);
    g->queue_max = cfg->queue_max ? cfg->queue_max : 1024;
    g->max_attempts = cfg->max_attempts > 0 ? cfg->max_attempts : 10;
    g->backoff_base_ms = cfg->backoff_base_ms > 0 ? cfg->backoff_base_ms : 1000;
    g->backoff_max_ms = cfg->backoff_max_ms > 0 ? cfg->backoff_max_ms : 60000;
    g->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 15000;
    g->conns = cfg->conns > 0 ? cfg->conns : 4;
    g->done = cfg->done;
    g->done_arg = cfg->done_arg;
    g->multi = curl_multi_init();
    if (!g->api_url || !g->user_agent || (cfg->ca_file && !g->ca_file) || !g->multi) {
        ghapi_free(g);
        return GHE_NOMEM;
    }
    curl_multi_setopt(g->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)g->conns);
    /* The thread takes no signals: they belong to main's handlers. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&g->thread, NULL, ghapi_main, g);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "github client: cannot start its thread");
        ghapi_free(g);
        return GHE_NOMEM;
    }
    g->started = true;
    *out = g;
    return 0;
}

void ghapi_free(struct ghapi *g) {
    if (!g)
        return;
    if (g->started) {
        pthread_mutex_lock(&g->lock);
        g->stopping = true;
        pthread_mutex_unlock(&g->lock);
        curl_multi_wakeup(g->multi);
        pthread_join(g->thread, NULL);
    }
    /* In-flight requests are abandoned; every job not finished is reported stopped. */
    while (g->runs) {
        struct ghrun *r = g->runs;
        g->runs = r->next;
        if (r->req) {
            curl_multi_remove_handle(g->multi, r->req->curl);
            ghreq_free(r->req);
        }
        if (r->active)
            ghapi_bury(g, r, r->active, GHAPI_STOPPED);
        if (r->pending)
            ghapi_bury(g, r, r->pending, GHAPI_STOPPED);
        r->active = r->pending = NULL;
        ghrun_free(r);
    }
    ghapi_report_dead(g);
    curl_multi_cleanup(g->multi);
    free(g->api_url);
    free(g->ca_file);
    free(g->user_agent);
    pthread_mutex_destroy(&g->lock);
    free(g);
}
