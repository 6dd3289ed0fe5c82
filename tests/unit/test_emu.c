/* SPDX-License-Identifier: MIT */
/*
 * test_emu.c - the emulated devices driven through their uw_dev ops in one process: a uw_loop
 * for the keyboard's FIFO and the serial port's pty, but no server and no sockets. Every URB the
 * test submits counts its completions; each scenario checks that every one completed exactly
 * once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "uw_emu.h"
#include "uw_test.h"
#include "uw_turb.h"
#include "uw_usbdesc.h"

/* ---- URBs and completions ------------------------------------------------------------------ */

struct ctl {
	int32_t status;
	uint32_t actual;
	int completions;
	uint8_t data[1024];
};

/* One control transfer; it must complete inside submit(). */
static struct ctl ctrl_flags(uw_dev *d, uint8_t rt, uint8_t req, uint16_t val, uint16_t idx,
                             uint16_t len, const void *out, uint32_t flags)
{
	struct ctl c = {.status = 12345};
	turb *t = turb_new(0, (rt & 0x80) ? UW_DIR_IN : UW_DIR_OUT, UW_XFER_CONTROL, len);
	t->u.setup = (uw_setup){rt, req, val, idx, len};
	t->u.flags = flags;
	if (out && len)
		memcpy(t->buf, out, len);
	d->ops->submit(d, &t->u);
	c.completions = t->completions;
	c.status = t->u.status;
	c.actual = t->u.actual;
	if (len)
		memcpy(c.data, t->buf, len < sizeof c.data ? len : sizeof c.data);
	turb_free(t);
	return c;
}

static struct ctl ctrl(uw_dev *d, uint8_t rt, uint8_t req, uint16_t val, uint16_t idx, uint16_t len,
                       const void *out)
{
	return ctrl_flags(d, rt, req, val, idx, len, out, 0);
}

/* ---- Loop helpers --------------------------------------------------------------------------- */

static void stop_loop(void *arg)
{
	uw_loop_stop(arg);
}

static void run_for(uw_loop *l, uint64_t ms)
{
	uw_loop_timer_add(l, ms, stop_loop, l);
	uw_loop_run(l);
}

/* Run the loop until *count reaches want; the bound (at least a minute) is a safety net for a
 * device that never completes, not a measurement: a loaded machine only makes it longer. */
static bool run_until_n(uw_loop *l, const int *count, int want, int rounds)
{
	for (int i = 0; i < rounds && *count < want; i++)
		run_for(l, 5);
	return *count >= want;
}

static bool run_until(uw_loop *l, const int *count, int want)
{
	return run_until_n(l, count, want, 12000);
}

struct logbuf {
	char lines[8][256];
	int n;
};

static void log_line(void *user, int level, const char *line)
{
	struct logbuf *b = user;
	(void)level;
	if (b->n < 8)
		snprintf(b->lines[b->n++], sizeof b->lines[0], "%s", line);
}

static int notifies;
static void on_notify(uw_dev *d, int ev)
{
	(void)d;
	if (ev == UW_DEV_EV_INFO)
		notifies++;
}

static uw_dev *create(const char *spec, const char *busid, uw_loop *loop, const uw_logger *lg)
{
	uw_dev *d = NULL;
	char err[256] = "";
	int r = uw_emu_create(spec, busid, 99, 1, loop, lg, &d, err, sizeof err);
	if (!t_ok(r == UW_OK && d, "create %s", spec))
		t_diag("%s: %s", uw_strerror(r), err);
	if (d)
		d->notify = on_notify;
	return d;
}

/* ---- Specs and options ---------------------------------------------------------------------- */

static void test_specs(void)
{
	char fifo_dir[] = "/tmp/uwemuXXXXXX";
	static const struct {
		const char *spec;
		const char *err; /* exact message */
	} rows[] = {
	    {"emu:foo",
	     "unknown device kind \"foo\" (known: storage, keyboard, serial, sink, audio)"},
	    {"usb:1-1", "not an emulated device spec \"usb:1-1\" (expected emu:KIND[,OPT...])"},
	    {"emu:sink,size=1", "emu:sink: unknown option \"size\" (allowed: pattern)"},
	    {"emu:sink,pattern=2", "emu:sink: pattern must be 0 (zeros) or 1 (mod63), not \"2\""},
	    {"emu:sink,pattern=1,pattern=0", "emu:sink: option \"pattern\" given twice"},
	    {"emu:sink,,pattern=1", "emu:sink: empty option in \"emu:sink,,pattern=1\""},
	    {"emu:serial,pty=yes", "emu:serial: pty is a flag and takes no value"},
	    {"emu:keyboard,input=/nonexistent/x",
	     "emu:keyboard: cannot open /nonexistent/x: No such file or directory"},
	    {"emu:keyboard,file=x", "emu:keyboard: unknown option \"file\" (allowed: input)"},
	    {"emu:storage,size=1", "emu:storage: unknown option \"size\" (allowed: file, ro)"},
	    {"emu:sink,a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q",
	     "emu:sink: too many options (at most 16)"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		uw_dev *d = NULL;
		char err[256] = "";
		int r = uw_emu_create(rows[i].spec, "1-1", 99, 1, NULL, NULL, &d, err, sizeof err);
		if (!t_ok(r < 0 && !d && strcmp(err, rows[i].err) == 0, "spec %s refused: %s",
		          rows[i].spec, rows[i].err))
			t_diag("got %d \"%s\"", r, err);
	}
	/* The storage kind's allowed options, through the same checker. */
	uw_emu_args a = {
	    .kind = "storage", .num_opts = 2, .keys = {"file", "size"}, .values = {"x.img", "1G"}};
	char err[256] = "";
	a.err = err;
	a.errlen = sizeof err;
	static const char *const allowed[] = {"file", "ro", NULL};
	t_ok(uw_emu_check_opts(&a, allowed) == UW_E_INVAL &&
	         strcmp(err, "emu:storage: unknown option \"size\" (allowed: file, ro)") == 0,
	     "check_opts names the option and the allowed ones: %s", err);
	t_ok(strcmp(uw_emu_opt(&a, "file"), "x.img") == 0 && uw_emu_opt(&a, "ro") == NULL,
	     "uw_emu_opt finds values");
	/* Not a FIFO nor a file. */
	if (mkdtemp(fifo_dir)) {
		uw_dev *d = NULL;
		char spec[128];
		snprintf(spec, sizeof spec, "emu:keyboard,input=%s", fifo_dir);
		int r = uw_emu_create(spec, "1-1", 99, 1, NULL, NULL, &d, err, sizeof err);
		t_ok(r < 0 && strstr(err, "neither a regular file nor a FIFO"),
		     "directory input: %s", err);
		rmdir(fifo_dir);
	}
	/* Serial numbers: stable, distinct per busid. */
	char s1[17], s2[17], s3[17];
	uw_emu_serial("99-1", "emu:sink", s1);
	uw_emu_serial("99-1", "emu:sink", s2);
	uw_emu_serial("99-2", "emu:sink", s3);
	t_ok(strlen(s1) == 16 && strcmp(s1, s2) == 0 && strcmp(s1, s3) != 0,
	     "uw_emu_serial stable and per busid (%s, %s)", s1, s3);
}

/* ---- What every device answers ------------------------------------------------------------- */

struct devcase {
	const char *spec;
	uint16_t vid, pid;
	uint32_t speed;
	const char *product;
	bool self_powered;
	uint8_t num_ifaces;
	uint8_t ep_in;      /* a data endpoint IN of altsetting 0 (number) */
	uint8_t ep_in_xfer; /* its type */
	uint8_t iface0_class;
};

static const struct devcase devcases[] = {
    {"emu:sink", 0x0525, 0xa4a0, UW_SPEED_HIGH, "usbwire source/sink", true, 1, 1, UW_XFER_BULK,
     0xff},
    {"emu:keyboard", 0x1209, 0x0001, UW_SPEED_FULL, "usbwire keyboard", false, 1, 1, UW_XFER_INT,
     3},
    {"emu:serial", 0x0525, 0xa4a7, UW_SPEED_HIGH, "usbwire serial (CDC-ACM)", false, 2, 1,
     UW_XFER_BULK, 2},
};

static bool string_is(uw_dev *d, uint8_t idx, const char *want, char *got, size_t cap)
{
	struct ctl c = ctrl(d, 0x80, 6, (uint16_t)(0x0300 | idx), 0x0409, 255, NULL);
	got[0] = '\0';
	if (c.status != 0 || c.completions != 1)
		return false;
	int n = uw_string_desc_to_utf8(c.data, c.actual, got, cap, NULL);
	return n >= 0 && (!want || strcmp(got, want) == 0);
}

static void test_device_common(const struct devcase *dc)
{
	const char *k = dc->spec;
	uw_dev *d = create(dc->spec, "99-1", NULL, NULL);
	if (!d)
		return;
	t_ok(d->ops->import(d) == UW_OK, "%s: import", k);
	t_ok(d->ops->import(d) == UW_E_BUSY, "%s: second import refused", k);

	/* Device descriptor: whole, truncated, short with SHORT_NOT_OK. */
	struct ctl c = ctrl(d, 0x80, 6, 0x0100, 0, 18, NULL);
	uw_device_desc dd;
	bool ok = c.status == 0 && c.actual == 18 && c.completions == 1 &&
	          uw_device_desc_parse(c.data, c.actual, &dd, NULL) == UW_OK;
	t_ok(ok && dd.id_vendor == dc->vid && dd.id_product == dc->pid && dd.bcd_usb == 0x0200 &&
	         dd.max_packet_size0 == 64 && dd.num_configurations == 1,
	     "%s: device descriptor %04x:%04x, USB 2.00, ep0 64", k, dd.id_vendor, dd.id_product);
	uint8_t full[18];
	memcpy(full, c.data, 18);
	c = ctrl(d, 0x80, 6, 0x0100, 0, 8, NULL);
	t_ok(c.status == 0 && c.actual == 8 && memcmp(c.data, full, 8) == 0,
	     "%s: device descriptor truncated to wLength 8", k);
	c = ctrl_flags(d, 0x80, 6, 0x0100, 0, 64, NULL, UW_URB_SHORT_NOT_OK);
	t_ok(c.status == UW_URB_EREMOTEIO && c.actual == 18,
	     "%s: short read with SHORT_NOT_OK -> -EREMOTEIO, 18 bytes", k);

	/* Configuration: the header, then all of it, then a truncation. */
	c = ctrl(d, 0x80, 6, 0x0200, 0, 9, NULL);
	uw_config_desc cd;
	ok =
	    c.status == 0 && c.actual == 9 && uw_config_header_parse(c.data, 9, &cd, NULL) == UW_OK;
	uint16_t total = ok ? cd.total_length : 0;
	c = ctrl(d, 0x80, 6, 0x0200, 0, 1024, NULL);
	t_ok(ok && c.status == 0 && c.actual == total &&
	         uw_config_check(c.data, c.actual, &cd, NULL) == UW_OK &&
	         cd.num_interfaces == dc->num_ifaces && (cd.attributes & 0x80),
	     "%s: configuration descriptor valid, %u bytes, %u interfaces", k, total,
	     cd.num_interfaces);
	uint8_t cfg[1024];
	memcpy(cfg, c.data, c.actual);
	c = ctrl(d, 0x80, 6, 0x0200, 0, 20, NULL);
	t_ok(c.status == 0 && c.actual == 20 && memcmp(c.data, cfg, 20) == 0,
	     "%s: configuration truncated to wLength 20", k);
	c = ctrl(d, 0x80, 6, 0x0201, 0, 9, NULL);
	t_ok(c.status == UW_URB_EPIPE, "%s: configuration index 1 stalls", k);

	/* Strings. */
	c = ctrl(d, 0x80, 6, 0x0300, 0, 255, NULL);
	t_ok(c.status == 0 && c.actual == 4 && memcmp(c.data, "\x04\x03\x09\x04", 4) == 0,
	     "%s: string 0 is LANGID 0x0409", k);
	char got[128], serial[128];
	t_ok(string_is(d, dd.i_manufacturer, "usbwire", got, sizeof got), "%s: manufacturer \"%s\"",
	     k, got);
	t_ok(string_is(d, dd.i_product, dc->product, got, sizeof got), "%s: product \"%s\"", k,
	     got);
	t_ok(string_is(d, dd.i_serial_number, NULL, serial, sizeof serial) && strlen(serial) == 16,
	     "%s: serial \"%s\"", k, serial);
	c = ctrl(d, 0x80, 6, 0x0309, 0x0409, 255, NULL);
	t_ok(c.status == UW_URB_EPIPE, "%s: string 9 stalls", k);
	c = ctrl(d, 0x80, 6, (uint16_t)(0x0300 | dd.i_manufacturer), 0x0409, 6, NULL);
	t_ok(c.status == 0 && c.actual == 6 && c.data[0] == 16,
	     "%s: string truncated to wLength 6 keeps its bLength", k);
	uw_dev *d2 = create(dc->spec, "99-2", NULL, NULL);
	if (d2) {
		struct ctl c2 =
		    ctrl(d2, 0x80, 6, (uint16_t)(0x0300 | dd.i_serial_number), 0x0409, 255, NULL);
		char s2[64] = "";
		t_ok(uw_string_desc_to_utf8(c2.data, c2.actual, s2, sizeof s2, NULL) == 16 &&
		         strcmp(s2, serial) != 0,
		     "%s: serial differs on another busid (%s)", k, s2);
		d2->ops->destroy(d2);
	}

	/* Speed-dependent descriptors: qualifier and other-speed only at high speed; no BOS. */
	bool high = dc->speed == UW_SPEED_HIGH;
	c = ctrl(d, 0x80, 6, 0x0600, 0, 10, NULL);
	uw_qualifier_desc qd;
	t_ok(high ? c.status == 0 && c.actual == 10 &&
	                uw_qualifier_desc_parse(c.data, 10, &qd, NULL) == UW_OK &&
	                qd.num_configurations == 1
	          : c.status == UW_URB_EPIPE,
	     "%s: device qualifier %s", k, high ? "present" : "stalls (full speed)");
	c = ctrl(d, 0x80, 6, 0x0700, 0, 1024, NULL);
	uw_endpoint_desc ep;
	t_ok(high ? c.status == 0 && c.actual == total &&
	                uw_other_speed_config_check(c.data, c.actual, NULL, NULL) == UW_OK &&
	                uw_config_find_endpoint(c.data, c.actual, NULL, 0x81, &ep) == UW_OK &&
	                ep.max_packet <= 64
	          : c.status == UW_URB_EPIPE,
	     "%s: other-speed configuration %s", k, high ? "valid, full-speed packets" : "stalls");
	c = ctrl(d, 0x80, 6, 0x0f00, 0, 5, NULL);
	t_ok(c.status == UW_URB_EPIPE, "%s: BOS stalls (bcdUSB 2.00)", k);
	c = ctrl(d, 0x80, 6, 0x0400, 0, 9, NULL);
	t_ok(c.status == UW_URB_EPIPE, "%s: GET_DESCRIPTOR(INTERFACE) stalls", k);

	/* Device status, configuration state, unknown requests. */
	c = ctrl(d, 0x80, 0, 0, 0, 2, NULL);
	t_ok(c.status == 0 && c.actual == 2 && c.data[0] == (dc->self_powered ? 1 : 0),
	     "%s: GET_STATUS(device) self-powered=%d", k, dc->self_powered);
	c = ctrl(d, 0x80, 8, 0, 0, 1, NULL);
	t_ok(c.status == 0 && c.actual == 1 && c.data[0] == 0, "%s: unconfigured", k);
	/* Unconfigured, the record still describes the configuration a host will select, so
	 * that device lists show the interface classes; endpoints are not usable yet. */
	t_ok(d->info.configuration_value == 1 && d->info.num_interfaces == dc->num_ifaces &&
	         d->ifaces[0].iface_class == dc->iface0_class &&
	         d->ops->ep_type(d, dc->ep_in, UW_DIR_IN) == UW_XFER_UNKNOWN &&
	         d->ops->ep_type(d, 0, UW_DIR_IN) == UW_XFER_CONTROL,
	     "%s: unconfigured: record shows the default configuration, no endpoints", k);
	turb *t = turb_new(dc->ep_in, UW_DIR_IN, dc->ep_in_xfer, 8);
	d->ops->submit(d, &t->u);
	t_ok(t->completions == 1 && t->u.status == UW_URB_ESHUTDOWN,
	     "%s: data URB before SET_CONFIGURATION -> -ESHUTDOWN", k);
	turb_free(t);

	static const struct {
		const char *what;
		uint8_t rt, req;
		uint16_t val, idx, len;
	} stalls[] = {
	    {"unknown standard request", 0x80, 0x42, 0, 0, 2},
	    {"SET_CONFIGURATION(2)", 0x00, 9, 2, 0, 0},
	    {"SET_DESCRIPTOR", 0x00, 7, 0x0100, 0, 0},
	    {"GET_INTERFACE unconfigured", 0x81, 10, 0, 0, 1},
	    {"unknown vendor request", 0xc0, 0x77, 0, 0, 4},
	    {"reserved request type", 0xe0, 0, 0, 0, 2},
	    {"SET_FEATURE(TEST_MODE)", 0x00, 3, 2, 0x0100, 0},
	    {"GET_STATUS other recipient", 0x83, 0, 0, 0, 2},
	};
	for (size_t i = 0; i < sizeof stalls / sizeof stalls[0]; i++) {
		c = ctrl(d, stalls[i].rt, stalls[i].req, stalls[i].val, stalls[i].idx,
		         stalls[i].len, NULL);
		t_ok(c.status == UW_URB_EPIPE && c.completions == 1 && c.actual == 0,
		     "%s: %s -> -EPIPE", k, stalls[i].what);
	}
	c = ctrl(d, 0x00, 5, 7, 0, 0, NULL);
	t_ok(c.status == 0, "%s: SET_ADDRESS accepted", k);

	/* Configure. */
	notifies = 0;
	c = ctrl(d, 0x00, 9, 1, 0, 0, NULL);
	/* The hub-class port reset (docs/protocol.md §4.6): an emulated device has no port. */
	struct ctl pr = ctrl(d, 0x23, 3, 4, 1, 0, NULL);
	t_ok(pr.status == UW_URB_EPIPE && pr.completions == 1 && d->info.configuration_value == 1,
	     "%s: SET_FEATURE(PORT_RESET) stalls, configuration kept", k);
	t_ok(c.status == 0 && notifies == 0 && d->info.configuration_value == 1 &&
	         d->info.num_interfaces == dc->num_ifaces &&
	         d->ifaces[0].iface_class == dc->iface0_class &&
	         d->ops->ep_type(d, dc->ep_in, UW_DIR_IN) != UW_XFER_UNKNOWN,
	     "%s: SET_CONFIGURATION(1): endpoints usable, record unchanged (no notification)", k);
	t_ok(d->info.id_vendor == dc->vid && d->info.speed == dc->speed &&
	         strcmp(d->info.busid, "99-1") == 0 &&
	         strcmp(d->info.path, "/sys/devices/platform/usbwire/99-1") == 0 &&
	         d->info.num_configurations == 1,
	     "%s: device record (%s, %s)", k, d->info.busid, d->info.path);
	c = ctrl(d, 0x80, 8, 0, 0, 1, NULL);
	t_ok(c.status == 0 && c.data[0] == 1, "%s: GET_CONFIGURATION -> 1", k);
	t_ok(d->ops->ep_type(d, dc->ep_in, UW_DIR_IN) == dc->ep_in_xfer &&
	         d->ops->ep_type(d, 9, UW_DIR_IN) == UW_XFER_UNKNOWN,
	     "%s: endpoint table after configuration", k);
	c = ctrl(d, 0x81, 10, 0, 0, 1, NULL);
	t_ok(c.status == 0 && c.actual == 1 && c.data[0] == 0, "%s: GET_INTERFACE(0) -> 0", k);
	c = ctrl(d, 0x01, 11, 7, 0, 0, NULL);
	t_ok(c.status == UW_URB_EPIPE, "%s: SET_INTERFACE to a missing altsetting stalls", k);
	c = ctrl(d, 0x01, 11, 0, 0, 0, NULL);
	t_ok(c.status == 0, "%s: SET_INTERFACE(0, 0) accepted", k);
	c = ctrl(d, 0x81, 0, 0, 0, 2, NULL);
	t_ok(c.status == 0 && c.actual == 2 && c.data[0] == 0 && c.data[1] == 0,
	     "%s: GET_STATUS(interface 0) -> 0", k);
	c = ctrl(d, 0x81, 0, 0, 9, 2, NULL);
	t_ok(c.status == UW_URB_EPIPE, "%s: GET_STATUS(interface 9) stalls", k);
	t = turb_new(9, UW_DIR_IN, UW_XFER_BULK, 8);
	d->ops->submit(d, &t->u);
	t_ok(t->completions == 1 && t->u.status == UW_URB_EPIPE,
	     "%s: URB to an endpoint not in the configuration -> -EPIPE", k);
	turb_free(t);

	/* Halt: GET_STATUS, SET_FEATURE, a URB, CLEAR_FEATURE. */
	uint16_t epaddr = (uint16_t)(0x80 | dc->ep_in);
	c = ctrl(d, 0x82, 0, 0, epaddr, 2, NULL);
	t_ok(c.status == 0 && c.data[0] == 0, "%s: endpoint 0x%02x not halted", k, epaddr);
	c = ctrl(d, 0x82, 0, 0, 0, 2, NULL);
	t_ok(c.status == 0 && c.data[0] == 0, "%s: GET_STATUS(endpoint 0)", k);
	c = ctrl(d, 0x02, 3, 0, epaddr, 0, NULL);
	struct ctl st = ctrl(d, 0x82, 0, 0, epaddr, 2, NULL);
	t_ok(c.status == 0 && st.status == 0 && st.data[0] == 1,
	     "%s: SET_FEATURE(ENDPOINT_HALT) -> halted", k);
	t = turb_new(dc->ep_in, UW_DIR_IN, dc->ep_in_xfer, 8);
	d->ops->submit(d, &t->u);
	t_ok(t->completions == 1 && t->u.status == UW_URB_EPIPE,
	     "%s: URB to halted endpoint -> -EPIPE", k);
	turb_free(t);
	c = ctrl(d, 0x02, 1, 0, epaddr, 0, NULL);
	st = ctrl(d, 0x82, 0, 0, epaddr, 2, NULL);
	t_ok(c.status == 0 && st.status == 0 && st.data[0] == 0,
	     "%s: CLEAR_FEATURE(ENDPOINT_HALT) -> not halted", k);
	c = ctrl(d, 0x02, 1, 0, 0x8f, 0, NULL);
	t_ok(c.status == UW_URB_EPIPE, "%s: CLEAR_FEATURE on a missing endpoint stalls", k);
	c = ctrl(d, 0x02, 1, 0, 0x00, 0, NULL);
	t_ok(c.status == 0, "%s: CLEAR_FEATURE(HALT) on endpoint 0 accepted", k);

	/* Release: back to unconfigured, importable again. */
	d->ops->release(d);
	t_ok(d->info.configuration_value == 1 && d->info.num_interfaces == dc->num_ifaces &&
	         d->ops->ep_type(d, dc->ep_in, UW_DIR_IN) == UW_XFER_UNKNOWN,
	     "%s: release resets the configuration (endpoints gone)", k);
	t_ok(d->ops->import(d) == UW_OK, "%s: importable again after release", k);
	d->ops->release(d);
	d->ops->destroy(d);
}

/* ---- Sink ----------------------------------------------------------------------------------- */

static uint8_t mod63(size_t i)
{
	return (uint8_t)((i % 512) % 63);
}

static void test_sink(void)
{
	static const struct {
		const char *spec;
		unsigned pattern;
	} specs[] = {{"emu:sink", 0}, {"emu:sink,pattern=0", 0}, {"emu:sink,pattern=1", 1}};
	for (size_t si = 0; si < sizeof specs / sizeof specs[0]; si++) {
		const char *k = specs[si].spec;
		unsigned pat = specs[si].pattern;
		uw_dev *d = create(k, "99-3", NULL, NULL);
		if (!d)
			continue;
		d->ops->import(d);
		ctrl(d, 0x00, 9, 1, 0, 0, NULL);
		/* IN transfers of several sizes carry the pattern, whole. */
		static const uint32_t sizes[] = {0, 1, 511, 512, 513, 4096, 200000};
		for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
			turb *t = turb_new(1, UW_DIR_IN, UW_XFER_BULK, sizes[i]);
			t->u.flags = UW_URB_SHORT_NOT_OK;
			if (t->buf)
				memset(t->buf, 0xee, sizes[i]);
			d->ops->submit(d, &t->u);
			bool ok =
			    t->completions == 1 && t->u.status == 0 && t->u.actual == sizes[i];
			for (size_t j = 0; ok && j < sizes[i]; j++)
				ok = t->buf[j] == (pat ? mod63(j) : 0);
			t_ok(ok, "%s: IN %u bytes carry pattern %u", k, sizes[i], pat);
			turb_free(t);
		}
		/* OUT: good data is taken; a bad byte stalls its packet and halts the endpoint. */
		static const struct {
			uint32_t len;
			int32_t bad_at; /* -1: good data */
			int32_t status;
			uint32_t actual;
		} outs[] = {
		    {0, -1, 0, 0},
		    {1000, -1, 0, 1000},
		    {100000, -1, 0, 100000},
		    {1000, 700, UW_URB_EPIPE, 512},
		    {1000, 3, UW_URB_EPIPE, 0},
		};
		for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
			turb *t = turb_new(1, UW_DIR_OUT, UW_XFER_BULK, outs[i].len);
			for (size_t j = 0; j < outs[i].len; j++)
				t->buf[j] = pat ? mod63(j) : 0;
			if (outs[i].bad_at >= 0)
				t->buf[outs[i].bad_at] ^= 0x40;
			d->ops->submit(d, &t->u);
			t_ok(t->completions == 1 && t->u.status == outs[i].status &&
			         t->u.actual == outs[i].actual,
			     "%s: OUT %u bytes%s -> %d, %u bytes", k, outs[i].len,
			     outs[i].bad_at >= 0 ? " with a bad byte" : "", t->u.status,
			     t->u.actual);
			turb_free(t);
			if (outs[i].bad_at < 0)
				continue;
			struct ctl c = ctrl(d, 0x82, 0, 0, 0x01, 2, NULL);
			t = turb_new(1, UW_DIR_OUT, UW_XFER_BULK, 16);
			d->ops->submit(d, &t->u);
			t_ok(c.status == 0 && c.data[0] == 1 && t->completions == 1 &&
			         t->u.status == UW_URB_EPIPE,
			     "%s: bad data halted OUT endpoint 0x01", k);
			turb_free(t);
			c = ctrl(d, 0x02, 1, 0, 0x01, 0, NULL);
			t = turb_new(1, UW_DIR_OUT, UW_XFER_BULK, 16);
			for (size_t j = 0; j < 16; j++)
				t->buf[j] = pat ? mod63(j) : 0;
			d->ops->submit(d, &t->u);
			t_ok(c.status == 0 && t->completions == 1 && t->u.status == 0,
			     "%s: CLEAR_FEATURE(HALT) makes it usable again", k);
			turb_free(t);
		}
		/* Control write/read round trip (usbtest test 14). */
		uint8_t out[1000];
		for (size_t i = 0; i < sizeof out; i++)
			out[i] = (uint8_t)(i + 7);
		struct ctl w = ctrl(d, 0x40, 0x5b, 0, 0, sizeof out, out);
		struct ctl r = ctrl(d, 0xc0, 0x5c, 0, 0, sizeof out, NULL);
		t_ok(w.status == 0 && w.actual == sizeof out && r.status == 0 &&
		         r.actual == sizeof out && memcmp(r.data, out, sizeof out) == 0,
		     "%s: vendor 0x5b/0x5c round trip of %zu bytes", k, sizeof out);
		w = ctrl(d, 0x40, 0x5b, 1, 0, 4, out);
		t_ok(w.status == UW_URB_EPIPE, "%s: 0x5b with wValue != 0 stalls", k);
		w = ctrl(d, 0x40, 0x5b, 0, 0, 4097, NULL);
		t_ok(w.status == UW_URB_EPIPE, "%s: 0x5b longer than 4096 stalls", k);
		/* Altsetting 1 adds isochronous endpoints. */
		t_ok(d->ops->ep_type(d, 2, UW_DIR_IN) == UW_XFER_UNKNOWN, "%s: no iso in alt 0", k);
		notifies = 0;
		struct ctl c = ctrl(d, 0x01, 11, 1, 0, 0, NULL);
		struct ctl g = ctrl(d, 0x81, 10, 0, 0, 1, NULL);
		t_ok(c.status == 0 && g.data[0] == 1 &&
		         d->ops->ep_type(d, 2, UW_DIR_IN) == UW_XFER_ISO &&
		         d->ops->ep_type(d, 2, UW_DIR_OUT) == UW_XFER_ISO &&
		         d->ops->ep_type(d, 1, UW_DIR_IN) == UW_XFER_BULK,
		     "%s: SET_INTERFACE(0, 1): iso endpoints appear", k);
		turb *t = turb_new(2, UW_DIR_IN, UW_XFER_ISO, 3000);
		uw_iso_pkt pk[3] = {{0, 1024, 0, 7}, {1024, 1000, 0, 7}, {2024, 976, 0, 7}};
		t->u.iso = pk;
		t->u.num_iso = 3;
		d->ops->submit(d, &t->u);
		bool ok = t->completions == 1 && t->u.status == 0 && t->u.actual == 3000;
		for (int i = 0; i < 3; i++)
			ok = ok && pk[i].status == 0 && pk[i].actual_length == pk[i].length &&
			     t->buf[pk[i].offset + 100] == (pat ? 100 % 63 : 0);
		t_ok(ok, "%s: iso IN packets filled", k);
		turb_free(t);
		/* Zero-length packets and no buffer (the server passes NULL for length 0). */
		t = turb_new(2, UW_DIR_IN, UW_XFER_ISO, 0);
		uw_iso_pkt pz[2] = {{0, 0, 0, 7}, {0, 0, 0, 7}};
		t->u.iso = pz;
		t->u.num_iso = 2;
		d->ops->submit(d, &t->u);
		t_ok(t->completions == 1 && t->u.status == 0 && t->u.actual == 0 &&
		         pz[1].status == 0,
		     "%s: iso IN of zero-length packets without a buffer", k);
		turb_free(t);
		d->ops->release(d);
		d->ops->destroy(d);
	}
}

/* ---- Keyboard ------------------------------------------------------------------------------- */

struct expect_report {
	uint8_t mod, key;
};

/* Collect reports one URB at a time, as a host polling the endpoint would: the first expect
 * are waited for (a condition; a loaded machine only makes it take longer); then, up to max, a
 * URB that does not complete within half a second ends the collection. That last wait is a
 * check that nothing more comes: on a slow machine it can only miss an extra report (pass
 * wrongly), never fail a right one. */
static int collect_reports(uw_dev *d, uw_loop *l, uint8_t (*reps)[8], int max, int expect)
{
	int n = 0;
	for (; n < max; n++) {
		turb *t = turb_new(1, UW_DIR_IN, UW_XFER_INT, 8);
		d->ops->submit(d, &t->u);
		if (l)
			run_until_n(l, &t->completions, 1, n < expect ? 12000 : 100);
		if (t->completions == 0) {
			d->ops->cancel(d, &t->u);
			bool once = t->completions == 1 && t->u.status == UW_URB_ECONNRESET;
			turb_free(t);
			if (!once)
				return -1;
			break;
		}
		bool good = t->completions == 1 && t->u.status == 0 && t->u.actual == 8;
		memcpy(reps[n], t->buf, 8);
		turb_free(t);
		if (!good)
			return -1;
	}
	return n;
}

static bool reports_are(uint8_t (*reps)[8], int n, const struct expect_report *want, int nwant)
{
	if (n != 2 * nwant)
		return false;
	for (int i = 0; i < nwant; i++) {
		const uint8_t press[8] = {want[i].mod, 0, want[i].key, 0, 0, 0, 0, 0};
		const uint8_t release[8] = {0};
		if (memcmp(reps[2 * i], press, 8) || memcmp(reps[2 * i + 1], release, 8)) {
			t_diag("report %d: %02x %02x %02x", 2 * i, reps[2 * i][0], reps[2 * i][1],
			       reps[2 * i][2]);
			return false;
		}
	}
	return true;
}

static const struct expect_report hi_enter[] = {{0x02, 0x0b}, {0, 0x0c}, {0, 0x28}};

static void test_keyboard_idle(void)
{
	uw_dev *d = create("emu:keyboard", "99-4", NULL, NULL);
	if (!d)
		return;
	d->ops->import(d);
	ctrl(d, 0x00, 9, 1, 0, 0, NULL);
	/* HID class descriptors through GET_DESCRIPTOR to the interface. */
	struct ctl c = ctrl(d, 0x81, 6, 0x2100, 0, 9, NULL);
	t_ok(c.status == 0 && c.actual == 9 && c.data[1] == 0x21 && c.data[6] == 0x22 &&
	         c.data[7] == 63,
	     "keyboard: HID descriptor names a 63-byte report descriptor");
	c = ctrl(d, 0x81, 6, 0x2200, 0, 255, NULL);
	t_ok(c.status == 0 && c.actual == 63 &&
	         memcmp(c.data, "\x05\x01\x09\x06\xa1\x01", 6) == 0 && c.data[62] == 0xc0,
	     "keyboard: report descriptor, generic desktop keyboard collection");
	c = ctrl(d, 0x81, 6, 0x2200, 0, 10, NULL);
	t_ok(c.status == 0 && c.actual == 10, "keyboard: report descriptor truncated to wLength");
	/* Class requests, as a table. */
	static const struct {
		const char *what;
		uint8_t rt, req;
		uint16_t val, len;
		uint8_t out;
		int32_t status;
		uint32_t actual;
		int check; /* -1, or the byte expected in data[0] */
	} reqs[] = {
	    {"SET_REPORT(output) LEDs", 0x21, 0x09, 0x0200, 1, 0x02, 0, 1, -1},
	    {"GET_REPORT(output)", 0xa1, 0x01, 0x0200, 1, 0, 0, 1, 0x02},
	    {"GET_REPORT(input)", 0xa1, 0x01, 0x0100, 8, 0, 0, 8, 0x00},
	    {"GET_REPORT(feature) stalls", 0xa1, 0x01, 0x0300, 8, 0, UW_URB_EPIPE, 0, -1},
	    {"SET_IDLE(0)", 0x21, 0x0a, 0x0000, 0, 0, 0, 0, -1},
	    {"GET_IDLE", 0xa1, 0x02, 0, 1, 0, 0, 1, 0x00},
	    {"SET_PROTOCOL(boot)", 0x21, 0x0b, 0, 0, 0, 0, 0, -1},
	    {"GET_PROTOCOL", 0xa1, 0x03, 0, 1, 0, 0, 1, 0x00},
	    {"SET_PROTOCOL(2) stalls", 0x21, 0x0b, 2, 0, 0, UW_URB_EPIPE, 0, -1},
	    {"unknown class request stalls", 0xa1, 0x07, 0, 1, 0, UW_URB_EPIPE, 0, -1},
	};
	for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
		c = ctrl(d, reqs[i].rt, reqs[i].req, reqs[i].val, 0, reqs[i].len, &reqs[i].out);
		t_ok(c.completions == 1 && c.status == reqs[i].status &&
		         c.actual == reqs[i].actual &&
		         (reqs[i].check < 0 || c.data[0] == reqs[i].check),
		     "keyboard: %s", reqs[i].what);
	}
	/* No input: an interrupt URB waits; cancel completes it once with -ECONNRESET. */
	turb *t = turb_new(1, UW_DIR_IN, UW_XFER_INT, 8);
	d->ops->submit(d, &t->u);
	t_ok(t->completions == 0, "keyboard: idle, the interrupt URB waits");
	d->ops->cancel(d, &t->u);
	d->ops->cancel(d, &t->u);
	t_ok(t->completions == 1 && t->u.status == UW_URB_ECONNRESET,
	     "keyboard: cancel completes it exactly once with -ECONNRESET");
	turb_free(t);
	/* Pending URBs complete on release (-ESHUTDOWN), once each. */
	turb *a = turb_new(1, UW_DIR_IN, UW_XFER_INT, 8);
	turb *b = turb_new(1, UW_DIR_IN, UW_XFER_INT, 8);
	d->ops->submit(d, &a->u);
	d->ops->submit(d, &b->u);
	d->ops->release(d);
	t_ok(a->completions == 1 && b->completions == 1 && a->u.status == UW_URB_ESHUTDOWN &&
	         b->u.status == UW_URB_ESHUTDOWN,
	     "keyboard: release completes pending URBs once with -ESHUTDOWN");
	turb_free(a);
	turb_free(b);
	/* And on SET_CONFIGURATION(0) / destroy. */
	d->ops->import(d);
	ctrl(d, 0x00, 9, 1, 0, 0, NULL);
	a = turb_new(1, UW_DIR_IN, UW_XFER_INT, 8);
	d->ops->submit(d, &a->u);
	ctrl(d, 0x00, 9, 0, 0, 0, NULL);
	t_ok(a->completions == 1 && a->u.status == UW_URB_ESHUTDOWN,
	     "keyboard: SET_CONFIGURATION(0) completes pending URBs");
	ctrl(d, 0x00, 9, 1, 0, 0, NULL);
	b = turb_new(1, UW_DIR_IN, UW_XFER_INT, 8);
	d->ops->submit(d, &b->u);
	d->ops->destroy(d);
	t_ok(a->completions == 1 && b->completions == 1 && b->u.status == UW_URB_ESHUTDOWN,
	     "keyboard: destroy completes pending URBs");
	turb_free(a);
	turb_free(b);
}

static void test_keyboard_file(uw_loop *l, const char *dir)
{
	char path[256], spec[300];
	snprintf(path, sizeof path, "%s/typed.txt", dir);
	FILE *f = fopen(path, "w");
	fputs("Hi", f); /* no newline: the last line still gets its Enter */
	fclose(f);
	snprintf(spec, sizeof spec, "emu:keyboard,input=%s", path);
	uw_dev *d = create(spec, "99-5", l, NULL);
	if (!d)
		return;
	uint8_t reps[32][8];
	for (int session = 0; session < 2; session++) {
		d->ops->import(d);
		ctrl(d, 0x00, 9, 1, 0, 0, NULL);
		int n = collect_reports(d, l, reps, 32, 6);
		t_ok(reports_are(reps, n, hi_enter, 3),
		     "keyboard file, session %d: \"Hi\" -> shift+h, i, Enter, each released (%d "
		     "reports)",
		     session + 1, n);
		d->ops->release(d);
	}
	/* A short buffer gets only what fits. */
	d->ops->import(d);
	ctrl(d, 0x00, 9, 1, 0, 0, NULL);
	turb *t = turb_new(1, UW_DIR_IN, UW_XFER_INT, 3);
	d->ops->submit(d, &t->u);
	run_until(l, &t->completions, 1); /* reports are paced, one per 10 ms interval */
	t_ok(t->completions == 1 && t->u.status == 0 && t->u.actual == 3 && t->buf[0] == 0x02 &&
	         t->buf[2] == 0x0b,
	     "keyboard: a 3-byte URB gets the first 3 bytes of the report");
	turb_free(t);
	/* Like a real keyboard, one report per polling interval, however fast the host polls
	 * (vhci-hcd does not pace interrupt URBs): of two URBs submitted at once, the second
	 * waits for the loop's interval timer. */
	turb *p1 = turb_new(1, UW_DIR_IN, UW_XFER_INT, 8),
	     *p2 = turb_new(1, UW_DIR_IN, UW_XFER_INT, 8);
	run_for(l, 20);
	d->ops->submit(d, &p1->u);
	d->ops->submit(d, &p2->u);
	bool paced = p1->completions == 1 && p2->completions == 0;
	run_until(l, &p2->completions, 1);
	t_ok(paced && p2->completions == 1 && p2->u.status == 0,
	     "keyboard: reports are paced by the interval (second URB completes later)");
	turb_free(p1);
	turb_free(p2);
	d->ops->release(d);
	d->ops->destroy(d);
	unlink(path);
}

/* The import of a regular-file input that has since been swapped: each import opens the path
 * anew, so what is there now is checked on the opened descriptor. A FIFO with no writer must
 * not hang the import (the server's only thread), and neither a FIFO nor a symbolic link may
 * have its contents typed: that import is refused with one log line, the next one works. */
static void on_alarm(int sig)
{
	(void)sig;
	static const char msg[] = "not ok - keyboard: an import hung on a swapped input\n";
	(void)!write(1, msg, sizeof msg - 1);
	_exit(1);
}

static void test_keyboard_swapped(uw_loop *l, const char *dir)
{
	char path[256], secret[256], spec[300];
	snprintf(path, sizeof path, "%s/swap.txt", dir);
	snprintf(secret, sizeof secret, "%s/secret.txt", dir);
	FILE *f = fopen(path, "w");
	fputs("a\n", f);
	fclose(f);
	f = fopen(secret, "w");
	fputs("zz\n", f);
	fclose(f);
	struct logbuf lb = {0};
	uw_logger lg = {.fn = log_line, .user = &lb, .level = UW_LOG_DEBUG};
	snprintf(spec, sizeof spec, "emu:keyboard,input=%s", path);
	uw_dev *d = create(spec, "99-5", l, &lg);
	if (!d)
		return;
	signal(SIGALRM, on_alarm);

	/* A FIFO with no writer in place of the file. */
	unlink(path);
	mkfifo(path, 0600);
	lb.n = 0;
	alarm(20); /* a safety net only: a fixed import returns at once */
	int r = d->ops->import(d);
	alarm(0);
	t_ok(r != UW_OK && lb.n == 1 && strstr(lb.lines[0], path) && strstr(lb.lines[0], "FIFO"),
	     "keyboard: input swapped for a FIFO: import refused at once, logged: %s",
	     lb.n ? lb.lines[0] : "(nothing)");
	if (r == UW_OK)
		d->ops->release(d);

	/* A symbolic link to another file in its place: never followed, nothing typed. */
	unlink(path);
	if (symlink(secret, path) != 0)
		t_diag("symlink: %s", strerror(errno));
	lb.n = 0;
	r = d->ops->import(d);
	t_ok(r != UW_OK && lb.n == 1 && strstr(lb.lines[0], "symbolic link"),
	     "keyboard: input swapped for a symlink: import refused, logged: %s",
	     lb.n ? lb.lines[0] : "(nothing)");
	if (r == UW_OK) {
		ctrl(d, 0x00, 9, 1, 0, 0, NULL);
		uint8_t reps[8][8];
		int n = collect_reports(d, l, reps, 8, 0);
		t_diag("%d reports typed from the link's target", n);
		d->ops->release(d);
	}

	/* A regular file again: typed as before. */
	unlink(path);
	f = fopen(path, "w");
	fputs("Hi", f);
	fclose(f);
	r = d->ops->import(d);
	ctrl(d, 0x00, 9, 1, 0, 0, NULL);
	uint8_t reps[32][8];
	int n = collect_reports(d, l, reps, 32, 6);
	t_ok(r == UW_OK && reports_are(reps, n, hi_enter, 3),
	     "keyboard: a regular file back in place is typed again (%d reports)", n);
	d->ops->release(d);
	d->ops->destroy(d);
	unlink(path);
	unlink(secret);
}

/* At creation: a symbolic link, a directory, a socket are refused, naming the reason. */
static void test_keyboard_refused(const char *dir)
{
	char path[256], target[256], spec[300], err[256];
	snprintf(target, sizeof target, "%s/target.txt", dir);
	FILE *f = fopen(target, "w");
	fputs("x\n", f);
	fclose(f);
	snprintf(path, sizeof path, "%s/link.txt", dir);
	if (symlink(target, path) != 0)
		t_diag("symlink: %s", strerror(errno));
	uw_dev *d = NULL;
	snprintf(spec, sizeof spec, "emu:keyboard,input=%s", path);
	int r = uw_emu_create(spec, "1-1", 99, 1, NULL, NULL, &d, err, sizeof err);
	t_ok(r < 0 && !d && strstr(err, "symbolic link") && strstr(err, path),
	     "keyboard: symlink input refused: %s", err);
	if (d)
		d->ops->destroy(d);
	unlink(path);
	unlink(target);
	/* A socket: open() cannot even open it. */
	snprintf(path, sizeof path, "%s/kbd.sock", dir);
	int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) < sizeof sa.sun_path)
		memcpy(sa.sun_path, path, strlen(path) + 1);
	if (sfd < 0 || bind(sfd, (struct sockaddr *)&sa, sizeof sa) != 0)
		t_diag("socket %s: %s", path, strerror(errno));
	d = NULL;
	snprintf(spec, sizeof spec, "emu:keyboard,input=%s", path);
	r = uw_emu_create(spec, "1-1", 99, 1, NULL, NULL, &d, err, sizeof err);
	t_ok(r < 0 && !d && strstr(err, path), "keyboard: socket input refused: %s", err);
	if (d)
		d->ops->destroy(d);
	if (sfd >= 0)
		close(sfd);
	unlink(path);
}

static void test_keyboard_fifo(uw_loop *l, const char *dir)
{
	char path[256], spec[300];
	snprintf(path, sizeof path, "%s/kbd.fifo", dir);
	if (!t_ok(mkfifo(path, 0600) == 0, "mkfifo %s", path))
		return;
	snprintf(spec, sizeof spec, "emu:keyboard,input=%s", path);
	uw_dev *d = create(spec, "99-6", l, NULL);
	if (!d)
		return;
	d->ops->import(d);
	ctrl(d, 0x00, 9, 1, 0, 0, NULL);
	static const struct {
		const char *text;
		struct expect_report keys[8];
		int nkeys;
	} writes[] = {
	    {"Hi\n", {{0x02, 0x0b}, {0, 0x0c}, {0, 0x28}}, 3},
	    /* A second writer after the first closed: the FIFO was reopened. A last line
	     * without newline gets its Enter at EOF. */
	    {"a!", {{0, 0x04}, {0x02, 0x1e}, {0, 0x28}}, 3},
	    {"0 ?\tZ\n",
	     {{0, 0x27}, {0, 0x2c}, {0x02, 0x38}, {0, 0x2b}, {0x02, 0x1d}, {0, 0x28}},
	     6},
	};
	for (size_t i = 0; i < sizeof writes / sizeof writes[0]; i++) {
		int fd = open(path, O_WRONLY | O_NONBLOCK);
		ssize_t w = fd >= 0 ? write(fd, writes[i].text, strlen(writes[i].text)) : -1;
		if (fd >= 0)
			close(fd);
		uint8_t reps[32][8];
		int n = collect_reports(d, l, reps, 2 * writes[i].nkeys + 1, 2 * writes[i].nkeys);
		t_ok(w == (ssize_t)strlen(writes[i].text) &&
		         reports_are(reps, n, writes[i].keys, writes[i].nkeys),
		     "keyboard FIFO write %zu: %d reports as typed", i + 1, n);
	}
	/* Nothing more: the next URB waits, and cancel completes it once. */
	uint8_t reps[4][8];
	t_ok(collect_reports(d, l, reps, 1, 0) == 0, "keyboard FIFO: idle after the text");
	d->ops->release(d);
	d->ops->destroy(d);
	unlink(path);
}

/* ---- Serial --------------------------------------------------------------------------------- */

static void test_serial_loopback(void)
{
	uw_dev *d = create("emu:serial", "99-7", NULL, NULL);
	if (!d)
		return;
	d->ops->import(d);
	ctrl(d, 0x00, 9, 1, 0, 0, NULL);
	/* Line coding and the other ACM requests. */
	const uint8_t lc[7] = {0x80, 0x25, 0, 0, 0, 2, 7}; /* 9600 7E1 */
	struct ctl c = ctrl(d, 0xa1, 0x21, 0, 0, 7, NULL);
	t_ok(c.status == 0 && c.actual == 7 &&
	         memcmp(c.data, "\x00\xc2\x01\x00\x00\x00\x08", 7) == 0,
	     "serial: default line coding 115200 8N1");
	c = ctrl(d, 0x21, 0x20, 0, 0, 7, lc);
	struct ctl g = ctrl(d, 0xa1, 0x21, 0, 0, 7, NULL);
	t_ok(c.status == 0 && c.actual == 7 && g.status == 0 && memcmp(g.data, lc, 7) == 0,
	     "serial: SET_LINE_CODING then GET_LINE_CODING round trip");
	static const struct {
		const char *what;
		uint8_t rt, req;
		uint16_t val, idx, len;
		int32_t status;
	} reqs[] = {
	    {"SET_CONTROL_LINE_STATE(DTR|RTS)", 0x21, 0x22, 3, 0, 0, 0},
	    {"SEND_BREAK", 0x21, 0x23, 100, 0, 0, 0},
	    {"SET_LINE_CODING of 6 bytes stalls", 0x21, 0x20, 0, 0, 6, UW_URB_EPIPE},
	    {"a request to the data interface stalls", 0x21, 0x22, 3, 1, 0, UW_URB_EPIPE},
	    {"SEND_ENCAPSULATED_COMMAND stalls", 0x21, 0x00, 0, 0, 4, UW_URB_EPIPE},
	};
	for (size_t i = 0; i < sizeof reqs / sizeof reqs[0]; i++) {
		uint8_t zero[8] = {0};
		c = ctrl(d, reqs[i].rt, reqs[i].req, reqs[i].val, reqs[i].idx, reqs[i].len, zero);
		t_ok(c.completions == 1 && c.status == reqs[i].status, "serial: %s", reqs[i].what);
	}
	/* An IN waits for data; OUT data comes back on it. */
	turb *in = turb_new(1, UW_DIR_IN, UW_XFER_BULK, 512);
	d->ops->submit(d, &in->u);
	t_ok(in->completions == 0, "serial: IN waits without data");
	turb *out = turb_new(1, UW_DIR_OUT, UW_XFER_BULK, 5);
	memcpy(out->buf, "hello", 5);
	d->ops->submit(d, &out->u);
	t_ok(out->completions == 1 && out->u.status == 0 && out->u.actual == 5 &&
	         in->completions == 1 && in->u.status == 0 && in->u.actual == 5 &&
	         memcmp(in->buf, "hello", 5) == 0,
	     "serial: loopback echoes OUT data on IN");
	turb_free(in);
	turb_free(out);
	/* Backpressure: more than the queue holds; the OUT URB is held until IN drains it. */
	const uint32_t big = 70000;
	out = turb_new(1, UW_DIR_OUT, UW_XFER_BULK, big);
	for (uint32_t i = 0; i < big; i++)
		out->buf[i] = (uint8_t)(i * 7 + i / 251);
	d->ops->submit(d, &out->u);
	t_ok(out->completions == 0, "serial: a 70000-byte OUT waits for room (64 KiB queue)");
	uint8_t *got = malloc(big);
	uint32_t have = 0;
	int ins = 0;
	bool once = true;
	while (have < big && ins < 100) {
		in = turb_new(1, UW_DIR_IN, UW_XFER_BULK, 4096);
		d->ops->submit(d, &in->u);
		once = once && in->completions == 1 && in->u.status == 0;
		if (in->completions == 1) {
			memcpy(got + have, in->buf, in->u.actual);
			have += in->u.actual;
		}
		turb_free(in);
		ins++;
	}
	t_ok(once && have == big && memcmp(got, out->buf, big) == 0 && out->completions == 1 &&
	         out->u.status == 0 && out->u.actual == big,
	     "serial: all %u bytes come back in order, the OUT completes once (%d IN URBs)", have,
	     ins);
	free(got);
	turb_free(out);
	/* Cancel a waiting IN; release with a notification URB and an IN outstanding. */
	in = turb_new(1, UW_DIR_IN, UW_XFER_BULK, 64);
	d->ops->submit(d, &in->u);
	d->ops->cancel(d, &in->u);
	d->ops->cancel(d, &in->u);
	t_ok(in->completions == 1 && in->u.status == UW_URB_ECONNRESET,
	     "serial: cancel of a waiting IN -> -ECONNRESET once");
	turb_free(in);
	turb *note = turb_new(2, UW_DIR_IN, UW_XFER_INT, 16);
	in = turb_new(1, UW_DIR_IN, UW_XFER_BULK, 64);
	d->ops->submit(d, &note->u);
	d->ops->submit(d, &in->u);
	t_ok(note->completions == 0, "serial: notification URB waits");
	d->ops->release(d);
	t_ok(note->completions == 1 && in->completions == 1 && note->u.status == UW_URB_ESHUTDOWN &&
	         in->u.status == UW_URB_ESHUTDOWN,
	     "serial: release completes held URBs once with -ESHUTDOWN");
	turb_free(note);
	turb_free(in);
	d->ops->destroy(d);
}

static void test_serial_pty(uw_loop *l)
{
	struct logbuf lb = {.n = 0};
	uw_logger lg = {.fn = log_line, .user = &lb, .level = UW_LOG_INFO};
	uw_dev *d = create("emu:serial,pty", "99-8", l, &lg);
	if (!d)
		return;
	const char *prefix = "emu:serial: pseudo-terminal ";
	bool logged = lb.n >= 1 && strncmp(lb.lines[0], prefix, strlen(prefix)) == 0;
	t_ok(logged, "serial pty: path logged at creation (%s)", lb.n ? lb.lines[0] : "nothing");
	if (!logged) {
		d->ops->destroy(d);
		return;
	}
	const char *path = lb.lines[0] + strlen(prefix);
	int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
	t_ok(fd >= 0, "serial pty: %s opens", path);
	d->ops->import(d);
	ctrl(d, 0x00, 9, 1, 0, 0, NULL);
	/* Host -> pty. */
	turb *out = turb_new(1, UW_DIR_OUT, UW_XFER_BULK, 4);
	memcpy(out->buf, "ping", 4);
	d->ops->submit(d, &out->u);
	run_until(l, &out->completions, 1);
	char buf[64] = "";
	ssize_t n = 0;
	for (int i = 0; i < 100 && n <= 0; i++) {
		n = read(fd, buf, sizeof buf);
		if (n <= 0)
			run_for(l, 5);
	}
	t_ok(out->completions == 1 && out->u.status == 0 && n == 4 && memcmp(buf, "ping", 4) == 0,
	     "serial pty: bulk OUT reaches the terminal");
	turb_free(out);
	/* Pty -> host. */
	turb *in = turb_new(1, UW_DIR_IN, UW_XFER_BULK, 512);
	d->ops->submit(d, &in->u);
	run_for(l, 10);
	t_ok(in->completions == 0, "serial pty: IN waits for the terminal");
	ssize_t w = write(fd, "pong\n", 5);
	run_until(l, &in->completions, 1);
	t_ok(w == 5 && in->completions == 1 && in->u.status == 0 && in->u.actual == 5 &&
	         memcmp(in->buf, "pong\n", 5) == 0,
	     "serial pty: the terminal's bytes come back on bulk IN, raw");
	turb_free(in);
	/* A waiting IN is cancelled once. */
	in = turb_new(1, UW_DIR_IN, UW_XFER_BULK, 512);
	d->ops->submit(d, &in->u);
	run_for(l, 5);
	d->ops->cancel(d, &in->u);
	t_ok(in->completions == 1 && in->u.status == UW_URB_ECONNRESET,
	     "serial pty: cancel of a waiting IN -> -ECONNRESET once");
	turb_free(in);
	d->ops->release(d);
	d->ops->destroy(d);
	if (fd >= 0)
		close(fd);
}

int main(void)
{
	uw_loop *l = uw_loop_new();
	char dir[] = "/tmp/uwemuXXXXXX";
	if (!l || !mkdtemp(dir)) {
		printf("Bail out! no loop or temporary directory\n");
		return 1;
	}
	test_specs();
	for (size_t i = 0; i < sizeof devcases / sizeof devcases[0]; i++)
		test_device_common(&devcases[i]);
	test_sink();
	test_keyboard_idle();
	test_keyboard_file(l, dir);
	test_keyboard_fifo(l, dir);
	test_keyboard_swapped(l, dir);
	test_keyboard_refused(dir);
	test_serial_loopback();
	test_serial_pty(l);
	rmdir(dir);
	uw_loop_free(l);
	return t_done();
}
