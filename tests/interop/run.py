#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Runs the real-kernel (qemu) scenarios of usbwire.

    python3 tests/interop/run.py --build build [--tap] [--list] [SCENARIO ...]

Scenarios live in tests/interop/scenarios_*.py (see registry.py). One guest is booted for the
whole run, on first need. With --tap the output is TAP, as tests/run-tests expects. If qemu cannot
run at all (no qemu, no kernel package), every scenario is reported as skipped, with the reason.
Files of the last run (serial log, captures, ...) are kept in BUILD/testbed/last-run/.
"""

import argparse
import importlib
import inspect
import shutil
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import guest as guestmod  # noqa: E402
from capture import CaptureUnavailable  # noqa: E402
from registry import SCENARIOS, Context, Skip  # noqa: E402


def load_scenarios():
    registered = set()
    for f in sorted(HERE.glob("scenarios_*.py")):
        mod = importlib.import_module(f.stem)
        registered |= {getattr(fn, "__name__", "") for fn in SCENARIOS.values()}
        # A function that takes just the scenario context but is not registered has lost its
        # @scenario line (it once did, in a refactoring): it would silently never run.
        for name, obj in vars(mod).items():
            if (inspect.isfunction(obj) and obj.__module__ == mod.__name__ and
                    list(inspect.signature(obj).parameters) == ["ctx"] and
                    name not in registered):
                raise SystemExit(f"{f.name}: {name}(ctx) looks like a scenario but has no "
                                 "@scenario(...) line")


class Testbed:
    """Builds the image and boots the guest lazily; reboots it if a scenario killed it."""

    def __init__(self, build, workdir):
        self.build = build
        self.workdir = workdir
        self.unavailable = None
        self._guest = None
        self._image = None
        self._boot_error = None

    def image(self):
        if self.unavailable:
            raise Skip(self.unavailable)
        if self._image is None:
            try:
                self._image = guestmod.build_image(self.build)
            except guestmod.TestbedUnavailable as e:
                self.unavailable = f"qemu test bed unavailable: {e}"
                loud(self.unavailable)
                raise Skip(self.unavailable)
        return self._image

    def guest(self):
        if self._guest is None:
            image = self.image()
            if self._boot_error is not None:
                raise guestmod.GuestError(f"guest did not boot earlier: {self._boot_error}")
            relay = guestmod.find_program(self.build, guestmod.RELAY_NAME)
            g = guestmod.Guest(image, self.workdir / "guest", relay)
            guestmod.stop_on_signals(g)
            try:
                g.start()
            except guestmod.GuestError as e:
                self._boot_error = str(e).splitlines()[0]
                raise
            self._guest = g
        return self._guest

    def after_scenario(self):
        if self._guest is not None and not self._guest.alive():
            print("# guest no longer answers: stopping it; the next scenario boots a new one",
                  flush=True)
            self._guest.stop(timeout=5)
            self._guest = None

    def guest_diagnostics(self):
        g = self._guest
        if g is None:
            return ""
        try:
            rc, out, _ = g.run("dmesg | tail -n 25", timeout=10)
            return out
        except Exception as e:
            return f"(no dmesg: {e}); serial log: {g.serial_log}"

    def stop(self):
        if self._guest is not None:
            self._guest.stop()
            self._guest = None


def loud(msg):
    print("# " + "*" * 76, flush=True)
    for line in str(msg).splitlines():
        print("# " + line, flush=True)
    print("# " + "*" * 76, flush=True)
    print(msg, file=sys.stderr, flush=True)


def comment(text):
    for line in str(text).rstrip().splitlines():
        print("#   " + line, flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="meson build directory (default: build)")
    ap.add_argument("--tap", action="store_true", help="print TAP (with a plan line)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("scenarios", nargs="*", metavar="SCENARIO")
    args = ap.parse_args()

    load_scenarios()
    if args.list:
        for name, fn in SCENARIOS.items():
            doc = (fn.__doc__ or "").strip().splitlines()
            print(f"{name:40s} {doc[0] if doc else ''}")
        return 0
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        print(f"run.py: unknown scenario(s): {' '.join(unknown)}; see --list", file=sys.stderr)
        return 2
    names = args.scenarios or [n for n, f in SCENARIOS.items() if not f.manual]

    build = Path(args.build).resolve()
    workdir = build / "testbed" / "last-run"
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    testbed = Testbed(build, workdir)

    if args.tap:
        print(f"1..{len(names)}", flush=True)
    failed = 0
    try:
        for i, name in enumerate(names, 1):
            fn = SCENARIOS[name]
            art = workdir / name
            art.mkdir()
            ctx = Context(name, build, art, testbed)
            print(f"# --- {name}", flush=True)
            t0 = time.monotonic()
            status, detail = "ok", None
            try:
                if fn.needs_guest:
                    testbed.guest()
                fn(ctx)
            except Skip as e:
                status, detail = "skip", str(e)
            except CaptureUnavailable as e:
                status, detail = "skip", f"capture unavailable: {e}"
            except Exception as e:
                status, detail = "fail", e
                comment(traceback.format_exc())
                diag = testbed.guest_diagnostics()
                if diag:
                    print("# guest dmesg (tail):", flush=True)
                    comment(diag)
            errors = ctx.run_deferred()
            if errors and status == "ok":
                status, detail = "fail", "; ".join(errors)
            elif errors:
                comment("\n".join(errors))
            testbed.after_scenario()
            dt = time.monotonic() - t0
            if status == "ok":
                print(f"ok {i} - {name}", flush=True)
            elif status == "skip":
                print(f"ok {i} - {name} # SKIP {detail}", flush=True)
            else:
                failed += 1
                print(f"not ok {i} - {name}", flush=True)
                comment(f"{type(detail).__name__}: {detail}" if isinstance(detail, Exception)
                        else detail)
            print(f"# {name}: {status} in {dt:.1f}s (files in {art})", flush=True)
    finally:
        testbed.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
