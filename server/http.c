#include "gpuhook/http.h"
#include "gpuhook/app.h"
#include "gpuhook/bodybudget.h"
#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/config.h"
#include "gpuhook/connguard.h"
#include "gpuhook/fileio.h"
#include "gpuhook/ids.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#define HTTP_OUT_MAX (8 * 1024 * 1024)
#define HTTP_SMALL_BODY_MAX 4096
#define HTTP_DISCARD_MAX (1024 * 1024)
#define HTTP_TLS_FILE_MAX (1024 * 1024)

/* Who lets a suspended answer go: the route's resume, or the access handler. */
enum { HTTP_PHASE_RUNNING, HTTP_PHASE_SUSPENDED, HTTP_PHASE_READY };

struct http_server {
    struct MHD_Daemon *daemon;
    struct app *app;
    const struct http_routes *routes;
    struct connguard *guard;
    int port;
    char *tls_key;
    char *tls_cert;
    atomic_long in_flight; /* requests between http_access's first call and their free */
    atomic_bool stopping;  /* /readyz says no from the moment shutdown begins */
};

static long http_now_ms(void) { return (long)clock_mono_ms(); }

bool http_request_stopping(const struct http_request *req) {
    return req->server && atomic_load(&req->server->stopping);
}

const char *http_request_header(const struct http_request *req, const char *name) {
    for (size_t i = 0; i < req->header_count; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

void http_request_error(struct http_request *req, int status, const char *fmt, ...) {
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    const char *fields[] = {"error", msg, NULL};
    http_request_fields(req, status, fields);
}

void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
                  size_t len) {
    req->out.len = 0;
    req->content_type = content_type;
    req->status = status;
    if (len && buf_append(&req->out, body, len) != 0) {
        req->content_type = NULL;
        http_request_error(req, 500, "the response does not fit its buffer");
        return;
    }
    req->responded = true;
}

void http_respond_header(struct http_request *req, const char *name, const char *value) {
    if (req->extra_count < HTTP_EXTRA_HEADERS) {
        req->extra[req->extra_count].name = name;
        req->extra[req->extra_count].value = value;
        req->extra_count++;
    }
}

void http_request_log(struct http_request *req, const char *key, const char *value) {
    for (size_t i = 0; i < HTTP_LOG_FIELDS; i++) {
        if (!req->log[i].key || strcmp(req->log[i].key, key) == 0) {
            req->log[i].key = key;
            buf_copy_str(req->log[i].value, sizeof(req->log[i].value), value ? value : "");
            return;
        }
    }
}

const char *http_request_arg(const struct http_request *req, const char *key) {
    for (size_t i = 0; i < req->arg_count; i++)
        if (strcmp(req->args[i][0], key) == 0)
            return req->args[i][1] ? req->args[i][1] : "";
    return NULL;
}

bool http_request_flag(const struct http_request *req, const char *key) {
    const char *v = http_request_arg(req, key);
    return v && (!*v || strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

void http_request_json(struct http_request *req, int status, const cJSON *obj) {
    char *s = cJSON_PrintUnformatted(obj);
    req->out.len = 0;
    req->content_type = NULL;
    if (!s) {
        http_request_error(req, 500, "out of memory");
        return;
    }
    req->status = status;
    buf_appends(&req->out, s);
    free(s);
    if (cJSON_IsObject(obj) && req->out.len > 1 && req->out.data[req->out.len - 1] == '}') {
        req->out.len--;
        buf_appendf(&req->out, "%s\"request_id\":\"%s\"}", cJSON_GetArraySize(obj) ? "," : "",
                    req->request_id);
    }
    req->responded = true;
}

void http_request_fields(struct http_request *req, int status, const char *const *fields) {
    int rc = 0;

    req->out.len = 0;
    req->content_type = NULL;
    rc = buf_append(&req->out, "{", 1);
    for (const char *const *f = fields; *f && !rc; f += 2) {
        if (!f[1])
            continue;
        if (!(rc = buf_append(&req->out, "\"", 1)) &&
            !(rc = buf_append_json_escaped(&req->out, f[0], strlen(f[0]))) &&
            !(rc = buf_append(&req->out, "\":\"", 3)) &&
            !(rc = buf_append_json_escaped(&req->out, f[1], strlen(f[1]))))
            rc = buf_append(&req->out, "\",", 2);
    }
    if (!rc && !(rc = buf_appends(&req->out, "\"request_id\":\"")) &&
        !(rc = buf_appends(&req->out, req->request_id)))
        rc = buf_append(&req->out, "\"}", 2);
    /* Out of memory: the status alone goes, with an empty body. */
    if (rc)
        req->out.len = 0;
    req->status = rc ? 500 : status;
    req->responded = true;
}

void http_request_add_header(struct http_request *req, const char *name, const char *value) {
    if (strcasecmp(name, "Content-Length") == 0)
        req->content_length_count++;
    if (strcasecmp(name, "Transfer-Encoding") == 0)
        req->has_transfer_encoding = true;
    if (req->header_count < HTTP_MAX_HEADERS) {
        req->headers[req->header_count].name = name;
        req->headers[req->header_count].value = value ? value : "";
        req->header_count++;
    }
}

void http_request_refuse_nul(struct http_request *req, const char *name) {
    if (!req->nul_header)
        req->nul_header = name;
}

void http_request_add_arg(struct http_request *req, const char *key, const char *value) {
    if (req->arg_count < HTTP_MAX_ARGS) {
        req->args[req->arg_count][0] = key;
        req->args[req->arg_count][1] = value;
        req->arg_count++;
    }
}

/*
 * libmicrohttpd 0.9.75 takes a header's value as the C string that starts
 * after the colon, so a NUL inside the value silently cuts it short, and the
 * sizes it reports are those of the cut string. It parses the header block in
 * place in one buffer, line after line, writing NUL over each line's CR and
 * LF. So between the end of one value and the start of the next name there
 * are only NULs and blanks, and after the last value a NUL, CR or LF, unless a
 * NUL inside the value ended it early: then the rest of its line follows.
 * http_collect_header walks the headers in the order they came to check that.
 */
struct http_collect {
    struct http_request *req;
    const char *prev_key;
    const char *prev_end; /* the NUL ending the previous value */
};

static bool http_gap_blank(const char *p, const char *end) {
    for (; p < end; p++)
        if (*p != '\0' && *p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
            return false;
    return true;
}

static void http_collect_check(struct http_collect *c, const char *next_key) {
    if (!c->prev_end)
        return;
    const char *p = c->prev_end + 1;
    bool cut;
    if (next_key) /* far apart or out of order means another buffer: no verdict */
        cut = next_key > p && next_key - p < 16384 && !http_gap_blank(p, next_key);
    else
        cut = !http_gap_blank(p, p + 1);
    if (cut)
        http_request_refuse_nul(c->req, c->prev_key);
}

static enum MHD_Result http_collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                           size_t key_size, const char *value, size_t value_size) {
    struct http_collect *c = cls;
    (void)kind;
    http_collect_check(c, key);
    if (strlen(key) != key_size || (value && strlen(value) != value_size))
        http_request_refuse_nul(c->req, key);
    /* An empty value may be a constant "" outside the buffer. */
    c->prev_key = key;
    c->prev_end = value && value_size ? value + value_size : NULL;
    http_request_add_header(c->req, key, value);
    return MHD_YES;
}

static enum MHD_Result http_collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value) {
    (void)kind;
    http_request_add_arg(cls, key, value);
    return MHD_YES;
}

/* Echoes a client's X-Request-Id when it is short and plain, else makes one. */
static void http_request_id(struct http_request *req) {
    static const char hex[] = "0123456789abcdef";
    const char *given = http_request_header(req, "X-Request-Id");
    if (given && *given && strlen(given) < sizeof(req->request_id)) {
        bool ok = true;
        for (const char *p = given; *p && ok; p++)
            ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                 *p == '-' || *p == '_' || *p == '.' || *p == ':';
        if (ok) {
            buf_copy_str(req->request_id, sizeof(req->request_id), given);
            return;
        }
    }
    uint64_t a = ids_fast_random(), b = ids_fast_random();
    for (int i = 0; i < 16; i++)
        req->request_id[i] = hex[(a >> (4 * i)) & 15];
    for (int i = 0; i < 8; i++)
        req->request_id[16 + i] = hex[(b >> (4 * i)) & 15];
    req->request_id[24] = '\0';
}

static const struct http_route *http_find_route(const struct http_routes *routes,
                                                const char *path) {
    for (size_t i = 0; routes && i < routes->count; i++)
        if (strcmp(routes->list[i]->path, path) == 0)
            return routes->list[i];
    return NULL;
}

static enum MHD_Result http_queue(struct MHD_Connection *conn, struct http_request *req,
                                  bool close) {
    size_t len = 0;
    char *body = buf_detach(&req->out, &len);
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    const char *ctype = req->content_type ? req->content_type : "application/json";
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (req->allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, req->allow);
    if (req->retry_after) {
        char ra[16];
        snprintf(ra, sizeof(ra), "%d", req->retry_after);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, ra);
    }
    for (size_t i = 0; i < req->extra_count; i++)
        MHD_add_response_header(resp, req->extra[i].name, req->extra[i].value);
    if (close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    /* Counted before the response leaves, so a client that reads /metrics next sees it. */
    metrics_http_observe(req->route_name, req->status,
                         (double)(http_now_ms() - req->start_ms) / 1000.0);
    req->observed = true;
    enum MHD_Result r = MHD_queue_response(conn, (unsigned int)req->status, resp);
    MHD_destroy_response(resp);
    return r;
}

struct http_request *http_request_new(struct app *app, const struct http_routes *routes,
                                      const char *method, const char *path) {
    struct http_request *req = calloc(1, sizeof(*req));
    if (!req)
        return NULL;
    req->app = app;
    req->cfg = app_config(app);
    req->method = method;
    req->path = path;
    req->routes = routes;
    req->route_name = "other";
    req->start_ms = http_now_ms();
    req->content_length = -1;
    buf_init(&req->out, HTTP_OUT_MAX);
    buf_init(&req->body, (size_t)req->cfg->max_body_bytes);
    return req;
}

/* Body limits apply to every route: /trigger's is small, /webhook's is the config's. */
static bool http_body_limit(struct http_request *req, long long max) {
    if (req->content_length > max) {
        http_request_error(req, 413, "request body of %lld bytes exceeds the limit of %lld bytes",
                           req->content_length, max);
        return true;
    }
    return false;
}

bool http_request_begin(struct http_request *req) {
    const char *cl = http_request_header(req, "Content-Length");
    if (cl) {
        char *end = NULL;
        long long v = strtoll(cl, &end, 10);
        req->content_length = *cl && end && *end == '\0' && v >= 0 ? v : -2;
    }
    http_request_id(req);
    const struct http_route *r = http_find_route(req->routes, req->path);
    bool has_body = req->content_length > 0 || req->has_transfer_encoding;
    if (r)
        req->route_name = r->name;
    if (req->nul_header) {
        http_request_error(req, 400, "header %s contains a NUL byte", req->nul_header);
        req->close = true;
        return true;
    }
    /* Ambiguous framing is how requests get smuggled: refuse it outright. */
    if (req->content_length_count > 1 ||
        (req->content_length_count && req->has_transfer_encoding) || req->content_length == -2) {
        http_request_error(req, 400,
                           "conflicting or invalid Content-Length and "
                           "Transfer-Encoding headers");
        req->close = true;
        return true;
    }
    if (!r) {
        http_request_error(req, 404, "no such endpoint: %s", req->path);
        req->close = has_body;
        return true;
    }
    bool head = strcmp(req->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0;
    if (strcmp(req->method, r->method) != 0 && !head) {
        req->allow = r->allow;
        http_request_error(req, 405, "method %s is not allowed on %s; use %s", req->method,
                           req->path, r->allow);
        req->close = has_body;
        return true;
    }
    /* The route's state lives from here to http_request_free. */
    req->route = r;
    if (r->state_size && !(req->state = calloc(1, r->state_size))) {
        req->route = NULL;
        http_request_error(req, 500, "out of memory");
        req->close = true;
        return true;
    }
    long long max = r->body_max == HTTP_BODY_MAX_CONFIG ? req->cfg->max_body_bytes
                    : r->body_max                       ? r->body_max
                                                        : HTTP_SMALL_BODY_MAX;
    req->body.max = (size_t)max;
    bool early =
        http_body_limit(req, max) || (r->begin && r->begin(req, req->state) == HTTP_RESPONDED);
    req->close = early;
    return early;
}

bool http_request_upload(struct http_request *req, const char *data, size_t n) {
    if (req->discarded || req->responded) {
        /*
         * libmicrohttpd 0.9.75 cannot queue a response while a body is still
         * arriving, so the rest of an oversized body is read and dropped, up
         * to the limit plus 1 MiB, then answered with 413 and a close. A
         * client that keeps sending is cut off.
         */
        req->discarded += n;
        return req->discarded <= req->body.max + HTTP_DISCARD_MAX;
    }
    bool done;
    if (req->route && req->route->upload) {
        done = req->route->upload(req, req->state, data, n) == HTTP_RESPONDED;
    } else {
        done = buf_append(&req->body, data, n) != 0;
        if (done)
            http_request_error(req, 413, "request body exceeds the limit of %zu bytes",
                               req->body.max);
    }
    if (done) {
        req->discarded = n;
        req->close = true;
        http_request_body_release(req);
        buf_cleanup(&req->body);
    }
    return true;
}

/* Runs the route's finish; true when its answer comes later (through http_request_resume). */
static bool http_request_run(struct http_request *req) {
    if (req->discarded || req->responded)
        return false;
    enum http_step step = HTTP_RESPONDED;
    if (req->route && req->route->finish) {
        req->deferred = true; /* a resume from here on finds the phase to set */
        step = req->route->finish(req, req->state);
    }
    if (step != HTTP_SUSPENDED) {
        req->deferred = false;
        req->responded = true;
        return false;
    }
    /* Answered before finish returned (an inline delivery): nothing to wait for. */
    if (atomic_load(&req->phase) == HTTP_PHASE_READY) {
        req->deferred = false;
        req->responded = true;
        return false;
    }
    return true;
}

void http_request_finish(struct http_request *req) {
    if (!http_request_run(req))
        return;
    /* Without a connection (tests, fuzzers): wait here for the answer. */
    while (atomic_load(&req->phase) != HTTP_PHASE_READY) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
    }
    req->deferred = false;
    req->responded = true;
}

void http_request_resume(struct http_request *req) {
    /* The phase's exchange publishes the response; the serving thread sets responded. */
    if (atomic_exchange(&req->phase, HTTP_PHASE_READY) == HTTP_PHASE_SUSPENDED)
        MHD_resume_connection(req->conn);
}

static enum MHD_Result http_access(void *cls, struct MHD_Connection *conn, const char *url,
                                   const char *method, const char *version, const char *upload_data,
                                   size_t *upload_data_size, void **req_cls) {
    struct http_server *server = cls;
    struct http_request *req = *req_cls;
    (void)version;

    if (!req) {
        req = http_request_new(server->app, server->routes, method, url);
        if (!req)
            return MHD_NO;
        req->server = server;
        atomic_fetch_add(&server->in_flight, 1);
        *req_cls = req;
        connguard_headers_done(conn);
        struct http_collect collect = {req, NULL, NULL};
        MHD_get_connection_values_n(conn, MHD_HEADER_KIND, http_collect_header, &collect);
        http_collect_check(&collect, NULL);
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, http_collect_arg, req);
        if (http_request_begin(req))
            return http_queue(conn, req, req->close);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        connguard_body_bytes(conn, n);
        return http_request_upload(req, upload_data, n) ? MHD_YES : MHD_NO;
    }
    if (req->deferred)
        return atomic_load(&req->phase) == HTTP_PHASE_READY ? http_queue(conn, req, req->close)
                                                            : MHD_YES;
    if (req->responded && !req->discarded)
        return MHD_YES;
    req->conn = conn;
    if (http_request_run(req)) {
        /* The answer comes from another thread: suspend, unless it came meanwhile. */
        connguard_waiting(conn, true);
        MHD_suspend_connection(conn);
        int running = HTTP_PHASE_RUNNING;
        if (!atomic_compare_exchange_strong(&req->phase, &running, HTTP_PHASE_SUSPENDED))
            MHD_resume_connection(conn);
        return MHD_YES;
    }
    return http_queue(conn, req, req->close);
}

void http_request_body_release(struct http_request *req) {
    bodybudget_give(req->body_budget);
    req->body_budget = 0;
}

void http_request_free(struct http_request *req) {
    http_request_body_release(req);
    if (req->route && req->route->cleanup)
        req->route->cleanup(req, req->state);
    free(req->state);
    buf_cleanup(&req->body);
    buf_cleanup(&req->out);
    config_unref(req->cfg);
    struct http_server *server = req->server;
    free(req);
    if (server)
        atomic_fetch_sub(&server->in_flight, 1);
}

static void http_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                           enum MHD_RequestTerminationCode toe) {
    struct http_request *req = *req_cls;
    (void)cls;
    connguard_request_done(conn);
    if (!req)
        return;
    long ms = http_now_ms() - req->start_ms;
    char status[16], dur[32];
    if (!req->observed)
        metrics_http_observe(req->route_name, req->status, (double)ms / 1000.0);
    int level = req->status >= 500 ? LOGGER_WARN : LOGGER_INFO;
    if (logger_enabled(level)) {
        /* The access log; at a quieter log level not even its fields are formatted. */
        snprintf(status, sizeof(status), "%d", req->status);
        snprintf(dur, sizeof(dur), "%ld", ms);
#define HTTP_LOG_KV(i)                                                                             \
    req->log[i].key ? req->log[i].key : "-", req->log[i].key ? req->log[i].value : NULL
        logger_write(level, "request", "request_id", req->request_id, "method", req->method, "path",
                     req->route_name, "status", status, "duration_ms", dur, HTTP_LOG_KV(0),
                     HTTP_LOG_KV(1), HTTP_LOG_KV(2), HTTP_LOG_KV(3), "termination",
                     toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? NULL : "aborted",
                     (const char *)NULL);
#undef HTTP_LOG_KV
    }
    http_request_free(req);
    *req_cls = NULL;
}

static void http_mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == '\n')
        msg[--n] = '\0';
    LOGGER_DEBUG_("libmicrohttpd", "detail", msg);
}

/*
 * Decodes %XX in the path and query in place, except where that would make a
 * NUL: such a string stays as sent, so "/healthz%00" matches no route (404)
 * instead of being cut to "/healthz".
 */
static size_t http_unescape(void *cls, struct MHD_Connection *conn, char *s) {
    (void)cls;
    (void)conn;
    for (const char *p = s; (p = strchr(p, '%')) != NULL; p++)
        if (p[1] == '0' && p[2] == '0')
            return strlen(s);
    return MHD_http_unescape(s);
}

/*
 * Raises the soft descriptor limit to the hard one where the system allows,
 * and returns how many connections fit: each needs one descriptor, and the
 * process keeps about 64 for itself (listeners, epoll, files, the API).
 */
static long http_fd_room(long want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return want;
    if (rl.rlim_cur < rl.rlim_max && rl.rlim_cur < (rlim_t)want + 64) {
        struct rlimit up = rl;
        up.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > (rlim_t)want + 64
                          ? (rlim_t)want + 64
                          : rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)want + 64)
        return want;
    return rl.rlim_cur > 128 ? (long)rl.rlim_cur - 64 : 64;
}

/* A TLS file, whole: one larger than 1 MiB is an error, never cut short. */
static char *http_read_file(const char *path, struct errlist *el) {
    char *s = NULL, err[512] = "";
    size_t len = 0;
    if (fileio_read(path, HTTP_TLS_FILE_MAX, 0, &s, &len, err, sizeof(err)) != 0) {
        errlist_add(el, "tls: %s", err[0] ? err : path);
        return NULL;
    }
    return s;
}

struct http_server *http_server_start(struct app *app, const struct http_routes *routes,
                                      const struct config *cfg, struct errlist *el) {
    struct http_server *s = calloc(1, sizeof(*s));
    struct addrinfo hints = {0}, *ai = NULL;
    char port[16];
    /*
     * An epoll thread pool serves every connection without blocking. A delivery
     * that waits suspends its connection: API calls go to the API client's loop
     * thread, and work that may block (local mode, spooling) to the work pool.
     * Turbo: optimistic reads and writes, no shutdown() before close.
     */
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | MHD_USE_ITC | MHD_USE_TURBO;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned int threads = ncpu < 2 ? 2 : ncpu > 16 ? 16 : (unsigned int)ncpu;

    if (!s)
        return NULL;
    s->app = app;
    s->routes = routes;
    /* The request metrics are labelled with the table's names, whatever routes it holds. */
    const char *names[64];
    size_t nnames = 0;
    for (size_t i = 0; i < routes->count && nnames < 64; i++)
        names[nnames++] = routes->list[i]->name;
    metrics_set_routes(names, nnames);
    long conns = http_fd_room(cfg->max_connections);
    if (conns < cfg->max_connections) {
        char want[32], got[32];
        snprintf(want, sizeof(want), "%ld", cfg->max_connections);
        snprintf(got, sizeof(got), "%ld", conns);
        LOGGER_WARN_("the descriptor limit is below max_connections; serving fewer",
                     "max_connections", want, "connections", got);
    }
    struct connguard_limits limits = {cfg->header_timeout_seconds * 1000L,
                                      cfg->min_body_bytes_per_second, conns};
    s->guard = connguard_new(&limits);
    if (!s->guard) {
        free(s);
        return NULL;
    }
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    snprintf(port, sizeof(port), "%d", cfg->listen_port);
    const char *host = cfg->listen_host;
    if (host[0] == '[') {
        /* [::1]:8080 */
        static char bare[64];
        snprintf(bare, sizeof(bare), "%.*s", (int)strlen(host) - 2, host + 1);
        host = bare;
    }
    int gai = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, port, &hints, &ai);
    if (gai != 0) {
        errlist_add(el, "listen %s: %s", cfg->listen, gai_strerror(gai));
        connguard_free(s->guard);
        free(s);
        return NULL;
    }
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    if (cfg->tls_cert_file) {
        s->tls_cert = http_read_file(cfg->tls_cert_file, el);
        s->tls_key = s->tls_cert ? http_read_file(cfg->tls_key_file, el) : NULL;
        if (!s->tls_cert || !s->tls_key)
            goto fail;
        flags |= MHD_USE_TLS;
    }
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, http_access, s, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)conns,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)15, MHD_OPTION_NOTIFY_CONNECTION,
        connguard_notify, s->guard, MHD_OPTION_UNESCAPE_CALLBACK, http_unescape, NULL,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16 * 1024), MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)(1024 * 1024), MHD_OPTION_NOTIFY_COMPLETED, http_completed, NULL,
        MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL,
        s->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, s->tls_cert,
        MHD_OPTION_HTTPS_MEM_KEY, s->tls_key, MHD_OPTION_END);
    if (!s->daemon) {
        errlist_add(el, "listen %s: cannot start the HTTP server (address in use?)", cfg->listen);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : cfg->listen_port;
    freeaddrinfo(ai);
    return s;
fail:
    freeaddrinfo(ai);
    connguard_free(s->guard);
    free(s->tls_cert);
    free(s->tls_key);
    free(s);
    return NULL;
}

int http_server_port(const struct http_server *s) { return s->port; }

bool http_server_stop(struct http_server *s, long grace_seconds) {
    if (!s)
        return true;
    atomic_store(&s->stopping, true);
    /* Stop accepting first, then let requests in flight finish within the grace period. */
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    long deadline = http_now_ms() + grace_seconds * 1000L;
    while (atomic_load(&s->in_flight) > 0 && http_now_ms() < deadline) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    long left = atomic_load(&s->in_flight);
    if (left > 0) {
        /* Requests still hold suspended connections and pool threads: stopping the
         * daemon under them is unsafe, so leave them to the process's exit. */
        char n[32];
        snprintf(n, sizeof(n), "%ld", left);
        LOGGER_WARN_("grace period over with requests in flight", "requests", n);
        return false;
    }
    MHD_stop_daemon(s->daemon);
    connguard_free(s->guard);
    if (s->tls_key)
        explicit_bzero(s->tls_key, strlen(s->tls_key));
    free(s->tls_key);
    free(s->tls_cert);
    free(s);
    return true;
}
