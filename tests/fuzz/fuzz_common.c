/*
 * Helpers shared by the fuzz targets: paths into the source tree, a private
 * scratch folder, invariant checks and input splitting.
 */
#include "fuzz.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "gpuhook/logger.h"

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
    va_list ap;

    fprintf(stderr, "%s:%d: fuzz invariant broken: %s: ", file, line, cond);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void fuzz_source_path(char *out, size_t n, const char *rel) {
    const char *dir = getenv("GPUHOOK_SOURCE_DIR");
#ifdef GPUHOOK_SOURCE_DIR
    if (!dir || !*dir)
        dir = GPUHOOK_SOURCE_DIR;
#endif
    snprintf(out, n, "%s/%s", dir && *dir ? dir : ".", rel);
}

static char fuzz_tmp[4096];

static int fuzz_rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void fuzz_rm_tmp(void) {
    if (fuzz_tmp[0])
        nftw(fuzz_tmp, fuzz_rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_temp_dir(void) {
    if (fuzz_tmp[0])
        return fuzz_tmp;
    const char *base = getenv("TMPDIR");
    snprintf(fuzz_tmp, sizeof(fuzz_tmp), "%s/gpuhook-fuzz-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(fuzz_tmp)) {
        perror(fuzz_tmp);
        abort();
    }
    atexit(fuzz_rm_tmp);
    /* The configs written here name files in it, and relative paths would resolve against them. */
    char *abs = realpath(fuzz_tmp, NULL);
    if (!abs) {
        perror(fuzz_tmp);
        abort();
    }
    snprintf(fuzz_tmp, sizeof(fuzz_tmp), "%s", abs);
    free(abs);
    return fuzz_tmp;
}

void fuzz_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f || (len && fwrite(data, 1, len, f) != len) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

void fuzz_copy_source(const char *rel, const char *path) {
    char src[4096];
    static char data[1024 * 1024];
    size_t n;

    fuzz_source_path(src, sizeof(src), rel);
    FILE *f = fopen(src, "rb");
    if (!f) {
        perror(src);
        abort();
    }
    n = fread(data, 1, sizeof(data), f);
    fclose(f);
    fuzz_write_file(path, data, n);
}

void fuzz_quiet(void) { logger_set_level(LOGGER_ERROR); }

char *fuzz_strndup(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s)
        abort();
    if (size)
        memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

size_t fuzz_split(const uint8_t *data, size_t size, char sep, char **fields, size_t max,
                  char **storage) {
    char *s = fuzz_strndup(data, size);
    size_t n = 0;

    *storage = s;
    if (max == 0)
        return 0;
    fields[n++] = s;
    for (size_t i = 0; i < size && n < max; i++) {
        if (s[i] == sep) {
            s[i] = '\0';
            fields[n++] = s + i + 1;
        }
    }
    return n;
}

bool fuzz_is_json(const char *s, size_t len) {
    cJSON *j = cJSON_ParseWithLength(s, len);
    bool ok = j != NULL;
    cJSON_Delete(j);
    return ok;
}
