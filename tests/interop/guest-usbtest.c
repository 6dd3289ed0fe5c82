// SPDX-License-Identifier: MIT
/*
 * usbwire-guest-usbtest: runs test cases of the Linux `usbtest` driver on a device it is bound
 * to (runs inside the qemu guest of the test bed).
 *
 *   usbwire-guest-usbtest [-d /dev/bus/usb/BBB/DDD | -b BUSID] [-i IFNO]
 *                         TEST[:ITERATIONS[:LENGTH[:VARY[:SGLEN]]]] ...
 *
 * Without -d or -b the first device with an interface bound to usbtest is used. Each test is
 * one USBTEST_REQUEST ioctl, handed to the driver through usbfs (USBDEVFS_IOCTL on the
 * interface). One line per test:
 *
 *   test N: ok in X.XXX s (iterations I, length L, vary V, sglen S)
 *   test N: error -E (message) after X.XXX s (...)
 *
 * The time of an ok line is the driver's own measurement. Exit status 0 when every test
 * returned 0, 1 when one failed, 2 on usage or setup errors.
 *
 * The request layout (struct usbtest_param_64, the one a 64-bit process uses): u32 test_num,
 * iterations, length, vary, sglen; s64 duration_sec, duration_usec (filled in by the driver),
 * under ioctl number _IOWR('U', 100, that struct).
 */
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/usbdevice_fs.h>

struct usbtest_param_64 {
	uint32_t test_num;
	uint32_t iterations;
	uint32_t length;
	uint32_t vary;
	uint32_t sglen;
	int64_t duration_sec;
	int64_t duration_usec;
};

#define USBTEST_REQUEST_64 _IOWR('U', 100, struct usbtest_param_64)

#define SYSFS_USB    "/sys/bus/usb/devices"
#define SYSFS_DRIVER "/sys/bus/usb/drivers/usbtest"

static void usage(FILE *f)
{
	fprintf(f, "usage: usbwire-guest-usbtest [-d DEVNODE | -b BUSID] [-i IFNO] "
	           "TEST[:ITERATIONS[:LENGTH[:VARY[:SGLEN]]]] ...\n"
	           "defaults: 1000 iterations, length 1024, vary 512, sglen 32\n");
}

/* Reads an unsigned decimal number from a sysfs file; -1 on failure. */
static long read_number(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	long v = -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* /dev/bus/usb/BBB/DDD of the device BUSID; 0 or -1. */
static int devnode_of(const char *busid, char *out, size_t outlen)
{
	char path[512];
	snprintf(path, sizeof path, SYSFS_USB "/%s/busnum", busid);
	long bus = read_number(path);
	snprintf(path, sizeof path, SYSFS_USB "/%s/devnum", busid);
	long dev = read_number(path);
	if (bus < 0 || dev < 0) {
		fprintf(stderr, "usbtest: no USB device %s in " SYSFS_USB "\n", busid);
		return -1;
	}
	snprintf(out, outlen, "/dev/bus/usb/%03ld/%03ld", bus, dev);
	return 0;
}

/* The first interface bound to usbtest ("B-P:C.I"): its device's busid and interface number. */
static int find_bound(char *busid, size_t busid_len, int *ifno)
{
	DIR *d = opendir(SYSFS_DRIVER);
	if (!d) {
		fprintf(stderr, "usbtest: %s: %s (is the usbtest module loaded?)\n", SYSFS_DRIVER,
		        strerror(errno));
		return -1;
	}
	struct dirent *e;
	int found = -1;
	while ((e = readdir(d)) != NULL) {
		const char *colon = strchr(e->d_name, ':');
		if (!colon || e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		size_t n = (size_t)(colon - e->d_name);
		if (n + 1 > busid_len)
			continue;
		memcpy(busid, e->d_name, n);
		busid[n] = '\0';
		char path[512];
		snprintf(path, sizeof path, SYSFS_DRIVER "/%s/bInterfaceNumber", e->d_name);
		FILE *f = fopen(path, "r");
		unsigned v = 0;
		if (f) {
			if (fscanf(f, "%x", &v) != 1)
				v = 0;
			fclose(f);
		}
		*ifno = (int)v;
		found = 0;
		break;
	}
	closedir(d);
	if (found < 0)
		fprintf(stderr, "usbtest: no interface is bound to usbtest\n");
	return found;
}

static int parse_u32(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 0);
	if (errno || end == s || v > UINT32_MAX)
		return -1;
	*out = (uint32_t)v;
	return (int)(end - s);
}

/* TEST[:ITERATIONS[:LENGTH[:VARY[:SGLEN]]]] */
static int parse_spec(const char *spec, struct usbtest_param_64 *p)
{
	uint32_t *fields[] = {&p->test_num, &p->iterations, &p->length, &p->vary, &p->sglen};
	memset(p, 0, sizeof *p);
	p->iterations = 1000;
	p->length = 1024;
	p->vary = 512;
	p->sglen = 32;
	const char *s = spec;
	for (size_t i = 0; i < sizeof fields / sizeof *fields; i++) {
		int n = parse_u32(s, fields[i]);
		if (n < 0)
			return -1;
		s += n;
		if (*s == '\0')
			return 0;
		if (*s != ':')
			return -1;
		s++;
	}
	return -1;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	const char *devnode = NULL, *busid = NULL;
	char nodebuf[64], busbuf[64];
	int ifno = -1, opt;

	while ((opt = getopt(argc, argv, "d:b:i:h")) != -1) {
		switch (opt) {
		case 'd':
			devnode = optarg;
			break;
		case 'b':
			busid = optarg;
			break;
		case 'i':
			ifno = atoi(optarg);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc || (devnode && busid)) {
		usage(stderr);
		return 2;
	}
	if (!devnode && !busid) {
		int bound_if = 0;
		if (find_bound(busbuf, sizeof busbuf, &bound_if) < 0)
			return 2;
		busid = busbuf;
		if (ifno < 0)
			ifno = bound_if;
	}
	if (busid) {
		if (devnode_of(busid, nodebuf, sizeof nodebuf) < 0)
			return 2;
		devnode = nodebuf;
	}
	if (ifno < 0)
		ifno = 0;

	int fd = open(devnode, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "usbtest: %s: %s\n", devnode, strerror(errno));
		return 2;
	}
	printf("device %s%s%s interface %d\n", devnode, busid ? " busid " : "", busid ? busid : "",
	       ifno);
	fflush(stdout);

	int failed = 0;
	for (int i = optind; i < argc; i++) {
		struct usbtest_param_64 p;
		if (parse_spec(argv[i], &p) < 0) {
			fprintf(stderr, "usbtest: bad test \"%s\"\n", argv[i]);
			usage(stderr);
			close(fd);
			return 2;
		}
		struct usbdevfs_ioctl req = {
		    .ifno = ifno,
		    .ioctl_code = (int)USBTEST_REQUEST_64,
		    .data = &p,
		};
		double t0 = now();
		int r = ioctl(fd, USBDEVFS_IOCTL, &req);
		int err = errno;
		double wall = now() - t0;
		if (r < 0) {
			printf("test %" PRIu32 ": error -%d (%s) after %.3f s (iterations %" PRIu32
			       ", length %" PRIu32 ", vary %" PRIu32 ", sglen %" PRIu32 ")\n",
			       p.test_num, err, strerror(err), wall, p.iterations, p.length, p.vary,
			       p.sglen);
			failed = 1;
		} else {
			double t = (double)p.duration_sec + (double)p.duration_usec / 1e6;
			printf("test %" PRIu32 ": ok in %.3f s (iterations %" PRIu32
			       ", length %" PRIu32 ", vary %" PRIu32 ", sglen %" PRIu32 ")\n",
			       p.test_num, t, p.iterations, p.length, p.vary, p.sglen);
		}
		fflush(stdout);
	}
	close(fd);
	return failed;
}
