/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>

#include "uw_error.h"

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("usbwire 0.1.0\n");
		return 0;
	}
	fprintf(stderr, "usage: usbwire COMMAND [ARGS]\n");
	return 2;
}
