#include "gpuhook/connguard.h"
#include "gpuhook/clock.h"
#include "gpuhook/logger.h"
#include "gpuhook/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#define CONNGUARD_SWEEP_MS 250
#define CONNGUARD_EVICT_MIN_AGE_MS 1000

enum connguard_phase { CONNGUARD_HEADERS, CONNGUARD_BODY, CONNGUARD_WAITING };

/* One connection. Its own thread writes the atomics; the sweeper reads them under the lock. */
struct connguard_conn {
    struct connguard *guard;
    int fd;
    atomic_int phase;
    atomic_long since_ms; /* when the phase began */
    atomic_long body_bytes;
    bool cut; /* shut down already; guarded by the lock */
    struct connguard_conn *prev, *next;
};

struct connguard {
    struct connguard_limits limits;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    struct connguard_conn *head;
    long count;
    bool stopping;
    pthread_t thread;
};

/* Shuts a connection's socket down; the caller holds the lock, so the fd is still open. */
static void connguard_cut(struct connguard_conn *c, int reason) {
    if (c->cut)
        return;
    c->cut = true;
    shutdown(c->fd, SHUT_RDWR);
    metrics_connection_cut(reason);
}

/* The reason a connection must go now, or -1. */
static int connguard_overdue(const struct connguard *g, struct connguard_conn *c, long now) {
    long age = now - atomic_load(&c->since_ms);
    switch (atomic_load(&c->phase)) {
    case CONNGUARD_HEADERS:
        return age > g->limits.header_ms ? METRICS_CONN_CUT_HEADER_DEADLINE : -1;
    case CONNGUARD_BODY: {
        long late = age - g->limits.header_ms;
        if (late <= 0 || g->limits.min_body_rate <= 0)
            return -1;
        long owed = (long)((double)g->limits.min_body_rate * (double)late / 1000.0);
        return atomic_load(&c->body_bytes) < owed ? METRICS_CONN_CUT_BODY_RATE : -1;
    }
    default:
        return -1;
    }
}

static void *connguard_sweeper(void *arg) {
    struct connguard *g = arg;

    pthread_mutex_lock(&g->lock);
    while (!g->stopping) {
        long now = (long)clock_mono_ms();
        for (struct connguard_conn *c = g->head; c; c = c->next) {
            int reason = c->cut ? -1 : connguard_overdue(g, c, now);
            if (reason >= 0)
                connguard_cut(c, reason);
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += CONNGUARD_SWEEP_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->wake, &g->lock, &until);
    }
    pthread_mutex_unlock(&g->lock);
    return NULL;
}

struct connguard *connguard_new(const struct connguard_limits *limits) {
    struct connguard *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->limits = *limits;
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->wake, NULL);
    if (pthread_create(&g->thread, NULL, connguard_sweeper, g) != 0) {
        pthread_mutex_destroy(&g->lock);
        pthread_cond_destroy(&g->wake);
        free(g);
        return NULL;
    }
    return g;
}

void connguard_free(struct connguard *g) {
    if (!g)
        return;
    pthread_mutex_lock(&g->lock);
    g->stopping = true;
    pthread_cond_broadcast(&g->wake);
    pthread_mutex_unlock(&g->lock);
    pthread_join(g->thread, NULL);
    while (g->head) {
        struct connguard_conn *c = g->head;
        g->head = c->next;
        free(c);
    }
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->wake);
    free(g);
}

/* Near the limit: the oldest connection still on its header block gives its slot up. */
static void connguard_evict(struct connguard *g, long now) {
    struct connguard_conn *oldest = NULL;
    long oldest_since = now - CONNGUARD_EVICT_MIN_AGE_MS;
    for (struct connguard_conn *c = g->head; c; c = c->next) {
        long since = atomic_load(&c->since_ms);
        if (!c->cut && atomic_load(&c->phase) == CONNGUARD_HEADERS && since <= oldest_since) {
            oldest = c;
            oldest_since = since;
        }
    }
    if (oldest)
        connguard_cut(oldest, METRICS_CONN_CUT_EVICTED);
}

void connguard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode code) {
    struct connguard *g = cls;
    struct connguard_conn *c = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *fd =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c = calloc(1, sizeof(*c));
        if (!c || !fd) {
            /* Unguarded, it still has libmicrohttpd's idle timeout. */
            free(c);
            return;
        }
        long now = (long)clock_mono_ms();
        c->guard = g;
        c->fd = fd->connect_fd;
        atomic_init(&c->phase, CONNGUARD_HEADERS);
        atomic_init(&c->since_ms, now);
        atomic_init(&c->body_bytes, 0);
        pthread_mutex_lock(&g->lock);
        if (g->count >= g->limits.max_connections - g->limits.max_connections / 8)
            connguard_evict(g, now);
        c->next = g->head;
        if (g->head)
            g->head->prev = c;
        g->head = c;
        g->count++;
        pthread_mutex_unlock(&g->lock);
        *socket_context = c;
        return;
    }
    if (!c)
        return;
    /* Closed: libmicrohttpd closes the fd after this returns, so the sweeper never sees it. */
    pthread_mutex_lock(&g->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        g->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    g->count--;
    pthread_mutex_unlock(&g->lock);
    free(c);
    *socket_context = NULL;
}

static struct connguard_conn *connguard_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

static void connguard_enter(struct MHD_Connection *conn, int phase) {
    struct connguard_conn *c = connguard_of(conn);
    if (!c)
        return;
    atomic_store(&c->body_bytes, 0);
    atomic_store(&c->since_ms, (long)clock_mono_ms());
    atomic_store(&c->phase, phase);
}

void connguard_headers_done(struct MHD_Connection *conn) { connguard_enter(conn, CONNGUARD_BODY); }

void connguard_body_bytes(struct MHD_Connection *conn, size_t n) {
    struct connguard_conn *c = connguard_of(conn);
    if (c)
        atomic_fetch_add(&c->body_bytes, (long)n);
}

void connguard_waiting(struct MHD_Connection *conn, bool waiting) {
    struct connguard_conn *c = connguard_of(conn);
    if (c)
        atomic_store(&c->phase, waiting ? CONNGUARD_WAITING : CONNGUARD_BODY);
}

void connguard_request_done(struct MHD_Connection *conn) {
    connguard_enter(conn, CONNGUARD_HEADERS);
}

long connguard_count(struct connguard *g) {
    pthread_mutex_lock(&g->lock);
    long n = g->count;
    pthread_mutex_unlock(&g->lock);
    return n;
}
