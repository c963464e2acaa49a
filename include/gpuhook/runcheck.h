/*
 * Checks of a rendered PipelineRun before anything is sent: every field that names a
 * Kubernetes object (metadata.name, spec.pipelineRef.name, service accounts, the claims,
 * ConfigMaps and Secrets of workspaces) must be a valid name, so a value from a request
 * can never point a run at "../../x" or another object's path.
 */
#ifndef GPUHOOK_RUNCHECK_H
#define GPUHOOK_RUNCHECK_H

#include <stddef.h>

#include "gpuhook/error.h"

/* Returns 0, or GHE_INVAL with a message for a 400 naming the field and the value. */
int runcheck_names(const char *json, size_t len, char *err, size_t errlen);

#endif
