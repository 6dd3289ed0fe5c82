/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: Firecracker's answer to CONNECT (bytes from outside the process, read up to the
 * newline) and the address parser (text from the command line). Oracles: an accepted answer is
 * "OK " and digits; a refusal's message holds no raw control byte (the peer's words are
 * escaped); an accepted address formats to text that parses back to the same address.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "uw_addr.h"
#include "uw_error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[600];
	const char *line = (const char *)data;
	if (uw_addr_fc_reply(line, size, err, sizeof err) == UW_OK) {
		if (size < 4 || memcmp(line, "OK ", 3) != 0)
			abort();
		for (size_t i = 3; i < size; i++)
			if (line[i] < '0' || line[i] > '9')
				abort();
	} else {
		for (const char *p = err; *p; p++)
			if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
				abort();
	}
	char s[512];
	size_t n = size < sizeof s - 1 ? size : sizeof s - 1;
	memcpy(s, data, n);
	s[n] = '\0';
	for (int listen = 0; listen < 2; listen++) {
		uw_addr a, b;
		if (uw_addr_parse(s, listen, &a, err, sizeof err) != UW_OK)
			continue;
		char f[600];
		uw_addr_format(&a, f, sizeof f);
		/* "*:PORT" (every address) is how a listen address with no host is shown; it is
		 * written ":PORT". */
		const char *again = strncmp(f, "*:", 2) == 0 ? f + 1 : f;
		if (uw_addr_parse(again, listen, &b, err, sizeof err) != UW_OK ||
		    memcmp(&a, &b, sizeof a) != 0)
			abort();
	}
	return 0;
}
