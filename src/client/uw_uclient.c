/* SPDX-License-Identifier: MIT */
/*
 * uw_uclient.c - userspace USB/IP client: URBs over a socket, validated replies.
 */
#include "uw_uclient.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "uw_client.h"
#include "uw_net.h"

#define HASH   256u
#define RBUF   (256u * 1024u)
#define MAXIOV 256

struct unlink_rec {
	uint32_t seqnum;     /* the CMD_UNLINK's */
	uint32_t target_seq; /* by seqnum: the request may have completed (and be freed or
	                      * reused by its owner) before the RET_UNLINK arrives */
	uint8_t hdr[UW_URB_HDR_LEN];
	bool sent;
	struct unlink_rec *next;
};

/* Something to send: a request or an unlink, in order. */
struct outq {
	uw_ureq *req;
	struct unlink_rec *ul;
	struct outq *next;
};

struct uw_uclient {
	int fd;
	uw_usb_device dev;
	uint32_t devid;
	uint32_t next_seq;
	uw_ureq *hash[HASH];
	unsigned pending;
	struct unlink_rec *unlinks;
	struct outq *oq_head, *oq_tail;
	size_t oq_off;
	uint8_t *rbuf;
	size_t rlen;
	/* Payload being received for one reply. */
	uw_ureq *rx;
	uw_urb_hdr rx_hdr;
	size_t rx_data, rx_iso, rx_got;
	uint8_t *rx_isobuf;
	uw_ureq *done_head, *done_tail; /* completed, callbacks not yet run */
	char err[256];
	bool failed;
	bool closing;
};

static uint32_t new_seq(uw_uclient *c)
{
	if (++c->next_seq == 0)
		c->next_seq = 1;
	return c->next_seq;
}

/* Records the first reason the connection failed: what, then ": detail" if any. */
static void fail(uw_uclient *c, const char *what, const char *detail)
{
	if (c->failed)
		return;
	c->failed = true;
	snprintf(c->err, sizeof c->err, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

uw_uclient *uw_uclient_from_fd(int fd, const uw_usb_device *dev)
{
	uw_uclient *c = calloc(1, sizeof *c);
	uint8_t *rb = malloc(RBUF);
	if (!c || !rb) {
		free(c);
		free(rb);
		close(fd);
		return NULL;
	}
	c->fd = fd;
	c->rbuf = rb;
	c->dev = *dev;
	c->devid = dev->busnum << 16 | dev->devnum;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return c;
}

int uw_uclient_open(const uw_addr *addr, const char *busid, int timeout_ms, uw_uclient **out,
                    uw_usb_device *dev, char *err, size_t errlen)
{
	int fd;
	int rc = uw_addr_connect(addr, timeout_ms, &fd, err, errlen);
	if (rc)
		return rc;
	uw_usb_device d;
	uint32_t st;
	rc = uw_client_import(fd, busid, timeout_ms, &d, &st, err, errlen);
	if (rc) {
		close(fd);
		return rc;
	}
	uw_uclient *c = uw_uclient_from_fd(fd, &d);
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return UW_E_NOMEM;
	}
	if (dev)
		*dev = d;
	*out = c;
	return UW_OK;
}

static bool push_out(uw_uclient *c, uw_ureq *r, struct unlink_rec *ul)
{
	struct outq *q = malloc(sizeof *q);
	if (!q)
		return false;
	q->req = r;
	q->ul = ul;
	q->next = NULL;
	if (c->oq_tail)
		c->oq_tail->next = q;
	else
		c->oq_head = q;
	c->oq_tail = q;
	return true;
}

static void complete(uw_uclient *c, uw_ureq *r, int32_t status, uint32_t actual)
{
	r->status = status;
	r->actual = actual;
	r->next = NULL;
	if (c->done_tail)
		c->done_tail->next = r;
	else
		c->done_head = r;
	c->done_tail = r;
}

static uw_ureq *hash_take(uw_uclient *c, uint32_t seq)
{
	for (uw_ureq **pp = &c->hash[seq % HASH]; *pp; pp = &(*pp)->hnext) {
		if ((*pp)->seqnum == seq) {
			uw_ureq *r = *pp;
			*pp = r->hnext;
			c->pending--;
			return r;
		}
	}
	return NULL;
}

static uw_ureq *hash_find(const uw_uclient *c, uint32_t seq)
{
	for (uw_ureq *r = c->hash[seq % HASH]; r; r = r->hnext)
		if (r->seqnum == seq)
			return r;
	return NULL;
}

int uw_uclient_submit(uw_uclient *c, uw_ureq *r)
{
	if (c->failed)
		return UW_E_CLOSED;
	if (c->closing)
		return UW_E_CLOSED;
	if (r->ep > UW_MAX_EP || r->dir > UW_DIR_IN || r->xfer > UW_XFER_INT ||
	    r->len > UW_MAX_TRANSFER_LEN || (r->len && !r->buf) ||
	    (r->xfer == UW_XFER_CONTROL && r->len != r->setup.w_length) ||
	    (r->xfer == UW_XFER_ISO &&
	     (r->num_iso == 0 || r->num_iso > UW_MAX_ISO_PACKETS || !r->iso)))
		return UW_E_INVAL;
	if (r->xfer == UW_XFER_CONTROL)
		r->dir = r->len && !(r->setup.bm_request_type & 0x80) ? UW_DIR_OUT
		         : r->setup.bm_request_type & 0x80            ? UW_DIR_IN
		                                                      : UW_DIR_OUT;
	/* ISO packets inside the buffer, in ascending order without overlap (the compacted IN
	 * data is spread back to the offsets in place), each no longer than the protocol allows. */
	uint64_t next_free = 0;
	for (uint32_t i = 0; r->xfer == UW_XFER_ISO && i < r->num_iso; i++) {
		if (r->iso[i].offset < next_free || r->iso[i].length > UW_MAX_ISO_PACKET_LEN ||
		    (uint64_t)r->iso[i].offset + r->iso[i].length > r->len)
			return UW_E_INVAL;
		next_free = (uint64_t)r->iso[i].offset + r->iso[i].length;
	}
	r->status = 0;
	r->actual = 0;
	r->error_count = 0;
	r->sent = false;
	r->seqnum = new_seq(c);
	/* SET_ADDRESS is the client's business: Linux vhci completes it locally, so do we. */
	if (r->xfer == UW_XFER_CONTROL && r->setup.bm_request_type == 0 &&
	    r->setup.b_request == 5) {
		complete(c, r, 0, 0);
		return UW_OK;
	}
	if (r->xfer == UW_XFER_ISO) {
		r->wire_iso = malloc((size_t)r->num_iso * UW_ISO_DESC_LEN);
		if (!r->wire_iso)
			return UW_E_NOMEM;
		for (uint32_t i = 0; i < r->num_iso; i++) {
			/* Linux sends actual_length 0 and status -EXDEV in requests. */
			uw_iso_desc d = {r->iso[i].offset, r->iso[i].length, 0, UW_URB_EXDEV};
			uw_iso_desc_encode(&d, r->wire_iso + (size_t)i * UW_ISO_DESC_LEN);
		}
	} else {
		r->wire_iso = NULL;
	}
	/* Queue first: a request is registered only once nothing can fail any more. */
	if (!push_out(c, r, NULL)) {
		free(r->wire_iso);
		r->wire_iso = NULL;
		return UW_E_NOMEM;
	}
	r->unlinked = false;
	r->hnext = c->hash[r->seqnum % HASH];
	c->hash[r->seqnum % HASH] = r;
	c->pending++;
	return UW_OK;
}

int uw_uclient_unlink(uw_uclient *c, uw_ureq *r)
{
	if (hash_find(c, r->seqnum) != r)
		return UW_E_NOTFOUND;
	if (r->unlinked)
		return UW_E_STATE; /* one CMD_UNLINK per request */
	struct unlink_rec *ul = calloc(1, sizeof *ul);
	if (!ul)
		return UW_E_NOMEM;
	ul->seqnum = new_seq(c);
	ul->target_seq = r->seqnum;
	uw_urb_hdr h = {.command = UW_CMD_UNLINK, .seqnum = ul->seqnum, .devid = c->devid};
	h.u.unlink.seqnum = r->seqnum;
	uw_urb_hdr_encode(&h, ul->hdr);
	if (!push_out(c, NULL, ul)) {
		free(ul);
		return UW_E_NOMEM;
	}
	ul->next = c->unlinks;
	c->unlinks = ul;
	r->unlinked = true;
	return UW_OK;
}

static void encode_submit(const uw_uclient *c, const uw_ureq *r, uint8_t *hdr)
{
	uw_urb_hdr h = {.command = UW_CMD_SUBMIT,
	                .seqnum = r->seqnum,
	                .devid = c->devid,
	                .direction = r->dir,
	                .ep = r->ep};
	h.u.submit.transfer_flags =
	    (r->flags & ~UW_URB_DIR_MASK) | (r->dir == UW_DIR_IN ? UW_URB_DIR_IN : 0);
	h.u.submit.transfer_buffer_length = (int32_t)r->len;
	h.u.submit.start_frame = r->xfer == UW_XFER_INT ? -1 : 0;
	h.u.submit.number_of_packets = r->xfer == UW_XFER_ISO ? (int32_t)r->num_iso : 0;
	h.u.submit.interval = r->interval;
	if (r->xfer == UW_XFER_CONTROL)
		uw_setup_encode(&r->setup, h.u.submit.setup);
	uw_urb_hdr_encode(&h, hdr);
}

/* Header scratch for requests being written: one per queued request in this batch. */
static int flush(uw_uclient *c)
{
	static_assert(MAXIOV >= 4, "iov room");
	while (c->oq_head && !c->failed) {
		struct iovec iov[MAXIOV];
		uint8_t hdrs[MAXIOV / 3][UW_URB_HDR_LEN];
		int n = 0, nh = 0;
		size_t skip = c->oq_off;
		for (struct outq *q = c->oq_head; q && n + 3 <= MAXIOV && nh < MAXIOV / 3;
		     q = q->next) {
			struct iovec parts[3];
			int np = 0;
			if (q->ul) {
				parts[np++] = (struct iovec){q->ul->hdr, UW_URB_HDR_LEN};
			} else {
				uw_ureq *r = q->req;
				encode_submit(c, r, hdrs[nh]);
				parts[np++] = (struct iovec){hdrs[nh++], UW_URB_HDR_LEN};
				if (r->dir == UW_DIR_OUT && r->len)
					parts[np++] = (struct iovec){r->buf, r->len};
				if (r->wire_iso)
					parts[np++] = (struct iovec){
					    r->wire_iso, (size_t)r->num_iso * UW_ISO_DESC_LEN};
			}
			for (int i = 0; i < np; i++) {
				if (skip >= parts[i].iov_len) {
					skip -= parts[i].iov_len;
					continue;
				}
				iov[n++] = (struct iovec){(uint8_t *)parts[i].iov_base + skip,
				                          parts[i].iov_len - skip};
				skip = 0;
			}
		}
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t k = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			fail(c, "send failed", strerror(errno));
			return UW_E_IO;
		}
		size_t done = c->oq_off + (size_t)k;
		while (c->oq_head) {
			struct outq *q = c->oq_head;
			size_t total = UW_URB_HDR_LEN;
			if (q->req) {
				if (q->req->dir == UW_DIR_OUT)
					total += q->req->len;
				if (q->req->wire_iso)
					total += (size_t)q->req->num_iso * UW_ISO_DESC_LEN;
			}
			if (done < total)
				break;
			done -= total;
			if (q->req)
				q->req->sent = true;
			else
				q->ul->sent = true;
			c->oq_head = q->next;
			if (!c->oq_head)
				c->oq_tail = NULL;
			free(q);
		}
		c->oq_off = done;
	}
	return 0;
}

static bool pending_cb(void *user, uint32_t seqnum, uw_pending *out)
{
	uw_uclient *c = user;
	uw_ureq *r = hash_find(c, seqnum);
	if (!r || !r->sent)
		return false; /* a reply to something not (wholly) sent is not an answer */
	*out = (uw_pending){.direction = r->dir,
	                    .xfer = r->xfer,
	                    .transfer_length = (int32_t)r->len,
	                    .number_of_packets = (int32_t)r->num_iso,
	                    .iso_req = r->wire_iso};
	return true;
}

static void finish_reply(uw_uclient *c)
{
	uw_ureq *r = c->rx;
	c->rx = NULL;
	const uw_urb_hdr *h = &c->rx_hdr;
	if (r->xfer == UW_XFER_ISO && r->num_iso) {
		uw_dec d;
		size_t base = UW_URB_HDR_LEN + c->rx_data;
		if (uw_iso_check_ret(c->rx_isobuf, r->num_iso, r->wire_iso, h->u.ret.actual_length,
		                     base, &d) != UW_DEC_DONE) {
			char msg[200];
			fail(c, "invalid RET_SUBMIT from server",
			     uw_dec_format(&d, msg, sizeof msg));
			free(c->rx_isobuf);
			c->rx_isobuf = NULL;
			free(r->wire_iso);
			r->wire_iso = NULL;
			complete(c, r, UW_URB_EPROTO, 0);
			return;
		}
		/* IN data came compacted: move each packet to its offset, last first. */
		size_t pos = 0;
		uw_iso_desc ds[UW_MAX_ISO_PACKETS];
		for (uint32_t i = 0; i < r->num_iso; i++) {
			uw_iso_desc_decode(c->rx_isobuf + (size_t)i * UW_ISO_DESC_LEN, &ds[i]);
			r->iso[i].actual_length = ds[i].actual_length;
			r->iso[i].status = ds[i].status;
		}
		if (r->dir == UW_DIR_IN) {
			size_t starts[UW_MAX_ISO_PACKETS];
			for (uint32_t i = 0; i < r->num_iso; i++) {
				starts[i] = pos;
				pos += ds[i].actual_length;
			}
			for (uint32_t i = r->num_iso; i-- > 0;)
				memmove(r->buf + ds[i].offset, r->buf + starts[i],
				        ds[i].actual_length);
		}
		free(c->rx_isobuf);
		c->rx_isobuf = NULL;
	}
	free(r->wire_iso);
	r->wire_iso = NULL;
	r->error_count = h->u.ret.error_count;
	complete(c, r, h->u.ret.status, (uint32_t)h->u.ret.actual_length);
}

/* Handles buffered replies. Returns false on a protocol error. */
static bool process(uw_uclient *c)
{
	size_t pos = 0;
	while (pos < c->rlen && !c->failed) {
		if (c->rx) {
			/* Payload of the reply in progress: data into the caller's buffer, then
			 * ISO descriptors. */
			size_t avail = c->rlen - pos;
			if (c->rx_got < c->rx_data) {
				size_t k = c->rx_data - c->rx_got;
				k = k < avail ? k : avail;
				memcpy(c->rx->buf + c->rx_got, c->rbuf + pos, k);
				c->rx_got += k;
				pos += k;
			} else {
				size_t off = c->rx_got - c->rx_data;
				size_t k = c->rx_iso - off;
				k = k < avail ? k : avail;
				memcpy(c->rx_isobuf + off, c->rbuf + pos, k);
				c->rx_got += k;
				pos += k;
			}
			if (c->rx_got == c->rx_data + c->rx_iso)
				finish_reply(c);
			continue;
		}
		uw_urb_hdr h;
		size_t dl, il;
		uw_dec d;
		enum uw_dec_status st = uw_ret_hdr_decode(c->rbuf + pos, c->rlen - pos, pending_cb,
		                                          c, &h, &dl, &il, &d);
		if (st == UW_DEC_MORE)
			break;
		if (st == UW_DEC_ERROR) {
			char msg[200];
			fail(c, "invalid reply from server", uw_dec_format(&d, msg, sizeof msg));
			return false;
		}
		pos += UW_URB_HDR_LEN;
		if (h.command == UW_RET_UNLINK) {
			for (struct unlink_rec **pp = &c->unlinks; *pp; pp = &(*pp)->next) {
				struct unlink_rec *ul = *pp;
				if (ul->seqnum != h.seqnum)
					continue;
				if (!ul->sent) {
					fail(c, "invalid reply from server",
					     "RET_UNLINK for a CMD_UNLINK not yet sent");
					return false;
				}
				*pp = ul->next;
				/* Target still pending: the unlink answers for it. */
				uw_ureq *t = hash_take(c, ul->target_seq);
				if (t) {
					free(t->wire_iso);
					t->wire_iso = NULL;
					complete(c, t, h.u.ret_unlink.status, 0);
				}
				free(ul);
				break;
			}
			continue; /* an unknown RET_UNLINK is ignored, as Linux vhci does */
		}
		uw_ureq *r = hash_take(c, h.seqnum);
		c->rx = r;
		c->rx_hdr = h;
		c->rx_data = dl;
		c->rx_iso = il;
		c->rx_got = 0;
		if (il) {
			c->rx_isobuf = malloc(il);
			if (!c->rx_isobuf) {
				fail(c, "out of memory", NULL);
				return false;
			}
		}
		if (dl + il == 0)
			finish_reply(c);
	}
	memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
	c->rlen -= pos;
	return !c->failed;
}

static int read_some(uw_uclient *c)
{
	for (int round = 0; round < 64; round++) {
		ssize_t k;
		if (c->rx && c->rlen == 0 && c->rx_got < c->rx_data) {
			/* Large IN payloads go straight into the caller's buffer. */
			k = recv(c->fd, c->rx->buf + c->rx_got, c->rx_data - c->rx_got, 0);
			if (k > 0) {
				c->rx_got += (size_t)k;
				if (c->rx_got == c->rx_data + c->rx_iso)
					finish_reply(c);
				continue;
			}
		} else {
			k = recv(c->fd, c->rbuf + c->rlen, RBUF - c->rlen, 0);
			if (k > 0) {
				c->rlen += (size_t)k;
				if (!process(c))
					return UW_E_PROTO;
				continue;
			}
		}
		if (k == 0) {
			fail(c, "server closed the connection", NULL);
			return UW_E_CLOSED;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		if (errno == EINTR)
			continue;
		fail(c, "receive failed", strerror(errno));
		return UW_E_IO;
	}
	return 0;
}

static int run_callbacks(uw_uclient *c)
{
	int n = 0;
	while (c->done_head) {
		uw_ureq *r = c->done_head;
		c->done_head = r->next;
		if (!c->done_head)
			c->done_tail = NULL;
		n++;
		if (r->cb)
			r->cb(r);
	}
	return n;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int uw_uclient_poll(uw_uclient *c, int timeout_ms)
{
	uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		if (!c->failed)
			flush(c);
		if (!c->failed)
			read_some(c);
		int n = run_callbacks(c);
		if (n)
			return n;
		if (c->failed)
			return UW_E_CLOSED;
		uint64_t now = now_ms();
		if (now >= deadline)
			return 0;
		struct pollfd p = {c->fd, POLLIN | (c->oq_head ? POLLOUT : 0), 0};
		uint64_t left = deadline - now;
		poll(&p, 1, deadline == UINT64_MAX ? -1 : (int)(left > 60000 ? 60000 : left));
	}
}

unsigned uw_uclient_pending(const uw_uclient *c)
{
	return c->pending;
}

const char *uw_uclient_error(const uw_uclient *c)
{
	return c->err;
}

void uw_uclient_close(uw_uclient *c)
{
	if (!c)
		return;
	c->closing = true; /* callbacks that resubmit now get UW_E_CLOSED */
	close(c->fd);
	c->fd = -1;
	if (c->rx) {
		/* Already out of the table; it still owes its callback. */
		free(c->rx->wire_iso);
		c->rx->wire_iso = NULL;
		complete(c, c->rx, UW_URB_ESHUTDOWN, 0);
		c->rx = NULL;
	}
	for (unsigned b = 0; b < HASH; b++) {
		while (c->hash[b]) {
			uw_ureq *r = c->hash[b];
			c->hash[b] = r->hnext;
			free(r->wire_iso);
			r->wire_iso = NULL;
			complete(c, r, UW_URB_ESHUTDOWN, 0);
		}
	}
	run_callbacks(c);
	while (c->oq_head) {
		struct outq *q = c->oq_head;
		c->oq_head = q->next;
		free(q);
	}
	while (c->unlinks) {
		struct unlink_rec *ul = c->unlinks;
		c->unlinks = ul->next;
		free(ul);
	}
	free(c->rx_isobuf);
	free(c->rbuf);
	free(c);
}

static void sync_done(uw_ureq *r)
{
	*(int *)r->user = 1;
}

/* Drops r without its callback, for a caller about to lose r's storage: from the table, the
 * send queue, the completed list and the reply being received. If part of r was already
 * written or is being read, the stream cannot go on: the connection is failed. */
static void forget(uw_uclient *c, uw_ureq *r)
{
	if (hash_find(c, r->seqnum) == r)
		hash_take(c, r->seqnum);
	struct outq *prev = NULL;
	for (struct outq *q = c->oq_head, *next; q; q = next) {
		next = q->next;
		if (q->req != r) {
			prev = q;
			continue;
		}
		if (q == c->oq_head && c->oq_off) {
			fail(c, "a request was abandoned while it was being sent", NULL);
			c->oq_off = 0;
		}
		if (prev)
			prev->next = next;
		else
			c->oq_head = next;
		if (c->oq_tail == q)
			c->oq_tail = prev;
		free(q);
	}
	uw_ureq *dprev = NULL;
	for (uw_ureq *d = c->done_head; d; dprev = d, d = d->next) {
		if (d != r)
			continue;
		if (dprev)
			dprev->next = d->next;
		else
			c->done_head = d->next;
		if (c->done_tail == d)
			c->done_tail = dprev;
		break;
	}
	if (c->rx == r) {
		fail(c, "a request was abandoned while its reply was being received", NULL);
		c->rx = NULL;
	}
	free(r->wire_iso);
	r->wire_iso = NULL;
}

static int run_sync(uw_uclient *c, uw_ureq *r, int timeout_ms)
{
	int done = 0;
	r->cb = sync_done;
	r->user = &done;
	int rc = uw_uclient_submit(c, r);
	if (rc)
		return rc;
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	while (!done) {
		uint64_t now = now_ms();
		if (now >= deadline) {
			/* Cancel, and give the server a bounded time to answer the unlink. */
			uw_uclient_unlink(c, r);
			uint64_t grace = now_ms() + 2000;
			while (!done && now_ms() < grace && uw_uclient_poll(c, 200) >= 0)
				;
			if (done)
				return r->status ? r->status : (int)r->actual;
			fail(c, "a request timed out and the server did not answer its unlink",
			     NULL);
			forget(c, r);
			return UW_E_TIMEOUT;
		}
		if (uw_uclient_poll(c, (int)(deadline - now)) < 0 && !done) {
			forget(c, r); /* r lives on the caller's stack */
			return UW_E_CLOSED;
		}
	}
	return r->status ? r->status : (int)r->actual;
}

int uw_uclient_control(uw_uclient *c, uint8_t bm_request_type, uint8_t b_request, uint16_t w_value,
                       uint16_t w_index, void *data, uint16_t w_length, int timeout_ms)
{
	uw_ureq r = {.ep = 0, .xfer = UW_XFER_CONTROL, .buf = data, .len = w_length};
	r.setup = (uw_setup){bm_request_type, b_request, w_value, w_index, w_length};
	return run_sync(c, &r, timeout_ms);
}

int uw_uclient_transfer(uw_uclient *c, uint8_t ep, uint8_t dir, uint8_t xfer, void *data,
                        uint32_t len, int timeout_ms)
{
	uw_ureq r = {.ep = ep, .dir = dir, .xfer = xfer, .buf = data, .len = len, .interval = 1};
	return run_sync(c, &r, timeout_ms);
}
