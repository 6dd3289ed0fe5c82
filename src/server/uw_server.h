/* SPDX-License-Identifier: MIT */
/*
 * uw_server.h - the USB/IP server: exported devices, listening sockets, sessions.
 *
 * One thread runs everything (the uw_loop); device backends may complete URBs on other threads.
 * A session reads OP_REQ_DEVLIST or OP_REQ_IMPORT, and after a successful import carries URBs
 * between the client and the device: many in flight, replies written as they complete, in one
 * ordered stream per connection, with the unlink rules of docs/protocol.md §4.5.
 */
#ifndef UW_SERVER_H
#define UW_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "uw_dev.h"
#include "uw_log.h"
#include "uw_loop.h"

typedef struct uw_server uw_server;

struct uw_server_config {
	uw_loop *loop;
	uw_logger log;
	unsigned handshake_ms; /* op phase deadline per connection (default 10000) */
	unsigned max_urbs;     /* URBs in flight per session before reading pauses (1024) */
	size_t max_bytes;      /* URB buffer bytes per session before reading pauses (64 MiB) */
	unsigned max_sessions; /* connections at once (256) */
	/* Connections at once from one IP address (16); IPv4-mapped IPv6 counts as its IPv4
	 * address. Peers without an IP address (unix sockets, vsock, socketpairs) are not limited.
	 */
	unsigned max_per_peer;
	/* Deadline for a connection's first byte (3000); none when not below handshake_ms. */
	unsigned first_byte_ms;
	/* Refusals and accept() failures: the first is logged, the rest are counted and logged
	 * as one line per interval of this length (10000). */
	unsigned log_interval_ms;
	/* Optional: called on the loop, from a task of its own (never from inside a server call),
	 * after devices were added, removed, imported or released; several changes may come as
	 * one call. For what follows the device list: reverse connections, announcements. */
	void (*on_change)(void *arg);
	void *on_change_arg;
};

/** uw_server_new() - a server on cfg->loop. Returns NULL on allocation failure. */
uw_server *uw_server_new(const struct uw_server_config *cfg);

/**
 * uw_server_add_device() - export d. The server takes ownership (ops->destroy at free) and sets
 * d->notify/d->owner. Busids must be unique: returns UW_E_EXISTS otherwise, UW_OK on success.
 */
int uw_server_add_device(uw_server *s, uw_dev *d);

/**
 * uw_server_remove_device() - d left (unplugged): its session, if any, ends after the replies of
 * its outstanding URBs; d is then destroyed (ops->destroy), at once if nobody imported it. Its
 * busid is free for a new device from now on. Returns UW_OK, or UW_E_NOTFOUND if d is not
 * exported here.
 */
int uw_server_remove_device(uw_server *s, uw_dev *d);

/**
 * uw_server_add_listener() - accept connections on fd (takes ownership). Returns 0 or uw_err.
 * Connections over max_sessions or max_per_peer are closed at once. When accept() runs out of
 * file descriptors (EMFILE, ENFILE), the listeners are not watched until a session ends or a
 * second has passed: the connections wait in the kernel's backlog.
 */
int uw_server_add_listener(uw_server *s, int fd);

/**
 * uw_server_add_connection() - serve a connected stream socket (TCP, unix socketpair, vsock...)
 * as if it had been accepted; takes ownership of fd, which must be non-blocking. Returns 0 or a
 * negative uw_err (fd closed).
 */
int uw_server_add_connection(uw_server *s, int fd);

enum uw_conn_event {
	UW_CONN_IMPORTED, /* the connection imported a device: it is a session now */
	UW_CONN_CLOSED,   /* the connection is gone (after its last reply) */
};
/* A watch on one connection. Called on the loop thread from inside the server: it must not call
 * the server (post a loop task for that). CLOSED is the last call; uw_server_free() calls none
 * (the owner of arg frees it then). */
typedef void (*uw_conn_watch)(void *arg, enum uw_conn_event ev);

/**
 * uw_server_add_connection_watched() - for a connection this server dialed itself (a reverse
 * connection): served like uw_server_add_connection(), but with no handshake or first-byte
 * deadline and outside the per-peer cap, and fn(arg, ...) is called when the connection
 * imports a device and when it closes. On failure (fd closed, an error returned) fn is not
 * called.
 */
int uw_server_add_connection_watched(uw_server *s, int fd, uw_conn_watch fn, void *arg);

/**
 * uw_server_shutdown() - stop accepting, end every session (cancel URBs in flight), and call
 * done(arg) on the loop once every device has been released, or after timeout_ms at most.
 */
void uw_server_shutdown(uw_server *s, unsigned timeout_ms, uw_task_fn done, void *arg);

/** uw_server_free() - close everything and destroy the devices. Call after the loop stopped. */
void uw_server_free(uw_server *s);

/* Counters, for logs and tests. */
struct uw_server_stats {
	unsigned sessions;        /* open now */
	unsigned devices;         /* exported now (not gone) */
	unsigned imported;        /* devices imported now (of those exported) */
	uint64_t accepted;        /* connections ever */
	uint64_t protocol_errors; /* connections closed for bad input */
	uint64_t refused;         /* connections closed at once: over a limit, shutting down */
	uint64_t urbs;            /* URBs completed */
};
void uw_server_get_stats(const uw_server *s, struct uw_server_stats *out);

#endif /* UW_SERVER_H */
