#include "gpuhook/runcheck.h"
#include "gpuhook/naming.h"

#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#define RUNCHECK_HINT                                                                              \
    "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"

static const cJSON *rc_at(const cJSON *o, const char *a, const char *b) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    return b ? cJSON_GetObjectItemCaseSensitive(x, b) : x;
}

/* Checks one name field, when present; max is 63 for names Tekton also bounds, else 253. */
static bool rc_name(const cJSON *v, const char *place, size_t max, char *err, size_t errlen) {
    if (!v)
        return true;
    if (cJSON_IsString(v) && naming_dns1123_subdomain(v->valuestring) &&
        strlen(v->valuestring) <= max)
        return true;
    if (!cJSON_IsString(v)) {
        snprintf(err, errlen,
                 "the rendered %s is not a string: a Kubernetes name is one of " RUNCHECK_HINT,
                 place);
        return false;
    }
    snprintf(err, errlen,
             "the rendered %s \"%.100s%s\" is not a valid Kubernetes name: use " RUNCHECK_HINT
             ", at most %zu characters",
             place, v->valuestring, strlen(v->valuestring) > 100 ? "..." : "", max);
    return false;
}

int runcheck_names(const char *json, size_t len, char *err, size_t errlen) {
    cJSON *run = cJSON_ParseWithLength(json, len);
    const cJSON *spec = rc_at(run, "spec", NULL);
    const cJSON *it;
    char place[96];
    bool ok = run != NULL;
    size_t i = 0;

    if (!run)
        snprintf(err, errlen, "the rendered PipelineRun does not parse as JSON");
    ok = ok && rc_name(rc_at(rc_at(run, "metadata", NULL), "name", NULL), "metadata.name", 63, err,
                       errlen);
    ok =
        ok && rc_name(rc_at(spec, "pipelineRef", "name"), "spec.pipelineRef.name", 63, err, errlen);
    ok = ok && rc_name(rc_at(spec, "taskRunTemplate", "serviceAccountName"),
                       "spec.taskRunTemplate.serviceAccountName", 253, err, errlen);
    cJSON_ArrayForEach(it, rc_at(spec, "workspaces", NULL)) {
        static const char *const refs[][2] = {{"persistentVolumeClaim", "claimName"},
                                              {"configMap", "name"},
                                              {"secret", "secretName"}};
        for (size_t j = 0; ok && j < 3; j++) {
            snprintf(place, sizeof(place), "spec.workspaces[%zu].%s.%s", i, refs[j][0], refs[j][1]);
            ok = rc_name(rc_at(it, refs[j][0], refs[j][1]), place, 253, err, errlen);
        }
        i++;
    }
    i = 0;
    cJSON_ArrayForEach(it, rc_at(spec, "taskRunSpecs", NULL)) {
        snprintf(place, sizeof(place), "spec.taskRunSpecs[%zu].serviceAccountName", i++);
        ok = ok && rc_name(rc_at(it, "serviceAccountName", NULL), place, 253, err, errlen);
    }
    cJSON_Delete(run);
    return ok ? 0 : GHE_INVAL;
}
