# SPDX-License-Identifier: MIT
"""Scenario registry of the real-kernel test bed.

A scenario is a function taking a Context, registered by name in a file named
tests/interop/scenarios_*.py (run.py imports them all):

    from registry import scenario

    @scenario("my_scenario")
    def my_scenario(ctx):
        g = ctx.guest                 # booted on first use, shared by the run
        ctx.defer(cleanup, arg)       # runs after the scenario, even when it fails (LIFO)
        ctx.skip("reason")            # reports the scenario as skipped

A scenario passes when it returns, fails on any exception. It must leave the guest as it found it
(remove gadgets, stop daemons, detach): use ctx.defer for that.
"""

import traceback

SCENARIOS = {}


class Skip(Exception):
    pass


def scenario(name, needs_guest=True, manual=False):
    """manual=True: run only when named (demos, benchmarks), never by a plain run."""
    def deco(fn):
        if name in SCENARIOS:
            raise ValueError(f"scenario {name} registered twice")
        fn.scenario_name = name
        fn.needs_guest = needs_guest
        fn.manual = manual
        SCENARIOS[name] = fn
        return fn
    return deco


class Context:
    def __init__(self, name, build, artifacts, testbed):
        self.name = name
        self.build = build              # meson build dir (Path)
        self.artifacts = artifacts      # a directory for this scenario's files (Path)
        self._testbed = testbed
        self._deferred = []

    @property
    def guest(self):
        return self._testbed.guest()

    def program(self, relpath):
        """A program built by meson, e.g. ctx.program("src/cli/usbwire")."""
        p = self.build / relpath
        if not p.exists():
            raise FileNotFoundError(f"{p} is not built")
        return p

    def log(self, msg):
        for line in str(msg).splitlines():
            print("# " + line, flush=True)

    def skip(self, reason):
        raise Skip(reason)

    def defer(self, fn, *args, **kw):
        self._deferred.append((fn, args, kw))

    def run_deferred(self):
        """Runs the cleanups; returns a list of error strings."""
        errors = []
        while self._deferred:
            fn, args, kw = self._deferred.pop()
            try:
                fn(*args, **kw)
            except Exception as e:  # keep cleaning up
                errors.append(f"cleanup {getattr(fn, '__name__', fn)}: {e}")
                traceback.print_exc()
        return errors
