/*
 * The memory budget for request bodies whose signature is not verified yet.
 * Anyone on the internet can send those, so together they may hold at most
 * unverified_body_budget_bytes, whatever Content-Length they announce: a body
 * draws from the budget as its bytes arrive (its buffer's capacity, never the
 * announced size) and gives the bytes back once it is verified or freed.
 *
 * One eighth of the budget is kept for small bodies (at most
 * BODYBUDGET_SMALL_BYTES each), so that forged 25 MB bodies filling the rest
 * cannot lock a real delivery of ordinary size out.
 */
#ifndef GPUHOOK_BODYBUDGET_H
#define GPUHOOK_BODYBUDGET_H

#include <stdbool.h>
#include <stddef.h>

#define BODYBUDGET_DEFAULT_BYTES (64L * 1024 * 1024)
#define BODYBUDGET_SMALL_BYTES (256L * 1024)

/* Sets the budget in bytes (at start and on reload; what is held stays held). */
void bodybudget_set_limit(long bytes);
long bodybudget_limit(void);

/*
 * Takes n more bytes for a body that will then hold own_total bytes in all.
 * Returns false, taking nothing, when the budget cannot give them.
 */
bool bodybudget_take(size_t n, size_t own_total);
/* Gives back n bytes taken earlier. */
void bodybudget_give(size_t n);
/* Bytes held now. */
long bodybudget_in_use(void);

#endif
