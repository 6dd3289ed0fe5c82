/* SPDX-License-Identifier: MIT */
/*
 * uw_server.c - USB/IP server sessions.
 *
 * Data path, per connection:
 *   read()  -> rbuf -> uw_cmd_hdr_decode() -> urb_ctx (buffer sized only after validation)
 *           -> OUT payload copied from rbuf, the rest recv()'d straight into the URB buffer
 *           -> dev->ops->submit()
 *   done()  -> completion queue, answered at the outermost exit of the session entry that
 *              called into the device, else by a loop task per batch (other threads, device
 *              events): a completion never runs the session, and so never the device, from
 *              inside the backend that completes it
 *           -> reply queued on the one ordered output queue (header, data, ISO descriptors as
 *              separate iovecs: no copy of payload) -> one sendmsg() per burst.
 * Limits per session: URBs in flight and bytes of URB buffers; over either, the session stops
 * reading (backpressure) until completions free room. Nothing a peer sends sizes an allocation
 * before uw_wire.c has checked it against uw_limits.h.
 */
#include "uw_server.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "uw_net.h"
#include "uw_wire.h"

#define RBUF_SIZE         (256u * 1024u)
#define HASH_SIZE         256u
#define MAX_IOV           256
#define READ_ROUNDS       64
#define MAX_SMALL_REPLIES 65536u
#define MAX_EXTRA_UNLINKS 4
#define POOL_MIN_SHIFT    12 /* 4 KiB: smaller buffers come from malloc */
#define POOL_CLASSES      13 /* 4 KiB .. 16 MiB */
#define POOL_MAX_BYTES    (32u << 20)
#define PEER_HASH         64u
#define ACCEPT_RETRY_MS   1000u /* listeners paused for lack of fds: try again after this */

struct pool_buf {
	struct pool_buf *next;
};

/* In sanitizer builds a pooled buffer is poisoned (all but its link), so a stale pointer to a
 * finished URB's buffer is still reported as a use after free. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UW_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) && !defined(UW_ASAN)
#define UW_ASAN 1
#endif
#ifdef UW_ASAN
#include <sanitizer/asan_interface.h>
#define POOL_POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POOL_POISON(p, n)   ((void)(p), (void)(n))
#define POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct session;
struct listener;

/* One IP address with connections open, or with refusals being counted for the log. */
struct peer {
	struct peer *next; /* hash chain */
	uint8_t addr[16];
	size_t alen; /* 4 or 16 */
	char name[48];
	unsigned sessions;    /* open now (counted until the session is freed) */
	struct session *list; /* those sessions, through pnext/pprev */
	uint64_t refused;     /* over the per-peer limit, not logged yet */
	bool quiet;           /* a refusal was logged this interval: count the rest */
	bool hold;            /* in use by the code on the stack: not freed */
};

/* One reply on the output queue: a header plus up to n parts of payload. */
struct out_item {
	struct out_item *next;
	struct urb_ctx *urb; /* freed once the reply is written; NULL for op replies */
	void *heap;          /* freed once written (op replies) */
	uint8_t hdr[UW_URB_HDR_LEN];
	size_t hdr_len;
	struct iovec *parts;
	unsigned nparts;
	struct iovec inline_parts[2];
};

struct urb_ctx {
	uw_urb u;
	struct session *s;
	struct urb_ctx *hnext;  /* seqnum hash chain */
	struct urb_ctx *cqnext; /* cross-thread completion queue */
	bool unlinking;
	uint32_t unlink_seq;
	/* Further CMD_UNLINKs of the same URB: answered RET_UNLINK(0) after its reply, so that
	 * no RET_UNLINK ever precedes the RET_SUBMIT of a URB that is still pending. */
	uint32_t extra_unlinks[MAX_EXTRA_UNLINKS];
	uint8_t nextra;
	int32_t req_np; /* number_of_packets as sent (echoed for non-ISO -1) */
	uint8_t setup_raw[UW_SETUP_LEN];
	uint8_t *iso_wire; /* ISO descriptors: received, then re-encoded for the reply */
	size_t mem;        /* bytes charged to the session */
	struct out_item out;
};

struct export
{
	uw_dev *dev;
	struct session *owner;
	bool gone;
	bool removed; /* uw_server_remove_device(): dropped once released */
};

enum sess_state {
	S_OP,    /* waiting for OP_REQ_DEVLIST / OP_REQ_IMPORT */
	S_URB,   /* imported: CMD_SUBMIT / CMD_UNLINK */
	S_DRAIN, /* device gone: finishing replies, then closing */
	S_DEAD,  /* connection closed; waiting for URBs still in the backend */
};

struct session {
	uw_server *srv;
	struct session *next, *prev;
	int fd;
	char peer[64];
	enum sess_state st;
	uw_timer *hs_timer;
	uw_timer *fb_timer;  /* first-byte deadline, until the first byte arrives */
	uw_conn_watch watch; /* uw_server_add_connection_watched() */
	void *watch_arg;
	struct peer *ip; /* NULL for peers without an IP address */
	struct session *pnext, *pprev;
	struct export *exp;
	uint32_t devid;

	uint8_t *rbuf;
	size_t rlen;
	/* Payload being received for a CMD_SUBMIT: OUT data, then ISO descriptors. */
	struct urb_ctx *rx;
	uint8_t *rx_dst[2];
	size_t rx_len[2];
	int rx_part;
	size_t rx_off;

	struct urb_ctx *hash[HASH_SIZE];
	unsigned inflight; /* submitted, not finished */
	size_t mem;        /* URB buffers charged, until their replies are written */
	unsigned small;    /* queued replies that carry no URB (RET_UNLINK, op replies) */

	struct out_item *oq_head, *oq_tail;
	size_t oq_off; /* bytes of the head item already written */
	bool want_out;
	bool paused;
	bool close_after_flush;
	bool peer_hup; /* draining, the client half-closed: no longer watched for that */
	int depth;     /* > 0 while an entry point of ours is on the stack: session_enter() */

	pthread_mutex_t cq_lock;
	struct urb_ctx *cq_head, *cq_tail;
	bool cq_posted;
	uw_loop_task cq_task; /* runs cq_drain(); posting it cannot fail */

	uint64_t urbs;
	uint64_t started;
};

struct uw_server {
	struct uw_server_config cfg;
	struct export *exports;
	size_t nexports;
	int lfds[16];
	struct listener *listeners[16];
	size_t nl;
	struct session *sessions;
	struct uw_server_stats stats;
	bool shutting_down;
	bool freeing; /* uw_server_free(): URBs finishing now are just freed */
	int in_dev;   /* a device op (submit, cancel, release) is on the stack: dev_call() */
	uw_task_fn sd_done;
	void *sd_arg;
	uw_timer *sd_timer;
	/* Recycled URB buffers (loop thread only): large buffers straight from malloc come back
	 * as fresh pages each time, and faulting in 256 pages per 1 MiB URB costs more than the
	 * transfer. Power-of-two classes from POOL_MIN to UW_MAX_TRANSFER_LEN, capped in bytes. */
	struct pool_buf *pool[POOL_CLASSES];
	size_t pool_bytes;
	/* Connection limits (docs/architecture.md, "The server": connection limits). */
	struct peer *peers[PEER_HASH];
	uw_timer *rl_timer;    /* runs once per log interval while refusals are being counted */
	uint64_t full_refused; /* over max_sessions, not logged yet */
	bool full_quiet;
	uint64_t accept_fails; /* accept() out of fds, not logged yet */
	bool accept_quiet;
	bool accept_paused;       /* listeners not watched: out of file descriptors */
	uw_loop_task change_task; /* cfg.on_change, posted once per batch of changes */
	bool change_posted;
	uw_timer *accept_timer; /* retries accepting while paused */
};

#define LOG(srv, lvl, ...) uw_logf(&(srv)->cfg.log, lvl, __VA_ARGS__)

static void session_flush(struct session *s);
static void session_end(struct session *s, const char *why);
static void session_leave(struct session *s);
static void queue_item(struct session *s, struct out_item *it);
static void check_shutdown_done(uw_server *srv);
static void export_drop(uw_server *srv, struct export *e);
static void peer_unlink(uw_server *srv, struct session *s);
static void accept_resume(uw_server *srv);

static bool cq_run(struct session *s);
static void session_kick(struct session *s);

/* Every way into a session from the loop (fd events, timers, tasks, device notices) goes
 * through session_enter()/session_exit(). The outermost exit answers the URBs that completed
 * meanwhile (inside our calls into the device) and restarts the session if they made room:
 * nothing of the device's is on the stack there. It frees s once it is dead and nothing refers
 * to it. */
static void session_enter(struct session *s)
{
	s->depth++;
}

static void session_exit(struct session *s)
{
	while (s->depth == 1 && cq_run(s))
		session_kick(s);
	s->depth--;
	session_leave(s);
}

/* Calls into a device are never nested (docs/architecture.md, "The server"): a device that
 * completes a URB inside submit() or cancel() finds the completion queued, not a session that
 * submits again into it while its state is half updated. */
#define dev_call(srv, call)                                                                        \
	do {                                                                                       \
		assert((srv)->in_dev == 0 && "device op entered from inside another");             \
		(srv)->in_dev++;                                                                   \
		call;                                                                              \
		(srv)->in_dev--;                                                                   \
	} while (0)

/* ---- Small helpers ------------------------------------------------------------------------- */

static void change_run(void *arg)
{
	uw_server *srv = arg;
	srv->change_posted = false;
	srv->cfg.on_change(srv->cfg.on_change_arg);
}

/* The device list or who holds a device changed: tell cfg.on_change from a task of its own. */
static void changed(uw_server *srv)
{
	if (!srv->cfg.on_change || srv->change_posted || srv->freeing)
		return;
	srv->change_posted = true;
	srv->change_task.fn = change_run;
	srv->change_task.arg = srv;
	uw_loop_post_task(srv->cfg.loop, &srv->change_task);
}

static struct urb_ctx *hash_find(struct session *s, uint32_t seq)
{
	for (struct urb_ctx *c = s->hash[seq % HASH_SIZE]; c; c = c->hnext)
		if (c->u.seqnum == seq)
			return c;
	return NULL;
}

static void hash_del(struct session *s, struct urb_ctx *ctx)
{
	for (struct urb_ctx **pp = &s->hash[ctx->u.seqnum % HASH_SIZE]; *pp; pp = &(*pp)->hnext) {
		if (*pp == ctx) {
			*pp = ctx->hnext;
			return;
		}
	}
}

/* Size class of a len-byte buffer, or -1 for small ones that bypass the pool. */
static int pool_class(size_t len)
{
	if (len <= (1u << POOL_MIN_SHIFT) / 2)
		return -1;
	int c = 0;
	while (((size_t)1 << (POOL_MIN_SHIFT + c)) < len)
		c++;
	return c;
}

static void *buf_get(uw_server *srv, size_t len)
{
	int c = pool_class(len);
	if (c < 0)
		return malloc(len);
	struct pool_buf *b = srv->pool[c];
	if (b) {
		srv->pool[c] = b->next;
		srv->pool_bytes -= (size_t)1 << (POOL_MIN_SHIFT + c);
		POOL_UNPOISON(b, (size_t)1 << (POOL_MIN_SHIFT + c));
		return b;
	}
	return malloc((size_t)1 << (POOL_MIN_SHIFT + c));
}

static void buf_put(uw_server *srv, void *p, size_t len)
{
	int c = pool_class(len);
	size_t size = c < 0 ? 0 : (size_t)1 << (POOL_MIN_SHIFT + c);
	if (!p || c < 0 || srv->pool_bytes + size > POOL_MAX_BYTES) {
		free(p);
		return;
	}
	struct pool_buf *b = p;
	b->next = srv->pool[c];
	srv->pool[c] = b;
	srv->pool_bytes += size;
	POOL_POISON((uint8_t *)p + sizeof *b, size - sizeof *b);
}

/* Returns every pooled buffer to the system: an idle server keeps nothing it does not need. */
static void pool_drain(uw_server *srv)
{
	for (int c = 0; c < POOL_CLASSES; c++) {
		while (srv->pool[c]) {
			struct pool_buf *b = srv->pool[c];
			srv->pool[c] = b->next;
			POOL_UNPOISON(b, (size_t)1 << (POOL_MIN_SHIFT + c));
			free(b);
		}
	}
	srv->pool_bytes = 0;
}

static void ctx_free(struct session *s, struct urb_ctx *ctx)
{
	s->mem -= ctx->mem;
	buf_put(s->srv, ctx->u.buf, ctx->u.len);
	free(ctx->u.iso);
	free(ctx->iso_wire);
	if (ctx->out.parts != ctx->out.inline_parts)
		free(ctx->out.parts);
	free(ctx);
}

static void item_free(struct session *s, struct out_item *it)
{
	if (it->urb) {
		ctx_free(s, it->urb); /* the item is embedded in it */
	} else {
		s->small--;
		free(it->heap);
		free(it);
	}
}

/* Updates epoll interest from want_out/paused/state. */
static void session_watch(struct session *s)
{
	if (s->fd < 0)
		return;
	uint32_t ev = 0;
	if (!s->paused && (s->st == S_OP || s->st == S_URB) && !s->close_after_flush)
		ev |= UW_EV_IN;
	else if (!s->peer_hup)
		ev |= UW_EV_HUP; /* not reading, but a peer that goes away must still be noticed */
	if (s->want_out)
		ev |= UW_EV_OUT;
	uw_loop_mod_fd(s->srv->cfg.loop, s->fd, ev);
}

/* ---- Replies ----------------------------------------------------------------------------- */

static void queue_item(struct session *s, struct out_item *it)
{
	if (!it->urb)
		s->small++;
	it->next = NULL;
	if (s->oq_tail)
		s->oq_tail->next = it;
	else
		s->oq_head = it;
	s->oq_tail = it;
}

static void queue_ret_unlink(struct session *s, uint32_t seq, int32_t status)
{
	if (s->st == S_DEAD)
		return;
	struct out_item *it = calloc(1, sizeof *it);
	if (!it) {
		session_end(s, "out of memory");
		return;
	}
	uw_urb_hdr h = {.command = UW_RET_UNLINK, .seqnum = seq};
	h.u.ret_unlink.status = status;
	uw_urb_hdr_encode(&h, it->hdr);
	it->hdr_len = UW_URB_HDR_LEN;
	it->parts = it->inline_parts;
	queue_item(s, it);
}

/* Builds the RET_SUBMIT for a finished URB into its embedded out_item and queues it. */
static void queue_ret_submit(struct session *s, struct urb_ctx *ctx)
{
	uw_urb *u = &ctx->u;
	struct out_item *it = &ctx->out;
	uw_urb_hdr h = {.command = UW_RET_SUBMIT, .seqnum = u->seqnum};
	uint32_t actual = u->actual > u->len ? u->len : u->actual;
	int32_t errors = 0;
	it->parts = it->inline_parts;
	it->nparts = 0;
	it->urb = ctx;
	if (u->xfer == UW_XFER_ISO) {
		/* Linux requires actual_length == sum of the packets; IN data goes compacted. */
		uint64_t sum = 0;
		unsigned n = u->num_iso;
		struct iovec *parts = n + 1 > 2 ? calloc(n + 1, sizeof *parts) : it->inline_parts;
		if (!parts) {
			session_end(s, "out of memory");
			ctx_free(s, ctx);
			return;
		}
		it->parts = parts;
		for (unsigned i = 0; i < n; i++) {
			uw_iso_pkt *p = &u->iso[i];
			if (p->actual_length > p->length)
				p->actual_length = p->length;
			if (p->status)
				errors++;
			sum += p->actual_length;
			if (u->dir == UW_DIR_IN && p->actual_length)
				parts[it->nparts++] =
				    (struct iovec){u->buf + p->offset, p->actual_length};
			uw_iso_desc d = {p->offset, p->length, p->actual_length, p->status};
			uw_iso_desc_encode(&d, ctx->iso_wire + (size_t)i * UW_ISO_DESC_LEN);
		}
		if (n)
			parts[it->nparts++] =
			    (struct iovec){ctx->iso_wire, (size_t)n * UW_ISO_DESC_LEN};
		actual = (uint32_t)sum;
		h.u.ret.number_of_packets = (int32_t)n;
	} else {
		if (u->dir == UW_DIR_IN && actual)
			it->parts[it->nparts++] = (struct iovec){u->buf, actual};
		/* docs/protocol.md §4.3: 0, but echo -1 to a client that sent -1. */
		h.u.ret.number_of_packets = ctx->req_np == -1 ? -1 : 0;
	}
	h.u.ret.status = u->status;
	h.u.ret.actual_length = (int32_t)actual;
	h.u.ret.start_frame = u->start_frame;
	h.u.ret.error_count = errors;
	uw_urb_hdr_encode(&h, it->hdr);
	it->hdr_len = UW_URB_HDR_LEN;
	queue_item(s, it);
}

/* ---- Completion ---------------------------------------------------------------------------- */

static void release_device(struct session *s)
{
	struct export *e = s->exp;
	if (!e)
		return;
	s->exp = NULL;
	if (e->dev->ops->release)
		dev_call(s->srv, e->dev->ops->release(e->dev));
	e->owner = NULL;
	LOG(s->srv, UW_LOG_INFO, "%s: released %s", s->peer, e->dev->info.busid);
	changed(s->srv);
	if (e->removed)
		export_drop(s->srv, e);
	check_shutdown_done(s->srv);
}

/* A URB finished (loop thread): reply per the unlink rules, or drop it if the client is gone. */
static void urb_finish(struct urb_ctx *ctx)
{
	struct session *s = ctx->s;
	hash_del(s, ctx);
	s->inflight--;
	s->urbs++;
	s->srv->stats.urbs++;
	if (s->st == S_DEAD) {
		ctx_free(s, ctx);
		if (s->inflight == 0)
			release_device(s);
		return;
	}
	if (ctx->unlinking) {
		uint32_t useq = ctx->unlink_seq;
		uint32_t extra[MAX_EXTRA_UNLINKS];
		unsigned nextra = ctx->nextra;
		memcpy(extra, ctx->extra_unlinks, sizeof extra);
		if (ctx->u.status == UW_URB_ECONNRESET) {
			/* Cancelled in time: the RET_UNLINK stands in for the RET_SUBMIT. */
			ctx_free(s, ctx);
			queue_ret_unlink(s, useq, UW_URB_ECONNRESET);
		} else {
			/* Finished before the cancel took effect: its data first, then the unlink.
			 */
			queue_ret_submit(s, ctx);
			queue_ret_unlink(s, useq, 0);
		}
		for (unsigned i = 0; i < nextra; i++)
			queue_ret_unlink(s, extra[i], 0);
	} else {
		queue_ret_submit(s, ctx);
	}
	if (s->st == S_DRAIN && s->inflight == 0)
		s->close_after_flush = true;
}

/* Resumes reading once completions have freed room, and handles what is already buffered. */
static void process_rbuf(struct session *s);

static bool over_budget(const struct session *s)
{
	const struct uw_server_config *c = &s->srv->cfg;
	/* A client that does not read its replies stops being read: URB buffers count in mem,
	 * replies without a URB (RET_UNLINK floods) are counted here. */
	return s->inflight >= c->max_urbs || s->mem >= c->max_bytes ||
	       s->small >= MAX_SMALL_REPLIES;
}

static void session_kick(struct session *s)
{
	if (s->st == S_DEAD)
		return;
	if (s->paused && !over_budget(s)) {
		s->paused = false;
		process_rbuf(s);
	}
	session_flush(s);
	session_watch(s);
}

/* Answers the queued completions (loop thread, at the top of a session entry). Returns false if
 * there were none. */
static bool cq_run(struct session *s)
{
	pthread_mutex_lock(&s->cq_lock);
	struct urb_ctx *c = s->cq_head;
	s->cq_head = s->cq_tail = NULL;
	pthread_mutex_unlock(&s->cq_lock);
	if (!c)
		return false;
	while (c) {
		struct urb_ctx *next = c->cqnext;
		urb_finish(c);
		c = next;
	}
	return true;
}

/* The loop task for completions made outside any session entry: on other threads, or by a
 * device's own event handler on the loop thread. */
static void cq_drain(void *arg)
{
	struct session *s = arg;
	pthread_mutex_lock(&s->cq_lock);
	s->cq_posted = false;
	pthread_mutex_unlock(&s->cq_lock);
	session_enter(s);
	cq_run(s);
	session_kick(s);
	session_exit(s);
}

/* uw_urb.done: called by backends on any thread, exactly once per URB. Only queues it: the
 * reply, and the restart of a session that was paused for want of room, run at the outermost
 * session_exit() when a call of ours into the device is what completed it, else from the loop
 * task (cq_drain). Handled here, a completion that a device makes from inside its own code (its
 * submit, cancel or event handler) would make the session submit into that device again before
 * the device has finished what it was doing (docs/architecture.md, "The server"). */
static void urb_done(uw_urb *u)
{
	struct urb_ctx *ctx = (struct urb_ctx *)u;
	struct session *s = ctx->s;
	if (s->srv->freeing) {
		/* Devices are being destroyed with the server: nobody is left to answer. */
		hash_del(s, ctx);
		s->inflight--;
		ctx_free(s, ctx);
		return;
	}
	/* depth is the loop thread's: read only there. */
	bool in_entry = uw_loop_in_thread(s->srv->cfg.loop) && s->depth > 0;
	pthread_mutex_lock(&s->cq_lock);
	ctx->cqnext = NULL;
	if (s->cq_tail)
		s->cq_tail->cqnext = ctx;
	else
		s->cq_head = ctx;
	s->cq_tail = ctx;
	bool post = !in_entry && !s->cq_posted;
	if (post)
		s->cq_posted = true;
	pthread_mutex_unlock(&s->cq_lock);
	if (post)
		uw_loop_post_task(s->srv->cfg.loop, &s->cq_task);
}

/* ---- Submitting ---------------------------------------------------------------------------- */

static int ep_type_cb(void *user, uint32_t ep, uint32_t dir)
{
	struct session *s = user;
	uw_dev *d = s->exp->dev;
	return d->ops->ep_type(d, ep, dir);
}

/* Checks a whole CMD_SUBMIT against the device; 0 to submit it, or the status to fail it with. */
static int32_t submit_check(struct urb_ctx *ctx)
{
	uw_urb *u = &ctx->u;
	if (u->xfer == UW_XFER_UNKNOWN)
		return UW_URB_EPIPE; /* no such endpoint in the current configuration */
	if (u->xfer == UW_XFER_CONTROL) {
		/* The header frames the data; the SETUP packet says what the device does. A
		 * data stage in the other direction than bmRequestType would corrupt memory in
		 * some device stacks and warns in Linux: refuse it. */
		if (u->setup.w_length != u->len)
			return UW_URB_EINVAL;
		if (u->len && (u->setup.bm_request_type & 0x80 ? UW_DIR_IN : UW_DIR_OUT) != u->dir)
			return UW_URB_EINVAL;
	}
	if (u->xfer == UW_XFER_ISO) {
		/* Packets may overlap, but the reply's actual_length is the sum of theirs and may
		 * not exceed the buffer: more than the buffer in total cannot be answered. */
		uint64_t total = 0;
		for (uint32_t i = 0; i < u->num_iso; i++)
			total += u->iso[i].length;
		if (u->num_iso == 0 || total > u->len)
			return UW_URB_EINVAL;
	}
	return 0;
}

static void start_urb(struct session *s, struct urb_ctx *ctx)
{
	uw_urb *u = &ctx->u;
	if (u->xfer == UW_XFER_ISO && u->num_iso) {
		for (uint32_t i = 0; i < u->num_iso; i++) {
			uw_iso_desc d;
			uw_iso_desc_decode(ctx->iso_wire + (size_t)i * UW_ISO_DESC_LEN, &d);
			u->iso[i] = (uw_iso_pkt){d.offset, d.length, 0, 0};
		}
	}
	if (u->xfer == UW_XFER_CONTROL)
		uw_setup_decode(ctx->setup_raw, &u->setup);
	struct urb_ctx **bucket = &s->hash[u->seqnum % HASH_SIZE];
	ctx->hnext = *bucket;
	*bucket = ctx;
	s->inflight++;
	int32_t st = submit_check(ctx);
	if (!st && u->xfer == UW_XFER_CONTROL && u->setup.bm_request_type == 0x00 &&
	    u->setup.b_request == 0x05) {
		/* SET_ADDRESS: the client's own business (Linux vhci never sends it). */
		st = 1;
	}
	if (st) {
		uw_urb_complete(u, st == 1 ? 0 : st, 0);
		return;
	}
	uw_dev *d = s->exp->dev;
	dev_call(s->srv, d->ops->submit(d, u));
}

static void rx_setup(struct session *s, struct urb_ctx *ctx, size_t data_len, size_t iso_len)
{
	s->rx = ctx;
	s->rx_dst[0] = ctx->u.buf;
	s->rx_len[0] = data_len;
	s->rx_dst[1] = ctx->iso_wire;
	s->rx_len[1] = iso_len;
	s->rx_part = data_len ? 0 : 1;
	s->rx_off = 0;
}

/* All payload of s->rx is in: validate ISO descriptors and submit. Returns false if the
 * session ended. */
static bool rx_complete(struct session *s)
{
	struct urb_ctx *ctx = s->rx;
	s->rx = NULL;
	if (ctx->u.num_iso) {
		uw_dec d;
		if (uw_iso_check_cmd(ctx->iso_wire, ctx->u.num_iso, (int32_t)ctx->u.len,
		                     UW_URB_HDR_LEN + (ctx->u.dir == UW_DIR_OUT ? ctx->u.len : 0),
		                     &d) != UW_DEC_DONE) {
			char msg[256];
			s->srv->stats.protocol_errors++;
			LOG(s->srv, UW_LOG_WARN, "%s: bad CMD_SUBMIT seqnum %u, closing: %s",
			    s->peer, ctx->u.seqnum, uw_dec_format(&d, msg, sizeof msg));
			ctx_free(s, ctx);
			session_end(s, NULL);
			return false;
		}
	}
	start_urb(s, ctx);
	return s->st != S_DEAD;
}

/* Feeds buffered bytes into the payload being received. Returns bytes consumed. */
static size_t rx_feed(struct session *s, const uint8_t *p, size_t n)
{
	size_t used = 0;
	while (s->rx && used < n) {
		size_t want = s->rx_len[s->rx_part] - s->rx_off;
		size_t k = n - used < want ? n - used : want;
		memcpy(s->rx_dst[s->rx_part] + s->rx_off, p + used, k);
		used += k;
		s->rx_off += k;
		if (s->rx_off == s->rx_len[s->rx_part]) {
			if (s->rx_part == 0 && s->rx_len[1]) {
				s->rx_part = 1;
				s->rx_off = 0;
			} else if (!rx_complete(s)) {
				break;
			}
		}
	}
	return used;
}

static void protocol_error(struct session *s, const char *what, const uw_dec *d)
{
	char msg[256];
	s->srv->stats.protocol_errors++;
	LOG(s->srv, UW_LOG_WARN, "%s: %s, closing: %s", s->peer, what,
	    uw_dec_format(d, msg, sizeof msg));
	session_end(s, NULL);
}

/* One URB-phase header at p (48 bytes present). Returns false to stop processing. */
static bool handle_urb_hdr(struct session *s, const uint8_t *p, size_t n, size_t *used)
{
	uw_urb_hdr h;
	int xfer;
	size_t data_len, iso_len;
	uw_dec d;
	enum uw_dec_status st =
	    uw_cmd_hdr_decode(p, n, ep_type_cb, s, &h, &xfer, &data_len, &iso_len, &d);
	if (st == UW_DEC_MORE)
		return false;
	if (st == UW_DEC_ERROR) {
		protocol_error(s, "bad URB header", &d);
		return false;
	}
	if (h.devid != s->devid) {
		d = (uw_dec){.status = UW_DEC_ERROR,
		             .err = UW_E_PROTO,
		             .off = 8,
		             .what = "usbip_header.devid: not the imported device's",
		             .value = h.devid};
		protocol_error(s, "bad URB header", &d);
		return false;
	}
	if (h.command == UW_CMD_UNLINK) {
		if (s->small >= MAX_SMALL_REPLIES) {
			s->paused = true; /* replies are not being read: stop reading too */
			return false;
		}
		*used = UW_URB_HDR_LEN;
		struct urb_ctx *t = hash_find(s, h.u.unlink.seqnum);
		if (t && !t->unlinking) {
			t->unlinking = true;
			t->unlink_seq = h.seqnum;
			dev_call(s->srv, s->exp->dev->ops->cancel(s->exp->dev, &t->u));
		} else if (t && t->nextra < MAX_EXTRA_UNLINKS) {
			t->extra_unlinks[t->nextra++] = h.seqnum; /* answered after the target */
		} else if (t) {
			d = (uw_dec){.status = UW_DEC_ERROR,
			             .err = UW_E_LIMIT,
			             .off = 20,
			             .what = "CMD_UNLINK.unlink_seqnum: unlinked more than 5 times",
			             .value = h.u.unlink.seqnum};
			protocol_error(s, "bad CMD_UNLINK", &d);
			return false;
		} else {
			/* Unknown or already answered: nothing to cancel. Its RET_SUBMIT, if any,
			 * is ahead of this on the ordered queue. */
			queue_ret_unlink(s, h.seqnum, 0);
		}
		return true;
	}
	if (hash_find(s, h.seqnum)) {
		d = (uw_dec){.status = UW_DEC_ERROR,
		             .err = UW_E_PROTO,
		             .off = 4,
		             .what = "CMD_SUBMIT.seqnum: already in flight",
		             .value = h.seqnum};
		protocol_error(s, "bad CMD_SUBMIT", &d);
		return false;
	}
	size_t len = (size_t)h.u.submit.transfer_buffer_length;
	/* Buffers count until their replies are written, whether or not the URB is still in the
	 * device: a client that stops reading replies stops being read. One URB larger than the
	 * whole budget still goes through when nothing else is held, so nothing can wedge. */
	if (s->inflight >= s->srv->cfg.max_urbs ||
	    (s->mem > 0 && s->mem + len > s->srv->cfg.max_bytes)) {
		s->paused = true; /* backpressure: leave it in rbuf until room is freed */
		return false;
	}
	struct urb_ctx *ctx = calloc(1, sizeof *ctx);
	uint32_t np = xfer == UW_XFER_ISO ? (uint32_t)h.u.submit.number_of_packets : 0;
	if (ctx && len)
		ctx->u.buf = buf_get(s->srv, len);
	if (ctx && np) {
		ctx->u.iso = calloc(np, sizeof *ctx->u.iso);
		ctx->iso_wire = malloc((size_t)np * UW_ISO_DESC_LEN);
	}
	if (!ctx || (len && !ctx->u.buf) || (np && (!ctx->u.iso || !ctx->iso_wire))) {
		if (ctx) {
			buf_put(s->srv, ctx->u.buf, len);
			free(ctx->u.iso);
			free(ctx->iso_wire);
			free(ctx);
		}
		session_end(s, "out of memory");
		return false;
	}
	ctx->s = s;
	/* Everything this URB holds until its reply is written, the context included. */
	ctx->mem = sizeof *ctx + len + (size_t)np * (sizeof(uw_iso_pkt) + UW_ISO_DESC_LEN);
	s->mem += ctx->mem;
	ctx->req_np = h.u.submit.number_of_packets;
	uw_urb *u = &ctx->u;
	u->seqnum = h.seqnum;
	u->ep = (uint8_t)h.ep;
	u->dir = (uint8_t)h.direction;
	u->xfer = (uint8_t)xfer;
	u->flags = h.u.submit.transfer_flags;
	u->len = (uint32_t)len;
	u->start_frame = h.u.submit.start_frame;
	u->interval = h.u.submit.interval;
	u->num_iso = np;
	u->done = urb_done;
	u->owner = ctx;
	memcpy(ctx->setup_raw, h.u.submit.setup, UW_SETUP_LEN);
	*used = UW_URB_HDR_LEN;
	if (data_len + iso_len) {
		rx_setup(s, ctx, data_len, iso_len);
		return true;
	}
	s->rx = ctx;
	return rx_complete(s);
}

/* ---- Op phase ------------------------------------------------------------------------------ */

static struct export *find_export(uw_server *srv, const char *busid)
{
	for (size_t i = 0; i < srv->nexports; i++)
		if (!srv->exports[i].removed && strcmp(srv->exports[i].dev->info.busid, busid) == 0)
			return &srv->exports[i];
	return NULL;
}

static struct export *find_export_dev(uw_server *srv, const uw_dev *d)
{
	for (size_t i = 0; i < srv->nexports; i++)
		if (srv->exports[i].dev == d)
			return &srv->exports[i];
	return NULL;
}

static void reply_devlist(struct session *s)
{
	uw_server *srv = s->srv;
	size_t total = UW_OP_REP_DEVLIST_HDR;
	uint32_t n = 0;
	for (size_t i = 0; i < srv->nexports; i++) {
		struct export *e = &srv->exports[i];
		if (e->owner || e->gone)
			continue; /* like usbipd: imported devices are not listed */
		total += uw_devlist_entry_len(e->dev->info.num_interfaces);
		n++;
	}
	uint8_t *buf = malloc(total);
	struct out_item *it = buf ? calloc(1, sizeof *it) : NULL;
	if (!it) {
		free(buf);
		session_end(s, "out of memory");
		return;
	}
	size_t pos = (size_t)uw_op_rep_devlist_hdr_encode(buf, total, n);
	for (size_t i = 0; i < srv->nexports; i++) {
		struct export *e = &srv->exports[i];
		if (e->owner || e->gone)
			continue;
		int k =
		    uw_devlist_entry_encode(buf + pos, total - pos, &e->dev->info, e->dev->ifaces);
		if (k > 0)
			pos += (size_t)k;
	}
	it->heap = buf;
	it->parts = it->inline_parts;
	it->parts[0] = (struct iovec){buf, pos};
	it->nparts = 1;
	queue_item(s, it);
	s->close_after_flush = true;
	LOG(srv, UW_LOG_INFO, "%s: listed %u device%s", s->peer, n, n == 1 ? "" : "s");
}

static uint32_t import_status(int rc)
{
	switch (rc) {
	case UW_E_BUSY:
		return UW_ST_DEV_BUSY;
	case UW_E_DEVERR:
		return UW_ST_DEV_ERR;
	case UW_E_NODEV:
		return UW_ST_NODEV;
	default:
		return UW_ST_NA;
	}
}

static void reply_import(struct session *s, const char *busid)
{
	uw_server *srv = s->srv;
	struct export *e = find_export(srv, busid);
	uint32_t status = UW_ST_OK;
	int rc = UW_OK;
	/* The reply's memory first: after a successful import nothing may fail. */
	struct out_item *it = calloc(1, sizeof *it);
	uint8_t *rep = malloc(UW_OP_REP_IMPORT_LEN);
	if (!it || !rep) {
		free(it);
		free(rep);
		session_end(s, "out of memory");
		return;
	}
	if (!e || e->gone)
		status = UW_ST_NODEV;
	else if (e->owner)
		status = UW_ST_DEV_BUSY;
	else if (e->dev->ops->import && (rc = e->dev->ops->import(e->dev)) != UW_OK)
		status = import_status(rc);
	int n = uw_op_rep_import_encode(rep, UW_OP_REP_IMPORT_LEN, status,
	                                status ? NULL : &e->dev->info);
	if (n <= 0) { /* a record the backend filled wrongly: refuse rather than lie */
		if (status == UW_ST_OK && e->dev->ops->release)
			e->dev->ops->release(e->dev);
		status = UW_ST_NA;
		n = uw_op_rep_import_encode(rep, UW_OP_REP_IMPORT_LEN, status, NULL);
	}
	it->heap = rep;
	it->parts = it->inline_parts;
	it->parts[0] = (struct iovec){rep, (size_t)n};
	it->nparts = 1;
	queue_item(s, it);
	if (status != UW_ST_OK) {
		char shown[UW_ESCAPE_SIZE(UW_BUSID_SIZE)]; /* the client's bytes, never raw */
		LOG(srv, UW_LOG_INFO, "%s: import of %s refused: %s%s%s", s->peer,
		    uw_escape(shown, sizeof shown, busid, UW_BUSID_SIZE), uw_op_status_str(status),
		    rc ? ": " : "", rc ? uw_strerror(rc) : "");
		s->close_after_flush = true;
		return;
	}
	e->owner = s;
	s->exp = e;
	s->devid = e->dev->info.busnum << 16 | e->dev->info.devnum;
	s->st = S_URB;
	uw_loop_timer_cancel(srv->cfg.loop, s->hs_timer);
	s->hs_timer = NULL;
	LOG(srv, UW_LOG_INFO, "%s: imported %s (%s)", s->peer, busid, e->dev->spec);
	changed(srv);
	if (s->watch)
		s->watch(s->watch_arg, UW_CONN_IMPORTED);
}

/* ---- Reading ------------------------------------------------------------------------------- */

static void process_rbuf(struct session *s)
{
	size_t pos = 0;
	while (pos < s->rlen && !s->paused && !s->close_after_flush) {
		if (s->st == S_OP) {
			uw_op_request req;
			uw_dec d;
			enum uw_dec_status st =
			    uw_op_request_decode(s->rbuf + pos, s->rlen - pos, &req, &d);
			if (st == UW_DEC_MORE)
				break;
			if (st == UW_DEC_ERROR) {
				protocol_error(s, "bad op request", &d);
				return;
			}
			pos += d.len;
			if (req.code == UW_OP_REQ_DEVLIST)
				reply_devlist(s);
			else
				reply_import(s, req.busid);
			if (s->st == S_DEAD)
				return;
			continue;
		}
		if (s->st != S_URB)
			break;
		if (s->rx) {
			pos += rx_feed(s, s->rbuf + pos, s->rlen - pos);
			if (s->st == S_DEAD)
				return;
			continue;
		}
		size_t used = 0;
		bool go = handle_urb_hdr(s, s->rbuf + pos, s->rlen - pos, &used);
		if (s->st == S_DEAD)
			return;
		pos += used;
		if (!go)
			break;
	}
	if (pos) {
		memmove(s->rbuf, s->rbuf + pos, s->rlen - pos);
		s->rlen -= pos;
	}
}

static void session_read(struct session *s)
{
	for (int round = 0; round < READ_ROUNDS; round++) {
		if (s->st != S_OP && s->st != S_URB)
			return;
		if (s->paused || s->close_after_flush)
			return;
		ssize_t k;
		if (s->rx && s->rlen == 0) {
			/* Large OUT payloads go straight from the socket into the URB buffer. */
			size_t want = s->rx_len[s->rx_part] - s->rx_off;
			k = recv(s->fd, s->rx_dst[s->rx_part] + s->rx_off, want, 0);
			if (k > 0) {
				s->rx_off += (size_t)k;
				if (s->rx_off == s->rx_len[s->rx_part]) {
					if (s->rx_part == 0 && s->rx_len[1]) {
						s->rx_part = 1;
						s->rx_off = 0;
					} else {
						rx_complete(s);
					}
				}
				continue;
			}
		} else {
			if (s->rlen == RBUF_SIZE)
				return; /* a paused parse holds a full buffer */
			k = recv(s->fd, s->rbuf + s->rlen, RBUF_SIZE - s->rlen, 0);
			if (k > 0) {
				if (s->fb_timer) {
					uw_loop_timer_cancel(s->srv->cfg.loop, s->fb_timer);
					s->fb_timer = NULL;
				}
				s->rlen += (size_t)k;
				process_rbuf(s);
				continue;
			}
		}
		if (k == 0) {
			session_end(s, s->st == S_OP && s->rlen
			                   ? "client closed the connection mid-request"
			                   : "client closed the connection");
			return;
		}
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		char why[128];
		snprintf(why, sizeof why, "receive error: %s", strerror(errno));
		session_end(s, why);
		return;
	}
}

/* ---- Writing ------------------------------------------------------------------------------- */

static void session_flush(struct session *s)
{
	while (s->oq_head && s->fd >= 0) {
		struct iovec iov[MAX_IOV];
		int n = 0;
		size_t skip = s->oq_off;
		for (struct out_item *it = s->oq_head; it && n < MAX_IOV - 1; it = it->next) {
			/* One item: its header, then its payload pieces. */
			size_t hl = it->hdr_len;
			if (hl) {
				if (skip >= hl) {
					skip -= hl;
				} else {
					iov[n++] = (struct iovec){it->hdr + skip, hl - skip};
					skip = 0;
				}
			}
			unsigned i = 0;
			for (; i < it->nparts && n < MAX_IOV; i++) {
				size_t pl = it->parts[i].iov_len;
				if (skip >= pl) {
					skip -= pl;
					continue;
				}
				iov[n++] = (struct iovec){(uint8_t *)it->parts[i].iov_base + skip,
				                          pl - skip};
				skip = 0;
			}
			if (i < it->nparts)
				break;
		}
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t k = sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				s->want_out = true;
				session_watch(s);
				return;
			}
			if (errno == EINTR)
				continue;
			char why[128];
			snprintf(why, sizeof why, "send error: %s", strerror(errno));
			session_end(s, why);
			return;
		}
		size_t done = s->oq_off + (size_t)k;
		while (s->oq_head) {
			struct out_item *it = s->oq_head;
			size_t total = it->hdr_len;
			for (unsigned i = 0; i < it->nparts; i++)
				total += it->parts[i].iov_len;
			if (done < total)
				break;
			done -= total;
			s->oq_head = it->next;
			if (!s->oq_head)
				s->oq_tail = NULL;
			item_free(s, it);
		}
		s->oq_off = done;
	}
	if (s->fd < 0)
		return;
	if (s->want_out) {
		s->want_out = false;
		session_watch(s);
	}
	if (s->close_after_flush && !s->oq_head)
		session_end(s, NULL);
}

/* ---- Lifecycle ----------------------------------------------------------------------------- */

/* Ends the connection. why == NULL: the reason was logged already (or the op phase ended as
 * the protocol says). URBs still in the backend are cancelled; the device is released when the
 * last one finishes. Never frees s (session_leave() does, at the top of the stack). */
static void session_end(struct session *s, const char *why)
{
	if (s->st == S_DEAD)
		return;
	uw_server *srv = s->srv;
	if (why && s->exp)
		LOG(srv, UW_LOG_INFO, "%s: session on %s ended: %s (%llu URBs)", s->peer,
		    s->exp->dev->info.busid, why, (unsigned long long)s->urbs);
	else if (why)
		LOG(srv, UW_LOG_INFO, "%s: connection ended: %s", s->peer, why);
	s->st = S_DEAD;
	uw_loop_timer_cancel(srv->cfg.loop, s->hs_timer);
	s->hs_timer = NULL;
	uw_loop_timer_cancel(srv->cfg.loop, s->fb_timer);
	s->fb_timer = NULL;
	uw_loop_del_fd(srv->cfg.loop, s->fd);
	close(s->fd);
	s->fd = -1;
	while (s->oq_head) {
		struct out_item *it = s->oq_head;
		s->oq_head = it->next;
		item_free(s, it);
	}
	s->oq_tail = NULL;
	if (s->rx) {
		ctx_free(s, s->rx);
		s->rx = NULL;
	}
	/* Cancel what the backend holds; cancel may finish URBs (and edit the hash) at once. */
	if (s->inflight) {
		/* By seqnum, not pointer: a cancel may finish (free) other URBs at once. */
		size_t n = 0;
		uint32_t *seqs = malloc(s->inflight * sizeof *seqs);
		for (unsigned b = 0; seqs && b < HASH_SIZE; b++)
			for (struct urb_ctx *c = s->hash[b]; c; c = c->hnext)
				seqs[n++] = c->u.seqnum;
		for (size_t i = 0; i < n; i++) {
			struct urb_ctx *c = hash_find(s, seqs[i]);
			if (c)
				dev_call(srv, s->exp->dev->ops->cancel(s->exp->dev, &c->u));
		}
		free(seqs);
	}
	if (s->inflight == 0)
		release_device(s);
}

/* Frees s if it is dead and nothing refers to it any more. Call only at the top of the stack. */
static void session_leave(struct session *s)
{
	if (s->st != S_DEAD || s->depth > 0 || s->inflight > 0)
		return;
	pthread_mutex_lock(&s->cq_lock);
	bool posted = s->cq_posted;
	pthread_mutex_unlock(&s->cq_lock);
	if (posted)
		return;
	uw_server *srv = s->srv;
	if (s->prev)
		s->prev->next = s->next;
	else
		srv->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	srv->stats.sessions--;
	peer_unlink(srv, s);
	if (s->watch)
		s->watch(s->watch_arg, UW_CONN_CLOSED);
	pthread_mutex_destroy(&s->cq_lock);
	free(s->rbuf);
	free(s);
	if (!srv->sessions)
		pool_drain(srv);
	accept_resume(srv); /* a descriptor and a session slot are free again */
	check_shutdown_done(srv);
}

static void on_session_io(void *arg, uint32_t events)
{
	struct session *s = arg;
	session_enter(s);
	/* A paused reader would never see the end of the stream: a hang-up ends the session
	 * (URBs in the device are cancelled; nobody is left to read their replies). */
	if ((events & (UW_EV_HUP | UW_EV_ERR)) && (s->paused || s->close_after_flush))
		session_end(s, "client closed the connection");
	/* Draining (device gone) reads nothing: a half-close is noted once rather than reported
	 * again and again (level-triggered) until the last URB finishes; its replies still go
	 * out. A reset or full hang-up leaves nobody to read them. */
	if (s->st == S_DRAIN && (events & (UW_EV_HUP | UW_EV_ERR))) {
		if (events & UW_EV_ERR) {
			session_end(s, "client closed the connection");
		} else if (!s->peer_hup) {
			s->peer_hup = true;
			session_watch(s);
		}
	}
	if ((events & UW_EV_OUT) && s->st != S_DEAD)
		session_flush(s);
	if ((events & (UW_EV_IN | UW_EV_ERR)) && s->st != S_DEAD)
		session_read(s);
	if (s->st != S_DEAD)
		session_kick(s); /* written replies may have freed room to read again */
	session_exit(s);
}

static void on_handshake_timeout(void *arg)
{
	struct session *s = arg;
	s->hs_timer = NULL;
	session_enter(s);
	session_end(s, "no complete request within the handshake deadline");
	session_exit(s);
}

static void on_first_byte_timeout(void *arg)
{
	struct session *s = arg;
	s->fb_timer = NULL;
	s->depth++;
	char why[96];
	snprintf(why, sizeof why, "nothing received within the first byte deadline (%u ms)",
	         s->srv->cfg.first_byte_ms);
	session_end(s, why);
	s->depth--;
	session_leave(s);
}

struct listener {
	uw_server *srv;
	int fd;
};

/* ---- Connection limits ------------------------------------------------------------------- */

static unsigned interval_s(const uw_server *srv)
{
	return (srv->cfg.log_interval_ms + 999) / 1000;
}

static struct peer **peer_slot(uw_server *srv, const uint8_t *addr, size_t alen)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < alen; i++)
		h = (h ^ addr[i]) * 16777619u;
	struct peer **pp = &srv->peers[h % PEER_HASH];
	while (*pp && ((*pp)->alen != alen || memcmp((*pp)->addr, addr, alen)))
		pp = &(*pp)->next;
	return pp;
}

/* Frees p once nothing needs it: no session, no refusal count pending, nobody holding it. */
static void peer_put(uw_server *srv, struct peer *p)
{
	if (p->sessions || p->quiet || p->hold)
		return;
	struct peer **pp = peer_slot(srv, p->addr, p->alen);
	*pp = p->next;
	free(p);
}

static void peer_unlink(uw_server *srv, struct session *s)
{
	struct peer *p = s->ip;
	if (!p)
		return;
	if (s->pprev)
		s->pprev->pnext = s->pnext;
	else
		p->list = s->pnext;
	if (s->pnext)
		s->pnext->pprev = s->pprev;
	s->ip = NULL;
	p->sessions--;
	peer_put(srv, p);
}

/* Once per log interval while refusals are being counted: one line per kind with the count. */
static void rl_tick(void *arg)
{
	uw_server *srv = arg;
	srv->rl_timer = NULL;
	bool again = false;
	unsigned secs = interval_s(srv);
	for (unsigned b = 0; b < PEER_HASH; b++) {
		for (struct peer *p = srv->peers[b], *next; p; p = next) {
			next = p->next;
			if (!p->quiet)
				continue;
			if (p->refused) {
				LOG(srv, UW_LOG_WARN,
				    "refused %llu connections from %s over the per-peer limit (%u) "
				    "in the last %u s",
				    (unsigned long long)p->refused, p->name, srv->cfg.max_per_peer,
				    secs);
				p->refused = 0;
				again = true;
			} else {
				p->quiet = false;
				peer_put(srv, p);
			}
		}
	}
	if (srv->full_quiet) {
		if (srv->full_refused) {
			LOG(srv, UW_LOG_WARN,
			    "refused %llu connections over the session limit (%u) in the last %u s",
			    (unsigned long long)srv->full_refused, srv->cfg.max_sessions, secs);
			srv->full_refused = 0;
			again = true;
		} else {
			srv->full_quiet = false;
		}
	}
	if (srv->accept_quiet) {
		if (srv->accept_fails) {
			LOG(srv, UW_LOG_WARN,
			    "accept: out of file descriptors %llu more times in the last %u s",
			    (unsigned long long)srv->accept_fails, secs);
			srv->accept_fails = 0;
			again = true;
		} else {
			srv->accept_quiet = false;
		}
	}
	if (again)
		srv->rl_timer =
		    uw_loop_timer_add(srv->cfg.loop, srv->cfg.log_interval_ms, rl_tick, srv);
}

/* Starts counting instead of logging, for one interval. */
static void rl_start(uw_server *srv)
{
	if (!srv->rl_timer)
		srv->rl_timer =
		    uw_loop_timer_add(srv->cfg.loop, srv->cfg.log_interval_ms, rl_tick, srv);
}

/* p is at its limit: lets p's sessions whose client has already hung up end now (their hang-up
 * may still be waiting in this loop round), so that a client that closes and reconnects at once
 * is not refused for its own closed connections. */
static void peer_reap(struct peer *p)
{
	struct pollfd pf[64];
	struct session *ss[64];
	nfds_t n = 0;
	for (struct session *s = p->list; s && n < 64; s = s->pnext) {
		if (s->fd < 0)
			continue;
		pf[n] = (struct pollfd){s->fd, POLLIN | POLLRDHUP, 0};
		ss[n++] = s;
	}
	if (n == 0 || poll(pf, n, 0) <= 0)
		return;
	for (nfds_t i = 0; i < n; i++) {
		short ev = pf[i].revents;
		if (!(ev & (POLLRDHUP | POLLHUP | POLLERR)))
			continue;
		/* Handled as the loop would: pending requests first, then the end of stream. Only
		 * ss[i] itself can be freed by this. */
		on_session_io(ss[i], UW_EV_IN | UW_EV_HUP | (ev & POLLERR ? UW_EV_ERR : 0u));
	}
}

/* Closes fd at once, logging the first refusal of a kind per interval and counting the rest. */
static int refuse(uw_server *srv, int fd, const char *peer, struct peer *p)
{
	srv->stats.refused++;
	close(fd);
	if (p && p->quiet) {
		p->refused++;
	} else if (p) {
		LOG(srv, UW_LOG_WARN,
		    "%s: refused: %u connections from %s already, the per-peer limit (further "
		    "refusals are counted and logged once per %u s)",
		    peer, p->sessions, p->name, interval_s(srv));
		p->quiet = true;
		rl_start(srv);
	} else if (srv->full_quiet) {
		srv->full_refused++;
	} else {
		LOG(srv, UW_LOG_WARN,
		    "%s: refused: %u connections open, the session limit (further refusals are "
		    "counted and logged once per %u s)",
		    peer, srv->stats.sessions, interval_s(srv));
		srv->full_quiet = true;
		rl_start(srv);
	}
	return UW_E_LIMIT;
}

static int add_conn(uw_server *srv, int fd, uw_conn_watch watch, void *watch_arg)
{
	char peer[64], ipname[48];
	uint8_t addr[16];
	uw_net_peer_name(fd, peer, sizeof peer);
	if (srv->shutting_down) {
		LOG(srv, UW_LOG_WARN, "%s: refused: shutting down", peer);
		srv->stats.refused++;
		close(fd);
		return UW_E_LIMIT;
	}
	/* Connections this server dialed itself (reverse connections, watched) are not inbound
	 * load: the per-peer cap does not apply to them. */
	size_t alen = watch ? 0 : uw_net_peer_addr(fd, addr, ipname, sizeof ipname);
	struct peer *p = NULL;
	if (alen) {
		struct peer **pp = peer_slot(srv, addr, alen);
		p = *pp;
		if (!p) {
			p = calloc(1, sizeof *p);
			if (!p) {
				close(fd);
				LOG(srv, UW_LOG_ERR, "%s: refused: out of memory", peer);
				return UW_E_NOMEM;
			}
			memcpy(p->addr, addr, alen);
			p->alen = alen;
			snprintf(p->name, sizeof p->name, "%s", ipname);
			*pp = p;
		}
		if (p->sessions >= srv->cfg.max_per_peer) {
			p->hold = true;
			peer_reap(p);
			p->hold = false;
		}
		if (p->sessions >= srv->cfg.max_per_peer)
			return refuse(srv, fd, peer, p);
	}
	if (srv->stats.sessions >= srv->cfg.max_sessions) {
		if (p)
			peer_put(srv, p);
		return refuse(srv, fd, peer, NULL);
	}
	uw_net_tune(fd);
	struct session *s = calloc(1, sizeof *s);
	uint8_t *rbuf = malloc(RBUF_SIZE);
	if (!s || !rbuf) {
		free(s);
		free(rbuf);
		close(fd);
		if (p)
			peer_put(srv, p);
		LOG(srv, UW_LOG_ERR, "%s: refused: out of memory", peer);
		return UW_E_NOMEM;
	}
	s->srv = srv;
	s->fd = fd;
	s->rbuf = rbuf;
	s->st = S_OP;
	memcpy(s->peer, peer, sizeof s->peer);
	pthread_mutex_init(&s->cq_lock, NULL);
	s->cq_task.fn = cq_drain;
	s->cq_task.arg = s;
	s->started = uw_loop_now_ms(srv->cfg.loop);
	int rc = uw_loop_add_fd(srv->cfg.loop, fd, UW_EV_IN, on_session_io, s);
	if (rc != UW_OK) {
		pthread_mutex_destroy(&s->cq_lock);
		free(rbuf);
		free(s);
		close(fd);
		if (p)
			peer_put(srv, p);
		return rc;
	}
	/* A connection this server dialed (reverse, watched) waits for its client's request as
	 * long as the client likes: that is what it is for, and keepalive notices a dead peer.
	 * The deadlines guard against inbound connections that hold a slot. */
	if (!watch) {
		s->hs_timer = uw_loop_timer_add(srv->cfg.loop, srv->cfg.handshake_ms,
		                                on_handshake_timeout, s);
		if (srv->cfg.first_byte_ms < srv->cfg.handshake_ms)
			s->fb_timer = uw_loop_timer_add(srv->cfg.loop, srv->cfg.first_byte_ms,
			                                on_first_byte_timeout, s);
	}
	s->watch = watch;
	s->watch_arg = watch_arg;
	s->next = srv->sessions;
	if (srv->sessions)
		srv->sessions->prev = s;
	srv->sessions = s;
	if (p) {
		s->ip = p;
		s->pnext = p->list;
		if (p->list)
			p->list->pprev = s;
		p->list = s;
		p->sessions++;
	}
	srv->stats.sessions++;
	srv->stats.accepted++;
	LOG(srv, UW_LOG_DEBUG, "%s: connected", peer);
	return UW_OK;
}

int uw_server_add_connection(uw_server *srv, int fd)
{
	return add_conn(srv, fd, NULL, NULL);
}

int uw_server_add_connection_watched(uw_server *srv, int fd, uw_conn_watch fn, void *arg)
{
	return add_conn(srv, fd, fn, arg);
}

static void accept_watch(uw_server *srv, uint32_t ev)
{
	for (size_t i = 0; i < srv->nl; i++)
		uw_loop_mod_fd(srv->cfg.loop, srv->lfds[i], ev);
}

static void accept_retry(void *arg)
{
	uw_server *srv = arg;
	srv->accept_timer = NULL;
	accept_resume(srv);
}

/* accept() found no descriptor for the next connection, which stays in the backlog: polling the
 * (level-triggered) listener again would report it again at once, so stop watching it until a
 * session ends or ACCEPT_RETRY_MS have passed. */
static void accept_pause(uw_server *srv, int err)
{
	accept_watch(srv, 0);
	srv->accept_paused = true;
	if (!srv->accept_timer)
		srv->accept_timer =
		    uw_loop_timer_add(srv->cfg.loop, ACCEPT_RETRY_MS, accept_retry, srv);
	if (srv->accept_quiet) {
		srv->accept_fails++;
		return;
	}
	struct rlimit rl = {0, 0};
	getrlimit(RLIMIT_NOFILE, &rl);
	char lim[32] = "unlimited";
	if (rl.rlim_cur != RLIM_INFINITY)
		snprintf(lim, sizeof lim, "%llu", (unsigned long long)rl.rlim_cur);
	LOG(srv, UW_LOG_WARN,
	    "accept: %s (%u connections open, open-file limit %s): not accepting until a "
	    "connection closes; raise the limit (ulimit -n) or lower --max-sessions",
	    strerror(err), srv->stats.sessions, lim);
	srv->accept_quiet = true;
	rl_start(srv);
}

static void accept_resume(uw_server *srv)
{
	if (!srv->accept_paused)
		return;
	srv->accept_paused = false;
	uw_loop_timer_cancel(srv->cfg.loop, srv->accept_timer);
	srv->accept_timer = NULL;
	accept_watch(srv, UW_EV_IN);
}

static void accept_on(uw_server *srv, int lfd)
{
	for (int i = 0; i < 64 && !srv->accept_paused; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			int err = errno;
			if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
				accept_pause(srv, err);
			else if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR &&
			         err != ECONNABORTED)
				LOG(srv, UW_LOG_WARN, "accept: %s", strerror(err));
			return;
		}
		uw_server_add_connection(srv, fd);
	}
}

/* ---- Devices ------------------------------------------------------------------------------- */

static void dev_notify(uw_dev *d, int event)
{
	uw_server *srv = d->owner;
	struct export *e = find_export_dev(srv, d);
	if (!e || event != UW_DEV_EV_GONE)
		return;
	e->gone = true;
	changed(srv);
	LOG(srv, UW_LOG_INFO, "%s: device removed (%s)", d->info.busid, d->spec);
	struct session *s = e->owner;
	if (s && s->st == S_URB) {
		/* Outstanding URBs finish with errors from the backend; their replies go out,
		 * then the connection closes. */
		session_enter(s);
		s->st = S_DRAIN;
		if (s->inflight == 0)
			s->close_after_flush = true;
		session_kick(s);
		session_exit(s);
	}
}

uw_server *uw_server_new(const struct uw_server_config *cfg)
{
	uw_server *srv = calloc(1, sizeof *srv);
	if (!srv)
		return NULL;
	srv->cfg = *cfg;
	if (!srv->cfg.handshake_ms)
		srv->cfg.handshake_ms = 10000;
	if (!srv->cfg.max_urbs)
		srv->cfg.max_urbs = 1024;
	if (!srv->cfg.max_bytes)
		srv->cfg.max_bytes = 64u << 20;
	if (!srv->cfg.max_sessions)
		srv->cfg.max_sessions = 256;
	if (!srv->cfg.max_per_peer)
		srv->cfg.max_per_peer = 16;
	if (!srv->cfg.first_byte_ms)
		srv->cfg.first_byte_ms = 3000;
	if (!srv->cfg.log_interval_ms)
		srv->cfg.log_interval_ms = 10000;
	return srv;
}

int uw_server_add_device(uw_server *srv, uw_dev *d)
{
	if (find_export(srv, d->info.busid))
		return UW_E_EXISTS;
	struct export *e = realloc(srv->exports, (srv->nexports + 1) * sizeof *e);
	if (!e)
		return UW_E_NOMEM;
	srv->exports = e;
	/* Sessions point at exports: none can exist before all devices are added at start-up,
	 * but keep owners valid anyway by fixing them up after the move. */
	for (size_t i = 0; i < srv->nexports; i++)
		if (e[i].owner)
			e[i].owner->exp = &e[i];
	e[srv->nexports++] = (struct export){.dev = d};
	d->owner = srv;
	d->notify = dev_notify;
	changed(srv);
	return UW_OK;
}

/* Removes e from the array (sessions keep pointing at the right slots) and destroys its device. */
static void export_drop(uw_server *srv, struct export *e)
{
	uw_dev *d = e->dev;
	size_t i = (size_t)(e - srv->exports);
	memmove(&srv->exports[i], &srv->exports[i + 1],
	        (srv->nexports - i - 1) * sizeof *srv->exports);
	srv->nexports--;
	for (size_t k = 0; k < srv->nexports; k++)
		if (srv->exports[k].owner)
			srv->exports[k].owner->exp = &srv->exports[k];
	d->ops->destroy(d);
}

int uw_server_remove_device(uw_server *srv, uw_dev *d)
{
	struct export *e = find_export_dev(srv, d);
	if (!e || e->removed)
		return UW_E_NOTFOUND;
	if (!e->gone)
		dev_notify(d, UW_DEV_EV_GONE); /* ends its session, if any, after its replies */
	e->removed = true;
	if (!e->owner)
		export_drop(srv, e);
	changed(srv);
	return UW_OK;
}

static void on_listener(void *arg, uint32_t events)
{
	struct listener *l = arg;
	(void)events;
	accept_on(l->srv, l->fd);
}

int uw_server_add_listener(uw_server *srv, int fd)
{
	if (srv->nl >= sizeof srv->lfds / sizeof *srv->lfds)
		return UW_E_LIMIT;
	struct listener *l = malloc(sizeof *l);
	if (!l)
		return UW_E_NOMEM;
	l->srv = srv;
	l->fd = fd;
	int rc = uw_loop_add_fd(srv->cfg.loop, fd, UW_EV_IN, on_listener, l);
	if (rc != UW_OK) {
		free(l);
		return rc;
	}
	srv->lfds[srv->nl++] = fd;
	/* The listener record lives as long as the server; it is found again by fd at free. */
	srv->listeners[srv->nl - 1] = l;
	return UW_OK;
}

static void shutdown_timeout(void *arg)
{
	uw_server *srv = arg;
	srv->sd_timer = NULL;
	LOG(srv, UW_LOG_WARN, "shutdown: gave up waiting for devices to finish");
	uw_task_fn done = srv->sd_done;
	srv->sd_done = NULL;
	if (done)
		done(srv->sd_arg);
}

static void check_shutdown_done(uw_server *srv)
{
	if (!srv->shutting_down || !srv->sd_done || srv->sessions)
		return;
	for (size_t i = 0; i < srv->nexports; i++)
		if (srv->exports[i].owner)
			return;
	uw_loop_timer_cancel(srv->cfg.loop, srv->sd_timer);
	srv->sd_timer = NULL;
	uw_task_fn done = srv->sd_done;
	srv->sd_done = NULL;
	done(srv->sd_arg);
}

static void close_listeners(uw_server *srv)
{
	for (size_t i = 0; i < srv->nl; i++) {
		uw_loop_del_fd(srv->cfg.loop, srv->lfds[i]);
		close(srv->lfds[i]);
		free(srv->listeners[i]);
	}
	srv->nl = 0;
	srv->accept_paused = false;
	uw_loop_timer_cancel(srv->cfg.loop, srv->accept_timer);
	srv->accept_timer = NULL;
}

void uw_server_shutdown(uw_server *srv, unsigned timeout_ms, uw_task_fn done, void *arg)
{
	srv->shutting_down = true;
	srv->sd_done = done;
	srv->sd_arg = arg;
	close_listeners(srv);
	srv->sd_timer = uw_loop_timer_add(srv->cfg.loop, timeout_ms, shutdown_timeout, srv);
	struct session *s = srv->sessions;
	while (s) {
		struct session *next = s->next;
		session_enter(s);
		session_end(s, "server shutting down");
		session_exit(s); /* may free s and call done */
		s = next;
	}
	check_shutdown_done(srv);
}

void uw_server_free(uw_server *srv)
{
	if (!srv)
		return;
	uw_loop_cancel_task(srv->cfg.loop, &srv->change_task);
	close_listeners(srv);
	uw_loop_timer_cancel(srv->cfg.loop, srv->sd_timer);
	/* Devices first: destroying a backend completes the URBs it still holds, and with
	 * `freeing` set those are simply freed. Then what the sessions still hold. */
	srv->freeing = true;
	for (size_t i = 0; i < srv->nexports; i++)
		srv->exports[i].dev->ops->destroy(srv->exports[i].dev);
	while (srv->sessions) {
		struct session *s = srv->sessions;
		srv->sessions = s->next;
		uw_loop_cancel_task(srv->cfg.loop, &s->cq_task);
		for (struct urb_ctx *c = s->cq_head, *next; c; c = next) {
			next = c->cqnext;
			hash_del(s, c);
			ctx_free(s, c);
		}
		for (unsigned b = 0; b < HASH_SIZE; b++) {
			while (s->hash[b]) {
				struct urb_ctx *c = s->hash[b];
				s->hash[b] = c->hnext;
				ctx_free(s, c);
			}
		}
		while (s->oq_head) {
			struct out_item *it = s->oq_head;
			s->oq_head = it->next;
			item_free(s, it);
		}
		if (s->rx)
			ctx_free(s, s->rx);
		if (s->fd >= 0) {
			uw_loop_del_fd(srv->cfg.loop, s->fd);
			close(s->fd);
		}
		uw_loop_timer_cancel(srv->cfg.loop, s->hs_timer);
		uw_loop_timer_cancel(srv->cfg.loop, s->fb_timer);
		pthread_mutex_destroy(&s->cq_lock);
		free(s->rbuf);
		free(s);
	}
	pool_drain(srv);
	uw_loop_timer_cancel(srv->cfg.loop, srv->rl_timer);
	for (unsigned b = 0; b < PEER_HASH; b++) {
		while (srv->peers[b]) {
			struct peer *p = srv->peers[b];
			srv->peers[b] = p->next;
			free(p);
		}
	}
	free(srv->exports);
	free(srv);
}

void uw_server_get_stats(const uw_server *srv, struct uw_server_stats *out)
{
	*out = srv->stats;
	unsigned n = 0, d = 0;
	for (size_t i = 0; i < srv->nexports; i++) {
		/* A device that left while imported is neither exported nor held any more, even
		 * while its session drains. */
		if (srv->exports[i].gone || srv->exports[i].removed)
			continue;
		d++;
		if (srv->exports[i].owner)
			n++;
	}
	out->imported = n;
	out->devices = d;
}
