# SPDX-License-Identifier: MIT
"""Test 7, connection limits: one client must not be able to deny service to the others.

Clients connect from other loopback addresses (127.0.0.2, ...) than the honest `usbwire list`
(127.0.0.1), so that the server sees separate peers. Every wait is for a condition, bounded.
"""

import os
import socket
import time

from uwlib import Server, check, req_devlist, run_cli

DEVICES = 4  # the standard exports


def connect_from(port, src, send=b"\x00", timeout=60):
    """A connection to the server from source address src; sends send (a first byte, so that
    only the handshake deadline applies) unless it is empty."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((src, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.settimeout(10)
    if send:
        s.sendall(send)
    return s


def closed(s):
    """True if the server has closed s (EOF or reset), without waiting."""
    s.setblocking(False)
    try:
        return s.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except (ConnectionResetError, OSError):
        return True
    finally:
        s.settimeout(10)


def wait_closed(socks, want, timeout):
    """Waits until at least want of socks are closed by the server; returns how many are."""
    deadline = time.monotonic() + timeout
    while True:
        n = sum(1 for s in socks if closed(s))
        if n >= want or time.monotonic() > deadline:
            return n
        time.sleep(0.05)


def listed(build, port):
    """`usbwire list -r` against the server: (ok, devices or the error text)."""
    r = run_cli(build, "list", "-r", f"127.0.0.1:{port}", "--json", timeout=60)
    if r.returncode != 0:
        return False, (r.stderr or r.stdout).strip()
    return True, r.stdout.count('"busid"')


def cpu_seconds(pid):
    """utime + stime of a process (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_limits(tap, build, work):
    # ---- one peer holding every slot ----
    srv = Server(build, work, "limits", extra=["--handshake-timeout", "600"]).start()
    socks = []
    try:
        def idle_flood():
            for _ in range(300):
                socks.append(connect_from(srv.port, "127.0.0.2"))
            ok, got = listed(build, srv.port)
            check(ok and got == DEVICES,
                  f"with 300 idle connections from 127.0.0.2, `usbwire list -r` from 127.0.0.1 "
                  f"got: {got}")
            n = wait_closed(socks, 300 - 16, 120)
            check(n == 300 - 16, f"{n} of the 300 connections closed, want 284 (16 kept)")
            check(not any(closed(s) for s in socks[:16]), "one of the first 16 was closed")
            refusals = [l for l in srv.log_lines() if "refused" in l]
            check(1 <= len(refusals) <= 2,
                  f"{len(refusals)} log lines about 284 refusals, want 1 (or 2 with a summary):\n"
                  + "\n".join(refusals[:5]))
            check("127.0.0.2" in refusals[0] and "per-peer limit" in refusals[0],
                  f"the refusal line does not name the peer and the limit: {refusals[0]}")

        tap.run("limits: 300 idle connections from one address: 16 kept, the rest closed at "
                "once and logged once, and another client is served", idle_flood)
        for s in socks:
            s.close()
        socks.clear()

        def first_byte():
            mark = len(srv.log())
            silent = connect_from(srv.port, "127.0.0.3", send=b"")
            spoke = connect_from(srv.port, "127.0.0.3")
            local = "%s:%d" % silent.getsockname()
            # The handshake deadline is 10 minutes here: only the first-byte deadline can close
            # it, and the log line must say so (the bound is a safety net, not a measurement).
            n = wait_closed([silent], 1, 300)
            check(n == 1, "a connection that sent nothing is still open after 300 s")
            check(not closed(spoke), "the connection that sent a byte was closed too")
            lines = [l for l in srv.log()[mark:].splitlines() if f" {local}: " in l]
            check(len(lines) == 1 and "first byte" in lines[0],
                  "want one log line naming the first-byte deadline:\n" + "\n".join(lines))
            silent.close()
            spoke.close()

        tap.run("limits: a connection that sends nothing is closed at the first-byte deadline",
                first_byte)
    finally:
        for s in socks:
            s.close()
        problems = srv.stop()
        tap.ok(not problems, "limits: server exits 0 on SIGTERM, no sanitizer report",
               "\n".join(problems))

    # ---- more connections than the open-file limit ----
    srv = Server(build, work, "nofile", wrap=["prlimit", "--nofile=64"]).start()
    socks = []
    try:
        def nofile():
            t0, c0 = time.monotonic(), cpu_seconds(srv.proc.pid)
            # 10 addresses x 15: under the per-peer limit, over the file limit together. A
            # server that neither serves nor closes them fills its backlog: connect() stalls.
            stalled = None
            for i in range(150):
                try:
                    socks.append(connect_from(srv.port, f"127.0.0.{2 + i % 10}", timeout=30))
                except OSError as e:
                    stalled = f"connection {i + 1} of 150: {e}"
                    break
            # The server keeps what it can serve and closes the rest at once.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                n_closed = sum(1 for s in socks if closed(s))
                if n_closed >= 64:
                    break
                time.sleep(0.05)
            cpu = cpu_seconds(srv.proc.pid) - c0
            elapsed = time.monotonic() - t0
            log = srv.log_lines()
            emfile = [l for l in log if "Too many open files" in l]
            check(cpu < 0.5 * elapsed and len(emfile) <= 2,
                  f"the server used {cpu:.1f} s of CPU in {elapsed:.1f} s and logged "
                  f"{len(emfile)} lines about EMFILE: it spins")
            check(not stalled, f"the server stopped taking connections: {stalled}")
            check(64 <= n_closed < 150,
                  f"{n_closed} of 150 connections closed by the server: want all but the "
                  f"served ones, at once")
            kept = [s for s in socks if not closed(s)]
            clamp = [l for l in log if "open-file limit allows" in l]
            check(len(clamp) == 1 and "ulimit -n" in clamp[0],
                  "want one warning about --max-sessions and the open-file limit:\n"
                  + "\n".join(log[:5]))
            # Closing what it serves lets the server accept again.
            for s in kept:
                s.close()
            deadline = time.monotonic() + 120
            while True:
                ok, got = listed(build, srv.port)
                if (ok and got == DEVICES) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            check(ok and got == DEVICES, f"after the connections closed, `usbwire list -r` got: "
                                         f"{got}")

        tap.run("limits: 150 connections under `prlimit --nofile=64`: --max-sessions lowered "
                "with one warning, the rest closed at once, no spinning, served again after",
                nofile)
    finally:
        for s in socks:
            s.close()
        problems = srv.stop()
        tap.ok(not problems, "limits: (nofile) server exits 0 on SIGTERM, no sanitizer report",
               "\n".join(problems))
