/*
 * Retry-After (RFC 9110 section 10.2.3): delta-seconds or an HTTP-date
 * (IMF-fixdate, and the obsolete RFC 850 and asctime forms a recipient must
 * accept). The result is clamped to [0, RETRY_AFTER_MAX_SECONDS], so no value,
 * however long, overflows what a caller multiplies it by.
 */
#ifndef GPUHOOK_RETRYAFTER_H
#define GPUHOOK_RETRYAFTER_H

#include <stddef.h>
#include <time.h>

#define RETRY_AFTER_MAX_SECONDS 86400L /* a day; callers clamp further */

/*
 * Parses the header's value (len bytes, not NUL-terminated; surrounding blanks and a
 * trailing CRLF allowed) against now. Returns the seconds to wait (a date in the
 * past gives 0), or -1 when the value is neither form.
 */
long retry_after_parse(const char *value, size_t len, time_t now);

#endif
