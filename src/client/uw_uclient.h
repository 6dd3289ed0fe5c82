/* SPDX-License-Identifier: MIT */
/*
 * uw_uclient.h - drive a remote USB device from userspace over USB/IP, with no kernel support:
 * import it, submit URBs asynchronously with many in flight, unlink them, close.
 *
 * Single-threaded and poll-driven: uw_uclient_poll() sends what was submitted (many requests per
 * write) and reads replies (many per read), calling each request's callback on the caller's
 * thread. Everything the server sends is validated as the server validates clients
 * (uw_ret_decode(): seqnums, lengths, ISO layouts); a violation ends the connection with a
 * message (uw_uclient_error()). SET_ADDRESS is completed locally, as Linux vhci does.
 */
#ifndef UW_UCLIENT_H
#define UW_UCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uw_addr.h"
#include "uw_wire.h"

typedef struct uw_uclient uw_uclient;
typedef struct uw_ureq uw_ureq;

/* ISO packet as the caller sees it (host order). */
typedef struct uw_upkt {
	uint32_t offset;
	uint32_t length;
	uint32_t actual_length;
	int32_t status;
} uw_upkt;

struct uw_ureq {
	/* ---- Request: set before uw_uclient_submit(); the buffer stays the caller's ---- */
	uint8_t ep;     /* endpoint number 0..15 */
	uint8_t dir;    /* UW_DIR_IN / UW_DIR_OUT; for control, from setup.bm_request_type */
	uint8_t xfer;   /* enum uw_xfer: decides ISO framing */
	uint32_t flags; /* UW_URB_* (UW_URB_DIR_IN is set for IN automatically) */
	uw_setup setup; /* control only */
	uint8_t *buf;   /* len bytes: OUT data or room for IN data */
	uint32_t len;
	int32_t interval; /* interrupt/ISO: the client's bInterval value (> 0) */
	uint32_t num_iso; /* ISO: packets; iso[] holds offset and length of each */
	uw_upkt *iso;
	void (*cb)(uw_ureq *r); /* called once from uw_uclient_poll() or uw_uclient_close() */
	void *user;

	/* ---- Result: valid in the callback ---- */
	int32_t status;  /* 0, a negative Linux errno from the server, or -ECONNRESET if unlinked;
	                    UW_URB_ESHUTDOWN if the connection ended first */
	uint32_t actual; /* bytes transferred (IN data is in buf; ISO data re-spread to offsets) */
	int32_t error_count;

	/* ---- Private ---- */
	uint32_t seqnum;
	uint8_t *wire_iso; /* ISO descriptors as sent */
	uw_ureq *next;
	uw_ureq *hnext;
	bool sent;
	bool unlinked;
};

/**
 * uw_uclient_open() - connect to addr (any kind of uw_addr.h), import busid. Returns 0 and *out, or
 * a negative uw_err with the reason in err (connection refused, ST_DEV_BUSY "Device busy
 * (exported)", ...). *dev (optional) receives the server's device record.
 */
int uw_uclient_open(const uw_addr *addr, const char *busid, int timeout_ms, uw_uclient **out,
                    uw_usb_device *dev, char *err, size_t errlen);

/** uw_uclient_from_fd() - use an already imported connection (fd is taken). */
uw_uclient *uw_uclient_from_fd(int fd, const uw_usb_device *dev);

/** uw_uclient_submit() - queue r; its callback runs from a later uw_uclient_poll(). Returns 0,
 * UW_E_INVAL (a request the protocol cannot carry), or UW_E_CLOSED. */
int uw_uclient_submit(uw_uclient *c, uw_ureq *r);

/** uw_uclient_unlink() - ask the server to cancel r (submitted, not yet completed). Its
 * callback still runs exactly once. Returns 0, UW_E_NOTFOUND (not pending), UW_E_STATE (already
 * unlinked) or UW_E_NOMEM. */
int uw_uclient_unlink(uw_uclient *c, uw_ureq *r);

/**
 * uw_uclient_poll() - send what is queued and handle replies until at least one request
 * completed or timeout_ms passed (0: do what is possible now; -1: wait). Returns the number of
 * callbacks run, or a negative uw_err once the connection failed (see uw_uclient_error()).
 */
int uw_uclient_poll(uw_uclient *c, int timeout_ms);

/** uw_uclient_pending() - requests submitted and not completed. */
unsigned uw_uclient_pending(const uw_uclient *c);

/** uw_uclient_error() - why the connection failed, or "" if it has not. */
const char *uw_uclient_error(const uw_uclient *c);

/** uw_uclient_close() - close; every request still pending completes with UW_URB_ESHUTDOWN. */
void uw_uclient_close(uw_uclient *c);

/* ---- Synchronous helpers (poll until done) ---- */

/** A control transfer. Returns the bytes transferred (>= 0) or a negative Linux errno / uw_err
 * (the connection failed: see uw_uclient_error()). */
int uw_uclient_control(uw_uclient *c, uint8_t bm_request_type, uint8_t b_request, uint16_t w_value,
                       uint16_t w_index, void *data, uint16_t w_length, int timeout_ms);

/** A bulk or interrupt transfer on ep with direction dir. Returns as uw_uclient_control(). */
int uw_uclient_transfer(uw_uclient *c, uint8_t ep, uint8_t dir, uint8_t xfer, void *data,
                        uint32_t len, int timeout_ms);

#endif /* UW_UCLIENT_H */
