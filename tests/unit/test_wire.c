/* SPDX-License-Identifier: MIT */
/*
 * test_wire.c - the USB/IP codec against byte-exact vectors (docs/protocol.md §2.9 and the Linux
 * capture in usbip_protocol.rst), round trips, every truncation point, malformed values for every
 * checked field, and every input placed right before a PROT_NONE page.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "uw_test.h"
#include "uw_wire.h"

/* ---- Helpers -------------------------------------------------------------------------------- */

/* Endpoint types of the imaginary device in these tests: 1 interrupt, 2 bulk, 3 isochronous. */
static int test_ep_type(void *user, uint32_t ep, uint32_t dir)
{
	(void)user;
	(void)dir;
	switch (ep) {
	case 1:
		return UW_XFER_INT;
	case 2:
		return UW_XFER_BULK;
	case 3:
		return UW_XFER_ISO;
	default:
		return UW_XFER_UNKNOWN;
	}
}

/* The client's table of outstanding requests, for framing RET_SUBMITs. */
struct pending_row {
	uint32_t seqnum;
	uw_pending p;
};
struct pending_tab {
	const struct pending_row *rows;
	size_t n;
};

static bool test_pending(void *user, uint32_t seqnum, uw_pending *out)
{
	const struct pending_tab *t = user;
	for (size_t i = 0; i < t->n; i++) {
		if (t->rows[i].seqnum == seqnum) {
			*out = t->rows[i].p;
			return true;
		}
	}
	return false;
}

static uint8_t iso_req_descs[3 * UW_ISO_DESC_LEN];

static const struct pending_row pending_rows[] = {
    {0xd05, {.direction = UW_DIR_IN, .xfer = UW_XFER_INT, .transfer_length = 64}},
    {0xd06, {.direction = UW_DIR_OUT, .xfer = UW_XFER_INT, .transfer_length = 64}},
    {1, {.direction = UW_DIR_IN, .xfer = UW_XFER_CONTROL, .transfer_length = 18}},
    {0x20,
     {.direction = UW_DIR_IN,
      .xfer = UW_XFER_ISO,
      .transfer_length = 300,
      .number_of_packets = 3,
      .iso_req = iso_req_descs}},
};
static struct pending_tab pending_tab = {pending_rows, sizeof pending_rows / sizeof *pending_rows};

/* Which decoder a vector is for. */
enum kind {
	K_OP_REQ,         /* uw_op_request_decode */
	K_OP_REP_IMPORT,  /* uw_op_rep_import_decode */
	K_OP_REP_DEVLIST, /* uw_op_rep_devlist_frame */
	K_CMD,            /* uw_cmd_decode */
	K_RET,            /* uw_ret_decode */
};

static enum uw_dec_status decode(enum kind k, const uint8_t *buf, size_t len, uw_dec *d)
{
	switch (k) {
	case K_OP_REQ: {
		uw_op_request r;
		return uw_op_request_decode(buf, len, &r, d);
	}
	case K_OP_REP_IMPORT: {
		uint32_t st;
		uw_usb_device dev;
		return uw_op_rep_import_decode(buf, len, &st, &dev, d);
	}
	case K_OP_REP_DEVLIST: {
		uint32_t n;
		return uw_op_rep_devlist_frame(buf, len, &n, d);
	}
	case K_CMD: {
		uw_cmd c;
		return uw_cmd_decode(buf, len, test_ep_type, NULL, &c, d);
	}
	case K_RET: {
		uw_ret r;
		return uw_ret_decode(buf, len, test_pending, &pending_tab, &r, d);
	}
	}
	return UW_DEC_ERROR;
}

/* ---- The vectors ---------------------------------------------------------------------------- */

#define ZEROS24 "000000000000000000000000 000000000000000000000000"
#define ZEROS29 "0000000000000000000000000000000000000000000000000000000000"

struct vector {
	const char *name;
	enum kind kind;
	const char *hex;
};

/* A 64-byte report and an 18-byte device descriptor used as payloads. */
#define REPORT64                                                                                   \
	"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"                         \
	"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
#define DEVDESC18 "12010002000000400b1d0010000101020301"

static const struct vector vectors[] = {
    {"OP_REQ_DEVLIST", K_OP_REQ, "0111 8005 00000000"},
    {"OP_REQ_IMPORT busid 1-2", K_OP_REQ, "0111 8003 00000000 312d32" ZEROS29},
    {"OP_REP_IMPORT ST_NODEV", K_OP_REP_IMPORT, "0111 0003 00000004"},
    {"OP_REP_DEVLIST empty", K_OP_REP_DEVLIST, "0111 0005 00000000 00000000"},
    /* Linux capture, usbip_protocol.rst: interrupt IN on a HID device, bus 1 dev 15. */
    {"CMD_SUBMIT interrupt IN (Linux capture)", K_CMD,
     "00000001 00000d05 0001000f 00000001 00000001"
     "00000200 00000040 ffffffff 00000000 00000004 0000000000000000"},
    {"RET_SUBMIT interrupt IN + 64 bytes (Linux capture)", K_RET,
     "00000003 00000d05 00000000 00000000 00000000"
     "00000000 00000040 ffffffff 00000000 00000000 0000000000000000" REPORT64},
    {"CMD_SUBMIT interrupt OUT + 64 bytes", K_CMD,
     "00000001 00000d06 0001000f 00000000 00000001"
     "00000000 00000040 ffffffff 00000000 00000004 0000000000000000" REPORT64},
    {"RET_SUBMIT interrupt OUT, no data", K_RET,
     "00000003 00000d06 00000000 00000000 00000000"
     "00000000 00000040 ffffffff 00000000 00000000 0000000000000000"},
    {"CMD_SUBMIT GET_DESCRIPTOR(DEVICE, 18)", K_CMD,
     "00000001 00000001 00010002 00000001 00000000"
     "00000200 00000012 00000000 00000000 00000000 8006000100001200"},
    {"RET_SUBMIT device descriptor", K_RET,
     "00000003 00000001 00000000 00000000 00000000"
     "00000000 00000012 00000000 00000000 00000000 0000000000000000" DEVDESC18},
    {"CMD_UNLINK seq 7 of seq 5", K_CMD,
     "00000002 00000007 00010002 00000000 00000000 00000005" ZEROS24},
    {"RET_UNLINK -ECONNRESET", K_RET,
     "00000004 00000007 00000000 00000000 00000000 ffffff98" ZEROS24},
    /* Isochronous IN with 3 packets of 100 bytes: 40 + 0 + 100 bytes came back, compacted. */
    {"CMD_SUBMIT iso IN 3 packets", K_CMD,
     "00000001 00000020 00010002 00000001 00000003"
     "00000202 0000012c 00000000 00000003 00000001 0000000000000000"
     "00000000 00000064 00000000 ffffffee"
     "00000064 00000064 00000000 ffffffee"
     "000000c8 00000064 00000000 ffffffee"},
};

/* ---- Tests ---------------------------------------------------------------------------------- */

static uint8_t vbuf[2048];

static void test_vectors_decode(void)
{
	for (size_t i = 0; i < sizeof vectors / sizeof *vectors; i++) {
		size_t n = t_unhex(vectors[i].hex, vbuf, sizeof vbuf);
		uw_dec d;
		enum uw_dec_status st = decode(vectors[i].kind, vbuf, n, &d);
		char msg[200];
		t_ok(st == UW_DEC_DONE && d.len == n, "decode %s: complete, %zu bytes (%s)",
		     vectors[i].name, n, uw_dec_format(&d, msg, sizeof msg));
		/* Extra bytes after a message are not part of it. */
		vbuf[n] = 0x55;
		st = decode(vectors[i].kind, vbuf, n + 1, &d);
		t_ok(st == UW_DEC_DONE && d.len == n, "decode %s with a trailing byte: still %zu",
		     vectors[i].name, n);
	}
}

/* Every prefix of every vector asks for more, never errors, never claims completion. */
static void test_truncations(void)
{
	for (size_t i = 0; i < sizeof vectors / sizeof *vectors; i++) {
		size_t n = t_unhex(vectors[i].hex, vbuf, sizeof vbuf);
		bool ok = true;
		size_t bad_at = 0;
		for (size_t k = 0; k < n; k++) {
			uw_dec d;
			enum uw_dec_status st = decode(vectors[i].kind, vbuf, k, &d);
			if (st != UW_DEC_MORE || d.len == 0 || d.len > n - k) {
				ok = false;
				bad_at = k;
				break;
			}
		}
		t_ok(ok, "every truncation of %s (%zu points) asks for more%s", vectors[i].name, n,
		     ok ? "" : " -- failed");
		if (!ok)
			t_diag("prefix of %zu bytes", bad_at);
	}
}

/* Feeding a stream by the decoder's own "need N more" answers reaches the message in few steps. */
static void test_incremental(void)
{
	for (size_t i = 0; i < sizeof vectors / sizeof *vectors; i++) {
		size_t n = t_unhex(vectors[i].hex, vbuf, sizeof vbuf);
		size_t have = 0;
		int steps = 0;
		uw_dec d;
		enum uw_dec_status st;
		while ((st = decode(vectors[i].kind, vbuf, have, &d)) == UW_DEC_MORE &&
		       steps < 10) {
			have += d.len;
			steps++;
		}
		t_ok(st == UW_DEC_DONE && d.len == n && have == n && steps <= 4,
		     "%s: reading exactly what the decoder asks for takes %d reads",
		     vectors[i].name, steps);
	}
}

/* Each vector, and each of its prefixes, decoded from the end of a page followed by PROT_NONE. */
static void test_guard_page(void)
{
	long pg = sysconf(_SC_PAGESIZE);
	uint8_t *mem =
	    mmap(NULL, (size_t)pg * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!t_ok(mem != MAP_FAILED, "mmap two pages"))
		return;
	if (!t_ok(mprotect(mem + pg, (size_t)pg, PROT_NONE) == 0, "guard page PROT_NONE"))
		return;
	for (size_t i = 0; i < sizeof vectors / sizeof *vectors; i++) {
		size_t n = t_unhex(vectors[i].hex, vbuf, sizeof vbuf);
		for (size_t k = 0; k <= n; k++) {
			uint8_t *at = mem + pg - k;
			memcpy(at, vbuf, k);
			uw_dec d;
			decode(vectors[i].kind, at, k, &d);
		}
		t_ok(true, "guard page: %s and its %zu prefixes read nothing past their end",
		     vectors[i].name, n);
	}
	munmap(mem, (size_t)pg * 2);
}

/* Malformed values: patch bytes of a valid vector and expect a specific error at a field. */
struct bad {
	const char *name;
	int vector; /* index into vectors[] */
	size_t at;
	const char *patch; /* hex bytes written at `at` */
	uw_err err;
	size_t off; /* expected error offset */
};

static const struct bad bads[] = {
    {"OP_REQ version 0x0110", 0, 0, "0110", UW_E_VERSION, 0},
    {"OP_REQ version 0x0000", 0, 0, "0000", UW_E_VERSION, 0},
    {"OP_REQ code OP_REQ_DEVINFO", 0, 2, "8002", UW_E_PROTO, 2},
    {"OP_REQ code is a reply", 0, 2, "0005", UW_E_PROTO, 2},
    {"OP_REQ code unknown 0x80ff", 0, 2, "80ff", UW_E_PROTO, 2},
    {"OP_REQ non-zero status", 0, 4, "00000001", UW_E_PROTO, 4},
    {"OP_REQ_IMPORT busid without NUL", 1, 8,
     "4141414141414141414141414141414141414141414141414141414141414141", UW_E_PROTO, 8},
    {"OP_REQ_IMPORT busid empty", 1, 8, "00", UW_E_PROTO, 8},
    {"OP_REP_IMPORT version", 2, 0, "0100", UW_E_VERSION, 0},
    {"OP_REP_IMPORT wrong code", 2, 2, "0005", UW_E_PROTO, 2},
    {"OP_REP_IMPORT unknown status 9", 2, 4, "00000009", UW_E_PROTO, 4},
    {"OP_REP_DEVLIST version", 3, 0, "0112", UW_E_VERSION, 0},
    {"OP_REP_DEVLIST wrong code", 3, 2, "0003", UW_E_PROTO, 2},
    {"OP_REP_DEVLIST status 1", 3, 4, "00000001", UW_E_PROTO, 4},
    {"OP_REP_DEVLIST ndev over limit", 3, 8, "00000401", UW_E_LIMIT, 8},
    {"OP_REP_DEVLIST ndev 0xffffffff", 3, 8, "ffffffff", UW_E_LIMIT, 8},
    {"CMD command 0", 4, 0, "00000000", UW_E_PROTO, 0},
    {"CMD command RET_SUBMIT from a client", 4, 0, "00000003", UW_E_PROTO, 0},
    {"CMD command 5", 4, 0, "00000005", UW_E_PROTO, 0},
    {"CMD command 0x01000001", 4, 0, "01000001", UW_E_PROTO, 0},
    {"CMD direction 2", 4, 12, "00000002", UW_E_PROTO, 12},
    {"CMD direction 0xffffffff", 4, 12, "ffffffff", UW_E_PROTO, 12},
    {"CMD ep 16", 4, 16, "00000010", UW_E_PROTO, 16},
    {"CMD ep 0x81 (address, not number)", 4, 16, "00000081", UW_E_PROTO, 16},
    {"CMD_SUBMIT length -1", 4, 24, "ffffffff", UW_E_PROTO, 24},
    {"CMD_SUBMIT length INT_MIN", 4, 24, "80000000", UW_E_PROTO, 24},
    {"CMD_SUBMIT length 0x7fffffff", 4, 24, "7fffffff", UW_E_LIMIT, 24},
    {"CMD_SUBMIT length 16 MiB + 1", 4, 24, "01000001", UW_E_LIMIT, 24},
    {"CMD_SUBMIT control length 65536", 8, 24, "00010000", UW_E_PROTO, 24},
    {"CMD_SUBMIT iso packets -1", 12, 32, "ffffffff", UW_E_PROTO, 32},
    {"CMD_SUBMIT iso packets 1025", 12, 32, "00000401", UW_E_LIMIT, 32},
    {"CMD_SUBMIT iso packet past the buffer", 12, 48 + 32, "000000c9", UW_E_PROTO, 48 + 32},
    {"CMD_SUBMIT iso offset wraps", 12, 48, "ffffffff", UW_E_PROTO, 48},
    {"CMD_SUBMIT iso packet longer than 49152", 12, 52, "0000c001", UW_E_LIMIT, 52},
    {"RET command CMD_SUBMIT from a server", 5, 0, "00000001", UW_E_PROTO, 0},
    {"RET command 0", 5, 0, "00000000", UW_E_PROTO, 0},
    {"RET direction 7", 5, 12, "00000007", UW_E_PROTO, 12},
    {"RET ep 99", 5, 16, "00000063", UW_E_PROTO, 16},
    {"RET_SUBMIT unknown seqnum", 5, 4, "00000999", UW_E_PROTO, 4},
    {"RET_SUBMIT positive status", 5, 20, "00000001", UW_E_PROTO, 20},
    {"RET_SUBMIT status below -4095", 5, 20, "ffff0000", UW_E_PROTO, 20},
    {"RET_SUBMIT actual_length -1", 5, 24, "ffffffff", UW_E_PROTO, 24},
    {"RET_SUBMIT actual_length > requested", 5, 24, "00000041", UW_E_PROTO, 24},
    {"RET_UNLINK positive status", 11, 20, "00000068", UW_E_PROTO, 20},
};

static void test_malformed(void)
{
	for (size_t i = 0; i < sizeof bads / sizeof *bads; i++) {
		const struct bad *b = &bads[i];
		size_t n = t_unhex(vectors[b->vector].hex, vbuf, sizeof vbuf);
		uint8_t patch[64];
		size_t pn = t_unhex(b->patch, patch, sizeof patch);
		memcpy(vbuf + b->at, patch, pn);
		uw_dec d;
		enum uw_dec_status st = decode(vectors[b->vector].kind, vbuf, n, &d);
		char msg[200];
		t_ok(st == UW_DEC_ERROR && d.err == b->err && d.off == b->off && d.what != NULL,
		     "rejects %s: %s", b->name, uw_dec_format(&d, msg, sizeof msg));
		/* A bad header field is reported as soon as the header is in, before the rest. */
		enum kind k = vectors[b->vector].kind;
		size_t hdr = (k == K_CMD || k == K_RET) ? UW_URB_HDR_LEN : UW_OP_COMMON_LEN;
		if (b->at + pn <= hdr && hdr < n) {
			st = decode(k, vbuf, hdr, &d);
			t_ok(st == UW_DEC_ERROR && d.off == b->off,
			     "rejects %s from the first %zu bytes alone", b->name, hdr);
		}
	}
}

/* ISO RET_SUBMIT checks: compacted data, echoes, sums. */
static void test_iso_ret(void)
{
	uw_iso_desc req[3] = {{0, 100, 0, -18}, {100, 100, 0, -18}, {200, 100, 0, -18}};
	for (int i = 0; i < 3; i++)
		uw_iso_desc_encode(&req[i], iso_req_descs + i * UW_ISO_DESC_LEN);

	struct {
		const char *name;
		uw_iso_desc got[3];
		int32_t actual;
		enum uw_dec_status want;
	} rows[] = {
	    {"valid: 40+0+100",
	     {{0, 100, 40, 0}, {100, 100, 0, -18}, {200, 100, 100, 0}},
	     140,
	     UW_DEC_DONE},
	    {"sum differs from actual_length",
	     {{0, 100, 40, 0}, {100, 100, 0, 0}, {200, 100, 100, 0}},
	     139,
	     UW_DEC_ERROR},
	    {"offset not echoed",
	     {{0, 100, 40, 0}, {96, 100, 0, 0}, {200, 100, 100, 0}},
	     140,
	     UW_DEC_ERROR},
	    {"length not echoed",
	     {{0, 100, 40, 0}, {100, 99, 0, 0}, {200, 100, 100, 0}},
	     140,
	     UW_DEC_ERROR},
	    {"packet actual > length",
	     {{0, 100, 101, 0}, {100, 100, 0, 0}, {200, 100, 39, 0}},
	     140,
	     UW_DEC_ERROR},
	    {"packet status positive",
	     {{0, 100, 40, 5}, {100, 100, 0, 0}, {200, 100, 100, 0}},
	     140,
	     UW_DEC_ERROR},
	};
	for (size_t r = 0; r < sizeof rows / sizeof *rows; r++) {
		uint8_t msg[48 + 300 + 48];
		uw_urb_hdr h = {.command = UW_RET_SUBMIT, .seqnum = 0x20};
		h.u.ret.actual_length = rows[r].actual;
		h.u.ret.number_of_packets = 3;
		uw_urb_hdr_encode(&h, msg);
		size_t al = (size_t)rows[r].actual;
		memset(msg + 48, 0xab, al);
		for (int i = 0; i < 3; i++)
			uw_iso_desc_encode(&rows[r].got[i], msg + 48 + al + (size_t)i * 16);
		uw_ret ret;
		uw_dec d;
		enum uw_dec_status st =
		    uw_ret_decode(msg, 48 + al + 48, test_pending, &pending_tab, &ret, &d);
		char txt[200];
		t_ok(st == rows[r].want, "iso RET_SUBMIT %s (%s)", rows[r].name,
		     uw_dec_format(&d, txt, sizeof txt));
		if (st == UW_DEC_DONE)
			t_ok(ret.num_iso == 3 && ret.data_len == al && ret.data == msg + 48 &&
			         ret.iso == msg + 48 + al,
			     "iso RET_SUBMIT points at compacted data then descriptors");
	}
	/* number_of_packets must equal the request's. */
	uint8_t msg[48];
	uw_urb_hdr h = {.command = UW_RET_SUBMIT, .seqnum = 0x20};
	h.u.ret.number_of_packets = 2;
	uw_urb_hdr_encode(&h, msg);
	uw_urb_hdr out;
	size_t dl, il;
	uw_dec d;
	t_ok(uw_ret_hdr_decode(msg, 48, test_pending, &pending_tab, &out, &dl, &il, &d) ==
	             UW_DEC_ERROR &&
	         d.off == 32,
	     "iso RET_SUBMIT with a different number_of_packets is rejected");
	h.u.ret.number_of_packets = 3;
	h.u.ret.error_count = 4;
	uw_urb_hdr_encode(&h, msg);
	t_ok(uw_ret_hdr_decode(msg, 48, test_pending, &pending_tab, &out, &dl, &il, &d) ==
	             UW_DEC_ERROR &&
	         d.off == 36,
	     "iso RET_SUBMIT with error_count > number_of_packets is rejected");
}

/* Field-level decode of the Linux capture, and framing rules (§2.5, §2.8). */
static void test_fields_and_framing(void)
{
	size_t n = t_unhex(vectors[4].hex, vbuf, sizeof vbuf);
	uw_cmd c;
	uw_dec d;
	uw_cmd_decode(vbuf, n, test_ep_type, NULL, &c, &d);
	t_ok(c.hdr.command == UW_CMD_SUBMIT && c.hdr.seqnum == 0xd05 && c.hdr.devid == 0x1000f &&
	         c.hdr.direction == UW_DIR_IN && c.hdr.ep == 1 &&
	         c.hdr.u.submit.transfer_flags == UW_URB_DIR_IN &&
	         c.hdr.u.submit.transfer_buffer_length == 64 && c.hdr.u.submit.start_frame == -1 &&
	         c.hdr.u.submit.number_of_packets == 0 && c.hdr.u.submit.interval == 4 &&
	         c.xfer == UW_XFER_INT && c.data == NULL && c.iso == NULL,
	     "Linux interrupt IN capture decodes field by field");

	n = t_unhex(vectors[8].hex, vbuf, sizeof vbuf);
	uw_cmd_decode(vbuf, n, test_ep_type, NULL, &c, &d);
	uw_setup s;
	uw_setup_decode(c.hdr.u.submit.setup, &s);
	t_ok(s.bm_request_type == 0x80 && s.b_request == 6 && s.w_value == 0x0100 &&
	         s.w_index == 0 && s.w_length == 18,
	     "setup packet fields are little-endian");
	uint8_t raw[8];
	uw_setup_encode(&s, raw);
	t_ok(memcmp(raw, c.hdr.u.submit.setup, 8) == 0,
	     "setup packet encodes back to the same bytes");

	/* Non-ISO URBs: number_of_packets of any value means no descriptors follow. */
	int32_t nps[] = {0, -1, 7, 1025, INT32_MIN};
	for (size_t i = 0; i < sizeof nps / sizeof *nps; i++) {
		uw_urb_hdr h = {
		    .command = UW_CMD_SUBMIT, .seqnum = 9, .direction = UW_DIR_OUT, .ep = 2};
		h.u.submit.transfer_buffer_length = 4;
		h.u.submit.number_of_packets = nps[i];
		uint8_t m[52];
		uw_urb_hdr_encode(&h, m);
		memset(m + 48, 0x11, 4);
		enum uw_dec_status st = uw_cmd_decode(m, 52, test_ep_type, NULL, &c, &d);
		t_ok(st == UW_DEC_DONE && d.len == 52 && c.iso == NULL && c.data == m + 48,
		     "bulk OUT with number_of_packets %d: 4 data bytes, no descriptors", nps[i]);
	}
	/* ISO OUT carries the whole buffer then descriptors. */
	{
		uw_urb_hdr h = {
		    .command = UW_CMD_SUBMIT, .seqnum = 9, .direction = UW_DIR_OUT, .ep = 3};
		h.u.submit.transfer_buffer_length = 10;
		h.u.submit.number_of_packets = 2;
		uint8_t m[48 + 10 + 32];
		uw_urb_hdr_encode(&h, m);
		uw_iso_desc a = {0, 4, 0, -18}, b = {6, 4, 0, -18};
		uw_iso_desc_encode(&a, m + 58);
		uw_iso_desc_encode(&b, m + 74);
		enum uw_dec_status st = uw_cmd_decode(m, sizeof m, test_ep_type, NULL, &c, &d);
		t_ok(st == UW_DEC_DONE && d.len == sizeof m && c.data_len == 10 && c.num_iso == 2 &&
		         c.iso == m + 58,
		     "iso OUT: whole uncompacted buffer, then the descriptors");
	}
	/* An OUT RET_SUBMIT carries no data even with actual_length > 0. */
	n = t_unhex(vectors[7].hex, vbuf, sizeof vbuf);
	uw_ret r;
	t_ok(uw_ret_decode(vbuf, n, test_pending, &pending_tab, &r, &d) == UW_DEC_DONE &&
	         d.len == 48 && r.hdr.u.ret.actual_length == 64 && r.data == NULL,
	     "RET_SUBMIT for an OUT URB: actual_length 64, no payload");
	/* An IN RET_SUBMIT with an error status still carries its partial data. */
	{
		uw_urb_hdr h = {.command = UW_RET_SUBMIT, .seqnum = 0xd05};
		h.u.ret.status = -32;
		h.u.ret.actual_length = 8;
		uint8_t m[56];
		uw_urb_hdr_encode(&h, m);
		memset(m + 48, 7, 8);
		t_ok(uw_ret_decode(m, 56, test_pending, &pending_tab, &r, &d) == UW_DEC_DONE &&
		         d.len == 56 && r.data_len == 8,
		     "RET_SUBMIT -EPIPE with 8 bytes of partial IN data frames them");
	}
}

/* Encoders produce exactly the vectors; encode -> decode round trips. */
static void test_encoders(void)
{
	uint8_t out[400], want[400];
	size_t wn;

	wn = t_unhex(vectors[0].hex, want, sizeof want);
	int n = uw_op_common_encode(out, sizeof out, UW_OP_REQ_DEVLIST, 0);
	t_ok(n == (int)wn && memcmp(out, want, wn) == 0, "encode OP_REQ_DEVLIST");

	wn = t_unhex(vectors[1].hex, want, sizeof want);
	memset(out, 0xee, sizeof out);
	n = uw_op_req_import_encode(out, sizeof out, "1-2");
	t_ok(n == (int)wn && memcmp(out, want, wn) == 0, "encode OP_REQ_IMPORT 1-2, NUL-padded");
	t_ok(uw_op_req_import_encode(out, 39, "1-2") == UW_E_SHORT,
	     "encode OP_REQ_IMPORT into 39 bytes: UW_E_SHORT");
	t_ok(uw_op_req_import_encode(out, sizeof out, "0123456789012345678901234567890123") ==
	         UW_E_INVAL,
	     "encode OP_REQ_IMPORT with a 34-char busid: UW_E_INVAL");
	t_ok(uw_op_req_import_encode(out, sizeof out, "0123456789012345678901234567890") == 40,
	     "encode OP_REQ_IMPORT with a 31-char busid fits");

	wn = t_unhex(vectors[2].hex, want, sizeof want);
	n = uw_op_rep_import_encode(out, sizeof out, UW_ST_NODEV, NULL);
	t_ok(n == (int)wn && memcmp(out, want, wn) == 0, "encode OP_REP_IMPORT ST_NODEV (8 bytes)");

	wn = t_unhex(vectors[3].hex, want, sizeof want);
	n = uw_op_rep_devlist_hdr_encode(out, sizeof out, 0);
	t_ok(n == (int)wn && memcmp(out, want, wn) == 0, "encode empty OP_REP_DEVLIST (12 bytes)");

	/* URB headers: encode(decode(v)) == v for every URB vector. */
	for (size_t i = 4; i < sizeof vectors / sizeof *vectors; i++) {
		wn = t_unhex(vectors[i].hex, want, sizeof want);
		uw_dec d;
		uw_urb_hdr h;
		if (vectors[i].kind == K_CMD) {
			uw_cmd c;
			uw_cmd_decode(want, wn, test_ep_type, NULL, &c, &d);
			h = c.hdr;
		} else {
			uw_ret r;
			uw_ret_decode(want, wn, test_pending, &pending_tab, &r, &d);
			h = r.hdr;
		}
		uw_urb_hdr_encode(&h, out);
		t_ok(memcmp(out, want, 48) == 0, "encode(decode(%s)) gives the same 48 bytes",
		     vectors[i].name);
		if (memcmp(out, want, 48))
			t_hexdiff(vectors[i].name, out, want, 48);
	}
}

/* A device list with two devices (multi-interface and unconfigured) and OP_REP_IMPORT. */
static void test_devlist_and_import(void)
{
	uw_usb_device a = {
	    .path = "/sys/devices/pci0000:00/0000:00:1d.1/usb3/3-2",
	    .busid = "3-2",
	    .busnum = 3,
	    .devnum = 4,
	    .speed = UW_SPEED_HIGH,
	    .id_vendor = 0x1d6b,
	    .id_product = 0x0104,
	    .bcd_device = 0x0100,
	    .device_class = 0xef,
	    .device_subclass = 2,
	    .device_protocol = 1,
	    .configuration_value = 1,
	    .num_configurations = 1,
	    .num_interfaces = 2,
	};
	uw_usb_interface ai[2] = {{8, 6, 0x50}, {2, 2, 1}};
	uw_usb_device b = {.path = "/emu/1",
	                   .busid = "1-1",
	                   .busnum = 1,
	                   .devnum = 2,
	                   .speed = UW_SPEED_SUPER,
	                   .id_vendor = 0xabcd,
	                   .id_product = 0x1234};
	uint8_t buf[12 + 320 + 312];
	int n = uw_op_rep_devlist_hdr_encode(buf, sizeof buf, 2);
	n += uw_devlist_entry_encode(buf + n, sizeof buf - (size_t)n, &a, ai);
	n += uw_devlist_entry_encode(buf + n, sizeof buf - (size_t)n, &b, NULL);
	t_ok(n == 12 + 312 + 8 + 312, "device list of 2 is 12 + 312 + 2*4 + 312 bytes");
	/* Spot-check the absolute offsets of protocol.md §2.3. */
	t_ok(memcmp(buf + 0x10C, "3-2", 4) == 0 && buf[0x12F] == 3 && buf[0x133] == 4 &&
	         buf[0x137] == 3 && buf[0x138] == 0x1d && buf[0x139] == 0x6b && buf[0x143] == 2 &&
	         buf[0x144] == 8 && buf[0x146] == 0x50 && buf[0x147] == 0,
	     "device record fields at the offsets Linux uses, big-endian ids");
	uint32_t ndev = 0;
	uw_dec d;
	t_ok(uw_op_rep_devlist_frame(buf, (size_t)n, &ndev, &d) == UW_DEC_DONE &&
	         d.len == (size_t)n && ndev == 2,
	     "device list frames to its whole length");
	size_t pos = UW_OP_REP_DEVLIST_HDR;
	uw_usb_device got;
	uw_usb_interface gi[4];
	int r = uw_devlist_next(buf, (size_t)n, &pos, &got, gi, 4);
	t_ok(r == UW_OK && memcmp(&got, &a, sizeof got) == 0 && gi[1].iface_class == 2 &&
	         gi[1].iface_protocol == 1,
	     "first device round-trips with its interfaces");
	r = uw_devlist_next(buf, (size_t)n, &pos, &got, gi, 4);
	t_ok(r == UW_OK && strcmp(got.busid, "1-1") == 0 && got.num_interfaces == 0 &&
	         pos == (size_t)n,
	     "second (unconfigured) device round-trips and ends the list");
	t_ok(uw_devlist_next(buf, (size_t)n, &pos, &got, gi, 4) == UW_E_SHORT,
	     "reading past the list is UW_E_SHORT");
	for (size_t k = 0; k < (size_t)n; k++) {
		enum uw_dec_status st = uw_op_rep_devlist_frame(buf, k, &ndev, &d);
		if (st != UW_DEC_MORE) {
			t_ok(false, "device list truncated at %zu asks for more", k);
			break;
		}
		if (k == (size_t)n - 1)
			t_ok(true, "every truncation of the 2-device list asks for more");
	}
	/* A record with bNumInterfaces = 255 needs 1020 more bytes: asked for, not assumed. */
	buf[12 + 0x137] = 255;
	t_ok(uw_op_rep_devlist_frame(buf, 12 + 312, &ndev, &d) == UW_DEC_MORE && d.len == 1020,
	     "device with 255 interfaces asks for its 1020 interface bytes");
	/* busid without NUL in a record. */
	buf[12 + 0x137] = 2;
	memset(buf + 12 + 0x100, 'x', 32);
	t_ok(uw_op_rep_devlist_frame(buf, (size_t)n, &ndev, &d) == UW_DEC_ERROR &&
	         d.off == 12 + 0x100,
	     "device record busid without NUL is rejected at its offset");

	/* OP_REP_IMPORT success: 320 bytes, round trip. */
	uint8_t rep[UW_OP_REP_IMPORT_LEN];
	n = uw_op_rep_import_encode(rep, sizeof rep, UW_ST_OK, &a);
	uint32_t st = 99;
	t_ok(n == 320 && uw_op_rep_import_decode(rep, 320, &st, &got, &d) == UW_DEC_DONE &&
	         st == 0 && memcmp(&got, &a, sizeof got) == 0,
	     "OP_REP_IMPORT success is 320 bytes and round-trips");
	for (size_t k = 8; k < 320; k++) {
		if (uw_op_rep_import_decode(rep, k, &st, &got, &d) != UW_DEC_MORE) {
			t_ok(false, "OP_REP_IMPORT truncated at %zu asks for more", k);
			break;
		}
		if (k == 319)
			t_ok(true, "every truncation of OP_REP_IMPORT success asks for more");
	}
	struct {
		const char *name;
		size_t at;
		uint8_t byte;
	} bad_rec[] = {
	    {"busnum > 65535", 8 + 0x121, 1},
	    {"devnum > 65535", 8 + 0x125, 1},
	    {"speed 7", 8 + 0x12B, 7},
	    {"path without NUL", 8 + 0xff, 'p'},
	};
	for (size_t i = 0; i < sizeof bad_rec / sizeof *bad_rec; i++) {
		uint8_t copy[320];
		memcpy(copy, rep, 320);
		if (bad_rec[i].at == 8 + 0xff)
			memset(copy + 8, 'p', 256);
		else
			copy[bad_rec[i].at] = bad_rec[i].byte;
		t_ok(uw_op_rep_import_decode(copy, 320, &st, &got, &d) == UW_DEC_ERROR,
		     "OP_REP_IMPORT record with %s is rejected", bad_rec[i].name);
	}
	/* Encoder refuses what cannot be represented. */
	uw_usb_device c = a;
	memset(c.busid, 'z', sizeof c.busid);
	t_ok(uw_devrec_encode(rep, sizeof rep, &c) == UW_E_INVAL,
	     "encoding a busid that fills all 32 bytes is refused");
	t_ok(uw_devlist_entry_encode(rep, sizeof rep, &a, NULL) == UW_E_INVAL,
	     "encoding 2 interfaces without interface records is refused");
}

static void test_names(void)
{
	t_ok(strcmp(uw_op_status_str(UW_ST_DEV_BUSY), "Device busy (exported)") == 0,
	     "ST_DEV_BUSY text matches the stock tools");
	t_ok(strcmp(uw_urb_cmd_name(UW_RET_UNLINK), "RET_UNLINK") == 0 &&
	         strcmp(uw_urb_cmd_name(77), "unknown command") == 0,
	     "URB command names");
	t_ok(strcmp(uw_speed_name(UW_SPEED_SUPER), "super-speed") == 0 &&
	         strcmp(uw_speed_name(9), "invalid-speed") == 0,
	     "speed names");
	t_ok(strcmp(uw_strerror(UW_E_PROTO), "protocol error") == 0 &&
	         strcmp(uw_err_name(UW_E_LIMIT), "LIMIT") == 0 &&
	         strcmp(uw_strerror(-999), "unknown error") == 0 &&
	         strcmp(uw_strerror(5), "unknown error") == 0,
	     "error names and messages");
	bool dense = true;
	for (int e = 0; e >= UW_ERR_MIN; e--)
		if (strcmp(uw_err_name(e), "UNKNOWN") == 0)
			dense = false;
	t_ok(dense, "every error value from 0 to UW_ERR_MIN has a name");
	uw_dec d = {
	    .status = UW_DEC_ERROR, .err = UW_E_LIMIT, .off = 24, .what = "x: y", .value = 7};
	char b[16];
	uw_dec_format(&d, b, sizeof b);
	t_ok(strlen(b) == 15, "uw_dec_format truncates to the buffer");
}

int main(void)
{
	test_vectors_decode();
	test_truncations();
	test_incremental();
	test_guard_page();
	test_malformed();
	test_iso_ret();
	test_fields_and_framing();
	test_encoders();
	test_devlist_and_import();
	test_names();
	return t_done();
}
