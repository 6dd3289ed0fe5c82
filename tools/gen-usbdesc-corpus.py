#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of fuzz/fuzz_usbdesc.c into fuzz/corpus/usbdesc/.

Seeds are real-looking USB descriptors (device, configuration trees of several device classes,
BOS, strings) and malformed variants of them. A seed that starts with a device descriptor has
the device's configuration or BOS after it, which the fuzz target parses as a pair.
Usage: tools/gen-usbdesc-corpus.py [OUTDIR]  (existing seeds with other names are kept)
"""
import os
import struct
import sys


def desc(dtype, body):
    return bytes([2 + len(body), dtype]) + bytes(body)


def device(bcd_usb, cls, sub, proto, mps0, vid, pid, bcd_dev, nconf=1):
    return struct.pack("<BBHBBBBHHHBBBB", 18, 1, bcd_usb, cls, sub, proto, mps0, vid, pid,
                       bcd_dev, 1, 2, 3, nconf)


def config(nifaces, *descs, value=1, attrs=0x80, power=50, dtype=2):
    body = b"".join(descs)
    return struct.pack("<BBHBBBBB", 9, dtype, 9 + len(body), nifaces, value, 0, attrs,
                       power) + body


def iface(num, alt, neps, cls, sub=0, proto=0):
    return bytes([9, 4, num, alt, neps, cls, sub, proto, 0])


def ep(addr, attrs, mps, interval=0, extra=b""):
    return struct.pack("<BBBBHB", 7 + len(extra), 5, addr, attrs, mps, interval) + extra


def ss_comp(burst, attrs=0, bpi=0):
    return struct.pack("<BBBBH", 6, 0x30, burst, attrs, bpi)


def ssp_iso_comp(bpi):
    return struct.pack("<BBHI", 8, 0x31, 0, bpi)


def iad(first, count, cls, sub=0, proto=0):
    return bytes([8, 11, first, count, cls, sub, proto, 0])


def string(text):
    return desc(3, text.encode("utf-16-le"))


def bos(*caps):
    body = b"".join(caps)
    return struct.pack("<BBHB", 5, 15, 5 + len(body), len(caps)) + body


def devcap(ctype, body):
    return desc(16, bytes([ctype]) + bytes(body))


def patch(data, at, value):
    b = bytearray(data)
    b[at] = value
    return bytes(b)


def set_total(data, total):
    return data[:2] + struct.pack("<H", total) + data[4:]


DEV_KB = device(0x0200, 0, 0, 0, 8, 0x046D, 0xC31C, 0x0100)
DEV_MSC = device(0x0210, 0, 0, 0, 64, 0x0781, 0x5581, 0x0100)
DEV_SS = device(0x0320, 0, 0, 0, 9, 0x045E, 0x0001, 0x1200)
DEV_AUDIO = device(0x0200, 0xEF, 2, 1, 64, 0x1234, 0x5678, 0x0001, nconf=2)

HID_DESC = bytes([9, 0x21, 0x11, 0x01, 0, 1, 0x22, 0x3F, 0])
CFG_KB = config(1, iface(0, 0, 1, 3, 1, 1), HID_DESC, ep(0x81, 3, 8, 10), attrs=0xA0)
CFG_MOUSE_KB = config(
    2,
    iface(0, 0, 1, 3, 1, 1), HID_DESC, ep(0x81, 3, 8, 10),
    iface(1, 0, 2, 3, 1, 2), HID_DESC, ep(0x82, 3, 4, 10), ep(0x02, 3, 4, 10),
)
CFG_MSC = config(1, iface(0, 0, 2, 8, 6, 0x50), ep(0x81, 2, 512), ep(0x02, 2, 512))
OSC_MSC = config(1, iface(0, 0, 2, 8, 6, 0x50), ep(0x81, 2, 64), ep(0x02, 2, 64), dtype=7)
CS_EP = bytes([8, 0x25, 1, 0, 0, 0, 0, 0])
CFG_UAC = config(
    3,
    iad(0, 3, 1, 0, 0x20),
    iface(0, 0, 0, 1, 1, 0x20), bytes([9, 0x24, 1, 0, 2, 8, 0x40, 0, 0]),
    iface(1, 0, 0, 1, 2, 0x20),
    iface(1, 1, 2, 1, 2, 0x20), bytes([6, 0x24, 2, 1, 2, 16]),
    ep(0x01, 5, 196, 1), CS_EP, ep(0x81, 0x11, 4, 4),
    iface(2, 0, 0, 1, 2, 0x20),
    iface(2, 1, 1, 1, 2, 0x20), ep(0x82, 5, 0x08C4, 1), CS_EP,
    iface(2, 2, 1, 1, 2, 0x20), ep(0x82, 5, 0x0188, 1),
)
# UAC1 with audio-class 9-byte endpoints (bRefresh, bSynchAddress).
CFG_UAC1 = config(
    2,
    iface(0, 0, 0, 1, 1, 0), bytes([9, 0x24, 1, 0, 1, 0x1E, 0, 1, 1]),
    iface(1, 0, 0, 1, 2, 0),
    iface(1, 1, 1, 1, 2, 0), bytes([7, 0x24, 1, 1, 1, 1, 0]),
    ep(0x01, 0x09, 192, 1, extra=bytes([0, 0])), bytes([7, 0x25, 1, 1, 1, 1, 0]),
)
CFG_SS = config(
    2,
    iface(0, 0, 2, 8, 6, 0x50),
    ep(0x81, 2, 1024), ss_comp(15), ep(0x02, 2, 1024), ss_comp(15),
    iface(1, 0, 0, 0xFF),
    iface(1, 1, 2, 0xFF), ep(0x83, 1, 1024, 1), ss_comp(3, 2, 12288),
    ep(0x84, 3, 64, 4), ss_comp(0, 0, 64),
    iface(1, 2, 1, 0xFF), ep(0x83, 1, 1024, 1), ss_comp(15, 0x80), ssp_iso_comp(65536),
    power=0x70,
)
# UAS: bulk streams on the SuperSpeed companions, pipe usage class descriptors.
PIPE = lambda n: bytes([4, 0x24, n, 0])  # noqa: E731
CFG_UAS = config(
    1,
    iface(0, 0, 2, 8, 6, 0x50), ep(0x81, 2, 1024), ss_comp(15), ep(0x02, 2, 1024), ss_comp(15),
    iface(0, 1, 4, 8, 6, 0x62),
    ep(0x01, 2, 1024), ss_comp(0), PIPE(1),
    ep(0x82, 2, 1024), ss_comp(15, 5), PIPE(2),
    ep(0x83, 2, 1024), ss_comp(15, 5), PIPE(3),
    ep(0x04, 2, 1024), ss_comp(15, 5), PIPE(4),
)
CFG_CDC = config(
    2,
    iad(0, 2, 2, 2, 1),
    iface(0, 0, 1, 2, 2, 1), bytes([5, 0x24, 0, 0x10, 1]), bytes([5, 0x24, 6, 0, 1]),
    ep(0x83, 3, 8, 16),
    iface(1, 0, 2, 0x0A), ep(0x81, 2, 512), ep(0x01, 2, 512),
)
CFG_EMPTY = config(0)
BOS_SS = bos(
    devcap(2, [6, 0, 0, 0]),
    devcap(3, [0, 0x0E, 0, 1, 0x0A, 0xFF, 0x07]),
    devcap(4, [0] + list(range(16))),
    devcap(0x0A, [0, 1, 0, 0, 0, 0, 0x11, 0, 0, 0x30, 0x40, 0x0A, 0, 0xB0, 0x40, 0x0A, 0]),
)
BOS_USB2 = bos(devcap(2, [2, 0, 0, 0]))
BOS_PLATFORM = bos(devcap(5, [0] + list(range(16)) + [0, 1, 2, 3]))

# At and just past the limits of uw_limits.h.
CFG_32_IFACES = config(32, *[iface(i, 0, 0, 0xFF) for i in range(32)])
CFG_33_IFACES = config(33, *[iface(i, 0, 0, 0xFF) for i in range(33)])
CFG_128_ALTS = config(1, *[iface(0, a, 0, 0xFF) for a in range(128)])
CFG_129_ALTS = config(1, *[iface(0, a, 0, 0xFF) for a in range(129)])
CFG_30_EPS = config(1, iface(0, 0, 30, 0xFF),
                    *[ep(n | d, 2, 512) for d in (0, 0x80) for n in range(1, 16)])
BOS_64_CAPS = bos(*[devcap(0x20, []) for _ in range(64)])

SEEDS = {
    "limit-32-interfaces": CFG_32_IFACES,
    "limit-33-interfaces": CFG_33_IFACES,
    "limit-128-altsettings": CFG_128_ALTS,
    "limit-129-altsettings": CFG_129_ALTS,
    "limit-30-endpoints": CFG_30_EPS,
    "limit-64-bos-caps": BOS_64_CAPS,
    "limit-65-bos-caps": patch(BOS_64_CAPS, 4, 65),
    "dev-keyboard": DEV_KB,
    "dev-superspeed": DEV_SS,
    "qualifier": bytes([10, 6, 0, 2, 0, 0, 0, 64, 1, 0]),
    "cfg-hid-keyboard": CFG_KB,
    "cfg-hid-mouse-keyboard": CFG_MOUSE_KB,
    "cfg-msc": CFG_MSC,
    "cfg-msc-other-speed": OSC_MSC,
    "cfg-uac2-iad-alts": CFG_UAC,
    "cfg-uac1-audio-endpoints": CFG_UAC1,
    "cfg-ss-companions": CFG_SS,
    "cfg-uas-streams": CFG_UAS,
    "cfg-cdc-acm-iad": CFG_CDC,
    "cfg-empty": CFG_EMPTY,
    "devcfg-keyboard": DEV_KB + CFG_KB + bytes([0]),
    "devcfg-msc": DEV_MSC + CFG_MSC + bytes([0]),
    "devcfg-uac2-alt1-alt2": DEV_AUDIO + CFG_UAC + bytes([2, 1, 0]),
    "devcfg-ss-alt1": DEV_SS + CFG_SS + bytes([1, 0]),
    "devcfg-ss-alt2": DEV_SS + CFG_SS + bytes([2, 0]),
    "devbos-ss": DEV_SS + BOS_SS,
    "bos-ss": BOS_SS,
    "bos-usb2": BOS_USB2,
    "bos-platform": BOS_PLATFORM,
    "str-langid": bytes([4, 3, 0x09, 0x04]),
    "str-langids": bytes([6, 3, 0x09, 0x04, 0x07, 0x04]),
    "str-ascii": string("USB Keyboard"),
    "str-unicode": string("Grüße \U0001F600 €"),
    "str-empty": bytes([2, 3]),
    "str-lone-high": bytes([8, 3, 0x41, 0, 0x00, 0xD8, 0x42, 0]),
    "str-lone-low": bytes([4, 3, 0x00, 0xDC]),
    "str-high-at-end": bytes([6, 3, 0x41, 0, 0x3D, 0xD8]),
    "str-nul": bytes([6, 3, 0x41, 0, 0, 0]),
    "str-longest": bytes([254, 3]) + bytes([0xAC, 0x20]) * 126,
    "sysfs-speed-10000": b"10000\n",
    "sysfs-speed-53": b"53.3-480",
    # Malformed variants.
    "bad-cfg-total-plus1": set_total(CFG_KB, len(CFG_KB) + 1),
    "bad-cfg-total-minus1": set_total(CFG_KB, len(CFG_KB) - 1),
    "bad-cfg-truncated": CFG_UAC[:70],
    "bad-cfg-bnuminterfaces": patch(CFG_UAC, 4, 2),
    "bad-cfg-ep-count": patch(CFG_MSC, 13, 1),
    "bad-cfg-ep-zero": patch(CFG_KB, 29, 0x80),
    "bad-cfg-ep-dup": patch(CFG_MSC, 27, 0x81),
    "bad-cfg-sublen-zero": patch(CFG_KB, 18, 0),
    "bad-cfg-sublen-overrun": patch(CFG_KB, 18, 0x11),
    "bad-cfg-no-alt0": patch(CFG_KB, 12, 1),
    "bad-cfg-dup-alt": patch(CFG_UAC, 47, 0),
    "bad-cfg-iad-count0": patch(CFG_UAC, 12, 0),
    "bad-cfg-comp-burst": patch(CFG_SS, 27, 16),
    "bad-cfg-comp-orphan": patch(CFG_SS, 32, 0x30),
    "bad-cfg-ssp-unannounced": patch(CFG_SS, 107, 0),
    "bad-cfg-iso-mult3": patch(CFG_UAC, 104, 0x18),
    "bad-bos-caps-count": patch(BOS_SS, 4, 3),
    "bad-bos-overrun": set_total(BOS_SS, len(BOS_SS) - 1),
    "bad-bos-ssp-sublinks": patch(BOS_SS, 46, 2),
    "bad-dev-mps0": patch(DEV_KB, 7, 7),
    "bad-str-odd": bytes([3, 3, 0x41]),
    "bad-str-overrun": bytes([10, 3, 0x41, 0]),
}


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "fuzz", "corpus",
                                                            "usbdesc")
    os.makedirs(out, exist_ok=True)
    for name, data in SEEDS.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(SEEDS)} seeds in {out}")


if __name__ == "__main__":
    main()
