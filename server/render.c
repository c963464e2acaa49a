#include "gpuhook/render.h"
#include "gpuhook/buf.h"
#include "gpuhook/config.h"
#include "gpuhook/event.h"
#include "gpuhook/fileio.h"
#include "gpuhook/naming.h"
#include "gpuhook/pipeline.h"
#include "gpuhook/select.h"
#include "gpuhook/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#define RENDER_MAX_HEADERS 32

static void render_print_errors(const struct errlist *el) {
    for (size_t i = 0; i < el->count; i++)
        fprintf(stderr, "%s\n", el->items[i]);
}

int render_main(int argc, char **argv, const char *default_config) {
    const char *config_path = default_config, *event_name = NULL, *payload = NULL;
    const char *delivery = "00000000-0000-0000-0000-000000000000";
    struct event_header headers[RENDER_MAX_HEADERS];
    char header_buf[RENDER_MAX_HEADERS][512];
    size_t nh = 0;
    struct errlist el;
    struct config *cfg = NULL;
    struct event ev;
    char err[512] = "", reason[512];
    int rc = 2;
    char *body = NULL;
    size_t len = 0;

    errlist_init(&el);
    event_init(&ev);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "render: %s needs a value\n", a);
            goto out;
        }
        i++;
        if (strcmp(a, "--config") == 0) {
            config_path = v;
        } else if (strcmp(a, "--event") == 0) {
            event_name = v;
        } else if (strcmp(a, "--payload") == 0) {
            payload = v;
        } else if (strcmp(a, "--delivery") == 0) {
            delivery = v;
        } else if (strcmp(a, "--header") == 0) {
            const char *colon = strchr(v, ':');
            if (!colon || nh == RENDER_MAX_HEADERS || strlen(v) >= 512) {
                fprintf(stderr, "render: --header %s: expected 'Name: value'\n", v);
                goto out;
            }
            snprintf(header_buf[nh], sizeof(header_buf[nh]), "%s", v);
            header_buf[nh][colon - v] = '\0';
            const char *val = header_buf[nh] + (colon - v) + 1;
            while (*val == ' ')
                val++;
            headers[nh].name = header_buf[nh];
            headers[nh].value = val;
            nh++;
        } else {
            fprintf(stderr, "render: unknown option %s\n", a);
            goto out;
        }
    }
    if (!event_name || !payload) {
        fprintf(stderr, "render: --event and --payload are required\n");
        goto out;
    }
    if (config_load_offline(config_path, &cfg, &el) != 0) {
        render_print_errors(&el);
        goto out;
    }
    if (fileio_read(payload, PIPELINE_RUN_MAX, 0, &body, &len, err, sizeof(err)) != 0) {
        fprintf(stderr, "render: %s: cannot read the payload (%s)\n", payload, err);
        goto out;
    }
    const char *hook = NULL;
    for (size_t i = 0; i < nh; i++)
        if (strcasecmp(headers[i].name, "X-GitHub-Hook-ID") == 0)
            hook = headers[i].value;
    if (pipeline_should_ignore(cfg, event_name, NULL, reason, sizeof(reason))) {
        fprintf(stderr, "ignored: %s\n", reason);
        rc = 3;
        goto out;
    }
    ev.headers = headers;
    ev.header_count = nh;
    const struct jsonprune_path *keep = NULL;
    size_t nkeep = template_body_paths(cfg->tmpl, &keep);
    if (event_parse_delivery_paths(&ev, event_name, delivery, hook, "application/json", body, len,
                                   keep, nkeep, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", payload, err);
        goto out;
    }
    if (pipeline_should_ignore(cfg, event_name, &ev, reason, sizeof(reason))) {
        fprintf(stderr, "ignored: %s\n", reason);
        rc = 3;
        goto out;
    }
    /* The server's own decide-and-render step, GPU fit check included. */
    struct pipeline_input pin = {
        .ev = &ev,
        .forced_variant = -1,
        .name_kind = NAMING_WEBHOOK,
        .name_key = {hook ? hook : "", delivery},
    };
    struct pipeline_outcome o;
    struct buf text;
    memset(&o, 0, sizeof(o));
    buf_init(&text, PIPELINE_RUN_MAX);
    int st = pipeline_prepare(cfg, cfg->kube_namespace ? cfg->kube_namespace : "tekton-pipelines",
                              &pin, &text, &o);
    if (st != PIPELINE_PREVIEW) {
        if (st == PIPELINE_IGNORED)
            fprintf(stderr, "ignored: rule %s: %s\n", o.rule, o.reason);
        else if (st == PIPELINE_GPU_REJECTED)
            fprintf(stderr, "insufficient GPU memory for %s: %s\n", o.variant, o.reason);
        else
            fprintf(stderr, "%s: %s\n", payload, o.message);
        buf_cleanup(&text);
        rc = st == PIPELINE_IGNORED ? 3 : 2;
        goto out;
    }
    /* The text the server would send, so numbers keep the digits the payload wrote. */
    printf("%.*s\n", (int)text.len, text.data ? text.data : "");
    buf_cleanup(&text);
    fprintf(stderr, "variant: %s\nrule: %s\nreason: %s\n", o.variant, o.rule, o.reason);
    rc = 0;
out:
    free(body);
    event_cleanup(&ev);
    config_unref(cfg);
    errlist_cleanup(&el);
    return rc;
}
