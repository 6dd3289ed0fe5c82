# SPDX-License-Identifier: MIT
"""The qemu guest of the real-kernel test bed: image build, boot, command channel.

build_image(build_dir) downloads Debian 12's stock kernel package (apt-get download, never an
image from elsewhere), unpacks it and writes an initramfs with busybox, kmod, the USB/IP and
gadget modules, the host's usbip/usbipd and the guest agent. The result is cached under
BUILD/testbed/image-HASH/, keyed by a hash of every input.

Guest(image, ...) boots it under qemu (TCG, user networking with restrict=on, loopback forwards
only) and talks to the guest agent (tests/interop/guest-agent.c) through a hostfwd.

See docs/testbed.md for the layout, the timings and the traps.
"""

import hashlib
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

READY_LINE = "USBWIRE-GUEST-READY"
AGENT_GUEST_PORT = 5555
USBIPD_GUEST_PORT = 3240
# Extra guest ports forwarded from the host, for servers the tests start in the guest later
# (a usbwire server, say). guest.fwd[port] is the host port that reaches each one.
EXTRA_GUEST_PORTS = (3241, 3242)
GUESTFWD_ADDR = "10.0.2.100"
GUESTFWD_PORT = 3240

# The qemu binary; USBWIRE_QEMU overrides it (set it to a missing path to see the skip path).
QEMU = os.environ.get("USBWIRE_QEMU", "qemu-system-x86_64")

AGENT_NAME = "usbwire-guest-agent"
RELAY_NAME = "usbwire-relay"

# Modules wanted in the guest (with their modules.dep closure); names as modprobe knows them.
# Missing ones are skipped with a note.
MODULES = [
    "virtio_pci", "virtio_net", "e1000",
    "configfs", "usbip-core", "vhci-hcd", "usbip-host", "usbip-vudc", "dummy_hcd", "udc-core",
    "libcomposite", "usb_f_mass_storage", "usb_f_ss_lb", "usb_f_acm", "usb_f_serial",
    "usb_f_obex", "usb_f_hid", "usb_f_uac1", "usb_f_uac2", "usb_f_fs", "usb_f_midi",
    "usb_f_printer", "usb_f_ecm", "usb_f_ncm", "usb_f_rndis", "gadgetfs",
    "usb-storage", "uas", "sd_mod", "usbhid", "hid-generic", "evdev", "cdc-acm", "usbserial",
    "usbtest", "usbmon", "xhci-pci", "snd-usb-audio", "sch_netem", "sch_tbf", "loop", "ext4", "vfat",
    "crc32c_generic", "vsock_loopback",
    "nls_cp437", "nls_iso8859-1", "nls_utf8", "nls_ascii",
]
# Loaded at boot (dummy_hcd first so its buses are 1..4, as docs/testbed.md says). Function
# drivers (usb_f_*) are loaded by the gadget helpers; filesystems load on demand through
# /sbin/modprobe (the kernel's request_module works: modules.alias is in the image). Device
# drivers must be loaded here: there is no udev to load them on hot-plug.
BOOT_MODULES = [
    "virtio_pci", "virtio_net", "configfs",
    "dummy_hcd num=4",
    "usbip-core usbip-host vhci-hcd libcomposite usb-storage sd_mod usbhid hid-generic "
    "evdev cdc-acm loop usbmon",
]
KMOD_APPLETS = ("modprobe", "insmod", "rmmod", "lsmod", "modinfo", "depmod")


class TestbedUnavailable(Exception):
    """qemu cannot run here at all (no binary, no kernel): scenarios are skipped, loudly."""


class GuestError(Exception):
    """The guest failed: it did not boot, the agent did not answer, a command failed."""


def progress(msg):
    print("# " + msg, flush=True)


def _sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def _sha256_file(path, h=None):
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def ldd_closure(binary):
    """The shared libraries `ldd` names for binary (absolute paths, the loader included)."""
    r = _sh(["ldd", str(binary)])
    if r.returncode != 0:
        if "not a dynamic executable" in r.stdout + r.stderr:
            return []
        raise GuestError(f"ldd {binary}: {r.stderr.strip()}")
    libs = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            target = line.split("=>", 1)[1].strip().split(" (")[0].strip()
            if target == "not found" or not target:
                raise GuestError(f"ldd {binary}: {line}")
            libs.append(target)
        elif line.startswith("/"):
            libs.append(line.split(" (")[0].strip())
    return libs


# ---------------------------------------------------------------------------------------------
# Kernel package

def _resolve_kernel_package():
    """(package, version) of the linux-image-6.1.0-*-amd64 that linux-image-amd64 depends on."""
    r = _sh(["apt-cache", "depends", "linux-image-amd64"])
    if r.returncode != 0:
        raise TestbedUnavailable(f"apt-cache depends linux-image-amd64 failed: {r.stderr.strip()}")
    pkg = None
    for line in r.stdout.splitlines():
        line = line.strip()
        if line.startswith("Depends:") and "linux-image-" in line:
            pkg = line.split(":", 1)[1].strip()
            break
    if not pkg:
        raise TestbedUnavailable("linux-image-amd64 has no linux-image-* dependency in apt-cache")
    r = _sh(["apt-cache", "show", "--no-all-versions", pkg])
    ver = None
    for line in r.stdout.splitlines():
        if line.startswith("Version:"):
            ver = line.split(":", 1)[1].strip()
            break
    if not ver:
        raise TestbedUnavailable(f"apt-cache show {pkg}: no version")
    return pkg, ver


def _download_kernel(debdir):
    debdir.mkdir(parents=True, exist_ok=True)
    try:
        pkg, ver = _resolve_kernel_package()
    except (TestbedUnavailable, FileNotFoundError) as e:
        cached = sorted(debdir.glob("linux-image-*-amd64_*.deb"))
        if cached:
            progress(f"testbed: {e}; using the cached {cached[-1].name}")
            return cached[-1]
        raise TestbedUnavailable(str(e))
    want = f"{pkg}_{ver.replace(':', '%3a')}_amd64.deb"
    deb = debdir / want
    if deb.exists():
        return deb
    progress(f"testbed: apt-get download {pkg}={ver} (about 70 MB)")
    for attempt in range(2):
        r = _sh(["apt-get", "download", f"{pkg}={ver}"], cwd=debdir)
        if r.returncode == 0 and deb.exists():
            return deb
        if attempt == 0 and os.geteuid() == 0:
            progress("testbed: download failed; apt-get update and retry")
            _sh(["apt-get", "update", "-qq"])
            pkg, ver = _resolve_kernel_package()
            want = f"{pkg}_{ver.replace(':', '%3a')}_amd64.deb"
            deb = debdir / want
    cached = sorted(debdir.glob("linux-image-*-amd64_*.deb"))
    if cached:
        progress(f"testbed: download failed ({r.stderr.strip()}); using {cached[-1].name}")
        return cached[-1]
    raise TestbedUnavailable(f"apt-get download {pkg} failed: {r.stderr.strip()}")


def _unpack_kernel(deb, kdir):
    """Unpacks the .deb once into kdir and runs depmod there (the package ships no modules.dep:
    its postinst makes it)."""
    done = kdir / ".unpacked"
    if not done.exists():
        progress(f"testbed: unpacking {deb.name}")
        if kdir.exists():
            shutil.rmtree(kdir)
        kdir.mkdir(parents=True)
        r = _sh(["dpkg-deb", "-x", str(deb), str(kdir)])
        if r.returncode != 0:
            raise TestbedUnavailable(f"dpkg-deb -x {deb.name}: {r.stderr.strip()}")
    versions = [p.name for p in (kdir / "lib/modules").iterdir() if p.is_dir()]
    if len(versions) != 1:
        raise TestbedUnavailable(f"{deb.name}: expected one lib/modules/VERSION, got {versions}")
    kver = versions[0]
    if not done.exists():
        r = _sh(["depmod", "-b", str(kdir), kver])
        if r.returncode != 0:
            raise TestbedUnavailable(f"depmod: {r.stderr.strip()}")
        done.write_text(kver + "\n")
    return kver


def _module_closure(kdir, kver, names):
    """Relative paths (under lib/modules/KVER) of the named modules and their dependencies."""
    moddir = kdir / "lib/modules" / kver
    deps = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, rest = line.split(":", 1)
        deps[mod] = rest.split()
    byname = {}
    for mod in deps:
        base = Path(mod).name.split(".ko")[0]
        byname[base.replace("-", "_")] = mod
    builtin = set()
    bfile = moddir / "modules.builtin"
    if bfile.exists():
        for line in bfile.read_text().splitlines():
            builtin.add(Path(line).name.split(".ko")[0].replace("-", "_"))
    wanted, missing = set(), []
    for name in names:
        key = name.replace("-", "_")
        if key in byname:
            stack = [byname[key]]
            while stack:
                m = stack.pop()
                if m not in wanted:
                    wanted.add(m)
                    stack.extend(deps.get(m, []))
        elif key not in builtin:
            missing.append(name)
    return sorted(wanted), missing


# ---------------------------------------------------------------------------------------------
# Initramfs

def _write_cpio(root, out):
    """cpio "newc" archive of the tree at root; owner root, mtime 0, so it is reproducible."""
    ino = [1]

    def entry(f, name, mode, data=b"", nlink=1, rdev=(0, 0)):
        nameb = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino[0], mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(nameb), 0))
        ino[0] += 1
        f.write(hdr.encode() + nameb)
        f.write(b"\0" * (-(110 + len(nameb)) % 4))
        f.write(data)
        f.write(b"\0" * (-len(data) % 4))

    with open(out, "wb") as f:
        # /dev/console must exist before devtmpfs is mounted, or init has no stdio.
        entry(f, "dev", stat.S_IFDIR | 0o755, nlink=2)
        entry(f, "dev/console", stat.S_IFCHR | 0o600, rdev=(5, 1))
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                arc = name if rel == "." else f"{rel}/{name}"
                if arc == "dev":
                    continue
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    entry(f, arc, stat.S_IFLNK | 0o777, os.readlink(full).encode())
                elif stat.S_ISDIR(st.st_mode):
                    entry(f, arc, stat.S_IFDIR | stat.S_IMODE(st.st_mode), nlink=2)
                else:
                    entry(f, arc, stat.S_IFREG | stat.S_IMODE(st.st_mode),
                          Path(full).read_bytes())
        entry(f, "TRAILER!!!", 0, nlink=1)


def _init_script(kver):
    mods = "\n".join(f"modprobe -a {m} || echo 'init: modprobe {m} failed'"
                     if " num=" not in m else f"modprobe {m} || echo 'init: modprobe {m} failed'"
                     for m in BOOT_MODULES)
    return f"""#!/bin/sh
# usbwire test bed guest init (generated by tests/interop/guest.py)
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
hostname usbwire-guest
echo "init: kernel $(uname -r), loading modules at $(cut -d" " -f1 /proc/uptime)s"
{mods}
mount -t configfs configfs /sys/kernel/config
mount -t debugfs debugfs /sys/kernel/debug
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
ip route add default via 10.0.2.2
echo "init: network up at $(cut -d" " -f1 /proc/uptime)s"
exec /usr/bin/{AGENT_NAME} -p {AGENT_GUEST_PORT} -r {READY_LINE}
"""


def _copy_file(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    shutil.copymode(src, dst)


def _build_initramfs(kdir, kver, agent, out):
    stage = out.parent / "stage"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "lib", "proc", "sys", "tmp", "run", "mnt",
              "root", "etc", "var", "usr/share/misc", "usr/share/hwdata"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    os.symlink("../run", stage / "var/run")

    # busybox and its applets; kmod provides the module tools.
    _copy_file("/bin/busybox", stage / "bin/busybox")
    kmod = shutil.which("kmod") or "/usr/bin/kmod"
    have_kmod = os.path.exists(kmod)
    r = _sh(["/bin/busybox", "--list-full"])
    for applet in r.stdout.split():
        name = Path(applet).name
        if have_kmod and name in KMOD_APPLETS:
            continue
        link = stage / applet
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink("/bin/busybox", link)
    binaries = [(Path(agent), f"usr/bin/{AGENT_NAME}")]
    for b in ("usbip", "usbipd"):
        p = shutil.which(b) or f"/usr/sbin/{b}"
        binaries.append((Path(p), f"usr/sbin/{b}"))
    if have_kmod:
        binaries.append((Path(kmod), "bin/kmod"))
        for a in KMOD_APPLETS:
            os.symlink("/bin/kmod", stage / "sbin" / a)
    for src, dst in binaries:
        _copy_file(src, stage / dst)
        for lib in ldd_closure(src):
            target = stage / lib.lstrip("/")
            if not target.exists():
                _copy_file(os.path.realpath(lib), target)

    for ids in ("/usr/share/misc/usb.ids", "/var/lib/usbutils/usb.ids",
                "/usr/share/hwdata/usb.ids"):
        if os.path.exists(ids):
            _copy_file(ids, stage / "usr/share/misc/usb.ids")
            os.symlink("../misc/usb.ids", stage / "usr/share/hwdata/usb.ids")
            break

    (stage / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (stage / "etc/group").write_text("root:x:0:\n")
    (stage / "etc/hosts").write_text("127.0.0.1 localhost\n10.0.2.100 usbwire-host\n")
    (stage / "etc/nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files\n")

    # Modules: the closure, then depmod for the subset (modules.dep, modules.alias, ...).
    src_mod = kdir / "lib/modules" / kver
    dst_mod = stage / "lib/modules" / kver
    mods, missing = _module_closure(kdir, kver, MODULES)
    if missing:
        progress(f"testbed: modules not in this kernel (skipped): {' '.join(missing)}")
    for m in mods:
        _copy_file(src_mod / m, dst_mod / m)
    for f in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (src_mod / f).exists():
            _copy_file(src_mod / f, dst_mod / f)
    r = _sh(["depmod", "-b", str(stage), kver])
    if r.returncode != 0:
        raise GuestError(f"depmod for the initramfs: {r.stderr.strip()}")

    init = stage / "init"
    init.write_text(_init_script(kver))
    init.chmod(0o755)
    _write_cpio(stage, out)
    shutil.rmtree(stage)
    return len(mods)


class Image:
    def __init__(self, kernel, initrd, kver):
        self.kernel, self.initrd, self.kver = Path(kernel), Path(initrd), kver


def find_program(build_dir, name):
    p = Path(build_dir) / "tests/interop" / name
    if not p.exists():
        raise GuestError(f"{p} not built: run `ninja -C {build_dir}` first")
    return p


def build_image(build_dir):
    """Builds (or reuses) the guest kernel + initramfs. Raises TestbedUnavailable if qemu or the
    kernel cannot be had at all."""
    build_dir = Path(build_dir).resolve()
    if not shutil.which(QEMU):
        raise TestbedUnavailable(f"{QEMU} not found (apt-get install qemu-system-x86)")
    if not os.path.exists("/bin/busybox"):
        raise TestbedUnavailable("/bin/busybox not found (apt-get install busybox-static)")
    for tool in ("apt-get", "dpkg-deb", "depmod", "ldd"):
        if not shutil.which(tool):
            raise TestbedUnavailable(f"{tool} not found")
    for b in ("usbip", "usbipd"):
        if not (shutil.which(b) or os.path.exists(f"/usr/sbin/{b}")):
            raise TestbedUnavailable(f"{b} not found (apt-get install usbip)")
    agent = find_program(build_dir, AGENT_NAME)
    base = build_dir / "testbed"
    deb = _download_kernel(base / "debs")
    kdir = base / "kernel" / deb.stem
    kver = _unpack_kernel(deb, kdir)

    h = hashlib.sha256()
    h.update(f"{deb.name}\n{MODULES}\n{BOOT_MODULES}\n".encode())
    inputs = [Path(__file__), Path(agent), Path("/bin/busybox")]
    for b in ("usbip", "usbipd", "kmod"):
        p = shutil.which(b) or f"/usr/sbin/{b}"
        if os.path.exists(p):
            inputs.append(Path(p))
            inputs.extend(Path(x) for x in ldd_closure(p))
    inputs.extend(Path(x) for x in ldd_closure(agent))
    for ids in ("/usr/share/misc/usb.ids", "/var/lib/usbutils/usb.ids"):
        if os.path.exists(ids):
            inputs.append(Path(ids))
    for p in inputs:
        h.update(str(p).encode() + b"\0")
        _sha256_file(p, h)
    key = h.hexdigest()[:16]
    out = base / f"image-{key}"
    kernel = out / "vmlinuz"
    initrd = out / "initramfs.cpio"
    if initrd.exists() and kernel.exists():
        progress(f"testbed: cached guest image {out.name} (kernel {kver})")
        return Image(kernel, initrd, kver)
    progress(f"testbed: building guest image {out.name} (kernel {kver})")
    t0 = time.monotonic()
    tmp = base / f"tmp-{key}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    shutil.copyfile(kdir / "boot" / f"vmlinuz-{kver}", tmp / "vmlinuz")
    nmods = _build_initramfs(kdir, kver, agent, tmp / "initramfs.cpio")
    for old in base.glob("image-*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp.rename(out)
    size = initrd.stat().st_size >> 20
    progress(f"testbed: image built in {time.monotonic() - t0:.1f}s ({nmods} modules, "
             f"initramfs {size} MiB)")
    return Image(kernel, initrd, kver)


# ---------------------------------------------------------------------------------------------
# The running guest

def free_port():
    """A TCP port free on 127.0.0.1 right now (qemu may still lose a race for it: start()
    retries)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Guest:
    """One qemu guest. Attributes once started: agent_port, usbipd_port (host port that reaches
    the guest's usbipd on 3240), fwd (guest port -> host port), relay_port_file."""

    def __init__(self, image, workdir, relay, extra_guest_ports=EXTRA_GUEST_PORTS):
        self.image = image
        self.workdir = Path(workdir)
        self.relay = Path(relay)
        self.extra_guest_ports = tuple(extra_guest_ports)
        self.proc = None
        self.fwd = {}
        self.serial_log = self.workdir / "serial.log"
        self.qemu_log = self.workdir / "qemu.log"
        self.relay_log = self.workdir / "relay.log"
        self.relay_port_file = self.workdir / "relay-port"
        self.usb_audio_wav = self.workdir / "usb-audio.wav"
        self._present = set()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout=180):
        self.workdir.mkdir(parents=True, exist_ok=True)
        for p in (self.relay, self.relay_port_file, self.relay_log, self.usb_audio_wav):
            if "," in str(p):
                raise GuestError(f"path {p} contains a comma: qemu's option parser would split it")
        last = None
        for _ in range(3):
            try:
                self._start_once(timeout)
                return
            except _PortRace as e:
                last = e
                progress(f"guest: {e}; retrying with other ports")
        raise GuestError(str(last))

    def _start_once(self, timeout):
        self.agent_port = free_port()
        self.fwd = {AGENT_GUEST_PORT: self.agent_port, USBIPD_GUEST_PORT: free_port()}
        for gp in self.extra_guest_ports:
            self.fwd[gp] = free_port()
        if len(set(self.fwd.values())) != len(self.fwd):
            raise _PortRace("the same free port came up twice")
        self.usbipd_port = self.fwd[USBIPD_GUEST_PORT]
        # The guest's 10.0.2.100:3240 leads to the guest's own usbipd through the host
        # loopback until a test points it elsewhere (set_relay_target).
        self.set_relay_target(self.usbipd_port)
        netdev = ["user", "id=n0", "restrict=on"]
        for gp, hp in self.fwd.items():
            netdev.append(f"hostfwd=tcp:127.0.0.1:{hp}-:{gp}")
        netdev.append(f"guestfwd=tcp:{GUESTFWD_ADDR}:{GUESTFWD_PORT}-cmd:{self.relay} "
                      f"-l {self.relay_log} -f {self.relay_port_file}")
        cmd = [
            QEMU, "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2",
            "-m", "1024", "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(self.image.kernel), "-initrd", str(self.image.initrd),
            "-append", "console=ttyS0 rdinit=/init panic=-1 quiet",
            "-serial", f"file:{self.serial_log}",
            "-netdev", ",".join(netdev), "-device", "virtio-net-pci,netdev=n0",
            # A real isochronous device on a real host controller (dummy_hcd and usbip-vudc
            # have no isochronous transfers): qemu's USB speaker on an xHCI. It appears once
            # the guest loads xhci-pci; what it plays lands in usb_audio_wav on the host.
            "-device", "qemu-xhci,id=xhci0",
            "-audiodev", f"wav,id=uwsnd,path={self.usb_audio_wav},out.mixing-engine=off",
            "-device", "usb-audio,bus=xhci0.0,audiodev=uwsnd,buffer=1920000",
        ]
        self.serial_log.write_bytes(b"")
        progress(f"guest: booting (agent on 127.0.0.1:{self.agent_port}, usbipd on "
                 f"127.0.0.1:{self.usbipd_port})")
        t0 = time.monotonic()
        with open(self.qemu_log, "wb") as qlog:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = t0 + timeout
        while True:
            if self.proc.poll() is not None:
                qerr = self.qemu_log.read_text(errors="replace")
                self.proc = None
                if "host forwarding" in qerr or "Address already in use" in qerr:
                    raise _PortRace(qerr.strip())
                raise GuestError(f"qemu exited during boot: {qerr.strip()}\n"
                                 f"serial log tail:\n{self._serial_tail()}")
            if READY_LINE in self.serial_log.read_text(errors="replace"):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise GuestError(f"guest not ready after {timeout}s; serial log tail:\n"
                                 f"{self._serial_tail()}")
            time.sleep(0.05)
        # The agent printed its line after listen(); make sure the forward works end to end.
        while True:
            try:
                rc, out, _ = self.run("uname -r", timeout=10)
                if rc == 0:
                    break
            except (OSError, GuestError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise GuestError("guest agent does not answer")
            time.sleep(0.1)
        self._present = set()
        progress(f"guest: ready in {time.monotonic() - t0:.1f}s (kernel {out.strip()})")
        for line in self.serial_log.read_text(errors="replace").splitlines():
            if "failed" in line and line.startswith("init:"):
                progress(f"guest: {line}")

    def alive(self):
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            return self.run("true", timeout=10)[0] == 0
        except (OSError, GuestError):
            return False

    def stop(self, timeout=20):
        """Powers the guest off; kills qemu if it does not go. Safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.run("sync; poweroff -f", timeout=5)
            except (OSError, GuestError):
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                progress("guest: no poweroff; killing qemu")
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        self.proc = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def _serial_tail(self, n=40):
        try:
            lines = self.serial_log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    # -- command channel ------------------------------------------------------------------
    def run_bytes(self, cmd, input=None, timeout=60):
        """Runs `sh -c cmd` in the guest. input: bytes, a binary file object or None.
        Returns (rc, stdout bytes, stderr bytes); rc 124 means the guest killed it at timeout."""
        if self.proc is None:
            raise GuestError("guest is not running")
        cmdb = cmd.encode()
        tmo_ms = int(timeout * 1000) if timeout else 0
        s = socket.create_connection(("127.0.0.1", self.agent_port), timeout=60)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(timeout + 15 if timeout else None)
        send_err = []

        def sender():
            try:
                if input is None:
                    pass
                elif isinstance(input, (bytes, bytearray, memoryview)):
                    s.sendall(input)
                else:
                    for chunk in iter(lambda: input.read(1 << 16), b""):
                        s.sendall(chunk)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                send_err.append(e)

        out, err, rc = bytearray(), bytearray(), None
        try:
            s.sendall(b"UWA1" + struct.pack(">II", tmo_ms, len(cmdb)) + cmdb)
            t = threading.Thread(target=sender, daemon=True)
            t.start()
            f = s.makefile("rb")
            while True:
                hdr = f.read(5)
                if len(hdr) < 5:
                    break
                typ, n = hdr[:1], struct.unpack(">I", hdr[1:])[0]
                data = f.read(n)
                if typ == b"o":
                    out += data
                elif typ == b"e":
                    err += data
                elif typ == b"x":
                    rc = struct.unpack(">i", data)[0]
                    break
            t.join(timeout=5)
        except socket.timeout:
            raise GuestError(f"guest command timed out on the host side: {cmd}")
        finally:
            s.close()
        if rc is None:
            raise GuestError(f"guest agent closed without an exit status: {cmd}")
        return rc, bytes(out), bytes(err)

    def run(self, cmd, input=None, timeout=60):
        """Runs `sh -c cmd` in the guest; returns (rc, stdout str, stderr str)."""
        rc, out, err = self.run_bytes(cmd, input=input, timeout=timeout)
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    def check(self, cmd, input=None, timeout=60):
        """Like run() but raises GuestError unless the exit status is 0; returns stdout."""
        rc, out, err = self.run(cmd, input=input, timeout=timeout)
        if rc != 0:
            raise GuestError(f"guest command failed (rc {rc}): {cmd}\n"
                             f"stdout: {out.strip()}\nstderr: {err.strip()}")
        return out

    def wait_for(self, condition, timeout=60, interval=0.05, what=None):
        """Polls a shell condition in the guest (one agent call; the loop runs in the guest).
        Raises GuestError at timeout."""
        n = max(1, int(timeout / interval))
        script = (f"i=0; while [ $i -lt {n} ]; do if {condition}; then exit 0; fi; "
                  f"sleep {interval}; i=$((i+1)); done; exit 1")
        rc, out, err = self.run(script, timeout=timeout + 30)
        if rc != 0:
            raise GuestError(f"timed out after {timeout}s waiting for {what or condition}")

    def spawn(self, cmd, log):
        """Starts cmd in the background in the guest, in its own session, output to log."""
        self.check(f"setsid sh -c {shquote(cmd)} >{log} 2>&1 </dev/null &")

    # -- files ----------------------------------------------------------------------------
    def copy_in(self, host_path, guest_path, mode=0o644):
        """Copies a host file into the guest (streamed through the agent's stdin)."""
        d = os.path.dirname(guest_path) or "/"
        with open(host_path, "rb") as f:
            self.check(f"mkdir -p {shquote(d)} && cat > {shquote(guest_path)} && "
                       f"chmod {mode:o} {shquote(guest_path)}", input=f, timeout=300)

    def write_file(self, guest_path, data, mode=0o644):
        if isinstance(data, str):
            data = data.encode()
        self.check(f"cat > {shquote(guest_path)} && chmod {mode:o} {shquote(guest_path)}",
                   input=data)

    def read_file(self, guest_path):
        rc, out, err = self.run_bytes(f"cat {shquote(guest_path)}")
        if rc != 0:
            raise GuestError(f"cat {guest_path}: {err.decode(errors='replace').strip()}")
        return out

    def install(self, host_path, guest_path=None, mode=0o755):
        """Copies a host binary into the guest with the shared libraries ldd names for it (those
        not already there). Returns the guest path (default /usr/local/bin/NAME)."""
        host_path = Path(host_path)
        guest_path = guest_path or f"/usr/local/bin/{host_path.name}"
        libs = [lib for lib in ldd_closure(host_path) if lib not in self._present]
        if libs:
            rc, out, _ = self.run("for f in " + " ".join(shquote(x) for x in libs) +
                                  "; do [ -e \"$f\" ] || echo \"$f\"; done")
            absent = out.split()
            for lib in libs:
                if lib in absent:
                    self.copy_in(os.path.realpath(lib), lib, 0o755)
                self._present.add(lib)
        self.copy_in(host_path, guest_path, mode)
        return guest_path

    # -- network --------------------------------------------------------------------------
    def set_relay_target(self, port):
        """Points the guest's 10.0.2.100:3240 at 127.0.0.1:port on the host (for connections
        made from now on)."""
        tmp = self.relay_port_file.with_suffix(".tmp")
        tmp.write_text(f"{int(port)}\n")
        os.replace(tmp, self.relay_port_file)


class _PortRace(Exception):
    pass


def shquote(s):
    s = str(s)
    if s and all(c.isalnum() or c in "@%+=:,./-_" for c in s):
        return s
    return "'" + s.replace("'", "'\"'\"'") + "'"


def stop_on_signals(guest):
    """SIGTERM/SIGINT stop the guest before the process dies: nothing is left running."""
    def handler(signum, frame):
        guest.stop(timeout=5)
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
