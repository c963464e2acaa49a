/*
 * A pool of threads for work that may block: Kubernetes API calls and file
 * writes with fsync. The HTTP threads never block on them; they suspend the
 * connection, hand the job here and resume it when the job is done, so a slow
 * API cannot delay /healthz or /metrics. The pool grows on demand up to a
 * bound, since each job may wait seconds on the API, and shrinks back to its
 * minimum as threads stay idle.
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
