#define _GNU_SOURCE
#include "cache_resp_shim.h"
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

_Static_assert(PCR_EV_IN == EPOLLIN && PCR_EV_OUT == EPOLLOUT && PCR_EV_ERR == (EPOLLERR | EPOLLHUP), "epoll flags");

int pcr_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int pcr_epoll_ctl(int ep, int op, int fd, uint32_t events) {
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = 0;
    ev.data.fd = fd;
    int o = op == 0 ? EPOLL_CTL_ADD : (op == 1 ? EPOLL_CTL_MOD : EPOLL_CTL_DEL);
    return epoll_ctl(ep, o, fd, &ev);
}

int pcr_epoll_wait(int ep, pcr_event *out, int max, int timeout_ms) {
    struct epoll_event evs[256];
    if (max > 256) max = 256;
    int n = epoll_wait(ep, evs, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        out[i].fd = evs[i].data.fd;
        out[i].events = evs[i].events;
    }
    return n;
}

int pcr_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int pcr_accept(int fd, uint32_t *peer_ipv4) {
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    int c = accept4(fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    *peer_ipv4 = (c >= 0 && len >= sizeof addr && addr.sin_family == AF_INET) ? ntohl(addr.sin_addr.s_addr) : 0;
    return c;
}

int pcr_listen_socket(void) { return socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); }

uint64_t pcr_random_u64(void) {
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) v = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull;
    return v;
}

int pcr_getpid(void) { return (int)getpid(); }
