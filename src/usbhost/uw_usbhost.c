/* SPDX-License-Identifier: MIT */
/*
 * uw_usbhost.c - real devices through libusb (uw_usbhost.h).
 *
 * Per URB: a libusb transfer straight on the URB's buffer (bulk, interrupt, and ISO whose
 * packets already sit where libusb puts them), or on a bounce buffer (control: SETUP + data; ISO
 * with gaps: gathered/scattered). Submission order is kept per device: once one URB has to wait
 * (usbfs memory full, or the device's share of it taken: uw_usbhost_device_budget), every later
 * one waits behind it. The special requests (docs/protocol.md, "Special requests") and the
 * reset after a session are blocking libusb calls: they run on the device's worker thread
 * (uw_hworker.h), one at a time, in order with the device's control transfers, and nothing else
 * of that device starts until the loop has their result; other devices and sessions go on. An
 * import of a device whose post-session reset still runs waits for it.
 *
 * Reentrancy: transfer callbacks run inside libusb_handle_events, where libusb holds its
 * open-devices lock: opening or closing a handle there would deadlock. URB completions may make
 * the server release or destroy a device at once, so release and final close are posted to the
 * loop and run at the top level. So is the start of URBs that wait behind a finished transfer:
 * a special request among them would run libusb's synchronous calls (SET_CONFIGURATION, reset)
 * inside its event callback (docs/architecture.md, "The server": no re-entry from a
 * completion).
 */
#include "uw_usbhost.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libusb.h>
#include <linux/netlink.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "uw_hworker.h"
#include "uw_usbdesc.h"
#include "uw_usbsys.h"

#define LOG(h, lvl, ...) uw_logf(&(h)->cfg.log, lvl, __VA_ARGS__)

#define URB_ENOMEM      (-12)
#define CTRL_MAX        4096u       /* libusb's limit on a control transfer's data stage */
#define CHUNK_START     (1u << 20)  /* bulk pieces when one URB alone exceeds usbfs memory */
#define CHUNK_MIN       (16u << 10) /* ... down to this */
#define NL_RCVBUF       (4u << 20)  /* uevent socket buffer */
#define CLOSE_WAIT_S    2           /* at teardown: how long cancelled transfers may take */
#define URB_OVERHEAD    512u        /* usbfs's bookkeeping per URB, roughly */
#define USBFS_MEMORY_MB "/sys/module/usbcore/parameters/usbfs_memory_mb"
#define REFUSALS_LOGGED 8 /* refused special requests logged per session */

enum {
	REQ_CLEAR_FEATURE = 1,
	REQ_SET_FEATURE = 3,
	REQ_SET_ADDRESS = 5,
	REQ_SET_CONFIGURATION = 9,
	REQ_SET_INTERFACE = 11
};

struct hdev;

/* One URB while the backend owns it. */
struct hx {
	struct hx *next, *prev; /* in hd->inflight or hd->waitq */
	struct hdev *hd;
	uw_urb *u; /* NULL once orphaned (device destroyed with the URB in flight) */
	struct libusb_transfer *t;
	uint8_t *bounce;
	bool unlinked;  /* cancel() from the server */
	bool in_libusb; /* submitted (else waiting in hd->waitq) */
	bool in_worker; /* a special request the device's worker is doing */
	bool chunked;   /* a bulk URB sent in pieces */
	bool special;   /* a special request waiting for earlier control transfers */
	uint32_t done;  /* chunked: bytes transferred so far */
	uint32_t chunk; /* chunked: piece size */
	uint64_t cost;  /* usbfs memory held while in libusb */
};

struct xlist {
	struct hx *head, *tail;
	unsigned n;
};

struct hdev {
	uw_dev dev; /* first: the server's uw_dev * is ours */
	uw_usbhost *h;
	struct hdev *next, *prev; /* h->devs or h->zombies */
	uw_usbsys_dev sys;        /* from sysfs at export / last refresh (owns sys.desc) */
	uw_device_desc dd;

	bool gone;              /* unplugged */
	bool open;              /* imported: handle open, interfaces claimed */
	bool release_pending;   /* release() called, teardown posted */
	uw_loop_task release_t; /* posted by release(); posting cannot fail */
	uw_loop_task final_t;   /* posted by destroy() */
	uw_loop_task pump_t;    /* posted by a completion with URBs waiting: pump_task() */
	bool pump_posted;
	bool destroyed; /* the owner is done with it; waiting for the final close */

	int fd;
	libusb_device_handle *uh;
	uint8_t config; /* active bConfigurationValue */
	uw_alt_sel alt;
	uw_ep_table eps;
	uint8_t claimed[32]; /* bit per interface number */

	struct xlist inflight;
	struct xlist waitq;
	bool blocked;           /* a chunked URB runs: nothing else may start */
	unsigned ctrl_inflight; /* control transfers in libusb */
	uint64_t mem;           /* usbfs memory our transfers hold (uw_usbhost_urb_cost) */
	uint64_t budget;        /* at most this (0: no limit), set at import */

	/* Blocking libusb calls run on the device's worker (uw_hworker.h), one at a time; while
	 * one runs, nothing else of the device starts (busy). */
	uw_hworker worker;
	bool worker_init;
	bool busy;
	struct spjob {
		uw_hjob j; /* first */
		struct hdev *hd;
		struct hx *x; /* the special request (x->u NULL once orphaned) */
		int kind;     /* enum special */
		uw_setup s;
		int r, r2; /* libusb results */
		struct claim_report {
			int detach_iface, detach_r, claim_iface, claim_r;
		} rep;
	} sp;
	struct reljob {
		uw_hjob j; /* first */
		struct hdev *hd;
		bool gone; /* when it started */
		int r;
		bool started;
	} rel;
	bool warned_nomem;
	unsigned refusals; /* special requests refused this session */
};

struct uw_usbhost {
	struct uw_usbhost_config cfg;
	char sysfs[256], devfs[256], usbfs_mb[256];
	libusb_context *ctx;
	int nlfd;
	uw_usb_rule *rules;
	size_t nrules;
	struct hdev *devs;
	struct hdev *zombies;
	int *fds; /* libusb's fds we watch */
	size_t nfds, capfds;
};

static void hd_finalize(struct hdev *hd);

/* ---- Lists ---------------------------------------------------------------------------------- */

static void xl_push(struct xlist *l, struct hx *x)
{
	x->next = NULL;
	x->prev = l->tail;
	if (l->tail)
		l->tail->next = x;
	else
		l->head = x;
	l->tail = x;
	l->n++;
}

static void xl_del(struct xlist *l, struct hx *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		l->head = x->next;
	if (x->next)
		x->next->prev = x->prev;
	else
		l->tail = x->prev;
	x->next = x->prev = NULL;
	l->n--;
}

static void dev_link(struct hdev **head, struct hdev *hd)
{
	hd->prev = NULL;
	hd->next = *head;
	if (*head)
		(*head)->prev = hd;
	*head = hd;
}

static void dev_unlink(struct hdev **head, struct hdev *hd)
{
	if (hd->prev)
		hd->prev->next = hd->next;
	else
		*head = hd->next;
	if (hd->next)
		hd->next->prev = hd->prev;
	hd->next = hd->prev = NULL;
}

/* Bitmaps of 256 interface numbers. */
static bool bit_get(const uint8_t m[32], unsigned i)
{
	return m[i / 8] & (1u << (i % 8));
}

static void bit_set(uint8_t m[32], unsigned i, bool on)
{
	if (on)
		m[i / 8] |= (uint8_t)(1u << (i % 8));
	else
		m[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

static bool claimed(const struct hdev *hd, unsigned i)
{
	return bit_get(hd->claimed, i);
}

static void set_claimed(struct hdev *hd, unsigned i, bool on)
{
	bit_set(hd->claimed, i, on);
}

/* ---- Translations ---------------------------------------------------------------------------- */

int32_t uw_usbhost_urb_status(int st, bool unlinked)
{
	switch (st) {
	case LIBUSB_TRANSFER_COMPLETED:
		return 0;
	case LIBUSB_TRANSFER_ERROR:
		return UW_URB_EPROTO;
	case LIBUSB_TRANSFER_TIMED_OUT:
		return UW_URB_ETIMEDOUT;
	case LIBUSB_TRANSFER_CANCELLED:
		/* Not the client's unlink: the device or its configuration went away. */
		return unlinked ? UW_URB_ECONNRESET : UW_URB_ESHUTDOWN;
	case LIBUSB_TRANSFER_STALL:
		return UW_URB_EPIPE;
	case LIBUSB_TRANSFER_NO_DEVICE:
		return UW_URB_ESHUTDOWN;
	case LIBUSB_TRANSFER_OVERFLOW:
		return UW_URB_EOVERFLOW;
	}
	return UW_URB_EPROTO;
}

int32_t uw_usbhost_iso_status(int st)
{
	switch (st) {
	case LIBUSB_TRANSFER_COMPLETED:
		return 0;
	case LIBUSB_TRANSFER_ERROR:
		return UW_URB_EPROTO;
	case LIBUSB_TRANSFER_STALL:
		return UW_URB_EPIPE;
	case LIBUSB_TRANSFER_OVERFLOW:
		return UW_URB_EOVERFLOW;
	case LIBUSB_TRANSFER_NO_DEVICE:
		return UW_URB_ESHUTDOWN;
	case LIBUSB_TRANSFER_TIMED_OUT:
	case LIBUSB_TRANSFER_CANCELLED:
		return UW_URB_EXDEV; /* not transferred */
	}
	return UW_URB_EPROTO;
}

int32_t uw_usbhost_error_status(int e)
{
	switch (e) {
	case LIBUSB_SUCCESS:
		return 0;
	case LIBUSB_ERROR_PIPE:
		return UW_URB_EPIPE;
	case LIBUSB_ERROR_NO_DEVICE:
	case LIBUSB_ERROR_NOT_FOUND:
		return UW_URB_ENODEV;
	case LIBUSB_ERROR_INVALID_PARAM:
		return UW_URB_EINVAL;
	case LIBUSB_ERROR_TIMEOUT:
		return UW_URB_ETIMEDOUT;
	case LIBUSB_ERROR_OVERFLOW:
		return UW_URB_EOVERFLOW;
	case LIBUSB_ERROR_NO_MEM:
		return URB_ENOMEM;
	case LIBUSB_ERROR_BUSY:
		return -16; /* -EBUSY */
	}
	return UW_URB_EIO;
}

static int uw_err_of_libusb(int e)
{
	switch (e) {
	case LIBUSB_ERROR_ACCESS:
		return UW_E_ACCESS;
	case LIBUSB_ERROR_NO_DEVICE:
	case LIBUSB_ERROR_NOT_FOUND:
		return UW_E_NODEV;
	case LIBUSB_ERROR_BUSY:
		return UW_E_BUSY;
	case LIBUSB_ERROR_NO_MEM:
		return UW_E_NOMEM;
	}
	return UW_E_IO;
}

int64_t uw_usbhost_iso_layout(const uw_iso_pkt *p, uint32_t n, uint32_t len, bool *contiguous)
{
	uint64_t sum = 0;
	bool contig = true;
	for (uint32_t i = 0; i < n; i++) {
		if (p[i].length > UW_MAX_ISO_PACKET_LEN || p[i].offset > len ||
		    p[i].length > len - p[i].offset)
			return -1;
		if (p[i].offset != sum)
			contig = false;
		sum += p[i].length;
	}
	*contiguous = contig;
	return (int64_t)sum;
}

void uw_usbhost_iso_gather(const uw_iso_pkt *p, uint32_t n, const uint8_t *buf, uint8_t *dst)
{
	size_t pos = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (p[i].length)
			memcpy(dst + pos, buf + p[i].offset, p[i].length);
		pos += p[i].length;
	}
}

void uw_usbhost_iso_scatter(const uw_iso_pkt *p, uint32_t n, const uint8_t *src, uint8_t *buf)
{
	size_t pos = 0;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t a = p[i].actual_length <= p[i].length ? p[i].actual_length : p[i].length;
		if (a)
			memmove(buf + p[i].offset, src + pos, a);
		pos += p[i].length;
	}
}

uint64_t uw_usbhost_device_budget(uint64_t usbfs_total)
{
	if (!usbfs_total)
		return 0;
	uint64_t b = usbfs_total / 4;
	return b < UW_USBHOST_MIN_BUDGET ? UW_USBHOST_MIN_BUDGET : b;
}

uint64_t uw_usbhost_urb_cost(uint32_t len)
{
	return (uint64_t)len + URB_OVERHEAD;
}

bool uw_usbhost_fits(uint64_t in_use, uint64_t cost, uint64_t budget)
{
	return !budget || (in_use <= budget && cost <= budget - in_use);
}

/* usbcore's usbfs_memory_mb in bytes (0: no limit); its default when unreadable. */
static uint64_t usbfs_total(const uw_usbhost *h)
{
	uint64_t mb = 16;
	FILE *f = fopen(h->usbfs_mb, "re");
	if (f) {
		unsigned long long v;
		if (fscanf(f, "%llu", &v) == 1 && v <= (1ull << 20))
			mb = v;
		fclose(f);
	}
	return mb << 20;
}

/* ---- libusb on the loop ------------------------------------------------------------------- */

static void on_libusb_fd(void *arg, uint32_t events)
{
	uw_usbhost *h = arg;
	struct timeval zero = {0, 0};
	(void)events;
	libusb_handle_events_timeout_completed(h->ctx, &zero, NULL);
}

static void watch_fd(uw_usbhost *h, int fd, short events)
{
	uint32_t ev = 0;
	if (events & POLLIN)
		ev |= UW_EV_IN;
	if (events & POLLOUT)
		ev |= UW_EV_OUT;
	for (size_t i = 0; i < h->nfds; i++) {
		if (h->fds[i] == fd) {
			uw_loop_mod_fd(h->cfg.loop, fd, ev);
			return;
		}
	}
	if (h->nfds == h->capfds) {
		size_t ncap = h->capfds ? h->capfds * 2 : 8;
		int *n = realloc(h->fds, ncap * sizeof *n);
		if (!n) {
			LOG(h, UW_LOG_ERR, "usb: out of memory watching a libusb fd");
			return;
		}
		h->fds = n;
		h->capfds = ncap;
	}
	if (uw_loop_add_fd(h->cfg.loop, fd, ev, on_libusb_fd, h) != UW_OK) {
		LOG(h, UW_LOG_ERR, "usb: cannot watch libusb fd %d", fd);
		return;
	}
	h->fds[h->nfds++] = fd;
}

static void LIBUSB_CALL fd_added(int fd, short events, void *user)
{
	watch_fd(user, fd, events);
}

static void LIBUSB_CALL fd_removed(int fd, void *user)
{
	uw_usbhost *h = user;
	for (size_t i = 0; i < h->nfds; i++) {
		if (h->fds[i] == fd) {
			uw_loop_del_fd(h->cfg.loop, fd);
			h->fds[i] = h->fds[--h->nfds];
			return;
		}
	}
}

/* ---- Claiming ------------------------------------------------------------------------------ */

/* Configuration value's raw descriptor, or NULL when 0/unknown. */
static const uint8_t *config_desc(const struct hdev *hd, uint8_t value, size_t *len)
{
	const uint8_t *cfg;
	if (!value || uw_usbsys_config(&hd->sys, value, &cfg, len) != UW_OK)
		return NULL;
	return cfg;
}

/* The active configuration's raw descriptor, or NULL when unconfigured/unknown. */
static const uint8_t *active_config(const struct hdev *hd, size_t *len)
{
	return config_desc(hd, hd->config, len);
}

/* Interface numbers of configuration value, as a bitmap. */
static void config_ifaces(const struct hdev *hd, uint8_t value, uint8_t bits[32])
{
	memset(bits, 0, 32);
	size_t len = 0;
	const uint8_t *cfg = config_desc(hd, value, &len);
	uw_config_iter it;
	uw_desc_item item;
	if (!cfg || uw_config_iter_init(&it, cfg, len, NULL) != UW_OK)
		return;
	while (uw_config_iter_next(&it, &item) == 1)
		if (item.kind == UW_DK_INTERFACE)
			bit_set(bits, item.u.intf.interface_number, true);
}

static void rebuild_eps(struct hdev *hd)
{
	size_t len = 0;
	const uint8_t *cfg = active_config(hd, &len);
	uw_ep_table t;
	if (uw_ep_table_build(cfg, len, &hd->alt, &hd->dd, &t, NULL) != UW_OK &&
	    uw_ep_table_build(NULL, 0, NULL, &hd->dd, &t, NULL) != UW_OK)
		memset(&t, 0, sizeof t);
	hd->eps = t;
}

static void release_all(struct hdev *hd)
{
	for (unsigned i = 0; i < 256; i++) {
		if (!claimed(hd, i))
			continue;
		libusb_release_interface(hd->uh, (int)i);
		set_claimed(hd, i, false);
	}
}

static void active_ifaces(const struct hdev *hd, uint8_t bits[32])
{
	config_ifaces(hd, hd->config, bits);
}

/* Detaches kernel drivers from, and claims, every interface of configuration value. Logs
 * nothing (it may run on the worker): what failed is in *rep, for claim_log(). */
static int claim_all(struct hdev *hd, uint8_t value, struct claim_report *rep)
{
	uint8_t bits[32];
	*rep = (struct claim_report){-1, 0, -1, 0};
	config_ifaces(hd, value, bits);
	for (unsigned i = 0; i < 256; i++) {
		if (!bit_get(bits, i))
			continue;
		int r = libusb_detach_kernel_driver(hd->uh, (int)i);
		if (r != LIBUSB_SUCCESS && r != LIBUSB_ERROR_NOT_FOUND && rep->detach_iface < 0) {
			rep->detach_iface = (int)i;
			rep->detach_r = r;
		}
		r = libusb_claim_interface(hd->uh, (int)i);
		if (r != LIBUSB_SUCCESS) {
			rep->claim_iface = (int)i;
			rep->claim_r = r;
			return r;
		}
		set_claimed(hd, i, true);
	}
	return LIBUSB_SUCCESS;
}

static void claim_log(struct hdev *hd, const struct claim_report *rep)
{
	if (rep->detach_iface >= 0)
		LOG(hd->h, UW_LOG_WARN, "%s: interface %d: cannot detach its kernel driver: %s",
		    hd->dev.info.busid, rep->detach_iface, libusb_error_name(rep->detach_r));
	if (rep->claim_iface >= 0)
		LOG(hd->h, UW_LOG_WARN, "%s: interface %d: cannot claim it: %s", hd->dev.info.busid,
		    rep->claim_iface, libusb_error_name(rep->claim_r));
}

/* Lets the kernel's drivers have the interfaces again (what was bound before the import). */
static void reattach_all(struct hdev *hd)
{
	uint8_t bits[32];
	active_ifaces(hd, bits);
	for (unsigned i = 0; i < 256; i++)
		if (bit_get(bits, i))
			libusb_attach_kernel_driver(hd->uh, (int)i);
}

/* ---- Device records ------------------------------------------------------------------------ */

static void set_info(struct hdev *hd)
{
	uw_usb_device info;
	uw_usb_interface ifaces[UW_MAX_INTERFACES];
	memset(&info, 0, sizeof info);
	memset(ifaces, 0, sizeof ifaces);
	int cfg_err = UW_OK;
	if (uw_usbsys_devrec(&hd->sys, &info, ifaces, &cfg_err) != UW_OK)
		return;
	if (cfg_err != UW_OK && cfg_err != UW_E_NOTFOUND)
		LOG(hd->h, UW_LOG_WARN,
		    "%s: configuration %u descriptor is malformed (%s): listed unconfigured",
		    hd->sys.busid, hd->sys.config_value, uw_strerror(cfg_err));
	bool changed = memcmp(&info, &hd->dev.info, sizeof info) != 0 ||
	               memcmp(ifaces, hd->dev.ifaces, sizeof ifaces) != 0;
	hd->dev.info = info;
	memcpy(hd->dev.ifaces, ifaces, sizeof ifaces);
	if (changed && hd->dev.notify)
		hd->dev.notify(&hd->dev, UW_DEV_EV_INFO);
}

/* ---- Transfers ----------------------------------------------------------------------------- */

static void hx_free(struct hx *x)
{
	if (x->t)
		libusb_free_transfer(x->t);
	free(x->bounce);
	free(x);
}

static void pump(struct hdev *hd);

/* Finishes x's URB with status/actual and frees x. */
static void hx_finish(struct hx *x, int32_t status, uint32_t actual)
{
	uw_urb *u = x->u;
	if (x->chunked)
		x->hd->blocked = false;
	hx_free(x);
	if (!u)
		return;
	u->backend = NULL;
	if (status == 0 && u->xfer != UW_XFER_ISO && u->dir == UW_DIR_IN && actual < u->len &&
	    (u->flags & UW_URB_SHORT_NOT_OK))
		status = UW_URB_EREMOTEIO;
	uw_urb_complete(u, status, actual);
}

static void LIBUSB_CALL on_transfer(struct libusb_transfer *t);

/* Points x->t at the next piece of a chunked bulk URB. */
static void chunk_setup(struct hx *x)
{
	uw_urb *u = x->u;
	uint32_t left = u->len - x->done;
	uint32_t n = left < x->chunk ? left : x->chunk;
	x->t->buffer = u->buf + x->done;
	x->t->length = (int)n;
	x->t->flags = 0;
	if (n == left && u->dir == UW_DIR_OUT && (u->flags & UW_URB_ZERO_PACKET))
		x->t->flags |= LIBUSB_TRANSFER_ADD_ZERO_PACKET;
}

/* Tries to hand x to libusb. Returns the libusb result; on success x is in flight. */
static int hx_submit(struct hx *x)
{
	struct hdev *hd = x->hd;
	uint64_t cost = uw_usbhost_urb_cost((uint32_t)x->t->length);
	/* Past the device's share: as if usbfs were full (wait, split or fail). */
	if (!uw_usbhost_fits(hd->mem, cost, hd->budget))
		return LIBUSB_ERROR_NO_MEM;
	int r = libusb_submit_transfer(x->t);
	if (r == LIBUSB_SUCCESS) {
		x->cost = cost;
		hd->mem += cost;
		x->in_libusb = true;
		xl_push(&hd->inflight, x);
		if (x->u->xfer == UW_XFER_CONTROL)
			hd->ctrl_inflight++;
	}
	return r;
}

/* x could not be submitted for lack of usbfs memory and nothing of this device is in flight to
 * free any: a bulk URB goes in pieces, anything else fails. Returns true if x is in flight. */
static bool hx_nomem_alone(struct hx *x)
{
	struct hdev *hd = x->hd;
	uw_urb *u = x->u;
	if (u->xfer == UW_XFER_BULK && u->len > CHUNK_MIN) {
		x->chunked = true;
		x->done = 0;
		for (x->chunk = CHUNK_START; x->chunk >= CHUNK_MIN; x->chunk /= 2) {
			if (x->chunk >= u->len)
				continue;
			chunk_setup(x);
			int r = hx_submit(x);
			if (r == LIBUSB_SUCCESS) {
				hd->blocked = true;
				LOG(hd->h, UW_LOG_INFO,
				    "%s: a %u-byte bulk transfer exceeds usbfs memory "
				    "(usbfs_memory_mb): sent in %u-byte pieces",
				    hd->dev.info.busid, u->len, x->chunk);
				return true;
			}
			if (r != LIBUSB_ERROR_NO_MEM)
				break;
		}
		x->chunked = false;
	}
	LOG(hd->h, UW_LOG_WARN,
	    "%s: cannot submit a %u-byte %s transfer: usbfs memory exhausted, or more than "
	    "this device's share of it (%llu KiB, a quarter of usbfs_memory_mb; raise "
	    "/sys/module/usbcore/parameters/usbfs_memory_mb); failed with -ENOMEM",
	    hd->dev.info.busid, u->len, uw_xfer_name(u->xfer),
	    (unsigned long long)(hd->budget >> 10));
	hx_finish(x, URB_ENOMEM, 0);
	return false;
}

/* Starts x now, or queues it (usbfs memory). */
static void hx_start(struct hx *x)
{
	struct hdev *hd = x->hd;
	int r = hx_submit(x);
	if (r == LIBUSB_SUCCESS)
		return;
	if (r == LIBUSB_ERROR_NO_MEM) {
		if (hd->inflight.n > 0) {
			if (!hd->warned_nomem) {
				hd->warned_nomem = true;
				LOG(hd->h, UW_LOG_WARN,
				    "%s: usbfs memory limit or this device's share of it (%llu "
				    "KiB) reached with %u transfers in flight (usbfs_memory_mb): "
				    "later URBs wait for earlier ones",
				    hd->dev.info.busid, (unsigned long long)(hd->budget >> 10),
				    hd->inflight.n);
			}
			xl_push(&hd->waitq, x);
			return;
		}
		hx_nomem_alone(x);
		return;
	}
	int32_t st = uw_usbhost_error_status(r);
	LOG(hd->h, UW_LOG_DEBUG, "%s: submit to endpoint 0x%02x failed: %s", hd->dev.info.busid,
	    x->t->endpoint, libusb_error_name(r));
	hx_finish(x, st, 0);
}

static bool special_request(struct hdev *hd, uw_urb *u);

/* Starts waiting URBs, in order, while usbfs has room. A special request at the head runs once
 * the control transfers before it have completed, so that endpoint 0 answers in order. */
static void pump(struct hdev *hd)
{
	while (hd->waitq.head && !hd->blocked && !hd->busy && !hd->destroyed) {
		struct hx *x = hd->waitq.head;
		if (x->special) {
			if (hd->ctrl_inflight)
				return;
			xl_del(&hd->waitq, x);
			uw_urb *u = x->u;
			hx_free(x);
			u->backend = NULL;
			special_request(hd, u);
			continue;
		}
		xl_del(&hd->waitq, x);
		int r = hx_submit(x);
		if (r == LIBUSB_SUCCESS)
			continue;
		if (r == LIBUSB_ERROR_NO_MEM) {
			if (hd->inflight.n > 0) {
				/* Back to the head: order is kept. */
				x->next = hd->waitq.head;
				x->prev = NULL;
				if (hd->waitq.head)
					hd->waitq.head->prev = x;
				else
					hd->waitq.tail = x;
				hd->waitq.head = x;
				hd->waitq.n++;
				return;
			}
			hx_nomem_alone(x);
			continue;
		}
		hx_finish(x, uw_usbhost_error_status(r), 0);
	}
}

static void pump_task(void *arg)
{
	struct hdev *hd = arg;
	hd->pump_posted = false;
	if (!hd->destroyed)
		pump(hd);
}

/* From a transfer callback: the waiting URBs start from a loop task, at the top level. */
static void pump_later(struct hdev *hd)
{
	if (hd->destroyed || hd->pump_posted || !hd->waitq.head)
		return;
	hd->pump_posted = true;
	hd->pump_t = (uw_loop_task){pump_task, hd, NULL};
	uw_loop_post_task(hd->h->cfg.loop, &hd->pump_t);
}

static void LIBUSB_CALL on_transfer(struct libusb_transfer *t)
{
	struct hx *x = t->user_data;
	struct hdev *hd = x->hd;
	xl_del(&hd->inflight, x);
	x->in_libusb = false;
	hd->mem -= x->cost <= hd->mem ? x->cost : hd->mem;
	x->cost = 0;
	if (t->type == LIBUSB_TRANSFER_TYPE_CONTROL && hd->ctrl_inflight)
		hd->ctrl_inflight--;
	uw_urb *u = x->u;
	if (!u) {
		hx_free(x);
		return;
	}
	int32_t status;
	uint32_t actual = 0;
	switch (u->xfer) {
	case UW_XFER_CONTROL:
		status = uw_usbhost_urb_status(t->status, x->unlinked);
		actual = t->actual_length > 0 ? (uint32_t)t->actual_length : 0;
		if (actual > u->len)
			actual = u->len;
		if (u->setup.bm_request_type & 0x80) {
			if (actual)
				memcpy(u->buf, x->bounce + LIBUSB_CONTROL_SETUP_SIZE, actual);
		}
		break;
	case UW_XFER_ISO: {
		status = t->status == LIBUSB_TRANSFER_COMPLETED
		             ? 0
		             : uw_usbhost_urb_status(t->status, x->unlinked);
		uint64_t sum = 0;
		for (uint32_t i = 0; i < u->num_iso; i++) {
			const struct libusb_iso_packet_descriptor *pd = &t->iso_packet_desc[i];
			uint32_t a = pd->actual_length;
			if (a > u->iso[i].length)
				a = u->iso[i].length;
			u->iso[i].actual_length = a;
			u->iso[i].status = uw_usbhost_iso_status(pd->status);
			if (t->status != LIBUSB_TRANSFER_COMPLETED && !a && !u->iso[i].status)
				u->iso[i].status = UW_URB_EXDEV;
			sum += a;
		}
		if (x->bounce && u->dir == UW_DIR_IN)
			uw_usbhost_iso_scatter(u->iso, u->num_iso, x->bounce, u->buf);
		actual = (uint32_t)sum;
		break;
	}
	default:
		status = uw_usbhost_urb_status(t->status, x->unlinked);
		actual = t->actual_length > 0 ? (uint32_t)t->actual_length : 0;
		if (x->chunked) {
			uint32_t want = (uint32_t)t->length;
			x->done += actual <= want ? actual : want;
			if (status == 0 && actual == want && x->done < u->len && !x->unlinked &&
			    !hd->gone) {
				chunk_setup(x);
				int r;
				while ((r = hx_submit(x)) == LIBUSB_ERROR_NO_MEM &&
				       x->chunk > CHUNK_MIN) {
					x->chunk /= 2;
					chunk_setup(x);
				}
				if (r == LIBUSB_SUCCESS)
					return;
				status = r == LIBUSB_ERROR_NO_MEM ? URB_ENOMEM
				                                  : uw_usbhost_error_status(r);
			}
			actual = x->done;
		}
		if (actual > u->len)
			actual = u->len;
		break;
	}
	hx_finish(x, status, actual);
	pump_later(hd);
}

/* ---- Special requests (docs/protocol.md, "Special requests") ------------------------------- */

/* The requests usbfs must do itself, and those that must never reach a device from the network
 * (docs/protocol.md, "Special requests"). Recognised by type, recipient and request whatever
 * the direction bit says: a device may act on a form the kernel stub would pass through (firmware
 * that decodes bRequest alone), behind usbfs's back. */
enum special {
	SP_NONE = UW_SP_FORWARD,
	SP_SET_CONFIG = UW_SP_SET_CONFIG,
	SP_SET_IFACE = UW_SP_SET_IFACE,
	SP_CLEAR_HALT = UW_SP_CLEAR_HALT,
	SP_PORT_RESET = UW_SP_PORT_RESET,
	SP_ADDRESS = UW_SP_ADDRESS,
	SP_REFUSE = UW_SP_REFUSE
};

enum { RT_STANDARD = 0, RT_CLASS = 1 };
enum { RCPT_DEVICE = 0, RCPT_INTERFACE = 1, RCPT_ENDPOINT = 2, RCPT_OTHER = 3 };
enum { FEAT_ENDPOINT_HALT = 0, FEAT_TEST_MODE = 2, FEAT_PORT_RESET = 4 };

static enum special special_kind(const uw_setup *s)
{
	unsigned type = (s->bm_request_type >> 5) & 3, rcpt = s->bm_request_type & 0x1f;
	bool in = s->bm_request_type & 0x80;
	enum special k = SP_NONE;
	unsigned want_rcpt = RCPT_DEVICE;
	if (type == RT_CLASS && rcpt == RCPT_OTHER && s->b_request == REQ_SET_FEATURE &&
	    s->w_value == FEAT_PORT_RESET)
		return in ? SP_REFUSE : SP_PORT_RESET;
	if (type != RT_STANDARD)
		return SP_NONE;
	switch (s->b_request) {
	case REQ_SET_ADDRESS:
		k = SP_ADDRESS;
		break;
	case REQ_SET_CONFIGURATION:
		k = SP_SET_CONFIG;
		break;
	case REQ_SET_INTERFACE:
		k = SP_SET_IFACE;
		want_rcpt = RCPT_INTERFACE;
		break;
	case REQ_CLEAR_FEATURE:
		if (rcpt != RCPT_ENDPOINT || s->w_value != FEAT_ENDPOINT_HALT)
			return SP_NONE;
		k = SP_CLEAR_HALT;
		want_rcpt = RCPT_ENDPOINT;
		break;
	case REQ_SET_FEATURE:
		/* TEST_MODE leaves a device unusable until it is powered off. */
		return s->w_value == FEAT_TEST_MODE ? SP_REFUSE : SP_NONE;
	default:
		return SP_NONE;
	}
	/* The USB spec defines each of these host-to-device, for one recipient only. */
	return in || rcpt != want_rcpt ? SP_REFUSE : k;
}

int uw_usbhost_special_kind(const uw_setup *s)
{
	return (int)special_kind(s);
}

/* "SET_CONFIGURATION" etc. for the log line of a refused request. */
static const char *special_name(const uw_setup *s)
{
	if (((s->bm_request_type >> 5) & 3) == RT_CLASS)
		return "SET_FEATURE(PORT_RESET)";
	switch (s->b_request) {
	case REQ_SET_ADDRESS:
		return "SET_ADDRESS";
	case REQ_SET_CONFIGURATION:
		return "SET_CONFIGURATION";
	case REQ_SET_INTERFACE:
		return "SET_INTERFACE";
	case REQ_CLEAR_FEATURE:
		return "CLEAR_FEATURE(ENDPOINT_HALT)";
	case REQ_SET_FEATURE:
		return "SET_FEATURE(TEST_MODE)";
	}
	return "request";
}

static bool is_special(const uw_setup *s)
{
	return special_kind(s) != SP_NONE;
}

/* ---- Blocking calls on the device's worker ---------------------------------------------- */

static void release_kick(struct hdev *hd);

/* On the worker: the libusb calls of hd->sp. Only what no loop-thread code changes while the
 * device is busy: the handle, the claimed interfaces, the sysfs descriptors. */
static void sp_run(uw_hjob *j)
{
	struct spjob *sp = (struct spjob *)j;
	struct hdev *hd = sp->hd;
	const uw_setup *s = &sp->s;
	sp->r2 = LIBUSB_SUCCESS;
	sp->rep = (struct claim_report){-1, 0, -1, 0};
	switch (sp->kind) {
	case SP_SET_CONFIG: {
		uint8_t value = (uint8_t)s->w_value;
		release_all(hd);
		sp->r = libusb_set_configuration(hd->uh, value);
		/* On failure, back to what the old configuration had; on success the kernel may
		 * have bound drivers to the new interfaces: take them back. */
		sp->r2 = claim_all(hd, sp->r == LIBUSB_SUCCESS ? value : hd->config, &sp->rep);
		break;
	}
	case SP_SET_IFACE:
		sp->r = libusb_set_interface_alt_setting(hd->uh, s->w_index, s->w_value);
		break;
	case SP_CLEAR_HALT:
		/* The endpoint address with its direction bit: also resets the host's toggle. */
		sp->r = libusb_clear_halt(hd->uh, (unsigned char)(s->w_index & 0x8f));
		break;
	case SP_PORT_RESET:
		sp->r = libusb_reset_device(hd->uh);
		break;
	}
}

/* On the loop: apply the result of hd->sp, complete its URB, let the device go on. */
static void sp_done(uw_hjob *j)
{
	struct spjob *sp = (struct spjob *)j;
	struct hdev *hd = sp->hd;
	const uw_setup *s = &sp->s;
	struct hx *x = sp->x;
	int32_t st = 0;
	hd->busy = false;
	sp->x = NULL;
	switch (sp->kind) {
	case SP_SET_CONFIG:
		claim_log(hd, &sp->rep);
		if (sp->r != LIBUSB_SUCCESS) {
			LOG(hd->h, UW_LOG_WARN, "%s: SET_CONFIGURATION %u failed: %s",
			    hd->dev.info.busid, s->w_value, libusb_error_name(sp->r));
			st = uw_usbhost_error_status(sp->r);
			break;
		}
		hd->config = (uint8_t)s->w_value;
		uw_alt_sel_reset(&hd->alt);
		rebuild_eps(hd);
		LOG(hd->h, UW_LOG_DEBUG, "%s: configuration %u", hd->dev.info.busid, s->w_value);
		st = uw_usbhost_error_status(sp->r2);
		break;
	case SP_SET_IFACE:
		if (sp->r != LIBUSB_SUCCESS) {
			LOG(hd->h, UW_LOG_INFO, "%s: SET_INTERFACE %u alt %u failed: %s",
			    hd->dev.info.busid, s->w_index, s->w_value, libusb_error_name(sp->r));
			st = uw_usbhost_error_status(sp->r);
			break;
		}
		hd->alt.alt[s->w_index] = (uint8_t)s->w_value;
		rebuild_eps(hd);
		break;
	case SP_CLEAR_HALT:
		/* An endpoint not in the configuration stalls. */
		st =
		    sp->r == LIBUSB_ERROR_NOT_FOUND ? UW_URB_EPIPE : uw_usbhost_error_status(sp->r);
		break;
	case SP_PORT_RESET:
		if (sp->r == LIBUSB_ERROR_NOT_FOUND)
			LOG(hd->h, UW_LOG_INFO,
			    "%s: port reset re-enumerated the device: it comes back as a new "
			    "device",
			    hd->dev.info.busid);
		st = uw_usbhost_error_status(sp->r);
		break;
	}
	uw_urb *u = x->u;
	hx_free(x);
	if (u) {
		u->backend = NULL;
		uw_urb_complete(u, st, 0);
	}
	if (hd->destroyed)
		return;
	if (hd->release_pending)
		release_kick(hd); /* the session ended meanwhile */
	else
		pump(hd);
}

/* Runs job j (hd->sp or hd->rel) on the device's worker, or here if no thread can be had. */
static void hd_run_job(struct hdev *hd, uw_hjob *j)
{
	hd->busy = true;
	if (!hd->worker_init) {
		uw_hworker_init(&hd->worker, hd->h->cfg.loop);
		hd->worker_init = true;
	}
	if (uw_hworker_submit(&hd->worker, j))
		return;
	LOG(hd->h, UW_LOG_WARN, "%s: no worker thread: a blocking call runs on the loop",
	    hd->dev.info.busid);
	j->run(j);
	j->done(j);
}

/* Returns true if u was one of the requests usbfs must do itself, or one that must not reach
 * the device: u is then completed, or handed to the device's worker. */
static bool special_request(struct hdev *hd, uw_urb *u)
{
	const uw_setup *s = &u->setup;
	int32_t st;
	int kind = special_kind(s);
	switch (kind) {
	case SP_SET_CONFIG: {
		/* Values past a byte name no configuration (the kernel stub fails them too). */
		if (s->w_value > 0xff) {
			st = UW_URB_EPIPE;
			break;
		}
		const uint8_t *cfg;
		size_t len;
		if (s->w_value &&
		    uw_usbsys_config(&hd->sys, (uint8_t)s->w_value, &cfg, &len) != UW_OK) {
			LOG(hd->h, UW_LOG_INFO, "%s: SET_CONFIGURATION %u: no such configuration",
			    hd->dev.info.busid, s->w_value);
			st = UW_URB_EINVAL;
			break;
		}
		goto job;
	}
	case SP_SET_IFACE:
		if (s->w_index > 0xff || s->w_value > 0xff) {
			st = UW_URB_EPIPE;
			break;
		}
		if (!claimed(hd, s->w_index)) {
			st = UW_URB_EINVAL;
			break;
		}
		goto job;
	case SP_CLEAR_HALT:
		/* usbfs refuses endpoint 0 (in no interface), whose halt the next SETUP clears
		 * anyway: answer it as done. */
		if (!(s->w_index & 0x0f)) {
			st = 0;
			break;
		}
		goto job;
	case SP_PORT_RESET:
		goto job;
	case SP_ADDRESS:
		st = 0; /* the client's own business: the device keeps the address it has */
		break;
	case SP_REFUSE:
		if (hd->refusals++ < REFUSALS_LOGGED)
			LOG(hd->h, UW_LOG_WARN,
			    "%s: refused %s (%02x %02x %04x %04x %04x): it must not reach a "
			    "device from the network; failed with -EPIPE%s",
			    hd->dev.info.busid, special_name(s), s->bm_request_type, s->b_request,
			    s->w_value, s->w_index, s->w_length,
			    hd->refusals == REFUSALS_LOGGED ? " (further refusals in this session "
			                                      "are not logged)"
			                                    : "");
		st = UW_URB_EPIPE;
		break;
	case SP_NONE:
	default:
		return false;
	}
	uw_urb_complete(u, st, 0);
	return true;
job:;
	struct hx *x = calloc(1, sizeof *x);
	if (!x) {
		uw_urb_complete(u, URB_ENOMEM, 0);
		return true;
	}
	x->hd = hd;
	x->u = u;
	x->special = true;
	x->in_worker = true;
	u->backend = x;
	hd->sp = (struct spjob){
	    .j = {.run = sp_run, .done = sp_done}, .hd = hd, .x = x, .kind = kind, .s = *s};
	hd_run_job(hd, &hd->sp.j);
	return true;
}

/* ---- uw_dev ops ---------------------------------------------------------------------------- */

static struct hdev *HD(uw_dev *d)
{
	return (struct hdev *)d;
}

/* No endpoint at all: what a client may address before an import. */
static void eps_none(uw_ep_table *t)
{
	for (unsigned i = 0; i < UW_EP_TABLE_SIZE; i++)
		t->in[i].xfer = t->out[i].xfer = UW_XFER_UNKNOWN;
}

static void hd_close(struct hdev *hd)
{
	eps_none(&hd->eps);
	if (hd->uh)
		libusb_close(hd->uh);
	hd->uh = NULL;
	if (hd->fd >= 0)
		close(hd->fd);
	hd->fd = -1;
	hd->open = false;
	memset(hd->claimed, 0, sizeof hd->claimed);
}

/* Gives the device back: interfaces released, reset like the kernel stub, kernel drivers
 * re-attached. The reset is on the device's worker (rel_run), the rest on the loop (rel_done). */
static void rel_run(uw_hjob *j)
{
	struct reljob *rel = (struct reljob *)j;
	struct hdev *hd = rel->hd;
	release_all(hd);
	rel->r = LIBUSB_SUCCESS;
	if (rel->gone)
		return;
	rel->r = libusb_reset_device(hd->uh);
	/* Drivers go back unless the device left or re-enumerated (then the kernel binds the new
	 * one itself). */
	if (rel->r != LIBUSB_ERROR_NOT_FOUND && rel->r != LIBUSB_ERROR_NO_DEVICE)
		reattach_all(hd);
}

static void rel_done(uw_hjob *j)
{
	struct reljob *rel = (struct reljob *)j;
	struct hdev *hd = rel->hd;
	hd->busy = false;
	rel->started = false;
	hd->release_pending = false;
	if (!rel->gone && rel->r != LIBUSB_SUCCESS)
		LOG(hd->h, UW_LOG_INFO, "%s: reset after the session: %s", hd->dev.info.busid,
		    libusb_error_name(rel->r));
	hd_close(hd);
	if (!hd->gone && !hd->destroyed) {
		/* The device may have left during the reset (its uevent not seen yet): then the
		 * read fails and the uevent unplugs it. */
		uw_usbsys_dev fresh;
		if (uw_usbsys_read(hd->h->sysfs, hd->sys.busid, &fresh) != UW_OK)
			return;
		if (fresh.devnum == hd->sys.devnum) {
			uw_usbsys_dev_fini(&hd->sys);
			hd->sys = fresh;
			set_info(hd);
		} else {
			uw_usbsys_dev_fini(&fresh);
		}
	}
}

/* Starts the release if one is due and the device's worker is free for it. */
static void release_kick(struct hdev *hd)
{
	if (!hd->release_pending || hd->rel.started || hd->busy || hd->destroyed)
		return;
	uw_loop_cancel_task(hd->h->cfg.loop, &hd->release_t); /* when started early */
	if (!hd->open) {
		hd->release_pending = false;
		return;
	}
	hd->rel = (struct reljob){
	    .j = {.run = rel_run, .done = rel_done}, .hd = hd, .gone = hd->gone, .started = true};
	hd_run_job(hd, &hd->rel.j);
}

/* Waits for the device's worker to finish what it has, and finishes a due release now. */
static void finish_release(struct hdev *hd)
{
	if (hd->worker_init)
		uw_hworker_drain(&hd->worker);
	if (!hd->release_pending)
		return;
	release_kick(hd);
	if (hd->worker_init)
		uw_hworker_drain(&hd->worker);
}

static void release_task(void *arg)
{
	struct hdev *hd = arg;
	if (hd->release_pending && !hd->destroyed)
		release_kick(hd);
}

static int hd_import(uw_dev *d)
{
	struct hdev *hd = HD(d);
	uw_usbhost *h = hd->h;
	if (hd->gone)
		return UW_E_NODEV;
	if (hd->release_pending)
		finish_release(hd);
	if (hd->open)
		return UW_E_BUSY;
	uw_usbsys_dev fresh;
	int rc = uw_usbsys_read(h->sysfs, hd->sys.busid, &fresh);
	if (rc != UW_OK)
		return UW_E_NODEV;
	if (fresh.busnum != hd->sys.busnum || fresh.devnum != hd->sys.devnum) {
		uw_usbsys_dev_fini(&fresh);
		return UW_E_NODEV; /* replaced: the uevents will bring the new one */
	}
	uw_usbsys_dev_fini(&hd->sys);
	hd->sys = fresh;
	set_info(hd);
	if (hd->sys.use == UW_USBSYS_USBIP_HOST) {
		LOG(h, UW_LOG_WARN, "%s: bound to usbip-host (the kernel exports it): busy",
		    hd->sys.busid);
		return UW_E_BUSY;
	}
	if (uw_device_desc_parse(hd->sys.desc, hd->sys.desc_len, &hd->dd, NULL) != UW_OK)
		return UW_E_DEVERR;
	char node[320];
	snprintf(node, sizeof node, "%s/%03u/%03u", h->devfs, hd->sys.busnum, hd->sys.devnum);
	int fd = open(node, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		LOG(h, UW_LOG_WARN, "%s: open %s: %s", hd->sys.busid, node, strerror(e));
		return e == ENOENT || e == ENODEV ? UW_E_NODEV
		       : e == EACCES              ? UW_E_ACCESS
		                                  : UW_E_IO;
	}
	libusb_device_handle *uh = NULL;
	int r = libusb_wrap_sys_device(h->ctx, (intptr_t)fd, &uh);
	if (r != LIBUSB_SUCCESS) {
		LOG(h, UW_LOG_WARN, "%s: libusb cannot use %s: %s", hd->sys.busid, node,
		    libusb_error_name(r));
		close(fd);
		return uw_err_of_libusb(r);
	}
	hd->fd = fd;
	hd->uh = uh;
	hd->open = true;
	hd->config = hd->sys.config_value;
	uw_alt_sel_reset(&hd->alt);
	struct claim_report crep;
	r = claim_all(hd, hd->config, &crep);
	claim_log(hd, &crep);
	if (r != LIBUSB_SUCCESS) {
		release_all(hd);
		reattach_all(hd);
		hd_close(hd);
		return uw_err_of_libusb(r);
	}
	/* Altsettings after the claim: unbinding a kernel driver puts its interface back to
	 * altsetting 0. */
	uint8_t bits[32];
	active_ifaces(hd, bits);
	for (unsigned i = 0; i < 256; i++) {
		if (!bit_get(bits, i))
			continue;
		int alt = uw_usbsys_alt(h->sysfs, hd->sys.busid, hd->config, (uint8_t)i);
		if (alt > 0)
			hd->alt.alt[i] = (uint8_t)alt;
	}
	rebuild_eps(hd);
	hd->warned_nomem = false;
	hd->refusals = 0;
	hd->mem = 0;
	hd->budget = uw_usbhost_device_budget(usbfs_total(h));
	hd->blocked = false;
	LOG(h, UW_LOG_DEBUG, "%s: opened %s, configuration %u", hd->sys.busid, node, hd->config);
	return UW_OK;
}

static void hd_submit(uw_dev *d, uw_urb *u)
{
	struct hdev *hd = HD(d);
	u->backend = NULL;
	if (hd->gone || !hd->open) {
		uw_urb_complete(u, UW_URB_ENODEV, 0);
		return;
	}
	if (u->xfer == UW_XFER_CONTROL) {
		if (is_special(&u->setup)) {
			if (!hd->ctrl_inflight && !hd->waitq.head && !hd->blocked && !hd->busy) {
				special_request(hd, u);
				return;
			}
			/* Behind earlier control transfers (and everything already waiting). */
			struct hx *w = calloc(1, sizeof *w);
			if (!w) {
				uw_urb_complete(u, URB_ENOMEM, 0);
				return;
			}
			w->hd = hd;
			w->u = u;
			w->special = true;
			u->backend = w;
			xl_push(&hd->waitq, w);
			return;
		}
		if (u->setup.w_length > CTRL_MAX) {
			LOG(hd->h, UW_LOG_WARN,
			    "%s: control request %02x/%02x with a %u-byte data stage: libusb "
			    "(usbfs) carries at most %u; failed with -EMSGSIZE",
			    hd->dev.info.busid, u->setup.bm_request_type, u->setup.b_request,
			    u->setup.w_length, CTRL_MAX);
			uw_urb_complete(u, UW_URB_EMSGSIZE, 0);
			return;
		}
	}
	int nio = u->xfer == UW_XFER_ISO ? (int)u->num_iso : 0;
	struct hx *x = calloc(1, sizeof *x);
	struct libusb_transfer *t = x ? libusb_alloc_transfer(nio) : NULL;
	if (!t) {
		free(x);
		uw_urb_complete(u, URB_ENOMEM, 0);
		return;
	}
	x->hd = hd;
	x->u = u;
	x->t = t;
	unsigned char ep = (unsigned char)(u->ep | (u->dir == UW_DIR_IN ? 0x80 : 0));
	bool oom = false;
	switch (u->xfer) {
	case UW_XFER_CONTROL: {
		x->bounce = malloc(LIBUSB_CONTROL_SETUP_SIZE + (size_t)u->setup.w_length);
		if (!x->bounce) {
			oom = true;
			break;
		}
		uw_setup_encode(&u->setup, x->bounce);
		if (!(u->setup.bm_request_type & 0x80) && u->setup.w_length)
			memcpy(x->bounce + LIBUSB_CONTROL_SETUP_SIZE, u->buf, u->setup.w_length);
		libusb_fill_control_transfer(t, hd->uh, x->bounce, on_transfer, x, 0);
		t->endpoint = u->ep; /* control endpoints have no direction bit */
		break;
	}
	case UW_XFER_BULK:
		libusb_fill_bulk_transfer(t, hd->uh, ep, u->buf, (int)u->len, on_transfer, x, 0);
		if (u->dir == UW_DIR_OUT && (u->flags & UW_URB_ZERO_PACKET))
			t->flags |= LIBUSB_TRANSFER_ADD_ZERO_PACKET;
		break;
	case UW_XFER_INT:
		libusb_fill_interrupt_transfer(t, hd->uh, ep, u->buf, (int)u->len, on_transfer, x,
		                               0);
		break;
	case UW_XFER_ISO: {
		bool contig = false;
		int64_t total = uw_usbhost_iso_layout(u->iso, u->num_iso, u->len, &contig);
		if (total < 0) {
			hx_free(x);
			uw_urb_complete(u, UW_URB_EINVAL, 0);
			return;
		}
		uint8_t *buf = u->buf;
		if (!contig) {
			x->bounce = malloc(total ? (size_t)total : 1);
			if (!x->bounce) {
				oom = true;
				break;
			}
			if (u->dir == UW_DIR_OUT)
				uw_usbhost_iso_gather(u->iso, u->num_iso, u->buf, x->bounce);
			buf = x->bounce;
		}
		libusb_fill_iso_transfer(t, hd->uh, ep, buf, (int)total, nio, on_transfer, x, 0);
		for (int i = 0; i < nio; i++)
			t->iso_packet_desc[i].length = u->iso[i].length;
		break;
	}
	default:
		hx_free(x);
		uw_urb_complete(u, UW_URB_EPIPE, 0);
		return;
	}
	if (oom) {
		hx_free(x);
		uw_urb_complete(u, URB_ENOMEM, 0);
		return;
	}
	u->backend = x;
	if (hd->waitq.head || hd->blocked || hd->busy)
		xl_push(&hd->waitq, x); /* keep the order behind what already waits */
	else
		hx_start(x);
}

static void hd_cancel(uw_dev *d, uw_urb *u)
{
	struct hdev *hd = HD(d);
	struct hx *x = u->backend;
	if (!x || x->u != u)
		return;
	x->unlinked = true;
	if (x->in_worker)
		return; /* cannot be stopped: completes with its result */
	if (!x->in_libusb) {
		xl_del(&hd->waitq, x);
		hx_finish(x, UW_URB_ECONNRESET, 0);
		return;
	}
	libusb_cancel_transfer(x->t); /* the callback completes it */
}

static int hd_ep_type(uw_dev *d, unsigned ep, unsigned dir)
{
	return uw_ep_table_xfer(&HD(d)->eps, ep, dir);
}

static void hd_release(uw_dev *d)
{
	struct hdev *hd = HD(d);
	if (!hd->open)
		return;
	if (hd->release_pending)
		return;
	hd->release_pending = true;
	/* Maybe inside a libusb callback (a completion ended the session): defer. */
	hd->release_t = (uw_loop_task){release_task, hd, NULL};
	uw_loop_post_task(hd->h->cfg.loop, &hd->release_t);
}

static void finalize_task(void *arg)
{
	hd_finalize(arg);
}

static void hd_destroy(uw_dev *d)
{
	struct hdev *hd = HD(d);
	uw_usbhost *h = hd->h;
	hd->destroyed = true;
	dev_unlink(&h->devs, hd);
	dev_link(&h->zombies, hd);
	/* URBs still here belong to a server that is going away: never complete them. */
	while (hd->waitq.head) {
		struct hx *x = hd->waitq.head;
		xl_del(&hd->waitq, x);
		hx_free(x);
	}
	for (struct hx *x = hd->inflight.head; x; x = x->next) {
		x->u = NULL;
		libusb_cancel_transfer(x->t);
	}
	if (hd->busy && hd->sp.x)
		hd->sp.x->u = NULL; /* the worker's special request: finalize waits for it */
	hd->final_t = (uw_loop_task){finalize_task, hd, NULL};
	uw_loop_post_task(h->cfg.loop, &hd->final_t);
}

static const struct uw_dev_ops hd_ops = {
    .import = hd_import,
    .submit = hd_submit,
    .cancel = hd_cancel,
    .ep_type = hd_ep_type,
    .release = hd_release,
    .destroy = hd_destroy,
};

/* Closes and frees a destroyed device (top level only). */
static void hd_finalize(struct hdev *hd)
{
	uw_usbhost *h = hd->h;
	/* Whoever calls (a task, or uw_usbhost_free), no task of hd may run after the free. */
	uw_loop_cancel_task(h->cfg.loop, &hd->release_t);
	uw_loop_cancel_task(h->cfg.loop, &hd->final_t);
	if (hd->worker_init) {
		/* A reset in progress finishes first (this blocks the loop, at teardown only). */
		uw_hworker_fini(&hd->worker);
		hd->worker_init = false;
	}
	uw_loop_cancel_task(h->cfg.loop, &hd->pump_t);
	hd->pump_posted = false;
	if (hd->inflight.head) {
		struct timeval tv = {0, 100000};
		for (int i = 0; i < CLOSE_WAIT_S * 10 && hd->inflight.head; i++)
			libusb_handle_events_timeout_completed(h->ctx, &tv, NULL);
	}
	if (hd->inflight.head) {
		/* libusb still holds them: closing would free them under it. Leak instead. */
		LOG(h, UW_LOG_WARN, "%s: %u transfers never finished; leaving the device open",
		    hd->sys.busid, hd->inflight.n);
		dev_unlink(&h->zombies, hd);
		return;
	}
	if (hd->open) {
		release_all(hd);
		if (!hd->gone)
			reattach_all(hd);
		hd_close(hd);
	}
	dev_unlink(&h->zombies, hd);
	uw_usbsys_dev_fini(&hd->sys);
	free(hd);
}

/* ---- Devices and rules ----------------------------------------------------------------------- */

static const uw_usb_rule *rule_for(uw_usbhost *h, const uw_usbsys_dev *d)
{
	for (size_t i = 0; i < h->nrules; i++)
		if (uw_usb_rule_match(&h->rules[i], d))
			return &h->rules[i];
	return NULL;
}

static struct hdev *find_dev(uw_usbhost *h, const char *busid)
{
	for (struct hdev *hd = h->devs; hd; hd = hd->next)
		if (!hd->gone && !strcmp(hd->sys.busid, busid))
			return hd;
	return NULL;
}

/* Exports a device that matched rule r. Takes ownership of sys. */
static void export_dev(uw_usbhost *h, uw_usbsys_dev *sys, const uw_usb_rule *r)
{
	struct hdev *hd = calloc(1, sizeof *hd);
	if (!hd) {
		LOG(h, UW_LOG_ERR, "%s: out of memory", sys->busid);
		uw_usbsys_dev_fini(sys);
		return;
	}
	hd->h = h;
	hd->fd = -1;
	hd->sys = *sys;
	hd->dev.ops = &hd_ops;
	hd->dev.loop = h->cfg.loop;
	hd->dev.priv = hd;
	eps_none(&hd->eps);
	if (uw_usbsys_devrec(&hd->sys, &hd->dev.info, hd->dev.ifaces, NULL) != UW_OK) {
		LOG(h, UW_LOG_WARN, "%s: malformed device descriptor: not exported", sys->busid);
		uw_usbsys_dev_fini(&hd->sys);
		free(hd);
		return;
	}
	if (!strcmp(r->text + 4, hd->sys.busid))
		snprintf(hd->dev.spec, sizeof hd->dev.spec, "%.120s", r->text);
	else
		snprintf(hd->dev.spec, sizeof hd->dev.spec, "%.90s (%.31s)", r->text,
		         hd->sys.busid);
	if (hd->sys.product[0])
		snprintf(hd->dev.name, sizeof hd->dev.name, "%s", hd->sys.product);
	else
		snprintf(hd->dev.name, sizeof hd->dev.name, "%04x:%04x", hd->sys.vid, hd->sys.pid);
	dev_link(&h->devs, hd);
	int rc = h->cfg.add(h->cfg.user, &hd->dev);
	if (rc != UW_OK) {
		LOG(h, UW_LOG_WARN, "%s: cannot export: %s", hd->sys.busid, uw_strerror(rc));
		dev_unlink(&h->devs, hd);
		uw_usbsys_dev_fini(&hd->sys);
		free(hd);
	}
}

/* The device left: end its session, hand it back to its owner for destruction. */
static void unplug(uw_usbhost *h, struct hdev *hd)
{
	hd->gone = true;
	LOG(h, UW_LOG_INFO, "%s: unplugged%s", hd->sys.busid, hd->open ? " during a session" : "");
	while (hd->waitq.head) {
		struct hx *x = hd->waitq.head;
		xl_del(&hd->waitq, x);
		hx_finish(x, UW_URB_ESHUTDOWN, 0);
	}
	for (struct hx *x = hd->inflight.head; x; x = x->next)
		libusb_cancel_transfer(x->t); /* -> NO_DEVICE or CANCELLED: -ESHUTDOWN */
	h->cfg.remove(h->cfg.user, &hd->dev);
}

/* Whether some rule may want busid, from what can be read without the device lock. */
static bool wanted(uw_usbhost *h, const char *busid)
{
	uint16_t vid, pid;
	bool hub, vhci;
	if (uw_usbsys_ids(h->sysfs, busid, &vid, &pid, &hub, &vhci) != UW_OK || hub)
		return false;
	for (size_t i = 0; i < h->nrules; i++) {
		const uw_usb_rule *r = &h->rules[i];
		if (r->kind == UW_RULE_BUSID ? !strcmp(r->busid, busid)
		                             : (!vhci && r->vid == vid && r->pid == pid))
			return true;
	}
	return false;
}

/* busid is (or may be) present: export it if a rule wants it, refresh it if exported. Reads the
 * full sysfs record (which may wait for the device lock) only of devices a rule names. */
static void consider(uw_usbhost *h, const char *busid)
{
	uw_usbsys_dev sys;
	struct hdev *hd = find_dev(h, busid);
	if (!hd && !wanted(h, busid))
		return;
	if (uw_usbsys_read(h->sysfs, busid, &sys) != UW_OK) {
		if (hd)
			unplug(h, hd);
		return;
	}
	if (hd && (hd->sys.busnum != sys.busnum || hd->sys.devnum != sys.devnum)) {
		unplug(h, hd); /* a remove we did not see */
		hd = NULL;
	}
	if (hd) {
		if (!hd->open && !hd->release_pending) {
			uw_usbsys_dev_fini(&hd->sys);
			hd->sys = sys;
			set_info(hd);
		} else {
			uw_usbsys_dev_fini(&sys);
		}
		return;
	}
	const uw_usb_rule *r = rule_for(h, &sys);
	if (!r) {
		uw_usbsys_dev_fini(&sys);
		return;
	}
	export_dev(h, &sys, r);
}

/* Every busid under the sysfs root (no attribute read). Returns the count or -1. */
static int list_busids(uw_usbhost *h, char (**out)[UW_BUSID_SIZE])
{
	DIR *dp = opendir(h->sysfs);
	if (!dp)
		return -1;
	char(*ids)[UW_BUSID_SIZE] = NULL;
	int n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(dp))) {
		if (!uw_usbsys_busid_valid(de->d_name))
			continue;
		if (n == cap) {
			int ncap = cap ? cap * 2 : 16;
			char(*m)[UW_BUSID_SIZE] = realloc(ids, (size_t)ncap * sizeof *ids);
			if (!m)
				break;
			ids = m;
			cap = ncap;
		}
		memcpy(ids[n++], de->d_name, strlen(de->d_name) + 1); /* valid: < 32 bytes */
	}
	closedir(dp);
	*out = ids;
	return n;
}

/* After lost uevents: what left, what came. */
static void rescan(uw_usbhost *h)
{
	for (struct hdev *hd = h->devs, *next; hd; hd = next) {
		next = hd->next;
		if (!hd->gone)
			consider(h, hd->sys.busid); /* unplugs it if gone or replaced */
	}
	char(*ids)[UW_BUSID_SIZE] = NULL;
	int n = list_busids(h, &ids);
	for (int i = 0; i < n; i++)
		consider(h, ids[i]);
	free(ids);
}

static void on_uevent(void *arg, uint32_t events)
{
	uw_usbhost *h = arg;
	(void)events;
	for (int round = 0; round < 64; round++) {
		uint8_t buf[8192];
		struct sockaddr_nl sa;
		struct iovec iov = {buf, sizeof buf};
		struct msghdr mh = {
		    .msg_name = &sa, .msg_namelen = sizeof sa, .msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n = recvmsg(h->nlfd, &mh, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == ENOBUFS) {
				LOG(h, UW_LOG_WARN, "usb: uevents were lost: rescanning sysfs");
				rescan(h);
				continue;
			}
			return; /* EAGAIN or a real error: nothing more now */
		}
		/* Only the kernel (port 0) speaks for devices; a truncated message is dropped. */
		if (mh.msg_namelen != sizeof sa || sa.nl_pid != 0 || (mh.msg_flags & MSG_TRUNC))
			continue;
		uw_uevent ev;
		if (uw_uevent_parse(buf, (size_t)n, &ev) != UW_OK) {
			LOG(h, UW_LOG_DEBUG, "usb: ignoring a malformed uevent");
			continue;
		}
		if (ev.kind == UW_UEVENT_NOT_USB)
			continue;
		if (ev.kind == UW_UEVENT_DEVICE && ev.action == UW_UEVENT_REMOVE) {
			struct hdev *hd = find_dev(h, ev.busid);
			if (hd && (!ev.devnum || ev.devnum == hd->sys.devnum))
				unplug(h, hd);
			continue;
		}
		if (ev.action == UW_UEVENT_ADD || ev.action == UW_UEVENT_BIND ||
		    ev.action == UW_UEVENT_CHANGE || ev.action == UW_UEVENT_UNBIND)
			consider(h, ev.busid);
	}
}

/* ---- libusb's own messages ------------------------------------------------------------------ */

/* libusb's log callback gets the context but no user pointer: the hosts alive, by context.
 * libusb 1.0.26 writes every message to stderr unless a process-wide callback is installed, and
 * that one is not told the context: so the process-wide one swallows, the context's routes. */
#define MAX_LOG_HOSTS 8
static pthread_mutex_t log_hosts_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	libusb_context *ctx;
	uw_usbhost *h;
} log_hosts[MAX_LOG_HOSTS];

static void LIBUSB_CALL on_libusb_log(libusb_context *ctx, enum libusb_log_level level,
                                      const char *str)
{
	(void)level; /* part of str ("libusb: warning [function] ...") */
	size_t n = strlen(str);
	while (n && (str[n - 1] == '\n' || str[n - 1] == '\r'))
		n--;
	bool routed = false;
	pthread_mutex_lock(&log_hosts_lock);
	for (size_t i = 0; i < MAX_LOG_HOSTS; i++) {
		if (ctx && log_hosts[i].ctx == ctx) {
			uw_logf(&log_hosts[i].h->cfg.log, UW_LOG_DEBUG, "%.*s", (int)n, str);
			routed = true;
		}
	}
	pthread_mutex_unlock(&log_hosts_lock);
	if (!routed)
		fprintf(stderr, "%.*s\n", (int)n, str);
}

static void LIBUSB_CALL swallow_libusb_log(libusb_context *ctx, enum libusb_log_level level,
                                           const char *str)
{
	(void)ctx;
	(void)level;
	(void)str;
}

/* Routes the context's warnings and errors to our logger at debug level (`serve -v`): the
 * expected ones (a device unplugged under a transfer) would read as alarms otherwise. */
static void route_libusb_log(uw_usbhost *h, bool on)
{
	pthread_mutex_lock(&log_hosts_lock);
	size_t live = 0;
	bool placed = !on;
	for (size_t i = 0; i < MAX_LOG_HOSTS; i++) {
		if (on && !placed && !log_hosts[i].ctx) {
			log_hosts[i].ctx = h->ctx;
			log_hosts[i].h = h;
			placed = true;
		} else if (!on && log_hosts[i].ctx == h->ctx) {
			log_hosts[i].ctx = NULL;
			log_hosts[i].h = NULL;
		}
		live += log_hosts[i].ctx != NULL;
	}
	/* Inside the lock: a concurrent host start/stop must not undo this. */
	libusb_set_log_cb(NULL, live ? swallow_libusb_log : NULL, LIBUSB_LOG_CB_GLOBAL);
	pthread_mutex_unlock(&log_hosts_lock);
	if (on && placed) {
		libusb_set_log_cb(h->ctx, on_libusb_log, LIBUSB_LOG_CB_CONTEXT);
		libusb_set_option(h->ctx, LIBUSB_OPTION_LOG_LEVEL, LIBUSB_LOG_LEVEL_WARNING);
	}
}

/* ---- Public API ----------------------------------------------------------------------------- */

int uw_usbhost_new(const struct uw_usbhost_config *cfg, uw_usbhost **out, char *err, size_t errlen)
{
	uw_usbhost *h = calloc(1, sizeof *h);
	if (!h) {
		snprintf(err, errlen, "out of memory");
		return UW_E_NOMEM;
	}
	h->cfg = *cfg;
	h->nlfd = -1;
	snprintf(h->sysfs, sizeof h->sysfs, "%s", cfg->sysfs ? cfg->sysfs : UW_USBSYS_ROOT);
	snprintf(h->devfs, sizeof h->devfs, "%s", cfg->devfs ? cfg->devfs : UW_USBSYS_DEVFS);
	snprintf(h->usbfs_mb, sizeof h->usbfs_mb, "%s",
	         cfg->usbfs_memory_mb ? cfg->usbfs_memory_mb : USBFS_MEMORY_MB);
	/* We find devices ourselves and hand libusb the fds we opened (see
	 * docs/architecture.md, "Real devices"); it also lets a sandboxed process drive a device
	 * it could not open. libusb 1.0.26 takes this option only as a default for new contexts. */
	libusb_set_option(NULL, LIBUSB_OPTION_NO_DEVICE_DISCOVERY);
	int r = libusb_init(&h->ctx);
	if (r != LIBUSB_SUCCESS) {
		snprintf(err, errlen, "libusb: %s", libusb_error_name(r));
		free(h);
		return UW_E_IO;
	}
	route_libusb_log(h, true);
	const struct libusb_pollfd **pfds = libusb_get_pollfds(h->ctx);
	for (size_t i = 0; pfds && pfds[i]; i++)
		watch_fd(h, pfds[i]->fd, pfds[i]->events);
	libusb_free_pollfds(pfds);
	libusb_set_pollfd_notifiers(h->ctx, fd_added, fd_removed, h);
	if (!libusb_pollfds_handle_timeouts(h->ctx))
		LOG(h, UW_LOG_DEBUG, "usb: libusb needs explicit timeouts (none are used)");
	*out = h;
	return UW_OK;
}

int uw_usbhost_add_rule(uw_usbhost *h, const char *spec, char *err, size_t errlen)
{
	uw_usb_rule r;
	int rc = uw_usb_rule_parse(spec, &r, err, errlen);
	if (rc != UW_OK)
		return rc;
	uw_usb_rule *n = realloc(h->rules, (h->nrules + 1) * sizeof *n);
	if (!n) {
		snprintf(err, errlen, "out of memory");
		return UW_E_NOMEM;
	}
	h->rules = n;
	h->rules[h->nrules++] = r;
	return UW_OK;
}

int uw_usbhost_start(uw_usbhost *h, char *err, size_t errlen)
{
	int fd =
	    socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
	if (fd >= 0) {
		int sz = (int)NL_RCVBUF;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) < 0)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
		struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = 1};
		if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
		    uw_loop_add_fd(h->cfg.loop, fd, UW_EV_IN, on_uevent, h) != UW_OK) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0)
		LOG(h, UW_LOG_WARN,
		    "usb: no kernel uevents (%s): devices plugged in later are not "
		    "seen",
		    strerror(errno));
	h->nlfd = fd;
	/* Listen first, then scan: a device that arrives in between is seen twice, harmlessly. */
	char(*ids)[UW_BUSID_SIZE] = NULL;
	int n = list_busids(h, &ids);
	if (n < 0 && fd < 0) {
		snprintf(err, errlen, "cannot read %s", h->sysfs);
		return UW_E_IO;
	}
	for (int i = 0; i < n; i++)
		consider(h, ids[i]);
	free(ids);
	for (size_t k = 0; k < h->nrules; k++) {
		uint16_t vid, pid;
		bool hub = false, vhci;
		if (h->rules[k].kind == UW_RULE_BUSID &&
		    uw_usbsys_ids(h->sysfs, h->rules[k].busid, &vid, &pid, &hub, &vhci) == UW_OK &&
		    hub) {
			LOG(h, UW_LOG_WARN, "%s: a hub cannot be exported", h->rules[k].text);
			continue;
		}
		bool seen = false;
		for (struct hdev *hd = h->devs; hd; hd = hd->next)
			if (uw_usb_rule_match(&h->rules[k], &hd->sys))
				seen = true;
		if (!seen)
			LOG(h, UW_LOG_INFO, "%s: no such device now; exported when it appears",
			    h->rules[k].text);
	}
	return UW_OK;
}

void uw_usbhost_free(uw_usbhost *h)
{
	if (!h)
		return;
	if (h->nlfd >= 0) {
		uw_loop_del_fd(h->cfg.loop, h->nlfd);
		close(h->nlfd);
	}
	while (h->zombies)
		hd_finalize(h->zombies);
	/* Devices the owner never destroyed (it should have): close them too. */
	while (h->devs) {
		struct hdev *hd = h->devs;
		hd->destroyed = true;
		dev_unlink(&h->devs, hd);
		dev_link(&h->zombies, hd);
		hd_finalize(hd);
	}
	libusb_set_pollfd_notifiers(h->ctx, NULL, NULL, NULL);
	for (size_t i = 0; i < h->nfds; i++)
		uw_loop_del_fd(h->cfg.loop, h->fds[i]);
	route_libusb_log(h, false);
	libusb_exit(h->ctx);
	free(h->fds);
	free(h->rules);
	free(h);
}
