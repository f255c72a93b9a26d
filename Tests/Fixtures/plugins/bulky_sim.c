/*
 * A `pylon.shard.sim/1` plugin with large snapshots, for ShardWSTests' slow consumer: its
 * sim "bulky" sends each subscriber whose id begins with "slow" {"tick": n, "pad": "xxx…"}
 * of about `bytes` bytes (config {"bytes": N}, default 65536, at most 4 MB), so a client
 * that stops reading fills its socket within a few ticks; every other subscriber gets
 * {"tick": n}. Admits everyone; accepts every input.
 *
 *   cc -std=c99 -shared -fPIC -I<include> -o libbulky_sim.so bulky_sim.c
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture_sim_plugin.h"

struct pylon_sim_state {
    uint64_t tick;
    size_t bytes;
    char *buf;
};

static pylon_status sim_create(pylon_instance *inst, const char *json, size_t len, pylon_sim_state **out,
                               const pylon_error_sink *err) {
    char tmp[256];
    const char *b;
    pylon_sim_state *s = calloc(1, sizeof(*s));
    (void)inst, (void)err;
    if (s == NULL) return PYLON_ERR_NO_MEMORY;
    s->bytes = 65536;
    if (len < sizeof(tmp)) {
        memcpy(tmp, json, len);
        tmp[len] = 0;
        b = strstr(tmp, "\"bytes\":");
        if (b != NULL) s->bytes = (size_t)strtoull(b + 8, NULL, 10);
    }
    if (s->bytes < 64) s->bytes = 64;
    if (s->bytes > 4000000) s->bytes = 4000000;
    s->buf = malloc(s->bytes + 64);
    if (s->buf == NULL) {
        free(s);
        return PYLON_ERR_NO_MEMORY;
    }
    *out = s;
    return PYLON_OK;
}

static void sim_destroy(pylon_instance *inst, pylon_sim_state *s) {
    (void)inst;
    free(s->buf);
    free(s);
}

static pylon_status sim_apply_input(pylon_instance *inst, pylon_sim_state *s, const char *sid, size_t sid_len,
                                    const char *json, size_t len, int64_t at, const pylon_error_sink *err) {
    (void)inst, (void)s, (void)sid, (void)sid_len, (void)json, (void)len, (void)at, (void)err;
    return PYLON_OK;
}

static pylon_status sim_tick(pylon_instance *inst, pylon_sim_state *s, uint64_t tick, int64_t dt,
                             const pylon_error_sink *err) {
    (void)inst, (void)dt, (void)err;
    s->tick = tick;
    return PYLON_OK;
}

static pylon_status sim_snapshot_for(pylon_instance *inst, pylon_sim_state *s, const char *sid, size_t sid_len,
                                     pylon_sim_bytes_fn out, void *ctx, const pylon_error_sink *err) {
    int n;
    (void)inst, (void)err;
    if (sid_len < 4 || memcmp(sid, "slow", 4) != 0) {
        char small[64];
        n = snprintf(small, sizeof(small), "{\"tick\":%llu}", (unsigned long long)s->tick);
        out(ctx, (const uint8_t *)small, (size_t)n);
        return PYLON_OK;
    }
    n = snprintf(s->buf, 64, "{\"tick\":%llu,\"pad\":\"", (unsigned long long)s->tick);
    memset(s->buf + n, 'x', s->bytes);
    memcpy(s->buf + n + s->bytes, "\"}", 2);
    out(ctx, (const uint8_t *)s->buf, (size_t)n + s->bytes + 2);
    return PYLON_OK;
}

static int32_t sim_is_finished(pylon_instance *inst, pylon_sim_state *s) {
    (void)inst, (void)s;
    return 0;
}

static pylon_status sim_authorize_subscribe(pylon_instance *inst, pylon_sim_state *s, const char *sid, size_t sid_len,
                                            const char *auth, size_t auth_len, const pylon_error_sink *err) {
    (void)inst, (void)s, (void)sid, (void)sid_len, (void)auth, (void)auth_len, (void)err;
    return PYLON_OK;
}

static const pylon_shard_sim_v1 table = {
    (uint32_t)sizeof(pylon_shard_sim_v1), 0, "bulky",
    sim_create, sim_destroy, sim_apply_input, sim_tick, sim_snapshot_for, sim_is_finished,
    sim_authorize_subscribe, NULL, NULL, NULL,
};

PYLON_FIXTURE_SIM_PLUGIN("pylon.test.bulky_sim", "a shard sim with large snapshots (ShardWSTests)")
