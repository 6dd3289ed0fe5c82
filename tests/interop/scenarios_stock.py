# SPDX-License-Identifier: MIT
"""Scenarios with the stock Linux tools only: they prove the test bed itself works."""

import hashlib
import os
import subprocess

import gadgets
from capture import Capture
from registry import scenario

IMAGE_MIB = 8


@scenario("stock_usbip_storage_loop")
def stock_usbip_storage_loop(ctx):
    """guest usbip-host exports a gadget disk; guest vhci imports it through the host loopback"""
    g = ctx.guest

    # A disk image of known random data, copied in through the agent.
    host_img = ctx.artifacts / "disk.img"
    data = os.urandom(IMAGE_MIB << 20)
    host_img.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    guest_img = "/tmp/stock-loop.img"
    ctx.defer(g.run, f"rm -f {guest_img}")
    g.copy_in(host_img, guest_img)
    got = g.check(f"sha256sum {guest_img}").split()[0]
    assert got == want, f"copy_in corrupted the image: {got} != {want}"

    gadget = gadgets.mass_storage(g, guest_img, name="stockloop")
    ctx.defer(gadget.remove)
    ctx.log(f"mass storage gadget {gadget.vidpid} is {gadget.busid} on {gadget.udc}")

    gadgets.start_usbipd(g)
    ctx.defer(gadgets.stop_usbipd, g)
    gadgets.bind(g, gadget.busid)
    ctx.defer(gadgets.unbind, g, gadget.busid)

    # Capture everything on the host port of the guest usbipd: the host's list and the guest's
    # import (guest vhci -> guestfwd relay -> 127.0.0.1:port -> hostfwd -> guest usbipd).
    cap = Capture(g.usbipd_port, ctx.artifacts / "loop.pcapng")
    cap.start()
    ctx.defer(cap.stop)

    r = subprocess.run(["usbip", "--tcp-port", str(g.usbipd_port), "list", "-r", "127.0.0.1"],
                       capture_output=True, text=True, timeout=60)
    ctx.log("host usbip list -r:\n" + r.stdout.rstrip())
    assert r.returncode == 0, f"host usbip list failed: {r.stderr.strip()}"
    assert f"{gadget.busid}:" in r.stdout, f"busid {gadget.busid} not listed"
    assert gadget.vidpid in r.stdout, f"{gadget.vidpid} not listed"

    g.set_relay_target(g.usbipd_port)
    assert gadgets.vhci_block_devices(g) == [], "a vhci disk exists before the attach"
    gadgets.attach(g, gadget.busid)
    ctx.defer(gadgets.detach, g)
    g.wait_for("for d in /sys/block/sd*; do case $(readlink -f $d) in *vhci_hcd*) "
               "[ \"$(cat $d/size)\" -gt 0 ] && [ -b /dev/${d##*/} ] && exit 0;; esac; done; "
               "false", timeout=60, what="the imported disk's block device")
    disks = gadgets.vhci_block_devices(g)
    assert len(disks) == 1, f"expected one vhci disk, found {disks}"
    dev = f"/dev/{disks[0]}"
    size = int(g.check(f"cat /sys/block/{disks[0]}/size")) * 512
    assert size == IMAGE_MIB << 20, f"{dev} has {size} bytes, want {IMAGE_MIB} MiB"
    got = g.check(f"dd if={dev} bs=1M iflag=direct 2>/dev/null | sha256sum", timeout=120)
    got = got.split()[0]
    assert got == want, f"{dev} reads back {got}, want {want}"
    ctx.log(f"{dev} ({IMAGE_MIB} MiB) read through the loop matches the image")

    gadgets.detach(g, gadget.busid)
    g.wait_for(f"[ ! -e {dev} ]", timeout=30, what=f"{dev} to go away after detach")
    assert gadgets.imported_ports(g) == {}, "a vhci port is still imported after detach"

    cap.stop()
    summary = cap.check(require={"OP_REQ_DEVLIST": 1, "OP_REP_DEVLIST": 1,
                                 "OP_REQ_IMPORT": 1, "OP_REP_IMPORT": 1,
                                 "CMD_SUBMIT": 10, "RET_SUBMIT": 10})
    ctx.log(f"capture: {summary}")


@scenario("stock_gadget_helpers")
def stock_gadget_helpers(ctx):
    """every gadget helper enumerates on dummy_hcd and is listed by the stock usbipd"""
    g = ctx.guest
    g.check("dd if=/dev/zero of=/tmp/helpers.img bs=1M count=1 2>/dev/null")
    ctx.defer(g.run, "rm -f /tmp/helpers.img")
    gadgets.start_usbipd(g)
    ctx.defer(gadgets.stop_usbipd, g)
    # helper, keyword arguments, a driver that must bind on the dummy host side (or None)
    table = [
        (gadgets.mass_storage, {"image": "/tmp/helpers.img"}, "usb-storage"),
        (gadgets.source_sink, {}, None),
        (gadgets.loopback, {}, None),
        (gadgets.acm, {}, "cdc_acm"),
        (gadgets.serial, {}, None),
        (gadgets.hid_keyboard, {}, "usbhid"),
        (gadgets.uac1, {}, None),
        (gadgets.uac2, {}, None),
    ]
    for helper, kw, driver in table:
        gadget = helper(g, **kw)
        try:
            if gadget.vudc:
                # Exported by the vudc itself: no local device, another usbipd mode.
                gadgets.start_usbipd(g, device=True)
            else:
                gadgets.start_usbipd(g)
                dev = f"/sys/bus/usb/devices/{gadget.busid}"
                vidpid = g.check(f"echo $(cat {dev}/idVendor):$(cat {dev}/idProduct)").strip()
                assert vidpid == gadget.vidpid, f"{helper.__name__}: {vidpid} != {gadget.vidpid}"
                if driver:
                    g.wait_for(f"ls -d /sys/bus/usb/drivers/{driver}/{gadget.busid}:* "
                               ">/dev/null 2>&1", timeout=15,
                               what=f"{driver} to bind {gadget.busid}")
                gadgets.bind(g, gadget.busid)
            try:
                r = subprocess.run(["usbip", "--tcp-port", str(g.usbipd_port), "list", "-r",
                                    "127.0.0.1"], capture_output=True, text=True, timeout=60)
                assert f"{gadget.busid}:" in r.stdout and gadget.vidpid in r.stdout, \
                    f"{helper.__name__}: host usbip list does not show it:\n{r.stdout}{r.stderr}"
            finally:
                if not gadget.vudc:
                    gadgets.unbind(g, gadget.busid)
            ctx.log(f"{helper.__name__}: {gadget.busid} {gadget.vidpid} ok"
                    + (" (usbip-vudc)" if gadget.vudc else ""))
        finally:
            gadget.remove()
