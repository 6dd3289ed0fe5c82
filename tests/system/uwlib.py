# SPDX-License-Identifier: MIT
"""Helpers of the system tests: a usbwire server process, and a raw USB/IP client written from
the wire format alone (docs/protocol.md §2), so that it can send
anything, including what no real client would.

Byte order: op messages and the 48-byte URB headers are big-endian; the SETUP packet inside a
CMD_SUBMIT is the USB bus's little-endian.
"""

import os
import select
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

VERSION = 0x0111
OP_REQ_DEVLIST, OP_REP_DEVLIST = 0x8005, 0x0005
OP_REQ_IMPORT, OP_REP_IMPORT = 0x8003, 0x0003
ST_OK, ST_NA, ST_DEV_BUSY, ST_DEV_ERR, ST_NODEV = 0, 1, 2, 3, 4
CMD_SUBMIT, CMD_UNLINK, RET_SUBMIT, RET_UNLINK = 1, 2, 3, 4
DIR_OUT, DIR_IN = 0, 1
URB_DIR_IN = 0x200
HDR_LEN = 48
DEVREC_LEN = 312

EPIPE, EINVAL, ESHUTDOWN, ECONNRESET = -32, -22, -108, -104

SANITIZER_MARKS = ("AddressSanitizer", "LeakSanitizer", "runtime error")

# The four exports every system test server has, in --export order (busids 99-1..99-4).
STORAGE, KEYBOARD, SERIAL, SINK = "99-1", "99-2", "99-3", "99-4"


class Fail(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- Wire encoders ------------------------------------------------------------------------------

def op_common(code, status=0, version=VERSION):
    return struct.pack(">HHI", version, code, status)


def busid_field(busid):
    b = busid.encode() if isinstance(busid, str) else bytes(busid)
    return b[:32].ljust(32, b"\0")


def req_import(busid, version=VERSION, code=OP_REQ_IMPORT, status=0):
    return op_common(code, status, version) + busid_field(busid)


def req_devlist():
    return op_common(OP_REQ_DEVLIST)


def setup_packet(bm_request_type, b_request, w_value, w_index, w_length):
    return struct.pack("<BBHHH", bm_request_type, b_request, w_value, w_index, w_length)


def get_descriptor_setup(dtype, index=0, length=18, lang=0):
    return setup_packet(0x80, 6, dtype << 8 | index, lang, length)


SET_CONFIG_1 = setup_packet(0x00, 9, 1, 0, 0)


def cmd_submit(seq, devid, direction, ep, length, setup=b"\0" * 8, flags=None, start_frame=0,
               np=0, interval=0, command=CMD_SUBMIT):
    if flags is None:
        flags = URB_DIR_IN if direction == DIR_IN else 0
    return struct.pack(">IIIII Iiiii", command & 0xffffffff, seq & 0xffffffff,
                       devid & 0xffffffff, direction & 0xffffffff, ep & 0xffffffff,
                       flags, _s32(length), _s32(start_frame), _s32(np), _s32(interval)) + setup


def cmd_unlink(seq, devid, target):
    return struct.pack(">IIIIII", CMD_UNLINK, seq & 0xffffffff, devid, 0, 0,
                       target & 0xffffffff) + b"\0" * 24


def _s32(v):
    v &= 0xffffffff
    return v - (1 << 32) if v >= 1 << 31 else v


def parse_devrec(rec):
    path, busid = rec[:256], rec[256:288]
    busnum, devnum, speed, vid, pid, bcd = struct.unpack(">IIIHHH", rec[288:306])
    cls, sub, proto, cfg, ncfg, nif = rec[306:312]
    return {"path": path.split(b"\0")[0].decode(), "busid": busid.split(b"\0")[0].decode(),
            "busnum": busnum, "devnum": devnum, "speed": speed, "idVendor": vid,
            "idProduct": pid, "bcdDevice": bcd, "class": cls, "subclass": sub,
            "protocol": proto, "config": cfg, "nconfigs": ncfg, "ninterfaces": nif}


# ---- The raw client -----------------------------------------------------------------------------

class Closed(Exception):
    """The server closed the connection (EOF or reset)."""


class Conn:
    """One TCP connection to the server, with exact reads and deadline-bounded waits."""

    def __init__(self, port, timeout=60.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.local = "127.0.0.1:%d" % self.sock.getsockname()[1]  # the server's name for us
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        """Sends everything; False if the server had closed (EPIPE/ECONNRESET)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def shutdown_write(self):
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def recv_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"waited for {n} bytes, have {len(self.buf)}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(max(65536, n - len(self.buf)))
            except socket.timeout:
                raise TimeoutError(f"waited for {n} bytes, have {len(self.buf)}") from None
            except ConnectionResetError:
                raise Closed(f"connection reset with {len(self.buf)} of {n} bytes") from None
            if not chunk:
                raise Closed(f"EOF with {len(self.buf)} of {n} bytes")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def wait_eof(self, timeout=60.0):
        """Reads until EOF/reset; returns the bytes received before it. Raises TimeoutError if
        the connection is still open after timeout."""
        got = self.buf
        self.buf = b""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"connection still open after {timeout}s "
                                   f"({len(got)} bytes received)")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk

    def is_open(self, wait=0.2):
        """True if nothing (no EOF, no data) arrives within wait seconds."""
        r, _, _ = select.select([self.sock], [], [], wait)
        if not r:
            return True
        try:
            chunk = self.sock.recv(65536, socket.MSG_PEEK)
        except ConnectionResetError:
            return False
        return bool(chunk)

    # ---- op phase ----

    def read_op_reply(self, code):
        hdr = self.recv_exact(8)
        ver, rcode, status = struct.unpack(">HHI", hdr)
        check(ver == VERSION, f"reply version 0x{ver:04x}, want 0x0111")
        check(rcode == code, f"reply code 0x{rcode:04x}, want 0x{code:04x}")
        return status

    def import_dev(self, busid, check_ok=True):
        """OP_REQ_IMPORT; returns (status, record dict or None)."""
        self.send(req_import(busid))
        status = self.read_op_reply(OP_REP_IMPORT)
        if status != ST_OK:
            check(not check_ok, f"import of {busid}: status {status}")
            return status, None
        rec = parse_devrec(self.recv_exact(DEVREC_LEN))
        check(rec["busid"] == busid, f"import reply busid {rec['busid']!r}, want {busid!r}")
        return status, rec

    def devlist(self):
        self.send(req_devlist())
        status = self.read_op_reply(OP_REP_DEVLIST)
        check(status == 0, f"devlist status {status}")
        (n,) = struct.unpack(">I", self.recv_exact(4))
        devs = []
        for _ in range(n):
            rec = parse_devrec(self.recv_exact(DEVREC_LEN))
            rec["interfaces"] = [tuple(self.recv_exact(4)[:3]) for _ in range(rec["ninterfaces"])]
            devs.append(rec)
        return devs


class Urbs(Conn):
    """An imported device: CMD_SUBMIT/CMD_UNLINK out, RET_SUBMIT/RET_UNLINK in, framed by what
    this side asked (direction of each seqnum)."""

    def __init__(self, port, busid, timeout=60.0, retry_busy=30.0):
        deadline = time.monotonic() + retry_busy
        while True:
            super().__init__(port, timeout)
            status, rec = self.import_dev(busid, check_ok=False)
            if status == ST_OK:
                break
            self.close()
            # A device is released when the server has seen the previous client's EOF, which
            # can trail our own close() a little.
            if status != ST_DEV_BUSY or time.monotonic() > deadline:
                raise Fail(f"import of {busid}: status {status}")
            time.sleep(0.05)
        self.busid = busid
        self.rec = rec
        self.devid = rec["busnum"] << 16 | rec["devnum"]
        self.seq = 1000
        self.sent = {}  # seqnum -> (direction, length) of CMD_SUBMITs not yet answered

    def next_seq(self):
        self.seq += 1
        return self.seq

    def submit(self, ep, direction, length, setup=b"\0" * 8, data=b"", seq=None, **kw):
        seq = self.next_seq() if seq is None else seq
        msg = cmd_submit(seq, kw.pop("devid", self.devid), direction, ep, length, setup, **kw)
        self.sent[seq] = (direction, length)
        self.send(msg + data)
        return seq

    def unlink(self, target, seq=None):
        seq = self.next_seq() if seq is None else seq
        self.send(cmd_unlink(seq, self.devid, target))
        return seq

    def read_reply(self, timeout=None):
        """Returns a dict: command, seqnum, status, actual, start_frame, np, errors, data."""
        h = self.recv_exact(HDR_LEN, timeout)
        cmd, seq, devid, direction, ep = struct.unpack(">IIIII", h[:20])
        r = {"command": cmd, "seqnum": seq}
        check(devid == 0 and direction == 0 and ep == 0,
              f"reply seqnum {seq}: devid/direction/ep {devid}/{direction}/{ep}, want 0/0/0")
        if cmd == RET_SUBMIT:
            st, actual, sf, np, errs = struct.unpack(">iiiii", h[20:40])
            check(h[40:48] == b"\0" * 8, f"RET_SUBMIT {seq}: padding not zero")
            check(seq in self.sent, f"RET_SUBMIT for seqnum {seq} that is not outstanding")
            d, length = self.sent.pop(seq)
            check(0 <= actual <= length,
                  f"RET_SUBMIT {seq}: actual_length {actual} outside 0..{length}")
            r.update(status=st, actual=actual, start_frame=sf, np=np, errors=errs)
            r["data"] = self.recv_exact(actual, timeout) if d == DIR_IN and actual else b""
        elif cmd == RET_UNLINK:
            (st,) = struct.unpack(">i", h[20:24])
            check(h[24:48] == b"\0" * 24, f"RET_UNLINK {seq}: padding not zero")
            r.update(status=st)
        else:
            raise Fail(f"reply with command {cmd} (seqnum {seq})")
        return r

    def expect_submit(self, seq, status=0, actual=None, timeout=None):
        r = self.read_reply(timeout)
        check(r["command"] == RET_SUBMIT and r["seqnum"] == seq,
              f"expected RET_SUBMIT seqnum {seq}, got command {r['command']} seqnum "
              f"{r['seqnum']} status {r.get('status')}")
        check(r["status"] == status, f"RET_SUBMIT {seq}: status {r['status']}, want {status}")
        if actual is not None:
            check(r["actual"] == actual, f"RET_SUBMIT {seq}: actual {r['actual']}, want {actual}")
        return r

    def control(self, setup, data=b"", direction=None, status=0, timeout=None):
        bm, _, _, _, wlen = struct.unpack("<BBHHH", setup)
        if direction is None:
            direction = DIR_IN if bm & 0x80 else DIR_OUT
        seq = self.submit(0, direction, wlen, setup, data)
        return self.expect_submit(seq, status, timeout=timeout)

    def set_configuration(self, value=1):
        self.control(setup_packet(0, 9, value, 0, 0))

    def get_device_descriptor(self):
        r = self.control(get_descriptor_setup(1, 0, 18))
        check(r["actual"] == 18, f"device descriptor of {r['actual']} bytes")
        return r["data"]

    def bulk(self, ep, direction, length=0, data=b"", status=0, timeout=None):
        seq = self.submit(ep, direction, length if direction == DIR_IN else len(data), data=data)
        return self.expect_submit(seq, status, timeout=timeout)


def parse_device_descriptor(d):
    f = struct.unpack("<BBHBBBBHHHBBBB", d[:18])
    return {"bcdUSB": f[2], "class": f[3], "subclass": f[4], "protocol": f[5], "mps0": f[6],
            "idVendor": f[7], "idProduct": f[8], "bcdDevice": f[9], "nconfigs": f[13]}


# ---- Mass storage (Bulk-Only Transport) on 99-1: bulk IN ep 1, bulk OUT ep 2 ------------------

class Storage:
    EP_IN, EP_OUT = 1, 2

    def __init__(self, urbs):
        self.u = urbs
        self.tag = 0x1000

    def command(self, cdb, data_in=0, data_out=b""):
        """One BOT cycle; returns (data, csw_status)."""
        self.tag += 1
        n = data_in or len(data_out)
        flags = 0x80 if data_in else 0
        cbw = struct.pack("<IIIBBB", 0x43425355, self.tag, n, flags, 0, len(cdb)) + \
            cdb.ljust(16, b"\0")
        self.u.bulk(self.EP_OUT, DIR_OUT, data=cbw)
        data = b""
        if data_in:
            data = self.u.bulk(self.EP_IN, DIR_IN, data_in)["data"]
        elif data_out:
            r = self.u.bulk(self.EP_OUT, DIR_OUT, data=data_out)
            check(r["actual"] == len(data_out), f"data out: {r['actual']} of {len(data_out)}")
        csw = self.u.bulk(self.EP_IN, DIR_IN, 13)["data"]
        sig, tag, residue, status = struct.unpack("<IIIB", csw)
        check(sig == 0x53425355 and tag == self.tag, f"bad CSW {csw.hex()}")
        return data, status

    def inquiry(self):
        data, st = self.command(bytes([0x12, 0, 0, 0, 36, 0]), data_in=36)
        check(st == 0 and len(data) == 36, f"INQUIRY: status {st}, {len(data)} bytes")
        return data

    def read_capacity(self):
        data, st = self.command(bytes([0x25]) + b"\0" * 9, data_in=8)
        check(st == 0 and len(data) == 8, f"READ CAPACITY: status {st}")
        last, bsize = struct.unpack(">II", data)
        return last + 1, bsize

    def read10(self, lba, blocks, bsize=512):
        data, st = self.command(struct.pack(">BBIBHB", 0x28, 0, lba, 0, blocks, 0),
                                data_in=blocks * bsize)
        check(st == 0, f"READ(10) lba {lba}: CSW status {st}")
        return data

    def write10(self, lba, data, bsize=512):
        _, st = self.command(struct.pack(">BBIBHB", 0x2a, 0, lba, 0, len(data) // bsize, 0),
                             data_out=data)
        check(st == 0, f"WRITE(10) lba {lba}: CSW status {st}")


# ---- The server ---------------------------------------------------------------------------------

class Server:
    """usbwire serve on a free 127.0.0.1 port with the four standard exports; stderr kept."""

    def __init__(self, build, workdir, name, extra=(), image_mb=4, exports=None, wrap=()):
        self.binary = Path(build) / "src/cli/usbwire"
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.image = self.dir / f"{name}.img"
        self.log_path = self.dir / f"{name}.serve.log"
        self.extra = list(extra)
        self.image_mb = image_mb
        self.exports = exports
        self.wrap = list(wrap)  # a command that execs the server (prlimit ...): same pid
        self.proc = None
        self.port = None

    def start(self, timeout=120):
        with open(self.image, "wb") as f:
            f.truncate(self.image_mb << 20)
        exports = self.exports or [f"emu:storage,file={self.image}", "emu:keyboard",
                                   "emu:serial", "emu:sink"]
        env = dict(os.environ)
        # A small quarantine keeps the RSS measurements meaningful; leaks are still reported.
        env.setdefault("ASAN_OPTIONS", "quarantine_size_mb=32:detect_leaks=1")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        for attempt in range(5):
            self.port = free_port()
            args = self.wrap + [str(self.binary), "serve", "--listen", f"127.0.0.1:{self.port}"]
            for e in exports:
                args += ["--export", e]
            args += self.extra
            self._log = open(self.log_path, "w")
            self.proc = subprocess.Popen(args, stdout=self._log, stderr=self._log,
                                         stdin=subprocess.DEVNULL, env=env)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                if "listening on" in self.log():
                    return self
                time.sleep(0.05)
            self._log.close()
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                raise Fail(f"usbwire serve did not start listening:\n{self.tail()}")
            if "Address already in use" not in self.log():
                raise Fail(f"usbwire serve exited at start ({self.proc.returncode}):\n"
                           + self.tail())
        raise Fail("no free port for usbwire serve")

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        return self.log().splitlines()

    def lines_for(self, peer):
        """The log lines about one client connection (the server names it by address:port)."""
        return [l for l in self.log_lines() if f" {peer}: " in l]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def tail(self, n=25):
        return "\n".join(self.log_lines()[-n:])

    def sanitizer_report(self):
        text = self.log()
        for mark in SANITIZER_MARKS:
            i = text.find(mark)
            if i >= 0:
                start = text.rfind("\n", 0, max(0, i - 200)) + 1
                return text[start:start + 3000]
        return None

    def stop(self, timeout=60):
        """SIGTERM. Returns a list of problems: exit status, time, sanitizer reports."""
        problems = []
        if self.proc is None:
            return problems
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append(f"did not exit within {timeout}s of SIGTERM")
        else:
            problems.append(f"had already exited (status {self.proc.returncode}) before SIGTERM")
        self.elapsed = time.monotonic() - t0
        self._log.close()
        rc = self.proc.returncode
        self.proc = None
        if rc != 0 and not problems:
            problems.append(f"exit status {rc} after SIGTERM")
        rep = self.sanitizer_report()
        if rep:
            problems.append("sanitizer report:\n" + rep)
        if problems:
            problems.append(f"log tail ({self.log_path}):\n{self.tail()}")
        return problems

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self._log.close()
        self.proc = None


def run_cli(build, *args, timeout=60):
    return subprocess.run([str(Path(build) / "src/cli/usbwire"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
