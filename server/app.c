#include "gpuhook/app.h"
#include "gpuhook/buf.h"
#include "gpuhook/config.h"
#include "gpuhook/delivery.h"
#include "gpuhook/naming.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

int app_init(struct app *app, struct config *cfg, struct delivery *delivery) {
    memset(app, 0, sizeof(*app));
    pthread_mutex_init(&app->lock, NULL);
    pthread_mutex_init(&app->lru_lock, NULL);
    app->cfg = cfg;
    app->delivery = delivery;
    return 0;
}

void app_cleanup(struct app *app) {
    config_unref(app->cfg);
    delivery_free(app->delivery);
    pthread_mutex_destroy(&app->lock);
    pthread_mutex_destroy(&app->lru_lock);
    memset(app, 0, sizeof(*app));
}

struct config *app_config(struct app *app) {
    pthread_mutex_lock(&app->lock);
    struct config *cfg = config_ref(app->cfg);
    pthread_mutex_unlock(&app->lock);
    return cfg;
}

void app_config_swap(struct app *app, struct config *cfg) {
    pthread_mutex_lock(&app->lock);
    struct config *old = app->cfg;
    app->cfg = cfg;
    pthread_mutex_unlock(&app->lock);
    config_unref(old);
}

/* "w/hook/delivery" or "t/key": webhook and trigger identities never share an entry. */
static void app_lru_key(char *key, size_t n, int kind, const char *hook_id, const char *delivery) {
    if (kind == NAMING_TRIGGER)
        snprintf(key, n, "t/%s", delivery ? delivery : "");
    else
        snprintf(key, n, "w/%s/%s", hook_id ? hook_id : "", delivery ? delivery : "");
}

/* FNV-1a: the slot of a key in the direct-mapped cache. */
static size_t app_lru_slot(const char *key) {
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h % APP_LRU_SIZE);
}

bool app_lru_get(struct app *app, int kind, const char *hook_id, const char *delivery,
                 struct app_lru_entry *out) {
    char key[160];
    bool hit = false;

    app_lru_key(key, sizeof(key), kind, hook_id, delivery);
    size_t i = app_lru_slot(key);
    pthread_mutex_lock(&app->lru_lock);
    if (app->lru[i].key[0] && strcmp(app->lru[i].key, key) == 0) {
        *out = app->lru[i];
        hit = true;
    }
    pthread_mutex_unlock(&app->lru_lock);
    return hit;
}

void app_lru_put(struct app *app, int kind, const char *hook_id, const char *delivery,
                 const char *name, const char *variant, const char *rule) {
    struct app_lru_entry e;

    memset(&e, 0, sizeof(e));
    app_lru_key(e.key, sizeof(e.key), kind, hook_id, delivery);
    buf_copy_str(e.name, sizeof(e.name), name);
    buf_copy_str(e.variant, sizeof(e.variant), variant);
    buf_copy_str(e.rule, sizeof(e.rule), rule);
    /* Direct-mapped: a newer key takes its slot from an older one, which suits a fast path. */
    size_t i = app_lru_slot(e.key);
    pthread_mutex_lock(&app->lru_lock);
    app->lru[i] = e;
    pthread_mutex_unlock(&app->lru_lock);
}
