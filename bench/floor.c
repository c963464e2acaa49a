/*
 * floor: the least a receiver built on libmicrohttpd and OpenSSL can do. It
 * streams the raw body through HMAC-SHA256 and answers 202 with no body. It
 * parses nothing, checks no header and keeps no body, so no receiver on this
 * stack can beat it; bench/run.sh quotes gpuhook's numbers as ratios to it.
 *
 * usage: floor PORT SECRET_FILE [tpc|pool]
 *   tpc   thread per connection with poll(), the mode gpuhook uses;
 *   pool  one epoll thread per core (libmicrohttpd's fastest mode).
 * PORT 0 picks a free port. The bound port is printed on stdout as "port N".
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

static EVP_MAC_CTX *floor_prepared;
static struct MHD_Response *floor_accepted;

static enum MHD_Result floor_access(void *cls, struct MHD_Connection *conn, const char *url,
                                    const char *method, const char *version,
                                    const char *upload_data, size_t *upload_data_size,
                                    void **req_cls) {
    EVP_MAC_CTX *ctx = *req_cls;
    (void)cls;
    (void)url;
    (void)method;
    (void)version;

    if (!ctx) {
        /* Duplicating a keyed state skips the key schedule, as gpuhook does. */
        ctx = EVP_MAC_CTX_dup(floor_prepared);
        if (!ctx)
            return MHD_NO;
        *req_cls = ctx;
        return MHD_YES;
    }
    if (*upload_data_size) {
        EVP_MAC_update(ctx, (const unsigned char *)upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    size_t mdlen = 0;
    EVP_MAC_final(ctx, md, &mdlen, sizeof(md));
    return MHD_queue_response(conn, MHD_HTTP_ACCEPTED, floor_accepted);
}

static void floor_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                            enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)conn;
    (void)toe;
    EVP_MAC_CTX_free(*req_cls);
    *req_cls = NULL;
}

static int floor_read_secret(const char *path, char *out, size_t cap, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(out, 1, cap, f);
    fclose(f);
    while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
        n--;
    *len = n;
    return n ? 0 : -1;
}

int main(int argc, char **argv) {
    char secret[4096];
    size_t secret_len = 0;
    char digest[] = "SHA256";

    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT SECRET_FILE [tpc|pool]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    const char *mode = argc > 3 ? argv[3] : "pool";
    if (floor_read_secret(argv[2], secret, sizeof(secret), &secret_len) != 0) {
        fprintf(stderr, "floor: cannot read a secret from %s\n", argv[2]);
        return 2;
    }
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    floor_prepared = mac ? EVP_MAC_CTX_new(mac) : NULL;
    if (!floor_prepared ||
        EVP_MAC_init(floor_prepared, (const unsigned char *)secret, secret_len, params) != 1) {
        fprintf(stderr, "floor: OpenSSL has no HMAC-SHA256\n");
        return 1;
    }
    /* Block the stop signals before any thread starts, so that only sigwait sees them. */
    sigset_t set;
    int sig = 0;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    floor_accepted = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);

    struct MHD_Daemon *d;
    if (strcmp(mode, "tpc") == 0) {
        d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                                 MHD_USE_POLL | MHD_USE_ITC,
                             (uint16_t)port, NULL, NULL, floor_access, NULL,
                             MHD_OPTION_NOTIFY_COMPLETED, floor_completed, NULL,
                             MHD_OPTION_CONNECTION_LIMIT, 1024U, MHD_OPTION_CONNECTION_TIMEOUT, 15U,
                             MHD_OPTION_END);
    } else {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        d = MHD_start_daemon(MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_TURBO, (uint16_t)port, NULL,
                             NULL, floor_access, NULL, MHD_OPTION_NOTIFY_COMPLETED, floor_completed,
                             NULL, MHD_OPTION_THREAD_POOL_SIZE,
                             (unsigned int)(cores > 0 ? cores : 1), MHD_OPTION_CONNECTION_LIMIT,
                             1024U, MHD_OPTION_CONNECTION_TIMEOUT, 15U, MHD_OPTION_END);
    }
    if (!d) {
        fprintf(stderr, "floor: cannot listen on port %d\n", port);
        return 1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    printf("port %u\n", info ? (unsigned int)info->port : (unsigned int)port);
    fflush(stdout);

    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    MHD_destroy_response(floor_accepted);
    EVP_MAC_CTX_free(floor_prepared);
    EVP_MAC_free(mac);
    return 0;
}
