/*
 * A `pylon.shard.sim/1` plugin that breaks the contract on purpose, for ShardTests: its sim
 * "misbehaving" behaves until `after` ticks (config {"mode": M, "after": N}, default 3) have
 * passed since its first subscriber's first snapshot (so a test's stream sees it), then:
 *   "garbage"  snapshot_for hands back bytes that are not JSON
 *   "slow"     tick sleeps 3 s (far past the host's budget)
 *   "fail"     tick returns an error
 *   "silent"   snapshot_for returns PYLON_OK without handing back a snapshot
 *   anything else: behaves forever.
 * Its snapshot is {"tick": n}. It also refuses subscribers named "banned" (its own
 * authorize_subscribe, which otherwise admits everyone signed in) and inputs whose JSON
 * contains "forbidden" (authorize_input).
 *
 *   cc -std=c99 -shared -fPIC -I<include> -o libmisbehaving_sim.so misbehaving_sim.c
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fixture_sim_plugin.h"

struct pylon_sim_state {
    char mode[16];
    uint64_t after, tick;
    uint64_t watched_since; /* the tick of the first snapshot, 0 before it */
};

static pylon_status fail(const pylon_error_sink *err, const char *code, const char *msg) {
    if (err != NULL && err->set != NULL) {
        pylon_error e = {(uint32_t)sizeof(pylon_error), PYLON_ERR_GENERIC, {code, strlen(code)}, {msg, strlen(msg)}};
        err->set(err->ctx, &e);
    }
    return PYLON_ERR_GENERIC;
}

/* The bytes as a NUL-terminated copy (config and inputs are small in the tests). */
static char *text(const char *p, size_t n) {
    char *t = malloc(n + 1);
    if (t == NULL) return NULL;
    memcpy(t, p, n);
    t[n] = 0;
    return t;
}

static pylon_status sim_create(pylon_instance *inst, const char *json, size_t len, pylon_sim_state **out,
                               const pylon_error_sink *err) {
    static const char *const modes[] = {"garbage", "slow", "fail", "silent"};
    char *t = text(json, len);
    const char *a;
    size_t i;
    pylon_sim_state *s = calloc(1, sizeof(*s));
    (void)inst;
    if (t == NULL || s == NULL) {
        free(t);
        free(s);
        return fail(err, "NO_MEMORY", "out of memory");
    }
    s->after = 3;
    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        char quoted[24];
        snprintf(quoted, sizeof(quoted), "\"%s\"", modes[i]);
        if (strstr(t, quoted) != NULL) snprintf(s->mode, sizeof(s->mode), "%s", modes[i]);
    }
    a = strstr(t, "\"after\":");
    if (a != NULL) s->after = strtoull(a + 8, NULL, 10);
    free(t);
    *out = s;
    return PYLON_OK;
}

static void sim_destroy(pylon_instance *inst, pylon_sim_state *s) {
    (void)inst;
    free(s);
}

static pylon_status sim_apply_input(pylon_instance *inst, pylon_sim_state *s, const char *sid, size_t sid_len,
                                    const char *json, size_t len, int64_t at, const pylon_error_sink *err) {
    (void)inst, (void)s, (void)sid, (void)sid_len, (void)json, (void)len, (void)at, (void)err;
    return PYLON_OK;
}

/* Whether `n` bytes at `p` contain the NUL-terminated `needle`. */
static int contains(const char *p, size_t n, const char *needle) {
    size_t k = strlen(needle), i;
    for (i = 0; i + k <= n; i++)
        if (memcmp(p + i, needle, k) == 0) return 1;
    return 0;
}

static int misbehaving(const pylon_sim_state *s, const char *mode) {
    return s->watched_since > 0 && s->tick > s->watched_since + s->after && strcmp(s->mode, mode) == 0;
}

static pylon_status sim_tick(pylon_instance *inst, pylon_sim_state *s, uint64_t tick, int64_t dt,
                             const pylon_error_sink *err) {
    (void)inst, (void)dt;
    s->tick = tick;
    if (misbehaving(s, "slow")) {
        struct timespec ts = {3, 0};
        nanosleep(&ts, NULL);
    }
    if (misbehaving(s, "fail")) return fail(err, "SIM_BROKEN", "the fixture fails its tick on purpose");
    return PYLON_OK;
}

static pylon_status sim_snapshot_for(pylon_instance *inst, pylon_sim_state *s, const char *sid, size_t sid_len,
                                     pylon_sim_bytes_fn out, void *ctx, const pylon_error_sink *err) {
    char buf[64];
    int n;
    (void)inst, (void)sid, (void)sid_len, (void)err;
    if (s->watched_since == 0) s->watched_since = s->tick;
    if (misbehaving(s, "silent")) return PYLON_OK;
    if (misbehaving(s, "garbage")) {
        static const uint8_t junk[] = {0x01, 'n', 'o', 't', ' ', 'j', 's', 'o', 'n', 0xff};
        out(ctx, junk, sizeof(junk));
        return PYLON_OK;
    }
    n = snprintf(buf, sizeof(buf), "{\"tick\":%llu}", (unsigned long long)s->tick);
    out(ctx, (const uint8_t *)buf, (size_t)n);
    return PYLON_OK;
}

static int32_t sim_is_finished(pylon_instance *inst, pylon_sim_state *s) {
    (void)inst, (void)s;
    return 0;
}

static pylon_status sim_authorize_subscribe(pylon_instance *inst, pylon_sim_state *s, const char *sid, size_t sid_len,
                                            const char *auth, size_t auth_len, const pylon_error_sink *err) {
    (void)inst, (void)s;
    if (sid_len == 6 && memcmp(sid, "banned", 6) == 0) return fail(err, "BANNED", "this subscriber is banned");
    /* Anyone signed in (the auth JSON has a string user_id) or the admin. */
    if (contains(auth, auth_len, "\"user_id\":\"") || contains(auth, auth_len, "\"is_admin\":true"))
        return PYLON_OK;
    return fail(err, "SIGN_IN_REQUIRED", "sign in to watch");
}

static pylon_status sim_authorize_input(pylon_instance *inst, pylon_sim_state *s, const char *sid, size_t sid_len,
                                        const char *auth, size_t auth_len, const char *json, size_t len,
                                        const pylon_error_sink *err) {
    (void)inst, (void)s, (void)sid, (void)sid_len, (void)auth, (void)auth_len;
    if (contains(json, len, "forbidden")) return fail(err, "INPUT_FORBIDDEN", "the fixture forbids this input");
    return PYLON_OK;
}

static const pylon_shard_sim_v1 table = {
    (uint32_t)sizeof(pylon_shard_sim_v1), 0, "misbehaving",
    sim_create, sim_destroy, sim_apply_input, sim_tick, sim_snapshot_for, sim_is_finished,
    sim_authorize_subscribe, sim_authorize_input, NULL, NULL,
};

PYLON_FIXTURE_SIM_PLUGIN("pylon.test.misbehaving_sim", "a shard sim that breaks the contract on purpose (ShardTests)")
