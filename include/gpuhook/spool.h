/*
 * The durable spool: PipelineRuns that could not be created inside the
 * deadline wait here as one file each, <dir>/<name>.json, written atomically
 * (temp file, fsync, rename, fsync of the folder), so a crash or restart loses
 * none. A background worker retries each with backoff from 1 s to 5 min;
 * 201 or 409 removes the file, a permanent 4xx or old age moves it to
 * <dir>/failed/ beside a .error file with the reason.
 */
#ifndef GPUHOOK_SPOOL_H
#define GPUHOOK_SPOOL_H

#include <stddef.h>

#include "gpuhook/kube.h"

struct spool;

/* Opens (creating) dir and dir/failed. Returns 0 and sets *out, or an error with a message. */
int spool_open(const char *dir, long max_age_hours, struct spool **out, char *err, size_t errlen);
/* Stops the worker if running, then frees. */
void spool_free(struct spool *s);

/*
 * Stores one run durably. A name already spooled keeps its first file, untouched, and
 * gives GHE_EXISTS: a redelivery (or a reused Idempotency-Key) cannot swap what waits.
 */
int spool_put(struct spool *s, const char *name, const char *json, size_t len);

/*
 * Keeps a run the API refused for good (400, 413, 415, 422) in failed/: the object as
 * <name>.json and, in <name>.error, "HTTP <code> <reason>: <message>" and the API's
 * Status. Returns 0 or an error (GHE_INVAL without a spool).
 */
int spool_put_failed(struct spool *s, const char *name, const char *json, size_t len,
                     const struct kube_result *r);

/* The longest wait a Retry-After may impose on a spooled run (default 300 s). */
void spool_set_retry_after_max(struct spool *s, long seconds);

/* Number of runs waiting (excluding failed/). */
long spool_depth(struct spool *s);

/* Starts the retry worker, which creates runs through k (borrowed). */
int spool_start(struct spool *s, struct kube *k);

/* Writes data to dir/name atomically: temp file, fsync, then rename (or link
 * when exclusive, so an existing file gives GHE_EXISTS), then fsync of dir. */
int spool_write_atomic(const char *dir, const char *name, const char *data, size_t len,
                       int exclusive);

/* Creates dir and its missing parents (mode 0750). Returns 0 or GHE_IO with errno set. */
int spool_mkdirs(const char *dir);

#endif
