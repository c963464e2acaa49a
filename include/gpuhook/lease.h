/*
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go's
 * leaderelection package does it, as a state machine without a transport.
 * The caller asks lease_next() what to do, does that request (GET, POST or
 * PUT of the Lease), and hands the answer to lease_on_get() or
 * lease_on_write(). Leadership is believed only after a successful write, and
 * only until the renew deadline has passed since that write was sent: a
 * partitioned leader stops leading on its own, before any other replica may
 * take the Lease over (leaseDuration > renewDeadline, measured from when the
 * other replica saw the Lease change). Every write carries the resourceVersion
 * it was computed from, so a stale writer gets 409.
 *
 * Times: mono_ms is a monotonic clock for deadlines; wall_ms the wall clock
 * for the MicroTime fields the Lease carries. Not thread-safe.
 */
#ifndef GPUHOOK_LEASE_H
#define GPUHOOK_LEASE_H

#include <stdbool.h>
#include <stddef.h>

#include <cJSON.h>

/* "2026-12-02T01:30:00.123456Z" plus NUL, with room for wide years. */
#define LEASE_TIME_MAX 40
#define LEASE_NAME_MAX 254
#define LEASE_RV_MAX 64

struct lease_config {
    const char *namespace_; /* borrowed for the call of lease_init; copied */
    const char *name;
    const char *identity;   /* unique per replica: the pod name plus a random suffix */
    long lease_duration_ms; /* client-go default 15 s */
    long renew_deadline_ms; /* 10 s; must be below the duration */
    long retry_period_ms;   /* 2 s; must be below the deadline */
};

enum lease_op {
    LEASE_OP_WAIT,   /* nothing to send before at_mono_ms */
    LEASE_OP_GET,    /* GET the Lease */
    LEASE_OP_CREATE, /* POST body to the collection */
    LEASE_OP_UPDATE, /* PUT body to the Lease (it carries metadata.resourceVersion) */
};

struct lease_action {
    enum lease_op op;
    long long at_mono_ms; /* WAIT: when to call lease_next again */
    char *body;           /* CREATE and UPDATE: the JSON to send; lease_action_cleanup frees */
    const char *why;      /* static words for the log: "acquire", "renew", "take over", ... */
};

enum lease_phase {
    LEASE_PHASE_IDLE,     /* waiting for next_mono_ms */
    LEASE_PHASE_GETTING,  /* a GET is out */
    LEASE_PHASE_WRITING,  /* a CREATE or UPDATE is out */
    LEASE_PHASE_RELEASED, /* released on shutdown: nothing more to do */
};

struct lease_elector {
    char ns[LEASE_NAME_MAX], name[LEASE_NAME_MAX], identity[LEASE_NAME_MAX];
    long duration_ms, deadline_ms, retry_ms;
    enum lease_phase phase;
    long long next_mono_ms;
    bool leading;
    long long led_since_mono_ms; /* send time of the write that made this replica leader */
    long long last_ok_mono_ms;   /* send time of the last successful write */
    long long write_sent_mono_ms;
    cJSON *observed;     /* the Lease as last read or written, or NULL (not found / unknown) */
    bool observed_fresh; /* observed is the server's current version, as far as we know */
    long long observed_mono_ms; /* when observed last changed (client-go's observedTime) */
    long observed_duration_ms;  /* its spec.leaseDurationSeconds */
    unsigned long long transitions_seen, lost; /* counters for metrics */
    char err[256];                             /* the last failure, in words */
};

/* Returns 0, or GHE_INVAL when the config is unusable (err says why, err_size bytes). */
int lease_init(struct lease_elector *e, const struct lease_config *cfg, char *err, size_t err_size);
void lease_cleanup(struct lease_elector *e);
void lease_action_cleanup(struct lease_action *a);

/* True while this replica may act as leader: within the renew deadline of its last write. */
bool lease_is_leader(const struct lease_elector *e, long long mono_ms);

/* What to do now. Returns 0 or GHE_NOMEM; a request already out yields WAIT. */
int lease_next(struct lease_elector *e, long long mono_ms, long long wall_ms,
               struct lease_action *a);
/*
 * The answer to the GET: status 200 with the Lease, 404, or anything else
 * (0 for a timeout or a transport error). Fills the next action (CREATE,
 * UPDATE or WAIT). Returns 0 or GHE_NOMEM.
 */
int lease_on_get(struct lease_elector *e, int status, const char *body, size_t len,
                 long long mono_ms, long long wall_ms, struct lease_action *a);
/*
 * The answer to the CREATE or UPDATE: 200/201 with the Lease as written makes
 * (or keeps) this replica the leader; 409 (a stale resourceVersion, or it
 * exists), 404, a timeout (0) or any other status leaves leadership to expire
 * at its deadline and re-reads the Lease. Fills the next action.
 */
int lease_on_write(struct lease_elector *e, int status, const char *body, size_t len,
                   long long mono_ms, long long wall_ms, struct lease_action *a);
/*
 * On shutdown: stops leading at once and, when this replica held the Lease,
 * gives the PUT that hands it back (holderIdentity cleared, leaseDurationSeconds
 * 1, as client-go's ReleaseOnCancel). Otherwise a WAIT with no body.
 */
int lease_release(struct lease_elector *e, long long mono_ms, long long wall_ms,
                  struct lease_action *a);

/* Writes unix_us as RFC 3339 MicroTime in UTC ("...:00.123456Z"); returns out. */
char *lease_microtime_format(long long unix_us, char out[LEASE_TIME_MAX]);
/* Parses RFC 3339 (any fraction, Z or an offset) into microseconds. Returns 0 or GHE_INVAL. */
int lease_microtime_parse(const char *s, long long *unix_us);

#endif
