/* SPDX-License-Identifier: MIT */
/*
 * test_vhci.c - the vhci sysfs module against fake sysfs trees in temporary directories: status
 * files of several shapes (one and several controllers, SuperSpeed ports, ports in use, the old
 * format without a hub column, malformed lines), each parsed right before an inaccessible page so
 * an over-read faults; port choice by speed; the attach/detach strings; the record files.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uw_test.h"
#include "uw_vhci.h"

#define HDR "hub port sta spd dev      sockfd local_busid\n"

struct parse_row {
	const char *name;
	const char *text;
	size_t want_n, want_skipped;
	/* one port to look at */
	uint32_t port;
	uint8_t hub;
	uint32_t status, speed, devid;
	const char *busid;
};

static const struct parse_row parse_rows[] = {
    {"current format, free ports",
     HDR "hs  0000 004 000 00000000 000000 0-0\n"
         "hs  0001 004 000 00000000 000000 0-0\n"
         "ss  0002 004 000 00000000 000000 0-0\n"
         "ss  0003 004 000 00000000 000000 0-0\n",
     4, 0, 2, UW_VHCI_HUB_SS, UW_VDEV_NULL, 0, 0, "0-0"},
    {"port in use (real line from kernel 6.1)",
     HDR "hs  0000 006 003 00010002 000003 5-1\nhs  0001 004 000 00000000 000000 0-0\n", 2, 0, 0,
     UW_VHCI_HUB_HS, UW_VDEV_USED, 3, 0x00010002, "5-1"},
    {"SuperSpeed port in use", HDR "ss  0008 006 005 00010004 000003 4-1\n", 1, 0, 8,
     UW_VHCI_HUB_SS, UW_VDEV_USED, 5, 0x00010004, "4-1"},
    {"tabs, CRLF, no final newline",
     "hub\tport\r\nss\t0015\t005\t005\t0063000a\t000007\t6-2\r\nhs 1 4", 2, 0, 15, UW_VHCI_HUB_SS,
     UW_VDEV_NOTASSIGNED, 5, 0x0063000a, "6-2"},
    {"old format without hub column",
     "prt sta spd dev socket           local_busid\n"
     "000 004 000 00000000 0000000000000000 0-0\n"
     "001 006 002 00020003 ffff88000c3d1e00 3-1\n",
     2, 0, 1, UW_VHCI_HUB_UNKNOWN, UW_VDEV_USED, 2, 0x00020003, "3-1"},
    {"only port and status", "hs 0005 007\n", 1, 0, 5, UW_VHCI_HUB_HS, UW_VDEV_ERROR, 0, 0, "0-0"},
    {"malformed lines skipped, good ones kept",
     HDR "hs  00x1 004 000 00000000 000000 0-0\n"       /* port not a number */
         "zz  0002 004 000 00000000 000000 0-0\n"       /* unknown hub */
         "hs  0003\n"                                   /* no status */
         "hs  0004 004 000 0000000g 000000 0-0\n"       /* devid not hex */
         "hs  0005 004 000 00000000 000000 0-0 extra\n" /* too many fields */
         "hs  99999 004 000 00000000 000000 0-0\n"      /* port over the limit */
         "hs  0007 100 000 00000000 000000 0-0\n"       /* status over 99 */
         "hs  0008 004 000 00000000 000000 "
         "0123456789012345678901234567890123456789\n" /* busid too long */
         "hs  0009 004 000 100000000 000000 0-0\n"    /* devid over 32 bits */
         "hs  0010 004 000 00000000 000000 0-0\n"     /* good */
         "hs  0010 006 003 00010002 000003 5-1\n"     /* duplicate port */
         "hs  18446744073709551616 004\n"             /* huge number */
         "hs  -1 004\n",                              /* sign */
     1, 12, 10, UW_VHCI_HUB_HS, UW_VDEV_NULL, 0, 0, "0-0"},
    {"empty text", "", 0, 0, 0, 0, 0, 0, 0, NULL},
    {"header only", HDR, 0, 0, 0, 0, 0, 0, 0, NULL},
    {"binary garbage", "\x01\x02\xff\xfe hs\x00 0001 004\n\n\n", 0, 1, 0, 0, 0, 0, 0, NULL},
};

/* Text copied to the very end of a page followed by a PROT_NONE page. */
static char *guard_copy(const char *text, size_t len, void **map, size_t *maplen)
{
	long pg = sysconf(_SC_PAGESIZE);
	size_t need = ((len + (size_t)pg - 1) / (size_t)pg + 1) * (size_t)pg;
	char *m = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	mprotect(m + need - (size_t)pg, (size_t)pg, PROT_NONE);
	char *p = m + need - (size_t)pg - len;
	memcpy(p, text, len);
	*map = m;
	*maplen = need;
	return p;
}

static size_t text_len(const struct parse_row *r)
{
	/* The "binary garbage" row holds a NUL: its length is known. */
	if (!strcmp(r->name, "binary garbage"))
		return 20;
	return strlen(r->text);
}

static void test_parse(void)
{
	for (size_t i = 0; i < sizeof parse_rows / sizeof *parse_rows; i++) {
		const struct parse_row *r = &parse_rows[i];
		size_t len = text_len(r), n = 0, skipped = 0;
		void *map = NULL;
		size_t maplen = 0;
		char *text = guard_copy(r->text, len, &map, &maplen);
		if (!text) {
			t_ok(false, "parse: %s: mmap failed", r->name);
			continue;
		}
		uw_vhci_port ports[16];
		int rc = uw_vhci_parse_status(text, len, ports, 16, &n, &skipped);
		bool ok = rc == UW_OK && n == r->want_n && skipped == r->want_skipped;
		if (ok && r->busid) {
			const uw_vhci_status st = {.n = n, .ports = ports};
			const uw_vhci_port *p = uw_vhci_find(&st, r->port);
			ok = p && p->hub == r->hub && p->status == r->status &&
			     p->speed == r->speed && p->devid == r->devid &&
			     !strcmp(p->local_busid, r->busid);
		}
		t_ok(ok, "parse: %s (n %zu skipped %zu)", r->name, n, skipped);
		munmap(map, maplen);
	}
	/* A full table: the rest is counted as skipped, nothing written past cap. */
	uw_vhci_port two[3];
	memset(two, 0xa5, sizeof two);
	size_t n = 0, skipped = 0;
	const char *t = "hs 0 4\nhs 1 4\nhs 2 4\nhs 3 4\n";
	uw_vhci_parse_status(t, strlen(t), two, 2, &n, &skipped);
	t_ok(n == 2 && skipped == 2 && ((uint8_t *)&two[2])[0] == 0xa5,
	     "parse: output full: 2 kept, 2 skipped, nothing written past cap");
	t_ok(uw_vhci_parse_status(NULL, 0, two, 2, &n, &skipped) == UW_E_INVAL,
	     "parse: NULL text is UW_E_INVAL");
}

/* ---- Port choice ---------------------------------------------------------------------------- */

struct choice_row {
	const char *name;
	const char *status;
	uint32_t speed;
	size_t want_total;
	uint32_t want_first;
};

static const struct choice_row choice_rows[] = {
    {"high speed takes the first free HS port",
     "hs 0 6 3 00010002 3 5-1\nhs 1 4\nhs 2 4\nss 3 4\nss 4 4\n", 3, 2, 1},
    {"low speed goes to HS", "hs 0 4\nss 1 4\n", 1, 1, 0},
    {"wireless (4) goes to HS", "ss 0 4\nhs 1 4\n", 4, 1, 1},
    {"super speed takes an SS port", "hs 0 4\nhs 1 4\nss 2 6 5 1 3 6-1\nss 3 4\n", 5, 1, 3},
    {"super-speed-plus (6) takes an SS port too", "hs 0 4\nss 1 4\n", 6, 1, 1},
    {"speed 0 fits nowhere", "hs 0 4\nss 1 4\n", 0, 0, 0},
    {"all HS ports in use", "hs 0 6 3 1 3 5-1\nhs 1 5 3 2 3 0-0\nss 2 4\n", 3, 0, 0},
    {"error and initializing ports are not free", "hs 0 7\nhs 1 5\nhs 2 4\n", 2, 1, 2},
    {"ascending whatever the file order", "hs 9 4\nhs 3 4\nhs 7 4\n", 3, 3, 3},
    {"no hub column: any port fits", "000 004 000 00000000 0 0-0\n", 5, 1, 0},
};

static void test_choice(void)
{
	for (size_t i = 0; i < sizeof choice_rows / sizeof *choice_rows; i++) {
		const struct choice_row *r = &choice_rows[i];
		uw_vhci_port ports[16];
		uw_vhci_status st = {.ports = ports};
		uw_vhci_parse_status(r->status, strlen(r->status), ports, 16, &st.n, &st.skipped);
		uint32_t out[16];
		size_t total = uw_vhci_free_ports(&st, r->speed, out, 16);
		t_ok(st.skipped == 0 && total == r->want_total &&
		         (total == 0 || out[0] == r->want_first),
		     "choice: %s (%zu free, first %u)", r->name, total, total ? out[0] : 0);
	}
	uw_vhci_port ports[8];
	uw_vhci_status st = {.ports = ports};
	const char *t = "hs 5 4\nhs 1 4\nhs 3 4\nss 2 4\n";
	uw_vhci_parse_status(t, strlen(t), ports, 8, &st.n, &st.skipped);
	uint32_t out[2];
	size_t total = uw_vhci_free_ports(&st, 3, out, 2);
	t_ok(total == 3 && out[0] == 1 && out[1] == 3, "choice: cap 2 of 3 free: the two lowest");
	t_ok(uw_vhci_count_fitting(&st, 3) == 3 && uw_vhci_count_fitting(&st, 5) == 1,
	     "choice: ports fitting each speed counted");
}

/* ---- Fake sysfs ----------------------------------------------------------------------------- */

static void put(const char *dir, const char *name, const char *text)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static char *get(const char *dir, const char *name, char *buf, size_t cap)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", dir, name);
	buf[0] = '\0';
	FILE *f = fopen(path, "r");
	if (f) {
		size_t k = fread(buf, 1, cap - 1, f);
		buf[k] = '\0';
		fclose(f);
	}
	return buf;
}

static void test_sysfs(void)
{
	char root[] = "/tmp/uw-vhci-XXXXXX";
	if (!mkdtemp(root)) {
		t_ok(false, "mkdtemp");
		return;
	}
	t_ok(!uw_vhci_present(root), "sysfs: no attach file: not present");
	uw_vhci_status st;
	int se = 0;
	t_ok(uw_vhci_read(root, &st, &se) == UW_E_NODEV && se == ENOENT,
	     "sysfs: no status file: UW_E_NODEV, errno ENOENT");
	put(root, "attach", "");
	put(root, "detach", "");
	put(root, "nports", "8\n");
	/* Two controllers of 2 + 2 ports, as the kernel lays them out. */
	put(root, "status",
	    HDR "hs  0000 006 003 00010002 000003 5-1\nhs  0001 004 000 00000000 "
	        "000000 0-0\nss  0002 004 000 00000000 000000 0-0\nss  0003 004 000 "
	        "00000000 000000 0-0\n");
	put(root, "status.1",
	    HDR "hs  0004 004 000 00000000 000000 0-0\nhs  0005 004 000 00000000 "
	        "000000 0-0\nss  0006 006 005 00630001 000004 7-1\nss  0007 004 000 "
	        "00000000 000000 0-0\nhs garbage\n");
	put(root, "status.3", HDR "hs  0100 004 000 00000000 000000 0-0\n"); /* after a gap */
	t_ok(uw_vhci_present(root), "sysfs: attach file: present");
	int rc = uw_vhci_read(root, &st, &se);
	t_ok(rc == UW_OK && st.nports == 8 && st.n == 8 && st.skipped == 1,
	     "sysfs: two controllers read (nports %u, %zu ports, %zu skipped; status.3 after a gap "
	     "not read)",
	     st.nports, st.n, st.skipped);
	if (rc == UW_OK) {
		uint32_t out[8];
		size_t hs = uw_vhci_free_ports(&st, 3, out, 8);
		t_ok(hs == 3 && out[0] == 1 && out[1] == 4 && out[2] == 5,
		     "sysfs: free HS ports 1, 4, 5");
		size_t ss = uw_vhci_free_ports(&st, 5, out, 8);
		t_ok(ss == 3 && out[0] == 2 && out[1] == 3 && out[2] == 7,
		     "sysfs: free SS ports 2, 3, 7");
		/* Each controller has one port in use: equal loads keep the ascending order. */
		uw_vhci_spread(&st, out, ss);
		t_ok(out[0] == 2 && out[1] == 3 && out[2] == 7,
		     "sysfs: spread keeps order on equal load");
		const uw_vhci_port *p1 = uw_vhci_find(&st, 1), *p4 = uw_vhci_find(&st, 4);
		t_ok(p1 && p4 && p1->controller == 0 && p4->controller == 1,
		     "sysfs: ports know their controller (status file)");
		/* Free controller 1's port: its ports now come before controller 0's. */
		for (size_t i = 0; i < st.n; i++)
			if (st.ports[i].port == 6)
				st.ports[i].status = UW_VDEV_NULL;
		hs = uw_vhci_free_ports(&st, 3, out, 8);
		uw_vhci_spread(&st, out, hs);
		t_ok(hs == 3 && out[0] == 4 && out[1] == 5 && out[2] == 1,
		     "sysfs: spread puts the idle controller's ports first (%u %u %u)", out[0],
		     out[1], out[2]);
		for (size_t i = 0; i < st.n; i++)
			if (st.ports[i].port == 6)
				st.ports[i].status = 6;
		const uw_vhci_port *p = uw_vhci_find(&st, 6);
		t_ok(p && p->devid == 0x00630001 && !strcmp(p->local_busid, "7-1"),
		     "sysfs: port 6 on controller 1 holds devid 0x00630001 as 7-1");
		uw_vhci_status_fini(&st);
	}
	/* nports larger than the limit or garbage: ignored, the table still reads. */
	put(root, "nports", "banana\n");
	rc = uw_vhci_read(root, &st, NULL);
	t_ok(rc == UW_OK && st.nports == 0 && st.n == 8, "sysfs: unreadable nports: 0, ports read");
	uw_vhci_status_fini(&st);

	char buf[128];
	t_ok(uw_vhci_attach(root, 15, 3, 0x00010002, 3, NULL) == UW_OK &&
	         !strcmp(get(root, "attach", buf, sizeof buf), "15 3 65538 3"),
	     "sysfs: attach writes \"port sockfd devid speed\" in decimal (%s)", buf);
	t_ok(uw_vhci_detach(root, 15, NULL) == UW_OK &&
	         !strcmp(get(root, "detach", buf, sizeof buf), "15"),
	     "sysfs: detach writes the port (%s)", buf);
	char missing[600];
	snprintf(missing, sizeof missing, "%s/nope", root);
	t_ok(uw_vhci_attach(missing, 0, 3, 1, 3, &se) == UW_E_NODEV && se == ENOENT,
	     "sysfs: attach without vhci: UW_E_NODEV");
	t_ok(uw_vhci_attach(root, 0, -1, 1, 3, NULL) == UW_E_INVAL, "sysfs: negative fd refused");

	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	if (system(cmd) != 0)
		t_diag("could not remove %s", root);
}

/* ---- Record files --------------------------------------------------------------------------- */

static void test_records(void)
{
	char base[] = "/tmp/uw-rec-XXXXXX";
	if (!mkdtemp(base)) {
		t_ok(false, "mkdtemp");
		return;
	}
	char dir[600], buf[256];
	snprintf(dir, sizeof dir, "%s/vhci_hcd", base);
	t_ok(uw_vhci_record_write(dir, 3, "10.0.2.100", "3240", "1-1", NULL) == UW_OK,
	     "record: written (directory created)");
	t_ok(!strcmp(get(dir, "port3", buf, sizeof buf), "10.0.2.100 3240 1-1\n"),
	     "record: exactly what usbip attach writes: \"HOST PORT BUSID\\n\"");
	struct stat sb;
	t_ok(stat(dir, &sb) == 0 && (sb.st_mode & 0777) == 0700, "record: directory mode 0700");
	uw_vhci_record r;
	t_ok(uw_vhci_record_read(dir, 3, &r) == UW_OK && !strcmp(r.host, "10.0.2.100") &&
	         !strcmp(r.serv, "3240") && !strcmp(r.busid, "1-1"),
	     "record: read back");
	t_ok(uw_vhci_record_write(dir, 3, "::1", "3241", "2-1", NULL) == UW_OK &&
	         uw_vhci_record_read(dir, 3, &r) == UW_OK && !strcmp(r.host, "::1") &&
	         !strcmp(r.serv, "3241") && !strcmp(r.busid, "2-1"),
	     "record: replaced; an IPv6 literal kept as given");
	t_ok(uw_vhci_record_write(dir, 4, "a host", "3240", "1-1", NULL) == UW_E_INVAL &&
	         uw_vhci_record_write(dir, 4, "h", "", "1-1", NULL) == UW_E_INVAL &&
	         uw_vhci_record_write(dir, 4, "h", "3240", "1-1\n", NULL) == UW_E_INVAL &&
	         uw_vhci_record_write(dir, 4, "h", "3240", "0123456789012345678901234567890123",
	                              NULL) == UW_E_INVAL,
	     "record: blanks, empty fields, newlines and a too long busid refused");
	t_ok(uw_vhci_record_read(dir, 4, &r) == UW_E_NOTFOUND, "record: absent: UW_E_NOTFOUND");
	static const char *const bad[] = {
	    "",
	    "onlyone\n",
	    "two fields\n",
	    "a b c d\n",
	    "\n10.0.2.100 3240 1-1\n",
	    "h 3240 0123456789012345678901234567890123456789\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		put(dir, "port5", bad[i]);
		t_ok(uw_vhci_record_read(dir, 5, &r) == UW_E_PROTO,
		     "record: malformed #%zu refused", i);
	}
	put(dir, "port5", "h 3240 1-1"); /* no newline: still three fields */
	t_ok(uw_vhci_record_read(dir, 5, &r) == UW_OK, "record: no final newline accepted");
	t_ok(uw_vhci_record_remove(dir, 5) == UW_OK && uw_vhci_record_remove(dir, 5) == UW_OK,
	     "record: removed; removing again is fine");
	t_ok(uw_vhci_record_remove(dir, 3) == UW_OK && access(dir, F_OK) != 0,
	     "record: last one removed: the directory goes too");
	rmdir(base);
}

int main(void)
{
	test_parse();
	test_choice();
	test_sysfs();
	test_records();
	return t_done();
}
