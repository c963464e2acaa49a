/*
 * The HTTP layer over libmicrohttpd: an epoll thread pool serves every
 * connection. It knows no route: it receives the route table (routes.c),
 * matches path and method, enforces the route's body limit before reading,
 * collects headers and query arguments, gives each request an ID, allocates
 * the route's own per-request state, streams the body to the route's hooks,
 * and writes one access log line and the request metrics. A route whose
 * answer comes from another thread (a delivery through the API or a local
 * fsync) returns HTTP_SUSPENDED from finish: its connection is suspended
 * until http_request_resume, so a slow API never delays /healthz or /metrics.
 * Against clients without the secret: bodies not yet verified draw from
 * bodybudget.h's budget, connguard.h's sweeper cuts slow connections, a NUL
 * inside a header is refused (400) and a path holding %00 matches no route
 * (404).
 */
#ifndef GPUHOOK_HTTP_H
#define GPUHOOK_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/buf.h"
#include "gpuhook/event.h"

struct app;
struct errlist;
struct http_request;

#define HTTP_MAX_HEADERS 100
#define HTTP_MAX_ARGS 16
#define HTTP_LOG_FIELDS 4
#define HTTP_EXTRA_HEADERS 2

struct config;

/* What a route's hook tells the HTTP layer. */
enum http_step {
    HTTP_CONTINUE = 0, /* no response yet: go on reading (begin, upload) */
    HTTP_RESPONDED,    /* a response is set: send it (and, before the body's end, close) */
    HTTP_SUSPENDED     /* finish only: the answer comes later through http_request_resume */
};

/*
 * A route: a const struct its own file exports, listed in routes.c's table.
 * The HTTP layer matches path and method, enforces body_max before a body
 * byte is read, allocates state_size zeroed bytes of per-request state on the
 * first callback and frees them when the request completes, after cleanup,
 * which runs on every state allocated (zeroed when begin never ran).
 * Hooks left NULL: begin and finish do nothing, upload appends to req->body.
 */
struct http_route {
    const char *path;
    const char *name;   /* the route's label in metrics and the access log */
    const char *method; /* "POST" or "GET" (GET also answers HEAD) */
    const char *allow;  /* the Allow header of a 405 */
    long long body_max; /* bytes; HTTP_BODY_MAX_CONFIG takes max_body_bytes */
    size_t state_size;
    enum http_step (*begin)(struct http_request *req, void *state);
    enum http_step (*upload)(struct http_request *req, void *state, const char *data, size_t len);
    enum http_step (*finish)(struct http_request *req, void *state);
    void (*cleanup)(struct http_request *req, void *state);
};

#define HTTP_BODY_MAX_CONFIG (-1LL)

/* The route table: a const array the HTTP layer receives and loops over. */
struct http_routes {
    const struct http_route *const *list;
    size_t count;
};

struct http_server;

struct http_request {
    struct app *app;
    struct http_server *server; /* the server it came through; NULL when driven without one */
    struct config *cfg;         /* a reference held for the whole request */
    const char *method;
    const char *path;
    const struct http_routes *routes;
    const struct http_route *route; /* NULL when none matched */
    void *state;                    /* the route's per-request state */
    const char *route_name;         /* route->name, "other" when none matched */
    bool close;                     /* close the connection after the response */
    bool observed;                  /* counted in the request metrics */

    /* A route's answer that comes later: its connection is suspended meanwhile. */
    bool deferred;    /* the connection is suspended (or about to be) */
    atomic_int phase; /* HTTP_PHASE_* in http.c: who resumes the connection */
    void *conn;       /* the MHD connection, for resuming */
    char request_id[65];
    struct event_header headers[HTTP_MAX_HEADERS];
    size_t header_count;
    const char *args[HTTP_MAX_ARGS][2]; /* query arguments (borrowed) */
    size_t arg_count;
    const char *nul_header; /* the first header with a NUL byte inside (borrowed) */
    int content_length_count;
    bool has_transfer_encoding;
    long long content_length; /* -1 when absent */
    long start_ms;

    /* Body streaming. */
    struct buf body;
    size_t body_budget; /* bytes of body drawn from the unverified-body budget */
    bool responded;     /* a response is ready; discard further upload */
    size_t discarded;   /* bytes dropped after the body passed its limit */

    /* Response. */
    int status;
    struct buf out;
    const char *content_type; /* NULL: application/json */
    const char *allow;
    int retry_after; /* seconds for a Retry-After header, 0 for none */
    struct {
        const char *name; /* static */
        const char *value;
    } extra[HTTP_EXTRA_HEADERS];
    size_t extra_count;

    /* The access log's route fields, set by the route (key static, value copied). */
    struct {
        const char *key;
        char value[80];
    } log[HTTP_LOG_FIELDS];
};

/*
 * The request's life, free of libmicrohttpd so that tests and fuzzers drive
 * the same code: new, add headers and query arguments (borrowed, kept until
 * free), begin (true when a response is already set), upload each body chunk
 * (false when the connection must be cut), finish (sets the response), free.
 */
struct http_request *http_request_new(struct app *app, const struct http_routes *routes,
                                      const char *method, const char *path);
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

/* A query argument's value ("" when given bare); NULL when absent. */
const char *http_request_arg(const struct http_request *req, const char *key);
/* A query flag: present bare, "true" or "1". */
bool http_request_flag(const struct http_request *req, const char *key);

/* Sets the response: status, content type (NULL: application/json) and body (copied). */
void http_respond(struct http_request *req, int status, const char *content_type, const char *body,
                  size_t len);
/* Adds a response header (name and value static or living as long as the request). */
void http_respond_header(struct http_request *req, const char *name, const char *value);
/* Sets an access-log field of the route's (key static, value copied and cut at 79 bytes). */
void http_request_log(struct http_request *req, const char *key, const char *value);

/*
 * The answer of a finish hook that returned HTTP_SUSPENDED is set: let it go.
 * Call it once, from any thread, after setting the response.
 */
void http_request_resume(struct http_request *req);

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

/* Starts serving cfg's listen address with routes. Returns NULL with messages in el. */
struct http_server *http_server_start(struct app *app, const struct http_routes *routes,
                                      const struct config *cfg, struct errlist *el);
/* The bound port (useful with port 0). */
int http_server_port(const struct http_server *s);
/*
 * Stops accepting, waits up to grace_seconds for requests in flight, then
 * stops and frees. Returns false, freeing nothing, when requests were still in
 * flight at the end: the caller should then exit without further cleanup.
 */
bool http_server_stop(struct http_server *s, long grace_seconds);

/* True from the moment the shutdown of the server req came through begins (/readyz says no). */
bool http_request_stopping(const struct http_request *req);

#endif
