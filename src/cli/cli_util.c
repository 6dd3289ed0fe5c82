/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "uw_limits.h"
#include "uw_net.h"

static void log_stderr(void *user, int level, const char *line)
{
	(void)user;
	static const char *const names[] = {"error", "warning", "info", "debug"};
	struct timespec ts;
	struct tm tm;
	char when[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ld %s: %s\n", when, ts.tv_nsec / 1000000,
	        level >= 0 && level <= 3 ? names[level] : "?", line);
}

void cli_logger(uw_logger *lg, int level)
{
	lg->fn = log_stderr;
	lg->user = NULL;
	lg->level = level;
}

void cli_err(const char *fmt, ...)
{
	va_list ap;
	fputs("usbwire: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

bool cli_addr(const char *arg, uw_addr *a)
{
	char err[512];
	if (uw_addr_parse(arg, false, a, err, sizeof err) != 0) {
		cli_err("%s", err);
		return false;
	}
	return true;
}

void cli_json_str(const char *s)
{
	/* JSON text must be valid UTF-8: valid sequences are copied, every byte that is not part
	 * of one becomes U+FFFD; controls (C0, DEL, C1) are \\u escapes. */
	putchar('"');
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	for (size_t i = 0; i < n;) {
		size_t k = p[i] >= 0x80 ? uw_utf8_seq_len(p + i, n - i) : 1;
		if (k == 0) {
			fputs("\\ufffd", stdout);
			i++;
		} else if (k == 2 && p[i] == 0xc2 && p[i + 1] < 0xa0) {
			printf("\\u%04x", p[i + 1]); /* C1 control */
			i += 2;
		} else if (k > 1) {
			fwrite(p + i, 1, k, stdout);
			i += k;
		} else {
			if (p[i] == '"' || p[i] == '\\')
				printf("\\%c", p[i]);
			else if (p[i] < 0x20 || p[i] == 0x7f)
				printf("\\u%04x", p[i]);
			else
				putchar(p[i]);
			i++;
		}
	}
	putchar('"');
}

/* Class names of the USB-IF class codes, as lsusb and usbip print them. */
const char *cli_class_name(uint8_t c)
{
	switch (c) {
	case 0x01:
		return "Audio";
	case 0x02:
		return "Communications";
	case 0x03:
		return "Human Interface Device";
	case 0x05:
		return "Physical Interface Device";
	case 0x06:
		return "Imaging";
	case 0x07:
		return "Printer";
	case 0x08:
		return "Mass Storage";
	case 0x09:
		return "Hub";
	case 0x0a:
		return "CDC Data";
	case 0x0b:
		return "Chip/SmartCard";
	case 0x0d:
		return "Content Security";
	case 0x0e:
		return "Video";
	case 0x0f:
		return "Personal Healthcare";
	case 0x10:
		return "Audio/Video";
	case 0x11:
		return "Billboard";
	case 0xdc:
		return "Diagnostic";
	case 0xe0:
		return "Wireless";
	case 0xef:
		return "Miscellaneous Device";
	case 0xfe:
		return "Application Specific Interface";
	case 0xff:
		return "Vendor Specific Class";
	}
	return NULL;
}
