#include "gpuhook/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

const char *ghe_strerror(int code) {
    switch (code) {
    case GHE_OK:
        return "ok";
#define GHE_STR_(name, str)                                                                        \
    case GHE_##name:                                                                               \
        return str;
        GHE_ERRNO_MAP(GHE_STR_)
#undef GHE_STR_
    default:
        return "unknown error";
    }
}

void errlist_init(struct errlist *el) {
    el->items = NULL;
    el->count = 0;
    el->cap = 0;
}

void errlist_cleanup(struct errlist *el) {
    for (size_t i = 0; i < el->count; i++)
        free(el->items[i]);
    free(el->items);
    errlist_init(el);
}

static void errlist_push(struct errlist *el, char *msg) {
    if (el->count == el->cap) {
        size_t cap = el->cap ? el->cap * 2 : 8;
        char **items = realloc(el->items, cap * sizeof(*items));
        if (!items) {
            free(msg);
            return;
        }
        el->items = items;
        el->cap = cap;
    }
    el->items[el->count++] = msg;
}

void errlist_add(struct errlist *el, const char *fmt, ...) {
    char *msg = NULL;
    va_list ap;

    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n >= 0)
        errlist_push(el, msg);
}

void errlist_at(struct errlist *el, const char *file, const char *path, const char *fmt, ...) {
    char *msg = NULL, *line = NULL;
    va_list ap;

    va_start(ap, fmt);
    int n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    n = asprintf(&line, "%s: %s: %s", file, path, msg);
    free(msg);
    if (n >= 0)
        errlist_push(el, line);
}

void ghe_errf(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    if (!err || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
