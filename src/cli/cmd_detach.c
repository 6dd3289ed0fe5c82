/* SPDX-License-Identifier: MIT */
/*
 * usbwire detach -p PORT [--json]   give back the device on a vhci-hcd port
 *
 * Removes the port's record file (as `usbip detach` does; a running `usbwire attach --persist`
 * takes that as "detached on purpose" and stops), then writes the port to vhci's detach file:
 * the kernel closes the connection and the server releases the device.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "uw_vhci.h"

static void detach_usage(FILE *f)
{
	fprintf(f, "usage: usbwire detach -p PORT [--json]\n"
	           "  -p, --port PORT  the vhci port (see 'usbwire port')\n"
	           "  -j, --json       machine-readable output\n");
}

/* Waits up to 5 s for the port to be free. */
static bool wait_free(uint32_t port)
{
	for (int i = 0; i < 100; i++) {
		uw_vhci_status st;
		if (uw_vhci_read(cli_vhci_root(), &st, NULL) != UW_OK)
			return false;
		const uw_vhci_port *p = uw_vhci_find(&st, port);
		bool done = !p || p->status == UW_VDEV_NULL;
		uw_vhci_status_fini(&st);
		if (done)
			return true;
		nanosleep(&(struct timespec){0, 50 * 1000 * 1000}, NULL);
	}
	return false;
}

int cmd_detach(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"port", required_argument, NULL, 'p'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *port_arg = NULL;
	bool json = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "p:jh", opts, NULL)) != -1) {
		switch (c) {
		case 'p':
			port_arg = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			detach_usage(stdout);
			return 0;
		default:
			detach_usage(stderr);
			return 2;
		}
	}
	if (!port_arg || optind < argc) {
		detach_usage(stderr);
		return 2;
	}
	char *end;
	unsigned long port = strtoul(port_arg, &end, 10);
	if (!*port_arg || *end || port_arg[0] == '-' || port >= UW_VHCI_MAX_PORTS) {
		cli_err("detach: invalid port \"%s\" (a number shown by 'usbwire port')", port_arg);
		return 2;
	}
	if (!cli_vhci_check_loaded("detach"))
		return 1;
	uw_vhci_status st;
	int se = 0;
	int rc = uw_vhci_read(cli_vhci_root(), &st, &se);
	if (rc) {
		cli_err("detach: cannot read %s/status: %s", cli_vhci_root(),
		        se ? strerror(se) : uw_strerror(rc));
		return 1;
	}
	const uw_vhci_port *p = uw_vhci_find(&st, (uint32_t)port);
	uint32_t nports = st.nports ? st.nports : (uint32_t)st.n;
	uint32_t status = p ? p->status : 0;
	uw_vhci_status_fini(&st);
	if (!p) {
		cli_err("detach: there is no port %lu (vhci-hcd has ports 0..%u)", port,
		        nports ? nports - 1 : 0);
		return 1;
	}
	if (status == UW_VDEV_NULL) {
		cli_err("detach: port %lu is not in use (nothing to detach; see 'usbwire port')",
		        port);
		return 1;
	}
	uw_vhci_record rec;
	bool have_rec = uw_vhci_record_read(cli_vhci_record_dir(), (uint32_t)port, &rec) == UW_OK;
	rc = uw_vhci_record_remove(cli_vhci_record_dir(), (uint32_t)port);
	if (rc)
		fprintf(stderr, "usbwire: detach: warning: cannot remove %s/port%lu: %s\n",
		        cli_vhci_record_dir(), port, uw_strerror(rc));
	se = 0;
	rc = uw_vhci_detach(cli_vhci_root(), (uint32_t)port, &se);
	if (rc == UW_E_ACCESS) {
		cli_err("detach: permission denied writing %s/detach: detaching needs root",
		        cli_vhci_root());
		return 1;
	}
	if (rc) {
		cli_err("detach: the kernel refused to detach port %lu: %s", port,
		        se ? strerror(se) : uw_strerror(rc));
		return 1;
	}
	bool freed = wait_free((uint32_t)port);
	if (json) {
		printf("{\"port\":%lu,\"detached\":true,\"free\":%s,\"remote\":", port,
		       freed ? "true" : "false");
		if (have_rec) {
			printf("{\"host\":");
			cli_json_str(rec.host);
			printf(",\"port\":");
			cli_json_str(rec.serv);
			printf(",\"busid\":");
			cli_json_str(rec.busid);
			printf("}");
		} else {
			printf("null");
		}
		printf("}\n");
	} else if (have_rec) {
		printf("port %lu detached (was %s:%s/%s)\n", port, rec.host, rec.serv, rec.busid);
	} else {
		printf("port %lu detached\n", port);
	}
	if (!freed)
		fprintf(stderr, "usbwire: detach: port %lu is not free yet after 5 s\n", port);
	return 0;
}
