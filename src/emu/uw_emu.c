/* SPDX-License-Identifier: MIT */
/*
 * uw_emu.c - the USB device framework under every emulated device (uw_emu.h): standard
 * requests (USB 2.0 ch. 9), configuration and alternate-setting state, per-endpoint halt, the
 * endpoint table for framing, the uw_dev ops, and the creation of devices from export specs.
 *
 * Control URBs complete synchronously inside submit() unless the class answers UW_EMU_ASYNC;
 * the framework itself never holds a URB, so cancel() only concerns what a class holds.
 */
#include "uw_emu.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "uw_usbdesc.h"

/* Standard requests (USB 2.0 table 9-4) and feature selectors (table 9-6). */
enum {
	REQ_GET_STATUS = 0,
	REQ_CLEAR_FEATURE = 1,
	REQ_SET_FEATURE = 3,
	REQ_SET_ADDRESS = 5,
	REQ_GET_DESCRIPTOR = 6,
	REQ_SET_DESCRIPTOR = 7,
	REQ_GET_CONFIGURATION = 8,
	REQ_SET_CONFIGURATION = 9,
	REQ_GET_INTERFACE = 10,
	REQ_SET_INTERFACE = 11,
};
enum { FEAT_ENDPOINT_HALT = 0, FEAT_REMOTE_WAKEUP = 1 };
enum { RECIP_DEVICE = 0, RECIP_INTERFACE = 1, RECIP_ENDPOINT = 2 };
enum { TYPE_STANDARD = 0, TYPE_CLASS = 1, TYPE_VENDOR = 2 };

/* standard() result: not the framework's, hand it to the class. */
#define TO_CLASS (-1000)

/* UTF-16LE string descriptor, ready to send. */
struct strdesc {
	uint8_t len;
	uint8_t bytes[UW_STRING_DESC_MAX_LEN];
};

struct uw_emu {
	uw_dev dev;
	const struct uw_emu_class *cls;
	void *class_priv;

	/* Descriptors, copied and validated at creation. */
	uint8_t device[UW_DEVICE_DESC_LEN];
	uw_device_desc devd;
	uint8_t *config;
	size_t config_len;
	uw_config_desc cfgd;
	uint8_t *other; /* other-speed configuration (high-speed devices only), else NULL */
	uint8_t qualifier[UW_QUALIFIER_DESC_LEN];
	uint8_t *bos;
	size_t bos_len;
	struct strdesc *strings; /* by index; [0] is the LANGID list */
	size_t num_strings;
	uint32_t speed;

	/* State. */
	bool imported;
	uint8_t config_value; /* 0: unconfigured */
	bool remote_wakeup;
	uw_alt_sel alt;
	uw_ep_table eps;    /* what the client may address now */
	uint16_t halted[2]; /* by enum uw_dir, bit per endpoint number */
	char busid[UW_BUSID_SIZE];
	char path[UW_PATH_SIZE];
	uint32_t busnum, devnum;
};

/* ---- Small helpers ------------------------------------------------------------------------ */

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

void uw_emu_complete(uw_urb *u, int32_t status, uint32_t actual)
{
	if (status == 0 && u->dir == UW_DIR_IN && actual < u->len &&
	    (u->flags & UW_URB_SHORT_NOT_OK))
		status = UW_URB_EREMOTEIO;
	uw_urb_complete(u, status, actual);
}

void uw_emu_urbq_push(uw_emu_urbq *q, uw_urb *u)
{
	u->backend = NULL;
	if (q->tail)
		q->tail->backend = u;
	else
		q->head = u;
	q->tail = u;
	q->n++;
}

uw_urb *uw_emu_urbq_pop(uw_emu_urbq *q)
{
	uw_urb *u = q->head;
	if (!u)
		return NULL;
	q->head = u->backend;
	if (!q->head)
		q->tail = NULL;
	u->backend = NULL;
	q->n--;
	return u;
}

bool uw_emu_urbq_remove(uw_emu_urbq *q, uw_urb *u)
{
	uw_urb *prev = NULL;
	for (uw_urb *x = q->head; x; prev = x, x = x->backend) {
		if (x != u)
			continue;
		if (prev)
			prev->backend = x->backend;
		else
			q->head = x->backend;
		if (q->tail == x)
			q->tail = prev;
		x->backend = NULL;
		q->n--;
		return true;
	}
	return false;
}

void uw_emu_urbq_flush(uw_emu_urbq *q, int32_t status)
{
	uw_urb *u;
	while ((u = uw_emu_urbq_pop(q)) != NULL)
		uw_urb_complete(u, status, 0);
}

void uw_emu_serial(const char *busid, const char *spec, char out[17])
{
	/* FNV-1a 64 over "busid\0spec": stable, and distinct for distinct inputs in practice. */
	uint64_t h = 0xcbf29ce484222325u;
	const char *parts[2] = {busid ? busid : "", spec ? spec : ""};
	for (int i = 0; i < 2; i++) {
		for (const unsigned char *p = (const unsigned char *)parts[i];; p++) {
			h ^= *p;
			h *= 0x100000001b3u;
			if (!*p)
				break;
		}
	}
	static const char hex[] = "0123456789ABCDEF";
	for (int i = 0; i < 16; i++)
		out[i] = hex[(h >> (60 - 4 * i)) & 0xf];
	out[16] = '\0';
}

/* UTF-8 to a string descriptor. Returns false for invalid UTF-8 or a string too long. */
static bool utf8_to_desc(const char *s, struct strdesc *d)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t units = 0;
	while (*p) {
		uint32_t cp;
		int extra;
		if (*p < 0x80) {
			cp = *p;
			extra = 0;
		} else if ((*p & 0xe0) == 0xc0) {
			cp = *p & 0x1f;
			extra = 1;
		} else if ((*p & 0xf0) == 0xe0) {
			cp = *p & 0x0f;
			extra = 2;
		} else if ((*p & 0xf8) == 0xf0) {
			cp = *p & 0x07;
			extra = 3;
		} else {
			return false;
		}
		p++;
		for (int i = 0; i < extra; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (*p & 0x3f);
		}
		static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
		if (cp < min_cp[extra] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		uint16_t u16[2];
		size_t n = 1;
		if (cp >= 0x10000) {
			cp -= 0x10000;
			u16[0] = (uint16_t)(0xd800 | cp >> 10);
			u16[1] = (uint16_t)(0xdc00 | (cp & 0x3ff));
			n = 2;
		} else {
			u16[0] = (uint16_t)cp;
		}
		if (units + n > UW_STRING_MAX_UNITS)
			return false;
		for (size_t i = 0; i < n; i++, units++) {
			d->bytes[2 + 2 * units] = (uint8_t)u16[i];
			d->bytes[3 + 2 * units] = (uint8_t)(u16[i] >> 8);
		}
	}
	d->len = (uint8_t)(2 + 2 * units);
	d->bytes[0] = d->len;
	d->bytes[1] = UW_DT_STRING;
	return true;
}

/* The configuration as seen at full speed: type 7, bulk packets of 64, interrupt and
 * isochronous packets capped and their intervals converted from microframes to frames. */
static void make_other_speed(uint8_t *o, size_t len)
{
	o[1] = UW_DT_OTHER_SPEED_CONFIG;
	for (size_t off = o[0]; off + 2 <= len && o[off] >= 2; off += o[off]) {
		uint8_t *d = o + off;
		if (d[1] != UW_DT_ENDPOINT || d[0] < UW_ENDPOINT_DESC_LEN)
			continue;
		unsigned mps = le16(d + 4) & 0x7ff;
		unsigned exp = d[6] >= 1 && d[6] <= 16 ? d[6] : 1;
		switch (d[3] & 3) {
		case UW_XFER_BULK:
			mps = 64;
			break;
		case UW_XFER_INT: {
			mps = mps > 64 ? 64 : mps;
			unsigned frames = (1u << (exp - 1)) / 8;
			d[6] = (uint8_t)(frames < 1 ? 1 : frames > 255 ? 255 : frames);
			break;
		}
		case UW_XFER_ISO:
			mps = mps > 1023 ? 1023 : mps;
			d[6] = (uint8_t)(exp > 3 ? exp - 3 : 1);
			break;
		default:
			break;
		}
		d[4] = (uint8_t)mps;
		d[5] = (uint8_t)(mps >> 8);
	}
}

/* ---- State changes --------------------------------------------------------------------- */

static void rebuild_eps(uw_emu *e)
{
	uw_ep_table t;
	int r = uw_ep_table_build(e->config_value ? e->config : NULL, e->config_len, &e->alt,
	                          &e->devd, &t, NULL);
	/* Selections are checked before they are made, so this cannot fail; if it did, fall
	 * back to endpoint 0 only rather than keep a stale table. */
	if (r != UW_OK)
		r = uw_ep_table_build(NULL, 0, NULL, &e->devd, &t, NULL);
	if (r == UW_OK)
		e->eps = t;
}

/* Recompute d->info and d->ifaces; tell the server when they changed and notify is set. */
static void update_info(uw_emu *e, bool notify)
{
	uw_dev *d = &e->dev;
	uw_usb_device info;
	uw_usb_interface ifaces[UW_MAX_INTERFACES];
	memset(&info, 0, sizeof info);
	memset(ifaces, 0, sizeof ifaces);
	/* While no host has configured it, an emulated device is described as it will be once
	 * configured - its one configuration, altsettings 0 - as usbip-host exports devices the
	 * server's own kernel has configured. `usbip list` then shows the interface classes. */
	uint8_t shown = e->config_value ? e->config_value : e->config[5];
	int r = uw_devrec_from_descriptors(&e->devd, e->config, e->config_len, shown,
	                                   e->config_value ? &e->alt : NULL, e->busid, e->path,
	                                   e->busnum, e->devnum, (enum uw_speed)e->speed, &info,
	                                   ifaces, UW_MAX_INTERFACES);
	if (r != UW_OK)
		return; /* validated at creation: cannot happen */
	bool changed = memcmp(&info, &d->info, sizeof info) != 0 ||
	               memcmp(ifaces, d->ifaces, sizeof ifaces) != 0;
	d->info = info;
	memcpy(d->ifaces, ifaces, sizeof ifaces);
	if (changed && notify && d->notify)
		d->notify(d, UW_DEV_EV_INFO);
}

/* Back to the Default/Address state: unconfigured, altsettings 0, no halts. Tells the class
 * (configure 0) when it was configured, or always when force_class. */
static void unconfigure(uw_emu *e, bool force_class)
{
	bool was = e->config_value != 0;
	e->config_value = 0;
	e->remote_wakeup = false;
	uw_alt_sel_reset(&e->alt);
	e->halted[0] = e->halted[1] = 0;
	rebuild_eps(e);
	if ((was || force_class) && e->cls->configure)
		e->cls->configure(e, 0);
}

static int set_configuration(uw_emu *e, uint8_t v)
{
	if (v != 0 && v != e->cfgd.configuration_value)
		return UW_EMU_STALL;
	/* SET_CONFIGURATION with the current value still resets altsettings and halts (9.1.1.5);
	 * the class sees it as unconfigure + configure. */
	unconfigure(e, false);
	if (v) {
		e->config_value = v;
		rebuild_eps(e);
		if (e->cls->configure)
			e->cls->configure(e, v);
	}
	update_info(e, true);
	return 0;
}

static bool iface_exists(const uw_emu *e, uint8_t iface)
{
	return e->config_value &&
	       uw_config_find_alt(e->config, e->config_len, iface, 0, NULL) == UW_OK;
}

static int set_interface(uw_emu *e, uint8_t iface, uint8_t alt)
{
	if (!e->config_value ||
	    uw_config_find_alt(e->config, e->config_len, iface, alt, NULL) != UW_OK)
		return UW_EMU_STALL;
	uw_alt_sel sel = e->alt;
	sel.alt[iface] = alt;
	uw_ep_table t;
	if (uw_ep_table_build(e->config, e->config_len, &sel, &e->devd, &t, NULL) != UW_OK)
		return UW_EMU_STALL; /* would clash with another interface's endpoints */
	/* Endpoints of the interface, old and new setting, start un-halted (9.1.1.5). */
	for (unsigned n = 1; n < UW_EP_TABLE_SIZE; n++) {
		if ((e->eps.in[n].xfer != UW_XFER_UNKNOWN && e->eps.in[n].iface == iface) ||
		    (t.in[n].xfer != UW_XFER_UNKNOWN && t.in[n].iface == iface))
			e->halted[UW_DIR_IN] &= (uint16_t) ~(1u << n);
		if ((e->eps.out[n].xfer != UW_XFER_UNKNOWN && e->eps.out[n].iface == iface) ||
		    (t.out[n].xfer != UW_XFER_UNKNOWN && t.out[n].iface == iface))
			e->halted[UW_DIR_OUT] &= (uint16_t) ~(1u << n);
	}
	e->alt = sel;
	e->eps = t;
	if (e->cls->set_alt)
		e->cls->set_alt(e, iface, alt);
	update_info(e, true);
	return 0;
}

/* ---- Standard requests ------------------------------------------------------------------ */

/* Copy a reply into the data stage: at most room bytes. Returns the count. */
static int reply(uw_urb *u, uint32_t room, const void *src, size_t len)
{
	uint32_t n = len < room ? (uint32_t)len : room;
	if (n)
		memcpy(u->buf, src, n);
	return (int)n;
}

static int get_descriptor(uw_emu *e, uw_urb *u, uint32_t room)
{
	uint8_t type = (uint8_t)(u->setup.w_value >> 8);
	uint8_t index = (uint8_t)u->setup.w_value;
	bool high = e->speed == UW_SPEED_HIGH;
	switch (type) {
	case UW_DT_DEVICE:
		return reply(u, room, e->device, sizeof e->device);
	case UW_DT_CONFIG:
		if (index != 0)
			return UW_EMU_STALL;
		return reply(u, room, e->config, e->config_len);
	case UW_DT_STRING:
		/* Any LANGID is answered with the US English strings. */
		if (index >= e->num_strings || e->strings[index].len == 0)
			return UW_EMU_STALL;
		return reply(u, room, e->strings[index].bytes, e->strings[index].len);
	case UW_DT_DEVICE_QUALIFIER:
		/* Only a high-speed capable device running at high speed has one (9.6.2). */
		return high ? reply(u, room, e->qualifier, sizeof e->qualifier) : UW_EMU_STALL;
	case UW_DT_OTHER_SPEED_CONFIG:
		if (!high || !e->other || index != 0)
			return UW_EMU_STALL;
		return reply(u, room, e->other, e->config_len);
	case UW_DT_BOS:
		return e->bos ? reply(u, room, e->bos, e->bos_len) : UW_EMU_STALL;
	default:
		return UW_EMU_STALL;
	}
}

/* The endpoint a wIndex names, if the client may address it now. */
static bool ep_exists(const uw_emu *e, uint16_t w_index, unsigned *num, unsigned *dir)
{
	if (w_index & 0xff70)
		return false;
	*num = w_index & 0x0f;
	*dir = (w_index & 0x80) ? UW_DIR_IN : UW_DIR_OUT;
	if (*num == 0)
		return true;
	return uw_ep_table_xfer(&e->eps, *num, *dir) != UW_XFER_UNKNOWN;
}

static int standard_device(uw_emu *e, uw_urb *u, uint32_t room, bool in)
{
	const uw_setup *s = &u->setup;
	uint8_t buf[2];
	switch (s->b_request) {
	case REQ_GET_STATUS:
		if (!in)
			return UW_EMU_STALL;
		buf[0] =
		    (uint8_t)(((e->cfgd.attributes & 0x40) ? 1 : 0) | (e->remote_wakeup ? 2 : 0));
		buf[1] = 0;
		return reply(u, room, buf, 2);
	case REQ_CLEAR_FEATURE:
	case REQ_SET_FEATURE:
		if (in || s->w_value != FEAT_REMOTE_WAKEUP || !(e->cfgd.attributes & 0x20))
			return UW_EMU_STALL; /* TEST_MODE and others: not supported */
		e->remote_wakeup = s->b_request == REQ_SET_FEATURE;
		return 0;
	case REQ_SET_ADDRESS:
		/* vhci assigns addresses on the client side; other clients may still send it. */
		return in ? UW_EMU_STALL : 0;
	case REQ_GET_DESCRIPTOR:
		return in ? get_descriptor(e, u, room) : UW_EMU_STALL;
	case REQ_GET_CONFIGURATION:
		if (!in)
			return UW_EMU_STALL;
		return reply(u, room, &e->config_value, 1);
	case REQ_SET_CONFIGURATION:
		if (in || s->w_value > 0xff)
			return UW_EMU_STALL;
		return set_configuration(e, (uint8_t)s->w_value);
	default: /* SET_DESCRIPTOR and anything unknown */
		return UW_EMU_STALL;
	}
}

static int standard_interface(uw_emu *e, uw_urb *u, uint32_t room, bool in)
{
	const uw_setup *s = &u->setup;
	uint8_t iface = (uint8_t)s->w_index;
	uint8_t buf[2] = {0, 0};
	switch (s->b_request) {
	case REQ_GET_STATUS:
		if (!in || s->w_index > 0xff || !iface_exists(e, iface))
			return UW_EMU_STALL;
		return reply(u, room, buf, 2);
	case REQ_GET_INTERFACE:
		if (!in || s->w_index > 0xff || !iface_exists(e, iface))
			return UW_EMU_STALL;
		return reply(u, room, &e->alt.alt[iface], 1);
	case REQ_SET_INTERFACE:
		if (in || s->w_index > 0xff || s->w_value > 0xff)
			return UW_EMU_STALL;
		return set_interface(e, iface, (uint8_t)s->w_value);
	default: /* GET_DESCRIPTOR of a class descriptor (HID report), ... */
		return TO_CLASS;
	}
}

static int standard_endpoint(uw_emu *e, uw_urb *u, uint32_t room, bool in)
{
	const uw_setup *s = &u->setup;
	unsigned num, dir;
	switch (s->b_request) {
	case REQ_GET_STATUS: {
		if (!in || !ep_exists(e, s->w_index, &num, &dir))
			return UW_EMU_STALL;
		uint8_t buf[2] = {(uint8_t)((e->halted[dir] >> num) & 1), 0};
		return reply(u, room, buf, 2);
	}
	case REQ_CLEAR_FEATURE:
	case REQ_SET_FEATURE:
		if (in || s->w_value != FEAT_ENDPOINT_HALT || !ep_exists(e, s->w_index, &num, &dir))
			return UW_EMU_STALL;
		if (num == 0)
			return 0; /* endpoint 0 never stays halted */
		if (s->b_request == REQ_SET_FEATURE) {
			e->halted[dir] |= (uint16_t)(1u << num);
		} else {
			e->halted[dir] &= (uint16_t) ~(1u << num);
			if (e->cls->clear_halt)
				e->cls->clear_halt(e,
				                   (uint8_t)(num | (dir == UW_DIR_IN ? 0x80 : 0)));
		}
		return 0;
	default: /* SYNCH_FRAME, ... */
		return TO_CLASS;
	}
}

static void control(uw_emu *e, uw_urb *u)
{
	const uw_setup *s = &u->setup;
	bool in = (s->bm_request_type & 0x80) != 0;
	uint32_t room = in ? min_u32(s->w_length, u->len) : 0;
	int n = TO_CLASS;
	if (in && room && !u->buf)
		room = 0;
	if (((s->bm_request_type >> 5) & 3) == TYPE_STANDARD) {
		switch (s->bm_request_type & 0x1f) {
		case RECIP_DEVICE:
			n = standard_device(e, u, room, in);
			break;
		case RECIP_INTERFACE:
			n = standard_interface(e, u, room, in);
			break;
		case RECIP_ENDPOINT:
			n = standard_endpoint(e, u, room, in);
			break;
		default:
			n = UW_EMU_STALL;
			break;
		}
	} else if (((s->bm_request_type >> 5) & 3) == 3) {
		n = UW_EMU_STALL; /* reserved type */
	}
	if (n == TO_CLASS)
		n = e->cls->control ? e->cls->control(e, u) : UW_EMU_STALL;
	if (n == UW_EMU_ASYNC)
		return;
	if (n == UW_EMU_STALL || n < UW_EMU_ASYNC) {
		uw_urb_complete(u, n == UW_EMU_STALL ? UW_URB_EPIPE : n, 0);
		return;
	}
	/* Never more than wLength and the buffer, whatever the class said. */
	uint32_t actual = in ? min_u32((uint32_t)n, room) : min_u32((uint32_t)n, u->len);
	uw_emu_complete(u, 0, actual);
}

/* ---- uw_dev ops ------------------------------------------------------------------------- */

static void emu_submit(uw_dev *d, uw_urb *u)
{
	uw_emu *e = d->priv;
	if (u->ep == 0) {
		control(e, u);
		return;
	}
	if (u->ep >= UW_EP_TABLE_SIZE) {
		uw_urb_complete(u, UW_URB_EPIPE, 0);
		return;
	}
	if (!e->config_value) {
		uw_urb_complete(u, UW_URB_ESHUTDOWN, 0);
		return;
	}
	unsigned dir = u->dir == UW_DIR_IN ? UW_DIR_IN : UW_DIR_OUT;
	if (uw_ep_table_xfer(&e->eps, u->ep, dir) == UW_XFER_UNKNOWN ||
	    ((e->halted[dir] >> u->ep) & 1) || !e->cls->transfer) {
		uw_urb_complete(u, UW_URB_EPIPE, 0);
		return;
	}
	e->cls->transfer(e, u);
}

static void emu_cancel(uw_dev *d, uw_urb *u)
{
	uw_emu *e = d->priv;
	/* The framework holds nothing; only the class can own u now. */
	if (e->cls->cancel)
		e->cls->cancel(e, u);
}

static int emu_ep_type(uw_dev *d, unsigned ep, unsigned dir)
{
	const uw_emu *e = d->priv;
	return uw_ep_table_xfer(&e->eps, ep, dir);
}

static int emu_import(uw_dev *d)
{
	uw_emu *e = d->priv;
	if (e->imported)
		return UW_E_BUSY;
	unconfigure(e, false);
	if (e->cls->import) {
		int r = e->cls->import(e);
		if (r != UW_OK)
			return r;
	}
	e->imported = true;
	update_info(e, false);
	return UW_OK;
}

static void emu_release(uw_dev *d)
{
	uw_emu *e = d->priv;
	unconfigure(e, true);
	if (e->cls->release)
		e->cls->release(e);
	e->imported = false;
	update_info(e, false);
}

static void emu_free(uw_emu *e)
{
	free(e->config);
	free(e->other);
	free(e->bos);
	free(e->strings);
	free(e);
}

static void emu_destroy(uw_dev *d)
{
	uw_emu *e = d->priv;
	if (e->config_value && e->cls->configure) {
		e->config_value = 0;
		e->cls->configure(e, 0);
	}
	if (e->cls->destroy)
		e->cls->destroy(e);
	emu_free(e);
}

static const struct uw_dev_ops emu_ops = {
    .import = emu_import,
    .submit = emu_submit,
    .cancel = emu_cancel,
    .ep_type = emu_ep_type,
    .release = emu_release,
    .destroy = emu_destroy,
};

/* ---- Creation ------------------------------------------------------------------------- */

static int load_strings(uw_emu *e, const struct uw_emu_desc *desc)
{
	size_t n = desc->num_strings ? desc->num_strings : 1;
	if (n > 256)
		return UW_E_DESC;
	e->strings = calloc(n, sizeof *e->strings);
	if (!e->strings)
		return UW_E_NOMEM;
	e->num_strings = n;
	static const uint8_t langids[4] = {4, UW_DT_STRING, 0x09, 0x04}; /* US English */
	e->strings[0].len = 4;
	memcpy(e->strings[0].bytes, langids, 4);
	for (size_t i = 1; i < n; i++) {
		if (desc->strings[i] && !utf8_to_desc(desc->strings[i], &e->strings[i]))
			return UW_E_DESC;
	}
	/* Every index the device descriptor names must exist. */
	const uint8_t idx[3] = {e->devd.i_manufacturer, e->devd.i_product, e->devd.i_serial_number};
	for (int i = 0; i < 3; i++) {
		if (idx[i] && (idx[i] >= n || e->strings[idx[i]].len == 0))
			return UW_E_DESC;
	}
	if (e->cfgd.i_configuration &&
	    (e->cfgd.i_configuration >= n || e->strings[e->cfgd.i_configuration].len == 0))
		return UW_E_DESC;
	return UW_OK;
}

static int load_descriptors(uw_emu *e, const struct uw_emu_desc *desc)
{
	if (!desc->device || !desc->config || desc->config_len > UW_MAX_CONFIG_TOTAL_LEN ||
	    (desc->num_strings && !desc->strings))
		return UW_E_DESC;
	memcpy(e->device, desc->device, sizeof e->device);
	if (uw_device_desc_parse(e->device, sizeof e->device, &e->devd, NULL) != UW_OK ||
	    e->devd.num_configurations != 1)
		return UW_E_DESC;
	if (uw_config_check(desc->config, desc->config_len, &e->cfgd, NULL) != UW_OK ||
	    e->cfgd.total_length != desc->config_len || e->cfgd.configuration_value == 0 ||
	    !(e->cfgd.attributes & 0x80))
		return UW_E_DESC;
	e->config = malloc(desc->config_len);
	if (!e->config)
		return UW_E_NOMEM;
	memcpy(e->config, desc->config, desc->config_len);
	e->config_len = desc->config_len;
	if (desc->speed == UW_SPEED_HIGH) {
		if (e->devd.bcd_usb < 0x0200)
			return UW_E_DESC;
		e->other = malloc(e->config_len);
		if (!e->other)
			return UW_E_NOMEM;
		memcpy(e->other, e->config, e->config_len);
		make_other_speed(e->other, e->config_len);
		if (uw_other_speed_config_check(e->other, e->config_len, NULL, NULL) != UW_OK)
			return UW_E_DESC;
		const uint8_t q[UW_QUALIFIER_DESC_LEN] = {
		    UW_QUALIFIER_DESC_LEN, UW_DT_DEVICE_QUALIFIER,
		    e->device[2],          e->device[3],
		    e->device[4],          e->device[5],
		    e->device[6],          e->device[7],
		    e->device[17],         0};
		memcpy(e->qualifier, q, sizeof q);
	}
	if (desc->bos) {
		if (uw_bos_check(desc->bos, desc->bos_len, NULL, NULL) != UW_OK)
			return UW_E_DESC;
		e->bos = malloc(desc->bos_len);
		if (!e->bos)
			return UW_E_NOMEM;
		memcpy(e->bos, desc->bos, desc->bos_len);
		e->bos_len = desc->bos_len;
	}
	return load_strings(e, desc);
}

int uw_emu_new(const struct uw_emu_class *cls, const struct uw_emu_desc *desc, const char *busid,
               uint32_t busnum, uint32_t devnum, const char *spec, void *class_priv, uw_loop *loop,
               uw_dev **out)
{
	if (!cls || !desc || !busid || !out || !busid[0] || strlen(busid) >= UW_BUSID_SIZE ||
	    busnum > 0xffff || devnum > 0xffff)
		return UW_E_INVAL;
	if (desc->speed == UW_SPEED_UNKNOWN || desc->speed > UW_SPEED_SUPER_PLUS)
		return UW_E_DESC;
	uw_emu *e = calloc(1, sizeof *e);
	if (!e)
		return UW_E_NOMEM;
	int r = load_descriptors(e, desc);
	if (r != UW_OK) {
		emu_free(e);
		return r;
	}
	e->cls = cls;
	e->class_priv = class_priv;
	e->speed = desc->speed;
	e->busnum = busnum;
	e->devnum = devnum;
	snprintf(e->busid, sizeof e->busid, "%s", busid);
	snprintf(e->path, sizeof e->path, "/sys/devices/platform/usbwire/%s", busid);
	uw_alt_sel_reset(&e->alt);
	rebuild_eps(e);

	uw_dev *d = &e->dev;
	d->ops = &emu_ops;
	d->loop = loop;
	d->priv = e;
	snprintf(d->spec, sizeof d->spec, "%s", spec ? spec : cls->kind);
	/* The product string for logs and `list`, in its UTF-8 form. */
	const char *product = e->devd.i_product && e->devd.i_product < desc->num_strings
	                          ? desc->strings[e->devd.i_product]
	                          : NULL;
	snprintf(d->name, sizeof d->name, "%s", product ? product : cls->kind);
	update_info(e, false);
	*out = d;
	return UW_OK;
}

void *uw_emu_priv(const uw_emu *e)
{
	return e->class_priv;
}

uw_dev *uw_emu_dev(uw_emu *e)
{
	return &e->dev;
}

uw_emu *uw_emu_from_dev(uw_dev *d)
{
	return d->priv;
}

uint8_t uw_emu_config(const uw_emu *e)
{
	return e->config_value;
}

uint8_t uw_emu_alt(const uw_emu *e, uint8_t iface)
{
	return e->alt.alt[iface];
}

void uw_emu_set_halt(uw_emu *e, uint8_t ep_addr)
{
	unsigned num = ep_addr & 0x0f;
	if (num)
		e->halted[(ep_addr & 0x80) ? UW_DIR_IN : UW_DIR_OUT] |= (uint16_t)(1u << num);
}

bool uw_emu_halted(const uw_emu *e, uint8_t ep_addr)
{
	return (e->halted[(ep_addr & 0x80) ? UW_DIR_IN : UW_DIR_OUT] >> (ep_addr & 0x0f)) & 1;
}

uint16_t uw_emu_maxpacket(const uw_emu *e, uint8_t ep_addr)
{
	unsigned num = ep_addr & 0x0f;
	const uw_ep_info *i = (ep_addr & 0x80) ? &e->eps.in[num] : &e->eps.out[num];
	if (num == 0)
		return e->devd.max_packet_size0;
	return i->xfer == UW_XFER_UNKNOWN ? 0 : i->max_packet;
}

/* ---- Export specs ---------------------------------------------------------------------- */

const struct uw_emu_kind uw_emu_kinds[] = {
    {"storage", "emu:storage,file=IMG[,ro]", "USB mass storage (bulk-only SCSI) on a disk image",
     uw_emu_storage_new},
    {"keyboard", "emu:keyboard[,input=PATH]",
     "HID boot keyboard typing the lines of a file or FIFO", uw_emu_keyboard_new},
    {"serial", "emu:serial[,pty]", "CDC-ACM serial port: loopback, or bridged to a pty",
     uw_emu_serial_new},
    {"sink", "emu:sink[,pattern=0|1]", "Gadget Zero source/sink (usbtest, benchmarks)",
     uw_emu_sink_new},
    {"audio", "emu:audio[,signal=sine|ramp|silence][,input=PATH][,output=PATH]",
     "USB Audio Class 1 microphone and speaker, 48000 Hz, 2 channels, S16_LE", uw_emu_audio_new},
    {NULL, NULL, NULL, NULL},
};

__attribute__((format(printf, 3, 4))) static void errf(char *err, size_t errlen, const char *fmt,
                                                       ...)
{
	if (!err || !errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void uw_emu_set_err(const uw_emu_args *a, const char *fmt, ...)
{
	if (!a->err || !a->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(a->err, a->errlen, fmt, ap);
	va_end(ap);
}

int uw_emu_open_file(const char *path, int flags, struct stat *st)
{
	int fd = open(path, flags | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (fstat(fd, st) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

static const char *mode_kind(mode_t m)
{
	return S_ISREG(m)    ? "a regular file"
	       : S_ISDIR(m)  ? "a directory"
	       : S_ISFIFO(m) ? "a FIFO"
	       : S_ISSOCK(m) ? "a socket"
	       : S_ISCHR(m)  ? "a character device"
	       : S_ISBLK(m)  ? "a block device"
	       : S_ISLNK(m)  ? "a symbolic link (never followed)"
	                     : "an unknown kind of file";
}

const char *uw_emu_file_kind(const char *path, int err, const struct stat *st)
{
	if (st)
		return mode_kind(st->st_mode);
	struct stat ls;
	/* The errors a wrong kind of file causes: a link (ELOOP under O_NOFOLLOW), a socket or a
	 * FIFO without a reader (ENXIO), a directory opened for writing (EISDIR). */
	if ((err == ELOOP || err == ENXIO || err == EISDIR) && lstat(path, &ls) == 0)
		return mode_kind(ls.st_mode);
	return NULL;
}

const char *uw_emu_opt(const uw_emu_args *a, const char *key)
{
	for (size_t i = 0; i < a->num_opts; i++) {
		if (strcmp(a->keys[i], key) == 0)
			return a->values[i];
	}
	return NULL;
}

int uw_emu_check_opts(const uw_emu_args *a, const char *const *allowed)
{
	for (size_t i = 0; i < a->num_opts; i++) {
		bool ok = false;
		for (size_t j = 0; allowed && allowed[j]; j++)
			ok = ok || strcmp(a->keys[i], allowed[j]) == 0;
		if (!ok) {
			char list[256] = "";
			size_t off = 0;
			for (size_t j = 0; allowed && allowed[j] && off < sizeof list; j++) {
				int w = snprintf(list + off, sizeof list - off, "%s%s",
				                 j ? ", " : "", allowed[j]);
				off += w > 0 ? (size_t)w : 0;
			}
			errf(a->err, a->errlen, "emu:%s: unknown option \"%s\" (allowed: %s)",
			     a->kind, a->keys[i], list[0] ? list : "none");
			return UW_E_INVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(a->keys[i], a->keys[j]) == 0) {
				errf(a->err, a->errlen, "emu:%s: option \"%s\" given twice",
				     a->kind, a->keys[i]);
				return UW_E_INVAL;
			}
		}
	}
	return UW_OK;
}

int uw_emu_create(const char *spec, const char *busid, uint32_t busnum, uint32_t devnum,
                  uw_loop *loop, const uw_logger *log, uw_dev **out, char *err, size_t errlen)
{
	char buf[512];
	if (!spec || !out) {
		errf(err, errlen, "no device spec");
		return UW_E_INVAL;
	}
	if (strncmp(spec, "emu:", 4) != 0) {
		errf(err, errlen, "not an emulated device spec \"%s\" (expected emu:KIND[,OPT...])",
		     spec);
		return UW_E_INVAL;
	}
	if (strlen(spec + 4) >= sizeof buf) {
		errf(err, errlen, "device spec too long (at most %zu characters)", sizeof buf - 1);
		return UW_E_INVAL;
	}
	strcpy(buf, spec + 4);
	char *save = NULL;
	char *rest = strchr(buf, ',');
	if (rest)
		*rest++ = '\0';
	const struct uw_emu_kind *k = NULL;
	for (const struct uw_emu_kind *x = uw_emu_kinds; x->kind; x++) {
		if (strcmp(x->kind, buf) == 0)
			k = x;
	}
	if (!k) {
		char list[256] = "";
		size_t off = 0;
		for (const struct uw_emu_kind *x = uw_emu_kinds; x->kind && off < sizeof list;
		     x++) {
			int w = snprintf(list + off, sizeof list - off, "%s%s",
			                 x == uw_emu_kinds ? "" : ", ", x->kind);
			off += w > 0 ? (size_t)w : 0;
		}
		errf(err, errlen, "unknown device kind \"%s\" (known: %s)", buf, list);
		return UW_E_INVAL;
	}
	uw_emu_args a = {
	    .spec = spec,
	    .kind = k->kind,
	    .busid = busid,
	    .busnum = busnum,
	    .devnum = devnum,
	    .loop = loop,
	    .log = log,
	    .err = err,
	    .errlen = errlen,
	};
	if (rest) {
		/* strtok_r would merge empty options; walk by hand to reject them. */
		for (char *opt = rest; opt; opt = save) {
			save = strchr(opt, ',');
			if (save)
				*save++ = '\0';
			if (!opt[0] || opt[0] == '=') {
				errf(err, errlen, "emu:%s: empty option in \"%s\"", k->kind, spec);
				return UW_E_INVAL;
			}
			if (a.num_opts == sizeof a.keys / sizeof a.keys[0]) {
				errf(err, errlen, "emu:%s: too many options (at most %zu)", k->kind,
				     sizeof a.keys / sizeof a.keys[0]);
				return UW_E_INVAL;
			}
			char *eq = strchr(opt, '=');
			if (eq)
				*eq++ = '\0';
			a.keys[a.num_opts] = opt;
			a.values[a.num_opts] = eq ? eq : "";
			a.num_opts++;
		}
	}
	if (!busid || !busid[0] || strlen(busid) >= UW_BUSID_SIZE) {
		errf(err, errlen, "emu:%s: bad bus id", k->kind);
		return UW_E_INVAL;
	}
	errf(err, errlen, "emu:%s: cannot create the device", k->kind);
	int r = k->ctor(&a, out);
	if (r == UW_OK)
		errf(err, errlen, "%s", "");
	return r;
}
