# SPDX-License-Identifier: MIT
"""usbwire as a client: `usbwire attach/port/detach` in the guest against `usbwire serve` on the
host and against the guest's own kernel usbipd; `attach --persist` across a server restart; the
userspace client (`usbwire info`, `usbwire bench`) against the kernel's usbip-host and against
usbwire serve emu:sink."""

import hashlib
import json
import os
import subprocess
import time

import gadgets
from registry import scenario
from uwserver import ServerError, UsbwireServer, kernel_usbip_errors, kmsg_marker, start_server

GUEST_UW = "/usr/local/bin/usbwire"
NO_DISK = ("for d in /sys/block/sd*; do case $(readlink -f $d) in *vhci_hcd*) exit 1;; esac; "
           "done; true")


def install(ctx, g):
    g.install(ctx.program("src/cli/usbwire"))
    return GUEST_UW


def vhci_disk(g, timeout=90):
    g.wait_for(gadgets.DISK_WAIT, timeout=timeout, what="a vhci block device")
    disks = gadgets.vhci_block_devices(g)
    assert len(disks) == 1, f"expected one vhci disk, found {disks}"
    return f"/dev/{disks[0]}"


def disk_sha(g, dev, mib):
    return g.check(f"dd if={dev} bs=1M count={mib} iflag=direct 2>/dev/null | sha256sum",
                   timeout=300).split()[0]


def uw_port_json(g):
    return json.loads(g.check(f"{GUEST_UW} port --json"))


def check_ports_agree(ctx, g, port, host, busid):
    """`usbip port` and `usbwire port --json` show the same port with the same remote."""
    stock = gadgets.imported_ports(g)
    assert stock.get(port) == busid, f"usbip port shows {stock}, want port {port} -> {busid}"
    out = g.check("usbip port")
    assert f"usbip://{host}:" in out, f"usbip port does not name host {host}:\n{out}"
    mine = {p["port"]: p for p in uw_port_json(g)["ports"]}
    assert port in mine, f"usbwire port --json lacks port {port}: {mine}"
    rem = mine[port]["remote"]
    assert rem and rem["busid"] == busid and rem["host"] == host, \
        f"usbwire port --json: port {port} remote {rem}, want {host} {busid}"
    assert set(mine) == set(stock), f"ports differ: usbwire {sorted(mine)}, usbip {sorted(stock)}"
    ctx.log(f"usbip port and usbwire port --json agree: port {port} -> {host} {busid}")


def detach_all(g):
    for p in uw_port_json(g)["ports"]:
        g.run(f"{GUEST_UW} detach -p {p['port']}")


def attach_json(g, args):
    rc, out, err = g.run(f"{GUEST_UW} attach {args} --json", timeout=60)
    assert rc == 0, f"usbwire attach {args} failed (rc {rc}): {out}{err}"
    return json.loads(out)


def expect_fail(g, cmd, words, env=""):
    rc, out, err = g.run(f"{env}{GUEST_UW} {cmd}", timeout=60)
    assert rc == 1, f"usbwire {cmd}: rc {rc}, want 1: {out}{err}"
    for w in words:
        assert w in err, f"usbwire {cmd}: error does not say {w!r}: {err.strip()}"
    return err.strip()


@scenario("usbwire_client_attach_serve")
def usbwire_client_attach_serve(ctx):
    """guest usbwire attach/port/detach against usbwire serve on the host; the errors"""
    g = ctx.guest
    uw = install(ctx, g)
    data = os.urandom(16 << 20)
    img = ctx.artifacts / "disk.img"
    img.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    srv = start_server(ctx, [f"emu:storage,file={img},ro"])
    g.set_relay_target(srv.port)
    ctx.defer(detach_all, g)
    ctx.defer(gadgets.detach, g)
    marker = kmsg_marker(g, "client-serve")

    # Clear errors first (nothing attached yet).
    e = expect_fail(g, "attach -r 10.0.2.100 -b 99-1",
                    ["vhci-hcd is not loaded", "modprobe vhci-hcd"],
                    env="USBWIRE_VHCI_SYSFS=/nonexistent ")
    ctx.log(f"without vhci: {e}")
    e = expect_fail(g, "attach -r 10.0.2.100 -b 42-7", ["does not export busid 42-7"])
    ctx.log(f"unknown busid: {e}")
    e = expect_fail(g, "detach -p 3", ["port 3 is not in use"])
    ctx.log(f"free port: {e}")

    # A host name (from the guest's /etc/hosts) and an explicit port.
    a = attach_json(g, "-r usbwire-host:3240 -b 99-1")
    port = a["port"]
    assert a["busid"] == "99-1" and a["hub"] == "hs" and a["speed"] == 3, a
    ctx.log(f"attached 99-1 on port {port}: {a}")
    dev = vhci_disk(g)
    got = disk_sha(g, dev, 16)
    assert got == want, f"{dev} reads {got}, want {want}"
    ctx.log(f"{dev} reads back the 16 MiB image")
    rec = g.check(f"cat /var/run/vhci_hcd/port{port}")
    assert rec == "usbwire-host 3240 99-1\n", f"record file: {rec!r}"
    check_ports_agree(ctx, g, port, "usbwire-host", "99-1")

    e = expect_fail(g, "attach -r 10.0.2.100 -b 99-1", ["busy"])
    ctx.log(f"second import: {e}")

    out = g.check(f"{uw} detach -p {port} --json")
    d = json.loads(out)
    assert d["port"] == port and d["free"] and d["remote"]["busid"] == "99-1", d
    g.wait_for(f"[ ! -e {dev} ]", timeout=60, what=f"{dev} to go away after detach")
    g.check(f"[ ! -e /var/run/vhci_hcd/port{port} ]")
    deadline = time.monotonic() + 20
    while "released 99-1" not in srv.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "released 99-1" in srv.log(), f"server did not release 99-1:\n{srv.tail()}"
    ctx.log("detach: block device gone, record removed, server released 99-1")

    # The IP literal form and the text output, then usbip detach of our attachment.
    out = g.check(f"{uw} attach -r 10.0.2.100 -b 99-1")
    assert "attached 10.0.2.100/99-1" in out, out
    dev = vhci_disk(g)
    check_ports_agree(ctx, g, int(out.split()[-1]), "10.0.2.100", "99-1")
    gadgets.detach(g, "99-1")
    g.wait_for(f"[ ! -e {dev} ]", timeout=60, what=f"{dev} to go away after usbip detach")
    errors = kernel_usbip_errors(g, marker)
    assert not errors, "guest kernel logged usbip errors:\n" + "\n".join(errors)


@scenario("usbwire_client_attach_kernel")
def usbwire_client_attach_kernel(ctx):
    """guest usbwire attach/port/detach against the guest's kernel usbipd (IPv4 relay, IPv6)"""
    g = ctx.guest
    uw = install(ctx, g)
    g.check("dd if=/dev/urandom of=/tmp/uw-ms.img bs=1M count=8 2>/dev/null")
    ctx.defer(g.run, "rm -f /tmp/uw-ms.img")
    want = g.check("sha256sum /tmp/uw-ms.img").split()[0]
    ms = gadgets.mass_storage(g, "/tmp/uw-ms.img", ro=True)
    ctx.defer(ms.remove)
    gadgets.start_usbipd(g)
    ctx.defer(gadgets.stop_usbipd, g)
    gadgets.bind(g, ms.busid)
    ctx.defer(gadgets.unbind, g, ms.busid)
    ctx.defer(gadgets.detach, g)
    g.set_relay_target(g.usbipd_port)
    marker = kmsg_marker(g, "client-kernel")
    status = f"/sys/bus/usb/devices/{ms.busid}/usbip_status"

    for remote, host in (("10.0.2.100", "10.0.2.100"), ("[::1]:3240", "::1")):
        a = attach_json(g, f"-r {remote} -b {ms.busid}")
        port = a["port"]
        ctx.log(f"attached {ms.busid} from {remote} on port {port}")
        assert g.check(f"cat {status}").strip() == "2", "usbip-host does not show it in use"
        dev = vhci_disk(g)
        got = disk_sha(g, dev, 8)
        assert got == want, f"{dev} reads {got}, want {want}"
        check_ports_agree(ctx, g, port, host, ms.busid)
        e = expect_fail(g, f"attach -r {remote} -b {ms.busid}", ["busy"])
        ctx.log(f"second import: {e}")
        g.check(f"{uw} detach -p {port}")
        g.wait_for(f"[ ! -e {dev} ]", timeout=60, what=f"{dev} to go away after detach")
        g.wait_for(f"[ \"$(cat {status})\" = 1 ]", timeout=30,
                   what="usbip-host to make the device available again")
        ctx.log(f"detached port {port}: {dev} gone, usbip-host status available (1)")
    e = expect_fail(g, "attach -r 10.0.2.100 -b 9-9", ["does not export busid 9-9"])
    ctx.log(f"unknown busid at usbipd: {e}")
    errors = kernel_usbip_errors(g, marker)
    assert not errors, "guest kernel logged usbip errors:\n" + "\n".join(errors)


@scenario("usbwire_client_persist")
def usbwire_client_persist(ctx):
    """attach --persist: the host server is killed and restarted; the disk comes back by itself"""
    g = ctx.guest
    uw = install(ctx, g)
    data = os.urandom(8 << 20)
    img = ctx.artifacts / "persist.img"
    img.write_bytes(data)
    want = hashlib.sha256(data).hexdigest()
    srv = start_server(ctx, [f"emu:storage,file={img},ro"])
    port = srv.port
    g.set_relay_target(port)
    ctx.defer(gadgets.detach, g)
    ctx.defer(g.run, "kill $(pidof usbwire) 2>/dev/null; sleep 1")
    marker = kmsg_marker(g, "client-persist")
    log = "/tmp/uw-persist.log"
    g.spawn(f"exec {uw} attach --persist -r 10.0.2.100 -b 99-1", log)
    dev = vhci_disk(g)
    assert disk_sha(g, dev, 8) == want, "first attach reads wrong data"
    ctx.log(f"persist attached {dev}; killing the server (SIGKILL)")

    srv.proc.kill()
    srv.proc.wait()
    srv.proc = None
    srv._log.close()
    t_kill = time.monotonic()
    g.wait_for(f"[ ! -e {dev} ]", timeout=60, what=f"{dev} to go away after the server died")
    ctx.log(f"{dev} gone {time.monotonic() - t_kill:.1f} s after the kill")
    time.sleep(4)
    srv2 = start_server(ctx, [f"emu:storage,file={img},ro"], port=port)
    t_start = time.monotonic()
    dev2 = vhci_disk(g, timeout=120)
    t_back = time.monotonic() - t_start
    assert disk_sha(g, dev2, 8) == want, "after the restart the disk reads wrong data"
    ctx.log(f"back as {dev2} {t_back:.1f} s after the restart "
            f"({time.monotonic() - t_kill:.1f} s after the kill), same data")
    text = g.read_file(log).decode(errors="replace")
    assert "dropped" in text and "back:" in text, f"persist log lacks drop/back:\n{text}"
    assert "imported 99-1" in srv2.log(), srv2.tail()

    g.check("kill -TERM $(pidof usbwire)")
    g.wait_for("! pidof usbwire >/dev/null", timeout=20, what="usbwire attach --persist to exit")
    g.wait_for(f"[ ! -e {dev2} ]", timeout=60, what=f"{dev2} to go away after SIGTERM")
    text = g.read_file(log).decode(errors="replace")
    assert "detached port" in text, f"persist log lacks the detach at SIGTERM:\n{text}"
    ctx.log("persist log:\n" + text.strip())
    deadline = time.monotonic() + 20
    while "released 99-1" not in srv2.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "released 99-1" in srv2.log(), srv2.tail()
    errors = kernel_usbip_errors(g, marker)
    assert not errors, "guest kernel logged usbip errors:\n" + "\n".join(errors)


def host_uw(ctx, *args, timeout=120):
    r = subprocess.run([str(ctx.program("src/cli/usbwire")), *args], capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, f"usbwire {' '.join(args)}: rc {r.returncode}\n{r.stdout}{r.stderr}"
    return r.stdout


def check_info_bench(ctx, remote, busid, what):
    info = json.loads(host_uw(ctx, "info", "-r", remote, "-b", busid, "--json"))
    d = info["device"]
    assert (d["idVendor"], d["idProduct"]) == ("0525", "a4a0"), d
    cfg = info["configurations"][0]
    intf = cfg["interfaces"][0]
    assert intf["bInterfaceClass"] == 0xff, intf
    bulk = [e for e in intf["endpoints"] if e["type"] == "bulk"]
    assert len(bulk) >= 2 and {e["bEndpointAddress"] & 0x80 for e in bulk} == {0, 0x80}, intf
    text = host_uw(ctx, "info", "-r", remote, "-b", busid)
    assert "idVendor           0x0525" in text and "Transfer Type            Bulk" in text, text
    ctx.log(f"{what}: info: {d['idVendor']}:{d['idProduct']} {d.get('product', '')!r}, "
            f"interface class ff, {len(bulk)} bulk endpoints")
    b = json.loads(host_uw(ctx, "bench", "-r", remote, "-b", busid, "-s", "0.3",
                           "--sizes", "4k,64k", "--depths", "1,8", "--json"))
    res = b["results"]
    assert len(res) == 2 + 2 * 2 * 2, res
    bad = [r for r in res if r["errors"] or not r["ops"]]
    assert not bad, f"{what}: bench results with errors or nothing done: {bad}"
    summary = ", ".join(f"{r['test']} {r['size']}/{r['depth']}: {r['ops_per_s']:.0f}/s"
                        for r in res)
    ctx.log(f"{what}: bench: zero errors; {summary}")
    return text


@scenario("usbwire_client_userspace")
def usbwire_client_userspace(ctx):
    """usbwire info and bench through the kernel's usbip-host (gadget zero) and emu:sink"""
    g = ctx.guest
    ss = gadgets.source_sink(g)
    ctx.defer(ss.remove)
    gadgets.start_usbipd(g)
    ctx.defer(gadgets.stop_usbipd, g)
    gadgets.bind(g, ss.busid)
    ctx.defer(gadgets.unbind, g, ss.busid)
    marker = kmsg_marker(g, "client-userspace")
    status = f"/sys/bus/usb/devices/{ss.busid}/usbip_status"
    check_info_bench(ctx, f"127.0.0.1:{g.usbipd_port}", ss.busid, "kernel usbip-host")
    g.wait_for(f"[ \"$(cat {status})\" = 1 ]", timeout=30, what="usbip-host available again")
    # usbwire serve on 127.0.0.1 and, when the host has it, ::1 (the IPv6 literal form).
    try:
        srv = UsbwireServer(ctx, ["emu:sink"])
        srv.extra = ["--listen", f"[::1]:{srv.port}"]
        srv.start()
        v6 = True
    except ServerError as e:
        ctx.log(f"no server on [::1] ({str(e).splitlines()[0]}); IPv6 literal not tried")
        srv = UsbwireServer(ctx, ["emu:sink"]).start()
        v6 = False
    ctx.defer(srv.stop)
    check_info_bench(ctx, f"127.0.0.1:{srv.port}", "99-1", "usbwire serve emu:sink")
    if v6:
        out = host_uw(ctx, "info", "-r", f"[::1]:{srv.port}", "-b", "99-1")
        assert "idVendor           0x0525" in out, out
        ctx.log("info through [::1] works too")
    errors = kernel_usbip_errors(g, marker)
    assert not errors, "guest kernel logged usbip errors:\n" + "\n".join(errors)
