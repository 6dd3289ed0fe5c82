/* SPDX-License-Identifier: MIT */
/*
 * uw_emu.h - the framework every emulated device is built on.
 *
 * A device class supplies its descriptors and handles its own class/vendor requests and data
 * endpoints; the framework is the USB device around it: it answers the standard requests
 * (GET_DESCRIPTOR incl. strings, qualifier and other-speed, GET/SET_CONFIGURATION,
 * GET/SET_INTERFACE, GET_STATUS, SET/CLEAR_FEATURE with per-endpoint halt, SET_ADDRESS), keeps
 * the endpoint table for framing, fails URBs to halted or missing endpoints, and presents the
 * whole as a uw_dev (uw_dev.h). All calls are on the loop thread, except uw_urb_complete() which
 * a class may call from a worker thread.
 */
#ifndef UW_EMU_H
#define UW_EMU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "uw_dev.h"
#include "uw_log.h"

typedef struct uw_emu uw_emu;

/* Return values of uw_emu_class.control() besides ">= 0: bytes of the data stage". Any other
 * negative value is taken as a URB status (a UW_URB_E* value below -2, e.g. UW_URB_EIO). */
enum {
	UW_EMU_STALL = -1, /* not supported: the framework completes the URB with -EPIPE */
	UW_EMU_ASYNC = -2, /* the class took the URB and completes it later itself */
};

struct uw_emu_class {
	const char *kind; /* "storage", "keyboard", ... */
	/* A control request the framework does not handle itself: class and vendor requests, and
	 * standard requests to an interface (e.g. HID GET_DESCRIPTOR of the report descriptor).
	 * For IN, write at most u->len bytes to u->buf and return how many; for OUT the data stage
	 * is in u->buf (u->len bytes) - return u->len to accept it. Or UW_EMU_STALL / UW_EMU_ASYNC.
	 */
	int (*control)(uw_emu *e, uw_urb *u);
	/* A bulk, interrupt or isochronous URB to an endpoint of the current configuration that is
	 * not halted. The class owns u until it completes it with uw_urb_complete(). */
	void (*transfer)(uw_emu *e, uw_urb *u);
	/* Cancel u, which the class owns (see uw_dev.h cancel()). */
	void (*cancel)(uw_emu *e, uw_urb *u);
	/* The configuration changed (0: unconfigured), an interface changed its alternate setting,
	 * or the device was reset (session end: config 0). Complete any URBs the class holds for
	 * endpoints that no longer exist with UW_URB_ESHUTDOWN. Optional. */
	void (*configure)(uw_emu *e, uint8_t config);
	void (*set_alt)(uw_emu *e, uint8_t iface, uint8_t alt);
	/* CLEAR_FEATURE(ENDPOINT_HALT) on ep_addr (number | 0x80 for IN) - a BOT reset recovery
	 * step, for instance. Optional. */
	void (*clear_halt)(uw_emu *e, uint8_t ep_addr);
	/* A client imports the device; the framework has reset it to unconfigured. Return 0, or a
	 * uw_err to refuse the import. Optional. */
	int (*import)(uw_emu *e);
	/* The session ended (after configure(e, 0)); drop per-session state. Optional. */
	void (*release)(uw_emu *e);
	/* Free the class's state (the framework frees itself). The framework has called
	 * configure(e, 0) first if the device was configured; complete anything still held.
	 * Optional. */
	void (*destroy)(uw_emu *e);
};

/* Everything that describes the device to the host. All bytes are copied. */
struct uw_emu_desc {
	const uint8_t *device; /* 18-byte device descriptor */
	const uint8_t *config; /* one configuration descriptor with everything under it */
	size_t config_len;
	/* String descriptors by index (1..n-1) as UTF-8; index 0 (LANGIDs) is US English. */
	const char *const *strings;
	size_t num_strings;
	uint32_t speed; /* enum uw_speed the device runs at */
	/* BOS descriptor (GET_DESCRIPTOR(BOS) stalls without one); bcdUSB >= 0x0201 wants one. */
	const uint8_t *bos;
	size_t bos_len;
};

/**
 * uw_emu_new() - create an emulated device. desc is validated (a malformed descriptor set is a
 * programming error reported as UW_E_DESC). busid names it on the wire ("99-1"); spec is how it
 * was exported, for logs. The class's private state is class_priv. Returns 0 and *out (the
 * uw_dev, freed by its ops->destroy), or a negative uw_err.
 */
int uw_emu_new(const struct uw_emu_class *cls, const struct uw_emu_desc *desc, const char *busid,
               uint32_t busnum, uint32_t devnum, const char *spec, void *class_priv, uw_loop *loop,
               uw_dev **out);

/* The class's state, given at creation. */
void *uw_emu_priv(const uw_emu *e);
/* The uw_dev of an emulated device, and back. */
uw_dev *uw_emu_dev(uw_emu *e);
uw_emu *uw_emu_from_dev(uw_dev *d);
/* Current configuration value (0: unconfigured) and an interface's alternate setting. */
uint8_t uw_emu_config(const uw_emu *e);
uint8_t uw_emu_alt(const uw_emu *e, uint8_t iface);
/* Halt (stall) an endpoint, as a device does on a BOT phase error; URBs to it then fail with
 * -EPIPE until the host clears the halt. ep_addr = number | 0x80 for IN. */
void uw_emu_set_halt(uw_emu *e, uint8_t ep_addr);
bool uw_emu_halted(const uw_emu *e, uint8_t ep_addr);
/* wMaxPacketSize of an endpoint of the current configuration (0 if none). */
uint16_t uw_emu_maxpacket(const uw_emu *e, uint8_t ep_addr);

/**
 * uw_emu_complete() - complete u as uw_urb_complete() does, applying UW_URB_SHORT_NOT_OK: an IN
 * transfer that succeeds with fewer than u->len bytes completes with UW_URB_EREMOTEIO (what a
 * host controller reports; usbtest relies on it). Classes should complete through this.
 */
void uw_emu_complete(uw_urb *u, int32_t status, uint32_t actual);

/* A FIFO of URBs a class holds (pending interrupt IN, OUT waiting for room, ...), linked through
 * u->backend, which is the class's while it owns the URB. Caller storage; zero-initialise. */
typedef struct uw_emu_urbq {
	uw_urb *head, *tail;
	size_t n;
} uw_emu_urbq;

void uw_emu_urbq_push(uw_emu_urbq *q, uw_urb *u);
/* The oldest URB, removed, or NULL. */
uw_urb *uw_emu_urbq_pop(uw_emu_urbq *q);
/* Remove u if it is queued; returns whether it was (cancel() uses it to complete u once). */
bool uw_emu_urbq_remove(uw_emu_urbq *q, uw_urb *u);
/* Complete every queued URB with status (0 bytes), oldest first. Reentrancy-safe: a done()
 * callback may push onto q; those are completed too. */
void uw_emu_urbq_flush(uw_emu_urbq *q, int32_t status);

/* A serial number for a device: stable for the same inputs, different across busids and specs
 * (hex digits; out holds at least 17 bytes). */
void uw_emu_serial(const char *busid, const char *spec, char out[17]);

/* ---- Creating devices from export specs ("emu:storage,file=disk.img,ro") ---------------- */

/* What a device constructor gets. */
typedef struct uw_emu_args {
	const char *spec;  /* the whole spec, for logs */
	const char *kind;  /* "storage" */
	const char *busid; /* "99-1" */
	uint32_t busnum;
	uint32_t devnum;
	uw_loop *loop;
	const uw_logger *log;
	/* Options after the kind, split at commas: "file=disk.img" -> key "file", value
	 * "disk.img"; a bare flag "ro" has value "". */
	size_t num_opts;
	const char *keys[16];
	const char *values[16];
	/* Where a constructor explains a failure to the user ("emu:storage: cannot open
	 * disk.img: No such file or directory"). */
	char *err;
	size_t errlen;
} uw_emu_args;

/* The value of option key ("" for a flag), or NULL if absent. */
const char *uw_emu_opt(const uw_emu_args *a, const char *key);
/* UW_OK if every option is in allowed (NULL-terminated); else UW_E_INVAL and a message in
 * a->err naming the unknown option and the allowed ones. */
int uw_emu_check_opts(const uw_emu_args *a, const char *const *allowed);

/* Opens a file an option names (input=, output=) the way every emulated device does: never
 * through a symbolic link in its last component (O_NOFOLLOW), never as a controlling terminal,
 * without waiting (O_NONBLOCK: a FIFO without a peer cannot hang the server; the caller may
 * clear it), close-on-exec; a file that flags' O_CREAT creates gets mode 0600. *st is fstat of
 * the opened descriptor: check the type there, never on the path, which may change at any time.
 * Returns the descriptor, or -1 with errno set. */
int uw_emu_open_file(const char *path, int flags, struct stat *st);
/* What is at path now, for a message after uw_emu_open_file failed with err or opened the
 * wrong type (st, or NULL): "a symbolic link (never followed)", "a directory", "a socket", ...
 * or NULL when that is not the reason (then strerror(err) is). */
const char *uw_emu_file_kind(const char *path, int err, const struct stat *st);

/* Writes a constructor's one-line explanation of a failure into a->err (if there is one). */
__attribute__((format(printf, 2, 3))) void uw_emu_set_err(const uw_emu_args *a, const char *fmt,
                                                          ...);

/* A device constructor: returns 0 and *out, or a negative uw_err with a message in a->err. */
typedef int (*uw_emu_ctor)(const uw_emu_args *a, uw_dev **out);

/**
 * uw_emu_create() - create the emulated device a spec names. spec is "emu:KIND[,OPT...]".
 * Returns 0 and *out, or a negative uw_err with a one-line explanation in err (unknown kind ->
 * the list of kinds; bad options -> which and why).
 */
int uw_emu_create(const char *spec, const char *busid, uint32_t busnum, uint32_t devnum,
                  uw_loop *loop, const uw_logger *log, uw_dev **out, char *err, size_t errlen);

/* The kinds, for help texts: NULL-terminated "kind" and "usage" arrays. */
struct uw_emu_kind {
	const char *kind;
	const char *usage; /* "emu:storage,file=IMG[,ro]" */
	const char *help;  /* one line */
	uw_emu_ctor ctor;
};
extern const struct uw_emu_kind uw_emu_kinds[];

/* The constructors (one file each in src/emu). */
int uw_emu_storage_new(const uw_emu_args *a, uw_dev **out);
/* For the session fuzzer: emu:storage does its medium I/O on the loop thread, inside the
 * state machine, instead of on its worker thread, so that a run depends on its input only. The
 * results still arrive a loop round later, through the same path. Off by default. */
void uw_emu_storage_inline_io(bool on);
int uw_emu_keyboard_new(const uw_emu_args *a, uw_dev **out);
int uw_emu_serial_new(const uw_emu_args *a, uw_dev **out);
int uw_emu_sink_new(const uw_emu_args *a, uw_dev **out);
int uw_emu_audio_new(const uw_emu_args *a, uw_dev **out);

#endif /* UW_EMU_H */
