/*
 * Structured logs: one JSON object per line on stderr, with ts (RFC 3339 UTC),
 * level, msg and context fields. Each line is written with one write(2), so
 * lines from concurrent threads never interleave. Callers must never pass a
 * secret, token, signature or payload body as a field.
 */
#ifndef GPUHOOK_LOGGER_H
#define GPUHOOK_LOGGER_H

#include <stdbool.h>

enum logger_level { LOGGER_DEBUG = 0, LOGGER_INFO = 1, LOGGER_WARN = 2, LOGGER_ERROR = 3 };

/* Parses debug, info, warn or error; returns the level or -1. */
int logger_level_parse(const char *s);
void logger_set_level(int level);
bool logger_enabled(int level);

/*
 * Writes one line. The variadic part is pairs of const char * key and value,
 * ended by NULL; a NULL value skips the pair. Values of the keys status, code,
 * duration_ms, port, depth and attempt are written as numbers when they are.
 * Each value is cut at 1 KiB.
 */
void logger_write(int level, const char *msg, ...);

#define LOGGER_DEBUG_(...) logger_write(LOGGER_DEBUG, __VA_ARGS__, (const char *)NULL)
#define LOGGER_INFO_(...) logger_write(LOGGER_INFO, __VA_ARGS__, (const char *)NULL)
#define LOGGER_WARN_(...) logger_write(LOGGER_WARN, __VA_ARGS__, (const char *)NULL)
#define LOGGER_ERROR_(...) logger_write(LOGGER_ERROR, __VA_ARGS__, (const char *)NULL)

#endif
