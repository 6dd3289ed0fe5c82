# SPDX-License-Identifier: MIT
"""A usbwire server on the host, for scenarios: started on a free 127.0.0.1 port, its log kept in
the scenario's artifacts, stopped with SIGTERM (which must end it cleanly, exit status 0)."""

import os
import signal
import subprocess
import time

import guest as guestmod


class ServerError(AssertionError):
    pass


class UsbwireServer:
    def __init__(self, ctx, exports, port=None, extra=()):
        self.ctx = ctx
        self.binary = ctx.program("src/cli/usbwire")
        self.exports = list(exports)
        self.port = port or guestmod.free_port()
        self.extra = list(extra)
        self.log_path = ctx.artifacts / f"usbwire-serve-{self.port}.log"
        self.proc = None

    def start(self, timeout=60):
        args = [str(self.binary), "serve", "--listen", f"127.0.0.1:{self.port}"]
        for e in self.exports:
            args += ["--export", e]
        args += self.extra
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerError(f"usbwire serve exited at start ({self.proc.returncode}):\n"
                                  + self.log())
            if "listening on" in self.log():
                return self
            time.sleep(0.05)
        raise ServerError("usbwire serve did not start listening:\n" + self.log())

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=60):
        """SIGTERM; asserts a clean exit (status 0, no sanitizer report)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise ServerError("usbwire serve did not exit within "
                                  f"{timeout}s of SIGTERM:\n{self.tail()}")
        self._log.close()
        rc = self.proc.returncode
        self.proc = None
        text = self.log()
        for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
            if bad in text:
                raise ServerError(f"usbwire serve reported {bad}:\n{self.tail(60)}")
        if rc != 0:
            raise ServerError(f"usbwire serve exited with status {rc}:\n{self.tail()}")

    def tail(self, n=25):
        return "\n".join(self.log().splitlines()[-n:])

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0


def start_server(ctx, exports, **kw):
    """Starts a server and registers its clean stop as a cleanup of the scenario."""
    srv = UsbwireServer(ctx, exports, **kw).start()
    ctx.defer(srv.stop)
    return srv


USBIP_ERRORS = ("unknown pdu", "cannot find a urb", "recv error",
                "protocol error", "invalid request", "malicious", "stub_rx", "vhci_rx")


def kernel_usbip_errors(g, since_marker):
    """usbip/vhci error lines the guest kernel logged after since_marker (a dmesg line we wrote
    to /dev/kmsg). Detach messages are normal; error ones are returned."""
    out = g.run("dmesg")[1]
    idx = out.rfind(since_marker)
    lines = out[idx:].splitlines() if idx >= 0 else out.splitlines()
    bad = []
    for line in lines:
        low = line.lower()
        if ("usbip" in low or "vhci" in low) and any(e in low for e in USBIP_ERRORS):
            bad.append(line)
    return bad


def kmsg_marker(g, name):
    marker = f"usbwire-test-{name}-{os.getpid()}-{time.monotonic_ns()}"
    g.run(f"echo {marker} > /dev/kmsg")
    return marker
