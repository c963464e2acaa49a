/*
 * A pool of threads for work that may block, such as file writes with
 * fsync. The delivery sinks own one (delivery.c): a local write or a spooling
 * runs there while the HTTP threads keep serving, the request's connection
 * suspended, so a slow disk cannot delay /healthz or /metrics (API calls need
 * no thread of their own: kube.c's loop drives them). The pool grows on
 * demand up to a bound and shrinks back to its minimum as threads stay idle.
 */
#ifndef GPUHOOK_WORKPOOL_H
#define GPUHOOK_WORKPOOL_H

#include <stddef.h>

struct workpool;

/*
 * Creates a pool that starts min threads and grows up to max; a thread idle
 * for idle_ms leaves while more than min remain.
 */
struct workpool *workpool_new(size_t min, size_t max, long idle_ms);
/* Runs every queued job, then joins the threads and frees the pool. */
void workpool_free(struct workpool *p);

/* Queues fn(arg). Returns 0 or GHE_NOMEM (then nothing was queued). */
int workpool_submit(struct workpool *p, void (*fn)(void *arg), void *arg);

/* Threads running now, busy or idle. */
size_t workpool_threads(struct workpool *p);

#endif
