/*
 * Serving: builds the delivery sink, starts the GPU probe and the HTTP server,
 * then waits for signals: SIGHUP reloads the config (the old one stays when
 * the new one is invalid), SIGTERM and SIGINT stop accepting, let requests in
 * flight finish within shutdown_grace_seconds, and return.
 */
#ifndef GPUHOOK_SERVE_H
#define GPUHOOK_SERVE_H

#include "gpuhook/config.h"

/* serve_run's answer when the grace period ended with requests in flight. */
#define SERVE_UNDRAINED 3

/*
 * Serves until SIGTERM or SIGINT. Takes ownership of cfg's reference. Blocks
 * SIGTERM, SIGINT and SIGHUP in the calling thread (and so in every thread it
 * creates). Returns 0 after a clean shutdown, 2 when it cannot start, or
 * SERVE_UNDRAINED when requests outlived the grace period: nothing was torn
 * down, and the process should end at once with _exit(0).
 */
int serve_run(struct config *cfg, const char *config_path);

#endif
