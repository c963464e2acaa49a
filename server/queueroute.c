/* GET /queue: the admission queue as queue_view_json renders it, from this replica's store. */
#include "gpuhook/admission.h"
#include "routes.h"

#include <stdlib.h>
#include <string.h>

static enum http_step queueroute_finish(struct http_request *req, void *state) {
    struct admission *a = admission_get();
    char *json = NULL;
    (void)state;
    if (!a) {
        http_request_error(req, 404,
                           "no admission queue: the config has no concurrency block and "
                           "selection.gpu_fit.on_insufficient is not queue (or "
                           "kubernetes.mode is not url or in-cluster)");
        return HTTP_RESPONDED;
    }
    if (admission_view_json(a, &json) != 0 || !json) {
        http_request_error(req, 500, "out of memory");
        return HTTP_RESPONDED;
    }
    http_respond(req, 200, NULL, json, strlen(json));
    free(json);
    return HTTP_RESPONDED;
}

const struct http_route queue_route = {
    .path = "/queue",
    .name = "queue",
    .method = "GET",
    .allow = "GET, HEAD",
    .finish = queueroute_finish,
};
