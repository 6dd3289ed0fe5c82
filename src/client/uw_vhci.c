/* SPDX-License-Identifier: MIT */
#include "uw_vhci.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "uw_error.h"

/* ---- Parsing ------------------------------------------------------------------------------ */

/* A token: pointer and length into the caller's text. */
struct tok {
	const char *p;
	size_t n;
};

static bool is_blank(char c)
{
	return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Splits [p, end) into at most max tokens; returns how many there are (may exceed max). */
static size_t tokenize(const char *p, const char *end, struct tok *t, size_t max)
{
	size_t n = 0;
	while (p < end) {
		while (p < end && is_blank(*p))
			p++;
		if (p == end)
			break;
		const char *s = p;
		while (p < end && !is_blank(*p))
			p++;
		if (n < max)
			t[n] = (struct tok){s, (size_t)(p - s)};
		n++;
	}
	return n;
}

static bool tok_is(const struct tok *t, const char *s)
{
	size_t k = strlen(s);
	return t->n == k && memcmp(t->p, s, k) == 0;
}

/* Decimal (base 10) or hex (base 16) digits only, value <= max. */
static bool tok_num(const struct tok *t, unsigned base, uint32_t max, uint32_t *out)
{
	if (t->n == 0 || t->n > 16)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < t->n; i++) {
		char c = t->p[i];
		unsigned d;
		if (c >= '0' && c <= '9')
			d = (unsigned)(c - '0');
		else if (base == 16 && c >= 'a' && c <= 'f')
			d = (unsigned)(c - 'a' + 10);
		else if (base == 16 && c >= 'A' && c <= 'F')
			d = (unsigned)(c - 'A' + 10);
		else
			return false;
		v = v * base + d;
		if (v > max)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

static bool tok_busid(const struct tok *t, char *out)
{
	if (t->n == 0 || t->n >= UW_BUSID_SIZE)
		return false;
	for (size_t i = 0; i < t->n; i++)
		if ((unsigned char)t->p[i] < 0x21 || (unsigned char)t->p[i] > 0x7e)
			return false;
	memcpy(out, t->p, t->n);
	out[t->n] = '\0';
	return true;
}

/* One port line. Returns 1 (parsed), 0 (header or blank: ignore), -1 (malformed). */
static int parse_line(const char *p, const char *end, uw_vhci_port *out)
{
	struct tok t[8];
	size_t nt = tokenize(p, end, t, 8);
	if (nt == 0)
		return 0;
	if (tok_is(&t[0], "hub") || tok_is(&t[0], "prt") || tok_is(&t[0], "port"))
		return 0;
	uw_vhci_port v = {.hub = UW_VHCI_HUB_UNKNOWN};
	size_t i = 0;
	if (tok_is(&t[0], "hs"))
		v.hub = UW_VHCI_HUB_HS, i = 1;
	else if (tok_is(&t[0], "ss"))
		v.hub = UW_VHCI_HUB_SS, i = 1;
	else if (t[0].n == 0 || t[0].p[0] < '0' || t[0].p[0] > '9')
		return -1; /* an unknown hub tag */
	/* port, status [, speed, devid [, sockfd, busid]] */
	if (nt < i + 2 || nt > i + 6)
		return -1;
	if (!tok_num(&t[i], 10, UW_VHCI_MAX_PORTS - 1, &v.port) ||
	    !tok_num(&t[i + 1], 10, 99, &v.status))
		return -1;
	if (nt > i + 2 && !tok_num(&t[i + 2], 10, 99, &v.speed))
		return -1;
	if (nt > i + 3 && !tok_num(&t[i + 3], 16, 0xffffffffu, &v.devid))
		return -1;
	/* t[i + 4] is the attaching process's fd number (or, on old kernels, a pointer):
	 * cosmetic, not read. */
	if (nt > i + 5) {
		if (!tok_busid(&t[i + 5], v.local_busid))
			return -1;
	} else {
		memcpy(v.local_busid, "0-0", 4);
	}
	*out = v;
	return 1;
}

int uw_vhci_parse_status(const char *text, size_t len, uw_vhci_port *out, size_t cap, size_t *n,
                         size_t *skipped)
{
	if (!text || !n || !skipped || (!out && cap))
		return UW_E_INVAL;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		uw_vhci_port v;
		int r = parse_line(p, le, &v);
		if (r == 1) {
			bool dup = false;
			for (size_t k = 0; k < *n && !dup; k++)
				dup = out[k].port == v.port;
			if (dup || *n >= cap)
				(*skipped)++;
			else
				out[(*n)++] = v;
		} else if (r < 0) {
			(*skipped)++;
		}
		p = nl ? nl + 1 : end;
	}
	return UW_OK;
}

/* ---- Files -------------------------------------------------------------------------------- */

static int errno_to_uw(int e)
{
	switch (e) {
	case ENOENT:
	case ENODEV:
		return UW_E_NODEV;
	case EACCES:
	case EPERM:
	case EROFS:
		return UW_E_ACCESS;
	case ENOMEM:
		return UW_E_NOMEM;
	case EBUSY:
		return UW_E_BUSY;
	case EINVAL:
		return UW_E_INVAL;
	case EAGAIN:
		return UW_E_STATE;
	}
	return UW_E_IO;
}

static int fail(int e, int *sys_errno)
{
	if (sys_errno)
		*sys_errno = e;
	return errno_to_uw(e);
}

/* "dir/name" into buf; false if it does not fit. */
static bool join(char *buf, size_t cap, const char *dir, const char *name)
{
	int k = snprintf(buf, cap, "%s/%s", dir, name);
	return k > 0 && (size_t)k < cap;
}

/* Reads at most max bytes of a file into a new NUL-terminated buffer. Returns its length, or a
 * negative errno. */
static long read_small(const char *path, size_t max, char **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	char *buf = malloc(max + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	size_t have = 0;
	while (have < max) {
		ssize_t k = read(fd, buf + have, max - have);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			int e = errno;
			free(buf);
			close(fd);
			return -e;
		}
		if (k == 0)
			break;
		have += (size_t)k;
	}
	close(fd);
	buf[have] = '\0';
	*out = buf;
	return (long)have;
}

/* Writes text to an existing sysfs file in one write(). Returns 0 or an errno. */
static int write_attr(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	size_t n = strlen(text);
	ssize_t k;
	do
		k = write(fd, text, n);
	while (k < 0 && errno == EINTR);
	int e = k < 0 ? errno : (size_t)k != n ? EIO : 0;
	close(fd);
	return e;
}

bool uw_vhci_present(const char *root)
{
	char path[4096];
	return root && join(path, sizeof path, root, "attach") && access(path, F_OK) == 0;
}

int uw_vhci_read(const char *root, uw_vhci_status *st, int *sys_errno)
{
	if (!root || !st)
		return UW_E_INVAL;
	char path[4096];
	char *text = NULL;
	uw_vhci_status s = {0};
	if (!join(path, sizeof path, root, "nports"))
		return UW_E_INVAL;
	long k = read_small(path, 64, &text);
	if (k > 0) {
		struct tok t;
		char *e = text + k;
		if (tokenize(text, e, &t, 1) == 1 && !tok_num(&t, 10, UW_VHCI_MAX_PORTS, &s.nports))
			s.nports = 0;
	}
	free(text);
	size_t cap = s.nports ? s.nports : UW_VHCI_MAX_PORTS;
	s.ports = calloc(cap, sizeof *s.ports);
	if (!s.ports)
		return fail(ENOMEM, sys_errno);
	for (unsigned c = 0; c < UW_VHCI_MAX_CONTROLLERS; c++) {
		char name[32];
		if (c == 0)
			snprintf(name, sizeof name, "status");
		else
			snprintf(name, sizeof name, "status.%u", c);
		if (!join(path, sizeof path, root, name)) {
			free(s.ports);
			return UW_E_INVAL;
		}
		k = read_small(path, UW_VHCI_FILE_MAX, &text);
		if (k == -ENOENT && c > 0)
			break;
		if (k < 0) {
			free(s.ports);
			return fail((int)-k, sys_errno);
		}
		size_t before = s.n;
		uw_vhci_parse_status(text, (size_t)k, s.ports, cap, &s.n, &s.skipped);
		for (size_t i = before; i < s.n; i++)
			s.ports[i].controller = c;
		free(text);
	}
	*st = s;
	return UW_OK;
}

void uw_vhci_status_fini(uw_vhci_status *st)
{
	if (!st)
		return;
	free(st->ports);
	*st = (uw_vhci_status){0};
}

const uw_vhci_port *uw_vhci_find(const uw_vhci_status *st, uint32_t port)
{
	for (size_t i = 0; i < st->n; i++)
		if (st->ports[i].port == port)
			return &st->ports[i];
	return NULL;
}

bool uw_vhci_hub_fits(uint8_t hub, uint32_t speed)
{
	if (speed == 0)
		return false;
	switch ((enum uw_vhci_hub)hub) {
	case UW_VHCI_HUB_UNKNOWN:
		return true;
	case UW_VHCI_HUB_HS:
		return speed < 5;
	case UW_VHCI_HUB_SS:
		return speed >= 5;
	}
	return false;
}

static size_t used_on(const uw_vhci_status *st, uint32_t controller)
{
	size_t used = 0;
	for (size_t i = 0; i < st->n; i++)
		if (st->ports[i].controller == controller && st->ports[i].status != UW_VDEV_NULL)
			used++;
	return used;
}

void uw_vhci_spread(const uw_vhci_status *st, uint32_t *ports, size_t n)
{
	/* Insertion sort on the load of each port's controller: stable, n is small. */
	for (size_t i = 1; i < n; i++) {
		uint32_t p = ports[i];
		const uw_vhci_port *vp = uw_vhci_find(st, p);
		size_t load = vp ? used_on(st, vp->controller) : 0;
		size_t j = i;
		while (j > 0) {
			const uw_vhci_port *vq = uw_vhci_find(st, ports[j - 1]);
			size_t lq = vq ? used_on(st, vq->controller) : 0;
			if (lq <= load)
				break;
			ports[j] = ports[j - 1];
			j--;
		}
		ports[j] = p;
	}
}

size_t uw_vhci_free_ports(const uw_vhci_status *st, uint32_t speed, uint32_t *out, size_t cap)
{
	size_t total = 0;
	/* Ascending order whatever the file order: repeated selection of the next larger. */
	int64_t last = -1;
	for (;;) {
		int64_t best = -1;
		for (size_t i = 0; i < st->n; i++) {
			const uw_vhci_port *p = &st->ports[i];
			if (p->status != UW_VDEV_NULL || !uw_vhci_hub_fits(p->hub, speed) ||
			    (int64_t)p->port <= last)
				continue;
			if (best < 0 || p->port < best)
				best = p->port;
		}
		if (best < 0)
			break;
		if (total < cap)
			out[total] = (uint32_t)best;
		total++;
		last = best;
	}
	return total;
}

size_t uw_vhci_count_fitting(const uw_vhci_status *st, uint32_t speed)
{
	size_t k = 0;
	for (size_t i = 0; i < st->n; i++)
		k += uw_vhci_hub_fits(st->ports[i].hub, speed);
	return k;
}

int uw_vhci_attach(const char *root, uint32_t port, int sockfd, uint32_t devid, uint32_t speed,
                   int *sys_errno)
{
	char path[4096], text[64];
	if (!root || sockfd < 0 || !join(path, sizeof path, root, "attach"))
		return UW_E_INVAL;
	snprintf(text, sizeof text, "%u %d %u %u", port, sockfd, devid, speed);
	int e = write_attr(path, text);
	return e ? fail(e, sys_errno) : UW_OK;
}

int uw_vhci_detach(const char *root, uint32_t port, int *sys_errno)
{
	char path[4096], text[16];
	if (!root || !join(path, sizeof path, root, "detach"))
		return UW_E_INVAL;
	snprintf(text, sizeof text, "%u", port);
	int e = write_attr(path, text);
	return e ? fail(e, sys_errno) : UW_OK;
}

/* ---- Record files ------------------------------------------------------------------------- */

static bool field_ok(const char *s, size_t cap)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n >= cap)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

int uw_vhci_record_write(const char *dir, uint32_t port, const char *host, const char *serv,
                         const char *busid, int *sys_errno)
{
	if (!dir || !field_ok(host, UW_VHCI_HOST_SIZE) || !field_ok(serv, UW_VHCI_SERV_SIZE) ||
	    !field_ok(busid, UW_BUSID_SIZE))
		return UW_E_INVAL;
	char path[4096], tmp[4096], name[32],
	    line[UW_VHCI_HOST_SIZE + UW_VHCI_SERV_SIZE + UW_BUSID_SIZE + 4];
	snprintf(name, sizeof name, "port%u", port);
	if (!join(path, sizeof path, dir, name))
		return UW_E_INVAL;
	int k = snprintf(tmp, sizeof tmp, "%s.tmp%ld", path, (long)getpid());
	if (k < 0 || (size_t)k >= sizeof tmp)
		return UW_E_INVAL;
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return fail(errno, sys_errno);
	int n = snprintf(line, sizeof line, "%s %s %s\n", host, serv, busid);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return fail(errno, sys_errno);
	ssize_t w;
	do
		w = write(fd, line, (size_t)n);
	while (w < 0 && errno == EINTR);
	int e = w < 0 ? errno : w != n ? EIO : 0;
	if (close(fd) != 0 && !e)
		e = errno;
	if (!e && rename(tmp, path) != 0)
		e = errno;
	if (e) {
		unlink(tmp);
		return fail(e, sys_errno);
	}
	return UW_OK;
}

int uw_vhci_record_read(const char *dir, uint32_t port, uw_vhci_record *out)
{
	char path[4096], name[32];
	snprintf(name, sizeof name, "port%u", port);
	if (!dir || !out || !join(path, sizeof path, dir, name))
		return UW_E_INVAL;
	char *text = NULL;
	long k = read_small(path, 1024, &text);
	if (k < 0)
		return k == -ENOENT ? UW_E_NOTFOUND : errno_to_uw((int)-k);
	const char *end = memchr(text, '\n', (size_t)k);
	if (!end)
		end = text + k;
	struct tok t[4];
	uw_vhci_record r;
	int rc = UW_E_PROTO;
	if (tokenize(text, end, t, 4) == 3 && t[0].n < sizeof r.host && t[1].n < sizeof r.serv &&
	    t[2].n < sizeof r.busid) {
		memcpy(r.host, t[0].p, t[0].n);
		r.host[t[0].n] = '\0';
		memcpy(r.serv, t[1].p, t[1].n);
		r.serv[t[1].n] = '\0';
		memcpy(r.busid, t[2].p, t[2].n);
		r.busid[t[2].n] = '\0';
		if (field_ok(r.host, sizeof r.host) && field_ok(r.serv, sizeof r.serv) &&
		    field_ok(r.busid, sizeof r.busid)) {
			*out = r;
			rc = UW_OK;
		}
	}
	free(text);
	return rc;
}

int uw_vhci_record_remove(const char *dir, uint32_t port)
{
	char path[4096], name[32];
	snprintf(name, sizeof name, "port%u", port);
	if (!dir || !join(path, sizeof path, dir, name))
		return UW_E_INVAL;
	if (unlink(path) != 0 && errno != ENOENT)
		return errno_to_uw(errno);
	rmdir(dir); /* only succeeds when empty, which is the point */
	return UW_OK;
}
