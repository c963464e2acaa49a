/*
 * A growable byte buffer with a hard size bound (curl's dynbuf). Appending past
 * the bound fails with GHE_TOOBIG and frees nothing the caller must track. The
 * contents are always NUL-terminated so they can be used as a C string.
 */
#ifndef GPUHOOK_BUF_H
#define GPUHOOK_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

/* Initializes an empty buffer that may grow up to max bytes. */
void buf_init(struct buf *b, size_t max);
/* Frees the contents and resets the buffer to empty. */
void buf_cleanup(struct buf *b);
/* Ensures room for n more bytes. Returns 0, GHE_TOOBIG or GHE_NOMEM. */
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_appends(struct buf *b, const char *s);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends s as the body of a JSON string (without quotes), escaping as needed. */
int buf_append_json_escaped(struct buf *b, const char *s, size_t n);

/*
 * How many bytes from s (of n) can stand in a JSON string as they are: not a
 * quote, a backslash or a control byte, and with ascii not above 0x7F either.
 * Strings are most of a payload, so this looks at 16 bytes per step.
 */
size_t buf_json_plain(const char *s, size_t n, bool ascii);
/* The value of one hexadecimal digit (either case), or -1. */
int buf_hex_value(char c);

/*
 * Copies src (NULL reads as "") into dst of size bytes (at least 1), cut to
 * fit and always terminated: snprintf(dst, size, "%s", src) without the
 * format machinery, for the per-request paths.
 */
void buf_copy_str(char *dst, size_t size, const char *src);

/*
 * The length (1 to 4) of the strict UTF-8 sequence at s, which has left bytes
 * (at least 1), or 0 when it is not one: overlong forms, surrogates and code
 * points past U+10FFFF are refused.
 */
size_t buf_utf8_len(const unsigned char *s, size_t left);

/* Detaches and returns the contents (caller frees); the buffer is left empty. */
char *buf_detach(struct buf *b, size_t *len);

#endif
