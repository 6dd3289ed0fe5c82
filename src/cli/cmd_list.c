/* SPDX-License-Identifier: MIT */
/*
 * usbwire list -r ADDR [--json]         devices a server exports
 * usbwire list -l [--json]               local USB devices (real devices, through libusb)
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "uw_client.h"
#include "uw_net.h"
#include "uw_usbsys.h"

static const char *class_name(uint8_t c)
{
	const char *n = cli_class_name(c);
	return n ? n : c == 0 ? "(Defined at Interface level)" : "unknown class";
}

/* Copies at most n - 1 bytes of src and a NUL. */
static void copy_str(char *dst, size_t n, const char *src)
{
	size_t k = strlen(src);
	if (k >= n)
		k = n - 1;
	memcpy(dst, src, k);
	dst[k] = '\0';
}

/* Vendor and product names from usb.ids, read only when printing (it is large). */
static void id_names(uint16_t vid, uint16_t pid, char *vendor, size_t vl, char *product, size_t pl)
{
	snprintf(vendor, vl, "unknown vendor");
	snprintf(product, pl, "unknown product");
	static const char *const paths[] = {"/usr/share/misc/usb.ids", "/usr/share/hwdata/usb.ids",
	                                    "/var/lib/usbutils/usb.ids"};
	FILE *f = NULL;
	for (size_t i = 0; !f && i < sizeof paths / sizeof *paths; i++)
		f = fopen(paths[i], "r");
	if (!f)
		return;
	char line[512], want[8];
	snprintf(want, sizeof want, "%04x", vid);
	bool in_vendor = false;
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = '\0';
		if (line[0] == '#' || !line[0])
			continue;
		if (!in_vendor) {
			if (!strncmp(line, want, 4) && line[4] == ' ') {
				copy_str(vendor, vl, line + 6);
				in_vendor = true;
				snprintf(want, sizeof want, "%04x", pid);
			}
			continue;
		}
		if (line[0] != '\t')
			break;
		if (!strncmp(line + 1, want, 4) && line[5] == ' ') {
			copy_str(product, pl, line + 7);
			break;
		}
	}
	fclose(f);
}

static void print_text(const char *host, const uw_devlist *l)
{
	printf("Exportable USB devices\n======================\n - %s\n", host);
	if (l->n == 0)
		printf("       (no devices exported, or all in use)\n");
	for (size_t i = 0; i < l->n; i++) {
		const uw_usb_device *d = &l->devs[i].dev;
		char vendor[128], product[128];
		id_names(d->id_vendor, d->id_product, vendor, sizeof vendor, product,
		         sizeof product);
		/* busid and path are the server's bytes: printed escaped */
		char busid[UW_ESCAPE_SIZE(UW_BUSID_SIZE)], path[UW_ESCAPE_SIZE(UW_PATH_SIZE)];
		printf("%11s: %s : %s (%04x:%04x)\n",
		       uw_escape(busid, sizeof busid, d->busid, sizeof d->busid), vendor, product,
		       d->id_vendor, d->id_product);
		printf("%11s: %s\n", "", uw_escape(path, sizeof path, d->path, sizeof d->path));
		printf("%11s: %s (%02x/%02x/%02x)\n", "", class_name(d->device_class),
		       d->device_class, d->device_subclass, d->device_protocol);
		for (unsigned k = 0; k < d->num_interfaces && k < UW_MAX_INTERFACES; k++) {
			const uw_usb_interface *f = &l->devs[i].ifaces[k];
			printf("%11s: %2u - %s (%02x/%02x/%02x)\n", "", k,
			       class_name(f->iface_class), f->iface_class, f->iface_subclass,
			       f->iface_protocol);
		}
		printf("%11s: %s, configuration %u of %u\n", "", uw_speed_name(d->speed),
		       d->configuration_value, d->num_configurations);
	}
}

static void print_json(const char *host, uint16_t port, const uw_devlist *l)
{
	printf("{\"host\":");
	cli_json_str(host);
	if (port) /* 0: not a TCP address (unix:, vsock:, fc-vsock:), named whole in host */
		printf(",\"port\":%u,\"devices\":[", port);
	else
		printf(",\"port\":null,\"devices\":[");
	for (size_t i = 0; i < l->n; i++) {
		const uw_usb_device *d = &l->devs[i].dev;
		printf("%s{\"busid\":", i ? "," : "");
		cli_json_str(d->busid);
		printf(",\"path\":");
		cli_json_str(d->path);
		printf(",\"busnum\":%u,\"devnum\":%u,\"speed\":%u,\"speed_name\":\"%s\","
		       "\"vendor_id\":\"%04x\",\"product_id\":\"%04x\",\"bcd_device\":\"%04x\","
		       "\"class\":%u,\"subclass\":%u,\"protocol\":%u,\"configuration\":%u,"
		       "\"num_configurations\":%u,\"interfaces\":[",
		       d->busnum, d->devnum, d->speed, uw_speed_name(d->speed), d->id_vendor,
		       d->id_product, d->bcd_device, d->device_class, d->device_subclass,
		       d->device_protocol, d->configuration_value, d->num_configurations);
		for (unsigned k = 0; k < d->num_interfaces && k < UW_MAX_INTERFACES; k++) {
			const uw_usb_interface *f = &l->devs[i].ifaces[k];
			printf("%s{\"class\":%u,\"subclass\":%u,\"protocol\":%u}", k ? "," : "",
			       f->iface_class, f->iface_subclass, f->iface_protocol);
		}
		printf("]}");
	}
	printf("]}\n");
}

/* ---- Local devices (list -l) ------------------------------------------------------------- */

struct local_row {
	const uw_usbsys_dev *d;
	const char *state;  /* short word */
	const char *detail; /* why, for people */
	const char *rule;   /* the --export rule that selects it, or NULL */
};

static void local_state(struct local_row *r)
{
	const uw_usbsys_dev *d = r->d;
	if (d->is_hub) {
		r->state = "hub";
		r->detail = "a hub cannot be exported (export the devices behind it)";
	} else if (d->use == UW_USBSYS_USBIP_HOST) {
		r->state = "usbip-host";
		r->detail = "bound to the kernel's usbip-host: exported by usbipd";
	} else if (d->use == UW_USBSYS_USBFS) {
		r->state = "in-use";
		r->detail = "claimed through usbfs by a program (usbwire serve with a client "
		            "attached, for one)";
	} else {
		r->state = "available";
		r->detail = "can be exported (usbwire serve --export usb:BUSID)";
	}
}

static void print_local_text(const struct local_row *rows, int n)
{
	printf("Local USB devices\n=================\n");
	if (n == 0)
		printf("       (none)\n");
	for (int i = 0; i < n; i++) {
		const uw_usbsys_dev *d = rows[i].d;
		char vendor[128], product[128];
		id_names(d->vid, d->pid, vendor, sizeof vendor, product, sizeof product);
		/* The strings are the device's own (through sysfs): printed escaped */
		char mfr[UW_ESCAPE_SIZE(sizeof d->manufacturer)],
		    prod[UW_ESCAPE_SIZE(sizeof d->product)], ser[UW_ESCAPE_SIZE(sizeof d->serial)];
		uw_escape(mfr, sizeof mfr, d->manufacturer, sizeof d->manufacturer);
		uw_escape(prod, sizeof prod, d->product, sizeof d->product);
		uw_escape(ser, sizeof ser, d->serial, sizeof d->serial);
		printf("%11s: %s : %s (%04x:%04x)\n", d->busid, mfr[0] ? mfr : vendor,
		       prod[0] ? prod : product, d->vid, d->pid);
		if (ser[0])
			printf("%11s: serial %s\n", "", ser);
		printf("%11s: %s, bus %u device %u, %s (%02x/%02x/%02x)\n", "",
		       uw_speed_name(uw_speed_for_wire(d->speed)), d->busnum, d->devnum,
		       class_name(d->dev_class), d->dev_class, d->dev_subclass, d->dev_protocol);
		printf("%11s: %s: %s%s%s\n", "", rows[i].state, rows[i].detail,
		       d->drivers[0] ? "; drivers: " : "", d->drivers);
		if (rows[i].rule)
			printf("%11s: exported by --export %s\n", "", rows[i].rule);
	}
}

static void print_local_json(const struct local_row *rows, int n)
{
	printf("{\"devices\":[");
	for (int i = 0; i < n; i++) {
		const uw_usbsys_dev *d = rows[i].d;
		printf("%s{\"busid\":", i ? "," : "");
		cli_json_str(d->busid);
		printf(",\"path\":");
		cli_json_str(d->path);
		printf(",\"busnum\":%u,\"devnum\":%u,\"speed\":%u,\"speed_name\":\"%s\","
		       "\"vendor_id\":\"%04x\",\"product_id\":\"%04x\",\"bcd_device\":\"%04x\","
		       "\"class\":%u,\"subclass\":%u,\"protocol\":%u,\"configuration\":%u,"
		       "\"num_configurations\":%u,\"manufacturer\":",
		       d->busnum, d->devnum, uw_speed_for_wire(d->speed),
		       uw_speed_name(uw_speed_for_wire(d->speed)), d->vid, d->pid, d->bcd_device,
		       d->dev_class, d->dev_subclass, d->dev_protocol, d->config_value,
		       d->num_configs);
		cli_json_str(d->manufacturer);
		printf(",\"product\":");
		cli_json_str(d->product);
		printf(",\"serial\":");
		cli_json_str(d->serial);
		printf(",\"hub\":%s,\"state\":", d->is_hub ? "true" : "false");
		cli_json_str(rows[i].state);
		printf(",\"exportable\":%s,\"drivers\":",
		       !d->is_hub && d->use != UW_USBSYS_USBIP_HOST ? "true" : "false");
		cli_json_str(d->drivers);
		printf(",\"exported_by\":");
		if (rows[i].rule)
			cli_json_str(rows[i].rule);
		else
			printf("null");
		printf(",\"interfaces\":[");
		uw_usb_device info;
		uw_usb_interface ifs[UW_MAX_INTERFACES];
		if (uw_usbsys_devrec(d, &info, ifs, NULL) == UW_OK)
			for (unsigned k = 0; k < info.num_interfaces && k < UW_MAX_INTERFACES; k++)
				printf("%s{\"class\":%u,\"subclass\":%u,\"protocol\":%u}",
				       k ? "," : "", ifs[k].iface_class, ifs[k].iface_subclass,
				       ifs[k].iface_protocol);
		printf("]}");
	}
	printf("]}\n");
}

static int list_local(bool json, const char *const *rules_text, size_t nrules)
{
	uw_usb_rule rules[16];
	for (size_t i = 0; i < nrules; i++) {
		char err[256];
		if (uw_usb_rule_parse(rules_text[i], &rules[i], err, sizeof err) != UW_OK) {
			cli_err("list: %s", err);
			return 2;
		}
	}
	uw_usbsys_dev *list = NULL;
	int n = uw_usbsys_scan(UW_USBSYS_ROOT, &list);
	if (n < 0) {
		cli_err("list -l: cannot read %s: %s (no USB support here?)", UW_USBSYS_ROOT,
		        uw_strerror(n));
		return 1;
	}
	struct local_row *rows = calloc((size_t)n + 1, sizeof *rows);
	if (!rows) {
		uw_usbsys_free_list(list, n);
		cli_err("list: out of memory");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		rows[i].d = &list[i];
		local_state(&rows[i]);
		for (size_t k = 0; k < nrules && !rows[i].rule; k++)
			if (uw_usb_rule_match(&rules[k], &list[i]))
				rows[i].rule = rules_text[k];
	}
	if (json)
		print_local_json(rows, n);
	else
		print_local_text(rows, n);
	free(rows);
	uw_usbsys_free_list(list, n);
	return 0;
}

static void list_usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: usbwire list -r ADDR [--json]\n"
	    "       usbwire list -l [--json] [--export usb:SPEC]...\n"
	    "  -r, --remote ADDR        devices a USB/IP server exports: HOST[:PORT] (port 3240),\n"
	    "                           unix:PATH, vsock:CID:PORT, fc-vsock:PATH:PORT\n"
	    "  -l, --local               USB devices on this machine (sysfs), with who\n"
	    "                            holds each one\n"
	    "  -e, --export usb:SPEC     with -l: mark the devices this rule of `usbwire\n"
	    "                            serve` selects (repeatable)\n"
	    "  -j, --json                machine-readable output\n"
	    "  -t, --timeout S           seconds to wait for the server (5)\n");
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"remote", required_argument, NULL, 'r'},
	    {"local", no_argument, NULL, 'l'},
	    {"json", no_argument, NULL, 'j'},
	    {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},
	    {"export", required_argument, NULL, 'e'},
	    {NULL, 0, NULL, 0},
	};
	const char *rules[16];
	size_t nrules = 0;
	const char *remote = NULL;
	bool local = false, json = false;
	int timeout_ms = 5000;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "r:ljt:e:h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			remote = optarg;
			break;
		case 'l':
			local = true;
			break;
		case 'j':
			json = true;
			break;
		case 't':
			timeout_ms = atoi(optarg) * 1000;
			if (timeout_ms <= 0) {
				cli_err("list: invalid timeout \"%s\"", optarg);
				return 2;
			}
			break;
		case 'e':
			if (nrules == sizeof rules / sizeof *rules) {
				cli_err("list: at most 16 --export");
				return 2;
			}
			rules[nrules++] = optarg;
			break;
		case 'h':
			list_usage(stdout);
			return 0;
		default:
			list_usage(stderr);
			return 2;
		}
	}
	if (!!remote == local) {
		list_usage(stderr);
		return 2;
	}
	if (local)
		return list_local(json, rules, nrules);
	char err[512], where[UW_ADDR_PATH_MAX + 300];
	uw_addr addr;
	if (!cli_addr(remote, &addr))
		return 2;
	uw_addr_format(&addr, where, sizeof where);
	const char *host = addr.kind == UW_ADDR_TCP ? addr.host : where;
	uint16_t port = addr.kind == UW_ADDR_TCP ? (uint16_t)addr.port : 0;
	int fd;
	if (uw_addr_connect(&addr, timeout_ms, &fd, err, sizeof err)) {
		cli_err("list: %s", err);
		return 1;
	}
	uw_devlist l;
	int rc = uw_client_list(fd, timeout_ms, &l, err, sizeof err);
	close(fd);
	if (rc) {
		cli_err("list: %s: %s", remote, err);
		return 1;
	}
	if (json)
		print_json(host, port, &l);
	else
		print_text(host, &l);
	uw_devlist_free(&l);
	return 0;
}
