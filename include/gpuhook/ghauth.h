/*
 * Credentials for GitHub's REST API, both ways GitHub offers them.
 *
 * A GitHub App: the App's private key (a PEM file, PKCS#1 or PKCS#8) signs a
 * short JWT (RS256, iat 60 s in the past, exp 9 minutes after now), which is
 * exchanged at POST {api_url}/app/installations/{id}/access_tokens for an
 * installation token. Tokens are cached per installation id until shortly
 * before their expires_at, and refetched then, or at once after a 401.
 *
 * A token file (a personal access token): re-read when its inode, size or
 * mtime change, at most once per second.
 *
 * Nothing here logs a key, a JWT or a token. The exchange is a blocking call
 * (curl easy): only ghapi's own thread makes it, never a webhook's.
 */
#ifndef GPUHOOK_GHAUTH_H
#define GPUHOOK_GHAUTH_H
#include <stdbool.h>
#include <stddef.h>

/* The longest token or JWT this module hands out, NUL included. */
#define GHAUTH_TOKEN_MAX 4096
/* Key and token files larger than this are refused. */
#define GHAUTH_FILE_MAX (64 * 1024)

struct ghauth;

/*
 * Fetches one installation token: used by tests in place of the HTTP exchange.
 * Fills token (tokenlen bytes) and *expires_ms (unix ms); returns 0 or an error.
 */
typedef int (*ghauth_fetch_fn)(void *arg, long long installation_id, const char *jwt, char *token,
                               size_t tokenlen, long long *expires_ms);

struct ghauth_config {
    const char *api_url;          /* "https://api.github.com" or "https://HOST/api/v3" */
    long long app_id;             /* > 0: App mode, with private_key_file */
    const char *private_key_file; /* App mode */
    const char *token_file;       /* token mode (app_id 0) */
    const char *ca_file;          /* optional: the CA bundle for api_url */
    const char *user_agent;       /* default "gpuhook/VERSION" */
    long timeout_ms;              /* the exchange's whole time; default 10000 */
    /* Tests only: a clock (unix ms) and an exchange to use instead of the real ones. */
    long long (*now_ms)(void);
    ghauth_fetch_fn fetch;
    void *fetch_arg;
};

/*
 * Checks the configuration and reads the key (or the token file) once, so a
 * bad key fails at start. Returns 0 with *out (ghauth_free), or GHE_INVAL /
 * GHE_IO / GHE_NOMEM with err filled (never with key or token material).
 */
int ghauth_new(const struct ghauth_config *cfg, struct ghauth **out, char *err, size_t errlen);
void ghauth_free(struct ghauth *a);

/* True when the credentials are an App's (check runs), false for a token (statuses). */
bool ghauth_is_app(const struct ghauth *a);

/*
 * Writes the value for an Authorization header ("Bearer ...", NUL-terminated,
 * at most outlen bytes) for calls about installation_id (ignored in token
 * mode). App mode uses the cached token, fetching a new one when none is
 * cached, when it is about to expire, or when force is set (after a 401).
 * Thread-safe. Returns 0, GHE_AUTH (refused credentials: 401/403/404/422),
 * GHE_UNAVAILABLE (network, 5xx, rate limited: try later), GHE_IO (the token
 * file cannot be read) or GHE_NOMEM; err says which, without secrets.
 */
int ghauth_header(struct ghauth *a, long long installation_id, bool force, char *out, size_t outlen,
                  char *err, size_t errlen);

/* How many installation tokens were fetched (for tests and the wiring's metrics). */
unsigned long ghauth_fetch_count(struct ghauth *a);

/*
 * Signs an App JWT for now_s (unix seconds) into out (outlen bytes). Returns
 * 0, GHE_INVAL (not App mode), GHE_TOOBIG or GHE_NOMEM.
 */
int ghauth_jwt(struct ghauth *a, long long now_s, char *out, size_t outlen);

/*
 * base64url without padding (RFC 7515 section 2) of in[0..n) into out.
 * Returns the length written, or -1 when out (outlen bytes) is too small.
 */
long ghauth_base64url(const unsigned char *in, size_t n, char *out, size_t outlen);

/*
 * Parses an RFC 3339 time ("2026-12-02T01:02:03Z", fractions and +hh:mm
 * offsets too) into unix milliseconds. Returns 0 or GHE_INVAL.
 */
int ghauth_parse_time(const char *s, long long *unix_ms);

/*
 * When a token issued at now and expiring at expires (unix ms) should be
 * replaced: five minutes before it expires, or after three quarters of its
 * life when it lives less than twenty minutes.
 */
long long ghauth_refresh_at(long long now, long long expires);

#endif
