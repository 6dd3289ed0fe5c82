/* SPDX-License-Identifier: MIT */
/*
 * uw_usbdesc.c - USB descriptor validation and decoding (see uw_usbdesc.h for the rules).
 *
 * Structure: small decoders that read one descriptor of known-good length through a cursor;
 * one walker per container (configuration, BOS) that checks every length and every rule that
 * spans descriptors; iterators that re-check lengths on each step (their state is caller
 * memory) and reuse the decoders; queries built on the iterators.
 */
#include "uw_usbdesc.h"

#include "uw_cursor.h"

/* ---- Helpers -------------------------------------------------------------------------------- */

static int fail(uw_desc_err *err, int code, size_t off, const char *what, int64_t value)
{
	if (err) {
		err->off = off;
		err->what = what;
		err->value = value;
	}
	return code;
}

static uint16_t le16_at(const uint8_t *p)
{
	uw_rcur c = uw_rcur_make(p, 2);
	return uw_get_le16(&c);
}

static bool ep0_size_ok(uint8_t mps, uint16_t bcd_usb)
{
	switch (mps) {
	case 8:
	case 16:
	case 32:
	case 64:
		return true;
	case 9:
		return bcd_usb >= 0x0300;
	default:
		return false;
	}
}

/*
 * Bounds of the descriptor at off inside [0, total): its bLength, or a negative error. Every
 * walker and iterator goes through this before looking at a descriptor's body.
 */
static int desc_at(const uint8_t *buf, size_t total, size_t off, uw_desc_err *err)
{
	size_t left = total - off;
	if (left < 2)
		return fail(err, UW_E_DESC, off, "descriptor: header crosses wTotalLength",
		            (int64_t)left);
	uint8_t bl = buf[off];
	if (bl < 2)
		return fail(err, UW_E_DESC, off, "descriptor.bLength: less than 2", bl);
	if (bl > left)
		return fail(err, UW_E_DESC, off, "descriptor.bLength: crosses wTotalLength", bl);
	return bl;
}

/* ---- Device and qualifier descriptors ------------------------------------------------------ */

int uw_device_desc_parse(const uint8_t *buf, size_t len, uw_device_desc *out, uw_desc_err *err)
{
	if (!buf || !out)
		return fail(err, UW_E_INVAL, 0, "device: NULL argument", 0);
	if (len >= 1 && buf[0] != UW_DEVICE_DESC_LEN)
		return fail(err, UW_E_DESC, 0, "device.bLength: not 18", buf[0]);
	if (len >= 2 && buf[1] != UW_DT_DEVICE)
		return fail(err, UW_E_DESC, 1, "device.bDescriptorType: not 1", buf[1]);
	if (len < UW_DEVICE_DESC_LEN)
		return fail(err, UW_E_SHORT, len, "device: input ends before byte 18",
		            (int64_t)len);

	uw_device_desc d;
	uw_rcur c = uw_rcur_make(buf, UW_DEVICE_DESC_LEN);
	(void)uw_rcur_take(&c, 2);
	d.bcd_usb = uw_get_le16(&c);
	d.device_class = uw_get_u8(&c);
	d.device_subclass = uw_get_u8(&c);
	d.device_protocol = uw_get_u8(&c);
	d.max_packet_size0 = uw_get_u8(&c);
	d.id_vendor = uw_get_le16(&c);
	d.id_product = uw_get_le16(&c);
	d.bcd_device = uw_get_le16(&c);
	d.i_manufacturer = uw_get_u8(&c);
	d.i_product = uw_get_u8(&c);
	d.i_serial_number = uw_get_u8(&c);
	d.num_configurations = uw_get_u8(&c);
	if (c.err)
		return fail(err, UW_E_SHORT, 0, "device: cursor overrun", 0);

	if (!ep0_size_ok(d.max_packet_size0, d.bcd_usb))
		return fail(err, UW_E_DESC, 7, "device.bMaxPacketSize0: not 8, 16, 32, 64 (or 9)",
		            d.max_packet_size0);
	if (d.num_configurations == 0)
		return fail(err, UW_E_DESC, 17, "device.bNumConfigurations: 0", 0);
	*out = d;
	return UW_OK;
}

unsigned uw_device_ep0_max_packet(const uw_device_desc *dev)
{
	if (!dev)
		return 0;
	if (dev->max_packet_size0 == 9 && dev->bcd_usb >= 0x0300)
		return 512;
	return dev->max_packet_size0;
}

int uw_qualifier_desc_parse(const uint8_t *buf, size_t len, uw_qualifier_desc *out,
                            uw_desc_err *err)
{
	if (!buf || !out)
		return fail(err, UW_E_INVAL, 0, "qualifier: NULL argument", 0);
	if (len >= 1 && buf[0] != UW_QUALIFIER_DESC_LEN)
		return fail(err, UW_E_DESC, 0, "qualifier.bLength: not 10", buf[0]);
	if (len >= 2 && buf[1] != UW_DT_DEVICE_QUALIFIER)
		return fail(err, UW_E_DESC, 1, "qualifier.bDescriptorType: not 6", buf[1]);
	if (len < UW_QUALIFIER_DESC_LEN)
		return fail(err, UW_E_SHORT, len, "qualifier: input ends before byte 10",
		            (int64_t)len);

	uw_qualifier_desc q;
	uw_rcur c = uw_rcur_make(buf, UW_QUALIFIER_DESC_LEN);
	(void)uw_rcur_take(&c, 2);
	q.bcd_usb = uw_get_le16(&c);
	q.device_class = uw_get_u8(&c);
	q.device_subclass = uw_get_u8(&c);
	q.device_protocol = uw_get_u8(&c);
	q.max_packet_size0 = uw_get_u8(&c);
	q.num_configurations = uw_get_u8(&c);
	(void)uw_get_u8(&c); /* bReserved */
	if (c.err)
		return fail(err, UW_E_SHORT, 0, "qualifier: cursor overrun", 0);
	/* The qualifier describes the other of full and high speed: never SuperSpeed's 9. */
	if (!ep0_size_ok(q.max_packet_size0, 0))
		return fail(err, UW_E_DESC, 7, "qualifier.bMaxPacketSize0: not 8, 16, 32 or 64",
		            q.max_packet_size0);
	*out = q;
	return UW_OK;
}

/* ---- Descriptor decoders (the caller has checked bLength) ---------------------------------- */

static void decode_config(const uint8_t *d, uw_config_desc *o)
{
	uw_rcur c = uw_rcur_make(d, UW_CONFIG_DESC_LEN);
	o->length = uw_get_u8(&c);
	o->type = uw_get_u8(&c);
	o->total_length = uw_get_le16(&c);
	o->num_interfaces = uw_get_u8(&c);
	o->configuration_value = uw_get_u8(&c);
	o->i_configuration = uw_get_u8(&c);
	o->attributes = uw_get_u8(&c);
	o->max_power = uw_get_u8(&c);
}

static void decode_interface(const uint8_t *d, uw_interface_desc *o)
{
	uw_rcur c = uw_rcur_make(d, UW_INTERFACE_DESC_LEN);
	(void)uw_rcur_take(&c, 2);
	o->interface_number = uw_get_u8(&c);
	o->alternate_setting = uw_get_u8(&c);
	o->num_endpoints = uw_get_u8(&c);
	o->interface_class = uw_get_u8(&c);
	o->interface_subclass = uw_get_u8(&c);
	o->interface_protocol = uw_get_u8(&c);
	o->i_interface = uw_get_u8(&c);
}

static void decode_iad(const uint8_t *d, uw_iad_desc *o)
{
	uw_rcur c = uw_rcur_make(d, UW_IAD_DESC_LEN);
	(void)uw_rcur_take(&c, 2);
	o->first_interface = uw_get_u8(&c);
	o->interface_count = uw_get_u8(&c);
	o->function_class = uw_get_u8(&c);
	o->function_subclass = uw_get_u8(&c);
	o->function_protocol = uw_get_u8(&c);
	o->i_function = uw_get_u8(&c);
}

/* Is the descriptor at off (inside total) of the given type and at least min long? */
static bool next_is(const uint8_t *buf, size_t total, size_t off, uint8_t type, size_t min)
{
	if (off >= total || total - off < 2)
		return false;
	size_t bl = buf[off];
	return bl >= min && bl <= total - off && buf[off + 1] == type;
}

/*
 * The endpoint at off (bLength >= 7 checked), with the SuperSpeed companion that directly follows
 * it and, for isochronous endpoints that announce one, the SuperSpeedPlus companion after that.
 */
static void decode_endpoint(const uint8_t *buf, size_t total, size_t off, uw_endpoint_desc *o)
{
	uw_rcur c = uw_rcur_make(buf + off, UW_ENDPOINT_DESC_LEN);
	(void)uw_rcur_take(&c, 2);
	o->address = uw_get_u8(&c);
	o->attributes = uw_get_u8(&c);
	o->max_packet_raw = uw_get_le16(&c);
	o->interval = uw_get_u8(&c);
	o->number = o->address & 0x0f;
	o->dir = (o->address & 0x80) ? UW_DIR_IN : UW_DIR_OUT;
	o->xfer = o->attributes & 3;
	o->max_packet = o->max_packet_raw & 0x7ff;
	o->mult = 1;
	if (o->xfer == UW_XFER_ISO || o->xfer == UW_XFER_INT)
		o->mult = (uint8_t)(((o->max_packet_raw >> 11) & 3) + 1);
	o->burst = 1;
	o->has_ss_comp = false;
	o->ss_attributes = 0;
	o->bytes_per_interval = 0;

	size_t coff = off + buf[off];
	if (!next_is(buf, total, coff, UW_DT_SS_EP_COMP, UW_SS_EP_COMP_LEN))
		return;
	c = uw_rcur_make(buf + coff, UW_SS_EP_COMP_LEN);
	(void)uw_rcur_take(&c, 2);
	uint8_t max_burst = uw_get_u8(&c);
	o->has_ss_comp = true;
	o->ss_attributes = uw_get_u8(&c);
	o->bytes_per_interval = uw_get_le16(&c);
	o->burst = (uint8_t)((max_burst & 0x0f) + 1);
	o->mult = 1; /* SuperSpeed: wMaxPacketSize bits 11..12 are reserved */
	if (o->xfer == UW_XFER_ISO) {
		o->mult = (uint8_t)((o->ss_attributes & 3) + 1);
		size_t poff = coff + buf[coff];
		if ((o->ss_attributes & 0x80) &&
		    next_is(buf, total, poff, UW_DT_SSP_ISO_EP_COMP, UW_SSP_ISO_EP_COMP_LEN)) {
			c = uw_rcur_make(buf + poff, UW_SSP_ISO_EP_COMP_LEN);
			(void)uw_rcur_take(&c, 4); /* bLength, type, wReserved */
			o->bytes_per_interval = uw_get_le32(&c);
		}
	}
}

/* ---- Configuration ------------------------------------------------------------------------ */

/* Which header types a walk accepts. */
enum cfg_types { CFG_ONLY = 1, OTHER_SPEED_ONLY = 2, CFG_ANY = 3 };

static int config_header(const uint8_t *buf, size_t len, enum cfg_types types, uw_config_desc *out,
                         uw_desc_err *err)
{
	if (!buf)
		return fail(err, UW_E_INVAL, 0, "configuration: NULL argument", 0);
	if (len >= 1 && buf[0] < UW_CONFIG_DESC_LEN)
		return fail(err, UW_E_DESC, 0, "configuration.bLength: less than 9", buf[0]);
	if (len >= 2) {
		bool ok = (buf[1] == UW_DT_CONFIG && (types & CFG_ONLY)) ||
		          (buf[1] == UW_DT_OTHER_SPEED_CONFIG && (types & OTHER_SPEED_ONLY));
		if (!ok)
			return fail(err, UW_E_DESC, 1,
			            types == CFG_ONLY ? "configuration.bDescriptorType: not 2"
			            : types == OTHER_SPEED_ONLY
			                ? "configuration.bDescriptorType: not 7"
			                : "configuration.bDescriptorType: not 2 or 7",
			            buf[1]);
	}
	if (len >= 4 && le16_at(buf + 2) < buf[0])
		return fail(err, UW_E_DESC, 2, "configuration.wTotalLength: less than bLength",
		            le16_at(buf + 2));
	if (len < UW_CONFIG_DESC_LEN)
		return fail(err, UW_E_SHORT, len, "configuration: input ends before byte 9",
		            (int64_t)len);
	decode_config(buf, out);
	return UW_OK;
}

/* What the walk remembers of each distinct interface number. */
struct iface_slot {
	uint8_t num;
	uint8_t nalts;
	size_t first_off;
	uint8_t alts[UW_IFACE_NUMBERS / 8]; /* bitmap of altsettings seen */
};

/* The descriptor just before the current one, for the companion placement rules. */
enum prev_kind { PREV_OTHER, PREV_EP, PREV_COMP_SSP, PREV_COMP };

struct cfg_walk {
	struct iface_slot slot[UW_MAX_INTERFACES];
	unsigned nslots;
	bool in_iface;
	size_t iface_off;    /* offset of the current interface descriptor */
	uint8_t eps_want;    /* its bNumEndpoints */
	uint8_t eps_seen;    /* endpoint descriptors after it so far */
	uint32_t ep_mask;    /* addresses used in it: bit (in ? 16 : 0) + number */
	enum prev_kind prev; /* kind of the previous descriptor */
	uint8_t ep_xfer;     /* transfer type of the last endpoint */
};

/* The current interface is complete: did exactly bNumEndpoints endpoints follow it? */
static int close_interface(struct cfg_walk *w, uw_desc_err *err)
{
	if (w->in_iface && w->eps_seen != w->eps_want)
		return fail(err, UW_E_DESC, w->iface_off + 4,
		            "interface.bNumEndpoints: fewer endpoint descriptors follow",
		            w->eps_want);
	return UW_OK;
}

static int walk_interface(struct cfg_walk *w, const uint8_t *d, size_t off, uw_desc_err *err)
{
	if (d[0] < UW_INTERFACE_DESC_LEN)
		return fail(err, UW_E_DESC, off, "interface.bLength: less than 9", d[0]);
	int r = close_interface(w, err);
	if (r < 0)
		return r;
	uw_interface_desc in;
	decode_interface(d, &in);
	if (in.num_endpoints > UW_MAX_ENDPOINTS)
		return fail(err, UW_E_LIMIT, off + 4, "interface.bNumEndpoints: more than 30",
		            in.num_endpoints);

	struct iface_slot *s = NULL;
	for (unsigned i = 0; i < w->nslots; i++)
		if (w->slot[i].num == in.interface_number)
			s = &w->slot[i];
	if (!s) {
		if (w->nslots == UW_MAX_INTERFACES)
			return fail(err, UW_E_LIMIT, off + 2,
			            "interface.bInterfaceNumber: more than 32 interfaces",
			            in.interface_number);
		s = &w->slot[w->nslots++];
		memset(s, 0, sizeof(*s));
		s->num = in.interface_number;
		s->first_off = off;
	}
	uint8_t bit = (uint8_t)(1u << (in.alternate_setting & 7));
	if (s->alts[in.alternate_setting >> 3] & bit)
		return fail(err, UW_E_DESC, off + 3,
		            "interface.bAlternateSetting: repeated for this interface",
		            in.alternate_setting);
	if (s->nalts == UW_MAX_ALTSETTINGS)
		return fail(err, UW_E_LIMIT, off + 3,
		            "interface.bAlternateSetting: more than 128 altsettings",
		            in.alternate_setting);
	s->alts[in.alternate_setting >> 3] |= bit;
	s->nalts++;

	w->in_iface = true;
	w->iface_off = off;
	w->eps_want = in.num_endpoints;
	w->eps_seen = 0;
	w->ep_mask = 0;
	return UW_OK;
}

static int walk_endpoint(struct cfg_walk *w, const uint8_t *d, size_t off, uw_desc_err *err)
{
	if (d[0] < UW_ENDPOINT_DESC_LEN)
		return fail(err, UW_E_DESC, off, "endpoint.bLength: less than 7", d[0]);
	if (!w->in_iface)
		return fail(err, UW_E_DESC, off, "endpoint: before any interface", 0);
	if (w->eps_seen == w->eps_want)
		return fail(err, UW_E_DESC, off,
		            "endpoint: more than the interface's bNumEndpoints", w->eps_seen + 1);
	w->eps_seen++;

	uint8_t addr = d[2];
	if (addr & 0x70)
		return fail(err, UW_E_DESC, off + 2, "endpoint.bEndpointAddress: reserved bits set",
		            addr);
	if ((addr & 0x0f) == 0)
		return fail(err, UW_E_DESC, off + 2, "endpoint.bEndpointAddress: endpoint 0", addr);
	uint32_t bit = 1u << (((addr & 0x80) ? 16u : 0u) + (addr & 0x0fu));
	if (w->ep_mask & bit)
		return fail(err, UW_E_DESC, off + 2,
		            "endpoint.bEndpointAddress: repeated in this altsetting", addr);
	w->ep_mask |= bit;

	uint8_t xfer = d[3] & 3;
	w->ep_xfer = xfer;
	uint16_t mps = le16_at(d + 4);
	if ((xfer == UW_XFER_ISO || xfer == UW_XFER_INT) && ((mps >> 11) & 3) == 3)
		return fail(err, UW_E_DESC, off + 4,
		            "endpoint.wMaxPacketSize: reserved transactions value 3", mps);
	return UW_OK;
}

static int walk_ss_comp(struct cfg_walk *w, const uint8_t *d, size_t off, uw_desc_err *err)
{
	if (d[0] < UW_SS_EP_COMP_LEN)
		return fail(err, UW_E_DESC, off, "ss_ep_companion.bLength: less than 6", d[0]);
	if (w->prev != PREV_EP)
		return fail(err, UW_E_DESC, off, "ss_ep_companion: not directly after an endpoint",
		            0);
	if (d[2] > 15)
		return fail(err, UW_E_DESC, off + 2, "ss_ep_companion.bMaxBurst: more than 15",
		            d[2]);
	uint8_t xfer = w->ep_xfer;
	if (xfer == UW_XFER_ISO && (d[3] & 3) == 3)
		return fail(err, UW_E_DESC, off + 3, "ss_ep_companion.bmAttributes: Mult 3", d[3]);
	if (xfer == UW_XFER_BULK && (d[3] & 0x1f) > 16)
		return fail(err, UW_E_DESC, off + 3,
		            "ss_ep_companion.bmAttributes: MaxStreams more than 16", d[3]);
	w->prev = (xfer == UW_XFER_ISO && (d[3] & 0x80)) ? PREV_COMP_SSP : PREV_COMP;
	return UW_OK;
}

/*
 * Validate a configuration of the given types. On success *hdr holds the header; the bytes
 * [0, hdr->total_length) are a well-formed chain.
 */
static int config_walk(const uint8_t *buf, size_t len, enum cfg_types types, uw_config_desc *hdr,
                       uw_desc_err *err)
{
	uw_config_desc h;
	int r = config_header(buf, len, types, &h, err);
	if (r < 0)
		return r;
	if (h.total_length > len)
		return fail(err, UW_E_SHORT, 2, "configuration.wTotalLength: beyond the input",
		            h.total_length);

	struct cfg_walk w;
	w.nslots = 0;
	w.in_iface = false;
	w.iface_off = 0;
	w.eps_want = w.eps_seen = 0;
	w.ep_mask = 0;
	w.prev = PREV_OTHER;
	w.ep_xfer = 0;

	size_t total = h.total_length;
	for (size_t off = h.length; off < total;) {
		r = desc_at(buf, total, off, err);
		if (r < 0)
			return r;
		size_t bl = (size_t)r;
		const uint8_t *d = buf + off;
		enum prev_kind next_prev = PREV_OTHER;
		switch (d[1]) {
		case UW_DT_INTERFACE:
			r = walk_interface(&w, d, off, err);
			break;
		case UW_DT_ENDPOINT:
			r = walk_endpoint(&w, d, off, err);
			next_prev = PREV_EP;
			break;
		case UW_DT_SS_EP_COMP:
			r = walk_ss_comp(&w, d, off, err);
			next_prev = w.prev;
			break;
		case UW_DT_SSP_ISO_EP_COMP:
			if (bl < UW_SSP_ISO_EP_COMP_LEN)
				r = fail(err, UW_E_DESC, off,
				         "ssp_iso_ep_companion.bLength: less than 8", d[0]);
			else if (w.prev != PREV_COMP_SSP)
				r = fail(
				    err, UW_E_DESC, off,
				    "ssp_iso_ep_companion: not after a companion announcing it", 0);
			break;
		case UW_DT_IAD:
			if (bl < UW_IAD_DESC_LEN)
				r = fail(err, UW_E_DESC, off,
				         "interface_association.bLength: less than 8", d[0]);
			else if (d[3] == 0)
				r = fail(err, UW_E_DESC, off + 3,
				         "interface_association.bInterfaceCount: 0", 0);
			else if ((unsigned)d[2] + d[3] > UW_IFACE_NUMBERS)
				r = fail(
				    err, UW_E_DESC, off + 3,
				    "interface_association.bInterfaceCount: past interface 255",
				    d[3]);
			break;
		case UW_DT_DEVICE:
		case UW_DT_CONFIG:
		case UW_DT_STRING:
		case UW_DT_DEVICE_QUALIFIER:
		case UW_DT_OTHER_SPEED_CONFIG:
		case UW_DT_BOS:
		case UW_DT_DEVICE_CAP:
			r = fail(err, UW_E_DESC, off + 1,
			         "descriptor.bDescriptorType: not allowed in a configuration",
			         d[1]);
			break;
		default:
			break; /* class-specific or vendor: length-checked above, skipped */
		}
		if (r < 0)
			return r;
		w.prev = next_prev;
		off += bl;
	}
	r = close_interface(&w, err);
	if (r < 0)
		return r;
	if (w.nslots != h.num_interfaces)
		return fail(err, UW_E_DESC, 4,
		            "configuration.bNumInterfaces: differs from the interfaces present",
		            h.num_interfaces);
	for (unsigned i = 0; i < w.nslots; i++)
		if (!(w.slot[i].alts[0] & 1))
			return fail(err, UW_E_DESC, w.slot[i].first_off + 3,
			            "interface.bAlternateSetting: interface has no altsetting 0",
			            w.slot[i].num);
	*hdr = h;
	return UW_OK;
}

int uw_config_header_parse(const uint8_t *buf, size_t len, uw_config_desc *out, uw_desc_err *err)
{
	uw_config_desc h;
	if (!out)
		return fail(err, UW_E_INVAL, 0, "configuration: NULL argument", 0);
	int r = config_header(buf, len, CFG_ANY, &h, err);
	if (r < 0)
		return r;
	*out = h;
	return UW_OK;
}

int uw_config_check(const uint8_t *buf, size_t len, uw_config_desc *out, uw_desc_err *err)
{
	uw_config_desc h;
	int r = config_walk(buf, len, CFG_ONLY, &h, err);
	if (r < 0)
		return r;
	if (out)
		*out = h;
	return UW_OK;
}

int uw_other_speed_config_check(const uint8_t *buf, size_t len, uw_config_desc *out,
                                uw_desc_err *err)
{
	uw_config_desc h;
	int r = config_walk(buf, len, OTHER_SPEED_ONLY, &h, err);
	if (r < 0)
		return r;
	if (out)
		*out = h;
	return UW_OK;
}

int uw_config_iter_init(uw_config_iter *it, const uint8_t *buf, size_t len, uw_desc_err *err)
{
	if (!it)
		return fail(err, UW_E_INVAL, 0, "configuration: NULL iterator", 0);
	uw_config_desc h;
	int r = config_walk(buf, len, CFG_ANY, &h, err);
	if (r < 0)
		return r;
	it->buf = buf;
	it->total = h.total_length;
	it->off = 0;
	it->iface = -1;
	it->alt = -1;
	return UW_OK;
}

int uw_config_iter_next(uw_config_iter *it, uw_desc_item *item)
{
	if (!it || !item || !it->buf)
		return UW_E_INVAL;
	if (it->off >= it->total)
		return 0;

	uw_desc_item x;
	memset(&x, 0, sizeof(x));
	size_t off = it->off;
	const uint8_t *d = it->buf + off;
	size_t bl;
	if (off == 0) {
		if (it->total < UW_CONFIG_DESC_LEN || d[0] < UW_CONFIG_DESC_LEN || d[0] > it->total)
			return UW_E_DESC;
		bl = d[0];
		x.kind = UW_DK_CONFIG;
		decode_config(d, &x.u.config);
	} else {
		int r = desc_at(it->buf, it->total, off, NULL);
		if (r < 0)
			return r;
		bl = (size_t)r;
		switch (d[1]) {
		case UW_DT_INTERFACE:
			if (bl < UW_INTERFACE_DESC_LEN)
				return UW_E_DESC;
			x.kind = UW_DK_INTERFACE;
			decode_interface(d, &x.u.intf);
			it->iface = x.u.intf.interface_number;
			it->alt = x.u.intf.alternate_setting;
			break;
		case UW_DT_ENDPOINT:
			if (bl < UW_ENDPOINT_DESC_LEN)
				return UW_E_DESC;
			x.kind = UW_DK_ENDPOINT;
			decode_endpoint(it->buf, it->total, off, &x.u.ep);
			break;
		case UW_DT_IAD:
			if (bl < UW_IAD_DESC_LEN)
				return UW_E_DESC;
			x.kind = UW_DK_IAD;
			decode_iad(d, &x.u.iad);
			break;
		case UW_DT_SS_EP_COMP:
			x.kind = UW_DK_SS_EP_COMP;
			break;
		case UW_DT_SSP_ISO_EP_COMP:
			x.kind = UW_DK_SSP_ISO_EP_COMP;
			break;
		default:
			x.kind = UW_DK_OTHER;
			break;
		}
	}
	x.type = d[1];
	x.raw = d;
	x.len = bl;
	x.off = off;
	x.iface = it->iface;
	x.alt = it->alt;
	it->off = off + bl;
	*item = x;
	return 1;
}

static uint8_t sel_alt(const uw_alt_sel *sel, int iface)
{
	return sel && iface >= 0 && iface < (int)UW_IFACE_NUMBERS ? sel->alt[iface] : 0;
}

int uw_config_interface_count(const uint8_t *cfg, size_t len)
{
	uw_config_desc h;
	int r = config_walk(cfg, len, CFG_ANY, &h, NULL);
	return r < 0 ? r : h.num_interfaces;
}

int uw_config_find_alt(const uint8_t *cfg, size_t len, uint8_t iface, uint8_t alt,
                       uw_interface_desc *out)
{
	uw_config_iter it;
	uw_desc_item x;
	int r = uw_config_iter_init(&it, cfg, len, NULL);
	if (r < 0)
		return r;
	while ((r = uw_config_iter_next(&it, &x)) > 0) {
		if (x.kind == UW_DK_INTERFACE && x.u.intf.interface_number == iface &&
		    x.u.intf.alternate_setting == alt) {
			if (out)
				*out = x.u.intf;
			return UW_OK;
		}
	}
	return r < 0 ? r : UW_E_NOTFOUND;
}

int uw_config_find_endpoint(const uint8_t *cfg, size_t len, const uw_alt_sel *sel, uint8_t ep_addr,
                            uw_endpoint_desc *out)
{
	if (!cfg || !out)
		return UW_E_INVAL;
	uw_config_iter it;
	uw_desc_item x;
	uw_endpoint_desc found;
	bool have = false;
	int r = uw_config_iter_init(&it, cfg, len, NULL);
	if (r < 0)
		return r;
	/* Walk to the end: a second match means two selected altsettings claim the address. */
	while ((r = uw_config_iter_next(&it, &x)) > 0) {
		if (x.kind == UW_DK_ENDPOINT && x.alt == sel_alt(sel, x.iface) &&
		    x.u.ep.address == ep_addr) {
			if (have)
				return UW_E_DESC;
			found = x.u.ep;
			have = true;
		}
	}
	if (r < 0)
		return r;
	if (!have)
		return UW_E_NOTFOUND;
	*out = found;
	return UW_OK;
}

/* Per interface number: did the selected altsetting turn up, and what is its class triple. */
struct sel_track {
	unsigned n;
	struct {
		uint8_t num;
		bool found;
		size_t first_off;
		uw_usb_interface triple;
	} e[UW_MAX_INTERFACES];
};

/* Record an interface item; returns false only if the validated limit would be exceeded. */
static bool track_interface(struct sel_track *t, const uw_desc_item *x, const uw_alt_sel *sel)
{
	unsigned i;
	for (i = 0; i < t->n; i++)
		if (t->e[i].num == x->u.intf.interface_number)
			break;
	if (i == t->n) {
		if (t->n == UW_MAX_INTERFACES)
			return false;
		t->n++;
		t->e[i].num = x->u.intf.interface_number;
		t->e[i].found = false;
		t->e[i].first_off = x->off;
	}
	if (x->u.intf.alternate_setting == sel_alt(sel, x->u.intf.interface_number)) {
		t->e[i].found = true;
		t->e[i].triple.iface_class = x->u.intf.interface_class;
		t->e[i].triple.iface_subclass = x->u.intf.interface_subclass;
		t->e[i].triple.iface_protocol = x->u.intf.interface_protocol;
	}
	return true;
}

/* Walk a configuration and track the selected altsetting of every interface. */
static int track_selection(const uint8_t *cfg, size_t len, const uw_alt_sel *sel,
                           struct sel_track *t, uw_ep_table *tab, uw_desc_err *err)
{
	uw_config_iter it;
	uw_desc_item x;
	int r = uw_config_iter_init(&it, cfg, len, err);
	if (r < 0)
		return r;
	t->n = 0;
	while ((r = uw_config_iter_next(&it, &x)) > 0) {
		if (x.kind == UW_DK_INTERFACE && !track_interface(t, &x, sel))
			return fail(err, UW_E_LIMIT, x.off + 2,
			            "interface.bInterfaceNumber: more than 32 interfaces",
			            x.u.intf.interface_number);
		if (!tab || x.kind != UW_DK_ENDPOINT || x.alt != sel_alt(sel, x.iface))
			continue;
		uw_ep_info *e =
		    x.u.ep.dir == UW_DIR_IN ? &tab->in[x.u.ep.number] : &tab->out[x.u.ep.number];
		if (e->xfer != UW_XFER_UNKNOWN)
			return fail(err, UW_E_DESC, x.off + 2,
			            "endpoint.bEndpointAddress: used by two selected altsettings",
			            x.u.ep.address);
		e->xfer = x.u.ep.xfer;
		e->interval = x.u.ep.interval;
		e->mult = x.u.ep.mult;
		e->burst = x.u.ep.burst;
		e->max_packet = x.u.ep.max_packet;
		e->iface = (uint8_t)x.iface;
		e->alt = (uint8_t)x.alt;
	}
	if (r < 0)
		return fail(err, r, it.off, "configuration: iterator failed", 0);
	for (unsigned i = 0; i < t->n; i++)
		if (!t->e[i].found)
			return fail(err, UW_E_NOTFOUND, t->e[i].first_off + 3,
			            "interface.bAlternateSetting: selected altsetting not present",
			            sel_alt(sel, t->e[i].num));
	/* Ascending interface number, as usbipd lists them (insertion sort of <= 32). */
	for (unsigned i = 1; i < t->n; i++) {
		for (unsigned j = i; j > 0 && t->e[j - 1].num > t->e[j].num; j--) {
			uint8_t num = t->e[j].num;
			uw_usb_interface tr = t->e[j].triple;
			t->e[j].num = t->e[j - 1].num;
			t->e[j].triple = t->e[j - 1].triple;
			t->e[j - 1].num = num;
			t->e[j - 1].triple = tr;
		}
	}
	return UW_OK;
}

int uw_config_interfaces(const uint8_t *cfg, size_t len, const uw_alt_sel *sel,
                         uw_usb_interface *out, size_t max, uw_desc_err *err)
{
	if (max && !out)
		return fail(err, UW_E_INVAL, 0, "configuration: NULL output", 0);
	struct sel_track t;
	int r = track_selection(cfg, len, sel, &t, NULL, err);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < t.n && i < max; i++)
		out[i] = t.e[i].triple;
	return (int)t.n;
}

int uw_ep_table_build(const uint8_t *cfg, size_t len, const uw_alt_sel *sel,
                      const uw_device_desc *dev, uw_ep_table *out, uw_desc_err *err)
{
	if (!out)
		return fail(err, UW_E_INVAL, 0, "endpoint table: NULL output", 0);
	uw_ep_table tab;
	memset(&tab, 0, sizeof(tab));
	for (unsigned i = 0; i < UW_EP_TABLE_SIZE; i++)
		tab.in[i].xfer = tab.out[i].xfer = UW_XFER_UNKNOWN;
	uw_ep_info ep0 = {.xfer = UW_XFER_CONTROL,
	                  .mult = 1,
	                  .burst = 1,
	                  .max_packet = (uint16_t)uw_device_ep0_max_packet(dev)};
	tab.in[0] = tab.out[0] = ep0;
	if (cfg) {
		struct sel_track t;
		int r = track_selection(cfg, len, sel, &t, &tab, err);
		if (r < 0)
			return r;
	}
	*out = tab;
	return UW_OK;
}

int uw_ep_table_xfer(const uw_ep_table *t, uint32_t ep, uint32_t dir)
{
	if (!t || ep >= UW_EP_TABLE_SIZE || dir > UW_DIR_IN)
		return UW_XFER_UNKNOWN;
	const uw_ep_info *e = dir == UW_DIR_IN ? &t->in[ep] : &t->out[ep];
	return e->xfer <= UW_XFER_INT ? e->xfer : UW_XFER_UNKNOWN;
}

int uw_ep_table_type_fn(void *user, uint32_t ep, uint32_t direction)
{
	return uw_ep_table_xfer(user, ep, direction);
}

/* ---- Strings ------------------------------------------------------------------------------- */

/* Validate a string descriptor's header; returns bLength or a negative error. */
static int string_header(const uint8_t *buf, size_t len, uw_desc_err *err)
{
	if (len >= 1 && buf[0] < 2)
		return fail(err, UW_E_DESC, 0, "string.bLength: less than 2", buf[0]);
	if (len >= 1 && (buf[0] & 1))
		return fail(err, UW_E_DESC, 0, "string.bLength: odd", buf[0]);
	if (len >= 2 && buf[1] != UW_DT_STRING)
		return fail(err, UW_E_DESC, 1, "string.bDescriptorType: not 3", buf[1]);
	if (len < 2)
		return fail(err, UW_E_SHORT, len, "string: input ends before byte 2", (int64_t)len);
	if (buf[0] > len)
		return fail(err, UW_E_SHORT, len, "string.bLength: beyond the input", buf[0]);
	return buf[0];
}

static size_t utf8_encode(uint32_t cp, uint8_t o[4])
{
	if (cp < 0x80) {
		o[0] = (uint8_t)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (uint8_t)(0xc0 | (cp >> 6));
		o[1] = (uint8_t)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (uint8_t)(0xe0 | (cp >> 12));
		o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (uint8_t)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (uint8_t)(0xf0 | (cp >> 18));
	o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (uint8_t)(0x80 | (cp & 0x3f));
	return 4;
}

int uw_string_desc_to_utf8(const uint8_t *buf, size_t len, char *out, size_t cap, uw_desc_err *err)
{
	if (!buf || !out || cap == 0)
		return fail(err, UW_E_INVAL, 0, "string: NULL argument or capacity 0", 0);
	int r = string_header(buf, len, err);
	if (r < 0)
		return r;
	uw_rcur c = uw_rcur_make(buf + 2, (size_t)r - 2);
	size_t need = 0, put = 0;
	bool full = false;
	while (uw_rcur_left(&c) >= 2) {
		uint32_t cp = uw_get_le16(&c);
		if (cp >= 0xd800 && cp <= 0xdbff) {
			/* A high surrogate: only a following low surrogate completes it. */
			uint32_t lo = 0;
			if (uw_rcur_left(&c) >= 2) {
				lo = c.p[c.off] | (uint32_t)c.p[c.off + 1] << 8;
			}
			if (lo >= 0xdc00 && lo <= 0xdfff) {
				(void)uw_get_le16(&c);
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			} else {
				cp = 0xfffd;
			}
		} else if ((cp >= 0xdc00 && cp <= 0xdfff) || cp == 0) {
			cp = 0xfffd;
		}
		uint8_t enc[4];
		size_t n = utf8_encode(cp, enc);
		need += n;
		if (!full && put + n < cap) {
			memcpy(out + put, enc, n);
			put += n;
		} else {
			full = true; /* never append after a character that did not fit */
		}
	}
	out[put] = '\0';
	return (int)need;
}

int uw_string_langids(const uint8_t *buf, size_t len, uint16_t *ids, size_t max, uw_desc_err *err)
{
	if (!buf || (max && !ids))
		return fail(err, UW_E_INVAL, 0, "string: NULL argument", 0);
	int r = string_header(buf, len, err);
	if (r < 0)
		return r;
	size_t n = ((size_t)r - 2) / 2;
	uw_rcur c = uw_rcur_make(buf + 2, (size_t)r - 2);
	for (size_t i = 0; i < n && i < max; i++)
		ids[i] = uw_get_le16(&c);
	return (int)n;
}

/* ---- BOS ------------------------------------------------------------------------------------ */

static int bos_header(const uint8_t *buf, size_t len, uw_bos_desc *out, size_t *hlen,
                      uw_desc_err *err)
{
	if (!buf)
		return fail(err, UW_E_INVAL, 0, "BOS: NULL argument", 0);
	if (len >= 1 && buf[0] < UW_BOS_DESC_LEN)
		return fail(err, UW_E_DESC, 0, "BOS.bLength: less than 5", buf[0]);
	if (len >= 2 && buf[1] != UW_DT_BOS)
		return fail(err, UW_E_DESC, 1, "BOS.bDescriptorType: not 15", buf[1]);
	if (len >= 4 && le16_at(buf + 2) < buf[0])
		return fail(err, UW_E_DESC, 2, "BOS.wTotalLength: less than bLength",
		            le16_at(buf + 2));
	if (len < UW_BOS_DESC_LEN)
		return fail(err, UW_E_SHORT, len, "BOS: input ends before byte 5", (int64_t)len);
	uw_rcur c = uw_rcur_make(buf, UW_BOS_DESC_LEN);
	*hlen = uw_get_u8(&c);
	(void)uw_get_u8(&c);
	out->total_length = uw_get_le16(&c);
	out->num_caps = uw_get_u8(&c);
	return UW_OK;
}

/* Minimum length of a known capability whose first bLength bytes are at d (bLength >= 3). */
static size_t devcap_min_len(const uint8_t *d, size_t bl)
{
	switch (d[2]) {
	case UW_CAP_USB2_EXT:
		return 7;
	case UW_CAP_SUPERSPEED:
		return 10;
	case UW_CAP_CONTAINER_ID:
	case UW_CAP_PLATFORM:
		return 20;
	case UW_CAP_SUPERSPEED_PLUS:
		if (bl < 12)
			return 12;
		return 12 + 4 * ((size_t)(d[4] & 0x1f) + 1);
	default:
		return UW_DEVCAP_MIN_LEN;
	}
}

int uw_bos_header_parse(const uint8_t *buf, size_t len, uw_bos_desc *out, uw_desc_err *err)
{
	uw_bos_desc h;
	size_t hl;
	if (!out)
		return fail(err, UW_E_INVAL, 0, "BOS: NULL argument", 0);
	int r = bos_header(buf, len, &h, &hl, err);
	if (r < 0)
		return r;
	*out = h;
	return UW_OK;
}

/* Validate a BOS; on success *hdr and *hlen (the header's bLength) are set. */
static int bos_walk(const uint8_t *buf, size_t len, uw_bos_desc *hdr, size_t *hlen,
                    uw_desc_err *err)
{
	uw_bos_desc h;
	size_t hl;
	int r = bos_header(buf, len, &h, &hl, err);
	if (r < 0)
		return r;
	if (h.total_length > len)
		return fail(err, UW_E_SHORT, 2, "BOS.wTotalLength: beyond the input",
		            h.total_length);
	if (h.num_caps > UW_MAX_BOS_CAPS)
		return fail(err, UW_E_LIMIT, 4, "BOS.bNumDeviceCaps: more than 64", h.num_caps);
	unsigned n = 0;
	size_t total = h.total_length;
	for (size_t off = hl; off < total;) {
		r = desc_at(buf, total, off, err);
		if (r < 0)
			return r;
		size_t bl = (size_t)r;
		const uint8_t *d = buf + off;
		if (d[1] != UW_DT_DEVICE_CAP)
			return fail(err, UW_E_DESC, off + 1, "capability.bDescriptorType: not 16",
			            d[1]);
		if (bl < UW_DEVCAP_MIN_LEN)
			return fail(err, UW_E_DESC, off, "capability.bLength: less than 3", d[0]);
		if (bl < devcap_min_len(d, bl))
			return fail(err, UW_E_DESC, off,
			            "capability.bLength: too short for its capability type", d[0]);
		if (++n > h.num_caps)
			return fail(err, UW_E_DESC, off,
			            "BOS.bNumDeviceCaps: more capabilities follow", h.num_caps);
		off += bl;
	}
	if (n != h.num_caps)
		return fail(err, UW_E_DESC, 4, "BOS.bNumDeviceCaps: fewer capabilities follow",
		            h.num_caps);
	*hdr = h;
	*hlen = hl;
	return UW_OK;
}

int uw_bos_check(const uint8_t *buf, size_t len, uw_bos_desc *out, uw_desc_err *err)
{
	uw_bos_desc h;
	size_t hl;
	int r = bos_walk(buf, len, &h, &hl, err);
	if (r < 0)
		return r;
	if (out)
		*out = h;
	return UW_OK;
}

int uw_bos_iter_init(uw_bos_iter *it, const uint8_t *buf, size_t len, uw_desc_err *err)
{
	if (!it)
		return fail(err, UW_E_INVAL, 0, "BOS: NULL iterator", 0);
	uw_bos_desc h;
	size_t hl;
	int r = bos_walk(buf, len, &h, &hl, err);
	if (r < 0)
		return r;
	it->buf = buf;
	it->total = h.total_length;
	it->off = hl;
	return UW_OK;
}

int uw_bos_iter_next(uw_bos_iter *it, uw_devcap *cap)
{
	if (!it || !cap || !it->buf)
		return UW_E_INVAL;
	if (it->off >= it->total)
		return 0;
	int r = desc_at(it->buf, it->total, it->off, NULL);
	if (r < 0)
		return r;
	size_t bl = (size_t)r;
	const uint8_t *d = it->buf + it->off;
	if (bl < UW_DEVCAP_MIN_LEN || bl < devcap_min_len(d, bl))
		return UW_E_DESC;

	uw_devcap x;
	memset(&x, 0, sizeof(x));
	x.cap_type = d[2];
	x.raw = d;
	x.len = bl;
	x.off = it->off;
	uw_rcur c = uw_rcur_make(d, bl);
	(void)uw_rcur_take(&c, 3);
	switch (x.cap_type) {
	case UW_CAP_USB2_EXT:
		x.u.usb2_ext.attributes = uw_get_le32(&c);
		break;
	case UW_CAP_SUPERSPEED:
		x.u.superspeed.attributes = uw_get_u8(&c);
		x.u.superspeed.speeds_supported = uw_get_le16(&c);
		x.u.superspeed.functionality_support = uw_get_u8(&c);
		x.u.superspeed.u1_exit_lat = uw_get_u8(&c);
		x.u.superspeed.u2_exit_lat = uw_get_le16(&c);
		break;
	case UW_CAP_SUPERSPEED_PLUS:
		(void)uw_get_u8(&c); /* bReserved */
		x.u.ssp.attributes = uw_get_le32(&c);
		x.u.ssp.functionality_support = uw_get_le16(&c);
		x.u.ssp.sublink_count = (x.u.ssp.attributes & 0x1f) + 1;
		break;
	case UW_CAP_CONTAINER_ID:
		x.u.container_id.uuid = d + 4;
		break;
	case UW_CAP_PLATFORM:
		x.u.platform.uuid = d + 4;
		break;
	default:
		break;
	}
	if (c.err)
		return UW_E_DESC;
	it->off += bl;
	*cap = x;
	return 1;
}

int uw_bos_find_cap(const uint8_t *buf, size_t len, uint8_t cap_type, uw_devcap *out)
{
	if (!out)
		return UW_E_INVAL;
	uw_bos_iter it;
	uw_devcap x;
	int r = uw_bos_iter_init(&it, buf, len, NULL);
	if (r < 0)
		return r;
	while ((r = uw_bos_iter_next(&it, &x)) > 0) {
		if (x.cap_type == cap_type) {
			*out = x;
			return UW_OK;
		}
	}
	return r < 0 ? r : UW_E_NOTFOUND;
}

/* ---- Device records ------------------------------------------------------------------------ */

/* Length of s if it fits in size bytes with its NUL, else size (never reads past s[size-1]). */
static size_t bounded_len(const char *s, size_t size)
{
	size_t n = 0;
	while (n < size && s[n])
		n++;
	return n;
}

int uw_devrec_from_descriptors(const uw_device_desc *dev, const uint8_t *config, size_t config_len,
                               uint8_t config_value, const uw_alt_sel *sel, const char *busid,
                               const char *path, uint32_t busnum, uint32_t devnum,
                               enum uw_speed speed, uw_usb_device *out, uw_usb_interface *ifaces,
                               size_t max_ifaces)
{
	if (!dev || !busid || !path || !out || (max_ifaces && !ifaces))
		return UW_E_INVAL;
	size_t blen = bounded_len(busid, UW_BUSID_SIZE);
	size_t plen = bounded_len(path, UW_PATH_SIZE);
	if (blen == 0 || blen == UW_BUSID_SIZE || plen == UW_PATH_SIZE)
		return UW_E_INVAL;
	if (busnum > 0xffff || devnum > 0xffff || (unsigned)speed > UW_SPEED_SUPER_PLUS)
		return UW_E_INVAL;

	uw_usb_device r;
	memset(&r, 0, sizeof(r));
	memcpy(r.busid, busid, blen);
	memcpy(r.path, path, plen);
	r.busnum = busnum;
	r.devnum = devnum;
	r.speed = uw_speed_for_wire(speed);
	r.id_vendor = dev->id_vendor;
	r.id_product = dev->id_product;
	r.bcd_device = dev->bcd_device;
	r.device_class = dev->device_class;
	r.device_subclass = dev->device_subclass;
	r.device_protocol = dev->device_protocol;
	r.configuration_value = config_value;
	r.num_configurations = dev->num_configurations;

	uw_usb_interface tr[UW_MAX_INTERFACES];
	if (!config) {
		if (config_value != 0)
			return UW_E_INVAL;
		r.num_interfaces = 0;
	} else {
		uw_config_desc h;
		int rc = uw_config_check(config, config_len, &h, NULL);
		if (rc < 0)
			return rc;
		if (config_value == 0 || h.configuration_value != config_value)
			return UW_E_INVAL;
		rc = uw_config_interfaces(config, config_len, sel, tr, UW_MAX_INTERFACES, NULL);
		if (rc < 0)
			return rc;
		if ((size_t)rc > max_ifaces)
			return UW_E_SHORT;
		r.num_interfaces = (uint8_t)rc;
	}
	for (unsigned i = 0; i < r.num_interfaces; i++)
		ifaces[i] = tr[i];
	*out = r;
	return UW_OK;
}

/* ---- Speeds ---------------------------------------------------------------------------------- */

enum uw_speed uw_speed_from_libusb(int libusb_speed)
{
	switch (libusb_speed) {
	case 1:
		return UW_SPEED_LOW;
	case 2:
		return UW_SPEED_FULL;
	case 3:
		return UW_SPEED_HIGH;
	case 4:
		return UW_SPEED_SUPER;
	case 5: /* LIBUSB_SPEED_SUPER_PLUS */
	case 6: /* LIBUSB_SPEED_SUPER_PLUS_X2 */
		return UW_SPEED_SUPER_PLUS;
	default:
		return UW_SPEED_UNKNOWN;
	}
}

int uw_speed_to_libusb(enum uw_speed speed)
{
	switch (speed) {
	case UW_SPEED_LOW:
		return 1;
	case UW_SPEED_FULL:
		return 2;
	case UW_SPEED_HIGH:
		return 3;
	case UW_SPEED_SUPER:
		return 4;
	case UW_SPEED_SUPER_PLUS:
		return 5;
	case UW_SPEED_UNKNOWN:
	case UW_SPEED_WIRELESS:
		return 0;
	}
	return 0; /* a value outside the enum */
}

enum uw_speed uw_speed_for_wire(enum uw_speed speed)
{
	switch (speed) {
	case UW_SPEED_UNKNOWN:
	case UW_SPEED_LOW:
	case UW_SPEED_FULL:
	case UW_SPEED_HIGH:
	case UW_SPEED_WIRELESS:
	case UW_SPEED_SUPER:
		return speed;
	case UW_SPEED_SUPER_PLUS:
		return UW_SPEED_SUPER;
	}
	return UW_SPEED_UNKNOWN;
}

enum uw_speed uw_speed_from_sysfs(const char *text)
{
	static const struct {
		const char *text;
		enum uw_speed speed;
	} map[] = {
	    {"1.5", UW_SPEED_LOW},          {"12", UW_SPEED_FULL},
	    {"480", UW_SPEED_HIGH},         {"53.3-480", UW_SPEED_WIRELESS},
	    {"5000", UW_SPEED_SUPER},       {"10000", UW_SPEED_SUPER_PLUS},
	    {"20000", UW_SPEED_SUPER_PLUS},
	};
	if (!text)
		return UW_SPEED_UNKNOWN;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		size_t n = strlen(map[i].text);
		if (strncmp(text, map[i].text, n) != 0)
			continue;
		if (text[n] == '\0' || (text[n] == '\n' && text[n + 1] == '\0'))
			return map[i].speed;
	}
	return UW_SPEED_UNKNOWN;
}
