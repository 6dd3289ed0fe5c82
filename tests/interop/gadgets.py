# SPDX-License-Identifier: MIT
"""USB gadgets (configfs + dummy_hcd) and stock usbip/usbipd helpers for the qemu guest.

Every gadget is bound to one of the four dummy_hcd UDCs; the device then shows up on the
matching dummy_hcd host bus, and the helpers return its busid there (e.g. "1-1"). Gadget.remove()
takes it down again. Helpers run shell in the guest through guest.Guest.

Exception: dummy_hcd has no isochronous endpoints, so audio gadgets (UAC1/UAC2) cannot bind to it
("failed to start ...: -19"). They are bound to a usbip-vudc UDC instead: such a gadget never
appears on a local bus; the vudc exports it itself through `usbipd --device`
(start_usbipd(guest, device=True)), under the busid "usbip-vudc.N" (Gadget.vudc is True).
"""

import re

from guest import GuestError, shquote

CONFIGFS = "/sys/kernel/config/usb_gadget"
DUMMY_UDCS = 4

# HID 1.11 appendix B.1 boot keyboard: 8-byte input report (modifiers, reserved, 6 keys),
# 1-byte output report (5 LEDs + padding).
BOOT_KEYBOARD_REPORT_DESC = bytes([
    0x05, 0x01, 0x09, 0x06, 0xa1, 0x01,              # Generic Desktop, Keyboard, Application
    0x05, 0x07, 0x19, 0xe0, 0x29, 0xe7,              # Key codes: modifiers E0..E7
    0x15, 0x00, 0x25, 0x01, 0x75, 0x01, 0x95, 0x08,  # 8 x 1 bit
    0x81, 0x02,                                      # Input (Data, Var, Abs)
    0x95, 0x01, 0x75, 0x08, 0x81, 0x03,              # 1 x 8 bit reserved (Const)
    0x95, 0x05, 0x75, 0x01, 0x05, 0x08,              # 5 x 1 bit LEDs
    0x19, 0x01, 0x29, 0x05, 0x91, 0x02,              # Output (Data, Var, Abs)
    0x95, 0x01, 0x75, 0x03, 0x91, 0x03,              # 3 bit padding
    0x95, 0x06, 0x75, 0x08, 0x15, 0x00, 0x25, 0x65,  # 6 x 8 bit keys 0..101
    0x05, 0x07, 0x19, 0x00, 0x29, 0x65, 0x81, 0x00,  # Input (Data, Array)
    0xc0,                                            # End Collection
])


class Gadget:
    """A configfs gadget bound to a dummy_hcd UDC. busid: where the device is on the host side
    of that dummy_hcd; vid/pid as integers."""

    def __init__(self, guest, name, udc, busid, vid, pid, functions):
        self.guest, self.name, self.udc, self.busid = guest, name, udc, busid
        self.vid, self.pid, self.functions = vid, pid, functions
        self.path = f"{CONFIGFS}/{name}"
        self.vudc = udc.startswith("usbip-vudc.")

    @property
    def vidpid(self):
        return f"{self.vid:04x}:{self.pid:04x}"

    def remove(self):
        """Unbinds and deletes the gadget (the reverse order configfs requires)."""
        p = self.path
        funcs = " ".join(shquote(f) for f, _ in self.functions)
        self.guest.run(
            f"cd {p} 2>/dev/null || exit 0; echo '' > UDC 2>/dev/null; "
            f"for f in {funcs}; do rm -f configs/c.1/$f; done; "
            f"rmdir configs/c.1/strings/0x409 configs/c.1 2>/dev/null; "
            f"for f in {funcs}; do rmdir functions/$f; done; "
            f"rmdir strings/0x409; cd /; rmdir {p}")
        if self.vudc:
            return
        self.guest.wait_for(f"[ ! -e /sys/bus/usb/devices/{self.busid} ]", timeout=60,
                            what=f"{self.busid} to go away")


def ensure_gadget_support(guest):
    guest.check("modprobe libcomposite && modprobe dummy_hcd num=4 && "
                "{ grep -q configfs /proc/mounts || "
                "mount -t configfs configfs /sys/kernel/config; }")


def free_udc(guest, kind="dummy_udc."):
    """The first UDC named kind+N (dummy_udc.N or usbip-vudc.N) no gadget is bound to."""
    out = guest.check(f"ls /sys/class/udc; echo ---; cat {CONFIGFS}/*/UDC 2>/dev/null; true")
    udcs, used = out.split("---")
    for u in sorted(udcs.split()):
        if u.startswith(kind) and u not in used.split():
            return u
    raise GuestError(f"no free {kind}N UDC (all are bound to gadgets)")


def host_bus_for_udc(guest, udc):
    """The USB bus number of the host side paired with dummy_udc.N (dummy_hcd.N's usbX)."""
    n = udc.rsplit(".", 1)[1]
    out = guest.check(f"ls /sys/devices/platform/dummy_hcd.{n}")
    buses = [int(x[3:]) for x in out.split() if re.fullmatch(r"usb\d+", x)]
    if len(buses) != 1:
        raise GuestError(f"dummy_hcd.{n}: expected one root hub, found {buses}")
    return buses[0]


def create_gadget(guest, name, functions, vid=0x1d6b, pid=0x0104, bcd_usb=0x0200,
                  manufacturer="usbwire", product="usbwire test gadget", serial="0001",
                  modules=(), timeout=90, vudc=False):
    """Creates and binds a gadget. functions: list of (instance name like "mass_storage.0",
    {attribute path: value}); a bytes value is written raw through the agent's stdin. Returns a
    Gadget once the device has enumerated on the dummy host side. With vudc=True the gadget is
    bound to a usbip-vudc UDC instead (see the module doc)."""
    ensure_gadget_support(guest)
    if modules:
        guest.check("modprobe -a " + " ".join(modules))
    if vudc:
        guest.check("modprobe usbip-vudc num=2")
        udc = free_udc(guest, "usbip-vudc.")
        busid = udc
    else:
        udc = free_udc(guest)
        busid = f"{host_bus_for_udc(guest, udc)}-1"
    p = f"{CONFIGFS}/{name}"
    script = [
        "set -e", f"mkdir {p}", f"cd {p}",
        f"echo 0x{vid:04x} > idVendor", f"echo 0x{pid:04x} > idProduct",
        f"echo 0x{bcd_usb:04x} > bcdUSB",
        "mkdir strings/0x409",
        f"echo {shquote(manufacturer)} > strings/0x409/manufacturer",
        f"echo {shquote(product)} > strings/0x409/product",
        f"echo {shquote(serial)} > strings/0x409/serialnumber",
        "mkdir configs/c.1 configs/c.1/strings/0x409",
        "echo 'usbwire config' > configs/c.1/strings/0x409/configuration",
        "echo 120 > configs/c.1/MaxPower",
    ]
    raw = []
    for inst, attrs in functions:
        script.append(f"mkdir functions/{inst}")
        for attr, value in attrs.items():
            if isinstance(value, bytes):
                raw.append((f"{p}/functions/{inst}/{attr}", value))
            else:
                script.append(f"echo {shquote(value)} > functions/{inst}/{attr}")
    gadget = Gadget(guest, name, udc, busid, vid, pid, functions)
    try:
        guest.check("\n".join(script))
        for path, value in raw:
            guest.check(f"cat > {path}", input=value)
        links = "; ".join(f"ln -s functions/{inst} configs/c.1/" for inst, _ in functions)
        guest.check(f"cd {p} && {links} && echo {udc} > UDC")
        if vudc:
            return gadget
        guest.wait_for(f"[ \"$(cat /sys/bus/usb/devices/{busid}/idVendor 2>/dev/null)\" = "
                       f"{vid:04x} ]", timeout=timeout, what=f"{name} to enumerate as {busid}")
    except Exception:
        gadget.remove()
        raise
    return gadget


def mass_storage(guest, image, name="ms", removable=False, ro=False, **kw):
    """Mass storage on a file in the guest (create it first, e.g. in /tmp)."""
    attrs = {"lun.0/removable": int(removable), "lun.0/ro": int(ro), "lun.0/file": image}
    return create_gadget(guest, name, [("mass_storage.0", attrs)],
                         modules=("usb_f_mass_storage",), **kw)


def source_sink(guest, name="sourcesink", **kw):
    kw.setdefault("vid", 0x0525)
    kw.setdefault("pid", 0xa4a0)  # what usbtest binds to as "Gadget Zero"
    return create_gadget(guest, name, [("SourceSink.0", {})], modules=("usb_f_ss_lb",), **kw)


def loopback(guest, name="loopback", **kw):
    kw.setdefault("vid", 0x0525)
    kw.setdefault("pid", 0xa4a0)
    return create_gadget(guest, name, [("Loopback.0", {})], modules=("usb_f_ss_lb",), **kw)


def acm(guest, name="acm", **kw):
    return create_gadget(guest, name, [("acm.usb0", {})], modules=("usb_f_acm",), **kw)


def serial(guest, name="gser", **kw):
    return create_gadget(guest, name, [("gser.usb0", {})], modules=("usb_f_serial",), **kw)


def hid_keyboard(guest, name="hidkbd", **kw):
    attrs = {"protocol": 1, "subclass": 1, "report_length": 8,
             "report_desc": BOOT_KEYBOARD_REPORT_DESC}
    return create_gadget(guest, name, [("hid.usb0", attrs)], modules=("usb_f_hid",), **kw)


def uac1(guest, name="uac1", **kw):
    """USB Audio 1 gadget, on usbip-vudc (dummy_hcd has no isochronous endpoints)."""
    kw.setdefault("pid", 0x0101)
    kw.setdefault("vudc", True)
    return create_gadget(guest, name, [("uac1.usb0", {})], modules=("usb_f_uac1",), **kw)


def uac2(guest, name="uac2", **kw):
    """USB Audio 2 gadget, on usbip-vudc (dummy_hcd has no isochronous endpoints)."""
    kw.setdefault("pid", 0x0101)
    kw.setdefault("vudc", True)
    return create_gadget(guest, name, [("uac2.usb0", {})], modules=("usb_f_uac2",), **kw)


# ---------------------------------------------------------------------------------------------
# Stock usbip tools in the guest

def start_usbipd(guest, device=False, log="/tmp/usbipd.log"):
    """Starts the guest's stock usbipd (debug output to log) and waits until it listens.
    device=True: `usbipd --device`, which exports usbip-vudc gadgets instead of usbip-host
    devices (one usbipd serves one kind; a running one of the other kind is stopped)."""
    guest.check("modprobe -a usbip-host vhci-hcd")
    rc, out, _ = guest.run("for p in $(pidof usbipd); do tr '\\0' ' ' < /proc/$p/cmdline; "
                           "echo; done")
    running = [line for line in out.splitlines() if line.strip()]
    if running and any(("--device" in line) != device for line in running):
        stop_usbipd(guest)
        running = []
    if not running:
        guest.spawn("exec usbipd -d" + (" --device" if device else ""), log)
    guest.wait_for("netstat -ltn 2>/dev/null | grep -q ':3240 '", timeout=60,
                   what="usbipd to listen on 3240")


def stop_usbipd(guest):
    guest.run("killall usbipd 2>/dev/null; i=0; while pidof usbipd >/dev/null && "
              "[ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done")


def bind(guest, busid):
    guest.check(f"usbip bind -b {busid}")
    guest.wait_for(f"[ -e /sys/bus/usb/drivers/usbip-host/{busid} ]", timeout=60,
                   what=f"{busid} bound to usbip-host")


def unbind(guest, busid):
    guest.run(f"[ -e /sys/bus/usb/drivers/usbip-host/{busid} ] && usbip unbind -b {busid}")


def attach(guest, busid, host="10.0.2.100"):
    """usbip attach in the guest (through the guestfwd relay by default)."""
    rc, out, err = guest.run(f"usbip attach -r {host} -b {busid}", timeout=60)
    if rc != 0:
        raise GuestError(f"usbip attach -r {host} -b {busid} failed (rc {rc}): "
                         f"{(out + err).strip()}")


def imported_ports(guest):
    """{vhci port number: remote busid} from the guest's `usbip port`."""
    out = guest.run("usbip port")[1]
    ports, cur = {}, None
    for line in out.splitlines():
        m = re.match(r"Port (\d+):", line)
        if m:
            cur = int(m.group(1))
            ports[cur] = None
        m = re.search(r"-> usbip://[^/]+/(\S+)", line)
        if m and cur is not None:
            ports[cur] = m.group(1)
    return ports


def detach(guest, busid=None):
    """Detaches the vhci port importing busid (all ports if busid is None)."""
    for port, remote in imported_ports(guest).items():
        if busid is None or remote == busid:
            guest.check(f"usbip detach -p {port}")


# A block device whose USB device hangs off vhci_hcd has appeared, with a size.
DISK_WAIT = ("for d in /sys/block/sd*; do case $(readlink -f $d) in *vhci_hcd*) "
             "[ \"$(cat $d/size)\" -gt 0 ] && [ -b /dev/${d##*/} ] && exit 0;; esac; done; false")


def attach_disk(guest, busid):
    """Attaches busid (a mass-storage device) through the relay; returns its /dev/sdX once the
    disk is usable. Exactly one vhci disk may exist."""
    attach(guest, busid)
    guest.wait_for(DISK_WAIT, timeout=90, what=f"the vhci block device of {busid}")
    disks = vhci_block_devices(guest)
    assert len(disks) == 1, f"expected one vhci disk, found {disks}"
    return f"/dev/{disks[0]}"


def detach_disk(guest, busid, dev):
    detach(guest, busid)
    guest.wait_for(f"[ ! -e {dev} ]", timeout=60, what=f"{dev} to go away after detach")


def vhci_block_devices(guest):
    """Names of the block devices (sdX) whose USB device hangs off vhci_hcd."""
    out = guest.run("for d in /sys/block/sd*; do [ -e \"$d\" ] || continue; "
                    "case $(readlink -f $d) in *vhci_hcd*) echo ${d##*/};; esac; done")[1]
    return out.split()
