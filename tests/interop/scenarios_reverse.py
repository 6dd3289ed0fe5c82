# SPDX-License-Identifier: MIT
"""Reverse connections and vsock, with the real kernel's vhci-hcd.

usbwire_reverse_attach: `usbwire attach --listen` in the guest, `usbwire serve --connect` on the
host (storage and keyboard): the server dials in through the test bed's forwarded port, both
devices attach and work; the server killed and started again dials in again and the disk comes
back with no human action.

usbwire_vsock_guest: inside the guest over vsock_loopback (CID 1, so no vsock traffic leaves the
guest): `serve --listen vsock:any:PORT` and `attach -r vsock:1:PORT`; then the same devices the
reverse way, `attach --listen vsock:any:PORT` and `serve --connect vsock:1:PORT`."""

import hashlib
import os
import time

from registry import scenario
from scenarios_usbwire_client import GUEST_UW, detach_all, disk_sha, install, vhci_disk
from scenarios_usbwire_devices import (decode_frames, expected_frames, server, type_into_fifo,
                                       vhci_devices, wait_open, with_server_tails)
from uwserver import kmsg_marker, kernel_usbip_errors

LISTEN_GUEST_PORT = 3241  # forwarded from a host port by the test bed (guest.EXTRA_GUEST_PORTS)


def wait_vhci(g, vidpid, timeout=120):
    """The local busid of the vhci device with vidpid, once it has enumerated."""
    deadline = time.monotonic() + timeout
    while True:
        found = [b for b, v in vhci_devices(g).items() if v == vidpid]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no vhci device {vidpid} after {timeout} s"
        time.sleep(0.2)


def keyboard_types(ctx, g, busid, fifo):
    """The vhci keyboard's evdev node sees exactly the key frames of a line typed into fifo."""
    g.wait_for(f"for e in /sys/class/input/event*; do case $(readlink -f $e) in "
               f"*/{busid}/{busid}:1.0/*) exit 0;; esac; done; false", timeout=60,
               what=f"an evdev node for {busid}")
    ev = g.check(f"for e in /sys/class/input/event*; do case $(readlink -f $e) in "
                 f"*/{busid}/{busid}:1.0/*) echo ${{e##*/}};; esac; done").split()[0]
    dump = "/tmp/uw-rev-kbd.bin"
    pidfile = "/tmp/uw-rev-kbd.pid"
    g.spawn(f"echo $$ > {pidfile}; exec cat /dev/input/{ev} > {dump}", "/tmp/uw-rev-kbd.log")
    ctx.defer(g.run, f"[ -f {pidfile} ] && kill $(cat {pidfile}); rm -f {pidfile} {dump}; true")
    wait_open(g, f"/dev/input/{ev}")
    line = "reverse 42\n"
    want = expected_frames(line)
    type_into_fifo(fifo, line)
    deadline = time.monotonic() + 60
    while True:
        frames, _ = decode_frames(g.read_file(dump))
        if len(frames) >= len(want) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert frames[:len(want)] == want, f"typed {line!r}: {len(frames)} frames, not the keys"
    ctx.log(f"keyboard {busid} (/dev/input/{ev}): {line!r} typed, {len(want)} key frames exact")


@scenario("usbwire_reverse_attach")
@with_server_tails
def usbwire_reverse_attach(ctx):
    """attach --listen in the guest, serve --connect on the host: storage and keyboard attach and
    work; the server killed and restarted dials in again, the disk comes back by itself"""
    g = ctx.guest
    uw = install(ctx, g)
    data = os.urandom(8 << 20)
    img = ctx.artifacts / "reverse.img"
    img.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    fifo = ctx.artifacts / "reverse-kbd.fifo"
    if fifo.exists():
        fifo.unlink()
    os.mkfifo(fifo)
    ctx.defer(fifo.unlink)
    marker = kmsg_marker(g, "reverse")
    log = "/tmp/uw-listen.log"
    ctx.defer(detach_all, g)
    ctx.defer(g.run, f"kill $(pidof usbwire) 2>/dev/null; cat {log}")
    g.spawn(f"exec {uw} attach --listen :{LISTEN_GUEST_PORT}", log)
    g.wait_for(f"netstat -ltn 2>/dev/null | grep -q ':{LISTEN_GUEST_PORT} '", timeout=60,
               what="usbwire attach --listen to listen")
    dial = ["--connect", f"127.0.0.1:{g.fwd[LISTEN_GUEST_PORT]}"]
    exports = [f"emu:storage,file={img},ro", f"emu:keyboard,input={fifo}"]
    srv = server(ctx, exports, extra=dial)
    dev = vhci_disk(g, timeout=120)
    assert disk_sha(g, dev, 8) == want, "the reverse-attached disk reads wrong data"
    kbd = wait_vhci(g, "1209:0001")
    ctx.log(f"both attached by the guest's attach --listen: {dev} and keyboard {kbd}")
    keyboard_types(ctx, g, kbd, fifo)
    text = g.read_file(log).decode(errors="replace")
    assert text.count("listen: attached") == 2, f"attach --listen log:\n{text}"

    ctx.log("killing the server (SIGKILL)")
    srv.proc.kill()
    srv.proc.wait()
    srv.proc = None
    g.wait_for(f"[ ! -e {dev} ]", timeout=120, what=f"{dev} to go away after the server died")
    srv2 = server(ctx, exports, extra=dial)
    dev2 = vhci_disk(g, timeout=180)
    assert disk_sha(g, dev2, 8) == want, "after the restart the disk reads wrong data"
    wait_vhci(g, "1209:0001")
    ctx.log(f"after the restart the server dialed in again: {dev2} back, same data")
    g.check("kill -TERM $(pidof usbwire)")
    g.wait_for("! pidof usbwire >/dev/null", timeout=60, what="attach --listen to exit")
    g.wait_for(f"[ ! -e {dev2} ]", timeout=60, what=f"{dev2} to go away after SIGTERM")
    text = g.read_file(log).decode(errors="replace")
    assert "dropped" in text and "detached 2 port(s)" in text, f"attach --listen log:\n{text}"
    ctx.log("attach --listen log:\n" + text.strip())
    deadline = time.monotonic() + 60
    while srv2.log().count("released") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert srv2.log().count("released") == 2, srv2.tail()
    errors = kernel_usbip_errors(g, marker)
    assert not errors, "guest kernel logged usbip errors:\n" + "\n".join(errors)


@scenario("usbwire_vsock_guest")
def usbwire_vsock_guest(ctx):
    """vsock inside the guest (vsock_loopback, CID 1): serve --listen vsock:any + attach -r
    vsock:1; then attach --listen vsock:any + serve --connect vsock:1; ext2 round trip"""
    g = ctx.guest
    uw = install(ctx, g)
    g.check("modprobe vsock_loopback")
    ctx.defer(detach_all, g)
    ctx.defer(g.run, "kill $(pidof usbwire) 2>/dev/null; true")
    ctx.defer(g.run, "umount /mnt/vs 2>/dev/null; true")
    g.check("dd if=/dev/zero of=/tmp/uw-vs.img bs=1M count=8 2>/dev/null")
    marker = kmsg_marker(g, "vsock")

    # Forward: the server listens on vsock, attach dials it.
    g.spawn(f"exec {uw} serve --listen vsock:any:5000 --export emu:storage,file=/tmp/uw-vs.img",
            "/tmp/uw-vs-serve.log")
    g.wait_for("grep -q 'listening on vsock:any:5000' /tmp/uw-vs-serve.log", timeout=60,
               what="serve to listen on vsock")
    g.check(f"{uw} attach -r vsock:1:5000 -b 99-1", timeout=120)
    dev = vhci_disk(g)
    g.check(f"mke2fs -q -F {dev}", timeout=300)
    g.check(f"mkdir -p /mnt/vs && mount -t ext2 {dev} /mnt/vs && "
            f"cp /tmp/uw-vs-serve.log /mnt/vs/log && sync && "
            f"sha256sum /mnt/vs/log | cut -d' ' -f1 > /tmp/uw-vs.sum && umount /mnt/vs",
            timeout=300)
    port = g.check(f"{uw} port --json | grep -o '\"port\":[0-9]*' | head -1 | cut -d: -f2")
    g.check(f"{uw} detach -p {port.strip()}")
    g.wait_for(f"[ ! -e {dev} ]", timeout=60, what=f"{dev} to go away after detach")
    ctx.log("vsock: attach -r vsock:1:5000, ext2 written and unmounted, detached")
    g.check("kill -TERM $(pidof usbwire)")
    g.wait_for("! pidof usbwire >/dev/null", timeout=60, what="serve to exit")

    # Reverse over vsock: the listener is the client, the server dials it.
    g.spawn(f"exec {uw} attach --listen vsock:any:5001 -b 99-1", "/tmp/uw-vs-listen.log")
    g.wait_for("grep -q 'waiting on vsock:any:5001' /tmp/uw-vs-listen.log", timeout=60,
               what="attach --listen on vsock")
    g.spawn(f"exec {uw} serve --connect vsock:1:5001 --export emu:storage,file=/tmp/uw-vs.img",
            "/tmp/uw-vs-serve2.log")
    dev = vhci_disk(g, timeout=120)
    g.check(f"mount -t ext2 {dev} /mnt/vs && sha256sum /mnt/vs/log | cut -d' ' -f1 > /tmp/uw-vs.sum2 "
            "&& umount /mnt/vs && cmp /tmp/uw-vs.sum /tmp/uw-vs.sum2", timeout=300)
    ctx.log("vsock reverse: serve --connect vsock:1:5001 dialed attach --listen; the ext2 file "
            "written before reads back with the same checksum")
    g.check("kill -TERM $(pidof usbwire)")
    g.wait_for("! pidof usbwire >/dev/null", timeout=60, what="usbwire to exit")
    g.wait_for(f"[ ! -e {dev} ]", timeout=60, what=f"{dev} to go away")
    errors = kernel_usbip_errors(g, marker)
    assert not errors, "guest kernel logged usbip errors:\n" + "\n".join(errors)
