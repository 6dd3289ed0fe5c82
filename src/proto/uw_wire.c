/* SPDX-License-Identifier: MIT */
/*
 * uw_wire.c - the USB/IP 0x0111 codec. See uw_wire.h for the contract and docs/protocol.md for
 * the byte layouts. Every field is read through a bounds-checked cursor; every count and length a
 * peer sends is checked against uw_limits.h before it can be used to size anything.
 */
#include "uw_wire.h"

#include <stdio.h>
#include <string.h>

#include "uw_cursor.h"

/* ---- Result helpers ------------------------------------------------------------------------ */

static enum uw_dec_status dec_done(uw_dec *d, size_t len)
{
	d->status = UW_DEC_DONE;
	d->len = len;
	d->err = UW_OK;
	d->off = 0;
	d->what = NULL;
	d->value = 0;
	return UW_DEC_DONE;
}

static enum uw_dec_status dec_more(uw_dec *d, size_t need, size_t have)
{
	d->status = UW_DEC_MORE;
	d->len = need - have;
	d->err = UW_OK;
	d->off = 0;
	d->what = NULL;
	d->value = 0;
	return UW_DEC_MORE;
}

static enum uw_dec_status dec_error(uw_dec *d, uw_err err, size_t off, const char *what,
                                    int64_t value)
{
	d->status = UW_DEC_ERROR;
	d->len = 0;
	d->err = err;
	d->off = off;
	d->what = what;
	d->value = value;
	return UW_DEC_ERROR;
}

char *uw_dec_format(const uw_dec *d, char *buf, size_t cap)
{
	if (!buf || cap == 0)
		return buf;
	switch (d->status) {
	case UW_DEC_DONE:
		snprintf(buf, cap, "complete message of %zu bytes", d->len);
		break;
	case UW_DEC_MORE:
		snprintf(buf, cap, "incomplete message: %zu more bytes needed", d->len);
		break;
	case UW_DEC_ERROR:
		snprintf(buf, cap, "%s at byte %zu: %s (value %lld)", uw_strerror(d->err), d->off,
		         d->what ? d->what : "?", (long long)d->value);
		break;
	}
	return buf;
}

/* ---- Strings -------------------------------------------------------------------------------- */

/* A fixed-width wire string is valid when it holds a NUL within its width. Returns its length, or
 * -1 without NUL. Bytes after the NUL are ignored (Linux pads with zeros but does not check). */
static int wire_strlen(const uint8_t *p, size_t width)
{
	const void *nul = memchr(p, 0, width);
	return nul ? (int)((const uint8_t *)nul - p) : -1;
}

/* Copies a validated wire string into dst (of at least width bytes), NUL-padded. */
static void wire_strcpy(char *dst, const uint8_t *p, size_t width)
{
	int n = wire_strlen(p, width);
	memset(dst, 0, width);
	if (n > 0)
		memcpy(dst, p, (size_t)n);
}

/* Writes s NUL-padded into width bytes; fails if s (with its NUL) does not fit. */
static bool put_wire_str(uw_wcur *c, const char *s, size_t width)
{
	const char *nul = memchr(s, 0, width);
	if (!nul)
		return false;
	size_t n = (size_t)(nul - s);
	uw_put_bytes(c, s, n);
	uw_put_zeros(c, width - n);
	return true;
}

/* ---- Names ---------------------------------------------------------------------------------- */

const char *uw_op_status_str(uint32_t status)
{
	/* The texts the stock usbip tools print, so users see familiar messages. */
	switch (status) {
	case UW_ST_OK:
		return "Request Completed Successfully";
	case UW_ST_NA:
		return "Request Failed";
	case UW_ST_DEV_BUSY:
		return "Device busy (exported)";
	case UW_ST_DEV_ERR:
		return "Device in error state";
	case UW_ST_NODEV:
		return "Device not found";
	case UW_ST_ERROR:
		return "Unexpected response";
	}
	return "Unknown status";
}

const char *uw_urb_cmd_name(uint32_t command)
{
	switch (command) {
	case UW_CMD_SUBMIT:
		return "CMD_SUBMIT";
	case UW_CMD_UNLINK:
		return "CMD_UNLINK";
	case UW_RET_SUBMIT:
		return "RET_SUBMIT";
	case UW_RET_UNLINK:
		return "RET_UNLINK";
	}
	return "unknown command";
}

const char *uw_op_code_name(uint16_t code)
{
	switch (code) {
	case UW_OP_REQ_IMPORT:
		return "OP_REQ_IMPORT";
	case UW_OP_REP_IMPORT:
		return "OP_REP_IMPORT";
	case UW_OP_REQ_DEVLIST:
		return "OP_REQ_DEVLIST";
	case UW_OP_REP_DEVLIST:
		return "OP_REP_DEVLIST";
	case UW_OP_REQUEST | UW_OP_DEVINFO:
		return "OP_REQ_DEVINFO";
	case UW_OP_REPLY | UW_OP_DEVINFO:
		return "OP_REP_DEVINFO";
	}
	return "unknown op";
}

const char *uw_speed_name(uint32_t speed)
{
	switch (speed) {
	case UW_SPEED_UNKNOWN:
		return "unknown-speed";
	case UW_SPEED_LOW:
		return "low-speed";
	case UW_SPEED_FULL:
		return "full-speed";
	case UW_SPEED_HIGH:
		return "high-speed";
	case UW_SPEED_WIRELESS:
		return "wireless";
	case UW_SPEED_SUPER:
		return "super-speed";
	case UW_SPEED_SUPER_PLUS:
		return "super-speed-plus";
	}
	return "invalid-speed";
}

const char *uw_xfer_name(int xfer)
{
	switch (xfer) {
	case UW_XFER_CONTROL:
		return "control";
	case UW_XFER_ISO:
		return "isochronous";
	case UW_XFER_BULK:
		return "bulk";
	case UW_XFER_INT:
		return "interrupt";
	case UW_XFER_UNKNOWN:
		return "unknown";
	}
	return "invalid";
}

/* ---- op_common ------------------------------------------------------------------------------ */

/* Offsets of op messages (docs/protocol.md §2.2-2.4). */
enum {
	OFF_OP_VERSION = 0,
	OFF_OP_CODE = 2,
	OFF_OP_STATUS = 4,
	OFF_OP_BODY = 8,
	OFF_DEVLIST_NDEV = 8,
};

/* Device record field offsets, relative to the record (§2.3). */
enum {
	OFF_DEV_PATH = 0x000,
	OFF_DEV_BUSID = 0x100,
	OFF_DEV_BUSNUM = 0x120,
	OFF_DEV_DEVNUM = 0x124,
	OFF_DEV_SPEED = 0x128,
	OFF_DEV_VENDOR = 0x12C,
	OFF_DEV_NUM_IFACES = 0x137,
};

static void read_op_common(uw_rcur *c, uw_op_common *oc)
{
	oc->version = uw_get_be16(c);
	oc->code = uw_get_be16(c);
	oc->status = uw_get_be32(c);
}

int uw_op_common_encode(uint8_t *buf, size_t cap, uint16_t code, uint32_t status)
{
	uw_wcur c = uw_wcur_make(buf, cap);
	uw_put_be16(&c, UW_PROTO_VERSION);
	uw_put_be16(&c, code);
	uw_put_be32(&c, status);
	return c.err ? UW_E_SHORT : (int)c.off;
}

enum uw_dec_status uw_op_request_decode(const uint8_t *buf, size_t len, uw_op_request *out,
                                        uw_dec *d)
{
	if (len < UW_OP_COMMON_LEN)
		return dec_more(d, UW_OP_COMMON_LEN, len);
	uw_rcur c = uw_rcur_make(buf, len);
	uw_op_common oc;
	read_op_common(&c, &oc);
	if (oc.version != UW_PROTO_VERSION)
		return dec_error(d, UW_E_VERSION, OFF_OP_VERSION, "op_common.version: not 0x0111",
		                 oc.version);
	if (oc.code != UW_OP_REQ_DEVLIST && oc.code != UW_OP_REQ_IMPORT)
		return dec_error(d, UW_E_PROTO, OFF_OP_CODE,
		                 "op_common.code: not OP_REQ_DEVLIST or OP_REQ_IMPORT", oc.code);
	if (oc.status != 0)
		return dec_error(d, UW_E_PROTO, OFF_OP_STATUS,
		                 "op_common.status: requests must carry status 0", oc.status);
	if (oc.code == UW_OP_REQ_DEVLIST) {
		out->code = oc.code;
		memset(out->busid, 0, sizeof(out->busid));
		return dec_done(d, UW_OP_REQ_DEVLIST_LEN);
	}
	if (len < UW_OP_REQ_IMPORT_LEN)
		return dec_more(d, UW_OP_REQ_IMPORT_LEN, len);
	const uint8_t *busid = buf + OFF_OP_BODY;
	int n = wire_strlen(busid, UW_BUSID_SIZE);
	if (n < 0)
		return dec_error(d, UW_E_PROTO, OFF_OP_BODY,
		                 "OP_REQ_IMPORT.busid: no NUL within 32 bytes", 0);
	if (n == 0)
		return dec_error(d, UW_E_PROTO, OFF_OP_BODY, "OP_REQ_IMPORT.busid: empty", 0);
	out->code = oc.code;
	wire_strcpy(out->busid, busid, UW_BUSID_SIZE);
	return dec_done(d, UW_OP_REQ_IMPORT_LEN);
}

int uw_op_req_import_encode(uint8_t *buf, size_t cap, const char *busid)
{
	if (!busid || !*busid)
		return UW_E_INVAL;
	uw_wcur c = uw_wcur_make(buf, cap);
	uw_put_be16(&c, UW_PROTO_VERSION);
	uw_put_be16(&c, UW_OP_REQ_IMPORT);
	uw_put_be32(&c, 0);
	if (!put_wire_str(&c, busid, UW_BUSID_SIZE))
		return UW_E_INVAL;
	return c.err ? UW_E_SHORT : (int)c.off;
}

/* ---- Device records ------------------------------------------------------------------------- */

int uw_devrec_encode(uint8_t *buf, size_t cap, const uw_usb_device *dev)
{
	if (cap < UW_DEVREC_LEN)
		return UW_E_SHORT;
	uw_wcur c = uw_wcur_make(buf, cap);
	if (!put_wire_str(&c, dev->path, UW_PATH_SIZE) ||
	    !put_wire_str(&c, dev->busid, UW_BUSID_SIZE))
		return UW_E_INVAL;
	uw_put_be32(&c, dev->busnum);
	uw_put_be32(&c, dev->devnum);
	uw_put_be32(&c, dev->speed);
	uw_put_be16(&c, dev->id_vendor);
	uw_put_be16(&c, dev->id_product);
	uw_put_be16(&c, dev->bcd_device);
	uw_put_u8(&c, dev->device_class);
	uw_put_u8(&c, dev->device_subclass);
	uw_put_u8(&c, dev->device_protocol);
	uw_put_u8(&c, dev->configuration_value);
	uw_put_u8(&c, dev->num_configurations);
	uw_put_u8(&c, dev->num_interfaces);
	return c.err ? UW_E_SHORT : (int)c.off;
}

/* Decodes a record at buf (at least UW_DEVREC_LEN bytes). base is the record's offset in its
 * message, for error reports. */
static enum uw_dec_status devrec_decode_at(const uint8_t *buf, size_t base, uw_usb_device *dev,
                                           uw_dec *d)
{
	if (wire_strlen(buf + OFF_DEV_PATH, UW_PATH_SIZE) < 0)
		return dec_error(d, UW_E_PROTO, base + OFF_DEV_PATH,
		                 "usb_device.path: no NUL within 256 bytes", 0);
	if (wire_strlen(buf + OFF_DEV_BUSID, UW_BUSID_SIZE) <= 0)
		return dec_error(d, UW_E_PROTO, base + OFF_DEV_BUSID,
		                 "usb_device.busid: empty or no NUL within 32 bytes", 0);
	uw_rcur c = uw_rcur_make(buf + OFF_DEV_BUSNUM, UW_DEVREC_LEN - OFF_DEV_BUSNUM);
	uw_usb_device v;
	wire_strcpy(v.path, buf + OFF_DEV_PATH, UW_PATH_SIZE);
	wire_strcpy(v.busid, buf + OFF_DEV_BUSID, UW_BUSID_SIZE);
	v.busnum = uw_get_be32(&c);
	v.devnum = uw_get_be32(&c);
	v.speed = uw_get_be32(&c);
	v.id_vendor = uw_get_be16(&c);
	v.id_product = uw_get_be16(&c);
	v.bcd_device = uw_get_be16(&c);
	v.device_class = uw_get_u8(&c);
	v.device_subclass = uw_get_u8(&c);
	v.device_protocol = uw_get_u8(&c);
	v.configuration_value = uw_get_u8(&c);
	v.num_configurations = uw_get_u8(&c);
	v.num_interfaces = uw_get_u8(&c);
	/* devid = busnum << 16 | devnum must be representable. */
	if (v.busnum > 0xffff)
		return dec_error(d, UW_E_PROTO, base + OFF_DEV_BUSNUM,
		                 "usb_device.busnum: larger than 65535", v.busnum);
	if (v.devnum > 0xffff)
		return dec_error(d, UW_E_PROTO, base + OFF_DEV_DEVNUM,
		                 "usb_device.devnum: larger than 65535", v.devnum);
	if (v.speed > UW_SPEED_SUPER_PLUS)
		return dec_error(d, UW_E_PROTO, base + OFF_DEV_SPEED,
		                 "usb_device.speed: not a known USB speed", v.speed);
	*dev = v;
	return UW_DEC_DONE;
}

int uw_devrec_decode(const uint8_t *buf, size_t len, uw_usb_device *dev, uw_dec *d)
{
	if (len < UW_DEVREC_LEN) {
		dec_more(d, UW_DEVREC_LEN, len);
		return UW_E_SHORT;
	}
	uw_usb_device v;
	if (devrec_decode_at(buf, 0, &v, d) != UW_DEC_DONE)
		return d->err;
	dec_done(d, UW_DEVREC_LEN);
	*dev = v;
	return UW_OK;
}

int uw_op_rep_import_encode(uint8_t *buf, size_t cap, uint32_t status, const uw_usb_device *dev)
{
	int n = uw_op_common_encode(buf, cap, UW_OP_REP_IMPORT, status);
	if (n < 0 || status != UW_ST_OK)
		return n;
	if (!dev)
		return UW_E_INVAL;
	int m = uw_devrec_encode(buf + n, cap - (size_t)n, dev);
	return m < 0 ? m : n + m;
}

enum uw_dec_status uw_op_rep_import_decode(const uint8_t *buf, size_t len, uint32_t *status,
                                           uw_usb_device *dev, uw_dec *d)
{
	if (len < UW_OP_COMMON_LEN)
		return dec_more(d, UW_OP_COMMON_LEN, len);
	uw_rcur c = uw_rcur_make(buf, len);
	uw_op_common oc;
	read_op_common(&c, &oc);
	if (oc.version != UW_PROTO_VERSION)
		return dec_error(d, UW_E_VERSION, OFF_OP_VERSION, "op_common.version: not 0x0111",
		                 oc.version);
	if (oc.code != UW_OP_REP_IMPORT)
		return dec_error(d, UW_E_PROTO, OFF_OP_CODE, "op_common.code: not OP_REP_IMPORT",
		                 oc.code);
	if (oc.status > UW_ST_ERROR)
		return dec_error(d, UW_E_PROTO, OFF_OP_STATUS, "op_common.status: unknown status",
		                 oc.status);
	if (oc.status != UW_ST_OK) {
		*status = oc.status;
		return dec_done(d, UW_OP_COMMON_LEN);
	}
	if (len < UW_OP_REP_IMPORT_LEN)
		return dec_more(d, UW_OP_REP_IMPORT_LEN, len);
	uw_usb_device v;
	if (devrec_decode_at(buf + OFF_OP_BODY, OFF_OP_BODY, &v, d) != UW_DEC_DONE)
		return UW_DEC_ERROR;
	*status = oc.status;
	*dev = v;
	return dec_done(d, UW_OP_REP_IMPORT_LEN);
}

int uw_op_rep_devlist_hdr_encode(uint8_t *buf, size_t cap, uint32_t ndev)
{
	int n = uw_op_common_encode(buf, cap, UW_OP_REP_DEVLIST, UW_ST_OK);
	if (n < 0)
		return n;
	uw_wcur c = uw_wcur_make(buf + n, cap - (size_t)n);
	uw_put_be32(&c, ndev);
	return c.err ? UW_E_SHORT : n + (int)c.off;
}

int uw_devlist_entry_encode(uint8_t *buf, size_t cap, const uw_usb_device *dev,
                            const uw_usb_interface *ifaces)
{
	size_t need = uw_devlist_entry_len(dev->num_interfaces);
	if (dev->num_interfaces && !ifaces)
		return UW_E_INVAL;
	if (cap < need)
		return UW_E_SHORT;
	int n = uw_devrec_encode(buf, cap, dev);
	if (n < 0)
		return n;
	uw_wcur c = uw_wcur_make(buf + n, cap - (size_t)n);
	for (unsigned i = 0; i < dev->num_interfaces; i++) {
		uw_put_u8(&c, ifaces[i].iface_class);
		uw_put_u8(&c, ifaces[i].iface_subclass);
		uw_put_u8(&c, ifaces[i].iface_protocol);
		uw_put_u8(&c, 0);
	}
	return c.err ? UW_E_SHORT : n + (int)c.off;
}

enum uw_dec_status uw_op_rep_devlist_frame(const uint8_t *buf, size_t len, uint32_t *ndev,
                                           uw_dec *d)
{
	if (len < UW_OP_COMMON_LEN)
		return dec_more(d, UW_OP_COMMON_LEN, len);
	uw_rcur c = uw_rcur_make(buf, len);
	uw_op_common oc;
	read_op_common(&c, &oc);
	if (oc.version != UW_PROTO_VERSION)
		return dec_error(d, UW_E_VERSION, OFF_OP_VERSION, "op_common.version: not 0x0111",
		                 oc.version);
	if (oc.code != UW_OP_REP_DEVLIST)
		return dec_error(d, UW_E_PROTO, OFF_OP_CODE, "op_common.code: not OP_REP_DEVLIST",
		                 oc.code);
	if (oc.status != UW_ST_OK)
		return dec_error(d, UW_E_PROTO, OFF_OP_STATUS, "OP_REP_DEVLIST.status: not 0",
		                 oc.status);
	if (len < UW_OP_REP_DEVLIST_HDR)
		return dec_more(d, UW_OP_REP_DEVLIST_HDR, len);
	uint32_t n = uw_get_be32(&c);
	if (n > UW_MAX_DEVLIST_DEVICES)
		return dec_error(d, UW_E_LIMIT, OFF_DEVLIST_NDEV,
		                 "OP_REP_DEVLIST.ndev: more devices than the limit", n);
	size_t pos = UW_OP_REP_DEVLIST_HDR;
	for (uint32_t i = 0; i < n; i++) {
		if (len - pos < UW_DEVREC_LEN)
			return dec_more(d, pos + UW_DEVREC_LEN, len);
		uw_usb_device dev;
		if (devrec_decode_at(buf + pos, pos, &dev, d) != UW_DEC_DONE)
			return UW_DEC_ERROR;
		size_t entry = uw_devlist_entry_len(dev.num_interfaces);
		if (len - pos < entry)
			return dec_more(d, pos + entry, len);
		pos += entry;
	}
	*ndev = n;
	return dec_done(d, pos);
}

int uw_devlist_next(const uint8_t *buf, size_t len, size_t *pos, uw_usb_device *dev,
                    uw_usb_interface *ifaces, size_t max_ifaces)
{
	size_t p = *pos;
	if (p > len || len - p < UW_DEVREC_LEN)
		return UW_E_SHORT;
	uw_dec d;
	uw_usb_device v;
	if (devrec_decode_at(buf + p, p, &v, &d) != UW_DEC_DONE)
		return d.err;
	size_t entry = uw_devlist_entry_len(v.num_interfaces);
	if (len - p < entry)
		return UW_E_SHORT;
	const uint8_t *q = buf + p + UW_DEVREC_LEN;
	for (size_t i = 0; i < v.num_interfaces && i < max_ifaces; i++) {
		ifaces[i].iface_class = q[4 * i];
		ifaces[i].iface_subclass = q[4 * i + 1];
		ifaces[i].iface_protocol = q[4 * i + 2];
	}
	*dev = v;
	*pos = p + entry;
	return UW_OK;
}

/* ---- URB phase ------------------------------------------------------------------------------ */

/* Offsets within the 48-byte header (§2.5, §2.6). */
enum {
	OFF_URB_COMMAND = 0x00,
	OFF_URB_SEQNUM = 0x04,
	OFF_URB_DEVID = 0x08,
	OFF_URB_DIRECTION = 0x0C,
	OFF_URB_EP = 0x10,
	OFF_URB_FLAGS = 0x14,  /* CMD_SUBMIT.transfer_flags, RET_*.status, CMD_UNLINK.seqnum */
	OFF_URB_LENGTH = 0x18, /* transfer_buffer_length / actual_length */
	OFF_URB_START_FRAME = 0x1C,
	OFF_URB_NPACKETS = 0x20,
	OFF_URB_INTERVAL = 0x24, /* CMD_SUBMIT.interval / RET_SUBMIT.error_count */
	OFF_URB_SETUP = 0x28,
};

void uw_setup_decode(const uint8_t raw[UW_SETUP_LEN], uw_setup *out)
{
	uw_rcur c = uw_rcur_make(raw, UW_SETUP_LEN);
	out->bm_request_type = uw_get_u8(&c);
	out->b_request = uw_get_u8(&c);
	out->w_value = uw_get_le16(&c);
	out->w_index = uw_get_le16(&c);
	out->w_length = uw_get_le16(&c);
}

void uw_setup_encode(const uw_setup *in, uint8_t raw[UW_SETUP_LEN])
{
	uw_wcur c = uw_wcur_make(raw, UW_SETUP_LEN);
	uw_put_u8(&c, in->bm_request_type);
	uw_put_u8(&c, in->b_request);
	uw_put_le16(&c, in->w_value);
	uw_put_le16(&c, in->w_index);
	uw_put_le16(&c, in->w_length);
}

void uw_urb_hdr_encode(const uw_urb_hdr *h, uint8_t out[UW_URB_HDR_LEN])
{
	uw_wcur c = uw_wcur_make(out, UW_URB_HDR_LEN);
	uw_put_be32(&c, h->command);
	uw_put_be32(&c, h->seqnum);
	uw_put_be32(&c, h->devid);
	uw_put_be32(&c, h->direction);
	uw_put_be32(&c, h->ep);
	switch (h->command) {
	case UW_CMD_SUBMIT:
		uw_put_be32(&c, h->u.submit.transfer_flags);
		uw_put_be32s(&c, h->u.submit.transfer_buffer_length);
		uw_put_be32s(&c, h->u.submit.start_frame);
		uw_put_be32s(&c, h->u.submit.number_of_packets);
		uw_put_be32s(&c, h->u.submit.interval);
		uw_put_bytes(&c, h->u.submit.setup, UW_SETUP_LEN);
		break;
	case UW_RET_SUBMIT:
		uw_put_be32s(&c, h->u.ret.status);
		uw_put_be32s(&c, h->u.ret.actual_length);
		uw_put_be32s(&c, h->u.ret.start_frame);
		uw_put_be32s(&c, h->u.ret.number_of_packets);
		uw_put_be32s(&c, h->u.ret.error_count);
		break;
	case UW_CMD_UNLINK:
		uw_put_be32(&c, h->u.unlink.seqnum);
		break;
	case UW_RET_UNLINK:
		uw_put_be32s(&c, h->u.ret_unlink.status);
		break;
	default:
		break;
	}
	uw_put_zeros(&c, UW_URB_HDR_LEN - c.off);
}

void uw_iso_desc_encode(const uw_iso_desc *in, uint8_t out[UW_ISO_DESC_LEN])
{
	uw_wcur c = uw_wcur_make(out, UW_ISO_DESC_LEN);
	uw_put_be32(&c, in->offset);
	uw_put_be32(&c, in->length);
	uw_put_be32(&c, in->actual_length);
	uw_put_be32s(&c, in->status);
}

void uw_iso_desc_decode(const uint8_t in[UW_ISO_DESC_LEN], uw_iso_desc *out)
{
	uw_rcur c = uw_rcur_make(in, UW_ISO_DESC_LEN);
	out->offset = uw_get_be32(&c);
	out->length = uw_get_be32(&c);
	out->actual_length = uw_get_be32(&c);
	out->status = uw_get_be32s(&c);
}

/* Reads the 20-byte basic header and the 28-byte union as raw words; the caller interprets. */
static void read_urb_hdr(const uint8_t *buf, uw_urb_hdr *h)
{
	uw_rcur c = uw_rcur_make(buf, UW_URB_HDR_LEN);
	h->command = uw_get_be32(&c);
	h->seqnum = uw_get_be32(&c);
	h->devid = uw_get_be32(&c);
	h->direction = uw_get_be32(&c);
	h->ep = uw_get_be32(&c);
	switch (h->command) {
	case UW_CMD_SUBMIT:
		h->u.submit.transfer_flags = uw_get_be32(&c);
		h->u.submit.transfer_buffer_length = uw_get_be32s(&c);
		h->u.submit.start_frame = uw_get_be32s(&c);
		h->u.submit.number_of_packets = uw_get_be32s(&c);
		h->u.submit.interval = uw_get_be32s(&c);
		{
			const uint8_t *setup = uw_rcur_take(&c, UW_SETUP_LEN);
			if (setup)
				memcpy(h->u.submit.setup, setup, UW_SETUP_LEN);
		}
		break;
	case UW_RET_SUBMIT:
		h->u.ret.status = uw_get_be32s(&c);
		h->u.ret.actual_length = uw_get_be32s(&c);
		h->u.ret.start_frame = uw_get_be32s(&c);
		h->u.ret.number_of_packets = uw_get_be32s(&c);
		h->u.ret.error_count = uw_get_be32s(&c);
		break;
	case UW_CMD_UNLINK:
		h->u.unlink.seqnum = uw_get_be32(&c);
		break;
	case UW_RET_UNLINK:
		h->u.ret_unlink.status = uw_get_be32s(&c);
		break;
	default:
		break;
	}
}

/* Checks common to every URB header: a known command and sane direction/ep. Returns true if
 * valid; otherwise fills d. */
static bool check_basic(const uw_urb_hdr *h, bool from_client, uw_dec *d)
{
	bool ok_cmd = from_client ? (h->command == UW_CMD_SUBMIT || h->command == UW_CMD_UNLINK)
	                          : (h->command == UW_RET_SUBMIT || h->command == UW_RET_UNLINK);
	if (!ok_cmd) {
		dec_error(d, UW_E_PROTO, OFF_URB_COMMAND,
		          from_client ? "usbip_header.command: not CMD_SUBMIT or CMD_UNLINK"
		                      : "usbip_header.command: not RET_SUBMIT or RET_UNLINK",
		          h->command);
		return false;
	}
	if (h->direction > UW_DIR_IN) {
		dec_error(d, UW_E_PROTO, OFF_URB_DIRECTION, "usbip_header.direction: not 0 or 1",
		          h->direction);
		return false;
	}
	if (h->ep > UW_MAX_EP) {
		dec_error(d, UW_E_PROTO, OFF_URB_EP, "usbip_header.ep: larger than 15", h->ep);
		return false;
	}
	return true;
}

enum uw_dec_status uw_cmd_hdr_decode(const uint8_t *buf, size_t len, uw_ep_type_fn ep_type,
                                     void *user, uw_urb_hdr *hdr, int *xfer, size_t *data_len,
                                     size_t *iso_len, uw_dec *d)
{
	if (len < UW_URB_HDR_LEN)
		return dec_more(d, UW_URB_HDR_LEN, len);
	uw_urb_hdr h;
	read_urb_hdr(buf, &h);
	if (!check_basic(&h, true, d))
		return UW_DEC_ERROR;
	if (h.command == UW_CMD_UNLINK) {
		*hdr = h;
		*xfer = UW_XFER_UNKNOWN;
		*data_len = 0;
		*iso_len = 0;
		return dec_done(d, UW_URB_HDR_LEN);
	}
	int32_t tbl = h.u.submit.transfer_buffer_length;
	if (tbl < 0)
		return dec_error(d, UW_E_PROTO, OFF_URB_LENGTH,
		                 "CMD_SUBMIT.transfer_buffer_length: negative", tbl);
	if ((uint32_t)tbl > UW_MAX_TRANSFER_LEN)
		return dec_error(d, UW_E_LIMIT, OFF_URB_LENGTH,
		                 "CMD_SUBMIT.transfer_buffer_length: exceeds the 16 MiB limit",
		                 tbl);
	int type = h.ep == 0 ? UW_XFER_CONTROL : UW_XFER_UNKNOWN;
	if (h.ep != 0 && ep_type)
		type = ep_type(user, h.ep, h.direction);
	if (type == UW_XFER_CONTROL && (uint32_t)tbl > UW_MAX_CONTROL_LEN)
		return dec_error(d, UW_E_PROTO, OFF_URB_LENGTH,
		                 "CMD_SUBMIT.transfer_buffer_length: control transfer over 65535",
		                 tbl);
	size_t iso = 0;
	if (type == UW_XFER_ISO) {
		int32_t np = h.u.submit.number_of_packets;
		if (np < 0)
			return dec_error(d, UW_E_PROTO, OFF_URB_NPACKETS,
			                 "CMD_SUBMIT.number_of_packets: negative for isochronous",
			                 np);
		if ((uint32_t)np > UW_MAX_ISO_PACKETS)
			return dec_error(d, UW_E_LIMIT, OFF_URB_NPACKETS,
			                 "CMD_SUBMIT.number_of_packets: more than 1024", np);
		iso = (size_t)np * UW_ISO_DESC_LEN;
	}
	*hdr = h;
	*xfer = type;
	*data_len = h.direction == UW_DIR_OUT ? (size_t)tbl : 0;
	*iso_len = iso;
	return dec_done(d, UW_URB_HDR_LEN);
}

enum uw_dec_status uw_iso_check_cmd(const uint8_t *raw, uint32_t n, int32_t transfer_len,
                                    size_t off_base, uw_dec *d)
{
	uint64_t limit = transfer_len < 0 ? 0 : (uint64_t)transfer_len;
	for (uint32_t i = 0; i < n; i++) {
		uw_iso_desc desc;
		uw_iso_desc_decode(raw + (size_t)i * UW_ISO_DESC_LEN, &desc);
		size_t off = off_base + (size_t)i * UW_ISO_DESC_LEN;
		if (desc.length > UW_MAX_ISO_PACKET_LEN)
			return dec_error(d, UW_E_LIMIT, off + 4,
			                 "iso_packet_descriptor.length: larger than 49152",
			                 desc.length);
		if ((uint64_t)desc.offset + desc.length > limit)
			return dec_error(d, UW_E_PROTO, off,
			                 "iso_packet_descriptor.offset: packet outside the buffer",
			                 desc.offset);
	}
	return dec_done(d, (size_t)n * UW_ISO_DESC_LEN);
}

enum uw_dec_status uw_cmd_decode(const uint8_t *buf, size_t len, uw_ep_type_fn ep_type, void *user,
                                 uw_cmd *out, uw_dec *d)
{
	uw_urb_hdr h;
	int xfer;
	size_t data_len, iso_len;
	if (uw_cmd_hdr_decode(buf, len, ep_type, user, &h, &xfer, &data_len, &iso_len, d) !=
	    UW_DEC_DONE)
		return d->status;
	size_t total = UW_URB_HDR_LEN + data_len + iso_len;
	if (len < total)
		return dec_more(d, total, len);
	const uint8_t *iso = iso_len ? buf + UW_URB_HDR_LEN + data_len : NULL;
	uint32_t niso = (uint32_t)(iso_len / UW_ISO_DESC_LEN);
	if (iso && uw_iso_check_cmd(iso, niso, h.u.submit.transfer_buffer_length,
	                            UW_URB_HDR_LEN + data_len, d) != UW_DEC_DONE)
		return UW_DEC_ERROR;
	out->hdr = h;
	out->xfer = xfer;
	out->data = data_len ? buf + UW_URB_HDR_LEN : NULL;
	out->data_len = data_len;
	out->iso = iso;
	out->num_iso = niso;
	return dec_done(d, total);
}

enum uw_dec_status uw_ret_hdr_decode(const uint8_t *buf, size_t len, uw_pending_fn pending,
                                     void *user, uw_urb_hdr *hdr, size_t *data_len, size_t *iso_len,
                                     uw_dec *d)
{
	if (len < UW_URB_HDR_LEN)
		return dec_more(d, UW_URB_HDR_LEN, len);
	uw_urb_hdr h;
	read_urb_hdr(buf, &h);
	if (!check_basic(&h, false, d))
		return UW_DEC_ERROR;
	if (h.command == UW_RET_UNLINK) {
		int32_t st = h.u.ret_unlink.status;
		if (st > 0 || st < -UW_MAX_ERRNO)
			return dec_error(d, UW_E_PROTO, OFF_URB_FLAGS,
			                 "RET_UNLINK.status: not 0 or a negative errno", st);
		*hdr = h;
		*data_len = 0;
		*iso_len = 0;
		return dec_done(d, UW_URB_HDR_LEN);
	}
	uw_pending p;
	if (!pending || !pending(user, h.seqnum, &p))
		return dec_error(d, UW_E_PROTO, OFF_URB_SEQNUM,
		                 "RET_SUBMIT.seqnum: no outstanding CMD_SUBMIT has it", h.seqnum);
	int32_t st = h.u.ret.status;
	if (st > 0 || st < -UW_MAX_ERRNO)
		return dec_error(d, UW_E_PROTO, OFF_URB_FLAGS,
		                 "RET_SUBMIT.status: not 0 or a negative errno", st);
	int32_t al = h.u.ret.actual_length;
	if (al < 0)
		return dec_error(d, UW_E_PROTO, OFF_URB_LENGTH,
		                 "RET_SUBMIT.actual_length: negative", al);
	if (al > p.transfer_length)
		return dec_error(d, UW_E_PROTO, OFF_URB_LENGTH,
		                 "RET_SUBMIT.actual_length: more than the request's length", al);
	size_t iso = 0;
	if (p.xfer == UW_XFER_ISO) {
		int32_t np = h.u.ret.number_of_packets;
		if (np != p.number_of_packets)
			return dec_error(d, UW_E_PROTO, OFF_URB_NPACKETS,
			                 "RET_SUBMIT.number_of_packets: differs from the request",
			                 np);
		int32_t ec = h.u.ret.error_count;
		if (ec < 0 || ec > np)
			return dec_error(d, UW_E_PROTO, OFF_URB_INTERVAL,
			                 "RET_SUBMIT.error_count: outside 0..number_of_packets",
			                 ec);
		iso = (size_t)np * UW_ISO_DESC_LEN;
	}
	*hdr = h;
	*data_len = p.direction == UW_DIR_IN ? (size_t)al : 0;
	*iso_len = iso;
	return dec_done(d, UW_URB_HDR_LEN);
}

enum uw_dec_status uw_iso_check_ret(const uint8_t *raw, uint32_t n, const uint8_t *req,
                                    int32_t actual_length, size_t off_base, uw_dec *d)
{
	uint64_t sum = 0;
	for (uint32_t i = 0; i < n; i++) {
		uw_iso_desc desc;
		size_t at = (size_t)i * UW_ISO_DESC_LEN;
		uw_iso_desc_decode(raw + at, &desc);
		if (req) {
			uw_iso_desc want;
			uw_iso_desc_decode(req + at, &want);
			if (desc.offset != want.offset)
				return dec_error(d, UW_E_PROTO, off_base + at,
				                 "iso_packet_descriptor.offset: differs from the "
				                 "request",
				                 desc.offset);
			if (desc.length != want.length)
				return dec_error(d, UW_E_PROTO, off_base + at + 4,
				                 "iso_packet_descriptor.length: differs from the "
				                 "request",
				                 desc.length);
		}
		if (desc.actual_length > desc.length)
			return dec_error(d, UW_E_PROTO, off_base + at + 8,
			                 "iso_packet_descriptor.actual_length: more than length",
			                 desc.actual_length);
		if (desc.status > 0 || desc.status < -UW_MAX_ERRNO)
			return dec_error(d, UW_E_PROTO, off_base + at + 12,
			                 "iso_packet_descriptor.status: not 0 or a negative errno",
			                 desc.status);
		sum += desc.actual_length;
	}
	if (sum != (uint64_t)(actual_length < 0 ? 0 : actual_length))
		return dec_error(d, UW_E_PROTO, OFF_URB_LENGTH,
		                 "RET_SUBMIT.actual_length: differs from the sum of the packets",
		                 actual_length);
	return dec_done(d, (size_t)n * UW_ISO_DESC_LEN);
}

enum uw_dec_status uw_ret_decode(const uint8_t *buf, size_t len, uw_pending_fn pending, void *user,
                                 uw_ret *out, uw_dec *d)
{
	uw_urb_hdr h;
	size_t data_len, iso_len;
	if (uw_ret_hdr_decode(buf, len, pending, user, &h, &data_len, &iso_len, d) != UW_DEC_DONE)
		return d->status;
	size_t total = UW_URB_HDR_LEN + data_len + iso_len;
	if (len < total)
		return dec_more(d, total, len);
	const uint8_t *iso = iso_len ? buf + UW_URB_HDR_LEN + data_len : NULL;
	uint32_t niso = (uint32_t)(iso_len / UW_ISO_DESC_LEN);
	if (iso) {
		uw_pending p;
		pending(user, h.seqnum, &p);
		if (uw_iso_check_ret(iso, niso, p.iso_req, h.u.ret.actual_length,
		                     UW_URB_HDR_LEN + data_len, d) != UW_DEC_DONE)
			return UW_DEC_ERROR;
	}
	out->hdr = h;
	out->data = data_len ? buf + UW_URB_HDR_LEN : NULL;
	out->data_len = data_len;
	out->iso = iso;
	out->num_iso = niso;
	return dec_done(d, total);
}
