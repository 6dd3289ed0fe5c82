// SPDX-License-Identifier: MIT
/*
 * usbwire-relay: the program behind qemu's "guestfwd=tcp:10.0.2.100:3240-cmd:usbwire-relay ...".
 *
 * qemu (libslirp) starts one relay per guest connection with the connection on stdin, stdout AND
 * stderr, so this program never writes diagnostics to stderr (they would reach the guest as
 * protocol bytes); it logs to the file given with -l, if any.
 *
 * Usage: usbwire-relay [-l LOGFILE] PORT
 *        usbwire-relay [-l LOGFILE] -f PORTFILE   (the port is read from the file per connection,
 *                                                 so the test bed can re-point the forward)
 *
 * Connects to 127.0.0.1:PORT (never anything else) with TCP_NODELAY and copies bytes both ways.
 * An EOF on one side is passed on as a half-close (shutdown SHUT_WR); the relay exits when both
 * directions have ended or either side fails.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_BUF (64 * 1024)

static FILE *log_file;

static void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void logmsg(const char *fmt, ...)
{
	va_list ap;

	if (log_file == NULL)
		return;
	va_start(ap, fmt);
	fprintf(log_file, "relay[%ld]: ", (long)getpid());
	vfprintf(log_file, fmt, ap);
	fputc('\n', log_file);
	va_end(ap);
	fflush(log_file);
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Ends the write direction of fd: a socket is shut down, anything else is closed. */
static void end_output(int fd)
{
	if (shutdown(fd, SHUT_WR) < 0 && errno == ENOTSOCK)
		close(fd);
}

static int read_port_file(const char *path)
{
	FILE *f = fopen(path, "r");
	int port = -1;

	if (f == NULL)
		return -1;
	if (fscanf(f, "%d", &port) != 1)
		port = -1;
	fclose(f);
	return port;
}

/* Copies one chunk from `from` to `to`. Returns 1 on data, 0 on EOF, -1 on error. */
static int copy_chunk(int from, int to, char *buf)
{
	ssize_t n = read(from, buf, RELAY_BUF);

	if (n < 0)
		return errno == EINTR || errno == EAGAIN ? 1 : -1;
	if (n == 0)
		return 0;
	return write_all(to, buf, (size_t)n) < 0 ? -1 : 1;
}

int main(int argc, char **argv)
{
	const char *port_file = NULL;
	int opt, port = -1, one = 1;
	static char buf[RELAY_BUF];

	/* stderr is the guest's connection: silence it before anything could print there. */
	int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (devnull >= 0)
		dup2(devnull, 2);
	signal(SIGPIPE, SIG_IGN);

	while ((opt = getopt(argc, argv, "f:l:")) != -1) {
		switch (opt) {
		case 'f':
			port_file = optarg;
			break;
		case 'l':
			log_file = fopen(optarg, "a");
			break;
		default:
			return 2;
		}
	}
	if (port_file != NULL)
		port = read_port_file(port_file);
	else if (optind < argc)
		port = atoi(argv[optind]);
	if (port <= 0 || port > 65535) {
		logmsg("no valid target port");
		return 2;
	}

	int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (sock < 0 || connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		logmsg("connect 127.0.0.1:%d: %s", port, strerror(errno));
		return 1;
	}
	setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* stdin may be a TCP socket too; on a socketpair or pipe this fails harmlessly. */
	setsockopt(0, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	logmsg("connected to 127.0.0.1:%d", port);

	int guest_open = 1, host_open = 1;
	while (guest_open || host_open) {
		struct pollfd pfd[2] = {
		    {.fd = guest_open ? 0 : -1, .events = POLLIN},
		    {.fd = host_open ? sock : -1, .events = POLLIN},
		};
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents) {
			int r = copy_chunk(0, sock, buf);
			if (r < 0) {
				logmsg("guest->host: %s", strerror(errno));
				break;
			}
			if (r == 0) {
				logmsg("guest closed its side");
				guest_open = 0;
				shutdown(sock, SHUT_WR);
			}
		}
		if (pfd[1].revents) {
			int r = copy_chunk(sock, 1, buf);
			if (r < 0) {
				logmsg("host->guest: %s", strerror(errno));
				break;
			}
			if (r == 0) {
				logmsg("host side closed");
				host_open = 0;
				end_output(1);
			}
		}
	}
	logmsg("done");
	close(sock);
	return 0;
}
