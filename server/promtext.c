#include "gpuhook/promtext.h"

int promtext_label_append(struct buf *b, const char *s) {
    const char *run = s;
    int rc = 0;
    for (; *s && rc == 0; s++) {
        const char *esc = *s == '\\' ? "\\\\" : *s == '"' ? "\\\"" : *s == '\n' ? "\\n" : NULL;
        if (!esc)
            continue;
        rc = buf_append(b, run, (size_t)(s - run));
        if (rc == 0)
            rc = buf_appends(b, esc);
        run = s + 1;
    }
    if (rc == 0)
        rc = buf_append(b, run, (size_t)(s - run));
    return rc;
}
