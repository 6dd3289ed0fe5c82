/* SPDX-License-Identifier: MIT */
/*
 * uw_addr.h - the one address syntax of every usbwire command, and the stream sockets behind it.
 *
 *   HOST, HOST:PORT, [IPV6]:PORT, tcp:HOST:PORT   TCP (default port 3240; an empty HOST in a
 *                                                 listen address means every local address)
 *   unix:PATH                                     a unix stream socket
 *   vsock:CID:PORT                                AF_VSOCK; CID "any" when listening
 *   fc-vsock:PATH:PORT                            Firecracker's hybrid vsock: connect to the unix
 *                                                 socket PATH, send "CONNECT PORT\n", expect
 *                                                 "OK ...\n"; listening: the unix socket
 *                                                 PATH_PORT, where Firecracker delivers guest
 *                                                 connections to host port PORT
 *
 * uw_addr_parse() is pure (no I/O, no name resolution): it only checks the syntax.
 */
#ifndef UW_ADDR_H
#define UW_ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
	UW_ADDR_TCP,
	UW_ADDR_UNIX,
	UW_ADDR_VSOCK,
	UW_ADDR_FC_VSOCK,
} uw_addr_kind;

/* The largest path a sockaddr_un holds (108 bytes with its NUL on Linux). */
#define UW_ADDR_PATH_MAX 108
/* CID of "vsock:any:PORT" (VMADDR_CID_ANY). */
#define UW_ADDR_CID_ANY  0xffffffffu

typedef struct {
	uw_addr_kind kind;
	char host[256];              /* TCP: a name or a literal without brackets; "" = any */
	char path[UW_ADDR_PATH_MAX]; /* UNIX, FC_VSOCK: the socket file */
	uint32_t cid;                /* VSOCK */
	uint32_t port;               /* TCP: 1..65535; VSOCK, FC_VSOCK: 0..0xfffffffe */
} uw_addr;

/**
 * uw_addr_parse() - parse one address (see above). listen: an address to listen on (TCP's host
 * may then be empty, vsock's CID may be "any"). Returns 0, or UW_E_INVAL with a message naming
 * what is wrong in err.
 */
int uw_addr_parse(const char *s, bool listen, uw_addr *a, char *err, size_t errlen);

/* "127.0.0.1:3240", "[::1]:3240", "unix:/run/usbwire.sock", "vsock:2:3240",
 * "fc-vsock:/tmp/v.sock:5000". */
void uw_addr_format(const uw_addr *a, char *buf, size_t len);

/**
 * uw_addr_connect() - a connected, blocking stream socket to a within timeout_ms (TCP: every
 * address of a name in turn; fc-vsock: the CONNECT handshake done). Returns 0 and *fd, or a
 * negative uw_err with a message in err that says what failed: UW_E_NOTFOUND (unknown host, no
 * such socket file), UW_E_ACCESS, UW_E_REFUSED, UW_E_TIMEOUT, UW_E_NOTSUP (vsock not in this
 * kernel, with the modules to load), UW_E_PROTO (Firecracker did not answer OK), UW_E_IO.
 */
int uw_addr_connect(const uw_addr *a, int timeout_ms, int *fd, char *err, size_t errlen);

/**
 * uw_addr_listen() - non-blocking, close-on-exec listening sockets for a (TCP: see
 * uw_net_listen; unix: the socket file is created with mode 0660, replacing a stale socket
 * file that nothing listens on, never another kind of file). Up to max fds into fds, the count
 * into *n. Returns 0 or a negative uw_err with a message in err.
 */
int uw_addr_listen(const uw_addr *a, int *fds, size_t max, size_t *n, char *err, size_t errlen);

/* The socket file a listening address created (unix:, fc-vsock:), to remove at exit: writes it
 * to buf and returns true; false for TCP and vsock. */
bool uw_addr_listen_path(const uw_addr *a, char *buf, size_t len);

/**
 * uw_addr_fc_reply() - check Firecracker's answer to CONNECT: one line, "OK" then a space and
 * the host-side port, then "\n". line holds len bytes without the newline. Returns 0 or
 * UW_E_PROTO with the reason (the peer's words escaped) in err. Pure; fuzzed.
 */
int uw_addr_fc_reply(const char *line, size_t len, char *err, size_t errlen);

#endif /* UW_ADDR_H */
