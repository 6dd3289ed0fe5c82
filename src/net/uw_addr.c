/* SPDX-License-Identifier: MIT */
#include "uw_addr.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "uw_error.h"
#include "uw_limits.h"
#include "uw_net.h"

/* ---- parsing (pure) ----------------------------------------------------------------------- */

/* A 32-bit number in decimal, the whole of s. */
static bool parse_u32(const char *s, uint32_t max, uint32_t *out)
{
	if (!*s || *s == '-' || *s == '+' || *s == ' ')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v > max)
		return false;
	*out = (uint32_t)v;
	return true;
}

static bool starts(const char *s, const char *prefix, const char **rest)
{
	size_t n = strlen(prefix);
	if (strncmp(s, prefix, n) != 0)
		return false;
	*rest = s + n;
	return true;
}

static int bad(char *err, size_t errlen, const char *s, const char *why)
{
	snprintf(err, errlen, "invalid address \"%s\": %s", s, why);
	return UW_E_INVAL;
}

static int parse_path(const char *s, const char *path, size_t n, uw_addr *a, char *err,
                      size_t errlen)
{
	if (n == 0)
		return bad(err, errlen, s, "the socket path is empty");
	if (n >= sizeof a->path)
		return bad(err, errlen, s, "the socket path is longer than 107 bytes");
	memcpy(a->path, path, n);
	a->path[n] = '\0';
	return UW_OK;
}

int uw_addr_parse(const char *s, bool listen, uw_addr *a, char *err, size_t errlen)
{
	const char *rest;
	memset(a, 0, sizeof *a);
	if (!s || !*s)
		return bad(err, errlen, s ? s : "", "empty");
	if (starts(s, "unix:", &rest)) {
		a->kind = UW_ADDR_UNIX;
		return parse_path(s, rest, strlen(rest), a, err, errlen);
	}
	if (starts(s, "vsock:", &rest)) {
		a->kind = UW_ADDR_VSOCK;
		const char *colon = strchr(rest, ':');
		if (!colon)
			return bad(err, errlen, s, "expected vsock:CID:PORT");
		char cid[16];
		size_t n = (size_t)(colon - rest);
		if (n == 0 || n >= sizeof cid)
			return bad(err, errlen, s, "the CID is not a number");
		memcpy(cid, rest, n);
		cid[n] = '\0';
		if (strcmp(cid, "any") == 0) {
			if (!listen)
				return bad(
				    err, errlen, s,
				    "CID \"any\" only listens; name the peer's CID (2: the host)");
			a->cid = UW_ADDR_CID_ANY;
		} else if (!parse_u32(cid, 0xfffffffeu, &a->cid)) {
			return bad(err, errlen, s,
			           "the CID is not a number (or \"any\" to listen)");
		}
		if (!parse_u32(colon + 1, 0xfffffffeu, &a->port))
			return bad(err, errlen, s, "the port is not a number below 4294967295");
		return UW_OK;
	}
	if (starts(s, "fc-vsock:", &rest)) {
		a->kind = UW_ADDR_FC_VSOCK;
		const char *colon = strrchr(rest, ':');
		if (!colon)
			return bad(err, errlen, s, "expected fc-vsock:PATH:PORT");
		if (!parse_u32(colon + 1, 0xfffffffeu, &a->port))
			return bad(err, errlen, s, "the port is not a number below 4294967295");
		int r = parse_path(s, rest, (size_t)(colon - rest), a, err, errlen);
		if (r != UW_OK)
			return r;
		/* Listening, the socket is PATH_PORT: that must fit too. */
		if (listen && strlen(a->path) + 12 > sizeof a->path)
			return bad(err, errlen, s,
			           "the socket path PATH_PORT is longer than 107 bytes");
		return UW_OK;
	}
	a->kind = UW_ADDR_TCP;
	const char *hp = starts(s, "tcp:", &rest) ? rest : s;
	uint16_t port;
	if (uw_net_split_hostport(hp, UW_DEFAULT_PORT, a->host, sizeof a->host, &port) != UW_OK)
		return bad(err, errlen, s,
		           "expected HOST, HOST:PORT, [IPV6]:PORT, tcp:HOST:PORT, "
		           "unix:PATH, vsock:CID:PORT or fc-vsock:PATH:PORT");
	if (!listen && !a->host[0])
		return bad(err, errlen, s, "no host");
	/* A name, an IPv4 literal or an IPv6 literal (with a %zone): nothing else reaches the
	 * resolver or a log line. */
	for (const char *p = a->host; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr(".-_:%", *p)))
			return bad(err, errlen, s,
			           "the host holds a character no host name or "
			           "address has");
	a->port = port;
	return UW_OK;
}

void uw_addr_format(const uw_addr *a, char *buf, size_t len)
{
	switch (a->kind) {
	case UW_ADDR_UNIX:
		snprintf(buf, len, "unix:%s", a->path);
		return;
	case UW_ADDR_VSOCK:
		if (a->cid == UW_ADDR_CID_ANY)
			snprintf(buf, len, "vsock:any:%u", a->port);
		else
			snprintf(buf, len, "vsock:%u:%u", a->cid, a->port);
		return;
	case UW_ADDR_FC_VSOCK:
		snprintf(buf, len, "fc-vsock:%s:%u", a->path, a->port);
		return;
	case UW_ADDR_TCP:
		break;
	}
	/* A host named like a prefix is written with "tcp:", so the text parses back the same. */
	static const char *const reserved[] = {"tcp", "unix", "vsock", "fc-vsock"};
	const char *pre = "";
	for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++)
		if (strcmp(a->host, reserved[i]) == 0)
			pre = "tcp:";
	bool v6 = strchr(a->host, ':') != NULL;
	snprintf(buf, len, "%s%s%s%s:%u", pre, v6 ? "[" : "", a->host[0] ? a->host : "*",
	         v6 ? "]" : "", a->port);
}

/* Copies len bytes of s into out as printable ASCII (others as \xNN), NUL-terminated. */
static void escape_to(const char *s, size_t len, char *out, size_t cap)
{
	size_t o = 0;
	for (size_t i = 0; i < len && o + 5 < cap; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
	}
	if (cap)
		out[o < cap ? o : cap - 1] = '\0';
}

int uw_addr_fc_reply(const char *line, size_t len, char *err, size_t errlen)
{
	/* "OK <host port>": the port Firecracker picked on its side, digits only. */
	bool ok = len > 3 && len <= 14 && memcmp(line, "OK ", 3) == 0;
	for (size_t i = 3; ok && i < len; i++)
		ok = line[i] >= '0' && line[i] <= '9';
	if (ok)
		return UW_OK;
	char shown[200];
	escape_to(line, len < 40 ? len : 40, shown, sizeof shown);
	snprintf(err, errlen, "answered \"%s%s\" instead of \"OK <port>\"", shown,
	         len > 40 ? "..." : "");
	return UW_E_PROTO;
}

/* ---- sockets ------------------------------------------------------------------------------ */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int left_ms(uint64_t deadline)
{
	uint64_t n = now_ms();
	return n >= deadline ? 0 : (int)(deadline - n);
}

static void unix_sa(const char *path, struct sockaddr_un *sun, socklen_t *sl)
{
	memset(sun, 0, sizeof *sun);
	sun->sun_family = AF_UNIX;
	snprintf(sun->sun_path, sizeof sun->sun_path, "%s", path);
	*sl = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(sun->sun_path) + 1);
}

static int unix_connect_err(const char *name, int e, char *err, size_t errlen)
{
	switch (e) {
	case ENOENT:
		snprintf(err, errlen, "cannot connect to %s: no such socket file", name);
		return UW_E_NOTFOUND;
	case EACCES:
	case EPERM:
		snprintf(err, errlen, "cannot connect to %s: permission denied", name);
		return UW_E_ACCESS;
	case ECONNREFUSED:
		snprintf(err, errlen,
		         "cannot connect to %s: nothing listens on it (or it is not a socket)",
		         name);
		return UW_E_REFUSED;
	case ETIMEDOUT:
		snprintf(err, errlen, "cannot connect to %s: timed out", name);
		return UW_E_TIMEOUT;
	default:
		snprintf(err, errlen, "cannot connect to %s: %s", name, strerror(e));
		return UW_E_IO;
	}
}

static const char vsock_modules[] =
    "vsock is not available in this kernel; load a transport: modprobe vsock_loopback (this "
    "machine), vhost_vsock (a host of virtual machines) or vmw_vsock_virtio_transport (a guest)";

static int vsock_err(const char *what, const char *name, int e, char *err, size_t errlen)
{
	if (e == EAFNOSUPPORT || e == ENODEV || e == EPROTONOSUPPORT || e == ESOCKTNOSUPPORT) {
		snprintf(err, errlen, "cannot %s %s: %s (%s)", what, name, vsock_modules,
		         strerror(e));
		return UW_E_NOTSUP;
	}
	if (e == ECONNREFUSED || e == ECONNRESET) {
		snprintf(err, errlen, "cannot %s %s: nothing listens on that CID and port (%s)",
		         what, name, strerror(e));
		return UW_E_REFUSED;
	}
	if (e == ETIMEDOUT) {
		snprintf(err, errlen, "cannot %s %s: timed out", what, name);
		return UW_E_TIMEOUT;
	}
	snprintf(err, errlen, "cannot %s %s: %s", what, name, strerror(e));
	return e == EACCES || e == EPERM ? UW_E_ACCESS : UW_E_IO;
}

/* Firecracker's hybrid vsock: "CONNECT PORT\n" on the unix socket, then one line back. The
 * answer is read a byte at a time, so not one byte of what follows it is taken from the
 * stream. */
static int fc_handshake(int fd, const uw_addr *a, const char *name, int timeout_ms, char *err,
                        size_t errlen)
{
	char req[32];
	int n = snprintf(req, sizeof req, "CONNECT %u\n", a->port);
	int r = uw_net_send_all(fd, req, (size_t)n, timeout_ms);
	if (r != UW_OK) {
		snprintf(err, errlen, "cannot connect to %s: sending CONNECT failed: %s", name,
		         uw_strerror(r));
		return r;
	}
	char line[64];
	size_t len = 0;
	uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
	for (;;) {
		char c;
		r = uw_net_recv_all(fd, &c, 1, left_ms(deadline));
		if (r == UW_E_CLOSED) {
			snprintf(
			    err, errlen,
			    "cannot connect to %s: Firecracker closed the connection without "
			    "answering CONNECT %u (does anything listen on vsock port %u in the "
			    "guest?)",
			    name, a->port, a->port);
			return UW_E_REFUSED;
		}
		if (r != UW_OK) {
			snprintf(err, errlen, "cannot connect to %s: no answer to CONNECT %u: %s",
			         name, a->port, uw_strerror(r));
			return r;
		}
		if (c == '\n')
			break;
		if (len == sizeof line) {
			snprintf(
			    err, errlen,
			    "cannot connect to %s: the answer to CONNECT %u is longer than %zu "
			    "bytes without a newline",
			    name, a->port, sizeof line);
			return UW_E_PROTO;
		}
		line[len++] = c;
	}
	char why[300];
	if (uw_addr_fc_reply(line, len, why, sizeof why) != UW_OK) {
		snprintf(err, errlen, "cannot connect to %s: Firecracker %s", name, why);
		return UW_E_PROTO;
	}
	return UW_OK;
}

int uw_addr_connect(const uw_addr *a, int timeout_ms, int *fd, char *err, size_t errlen)
{
	char name[UW_ADDR_PATH_MAX + 40];
	uw_addr_format(a, name, sizeof name);
	switch (a->kind) {
	case UW_ADDR_TCP:
		return uw_net_connect(a->host, (uint16_t)a->port, timeout_ms, fd, err, errlen);
	case UW_ADDR_UNIX:
	case UW_ADDR_FC_VSOCK: {
		struct sockaddr_un sun;
		socklen_t sl;
		unix_sa(a->path, &sun, &sl);
		uint64_t deadline = now_ms() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
		int r = uw_net_connect_sa((struct sockaddr *)&sun, sl, timeout_ms);
		if (r < 0) {
			if (a->kind == UW_ADDR_FC_VSOCK) {
				char sock[UW_ADDR_PATH_MAX + 8];
				snprintf(sock, sizeof sock, "unix:%s", a->path);
				int e = unix_connect_err(sock, -r, err, errlen);
				size_t l = strlen(err);
				snprintf(err + l, errlen > l ? errlen - l : 0,
				         " (Firecracker's vsock socket for %s)", name);
				return e;
			}
			return unix_connect_err(name, -r, err, errlen);
		}
		if (a->kind == UW_ADDR_FC_VSOCK) {
			int h = fc_handshake(r, a, name, left_ms(deadline), err, errlen);
			if (h != UW_OK) {
				close(r);
				return h;
			}
		}
		*fd = r;
		return UW_OK;
	}
	case UW_ADDR_VSOCK: {
		struct sockaddr_vm svm = {
		    .svm_family = AF_VSOCK, .svm_cid = a->cid, .svm_port = a->port};
		int r = uw_net_connect_sa((struct sockaddr *)&svm, sizeof svm, timeout_ms);
		if (r < 0)
			return vsock_err("connect to", name, -r, err, errlen);
		*fd = r;
		return UW_OK;
	}
	}
	snprintf(err, errlen, "unknown address kind");
	return UW_E_INVAL;
}

/* Listens on the unix socket path: a stale socket file (nothing accepts on it) is replaced;
 * any other file is left alone and refused. The file gets mode 0660. */
static int listen_unix(const char *path, const char *name, int *out, char *err, size_t errlen)
{
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen, "cannot listen on %s: %s exists and is not a socket",
			         name, path);
			return UW_E_EXISTS;
		}
		struct sockaddr_un sun;
		socklen_t sl;
		unix_sa(path, &sun, &sl);
		int c = uw_net_connect_sa((struct sockaddr *)&sun, sl, 1000);
		if (c >= 0) {
			close(c);
			snprintf(err, errlen, "cannot listen on %s: another server listens on it",
			         name);
			return UW_E_BUSY;
		}
		if (c != -ECONNREFUSED || unlink(path) < 0) {
			snprintf(err, errlen,
			         "cannot listen on %s: cannot replace the socket file: %s", name,
			         strerror(c != -ECONNREFUSED ? -c : errno));
			return UW_E_IO;
		}
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(errno));
		return UW_E_IO;
	}
	struct sockaddr_un sun;
	socklen_t sl;
	unix_sa(path, &sun, &sl);
	/* The file is created by bind() with the umask's mode: make it 0660 from the start, so
	 * that no other user can connect in a window before a chmod. */
	mode_t old = umask(0117);
	int b = bind(fd, (struct sockaddr *)&sun, sl);
	int e = errno;
	umask(old);
	if (b < 0 || listen(fd, 64) < 0) {
		if (b == 0)
			e = errno;
		snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(e));
		close(fd);
		if (b == 0)
			unlink(path);
		return e == EACCES || e == EPERM ? UW_E_ACCESS : UW_E_IO;
	}
	*out = fd;
	return UW_OK;
}

bool uw_addr_listen_path(const uw_addr *a, char *buf, size_t len)
{
	if (a->kind == UW_ADDR_UNIX) {
		snprintf(buf, len, "%s", a->path);
		return true;
	}
	if (a->kind == UW_ADDR_FC_VSOCK) {
		snprintf(buf, len, "%s_%u", a->path, a->port);
		return true;
	}
	return false;
}

int uw_addr_listen(const uw_addr *a, int *fds, size_t max, size_t *n, char *err, size_t errlen)
{
	char name[UW_ADDR_PATH_MAX + 40];
	uw_addr_format(a, name, sizeof name);
	*n = 0;
	if (max == 0) {
		snprintf(err, errlen, "cannot listen on %s: too many listening sockets", name);
		return UW_E_LIMIT;
	}
	switch (a->kind) {
	case UW_ADDR_TCP:
		return uw_net_listen(a->host, (uint16_t)a->port, fds, max, n, err, errlen);
	case UW_ADDR_UNIX:
	case UW_ADDR_FC_VSOCK: {
		char path[UW_ADDR_PATH_MAX + 16];
		uw_addr_listen_path(a, path, sizeof path);
		if (strlen(path) >= UW_ADDR_PATH_MAX) {
			snprintf(err, errlen, "cannot listen on %s: the socket path is too long",
			         name);
			return UW_E_INVAL;
		}
		int r = listen_unix(path, name, &fds[0], err, errlen);
		if (r == UW_OK)
			*n = 1;
		return r;
	}
	case UW_ADDR_VSOCK: {
		int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return vsock_err("listen on", name, errno, err, errlen);
		struct sockaddr_vm svm = {
		    .svm_family = AF_VSOCK, .svm_cid = a->cid, .svm_port = a->port};
		if (bind(fd, (struct sockaddr *)&svm, sizeof svm) < 0 || listen(fd, 64) < 0) {
			int e = errno;
			close(fd);
			return vsock_err("listen on", name, e, err, errlen);
		}
		fds[0] = fd;
		*n = 1;
		return UW_OK;
	}
	}
	snprintf(err, errlen, "unknown address kind");
	return UW_E_INVAL;
}
