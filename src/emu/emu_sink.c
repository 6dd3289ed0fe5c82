/* SPDX-License-Identifier: MIT */
/*
 * emu_sink.c - emu:sink, the "source/sink" function of the Linux gadget zero, so that the
 * Linux usbtest driver binds to it (it matches 0525:a4a0) and its tests run, and a device to
 * measure throughput with.
 *
 * Interface 0, vendor-specific. Altsetting 0: bulk IN 0x81 (source: every IN transfer is filled
 * with the pattern) and bulk OUT 0x01 (sink: every OUT transfer is checked against it).
 * Altsetting 1 adds isochronous IN 0x82 and OUT 0x02 (usbtest's iso tests, with its alt=1).
 * Patterns, as usbtest's module parameter of the same name: 0 all zeros (both defaults), 1
 * "mod63": byte i of a transfer is (i % wMaxPacketSize) % 63. Bad OUT data halts the OUT
 * endpoint, as gadget zero does; the host sees the transfer stall (-EPIPE) and must clear it.
 * Vendor requests 0x5b (write up to 4096 bytes) and 0x5c (read them back) serve usbtest's
 * control tests (test 14).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uw_emu.h"

#define SINK_CTRL_BUF   4096u
#define SINK_MAXPACKET  512u
#define SINK_ISO_PACKET 1024u
/* The precomputed pattern: a whole number of packets, so transfers are copied/compared in
 * chunks with no per-byte work. */
#define SINK_PAT_LEN    (128u * SINK_MAXPACKET)

struct sink {
	const uw_logger *log;
	unsigned pattern;
	uint8_t pat[SINK_PAT_LEN];        /* pattern of a transfer's first SINK_PAT_LEN bytes */
	uint8_t iso_pat[SINK_ISO_PACKET]; /* pattern of one isochronous packet */
	uint8_t ctrl[SINK_CTRL_BUF];      /* what 0x5b stored */
	uint64_t mismatches;
	char serial[17];
};

/* clang-format off */
static const uint8_t sink_device[18] = {
	18, 1, 0x00, 0x02,  /* bcdUSB 2.00 */
	0x00, 0x00, 0x00,   /* class per interface */
	64,                 /* bMaxPacketSize0 */
	0x25, 0x05,         /* idVendor 0x0525 (NetChip, gadget zero) */
	0xa0, 0xa4,         /* idProduct 0xa4a0 (source/sink) */
	0x00, 0x01,         /* bcdDevice 1.00 */
	1, 2, 3,            /* iManufacturer, iProduct, iSerialNumber */
	1,                  /* bNumConfigurations */
};

#define SINK_CONFIG_LEN (9 + 9 + 7 + 7 + 9 + 7 + 7 + 7 + 7)
static const uint8_t sink_config[SINK_CONFIG_LEN] = {
	9, 2, SINK_CONFIG_LEN, 0, 1, 1, 0, 0xc0, 1, /* self-powered, 2 mA */
	/* altsetting 0: bulk source and sink */
	9, 4, 0, 0, 2, 0xff, 0, 0, 0,
	7, 5, 0x81, 2, SINK_MAXPACKET & 0xff, SINK_MAXPACKET >> 8, 0,
	7, 5, 0x01, 2, SINK_MAXPACKET & 0xff, SINK_MAXPACKET >> 8, 0,
	/* altsetting 1: the same plus isochronous, every 8 microframes (bInterval 4) */
	9, 4, 0, 1, 4, 0xff, 0, 0, 0,
	7, 5, 0x81, 2, SINK_MAXPACKET & 0xff, SINK_MAXPACKET >> 8, 0,
	7, 5, 0x01, 2, SINK_MAXPACKET & 0xff, SINK_MAXPACKET >> 8, 0,
	7, 5, 0x82, 1, SINK_ISO_PACKET & 0xff, SINK_ISO_PACKET >> 8, 4,
	7, 5, 0x02, 1, SINK_ISO_PACKET & 0xff, SINK_ISO_PACKET >> 8, 4,
};
/* clang-format on */

static void fill_pattern(uint8_t *dst, size_t len, const uint8_t *pat, size_t pat_len)
{
	while (len) {
		size_t n = len < pat_len ? len : pat_len;
		memcpy(dst, pat, n);
		dst += n;
		len -= n;
	}
}

/* Offset of the first byte of buf that differs from the pattern, or len. */
static size_t check_pattern(const uint8_t *buf, size_t len, const uint8_t *pat, size_t pat_len)
{
	for (size_t off = 0; off < len; off += pat_len) {
		size_t n = len - off < pat_len ? len - off : pat_len;
		if (memcmp(buf + off, pat, n) == 0)
			continue;
		for (size_t i = 0; i < n; i++) {
			if (buf[off + i] != pat[i])
				return off + i;
		}
	}
	return len;
}

/* Isochronous: IN packets are filled with the pattern; OUT packets are taken as they come
 * (gadget zero does not check them either: isochronous data has no handshake to refuse). */
static void sink_iso(struct sink *s, uw_urb *u)
{
	uint32_t total = 0;
	for (uint32_t i = 0; i < u->num_iso; i++) {
		uw_iso_pkt *p = &u->iso[i];
		if (u->dir == UW_DIR_IN && p->length) /* buf is NULL when the URB's length is 0 */
			fill_pattern(u->buf + p->offset, p->length, s->iso_pat, sizeof s->iso_pat);
		p->status = 0;
		p->actual_length = p->length;
		total += p->length;
	}
	u->error_count = 0;
	uw_urb_complete(u, 0, total);
}

static void sink_transfer(uw_emu *e, uw_urb *u)
{
	struct sink *s = uw_emu_priv(e);
	if (u->xfer == UW_XFER_ISO) {
		sink_iso(s, u);
		return;
	}
	if (u->dir == UW_DIR_IN) {
		if (s->pattern == 0 && u->len)
			memset(u->buf, 0, u->len);
		else
			fill_pattern(u->buf, u->len, s->pat, sizeof s->pat);
		uw_emu_complete(u, 0, u->len);
		return;
	}
	size_t bad = check_pattern(u->buf, u->len, s->pat, sizeof s->pat);
	if (bad == u->len) {
		uw_urb_complete(u, 0, u->len);
		return;
	}
	/* Stall the packet holding the bad byte; the packets before it were accepted. */
	s->mismatches++;
	uw_logf(s->log, UW_LOG_WARN,
	        "emu:sink: bad OUT byte %zu of %u: 0x%02x, want 0x%02x (pattern %u); endpoint "
	        "0x%02x halted (%llu mismatches)",
	        bad, (unsigned)u->len, u->buf[bad], s->pat[bad % sizeof s->pat], s->pattern,
	        (unsigned)u->ep, (unsigned long long)s->mismatches);
	uw_emu_set_halt(e, u->ep);
	uw_urb_complete(u, UW_URB_EPIPE, (uint32_t)(bad - bad % SINK_MAXPACKET));
}

static int sink_control(uw_emu *e, uw_urb *u)
{
	struct sink *s = uw_emu_priv(e);
	const uw_setup *c = &u->setup;
	/* Vendor, device recipient, wValue and wIndex 0, at most the buffer (as gadget zero). */
	if (c->w_value || c->w_index || c->w_length > SINK_CTRL_BUF)
		return UW_EMU_STALL;
	if (c->bm_request_type == 0x40 && c->b_request == 0x5b) {
		uint32_t n = u->len < c->w_length ? u->len : c->w_length;
		if (n)
			memcpy(s->ctrl, u->buf, n);
		return (int)u->len;
	}
	if (c->bm_request_type == 0xc0 && c->b_request == 0x5c) {
		uint32_t n = u->len < c->w_length ? u->len : c->w_length;
		if (n)
			memcpy(u->buf, s->ctrl, n);
		return (int)n;
	}
	return UW_EMU_STALL;
}

static void sink_destroy(uw_emu *e)
{
	struct sink *s = uw_emu_priv(e);
	if (s->mismatches)
		uw_logf(s->log, UW_LOG_INFO, "emu:sink: %llu OUT pattern mismatches",
		        (unsigned long long)s->mismatches);
	free(s);
}

static const struct uw_emu_class sink_class = {
    .kind = "sink",
    .control = sink_control,
    .transfer = sink_transfer,
    .destroy = sink_destroy,
};

int uw_emu_sink_new(const uw_emu_args *a, uw_dev **out)
{
	static const char *const allowed[] = {"pattern", NULL};
	int r = uw_emu_check_opts(a, allowed);
	if (r != UW_OK)
		return r;
	unsigned pattern = 0;
	const char *p = uw_emu_opt(a, "pattern");
	if (p) {
		if (strcmp(p, "0") != 0 && strcmp(p, "1") != 0) {
			if (a->err && a->errlen)
				snprintf(
				    a->err, a->errlen,
				    "emu:sink: pattern must be 0 (zeros) or 1 (mod63), not \"%s\"",
				    p);
			return UW_E_INVAL;
		}
		pattern = p[0] == '1';
	}
	struct sink *s = calloc(1, sizeof *s);
	if (!s)
		return UW_E_NOMEM;
	s->log = a->log;
	s->pattern = pattern;
	for (size_t i = 0; i < sizeof s->pat; i++)
		s->pat[i] = pattern ? (uint8_t)((i % SINK_MAXPACKET) % 63) : 0;
	for (size_t i = 0; i < sizeof s->iso_pat; i++)
		s->iso_pat[i] = pattern ? (uint8_t)(i % 63) : 0;
	uw_emu_serial(a->busid, a->spec, s->serial);
	const char *strings[] = {NULL, "usbwire", "usbwire source/sink", s->serial};
	const struct uw_emu_desc desc = {
	    .device = sink_device,
	    .config = sink_config,
	    .config_len = sizeof sink_config,
	    .strings = strings,
	    .num_strings = 4,
	    .speed = UW_SPEED_HIGH,
	};
	r = uw_emu_new(&sink_class, &desc, a->busid, a->busnum, a->devnum, a->spec, s, a->loop,
	               out);
	if (r != UW_OK) {
		free(s);
		if (a->err && a->errlen)
			snprintf(a->err, a->errlen, "emu:sink: %s", uw_strerror(r));
	}
	return r;
}
