/* SPDX-License-Identifier: MIT */
/*
 * uw_usbsys.c - local USB devices from sysfs, kernel uevents, export rules (uw_usbsys.h).
 *
 * sysfs text is read with read(2) into bounded buffers and parsed strictly (no sscanf): a value
 * that is not what the kernel writes makes the attribute (and usually the device) unusable rather
 * than half-read.
 */
#include "uw_usbsys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- Small parsers ------------------------------------------------------------------------- */

/* Strict unsigned number of base 10 or 16 in s[0..n): digits only, at most max. */
static bool parse_num(const char *s, size_t n, int base, unsigned long max, unsigned long *out)
{
	if (n == 0 || n > 16)
		return false;
	unsigned long v = 0;
	for (size_t i = 0; i < n; i++) {
		int d;
		char c = s[i];
		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else
			return false;
		v = v * (unsigned long)base + (unsigned long)d;
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

bool uw_usbsys_busid_valid(const char *busid)
{
	if (!busid)
		return false;
	size_t n = strnlen(busid, UW_BUSID_SIZE);
	if (n == 0 || n >= UW_BUSID_SIZE)
		return false;
	/* bus number, '-', then port numbers separated by '.' */
	const char *p = busid;
	int digits = 0;
	while (*p >= '0' && *p <= '9') {
		p++;
		digits++;
	}
	if (digits == 0 || digits > 3 || *p != '-' || busid[0] == '0')
		return false;
	p++;
	for (;;) {
		digits = 0;
		while (*p >= '0' && *p <= '9') {
			p++;
			digits++;
		}
		if (digits == 0 || digits > 3)
			return false;
		if (*p == '\0')
			return true;
		if (*p != '.')
			return false;
		p++;
	}
}

/* Copies printable text, replacing control bytes (a device chooses its strings). */
static void copy_clean(char *dst, size_t cap, const char *src, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n && k + 1 < cap; i++) {
		unsigned char c = (unsigned char)src[i];
		dst[k++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
	}
	dst[k] = '\0';
}

/* ---- sysfs reading ------------------------------------------------------------------------- */

/* Reads root/name/attr (at most cap-1 bytes), drops one trailing newline. Returns the length or
 * -1 (errno set). */
static ssize_t read_attr(const char *root, const char *name, const char *attr, char *buf,
                         size_t cap)
{
	char path[PATH_MAX];
	int k = snprintf(path, sizeof path, "%s/%s/%s", root, name, attr);
	if (k < 0 || (size_t)k >= sizeof path) {
		errno = ENAMETOOLONG;
		return -1;
	}
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	size_t len = 0;
	while (len + 1 < cap) {
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			close(fd);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (len && buf[len - 1] == '\n')
		len--;
	buf[len] = '\0';
	return (ssize_t)len;
}

static bool attr_num(const char *root, const char *name, const char *attr, int base,
                     unsigned long max, unsigned long *out)
{
	char buf[32];
	ssize_t n = read_attr(root, name, attr, buf, sizeof buf);
	return n >= 0 && parse_num(buf, (size_t)n, base, max, out);
}

static void attr_str(const char *root, const char *name, const char *attr, char *dst, size_t cap)
{
	char buf[512];
	ssize_t n = read_attr(root, name, attr, buf, sizeof buf);
	if (n < 0)
		n = 0;
	copy_clean(dst, cap, buf, (size_t)n);
}

/* The `descriptors` binary attribute, whole. */
static int read_descriptors(const char *root, const char *name, uw_usbsys_dev *d)
{
	char path[PATH_MAX];
	int k = snprintf(path, sizeof path, "%s/%s/descriptors", root, name);
	if (k < 0 || (size_t)k >= sizeof path)
		return UW_E_INVAL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? UW_E_NODEV : UW_E_IO;
	size_t cap = 4096, len = 0;
	uint8_t *buf = malloc(cap);
	while (buf) {
		if (len == cap) {
			if (cap >= UW_USBSYS_DESC_MAX)
				break;
			size_t ncap = cap * 2 > UW_USBSYS_DESC_MAX ? UW_USBSYS_DESC_MAX : cap * 2;
			uint8_t *nb = realloc(buf, ncap);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap = ncap;
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) { /* a part would pass for the whole: configurations "missing" */
			free(buf);
			close(fd);
			return UW_E_IO;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	close(fd);
	if (!buf)
		return UW_E_NOMEM;
	if (len == cap) { /* more than UW_USBSYS_DESC_MAX: refused rather than cut */
		free(buf);
		return UW_E_DESC;
	}
	d->desc = buf;
	d->desc_len = len;
	return UW_OK;
}

/* Drivers of the device's interfaces: entries "BUSID:C.I" of its directory. C is the active
 * configuration: reading it there takes no lock, while the bConfigurationValue attribute waits for
 * the device lock - held for seconds while the device is probed, and for ever if its probe waits
 * for us (a vhci device whose server is this process). */
static void read_interfaces(const char *root, const char *busid, uw_usbsys_dev *d)
{
	char dir[PATH_MAX];
	int k = snprintf(dir, sizeof dir, "%s/%s", root, busid);
	if (k < 0 || (size_t)k >= sizeof dir)
		return;
	DIR *dp = opendir(dir);
	if (!dp)
		return;
	size_t bl = strlen(busid);
	struct dirent *de;
	while ((de = readdir(dp))) {
		if (strncmp(de->d_name, busid, bl) != 0 || de->d_name[bl] != ':')
			continue;
		const char *cv = de->d_name + bl + 1;
		const char *dot = strchr(cv, '.');
		unsigned long c;
		if (dot && parse_num(cv, (size_t)(dot - cv), 10, 0xff, &c) && c)
			d->config_value = (uint8_t)c;
		char link[PATH_MAX], target[PATH_MAX];
		k = snprintf(link, sizeof link, "%s/%s/driver", dir, de->d_name);
		if (k < 0 || (size_t)k >= sizeof link)
			continue;
		ssize_t n = readlink(link, target, sizeof target - 1);
		if (n <= 0)
			continue;
		target[n] = '\0';
		const char *drv = strrchr(target, '/');
		drv = drv ? drv + 1 : target;
		if (!strcmp(drv, "usbfs"))
			d->use = UW_USBSYS_USBFS;
		/* Append once. */
		char needle[80];
		snprintf(needle, sizeof needle, "%.79s", drv);
		bool dup = false;
		for (const char *p = d->drivers; (p = strstr(p, needle)); p++) {
			size_t nl = strlen(needle);
			if ((p == d->drivers || p[-1] == ',') && (p[nl] == ',' || p[nl] == '\0')) {
				dup = true;
				break;
			}
		}
		size_t used = strlen(d->drivers);
		if (!dup && used + strlen(needle) + 2 < sizeof d->drivers) {
			if (used)
				d->drivers[used++] = ',';
			copy_clean(d->drivers + used, sizeof d->drivers - used, needle,
			           strlen(needle));
		}
	}
	closedir(dp);
}

int uw_usbsys_ids(const char *root, const char *busid, uint16_t *vid, uint16_t *pid, bool *is_hub,
                  bool *under_vhci)
{
	unsigned long v, p, c = 0;
	if (!uw_usbsys_busid_valid(busid) || !attr_num(root, busid, "idVendor", 16, 0xffff, &v) ||
	    !attr_num(root, busid, "idProduct", 16, 0xffff, &p))
		return UW_E_NODEV;
	attr_num(root, busid, "bDeviceClass", 16, 0xff, &c);
	char link[PATH_MAX], real[PATH_MAX];
	int k = snprintf(link, sizeof link, "%s/%s", root, busid);
	*under_vhci = k > 0 && (size_t)k < sizeof link && realpath(link, real) &&
	              strstr(real, "/vhci_hcd") != NULL;
	*vid = (uint16_t)v;
	*pid = (uint16_t)p;
	*is_hub = c == 0x09;
	return UW_OK;
}

int uw_usbsys_read(const char *root, const char *busid, uw_usbsys_dev *out)
{
	if (!out)
		return UW_E_INVAL;
	memset(out, 0, sizeof *out); /* a failed read leaves nothing to free */
	if (!root || !uw_usbsys_busid_valid(busid))
		return UW_E_INVAL;
	uw_usbsys_dev d;
	memset(&d, 0, sizeof d);
	snprintf(d.busid, sizeof d.busid, "%s", busid);
	unsigned long v;
	char buf[64];
	char dir[PATH_MAX];
	int dl = snprintf(dir, sizeof dir, "%s/%s", root, busid);
	if (dl < 0 || (size_t)dl >= sizeof dir || access(dir, F_OK) != 0)
		return UW_E_NODEV;
	if (!attr_num(root, busid, "busnum", 10, 0xffff, &v))
		return UW_E_DESC;
	d.busnum = (uint32_t)v;
	if (!attr_num(root, busid, "devnum", 10, 0xffff, &v))
		return UW_E_DESC;
	d.devnum = (uint32_t)v;
	if (!attr_num(root, busid, "idVendor", 16, 0xffff, &v))
		return UW_E_DESC;
	d.vid = (uint16_t)v;
	if (!attr_num(root, busid, "idProduct", 16, 0xffff, &v))
		return UW_E_DESC;
	d.pid = (uint16_t)v;
	if (attr_num(root, busid, "bcdDevice", 16, 0xffff, &v))
		d.bcd_device = (uint16_t)v;
	if (attr_num(root, busid, "bDeviceClass", 16, 0xff, &v))
		d.dev_class = (uint8_t)v;
	if (attr_num(root, busid, "bDeviceSubClass", 16, 0xff, &v))
		d.dev_subclass = (uint8_t)v;
	if (attr_num(root, busid, "bDeviceProtocol", 16, 0xff, &v))
		d.dev_protocol = (uint8_t)v;
	if (attr_num(root, busid, "bNumConfigurations", 10, 0xff, &v))
		d.num_configs = (uint8_t)v;
	ssize_t n = read_attr(root, busid, "speed", buf, sizeof buf);
	d.speed = n > 0 ? uw_speed_from_sysfs(buf) : UW_SPEED_UNKNOWN;
	attr_str(root, busid, "manufacturer", d.manufacturer, sizeof d.manufacturer);
	attr_str(root, busid, "product", d.product, sizeof d.product);
	attr_str(root, busid, "serial", d.serial, sizeof d.serial);
	d.is_hub = d.dev_class == 0x09;
	char link[PATH_MAX], real[PATH_MAX];
	int k = snprintf(link, sizeof link, "%s/%s", root, busid);
	if (k > 0 && (size_t)k < sizeof link && realpath(link, real))
		copy_clean(d.path, sizeof d.path, real, strlen(real));
	else
		copy_clean(d.path, sizeof d.path, link, strlen(link));
	read_interfaces(root, busid, &d);
	if (!strcmp(d.drivers, "usbip-host") || strstr(d.drivers, "usbip-host"))
		d.use = UW_USBSYS_USBIP_HOST;
	/* usbip-host binds to the device itself, not to its interfaces. */
	char target[PATH_MAX];
	k = snprintf(link, sizeof link, "%s/%s/driver", root, busid);
	ssize_t tl =
	    k > 0 && (size_t)k < sizeof link ? readlink(link, target, sizeof target - 1) : -1;
	if (tl > 0) {
		target[tl] = '\0';
		const char *drv = strrchr(target, '/');
		if (drv && !strcmp(drv + 1, "usbip-host"))
			d.use = UW_USBSYS_USBIP_HOST;
	}
	int rc = read_descriptors(root, busid, &d);
	if (rc == UW_E_NOMEM)
		return rc;
	*out = d;
	return UW_OK;
}

void uw_usbsys_dev_fini(uw_usbsys_dev *d)
{
	if (!d)
		return;
	free(d->desc);
	d->desc = NULL;
	d->desc_len = 0;
}

/* Orders busids by bus, then by each port number. */
static int busid_cmp(const void *a, const void *b)
{
	const char *x = ((const uw_usbsys_dev *)a)->busid;
	const char *y = ((const uw_usbsys_dev *)b)->busid;
	while (*x && *y) {
		char *ex, *ey;
		unsigned long nx = strtoul(x, &ex, 10), ny = strtoul(y, &ey, 10);
		if (nx != ny)
			return nx < ny ? -1 : 1;
		x = *ex ? ex + 1 : ex;
		y = *ey ? ey + 1 : ey;
	}
	return *x ? 1 : *y ? -1 : 0;
}

int uw_usbsys_scan(const char *root, uw_usbsys_dev **out)
{
	DIR *dp = opendir(root);
	if (!dp)
		return UW_E_NODEV;
	uw_usbsys_dev *list = NULL;
	int n = 0, cap = 0;
	struct dirent *de;
	int rc = UW_OK;
	while ((de = readdir(dp))) {
		if (!uw_usbsys_busid_valid(de->d_name))
			continue; /* ".", "usb1" (root hubs), "1-1:1.0" (interfaces) */
		if (n == cap) {
			int ncap = cap ? cap * 2 : 16;
			uw_usbsys_dev *nl = realloc(list, (size_t)ncap * sizeof *nl);
			if (!nl) {
				rc = UW_E_NOMEM;
				break;
			}
			list = nl;
			cap = ncap;
		}
		if (uw_usbsys_read(root, de->d_name, &list[n]) == UW_OK)
			n++;
	}
	closedir(dp);
	if (rc != UW_OK) {
		uw_usbsys_free_list(list, n);
		return rc;
	}
	if (n > 1)
		qsort(list, (size_t)n, sizeof *list, busid_cmp);
	*out = list;
	return n;
}

void uw_usbsys_free_list(uw_usbsys_dev *list, int n)
{
	for (int i = 0; list && i < n; i++)
		uw_usbsys_dev_fini(&list[i]);
	free(list);
}

int uw_usbsys_config(const uw_usbsys_dev *d, uint8_t value, const uint8_t **cfg, size_t *len)
{
	if (!d->desc || d->desc_len < UW_DEVICE_DESC_LEN || d->desc[0] != UW_DEVICE_DESC_LEN)
		return UW_E_NOTFOUND;
	size_t off = UW_DEVICE_DESC_LEN;
	while (d->desc_len - off >= UW_CONFIG_DESC_LEN) {
		const uint8_t *p = d->desc + off;
		size_t total = (size_t)(p[2] | p[3] << 8);
		if (p[1] != UW_DT_CONFIG || total < UW_CONFIG_DESC_LEN || total > d->desc_len - off)
			return UW_E_DESC; /* the chain is broken: nothing after it can be trusted */
		if (p[5] == value) {
			int rc = uw_config_check(p, total, NULL, NULL);
			if (rc != UW_OK)
				return rc;
			*cfg = p;
			*len = total;
			return UW_OK;
		}
		off += total;
	}
	return UW_E_NOTFOUND;
}

int uw_usbsys_devrec(const uw_usbsys_dev *d, uw_usb_device *info, uw_usb_interface *ifaces,
                     int *cfg_err)
{
	uw_device_desc dd;
	if (!d->desc || uw_device_desc_parse(d->desc, d->desc_len, &dd, NULL) != UW_OK)
		return UW_E_DESC;
	const uint8_t *cfg = NULL;
	size_t len = 0;
	int ce = UW_OK;
	if (d->config_value) {
		ce = uw_usbsys_config(d, d->config_value, &cfg, &len);
		if (ce != UW_OK)
			cfg = NULL;
	}
	int rc = uw_devrec_from_descriptors(&dd, cfg, len, cfg ? d->config_value : 0, NULL,
	                                    d->busid, d->path, d->busnum, d->devnum, d->speed, info,
	                                    ifaces, UW_MAX_INTERFACES);
	if (rc != UW_OK && cfg) {
		ce = rc;
		rc = uw_devrec_from_descriptors(&dd, NULL, 0, 0, NULL, d->busid, d->path, d->busnum,
		                                d->devnum, d->speed, info, ifaces,
		                                UW_MAX_INTERFACES);
	}
	if (cfg_err)
		*cfg_err = ce;
	return rc == UW_OK ? UW_OK : UW_E_DESC;
}

/* ---- uevents ------------------------------------------------------------------------------- */

#define UEVENT_FIELD_MAX 4096u

static enum uw_uevent_action action_of(const char *s, size_t n)
{
	static const struct {
		const char *name;
		enum uw_uevent_action a;
	} t[] = {
	    {"add", UW_UEVENT_ADD},   {"remove", UW_UEVENT_REMOVE}, {"change", UW_UEVENT_CHANGE},
	    {"bind", UW_UEVENT_BIND}, {"unbind", UW_UEVENT_UNBIND},
	};
	for (size_t i = 0; i < sizeof t / sizeof *t; i++)
		if (strlen(t[i].name) == n && !memcmp(t[i].name, s, n))
			return t[i].a;
	return UW_UEVENT_OTHER;
}

static bool field_is(const char *f, size_t n, const char *key, const char **val, size_t *vn)
{
	size_t kl = strlen(key);
	if (n <= kl || memcmp(f, key, kl) != 0 || f[kl] != '=')
		return false;
	*val = f + kl + 1;
	*vn = n - kl - 1;
	return true;
}

int uw_uevent_parse(const uint8_t *buf, size_t len, uw_uevent *out)
{
	if (!buf || !out)
		return UW_E_INVAL;
	const char *s = (const char *)buf;
	/* The header runs to the first NUL (or the end). */
	size_t hl = strnlen(s, len);
	const char *at = memchr(s, '@', hl);
	if (!at || at == s || hl - (size_t)(at - s) < 2 || hl > UEVENT_FIELD_MAX)
		return UW_E_PROTO; /* also rejects udev's "libudev\0..." messages */
	const char *hact = s;
	size_t hact_n = (size_t)(at - s);
	const char *hpath = at + 1;
	size_t hpath_n = hl - hact_n - 1;
	if (hpath[0] != '/')
		return UW_E_PROTO;
	uw_uevent ev = {.action = action_of(hact, hact_n), .kind = UW_UEVENT_NOT_USB};
	const char *subsys = NULL, *devtype = NULL;
	size_t subsys_n = 0, devtype_n = 0;
	size_t off = hl + 1;
	while (off < len) {
		const char *f = s + off;
		size_t n = strnlen(f, len - off);
		if (n > UEVENT_FIELD_MAX)
			return UW_E_PROTO;
		const char *v;
		size_t vn;
		unsigned long num;
		if (n == 0) {
			/* empty field (e.g. padding at the end) */
		} else if (field_is(f, n, "ACTION", &v, &vn)) {
			if (vn != hact_n || memcmp(v, hact, vn))
				return UW_E_PROTO;
		} else if (field_is(f, n, "DEVPATH", &v, &vn)) {
			if (vn != hpath_n || memcmp(v, hpath, vn))
				return UW_E_PROTO;
		} else if (field_is(f, n, "SUBSYSTEM", &v, &vn)) {
			subsys = v;
			subsys_n = vn;
		} else if (field_is(f, n, "DEVTYPE", &v, &vn)) {
			devtype = v;
			devtype_n = vn;
		} else if (field_is(f, n, "BUSNUM", &v, &vn)) {
			if (parse_num(v, vn, 10, 0xffff, &num))
				ev.busnum = (uint32_t)num;
		} else if (field_is(f, n, "DEVNUM", &v, &vn)) {
			if (parse_num(v, vn, 10, 0xffff, &num))
				ev.devnum = (uint32_t)num;
		} else if (field_is(f, n, "SEQNUM", &v, &vn)) {
			if (parse_num(v, vn, 10, 0xffffffffu, &num))
				ev.seqnum = (uint32_t)num;
		}
		off += n + 1;
	}
	bool usb = subsys && subsys_n == 3 && !memcmp(subsys, "usb", 3);
	bool is_dev = devtype && devtype_n == 10 && !memcmp(devtype, "usb_device", 10);
	bool is_if = devtype && devtype_n == 13 && !memcmp(devtype, "usb_interface", 13);
	if (usb && (is_dev || is_if)) {
		/* The last element of the devpath names the device ("1-2") or the interface
		 * ("1-2:1.0", whose device is the part before ':'). */
		const char *last = hpath + hpath_n;
		while (last > hpath && last[-1] != '/')
			last--;
		size_t ln = (size_t)(hpath + hpath_n - last);
		if (is_if) {
			const char *colon = memchr(last, ':', ln);
			if (!colon)
				return UW_E_PROTO;
			ln = (size_t)(colon - last);
		}
		if (ln == 0 || ln >= UW_BUSID_SIZE) {
			if (is_if)
				return UW_E_PROTO;
			ln = 0;
		}
		if (ln) {
			memcpy(ev.busid, last, ln);
			ev.busid[ln] = '\0';
		}
		if (ln && uw_usbsys_busid_valid(ev.busid)) {
			ev.kind = is_dev ? UW_UEVENT_DEVICE : UW_UEVENT_INTERFACE;
		} else if (is_dev && ln >= 4 && !memcmp(ev.busid, "usb", 3)) {
			ev.busid[0] = '\0'; /* a root hub: not exportable, of no interest */
		} else {
			return UW_E_PROTO;
		}
	}
	if (ev.kind == UW_UEVENT_NOT_USB) {
		ev.busid[0] = '\0';
		ev.busnum = ev.devnum = 0;
	}
	*out = ev;
	return UW_OK;
}

/* ---- Rules --------------------------------------------------------------------------------- */

static bool hex4(const char *s, size_t n, uint16_t *out)
{
	unsigned long v;
	if (n != 4 || !parse_num(s, n, 16, 0xffff, &v))
		return false;
	*out = (uint16_t)v;
	return true;
}

int uw_usb_rule_parse(const char *spec, uw_usb_rule *out, char *err, size_t errlen)
{
	uw_usb_rule r;
	memset(&r, 0, sizeof r);
	if (!spec || strncmp(spec, "usb:", 4) != 0) {
		snprintf(err, errlen, "a real-device spec starts with usb:");
		return UW_E_INVAL;
	}
	if (strlen(spec) >= sizeof r.text) {
		snprintf(err, errlen, "%.40s...: too long", spec);
		return UW_E_INVAL;
	}
	snprintf(r.text, sizeof r.text, "%s", spec);
	const char *p = spec + 4;
	const char *c1 = strchr(p, ':');
	if (!c1) {
		if (!uw_usbsys_busid_valid(p)) {
			snprintf(err, errlen,
			         "%s: not a busid (BUS-PORT[.PORT]..., e.g. usb:1-2) nor "
			         "usb:VID:PID[:SERIAL]",
			         spec);
			return UW_E_INVAL;
		}
		r.kind = UW_RULE_BUSID;
		snprintf(r.busid, sizeof r.busid, "%s", p);
		*out = r;
		return UW_OK;
	}
	const char *c2 = strchr(c1 + 1, ':');
	size_t pid_n = c2 ? (size_t)(c2 - c1 - 1) : strlen(c1 + 1);
	if (!hex4(p, (size_t)(c1 - p), &r.vid) || !hex4(c1 + 1, pid_n, &r.pid)) {
		snprintf(err, errlen, "%s: expected usb:VID:PID[:SERIAL] with 4 hex digits each",
		         spec);
		return UW_E_INVAL;
	}
	r.kind = UW_RULE_IDS;
	if (c2) {
		if (!c2[1] || strlen(c2 + 1) >= sizeof r.serial) {
			snprintf(err, errlen, "%s: the serial is empty or too long", spec);
			return UW_E_INVAL;
		}
		r.has_serial = true;
		snprintf(r.serial, sizeof r.serial, "%s", c2 + 1);
	}
	*out = r;
	return UW_OK;
}

bool uw_usb_rule_match(const uw_usb_rule *r, const uw_usbsys_dev *d)
{
	if (d->is_hub)
		return false;
	switch (r->kind) {
	case UW_RULE_BUSID:
		return strcmp(r->busid, d->busid) == 0;
	case UW_RULE_IDS:
		/* A device imported through vhci has the ids of the one it mirrors: re-exporting
		 * it by ids would loop (and could be our own client's). Only a busid rule does. */
		if (strstr(d->path, "/vhci_hcd"))
			return false;
		return r->vid == d->vid && r->pid == d->pid &&
		       (!r->has_serial || strcmp(r->serial, d->serial) == 0);
	}
	return false;
}

int uw_usbsys_alt(const char *root, const char *busid, uint8_t config, uint8_t iface)
{
	char name[UW_BUSID_SIZE + 16], buf[16];
	unsigned long v;
	snprintf(name, sizeof name, "%s:%u.%u", busid, config, iface);
	ssize_t n = read_attr(root, name, "bAlternateSetting", buf, sizeof buf);
	if (n <= 0)
		return -1;
	/* The kernel pads it: "%2d". */
	const char *p = buf;
	while (*p == ' ')
		p++;
	return parse_num(p, strlen(p), 10, 0xff, &v) ? (int)v : -1;
}
