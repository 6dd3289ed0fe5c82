/* SPDX-License-Identifier: MIT */
/*
 * test_docs.c - every ```usbip-example KIND block of docs/protocol.md decodes with the codec as a
 * complete message of exactly its length, so the documentation cannot drift from the code; and
 * every citation of the project's documents in src/, fuzz/, tests/, tools/, docs/, man/ and
 * README.md points at something that exists: a section number (the section sign followed by N or
 * N.M) must be a numbered heading of docs/protocol.md, a quoted title after "docs/protocol.md," or
 * "docs/architecture.md," must be a heading of that document, and a docs/NAME.md must exist.
 * Run from the source root (tests/run-tests does), or pass the path of protocol.md.
 */
#include <ftw.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "uw_test.h"
#include "uw_wire.h"

static int no_iso(void *user, uint32_t ep, uint32_t dir)
{
	(void)user;
	(void)ep;
	(void)dir;
	return UW_XFER_BULK;
}

/* ---- Citations ---------------------------------------------------------------------------- */

#define SECT "\xc2\xa7" /* the section sign, spelled so that this file cites nothing */

struct heads {
	char num[128][16];   /* "4", "4.11" */
	char title[256][96]; /* heading text without its number */
	int nnum, ntitle;
};

static struct heads proto, arch;
static const char *root = ".";
static int checked, bad;

/* Reads the "## " and "### " headings of path: their numbers and their titles. */
static bool read_heads(const char *path, struct heads *h)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	char line[512];
	bool fence = false;
	while (fgets(line, sizeof line, f)) {
		if (!strncmp(line, "```", 3))
			fence = !fence;
		if (fence || line[0] != '#' || line[1] != '#')
			continue;
		char *p = line;
		while (*p == '#')
			p++;
		while (*p == ' ')
			p++;
		line[strcspn(line, "\n")] = '\0';
		size_t n = strspn(p, "0123456789.");
		if (n && p[n] == ' ' && h->nnum < 128) {
			snprintf(h->num[h->nnum++], sizeof h->num[0], "%.*s", (int)n, p);
			p += n + 1;
		}
		if (h->ntitle < 256)
			snprintf(h->title[h->ntitle++], sizeof h->title[0], "%.95s", p);
	}
	fclose(f);
	return true;
}

static bool has_num(const char *num)
{
	for (int i = 0; i < proto.nnum; i++)
		if (!strcmp(proto.num[i], num))
			return true;
	return false;
}

static bool has_title(const struct heads *h, const char *t)
{
	/* The whole heading, or its words before a parenthesis: "Real devices" names
	 * "Real devices (`src/usbhost`)". */
	size_t n = strlen(t);
	for (int i = 0; i < h->ntitle; i++)
		if (!strncmp(h->title[i], t, n) &&
		    (!h->title[i][n] || !strncmp(h->title[i] + n, " (", 2)))
			return true;
	return false;
}

static void problem(const char *file, int lineno, const char *what, const char *text)
{
	bad++;
	t_diag("%s:%d: %s: %s", file, lineno, what, text);
}

/* A section number at p ("4", "4.11"; a trailing '.' ends a sentence): its length, 0 if none. */
static size_t num_at(const char *p, char *out, size_t cap)
{
	size_t n = strspn(p, "0123456789.");
	while (n && p[n - 1] == '.')
		n--;
	if (!n || !(p[0] >= '0' && p[0] <= '9'))
		return 0;
	snprintf(out, cap, "%.*s", (int)n, p);
	return n;
}

static void check_num(const char *file, int lineno, const char *p, const char *line)
{
	char num[32];
	size_t n = num_at(p, num, sizeof num);
	checked++;
	if (!n) {
		problem(file, lineno, "a section sign without a number", line);
		return;
	}
	if (!has_num(num))
		problem(file, lineno, "no such section in docs/protocol.md", line);
	/* A range "2.2-2.4": its end too. */
	if (p[n] == '-' && num_at(p + n + 1, num, sizeof num) && !has_num(num))
		problem(file, lineno, "no such section in docs/protocol.md", line);
}

/* One line of a file: every section sign, every docs/NAME.md, every quoted title citation. */
static void check_line(const char *file, int lineno, const char *line)
{
	for (const char *p = strstr(line, SECT); p; p = strstr(p + 2, SECT))
		check_num(file, lineno, p + 2, line);
	for (const char *p = strstr(line, "docs/"); p; p = strstr(p + 5, "docs/")) {
		size_t n = strspn(p + 5, "abcdefghijklmnopqrstuvwxyz_-");
		if (!n || strncmp(p + 5 + n, ".md", 3) != 0)
			continue;
		char path[512], name[64];
		snprintf(name, sizeof name, "%.*s", (int)n, p + 5);
		snprintf(path, sizeof path, "%s/docs/%s.md", root, name);
		checked++;
		FILE *f = fopen(path, "r");
		if (!f) {
			problem(file, lineno, "no such document", line);
			continue;
		}
		fclose(f);
		const struct heads *h = !strcmp(name, "protocol")       ? &proto
		                        : !strcmp(name, "architecture") ? &arch
		                                                        : NULL;
		const char *q = p + 5 + n + 3;
		if (h && q[0] == ',' && q[1] == ' ' && q[2] == '"') {
			char title[128];
			size_t k = strcspn(q + 3, "\"");
			snprintf(title, sizeof title, "%.*s", (int)k, q + 3);
			if (q[3 + k] == '"' && !has_title(h, title))
				problem(file, lineno, "no heading with that title", line);
		}
		/* The protocol document, a space and a number: a section without its sign. */
		if (h == &proto && q[0] == ' ' && q[1] >= '0' && q[1] <= '9')
			check_num(file, lineno, q + 1, line);
	}
}

static void check_text(const char *file, const char *text)
{
	char line[2048];
	int lineno = 0;
	for (const char *p = text; *p;) {
		size_t n = strcspn(p, "\n");
		snprintf(line, sizeof line, "%.*s",
		         (int)(n < sizeof line - 1 ? n : sizeof line - 1), p);
		check_line(file, ++lineno, line);
		p += n + (p[n] == '\n');
	}
}

static int check_file(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type != FTW_F || st->st_size > (1 << 20) || strstr(path, "/corpus/"))
		return 0;
	FILE *f = fopen(path, "rb");
	if (!f)
		return 0;
	static char buf[(1 << 20) + 1];
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = '\0';
	if (memchr(buf, '\0', n)) /* binary */
		return 0;
	check_text(path + strlen(root) + 1, buf);
	return 0;
}

static void test_citations(const char *protocol_md)
{
	static char rootbuf[512];
	snprintf(rootbuf, sizeof rootbuf, "%s", protocol_md);
	char *slash = strstr(rootbuf, "docs/protocol.md");
	if (slash && slash > rootbuf) {
		slash[-1] = '\0';
		root = rootbuf;
	}
	char path[600];
	snprintf(path, sizeof path, "%s/docs/architecture.md", root);
	bool read = read_heads(protocol_md, &proto) && read_heads(path, &arch);
	if (!t_ok(read && proto.nnum > 10, "docs/protocol.md has %d numbered sections", proto.nnum))
		return;

	/* The checker itself finds what it must (so the scan below can fail). */
	bad = 0;
	check_text("self-test", "see docs/protocol.md " SECT "4.5 and " SECT "2.2-2.4");
	bool good_ok = bad == 0;
	check_text("self-test", "see docs/protocol.md " SECT "4.99");
	check_text("self-test", "see docs/protocol.md " SECT "2.2-2.77");
	check_text("self-test", "see docs"
	                        "/nonexistent-doc.md");
	check_text("self-test", "see docs/protocol.md, \"No Such Title\"");
	check_text("self-test", "see docs"
	                        "/protocol.md 42.1");
	t_ok(good_ok && bad == 5, "the citation checker flags bad citations (%d of 5)", bad);

	bad = checked = 0;
	static const char *const dirs[] = {"src", "fuzz", "tests", "tools", "docs", "man"};
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
		snprintf(path, sizeof path, "%s/%s", root, dirs[i]);
		nftw(path, check_file, 16, FTW_PHYS);
	}
	snprintf(path, sizeof path, "%s/README.md", root);
	struct stat st;
	if (stat(path, &st) == 0)
		check_file(path, &st, FTW_F, NULL);
	t_ok(checked > 10 && bad == 0,
	     "every citation of docs/ in src fuzz tests tools docs man README.md exists (%d "
	     "checked, "
	     "%d bad)",
	     checked, bad);
}

int main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : "docs/protocol.md";
	FILE *f = fopen(path, "r");
	if (!t_ok(f != NULL, "open %s", path))
		return t_done();
	char line[1024], kind[64] = "";
	char block[8192] = "";
	bool in = false;
	int found = 0;
	while (fgets(line, sizeof line, f)) {
		if (!in && sscanf(line, "```usbip-example %63s", kind) == 1) {
			in = true;
			block[0] = '\0';
			continue;
		}
		if (in && strncmp(line, "```", 3) == 0) {
			in = false;
			found++;
			uint8_t buf[4096];
			size_t n = t_unhex(block, buf, sizeof buf);
			uw_dec d = {0};
			enum uw_dec_status st = UW_DEC_ERROR;
			if (!strcmp(kind, "op_request")) {
				uw_op_request r;
				st = uw_op_request_decode(buf, n, &r, &d);
			} else if (!strcmp(kind, "op_rep_import")) {
				uint32_t s;
				uw_usb_device dev;
				st = uw_op_rep_import_decode(buf, n, &s, &dev, &d);
			} else if (!strcmp(kind, "cmd")) {
				uw_cmd c;
				st = uw_cmd_decode(buf, n, no_iso, NULL, &c, &d);
			}
			char msg[200];
			t_ok(st == UW_DEC_DONE && d.len == n, "docs example %d (%s, %zu bytes): %s",
			     found, kind, n, uw_dec_format(&d, msg, sizeof msg));
			continue;
		}
		if (in && strlen(block) + strlen(line) < sizeof block)
			strcat(block, line);
	}
	fclose(f);
	t_ok(found >= 5, "docs/protocol.md has %d decodable examples", found);
	test_citations(path);
	return t_done();
}
