/*
 * Error codes shared by every module. Functions return 0 on success or one of
 * these negative codes; ghe_strerror() names it. Code that judges input a
 * person wrote also fills a caller-provided message buffer with the place and
 * the reason. The list is an X-macro so codes and strings never drift apart.
 */
#ifndef GPUHOOK_ERROR_H
#define GPUHOOK_ERROR_H

#include <stddef.h>

#define GHE_ERRNO_MAP(XX)                                                                          \
    XX(NOMEM, "out of memory")                                                                     \
    XX(INVAL, "invalid input")                                                                     \
    XX(TOOBIG, "too big")                                                                          \
    XX(IO, "input/output error")                                                                   \
    XX(NOTFOUND, "not found")                                                                      \
    XX(EXISTS, "already exists")                                                                   \
    XX(AUTH, "authentication failed")                                                              \
    XX(UNAVAILABLE, "unavailable")                                                                 \
    XX(PERMANENT, "permanent failure")                                                             \
    XX(TIMEOUT, "timed out")                                                                       \
    XX(UNSUPPORTED, "unsupported")

enum ghe_code {
    GHE_OK = 0,
#define GHE_ENUM_(name, str) GHE_##name,
    GHE_FIRST_ = -100,
    GHE_ERRNO_MAP(GHE_ENUM_)
#undef GHE_ENUM_
};

/* Returns a static string naming an error code. */
const char *ghe_strerror(int code);

/* Formats a message into err (errlen bytes, cut to fit); does nothing when err is NULL. */
void ghe_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * A bounded list of human-readable errors, filled by validators so that every
 * problem is reported at once. Caller owns the struct; errlist_cleanup frees.
 */
struct errlist {
    char **items;
    size_t count;
    size_t cap;
};

void errlist_init(struct errlist *el);
void errlist_cleanup(struct errlist *el);
/* Appends one formatted message. Silently drops it when memory runs out. */
void errlist_add(struct errlist *el, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/*
 * Appends "FILE: PATH: message", the form of every complaint about a file a
 * person wrote: file as given, path a JSON path (".selection.rules[0].when").
 */
void errlist_at(struct errlist *el, const char *file, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
