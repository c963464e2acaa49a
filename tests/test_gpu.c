/*
 * The GPU module: status, reasons and fit from snapshots injected through a
 * fake source (the same interface the real CUDA and NVML source implements),
 * the XID table, the JSON shapes, the fit policies with their sentences, the
 * metrics, and the real probe on this machine, which has no NVIDIA driver.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/gpu.h"
#include "gpu_backend.h"

#define MIB (1024ULL * 1024ULL)
#define H200_TOTAL_MIB 143771ULL

/* ---------- The fake source ---------- */

struct fake {
    pthread_mutex_t lock;
    struct gpu_cuda_probe cuda;
    struct gpu_nvml_info nvml;
    struct gpu_nvml_device devices[GPU_MAX_DEVICES];
    bool events;
    bool xid_pending;
    int xid_index;
    unsigned long long xid;
    int probes, opens, reads, closes;
};

static struct fake fake = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void fake_cuda_probe(void *ctx, struct gpu_cuda_probe *p) {
    struct fake *f = ctx;
    pthread_mutex_lock(&f->lock);
    *p = f->cuda;
    f->probes++;
    pthread_mutex_unlock(&f->lock);
}

static int fake_nvml_open(void *ctx, struct gpu_snapshot *s) {
    struct fake *f = ctx;
    pthread_mutex_lock(&f->lock);
    s->nvml = f->nvml;
    s->nvml.xid_events = f->events;
    f->opens++;
    int rc = f->nvml.loaded ? 0 : GHE_UNAVAILABLE;
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static void fake_nvml_read(void *ctx, struct gpu_snapshot *s) {
    struct fake *f = ctx;
    pthread_mutex_lock(&f->lock);
    memcpy(s->devices, f->devices, sizeof(s->devices));
    f->reads++;
    pthread_mutex_unlock(&f->lock);
}

static int fake_xid_wait(void *ctx, int timeout_ms, int *index, unsigned long long *xid) {
    struct fake *f = ctx;
    pthread_mutex_lock(&f->lock);
    if (!f->events) {
        pthread_mutex_unlock(&f->lock);
        return GHE_UNSUPPORTED;
    }
    if (f->xid_pending) {
        f->xid_pending = false;
        *index = f->xid_index;
        *xid = f->xid;
        pthread_mutex_unlock(&f->lock);
        return 1;
    }
    pthread_mutex_unlock(&f->lock);
    struct timespec ts = {0, (timeout_ms < 5 ? timeout_ms : 5) * 1000000L};
    nanosleep(&ts, NULL);
    return 0;
}

static void fake_nvml_close(void *ctx) {
    struct fake *f = ctx;
    pthread_mutex_lock(&f->lock);
    f->closes++;
    pthread_mutex_unlock(&f->lock);
}

static const struct gpu_source fake_source = {
    .ctx = &fake,
    .cuda_probe = fake_cuda_probe,
    .nvml_open = fake_nvml_open,
    .nvml_read = fake_nvml_read,
    .xid_wait = fake_xid_wait,
    .nvml_close = fake_nvml_close,
};

/* A healthy, idle H200 as the CUDA runtime and NVML describe one, n times over. */
static void fake_h200(int n) {
    pthread_mutex_lock(&fake.lock);
    memset(&fake.cuda, 0, sizeof(fake.cuda));
    memset(&fake.nvml, 0, sizeof(fake.nvml));
    memset(fake.devices, 0, sizeof(fake.devices));
    fake.cuda.built = true;
    fake.cuda.driver_version = 13000;
    fake.cuda.runtime_version = 13000;
    fake.cuda.device_count = n;
    fake.nvml.loaded = true;
    snprintf(fake.nvml.driver_version, sizeof(fake.nvml.driver_version), "580.159.04");
    for (int i = 0; i < n; i++) {
        struct gpu_cuda_device *c = &fake.cuda.devices[i];
        struct gpu_nvml_device *d = &fake.devices[i];
        snprintf(c->name, sizeof(c->name), "NVIDIA H200");
        snprintf(c->uuid, sizeof(c->uuid), "GPU-6b1a4c2e-0d3f-4a5b-9c8d-7e6f5a4b3c2%d", i);
        snprintf(c->pci_bus_id, sizeof(c->pci_bus_id), "00000000:%02X:00.0", 0x19 + i);
        c->cc_major = 9;
        c->cc_minor = 0;
        c->ecc_enabled = true;
        c->total_bytes = H200_TOTAL_MIB * MIB;
        d->matched = true;
        d->has_memory = true;
        d->mem_total = H200_TOTAL_MIB * MIB;
        d->mem_reserved = 512 * MIB;
        d->mem_used = 771 * MIB;
        d->mem_free = (H200_TOTAL_MIB - 771) * MIB;
        d->temperature_c = 31;
        d->power_mw = 75123;
        d->utilization_pct = 0;
        d->has_clocks_event_reasons = true;
        d->clocks_event_reasons = GPU_CLOCKS_GPU_IDLE;
        d->ecc_mode = 1;
        d->mig_mode = 0;
        d->ecc_uncorrected_volatile = 0;
        d->has_remapped_rows = true;
    }
    fake.events = false;
    fake.xid_pending = false;
    fake.probes = fake.opens = fake.reads = fake.closes = 0;
    pthread_mutex_unlock(&fake.lock);
}

/* A device NVML could not read, as gpu_nvml_read() leaves it. */
static void fake_unread(int i) {
    struct gpu_nvml_device *d = &fake.devices[i];
    memset(d, 0, sizeof(*d));
    d->temperature_c = -1;
    d->power_mw = -1;
    d->utilization_pct = -1;
    d->ecc_mode = -1;
    d->mig_mode = -1;
    d->ecc_uncorrected_volatile = -1;
}

/* The CUDA runtime's answer on a machine without a driver. */
static void fake_no_driver(void) {
    fake_h200(0);
    pthread_mutex_lock(&fake.lock);
    fake.cuda.driver_version = 0;
    fake.cuda.error = GPU_CUDA_ERROR_NO_DRIVER;
    snprintf(fake.cuda.error_name, sizeof(fake.cuda.error_name), "cudaErrorInsufficientDriver");
    fake.nvml.loaded = false;
    fake.nvml.error = -1;
    snprintf(fake.nvml.error_name, sizeof(fake.nvml.error_name), "libnvidia-ml.so.1: not found");
    pthread_mutex_unlock(&fake.lock);
}

static void start_fake(int refresh_seconds) {
    struct gpu_options opts = {.refresh_seconds = refresh_seconds, .required = false};
    assert_int_equal(gpu_start_source(&opts, &fake_source), 0);
    assert_int_equal(gpu_refresh_now(5000), 0);
}

/* GET /gpu as a handler would serve it, parsed. */
static cJSON *get_gpu(bool verbose, int *http_status) {
    char *body = gpu_status_json(verbose, http_status);
    assert_non_null(body);
    cJSON *doc = cJSON_Parse(body);
    free(body);
    assert_non_null(doc);
    return doc;
}

static void reasons_of(const cJSON *doc, char *out, size_t len) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(doc, "reasons");
    const cJSON *r;
    size_t used = 0;
    out[0] = '\0';
    assert_true(cJSON_IsArray(arr));
    cJSON_ArrayForEach(r, arr) {
        assert_true(cJSON_IsString(r));
        used += (size_t)snprintf(out + used, len - used, "%s%s", used ? "," : "", r->valuestring);
    }
}

static const char *str_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsString(v));
    return v->valuestring;
}

static double num_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsNumber(v));
    return v->valuedouble;
}

static bool bool_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsBool(v));
    return cJSON_IsTrue(v);
}

static const cJSON *obj_of(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_true(cJSON_IsObject(v));
    return v;
}

static void assert_null_field(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    assert_non_null(v);
    assert_true(cJSON_IsNull(v));
}

/* Asserts that o has exactly these keys, in this order. */
static void assert_keys(const cJSON *o, const char *const *keys) {
    const cJSON *child = o->child;
    for (; *keys; keys++, child = child->next) {
        assert_non_null(child);
        assert_string_equal(child->string, *keys);
    }
    assert_null(child);
}

static int setup(void **state) {
    (void)state;
    struct gpu_fit_policy p;
    gpu_fit_policy_init(&p);
    gpu_set_fit_policy(&p);
    unsetenv("CUDA_VISIBLE_DEVICES");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    gpu_stop();
    return 0;
}

/* ---------- XID classification ---------- */

static void test_xid_fatal_unless_application_error(void **state) {
    (void)state;
    static const struct {
        unsigned long long xid;
        bool fatal;
    } cases[] = {
        {13, false}, {31, false}, {43, false}, {45, false}, {68, false}, {109, false},
        {8, true},   {32, true},  {38, true},  {48, true},  {61, true},  {62, true},
        {63, true},  {64, true},  {69, true},  {74, true},  {79, true},  {92, true},
        {94, true},  {95, true},  {119, true}, {120, true}, {0, true},   {999, true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (gpu_xid_is_fatal(cases[i].xid) != cases[i].fatal)
            fail_msg("XID %llu: expected fatal=%d", cases[i].xid, cases[i].fatal);
    }
}

/* ---------- Status and reasons from injected snapshots ---------- */

static void mutate_none(void) {}
static void mutate_not_built(void) {
    fake_h200(0);
    fake.cuda.built = false;
    fake.cuda.runtime_version = 0;
    fake.cuda.driver_version = 0;
}
static void mutate_no_driver(void) { fake_no_driver(); }
static void mutate_no_device(void) {
    fake_h200(0);
    fake.cuda.error = GPU_CUDA_ERROR_NO_DEVICE;
    snprintf(fake.cuda.error_name, sizeof(fake.cuda.error_name), "cudaErrorNoDevice");
}
static void mutate_zero_devices(void) { fake_h200(0); }
static void mutate_cuda_error(void) {
    fake_h200(0);
    fake.cuda.error = 999;
}
static void mutate_lost(void) { fake.devices[0].lost = true; }
static void mutate_remap_failed(void) {
    fake.devices[0].remap_pending = true;
    fake.devices[0].remap_failure = true;
}
static void mutate_remap_pending(void) { fake.devices[0].remap_pending = true; }
static void mutate_hw_slowdown(void) {
    fake.devices[0].clocks_event_reasons = GPU_CLOCKS_HW_SLOWDOWN;
}
static void mutate_sw_thermal(void) {
    fake.devices[0].clocks_event_reasons = GPU_CLOCKS_SW_THERMAL_SLOWDOWN;
}
static void mutate_hw_thermal(void) {
    fake.devices[0].clocks_event_reasons = GPU_CLOCKS_HW_THERMAL_SLOWDOWN;
}
static void mutate_power_brake(void) {
    fake.devices[0].clocks_event_reasons =
        GPU_CLOCKS_HW_POWER_BRAKE_SLOWDOWN | GPU_CLOCKS_HW_SLOWDOWN;
}
static void mutate_power_cap(void) {
    fake.devices[0].clocks_event_reasons = GPU_CLOCKS_SW_POWER_CAP;
}
static void mutate_low_memory(void) { fake.devices[0].mem_free = 5000 * MIB; }
static void mutate_no_nvml(void) {
    fake.nvml.loaded = false;
    fake.nvml.error = 9;
    fake_unread(0);
}
static void mutate_unmatched(void) { fake.devices[0].matched = false; }
static void mutate_two_one_lost(void) {
    fake_h200(2);
    fake.devices[1].lost = true;
}
static void mutate_two_both_lost(void) {
    fake_h200(2);
    fake.devices[0].lost = true;
    fake.devices[1].lost = true;
}

static void test_status_and_reasons_follow_the_snapshot(void **state) {
    (void)state;
    static const struct {
        const char *name;
        void (*mutate)(void);
        const char *status;
        const char *reasons;
        int http;
    } cases[] = {
        {"healthy H200", mutate_none, "ok", "", 200},
        {"built without CUDA", mutate_not_built, "unavailable", "built_without_cuda", 503},
        {"no driver (35)", mutate_no_driver, "unavailable", "no_driver", 503},
        {"no visible device (100)", mutate_no_device, "unavailable", "no_device", 503},
        {"zero devices", mutate_zero_devices, "unavailable", "no_device", 503},
        {"other CUDA error", mutate_cuda_error, "unavailable", "cuda_error", 503},
        {"GPU lost (NVML 15)", mutate_lost, "unavailable", "gpu_lost", 503},
        {"row remap failed", mutate_remap_failed, "unavailable", "row_remap_failed", 503},
        {"row remap pending", mutate_remap_pending, "degraded", "row_remap_pending", 200},
        {"hw slowdown", mutate_hw_slowdown, "degraded", "clocks_hw_slowdown", 200},
        {"sw thermal", mutate_sw_thermal, "degraded", "clocks_thermal_slowdown", 200},
        {"hw thermal", mutate_hw_thermal, "degraded", "clocks_thermal_slowdown", 200},
        {"power brake", mutate_power_brake, "degraded",
         "clocks_hw_slowdown,clocks_power_brake_slowdown", 200},
        {"sw power cap is normal", mutate_power_cap, "ok", "", 200},
        {"free below original", mutate_low_memory, "degraded", "low_memory", 200},
        {"NVML missing", mutate_no_nvml, "degraded", "nvml_unavailable", 200},
        {"NVML has no such UUID", mutate_unmatched, "degraded", "nvml_unmatched", 200},
        {"one of two lost", mutate_two_one_lost, "degraded", "gpu_lost", 200},
        {"both of two lost", mutate_two_both_lost, "unavailable", "gpu_lost", 503},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char reasons[256];
        int http = 0;
        /* The refresh thread is stopped here, so the fake needs no lock. */
        fake_h200(1);
        cases[i].mutate();
        start_fake(5);
        cJSON *doc = get_gpu(false, &http);
        reasons_of(doc, reasons, sizeof(reasons));
        if (strcmp(str_of(doc, "status"), cases[i].status) != 0 ||
            strcmp(reasons, cases[i].reasons) != 0 || http != cases[i].http)
            fail_msg("%s: got %s [%s] %d, expected %s [%s] %d", cases[i].name,
                     str_of(doc, "status"), reasons, http, cases[i].status, cases[i].reasons,
                     cases[i].http);
        assert_int_equal(gpu_ready(), http == 200);
        cJSON_Delete(doc);
        gpu_stop();
    }
}

static void test_snapshot_older_than_three_intervals_is_stale(void **state) {
    (void)state;
    struct gpu_snapshot *s = calloc(1, sizeof(*s));
    struct gpu_fit_policy p;
    struct gpu_view v;
    assert_non_null(s);
    gpu_fit_policy_init(&p);
    fake_h200(1);
    s->taken = true;
    s->cuda = fake.cuda;
    s->nvml = fake.nvml;
    memcpy(s->devices, fake.devices, sizeof(s->devices));
    s->checked_mono_ms = 1000;

    gpu_snapshot_evaluate(s, 1000 + 15000, 5, &p, &v);
    assert_int_equal(v.status, GPU_STATUS_OK);
    assert_int_equal(v.age_ms, 15000);
    assert_int_equal(v.free_mib, H200_TOTAL_MIB - 771);

    gpu_snapshot_evaluate(s, 1000 + 15001, 5, &p, &v);
    assert_int_equal(v.status, GPU_STATUS_UNAVAILABLE);
    assert_int_equal(v.reasons, GPU_REASON_BIT(GPU_REASON_STALE));
    assert_int_equal(v.free_mib, -1);

    gpu_snapshot_evaluate(s, 1000 + 3001, 1, &p, &v);
    assert_int_equal(v.status, GPU_STATUS_UNAVAILABLE);

    char *body = gpu_snapshot_json(s, &v, &p, 1, false);
    assert_non_null(body);
    cJSON *doc = cJSON_Parse(body);
    char reasons[128];
    reasons_of(doc, reasons, sizeof(reasons));
    assert_string_equal(reasons, "stale");
    assert_int_equal((int)num_of(doc, "age_ms"), 3001);
    assert_false(bool_of(obj_of(obj_of(doc, "fit"), "lite"), "fits"));
    cJSON_Delete(doc);
    free(body);

    s->taken = false;
    gpu_snapshot_evaluate(s, 0, 5, &p, &v);
    assert_int_equal(v.status, GPU_STATUS_UNAVAILABLE);
    assert_int_equal(v.reasons, GPU_REASON_BIT(GPU_REASON_STARTING));
    assert_int_equal(v.age_ms, -1);
    free(s);
}

static void test_fatal_xid_event_makes_gpu_unavailable(void **state) {
    (void)state;
    static const struct {
        unsigned long long xid;
        const char *status;
        bool fatal;
    } cases[] = {{79, "unavailable", true}, {13, "ok", false}, {31, "ok", false}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int http = 0;
        fake_h200(1);
        fake.events = true;
        start_fake(5);
        pthread_mutex_lock(&fake.lock);
        fake.xid_pending = true;
        fake.xid_index = 0;
        fake.xid = cases[i].xid;
        pthread_mutex_unlock(&fake.lock);

        cJSON *doc = NULL;
        for (int tries = 0; tries < 300; tries++) {
            cJSON_Delete(doc);
            doc = get_gpu(true, &http);
            const cJSON *dev = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "devices"), 0);
            if (cJSON_IsObject(cJSON_GetObjectItem(dev, "last_xid")))
                break;
            struct timespec ts = {0, 10 * 1000000L};
            nanosleep(&ts, NULL);
        }
        const cJSON *dev = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "devices"), 0);
        const cJSON *xid = obj_of(dev, "last_xid");
        assert_int_equal((int)num_of(xid, "xid"), (int)cases[i].xid);
        assert_int_equal(bool_of(xid, "fatal"), cases[i].fatal);
        assert_int_equal(strlen(str_of(xid, "at")), 24);
        assert_true(bool_of(obj_of(doc, "nvml"), "xid_events"));
        assert_string_equal(str_of(doc, "status"), cases[i].status);
        assert_int_equal(http, cases[i].fatal ? 503 : 200);

        /* The XID is kept across later refreshes. */
        assert_int_equal(gpu_refresh_now(5000), 0);
        cJSON_Delete(doc);
        doc = get_gpu(true, &http);
        dev = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "devices"), 0);
        assert_int_equal((int)num_of(obj_of(dev, "last_xid"), "xid"), (int)cases[i].xid);
        assert_string_equal(str_of(doc, "status"), cases[i].status);
        cJSON_Delete(doc);
        gpu_stop();
    }
}

/* ---------- The refresh thread ---------- */

static void test_cuda_is_probed_once_and_nvml_on_every_refresh(void **state) {
    (void)state;
    fake_h200(1);
    start_fake(5);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gpu_refresh_now(5000), 0);
    pthread_mutex_lock(&fake.lock);
    int probes = fake.probes, opens = fake.opens, reads = fake.reads;
    pthread_mutex_unlock(&fake.lock);
    assert_int_equal(probes, 1);
    assert_int_equal(opens, 1);
    assert_true(reads >= 4);

    /* A new free figure shows on the next refresh. */
    pthread_mutex_lock(&fake.lock);
    fake.devices[0].mem_free = 3000 * MIB;
    pthread_mutex_unlock(&fake.lock);
    assert_int_equal(gpu_refresh_now(5000), 0);
    int http = 0;
    cJSON *doc = get_gpu(true, &http);
    const cJSON *dev = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "devices"), 0);
    assert_int_equal((int)num_of(obj_of(dev, "memory"), "free_mib"), 3000);
    assert_string_equal(str_of(doc, "status"), "degraded");
    assert_string_equal(str_of(obj_of(doc, "fit"), "recommended"), "lite");
    cJSON_Delete(doc);

    struct gpu_options opts = {.refresh_seconds = 17, .required = true};
    gpu_set_options(&opts);
    doc = get_gpu(true, &http);
    assert_int_equal((int)num_of(obj_of(doc, "probe"), "refresh_seconds"), 17);
    cJSON_Delete(doc);

    assert_int_equal(gpu_start_source(&opts, &fake_source), GHE_EXISTS);
    gpu_stop();
    pthread_mutex_lock(&fake.lock);
    assert_int_equal(fake.closes, 1);
    pthread_mutex_unlock(&fake.lock);
}

static void test_before_start_status_is_starting(void **state) {
    (void)state;
    int http = 0;
    gpu_stop();
    assert_int_equal(gpu_refresh_now(10), GHE_UNAVAILABLE);
    cJSON *doc = get_gpu(false, &http);
    char reasons[64];
    reasons_of(doc, reasons, sizeof(reasons));
    assert_int_equal(http, 503);
    assert_string_equal(str_of(doc, "status"), "unavailable");
    assert_string_equal(reasons, "starting");
    assert_null_field(doc, "checked_at");
    assert_null_field(doc, "age_ms");
    assert_int_equal((int)num_of(doc, "device_count"), 0);
    assert_false(gpu_ready());
    cJSON_Delete(doc);
}

/* ---------- JSON shapes ---------- */

static void test_default_body_has_exactly_the_documented_fields(void **state) {
    (void)state;
    static const char *const top[] = {"status",       "reasons", "checked_at", "age_ms",
                                      "device_count", "fit",     NULL};
    static const char *const fit[] = {"lite", "original", "recommended", NULL};
    static const char *const need[] = {"need_mib", "fits", NULL};
    int http = 0;
    fake_h200(1);
    start_fake(5);
    cJSON *doc = get_gpu(false, &http);
    assert_int_equal(http, 200);
    assert_keys(doc, top);
    assert_string_equal(str_of(doc, "status"), "ok");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "reasons")), 0);

    const char *when = str_of(doc, "checked_at");
    assert_int_equal(strlen(when), 24);
    assert_true(when[4] == '-' && when[7] == '-' && when[10] == 'T' && when[13] == ':' &&
                when[16] == ':' && when[19] == '.' && when[23] == 'Z');
    double age = num_of(doc, "age_ms");
    assert_true(age >= 0 && age < 5000);
    assert_int_equal((int)num_of(doc, "device_count"), 1);

    const cJSON *f = obj_of(doc, "fit");
    assert_keys(f, fit);
    assert_keys(obj_of(f, "lite"), need);
    assert_keys(obj_of(f, "original"), need);
    assert_int_equal((int)num_of(obj_of(f, "lite"), "need_mib"), 2048);
    assert_int_equal((int)num_of(obj_of(f, "original"), "need_mib"), 8192);
    assert_true(bool_of(obj_of(f, "lite"), "fits"));
    assert_true(bool_of(obj_of(f, "original"), "fits"));
    assert_string_equal(str_of(f, "recommended"), "original");
    cJSON_Delete(doc);

    /* The configured needs are what "fit" reports. */
    struct gpu_fit_policy p = {.lite_min_free_mib = 4096,
                               .original_min_free_mib = 200000,
                               .on_insufficient = GPU_FIT_DOWNGRADE};
    gpu_set_fit_policy(&p);
    doc = get_gpu(false, &http);
    f = obj_of(doc, "fit");
    assert_int_equal((int)num_of(obj_of(f, "lite"), "need_mib"), 4096);
    assert_false(bool_of(obj_of(f, "original"), "fits"));
    assert_string_equal(str_of(f, "recommended"), "lite");
    assert_string_equal(str_of(doc, "status"), "degraded");
    cJSON_Delete(doc);
}

static void test_verbose_body_adds_cuda_nvml_and_devices(void **state) {
    (void)state;
    static const char *const top[] = {"status",       "reasons", "checked_at", "age_ms",
                                      "device_count", "fit",     "cuda",       "nvml",
                                      "probe",        "devices", NULL};
    static const char *const cuda[] = {"driver_version", "runtime_version", "error",
                                       "visible_devices", NULL};
    static const char *const nvml[] = {"loaded", "driver_version", "error", "xid_events", NULL};
    static const char *const device[] = {"index",
                                         "name",
                                         "uuid",
                                         "pci_bus_id",
                                         "compute_capability",
                                         "ecc_enabled",
                                         "mig_mode",
                                         "memory",
                                         "temperature_c",
                                         "power_w",
                                         "utilization_pct",
                                         "clocks_event_reasons",
                                         "ecc_uncorrected_volatile",
                                         "remapped_rows",
                                         "last_xid",
                                         "compute_processes",
                                         NULL};
    static const char *const memory[] = {"total_mib", "used_mib", "free_mib", "reserved_mib", NULL};
    static const char *const rows[] = {"correctable", "uncorrectable", "pending", "failure", NULL};
    int http = 0;
    setenv("CUDA_VISIBLE_DEVICES", "0", 1);
    fake_h200(1);
    start_fake(5);
    cJSON *doc = get_gpu(true, &http);
    assert_int_equal(http, 200);
    assert_keys(doc, top);

    const cJSON *c = obj_of(doc, "cuda");
    assert_keys(c, cuda);
    assert_string_equal(str_of(c, "driver_version"), "13.0");
    assert_string_equal(str_of(c, "runtime_version"), "13.0");
    assert_null_field(c, "error");
    assert_string_equal(str_of(c, "visible_devices"), "0");

    const cJSON *n = obj_of(doc, "nvml");
    assert_keys(n, nvml);
    assert_true(bool_of(n, "loaded"));
    assert_string_equal(str_of(n, "driver_version"), "580.159.04");
    assert_null_field(n, "error");
    assert_false(bool_of(n, "xid_events"));

    const cJSON *probe = obj_of(doc, "probe");
    assert_int_equal((int)num_of(probe, "refresh_seconds"), 5);
    assert_true(num_of(probe, "first_refresh_ms") >= 0);
    assert_true(num_of(probe, "last_refresh_ms") >= 0);

    const cJSON *devs = cJSON_GetObjectItem(doc, "devices");
    assert_int_equal(cJSON_GetArraySize(devs), 1);
    const cJSON *d = cJSON_GetArrayItem(devs, 0);
    assert_keys(d, device);
    assert_int_equal((int)num_of(d, "index"), 0);
    assert_string_equal(str_of(d, "name"), "NVIDIA H200");
    assert_string_equal(str_of(d, "uuid"), "GPU-6b1a4c2e-0d3f-4a5b-9c8d-7e6f5a4b3c20");
    assert_string_equal(str_of(d, "pci_bus_id"), "00000000:19:00.0");
    assert_string_equal(str_of(d, "compute_capability"), "9.0");
    assert_true(bool_of(d, "ecc_enabled"));
    assert_string_equal(str_of(d, "mig_mode"), "disabled");
    const cJSON *m = obj_of(d, "memory");
    assert_keys(m, memory);
    assert_int_equal((int)num_of(m, "total_mib"), (int)H200_TOTAL_MIB);
    assert_int_equal((int)num_of(m, "used_mib"), 771);
    assert_int_equal((int)num_of(m, "free_mib"), (int)(H200_TOTAL_MIB - 771));
    assert_int_equal((int)num_of(m, "reserved_mib"), 512);
    assert_int_equal((int)num_of(d, "temperature_c"), 31);
    assert_true(num_of(d, "power_w") > 75.12 && num_of(d, "power_w") < 75.13);
    assert_int_equal((int)num_of(d, "utilization_pct"), 0);
    const cJSON *cr = obj_of(d, "clocks_event_reasons");
    assert_string_equal(str_of(cr, "active"), "0x0000000000000001");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(cr, "reasons"), 0)->valuestring,
                        "gpu_idle");
    assert_int_equal((int)num_of(d, "ecc_uncorrected_volatile"), 0);
    const cJSON *rr = obj_of(d, "remapped_rows");
    assert_keys(rr, rows);
    assert_false(bool_of(rr, "pending"));
    assert_null_field(d, "last_xid");
    assert_true(cJSON_IsNumber(cJSON_GetObjectItem(d, "compute_processes")));
    cJSON_Delete(doc);
    gpu_stop();
    unsetenv("CUDA_VISIBLE_DEVICES");

    /* Unknown values are null, not zero. */
    fake_h200(1);
    fake.nvml.loaded = false;
    fake_unread(0);
    start_fake(5);
    doc = get_gpu(true, &http);
    assert_null_field(obj_of(doc, "cuda"), "visible_devices");
    assert_false(bool_of(obj_of(doc, "nvml"), "loaded"));
    assert_null_field(obj_of(doc, "nvml"), "driver_version");
    d = cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "devices"), 0);
    assert_int_equal((int)num_of(obj_of(d, "memory"), "total_mib"), (int)H200_TOTAL_MIB);
    assert_null_field(obj_of(d, "memory"), "free_mib");
    assert_null_field(d, "temperature_c");
    assert_null_field(d, "power_w");
    assert_null_field(d, "clocks_event_reasons");
    assert_null_field(d, "remapped_rows");
    cJSON_Delete(doc);
}

static void test_verbose_body_without_driver_names_the_cuda_error(void **state) {
    (void)state;
    int http = 0;
    fake_no_driver();
    start_fake(5);
    cJSON *doc = get_gpu(true, &http);
    assert_int_equal(http, 503);
    const cJSON *c = obj_of(doc, "cuda");
    assert_null_field(c, "driver_version");
    const cJSON *e = obj_of(c, "error");
    assert_int_equal((int)num_of(e, "code"), 35);
    assert_string_equal(str_of(e, "name"), "cudaErrorInsufficientDriver");
    assert_false(bool_of(obj_of(doc, "nvml"), "loaded"));
    assert_int_equal((int)num_of(obj_of(obj_of(doc, "nvml"), "error"), "code"), -1);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "devices")), 0);
    assert_null_field(obj_of(doc, "fit"), "recommended");
    cJSON_Delete(doc);
}

/* ---------- Fit policies ---------- */

static void test_fit_policies_downgrade_reject_ignore(void **state) {
    (void)state;
    enum { NO_GPU = -1, FATAL_XID = -2 };
    static const struct {
        int mode;
        long lite, original;
        bool required;
        int variant;
        long long free_mib;
        int outcome;
        int variant_out;
        const char *reason;
    } cases[] = {
        {GPU_FIT_DOWNGRADE, 2048, 8192, false, 1, 143000, GPU_FIT_KEEP, 1,
         "Original fits: 143000 MiB free, 8192 MiB needed."},
        {GPU_FIT_DOWNGRADE, 2048, 8192, false, 1, 8192, GPU_FIT_KEEP, 1,
         "Original fits: 8192 MiB free, 8192 MiB needed."},
        {GPU_FIT_DOWNGRADE, 2048, 8192, false, 1, 5000, GPU_FIT_DOWNGRADED, 0,
         "Downgraded original to lite: 5000 MiB free is below the 8192 MiB original needs but "
         "covers the 2048 MiB lite needs."},
        {GPU_FIT_DOWNGRADE, 2048, 8192, false, 1, 1000, GPU_FIT_REJECTED, 1,
         "Rejected original: 1000 MiB free is below the 8192 MiB it needs and the 2048 MiB lite "
         "needs."},
        {GPU_FIT_DOWNGRADE, 2048, 8192, false, 0, 5000, GPU_FIT_KEEP, 0,
         "Lite fits: 5000 MiB free, 2048 MiB needed."},
        {GPU_FIT_DOWNGRADE, 2048, 8192, false, 0, 1000, GPU_FIT_REJECTED, 0,
         "Rejected lite: 1000 MiB free is below the 2048 MiB it needs."},
        {GPU_FIT_DOWNGRADE, 4096, 16384, false, 1, 10000, GPU_FIT_DOWNGRADED, 0,
         "Downgraded original to lite: 10000 MiB free is below the 16384 MiB original needs but "
         "covers the 4096 MiB lite needs."},
        {GPU_FIT_REJECT, 2048, 8192, false, 1, 5000, GPU_FIT_REJECTED, 1,
         "Rejected original: 5000 MiB free is below the 8192 MiB it needs, and gpu_fit is "
         "reject."},
        {GPU_FIT_REJECT, 2048, 8192, false, 1, 9000, GPU_FIT_KEEP, 1,
         "Original fits: 9000 MiB free, 8192 MiB needed."},
        {GPU_FIT_IGNORE, 2048, 8192, false, 1, 1000, GPU_FIT_KEEP, 1,
         "gpu_fit is ignore: kept original, which needs 8192 MiB, with 1000 MiB free."},
        {GPU_FIT_DOWNGRADE, 2048, 8192, false, 1, NO_GPU, GPU_FIT_KEEP, 1, ""},
        {GPU_FIT_REJECT, 2048, 8192, false, 1, NO_GPU, GPU_FIT_KEEP, 1, ""},
        {GPU_FIT_DOWNGRADE, 2048, 8192, true, 1, NO_GPU, GPU_FIT_REJECTED, 1,
         "Rejected original, which needs 8192 MiB: gpu.required is true and no GPU is seen "
         "(no_driver)."},
        {GPU_FIT_IGNORE, 2048, 8192, true, 1, NO_GPU, GPU_FIT_KEEP, 1,
         "gpu_fit is ignore: kept original, which needs 8192 MiB, with no usable GPU "
         "(no_driver)."},
        {GPU_FIT_DOWNGRADE, 2048, 8192, false, 0, FATAL_XID, GPU_FIT_REJECTED, 0,
         "Rejected lite, which needs 2048 MiB: the GPU is unavailable (xid_fatal)."},
        {GPU_FIT_DOWNGRADE, 2048, 8192, false, 2, 100, GPU_FIT_KEEP, 2, ""},
        /* queue keeps the variant and waits for memory only; no usable GPU still rejects. */
        {GPU_FIT_QUEUE, 2048, 8192, false, 1, 5000, GPU_FIT_QUEUED, 1,
         "Queued original for the GPU: 5000 MiB free is below the 8192 MiB it needs."},
        {GPU_FIT_QUEUE, 2048, 8192, false, 0, 1000, GPU_FIT_QUEUED, 0,
         "Queued lite for the GPU: 1000 MiB free is below the 2048 MiB it needs."},
        {GPU_FIT_QUEUE, 2048, 8192, false, 1, 9000, GPU_FIT_KEEP, 1,
         "Original fits: 9000 MiB free, 8192 MiB needed."},
        {GPU_FIT_QUEUE, 2048, 8192, false, 1, NO_GPU, GPU_FIT_KEEP, 1, ""},
        {GPU_FIT_QUEUE, 2048, 8192, true, 1, NO_GPU, GPU_FIT_REJECTED, 1,
         "Rejected original, which needs 8192 MiB: gpu.required is true and no GPU is seen "
         "(no_driver)."},
        {GPU_FIT_QUEUE, 2048, 8192, false, 0, FATAL_XID, GPU_FIT_REJECTED, 0,
         "Rejected lite, which needs 2048 MiB: the GPU is unavailable (xid_fatal)."},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct gpu_fit_policy p = {.lite_min_free_mib = cases[i].lite,
                                   .original_min_free_mib = cases[i].original,
                                   .on_insufficient = cases[i].mode};
        char reason[512];
        int out = -1;
        if (cases[i].free_mib == NO_GPU) {
            fake_no_driver();
        } else {
            fake_h200(1);
            if (cases[i].free_mib == FATAL_XID) {
                fake.events = true;
                fake.xid_pending = true;
                fake.xid_index = 0;
                fake.xid = 79;
            } else {
                fake.devices[0].mem_free = (unsigned long long)cases[i].free_mib * MIB;
            }
        }
        start_fake(5);
        if (cases[i].free_mib == FATAL_XID)
            for (int tries = 0; tries < 300 && gpu_ready(); tries++) {
                struct timespec ts = {0, 10 * 1000000L};
                nanosleep(&ts, NULL);
            }
        memset(reason, 'x', sizeof(reason));
        int outcome =
            gpu_fit_check(&p, cases[i].required, cases[i].variant, &out, reason, sizeof(reason));
        if (outcome != cases[i].outcome || out != cases[i].variant_out ||
            strcmp(reason, cases[i].reason) != 0)
            fail_msg("case %zu: got %s, variant %d, \"%s\"; expected %s, variant %d, \"%s\"", i,
                     gpu_fit_outcome_name(outcome), out, reason,
                     gpu_fit_outcome_name(cases[i].outcome), cases[i].variant_out, cases[i].reason);
        /* The scheduler's figure is the one the check judged by. */
        bool seen = true;
        long long free_mib = gpu_free_mib(&seen);
        assert_int_equal(seen, cases[i].free_mib != NO_GPU);
        assert_int_equal(free_mib, cases[i].free_mib < 0 ? -1 : cases[i].free_mib);
        gpu_stop();
    }
}

static void test_fit_reason_is_truncated_not_overrun(void **state) {
    (void)state;
    struct gpu_view v = {.status = GPU_STATUS_DEGRADED,
                         .reasons = GPU_REASON_BIT(GPU_REASON_LOW_MEMORY),
                         .device_count = 1,
                         .usable_count = 1,
                         .free_mib = 5000,
                         .age_ms = 10};
    /* Downgrade set explicitly: the default is queue now (issue 18). */
    struct gpu_fit_policy p;
    gpu_fit_policy_init(&p);
    p.on_insufficient = GPU_FIT_DOWNGRADE;
    char reason[16];
    int out = -1;
    memset(reason, 'x', sizeof(reason));
    assert_int_equal(gpu_fit_decide(&v, &p, false, 1, &out, reason, sizeof(reason)),
                     GPU_FIT_DOWNGRADED);
    assert_int_equal(out, 0);
    assert_int_equal(strlen(reason), sizeof(reason) - 1);
    assert_int_equal(gpu_fit_decide(&v, &p, false, 1, &out, NULL, 0), GPU_FIT_DOWNGRADED);
    assert_int_equal(gpu_fit_decide(&v, NULL, false, 1, &out, NULL, 0), GPU_FIT_QUEUED);
}

/* ---------- Metrics ---------- */

static void test_metrics_gauges_per_device(void **state) {
    (void)state;
    struct buf b;
    char line[256];
    fake_h200(2);
    fake.devices[1].temperature_c = -1;
    start_fake(5);
    buf_init(&b, 1 << 16);
    assert_int_equal(gpu_metrics_append(&b), 0);
    assert_non_null(strstr(b.data, "# TYPE gpuhook_gpu_up gauge\ngpuhook_gpu_up 1\n"));
    snprintf(line, sizeof(line),
             "gpuhook_gpu_memory_free_bytes{uuid=\"GPU-6b1a4c2e-0d3f-4a5b-9c8d-7e6f5a4b3c20\"} "
             "%llu\n",
             (H200_TOTAL_MIB - 771) * MIB);
    assert_non_null(strstr(b.data, line));
    assert_non_null(strstr(b.data, "gpuhook_gpu_memory_free_bytes{uuid=\"GPU-6b1a4c2e-0d3f-4a5b-"
                                   "9c8d-7e6f5a4b3c21\"}"));
    assert_non_null(strstr(b.data, "gpuhook_gpu_temperature_celsius{uuid=\"GPU-6b1a4c2e-0d3f-"
                                   "4a5b-9c8d-7e6f5a4b3c20\"} 31\n"));
    assert_null(strstr(b.data, "gpuhook_gpu_temperature_celsius{uuid=\"GPU-6b1a4c2e-0d3f-4a5b-"
                               "9c8d-7e6f5a4b3c21\"}"));
    buf_cleanup(&b);
    gpu_stop();

    fake_no_driver();
    start_fake(5);
    buf_init(&b, 1 << 16);
    assert_int_equal(gpu_metrics_append(&b), 0);
    assert_non_null(strstr(b.data, "gpuhook_gpu_up 0\n"));
    assert_null(strstr(b.data, "{uuid="));
    buf_cleanup(&b);

    buf_init(&b, 64);
    assert_int_equal(gpu_metrics_append(&b), GHE_TOOBIG);
    buf_cleanup(&b);
}

/* ---------- The real probe on this machine ---------- */

static void test_build_string_names_the_cuda_runtime(void **state) {
    (void)state;
    const char *s = gpu_build_string();
    int major = 0, minor = 0;
    char end = 0;
    assert_non_null(s);
    if (strcmp(s, "cuda off") != 0)
        assert_int_equal(sscanf(s, "cuda %d.%d%c", &major, &minor, &end), 2);
}

static void test_real_probe_without_driver_answers_503(void **state) {
    (void)state;
    struct gpu_cuda_probe *p = calloc(1, sizeof(*p));
    assert_non_null(p);
    gpu_backend_probe(p);
    bool built = p->built;
    int driver = p->driver_version;
    free(p);
    if (driver > 0)
        skip(); /* this machine has a driver: check-on-gpu.sh covers it */

    struct gpu_options opts = {.refresh_seconds = 1, .required = false};
    int http = 0;
    assert_int_equal(gpu_start(&opts), 0);
    assert_int_equal(gpu_refresh_now(20000), 0);
    cJSON *doc = get_gpu(true, &http);
    char reasons[128];
    reasons_of(doc, reasons, sizeof(reasons));
    assert_int_equal(http, 503);
    assert_string_equal(str_of(doc, "status"), "unavailable");
    assert_string_equal(reasons, built ? "no_driver" : "built_without_cuda");
    assert_int_equal((int)num_of(doc, "device_count"), 0);
    const cJSON *c = obj_of(doc, "cuda");
    if (built) {
        const cJSON *e = obj_of(c, "error");
        assert_int_equal((int)num_of(e, "code"), 35);
        assert_string_equal(str_of(e, "name"), "cudaErrorInsufficientDriver");
        assert_string_equal(str_of(c, "runtime_version"), gpu_build_string() + 5);
    } else {
        assert_string_equal(gpu_build_string(), "cuda off");
    }
    assert_null_field(c, "driver_version");
    assert_false(bool_of(obj_of(doc, "nvml"), "loaded"));
    assert_false(gpu_ready());
    cJSON_Delete(doc);

    char reason[256];
    int out = -1;
    assert_int_equal(gpu_fit_check(NULL, false, 1, &out, reason, sizeof(reason)), GPU_FIT_KEEP);
    assert_int_equal(out, 1);
    assert_string_equal(reason, "");
    assert_int_equal(gpu_fit_check(NULL, true, 1, &out, reason, sizeof(reason)), GPU_FIT_REJECTED);
    assert_non_null(strstr(reason, "8192 MiB"));
    assert_non_null(strstr(reason, built ? "(no_driver)" : "(built_without_cuda)"));

    /* The answer is sticky: later refreshes keep it, and stopping is prompt. */
    assert_int_equal(gpu_refresh_now(20000), 0);
    doc = get_gpu(false, &http);
    assert_int_equal(http, 503);
    cJSON_Delete(doc);
    gpu_stop();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_xid_fatal_unless_application_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_and_reasons_follow_the_snapshot, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_older_than_three_intervals_is_stale, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_fatal_xid_event_makes_gpu_unavailable, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cuda_is_probed_once_and_nvml_on_every_refresh, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_before_start_status_is_starting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_body_has_exactly_the_documented_fields, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verbose_body_adds_cuda_nvml_and_devices, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_verbose_body_without_driver_names_the_cuda_error,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_fit_policies_downgrade_reject_ignore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fit_reason_is_truncated_not_overrun, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_gauges_per_device, setup, teardown),
        cmocka_unit_test_setup_teardown(test_build_string_names_the_cuda_runtime, setup, teardown),
        cmocka_unit_test_setup_teardown(test_real_probe_without_driver_answers_503, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
