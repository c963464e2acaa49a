/*
 * The slow-client guard: no client holds a connection slot by sending slowly.
 *
 * libmicrohttpd 0.9.75 has only an idle timeout (MHD_OPTION_CONNECTION_TIMEOUT),
 * which every byte resets, so a client dripping one header byte a second holds
 * its slot for ever. The guard tracks every connection itself: libmicrohttpd
 * reports each one opening and closing (MHD_OPTION_NOTIFY_CONNECTION, with a
 * per-socket context), the HTTP layer reports when a header block is complete,
 * how many body bytes came, and when a request is answered. A sweeper thread
 * looks at every connection four times a second and shuts down (shutdown(2))
 * the socket of one past its deadline: the whole header block within
 * header_timeout_seconds (counted from the accept, or from the previous answer
 * on a kept-alive connection), the body at min_body_bytes_per_second on
 * average once header_timeout_seconds have passed. libmicrohttpd then sees the
 * socket end and frees the connection in its own thread, as for any client
 * that hangs up. Connections waiting for gpuhook itself (suspended for the
 * Kubernetes API) are exempt.
 *
 * When the connections open reach seven eighths of max_connections, a new one
 * evicts the oldest that has spent at least a second on its header block, so
 * a crowd of slow clients cannot fill the table before their deadlines.
 */
#ifndef GPUHOOK_CONNGUARD_H
#define GPUHOOK_CONNGUARD_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

struct connguard_limits {
    long header_ms;       /* the whole request line and header block */
    long min_body_rate;   /* bytes per second on average, 0 for no floor */
    long max_connections; /* what libmicrohttpd is given as its limit */
};

struct connguard;

/* Starts the sweeper. Returns NULL when out of memory. */
struct connguard *connguard_new(const struct connguard_limits *limits);
/* Stops the sweeper and frees every record (call after the daemon stopped). */
void connguard_free(struct connguard *g);

/* The MHD_OPTION_NOTIFY_CONNECTION callback; cls is the guard. */
void connguard_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
                      enum MHD_ConnectionNotificationCode code);

/* The connection's header block is complete: its body clock starts. */
void connguard_headers_done(struct MHD_Connection *conn);
/* n more body bytes arrived on the connection. */
void connguard_body_bytes(struct MHD_Connection *conn, size_t n);
/* The connection waits for gpuhook (true) or is back to the client (false). */
void connguard_waiting(struct MHD_Connection *conn, bool waiting);
/* The request was answered: a kept-alive connection's header clock restarts. */
void connguard_request_done(struct MHD_Connection *conn);

/* Connections tracked now. */
long connguard_count(struct connguard *g);

#endif
