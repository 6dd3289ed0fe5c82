/* SPDX-License-Identifier: MIT */
#include "uw_log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void uw_logf(const uw_logger *lg, int level, const char *fmt, ...)
{
	if (!lg || !lg->fn || level > lg->level)
		return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	lg->fn(lg->user, level, line);
}

size_t uw_utf8_seq_len(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
	if (n == 0)
		return 0;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		len = 3;
		if (p[0] == 0xe0)
			lo = 0xa0; /* overlong */
		else if (p[0] == 0xed)
			hi = 0x9f; /* UTF-16 surrogates */
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		len = 4;
		if (p[0] == 0xf0)
			lo = 0x90; /* overlong */
		else if (p[0] == 0xf4)
			hi = 0x8f; /* past U+10FFFF */
	} else
		return 0;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return len;
}

const char *uw_escape(char *dst, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0, len = 0;
	while (len < n && p[len])
		len++;
	for (size_t i = 0; i < len;) {
		size_t k = p[i] >= 0x80 ? uw_utf8_seq_len(p + i, len - i) : 1;
		bool c1 = k == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0;
		bool raw = k > 1 ? !c1 : p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\';
		if (raw) {
			if (o + k >= cap)
				break;
			memcpy(dst + o, p + i, k);
			o += k;
			i += k;
			continue;
		}
		size_t m = k ? k : 1; /* escape the whole sequence, or the one bad byte */
		if (o + 4 * m >= cap)
			break;
		for (size_t j = 0; j < m; j++) {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[p[i + j] >> 4];
			dst[o++] = hex[p[i + j] & 15];
		}
		i += m;
	}
	if (cap)
		dst[o < cap ? o : cap - 1] = '\0';
	return dst;
}
