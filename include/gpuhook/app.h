/*
 * The running service's shared state: the current config (swapped whole on
 * SIGHUP, reference-counted so requests in flight keep theirs), the delivery
 * sink, and a small LRU of recent deliveries that answers redeliveries
 * without rendering. The LRU is only a fast path: correctness comes from the
 * deterministic names and the API's AlreadyExists.
 */
#ifndef GPUHOOK_APP_H
#define GPUHOOK_APP_H

#include <pthread.h>
#include <stdbool.h>

struct config;
struct delivery;

#define APP_LRU_SIZE 1024

struct app_lru_entry {
    char key[160]; /* hook ID NUL delivery ID, as one string "hook/delivery" */
    char name[64];
    char variant[16];
    char rule[128];
};

struct app {
    pthread_mutex_t lock;
    struct config *cfg;
    struct delivery *delivery;
    pthread_mutex_t lru_lock;
    struct app_lru_entry lru[APP_LRU_SIZE]; /* direct-mapped by a hash of the key */
};

/* Takes ownership of cfg's reference and of delivery. */
int app_init(struct app *app, struct config *cfg, struct delivery *delivery);
void app_cleanup(struct app *app);

/* Returns a reference to the current config; release with config_unref. */
struct config *app_config(struct app *app);
/* Installs a new config (takes its reference); the old one is released. */
void app_config_swap(struct app *app, struct config *cfg);

/*
 * Looks a delivery up by kind (enum naming_kind) and identity: (hook ID, delivery ID) for
 * a webhook, (NULL, key) for a trigger. Copies the entry into out and returns true on a hit.
 */
bool app_lru_get(struct app *app, int kind, const char *hook_id, const char *delivery,
                 struct app_lru_entry *out);
void app_lru_put(struct app *app, int kind, const char *hook_id, const char *delivery,
                 const char *name, const char *variant, const char *rule);

#endif
