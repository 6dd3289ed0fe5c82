/* SPDX-License-Identifier: MIT */
/*
 * test_addr - the one address syntax (uw_addr.h): parsing and formatting of every kind, errors
 * that name what is wrong, unix sockets (mode 0660, stale files replaced, other files and live
 * servers left alone), and Firecracker's CONNECT handshake against a fake peer. No vsock
 * traffic: on a machine without vsock_loopback a vsock connection would leave the machine.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "uw_addr.h"
#include "uw_error.h"
#include "uw_test.h"

struct good {
	const char *in;
	bool listen;
	uw_addr_kind kind;
	const char *host, *path;
	uint32_t cid, port;
	const char *formatted;
};

static void test_parse_good(void)
{
	static const struct good rows[] = {
	    {"127.0.0.1", false, UW_ADDR_TCP, "127.0.0.1", "", 0, 3240, "127.0.0.1:3240"},
	    {"127.0.0.1:3241", false, UW_ADDR_TCP, "127.0.0.1", "", 0, 3241, "127.0.0.1:3241"},
	    {"server.example", false, UW_ADDR_TCP, "server.example", "", 0, 3240,
	     "server.example:3240"},
	    {"[::1]:3240", false, UW_ADDR_TCP, "::1", "", 0, 3240, "[::1]:3240"},
	    {"::1", false, UW_ADDR_TCP, "::1", "", 0, 3240, "[::1]:3240"},
	    {"tcp:localhost:99", false, UW_ADDR_TCP, "localhost", "", 0, 99, "localhost:99"},
	    {"tcp:unix:3240", false, UW_ADDR_TCP, "unix", "", 0, 3240, "tcp:unix:3240"},
	    {":3241", true, UW_ADDR_TCP, "", "", 0, 3241, "*:3241"},
	    {"unix:/run/usbwire.sock", false, UW_ADDR_UNIX, "", "/run/usbwire.sock", 0, 0,
	     "unix:/run/usbwire.sock"},
	    {"unix:rel/a:b.sock", false, UW_ADDR_UNIX, "", "rel/a:b.sock", 0, 0,
	     "unix:rel/a:b.sock"},
	    {"vsock:2:3240", false, UW_ADDR_VSOCK, "", "", 2, 3240, "vsock:2:3240"},
	    {"vsock:any:5000", true, UW_ADDR_VSOCK, "", "", UW_ADDR_CID_ANY, 5000,
	     "vsock:any:5000"},
	    {"vsock:4294967294:4294967294", false, UW_ADDR_VSOCK, "", "", 4294967294u, 4294967294u,
	     "vsock:4294967294:4294967294"},
	    {"fc-vsock:/tmp/v.sock:5000", false, UW_ADDR_FC_VSOCK, "", "/tmp/v.sock", 0, 5000,
	     "fc-vsock:/tmp/v.sock:5000"},
	    {"fc-vsock:/tmp/a:b:52", false, UW_ADDR_FC_VSOCK, "", "/tmp/a:b", 0, 52,
	     "fc-vsock:/tmp/a:b:52"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		const struct good *r = &rows[i];
		uw_addr a;
		char err[300] = "", fmt[400];
		int rc = uw_addr_parse(r->in, r->listen, &a, err, sizeof err);
		uw_addr_format(&a, fmt, sizeof fmt);
		bool ok = rc == UW_OK && a.kind == r->kind && strcmp(a.host, r->host) == 0 &&
		          strcmp(a.path, r->path) == 0 && a.cid == r->cid && a.port == r->port &&
		          strcmp(fmt, r->formatted) == 0;
		if (!t_ok(ok, "parse \"%s\"%s -> %s", r->in, r->listen ? " (listen)" : "",
		          r->formatted))
			t_diag("rc %d (%s), kind %d host \"%s\" path \"%s\" cid %u port %u, \"%s\"",
			       rc, err, a.kind, a.host, a.path, a.cid, a.port, fmt);
	}
}

static void test_parse_bad(void)
{
	static const struct {
		const char *in;
		bool listen;
		const char *want; /* in the message */
	} rows[] = {
	    {"", false, "empty"},
	    {":3240", false, "no host"},
	    {"host:0", false, "expected HOST"},
	    {"host:65536", false, "expected HOST"},
	    {"host:12ab", false, "expected HOST"},
	    {"[::1", false, "expected HOST"},
	    {"O[::1]:997444", false, "no host name or address has"},
	    {"a b:1", false, "no host name or address has"},
	    {"host\n:1", false, "no host name or address has"},
	    {"unix:", false, "path is empty"},
	    {"unix:/tmp/"
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock",
	     false, "longer than 107"},
	    {"vsock:", false, "vsock:CID:PORT"},
	    {"vsock:2", false, "vsock:CID:PORT"},
	    {"vsock::3240", false, "CID is not a number"},
	    {"vsock:x:3240", false, "CID is not a number"},
	    {"vsock:-1:3240", false, "CID is not a number"},
	    {"vsock:4294967295:1", false, "CID is not a number"},
	    {"vsock:any:3240", false, "only listens"},
	    {"vsock:2:", false, "port is not a number"},
	    {"vsock:2:4294967295", false, "port is not a number"},
	    {"vsock:2:+5", false, "port is not a number"},
	    {"fc-vsock:/tmp/v.sock", false, "expected fc-vsock:PATH:PORT"},
	    {"fc-vsock:/tmp/v.sock:x", false, "port is not a number"},
	    {"fc-vsock:5000", false, "fc-vsock:PATH:PORT"},
	    {"fc-vsock::5000", false, "path is empty"},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		uw_addr a;
		char err[300] = "";
		int rc = uw_addr_parse(rows[i].in, rows[i].listen, &a, err, sizeof err);
		bool ok =
		    rc == UW_E_INVAL && strstr(err, rows[i].want) && strstr(err, "invalid address");
		if (!t_ok(ok, "parse \"%.40s\" -> refused, \"%s\"", rows[i].in, rows[i].want))
			t_diag("rc %d: %s", rc, err);
	}
}

static void test_fc_reply(void)
{
	static const struct {
		const char *line;
		bool ok;
	} rows[] = {
	    {"OK 1073741824", true}, {"OK 1", true},    {"OK", false},
	    {"OK ", false},          {"ok 5", false},   {"OK 12a", false},
	    {"NO", false},           {"OK 1 2", false}, {"OK 123456789012", false},
	    {"\x1b[2J", false},      {"OK\t1", false},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char err[300] = "";
		int rc = uw_addr_fc_reply(rows[i].line, strlen(rows[i].line), err, sizeof err);
		bool ok = rows[i].ok ? rc == UW_OK : rc == UW_E_PROTO && strstr(err, "OK <port>");
		t_ok(ok, "Firecracker answer row %zu (%zu bytes) -> %s", i, strlen(rows[i].line),
		     rows[i].ok ? "accepted" : "refused");
		if (!rows[i].ok)
			for (const char *p = err; *p; p++)
				if ((unsigned char)*p < 0x20) {
					t_ok(false, "the error holds a raw control byte: %s", err);
					break;
				}
	}
}

static char dir[64];

static void test_unix(void)
{
	char path[128], name[160], err[400];
	snprintf(path, sizeof path, "%s/s.sock", dir);
	snprintf(name, sizeof name, "unix:%s", path);
	uw_addr a;
	uw_addr_parse(name, true, &a, err, sizeof err);
	int fds[4];
	size_t n = 0;
	mode_t old = umask(0); /* the socket's mode must not depend on the caller's umask */
	int rc = uw_addr_listen(&a, fds, 4, &n, err, sizeof err);
	umask(old);
	struct stat st;
	t_ok(rc == UW_OK && n == 1 && stat(path, &st) == 0 && S_ISSOCK(st.st_mode) &&
	         (st.st_mode & 0777) == 0660,
	     "listen unix: a socket file with mode 0660 (umask 0), got %o", st.st_mode & 0777);
	char p2[64];
	t_ok(uw_addr_listen_path(&a, p2, sizeof p2) && strcmp(p2, path) == 0,
	     "listen unix: the path to remove at exit");
	int c = -1;
	uw_addr ca;
	uw_addr_parse(name, false, &ca, err, sizeof err);
	t_ok(uw_addr_connect(&ca, 2000, &c, err, sizeof err) == UW_OK && c >= 0,
	     "connect unix: connected (%s)", c >= 0 ? "ok" : err);
	if (c >= 0)
		close(c);
	int fds2[4];
	size_t n2 = 0;
	rc = uw_addr_listen(&a, fds2, 4, &n2, err, sizeof err);
	t_ok(rc == UW_E_BUSY && strstr(err, "another server listens"),
	     "listen unix twice: refused while the first listens (%s)", err);
	close(fds[0]);
	/* The first server is gone (its file stays, stale): a new server replaces it. */
	rc = uw_addr_listen(&a, fds2, 4, &n2, err, sizeof err);
	t_ok(rc == UW_OK && n2 == 1, "listen unix: a stale socket file is replaced (%s)",
	     rc ? err : "ok");
	if (rc == UW_OK)
		close(fds2[0]);
	unlink(path);
	/* Nothing listens: a clear refusal, and no such file: a clear message. */
	rc = uw_addr_connect(&ca, 2000, &c, err, sizeof err);
	t_ok(rc == UW_E_NOTFOUND && strstr(err, "no such socket file"), "connect: %s", err);
	FILE *f = fopen(path, "w");
	if (f)
		fclose(f);
	rc = uw_addr_listen(&a, fds2, 4, &n2, err, sizeof err);
	t_ok(rc == UW_E_EXISTS && strstr(err, "not a socket") && access(path, F_OK) == 0,
	     "listen unix on a regular file: refused, the file left alone (%s)", err);
	rc = uw_addr_connect(&ca, 2000, &c, err, sizeof err);
	t_ok(rc == UW_E_REFUSED && strstr(err, "nothing listens"), "connect to a file: %s", err);
	unlink(path);
}

/* A fake Firecracker: accepts one connection on its unix socket, reads "CONNECT N\n" and answers
 * what it is told, then echoes one byte back if it answered OK. */
struct fc {
	int lfd;
	const char *answer;
	char got[64];
};

static void *fc_peer(void *arg)
{
	struct fc *f = arg;
	int c = accept(f->lfd, NULL, NULL);
	if (c < 0)
		return NULL;
	size_t n = 0;
	while (n + 1 < sizeof f->got) {
		char ch;
		if (read(c, &ch, 1) != 1)
			break;
		f->got[n++] = ch;
		if (ch == '\n')
			break;
	}
	f->got[n] = '\0';
	if (f->answer)
		(void)!write(c, f->answer, strlen(f->answer));
	if (f->answer && strncmp(f->answer, "OK ", 3) == 0 && strchr(f->answer, '\n')) {
		char ch;
		if (read(c, &ch, 1) == 1)
			(void)!write(c, &ch, 1);
	}
	close(c);
	return NULL;
}

static void test_fc_vsock(void)
{
	static const struct {
		const char *answer; /* NULL: close without answering */
		int rc;
		const char *want;
	} rows[] = {
	    {"OK 1073741824\nU", UW_OK, NULL},
	    {NULL, UW_E_REFUSED, "without answering CONNECT 5000"},
	    {"NO\n", UW_E_PROTO, "answered \"NO\""},
	    {"\x1b]0;pwned\x07\n", UW_E_PROTO, "\\x1b"},
	    {"OK 1", UW_E_REFUSED, "without answering"},
	};
	char path[128], name[200], err[400];
	snprintf(path, sizeof path, "%s/fc.sock", dir);
	snprintf(name, sizeof name, "fc-vsock:%s:5000", path);
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct fc f = {.answer = rows[i].answer};
		uw_addr la;
		char lname[200];
		snprintf(lname, sizeof lname, "unix:%s", path);
		uw_addr_parse(lname, true, &la, err, sizeof err);
		size_t n;
		if (uw_addr_listen(&la, &f.lfd, 1, &n, err, sizeof err) != UW_OK) {
			t_ok(false, "fake Firecracker listens: %s", err);
			return;
		}
		fcntl(f.lfd, F_SETFL, fcntl(f.lfd, F_GETFL) & ~O_NONBLOCK); /* the peer blocks */
		pthread_t th;
		pthread_create(&th, NULL, fc_peer, &f);
		uw_addr a;
		uw_addr_parse(name, false, &a, err, sizeof err);
		int fd = -1;
		err[0] = '\0';
		int rc = uw_addr_connect(&a, 5000, &fd, err, sizeof err);
		bool ok = rc == rows[i].rc && strcmp(f.got, "CONNECT 5000\n") == 0;
		if (rows[i].want)
			ok = ok && strstr(err, rows[i].want) != NULL;
		if (rc == UW_OK) {
			/* Not one byte after the OK line was taken: the 'U' is still there. */
			char ch = 0;
			ok = ok && read(fd, &ch, 1) == 1 && ch == 'U' && write(fd, "Z", 1) == 1 &&
			     read(fd, &ch, 1) == 1 && ch == 'Z';
			close(fd);
		}
		pthread_join(th, NULL);
		close(f.lfd);
		unlink(path);
		if (!t_ok(ok, "fc-vsock, Firecracker answers %s -> %s",
		          rows[i].answer ? "a line" : "nothing",
		          rows[i].rc == UW_OK ? "connected, the stream intact after OK" : err))
			t_diag("rc %d, peer got \"%s\", err: %s", rc, f.got, err);
	}
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/test_addr.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	test_parse_good();
	test_parse_bad();
	test_fc_reply();
	test_unix();
	test_fc_vsock();
	rmdir(dir);
	return t_done();
}
