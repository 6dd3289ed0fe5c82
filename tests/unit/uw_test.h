/* SPDX-License-Identifier: MIT */
/*
 * uw_test.h - a minimal TAP producer for usbwire's unit tests.
 *
 * Each t_ok() is one test point ("ok N - name" or "not ok N - name"); t_done() prints the plan
 * and returns the exit status. Tests read as tables: loop over rows, one t_ok per row.
 */
#ifndef UW_TEST_H
#define UW_TEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

static int t_count_;
static int t_failed_;

__attribute__((format(printf, 2, 3))) static inline bool t_ok(bool cond, const char *fmt, ...)
{
	va_list ap;
	t_count_++;
	printf("%sok %d - ", cond ? "" : "not ", t_count_);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		t_failed_++;
	fflush(stdout);
	return cond;
}

/* Diagnostic line, shown by the runner when a suite fails. */
__attribute__((format(printf, 1, 2))) static inline void t_diag(const char *fmt, ...)
{
	va_list ap;
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

static inline void t_hexdiff(const char *what, const void *got, const void *want, size_t n)
{
	const unsigned char *g = got, *w = want;
	for (size_t i = 0; i < n; i++) {
		if (g[i] != w[i]) {
			t_diag("%s: first difference at byte %zu: got 0x%02x, want 0x%02x", what, i,
			       g[i], w[i]);
			return;
		}
	}
}

/* Parses hex digits into out (anything else, such as spaces, is skipped); returns the number of
 * bytes the text holds, which may exceed cap (only cap bytes are written). */
static inline size_t t_unhex(const char *hex, unsigned char *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;
	for (const char *p = hex; *p; p++) {
		int v;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			v = *p - 'A' + 10;
		else
			continue;
		if (hi < 0) {
			hi = v;
		} else {
			if (n < cap)
				out[n] = (unsigned char)(hi << 4 | v);
			n++;
			hi = -1;
		}
	}
	return n;
}

static inline int t_done(void)
{
	printf("1..%d\n", t_count_);
	return t_failed_ ? 1 : 0;
}

#endif /* UW_TEST_H */
