/*
 * Dispatch: the part of a delivery shared by /webhook and /trigger. From a
 * normalized event it selects the variant (or takes a forced one), applies
 * the GPU fit policy, renders the PipelineRun, lands it through the delivery
 * sink and writes the response and metrics.
 */
#ifndef GPUHOOK_DISPATCH_H
#define GPUHOOK_DISPATCH_H

#include <stdbool.h>

#include "gpuhook/http.h"
#include "gpuhook/template.h"

struct dispatch_input {
    struct event *ev;
    int forced_variant; /* -1 runs the selection rules */
    const struct template_override *overrides;
    size_t override_count;
    const char *name_key[2]; /* with the variant, the three naming parts */
    bool preview;            /* ?dry_run=true: return the object, create nothing */
};

void dispatch_run(struct http_request *req, const struct dispatch_input *in);

#endif
