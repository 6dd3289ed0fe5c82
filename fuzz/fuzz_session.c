/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: a whole server session. The input is a client's byte stream, written into one end
 * of a socketpair whose other end is served by a live in-process uw_server on its own uw_loop, so
 * the session logic is fuzzed, not only the decoders: op phase, import, CMD_SUBMIT/CMD_UNLINK
 * bookkeeping, budgets and backpressure, the ordered reply queue, device removal and teardown.
 *
 * Exported devices (fresh for every input):
 *   99-1  emu:sink    (bulk source/sink; isochronous in altsetting 1), completes at once
 *   99-2  emu:serial  (CDC-ACM loopback): bulk IN and interrupt IN wait until data or a cancel
 *   99-3  a scripted device defined here, whose behaviour is chosen by each URB's `interval`
 *         field (see struct hold): completion now, after some loop rounds or only when
 *         cancelled; cancels that take effect at once or a round later, or that come too late
 *         (the URB finishes with its own result: "finished before the unlink"); statuses,
 *         short or over-long actual lengths, ISO packet results, and an unplug
 *         (uw_server_remove_device). Endpoints: 1 bulk, 2 interrupt IN, 3 isochronous, 4 bulk
 *         OUT / isochronous IN.
 *   99-4  emu:storage on a 64 KiB in-memory image (memfd), its medium I/O done inline
 *         (uw_emu_storage_inline_io()): a job's result still arrives a loop round later.
 * The emulated devices (99-1, 99-2, 99-4) sit behind a shim that decides, per URB, when the
 * server sees a completion (see struct late): as the device completes it, some loop rounds
 * later, after more of the client's stream is written, or out of order (after the device's
 * next completion), so that completions race with new input.
 * Everything runs on this thread: no worker threads at work, no real time (the handshake
 * deadline is far away); the scripted device's and the shim's delays are zero-millisecond loop
 * timers.
 *
 * Input: byte 0 = mode, byte 1 = configuration, then the client's bytes.
 *   mode bits 0-2  chunking: the stream is written in pieces of {all, 1, 3, 8, 40, 48, 100, 512}
 *                  bytes with one loop round between pieces
 *        bits 3-4  prelude written before the input: 0 none, 1 OP_REQ_IMPORT of 99-1, 2 import of
 *                  99-1 and SET_CONFIGURATION(1), 3 import of 99-2 and SET_CONFIGURATION(1)
 *        bit 5     lazy client: reads replies only when its writes block (or at the end)
 *        bits 6-7  teardown: 0 the client closes, 1 the client half-closes (SHUT_WR),
 *                  2 uw_server_shutdown(), 3 uw_server_free() with the session still open
 *                  (without a second client: right after the stream, the loop not settled)
 *   config bits 0-1  max_urbs {1, 3, 16, 1024};  bits 2-3 max_bytes {1, 16 KiB, 1 MiB, 64 MiB}
 *          bit 4     emu:sink,pattern=1;        bit 5 small socket send buffers
 *          bits 6-7  a second client once the first one's stream is in: 0 none, 1 it asks for
 *                    the device list, 2 it imports the first one's device (99-1 if none),
 *                    3 it imports another device; it stays connected until the teardown
 * The devid of busid 99-N is 99 << 16 | N.
 * Client bytes that begin with 0xb0 0x75 are a storage script instead (see "Storage scripts"
 * below): steps that expand into BOT commands, data stages and class requests for 99-4 with
 * their completion timing, and a choice of small in-flight limits. fuzz/session.dict has the
 * magic and the words of raw streams for emu:storage (run with -dict=fuzz/session.dict).
 *
 * Oracles beyond "no crash, no leak":
 *  - Every byte the server writes back decodes with the client-side decoders (uw_wire.h) in the
 *    order a client reads them: the op reply that the request calls for (nothing after a refusal
 *    or a device list), then RET_SUBMIT/RET_UNLINK framed by what was submitted. The target
 *    mirrors the server's parse of its own stream (same decoders, the device's endpoint table),
 *    so it knows each seqnum submitted and unlinked: a RET_SUBMIT for a seqnum with no
 *    outstanding CMD_SUBMIT, a second answer, a RET_UNLINK for no CMD_UNLINK, a RET_UNLINK(0)
 *    ahead of its target's RET_SUBMIT, a RET_UNLINK(-ECONNRESET) for a target already answered,
 *    non-zero devid/direction/ep/padding, number_of_packets or start_frame not echoed, or an
 *    ISO error_count that disagrees with the packets all abort().
 *  - The server does not spin: the loop runs one round at a time (a zero-millisecond timer stops
 *    it), and a long run of rounds in which the loop has events to handle but nothing observable
 *    happens aborts. The loop's epoll descriptor is polled to know whether it has events
 *    (found through /proc; without it this check is off).
 *  - Nothing is left unanswered: when the session is still open, the whole stream was sent and
 *    framed and the budgets cannot have paused it, then once the loop is idle every CMD_UNLINK
 *    has been answered, and every CMD_SUBMIT that the device does not hold by design
 *    (emu:serial and emu:storage hold bulk URBs until they have something to move).
 *  - The scripted device never holds more URBs or buffer bytes than the session budgets allow.
 *  - The second client's answer agrees with the server's state: a device list has every device
 *    that is neither imported nor gone and only those; an import of the first client's device
 *    is refused as busy while it is imported, as unknown once it is gone, else accepted.
 *  - After the clients close or half-close, or after uw_server_shutdown(), every session ends and
 *    every device is released (every device here completes cancelled URBs within a round), and
 *    the shutdown callback has run.
 * Frames of the stream whose endpoint type depends on a configuration change still in flight
 * (SET_CONFIGURATION, SET_INTERFACE) are held back until that request has been answered, so the
 * mirror frames them with the device's real endpoint table; so is a CMD_UNLINK whose seqnum an
 * unanswered CMD_UNLINK already has (no client could tell their answers apart).
 * Set USBWIRE_FUZZ_LOG=1 to see the server's log on stderr.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uw_emu.h"
#include "uw_server.h"
#include "uw_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NDEV        4
#define SDEV        2 /* index of the scripted device */
#define STDEV       3 /* index of emu:storage */
#define IMG_SIZE    (64u << 10)
#define BUSNUM      99u
#define SPIN_ROUNDS 10000u /* busy rounds without visible progress before we call it a hang */
#define PRELUDE_SEQ 0x7fffffffu

__attribute__((format(printf, 1, 2), noreturn)) static void bug(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("fuzz_session: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A CMD_SUBMIT of the stream, as the mirror parsed it. */
struct sub {
	uint32_t seq, msg; /* msg: index of the message in the stream */
	uint32_t dir;
	int xfer;
	int32_t len, np, start_frame, interval;
	const uint8_t *iso; /* the raw descriptors sent, inside the stream */
	bool answered;
	bool sync;     /* a configuration change: frames after it wait for its answer */
	bool unlinked; /* a CMD_UNLINK of it followed (check_complete() only) */
};

/* A CMD_UNLINK of the stream. */
struct unl {
	uint32_t seq, target, msg;
	bool answered;
};

enum expect { EXP_NOTHING, EXP_IMPORT, EXP_DEVLIST };
enum rx_state { RX_OP, RX_HDR, RX_DATA, RX_ISO, RX_EOF_ONLY };

struct sdev;
struct shim;

struct fz {
	uw_logger log;
	uw_loop *loop;
	uw_server *srv;
	uw_dev *devs[NDEV];       /* NULL once destroyed */
	struct sdev *sd;          /* the scripted device while it exists */
	struct shim *shims[NDEV]; /* the emulated devices' shims while they exist */
	int epfd;                 /* the loop's epoll descriptor, or -1 if it could not be found */
	bool busy;                /* the loop had work left at the end of the last round */
	unsigned max_urbs;        /* the session budgets */
	unsigned script_urbs;     /* a storage script's max_urbs, or 0 */
	size_t max_bytes;
	bool sd_done; /* uw_server_shutdown()'s callback ran */
	int cfd, sfd;
	int cfd2, sfd2; /* the second client, or -1 */

	/* The client's stream and how much of it was written. */
	uint8_t *stream;
	size_t len, sent;
	size_t chunk;
	bool lazy, eof, gone;
	bool stream_over; /* feed() is done: nothing more of the stream will be written */

	/* The mirror of the server's parse of the stream. */
	size_t mpos;
	bool mend, mop;
	int mdev; /* index of the imported device */
	uint32_t devid, nmsg;
	bool import_pending;
	unsigned sync_pending;
	struct sub *subs;
	size_t nsubs, capsubs;
	struct unl *unls;
	size_t nunls, capunls;

	/* The reply decoder. */
	enum expect expect;
	bool import_ok;
	char busid[UW_BUSID_SIZE];
	enum rx_state rx;
	uint8_t acc[UW_URB_HDR_LEN + UW_MAX_ISO_PACKETS * UW_ISO_DESC_LEN];
	size_t acc_len, want, skip;
	uw_urb_hdr cur;
	size_t cur_data; /* payload bytes of the reply being read */
	struct sub *cur_sub;
	uint8_t rbuf[65536];
};

static struct fz g;

static void *grow(void *p, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return p;
	size_t c = *cap ? *cap * 2 : 64;
	void *q = realloc(p, c * elem);
	if (!q)
		abort();
	*cap = c;
	return q;
}

static void log_line(void *user, int level, const char *line)
{
	(void)user;
	if (getenv("USBWIRE_FUZZ_LOG"))
		fprintf(stderr, "[%d] %s\n", level, line);
}

/* ---- The scripted device ------------------------------------------------------------------ */

/*
 * The script of a URB is its `interval` field:
 *   bits 0-1   when it completes: 0 inside submit, 1 one round later, 2 after 1 + bits 8-10
 *              rounds, 3 only when cancelled (or at unplug/destroy)
 *   bits 2-3   on cancel: 0 -ECONNRESET at once, 1 -ECONNRESET a round later, 2 its normal
 *              result a round later, 3 its normal result at once
 *   bits 4-6   status: 0, 0, -EPIPE, -EIO, -EPROTO, -EOVERFLOW, -EREMOTEIO, -ETIMEDOUT
 *   bits 12-13 actual length: the whole buffer, half, none, or more than the buffer (by 1 +
 *              bits 16-23; the server must clamp it); ISO: the same per packet
 *   bit 14     unplug the device (uw_server_remove_device) a round after this URB completes
 */
struct hold {
	uw_urb *u;
	uint32_t script;
	unsigned ticks; /* rounds until completion; UINT32_MAX: not scheduled */
	bool forced;    /* complete with `status` instead of the script's result */
	int32_t status;
};

struct sdev {
	uw_dev dev;
	struct fz *f;
	struct hold *h;
	size_t n, cap;
	uw_timer *tick, *unplug;
	bool gone;
	bool destroyed; /* destroy() ran while a tick was completing URBs: free at its end */
	int depth;
};

static const int32_t sd_statuses[8] = {0,
                                       0,
                                       UW_URB_EPIPE,
                                       UW_URB_EIO,
                                       UW_URB_EPROTO,
                                       UW_URB_EOVERFLOW,
                                       UW_URB_EREMOTEIO,
                                       UW_URB_ETIMEDOUT};

static int sd_ep_type_of(uint32_t ep, uint32_t dir)
{
	switch (ep) {
	case 0:
		return UW_XFER_CONTROL;
	case 1:
		return UW_XFER_BULK;
	case 2:
		return dir == UW_DIR_IN ? UW_XFER_INT : UW_XFER_UNKNOWN;
	case 3:
		return UW_XFER_ISO;
	case 4:
		return dir == UW_DIR_IN ? UW_XFER_ISO : UW_XFER_BULK;
	default:
		return UW_XFER_UNKNOWN;
	}
}

static uint32_t sd_amount(uint32_t script, uint32_t len)
{
	switch ((script >> 12) & 3) {
	case 0:
		return len;
	case 1:
		return len / 2;
	case 2:
		return 0;
	default:
		return len + 1 + ((script >> 16) & 0xff);
	}
}

static void sd_on_unplug(void *arg);

/* Completes u with its scripted result (or the forced status). */
static void sd_finish(struct sdev *sd, uw_urb *u, uint32_t s, bool forced, int32_t fst)
{
	int32_t st = forced ? fst : sd_statuses[(s >> 4) & 7];
	uint32_t actual = 0;
	uint8_t fill = (uint8_t)(u->seqnum * 31 + 7);
	if (u->xfer == UW_XFER_ISO) {
		for (uint32_t i = 0; i < u->num_iso; i++) {
			uw_iso_pkt *p = &u->iso[i];
			uint32_t a = forced ? 0 : sd_amount(s, p->length);
			uint32_t n = a < p->length ? a : p->length;
			if (u->dir == UW_DIR_IN && n)
				memset(u->buf + p->offset, fill, n);
			p->actual_length = a;
			p->status = forced ? fst : (st && (i & 1)) ? UW_URB_EXDEV : 0;
			actual += n;
		}
		if (!forced)
			st = 0; /* ISO errors are per packet */
	} else if (!forced) {
		actual = sd_amount(s, u->len);
		uint32_t n = actual < u->len ? actual : u->len;
		if (u->dir == UW_DIR_IN && n)
			memset(u->buf, fill, n);
	}
	if (!forced && (s & (1u << 14)) && !sd->gone && !sd->unplug)
		sd->unplug = uw_loop_timer_add(sd->f->loop, 0, sd_on_unplug, sd);
	uw_urb_complete(u, st, actual);
}

static void sd_free(struct sdev *sd)
{
	free(sd->h);
	free(sd);
}

static void sd_on_tick(void *arg);

static void sd_arm(struct sdev *sd)
{
	if (sd->tick)
		return;
	for (size_t i = 0; i < sd->n; i++) {
		if (sd->h[i].ticks != UINT32_MAX) {
			sd->tick = uw_loop_timer_add(sd->f->loop, 0, sd_on_tick, sd);
			if (!sd->tick)
				abort();
			return;
		}
	}
}

static void sd_on_tick(void *arg)
{
	struct sdev *sd = arg;
	sd->tick = NULL;
	/* Take the due URBs out first: completing one may submit, cancel or end the session. */
	struct hold *due = malloc((sd->n ? sd->n : 1) * sizeof *due);
	if (!due)
		abort();
	size_t nd = 0, k = 0;
	for (size_t i = 0; i < sd->n; i++) {
		struct hold h = sd->h[i];
		if (h.ticks != UINT32_MAX && --h.ticks == 0)
			due[nd++] = h;
		else
			sd->h[k++] = h;
	}
	sd->n = k;
	sd->depth++;
	for (size_t i = 0; i < nd; i++)
		sd_finish(sd, due[i].u, due[i].script, due[i].forced, due[i].status);
	sd->depth--;
	free(due);
	if (sd->destroyed) {
		if (sd->depth == 0)
			sd_free(sd);
		return;
	}
	sd_arm(sd);
}

static void sd_on_unplug(void *arg)
{
	struct sdev *sd = arg;
	sd->unplug = NULL;
	sd->gone = true;
	/* Unplugged: what the device holds fails a round later. */
	for (size_t i = 0; i < sd->n; i++) {
		sd->h[i].ticks = 1;
		sd->h[i].forced = true;
		sd->h[i].status = UW_URB_ESHUTDOWN;
	}
	sd_arm(sd);
	/* Last: with nobody importing it, the device is destroyed right here. */
	if (uw_server_remove_device(sd->f->srv, &sd->dev) != UW_OK)
		bug("uw_server_remove_device() refused a device it exports");
}

static int sd_import(uw_dev *d)
{
	struct sdev *sd = d->priv;
	return sd->gone ? UW_E_NODEV : UW_OK;
}

static void sd_submit(uw_dev *d, uw_urb *u)
{
	struct sdev *sd = d->priv;
	uint32_t s = (uint32_t)u->interval;
	if (sd->gone) {
		uw_urb_complete(u, UW_URB_ESHUTDOWN, 0);
		return;
	}
	/* The server keeps its budgets: with URBs held, no more than max_urbs in flight, and no
	 * more buffer bytes than max_bytes (only a lone URB may be larger). */
	uint64_t held = u->len;
	for (size_t i = 0; i < sd->n; i++)
		held += sd->h[i].u->len;
	if (sd->n + 1 > sd->f->max_urbs || (sd->n && held > sd->f->max_bytes))
		bug("URB %zu in flight (%llu buffer bytes) on a budget of %u URBs and %zu bytes",
		    sd->n + 1, (unsigned long long)held, sd->f->max_urbs, sd->f->max_bytes);
	unsigned when = s & 3;
	if (when == 0) {
		sd_finish(sd, u, s, false, 0);
		return;
	}
	sd->h = grow(sd->h, &sd->cap, sd->n, sizeof *sd->h);
	unsigned ticks = when == 1 ? 1 : when == 2 ? 1 + ((s >> 8) & 7) : UINT32_MAX;
	sd->h[sd->n++] = (struct hold){.u = u, .script = s, .ticks = ticks};
	sd_arm(sd);
}

static void sd_cancel(uw_dev *d, uw_urb *u)
{
	struct sdev *sd = d->priv;
	size_t i = 0;
	while (i < sd->n && sd->h[i].u != u)
		i++;
	if (i == sd->n)
		return; /* not held: finished, or completing right now */
	struct hold h = sd->h[i];
	switch ((h.script >> 2) & 3) {
	case 0:
	case 3:
		sd->h[i] = sd->h[--sd->n];
		if (((h.script >> 2) & 3) == 0)
			uw_urb_complete(u, UW_URB_ECONNRESET, 0);
		else
			sd_finish(sd, u, h.script, h.forced, h.status);
		return;
	case 1:
		sd->h[i].forced = true;
		sd->h[i].status = UW_URB_ECONNRESET;
		sd->h[i].ticks = 1;
		break;
	default:
		sd->h[i].ticks = 1; /* its own result, a round later */
		break;
	}
	sd_arm(sd);
}

static int sd_ep_type(uw_dev *d, unsigned ep, unsigned dir)
{
	(void)d;
	return sd_ep_type_of(ep, dir);
}

static void sd_release(uw_dev *d)
{
	struct sdev *sd = d->priv;
	if (sd->n)
		bug("the scripted device was released with %zu URBs outstanding", sd->n);
}

static void sd_destroy(uw_dev *d)
{
	struct sdev *sd = d->priv;
	struct fz *f = sd->f;
	f->devs[SDEV] = NULL;
	f->sd = NULL;
	uw_loop_timer_cancel(f->loop, sd->tick);
	uw_loop_timer_cancel(f->loop, sd->unplug);
	sd->tick = sd->unplug = NULL;
	/* Complete what is still held (the server is being freed). */
	while (sd->n) {
		uw_urb *u = sd->h[--sd->n].u;
		uw_urb_complete(u, UW_URB_ESHUTDOWN, 0);
	}
	if (sd->depth) {
		sd->destroyed = true;
		return;
	}
	sd_free(sd);
}

static const struct uw_dev_ops sd_ops = {
    .import = sd_import,
    .submit = sd_submit,
    .cancel = sd_cancel,
    .ep_type = sd_ep_type,
    .release = sd_release,
    .destroy = sd_destroy,
};

static uw_dev *sd_new(struct fz *f)
{
	struct sdev *sd = calloc(1, sizeof *sd);
	if (!sd)
		abort();
	sd->f = f;
	uw_dev *d = &sd->dev;
	d->ops = &sd_ops;
	d->priv = sd;
	d->loop = f->loop;
	d->info = (uw_usb_device){.path = "/fuzz/99-3",
	                          .busid = "99-3",
	                          .busnum = BUSNUM,
	                          .devnum = 3,
	                          .speed = UW_SPEED_HIGH,
	                          .id_vendor = 0x1d6b,
	                          .id_product = 0x0104,
	                          .num_configurations = 1,
	                          .configuration_value = 1,
	                          .num_interfaces = 1};
	d->ifaces[0] = (uw_usb_interface){0xff, 0, 0};
	snprintf(d->spec, sizeof d->spec, "fuzz:script");
	snprintf(d->name, sizeof d->name, "scripted fuzz device");
	f->sd = sd;
	return d;
}

/* ---- The completion shim in front of the emulated devices ---------------------------------- */

/*
 * When the server sees a URB's completion is chosen by bits 24-31 of its `interval` (which the
 * emulated devices ignore for bulk, control and interrupt transfers):
 *   bits 28-29  0 as the device completes it (inside submit, cancel or its own event),
 *               1 after 1 + bits 24-26 loop rounds,
 *               2 after the client wrote 48 * (1 + bits 24-26) more bytes of its stream (about
 *                 that many more messages), or once the stream is all written,
 *               3 out of order: right after the device's next completion that the server sees,
 *                 or after 2 rounds if there is none
 * Completions held back are delivered from a loop timer, as a device's own event would be. A
 * cancel of a URB that the device has completed already does nothing (its result stands: it
 * finished before the unlink).
 */
struct late {
	uw_urb *u;
	uint32_t how;
	unsigned left;  /* rounds (1, 3) until delivery */
	size_t at;      /* how 2: deliver once f->sent reaches this */
	bool completed; /* the device completed it; waiting for delivery */
};

struct shim {
	uw_dev dev; /* what the server sees */
	uw_dev *in; /* the emulated device */
	struct fz *f;
	struct late *q;
	size_t n, cap;
	void (*server_done)(uw_urb *u);
	uw_timer *tick;
	int idx;
	int depth;
	bool destroyed;
};

static void shim_free(struct shim *sh)
{
	free(sh->q);
	free(sh);
}

static void shim_on_tick(void *arg);

static bool late_due(const struct fz *f, const struct late *l)
{
	return l->how == 2 ? f->sent >= l->at || f->stream_over : l->left == 0;
}

/* A timer for the next round if a held completion needs rounds counted or is due. */
static void shim_arm(struct shim *sh)
{
	if (sh->tick || sh->destroyed)
		return;
	for (size_t i = 0; i < sh->n; i++) {
		const struct late *l = &sh->q[i];
		if (l->completed && (l->how != 2 || late_due(sh->f, l))) {
			sh->tick = uw_loop_timer_add(sh->f->loop, 0, shim_on_tick, sh);
			if (!sh->tick)
				abort();
			return;
		}
	}
}

/* Hands u's completion to the server (u was taken out of the queue). */
static void shim_deliver(struct shim *sh, uw_urb *u)
{
	u->done = sh->server_done;
	u->done(u);
}

/* Delivers the queued completions that are due, and the out-of-order ones waiting behind them
 * when anything was delivered (first: unless `all`, only those due). */
static void shim_run(struct shim *sh, bool all)
{
	sh->depth++;
	for (;;) {
		size_t i = 0;
		for (; i < sh->n; i++) {
			struct late *l = &sh->q[i];
			if (!l->completed)
				continue;
			if (all || late_due(sh->f, l))
				break;
		}
		if (i == sh->n)
			break;
		uw_urb *u = sh->q[i].u;
		sh->q[i] = sh->q[--sh->n];
		shim_deliver(sh, u);
		/* Out of order: the ones waiting for another completion go right after it. */
		for (size_t k = 0; k < sh->n; k++)
			if (sh->q[k].completed && sh->q[k].how == 3)
				sh->q[k].left = 0;
	}
	sh->depth--;
}

static void shim_on_tick(void *arg)
{
	struct shim *sh = arg;
	sh->tick = NULL;
	for (size_t i = 0; i < sh->n; i++)
		if (sh->q[i].completed && sh->q[i].how != 2 && sh->q[i].left)
			sh->q[i].left--;
	shim_run(sh, false);
	if (sh->destroyed) {
		if (sh->depth == 0)
			shim_free(sh);
		return;
	}
	shim_arm(sh);
}

static struct late *shim_find(struct shim *sh, const uw_urb *u)
{
	for (size_t i = 0; i < sh->n; i++)
		if (sh->q[i].u == u)
			return &sh->q[i];
	return NULL;
}

/* The device completed u: hold it back as its submit said. */
static void shim_done(uw_urb *u)
{
	for (int k = 0; k < NDEV; k++) {
		struct shim *sh = g.shims[k];
		struct late *l = sh ? shim_find(sh, u) : NULL;
		if (!l)
			continue;
		if (l->completed)
			bug("URB seqnum %u completed twice by %s", u->seqnum, sh->in->spec);
		l->completed = true;
		u->done = sh->server_done;
		if (sh->destroyed) {
			/* Being destroyed with the server: nobody waits any more. */
			*l = sh->q[--sh->n];
			shim_deliver(sh, u);
			return;
		}
		shim_arm(sh);
		return;
	}
	bug("a completion of a URB that no shim holds (seqnum %u)", u->seqnum);
}

static void shim_submit(uw_dev *d, uw_urb *u)
{
	struct shim *sh = d->priv;
	uint32_t t = (uint32_t)u->interval >> 24;
	uint32_t how = (t >> 4) & 3;
	sh->server_done = u->done;
	if (how == 0 || u->xfer == UW_XFER_ISO) {
		sh->in->ops->submit(sh->in, u);
		return;
	}
	sh->q = grow(sh->q, &sh->cap, sh->n, sizeof *sh->q);
	unsigned k = 1 + (t & 7);
	sh->q[sh->n++] = (struct late){.u = u,
	                               .how = how,
	                               .left = how == 1   ? k
	                                       : how == 3 ? 2
	                                                  : 0,
	                               .at = sh->f->sent + 48u * k};
	u->done = shim_done;
	sh->in->ops->submit(sh->in, u);
}

static void shim_cancel(uw_dev *d, uw_urb *u)
{
	struct shim *sh = d->priv;
	struct late *l = shim_find(sh, u);
	if (l && l->completed)
		return; /* finished before the unlink; its completion is on its way */
	sh->in->ops->cancel(sh->in, u);
}

static int shim_ep_type(uw_dev *d, unsigned ep, unsigned dir)
{
	struct shim *sh = d->priv;
	return sh->in->ops->ep_type(sh->in, ep, dir);
}

static void shim_sync_info(struct shim *sh)
{
	sh->dev.info = sh->in->info;
	memcpy(sh->dev.ifaces, sh->in->ifaces, sizeof sh->dev.ifaces);
}

static int shim_import(uw_dev *d)
{
	struct shim *sh = d->priv;
	int r = sh->in->ops->import ? sh->in->ops->import(sh->in) : UW_OK;
	shim_sync_info(sh);
	return r;
}

static void shim_release(uw_dev *d)
{
	struct shim *sh = d->priv;
	if (sh->n)
		bug("%s released with %zu completions not delivered", sh->in->spec, sh->n);
	if (sh->in->ops->release)
		sh->in->ops->release(sh->in);
	shim_sync_info(sh);
}

static void shim_notify(uw_dev *in, int event)
{
	struct shim *sh = in->owner;
	shim_sync_info(sh);
	if (sh->dev.notify)
		sh->dev.notify(&sh->dev, event);
}

static void shim_destroy(uw_dev *d)
{
	struct shim *sh = d->priv;
	struct fz *f = sh->f;
	uw_loop_timer_cancel(f->loop, sh->tick);
	sh->tick = NULL;
	sh->destroyed = true;
	sh->in->ops->destroy(sh->in); /* completes what it holds: delivered at once */
	shim_run(sh, true);
	f->shims[sh->idx] = NULL;
	f->devs[sh->idx] = NULL;
	if (sh->depth == 0)
		shim_free(sh);
}

static void shims_arm(struct fz *f)
{
	for (int i = 0; i < NDEV; i++)
		if (f->shims[i])
			shim_arm(f->shims[i]);
}

static const struct uw_dev_ops shim_ops = {
    .import = shim_import,
    .submit = shim_submit,
    .cancel = shim_cancel,
    .ep_type = shim_ep_type,
    .release = shim_release,
    .destroy = shim_destroy,
};

static uw_dev *shim_new(struct fz *f, uw_dev *in, int idx)
{
	struct shim *sh = calloc(1, sizeof *sh);
	if (!sh)
		abort();
	sh->f = f;
	sh->in = in;
	sh->idx = idx;
	in->owner = sh;
	in->notify = shim_notify;
	uw_dev *d = &sh->dev;
	d->ops = &shim_ops;
	d->priv = sh;
	d->loop = f->loop;
	shim_sync_info(sh);
	memcpy(d->spec, in->spec, sizeof d->spec);
	memcpy(d->name, in->name, sizeof d->name);
	f->shims[idx] = sh;
	return d;
}

/* ---- The loop, one round at a time -------------------------------------------------------- */

/* The loop's epoll descriptor is the lowest free one when uw_loop_new() runs (it is created
 * first); confirm by its /proc link before relying on it. */
static bool is_epoll_fd(int fd)
{
	char path[64], link[64];
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof link - 1);
	if (n <= 0)
		return false;
	link[n] = '\0';
	return strcmp(link, "anon_inode:[eventpoll]") == 0;
}

static void end_round(void *arg)
{
	struct fz *f = arg;
	/* Timers first ran in this round; what is left for the next one: ready descriptors or
	 * posts (the epoll descriptor is readable), or the scripted device's timers. Without the
	 * epoll descriptor only visible progress tells (and a spinning server goes unnoticed). */
	bool ready = false;
	if (f->epfd >= 0) {
		struct pollfd p = {f->epfd, POLLIN, 0};
		ready = poll(&p, 1, 0) > 0;
	}
	f->busy = ready || (f->sd && (f->sd->tick || f->sd->unplug));
	for (int i = 0; i < NDEV; i++)
		if (f->shims[i] && f->shims[i]->tick)
			f->busy = true;
	uw_loop_stop(f->loop);
}

/* One dispatch round: epoll_wait with a zero timeout, the handlers, the due timers. */
static void run_round(struct fz *f)
{
	if (!uw_loop_timer_add(f->loop, 0, end_round, f))
		abort();
	if (uw_loop_run(f->loop) != UW_OK)
		bug("uw_loop_run failed");
}

/* Runs fn(f) on the loop thread, as server calls must be, in a round of its own. */
static void in_loop(struct fz *f, uw_task_fn fn)
{
	if (!uw_loop_timer_add(f->loop, 0, fn, f))
		abort();
	run_round(f);
}

struct sig {
	unsigned sessions, imported;
	uint64_t accepted, errors, urbs;
};

static struct sig server_sig(const struct fz *f)
{
	struct uw_server_stats st;
	uw_server_get_stats(f->srv, &st);
	return (struct sig){st.sessions, st.imported, st.accepted, st.protocol_errors, st.urbs};
}

static bool sig_eq(struct sig a, struct sig b)
{
	return a.sessions == b.sessions && a.imported == b.imported && a.accepted == b.accepted &&
	       a.errors == b.errors && a.urbs == b.urbs;
}

/* ---- The mirror: the server's parse of our stream ---------------------------------------- */

static int mirror_ep_type(void *user, uint32_t ep, uint32_t dir)
{
	struct fz *f = user;
	if (f->mdev == SDEV)
		return sd_ep_type_of(ep, dir); /* fixed; the device may be gone already */
	uw_dev *d = f->devs[f->mdev];
	return d->ops->ep_type(d, ep, dir);
}

/* A standard SET_CONFIGURATION or SET_INTERFACE (any recipient, to be safe): the endpoint table
 * of an emulated device may change when the server runs it. */
static bool changes_endpoints(const uint8_t setup[UW_SETUP_LEN])
{
	return (setup[0] & 0x60) == 0 && (setup[1] == 9 || setup[1] == 11);
}

/* True if a CMD_UNLINK with this seqnum still awaits its answer. */
static bool unlink_open(const struct fz *f, uint32_t seq)
{
	for (size_t i = 0; i < f->nunls; i++)
		if (!f->unls[i].answered && f->unls[i].seq == seq)
			return true;
	return false;
}

/* Parses the stream from mpos as far as it can be framed now. Returns how far it may be sent. */
static size_t mirror_limit(struct fz *f)
{
	while (!f->mend) {
		const uint8_t *p = f->stream + f->mpos;
		size_t n = f->len - f->mpos;
		uw_dec d;
		if (f->mop) {
			uw_op_request req;
			if (uw_op_request_decode(p, n, &req, &d) != UW_DEC_DONE) {
				f->mend = true; /* cut short or malformed: no answer */
				break;
			}
			f->mpos += d.len;
			f->mend = true;
			if (req.code == UW_OP_REQ_DEVLIST) {
				f->expect = EXP_DEVLIST;
				break;
			}
			f->expect = EXP_IMPORT;
			memcpy(f->busid, req.busid, sizeof f->busid);
			for (int i = 0; i < NDEV; i++) {
				char b[16];
				snprintf(b, sizeof b, "99-%d", i + 1);
				if (strcmp(b, req.busid) == 0) {
					f->import_ok = true;
					f->mdev = i;
					f->devid = BUSNUM << 16 | (uint32_t)(i + 1);
				}
			}
			if (f->import_ok) {
				f->mop = false;
				f->mend = false;
				f->import_pending = true;
			}
			continue;
		}
		if (n < UW_URB_HDR_LEN) {
			f->mend = true;
			break;
		}
		if (be32(p) == UW_CMD_SUBMIT && be32(p + 16) != 0 &&
		    (f->import_pending || f->sync_pending))
			return f->mpos; /* framed by an endpoint table that may still change */
		if (be32(p) == UW_CMD_UNLINK && unlink_open(f, be32(p + 4)))
			return f->mpos; /* its answer could not be told from the other one's */
		uw_cmd c;
		if (uw_cmd_decode(p, n, mirror_ep_type, f, &c, &d) != UW_DEC_DONE ||
		    c.hdr.devid != f->devid) {
			f->mend = true; /* cut short, or the server closes here */
			break;
		}
		uint32_t msg = f->nmsg++;
		if (c.hdr.command == UW_CMD_SUBMIT) {
			/* The reply being read may point into subs: keep it pointing there. */
			size_t cur = f->cur_sub ? (size_t)(f->cur_sub - f->subs) : 0;
			f->subs = grow(f->subs, &f->capsubs, f->nsubs, sizeof *f->subs);
			if (f->cur_sub)
				f->cur_sub = &f->subs[cur];
			struct sub *s = &f->subs[f->nsubs++];
			*s = (struct sub){.seq = c.hdr.seqnum,
			                  .msg = msg,
			                  .dir = c.hdr.direction,
			                  .xfer = c.xfer,
			                  .len = c.hdr.u.submit.transfer_buffer_length,
			                  .np = c.hdr.u.submit.number_of_packets,
			                  .start_frame = c.hdr.u.submit.start_frame,
			                  .interval = c.hdr.u.submit.interval,
			                  .iso = c.iso};
			if (c.hdr.ep == 0 && f->mdev != SDEV &&
			    changes_endpoints(c.hdr.u.submit.setup)) {
				s->sync = true;
				f->sync_pending++;
			}
		} else {
			f->unls = grow(f->unls, &f->capunls, f->nunls, sizeof *f->unls);
			f->unls[f->nunls++] = (struct unl){
			    .seq = c.hdr.seqnum, .target = c.hdr.u.unlink.seqnum, .msg = msg};
		}
		f->mpos += d.len;
	}
	return f->len;
}

/* ---- The reply decoder -------------------------------------------------------------------- */

static struct sub *oldest_open(struct fz *f, uint32_t seq)
{
	for (size_t i = 0; i < f->nsubs; i++)
		if (!f->subs[i].answered && f->subs[i].seq == seq)
			return &f->subs[i];
	return NULL;
}

static bool pending_cb(void *user, uint32_t seq, uw_pending *out)
{
	struct sub *s = oldest_open(user, seq);
	if (!s)
		return false;
	*out = (uw_pending){.direction = s->dir,
	                    .xfer = s->xfer,
	                    .transfer_length = s->len,
	                    .number_of_packets = s->np,
	                    .iso_req = s->iso};
	return true;
}

static void answered(struct fz *f, struct sub *s)
{
	s->answered = true;
	if (s->sync)
		f->sync_pending--;
}

static void check_zero(const uint8_t *p, size_t from, size_t to, const char *what)
{
	for (size_t i = from; i < to; i++)
		if (p[i])
			bug("%s: byte %zu of the header is 0x%02x, not 0", what, i, p[i]);
}

static void fail_dec(const char *what, const uw_dec *d)
{
	char msg[256];
	bug("%s: %s", what, uw_dec_format(d, msg, sizeof msg));
}

static void ret_unlink(struct fz *f, const uw_urb_hdr *h)
{
	int32_t st = h->u.ret_unlink.status;
	if (st != 0 && st != UW_URB_ECONNRESET)
		bug("RET_UNLINK seqnum %u: status %d", h->seqnum, st);
	struct unl *u = NULL;
	for (size_t i = 0; i < f->nunls && !u; i++)
		if (!f->unls[i].answered && f->unls[i].seq == h->seqnum)
			u = &f->unls[i];
	if (!u)
		bug("RET_UNLINK seqnum %u: no CMD_UNLINK with it awaits an answer", h->seqnum);
	u->answered = true;
	/* The URB the server found in flight for it: the target's last CMD_SUBMIT before it. */
	struct sub *t = NULL;
	for (size_t i = 0; i < f->nsubs && f->subs[i].msg < u->msg; i++)
		if (f->subs[i].seq == u->target)
			t = &f->subs[i];
	if (st == UW_URB_ECONNRESET) {
		if (!t || t->answered)
			bug("RET_UNLINK(-ECONNRESET) seqnum %u: its target %u is not outstanding",
			    h->seqnum, u->target);
		answered(f, t); /* it stands in for the RET_SUBMIT */
	} else if (t && !t->answered) {
		bug("RET_UNLINK(0) seqnum %u ahead of the RET_SUBMIT of its target %u", h->seqnum,
		    u->target);
	}
}

static void finish_submit(struct fz *f)
{
	struct sub *s = f->cur_sub;
	const uw_urb_hdr *h = &f->cur;
	if (s->xfer == UW_XFER_ISO) {
		uint32_t n = (uint32_t)s->np;
		uw_dec d;
		if (n && uw_iso_check_ret(f->acc, n, s->iso, h->u.ret.actual_length,
		                          UW_URB_HDR_LEN + f->cur_data, &d) != UW_DEC_DONE)
			fail_dec("RET_SUBMIT ISO descriptors", &d);
		int32_t errors = 0;
		for (uint32_t i = 0; i < n; i++) {
			uw_iso_desc desc;
			uw_iso_desc_decode(f->acc + (size_t)i * UW_ISO_DESC_LEN, &desc);
			errors += desc.status != 0;
		}
		if (h->u.ret.error_count != errors)
			bug("RET_SUBMIT seqnum %u: error_count %d, %d packets failed", h->seqnum,
			    h->u.ret.error_count, errors);
		if (!n && h->u.ret.actual_length != 0)
			bug("RET_SUBMIT seqnum %u: ISO without packets, actual_length %d",
			    h->seqnum, h->u.ret.actual_length);
	}
	answered(f, s);
	f->cur_sub = NULL;
	f->rx = RX_HDR;
	f->want = UW_URB_HDR_LEN;
	f->acc_len = 0;
}

static void urb_header(struct fz *f)
{
	uw_urb_hdr h;
	size_t dl, il;
	uw_dec d;
	if (uw_ret_hdr_decode(f->acc, f->acc_len, pending_cb, f, &h, &dl, &il, &d) != UW_DEC_DONE)
		fail_dec("reply header", &d);
	if (h.devid || h.direction || h.ep)
		bug("%s seqnum %u: devid %u, direction %u, ep %u (all must be 0)",
		    uw_urb_cmd_name(h.command), h.seqnum, h.devid, h.direction, h.ep);
	f->acc_len = 0;
	if (h.command == UW_RET_UNLINK) {
		check_zero(f->acc, 24, UW_URB_HDR_LEN, "RET_UNLINK padding");
		ret_unlink(f, &h);
		return;
	}
	check_zero(f->acc, 40, UW_URB_HDR_LEN, "RET_SUBMIT padding");
	struct sub *s = oldest_open(f, h.seqnum);
	if (!s)
		bug("RET_SUBMIT seqnum %u: decoded without an outstanding CMD_SUBMIT", h.seqnum);
	if (s->xfer != UW_XFER_ISO) {
		int32_t np = s->np == -1 ? -1 : 0;
		if (h.u.ret.number_of_packets != np || h.u.ret.error_count != 0)
			bug("RET_SUBMIT seqnum %u (not ISO): number_of_packets %d (sent %d), "
			    "error_count %d",
			    h.seqnum, h.u.ret.number_of_packets, s->np, h.u.ret.error_count);
	}
	if (h.u.ret.start_frame != s->start_frame)
		bug("RET_SUBMIT seqnum %u: start_frame %d, sent %d", h.seqnum, h.u.ret.start_frame,
		    s->start_frame);
	f->cur = h;
	f->cur_data = dl;
	f->cur_sub = s;
	f->skip = dl;
	f->want = il;
	f->rx = dl ? RX_DATA : RX_ISO;
	if (!dl && !il)
		finish_submit(f);
}

static void op_reply(struct fz *f)
{
	uw_dec d;
	if (f->expect == EXP_IMPORT) {
		uint32_t status;
		uw_usb_device dev;
		enum uw_dec_status st =
		    uw_op_rep_import_decode(f->acc, f->acc_len, &status, &dev, &d);
		if (st == UW_DEC_ERROR)
			fail_dec("OP_REP_IMPORT", &d);
		if (st == UW_DEC_MORE) {
			f->want = f->acc_len + d.len;
			return;
		}
		if ((status == UW_ST_OK) != f->import_ok)
			bug("import of %s answered with status %u", f->busid, status);
		if (status != UW_ST_OK) {
			if (status != UW_ST_NODEV)
				bug("import of unknown %s: status %u, not ST_NODEV", f->busid,
				    status);
			f->rx = RX_EOF_ONLY;
			return;
		}
		if (strcmp(dev.busid, f->busid) != 0 || (dev.busnum << 16 | dev.devnum) != f->devid)
			bug("import of %s answered with the record of %s", f->busid, dev.busid);
		f->import_pending = false;
		f->rx = RX_HDR;
		f->want = UW_URB_HDR_LEN;
		f->acc_len = 0;
		return;
	}
	uint32_t ndev;
	enum uw_dec_status st = uw_op_rep_devlist_frame(f->acc, f->acc_len, &ndev, &d);
	if (st == UW_DEC_ERROR)
		fail_dec("OP_REP_DEVLIST", &d);
	if (st == UW_DEC_MORE) {
		f->want = f->acc_len + d.len;
		if (f->want > sizeof f->acc)
			bug("OP_REP_DEVLIST longer than %zu bytes", sizeof f->acc);
		return;
	}
	if (ndev != NDEV)
		bug("OP_REP_DEVLIST lists %u devices, not %d", ndev, NDEV);
	size_t pos = UW_OP_REP_DEVLIST_HDR;
	for (unsigned i = 0; i < ndev; i++) {
		uw_usb_device dev;
		uw_usb_interface ifs[UW_MAX_INTERFACES];
		char want[16];
		snprintf(want, sizeof want, "99-%u", i + 1);
		if (uw_devlist_next(f->acc, f->acc_len, &pos, &dev, ifs, UW_MAX_INTERFACES) !=
		        UW_OK ||
		    strcmp(dev.busid, want) != 0)
			bug("OP_REP_DEVLIST entry %u is not %s", i, want);
	}
	f->rx = RX_EOF_ONLY;
}

/* Takes bytes the server wrote, in the order a client reads them. */
static void rx_bytes(struct fz *f, const uint8_t *p, size_t n)
{
	while (n) {
		if (f->rx == RX_EOF_ONLY || (f->rx == RX_OP && f->expect == EXP_NOTHING))
			bug("%zu bytes from the server where none belong", n);
		if (f->rx == RX_DATA) {
			size_t k = n < f->skip ? n : f->skip;
			f->skip -= k;
			p += k;
			n -= k;
			if (!f->skip) {
				f->rx = RX_ISO;
				if (!f->want)
					finish_submit(f);
			}
			continue;
		}
		size_t k = f->want - f->acc_len;
		k = k < n ? k : n;
		memcpy(f->acc + f->acc_len, p, k);
		f->acc_len += k;
		p += k;
		n -= k;
		if (f->acc_len < f->want)
			continue;
		if (f->rx == RX_OP)
			op_reply(f);
		else if (f->rx == RX_HDR)
			urb_header(f);
		else
			finish_submit(f);
	}
}

/* Reads what the server wrote. Returns true if anything arrived (or the end). */
static bool client_read(struct fz *f)
{
	if (f->cfd < 0 || f->eof)
		return false;
	bool any = false;
	for (;;) {
		ssize_t k = recv(f->cfd, f->rbuf, sizeof f->rbuf, MSG_DONTWAIT);
		if (k > 0) {
			rx_bytes(f, f->rbuf, (size_t)k);
			any = true;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return any;
		f->eof = f->gone = true; /* the server closed the connection */
		return true;
	}
}

/* ---- Driving the session ------------------------------------------------------------------ */

/* Counts a round with no visible progress but events left: a server that spins. */
static void check_spin(struct fz *f, bool progress, unsigned *spin)
{
	if (progress || !f->busy) {
		*spin = 0;
		return;
	}
	if (++*spin > SPIN_ROUNDS)
		bug("the loop keeps handling events but nothing happens (%u rounds)", *spin);
}

/* Writes the stream in chunks, a loop round after each, reading replies as the mode says. Stops
 * when everything is written, the server closed, or nothing moves any more (a session that
 * stopped reading for good: URBs held by the device fill its budget). */
static void feed(struct fz *f)
{
	unsigned quiet = 0, spin = 0;
	while (f->sent < f->len && !f->gone && quiet < 2) {
		size_t limit = mirror_limit(f);
		bool moved = false, blocked = false;
		if (limit > f->sent) {
			size_t n = limit - f->sent;
			if (f->chunk && n > f->chunk)
				n = f->chunk;
			ssize_t k =
			    send(f->cfd, f->stream + f->sent, n, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (k > 0) {
				f->sent += (size_t)k;
				moved = true;
				shims_arm(f);
			} else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				blocked = true;
			} else if (k < 0 && errno != EINTR) {
				f->gone = true; /* EPIPE, ECONNRESET: the server closed */
			}
		} else {
			blocked = true; /* waiting for a configuration change to be answered */
		}
		if (!f->lazy || blocked)
			moved |= client_read(f);
		struct sig before = server_sig(f);
		run_round(f);
		bool progress = moved || !sig_eq(before, server_sig(f));
		check_spin(f, progress, &spin);
		quiet = progress || f->busy ? 0 : quiet + 1;
	}
	f->stream_over = true;
	shims_arm(f);
}

/* ---- The second client ------------------------------------------------------------------- */

static void add_conn2(void *arg)
{
	struct fz *f = arg;
	int fd = f->sfd2;
	f->sfd2 = -1;
	if (uw_server_add_connection(f->srv, fd) != UW_OK)
		bug("uw_server_add_connection() of a second client failed");
}

static void settle(struct fz *f);

/* A second client asks for the device list or imports a device while the first one's session is
 * in whatever state its stream left it; the answer must agree with the server's counters. */
static void second_client(struct fz *f, unsigned kind)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	f->sfd2 = sv[0];
	f->cfd2 = sv[1];
	/* The device the first client imported, if any, and whether it is gone. */
	int mine = f->import_ok ? f->mdev : 0;
	int target = kind == 3 ? (mine == 0 ? 1 : 0) : mine;
	bool gone = target == SDEV && (!f->sd || f->sd->gone);
	uint8_t req[UW_OP_REQ_IMPORT_LEN];
	size_t n;
	if (kind == 1) {
		n = (size_t)uw_op_common_encode(req, sizeof req, UW_OP_REQ_DEVLIST, 0);
	} else {
		char busid[16];
		snprintf(busid, sizeof busid, "99-%d", target + 1);
		n = (size_t)uw_op_req_import_encode(req, sizeof req, busid);
	}
	in_loop(f, add_conn2);
	struct uw_server_stats before;
	uw_server_get_stats(f->srv, &before);
	if (send(f->cfd2, req, n, MSG_NOSIGNAL) != (ssize_t)n)
		bug("the second client could not send its request");
	settle(f);
	uint8_t rep[2048];
	ssize_t got = recv(f->cfd2, rep, sizeof rep, MSG_DONTWAIT);
	if (got <= 0)
		bug("no answer to the second client's %s", kind == 1 ? "OP_REQ_DEVLIST" : "import");
	uw_dec d;
	if (kind == 1) {
		uint32_t ndev;
		if (uw_op_rep_devlist_frame(rep, (size_t)got, &ndev, &d) != UW_DEC_DONE)
			fail_dec("second client's OP_REP_DEVLIST", &d);
		unsigned exported = NDEV - (f->devs[SDEV] ? 0 : 1);
		if (ndev != exported - before.imported)
			bug("device list of %u entries with %u devices exported, %u imported", ndev,
			    exported, before.imported);
		/* Every listed device one that is exported and free, none twice (with the count
		 * above: exactly those). */
		bool expected[NDEV], seen[NDEV] = {false};
		for (int k = 0; k < NDEV; k++)
			expected[k] = (k != SDEV || f->devs[SDEV]) &&
			              !(k == mine && before.imported && f->import_ok);
		size_t pos = UW_OP_REP_DEVLIST_HDR;
		for (unsigned i = 0; i < ndev; i++) {
			uw_usb_device dev;
			if (uw_devlist_next(rep, (size_t)got, &pos, &dev, NULL, 0) != UW_OK)
				bug("device list entry %u cut short", i);
			int k = -1;
			for (int j = 0; j < NDEV; j++) {
				char b[16];
				snprintf(b, sizeof b, "99-%d", j + 1);
				if (strcmp(dev.busid, b) == 0)
					k = j;
			}
			if (k < 0 || !expected[k] || seen[k])
				bug("the device list has %s, which is not exported and free, or "
				    "twice",
				    dev.busid);
			seen[k] = true;
		}
		return;
	}
	uint32_t status;
	uw_usb_device dev;
	if (uw_op_rep_import_decode(rep, (size_t)got, &status, &dev, &d) != UW_DEC_DONE)
		fail_dec("second client's OP_REP_IMPORT", &d);
	uint32_t want = gone                                           ? UW_ST_NODEV
	                : kind == 2 && f->import_ok && before.imported ? UW_ST_DEV_BUSY
	                                                               : UW_ST_OK;
	if (status != want)
		bug("second client's import of 99-%d: status %u, expected %u", target + 1, status,
		    want);
}

/* Runs the loop, reading replies, until two rounds in a row change nothing and leave nothing. */
static void settle(struct fz *f)
{
	unsigned quiet = 0, spin = 0;
	while (quiet < 2) {
		bool moved = client_read(f);
		struct sig before = server_sig(f);
		run_round(f);
		bool progress = moved || !sig_eq(before, server_sig(f));
		check_spin(f, progress, &spin);
		quiet = progress || f->busy ? 0 : quiet + 1;
	}
}

/* When the session is still open, every message was sent and framed, and the budgets cannot
 * have paused it, the server has handled the whole stream; once the loop is idle, whatever is
 * not answered must be held by the device: nothing by the sink, only URBs scripted to wait by
 * the scripted device, and never a URB that was unlinked (all these devices complete a cancel
 * within a round). Every CMD_UNLINK must then have been answered. */
static void check_complete(struct fz *f, uint8_t cfg)
{
	struct uw_server_stats st;
	uw_server_get_stats(f->srv, &st);
	if (!f->import_ok || st.sessions != 1 || st.imported != 1 || f->sent != f->len ||
	    f->mpos != f->len || (cfg & 0x0f) != 0x0f || f->script_urbs)
		return;
	uint64_t mem = 0;
	for (size_t i = 0; i < f->nsubs; i++)
		mem += (uint64_t)f->subs[i].len + 4096 + (uint64_t)f->subs[i].np * 64;
	if (f->nsubs >= 1000 || f->nunls >= 10000 || mem >= (32u << 20))
		return;
	for (size_t k = 0; k < f->nunls; k++) {
		const struct unl *u = &f->unls[k];
		if (!u->answered)
			bug("CMD_UNLINK seqnum %u (target %u) never answered", u->seq, u->target);
		struct sub *t = NULL;
		for (size_t i = 0; i < f->nsubs && f->subs[i].msg < u->msg; i++)
			if (f->subs[i].seq == u->target)
				t = &f->subs[i];
		if (t)
			t->unlinked = true;
	}
	for (size_t i = 0; i < f->nsubs; i++) {
		const struct sub *s = &f->subs[i];
		if (s->answered)
			continue;
		/* emu:serial holds bulk/interrupt URBs (IN until data, OUT until room); control
		 * requests and anything refused complete at once. */
		bool held = (f->mdev == 1 && (s->xfer == UW_XFER_BULK || s->xfer == UW_XFER_INT)) ||
		            (f->mdev == STDEV && s->xfer == UW_XFER_BULK) ||
		            (f->mdev == SDEV && (s->interval & 3) == 3);
		if (!held || s->unlinked)
			bug("CMD_SUBMIT seqnum %u (%s) never answered", s->seq,
			    s->unlinked ? "unlinked" : "not held by the device");
	}
}

static void check_session_over(struct fz *f, const char *how)
{
	struct uw_server_stats st;
	uw_server_get_stats(f->srv, &st);
	if (st.sessions || st.imported)
		bug("%s: %u sessions open and %u devices imported after the loop settled", how,
		    st.sessions, st.imported);
}

static void add_conn(void *arg)
{
	struct fz *f = arg;
	int fd = f->sfd;
	f->sfd = -1;
	if (uw_server_add_connection(f->srv, fd) != UW_OK)
		bug("uw_server_add_connection() failed");
}

static void shutdown_done(void *arg)
{
	struct fz *f = arg;
	if (f->sd_done)
		bug("the shutdown callback ran twice");
	f->sd_done = true;
}

static void start_shutdown(void *arg)
{
	struct fz *f = arg;
	uw_server_shutdown(f->srv, 60000, shutdown_done, f);
}

/* ---- Storage scripts: a structured input for emu:storage ---------------------------------- */

/*
 * An input whose client bytes begin with the two bytes 0xb0 0x75 is a script, not the stream
 * itself: its steps expand into a well-formed stream for emu:storage, so that mutation works on
 * commands and their timing rather than on 31-byte CBWs inside 48-byte headers. The stream is
 * then OP_REQ_IMPORT of 99-4 and SET_CONFIGURATION(1) (seqnum 1; the mode's prelude bits are
 * ignored), then the steps, whose seqnums count on from 2. The byte after the magic: with bit 4
 * set, max_urbs is 1 + bits 0-3 (so the session may pause at a small in-flight limit), else the
 * configuration byte's choice. Each step is an opcode byte and its arguments (0 past the end);
 * t is bits 24-31 of a URB's interval, the completion shim's timing:
 *   op bits 5-7
 *   0  a SCSI command, args sel lba t: the CBW on bulk OUT for sel bits 0-2 = TEST UNIT READY,
 *      INQUIRY, READ CAPACITY(10), REQUEST SENSE, READ(10), WRITE(10), WRITE(10) with FUA,
 *      SYNCHRONIZE CACHE(10); READ and WRITE of 1 + sel bits 3-5 blocks at lba. Unless op bit 0
 *      is set, its data stage follows (bulk IN of the length, or bulk OUT with the data), with
 *      timing t; with op bit 1 a 13-byte bulk IN for the CSW too, with timing t.
 *   1  1 + op bits 0-3 bulk IN URBs, args len t: length {13, 31, 512, 1024, 4096, 0, 64, 65536}
 *      by len bits 0-2
 *   2  a bulk OUT URB of that length, args len fill (not a CBW: data, or garbage where a CBW is
 *      due)
 *   3  CMD_UNLINK of the seqnum 1 + op bits 0-4 before its own
 *   4  a control request by op bits 0-2: Bulk-Only Mass Storage Reset, GET MAX LUN,
 *      CLEAR_FEATURE(ENDPOINT_HALT) of 0x81, of 0x02, GET_DESCRIPTOR(device),
 *      SET_CONFIGURATION(0), SET_CONFIGURATION(1), GET_STATUS; arg t
 *   5  1 + op bits 0-4 raw bytes follow, copied into the stream as they are
 *   6  a CBW with a raw CDB, args opcode flags len: bmCBWFlags = flags, the CDB opcode and its
 *      byte 8 = opcode and len, dCBWDataTransferLength = 512 * (len & 7); no data stage
 *   7  as 1
 * How the scripts found a bug by themselves: on the code before "server: a completion never runs
 * the session from inside the device that completes it", libFuzzer with raw streams did not find
 * in 25 minutes that a completion of emu:storage arriving while the session was paused at its
 * in-flight limit restarted the session from inside the device, whose pump() then ran
 * re-entrantly and lost the URB of a WRITE(10)'s data stage (the device stayed imported after
 * the client closed). With the scripts, fuzz/session.dict and only the six storage-script-*
 * seeds of tools/gen-session-corpus.py, one fuzz_session process found it after 56048 runs (107
 * seconds at 528 runs per second): fuzz/corpus/session/storage-reentry-found-by-fuzzer, kept as
 * libFuzzer wrote it (READ(10) with its data and CSW, READ CAPACITY likewise, two TEST UNIT
 * READY, an unlink of nothing, a WRITE(10) FUA of 8 blocks whose data stage is the next CBW, 7
 * bulk INs; 16 URBs in flight at most).
 * Luck had a part: two more runs from the same seeds (-seed=12345, -seed=777) did not find it in
 * 900 s (96642 runs) and 1256 s (251735 runs, where one stopped at a use-after-free of the
 * harness itself instead: fuzz/corpus/session/harness-subs-grown-mid-reply).
 */
#define SCRIPT_MAGIC0 0xb0
#define SCRIPT_MAGIC1 0x75

struct script {
	uint8_t *out;
	size_t len, cap;
	uint32_t seq;
	const uint8_t *in;
	size_t n, pos;
};

static uint8_t script_arg(struct script *s)
{
	return s->pos < s->n ? s->in[s->pos++] : 0;
}

static uint8_t *script_room(struct script *s, size_t n)
{
	while (s->len + n > s->cap) {
		size_t c = s->cap ? s->cap * 2 : 4096;
		uint8_t *q = realloc(s->out, c);
		if (!q)
			abort();
		s->out = q;
		s->cap = c;
	}
	uint8_t *p = s->out + s->len;
	s->len += n;
	return p;
}

/* A CMD_SUBMIT to 99-4 (bulk or control) with `data` (OUT only, len bytes; NULL: zeros). */
static void script_submit(struct script *s, uint32_t dir, uint32_t ep, uint32_t len, uint8_t t,
                          const uint8_t setup[UW_SETUP_LEN], const uint8_t *data)
{
	uw_urb_hdr h = {.command = UW_CMD_SUBMIT,
	                .seqnum = s->seq++,
	                .devid = BUSNUM << 16 | (STDEV + 1),
	                .direction = dir,
	                .ep = ep};
	h.u.submit.transfer_buffer_length = (int32_t)len;
	h.u.submit.interval = (int32_t)((uint32_t)t << 24);
	if (setup)
		memcpy(h.u.submit.setup, setup, UW_SETUP_LEN);
	uw_urb_hdr_encode(&h, script_room(s, UW_URB_HDR_LEN));
	if (dir == UW_DIR_OUT && len) {
		uint8_t *p = script_room(s, len);
		if (data)
			memcpy(p, data, len);
		else
			memset(p, 0, len);
	}
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

/* A CBW on bulk OUT (endpoint 2), tagged with its seqnum. */
static void script_cbw(struct script *s, uint32_t xfer_len, uint8_t flags, const uint8_t *cdb,
                       uint8_t cdb_len)
{
	uint8_t cbw[31] = {0x55, 0x53, 0x42, 0x43};
	put_le32(cbw + 4, s->seq);
	put_le32(cbw + 8, xfer_len);
	cbw[12] = flags;
	cbw[14] = cdb_len;
	memcpy(cbw + 15, cdb, cdb_len);
	script_submit(s, UW_DIR_OUT, 2, sizeof cbw, 0, NULL, cbw);
}

static void script_scsi(struct script *s, uint8_t op)
{
	uint8_t sel = script_arg(s), lba = script_arg(s), t = script_arg(s);
	uint32_t blocks = 1 + ((sel >> 3) & 7);
	uint8_t cdb[16] = {0};
	uint8_t cdb_len = 10;
	uint32_t n = 0;
	bool in = true;
	switch (sel & 7) {
	case 0: /* TEST UNIT READY */
		cdb_len = 6;
		break;
	case 1: /* INQUIRY */
		cdb[0] = 0x12;
		cdb[4] = 36;
		cdb_len = 6;
		n = 36;
		break;
	case 2: /* READ CAPACITY(10) */
		cdb[0] = 0x25;
		n = 8;
		break;
	case 3: /* REQUEST SENSE */
		cdb[0] = 0x03;
		cdb[4] = 18;
		cdb_len = 6;
		n = 18;
		break;
	case 4: /* READ(10) */
	case 5: /* WRITE(10) */
	case 6: /* WRITE(10), FUA */
		cdb[0] = (sel & 7) == 4 ? 0x28 : 0x2a;
		cdb[1] = (sel & 7) == 6 ? 0x08 : 0;
		cdb[5] = lba;
		cdb[8] = (uint8_t)blocks;
		n = blocks * 512u;
		in = (sel & 7) == 4;
		break;
	default: /* SYNCHRONIZE CACHE(10) */
		cdb[0] = 0x35;
		break;
	}
	script_cbw(s, n, in && n ? 0x80 : 0, cdb, cdb_len);
	if (!(op & 1) && n) {
		if (in) {
			script_submit(s, UW_DIR_IN, 1, n, t, NULL, NULL);
		} else {
			uint8_t *data = malloc(n);
			if (!data)
				abort();
			memset(data, lba ^ 0x5a, n);
			script_submit(s, UW_DIR_OUT, 2, n, t, NULL, data);
			free(data);
		}
	}
	if (op & 2)
		script_submit(s, UW_DIR_IN, 1, 13, t, NULL, NULL);
}

static const uint32_t script_lens[8] = {13, 31, 512, 1024, 4096, 0, 64, 65536};

static void script_control(struct script *s, uint8_t op)
{
	static const uint8_t setups[8][UW_SETUP_LEN] = {
	    {0x21, 0xff, 0, 0, 0, 0, 0, 0},    /* Bulk-Only Mass Storage Reset */
	    {0xa1, 0xfe, 0, 0, 0, 0, 1, 0},    /* GET MAX LUN */
	    {0x02, 0x01, 0, 0, 0x81, 0, 0, 0}, /* CLEAR_FEATURE(ENDPOINT_HALT) 0x81 */
	    {0x02, 0x01, 0, 0, 0x02, 0, 0, 0}, /* ... 0x02 */
	    {0x80, 0x06, 0, 1, 0, 0, 18, 0},   /* GET_DESCRIPTOR(device) */
	    {0x00, 0x09, 0, 0, 0, 0, 0, 0},    /* SET_CONFIGURATION(0) */
	    {0x00, 0x09, 1, 0, 0, 0, 0, 0},    /* SET_CONFIGURATION(1) */
	    {0x80, 0x00, 0, 0, 0, 0, 2, 0},    /* GET_STATUS */
	};
	const uint8_t *st = setups[op & 7];
	uint32_t len = st[6] | (uint32_t)st[7] << 8;
	script_submit(s, st[0] & 0x80 ? UW_DIR_IN : UW_DIR_OUT, 0, len, script_arg(s), st, NULL);
}

/* Expands the script in[0..n) (after the magic) into a stream; sets *max_urbs (0: the
 * configuration byte's choice). */
static uint8_t *script_expand(const uint8_t *in, size_t n, size_t *len, unsigned *max_urbs)
{
	struct script s = {.in = in, .n = n, .seq = 1};
	uint8_t b = script_arg(&s);
	*max_urbs = b & 0x10 ? 1u + (b & 15) : 0;
	if (uw_op_req_import_encode(script_room(&s, UW_OP_REQ_IMPORT_LEN), UW_OP_REQ_IMPORT_LEN,
	                            "99-4") != UW_OP_REQ_IMPORT_LEN)
		abort();
	static const uint8_t set_config[UW_SETUP_LEN] = {0x00, 9, 1, 0, 0, 0, 0, 0};
	script_submit(&s, UW_DIR_OUT, 0, 0, 0, set_config, NULL);
	while (s.pos < s.n) {
		uint8_t op = script_arg(&s);
		switch (op >> 5) {
		case 0:
			script_scsi(&s, op);
			break;
		case 2: {
			uint32_t l = script_lens[script_arg(&s) & 7];
			uint8_t *data = malloc(l ? l : 1);
			if (!data)
				abort();
			memset(data, script_arg(&s), l);
			script_submit(&s, UW_DIR_OUT, 2, l, 0, NULL, data);
			free(data);
			break;
		}
		case 3: {
			uw_urb_hdr h = {.command = UW_CMD_UNLINK,
			                .seqnum = s.seq,
			                .devid = BUSNUM << 16 | (STDEV + 1)};
			h.u.unlink.seqnum = s.seq - 1 - (op & 31);
			s.seq++;
			uw_urb_hdr_encode(&h, script_room(&s, UW_URB_HDR_LEN));
			break;
		}
		case 4:
			script_control(&s, op);
			break;
		case 5: {
			size_t k = 1 + (op & 31);
			for (size_t i = 0; i < k; i++) {
				uint8_t v = script_arg(&s);
				*script_room(&s, 1) = v;
			}
			break;
		}
		case 6: {
			uint8_t opc = script_arg(&s), flags = script_arg(&s), l = script_arg(&s);
			uint8_t cdb[16] = {opc};
			cdb[8] = l;
			script_cbw(&s, 512u * (l & 7), flags, cdb, 10);
			break;
		}
		default: {
			unsigned k = 1 + (op & 15);
			uint32_t l = script_lens[script_arg(&s) & 7];
			uint8_t t = script_arg(&s);
			for (unsigned i = 0; i < k; i++)
				script_submit(&s, UW_DIR_IN, 1, l, t, NULL, NULL);
			break;
		}
		}
	}
	*len = s.len;
	return s.out; /* never NULL: it has the import at least */
}

static const size_t chunks[8] = {0, 1, 3, 8, 40, 48, 100, 512};
static const unsigned max_urbs[4] = {1, 3, 16, 1024};
static const size_t max_bytes[4] = {1, 16u << 10, 1u << 20, 64u << 20};

/* The stream: the prelude the mode asks for, then the input. */
static void build_stream(struct fz *f, unsigned prelude, const uint8_t *data, size_t size)
{
	if (size >= 2 && data[0] == SCRIPT_MAGIC0 && data[1] == SCRIPT_MAGIC1) {
		f->stream = script_expand(data + 2, size - 2, &f->len, &f->script_urbs);
		return;
	}
	uint8_t pre[UW_OP_REQ_IMPORT_LEN + UW_URB_HDR_LEN];
	size_t n = 0;
	if (prelude) {
		unsigned dev = prelude == 3 ? 2 : 1;
		char busid[8];
		snprintf(busid, sizeof busid, "99-%u", dev);
		if (uw_op_req_import_encode(pre, sizeof pre, busid) != UW_OP_REQ_IMPORT_LEN)
			abort();
		n = UW_OP_REQ_IMPORT_LEN;
		if (prelude >= 2) {
			uw_urb_hdr h = {.command = UW_CMD_SUBMIT,
			                .seqnum = PRELUDE_SEQ,
			                .devid = BUSNUM << 16 | dev,
			                .direction = UW_DIR_OUT};
			const uint8_t set_config[UW_SETUP_LEN] = {0x00, 9, 1, 0, 0, 0, 0, 0};
			memcpy(h.u.submit.setup, set_config, UW_SETUP_LEN);
			uw_urb_hdr_encode(&h, pre + n);
			n += UW_URB_HDR_LEN;
		}
	}
	f->len = n + size;
	f->stream = malloc(f->len ? f->len : 1);
	if (!f->stream)
		abort();
	memcpy(f->stream, pre, n);
	if (size)
		memcpy(f->stream + n, data, size);
}

static void setup(struct fz *f, uint8_t cfg)
{
	/* The loop's epoll descriptor will be the lowest free one: see is_epoll_fd(). */
	int probe = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (probe >= 0)
		close(probe);
	f->loop = uw_loop_new();
	if (!f->loop)
		abort();
	f->epfd = probe >= 0 && is_epoll_fd(probe) ? probe : -1;
	f->log = (uw_logger){.fn = log_line, .level = UW_LOG_DEBUG};
	f->max_urbs = f->script_urbs ? f->script_urbs : max_urbs[cfg & 3];
	f->max_bytes = max_bytes[(cfg >> 2) & 3];
	struct uw_server_config sc = {.loop = f->loop,
	                              .log = f->log,
	                              .handshake_ms = 3600000,
	                              .max_urbs = f->max_urbs,
	                              .max_bytes = f->max_bytes};
	f->srv = uw_server_new(&sc);
	if (!f->srv)
		abort();
	/* The storage image: 64 KiB of zeros in memory, fresh for every input. */
	int img = memfd_create("fuzz_session.img", MFD_CLOEXEC);
	if (img < 0 || ftruncate(img, IMG_SIZE) != 0)
		bug("memfd_create: %s", strerror(errno));
	char storage[64];
	snprintf(storage, sizeof storage, "emu:storage,file=/proc/self/fd/%d", img);
	uw_emu_storage_inline_io(true);
	const char *const specs[NDEV] = {"emu:sink", "emu:serial", NULL, storage};
	for (unsigned i = 0; i < NDEV; i++) {
		char busid[8], err[256];
		snprintf(busid, sizeof busid, "99-%u", i + 1);
		uw_dev *d;
		if (i == SDEV) {
			d = sd_new(f);
		} else {
			const char *spec = i == 0 && (cfg & 0x10) ? "emu:sink,pattern=1" : specs[i];
			if (uw_emu_create(spec, busid, BUSNUM, i + 1, f->loop, &f->log, &d, err,
			                  sizeof err) != UW_OK)
				bug("%s: %s", spec, err);
			d = shim_new(f, d, (int)i);
		}
		if (uw_server_add_device(f->srv, d) != UW_OK)
			bug("uw_server_add_device(%s) failed", busid);
		f->devs[i] = d;
	}
	close(img); /* emu:storage has its own descriptor */
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	if (cfg & 0x20) {
		int small = 4096;
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
		setsockopt(sv[1], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
	}
	f->sfd = sv[0];
	f->cfd = sv[1];
	f->cfd2 = f->sfd2 = -1;
	in_loop(f, add_conn);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	struct fz *f = &g;
	memset(f, 0, offsetof(struct fz, rbuf));
	uint8_t mode = data[0], cfg = data[1];
	f->chunk = chunks[mode & 7];
	f->lazy = (mode & 0x20) != 0;
	f->mop = true;
	f->rx = RX_OP;
	f->want = UW_OP_COMMON_LEN;
	build_stream(f, (mode >> 3) & 3, data + 2, size - 2);
	setup(f, cfg);

	feed(f);
	/* Freed with the session open and no second client: at once, with replies queued and
	 * URBs in the device or half received. */
	bool now = mode >> 6 == 3 && !(cfg >> 6);
	if (!now) {
		settle(f);
		check_complete(f, cfg);
	}
	if (cfg >> 6)
		second_client(f, cfg >> 6);
	switch (mode >> 6) {
	case 0:
		close(f->cfd);
		f->cfd = -1;
		if (f->cfd2 >= 0)
			close(f->cfd2);
		f->cfd2 = -1;
		settle(f);
		check_session_over(f, "client closed");
		break;
	case 1:
		shutdown(f->cfd, SHUT_WR);
		if (f->cfd2 >= 0)
			shutdown(f->cfd2, SHUT_WR);
		settle(f);
		check_session_over(f, "client half-closed");
		break;
	case 2:
		in_loop(f, start_shutdown);
		settle(f);
		if (!f->sd_done)
			bug("uw_server_shutdown() did not finish");
		check_session_over(f, "server shut down");
		break;
	default:
		break; /* freed with the session open */
	}
	if (getenv("USBWIRE_FUZZ_LOG")) {
		size_t as = 0, au = 0;
		for (size_t i = 0; i < f->nsubs; i++)
			as += f->subs[i].answered;
		for (size_t i = 0; i < f->nunls; i++)
			au += f->unls[i].answered;
		fprintf(stderr,
		        "fuzz_session: sent %zu of %zu bytes; %zu of %zu CMD_SUBMIT and %zu of %zu "
		        "CMD_UNLINK answered\n",
		        f->sent, f->len, as, f->nsubs, au, f->nunls);
	}
	uw_server_free(f->srv);
	uw_loop_free(f->loop);
	if (f->cfd >= 0)
		close(f->cfd);
	if (f->cfd2 >= 0)
		close(f->cfd2);
	free(f->stream);
	free(f->subs);
	free(f->unls);
	return 0;
}
