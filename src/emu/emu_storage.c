/* SPDX-License-Identifier: MIT */
/*
 * emu_storage.c - "emu:storage,file=IMG[,ro]": a USB mass-storage device, Bulk-Only Transport
 * (USB Mass Storage Class Bulk-Only Transport 1.0) in front of one SCSI LUN (uw_scsi.h).
 *
 * Threads: the BOT state machine runs on the loop thread only. Medium I/O (pread, pwrite,
 * fdatasync) runs on one worker thread per device, straight between the file and the URB's
 * buffer. BOT is strictly serial, so there is at most one job: the loop thread hands it over under
 * the mutex, the worker does it and signals an eventfd the loop watches, and the loop thread then
 * completes the URB and moves on. The URB a job uses stays owned by this file until the job is
 * back, so cancel(), configure(0) and destroy only mark it; it is completed exactly once, when
 * the job returns (destroy joins the worker first).
 *
 * The state machine never completes a URB in the middle of a step: a step updates the state,
 * puts the URBs it is done with on done_q, and pump() completes them between steps. Whatever a
 * completion leads to (the host submits again, cancels) finds the state settled; and a job
 * starts only when none is out (asserted).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uw_emu.h"
#include "uw_scsi.h"

/* Identity. 1d6b:0104 is the Linux Foundation "Multifunction Composite Gadget" id that Linux
 * gadgets use by default; hosts apply no quirks to it. */
#define VENDOR_ID  0x1d6b
#define PRODUCT_ID 0x0104
#define EP_IN      0x81
#define EP_OUT     0x02
#define MAX_PACKET 512
#define IFACE_NUM  0

/* BOT 1.0 facts. */
#define CBW_LEN         31u
#define CSW_LEN         13u
#define CBW_SIGNATURE   0x43425355u /* "USBC" little-endian */
#define CSW_SIGNATURE   0x53425355u /* "USBS" */
#define REQ_BOMS_RESET  0xff        /* Bulk-Only Mass Storage Reset, class, interface, OUT */
#define REQ_GET_MAX_LUN 0xfe        /* class, interface, IN */
enum { CSW_PASSED = 0, CSW_FAILED = 1, CSW_PHASE_ERROR = 2 };

enum bot_state {
	BOT_IDLE,     /* waiting for a CBW on bulk OUT */
	BOT_DATA_IN,  /* data stage to the host */
	BOT_DATA_OUT, /* data stage from the host */
	BOT_STATUS,   /* the CSW is ready for the next bulk IN URB */
	BOT_STALLED,  /* invalid CBW: both bulk endpoints stall until Reset Recovery */
};

enum job_kind {
	JOB_READ,  /* medium -> URB buffer (data in) */
	JOB_WRITE, /* URB buffer -> medium (data out) */
	JOB_SYNC,  /* the command's fdatasync (SYNCHRONIZE CACHE, FUA) */
	JOB_FLUSH, /* housekeeping fdatasync at session end */
};

/* What the worker does; guarded by mu while job_queued. */
struct job {
	enum job_kind kind;
	uint8_t *buf;
	uint64_t off;
	size_t n;
	int result; /* 0 or a negative errno */
};

struct storage {
	uw_emu *emu;
	uw_scsi_lun *lun;
	int fd;
	uw_logger log;
	char spec[128];

	/* ---- BOT state: loop thread only ---- */
	enum bot_state state;
	uw_emu_urbq in_q, out_q; /* bulk URBs waiting for their turn */
	uw_emu_urbq done_q;      /* finished by a step; completed by pump() between steps */
	bool pumping;
	uint32_t tag;
	uint32_t h_len;   /* dCBWDataTransferLength: what the host expects */
	bool h_in;        /* the host expects data in */
	uint32_t h_done;  /* bytes of the data stage moved on the bus */
	uint64_t xfer;    /* bytes of the data stage the device moves (<= h_len) */
	uint64_t d_done;  /* of those, moved so far (the residue is h_len - d_done) */
	bool phase_error; /* the host's and the device's data stages disagree */
	int io_err;       /* first medium error of the command */
	uint8_t csw_status;
	uw_scsi_cmd cmd;
	bool dirty;        /* written since the last successful fdatasync */
	bool flush_wanted; /* fdatasync when the worker is free */

	/* The job out with the worker (busy), seen from the loop thread. */
	bool busy;
	enum job_kind job_kind;
	uw_urb *job_u;        /* the URB whose buffer the job uses, or NULL */
	uint32_t job_n;       /* bytes the job moves */
	uint32_t job_take;    /* JOB_WRITE: bytes of job_u that belong to the data stage */
	int32_t job_override; /* non-zero: complete job_u with this status (cancel, shutdown) */
	bool job_detached;    /* the BOT state moved on (reset, configure): only complete job_u */

	/* ---- Worker hand-over ---- */
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job job;  /* mu */
	bool job_queued; /* mu: for the worker */
	bool job_done;   /* mu: for the loop */
	bool quit;       /* mu */
	int evfd;        /* worker -> loop: a job is done */
	bool evfd_added;
	uw_loop *loop;
};

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint32_t min32(uint64_t a, uint64_t b)
{
	return (uint32_t)(a < b ? a : b);
}

/* ---- Worker ------------------------------------------------------------------------------ */

/* Runs one job: medium I/O straight between the file and the buffer. */
static int run_job(struct storage *s, const struct job *j)
{
	switch (j->kind) {
	case JOB_READ:
		return uw_scsi_pread(s->lun, j->off, j->buf, j->n);
	case JOB_WRITE:
		return uw_scsi_pwrite(s->lun, j->off, j->buf, j->n);
	case JOB_SYNC:
	case JOB_FLUSH:
		return uw_scsi_sync(s->lun);
	}
	return 0;
}

/* uw_emu_storage_inline_io(): jobs run on the loop thread inside start_job(); their results
 * still come back through the event descriptor, a loop round later, as the worker's do. */
static bool inline_io;

void uw_emu_storage_inline_io(bool on)
{
	inline_io = on;
}

static void *worker(void *arg)
{
	struct storage *s = arg;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		while (!s->job_queued && !s->quit)
			pthread_cond_wait(&s->cv, &s->mu);
		if (!s->job_queued)
			break; /* quit, and nothing left to do */
		struct job j = s->job;
		s->job_queued = false;
		pthread_mutex_unlock(&s->mu);

		int r = run_job(s, &j);

		pthread_mutex_lock(&s->mu);
		s->job.result = r;
		s->job_done = true;
		uint64_t one = 1;
		/* Cannot fail but on a full counter, which still wakes the loop. */
		ssize_t w = write(s->evfd, &one, sizeof one);
		(void)w;
	}
	pthread_mutex_unlock(&s->mu);
	return NULL;
}

static void start_job(struct storage *s, enum job_kind kind, uw_urb *u, uint8_t *buf, uint64_t off,
                      size_t n)
{
	/* BOT is serial: a second job would take the first one's place and its URB be lost. */
	assert(!s->busy && "a job started while one is out with the worker");
	s->busy = true;
	s->job_kind = kind;
	s->job_u = u;
	s->job_n = (uint32_t)n;
	s->job_override = 0;
	s->job_detached = false;
	pthread_mutex_lock(&s->mu);
	s->job = (struct job){.kind = kind, .buf = buf, .off = off, .n = n};
	if (inline_io) {
		s->job.result = run_job(s, &s->job);
		s->job_done = true;
		uint64_t one = 1;
		ssize_t w = write(s->evfd, &one, sizeof one);
		(void)w;
	} else {
		s->job_queued = true;
		pthread_cond_signal(&s->cv);
	}
	pthread_mutex_unlock(&s->mu);
}

/* The state machine no longer expects the job out (reset, unconfigure); its URB, if any, is
 * completed with status when it comes back (0: with what it did). */
static void detach_job(struct storage *s, int32_t status)
{
	if (!s->busy)
		return;
	s->job_detached = true;
	if (status && !s->job_override)
		s->job_override = status;
}

/* ---- BOT ------------------------------------------------------------------------------- */

static void pump(struct storage *s);

/* u is done (status and actual as uw_emu_complete() would set them); completed by pump(). */
static void complete_later(struct storage *s, uw_urb *u, int32_t status, uint32_t actual)
{
	if (status == 0 && u->dir == UW_DIR_IN && actual < u->len &&
	    (u->flags & UW_URB_SHORT_NOT_OK))
		status = UW_URB_EREMOTEIO;
	u->status = status;
	u->actual = actual;
	uw_emu_urbq_push(&s->done_q, u);
}

static void flush_later(struct storage *s, uw_emu_urbq *q, int32_t status)
{
	uw_urb *u;
	while ((u = uw_emu_urbq_pop(q)) != NULL)
		complete_later(s, u, status, 0);
}

/* Completes what the steps finished, in order. A completion may submit or cancel (re-entering
 * this file): the state is settled, and a re-entered pump() returns at once. */
static void complete_done(struct storage *s)
{
	uw_urb *u;
	while ((u = uw_emu_urbq_pop(&s->done_q)) != NULL)
		u->done(u);
}

/* Back to waiting for a CBW. Queued URBs stay queued, as on a real bus. */
static void bot_idle(struct storage *s)
{
	s->state = BOT_IDLE;
	s->h_len = s->h_done = 0;
	s->xfer = s->d_done = 0;
	s->phase_error = false;
	s->io_err = 0;
}

static void stall_both(struct storage *s)
{
	s->state = BOT_STALLED;
	uw_emu_set_halt(s->emu, EP_IN);
	uw_emu_set_halt(s->emu, EP_OUT);
	flush_later(s, &s->in_q, UW_URB_EPIPE);
	flush_later(s, &s->out_q, UW_URB_EPIPE);
}

/* The CSW is decided: status from the command, phase error, or the medium. */
static void set_status(struct storage *s, int err)
{
	if (s->phase_error) {
		s->csw_status = CSW_PHASE_ERROR;
	} else {
		if (err && !s->io_err)
			s->io_err = err;
		if (s->io_err)
			uw_logf(&s->log, UW_LOG_WARN, "%s: medium error on opcode 0x%02x: %s",
			        s->spec, s->cmd.opcode, strerror(-s->io_err));
		int st = uw_scsi_end(s->lun, &s->cmd, s->io_err);
		s->csw_status = st == UW_SCSI_GOOD ? CSW_PASSED : CSW_FAILED;
	}
	s->state = BOT_STATUS;
}

/* The data stage is over (or there was none). */
static void finish(struct storage *s)
{
	if (!s->phase_error && !s->io_err && s->cmd.sync && s->cmd.status == UW_SCSI_GOOD) {
		start_job(s, JOB_SYNC, NULL, NULL, 0, 0);
		return;
	}
	set_status(s, 0);
}

/* Only the CBWCB bytes are copied out of u before it is completed. */
static void start_command(struct storage *s, const uint8_t *cdb, uint8_t cblen, uint8_t lun)
{
	if (lun != 0) {
		/* Get Max LUN says 0; a CBW for another LUN fails without a data stage. */
		memset(&s->cmd, 0, sizeof s->cmd);
		s->cmd.status = UW_SCSI_CHECK_CONDITION;
		uw_scsi_set_sense(s->lun, UW_SK_ILLEGAL_REQUEST, UW_ASC_LUN_NOT_SUPPORTED);
	} else {
		uw_scsi_begin(s->lun, cdb, cblen, &s->cmd);
	}
	unsigned ddir = s->cmd.dir;
	unsigned hdir = s->h_in ? UW_SCSI_DIR_IN : UW_SCSI_DIR_OUT;

	if (s->h_len == 0) {
		/* Case 1 (Hn = Dn), or cases 2 and 3 (Hn < Di, Hn < Do): phase error. */
		s->phase_error = ddir != UW_SCSI_DIR_NONE;
		finish(s);
		return;
	}
	if (ddir != UW_SCSI_DIR_NONE && ddir != hdir) {
		/* Cases 8 (Hi <> Do) and 10 (Ho <> Di): stall the host's data pipe, phase error.
		 * The host clears the halt and reads the CSW. */
		s->phase_error = true;
		uw_emu_set_halt(s->emu, s->h_in ? EP_IN : EP_OUT);
		flush_later(s, s->h_in ? &s->in_q : &s->out_q, UW_URB_EPIPE);
		finish(s);
		return;
	}
	/* Cases 4 and 9 (nothing to move: a zero-length packet or discarded data), 5 and 11 (the
	 * device has less: short), 6 and 12 (equal), 7 and 13 (the device has more: move what the
	 * host allows, then phase error). */
	s->xfer = s->cmd.len < s->h_len ? s->cmd.len : s->h_len;
	s->phase_error = s->cmd.len > s->h_len;
	s->state = s->h_in ? BOT_DATA_IN : BOT_DATA_OUT;
}

static void take_cbw(struct storage *s)
{
	uw_urb *u = uw_emu_urbq_pop(&s->out_q);
	const uint8_t *b = u->buf;
	uint8_t cdb[UW_SCSI_CDB_MAX];

	/* Valid: 31 bytes with the signature. Meaningful (the rest we check): CB length 1..16.
	 * Anything else stalls both pipes until Reset Recovery (BOT 6.6.1). */
	if (u->len != CBW_LEN || !b || le32(b) != CBW_SIGNATURE || (b[14] & 0x1f) < 1 ||
	    (b[14] & 0x1f) > UW_SCSI_CDB_MAX) {
		uw_logf(&s->log, UW_LOG_DEBUG, "%s: invalid CBW (%u bytes): stalling", s->spec,
		        u->len);
		complete_later(s, u, 0, u->len); /* the device took the packet, then stalls */
		stall_both(s);
		return;
	}
	bot_idle(s);
	s->tag = le32(b + 4);
	s->h_len = le32(b + 8);
	s->h_in = (b[12] & 0x80) != 0;
	uint8_t lun = b[13] & 0x0f, cblen = b[14] & 0x1f;
	memcpy(cdb, b + 15, cblen);
	complete_later(s, u, 0, CBW_LEN);
	start_command(s, cdb, cblen, lun);
}

/* u got n bytes of the data-in stage (err: the medium failed instead). */
static void in_sent(struct storage *s, uw_urb *u, uint32_t n, int err, int32_t override)
{
	s->h_done += n;
	s->d_done += n;
	if (err && !s->io_err)
		s->io_err = err;
	bool short_xfer = n < u->len;
	bool end = short_xfer || s->h_done == s->h_len;
	bool sno = (u->flags & UW_URB_SHORT_NOT_OK) != 0;
	complete_later(s, u, override, n);
	if (!end)
		return;
	if (short_xfer && sno) {
		/* A short packet with SHORT_NOT_OK stops the host's queue, and the host unlinks the
		 * rest of a scatter-gather transfer. Do not put the CSW in one of those: end the
		 * queued SHORT_NOT_OK URBs now, with nothing, as the host controller would. */
		uw_emu_urbq pending = s->in_q;
		s->in_q = (uw_emu_urbq){0};
		uw_urb *x;
		while ((x = uw_emu_urbq_pop(&pending)) != NULL) {
			if (x->flags & UW_URB_SHORT_NOT_OK)
				complete_later(s, x, 0, 0);
			else
				uw_emu_urbq_push(&s->in_q, x);
		}
	}
	finish(s);
}

static void data_in_step(struct storage *s)
{
	uw_urb *u = uw_emu_urbq_pop(&s->in_q);
	uint32_t room = min32(u->len, s->h_len - s->h_done);
	uint32_t n = min32(room, s->xfer - s->d_done);
	if (n && s->cmd.data == UW_SCSI_DATA_MEDIUM) {
		start_job(s, JOB_READ, u, u->buf, s->cmd.offset + s->d_done, n);
		return;
	}
	if (n)
		memcpy(u->buf, s->cmd.resp + s->d_done, n);
	in_sent(s, u, n, 0, 0);
}

/* take bytes of u belong to the data-out stage; n of them were processed (written or used). */
static void out_received(struct storage *s, uw_urb *u, uint32_t take, uint32_t n, int err,
                         int32_t override)
{
	s->h_done += take;
	s->d_done += n;
	if (err && !s->io_err)
		s->io_err = err;
	complete_later(s, u, override, take);
	if (s->h_done == s->h_len)
		finish(s);
}

static void data_out_step(struct storage *s)
{
	uw_urb *u = uw_emu_urbq_pop(&s->out_q);
	uint32_t take = min32(u->len, s->h_len - s->h_done);
	uint32_t n = min32(take, s->xfer - s->d_done);
	if (n && s->cmd.data == UW_SCSI_DATA_MEDIUM && !s->io_err) {
		s->job_take = take;
		start_job(s, JOB_WRITE, u, u->buf, s->cmd.offset + s->d_done, n);
		return;
	}
	/* Discarded: MODE SELECT parameters, what the host sends beyond what the device wants
	 * (case 9, 11), and the rest of a write after a medium error. */
	out_received(s, u, take, n, 0, 0);
}

static void send_csw(struct storage *s)
{
	uw_urb *u = uw_emu_urbq_pop(&s->in_q);
	uint8_t csw[CSW_LEN];
	put_le32(csw, CSW_SIGNATURE);
	put_le32(csw + 4, s->tag);
	put_le32(csw + 8, (uint32_t)(s->h_len - s->d_done));
	csw[12] = s->csw_status;
	bot_idle(s);
	uint32_t n = min32(u->len, CSW_LEN);
	if (n)
		memcpy(u->buf, csw, n);
	complete_later(s, u, n < CSW_LEN ? UW_URB_EOVERFLOW : 0, n);
}

/* A job is back from the worker (loop thread). */
static void job_finished(struct storage *s, int r)
{
	uw_urb *u = s->job_u;
	int32_t override = s->job_override;
	enum job_kind kind = s->job_kind;
	s->busy = false;
	s->job_u = NULL;

	if (kind == JOB_WRITE && r == 0)
		s->dirty = true;
	if ((kind == JOB_SYNC || kind == JOB_FLUSH) && r == 0)
		s->dirty = false;
	if (kind == JOB_FLUSH && r != 0)
		uw_logf(&s->log, UW_LOG_WARN, "%s: flushing the image: %s", s->spec, strerror(-r));

	if (s->job_detached) {
		if (u) {
			uint32_t n = kind == JOB_READ ? (r ? 0 : min32(u->len, s->job_n)) : u->len;
			complete_later(s, u, override, override ? 0 : n);
		}
		return;
	}
	switch (kind) {
	case JOB_READ:
		in_sent(s, u, r ? 0 : s->job_n, r, override);
		break;
	case JOB_WRITE:
		out_received(s, u, s->job_take, s->job_n, r, override);
		break;
	case JOB_SYNC:
		set_status(s, r);
		break;
	case JOB_FLUSH:
		break;
	}
}

static void on_event(void *arg, uint32_t events)
{
	struct storage *s = arg;
	uint64_t v;
	ssize_t rd = read(s->evfd, &v, sizeof v);
	(void)rd;
	(void)events;
	pthread_mutex_lock(&s->mu);
	bool done = s->job_done;
	int r = s->job.result;
	s->job_done = false;
	pthread_mutex_unlock(&s->mu);
	if (!done || !s->busy)
		return;
	job_finished(s, r);
	pump(s);
}

/* One step of the state machine; false when it has to wait for a URB or the worker. */
static bool step(struct storage *s)
{
	if (s->busy)
		return false;
	if (s->flush_wanted) {
		s->flush_wanted = false;
		start_job(s, JOB_FLUSH, NULL, NULL, 0, 0);
		return true;
	}
	switch (s->state) {
	case BOT_IDLE:
		if (!s->out_q.head)
			return false;
		take_cbw(s);
		return true;
	case BOT_DATA_IN:
		if (!s->in_q.head)
			return false;
		data_in_step(s);
		return true;
	case BOT_DATA_OUT:
		if (!s->out_q.head)
			return false;
		data_out_step(s);
		return true;
	case BOT_STATUS:
		if (!s->in_q.head)
			return false;
		send_csw(s);
		return true;
	case BOT_STALLED:
		return false;
	}
	return false;
}

/* Runs the state machine as far as it goes, completing finished URBs between steps.
 * Completions may re-enter (a done() callback that submits): the inner call returns at once and
 * the outer loop sees the new URB. */
static void pump(struct storage *s)
{
	if (s->pumping)
		return;
	s->pumping = true;
	for (;;) {
		while (step(s))
			;
		if (!s->done_q.head)
			break;
		complete_done(s);
	}
	s->pumping = false;
}

/* ---- Class callbacks ---------------------------------------------------------------------- */

static void bot_reset(struct storage *s)
{
	detach_job(s, 0);
	bot_idle(s);
}

static int st_control(uw_emu *e, uw_urb *u)
{
	struct storage *s = uw_emu_priv(e);
	const uw_setup *st = &u->setup;
	if (st->w_index != IFACE_NUM || st->w_value != 0)
		return UW_EMU_STALL;
	if (st->bm_request_type == 0x21 && st->b_request == REQ_BOMS_RESET && st->w_length == 0) {
		/* Reset Recovery, step 1: the endpoints stay halted until the host clears them. */
		uw_logf(&s->log, UW_LOG_DEBUG, "%s: bulk-only mass storage reset", s->spec);
		bot_reset(s);
		pump(s);
		return 0;
	}
	if (st->bm_request_type == 0xa1 && st->b_request == REQ_GET_MAX_LUN && st->w_length >= 1) {
		if (!u->buf || u->len < 1)
			return 0;
		u->buf[0] = 0; /* one LUN */
		return 1;
	}
	return UW_EMU_STALL;
}

static void st_transfer(uw_emu *e, uw_urb *u)
{
	struct storage *s = uw_emu_priv(e);
	if (u->ep == (EP_IN & 0x0f) && u->dir == UW_DIR_IN)
		uw_emu_urbq_push(&s->in_q, u);
	else if (u->ep == EP_OUT && u->dir == UW_DIR_OUT)
		uw_emu_urbq_push(&s->out_q, u);
	else {
		uw_urb_complete(u, UW_URB_EPIPE, 0);
		return;
	}
	pump(s);
}

static void st_cancel(uw_emu *e, uw_urb *u)
{
	struct storage *s = uw_emu_priv(e);
	if (uw_emu_urbq_remove(&s->in_q, u) || uw_emu_urbq_remove(&s->out_q, u)) {
		uw_urb_complete(u, UW_URB_ECONNRESET, 0);
		return;
	}
	if (s->busy && s->job_u == u && !s->job_override)
		s->job_override = UW_URB_ECONNRESET; /* completed when the worker is done with it */
	/* Otherwise it has completed already: nothing to do. */
}

/* Session end or SET_CONFIGURATION: everything held ends, the transport starts over. */
static void st_configure(uw_emu *e, uint8_t config)
{
	struct storage *s = uw_emu_priv(e);
	detach_job(s, UW_URB_ESHUTDOWN);
	flush_later(s, &s->in_q, UW_URB_ESHUTDOWN);
	flush_later(s, &s->out_q, UW_URB_ESHUTDOWN);
	bot_idle(s);
	if (config == 0 && s->dirty)
		s->flush_wanted = true;
	pump(s);
}

static void st_clear_halt(uw_emu *e, uint8_t ep_addr)
{
	struct storage *s = uw_emu_priv(e);
	if (s->state == BOT_STALLED) {
		/* Until the class reset, a cleared halt comes straight back (BOT 6.6.1). */
		uw_emu_set_halt(e, ep_addr);
		return;
	}
	pump(s);
}

static int st_import(uw_emu *e)
{
	struct storage *s = uw_emu_priv(e);
	uw_scsi_lun_reset(s->lun);
	bot_idle(s);
	return UW_OK;
}

static void st_release(uw_emu *e)
{
	struct storage *s = uw_emu_priv(e);
	uw_scsi_lun_reset(s->lun);
	/* configure(0) came first and asked for the flush already, unless it is under way. */
	if (s->dirty && !(s->busy && s->job_kind == JOB_FLUSH))
		s->flush_wanted = true;
	pump(s);
}

static void storage_free(struct storage *s)
{
	if (s->thread_started) {
		pthread_mutex_lock(&s->mu);
		s->quit = true;
		pthread_cond_signal(&s->cv);
		pthread_mutex_unlock(&s->mu);
		pthread_join(s->thread, NULL);
	}
	/* The worker is gone; a job it finished may still be waiting for the loop. */
	if (s->busy) {
		s->busy = false;
		if (s->job_u)
			uw_urb_complete(s->job_u,
			                s->job_override ? s->job_override : UW_URB_ESHUTDOWN, 0);
		s->job_u = NULL;
		if (s->job_kind == JOB_WRITE)
			s->dirty = true;
	}
	complete_done(s);
	uw_emu_urbq_flush(&s->in_q, UW_URB_ESHUTDOWN);
	uw_emu_urbq_flush(&s->out_q, UW_URB_ESHUTDOWN);
	if (s->dirty && s->lun) {
		int r = uw_scsi_sync(s->lun);
		if (r)
			uw_logf(&s->log, UW_LOG_WARN, "%s: flushing the image: %s", s->spec,
			        strerror(-r));
	}
	if (s->evfd_added)
		uw_loop_del_fd(s->loop, s->evfd);
	if (s->evfd >= 0)
		close(s->evfd);
	uw_scsi_lun_free(s->lun);
	if (s->fd >= 0)
		close(s->fd);
	if (s->thread_started) {
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
	}
	free(s);
}

static void st_destroy(uw_emu *e)
{
	storage_free(uw_emu_priv(e));
}

static const struct uw_emu_class storage_class = {
    .kind = "storage",
    .control = st_control,
    .transfer = st_transfer,
    .cancel = st_cancel,
    .configure = st_configure,
    .clear_halt = st_clear_halt,
    .import = st_import,
    .release = st_release,
    .destroy = st_destroy,
};

/* ---- Descriptors ------------------------------------------------------------------------ */

/* clang-format off */
static const uint8_t device_desc[18] = {
	18, 1,                              /* bLength, DEVICE */
	0x00, 0x02,                         /* bcdUSB 2.00 */
	0, 0, 0,                            /* class, subclass, protocol: per interface */
	64,                                 /* bMaxPacketSize0 */
	VENDOR_ID & 0xff, VENDOR_ID >> 8,   /* idVendor */
	PRODUCT_ID & 0xff, PRODUCT_ID >> 8, /* idProduct */
	0x00, 0x01,                         /* bcdDevice 1.00 */
	1, 2, 3,                            /* iManufacturer, iProduct, iSerialNumber */
	1,                                  /* bNumConfigurations */
};

static const uint8_t config_desc[32] = {
	9, 2, 32, 0,                        /* bLength, CONFIGURATION, wTotalLength */
	1, 1, 0,                            /* interfaces, bConfigurationValue, iConfiguration */
	0x80, 50,                           /* bus powered, 100 mA */
	/* Interface 0: mass storage, SCSI transparent command set, Bulk-Only Transport. */
	9, 4, IFACE_NUM, 0, 2, 0x08, 0x06, 0x50, 0,
	/* Bulk IN and bulk OUT, 512 bytes (high speed). */
	7, 5, EP_IN, 0x02, MAX_PACKET & 0xff, MAX_PACKET >> 8, 0,
	7, 5, EP_OUT, 0x02, MAX_PACKET & 0xff, MAX_PACKET >> 8, 0,
};
/* clang-format on */

/* ---- Constructor -------------------------------------------------------------------------- */

__attribute__((format(printf, 2, 3))) static int ctor_err(const uw_emu_args *a, const char *fmt,
                                                          ...);

static int ctor_err(const uw_emu_args *a, const char *fmt, ...)
{
	if (a->err && a->errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(a->err, a->errlen, fmt, ap);
		va_end(ap);
	}
	return UW_E_INVAL;
}

/* Opens the image. Returns the fd and its size in bytes, or -1 with a->err set. It is opened
 * once, at start-up, by the path the operator gave: a symbolic link is followed on purpose (disks
 * are named through /dev/disk/by-id links), and the type is checked on the opened descriptor. */
static int open_image(const uw_emu_args *a, const char *file, bool ro, uint64_t *size, int *why)
{
	/* O_NONBLOCK: opening a FIFO must not hang; it is refused below. */
	int fd = open(file, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		int e = errno;
		*why = e == ENOENT                 ? UW_E_NOTFOUND
		       : e == EACCES || e == EPERM ? UW_E_ACCESS
		                                   : UW_E_IO;
		if (!ro && (e == EACCES || e == EPERM || e == EROFS)) {
			ctor_err(a,
			         "emu:storage: cannot open \"%s\" for writing: %s (add ,ro to "
			         "export it read-only)",
			         file, strerror(e));
		} else {
			ctor_err(a, "emu:storage: cannot open \"%s\": %s", file, strerror(e));
		}
		return -1;
	}
	struct stat st;
	off_t end = -1;
	if (fstat(fd, &st) != 0) {
		*why = UW_E_IO;
		ctor_err(a, "emu:storage: cannot stat \"%s\": %s", file, strerror(errno));
		close(fd);
		return -1;
	}
	if (S_ISREG(st.st_mode))
		end = st.st_size;
	else if (S_ISBLK(st.st_mode))
		end = lseek(fd, 0, SEEK_END);
	if (end < 0) {
		*why = UW_E_INVAL;
		ctor_err(a, "emu:storage: \"%s\" is not a regular file or block device", file);
		close(fd);
		return -1;
	}
	if ((uint64_t)end < UW_SCSI_BLOCK) {
		*why = UW_E_INVAL;
		if (end == 0)
			ctor_err(a,
			         "emu:storage: \"%s\" is empty (a disk image needs at least %u "
			         "bytes)",
			         file, UW_SCSI_BLOCK);
		else
			ctor_err(a, "emu:storage: \"%s\" is too small (%lld bytes; at least %u)",
			         file, (long long)end, UW_SCSI_BLOCK);
		close(fd);
		return -1;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0)
		(void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	*size = (uint64_t)end;
	return fd;
}

int uw_emu_storage_new(const uw_emu_args *a, uw_dev **out)
{
	static const char *const allowed[] = {"file", "ro", NULL};
	int r = uw_emu_check_opts(a, allowed);
	if (r != UW_OK)
		return r;
	const char *file = uw_emu_opt(a, "file");
	const char *ro_opt = uw_emu_opt(a, "ro");
	if (!file || !file[0])
		return ctor_err(a,
		                "emu:storage: missing file=IMG (usage: emu:storage,file=IMG[,ro])");
	if (ro_opt && ro_opt[0])
		return ctor_err(a, "emu:storage: option \"ro\" takes no value");
	bool ro = ro_opt != NULL;
	if (!a->loop)
		return ctor_err(a, "emu:storage: needs an event loop for its I/O thread");

	struct storage *s = calloc(1, sizeof *s);
	if (!s) {
		ctor_err(a, "emu:storage: out of memory");
		return UW_E_NOMEM;
	}
	s->fd = -1;
	s->evfd = -1;
	s->loop = a->loop;
	if (a->log)
		s->log = *a->log;
	snprintf(s->spec, sizeof s->spec, "%s", a->spec ? a->spec : "emu:storage");

	uint64_t size = 0;
	int why = UW_E_IO;
	s->fd = open_image(a, file, ro, &size, &why);
	if (s->fd < 0) {
		storage_free(s);
		return why;
	}
	if (size % UW_SCSI_BLOCK)
		uw_logf(&s->log, UW_LOG_WARN,
		        "%s: \"%s\" is not a multiple of %u bytes; the last %u bytes are ignored",
		        s->spec, file, UW_SCSI_BLOCK, (unsigned)(size % UW_SCSI_BLOCK));

	char serial[17];
	uw_emu_serial(a->busid, a->spec, serial);
	uw_scsi_lun_cfg cfg = {
	    .fd = s->fd,
	    .blocks = size / UW_SCSI_BLOCK,
	    .read_only = ro,
	    .serial = serial,
	    .product = "Mass Storage",
	};
	r = uw_scsi_lun_new(&cfg, &s->lun);
	if (r != UW_OK) {
		storage_free(s);
		ctor_err(a, "emu:storage: %s", uw_strerror(r));
		return r;
	}

	s->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->evfd < 0) {
		ctor_err(a, "emu:storage: eventfd: %s", strerror(errno));
		storage_free(s);
		return UW_E_IO;
	}
	r = uw_loop_add_fd(a->loop, s->evfd, UW_EV_IN, on_event, s);
	if (r != UW_OK) {
		ctor_err(a, "emu:storage: cannot watch the worker: %s", uw_strerror(r));
		storage_free(s);
		return r;
	}
	s->evfd_added = true;

	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	/* The worker takes no signals: the program handles them on its loop thread. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int pr = pthread_create(&s->thread, NULL, worker, s);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pr != 0) {
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
		ctor_err(a, "emu:storage: cannot start the I/O thread: %s", strerror(pr));
		storage_free(s);
		return UW_E_NOMEM;
	}
	s->thread_started = true;

	static const char *const strings[] = {NULL, "usbwire", "usbwire Mass Storage", NULL};
	const char *strs[4] = {strings[0], strings[1], strings[2], serial};
	struct uw_emu_desc desc = {
	    .device = device_desc,
	    .config = config_desc,
	    .config_len = sizeof config_desc,
	    .strings = strs,
	    .num_strings = 4,
	    .speed = UW_SPEED_HIGH,
	};
	uw_dev *d;
	r = uw_emu_new(&storage_class, &desc, a->busid, a->busnum, a->devnum, a->spec, s, a->loop,
	               &d);
	if (r != UW_OK) {
		ctor_err(a, "emu:storage: %s", uw_strerror(r));
		storage_free(s);
		return r;
	}
	s->emu = uw_emu_from_dev(d);
	bot_idle(s);
	uw_logf(&s->log, UW_LOG_INFO, "%s: %llu blocks of %u bytes%s", s->spec,
	        (unsigned long long)(size / UW_SCSI_BLOCK), UW_SCSI_BLOCK, ro ? ", read-only" : "");
	*out = d;
	return UW_OK;
}
