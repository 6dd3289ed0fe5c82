/* SPDX-License-Identifier: MIT */
/*
 * uw_dev.h - the one interface behind which every exportable device lives: emulated devices
 * (src/emu) and real devices through libusb alike, chosen at run time.
 *
 * The contract (the server relies on every line of it):
 *  - The server calls ops on the loop thread. A backend may complete URBs on any thread.
 *  - Every URB passed to submit() is completed exactly once, by uw_urb_complete(), either inside
 *    submit() or later. Until then the backend owns it; afterwards it must not touch it.
 *  - cancel() asks for an early completion: the backend completes the URB soon (it may do so
 *    inside cancel()) with UW_URB_ECONNRESET if it was cancelled before it finished, or with its
 * real result if it had already finished. cancel() of a URB that is completing is harmless.
 *  - release() is called after the session ended and every URB it submitted has completed.
 */
#ifndef UW_DEV_H
#define UW_DEV_H

#include <stdbool.h>
#include <stdint.h>

#include "uw_loop.h"
#include "uw_wire.h"

typedef struct uw_dev uw_dev;
typedef struct uw_urb uw_urb;

/* One isochronous packet, host byte order. For IN, the backend writes the packet's data at
 * buf + offset and sets actual_length; the server compacts when it sends. */
typedef struct uw_iso_pkt {
	uint32_t offset;
	uint32_t length;
	uint32_t actual_length;
	int32_t status;
} uw_iso_pkt;

struct uw_urb {
	/* ---- The request: set by the server before submit(), read-only to the backend ---- */
	uint32_t seqnum;
	uint8_t ep;     /* endpoint number 0..15 */
	uint8_t dir;    /* UW_DIR_IN or UW_DIR_OUT (from the header; for control see setup) */
	uint8_t xfer;   /* enum uw_xfer */
	uint32_t flags; /* UW_URB_* transfer flags as sent by the client */
	uw_setup setup; /* control transfers: the decoded SETUP packet */
	uint8_t *buf;   /* len bytes: OUT data, or room for IN data; NULL when len is 0 */
	uint32_t len;
	int32_t start_frame;
	int32_t interval;
	uint32_t num_iso;
	uw_iso_pkt *iso; /* num_iso packets, or NULL */

	/* ---- The result: written by the backend before uw_urb_complete() ---- */
	int32_t status;  /* 0 or a negative Linux errno (UW_URB_E*) */
	uint32_t actual; /* bytes transferred (ISO: sum of the packets' actual_length) */
	int32_t error_count;

	/* ---- Owners' fields ---- */
	void *backend;           /* free for the backend while it owns the URB */
	void (*done)(uw_urb *u); /* set by the server; called by uw_urb_complete() */
	void *owner;             /* the server's */
};

/* Completes u (exactly once per submit). Thread-safe as the server's done() is. */
static inline void uw_urb_complete(uw_urb *u, int32_t status, uint32_t actual)
{
	u->status = status;
	u->actual = actual;
	u->done(u);
}

struct uw_dev_ops {
	/* A client imports the device. Claim it, reset per-session state. Returns 0, UW_E_BUSY,
	 * UW_E_NODEV, UW_E_DEVERR or another uw_err (-> ST_NA). Optional. */
	int (*import)(uw_dev *d);
	/* Start u. See the contract above. Required. */
	void (*submit)(uw_dev *d, uw_urb *u);
	/* Ask for u's early completion. Required. */
	void (*cancel)(uw_dev *d, uw_urb *u);
	/* Transfer type (enum uw_xfer) of endpoint number ep, direction dir, in the current
	 * configuration and alternate settings; UW_XFER_UNKNOWN if there is none. Called for every
	 * CMD_SUBMIT to frame it: must be cheap. Required. */
	int (*ep_type)(uw_dev *d, unsigned ep, unsigned dir);
	/* The session ended and all its URBs completed; make the device importable again. Optional.
	 */
	void (*release)(uw_dev *d);
	/* Free the backend and d. Required. */
	void (*destroy)(uw_dev *d);
};

/* Events passed to d->notify, which the server sets (uw_server_add_device) and which is called on
 * the loop thread only. Today:
 *  - UW_DEV_EV_INFO: a backend (emulated or libusb) says d->info changed, after a
 *    SET_CONFIGURATION; the server reads d->info whenever it lists or imports the device, so it
 *    ignores the event. A backend may call d->notify only if it is set.
 *  - UW_DEV_EV_GONE: the device left. No backend reports this itself: whoever created the
 *    device and learns of the unplug (cmd_serve, from the libusb backend's hot-plug callback)
 *    calls uw_server_remove_device(), which raises it on the server's side. The backend then
 *    completes the URBs still in the device with errors (-ESHUTDOWN/-ENODEV) as usual, their
 *    replies go out and the session ends. */
enum uw_dev_event {
	UW_DEV_EV_GONE = 1, /* the device left (see above) */
	UW_DEV_EV_INFO = 2, /* d->info changed (configuration); nothing to do but re-read it */
};

struct uw_dev {
	const struct uw_dev_ops *ops;
	uw_loop *loop;      /* the loop the server runs; backends may watch fds on it */
	uw_usb_device info; /* what OP_REP_DEVLIST / OP_REP_IMPORT say about the device */
	uw_usb_interface ifaces[UW_MAX_INTERFACES]; /* info.num_interfaces of them */
	char spec[128]; /* how it was exported, for logs: "emu:storage,file=disk.img" */
	char name[128]; /* human-readable product, for logs and `list` */
	void (*notify)(uw_dev *d, int event); /* set by the server; loop thread only */
	void *owner;                          /* the server's */
	void *priv;                           /* the backend's */
};

#endif /* UW_DEV_H */
