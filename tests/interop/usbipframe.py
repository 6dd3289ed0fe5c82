# SPDX-License-Identifier: MIT
"""USB/IP framing of captured TCP streams, independent of Wireshark (shared by tests/interop and
tests/system through capture.py).

Reads a loopback capture (pcapng from tshark -w, or classic pcap), reassembles both directions of
every TCP connection to one server port, checks their USB/IP framing strictly, and writes a copy
in which every USB/IP message starts a TCP segment of its own.

Why the copy: Wireshark 4.0's USB/IP dissector mis-frames replies that share a TCP segment
(docs/protocol.md §9): a RET_SUBMIT of an IN URB that is not the first message of its segment is at
times sized as a bare 48-byte header, and a RET_SUBMIT with non-zero status is sized as the rest
of the segment counted from the segment's start; it then loses the framing ("Version 18.1 not
implemented" on descriptor bytes). Any efficient peer writes several replies with one sendmsg(),
and pipelined clients (`usbwire bench`, the kernel's vhci) hit this. Re-segmenting keeps every
byte and every message, only the segment boundaries move, so tshark can judge each message alone.

The check (FramingError on the first violation):
  * op phase: OP_REQ_DEVLIST/OP_REP_DEVLIST (device records sized by bNumInterfaces) or
    OP_REQ_IMPORT/OP_REP_IMPORT (320 bytes, 8 on error), version 0x0111, nothing stray after
    them (a failed import or a device list ends the connection);
  * URB phase: 48-byte headers; CMD_SUBMIT direction 0/1, ep <= 15, devid of the imported device,
    OUT payload transfer_buffer_length, + 16 bytes per ISO packet; seqnum not outstanding;
    CMD_UNLINK naming a URB submitted before it;
  * every RET_SUBMIT answers an outstanding CMD_SUBMIT captured before it (capture order), with
    devid/direction/ep 0, 0 <= actual_length <= transfer_buffer_length, IN payload actual_length,
    the command's number of ISO packets, zero padding; every RET_UNLINK answers an outstanding
    CMD_UNLINK, zero padding;
  * no lost packets: a hole in a stream, a FIN beyond the data, a packet cut by the snap length,
    or drops recorded in the capture's interface statistics;
  * connections must be captured from their SYN; a connection that carries no byte either way
    (a port probe) is allowed.
"""

import bisect
import mmap
import struct
from collections import Counter

MAX_SEG = 65000
HDR = 48
MAX_ISO_PACKETS = 1024  # USBIP_MAX_ISO_PACKETS (Linux)

OPS = {0x8005: "OP_REQ_DEVLIST", 0x0005: "OP_REP_DEVLIST",
       0x8003: "OP_REQ_IMPORT", 0x0003: "OP_REP_IMPORT"}
URBS = {1: "CMD_SUBMIT", 2: "CMD_UNLINK", 3: "RET_SUBMIT", 4: "RET_UNLINK"}


class FramingError(AssertionError):
    pass


# ---- capture file reader -----------------------------------------------------------------------

def _ip_of(linktype, data):
    """The IP packet in a link-layer frame, or None."""
    if linktype == 1:  # Ethernet
        if len(data) > 14 and data[12:14] in (b"\x08\x00", b"\x86\xdd"):
            return data[14:]
    elif linktype == 113:  # Linux cooked
        if len(data) > 16 and data[14:16] in (b"\x08\x00", b"\x86\xdd"):
            return data[16:]
    elif linktype in (101, 228, 229):  # raw IP
        return data
    return None


def read_capture(path, stats=None):
    """Yields (timestamp_ns, ip packet bytes, truncated) for every IP packet of a pcapng or pcap
    file. stats (a dict), if given, receives 'drops': packets the capture says it dropped."""
    if stats is not None:
        stats["drops"] = 0
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        magic = mm[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1",
                     b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            yield from _read_pcap(mm)
        else:
            yield from _read_pcapng(mm, stats)
    finally:
        mm.close()


def _read_pcap(mm):
    e = "<" if mm[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    nano = mm[:4] in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    lt = struct.unpack_from(e + "I", mm, 20)[0] & 0x0fffffff
    off, n = 24, len(mm)
    while off + 16 <= n:
        sec, frac, caplen, origlen = struct.unpack_from(e + "IIII", mm, off)
        data = mm[off + 16:off + 16 + caplen]
        off += 16 + caplen
        ip = _ip_of(lt, data)
        if ip is not None:
            yield sec * 10**9 + frac * (1 if nano else 1000), ip, caplen < origlen


def _read_pcapng(mm, stats):
    off, n = 0, len(mm)
    endian = "<"
    linktypes, tsres = {}, {}
    while off + 12 <= n:
        btype = struct.unpack_from(endian + "I", mm, off)[0]
        if btype == 0x0A0D0D0A:
            endian = "<" if mm[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
            linktypes, tsres = {}, {}
        blen = struct.unpack_from(endian + "I", mm, off + 4)[0]
        if blen < 12 or off + blen > n:
            break
        if btype == 1:  # interface description
            lt = struct.unpack_from(endian + "H", mm, off + 8)[0]
            idx = len(linktypes)
            linktypes[idx] = lt
            tsres[idx] = 1000  # default microseconds -> ns factor
            for code, val in _options(mm, endian, off + 16, off + blen - 4):
                if code == 9 and len(val) == 1:
                    r = val[0]
                    tsres[idx] = 10 ** (9 - r) if not r & 0x80 and r <= 9 else 1
        elif btype == 6:  # enhanced packet
            iface, th, tl, caplen, origlen = struct.unpack_from(endian + "IIIII", mm, off + 8)
            ip = _ip_of(linktypes.get(iface, 1), mm[off + 28:off + 28 + caplen])
            if ip is not None:
                yield ((th << 32) | tl) * tsres.get(iface, 1000), ip, caplen < origlen
        elif btype == 5 and stats is not None:  # interface statistics
            for code, val in _options(mm, endian, off + 20, off + blen - 4):
                if code in (5, 7) and len(val) == 8:  # isb_ifdrop, isb_osdrop
                    stats["drops"] += struct.unpack(endian + "Q", val)[0]
        off += blen


def _options(mm, endian, o, end):
    while o + 4 <= end:
        code, olen = struct.unpack_from(endian + "HH", mm, o)
        if code == 0:
            break
        yield code, bytes(mm[o + 4:o + 4 + olen])
        o += 4 + ((olen + 3) & ~3)


# ---- TCP reassembly -----------------------------------------------------------------------------

class Stream:
    """One direction of one TCP connection."""

    def __init__(self):
        self.isn = None
        self.data = bytearray()
        self.ends = []   # stream offset of each data segment's end...
        self.marks = []  # ...and its (timestamp, packet number in the capture)
        self.fin = None  # stream offset of the FIN

    def add(self, seq, payload, ts, pkt, syn, fin):
        if syn:
            self.isn = seq
            return
        if self.isn is None:
            raise FramingError("the capture does not start before the connection (no SYN)")
        pos = (seq - self.isn - 1) & 0xffffffff
        end = pos + len(payload)
        if payload:
            if pos > len(self.data):
                raise FramingError(f"hole in the TCP stream at offset {len(self.data)} "
                                   "(packets lost)")
            if end > len(self.data):
                self.data += payload[len(self.data) - pos:]
                self.ends.append(end)
                self.marks.append((ts, pkt))
        if fin:
            self.fin = end

    def mark_at(self, off):
        """(timestamp, packet number) of the segment that carried byte off."""
        return self.marks[bisect.bisect_right(self.ends, off)]


class Connection:
    def __init__(self, addr, cport):
        self.addr, self.cport = addr, cport
        self.c2s, self.s2c = Stream(), Stream()

    def __str__(self):
        return f"client port {self.cport}"


def connections(path, port, stats=None):
    """The TCP connections to port in path, in order of their first packet."""
    conns, order = {}, []
    for pkt, (ts, ip, truncated) in enumerate(read_capture(path, stats)):
        if ip[0] >> 4 == 4 and len(ip) >= 20 and ip[9] == 6:
            ihl = (ip[0] & 0xf) * 4
            total = struct.unpack_from(">H", ip, 2)[0]
            tcp, src, dst = ip[ihl:total], bytes(ip[12:16]), bytes(ip[16:20])
        elif ip[0] >> 4 == 6 and len(ip) >= 40 and ip[6] == 6:
            plen = struct.unpack_from(">H", ip, 4)[0]
            tcp, src, dst = ip[40:40 + plen], bytes(ip[8:24]), bytes(ip[24:40])
        else:
            continue
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack_from(">HHI", tcp, 0)
        if port not in (sport, dport):
            continue
        if truncated:
            raise FramingError(f"packet {pkt + 1} is cut short by the capture's snap length")
        flags = tcp[13]
        payload = bytes(tcp[(tcp[12] >> 4) * 4:])
        if dport == port:
            key, d = (src, sport), "c2s"
        else:
            key, d = (dst, dport), "s2c"
        c = conns.get(key)
        if c is None or (d == "c2s" and flags & 0x02 and seq != c.c2s.isn):
            c = conns[key] = Connection(*key)  # a new connection from that address and port
            order.append(c)
        getattr(c, d).add(seq, payload, ts, pkt, bool(flags & 0x02), bool(flags & 0x01))
    for c in order:
        for d in ("c2s", "s2c"):
            st = getattr(c, d)
            if st.fin is not None and st.fin > len(st.data):
                raise FramingError(f"{c}: {d} stream ends at {len(st.data)} but its FIN is at "
                                   f"{st.fin} (packets lost)")
    return order


# ---- USB/IP framing -----------------------------------------------------------------------------

def split_messages(conn):
    """Frames both directions of one connection. Returns ({direction: [(offset, length, name,
    key)]}, Counter of message names), key None for op messages, else ("S"|"U", seqnum) and, for
    commands, for CMD_SUBMIT whether it is to ep 0, for CMD_UNLINK the seqnum it unlinks.
    Raises FramingError on any violation."""
    counts = Counter()
    out = {"c2s": [], "s2c": []}
    a, b = bytes(conn.c2s.data), bytes(conn.s2c.data)
    if not a and not b:
        return out, counts  # a port probe

    def need(buf, off, n, what):
        if off + n > len(buf):
            raise FramingError(f"{what} at offset {off}: truncated ({len(buf) - off} of {n} "
                               "bytes)")

    def emit(d, off, n, name, key=None):
        out[d].append((off, n, name, key))
        counts[name] += 1

    # op phase
    need(a, 0, 8, "op request")
    ver, code, status = struct.unpack_from(">HHI", a, 0)
    if ver != 0x0111 or status != 0 or code not in (0x8005, 0x8003):
        raise FramingError(f"bad op request {a[:8].hex()}")
    n = 8 if code == 0x8005 else 40
    need(a, 0, n, OPS[code])
    emit("c2s", 0, n, OPS[code])
    off = n
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
        emit("s2c", 0, m, "OP_REP_DEVLIST")
    else:
        m = 8 if status else 320
        need(b, 0, m, "OP_REP_IMPORT")
        emit("s2c", 0, m, "OP_REP_IMPORT")
    if code == 0x8005 or status:
        if off != len(a) or m != len(b):
            raise FramingError(f"{len(a) - off} / {len(b) - m} stray bytes after the "
                               f"{'device list' if code == 0x8005 else 'failed import'}")
        return out, counts
    devid = struct.unpack_from(">I", b, 8 + 288)[0] << 16 | struct.unpack_from(">I", b, 8 + 292)[0]
    if len(a) > off and conn.c2s.mark_at(off)[1] < conn.s2c.mark_at(0)[1]:
        raise FramingError("URB command sent before OP_REP_IMPORT")

    # URB phase, client side: sizes do not depend on the server.
    cmds = []  # (offset, packet, command, seqnum, (direction, tbl, npackets) | unlink target)
    submitted = set()
    while off < len(a):
        need(a, off, HDR, "URB header")
        cmd, seq, dev, d, ep, flags, tbl, sf, np = struct.unpack_from(">IIIIIIiii", a, off)
        if cmd == 1:
            if d not in (0, 1) or ep > 15 or tbl < 0 or not -1 <= np <= MAX_ISO_PACKETS:
                raise FramingError(f"bad CMD_SUBMIT at {off}: {a[off:off + HDR].hex()}")
            np = max(np, 0)
            n = HDR + (tbl if d == 0 else 0) + 16 * np
            name, info, key = "CMD_SUBMIT", (d, tbl, np), ("S", seq, ep == 0)
            submitted.add(seq)
        elif cmd == 2:
            target = struct.unpack_from(">I", a, off + 20)[0]
            if target not in submitted or a[off + 24:off + HDR] != bytes(24):
                raise FramingError(f"CMD_UNLINK {seq} at {off}: target {target} never submitted, "
                                   "or bad padding")
            n, name, info, key = HDR, "CMD_UNLINK", target, ("U", seq, target)
        else:
            raise FramingError(f"client sent command {cmd} at offset {off}")
        if dev != devid:
            raise FramingError(f"{name} {seq} at {off}: devid {dev:#x}, imported {devid:#x}")
        need(a, off, n, name)
        emit("c2s", off, n, name, key)
        cmds.append((off, conn.c2s.mark_at(off)[1], cmd, seq, info))
        off += n

    # URB phase, server side, in capture order with the commands.
    pending, unlinks = {}, set()  # seqnum -> (direction, tbl, npackets); CMD_UNLINK seqnums
    ci = 0
    off = m
    while off < len(b):
        need(b, off, HDR, "reply header")
        pkt = conn.s2c.mark_at(off)[1]
        while ci < len(cmds) and cmds[ci][1] < pkt:
            _, _, cmd, seq, info = cmds[ci]
            if seq in pending or seq in unlinks:
                raise FramingError(f"seqnum {seq} reused while outstanding")
            if cmd == 1:
                pending[seq] = info
            else:
                unlinks.add(seq)
            ci += 1
        cmd, seq, dev, d, ep, status, actual, sf, np, errs = struct.unpack_from(">IIIIIiiiii",
                                                                              b, off)
        if dev or d or ep:
            raise FramingError(f"reply {seq} at {off}: devid/direction/ep not 0")
        if cmd == 3:
            if seq not in pending:
                raise FramingError(f"RET_SUBMIT at {off} for seqnum {seq}, not outstanding")
            rd, tbl, cnp = pending.pop(seq)
            if not 0 <= actual <= tbl or b[off + 40:off + HDR] != bytes(8):
                raise FramingError(f"RET_SUBMIT {seq}: actual_length {actual} of {tbl}, or "
                                   "non-zero padding")
            if max(np, 0) != cnp:
                raise FramingError(f"RET_SUBMIT {seq}: {np} ISO packets, the command {cnp}")
            n = HDR + (actual if rd == 1 else 0) + 16 * cnp
            name, key = "RET_SUBMIT", ("S", seq)
        elif cmd == 4:
            if seq not in unlinks or b[off + 24:off + HDR] != bytes(24):
                raise FramingError(f"RET_UNLINK {seq} at {off}: no such CMD_UNLINK outstanding, "
                                   "or non-zero padding")
            unlinks.discard(seq)
            n, name, key = HDR, "RET_UNLINK", ("U", seq)
        else:
            raise FramingError(f"server sent command {cmd} at offset {off}")
        need(b, off, n, name)
        emit("s2c", off, n, name, key)
        off += n
    return out, counts


# ---- re-segmented copy --------------------------------------------------------------------------

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
        self.frames = 0  # frames written (= number of the last one)

    def tcp(self, ts, sport, dport, seq, ack, flags, payload=b""):
        tcp = struct.pack(">HHIIBBHHH", sport, dport, seq & 0xffffffff, ack & 0xffffffff,
                          5 << 4, flags, 65535, 0, 0)
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 0, 0x4000, 64,
                         6, 0, b"\x7f\0\0\x01", b"\x7f\0\0\x01")
        ip = ip[:10] + struct.pack(">H", _csum(ip)) + ip[12:]
        frame = b"\0" * 12 + b"\x08\x00" + ip + tcp + payload
        self.f.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, len(frame), len(frame)))
        self.f.write(frame)
        self.frames += 1

    def close(self):
        self.f.close()


def _copy_order(conn, msgs):
    """The order of the messages of one connection in the copy: capture order (the packet that
    completed each message), except that a control CMD_SUBMIT (ep 0) waits while another control
    URB is outstanding if the reply can come first (the server's order allows it). Wireshark's
    USB dissector pairs a control reply with the latest control request of the device, so
    pipelined control requests (usbtest's control queue test) would otherwise be decoded as
    replies to the wrong request. Returns ([(timestamp, direction, offset, length)], set of
    indexes into that list of control replies that still follow a later control request)."""
    queues = {}
    for d, st in (("c2s", conn.c2s), ("s2c", conn.s2c)):
        q = []
        for off, n, name, key in msgs[d]:
            ts, pkt = st.mark_at(off + n - 1)
            q.append((pkt, ts, d, off, n, key))
        queues[d] = q
    c, s = queues["c2s"], queues["s2c"]
    ci = si = 0
    emitted = set()    # ("S"|"U", seqnum) of the commands emitted and not answered
    open_ctl = {}      # control seqnum -> ambiguous (a later control request came first)
    unlinking = {}     # CMD_UNLINK seqnum -> the seqnum it unlinks
    order, ambiguous = [], set()
    while ci < len(c) or si < len(s):
        sready = si < len(s) and (s[si][5] is None and ci > 0 or s[si][5] in emitted)
        if ci < len(c):
            key = c[ci][5]
            blocked = key is not None and key[0] == "S" and key[2] and open_ctl
            take_server = sready and (blocked or s[si][0] < c[ci][0])
        else:
            take_server = True
        if take_server:
            ev = s[si]
            si += 1
            key = ev[5]
            if key is not None:
                emitted.discard(key)
                if key[0] == "S" and open_ctl.pop(key[1], False):
                    ambiguous.add(len(order))
                elif key[0] == "U":
                    open_ctl.pop(unlinking.pop(key[1], None), None)
        else:
            ev = c[ci]
            ci += 1
            key = ev[5]
            if key is not None:
                emitted.add(key[:2])
                if key[0] == "U":
                    unlinking[key[1]] = key[2]
                elif key[2]:
                    for k in open_ctl:
                        open_ctl[k] = True
                    open_ctl[key[1]] = False
        order.append(ev[1:5])
    return order, ambiguous


def resegment(src, dst, port):
    """Checks every connection to port in src and writes dst (pcap, IPv4 on 127.0.0.1) with each
    USB/IP message starting a TCP segment of its own (over MAX_SEG bytes: continued in more
    segments), in the order of _copy_order(). Returns (Counter of messages, number of connections,
    set of frame numbers in dst of control replies that Wireshark pairs with the wrong request,
    see _copy_order). Raises FramingError."""
    total = Counter()
    stats = {}
    conns = connections(src, port, stats)
    if stats.get("drops"):
        raise FramingError(f"the capture dropped {stats['drops']} packets")
    w = PcapWriter(dst)
    ambiguous_frames = set()
    try:
        for i, c in enumerate(conns):
            try:
                msgs, counts = split_messages(c)
            except FramingError as e:
                raise FramingError(f"connection {i + 1} ({c}): {e}") from None
            total += counts
            st = {"c2s": c.c2s, "s2c": c.s2c}
            ts0 = min([s.marks[0][0] for s in st.values() if s.marks] or [0])
            seq = {"c2s": 1000, "s2c": 5000}
            ports = {"c2s": (c.cport, port), "s2c": (port, c.cport)}
            w.tcp(ts0, c.cport, port, seq["c2s"] - 1, 0, 0x02)
            w.tcp(ts0, port, c.cport, seq["s2c"] - 1, seq["c2s"], 0x12)
            w.tcp(ts0, c.cport, port, seq["c2s"], seq["s2c"], 0x10)
            events, ambiguous = _copy_order(c, msgs)
            last = ts0
            for j, (ts, d, off, n) in enumerate(events):
                last = ts = max(ts, last)
                data = st[d].data
                other = "s2c" if d == "c2s" else "c2s"
                for k in range(off, off + n, MAX_SEG):
                    chunk = bytes(data[k:min(off + n, k + MAX_SEG)])
                    sp, dp = ports[d]
                    w.tcp(ts, sp, dp, seq[d], seq[other], 0x18, chunk)
                    seq[d] += len(chunk)
                if j in ambiguous:
                    ambiguous_frames.add(w.frames)
            w.tcp(last, c.cport, port, seq["c2s"], seq["s2c"], 0x11)
            w.tcp(last, port, c.cport, seq["s2c"], seq["c2s"] + 1, 0x11)
            w.tcp(last, c.cport, port, seq["c2s"] + 1, seq["s2c"] + 1, 0x10)
    finally:
        w.close()
    return total, len(conns), ambiguous_frames


# ---- isochronous report -------------------------------------------------------------------------

def iso_report(path, port):
    """What the isochronous URBs of every connection to port carried, from their RET_SUBMITs
    (framing checked as in split_messages). Returns a dict: urbs, packets, bytes (sum of the
    packets' actual lengths), bad_packets (packets with a non-zero status) and bad_status (the
    first 20 of them: [(seqnum, index, status)]), error_count (sum of the replies' error_count), short_out (OUT packets
    that moved less than their length), sum_mismatch (replies whose packets' actual lengths do not
    add up to actual_length), endpoints (set of (direction, ep))."""
    rep = {"urbs": 0, "packets": 0, "bytes": 0, "bad_packets": 0, "bad_status": [],
           "error_count": 0,
           "short_out": 0, "sum_mismatch": 0, "endpoints": set()}
    for conn in connections(path, port):
        msgs, _ = split_messages(conn)
        a, b = bytes(conn.c2s.data), bytes(conn.s2c.data)
        cmd_of = {}
        for off, _n, name, key in msgs["c2s"]:
            if name == "CMD_SUBMIT":
                _c, seq, _dev, d, ep = struct.unpack_from(">IIIII", a, off)
                cmd_of[seq] = (d, ep)
        for off, n, name, key in msgs["s2c"]:
            if name != "RET_SUBMIT":
                continue
            _c, seq, _dev, _d, _ep, _st, actual, _sf, np, errs = struct.unpack_from(
                ">IIIIIiiiii", b, off)
            if np <= 0:
                continue
            d, ep = cmd_of.get(seq, (None, None))
            rep["urbs"] += 1
            rep["endpoints"].add((d, ep))
            rep["error_count"] += errs
            total = 0
            base = off + n - 16 * np
            for i in range(np):
                _o, length, act, st = struct.unpack_from(">IIIi", b, base + 16 * i)
                rep["packets"] += 1
                total += act
                if st != 0:
                    rep["bad_packets"] += 1
                    if len(rep["bad_status"]) < 20:
                        rep["bad_status"].append((seq, i, st))
                if d == 0 and act != length:
                    rep["short_out"] += 1
            rep["bytes"] += total
            if total != actual:
                rep["sum_mismatch"] += 1
    return rep
