#include "gpuhook/workpool.h"
#include "gpuhook/error.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

struct workpool_job {
    void (*fn)(void *arg);
    void *arg;
    struct workpool_job *next;
};

/*
 * Threads are detached: one idle for idle_ms while more than min run leaves
 * on its own, so a burst's threads do not stay for good. workpool_free waits
 * for the count to reach zero instead of joining.
 */
struct workpool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t gone; /* signalled as the last thread leaves */
    struct workpool_job *head, *tail;
    size_t count, min, max, idle, queued;
    long idle_ms;
    bool stopping;
};

static void workpool_deadline(struct timespec *ts, long ms) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *workpool_main(void *arg) {
    struct workpool *p = arg;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        bool timed_out = false;
        while (!p->head && !p->stopping && !timed_out) {
            struct timespec until;
            workpool_deadline(&until, p->idle_ms);
            p->idle++;
            timed_out = pthread_cond_timedwait(&p->wake, &p->lock, &until) != 0 && !p->head;
            p->idle--;
        }
        struct workpool_job *j = p->head;
        if (!j) {
            if (p->stopping || p->count > p->min)
                break;
            continue; /* idle, but among the min that stay */
        }
        p->head = j->next;
        p->queued--;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&p->lock);
    }
    if (--p->count == 0)
        pthread_cond_broadcast(&p->gone);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Called with the lock held. */
static int workpool_grow(struct workpool *p) {
    pthread_attr_t attr;
    pthread_t t;

    if (p->count == p->max)
        return GHE_UNAVAILABLE;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&t, &attr, workpool_main, p);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return GHE_NOMEM;
    p->count++;
    return 0;
}

struct workpool *workpool_new(size_t min, size_t max, long idle_ms) {
    struct workpool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->min = min < max ? min : max;
    p->max = max;
    p->idle_ms = idle_ms > 0 ? idle_ms : 1;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->gone, NULL);
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->min; i++)
        workpool_grow(p);
    pthread_mutex_unlock(&p->lock);
    return p;
}

void workpool_free(struct workpool *p) {
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    while (p->count > 0)
        pthread_cond_wait(&p->gone, &p->lock);
    pthread_mutex_unlock(&p->lock);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->gone);
    free(p);
}

int workpool_submit(struct workpool *p, void (*fn)(void *arg), void *arg) {
    struct workpool_job *j = malloc(sizeof(*j));
    if (!j)
        return GHE_NOMEM;
    j->fn = fn;
    j->arg = arg;
    j->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    /* Every job may block for seconds, so a queued job gets its own thread if it can. */
    if (p->queued > p->idle)
        workpool_grow(p);
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

size_t workpool_threads(struct workpool *p) {
    pthread_mutex_lock(&p->lock);
    size_t n = p->count;
    pthread_mutex_unlock(&p->lock);
    return n;
}
