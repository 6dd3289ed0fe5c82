# SPDX-License-Identifier: MIT
"""Tests 2-6: stock tools, tshark, CLI errors, clean shutdown, persistence of service."""

import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from uwlib import (DIR_IN, DIR_OUT, KEYBOARD, OP_REP_DEVLIST, SERIAL, SINK, STORAGE, Closed, Conn,
                   Fail, Server, Storage, Urbs, check, free_port, op_common,
                   parse_device_descriptor, run_cli)

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "tests/interop"))


def stop_point(tap, srv, test):
    problems = srv.stop()
    tap.ok(not problems, f"{test}: server exits 0 on SIGTERM, no sanitizer report",
           "\n".join(problems))


# ---- 2. Stock tools -----------------------------------------------------------------------------

USBIP_LINE = re.compile(r"^\s+(\d+-\d+): .*\(([0-9a-f]{4}):([0-9a-f]{4})\)\s*$")


def test_tools(tap, build, work):
    srv = Server(build, work, "tools").start()
    try:
        state = {}

        def usbip_list():
            usbip = shutil.which("usbip") or "/usr/sbin/usbip"
            check(Path(usbip).exists(), "usbip not installed (Debian package usbip)")
            r = subprocess.run([usbip, "--tcp-port", str(srv.port), "list", "-r", "127.0.0.1"],
                               capture_output=True, text=True, timeout=30)
            check(r.returncode == 0, f"usbip exited {r.returncode}: {r.stderr.strip()}")
            found = {}
            for line in r.stdout.splitlines():
                m = USBIP_LINE.match(line)
                if m:
                    found[m.group(1)] = (int(m.group(2), 16), int(m.group(3), 16))
            check(sorted(found) == ["99-1", "99-2", "99-3", "99-4"],
                  f"usbip listed {sorted(found)}:\n{r.stdout}")
            state["usbip"] = found

        def usbwire_json():
            r = run_cli(build, "list", "-r", f"127.0.0.1:{srv.port}", "--json")
            check(r.returncode == 0, f"usbwire list exited {r.returncode}: {r.stderr.strip()}")
            doc = json.loads(r.stdout)
            devs = doc["devices"]
            check(len(devs) == 4, f"{len(devs)} devices in the JSON")
            check([d["busid"] for d in devs] == ["99-1", "99-2", "99-3", "99-4"],
                  f"busids {[d['busid'] for d in devs]}")
            for d in devs:
                ids = (int(d["vendor_id"], 16), int(d["product_id"], 16))
                check(state.get("usbip", {}).get(d["busid"], ids) == ids,
                      f"{d['busid']}: usbwire says {ids[0]:04x}:{ids[1]:04x}, usbip says "
                      f"{state['usbip'][d['busid']][0]:04x}:{state['usbip'][d['busid']][1]:04x}")
            state["json"] = {d["busid"]: d for d in devs}

        def descriptors():
            check("json" in state, "no JSON list to compare with")
            with Conn(srv.port) as c:
                raw = {d["busid"]: d for d in c.devlist()}
            for busid, j in state["json"].items():
                with Urbs(srv.port, busid) as u:
                    d = parse_device_descriptor(u.get_device_descriptor())
                    rec = u.rec
                want = {"idVendor": int(j["vendor_id"], 16), "idProduct": int(j["product_id"], 16),
                        "bcdDevice": int(j["bcd_device"], 16), "class": j["class"],
                        "subclass": j["subclass"], "protocol": j["protocol"],
                        "nconfigs": j["num_configurations"]}
                for k, v in want.items():
                    check(d[k] == v, f"{busid}: descriptor {k} {d[k]:#x}, list says {v:#x}")
                    if k in rec:
                        check(rec[k] == v, f"{busid}: import record {k} {rec[k]:#x}, "
                                           f"list says {v:#x}")
                for k in ("busnum", "devnum", "speed", "path"):
                    check(raw[busid][k] == j[k] == rec[k],
                          f"{busid}: {k} differs: devlist {raw[busid][k]}, JSON {j[k]}, "
                          f"import {rec[k]}")
                check(rec["busnum"] << 16 | rec["devnum"] == u.devid, "devid")

        if shutil.which("usbip") or Path("/usr/sbin/usbip").exists():
            tap.run("tools: stock `usbip list -r` lists 99-1..99-4 with VID:PID", usbip_list)
        else:
            tap.skip("tools: stock `usbip list -r`", "usbip not installed")
        tap.run("tools: `usbwire list --json` parses, 4 devices, same ids as usbip",
                usbwire_json)
        tap.run("tools: listed ids = import records = GET_DESCRIPTOR(DEVICE) of each device",
                descriptors)
    finally:
        stop_point(tap, srv, "tools")


# ---- 3. tshark ----------------------------------------------------------------------------------

def test_tshark(tap, build, work):
    try:
        import capture
    except ImportError as e:
        tap.skip("tshark", f"tests/interop/capture.py: {e}")
        return
    if not capture.available():
        tap.skip("tshark: captures decode cleanly", "tshark not installed")
        return
    srv = Server(build, work, "tshark").start()
    try:
        shm = Path("/dev/shm")
        big_dir = Path(tempfile.mkdtemp(prefix="usbwire-cap.", dir=shm if shm.is_dir() else None))

        def bench_session():
            # A workload of known size (--count: exactly N URBs per measurement, about 40 MiB
            # in all), not a duration: a timed bench at full loopback speed moves gigabytes,
            # more than any capture buffer holds, and whether tshark keeps up would then decide
            # the result. This bounded one fits in the kernel capture buffer whole, so nothing
            # can be dropped however fast or slow the machine is. check() fails on drops,
            # checks the framing itself and has tshark dissect a copy with one USB/IP message
            # per TCP segment (Wireshark 4.0 mis-frames the 2nd+ RET_SUBMIT sharing a
            # segment, which batched replies and pipelined requests always do).
            per = 150
            cap = capture.Capture(srv.port, big_dir / "bench.pcapng", buffer_mb=256)
            try:
                cap.start()
            except capture.CaptureUnavailable as e:
                raise Fail(f"cannot capture: {e}") from None
            try:
                r = run_cli(build, "list", "-r", f"127.0.0.1:{srv.port}")
                check(r.returncode == 0, f"usbwire list: {r.returncode} {r.stderr}")
                r = run_cli(build, "bench", "-r", f"127.0.0.1:{srv.port}", "-b", SINK,
                            "--count", str(per), "--sizes", "4k,64k", "--depths", "1,8",
                            "--json", timeout=300)
                check(r.returncode == 0, f"usbwire bench: {r.returncode} {r.stderr}")
                res = json.loads(r.stdout)["results"]
                check(len(res) == 10, f"bench: {len(res)} results, want 10 (2 control + "
                                      "2 directions x 2 sizes x 2 depths)")
                bad = [x for x in res if x["errors"] or x["ops"] != per]
                check(not bad, f"bench results with errors or not {per} URBs: {bad}")
            finally:
                cap.stop()
            t0 = time.monotonic()
            size = cap.path.stat().st_size
            # Besides the measured URBs, bench reads the device descriptor and the
            # configuration (header, whole), sets the configuration and reads 512 bytes to
            # learn the sink's pattern: 5 more.
            want = len(res) * per + 5
            s = cap.check(require={"OP_REQ_DEVLIST": 1, "OP_REP_DEVLIST": 1, "OP_REQ_IMPORT": 1,
                                   "OP_REP_IMPORT": 1, "CMD_SUBMIT": want, "RET_SUBMIT": want})
            tap.comment(f"bench capture ({size >> 20} MiB, checked in "
                        f"{time.monotonic() - t0:.1f}s): {s}")
            check(s.connections == 2, f"{s.connections} connections captured, want 2 (list, "
                                      "bench)")
            check(s.counts["CMD_SUBMIT"] == want and s.counts["RET_SUBMIT"] == want,
                  f"{s.counts['CMD_SUBMIT']} CMD_SUBMIT and {s.counts['RET_SUBMIT']} "
                  f"RET_SUBMIT captured, want exactly {want} of each")

        def storage_session():
            cap = capture.Capture(srv.port, work / "storage.pcapng")
            try:
                cap.start()
            except capture.CaptureUnavailable as e:
                raise Fail(f"cannot capture: {e}") from None
            try:
                with Urbs(srv.port, STORAGE) as u:
                    u.set_configuration()
                    st = Storage(u)
                    inq = st.inquiry()
                    check(inq[0] & 0x1f == 0, f"INQUIRY peripheral type {inq[0]:#x}")
                    blocks, bsize = st.read_capacity()
                    check(bsize == 512 and blocks == srv.image_mb << 11,
                          f"READ CAPACITY: {blocks} x {bsize}")
                    for lba in (0, 7, blocks - 8):
                        d = st.read10(lba, 8)
                        check(d == b"\0" * 4096, f"READ(10) lba {lba}: not zeros")
            finally:
                cap.stop()
            s = cap.check(require={"OP_REQ_IMPORT": 1, "OP_REP_IMPORT": 1,
                                   "CMD_SUBMIT": 16, "RET_SUBMIT": 16})
            tap.comment(f"storage capture: {s}")

        try:
            tap.run("tshark: `usbwire list` + `usbwire bench` capture decodes cleanly, exactly as "
                    "many CMD_SUBMIT/RET_SUBMIT as bench sent", bench_session)
        finally:
            shutil.rmtree(big_dir, ignore_errors=True)
        tap.run("tshark: storage session (INQUIRY, READ CAPACITY, READ(10)) decodes cleanly",
                storage_session)
    finally:
        stop_point(tap, srv, "tshark")


# ---- 4. CLI errors ------------------------------------------------------------------------------

def expect_fail(build, args, want, timeout=60, rc=1):
    """Runs usbwire ARGS; it must exit with status rc (any non-zero if rc is None) within
    timeout, its stderr matching every regex in want."""
    try:
        r = run_cli(build, *args, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail(f"`usbwire {' '.join(args)}` still running after {timeout}s") from None
    out = (r.stderr + r.stdout).strip()
    if rc is None:
        check(r.returncode != 0, f"exit status 0:\n{out}")
    else:
        check(r.returncode == rc, f"exit status {r.returncode}, want {rc}:\n{out}")
    for w in want:
        check(re.search(w, r.stderr), f"stderr does not match {w!r}:\n{out}")
    return r


HOSTILE_BUSID = b"\x1b[31m1-1\n[fake] x\\"
HOSTILE_PATH = b"/sys/\x1b]0;owned\x07\x1b[2J\r\n[fake log line]\xff\xc2\x9b\x7f caf\xc3\xa9"


def fake_devlist_server(replies):
    """Listens on 127.0.0.1; answers each of `replies` connections' OP_REQ_DEVLIST with a list of
    one device whose busid and path are HOSTILE_*. Returns (port, thread)."""
    import socket
    import struct
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    ls.settimeout(30)
    rec = (HOSTILE_PATH.ljust(256, b"\0") + HOSTILE_BUSID.ljust(32, b"\0")
           + struct.pack(">IIIHHHBBBBBB", 1, 2, 3, 0x1234, 0x5678, 0x0100, 0, 0, 0, 1, 1, 1)
           + bytes([0xff, 0, 0, 0]))
    reply = op_common(OP_REP_DEVLIST) + struct.pack(">I", 1) + rec

    def serve():
        with ls:
            for _ in range(replies):
                c, _ = ls.accept()
                with c:
                    got = b""
                    while len(got) < 8:
                        b = c.recv(8 - len(got))
                        if not b:
                            break
                        got += b
                    c.sendall(reply)
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return ls.getsockname()[1], t


def list_hostile_strings(build):
    port, t = fake_devlist_server(2)
    exe = str(Path(build) / "src/cli/usbwire")
    r = subprocess.run([exe, "list", "-r", f"127.0.0.1:{port}"], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    check(r.returncode == 0, f"list -r exit {r.returncode}: {out!r}")
    bad = sorted({b for b in out if (b < 0x20 and b != 0x0a) or b == 0x7f})
    check(not bad, f"output holds raw control bytes {[hex(b) for b in bad]}: {out!r}")
    check(b"\xc2\x9b" not in out and b"\xff" not in out, f"raw C1/invalid UTF-8: {out!r}")
    check(not re.search(rb"^\[fake", out, re.M), f"a forged line: {out!r}")
    check(b"\\x1b[31m1-1\\x0a[fake] x\\x5c" in out, f"busid not shown escaped: {out!r}")
    check(b"caf\xc3\xa9" in out, f"valid UTF-8 not kept: {out!r}")
    r = subprocess.run([exe, "list", "-r", f"127.0.0.1:{port}", "--json"], capture_output=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    t.join(30)
    check(r.returncode == 0, f"list -r --json exit {r.returncode}: {r.stderr!r}")
    bad = sorted({b for b in r.stdout if (b < 0x20 and b != 0x0a) or b == 0x7f})
    check(not bad, f"JSON output holds raw control bytes {[hex(b) for b in bad]}")
    try:
        doc = json.loads(r.stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Fail(f"--json output is not valid UTF-8 JSON ({e}): {r.stdout!r}") from None
    d = doc["devices"][0]
    check(d["busid"] == HOSTILE_BUSID.decode(), f"busid {d['busid']!r}")
    check(d["path"].startswith("/sys/\x1b]0;owned\x07") and d["path"].endswith(" caf\u00e9"),
          f"path {d['path']!r}")


HOSTILE_STRING = "\x1b[31mEvil\n[fake log line]\u009b2J caf\u00e9"


def fake_info_server(conns):
    """Listens on 127.0.0.1 and serves `conns` imports of busid 1-1: a device whose three
    string descriptors are HOSTILE_STRING; every other control request stalls."""
    import socket
    import struct
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    ls.settimeout(30)
    dev = bytes([18, 1, 0, 2, 0, 0, 0, 64, 0x34, 0x12, 0x78, 0x56, 0, 1, 1, 2, 3, 1])
    cfg = bytes([9, 2, 18, 0, 1, 1, 0, 0x80, 50, 9, 4, 0, 0, 0, 0xff, 0, 0, 0])
    text = HOSTILE_STRING.encode("utf-16-le")
    strings = {0: bytes([4, 3, 0x09, 0x04]), 1: bytes([2 + len(text), 3]) + text}
    strings[2] = strings[3] = strings[1]
    rec = (b"/sys/fake".ljust(256, b"\0") + b"1-1".ljust(32, b"\0")
           + struct.pack(">IIIHHHBBBBBB", 1, 2, 2, 0x1234, 0x5678, 0x0100, 0, 0, 0, 0, 1, 0))

    def exact(c, n):
        got = b""
        while len(got) < n:
            b = c.recv(n - len(got))
            if not b:
                raise EOFError
            got += b
        return got

    def serve_one(c):
        exact(c, 40)
        c.sendall(op_common(0x0003) + rec)
        while True:
            h = exact(c, 48)
            cmd, seq, _, direction, ep = struct.unpack(">IIIII", h[:20])
            if cmd == 2:
                c.sendall(struct.pack(">IIIIIi", 4, seq, 0, 0, 0, 0) + b"\0" * 24)
                continue
            length = struct.unpack(">i", h[24:28])[0]
            if direction == 0 and length > 0:
                exact(c, length)
            rt, req, val, idx, wlen = struct.unpack("<BBHHH", h[40:48])
            data, status = b"", -32
            if ep == 0 and rt == 0x80 and req == 6:
                kind, index = val >> 8, val & 0xff
                d = {1: dev if index == 0 else None, 2: cfg if index == 0 else None,
                     3: strings.get(index)}.get(kind)
                if d is not None:
                    data, status = d[:min(wlen, length)], 0
            elif direction == 0:
                status = 0
            c.sendall(struct.pack(">IIIIIiiiii", 3, seq, 0, 0, 0, status,
                                  len(data) if direction else (length if status == 0 else 0),
                                  0, 0, 0) + b"\0" * 8 + data)

    def serve():
        with ls:
            for _ in range(conns):
                c, _ = ls.accept()
                with c:
                    try:
                        serve_one(c)
                    except (EOFError, OSError):
                        pass
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return ls.getsockname()[1], t


def info_hostile_strings(build):
    port, t = fake_info_server(2)
    exe = str(Path(build) / "src/cli/usbwire")
    r = subprocess.run([exe, "info", "-r", f"127.0.0.1:{port}", "-b", "1-1"],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    check(r.returncode == 0, f"info -r exit {r.returncode}: {out!r}")
    bad = sorted({b for b in out if (b < 0x20 and b != 0x0a) or b == 0x7f})
    check(not bad, f"output holds raw control bytes {[hex(b) for b in bad]}: {out!r}")
    check(b"\xc2\x9b" not in out, f"output holds a raw C1 control (U+009B): {out!r}")
    check(not re.search(rb"^\[fake", out, re.M), f"a forged line: {out!r}")
    want = b"\\x1b[31mEvil\\x0a[fake log line]\\xc2\\x9b2J caf\xc3\xa9"
    check(out.count(want) >= 4, f"the strings are not all shown escaped ({out.count(want)}): "
                                f"{out!r}")
    r = subprocess.run([exe, "info", "-r", f"127.0.0.1:{port}", "-b", "1-1", "--json"],
                       capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    t.join(30)
    check(r.returncode == 0, f"info -r --json exit {r.returncode}: {r.stderr!r}")
    try:
        doc = json.loads(r.stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Fail(f"--json output is not valid UTF-8 JSON ({e}): {r.stdout!r}") from None
    bad = sorted({b for b in r.stdout if (b < 0x20 and b != 0x0a) or b == 0x7f})
    check(not bad and b"\xc2\x9b" not in r.stdout, f"raw control bytes in JSON: {r.stdout!r}")
    d = doc["device"]
    check(d["manufacturer"] == d["product"] == d["serial"] == HOSTILE_STRING,
          f"strings {d['manufacturer']!r} {d['product']!r} {d['serial']!r}")


def test_cli(tap, build, work):
    work.mkdir(parents=True, exist_ok=True)
    img = work / "cli.img"
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    port = free_port()
    listen = ["--listen", f"127.0.0.1:{port}"]
    tap.run("cli: serve --export emu:storage,file=/nonexistent -> exit 1, names the file",
            expect_fail, build, ["serve", *listen, "--export", "emu:storage,file=/nonexistent"],
            [r"/nonexistent", r"No such file"])
    tap.run("cli: serve --export emu:bogus -> exit 1, names the known kinds",
            expect_fail, build, ["serve", *listen, "--export", "emu:bogus"],
            [r"bogus", r"storage", r"keyboard", r"serial", r"sink"])
    tap.run("cli: serve --export emu:storage,file=X,size=3 -> exit 1, unknown option",
            expect_fail, build, ["serve", *listen, "--export", f"emu:storage,file={img},size=3"],
            [r"unknown option", r"size"])
    tap.run("cli: serve --listen 999.1.1.1 -> exit 1, clear error",
            expect_fail, build, ["serve", "--listen", "999.1.1.1", "--export", "emu:sink"],
            [r"999\.1\.1\.1", r"listen"])
    tap.run("cli: serve --listen 127.0.0.1:99999 -> exit 1, clear error",
            expect_fail, build, ["serve", "--listen", "127.0.0.1:99999", "--export", "emu:sink"],
            [r"99999", r"listen"], rc=None)

    def port_in_use():
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            p = s.getsockname()[1]
            expect_fail(build, ["serve", "--listen", f"127.0.0.1:{p}", "--export", "emu:sink"],
                        [r"Address already in use", str(p)])
    tap.run("cli: serve on a port already in use -> exit 1, Address already in use", port_in_use)

    def refused():
        import socket
        with socket.socket() as s:  # a port nothing listens on (bound, never listening)
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
            expect_fail(build, ["list", "-r", f"127.0.0.1:{p}"], [r"Connection refused"])
        expect_fail(build, ["list", "-r", "127.0.0.1:1"], [r"Connection refused"])
    tap.run("cli: list -r to a port nothing listens on -> exit 1, Connection refused", refused)

    tap.run("cli: list -r from a server sending ESC sequences and newlines in busid/path -> "
            "printed escaped, --json valid", list_hostile_strings, build)
    tap.run("cli: info -r of a device whose strings hold ESC sequences, newlines and C1 "
            "controls -> printed escaped, --json valid", info_hostile_strings, build)

    srv = Server(build, work, "cli").start()
    try:
        for busid, what in ((KEYBOARD, "keyboard, no bulk endpoints"),
                            (STORAGE, "mass storage, bulk endpoints"),
                            (SERIAL, "CDC-ACM serial, bulk endpoints")):
            args = ["bench", "-r", f"127.0.0.1:{srv.port}", "-b", busid, "-s", "0.1",
                    "--sizes", "4k", "--depths", "1"]
            name = f"cli: bench -b {busid} ({what}) -> exit non-zero, explains source/sink"
            ok = tap.run(name, expect_fail, build, args, [r"source/sink"], timeout=60, rc=None)
            if not ok and busid != KEYBOARD:
                tap.bug(f"`usbwire {' '.join(args)}` ({what}) is not refused: bench takes the "
                        "first interface with bulk IN and OUT endpoints whatever its class and "
                        "streams its test data into it (storage: zeros as CBWs, which stall; "
                        "serial: bulk IN never completes, so the pattern probe waits 5 s and "
                        "each measurement 10 s before unlinking); it ends after many seconds "
                        "with exit status 0 and errors counted. Expected: refuse a device that "
                        "is not a source/sink (e.g. no vendor-specific interface, class 0xff) "
                        "at once, with an explanation and exit status 1.")
        tap.run("cli: bench -b 99-9 (unknown busid) -> exit 1, Device not found", expect_fail,
                build, ["bench", "-r", f"127.0.0.1:{srv.port}", "-b", "99-9"],
                [r"Device not found"])
        for bad in ("0", "-5", "12x", "2000000000"):
            tap.run(f"cli: bench --count {bad} -> exit 2, invalid --count", expect_fail, build,
                    ["bench", "-r", f"127.0.0.1:{srv.port}", "-b", SINK, "--count", bad],
                    [r"invalid --count"], rc=2)

        def counted():
            r = run_cli(build, "bench", "-r", f"127.0.0.1:{srv.port}", "-b", SINK, "--count",
                        "7", "--sizes", "4k", "--depths", "1,8", "--json", timeout=120)
            check(r.returncode == 0, f"exit {r.returncode}: {r.stderr}")
            doc = json.loads(r.stdout)
            check(doc.get("count") == 7, f"count in the JSON: {doc.get('count')}")
            got = [(x["test"], x["depth"], x["ops"], x["bytes"], x["errors"])
                   for x in doc["results"]]
            want = [("control GET_DESCRIPTOR", 1, 7, 7 * 18, 0),
                    ("control GET_DESCRIPTOR", 32, 7, 7 * 18, 0),
                    ("bulk IN", 1, 7, 7 * 4096, 0), ("bulk IN", 8, 7, 7 * 4096, 0),
                    ("bulk OUT", 1, 7, 7 * 4096, 0), ("bulk OUT", 8, 7, 7 * 4096, 0)]
            check(got == want, f"results {got}, want {want}")
        tap.run("cli: bench --count 7 -> exactly 7 URBs per measurement, also at depths 8 and 32",
                counted)
    finally:
        stop_point(tap, srv, "cli")


# ---- 5. Clean shutdown --------------------------------------------------------------------------

def test_shutdown(tap, build, work):
    srv = Server(build, work, "shutdown", image_mb=16).start()
    chunk_blocks = 64  # 32 KiB per WRITE(10)
    acked = {}  # lba -> data, for every WRITE(10) whose CSW said "passed"
    errors = []
    started = threading.Event()

    def writer():
        try:
            with Urbs(srv.port, STORAGE) as u:
                u.set_configuration()
                st = Storage(u)
                total = (16 << 20) // 512
                lba = 0
                n = 0
                while True:
                    data = bytes([(lba // chunk_blocks) % 251 + 1]) * (chunk_blocks * 512)
                    if lba + chunk_blocks > total:
                        lba = 0
                    st.write10(lba, data)
                    acked[lba] = data
                    n += 1
                    if n == 50:
                        started.set()
                    lba += chunk_blocks
        except (Closed, TimeoutError, ConnectionError, OSError) as e:
            if not started.is_set():
                errors.append(f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            started.set()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    started.wait(30)
    try:
        check_writes = not errors
        tap.ok(not errors and acked, f"shutdown: storage session writing ({len(acked)} WRITE(10)s "
               "acknowledged before SIGTERM)", "; ".join(errors))
    finally:
        t0 = time.monotonic()
        problems = srv.stop()
        dt = time.monotonic() - t0
        t.join(10)
    tap.ok(not problems, f"shutdown: SIGTERM during writes -> exit 0 in {dt:.1f}s, "
           "no sanitizer report", "\n".join(problems))
    log = srv.log()
    tap.ok("shutting down" in log, "shutdown: the server logs that it is shutting down",
           srv.tail())

    def data_on_disk():
        check(check_writes and acked, "no acknowledged writes to check")
        img = srv.image.read_bytes()
        bad = [lba for lba, d in acked.items() if img[lba * 512:lba * 512 + len(d)] != d]
        check(not bad, f"{len(bad)} of {len(acked)} acknowledged WRITE(10)s are not in the "
                       f"image, first at lba {bad[:5]}")
    tap.run(f"shutdown: all {len(acked)} acknowledged WRITE(10)s are in the image file",
            data_on_disk)


# ---- 6. Persistence of service ------------------------------------------------------------------

def test_persistence(tap, build, work):
    srv = Server(build, work, "persistence").start()
    try:
        def sessions():
            waits = []
            for i in range(20):
                t0 = time.monotonic()
                u = Urbs(srv.port, SINK, retry_busy=30.0)
                waits.append(time.monotonic() - t0)
                with u:
                    u.set_configuration()
                    for _ in range(3):
                        r = u.bulk(1, DIR_IN, 4096)
                        check(r["data"] == b"\0" * 4096, f"session {i}: bulk IN data")
                    r = u.bulk(1, DIR_OUT, data=b"\0" * 4096)
                    check(r["actual"] == 4096, f"session {i}: bulk OUT actual {r['actual']}")
                    d = parse_device_descriptor(u.get_device_descriptor())
                    check(d["idProduct"] == 0xa4a0, f"session {i}: descriptor {d}")
                    if i % 2:
                        u.submit(1, DIR_IN, 4096)  # its reply left unread at close
            tap.comment(f"import took at most {max(waits) * 1000:.0f} ms")
            with Conn(srv.port) as c:
                check(len(c.devlist()) == 4, "not every device is listed after the sessions")
            deadline = time.monotonic() + 60
            while srv.log().count("released 99-4") < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            n = srv.log().count("released 99-4")
            check(n == 20, f"{n} 'released 99-4' log lines, want 20")
        tap.run("persistence: 20 sessions in a row import, use and release 99-4", sessions)
    finally:
        stop_point(tap, srv, "persistence")
