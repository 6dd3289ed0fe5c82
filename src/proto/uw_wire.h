/* SPDX-License-Identifier: MIT */
/*
 * uw_wire.h - encoder and incremental decoder for every message of the Linux USB/IP protocol
 * 0x0111 (docs/protocol.md).
 *
 * No I/O, no allocation, no global state: every function works on caller buffers and is
 * thread-safe. Decoders never read outside [buf, buf + len).
 *
 * Decoding is incremental. A decoder is handed whatever bytes have arrived and fills a uw_dec:
 *   UW_DEC_DONE   - a whole message is at the start of the buffer; dec.len bytes belong to it;
 *   UW_DEC_MORE   - not enough bytes yet; at least dec.len more are needed. Everything that was
 *                   present has been validated, so a caller may allocate for what is announced;
 *   UW_DEC_ERROR  - protocol error: dec.err says which kind, dec.what names the field and the rule,
 *                   dec.off is the offset of that field within the message. The stream cannot be
 *                   resynchronised; close the connection.
 * Out-parameters are written only when a decoder returns UW_DEC_DONE.
 */
#ifndef UW_WIRE_H
#define UW_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uw_error.h"
#include "uw_limits.h"

/* ---- Constants ------------------------------------------------------------------------------ */

/* Op codes (op_common.code). Requests have bit 15 set, replies have it clear. */
enum uw_op {
	UW_OP_REQUEST = 0x8000,
	UW_OP_REPLY = 0x0000,
	UW_OP_DEVINFO = 0x02, /* defined by Linux, never used */
	UW_OP_IMPORT = 0x03,
	UW_OP_DEVLIST = 0x05,
	UW_OP_REQ_IMPORT = UW_OP_REQUEST | UW_OP_IMPORT,
	UW_OP_REP_IMPORT = UW_OP_REPLY | UW_OP_IMPORT,
	UW_OP_REQ_DEVLIST = UW_OP_REQUEST | UW_OP_DEVLIST,
	UW_OP_REP_DEVLIST = UW_OP_REPLY | UW_OP_DEVLIST,
};

/* op_common.status of replies (usbip_common.h ST_*). */
enum uw_op_status {
	UW_ST_OK = 0,
	UW_ST_NA = 1,       /* request failed */
	UW_ST_DEV_BUSY = 2, /* device already imported */
	UW_ST_DEV_ERR = 3,  /* device in error state */
	UW_ST_NODEV = 4,    /* busid not exported */
	UW_ST_ERROR = 5,    /* only generated locally by clients: unexpected reply */
};

/* URB-phase commands (usbip_header_basic.command). */
enum uw_urb_cmd {
	UW_CMD_SUBMIT = 1,
	UW_CMD_UNLINK = 2,
	UW_RET_SUBMIT = 3,
	UW_RET_UNLINK = 4,
};

enum uw_dir { UW_DIR_OUT = 0, UW_DIR_IN = 1 };

/* Kernel enum usb_device_speed, as carried in the device record and the vhci attach string. */
enum uw_speed {
	UW_SPEED_UNKNOWN = 0,
	UW_SPEED_LOW = 1,
	UW_SPEED_FULL = 2,
	UW_SPEED_HIGH = 3,
	UW_SPEED_WIRELESS = 4,
	UW_SPEED_SUPER = 5,
	UW_SPEED_SUPER_PLUS = 6,
};

/* USB transfer types, numbered as in bmAttributes & 3 of an endpoint descriptor. */
enum uw_xfer {
	UW_XFER_CONTROL = 0,
	UW_XFER_ISO = 1,
	UW_XFER_BULK = 2,
	UW_XFER_INT = 3,
	UW_XFER_UNKNOWN = 4, /* no such endpoint in the current configuration */
};

/* transfer_flags (include/uapi/linux/usbip.h USBIP_URB_*). */
#define UW_URB_SHORT_NOT_OK        0x00000001u
#define UW_URB_ISO_ASAP            0x00000002u
#define UW_URB_NO_TRANSFER_DMA_MAP 0x00000004u
#define UW_URB_ZERO_PACKET         0x00000040u
#define UW_URB_NO_INTERRUPT        0x00000080u
#define UW_URB_FREE_BUFFER         0x00000100u
#define UW_URB_DIR_IN              0x00000200u
#define UW_URB_DIR_MASK            0x00000200u
#define UW_URB_DMA_MAP_SG          0x00040000u

/* Linux errno values used as URB status on the wire (docs/protocol.md §3.4). They are Linux's
 * numbers whatever the host, so they are spelled out here. */
enum uw_urb_errno {
	UW_URB_OK = 0,
	UW_URB_ENOENT = -2,
	UW_URB_EIO = -5,
	UW_URB_EXDEV = -18,
	UW_URB_ENODEV = -19,
	UW_URB_EINVAL = -22,
	UW_URB_EPIPE = -32,
	UW_URB_ENOSPC = -28,
	UW_URB_EBADR = -53,
	UW_URB_ETIME = -62,
	UW_URB_EPROTO = -71,
	UW_URB_EOVERFLOW = -75,
	UW_URB_EMSGSIZE = -90,
	UW_URB_ECONNRESET = -104,
	UW_URB_ESHUTDOWN = -108,
	UW_URB_ETIMEDOUT = -110,
	UW_URB_EREMOTEIO = -121,
};

/* ---- Decoder result ---------------------------------------------------------------------- */

enum uw_dec_status { UW_DEC_DONE = 0, UW_DEC_MORE = 1, UW_DEC_ERROR = 2 };

typedef struct uw_dec {
	enum uw_dec_status status;
	size_t len;       /* DONE: message length; MORE: minimum number of further bytes needed */
	uw_err err;       /* ERROR: UW_E_PROTO, UW_E_VERSION or UW_E_LIMIT */
	size_t off;       /* ERROR: offset of the offending field from the start of the message */
	const char *what; /* ERROR: static text, "<MESSAGE>.<field>: <rule broken>" */
	int64_t value;    /* ERROR: the offending value, when it is a number */
} uw_dec;

/**
 * uw_dec_format() - render a decoder error as one line for a log, e.g.
 * "protocol error at byte 24: CMD_SUBMIT.transfer_buffer_length: exceeds limit 16777216 (value
 * 4294967295)". Writes at most cap bytes including the NUL. Returns buf.
 */
char *uw_dec_format(const uw_dec *d, char *buf, size_t cap);

/* ---- Op phase ------------------------------------------------------------------------------ */

/* The 8-byte op_common header. */
typedef struct uw_op_common {
	uint16_t version;
	uint16_t code;
	uint32_t status;
} uw_op_common;

/* struct usbip_usb_device: the 312-byte device record. Strings are NUL-terminated. */
typedef struct uw_usb_device {
	char path[UW_PATH_SIZE];
	char busid[UW_BUSID_SIZE];
	uint32_t busnum;
	uint32_t devnum;
	uint32_t speed; /* enum uw_speed */
	uint16_t id_vendor;
	uint16_t id_product;
	uint16_t bcd_device;
	uint8_t device_class;
	uint8_t device_subclass;
	uint8_t device_protocol;
	uint8_t configuration_value;
	uint8_t num_configurations;
	uint8_t num_interfaces;
} uw_usb_device;

/* struct usbip_usb_interface: 4 bytes in OP_REP_DEVLIST (the fourth is padding). */
typedef struct uw_usb_interface {
	uint8_t iface_class;
	uint8_t iface_subclass;
	uint8_t iface_protocol;
} uw_usb_interface;

/* A decoded op-phase request (what a server reads first on a connection). */
typedef struct uw_op_request {
	uint16_t code;             /* UW_OP_REQ_DEVLIST or UW_OP_REQ_IMPORT */
	char busid[UW_BUSID_SIZE]; /* IMPORT only; NUL-terminated, validated */
} uw_op_request;

/**
 * uw_op_request_decode() - decode OP_REQ_DEVLIST (8 bytes) or OP_REQ_IMPORT (40 bytes).
 * Errors: version != 0x0111 (UW_E_VERSION), non-zero status, an unknown or reply code, a busid
 * without NUL in its 32 bytes or empty (UW_E_PROTO). Returns d->status.
 */
enum uw_dec_status uw_op_request_decode(const uint8_t *buf, size_t len, uw_op_request *out,
                                        uw_dec *d);

/**
 * uw_op_rep_import_decode() - decode OP_REP_IMPORT: 8 bytes when status != 0, 320 otherwise.
 * *status receives the reply status; *dev the record (only when the status is UW_ST_OK).
 * Errors: version, a code other than UW_OP_REP_IMPORT, an unknown status (> 5), record strings
 * without NUL, busnum/devnum > 0xffff. Returns d->status.
 */
enum uw_dec_status uw_op_rep_import_decode(const uint8_t *buf, size_t len, uint32_t *status,
                                           uw_usb_device *dev, uw_dec *d);

/**
 * uw_op_rep_devlist_frame() - validate a whole OP_REP_DEVLIST and find its length.
 * Walks every device record (at most UW_MAX_DEVLIST_DEVICES) and interface record; on DONE,
 * *ndev is the device count and the records can be read with uw_devlist_next(). Returns
 * d->status.
 */
enum uw_dec_status uw_op_rep_devlist_frame(const uint8_t *buf, size_t len, uint32_t *ndev,
                                           uw_dec *d);

/**
 * uw_devlist_next() - read the device record at *pos (start with *pos = UW_OP_REP_DEVLIST_HDR)
 * of a list already validated by uw_op_rep_devlist_frame(). Fills *dev and up to max_ifaces
 * interface records (dev->num_interfaces says how many there are), advances *pos past the
 * record and its interfaces. Returns UW_OK, or UW_E_SHORT if the buffer ends first.
 */
int uw_devlist_next(const uint8_t *buf, size_t len, size_t *pos, uw_usb_device *dev,
                    uw_usb_interface *ifaces, size_t max_ifaces);

/* Encoders write exactly the wire bytes. Each returns the number of bytes written, or a negative
 * uw_err: UW_E_SHORT if cap is too small, UW_E_INVAL if a value cannot be represented (a string
 * that does not fit with its NUL, num_interfaces not matching the interfaces given). */
int uw_op_common_encode(uint8_t *buf, size_t cap, uint16_t code, uint32_t status);
int uw_op_req_import_encode(uint8_t *buf, size_t cap, const char *busid);
int uw_op_rep_import_encode(uint8_t *buf, size_t cap, uint32_t status, const uw_usb_device *dev);
int uw_op_rep_devlist_hdr_encode(uint8_t *buf, size_t cap, uint32_t ndev);
/* One device record followed by its dev->num_interfaces interface records. */
int uw_devlist_entry_encode(uint8_t *buf, size_t cap, const uw_usb_device *dev,
                            const uw_usb_interface *ifaces);
/* Size of one device list entry with n interfaces. */
static inline size_t uw_devlist_entry_len(unsigned n)
{
	return UW_DEVREC_LEN + (size_t)n * UW_IFREC_LEN;
}
/* The 312-byte record alone. */
int uw_devrec_encode(uint8_t *buf, size_t cap, const uw_usb_device *dev);
int uw_devrec_decode(const uint8_t *buf, size_t len, uw_usb_device *dev, uw_dec *d);

/* Human-readable text of an op status ("Device busy (exported)"), as the stock tools print it. */
const char *uw_op_status_str(uint32_t status);

/* ---- URB phase ------------------------------------------------------------------------------ */

/* The USB SETUP packet, decoded from its little-endian wire form. */
typedef struct uw_setup {
	uint8_t bm_request_type;
	uint8_t b_request;
	uint16_t w_value;
	uint16_t w_index;
	uint16_t w_length;
} uw_setup;

void uw_setup_decode(const uint8_t raw[UW_SETUP_LEN], uw_setup *out);
void uw_setup_encode(const uw_setup *in, uint8_t raw[UW_SETUP_LEN]);

/* The 48-byte header of any URB-phase message, in host byte order. */
typedef struct uw_urb_hdr {
	uint32_t command; /* enum uw_urb_cmd */
	uint32_t seqnum;
	uint32_t devid;
	uint32_t direction; /* enum uw_dir */
	uint32_t ep;
	union {
		struct {
			uint32_t transfer_flags;
			int32_t transfer_buffer_length;
			int32_t start_frame;
			int32_t number_of_packets;
			int32_t interval;
			uint8_t setup[UW_SETUP_LEN]; /* raw, little-endian fields */
		} submit;
		struct {
			int32_t status;
			int32_t actual_length;
			int32_t start_frame;
			int32_t number_of_packets;
			int32_t error_count;
		} ret;
		struct {
			uint32_t seqnum; /* of the CMD_SUBMIT to cancel */
		} unlink;
		struct {
			int32_t status;
		} ret_unlink;
	} u;
} uw_urb_hdr;

/* One isochronous packet descriptor (16 bytes, big-endian). */
typedef struct uw_iso_desc {
	uint32_t offset;
	uint32_t length;
	uint32_t actual_length;
	int32_t status;
} uw_iso_desc;

/** uw_urb_hdr_encode() - write the 48 bytes of any URB header (padding zero). */
void uw_urb_hdr_encode(const uw_urb_hdr *h, uint8_t out[UW_URB_HDR_LEN]);

/** uw_iso_desc_encode() / _decode() - one 16-byte descriptor. */
void uw_iso_desc_encode(const uw_iso_desc *in, uint8_t out[UW_ISO_DESC_LEN]);
void uw_iso_desc_decode(const uint8_t in[UW_ISO_DESC_LEN], uw_iso_desc *out);

/* Tells a decoder the transfer type of endpoint (ep, direction) of the imported device, which
 * decides whether isochronous descriptors follow. Return enum uw_xfer. */
typedef int (*uw_ep_type_fn)(void *user, uint32_t ep, uint32_t direction);

/* A decoded CMD_SUBMIT or CMD_UNLINK; pointers point into the caller's buffer. */
typedef struct uw_cmd {
	uw_urb_hdr hdr;
	int xfer;            /* enum uw_xfer of the target endpoint (CMD_SUBMIT) */
	const uint8_t *data; /* OUT data, hdr.u.submit.transfer_buffer_length bytes; else NULL */
	size_t data_len;
	const uint8_t *iso; /* ISO: number_of_packets raw 16-byte descriptors; else NULL */
	uint32_t num_iso;
} uw_cmd;

/**
 * uw_cmd_hdr_decode() - decode and validate the 48-byte header of a client->server message and
 * say how many payload bytes follow (*data_len, *iso_len), so that a server can read the payload
 * straight into a buffer it allocates only after this check. ep_type decides whether the target
 * endpoint is isochronous. Checks: command is CMD_SUBMIT or CMD_UNLINK; direction 0/1; ep <= 15;
 * 0 <= transfer_buffer_length <= UW_MAX_TRANSFER_LEN; for ep 0, transfer_buffer_length <=
 * UW_MAX_CONTROL_LEN; for ISO, 0 <= number_of_packets <= UW_MAX_ISO_PACKETS. Returns d->status
 * (DONE with d->len == 48).
 */
enum uw_dec_status uw_cmd_hdr_decode(const uint8_t *buf, size_t len, uw_ep_type_fn ep_type,
                                     void *user, uw_urb_hdr *hdr, int *xfer, size_t *data_len,
                                     size_t *iso_len, uw_dec *d);

/**
 * uw_iso_check_cmd() - validate the isochronous descriptors of a CMD_SUBMIT: each packet inside
 * the transfer buffer (offset + length <= transfer_buffer_length, no overflow) and no longer
 * than UW_MAX_ISO_PACKET_LEN. raw holds n descriptors. off_base is the offset of the first
 * descriptor within the message, for the error report. Returns d->status (DONE or ERROR).
 */
enum uw_dec_status uw_iso_check_cmd(const uint8_t *raw, uint32_t n, int32_t transfer_len,
                                    size_t off_base, uw_dec *d);

/**
 * uw_cmd_decode() - decode a whole CMD_SUBMIT/CMD_UNLINK from a contiguous buffer: header,
 * OUT data and ISO descriptors, all validated. Returns d->status.
 */
enum uw_dec_status uw_cmd_decode(const uint8_t *buf, size_t len, uw_ep_type_fn ep_type, void *user,
                                 uw_cmd *out, uw_dec *d);

/* What a client remembers of each CMD_SUBMIT it sent, to frame the RET_SUBMIT. */
typedef struct uw_pending {
	uint32_t direction;
	int xfer;                  /* enum uw_xfer */
	int32_t transfer_length;   /* transfer_buffer_length sent */
	int32_t number_of_packets; /* ISO: packets sent */
	const uint8_t
	    *iso_req; /* ISO: the raw descriptors sent (for offset/length echo), or NULL */
} uw_pending;

/* Looks up an outstanding CMD_SUBMIT by seqnum. Returns true and fills *out if known. */
typedef bool (*uw_pending_fn)(void *user, uint32_t seqnum, uw_pending *out);

/* A decoded RET_SUBMIT or RET_UNLINK; pointers point into the caller's buffer. */
typedef struct uw_ret {
	uw_urb_hdr hdr;
	const uint8_t *data; /* IN data (compacted for ISO), actual_length bytes; else NULL */
	size_t data_len;
	const uint8_t *iso; /* ISO descriptors, number_of_packets of them; else NULL */
	uint32_t num_iso;
} uw_ret;

/**
 * uw_ret_hdr_decode() - decode and validate the header of a server->client message, framing a
 * RET_SUBMIT by the remembered CMD_SUBMIT. Checks: command RET_SUBMIT/RET_UNLINK; RET_SUBMIT for
 * an outstanding seqnum; 0 <= actual_length <= the request's length (data only for IN);
 * status in [-4095, 0]; ISO: number_of_packets equal to the request's, error_count within it.
 * Returns d->status.
 */
enum uw_dec_status uw_ret_hdr_decode(const uint8_t *buf, size_t len, uw_pending_fn pending,
                                     void *user, uw_urb_hdr *hdr, size_t *data_len, size_t *iso_len,
                                     uw_dec *d);

/**
 * uw_iso_check_ret() - validate a RET_SUBMIT's ISO descriptors against the request: each echoes
 * the request's offset and length (when req is not NULL), actual_length <= length, and the sum
 * of actual_length equals the header's actual_length. Returns d->status (DONE or ERROR).
 */
enum uw_dec_status uw_iso_check_ret(const uint8_t *raw, uint32_t n, const uint8_t *req,
                                    int32_t actual_length, size_t off_base, uw_dec *d);

/** uw_ret_decode() - a whole RET_SUBMIT/RET_UNLINK from a contiguous buffer. */
enum uw_dec_status uw_ret_decode(const uint8_t *buf, size_t len, uw_pending_fn pending, void *user,
                                 uw_ret *out, uw_dec *d);

/* Names for logs: "CMD_SUBMIT", "OP_REQ_IMPORT", "high-speed", ... never NULL. */
const char *uw_urb_cmd_name(uint32_t command);
const char *uw_op_code_name(uint16_t code);
const char *uw_speed_name(uint32_t speed);
const char *uw_xfer_name(int xfer);

#endif /* UW_WIRE_H */
