# SPDX-License-Identifier: MIT
"""Test 7: addresses other than TCP, with the real program.

`serve --listen unix:PATH` next to TCP: the socket file has mode 0660 and is removed at exit;
`usbwire list/info/bench -r unix:PATH` work through it; a fake Firecracker (the hybrid vsock's
"CONNECT PORT\\n" / "OK N\\n" handshake on a unix socket, then a relay to that server) carries
`list` and `bench` for `-r fc-vsock:PATH:PORT`; the errors a user meets are clear. No vsock
traffic: on a host without vsock_loopback a vsock connection would leave the machine (the
test bed's guest has it; see tests/interop)."""

import json
import os
import socket
import stat
import threading
import time

from uwlib import DIR_IN, DIR_OUT, KEYBOARD, SINK, STORAGE, Server, Urbs, check, free_port, run_cli


class FakeFirecracker(threading.Thread):
    """Listens on a unix socket like Firecracker's vsock device does for host-initiated
    connections: reads "CONNECT PORT\\n", answers `answer` (bytes; None: close at once) and,
    when it answered OK for the expected port, relays the stream to `target` (a unix socket)."""

    def __init__(self, path, target, port, answer=b"OK 1073741824\n"):
        super().__init__(daemon=True)
        self.path, self.target, self.port, self.answer = path, target, port, answer
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.stopped = False

    def run(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        line = b""
        while not line.endswith(b"\n") and len(line) < 64:
            b = c.recv(1)
            if not b:
                break
            line += b
        self.requests.append(line)
        if self.answer is None or line != f"CONNECT {self.port}\n".encode():
            c.close()
            return
        c.sendall(self.answer)
        if not self.answer.startswith(b"OK "):
            c.close()
            return
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        up.connect(self.target)

        def pump(a, b):
            try:
                while True:
                    d = a.recv(65536)
                    if not d:
                        break
                    b.sendall(d)
            except OSError:
                pass
            finally:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        t = threading.Thread(target=pump, args=(up, c), daemon=True)
        t.start()
        pump(c, up)
        t.join()
        c.close()
        up.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


def test_transports(tap, build, work):
    sockpath = str(work / "usbwire.sock")
    srv = Server(build, work, "transports", extra=["--listen", f"unix:{sockpath}"]).start()
    unix = f"unix:{sockpath}"
    try:
        def socket_file():
            st = os.lstat(sockpath)
            check(stat.S_ISSOCK(st.st_mode), f"{sockpath} is not a socket")
            check(stat.S_IMODE(st.st_mode) == 0o660,
                  f"mode {stat.S_IMODE(st.st_mode):o}, want 660")
            check(f"listening on {unix}" in srv.log(), "no 'listening on unix:...' log line")
        tap.run("transports: serve --listen unix:PATH creates a socket file with mode 0660",
                socket_file)

        def listing():
            r = run_cli(build, "list", "-r", unix, "--json")
            check(r.returncode == 0, f"list: {r.returncode} {r.stderr}")
            doc = json.loads(r.stdout)
            busids = [d["busid"] for d in doc["devices"]]
            check(busids == ["99-1", "99-2", "99-3", "99-4"], f"busids {busids}")
            check(doc["host"] == unix and doc["port"] is None, f"host/port {doc}")
            r2 = run_cli(build, "list", "-r", f"127.0.0.1:{srv.port}", "--json")
            check(json.loads(r2.stdout)["devices"] == doc["devices"],
                  "the unix listing differs from the TCP one")
        tap.run("transports: list -r unix:PATH = the same devices as over TCP", listing)

        def info():
            r = run_cli(build, "info", "-r", unix, "-b", KEYBOARD)
            check(r.returncode == 0, f"info: {r.returncode} {r.stderr}")
            check(r.stdout.startswith(f"{unix}/{KEYBOARD}: ID 1209:0001"),
                  f"first line: {r.stdout.splitlines()[:1]}")
            check("bInterfaceClass         3" in r.stdout, "no HID interface in:\n" + r.stdout)
        tap.run("transports: info -r unix:PATH reads the keyboard's descriptors", info)

        def storage_info():
            r = run_cli(build, "info", "-r", unix, "-b", STORAGE, "--json")
            check(r.returncode == 0, f"info: {r.returncode} {r.stderr}")
            doc = json.loads(r.stdout)
            ifs = [i for c in doc["configurations"] for i in c["interfaces"]]
            check(any(i["bInterfaceClass"] == 8 and i["bInterfaceProtocol"] == 0x50
                      for i in ifs), f"no mass-storage Bulk-Only interface in {ifs}")
            check(doc["remote"] == unix and doc["port"] is None, f"remote/port {doc['remote']}")
        tap.run("transports: the userspace client library over unix:PATH: info of the storage "
                "device (--json)", storage_info)

        def bench(addr):
            r = run_cli(build, "bench", "-r", addr, "-b", SINK, "-s", "0.2", "--sizes", "4k",
                        "--depths", "1", "--json", timeout=120)
            check(r.returncode == 0, f"bench: {r.returncode} {r.stderr}")
            res = json.loads(r.stdout)["results"]
            bad = [x for x in res if x["errors"] or x["ops"] == 0]
            check(len(res) == 4 and not bad, f"results {res}")
        tap.run("transports: bench -r unix:PATH (control and bulk, no errors)", bench, unix)

        fcpath = str(work / "fc.sock")
        fc = FakeFirecracker(fcpath, sockpath, 5000)
        fc.start()
        try:
            def fc_list():
                r = run_cli(build, "list", "-r", f"fc-vsock:{fcpath}:5000", "--json")
                check(r.returncode == 0, f"list: {r.returncode} {r.stderr}")
                check(len(json.loads(r.stdout)["devices"]) == 4, r.stdout)
                check(fc.requests[-1] == b"CONNECT 5000\n", f"request {fc.requests[-1:]}")
            tap.run("transports: list -r fc-vsock:PATH:PORT through a Firecracker-style "
                    "CONNECT/OK relay", fc_list)
            tap.run("transports: bench -r fc-vsock:PATH:PORT (no errors)", bench,
                    f"fc-vsock:{fcpath}:5000")
            tap.run("transports: fc-vsock to a port nothing listens on -> exit 1, says so",
                    expect, build, ["list", "-r", f"fc-vsock:{fcpath}:5001"],
                    "without answering CONNECT 5001")
        finally:
            fc.stop()
        os.unlink(fcpath)
        fc2 = FakeFirecracker(fcpath, sockpath, 5000, answer=b"ERR no\x1b[31m\n")
        fc2.start()
        try:
            tap.run("transports: Firecracker answers other than OK -> exit 1, the answer "
                    "escaped", expect, build, ["list", "-r", f"fc-vsock:{fcpath}:5000"],
                    'answered "ERR no\\x1b[31m" instead of "OK <port>"')
        finally:
            fc2.stop()

        tap.run("transports: list -r unix:MISSING -> exit 1, no such socket file", expect,
                build, ["list", "-r", f"unix:{work}/missing.sock"], "no such socket file")
        tap.run("transports: list -r vsock:any:1 -> exit 2, any only listens", expect, build,
                ["list", "-r", "vsock:any:1"], "only listens", 2)
        tap.run("transports: list -r vsock:x:1 -> exit 2, the CID is not a number", expect,
                build, ["list", "-r", "vsock:x:1"], "CID is not a number", 2)

        tap.run("transports: a second serve on the same unix:PATH -> exit 1, another server "
                "listens on it", expect, build,
                ["serve", "--listen", unix, "--export", "emu:sink"], "another server listens on it")
    finally:
        problems = srv.stop()
        tap.ok(not problems, "transports: server exits 0 on SIGTERM, no sanitizer report",
               "\n".join(problems))
    tap.ok(not os.path.exists(sockpath), "transports: the socket file is removed at exit")


def expect(build, args, want, rc=1):
    r = run_cli(build, *args)
    check(r.returncode == rc, f"exit {r.returncode}, want {rc}: {r.stderr}")
    check(want in r.stderr, f"stderr lacks {want!r}: {r.stderr}")
    check(all(c >= " " or c == "\n" for c in r.stderr), f"raw control bytes: {r.stderr!r}")


# ---- Reverse connections (serve --connect) ------------------------------------------------------

def adopt(sock):
    """A uwlib connection object around a socket the server dialed to us."""
    c = Urbs.__new__(Urbs)
    c.sock = sock
    c.sock.settimeout(60)
    c.timeout = 60.0
    c.local = "%s:%d" % sock.getsockname()
    c.buf = b""
    return c


def use_sink(c):
    """Imports the sink over c and moves data both ways."""
    status, rec = c.import_dev(SINK, check_ok=False)
    check(status == 0, f"import of {SINK} over the dialed connection: status {status}")
    c.busid, c.rec = SINK, rec
    c.devid = rec["busnum"] << 16 | rec["devnum"]
    c.seq, c.sent = 1000, {}
    c.set_configuration()
    r = c.bulk(1, DIR_IN, 4096)
    check(r["data"] == b"\0" * 4096, "bulk IN data")
    r = c.bulk(1, DIR_OUT, data=b"\0" * 4096)
    check(r["actual"] == 4096, f"bulk OUT actual {r['actual']}")


def accept_n(ls, n):
    """Accepts n connections (the bound is a safety net: the server dials at once)."""
    ls.settimeout(120)
    return [ls.accept()[0] for _ in range(n)]


def test_reverse(tap, build, work):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.bind(("127.0.0.1", 0))
    ls.listen(32)
    lport = ls.getsockname()[1]
    args = ["--connect", f"127.0.0.1:{lport}"]
    srv = Server(build, work, "reverse", extra=args).start()
    srv2 = None
    held = []
    try:
        def dials():
            socks = accept_n(ls, 4)
            held.extend(socks)
            d = adopt(socks[0]).devlist()
            check(sorted(x["busid"] for x in d) == ["99-1", "99-2", "99-3", "99-4"],
                  f"device list over a dialed connection: {d}")
            use_sink(adopt(socks[1]))
            check("connecting to 127.0.0.1:%d" % lport in srv.log(), "no 'connecting to' line")
        tap.run("reverse: serve --connect dials one connection per free device (4); over them "
                "a device list and an import work as if the client had dialed", dials)

        def redial_after_list():
            # The connection that served the device list closed: the server dials again.
            more = accept_n(ls, 1)
            held.extend(more)
            d = adopt(more[0]).devlist()
            check(sorted(x["busid"] for x in d) == ["99-1", "99-2", "99-3"],
                  f"device list while the sink is imported: {d}")
        tap.run("reverse: a dialed connection that ended (device list) is dialed again",
                redial_after_list)

        def restart():
            srv.proc.kill()
            srv.proc.wait()
            srv.proc = None
            srv._log.close()
            for s in held:
                s.close()
            held.clear()
            nonlocal srv2
            srv2 = Server(build, work, "reverse2", extra=args).start()
            socks = accept_n(ls, 4)
            held.extend(socks)
            use_sink(adopt(socks[0]))
        tap.run("reverse: the server killed and started again dials in again, the device "
                "works", restart)
    finally:
        for s in held:
            s.close()
        ls.close()
        for s in (srv, srv2):
            if s is not None and s.proc is not None:
                problems = s.stop()
                tap.ok(not problems, f"reverse: server {s.name} exits 0 on SIGTERM, no "
                       "sanitizer report", "\n".join(problems))

    def short_sessions():
        # A client that imports and leaves at once: the device is offered again after a wait
        # that doubles (1 s, 2 s, ...), not at once (a tight import/release loop). Only lower
        # bounds on the waits: a slow machine makes them longer, never shorter.
        ls2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls2.bind(("127.0.0.1", 0))
        ls2.listen(32)
        p2 = ls2.getsockname()[1]
        s = Server(build, work, "reverse4", extra=["--connect", f"127.0.0.1:{p2}"]).start()
        idle = []
        try:
            idle = accept_n(ls2, 4)  # one per free device
            c = idle.pop()
            gaps = []
            for _ in range(2):
                use_sink(adopt(c))
                c.close()
                t = time.monotonic()
                c = accept_n(ls2, 1)[0]
                gaps.append(time.monotonic() - t)
            c.close()
            for x in idle:
                x.close()
            check(gaps[0] >= 0.9 and gaps[1] >= 1.9,
                  f"after short sessions the server dialed again after {gaps[0]:.2f} s and "
                  f"{gaps[1]:.2f} s; want at least 1 s, then 2 s")
        finally:
            ls2.close()
            problems = s.stop()
        check(not problems, "\n".join(problems))
    tap.run("reverse: a client that imports and leaves at once is dialed again after 1 s, "
            "then 2 s (no import/release loop)", short_sessions)

    def unreachable():
        # Nobody listens there: one warning, the server keeps serving its listener.
        p = free_port()
        s = Server(build, work, "reverse3", extra=["--connect", f"127.0.0.1:{p}"]).start()
        try:
            deadline = time.monotonic() + 120
            while "reverse connection:" not in s.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            lines = [l for l in s.log_lines() if "reverse connection:" in l]
            check(len(lines) == 1 and "Connection refused" in lines[0],
                  "want one warning naming the refusal:\n" + "\n".join(lines))
            r = run_cli(build, "list", "-r", f"127.0.0.1:{s.port}", "--json")
            check(r.returncode == 0 and len(json.loads(r.stdout)["devices"]) == 4,
                  f"the listener no longer serves: {r.stderr}")
        finally:
            problems = s.stop()
        check(not problems, "\n".join(problems))
    tap.run("reverse: nobody listens at --connect: one clear warning, the server still serves",
            unreachable)
