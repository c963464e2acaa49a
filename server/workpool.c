#include "gpuhook/workpool.h"
#include "gpuhook/error.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

struct workpool_job {
    void (*fn)(void *arg);
    void *arg;
    struct workpool_job *next;
};

struct workpool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct workpool_job *head, *tail;
    pthread_t *threads;
    size_t count, max, idle, queued;
    bool stopping;
};

static void *workpool_main(void *arg) {
    struct workpool *p = arg;

    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->stopping) {
            p->idle++;
            pthread_cond_wait(&p->wake, &p->lock);
            p->idle--;
        }
        struct workpool_job *j = p->head;
        if (!j)
            break; /* stopping with nothing left */
        p->head = j->next;
        p->queued--;
        if (!p->head)
            p->tail = NULL;
        pthread_mutex_unlock(&p->lock);
        j->fn(j->arg);
        free(j);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Called with the lock held. */
static int workpool_grow(struct workpool *p) {
    if (p->count == p->max)
        return GHE_UNAVAILABLE;
    if (pthread_create(&p->threads[p->count], NULL, workpool_main, p) != 0)
        return GHE_NOMEM;
    p->count++;
    return 0;
}

struct workpool *workpool_new(size_t min, size_t max) {
    struct workpool *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->threads = calloc(max, sizeof(*p->threads));
    if (!p->threads) {
        free(p);
        return NULL;
    }
    p->max = max;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < min && i < max; i++)
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
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->count; i++)
        pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
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
