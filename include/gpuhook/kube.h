/*
 * The Kubernetes API client: creates PipelineRuns with POST ...?fieldValidation=Strict,
 * deciding what each answer means through one table (below), retrying what it calls
 * RETRY with exponential backoff and jitter inside a deadline, honouring Retry-After
 * (both forms, clamped), and reading the object back with a GET after AlreadyExists. Each client
 * runs one loop thread that drives every create through a curl multi handle, so one wake-up serves
 * many calls, retries wait without holding a thread, and the multi's connection cache keeps
 * connections to the API server alive between calls. It re-reads the bearer token when
 * the file changes and at once after a 401, verifies TLS always, allows only http and
 * https and ignores *_proxy variables. It never spools: that is the delivery module's
 * decision.
 */
#ifndef GPUHOOK_KUBE_H
#define GPUHOOK_KUBE_H

#include <stdbool.h>
#include <stddef.h>

struct config;
struct errlist;

struct kube;

/*
 * The one table of API answers (kube_answer_of), used by the direct path, the spool and
 * /readyz alike:
 *   201                      CREATED  whatever the body's size (the body is not needed)
 *   409 reason AlreadyExists EXISTS   the object is read back (GET) for its variant
 *   400, 413, 415, 422       REFUSED  the object itself is refused: final, kept in failed/
 *   401                      UNAUTHORIZED  the token is re-read and the create retried once;
 *                                     then the run is spooled
 *   403, 404                 BLOCKED  RBAC, a missing namespace or CRD: spooled, retried with
 *                                     a capped backoff, reported by /readyz and a metric
 *   0, 408, 409 (any other reason), 429, 5xx, anything else
 *                            RETRY    retried with backoff (or Retry-After) inside the
 *                                     deadline, then spooled
 * RETRY is 0, so a result nobody filled in never counts as delivered.
 */
enum kube_answer {
    KUBE_ANSWER_RETRY = 0,
    KUBE_ANSWER_CREATED,
    KUBE_ANSWER_EXISTS,
    KUBE_ANSWER_UNAUTHORIZED,
    KUBE_ANSWER_BLOCKED,
    KUBE_ANSWER_REFUSED,
};

/* The answer class of an HTTP status and the Status object's reason (may be NULL). */
int kube_answer_of(int status, const char *reason);
/* "retry", "created", "exists", "unauthorized", "blocked", "refused". */
const char *kube_answer_name(int answer);

struct kube_result {
    int status; /* last HTTP status, 0 when no answer came */
    int attempts;
    int answer;             /* enum kube_answer of the last answer */
    long retry_after_s;     /* the last answer's Retry-After in seconds (clamped), -1 when none */
    char reason[64];        /* the Status object's reason, "" when none */
    char message[512];      /* the API's Status message, or the transport error */
    char status_json[2048]; /* the Status object as the API sent it, "" when none or larger */
    /* After 409 AlreadyExists: the existing object, read back with a GET. */
    bool existing;                 /* the GET answered 200 */
    char existing_variant[16];     /* its gpuhook.dev/variant label */
    char existing_fingerprint[72]; /* its gpuhook.dev/request-sha256 annotation */
    char existing_rule[128];       /* its gpuhook.dev/rule annotation */
};

/*
 * Builds a client for cfg's url or in-cluster mode. In-cluster reads
 * KUBERNETES_SERVICE_HOST/PORT and the service-account folder
 * ($GPUHOOK_SERVICEACCOUNT_DIR or /var/run/secrets/kubernetes.io/serviceaccount).
 * Returns 0 and sets *out, or an error with messages in el.
 */
int kube_new(const struct config *cfg, struct kube **out, struct errlist *el);
/*
 * Stops the loop thread and frees the client. Every create still queued, waiting for
 * a retry or in flight completes first, with status 0 and the message "the API client
 * is shutting down". No call may be started on k once kube_free has begun, and
 * kube_free must not be called from a kube_done_fn.
 */
void kube_free(struct kube *k);
/*
 * Stops the loop thread the same way, without freeing: every create queued, waiting or
 * in flight completes at once with the shutting-down message, and later creates fail
 * the same way, synchronously. For a shutdown that must not wait out a retry deadline
 * (the spool's attempts, 5 s each). Idempotent; kube_free still frees.
 */
void kube_stop(struct kube *k);

/* The namespace runs are created in (config, or the service account's). */
const char *kube_namespace(const struct kube *k);

/* Receives a create's final result; r is valid only during the call. */
typedef void (*kube_done_fn)(void *arg, const struct kube_result *r);

/*
 * Starts creating one PipelineRun (JSON text) in ns, posted to tekton.dev/v1beta1 when the
 * text starts with that apiVersion (as templates render it) and to tekton.dev/v1 otherwise,
 * with exactly the retry semantics of
 * kube_create (below). done runs exactly once with the final result, on the client's
 * loop thread (or before this returns, when the job cannot be started: then r->status is 0
 * and r->message says why). json must stay valid and unchanged until done runs; ns is
 * copied. done must not block for long: it holds up every other API call. Safe to call
 * from any number of threads at once. Returns 0, or GHE_NOMEM or GHE_UNAVAILABLE (shutting
 * down) after done has run.
 */
int kube_create_async(struct kube *k, const char *ns, const char *json, size_t len,
                      long deadline_ms, kube_done_fn done, void *arg);

/*
 * Creates one object (JSON text) in ns, retrying what the table above calls RETRY
 * (and a 401 once, after re-reading the token) until deadline_ms elapses. Returns 0
 * with r->status and r->answer set to the final answer, or 0 when none came, or an error
 * with r filled as by kube_create_async. Blocks; never call it from a kube_done_fn.
 */
int kube_create(struct kube *k, const char *ns, const char *json, size_t len, long deadline_ms,
                struct kube_result *r);

/*
 * True while the API's last word on a create was 403 or 404 (no create has got through
 * since); copies that status and its message out.
 */
bool kube_blocked(struct kube *k, int *status, char *msg, size_t msglen);

/* Fills r->existing* from an object's JSON text (the variant label, the fingerprint). */
void kube_existing_read(const char *json, size_t len, struct kube_result *r);

/* Checks GET /readyz with the configured auth. Returns 0 when it answers 200. */
int kube_probe(struct kube *k, char *detail, size_t detail_len);

#endif

/* The API server's URL without a trailing slash ("https://10.0.0.1:443"). */
const char *kube_base_url(const struct kube *k);

/*
 * Sets on h (a CURL easy handle) the connection options every request of this client uses (http and https
 * only, no redirects, the configured proxy or none, TLS verified against the CA file,
 * keepalive, the user agent) and appends the bearer token's Authorization header to
 * *headers (re-reading the token file when it changed, checked at most every 10 s, or at
 * once with reread_token: pass true after a 401). The caller sets the URL (from
 * kube_base_url), the method, its other headers and CURLOPT_HTTPHEADER, and frees
 * *headers after the transfer with curl_slist_free_all (zeroing it first: it holds the
 * token). Safe from any thread. Returns 0 or GHE_NOMEM.
 */
struct curl_slist;
int kube_conn_apply(struct kube *k, void *h, struct curl_slist **headers, bool reread_token);
