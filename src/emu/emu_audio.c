/* SPDX-License-Identifier: MIT */
/*
 * emu_audio.c - emu:audio[,signal=sine|ramp|silence][,input=PATH][,output=PATH], a full-speed
 * USB Audio Class 1.0 device (UAC1, "USB Device Class Definition for Audio Devices" 1.0) with a
 * microphone and a speaker, both 48000 Hz, 2 channels, S16_LE, so that Linux's snd-usb-audio
 * gives it one capture and one playback PCM.
 *
 * Interface 0 is AudioControl: a header naming the two streaming interfaces, and two terminal
 * pairs without units (no feature unit, hence no mixer controls): speaker = USB-streaming input
 * terminal 1 -> speaker output terminal 2; microphone = microphone input terminal 3 -> USB-
 * streaming output terminal 4. Interface 1 streams to the speaker (isochronous OUT 0x01) and
 * interface 2 from the microphone (isochronous IN 0x82); each has a zero-bandwidth altsetting 0
 * and an altsetting 1 with one synchronous endpoint of 192 bytes (48 frames) per 1 ms frame, so
 * there is no feedback endpoint. The only class request is the sampling frequency control of
 * each endpoint, fixed at 48000 Hz.
 *
 * Microphone source: signal=sine (default) is a 1 kHz tone at -6 dBFS on both channels with a
 * continuous phase; signal=ramp is a test pattern: stream frame i (frames counted from 0 when
 * altsetting 1 is selected, in the order they are handed out) carries left = i % 32767 + 1 and
 * right = -(i % 32767 + 1); silence is zeros; input=PATH plays a raw S16_LE stereo 48 kHz file
 * from its start at every stream start, looping at its end. Speaker sink: output=PATH (a regular
 * file, created with mode 0600 if absent, never truncated, never through a symbolic link)
 * gets every whole frame the host sends appended, as it arrives; without it the frames are
 * only counted.
 *
 * Pacing: vhci-hcd does not pace isochronous URBs, so the device does, as a real one is paced by
 * the bus. Each direction keeps a stream clock from the moment its altsetting 1 is selected; a
 * URB of N packets completes when the 1 ms frame of its last packet has elapsed on that clock.
 * Due times come from the clock's origin and the packets completed so far, never from "now", so
 * nothing drifts. A host that falls behind (the next packet's frame already more than
 * AUDIO_MAX_LAG_MS in the past) gets the clock moved rather than a burst of completions.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "uw_emu.h"

#define AUDIO_RATE          48000u
#define AUDIO_FRAME_BYTES   4u /* 2 channels x 16 bits */
#define AUDIO_FRAMES_PER_MS (AUDIO_RATE / 1000u)
#define AUDIO_MAXPACKET     (AUDIO_FRAMES_PER_MS * AUDIO_FRAME_BYTES) /* 192 */
/* How far behind its stream clock the host may be before the clock is moved instead. */
#define AUDIO_MAX_LAG_MS    4u
#define AUDIO_RAMP_PERIOD   32767u

enum { SPK_IFACE = 1, MIC_IFACE = 2, SPK_EP = 0x01, MIC_EP = 0x82 };

/* UAC1 class-specific descriptor types and subtypes (A.4, A.5, A.6, A.8), request codes
 * (A.9) and the endpoint control selector (A.10.2). */
enum {
	CS_INTERFACE = 0x24,
	CS_ENDPOINT = 0x25,
	AC_HEADER = 0x01,
	AC_INPUT_TERMINAL = 0x02,
	AC_OUTPUT_TERMINAL = 0x03,
	AS_GENERAL = 0x01,
	AS_FORMAT_TYPE = 0x02,
	EP_GENERAL = 0x01,
	UAC_SET_CUR = 0x01,
	UAC_GET_CUR = 0x81,
	UAC_GET_MIN = 0x82,
	UAC_GET_MAX = 0x83,
	UAC_GET_RES = 0x84,
	UAC_SAMPLING_FREQ_CONTROL = 0x01,
};

enum audio_signal { SIG_SINE, SIG_RAMP, SIG_SILENCE, SIG_FILE };

struct audio;

/* One streaming direction. */
struct stream {
	struct audio *a;
	const char *name; /* "microphone", "speaker" */
	bool running;     /* altsetting 1 selected */
	uint64_t t0_ms;   /* stream clock: the frame of packet 0 started here (monotonic ms) */
	uint64_t packets; /* packets completed since t0_ms: the clock's position */
	uint64_t frames;  /* audio frames handed out / received since the stream started */
	uint64_t resets;  /* clock moved because the host fell behind */
	uw_emu_urbq q;    /* URBs held until their last frame has elapsed, in order */
	uw_timer *timer;  /* armed for the head of q */
	uint64_t timer_due;
	bool new_head;       /* the head of q has not been checked against the clock yet */
	bool pumping, again; /* reentrancy guard of pump() */
};

struct audio {
	uw_emu *e;
	uw_loop *loop;
	const uw_logger *log;
	enum audio_signal signal;
	char *in_path, *out_path;
	int in_fd, out_fd;
	bool in_warned, out_warned;
	uint64_t out_dropped; /* frames that could not be written to out_path */
	struct stream mic, spk;
	char serial[17];
};

/* clang-format off */
static const uint8_t audio_device[18] = {
	18, 1, 0x00, 0x02,  /* bcdUSB 2.00 */
	0x00, 0x00, 0x00,   /* class per interface */
	64,                 /* bMaxPacketSize0 */
	0x09, 0x12,         /* idVendor 0x1209 (pid.codes) */
	0x03, 0x00,         /* idProduct 0x0003 (pid.codes test PID) */
	0x00, 0x01,         /* bcdDevice 1.00 */
	1, 2, 3,            /* iManufacturer, iProduct, iSerialNumber */
	1,                  /* bNumConfigurations */
};

#define AC_CS_LEN (10 + 12 + 9 + 12 + 9)
#define AS_LEN    (9 + 9 + 7 + 11 + 9 + 7)
#define AUDIO_CONFIG_LEN (9 + 9 + AC_CS_LEN + 2 * AS_LEN)
#define LE16(v) (uint8_t)((v) & 0xff), (uint8_t)((v) >> 8)
#define LE24(v) (uint8_t)((v) & 0xff), (uint8_t)(((v) >> 8) & 0xff), (uint8_t)((v) >> 16)

/* A streaming interface: zero-bandwidth altsetting 0, altsetting 1 with the format and one
 * synchronous isochronous endpoint (audio-class 9-byte layout) carrying the sampling
 * frequency control. */
#define AS_IFACE(num, terminal, ep)                                                          \
	9, 4, num, 0, 0, 1, 2, 0, 0,            /* AudioStreaming, altsetting 0, no endpoint */ \
	9, 4, num, 1, 1, 1, 2, 0, 0,            /* altsetting 1, one endpoint */               \
	7, CS_INTERFACE, AS_GENERAL, terminal,  /* bTerminalLink */                            \
	1, LE16(0x0001),                        /* bDelay 1 frame, wFormatTag PCM */           \
	11, CS_INTERFACE, AS_FORMAT_TYPE, 1,    /* FORMAT_TYPE_I */                            \
	2, 2, 16,                               /* 2 channels, 2-byte subframes, 16 bits */    \
	1, LE24(AUDIO_RATE),                    /* one discrete frequency: 48000 Hz */         \
	9, 5, ep, 0x0d,                         /* isochronous, synchronous, data */           \
	LE16(AUDIO_MAXPACKET), 1, 0, 0,         /* every frame; bRefresh, bSynchAddress 0 */   \
	7, CS_ENDPOINT, EP_GENERAL, 0x01,       /* sampling frequency control */               \
	0, LE16(0)                              /* bLockDelayUnits, wLockDelay */

static const uint8_t audio_config[AUDIO_CONFIG_LEN] = {
	9, 2, LE16(AUDIO_CONFIG_LEN), 3, 1, 0, 0x80, 50, /* bus-powered, 100 mA */
	9, 4, 0, 0, 0, 1, 1, 0, 0,                       /* AudioControl, no endpoint */
	10, CS_INTERFACE, AC_HEADER, LE16(0x0100),       /* bcdADC 1.00 */
	LE16(AC_CS_LEN), 2, SPK_IFACE, MIC_IFACE,        /* wTotalLength, the collection */
	/* speaker: USB streaming (1) -> speaker (2) */
	12, CS_INTERFACE, AC_INPUT_TERMINAL, 1, LE16(0x0101), 0, 2, LE16(0x0003), 0, 0,
	9, CS_INTERFACE, AC_OUTPUT_TERMINAL, 2, LE16(0x0301), 0, 1, 0,
	/* microphone (3) -> USB streaming (4); left front + right front */
	12, CS_INTERFACE, AC_INPUT_TERMINAL, 3, LE16(0x0201), 0, 2, LE16(0x0003), 0, 0,
	9, CS_INTERFACE, AC_OUTPUT_TERMINAL, 4, LE16(0x0101), 0, 3, 0,
	AS_IFACE(SPK_IFACE, 1, SPK_EP),
	AS_IFACE(MIC_IFACE, 4, MIC_EP),
};
/* clang-format on */

/* A quarter of the 1 kHz sine at 48 kHz (48 samples a period): round(16384 sin(2 pi k / 48)),
 * half of full scale, -6.02 dBFS. */
static const int16_t sine_quarter[13] = {0,     2139,  4240,  6270,  8192,  9974, 11585,
                                         12998, 14189, 15137, 15826, 16244, 16384};

static int16_t sine_at(uint64_t frame)
{
	unsigned k = (unsigned)(frame % 48u);
	unsigned q = k % 24u;
	int16_t v = sine_quarter[q <= 12u ? q : 24u - q];
	return (int16_t)(k < 24u ? v : -v);
}

static void put_frame(uint8_t *p, int16_t left, int16_t right)
{
	uint16_t l = (uint16_t)left, r = (uint16_t)right;
	p[0] = (uint8_t)l;
	p[1] = (uint8_t)(l >> 8);
	p[2] = (uint8_t)r;
	p[3] = (uint8_t)(r >> 8);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- Microphone source and speaker sink ------------------------------------------------- */

/* len bytes (whole frames) of the input file, looping at its end (a trailing partial frame is
 * skipped); silence where it cannot be read. Blocking reads of a regular file. */
static void file_read(struct audio *a, uint8_t *dst, size_t len)
{
	size_t got = 0, at_rewind = 0;
	bool rewound = false;
	while (got < len) {
		ssize_t n = read(a->in_fd, dst + got, len - got);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			if (!a->in_warned)
				uw_logf(a->log, UW_LOG_WARN, "emu:audio: reading %s: %s",
				        a->in_path, strerror(errno));
			a->in_warned = true;
			got -= got % AUDIO_FRAME_BYTES;
			(void)lseek(a->in_fd, 0, SEEK_SET);
			break;
		}
		/* End of file: loop, unless a whole pass gave no whole frame (it shrank). */
		got -= got % AUDIO_FRAME_BYTES;
		if ((rewound && got == at_rewind) || lseek(a->in_fd, 0, SEEK_SET) < 0)
			break;
		rewound = true;
		at_rewind = got;
	}
	if (got < len)
		memset(dst + got, 0, len - got);
}

/* The microphone's next frames into dst. */
static void mic_source(struct audio *a, uint8_t *dst, uint32_t frames)
{
	struct stream *s = &a->mic;
	switch (a->signal) {
	case SIG_RAMP:
		for (uint32_t i = 0; i < frames; i++) {
			int16_t v = (int16_t)((s->frames + i) % AUDIO_RAMP_PERIOD + 1);
			put_frame(dst + (size_t)i * AUDIO_FRAME_BYTES, v, (int16_t)-v);
		}
		break;
	case SIG_SINE:
		for (uint32_t i = 0; i < frames; i++) {
			int16_t v = sine_at(s->frames + i);
			put_frame(dst + (size_t)i * AUDIO_FRAME_BYTES, v, v);
		}
		break;
	case SIG_FILE:
		file_read(a, dst, (size_t)frames * AUDIO_FRAME_BYTES);
		break;
	case SIG_SILENCE:
	default:
		memset(dst, 0, (size_t)frames * AUDIO_FRAME_BYTES);
		break;
	}
	s->frames += frames;
}

static void out_write(struct audio *a, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(a->out_fd, p, len);
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (!a->out_warned)
			uw_logf(a->log, UW_LOG_WARN, "emu:audio: writing %s: %s; frames dropped",
			        a->out_path, n < 0 ? strerror(errno) : "nothing written");
		a->out_warned = true;
		a->out_dropped += len / AUDIO_FRAME_BYTES;
		return;
	}
}

/* The speaker plays an OUT URB's whole frames when their time has come; contiguous packets go
 * out in one write. */
static void spk_take(struct audio *a, const uw_urb *u)
{
	size_t run_off = 0, run_len = 0;
	bool run_open = false; /* the last packet joined the run whole: the next may extend it */
	for (uint32_t i = 0; i < u->num_iso; i++) {
		const uw_iso_pkt *p = &u->iso[i];
		size_t whole = p->length - p->length % AUDIO_FRAME_BYTES;
		a->spk.frames += whole / AUDIO_FRAME_BYTES;
		if (a->out_fd < 0 || !whole)
			continue;
		if (!(run_open && run_len && run_off + run_len == p->offset)) {
			if (run_len)
				out_write(a, u->buf + run_off, run_len);
			run_off = p->offset;
			run_len = 0;
		}
		run_len += whole;
		run_open = whole == p->length;
	}
	if (run_len)
		out_write(a, u->buf + run_off, run_len);
}

/* ---- Streams: holding URBs until their frames have elapsed ------------------------------ */

/* The URB's frames have elapsed: fill (IN) or acknowledge (OUT) every packet, complete it. */
static void finish(struct audio *a, struct stream *s, uw_urb *u)
{
	if (s == &a->spk)
		spk_take(a, u); /* played now: a URB cancelled before its time never was */
	uint32_t total = 0;
	for (uint32_t i = 0; i < u->num_iso; i++) {
		uw_iso_pkt *p = &u->iso[i];
		if (s == &a->mic) {
			uint32_t frames = p->length / AUDIO_FRAME_BYTES;
			if (frames > AUDIO_FRAMES_PER_MS)
				frames = AUDIO_FRAMES_PER_MS;
			if (frames)
				mic_source(a, u->buf + p->offset, frames);
			p->actual_length = frames * AUDIO_FRAME_BYTES;
		} else {
			p->actual_length = p->length;
		}
		p->status = 0;
		total += p->actual_length;
	}
	u->error_count = 0;
	/* Isochronous: short packets are normal, SHORT_NOT_OK does not apply. */
	uw_urb_complete(u, 0, total);
}

static void pump(struct stream *s);

static void stream_timer(void *arg)
{
	struct stream *s = arg;
	s->timer = NULL;
	pump(s);
}

/* Complete the held URBs whose frames have elapsed; arm the timer for the next one. */
static void pump(struct stream *s)
{
	struct audio *a = s->a;
	if (s->pumping) {
		/* A done() callback submitted or cancelled: the outer loop goes on. */
		s->again = true;
		return;
	}
	s->pumping = true;
	do {
		s->again = false;
		while (s->running && s->q.head) {
			uw_urb *u = s->q.head;
			uint64_t now = mono_ms();
			/* A new head whose first packet's frame is long gone: the host fell
			 * behind (or the loop stalled). Move the clock so that this frame is
			 * now, rather than burst to catch up. */
			if (s->new_head && s->t0_ms + s->packets + AUDIO_MAX_LAG_MS < now) {
				s->t0_ms = now - s->packets;
				s->resets++;
			}
			s->new_head = false;
			uint64_t due = s->t0_ms + s->packets + u->num_iso;
			if (due > now) {
				if (s->timer && s->timer_due != due) {
					uw_loop_timer_cancel(a->loop, s->timer);
					s->timer = NULL;
				}
				if (!s->timer) {
					s->timer =
					    uw_loop_timer_add(a->loop, due - now, stream_timer, s);
					s->timer_due = due;
				}
				if (s->timer)
					break;
				/* No memory for a timer: complete unpaced rather than never. */
			}
			uw_emu_urbq_pop(&s->q);
			s->packets += u->num_iso;
			s->new_head = true;
			finish(a, s, u);
		}
	} while (s->again);
	if (!s->q.head && s->timer) {
		uw_loop_timer_cancel(a->loop, s->timer);
		s->timer = NULL;
	}
	s->pumping = false;
}

/* Altsetting 0, a new configuration, a reset: held URBs end with -ESHUTDOWN, the clock stops. */
static void stream_stop(struct stream *s)
{
	struct audio *a = s->a;
	bool was = s->running;
	s->running = false;
	uw_loop_timer_cancel(a->loop, s->timer);
	s->timer = NULL;
	uw_emu_urbq_flush(&s->q, UW_URB_ESHUTDOWN);
	if (was)
		uw_logf(a->log, UW_LOG_DEBUG,
		        "emu:audio: %s stream stopped: %llu frames, %llu clock resets", s->name,
		        (unsigned long long)s->frames, (unsigned long long)s->resets);
}

static void stream_start(struct stream *s)
{
	struct audio *a = s->a;
	s->running = true;
	s->t0_ms = mono_ms();
	s->packets = 0;
	s->frames = 0;
	s->resets = 0;
	if (s == &a->mic && a->in_fd >= 0)
		(void)lseek(a->in_fd, 0, SEEK_SET);
	uw_logf(a->log, UW_LOG_DEBUG, "emu:audio: %s stream started", s->name);
}

/* 0 if u's packets can be trusted, else the URB status to fail it with. */
static int32_t check_urb(const struct audio *a, const struct stream *s, const uw_urb *u)
{
	if (u->xfer != UW_XFER_ISO || u->num_iso == 0 || !u->iso)
		return UW_URB_EINVAL;
	uint16_t maxpacket = uw_emu_maxpacket(a->e, s == &a->mic ? MIC_EP : SPK_EP);
	uint64_t sum = 0;
	for (uint32_t i = 0; i < u->num_iso; i++) {
		const uw_iso_pkt *p = &u->iso[i];
		sum += p->length;
		/* Inside the buffer, and (overlapping or not) no more than it in total: the
		 * URB's actual length is the sum of the packets'. */
		if ((uint64_t)p->offset + p->length > u->len || sum > u->len ||
		    (p->length && !u->buf))
			return UW_URB_EINVAL;
		/* What Linux's usb_submit_urb() says to an oversized isochronous packet. */
		if (s == &a->spk && p->length > maxpacket)
			return UW_URB_EMSGSIZE;
	}
	return 0;
}

/* ---- The class ------------------------------------------------------------------------- */

static void audio_transfer(uw_emu *e, uw_urb *u)
{
	struct audio *a = uw_emu_priv(e);
	struct stream *s = NULL;
	if (u->ep == (MIC_EP & 0x0f) && u->dir == UW_DIR_IN)
		s = &a->mic;
	else if (u->ep == SPK_EP && u->dir == UW_DIR_OUT)
		s = &a->spk;
	if (!s) {
		uw_urb_complete(u, UW_URB_EPIPE, 0);
		return;
	}
	if (!s->running) {
		uw_urb_complete(u, UW_URB_ESHUTDOWN, 0);
		return;
	}
	int32_t st = check_urb(a, s, u);
	if (st) {
		uw_urb_complete(u, st, 0);
		return;
	}
	if (!s->q.head)
		s->new_head = true;
	uw_emu_urbq_push(&s->q, u);
	pump(s);
}

static void audio_cancel(uw_emu *e, uw_urb *u)
{
	struct audio *a = uw_emu_priv(e);
	struct stream *s = NULL;
	bool head = false;
	for (int i = 0; i < 2 && !s; i++) {
		struct stream *x = i ? &a->spk : &a->mic;
		head = x->q.head == u;
		if (uw_emu_urbq_remove(&x->q, u))
			s = x;
	}
	if (!s)
		return; /* not ours, or already completed */
	if (head)
		s->new_head = true;
	uw_urb_complete(u, UW_URB_ECONNRESET, 0);
	pump(s); /* the next URB may now be the head: re-arm */
}

static void audio_configure(uw_emu *e, uint8_t config)
{
	struct audio *a = uw_emu_priv(e);
	(void)config; /* every configuration starts with both streams at altsetting 0 */
	stream_stop(&a->mic);
	stream_stop(&a->spk);
}

static void audio_set_alt(uw_emu *e, uint8_t iface, uint8_t alt)
{
	struct audio *a = uw_emu_priv(e);
	struct stream *s = iface == MIC_IFACE ? &a->mic : iface == SPK_IFACE ? &a->spk : NULL;
	if (!s)
		return;
	/* Selecting altsetting 1 again restarts the stream, as the endpoint is reset. */
	stream_stop(s);
	if (alt == 1)
		stream_start(s);
}

/* Sampling frequency control of either endpoint (UAC1 5.2.3.2.3.1): 3 bytes, 48000 only. */
static int audio_control(uw_emu *e, uw_urb *u)
{
	const uw_setup *c = &u->setup;
	bool in = (c->bm_request_type & 0x80) != 0;
	if (!uw_emu_config(e) || (c->bm_request_type & 0x7f) != 0x22 ||
	    c->w_value != UAC_SAMPLING_FREQ_CONTROL << 8 ||
	    (c->w_index != SPK_EP && c->w_index != MIC_EP))
		return UW_EMU_STALL;
	if (!in) {
		if (c->b_request != UAC_SET_CUR || c->w_length != 3 || u->len != 3 || !u->buf)
			return UW_EMU_STALL;
		uint32_t hz =
		    (uint32_t)u->buf[0] | (uint32_t)u->buf[1] << 8 | (uint32_t)u->buf[2] << 16;
		if (hz != AUDIO_RATE) {
			struct audio *a = uw_emu_priv(e);
			uw_logf(a->log, UW_LOG_DEBUG,
			        "emu:audio: SET_CUR sampling frequency %u Hz refused (only %u)", hz,
			        AUDIO_RATE);
			return UW_EMU_STALL;
		}
		return (int)u->len;
	}
	switch (c->b_request) {
	case UAC_GET_CUR:
	case UAC_GET_MIN:
	case UAC_GET_MAX:
	case UAC_GET_RES: {
		const uint8_t rate[3] = {LE24(AUDIO_RATE)};
		uint32_t room = u->len < c->w_length ? u->len : c->w_length;
		uint32_t n = room < sizeof rate ? room : (uint32_t)sizeof rate;
		if (n && u->buf)
			memcpy(u->buf, rate, n);
		return u->buf ? (int)n : 0;
	}
	default:
		return UW_EMU_STALL;
	}
}

static void audio_release(uw_emu *e)
{
	struct audio *a = uw_emu_priv(e);
	stream_stop(&a->mic);
	stream_stop(&a->spk);
}

static void audio_free(struct audio *a)
{
	if (a->in_fd >= 0)
		close(a->in_fd);
	if (a->out_fd >= 0)
		close(a->out_fd);
	free(a->in_path);
	free(a->out_path);
	free(a);
}

static void audio_destroy(uw_emu *e)
{
	struct audio *a = uw_emu_priv(e);
	stream_stop(&a->mic);
	stream_stop(&a->spk);
	if (a->out_dropped)
		uw_logf(a->log, UW_LOG_INFO, "emu:audio: %llu speaker frames could not be written",
		        (unsigned long long)a->out_dropped);
	audio_free(a);
}

static const struct uw_emu_class audio_class = {
    .kind = "audio",
    .control = audio_control,
    .transfer = audio_transfer,
    .cancel = audio_cancel,
    .configure = audio_configure,
    .set_alt = audio_set_alt,
    .release = audio_release,
    .destroy = audio_destroy,
};

/* ---- Creation ------------------------------------------------------------------------- */

/* The message and error for a file uw_emu_open_file could not open or opened as the wrong
 * kind (st non-NULL); what names what was expected. */
static int file_err(const uw_emu_args *a, const char *path, int err, const struct stat *st,
                    const char *what)
{
	const char *kind = uw_emu_file_kind(path, err, st);
	if (kind) {
		uw_emu_set_err(a, "emu:audio: %s is %s; %s", path, kind, what);
		return UW_E_INVAL;
	}
	uw_emu_set_err(a, "emu:audio: cannot open %s%s: %s", path,
	               strstr(what, "output") ? " for writing" : "", strerror(err));
	return err == EACCES ? UW_E_ACCESS : err == ENOENT ? UW_E_NOTFOUND : UW_E_IO;
}

static int open_input(const uw_emu_args *a, struct audio *au, const char *path)
{
	struct stat st;
	au->in_fd = uw_emu_open_file(path, O_RDONLY, &st);
	if (au->in_fd < 0)
		return file_err(a, path, errno, NULL, "the input must be a regular file");
	if (!S_ISREG(st.st_mode)) {
		uw_emu_set_err(a, "emu:audio: %s is not a regular file", path);
		return UW_E_INVAL;
	}
	if (st.st_size < (off_t)AUDIO_FRAME_BYTES) {
		uw_emu_set_err(a,
		               "emu:audio: %s holds no audio (not one 4-byte frame of S16_LE "
		               "stereo)",
		               path);
		return UW_E_INVAL;
	}
	/* Regular-file reads never wait; clear the flag anyway for plain blocking semantics. */
	int fl = fcntl(au->in_fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(au->in_fd, F_SETFL, fl & ~O_NONBLOCK);
	au->in_path = strdup(path);
	return au->in_path ? UW_OK : UW_E_NOMEM;
}

/* The output: appended to, never truncated (what it held stays), created 0600, never through a
 * symbolic link; a regular file only, checked on the opened descriptor: a pipe that fills would
 * take part of a write and shift every later frame by a few bytes. */
static int open_output(const uw_emu_args *a, struct audio *au, const char *path)
{
	struct stat in_st, out_st;
	au->out_fd = uw_emu_open_file(path, O_WRONLY | O_CREAT | O_APPEND, &out_st);
	if (au->out_fd < 0)
		return file_err(a, path, errno, NULL, "the output must be a regular file");
	if (!S_ISREG(out_st.st_mode)) {
		uw_emu_set_err(a, "emu:audio: output %s must be a regular file", path);
		return UW_E_INVAL;
	}
	/* Writing into the input would change what is played. */
	if (au->in_fd >= 0 && fstat(au->in_fd, &in_st) == 0 && in_st.st_dev == out_st.st_dev &&
	    in_st.st_ino == out_st.st_ino) {
		uw_emu_set_err(a, "emu:audio: input and output are the same file (%s)", path);
		return UW_E_INVAL;
	}
	au->out_path = strdup(path);
	return au->out_path ? UW_OK : UW_E_NOMEM;
}

int uw_emu_audio_new(const uw_emu_args *a, uw_dev **out)
{
	static const char *const allowed[] = {"signal", "input", "output", NULL};
	int r = uw_emu_check_opts(a, allowed);
	if (r != UW_OK)
		return r;
	const char *signal = uw_emu_opt(a, "signal");
	const char *input = uw_emu_opt(a, "input");
	const char *output = uw_emu_opt(a, "output");
	enum audio_signal sig = SIG_SINE;
	if (signal && input) {
		uw_emu_set_err(a, "emu:audio: input=PATH and signal= exclude each other (the input "
		                  "file replaces the signal)");
		return UW_E_INVAL;
	}
	if (signal) {
		if (strcmp(signal, "sine") == 0) {
			sig = SIG_SINE;
		} else if (strcmp(signal, "ramp") == 0) {
			sig = SIG_RAMP;
		} else if (strcmp(signal, "silence") == 0) {
			sig = SIG_SILENCE;
		} else {
			uw_emu_set_err(
			    a, "emu:audio: signal must be sine, ramp or silence, not \"%s\"",
			    signal);
			return UW_E_INVAL;
		}
	}
	if ((input && !input[0]) || (output && !output[0])) {
		const char *which = input && !input[0] ? "input" : "output";
		uw_emu_set_err(a, "emu:audio: %s needs a path (%s=PATH)", which, which);
		return UW_E_INVAL;
	}
	if (!a->loop) {
		uw_emu_set_err(a, "emu:audio: needs an event loop (streams are paced by timers)");
		return UW_E_INVAL;
	}
	struct audio *au = calloc(1, sizeof *au);
	if (!au)
		return UW_E_NOMEM;
	au->loop = a->loop;
	au->log = a->log;
	au->in_fd = au->out_fd = -1;
	au->signal = input ? SIG_FILE : sig;
	au->mic = (struct stream){.a = au, .name = "microphone"};
	au->spk = (struct stream){.a = au, .name = "speaker"};
	if (input && (r = open_input(a, au, input)) != UW_OK)
		goto fail;
	if (output && (r = open_output(a, au, output)) != UW_OK)
		goto fail;
	uw_emu_serial(a->busid, a->spec, au->serial);
	const char *strings[] = {NULL, "usbwire", "usbwire audio", au->serial};
	const struct uw_emu_desc desc = {
	    .device = audio_device,
	    .config = audio_config,
	    .config_len = sizeof audio_config,
	    .strings = strings,
	    .num_strings = 4,
	    .speed = UW_SPEED_FULL,
	};
	uw_dev *d;
	r = uw_emu_new(&audio_class, &desc, a->busid, a->busnum, a->devnum, a->spec, au, a->loop,
	               &d);
	if (r != UW_OK) {
		uw_emu_set_err(a, "emu:audio: %s", uw_strerror(r));
		goto fail;
	}
	au->e = uw_emu_from_dev(d);
	*out = d;
	return UW_OK;
fail:
	audio_free(au);
	return r;
}
