/* SPDX-License-Identifier: MIT */
/*
 * usbwire bench -r ADDR -b BUSID [--seconds S | --count N] [--sizes LIST] [--depths LIST]
 *               [--json]
 *
 * Measures, through the userspace client library, against a source/sink device (usbwire's
 * emu:sink or the kernel's usb_f_ss_lb gadget exported by usbip-host): control round trips
 * (GET_DESCRIPTOR, queue depth 1 and 32) and bulk IN/OUT throughput for each URB size and queue
 * depth. Bulk OUT data follows the device's pattern (detected from its IN data) so a verifying
 * sink accepts it.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "uw_uclient.h"
#include "uw_usbdesc.h"

#define MAX_LIST  16
#define MAX_DEPTH 64

struct result {
	const char *test;
	uint32_t size;
	unsigned depth;
	uint64_t ops;
	uint64_t bytes;
	uint64_t errors;
	double secs;
};

struct run {
	uw_uclient *c;
	double until;
	uint64_t left; /* URBs still to submit; UINT64_MAX: until the deadline */
	uint64_t ops, bytes, errors;
	int outstanding;
	bool stop;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_done(uw_ureq *r)
{
	struct run *run = r->user;
	run->outstanding--;
	if (r->status == 0) {
		run->ops++;
		run->bytes += r->actual;
	} else {
		run->errors++;
	}
	if (!run->stop && run->left > 0 && now_s() < run->until &&
	    uw_uclient_submit(run->c, r) == 0) {
		run->outstanding++;
		if (run->left != UINT64_MAX)
			run->left--;
	}
}

/* Keeps depth copies of tmpl in flight for secs seconds, or, when count is not 0, until exactly
 * count URBs have been submitted and answered (a workload of known size, whatever the speed);
 * fills res. Returns false if the connection failed. */
static bool measure(uw_uclient *c, const uw_ureq *tmpl, uint8_t *bufs, unsigned depth, double secs,
                    uint64_t count, struct result *res)
{
	/* The requests outlive this call if the connection fails: uw_uclient_close() still
	 * completes them, so they are static and their callbacks are cleared first. */
	static uw_ureq reqs[MAX_DEPTH];
	struct run run = {.c = c, .left = count ? count : UINT64_MAX};
	double t0 = now_s();
	/* A counted run has no deadline: it ends when its URBs are answered (or the link fails). */
	run.until = count ? HUGE_VAL : t0 + secs;
	for (unsigned i = 0; i < depth && run.left > 0; i++) {
		reqs[i] = *tmpl;
		reqs[i].buf = tmpl->len ? bufs + (size_t)i * tmpl->len : NULL;
		reqs[i].cb = on_done;
		reqs[i].user = &run;
		if (uw_uclient_submit(c, &reqs[i]) == 0) {
			run.outstanding++;
			if (run.left != UINT64_MAX)
				run.left--;
		}
	}
	while (run.outstanding > 0) {
		if (uw_uclient_poll(c, 1000) < 0)
			break;
		if (!count && now_s() > run.until + 10) {
			run.stop = true;
			for (unsigned i = 0; i < depth; i++)
				uw_uclient_unlink(c, &reqs[i]);
		}
	}
	if (run.outstanding > 0)
		for (unsigned i = 0; i < depth; i++)
			reqs[i].cb = NULL;
	res->secs = now_s() - t0;
	res->ops = run.ops;
	res->bytes = run.bytes;
	res->errors = run.errors;
	res->depth = depth;
	res->size = tmpl->len;
	return run.outstanding == 0;
}

static int parse_list(const char *s, uint32_t *out, int max, bool sizes)
{
	int n = 0;
	char *copy = strdup(s), *save = NULL;
	for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) {
		char *end;
		unsigned long v = strtoul(t, &end, 10);
		if (sizes && (*end == 'k' || *end == 'K'))
			v *= 1024, end++;
		else if (sizes && (*end == 'm' || *end == 'M'))
			v *= 1024 * 1024, end++;
		if (*end || v == 0 || v > (sizes ? UW_MAX_TRANSFER_LEN : MAX_DEPTH)) {
			free(copy);
			return -1;
		}
		out[n++] = (uint32_t)v;
	}
	free(copy);
	return n;
}

static void bench_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: usbwire bench -r ADDR -b BUSID [OPTIONS]\n"
	    "  -r, --remote ADDR        the server: HOST[:PORT], unix:PATH, vsock:CID:PORT, ...\n"
	    "  -b, --busid BUSID         a source/sink device (emu:sink, usb_f_ss_lb)\n"
	    "  -s, --seconds S           per measurement (default 1)\n"
	    "  -n, --count N             N URBs per measurement instead of a duration\n"
	    "      --sizes LIST          bulk URB sizes (default 4k,64k,1m)\n"
	    "      --depths LIST         queue depths (default 1,8,32)\n"
	    "  -j, --json                machine-readable output\n");
}

static const char *human(double bytes_per_s, char *buf, size_t n)
{
	snprintf(buf, n, "%.1f MB/s", bytes_per_s / 1e6);
	return buf;
}

int cmd_bench(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"remote", required_argument, NULL, 'r'},
	    {"busid", required_argument, NULL, 'b'},
	    {"seconds", required_argument, NULL, 's'},
	    {"sizes", required_argument, NULL, 'S'},
	    {"depths", required_argument, NULL, 'D'},
	    {"json", no_argument, NULL, 'j'},
	    {"count", required_argument, NULL, 'n'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *remote = NULL, *busid = NULL;
	double secs = 1.0;
	uint64_t count = 0;
	bool json = false;
	uint32_t sizes[MAX_LIST] = {4096, 65536, 1048576}, depths[MAX_LIST] = {1, 8, 32};
	int nsizes = 3, ndepths = 3;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "r:b:s:n:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			remote = optarg;
			break;
		case 'b':
			busid = optarg;
			break;
		case 's':
			secs = atof(optarg);
			if (secs <= 0 || secs > 600) {
				cli_err("bench: invalid --seconds \"%s\"", optarg);
				return 2;
			}
			break;
		case 'n': {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(optarg, &end, 10);
			if (errno || *end || optarg[0] == '-' || v == 0 || v > 1000000000ULL) {
				cli_err("bench: invalid --count \"%s\" (1..1000000000)", optarg);
				return 2;
			}
			count = v;
			break;
		}
		case 'S':
			nsizes = parse_list(optarg, sizes, MAX_LIST, true);
			if (nsizes <= 0) {
				cli_err(
				    "bench: invalid --sizes \"%s\" (e.g. 4k,64k,1m; at most 16m)",
				    optarg);
				return 2;
			}
			break;
		case 'D':
			ndepths = parse_list(optarg, depths, MAX_LIST, false);
			if (ndepths <= 0) {
				cli_err("bench: invalid --depths \"%s\" (1..%d)", optarg,
				        MAX_DEPTH);
				return 2;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			bench_usage(stdout);
			return 0;
		default:
			bench_usage(stderr);
			return 2;
		}
	}
	if (!remote || !busid) {
		bench_usage(stderr);
		return 2;
	}
	char err[512];
	uw_addr addr;
	if (!cli_addr(remote, &addr))
		return 2;
	uw_uclient *cl;
	uw_usb_device dev;
	int rc = uw_uclient_open(&addr, busid, 5000, &cl, &dev, err, sizeof err);
	if (rc) {
		cli_err("bench: %s %s: %s", remote, busid, err);
		return 1;
	}
	int status = 1;
	uint8_t *bufs = NULL;
	/* Find the first interface with a bulk IN and a bulk OUT endpoint. */
	uint8_t ddesc[18], chdr[9];
	static uint8_t cfg[65535];
	uw_device_desc dd;
	uw_config_desc cd;
	uw_desc_err de;
	if (uw_uclient_control(cl, 0x80, 6, 0x0100, 0, ddesc, 18, 5000) != 18 ||
	    uw_device_desc_parse(ddesc, 18, &dd, &de) != UW_OK ||
	    uw_uclient_control(cl, 0x80, 6, 0x0200, 0, chdr, 9, 5000) != 9 ||
	    uw_config_header_parse(chdr, 9, &cd, &de) != UW_OK) {
		cli_err("bench: cannot read the device's descriptors%s%s",
		        uw_uclient_error(cl)[0] ? ": " : "", uw_uclient_error(cl));
		goto out;
	}
	int n = uw_uclient_control(cl, 0x80, 6, 0x0200, 0, cfg, cd.total_length, 5000);
	uw_config_iter it;
	if (n != cd.total_length || uw_config_iter_init(&it, cfg, (size_t)n, &de) != UW_OK) {
		cli_err("bench: invalid configuration descriptor");
		goto out;
	}
	/* A source/sink is a vendor-specific interface (class 0xff) with a bulk IN and a bulk OUT
	 * endpoint in altsetting 0. Anything else (storage, serial...) would take the benchmark's
	 * data as commands: refuse it. */
	uint8_t ep_in = 0, ep_out = 0;
	int iface = -1, cur_class = -1, cur_iface = -1;
	uw_desc_item item;
	while (uw_config_iter_next(&it, &item) == 1) {
		if (item.kind == UW_DK_INTERFACE) {
			cur_class = item.u.intf.interface_class;
			cur_iface = item.u.intf.interface_number;
			continue;
		}
		if (item.kind != UW_DK_ENDPOINT || item.alt != 0 ||
		    item.u.ep.xfer != UW_XFER_BULK || cur_class != 0xff ||
		    (iface >= 0 && cur_iface != iface))
			continue;
		if (item.u.ep.dir == UW_DIR_IN && !ep_in)
			ep_in = item.u.ep.number;
		if (item.u.ep.dir == UW_DIR_OUT && !ep_out)
			ep_out = item.u.ep.number;
		iface = cur_iface;
	}
	if (!ep_in || !ep_out) {
		cli_err(
		    "bench: %s is not a source/sink device (no vendor-specific interface with "
		    "bulk IN and OUT endpoints); use emu:sink or the kernel's usb_f_ss_lb gadget",
		    busid);
		goto out;
	}
	/* Exported by usbip-host, a device is unconfigured until the client configures it. */
	if (uw_uclient_control(cl, 0x00, 9, cd.configuration_value, 0, NULL, 0, 5000) < 0) {
		cli_err("bench: SET_CONFIGURATION failed");
		goto out;
	}
	uint32_t maxsize = 512;
	for (int i = 0; i < nsizes; i++)
		maxsize = sizes[i] > maxsize ? sizes[i] : maxsize;
	bufs = malloc((size_t)maxsize * MAX_DEPTH);
	if (!bufs) {
		cli_err("bench: out of memory");
		goto out;
	}
	/* The sink's pattern: zeros, or byte i = i % 63 (Linux gadget zero, usbtest). */
	int pattern = 0;
	if (uw_uclient_transfer(cl, ep_in, UW_DIR_IN, UW_XFER_BULK, bufs, 512, 5000) == 512)
		for (int i = 0; i < 512; i++)
			if (bufs[i] != 0)
				pattern = 1;
	char per_test[48];
	if (count)
		snprintf(per_test, sizeof per_test, "%llu URBs", (unsigned long long)count);
	else
		snprintf(per_test, sizeof per_test, "%.1f s", secs);
	if (!json)
		printf("usbwire bench: %s %s (%04x:%04x, %s), bulk IN ep %u, OUT ep %u, "
		       "pattern %d, %s per test\n\n%-24s %8s %5s %12s %12s %7s\n",
		       remote, busid, dev.id_vendor, dev.id_product, uw_speed_name(dev.speed),
		       ep_in, ep_out, pattern, per_test, "test", "size", "depth", "rate",
		       "throughput", "errors");
	struct result results[2 + 2 * MAX_LIST * MAX_LIST];
	int nres = 0;
	unsigned cdepth[2] = {1, 32};
	for (int i = 0; i < 2; i++) {
		uw_ureq t = {.ep = 0, .xfer = UW_XFER_CONTROL, .len = 18};
		t.setup = (uw_setup){0x80, 6, 0x0100, 0, 18};
		struct result *r = &results[nres++];
		r->test = "control GET_DESCRIPTOR";
		if (!measure(cl, &t, bufs, cdepth[i], secs, count, r))
			goto broken;
		if (!json)
			printf("%-24s %6u B %5u %8.0f/s %12s %7llu\n", r->test, 18, r->depth,
			       (double)r->ops / r->secs, "", (unsigned long long)r->errors);
	}
	for (int dir = 0; dir < 2; dir++) {
		for (int s = 0; s < nsizes; s++) {
			if (dir == 1)
				for (uint32_t k = 0; k < sizes[s]; k++)
					bufs[k] = pattern ? (uint8_t)(k % 63) : 0;
			for (int d = 0; d < ndepths; d++) {
				if (dir == 1)
					for (uint32_t q = 1; q < depths[d]; q++)
						memcpy(bufs + (size_t)q * sizes[s], bufs, sizes[s]);
				uw_ureq t = {.ep = dir ? ep_out : ep_in,
				             .dir = dir ? UW_DIR_OUT : UW_DIR_IN,
				             .xfer = UW_XFER_BULK,
				             .len = sizes[s]};
				struct result *r = &results[nres++];
				r->test = dir ? "bulk OUT" : "bulk IN";
				if (!measure(cl, &t, bufs, depths[d], secs, count, r))
					goto broken;
				char tp[32];
				if (!json)
					printf("%-24s %6u K %5u %8.0f/s %12s %7llu\n", r->test,
					       sizes[s] / 1024, r->depth, (double)r->ops / r->secs,
					       human((double)r->bytes / r->secs, tp, sizeof tp),
					       (unsigned long long)r->errors);
			}
		}
	}
	if (json) {
		printf("{\"remote\":");
		cli_json_str(remote);
		printf(",\"busid\":");
		cli_json_str(busid);
		if (count)
			printf(",\"count\":%llu,\"results\":[", (unsigned long long)count);
		else
			printf(",\"seconds\":%.3f,\"results\":[", secs);
		for (int i = 0; i < nres; i++) {
			struct result *r = &results[i];
			printf("%s{\"test\":\"%s\",\"size\":%u,\"depth\":%u,\"ops\":%llu,"
			       "\"bytes\":%llu,\"errors\":%llu,\"seconds\":%.6f,"
			       "\"ops_per_s\":%.1f,\"bytes_per_s\":%.1f}",
			       i ? "," : "", r->test, r->size, r->depth, (unsigned long long)r->ops,
			       (unsigned long long)r->bytes, (unsigned long long)r->errors, r->secs,
			       (double)r->ops / r->secs, (double)r->bytes / r->secs);
		}
		printf("]}\n");
	}
	status = 0;
	goto out;
broken:
	cli_err("bench: connection failed: %s", uw_uclient_error(cl));
out:
	uw_uclient_close(cl);
	free(bufs);
	return status;
}
