/* Linux calls the CacheRESP event loop needs that Swift's Glibc module does not import
 * (epoll, eventfd, accept4, getrandom). Thin wrappers in shim.c; no state. Only stdint
 * types cross, so this header does not clash with Swift's Glibc module. */
#ifndef CACHE_RESP_SHIM_H
#define CACHE_RESP_SHIM_H

#include <stdint.h>

enum {
    PCR_EV_IN = 0x001,   /* EPOLLIN */
    PCR_EV_OUT = 0x004,  /* EPOLLOUT */
    PCR_EV_ERR = 0x018,  /* EPOLLERR | EPOLLHUP */
};

/** One ready descriptor (epoll_event is packed on x86-64; this is not). */
typedef struct pcr_event {
    int32_t fd;
    uint32_t events;
} pcr_event;

int pcr_epoll_create(void);
/** op: 0 add, 1 modify, 2 delete. */
int pcr_epoll_ctl(int ep, int op, int fd, uint32_t events);
/** Waits like epoll_wait and copies the ready set into `out` (at most 256). */
int pcr_epoll_wait(int ep, pcr_event *out, int max, int timeout_ms);
/** A non-blocking, close-on-exec eventfd. */
int pcr_eventfd(void);
/** accept4 with SOCK_NONBLOCK | SOCK_CLOEXEC; -1 when nothing is pending. `peer_ipv4`
 * gets the client's IPv4 address in host byte order (0 when not IPv4), for protected mode. */
int pcr_accept(int fd, uint32_t *peer_ipv4);
/** A non-blocking, close-on-exec IPv4 stream socket. */
int pcr_listen_socket(void);
uint64_t pcr_random_u64(void);
int pcr_getpid(void);

#endif
