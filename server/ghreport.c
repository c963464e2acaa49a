/*
 * GitHub feedback. See include/gpuhook/ghreport.h.
 *
 * The watcher's thread calls ghreport_event and ghreport_leadership; ghapi's thread
 * calls ghreport_done. Both touch the table of runs under r->lock, and both only queue
 * work (ghapi_submit, watcher_patch, a job for the reader), so the lock is never held
 * across a wait.
 *
 * In App mode a check run's update goes through the reader, a thread of the reporter's
 * own: for a run that starts or ends it reads the run's TaskRuns and Pods (ghtasks.c,
 * blocking, bounded) so that the summary has the table, the failing task and the node,
 * then hands the update to ghapi. Every App update takes that one queue, in order, so a
 * run's updates still reach ghapi in the order they were decided; a newer state of a run
 * whose job still waits replaces it there. Neither the watcher's thread nor ghapi's ever
 * waits for those reads.
 */
#include "gpuhook/ghreport.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/ghapi.h"
#include "gpuhook/ghauth.h"
#include "gpuhook/ghsummary.h"
#include "gpuhook/ghtasks.h"
#include "gpuhook/logger.h"
#include "gpuhook/watcher.h"

#define GHREPORT_KEY_MAX 48  /* "completed/action_required" and the like */
#define GHREPORT_RUN_MAX 320 /* namespace/name */
#define GHREPORT_URL_MAX 2048
/* All the reads for one update: the TaskRun list and up to GHTASKS_PODS_MAX Pods. */
#define GHREPORT_READ_MS 10000L

/* One PipelineRun the watcher told us about. */
struct ghreport_run {
    struct ghreport_run *next;
    char *name;
    cJSON *obj;                      /* the last state seen, for a leadership change */
    char submitted[GHREPORT_KEY_MAX]; /* the last state handed to ghapi, "" for none */
};

/* An App update waiting for the reader: the run as it was when its state was decided. */
struct ghreport_job {
    struct ghreport_job *next;
    char *name;
    cJSON *obj;
    char key[GHREPORT_KEY_MAX];
    bool read; /* the run started or ended: read its TaskRuns */
};

/* What the reads add to a check run's summary; all borrowed. */
struct ghreport_extra {
    const struct ghsummary_task *tasks;
    size_t ntasks;
    bool tasks_cut;
    const char *failing_task;
    const char *node;
};

struct ghreport {
    struct ghreport_config cfg;
    char *api_url, *key_file, *token_file, *ca_file, *details_url, *ns;
    struct ghauth *auth;
    struct ghapi *g;
    struct watcher *w;
    bool app;

    pthread_mutex_t stats_lock; /* keeps g alive for ghreport_stats */
    pthread_mutex_t lock;       /* guards everything below */
    bool stopping;
    struct ghreport_run *runs;
    unsigned long patch_failed;
    struct ghreport_job *jobs, **jobs_tail;
    size_t njobs;

    struct kube *kube; /* the watcher's, for the reads; NULL: no reads */
    pthread_cond_t wake;
    pthread_t reader;
    bool reader_started;
    bool reader_stop; /* atomic: the reads poll it */
};

/* The reporter the metrics read (one per process); NULL: off. */
static pthread_mutex_t ghreport_current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct ghreport *ghreport_current;

static char *ghreport_dup(const char *s) { return s ? strdup(s) : NULL; }

static const char *ghreport_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int ghreport_details_url(const char *tmpl, const char *ns, const char *name, char *out,
                         size_t outlen) {
    size_t n = 0;

    for (const char *p = tmpl; *p;) {
        const char *add = NULL;
        size_t len = 1, skip = 1;
        if (strncmp(p, "{namespace}", 11) == 0)
            add = ns, skip = 11;
        else if (strncmp(p, "{name}", 6) == 0)
            add = name, skip = 6;
        if (add)
            len = strlen(add);
        else
            add = p;
        if (n + len >= outlen)
            return GHE_TOOBIG;
        memcpy(out + n, add, len);
        n += len;
        p += skip;
    }
    if (n >= outlen)
        return GHE_TOOBIG;
    out[n] = '\0';
    return 0;
}

static struct ghreport_run *ghreport_find(struct ghreport *r, const char *name, bool add) {
    for (struct ghreport_run *x = r->runs; x; x = x->next)
        if (strcmp(x->name, name) == 0)
            return x;
    if (!add)
        return NULL;
    struct ghreport_run *x = calloc(1, sizeof(*x));
    if (!x || !(x->name = strdup(name))) {
        free(x);
        return NULL;
    }
    x->next = r->runs;
    r->runs = x;
    return x;
}

static void ghreport_forget(struct ghreport *r, const char *name) {
    for (struct ghreport_run **pp = &r->runs; *pp; pp = &(*pp)->next) {
        struct ghreport_run *x = *pp;
        if (strcmp(x->name, name) == 0) {
            *pp = x->next;
            cJSON_Delete(x->obj);
            free(x->name);
            free(x);
            return;
        }
    }
}

/* The Succeeded condition's status and reason, or NULLs when the run has none yet. */
static void ghreport_condition(const cJSON *status, const char **st, const char **reason) {
    const cJSON *c;

    *st = *reason = NULL;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(status, "conditions")) {
        const char *type = ghreport_str(c, "type");
        if (type && strcmp(type, "Succeeded") == 0) {
            *st = ghreport_str(c, "status");
            *reason = ghreport_str(c, "reason");
            return;
        }
    }
}

/* The run's `summary` result (status.results[name=summary].value), or NULL. */
static const char *ghreport_step_summary(const cJSON *status) {
    const cJSON *res;

    cJSON_ArrayForEach(res, cJSON_GetObjectItemCaseSensitive(status, "results")) {
        const char *n = ghreport_str(res, "name");
        if (n && strcmp(n, "summary") == 0)
            return ghreport_str(res, "value");
    }
    return NULL;
}

static long long ghreport_time(const cJSON *status, const char *key) {
    const char *s = ghreport_str(status, key);
    long long ms = 0;
    return s && ghauth_parse_time(s, &ms) == 0 ? ms : 0;
}

/* What the run's state is called on GitHub: the reported annotation's value. */
static void ghreport_state_key(const struct ghreport *r, const struct ghsummary_outcome *o,
                               char *key, size_t keylen) {
    if (!r->app)
        snprintf(key, keylen, "%s", o->commit_state);
    else if (o->check_conclusion)
        snprintf(key, keylen, "%s/%s", o->check_status, o->check_conclusion);
    else
        snprintf(key, keylen, "%s", o->check_status);
}

/* The run's state on GitHub (key), or false when the run is not one to report. */
static bool ghreport_key_of(const struct ghreport *r, const cJSON *obj, char *key, size_t keylen) {
    const cJSON *notes = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "annotations");
    const char *full = ghreport_str(notes, "gpuhook.dev/repository");
    const char *sha = ghreport_str(notes, "gpuhook.dev/revision");
    const char *cst, *creason;
    struct ghsummary_outcome o;

    if (!full || !sha || !strchr(full, '/'))
        return false; /* not a run from a repository (a manual run without one) */
    ghreport_condition(cJSON_GetObjectItemCaseSensitive(obj, "status"), &cst, &creason);
    ghsummary_map(cst, creason, &o);
    ghreport_state_key(r, &o, key, keylen);
    return true;
}

/*
 * Builds the update of run xname (obj, as last seen) and hands it to ghapi; ex adds what
 * the reads found (NULL: nothing). Returns ghapi_submit's answer, with err.
 */
static int ghreport_send(struct ghreport *r, const char *xname, const cJSON *obj,
                         const struct ghreport_extra *ex, char *err, size_t errlen) {
    const cJSON *meta = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(meta, "labels");
    const cJSON *notes = cJSON_GetObjectItemCaseSensitive(meta, "annotations");
    const cJSON *status = cJSON_GetObjectItemCaseSensitive(obj, "status");
    const char *full = ghreport_str(notes, "gpuhook.dev/repository");
    const char *sha = ghreport_str(notes, "gpuhook.dev/revision");
    const char *variant = ghreport_str(labels, "gpuhook.dev/variant");
    const char *id_text = ghreport_str(notes, GHREPORT_ANN_CHECK_RUN);
    const char *inst_text = ghreport_str(notes, GHREPORT_ANN_INSTALLATION);
    const char *ns = ghreport_str(meta, "namespace");
    const char *cst, *creason, *slash;
    char run[GHREPORT_RUN_MAX], owner[128], name[96], url[GHREPORT_URL_MAX];
    char description[GHSUMMARY_DESCRIPTION_MAX * 4 + 8];
    struct ghsummary_outcome o;
    char *title = NULL, *summary = NULL;
    int rc;

    if (!full || !sha || !(slash = strchr(full, '/')) || (size_t)(slash - full) >= sizeof(owner)) {
        snprintf(err, errlen, "the run names no repository and revision");
        return GHE_INVAL;
    }
    if (!ns)
        ns = r->ns;
    ghreport_condition(status, &cst, &creason);
    ghsummary_map(cst, creason, &o);
    memcpy(owner, full, (size_t)(slash - full));
    owner[slash - full] = '\0';
    snprintf(run, sizeof(run), "%s/%s", ns, xname);
    snprintf(name, sizeof(name), "gpu / %s", variant ? variant : "run");
    if (r->details_url && ghreport_details_url(r->details_url, ns, xname, url, sizeof(url)) != 0)
        url[0] = '\0';

    struct ghapi_update u = {
        .kind = r->app ? GHAPI_CHECK_RUN : GHAPI_COMMIT_STATUS,
        .run = run,
        .owner = owner,
        .repo = slash + 1,
        .head_sha = sha,
        .installation_id = inst_text ? atoll(inst_text) : 0,
        .check_run_id = id_text ? atoll(id_text) : 0,
        .name = name,
        .details_url = r->details_url && url[0] ? url : NULL,
    };
    if (u.installation_id <= 0)
        u.installation_id = r->cfg.installation_id;
    if (r->app) {
        struct ghsummary_run s = {
            .pipelinerun = run,
            .variant = variant,
            .rule = ghreport_str(notes, "gpuhook.dev/rule"),
            .reason = ghreport_str(notes, "gpuhook.dev/reason"),
            .condition_reason = creason,
            .started_ms = ghreport_time(status, "startTime"),
            .finished_ms = ghreport_time(status, "completionTime"),
            .step_summary = ghreport_step_summary(status),
        };
        if (ex) {
            s.tasks = ex->tasks;
            s.ntasks = ex->ntasks;
            s.tasks_cut = ex->tasks_cut;
            s.failing_task = ex->failing_task;
            s.node = ex->node;
        }
        if (ghsummary_render(&s, &title, &summary) != 0) {
            snprintf(err, errlen, "out of memory");
            return GHE_NOMEM;
        }
        u.status = o.check_status;
        u.conclusion = o.check_conclusion;
        u.external_id = run;
        u.title = title;
        u.summary = summary;
        u.started_ms = s.started_ms;
        u.completed_ms = o.check_conclusion ? s.finished_ms : 0;
    } else {
        char text[512];
        snprintf(text, sizeof(text), "%s: %s", variant ? variant : "run",
                 creason ? creason : "queued");
        ghsummary_clip(text, GHSUMMARY_DESCRIPTION_MAX, description, sizeof(description));
        u.state = o.commit_state;
        u.description = description;
    }
    rc = ghapi_submit(r->g, &u, err, errlen);
    free(title);
    free(summary);
    return rc;
}

static void ghreport_job_free(struct ghreport_job *j) {
    if (!j)
        return;
    cJSON_Delete(j->obj);
    free(j->name);
    free(j);
}

/*
 * Queues x's state key for the reader; a job of the same run still waiting takes the
 * newer state in its place. Locked. Returns 0, GHE_TOOBIG (full) or GHE_NOMEM.
 */
static int ghreport_enqueue(struct ghreport *r, struct ghreport_run *x, const char *key,
                            bool read) {
    struct ghreport_job *j;
    cJSON *copy = cJSON_Duplicate(x->obj, true);

    if (!copy)
        return GHE_NOMEM;
    for (j = r->jobs; j; j = j->next)
        if (strcmp(j->name, x->name) == 0)
            break;
    if (j) {
        cJSON_Delete(j->obj);
        j->obj = copy;
        j->read = j->read || read;
        snprintf(j->key, sizeof(j->key), "%s", key);
        return 0;
    }
    if (r->njobs >= (r->cfg.queue_max ? r->cfg.queue_max : 1024)) {
        cJSON_Delete(copy);
        return GHE_TOOBIG;
    }
    if (!(j = calloc(1, sizeof(*j))) || !(j->name = strdup(x->name))) {
        free(j);
        cJSON_Delete(copy);
        return GHE_NOMEM;
    }
    j->obj = copy;
    j->read = read;
    snprintf(j->key, sizeof(j->key), "%s", key);
    *r->jobs_tail = j;
    r->jobs_tail = &j->next;
    r->njobs++;
    pthread_cond_signal(&r->wake);
    return 0;
}

/* Submits the run's current state when neither the run nor we reported it yet. Locked. */
static void ghreport_consider(struct ghreport *r, struct ghreport_run *x) {
    const cJSON *notes = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(x->obj, "metadata"), "annotations");
    const char *reported = ghreport_str(notes, GHREPORT_ANN_REPORTED);
    char key[GHREPORT_KEY_MAX], err[256];
    int rc;

    if (!ghreport_key_of(r, x->obj, key, sizeof(key)))
        return;
    if ((reported && strcmp(reported, key) == 0) || strcmp(x->submitted, key) == 0) {
        snprintf(x->submitted, sizeof(x->submitted), "%s", key);
        return;
    }
    if (r->app) {
        /* A run that starts or ends gets its TaskRuns read, off this thread. */
        rc = ghreport_enqueue(r, x, key, strcmp(key, "queued") != 0);
        if (rc == GHE_TOOBIG)
            snprintf(err, sizeof(err), "github report queue full (%zu updates wait)", r->njobs);
        else if (rc)
            snprintf(err, sizeof(err), "out of memory");
    } else {
        rc = ghreport_send(r, x->name, x->obj, NULL, err, sizeof(err));
    }
    if (rc == 0) {
        snprintf(x->submitted, sizeof(x->submitted), "%s", key);
        LOGGER_DEBUG_("github report queued", "pipelinerun", x->name, "state", key);
    } else {
        LOGGER_WARN_("github report not queued", "pipelinerun", x->name, "state", key, "error",
                     err);
    }
}

/* Reads what a started or ended run's summary shows, then sends its update. Reader thread. */
static void ghreport_process(struct ghreport *r, struct ghreport_job *j) {
    struct ghreport_extra ex = {0};
    struct ghtasks t;
    char node[GHTASKS_NODE_MAX + 64] = "", err[256] = "";
    int rc;

    ghtasks_init(&t);
    if (j->read && r->kube) {
        if (ghtasks_read(r->kube, j->obj, GHREPORT_READ_MS, &r->reader_stop, &t, node, sizeof(node),
                         err, sizeof(err)) == 0) {
            ex.tasks = t.view;
            ex.ntasks = t.nrows;
            ex.tasks_cut = t.more;
            ex.failing_task = t.failing_task;
        } else {
            LOGGER_DEBUG_("github report: the summary goes without its TaskRuns", "pipelinerun",
                          j->name, "error", err);
        }
        const char *chosen = node[0] ? NULL : ghtasks_chosen_node(j->obj);
        if (chosen) {
            /* No Pod could be read (403, say): the node the decision preferred, said so. */
            snprintf(node, sizeof(node), "%.*s (preferred by the decision)", GHTASKS_NODE_MAX,
                     chosen);
            LOGGER_DEBUG_("github report: no Pod says where the run ran", "pipelinerun", j->name);
        }
        ex.node = node[0] ? node : NULL;
    }
    rc = ghreport_send(r, j->name, j->obj, &ex, err, sizeof(err));
    ghtasks_cleanup(&t);
    if (rc == 0)
        return;
    LOGGER_WARN_("github report not queued", "pipelinerun", j->name, "state", j->key, "error", err);
    /* Not sent: a later event of the run tries again. */
    pthread_mutex_lock(&r->lock);
    struct ghreport_run *x = ghreport_find(r, j->name, false);
    if (x && strcmp(x->submitted, j->key) == 0)
        x->submitted[0] = '\0';
    pthread_mutex_unlock(&r->lock);
}

static void *ghreport_reader(void *arg) {
    struct ghreport *r = arg;

    pthread_mutex_lock(&r->lock);
    for (;;) {
        while (!r->jobs && !__atomic_load_n(&r->reader_stop, __ATOMIC_RELAXED))
            pthread_cond_wait(&r->wake, &r->lock);
        if (__atomic_load_n(&r->reader_stop, __ATOMIC_RELAXED))
            break;
        struct ghreport_job *j = r->jobs;
        if (!(r->jobs = j->next))
            r->jobs_tail = &r->jobs;
        r->njobs--;
        pthread_mutex_unlock(&r->lock);
        ghreport_process(r, j);
        ghreport_job_free(j);
        pthread_mutex_lock(&r->lock);
    }
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

static void ghreport_event(void *arg, enum watcher_event ev, const cJSON *obj) {
    struct ghreport *r = arg;
    const char *name;

    if (ev == WATCHER_RESYNCED || !obj)
        return;
    name = ghreport_str(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "name");
    if (!name)
        return;
    pthread_mutex_lock(&r->lock);
    if (ev == WATCHER_DELETED) {
        ghreport_forget(r, name);
    } else if (!r->stopping) {
        struct ghreport_run *x = ghreport_find(r, name, true);
        cJSON *copy = cJSON_Duplicate(obj, true);
        if (x && copy) {
            cJSON_Delete(x->obj);
            x->obj = copy;
            if (r->w && watcher_is_leader(r->w))
                ghreport_consider(r, x);
        } else {
            cJSON_Delete(copy);
            LOGGER_WARN_("github report: out of memory", "pipelinerun", name);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

/* A replica that takes the Lease reports whatever the runs it knows still lack. */
static void ghreport_leadership(void *arg, bool leading) {
    struct ghreport *r = arg;

    if (!leading)
        return;
    pthread_mutex_lock(&r->lock);
    for (struct ghreport_run *x = r->runs; x && !r->stopping; x = x->next)
        if (x->obj)
            ghreport_consider(r, x);
    pthread_mutex_unlock(&r->lock);
}

static void ghreport_patched(void *arg, int status, const char *body, size_t len) {
    struct ghreport *r = arg;
    (void)body;
    (void)len;
    if (status == 200)
        return;
    /* No lock: watcher_patch may answer inline, from under ghreport_done's caller. */
    __atomic_add_fetch(&r->patch_failed, 1, __ATOMIC_RELAXED);
    char code[16];
    snprintf(code, sizeof(code), "%d", status);
    LOGGER_WARN_("github report: cannot keep the reported state on the run", "status", code);
}

/* GitHub took an update: keep its check run id and state on the run. ghapi's thread. */
static void ghreport_done(void *arg, const struct ghapi_result *res) {
    struct ghreport *r = arg;
    const char *name = strchr(res->run, '/');
    char patch[512], id[80] = "", code[16], done_key[GHREPORT_KEY_MAX];
    bool go = false;

    if (res->outcome != GHAPI_DONE) {
        if (res->outcome == GHAPI_GAVE_UP) {
            snprintf(code, sizeof(code), "%d", res->http_status);
            LOGGER_WARN_("github report given up", "pipelinerun", res->run, "state", res->what,
                         "status", code);
        }
        return;
    }
    if (!name)
        return;
    name++;
    pthread_mutex_lock(&r->lock);
    if (!r->stopping && r->w) {
        const char *key = res->what;
        struct ghreport_run *x = ghreport_find(r, name, false);
        /* ghapi names a completed check run by its conclusion: ours says completed/it */
        if (r->app && x && strncmp(x->submitted, "completed/", 10) == 0 &&
            strcmp(x->submitted + 10, key) == 0)
            key = x->submitted;
        else if (r->app && strcmp(key, "queued") != 0 && strcmp(key, "in_progress") != 0)
            snprintf(done_key, sizeof(done_key), "completed/%s", key), key = done_key;
        if (res->check_run_id > 0)
            snprintf(id, sizeof(id), "\"" GHREPORT_ANN_CHECK_RUN "\":\"%lld\",",
                     res->check_run_id);
        snprintf(patch, sizeof(patch),
                 "{\"metadata\":{\"annotations\":{%s\"" GHREPORT_ANN_REPORTED "\":\"%s\"}}}", id,
                 key);
        go = true;
    }
    pthread_mutex_unlock(&r->lock);
    /*
     * Unlocked: watcher_patch may call ghreport_patched before it returns. r->w stays
     * valid: ghreport_stop joins this thread before the watcher is freed.
     */
    if (go) {
        LOGGER_INFO_("github report sent", "pipelinerun", res->run, "state", res->what);
        watcher_patch(r->w, name, patch, strlen(patch), ghreport_patched, r);
    }
}

int ghreport_new(const struct ghreport_config *cfg, struct watcher *w, struct ghreport **out,
                 char *err, size_t errlen) {
    struct ghreport *r = calloc(1, sizeof(*r));
    int rc;

    *out = NULL;
    if (!r)
        return GHE_NOMEM;
    pthread_mutex_init(&r->lock, NULL);
    pthread_mutex_init(&r->stats_lock, NULL);
    pthread_cond_init(&r->wake, NULL);
    r->jobs_tail = &r->jobs;
    r->cfg = *cfg;
    r->api_url = ghreport_dup(cfg->api_url ? cfg->api_url : "https://api.github.com");
    r->key_file = ghreport_dup(cfg->private_key_file);
    r->token_file = ghreport_dup(cfg->token_file);
    r->ca_file = ghreport_dup(cfg->ca_file);
    r->details_url = ghreport_dup(cfg->details_url);
    r->ns = ghreport_dup(cfg->namespace_ ? cfg->namespace_ : "default");
    r->w = w;
    r->kube = watcher_kube(w);
    struct ghauth_config ac = {.api_url = r->api_url,
                               .app_id = cfg->app_id,
                               .private_key_file = r->key_file,
                               .token_file = cfg->app_id > 0 ? NULL : r->token_file,
                               .ca_file = r->ca_file};
    if ((rc = ghauth_new(&ac, &r->auth, err, errlen)) != 0)
        goto fail;
    r->app = ghauth_is_app(r->auth);
    struct ghapi_config gc = {.auth = r->auth,
                              .api_url = r->api_url,
                              .ca_file = r->ca_file,
                              .queue_max = cfg->queue_max,
                              .max_attempts = cfg->max_attempts,
                              .done = ghreport_done,
                              .done_arg = r};
    if ((rc = ghapi_new(&gc, &r->g, err, errlen)) != 0)
        goto fail;
    if (r->app) {
        /* The reader takes no signals: they belong to main's handlers. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int prc = pthread_create(&r->reader, NULL, ghreport_reader, r);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (prc != 0) {
            snprintf(err, errlen, "github report: cannot start its reader thread");
            rc = GHE_NOMEM;
            goto fail;
        }
        r->reader_started = true;
    }
    if ((rc = watcher_subscribe(w, ghreport_event, ghreport_leadership, r)) != 0) {
        snprintf(err, errlen, "cannot subscribe to the PipelineRun watch");
        goto fail;
    }
    pthread_mutex_lock(&ghreport_current_lock);
    ghreport_current = r;
    pthread_mutex_unlock(&ghreport_current_lock);
    *out = r;
    return 0;
fail:
    ghreport_free(r);
    return rc;
}

void ghreport_stop(struct ghreport *r) {
    struct ghapi *g;

    if (!r)
        return;
    pthread_mutex_lock(&ghreport_current_lock);
    if (ghreport_current == r)
        ghreport_current = NULL;
    pthread_mutex_unlock(&ghreport_current_lock);
    pthread_mutex_lock(&r->lock);
    r->stopping = true;
    __atomic_store_n(&r->reader_stop, true, __ATOMIC_RELAXED);
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->lock);
    /* First the reader, which submits to g; a read in progress sees reader_stop. */
    if (r->reader_started) {
        pthread_join(r->reader, NULL);
        r->reader_started = false;
    }
    pthread_mutex_lock(&r->lock);
    /* Jobs not sent are dropped: the runs' annotations say what is left to report. */
    while (r->jobs) {
        struct ghreport_job *j = r->jobs;
        r->jobs = j->next;
        ghreport_job_free(j);
    }
    r->jobs_tail = &r->jobs;
    r->njobs = 0;
    g = r->g;
    r->g = NULL;
    pthread_mutex_unlock(&r->lock);
    pthread_mutex_lock(&r->stats_lock);
    ghapi_free(g);
    pthread_mutex_unlock(&r->stats_lock);
}

void ghreport_free(struct ghreport *r) {
    if (!r)
        return;
    ghreport_stop(r);
    while (r->runs)
        ghreport_forget(r, r->runs->name);
    ghauth_free(r->auth);
    free(r->api_url);
    free(r->key_file);
    free(r->token_file);
    free(r->ca_file);
    free(r->details_url);
    free(r->ns);
    pthread_mutex_destroy(&r->lock);
    pthread_mutex_destroy(&r->stats_lock);
    pthread_cond_destroy(&r->wake);
    free(r);
}

void ghreport_stats(struct ghreport *r, struct ghreport_stats *out) {
    struct ghapi_stats s = {0};

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&r->stats_lock);
    pthread_mutex_lock(&r->lock);
    struct ghapi *g = r->g;
    out->patch_failed = __atomic_load_n(&r->patch_failed, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&r->lock);
    if (g)
        ghapi_stats(g, &s);
    pthread_mutex_unlock(&r->stats_lock);
    out->submitted = s.submitted;
    out->done = s.done;
    out->gave_up = s.gave_up;
    out->superseded = s.superseded;
    out->queue_full = s.queue_full;
    out->rate_limited = s.rate_limited;
    out->retried = s.retried;
    out->requests = s.requests;
    out->token_fetches = r->auth && r->app ? ghauth_fetch_count(r->auth) : 0;
}

int ghreport_metrics_append(struct buf *b) {
    struct ghreport_stats s;
    int rc;

    pthread_mutex_lock(&ghreport_current_lock);
    if (!ghreport_current) {
        pthread_mutex_unlock(&ghreport_current_lock);
        return 0;
    }
    ghreport_stats(ghreport_current, &s);
    pthread_mutex_unlock(&ghreport_current_lock);
    rc = buf_appendf(b,
                     "# HELP gpuhook_github_updates_total GitHub updates (check runs, statuses) "
                     "by outcome.\n# TYPE gpuhook_github_updates_total counter\n"
                     "gpuhook_github_updates_total{outcome=\"submitted\"} %lu\n"
                     "gpuhook_github_updates_total{outcome=\"done\"} %lu\n"
                     "gpuhook_github_updates_total{outcome=\"gave_up\"} %lu\n"
                     "gpuhook_github_updates_total{outcome=\"superseded\"} %lu\n",
                     s.submitted, s.done, s.gave_up, s.superseded);
    if (!rc)
        rc = buf_appendf(
            b,
            "# HELP gpuhook_github_requests_total Requests sent to GitHub's API.\n"
            "# TYPE gpuhook_github_requests_total counter\ngpuhook_github_requests_total %lu\n"
            "# HELP gpuhook_github_retries_total GitHub requests retried (5xx, network).\n"
            "# TYPE gpuhook_github_retries_total counter\ngpuhook_github_retries_total %lu\n"
            "# HELP gpuhook_github_rate_limited_total GitHub answers that were rate limits.\n"
            "# TYPE gpuhook_github_rate_limited_total counter\n"
            "gpuhook_github_rate_limited_total %lu\n"
            "# HELP gpuhook_github_queue_full_total Updates refused: the queue was full.\n"
            "# TYPE gpuhook_github_queue_full_total counter\n"
            "gpuhook_github_queue_full_total %lu\n"
            "# HELP gpuhook_github_token_fetches_total Installation tokens fetched.\n"
            "# TYPE gpuhook_github_token_fetches_total counter\n"
            "gpuhook_github_token_fetches_total %lu\n"
            "# HELP gpuhook_github_annotation_patch_failures_total Reported states that could "
            "not be kept on the run.\n"
            "# TYPE gpuhook_github_annotation_patch_failures_total counter\n"
            "gpuhook_github_annotation_patch_failures_total %lu\n",
            s.requests, s.retried, s.rate_limited, s.queue_full, s.token_fetches, s.patch_failed);
    return rc;
}
