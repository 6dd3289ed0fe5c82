/* SPDX-License-Identifier: MIT */
/*
 * uw_usbhost.h - real USB devices through libusb, as uw_dev backends (uw_dev.h), with export
 * rules that follow hot-plug.
 *
 * One uw_usbhost owns a libusb context (no default context, no device discovery by libusb) and
 * runs it on the uw_loop's thread: libusb's file descriptors are watched by the loop and its
 * events handled with a zero timeout there, so every transfer callback - and so every URB
 * completion - happens on the loop thread, without locks. The blocking libusb calls (port
 * reset, SET_CONFIGURATION, SET_INTERFACE, CLEAR_HALT, the reset after a session) run on a
 * worker thread per device, their results handed back to the loop (uw_hworker.h). Devices are
 * found in sysfs and followed through the kernel's uevents (no udev needed); a device is opened
 * (/dev/bus/usb/BBB/DDD, handed to libusb with libusb_wrap_sys_device), its kernel drivers detached
 * and its interfaces claimed only when a client imports it, and given back (interfaces released,
 * device reset as the kernel stub does, kernel drivers re-attached) after the session.
 *
 * Threads: every function here must be called on the loop thread (the one running uw_loop_run),
 * or before the loop runs / after it stopped.
 */
#ifndef UW_USBHOST_H
#define UW_USBHOST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uw_dev.h"
#include "uw_log.h"
#include "uw_loop.h"

typedef struct uw_usbhost uw_usbhost;

struct uw_usbhost_config {
	uw_loop *loop;
	uw_logger log;
	const char *sysfs; /* NULL: /sys/bus/usb/devices */
	const char *devfs; /* NULL: /dev/bus/usb */
	/* usbcore's usbfs memory limit, read at each import (NULL: the real parameter file) */
	const char *usbfs_memory_mb; /* NULL: /sys/module/usbcore/parameters/usbfs_memory_mb */
	/* A device matched a rule: export it. Return 0 to take ownership of d (its ops->destroy
	 * then frees it), or a negative uw_err (the backend destroys d itself). */
	int (*add)(void *user, uw_dev *d);
	/* d was unplugged. The owner ends its session (outstanding URBs complete with errors from
	 * the backend) and calls d->ops->destroy once it is done with d. */
	void (*remove)(void *user, uw_dev *d);
	void *user;
};

/**
 * uw_usbhost_new() - a libusb context on cfg->loop. Returns UW_OK and sets *out, or UW_E_NOMEM,
 * UW_E_IO (libusb could not start; the reason is in err[0..errlen)).
 */
int uw_usbhost_new(const struct uw_usbhost_config *cfg, uw_usbhost **out, char *err, size_t errlen);

/**
 * uw_usbhost_add_rule() - export devices matching spec, "usb:BUSID" or "usb:VID:PID[:SERIAL]",
 * now and whenever they are plugged in. Returns UW_OK, or UW_E_INVAL with the reason in err.
 */
int uw_usbhost_add_rule(uw_usbhost *h, const char *spec, char *err, size_t errlen);

/**
 * uw_usbhost_start() - scan sysfs (cfg->add for every matching device) and listen to kernel
 * uevents for hot-plug. Returns UW_OK, or UW_E_IO when neither sysfs nor the uevent socket is
 * usable (reason in err); a missing uevent socket alone is logged and not fatal.
 */
int uw_usbhost_start(uw_usbhost *h, char *err, size_t errlen);

/**
 * uw_usbhost_free() - stop listening, finish the teardown of destroyed devices, close libusb.
 * Call after every device given to cfg->add was destroyed (i.e. after the server is freed).
 */
void uw_usbhost_free(uw_usbhost *h);

/* ---- Translations between libusb and USB/IP, exposed for unit tests ------------------------ */

/** URB status (0 or a negative Linux errno) of a finished libusb transfer of type xfer (enum
 * uw_xfer). unlinked: the client's CMD_UNLINK cancelled it (else a cancel means the device or
 * its configuration went away). */
int32_t uw_usbhost_urb_status(int libusb_transfer_status, bool unlinked);
/** Per-packet ISO status (0 or a negative Linux errno) of a libusb ISO packet status. */
int32_t uw_usbhost_iso_status(int libusb_transfer_status);
/** URB status for a libusb error (enum libusb_error) returned by a submit or a synchronous call
 * done for a special request. */
int32_t uw_usbhost_error_status(int libusb_error);

/**
 * uw_usbhost_device_budget() - bytes of usbfs memory the URBs of one device may hold at once,
 * when usbfs allows usbfs_total bytes to all its users together (usbcore's usbfs_memory_mb; 0 is
 * no limit, and so is the answer 0): a quarter, so that one client parking URBs on a quiet
 * endpoint cannot starve the other devices, but never less than UW_USBHOST_MIN_BUDGET.
 */
#define UW_USBHOST_MIN_BUDGET (256u << 10)
uint64_t uw_usbhost_device_budget(uint64_t usbfs_total);
/** What one URB of len bytes costs in usbfs memory (the kernel's bookkeeping included). */
uint64_t uw_usbhost_urb_cost(uint32_t len);
/** Whether a URB costing cost fits a device holding in_use of its budget (0: no limit). A URB
 * that does not fit waits for earlier ones, or, alone, goes in pieces (bulk) or fails -ENOMEM. */
bool uw_usbhost_fits(uint64_t in_use, uint64_t cost, uint64_t budget);

/* What the backend does with a control request (docs/protocol.md, "Special requests"). */
enum uw_usbhost_special {
	UW_SP_FORWARD,    /* sent to the device as it is */
	UW_SP_SET_CONFIG, /* done by usbfs: libusb_set_configuration, interfaces claimed again */
	UW_SP_SET_IFACE,  /* done by usbfs: libusb_set_interface_alt_setting */
	UW_SP_CLEAR_HALT, /* done by usbfs: libusb_clear_halt (the host's toggle too) */
	UW_SP_PORT_RESET, /* done by usbfs: libusb_reset_device */
	UW_SP_ADDRESS,    /* SET_ADDRESS: answered 0, never sent (the client's own business) */
	UW_SP_REFUSE      /* never sent: fails with -EPIPE, as a device stalls a request */
};
/** How the backend classifies the control request s (enum uw_usbhost_special). */
int uw_usbhost_special_kind(const uw_setup *s);

/**
 * uw_usbhost_iso_layout() - check packets p[0..n) against a buffer of len bytes (offset + length
 * within it, lengths <= UW_MAX_ISO_PACKET_LEN) and say whether they already sit where libusb
 * puts them (packet i at the sum of the lengths before it). Returns the sum of the lengths
 * (libusb's buffer size) with *contiguous set, or -1 if a packet is out of bounds.
 */
int64_t uw_usbhost_iso_layout(const uw_iso_pkt *p, uint32_t n, uint32_t len, bool *contiguous);
/** OUT: copy each packet from buf + offset to its contiguous place in dst (libusb's buffer). */
void uw_usbhost_iso_gather(const uw_iso_pkt *p, uint32_t n, const uint8_t *buf, uint8_t *dst);
/** IN: copy actual_length bytes of each packet from its contiguous place in src (libusb's
 * buffer) to buf + offset, where the server's compaction expects them. */
void uw_usbhost_iso_scatter(const uw_iso_pkt *p, uint32_t n, const uint8_t *src, uint8_t *buf);

#endif /* UW_USBHOST_H */
