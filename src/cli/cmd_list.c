/* SPDX-License-Identifier: MIT */
/*
 * usbwire list -r HOST[:PORT] [--json]   devices a server exports
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

static const char *class_name(uint8_t c)
{
	switch (c) {
	case 0x00:
		return "(Defined at Interface level)";
	case 0x01:
		return "Audio";
	case 0x02:
		return "Communications";
	case 0x03:
		return "Human Interface Device";
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
	case 0x0e:
		return "Video";
	case 0xe0:
		return "Wireless";
	case 0xef:
		return "Miscellaneous Device";
	case 0xfe:
		return "Application Specific Interface";
	case 0xff:
		return "Vendor Specific Class";
	}
	return "unknown class";
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
		printf("%11s: %s : %s (%04x:%04x)\n", d->busid, vendor, product, d->id_vendor,
		       d->id_product);
		printf("%11s: %s\n", "", d->path);
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
	printf(",\"port\":%u,\"devices\":[", port);
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

static void list_usage(FILE *f)
{
	fprintf(f, "usage: usbwire list -r HOST[:PORT] [--json]\n"
	           "       usbwire list -l [--json]\n"
	           "  -r, --remote HOST[:PORT]  devices a USB/IP server exports (port 3240)\n"
	           "  -l, --local               USB devices on this machine\n"
	           "  -j, --json                machine-readable output\n"
	           "  -t, --timeout S           seconds to wait for the server (5)\n");
}

int cmd_list(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"remote", required_argument, NULL, 'r'}, {"local", no_argument, NULL, 'l'},
	    {"json", no_argument, NULL, 'j'},         {"timeout", required_argument, NULL, 't'},
	    {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	const char *remote = NULL;
	bool local = false, json = false;
	int timeout_ms = 5000;
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "r:ljt:h", opts, NULL)) != -1) {
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
	if (local) {
		cli_err("list -l: this build has no libusb backend yet");
		return 1;
	}
	char host[256], err[512];
	uint16_t port;
	if (!cli_host_port(remote, host, sizeof host, &port))
		return 2;
	int fd;
	if (uw_net_connect(host, port, timeout_ms, &fd, err, sizeof err)) {
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
