/* SPDX-License-Identifier: MIT */
/*
 * test_storage - "emu:storage" through its uw_dev ops with a uw_loop in one process (no server):
 * the constructor's errors, enumeration, the class requests, full CBW / data / CSW cycles over
 * URBs of odd sizes, the thirteen cases of BOT 1.0 that a host can provoke, invalid CBWs and
 * Reset Recovery, cancel, session end and destroy with work in flight. Every URB the test submits
 * is tracked; at the end each must have completed exactly once.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "uw_emu.h"
#include "uw_scsi.h"
#include "uw_test.h"
#include "uw_usbdesc.h"

#define BLOCKS 2048u
#define EP_IN  1
#define EP_OUT 2

/* ---- URBs: every one is kept until the end to check it completed exactly once ------------- */

typedef struct turb {
	uw_urb u;
	int completions;
	uint8_t *buf;
	struct turb *next;
} turb;

static turb *all_urbs;
static int total_completions;

/* When after completes, next is submitted to reenter_dev from inside the completion. */
static uw_dev *reenter_dev;
static struct turb *reenter_after, *reenter_next;

static void on_done(uw_urb *u)
{
	turb *t = u->owner;
	t->completions++;
	total_completions++;
	if (t == reenter_after && reenter_dev) {
		reenter_after = NULL;
		reenter_dev->ops->submit(reenter_dev, &reenter_next->u);
	}
}

static turb *turb_new(uint8_t ep, uint8_t dir, uint8_t xfer, uint32_t len, uint32_t flags)
{
	turb *t = calloc(1, sizeof *t);
	t->buf = len ? calloc(1, len) : NULL;
	t->u.ep = ep;
	t->u.dir = dir;
	t->u.xfer = xfer;
	t->u.flags = flags | (dir == UW_DIR_IN ? UW_URB_DIR_IN : 0);
	t->u.buf = t->buf;
	t->u.len = len;
	t->u.done = on_done;
	t->u.owner = t;
	t->u.status = 12345;
	t->next = all_urbs;
	all_urbs = t;
	return t;
}

static turb *bulk(uw_dev *d, uint8_t dir, uint32_t len, uint32_t flags, const void *out)
{
	turb *t = turb_new(dir == UW_DIR_IN ? EP_IN : EP_OUT, dir, UW_XFER_BULK, len, flags);
	if (out && len)
		memcpy(t->buf, out, len);
	d->ops->submit(d, &t->u);
	return t;
}

struct ctl {
	int32_t status;
	uint32_t actual;
	int completions;
	uint8_t data[512];
};

static struct ctl ctrl(uw_dev *d, uint8_t rt, uint8_t req, uint16_t val, uint16_t idx, uint16_t len)
{
	struct ctl c = {.status = 12345};
	turb *t = turb_new(0, (rt & 0x80) ? UW_DIR_IN : UW_DIR_OUT, UW_XFER_CONTROL, len, 0);
	t->u.setup = (uw_setup){rt, req, val, idx, len};
	d->ops->submit(d, &t->u);
	c.completions = t->completions;
	c.status = t->u.status;
	c.actual = t->u.actual;
	if (len)
		memcpy(c.data, t->buf, len < sizeof c.data ? len : sizeof c.data);
	return c;
}

static bool clear_halt(uw_dev *d, uint8_t ep_addr)
{
	return ctrl(d, 0x02, 1, 0, ep_addr, 0).status == 0;
}

static bool halted(uw_dev *d, uint8_t ep_addr)
{
	struct ctl c = ctrl(d, 0x82, 0, 0, ep_addr, 2);
	return c.status == 0 && c.actual == 2 && c.data[0] == 1;
}

/* ---- Loop ----------------------------------------------------------------------------------- */

static uw_loop *loop;

static void stop_loop(void *arg)
{
	uw_loop_stop(arg);
}

static void run_for(uint64_t ms)
{
	uw_loop_timer_add(loop, ms, stop_loop, loop);
	uw_loop_run(loop);
}

/* Runs the loop until t has completed (a minute at most: a safety net, not a measurement). */
static bool wait_for(turb *t)
{
	for (int i = 0; i < 12000 && t->completions == 0; i++)
		run_for(5);
	return t->completions > 0;
}

/* ---- BOT helpers ---------------------------------------------------------------------------- */

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t next_tag = 0x1000;

/* Sends a CBW; returns its tag. */
static uint32_t send_cbw(uw_dev *d, uint32_t h_len, bool in, const uint8_t *cdb, uint8_t cblen)
{
	uint8_t b[31] = {0};
	uint32_t tag = next_tag++;
	put_le32(b, 0x43425355);
	put_le32(b + 4, tag);
	put_le32(b + 8, h_len);
	b[12] = in ? 0x80 : 0x00;
	b[14] = cblen;
	memcpy(b + 15, cdb, cblen);
	turb *t = bulk(d, UW_DIR_OUT, 31, 0, b);
	if (!t_ok(t->completions == 1 && t->u.status == 0 && t->u.actual == 31,
	          "CBW 0x%02x accepted", cdb[0]))
		t_diag("status %d actual %u", t->u.status, t->u.actual);
	return tag;
}

/* Reads the CSW and checks it. */
static bool read_csw(uw_dev *d, uint32_t tag, uint32_t residue, uint8_t status, const char *what)
{
	turb *t = bulk(d, UW_DIR_IN, 13, 0, NULL);
	bool ok = wait_for(t) && t->u.status == 0 && t->u.actual == 13 &&
	          le32(t->buf) == 0x53425355 && le32(t->buf + 4) == tag &&
	          le32(t->buf + 8) == residue && t->buf[12] == status;
	if (!t_ok(ok, "%s: CSW status %u residue %u", what, status, residue))
		t_diag("URB status %d actual %u; CSW tag %08x/%08x residue %u status %u",
		       t->u.status, t->u.actual, le32(t->buf + 4), tag, le32(t->buf + 8),
		       t->buf[12]);
	return ok;
}

static uint8_t pattern(uint64_t off)
{
	return (uint8_t)(off * 13 + off / 512);
}

static void cdb10(uint8_t *c, uint8_t op, uint32_t lba, uint16_t n)
{
	memset(c, 0, 10);
	c[0] = op;
	c[2] = (uint8_t)(lba >> 24);
	c[3] = (uint8_t)(lba >> 16);
	c[4] = (uint8_t)(lba >> 8);
	c[5] = (uint8_t)lba;
	c[7] = (uint8_t)(n >> 8);
	c[8] = (uint8_t)n;
}

/* Every submitted URB is the server's until done: the data stages are submitted at once, as a
 * scatter-gather host queues them, and must come back in order. */
static bool run_data_in(uw_dev *d, const uint32_t *sizes, size_t n, uint8_t *dst, uint32_t *got)
{
	turb *t[16];
	bool ok = true;
	*got = 0;
	for (size_t i = 0; i < n; i++)
		t[i] = bulk(d, UW_DIR_IN, sizes[i], 0, NULL);
	for (size_t i = 0; i < n; i++) {
		ok = ok && wait_for(t[i]) && t[i]->u.status == 0;
		memcpy(dst + *got, t[i]->buf, t[i]->u.actual);
		*got += t[i]->u.actual;
	}
	return ok;
}

/* ---- Constructor -------------------------------------------------------------------------- */

struct logbuf {
	char lines[16][256];
	int n;
};

static void log_line(void *user, int level, const char *line)
{
	struct logbuf *b = user;
	(void)level;
	if (b->n < 16)
		snprintf(b->lines[b->n++], sizeof b->lines[0], "%s", line);
}

static char dir_path[64];

static void make_file(const char *name, size_t size, mode_t mode, char *path, size_t cap)
{
	snprintf(path, cap, "%s/%s", dir_path, name);
	int fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, (off_t)size) != 0)
		abort();
	uint8_t *b = malloc(size ? size : 1);
	for (size_t i = 0; i < size; i++)
		b[i] = pattern(i);
	if (pwrite(fd, b, size, 0) != (ssize_t)size)
		abort();
	free(b);
	close(fd);
	chmod(path, mode);
}

/* Runs uw_emu_create(spec) in a child that has dropped to uid/gid 65534, and returns its result
 * and error text. For the rows that need a user who cannot write everything. */
static int create_as_nobody(const char *spec, uw_loop *l, char *err, size_t errlen)
{
	int fds[2];
	if (pipe(fds) < 0)
		return UW_E_IO;
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		char e[400] = "";
		int r = UW_E_ACCESS;
		if (setresgid(65534, 65534, 65534) == 0 && setresuid(65534, 65534, 65534) == 0) {
			uw_dev *d = NULL;
			r = uw_emu_create(spec, "1-1", 99, 1, l, NULL, &d, e, sizeof e);
			if (d)
				d->ops->destroy(d);
		} else {
			snprintf(e, sizeof e, "cannot drop privileges");
		}
		if (write(fds[1], &r, sizeof r) != (ssize_t)sizeof r ||
		    write(fds[1], e, strlen(e) + 1) < 0)
			_exit(2);
		_exit(0);
	}
	close(fds[1]);
	int r = UW_E_IO;
	ssize_t n = read(fds[0], &r, sizeof r);
	ssize_t k = n == (ssize_t)sizeof r ? read(fds[0], err, errlen - 1) : 0;
	err[k > 0 ? k : 0] = '\0';
	close(fds[0]);
	waitpid(pid, NULL, 0);
	return n == (ssize_t)sizeof r ? r : UW_E_IO;
}

/* fmt with its "%s" (if any) replaced by file. */
static void subst(char *out, size_t cap, const char *fmt, const char *file)
{
	const char *p = strstr(fmt, "%s");
	if (!p || !file) {
		snprintf(out, cap, "%s", fmt);
		return;
	}
	snprintf(out, cap, "%.*s%s%s", (int)(p - fmt), fmt, file, p + 2);
}

static void test_ctor(void)
{
	char empty[128], tiny[128], tail[128], ro_file[128], spec[300];
	make_file("empty.img", 0, 0644, empty, sizeof empty);
	make_file("tiny.img", 100, 0644, tiny, sizeof tiny);
	make_file("tail.img", 1000, 0644, tail, sizeof tail);
	make_file("ro.img", 4096, 0444, ro_file, sizeof ro_file);
	struct {
		const char *spec;
		const char *file; /* substituted for %s */
		const char *err;  /* exact message, %s = the path; NULL: success */
	} rows[] = {
	    {"emu:storage", NULL,
	     "emu:storage: missing file=IMG (usage: emu:storage,file=IMG[,ro])"},
	    {"emu:storage,file=/nonexistent/x.img", NULL,
	     "emu:storage: cannot open \"/nonexistent/x.img\": No such file or directory"},
	    {"emu:storage,file=/nonexistent/x.img,ro", NULL,
	     "emu:storage: cannot open \"/nonexistent/x.img\": No such file or directory"},
	    {"emu:storage,file=%s", empty,
	     "emu:storage: \"%s\" is empty (a disk image needs at least 512 bytes)"},
	    {"emu:storage,file=%s,ro", tiny,
	     "emu:storage: \"%s\" is too small (100 bytes; at least 512)"},
	    {"emu:storage,file=%s", dir_path, "emu:storage: cannot open \"%s\": Is a directory"},
	    {"emu:storage,file=%s,ro", dir_path,
	     "emu:storage: \"%s\" is not a regular file or block device"},
	    {"emu:storage,file=%s,ro=yes", tail, "emu:storage: option \"ro\" takes no value"},
	    {"emu:storage,file=%s,size=1G", tail,
	     "emu:storage: unknown option \"size\" (allowed: file, ro)"},
	    {"emu:storage,file=%s", ro_file,
	     "emu:storage: cannot open \"%s\" for writing: Permission denied (add ,ro to export it "
	     "read-only)"},
	    {"emu:storage,file=%s,ro", ro_file, NULL},
	    {"emu:storage,file=%s", tail, NULL},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char want[400] = "", err[400] = "";
		subst(spec, sizeof spec, rows[i].spec, rows[i].file);
		if (rows[i].err)
			subst(want, sizeof want, rows[i].err, rows[i].file);
		if (rows[i].file == ro_file && rows[i].err && geteuid() == 0) {
			/* Root may write anything: ask as an unprivileged user, in a child. */
			char got[400] = "";
			int r = create_as_nobody(spec, loop, got, sizeof got);
			if (!t_ok(r < 0 && strcmp(got, want) == 0, "create %s as nobody: %s", spec,
			          want))
				t_diag("got %d \"%s\"", r, got);
			continue;
		}
		struct logbuf lb = {0};
		uw_logger lg = {.fn = log_line, .user = &lb, .level = UW_LOG_DEBUG};
		uw_dev *d = NULL;
		int r = uw_emu_create(spec, "1-1", 99, 1, loop, &lg, &d, err, sizeof err);
		bool ok = rows[i].err ? r < 0 && !d && strcmp(err, want) == 0 : r == UW_OK && d;
		if (!t_ok(ok, "create %s: %s", spec, rows[i].err ? want : "ok"))
			t_diag("got %d \"%s\"", r, err);
		if (d && rows[i].file == tail) {
			bool warned = false;
			for (int k = 0; k < lb.n; k++)
				warned =
				    warned || strstr(lb.lines[k], "the last 488 bytes are ignored");
			t_ok(warned, "a size not a multiple of 512 is logged");
		}
		if (d)
			d->ops->destroy(d);
	}
}

/* ---- Enumeration and class requests ------------------------------------------------------- */

static void utf16_to_ascii(const uint8_t *d, size_t len, char *out, size_t cap)
{
	size_t n = 0;
	for (size_t i = 2; i + 1 < len && n + 1 < cap; i += 2)
		out[n++] = d[i + 1] ? '?' : (char)d[i];
	out[n] = '\0';
}

static void test_enumerate(uw_dev *d)
{
	struct ctl c = ctrl(d, 0x80, 6, 0x0100, 0, 18);
	uw_device_desc dd;
	t_ok(c.status == 0 && c.actual == 18 &&
	         uw_device_desc_parse(c.data, 18, &dd, NULL) == UW_OK && dd.bcd_usb == 0x0200 &&
	         dd.max_packet_size0 == 64 && dd.num_configurations == 1 && dd.i_serial_number != 0,
	     "device descriptor valid");
	c = ctrl(d, 0x80, 6, 0x0200, 0, 255);
	uw_config_desc cd;
	bool ok = c.status == 0 && c.actual == 32 &&
	          uw_config_check(c.data, c.actual, &cd, NULL) == UW_OK && cd.num_interfaces == 1;
	/* interface 0: 8/6/0x50, two bulk endpoints of 512 */
	ok = ok && c.data[9 + 5] == 0x08 && c.data[9 + 6] == 0x06 && c.data[9 + 7] == 0x50 &&
	     c.data[9 + 4] == 2;
	ok = ok && c.data[18 + 2] == 0x81 && c.data[18 + 3] == 2 && c.data[18 + 4] == 0x00 &&
	     c.data[18 + 5] == 0x02;
	ok = ok && c.data[25 + 2] == 0x02 && c.data[25 + 3] == 2 && c.data[25 + 5] == 0x02;
	t_ok(ok, "configuration: mass storage, bulk-only, bulk 0x81 and 0x02 of 512");

	static const struct {
		uint8_t index;
		const char *want; /* NULL: the serial, >= 12 hex digits */
	} strs[] = {{1, "usbwire"}, {2, "usbwire Mass Storage"}, {3, NULL}};
	for (size_t i = 0; i < 3; i++) {
		char s[128];
		c = ctrl(d, 0x80, 6, (uint16_t)(0x0300 | strs[i].index), 0x0409, 255);
		utf16_to_ascii(c.data, c.actual, s, sizeof s);
		ok = c.status == 0;
		if (strs[i].want) {
			ok = ok && strcmp(s, strs[i].want) == 0;
		} else {
			ok = ok && strlen(s) >= 12;
			for (size_t k = 0; s[k]; k++)
				ok = ok && strchr("0123456789ABCDEF", s[k]);
		}
		t_ok(ok, "string %u: \"%s\"", strs[i].index, s);
	}
	t_ok(strcmp(d->name, "usbwire Mass Storage") == 0, "device name: %s", d->name);
	t_ok(d->info.speed == UW_SPEED_HIGH && d->info.num_configurations == 1,
	     "high speed, one configuration");

	t_ok(d->ops->ep_type(d, EP_IN, UW_DIR_IN) == UW_XFER_UNKNOWN,
	     "no bulk endpoints before SET_CONFIGURATION");
	c = ctrl(d, 0x00, 9, 1, 0, 0);
	t_ok(c.status == 0 && c.completions == 1, "SET_CONFIGURATION 1");
	t_ok(d->ops->ep_type(d, EP_IN, UW_DIR_IN) == UW_XFER_BULK &&
	         d->ops->ep_type(d, EP_OUT, UW_DIR_OUT) == UW_XFER_BULK &&
	         d->ops->ep_type(d, EP_IN, UW_DIR_OUT) == UW_XFER_UNKNOWN,
	     "bulk IN 1 and bulk OUT 2");
	t_ok(d->info.device_class == 0 && d->info.num_interfaces == 1 &&
	         d->ifaces[0].iface_class == 8 && d->ifaces[0].iface_subclass == 6 &&
	         d->ifaces[0].iface_protocol == 0x50,
	     "device record shows 8/6/0x50");

	/* Class requests. */
	c = ctrl(d, 0xa1, 0xfe, 0, 0, 1);
	t_ok(c.status == 0 && c.actual == 1 && c.data[0] == 0, "Get Max LUN: 0");
	c = ctrl(d, 0x21, 0xff, 0, 0, 0);
	t_ok(c.status == 0 && c.completions == 1, "Bulk-Only Mass Storage Reset");
	c = ctrl(d, 0xa1, 0xfe, 0, 1, 1);
	t_ok(c.status == UW_URB_EPIPE, "Get Max LUN to interface 1 stalls");
	c = ctrl(d, 0x21, 0xff, 1, 0, 0);
	t_ok(c.status == UW_URB_EPIPE, "reset with wValue 1 stalls");
	c = ctrl(d, 0xa1, 0x01, 0, 0, 4);
	t_ok(c.status == UW_URB_EPIPE, "unknown class request stalls");
}

/* ---- Full cycles ------------------------------------------------------------------------- */

static void test_inquiry(uw_dev *d)
{
	const uint8_t inq[6] = {0x12, 0, 0, 0, 36, 0};
	uint32_t tag = send_cbw(d, 36, true, inq, 6);
	turb *t = bulk(d, UW_DIR_IN, 36, 0, NULL);
	t_ok(wait_for(t) && t->u.status == 0 && t->u.actual == 36 && t->buf[1] == 0x80 &&
	         memcmp(t->buf + 8, "usbwire ", 8) == 0,
	     "INQUIRY data stage: 36 bytes, removable, vendor usbwire");
	read_csw(d, tag, 0, 0, "INQUIRY");

	/* The host allows 96 bytes; the device has 36: a short data stage, residue 60. */
	const uint8_t inq96[6] = {0x12, 0, 0, 0, 96, 0};
	tag = send_cbw(d, 96, true, inq96, 6);
	t = bulk(d, UW_DIR_IN, 96, 0, NULL);
	t_ok(wait_for(t) && t->u.status == 0 && t->u.actual == 36, "short data-in: 36 of 96");
	read_csw(d, tag, 60, 0, "short INQUIRY");

	/* The same with SHORT_NOT_OK: the host controller's -EREMOTEIO. */
	tag = send_cbw(d, 96, true, inq96, 6);
	t = bulk(d, UW_DIR_IN, 96, UW_URB_SHORT_NOT_OK, NULL);
	t_ok(wait_for(t) && t->u.status == UW_URB_EREMOTEIO && t->u.actual == 36,
	     "short data-in with SHORT_NOT_OK: -EREMOTEIO, 36 bytes");
	read_csw(d, tag, 60, 0, "short INQUIRY, SHORT_NOT_OK");

	/* The CSW URB queued before the CBW arrives (no data stage). */
	turb *csw = bulk(d, UW_DIR_IN, 13, 0, NULL);
	const uint8_t tur[6] = {0};
	t_ok(csw->completions == 0, "an early CSW read waits");
	tag = send_cbw(d, 0, false, tur, 6);
	t_ok(wait_for(csw) && csw->u.actual == 13 && le32(csw->buf + 4) == tag && csw->buf[12] == 0,
	     "the queued CSW read gets TEST UNIT READY's CSW");

	/* A CSW read of 512 bytes gets 13. */
	tag = send_cbw(d, 0, false, tur, 6);
	t = bulk(d, UW_DIR_IN, 512, 0, NULL);
	t_ok(wait_for(t) && t->u.status == 0 && t->u.actual == 13 && le32(t->buf + 4) == tag,
	     "CSW into a 512-byte URB: 13 bytes");
}

static void test_read_write(uw_dev *d, int fd)
{
	/* READ(10) of 300 blocks at LBA 1000 in URBs of odd sizes, all queued at once. */
	const uint32_t total = 300 * 512;
	const uint32_t sizes[] = {1000, 65536, 4097, 512, total - 1000 - 65536 - 4097 - 512};
	uint8_t *got = malloc(total), c[10];
	uint32_t n;
	cdb10(c, 0x28, 1000, 300);
	uint32_t tag = send_cbw(d, total, true, c, 10);
	bool ok = run_data_in(d, sizes, 5, got, &n) && n == total;
	for (uint32_t i = 0; ok && i < total; i++)
		ok = got[i] == pattern(1000 * 512 + i);
	t_ok(ok, "READ(10) 300 blocks over 5 odd URBs returns the image");
	read_csw(d, tag, 0, 0, "READ(10)");

	/* READ(10) of 240 KiB in one URB, as Linux sends it. */
	const uint32_t big = 480 * 512;
	uint8_t *bigbuf = malloc(big);
	cdb10(c, 0x28, 0, 480);
	tag = send_cbw(d, big, true, c, 10);
	ok = run_data_in(d, &big, 1, bigbuf, &n) && n == big;
	for (uint32_t i = 0; ok && i < big; i++)
		ok = bigbuf[i] == pattern(i);
	t_ok(ok, "READ(10) 240 KiB in one URB");
	read_csw(d, tag, 0, 0, "READ(10) 240 KiB");
	free(bigbuf);

	/* WRITE(10) of 100 blocks at LBA 50 over odd URBs, one at a time. */
	const uint32_t wtotal = 100 * 512;
	uint8_t *data = malloc(wtotal);
	for (uint32_t i = 0; i < wtotal; i++)
		data[i] = (uint8_t)(i * 31 + 7);
	cdb10(c, 0x2a, 50, 100);
	tag = send_cbw(d, wtotal, false, c, 10);
	const uint32_t wsizes[] = {31, 4096, 13, 20000, wtotal - 31 - 4096 - 13 - 20000};
	uint32_t off = 0;
	ok = true;
	for (size_t i = 0; i < 5; i++) {
		turb *t = bulk(d, UW_DIR_OUT, wsizes[i], 0, data + off);
		ok = ok && wait_for(t) && t->u.status == 0 && t->u.actual == wsizes[i];
		off += wsizes[i];
	}
	t_ok(ok, "WRITE(10) data stage over 5 odd URBs (31 and 13 bytes among them)");
	read_csw(d, tag, 0, 0, "WRITE(10)");
	uint8_t *file = malloc(wtotal);
	t_ok(pread(fd, file, wtotal, 50 * 512) == (ssize_t)wtotal &&
	         memcmp(file, data, wtotal) == 0,
	     "the written bytes are in the file");

	/* And back through READ(10). */
	cdb10(c, 0x28, 50, 100);
	tag = send_cbw(d, wtotal, true, c, 10);
	ok = run_data_in(d, &wtotal, 1, got, &n) && n == wtotal && memcmp(got, data, wtotal) == 0;
	t_ok(ok, "READ(10) reads them back");
	read_csw(d, tag, 0, 0, "READ(10) back");

	/* SYNCHRONIZE CACHE. */
	const uint8_t sc[10] = {0x35};
	tag = send_cbw(d, 0, false, sc, 10);
	read_csw(d, tag, 0, 0, "SYNCHRONIZE CACHE(10)");
	free(got);
	free(data);
	free(file);
}

/* The host's and the device's ideas of the data stage disagree (BOT 1.0 6.7). */
static void test_cases(uw_dev *d)
{
	uint8_t c[10];
	const uint8_t tur[6] = {0};

	/* Case 4, Hi > Dn: a zero-length data stage, residue = all of it. */
	uint32_t tag = send_cbw(d, 512, true, tur, 6);
	turb *t = bulk(d, UW_DIR_IN, 512, 0, NULL);
	t_ok(wait_for(t) && t->u.status == 0 && t->u.actual == 0, "case 4: zero-length data in");
	read_csw(d, tag, 512, 0, "case 4 (Hi > Dn)");

	/* Case 2, Hn < Di: phase error. */
	cdb10(c, 0x28, 0, 1);
	tag = send_cbw(d, 0, true, c, 10);
	read_csw(d, tag, 0, 2, "case 2 (Hn < Di)");

	/* Case 3, Hn < Do: phase error. */
	cdb10(c, 0x2a, 0, 1);
	tag = send_cbw(d, 0, false, c, 10);
	read_csw(d, tag, 0, 2, "case 3 (Hn < Do)");

	/* Case 7, Hi < Di: the host's 512 bytes, then phase error. */
	cdb10(c, 0x28, 0, 2);
	tag = send_cbw(d, 512, true, c, 10);
	t = bulk(d, UW_DIR_IN, 512, 0, NULL);
	t_ok(wait_for(t) && t->u.status == 0 && t->u.actual == 512 && t->buf[1] == pattern(1),
	     "case 7: 512 bytes of data in");
	read_csw(d, tag, 0, 2, "case 7 (Hi < Di)");

	/* Case 8, Hi <> Do: bulk IN stalls; after CLEAR_FEATURE the CSW says phase error. */
	cdb10(c, 0x2a, 0, 1);
	tag = send_cbw(d, 512, true, c, 10);
	t = bulk(d, UW_DIR_IN, 512, 0, NULL);
	t_ok(t->completions == 1 && t->u.status == UW_URB_EPIPE, "case 8: data in stalls");
	t_ok(halted(d, 0x81), "case 8: bulk IN halted");
	t_ok(clear_halt(d, 0x81) && !halted(d, 0x81), "case 8: CLEAR_FEATURE(HALT) on IN");
	read_csw(d, tag, 512, 2, "case 8 (Hi <> Do)");

	/* Case 10, Ho <> Di: bulk OUT stalls. */
	cdb10(c, 0x28, 0, 1);
	tag = send_cbw(d, 512, false, c, 10);
	uint8_t zeros[512] = {0};
	t = bulk(d, UW_DIR_OUT, 512, 0, zeros);
	t_ok(t->completions == 1 && t->u.status == UW_URB_EPIPE && halted(d, 0x02),
	     "case 10: data out stalls");
	t_ok(clear_halt(d, 0x02), "case 10: CLEAR_FEATURE(HALT) on OUT");
	read_csw(d, tag, 512, 2, "case 10 (Ho <> Di)");

	/* Case 9, Ho > Dn: the data is taken and dropped; residue = all of it. */
	tag = send_cbw(d, 100, false, tur, 6);
	t = bulk(d, UW_DIR_OUT, 100, 0, zeros);
	t_ok(wait_for(t) && t->u.status == 0 && t->u.actual == 100, "case 9: data out taken");
	read_csw(d, tag, 100, 0, "case 9 (Ho > Dn)");

	/* Case 11, Ho > Do: one block written, the rest dropped. */
	uint8_t two[1024];
	memset(two, 0x77, sizeof two);
	cdb10(c, 0x2a, 1, 1);
	tag = send_cbw(d, 1024, false, c, 10);
	t = bulk(d, UW_DIR_OUT, 1024, 0, two);
	t_ok(wait_for(t) && t->u.status == 0 && t->u.actual == 1024, "case 11: data out taken");
	read_csw(d, tag, 512, 0, "case 11 (Ho > Do)");

	/* Case 13, Ho < Do: what the host sends, then phase error. */
	cdb10(c, 0x2a, 2, 2);
	tag = send_cbw(d, 512, false, c, 10);
	t = bulk(d, UW_DIR_OUT, 512, 0, two);
	t_ok(wait_for(t) && t->u.status == 0 && t->u.actual == 512, "case 13: data out taken");
	read_csw(d, tag, 0, 2, "case 13 (Ho < Do)");

	/* Case 5 with a failed command: out of range, zero-length data, status 1. */
	cdb10(c, 0x28, BLOCKS, 1);
	tag = send_cbw(d, 512, true, c, 10);
	t = bulk(d, UW_DIR_IN, 512, 0, NULL);
	t_ok(wait_for(t) && t->u.status == 0 && t->u.actual == 0, "failed READ: empty data stage");
	read_csw(d, tag, 512, 1, "READ(10) past the end");
	const uint8_t rs[6] = {0x03, 0, 0, 0, 18, 0};
	tag = send_cbw(d, 18, true, rs, 6);
	t = bulk(d, UW_DIR_IN, 18, 0, NULL);
	t_ok(wait_for(t) && t->u.actual == 18 && t->buf[2] == 0x05 && t->buf[12] == 0x21,
	     "REQUEST SENSE: ILLEGAL REQUEST / LBA OUT OF RANGE");
	read_csw(d, tag, 0, 0, "REQUEST SENSE");

	/* Data stage ending exactly at a URB boundary: the next URB gets a zero-length packet. */
	const uint8_t inq[6] = {0x12, 0, 0, 0, 200, 0};
	tag = send_cbw(d, 72, true, inq, 6);
	turb *a = bulk(d, UW_DIR_IN, 36, 0, NULL), *b = bulk(d, UW_DIR_IN, 36, 0, NULL);
	t_ok(wait_for(a) && wait_for(b) && a->u.actual == 36 && b->u.actual == 0 &&
	         b->u.status == 0,
	     "36 bytes fill the first URB, the second gets a zero-length packet");
	read_csw(d, tag, 36, 0, "INQUIRY ending at a URB boundary");

	/* A scatter-gather host with SHORT_NOT_OK (one URB per sg entry, all queued): the URBs
	 * queued after the short one end empty instead of taking the CSW. */
	cdb10(c, 0x28, 3, 1);
	tag = send_cbw(d, 2048, true, c, 10);
	a = bulk(d, UW_DIR_IN, 1024, UW_URB_SHORT_NOT_OK, NULL);
	b = bulk(d, UW_DIR_IN, 1024, UW_URB_SHORT_NOT_OK, NULL);
	t_ok(wait_for(a) && wait_for(b) && a->u.status == UW_URB_EREMOTEIO && a->u.actual == 512 &&
	         b->u.status == UW_URB_EREMOTEIO && b->u.actual == 0,
	     "short sg data in: the rest of the queue ends empty, not with the CSW");
	read_csw(d, tag, 1536, 0, "short sg READ(10)");

	/* The LUN of a CBW must be 0. */
	uint8_t cbw[31] = {0};
	put_le32(cbw, 0x43425355);
	put_le32(cbw + 4, 0xabcd);
	cbw[13] = 1;
	cbw[14] = 6;
	t = bulk(d, UW_DIR_OUT, 31, 0, cbw);
	t_ok(t->u.status == 0, "CBW for LUN 1 taken");
	read_csw(d, 0xabcd, 0, 1, "LUN 1 fails");
}

static void test_invalid_cbw(uw_dev *d)
{
	static const struct {
		const char *name;
		uint32_t len;
		uint32_t sig;
		uint8_t cblen;
	} rows[] = {
	    {"30-byte CBW", 30, 0x43425355, 6},   {"32-byte CBW", 32, 0x43425355, 6},
	    {"bad signature", 31, 0x43425356, 6}, {"CB length 0", 31, 0x43425355, 0},
	    {"CB length 17", 31, 0x43425355, 17},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		uint8_t b[32] = {0};
		put_le32(b, rows[i].sig);
		b[14] = rows[i].cblen;
		turb *csw = bulk(d, UW_DIR_IN, 13, 0, NULL); /* queued early, then stalled */
		turb *t = bulk(d, UW_DIR_OUT, rows[i].len, 0, b);
		bool ok = t->completions == 1 && t->u.status == 0;
		ok = ok && csw->completions == 1 && csw->u.status == UW_URB_EPIPE;
		ok = ok && halted(d, 0x81) && halted(d, 0x02);
		turb *in = bulk(d, UW_DIR_IN, 13, 0, NULL);
		turb *out = bulk(d, UW_DIR_OUT, 31, 0, b);
		ok = ok && in->u.status == UW_URB_EPIPE && out->u.status == UW_URB_EPIPE;
		t_ok(ok, "%s: both bulk endpoints stall", rows[i].name);
		/* Clearing the halts without the class reset does not help. */
		t_ok(clear_halt(d, 0x81) && clear_halt(d, 0x02) && halted(d, 0x81) &&
		         halted(d, 0x02),
		     "%s: still stalled without the class reset", rows[i].name);
		/* Reset Recovery: class reset, then CLEAR_FEATURE on both. */
		t_ok(ctrl(d, 0x21, 0xff, 0, 0, 0).status == 0 && halted(d, 0x81),
		     "%s: the class reset leaves the halts", rows[i].name);
		t_ok(clear_halt(d, 0x81) && clear_halt(d, 0x02) && !halted(d, 0x81) &&
		         !halted(d, 0x02),
		     "%s: Reset Recovery clears them", rows[i].name);
		const uint8_t tur[6] = {0};
		uint32_t tag = send_cbw(d, 0, false, tur, 6);
		read_csw(d, tag, 0, 0, "after Reset Recovery");
	}
}

/* A host that submits from inside a completion (the next bulk IN as the READ's data comes back)
 * while further commands are queued: each command still runs after the one before, every URB
 * completes once, and each status IN carries its own command's CSW. */
static void test_reentrant_completion(uw_dev *d, int fd)
{
	uint8_t c[10], cbw_w[31] = {0}, wdata[512];
	cdb10(c, 0x28, 3, 1);
	uint32_t tag_r = send_cbw(d, 512, true, c, 10);
	turb *data = bulk(d, UW_DIR_IN, 512, 0, NULL);
	turb *csw_r = bulk(d, UW_DIR_IN, 13, 0, NULL);
	uint32_t tag_w = next_tag++;
	put_le32(cbw_w, 0x43425355);
	put_le32(cbw_w + 4, tag_w);
	put_le32(cbw_w + 8, 512);
	cbw_w[14] = 10;
	cdb10(cbw_w + 15, 0x2a, 9, 1);
	cbw_w[16] = 0x08; /* FUA: the WRITE ends with a sync job */
	turb *cmd_w = bulk(d, UW_DIR_OUT, 31, 0, cbw_w);
	memset(wdata, 0xc3, sizeof wdata);
	turb *out = bulk(d, UW_DIR_OUT, 512, 0, wdata);
	turb *csw_w = turb_new(EP_IN, UW_DIR_IN, UW_XFER_BULK, 13, 0);
	reenter_dev = d;
	reenter_after = data;
	reenter_next = csw_w;
	bool done = wait_for(data) && wait_for(csw_r) && wait_for(cmd_w) && wait_for(out) &&
	            wait_for(csw_w);
	reenter_dev = NULL;
	t_ok(done,
	     "re-entrant submit: every URB completes (data %d, READ CSW %d, CBW %d, data out "
	     "%d, WRITE CSW %d)",
	     data->completions, csw_r->completions, cmd_w->completions, out->completions,
	     csw_w->completions);
	uint8_t disk[512];
	t_ok(data->u.status == 0 && data->u.actual == 512 && pread(fd, disk, 512, 3 * 512) == 512 &&
	         memcmp(disk, data->buf, 512) == 0,
	     "re-entrant submit: the READ's data");
	t_ok(csw_r->u.status == 0 && csw_r->u.actual == 13 && le32(csw_r->buf + 4) == tag_r &&
	         csw_r->buf[12] == 0,
	     "re-entrant submit: the IN after the data carries the READ's CSW (%d bytes, tag "
	     "%08x)",
	     csw_r->u.actual, le32(csw_r->buf + 4));
	t_ok(out->u.status == 0 && out->u.actual == 512, "re-entrant submit: the WRITE's data");
	t_ok(csw_w->u.status == 0 && csw_w->u.actual == 13 && le32(csw_w->buf + 4) == tag_w &&
	         csw_w->buf[12] == 0,
	     "re-entrant submit: the next IN carries the WRITE's CSW (%d bytes, tag %08x)",
	     csw_w->u.actual, le32(csw_w->buf + 4));
	t_ok(pread(fd, disk, 512, 9 * 512) == 512 && memcmp(disk, wdata, 512) == 0,
	     "re-entrant submit: block 9 holds the data written");
}

static void test_cancel(uw_dev *d)
{
	/* A queued bulk IN URB (no command) is cancelled exactly once. */
	turb *t = bulk(d, UW_DIR_IN, 13, 0, NULL);
	t_ok(t->completions == 0, "a bulk IN URB without a command waits");
	d->ops->cancel(d, &t->u);
	t_ok(t->completions == 1 && t->u.status == UW_URB_ECONNRESET && t->u.actual == 0,
	     "cancel completes it with -ECONNRESET");
	d->ops->cancel(d, &t->u);
	t_ok(t->completions == 1, "cancel again: nothing more");

	/* Cancel a data URB while the worker reads into it: it completes once, when the worker
	 * is done with the buffer. */
	uint8_t c[10];
	cdb10(c, 0x28, 0, 64);
	uint32_t tag = send_cbw(d, 64 * 512, true, c, 10);
	t = bulk(d, UW_DIR_IN, 64 * 512, 0, NULL);
	d->ops->cancel(d, &t->u);
	t_ok(t->completions == 0, "cancel of the URB under I/O waits for the worker");
	t_ok(wait_for(t) && t->completions == 1 && t->u.status == UW_URB_ECONNRESET,
	     "then completes it with -ECONNRESET");
	read_csw(d, tag, 0, 0, "READ with a cancelled URB");

	/* Reset Recovery while I/O is in flight. */
	cdb10(c, 0x28, 0, 64);
	send_cbw(d, 64 * 512, true, c, 10);
	t = bulk(d, UW_DIR_IN, 64 * 512, 0, NULL);
	t_ok(ctrl(d, 0x21, 0xff, 0, 0, 0).status == 0, "class reset during a READ");
	t_ok(wait_for(t) && t->completions == 1, "the URB under I/O still completes once");
	const uint8_t tur[6] = {0};
	tag = send_cbw(d, 0, false, tur, 6);
	read_csw(d, tag, 0, 0, "TEST UNIT READY after the reset");
}

/* Session end and destroy with URBs held and I/O in flight. */
static void test_teardown(uw_dev *d)
{
	turb *q = bulk(d, UW_DIR_IN, 13, 0, NULL);
	d->ops->release(d);
	t_ok(q->completions == 1 && q->u.status == UW_URB_ESHUTDOWN,
	     "release: a held URB ends with -ESHUTDOWN");
	run_for(20);
	t_ok(d->ops->import(d) == UW_OK, "import again");
	t_ok(ctrl(d, 0x00, 9, 1, 0, 0).status == 0, "SET_CONFIGURATION 1");
	const uint8_t tur[6] = {0};
	uint32_t tag = send_cbw(d, 0, false, tur, 6);
	read_csw(d, tag, 0, 0, "a new session works");

	/* SET_CONFIGURATION 0 with a data URB under I/O. */
	uint8_t c[10];
	cdb10(c, 0x28, 0, 128);
	send_cbw(d, 128 * 512, true, c, 10);
	turb *t = bulk(d, UW_DIR_IN, 128 * 512, 0, NULL);
	t_ok(ctrl(d, 0x00, 9, 0, 0, 0).status == 0, "SET_CONFIGURATION 0 during a READ");
	t_ok(wait_for(t) && t->completions == 1 && t->u.status == UW_URB_ESHUTDOWN,
	     "the URB under I/O ends with -ESHUTDOWN once the worker is done");
	t_ok(ctrl(d, 0x00, 9, 1, 0, 0).status == 0, "SET_CONFIGURATION 1");

	/* Destroy with I/O in flight: joined, completed once. */
	cdb10(c, 0x28, 0, 128);
	send_cbw(d, 128 * 512, true, c, 10);
	t = bulk(d, UW_DIR_IN, 128 * 512, 0, NULL);
	d->ops->destroy(d);
	t_ok(t->completions == 1 && t->u.status == UW_URB_ESHUTDOWN,
	     "destroy during a READ: the URB ends with -ESHUTDOWN");
}

int main(void)
{
	snprintf(dir_path, sizeof dir_path, "/tmp/test_storage.XXXXXX");
	if (!mkdtemp(dir_path) || chmod(dir_path, 0755) < 0 || !(loop = uw_loop_new())) {
		t_ok(false, "set-up");
		return t_done();
	}
	test_ctor();

	char img[128], spec[300], err[256] = "";
	make_file("disk.img", BLOCKS * 512, 0644, img, sizeof img);
	int fd = open(img, O_RDONLY);
	snprintf(spec, sizeof spec, "emu:storage,file=%s", img);
	uw_dev *d = NULL;
	int r = uw_emu_create(spec, "1-1", 99, 1, loop, NULL, &d, err, sizeof err);
	if (!t_ok(r == UW_OK && d, "create %s", spec)) {
		t_diag("%s", err);
		return t_done();
	}
	t_ok(d->ops->import(d) == UW_OK, "import");
	test_enumerate(d);
	test_inquiry(d);
	test_read_write(d, fd);
	test_cases(d);
	test_invalid_cbw(d);
	test_reentrant_completion(d, fd);
	test_cancel(d);
	test_teardown(d); /* destroys d */

	int n = 0, bad = 0;
	for (turb *t = all_urbs; t; t = t->next) {
		n++;
		if (t->completions != 1)
			bad++;
	}
	t_ok(bad == 0, "every one of %d URBs completed exactly once (%d did not)", n, bad);
	while (all_urbs) {
		turb *t = all_urbs;
		all_urbs = t->next;
		free(t->buf);
		free(t);
	}
	close(fd);
	uw_loop_free(loop);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir_path);
	if (system(cmd) != 0)
		t_diag("could not remove %s", dir_path);
	return t_done();
}
