/* SPDX-License-Identifier: MIT */
/*
 * test_usbdesc.c - USB descriptor parsing: real-looking descriptors of several kinds decode to
 * exact values, every truncation point fails cleanly, malformed values for every checked field
 * are rejected at the right offset, limits hold at and just past their value, device records
 * get exact fields, and every input is parsed again right before a PROT_NONE page.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uw_test.h"
#include "uw_usbdesc.h"

/* ---- Helpers -------------------------------------------------------------------------------- */

/* "1=1,2=2" -> interface 1 altsetting 1, interface 2 altsetting 2; the rest 0. */
static const uw_alt_sel *mksel(const char *spec, uw_alt_sel *sel)
{
	uw_alt_sel_reset(sel);
	if (!spec)
		return NULL;
	const char *p = spec;
	while (*p) {
		char *end;
		unsigned long i = strtoul(p, &end, 10);
		unsigned long a = strtoul(end + 1, &end, 10);
		sel->alt[i & 0xff] = (uint8_t)a;
		p = *end ? end + 1 : end;
	}
	return sel;
}

static const char *errname(int rc)
{
	return rc >= 0 ? "OK" : uw_err_name(rc);
}

/* ---- Example descriptors ------------------------------------------------------------------- */

#define DEV_KB    "12 01 0002 00 00 00 08 6d04 1cc3 0001 01 02 00 01"
#define DEV_MSC   "12 01 1002 00 00 00 40 8107 8155 0001 01 02 03 01"
#define DEV_SS    "12 01 2003 00 00 00 09 5e04 0100 0012 01 02 03 01"
#define DEV_AUDIO "12 01 0002 ef 02 01 40 3412 7856 0100 01 02 00 02"

/* HID boot keyboard: one interface, a HID class descriptor, one interrupt IN endpoint. */
#define CFG_KB                                                                                     \
	"09 02 2200 01 01 00 a0 32 | 09 04 00 00 01 03 01 01 00 | 09 21 1101 00 01 22 3f00 | "     \
	"07 05 81 03 0800 0a"
/* Mass storage, bulk-only: bulk IN 1 and bulk OUT 2 of 512 bytes. */
#define CFG_MSC                                                                                    \
	"09 02 2000 01 01 00 80 32 | 09 04 00 00 02 08 06 50 00 | 07 05 81 02 0002 00 | "          \
	"07 05 02 02 0002 00"
/* The same at full speed, as an other-speed configuration. */
#define OSC_MSC                                                                                    \
	"09 07 2000 01 01 00 80 32 | 09 04 00 00 02 08 06 50 00 | 07 05 81 02 4000 00 | "          \
	"07 05 02 02 4000 00"
/* UAC2 headset: IAD, audio control, two streaming interfaces with zero-bandwidth altsetting 0,
 * isochronous endpoints with class-specific endpoint descriptors, a feedback endpoint and a
 * high-bandwidth (2 transactions) endpoint. Offsets: 0 cfg, 9 IAD, 17 if0, 26 cs, 35 if1/0,
 * 44 if1/1, 53 cs, 59 ep01, 66 cs, 74 ep81, 81 if2/0, 90 if2/1, 99 ep82, 106 cs, 114 if2/2,
 * 123 ep82, end 130. */
#define CFG_UAC                                                                                    \
	"09 02 8200 03 01 00 80 32 | 08 0b 00 03 01 00 20 00 | 09 04 00 00 00 01 01 20 00 | "      \
	"09 24 01 00 02 08 4000 00 | 09 04 01 00 00 01 02 20 00 | 09 04 01 01 02 01 02 20 00 | "   \
	"06 24 02 01 02 10 | 07 05 01 05 c400 01 | 08 25 01 00 00 00 00 00 | "                     \
	"07 05 81 11 0400 04 | 09 04 02 00 00 01 02 20 00 | 09 04 02 01 01 01 02 20 00 | "         \
	"07 05 82 05 c408 01 | 08 25 01 00 00 00 00 00 | 09 04 02 02 01 01 02 20 00 | "            \
	"07 05 82 05 8801 01"
/* SuperSpeed: bulk-only storage with bursts of 16, and a vendor interface whose altsetting 1 has
 * an isochronous (burst 4, Mult 3) and an interrupt endpoint, altsetting 2 an isochronous
 * endpoint with a SuperSpeedPlus companion. Offsets: 0 cfg, 9 if0, 18 ep81, 25 comp, 31 ep02,
 * 38 comp, 44 if1/0, 53 if1/1, 62 ep83, 69 comp, 75 ep84, 82 comp, 88 if1/2, 97 ep83, 104 comp,
 * 110 ssp comp, end 118. */
#define CFG_SS                                                                                     \
	"09 02 7600 02 01 00 80 70 | 09 04 00 00 02 08 06 50 00 | 07 05 81 02 0004 00 | "          \
	"06 30 0f 00 0000 | 07 05 02 02 0004 00 | 06 30 0f 00 0000 | 09 04 01 00 00 ff 00 00 00 "  \
	"| "                                                                                       \
	"09 04 01 01 02 ff 00 00 00 | 07 05 83 01 0004 01 | 06 30 03 02 0030 | "                   \
	"07 05 84 03 4000 04 | 06 30 00 00 4000 | 09 04 01 02 01 ff 00 00 00 | "                   \
	"07 05 83 01 0004 01 | 06 30 0f 80 0000 | 08 31 0000 00000100"
/* Interface 0 uses endpoint 0x81; altsetting 1 of interface 1 uses it too. Offsets: 0 cfg, 9 if0,
 * 18 ep81, 25 if1/0, 34 if1/1, 43 ep81, end 50. */
#define CFG_CLASH                                                                                  \
	"09 02 3200 02 01 00 80 32 | 09 04 00 00 01 08 06 50 00 | 07 05 81 02 0002 00 | "          \
	"09 04 01 00 00 ff 00 00 00 | 09 04 01 01 01 ff 00 00 00 | 07 05 81 03 0800 01"
/* Interfaces listed out of order: 2 before 0. */
#define CFG_REV                                                                                    \
	"09 02 2400 02 01 00 80 32 | 09 04 02 00 00 0a 00 00 00 | 09 04 00 00 00 02 02 01 00 | "   \
	"09 04 00 01 00 02 02 02 00"
/* A configuration without interfaces. */
#define CFG_EMPTY "09 02 0900 00 01 00 80 32"
/* BOS: USB 2.0 extension (LPM), SuperSpeed, container ID, SuperSpeedPlus with 2 sublink speed
 * attributes. Offsets: 0 BOS, 5 usb2, 12 ss, 22 container, 42 ssp, end 62. */
#define BOS_SS                                                                                     \
	"05 0f 3e00 04 | 07 10 02 06000000 | 0a 10 03 00 0e00 01 0a ff07 | "                       \
	"14 10 04 00 00112233445566778899aabbccddeeff | "                                          \
	"14 10 0a 00 01000000 0011 0000 30400a00 b0400a00"
#define QUAL_HS "0a 06 0002 00 00 00 40 01 00"

#define STR_LANG    "04 03 0904"
#define STR_LANG2   "06 03 0904 0704"
#define STR_KB      "1a 03 5500 5300 4200 2000 4b00 6500 7900 6200 6f00 6100 7200 6400"
#define STR_GRUESSE "12 03 4700 7200 fc00 df00 6500 2000 3dd8 00de"

/* ---- Device and qualifier descriptors ------------------------------------------------------ */

static bool dev_eq(const uw_device_desc *a, const uw_device_desc *b)
{
	return a->bcd_usb == b->bcd_usb && a->device_class == b->device_class &&
	       a->device_subclass == b->device_subclass &&
	       a->device_protocol == b->device_protocol &&
	       a->max_packet_size0 == b->max_packet_size0 && a->id_vendor == b->id_vendor &&
	       a->id_product == b->id_product && a->bcd_device == b->bcd_device &&
	       a->i_manufacturer == b->i_manufacturer && a->i_product == b->i_product &&
	       a->i_serial_number == b->i_serial_number &&
	       a->num_configurations == b->num_configurations;
}

static const struct dev_case {
	const char *name;
	const char *hex;
	int rc;
	size_t off; /* error offset */
	uw_device_desc want;
	unsigned ep0;
} dev_cases[] = {
    {.name = "keyboard",
     .hex = DEV_KB,
     .want = {.bcd_usb = 0x0200,
              .max_packet_size0 = 8,
              .id_vendor = 0x046d,
              .id_product = 0xc31c,
              .bcd_device = 0x0100,
              .i_manufacturer = 1,
              .i_product = 2,
              .num_configurations = 1},
     .ep0 = 8},
    {.name = "mass storage",
     .hex = DEV_MSC,
     .want = {.bcd_usb = 0x0210,
              .max_packet_size0 = 64,
              .id_vendor = 0x0781,
              .id_product = 0x5581,
              .bcd_device = 0x0100,
              .i_manufacturer = 1,
              .i_product = 2,
              .i_serial_number = 3,
              .num_configurations = 1},
     .ep0 = 64},
    {.name = "SuperSpeed, bMaxPacketSize0 9",
     .hex = DEV_SS,
     .want = {.bcd_usb = 0x0320,
              .max_packet_size0 = 9,
              .id_vendor = 0x045e,
              .id_product = 0x0001,
              .bcd_device = 0x1200,
              .i_manufacturer = 1,
              .i_product = 2,
              .i_serial_number = 3,
              .num_configurations = 1},
     .ep0 = 512},
    {.name = "composite audio, IAD class",
     .hex = DEV_AUDIO,
     .want = {.bcd_usb = 0x0200,
              .device_class = 0xef,
              .device_subclass = 2,
              .device_protocol = 1,
              .max_packet_size0 = 64,
              .id_vendor = 0x1234,
              .id_product = 0x5678,
              .bcd_device = 0x0001,
              .i_manufacturer = 1,
              .i_product = 2,
              .num_configurations = 2},
     .ep0 = 64},
    {.name = "trailing bytes ignored",
     .hex = DEV_KB " ffff ffff",
     .want = {.bcd_usb = 0x0200,
              .max_packet_size0 = 8,
              .id_vendor = 0x046d,
              .id_product = 0xc31c,
              .bcd_device = 0x0100,
              .i_manufacturer = 1,
              .i_product = 2,
              .num_configurations = 1},
     .ep0 = 8},
    {.name = "bLength 0", .hex = "00 01", .rc = UW_E_DESC, .off = 0},
    {.name = "bLength 1", .hex = "01", .rc = UW_E_DESC, .off = 0},
    {.name = "bLength 17",
     .hex = "11 01 0002 00 00 00 08 6d04 1cc3 0001 01 02 00 01",
     .rc = UW_E_DESC,
     .off = 0},
    {.name = "bLength 19",
     .hex = "13 01 0002 00 00 00 08 6d04 1cc3 0001 01 02 00 01 00",
     .rc = UW_E_DESC,
     .off = 0},
    {.name = "type 2",
     .hex = "12 02 0002 00 00 00 08 6d04 1cc3 0001 01 02 00 01",
     .rc = UW_E_DESC,
     .off = 1},
    {.name = "bMaxPacketSize0 7",
     .hex = "12 01 0002 00 00 00 07 6d04 1cc3 0001 01 02 00 01",
     .rc = UW_E_DESC,
     .off = 7},
    {.name = "bMaxPacketSize0 9 below USB 3",
     .hex = "12 01 1002 00 00 00 09 6d04 1cc3 0001 01 02 00 01",
     .rc = UW_E_DESC,
     .off = 7},
    {.name = "bMaxPacketSize0 512 encoded as 0 ",
     .hex = "12 01 2003 00 00 00 00 6d04 1cc3 0001 01 02 00 01",
     .rc = UW_E_DESC,
     .off = 7},
    {.name = "bNumConfigurations 0",
     .hex = "12 01 0002 00 00 00 08 6d04 1cc3 0001 01 02 00 00",
     .rc = UW_E_DESC,
     .off = 17},
    {.name = "empty input", .hex = "", .rc = UW_E_SHORT, .off = 0},
    {.name = "17 of 18 bytes",
     .hex = "12 01 0002 00 00 00 08 6d04 1cc3 0001 01 02 00",
     .rc = UW_E_SHORT,
     .off = 17},
};

static void test_device(void)
{
	for (size_t i = 0; i < sizeof dev_cases / sizeof *dev_cases; i++) {
		const struct dev_case *c = &dev_cases[i];
		uint8_t b[64];
		size_t n = t_unhex(c->hex, b, sizeof b);
		uw_device_desc d = {.id_vendor = 0xdead};
		uw_desc_err e = {0};
		int rc = uw_device_desc_parse(b, n, &d, &e);
		bool ok = rc == c->rc;
		if (c->rc == UW_OK)
			ok = ok && dev_eq(&d, &c->want) && uw_device_ep0_max_packet(&d) == c->ep0;
		else
			ok = ok && e.off == c->off && e.what && d.id_vendor == 0xdead;
		t_ok(ok, "device: %s -> %s (got %s at %zu: %s)", c->name, errname(c->rc),
		     errname(rc), e.off, e.what ? e.what : "-");
	}
}

static const struct qual_case {
	const char *name;
	const char *hex;
	int rc;
	size_t off;
} qual_cases[] = {
    {.name = "high-speed qualifier", .hex = QUAL_HS},
    {.name = "bLength 9", .hex = "09 06 0002 00 00 00 40 01", .rc = UW_E_DESC, .off = 0},
    {.name = "type 1", .hex = "0a 01 0002 00 00 00 40 01 00", .rc = UW_E_DESC, .off = 1},
    {.name = "bMaxPacketSize0 9", .hex = "0a 06 0003 00 00 00 09 01 00", .rc = UW_E_DESC, .off = 7},
    {.name = "9 of 10 bytes", .hex = "0a 06 0002 00 00 00 40 01", .rc = UW_E_SHORT, .off = 9},
};

static void test_qualifier(void)
{
	for (size_t i = 0; i < sizeof qual_cases / sizeof *qual_cases; i++) {
		const struct qual_case *c = &qual_cases[i];
		uint8_t b[32];
		size_t n = t_unhex(c->hex, b, sizeof b);
		uw_qualifier_desc q = {0};
		uw_desc_err e = {0};
		int rc = uw_qualifier_desc_parse(b, n, &q, &e);
		bool ok = rc == c->rc;
		if (c->rc == UW_OK)
			ok = ok && q.bcd_usb == 0x0200 && q.max_packet_size0 == 64 &&
			     q.num_configurations == 1;
		else
			ok = ok && e.off == c->off;
		t_ok(ok, "qualifier: %s -> %s (got %s at %zu)", c->name, errname(c->rc),
		     errname(rc), e.off);
	}
}

/* ---- Valid configurations: header, and every descriptor the iterator yields --------------- */

static const struct cfg_case {
	const char *name;
	const char *hex;
	bool other_speed;
	uw_config_desc want;
	const char *items; /* kind letter, then "iface/alt" once inside an interface */
} cfg_cases[] = {
    {.name = "HID keyboard",
     .hex = CFG_KB,
     .want = {.type = 2,
              .length = 9,
              .total_length = 34,
              .num_interfaces = 1,
              .configuration_value = 1,
              .attributes = 0xa0,
              .max_power = 0x32},
     .items = "C I0/0 O0/0 E0/0"},
    {.name = "mass storage",
     .hex = CFG_MSC,
     .want = {.type = 2,
              .length = 9,
              .total_length = 32,
              .num_interfaces = 1,
              .configuration_value = 1,
              .attributes = 0x80,
              .max_power = 0x32},
     .items = "C I0/0 E0/0 E0/0"},
    {.name = "mass storage, other-speed",
     .hex = OSC_MSC,
     .other_speed = true,
     .want = {.type = 7,
              .length = 9,
              .total_length = 32,
              .num_interfaces = 1,
              .configuration_value = 1,
              .attributes = 0x80,
              .max_power = 0x32},
     .items = "C I0/0 E0/0 E0/0"},
    {.name = "UAC2 headset with IAD and altsettings",
     .hex = CFG_UAC,
     .want = {.type = 2,
              .length = 9,
              .total_length = 130,
              .num_interfaces = 3,
              .configuration_value = 1,
              .attributes = 0x80,
              .max_power = 0x32},
     .items = "C A I0/0 O0/0 I1/0 I1/1 O1/1 E1/1 O1/1 E1/1 I2/0 I2/1 E2/1 O2/1 I2/2 E2/2"},
    {.name = "SuperSpeed with companions",
     .hex = CFG_SS,
     .want = {.type = 2,
              .length = 9,
              .total_length = 118,
              .num_interfaces = 2,
              .configuration_value = 1,
              .attributes = 0x80,
              .max_power = 0x70},
     .items = "C I0/0 E0/0 S0/0 E0/0 S0/0 I1/0 I1/1 E1/1 S1/1 E1/1 S1/1 I1/2 E1/2 S1/2 P1/2"},
    {.name = "endpoint address shared across interfaces",
     .hex = CFG_CLASH,
     .want = {.type = 2,
              .length = 9,
              .total_length = 50,
              .num_interfaces = 2,
              .configuration_value = 1,
              .attributes = 0x80,
              .max_power = 0x32},
     .items = "C I0/0 E0/0 I1/0 I1/1 E1/1"},
    {.name = "interfaces out of order",
     .hex = CFG_REV,
     .want = {.type = 2,
              .length = 9,
              .total_length = 36,
              .num_interfaces = 2,
              .configuration_value = 1,
              .attributes = 0x80,
              .max_power = 0x32},
     .items = "C I2/0 I0/0 I0/1"},
    {.name = "no interfaces",
     .hex = CFG_EMPTY,
     .want = {.type = 2,
              .length = 9,
              .total_length = 9,
              .configuration_value = 1,
              .attributes = 0x80,
              .max_power = 0x32},
     .items = "C"},
    {.name = "bytes after wTotalLength ignored",
     .hex = CFG_KB " | 00 00 ff",
     .want = {.type = 2,
              .length = 9,
              .total_length = 34,
              .num_interfaces = 1,
              .configuration_value = 1,
              .attributes = 0xa0,
              .max_power = 0x32},
     .items = "C I0/0 O0/0 E0/0"},
    {.name = "config bLength 10 (extra byte skipped)",
     .hex = "0a 02 0a00 00 01 00 80 32 ee",
     .want = {.type = 2,
              .length = 10,
              .total_length = 10,
              .configuration_value = 1,
              .attributes = 0x80,
              .max_power = 0x32},
     .items = "C"},
    {.name = "control endpoint, endpoint and interface longer than minimum",
     .hex = "09 02 1b00 01 01 00 80 32 | 0a 04 00 00 01 ff 00 00 00 ee | 08 05 03 00 4000 00 ee",
     .want = {.type = 2,
              .length = 9,
              .total_length = 27,
              .num_interfaces = 1,
              .configuration_value = 1,
              .attributes = 0x80,
              .max_power = 0x32},
     .items = "C I0/0 E0/0"},
};

static bool cfg_eq(const uw_config_desc *a, const uw_config_desc *b)
{
	return a->type == b->type && a->length == b->length && a->total_length == b->total_length &&
	       a->num_interfaces == b->num_interfaces &&
	       a->configuration_value == b->configuration_value &&
	       a->i_configuration == b->i_configuration && a->attributes == b->attributes &&
	       a->max_power == b->max_power;
}

/* Renders what the iterator yields as in cfg_case.items; false if anything is inconsistent. */
static bool render_items(const uint8_t *b, size_t n, char *out, size_t cap)
{
	static const char letters[] = "CAIESPO";
	uw_config_iter it;
	uw_desc_item x;
	size_t pos = 0, next_off = 0;
	out[0] = '\0';
	if (uw_config_iter_init(&it, b, n, NULL) != UW_OK)
		return false;
	int r;
	while ((r = uw_config_iter_next(&it, &x)) == 1) {
		if (x.off != next_off || x.raw != b + x.off || x.len != x.raw[0])
			return false;
		next_off = x.off + x.len;
		int w = x.iface >= 0 ? snprintf(out + pos, cap - pos, "%s%c%d/%d", pos ? " " : "",
		                                letters[x.kind], x.iface, x.alt)
		                     : snprintf(out + pos, cap - pos, "%s%c", pos ? " " : "",
		                                letters[x.kind]);
		if (w < 0 || (size_t)w >= cap - pos)
			return false;
		pos += (size_t)w;
	}
	/* The whole chain, and nothing after the end. */
	return r == 0 && next_off == it.total && uw_config_iter_next(&it, &x) == 0;
}

static void test_config_valid(void)
{
	for (size_t i = 0; i < sizeof cfg_cases / sizeof *cfg_cases; i++) {
		const struct cfg_case *c = &cfg_cases[i];
		uint8_t b[512];
		char items[512];
		size_t n = t_unhex(c->hex, b, sizeof b);
		uw_config_desc h, hh;
		uw_desc_err e = {0};
		int rc = c->other_speed ? uw_other_speed_config_check(b, n, &h, &e)
		                        : uw_config_check(b, n, &h, &e);
		/* The other check refuses the other type, at bDescriptorType. */
		uw_desc_err e2 = {0};
		int rc2 = c->other_speed ? uw_config_check(b, n, &hh, &e2)
		                         : uw_other_speed_config_check(b, n, &hh, &e2);
		bool walked = render_items(b, n, items, sizeof items);
		bool ok = rc == UW_OK && cfg_eq(&h, &c->want) && rc2 == UW_E_DESC && e2.off == 1 &&
		          walked && strcmp(items, c->items) == 0 &&
		          uw_config_header_parse(b, 9, &hh, NULL) == UW_OK &&
		          cfg_eq(&hh, &c->want) &&
		          uw_config_interface_count(b, n) == c->want.num_interfaces;
		t_ok(ok, "config: %s (%s at %zu: %s)", c->name, errname(rc), e.off,
		     e.what ? e.what : "-");
		if (!ok)
			t_diag("items: got \"%s\", want \"%s\"", items, c->items);
	}
}

/* ---- Every truncation point --------------------------------------------------------------- */

enum parser { P_DEVICE, P_QUAL, P_CONFIG, P_OTHER_SPEED, P_BOS, P_STRING };

static int run_parser(enum parser p, const uint8_t *b, size_t n)
{
	uw_device_desc d;
	uw_qualifier_desc q;
	char s[8];
	switch (p) {
	case P_DEVICE:
		return uw_device_desc_parse(b, n, &d, NULL);
	case P_QUAL:
		return uw_qualifier_desc_parse(b, n, &q, NULL);
	case P_CONFIG:
		return uw_config_check(b, n, NULL, NULL);
	case P_OTHER_SPEED:
		return uw_other_speed_config_check(b, n, NULL, NULL);
	case P_BOS:
		return uw_bos_check(b, n, NULL, NULL);
	case P_STRING:
		return uw_string_desc_to_utf8(b, n, s, sizeof s, NULL);
	}
	return UW_E_INVAL;
}

static const struct trunc_case {
	const char *name;
	enum parser p;
	const char *hex;
} trunc_cases[] = {
    {"device keyboard", P_DEVICE, DEV_KB},
    {"device SuperSpeed", P_DEVICE, DEV_SS},
    {"qualifier", P_QUAL, QUAL_HS},
    {"config keyboard", P_CONFIG, CFG_KB},
    {"config mass storage", P_CONFIG, CFG_MSC},
    {"config UAC2", P_CONFIG, CFG_UAC},
    {"config SuperSpeed", P_CONFIG, CFG_SS},
    {"config clash", P_CONFIG, CFG_CLASH},
    {"other-speed config", P_OTHER_SPEED, OSC_MSC},
    {"BOS", P_BOS, BOS_SS},
    {"string keyboard", P_STRING, STR_KB},
    {"string with surrogate pair", P_STRING, STR_GRUESSE},
    {"string LANGIDs", P_STRING, STR_LANG2},
};

static void test_truncation(void)
{
	for (size_t i = 0; i < sizeof trunc_cases / sizeof *trunc_cases; i++) {
		const struct trunc_case *c = &trunc_cases[i];
		uint8_t b[512];
		size_t n = t_unhex(c->hex, b, sizeof b);
		bool ok = run_parser(c->p, b, n) >= 0; /* strings return their UTF-8 length */
		for (size_t k = 0; k < n && ok; k++) {
			int rc = run_parser(c->p, b, k);
			if (rc != UW_E_SHORT) {
				t_diag("%s: prefix of %zu bytes gave %s", c->name, k, errname(rc));
				ok = false;
			}
		}
		t_ok(ok, "truncation: %s, all %zu prefixes UW_E_SHORT", c->name, n);
	}
	/* Cut inside the chain and claim the cut is the whole: a clean error, or a valid prefix. */
	for (size_t i = 0; i < sizeof trunc_cases / sizeof *trunc_cases; i++) {
		const struct trunc_case *c = &trunc_cases[i];
		if (c->p != P_CONFIG && c->p != P_BOS)
			continue;
		uint8_t b[512];
		size_t n = t_unhex(c->hex, b, sizeof b), bad = 0, valid = 0;
		size_t hdr = c->p == P_CONFIG ? 9 : 5;
		for (size_t k = hdr; k < n; k++) {
			b[2] = (uint8_t)k;
			b[3] = (uint8_t)(k >> 8);
			int rc = run_parser(c->p, b, k);
			if (rc == UW_OK)
				valid++;
			else if (rc != UW_E_DESC)
				bad++;
		}
		t_ok(bad == 0,
		     "truncation: %s with wTotalLength cut, %zu cuts valid, rest UW_E_DESC",
		     c->name, valid);
	}
}

/* ---- Malformed values: patch a valid example, expect an error at a field -------------------- */

static const struct bad_case {
	const char *name;
	enum parser p;
	const char *base;
	size_t at;
	const char *patch; /* hex written at `at` */
	int rc;
	size_t off;
} bad_cases[] = {
    /* configuration header */
    {"config bLength 0", P_CONFIG, CFG_KB, 0, "00", UW_E_DESC, 0},
    {"config bLength 1", P_CONFIG, CFG_KB, 0, "01", UW_E_DESC, 0},
    {"config bLength 8", P_CONFIG, CFG_KB, 0, "08", UW_E_DESC, 0},
    {"config bLength 255 > wTotalLength", P_CONFIG, CFG_KB, 0, "ff", UW_E_DESC, 2},
    {"config type 4", P_CONFIG, CFG_KB, 1, "04", UW_E_DESC, 1},
    {"config wTotalLength + 1", P_CONFIG, CFG_KB, 2, "2300", UW_E_SHORT, 2},
    {"config wTotalLength 0xffff", P_CONFIG, CFG_KB, 2, "ffff", UW_E_SHORT, 2},
    {"config wTotalLength - 1", P_CONFIG, CFG_KB, 2, "2100", UW_E_DESC, 27},
    {"config wTotalLength 8", P_CONFIG, CFG_KB, 2, "0800", UW_E_DESC, 2},
    {"config wTotalLength 0", P_CONFIG, CFG_KB, 2, "0000", UW_E_DESC, 2},
    {"config wTotalLength 9, interfaces cut", P_CONFIG, CFG_KB, 2, "0900", UW_E_DESC, 4},
    {"config wTotalLength 10, 1 byte left", P_CONFIG, CFG_KB, 2, "0a00", UW_E_DESC, 9},
    {"bNumInterfaces 2, 1 present", P_CONFIG, CFG_KB, 4, "02", UW_E_DESC, 4},
    {"bNumInterfaces 0, 1 present", P_CONFIG, CFG_KB, 4, "00", UW_E_DESC, 4},
    {"UAC bNumInterfaces 2, 3 present", P_CONFIG, CFG_UAC, 4, "02", UW_E_DESC, 4},
    {"other-speed with type 2", P_OTHER_SPEED, OSC_MSC, 1, "02", UW_E_DESC, 1},
    /* interface */
    {"interface bLength 0", P_CONFIG, CFG_KB, 9, "00", UW_E_DESC, 9},
    {"interface bLength 1", P_CONFIG, CFG_KB, 9, "01", UW_E_DESC, 9},
    {"interface bLength 8", P_CONFIG, CFG_KB, 9, "08", UW_E_DESC, 9},
    {"interface bLength past wTotalLength", P_CONFIG, CFG_KB, 9, "1a", UW_E_DESC, 9},
    {"interface bNumEndpoints 0, 1 follows", P_CONFIG, CFG_KB, 13, "00", UW_E_DESC, 27},
    {"interface bNumEndpoints 2, 1 follows", P_CONFIG, CFG_KB, 13, "02", UW_E_DESC, 13},
    {"interface bNumEndpoints 31", P_CONFIG, CFG_KB, 13, "1f", UW_E_LIMIT, 13},
    {"MSC bNumEndpoints 1, 2 follow", P_CONFIG, CFG_MSC, 13, "01", UW_E_DESC, 25},
    {"MSC bNumEndpoints 3, 2 follow", P_CONFIG, CFG_MSC, 13, "03", UW_E_DESC, 13},
    {"UAC if2/1 bNumEndpoints 0, 1 follows", P_CONFIG, CFG_UAC, 94, "00", UW_E_DESC, 99},
    {"UAC if1/1 bNumEndpoints 1, 2 follow", P_CONFIG, CFG_UAC, 48, "01", UW_E_DESC, 74},
    {"interface without altsetting 0", P_CONFIG, CFG_KB, 12, "01", UW_E_DESC, 12},
    {"UAC repeated altsetting", P_CONFIG, CFG_UAC, 47, "00", UW_E_DESC, 47},
    {"UAC if2/0 renumbered 1: repeated altsetting", P_CONFIG, CFG_UAC, 83, "01", UW_E_DESC, 84},
    /* endpoint */
    {"endpoint bLength 6", P_CONFIG, CFG_KB, 27, "06", UW_E_DESC, 27},
    {"endpoint bLength 8 past the end", P_CONFIG, CFG_KB, 27, "08", UW_E_DESC, 27},
    {"endpoint number 0 IN", P_CONFIG, CFG_KB, 29, "80", UW_E_DESC, 29},
    {"endpoint number 0 OUT", P_CONFIG, CFG_MSC, 27, "00", UW_E_DESC, 27},
    {"endpoint reserved address bits", P_CONFIG, CFG_KB, 29, "91", UW_E_DESC, 29},
    {"endpoint address repeated in altsetting", P_CONFIG, CFG_MSC, 27, "81", UW_E_DESC, 27},
    {"interrupt wMaxPacketSize transactions 3", P_CONFIG, CFG_KB, 32, "18", UW_E_DESC, 31},
    {"isochronous wMaxPacketSize transactions 3", P_CONFIG, CFG_UAC, 104, "18", UW_E_DESC, 103},
    {"endpoint before any interface", P_CONFIG, CFG_KB, 10, "21", UW_E_DESC, 27},
    /* class-specific and other descriptors */
    {"HID descriptor bLength 0", P_CONFIG, CFG_KB, 18, "00", UW_E_DESC, 18},
    {"HID descriptor bLength 1", P_CONFIG, CFG_KB, 18, "01", UW_E_DESC, 18},
    {"HID descriptor bLength past the end", P_CONFIG, CFG_KB, 18, "11", UW_E_DESC, 18},
    {"device descriptor inside", P_CONFIG, CFG_KB, 19, "01", UW_E_DESC, 19},
    {"configuration inside", P_CONFIG, CFG_KB, 19, "02", UW_E_DESC, 19},
    {"string inside", P_CONFIG, CFG_KB, 19, "03", UW_E_DESC, 19},
    {"BOS inside", P_CONFIG, CFG_KB, 19, "0f", UW_E_DESC, 19},
    {"IAD bLength 7", P_CONFIG, CFG_UAC, 9, "07", UW_E_DESC, 9},
    {"IAD bInterfaceCount 0", P_CONFIG, CFG_UAC, 12, "00", UW_E_DESC, 12},
    {"IAD range past 255", P_CONFIG, CFG_UAC, 11, "ff", UW_E_DESC, 12},
    /* SuperSpeed companions */
    {"companion bLength 5", P_CONFIG, CFG_SS, 25, "05", UW_E_DESC, 25},
    {"companion bMaxBurst 16", P_CONFIG, CFG_SS, 27, "10", UW_E_DESC, 27},
    {"bulk companion MaxStreams 17", P_CONFIG, CFG_SS, 28, "11", UW_E_DESC, 28},
    {"isochronous companion Mult 3", P_CONFIG, CFG_SS, 72, "03", UW_E_DESC, 72},
    {"companion after a companion", P_CONFIG, CFG_SS, 32, "30", UW_E_DESC, 31},
    {"companion after an interface", P_CONFIG, CFG_SS, 18, "06 30 00 00 0000 00", UW_E_DESC, 18},
    {"SSP companion not announced", P_CONFIG, CFG_SS, 107, "00", UW_E_DESC, 110},
    {"SSP companion bLength 7", P_CONFIG, CFG_SS, 110, "07", UW_E_DESC, 110},
    {"SSP companion after an endpoint", P_CONFIG, CFG_SS, 104, "06 31", UW_E_DESC, 104},
    /* BOS */
    {"BOS bLength 4", P_BOS, BOS_SS, 0, "04", UW_E_DESC, 0},
    {"BOS bLength 0", P_BOS, BOS_SS, 0, "00", UW_E_DESC, 0},
    {"BOS type 16", P_BOS, BOS_SS, 1, "10", UW_E_DESC, 1},
    {"BOS wTotalLength + 1", P_BOS, BOS_SS, 2, "3f00", UW_E_SHORT, 2},
    {"BOS wTotalLength - 1", P_BOS, BOS_SS, 2, "3d00", UW_E_DESC, 42},
    {"BOS wTotalLength 4", P_BOS, BOS_SS, 2, "0400", UW_E_DESC, 2},
    {"BOS bNumDeviceCaps 3, 4 follow", P_BOS, BOS_SS, 4, "03", UW_E_DESC, 42},
    {"BOS bNumDeviceCaps 5, 4 follow", P_BOS, BOS_SS, 4, "05", UW_E_DESC, 4},
    {"BOS bNumDeviceCaps 65", P_BOS, BOS_SS, 4, "41", UW_E_LIMIT, 4},
    {"capability bLength 2", P_BOS, BOS_SS, 5, "02", UW_E_DESC, 5},
    {"capability bLength 0", P_BOS, BOS_SS, 12, "00", UW_E_DESC, 12},
    {"capability past wTotalLength", P_BOS, BOS_SS, 42, "15", UW_E_DESC, 42},
    {"capability type 5", P_BOS, BOS_SS, 13, "05", UW_E_DESC, 13},
    {"USB 2.0 extension bLength 6", P_BOS, BOS_SS, 5, "06", UW_E_DESC, 5},
    {"SuperSpeed capability bLength 9", P_BOS, BOS_SS, 12, "09", UW_E_DESC, 12},
    {"SSP sublink attributes overrun", P_BOS, BOS_SS, 46, "02", UW_E_DESC, 42},
    /* strings */
    {"string odd bLength", P_STRING, STR_KB, 0, "19", UW_E_DESC, 0},
    {"string bLength 0", P_STRING, STR_KB, 0, "00", UW_E_DESC, 0},
    {"string bLength 1", P_STRING, STR_KB, 0, "01", UW_E_DESC, 0},
    {"string bLength past the input", P_STRING, STR_KB, 0, "1c", UW_E_SHORT, 26},
    {"string type 2", P_STRING, STR_KB, 1, "02", UW_E_DESC, 1},
};

static void test_malformed(void)
{
	for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
		const struct bad_case *c = &bad_cases[i];
		uint8_t b[512], pb[16];
		size_t n = t_unhex(c->base, b, sizeof b);
		size_t pn = t_unhex(c->patch, pb, sizeof pb);
		memcpy(b + c->at, pb, pn);
		uw_desc_err e = {0};
		uw_config_desc h = {.total_length = 0xbeef};
		uw_bos_desc bos = {.total_length = 0xbeef};
		char s[64] = "untouched";
		int rc;
		switch (c->p) {
		case P_CONFIG:
			rc = uw_config_check(b, n, &h, &e);
			break;
		case P_OTHER_SPEED:
			rc = uw_other_speed_config_check(b, n, &h, &e);
			break;
		case P_BOS:
			rc = uw_bos_check(b, n, &bos, &e);
			break;
		case P_STRING:
			rc = uw_string_desc_to_utf8(b, n, s, sizeof s, &e);
			break;
		default:
			rc = run_parser(c->p, b, n);
			break;
		}
		bool untouched = h.total_length == 0xbeef && bos.total_length == 0xbeef &&
		                 strcmp(s, "untouched") == 0;
		t_ok(rc == c->rc && e.off == c->off && e.what && untouched,
		     "malformed: %s -> %s at %zu (got %s at %zu: %s)", c->name, errname(c->rc),
		     c->off, errname(rc), e.off, e.what ? e.what : "-");
	}
}

/* ---- Limits, at and just past ------------------------------------------------------------- */

/* A configuration of n interfaces (alts == false) or of one interface with n altsettings. */
static size_t build_many(uint8_t *b, size_t cap, unsigned n, bool alts)
{
	size_t total = 9 + 9 * (size_t)n;
	if (total > cap)
		return 0;
	uint8_t hdr[9] = {
	    9, 2, (uint8_t)total, (uint8_t)(total >> 8), (uint8_t)(alts ? 1 : n), 1, 0, 0x80, 50};
	memcpy(b, hdr, 9);
	for (unsigned i = 0; i < n; i++) {
		uint8_t in[9] = {9, 4, (uint8_t)(alts ? 0 : i), (uint8_t)(alts ? i : 0), 0, 0xff, 0,
		                 0, 0};
		memcpy(b + 9 + 9 * (size_t)i, in, 9);
	}
	return total;
}

/* A BOS of n unknown 3-byte capabilities. */
static size_t build_bos(uint8_t *b, size_t cap, unsigned n)
{
	size_t total = 5 + 3 * (size_t)n;
	if (total > cap)
		return 0;
	uint8_t hdr[5] = {5, 15, (uint8_t)total, (uint8_t)(total >> 8), (uint8_t)n};
	memcpy(b, hdr, 5);
	for (unsigned i = 0; i < n; i++) {
		uint8_t d[3] = {3, 16, 0x20};
		memcpy(b + 5 + 3 * (size_t)i, d, 3);
	}
	return total;
}

static uint8_t big[65536 + 16];

static void test_limits(void)
{
	static const struct {
		const char *name;
		unsigned n;
		int kind; /* 0 interfaces, 1 altsettings, 2 BOS caps */
		int rc;
		size_t off;
	} rows[] = {
	    {"32 interfaces", UW_MAX_INTERFACES, 0, UW_OK, 0},
	    {"33 interfaces", UW_MAX_INTERFACES + 1, 0, UW_E_LIMIT, 9 + 32 * 9 + 2},
	    {"128 altsettings", UW_MAX_ALTSETTINGS, 1, UW_OK, 0},
	    {"129 altsettings", UW_MAX_ALTSETTINGS + 1, 1, UW_E_LIMIT, 9 + 128 * 9 + 3},
	    {"64 BOS capabilities", UW_MAX_BOS_CAPS, 2, UW_OK, 0},
	    {"65 BOS capabilities", UW_MAX_BOS_CAPS + 1, 2, UW_E_LIMIT, 4},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		uw_desc_err e = {0};
		size_t n;
		int rc;
		if (rows[i].kind == 2) {
			n = build_bos(big, sizeof big, rows[i].n);
			rc = uw_bos_check(big, n, NULL, &e);
		} else {
			n = build_many(big, sizeof big, rows[i].n, rows[i].kind == 1);
			rc = uw_config_check(big, n, NULL, &e);
		}
		t_ok(rc == rows[i].rc && (rc == UW_OK || e.off == rows[i].off),
		     "limit: %s -> %s (got %s at %zu)", rows[i].name, errname(rows[i].rc),
		     errname(rc), e.off);
	}

	/* 30 endpoints (15 IN + 15 OUT) in one altsetting: the most there can be. */
	uint8_t b[9 + 9 + 30 * 7];
	size_t total = sizeof b;
	uint8_t hdr[18] = {9, 2,  (uint8_t)total, 0, 1, 1, 0, 0x80, 50, 9, 4, 0,
	                   0, 30, 0xff,           0, 0, 0};
	memcpy(b, hdr, sizeof hdr);
	for (unsigned i = 0; i < 30; i++) {
		uint8_t ep[7] = {7, 5, (uint8_t)((i % 15 + 1) | (i >= 15 ? 0x80 : 0)), 2, 0, 2, 0};
		memcpy(b + 18 + 7 * i, ep, 7);
	}
	uw_ep_table t;
	bool ok = uw_config_check(b, total, NULL, NULL) == UW_OK &&
	          uw_ep_table_build(b, total, NULL, NULL, &t, NULL) == UW_OK &&
	          t.in[15].xfer == UW_XFER_BULK && t.out[15].xfer == UW_XFER_BULK;
	t_ok(ok, "limit: 30 endpoints in one altsetting, all in the endpoint table");

	/* The largest configuration there can be: 65535 bytes, mostly class-specific filler. */
	memset(big, 0, sizeof big);
	uint8_t h2[18] = {9, 2, 0xff, 0xff, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 0, 0xff, 0, 0, 0};
	memcpy(big, h2, sizeof h2);
	size_t off = 18;
	while (off < 65535) {
		size_t left = 65535 - off;
		size_t bl = left > 255 ? (left - 255 >= 2 ? 255 : 253) : left;
		big[off] = (uint8_t)bl;
		big[off + 1] = 0x24;
		off += bl;
	}
	uw_desc_err e = {0};
	int rc = uw_config_check(big, 65535, NULL, &e);
	t_ok(rc == UW_OK, "limit: wTotalLength 65535 (got %s at %zu: %s)", errname(rc), e.off,
	     e.what ? e.what : "-");
}

/* ---- Queries: endpoints, altsettings, interfaces, the endpoint table ----------------------- */

static bool ep_eq(const uw_endpoint_desc *a, const uw_endpoint_desc *b)
{
	return a->address == b->address && a->attributes == b->attributes &&
	       a->max_packet_raw == b->max_packet_raw && a->interval == b->interval &&
	       a->number == b->number && a->dir == b->dir && a->xfer == b->xfer &&
	       a->max_packet == b->max_packet && a->mult == b->mult && a->burst == b->burst &&
	       a->has_ss_comp == b->has_ss_comp && a->ss_attributes == b->ss_attributes &&
	       a->bytes_per_interval == b->bytes_per_interval;
}

static const struct ep_case {
	const char *name;
	const char *cfg;
	const char *sel;
	uint8_t addr;
	int rc;
	uw_endpoint_desc want;
	uint32_t payload;
} ep_cases[] = {
    {"keyboard 0x81",
     CFG_KB,
     NULL,
     0x81,
     UW_OK,
     {.address = 0x81,
      .attributes = 3,
      .max_packet_raw = 8,
      .interval = 10,
      .number = 1,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_INT,
      .max_packet = 8,
      .mult = 1,
      .burst = 1},
     8},
    {"keyboard 0x01 absent", CFG_KB, NULL, 0x01, UW_E_NOTFOUND, {0}, 0},
    {"keyboard endpoint 0 is not in a configuration", CFG_KB, NULL, 0x80, UW_E_NOTFOUND, {0}, 0},
    {"mass storage 0x02",
     CFG_MSC,
     NULL,
     0x02,
     UW_OK,
     {.address = 0x02,
      .attributes = 2,
      .max_packet_raw = 512,
      .number = 2,
      .dir = UW_DIR_OUT,
      .xfer = UW_XFER_BULK,
      .max_packet = 512,
      .mult = 1,
      .burst = 1},
     512},
    {"other-speed mass storage 0x81",
     OSC_MSC,
     NULL,
     0x81,
     UW_OK,
     {.address = 0x81,
      .attributes = 2,
      .max_packet_raw = 64,
      .number = 1,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_BULK,
      .max_packet = 64,
      .mult = 1,
      .burst = 1},
     64},
    {"UAC 0x01 in zero-bandwidth altsetting 0", CFG_UAC, NULL, 0x01, UW_E_NOTFOUND, {0}, 0},
    {"UAC 0x01 in if1/1",
     CFG_UAC,
     "1=1",
     0x01,
     UW_OK,
     {.address = 0x01,
      .attributes = 5,
      .max_packet_raw = 196,
      .interval = 1,
      .number = 1,
      .dir = UW_DIR_OUT,
      .xfer = UW_XFER_ISO,
      .max_packet = 196,
      .mult = 1,
      .burst = 1},
     196},
    {"UAC feedback 0x81 in if1/1",
     CFG_UAC,
     "1=1",
     0x81,
     UW_OK,
     {.address = 0x81,
      .attributes = 0x11,
      .max_packet_raw = 4,
      .interval = 4,
      .number = 1,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_ISO,
      .max_packet = 4,
      .mult = 1,
      .burst = 1},
     4},
    {"UAC high-bandwidth 0x82 in if2/1",
     CFG_UAC,
     "2=1",
     0x82,
     UW_OK,
     {.address = 0x82,
      .attributes = 5,
      .max_packet_raw = 0x08c4,
      .interval = 1,
      .number = 2,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_ISO,
      .max_packet = 196,
      .mult = 2,
      .burst = 1},
     392},
    {"UAC 0x82 in if2/2",
     CFG_UAC,
     "1=1,2=2",
     0x82,
     UW_OK,
     {.address = 0x82,
      .attributes = 5,
      .max_packet_raw = 0x0188,
      .interval = 1,
      .number = 2,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_ISO,
      .max_packet = 392,
      .mult = 1,
      .burst = 1},
     392},
    {"SuperSpeed bulk 0x81, burst 16",
     CFG_SS,
     NULL,
     0x81,
     UW_OK,
     {.address = 0x81,
      .attributes = 2,
      .max_packet_raw = 1024,
      .number = 1,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_BULK,
      .max_packet = 1024,
      .mult = 1,
      .burst = 16,
      .has_ss_comp = true},
     16384},
    {"SuperSpeed isochronous 0x83, burst 4, Mult 3",
     CFG_SS,
     "1=1",
     0x83,
     UW_OK,
     {.address = 0x83,
      .attributes = 1,
      .max_packet_raw = 1024,
      .interval = 1,
      .number = 3,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_ISO,
      .max_packet = 1024,
      .mult = 3,
      .burst = 4,
      .has_ss_comp = true,
      .ss_attributes = 2,
      .bytes_per_interval = 12288},
     12288},
    {"SuperSpeed interrupt 0x84",
     CFG_SS,
     "1=1",
     0x84,
     UW_OK,
     {.address = 0x84,
      .attributes = 3,
      .max_packet_raw = 64,
      .interval = 4,
      .number = 4,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_INT,
      .max_packet = 64,
      .mult = 1,
      .burst = 1,
      .has_ss_comp = true,
      .bytes_per_interval = 64},
     64},
    {"SuperSpeedPlus isochronous 0x83",
     CFG_SS,
     "1=2",
     0x83,
     UW_OK,
     {.address = 0x83,
      .attributes = 1,
      .max_packet_raw = 1024,
      .interval = 1,
      .number = 3,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_ISO,
      .max_packet = 1024,
      .mult = 1,
      .burst = 16,
      .has_ss_comp = true,
      .ss_attributes = 0x80,
      .bytes_per_interval = 65536},
     16384},
    {"address clash between selected altsettings", CFG_CLASH, "1=1", 0x81, UW_E_DESC, {0}, 0},
    {"address clash not selected",
     CFG_CLASH,
     NULL,
     0x81,
     UW_OK,
     {.address = 0x81,
      .attributes = 2,
      .max_packet_raw = 512,
      .number = 1,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_BULK,
      .max_packet = 512,
      .mult = 1,
      .burst = 1},
     512},
    {"trailing byte ignored",
     CFG_KB " ff",
     NULL,
     0x81,
     UW_OK,
     {.address = 0x81,
      .attributes = 3,
      .max_packet_raw = 8,
      .interval = 10,
      .number = 1,
      .dir = UW_DIR_IN,
      .xfer = UW_XFER_INT,
      .max_packet = 8,
      .mult = 1,
      .burst = 1},
     8},
    {"bNumInterfaces lies",
     "09 02 2200 02 01 00 a0 32 | 09 04 00 00 01 03 01 01 00 | 09 21 1101 00 01 22 3f00 | "
     "07 05 81 03 0800 0a",
     NULL,
     0x81,
     UW_E_DESC,
     {0},
     0},
    {"truncated",
     "09 02 2200 01 01 00 a0 32 | 09 04 00 00 01 03 01 01 00",
     NULL,
     0x81,
     UW_E_SHORT,
     {0},
     0},
};

static void test_find_endpoint(void)
{
	for (size_t i = 0; i < sizeof ep_cases / sizeof *ep_cases; i++) {
		const struct ep_case *c = &ep_cases[i];
		uint8_t b[512];
		uw_alt_sel sel;
		size_t n = t_unhex(c->cfg, b, sizeof b);
		uw_endpoint_desc ep = {.address = 0xee};
		int rc = uw_config_find_endpoint(b, n, mksel(c->sel, &sel), c->addr, &ep);
		bool ok = rc == c->rc;
		if (c->rc == UW_OK)
			ok = ok && ep_eq(&ep, &c->want) &&
			     uw_endpoint_max_payload(&ep) == c->payload;
		else
			ok = ok && ep.address == 0xee;
		t_ok(ok, "find endpoint: %s -> %s (got %s)", c->name, errname(c->rc), errname(rc));
	}
}

static void test_find_alt(void)
{
	static const struct {
		const char *name;
		const char *cfg;
		uint8_t iface, alt;
		int rc;
		uint8_t neps, cls, sub, proto;
	} rows[] = {
	    {"UAC if1/1", CFG_UAC, 1, 1, UW_OK, 2, 1, 2, 0x20},
	    {"UAC if2/2", CFG_UAC, 2, 2, UW_OK, 1, 1, 2, 0x20},
	    {"UAC if2/3 absent", CFG_UAC, 2, 3, UW_E_NOTFOUND, 0, 0, 0, 0},
	    {"UAC if3 absent", CFG_UAC, 3, 0, UW_E_NOTFOUND, 0, 0, 0, 0},
	    {"keyboard if0/0", CFG_KB, 0, 0, UW_OK, 1, 3, 1, 1},
	    {"SuperSpeed if1/2", CFG_SS, 1, 2, UW_OK, 1, 0xff, 0, 0},
	    {"malformed", "09 02 0900 01 01 00 80 32", 0, 0, UW_E_DESC, 0, 0, 0, 0},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		uint8_t b[512];
		size_t n = t_unhex(rows[i].cfg, b, sizeof b);
		uw_interface_desc d = {.num_endpoints = 0xee};
		int rc = uw_config_find_alt(b, n, rows[i].iface, rows[i].alt, &d);
		bool ok = rc == rows[i].rc;
		if (rc == UW_OK)
			ok = ok && d.interface_number == rows[i].iface &&
			     d.alternate_setting == rows[i].alt &&
			     d.num_endpoints == rows[i].neps && d.interface_class == rows[i].cls &&
			     d.interface_subclass == rows[i].sub &&
			     d.interface_protocol == rows[i].proto;
		else
			ok = ok && d.num_endpoints == 0xee;
		t_ok(ok, "find altsetting: %s -> %s (got %s)", rows[i].name, errname(rows[i].rc),
		     errname(rc));
	}
}

static void test_interfaces(void)
{
	static const struct {
		const char *name;
		const char *cfg;
		const char *sel;
		size_t max;
		int rc;
		const char *triples; /* hex, 3 bytes per interface, of the first min(rc, max) */
		size_t off;
	} rows[] = {
	    {"keyboard", CFG_KB, NULL, 4, 1, "03 01 01", 0},
	    {"UAC altsetting 0", CFG_UAC, NULL, 4, 3, "01 01 20 | 01 02 20 | 01 02 20", 0},
	    {"mass storage", CFG_MSC, NULL, 4, 1, "08 06 50", 0},
	    {"out of order, ascending", CFG_REV, NULL, 4, 2, "02 02 01 | 0a 00 00", 0},
	    {"out of order, if0/1", CFG_REV, "0=1", 4, 2, "02 02 02 | 0a 00 00", 0},
	    {"room for one of three", CFG_UAC, NULL, 1, 3, "01 01 20", 0},
	    {"count only", CFG_UAC, NULL, 0, 3, "", 0},
	    {"no interfaces", CFG_EMPTY, NULL, 4, 0, "", 0},
	    {"selected altsetting absent", CFG_UAC, "2=9", 4, UW_E_NOTFOUND, "", 84},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		uint8_t b[512], want[32 * 3];
		uw_usb_interface got[4];
		uw_alt_sel sel;
		uw_desc_err e = {0};
		memset(got, 0xee, sizeof got);
		size_t n = t_unhex(rows[i].cfg, b, sizeof b);
		size_t wn = t_unhex(rows[i].triples, want, sizeof want) / 3;
		int rc = uw_config_interfaces(b, n, mksel(rows[i].sel, &sel), got, rows[i].max, &e);
		bool ok = rc == rows[i].rc;
		for (size_t k = 0; ok && k < wn; k++)
			ok = got[k].iface_class == want[3 * k] &&
			     got[k].iface_subclass == want[3 * k + 1] &&
			     got[k].iface_protocol == want[3 * k + 2];
		if (ok && wn < 4)
			ok = got[wn].iface_class == 0xee; /* nothing past min(count, max) */
		if (rc < 0)
			ok = ok && e.off == rows[i].off;
		t_ok(ok, "interfaces: %s -> %d (got %d)", rows[i].name, rows[i].rc, rc);
	}
}

struct ep_want {
	uint8_t ep, dir, xfer;
	uint16_t max_packet;
	uint8_t mult, burst;
};

static const struct table_case {
	const char *name;
	const char *cfg; /* NULL: unconfigured */
	const char *sel;
	const char *dev; /* NULL: no device descriptor */
	int rc;
	size_t off;
	unsigned known; /* entries that are not UW_XFER_UNKNOWN */
	struct ep_want want[6];
} table_cases[] = {
    {"keyboard",
     CFG_KB,
     NULL,
     DEV_KB,
     UW_OK,
     0,
     3,
     {{0, UW_DIR_IN, UW_XFER_CONTROL, 8, 1, 1},
      {0, UW_DIR_OUT, UW_XFER_CONTROL, 8, 1, 1},
      {1, UW_DIR_IN, UW_XFER_INT, 8, 1, 1}}},
    {"mass storage",
     CFG_MSC,
     NULL,
     DEV_MSC,
     UW_OK,
     0,
     4,
     {{0, UW_DIR_IN, UW_XFER_CONTROL, 64, 1, 1},
      {1, UW_DIR_IN, UW_XFER_BULK, 512, 1, 1},
      {2, UW_DIR_OUT, UW_XFER_BULK, 512, 1, 1}}},
    {"UAC altsetting 0 everywhere",
     CFG_UAC,
     NULL,
     DEV_AUDIO,
     UW_OK,
     0,
     2,
     {{0, UW_DIR_IN, UW_XFER_CONTROL, 64, 1, 1}}},
    {"UAC if1/1 if2/2",
     CFG_UAC,
     "1=1,2=2",
     DEV_AUDIO,
     UW_OK,
     0,
     5,
     {{1, UW_DIR_OUT, UW_XFER_ISO, 196, 1, 1},
      {1, UW_DIR_IN, UW_XFER_ISO, 4, 1, 1},
      {2, UW_DIR_IN, UW_XFER_ISO, 392, 1, 1}}},
    {"UAC if2/1 high bandwidth",
     CFG_UAC,
     "2=1",
     DEV_AUDIO,
     UW_OK,
     0,
     3,
     {{2, UW_DIR_IN, UW_XFER_ISO, 196, 2, 1}}},
    {"UAC if1/7 absent", CFG_UAC, "1=7", DEV_AUDIO, UW_E_NOTFOUND, 38, 0, {{0}}},
    {"SuperSpeed",
     CFG_SS,
     NULL,
     DEV_SS,
     UW_OK,
     0,
     4,
     {{0, UW_DIR_OUT, UW_XFER_CONTROL, 512, 1, 1},
      {1, UW_DIR_IN, UW_XFER_BULK, 1024, 1, 16},
      {2, UW_DIR_OUT, UW_XFER_BULK, 1024, 1, 16}}},
    {"SuperSpeed if1/1",
     CFG_SS,
     "1=1",
     DEV_SS,
     UW_OK,
     0,
     6,
     {{3, UW_DIR_IN, UW_XFER_ISO, 1024, 3, 4}, {4, UW_DIR_IN, UW_XFER_INT, 64, 1, 1}}},
    {"endpoint clash not selected",
     CFG_CLASH,
     NULL,
     DEV_MSC,
     UW_OK,
     0,
     3,
     {{1, UW_DIR_IN, UW_XFER_BULK, 512, 1, 1}}},
    {"endpoint clash selected", CFG_CLASH, "1=1", DEV_MSC, UW_E_DESC, 45, 0, {{0}}},
    {"selection of an absent interface ignored",
     CFG_KB,
     "5=3",
     DEV_KB,
     UW_OK,
     0,
     3,
     {{1, UW_DIR_IN, UW_XFER_INT, 8, 1, 1}}},
    {"unconfigured", NULL, NULL, DEV_SS, UW_OK, 0, 2, {{0, UW_DIR_IN, UW_XFER_CONTROL, 512, 1, 1}}},
    {"no device descriptor",
     CFG_KB,
     NULL,
     NULL,
     UW_OK,
     0,
     3,
     {{0, UW_DIR_IN, UW_XFER_CONTROL, 0, 1, 1}}},
    {"trailing byte ignored", CFG_KB " ff", NULL, DEV_KB, UW_OK, 0, 3, {{0}}},
    {"truncated configuration", "09 02 2200 01 01 00 a0 32", NULL, DEV_KB, UW_E_SHORT, 2, 0, {{0}}},
};

static void test_ep_table(void)
{
	for (size_t i = 0; i < sizeof table_cases / sizeof *table_cases; i++) {
		const struct table_case *c = &table_cases[i];
		uint8_t b[512], db[32];
		uw_alt_sel sel;
		uw_device_desc dev;
		uw_desc_err e = {0};
		size_t n = c->cfg ? t_unhex(c->cfg, b, sizeof b) : 0;
		bool ok = !c->dev || uw_device_desc_parse(db, t_unhex(c->dev, db, sizeof db), &dev,
		                                          NULL) == UW_OK;
		uw_ep_table t;
		memset(&t, 0xee, sizeof t);
		int rc = uw_ep_table_build(c->cfg ? b : NULL, n, mksel(c->sel, &sel),
		                           c->dev ? &dev : NULL, &t, &e);
		ok = ok && rc == c->rc;
		if (rc == UW_OK) {
			unsigned known = 0;
			for (uint32_t ep = 0; ep < 16; ep++)
				for (uint32_t d = 0; d < 2; d++)
					known += uw_ep_table_xfer(&t, ep, d) != UW_XFER_UNKNOWN;
			ok = ok && known == c->known;
			for (size_t k = 0; k < 6 && c->want[k].mult; k++) {
				const struct ep_want *w = &c->want[k];
				const uw_ep_info *x = w->dir ? &t.in[w->ep] : &t.out[w->ep];
				ok = ok && uw_ep_table_type_fn(&t, w->ep, w->dir) == w->xfer &&
				     x->max_packet == w->max_packet && x->mult == w->mult &&
				     x->burst == w->burst;
			}
			ok = ok && uw_ep_table_xfer(&t, 16, UW_DIR_IN) == UW_XFER_UNKNOWN &&
			     uw_ep_table_xfer(&t, 1, 2) == UW_XFER_UNKNOWN;
		} else {
			ok = ok && e.off == c->off && t.in[0].xfer == 0xee;
		}
		t_ok(ok, "endpoint table: %s -> %s (got %s at %zu: %s)", c->name, errname(c->rc),
		     errname(rc), e.off, e.what ? e.what : "-");
	}
}

/* ---- Strings -------------------------------------------------------------------------------- */

static const struct str_case {
	const char *name;
	const char *hex;
	size_t cap;
	int rc; /* UTF-8 length of the whole string, or an error */
	const char *want;
} str_cases[] = {
    {"ASCII", STR_KB, 64, 12, "USB Keyboard"},
    {"Latin-1 and a surrogate pair", STR_GRUESSE, 64, 12,
     "Gr\xc3\xbc\xc3\x9f"
     "e \xf0\x9f\x98\x80"},
    {"three-byte character", "04 03 ac20", 64, 3, "\xe2\x82\xac"},
    {"empty", "02 03", 64, 0, ""},
    {"lone high surrogate", "08 03 4100 00d8 4200", 64, 5,
     "A\xef\xbf\xbd"
     "B"},
    {"lone low surrogate", "04 03 00dc", 64, 3, "\xef\xbf\xbd"},
    {"high surrogate at the end", "06 03 4100 3dd8", 64, 4, "A\xef\xbf\xbd"},
    {"two highs then a low", "08 03 3dd8 3dd8 00de", 64, 7, "\xef\xbf\xbd\xf0\x9f\x98\x80"},
    {"low then high", "06 03 00dc 00d8", 64, 6, "\xef\xbf\xbd\xef\xbf\xbd"},
    {"U+0000", "06 03 4100 0000", 64, 4, "A\xef\xbf\xbd"},
    {"U+FFFF kept", "04 03 ffff", 64, 3, "\xef\xbf\xbf"},
    {"bytes after bLength ignored", "04 03 4100 4200", 64, 1, "A"},
    {"cap 4 truncates ASCII", STR_KB, 4, 12, "USB"},
    {"cap 4 stops before a 2-byte character", STR_GRUESSE, 4, 12, "Gr"},
    {"cap 5 keeps it, stops before the next", STR_GRUESSE, 5, 12, "Gr\xc3\xbc"},
    {"cap 10 stops before a 4-byte character", STR_GRUESSE, 10, 12,
     "Gr\xc3\xbc\xc3\x9f"
     "e "},
    {"cap 12 still one short", STR_GRUESSE, 12, 12,
     "Gr\xc3\xbc\xc3\x9f"
     "e "},
    {"cap 13 fits", STR_GRUESSE, 13, 12,
     "Gr\xc3\xbc\xc3\x9f"
     "e \xf0\x9f\x98\x80"},
    {"cap 1", STR_KB, 1, 12, ""},
    {"cap 0", STR_KB, 0, UW_E_INVAL, NULL},
    {"odd bLength", "03 03 41", 64, UW_E_DESC, NULL},
    {"bLength past the input", "0a 03 4100", 64, UW_E_SHORT, NULL},
    {"type 1", "04 01 4100", 64, UW_E_DESC, NULL},
};

static void test_strings(void)
{
	for (size_t i = 0; i < sizeof str_cases / sizeof *str_cases; i++) {
		const struct str_case *c = &str_cases[i];
		uint8_t b[300];
		char out[400];
		size_t n = t_unhex(c->hex, b, sizeof b);
		memset(out, 'x', sizeof out);
		int rc = uw_string_desc_to_utf8(b, n, out, c->cap, NULL);
		bool ok = rc == c->rc;
		if (c->want)
			ok = ok && strcmp(out, c->want) == 0;
		else
			ok = ok && out[0] == 'x';
		t_ok(ok, "string: %s -> %d (got %d)", c->name, c->rc, rc);
	}

	/* The longest string: 126 surrogate pairs need 252 units - only 63 pairs fit; 126 BMP
	 * three-byte characters give the maximum UTF-8 length. */
	uint8_t b[UW_STRING_DESC_MAX_LEN + 1];
	char out[UW_STRING_UTF8_MAX + 1];
	b[0] = 254;
	b[1] = 3;
	for (size_t i = 2; i < 254; i += 2) {
		b[i] = 0xac;
		b[i + 1] = 0x20;
	}
	int rc = uw_string_desc_to_utf8(b, 254, out, sizeof out, NULL);
	t_ok(rc == (int)UW_STRING_UTF8_MAX && strlen(out) == UW_STRING_UTF8_MAX,
	     "string: 126 three-byte characters, %d bytes", rc);

	static const struct {
		const char *name;
		const char *hex;
		size_t max;
		int rc;
		uint16_t want[2];
	} langs[] = {
	    {"one LANGID", STR_LANG, 4, 1, {0x0409}},
	    {"two LANGIDs", STR_LANG2, 4, 2, {0x0409, 0x0407}},
	    {"two LANGIDs, room for one", STR_LANG2, 1, 2, {0x0409}},
	    {"no LANGID", "02 03", 4, 0, {0}},
	    {"odd bLength", "05 03 0904 07", 4, UW_E_DESC, {0}},
	    {"bLength past the input", "06 03 0904", 4, UW_E_SHORT, {0}},
	    {"type 2", "04 02 0904", 4, UW_E_DESC, {0}},
	};
	for (size_t i = 0; i < sizeof langs / sizeof *langs; i++) {
		uint8_t lb[32];
		uint16_t ids[4] = {0xeeee, 0xeeee, 0xeeee, 0xeeee};
		size_t n = t_unhex(langs[i].hex, lb, sizeof lb);
		int r = uw_string_langids(lb, n, ids, langs[i].max, NULL);
		bool ok = r == langs[i].rc;
		size_t got = r > 0 ? ((size_t)r < langs[i].max ? (size_t)r : langs[i].max) : 0;
		for (size_t k = 0; ok && k < got; k++)
			ok = ids[k] == langs[i].want[k];
		ok = ok && ids[got] == 0xeeee;
		t_ok(ok, "LANGIDs: %s -> %d (got %d)", langs[i].name, langs[i].rc, r);
	}
}

/* ---- BOS ------------------------------------------------------------------------------------ */

static void test_bos(void)
{
	uint8_t b[128];
	size_t n = t_unhex(BOS_SS, b, sizeof b);
	uw_bos_desc h;
	uw_bos_iter it;
	uw_devcap cap[5];
	int r, k = 0;
	bool ok = uw_bos_check(b, n, &h, NULL) == UW_OK && h.total_length == 62 &&
	          h.num_caps == 4 && uw_bos_iter_init(&it, b, n, NULL) == UW_OK;
	while (ok && k < 5 && (r = uw_bos_iter_next(&it, &cap[k])) == 1)
		k++;
	ok = ok && k == 4;
	t_ok(ok, "BOS: header and 4 capabilities");
	if (!ok)
		return;
	t_ok(cap[0].cap_type == UW_CAP_USB2_EXT && cap[0].off == 5 && cap[0].len == 7 &&
	         cap[0].u.usb2_ext.attributes == 6,
	     "BOS: USB 2.0 extension, LPM");
	t_ok(cap[1].cap_type == UW_CAP_SUPERSPEED && cap[1].off == 12 &&
	         cap[1].u.superspeed.speeds_supported == 0x0e &&
	         cap[1].u.superspeed.functionality_support == 1 &&
	         cap[1].u.superspeed.u1_exit_lat == 0x0a &&
	         cap[1].u.superspeed.u2_exit_lat == 0x07ff,
	     "BOS: SuperSpeed capability");
	t_ok(cap[2].cap_type == UW_CAP_CONTAINER_ID && cap[2].off == 22 &&
	         cap[2].u.container_id.uuid == b + 26 && cap[2].u.container_id.uuid[15] == 0xff,
	     "BOS: container ID");
	t_ok(cap[3].cap_type == UW_CAP_SUPERSPEED_PLUS && cap[3].off == 42 && cap[3].len == 20 &&
	         cap[3].u.ssp.attributes == 1 && cap[3].u.ssp.sublink_count == 2 &&
	         cap[3].u.ssp.functionality_support == 0x1100,
	     "BOS: SuperSpeedPlus, 2 sublink speed attributes");
	uw_devcap x;
	t_ok(uw_bos_find_cap(b, n, UW_CAP_SUPERSPEED_PLUS, &x) == UW_OK && x.off == 42 &&
	         uw_bos_find_cap(b, n, UW_CAP_PLATFORM, &x) == UW_E_NOTFOUND &&
	         uw_bos_find_cap(b, n - 1, UW_CAP_USB2_EXT, &x) == UW_E_SHORT,
	     "BOS: find capability");
	uw_bos_desc hh;
	t_ok(uw_bos_header_parse(b, 5, &hh, NULL) == UW_OK && hh.total_length == 62 &&
	         uw_bos_header_parse(b, 4, &hh, NULL) == UW_E_SHORT,
	     "BOS: header alone");
}

/* ---- Device records ----------------------------------------------------------------------- */

static char busid31[32], busid32[33], path255[256], path256[257];

static const struct rec_case {
	const char *name;
	const char *dev;
	const char *cfg;
	uint8_t value;
	const char *sel;
	const char *busid, *path;
	uint32_t busnum, devnum;
	enum uw_speed speed;
	size_t max;
	int rc;
	const char *triples;
	uint32_t wire_speed;
} rec_cases[] = {
    {"keyboard", DEV_KB, CFG_KB, 1, NULL, "1-2", "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2", 1,
     3, UW_SPEED_FULL, 4, UW_OK, "03 01 01", UW_SPEED_FULL},
    {"UAC if1/1", DEV_AUDIO, CFG_UAC, 1, "1=1", "3-1.4", "/sys/devices/usb3/3-1/3-1.4", 3, 9,
     UW_SPEED_HIGH, 4, UW_OK, "01 01 20 | 01 02 20 | 01 02 20", UW_SPEED_HIGH},
    {"SuperSpeedPlus reported as SuperSpeed", DEV_SS, CFG_SS, 1, NULL, "2-1", "", 2, 2,
     UW_SPEED_SUPER_PLUS, 4, UW_OK, "08 06 50 | ff 00 00", UW_SPEED_SUPER},
    {"unconfigured", DEV_MSC, NULL, 0, NULL, "1-1", "/p", 1, 1, UW_SPEED_HIGH, 0, UW_OK, "",
     UW_SPEED_HIGH},
    {"busid of 31 characters", DEV_KB, CFG_KB, 1, NULL, busid31, path255, 0xffff, 0xffff,
     UW_SPEED_LOW, 1, UW_OK, "03 01 01", UW_SPEED_LOW},
    {"busid of 32 characters", DEV_KB, CFG_KB, 1, NULL, busid32, "/p", 1, 1, UW_SPEED_LOW, 1,
     UW_E_INVAL, "", 0},
    {"empty busid", DEV_KB, CFG_KB, 1, NULL, "", "/p", 1, 1, UW_SPEED_LOW, 1, UW_E_INVAL, "", 0},
    {"path of 256 characters", DEV_KB, CFG_KB, 1, NULL, "1-1", path256, 1, 1, UW_SPEED_LOW, 1,
     UW_E_INVAL, "", 0},
    {"busnum 65536", DEV_KB, CFG_KB, 1, NULL, "1-1", "/p", 0x10000, 1, UW_SPEED_LOW, 1, UW_E_INVAL,
     "", 0},
    {"devnum 65536", DEV_KB, CFG_KB, 1, NULL, "1-1", "/p", 1, 0x10000, UW_SPEED_LOW, 1, UW_E_INVAL,
     "", 0},
    {"speed 7", DEV_KB, CFG_KB, 1, NULL, "1-1", "/p", 1, 1, (enum uw_speed)7, 1, UW_E_INVAL, "", 0},
    {"unconfigured with value 1", DEV_KB, NULL, 1, NULL, "1-1", "/p", 1, 1, UW_SPEED_LOW, 1,
     UW_E_INVAL, "", 0},
    {"configuration value 2 vs 1", DEV_KB, CFG_KB, 2, NULL, "1-1", "/p", 1, 1, UW_SPEED_LOW, 1,
     UW_E_INVAL, "", 0},
    {"configuration given, value 0", DEV_KB, CFG_KB, 0, NULL, "1-1", "/p", 1, 1, UW_SPEED_LOW, 1,
     UW_E_INVAL, "", 0},
    {"room for 2 of 3 interfaces", DEV_AUDIO, CFG_UAC, 1, NULL, "1-1", "/p", 1, 1, UW_SPEED_HIGH, 2,
     UW_E_SHORT, "", 0},
    {"selected altsetting absent", DEV_AUDIO, CFG_UAC, 1, "2=5", "1-1", "/p", 1, 1, UW_SPEED_HIGH,
     4, UW_E_NOTFOUND, "", 0},
    {"malformed configuration", DEV_KB, "09 02 2200 02 01 00 a0 32", 1, NULL, "1-1", "/p", 1, 1,
     UW_SPEED_LOW, 4, UW_E_SHORT, "", 0},
    {"interfaces in ascending order", DEV_KB, CFG_REV, 1, "0=1", "1-1", "/p", 1, 1, UW_SPEED_FULL,
     4, UW_OK, "02 02 02 | 0a 00 00", UW_SPEED_FULL},
};

static void test_devrec(void)
{
	memset(busid31, 'b', 31);
	memset(busid32, 'b', 32);
	memset(path255, 'p', 255);
	memset(path256, 'p', 256);
	for (size_t i = 0; i < sizeof rec_cases / sizeof *rec_cases; i++) {
		const struct rec_case *c = &rec_cases[i];
		uint8_t db[32], cb[512], want[32 * 3];
		uw_device_desc dev;
		uw_alt_sel sel;
		uw_usb_device r;
		uw_usb_interface ifs[4];
		memset(&r, 0xee, sizeof r);
		memset(ifs, 0xee, sizeof ifs);
		bool ok =
		    uw_device_desc_parse(db, t_unhex(c->dev, db, sizeof db), &dev, NULL) == UW_OK;
		size_t cn = c->cfg ? t_unhex(c->cfg, cb, sizeof cb) : 0;
		size_t wn = t_unhex(c->triples, want, sizeof want) / 3;
		int rc = uw_devrec_from_descriptors(
		    &dev, c->cfg ? cb : NULL, cn, c->value, mksel(c->sel, &sel), c->busid, c->path,
		    c->busnum, c->devnum, c->speed, &r, c->max ? ifs : NULL, c->max);
		ok = ok && rc == c->rc;
		if (rc == UW_OK) {
			ok = ok && strcmp(r.busid, c->busid) == 0 && strcmp(r.path, c->path) == 0 &&
			     r.busid[UW_BUSID_SIZE - 1] == 0 && r.path[UW_PATH_SIZE - 1] == 0 &&
			     r.busnum == c->busnum && r.devnum == c->devnum &&
			     r.speed == c->wire_speed && r.id_vendor == dev.id_vendor &&
			     r.id_product == dev.id_product && r.bcd_device == dev.bcd_device &&
			     r.device_class == dev.device_class &&
			     r.device_subclass == dev.device_subclass &&
			     r.device_protocol == dev.device_protocol &&
			     r.configuration_value == c->value &&
			     r.num_configurations == dev.num_configurations &&
			     r.num_interfaces == wn;
			for (size_t k = 0; ok && k < wn; k++)
				ok = ifs[k].iface_class == want[3 * k] &&
				     ifs[k].iface_subclass == want[3 * k + 1] &&
				     ifs[k].iface_protocol == want[3 * k + 2];
			/* Unused bytes of the strings are zero, as on the wire. */
			for (size_t k = strlen(r.path); ok && k < UW_PATH_SIZE; k++)
				ok = r.path[k] == 0;
		} else {
			ok = ok && r.busnum == 0xeeeeeeeeu && ifs[0].iface_class == 0xee;
		}
		t_ok(ok, "device record: %s -> %s (got %s)", c->name, errname(c->rc), errname(rc));
	}
}

/* ---- Speeds -------------------------------------------------------------------------------- */

static void test_speeds(void)
{
	static const struct {
		int libusb;
		enum uw_speed want;
	} from_libusb[] = {
	    {-1, UW_SPEED_UNKNOWN},   {0, UW_SPEED_UNKNOWN},    {1, UW_SPEED_LOW},
	    {2, UW_SPEED_FULL},       {3, UW_SPEED_HIGH},       {4, UW_SPEED_SUPER},
	    {5, UW_SPEED_SUPER_PLUS}, {6, UW_SPEED_SUPER_PLUS}, {7, UW_SPEED_UNKNOWN},
	};
	for (size_t i = 0; i < sizeof from_libusb / sizeof *from_libusb; i++)
		t_ok(uw_speed_from_libusb(from_libusb[i].libusb) == from_libusb[i].want,
		     "speed: libusb %d -> %d", from_libusb[i].libusb, from_libusb[i].want);

	static const struct {
		enum uw_speed speed;
		int libusb;
		enum uw_speed wire;
	} to[] = {
	    {UW_SPEED_UNKNOWN, 0, UW_SPEED_UNKNOWN},   {UW_SPEED_LOW, 1, UW_SPEED_LOW},
	    {UW_SPEED_FULL, 2, UW_SPEED_FULL},         {UW_SPEED_HIGH, 3, UW_SPEED_HIGH},
	    {UW_SPEED_WIRELESS, 0, UW_SPEED_WIRELESS}, {UW_SPEED_SUPER, 4, UW_SPEED_SUPER},
	    {UW_SPEED_SUPER_PLUS, 5, UW_SPEED_SUPER},  {(enum uw_speed)7, 0, UW_SPEED_UNKNOWN},
	};
	for (size_t i = 0; i < sizeof to / sizeof *to; i++)
		t_ok(uw_speed_to_libusb(to[i].speed) == to[i].libusb &&
		         uw_speed_for_wire(to[i].speed) == to[i].wire,
		     "speed: %d -> libusb %d, wire %d", to[i].speed, to[i].libusb, to[i].wire);

	static const struct {
		const char *text;
		enum uw_speed want;
	} sysfs[] = {
	    {"1.5", UW_SPEED_LOW},          {"12", UW_SPEED_FULL},
	    {"480", UW_SPEED_HIGH},         {"53.3-480", UW_SPEED_WIRELESS},
	    {"5000", UW_SPEED_SUPER},       {"10000", UW_SPEED_SUPER_PLUS},
	    {"20000", UW_SPEED_SUPER_PLUS}, {"480\n", UW_SPEED_HIGH},
	    {"480\n\n", UW_SPEED_UNKNOWN},  {"48", UW_SPEED_UNKNOWN},
	    {"4800", UW_SPEED_UNKNOWN},     {"40000", UW_SPEED_UNKNOWN},
	    {" 480", UW_SPEED_UNKNOWN},     {"12 ", UW_SPEED_UNKNOWN},
	    {"", UW_SPEED_UNKNOWN},         {NULL, UW_SPEED_UNKNOWN},
	};
	for (size_t i = 0; i < sizeof sysfs / sizeof *sysfs; i++) {
		char shown[32] = "(null)";
		if (sysfs[i].text) {
			size_t o = 0;
			for (const char *p = sysfs[i].text; *p && o + 3 < sizeof shown; p++) {
				if (*p == '\n') {
					shown[o++] = '\\';
					shown[o++] = 'n';
				} else {
					shown[o++] = *p;
				}
			}
			shown[o] = '\0';
		}
		t_ok(uw_speed_from_sysfs(sysfs[i].text) == sysfs[i].want,
		     "speed: sysfs \"%s\" -> %d", shown, sysfs[i].want);
	}
}

/* ---- Bad arguments ---------------------------------------------------------------------- */

static void test_args(void)
{
	uint8_t b[64];
	size_t n = t_unhex(CFG_KB, b, sizeof b);
	uw_device_desc d;
	uw_desc_item x;
	uw_usb_device rec;
	char s[4];
	int got[] = {
	    uw_device_desc_parse(NULL, 18, &d, NULL),
	    uw_device_desc_parse(b, 18, NULL, NULL),
	    uw_config_check(NULL, 10, NULL, NULL),
	    uw_config_header_parse(b, n, NULL, NULL),
	    uw_config_iter_init(NULL, b, n, NULL),
	    uw_config_iter_next(NULL, &x),
	    uw_config_find_endpoint(b, n, NULL, 0x81, NULL),
	    uw_config_interfaces(b, n, NULL, NULL, 1, NULL),
	    uw_ep_table_build(b, n, NULL, NULL, NULL, NULL),
	    uw_string_desc_to_utf8(NULL, 4, s, sizeof s, NULL),
	    uw_string_desc_to_utf8(b, 4, NULL, 4, NULL),
	    uw_string_langids(b, 4, NULL, 1, NULL),
	    uw_bos_check(NULL, 5, NULL, NULL),
	    uw_devrec_from_descriptors(NULL, NULL, 0, 0, NULL, "1-1", "", 1, 1, UW_SPEED_LOW, &rec,
	                               NULL, 0),
	    uw_devrec_from_descriptors(&d, NULL, 0, 0, NULL, NULL, "", 1, 1, UW_SPEED_LOW, &rec,
	                               NULL, 0),
	    uw_devrec_from_descriptors(&d, NULL, 0, 0, NULL, "1-1", "", 1, 1, UW_SPEED_LOW, &rec,
	                               NULL, 1),
	};
	bool ok = true;
	for (size_t i = 0; i < sizeof got / sizeof *got; i++) {
		if (got[i] != UW_E_INVAL) {
			t_diag("argument case %zu gave %s", i, errname(got[i]));
			ok = false;
		}
	}
	t_ok(ok, "bad arguments: %zu NULL/zero-capacity calls give UW_E_INVAL",
	     sizeof got / sizeof *got);
	t_ok(uw_ep_table_xfer(NULL, 0, 0) == UW_XFER_UNKNOWN && uw_device_ep0_max_packet(NULL) == 0,
	     "bad arguments: NULL table and device give UNKNOWN and 0");
}

/* ---- Guard page ---------------------------------------------------------------------------- */

/* Every parser on one input; the results are not checked here, only that nothing over-reads. */
static void run_everything(const uint8_t *p, size_t n)
{
	uw_device_desc d;
	uw_qualifier_desc q;
	uw_config_desc h;
	uw_config_iter it;
	uw_desc_item x;
	uw_endpoint_desc ep;
	uw_ep_table t;
	uw_usb_interface ifs[UW_MAX_INTERFACES];
	uw_usb_device rec;
	uw_bos_iter bi;
	uw_devcap cap;
	uw_alt_sel sel;
	char s[UW_STRING_UTF8_MAX + 1];
	uint16_t ids[4];
	int rcs = 0;
	uw_alt_sel_reset(&sel);
	sel.alt[1] = 1;
	rcs += uw_device_desc_parse(p, n, &d, NULL);
	rcs += uw_qualifier_desc_parse(p, n, &q, NULL);
	rcs += uw_config_header_parse(p, n, &h, NULL);
	rcs += uw_config_check(p, n, &h, NULL);
	rcs += uw_other_speed_config_check(p, n, &h, NULL);
	if (uw_config_iter_init(&it, p, n, NULL) == UW_OK)
		while (uw_config_iter_next(&it, &x) == 1)
			rcs++;
	rcs += uw_config_find_endpoint(p, n, &sel, 0x81, &ep);
	rcs += uw_config_interfaces(p, n, NULL, ifs, UW_MAX_INTERFACES, NULL);
	rcs += uw_ep_table_build(p, n, &sel, NULL, &t, NULL);
	rcs += uw_string_desc_to_utf8(p, n, s, sizeof s, NULL);
	rcs += uw_string_langids(p, n, ids, 4, NULL);
	rcs += uw_bos_check(p, n, NULL, NULL);
	if (uw_bos_iter_init(&bi, p, n, NULL) == UW_OK)
		while (uw_bos_iter_next(&bi, &cap) == 1)
			rcs++;
	uw_device_desc dd = {.num_configurations = 1};
	rcs += uw_devrec_from_descriptors(&dd, p, n, n >= 6 ? p[5] : 1, NULL, "1-1", "/p", 1, 1,
	                                  UW_SPEED_HIGH, &rec, ifs, UW_MAX_INTERFACES);
	(void)rcs;
}

static void test_guard_page(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *mem =
	    mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!t_ok(mem != MAP_FAILED, "guard page: mmap two pages"))
		return;
	if (!t_ok(mprotect(mem + pg, (size_t)pg, PROT_NONE) == 0, "guard page: PROT_NONE"))
		return;
	const char *inputs[64];
	size_t ni = 0;
	for (size_t i = 0; i < sizeof trunc_cases / sizeof *trunc_cases; i++)
		inputs[ni++] = trunc_cases[i].hex;
	static const char *more[] = {CFG_REV,           CFG_EMPTY, STR_LANG, "08 03 4100 00d8 4200",
	                             "06 03 4100 3dd8", DEV_MSC,   DEV_AUDIO};
	for (size_t i = 0; i < sizeof more / sizeof *more; i++)
		inputs[ni++] = more[i];
	uint8_t b[512];
	for (size_t i = 0; i < ni; i++) {
		size_t n = t_unhex(inputs[i], b, sizeof b);
		for (size_t k = 0; k <= n; k++) {
			memcpy(mem + pg - k, b, k);
			run_everything(mem + pg - k, k);
		}
		t_ok(true, "guard page: input %zu and its %zu prefixes read nothing past their end",
		     i, n);
	}
	/* Malformed inputs too, whole. */
	for (size_t i = 0; i < sizeof bad_cases / sizeof *bad_cases; i++) {
		const struct bad_case *c = &bad_cases[i];
		uint8_t pb[16];
		size_t n = t_unhex(c->base, b, sizeof b);
		size_t pn = t_unhex(c->patch, pb, sizeof pb);
		memcpy(b + c->at, pb, pn);
		memcpy(mem + pg - n, b, n);
		run_everything(mem + pg - n, n);
	}
	t_ok(true, "guard page: %zu malformed inputs read nothing past their end",
	     sizeof bad_cases / sizeof *bad_cases);
	munmap(mem, (size_t)pg * 2);
}

int main(void)
{
	test_device();
	test_qualifier();
	test_config_valid();
	test_truncation();
	test_malformed();
	test_limits();
	test_find_endpoint();
	test_find_alt();
	test_interfaces();
	test_ep_table();
	test_strings();
	test_bos();
	test_devrec();
	test_speeds();
	test_args();
	test_guard_page();
	return t_done();
}
