/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: every USB descriptor parser (device, qualifier, configuration check, iteration and
 * queries, endpoint table, strings, LANGIDs, BOS, device records, speeds) on the input. When the
 * input starts with a valid device descriptor, the bytes after it are also parsed as the
 * configuration and BOS of that device. The last bytes choose altsettings.
 *
 * Oracles beyond "no crash": the iterator covers exactly wTotalLength with contiguous
 * descriptors; every endpoint it yields is found by uw_config_find_endpoint() and agrees with the
 * endpoint table; the interface count matches bNumInterfaces; a prefix of a valid container is
 * UW_E_SHORT; string output is valid UTF-8, NUL-terminated, the length predicted, and a shorter
 * capacity gives a prefix of the full output; BOS iteration yields bNumDeviceCaps capabilities.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uw_usbdesc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			abort();                                                                   \
	} while (0)

/* A failure names a field inside (or just at the end of) the input, with a text. */
static void check_err(int rc, const uw_desc_err *e, size_t size)
{
	if (rc < 0 && rc != UW_E_NOTFOUND)
		CHECK(e->what != NULL && e->off <= size);
}

/* Altsettings from the input's last bytes: interface i gets data[size - 1 - i] % 4. */
static void pick_sel(const uint8_t *data, size_t size, uw_alt_sel *sel)
{
	uw_alt_sel_reset(sel);
	for (size_t i = 0; i < 8 && i < size; i++)
		sel->alt[i] = data[size - 1 - i] & 3;
}

static void fuzz_config(const uint8_t *data, size_t size, const uw_alt_sel *sel,
                        const uw_device_desc *dev)
{
	uw_config_desc h;
	uw_desc_err e = {0}, eo = {0};
	int rc = uw_config_check(data, size, &h, &e);
	int rco = uw_other_speed_config_check(data, size, &h, &eo);
	check_err(rc, &e, size);
	check_err(rco, &eo, size);

	/* A device record needs a valid configuration: the check's verdict carries over. */
	uw_device_desc dflt = {.max_packet_size0 = 64, .num_configurations = 1};
	uw_usb_device rec;
	uw_usb_interface recifs[UW_MAX_INTERFACES];
	int drc = uw_devrec_from_descriptors(dev ? dev : &dflt, data, size, size > 5 ? data[5] : 1,
	                                     sel, "1-1", "/sys/devices/x/usb1/1-1", 1, 2,
	                                     UW_SPEED_SUPER_PLUS, &rec, recifs, UW_MAX_INTERFACES);
	if (rc < 0)
		CHECK(drc == rc);
	else if (drc == UW_OK)
		CHECK(rec.num_interfaces == h.num_interfaces && rec.speed == UW_SPEED_SUPER &&
		      rec.configuration_value == h.configuration_value);
	else
		CHECK(drc == UW_E_NOTFOUND || drc == UW_E_INVAL);
	uw_config_iter it;
	if (uw_config_iter_init(&it, data, size, NULL) != UW_OK) {
		CHECK(rc < 0 && rco < 0);
		uw_ep_table t;
		uw_desc_err et = {0};
		int trc = uw_ep_table_build(data, size, sel, dev, &t, &et);
		CHECK(trc < 0);
		check_err(trc, &et, size);
		return;
	}
	CHECK(rc == UW_OK || rco == UW_OK);
	if (uw_config_header_parse(data, size, &h, NULL) != UW_OK)
		abort();
	size_t total = h.total_length;
	CHECK(total <= size);

	/* Prefixes of a valid configuration are short (a few, to keep this linear). */
	size_t cuts[] = {0, 1, 8, total / 2, total - 1};
	for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++)
		if (cuts[i] < total)
			CHECK(uw_config_check(data, cuts[i], NULL, NULL) == UW_E_SHORT ||
			      rc != UW_OK);

	uw_ep_table t;
	uw_desc_err et = {0};
	int trc = uw_ep_table_build(data, size, sel, dev, &t, &et);
	check_err(trc, &et, size);
	CHECK(trc == UW_OK || trc == UW_E_DESC || trc == UW_E_NOTFOUND);

	uw_desc_item x;
	size_t next = 0;
	unsigned nitems = 0, neps_sel = 0;
	int r;
	while ((r = uw_config_iter_next(&it, &x)) == 1) {
		CHECK(x.off == next && x.raw == data + x.off && x.len >= 2 && x.len == x.raw[0]);
		CHECK(x.off + x.len <= total);
		next = x.off + x.len;
		nitems++;
		CHECK((x.kind == UW_DK_CONFIG) == (x.off == 0));
		if (x.kind != UW_DK_ENDPOINT)
			continue;
		const uw_endpoint_desc *ep = &x.u.ep;
		CHECK(ep->number >= 1 && ep->number <= 15 && ep->xfer <= UW_XFER_INT);
		CHECK(ep->mult >= 1 && ep->mult <= 3 && ep->burst >= 1 && ep->burst <= 16);
		CHECK(x.iface >= 0 && x.alt >= 0);
		if (x.alt != sel->alt[x.iface])
			continue;
		neps_sel++;
		uw_endpoint_desc found;
		int frc = uw_config_find_endpoint(data, size, sel, ep->address, &found);
		CHECK(frc == UW_OK || frc == UW_E_DESC); /* DESC: the address clashes */
		if (trc == UW_OK) {
			CHECK(frc == UW_OK);
			CHECK(found.address == ep->address && found.xfer == ep->xfer &&
			      found.max_packet == ep->max_packet && found.mult == ep->mult &&
			      found.burst == ep->burst);
			const uw_ep_info *ent =
			    ep->dir == UW_DIR_IN ? &t.in[ep->number] : &t.out[ep->number];
			CHECK(ent->xfer == ep->xfer && ent->max_packet == ep->max_packet &&
			      ent->iface == x.iface && ent->alt == x.alt);
		}
	}
	CHECK(r == 0 && next == total && nitems >= 1);
	if (trc == UW_OK) {
		unsigned known = 0;
		for (uint32_t n = 0; n < UW_EP_TABLE_SIZE; n++)
			known += (uw_ep_table_xfer(&t, n, UW_DIR_IN) != UW_XFER_UNKNOWN) +
			         (uw_ep_table_xfer(&t, n, UW_DIR_OUT) != UW_XFER_UNKNOWN);
		CHECK(known == neps_sel + 2);
	}

	int count = uw_config_interface_count(data, size);
	CHECK(count == h.num_interfaces);
	uw_usb_interface ifs[UW_MAX_INTERFACES];
	int n = uw_config_interfaces(data, size, sel, ifs, UW_MAX_INTERFACES, NULL);
	CHECK(n == count || n == UW_E_NOTFOUND);
	CHECK(uw_config_interfaces(data, size, NULL, ifs, UW_MAX_INTERFACES, NULL) == count);
	trc = uw_ep_table_build(data, size, NULL, dev, &t, NULL);
	CHECK(trc == UW_OK || trc == UW_E_DESC); /* altsetting 0 always exists */
	/* Queries for whatever the input's first bytes name. */
	uw_endpoint_desc any;
	int arc = uw_config_find_endpoint(data, size, NULL, data[size - 1], &any);
	CHECK(arc == UW_OK || arc == UW_E_NOTFOUND || arc == UW_E_DESC);
	if (arc == UW_OK) {
		CHECK(any.address == data[size - 1]);
		if (trc == UW_OK) /* t is the table of altsetting 0 everywhere */
			CHECK(uw_ep_table_type_fn(&t, any.number, any.dir) == any.xfer);
	}
	uw_interface_desc pick;
	int prc = uw_config_find_alt(data, size, data[size - 1] & 7, data[size / 2] & 3, &pick);
	CHECK(prc == UW_E_NOTFOUND ||
	      (prc == UW_OK && pick.interface_number == (data[size - 1] & 7) &&
	       pick.alternate_setting == (data[size / 2] & 3)));
	uw_interface_desc intf;
	int frc = uw_config_find_alt(data, size, 0, 0, &intf);
	CHECK(frc == UW_E_NOTFOUND || (frc == UW_OK && intf.interface_number == 0));
}

/* Is s[0..n) well-formed UTF-8 without surrogates and without NUL? */
static bool utf8_ok(const char *s, size_t n)
{
	const uint8_t *p = (const uint8_t *)s;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t k;
		if (p[i] == 0)
			return false;
		if (p[i] < 0x80) {
			i++;
			continue;
		} else if ((p[i] & 0xe0) == 0xc0) {
			cp = p[i] & 0x1fu;
			k = 1;
		} else if ((p[i] & 0xf0) == 0xe0) {
			cp = p[i] & 0x0fu;
			k = 2;
		} else if ((p[i] & 0xf8) == 0xf0) {
			cp = p[i] & 0x07u;
			k = 3;
		} else {
			return false;
		}
		for (size_t j = 1; j <= k; j++) {
			if (i + j >= n || (p[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + j] & 0x3fu);
		}
		if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

static void fuzz_strings(const uint8_t *data, size_t size)
{
	char full[UW_STRING_UTF8_MAX + 1];
	uw_desc_err e = {0};
	int rc = uw_string_desc_to_utf8(data, size, full, sizeof full, &e);
	check_err(rc, &e, size);
	if (rc < 0) {
		CHECK(rc == UW_E_SHORT || rc == UW_E_DESC);
		return;
	}
	CHECK(rc <= (int)UW_STRING_UTF8_MAX && strlen(full) == (size_t)rc);
	CHECK(utf8_ok(full, (size_t)rc));
	static const size_t caps[] = {1, 2, 3, 4, 5, 7, 16, 100};
	for (size_t i = 0; i < sizeof caps / sizeof *caps; i++) {
		char part[100];
		memset(part, 'x', sizeof part);
		CHECK(uw_string_desc_to_utf8(data, size, part, caps[i], NULL) == rc);
		size_t len = strlen(part);
		CHECK(len < caps[i] && memcmp(part, full, len) == 0);
		CHECK(len == (size_t)rc || len + 4 >= caps[i]);
		CHECK(utf8_ok(part, len));
	}
	uint16_t ids[UW_STRING_MAX_UNITS];
	int n = uw_string_langids(data, size, ids, UW_STRING_MAX_UNITS, NULL);
	CHECK(n == (data[0] - 2) / 2);
}

static void fuzz_bos(const uint8_t *data, size_t size)
{
	uw_bos_desc h, hh;
	uw_bos_iter it;
	uw_desc_err e = {0};
	int rc = uw_bos_check(data, size, &h, &e);
	check_err(rc, &e, size);
	int hrc = uw_bos_header_parse(data, size, &hh, &e);
	check_err(hrc, &e, size);
	if (rc == UW_OK)
		CHECK(hrc == UW_OK && hh.total_length == h.total_length &&
		      hh.num_caps == h.num_caps);
	if (uw_bos_iter_init(&it, data, size, NULL) != UW_OK) {
		CHECK(rc < 0);
		return;
	}
	CHECK(rc == UW_OK && h.num_caps <= UW_MAX_BOS_CAPS);
	uw_devcap cap;
	unsigned n = 0;
	size_t next = data[0];
	int r;
	while ((r = uw_bos_iter_next(&it, &cap)) == 1) {
		CHECK(cap.off == next && cap.raw == data + cap.off && cap.len >= 3);
		next = cap.off + cap.len;
		n++;
		if (cap.cap_type == UW_CAP_SUPERSPEED_PLUS)
			CHECK(cap.len >= 12 + 4 * cap.u.ssp.sublink_count);
	}
	CHECK(r == 0 && n == h.num_caps && next == h.total_length);
	CHECK(uw_bos_check(data, h.total_length - 1u, NULL, NULL) == UW_E_SHORT);
	uw_devcap x;
	int frc = uw_bos_find_cap(data, size, UW_CAP_SUPERSPEED, &x);
	CHECK(frc == UW_E_NOTFOUND || (frc == UW_OK && x.len >= 10));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uw_alt_sel sel;
	pick_sel(data, size, &sel);

	uw_device_desc dev;
	bool have_dev = uw_device_desc_parse(data, size, &dev, NULL) == UW_OK;
	if (have_dev) {
		CHECK(uw_device_ep0_max_packet(&dev) >= 8 && uw_device_ep0_max_packet(&dev) <= 512);
		fuzz_config(data + UW_DEVICE_DESC_LEN, size - UW_DEVICE_DESC_LEN, &sel, &dev);
		fuzz_bos(data + UW_DEVICE_DESC_LEN, size - UW_DEVICE_DESC_LEN);
		uw_usb_device rec;
		CHECK(uw_devrec_from_descriptors(&dev, NULL, 0, 0, NULL, "1-1", "", 1, 1,
		                                 UW_SPEED_HIGH, &rec, NULL, 0) == UW_OK);
	}
	uw_desc_err e = {0};
	int drc = uw_device_desc_parse(data, size, &dev, &e);
	CHECK((drc == UW_OK) == have_dev);
	check_err(drc, &e, size);
	uw_qualifier_desc q;
	if (uw_qualifier_desc_parse(data, size, &q, NULL) == UW_OK)
		CHECK(q.max_packet_size0 >= 8 && q.max_packet_size0 <= 64);
	fuzz_config(data, size, &sel, have_dev ? &dev : NULL);
	fuzz_bos(data, size);
	fuzz_strings(data, size);

	char text[16];
	size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
	memcpy(text, data, n);
	text[n] = '\0';
	enum uw_speed s = uw_speed_from_sysfs(text);
	CHECK(uw_speed_for_wire(s) <= UW_SPEED_SUPER);
	CHECK(s == UW_SPEED_WIRELESS || uw_speed_from_libusb(uw_speed_to_libusb(s)) == s);
	if (size)
		CHECK(uw_speed_for_wire(uw_speed_from_libusb((int8_t)data[0])) <= UW_SPEED_SUPER);
	return 0;
}
