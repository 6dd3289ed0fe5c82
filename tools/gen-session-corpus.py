#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the seed corpus of fuzz/fuzz_session.c into fuzz/corpus/session/.

Each seed is a mode byte, a configuration byte and a client's byte stream (see the header of
fuzz/fuzz_session.c): imports, control requests, bulk, interrupt and isochronous URBs to the
emulated sink (99-1) and serial port (99-2) and to the scripted device (99-3), unlinks of URBs in
flight and of answered ones, a device list, refused imports, byte-by-byte delivery, budgets that
pause the session, a second client, each way a session ends, and storage scripts for
emu:storage (99-4; see "Storage scripts" in fuzz/fuzz_session.c).
Usage: tools/gen-session-corpus.py [OUTDIR]  (existing seeds with other names are kept)
"""
import os
import struct
import sys

CMD_SUBMIT, CMD_UNLINK = 1, 2
OUT, IN = 0, 1


def mode(chunk=0, prelude=0, lazy=False, teardown=0):
    return bytes([chunk | prelude << 3 | (0x20 if lazy else 0) | teardown << 6])


def config(urbs=3, mem=3, pattern=False, small=False, second=0):
    return bytes([urbs | mem << 2 | (0x10 if pattern else 0) | (0x20 if small else 0) |
                  second << 6])


def devid(n):
    return 99 << 16 | n


def op_devlist():
    return struct.pack(">HHI", 0x0111, 0x8005, 0)


def op_import(busid):
    return struct.pack(">HHI", 0x0111, 0x8003, 0) + busid.encode().ljust(32, b"\0")


def setup(bm, req, value=0, index=0, length=0):
    return struct.pack("<BBHHH", bm, req, value, index, length)


def submit(seq, dev, ep, direction, length, data=b"", np=0, iso=(), interval=0, flags=0,
           start_frame=0, setup_pkt=bytes(8)):
    hdr = struct.pack(">IIIIIIiiii", CMD_SUBMIT, seq, devid(dev), direction, ep, flags, length,
                      start_frame, np, interval) + setup_pkt
    return hdr + data + b"".join(struct.pack(">IIIi", off, ln, 0, 0) for off, ln in iso)


def control(seq, dev, bm, req, value=0, index=0, length=0, data=b"", interval=0):
    direction = IN if bm & 0x80 else OUT
    return submit(seq, dev, 0, direction, length, data if direction == OUT else b"",
                  interval=interval, setup_pkt=setup(bm, req, value, index, length))


def unlink(seq, dev, target):
    return struct.pack(">IIIIII", CMD_UNLINK, seq, devid(dev), 0, 0, target) + bytes(24)


def set_config(seq, dev, value=1):
    return control(seq, dev, 0x00, 9, value)


def script(when=0, cancel=0, status=0, amount=0, ticks=0, extra=0, unplug=False):
    """The `interval` word that scripts a URB to 99-3."""
    return (when | cancel << 2 | status << 4 | ticks << 8 | amount << 12 | (1 << 14 if unplug
            else 0) | extra << 16)


def storage_script(limit, steps):
    """A storage script: its magic, the limit byte, the steps (bytes)."""
    return bytes([0xb0, 0x75, limit]) + bytes(steps)


def seeds():
    s = {}
    d3 = op_import("99-3")
    # Sink: descriptors, then configured, bulk both ways, a bad OUT that halts, the halt cleared.
    s["sink-descriptors"] = mode(prelude=1) + config() + (
        control(1, 1, 0x80, 6, 0x0100, 0, 18) + control(2, 1, 0x80, 6, 0x0200, 0, 9) +
        control(3, 1, 0x80, 6, 0x0200, 0, 255) + control(4, 1, 0x80, 6, 0x0302, 0x0409, 255) +
        control(5, 1, 0x80, 6, 0x0600, 0, 10) + control(6, 1, 0x80, 8, 0, 0, 1))
    s["sink-bulk"] = mode(prelude=2) + config() + (
        submit(1, 1, 1, OUT, 512, bytes(512)) + submit(2, 1, 1, IN, 4096) +
        submit(3, 1, 1, OUT, 64, b"\x01" * 64) + submit(4, 1, 1, OUT, 8, bytes(8)) +
        control(5, 1, 0x82, 0, 0, 0x01, 2) + control(6, 1, 0x02, 1, 0, 0x01) +
        submit(7, 1, 1, OUT, 8, bytes(8)) + control(8, 1, 0x40, 0x5b, 0, 0, 4, b"abcd") +
        control(9, 1, 0xc0, 0x5c, 0, 0, 4))
    # Sink altsetting 1: isochronous IN and OUT; an ISO-looking URB to a bulk endpoint, whose
    # descriptors the server reads as the next header (it closes the connection).
    s["sink-iso"] = mode(prelude=2) + config(pattern=True) + (
        control(1, 1, 0x01, 11, 1, 0) +
        submit(2, 1, 2, IN, 3072, np=3, iso=[(0, 1024), (1024, 1024), (2048, 1024)],
               interval=4, start_frame=-1) +
        submit(3, 1, 2, OUT, 2048, bytes(2048), np=2, iso=[(0, 1024), (1024, 1024)],
               interval=4) +
        submit(4, 1, 2, IN, 0, np=0) + control(5, 1, 0x81, 10, 0, 0, 1) +
        submit(6, 1, 1, IN, 2048, np=2, iso=[(0, 1024), (1024, 1024)]))
    # Serial: IN waits for data, the unlink of a waiting IN, loopback, unlinks of an answered
    # and of an unknown seqnum, line coding, an interrupt IN left waiting at the end.
    s["serial-unlink"] = mode(prelude=3) + config(urbs=2) + (
        submit(1, 2, 1, IN, 512) + submit(2, 2, 2, IN, 16) + unlink(3, 2, 1) +
        submit(4, 2, 1, OUT, 5, b"hello") + submit(5, 2, 1, IN, 512) + unlink(6, 2, 5) +
        unlink(7, 2, 0x1234) + control(8, 2, 0xa1, 0x21, 0, 0, 7) +
        control(9, 2, 0x21, 0x20, 0, 0, 7, b"\x00\xc2\x01\x00\x00\x00\x08") +
        control(10, 2, 0x21, 0x22, 3, 0) + unlink(11, 2, 2))
    # Serial with one URB in flight: the held interrupt IN pauses reading; the client closes.
    s["serial-budget"] = mode(prelude=3, lazy=True) + config(urbs=0, mem=0) + (
        submit(1, 2, 2, IN, 16) + submit(2, 2, 1, OUT, 3, b"abc") + unlink(3, 2, 1))
    s["serial-budget-halfclose"] = mode(prelude=3, teardown=1) + config(urbs=0, mem=0) + (
        submit(1, 2, 2, IN, 16) + submit(2, 2, 1, OUT, 3, b"abc"))
    s["script-budget-urbs"] = mode(chunk=7) + config(urbs=1, mem=3) + d3 + b"".join(
        submit(1 + i, 3, 1, IN, 64, interval=script(when=2, ticks=i % 4)) for i in range(8))
    s["script-budget-bytes"] = mode(chunk=7) + config(urbs=3, mem=1) + d3 + b"".join(
        submit(1 + i, 3, 1, IN, 6000, interval=script(when=2, ticks=i % 4)) for i in range(8))
    # Op phase: a device list, refused imports, a request delivered byte by byte, garbage.
    s["devlist"] = mode() + config() + op_devlist()
    s["import-unknown"] = mode() + config() + op_import("1-1") + submit(1, 1, 0, IN, 0)
    s["import-bytewise"] = mode(chunk=1) + config() + op_import("99-1") + (
        control(1, 1, 0x80, 6, 0x0100, 0, 18) + set_config(2, 1) + submit(3, 1, 1, IN, 100))
    s["op-garbage"] = mode() + config() + b"\x01\x11\x80\x03" + b"A" * 60
    # URB-phase protocol errors: wrong devid, a seqnum already in flight.
    s["wrong-devid"] = mode(prelude=1) + config() + submit(1, 2, 0, IN, 0)
    s["dup-seqnum"] = mode(prelude=3) + config() + submit(7, 2, 1, IN, 64) + \
        submit(7, 2, 1, IN, 64)
    # Scripted device: completion now and later, cancels of each kind, statuses, over-long
    # actual lengths, ISO packets, the unplug; teardown by shutdown and by free.
    s["script-held-unlink"] = mode(teardown=2) + config() + d3 + (
        submit(1, 3, 1, IN, 100, interval=script(when=3, cancel=0)) +
        submit(2, 3, 1, IN, 100, interval=script(when=3, cancel=1)) +
        submit(3, 3, 1, IN, 100, interval=script(when=3, cancel=2, amount=1)) +
        submit(4, 3, 1, OUT, 10, bytes(10), interval=script(when=3, cancel=3)) +
        unlink(5, 3, 1) + unlink(6, 3, 2) + unlink(7, 3, 3) + unlink(8, 3, 3) + unlink(9, 3, 4) +
        submit(10, 3, 2, IN, 8, interval=script(when=2, ticks=3, status=2)) +
        submit(11, 3, 1, IN, 50, interval=script(when=1, amount=3, extra=9)) +
        submit(12, 3, 0, IN, 4, interval=script(when=1), setup_pkt=setup(0xc0, 1, 0, 0, 4)))
    s["script-iso-unplug"] = mode(lazy=True) + config(urbs=2, mem=1) + d3 + (
        submit(1, 3, 3, IN, 300, np=3, iso=[(0, 100), (100, 100), (200, 100)],
               interval=script(when=1, status=3, amount=1)) +
        submit(2, 3, 4, IN, 200, np=2, iso=[(0, 100), (150, 50)],
               interval=script(when=0, amount=3, extra=1)) +
        submit(3, 3, 4, OUT, 64, bytes(64), interval=script(when=2, ticks=2)) +
        submit(4, 3, 1, IN, 10, interval=script(when=3)) +
        submit(5, 3, 1, OUT, 0, interval=script(unplug=True)) + submit(6, 3, 1, IN, 10))
    s["script-free-open"] = mode(teardown=3) + config() + d3 + (
        submit(1, 3, 1, IN, 16, interval=script(when=3)) +
        submit(2, 3, 1, IN, 16, interval=script(when=2, ticks=7)))
    s["script-halfclose"] = mode(chunk=5, teardown=1) + config(small=True) + d3 + (
        submit(1, 3, 1, IN, 65536, interval=script(when=1)) +
        submit(2, 3, 1, OUT, 1000, bytes(1000), interval=script(when=3, cancel=2)))
    # SET_ADDRESS (answered by the server itself); one URB unlinked six times (closed).
    s["set-address"] = mode(prelude=2) + config() + control(1, 1, 0x00, 5, 9) + \
        control(2, 1, 0x80, 0, 0, 0, 2)
    s["script-unlink-6x"] = mode() + config() + d3 + (
        submit(1, 3, 1, IN, 8, interval=script(when=3, cancel=2)) +
        b"".join(unlink(2 + i, 3, 1) for i in range(6)))
    # A second client: the device list while 99-2 is imported, an import of the busy device,
    # an import of another one while the first session has URBs held.
    s["second-devlist"] = mode(prelude=3) + config(second=1) + submit(1, 2, 1, IN, 64)
    s["second-busy"] = mode(prelude=1, teardown=1) + config(second=2) + \
        control(1, 1, 0x80, 6, 0x0100, 0, 18)
    s["second-busy-script"] = mode() + config(second=2) + d3 + \
        submit(1, 3, 2, IN, 8, interval=script(when=3))
    s["second-other"] = mode(teardown=2) + config(second=3) + d3 + \
        submit(1, 3, 1, IN, 8, interval=script(when=3, cancel=1))
    # Many ISO packets: more parts in one reply than one sendmsg() takes, through small socket
    # buffers; then freed with that reply still queued.
    many = [(i * 8, 8) for i in range(300)]
    s["sink-iso-many"] = mode(prelude=2, lazy=True) + config(small=True) + (
        control(1, 1, 0x01, 11, 1, 0) + submit(2, 1, 2, IN, 2400, np=300, iso=many) +
        submit(3, 1, 2, OUT, 2400, bytes(2400), np=300, iso=many))
    s["free-mid-flight"] = mode(prelude=2, lazy=True, teardown=3) + config(small=True) + (
        submit(1, 1, 1, IN, 1 << 20) + submit(2, 1, 1, OUT, 4096, bytes(1000)))
    # Big IN transfers read lazily through small socket buffers, with a tight byte budget.
    s["sink-lazy-big"] = mode(prelude=2, lazy=True) + config(mem=1, small=True) + b"".join(
        submit(10 + i, 1, 1, IN, 256 << 10) for i in range(4))
    # Storage scripts (see "Storage scripts" in fuzz/fuzz_session.c): plain commands one after
    # another, a READ whose data reaches the server a round late, class requests and an unlink,
    # and a small in-flight limit.
    s["storage-script-identify"] = mode() + config() + storage_script(
        0, [0x02, 1, 0, 0, 0x02, 2, 0, 0, 0x02, 0, 0, 0, 0x02, 3, 0, 0])
    s["storage-script-read-write"] = mode() + config() + storage_script(
        0, [0x02, 4, 0, 0, 0x02, 5 | 8, 3, 0, 0x02, 4 | 8, 3, 0])
    s["storage-script-fua-sync"] = mode() + config() + storage_script(
        0, [0x02, 6, 7, 0, 0x02, 7, 0, 0, 0x02, 4, 7, 0])
    s["storage-script-read-late"] = mode() + config() + storage_script(0, [0x02, 4, 1, 0x10])
    s["storage-script-control"] = mode() + config() + storage_script(
        0, [0x81, 0, 0x80, 0, 0x82, 0, 0xe0, 2, 0, 0x60, 0x83, 0])
    s["storage-script-small-limit"] = mode() + config(urbs=0) + storage_script(
        0x10 | 3, [0x02, 1, 0, 0, 0x02, 4, 0, 0])
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus", "session")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(seeds().items()):
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print(f"{len(seeds())} seeds in {out}")


if __name__ == "__main__":
    main()
