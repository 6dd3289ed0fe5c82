/* SPDX-License-Identifier: MIT */
/*
 * test_usbhost.c - the parts of the libusb backend that need no hardware: sysfs scanning against
 * a fake tree in a temporary directory, kernel uevent parsing (untrusted text, every input also
 * parsed right before a PROT_NONE page), export rules, the ISO layout translation between USB/IP
 * offsets and libusb's contiguous packets, the libusb -> errno tables, and the backend object
 * itself on a fake tree (devices exported through the add callback with the right records).
 */
#include <errno.h>
#include <stdarg.h>
#include <libusb.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uw_test.h"
#include "uw_hworker.h"
#include "uw_usbhost.h"
#include "uw_usbsys.h"

static char root[256];

static void put(const char *rel, const void *data, size_t n)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", root, rel);
	/* mkdir -p of the parent */
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = '\0';
		mkdir(path, 0755);
		*p = '/';
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		return;
	fwrite(data, 1, n, f);
	fclose(f);
}

static void puts_(const char *rel, const char *text)
{
	put(rel, text, strlen(text));
}

/* One attribute file busid/name. */
__attribute__((format(printf, 3, 4))) static void attr(const char *busid, const char *name,
                                                       const char *fmt, ...)
{
	char rel[128], val[128];
	snprintf(rel, sizeof rel, "%s/%s", busid, name);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(val, sizeof val, fmt, ap);
	va_end(ap);
	puts_(rel, val);
}

/* A device directory with the attributes the kernel writes. */
static void mkdev(const char *busid, unsigned bus, unsigned dev, const char *vid, const char *pid,
                  const char *cls, const char *speed, const char *cfgval, const char *desc_hex)
{
	attr(busid, "busnum", "%u\n", bus);
	attr(busid, "devnum", "%u\n", dev);
	attr(busid, "idVendor", "%s\n", vid);
	attr(busid, "idProduct", "%s\n", pid);
	attr(busid, "bDeviceClass", "%s\n", cls);
	attr(busid, "speed", "%s\n", speed);
	attr(busid, "bConfigurationValue", "%s\n", cfgval);
	attr(busid, "bNumConfigurations", "1\n");
	attr(busid, "bcdDevice", "0104\n");
	char rel[128];
	uint8_t desc[512];
	snprintf(rel, sizeof rel, "%s/descriptors", busid);
	put(rel, desc, t_unhex(desc_hex, desc, sizeof desc));
}

#define DEV_MSC "12 01 0002 00 00 00 40 6b1d 0401 0401 01 02 03 01"
#define CFG_MSC                                                                                    \
	"09 02 2000 01 01 00 80 32  09 04 00 00 02 08 06 50 00  07 05 81 02 0002 00  "             \
	"07 05 02 02 0002 00"
/* Two interfaces; interface 1 has altsetting 1 with an isochronous IN endpoint. */
#define DEV_AUD "12 01 0002 00 00 00 40 3412 7856 0100 01 02 00 01"
#define CFG_AUD                                                                                    \
	"09 02 3b00 02 01 00 80 32  09 04 00 00 00 01 01 00 00  09 04 01 00 00 01 02 00 00  "      \
	"09 04 01 01 01 01 02 00 00  07 05 83 05 c800 01  09 04 01 02 01 01 02 00 00 "             \
	"07 05 83 05 8801 01"

static void build_tree(void)
{
	snprintf(root, sizeof root, "/tmp/uw-test-usbhost-XXXXXX");
	if (!mkdtemp(root))
		abort();
	mkdev("1-1", 1, 2, "1d6b", "0104", "00", "480", "1", DEV_MSC CFG_MSC);
	puts_("1-1/manufacturer", "usbwire\n");
	puts_("1-1/product", "disk\x1b[31m\n"); /* a terminal escape a device chose */
	puts_("1-1/serial", "0001\n");
	puts_("1-1/1-1:1.0/bAlternateSetting", " 0\n");
	char link[512];
	snprintf(link, sizeof link, "%s/1-1/1-1:1.0/driver", root);
	if (symlink("../../../bus/usb/drivers/usb-storage", link) != 0)
		abort();
	mkdev("3-2.1", 3, 7, "5678", "1234", "00", "5000", "1", DEV_AUD CFG_AUD);
	puts_("3-2.1/3-2.1:1.1/bAlternateSetting", " 2\n");
	snprintf(link, sizeof link, "%s/3-2.1/3-2.1:1.0/driver", root);
	puts_("3-2.1/3-2.1:1.0/bAlternateSetting", " 0\n");
	if (symlink("../../../bus/usb/drivers/usbfs", link) != 0)
		abort();
	/* Interfaces also appear at the top, as links (real sysfs). */
	snprintf(link, sizeof link, "%s/3-2.1:1.1", root);
	if (symlink("3-2.1/3-2.1:1.1", link) != 0)
		abort();
	snprintf(link, sizeof link, "%s/3-2.1:1.0", root);
	if (symlink("3-2.1/3-2.1:1.0", link) != 0)
		abort();
	mkdev("2-1", 2, 3, "05e3", "0608", "09", "480", "1", DEV_MSC CFG_MSC);  /* a hub */
	mkdev("3-2", 3, 4, "1d6b", "0105", "00", "10000", "", DEV_MSC CFG_MSC); /* unconfigured */
	mkdev("usb1", 1, 1, "1d6b", "0002", "09", "480", "1", DEV_MSC CFG_MSC); /* root hub */
	/* A device whose configuration lies about its length. */
	mkdev("4-1", 4, 5, "aaaa", "bbbb", "00", "12", "1", DEV_MSC "09 02 ff00 01 01 00 80 32");
	puts_("4-1/4-1:1.0/bAlternateSetting", " 0\n");
	/* Broken: idVendor is not hex. */
	mkdev("4-2", 4, 6, "zz", "bbbb", "00", "12", "1", DEV_MSC CFG_MSC);
	puts_("1-1:1.0/bogus", "x"); /* an interface entry at the top, as in real sysfs */
}

static void rm_tree(void)
{
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
	if (system(cmd) != 0)
		t_diag("could not remove %s", root);
}

/* ---- sysfs --------------------------------------------------------------------------------- */

static void test_busid(void)
{
	static const struct {
		const char *s;
		bool ok;
	} rows[] = {
	    {"1-1", true},
	    {"3-2.1", true},
	    {"12-3.4.5", true},
	    {"1-0", true},
	    {"usb1", false},
	    {"1-1:1.0", false},
	    {"1-", false},
	    {"-1", false},
	    {"0-1", false},
	    {"1-1.", false},
	    {"1-1..2", false},
	    {"1234-1", false},
	    {"1-1x", false},
	    {"", false},
	    {"1-1 ", false},
	    {"../1-1", false},
	    {"1-1.2.3.4.5.6.7.8.9.10.11.12.13.14", false},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
		t_ok(uw_usbsys_busid_valid(rows[i].s) == rows[i].ok, "busid \"%s\" %s", rows[i].s,
		     rows[i].ok ? "valid" : "rejected");
	t_ok(!uw_usbsys_busid_valid(NULL), "busid NULL rejected");
}

static void test_scan(void)
{
	uw_usbsys_dev *list = NULL;
	int n = uw_usbsys_scan(root, &list);
	t_ok(n == 5, "scan finds 5 devices (not the root hub, interfaces or the broken one): %d",
	     n);
	const char *order[] = {"1-1", "2-1", "3-2", "3-2.1", "4-1"};
	for (int i = 0; i < n && i < 5; i++)
		t_ok(!strcmp(list[i].busid, order[i]), "scan order %d: %s", i, list[i].busid);
	const uw_usbsys_dev *d = &list[0];
	t_ok(d->busnum == 1 && d->devnum == 2 && d->vid == 0x1d6b && d->pid == 0x0104 &&
	         d->bcd_device == 0x0104,
	     "1-1 ids and numbers");
	t_ok(d->speed == UW_SPEED_HIGH && d->config_value == 1 && !d->is_hub, "1-1 speed, config");
	t_ok(!strcmp(d->manufacturer, "usbwire") && !strcmp(d->product, "disk?[31m"),
	     "strings read, control characters replaced: \"%s\"", d->product);
	t_ok(!strcmp(d->drivers, "usb-storage") && d->use == UW_USBSYS_FREE,
	     "1-1 drivers \"%s\", free", d->drivers);
	t_ok(list[1].is_hub, "2-1 is a hub");
	t_ok(list[2].config_value == 0 && list[2].speed == UW_SPEED_SUPER_PLUS,
	     "3-2 unconfigured, super-plus");
	t_ok(list[3].use == UW_USBSYS_USBFS, "3-2.1 claimed through usbfs");
	t_ok(list[0].desc_len == 18 + 32, "descriptors read whole (%zu)", list[0].desc_len);

	uw_usb_device info;
	uw_usb_interface ifs[UW_MAX_INTERFACES];
	int ce = 99;
	int rc = uw_usbsys_devrec(&list[0], &info, ifs, &ce);
	t_ok(rc == UW_OK && ce == UW_OK, "1-1 device record");
	t_ok(!strcmp(info.busid, "1-1") && info.busnum == 1 && info.devnum == 2 &&
	         info.speed == UW_SPEED_HIGH && info.configuration_value == 1 &&
	         info.num_interfaces == 1 && ifs[0].iface_class == 8 &&
	         ifs[0].iface_subclass == 6 && ifs[0].iface_protocol == 0x50,
	     "1-1 record fields and mass-storage interface");
	t_ok(strstr(info.path, root) == info.path, "record path is the real path: %s", info.path);
	rc = uw_usbsys_devrec(&list[2], &info, ifs, &ce);
	t_ok(rc == UW_OK && info.num_interfaces == 0 && info.configuration_value == 0 &&
	         info.speed == UW_SPEED_SUPER,
	     "3-2: unconfigured record, super-plus reported as super (%u)", info.speed);
	rc = uw_usbsys_devrec(&list[3], &info, ifs, &ce);
	t_ok(rc == UW_OK && info.num_interfaces == 2 && ifs[1].iface_class == 1 &&
	         ifs[1].iface_subclass == 2,
	     "3-2.1: two audio interfaces");
	rc = uw_usbsys_devrec(&list[4], &info, ifs, &ce);
	t_ok(rc == UW_OK && ce != UW_OK && info.num_interfaces == 0,
	     "4-1: a lying configuration is listed unconfigured (%s)", uw_err_name(ce));
	const uint8_t *cfg;
	size_t len;
	t_ok(uw_usbsys_config(&list[3], 1, &cfg, &len) == UW_OK && len == 0x3b,
	     "configuration 1 of 3-2.1 found (%zu bytes)", len);
	t_ok(uw_usbsys_config(&list[3], 2, &cfg, &len) == UW_E_NOTFOUND, "no configuration 2");
	t_ok(uw_usbsys_alt(root, "3-2.1", 1, 1) == 2 && uw_usbsys_alt(root, "3-2.1", 1, 0) == 0 &&
	         uw_usbsys_alt(root, "3-2.1", 1, 5) == -1,
	     "altsettings read from the interface directories");
	uw_usbsys_free_list(list, n);

	/* A failed read leaves the record zeroed, so freeing it is safe: the server once freed
	 * a stale descriptor pointer after a read that failed because the device had just left. */
	uw_usbsys_dev one;
	memset(&one, 0xa5, sizeof one);
	t_ok(uw_usbsys_read(root, "9-9", &one) == UW_E_NODEV && !one.desc && !one.busid[0],
	     "absent device: NODEV, record zeroed");
	memset(&one, 0xa5, sizeof one);
	t_ok(uw_usbsys_read(root, "4-2", &one) == UW_E_DESC && !one.desc,
	     "non-hex idVendor: DESC, record zeroed");
	memset(&one, 0xa5, sizeof one);
	t_ok(uw_usbsys_read(root, "../x", &one) == UW_E_INVAL && !one.desc,
	     "path in a busid: INVAL, record zeroed");
	uw_usbsys_dev_fini(&one);
	/* A descriptors file longer than any device can have is refused, not cut to a part that
	 * would pass for the whole. */
	mkdev("8-1", 8, 3, "1d6b", "0104", "00", "480", "1", DEV_MSC);
	size_t big = UW_USBSYS_DESC_MAX + 1;
	uint8_t *junk = calloc(1, big);
	if (junk) {
		junk[0] = 18;
		junk[1] = 1;
		put("8-1/descriptors", junk, big);
		free(junk);
	}
	t_ok(uw_usbsys_read(root, "8-1", &one) == UW_OK && !one.desc,
	     "oversized descriptors file: no descriptors rather than a truncated set");
	uw_usbsys_dev_fini(&one);
	uw_usbsys_dev *none;
	t_ok(uw_usbsys_scan("/nonexistent-usbwire", &none) == UW_E_NODEV, "missing root: NODEV");
}

/* ---- uevents ------------------------------------------------------------------------------- */

/* Builds "a\0b\0c\0" from "a|b|c|". */
static size_t msg(const char *spec, uint8_t *out)
{
	size_t n = strlen(spec);
	for (size_t i = 0; i < n; i++)
		out[i] = spec[i] == '|' ? 0 : (uint8_t)spec[i];
	return n;
}

/* Parses p[0..n) placed right before an unreadable page. */
static int parse_guarded(const uint8_t *p, size_t n, uw_uevent *ev)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t span = ((n + (size_t)pg - 1) / (size_t)pg + 1) * (size_t)pg;
	uint8_t *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return uw_uevent_parse(p, n, ev);
	uint8_t *guard = m + span - (size_t)pg;
	mprotect(guard, (size_t)pg, PROT_NONE);
	memcpy(guard - n, p, n);
	int rc = uw_uevent_parse(guard - n, n, ev);
	munmap(m, span);
	return rc;
}

static void test_uevent(void)
{
	static const struct {
		const char *name;
		const char *text;
		int rc;
		int action, kind;
		const char *busid;
		unsigned busnum, devnum;
	} rows[] = {
	    {"device add",
	     "add@/devices/platform/dummy_hcd.0/usb1/1-1|ACTION=add|"
	     "DEVPATH=/devices/platform/dummy_hcd.0/usb1/1-1|SUBSYSTEM=usb|"
	     "MAJOR=189|MINOR=1|DEVNAME=bus/usb/001/002|DEVTYPE=usb_device|"
	     "PRODUCT=1d6b/104/404|TYPE=0/0/0|BUSNUM=001|DEVNUM=002|SEQNUM=1234|",
	     UW_OK, UW_UEVENT_ADD, UW_UEVENT_DEVICE, "1-1", 1, 2},
	    {"device remove behind a hub",
	     "remove@/devices/pci0/usb3/3-2/3-2.1|ACTION=remove|"
	     "SUBSYSTEM=usb|DEVTYPE=usb_device|BUSNUM=003|DEVNUM=7|",
	     UW_OK, UW_UEVENT_REMOVE, UW_UEVENT_DEVICE, "3-2.1", 3, 7},
	    {"interface bind names its device",
	     "bind@/devices/x/usb1/1-1/1-1:1.0|ACTION=bind|"
	     "SUBSYSTEM=usb|DEVTYPE=usb_interface|"
	     "DRIVER=usb-storage|",
	     UW_OK, UW_UEVENT_BIND, UW_UEVENT_INTERFACE, "1-1", 0, 0},
	    {"root hub: of no interest", "add@/devices/x/usb1|SUBSYSTEM=usb|DEVTYPE=usb_device|",
	     UW_OK, UW_UEVENT_ADD, UW_UEVENT_NOT_USB, "", 0, 0},
	    {"other subsystem", "add@/devices/virtual/net/lo|SUBSYSTEM=net|INTERFACE=lo|", UW_OK,
	     UW_UEVENT_ADD, UW_UEVENT_NOT_USB, "", 0, 0},
	    {"usb endpoint device (no DEVTYPE we use)",
	     "add@/devices/x/usb1/1-1/1-1:1.0/ep_81|SUBSYSTEM=usb_endpoint|", UW_OK, UW_UEVENT_ADD,
	     UW_UEVENT_NOT_USB, "", 0, 0},
	    {"unknown action", "online@/devices/x/usb1/1-1|SUBSYSTEM=usb|DEVTYPE=usb_device|",
	     UW_OK, UW_UEVENT_OTHER, UW_UEVENT_DEVICE, "1-1", 0, 0},
	    {"last field without NUL", "add@/devices/x/usb1/1-1|SUBSYSTEM=usb|DEVTYPE=usb_device",
	     UW_OK, UW_UEVENT_ADD, UW_UEVENT_DEVICE, "1-1", 0, 0},
	    {"bad numbers ignored",
	     "add@/d/usb1/1-1|SUBSYSTEM=usb|DEVTYPE=usb_device|BUSNUM=-1|DEVNUM=99999999|", UW_OK,
	     UW_UEVENT_ADD, UW_UEVENT_DEVICE, "1-1", 0, 0},
	    {"libudev message", "libudev|\xfe\xed\xca\xfe|", UW_E_PROTO, 0, 0, "", 0, 0},
	    {"no @", "add/devices/x|SUBSYSTEM=usb|", UW_E_PROTO, 0, 0, "", 0, 0},
	    {"empty action", "@/devices/x|", UW_E_PROTO, 0, 0, "", 0, 0},
	    {"relative devpath", "add@devices/x|", UW_E_PROTO, 0, 0, "", 0, 0},
	    {"ACTION disagrees", "add@/d/usb1/1-1|ACTION=remove|SUBSYSTEM=usb|DEVTYPE=usb_device|",
	     UW_E_PROTO, 0, 0, "", 0, 0},
	    {"DEVPATH disagrees",
	     "add@/d/usb1/1-1|DEVPATH=/d/usb1/1-2|SUBSYSTEM=usb|DEVTYPE=usb_device|", UW_E_PROTO, 0,
	     0, "", 0, 0},
	    {"device name not a busid", "add@/d/usb1/1-1;rm|SUBSYSTEM=usb|DEVTYPE=usb_device|",
	     UW_E_PROTO, 0, 0, "", 0, 0},
	    {"interface without ':'", "add@/d/usb1/1-1|SUBSYSTEM=usb|DEVTYPE=usb_interface|",
	     UW_E_PROTO, 0, 0, "", 0, 0},
	    {"empty", "", UW_E_PROTO, 0, 0, "", 0, 0},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		uint8_t buf[1024];
		size_t n = msg(rows[i].text, buf);
		uw_uevent ev;
		memset(&ev, 0x5a, sizeof ev);
		int rc = parse_guarded(buf, n, &ev);
		bool ok = rc == rows[i].rc;
		if (ok && rc == UW_OK)
			ok = (int)ev.action == rows[i].action && (int)ev.kind == rows[i].kind &&
			     !strcmp(ev.busid, rows[i].busid) && ev.busnum == rows[i].busnum &&
			     ev.devnum == rows[i].devnum;
		t_ok(ok, "uevent: %s (rc %s, busid \"%s\")", rows[i].name, uw_err_name(rc),
		     rc == UW_OK ? ev.busid : "-");
	}
	/* An over-long field and every truncation of a valid message. */
	uint8_t big[6000];
	size_t n = msg("add@/d/usb1/1-1|SUBSYSTEM=usb|DEVTYPE=usb_device|X=", big);
	memset(big + n, 'a', sizeof big - n);
	uw_uevent ev;
	t_ok(parse_guarded(big, sizeof big, &ev) == UW_E_PROTO, "uevent: 5 KiB field rejected");
	uint8_t good[256];
	n = msg("remove@/devices/x/usb1/1-1|ACTION=remove|SUBSYSTEM=usb|DEVTYPE=usb_device|"
	        "BUSNUM=001|DEVNUM=002|",
	        good);
	bool fine = true;
	for (size_t k = 0; k <= n; k++) {
		int rc = parse_guarded(good, k, &ev);
		if (rc != UW_OK && rc != UW_E_PROTO)
			fine = false;
	}
	t_ok(fine, "uevent: every truncation parses or fails cleanly, nothing read past the end");
	/* Random bytes: never a crash, never an over-read. */
	srand(7);
	fine = true;
	for (int k = 0; k < 2000; k++) {
		uint8_t r[128];
		size_t rn = (size_t)(rand() % (int)sizeof r);
		for (size_t j = 0; j < rn; j++)
			r[j] = (uint8_t)("add@/usb1-:.=|\0SUBSYSTEMDEVTYPEusb_device"[rand() % 40]);
		int rc = parse_guarded(r, rn, &ev);
		if (rc != UW_OK && rc != UW_E_PROTO)
			fine = false;
		if (rc == UW_OK && ev.kind != UW_UEVENT_NOT_USB && !uw_usbsys_busid_valid(ev.busid))
			fine = false;
	}
	t_ok(fine, "uevent: 2000 random messages parse or fail cleanly, busids always valid");
}

/* ---- Rules --------------------------------------------------------------------------------- */

static void test_rules(void)
{
	static const struct {
		const char *spec;
		int rc;
		int kind;
	} parse[] = {
	    {"usb:1-2", UW_OK, UW_RULE_BUSID},
	    {"usb:3-2.1", UW_OK, UW_RULE_BUSID},
	    {"usb:1d6b:0104", UW_OK, UW_RULE_IDS},
	    {"usb:1D6B:0104:0001", UW_OK, UW_RULE_IDS},
	    {"usb:1d6b:0104:a:b", UW_OK, UW_RULE_IDS}, /* the serial is the rest */
	    {"usb:", UW_E_INVAL, 0},
	    {"usb:usb1", UW_E_INVAL, 0},
	    {"usb:1d6b", UW_E_INVAL, 0},
	    {"usb:1d6b:104", UW_E_INVAL, 0},
	    {"usb:1d6bx:0104", UW_E_INVAL, 0},
	    {"usb:1d6b:0104:", UW_E_INVAL, 0},
	    {"emu:storage", UW_E_INVAL, 0},
	    {"usb:1-1:1.0", UW_E_INVAL, 0},
	};
	for (size_t i = 0; i < sizeof parse / sizeof *parse; i++) {
		uw_usb_rule r;
		char err[256] = "";
		int rc = uw_usb_rule_parse(parse[i].spec, &r, err, sizeof err);
		t_ok(rc == parse[i].rc && (rc != UW_OK || (int)r.kind == parse[i].kind),
		     "rule \"%s\": %s%s%s", parse[i].spec, uw_err_name(rc), err[0] ? ": " : "",
		     err);
	}
	uw_usbsys_dev d = {.busid = "1-2", .vid = 0x1d6b, .pid = 0x0104, .serial = "0001"};
	uw_usbsys_dev hub = d;
	hub.is_hub = true;
	static const struct {
		const char *spec;
		bool dev, hub;
	} match[] = {
	    {"usb:1-2", true, false},
	    {"usb:1-3", false, false},
	    {"usb:1d6b:0104", true, false},
	    {"usb:1d6b:0104:0001", true, false},
	    {"usb:1d6b:0104:0002", false, false},
	    {"usb:1d6b:0105", false, false},
	};
	/* A device imported through vhci mirrors another's ids: only a busid rule takes it. */
	uw_usbsys_dev vh = d;
	snprintf(vh.path, sizeof vh.path, "/sys/devices/platform/vhci_hcd.0/usb5/5-1");
	snprintf(vh.busid, sizeof vh.busid, "5-1");
	uw_usb_rule rid, rbus;
	char e2[128];
	if (uw_usb_rule_parse("usb:1d6b:0104", &rid, e2, sizeof e2) == UW_OK &&
	    uw_usb_rule_parse("usb:5-1", &rbus, e2, sizeof e2) == UW_OK)
		t_ok(!uw_usb_rule_match(&rid, &vh) && uw_usb_rule_match(&rbus, &vh),
		     "a vhci device: not taken by an id rule, taken by its busid");
	for (size_t i = 0; i < sizeof match / sizeof *match; i++) {
		uw_usb_rule r;
		char err[128];
		if (uw_usb_rule_parse(match[i].spec, &r, err, sizeof err) != UW_OK)
			continue;
		t_ok(uw_usb_rule_match(&r, &d) == match[i].dev &&
		         uw_usb_rule_match(&r, &hub) == match[i].hub,
		     "rule %s: device %s, hub never", match[i].spec,
		     match[i].dev ? "matches" : "does not match");
	}
}

/* ---- ISO layout ------------------------------------------------------------------------------ */

static void test_iso(void)
{
	/* Packets at USB/IP offsets with gaps (a client may lay them out so). */
	uw_iso_pkt gap[3] = {{0, 4, 0, 0}, {8, 4, 0, 0}, {16, 3, 0, 0}};
	uw_iso_pkt contig[3] = {{0, 4, 0, 0}, {4, 4, 0, 0}, {8, 3, 0, 0}};
	uw_iso_pkt bad[2] = {{0, 4, 0, 0}, {18, 4, 0, 0}};
	uw_iso_pkt huge[1] = {{0, UW_MAX_ISO_PACKET_LEN + 1, 0, 0}};
	uw_iso_pkt wrap[1] = {{0xfffffff0u, 0x20, 0, 0}};
	bool c = true;
	t_ok(uw_usbhost_iso_layout(gap, 3, 20, &c) == 11 && !c, "gapped layout: 11 bytes, not "
	                                                        "contiguous");
	t_ok(uw_usbhost_iso_layout(contig, 3, 11, &c) == 11 && c, "contiguous layout recognised");
	t_ok(uw_usbhost_iso_layout(bad, 2, 20, &c) == -1, "packet past the buffer rejected");
	t_ok(uw_usbhost_iso_layout(huge, 1, UW_MAX_ISO_PACKET_LEN + 1, &c) == -1,
	     "over-long packet rejected");
	t_ok(uw_usbhost_iso_layout(wrap, 1, 20, &c) == -1, "offset + length overflow rejected");
	t_ok(uw_usbhost_iso_layout(gap, 0, 0, &c) == 0 && c, "no packets: 0 bytes");

	uint8_t buf[20], dst[11];
	for (int i = 0; i < 20; i++)
		buf[i] = (uint8_t)i;
	uw_usbhost_iso_gather(gap, 3, buf, dst);
	static const uint8_t want_g[11] = {0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18};
	t_ok(!memcmp(dst, want_g, 11), "OUT gather: packets taken from their offsets");

	/* IN: libusb filled packet i at the sum of the lengths before it; short packets too. */
	uint8_t src[11] = {0xa0, 0xa1, 0xa2, 0xa3, 0xb0, 0xb1, 0, 0, 0xc0, 0xc1, 0xc2};
	gap[0].actual_length = 4;
	gap[1].actual_length = 2; /* short */
	gap[2].actual_length = 3;
	memset(buf, 0xee, sizeof buf);
	uw_usbhost_iso_scatter(gap, 3, src, buf);
	static const uint8_t want_s[20] = {0xa0, 0xa1, 0xa2, 0xa3, 0xee, 0xee, 0xee,
	                                   0xee, 0xb0, 0xb1, 0xee, 0xee, 0xee, 0xee,
	                                   0xee, 0xee, 0xc0, 0xc1, 0xc2, 0xee};
	t_ok(!memcmp(buf, want_s, 20), "IN scatter: each packet's actual bytes at its offset");
	if (memcmp(buf, want_s, 20))
		t_hexdiff("scatter", buf, want_s, 20);
	gap[1].actual_length = 99; /* a lying length is clamped to the packet */
	memset(buf, 0xee, sizeof buf);
	uw_usbhost_iso_scatter(gap, 3, src, buf);
	t_ok(buf[12] == 0xee && buf[11] == 0, "IN scatter clamps actual_length to length");
	/* Contiguous in place (src == buf) is the identity. */
	uint8_t same[11];
	memcpy(same, src, 11);
	contig[0].actual_length = 4;
	contig[1].actual_length = 4;
	contig[2].actual_length = 3;
	uw_usbhost_iso_scatter(contig, 3, same, same);
	t_ok(!memcmp(same, src, 11), "contiguous scatter in place changes nothing");
}

/* ---- Status tables --------------------------------------------------------------------------- */

static void test_status(void)
{
	static const struct {
		int st;
		bool unlinked;
		int32_t want;
	} urb[] = {
	    {LIBUSB_TRANSFER_COMPLETED, false, 0},
	    {LIBUSB_TRANSFER_COMPLETED, true, 0}, /* finished before the unlink took effect */
	    {LIBUSB_TRANSFER_STALL, false, UW_URB_EPIPE},
	    {LIBUSB_TRANSFER_NO_DEVICE, false, UW_URB_ESHUTDOWN},
	    {LIBUSB_TRANSFER_OVERFLOW, false, UW_URB_EOVERFLOW},
	    {LIBUSB_TRANSFER_TIMED_OUT, false, UW_URB_ETIMEDOUT},
	    {LIBUSB_TRANSFER_ERROR, false, UW_URB_EPROTO},
	    {LIBUSB_TRANSFER_CANCELLED, true, UW_URB_ECONNRESET},
	    {LIBUSB_TRANSFER_CANCELLED, false, UW_URB_ESHUTDOWN},
	    {99, false, UW_URB_EPROTO},
	};
	for (size_t i = 0; i < sizeof urb / sizeof *urb; i++)
		t_ok(uw_usbhost_urb_status(urb[i].st, urb[i].unlinked) == urb[i].want,
		     "URB status of libusb %d%s: %d", urb[i].st,
		     urb[i].unlinked ? " (unlinked)" : "", urb[i].want);
	static const struct {
		int st;
		int32_t want;
	} iso[] = {
	    {LIBUSB_TRANSFER_COMPLETED, 0},
	    {LIBUSB_TRANSFER_ERROR, UW_URB_EPROTO},
	    {LIBUSB_TRANSFER_STALL, UW_URB_EPIPE},
	    {LIBUSB_TRANSFER_OVERFLOW, UW_URB_EOVERFLOW},
	    {LIBUSB_TRANSFER_NO_DEVICE, UW_URB_ESHUTDOWN},
	    {LIBUSB_TRANSFER_CANCELLED, UW_URB_EXDEV},
	};
	for (size_t i = 0; i < sizeof iso / sizeof *iso; i++)
		t_ok(uw_usbhost_iso_status(iso[i].st) == iso[i].want, "ISO packet status of %d: %d",
		     iso[i].st, iso[i].want);
	static const struct {
		int e;
		int32_t want;
	} errs[] = {
	    {LIBUSB_SUCCESS, 0},
	    {LIBUSB_ERROR_PIPE, UW_URB_EPIPE},
	    {LIBUSB_ERROR_NO_DEVICE, UW_URB_ENODEV},
	    {LIBUSB_ERROR_NOT_FOUND, UW_URB_ENODEV},
	    {LIBUSB_ERROR_INVALID_PARAM, UW_URB_EINVAL},
	    {LIBUSB_ERROR_NO_MEM, -12},
	    {LIBUSB_ERROR_IO, UW_URB_EIO},
	    {LIBUSB_ERROR_OTHER, UW_URB_EIO},
	};
	for (size_t i = 0; i < sizeof errs / sizeof *errs; i++)
		t_ok(uw_usbhost_error_status(errs[i].e) == errs[i].want, "error %s -> %d",
		     libusb_error_name(errs[i].e), errs[i].want);
}

/* What reaches a real device: the requests usbfs must do itself are recognised by recipient,
 * type and request whatever the direction bit says; the forms a device could act on behind
 * usbfs's back (the direction bit set), SET_FEATURE(TEST_MODE) and SET_ADDRESS never reach it. */
static void test_special(void)
{
	static const struct {
		uint8_t rt, req;
		uint16_t value, index, length;
		int want;
		const char *what;
	} rows[] = {
	    {0x00, 0x09, 1, 0, 0, UW_SP_SET_CONFIG, "SET_CONFIGURATION"},
	    {0x00, 0x09, 0, 0, 0, UW_SP_SET_CONFIG, "SET_CONFIGURATION 0"},
	    {0x80, 0x09, 1, 0, 0, UW_SP_REFUSE, "SET_CONFIGURATION, direction bit set"},
	    {0x80, 0x09, 1, 0, 1, UW_SP_REFUSE, "SET_CONFIGURATION IN with a data stage"},
	    {0x01, 0x09, 1, 0, 0, UW_SP_REFUSE, "SET_CONFIGURATION to an interface"},
	    {0x01, 0x0b, 1, 0, 0, UW_SP_SET_IFACE, "SET_INTERFACE"},
	    {0x81, 0x0b, 1, 0, 0, UW_SP_REFUSE, "SET_INTERFACE, direction bit set"},
	    {0x00, 0x0b, 1, 0, 0, UW_SP_REFUSE, "SET_INTERFACE to the device"},
	    {0x02, 0x01, 0, 0x81, 0, UW_SP_CLEAR_HALT, "CLEAR_FEATURE(HALT)"},
	    {0x82, 0x01, 0, 0x81, 0, UW_SP_REFUSE, "CLEAR_FEATURE(HALT), direction bit set"},
	    {0x02, 0x03, 0, 0x81, 0, UW_SP_FORWARD, "SET_FEATURE(HALT): the device stalls"},
	    {0x00, 0x01, 1, 0, 0, UW_SP_FORWARD, "CLEAR_FEATURE(REMOTE_WAKEUP)"},
	    {0x00, 0x03, 1, 0, 0, UW_SP_FORWARD, "SET_FEATURE(REMOTE_WAKEUP)"},
	    {0x00, 0x03, 2, 0x0400, 0, UW_SP_REFUSE, "SET_FEATURE(TEST_MODE)"},
	    {0x80, 0x03, 2, 0x0400, 0, UW_SP_REFUSE, "SET_FEATURE(TEST_MODE), direction bit set"},
	    {0x00, 0x05, 2, 0, 0, UW_SP_ADDRESS, "SET_ADDRESS"},
	    {0x80, 0x05, 2, 0, 0, UW_SP_REFUSE, "SET_ADDRESS, direction bit set"},
	    {0x23, 0x03, 4, 1, 0, UW_SP_PORT_RESET, "SET_FEATURE(PORT_RESET)"},
	    {0xa3, 0x03, 4, 1, 0, UW_SP_REFUSE, "SET_FEATURE(PORT_RESET), direction bit set"},
	    {0x23, 0x03, 8, 1, 0, UW_SP_FORWARD, "SET_FEATURE(PORT_POWER)"},
	    {0x80, 0x06, 0x0100, 0, 18, UW_SP_FORWARD, "GET_DESCRIPTOR"},
	    {0x80, 0x08, 0, 0, 1, UW_SP_FORWARD, "GET_CONFIGURATION"},
	    {0x40, 0x09, 1, 0, 0, UW_SP_FORWARD, "vendor request 9"},
	    {0xc0, 0x05, 1, 0, 4, UW_SP_FORWARD, "vendor request 5, IN"},
	    {0x21, 0x0b, 1, 0, 0, UW_SP_FORWARD, "class SET_PROTOCOL"},
	    {0x41, 0x03, 2, 0, 0, UW_SP_FORWARD, "vendor request 3, value 2"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		uw_setup s = {rows[i].rt, rows[i].req, rows[i].value, rows[i].index,
		              rows[i].length};
		int got = uw_usbhost_special_kind(&s);
		t_ok(got == rows[i].want, "%02x %02x value %04x: %s: %d (want %d)", rows[i].rt,
		     rows[i].req, rows[i].value, rows[i].what, got, rows[i].want);
	}
}

/* usbfs memory is shared by every device (usbfs_memory_mb): a client parking IN URBs on a quiet
 * endpoint of one device stops at that device's share, and leaves the others theirs. */
static void test_budget(void)
{
	const uint64_t MiB = 1u << 20;
	static const struct {
		uint64_t total, want;
	} rows[] = {
	    {16u << 20, 4u << 20}, /* the kernel's default */
	    {1u << 20, UW_USBHOST_MIN_BUDGET},
	    {256u << 20, 64u << 20},
	    {0, 0}, /* usbfs without a limit */
	};
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
		t_ok(uw_usbhost_device_budget(rows[i].total) == rows[i].want,
		     "budget of one device when usbfs has %llu bytes: %llu",
		     (unsigned long long)rows[i].total, (unsigned long long)rows[i].want);
	for (uint64_t total = 1 * MiB; total <= 64 * MiB; total *= 4) {
		uint64_t budget = uw_usbhost_device_budget(total), held = 0;
		unsigned parked = 0;
		while (parked < 100000 &&
		       uw_usbhost_fits(held, uw_usbhost_urb_cost(65536), budget)) {
			held += uw_usbhost_urb_cost(65536);
			parked++;
		}
		t_ok(parked > 0 && held <= budget && total - held >= total / 2,
		     "usbfs %llu MiB: one device parks %u 64 KiB URBs (%llu bytes), at least half "
		     "is left to the others",
		     (unsigned long long)(total / MiB), parked, (unsigned long long)held);
	}
	uint64_t budget = uw_usbhost_device_budget(16 * MiB);
	t_ok(uw_usbhost_fits(0, budget, budget) && !uw_usbhost_fits(1, budget, budget) &&
	         !uw_usbhost_fits(budget + 1, 0, budget) && uw_usbhost_fits(UINT64_MAX - 1, 5, 0),
	     "fits: the share exactly, not a byte more; no limit when usbfs has none");
}

/* A device's blocking call (a job blocked on a pipe standing in for a port reset) runs on the
 * device's worker; meanwhile the loop keeps serving another fd (another session), and the job's
 * completion comes back on the loop thread, in order with the jobs after it. */
struct wt {
	uw_loop *loop;
	uw_hworker w;
	int gate[2];  /* the blocked job reads one byte from gate[0] */
	int other[2]; /* "another session": the loop watches other[0] */
	uw_hjob reset, after;
	volatile int started, finished; /* set by the job, on the worker */
	int served_during;              /* other[0] served while the job was blocked */
	int log[4], nlog;               /* done() order */
	int done_on_loop;
	int polls;
	bool timed_out;
};

static struct wt *g_wt;

static void reset_run(uw_hjob *j)
{
	(void)j;
	__atomic_store_n(&g_wt->started, 1, __ATOMIC_SEQ_CST);
	char c;
	while (read(g_wt->gate[0], &c, 1) < 0 && errno == EINTR)
		;
	__atomic_store_n(&g_wt->finished, 1, __ATOMIC_SEQ_CST);
}

static void after_run(uw_hjob *j)
{
	(void)j;
}

static void job_done(uw_hjob *j)
{
	struct wt *t = g_wt;
	if (t->nlog < 4)
		t->log[t->nlog++] = j == &t->reset ? 1 : 2;
	t->done_on_loop += uw_loop_in_thread(t->loop);
	if (j == &t->after)
		uw_loop_stop(t->loop);
}

static void on_other(void *arg, uint32_t ev)
{
	struct wt *t = arg;
	(void)ev;
	char c;
	if (read(t->other[0], &c, 1) != 1)
		return;
	/* The loop serves this while the job still blocks: count it, then let the job go. */
	if (__atomic_load_n(&t->started, __ATOMIC_SEQ_CST) &&
	    !__atomic_load_n(&t->finished, __ATOMIC_SEQ_CST))
		t->served_during++;
	if (write(t->gate[1], "g", 1) != 1)
		abort();
}

/* Polls (a safety bound, not a duration) until the job has started, then wakes "another
 * session". */
static void wt_poll(void *arg)
{
	struct wt *t = arg;
	if (__atomic_load_n(&t->started, __ATOMIC_SEQ_CST)) {
		if (write(t->other[1], "o", 1) != 1)
			abort();
		return;
	}
	if (++t->polls > 600000) {
		t->timed_out = true;
		if (write(t->gate[1], "g", 1) != 1)
			abort();
		return;
	}
	uw_loop_timer_add(t->loop, 1, wt_poll, t);
}

static void test_worker(void)
{
	struct wt t = {.nlog = 0};
	g_wt = &t;
	t.loop = uw_loop_new();
	if (!t.loop || pipe(t.gate) != 0 || pipe(t.other) != 0) {
		t_ok(false, "loop and pipes");
		return;
	}
	uw_hworker_init(&t.w, t.loop);
	uw_loop_add_fd(t.loop, t.other[0], UW_EV_IN, on_other, &t);
	t.reset = (uw_hjob){.run = reset_run, .done = job_done};
	t.after = (uw_hjob){.run = after_run, .done = job_done};
	t_ok(uw_hworker_submit(&t.w, &t.reset) && uw_hworker_submit(&t.w, &t.after),
	     "two jobs queued on the device's worker");
	t_ok(uw_hworker_busy(&t.w), "the worker is busy with them");
	uw_loop_timer_add(t.loop, 0, wt_poll, &t);
	uw_loop_run(t.loop);
	t_ok(!t.timed_out, "the blocking job started");
	t_ok(t.served_during == 1, "the loop served another fd while the job was blocked");
	t_ok(t.nlog == 2 && t.log[0] == 1 && t.log[1] == 2 && t.done_on_loop == 2,
	     "both completions on the loop thread, in order");
	t_ok(!uw_hworker_busy(&t.w), "idle afterwards");
	/* drain: completions not yet delivered by the loop are delivered by drain, in order. */
	t.nlog = 0;
	t.done_on_loop = 0;
	t.started = t.finished = 0;
	if (write(t.gate[1], "g", 1) != 1)
		abort();
	uw_hworker_submit(&t.w, &t.reset);
	uw_hworker_submit(&t.w, &t.after);
	uw_hworker_drain(&t.w);
	t_ok(t.nlog == 2 && t.log[0] == 1 && t.log[1] == 2 && !uw_hworker_busy(&t.w),
	     "drain runs both jobs and their completions, in order");
	uw_hworker_fini(&t.w);
	uw_loop_del_fd(t.loop, t.other[0]);
	uw_loop_free(t.loop);
	close(t.gate[0]);
	close(t.gate[1]);
	close(t.other[0]);
	close(t.other[1]);
}

/* ---- The backend on a fake tree ---------------------------------------------------------- */

struct added {
	uw_dev *devs[8];
	int n;
	int refuse; /* refuse the next add with this error */
};

static int on_add(void *user, uw_dev *d)
{
	struct added *a = user;
	if (a->refuse) {
		int rc = a->refuse;
		a->refuse = 0;
		return rc;
	}
	if (a->n < 8)
		a->devs[a->n++] = d;
	return UW_OK;
}

static void on_remove(void *user, uw_dev *d)
{
	(void)user;
	(void)d;
}

static void test_backend(void)
{
	uw_loop *loop = uw_loop_new();
	struct added a = {.n = 0};
	struct uw_usbhost_config cfg = {.loop = loop,
	                                .sysfs = root,
	                                .devfs = "/nonexistent-usbwire-devfs",
	                                .add = on_add,
	                                .remove = on_remove,
	                                .user = &a};
	uw_usbhost *h = NULL;
	char err[256] = "";
	int rc = uw_usbhost_new(&cfg, &h, err, sizeof err);
	if (!t_ok(rc == UW_OK, "libusb context without device discovery: %s", err)) {
		uw_loop_free(loop);
		return;
	}
	t_ok(uw_usbhost_add_rule(h, "usb:1-1", err, sizeof err) == UW_OK, "rule usb:1-1");
	t_ok(uw_usbhost_add_rule(h, "usb:5678:1234", err, sizeof err) == UW_OK,
	     "rule usb:5678:1234");
	t_ok(uw_usbhost_add_rule(h, "usb:2-1", err, sizeof err) == UW_OK, "rule for a hub");
	t_ok(uw_usbhost_add_rule(h, "usb:1-", err, sizeof err) == UW_E_INVAL, "bad rule: %s", err);
	rc = uw_usbhost_start(h, err, sizeof err);
	t_ok(rc == UW_OK, "start on the fake tree");
	t_ok(a.n == 2, "two devices exported (the hub is not): %d", a.n);
	uw_dev *d1 = NULL, *d2 = NULL;
	for (int i = 0; i < a.n; i++) {
		if (!strcmp(a.devs[i]->info.busid, "1-1"))
			d1 = a.devs[i];
		if (!strcmp(a.devs[i]->info.busid, "3-2.1"))
			d2 = a.devs[i];
	}
	t_ok(d1 && d1->info.id_vendor == 0x1d6b && d1->info.num_interfaces == 1 &&
	         d1->ifaces[0].iface_class == 8 && !strcmp(d1->spec, "usb:1-1"),
	     "1-1 exported with its record (%s)", d1 ? d1->spec : "-");
	t_ok(d2 && d2->info.speed == UW_SPEED_SUPER && !strcmp(d2->spec, "usb:5678:1234 (3-2.1)") &&
	         !strcmp(d2->name, "5678:1234"),
	     "3-2.1 exported by its ids (%s)", d2 ? d2->spec : "-");
	if (d1) {
		t_ok(d1->ops->import(d1) == UW_E_NODEV, "import without a device node: NODEV");
		t_ok(d1->ops->ep_type(d1, 0, UW_DIR_IN) == UW_XFER_UNKNOWN,
		     "no endpoints before an import");
	}
	for (int i = 0; i < a.n; i++)
		a.devs[i]->ops->destroy(a.devs[i]);
	uw_usbhost_free(h);
	uw_loop_free(loop);

	/* An owner that refuses a device: the backend frees it (the leak checker watches). */
	loop = uw_loop_new();
	a = (struct added){.refuse = UW_E_EXISTS};
	cfg.loop = loop;
	if (uw_usbhost_new(&cfg, &h, err, sizeof err) == UW_OK) {
		rc = uw_usbhost_add_rule(h, "usb:1-1", err, sizeof err);
		rc |= uw_usbhost_start(h, err, sizeof err);
		t_ok(rc == UW_OK && a.n == 0, "a refused device is not kept");
		uw_usbhost_free(h);
	}
	uw_loop_free(loop);
}

/* libusb's own messages reach our logger (at debug level, prefixed "libusb:"): a device node
 * that is a plain file makes libusb refuse it, and say why. */
struct lines {
	char text[4096];
	int n;
};

static void collect(void *user, int level, const char *line)
{
	struct lines *l = user;
	(void)level;
	size_t len = strlen(l->text);
	snprintf(l->text + len, sizeof l->text - len, "%s\n", line);
	l->n++;
}

static void test_libusb_log(void)
{
	char devfs[300];
	snprintf(devfs, sizeof devfs, "%s-devfs", root);
	char path[400];
	snprintf(path, sizeof path, "%s/001", devfs);
	if (mkdir(devfs, 0700) != 0 || mkdir(path, 0700) != 0) {
		t_ok(false, "fake devfs: %s", strerror(errno));
		return;
	}
	snprintf(path, sizeof path, "%s/001/002", devfs);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("not a usbfs node", f);
		fclose(f);
	}
	uw_loop *loop = uw_loop_new();
	struct added a = {.n = 0};
	struct lines lines = {.n = 0};
	struct uw_usbhost_config cfg = {.loop = loop,
	                                .log = {collect, &lines, UW_LOG_DEBUG},
	                                .sysfs = root,
	                                .devfs = devfs,
	                                .add = on_add,
	                                .remove = on_remove,
	                                .user = &a};
	uw_usbhost *h = NULL;
	char err[256] = "";
	if (t_ok(uw_usbhost_new(&cfg, &h, err, sizeof err) == UW_OK, "libusb context: %s", err)) {
		uw_usbhost_add_rule(h, "usb:1-1", err, sizeof err);
		uw_usbhost_start(h, err, sizeof err);
		int rc = a.n == 1 ? a.devs[0]->ops->import(a.devs[0]) : UW_E_NOTFOUND;
		t_ok(rc != UW_OK, "a plain file as the device node is refused (%s)",
		     uw_strerror(rc));
		t_ok(strstr(lines.text, "libusb cannot use") != NULL, "our line says so");
		t_ok(strstr(lines.text, "libusb: ") != NULL,
		     "libusb's own message is logged too:\n%s", lines.text);
		for (int i = 0; i < a.n; i++)
			a.devs[i]->ops->destroy(a.devs[i]);
		uw_usbhost_free(h);
	}
	uw_loop_free(loop);
	unlink(path);
	snprintf(path, sizeof path, "%s/001", devfs);
	rmdir(path);
	rmdir(devfs);
}

int main(void)
{
	build_tree();
	test_busid();
	test_scan();
	test_uevent();
	test_rules();
	test_iso();
	test_status();
	test_special();
	test_budget();
	test_worker();
	test_backend();
	test_libusb_log();
	rm_tree();
	return t_done();
}
