/*
 * The Prometheus text exposition format's one rule that code must get right
 * everywhere: how a label value is escaped. Core, below metrics.c and gpu.c
 * alike, so that neither includes the other.
 */
#ifndef GPUHOOK_PROMTEXT_H
#define GPUHOOK_PROMTEXT_H

#include "gpuhook/buf.h"

/*
 * Appends s as a label value's text (between the quotes): backslash, double
 * quote and line feed are written \\, \" and \n, as the text exposition
 * format requires; every other byte as it is. The one escaper of labels, for
 * metrics.c and the GPU gauges. Returns 0 or buf_append's error.
 */
int promtext_label_append(struct buf *b, const char *s);

#endif
