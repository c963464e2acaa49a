/*
 * fakeapi: a minimal, fast stand-in for the Kubernetes API in gpuhook's
 * end-to-end benchmark. It answers
 *   POST /apis/tekton.dev/v1/namespaces/<ns>/pipelineruns   201, a small JSON body
 *   GET  /readyz                                             200 "ok"
 *   anything else                                            404
 * over keep-alive connections. It reads and drops the request body and keeps
 * nothing, so its cost per request is as small as the stack allows. When
 * stopped it prints "created N connections M" on stdout: the runs it accepted
 * and the TCP connections they came over.
 *
 * usage: fakeapi PORT   (0 picks a free port; "port N" is printed on stdout)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>

#define FAKEAPI_PREFIX "/apis/tekton.dev/v1/namespaces/"
#define FAKEAPI_SUFFIX "/pipelineruns"

static const char fakeapi_created_body[] =
    "{\"apiVersion\":\"tekton.dev/v1\",\"kind\":\"PipelineRun\","
    "\"metadata\":{\"name\":\"bench\",\"uid\":\"00000000-0000-0000-0000-000000000000\"}}";

static struct MHD_Response *fakeapi_created, *fakeapi_ok, *fakeapi_missing;
static atomic_long fakeapi_count, fakeapi_connections;

/* Counting connections shows whether the client reuses them (keep-alive). */
static void fakeapi_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                               enum MHD_ConnectionNotificationCode toe) {
    (void)cls;
    (void)conn;
    (void)socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&fakeapi_connections, 1);
}

static int fakeapi_is_create(const char *method, const char *url) {
    size_t plen = sizeof(FAKEAPI_PREFIX) - 1, slen = sizeof(FAKEAPI_SUFFIX) - 1;
    size_t n = strlen(url);
    if (strcmp(method, "POST") != 0 || n <= plen + slen)
        return 0;
    if (strncmp(url, FAKEAPI_PREFIX, plen) != 0 || strcmp(url + n - slen, FAKEAPI_SUFFIX) != 0)
        return 0;
    /* The namespace is exactly one path segment. */
    return memchr(url + plen, '/', n - plen - slen) == NULL;
}

static enum MHD_Result fakeapi_access(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **req_cls) {
    static int started;
    (void)cls;
    (void)version;
    (void)upload_data;

    if (!*req_cls) {
        *req_cls = &started;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (fakeapi_is_create(method, url)) {
        atomic_fetch_add(&fakeapi_count, 1);
        return MHD_queue_response(conn, MHD_HTTP_CREATED, fakeapi_created);
    }
    if (strcmp(url, "/readyz") == 0 && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0))
        return MHD_queue_response(conn, MHD_HTTP_OK, fakeapi_ok);
    return MHD_queue_response(conn, MHD_HTTP_NOT_FOUND, fakeapi_missing);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    sigset_t set;
    int sig = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    fakeapi_created = MHD_create_response_from_buffer(
        sizeof(fakeapi_created_body) - 1, (void *)fakeapi_created_body, MHD_RESPMEM_PERSISTENT);
    fakeapi_ok = MHD_create_response_from_buffer(2, (void *)"ok", MHD_RESPMEM_PERSISTENT);
    fakeapi_missing = MHD_create_response_from_buffer(
        sizeof("{\"kind\":\"Status\",\"code\":404}") - 1,
        (void *)"{\"kind\":\"Status\",\"code\":404}", MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(fakeapi_created, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(fakeapi_missing, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(fakeapi_ok, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");

    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO, (uint16_t)port, NULL, NULL, fakeapi_access,
        NULL, MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)(cores > 0 ? cores : 1),
        MHD_OPTION_CONNECTION_LIMIT, 1024U, MHD_OPTION_CONNECTION_TIMEOUT, 30U,
        MHD_OPTION_NOTIFY_CONNECTION, fakeapi_connection, NULL, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "fakeapi: cannot listen on port %d\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("port %u\n", info ? (unsigned int)info->port : (unsigned int)port);
    fflush(stdout);
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    printf("created %ld connections %ld\n", atomic_load(&fakeapi_count),
           atomic_load(&fakeapi_connections));
    MHD_destroy_response(fakeapi_created);
    MHD_destroy_response(fakeapi_ok);
    MHD_destroy_response(fakeapi_missing);
    return 0;
}
