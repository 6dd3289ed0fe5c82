# SPDX-License-Identifier: MIT
"""Reads a loopback capture (pcapng from tshark -w), reassembles the TCP streams of one server
port, checks their USB/IP framing strictly, and writes a copy in which every USB/IP message starts
a TCP segment of its own.

Why: Wireshark 4.0's USB/IP dissector mis-sizes the second and later RET_SUBMITs (IN, with data)
that share one TCP segment, then loses the framing ("Version 18.1 not implemented" on descriptor
bytes). usbwire, like any efficient peer, writes many replies with one sendmsg(), and `usbwire
bench` pipelines requests, so its captures always hit this. Re-segmenting keeps every byte and
every message, only the segment boundaries move, so tshark can then judge each message on its own.

The strict check here is independent of Wireshark: op messages, 48-byte URB headers, OUT payloads
by transfer_buffer_length, IN reply payloads by actual_length (<= the request's), every RET_SUBMIT
answering an outstanding CMD_SUBMIT, padding zero. ISO endpoints are not modelled (a capture with
ISO transfers is reported as a framing problem).
"""

import mmap
import struct
from collections import defaultdict

MAX_SEG = 65000


class FramingError(AssertionError):
    pass


def read_pcapng(path):
    """Yields (timestamp_ns, ip_packet bytes) for every Ethernet/IPv4/TCP packet."""
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        off, n = 0, len(mm)
        endian = "<"
        linktypes, tsres = {}, {}
        while off + 12 <= n:
            btype = struct.unpack_from(endian + "I", mm, off)[0]
            if btype == 0x0A0D0D0A:
                bom = mm[off + 8:off + 12]
                endian = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                linktypes, tsres = {}, {}
            blen = struct.unpack_from(endian + "I", mm, off + 4)[0]
            if blen < 12 or off + blen > n:
                break
            if btype == 1:  # interface description
                lt = struct.unpack_from(endian + "H", mm, off + 8)[0]
                idx = len(linktypes)
                linktypes[idx] = lt
                tsres[idx] = 1000  # default microseconds -> ns factor
                o = off + 16
                while o + 4 <= off + blen - 4:
                    code, olen = struct.unpack_from(endian + "HH", mm, o)
                    if code == 0:
                        break
                    if code == 9 and olen == 1:
                        r = mm[o + 4]
                        tsres[idx] = 10 ** (9 - r) if not r & 0x80 and r <= 9 else 1
                    o += 4 + ((olen + 3) & ~3)
            elif btype == 6:  # enhanced packet
                iface, th, tl, caplen = struct.unpack_from(endian + "IIII", mm, off + 8)
                data = mm[off + 28:off + 28 + caplen]
                ts = ((th << 32) | tl) * tsres.get(iface, 1000)
                lt = linktypes.get(iface, 1)
                if lt == 1 and len(data) > 14 and data[12:14] == b"\x08\x00":
                    yield ts, data[14:]
                elif lt == 113 and len(data) > 16 and data[14:16] == b"\x08\x00":
                    yield ts, data[16:]
                elif lt == 101 or lt == 228:
                    yield ts, data
            off += blen
    finally:
        mm.close()


class Stream:
    """One direction of one TCP connection."""

    def __init__(self):
        self.isn = None
        self.data = bytearray()
        self.marks = []  # (stream offset, timestamp) of each segment's end
        self.fin = False

    def add(self, seq, payload, ts, syn, fin):
        if syn:
            self.isn = seq
            return
        if self.isn is None:
            raise FramingError("capture does not start before the connection (no SYN)")
        pos = (seq - self.isn - 1) & 0xffffffff
        end = pos + len(payload)
        if payload:
            if pos > len(self.data):
                raise FramingError(f"gap in the TCP stream at offset {len(self.data)} "
                                   "(packets lost)")
            if end > len(self.data):
                self.data += payload[len(self.data) - pos:]
                self.marks.append((end, ts))
        if fin:
            self.fin = True


def streams_of(path, port):
    """{(client_port): {'c2s': Stream, 's2c': Stream}} for connections to port, in order."""
    conns = {}
    order = []
    for ts, ip in read_pcapng(path):
        if ip[0] >> 4 != 4 or ip[9] != 6:
            continue
        ihl = (ip[0] & 0xf) * 4
        total = struct.unpack_from(">H", ip, 2)[0]
        tcp = ip[ihl:total]
        sport, dport, seq = struct.unpack_from(">HHI", tcp, 0)
        flags = tcp[13]
        doff = (tcp[12] >> 4) * 4
        payload = bytes(tcp[doff:])
        if dport == port:
            key, d = sport, "c2s"
        elif sport == port:
            key, d = dport, "s2c"
        else:
            continue
        if key not in conns or (d == "c2s" and flags & 0x02 and conns[key]["c2s"].data):
            conns[key] = {"c2s": Stream(), "s2c": Stream()}  # a new connection on that port
            order.append((key, conns[key]))
        conns[key][d].add(seq, payload, ts, bool(flags & 0x02), bool(flags & 0x01))
    return order


def split_messages(c2s, s2c):
    """Frames both directions of one connection. Returns ([(offset, len, name)] per direction,
    Counter-like dict of message names). Raises FramingError on any violation."""
    counts = defaultdict(int)
    out = {"c2s": [], "s2c": []}
    a, b = bytes(c2s), bytes(s2c)

    def need(buf, off, n, what):
        if off + n > len(buf):
            raise FramingError(f"{what} at offset {off}: truncated ({len(buf) - off} of {n})")

    # op phase, client side
    off = 0
    need(a, 0, 8, "op request")
    ver, code, status = struct.unpack_from(">HHI", a, 0)
    if ver != 0x0111 or status != 0 or code not in (0x8005, 0x8003):
        raise FramingError(f"bad op request {a[:8].hex()}")
    n = 8 if code == 0x8005 else 40
    need(a, 0, n, "op request")
    out["c2s"].append((0, n, "OP_REQ_DEVLIST" if code == 0x8005 else "OP_REQ_IMPORT"))
    counts[out["c2s"][-1][2]] += 1
    off = n
    # op phase, server side
    need(b, 0, 8, "op reply")
    ver, rcode, status = struct.unpack_from(">HHI", b, 0)
    if ver != 0x0111 or rcode != (code & 0x7fff):
        raise FramingError(f"bad op reply {b[:8].hex()} to {code:#x}")
    if code == 0x8005:
        need(b, 0, 12, "OP_REP_DEVLIST")
        ndev = struct.unpack_from(">I", b, 8)[0]
        m = 12
        for _ in range(ndev):
            need(b, m, 312, "device record")
            m += 312 + 4 * b[m + 311]
        need(b, 0, m, "OP_REP_DEVLIST")
        out["s2c"].append((0, m, "OP_REP_DEVLIST"))
        counts["OP_REP_DEVLIST"] += 1
        if off != len(a) or m != len(b):
            raise FramingError(f"{len(a) - off} / {len(b) - m} stray bytes after the device "
                               "list exchange")
        return out, counts
    m = 8 if status else 320
    need(b, 0, m, "OP_REP_IMPORT")
    out["s2c"].append((0, m, "OP_REP_IMPORT"))
    counts["OP_REP_IMPORT"] += 1
    if status:
        return out, counts
    # URB phase
    pending = {}  # seqnum -> (direction, length)
    unlinks = set()
    while off < len(a):
        need(a, off, 48, "URB header")
        cmd, seq, devid, d, ep, flags, tbl, sf, np = struct.unpack_from(">IIIIIIiii", a, off)
        if cmd == 1:
            if d not in (0, 1) or ep > 15 or tbl < 0 or np not in (0, -1):
                raise FramingError(f"bad CMD_SUBMIT at {off}: {a[off:off + 48].hex()}")
            if seq in pending:
                raise FramingError(f"CMD_SUBMIT seqnum {seq} already outstanding")
            n = 48 + (tbl if d == 0 else 0)
            pending[seq] = (d, tbl)
            name = "CMD_SUBMIT"
        elif cmd == 2:
            n, name = 48, "CMD_UNLINK"
            unlinks.add(seq)
        else:
            raise FramingError(f"client sent command {cmd} at offset {off}")
        need(a, off, n, name)
        out["c2s"].append((off, n, name))
        counts[name] += 1
        off += n
    off = m
    while off < len(b):
        need(b, off, 48, "reply header")
        cmd, seq, devid, d, ep, status, actual, sf, np, errs = struct.unpack_from(">IIIIIiiiii",
                                                                                b, off)
        if devid or d or ep:
            raise FramingError(f"reply {seq}: devid/direction/ep not 0")
        if cmd == 3:
            if seq not in pending:
                raise FramingError(f"RET_SUBMIT for seqnum {seq}, not outstanding")
            rd, tbl = pending.pop(seq)
            if not 0 <= actual <= tbl or b[off + 40:off + 48] != bytes(8):
                raise FramingError(f"RET_SUBMIT {seq}: actual {actual} of {tbl} or padding")
            n = 48 + (actual if rd == 1 else 0)
            name = "RET_SUBMIT"
        elif cmd == 4:
            if seq not in unlinks or b[off + 24:off + 48] != bytes(24):
                raise FramingError(f"RET_UNLINK {seq}: unknown or bad padding")
            unlinks.discard(seq)
            n, name = 48, "RET_UNLINK"
        else:
            raise FramingError(f"server sent command {cmd} at offset {off}")
        need(b, off, n, name)
        out["s2c"].append((off, n, name))
        counts[name] += 1
        off += n
    return out, counts


def _csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f">{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


class PcapWriter:
    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xa1b23c4d, 2, 4, 0, 0, 262144, 1))  # ns, EN10MB

    def tcp(self, ts, sport, dport, seq, ack, flags, payload=b""):
        tcp = struct.pack(">HHIIBBHHH", sport, dport, seq & 0xffffffff, ack & 0xffffffff,
                          5 << 4, flags, 65535, 0, 0)
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64,
                         6, 0, b"\x7f\0\0\x01", b"\x7f\0\0\x01")
        ip = ip[:10] + struct.pack(">H", _csum(ip)) + ip[12:]
        frame = b"\0" * 12 + b"\x08\x00" + ip + tcp + payload
        self.f.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(frame), len(frame)))
        self.f.write(frame)

    def close(self):
        self.f.close()


def resegment(src, dst, port):
    """Checks every connection to port in src and writes dst (pcap) with one USB/IP message per
    segment start. Returns (message counts, number of connections)."""
    total = defaultdict(int)
    w = PcapWriter(dst)
    conns = streams_of(src, port)
    try:
        for i, (cport, st) in enumerate(conns):
            try:
                msgs, counts = split_messages(st["c2s"].data, st["s2c"].data)
            except FramingError as e:
                raise FramingError(f"connection {i + 1} (client port {cport}): {e}") from None
            for k, v in counts.items():
                total[k] += v
            ts0 = st["c2s"].marks[0][1] if st["c2s"].marks else 0
            seq = {"c2s": 1000, "s2c": 5000}
            ports = {"c2s": (cport, port), "s2c": (port, cport)}
            w.tcp(ts0, cport, port, seq["c2s"] - 1, 0, 0x02)
            w.tcp(ts0, port, cport, seq["s2c"] - 1, seq["c2s"], 0x12)
            w.tcp(ts0, cport, port, seq["c2s"], seq["s2c"], 0x10)
            # Interleave both directions by the time each message was complete on the wire.
            events = []
            for d in ("c2s", "s2c"):
                marks = st[d].marks
                mi = 0
                for off, n, name in msgs[d]:
                    while mi < len(marks) - 1 and marks[mi][0] < off + n:
                        mi += 1
                    events.append((marks[mi][1] if marks else ts0, d, off, n))
            events.sort(key=lambda e: (e[0], 0 if e[1] == "c2s" else 1))
            for ts, d, off, n in events:
                data = st[d].data
                other = "s2c" if d == "c2s" else "c2s"
                for k in range(off, off + n, MAX_SEG):
                    chunk = bytes(data[k:min(off + n, k + MAX_SEG)])
                    sp, dp = ports[d]
                    w.tcp(ts, sp, dp, seq[d], seq[other], 0x18, chunk)
                    seq[d] += len(chunk)
            end = events[-1][0] if events else ts0
            w.tcp(end, cport, port, seq["c2s"], seq["s2c"], 0x11)
            w.tcp(end, port, cport, seq["s2c"], seq["c2s"] + 1, 0x11)
            w.tcp(end, cport, port, seq["c2s"] + 1, seq["s2c"] + 1, 0x10)
    finally:
        w.close()
    return dict(total), len(conns)
