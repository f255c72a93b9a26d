/* Shard subscribers for bench/shards.sh: SHARDS x SUBS connections to the shard WebSocket
 * (the ShardWS plugin: ws://127.0.0.1:<port>/?shard=b<s>&sid=s<n>, the admin token as the
 * subprotocol `bearer.<token>`), read for DURATION seconds by one thread with epoll.
 *
 * Why C and epoll: one Python asyncio process could not read 40,000 frames/s (it read 11%
 * of them next to the host), and the reader shares the host's 2 cores, so every cycle it
 * spends is taken from the host being measured. This reader does one read() per readable
 * socket per wakeup, finds each binary message's 8-byte big-endian tick and keeps
 * (tick, arrival) per shard; nothing else is parsed.
 *
 * Lateness: a shard ticks on a fixed schedule (tick n due at base + n / HZ); base is
 * estimated per shard as the earliest (arrival - n / HZ) seen, so a frame's lateness is how
 * far behind that ideal schedule it reached this client: tick-start jitter plus delivery, as
 * one number. A tick's earliest frame (over its subscribers) is an upper bound on when that
 * tick started, so the share of ticks whose first frame came within 5 ms is a lower bound on
 * the share of ticks that started within 5 ms (the host exposes no tick-start timing).
 *
 * Prints one JSON object. Usage: shards_load WS_PORT TOKEN SHARDS SUBS HZ DURATION
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct { uint64_t tick; double at; } Arrival;
typedef struct { Arrival *v; size_t n, cap; } Arrivals;

/* Snapshot bytes of the recorded frames (to check the ~1 KB a frame the run asked for). */
static double recorded_bytes;
typedef struct {
    int fd, shard;
    unsigned char *buf;
    size_t len, cap;
    int open;
} Conn;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (!q) { fprintf(stderr, "shards_load: out of memory\n"); exit(1); }
    return q;
}

static void push(Arrivals *a, uint64_t tick, double at) {
    if (a->n == a->cap) { a->cap = a->cap ? a->cap * 2 : 4096; a->v = xrealloc(a->v, a->cap * sizeof *a->v); }
    a->v[a->n++] = (Arrival){tick, at};
}

/* The token as a subprotocol: anything but unreserved characters percent-encoded. */
static void percent_encode(const char *in, char *out, size_t cap) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p)) out[o++] = (char)*p;
        else { out[o++] = '%'; out[o++] = hex[*p >> 4]; out[o++] = hex[*p & 15]; }
    }
    out[o] = 0;
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        c += w; n -= (size_t)w;
    }
    return 0;
}

/* Connects and upgrades (blocking); on success the socket turns non-blocking and any bytes
 * after the 101 head stay in the connection's buffer. */
static int open_conn(Conn *c, int port, const char *proto, int shard, int sub) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) { close(fd); return -1; }
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET /?shard=b%d&sid=s%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: bearer.%s\r\n\r\n",
                     shard, sub, port, proto);
    if (n <= 0 || (size_t)n >= sizeof req || write_all(fd, req, (size_t)n) < 0) { close(fd); return -1; }
    c->cap = 1 << 16;
    c->buf = xrealloc(NULL, c->cap);
    c->len = 0;
    char *end = NULL;
    while (!end) {
        if (c->len == c->cap) break;
        ssize_t r = read(fd, c->buf + c->len, c->cap - c->len);
        if (r <= 0) break;
        c->len += (size_t)r;
        end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    }
    if (!end || c->len < 12 || memcmp(c->buf + 8, " 101", 4) != 0) { close(fd); free(c->buf); c->buf = NULL; return -1; }
    size_t head = (size_t)(end + 4 - (char *)c->buf);
    memmove(c->buf, c->buf + head, c->len - head);
    c->len -= head;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval none = {0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0) { close(fd); free(c->buf); c->buf = NULL; return -1; }
    c->fd = fd; c->shard = shard; c->open = 1;
    return 0;
}

/* A masked client frame (pong or close) with a zero mask key: the payload goes as is. */
static void send_control(Conn *c, unsigned opcode, const unsigned char *payload, size_t n) {
    unsigned char f[2 + 4 + 125];
    if (n > 125) n = 125;
    f[0] = (unsigned char)(0x80 | opcode);
    f[1] = (unsigned char)(0x80 | n);
    memset(f + 2, 0, 4);
    memcpy(f + 6, payload, n);
    (void)write_all(c->fd, f, 6 + n);
}

/* Takes every complete message out of the buffer: binary ones are recorded (when `record`),
 * pings answered, a close ends the connection. Returns 0, or -1 when the connection ended. */
static int drain(Conn *c, Arrivals *per_shard, double at, int record) {
    size_t off = 0;
    int ended = 0;
    while (c->len - off >= 2) {
        unsigned char *p = c->buf + off;
        unsigned opcode = p[0] & 15;
        uint64_t n = p[1] & 127;
        size_t hdr = 2;
        if (n == 126) {
            if (c->len - off < 4) break;
            n = ((uint64_t)p[2] << 8) | p[3];
            hdr = 4;
        } else if (n == 127) {
            if (c->len - off < 10) break;
            n = 0;
            for (int i = 0; i < 8; i++) n = (n << 8) | p[2 + i];
            hdr = 10;
        }
        if (p[1] & 128) hdr += 4; /* a server never masks; skip a key if one came */
        if (n > (64u << 20)) { ended = 1; break; }
        if (c->len - off < hdr + n) {
            if (hdr + n > c->cap) { c->cap = (size_t)(hdr + n) * 2; c->buf = xrealloc(c->buf, c->cap); }
            break;
        }
        unsigned char *pl = p + hdr;
        if (opcode == 2 && n >= 8) {
            uint64_t tick = 0;
            for (int i = 0; i < 8; i++) tick = (tick << 8) | pl[i];
            if (record) { push(&per_shard[c->shard], tick, at); recorded_bytes += (double)(n - 8); }
        } else if (opcode == 9) {
            send_control(c, 10, pl, (size_t)n);
        } else if (opcode == 8) {
            ended = 1;
        }
        off += hdr + (size_t)n;
        if (ended) break;
    }
    memmove(c->buf, c->buf + off, c->len - off);
    c->len -= off;
    return ended ? -1 : 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double p) {
    if (!n) return -1;
    size_t i = (size_t)((double)n * p);
    return v[i < n ? i : n - 1];
}

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: shards_load WS_PORT TOKEN SHARDS SUBS HZ DURATION\n"); return 2; }
    int port = atoi(argv[1]), shards = atoi(argv[3]), subs = atoi(argv[4]), hz = atoi(argv[5]);
    double duration = atof(argv[6]), interval = 1.0 / hz;
    if (port <= 0 || shards <= 0 || subs <= 0 || hz <= 0 || duration <= 0) { fprintf(stderr, "shards_load: bad arguments\n"); return 2; }
    char proto[1024];
    percent_encode(argv[2], proto, sizeof proto);

    int total = shards * subs, failed = 0, closed = 0;
    Conn *conns = calloc((size_t)total, sizeof *conns);
    Arrivals *per_shard = calloc((size_t)shards, sizeof *per_shard);
    int ep = epoll_create1(0);
    if (!conns || !per_shard || ep < 0) { perror("shards_load"); return 1; }
    for (int s = 0; s < shards; s++)
        for (int n = 0; n < subs; n++) {
            Conn *c = &conns[s * subs + n];
            c->fd = -1;
            if (open_conn(c, port, proto, s, n) < 0) { failed++; continue; }
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        }

    /* One second to settle after connecting, then DURATION seconds measured. */
    double start = now_s(), t0 = start + 1.0, stop = t0 + duration, cpu0 = 0;
    int measuring = 0;
    struct epoll_event evs[256];
    for (;;) {
        double t = now_s();
        if (!measuring && t >= t0) { measuring = 1; cpu0 = cpu_s(); }
        if (t >= stop) break;
        double until = measuring ? stop : t0;
        int k = epoll_wait(ep, evs, 256, (int)((until - t) * 1000) + 1);
        if (k < 0 && errno == EINTR) continue;
        double at = now_s();
        int record = at >= t0 && at < stop;
        for (int i = 0; i < k; i++) {
            Conn *c = evs[i].data.ptr;
            if (c->len == c->cap) { c->cap *= 2; c->buf = xrealloc(c->buf, c->cap); }
            ssize_t r = read(c->fd, c->buf + c->len, c->cap - c->len);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r > 0) c->len += (size_t)r;
            if (r <= 0 || drain(c, per_shard, at, record) < 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                closed++;
            }
        }
    }
    double cpu = cpu_s() - cpu0;

    /* Lateness per frame against its shard's ideal schedule, and per tick of its first frame. */
    size_t frames = 0, nticks = 0;
    for (int s = 0; s < shards; s++) frames += per_shard[s].n;
    double *late = malloc((frames + 1) * sizeof *late), *tick_first = malloc((frames + 1) * sizeof *tick_first);
    size_t nl = 0;
    for (int s = 0; s < shards; s++) {
        Arrivals *a = &per_shard[s];
        if (!a->n) continue;
        double base = 1e300;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (size_t i = 0; i < a->n; i++) {
            double b = a->v[i].at - (double)a->v[i].tick * interval;
            if (b < base) base = b;
            if (a->v[i].tick < lo) lo = a->v[i].tick;
            if (a->v[i].tick > hi) hi = a->v[i].tick;
        }
        size_t span = (size_t)(hi - lo + 1);
        double *first = malloc(span * sizeof *first);
        for (size_t i = 0; i < span; i++) first[i] = -1;
        for (size_t i = 0; i < a->n; i++) {
            double l = (a->v[i].at - (base + (double)a->v[i].tick * interval)) * 1000;
            late[nl++] = l;
            double *f = &first[a->v[i].tick - lo];
            if (*f < 0 || l < *f) *f = l;
        }
        for (size_t i = 0; i < span; i++)
            if (first[i] >= 0) tick_first[nticks++] = first[i];
        free(first);
    }
    qsort(late, nl, sizeof *late, cmp_double);
    size_t w5 = 0, w10 = 0, t5 = 0;
    for (size_t i = 0; i < nl; i++) { w5 += late[i] <= 5; w10 += late[i] <= 10; }
    for (size_t i = 0; i < nticks; i++) t5 += tick_first[i] <= 5;
    long expected = (long)((double)total * hz * duration);
    printf("{\"frames\": %zu, \"expected\": %ld, \"delivered_pct\": %.2f, "
           "\"late_ms_p50\": %.2f, \"late_ms_p99\": %.2f, \"late_ms_p999\": %.2f, \"late_ms_max\": %.2f, "
           "\"within_5ms_pct\": %.2f, \"within_10ms_pct\": %.2f, "
           "\"snapshot_bytes_mean\": %.0f, \"ticks_seen\": %zu, \"ticks_first_frame_within_5ms_pct\": %.3f, "
           "\"failed_connections\": %d, \"closed_connections\": %d, \"client_cpu_pct\": %.1f}\n",
           frames, expected, 100.0 * (double)frames / (double)(expected > 0 ? expected : 1),
           pct(late, nl, 0.5), pct(late, nl, 0.99), pct(late, nl, 0.999), nl ? late[nl - 1] : -1,
           100.0 * (double)w5 / (double)(nl ? nl : 1), 100.0 * (double)w10 / (double)(nl ? nl : 1),
           recorded_bytes / (double)(frames ? frames : 1), nticks, 100.0 * (double)t5 / (double)(nticks ? nticks : 1),
           failed, closed, 100.0 * cpu / duration);
    return 0;
}
