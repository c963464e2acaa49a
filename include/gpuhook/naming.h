/*
 * Deterministic PipelineRun names and label-safe values. A name derives from
 * (hook ID, delivery ID, variant) so a redelivery maps to the same object, on
 * any replica and after any restart, with no state of our own.
 */
#ifndef GPUHOOK_NAMING_H
#define GPUHOOK_NAMING_H

#include <stddef.h>

#define NAMING_MAX 63

/*
 * Writes prefix (made DNS-1123 safe and cut to fit) + "-" + 10 hex characters
 * of SHA-256 over the three parts into out (at least NAMING_MAX + 1 bytes).
 * NULL parts count as empty. The result is a valid DNS-1123 label.
 */
void naming_pipelinerun(const char *prefix, const char *a, const char *b, const char *c,
                        char out[NAMING_MAX + 1]);

/*
 * Writes a Kubernetes label value for s into out: at most 63 characters of
 * [A-Za-z0-9_.-], other bytes replaced by '_', with alphanumeric ends.
 */
void naming_label_value(const char *s, char out[NAMING_MAX + 1]);

#endif
