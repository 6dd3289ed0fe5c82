# SPDX-License-Identifier: MIT
"""Benchmarks through the guest's vhci-hcd, side by side in one run (not tests: they print
figures and fail only on errors). Manual: they run only when named:

    make check-interop SCENARIO=bench_storage_vs_kernel
"""

import time

import gadgets
from registry import scenario
from uwserver import start_server

MIB = 32


def read_rate(ctx, g, dev, rounds=3):
    """Best of a few O_DIRECT sequential reads of MIB MiB, in MiB/s."""
    best = 0.0
    for _ in range(rounds):
        t0 = time.monotonic()
        g.check(f"dd if={dev} of=/dev/null bs=1M count={MIB} iflag=direct 2>/dev/null",
                timeout=300)
        best = max(best, MIB / (time.monotonic() - t0))
    return best


def write_rate(ctx, g, dev, rounds=3):
    best = 0.0
    for _ in range(rounds):
        t0 = time.monotonic()
        g.check(f"dd if=/dev/zero of={dev} bs=1M count={MIB} oflag=direct 2>/dev/null",
                timeout=300)
        best = max(best, MIB / (time.monotonic() - t0))
    return best


@scenario("bench_storage_vs_kernel", manual=True)
def bench_storage_vs_kernel(ctx):
    """storage read/write MiB/s: usbwire emu:storage vs the kernel's usbip-host, one run"""
    g = ctx.guest
    ctx.defer(gadgets.detach, g)
    # usbwire on the host: guest vhci -> guestfwd relay -> 127.0.0.1 -> usbwire serve.
    img = ctx.artifacts / "bench.img"
    with open(img, "wb") as f:
        f.truncate(64 << 20)
    srv = start_server(ctx, [f"emu:storage,file={img}"])
    g.set_relay_target(srv.port)
    dev = gadgets.attach_disk(g, "99-1")
    uw_r, uw_w = read_rate(ctx, g, dev), write_rate(ctx, g, dev)
    gadgets.detach_disk(g, "99-1", dev)
    # The kernel: a configfs mass-storage gadget on dummy_hcd, exported by usbip-host and
    # imported back through the same relay (guest vhci -> relay -> hostfwd -> guest usbipd).
    g.check("dd if=/dev/zero of=/tmp/bench-k.img bs=1M count=64 2>/dev/null")
    ctx.defer(g.run, "rm -f /tmp/bench-k.img")
    gadget = gadgets.mass_storage(g, "/tmp/bench-k.img", name="benchk")
    ctx.defer(gadget.remove)
    gadgets.start_usbipd(g)
    ctx.defer(gadgets.stop_usbipd, g)
    gadgets.bind(g, gadget.busid)
    ctx.defer(gadgets.unbind, g, gadget.busid)
    g.set_relay_target(g.usbipd_port)
    dev = gadgets.attach_disk(g, gadget.busid)
    k_r, k_w = read_rate(ctx, g, dev), write_rate(ctx, g, dev)
    gadgets.detach_disk(g, gadget.busid, dev)
    ctx.log(f"storage through guest vhci, {MIB} MiB O_DIRECT, best of 3:")
    ctx.log(f"  read : usbwire {uw_r:6.1f} MiB/s  kernel stub {k_r:6.1f} MiB/s  "
            f"ratio {uw_r / k_r:.2f}")
    ctx.log(f"  write: usbwire {uw_w:6.1f} MiB/s  kernel stub {k_w:6.1f} MiB/s  "
            f"ratio {uw_w / k_w:.2f}")
    ctx.log("  (the kernel path also crosses the guest's usbipd side through slirp and"
            " dummy_hcd; usbwire's device is on the host)")
