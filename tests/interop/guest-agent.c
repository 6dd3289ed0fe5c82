// SPDX-License-Identifier: MIT
/*
 * usbwire-guest-agent: the command channel of the qemu test bed (runs inside the guest).
 *
 * Listens on a TCP port; each connection carries exactly one command:
 *
 *   host -> agent: "UWA1", u32 timeout_ms (0 = none), u32 command length, command bytes,
 *                  then the command's stdin until the host half-closes (shutdown SHUT_WR).
 *   agent -> host: frames of  u8 type, u32 length, data  (all integers big-endian), where the type
 *                  is 'o' (stdout bytes), 'e' (stderr bytes) or 'x' (exit: a 4-byte status, the
 *                  exit code, 128 + signal number, or 124 when the timeout killed the command).
 *                  The 'x' frame is the last one; then the agent closes the connection.
 *
 * The command runs as "/bin/sh -c COMMAND" in a new session. The agent stops reading its output
 * once the shell itself has exited and the pipes are drained, so a background process that keeps
 * the pipes open does not hold the reply back (it should redirect its output: once the reply is
 * sent its pipes have no reader).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AGENT_MAX_CMD (64u * 1024u)
#define AGENT_BUF     (64u * 1024u)
#define AGENT_TIMEOUT 124

static int write_all(int fd, const void *buf, size_t len)
{
	const unsigned char *p = buf;

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

static int read_all(int fd, void *buf, size_t len)
{
	unsigned char *p = buf;

	while (len > 0) {
		ssize_t n = read(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n == 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void put_be32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)(v >> 24);
	p[1] = (unsigned char)(v >> 16);
	p[2] = (unsigned char)(v >> 8);
	p[3] = (unsigned char)v;
}

static uint32_t get_be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static int send_frame(int sock, char type, const void *data, size_t len)
{
	unsigned char hdr[5];

	hdr[0] = (unsigned char)type;
	put_be32(hdr + 1, (uint32_t)len);
	if (write_all(sock, hdr, sizeof(hdr)) < 0)
		return -1;
	return write_all(sock, data, len);
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0)
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Forwards what is readable on *fd as a frame; closes *fd (sets -1) at EOF. Returns 1 when
 * something was forwarded, 0 when nothing was (EOF or nothing ready), -1 when the host connection
 * failed. */
static int pump_output(int sock, int *fd, char type, unsigned char *buf)
{
	ssize_t n = read(*fd, buf, AGENT_BUF);

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return 0;
	if (n <= 0) {
		close(*fd);
		*fd = -1;
		return 0;
	}
	return send_frame(sock, type, buf, (size_t)n) < 0 ? -1 : 1;
}

static pid_t spawn_shell(const char *cmd, int in[2], int out[2], int err[2])
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	setsid();
	signal(SIGPIPE, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	dup2(in[0], 0);
	dup2(out[1], 1);
	dup2(err[1], 2);
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	_exit(127);
}

static int exit_status(int wstatus)
{
	if (WIFEXITED(wstatus))
		return WEXITSTATUS(wstatus);
	if (WIFSIGNALED(wstatus))
		return 128 + WTERMSIG(wstatus);
	return 255;
}

static int serve(int sock)
{
	unsigned char hdr[12];
	static unsigned char buf[AGENT_BUF];
	unsigned char inbuf[AGENT_BUF];
	size_t inlen = 0, inoff = 0;
	int in[2], out[2], err[2];
	struct timeval tv = {.tv_sec = 30};
	int timed_out = 0, wstatus = 0, status;

	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (read_all(sock, hdr, sizeof(hdr)) < 0 || memcmp(hdr, "UWA1", 4) != 0)
		return 1;
	uint32_t timeout_ms = get_be32(hdr + 4);
	uint32_t cmdlen = get_be32(hdr + 8);
	if (cmdlen == 0 || cmdlen > AGENT_MAX_CMD)
		return 1;
	char *cmd = malloc((size_t)cmdlen + 1);
	if (cmd == NULL || read_all(sock, cmd, cmdlen) < 0)
		return 1;
	cmd[cmdlen] = '\0';
	tv.tv_sec = 0;
	setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));

	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)
		return 1;
	pid_t pid = spawn_shell(cmd, in, out, err);
	if (pid < 0)
		return 1;
	close(in[0]);
	close(out[1]);
	close(err[1]);
	int in_fd = in[1], out_fd = out[0], err_fd = err[0], sock_in = 1;
	set_nonblock(in_fd);
	set_nonblock(out_fd);
	set_nonblock(err_fd);
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return 1;
	int64_t deadline = timeout_ms ? now_ms() + timeout_ms : 0;

	for (;;) {
		struct pollfd pfd[4] = {
		    {.fd = pidfd, .events = POLLIN},
		    {.fd = out_fd, .events = POLLIN},
		    {.fd = err_fd, .events = POLLIN},
		    {.fd = -1},
		};
		if (inlen > inoff && in_fd >= 0)
			pfd[3] = (struct pollfd){.fd = in_fd, .events = POLLOUT};
		else if (sock_in)
			pfd[3] = (struct pollfd){.fd = sock, .events = POLLIN};
		int wait = -1;
		if (deadline) {
			int64_t left = deadline - now_ms();
			wait = left > 0 ? (int)left : 0;
		}
		int r = poll(pfd, 4, wait);
		if (r < 0 && errno != EINTR)
			break;
		if (r == 0) {
			timed_out = 1;
			kill(-pid, SIGKILL);
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[1].revents && pump_output(sock, &out_fd, 'o', buf) < 0)
			goto host_gone;
		if (pfd[2].revents && pump_output(sock, &err_fd, 'e', buf) < 0)
			goto host_gone;
		if (pfd[3].revents && pfd[3].fd == sock) {
			ssize_t n = read(sock, inbuf, sizeof(inbuf));
			if (n > 0) {
				inlen = (size_t)n;
				inoff = 0;
			} else if (n == 0 || errno != EINTR) {
				sock_in = 0;
				if (in_fd >= 0)
					close(in_fd);
				in_fd = -1;
			}
			if (in_fd < 0)
				inlen = inoff = 0;
		} else if (pfd[3].revents && pfd[3].fd == in_fd) {
			ssize_t n = write(in_fd, inbuf + inoff, inlen - inoff);
			if (n > 0) {
				inoff += (size_t)n;
			} else if (n < 0 && errno != EAGAIN && errno != EINTR) {
				/* The command closed its stdin: drop what the host still sends. */
				close(in_fd);
				in_fd = -1;
				inlen = inoff = 0;
			}
		}
	}

	waitpid(pid, &wstatus, 0);
	/* Everything the shell wrote before it exited is in the pipes now. */
	while (out_fd >= 0 && pump_output(sock, &out_fd, 'o', buf) > 0)
		;
	while (err_fd >= 0 && pump_output(sock, &err_fd, 'e', buf) > 0)
		;
	if (timed_out) {
		static const char msg[] = "guest-agent: command timed out, killed\n";
		status = AGENT_TIMEOUT;
		send_frame(sock, 'e', msg, sizeof(msg) - 1);
	} else {
		status = exit_status(wstatus);
	}
	unsigned char st[4];
	put_be32(st, (uint32_t)status);
	send_frame(sock, 'x', st, sizeof(st));
	free(cmd);
	return 0;

host_gone:
	kill(-pid, SIGKILL);
	waitpid(pid, &wstatus, 0);
	free(cmd);
	return 1;
}

int main(int argc, char **argv)
{
	int port = 5555, opt, one = 1;
	const char *ready = NULL;

	while ((opt = getopt(argc, argv, "p:r:")) != -1) {
		switch (opt) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'r':
			ready = optarg;
			break;
		default:
			fprintf(stderr, "usage: %s [-p PORT] [-r READY-LINE]\n", argv[0]);
			return 2;
		}
	}
	signal(SIGPIPE, SIG_IGN);
	/* Connection handlers and orphans (the agent may be PID 1) are reaped automatically. */
	signal(SIGCHLD, SIG_IGN);

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_ANY);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 16) < 0) {
		perror("guest-agent: listen");
		return 1;
	}
	if (ready != NULL) {
		printf("%s\n", ready);
		fflush(stdout);
	}
	for (;;) {
		int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pid_t pid = fork();
		if (pid == 0) {
			close(lfd);
			signal(SIGCHLD, SIG_DFL);
			_exit(serve(c));
		}
		close(c);
	}
}
