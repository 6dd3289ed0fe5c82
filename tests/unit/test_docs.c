/* SPDX-License-Identifier: MIT */
/*
 * test_docs.c - every ```usbip-example KIND block of docs/protocol.md decodes with the codec as a
 * complete message of exactly its length, so the documentation cannot drift from the code.
 * Run from the source root (tests/run-tests does), or pass the path of protocol.md.
 */
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
	return t_done();
}
