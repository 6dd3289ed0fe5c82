/* SPDX-License-Identifier: MIT */
/*
 * uw_net.h - TCP transport: addresses, listening, connecting, socket options. Everything that
 * touches the network's name and socket APIs is here; sessions only see file descriptors.
 */
#ifndef UW_NET_H
#define UW_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define UW_NET_MAX_LISTEN 16

/**
 * uw_net_split_hostport() - split "HOST[:PORT]" into host and port. HOST may be a name, an IPv4
 * literal, a bracketed IPv6 literal ("[::1]:3240") or a bare IPv6 literal ("::1", no port).
 * An empty host (":3240") means every local address. Returns 0 or UW_E_INVAL (bad port, host
 * too long for host_cap, unbalanced brackets).
 */
int uw_net_split_hostport(const char *s, uint16_t default_port, char *host, size_t host_cap,
                          uint16_t *port);

/**
 * uw_net_listen() - listening sockets for host:port (host "" = every local address, IPv4 and
 * IPv6 as separate sockets, IPV6_V6ONLY). Non-blocking, close-on-exec, SO_REUSEADDR. Writes up
 * to max fds into fds and their count into *n. Returns 0, or a negative uw_err with a message
 * in err ("cannot listen on 127.0.0.1:3240: Address already in use").
 */
int uw_net_listen(const char *host, uint16_t port, int *fds, size_t max, size_t *n, char *err,
                  size_t errlen);

/**
 * uw_net_connect() - connect to host:port (names resolved; every address tried in turn) within
 * timeout_ms. The socket is returned blocking, tuned with uw_net_tune(). Returns 0 and *fd, or a
 * negative uw_err (UW_E_TIMEOUT, UW_E_REFUSED, UW_E_NOTFOUND for an unknown host, UW_E_IO) with
 * a message in err.
 */
int uw_net_connect(const char *host, uint16_t port, int timeout_ms, int *fd, char *err,
                   size_t errlen);

/**
 * uw_net_connect_sa() - a fresh stream socket of sa's family connected to sa within timeout_ms
 * (in progress: polled; a unix socket whose backlog is full: retried). Returns the fd, blocking
 * and close-on-exec, or -errno (-ETIMEDOUT when the time ran out).
 */
int uw_net_connect_sa(const struct sockaddr *sa, socklen_t sl, int timeout_ms);

/* TCP_NODELAY (small URBs must not wait for Nagle) and keepalive (dead peers release the device:
 * idle 30 s, then 3 probes 10 s apart). Returns 0 or UW_E_IO. */
int uw_net_tune(int fd);

/* "127.0.0.1:51234", "[::1]:3240" or "unix" for the peer (or local end with uw_net_sock_name). */
void uw_net_peer_name(int fd, char *buf, size_t len);
void uw_net_sock_name(int fd, char *buf, size_t len);

/* The peer's IP address without the port, IPv4-mapped IPv6 (::ffff:a.b.c.d) as IPv4: writes
 * its 4 or 16 bytes to addr and its text ("10.0.0.1", "2001:db8::1") to name, and returns 4 or
 * 16. Returns 0 (name "local") for a peer without an IP address: unix sockets, socketpairs. */
size_t uw_net_peer_addr(int fd, uint8_t addr[16], char *name, size_t len);

/* Send/receive exactly n bytes on a socket, within timeout_ms for the whole transfer.
 * Returns 0, UW_E_CLOSED (peer closed before n bytes), UW_E_TIMEOUT or UW_E_IO. */
int uw_net_send_all(int fd, const void *buf, size_t n, int timeout_ms);
int uw_net_recv_all(int fd, void *buf, size_t n, int timeout_ms);

#endif /* UW_NET_H */
