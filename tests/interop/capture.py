# SPDX-License-Identifier: MIT
"""Captures USB/IP traffic on the host loopback with tshark and checks it strictly.

    cap = Capture(port, "/path/file.pcapng")    # buffer_mb=...: kernel capture buffer (tshark -B)
    cap.start()          # returns once tshark is really capturing
    ... traffic ...
    cap.stop()
    summary = cap.check(require={"OP_REQ_IMPORT": 1})   # raises CaptureError on problems

check() is three checks, all of which must pass:
  1. the framing of the captured TCP streams, independent of Wireshark (usbipframe.py): every
     message well-formed, every RET_SUBMIT/RET_UNLINK answering an outstanding command, every
     length right, no packet lost;
  2. tshark on a copy of the capture in which each USB/IP message starts a TCP segment of its own
     (FILE-1pdu.pcap next to the capture): no malformed packet, no expert error, no unknown
     message. Wireshark 4.0's dissector mis-frames replies that share a segment (docs/protocol.md §9),
     so the capture as written by tshark is not dissected directly;
  3. the message counts of both agree.
Wireshark's USB/IP dissector is Decode-As only, hence -d tcp.port==PORT,usbip.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

from usbipframe import OPS, URBS, FramingError, resegment

EXPERT_ERROR = 0x00800000  # _ws.expert.severity of "Error"
DEFAULT_BUFFER_MB = 256    # tshark's default (2 MiB) drops packets of fast loopback sessions


class CaptureError(AssertionError):
    pass


class CaptureUnavailable(Exception):
    """tshark is missing or cannot capture here."""


def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Summary:
    def __init__(self, counts, frames, problems, caveats, connections=0):
        self.counts = counts      # Counter: message name -> number of messages
        self.frames = frames      # frames carrying USB/IP (in the re-segmented copy)
        self.problems = problems  # list of strings; empty when the capture is clean
        self.caveats = caveats    # frames with a non-zero-status RET_SUBMIT (docs/protocol.md §9)
        self.connections = connections  # TCP connections to the port
        self.tolerated = []       # frames of pipelined control replies (see Capture.analyze)

    def __str__(self):
        msgs = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "no USB/IP"
        s = f"{self.connections} connections, {self.frames} USB/IP frames: {msgs}"
        if self.caveats:
            s += (f"; {len(self.caveats)} RET_SUBMITs with non-zero status (each alone in its "
                  "segment in the checked copy)")
        if self.tolerated:
            s += (f"; {len(self.tolerated)} pipelined control replies mis-paired by Wireshark's "
                  "USB dissector (framing checked)")
        return s


class Capture:
    def __init__(self, port, path, iface="lo", buffer_mb=DEFAULT_BUFFER_MB):
        self.port = int(port)
        self.path = Path(path)
        self.iface = iface
        self.buffer_mb = int(buffer_mb)
        self.proc = None
        self.probe = None
        self.log = self.path.with_suffix(".tshark.log")
        self.segmented = self.path.with_name(self.path.stem + "-1pdu.pcap")

    def start(self, timeout=60):
        """Starts tshark and returns once it is capturing: a UDP probe to a loopback port that
        nothing listens on must have reached the file (the probes are not USB/IP and are ignored
        by the analysis). timeout is only a safety net for a tshark that never starts."""
        if not shutil.which("tshark"):
            raise CaptureUnavailable("tshark not found (apt-get install tshark)")
        self.probe = _free_udp_port()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["tshark", "-i", self.iface, "-q", "-B", str(self.buffer_mb),
                 "-w", str(self.path), "-f", f"tcp port {self.port} or udp port {self.probe}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        if not self._probe_until(lambda: self._size() > 0, b"usbwire capture probe", timeout,
                                 base_first=True):
            self.stop(flush=False)
            raise CaptureUnavailable(f"tshark did not start capturing in {timeout}s")

    def _size(self):
        return self.path.stat().st_size if self.path.exists() else 0

    def _probe_until(self, ready, payload, timeout, base_first=False):
        """Sends payload to the probe port until it is in the file (or tshark exits: raises,
        or timeout: returns False). With base_first, waits for ready() (the file header)
        before the first probe."""
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while True:
                if self.proc.poll() is not None:
                    msg = self.log.read_text(errors="replace").strip()
                    self.proc = None
                    raise CaptureUnavailable(f"tshark exited: {msg}")
                if not base_first or ready():
                    base_first = False
                    if self._tail_has(payload):
                        return True
                    s.sendto(payload, ("127.0.0.1", self.probe))
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)

    def _tail_has(self, payload, span=1 << 16):
        """Whether payload is in the last span bytes of the file (the probe is the last packet
        sent, and loopback packets reach the capture in the order they were sent)."""
        size = self._size()
        if not size:
            return False
        with open(self.path, "rb") as f:
            f.seek(max(0, size - span))
            return payload in f.read()

    def stop(self, flush=True, timeout=120):
        """Stops tshark (SIGINT, so the file is complete). Safe to call twice. With flush, first
        waits until a marker packet sent after all the traffic is in the file, so every packet
        before it is written too: a condition, not a pause. timeout is a safety net only."""
        if self.proc is None:
            return
        if flush:
            marker = f"usbwire capture end {os.getpid()} {time.monotonic_ns()}".encode()
            try:
                self._probe_until(None, marker, timeout)
            except CaptureUnavailable:
                return
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def dropped(self):
        """Packets tshark reported dropped (0 while it runs)."""
        if not self.log.exists():
            return 0
        return sum(int(n) for n in re.findall(r"(\d+) packets? dropped",
                                              self.log.read_text(errors="replace")))

    def _tshark(self, path, *args):
        r = subprocess.run(["tshark", "-r", str(path), "-d", f"tcp.port=={self.port},usbip",
                            *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise CaptureError(f"tshark -r {path} failed: {r.stderr.strip()}")
        return r.stdout

    def analyze(self):
        """Runs the three checks (module doc). Returns a Summary (problems listed, nothing
        raised); its counts are those of the framing check."""
        if self.proc is not None:
            self.stop()
        problems = []
        if self.dropped():
            problems.append(f"tshark dropped {self.dropped()} packets (capture buffer "
                            f"-B {self.buffer_mb} MiB too small, or the test bed too slow)")
        # 1. framing, and the re-segmented copy
        try:
            framing, nconn, ambiguous = resegment(self.path, self.segmented, self.port)
        except FramingError as e:
            problems.append(f"USB/IP framing of the captured TCP streams: {e}")
            return Summary(Counter(), 0, problems, [])
        # 2. tshark on the copy
        seg = self.segmented
        # Every malformed or error frame fails, except a control reply that the copy could not
        # place before a later control request (usbipframe._copy_order: Wireshark's USB
        # dissector then decodes it as the reply to that request); the framing check has
        # verified those.
        flt = (f"_ws.malformed || _ws.expert.severity >= {EXPERT_ERROR} || "
               "usbip.unsupported_version")
        # Frame numbers only: a summary line's Info column can hold payload bytes, newlines
        # included (a disk's random data), which would split it.
        bad = [int(x) for x in self._tshark(seg, "-Y", f"tcp && ({flt})", "-T", "fields",
                                            "-e", "frame.number").split() if x.isdigit()]
        detail = {}
        if bad:
            for line in self._tshark(seg, "-Y", flt, "-T", "fields", "-e", "frame.number",
                                     "-e", "_ws.expert.message").splitlines():
                fno, _, msg = line.partition("\t")
                if fno.isdigit():
                    detail[int(fno)] = msg.encode("unicode_escape", "replace").decode()
        tolerated = []
        for fno in bad:
            if fno in ambiguous:
                tolerated.append(fno)
            else:
                problems.append(f"malformed/error: frame {fno}  [{detail.get(fno, '')}]")
        out = self._tshark(seg, "-Y", "usbip", "-T", "fields", "-E", "occurrence=a",
                           "-E", "aggregator=,", "-E", "separator=|",
                           "-e", "frame.number", "-e", "usbip.operation", "-e", "usbip.urb")
        counts, frames = Counter(), 0
        for line in out.splitlines():
            fields = line.split("|")
            if len(fields) != 3:
                continue
            frames += 1
            fno, ops, urbs = fields
            if not ops and not urbs:
                problems.append(f"frame {fno}: USB/IP frame with neither operation nor command")
            for v in filter(None, ops.split(",")):
                name = OPS.get(int(v, 0))
                if name is None:
                    problems.append(f"frame {fno}: unknown USB/IP operation {v}")
                    name = f"OP_UNKNOWN_{v}"
                counts[name] += 1
            for v in filter(None, urbs.split(",")):
                name = URBS.get(int(v, 0))
                if name is None:
                    problems.append(f"frame {fno}: unknown USB/IP URB command {v}")
                    name = f"URB_UNKNOWN_{v}"
                counts[name] += 1
        cav = self._tshark(seg, "-Y", "usbip.urb == 3 && usbip.status != 0", "-T", "fields",
                           "-e", "frame.number")
        caveats = [int(x) for x in cav.split()]
        # 3. both agree
        for k in sorted(set(counts) | set(framing)):
            if counts.get(k, 0) != framing.get(k, 0):
                problems.append(f"tshark counts {counts.get(k, 0)} {k}, the framing check "
                                f"{framing.get(k, 0)}")
        s = Summary(framing, frames, problems, caveats, nconn)
        s.tolerated = tolerated
        return s

    def check(self, require=None):
        """analyze(), then raise CaptureError on any problem or when a required message type
        (name -> minimum count) is missing. Returns the Summary."""
        s = self.analyze()
        missing = [f"{k} (want >= {n}, saw {s.counts.get(k, 0)})"
                   for k, n in (require or {}).items() if s.counts.get(k, 0) < n]
        if s.problems or missing:
            msg = [f"capture {self.path} does not decode cleanly: {s}"]
            msg += s.problems[:40]
            if missing:
                msg.append("missing USB/IP messages: " + "; ".join(missing))
            raise CaptureError("\n".join(msg))
        return s


def available():
    return shutil.which("tshark") is not None and os.path.exists("/sys/class/net/lo")
