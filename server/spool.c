#include "gpuhook/spool.h"
#include "gpuhook/buf.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define SPOOL_MAX_TRACKED 4096
#define SPOOL_BACKOFF_MIN_MS 1000L
#define SPOOL_BACKOFF_MAX_MS 300000L
#define SPOOL_FILE_MAX (4 * 1024 * 1024)

struct spool_entry {
    char name[80];
    long next_ms;
    long backoff_ms;
    long retry_after_ms; /* the last answer's Retry-After, clamped; -1 when none */
    bool seen;           /* still present in the last scan */
};

struct spool {
    char *dir;
    char *failed_dir;
    long max_age_seconds;
    long retry_after_max_ms;
    struct kube *kube;
    pthread_t thread;
    bool running;
    atomic_bool stopping; /* read by the worker between files without the lock */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct spool_entry *entries;
    size_t entry_count;
    long depth;
};

static long spool_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static int spool_fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return GHE_IO;
    int rc = fsync(fd) == 0 ? 0 : GHE_IO;
    close(fd);
    return rc;
}

int spool_write_atomic(const char *dir, const char *name, const char *data, size_t len,
                       int exclusive) {
    char tmp[4096], final[4096];
    unsigned int rnd = 0;
    int fd, rc = GHE_IO;

    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
        rnd = (unsigned int)spool_now_ms();
    snprintf(tmp, sizeof(tmp), "%s/.tmp-%s-%08x", dir, name, rnd);
    snprintf(final, sizeof(final), "%s/%s", dir, name);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0)
        return GHE_IO;
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    if (off != len || fsync(fd) != 0) {
        close(fd);
        goto out;
    }
    close(fd);
    if (exclusive) {
        /* link() refuses to replace, which gives O_EXCL semantics atomically. */
        if (link(tmp, final) != 0) {
            rc = errno == EEXIST ? GHE_EXISTS : GHE_IO;
            goto out;
        }
    } else if (rename(tmp, final) != 0) {
        goto out;
    }
    rc = spool_fsync_dir(dir);
out:
    unlink(tmp);
    return rc;
}

int spool_mkdirs(const char *dir) {
    char path[4096];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST)
            return GHE_IO;
        *p = '/';
    }
    if (mkdir(path, 0750) != 0 && errno != EEXIST)
        return GHE_IO;
    return 0;
}

int spool_open(const char *dir, long max_age_hours, struct spool **out, char *err, size_t errlen) {
    struct spool *s = calloc(1, sizeof(*s));
    *out = NULL;
    if (!s)
        return GHE_NOMEM;
    s->dir = strdup(dir);
    if (!s->dir || asprintf(&s->failed_dir, "%s/failed", dir) < 0) {
        free(s->dir);
        free(s);
        return GHE_NOMEM;
    }
    s->max_age_seconds = max_age_hours * 3600;
    s->retry_after_max_ms = SPOOL_BACKOFF_MAX_MS;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (spool_mkdirs(s->dir) != 0 || spool_mkdirs(s->failed_dir) != 0 ||
        access(s->dir, W_OK) != 0) {
        snprintf(err, errlen, "spool_dir %s: %s", dir, strerror(errno));
        spool_free(s);
        return GHE_IO;
    }
    *out = s;
    return 0;
}

void spool_free(struct spool *s) {
    if (!s)
        return;
    if (s->running) {
        pthread_mutex_lock(&s->lock);
        s->stopping = true;
        pthread_cond_broadcast(&s->wake);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
    }
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->wake);
    free(s->entries);
    free(s->dir);
    free(s->failed_dir);
    free(s);
}

static bool spool_is_entry(const char *name) {
    size_t n = strlen(name);
    return name[0] != '.' && n > 5 && n < 80 && strcmp(name + n - 5, ".json") == 0;
}

int spool_put(struct spool *s, const char *name, const char *json, size_t len) {
    char file[128];
    snprintf(file, sizeof(file), "%s.json", name);
    /* The lock orders puts with the worker's recount, so the depth never goes stale-low. */
    pthread_mutex_lock(&s->lock);
    /* Exclusive: the first run spooled under a name stays what is delivered under it. */
    int rc = spool_write_atomic(s->dir, file, json, len, 1);
    if (rc == 0) {
        s->depth++;
        metrics_spool_depth_set(s->depth);
        pthread_cond_broadcast(&s->wake);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

long spool_depth(struct spool *s) {
    pthread_mutex_lock(&s->lock);
    long d = s->depth;
    pthread_mutex_unlock(&s->lock);
    return d;
}

void spool_set_retry_after_max(struct spool *s, long seconds) {
    if (seconds > 0)
        s->retry_after_max_ms = seconds * 1000L;
}

/* "HTTP 413 RequestEntityTooLarge: message", then the API's Status object on a line of its own. */
static void spool_failure_text(const struct kube_result *r, char *out, size_t n) {
    snprintf(out, n, "HTTP %d%s%s: %s\n%s%s", r->status, r->reason[0] ? " " : "", r->reason,
             r->message, r->status_json, r->status_json[0] ? "\n" : "");
}

int spool_put_failed(struct spool *s, const char *name, const char *json, size_t len,
                     const struct kube_result *r) {
    char file[128], reason[3072];
    if (!s)
        return GHE_INVAL;
    snprintf(file, sizeof(file), "%s.error", name);
    spool_failure_text(r, reason, sizeof(reason));
    int rc = spool_write_atomic(s->failed_dir, file, reason, strlen(reason), 0);
    snprintf(file, sizeof(file), "%s.json", name);
    if (rc == 0)
        rc = spool_write_atomic(s->failed_dir, file, json, len, 0);
    return rc;
}

/* Moves a spooled file to failed/ with a .error file beside it. */
static void spool_fail(struct spool *s, const char *file, const char *reason) {
    char from[4096], to[4096], errname[128];
    snprintf(from, sizeof(from), "%s/%s", s->dir, file);
    snprintf(to, sizeof(to), "%s/%s", s->failed_dir, file);
    snprintf(errname, sizeof(errname), "%.*s.error", (int)(strlen(file) - 5), file);
    spool_write_atomic(s->failed_dir, errname, reason, strlen(reason), 0);
    if (rename(from, to) == 0) {
        spool_fsync_dir(s->failed_dir);
        spool_fsync_dir(s->dir);
    }
    LOGGER_ERROR_("spooled run failed permanently", "pipelinerun", file, "error", reason);
}

static struct spool_entry *spool_track(struct spool *s, const char *file) {
    for (size_t i = 0; i < s->entry_count; i++)
        if (strcmp(s->entries[i].name, file) == 0)
            return &s->entries[i];
    if (s->entry_count >= SPOOL_MAX_TRACKED)
        return NULL;
    struct spool_entry *e = &s->entries[s->entry_count++];
    memset(e, 0, sizeof(*e));
    buf_copy_str(e->name, sizeof(e->name), file);
    e->backoff_ms = SPOOL_BACKOFF_MIN_MS;
    e->retry_after_ms = -1;
    e->next_ms = 0;
    return e;
}

static char *spool_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *data = malloc(SPOOL_FILE_MAX + 1);
    size_t n = data ? fread(data, 1, SPOOL_FILE_MAX, f) : 0;
    fclose(f);
    if (data)
        data[n] = '\0';
    *len = n;
    return data;
}

/* Tries one spooled run; returns true when it left the spool. */
static bool spool_attempt(struct spool *s, struct spool_entry *e) {
    char path[4096];
    size_t len = 0;
    struct kube_result r;
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", s->dir, e->name);
    if (stat(path, &st) != 0)
        return true;
    if (time(NULL) - st.st_mtime > s->max_age_seconds) {
        spool_fail(s, e->name, "expired: older than spool_max_age_hours");
        return true;
    }
    char *json = spool_read(path, &len);
    if (!json)
        return false;
    cJSON *obj = cJSON_ParseWithLength(json, len);
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "namespace");
    if (!cJSON_IsString(ns)) {
        cJSON_Delete(obj);
        free(json);
        spool_fail(s, e->name, "unreadable spool entry: not a PipelineRun with a namespace");
        return true;
    }
    kube_create(s->kube, ns->valuestring, json, len, 5000, &r);
    cJSON_Delete(obj);
    free(json);
    char status[16];
    snprintf(status, sizeof(status), "%d", r.status);
    /* The same table as the direct path (kube_answer_of). */
    if (r.answer == KUBE_ANSWER_CREATED || r.answer == KUBE_ANSWER_EXISTS) {
        unlink(path);
        spool_fsync_dir(s->dir);
        LOGGER_INFO_("spooled run delivered", "pipelinerun", e->name, "status", status);
        if (r.answer == KUBE_ANSWER_CREATED)
            metrics_pipelinerun_created("spooled");
        return true;
    }
    if (r.answer == KUBE_ANSWER_REFUSED) {
        char reason[3072];
        spool_failure_text(&r, reason, sizeof(reason));
        spool_fail(s, e->name, reason);
        return true;
    }
    /* Retry-After, clamped to spool_retry_after_max_seconds; else the backoff decides. */
    e->retry_after_ms = r.retry_after_s < 0                               ? -1
                        : r.retry_after_s * 1000L > s->retry_after_max_ms ? s->retry_after_max_ms
                                                                          : r.retry_after_s * 1000L;
    LOGGER_WARN_("spooled run not delivered yet", "pipelinerun", e->name, "status", status, "error",
                 r.message);
    return false;
}

static long spool_count(const char *dir) {
    long n = 0;
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL)
        n += spool_is_entry(de->d_name);
    if (d)
        closedir(d);
    return n;
}

static void *spool_worker(void *arg) {
    struct spool *s = arg;

    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        pthread_mutex_unlock(&s->lock);
        DIR *d = opendir(s->dir);
        for (size_t i = 0; i < s->entry_count; i++)
            s->entries[i].seen = false;
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL && !s->stopping) {
            if (!spool_is_entry(de->d_name))
                continue;
            struct spool_entry *e = spool_track(s, de->d_name);
            if (!e)
                continue;
            e->seen = true;
            if (spool_now_ms() < e->next_ms)
                continue;
            if (spool_attempt(s, e)) {
                e->seen = false;
                continue;
            }
            unsigned int rnd = 0;
            if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
                rnd = 0;
            e->next_ms =
                spool_now_ms() +
                (e->retry_after_ms >= 0 ? e->retry_after_ms : e->backoff_ms + (long)(rnd % 250));
            e->backoff_ms =
                e->backoff_ms * 2 > SPOOL_BACKOFF_MAX_MS ? SPOOL_BACKOFF_MAX_MS : e->backoff_ms * 2;
        }
        if (d)
            closedir(d);
        /* Forget entries whose files are gone. */
        size_t j = 0;
        for (size_t i = 0; i < s->entry_count; i++)
            if (s->entries[i].seen)
                s->entries[j++] = s->entries[i];
        s->entry_count = j;
        pthread_mutex_lock(&s->lock);
        s->depth = spool_count(s->dir);
        metrics_spool_depth_set(s->depth);
        if (s->stopping)
            break;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait(&s->wake, &s->lock, &until);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int spool_start(struct spool *s, struct kube *k) {
    s->kube = k;
    s->entries = calloc(SPOOL_MAX_TRACKED, sizeof(*s->entries));
    if (!s->entries)
        return GHE_NOMEM;
    if (pthread_create(&s->thread, NULL, spool_worker, s) != 0)
        return GHE_NOMEM;
    s->running = true;
    return 0;
}
