/*
 * Leader election on a Lease, after client-go's leaderelection.go and
 * resourcelock/leaselock.go. The one rule that keeps two replicas from
 * leading at once: a replica believes it leads only within renewDeadline of
 * sending a write that succeeded, while another replica may take over only
 * leaseDuration after it last saw the Lease change, and renewDeadline is
 * shorter. The replicas' wall clocks never enter that comparison.
 */
#include "gpuhook/lease.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpuhook/buf.h"
#include "gpuhook/error.h"
#include "gpuhook/ids.h"

static void set_err(struct lease_elector *e, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_err(struct lease_elector *e, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, sizeof(e->err), fmt, ap);
    va_end(ap);
}

char *lease_microtime_format(long long unix_us, char out[LEASE_TIME_MAX]) {
    long long sec = unix_us / 1000000, us = unix_us % 1000000;
    if (us < 0) {
        us += 1000000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        snprintf(out, LEASE_TIME_MAX, "1970-01-01T00:00:00.000000Z");
        return out;
    }
    char tmp[128];
    snprintf(tmp, sizeof(tmp), "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, us);
    buf_copy_str(out, LEASE_TIME_MAX, tmp);
    return out;
}

static int digits(const char *s, int n, int *out) {
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int lease_microtime_parse(const char *s, long long *unix_us) {
    int y, mo, d, h, mi, se;
    if (!s || strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
        s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &se))
        return GHE_INVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return GHE_INVAL;
    const char *p = s + 19;
    long long frac = 0;
    if (*p == '.') {
        p++;
        int n = 0;
        long long scale = 100000;
        while (isdigit((unsigned char)*p)) {
            if (n < 6) {
                frac += (*p - '0') * scale;
                scale /= 10;
            }
            n++;
            p++;
        }
        if (n == 0 || n > 9)
            return GHE_INVAL;
    }
    long offset_s = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int oh, om;
        if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return GHE_INVAL;
        offset_s = (oh * 3600L + om * 60L) * (*p == '-' ? -1 : 1);
        p += 6;
    } else {
        return GHE_INVAL;
    }
    if (*p != '\0')
        return GHE_INVAL;
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = se;
    time_t t = timegm(&tm);
    /* timegm normalizes the 31st of February; a real date survives the round trip. */
    struct tm back;
    if (!gmtime_r(&t, &back) || back.tm_mday != d || back.tm_mon != mo - 1)
        return GHE_INVAL;
    *unix_us = ((long long)t - offset_s) * 1000000 + frac;
    return 0;
}

int lease_init(struct lease_elector *e, const struct lease_config *cfg, char *err,
               size_t err_size) {
    memset(e, 0, sizeof(*e));
    const char *why = NULL;
    if (!cfg->namespace_ || !cfg->namespace_[0] || strlen(cfg->namespace_) >= LEASE_NAME_MAX)
        why = "namespace: must be 1 to 253 characters";
    else if (!cfg->name || !cfg->name[0] || strlen(cfg->name) >= LEASE_NAME_MAX)
        why = "name: must be 1 to 253 characters";
    else if (!cfg->identity || !cfg->identity[0] || strlen(cfg->identity) >= LEASE_NAME_MAX)
        why = "identity: must be 1 to 253 characters";
    else if (cfg->retry_period_ms <= 0)
        why = "retry period: must be positive";
    else if (cfg->renew_deadline_ms <= cfg->retry_period_ms)
        why = "renew deadline: must be longer than the retry period";
    else if (cfg->lease_duration_ms <= cfg->renew_deadline_ms)
        why = "lease duration: must be longer than the renew deadline";
    else if (cfg->lease_duration_ms % 1000 != 0)
        why = "lease duration: must be whole seconds (leaseDurationSeconds)";
    if (why) {
        if (err && err_size)
            snprintf(err, err_size, "lease: %s", why);
        return GHE_INVAL;
    }
    buf_copy_str(e->ns, sizeof(e->ns), cfg->namespace_);
    buf_copy_str(e->name, sizeof(e->name), cfg->name);
    buf_copy_str(e->identity, sizeof(e->identity), cfg->identity);
    e->duration_ms = cfg->lease_duration_ms;
    e->deadline_ms = cfg->renew_deadline_ms;
    e->retry_ms = cfg->retry_period_ms;
    e->phase = LEASE_PHASE_IDLE;
    e->next_mono_ms = LLONG_MIN;
    return 0;
}

void lease_cleanup(struct lease_elector *e) {
    cJSON_Delete(e->observed);
    e->observed = NULL;
}

void lease_action_cleanup(struct lease_action *a) {
    free(a->body);
    a->body = NULL;
}

bool lease_is_leader(const struct lease_elector *e, long long mono_ms) {
    return e->leading && mono_ms < e->last_ok_mono_ms + e->deadline_ms;
}

static const char *str_at(const cJSON *obj, const char *a, const char *b) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, a), b);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *holder_of(const cJSON *lease) {
    const char *h = str_at(lease, "spec", "holderIdentity");
    return h ? h : "";
}

static long num_at_spec(const cJSON *lease, const char *key, long dflt) {
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(lease, "spec"), key);
    return cJSON_IsNumber(v) ? (long)v->valuedouble : dflt;
}

/* client-go compares the whole record; the resourceVersion changes with every write. */
static bool same_record(const cJSON *a, const cJSON *b) {
    if (!a || !b)
        return false;
    const char *ra = str_at(a, "metadata", "resourceVersion");
    const char *rb = str_at(b, "metadata", "resourceVersion");
    const char *ta = str_at(a, "spec", "renewTime"), *tb = str_at(b, "spec", "renewTime");
    return ra && rb && strcmp(ra, rb) == 0 && strcmp(holder_of(a), holder_of(b)) == 0 &&
           ((!ta && !tb) || (ta && tb && strcmp(ta, tb) == 0));
}

/* The spec of a Lease held by holder ("" to release), as leaselock writes it. */
static cJSON *make_spec(const char *holder, long duration_s, const char *acquire, const char *renew,
                        long transitions) {
    cJSON *spec = cJSON_CreateObject();
    if (!spec)
        return NULL;
    if (holder[0])
        cJSON_AddStringToObject(spec, "holderIdentity", holder);
    cJSON_AddNumberToObject(spec, "leaseDurationSeconds", (double)duration_s);
    cJSON_AddStringToObject(spec, "acquireTime", acquire);
    cJSON_AddStringToObject(spec, "renewTime", renew);
    if (!cJSON_AddNumberToObject(spec, "leaseTransitions", (double)transitions)) {
        cJSON_Delete(spec);
        return NULL;
    }
    return spec;
}

static int emit_write(struct lease_elector *e, cJSON *obj, enum lease_op op, const char *why,
                      long long mono_ms, struct lease_action *a) {
    a->body = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (!a->body)
        return GHE_NOMEM;
    a->op = op;
    a->why = why;
    a->at_mono_ms = mono_ms;
    e->phase = LEASE_PHASE_WRITING;
    e->write_sent_mono_ms = mono_ms;
    return 0;
}

static int emit_wait(struct lease_elector *e, long long until, const char *why,
                     struct lease_action *a) {
    e->phase = LEASE_PHASE_IDLE;
    e->next_mono_ms = until;
    a->op = LEASE_OP_WAIT;
    a->at_mono_ms = until;
    a->why = why;
    return 0;
}

/* client-go's wait.Jitter(retryPeriod, 1.2): retry plus up to 1.2 times retry. */
static long long acquire_retry(const struct lease_elector *e, long long mono_ms) {
    long span = e->retry_ms + e->retry_ms / 5;
    return mono_ms + e->retry_ms + (long long)(ids_fast_random() % (uint64_t)(span + 1));
}

/* The PUT body that holds the Lease for this replica, from the observed object. */
static int write_update(struct lease_elector *e, long long mono_ms, long long wall_ms,
                        struct lease_action *a) {
    char now[LEASE_TIME_MAX];
    lease_microtime_format(wall_ms * 1000, now);
    bool mine = strcmp(holder_of(e->observed), e->identity) == 0;
    const char *acquire = mine ? str_at(e->observed, "spec", "acquireTime") : NULL;
    long transitions = num_at_spec(e->observed, "leaseTransitions", 0);
    if (!mine)
        transitions++;
    cJSON *obj = cJSON_Duplicate(e->observed, 1);
    cJSON *spec =
        make_spec(e->identity, e->duration_ms / 1000, acquire ? acquire : now, now, transitions);
    if (!obj || !spec) {
        cJSON_Delete(obj);
        cJSON_Delete(spec);
        return GHE_NOMEM;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    if (cJSON_GetObjectItemCaseSensitive(obj, "spec"))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, "spec", spec);
    else
        cJSON_AddItemToObject(obj, "spec", spec);
    const char *why = mine ? "renew" : holder_of(e->observed)[0] ? "take over" : "acquire";
    return emit_write(e, obj, LEASE_OP_UPDATE, why, mono_ms, a);
}

static int write_create(struct lease_elector *e, long long mono_ms, long long wall_ms,
                        struct lease_action *a) {
    char now[LEASE_TIME_MAX];
    lease_microtime_format(wall_ms * 1000, now);
    cJSON *obj = cJSON_CreateObject();
    cJSON *md = cJSON_AddObjectToObject(obj, "metadata");
    cJSON *spec = make_spec(e->identity, e->duration_ms / 1000, now, now, 0);
    if (!obj || !md || !spec) {
        cJSON_Delete(obj);
        cJSON_Delete(spec);
        return GHE_NOMEM;
    }
    cJSON_AddStringToObject(obj, "apiVersion", "coordination.k8s.io/v1");
    cJSON_AddStringToObject(obj, "kind", "Lease");
    cJSON_AddStringToObject(md, "name", e->name);
    cJSON_AddStringToObject(md, "namespace", e->ns);
    cJSON_AddItemToObject(obj, "spec", spec);
    return emit_write(e, obj, LEASE_OP_CREATE, "create", mono_ms, a);
}

static void check_deadline(struct lease_elector *e, long long mono_ms) {
    if (e->leading && mono_ms >= e->last_ok_mono_ms + e->deadline_ms) {
        e->leading = false;
        e->lost++;
        set_err(e, "lease %s/%s: not renewed within the renew deadline, stopped leading", e->ns,
                e->name);
    }
}

int lease_next(struct lease_elector *e, long long mono_ms, long long wall_ms,
               struct lease_action *a) {
    memset(a, 0, sizeof(*a));
    (void)wall_ms;
    check_deadline(e, mono_ms);
    if (e->phase == LEASE_PHASE_RELEASED) {
        a->op = LEASE_OP_WAIT;
        a->at_mono_ms = LLONG_MAX;
        a->why = "released";
        return 0;
    }
    if (e->phase != LEASE_PHASE_IDLE) {
        a->op = LEASE_OP_WAIT;
        a->at_mono_ms = mono_ms + e->retry_ms;
        a->why = "a request is out";
        return 0;
    }
    if (mono_ms < e->next_mono_ms) {
        a->op = LEASE_OP_WAIT;
        a->at_mono_ms = e->next_mono_ms;
        a->why = e->leading ? "leading" : "following";
        return 0;
    }
    /* client-go's fast path: the leader renews from the version it wrote, without a GET. */
    if (e->leading && e->observed_fresh && e->observed &&
        strcmp(holder_of(e->observed), e->identity) == 0)
        return write_update(e, mono_ms, wall_ms, a);
    a->op = LEASE_OP_GET;
    a->at_mono_ms = mono_ms;
    a->why = "read";
    e->phase = LEASE_PHASE_GETTING;
    return 0;
}

static bool valid_lease(const cJSON *obj) {
    return cJSON_IsObject(obj) && str_at(obj, "metadata", "resourceVersion") &&
           str_at(obj, "metadata", "name");
}

/* Takes obj (owned) as the observed record; the clock restarts only when it changed. */
static void observe(struct lease_elector *e, cJSON *obj, long long mono_ms) {
    if (!same_record(e->observed, obj))
        e->observed_mono_ms = mono_ms;
    cJSON_Delete(e->observed);
    e->observed = obj;
    e->observed_fresh = true;
    long d = num_at_spec(obj, "leaseDurationSeconds", 0);
    e->observed_duration_ms = d > 0 ? d * 1000 : e->duration_ms;
}

int lease_on_get(struct lease_elector *e, int status, const char *body, size_t len,
                 long long mono_ms, long long wall_ms, struct lease_action *a) {
    memset(a, 0, sizeof(*a));
    if (e->phase == LEASE_PHASE_RELEASED)
        return lease_next(e, mono_ms, wall_ms, a);
    e->phase = LEASE_PHASE_IDLE;
    check_deadline(e, mono_ms);
    if (status == 404) {
        if (e->observed)
            e->observed_mono_ms = mono_ms;
        cJSON_Delete(e->observed);
        e->observed = NULL;
        e->observed_fresh = true;
        return write_create(e, mono_ms, wall_ms, a);
    }
    if (status != 200) {
        e->observed_fresh = false;
        set_err(e, "lease %s/%s: GET answered %d", e->ns, e->name, status);
        return emit_wait(e, acquire_retry(e, mono_ms), "read failed", a);
    }
    cJSON *obj = cJSON_ParseWithLength(body ? body : "", len);
    if (!valid_lease(obj)) {
        cJSON_Delete(obj);
        e->observed_fresh = false;
        set_err(e, "lease %s/%s: GET answered something that is not a Lease", e->ns, e->name);
        return emit_wait(e, acquire_retry(e, mono_ms), "read failed", a);
    }
    observe(e, obj, mono_ms);
    const char *holder = holder_of(e->observed);
    if (holder[0] && strcmp(holder, e->identity) != 0 &&
        mono_ms < e->observed_mono_ms + e->observed_duration_ms) {
        if (e->leading) {
            e->leading = false;
            e->lost++;
            set_err(e, "lease %s/%s: held by another replica now", e->ns, e->name);
        }
        return emit_wait(e, acquire_retry(e, mono_ms), "held by another replica", a);
    }
    return write_update(e, mono_ms, wall_ms, a);
}

int lease_on_write(struct lease_elector *e, int status, const char *body, size_t len,
                   long long mono_ms, long long wall_ms, struct lease_action *a) {
    memset(a, 0, sizeof(*a));
    if (e->phase == LEASE_PHASE_RELEASED)
        return lease_next(e, mono_ms, wall_ms, a);
    e->phase = LEASE_PHASE_IDLE;
    if (status == 200 || status == 201) {
        cJSON *obj = cJSON_ParseWithLength(body ? body : "", len);
        if (valid_lease(obj) && strcmp(holder_of(obj), e->identity) == 0) {
            observe(e, obj, mono_ms);
        } else {
            /* It worked, but the next renew must read the version first. */
            cJSON_Delete(obj);
            e->observed_fresh = false;
        }
        e->last_ok_mono_ms = e->write_sent_mono_ms;
        if (!e->leading) {
            e->leading = true;
            e->led_since_mono_ms = e->write_sent_mono_ms;
            e->transitions_seen++;
        }
        e->err[0] = '\0';
        check_deadline(e, mono_ms);
        if (!e->leading)
            return emit_wait(e, mono_ms, "renew was too slow", a);
        return emit_wait(e, mono_ms + e->retry_ms, "leading", a);
    }
    /* 409: someone wrote first, or it exists; 404: deleted; else unknown. Re-read. */
    e->observed_fresh = false;
    set_err(e, "lease %s/%s: write answered %d", e->ns, e->name, status);
    check_deadline(e, mono_ms);
    if (status == 409 || status == 404)
        return emit_wait(e, mono_ms, "conflict: re-read", a);
    long long until = e->leading ? mono_ms + e->retry_ms : acquire_retry(e, mono_ms);
    return emit_wait(e, until, "write failed", a);
}

int lease_release(struct lease_elector *e, long long mono_ms, long long wall_ms,
                  struct lease_action *a) {
    memset(a, 0, sizeof(*a));
    bool held = e->observed && strcmp(holder_of(e->observed), e->identity) == 0;
    e->leading = false;
    e->phase = LEASE_PHASE_RELEASED;
    if (!held) {
        a->op = LEASE_OP_WAIT;
        a->at_mono_ms = LLONG_MAX;
        a->why = "released";
        return 0;
    }
    char now[LEASE_TIME_MAX];
    lease_microtime_format(wall_ms * 1000, now);
    cJSON *obj = cJSON_Duplicate(e->observed, 1);
    cJSON *spec = make_spec("", 1, now, now, num_at_spec(e->observed, "leaseTransitions", 0));
    if (!obj || !spec) {
        cJSON_Delete(obj);
        cJSON_Delete(spec);
        return GHE_NOMEM;
    }
    cJSON_ReplaceItemInObjectCaseSensitive(obj, "spec", spec);
    int rc = emit_write(e, obj, LEASE_OP_UPDATE, "release", mono_ms, a);
    e->phase = LEASE_PHASE_RELEASED;
    return rc;
}
