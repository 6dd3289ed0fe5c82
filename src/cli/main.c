/* SPDX-License-Identifier: MIT */
/*
 * usbwire - USB/IP server and client. One program, subcommands in the habits of the stock
 * usbip/usbipd tools: serve, list, attach, port, detach, info, bench.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const struct uw_cmd_entry commands[] = {
    {"serve", cmd_serve, "export devices over USB/IP (emulated or real)"},
    {"list", cmd_list, "list devices exported by a server (-r HOST) or local ones (-l)"},
    {"attach", cmd_attach, "import a remote device into this machine's vhci-hcd (--persist)"},
    {"port", cmd_port, "show the vhci-hcd ports in use and where their devices come from"},
    {"detach", cmd_detach, "give back the device on a vhci-hcd port"},
    {"info", cmd_info, "print a remote device's descriptors, like lsusb -v"},
    {"bench", cmd_bench, "measure control round trips and bulk throughput to a source/sink"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: usbwire COMMAND [OPTIONS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\nRun 'usbwire COMMAND --help' for a command's options. See usbwire(1).\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("usbwire %s (USB/IP protocol 1.1.1)\n", UW_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	cli_err("unknown command \"%s\"", argv[1]);
	usage(stderr);
	return 2;
}
