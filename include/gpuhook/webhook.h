/*
 * POST /webhook: GitHub deliveries. Headers are checked before any body byte
 * is read; the body is fed into the HMAC as it streams in and buffered once;
 * nothing is parsed before the signature holds. Then the event is parsed,
 * filtered (ignored events, deleted refs, draft PRs, uninteresting actions)
 * and handed to dispatch.
 */
#ifndef GPUHOOK_WEBHOOK_H
#define GPUHOOK_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#include "gpuhook/http.h"

/* Checks headers; returns true when a response is already set (reject early). */
bool webhook_begin(struct http_request *req);
/* Feeds one body chunk; returns true when a response is set (e.g. 413). */
bool webhook_upload(struct http_request *req, const char *data, size_t len);
/* Verifies, parses and dispatches; always sets a response. */
void webhook_finish(struct http_request *req);

/*
 * Decides whether a delivery starts nothing: an event not configured or not
 * push/pull_request, a deleted ref, a draft, an uninteresting PR action. With
 * ev NULL only the event name is judged. Writes the reason when it returns true.
 */
bool webhook_should_ignore(const struct config *cfg, const char *event, const struct event *ev,
                           char *reason, size_t n);

#endif
