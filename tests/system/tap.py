# SPDX-License-Identifier: MIT
"""A minimal TAP producer: numbered points, '# ' comments, and a plan at the end."""

import sys
import time
import traceback


class Tap:
    def __init__(self, out=sys.stdout):
        self.out = out
        self.n = 0
        self.failed = []
        self.t0 = time.monotonic()

    def comment(self, text):
        for line in str(text).splitlines() or [""]:
            self.out.write(f"# {line}\n")
        self.out.flush()

    def ok(self, passed, name, diag=None):
        self.n += 1
        self.out.write(f"{'ok' if passed else 'not ok'} {self.n} - {name}\n")
        if not passed:
            self.failed.append(name)
        if diag and not passed:
            self.comment(diag)
        self.out.flush()
        return passed

    def run(self, name, fn, *args, **kw):
        """One TAP point from a function: passes unless it raises. AssertionError's message is
        the diagnosis; other exceptions get a traceback."""
        try:
            fn(*args, **kw)
        except AssertionError as e:
            return self.ok(False, name, str(e) or repr(e))
        except Exception:
            return self.ok(False, name, traceback.format_exc())
        return self.ok(True, name)

    def bug(self, text):
        """A finding about usbwire, in the form the lead greps for."""
        for i, line in enumerate(str(text).splitlines()):
            self.out.write(f"# {'BUG: ' if i == 0 else '     '}{line}\n")
        self.out.flush()

    def skip(self, name, reason):
        self.n += 1
        self.out.write(f"ok {self.n} - {name} # SKIP {reason}\n")
        self.out.flush()

    def finish(self):
        self.out.write(f"1..{self.n}\n")
        self.comment(f"{self.n - len(self.failed)} of {self.n} passed in "
                     f"{time.monotonic() - self.t0:.1f}s")
        if self.failed:
            self.comment("failed: " + "; ".join(self.failed))
        self.out.flush()
        return not self.failed
