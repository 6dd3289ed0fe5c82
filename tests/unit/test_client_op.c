/* SPDX-License-Identifier: MIT */
/*
 * test_client_op.c - the op-phase client (uw_client_list, uw_client_import) against a hostile
 * server: the test plays the server on a socketpair, queues a truncated, oversized or
 * inconsistent reply (or none), and checks that the client fails with the right error and a
 * clear message, sent exactly the request the protocol defines, and never sized memory by what
 * the server merely announced (an announced 0xffffffff devices is refused from the 12-byte header
 * alone, before anything is allocated or read for them).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "uw_client.h"
#include "uw_test.h"

#define TIMEOUT_MS 300

static void be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uw_usb_device sample_dev(const char *busid, uint8_t nif)
{
	uw_usb_device d = {.busnum = 1,
	                   .devnum = 2,
	                   .speed = 3,
	                   .id_vendor = 0x1d6b,
	                   .id_product = 0x0104,
	                   .num_configurations = 1,
	                   .num_interfaces = nif,
	                   .configuration_value = nif ? 1 : 0};
	snprintf(d.path, sizeof d.path, "/sys/devices/test/%s", busid);
	snprintf(d.busid, sizeof d.busid, "%s", busid);
	return d;
}

/* ---- Import ------------------------------------------------------------------------------- */

enum imp_shape {
	IMP_VALID,      /* status 0 + record for the asked busid */
	IMP_NOTHING,    /* close without a byte */
	IMP_SILENT,     /* say nothing, keep the connection open */
	IMP_TRUNC_HDR,  /* 5 bytes of the header, then close */
	IMP_TRUNC_REC,  /* header + 100 bytes of the record, then close */
	IMP_STATUS,     /* an 8-byte refusal with status */
	IMP_CODE,       /* the reply code of another op */
	IMP_VERSION,    /* version 0x0110 */
	IMP_BUSID,      /* a record for another busid */
	IMP_BUSID_ESC,  /* a record for a busid with terminal escapes and a newline */
	IMP_NO_NUL,     /* busid field without a NUL in its 32 bytes */
	IMP_BUSNUM,     /* busnum 0x10000: no devid can be made */
	IMP_PATH_NO_NUL /* path field without a NUL in its 256 bytes */
};

struct imp_row {
	const char *name;
	enum imp_shape shape;
	uint32_t status;
	int want_rc;
	uint32_t want_st; /* when UW_E_REFUSED */
	const char *err_has;
};

static const struct imp_row imp_rows[] = {
    {"valid reply", IMP_VALID, 0, UW_OK, 0, NULL},
    {"closed without a byte", IMP_NOTHING, 0, UW_E_CLOSED, 0, "without replying"},
    {"silence", IMP_SILENT, 0, UW_E_TIMEOUT, 0, "did not answer"},
    {"header cut after 5 bytes", IMP_TRUNC_HDR, 0, UW_E_CLOSED, 0, "closed"},
    {"record cut after 100 bytes", IMP_TRUNC_REC, 0, UW_E_CLOSED, 0, "middle"},
    {"ST_NA", IMP_STATUS, 1, UW_E_REFUSED, 1, "Request Failed"},
    {"ST_DEV_BUSY", IMP_STATUS, 2, UW_E_REFUSED, 2, "busy"},
    {"ST_DEV_ERR", IMP_STATUS, 3, UW_E_REFUSED, 3, "error"},
    {"ST_NODEV", IMP_STATUS, 4, UW_E_REFUSED, 4, "not found"},
    {"status 9 (undefined)", IMP_STATUS, 9, UW_E_PROTO, 0, "status"},
    {"status 0xffffffff", IMP_STATUS, 0xffffffffu, UW_E_PROTO, 0, "status"},
    {"wrong reply code (DEVLIST reply)", IMP_CODE, 0, UW_E_PROTO, 0, "code"},
    {"version 0x0110", IMP_VERSION, 0, UW_E_VERSION, 0, "version"},
    {"record for another busid", IMP_BUSID, 0, UW_E_PROTO, 0, "not \"1-1\""},
    {"record for a busid with ESC and newline (shown escaped)", IMP_BUSID_ESC, 0, UW_E_PROTO, 0,
     "busid \"\\x1b[2J\\x0a[x\", not \"1-1\""},
    {"busid without NUL", IMP_NO_NUL, 0, UW_E_PROTO, 0, "busid"},
    {"path without NUL", IMP_PATH_NO_NUL, 0, UW_E_PROTO, 0, "path"},
    {"busnum over 0xffff", IMP_BUSNUM, 0, UW_E_PROTO, 0, "busnum"},
};

static void queue_import_reply(int fd, const struct imp_row *r)
{
	uint8_t rep[UW_OP_REP_IMPORT_LEN];
	uw_usb_device d = sample_dev(r->shape == IMP_BUSID       ? "2-1"
	                             : r->shape == IMP_BUSID_ESC ? "\x1b[2J\n[x"
	                                                         : "1-1",
	                             0);
	int n = uw_op_rep_import_encode(rep, sizeof rep, 0, &d);
	size_t len = n > 0 ? (size_t)n : 0;
	switch (r->shape) {
	case IMP_VALID:
	case IMP_BUSID:
	case IMP_BUSID_ESC:
		break;
	case IMP_NOTHING:
	case IMP_SILENT:
		len = 0;
		break;
	case IMP_TRUNC_HDR:
		len = 5;
		break;
	case IMP_TRUNC_REC:
		len = 8 + 100;
		break;
	case IMP_STATUS:
		be32(rep + 4, r->status);
		len = 8;
		break;
	case IMP_CODE:
		be16(rep + 2, UW_OP_REP_DEVLIST);
		break;
	case IMP_VERSION:
		be16(rep, 0x0110);
		break;
	case IMP_NO_NUL:
		memset(rep + 8 + 0x100, 'A', UW_BUSID_SIZE);
		break;
	case IMP_PATH_NO_NUL:
		memset(rep + 8, 'p', UW_PATH_SIZE);
		break;
	case IMP_BUSNUM:
		be32(rep + 8 + 0x120, 0x10000);
		break;
	}
	if (len && write(fd, rep, len) != (ssize_t)len)
		t_diag("short write");
}

static void test_import(void)
{
	for (size_t i = 0; i < sizeof imp_rows / sizeof *imp_rows; i++) {
		const struct imp_row *r = &imp_rows[i];
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
			t_ok(false, "socketpair");
			continue;
		}
		queue_import_reply(sv[1], r);
		if (r->shape != IMP_SILENT)
			shutdown(sv[1], SHUT_WR);
		uw_usb_device dev, before;
		memset(&dev, 0x5a, sizeof dev);
		before = dev;
		uint32_t st = 77;
		char err[256] = "";
		int rc = uw_client_import(sv[0], "1-1", TIMEOUT_MS, &dev, &st, err, sizeof err);
		/* The request: exactly 40 bytes, version, code, status 0, busid NUL-padded. */
		uint8_t req[64];
		ssize_t k = recv(sv[1], req, sizeof req, MSG_DONTWAIT);
		static const uint8_t want_hdr[8] = {0x01, 0x11, 0x80, 0x03, 0, 0, 0, 0};
		uint8_t want_busid[32] = "1-1";
		bool req_ok =
		    k == 40 && !memcmp(req, want_hdr, 8) && !memcmp(req + 8, want_busid, 32);
		bool ok = rc == r->want_rc && req_ok;
		if (rc == UW_OK)
			ok = ok && !strcmp(dev.busid, "1-1") && dev.busnum == 1 && dev.devnum == 2;
		else
			ok = ok && !memcmp(&dev, &before, sizeof dev) && err[0] &&
			     (!r->err_has || strstr(err, r->err_has));
		if (rc == UW_E_REFUSED)
			ok = ok && st == r->want_st;
		t_ok(ok, "import: %s -> %s (%s)", r->name, uw_err_name(rc),
		     err[0] ? err : "no error");
		close(sv[0]);
		close(sv[1]);
	}
	/* A busid that cannot be sent is refused before anything is written. */
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0) {
		uw_usb_device dev;
		uint32_t st;
		char err[256] = "";
		int rc = uw_client_import(sv[0], "0123456789012345678901234567890123", TIMEOUT_MS,
		                          &dev, &st, err, sizeof err);
		uint8_t b[8];
		t_ok(rc == UW_E_INVAL && recv(sv[1], b, sizeof b, MSG_DONTWAIT) < 0,
		     "import: a 34-character busid is refused locally (%s)", err);
		close(sv[0]);
		close(sv[1]);
	}
}

/* ---- Device list -------------------------------------------------------------------------- */

enum list_shape {
	LIST_VALID,     /* ndev devices, 2 interfaces each */
	LIST_NDEV_HUGE, /* ndev 0xffffffff, nothing after */
	LIST_NDEV_OVER, /* ndev just over the limit */
	LIST_SHORT,     /* ndev 3, one record, close */
	LIST_IF_SHORT,  /* record says 4 interfaces, 1 follows, close */
	LIST_CODE,      /* import reply code */
	LIST_VERSION,   /* version 0x0110 */
	LIST_STATUS,    /* status 9 */
	LIST_TRUNC,     /* 10 bytes, close */
	LIST_NO_NUL,    /* busid without NUL */
	LIST_NOTHING,   /* close */
};

struct list_row {
	const char *name;
	enum list_shape shape;
	uint32_t ndev;
	int want_rc;
	const char *err_has;
};

static const struct list_row list_rows[] = {
    {"no devices", LIST_VALID, 0, UW_OK, NULL},
    {"three devices with 2 interfaces each", LIST_VALID, 3, UW_OK, NULL},
    {"ndev 0xffffffff", LIST_NDEV_HUGE, 0, UW_E_LIMIT, "ndev"},
    {"ndev one over the limit", LIST_NDEV_OVER, 0, UW_E_LIMIT, "ndev"},
    {"ndev 3, one record", LIST_SHORT, 3, UW_E_CLOSED, "middle of the device list"},
    {"4 interfaces announced, 1 sent", LIST_IF_SHORT, 1, UW_E_CLOSED, "middle"},
    {"wrong reply code", LIST_CODE, 0, UW_E_PROTO, "code"},
    {"version 0x0110", LIST_VERSION, 0, UW_E_VERSION, "version"},
    {"status 9", LIST_STATUS, 0, UW_E_PROTO, "status"},
    {"header cut after 10 bytes", LIST_TRUNC, 0, UW_E_CLOSED, "middle"},
    {"busid without NUL", LIST_NO_NUL, 1, UW_E_PROTO, "busid"},
    {"closed without a byte", LIST_NOTHING, 0, UW_E_CLOSED, "without replying"},
};

static void queue_list_reply(int fd, const struct list_row *r)
{
	size_t cap = UW_OP_REP_DEVLIST_HDR + 4 * uw_devlist_entry_len(4);
	uint8_t *buf = calloc(1, cap);
	size_t len = 0;
	uint32_t ndev = r->ndev;
	if (r->shape == LIST_NDEV_HUGE)
		ndev = 0xffffffffu;
	if (r->shape == LIST_NDEV_OVER)
		ndev = UW_MAX_DEVLIST_DEVICES + 1;
	len = (size_t)uw_op_rep_devlist_hdr_encode(buf, cap, ndev);
	uw_usb_interface ifs[4] = {{8, 6, 80}, {3, 1, 1}, {0xff, 0, 0}, {2, 2, 1}};
	uint32_t sent = r->shape == LIST_SHORT ? 1 : r->shape == LIST_VALID ? ndev : 0;
	if (r->shape == LIST_IF_SHORT || r->shape == LIST_NO_NUL)
		sent = 1;
	for (uint32_t i = 0; i < sent; i++) {
		char busid[16];
		snprintf(busid, sizeof busid, "%u-1", i + 1);
		uw_usb_device d = sample_dev(busid, r->shape == LIST_IF_SHORT ? 4 : 2);
		size_t at = len;
		len += (size_t)uw_devlist_entry_encode(buf + len, cap - len, &d, ifs);
		if (r->shape == LIST_IF_SHORT)
			len = at + UW_DEVREC_LEN + UW_IFREC_LEN;
		if (r->shape == LIST_NO_NUL)
			memset(buf + at + 0x100, 'B', UW_BUSID_SIZE);
	}
	switch (r->shape) {
	case LIST_CODE:
		be16(buf + 2, UW_OP_REP_IMPORT);
		break;
	case LIST_VERSION:
		be16(buf, 0x0110);
		break;
	case LIST_STATUS:
		be32(buf + 4, 9);
		break;
	case LIST_TRUNC:
		len = 10;
		break;
	case LIST_NOTHING:
		len = 0;
		break;
	default:
		break;
	}
	if (len && write(fd, buf, len) != (ssize_t)len)
		t_diag("short write");
	free(buf);
}

static void test_list(void)
{
	for (size_t i = 0; i < sizeof list_rows / sizeof *list_rows; i++) {
		const struct list_row *r = &list_rows[i];
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) {
			t_ok(false, "socketpair");
			continue;
		}
		queue_list_reply(sv[1], r);
		shutdown(sv[1], SHUT_WR);
		uw_devlist l = {.n = 12345, .devs = NULL};
		char err[256] = "";
		int rc = uw_client_list(sv[0], TIMEOUT_MS, &l, err, sizeof err);
		uint8_t req[16];
		ssize_t k = recv(sv[1], req, sizeof req, MSG_DONTWAIT);
		static const uint8_t want_req[8] = {0x01, 0x11, 0x80, 0x05, 0, 0, 0, 0};
		bool ok = rc == r->want_rc && k == 8 && !memcmp(req, want_req, 8);
		if (rc == UW_OK) {
			ok = ok && l.n == r->ndev;
			for (size_t d = 0; ok && d < l.n; d++)
				ok = l.devs[d].dev.num_interfaces == 2 &&
				     l.devs[d].ifaces[1].iface_class == 3 &&
				     l.devs[d].dev.busid[0] == (char)('1' + d);
			uw_devlist_free(&l);
		} else {
			ok = ok && l.n == 12345 && l.devs == NULL && err[0] &&
			     (!r->err_has || strstr(err, r->err_has));
		}
		t_ok(ok, "list: %s -> %s (%s)", r->name, uw_err_name(rc),
		     err[0] ? err : "no error");
		close(sv[0]);
		close(sv[1]);
	}
}

int main(void)
{
	test_import();
	test_list();
	return t_done();
}
