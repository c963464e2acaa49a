#include "gpuhook/logger.h"
#include "gpuhook/buf.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOGGER_LINE_MAX 16384
#define LOGGER_VALUE_MAX 1024

static atomic_int logger_level = LOGGER_INFO;
static const char *const logger_names[] = {"debug", "info", "warn", "error"};

int logger_level_parse(const char *s) {
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, logger_names[i]) == 0)
            return i;
    return -1;
}

void logger_set_level(int level) {
    atomic_store(&logger_level, level);
}

bool logger_enabled(int level) {
    return level >= atomic_load(&logger_level);
}

static bool logger_is_numeric_key(const char *k) {
    static const char *const keys[] = {"status", "code", "duration_ms", "port", "depth", "attempt"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(k, keys[i]) == 0)
            return true;
    return false;
}

static bool logger_is_number(const char *v) {
    if (!*v)
        return false;
    for (const char *p = v; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.' || (*p == '-' && p == v)))
            return false;
    return true;
}

void logger_write(int level, const char *msg, ...) {
    if (!logger_enabled(level))
        return;
    char stackbuf[LOGGER_LINE_MAX];
    struct buf b = {stackbuf, 0, sizeof(stackbuf), sizeof(stackbuf) - 1};
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    buf_appendf(&b, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":\"",
                tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                ts.tv_nsec / 1000000, logger_names[level & 3]);
    buf_append_json_escaped(&b, msg, strlen(msg));
    buf_appends(&b, "\"");

    va_list ap;
    va_start(ap, msg);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        if (!v)
            continue;
        size_t vlen = strnlen(v, LOGGER_VALUE_MAX);
        buf_appends(&b, ",\"");
        buf_appends(&b, k);
        if (logger_is_numeric_key(k) && logger_is_number(v)) {
            buf_appends(&b, "\":");
            buf_append(&b, v, vlen);
        } else {
            buf_appends(&b, "\":\"");
            buf_append_json_escaped(&b, v, vlen);
            buf_appends(&b, "\"");
        }
    }
    va_end(ap);
    /* A line that hit the bound is closed anyway so it stays one JSON object. */
    if (b.len > sizeof(stackbuf) - 8)
        b.len = sizeof(stackbuf) - 8;
    memcpy(b.data + b.len, "}\n", 2);
    b.len += 2;
    ssize_t off = 0;
    while ((size_t)off < b.len) {
        ssize_t n = write(STDERR_FILENO, b.data + off, b.len - (size_t)off);
        if (n <= 0)
            break;
        off += n;
    }
}
