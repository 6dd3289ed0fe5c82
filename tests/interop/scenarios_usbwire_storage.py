# SPDX-License-Identifier: MIT
"""usbwire serve on the host, the guest's vhci-hcd and Linux's own class drivers on the other end:
emulated mass storage end to end, detach in the middle of transfers, and the demo's guest part."""

import hashlib
import os
import subprocess
import time

import gadgets
from capture import Capture
from registry import scenario
from uwserver import kernel_usbip_errors, kmsg_marker, start_server

MNT = "/tmp/uw-mnt"


@scenario("usbwire_storage_vhci")
def usbwire_storage_vhci(ctx):
    """emu:storage through guest vhci: ext2, 64 MiB of random data, re-attach, checksums, image"""
    g = ctx.guest
    img = ctx.artifacts / "disk.img"
    with open(img, "wb") as f:
        f.truncate(256 << 20)  # sparse
    srv = start_server(ctx, [f"emu:storage,file={img}"])
    cap = Capture(srv.port, ctx.artifacts / "storage.pcapng")
    cap.start()
    ctx.defer(cap.stop)
    marker = kmsg_marker(g, "storage")

    r = subprocess.run(["usbip", "--tcp-port", str(srv.port), "list", "-r", "127.0.0.1"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "99-1:" in r.stdout and "1d6b:0104" in r.stdout, \
        f"host usbip list does not show 99-1:\n{r.stdout}{r.stderr}"

    g.set_relay_target(srv.port)
    ctx.defer(gadgets.detach, g)
    dev = gadgets.attach_disk(g, "99-1")
    size = int(g.check(f"cat /sys/block/{dev[5:]}/size")) * 512
    assert size == 256 << 20, f"{dev} has {size} bytes, want 256 MiB"
    ro = g.check(f"cat /sys/block/{dev[5:]}/ro").strip()
    assert ro == "0", f"{dev} is read-only"
    ctx.log(f"{dev}: 256 MiB, writable; making a file system")

    g.check(f"mke2fs -q -F {dev}", timeout=180)
    g.check(f"mkdir -p {MNT} && mount -t ext2 {dev} {MNT}")
    ctx.defer(g.run, f"umount {MNT} 2>/dev/null")
    g.check("dd if=/dev/urandom of=/tmp/uw-rand bs=1M count=64 2>/dev/null", timeout=120)
    ctx.defer(g.run, "rm -f /tmp/uw-rand")
    want = g.check("sha256sum /tmp/uw-rand").split()[0]
    t0 = time.monotonic()
    g.check(f"cp /tmp/uw-rand {MNT}/rand && sync", timeout=600)
    t_write = time.monotonic() - t0
    g.check(f"umount {MNT}", timeout=120)
    ctx.log(f"wrote 64 MiB through the file system in {t_write:.1f} s "
            f"({64 / t_write:.1f} MiB/s incl. sync)")
    raw_guest = g.check(f"dd if={dev} bs=1M iflag=direct 2>/dev/null | sha256sum",
                        timeout=600).split()[0]
    gadgets.detach_disk(g, "99-1", dev)

    # The image on the host holds exactly what the guest saw on the device.
    raw_host = hashlib.sha256(img.read_bytes()).hexdigest()
    assert raw_host == raw_guest, f"image {raw_host} != device as the guest read it {raw_guest}"

    # Re-attach: the file system and the file are still there.
    dev = gadgets.attach_disk(g, "99-1")
    g.check(f"mount -t ext2 -o ro {dev} {MNT}")
    t0 = time.monotonic()
    got = g.check(f"sha256sum {MNT}/rand", timeout=600).split()[0]
    t_read = time.monotonic() - t0
    assert got == want, f"after re-attach the file reads {got}, want {want}"
    ctx.log(f"re-attached: the 64 MiB file matches ({64 / t_read:.1f} MiB/s read)")
    g.check(f"umount {MNT}")
    gadgets.detach_disk(g, "99-1", dev)

    # And the host can read the same file out of the image without the guest.
    if subprocess.run(["which", "debugfs"], capture_output=True).returncode == 0:
        out = ctx.artifacts / "rand.out"
        subprocess.run(["debugfs", "-R", f"dump /rand {out}", str(img)], check=True,
                       capture_output=True, timeout=60)
        host_file = hashlib.sha256(out.read_bytes()).hexdigest()
        assert host_file == want, f"the file in the host's image is {host_file}, want {want}"
        ctx.log("debugfs on the host extracts the same file from the image")

    errors = kernel_usbip_errors(g, marker)
    assert not errors, "guest kernel logged usbip errors:\n" + "\n".join(errors)
    cap.stop()
    summary = cap.check(require={"OP_REQ_DEVLIST": 1, "OP_REQ_IMPORT": 2, "OP_REP_IMPORT": 2,
                                 "CMD_SUBMIT": 1000, "RET_SUBMIT": 1000})
    ctx.log(f"capture: {summary}")
    log = srv.log()
    assert log.count("imported 99-1") == 2 and log.count("released 99-1") == 2, \
        f"server log does not show two imports and releases:\n{srv.tail()}"


@scenario("usbwire_detach_mid_transfer")
def usbwire_detach_mid_transfer(ctx):
    """detach in the middle of large transfers, many times: server keeps serving, no errors"""
    g = ctx.guest
    n = int(os.environ.get("USBWIRE_STRESS_ITERATIONS", "100"))
    img = ctx.artifacts / "stress.img"
    data = os.urandom(32 << 20)
    img.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    srv = start_server(ctx, [f"emu:storage,file={img},ro"])
    g.set_relay_target(srv.port)
    ctx.defer(gadgets.detach, g)
    marker = kmsg_marker(g, "stress")
    t0 = time.monotonic()
    for i in range(n):
        dev = gadgets.attach_disk(g, "99-1")
        # A large direct read in the background; detach while it runs.
        g.spawn(f"exec dd if={dev} of=/dev/null bs=1M iflag=direct", "/tmp/uw-dd.log")
        g.run("sleep 0.3")
        gadgets.detach_disk(g, "99-1", dev)
        g.run("killall dd 2>/dev/null; true")
        assert srv.alive(), f"server died in iteration {i}:\n{srv.tail()}"
        if (i + 1) % 10 == 0:
            ctx.log(f"{i + 1}/{n} detaches mid-transfer ({time.monotonic() - t0:.0f} s)")
    # Still serving: a fresh import reads the whole image correctly.
    dev = gadgets.attach_disk(g, "99-1")
    got = g.check(f"dd if={dev} bs=1M iflag=direct 2>/dev/null | sha256sum",
                  timeout=300).split()[0]
    assert got == want, f"after {n} interrupted sessions the disk reads {got}, want {want}"
    gadgets.detach_disk(g, "99-1", dev)
    errors = kernel_usbip_errors(g, marker)
    assert not errors, "guest kernel logged usbip errors:\n" + "\n".join(errors[:20])
    log = srv.log()
    assert log.count("imported 99-1") == n + 1, \
        f"server log shows {log.count('imported 99-1')} imports, want {n + 1}"
    ctx.log(f"{n} detaches mid-transfer, then a full correct read: "
            f"{time.monotonic() - t0:.0f} s")


@scenario("demo_vhci_uses_devices", manual=True)
def demo_vhci_uses_devices(ctx):
    """make demo: the guest attaches the demo server's storage and serial devices"""
    port = os.environ.get("USBWIRE_DEMO_PORT")
    if not port:
        ctx.skip("only for make demo (USBWIRE_DEMO_PORT names the demo server's port)")
    g = ctx.guest
    g.set_relay_target(int(port))
    ctx.defer(gadgets.detach, g)
    print("# guest: usbip attach -r <host> -b 99-1 (emulated storage)", flush=True)
    dev = gadgets.attach_disk(g, "99-1")
    print(f"# guest: {dev} appeared; making an ext2 file system and writing a file", flush=True)
    g.check(f"mke2fs -q -F {dev}", timeout=180)
    g.check(f"mkdir -p {MNT} && mount -t ext2 {dev} {MNT}")
    g.check(f"echo 'hello from a Linux guest through usbwire' > {MNT}/hello.txt && sync")
    print("# guest: " + g.check(f"ls -l {MNT}/hello.txt").strip(), flush=True)
    print("# guest: " + g.check(f"cat {MNT}/hello.txt").strip(), flush=True)
    print("# guest: " + g.check(f"df -h {MNT} | tail -1").strip(), flush=True)
    g.check(f"umount {MNT}")
    gadgets.detach_disk(g, "99-1", dev)
    print("# guest: detached 99-1; attaching 99-3 (CDC-ACM serial, loopback)", flush=True)
    gadgets.attach(g, "99-3")
    g.wait_for("[ -c /dev/ttyACM0 ]", timeout=60, what="/dev/ttyACM0")
    out = g.check("stty -F /dev/ttyACM0 raw -echo && "
                  "(timeout 3 head -c 24 /dev/ttyACM0 > /tmp/uw-echo &) && sleep 0.3 && "
                  "printf 'echo through usbwire ok\\n' > /dev/ttyACM0 && sleep 1 && "
                  "cat /tmp/uw-echo", timeout=30)
    print(f"# guest: wrote a line to /dev/ttyACM0, read back: {out.strip()!r}", flush=True)
    assert "echo through usbwire ok" in out, f"serial echo came back as {out!r}"
    gadgets.detach(g, "99-3")
