/* SPDX-License-Identifier: MIT */
/*
 * uw_usbsys.h - discovery of local USB devices without udev: sysfs (/sys/bus/usb/devices), the
 * kernel's uevents (NETLINK_KOBJECT_UEVENT), and the export rules that pick devices.
 *
 * Everything read here is untrusted text or bytes (sysfs values are the kernel's, but the
 * descriptors in them are the device's; uevents are parsed as if anyone had sent them): every
 * field is bounded, every number range-checked, descriptors validated with uw_usbdesc before
 * they are used. No function here uses libusb, keeps global state, or prints; all are reentrant.
 * The sysfs root is a parameter, so tests run against a fake tree in a temporary directory.
 */
#ifndef UW_USBSYS_H
#define UW_USBSYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uw_usbdesc.h"
#include "uw_wire.h"

#define UW_USBSYS_ROOT     "/sys/bus/usb/devices"
#define UW_USBSYS_DEVFS    "/dev/bus/usb"
#define UW_USBSYS_STR_MAX  128u /* manufacturer/product/serial kept, with the NUL */
/* The sysfs `descriptors` file: the device descriptor and every raw configuration. */
#define UW_USBSYS_DESC_MAX (18u + 8u * 65535u)

/* Who holds a device now, from the drivers bound to its interfaces. */
enum uw_usbsys_use {
	UW_USBSYS_FREE = 0,       /* no interface driver, or ordinary kernel drivers */
	UW_USBSYS_USBFS = 1,      /* an interface is claimed through usbfs (a userspace program) */
	UW_USBSYS_USBIP_HOST = 2, /* bound to the kernel's usbip-host (exported by usbipd) */
};

/* One USB device as sysfs shows it. Caller storage; uw_usbsys_dev_fini() frees desc. */
typedef struct uw_usbsys_dev {
	char busid[UW_BUSID_SIZE]; /* "1-2", "3-2.1" */
	char path[UW_PATH_SIZE];   /* the device's real sysfs path, "/sys/devices/..." */
	uint32_t busnum, devnum;
	uint16_t vid, pid, bcd_device;
	uint8_t dev_class, dev_subclass, dev_protocol;
	uint8_t config_value; /* active configuration (from the interface names): 0 none */
	uint8_t num_configs;
	enum uw_speed speed;
	char manufacturer[UW_USBSYS_STR_MAX]; /* "" when absent; control characters replaced */
	char product[UW_USBSYS_STR_MAX];
	char serial[UW_USBSYS_STR_MAX];
	bool is_hub;
	enum uw_usbsys_use use;
	char drivers[128]; /* interface drivers, comma-separated ("usb-storage", "usbfs") */
	uint8_t *desc;     /* the `descriptors` file (malloc'd), or NULL */
	size_t desc_len;
} uw_usbsys_dev;

/** uw_usbsys_busid_valid() - "N-P[.P]..." with N, P decimal (1..3 digits), < 32 chars. */
bool uw_usbsys_busid_valid(const char *busid);

/**
 * uw_usbsys_read() - read device busid under root (e.g. UW_USBSYS_ROOT). The strings take the
 * device's lock in the kernel: this may wait while the device is being probed. Root hubs ("usbN")
 * and interfaces are not devices here. Returns UW_OK and fills *out (free with
 * uw_usbsys_dev_fini()); UW_E_INVAL for a busid that is not valid; UW_E_NODEV when it is not
 * there (or vanished while being read); UW_E_DESC when a required attribute is malformed.
 * On failure *out is zeroed (uw_usbsys_dev_fini() on it is a no-op). The descriptors are read but
 * validated only by their users (uw_usbsys_devrec()).
 */
int uw_usbsys_read(const char *root, const char *busid, uw_usbsys_dev *out);

/**
 * uw_usbsys_ids() - idVendor, idProduct, whether it is a hub and whether it hangs off vhci_hcd,
 * from attributes that take no device lock (so this never waits for a device being probed, unlike
 * uw_usbsys_read(), whose strings do). Returns UW_OK, or UW_E_NODEV.
 */
int uw_usbsys_ids(const char *root, const char *busid, uint16_t *vid, uint16_t *pid, bool *is_hub,
                  bool *under_vhci);

/** uw_usbsys_dev_fini() - free what uw_usbsys_read() allocated; d may be zeroed storage. */
void uw_usbsys_dev_fini(uw_usbsys_dev *d);

/**
 * uw_usbsys_scan() - every device under root, sorted by busid (bus, then port path). Devices that
 * fail to read are skipped. Returns the count (>= 0) and sets *out to a malloc'd array (free with
 * uw_usbsys_free_list()), or UW_E_NODEV if root cannot be opened, UW_E_NOMEM.
 */
int uw_usbsys_scan(const char *root, uw_usbsys_dev **out);
void uw_usbsys_free_list(uw_usbsys_dev *list, int n);

/**
 * uw_usbsys_config() - the raw configuration whose bConfigurationValue is value inside the
 * `descriptors` bytes of d, validated with uw_config_check(). Returns UW_OK and sets *cfg, *len
 * (pointing into d->desc); UW_E_NOTFOUND; or the validation error.
 */
int uw_usbsys_config(const uw_usbsys_dev *d, uint8_t value, const uint8_t **cfg, size_t *len);

/**
 * uw_usbsys_devrec() - the USB/IP device record of d and its interface records (at most
 * UW_MAX_INTERFACES), as the device is configured now (altsettings 0). A configuration that does
 * not validate is reported as unconfigured (record with 0 interfaces) and the error returned in
 * *cfg_err (may be NULL; UW_OK when fine). Returns UW_OK, or UW_E_DESC when the device
 * descriptor itself is malformed.
 */
int uw_usbsys_devrec(const uw_usbsys_dev *d, uw_usb_device *info, uw_usb_interface *ifaces,
                     int *cfg_err);

/**
 * uw_usbsys_alt() - bAlternateSetting of interface iface of configuration config of device
 * busid (from the interface's sysfs directory "BUSID:CONFIG.IFACE"). Returns 0..255, or -1 when
 * it cannot be read.
 */
int uw_usbsys_alt(const char *root, const char *busid, uint8_t config, uint8_t iface);

/* ---- Kernel uevents ------------------------------------------------------------------------ */

enum uw_uevent_action {
	UW_UEVENT_OTHER = 0,
	UW_UEVENT_ADD = 1,
	UW_UEVENT_REMOVE = 2,
	UW_UEVENT_CHANGE = 3,
	UW_UEVENT_BIND = 4,
	UW_UEVENT_UNBIND = 5,
};

enum uw_uevent_kind {
	UW_UEVENT_NOT_USB = 0,   /* another subsystem, or nothing we can use */
	UW_UEVENT_DEVICE = 1,    /* SUBSYSTEM=usb DEVTYPE=usb_device */
	UW_UEVENT_INTERFACE = 2, /* SUBSYSTEM=usb DEVTYPE=usb_interface (busid: its device's) */
};

typedef struct uw_uevent {
	enum uw_uevent_action action;
	enum uw_uevent_kind kind;
	char busid[UW_BUSID_SIZE]; /* the device's busid (for an interface, its parent's) */
	uint32_t busnum, devnum;   /* BUSNUM/DEVNUM when present and valid, else 0 */
	uint32_t seqnum;
} uw_uevent;

/**
 * uw_uevent_parse() - decode one kernel uevent datagram: "ACTION@DEVPATH\0KEY=VALUE\0...".
 * Anything malformed (no '@', a header that disagrees with ACTION=/DEVPATH=, an over-long
 * field, a devpath whose last element is not a busid, a udev "libudev" message) gives
 * UW_E_PROTO; a well-formed event of no interest gives UW_OK with kind UW_UEVENT_NOT_USB.
 * Never reads outside buf[0..len). Returns UW_OK and fills *out, or UW_E_PROTO/UW_E_INVAL.
 */
int uw_uevent_parse(const uint8_t *buf, size_t len, uw_uevent *out);

/* ---- Export rules -------------------------------------------------------------------------- */

enum uw_usb_rule_kind { UW_RULE_BUSID = 1, UW_RULE_IDS = 2 };

typedef struct uw_usb_rule {
	enum uw_usb_rule_kind kind;
	char busid[UW_BUSID_SIZE];
	uint16_t vid, pid;
	bool has_serial;
	char serial[UW_USBSYS_STR_MAX];
	char text[160]; /* the spec as given, for logs */
} uw_usb_rule;

/**
 * uw_usb_rule_parse() - "usb:BUSID" (e.g. usb:1-2, usb:3-2.1) or "usb:VID:PID[:SERIAL]" (four
 * hex digits each; the serial is the rest, compared exactly). Returns UW_OK and fills *out, or
 * UW_E_INVAL with a message in err[0..errlen).
 */
int uw_usb_rule_parse(const char *spec, uw_usb_rule *out, char *err, size_t errlen);

/**
 * uw_usb_rule_match() - whether rule r selects device d. Hubs are never selected; devices under
 * vhci_hcd (imported from a USB/IP server) only by a busid rule.
 */
bool uw_usb_rule_match(const uw_usb_rule *r, const uw_usbsys_dev *d);

#endif /* UW_USBSYS_H */
