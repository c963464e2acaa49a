/*
 * The GitHub reporting client: a queue of updates ("the check run of run R is
 * now in state S", or "the commit status of R is S") sent by one thread of
 * its own with one curl multi handle, so that no call ever waits for GitHub.
 *
 * Updates of one run are sent one at a time, in the order submitted; a newer
 * update replaces one of the same run still waiting to be sent (the older is
 * reported GHAPI_SUPERSEDED), and an update being sent is never reordered
 * behind. App credentials report check runs (POST, then PATCH the id learnt,
 * or the id the caller already knows), token credentials commit statuses.
 *
 * Retries: 5xx and network errors back off exponentially with jitter; a
 * primary rate limit (X-RateLimit-Remaining: 0) waits for X-RateLimit-Reset
 * and a secondary one for Retry-After (a minute without one), for every run;
 * a 401 fetches a new installation token once. Other 4xx give up with one
 * log line (never a token, a JWT or a body) and a counter. A create whose
 * answer was lost is looked up by external_id before it is sent again.
 *
 * Not here: what the updates say (ghsummary.h), when they are sent (the
 * PipelineRun watch), where the check run id is kept (the run's annotation).
 */
#ifndef GPUHOOK_GHAPI_H
#define GPUHOOK_GHAPI_H
#include <stddef.h>

struct ghauth;
struct ghapi;

enum ghapi_kind { GHAPI_CHECK_RUN = 0, GHAPI_COMMIT_STATUS = 1 };

/* One update; every string is copied by ghapi_submit. */
struct ghapi_update {
    enum ghapi_kind kind;
    const char *run;   /* the key of ordering and coalescing: the PipelineRun's namespace/name */
    const char *owner; /* the repository */
    const char *repo;
    const char *head_sha;
    long long installation_id; /* App mode */
    long long check_run_id;    /* > 0: the run's check run, known (an annotation); 0: create */
    const char *name;          /* check run name or status context: "gpu / lite" */
    const char *details_url;   /* details_url, or the status's target_url; optional */
    /* Check runs. */
    const char *status;     /* queued, in_progress, completed */
    const char *conclusion; /* with completed: success, failure, cancelled, timed_out, ... */
    const char *external_id;
    const char *title; /* output.title and output.summary; both or neither */
    const char *summary;
    long long started_ms; /* unix ms; 0: not sent */
    long long completed_ms;
    /* Commit statuses. */
    const char *state;       /* pending, success, failure, error */
    const char *description; /* cut to 140 characters */
};

enum ghapi_outcome {
    GHAPI_DONE = 0,   /* GitHub took it */
    GHAPI_GAVE_UP,    /* refused (4xx), or retried max_attempts times */
    GHAPI_SUPERSEDED, /* replaced by a newer update of the same run before it was sent */
    GHAPI_STOPPED,    /* ghapi_free came first */
};

struct ghapi_result {
    const char *run;  /* valid during the call */
    const char *what; /* the update's status or state */
    enum ghapi_outcome outcome;
    long long check_run_id; /* the run's check run, when known */
    int http_status;        /* the last answer's; 0 for none */
    int attempts;
};

/*
 * Called once per submitted update, on ghapi's thread (on ghapi_free's caller's
 * for updates it stops); must not call ghapi_free. A token exchange blocks
 * that thread (never a webhook's) for up to its timeout.
 */
typedef void (*ghapi_done_fn)(void *arg, const struct ghapi_result *r);

struct ghapi_config {
    struct ghauth *auth;    /* borrowed; outlives the client */
    const char *api_url;    /* as ghauth's */
    const char *ca_file;    /* optional */
    const char *user_agent; /* default "gpuhook/VERSION" */
    size_t queue_max;       /* updates queued or in flight; default 1024 */
    int max_attempts;       /* per update, rate-limit waits not counted; default 10 */
    long backoff_base_ms;   /* first retry wait; doubles up to backoff_max_ms; default 1000 */
    long backoff_max_ms;    /* default 60000 */
    long timeout_ms;        /* one request; default 15000 */
    int conns;              /* requests in flight at once; default 4 */
    ghapi_done_fn done;     /* optional */
    void *done_arg;
};

/* Counters the wiring exports as metrics. */
struct ghapi_stats {
    unsigned long submitted, done, requests, retried, rate_limited, gave_up, superseded, queue_full;
};

/* Starts the client's thread. Returns 0 with *out, or an error with err filled. */
int ghapi_new(const struct ghapi_config *cfg, struct ghapi **out, char *err, size_t errlen);

/*
 * Queues one update (copied). Returns 0; GHE_INVAL for an update that lacks
 * what its kind needs; GHE_TOOBIG when queue_max updates wait already (the
 * update is not queued). err says which.
 */
int ghapi_submit(struct ghapi *g, const struct ghapi_update *u, char *err, size_t errlen);

void ghapi_stats(struct ghapi *g, struct ghapi_stats *out);

/* Stops the thread; updates not yet taken are reported GHAPI_STOPPED. NULL is fine. */
void ghapi_free(struct ghapi *g);

#endif
