/* SPDX-License-Identifier: MIT */
/*
 * emu_serial.c - emu:serial[,pty], a high-speed CDC-ACM serial port (CDC 1.1 / PSTN 1.2).
 *
 * Interface 0 (communications, ACM, AT commands) with header, call management, ACM and union
 * functional descriptors and an interrupt IN notification endpoint 0x82 (no notifications are
 * sent: URBs there wait until cancelled); interface 1 (data) with bulk IN 0x81 and OUT 0x01.
 *
 * Default: loopback. Bytes written to bulk OUT are queued (64 KiB) and read back on bulk IN; when
 * the queue is full the OUT URB is held until there is room (backpressure, nothing dropped).
 * With `pty`: a pseudo-terminal is opened at creation (its path is logged) and bulk OUT goes to
 * its master, its master to bulk IN. We keep the slave side open ourselves so the master never
 * reports a hang-up while nobody has it open; data waits in the terminal's buffer instead, and
 * OUT URBs are held while the master cannot take more.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "uw_emu.h"

#define SER_RING_CAP   (64u * 1024u)
#define SER_MAXPACKET  512u
#define SER_NOTIFY_LEN 16u

/* CDC class requests (PSTN 1.2 6.3). */
enum {
	CDC_SET_LINE_CODING = 0x20,
	CDC_GET_LINE_CODING = 0x21,
	CDC_SET_CONTROL_LINE_STATE = 0x22,
	CDC_SEND_BREAK = 0x23,
};
#define LINE_CODING_LEN 7u

struct serial {
	uw_emu *e;
	uw_loop *loop;
	const uw_logger *log;
	/* pty mode */
	int master, slave; /* -1 in loopback mode */
	char pty_path[128];
	uint32_t watching; /* UW_EV_* bits the master is watched for */
	/* loopback mode */
	uint8_t *ring;
	size_t head, count;

	uw_emu_urbq in_q;     /* bulk IN waiting for data */
	uw_emu_urbq out_q;    /* bulk OUT waiting for room; the head may be partly taken */
	uint32_t out_off;     /* bytes of out_q's head already taken */
	uw_emu_urbq notify_q; /* interrupt IN: never completed but by cancel or reset */
	bool pumping, again;  /* reentrancy guard of pump() */

	uint8_t line_coding[LINE_CODING_LEN];
	uint16_t line_state; /* bit 0 DTR, bit 1 RTS */
	char serial[17];
};

/* clang-format off */
static const uint8_t ser_device[18] = {
	18, 1, 0x00, 0x02,  /* bcdUSB 2.00 */
	0x02, 0x00, 0x00,   /* communications device class */
	64,                 /* bMaxPacketSize0 */
	0x25, 0x05,         /* idVendor 0x0525 (NetChip, Linux gadgets) */
	0xa7, 0xa4,         /* idProduct 0xa4a7 (gadget serial, CDC ACM) */
	0x00, 0x01,         /* bcdDevice 1.00 */
	1, 2, 3,            /* iManufacturer, iProduct, iSerialNumber */
	1,                  /* bNumConfigurations */
};

#define SER_CONFIG_LEN (9 + 9 + 5 + 5 + 4 + 5 + 7 + 9 + 7 + 7)
static const uint8_t ser_config[SER_CONFIG_LEN] = {
	9, 2, SER_CONFIG_LEN, 0, 2, 1, 0, 0x80, 50, /* bus-powered, 100 mA */
	/* interface 0: communications, abstract control model, AT commands (V.250) */
	9, 4, 0, 0, 1, 0x02, 0x02, 0x01, 0,
	5, 0x24, 0x00, 0x10, 0x01,     /* header: CDC 1.10 */
	5, 0x24, 0x01, 0x00, 1,        /* call management: none, data interface 1 */
	4, 0x24, 0x02, 0x06,           /* ACM: line coding/state, SEND_BREAK */
	5, 0x24, 0x06, 0, 1,           /* union: control 0, subordinate 1 */
	7, 5, 0x82, 3, SER_NOTIFY_LEN, 0, 8, /* interrupt IN, 16 bytes, every 16 ms */
	/* interface 1: data */
	9, 4, 1, 0, 2, 0x0a, 0x00, 0x00, 0,
	7, 5, 0x81, 2, SER_MAXPACKET & 0xff, SER_MAXPACKET >> 8, 0,
	7, 5, 0x01, 2, SER_MAXPACKET & 0xff, SER_MAXPACKET >> 8, 0,
};
/* clang-format on */

/* 115200 baud, 1 stop bit, no parity, 8 data bits. */
static const uint8_t default_line_coding[LINE_CODING_LEN] = {0x00, 0xc2, 0x01, 0x00, 0, 0, 8};

static void ser_io(void *arg, uint32_t events);

/* ---- Loopback -------------------------------------------------------------------------- */

static bool loop_step(struct serial *s)
{
	bool progress = false;
	/* Take OUT data while there is room. */
	while (s->out_q.head && s->count < SER_RING_CAP) {
		uw_urb *u = s->out_q.head;
		size_t want = u->len - s->out_off;
		size_t room = SER_RING_CAP - s->count;
		size_t n = want < room ? want : room;
		for (size_t done = 0; done < n;) {
			size_t tail = (s->head + s->count) % SER_RING_CAP;
			size_t run = SER_RING_CAP - tail;
			if (run > n - done)
				run = n - done;
			memcpy(s->ring + tail, u->buf + s->out_off + done, run);
			s->count += run;
			done += run;
		}
		s->out_off += (uint32_t)n;
		if (s->out_off < u->len)
			break;
		uw_emu_urbq_pop(&s->out_q);
		s->out_off = 0;
		uw_emu_complete(u, 0, u->len);
		return true; /* done() may have changed the queues: look again */
	}
	/* Give data to waiting IN URBs. */
	if (s->in_q.head && s->count) {
		uw_urb *u = uw_emu_urbq_pop(&s->in_q);
		size_t n = u->len < s->count ? u->len : s->count;
		for (size_t done = 0; done < n;) {
			size_t run = SER_RING_CAP - s->head;
			if (run > n - done)
				run = n - done;
			memcpy(u->buf + done, s->ring + s->head, run);
			s->head = (s->head + run) % SER_RING_CAP;
			s->count -= run;
			done += run;
		}
		uw_emu_complete(u, 0, (uint32_t)n);
		progress = true;
	}
	return progress;
}

/* ---- Pseudo-terminal ------------------------------------------------------------------- */

static void pty_watch(struct serial *s)
{
	uint32_t ev = (s->in_q.head ? UW_EV_IN : 0) | (s->out_q.head ? UW_EV_OUT : 0);
	if (ev != s->watching && uw_loop_mod_fd(s->loop, s->master, ev) == UW_OK)
		s->watching = ev;
}

static bool pty_step(struct serial *s)
{
	if (s->out_q.head) {
		uw_urb *u = s->out_q.head;
		ssize_t n = write(s->master, u->buf + s->out_off, u->len - s->out_off);
		if (n > 0) {
			s->out_off += (uint32_t)n;
			if (s->out_off == u->len) {
				uw_emu_urbq_pop(&s->out_q);
				s->out_off = 0;
				uw_emu_complete(u, 0, u->len);
			}
			return true;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			uw_logf(s->log, UW_LOG_ERR, "emu:serial: writing %s: %s", s->pty_path,
			        strerror(errno));
			uw_emu_urbq_pop(&s->out_q);
			uint32_t taken = s->out_off;
			s->out_off = 0;
			uw_emu_complete(u, UW_URB_EIO, taken);
			return true;
		}
	}
	if (s->in_q.head) {
		uw_urb *u = s->in_q.head;
		ssize_t n = read(s->master, u->buf, u->len);
		if (n > 0) {
			uw_emu_urbq_pop(&s->in_q);
			uw_emu_complete(u, 0, (uint32_t)n);
			return true;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
			uw_logf(s->log, UW_LOG_ERR, "emu:serial: reading %s: %s", s->pty_path,
			        strerror(errno));
			uw_emu_urbq_pop(&s->in_q);
			uw_emu_complete(u, UW_URB_EIO, 0);
			return true;
		}
	}
	return false;
}

/* Move data until nothing more can move; safe against done() callbacks that resubmit. */
static void pump(struct serial *s)
{
	if (s->pumping) {
		s->again = true;
		return;
	}
	s->pumping = true;
	do {
		s->again = false;
		while (s->master >= 0 ? pty_step(s) : loop_step(s))
			;
	} while (s->again);
	if (s->master >= 0)
		pty_watch(s);
	s->pumping = false;
}

static void ser_io(void *arg, uint32_t events)
{
	(void)events;
	pump(arg);
}

/* ---- Class callbacks ------------------------------------------------------------------- */

static void ser_transfer(uw_emu *e, uw_urb *u)
{
	struct serial *s = uw_emu_priv(e);
	if (u->ep == 2 && u->dir == UW_DIR_IN) {
		uw_emu_urbq_push(&s->notify_q, u);
		return;
	}
	if (u->len == 0) {
		uw_urb_complete(u, 0, 0);
		return;
	}
	uw_emu_urbq_push(u->dir == UW_DIR_IN ? &s->in_q : &s->out_q, u);
	pump(s);
}

static void ser_cancel(uw_emu *e, uw_urb *u)
{
	struct serial *s = uw_emu_priv(e);
	if (u == s->out_q.head && s->out_off) {
		/* Part of it was taken: report that much, as a device would. */
		uint32_t taken = s->out_off;
		uw_emu_urbq_pop(&s->out_q);
		s->out_off = 0;
		uw_urb_complete(u, UW_URB_ECONNRESET, taken);
	} else if (uw_emu_urbq_remove(&s->in_q, u) || uw_emu_urbq_remove(&s->out_q, u) ||
	           uw_emu_urbq_remove(&s->notify_q, u)) {
		uw_urb_complete(u, UW_URB_ECONNRESET, 0);
	} else {
		return;
	}
	if (s->master >= 0)
		pty_watch(s);
}

static void flush_all(struct serial *s, int32_t status)
{
	if (s->out_q.head && s->out_off) {
		uw_urb *u = uw_emu_urbq_pop(&s->out_q);
		uint32_t taken = s->out_off;
		s->out_off = 0;
		uw_urb_complete(u, status, taken);
	}
	s->out_off = 0;
	uw_emu_urbq_flush(&s->out_q, status);
	uw_emu_urbq_flush(&s->in_q, status);
	uw_emu_urbq_flush(&s->notify_q, status);
	if (s->master >= 0)
		pty_watch(s);
}

static void ser_configure(uw_emu *e, uint8_t config)
{
	struct serial *s = uw_emu_priv(e);
	flush_all(s, UW_URB_ESHUTDOWN);
	if (!config) {
		s->head = s->count = 0; /* the loopback queue goes with the session */
		s->line_state = 0;
	}
}

static int ser_import(uw_emu *e)
{
	struct serial *s = uw_emu_priv(e);
	memcpy(s->line_coding, default_line_coding, LINE_CODING_LEN);
	s->line_state = 0;
	return UW_OK;
}

static int ser_control(uw_emu *e, uw_urb *u)
{
	struct serial *s = uw_emu_priv(e);
	const uw_setup *c = &u->setup;
	/* Class requests to the communications interface only. */
	if ((c->bm_request_type & 0x7f) != 0x21 || c->w_index != 0)
		return UW_EMU_STALL;
	bool in = (c->bm_request_type & 0x80) != 0;
	switch (c->b_request) {
	case CDC_SET_LINE_CODING:
		if (in || c->w_length != LINE_CODING_LEN || u->len < LINE_CODING_LEN)
			return UW_EMU_STALL;
		memcpy(s->line_coding, u->buf, LINE_CODING_LEN);
		uw_logf(s->log, UW_LOG_DEBUG, "emu:serial: line coding %u baud, %u data bits",
		        (unsigned)(u->buf[0] | u->buf[1] << 8 | u->buf[2] << 16 |
		                   (uint32_t)u->buf[3] << 24),
		        u->buf[6]);
		return (int)u->len;
	case CDC_GET_LINE_CODING: {
		if (!in)
			return UW_EMU_STALL;
		uint32_t n = u->len < c->w_length ? u->len : c->w_length;
		if (n > LINE_CODING_LEN)
			n = LINE_CODING_LEN;
		if (n)
			memcpy(u->buf, s->line_coding, n);
		return (int)n;
	}
	case CDC_SET_CONTROL_LINE_STATE:
		if (in)
			return UW_EMU_STALL;
		s->line_state = c->w_value & 3;
		return 0;
	case CDC_SEND_BREAK:
		if (in)
			return UW_EMU_STALL;
		if (s->master >= 0)
			tcsendbreak(s->master, 0);
		return 0;
	default:
		return UW_EMU_STALL;
	}
}

static void ser_destroy(uw_emu *e)
{
	struct serial *s = uw_emu_priv(e);
	flush_all(s, UW_URB_ESHUTDOWN);
	if (s->master >= 0) {
		uw_loop_del_fd(s->loop, s->master);
		close(s->master);
	}
	if (s->slave >= 0)
		close(s->slave);
	free(s->ring);
	free(s);
}

static const struct uw_emu_class ser_class = {
    .kind = "serial",
    .control = ser_control,
    .transfer = ser_transfer,
    .cancel = ser_cancel,
    .configure = ser_configure,
    .import = ser_import,
    .destroy = ser_destroy,
};

static int open_pty(struct serial *s, const uw_emu_args *a)
{
	const char *step = "posix_openpt";
	s->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s->master < 0)
		goto fail;
	step = "grantpt";
	if (grantpt(s->master) < 0)
		goto fail;
	step = "unlockpt";
	if (unlockpt(s->master) < 0)
		goto fail;
	step = "ptsname";
	if (ptsname_r(s->master, s->pty_path, sizeof s->pty_path) != 0)
		goto fail;
	step = "open";
	s->slave = open(s->pty_path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (s->slave < 0)
		goto fail;
	/* Raw: no echo (it would loop OUT data back to IN), no line editing, 8-bit clean. */
	struct termios t;
	step = "tcgetattr";
	if (tcgetattr(s->slave, &t) < 0)
		goto fail;
	cfmakeraw(&t);
	step = "tcsetattr";
	if (tcsetattr(s->slave, TCSANOW, &t) < 0)
		goto fail;
	step = "fcntl";
	int fl = fcntl(s->master, F_GETFL);
	if (fl < 0 || fcntl(s->master, F_SETFL, fl | O_NONBLOCK) < 0)
		goto fail;
	int r = uw_loop_add_fd(a->loop, s->master, 0, ser_io, s);
	if (r != UW_OK) {
		uw_emu_set_err(a, "emu:serial: cannot watch the pseudo-terminal: %s",
		               uw_strerror(r));
		return r;
	}
	return UW_OK;
fail:
	uw_emu_set_err(a, "emu:serial: cannot create a pseudo-terminal (%s): %s", step,
	               strerror(errno));
	return UW_E_IO;
}

int uw_emu_serial_new(const uw_emu_args *a, uw_dev **out)
{
	static const char *const allowed[] = {"pty", NULL};
	int r = uw_emu_check_opts(a, allowed);
	if (r != UW_OK)
		return r;
	const char *pty = uw_emu_opt(a, "pty");
	if (pty && pty[0]) {
		uw_emu_set_err(a, "emu:serial: pty is a flag and takes no value");
		return UW_E_INVAL;
	}
	if (pty && !a->loop) {
		uw_emu_set_err(a, "emu:serial: pty needs an event loop");
		return UW_E_INVAL;
	}
	struct serial *s = calloc(1, sizeof *s);
	if (!s)
		return UW_E_NOMEM;
	s->loop = a->loop;
	s->log = a->log;
	s->master = s->slave = -1;
	memcpy(s->line_coding, default_line_coding, LINE_CODING_LEN);
	if (pty) {
		r = open_pty(s, a);
		if (r != UW_OK)
			goto fail;
	} else {
		s->ring = malloc(SER_RING_CAP);
		if (!s->ring) {
			r = UW_E_NOMEM;
			goto fail;
		}
	}
	uw_emu_serial(a->busid, a->spec, s->serial);
	const char *strings[] = {NULL, "usbwire", "usbwire serial (CDC-ACM)", s->serial};
	const struct uw_emu_desc desc = {
	    .device = ser_device,
	    .config = ser_config,
	    .config_len = sizeof ser_config,
	    .strings = strings,
	    .num_strings = 4,
	    .speed = UW_SPEED_HIGH,
	};
	uw_dev *d;
	r = uw_emu_new(&ser_class, &desc, a->busid, a->busnum, a->devnum, a->spec, s, a->loop, &d);
	if (r != UW_OK) {
		uw_emu_set_err(a, "emu:serial: %s", uw_strerror(r));
		goto fail;
	}
	s->e = uw_emu_from_dev(d);
	if (pty)
		uw_logf(a->log, UW_LOG_INFO, "emu:serial: pseudo-terminal %s", s->pty_path);
	*out = d;
	return UW_OK;
fail:
	if (s->master >= 0) {
		uw_loop_del_fd(a->loop, s->master);
		close(s->master);
	}
	if (s->slave >= 0)
		close(s->slave);
	free(s->ring);
	free(s);
	return r;
}
