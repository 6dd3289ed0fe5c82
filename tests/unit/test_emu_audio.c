/* SPDX-License-Identifier: MIT */
/*
 * test_emu_audio.c - emu:audio driven through its uw_dev ops on a uw_loop, no server: the UAC1
 * descriptors as snd-usb-audio reads them, the sampling frequency requests, paced isochronous
 * streaming both ways (the ramp across URBs, the sine, a looping input file, an output file),
 * cancel, altsetting 0 and deconfiguration with URBs held, bad packet arrays, bad options.
 * Every URB counts its completions: each must complete exactly once. Timings are only checked
 * from below (a URB never completes before its frames have elapsed): how much later it completes
 * depends on the machine's load, and a URB that never completes fails its wait.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "uw_emu.h"
#include "uw_test.h"
#include "uw_turb.h"
#include "uw_usbdesc.h"

#define FRAME     4u   /* bytes: S16_LE stereo */
#define PKT       192u /* 48 frames, one 1 ms frame */
#define PKT_FRAMS 48u

/* ---- URBs and completions ------------------------------------------------------------------ */

/* An isochronous URB of n packets of pktlen bytes each, stride bytes apart (the buffer is
 * stride x n, filled with 0xee so that untouched bytes show). */
static turb *iso_new(uint8_t ep, uint8_t dir, uint32_t n, uint32_t pktlen, uint32_t stride)
{
	turb *t = turb_new(ep, dir, UW_XFER_ISO, n * stride);
	if (t->buf)
		memset(t->buf, 0xee, n * stride);
	t->iso = calloc(n ? n : 1, sizeof *t->iso);
	for (uint32_t i = 0; i < n; i++)
		t->iso[i] = (uw_iso_pkt){i * stride, pktlen, 0, 7};
	t->u.iso = t->iso;
	t->u.num_iso = n;
	return t;
}

static turb *mic_urb(uint32_t n)
{
	return iso_new(2, UW_DIR_IN, n, PKT, PKT);
}

/* Every packet status 0 and actual_length want, the URB's actual their sum. */
static bool iso_ok(const turb *t, uint32_t want)
{
	uint32_t sum = 0;
	for (uint32_t i = 0; i < t->u.num_iso; i++) {
		if (t->iso[i].status != 0 || t->iso[i].actual_length != want)
			return false;
		sum += t->iso[i].actual_length;
	}
	return t->completions == 1 && t->u.status == 0 && t->u.actual == sum;
}

struct ctl {
	int32_t status;
	uint32_t actual;
	int completions;
	uint8_t data[1024];
};

/* One control transfer; it must complete inside submit(). */
static struct ctl ctrl(uw_dev *d, uint8_t rt, uint8_t req, uint16_t val, uint16_t idx, uint16_t len,
                       const void *out)
{
	struct ctl c = {.status = 12345};
	turb *t = turb_new(0, (rt & 0x80) ? UW_DIR_IN : UW_DIR_OUT, UW_XFER_CONTROL, len);
	t->u.setup = (uw_setup){rt, req, val, idx, len};
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

static bool set_interface(uw_dev *d, uint16_t iface, uint16_t alt)
{
	struct ctl c = ctrl(d, 0x01, 11, alt, iface, 0, NULL);
	return c.completions == 1 && c.status == 0;
}

static bool set_config(uw_dev *d, uint16_t v)
{
	struct ctl c = ctrl(d, 0x00, 9, v, 0, 0, NULL);
	return c.completions == 1 && c.status == 0;
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

/* Run the loop until turb_done_total reaches want; the bound (at least a minute) is a safety
 * net, not a measurement. */
static bool run_until(uw_loop *l, int want)
{
	for (int i = 0; i < 12000 && turb_done_total < want; i++)
		run_for(l, 5);
	return turb_done_total >= want;
}

static uw_dev *create(const char *spec, uw_loop *l)
{
	uw_dev *d = NULL;
	char err[256] = "";
	int r = uw_emu_create(spec, "99-1", 99, 1, l, NULL, &d, err, sizeof err);
	if (!t_ok(r == UW_OK && d, "create %s", spec))
		t_diag("%s: %s", uw_strerror(r), err);
	return d;
}

/* Created, imported, configured. */
static uw_dev *open_dev(const char *spec, uw_loop *l)
{
	uw_dev *d = create(spec, l);
	if (d && (d->ops->import(d) != UW_OK || !set_config(d, 1))) {
		t_ok(false, "%s: import and SET_CONFIGURATION(1)", spec);
		d->ops->destroy(d);
		return NULL;
	}
	return d;
}

static int16_t s16(const uint8_t *p)
{
	return (int16_t)(uint16_t)(p[0] | p[1] << 8);
}

/* The frames of an IN packet follow the ramp from frame first; reports the first wrong one. */
static bool ramp_is(const uint8_t *p, uint32_t frames, uint64_t first)
{
	for (uint32_t i = 0; i < frames; i++) {
		int16_t want = (int16_t)((first + i) % 32767 + 1);
		int16_t l = s16(p + i * FRAME), r = s16(p + i * FRAME + 2);
		if (l != want || r != -want) {
			t_diag("frame %llu: got (%d, %d), want (%d, %d)",
			       (unsigned long long)(first + i), l, r, want, -want);
			return false;
		}
	}
	return true;
}

static double ms_between(uint64_t from_ns, uint64_t to_ns)
{
	return ((double)to_ns - (double)from_ns) / 1e6;
}

/* ---- Options -------------------------------------------------------------------------------- */

static void test_options(uw_loop *l, const char *dir)
{
	char empty[256], dirpath[256], same[256];
	snprintf(empty, sizeof empty, "%s/empty.raw", dir);
	snprintf(dirpath, sizeof dirpath, "%s/sub", dir);
	snprintf(same, sizeof same, "%s/same.raw", dir);
	int fd = open(empty, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0)
		close(fd);
	mkdir(dirpath, 0755);
	fd = open(same, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, "\1\0\2\0\3\0\4\0", 8) != 8)
			t_diag("cannot write %s", same);
		close(fd);
	}
	struct row {
		char spec[600];
		char err[600];
		bool no_loop;
	} rows[12] = {
	    {"emu:audio,rate=44100",
	     "emu:audio: unknown option \"rate\" (allowed: signal, input, output)", false},
	    {"emu:audio,signal=noise",
	     "emu:audio: signal must be sine, ramp or silence, not \"noise\"", false},
	    {"emu:audio,signal=ramp,input=/tmp/x.raw",
	     "emu:audio: input=PATH and signal= exclude each other (the input file replaces the "
	     "signal)",
	     false},
	    {"emu:audio,input=/nonexistent/x.raw",
	     "emu:audio: cannot open /nonexistent/x.raw: No such file or directory", false},
	    {"emu:audio,input=", "emu:audio: input needs a path (input=PATH)", false},
	    {"emu:audio,output=", "emu:audio: output needs a path (output=PATH)", false},
	    {"emu:audio,output=/nonexistent/y.raw",
	     "emu:audio: cannot open /nonexistent/y.raw for writing: No such file or directory",
	     false},
	    {"", "", false},
	    {"", "", false},
	    {"", "", false},
	    {"emu:audio", "emu:audio: needs an event loop (streams are paced by timers)", true},
	    {"", "", false},
	};
	size_t n = sizeof rows / sizeof rows[0];
	/* The rows naming files of the test directory. */
	snprintf(rows[7].spec, sizeof rows[7].spec, "emu:audio,input=%s", dirpath);
	snprintf(rows[7].err, sizeof rows[7].err, "emu:audio: %s is not a regular file", dirpath);
	snprintf(rows[8].spec, sizeof rows[8].spec, "emu:audio,input=%s", empty);
	snprintf(rows[8].err, sizeof rows[8].err,
	         "emu:audio: %s holds no audio (not one 4-byte frame of S16_LE stereo)", empty);
	snprintf(rows[9].spec, sizeof rows[9].spec, "emu:audio,input=%s,output=%s", same, same);
	snprintf(rows[9].err, sizeof rows[9].err,
	         "emu:audio: input and output are the same file (%s)", same);
	/* A pipe as the output: a full pipe would take part of a write and shift the frames. */
	char fifo[256];
	snprintf(fifo, sizeof fifo, "%s/out.fifo", dir);
	mkfifo(fifo, 0644);
	int reader = open(fifo, O_RDONLY | O_NONBLOCK);
	snprintf(rows[11].spec, sizeof rows[11].spec, "emu:audio,output=%s", fifo);
	snprintf(rows[11].err, sizeof rows[11].err, "emu:audio: output %s must be a regular file",
	         fifo);
	for (size_t i = 0; i < n; i++) {
		uw_dev *d = NULL;
		char err[600] = "";
		int r = uw_emu_create(rows[i].spec, "99-1", 99, 1, rows[i].no_loop ? NULL : l, NULL,
		                      &d, err, sizeof err);
		if (!t_ok(r < 0 && !d && strcmp(err, rows[i].err) == 0, "%s refused: %s",
		          rows[i].spec, rows[i].err))
			t_diag("got %d \"%s\"", r, err);
		if (d)
			d->ops->destroy(d);
	}
	if (reader >= 0)
		close(reader);
	unlink(fifo);
	struct stat st;
	t_ok(stat(same, &st) == 0 && st.st_size == 8, "the refused same-file output left the "
	                                              "input untouched");
	/* The kind is listed with its usage. */
	const struct uw_emu_kind *k = NULL;
	for (const struct uw_emu_kind *x = uw_emu_kinds; x->kind; x++)
		k = strcmp(x->kind, "audio") == 0 ? x : k;
	t_ok(k &&
	         strcmp(k->usage,
	                "emu:audio[,signal=sine|ramp|silence][,input=PATH][,output=PATH]") == 0 &&
	         strstr(k->help, "48000 Hz") && strstr(k->help, "S16_LE"),
	     "emu:audio in the kinds table: %s", k ? k->usage : "(missing)");
	unlink(empty);
	unlink(same);
	rmdir(dirpath);
}

/* ---- Descriptors ---------------------------------------------------------------------------- */

struct seen {
	int ifaces[3][2];       /* [iface][alt]: bNumEndpoints + 1 when present with class 1 */
	uint8_t subclass[3];    /* of altsetting 0 */
	uw_endpoint_desc ep[2]; /* 0x01, 0x82 */
	int ep_iface[2], ep_alt[2];
	size_t ep_len[2];
	const uint8_t *ep_cs[2];  /* the descriptor right after the endpoint */
	const uint8_t *as_gen[3]; /* AS_GENERAL of (iface, 1) */
	const uint8_t *as_fmt[3]; /* FORMAT_TYPE of (iface, 1) */
	const uint8_t *header;    /* AC header */
	const uint8_t *term[5];   /* terminals by ID 1..4 */
	size_t ac_cs_len;         /* class-specific bytes of interface 0 */
	int as_alt0_cs;           /* class-specific descriptors in an altsetting 0 */
	int unknown;              /* anything unexpected */
};

static void walk_config(const uint8_t *cfg, size_t len, struct seen *s)
{
	memset(s, 0, sizeof *s);
	uw_config_iter it;
	uw_desc_item item;
	const uint8_t *prev_ep = NULL;
	int prev_idx = -1;
	if (uw_config_iter_init(&it, cfg, len, NULL) != UW_OK) {
		s->unknown++;
		return;
	}
	while (uw_config_iter_next(&it, &item) == 1) {
		int idx = -1;
		if (prev_ep && prev_idx >= 0)
			s->ep_cs[prev_idx] = item.raw;
		prev_ep = NULL;
		switch (item.kind) {
		case UW_DK_CONFIG:
			break;
		case UW_DK_INTERFACE:
			if (item.iface < 3 && item.alt < 2 && item.u.intf.interface_class == 1) {
				s->ifaces[item.iface][item.alt] = item.u.intf.num_endpoints + 1;
				if (item.alt == 0)
					s->subclass[item.iface] = item.u.intf.interface_subclass;
			} else {
				s->unknown++;
			}
			break;
		case UW_DK_ENDPOINT:
			idx = item.u.ep.address == 0x01 ? 0 : item.u.ep.address == 0x82 ? 1 : -1;
			if (idx < 0) {
				s->unknown++;
				break;
			}
			s->ep[idx] = item.u.ep;
			s->ep_iface[idx] = item.iface;
			s->ep_alt[idx] = item.alt;
			s->ep_len[idx] = item.len;
			prev_ep = item.raw;
			prev_idx = idx;
			break;
		case UW_DK_OTHER:
			if (item.type == 0x24 && item.iface == 0 && item.len >= 3) {
				s->ac_cs_len += item.len;
				if (item.raw[2] == 1)
					s->header = item.raw;
				else if ((item.raw[2] == 2 || item.raw[2] == 3) &&
				         item.raw[3] >= 1 && item.raw[3] <= 4)
					s->term[item.raw[3]] = item.raw;
				else
					s->unknown++;
			} else if (item.type == 0x24 && item.iface >= 1 && item.iface <= 2 &&
			           item.alt == 1 && item.len >= 3) {
				if (item.raw[2] == 1)
					s->as_gen[item.iface] = item.raw;
				else if (item.raw[2] == 2)
					s->as_fmt[item.iface] = item.raw;
				else
					s->unknown++;
			} else if (item.type == 0x24 && item.alt == 0) {
				s->as_alt0_cs++;
			} else if (item.type != 0x25) {
				s->unknown++;
			}
			break;
		default:
			s->unknown++;
			break;
		}
	}
}

static uint16_t le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le24(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16;
}

static void test_descriptors(uw_loop *l)
{
	uw_dev *d = create("emu:audio", l);
	if (!d)
		return;
	t_ok(d->ops->import(d) == UW_OK, "audio: import");
	struct ctl c = ctrl(d, 0x80, 6, 0x0100, 0, 18, NULL);
	uw_device_desc dd = {0};
	bool ok = c.status == 0 && c.actual == 18 &&
	          uw_device_desc_parse(c.data, c.actual, &dd, NULL) == UW_OK;
	t_ok(ok && dd.id_vendor == 0x1209 && dd.id_product == 0x0003 && dd.bcd_usb == 0x0200 &&
	         dd.device_class == 0 && dd.device_subclass == 0 && dd.device_protocol == 0 &&
	         dd.max_packet_size0 == 64 && dd.num_configurations == 1,
	     "audio: device 1209:0003, USB 2.00, class 0 at device level");
	t_ok(d->info.speed == UW_SPEED_FULL && strcmp(d->name, "usbwire audio") == 0,
	     "audio: full speed, named \"%s\"", d->name);
	char got[64] = "";
	c = ctrl(d, 0x80, 6, (uint16_t)(0x0300 | dd.i_manufacturer), 0x0409, 255, NULL);
	t_ok(c.status == 0 &&
	         uw_string_desc_to_utf8(c.data, c.actual, got, sizeof got, NULL) == 7 &&
	         strcmp(got, "usbwire") == 0,
	     "audio: manufacturer \"%s\"", got);
	c = ctrl(d, 0x80, 6, (uint16_t)(0x0300 | dd.i_product), 0x0409, 255, NULL);
	t_ok(c.status == 0 && uw_string_desc_to_utf8(c.data, c.actual, got, sizeof got, NULL) > 0 &&
	         strcmp(got, "usbwire audio") == 0,
	     "audio: product \"%s\"", got);
	char serial[17];
	uw_emu_serial("99-1", "emu:audio", serial);
	c = ctrl(d, 0x80, 6, (uint16_t)(0x0300 | dd.i_serial_number), 0x0409, 255, NULL);
	t_ok(c.status == 0 && uw_string_desc_to_utf8(c.data, c.actual, got, sizeof got, NULL) > 0 &&
	         strcmp(got, serial) == 0,
	     "audio: serial \"%s\" from uw_emu_serial", got);
	c = ctrl(d, 0x80, 6, 0x0600, 0, 10, NULL);
	t_ok(c.status == UW_URB_EPIPE, "audio: no device qualifier (full speed only)");

	c = ctrl(d, 0x80, 6, 0x0200, 0, 1024, NULL);
	uw_config_desc cd = {0};
	ok = c.status == 0 && uw_config_check(c.data, c.actual, &cd, NULL) == UW_OK;
	t_ok(ok && cd.total_length == c.actual && c.actual == 174 && cd.num_interfaces == 3 &&
	         cd.configuration_value == 1,
	     "audio: configuration valid, %u bytes, 3 interfaces", c.actual);
	struct seen s;
	walk_config(c.data, c.actual, &s);
	t_ok(s.unknown == 0 && s.as_alt0_cs == 0, "audio: no unexpected descriptor (%d)",
	     s.unknown);
	t_ok(s.ifaces[0][0] == 1 && s.subclass[0] == 1 && s.ifaces[0][1] == 0,
	     "audio: interface 0 AudioControl (1/1), no endpoint, no other altsetting");
	for (int i = 1; i <= 2; i++)
		t_ok(s.ifaces[i][0] == 1 && s.ifaces[i][1] == 2 && s.subclass[i] == 2,
		     "audio: interface %d AudioStreaming (1/2): altsetting 0 without endpoints, "
		     "altsetting 1 with one",
		     i);

	/* AudioControl: header and terminals (UAC1 4.3.2). */
	const uint8_t *h = s.header;
	t_ok(h && h[0] == 10 && le16(h + 3) == 0x0100 && le16(h + 5) == s.ac_cs_len &&
	         s.ac_cs_len == 52 && h[7] == 2 && h[8] == 1 && h[9] == 2,
	     "audio: AC header: bcdADC 1.00, wTotalLength %zu, interfaces 1 and 2", s.ac_cs_len);
	static const struct {
		uint8_t id, subtype;
		uint16_t type;
		uint8_t source; /* output terminals */
		const char *what;
	} terms[] = {
	    {1, 2, 0x0101, 0, "speaker path: USB streaming input terminal 1"},
	    {2, 3, 0x0301, 1, "speaker path: speaker output terminal 2 from 1"},
	    {3, 2, 0x0201, 0, "microphone path: microphone input terminal 3"},
	    {4, 3, 0x0101, 3, "microphone path: USB streaming output terminal 4 from 3"},
	};
	for (size_t i = 0; i < sizeof terms / sizeof terms[0]; i++) {
		const uint8_t *t = s.term[terms[i].id];
		bool good = t && t[2] == terms[i].subtype && le16(t + 4) == terms[i].type;
		if (good && terms[i].subtype == 2) /* channels and their spatial positions */
			good = t[0] == 12 && t[7] == 2 && le16(t + 8) == 0x0003;
		if (good && terms[i].subtype == 3)
			good = t[0] == 9 && t[7] == terms[i].source;
		t_ok(good, "audio: %s", terms[i].what);
	}

	/* AudioStreaming: terminal link, PCM, format type I (UAC1 4.5.2, Frmts 2.2.5). */
	static const uint8_t links[3] = {0, 1, 4};
	for (int i = 1; i <= 2; i++) {
		const uint8_t *g = s.as_gen[i], *f = s.as_fmt[i];
		t_ok(g && g[0] == 7 && g[3] == links[i] && le16(g + 5) == 0x0001,
		     "audio: interface %d AS_GENERAL links terminal %u, PCM", i, links[i]);
		t_ok(f && f[0] == 11 && f[3] == 1 && f[4] == 2 && f[5] == 2 && f[6] == 16 &&
		         f[7] == 1 && le24(f + 8) == 48000,
		     "audio: interface %d FORMAT_TYPE_I: 2 channels, 2-byte subframes, 16 bits, "
		     "48000 Hz only",
		     i);
	}
	static const struct {
		uint8_t addr;
		int iface;
		const char *what;
	} eps[2] = {{0x01, 1, "speaker OUT 0x01"}, {0x82, 2, "microphone IN 0x82"}};
	for (int i = 0; i < 2; i++) {
		const uw_endpoint_desc *e = &s.ep[i];
		const uint8_t *cs = s.ep_cs[i];
		t_ok(e->address == eps[i].addr && s.ep_iface[i] == eps[i].iface &&
		         s.ep_alt[i] == 1 && s.ep_len[i] == 9 && e->xfer == UW_XFER_ISO &&
		         e->attributes == 0x0d && e->max_packet == 192 && e->interval == 1,
		     "audio: %s: 9-byte isochronous synchronous endpoint, 192 bytes, every frame",
		     eps[i].what);
		t_ok(
		    cs && cs[0] == 7 && cs[1] == 0x25 && cs[2] == 1 && (cs[3] & 1),
		    "audio: %s: followed by the AS endpoint descriptor with the sampling frequency "
		    "control",
		    eps[i].what);
	}
	/* What device lists show. */
	t_ok(d->info.num_interfaces == 3 && d->ifaces[0].iface_class == 1 &&
	         d->ifaces[0].iface_subclass == 1 && d->ifaces[1].iface_class == 1 &&
	         d->ifaces[1].iface_subclass == 2 && d->ifaces[2].iface_class == 1 &&
	         d->ifaces[2].iface_subclass == 2,
	     "audio: device record lists 01/01, 01/02, 01/02");
	d->ops->release(d);
	d->ops->destroy(d);
}

/* ---- Sampling frequency requests ------------------------------------------------------------ */

static void test_frequency(uw_loop *l)
{
	uw_dev *d = create("emu:audio", l);
	if (!d)
		return;
	d->ops->import(d);
	struct ctl c = ctrl(d, 0xa2, 0x81, 0x0100, 0x82, 3, NULL);
	t_ok(c.completions == 1 && c.status == UW_URB_EPIPE,
	     "frequency: GET_CUR stalls while unconfigured");
	set_config(d, 1);
	static const uint8_t hz48k[3] = {0x80, 0xbb, 0x00};
	static const uint8_t hz44k[3] = {0x44, 0xac, 0x00};
	static const struct {
		const char *what;
		uint8_t rt, req;
		uint16_t val, idx, len;
		const uint8_t *out;
		int32_t status;
		uint32_t actual;
		bool is48k; /* the data stage reads 48000 */
	} rows[] = {
	    {"SET_CUR 48000 to 0x01", 0x22, 0x01, 0x0100, 0x01, 3, hz48k, 0, 3, false},
	    {"SET_CUR 48000 to 0x82", 0x22, 0x01, 0x0100, 0x82, 3, hz48k, 0, 3, false},
	    {"SET_CUR 44100 to 0x82 stalls", 0x22, 0x01, 0x0100, 0x82, 3, hz44k, UW_URB_EPIPE, 0,
	     false},
	    {"SET_CUR 44100 to 0x01 stalls", 0x22, 0x01, 0x0100, 0x01, 3, hz44k, UW_URB_EPIPE, 0,
	     false},
	    {"GET_CUR of 0x82 after the refused 44100", 0xa2, 0x81, 0x0100, 0x82, 3, NULL, 0, 3,
	     true},
	    {"GET_CUR of 0x01", 0xa2, 0x81, 0x0100, 0x01, 3, NULL, 0, 3, true},
	    {"GET_MIN of 0x01", 0xa2, 0x82, 0x0100, 0x01, 3, NULL, 0, 3, true},
	    {"GET_MAX of 0x82", 0xa2, 0x83, 0x0100, 0x82, 3, NULL, 0, 3, true},
	    {"GET_RES of 0x82", 0xa2, 0x84, 0x0100, 0x82, 3, NULL, 0, 3, true},
	    {"SET_CUR with wLength 2 stalls", 0x22, 0x01, 0x0100, 0x01, 2, hz48k, UW_URB_EPIPE, 0,
	     false},
	    {"SET_CUR of the pitch control stalls", 0x22, 0x01, 0x0200, 0x01, 1, hz48k,
	     UW_URB_EPIPE, 0, false},
	    {"GET_CUR of endpoint 0x83 stalls", 0xa2, 0x81, 0x0100, 0x83, 3, NULL, UW_URB_EPIPE, 0,
	     false},
	    {"GET_CUR to interface 0 stalls", 0xa1, 0x81, 0x0100, 0x0000, 3, NULL, UW_URB_EPIPE, 0,
	     false},
	    {"GET_MEM stalls", 0xa2, 0x85, 0x0100, 0x82, 3, NULL, UW_URB_EPIPE, 0, false},
	    {"vendor request stalls", 0xc2, 0x81, 0x0100, 0x82, 3, NULL, UW_URB_EPIPE, 0, false},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		c = ctrl(d, rows[i].rt, rows[i].req, rows[i].val, rows[i].idx, rows[i].len,
		         rows[i].out);
		t_ok(c.completions == 1 && c.status == rows[i].status &&
		         c.actual == rows[i].actual &&
		         (!rows[i].is48k || memcmp(c.data, hz48k, 3) == 0),
		     "frequency: %s", rows[i].what);
	}
	d->ops->release(d);
	d->ops->destroy(d);
}

/* ---- Microphone ----------------------------------------------------------------------------- */

static void test_ramp(uw_loop *l)
{
	uw_dev *d = open_dev("emu:audio,signal=ramp", l);
	if (!d)
		return;
	t_ok(d->ops->ep_type(d, 2, UW_DIR_IN) == UW_XFER_UNKNOWN,
	     "ramp: no IN endpoint in altsetting 0");
	uint64_t start = turb_now_ns();
	t_ok(set_interface(d, 2, 1) && d->ops->ep_type(d, 2, UW_DIR_IN) == UW_XFER_ISO,
	     "ramp: SET_INTERFACE(2, 1): isochronous IN 0x82");
	/* Three URBs of 8 x 192 bytes at once, as a host queues them. */
	turb *t[3];
	int base = turb_done_total;
	for (int i = 0; i < 3; i++) {
		t[i] = mic_urb(8);
		d->ops->submit(d, &t[i]->u);
	}
	t_ok(t[0]->completions == 0, "ramp: the first URB waits for its 8 frames");
	run_until(l, base + 3);
	uint64_t frame = 0;
	for (int i = 0; i < 3; i++) {
		bool ok = iso_ok(t[i], PKT) && t[i]->u.actual == 8 * PKT;
		for (uint32_t p = 0; ok && p < 8; p++, frame += PKT_FRAMS)
			ok = ramp_is(t[i]->buf + t[i]->iso[p].offset, PKT_FRAMS, frame);
		t_ok(ok,
		     "ramp: URB %d: 8 packets, status 0, 192 bytes each, ramp frames %llu..%llu", i,
		     (unsigned long long)(i * 384), (unsigned long long)(i * 384 + 383));
	}
	double first = ms_between(start, t[0]->done_ns), last = ms_between(start, t[2]->done_ns);
	t_ok(t[0]->completions == 1 && first >= 7.0,
	     "ramp: 8 packets completed %.1f ms after the stream start (>= 8 frames)", first);
	t_ok(t[2]->completions == 1 && last >= 23.0 && t[1]->done_ns >= t[0]->done_ns &&
	         t[2]->done_ns >= t[1]->done_ns,
	     "ramp: 24 packets completed in order after %.1f ms (>= 24 frames)", last);
	for (int i = 0; i < 3; i++)
		turb_free(t[i]);

	/* Packets of other sizes, spread out in the buffer: whole frames, at most 48 each. */
	turb *u = iso_new(2, UW_DIR_IN, 4, 0, 250);
	static const uint32_t lens[4] = {98, 0, 200, 192}, want[4] = {96, 0, 192, 192};
	for (int i = 0; i < 4; i++)
		u->iso[i].length = lens[i];
	base = turb_done_total;
	d->ops->submit(d, &u->u);
	run_until(l, base + 1);
	bool ok = u->completions == 1 && u->u.status == 0 && u->u.actual == 96 + 192 + 192;
	uint64_t f = frame;
	for (int i = 0; ok && i < 4; i++) {
		const uint8_t *p = u->buf + u->iso[i].offset;
		ok = u->iso[i].status == 0 && u->iso[i].actual_length == want[i] &&
		     ramp_is(p, want[i] / FRAME, f) && (i == 3 || p[want[i]] == 0xee);
		f += want[i] / FRAME;
	}
	t_ok(ok, "ramp: packets of 98, 0, 200, 192 bytes carry 24, 0, 48, 48 frames, in place, "
	         "the ramp going on");
	frame = f;
	turb_free(u);

	/* A host that fell behind gets no burst: the clock moves, the ramp goes on. */
	run_for(l, 60);
	u = mic_urb(8);
	base = turb_done_total;
	uint64_t sub = turb_now_ns();
	d->ops->submit(d, &u->u);
	run_until(l, base + 1);
	double took = ms_between(sub, u->done_ns);
	t_ok(iso_ok(u, PKT) && took >= 7.0,
	     "ramp: after 60 ms without URBs, 8 packets still take 8 frames (%.1f ms)", took);
	t_ok(ramp_is(u->buf, 8 * PKT_FRAMS, frame), "ramp: frames continue after the pause");
	turb_free(u);

	/* Zero-length packets without a buffer. */
	u = iso_new(2, UW_DIR_IN, 2, 0, 0);
	base = turb_done_total;
	d->ops->submit(d, &u->u);
	run_until(l, base + 1);
	t_ok(iso_ok(u, 0) && u->u.actual == 0, "ramp: zero-length packets, no buffer: status 0");
	turb_free(u);
	d->ops->release(d);
	d->ops->destroy(d);
}

static void test_ramp_wraps(uw_loop *l)
{
	/* 32767 frames after the start the ramp starts again at 1: 683 packets reach it. Send
	 * them in URBs of 64 packets (64 ms each) and check the frames around the wrap. */
	uw_dev *d = open_dev("emu:audio,signal=ramp", l);
	if (!d)
		return;
	set_interface(d, 2, 1);
	bool ok = true;
	uint64_t frame = 0;
	int base = turb_done_total;
	turb *t[11];
	for (int i = 0; i < 11; i++) {
		t[i] = mic_urb(64);
		d->ops->submit(d, &t[i]->u);
	}
	run_until(l, base + 11);
	for (int i = 0; i < 11; i++) {
		ok = ok && iso_ok(t[i], PKT) && ramp_is(t[i]->buf, 64 * PKT_FRAMS, frame);
		frame += 64 * PKT_FRAMS;
		turb_free(t[i]);
	}
	t_ok(ok && frame > 32767,
	     "ramp: %llu frames in 11 URBs of 64 packets, wrapping after 32767",
	     (unsigned long long)frame);
	d->ops->release(d);
	d->ops->destroy(d);
}

static int16_t sine_want(uint64_t i)
{
	/* round(16384 sin(2 pi i / 48)) at the points the test looks at */
	switch (i % 48) {
	case 0:
	case 24:
		return 0;
	case 4:
		return 8192;
	case 12:
		return 16384;
	case 28:
		return -8192;
	case 36:
		return -16384;
	default:
		return 1; /* not checked */
	}
}

static void test_sine_and_silence(uw_loop *l)
{
	uw_dev *d = open_dev("emu:audio", l);
	if (!d)
		return;
	set_interface(d, 2, 1);
	turb *a = mic_urb(2), *b = mic_urb(3);
	int base = turb_done_total;
	d->ops->submit(d, &a->u);
	d->ops->submit(d, &b->u);
	run_until(l, base + 2);
	bool ok = iso_ok(a, PKT) && iso_ok(b, PKT);
	int16_t frames[5 * PKT_FRAMS][2];
	for (uint32_t i = 0; ok && i < 5 * PKT_FRAMS; i++) {
		const uint8_t *p =
		    i < 2 * PKT_FRAMS ? a->buf + i * FRAME : b->buf + (i - 2 * PKT_FRAMS) * FRAME;
		frames[i][0] = s16(p);
		frames[i][1] = s16(p + 2);
	}
	for (uint32_t i = 0; ok && i < 5 * PKT_FRAMS; i++) {
		int16_t w = sine_want(i);
		ok = frames[i][0] == frames[i][1] && (w == 1 || frames[i][0] == w) &&
		     frames[i][0] <= 16384 && frames[i][0] >= -16384 &&
		     (i < 48 || frames[i][0] == frames[i - 48][0]);
		if (!ok)
			t_diag("frame %u: (%d, %d)", i, frames[i][0], frames[i][1]);
	}
	t_ok(ok, "sine: 1 kHz, peak 16384 (-6 dBFS), both channels, phase continuous across URBs");
	turb_free(a);
	turb_free(b);
	d->ops->release(d);
	d->ops->destroy(d);

	d = open_dev("emu:audio,signal=silence", l);
	if (!d)
		return;
	set_interface(d, 2, 1);
	a = mic_urb(2);
	base = turb_done_total;
	d->ops->submit(d, &a->u);
	run_until(l, base + 1);
	ok = iso_ok(a, PKT);
	for (uint32_t i = 0; ok && i < 2 * PKT; i++)
		ok = a->buf[i] == 0;
	t_ok(ok, "silence: zeros, 192 bytes a packet");
	turb_free(a);
	d->ops->release(d);
	d->ops->destroy(d);
}

static void test_input_file(uw_loop *l, const char *dir)
{
	char path[256], spec[300];
	snprintf(path, sizeof path, "%s/in.raw", dir);
	/* 100 frames (1000 + k, -(1000 + k)) and half a frame, which is skipped when looping. */
	uint8_t file[100 * FRAME + 2];
	for (int k = 0; k < 100; k++) {
		uint16_t v = (uint16_t)(1000 + k), n = (uint16_t) - (1000 + k);
		file[k * 4] = (uint8_t)v;
		file[k * 4 + 1] = (uint8_t)(v >> 8);
		file[k * 4 + 2] = (uint8_t)n;
		file[k * 4 + 3] = (uint8_t)(n >> 8);
	}
	file[400] = 0x55;
	file[401] = 0x55;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	bool wrote = fd >= 0 && write(fd, file, sizeof file) == (ssize_t)sizeof file;
	if (fd >= 0)
		close(fd);
	if (!t_ok(wrote, "input: test file written"))
		return;
	snprintf(spec, sizeof spec, "emu:audio,input=%s", path);
	uw_dev *d = open_dev(spec, l);
	if (!d)
		return;
	for (int round = 0; round < 2; round++) {
		set_interface(d, 2, 1);
		turb *t = mic_urb(8);
		int base = turb_done_total;
		d->ops->submit(d, &t->u);
		run_until(l, base + 1);
		bool ok = iso_ok(t, PKT);
		for (uint32_t i = 0; ok && i < 8 * PKT_FRAMS; i++) {
			int16_t want = (int16_t)(1000 + i % 100);
			ok =
			    s16(t->buf + i * FRAME) == want && s16(t->buf + i * FRAME + 2) == -want;
			if (!ok)
				t_diag("frame %u: %d", i, s16(t->buf + i * FRAME));
		}
		t_ok(ok, "input: %s stream plays the file from its start, looping every 100 frames",
		     round ? "a restarted" : "the first");
		turb_free(t);
		set_interface(d, 2, 0);
	}
	d->ops->release(d);
	d->ops->destroy(d);
	unlink(path);
}

/* ---- Speaker -------------------------------------------------------------------------------- */

static bool file_is(const char *path, const uint8_t *want, size_t len)
{
	uint8_t got[8192];
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	ssize_t n = read(fd, got, sizeof got);
	close(fd);
	if (n != (ssize_t)len) {
		t_diag("%s holds %zd bytes, want %zu", path, n, len);
		return false;
	}
	if (memcmp(got, want, len) != 0) {
		t_hexdiff(path, got, want, len);
		return false;
	}
	return true;
}

/* The output file: what it held before ("old contents", kept), then the frames written. */
static bool out_is(const char *path, const uint8_t *want, size_t len)
{
	static uint8_t all[8192];
	if (12 + len > sizeof all)
		return false;
	memcpy(all, "old contents", 12);
	memcpy(all + 12, want, len);
	return file_is(path, all, 12 + len);
}

/* output=PATH: created 0600 whatever the umask; never through a symbolic link (neither an
 * existing target nor a dangling one is written or created); a directory or a socket refused. */
static void test_output_files(uw_loop *l, const char *dir)
{
	char path[256], target[256], spec[600], err[600];
	struct stat st;
	uw_dev *d;
	snprintf(path, sizeof path, "%s/new.raw", dir);
	unlink(path);
	mode_t old = umask(0);
	snprintf(spec, sizeof spec, "emu:audio,output=%s", path);
	d = open_dev(spec, l);
	umask(old);
	memset(&st, 0, sizeof st);
	bool made = stat(path, &st) == 0;
	t_ok(d && made && (st.st_mode & 07777) == 0600,
	     "output: a new file is created with mode 0600 under umask 0 (got %04o)",
	     (unsigned)(st.st_mode & 07777));
	if (d)
		d->ops->destroy(d);
	unlink(path);

	snprintf(target, sizeof target, "%s/precious", dir);
	int fd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "keep", 4) != 4)
		t_diag("cannot write %s", target);
	if (fd >= 0)
		close(fd);
	snprintf(path, sizeof path, "%s/link.raw", dir);
	if (symlink(target, path) != 0)
		t_diag("symlink: %s", strerror(errno));
	snprintf(spec, sizeof spec, "emu:audio,output=%s", path);
	d = NULL;
	int r = uw_emu_create(spec, "99-1", 99, 1, l, NULL, &d, err, sizeof err);
	t_ok(r < 0 && !d && strstr(err, "symbolic link") && stat(target, &st) == 0 &&
	         st.st_size == 4 && (st.st_mode & 0777) == 0644,
	     "output: a symlink to an existing file refused, the file untouched: %s", err);
	if (d)
		d->ops->destroy(d);
	unlink(path);
	unlink(target);
	if (symlink(target, path) != 0) /* now dangling */
		t_diag("symlink: %s", strerror(errno));
	d = NULL;
	r = uw_emu_create(spec, "99-1", 99, 1, l, NULL, &d, err, sizeof err);
	t_ok(r < 0 && !d && strstr(err, "symbolic link") && lstat(target, &st) != 0,
	     "output: a dangling symlink refused, its target not created: %s", err);
	if (d)
		d->ops->destroy(d);
	unlink(path);
	unlink(target);

	snprintf(path, sizeof path, "%s/outdir", dir);
	mkdir(path, 0700);
	snprintf(spec, sizeof spec, "emu:audio,output=%s", path);
	d = NULL;
	r = uw_emu_create(spec, "99-1", 99, 1, l, NULL, &d, err, sizeof err);
	t_ok(r < 0 && !d && strstr(err, "directory"), "output: a directory refused: %s", err);
	if (d)
		d->ops->destroy(d);
	rmdir(path);

	snprintf(path, sizeof path, "%s/out.sock", dir);
	int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) < sizeof sa.sun_path)
		memcpy(sa.sun_path, path, strlen(path) + 1);
	if (sfd < 0 || bind(sfd, (struct sockaddr *)&sa, sizeof sa) != 0)
		t_diag("socket %s: %s", path, strerror(errno));
	snprintf(spec, sizeof spec, "emu:audio,output=%s", path);
	d = NULL;
	r = uw_emu_create(spec, "99-1", 99, 1, l, NULL, &d, err, sizeof err);
	t_ok(r < 0 && !d && strstr(err, "socket"), "output: a socket refused: %s", err);
	if (d)
		d->ops->destroy(d);
	if (sfd >= 0)
		close(sfd);
	unlink(path);
}

static void test_output(uw_loop *l, const char *dir)
{
	char path[256], spec[300];
	snprintf(path, sizeof path, "%s/out.raw", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, "old contents", 12) != 12)
			t_diag("cannot write %s", path);
		close(fd);
	}
	snprintf(spec, sizeof spec, "emu:audio,output=%s", path);
	uw_dev *d = open_dev(spec, l);
	if (!d)
		return;
	struct stat st;
	bool kept = stat(path, &st) == 0 && st.st_size == 12;
	t_ok(kept, "output: an existing file is not truncated (%lld bytes)", (long long)st.st_size);
	bool absent = d->ops->ep_type(d, 1, UW_DIR_OUT) == UW_XFER_UNKNOWN;
	uint64_t start = turb_now_ns(); /* before the stream starts: its clock starts later */
	t_ok(absent && set_interface(d, 1, 1) && d->ops->ep_type(d, 1, UW_DIR_OUT) == UW_XFER_ISO,
	     "output: SET_INTERFACE(1, 1): isochronous OUT 0x01");
	static uint8_t sent[2 * 8 * PKT + 4 + PKT];
	for (size_t i = 0; i < sizeof sent; i++)
		sent[i] = (uint8_t)(i * 7 % 251);
	turb *t[2];
	int base = turb_done_total;
	for (int i = 0; i < 2; i++) {
		t[i] = iso_new(1, UW_DIR_OUT, 8, PKT, PKT);
		memcpy(t[i]->buf, sent + i * 8 * PKT, 8 * PKT);
		d->ops->submit(d, &t[i]->u);
	}
	run_until(l, base + 2);
	double took = ms_between(start, t[1]->done_ns);
	t_ok(iso_ok(t[0], PKT) && iso_ok(t[1], PKT) && t[1]->u.actual == 8 * PKT,
	     "output: 2 URBs of 8 x 192 bytes: status 0, every packet taken whole");
	t_ok(took >= 15.0, "output: 16 packets took %.1f ms (>= 16 frames)", took);
	t_ok(out_is(path, sent, 2 * 8 * PKT), "output: the file holds exactly the bytes sent");
	turb_free(t[0]);
	turb_free(t[1]);

	/* A packet with half a frame: its whole frame is written, the packet is taken whole. */
	turb *u = iso_new(1, UW_DIR_OUT, 2, 0, 200);
	u->iso[0].length = 6;
	u->iso[1].length = PKT;
	memcpy(u->buf, sent + 2 * 8 * PKT, 4);
	memcpy(u->buf + 4, "\x99\x99", 2);
	memcpy(u->buf + 200, sent + 2 * 8 * PKT + 4, PKT);
	base = turb_done_total;
	d->ops->submit(d, &u->u);
	run_until(l, base + 1);
	t_ok(u->completions == 1 && u->u.status == 0 && u->u.actual == 6 + PKT &&
	         u->iso[0].actual_length == 6 && u->iso[1].actual_length == PKT,
	     "output: packets of 6 and 192 bytes taken");
	t_ok(out_is(path, sent, sizeof sent), "output: only whole frames reach the file");
	turb_free(u);

	/* Bad packet arrays complete at once with an error and write nothing. */
	static const struct {
		const char *what;
		uint32_t n, len, pkt;
		int32_t status;
		int variant; /* 1: no iso array, 2: packet outside the buffer, 3: wrong type */
	} bad[] = {
	    {"a packet of 196 bytes (> wMaxPacketSize)", 2, 400, 196, UW_URB_EMSGSIZE, 0},
	    {"no packets", 0, 192, 0, UW_URB_EINVAL, 0},
	    {"no packet array", 2, 384, 192, UW_URB_EINVAL, 1},
	    {"a packet outside the buffer", 2, 384, 192, UW_URB_EINVAL, 2},
	    {"a bulk transfer type", 1, 192, 192, UW_URB_EINVAL, 3},
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		u = iso_new(1, UW_DIR_OUT, bad[i].n, bad[i].pkt,
		            bad[i].n ? bad[i].len / bad[i].n : 0);
		if (!bad[i].n) {
			free(u->buf);
			u->buf = u->u.buf = calloc(1, bad[i].len);
			u->u.len = bad[i].len;
		}
		if (bad[i].variant == 1)
			u->u.iso = NULL;
		if (bad[i].variant == 2)
			u->iso[1].offset = 300;
		if (bad[i].variant == 3)
			u->u.xfer = UW_XFER_BULK;
		d->ops->submit(d, &u->u);
		t_ok(u->completions == 1 && u->u.status == bad[i].status && u->u.actual == 0,
		     "output: %s -> %d at once", bad[i].what, bad[i].status);
		turb_free(u);
	}
	t_ok(out_is(path, sent, sizeof sent), "output: bad URBs wrote nothing");
	/* A URB cancelled before its time was never played: nothing of it reaches the file. */
	u = iso_new(1, UW_DIR_OUT, 8, PKT, PKT);
	memset(u->buf, 0x5a, 8 * PKT);
	d->ops->submit(d, &u->u);
	d->ops->cancel(d, &u->u);
	t_ok(u->completions == 1 && u->u.status == UW_URB_ECONNRESET &&
	         out_is(path, sent, sizeof sent),
	     "output: a URB cancelled before its time writes nothing");
	turb_free(u);
	d->ops->release(d);
	d->ops->destroy(d);
	unlink(path);

	/* Without output=PATH the speaker still takes everything. */
	d = open_dev("emu:audio", l);
	if (!d)
		return;
	set_interface(d, 1, 1);
	u = iso_new(1, UW_DIR_OUT, 4, PKT, PKT);
	base = turb_done_total;
	d->ops->submit(d, &u->u);
	run_until(l, base + 1);
	t_ok(iso_ok(u, PKT) && u->u.actual == 4 * PKT, "speaker without output: packets taken");
	turb_free(u);
	/* A bad IN URB to the microphone, for symmetry: a packet outside the buffer. */
	set_interface(d, 2, 1);
	u = mic_urb(2);
	u->iso[1].offset = 1000;
	d->ops->submit(d, &u->u);
	t_ok(u->completions == 1 && u->u.status == UW_URB_EINVAL,
	     "microphone: a packet outside the buffer -> -EINVAL at once");
	turb_free(u);
	d->ops->release(d);
	d->ops->destroy(d);
}

/* ---- Cancel, altsetting 0, deconfiguration, release, destroy -------------------------------- */

static void test_stop(uw_loop *l)
{
	uw_dev *d = open_dev("emu:audio,signal=ramp", l);
	if (!d)
		return;
	set_interface(d, 2, 1);
	set_interface(d, 1, 1);
	turb *a = mic_urb(8), *b = mic_urb(1);
	d->ops->submit(d, &a->u);
	d->ops->submit(d, &b->u);
	d->ops->cancel(d, &a->u);
	t_ok(a->completions == 1 && a->u.status == UW_URB_ECONNRESET && a->u.actual == 0,
	     "cancel: a held URB completes at once with -ECONNRESET");
	d->ops->cancel(d, &a->u);
	int base = turb_done_total;
	run_until(l, base + 1);
	t_ok(a->completions == 1, "cancel: a second cancel does nothing");
	/* The cancelled URB took no frames: the next one starts the ramp. */
	t_ok(iso_ok(b, PKT) && ramp_is(b->buf, PKT_FRAMS, 0),
	     "cancel: the next URB completes with ramp frame 0 on");
	d->ops->cancel(d, &b->u);
	t_ok(b->completions == 1 && b->u.status == 0,
	     "cancel: of a completed URB leaves its result alone");
	turb_free(a);
	turb_free(b);

	/* Altsetting 0 with URBs held: -ESHUTDOWN, once each; the other stream goes on. */
	turb *m1 = mic_urb(8), *m2 = mic_urb(8);
	turb *s1 = iso_new(1, UW_DIR_OUT, 8, PKT, PKT);
	d->ops->submit(d, &m1->u);
	d->ops->submit(d, &m2->u);
	d->ops->submit(d, &s1->u);
	set_interface(d, 2, 0);
	t_ok(m1->completions == 1 && m2->completions == 1 && m1->u.status == UW_URB_ESHUTDOWN &&
	         m2->u.status == UW_URB_ESHUTDOWN && s1->completions == 0,
	     "altsetting 0: the microphone's held URBs end with -ESHUTDOWN, the speaker's wait");
	t_ok(d->ops->ep_type(d, 2, UW_DIR_IN) == UW_XFER_UNKNOWN,
	     "altsetting 0: endpoint 0x82 gone");
	set_config(d, 0);
	t_ok(s1->completions == 1 && s1->u.status == UW_URB_ESHUTDOWN,
	     "SET_CONFIGURATION(0): the speaker's held URB ends with -ESHUTDOWN");
	run_for(l, 20);
	t_ok(m1->completions == 1 && m2->completions == 1 && s1->completions == 1,
	     "no second completion afterwards");
	turb_free(m1);
	turb_free(m2);
	turb_free(s1);

	/* Configured again: the ramp starts over at the new stream start. */
	set_config(d, 1);
	set_interface(d, 2, 1);
	a = mic_urb(1);
	base = turb_done_total;
	d->ops->submit(d, &a->u);
	run_until(l, base + 1);
	t_ok(iso_ok(a, PKT) && ramp_is(a->buf, PKT_FRAMS, 0),
	     "a new stream starts the ramp at frame 0");
	turb_free(a);

	/* Release (session end) and destroy with URBs held. */
	a = mic_urb(8);
	d->ops->submit(d, &a->u);
	d->ops->release(d);
	t_ok(a->completions == 1 && a->u.status == UW_URB_ESHUTDOWN,
	     "release: a held URB ends with -ESHUTDOWN");
	turb_free(a);
	d->ops->import(d);
	set_config(d, 1);
	set_interface(d, 2, 1);
	set_interface(d, 1, 1);
	a = mic_urb(8);
	b = iso_new(1, UW_DIR_OUT, 8, PKT, PKT);
	d->ops->submit(d, &a->u);
	d->ops->submit(d, &b->u);
	d->ops->destroy(d);
	t_ok(a->completions == 1 && a->u.status == UW_URB_ESHUTDOWN && b->completions == 1 &&
	         b->u.status == UW_URB_ESHUTDOWN,
	     "destroy: held URBs end with -ESHUTDOWN");
	run_for(l, 20); /* no timer of the destroyed device may fire */
	t_ok(a->completions == 1 && b->completions == 1, "destroy: nothing fires afterwards");
	turb_free(a);
	turb_free(b);
}

int main(void)
{
	uw_loop *l = uw_loop_new();
	char dir[] = "/tmp/uwaudioXXXXXX";
	if (!l || !mkdtemp(dir)) {
		printf("Bail out! no loop or temporary directory\n");
		return 1;
	}
	test_options(l, dir);
	test_descriptors(l);
	test_frequency(l);
	test_ramp(l);
	test_ramp_wraps(l);
	test_sine_and_silence(l);
	test_input_file(l, dir);
	test_output(l, dir);
	test_output_files(l, dir);
	test_stop(l);
	rmdir(dir);
	uw_loop_free(l);
	return t_done();
}
