/* SPDX-License-Identifier: MIT */
/*
 * emu_keyboard.c - emu:keyboard[,input=PATH], a full-speed HID boot keyboard (HID 1.11,
 * appendix B.1 report layout: modifiers, reserved, six key codes in; five LEDs out).
 *
 * With input=PATH it types text: every line of PATH (a regular file, typed once per session, or
 * a FIFO, read whenever a writer writes and reopened at EOF so later writers work) is typed as
 * its characters followed by Enter, US layout. Each character is a press report and a release
 * (all-zero) report, handed out one per interrupt IN URB as the host polls. Without input the
 * keyboard stays idle: interrupt URBs wait until they are cancelled.
 *
 * Input is read only while the device is configured, and only as fast as reports go out (a
 * bounded text queue; the FIFO is not watched while the queue is full), so a writer is held
 * back by the pipe, never dropped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uw_emu.h"

#define KBD_REPORT_LEN  8u
#define KBD_TEXT_CAP    4096u
/* One report per polling interval, as a real keyboard: bInterval 10 at full speed is 10 ms.
 * vhci-hcd does not pace interrupt URBs (it completes them as the server answers), so without
 * this a long line would arrive faster than any input reader takes it (evdev drops events). */
#define KBD_INTERVAL_MS 10u

/* HID class requests (HID 1.11 7.2) and descriptor types. */
enum {
	HID_GET_REPORT = 0x01,
	HID_GET_IDLE = 0x02,
	HID_GET_PROTOCOL = 0x03,
	HID_SET_REPORT = 0x09,
	HID_SET_IDLE = 0x0a,
	HID_SET_PROTOCOL = 0x0b,
	HID_DT_HID = 0x21,
	HID_DT_REPORT = 0x22,
	HID_REPORT_INPUT = 1,
	HID_REPORT_OUTPUT = 2,
};

/* Usage IDs of the keyboard page (HUT 1.12 ch. 10) and the left-shift modifier bit. */
enum { KEY_A = 0x04, KEY_1 = 0x1e, KEY_ENTER = 0x28, KEY_TAB = 0x2b, KEY_SPACE = 0x2c };
#define MOD_LSHIFT 0x02u

struct kbd {
	uw_emu *e;
	uw_loop *loop;
	const uw_logger *log;
	char *path;       /* NULL: no input */
	bool fifo;        /* else a regular file */
	int fd;           /* FIFO: open for the device's life; file: open while being typed */
	bool watched;     /* fd is on the loop */
	bool eof_newline; /* the last character queued was not '\n' */

	uint8_t text[KBD_TEXT_CAP]; /* characters still to type (ring) */
	size_t head, count;
	bool key_down;               /* the next report is the release of the current key */
	uint8_t cur[KBD_REPORT_LEN]; /* the report last handed out (GET_REPORT) */
	uw_emu_urbq pending;         /* interrupt IN URBs waiting for a report */
	bool delivering, again;      /* reentrancy guard of deliver() */
	uint64_t next_report_ms;     /* no report before this (monotonic ms) */
	uw_timer *pace;              /* armed while a report waits for its interval */

	uint8_t leds, idle, protocol;
	uint64_t skipped; /* characters without a key in the US layout */
	char serial[17];
};

/* clang-format off */
static const uint8_t kbd_report_desc[] = {
	0x05, 0x01,       /* Usage Page (Generic Desktop) */
	0x09, 0x06,       /* Usage (Keyboard) */
	0xa1, 0x01,       /* Collection (Application) */
	0x05, 0x07,       /*   Usage Page (Keyboard/Keypad) */
	0x19, 0xe0,       /*   Usage Minimum (Left Control) */
	0x29, 0xe7,       /*   Usage Maximum (Right GUI) */
	0x15, 0x00,       /*   Logical Minimum (0) */
	0x25, 0x01,       /*   Logical Maximum (1) */
	0x75, 0x01,       /*   Report Size (1) */
	0x95, 0x08,       /*   Report Count (8) */
	0x81, 0x02,       /*   Input (Data, Variable, Absolute): modifiers */
	0x95, 0x01,       /*   Report Count (1) */
	0x75, 0x08,       /*   Report Size (8) */
	0x81, 0x01,       /*   Input (Constant): reserved */
	0x95, 0x05,       /*   Report Count (5) */
	0x75, 0x01,       /*   Report Size (1) */
	0x05, 0x08,       /*   Usage Page (LEDs) */
	0x19, 0x01,       /*   Usage Minimum (Num Lock) */
	0x29, 0x05,       /*   Usage Maximum (Kana) */
	0x91, 0x02,       /*   Output (Data, Variable, Absolute): LEDs */
	0x95, 0x01,       /*   Report Count (1) */
	0x75, 0x03,       /*   Report Size (3) */
	0x91, 0x01,       /*   Output (Constant): padding */
	0x95, 0x06,       /*   Report Count (6) */
	0x75, 0x08,       /*   Report Size (8) */
	0x15, 0x00,       /*   Logical Minimum (0) */
	0x25, 0x65,       /*   Logical Maximum (101) */
	0x05, 0x07,       /*   Usage Page (Keyboard/Keypad) */
	0x19, 0x00,       /*   Usage Minimum (0) */
	0x29, 0x65,       /*   Usage Maximum (101) */
	0x81, 0x00,       /*   Input (Data, Array): key codes */
	0xc0,             /* End Collection */
};

static const uint8_t kbd_device[18] = {
	18, 1, 0x00, 0x02,  /* bcdUSB 2.00 */
	0x00, 0x00, 0x00,   /* class per interface */
	64,                 /* bMaxPacketSize0 */
	0x09, 0x12,         /* idVendor 0x1209 (pid.codes) */
	0x01, 0x00,         /* idProduct 0x0001 (pid.codes test PID) */
	0x00, 0x01,         /* bcdDevice 1.00 */
	1, 2, 3,            /* iManufacturer, iProduct, iSerialNumber */
	1,                  /* bNumConfigurations */
};

#define KBD_HID_DESC_LEN 9
#define KBD_CONFIG_LEN (9 + 9 + KBD_HID_DESC_LEN + 7)
static const uint8_t kbd_config[KBD_CONFIG_LEN] = {
	9, 2, KBD_CONFIG_LEN, 0, 1, 1, 0, 0x80, 50, /* bus-powered, 100 mA */
	9, 4, 0, 0, 1, 3, 1, 1, 0,                  /* HID, boot interface, keyboard */
	KBD_HID_DESC_LEN, HID_DT_HID, 0x11, 0x01, 0, 1, HID_DT_REPORT,
	sizeof kbd_report_desc, 0,                  /* HID 1.11, one report descriptor */
	7, 5, 0x81, 3, KBD_REPORT_LEN, 0, 10,       /* interrupt IN, 8 bytes, 10 ms */
};
/* clang-format on */

/* US layout: the key and whether shift is held, for printable ASCII. */
static bool ascii_key(unsigned char c, uint8_t *mod, uint8_t *key)
{
	static const char plain[] = "-=[]\\;'`,./";
	static const char shifted[] = "_+{}|:\"~<>?";
	static const uint8_t keys[] = {0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x33,
	                               0x34, 0x35, 0x36, 0x37, 0x38};
	static const char digits_shifted[] = ")!@#$%^&*(";
	const char *p;
	*mod = 0;
	if (c >= 'a' && c <= 'z') {
		*key = (uint8_t)(KEY_A + (c - 'a'));
	} else if (c >= 'A' && c <= 'Z') {
		*key = (uint8_t)(KEY_A + (c - 'A'));
		*mod = MOD_LSHIFT;
	} else if (c >= '1' && c <= '9') {
		*key = (uint8_t)(KEY_1 + (c - '1'));
	} else if (c == '0') {
		*key = KEY_1 + 9;
	} else if (c == '\n') {
		*key = KEY_ENTER;
	} else if (c == '\t') {
		*key = KEY_TAB;
	} else if (c == ' ') {
		*key = KEY_SPACE;
	} else if (c && (p = strchr(plain, c)) != NULL) {
		*key = keys[p - plain];
	} else if (c && (p = strchr(shifted, c)) != NULL) {
		*key = keys[p - shifted];
		*mod = MOD_LSHIFT;
	} else if (c && (p = strchr(digits_shifted, c)) != NULL) {
		*key =
		    (uint8_t)(p == digits_shifted ? KEY_1 + 9 : KEY_1 + (p - digits_shifted) - 1);
		*mod = MOD_LSHIFT;
	} else {
		return false;
	}
	return true;
}

/* The next report to send, if there is one. */
static bool next_report(struct kbd *k, uint8_t out[KBD_REPORT_LEN])
{
	memset(out, 0, KBD_REPORT_LEN);
	if (k->key_down) {
		k->key_down = false;
		return true;
	}
	while (k->count) {
		unsigned char c = k->text[k->head];
		k->head = (k->head + 1) % KBD_TEXT_CAP;
		k->count--;
		uint8_t mod, key;
		if (c == '\r')
			continue;
		if (!ascii_key(c, &mod, &key)) {
			k->skipped++;
			continue;
		}
		out[0] = mod;
		out[2] = key;
		k->key_down = true;
		return true;
	}
	return false;
}

static void queue_char(struct kbd *k, char c)
{
	k->text[(k->head + k->count) % KBD_TEXT_CAP] = (uint8_t)c;
	k->count++;
	k->eof_newline = c != '\n';
}

static void kbd_io(void *arg, uint32_t events);

static void watch(struct kbd *k, bool on)
{
	if (on == k->watched || !k->fifo || k->fd < 0)
		return;
	if (on) {
		int r = uw_loop_add_fd(k->loop, k->fd, UW_EV_IN, kbd_io, k);
		if (r != UW_OK) {
			uw_logf(k->log, UW_LOG_ERR, "emu:keyboard: cannot watch %s: %s", k->path,
			        uw_strerror(r));
			return;
		}
	} else {
		uw_loop_del_fd(k->loop, k->fd);
	}
	k->watched = on;
}

static bool active(const struct kbd *k)
{
	return uw_emu_config(k->e) != 0;
}

static int reopen_input(struct kbd *k, const char *when);

static void end_of_input(struct kbd *k)
{
	/* A last line without a newline is still typed with its Enter. */
	if (k->eof_newline && k->count < KBD_TEXT_CAP)
		queue_char(k, '\n');
	watch(k, false);
	close(k->fd);
	k->fd = -1;
	if (!k->fifo)
		return;
	/* Reopen, so the next writer finds a reader and we see its data. */
	k->fd = reopen_input(k, "nothing more is read from it");
}

/* Room for more input, keeping a place for the Enter of a last line without one. */
static size_t input_room(const struct kbd *k)
{
	size_t room = KBD_TEXT_CAP - k->count;
	return k->eof_newline && room ? room - 1 : room;
}

/* Read input while there is room for it; watch the FIFO only while there is. */
static void fill(struct kbd *k)
{
	while (k->fd >= 0 && active(k) && input_room(k)) {
		char buf[512];
		size_t room = input_room(k);
		ssize_t n = read(k->fd, buf, room < sizeof buf ? room : sizeof buf);
		if (n > 0) {
			for (ssize_t i = 0; i < n; i++)
				queue_char(k, buf[i]);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0)
			uw_logf(k->log, UW_LOG_ERR, "emu:keyboard: reading %s: %s", k->path,
			        strerror(errno));
		end_of_input(k);
		/* A reopened FIFO without a writer reads as EOF too: wait for the loop to
		 * report the next writer's data. */
		break;
	}
	watch(k, k->fd >= 0 && active(k) && input_room(k));
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void deliver(struct kbd *k);

static void pace_done(void *arg)
{
	struct kbd *k = arg;
	k->pace = NULL;
	deliver(k);
}

/* True if a report may go out now; otherwise arms the pacing timer. */
static bool may_report(struct kbd *k)
{
	uint64_t now = mono_ms();
	if (now >= k->next_report_ms)
		return true;
	if (!k->pace)
		k->pace = uw_loop_timer_add(k->loop, k->next_report_ms - now, pace_done, k);
	return false;
}

/* Hand out reports to waiting URBs, one per interval; refill the text queue as it drains. */
static void deliver(struct kbd *k)
{
	if (k->delivering) {
		k->again = true; /* a done() callback resubmitted: the outer loop goes on */
		return;
	}
	k->delivering = true;
	do {
		k->again = false;
		fill(k);
		uint8_t rep[KBD_REPORT_LEN];
		while (k->pending.head && active(k) && (k->count || k->key_down) && may_report(k) &&
		       next_report(k, rep)) {
			uw_urb *u = uw_emu_urbq_pop(&k->pending);
			k->next_report_ms = mono_ms() + KBD_INTERVAL_MS;
			memcpy(k->cur, rep, sizeof rep);
			uint32_t n = u->len < KBD_REPORT_LEN ? u->len : KBD_REPORT_LEN;
			if (n)
				memcpy(u->buf, rep, n);
			fill(k);
			uw_emu_complete(u, 0, n);
		}
	} while (k->again);
	k->delivering = false;
}

static void kbd_io(void *arg, uint32_t events)
{
	(void)events;
	deliver(arg);
}

static void kbd_transfer(uw_emu *e, uw_urb *u)
{
	struct kbd *k = uw_emu_priv(e);
	uw_emu_urbq_push(&k->pending, u);
	deliver(k);
}

static void kbd_cancel(uw_emu *e, uw_urb *u)
{
	struct kbd *k = uw_emu_priv(e);
	if (uw_emu_urbq_remove(&k->pending, u))
		uw_urb_complete(u, UW_URB_ECONNRESET, 0);
}

/* Forget what was being typed: the keyboard was unplugged or reset. */
static void reset_typing(struct kbd *k)
{
	uw_loop_timer_cancel(k->loop, k->pace);
	k->pace = NULL;
	k->head = k->count = 0;
	k->key_down = false;
	k->eof_newline = false;
	memset(k->cur, 0, sizeof k->cur);
}

static void kbd_configure(uw_emu *e, uint8_t config)
{
	struct kbd *k = uw_emu_priv(e);
	uw_emu_urbq_flush(&k->pending, UW_URB_ESHUTDOWN);
	k->key_down = false;
	memset(k->cur, 0, sizeof k->cur);
	k->idle = 125; /* 500 ms, the boot default (HID 1.11 7.2.4) */
	k->protocol = 1;
	if (config)
		fill(k);
	else
		watch(k, false);
}

/* Opens the input again (import, or a FIFO's next writer): only what it was at start-up, a
 * regular file or a FIFO, through no link, checked on the opened descriptor. A FIFO without a
 * writer opens at once (non-blocking); something else now at the path is refused with one log
 * line. Returns the descriptor or -1. */
static int reopen_input(struct kbd *k, const char *when)
{
	struct stat st;
	int fd = uw_emu_open_file(k->path, O_RDONLY, &st);
	if (fd < 0) {
		int e = errno;
		const char *kind = uw_emu_file_kind(k->path, e, NULL);
		if (kind)
			uw_logf(k->log, UW_LOG_WARN,
			        "emu:keyboard: %s is now %s, not the %s it was: %s", k->path, kind,
			        k->fifo ? "FIFO" : "regular file", when);
		else
			uw_logf(k->log, UW_LOG_WARN, "emu:keyboard: cannot open %s: %s: %s",
			        k->path, strerror(e), when);
		return -1;
	}
	if (k->fifo ? !S_ISFIFO(st.st_mode) : !S_ISREG(st.st_mode)) {
		uw_logf(k->log, UW_LOG_WARN, "emu:keyboard: %s is now %s, not the %s it was: %s",
		        k->path, uw_emu_file_kind(k->path, 0, &st),
		        k->fifo ? "FIFO" : "regular file", when);
		close(fd);
		return -1;
	}
	if (!k->fifo) { /* regular-file reads never wait: plain blocking semantics */
		int fl = fcntl(fd, F_GETFL);
		if (fl >= 0)
			(void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	}
	return fd;
}

static int kbd_import(uw_emu *e)
{
	struct kbd *k = uw_emu_priv(e);
	reset_typing(k);
	if (k->path && !k->fifo) {
		/* A regular file is typed once per session, from its start. */
		if (k->fd >= 0)
			close(k->fd);
		k->fd = reopen_input(k, "import refused");
		if (k->fd < 0)
			return UW_E_INVAL;
	} else if (k->path && k->fd < 0) {
		/* The FIFO could not be reopened after a writer left: try again now. */
		k->fd = reopen_input(k, "import refused");
		if (k->fd < 0)
			return UW_E_INVAL;
	}
	return UW_OK;
}

static void kbd_release(uw_emu *e)
{
	struct kbd *k = uw_emu_priv(e);
	reset_typing(k);
	watch(k, false);
	if (k->path && !k->fifo && k->fd >= 0) {
		close(k->fd);
		k->fd = -1;
	}
}

static int kbd_control(uw_emu *e, uw_urb *u)
{
	struct kbd *k = uw_emu_priv(e);
	const uw_setup *c = &u->setup;
	uint32_t room = u->len < c->w_length ? u->len : c->w_length;
	if ((c->bm_request_type & 0x1f) != 1 || c->w_index != 0 || !uw_emu_config(e))
		return UW_EMU_STALL; /* only interface 0, only when configured */
	const void *src = NULL;
	size_t len = 0;
	uint8_t one;
	switch (c->bm_request_type << 8 | c->b_request) {
	case 0x8100 | 6: /* standard GET_DESCRIPTOR to the interface */
		if ((c->w_value >> 8) == HID_DT_REPORT) {
			src = kbd_report_desc;
			len = sizeof kbd_report_desc;
		} else if ((c->w_value >> 8) == HID_DT_HID) {
			src = kbd_config + 18;
			len = KBD_HID_DESC_LEN;
		} else {
			return UW_EMU_STALL;
		}
		break;
	case 0xa100 | HID_GET_REPORT:
		if ((c->w_value >> 8) == HID_REPORT_INPUT) {
			src = k->cur;
			len = sizeof k->cur;
		} else if ((c->w_value >> 8) == HID_REPORT_OUTPUT) {
			src = &k->leds;
			len = 1;
		} else {
			return UW_EMU_STALL;
		}
		break;
	case 0x2100 | HID_SET_REPORT:
		if ((c->w_value >> 8) != HID_REPORT_OUTPUT || u->len < 1)
			return UW_EMU_STALL;
		if (k->leds != u->buf[0])
			uw_logf(k->log, UW_LOG_DEBUG, "emu:keyboard: LEDs 0x%02x", u->buf[0]);
		k->leds = u->buf[0];
		return (int)u->len;
	case 0xa100 | HID_GET_IDLE:
		src = &k->idle;
		len = 1;
		break;
	case 0x2100 | HID_SET_IDLE:
		/* Kept for GET_IDLE; reports are only sent on change (Linux sets 0 anyway). */
		k->idle = (uint8_t)(c->w_value >> 8);
		return 0;
	case 0xa100 | HID_GET_PROTOCOL:
		one = k->protocol;
		src = &one;
		len = 1;
		break;
	case 0x2100 | HID_SET_PROTOCOL:
		if (c->w_value > 1)
			return UW_EMU_STALL;
		k->protocol = (uint8_t)c->w_value; /* the boot report is our only report */
		return 0;
	default:
		return UW_EMU_STALL;
	}
	uint32_t n = len < room ? (uint32_t)len : room;
	if (n)
		memcpy(u->buf, src, n);
	return (int)n;
}

static void kbd_destroy(uw_emu *e)
{
	struct kbd *k = uw_emu_priv(e);
	uw_emu_urbq_flush(&k->pending, UW_URB_ESHUTDOWN);
	uw_loop_timer_cancel(k->loop, k->pace);
	watch(k, false);
	if (k->fd >= 0)
		close(k->fd);
	if (k->skipped)
		uw_logf(k->log, UW_LOG_INFO, "emu:keyboard: %llu characters had no key",
		        (unsigned long long)k->skipped);
	free(k->path);
	free(k);
}

static const struct uw_emu_class kbd_class = {
    .kind = "keyboard",
    .control = kbd_control,
    .transfer = kbd_transfer,
    .cancel = kbd_cancel,
    .configure = kbd_configure,
    .import = kbd_import,
    .release = kbd_release,
    .destroy = kbd_destroy,
};

int uw_emu_keyboard_new(const uw_emu_args *a, uw_dev **out)
{
	static const char *const allowed[] = {"input", NULL};
	int r = uw_emu_check_opts(a, allowed);
	if (r != UW_OK)
		return r;
	struct kbd *k = calloc(1, sizeof *k);
	if (!k)
		return UW_E_NOMEM;
	k->loop = a->loop;
	k->log = a->log;
	k->fd = -1;
	k->idle = 125;
	k->protocol = 1;
	const char *input = uw_emu_opt(a, "input");
	if (input) {
		struct stat st;
		if (!input[0]) {
			uw_emu_set_err(a, "emu:keyboard: input needs a path (input=PATH)");
			r = UW_E_INVAL;
			goto fail;
		}
		k->fd = uw_emu_open_file(input, O_RDONLY, &st);
		if (k->fd < 0) {
			int e = errno;
			const char *kind = uw_emu_file_kind(input, e, NULL);
			if (kind)
				uw_emu_set_err(
				    a, "emu:keyboard: %s is %s, neither a regular file nor a FIFO",
				    input, kind);
			else
				uw_emu_set_err(a, "emu:keyboard: cannot open %s: %s", input,
				               strerror(e));
			r = kind          ? UW_E_INVAL
			    : e == EACCES ? UW_E_ACCESS
			    : e == ENOENT ? UW_E_NOTFOUND
			                  : UW_E_IO;
			goto fail;
		}
		if (!S_ISFIFO(st.st_mode) && !S_ISREG(st.st_mode)) {
			uw_emu_set_err(a,
			               "emu:keyboard: %s is %s, neither a regular file nor a FIFO",
			               input, uw_emu_file_kind(input, 0, &st));
			r = UW_E_INVAL;
			goto fail;
		}
		k->fifo = S_ISFIFO(st.st_mode);
		k->path = strdup(input);
		if (!k->path) {
			r = UW_E_NOMEM;
			goto fail;
		}
		/* A regular file is reopened (and checked again) at every import; a FIFO stays
		 * open, non-blocking, for the device's life. */
		if (!k->fifo) {
			close(k->fd);
			k->fd = -1;
		}
		if (k->fifo && !a->loop) {
			uw_emu_set_err(a, "emu:keyboard: a FIFO input needs an event loop");
			r = UW_E_INVAL;
			goto fail;
		}
	}
	uw_emu_serial(a->busid, a->spec, k->serial);
	const char *strings[] = {NULL, "usbwire", "usbwire keyboard", k->serial};
	const struct uw_emu_desc desc = {
	    .device = kbd_device,
	    .config = kbd_config,
	    .config_len = sizeof kbd_config,
	    .strings = strings,
	    .num_strings = 4,
	    .speed = UW_SPEED_FULL,
	};
	uw_dev *d;
	r = uw_emu_new(&kbd_class, &desc, a->busid, a->busnum, a->devnum, a->spec, k, a->loop, &d);
	if (r != UW_OK) {
		uw_emu_set_err(a, "emu:keyboard: %s", uw_strerror(r));
		goto fail;
	}
	k->e = uw_emu_from_dev(d);
	*out = d;
	return UW_OK;
fail:
	if (k->fd >= 0)
		close(k->fd);
	free(k->path);
	free(k);
	return r;
}
