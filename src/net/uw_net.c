/* SPDX-License-Identifier: MIT */
#include "uw_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "uw_error.h"

int uw_net_split_hostport(const char *s, uint16_t default_port, char *host, size_t host_cap,
                          uint16_t *port)
{
	const char *h = s, *p = NULL;
	size_t hlen;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close)
			return UW_E_INVAL;
		h = s + 1;
		hlen = (size_t)(close - h);
		if (close[1] == ':')
			p = close + 2;
		else if (close[1] != '\0')
			return UW_E_INVAL;
	} else {
		const char *colon = strchr(s, ':');
		if (colon && strchr(colon + 1, ':')) {
			hlen = strlen(s); /* bare IPv6 literal: no port */
		} else if (colon) {
			hlen = (size_t)(colon - s);
			p = colon + 1;
		} else {
			hlen = strlen(s);
		}
	}
	if (hlen >= host_cap)
		return UW_E_INVAL;
	uint16_t pv = default_port;
	if (p) {
		char *end;
		errno = 0;
		unsigned long v = strtoul(p, &end, 10);
		if (*p == '\0' || *end != '\0' || errno || v == 0 || v > 65535)
			return UW_E_INVAL;
		pv = (uint16_t)v;
	}
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = pv;
	return UW_OK;
}

static void fmt_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	unsigned port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
		port = ntohs(in->sin_port);
		snprintf(buf, len, "%s:%u", ip, port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
		port = ntohs(in6->sin6_port);
		snprintf(buf, len, "[%s]:%u", ip, port);
	} else if (sa->sa_family == AF_VSOCK) {
		const struct sockaddr_vm *vm = (const struct sockaddr_vm *)(const void *)sa;
		snprintf(buf, len, "vsock:%u:%u", vm->svm_cid, vm->svm_port);
	} else {
		snprintf(buf, len, "unix");
	}
}

void uw_net_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0) {
		snprintf(buf, len, "?");
		return;
	}
	if (ss.ss_family != AF_UNIX) {
		fmt_addr((struct sockaddr *)&ss, buf, len);
		return;
	}
	/* A unix peer has no address of its own: name the socket it came in on and the process
	 * (the kernel's credentials of the peer, not anything it says). */
	struct sockaddr_un sun;
	socklen_t ul = sizeof sun;
	struct ucred cr;
	socklen_t cl = sizeof cr;
	const char *path = "";
	if (getsockname(fd, (struct sockaddr *)&sun, &ul) == 0 &&
	    ul > offsetof(struct sockaddr_un, sun_path) && sun.sun_path[0]) {
		sun.sun_path[sizeof sun.sun_path - 1] = '\0';
		path = sun.sun_path;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &cl) == 0)
		snprintf(buf, len, "unix%s%s(pid=%d,uid=%u)", path[0] ? ":" : "", path, (int)cr.pid,
		         (unsigned)cr.uid);
	else
		snprintf(buf, len, "unix%s%s", path[0] ? ":" : "", path);
}

size_t uw_net_peer_addr(int fd, uint8_t addr[16], char *name, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (len)
		snprintf(name, len, "local");
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return 0;
	if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)&ss;
		memcpy(addr, &in->sin_addr, 4);
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)&ss;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			memcpy(addr, in6->sin6_addr.s6_addr + 12,
			       4); /* ::ffff:a.b.c.d is a.b.c.d */
		} else {
			memcpy(addr, &in6->sin6_addr, 16);
			if (len)
				inet_ntop(AF_INET6, addr, name, (socklen_t)len);
			return 16;
		}
	} else {
		return 0;
	}
	if (len)
		inet_ntop(AF_INET, addr, name, (socklen_t)len);
	return 4;
}

void uw_net_sock_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0)
		snprintf(buf, len, "?");
	else
		fmt_addr((struct sockaddr *)&ss, buf, len);
}

int uw_net_tune(int fd)
{
	int one = 1, idle = 30, intvl = 10, cnt = 3;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	/* Only TCP has these options (unix and vsock streams have no Nagle and no keepalive). */
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family != AF_INET &&
	    ss.ss_family != AF_INET6)
		return UW_OK;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) < 0)
		return UW_E_IO;
	return UW_OK;
}

static int listen_one(const struct sockaddr *sa, socklen_t sl, int *out, char *err, size_t errlen)
{
	char name[80];
	fmt_addr(sa, name, sizeof name);
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(errno));
		return UW_E_IO;
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, sa, sl) < 0 || listen(fd, 64) < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(errno));
		close(fd);
		return UW_E_IO;
	}
	*out = fd;
	return UW_OK;
}

int uw_net_listen(const char *host, uint16_t port, int *fds, size_t max, size_t *n, char *err,
                  size_t errlen)
{
	*n = 0;
	if (!host || !*host) {
		/* Every local address: IPv4 and IPv6 sockets; one family missing is fine. */
		struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons(port)};
		struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
		in4.sin_addr.s_addr = htonl(INADDR_ANY);
		in6.sin6_addr = in6addr_any;
		char e4[200] = "", e6[200] = "";
		if (max > *n && listen_one((struct sockaddr *)&in4, sizeof in4, &fds[*n], e4,
		                           sizeof e4) == UW_OK)
			(*n)++;
		if (max > *n && listen_one((struct sockaddr *)&in6, sizeof in6, &fds[*n], e6,
		                           sizeof e6) == UW_OK)
			(*n)++;
		if (*n == 0) {
			snprintf(err, errlen, "%s", e4[0] ? e4 : e6);
			return UW_E_IO;
		}
		return UW_OK;
	}
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
	struct addrinfo *res;
	char ports[8];
	snprintf(ports, sizeof ports, "%u", port);
	int rc = getaddrinfo(host, ports, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", host, gai_strerror(rc));
		return UW_E_NOTFOUND;
	}
	int ret = UW_OK;
	for (struct addrinfo *ai = res; ai && *n < max; ai = ai->ai_next) {
		ret = listen_one(ai->ai_addr, ai->ai_addrlen, &fds[*n], err, errlen);
		if (ret != UW_OK)
			break;
		(*n)++;
	}
	freeaddrinfo(res);
	if (ret != UW_OK) {
		for (size_t i = 0; i < *n; i++)
			close(fds[i]);
		*n = 0;
	}
	return ret;
}

static int ms_left(uint64_t deadline);
static uint64_t deadline_in(int timeout_ms);

int uw_net_connect_sa(const struct sockaddr *sa, socklen_t sl, int timeout_ms)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, sa, sl) < 0) {
		int e = errno;
		/* A unix socket whose backlog is full answers EAGAIN: wait for it like a TCP
		 * connection in progress. */
		if (e != EINPROGRESS && e != EAGAIN) {
			close(fd);
			return -e;
		}
		if (e == EAGAIN) {
			uint64_t deadline = deadline_in(timeout_ms);
			while (connect(fd, sa, sl) < 0) {
				if (errno != EAGAIN || ms_left(deadline) == 0) {
					e = errno == EAGAIN ? ETIMEDOUT : errno;
					close(fd);
					return -e;
				}
				struct timespec ts = {0, 10 * 1000 * 1000};
				nanosleep(&ts, NULL);
			}
		} else {
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			int r;
			do {
				r = poll(&p, 1, timeout_ms);
			} while (r < 0 && errno == EINTR);
			if (r <= 0) {
				e = r == 0 ? ETIMEDOUT : errno;
				close(fd);
				return -e;
			}
			int soerr = 0;
			socklen_t l = sizeof soerr;
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &l);
			if (soerr) {
				close(fd);
				return -soerr;
			}
		}
	}
	int fl = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
	return fd;
}

static int connect_timed(const struct addrinfo *ai, int timeout_ms, int *fd_out)
{
	int fd = uw_net_connect_sa(ai->ai_addr, ai->ai_addrlen, timeout_ms);
	if (fd < 0)
		return fd;
	*fd_out = fd;
	return 0;
}

int uw_net_connect(const char *host, uint16_t port, int timeout_ms, int *fd, char *err,
                   size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	char ports[8];
	snprintf(ports, sizeof ports, "%u", port);
	int rc = getaddrinfo(host, ports, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return UW_E_NOTFOUND;
	}
	int last = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		last = connect_timed(ai, timeout_ms, fd);
		if (last == 0) {
			freeaddrinfo(res);
			uw_net_tune(*fd);
			return UW_OK;
		}
	}
	freeaddrinfo(res);
	bool v6 = strchr(host, ':') != NULL;
	snprintf(err, errlen, "cannot connect to %s%s%s:%u: %s", v6 ? "[" : "", host, v6 ? "]" : "",
	         port, strerror(-last));
	if (last == -ETIMEDOUT)
		return UW_E_TIMEOUT;
	if (last == -ECONNREFUSED)
		return UW_E_REFUSED;
	return UW_E_IO;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = ev};
	int r;
	do {
		r = poll(&p, 1, timeout_ms);
	} while (r < 0 && errno == EINTR);
	if (r == 0)
		return UW_E_TIMEOUT;
	return r < 0 ? UW_E_IO : UW_OK;
}

/* Milliseconds left until deadline (a CLOCK_MONOTONIC time in ms), at least 0. */
static int ms_left(uint64_t deadline)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	return now >= deadline ? 0 : (int)(deadline - now);
}

static uint64_t deadline_in(int timeout_ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u +
	       (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms);
}

/* The timeout bounds the whole transfer, not each wait: a peer dripping one byte at a time
 * cannot hold the caller longer than timeout_ms. */
int uw_net_send_all(int fd, const void *buf, size_t n, int timeout_ms)
{
	const uint8_t *p = buf;
	uint64_t deadline = deadline_in(timeout_ms);
	while (n > 0) {
		int w = wait_fd(fd, POLLOUT, ms_left(deadline));
		if (w != UW_OK)
			return w;
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno == EPIPE || errno == ECONNRESET ? UW_E_CLOSED : UW_E_IO;
		}
		p += k;
		n -= (size_t)k;
	}
	return UW_OK;
}

int uw_net_recv_all(int fd, void *buf, size_t n, int timeout_ms)
{
	uint8_t *p = buf;
	uint64_t deadline = deadline_in(timeout_ms);
	while (n > 0) {
		int w = wait_fd(fd, POLLIN, ms_left(deadline));
		if (w != UW_OK)
			return w;
		ssize_t k = recv(fd, p, n, MSG_DONTWAIT);
		if (k == 0)
			return UW_E_CLOSED;
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return errno == ECONNRESET ? UW_E_CLOSED : UW_E_IO;
		}
		p += k;
		n -= (size_t)k;
	}
	return UW_OK;
}
