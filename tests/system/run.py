#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""usbwire system tests: the real `usbwire serve` program on 127.0.0.1, attacked and used by a
raw USB/IP client, the stock `usbip` tool, tshark and usbwire's own client commands.

    python3 tests/system/run.py --build build-test [--tap] [TEST ...]

TESTs: hostile, tools, tshark, cli, shutdown, persistence, limits, transports, reverse
(default: all).
`hostile:WORDS` runs
only the hostile rows whose name contains WORDS. Output is TAP; the exit status is non-zero when a
point failed. See tests/system/README.md.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import hostile  # noqa: E402
import limits  # noqa: E402
import others  # noqa: E402
import transports  # noqa: E402
from tap import Tap  # noqa: E402

TESTS = {
    "hostile": hostile.run,
    "tools": others.test_tools,
    "tshark": others.test_tshark,
    "cli": others.test_cli,
    "shutdown": others.test_shutdown,
    "persistence": others.test_persistence,
    "limits": limits.test_limits,
    "transports": transports.test_transports,
    "reverse": transports.test_reverse,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build-test", help="build directory (default build-test)")
    ap.add_argument("--tap", action="store_true", help="TAP output (the only format)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("tests", nargs="*", help="tests to run (default: all)")
    a = ap.parse_args()
    os.chdir(HERE.parent.parent)
    build = Path(a.build).resolve()
    tap = Tap()
    if not (build / "src/cli/usbwire").is_file():
        tap.ok(False, f"usbwire program at {build}/src/cli/usbwire",
               f"build it first: ninja -C {a.build}")
        tap.finish()
        return 1
    selected = a.tests or list(TESTS)
    work = Path(tempfile.mkdtemp(prefix="usbwire-system."))
    tap.comment(f"usbwire system tests: {build}/src/cli/usbwire, work directory {work}")
    failed_before = 0
    for spec in selected:
        name, _, arg = spec.partition(":")
        if name not in TESTS:
            tap.ok(False, f"unknown test {name!r} (known: {', '.join(TESTS)})")
            continue
        t0 = time.monotonic()
        tap.comment(f"---- {name} ----")
        try:
            if name == "hostile":
                TESTS[name](tap, build, work / name, [arg] if arg else None)
            else:
                TESTS[name](tap, build, work / name)
        except Exception as e:  # noqa: BLE001 - a test's own crash is a failure, not an abort
            import traceback
            tap.ok(False, f"{name}: test crashed", traceback.format_exc())
        tap.comment(f"{name}: {time.monotonic() - t0:.1f}s")
    ok = tap.finish()
    if ok and not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        tap.comment(f"logs kept in {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
