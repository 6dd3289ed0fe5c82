/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: the kernel uevent parser (text from a netlink socket) and the export-rule parser
 * (text from the command line). Oracles: a parsed event's busid is NUL-terminated and non-empty
 * for USB events; the rule parser accepts only what it can print back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uw_usbsys.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uw_uevent ev;
	if (uw_uevent_parse(data, size, &ev) == UW_OK) {
		if (memchr(ev.busid, 0, sizeof ev.busid) == NULL)
			abort();
		if (ev.kind != UW_UEVENT_NOT_USB && ev.busid[0] == '\0')
			abort();
	}
	/* The same bytes as a rule spec, NUL-terminated. */
	char spec[256];
	size_t n = size < sizeof spec - 1 ? size : sizeof spec - 1;
	memcpy(spec, data, n);
	spec[n] = '\0';
	uw_usb_rule rule;
	char err[256];
	if (uw_usb_rule_parse(spec, &rule, err, sizeof err) == UW_OK &&
	    memchr(rule.text, 0, sizeof rule.text) == NULL)
		abort();
	return 0;
}
