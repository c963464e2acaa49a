/*
 * File helpers the unit tests share. static inline, so that a test that
 * includes this and uses none of them still builds with -Werror.
 */
#ifndef GPUHOOK_TESTFS_H
#define GPUHOOK_TESTFS_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Removes path and, when it is a folder, everything under it (the tests' scratch dirs). */
static inline void testfs_remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        unlink(path);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char sub[1024];
        int n = snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
        if (n > 0 && (size_t)n < sizeof(sub))
            testfs_remove_tree(sub);
    }
    closedir(d);
    rmdir(path);
}

#endif
