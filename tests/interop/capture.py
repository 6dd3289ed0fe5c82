# SPDX-License-Identifier: MIT
"""Captures USB/IP traffic on the host loopback with tshark and checks that it decodes cleanly.

    cap = Capture(port, "/path/file.pcapng")
    cap.start()          # returns once tshark is really capturing
    ... traffic ...
    cap.stop()
    summary = cap.check(require={"OP_REQ_IMPORT": 1})   # raises CaptureError on problems

Wireshark's USB/IP dissector is Decode-As only, hence -d tcp.port==PORT,usbip. Caveat (protocol.md
§5): a RET_SUBMIT with non-zero status swallows the rest of its TCP segment, so PDUs after it in the
same segment are lost to the dissector. Such frames are listed as caveats in the summary; they are
not problems by themselves, but any malformed packet or error in them still fails the check.
"""

import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

OPS = {0x8005: "OP_REQ_DEVLIST", 0x0005: "OP_REP_DEVLIST",
       0x8003: "OP_REQ_IMPORT", 0x0003: "OP_REP_IMPORT"}
URBS = {1: "CMD_SUBMIT", 2: "CMD_UNLINK", 3: "RET_SUBMIT", 4: "RET_UNLINK"}
EXPERT_ERROR = 0x00800000  # _ws.expert.severity of "Error"


class CaptureError(AssertionError):
    pass


class CaptureUnavailable(Exception):
    """tshark is missing or cannot capture here."""


def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Summary:
    def __init__(self, counts, frames, problems, caveats):
        self.counts = counts      # Counter: message name -> number of PDUs
        self.frames = frames      # frames carrying USB/IP
        self.problems = problems  # list of strings; empty when the capture is clean
        self.caveats = caveats    # frames with a non-zero-status RET_SUBMIT (see module doc)

    def __str__(self):
        msgs = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "no USB/IP"
        s = f"{self.frames} USB/IP frames: {msgs}"
        if self.caveats:
            s += (f"; {len(self.caveats)} frames with a non-zero-status RET_SUBMIT "
                  f"(dissector caveat, protocol.md §5): {self.caveats[:10]}")
        return s


class Capture:
    def __init__(self, port, path, iface="lo"):
        self.port = int(port)
        self.path = Path(path)
        self.iface = iface
        self.proc = None
        self.log = self.path.with_suffix(".tshark.log")

    def start(self, timeout=20):
        """Starts tshark and returns once it is capturing: a UDP probe to a loopback port that
        nothing listens on must have reached the file (the probes are not USB/IP and are ignored
        by the analysis)."""
        if not shutil.which("tshark"):
            raise CaptureUnavailable("tshark not found (apt-get install tshark)")
        probe = _free_udp_port()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                ["tshark", "-i", self.iface, "-q", "-w", str(self.path),
                 "-f", f"tcp port {self.port} or udp port {probe}"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        base = None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while True:
                if self.proc.poll() is not None:
                    msg = self.log.read_text(errors="replace").strip()
                    self.proc = None
                    raise CaptureUnavailable(f"tshark exited: {msg}")
                size = self.path.stat().st_size if self.path.exists() else 0
                if base is None and size > 0:
                    base = size  # the pcapng header is written: capturing has begun
                elif base is not None and size > base:
                    return
                if base is not None:
                    s.sendto(b"usbwire capture probe", ("127.0.0.1", probe))
                if time.monotonic() > deadline:
                    self.stop()
                    raise CaptureUnavailable(f"tshark did not start capturing in {timeout}s")
                time.sleep(0.05)

    def stop(self):
        """Stops tshark (SIGINT, so the file is complete). Safe to call twice."""
        if self.proc is None:
            return
        # Let the last packets reach the file before tshark is told to stop.
        time.sleep(0.3)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def _tshark(self, *args):
        r = subprocess.run(["tshark", "-r", str(self.path), "-d", f"tcp.port=={self.port},usbip",
                            *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise CaptureError(f"tshark -r {self.path} failed: {r.stderr.strip()}")
        return r.stdout

    def analyze(self):
        """Decodes the capture. Returns a Summary (problems listed, nothing raised)."""
        if self.proc is not None:
            self.stop()
        problems = []
        bad = self._tshark(
            "-Y", f"tcp && (_ws.malformed || _ws.expert.severity >= {EXPERT_ERROR} || "
                  "usbip.unsupported_version)")
        for line in bad.splitlines():
            problems.append(f"malformed/error: {line.strip()}")
        if bad.strip():
            detail = self._tshark("-Y", f"_ws.malformed || _ws.expert.severity >= {EXPERT_ERROR}"
                                  " || usbip.unsupported_version",
                                  "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message")
            for line in detail.splitlines()[:20]:
                problems.append(f"  expert: {line.strip()}")
        out = self._tshark("-Y", "usbip", "-T", "fields", "-E", "occurrence=a",
                           "-E", "aggregator=,", "-E", "separator=|",
                           "-e", "frame.number", "-e", "usbip.operation", "-e", "usbip.urb")
        counts, frames = Counter(), 0
        for line in out.splitlines():
            fields = line.split("|")
            if len(fields) != 3:
                continue
            frames += 1
            fno, ops, urbs = fields
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
        cav = self._tshark("-Y", "usbip.urb == 3 && usbip.status != 0", "-T", "fields",
                           "-e", "frame.number")
        caveats = [int(x) for x in cav.split()]
        return Summary(counts, frames, problems, caveats)

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
            if s.caveats:
                msg.append("note: frames with non-zero-status RET_SUBMIT can mis-dissect the PDUs "
                           "after them in the same segment (protocol.md §5)")
            raise CaptureError("\n".join(msg))
        return s


def available():
    return shutil.which("tshark") is not None and os.path.exists("/sys/class/net/lo")
