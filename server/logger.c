#include "gpuhook/logger.h"
#include "gpuhook/buf.h"
#include "gpuhook/clock.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
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

void logger_set_level(int level) { atomic_store(&logger_level, level); }

bool logger_enabled(int level) { return level >= atomic_load(&logger_level); }

static bool logger_is_numeric_key(const char *k) {
    static const char *const keys[] = {"status", "code", "duration_ms", "port", "depth", "attempt"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(k, keys[i]) == 0)
            return true;
    return false;
}

/* True for a JSON number without exponent: -?(0|[1-9][0-9]*)(\.[0-9]+)? */
static bool logger_is_number(const char *v) {
    const char *p = v + (*v == '-');
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return false;
    if (*p == '.') {
        if (!(*++p >= '0' && *p <= '9'))
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

void logger_write(int level, const char *msg, ...) {
    if (!logger_enabled(level))
        return;
    char stackbuf[LOGGER_LINE_MAX];
    /* The bound keeps room for the closing "}\n" (and buf's NUL) in the stack buffer. */
    struct buf b = {stackbuf, 0, sizeof(stackbuf), sizeof(stackbuf) - 8};
    char ts[CLOCK_RFC3339_MAX];

    buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"",
                clock_rfc3339(clock_wall_ms(), ts), logger_names[level & 3]);
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
        /* Never cut inside a UTF-8 sequence: back up to the start of a character. */
        if (vlen == LOGGER_VALUE_MAX)
            while (vlen > 0 && ((unsigned char)v[vlen] & 0xc0) == 0x80)
                vlen--;
        size_t mark = b.len;
        int rc = buf_appends(&b, ",\"");
        if (!rc)
            rc = buf_appends(&b, k);
        if (!rc && logger_is_numeric_key(k) && logger_is_number(v)) {
            rc = buf_appends(&b, "\":");
            if (!rc)
                rc = buf_append(&b, v, vlen);
        } else if (!rc) {
            rc = buf_appends(&b, "\":\"");
            if (!rc)
                rc = buf_append_json_escaped(&b, v, vlen);
            if (!rc)
                rc = buf_appends(&b, "\"");
        }
        /* A field that does not fit is dropped whole, so the line stays one JSON object. */
        if (rc) {
            b.len = mark;
            break;
        }
    }
    va_end(ap);
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
