/*
 * POST /trigger: manual runs with curl, authenticated with a bearer token
 * compared in constant time. The JSON body names the variant (or auto), the
 * revision, the repository and param overrides; an Idempotency-Key header
 * makes retries create one run, and ?dry_run=true returns the object instead.
 */
#ifndef GPUHOOK_TRIGGER_H
#define GPUHOOK_TRIGGER_H

#include "gpuhook/http.h"

#define TRIGGER_BODY_MAX (1024 * 1024)

/* Checks auth and content type before the body; returns true when a response is set. */
bool trigger_begin(struct http_request *req);
/* Handles the buffered body; always sets a response. */
void trigger_finish(struct http_request *req);

#endif
