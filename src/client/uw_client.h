/* SPDX-License-Identifier: MIT */
/*
 * uw_client.h - the client side of the op phase: list a server's devices, import one. Blocking,
 * on a connected stream socket, each step bounded by a timeout; every byte from the server is
 * validated by uw_wire.c before it is trusted or sizes anything.
 */
#ifndef UW_CLIENT_H
#define UW_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "uw_wire.h"

typedef struct uw_devlist_entry {
	uw_usb_device dev;
	uw_usb_interface ifaces[UW_MAX_INTERFACES]; /* first min(num_interfaces, 32) */
} uw_devlist_entry;

typedef struct uw_devlist {
	size_t n;
	uw_devlist_entry *devs; /* n entries */
} uw_devlist;

/**
 * uw_client_list() - send OP_REQ_DEVLIST on fd and read the reply. On success *out holds a list
 * the caller frees with uw_devlist_free(). Returns 0, or a negative uw_err with a one-line reason
 * in err (UW_E_CLOSED "server closed the connection without replying", UW_E_TIMEOUT,
 * UW_E_PROTO/UW_E_VERSION/UW_E_LIMIT with the decoder's words).
 */
int uw_client_list(int fd, int timeout_ms, uw_devlist *out, char *err, size_t errlen);
void uw_devlist_free(uw_devlist *l);

/**
 * uw_client_import() - send OP_REQ_IMPORT for busid and read the reply. On success *dev is the
 * server's record (its busid checked equal to the request's) and fd is ready for URBs. A refusal
 * returns UW_E_REFUSED with *st set to the server's ST_* status and its text in err; other
 * failures as for uw_client_list().
 */
int uw_client_import(int fd, const char *busid, int timeout_ms, uw_usb_device *dev, uint32_t *st,
                     char *err, size_t errlen);

#endif /* UW_CLIENT_H */
