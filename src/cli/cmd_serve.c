/* SPDX-License-Identifier: MIT */
/*
 * usbwire serve [--listen ADDR[:PORT]]... [--export SPEC]...
 * Exports devices over USB/IP until SIGINT/SIGTERM; then cancels what is in flight, lets every
 * device release (storage flushes), and exits.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cli.h"
#include "uw_emu.h"
#include "uw_loop.h"
#include "uw_addr.h"
#include "uw_dialer.h"
#include "uw_net.h"
#include "uw_server.h"
#include "uw_usbhost.h"

/* Emulated devices live on a bus of their own; the n-th --export of them is 99-n. */
#define EMU_BUSNUM 99u

struct serve_state {
	uw_loop *loop;
	uw_server *srv;
	uw_logger log;
	int sigfd;
	int signals;
	uw_usbhost *usb;                       /* real devices, when a usb: spec was given */
	uw_dialer *dialers[UW_NET_MAX_LISTEN]; /* --connect: reverse connections */
	size_t ndialers;
};

/* The device list changed: reverse connections follow it. */
static void on_change(void *arg)
{
	struct serve_state *st = arg;
	for (size_t i = 0; i < st->ndialers; i++)
		uw_dialer_changed(st->dialers[i]);
}

/* uw_usbhost hands over devices its rules select, now and on hot-plug. */
static int usb_add(void *user, uw_dev *d)
{
	struct serve_state *st = user;
	int rc = uw_server_add_device(st->srv, d);
	if (rc == UW_OK)
		uw_logf(&st->log, UW_LOG_INFO, "export %s: %s (%04x:%04x, %s)", d->info.busid,
		        d->spec, d->info.id_vendor, d->info.id_product,
		        uw_speed_name(d->info.speed));
	return rc;
}

static void usb_remove(void *user, uw_dev *d)
{
	struct serve_state *st = user;
	uw_server_remove_device(st->srv, d);
}

static void serve_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: usbwire serve [--listen ADDR]... [--export SPEC]... [OPTIONS]\n"
	    "\n"
	    "  -l, --listen ADDR         listen there (repeatable); default every local address,\n"
	    "                            IPv4 and IPv6, port 3240. Examples: 127.0.0.1,\n"
	    "                            127.0.0.1:3241, [::1]:3240, :3241, tcp:HOST:PORT,\n"
	    "                            unix:PATH (mode 0660, removed at exit),\n"
	    "                            vsock:any:PORT, vsock:CID:PORT, fc-vsock:PATH:PORT\n"
	    "                            (Firecracker's guest connections, socket PATH_PORT)\n"
	    "  -c, --connect ADDR        reverse connection: dial ADDR (same forms) and serve the\n"
	    "                            client there as if it had dialed (usbwire attach\n"
	    "                            --listen); one connection per free device, redialed\n"
	    "                            when it ends. Without --listen, nothing listens.\n"
	    "  -e, --export SPEC         export a device (repeatable):\n");
	for (const struct uw_emu_kind *k = uw_emu_kinds; k->kind; k++)
		if (strlen(k->usage) > 34) /* too long for the column: help on its own line */
			fprintf(f, "                              %s\n%65s%s\n", k->usage, "",
			        k->help);
		else
			fprintf(f, "                              %-34s %s\n", k->usage, k->help);
	fprintf(f, "                              %-34s %s\n", "usb:BUSID",
	        "the local USB device there (usbwire list -l), whenever present");
	fprintf(f, "                              %-34s %s\n", "usb:VID:PID[:SERIAL]",
	        "every matching local device, also those plugged in later");
	fprintf(f, "      --handshake-timeout S seconds a client has to send its request (10)\n"
	           "      --first-byte-timeout S\n"
	           "                            seconds a new connection has to send its first\n"
	           "                            byte (3)\n"
	           "      --max-sessions N      connections at once (256; lowered to what the\n"
	           "                            open-file limit allows)\n"
	           "      --max-per-peer N      connections at once from one IP address (16;\n"
	           "                            unix and vsock peers are not limited)\n"
	           "  -v, --verbose             log every connection\n"
	           "  -q, --quiet               log only warnings and errors\n");
}

/* Descriptors open now (0 if /proc is not there). */
static unsigned open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return 0;
	unsigned n = 0;
	for (struct dirent *e; (e = readdir(d));)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n ? n - 1 : 0; /* not counting the directory's own */
}

/*
 * Every session holds one descriptor; the rest of the process needs some too (listeners, the
 * loop, the signalfd, image files, libusb and the devices it opens, later hot-plugged ones).
 * Raises the soft RLIMIT_NOFILE toward what max_sessions needs (up to the hard limit), and
 * lowers max_sessions to what is left of the limit otherwise, saying so once: past the limit
 * accept() fails and connections wait in the backlog instead of being served or refused.
 */
static unsigned clamp_sessions(unsigned max_sessions, bool given, size_t nlisten, size_t nexport,
                               const uw_logger *log)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
		return max_sessions;
	unsigned base = open_fds();
	if (base < 3)
		base = 3;
	/* loop, post queue, signalfd; two listeners per --listen; two per device; 32 spare */
	rlim_t headroom = (rlim_t)base + 3 + 2 * (nlisten ? nlisten : 1) + 2 * nexport + 32;
	rlim_t want = (rlim_t)max_sessions + headroom;
	if (rl.rlim_cur < want) {
		struct rlimit up = rl;
		up.rlim_cur =
		    rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want ? want : rl.rlim_max;
		if (up.rlim_cur > rl.rlim_cur && setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	if (rl.rlim_cur >= want)
		return max_sessions;
	unsigned n = rl.rlim_cur > headroom ? (unsigned)(rl.rlim_cur - headroom) : 1;
	uw_logf(log, UW_LOG_WARN,
	        "--max-sessions %u%s is more than the open-file limit allows (%llu, of which about "
	        "%llu are kept for listeners, devices and the log): serving at most %u "
	        "connections at once; raise the limit (ulimit -n, or LimitNOFILE= for a systemd "
	        "service) to serve more",
	        max_sessions, given ? "" : " (the default)", (unsigned long long)rl.rlim_cur,
	        (unsigned long long)headroom, n);
	return n;
}

static void on_stopped(void *arg)
{
	struct serve_state *st = arg;
	uw_loop_stop(st->loop);
}

static void on_signal(void *arg, uint32_t events)
{
	struct serve_state *st = arg;
	struct signalfd_siginfo si;
	(void)events;
	while (read(st->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (++st->signals > 1) {
			uw_logf(&st->log, UW_LOG_WARN, "second signal: exiting now");
			uw_loop_stop(st->loop);
			return;
		}
		uw_logf(&st->log, UW_LOG_INFO, "%s: shutting down (send again to exit at once)",
		        strsignal((int)si.ssi_signo));
		for (size_t i = 0; i < st->ndialers; i++)
			uw_dialer_stop(st->dialers[i]);
		uw_server_shutdown(st->srv, 5000, on_stopped, st);
	}
}

int cmd_serve(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"listen", required_argument, NULL, 'l'},
	    {"connect", required_argument, NULL, 'c'},
	    {"export", required_argument, NULL, 'e'},
	    {"handshake-timeout", required_argument, NULL, 'H'},
	    {"max-sessions", required_argument, NULL, 'M'},
	    {"max-per-peer", required_argument, NULL, 'P'},
	    {"first-byte-timeout", required_argument, NULL, 'F'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *listens[UW_NET_MAX_LISTEN], *connects[UW_NET_MAX_LISTEN];
	size_t nconnect = 0;
	char sockfiles[UW_NET_MAX_LISTEN][UW_ADDR_PATH_MAX + 16];
	size_t nsockfiles = 0;
	char any_addr[16];
	const char *exports[256];
	size_t nlisten = 0, nexport = 0;
	int level = UW_LOG_INFO;
	unsigned handshake = 10, max_sessions = 256, max_per_peer = 16, first_byte = 3;
	bool sessions_given = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "l:c:e:vqh", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (nconnect == UW_NET_MAX_LISTEN) {
				cli_err("serve: at most %d --connect", UW_NET_MAX_LISTEN);
				return 2;
			}
			connects[nconnect++] = optarg;
			break;
		case 'l':
			if (nlisten == UW_NET_MAX_LISTEN) {
				cli_err("serve: at most %d --listen", UW_NET_MAX_LISTEN);
				return 2;
			}
			listens[nlisten++] = optarg;
			break;
		case 'e':
			if (nexport == sizeof exports / sizeof *exports) {
				cli_err("serve: at most 256 --export");
				return 2;
			}
			exports[nexport++] = optarg;
			break;
		case 'H':
		case 'M':
		case 'P':
		case 'F': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);
			if (*end || v == 0 || v > 100000) {
				cli_err("serve: invalid number \"%s\"", optarg);
				return 2;
			}
			if (c == 'H')
				handshake = (unsigned)v;
			if (c == 'M') {
				max_sessions = (unsigned)v;
				sessions_given = true;
			}
			if (c == 'P')
				max_per_peer = (unsigned)v;
			if (c == 'F')
				first_byte = (unsigned)v;
			break;
		}
		case 'v':
			level = UW_LOG_DEBUG;
			break;
		case 'q':
			level = UW_LOG_WARN;
			break;
		case 'h':
			serve_usage(stdout);
			return 0;
		default:
			serve_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		cli_err("serve: unexpected argument \"%s\"", argv[optind]);
		return 2;
	}

	struct serve_state st = {.sigfd = -1};
	cli_logger(&st.log, level);
	signal(SIGPIPE, SIG_IGN);
	max_sessions = clamp_sessions(max_sessions, sessions_given, nlisten, nexport, &st.log);
	/* SIGINT and SIGTERM are read from a signalfd on the loop. Blocked before any thread
	 * starts (device workers, dialers), so that every thread inherits the mask: a thread
	 * that does not block them would take the signal and die of it. */
	sigset_t early;
	sigemptyset(&early);
	sigaddset(&early, SIGINT);
	sigaddset(&early, SIGTERM);
	sigprocmask(SIG_BLOCK, &early, NULL);
	st.loop = uw_loop_new();
	struct uw_server_config cfg = {
	    .loop = st.loop,
	    .log = st.log,
	    .handshake_ms = handshake * 1000,
	    .max_sessions = max_sessions,
	    .max_per_peer = max_per_peer,
	    .first_byte_ms = first_byte * 1000,
	    .on_change = on_change,
	    .on_change_arg = &st,
	};
	st.srv = st.loop ? uw_server_new(&cfg) : NULL;
	if (!st.srv) {
		cli_err("serve: out of memory");
		return 1;
	}
	int rc = 1;
	unsigned emu_n = 0;
	for (size_t i = 0; i < nexport; i++) {
		char err[512] = "";
		uw_dev *d = NULL;
		if (!strncmp(exports[i], "emu:", 4)) {
			char busid[UW_BUSID_SIZE];
			emu_n++;
			snprintf(busid, sizeof busid, "%u-%u", EMU_BUSNUM, emu_n);
			if (uw_emu_create(exports[i], busid, EMU_BUSNUM, emu_n, st.loop, &st.log,
			                  &d, err, sizeof err) != UW_OK) {
				cli_err("%s", err);
				goto out;
			}
		} else if (!strncmp(exports[i], "usb:", 4)) {
			if (!st.usb) {
				struct uw_usbhost_config uc = {.loop = st.loop,
				                               .log = st.log,
				                               .add = usb_add,
				                               .remove = usb_remove,
				                               .user = &st};
				if (uw_usbhost_new(&uc, &st.usb, err, sizeof err) != UW_OK) {
					cli_err("serve: %s", err);
					goto out;
				}
			}
			if (uw_usbhost_add_rule(st.usb, exports[i], err, sizeof err) != UW_OK) {
				cli_err("serve: cannot export \"%s\": %s", exports[i], err);
				goto out;
			}
			continue; /* devices come through usb_add() once the rules are in */
		} else {
			cli_err("serve: cannot export \"%s\": a spec starts with emu: (emulated "
			        "device) or usb: (real device)",
			        exports[i]);
			goto out;
		}
		if (uw_server_add_device(st.srv, d) != UW_OK) {
			cli_err("serve: duplicate busid %s", d->info.busid);
			d->ops->destroy(d);
			goto out;
		}
		uw_logf(&st.log, UW_LOG_INFO, "export %s: %s (%04x:%04x, %s)", d->info.busid,
		        d->spec, d->info.id_vendor, d->info.id_product,
		        uw_speed_name(d->info.speed));
	}
	if (st.usb) {
		char err[512];
		if (uw_usbhost_start(st.usb, err, sizeof err) != UW_OK) {
			cli_err("serve: %s", err);
			goto out;
		}
	}
	if (nexport == 0)
		uw_logf(&st.log, UW_LOG_WARN, "no --export given: the device list is empty");
	for (size_t i = 0; i < nconnect; i++) {
		char err[600];
		uw_addr addr;
		if (uw_addr_parse(connects[i], false, &addr, err, sizeof err)) {
			cli_err("serve: --connect: %s", err);
			goto out;
		}
		st.dialers[i] = uw_dialer_new(st.loop, st.srv, &addr, st.log);
		if (!st.dialers[i]) {
			cli_err("serve: --connect %s: out of memory or threads", connects[i]);
			goto out;
		}
		st.ndialers++;
		char name[UW_ADDR_PATH_MAX + 300];
		uw_addr_format(&addr, name, sizeof name);
		uw_logf(
		    &st.log, UW_LOG_INFO,
		    "connecting to %s: one connection per free device, the client there imports",
		    name);
		uw_dialer_changed(st.dialers[i]);
	}
	if (nlisten == 0 && nconnect == 0) { /* every local address, IPv4 and IPv6 */
		snprintf(any_addr, sizeof any_addr, ":%u", UW_DEFAULT_PORT);
		listens[nlisten++] = any_addr;
	}
	for (size_t i = 0; i < nlisten; i++) {
		char err[600];
		uw_addr addr;
		if (uw_addr_parse(listens[i], true, &addr, err, sizeof err)) {
			cli_err("serve: --listen: %s", err);
			goto out;
		}
		int fds[UW_NET_MAX_LISTEN];
		size_t n;
		if (uw_addr_listen(&addr, fds, UW_NET_MAX_LISTEN, &n, err, sizeof err)) {
			cli_err("serve: %s", err);
			goto out;
		}
		/* Socket files this server created are removed when it exits. */
		if (nsockfiles < UW_NET_MAX_LISTEN &&
		    uw_addr_listen_path(&addr, sockfiles[nsockfiles], sizeof sockfiles[0]))
			nsockfiles++;
		for (size_t k = 0; k < n; k++) {
			char name[UW_ADDR_PATH_MAX + 300];
			if (addr.kind == UW_ADDR_TCP)
				uw_net_sock_name(fds[k], name, sizeof name);
			else if (addr.kind == UW_ADDR_FC_VSOCK)
				snprintf(name, sizeof name,
				         "unix:%s (Firecracker's socket for "
				         "guest connections to vsock port %u)",
				         sockfiles[nsockfiles - 1], addr.port);
			else
				uw_addr_format(&addr, name, sizeof name);
			uw_server_add_listener(st.srv, fds[k]);
			uw_logf(&st.log, UW_LOG_INFO, "listening on %s", name);
		}
	}
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	st.sigfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (st.sigfd < 0 || uw_loop_add_fd(st.loop, st.sigfd, UW_EV_IN, on_signal, &st)) {
		cli_err("serve: signalfd: %s", strerror(errno));
		goto out;
	}
	rc = uw_loop_run(st.loop) == 0 ? 0 : 1;
	uw_logf(&st.log, UW_LOG_INFO, "stopped");
out:
	if (st.sigfd >= 0) {
		uw_loop_del_fd(st.loop, st.sigfd);
		close(st.sigfd);
	}
	for (size_t i = 0; i < st.ndialers; i++)
		uw_dialer_stop(st.dialers[i]);
	uw_server_free(st.srv);
	for (size_t i = 0; i < st.ndialers; i++)
		uw_dialer_free(st.dialers[i]);
	uw_usbhost_free(st.usb); /* after the server destroyed the devices */
	uw_loop_free(st.loop);
	for (size_t i = 0; i < nsockfiles; i++)
		unlink(sockfiles[i]);
	return rc;
}
