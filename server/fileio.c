#include "gpuhook/fileio.h"
#include "gpuhook/error.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes "PATH: why" into err and returns rc. */
static int fileio_fail(int rc, char *err, size_t errlen, const char *path, const char *why) {
    if (err && errlen)
        snprintf(err, errlen, "%s: %s", path, why);
    return rc;
}

/* Writes "PATH: what: strerror(errno)" into err and returns GHE_IO. */
static int fileio_fail_errno(char *err, size_t errlen, const char *path, const char *what) {
    char why[160];
    snprintf(why, sizeof(why), "%s: %s", what, strerror(errno));
    return fileio_fail(GHE_IO, err, errlen, path, why);
}

static int fileio_too_big(char *err, size_t errlen, const char *path, size_t max) {
    char why[64];
    snprintf(why, sizeof(why), "larger than %zu bytes", max);
    return fileio_fail(GHE_TOOBIG, err, errlen, path, why);
}

int fileio_read(const char *path, size_t max, int flags, char **out, size_t *len, char *err,
                size_t errlen) {
    char *data = NULL;
    size_t n = 0;
    struct stat st;
    int rc = 0;

    *out = NULL;
    *len = 0;
    if (err && errlen)
        err[0] = '\0';
    /* O_NONBLOCK so that opening a FIFO returns at once; fstat then refuses it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY |
                            ((flags & FILEIO_NOFOLLOW) ? O_NOFOLLOW : 0));
    if (fd < 0 && errno == ELOOP && (flags & FILEIO_NOFOLLOW))
        return fileio_fail(GHE_IO, err, errlen, path, "is a symbolic link");
    if (fd < 0)
        return fileio_fail_errno(err, errlen, path, "cannot open");
    if (fstat(fd, &st) != 0) {
        rc = fileio_fail_errno(err, errlen, path, "cannot stat");
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = fileio_fail(GHE_IO, err, errlen, path, "not a regular file");
        goto out;
    }
    if ((unsigned long long)st.st_size > max) {
        rc = fileio_too_big(err, errlen, path, max);
        goto out;
    }
    /* The size can change under us: read up to max + 1 to see a file that grew. */
    size_t cap = (size_t)st.st_size + 1;
    data = malloc(cap + 1);
    if (!data) {
        rc = GHE_NOMEM;
        goto out;
    }
    for (;;) {
        if (n == cap) {
            if (cap > max)
                break;
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *p = realloc(data, ncap + 1);
            if (!p) {
                rc = GHE_NOMEM;
                goto out;
            }
            data = p;
            cap = ncap;
        }
        ssize_t r = read(fd, data + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = fileio_fail_errno(err, errlen, path, "cannot read");
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    if (n > max) {
        rc = fileio_too_big(err, errlen, path, max);
        goto out;
    }
    data[n] = '\0';
    *out = data;
    *len = n;
    data = NULL;
out:
    free(data);
    close(fd);
    return rc;
}
