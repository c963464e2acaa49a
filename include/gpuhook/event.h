/*
 * The normalized event: what a GitHub delivery (or a manual /trigger request)
 * means for selection and for the template. event_parse_delivery() turns a
 * verified body into one; it does not check signatures and sends nothing.
 */
#ifndef GPUHOOK_EVENT_H
#define GPUHOOK_EVENT_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

/* One request header, borrowed from the HTTP layer for the length of a request. */
struct event_header {
    const char *name;
    const char *value;
};

/*
 * Every string is owned by the event (event_cleanup frees it) and is NULL when
 * the delivery has no such value. body is the parsed payload, owned by the
 * event as well; headers are borrowed.
 */
struct event {
    char *event;          /* push, pull_request, ping, trigger, ... */
    char *action;         /* pull_request action, NULL for a push */
    char *repo_full_name; /* owner/name */
    char *repo_url;       /* repository.clone_url */
    char *ref;            /* refs/heads/x, refs/tags/y, refs/pull/N/head */
    char *branch;         /* pushed branch, or the PR's head branch */
    char *tag;            /* pushed tag */
    char *revision;       /* after (push) or pull_request.head.sha */
    char *base_branch;    /* PR target branch */
    char *pr_number;      /* decimal */
    char *message;        /* head-commit message (push) or PR title */
    char *sender;         /* sender.login */
    char *delivery;       /* X-GitHub-Delivery, or the trigger's key */
    char *hook_id;        /* X-GitHub-Hook-ID */
    char *added_label;    /* label.name of a pull_request "labeled" action */
    char *head_repo;      /* pull_request.head.repo.full_name; NULL: none or deleted */
    char *author_assoc;   /* pull_request.author_association (OWNER, MEMBER, ...) */
    char **labels;        /* PR labels */
    size_t label_count;
    char **changed_paths; /* added, modified and removed files of a push */
    size_t changed_count;
    bool deleted; /* a push that deletes its ref */
    bool draft;   /* a draft pull request */
    cJSON *body;  /* the parsed payload; NULL for /trigger */
    void *arena;  /* where body's nodes live (freed with the event) */
    const struct event_header *headers;
    size_t header_count;
};

/*
 * Installs cJSON's allocation hooks (payload trees go to a per-event arena).
 * Call once at start-up before any thread uses cJSON; the first parse does it
 * otherwise.
 */
void event_global_init(void);

void event_init(struct event *ev);
void event_cleanup(struct event *ev);

/*
 * Parses a verified delivery body. content_type is the request's Content-Type
 * (application/json, or application/x-www-form-urlencoded with a payload=
 * field, which is URL-decoded in place: body is modified). event_name,
 * delivery and hook_id come from the X-GitHub-* headers. On failure returns
 * GHE_INVAL and writes a message for a 400 into err; ev is left for
 * event_cleanup either way. The body must outlive nothing: the event copies.
 * Any other content type returns GHE_UNSUPPORTED (a 415), and GHE_NOMEM means
 * memory ran out. The JSON is checked as event_json_parse() does.
 */
int event_parse_delivery(struct event *ev, const char *event_name, const char *delivery,
                         const char *hook_id, const char *content_type, char *body, size_t len,
                         char *err, size_t errlen);

struct jsonprune_path;

/*
 * Like event_parse_delivery, but ev->body keeps only what the event reads
 * plus the extra paths (the bindings' $(body...) expressions; a path of no
 * steps keeps the whole payload). The whole body is still validated.
 */
int event_parse_delivery_paths(struct event *ev, const char *event_name, const char *delivery,
                               const char *hook_id, const char *content_type, char *body,
                               size_t len, const struct jsonprune_path *extra, size_t nextra,
                               char *err, size_t errlen);

/* Returns the value of header name (case-insensitive) or NULL. */
const char *event_header_get(const struct event *ev, const char *name);

/* The most lines of one header name, and of header names, the two below look at. */
#define EVENT_HEADER_JOIN_MAX 64

/*
 * True for the headers that carry credentials or signatures (Authorization,
 * Proxy-Authorization, Cookie, X-Hub-Signature, X-Hub-Signature-256): the two
 * below never give them to a binding.
 */
bool event_header_secret(const char *name);

/*
 * A header's value as Tekton Triggers gives it to $(header.Name): every line
 * of that name (any case) joined with ','. Borrowed when there is one line,
 * else joined into *owned (free()). NULL when there is none or the header is
 * secret; *oom says memory ran out.
 */
const char *event_header_joined(const struct event *ev, const char *name, char **owned, bool *oom);

/*
 * $(header): every header but the secret ones as one object, with names as
 * Go's CanonicalMIMEHeaderKey writes them, sorted, values joined as above.
 * NULL when memory ran out; the caller frees with cJSON_Delete.
 */
cJSON *event_header_object(const struct event *ev);

/* A push's changed paths joined with ',' (free()); "" when none; NULL when out of memory. */
char *event_changed_files(const struct event *ev);

/*
 * Sets *field to a copy of s (NULL stays NULL), freeing the previous value.
 * Returns 0 or GHE_NOMEM, leaving *field unchanged on failure.
 */
int event_set(char **field, const char *s);

/* The deepest nesting of objects and arrays a body may have (the top object is 1). */
#define EVENT_MAX_DEPTH 64

enum event_content_type {
    EVENT_CONTENT_UNSUPPORTED = -1,
    EVENT_CONTENT_JSON = 0, /* application/json */
    EVENT_CONTENT_FORM = 1  /* application/x-www-form-urlencoded */
};

/*
 * Classifies a Content-Type header value (case-insensitive, parameters
 * allowed). A charset other than utf-8, utf8 or us-ascii, a malformed
 * parameter or a NULL value gives EVENT_CONTENT_UNSUPPORTED. Returns an enum
 * event_content_type, so a handler can answer 415 before reading the body.
 */
int event_content_type_parse(const char *content_type);

/*
 * Parses len bytes of text (no NUL terminator needed) that must hold exactly
 * one JSON object, padded only by whitespace. Before cJSON sees the bytes it
 * rejects invalid UTF-8, NUL bytes and nesting deeper than EVENT_MAX_DEPTH.
 * Returns 0 and sets *out (caller frees with cJSON_Delete), or GHE_INVAL with
 * a message for a 400 in err, or GHE_NOMEM. Also used for POST /trigger.
 */
int event_json_parse(const char *text, size_t len, cJSON **out, char *err, size_t errlen);

#endif
