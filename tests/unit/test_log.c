/* SPDX-License-Identifier: MIT */
/*
 * test_log.c - uw_escape: what a peer sends can reach a log line or a terminal only as
 * printable text (no control bytes, no invalid UTF-8, no C1 controls, no forged lines).
 */
#include <string.h>

#include "uw_log.h"
#include "uw_test.h"

static void esc(const char *in, size_t n, const char *want)
{
	char out[UW_ESCAPE_SIZE(64)];
	uw_escape(out, sizeof out, in, n);
	t_ok(strcmp(out, want) == 0, "escape -> \"%s\" (want \"%s\")", out, want);
}

int main(void)
{
	esc("1-2", 32, "1-2");
	esc("\x1b[31mred\n[fake log line", 64, "\\x1b[31mred\\x0a[fake log line");
	esc("tab\there\r\x7f", 64, "tab\\x09here\\x0d\\x7f");
	esc("back\\slash", 64, "back\\x5cslash");
	esc("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 64,
	    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
	esc("\xc2\x9b"
	    "2J",
	    64, "\\xc2\\x9b2J"); /* C1 CSI in UTF-8 */
	esc("\x9b"
	    "2J",
	    64, "\\x9b2J");                               /* 8-bit CSI */
	esc("\xc0\xaf \xed\xa0\x80 \xf4\x90\x80\x80", 64, /* overlong, surrogate, > U+10FFFF */
	    "\\xc0\\xaf \\xed\\xa0\\x80 \\xf4\\x90\\x80\\x80");
	esc("\xe2\x82", 64, "\\xe2\\x82"); /* truncated sequence */
	esc("abc\0def", 7, "abc");         /* stops at the NUL */
	esc("abcdef", 3, "abc");           /* and at n */

	/* Cut between characters, never inside an escape; always terminated. */
	char small[6];
	uw_escape(small, sizeof small, "ab\x01xyz", 16);
	t_ok(strcmp(small, "ab") == 0, "cut before an escape that does not fit: \"%s\"", small);
	uw_escape(small, sizeof small, "abcd\xc3\xa9", 16);
	t_ok(strcmp(small, "abcd") == 0, "cut before a character that does not fit: \"%s\"", small);

	/* Worst case: every byte escaped fits UW_ESCAPE_SIZE. */
	char all[256], big[UW_ESCAPE_SIZE(255)];
	for (int i = 0; i < 255; i++)
		all[i] = (char)(i + 1);
	all[255] = 0;
	uw_escape(big, sizeof big, all, 255);
	bool clean = true;
	for (const unsigned char *p = (const unsigned char *)big; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			clean = false;
	t_ok(clean && strlen(big) == 94 + 161 * 4, "bytes 1..255: %zu printable ASCII bytes",
	     strlen(big));
	return t_done();
}
