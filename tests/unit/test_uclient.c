/* SPDX-License-Identifier: MIT */
/*
 * test_uclient.c - the userspace client against a hostile server: the test plays the server on a
 * socketpair and answers each request with a malformed or inconsistent reply. The client must
 * report a clear error, complete every request exactly once, and never read or allocate what the
 * server merely announced.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uw_test.h"
#include "uw_uclient.h"

static void count_cb(uw_ureq *r)
{
	(*(int *)r->user)++;
}

struct row {
	const char *name;
	uint8_t dir, xfer;
	uint32_t len;
	/* The reply, built from the request's seqnum. */
	uint32_t command;
	int32_t seq_delta, status, actual, np, error_count;
	uint32_t payload; /* bytes of data sent after the header */
	bool close_after;
	bool iso_mismatch;
	/* Expectations */
	bool conn_fails;
	const char *err_has;
	int32_t want_status;
	uint32_t want_actual;
};

static const struct row rows[] = {
    {"valid IN reply", UW_DIR_IN, UW_XFER_BULK, 64, UW_RET_SUBMIT, 0, 0, 64, 0, 0, 64, false, false,
     false, NULL, 0, 64},
    {"stall with 4 bytes of partial data", UW_DIR_IN, UW_XFER_BULK, 64, UW_RET_SUBMIT, 0, -32, 4, 0,
     0, 4, false, false, false, NULL, -32, 4},
    {"RET_SUBMIT for an unknown seqnum", UW_DIR_IN, UW_XFER_BULK, 64, UW_RET_SUBMIT, 7, 0, 0, 0, 0,
     0, false, false, true, "no outstanding CMD_SUBMIT", UW_URB_ESHUTDOWN, 0},
    {"actual_length larger than requested", UW_DIR_IN, UW_XFER_BULK, 64, UW_RET_SUBMIT, 0, 0, 65, 0,
     0, 0, false, false, true, "more than the request's length", UW_URB_ESHUTDOWN, 0},
    {"actual_length 0x7fffffff", UW_DIR_IN, UW_XFER_BULK, 64, UW_RET_SUBMIT, 0, 0, 0x7fffffff, 0, 0,
     0, false, false, true, "actual_length", UW_URB_ESHUTDOWN, 0},
    {"CMD_SUBMIT sent by a server", UW_DIR_IN, UW_XFER_BULK, 64, UW_CMD_SUBMIT, 0, 0, 0, 0, 0, 0,
     false, false, true, "command", UW_URB_ESHUTDOWN, 0},
    {"positive status", UW_DIR_IN, UW_XFER_BULK, 64, UW_RET_SUBMIT, 0, 5, 0, 0, 0, 0, false, false,
     true, "status", UW_URB_ESHUTDOWN, 0},
    {"reply cut short, then closed", UW_DIR_IN, UW_XFER_BULK, 64, UW_RET_SUBMIT, 0, 0, 64, 0, 0, 10,
     true, false, true, "closed", UW_URB_ESHUTDOWN, 0},
    {"OUT reply: no payload, actual counts", UW_DIR_OUT, UW_XFER_BULK, 64, UW_RET_SUBMIT, 0, 0, 64,
     0, 0, 0, false, false, false, NULL, 0, 64},
    {"iso: packet count differs", UW_DIR_IN, UW_XFER_ISO, 20, UW_RET_SUBMIT, 0, 0, 0, 1, 0, 0,
     false, false, true, "number_of_packets", UW_URB_ESHUTDOWN, 0},
    {"iso: offsets not echoed", UW_DIR_IN, UW_XFER_ISO, 20, UW_RET_SUBMIT, 0, 0, 0, 2, 0, 0, false,
     true, true, "offset", UW_URB_EPROTO, 0},
    {"iso: error_count over packets", UW_DIR_IN, UW_XFER_ISO, 20, UW_RET_SUBMIT, 0, 0, 0, 2, 3, 0,
     false, false, true, "error_count", UW_URB_ESHUTDOWN, 0},
};

int main(void)
{
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		const struct row *w = &rows[i];
		int sv[2];
		socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
		uw_usb_device dev = {.busid = "1-1", .busnum = 1, .devnum = 2};
		uw_uclient *c = uw_uclient_from_fd(sv[0], &dev);
		uint8_t buf[64] = {0};
		uw_upkt pk[2] = {{0, 10, 0, 0}, {10, 10, 0, 0}};
		int done = 0;
		uw_ureq r = {.ep = 1,
		             .dir = w->dir,
		             .xfer = w->xfer,
		             .buf = buf,
		             .len = w->len,
		             .interval = 1,
		             .cb = count_cb,
		             .user = &done};
		if (w->xfer == UW_XFER_ISO) {
			r.num_iso = 2;
			r.iso = pk;
		}
		uw_uclient_submit(c, &r);
		uw_uclient_poll(c, 0);
		/* Read the request as the server would. */
		uint8_t req[48 + 64 + 32];
		size_t reqlen =
		    48 + (w->dir == UW_DIR_OUT ? w->len : 0) + (w->xfer == UW_XFER_ISO ? 32 : 0);
		ssize_t got = recv(sv[1], req, reqlen, MSG_WAITALL);
		uint32_t seq = (uint32_t)req[4] << 24 | (uint32_t)req[5] << 16 |
		               (uint32_t)req[6] << 8 | req[7];
		uint8_t rep[48 + 64 + 32];
		uw_urb_hdr h = {.command = w->command, .seqnum = seq + (uint32_t)w->seq_delta};
		h.u.ret.status = w->status;
		h.u.ret.actual_length = w->actual;
		h.u.ret.number_of_packets = w->np;
		h.u.ret.error_count = w->error_count;
		uw_urb_hdr_encode(&h, rep);
		size_t n = 48;
		memset(rep + n, 0x3c, w->payload);
		n += w->payload;
		if (w->xfer == UW_XFER_ISO && w->np == 2) {
			uw_iso_desc d0 = {0, 10, 0, 0},
			            d1 = {w->iso_mismatch ? 12u : 10u, 10, 0, 0};
			uw_iso_desc_encode(&d0, rep + n);
			uw_iso_desc_encode(&d1, rep + n + 16);
			n += 32;
		}
		send(sv[1], rep, n, MSG_NOSIGNAL);
		if (w->close_after)
			shutdown(sv[1], SHUT_WR);
		int rc = 0;
		for (int k = 0; k < 20 && !done && rc >= 0; k++)
			rc = uw_uclient_poll(c, 100);
		char err[256];
		snprintf(err, sizeof err, "%s", uw_uclient_error(c));
		bool failed = err[0] != '\0';
		bool err_ok = !w->err_has || strstr(err, w->err_has);
		uw_uclient_close(c);
		close(sv[1]);
		t_ok(got == (ssize_t)reqlen && failed == w->conn_fails && err_ok && done == 1 &&
		         r.status == w->want_status && r.actual == w->want_actual,
		     "%s: %s (status %d, actual %u, callbacks %d)", w->name,
		     failed ? err : "accepted", r.status, r.actual, done);
		if (!w->conn_fails && w->payload)
			t_ok(buf[0] == 0x3c && buf[w->payload - 1] == 0x3c,
			     "%s: the data reached the buffer", w->name);
	}
	/* An unknown RET_UNLINK is ignored (as Linux vhci does) and the next reply still works. */
	{
		int sv[2];
		socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
		uw_usb_device dev = {.busid = "1-1", .busnum = 1, .devnum = 2};
		uw_uclient *c = uw_uclient_from_fd(sv[0], &dev);
		int done = 0;
		uw_ureq r = {.ep = 1,
		             .dir = UW_DIR_OUT,
		             .xfer = UW_XFER_BULK,
		             .cb = count_cb,
		             .user = &done};
		uw_uclient_submit(c, &r);
		uw_uclient_poll(c, 0);
		uint8_t req[48];
		recv(sv[1], req, 48, MSG_WAITALL);
		uint8_t rep[96];
		uw_urb_hdr u = {.command = UW_RET_UNLINK, .seqnum = 999};
		uw_urb_hdr_encode(&u, rep);
		uw_urb_hdr s = {.command = UW_RET_SUBMIT, .seqnum = r.seqnum};
		uw_urb_hdr_encode(&s, rep + 48);
		send(sv[1], rep, 96, MSG_NOSIGNAL);
		for (int k = 0; k < 20 && !done; k++)
			uw_uclient_poll(c, 100);
		t_ok(done == 1 && uw_uclient_error(c)[0] == '\0',
		     "an unknown RET_UNLINK is ignored and the next reply is taken");
		uw_uclient_close(c);
		close(sv[1]);
	}
	return t_done();
}
