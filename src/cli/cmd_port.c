/* SPDX-License-Identifier: MIT */
/*
 * usbwire port [--json]   the vhci-hcd ports in use and where their devices come from
 *
 * Reads the vhci status files and the record files that `usbwire attach` and `usbip attach`
 * write, so it shows devices attached by either tool (and `usbip port` shows ours).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "uw_vhci.h"
#include "uw_wire.h"

const char *cli_vhci_root(void)
{
	const char *s = getenv("USBWIRE_VHCI_SYSFS");
	return s && *s ? s : UW_VHCI_SYSFS;
}

const char *cli_vhci_record_dir(void)
{
	const char *s = getenv("USBWIRE_VHCI_RECORD_DIR");
	return s && *s ? s : UW_VHCI_RECORD_DIR;
}

bool cli_vhci_check_loaded(const char *cmd)
{
	if (uw_vhci_present(cli_vhci_root()))
		return true;
	cli_err("%s: vhci-hcd is not loaded (%s/attach does not exist); load it with "
	        "'modprobe vhci-hcd' (as root)",
	        cmd, cli_vhci_root());
	return false;
}

const char *cli_vdev_status_name(uint32_t status)
{
	switch (status) {
	case UW_VDEV_NULL:
		return "free";
	case UW_VDEV_NOTASSIGNED:
		return "initializing";
	case UW_VDEV_USED:
		return "in use";
	case UW_VDEV_ERROR:
		return "error";
	}
	return "unknown";
}

const char *cli_vhci_hub_name(uint8_t hub)
{
	return hub == UW_VHCI_HUB_SS ? "ss" : hub == UW_VHCI_HUB_HS ? "hs" : "unknown";
}

/* One line of a sysfs attribute of the local USB device, printable characters only. */
static void local_attr(const char *busid, const char *attr, char *out, size_t cap)
{
	char path[512];
	out[0] = '\0';
	if (!strcmp(busid, "0-0") || strchr(busid, '/'))
		return;
	snprintf(path, sizeof path, "/sys/bus/usb/devices/%s/%s", busid, attr);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	if (!fgets(out, (int)cap, f))
		out[0] = '\0';
	fclose(f);
	for (char *p = out; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			*p = *p == '\n' ? '\0' : '?';
}

static void port_usage(FILE *f)
{
	fprintf(f, "usage: usbwire port [--json]\n"
	           "  -j, --json   machine-readable output\n");
}

int cmd_port(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	bool json = false;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "jh", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'h':
			port_usage(stdout);
			return 0;
		default:
			port_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		port_usage(stderr);
		return 2;
	}
	if (!cli_vhci_check_loaded("port"))
		return 1;
	uw_vhci_status st;
	int se = 0;
	int rc = uw_vhci_read(cli_vhci_root(), &st, &se);
	if (rc) {
		cli_err("port: cannot read %s/status: %s", cli_vhci_root(),
		        se ? strerror(se) : uw_strerror(rc));
		return 1;
	}
	if (json)
		printf("{\"nports\":%u,\"ports\":[", st.nports);
	else
		printf("Imported USB devices\n====================\n");
	unsigned shown = 0;
	for (size_t i = 0; i < st.n; i++) {
		const uw_vhci_port *p = &st.ports[i];
		if (p->status == UW_VDEV_NULL)
			continue;
		uw_vhci_record r;
		bool have_rec = uw_vhci_record_read(cli_vhci_record_dir(), p->port, &r) == UW_OK;
		char vid[16], pid[16], mfr[128], prod[128];
		local_attr(p->local_busid, "idVendor", vid, sizeof vid);
		local_attr(p->local_busid, "idProduct", pid, sizeof pid);
		local_attr(p->local_busid, "manufacturer", mfr, sizeof mfr);
		local_attr(p->local_busid, "product", prod, sizeof prod);
		if (json) {
			printf(
			    "%s{\"port\":%u,\"hub\":\"%s\",\"status\":%u,\"status_name\":\"%s\","
			    "\"speed\":%u,\"speed_name\":\"%s\",\"devid\":%u,\"remote_busnum\":%u,"
			    "\"remote_devnum\":%u,\"local_busid\":",
			    shown ? "," : "", p->port, cli_vhci_hub_name(p->hub), p->status,
			    cli_vdev_status_name(p->status), p->speed, uw_speed_name(p->speed),
			    p->devid, p->devid >> 16, p->devid & 0xffff);
			cli_json_str(p->local_busid);
			printf(",\"vendor_id\":");
			cli_json_str(vid);
			printf(",\"product_id\":");
			cli_json_str(pid);
			printf(",\"manufacturer\":");
			cli_json_str(mfr);
			printf(",\"product\":");
			cli_json_str(prod);
			printf(",\"remote\":");
			if (have_rec) {
				printf("{\"host\":");
				cli_json_str(r.host);
				printf(",\"port\":");
				cli_json_str(r.serv);
				printf(",\"busid\":");
				cli_json_str(r.busid);
				printf("}");
			} else {
				printf("null");
			}
			printf("}");
		} else {
			printf("Port %02u: <%s> at %s\n", p->port, cli_vdev_status_name(p->status),
			       uw_speed_name(p->speed));
			/* The strings come from the remote device and from a record file: escaped
			 */
			char m[UW_ESCAPE_SIZE(sizeof mfr)], pr[UW_ESCAPE_SIZE(sizeof prod)];
			char h[UW_ESCAPE_SIZE(sizeof r.host)], sv[UW_ESCAPE_SIZE(sizeof r.serv)];
			char b[UW_ESCAPE_SIZE(sizeof r.busid)];
			uw_escape(m, sizeof m, mfr, sizeof mfr);
			uw_escape(pr, sizeof pr, prod, sizeof prod);
			if (vid[0])
				printf("       %s : %s (%s:%s)\n", m[0] ? m : "unknown vendor",
				       pr[0] ? pr : "unknown product", vid, pid);
			if (have_rec)
				printf("       %s -> usbip://%s%s%s:%s/%s\n", p->local_busid,
				       strchr(r.host, ':') ? "[" : "",
				       uw_escape(h, sizeof h, r.host, sizeof r.host),
				       strchr(r.host, ':') ? "]" : "",
				       uw_escape(sv, sizeof sv, r.serv, sizeof r.serv),
				       uw_escape(b, sizeof b, r.busid, sizeof r.busid));
			else
				printf("       %s -> (remote location not recorded)\n",
				       p->local_busid);
			printf("           -> remote bus/dev %03u/%03u\n", p->devid >> 16,
			       p->devid & 0xffff);
		}
		shown++;
	}
	if (json)
		printf("]}\n");
	else if (!shown)
		printf("(no ports in use)\n");
	if (st.skipped)
		fprintf(stderr,
		        "usbwire: port: %zu line(s) of the vhci status could not be parsed\n",
		        st.skipped);
	uw_vhci_status_fini(&st);
	return 0;
}
