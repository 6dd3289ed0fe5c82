/* SPDX-License-Identifier: MIT */
/*
 * uw_dialer.h - reverse connections (`usbwire serve --connect ADDR`): the server dials out and
 * serves over the connection exactly as if the client had dialed; the client still sends
 * OP_REQ_DEVLIST or OP_REQ_IMPORT. For devices behind NAT, on laptops, in CI runners: the side
 * with the devices cannot be reached, so it reaches out.
 *
 * The dialer keeps one idle connection (dialed, waiting for the client's request) per exported
 * device that nobody holds. A connection that imports a device becomes an ordinary session; one
 * that ends without an import (a device list, a refusal, a peer that went away) is redialed after
 * a delay that doubles up to a minute, and so is the device a short session released (a session
 * of 30 s or more starts the delay over at one second). Connecting (name resolution,
 * connect, Firecracker's handshake) runs on a thread of its own, so a peer that is down or slow
 * never stalls the loop. Everything else runs on the loop thread.
 */
#ifndef UW_DIALER_H
#define UW_DIALER_H

#include "uw_addr.h"
#include "uw_log.h"
#include "uw_loop.h"
#include "uw_server.h"

typedef struct uw_dialer uw_dialer;

/* A dialer for addr on srv, idle until uw_dialer_changed(). NULL when out of memory or no
 * thread could be started. */
uw_dialer *uw_dialer_new(uw_loop *loop, uw_server *srv, const uw_addr *addr, uw_logger log);

/* The server's device list changed (its on_change): dial what is missing. Loop thread. */
void uw_dialer_changed(uw_dialer *d);

/* No more dials (shutdown). Loop thread. */
void uw_dialer_stop(uw_dialer *d);

/* Frees the dialer: after uw_server_free() and after the loop stopped. */
void uw_dialer_free(uw_dialer *d);

#endif /* UW_DIALER_H */
