/*
 * Deterministic PipelineRun names and label-safe values. A name derives from a
 * run's identity alone: (hook ID, delivery ID) for a webhook delivery, the
 * Idempotency-Key (or a fresh id) for POST /trigger, plus a prefix that is
 * static config (the literal start of the template's generateName). Never the
 * variant, the rules, the GPU state or the time: a redelivery maps to the same
 * object on any replica, after any restart and under any selection config.
 */
#ifndef GPUHOOK_NAMING_H
#define GPUHOOK_NAMING_H

#include <stdbool.h>
#include <stddef.h>

#define NAMING_MAX 63

/* The identity namespaces: their hashes never meet. */
enum naming_kind { NAMING_WEBHOOK = 0, NAMING_TRIGGER = 1 };

/*
 * Writes prefix (made DNS-1123 safe and cut to 43 characters) + "-gh-" (webhook) or
 * "-tr-" (trigger) + 16 hex characters of SHA-256 over (kind, a, b) into out (at least
 * NAMING_MAX + 1 bytes). For a webhook a is the hook ID and b the delivery ID; for a
 * trigger a is the key and b is NULL. NULL parts count as empty. The result is a valid
 * DNS-1123 label.
 */
void naming_pipelinerun(const char *prefix, int kind, const char *a, const char *b,
                        char out[NAMING_MAX + 1]);

/* Copies the literal start of s, up to its first "$(", into out; returns its length. */
size_t naming_static_prefix(const char *s, char out[NAMING_MAX + 1]);

/* True when s is an RFC 1123 label ([a-z0-9]([-a-z0-9]*[a-z0-9])?) of at most max bytes. */
bool naming_dns1123_label(const char *s, size_t max);
/* True when s is an RFC 1123 subdomain of at most 253 bytes (object names). */
bool naming_dns1123_subdomain(const char *s);

/*
 * Writes a Kubernetes label value for s into out: at most 63 characters of
 * [A-Za-z0-9_.-], other bytes replaced by '_', with alphanumeric ends.
 */
void naming_label_value(const char *s, char out[NAMING_MAX + 1]);

#endif
