#include "gpuhook/spool.h"
#include "gpuhook/buf.h"
#include "gpuhook/clock.h"
#include "gpuhook/config.h"
#include "gpuhook/ids.h"
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
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define SPOOL_MAX_TRACKED 4096
#define SPOOL_BACKOFF_MIN_MS 1000L
#define SPOOL_BACKOFF_MAX_MS 300000L
#define SPOOL_FILE_MAX (4 * 1024 * 1024)
#define SPOOL_PARALLEL 16      /* creates in flight at once */
#define SPOOL_ATTEMPT_MS 5000L /* one attempt's deadline, retries inside it included */

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
    struct spool_entry **due; /* the entries one pass tries */
    size_t entry_count;
    long depth;
};

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
    unsigned int rnd = (unsigned int)ids_fast_random();
    int fd, rc = GHE_IO;

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
    free(s->due);
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
    /* Moved first, so that a .error file always has its run beside it. */
    if (rename(from, to) == 0)
        spool_fsync_dir(s->dir);
    spool_write_atomic(s->failed_dir, errname, reason, strlen(reason), 0);
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

/* Reads an entry whole; *toobig (NULL returned) when it holds more than SPOOL_FILE_MAX. */
static char *spool_read(int fd, size_t *len, bool *toobig) {
    char *data = malloc(SPOOL_FILE_MAX + 2);
    size_t n = 0;
    *toobig = false;
    while (data && n <= SPOOL_FILE_MAX) {
        ssize_t got = read(fd, data + n, SPOOL_FILE_MAX + 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    if (data && n > SPOOL_FILE_MAX) {
        free(data);
        *toobig = true;
        return NULL;
    }
    if (data)
        data[n] = '\0';
    *len = n;
    return data;
}

static const char *spool_file_kind(mode_t mode) {
    return S_ISFIFO(mode)   ? "a FIFO"
           : S_ISCHR(mode)  ? "a character device"
           : S_ISBLK(mode)  ? "a block device"
           : S_ISSOCK(mode) ? "a socket"
           : S_ISDIR(mode)  ? "a folder"
                            : "not a plain file";
}

/*
 * Opens a spool entry only when it is a regular file: O_NOFOLLOW refuses a
 * symbolic link, O_NONBLOCK keeps a FIFO from blocking the worker, and fstat
 * judges what was opened, not what the name pointed at a moment earlier.
 * Returns the descriptor, -1 when the file is gone, or -2 with the reason.
 */
static int spool_open_entry(const char *path, struct stat *st, char *why, size_t n) {
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return -1;
        if (errno == ELOOP)
            snprintf(why, n, "not a regular file: a symbolic link");
        else
            snprintf(why, n, "cannot open: %s", strerror(errno));
        return -2;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        snprintf(why, n, "not a regular file: %s", spool_file_kind(st->st_mode));
        close(fd);
        return -2;
    }
    return fd;
}

/* One spooled run on its way to the API. */
struct spool_job {
    struct spool *s;
    struct spool_entry *e;
    char *json;
    size_t len;
    struct kube_result r;
    bool done; /* guarded by s->lock */
};

/*
 * Reads one spooled run and finds its namespace. Returns 1 with the job's
 * json set and the namespace in ns (a copy, caller frees), 0 when the run
 * left the spool here (gone, or moved to failed/), or -1 to retry later.
 */
static int spool_prepare(struct spool *s, struct spool_job *job, char **ns_out) {
    char path[4096], why[128];
    struct stat st = {0};

    snprintf(path, sizeof(path), "%s/%s", s->dir, job->e->name);
    int fd = spool_open_entry(path, &st, why, sizeof(why));
    if (fd == -1)
        return 0;
    if (fd < 0) {
        spool_fail(s, job->e->name, why);
        return 0;
    }
    if (time(NULL) - st.st_mtime > s->max_age_seconds) {
        close(fd);
        spool_fail(s, job->e->name, "expired: older than spool_max_age_hours");
        return 0;
    }
    bool toobig = false;
    job->json = spool_read(fd, &job->len, &toobig);
    close(fd);
    if (toobig) {
        /* Never cut short: a run that does not fit is kept in failed/, not sent half. */
        spool_fail(s, job->e->name, "larger than the spool's limit for one run");
        return 0;
    }
    if (!job->json)
        return -1;
    cJSON *obj = cJSON_ParseWithLength(job->json, job->len);
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(obj, "metadata"), "namespace");
    *ns_out = cJSON_IsString(ns) ? strdup(ns->valuestring) : NULL;
    cJSON_Delete(obj);
    if (!*ns_out) {
        free(job->json);
        job->json = NULL;
        spool_fail(s, job->e->name, "unreadable spool entry: not a PipelineRun with a namespace");
        return 0;
    }
    return 1;
}

/* Acts on the API's final answer for a spooled run; returns true when it left the spool. */
static bool spool_settle(struct spool *s, struct spool_entry *e, const struct kube_result *rp) {
    char path[4096];
    struct kube_result r = *rp;

    snprintf(path, sizeof(path), "%s/%s", s->dir, e->name);
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

/* Runs on the API client's loop thread: hands the answer back to the worker. */
static void spool_job_done(void *arg, const struct kube_result *r) {
    struct spool_job *job = arg;
    pthread_mutex_lock(&job->s->lock);
    job->r = *r;
    job->done = true;
    pthread_cond_broadcast(&job->s->wake);
    pthread_mutex_unlock(&job->s->lock);
}

/*
 * The next attempt of an entry that stays: the last answer's Retry-After
 * (already clamped) when it gave one, else exponential backoff with jitter.
 */
static void spool_backoff(struct spool_entry *e) {
    uint64_t rnd = ids_fast_random();
    e->next_ms = (long)clock_mono_ms() +
                 (e->retry_after_ms >= 0 ? e->retry_after_ms : e->backoff_ms + (long)(rnd % 250));
    e->retry_after_ms = -1;
    e->backoff_ms =
        e->backoff_ms * 2 > SPOOL_BACKOFF_MAX_MS ? SPOOL_BACKOFF_MAX_MS : e->backoff_ms * 2;
}

/* Starts the due entry's create; false when it finished here (left the spool or waits). */
static bool spool_launch(struct spool *s, struct spool_job *job) {
    char *ns = NULL;
    int rc = spool_prepare(s, job, &ns);
    if (rc <= 0) {
        if (rc == 0)
            job->e->seen = false;
        else
            spool_backoff(job->e);
        return false;
    }
    job->done = false;
    kube_create_async(s->kube, ns, job->json, job->len, SPOOL_ATTEMPT_MS, spool_job_done, job);
    free(ns);
    return true;
}

/*
 * Tries every due entry, SPOOL_PARALLEL at a time through the API client's
 * loop, settling each as its answer comes: an entry the API is slow to
 * answer (a 404 retried to its deadline) holds up none of the others.
 */
static void spool_pass(struct spool *s, struct spool_entry **due, size_t ndue) {
    struct spool_job jobs[SPOOL_PARALLEL];
    bool busy[SPOOL_PARALLEL] = {false};
    size_t next = 0, running = 0;

    for (;;) {
        for (size_t i = 0; i < SPOOL_PARALLEL && next < ndue && !s->stopping; i++) {
            if (busy[i])
                continue;
            jobs[i] = (struct spool_job){.s = s, .e = due[next++]};
            if (spool_launch(s, &jobs[i])) {
                busy[i] = true;
                running++;
            }
        }
        if (!running)
            break;
        pthread_mutex_lock(&s->lock);
        bool any = false;
        while (!any) {
            for (size_t i = 0; i < SPOOL_PARALLEL && !any; i++)
                any = busy[i] && jobs[i].done;
            if (!any)
                pthread_cond_wait(&s->wake, &s->lock);
        }
        pthread_mutex_unlock(&s->lock);
        for (size_t i = 0; i < SPOOL_PARALLEL; i++) {
            if (!busy[i] || !jobs[i].done)
                continue;
            busy[i] = false;
            running--;
            free(jobs[i].json);
            if (spool_settle(s, jobs[i].e, &jobs[i].r))
                jobs[i].e->seen = false;
            else
                spool_backoff(jobs[i].e);
        }
    }
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
        size_t ndue = 0;
        while (d && (de = readdir(d)) != NULL && !s->stopping) {
            if (!spool_is_entry(de->d_name))
                continue;
            struct spool_entry *e = spool_track(s, de->d_name);
            if (!e)
                continue;
            e->seen = true;
            if ((long)clock_mono_ms() >= e->next_ms)
                s->due[ndue++] = e;
        }
        if (d)
            closedir(d);
        spool_pass(s, s->due, ndue);
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
    s->due = calloc(SPOOL_MAX_TRACKED, sizeof(*s->due));
    if (!s->entries || !s->due)
        return GHE_NOMEM;
    if (pthread_create(&s->thread, NULL, spool_worker, s) != 0)
        return GHE_NOMEM;
    s->running = true;
    return 0;
}
