/* SPDX-License-Identifier: MIT */
#include "uw_log.h"

#include <stdarg.h>
#include <stdio.h>

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
