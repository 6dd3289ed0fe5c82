/* SPDX-License-Identifier: MIT */
/*
 * test_server.c - the server's sessions end to end in one process: a scriptable test device
 * behind uw_server, a socketpair, and raw USB/IP bytes on the other end (built and checked with
 * the codec). The loop runs on its own thread, as in the daemon; the test is the client.
 *
 * The test device "7-1":
 *   ep0        control: GET_DESCRIPTOR(DEVICE) -> 18 bytes; anything else stalls
 *   ep1 IN     bulk, held: completes only when cancelled or released by the test
 *   ep2 OUT    bulk: stores the data; ep2 IN returns what was stored
 *   ep3 IN/OUT isochronous: packet i gets min(i, length) bytes of value i
 *   ep4 IN     bulk completed from another thread after a short delay
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "uw_emu.h"
#include "uw_server.h"
#include "uw_uclient.h"
#include "uw_test.h"

/* ---- The test device ------------------------------------------------------------------------ */

#define MAX_HELD 64

struct testdev {
	uw_dev dev;
	uw_loop *loop;
	uw_urb *held[MAX_HELD];
	int nheld;
	uint8_t stored[4096];
	uint32_t stored_len;
	atomic_int imports, releases, submits, cancels;
};

static const uint8_t dev_desc[18] = {18,   1,    0x00, 0x02, 0,    0, 0, 64, 0x34,
                                     0x12, 0x78, 0x56, 0x00, 0x01, 1, 2, 3,  1};

static int td_import(uw_dev *d)
{
	struct testdev *t = d->priv;
	t->imports++;
	return UW_OK;
}

static void *late_complete(void *arg)
{
	uw_urb *u = arg;
	struct timespec ts = {0, 2 * 1000 * 1000};
	nanosleep(&ts, NULL);
	memset(u->buf, 0x44, u->len);
	uw_urb_complete(u, 0, u->len);
	return NULL;
}

static void td_submit(uw_dev *d, uw_urb *u)
{
	struct testdev *t = d->priv;
	t->submits++;
	if (u->ep == 0) {
		if (u->setup.bm_request_type == 0x80 && u->setup.b_request == 6 &&
		    u->setup.w_value == 0x0100) {
			uint32_t n = u->len < 18 ? u->len : 18;
			memcpy(u->buf, dev_desc, n);
			uw_urb_complete(u, 0, n);
		} else {
			uw_urb_complete(u, UW_URB_EPIPE, 0);
		}
		return;
	}
	if (u->ep == 1) {
		t->held[t->nheld++] = u;
		return;
	}
	if (u->ep == 2 && u->dir == UW_DIR_OUT) {
		t->stored_len = u->len < sizeof t->stored ? u->len : sizeof t->stored;
		memcpy(t->stored, u->buf, t->stored_len);
		uw_urb_complete(u, 0, u->len);
		return;
	}
	if (u->ep == 2) {
		uint32_t n = u->len < t->stored_len ? u->len : t->stored_len;
		memcpy(u->buf, t->stored, n);
		uw_urb_complete(u, 0, n);
		return;
	}
	if (u->ep == 3) {
		uint32_t sum = 0;
		for (uint32_t i = 0; i < u->num_iso; i++) {
			uw_iso_pkt *p = &u->iso[i];
			uint32_t n = i < p->length ? i : p->length;
			if (u->dir == UW_DIR_IN)
				memset(u->buf + p->offset, (int)i, n);
			p->actual_length = u->dir == UW_DIR_IN ? n : p->length;
			p->status = i == 1 ? UW_URB_EXDEV : 0;
			sum += p->actual_length;
		}
		uw_urb_complete(u, 0, sum);
		return;
	}
	if (u->ep == 4) {
		pthread_t th;
		pthread_create(&th, NULL, late_complete, u);
		pthread_detach(th);
		return;
	}
	uw_urb_complete(u, UW_URB_EPIPE, 0);
}

static void td_cancel(uw_dev *d, uw_urb *u)
{
	struct testdev *t = d->priv;
	t->cancels++;
	for (int i = 0; i < t->nheld; i++) {
		if (t->held[i] == u) {
			t->held[i] = t->held[--t->nheld];
			uw_urb_complete(u, UW_URB_ECONNRESET, 0);
			return;
		}
	}
}

static int td_ep_type(uw_dev *d, unsigned ep, unsigned dir)
{
	(void)d;
	switch (ep) {
	case 0:
		return UW_XFER_CONTROL;
	case 1:
		return dir == UW_DIR_IN ? UW_XFER_BULK : UW_XFER_UNKNOWN;
	case 2:
		return UW_XFER_BULK;
	case 3:
		return UW_XFER_ISO;
	case 4:
		return dir == UW_DIR_IN ? UW_XFER_BULK : UW_XFER_UNKNOWN;
	}
	return UW_XFER_UNKNOWN;
}

static void td_release(uw_dev *d)
{
	struct testdev *t = d->priv;
	t->releases++;
}

static void td_destroy(uw_dev *d)
{
	(void)d;
}

static const struct uw_dev_ops td_ops = {
    .import = td_import,
    .submit = td_submit,
    .cancel = td_cancel,
    .ep_type = td_ep_type,
    .release = td_release,
    .destroy = td_destroy,
};

/* ---- Harness -------------------------------------------------------------------------------- */

static struct testdev td;
static uw_loop *loop;
static uw_server *srv;
static pthread_t loop_thread;

static void *run_loop(void *arg)
{
	(void)arg;
	uw_loop_run(loop);
	return NULL;
}

static void post_add_conn(void *arg)
{
	uw_server_add_connection(srv, (int)(intptr_t)arg);
}

/* Runs fn(arg) on the loop thread and waits for it. */
struct sync_call {
	void (*fn)(void *);
	void *arg;
	atomic_int done;
};
static void sync_tramp(void *arg)
{
	struct sync_call *c = arg;
	c->fn(c->arg);
	c->done = 1;
}
static void on_loop(void (*fn)(void *), void *arg)
{
	struct sync_call c = {fn, arg, 0};
	uw_loop_post(loop, sync_tramp, &c);
	while (!c.done) {
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
}

/* A new client connection to the server. */
static int connect_client(void)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	/* The server end must be non-blocking. */
	if (fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK) < 0)
		abort();
	uw_loop_post(loop, post_add_conn, (void *)(intptr_t)sv[0]);
	return sv[1];
}

static int send_all(int fd, const void *p, size_t n)
{
	const uint8_t *b = p;
	while (n) {
		ssize_t k = send(fd, b, n, MSG_NOSIGNAL);
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

/* Reads exactly n bytes within 3 s; returns 0, or -1 on EOF/timeout. */
static int recv_all(int fd, void *p, size_t n)
{
	uint8_t *b = p;
	while (n) {
		struct pollfd pf = {fd, POLLIN, 0};
		if (poll(&pf, 1, 60000) <= 0) /* a safety net: replies come at once */
			return -1;
		ssize_t k = recv(fd, b, n, 0);
		if (k <= 0)
			return -1;
		b += k;
		n -= (size_t)k;
	}
	return 0;
}

/* True if the server closes the connection within 3 s (EOF), reading away anything before. */
static bool sees_eof(int fd)
{
	uint8_t junk[4096];
	for (;;) {
		struct pollfd pf = {fd, POLLIN, 0};
		if (poll(&pf, 1, 60000) <= 0) /* a safety net: replies come at once */
			return false;
		ssize_t k = recv(fd, junk, sizeof junk, 0);
		if (k == 0)
			return true;
		if (k < 0)
			return errno == ECONNRESET;
	}
}

/* True if nothing arrives within ms milliseconds. */
static bool quiet_for(int fd, int ms)
{
	struct pollfd pf = {fd, POLLIN, 0};
	return poll(&pf, 1, ms) == 0;
}

static const uint32_t DEVID = 7u << 16 | 1u;

static int import_dev(const char *busid, uint32_t *status)
{
	int fd = connect_client();
	uint8_t req[40], rep[320];
	uw_op_req_import_encode(req, sizeof req, busid);
	send_all(fd, req, sizeof req);
	if (recv_all(fd, rep, 8) < 0) {
		close(fd);
		return -1;
	}
	*status = (uint32_t)rep[4] << 24 | (uint32_t)rep[5] << 16 | (uint32_t)rep[6] << 8 | rep[7];
	if (*status == 0 && recv_all(fd, rep + 8, 312) == 0)
		return fd;
	sees_eof(fd);
	close(fd);
	return -1;
}

/* Imports 7-1 once the previous session has released it (the release follows the close). */
static int import_when_released(uint32_t *st)
{
	int fd = -1;
	for (int k = 0; k < 6000 && fd < 0; k++) { /* a minute at most: a safety net */
		fd = import_dev("7-1", st);
		if (fd < 0) {
			struct timespec ts = {0, 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	return fd;
}

static void submit(int fd, uint32_t seq, uint32_t ep, uint32_t dir, int32_t len, const void *data,
                   const uint8_t setup[8], int32_t np, const uw_iso_desc *iso)
{
	uint8_t buf[48 + 8192 + 16 * 8];
	uw_urb_hdr h = {
	    .command = UW_CMD_SUBMIT, .seqnum = seq, .devid = DEVID, .direction = dir, .ep = ep};
	h.u.submit.transfer_buffer_length = len;
	h.u.submit.number_of_packets = np;
	h.u.submit.start_frame = -1;
	if (setup)
		memcpy(h.u.submit.setup, setup, 8);
	uw_urb_hdr_encode(&h, buf);
	size_t n = 48;
	if (dir == UW_DIR_OUT && len > 0) {
		memcpy(buf + n, data, (size_t)len);
		n += (size_t)len;
	}
	for (int32_t i = 0; iso && i < np; i++) {
		uw_iso_desc_encode(&iso[i], buf + n);
		n += 16;
	}
	send_all(fd, buf, n);
}

static void unlink_urb(int fd, uint32_t seq, uint32_t target)
{
	uint8_t buf[48];
	uw_urb_hdr h = {.command = UW_CMD_UNLINK, .seqnum = seq, .devid = DEVID};
	h.u.unlink.seqnum = target;
	uw_urb_hdr_encode(&h, buf);
	send_all(fd, buf, 48);
}

/* Reads one reply header (raw fields, big-endian decoded). */
struct reply {
	uint32_t cmd, seq, devid, dir, ep;
	int32_t status, actual, start_frame, np, errors;
	uint8_t raw[48];
};
static int read_reply(int fd, struct reply *r)
{
	if (recv_all(fd, r->raw, 48) < 0)
		return -1;
	uint32_t w[10];
	for (int i = 0; i < 10; i++)
		w[i] = (uint32_t)r->raw[4 * i] << 24 | (uint32_t)r->raw[4 * i + 1] << 16 |
		       (uint32_t)r->raw[4 * i + 2] << 8 | r->raw[4 * i + 3];
	r->cmd = w[0];
	r->seq = w[1];
	r->devid = w[2];
	r->dir = w[3];
	r->ep = w[4];
	r->status = (int32_t)w[5];
	r->actual = (int32_t)w[6];
	r->start_frame = (int32_t)w[7];
	r->np = (int32_t)w[8];
	r->errors = (int32_t)w[9];
	return 0;
}

static const uint8_t GET_DEV_DESC[8] = {0x80, 6, 0x00, 0x01, 0, 0, 18, 0};

static void release_held(void *arg)
{
	(void)arg;
	while (td.nheld) {
		uw_urb *u = td.held[--td.nheld];
		memset(u->buf, 0x11, u->len);
		uw_urb_complete(u, 0, u->len);
	}
}

/* ---- Tests -------------------------------------------------------------------------------- */

static void test_devlist(void)
{
	int fd = connect_client();
	uint8_t req[8], rep[12 + 312 + 4];
	uw_op_common_encode(req, sizeof req, UW_OP_REQ_DEVLIST, 0);
	send_all(fd, req, 8);
	bool got = recv_all(fd, rep, sizeof rep) == 0;
	uint32_t n;
	uw_dec d;
	t_ok(got && uw_op_rep_devlist_frame(rep, sizeof rep, &n, &d) == UW_DEC_DONE && n == 1 &&
	         memcmp(rep + 12 + 256, "7-1", 4) == 0,
	     "OP_REQ_DEVLIST lists the device (busid 7-1, one interface)");
	t_ok(sees_eof(fd), "the server closes the connection after the device list");
	close(fd);
}

static void test_import_refusals(void)
{
	uint32_t st = 99;
	int fd = import_dev("9-9", &st);
	t_ok(fd < 0 && st == UW_ST_NODEV, "import of an unknown busid: ST_NODEV, then closed");
	/* A request delivered one byte at a time is still understood. */
	fd = connect_client();
	uint8_t req[40], rep[8];
	uw_op_req_import_encode(req, sizeof req, "9-8");
	for (int i = 0; i < 40; i++) {
		send_all(fd, req + i, 1);
		struct timespec ts = {0, 200000};
		nanosleep(&ts, NULL);
	}
	t_ok(recv_all(fd, rep, 8) == 0 && rep[7] == UW_ST_NODEV && sees_eof(fd),
	     "an import request sent byte by byte is answered");
	close(fd);
}

static void test_urbs(void)
{
	uint32_t st;
	int fd = import_dev("7-1", &st);
	if (!t_ok(fd >= 0 && st == 0, "import 7-1 succeeds (320-byte reply)"))
		return;
	uint32_t st2 = 99;
	int fd2 = import_dev("7-1", &st2);
	t_ok(fd2 < 0 && st2 == UW_ST_DEV_BUSY, "a second import of 7-1 gets ST_DEV_BUSY");
	{
		int lf = connect_client();
		uint8_t req[8], rep[12];
		uw_op_common_encode(req, sizeof req, UW_OP_REQ_DEVLIST, 0);
		send_all(lf, req, 8);
		t_ok(recv_all(lf, rep, 12) == 0 && rep[11] == 0 && sees_eof(lf),
		     "an imported device is not listed");
		close(lf);
	}

	struct reply r;
	uint8_t data[18];
	submit(fd, 1, 0, UW_DIR_IN, 18, NULL, GET_DEV_DESC, 0, NULL);
	t_ok(read_reply(fd, &r) == 0 && r.cmd == UW_RET_SUBMIT && r.seq == 1 && r.devid == 0 &&
	         r.dir == 0 && r.ep == 0 && r.status == 0 && r.actual == 18 && r.np == 0 &&
	         recv_all(fd, data, 18) == 0 && memcmp(data, dev_desc, 18) == 0,
	     "GET_DESCRIPTOR(DEVICE): seqnum echoed, devid/dir/ep 0, 18 bytes of payload");
	t_ok(memcmp(r.raw + 40, "\0\0\0\0\0\0\0\0", 8) == 0, "RET_SUBMIT padding is zero");

	uint8_t out[1000], in[1000];
	for (int i = 0; i < 1000; i++)
		out[i] = (uint8_t)(i * 7);
	submit(fd, 2, 2, UW_DIR_OUT, 1000, out, NULL, 0, NULL);
	t_ok(read_reply(fd, &r) == 0 && r.seq == 2 && r.status == 0 && r.actual == 1000,
	     "bulk OUT 1000 bytes: actual_length 1000");
	submit(fd, 3, 2, UW_DIR_IN, 1000, NULL, NULL, -1, NULL);
	t_ok(read_reply(fd, &r) == 0 && r.seq == 3 && r.actual == 1000 && r.np == -1 &&
	         recv_all(fd, in, 1000) == 0 && memcmp(in, out, 1000) == 0,
	     "bulk IN returns the data (no payload was sent for the OUT reply); np -1 echoed");

	/* Pipelining: a held URB does not block the next one. */
	submit(fd, 10, 1, UW_DIR_IN, 512, NULL, NULL, 0, NULL);
	submit(fd, 11, 0, UW_DIR_IN, 18, NULL, GET_DEV_DESC, 0, NULL);
	t_ok(read_reply(fd, &r) == 0 && r.seq == 11 && recv_all(fd, data, 18) == 0,
	     "a URB held by the device does not stall the next one");
	/* Unlink of the held URB: only RET_UNLINK(-ECONNRESET), never its RET_SUBMIT. */
	unlink_urb(fd, 12, 10);
	t_ok(read_reply(fd, &r) == 0 && r.cmd == UW_RET_UNLINK && r.seq == 12 &&
	         r.status == UW_URB_ECONNRESET,
	     "CMD_UNLINK of a pending URB: RET_UNLINK with its own seqnum, -ECONNRESET");
	submit(fd, 13, 0, UW_DIR_IN, 18, NULL, GET_DEV_DESC, 0, NULL);
	t_ok(read_reply(fd, &r) == 0 && r.cmd == UW_RET_SUBMIT && r.seq == 13 &&
	         recv_all(fd, data, 18) == 0,
	     "no RET_SUBMIT for the cancelled URB follows");
	/* Unlink of a completed URB: its RET_SUBMIT came first, then RET_UNLINK(0). */
	unlink_urb(fd, 14, 13);
	t_ok(read_reply(fd, &r) == 0 && r.cmd == UW_RET_UNLINK && r.seq == 14 && r.status == 0,
	     "CMD_UNLINK of a completed URB: RET_UNLINK status 0");
	unlink_urb(fd, 15, 0xdead);
	t_ok(read_reply(fd, &r) == 0 && r.cmd == UW_RET_UNLINK && r.seq == 15 && r.status == 0,
	     "CMD_UNLINK of an unknown seqnum: RET_UNLINK status 0");

	/* ISO IN: compacted data, descriptors echo offset and length. */
	uw_iso_desc iso[3] = {{0, 10, 0, -18}, {10, 10, 0, -18}, {20, 10, 0, -18}};
	submit(fd, 20, 3, UW_DIR_IN, 30, NULL, NULL, 3, iso);
	uint8_t comp[3], descs[48];
	bool ok = read_reply(fd, &r) == 0 && r.seq == 20 && r.actual == 3 && r.np == 3 &&
	          r.errors == 1 && recv_all(fd, comp, 3) == 0 && recv_all(fd, descs, 48) == 0;
	uw_iso_desc got[3];
	for (int i = 0; i < 3; i++)
		uw_iso_desc_decode(descs + 16 * i, &got[i]);
	t_ok(ok && comp[0] == 1 && comp[1] == 2 && comp[2] == 2 && got[0].actual_length == 0 &&
	         got[1].actual_length == 1 && got[2].actual_length == 2 && got[2].offset == 20 &&
	         got[2].length == 10 && got[1].status == UW_URB_EXDEV,
	     "iso IN: actual = sum of packets, data compacted, descriptors echo offsets");
	uint8_t isoout[30] = {0};
	submit(fd, 21, 3, UW_DIR_OUT, 30, isoout, NULL, 3, iso);
	ok = read_reply(fd, &r) == 0 && r.seq == 21 && r.actual == 30 && r.np == 3 &&
	     recv_all(fd, descs, 48) == 0;
	t_ok(ok, "iso OUT: reply carries descriptors only, actual = sum");
	/* Packets may overlap, but a reply's actual_length is the sum of theirs: packets longer in
	 * total than the buffer could only be answered with more than was asked for. */
	uw_iso_desc ovl[4] = {{0, 4, 0, 0}, {0, 4, 0, 0}, {0, 4, 0, 0}, {0, 4, 0, 0}};
	submit(fd, 22, 3, UW_DIR_IN, 4, NULL, NULL, 4, ovl);
	uint8_t odescs[64], ojunk[64];
	ok = read_reply(fd, &r) == 0 && r.seq == 22;
	if (ok && r.actual > 0 && r.actual <= 64)
		recv_all(fd, ojunk, (size_t)r.actual);
	ok = ok && recv_all(fd, odescs, sizeof odescs) == 0;
	t_ok(ok && r.status == UW_URB_EINVAL && r.actual == 0 && r.np == 4,
	     "iso packets longer in total than the buffer: -EINVAL (status %d, actual %d)",
	     r.status, r.actual);

	/* Semantic errors fail the URB, not the connection. */
	const uint8_t bad_dir[8] = {0x80, 6, 0, 1, 0, 0, 18, 0};
	submit(fd, 30, 0, UW_DIR_OUT, 18, data, bad_dir, 0, NULL);
	t_ok(read_reply(fd, &r) == 0 && r.seq == 30 && r.status == UW_URB_EINVAL && r.actual == 0,
	     "control data stage against bmRequestType's direction: -EINVAL");
	submit(fd, 31, 0, UW_DIR_IN, 17, NULL, GET_DEV_DESC, 0, NULL);
	t_ok(read_reply(fd, &r) == 0 && r.seq == 31 && r.status == UW_URB_EINVAL,
	     "control transfer_buffer_length != wLength: -EINVAL");
	submit(fd, 32, 9, UW_DIR_IN, 64, NULL, NULL, 0, NULL);
	t_ok(read_reply(fd, &r) == 0 && r.seq == 32 && r.status == UW_URB_EPIPE,
	     "URB to an endpoint the device does not have: -EPIPE");
	const uint8_t set_addr[8] = {0x00, 5, 9, 0, 0, 0, 0, 0};
	int before = td.submits;
	submit(fd, 33, 0, UW_DIR_OUT, 0, NULL, set_addr, 0, NULL);
	t_ok(read_reply(fd, &r) == 0 && r.seq == 33 && r.status == 0 && td.submits == before,
	     "SET_ADDRESS is answered without reaching the device");

	/* Completions from another thread, 64 in flight. */
	for (uint32_t i = 0; i < 64; i++)
		submit(fd, 100 + i, 4, UW_DIR_IN, 256, NULL, NULL, 0, NULL);
	uint64_t seen = 0;
	ok = true;
	for (int i = 0; i < 64 && ok; i++) {
		uint8_t p[256];
		ok = read_reply(fd, &r) == 0 && r.seq >= 100 && r.seq < 164 && r.actual == 256 &&
		     recv_all(fd, p, 256) == 0 && p[0] == 0x44 && p[255] == 0x44;
		if (ok)
			seen |= 1ull << (r.seq - 100);
	}
	t_ok(ok && seen == ~0ull, "64 URBs completed on other threads: 64 replies, each once");

	/* Closing with a URB held: it is cancelled, the device released, then importable. */
	int rel = td.releases, can = td.cancels;
	submit(fd, 200, 1, UW_DIR_IN, 64, NULL, NULL, 0, NULL);
	submit(fd, 201, 0, UW_DIR_IN, 18, NULL, GET_DEV_DESC, 0, NULL);
	read_reply(fd, &r);
	recv_all(fd, data, 18);
	close(fd);
	for (int i = 0; i < 6000 && td.releases == rel; i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	t_ok(td.releases == rel + 1 && td.cancels == can + 1,
	     "client gone: the held URB is cancelled, then the device released once");
	fd = import_dev("7-1", &st);
	t_ok(fd >= 0 && st == 0, "the device can be imported again");
	if (fd >= 0)
		close(fd);
}

/* Each malformed message closes its connection; a parallel session keeps working. */
/* Repeated CMD_UNLINKs of one URB still in the device (docs/protocol.md §4.5). ep4's URBs
 * complete from another thread after 2 ms and ignore cancel, so the URB is still in flight while
 * the server reads the unlinks sent with it in one write: the first four extra ones are answered
 * RET_UNLINK(0) after the target's replies; a sixth CMD_UNLINK closes the connection. */
static void test_repeated_unlinks(void)
{
	for (int extra = 4; extra <= 5; extra++) {
		uint32_t st;
		int fd = import_when_released(&st);
		if (!t_ok(fd >= 0, "import for %d CMD_UNLINKs of one URB", extra + 1))
			return;
		uint8_t buf[48 * 8];
		uw_urb_hdr h = {.command = UW_CMD_SUBMIT,
		                .seqnum = 100,
		                .devid = DEVID,
		                .direction = UW_DIR_IN,
		                .ep = 4};
		h.u.submit.transfer_buffer_length = 16;
		uw_urb_hdr_encode(&h, buf);
		for (int i = 0; i <= extra; i++) {
			uw_urb_hdr u = {
			    .command = UW_CMD_UNLINK, .seqnum = 101 + (uint32_t)i, .devid = DEVID};
			u.u.unlink.seqnum = 100;
			uw_urb_hdr_encode(&u, buf + 48 * (i + 1));
		}
		send_all(fd, buf, 48 * (size_t)(extra + 2));
		struct reply r;
		uint8_t data[16];
		if (extra == 4) {
			bool ok = read_reply(fd, &r) == 0 && r.cmd == UW_RET_SUBMIT &&
			          r.seq == 100 && r.actual == 16 && recv_all(fd, data, 16) == 0;
			for (uint32_t i = 0; ok && i < 5; i++)
				ok = read_reply(fd, &r) == 0 && r.cmd == UW_RET_UNLINK &&
				     r.seq == 101 + i && r.status == 0;
			t_ok(ok, "5 CMD_UNLINKs of one URB: its RET_SUBMIT, then RET_UNLINK(0) for "
			         "each, "
			         "in order");
			t_ok(quiet_for(fd, 50), "nothing more");
		} else {
			t_ok(sees_eof(fd), "a sixth CMD_UNLINK of one URB closes the connection");
		}
		close(fd);
	}
}

static void test_hostile(void)
{
	uint32_t st;
	int honest = import_dev("7-1", &st);
	if (!t_ok(honest >= 0, "honest session imported"))
		return;
	struct {
		const char *name;
		uw_urb_hdr h;
		bool op_phase;
	} rows[] = {
	    {"wrong devid", {.command = UW_CMD_SUBMIT, .seqnum = 1, .devid = 1, .ep = 0}, false},
	    {"command 5", {.command = 5, .seqnum = 1, .devid = DEVID}, false},
	    {"RET_SUBMIT from a client", {.command = UW_RET_SUBMIT, .devid = DEVID}, false},
	    {"direction 2", {.command = UW_CMD_SUBMIT, .devid = DEVID, .direction = 2}, false},
	    {"ep 16", {.command = UW_CMD_SUBMIT, .devid = DEVID, .ep = 16}, false},
	    {"garbage instead of an op request", {.command = 0x41414141}, true},
	};
	rows[0].h.u.submit.transfer_buffer_length = 0;
	for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
		int fd;
		if (rows[i].op_phase) {
			fd = connect_client();
		} else {
			/* A second device is not there, so use the honest one's slot: a new
			 * import would be busy. Test on a fresh import after closing honest. */
			fd = honest;
		}
		uint8_t b[48];
		uw_urb_hdr_encode(&rows[i].h, b);
		if (rows[i].op_phase)
			memset(b, 0x41, sizeof b);
		send_all(fd, b, 48);
		t_ok(sees_eof(fd), "%s: the server closes that connection", rows[i].name);
		close(fd);
		if (!rows[i].op_phase) {
			/* Wait for the release, then import again for the next row. */
			honest = -1;
			honest = import_when_released(&st);
			t_ok(honest >= 0, "after \"%s\" the device is importable again",
			     rows[i].name);
			if (honest < 0)
				return;
		}
	}
	/* Oversized length, duplicate seqnum. */
	{
		uw_urb_hdr h = {.command = UW_CMD_SUBMIT, .seqnum = 5, .devid = DEVID, .ep = 2};
		h.u.submit.transfer_buffer_length = 0x7fffffff;
		uint8_t b[48];
		uw_urb_hdr_encode(&h, b);
		send_all(honest, b, 48);
		t_ok(sees_eof(honest), "transfer_buffer_length 0x7fffffff: connection closed");
		close(honest);
	}
	struct reply r;
	honest = -1;
	honest = import_when_released(&st);
	submit(honest, 50, 1, UW_DIR_IN, 8, NULL, NULL, 0, NULL);
	submit(honest, 50, 1, UW_DIR_IN, 8, NULL, NULL, 0, NULL);
	t_ok(sees_eof(honest), "a seqnum already in flight: connection closed");
	close(honest);
	/* Handshake deadline: a client that says nothing is dropped. */
	int idle = connect_client();
	t_ok(sees_eof(idle), "a connection that sends nothing is closed at the handshake deadline");
	close(idle);
	/* The server still serves. */
	honest = -1;
	honest = import_when_released(&st);
	uint8_t data[18];
	submit(honest, 1, 0, UW_DIR_IN, 18, NULL, GET_DEV_DESC, 0, NULL);
	t_ok(read_reply(honest, &r) == 0 && r.seq == 1 && recv_all(honest, data, 18) == 0,
	     "after all that, a new session works");
	close(honest);
}

/* Backpressure: with max_urbs 4, the fifth held URB is not read until one completes. */
static void test_backpressure(void)
{
	uint32_t st;
	int fd = -1;
	fd = import_when_released(&st);
	int base = td.submits;
	for (uint32_t i = 0; i < 6; i++)
		submit(fd, 300 + i, 1, UW_DIR_IN, 16, NULL, NULL, 0, NULL);
	quiet_for(fd, 200);
	t_ok(td.submits - base == 4, "with 4 URBs in flight the session stops reading (%d read)",
	     td.submits - base);
	on_loop(release_held, NULL);
	struct reply r;
	int n = 0;
	for (int i = 0; i < 6; i++) {
		if (read_reply(fd, &r) == 0) {
			uint8_t p[16];
			recv_all(fd, p, 16);
			n++;
		}
		if (i == 3)
			on_loop(release_held, NULL);
	}
	t_ok(n == 6 && td.submits - base == 6, "completions resume reading: all 6 answered");
	close(fd);
}

/* A client that never reads its replies: URBs that complete at once still hold their buffers
 * until the replies are written, so the server must stop reading (max_bytes is 4 MiB here). */
static void test_unread_replies(void)
{
	uint32_t st;
	int fd = -1;
	fd = import_when_released(&st);
	if (!t_ok(fd >= 0, "unread replies: imported"))
		return;
	int base = td.submits;
	uint32_t sent = 0;
	uint8_t h[48];
	for (;;) {
		uw_urb_hdr hd = {.command = UW_CMD_SUBMIT,
		                 .seqnum = 1000 + sent,
		                 .devid = DEVID,
		                 .direction = UW_DIR_IN,
		                 .ep = 2};
		hd.u.submit.transfer_buffer_length = 4096;
		uw_urb_hdr_encode(&hd, h);
		struct pollfd pf = {fd, POLLOUT, 0};
		if (poll(&pf, 1, 500) <= 0)
			break; /* the server stopped reading */
		if (send(fd, h, 48, MSG_NOSIGNAL | MSG_DONTWAIT) != 48)
			break;
		if (++sent > 200000)
			break;
	}
	int read_by_server = td.submits - base;
	/* 4 MiB of 4 KiB URBs, plus what the socket buffers hold (about 2 MiB). */
	t_ok(sent < 200000 && read_by_server <= 1024 + 512,
	     "unread replies: the server stops reading at its memory budget (%d URBs of 4 KiB "
	     "taken, %u sent before the client blocked)",
	     read_by_server, sent);
	/* Reading the replies lets everything through, in order. */
	uint32_t got = 0;
	bool ok = true;
	static uint8_t p[4096];
	struct reply r;
	while (got < sent && ok) {
		ok = read_reply(fd, &r) == 0 && r.seq == 1000 + got &&
		     (r.actual == 0 || recv_all(fd, p, (size_t)r.actual) == 0);
		got++;
	}
	t_ok(ok && got == sent, "unread replies: once read, all %u replies arrive in order", sent);
	close(fd);
}

/* The userspace client library against this server: sync and async requests, ISO layout,
 * unlink, and close completing what is pending. */
static void count_cb(uw_ureq *r)
{
	(*(int *)r->user)++;
}

static void test_uclient(void)
{
	uint32_t st;
	int fd = -1;
	fd = import_when_released(&st);
	uw_usb_device dev = {.busid = "7-1", .busnum = 7, .devnum = 1};
	uw_uclient *c = uw_uclient_from_fd(fd, &dev);
	uint8_t desc[18];
	int n = uw_uclient_control(c, 0x80, 6, 0x0100, 0, desc, 18, 2000);
	t_ok(n == 18 && memcmp(desc, dev_desc, 18) == 0,
	     "uclient: GET_DESCRIPTOR returns 18 bytes");
	n = uw_uclient_control(c, 0x80, 6, 0x0300, 0, desc, 18, 2000);
	t_ok(n == UW_URB_EPIPE, "uclient: a stalled request returns -EPIPE (%d)", n);
	n = uw_uclient_control(c, 0x00, 5, 3, 0, NULL, 0, 2000);
	t_ok(n == 0, "uclient: SET_ADDRESS completes locally");
	uint8_t out[3000], in[3000];
	for (int i = 0; i < 3000; i++)
		out[i] = (uint8_t)(i ^ 0x5a);
	n = uw_uclient_transfer(c, 2, UW_DIR_OUT, UW_XFER_BULK, out, 3000, 2000);
	int m = uw_uclient_transfer(c, 2, UW_DIR_IN, UW_XFER_BULK, in, 3000, 2000);
	t_ok(n == 3000 && m == 3000 && memcmp(in, out, 3000) == 0,
	     "uclient: 3000 bytes out and back in");
	/* Async: 32 in flight, completed from another thread on the server side. */
	static uint8_t bufs[32][512];
	uw_ureq reqs[32];
	int done = 0;
	for (int i = 0; i < 32; i++) {
		reqs[i] = (uw_ureq){.ep = 4,
		                    .dir = UW_DIR_IN,
		                    .xfer = UW_XFER_BULK,
		                    .buf = bufs[i],
		                    .len = 512,
		                    .cb = count_cb,
		                    .user = &done};
		uw_uclient_submit(c, &reqs[i]);
	}
	while (done < 32 && uw_uclient_poll(c, 2000) > 0)
		;
	bool all = done == 32;
	for (int i = 0; i < 32; i++)
		all = all && reqs[i].status == 0 && reqs[i].actual == 512 && bufs[i][511] == 0x44;
	t_ok(all, "uclient: 32 requests in flight all complete with their data");
	/* ISO IN: data spread back to each packet's offset. */
	uint8_t isobuf[30];
	memset(isobuf, 0xee, sizeof isobuf);
	uw_upkt pk[3] = {{0, 10, 0, 0}, {10, 10, 0, 0}, {20, 10, 0, 0}};
	uw_ureq iso = {.ep = 3,
	               .dir = UW_DIR_IN,
	               .xfer = UW_XFER_ISO,
	               .buf = isobuf,
	               .len = 30,
	               .num_iso = 3,
	               .iso = pk,
	               .interval = 1,
	               .cb = count_cb,
	               .user = &done};
	done = 0;
	uw_uclient_submit(c, &iso);
	while (!done && uw_uclient_poll(c, 2000) > 0)
		;
	t_ok(done == 1 && iso.actual == 3 && pk[1].actual_length == 1 && isobuf[10] == 1 &&
	         pk[2].actual_length == 2 && isobuf[20] == 2 && isobuf[21] == 2 &&
	         pk[1].status == UW_URB_EXDEV,
	     "uclient: iso IN packets land at their offsets with their status");
	/* Unlink a held request. */
	uint8_t hb[64];
	uw_ureq held = {.ep = 1,
	                .dir = UW_DIR_IN,
	                .xfer = UW_XFER_BULK,
	                .buf = hb,
	                .len = 64,
	                .cb = count_cb,
	                .user = &done};
	done = 0;
	uw_uclient_submit(c, &held);
	uw_uclient_poll(c, 100);
	uw_uclient_unlink(c, &held);
	while (!done && uw_uclient_poll(c, 2000) > 0)
		;
	t_ok(done == 1 && held.status == UW_URB_ECONNRESET,
	     "uclient: unlinking a pending request completes it once with -ECONNRESET");
	/* Close with one pending: its callback runs with -ESHUTDOWN. */
	done = 0;
	uw_uclient_submit(c, &held);
	uw_uclient_poll(c, 100);
	uw_uclient_close(c);
	t_ok(done == 1 && held.status == UW_URB_ESHUTDOWN,
	     "uclient: closing completes the pending request with -ESHUTDOWN");
}

/* The device goes away while a URB is in it and the client half-closes: the draining session
 * must not be woken for that hang-up again and again (it spun until the URB finished), and the
 * URB's reply must still reach the client before the connection closes. Last: td stays gone. */
static void notify_gone(void *arg)
{
	(void)arg;
	td.dev.notify(&td.dev, UW_DEV_EV_GONE);
}

static void test_drain_half_close(void)
{
	uint32_t st;
	int fd = import_when_released(&st);
	if (!t_ok(fd >= 0, "drain: imported"))
		return;
	int base = td.submits;
	submit(fd, 900, 1, UW_DIR_IN, 16, NULL, NULL, 0, NULL); /* ep 1 IN: held by the device */
	for (int i = 0; i < 60000 && td.submits == base; i++) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
	}
	on_loop(notify_gone, NULL);
	shutdown(fd, SHUT_WR);
	struct timespec settle = {0, 50 * 1000000};
	nanosleep(&settle, NULL);
	uint64_t before = uw_loop_dispatched(loop);
	struct timespec wait = {0, 200 * 1000000};
	nanosleep(&wait, NULL);
	uint64_t woken = uw_loop_dispatched(loop) - before;
	t_ok(woken < 20,
	     "drain: a half-closed client does not keep the loop busy (%llu wake-ups "
	     "in 200 ms)",
	     (unsigned long long)woken);
	on_loop(release_held, NULL);
	struct reply r;
	uint8_t p[16];
	bool got = read_reply(fd, &r) == 0 && r.seq == 900 && r.status == 0 && r.actual == 16 &&
	           recv_all(fd, p, 16) == 0;
	t_ok(got, "drain: the held URB's reply still arrives after the half-close");
	t_ok(sees_eof(fd), "drain: then the server closes the connection");
	close(fd);
}

/* ---- Connection limits: a second server on the same loop, over TCP on 127.0.0.1 ----------- */

/* srv2 has the default limits (handshake 10 s, 256 sessions) and no device; its log lines are
 * kept for the tests to count. */
static uw_server *srv2;
static int srv2_port;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[1 << 16];
static size_t log_len;

static void capture_log(void *user, int level, const char *line)
{
	(void)user;
	(void)level;
	pthread_mutex_lock(&log_lock);
	size_t n = strlen(line);
	if (log_len + n + 2 < sizeof log_text) {
		memcpy(log_text + log_len, line, n);
		log_len += n;
		log_text[log_len++] = '\n';
		log_text[log_len] = 0;
	}
	pthread_mutex_unlock(&log_lock);
}

/* Log lines (so far, from offset from) that contain every one of the words (NULL-terminated). */
static int log_count(size_t from, const char *w1, const char *w2)
{
	int n = 0;
	pthread_mutex_lock(&log_lock);
	for (char *p = log_text + (from < log_len ? from : log_len), *nl; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		*nl = 0;
		if (strstr(p, w1) && (!w2 || strstr(p, w2)))
			n++;
		*nl = '\n';
	}
	pthread_mutex_unlock(&log_lock);
	return n;
}

/* The sum of N over log lines (from offset from) holding "refused N connections from WHO". */
static int log_refused_sum(size_t from, const char *who)
{
	int sum = 0;
	char key[64];
	pthread_mutex_lock(&log_lock);
	for (char *p = log_text + (from < log_len ? from : log_len), *nl; *p; p = nl + 1) {
		nl = strchr(p, '\n');
		*nl = 0;
		const char *r = strstr(p, "refused ");
		int n;
		snprintf(key, sizeof key, " connections from %s ", who);
		if (r && strstr(p, key) && sscanf(r, "refused %d connections", &n) == 1)
			sum += n;
		*nl = '\n';
	}
	pthread_mutex_unlock(&log_lock);
	return sum;
}

static size_t log_mark(void)
{
	pthread_mutex_lock(&log_lock);
	size_t n = log_len;
	pthread_mutex_unlock(&log_lock);
	return n;
}

static void add_listener2(void *arg)
{
	*(int *)arg = uw_server_add_listener(srv2, *(int *)arg);
}

static void start_srv2(void)
{
	/* A ten-minute handshake deadline: only the first-byte deadline can close a silent
	 * connection within a test, and its log line tells which one did. */
	struct uw_server_config cfg = {
	    .loop = loop, .log = {capture_log, NULL, UW_LOG_DEBUG}, .handshake_ms = 600000};
	srv2 = uw_server_new(&cfg);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 512) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
		abort();
	srv2_port = ntohs(a.sin_port);
	int rc = lfd;
	on_loop(add_listener2, &rc);
	if (rc != UW_OK)
		abort();
}

/* A TCP connection to srv2 from source address 127.0.0.<from> (blocking), or -1. */
static int tcp_connect(int from)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in src = {.sin_family = AF_INET,
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK + (uint32_t)from - 1)};
	struct sockaddr_in dst = {.sin_family = AF_INET,
	                          .sin_port = htons((uint16_t)srv2_port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0 ||
	    connect(fd, (struct sockaddr *)&dst, sizeof dst) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* OP_REQ_DEVLIST on fd: true if the (empty) device list comes back. */
static bool devlist_answered(int fd)
{
	uint8_t req[8], rep[12];
	uw_op_common_encode(req, sizeof req, UW_OP_REQ_DEVLIST, 0);
	return send_all(fd, req, sizeof req) == 0 && recv_all(fd, rep, sizeof rep) == 0 &&
	       rep[2] == 0x00 && rep[3] == 0x05 && rep[8] == 0 && rep[11] == 0;
}

/* True if fd was closed by the server (EOF or reset) within ms; false if it is still open. */
static bool closed_within(int fd, int ms)
{
	struct pollfd pf = {fd, POLLIN, 0};
	if (poll(&pf, 1, ms) <= 0)
		return false;
	uint8_t b;
	ssize_t k = recv(fd, &b, 1, MSG_DONTWAIT);
	return k == 0 || (k < 0 && errno == ECONNRESET);
}

/* One host holding every session slot with idle connections (each has sent one byte, so no
 * first-byte deadline helps) must not lock out another host; the excess is closed at once and
 * the refusals are not logged one line each. */
static void test_per_peer_cap(void)
{
	enum { N = 300 };
	static int fds[N];
	size_t mark = log_mark();
	int made = 0;
	for (int i = 0; i < N; i++) {
		fds[i] = tcp_connect(2);
		if (fds[i] >= 0 && send_all(fds[i], "\x01", 1) == 0)
			made++;
	}
	t_ok(made == N, "per-peer: %d of %d connections from 127.0.0.2 made", made, N);
	int fd = tcp_connect(1);
	t_ok(fd >= 0 && devlist_answered(fd),
	     "per-peer: with %d idle connections from 127.0.0.2, 127.0.0.1 is still served", N);
	if (fd >= 0)
		close(fd);
	/* Closed ones show up as readable (EOF); the rest are open once 2 s pass without one. */
	static struct pollfd pf[N];
	int closed = 0, open = -1;
	for (int round = 0; round < 1000; round++) {
		int n = 0;
		for (int i = 0; i < N; i++)
			if (fds[i] >= 0)
				pf[n++] = (struct pollfd){fds[i], POLLIN, 0};
		if (poll(pf, (nfds_t)n, 2000) <= 0) {
			open = n;
			break;
		}
		for (int i = 0, k = 0; i < N; i++) {
			if (fds[i] < 0)
				continue;
			if (pf[k++].revents && closed_within(fds[i], 0)) {
				close(fds[i]);
				fds[i] = -1;
				closed++;
			}
		}
	}
	t_ok(open == 16 && closed == made - open,
	     "per-peer: 127.0.0.2 keeps 16 connections (%d), the other %d are closed at once", open,
	     closed);
	int lines = log_count(mark, "refused", NULL);
	t_ok(lines >= 1 && lines <= 2, "per-peer: %d refusals make %d log lines, not one each",
	     closed, lines);
	for (int i = 0; i < N; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* A connection that never sends a byte is closed by the first-byte deadline (the handshake
 * deadline of srv2 is ten minutes); one that has sent a byte is not closed by that. */
static void test_first_byte(void)
{
	size_t mark = log_mark();
	int spoke = tcp_connect(3);
	int silent = tcp_connect(3);
	if (!t_ok(silent >= 0 && spoke >= 0, "first byte: connected"))
		return;
	send_all(spoke, "\x01", 1);
	t_ok(closed_within(silent, 120000),
	     "first byte: a connection that sends nothing is closed before the handshake deadline");
	t_ok(log_count(mark, "first byte", NULL) == 1,
	     "first byte: one log line names the first-byte deadline");
	t_ok(!closed_within(spoke, 0), "first byte: a connection that has sent a byte stays open");
	close(silent);
	close(spoke);
}

/* At the process's file limit accept() fails with EMFILE while the connection stays queued:
 * the listener must not be polled again and again (it spun, one log line per pass), and once
 * descriptors are free again the queued connections are served. */
static void test_emfile(void)
{
	enum { CLIENTS = 3, MAXFILL = 4096 };
	struct rlimit old, low;
	getrlimit(RLIMIT_NOFILE, &old);
	low = old;
	if (low.rlim_cur > 1024)
		low.rlim_cur = 1024;
	setrlimit(RLIMIT_NOFILE, &low);
	int cl[CLIENTS];
	for (int i = 0; i < CLIENTS; i++)
		cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	static int fill[MAXFILL];
	int nfill = 0;
	while (nfill < MAXFILL && (fill[nfill] = dup(0)) >= 0)
		nfill++;
	size_t mark = log_mark();
	struct sockaddr_in dst = {.sin_family = AF_INET,
	                          .sin_port = htons((uint16_t)srv2_port),
	                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	bool conn = true;
	for (int i = 0; i < CLIENTS; i++)
		conn = conn && connect(cl[i], (struct sockaddr *)&dst, sizeof dst) == 0;
	t_ok(conn && errno == EMFILE, "emfile: %d descriptors filled, %d clients queued", nfill,
	     CLIENTS);
	for (int i = 0; i < 6000 && log_count(mark, "Too many open files", NULL) == 0; i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	uint64_t before = uw_loop_dispatched(loop);
	struct timespec wait = {0, 300 * 1000000};
	nanosleep(&wait, NULL);
	uint64_t woken = uw_loop_dispatched(loop) - before;
	int lines = log_count(mark, "Too many open files", NULL);
	t_ok(lines >= 1 && lines <= 2 && woken < 20,
	     "emfile: the listener is not polled again and again (%llu wake-ups in 300 ms, %d "
	     "log lines)",
	     (unsigned long long)woken, lines);
	while (nfill)
		close(fill[--nfill]);
	setrlimit(RLIMIT_NOFILE, &old);
	int served = 0;
	for (int i = 0; i < CLIENTS; i++)
		if (devlist_answered(cl[i]))
			served++;
	t_ok(served == CLIENTS,
	     "emfile: once descriptors are free, the queued clients are served "
	     "(%d of %d)",
	     served, CLIENTS);
	for (int i = 0; i < CLIENTS; i++)
		close(cl[i]);
}

/* srv3: at most 2 connections per address, refusals summarised every 200 ms. */
static uw_server *srv3;
static int srv3_port;

static void add_listener3(void *arg)
{
	*(int *)arg = uw_server_add_listener(srv3, *(int *)arg);
}

static void add_conn3(void *arg)
{
	uw_server_add_connection(srv3, (int)(intptr_t)arg);
}

static int tcp_connect_to(int port, int from)
{
	int keep = srv2_port;
	srv2_port = port;
	int fd = tcp_connect(from);
	srv2_port = keep;
	return fd;
}

struct blocker {
	atomic_int running, release;
};
static void block_loop(void *arg)
{
	struct blocker *b = arg;
	b->running = 1;
	while (!b->release) {
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
}

static void test_peer_limit_details(void)
{
	struct uw_server_config cfg = {.loop = loop,
	                               .log = {capture_log, NULL, UW_LOG_DEBUG},
	                               .max_per_peer = 2,
	                               .log_interval_ms = 200};
	srv3 = uw_server_new(&cfg);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t al = sizeof a;
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) < 0 || listen(lfd, 64) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0)
		abort();
	srv3_port = ntohs(a.sin_port);
	int rc = lfd;
	on_loop(add_listener3, &rc);

	/* Refusals: the first logged at once, the rest as one line with their count. */
	size_t mark = log_mark();
	int held[2], extra[5];
	for (int i = 0; i < 2; i++) {
		held[i] = tcp_connect_to(srv3_port, 4);
		send_all(held[i], "\x01", 1);
	}
	int refused = 0;
	for (int i = 0; i < 5; i++) {
		extra[i] = tcp_connect_to(srv3_port, 4);
		if (closed_within(extra[i], 60000))
			refused++;
		close(extra[i]);
	}
	t_ok(refused == 5, "peer limit 2: the next 5 connections are closed at once (%d)", refused);
	/* The other 4 are counted in summary lines, one per 200 ms interval: one line when they
	 * came within an interval, more on a slow machine, but never one line each. */
	for (int i = 0; i < 6000 && log_refused_sum(mark, "127.0.0.4") < 4; i++) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	int firsts = log_count(mark, "127.0.0.4", "already, the per-peer limit");
	int summaries =
	    log_count(mark, "from 127.0.0.4 over the per-peer limit (2) in the last", NULL);
	t_ok(firsts == 1 && log_refused_sum(mark, "127.0.0.4") == 4 && summaries >= 1 &&
	         summaries < 4 && log_count(mark, "127.0.0.4", "refused") == 1 + summaries,
	     "peer limit 2: the first refusal is logged, then summary lines count the other 4 "
	     "(%d lines)",
	     summaries);

	/* A client that closes and at once reconnects is not refused for its closed connections,
	 * even when the new connection is accepted before the old ones' hang-ups are handled. */
	struct blocker b = {0, 0};
	uw_loop_post(loop, block_loop, &b);
	while (!b.running) {
		struct timespec ts = {0, 100000};
		nanosleep(&ts, NULL);
	}
	int again = tcp_connect_to(srv3_port, 4);
	for (int i = 0; i < 2; i++)
		close(held[i]);
	b.release = 1;
	t_ok(again >= 0 && devlist_answered(again),
	     "peer limit 2: after closing both, a new connection from the same address is served");
	if (again >= 0)
		close(again);

	/* Peers without an IP address are not limited. */
	int un[3], served = 0;
	for (int i = 0; i < 3; i++) {
		int sv[2];
		socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
		fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
		uw_loop_post(loop, add_conn3, (void *)(intptr_t)sv[0]);
		send_all(sv[1], "\x01", 1);
		un[i] = sv[1];
	}
	for (int i = 0; i < 3; i++) {
		if (!closed_within(un[i], 200))
			served++;
		close(un[i]);
	}
	t_ok(served == 3, "peer limit 2: 3 unix-socket connections are all kept (%d)", served);
}

/* ---- emu:storage behind the server: a completion that resumes a paused session ------------- */

#define STOR_DEVID (7u << 16 | 2u)
static uw_dev *stor;
static char stor_img[64];
static int stor_rc = -1;

static void add_storage(void *arg)
{
	(void)arg;
	char spec[128], err[256] = "";
	snprintf(spec, sizeof spec, "emu:storage,file=%s", stor_img);
	stor_rc = uw_emu_create(spec, "7-2", 7, 2, loop, NULL, &stor, err, sizeof err);
	if (stor_rc == UW_OK)
		stor_rc = uw_server_add_device(srv, stor);
	else
		t_diag("%s", err);
}

/* Appends one CMD_SUBMIT for the storage device to b at *n. */
static void put_submit(uint8_t *b, size_t *n, uint32_t seq, uint32_t ep, uint32_t dir, int32_t len,
                       const void *data, const uint8_t setup[8])
{
	uw_urb_hdr h = {.command = UW_CMD_SUBMIT,
	                .seqnum = seq,
	                .devid = STOR_DEVID,
	                .direction = dir,
	                .ep = ep};
	h.u.submit.transfer_buffer_length = len;
	h.u.submit.start_frame = 0;
	if (setup)
		memcpy(h.u.submit.setup, setup, 8);
	uw_urb_hdr_encode(&h, b + *n);
	*n += 48;
	if (dir == UW_DIR_OUT && len > 0) {
		memcpy(b + *n, data, (size_t)len);
		*n += (size_t)len;
	}
}

/* A Bulk-Only CBW for a 10-byte CDB: READ(10) or WRITE(10) of one block at lba. */
static void cbw10(uint8_t cbw[31], uint32_t tag, bool in, uint8_t op, uint8_t flags, uint32_t lba)
{
	memset(cbw, 0, 31);
	memcpy(cbw, "USBC", 4);
	memcpy(cbw + 4, &tag, 4); /* little-endian hosts only, as the rest of the suite */
	uint32_t len = 512;
	memcpy(cbw + 8, &len, 4);
	cbw[12] = in ? 0x80 : 0;
	cbw[14] = 10;
	uint8_t cdb[10] = {op,
	                   flags,
	                   (uint8_t)(lba >> 24),
	                   (uint8_t)(lba >> 16),
	                   (uint8_t)(lba >> 8),
	                   (uint8_t)lba,
	                   0,
	                   0,
	                   1,
	                   0};
	memcpy(cbw + 15, cdb, 10);
}

/*
 * Pipelined, as docs/architecture.md ("The server") allows: READ(10) of one block (CBW, its data
 * IN, the IN for its CSW), WRITE(10) with FUA (CBW, data OUT), then one more IN header while the
 * session is at its in-flight limit (4 here), so the session is paused. The READ's data
 * completion resumes the session; the device must still run one command after the other: every
 * URB answered, the right CSW in each status IN, the write on the medium, and the device free
 * again after the client leaves.
 */
static void test_storage_pipelined(void)
{
	snprintf(stor_img, sizeof stor_img, "/tmp/test_server.XXXXXX");
	int ifd = mkstemp(stor_img);
	uint8_t block[512];
	bool made = ifd >= 0;
	for (uint32_t b = 0; made && b < 16; b++) {
		memset(block, (int)(0x10 + b), sizeof block);
		made = write(ifd, block, sizeof block) == (ssize_t)sizeof block;
	}
	if (made)
		on_loop(add_storage, NULL);
	if (!t_ok(made && stor_rc == UW_OK, "storage: emu:storage exported as 7-2")) {
		if (ifd >= 0)
			close(ifd);
		return;
	}
	uint32_t st;
	int fd = import_dev("7-2", &st);
	if (!t_ok(fd >= 0, "storage: imported")) {
		close(ifd);
		return;
	}
	static const uint8_t SET_CONFIG_1[8] = {0x00, 9, 1, 0, 0, 0, 0, 0};
	uint8_t msgs[8 * 48 + 2 * 31 + 512];
	size_t n = 0;
	struct reply r;
	put_submit(msgs, &n, 1, 0, UW_DIR_OUT, 0, NULL, SET_CONFIG_1);
	send_all(fd, msgs, n);
	if (!t_ok(read_reply(fd, &r) == 0 && r.seq == 1 && r.status == 0,
	          "storage: SET_CONFIGURATION(1)")) {
		close(fd);
		close(ifd);
		return;
	}

	uint8_t cbw_r[31], cbw_w[31], wdata[512];
	cbw10(cbw_r, 0xa1, true, 0x28, 0, 3);     /* READ(10), LBA 3 */
	cbw10(cbw_w, 0xa2, false, 0x2a, 0x08, 5); /* WRITE(10) FUA, LBA 5 */
	memset(wdata, 0x5a, sizeof wdata);
	n = 0;
	put_submit(msgs, &n, 10, 2, UW_DIR_OUT, 31, cbw_r, NULL);
	put_submit(msgs, &n, 11, 1, UW_DIR_IN, 512, NULL, NULL);
	put_submit(msgs, &n, 12, 1, UW_DIR_IN, 13, NULL, NULL);
	put_submit(msgs, &n, 13, 2, UW_DIR_OUT, 31, cbw_w, NULL);
	put_submit(msgs, &n, 14, 2, UW_DIR_OUT, 512, wdata, NULL);
	put_submit(msgs, &n, 15, 1, UW_DIR_IN, 13, NULL, NULL);
	send_all(fd, msgs, n); /* one write: the server parses it in one go */

	/* Six answers, each seqnum once; what each carries. */
	bool seen[6] = {false};
	bool ok_data = false, ok_csw_r = false, ok_csw_w = false, ok_out = false;
	int answers = 0;
	for (int i = 0; i < 6; i++) {
		uint8_t p[512];
		if (read_reply(fd, &r) < 0 || r.cmd != UW_RET_SUBMIT || r.seq < 10 || r.seq > 15 ||
		    seen[r.seq - 10] || r.actual < 0 || r.actual > 512)
			break;
		seen[r.seq - 10] = true;
		answers++;
		bool in = r.seq == 11 || r.seq == 12 || r.seq == 15;
		if (in && r.actual > 0 && recv_all(fd, p, (size_t)r.actual) < 0)
			break;
		memset(block, 0x13, sizeof block);
		if (r.seq == 11)
			ok_data = r.status == 0 && r.actual == 512 && memcmp(p, block, 512) == 0;
		if (r.seq == 12 || r.seq == 15) {
			uint32_t tag = r.seq == 12 ? 0xa1 : 0xa2;
			bool csw = r.status == 0 && r.actual == 13 && memcmp(p, "USBS", 4) == 0 &&
			           memcmp(p + 4, &tag, 4) == 0 &&
			           memcmp(p + 8, "\0\0\0\0\0", 5) == 0;
			if (!csw)
				t_diag("seqnum %u: status %d, %d bytes, tag %02x", r.seq, r.status,
				       r.actual, r.actual >= 8 ? p[4] : 0);
			*(r.seq == 12 ? &ok_csw_r : &ok_csw_w) = csw;
		}
		if (r.seq == 14)
			ok_out = r.status == 0 && r.actual == 512;
	}
	t_ok(answers == 6, "storage pipelined: all six URBs answered (%d were)", answers);
	t_ok(ok_data, "storage pipelined: the READ's data IN has block 3");
	t_ok(ok_csw_r,
	     "storage pipelined: the IN after the READ's data carries the READ's CSW (passed)");
	t_ok(ok_out, "storage pipelined: the WRITE's data OUT is taken (512 bytes)");
	t_ok(ok_csw_w, "storage pipelined: the last IN carries the WRITE's CSW (passed)");
	uint8_t on_disk[512];
	memset(block, 0x5a, sizeof block);
	t_ok(answers == 6 && pread(ifd, on_disk, 512, 5 * 512) == 512 &&
	         memcmp(on_disk, block, 512) == 0,
	     "storage pipelined: block 5 holds the written data");
	/* Whatever happened: an unlink of the WRITE's data URB is answered. */
	uint8_t ul[48];
	uw_urb_hdr h = {.command = UW_CMD_UNLINK, .seqnum = 16, .devid = STOR_DEVID};
	h.u.unlink.seqnum = 14;
	uw_urb_hdr_encode(&h, ul);
	send_all(fd, ul, 48);
	t_ok(read_reply(fd, &r) == 0 && r.cmd == UW_RET_UNLINK && r.seq == 16,
	     "storage pipelined: a CMD_UNLINK of the WRITE's data URB is answered");
	close(fd);
	/* The device is released after the client leaves: it can be imported again. */
	fd = -1;
	for (int k = 0; k < 6000 && fd < 0; k++) {
		fd = import_dev("7-2", &st);
		if (fd < 0) {
			struct timespec ts = {0, 10 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
	}
	t_ok(fd >= 0,
	     "storage pipelined: the device is importable again after the client left "
	     "(last status %u)",
	     st);
	if (fd >= 0)
		close(fd);
	close(ifd);
	unlink(stor_img);
}

int main(void)
{
	loop = uw_loop_new();
	struct uw_server_config cfg = {
	    .loop = loop, .handshake_ms = 500, .max_urbs = 4, .max_bytes = 4u << 20};
	srv = uw_server_new(&cfg);
	td.dev.ops = &td_ops;
	td.dev.priv = &td;
	td.dev.loop = loop;
	td.dev.info = (uw_usb_device){.busid = "7-1",
	                              .path = "/test/7-1",
	                              .busnum = 7,
	                              .devnum = 1,
	                              .speed = UW_SPEED_HIGH,
	                              .id_vendor = 0x1234,
	                              .id_product = 0x5678,
	                              .num_configurations = 1,
	                              .configuration_value = 1,
	                              .num_interfaces = 1};
	td.dev.ifaces[0] = (uw_usb_interface){0xff, 0, 0};
	snprintf(td.dev.spec, sizeof td.dev.spec, "test device");
	uw_server_add_device(srv, &td.dev);
	pthread_create(&loop_thread, NULL, run_loop, NULL);

	test_devlist();
	test_import_refusals();
	test_urbs();
	test_hostile();
	test_repeated_unlinks();
	test_backpressure();
	test_unread_replies();
	test_uclient();
	test_drain_half_close();
	start_srv2();
	test_per_peer_cap();
	test_first_byte();
	test_emfile();
	test_peer_limit_details();
	test_storage_pipelined();

	uw_loop_stop(loop);
	pthread_join(loop_thread, NULL);
	uw_server_free(srv);
	uw_server_free(srv2);
	uw_server_free(srv3);
	uw_loop_free(loop);
	return t_done();
}
