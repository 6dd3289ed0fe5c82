/* SPDX-License-Identifier: MIT */
/*
 * usbwire info -r ADDR -b BUSID [--json]   a remote device's descriptors, like lsusb -v
 *
 * Imports the device with the userspace client (nothing reaches the local kernel), reads the
 * device descriptor, every configuration, the strings (LANGID 0x0409 if the device has it, else
 * its first), the BOS (bcdUSB >= 0x0201), the device qualifier (high-speed devices) and the
 * device status, prints them and closes the connection, which releases the device. Only
 * GET_DESCRIPTOR and GET_STATUS are sent: they work on an unconfigured device, which is how
 * usbip-host exports one, so the device is never configured by looking at it.
 *
 * Everything the server sends is untrusted: descriptors are validated by uw_usbdesc before their
 * fields are printed, strings are printed escaped (uw_escape; JSON escapes in --json), and anything
 * that does not validate is shown as hex with the reason.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "uw_uclient.h"
#include "uw_usbdesc.h"

#define CTRL_TIMEOUT_MS 5000
#define MAX_CONFIGS     32

struct info {
	uw_uclient *c;
	bool json;
	bool ss; /* SuperSpeed: bMaxPower in 8 mA units */
	uint16_t langid;
	bool have_lang;
	char err[256];
};

static const char *cls_name(uint8_t c)
{
	const char *n = cli_class_name(c);
	return n ? n : c == 0 ? "[unknown]" : "";
}

/* GET_DESCRIPTOR; returns the bytes read or a negative value (err says why). */
static int get_desc(struct info *in, uint8_t type, uint8_t index, uint16_t w_index, uint8_t *buf,
                    uint16_t len)
{
	int n = uw_uclient_control(in->c, 0x80, 6, (uint16_t)(type << 8 | index), w_index, buf, len,
	                           CTRL_TIMEOUT_MS);
	if (n < 0) {
		const char *e = uw_uclient_error(in->c);
		if (e[0])
			snprintf(in->err, sizeof in->err, "connection failed: %s", e);
		else if (n == -32)
			snprintf(in->err, sizeof in->err, "the device stalled the request");
		else
			snprintf(in->err, sizeof in->err, "request failed with status %d", n);
	}
	return n;
}

static bool conn_broken(const struct info *in)
{
	return uw_uclient_error(in->c)[0] != '\0';
}

/* String descriptor idx as UTF-8 ("" for 0 or when unreadable); printed escaped (tstr, JSON). */
static void get_string(struct info *in, uint8_t idx, char *out, size_t cap)
{
	out[0] = '\0';
	if (!idx || !in->have_lang || conn_broken(in))
		return;
	uint8_t buf[UW_STRING_DESC_MAX_LEN];
	int n = get_desc(in, UW_DT_STRING, idx, in->langid, buf, sizeof buf);
	if (n < 2 || uw_string_desc_to_utf8(buf, (size_t)n, out, cap, NULL) < 0)
		out[0] = '\0';
}

static void hex(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%s%02x", i ? " " : "", p[i]);
}

static void json_hex(const uint8_t *p, size_t n)
{
	putchar('"');
	hex(p, n);
	putchar('"');
}

/* Text: "  name   value [string]" lines in lsusb's layout. */
static void tline(int ind, const char *name, unsigned v, const char *s)
{
	printf("%*s%-20s%5u %s\n", ind, "", name, v, s ? s : "");
}

static void tstr(int ind, const char *name, uint8_t idx, const char *s)
{
	char shown[UW_ESCAPE_SIZE(UW_STRING_UTF8_MAX)]; /* the device's string, escaped */
	printf("%*s%-20s%5u %s\n", ind, "", name, idx,
	       uw_escape(shown, sizeof shown, s, strlen(s)));
}

static const char *bcd(uint16_t v, char *buf, size_t n)
{
	snprintf(buf, n, "%x.%02x", v >> 8, v & 0xff);
	return buf;
}

static const char *xfer_name(uint8_t x)
{
	static const char *const n[] = {"control", "isochronous", "bulk", "interrupt"};
	return n[x & 3];
}

/* ---- Configuration ------------------------------------------------------------------------ */

static void print_endpoint(const uw_desc_item *it, int first)
{
	const uw_endpoint_desc *e = &it->u.ep;
	static const char *const tt[] = {"Control", "Isochronous", "Bulk", "Interrupt"};
	static const char *const st[] = {"None", "Asynchronous", "Adaptive", "Synchronous"};
	static const char *const ut[] = {"Data", "Feedback", "Implicit feedback Data", "Reserved"};
	(void)first;
	printf("      Endpoint Descriptor:\n");
	tline(8, "bLength", (unsigned)it->len, NULL);
	tline(8, "bDescriptorType", it->type, NULL);
	printf("        %-21s0x%02x  EP %u %s\n", "bEndpointAddress", e->address, e->number,
	       e->dir == UW_DIR_IN ? "IN" : "OUT");
	tline(8, "bmAttributes", e->attributes, NULL);
	printf("          Transfer Type            %s\n", tt[e->attributes & 3]);
	printf("          Synch Type               %s\n", st[(e->attributes >> 2) & 3]);
	printf("          Usage Type               %s\n", ut[(e->attributes >> 4) & 3]);
	printf("        %-19s0x%04x  %ux %u bytes\n", "wMaxPacketSize", e->max_packet_raw, e->mult,
	       e->max_packet);
	tline(8, "bInterval", e->interval, NULL);
	if (e->has_ss_comp) {
		tline(8, "bMaxBurst", (unsigned)e->burst - 1, NULL);
		if (e->xfer == UW_XFER_BULK)
			tline(8, "MaxStreams",
			      e->ss_attributes & 0x1f ? 1u << (e->ss_attributes & 0x1f) : 0, NULL);
		else if (e->xfer == UW_XFER_ISO)
			tline(8, "Mult", e->ss_attributes & 3, NULL);
		if (e->bytes_per_interval)
			tline(8, "wBytesPerInterval", e->bytes_per_interval, NULL);
	}
}

static void print_config_text(struct info *in, const uint8_t *cfg, size_t len)
{
	uw_config_iter it;
	uw_desc_err de = {0};
	if (uw_config_iter_init(&it, cfg, len, &de) != UW_OK) {
		printf("  Configuration Descriptor (invalid at byte %zu: %s):\n    ", de.off,
		       de.what);
		hex(cfg, len);
		printf("\n");
		return;
	}
	uw_desc_item item;
	char s[UW_STRING_UTF8_MAX + 1];
	while (uw_config_iter_next(&it, &item) == 1) {
		switch (item.kind) {
		case UW_DK_CONFIG: {
			const uw_config_desc *c = &item.u.config;
			printf("  Configuration Descriptor:\n");
			tline(4, "bLength", c->length, NULL);
			tline(4, "bDescriptorType", c->type, NULL);
			printf("    %-19s0x%04x\n", "wTotalLength", c->total_length);
			tline(4, "bNumInterfaces", c->num_interfaces, NULL);
			tline(4, "bConfigurationValue", c->configuration_value, NULL);
			get_string(in, c->i_configuration, s, sizeof s);
			tstr(4, "iConfiguration", c->i_configuration, s);
			printf("    %-21s0x%02x\n", "bmAttributes", c->attributes);
			printf("      (%s)\n",
			       c->attributes & 0x40 ? "Self Powered" : "Bus Powered");
			if (c->attributes & 0x20)
				printf("      Remote Wakeup\n");
			printf("    %-18s%5umA\n", "MaxPower", c->max_power * (in->ss ? 8u : 2u));
			break;
		}
		case UW_DK_IAD: {
			const uw_iad_desc *a = &item.u.iad;
			printf("    Interface Association:\n");
			tline(6, "bLength", (unsigned)item.len, NULL);
			tline(6, "bDescriptorType", item.type, NULL);
			tline(6, "bFirstInterface", a->first_interface, NULL);
			tline(6, "bInterfaceCount", a->interface_count, NULL);
			tline(6, "bFunctionClass", a->function_class, cls_name(a->function_class));
			tline(6, "bFunctionSubClass", a->function_subclass, NULL);
			tline(6, "bFunctionProtocol", a->function_protocol, NULL);
			get_string(in, a->i_function, s, sizeof s);
			tstr(6, "iFunction", a->i_function, s);
			break;
		}
		case UW_DK_INTERFACE: {
			const uw_interface_desc *f = &item.u.intf;
			printf("    Interface Descriptor:\n");
			tline(6, "bLength", (unsigned)item.len, NULL);
			tline(6, "bDescriptorType", item.type, NULL);
			tline(6, "bInterfaceNumber", f->interface_number, NULL);
			tline(6, "bAlternateSetting", f->alternate_setting, NULL);
			tline(6, "bNumEndpoints", f->num_endpoints, NULL);
			tline(6, "bInterfaceClass", f->interface_class,
			      cls_name(f->interface_class));
			tline(6, "bInterfaceSubClass", f->interface_subclass, NULL);
			tline(6, "bInterfaceProtocol", f->interface_protocol, NULL);
			get_string(in, f->i_interface, s, sizeof s);
			tstr(6, "iInterface", f->i_interface, s);
			break;
		}
		case UW_DK_ENDPOINT:
			print_endpoint(&item, 0);
			break;
		case UW_DK_SS_EP_COMP:
		case UW_DK_SSP_ISO_EP_COMP:
			break; /* folded into the endpoint */
		case UW_DK_OTHER:
			printf("%*sDescriptor type 0x%02x (%s, %zu bytes):\n%*s",
			       item.iface < 0 ? 4 : 6, "", item.type,
			       item.type >= 0x20 && item.type < 0x40 ? "class-specific" : "other",
			       item.len, item.iface < 0 ? 6 : 8, "");
			hex(item.raw, item.len);
			printf("\n");
			break;
		}
	}
}

static void print_config_json(struct info *in, const uint8_t *cfg, size_t len)
{
	uw_config_iter it;
	uw_desc_err de = {0};
	if (uw_config_iter_init(&it, cfg, len, &de) != UW_OK) {
		printf("{\"invalid\":");
		cli_json_str(de.what ? de.what : "invalid");
		printf(",\"offset\":%zu,\"raw\":", de.off);
		json_hex(cfg, len);
		printf("}");
		return;
	}
	uw_desc_item item;
	char s[UW_STRING_UTF8_MAX + 1];
	bool in_intf = false, first_intf = true, first_ep = true, first_iad = true,
	     first_extra = true;
	while (uw_config_iter_next(&it, &item) == 1) {
		switch (item.kind) {
		case UW_DK_CONFIG: {
			const uw_config_desc *c = &item.u.config;
			get_string(in, c->i_configuration, s, sizeof s);
			printf(
			    "{\"bConfigurationValue\":%u,\"wTotalLength\":%u,\"bNumInterfaces\":%u,"
			    "\"bmAttributes\":%u,\"MaxPower_mA\":%u,\"iConfiguration\":%u,"
			    "\"configuration\":",
			    c->configuration_value, c->total_length, c->num_interfaces,
			    c->attributes, c->max_power * (in->ss ? 8u : 2u), c->i_configuration);
			cli_json_str(s);
			printf(",\"iads\":[");
			break;
		}
		case UW_DK_IAD: {
			const uw_iad_desc *a = &item.u.iad;
			get_string(in, a->i_function, s, sizeof s);
			printf("%s{\"bFirstInterface\":%u,\"bInterfaceCount\":%u,"
			       "\"bFunctionClass\":%u,"
			       "\"bFunctionSubClass\":%u,\"bFunctionProtocol\":%u,\"function\":",
			       first_iad ? "" : ",", a->first_interface, a->interface_count,
			       a->function_class, a->function_subclass, a->function_protocol);
			cli_json_str(s);
			printf("}");
			first_iad = false;
			break;
		}
		case UW_DK_INTERFACE: {
			const uw_interface_desc *f = &item.u.intf;
			if (in_intf)
				printf("]}");
			else
				printf("],\"interfaces\":[");
			get_string(in, f->i_interface, s, sizeof s);
			printf(
			    "%s{\"bInterfaceNumber\":%u,\"bAlternateSetting\":%u,"
			    "\"bNumEndpoints\":%u,\"bInterfaceClass\":%u,\"bInterfaceSubClass\":%u,"
			    "\"bInterfaceProtocol\":%u,\"interface\":",
			    first_intf ? "" : ",", f->interface_number, f->alternate_setting,
			    f->num_endpoints, f->interface_class, f->interface_subclass,
			    f->interface_protocol);
			cli_json_str(s);
			printf(",\"endpoints\":[");
			in_intf = true;
			first_intf = false;
			first_ep = true;
			break;
		}
		case UW_DK_ENDPOINT: {
			const uw_endpoint_desc *e = &item.u.ep;
			printf(
			    "%s{\"bEndpointAddress\":%u,\"type\":\"%s\",\"bmAttributes\":%u,"
			    "\"wMaxPacketSize\":%u,\"max_packet\":%u,\"mult\":%u,\"bInterval\":%u",
			    first_ep ? "" : ",", e->address, xfer_name(e->xfer), e->attributes,
			    e->max_packet_raw, e->max_packet, e->mult, e->interval);
			if (e->has_ss_comp)
				printf(",\"bMaxBurst\":%u,\"ss_attributes\":%u,\"bytes_per_"
				       "interval\":%u",
				       e->burst - 1u, e->ss_attributes, e->bytes_per_interval);
			printf("}");
			first_ep = false;
			break;
		}
		case UW_DK_SS_EP_COMP:
		case UW_DK_SSP_ISO_EP_COMP:
			break;
		case UW_DK_OTHER:
			/* Class-specific and other descriptors, raw, in a list of their own. */
			(void)first_extra;
			break;
		}
	}
	printf(in_intf ? "]}]" : "],\"interfaces\":[]");
	/* A second pass for the raw extras keeps the nesting above simple. */
	printf(",\"extra\":[");
	if (uw_config_iter_init(&it, cfg, len, NULL) == UW_OK) {
		while (uw_config_iter_next(&it, &item) == 1) {
			if (item.kind != UW_DK_OTHER)
				continue;
			printf("%s{\"interface\":%d,\"alt\":%d,\"type\":%u,\"raw\":",
			       first_extra ? "" : ",", item.iface, item.alt, item.type);
			json_hex(item.raw, item.len);
			printf("}");
			first_extra = false;
		}
	}
	printf("]}");
}

/* Reads configuration index idx into a new buffer; returns its length or -1 (err set). */
static int read_config(struct info *in, uint8_t idx, uint8_t **out)
{
	uint8_t hdr[UW_CONFIG_DESC_LEN];
	uw_config_desc cd;
	uw_desc_err de;
	int n = get_desc(in, UW_DT_CONFIG, idx, 0, hdr, sizeof hdr);
	if (n < 0)
		return -1;
	if (uw_config_header_parse(hdr, (size_t)n, &cd, &de) != UW_OK) {
		snprintf(in->err, sizeof in->err, "invalid configuration header: %s", de.what);
		return -1;
	}
	uint8_t *buf = malloc(cd.total_length);
	if (!buf) {
		snprintf(in->err, sizeof in->err, "out of memory");
		return -1;
	}
	n = get_desc(in, UW_DT_CONFIG, idx, 0, buf, cd.total_length);
	if (n < 0) {
		free(buf);
		return -1;
	}
	*out = buf;
	return n;
}

/* ---- BOS and qualifier ---------------------------------------------------------------------- */

static void print_bos(struct info *in, const uint8_t *bos, size_t len)
{
	uw_bos_iter it;
	uw_desc_err de = {0};
	uw_bos_desc bd;
	if (uw_bos_check(bos, len, &bd, &de) != UW_OK ||
	    uw_bos_iter_init(&it, bos, len, &de) != UW_OK) {
		if (in->json) {
			printf("{\"invalid\":");
			cli_json_str(de.what ? de.what : "invalid");
			printf(",\"raw\":");
			json_hex(bos, len);
			printf("}");
		} else {
			printf("Binary Object Store Descriptor (invalid at byte %zu: %s):\n  ",
			       de.off, de.what);
			hex(bos, len);
			printf("\n");
		}
		return;
	}
	if (in->json)
		printf("{\"wTotalLength\":%u,\"bNumDeviceCaps\":%u,\"capabilities\":[",
		       bd.total_length, bd.num_caps);
	else
		printf("Binary Object Store Descriptor:\n  bLength                 5\n"
		       "  bDescriptorType        15\n  wTotalLength       0x%04x\n"
		       "  bNumDeviceCaps        %3u\n",
		       bd.total_length, bd.num_caps);
	uw_devcap cap;
	bool first = true;
	while (uw_bos_iter_next(&it, &cap) == 1) {
		if (in->json) {
			printf("%s{\"bDevCapabilityType\":%u,\"raw\":", first ? "" : ",",
			       cap.cap_type);
			json_hex(cap.raw, cap.len);
			printf("}");
			first = false;
			continue;
		}
		switch (cap.cap_type) {
		case UW_CAP_USB2_EXT:
			printf("  USB 2.0 Extension Device Capability:\n");
			tline(4, "bLength", (unsigned)cap.len, NULL);
			printf("    bmAttributes   0x%08x\n", cap.u.usb2_ext.attributes);
			if (cap.u.usb2_ext.attributes & 2)
				printf("      Link Power Management (LPM) Supported\n");
			break;
		case UW_CAP_SUPERSPEED:
			printf("  SuperSpeed USB Device Capability:\n");
			tline(4, "bLength", (unsigned)cap.len, NULL);
			printf("    %-21s0x%02x\n", "bmAttributes", cap.u.superspeed.attributes);
			printf("    %-19s0x%04x\n", "wSpeedsSupported",
			       cap.u.superspeed.speeds_supported);
			tline(4, "bFunctionalitySupport", cap.u.superspeed.functionality_support,
			      NULL);
			tline(4, "bU1DevExitLat", cap.u.superspeed.u1_exit_lat, "micro seconds");
			tline(4, "bU2DevExitLat", cap.u.superspeed.u2_exit_lat, "micro seconds");
			break;
		case UW_CAP_CONTAINER_ID:
			printf("  Container ID Device Capability:\n");
			tline(4, "bLength", (unsigned)cap.len, NULL);
			printf("    ContainerID             ");
			hex(cap.u.container_id.uuid, 16);
			printf("\n");
			break;
		default:
			printf("  Device Capability type 0x%02x (%zu bytes):\n    ", cap.cap_type,
			       cap.len);
			hex(cap.raw, cap.len);
			printf("\n");
			break;
		}
	}
	if (in->json)
		printf("]}");
}

static void print_qualifier(struct info *in, const uint8_t *q, int n)
{
	uw_qualifier_desc qd;
	char b[16];
	if (n < 0 || uw_qualifier_desc_parse(q, (size_t)n, &qd, NULL) != UW_OK) {
		if (in->json)
			printf("null");
		else
			printf("Device Qualifier: not available (%s)\n",
			       n < 0 ? in->err : "invalid descriptor");
		return;
	}
	if (in->json) {
		printf("{\"bcdUSB\":\"%s\",\"bDeviceClass\":%u,\"bDeviceSubClass\":%u,"
		       "\"bDeviceProtocol\":%u,\"bMaxPacketSize0\":%u,\"bNumConfigurations\":%u}",
		       bcd(qd.bcd_usb, b, sizeof b), qd.device_class, qd.device_subclass,
		       qd.device_protocol, qd.max_packet_size0, qd.num_configurations);
		return;
	}
	printf("Device Qualifier (for other device speed):\n");
	tline(2, "bLength", 10, NULL);
	tline(2, "bDescriptorType", 6, NULL);
	printf("  %-18s%7s\n", "bcdUSB", bcd(qd.bcd_usb, b, sizeof b));
	tline(2, "bDeviceClass", qd.device_class, cls_name(qd.device_class));
	tline(2, "bDeviceSubClass", qd.device_subclass, NULL);
	tline(2, "bDeviceProtocol", qd.device_protocol, NULL);
	tline(2, "bMaxPacketSize0", qd.max_packet_size0, NULL);
	tline(2, "bNumConfigurations", qd.num_configurations, NULL);
}

/* ---- Command ------------------------------------------------------------------------------ */

static void info_usage(FILE *f)
{
	fprintf(f, "usage: usbwire info -r ADDR -b BUSID [--json]\n"
	           "  -r, --remote ADDR        the server: HOST[:PORT] (port 3240), unix:PATH, "
	           "vsock:CID:PORT,\n"
	           "                           fc-vsock:PATH:PORT\n"
	           "  -b, --busid BUSID         the device\n"
	           "  -j, --json                machine-readable output\n"
	           "  -t, --timeout S           seconds to wait for the server (5)\n");
}

static int run_info(struct info *in, const char *remote, const uw_addr *a, const char *busid,
                    const uw_usb_device *rec)
{
	char where[UW_ADDR_PATH_MAX + 300];
	uw_addr_format(a, where, sizeof where);
	uint8_t dd_raw[UW_DEVICE_DESC_LEN];
	uw_device_desc dd;
	uw_desc_err de = {0};
	int n = get_desc(in, UW_DT_DEVICE, 0, 0, dd_raw, sizeof dd_raw);
	if (n < 0) {
		cli_err("info: %s %s: cannot read the device descriptor: %s", remote, busid,
		        in->err);
		return 1;
	}
	if (uw_device_desc_parse(dd_raw, (size_t)n, &dd, &de) != UW_OK) {
		cli_err("info: %s %s: invalid device descriptor (%s)", remote, busid,
		        de.what ? de.what : "too short");
		return 1;
	}
	in->ss = rec->speed >= UW_SPEED_SUPER || dd.bcd_usb >= 0x0300;
	/* Languages: 0x0409 if offered, else the first. */
	uint8_t lang[UW_STRING_DESC_MAX_LEN];
	uint16_t ids[126];
	n = get_desc(in, UW_DT_STRING, 0, 0, lang, sizeof lang);
	int nl = n >= 2 ? uw_string_langids(lang, (size_t)n, ids, 126, NULL) : -1;
	if (nl > 0) {
		in->have_lang = true;
		in->langid = ids[0];
		for (int i = 0; i < nl; i++)
			if (ids[i] == 0x0409)
				in->langid = 0x0409;
	}
	char mfr[UW_STRING_UTF8_MAX + 1], prod[UW_STRING_UTF8_MAX + 1], ser[UW_STRING_UTF8_MAX + 1];
	get_string(in, dd.i_manufacturer, mfr, sizeof mfr);
	get_string(in, dd.i_product, prod, sizeof prod);
	get_string(in, dd.i_serial_number, ser, sizeof ser);
	char b1[16], b2[16];
	if (in->json) {
		printf("{\"remote\":");
		if (a->kind == UW_ADDR_TCP) {
			cli_json_str(a->host);
			printf(",\"port\":%u,\"busid\":", a->port);
		} else {
			cli_json_str(where);
			printf(",\"port\":null,\"busid\":");
		}
		cli_json_str(busid);
		printf(",\"speed\":%u,\"speed_name\":\"%s\",\"busnum\":%u,\"devnum\":%u,"
		       "\"langid\":\"%04x\",\"device\":{\"bcdUSB\":\"%s\",\"bDeviceClass\":%u,"
		       "\"bDeviceSubClass\":%u,\"bDeviceProtocol\":%u,\"bMaxPacketSize0\":%u,"
		       "\"idVendor\":\"%04x\",\"idProduct\":\"%04x\",\"bcdDevice\":\"%s\","
		       "\"iManufacturer\":%u,\"iProduct\":%u,\"iSerial\":%u,"
		       "\"bNumConfigurations\":%u,\"manufacturer\":",
		       rec->speed, uw_speed_name(rec->speed), rec->busnum, rec->devnum, in->langid,
		       bcd(dd.bcd_usb, b1, sizeof b1), dd.device_class, dd.device_subclass,
		       dd.device_protocol, dd.max_packet_size0, dd.id_vendor, dd.id_product,
		       bcd(dd.bcd_device, b2, sizeof b2), dd.i_manufacturer, dd.i_product,
		       dd.i_serial_number, dd.num_configurations);
		cli_json_str(mfr);
		printf(",\"product\":");
		cli_json_str(prod);
		printf(",\"serial\":");
		cli_json_str(ser);
		printf("},\"configurations\":[");
	} else {
		char m[UW_ESCAPE_SIZE(sizeof mfr)], p[UW_ESCAPE_SIZE(sizeof prod)];
		printf("%s%s/%s: ID %04x:%04x %s %s (%s, remote bus %03u device %03u)\n",
		       a->kind == UW_ADDR_TCP ? "usbip://" : "", where, busid, dd.id_vendor,
		       dd.id_product, uw_escape(m, sizeof m, mfr, sizeof mfr),
		       uw_escape(p, sizeof p, prod, sizeof prod), uw_speed_name(rec->speed),
		       rec->busnum, rec->devnum);
		printf("Device Descriptor:\n");
		tline(2, "bLength", UW_DEVICE_DESC_LEN, NULL);
		tline(2, "bDescriptorType", UW_DT_DEVICE, NULL);
		printf("  %-18s%7s\n", "bcdUSB", bcd(dd.bcd_usb, b1, sizeof b1));
		tline(2, "bDeviceClass", dd.device_class, cls_name(dd.device_class));
		tline(2, "bDeviceSubClass", dd.device_subclass, NULL);
		tline(2, "bDeviceProtocol", dd.device_protocol, NULL);
		tline(2, "bMaxPacketSize0", uw_device_ep0_max_packet(&dd), NULL);
		printf("  %-19s0x%04x\n", "idVendor", dd.id_vendor);
		printf("  %-19s0x%04x\n", "idProduct", dd.id_product);
		printf("  %-18s%7s\n", "bcdDevice", bcd(dd.bcd_device, b2, sizeof b2));
		tstr(2, "iManufacturer", dd.i_manufacturer, mfr);
		tstr(2, "iProduct", dd.i_product, prod);
		tstr(2, "iSerial", dd.i_serial_number, ser);
		tline(2, "bNumConfigurations", dd.num_configurations, NULL);
	}
	unsigned ncfg = dd.num_configurations > MAX_CONFIGS ? MAX_CONFIGS : dd.num_configurations;
	for (unsigned i = 0; i < ncfg && !conn_broken(in); i++) {
		uint8_t *cfg = NULL;
		n = read_config(in, (uint8_t)i, &cfg);
		if (n < 0) {
			if (in->json) {
				printf("%s{\"index\":%u,\"error\":", i ? "," : "", i);
				cli_json_str(in->err);
				printf("}");
			} else {
				printf("  Configuration %u: cannot read it: %s\n", i, in->err);
			}
			continue;
		}
		if (in->json) {
			printf("%s", i ? "," : "");
			print_config_json(in, cfg, (size_t)n);
		} else {
			print_config_text(in, cfg, (size_t)n);
		}
		free(cfg);
	}
	if (in->json)
		printf("]");
	/* BOS for bcdUSB >= 2.01. */
	if (dd.bcd_usb >= 0x0201 && !conn_broken(in)) {
		uint8_t hdr[UW_BOS_DESC_LEN];
		uw_bos_desc bd;
		uint8_t *bos = NULL;
		n = get_desc(in, UW_DT_BOS, 0, 0, hdr, sizeof hdr);
		if (n >= 0 && uw_bos_header_parse(hdr, (size_t)n, &bd, &de) == UW_OK &&
		    (bos = malloc(bd.total_length)) != NULL &&
		    (n = get_desc(in, UW_DT_BOS, 0, 0, bos, bd.total_length)) >= 0) {
			if (in->json)
				printf(",\"bos\":");
			print_bos(in, bos, (size_t)n);
		} else if (in->json) {
			printf(",\"bos\":null");
		} else {
			printf("Binary Object Store Descriptor: not available (%s)\n",
			       n < 0 ? in->err : "invalid header");
		}
		free(bos);
	}
	/* The device qualifier says what the device would be at the other speed: high-speed
	 * devices have one (full-speed-only devices stall the request). */
	if (rec->speed == UW_SPEED_HIGH && !conn_broken(in)) {
		uint8_t q[UW_QUALIFIER_DESC_LEN];
		n = get_desc(in, UW_DT_DEVICE_QUALIFIER, 0, 0, q, sizeof q);
		if (in->json)
			printf(",\"qualifier\":");
		print_qualifier(in, q, n);
	}
	/* GET_STATUS (device). */
	uint8_t stb[2] = {0, 0};
	n = conn_broken(in) ? -1
	                    : uw_uclient_control(in->c, 0x80, 0, 0, 0, stb, 2, CTRL_TIMEOUT_MS);
	if (in->json) {
		if (n == 2)
			printf(",\"status\":%u", stb[0] | stb[1] << 8);
		printf("}\n");
	} else if (n == 2) {
		printf("Device Status:     0x%04x\n  (%s)\n", stb[0] | stb[1] << 8,
		       stb[0] & 1 ? "Self Powered" : "Bus Powered");
		if (stb[0] & 2)
			printf("  Remote Wakeup Enabled\n");
	}
	if (conn_broken(in)) {
		fflush(stdout);
		cli_err("info: %s %s: %s", remote, busid, uw_uclient_error(in->c));
		return 1;
	}
	return 0;
}

int cmd_info(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"remote", required_argument, NULL, 'r'}, {"busid", required_argument, NULL, 'b'},
	    {"json", no_argument, NULL, 'j'},         {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	const char *remote = NULL, *busid = NULL;
	int timeout_ms = 5000;
	struct info in = {0};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "r:b:jt:h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			remote = optarg;
			break;
		case 'b':
			busid = optarg;
			break;
		case 'j':
			in.json = true;
			break;
		case 't':
			timeout_ms = atoi(optarg) * 1000;
			if (timeout_ms <= 0) {
				cli_err("info: invalid timeout \"%s\"", optarg);
				return 2;
			}
			break;
		case 'h':
			info_usage(stdout);
			return 0;
		default:
			info_usage(stderr);
			return 2;
		}
	}
	if (!remote || !busid || optind < argc) {
		info_usage(stderr);
		return 2;
	}
	char err[512];
	uw_addr addr;
	if (!cli_addr(remote, &addr))
		return 2;
	uw_usb_device rec;
	int rc = uw_uclient_open(&addr, busid, timeout_ms, &in.c, &rec, err, sizeof err);
	if (rc) {
		cli_err("info: %s %s: %s", remote, busid, err);
		return 1;
	}
	int status = run_info(&in, remote, &addr, busid, &rec);
	uw_uclient_close(in.c);
	return status;
}
