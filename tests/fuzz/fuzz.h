/*
 * Shared by the libFuzzer targets in tests/fuzz/ and by
 * tests/test_fuzz_regressions.c. Each target's body is a plain function,
 * fuzz_<target>_one(), so that a reproducer runs through exactly the same code
 * in the fuzz build and in the normal build. A target defines
 * LLVMFuzzerTestOneInput only when FUZZ_NO_MAIN is not defined.
 *
 * The bodies check invariants as well as memory safety: a broken invariant
 * prints what broke and aborts, which libFuzzer reports as a crash.
 */
#ifndef GPUHOOK_FUZZ_H
#define GPUHOOK_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The nine targets; each always returns 0 (libFuzzer keeps the input). */
int fuzz_signature_one(const uint8_t *data, size_t size);
int fuzz_event_one(const uint8_t *data, size_t size);
int fuzz_template_one(const uint8_t *data, size_t size);
int fuzz_config_one(const uint8_t *data, size_t size);
int fuzz_request_one(const uint8_t *data, size_t size);
int fuzz_retryafter_one(const uint8_t *data, size_t size);
int fuzz_kwatch_one(const uint8_t *data, size_t size);
int fuzz_gpuview_one(const uint8_t *data, size_t size);
int fuzz_ghsummary_one(const uint8_t *data, size_t size);

#ifndef FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
#endif

/* Writes the path of rel inside the source tree ($GPUHOOK_SOURCE_DIR, else the
 * folder compiled in, else "."). */
void fuzz_source_path(char *out, size_t n, const char *rel);

/*
 * A private folder for this process's scratch files, made on first use and
 * removed at exit. Returns its path (static storage) or aborts.
 */
const char *fuzz_temp_dir(void);

/* Writes len bytes to path (created or truncated). Aborts on failure. */
void fuzz_write_file(const char *path, const void *data, size_t len);

/* Copies the source file rel to path. Aborts on failure. */
void fuzz_copy_source(const char *rel, const char *path);

/* Keeps the logs quiet: only errors are written. */
void fuzz_quiet(void);

/* Aborts with a message when an invariant does not hold. */
#define FUZZ_REQUIRE(cond, ...)                                                                    \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fuzz_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                                     \
    } while (0)

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));

/* A NUL-terminated copy of data (caller frees); aborts when memory runs out. */
char *fuzz_strndup(const uint8_t *data, size_t size);

/*
 * Splits data at each byte sep into at most max fields, NUL-terminating
 * each inside one copy (*storage, caller frees). Returns the field count.
 */
size_t fuzz_split(const uint8_t *data, size_t size, char sep, char **fields, size_t max,
                  char **storage);

/* True when s is valid JSON (len bytes). */
bool fuzz_is_json(const char *s, size_t len);

#endif
