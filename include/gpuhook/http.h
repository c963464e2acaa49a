/*
 * The HTTP layer over libmicrohttpd: an epoll thread pool serves every
 * connection, and a delivery that may block (the Kubernetes API, an fsync)
 * runs on a work pool with its connection suspended, so a slow API never
 * delays /healthz or /metrics. It
 * routes, enforces the body limit before reading, collects headers, gives each
 * request an ID, streams bodies to the route's handler, and writes one access
 * log line and the request metrics. Handlers fill struct http_request's
 * response fields; every body is JSON. Against clients without the secret:
 * bodies not yet verified draw from bodybudget.h's budget, connguard.h's
 * sweeper cuts slow connections, a NUL inside a header is refused (400) and
 * a path holding %00 matches no route (404).
 */
#ifndef GPUHOOK_HTTP_H
#define GPUHOOK_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/app.h"
#include "gpuhook/buf.h"
#include "gpuhook/event.h"
#include "gpuhook/signature.h"

#define HTTP_MAX_HEADERS 100

struct dispatch_pending;

struct http_request {
    struct app *app;
    struct config *cfg; /* a reference held for the whole request */
    const char *method;
    const char *path;
    const char *route; /* webhook, trigger, healthz, ... for metrics */
    int route_id;      /* index of the route, -1 when none matched */
    bool close;        /* close the connection after the response */
    bool observed;     /* counted in the request metrics */

    /* A delivery that waits (API, local fsync) runs elsewhere, its connection suspended. */
    bool defer_ok;                    /* the caller can run dispatch_complete elsewhere */
    struct dispatch_pending *pending; /* set by dispatch_run when it deferred */
    bool deferred;                    /* the connection is suspended */
    atomic_bool ready;                /* the delivery finished; the response can go */
    void *conn;                       /* the MHD connection, for resuming */
    char request_id[65];
    struct event_header headers[HTTP_MAX_HEADERS];
    size_t header_count;
    const char *nul_header; /* the first header with a NUL byte inside (borrowed) */
    int content_length_count;
    bool has_transfer_encoding;
    bool dry_run_query;
    bool verbose_query;
    long long content_length; /* -1 when absent */
    long start_ms;

    /* Body streaming. */
    struct buf body;
    size_t body_budget; /* bytes of body drawn from the unverified-body budget */
    bool body_started;
    struct signature_check sig;
    unsigned char sig_expected[SIGNATURE_LEN];
    int sig_verdict;  /* 1 or -1 once checked early (a body in one piece), else 0 */
    bool responded;   /* a response is ready; discard further upload */
    size_t discarded; /* bytes dropped after the body passed its limit */

    /* Response. */
    int status;
    struct buf out;
    const char *allow;
    bool www_authenticate;
    int retry_after; /* seconds for a Retry-After header, 0 for none */

    /* Context for the access log (borrowed or small copies). */
    char log_event[64];
    char log_delivery[80];
    char log_variant[16];
    char log_pipelinerun[64];
};

/*
 * The request's life, free of libmicrohttpd so that tests and fuzzers drive
 * the same code: new, add headers and query arguments (borrowed, kept until
 * free), begin (true when a response is already set), upload each body chunk
 * (false when the connection must be cut), finish (sets the response), free.
 */
struct http_request *http_request_new(struct app *app, const char *method, const char *path);
void http_request_add_header(struct http_request *req, const char *name, const char *value);
void http_request_add_arg(struct http_request *req, const char *key, const char *value);
/* The header called name (borrowed) held a NUL byte: begin answers 400. */
void http_request_refuse_nul(struct http_request *req, const char *name);
bool http_request_begin(struct http_request *req);
bool http_request_upload(struct http_request *req, const char *data, size_t len);
void http_request_finish(struct http_request *req);
void http_request_free(struct http_request *req);

/* Gives the body's share of the unverified-body budget back (the body itself stays). */
void http_request_body_release(struct http_request *req);

/* Finds a request header (case-insensitive); NULL when absent. */
const char *http_request_header(const struct http_request *req, const char *name);

/* Sets a JSON error response {"error": msg, "request_id": ...}. */
void http_request_error(struct http_request *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Sets a JSON response from obj (not freed) with request_id appended to objects. */
void http_request_json(struct http_request *req, int status, const cJSON *obj);

/*
 * Sets a JSON object response of string members written straight into the
 * output: fields holds key, value pairs and ends with NULL; a NULL value leaves
 * its member out. request_id is added last, as http_request_json does.
 */
void http_request_fields(struct http_request *req, int status, const char *const *fields);

struct http_server;

/* Starts serving cfg's listen address. Returns NULL with messages in el. */
struct http_server *http_server_start(struct app *app, const struct config *cfg,
                                      struct errlist *el);
/* The bound port (useful with port 0). */
int http_server_port(const struct http_server *s);
/*
 * Stops accepting, waits up to grace_seconds for requests in flight, then
 * stops and frees. Returns false, freeing nothing, when requests were still in
 * flight at the end: the caller should then exit without further cleanup.
 */
bool http_server_stop(struct http_server *s, long grace_seconds);

#endif
