/*
 * Whole-file reads with a bound that fails loudly: a file over the limit is an
 * error that says so, never a silently cut copy. Only regular files are read,
 * so a FIFO or a device cannot block the caller.
 */
#ifndef GPUHOOK_FILEIO_H
#define GPUHOOK_FILEIO_H

#include <stddef.h>

/* Refuse a symbolic link as the last component (the spool's entries). */
#define FILEIO_NOFOLLOW 0x1

/*
 * Reads path into a NUL-terminated heap copy (*out, caller frees; *len its
 * length without the NUL). Returns 0, GHE_IO (cannot open or read, or not a
 * regular file), GHE_TOOBIG (more than max bytes) or GHE_NOMEM; on failure
 * *out is NULL and err (when given) holds "PATH: reason".
 */
int fileio_read(const char *path, size_t max, int flags, char **out, size_t *len, char *err,
                size_t errlen);

#endif
