/* SPDX-License-Identifier: MIT */
/*
 * usbwire attach -r ADDR -b BUSID [--json] [--persist]
 *
 * Imports a device (OP_REQ_IMPORT) and hands the connected socket to vhci-hcd through sysfs on a
 * free port of the device's speed (USB 2 hub below SuperSpeed, USB 3 hub from it), trying the
 * next port when the kernel answers EBUSY, and writes the record file `usbip port` reads.
 *
 * With --persist it stays in the foreground and keeps the device attached: it watches the
 * port's line in the vhci status file and the connection, and when the device goes away (the
 * server stopped, the network dropped, the port was freed) it imports and attaches it again with
 * capped exponential backoff (1 s doubling to 60 s; back to 1 s after 30 s attached), logging
 * each step. SIGINT/SIGTERM detach the device and exit. A `usbwire detach`/`usbip detach` of the
 * port by hand (its record file removed, then the port freed) ends it too.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "uw_client.h"
#include "uw_net.h"
#include "uw_vhci.h"

#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS   60000
#define STABLE_MS        30000 /* attached this long: the next drop starts the backoff over */
#define WATCH_MS         500   /* how often the port's status is read */
#define STALE_MS         5000  /* connection closed but the port still busy: detach it */
#define ATTACH_ROUNDS    3     /* status re-read and ports retried after EBUSY on all of them */

struct opts {
	const char *remote;
	const char *listen; /* --listen: reverse connections */
	uw_addr addr;
	char host[UW_ADDR_PATH_MAX + 300]; /* TCP: the host; else the whole address */
	uint16_t port;                     /* TCP: the port; else 0 */
	const char *busid;
	int timeout_ms;
	bool json, persist;
};

/* What one successful attach produced. */
struct attached {
	uint32_t port;
	uint32_t devid;
	uint32_t speed;
	uint8_t hub;
	int fd; /* the connection (kept only by --persist, to notice when it closes) */
	bool recorded;
	uw_usb_device dev;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- One attach --------------------------------------------------------------------------- */

static int import_error(const struct opts *o, int rc, uint32_t st, const char *why, char *err,
                        size_t errlen)
{
	if (rc == UW_E_REFUSED) {
		switch (st) {
		case UW_ST_NODEV:
			snprintf(err, errlen,
			         "%s does not export busid %s ('usbwire list -r %s' shows what it "
			         "exports)",
			         o->remote, o->busid, o->remote);
			return UW_E_NODEV;
		case UW_ST_DEV_BUSY:
			snprintf(
			    err, errlen,
			    "device %s on %s is busy: another client has imported it (detach it "
			    "there first)",
			    o->busid, o->remote);
			return UW_E_BUSY;
		case UW_ST_DEV_ERR:
			snprintf(
			    err, errlen,
			    "device %s on %s is in an error state on the server (unbind and bind "
			    "it again there)",
			    o->busid, o->remote);
			return UW_E_DEVERR;
		default:
			snprintf(err, errlen, "%s refused to export %s: %s (status %u)", o->remote,
			         o->busid, why, st);
			return rc;
		}
	}
	if (rc == UW_E_VERSION)
		snprintf(err, errlen,
		         "protocol version mismatch: %s does not speak USB/IP 1.1.1 (0x0111): %s",
		         o->remote, why);
	else
		snprintf(err, errlen, "%s: %s", o->remote, why);
	return rc;
}

/* Hands fd to vhci-hcd on a free port fitting speed. Returns UW_OK and *port, or an error with
 * the reason in err. */
static int hand_to_kernel(int fd, uint32_t devid, uint32_t *speed, uint32_t *port, uint8_t *hub,
                          char *err, size_t errlen)
{
	const char *root = cli_vhci_root();
	for (int round = 0; round < ATTACH_ROUNDS; round++) {
		uw_vhci_status st;
		int se = 0;
		int rc = uw_vhci_read(root, &st, &se);
		if (rc == UW_E_NODEV) {
			snprintf(err, errlen,
			         "vhci-hcd is not loaded (no %s/status); load it with 'modprobe "
			         "vhci-hcd'",
			         root);
			return rc;
		}
		if (rc) {
			snprintf(err, errlen, "cannot read %s/status: %s", root,
			         se ? strerror(se) : uw_strerror(rc));
			return rc;
		}
		uint32_t cand[64];
		size_t nfree = uw_vhci_free_ports(&st, *speed, cand, 64);
		size_t nfit = uw_vhci_count_fitting(&st, *speed);
		if (nfree > 64)
			nfree = 64;
		uw_vhci_spread(&st, cand, nfree);
		if (nfree == 0) {
			uw_vhci_status_fini(&st);
			if (nfit == 0)
				snprintf(
				    err, errlen,
				    "vhci-hcd has no %s ports for a %s device (%zu ports read)",
				    *speed >= 5 ? "USB 3 (SuperSpeed)" : "USB 2",
				    uw_speed_name(*speed), st.n);
			else
				snprintf(
				    err, errlen,
				    "no free vhci port for a %s device: all %zu %s ports are in "
				    "use "
				    "('usbwire port' lists them, 'usbwire detach -p N' frees one)",
				    uw_speed_name(*speed), nfit, *speed >= 5 ? "USB 3" : "USB 2");
			return UW_E_LIMIT;
		}
		for (size_t i = 0; i < nfree; i++) {
			const uw_vhci_port *vp = uw_vhci_find(&st, cand[i]);
			se = 0;
			rc = uw_vhci_attach(root, cand[i], fd, devid, *speed, &se);
			if (rc == UW_E_INVAL && *speed == UW_SPEED_SUPER_PLUS) {
				/* Older kernels refuse 6; the SuperSpeed hub takes the device as 5.
				 */
				fprintf(stderr, "usbwire: attach: this kernel refuses "
				                "super-speed-plus; attaching "
				                "as super-speed\n");
				*speed = UW_SPEED_SUPER;
				rc = uw_vhci_attach(root, cand[i], fd, devid, *speed, &se);
			}
			if (rc == UW_OK) {
				*port = cand[i];
				*hub = vp ? vp->hub : UW_VHCI_HUB_UNKNOWN;
				uw_vhci_status_fini(&st);
				return UW_OK;
			}
			if (rc == UW_E_BUSY)
				continue; /* taken meanwhile: the next one */
			uw_vhci_status_fini(&st);
			if (rc == UW_E_INVAL)
				snprintf(err, errlen,
				         "the kernel refused the attach (EINVAL): vhci-hcd does "
				         "not accept "
				         "speed %u (%s) on port %u, or the socket",
				         *speed, uw_speed_name(*speed), cand[i]);
			else if (rc == UW_E_ACCESS)
				snprintf(
				    err, errlen,
				    "permission denied writing %s/attach: attaching needs root",
				    root);
			else if (rc == UW_E_STATE)
				snprintf(
				    err, errlen,
				    "vhci-hcd is not ready (EAGAIN writing %s/attach); try again",
				    root);
			else if (rc == UW_E_NODEV)
				snprintf(
				    err, errlen,
				    "vhci-hcd is not loaded (no %s/attach); load it with 'modprobe "
				    "vhci-hcd'",
				    root);
			else
				snprintf(err, errlen, "writing %s/attach failed: %s", root,
				         se ? strerror(se) : uw_strerror(rc));
			return rc;
		}
		uw_vhci_status_fini(&st);
	}
	snprintf(err, errlen, "every free vhci port turned out busy (EBUSY) %d times; try again",
	         ATTACH_ROUNDS);
	return UW_E_BUSY;
}

/* Imports o->busid over the connected fd and hands it to vhci-hcd; fd is closed on failure and,
 * unless keep_fd, after the hand-off too (the kernel holds its own reference). */
static int attach_fd(const struct opts *o, int fd, struct attached *a, bool keep_fd, char *err,
                     size_t errlen)
{
	char why[512];
	int rc;
	uw_usb_device dev;
	uint32_t st = 0;
	rc = uw_client_import(fd, o->busid, o->timeout_ms, &dev, &st, why, sizeof why);
	if (rc) {
		close(fd);
		return import_error(o, rc, st, why, err, errlen);
	}
	uint32_t speed = dev.speed;
	if (speed == UW_SPEED_UNKNOWN || speed > UW_SPEED_SUPER_PLUS) {
		close(fd);
		snprintf(
		    err, errlen,
		    "%s reports speed %u (%s) for %s, which vhci-hcd refuses (the server could "
		    "not tell the device's speed)",
		    o->remote, speed, uw_speed_name(speed), o->busid);
		return UW_E_NOTSUP;
	}
	uint32_t devid = (dev.busnum << 16) | dev.devnum;
	uint32_t port = 0;
	uint8_t hub = 0;
	rc = hand_to_kernel(fd, devid, &speed, &port, &hub, err, errlen);
	if (rc) {
		close(fd);
		return rc;
	}
	char serv[16];
	snprintf(serv, sizeof serv, "%u", o->port);
	int se = 0;
	int wr = uw_vhci_record_write(cli_vhci_record_dir(), port, o->host, serv, o->busid, &se);
	if (wr)
		fprintf(stderr,
		        "usbwire: attach: warning: cannot record the connection in %s/port%u (%s); "
		        "'usbip port' will not show where port %u comes from\n",
		        cli_vhci_record_dir(), port, se ? strerror(se) : uw_strerror(wr), port);
	if (!keep_fd) {
		close(fd);
		fd = -1;
	}
	*a = (struct attached){.port = port,
	                       .devid = devid,
	                       .speed = speed,
	                       .hub = hub,
	                       .fd = fd,
	                       .recorded = wr == UW_OK,
	                       .dev = dev};
	return UW_OK;
}

static int attach_once(const struct opts *o, struct attached *a, bool keep_fd, char *err,
                       size_t errlen)
{
	if (!uw_vhci_present(cli_vhci_root())) {
		snprintf(
		    err, errlen,
		    "vhci-hcd is not loaded (%s/attach does not exist); load it with 'modprobe "
		    "vhci-hcd' (as root)",
		    cli_vhci_root());
		return UW_E_NODEV;
	}
	int fd;
	char why[512];
	int rc = uw_addr_connect(&o->addr, o->timeout_ms, &fd, why, sizeof why);
	if (rc) {
		snprintf(err, errlen, "%s", why);
		return rc;
	}
	return attach_fd(o, fd, a, keep_fd, err, errlen);
}

static void print_attached(const struct opts *o, const struct attached *a)
{
	if (!o->json) {
		printf("attached %s/%s (%04x:%04x, %s) on port %u\n", o->remote, o->busid,
		       a->dev.id_vendor, a->dev.id_product, uw_speed_name(a->speed), a->port);
		fflush(stdout);
		return;
	}
	printf("{\"port\":%u,\"hub\":\"%s\",\"host\":", a->port, cli_vhci_hub_name(a->hub));
	cli_json_str(o->host);
	if (o->port)
		printf(",\"remote_port\":%u,\"busid\":", o->port);
	else
		printf(",\"remote_port\":null,\"busid\":");
	cli_json_str(o->busid);
	printf(",\"devid\":%u,\"speed\":%u,\"speed_name\":\"%s\",\"vendor_id\":\"%04x\","
	       "\"product_id\":\"%04x\",\"recorded\":%s}\n",
	       a->devid, a->speed, uw_speed_name(a->speed), a->dev.id_vendor, a->dev.id_product,
	       a->recorded ? "true" : "false");
	fflush(stdout);
}

/* ---- --persist ---------------------------------------------------------------------------- */

static int sig_pipe[2] = {-1, -1};
static volatile sig_atomic_t sig_seen;

static void on_signal(int sig)
{
	int e = errno;
	sig_seen = sig;
	if (write(sig_pipe[1], "x", 1) < 0) {
		/* the pipe is full: a wake-up is already pending */
	}
	errno = e;
}

/* Sleeps ms or until a signal; returns true if a signal came. */
static bool wait_or_signal(int ms, int fd, short *revents)
{
	struct pollfd p[2] = {{.fd = sig_pipe[0], .events = POLLIN},
	                      {.fd = fd, .events = POLLRDHUP}};
	double until = now_ms() + ms;
	for (;;) {
		double left = until - now_ms();
		if (left < 0)
			left = 0;
		int n = poll(p, fd >= 0 ? 2 : 1, (int)left);
		if (n < 0 && errno != EINTR)
			return sig_seen != 0;
		if (sig_seen)
			return true;
		if (n > 0 && fd >= 0 && p[1].revents) {
			*revents = p[1].revents;
			return false;
		}
		if (left <= 0)
			return false;
	}
}

/* Whether the port still holds our device. */
enum watch { W_OURS, W_GONE, W_OTHER, W_ERROR, W_UNREADABLE };

static enum watch watch_port(const struct attached *a, uint32_t *status)
{
	uw_vhci_status st;
	if (uw_vhci_read(cli_vhci_root(), &st, NULL) != UW_OK)
		return W_UNREADABLE;
	const uw_vhci_port *p = uw_vhci_find(&st, a->port);
	enum watch w;
	*status = p ? p->status : 0;
	if (!p || p->status == UW_VDEV_NULL)
		w = W_GONE;
	else if (p->devid != a->devid && p->status == UW_VDEV_USED)
		w = W_OTHER;
	else if (p->status == UW_VDEV_ERROR)
		w = W_ERROR;
	else
		w = W_OURS;
	uw_vhci_status_fini(&st);
	return w;
}

static bool record_gone(const struct attached *a)
{
	uw_vhci_record r;
	return a->recorded &&
	       uw_vhci_record_read(cli_vhci_record_dir(), a->port, &r) == UW_E_NOTFOUND;
}

/* SIGINT and SIGTERM set sig_seen and wake wait_or_signal()/poll through sig_pipe. */
static bool catch_signals(void)
{
	if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
		cli_err("attach: pipe: %s", strerror(errno));
		return false;
	}
	struct sigaction sa = {.sa_handler = on_signal};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	return true;
}

static int persist(const struct opts *o)
{
	uw_logger lg;
	cli_logger(&lg, UW_LOG_INFO);
	if (!catch_signals())
		return 1;

	char err[1024];
	int delay = BACKOFF_FIRST_MS;
	unsigned attempt = 0;
	double dropped_at = 0;
	struct attached a = {.fd = -1};
	uw_logf(&lg, UW_LOG_INFO,
	        "persist: keeping %s/%s attached (SIGINT/SIGTERM to detach and stop)", o->remote,
	        o->busid);
	for (;;) {
		/* Detached: attach, with backoff. */
		for (;;) {
			if (sig_seen)
				goto stop_detached;
			attempt++;
			int rc = attach_once(o, &a, true, err, sizeof err);
			if (rc == UW_OK)
				break;
			uw_logf(&lg, UW_LOG_INFO,
			        "persist: attempt %u failed: %s; next attempt in %d s", attempt,
			        err, delay / 1000);
			short rev = 0;
			if (wait_or_signal(delay, -1, &rev))
				goto stop_detached;
			delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
		}
		double attached_at = now_ms();
		if (dropped_at > 0)
			uw_logf(
			    &lg, UW_LOG_INFO,
			    "persist: back: %s/%s attached on port %u (%s) after %u attempt(s), "
			    "%.1f s after the drop",
			    o->remote, o->busid, a.port, uw_speed_name(a.speed), attempt,
			    (attached_at - dropped_at) / 1000);
		else
			uw_logf(&lg, UW_LOG_INFO,
			        "persist: attached %s/%s (%04x:%04x, %s) on port %u", o->remote,
			        o->busid, a.dev.id_vendor, a.dev.id_product, uw_speed_name(a.speed),
			        a.port);
		attempt = 0;

		/* Attached: watch. */
		const char *why = NULL;
		double closed_at = 0;
		uint32_t status = 0;
		for (;;) {
			short rev = 0;
			if (wait_or_signal(WATCH_MS, a.fd, &rev))
				goto stop_attached;
			if (rev) {
				/* The connection closed (the server went away, or a detach shut
				 * it down); the kernel frees the port shortly. */
				close(a.fd);
				a.fd = -1;
				closed_at = now_ms();
			}
			enum watch w = watch_port(&a, &status);
			if (w == W_GONE) {
				why = closed_at > 0
				          ? "the connection closed and the port is free again"
				          : "the port is free again (the connection dropped)";
				break;
			}
			if (w == W_OTHER) {
				why = "the port now holds another device";
				break;
			}
			if (w == W_ERROR || (closed_at > 0 && now_ms() - closed_at > STALE_MS)) {
				why = w == W_ERROR
				          ? "the port is in an error state"
				          : "the connection closed but the port stayed busy";
				uw_vhci_detach(cli_vhci_root(), a.port, NULL);
				break;
			}
		}
		dropped_at = now_ms();
		if (a.fd >= 0) {
			close(a.fd);
			a.fd = -1;
		}
		if (record_gone(&a)) {
			uw_logf(&lg, UW_LOG_INFO,
			        "persist: port %u was detached by hand (its record file is gone); "
			        "stopping",
			        a.port);
			return 0;
		}
		if (status == UW_VDEV_NULL || status == 0)
			uw_vhci_record_remove(cli_vhci_record_dir(), a.port);
		uw_logf(&lg, UW_LOG_INFO,
		        "persist: dropped: %s/%s on port %u after %.1f s attached: %s", o->remote,
		        o->busid, a.port, (dropped_at - attached_at) / 1000, why);
		if (dropped_at - attached_at >= STABLE_MS)
			delay = BACKOFF_FIRST_MS;
		uw_logf(&lg, UW_LOG_INFO, "persist: reconnecting in %d s", delay / 1000);
		short rev = 0;
		if (wait_or_signal(delay, -1, &rev))
			goto stop_detached;
		delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
	}

stop_attached : {
	uint32_t status = 0;
	if (watch_port(&a, &status) == W_OURS) {
		uw_vhci_record_remove(cli_vhci_record_dir(), a.port);
		int se = 0;
		int rc = uw_vhci_detach(cli_vhci_root(), a.port, &se);
		if (rc)
			uw_logf(&lg, UW_LOG_INFO, "persist: detaching port %u failed: %s", a.port,
			        se ? strerror(se) : uw_strerror(rc));
		else
			uw_logf(&lg, UW_LOG_INFO, "persist: signal %d: detached port %u; exiting",
			        (int)sig_seen, a.port);
	} else {
		uw_logf(&lg, UW_LOG_INFO,
		        "persist: signal %d: port %u no longer holds the device; exiting",
		        (int)sig_seen, a.port);
	}
	if (a.fd >= 0)
		close(a.fd);
	return 0;
}
stop_detached:
	uw_logf(&lg, UW_LOG_INFO, "persist: signal %d while not attached; exiting", (int)sig_seen);
	return 0;
}

/* ---- --listen: servers dial in (reverse connections) --------------------------------------- */

#define MAX_OFFERED 64

/* A device a server that dialed in offered (its device list) or that -b names. */
struct offered {
	char server[UW_ADDR_PATH_MAX + 80]; /* the peer, without its TCP source port */
	char busid[UW_BUSID_SIZE];
	bool attached;
	struct attached a;
	double tried_at; /* last failed import (0: never) */
};

/* The server a connection came from: its address without the source port (a server's dials
 * come from a new port each time), and that port for the record file. */
static void server_of(int fd, char *key, size_t n, char *serv, size_t sn)
{
	char name[UW_ADDR_PATH_MAX + 80];
	uw_net_peer_name(fd, name, sizeof name);
	char *colon = strrchr(name, ':');
	bool has_port = colon && (name[0] == '[' || (name[0] >= '0' && name[0] <= '9') ||
	                          strncmp(name, "vsock:", 6) == 0);
	if (has_port) {
		snprintf(serv, sn, "%s", colon + 1);
		*colon = '\0';
	} else {
		snprintf(serv, sn, "0");
	}
	/* A unix peer is named with its process id: a server that restarts is the same server. */
	char *pid = strstr(name, "(pid=");
	if (pid) {
		char *comma = strchr(pid, ',');
		if (comma)
			memmove(pid + 1, comma + 1, strlen(comma + 1) + 1);
	}
	snprintf(key, n, "%s", name);
}

/* A new entry for server/busid: a free slot, or the oldest one not attached. NULL when every
 * slot holds an attached device. */
static struct offered *new_offered(struct offered *v, size_t *n, const char *server,
                                   const char *busid)
{
	struct offered *e = NULL;
	if (*n < MAX_OFFERED) {
		e = &v[(*n)++];
	} else {
		for (size_t i = 0; i < *n && !e; i++)
			if (!v[i].attached) {
				memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof *v);
				e = &v[*n - 1];
			}
	}
	if (e) {
		*e = (struct offered){0};
		snprintf(e->server, sizeof e->server, "%s", server);
		snprintf(e->busid, sizeof e->busid, "%s", busid);
	}
	return e;
}

/* Busids from the network are printed and written to the vhci record: printable only. */
static bool busid_ok(const char *b)
{
	if (!b[0])
		return false;
	for (const unsigned char *p = (const unsigned char *)b; *p; p++)
		if (*p <= 0x20 || *p >= 0x7f)
			return false;
	return true;
}

static struct offered *find_offered(struct offered *v, size_t n, const char *server,
                                    const char *busid)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].server, server) && !strcmp(v[i].busid, busid))
			return &v[i];
	return NULL;
}

/* Handles one connection from a server: imports what is wanted, or asks for the device list. */
static void listen_one(const struct opts *o, int fd, struct offered *v, size_t *n,
                       const uw_logger *lg)
{
	char server[UW_ADDR_PATH_MAX + 80], serv[32], err[1024];
	server_of(fd, server, sizeof server, serv, sizeof serv);
	double now = now_ms();
	struct offered *pick = NULL;
	if (o->busid) {
		pick = find_offered(v, *n, server, o->busid);
		if (!pick)
			pick = new_offered(v, n, server, o->busid);
		if (pick && pick->attached)
			pick = NULL; /* the server offers another device: not wanted */
	} else {
		for (size_t i = 0; i < *n && !pick; i++)
			if (!strcmp(v[i].server, server) && !v[i].attached &&
			    now - v[i].tried_at >= BACKOFF_FIRST_MS)
				pick = &v[i];
	}
	if (!pick && !o->busid) {
		/* Nothing known to import from this server: learn what it offers. */
		uw_devlist l;
		int rc = uw_client_list(fd, o->timeout_ms, &l, err, sizeof err);
		close(fd);
		if (rc) {
			uw_logf(lg, UW_LOG_WARN, "listen: %s: device list failed: %s", server, err);
			return;
		}
		size_t added = 0, bad = 0;
		for (size_t i = 0; i < l.n; i++) {
			const char *b = l.devs[i].dev.busid;
			if (!busid_ok(b)) {
				bad++;
				continue;
			}
			if (!find_offered(v, *n, server, b) && new_offered(v, n, server, b))
				added++;
		}
		if (bad)
			uw_logf(lg, UW_LOG_WARN,
			        "listen: %s: %zu busid(s) with blanks or control bytes ignored",
			        server, bad);
		uw_logf(lg, UW_LOG_INFO, "listen: %s offers %zu device(s), %zu new", server, l.n,
		        added);
		uw_devlist_free(&l);
		return;
	}
	if (!pick) {
		close(fd);
		return;
	}
	struct opts oo = *o;
	oo.busid = pick->busid;
	oo.remote = server;
	snprintf(oo.host, sizeof oo.host, "%s", server);
	oo.port = (uint16_t)atoi(serv);
	struct attached a;
	if (attach_fd(&oo, fd, &a, false, err, sizeof err) != UW_OK) {
		uw_logf(lg, UW_LOG_WARN, "listen: %s/%s: %s", server, pick->busid, err);
		if (o->busid) {
			pick->tried_at = now_ms();
		} else {
			/* Gone, taken or broken there: forget it, so that the next connection from
			 * that server asks for its device list again (which may hold new devices).
			 */
			size_t i = (size_t)(pick - v);
			memmove(&v[i], &v[i + 1], (*n - i - 1) * sizeof *v);
			(*n)--;
		}
		return;
	}
	pick->attached = true;
	pick->a = a;
	pick->tried_at = 0;
	uw_logf(lg, UW_LOG_INFO, "listen: attached %s/%s (%04x:%04x, %s) on port %u", server,
	        pick->busid, a.dev.id_vendor, a.dev.id_product, uw_speed_name(a.speed), a.port);
}

static int attach_listen(const struct opts *o)
{
	uw_logger lg;
	cli_logger(&lg, UW_LOG_INFO);
	if (!cli_vhci_check_loaded("attach"))
		return 1;
	uw_addr addr;
	char err[1024];
	if (uw_addr_parse(o->listen, true, &addr, err, sizeof err)) {
		cli_err("attach: --listen: %s", err);
		return 2;
	}
	/* Signals first: one that came after the socket file exists would leave it behind. */
	if (!catch_signals())
		return 1;
	int fds[UW_NET_MAX_LISTEN];
	size_t nfd = 0;
	if (uw_addr_listen(&addr, fds, UW_NET_MAX_LISTEN, &nfd, err, sizeof err)) {
		cli_err("attach: %s", err);
		return 1;
	}
	char sockfile[UW_ADDR_PATH_MAX + 16];
	bool has_file = uw_addr_listen_path(&addr, sockfile, sizeof sockfile);
	char name[UW_ADDR_PATH_MAX + 300];
	uw_addr_format(&addr, name, sizeof name);
	uw_logf(&lg, UW_LOG_INFO,
	        "listen: waiting on %s for servers that dial in (usbwire serve --connect); "
	        "attaching %s%s (SIGINT/SIGTERM to detach and stop)",
	        name, o->busid ? o->busid : "every device offered", o->busid ? " of each" : "");
	static struct offered v[MAX_OFFERED];
	size_t n = 0;
	while (!sig_seen) {
		struct pollfd p[UW_NET_MAX_LISTEN + 1];
		for (size_t i = 0; i < nfd; i++)
			p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
		p[nfd] = (struct pollfd){.fd = sig_pipe[0], .events = POLLIN};
		int r = poll(p, nfd + 1, WATCH_MS);
		if (r < 0 && errno != EINTR)
			break;
		/* Attached devices that dropped (server gone, detached by hand) are imported again
		 * when their server offers them again. */
		for (size_t i = 0; i < n; i++) {
			if (!v[i].attached)
				continue;
			uint32_t status = 0;
			enum watch w = watch_port(&v[i].a, &status);
			if (w == W_OURS || w == W_UNREADABLE)
				continue;
			if (w == W_ERROR)
				uw_vhci_detach(cli_vhci_root(), v[i].a.port, NULL);
			/* The record is ours only while the port holds our device or nothing. */
			if (w != W_OTHER)
				uw_vhci_record_remove(cli_vhci_record_dir(), v[i].a.port);
			v[i].attached = false;
			uw_logf(&lg, UW_LOG_INFO,
			        "listen: dropped: %s/%s on port %u; it is attached again when its "
			        "server dials in",
			        v[i].server, v[i].busid, v[i].a.port);
		}
		for (size_t i = 0; r > 0 && i < nfd && !sig_seen; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			int c = accept4(fds[i], NULL, NULL, SOCK_CLOEXEC);
			if (c < 0) {
				/* Out of descriptors, the connection stays in the backlog and the
				 * listener stays readable: wait instead of spinning on it. */
				short rev = 0;
				if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
				    errno == ENOMEM)
					wait_or_signal(WATCH_MS, -1, &rev);
				continue;
			}
			uw_net_tune(c);
			listen_one(o, c, v, &n, &lg);
		}
	}
	unsigned detached = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t status = 0;
		if (!v[i].attached || watch_port(&v[i].a, &status) != W_OURS)
			continue;
		uw_vhci_record_remove(cli_vhci_record_dir(), v[i].a.port);
		int se = 0;
		if (uw_vhci_detach(cli_vhci_root(), v[i].a.port, &se) == UW_OK)
			detached++;
		else
			uw_logf(&lg, UW_LOG_WARN, "listen: detaching port %u failed: %s",
			        v[i].a.port, se ? strerror(se) : "error");
	}
	for (size_t i = 0; i < nfd; i++)
		close(fds[i]);
	if (has_file)
		unlink(sockfile);
	uw_logf(&lg, UW_LOG_INFO, "listen: signal %d: detached %u port(s); exiting", (int)sig_seen,
	        detached);
	return 0;
}

/* ---- Command ------------------------------------------------------------------------------ */

static void attach_usage(FILE *f)
{
	fprintf(f,
	        "usage: usbwire attach -r ADDR -b BUSID [--json] [--persist]\n"
	        "       usbwire attach --listen ADDR [-b BUSID]\n"
	        "  -r, --remote ADDR        the server: HOST[:PORT] (port 3240), unix:PATH, "
	        "vsock:CID:PORT,\n"
	        "                           fc-vsock:PATH:PORT\n"
	        "  -l, --listen ADDR        wait for servers that dial in (serve --connect) and\n"
	        "                           attach BUSID, or every device they offer; keep\n"
	        "                           listening; SIGINT or SIGTERM detach and exit.\n"
	        "                           Whatever reaches ADDR can offer devices: listen\n"
	        "                           only where trusted servers are\n"
	        "  -b, --busid BUSID         the device ('usbwire list -r HOST' shows them)\n"
	        "  -p, --persist             stay in the foreground; re-attach whenever the\n"
	        "                            device drops (backoff 1 s .. 60 s); SIGINT or\n"
	        "                            SIGTERM detach and exit\n"
	        "  -j, --json                machine-readable output\n"
	        "  -t, --timeout S           seconds to wait for the server (5)\n");
}

int cmd_attach(int argc, char **argv)
{
	static const struct option lopts[] = {
	    {"remote", required_argument, NULL, 'r'}, {"listen", required_argument, NULL, 'l'},
	    {"busid", required_argument, NULL, 'b'},  {"persist", no_argument, NULL, 'p'},
	    {"json", no_argument, NULL, 'j'},         {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	struct opts o = {.timeout_ms = 5000};
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "r:l:b:pjt:h", lopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			o.remote = optarg;
			break;
		case 'l':
			o.listen = optarg;
			break;
		case 'b':
			o.busid = optarg;
			break;
		case 'p':
			o.persist = true;
			break;
		case 'j':
			o.json = true;
			break;
		case 't':
			o.timeout_ms = atoi(optarg) * 1000;
			if (o.timeout_ms <= 0) {
				cli_err("attach: invalid timeout \"%s\"", optarg);
				return 2;
			}
			break;
		case 'h':
			attach_usage(stdout);
			return 0;
		default:
			attach_usage(stderr);
			return 2;
		}
	}
	if (o.listen && !o.remote && !o.persist && !o.json && optind == argc) {
		if (o.busid && (!o.busid[0] || strlen(o.busid) >= UW_BUSID_SIZE ||
		                strpbrk(o.busid, " \t\n"))) {
			cli_err("attach: invalid busid \"%s\" (1 to 31 characters, no blanks)",
			        o.busid);
			return 2;
		}
		return attach_listen(&o);
	}
	if (!o.remote || !o.busid || o.listen || optind < argc) {
		attach_usage(stderr);
		return 2;
	}
	if (!o.busid[0] || strlen(o.busid) >= UW_BUSID_SIZE || strpbrk(o.busid, " \t\n")) {
		cli_err("attach: invalid busid \"%s\" (1 to 31 characters, no blanks)", o.busid);
		return 2;
	}
	if (!cli_addr(o.remote, &o.addr))
		return 2;
	if (o.addr.kind == UW_ADDR_TCP) {
		snprintf(o.host, sizeof o.host, "%s", o.addr.host);
		o.port = (uint16_t)o.addr.port;
	} else {
		uw_addr_format(&o.addr, o.host, sizeof o.host);
		o.port = 0;
	}
	if (o.persist)
		return persist(&o);
	if (!cli_vhci_check_loaded("attach"))
		return 1;
	char err[1024];
	struct attached a;
	if (attach_once(&o, &a, false, err, sizeof err) != UW_OK) {
		cli_err("attach: %s", err);
		return 1;
	}
	print_attached(&o, &a);
	return 0;
}
