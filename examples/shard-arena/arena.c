/*
 * shard-arena: an example `pylon.shard.sim/1` plugin in plain C99 (one header, no Swift).
 *
 * Players move toward targets in a 2D arena. Each subscriber controls one player named by
 * its subscriber id, and sees only the players in the grid cells around its own (a 3x3
 * neighbourhood of `cell`-sized cells): a far player never appears in its snapshot.
 *
 * Shard config (`POST /api/shards {"sim": "arena", "config": {...}}`), every key optional:
 *   {"width": 1000, "height": 1000, "cell": 100, "speed": 200, "max_players": 64,
 *    "max_ticks": 0}
 *   speed is in units per second; max_ticks > 0 ends the game after that many ticks.
 * Inputs (validated; anything else is rejected with INPUT_REJECTED and changes nothing):
 *   {"spawn": [x, y]}    place this subscriber's player (once), inside the arena
 *   {"move_to": [x, y]}  set its target, inside the arena
 * Snapshot for a subscriber:
 *   {"tick": n, "you": {"id","x","y","tx","ty"} | null, "players": [{"id","x","y"}, ...]}
 *   where `players` are the OTHER players within its area of interest.
 *
 * Persistence: `save` writes the whole state as text and `restore` reads it back (checked), so
 * a shard created with `persist_every_ticks` comes back after the host restarts.
 *
 * Threads: the host calls one state from one thread at a time; different states may be
 * called at once, so everything lives in the state (no mutable globals).
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pylon_plugin.h"

#define ARENA_PLUGIN_ID "pylon.example.shard_arena"
#define ARENA_ID_MAX 128
#define ARENA_PLAYERS_LIMIT 1024

typedef struct player {
    char id[ARENA_ID_MAX + 1];
    size_t id_len;
    double x, y, tx, ty;
} player;

struct pylon_sim_state {
    double width, height, cell, speed;
    uint64_t max_ticks, tick;
    size_t max_players, count;
    player *players;
    char *buf; /* the snapshot being written */
    size_t buf_cap;
};

/* ---- errors -------------------------------------------------------------------------- */

static pylon_status fail(const pylon_error_sink *err, pylon_status st, const char *code, const char *msg) {
    if (err != NULL && err->set != NULL) {
        pylon_error e;
        e.struct_size = (uint32_t)sizeof(pylon_error);
        e.status = st;
        e.code.ptr = code;
        e.code.len = strlen(code);
        e.message.ptr = msg;
        e.message.len = strlen(msg);
        err->set(err->ctx, &e);
    }
    return st;
}

/* ---- a small reader for flat JSON objects of numbers and [x, y] pairs -------------------- */

typedef struct reader {
    const char *p, *end;
} reader;

static void skip_ws(reader *r) {
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int eat(reader *r, char c) {
    skip_ws(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return 1;
    }
    return 0;
}

/* A key without escapes, at most 31 bytes, into `out` (NUL-terminated). */
static int read_key(reader *r, char out[32]) {
    size_t n = 0;
    if (!eat(r, '"')) return 0;
    while (r->p < r->end && *r->p != '"') {
        if (*r->p == '\\' || n >= 31) return 0;
        out[n++] = *r->p++;
    }
    if (r->p >= r->end) return 0;
    r->p++;
    out[n] = 0;
    return 1;
}

/* A finite number. */
static int read_number(reader *r, double *out) {
    char tmp[64];
    size_t n = 0;
    char *stop = NULL;
    skip_ws(r);
    while (r->p + n < r->end && n < sizeof(tmp) - 1 && strchr("+-0123456789.eE", r->p[n]) != NULL) {
        tmp[n] = r->p[n];
        n++;
    }
    if (n == 0) return 0;
    tmp[n] = 0;
    *out = strtod(tmp, &stop);
    if (stop != tmp + n || !isfinite(*out)) return 0;
    r->p += n;
    return 1;
}

static int read_pair(reader *r, double *x, double *y) {
    return eat(r, '[') && read_number(r, x) && eat(r, ',') && read_number(r, y) && eat(r, ']');
}

/* ---- state ---------------------------------------------------------------------------- */

static player *find(pylon_sim_state *s, const char *id, size_t len) {
    size_t i;
    for (i = 0; i < s->count; i++)
        if (s->players[i].id_len == len && memcmp(s->players[i].id, id, len) == 0) return &s->players[i];
    return NULL;
}

static pylon_status arena_create(pylon_instance *inst, const char *json, size_t len, pylon_sim_state **out,
                                 const pylon_error_sink *err) {
    reader r;
    char key[32];
    double v;
    pylon_sim_state *s;
    (void)inst;
    *out = NULL;
    s = calloc(1, sizeof(*s));
    if (s == NULL) return fail(err, PYLON_ERR_NO_MEMORY, "NO_MEMORY", "out of memory");
    s->width = 1000;
    s->height = 1000;
    s->cell = 100;
    s->speed = 200;
    s->max_players = 64;
    r.p = json;
    r.end = json + len;
    if (!eat(&r, '{')) goto bad;
    if (!eat(&r, '}')) {
        do {
            if (!read_key(&r, key) || !eat(&r, ':') || !read_number(&r, &v)) goto bad;
            if (strcmp(key, "width") == 0 && v >= 1 && v <= 1e6) s->width = v;
            else if (strcmp(key, "height") == 0 && v >= 1 && v <= 1e6) s->height = v;
            else if (strcmp(key, "cell") == 0 && v >= 1 && v <= 1e6) s->cell = v;
            else if (strcmp(key, "speed") == 0 && v >= 0 && v <= 1e6) s->speed = v;
            else if (strcmp(key, "max_players") == 0 && v >= 1 && v <= ARENA_PLAYERS_LIMIT) s->max_players = (size_t)v;
            else if (strcmp(key, "max_ticks") == 0 && v >= 0 && v <= 1e12) s->max_ticks = (uint64_t)v;
            else goto bad;
        } while (eat(&r, ','));
        if (!eat(&r, '}')) goto bad;
    }
    s->players = calloc(s->max_players, sizeof(player));
    if (s->players == NULL) {
        free(s);
        return fail(err, PYLON_ERR_NO_MEMORY, "NO_MEMORY", "out of memory");
    }
    *out = s;
    return PYLON_OK;
bad:
    free(s);
    return fail(err, PYLON_ERR_INVALID_ARGUMENT, "INVALID_ARENA_CONFIG",
                "arena config is an object of numbers: width, height, cell, speed (>= 0), max_players (1..1024), max_ticks");
}

static void arena_destroy(pylon_instance *inst, pylon_sim_state *s) {
    (void)inst;
    if (s == NULL) return;
    free(s->players);
    free(s->buf);
    free(s);
}

static pylon_status arena_apply_input(pylon_instance *inst, pylon_sim_state *s, const char *sid, size_t sid_len,
                                      const char *json, size_t len, int64_t received_at, const pylon_error_sink *err) {
    reader r;
    char key[32];
    double x, y;
    player *p;
    (void)inst;
    (void)received_at;
    r.p = json;
    r.end = json + len;
    if (sid_len == 0 || sid_len > ARENA_ID_MAX)
        return fail(err, PYLON_ERR_INVALID_ARGUMENT, "INPUT_REJECTED", "the subscriber id is too long");
    if (!eat(&r, '{') || !read_key(&r, key) || !eat(&r, ':') || !read_pair(&r, &x, &y) || !eat(&r, '}')) goto bad;
    skip_ws(&r);
    if (r.p != r.end) goto bad;
    if (x < 0 || y < 0 || x > s->width || y > s->height)
        return fail(err, PYLON_ERR_INVALID_ARGUMENT, "INPUT_REJECTED", "the point is outside the arena");
    p = find(s, sid, sid_len);
    if (strcmp(key, "spawn") == 0) {
        if (p != NULL) return fail(err, PYLON_ERR_INVALID_ARGUMENT, "INPUT_REJECTED", "this player has already spawned");
        if (s->count >= s->max_players) return fail(err, PYLON_ERR_INVALID_ARGUMENT, "INPUT_REJECTED", "the arena is full");
        p = &s->players[s->count++];
        memcpy(p->id, sid, sid_len);
        p->id[sid_len] = 0;
        p->id_len = sid_len;
        p->x = p->tx = x;
        p->y = p->ty = y;
        return PYLON_OK;
    }
    if (strcmp(key, "move_to") == 0) {
        if (p == NULL) return fail(err, PYLON_ERR_INVALID_ARGUMENT, "INPUT_REJECTED", "spawn before moving");
        p->tx = x;
        p->ty = y;
        return PYLON_OK;
    }
bad:
    return fail(err, PYLON_ERR_INVALID_ARGUMENT, "INPUT_REJECTED", "an input is {\"spawn\": [x, y]} or {\"move_to\": [x, y]}");
}

static pylon_status arena_tick(pylon_instance *inst, pylon_sim_state *s, uint64_t tick, int64_t dt_nanos,
                               const pylon_error_sink *err) {
    size_t i;
    double step = s->speed * ((double)dt_nanos / 1e9);
    (void)inst;
    (void)err;
    s->tick = tick;
    for (i = 0; i < s->count; i++) {
        player *p = &s->players[i];
        double dx = p->tx - p->x, dy = p->ty - p->y, d = sqrt(dx * dx + dy * dy);
        if (d <= step || d == 0) {
            p->x = p->tx;
            p->y = p->ty;
        } else {
            p->x += dx / d * step;
            p->y += dy / d * step;
        }
    }
    return PYLON_OK;
}

/* ---- snapshots: the grid area of interest -------------------------------------------- */

/* printf onto the snapshot buffer, growing it as needed; 0 when out of memory. */
static int put(pylon_sim_state *s, size_t *len, const char *fmt, ...) {
    for (;;) {
        va_list ap;
        int n;
        va_start(ap, fmt);
        n = vsnprintf(s->buf + *len, s->buf_cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0) return 0;
        if ((size_t)n < s->buf_cap - *len) {
            *len += (size_t)n;
            return 1;
        }
        {
            size_t cap = s->buf_cap * 2 + (size_t)n + 256;
            char *grown = realloc(s->buf, cap);
            if (grown == NULL) return 0;
            s->buf = grown;
            s->buf_cap = cap;
        }
    }
}

static int near_cells(const pylon_sim_state *s, const player *a, const player *b) {
    long ax = (long)floor(a->x / s->cell), ay = (long)floor(a->y / s->cell);
    long bx = (long)floor(b->x / s->cell), by = (long)floor(b->y / s->cell);
    return labs(ax - bx) <= 1 && labs(ay - by) <= 1;
}

static pylon_status arena_snapshot_for(pylon_instance *inst, pylon_sim_state *s, const char *sid, size_t sid_len,
                                       pylon_sim_bytes_fn out, void *out_ctx, const pylon_error_sink *err) {
    size_t len = 0, i;
    int first = 1;
    const player *me = find(s, sid, sid_len);
    (void)inst;
    if (s->buf == NULL) {
        s->buf_cap = 1024;
        s->buf = malloc(s->buf_cap);
        if (s->buf == NULL) return fail(err, PYLON_ERR_NO_MEMORY, "NO_MEMORY", "out of memory");
    }
    /* Ids are letters, digits and _-.:@ (the host checks them), so they need no escaping. */
    if (!put(s, &len, "{\"tick\":%llu", (unsigned long long)s->tick)) goto oom;
    if (me == NULL) {
        if (!put(s, &len, ",\"you\":null,\"players\":[]}")) goto oom;
    } else {
        if (!put(s, &len, ",\"you\":{\"id\":\"%s\",\"x\":%.3f,\"y\":%.3f,\"tx\":%.3f,\"ty\":%.3f},\"players\":[", me->id,
                 me->x, me->y, me->tx, me->ty))
            goto oom;
        for (i = 0; i < s->count; i++) {
            const player *p = &s->players[i];
            if (p == me || !near_cells(s, me, p)) continue;
            if (!put(s, &len, "%s{\"id\":\"%s\",\"x\":%.3f,\"y\":%.3f}", first ? "" : ",", p->id, p->x, p->y)) goto oom;
            first = 0;
        }
        if (!put(s, &len, "]}")) goto oom;
    }
    out(out_ctx, (const uint8_t *)s->buf, len);
    return PYLON_OK;
oom:
    return fail(err, PYLON_ERR_NO_MEMORY, "NO_MEMORY", "out of memory");
}

static int32_t arena_is_finished(pylon_instance *inst, pylon_sim_state *s) {
    (void)inst;
    return s->max_ticks > 0 && s->tick >= s->max_ticks;
}

/* ---- persistence: the whole state as text ---------------------------------------------- */

/* "arena1 width height cell speed max_ticks tick max_players count\n" then one
 * "id x y tx ty\n" per player; numbers as %.17g, so a restore gives back the same doubles. */
static pylon_status arena_save(pylon_instance *inst, pylon_sim_state *s, pylon_sim_bytes_fn out, void *out_ctx,
                               const pylon_error_sink *err) {
    size_t len = 0, i;
    (void)inst;
    if (s->buf == NULL) {
        s->buf_cap = 1024;
        s->buf = malloc(s->buf_cap);
        if (s->buf == NULL) return fail(err, PYLON_ERR_NO_MEMORY, "NO_MEMORY", "out of memory");
    }
    if (!put(s, &len, "arena1 %.17g %.17g %.17g %.17g %llu %llu %lu %lu\n", s->width, s->height, s->cell, s->speed,
             (unsigned long long)s->max_ticks, (unsigned long long)s->tick, (unsigned long)s->max_players, (unsigned long)s->count))
        goto oom;
    for (i = 0; i < s->count; i++) {
        const player *p = &s->players[i];
        if (!put(s, &len, "%s %.17g %.17g %.17g %.17g\n", p->id, p->x, p->y, p->tx, p->ty)) goto oom;
    }
    out(out_ctx, (const uint8_t *)s->buf, len);
    return PYLON_OK;
oom:
    return fail(err, PYLON_ERR_NO_MEMORY, "NO_MEMORY", "out of memory");
}

static int inside(const pylon_sim_state *s, double x, double y) {
    return isfinite(x) && isfinite(y) && x >= 0 && y >= 0 && x <= s->width && y <= s->height;
}

static pylon_status arena_restore(pylon_instance *inst, const uint8_t *saved, size_t saved_len, pylon_sim_state **out,
                                  const pylon_error_sink *err) {
    char *text, *at;
    unsigned long long max_ticks, tick;
    unsigned long max_players, count, i;
    int used = 0;
    pylon_sim_state *s;
    (void)inst;
    *out = NULL;
    text = malloc(saved_len + 1);
    s = calloc(1, sizeof(*s));
    if (text == NULL || s == NULL) {
        free(text);
        free(s);
        return fail(err, PYLON_ERR_NO_MEMORY, "NO_MEMORY", "out of memory");
    }
    memcpy(text, saved, saved_len);
    text[saved_len] = 0;
    if (memchr(saved, 0, saved_len) != NULL) goto bad;
    if (sscanf(text, "arena1 %lf %lf %lf %lf %llu %llu %lu %lu\n%n", &s->width, &s->height, &s->cell, &s->speed, &max_ticks,
               &tick, &max_players, &count, &used) != 8 || used == 0)
        goto bad;
    if (!(s->width >= 1 && s->width <= 1e6 && s->height >= 1 && s->height <= 1e6 && s->cell >= 1 && s->cell <= 1e6 &&
          s->speed >= 0 && s->speed <= 1e6 && max_players >= 1 && max_players <= ARENA_PLAYERS_LIMIT && count <= max_players))
        goto bad;
    s->max_ticks = max_ticks;
    s->tick = tick;
    s->max_players = max_players;
    s->players = calloc(max_players, sizeof(player));
    if (s->players == NULL) goto bad;
    at = text + used;
    for (i = 0; i < count; i++) {
        player *p = &s->players[i];
        used = 0;
        if (sscanf(at, "%128[A-Za-z0-9_.:@-] %lf %lf %lf %lf\n%n", p->id, &p->x, &p->y, &p->tx, &p->ty, &used) != 5 || used == 0)
            goto bad;
        if (!inside(s, p->x, p->y) || !inside(s, p->tx, p->ty)) goto bad;
        p->id_len = strlen(p->id);
        at += used;
    }
    if (*at != 0) goto bad;
    s->count = count;
    free(text);
    *out = s;
    return PYLON_OK;
bad:
    free(text);
    free(s->players);
    free(s);
    return fail(err, PYLON_ERR_CORRUPT, "INVALID_SAVED_STATE", "the saved arena state is not one this sim wrote");
}

/* ---- the plugin ----------------------------------------------------------------------- */

static const pylon_shard_sim_v1 arena_table = {
    (uint32_t)sizeof(pylon_shard_sim_v1),
    0,
    "arena",
    arena_create,
    arena_destroy,
    arena_apply_input,
    arena_tick,
    arena_snapshot_for,
    arena_is_finished,
    NULL, /* authorize_subscribe: the default (the admin, or the user whose id is the subscriber) */
    NULL, /* authorize_input: allowed (the host already checks who may act as a subscriber) */
    arena_save,
    arena_restore,
};

static int arena_instance_tag;

static pylon_status plugin_create(const pylon_host_v1 *host, const char *config, size_t config_len,
                                  pylon_instance **out, const pylon_error_sink *err) {
    (void)host;
    (void)config;
    (void)config_len;
    (void)err;
    *out = (pylon_instance *)&arena_instance_tag; /* no per-instance data */
    return PYLON_OK;
}

static void plugin_destroy(pylon_instance *instance) { (void)instance; }

static const void *plugin_get_interface(pylon_instance *instance, const char *capability_id) {
    if (instance == NULL || capability_id == NULL) return NULL;
    if (strcmp(capability_id, PYLON_CAP_SHARD_SIM) == 0) return &arena_table;
    return NULL;
}

static const char *const arena_capabilities[] = {PYLON_CAP_SHARD_SIM};

static const pylon_plugin_descriptor arena_descriptor = {
    (uint32_t)sizeof(pylon_plugin_descriptor),
    PYLON_ABI_MAJOR,
    PYLON_ABI_MINOR,
    PYLON_ABI_HEADER_HASH,
    (uint32_t)sizeof(void *),
    (uint32_t)sizeof(pylon_value),
    (uint32_t)sizeof(pylon_error),
    (uint32_t)sizeof(pylon_host_v1),
    ARENA_PLUGIN_ID,
    "0.1.0",
    "example shard sim in C99: players move toward targets, grid area of interest (examples/shard-arena)",
    arena_capabilities,
    1,
    0,
    plugin_create,
    plugin_destroy,
    plugin_get_interface,
};

/* The one exported symbol: cheap, side-effect free, callable more than once. */
const pylon_plugin_descriptor *pylon_plugin_entry(void) { return &arena_descriptor; }
