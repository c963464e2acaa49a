/*
 * benchtool: the small helpers bench/run.sh needs, in C so that the suite
 * depends on nothing beyond the build's own libraries.
 *
 *   benchtool sign SECRET_FILE BODY_FILE      hex HMAC-SHA256 of the body
 *   benchtool payload FIXTURE BYTES OUT       a valid push of exactly BYTES bytes
 *   benchtool startup PORT RUNS CMD [ARG...]  ms from exec to the first 200 on
 *                                             /healthz, per run and the median
 *   benchtool freeport                        a free TCP port on 127.0.0.1
 *
 * The payload keeps the fixture's ref, head commit and repository, and appends
 * commits (copies of the first, each with a ~4 KB message) to the commits
 * array; the last message is sized so that the file is exactly BYTES long.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define BENCHTOOL_MESSAGE_BYTES 4000

static char *benchtool_read(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "benchtool: %s: %s\n", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap + 1);
    while (s) {
        n += fread(s + n, 1, cap - n, f);
        if (n < cap)
            break;
        char *p = realloc(s, cap * 2 + 1);
        if (!p) {
            free(s);
            s = NULL;
            break;
        }
        s = p;
        cap *= 2;
    }
    fclose(f);
    if (s)
        s[n] = '\0';
    *len = n;
    return s;
}

static int benchtool_sign(const char *secret_file, const char *body_file) {
    size_t klen = 0, blen = 0;
    char *key = benchtool_read(secret_file, &klen);
    char *body = benchtool_read(body_file, &blen);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!key || !body)
        return 1;
    /* gpuhook trims one trailing newline from secret files; so does this. */
    while (klen > 0 && (key[klen - 1] == '\n' || key[klen - 1] == '\r'))
        klen--;
    HMAC(EVP_sha256(), key, (int)klen, (unsigned char *)body, blen, md, &mdlen);
    for (unsigned int i = 0; i < mdlen; i++)
        printf("%02x", md[i]);
    printf("\n");
    free(key);
    free(body);
    return 0;
}

/* Words, with a newline now and then unless plain is set (a newline prints as two bytes). */
static void benchtool_filler(char *out, size_t n, unsigned long seed, int plain) {
    static const char *const words[] = {"refactor", "the",   "pipeline", "stage",  "so",
                                        "that",     "cells", "are",      "scored", "in",
                                        "batches",  "and",   "memory",   "stays",  "flat,",
                                        "tests",    "cover", "umap",     "leiden", "clustering."};
    size_t nw = sizeof(words) / sizeof(words[0]), i = 0;
    while (i < n) {
        const char *w = words[seed++ % nw];
        for (size_t j = 0; w[j] && i < n; j++)
            out[i++] = w[j];
        if (i < n)
            out[i++] = !plain && seed % 11 == 0 ? '\n' : ' ';
    }
    out[n] = '\0';
}

static cJSON *benchtool_commit(const cJSON *model, unsigned long seq, size_t message_len,
                               int plain) {
    cJSON *c = cJSON_Duplicate(model, 1);
    char id[41], *msg = malloc(message_len + 1);
    if (!c || !msg) {
        cJSON_Delete(c);
        free(msg);
        return NULL;
    }
    snprintf(id, sizeof(id), "%040lx", seq);
    cJSON_ReplaceItemInObjectCaseSensitive(c, "id", cJSON_CreateString(id));
    benchtool_filler(msg, message_len, seq, plain);
    cJSON_ReplaceItemInObjectCaseSensitive(c, "message", cJSON_CreateString(msg));
    free(msg);
    return c;
}

static size_t benchtool_printed_len(const cJSON *doc) {
    char *s = cJSON_PrintUnformatted(doc);
    size_t n = s ? strlen(s) : 0;
    free(s);
    return n;
}

static int benchtool_payload(const char *fixture, const char *bytes, const char *out) {
    size_t len = 0, target = strtoul(bytes, NULL, 10);
    char *src = benchtool_read(fixture, &len);
    int rc = 1;
    if (!src)
        return 1;
    cJSON *doc = cJSON_Parse(src);
    free(src);
    cJSON *commits = cJSON_GetObjectItemCaseSensitive(doc, "commits");
    const cJSON *model = cJSON_GetArrayItem(commits, 0);
    if (!model) {
        fprintf(stderr, "benchtool: %s has no commits to copy\n", fixture);
        goto out;
    }
    size_t base = benchtool_printed_len(doc);
    cJSON *one = benchtool_commit(model, 1, BENCHTOOL_MESSAGE_BYTES, 0);
    size_t per = benchtool_printed_len(one) + 1;
    cJSON_Delete(one);
    if (target < base + 2 * per) {
        fprintf(stderr, "benchtool: %zu bytes is too small (at least %zu)\n", target,
                base + 2 * per);
        goto out;
    }
    unsigned long seq = 1;
    for (size_t k = (target - base) / per - 2; k > 0; k--)
        cJSON_AddItemToArray(commits, benchtool_commit(model, ++seq, BENCHTOOL_MESSAGE_BYTES, 0));
    cJSON *last = benchtool_commit(model, ++seq, 0, 1);
    cJSON_AddItemToArray(commits, last);
    size_t now = benchtool_printed_len(doc);
    cJSON *sized = benchtool_commit(model, seq, target - now, 1);
    cJSON_ReplaceItemViaPointer(commits, last, sized);
    char *s = cJSON_PrintUnformatted(doc);
    if (!s || strlen(s) != target) {
        fprintf(stderr, "benchtool: built %zu bytes instead of %zu\n", s ? strlen(s) : 0, target);
        free(s);
        goto out;
    }
    FILE *f = fopen(out, "wb");
    if (!f || fwrite(s, 1, target, f) != target || fclose(f) != 0) {
        fprintf(stderr, "benchtool: cannot write %s\n", out);
        free(s);
        goto out;
    }
    free(s);
    rc = 0;
out:
    cJSON_Delete(doc);
    return rc;
}

static double benchtool_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One GET /healthz; true on a 200. */
static int benchtool_healthz(int port) {
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Connection: close\r\n\r\n";
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    char buf[64];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), ok = 0;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return 0;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof(req) - 1)) {
        size_t n = 0;
        ssize_t r;
        while (n < 12 && (r = recv(fd, buf + n, sizeof(buf) - 1 - n, 0)) > 0)
            n += (size_t)r;
        buf[n] = '\0';
        ok = n >= 12 && strncmp(buf + 9, "200", 3) == 0;
    }
    close(fd);
    return ok;
}

static int benchtool_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int benchtool_startup(int port, int runs, char **cmd) {
    double ms[64];
    if (runs < 1 || runs > 64)
        runs = 5;
    for (int i = 0; i < runs; i++) {
        double t0 = benchtool_now_ms(), t = 0;
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            execv(cmd[0], cmd);
            _exit(127);
        }
        for (;;) {
            if (benchtool_healthz(port)) {
                t = benchtool_now_ms() - t0;
                break;
            }
            int st;
            if (waitpid(pid, &st, WNOHANG) == pid) {
                fprintf(stderr, "benchtool: %s exited before it served /healthz\n", cmd[0]);
                return 1;
            }
            if (benchtool_now_ms() - t0 > 10000) {
                fprintf(stderr, "benchtool: no 200 on /healthz within 10 s\n");
                kill(pid, SIGKILL);
                waitpid(pid, NULL, 0);
                return 1;
            }
            struct timespec ts = {0, 100 * 1000};
            nanosleep(&ts, NULL);
        }
        ms[i] = t;
        kill(pid, SIGTERM);
        waitpid(pid, NULL, 0);
        printf("run %d: %.2f ms\n", i + 1, t);
    }
    qsort(ms, (size_t)runs, sizeof(ms[0]), benchtool_cmp);
    printf("median %.2f ms\n", runs % 2 ? ms[runs / 2] : (ms[runs / 2 - 1] + ms[runs / 2]) / 2);
    return 0;
}

static int benchtool_freeport(void) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        return 1;
    printf("%u\n", (unsigned int)ntohs(sa.sin_port));
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "sign") == 0)
        return benchtool_sign(argv[2], argv[3]);
    if (argc >= 5 && strcmp(argv[1], "payload") == 0)
        return benchtool_payload(argv[2], argv[3], argv[4]);
    if (argc >= 5 && strcmp(argv[1], "startup") == 0)
        return benchtool_startup(atoi(argv[2]), atoi(argv[3]), argv + 4);
    if (argc >= 2 && strcmp(argv[1], "freeport") == 0)
        return benchtool_freeport();
    fprintf(stderr, "usage: benchtool sign SECRET_FILE BODY_FILE\n"
                    "       benchtool payload FIXTURE BYTES OUT\n"
                    "       benchtool startup PORT RUNS CMD [ARG...]\n"
                    "       benchtool freeport\n");
    return 2;
}
