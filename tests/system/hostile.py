# SPDX-License-Identifier: MIT
"""Test 1, hostile input: truncated, oversized and inconsistent messages of every kind, each on
a new connection, while an honest session on 99-4 (sink) keeps working in a thread.

Every row is one TAP point. After every row: the honest session made progress since the previous
row, and the server is alive. A row where the server must close asserts EOF within 5 s, nothing
sent back, exactly one warning line on the server's stderr about that connection naming the
offending field, and (URB phase) that the device can be imported again right away.
"""

import random
import re
import socket
import struct
import threading
import time

from uwlib import (DIR_IN, DIR_OUT, ECONNRESET, EINVAL, EPIPE, HDR_LEN, KEYBOARD,
                   OP_REP_DEVLIST, OP_REP_IMPORT, OP_REQ_DEVLIST, OP_REQ_IMPORT, RET_SUBMIT,
                   RET_UNLINK, SERIAL, SINK, ST_DEV_BUSY, ST_NODEV, STORAGE, Conn, Fail,
                   Server, Urbs, check, cmd_submit, cmd_unlink, get_descriptor_setup, op_common,
                   parse_device_descriptor, req_devlist, req_import, setup_packet)

MiB = 1 << 20
GET_DEV = get_descriptor_setup(1, 0, 18)


class Honest(threading.Thread):
    """Imports 99-4 (sink), configures it, then loops bulk IN 4096 + GET_DESCRIPTOR, checking
    every reply; counts completed URBs."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.count = 0
        self.errors = []
        self.stop_flag = False
        self.ready = threading.Event()

    def run(self):
        try:
            u = Urbs(self.port, SINK, timeout=60)
            u.set_configuration()
            self.ready.set()
            while not self.stop_flag:
                r = u.bulk(1, DIR_IN, 4096)
                check(r["actual"] == 4096 and r["data"] == b"\0" * 4096,
                      f"bulk IN: {r['actual']} bytes, zeros: {r['data'] == bytes(r['actual'])}")
                self.count += 1
                d = parse_device_descriptor(u.get_device_descriptor())
                check((d["idVendor"], d["idProduct"]) == (0x0525, 0xa4a0), f"descriptor {d}")
                self.count += 1
            u.close()
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.errors.append(f"{type(e).__name__}: {e}")
            self.ready.set()


class Ctx:
    def __init__(self, srv):
        self.srv = srv
        self.port = srv.port
        self.mark = 0  # log offset at the start of the current row

    # ---- assertions shared by rows ----

    def expect_close(self, conn, field, got_ok=b""):
        """The server must close conn within 5 s without sending anything (beyond got_ok) and
        log exactly one warning about it that names field (a regex)."""
        try:
            got = conn.wait_eof(60.0)
        finally:
            conn.close()
        check(got == got_ok, f"server sent {len(got)} unexpected bytes before closing: "
                             f"{got[:64].hex()}")
        self.expect_one_warning(conn.local, field)

    def lines_for(self, peer):
        """Log lines about peer written since the row began (ephemeral ports get reused)."""
        return [l for l in self.srv.log()[self.mark:].splitlines() if f" {peer}: " in l]

    def expect_one_warning(self, peer, field):
        lines = [l for l in self.lines_for(peer) if re.search(r" (warning|error): ", l)]
        check(len(lines) == 1, f"want exactly one warning about {peer}, got {len(lines)}:\n"
                               + "\n".join(lines[:10]))
        check(re.search(field, lines[0]), f"the warning does not name {field!r}: {lines[0]}")

    def expect_no_warning(self, peer):
        lines = [l for l in self.lines_for(peer) if re.search(r" (warning|error): ", l)]
        check(not lines, "unexpected warnings:\n" + "\n".join(lines[:10]))

    def importable(self, busid):
        """The device can be imported (and used) again right after."""
        with Urbs(self.port, busid) as u:
            u.get_device_descriptor()

    def still_works(self, u):
        """The connection kept its framing: a GET_DESCRIPTOR is answered."""
        d = parse_device_descriptor(u.get_device_descriptor())
        check(d["idVendor"] != 0, "bad descriptor")

    def urb_close(self, busid, msg, field, configure=True, extra=b""):
        u = Urbs(self.port, busid)
        if configure:
            u.set_configuration()
        u.send(msg + extra)
        self.expect_close(u, field)
        self.importable(busid)


# ---- Op phase rows ------------------------------------------------------------------------------

def op_close(ctx, data, field):
    c = Conn(ctx.port)
    c.send(data)
    ctx.expect_close(c, field)


def row_truncated_import(ctx):
    full = req_import(SERIAL)
    for n in range(len(full)):
        c = Conn(ctx.port)
        c.send(full[:n])
        c.shutdown_write()
        got = c.wait_eof(60.0)
        c.close()
        check(got == b"", f"prefix of {n} bytes: server replied {got.hex()}")
    ctx.importable(SERIAL)  # no prefix left the device claimed


def row_truncated_devlist(ctx):
    full = req_devlist()
    for n in range(1, len(full)):
        c = Conn(ctx.port)
        c.send(full[:n])
        c.shutdown_write()
        got = c.wait_eof(60.0)
        c.close()
        check(got == b"", f"prefix of {n} bytes: server replied {got.hex()}")


def row_unknown_busid(ctx):
    c = Conn(ctx.port)
    c.send(req_import("99-9"))
    got = c.wait_eof(60.0)
    c.close()
    check(got == op_common(OP_REP_IMPORT, ST_NODEV),
          f"want the 8-byte reply with status 4 (ST_NODEV) then close, got {got.hex()}")


def row_hostile_busid(ctx):
    """A busid with terminal escapes and a newline: refused (unknown), and the server's log
    shows it escaped: no raw control byte, no forged line."""
    busid = b"\x1b]0;owned\x07\x1b[2J\n[fake] 99-4\xc2\x9b"
    c = Conn(ctx.port)
    c.send(op_common(OP_REQ_IMPORT) + busid + b"\0" * (32 - len(busid)))
    got = c.wait_eof(5.0)
    c.close()
    check(got == op_common(OP_REP_IMPORT, ST_NODEV),
          f"want the 8-byte reply with status 4 (ST_NODEV) then close, got {got.hex()}")
    raw = ctx.srv.log_path.read_bytes()
    bad = sorted({b for b in raw if (b < 0x20 and b != 0x0a) or b == 0x7f})
    check(not bad, f"server log holds raw control bytes {[hex(b) for b in bad]}")
    check(b"\xc2\x9b" not in raw, "server log holds a raw C1 control (U+009B)")
    check(not re.search(rb"^\[fake\]", raw, re.M), "server log holds a forged line")
    mine = [l for l in ctx.lines_for(c.local) if "refused" in l]
    check(len(mine) == 1 and "\\x1b]0;owned\\x07\\x1b[2J\\x0a[fake] 99-4\\xc2\\x9b" in mine[0],
          f"want one 'refused' line showing the busid escaped, got {mine}")


def row_busy_busid(ctx):
    c = Conn(ctx.port)
    c.send(req_import(SINK))
    got = c.wait_eof(60.0)
    c.close()
    check(got == op_common(OP_REP_IMPORT, ST_DEV_BUSY),
          f"want the 8-byte reply with status 2 (ST_DEV_BUSY) then close, got {got.hex()}")


def row_random_mib(ctx):
    rnd = random.Random(20261121)
    data = bytearray(rnd.randbytes(MiB))
    data[0] = 0x5a  # not 0x01: never a valid version by chance
    c = Conn(ctx.port)
    c.send(bytes(data))  # the server may close (and reset) long before the end
    ctx.expect_close(c, r"op_common\.version")


def row_bytewise_import(ctx):
    c = Conn(ctx.port)
    for b in req_import(SERIAL):
        c.send(bytes([b]))
        time.sleep(0.01)
    status = c.read_op_reply(OP_REP_IMPORT)
    check(status == 0, f"import status {status}")
    c.recv_exact(312)
    # and a URB header, one byte per segment too
    msg = cmd_submit(7, 99 << 16 | 3, DIR_IN, 0, 18, GET_DEV)
    for b in msg:
        c.send(bytes([b]))
        time.sleep(0.005)
    h = c.recv_exact(HDR_LEN)
    cmd, seq = struct.unpack(">II", h[:8])
    st, actual = struct.unpack(">ii", h[20:28])
    check((cmd, seq, st, actual) == (RET_SUBMIT, 7, 0, 18),
          f"reply {cmd}/{seq} status {st} actual {actual}")
    c.recv_exact(18)
    c.close()


def row_bytewise_devlist(ctx):
    c = Conn(ctx.port)
    for b in req_devlist():
        c.send(bytes([b]))
        time.sleep(0.02)
    status = c.read_op_reply(OP_REP_DEVLIST)
    check(status == 0, f"status {status}")
    (n,) = struct.unpack(">I", c.recv_exact(4))
    # 99-4 is imported by the honest session and must not be listed.
    check(n == 3, f"{n} devices listed, want 3 (99-4 is in use)")
    c.close()


def row_silent(ctx):
    c = Conn(ctx.port)
    t0 = time.monotonic()
    got = c.wait_eof(120.0)
    dt = time.monotonic() - t0
    c.close()
    check(got == b"", f"server sent {got.hex()}")
    # Not before the deadline; after it, as soon as the server gets to it (an upper bound
    # here would measure the machine's load, not the server).
    check(dt >= 1.5, f"closed after {dt:.1f}s, before the handshake deadline of 2s")
    lines = ctx.lines_for(c.local)
    check(any("handshake" in l for l in lines), "no log line about the handshake deadline:\n"
          + "\n".join(lines))


def row_storm(ctx):
    for i in range(200):
        s = socket.create_connection(("127.0.0.1", ctx.port), timeout=5)
        if i % 2:
            # half of them reset instead of closing
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        if i % 3 == 0:
            s.send(req_import(SERIAL)[:20])
        s.close()
    with Conn(ctx.port) as c:
        check(len(c.devlist()) == 3, "device list after the storm")
    ctx.importable(SERIAL)


def row_devlist_then_garbage(ctx):
    c = Conn(ctx.port)
    c.send(req_devlist() + b"\xff" * 100)
    status = c.read_op_reply(OP_REP_DEVLIST)
    check(status == 0, f"status {status}")
    (n,) = struct.unpack(">I", c.recv_exact(4))
    for _ in range(n):
        rec = c.recv_exact(312)
        c.recv_exact(4 * rec[311])
    got = c.wait_eof(60.0)
    c.close()
    check(got == b"", f"{len(got)} bytes after the device list")


def row_import_and_urb_in_one_segment(ctx):
    c = Conn(ctx.port)
    c.send(req_import(SERIAL) + cmd_submit(9, 99 << 16 | 3, DIR_IN, 0, 18, GET_DEV))
    check(c.read_op_reply(OP_REP_IMPORT) == 0, "import failed")
    c.recv_exact(312)
    h = c.recv_exact(HDR_LEN)
    cmd, seq = struct.unpack(">II", h[:8])
    check((cmd, seq) == (RET_SUBMIT, 9), f"reply {cmd}/{seq}")
    c.recv_exact(18)
    c.close()


# ---- URB phase rows -----------------------------------------------------------------------------

def row_truncated_header(ctx):
    u = Urbs(ctx.port, STORAGE)
    u.set_configuration()
    u.send(cmd_submit(5, u.devid, DIR_IN, 0, 18, GET_DEV)[:20])
    time.sleep(0.1)
    u.close()
    ctx.importable(STORAGE)


def tbl_row(length, direction, ep):
    def row(ctx):
        u = Urbs(ctx.port, STORAGE)
        u.set_configuration()
        # A real client would follow an OUT header with the payload: send a little of it.
        extra = b"\0" * 1000 if direction == DIR_OUT else b""
        u.send(cmd_submit(u.next_seq(), u.devid, direction, ep, length) + extra)
        ctx.expect_close(u, "transfer_buffer_length")
        ctx.importable(STORAGE)  # the Linux stub's famous bug: the device stays usable
    return row


def row_control_too_long(ctx):
    ctx.urb_close(SERIAL, cmd_submit(5, 99 << 16 | 3, DIR_IN, 0, 65536,
                                     get_descriptor_setup(2, 0, 0xffff)),
                  "transfer_buffer_length")


def row_iso_np_unknown_ep(ctx):
    u = Urbs(ctx.port, STORAGE)
    u.set_configuration()
    seq = u.submit(5, DIR_IN, 1024, np=2000)
    r = u.expect_submit(seq, EPIPE, 0)
    check(r["np"] == 0, f"number_of_packets {r['np']} in the reply, want 0 (not ISO)")
    ctx.still_works(u)
    u.close()


def row_np_on_bulk(ctx):
    """number_of_packets is ignored on a bulk endpoint: a valid CBW with np 2000 works."""
    u = Urbs(ctx.port, STORAGE)
    u.set_configuration()
    cbw = struct.pack("<IIIBBB", 0x43425355, 1, 36, 0x80, 0, 6) + \
        bytes([0x12, 0, 0, 0, 36, 0]).ljust(16, b"\0")
    seq = u.submit(2, DIR_OUT, len(cbw), data=cbw, np=2000)
    r = u.expect_submit(seq, 0, 31)
    check(r["np"] == 0, f"number_of_packets {r['np']} in the reply, want 0")
    seq = u.submit(1, DIR_IN, 36, np=-1)
    r = u.expect_submit(seq, 0, 36)
    check(r["np"] == -1, f"number_of_packets {r['np']} in the reply, want -1 echoed")
    u.bulk(1, DIR_IN, 13)  # the CSW
    ctx.still_works(u)
    u.close()


def row_wrong_devid(ctx):
    ctx.urb_close(SERIAL, cmd_submit(5, (99 << 16 | 3) + 1, DIR_IN, 0, 18, GET_DEV), "devid")


def row_unlink_wrong_devid(ctx):
    ctx.urb_close(SERIAL, cmd_unlink(5, 99 << 16 | 1, 4), "devid")


def command_row(command):
    def row(ctx):
        ctx.urb_close(SERIAL, cmd_submit(5, 99 << 16 | 3, DIR_IN, 0, 18, GET_DEV,
                                         command=command), "command")
    return row


def row_direction_2(ctx):
    ctx.urb_close(SERIAL, cmd_submit(5, 99 << 16 | 3, 2, 0, 18, GET_DEV), "direction")


def ep_row(ep):
    def row(ctx):
        ctx.urb_close(SERIAL, cmd_submit(5, 99 << 16 | 3, DIR_IN, ep, 18, GET_DEV),
                      r"\bep\b")
    return row


def row_duplicate_seqnum(ctx):
    u = Urbs(ctx.port, KEYBOARD)
    u.set_configuration()
    held = u.submit(1, DIR_IN, 8, interval=10)  # never completes without input
    check(u.is_open(0.2), "connection closed after the interrupt IN")
    u.send(cmd_submit(held, u.devid, DIR_IN, 0, 18, GET_DEV))
    ctx.expect_close(u, "seqnum")
    ctx.importable(KEYBOARD)


def row_control_len_mismatch(ctx):
    u = Urbs(ctx.port, SERIAL)
    u.set_configuration()
    seq = u.submit(0, DIR_IN, 64, get_descriptor_setup(1, 0, 18))
    u.expect_submit(seq, EINVAL, 0)
    # OUT with a payload that wLength does not announce: the payload is still consumed.
    seq = u.submit(0, DIR_OUT, 10, setup_packet(0x21, 0x22, 3, 0, 0), data=b"x" * 10)
    u.expect_submit(seq, EINVAL, 0)
    ctx.still_works(u)
    u.close()
    ctx.expect_no_warning(u.local)


def row_control_dir_mismatch(ctx):
    u = Urbs(ctx.port, SERIAL)
    u.set_configuration()
    # GET_DESCRIPTOR (bmRequestType IN) sent as OUT with an 18-byte data stage.
    seq = u.submit(0, DIR_OUT, 18, GET_DEV, data=b"\xee" * 18)
    u.expect_submit(seq, EINVAL, 0)
    # SET_LINE_CODING (bmRequestType OUT) sent as IN.
    seq = u.submit(0, DIR_IN, 7, setup_packet(0x21, 0x20, 0, 0, 7))
    u.expect_submit(seq, EINVAL, 0)
    ctx.still_works(u)
    u.close()


def row_out_short_payload(ctx):
    u = Urbs(ctx.port, STORAGE)
    u.set_configuration()
    u.send(cmd_submit(u.next_seq(), u.devid, DIR_OUT, 2, MiB) + b"\x55" * 100)
    time.sleep(0.2)
    check(u.is_open(0.1), "the server closed while the payload was still coming")
    u.close()
    ctx.importable(STORAGE)


def row_out_unknown_ep(ctx):
    u = Urbs(ctx.port, KEYBOARD)
    u.set_configuration()
    # ep 1 OUT does not exist on the keyboard: the URB fails, its payload is drained.
    seq = u.submit(1, DIR_OUT, 300, data=b"\x01" * 300)
    u.expect_submit(seq, EPIPE, 0)
    ctx.still_works(u)
    u.close()


def row_before_configuration(ctx):
    u = Urbs(ctx.port, STORAGE)
    seq = u.submit(1, DIR_IN, 13)
    u.expect_submit(seq, EPIPE, 0)
    ctx.still_works(u)
    u.close()


def row_unlink_storm(ctx):
    u = Urbs(ctx.port, SERIAL)
    u.set_configuration()
    n = 10000
    base = 1_000_000
    u.send(b"".join(cmd_unlink(base + i, u.devid, 5_000_000 + i) for i in range(n)))
    for i in range(n):
        r = u.read_reply(timeout=20)
        check(r["command"] == RET_UNLINK and r["seqnum"] == base + i and r["status"] == 0,
              f"unlink #{i}: got command {r['command']} seqnum {r['seqnum']} "
              f"status {r['status']}, want RET_UNLINK {base + i} status 0")
    ctx.still_works(u)
    u.close()


def row_pipelined_5000(ctx):
    u = Urbs(ctx.port, SERIAL)
    u.set_configuration()
    n = 5000
    seqs = [u.next_seq() for _ in range(n)]
    for s in seqs:
        u.sent[s] = (DIR_IN, 18)
    u.send(b"".join(cmd_submit(s, u.devid, DIR_IN, 0, 18, GET_DEV) for s in seqs))
    time.sleep(1.0)  # replies pile up on the server's side
    for i, s in enumerate(seqs):
        r = u.read_reply(timeout=20)
        check(r["command"] == RET_SUBMIT and r["seqnum"] == s and r["status"] == 0 and
              r["actual"] == 18, f"reply #{i}: {r['command']}/{r['seqnum']} status "
                                 f"{r.get('status')} actual {r.get('actual')}, want {s}")
    ctx.still_works(u)
    u.close()


def socket_buffer_bytes():
    """The most a loopback TCP connection can hold in flight: the receiver's largest buffer
    (tcp_rmem max, reached by autotuning) and the sender's (tcp_wmem max)."""
    total = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        with open(f"/proc/sys/net/ipv4/{name}") as f:
            total += int(f.read().split()[2])
    return total


def row_never_reads(ctx):
    """Streams pipelined READ(10)s from the storage device (each CBW followed by the bulk IN URBs
    of its 4 MiB data stage and the CSW) and never reads a reply. Every IN URB's 64 KiB buffer is
    held until its reply is written, so once the socket buffers are full the server must stop
    reading (docs: at most 64 MiB of URB buffers per session) and its memory must stay bounded."""
    u = Urbs(ctx.port, STORAGE)
    u.set_configuration()
    u.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    base = ctx.srv.rss_kib()
    blocks = (4 * MiB) // 512
    read10 = struct.pack(">BBIBHB", 0x28, 0, 0, 0, blocks, 0)
    t0 = time.monotonic()
    sent = cycles = 0
    blocked = False
    peak = 0
    u.sock.settimeout(3.0)
    seq = 1
    # Bounded by work, not time: twice as many bytes of requests as the kernel's socket
    # buffers can hold, beyond what the 64 MiB budget lets the server take in; a server that is
    # still reading then keeps no budget. (The wall-clock bound is only a safety net.)
    max_cycles = 2 * socket_buffer_bytes() // (66 * 48) + 1000
    while cycles < max_cycles and time.monotonic() - t0 < 600:
        cbw = struct.pack("<IIIBBB", 0x43425355, cycles + 1, 4 * MiB, 0x80, 0, 10) + \
            read10.ljust(16, b"\0")
        msg = [cmd_submit(seq, u.devid, DIR_OUT, 2, 31) + cbw]
        for i in range(64):
            msg.append(cmd_submit(seq + 1 + i, u.devid, DIR_IN, 1, 65536))
        msg.append(cmd_submit(seq + 65, u.devid, DIR_IN, 1, 13))
        seq += 66
        try:
            u.sock.sendall(b"".join(msg))
        except socket.timeout:
            blocked = True
            break
        except (BrokenPipeError, ConnectionResetError):
            raise Fail(f"the server closed the connection after {sent} URBs") from None
        sent += 66
        cycles += 1
        peak = max(peak, ctx.srv.rss_kib() - base)
        if peak > 200 * 1024:
            break
    peak = max(peak, ctx.srv.rss_kib() - base)
    u.close()
    ctx.srv_peak_note = (f"sent {cycles} READ(10) cycles of 4 MiB ({sent} URBs) in "
                         f"{time.monotonic() - t0:.1f}s without reading, blocked={blocked}, "
                         f"server RSS +{peak / 1024:.0f} MiB")
    check(peak <= 200 * 1024 and blocked,
          "the server kept reading from a client that reads no replies: " + ctx.srv_peak_note)
    check(ctx.srv.alive(), "server died")
    ctx.importable(STORAGE)


def row_never_reads_sync(ctx):
    """The same with URBs the device completes at once: GET_DESCRIPTOR(CONFIGURATION) with
    wLength = transfer_buffer_length = 65535 on ep 0, pipelined, no reply read. Each holds a
    64 KiB buffer until its reply is written; the server must stop reading at its budget."""
    u = Urbs(ctx.port, SERIAL)
    u.set_configuration()
    u.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 256 * 1024)
    base = ctx.srv.rss_kib()
    setup = get_descriptor_setup(2, 0, 0xffff)
    t0 = time.monotonic()
    sent = 0
    blocked = False
    peak = 0
    u.sock.settimeout(3.0)
    # Bounded by work: twice as many bytes of requests as the socket buffers can hold, beyond
    # the budget's 1,024 URBs of 64 KiB (the wall-clock bound is only a safety net).
    max_sent = 2 * socket_buffer_bytes() // 48 + 5000
    while sent < max_sent and time.monotonic() - t0 < 600:
        batch = b"".join(cmd_submit(sent + i + 1, u.devid, DIR_IN, 0, 65535, setup)
                         for i in range(5000))
        try:
            u.sock.sendall(batch)
        except socket.timeout:
            blocked = True
            break
        except (BrokenPipeError, ConnectionResetError):
            raise Fail(f"the server closed the connection after {sent} URBs") from None
        sent += 5000
        peak = max(peak, ctx.srv.rss_kib() - base)
        if peak > 200 * 1024:
            break
    peak = max(peak, ctx.srv.rss_kib() - base)
    u.close()
    ctx.srv_peak_note = (f"sent {sent} GET_DESCRIPTOR(wLength 65535) URBs in "
                         f"{time.monotonic() - t0:.1f}s without reading, blocked={blocked}, "
                         f"server RSS +{peak / 1024:.0f} MiB")
    check(peak <= 200 * 1024 and blocked,
          "the server kept reading from a client that reads no replies: " + ctx.srv_peak_note)
    check(ctx.srv.alive(), "server died")
    ctx.importable(SERIAL)


def row_unlink_inflight(ctx):
    u = Urbs(ctx.port, KEYBOARD)
    u.set_configuration()
    target = u.submit(1, DIR_IN, 8, interval=10)
    time.sleep(0.05)
    useq = u.unlink(target)
    r = u.read_reply()
    check(r["command"] == RET_UNLINK and r["seqnum"] == useq and r["status"] == ECONNRESET,
          f"got command {r['command']} seqnum {r['seqnum']} status {r.get('status')}, want "
          f"RET_UNLINK {useq} status -104")
    u.sent.pop(target)
    # Never a RET_SUBMIT for the target: the next reply is the next request's.
    seq = u.submit(0, DIR_IN, 18, GET_DEV)
    r = u.read_reply()
    check(r["command"] == RET_SUBMIT and r["seqnum"] == seq,
          f"after the unlink: command {r['command']} seqnum {r['seqnum']}, want RET_SUBMIT {seq}")
    u.close()


def row_unlink_completed(ctx):
    u = Urbs(ctx.port, SERIAL)
    u.set_configuration()
    target = u.submit(0, DIR_IN, 18, GET_DEV)
    useq = u.unlink(target)  # pipelined: the GET_DESCRIPTOR has completed by then
    u.expect_submit(target, 0, 18)
    r = u.read_reply()
    check(r["command"] == RET_UNLINK and r["seqnum"] == useq and r["status"] == 0,
          f"got command {r['command']} seqnum {r['seqnum']} status {r.get('status')}, want "
          f"RET_UNLINK {useq} status 0")
    # and again, after the reply was read
    useq = u.unlink(target)
    r = u.read_reply()
    check(r["command"] == RET_UNLINK and r["seqnum"] == useq and r["status"] == 0,
          f"second unlink: {r}")
    u.close()


def row_close_with_inflight(ctx):
    u = Urbs(ctx.port, KEYBOARD)
    u.set_configuration()
    for _ in range(4):
        u.submit(1, DIR_IN, 8, interval=10)
    time.sleep(0.05)
    u.close()
    ctx.importable(KEYBOARD)


def rows():
    r = [
        ("op: every truncated prefix of OP_REQ_IMPORT, then close", row_truncated_import),
        ("op: every truncated prefix of OP_REQ_DEVLIST, then close", row_truncated_devlist),
    ]
    for v in (0x0110, 0x0000, 0xffff):
        r.append((f"op: version 0x{v:04x} -> closed, logged",
                  lambda ctx, v=v: op_close(ctx, req_import(SERIAL, version=v),
                                            r"op_common\.version")))
    r.append(("op: OP_REQ_IMPORT with status 1 -> closed, logged",
              lambda ctx: op_close(ctx, req_import(SERIAL, status=1), r"op_common\.status")))
    r.append(("op: OP_REQ_DEVLIST with status 0xffffffff -> closed, logged",
              lambda ctx: op_close(ctx, op_common(OP_REQ_DEVLIST, 0xffffffff),
                                   r"op_common\.status")))
    for code in (0x8002, 0x8004, 0x0005, 0xffff):
        r.append((f"op: code 0x{code:04x} -> closed, logged",
                  lambda ctx, code=code: op_close(ctx, req_import(SERIAL, code=code),
                                                  r"op_common\.code")))
    r += [
        ("op: busid of 32 'A' without NUL -> closed, logged",
         lambda ctx: op_close(ctx, op_common(OP_REQ_IMPORT) + b"A" * 32, "busid")),
        ("op: empty busid -> closed, logged",
         lambda ctx: op_close(ctx, op_common(OP_REQ_IMPORT) + b"\0" * 32, "busid")),
        ("op: busid of a device in use -> status 2, closed", row_busy_busid),
        ("op: unknown busid -> status 4, closed", row_unknown_busid),
        ("op: busid with ESC sequences and a newline -> status 4, logged escaped",
         row_hostile_busid),
        ("op: 1 MiB of random bytes -> closed, logged", row_random_mib),
        ("op: OP_REQ_IMPORT and a URB header one byte per segment -> answered",
         row_bytewise_import),
        ("op: OP_REQ_DEVLIST one byte per segment -> answered, in-use device not listed",
         row_bytewise_devlist),
        ("op: connect and say nothing -> closed at the 2 s handshake deadline", row_silent),
        ("op: 200 connections opened and closed/reset quickly", row_storm),
        ("op: OP_REQ_DEVLIST followed by garbage -> list, then closed",
         row_devlist_then_garbage),
        ("op: OP_REQ_IMPORT and a CMD_SUBMIT in one segment -> both answered",
         row_import_and_urb_in_one_segment),
        ("urb: truncated header, then close -> device importable again", row_truncated_header),
        ("urb: transfer_buffer_length -1 (IN) -> closed, logged, importable again",
         tbl_row(-1, DIR_IN, 1)),
        ("urb: transfer_buffer_length -1 (OUT) -> closed, logged, importable again",
         tbl_row(-1, DIR_OUT, 2)),
        ("urb: transfer_buffer_length 0x7fffffff -> closed, logged, importable again",
         tbl_row(0x7fffffff, DIR_OUT, 2)),
        ("urb: transfer_buffer_length 16 MiB + 1 -> closed, logged, importable again",
         tbl_row(16 * MiB + 1, DIR_IN, 1)),
        ("urb: control transfer_buffer_length 65536 -> closed, logged", row_control_too_long),
        ("urb: number_of_packets 2000 on an unknown endpoint -> -EPIPE, connection stays",
         row_iso_np_unknown_ep),
        ("urb: number_of_packets 2000 / -1 on bulk endpoints -> ignored, 0 / -1 echoed",
         row_np_on_bulk),
        ("urb: wrong devid -> closed, logged", row_wrong_devid),
        ("urb: CMD_UNLINK with a wrong devid -> closed, logged", row_unlink_wrong_devid),
    ]
    for command in (0, 3, 4, 5, 0xffffffff):
        r.append((f"urb: command {command:#x} -> closed, logged", command_row(command)))
    r += [
        ("urb: direction 2 -> closed, logged", row_direction_2),
        ("urb: ep 16 -> closed, logged", ep_row(16)),
        ("urb: ep 255 -> closed, logged", ep_row(255)),
        ("urb: duplicate seqnum of an in-flight URB -> closed, logged", row_duplicate_seqnum),
        ("urb: control transfer_buffer_length != wLength -> -EINVAL, connection stays",
         row_control_len_mismatch),
        ("urb: control direction contradicting bmRequestType -> -EINVAL, connection stays",
         row_control_dir_mismatch),
        ("urb: OUT to a missing endpoint -> -EPIPE, payload drained", row_out_unknown_ep),
        ("urb: bulk before SET_CONFIGURATION -> -EPIPE, connection stays",
         row_before_configuration),
        ("urb: OUT announcing 1 MiB, 100 bytes sent, close -> importable again",
         row_out_short_payload),
        ("urb: 10,000 CMD_UNLINKs of unknown seqnums -> RET_UNLINK 0 each, in order",
         row_unlink_storm),
        ("urb: 5,000 pipelined GET_DESCRIPTORs read late -> all answered in order",
         row_pipelined_5000),
        ("urb: unlink of an in-flight interrupt URB -> RET_UNLINK -104 only",
         row_unlink_inflight),
        ("urb: unlink of a completed URB -> RET_SUBMIT, then RET_UNLINK 0",
         row_unlink_completed),
        ("urb: close with interrupt URBs in flight -> importable again",
         row_close_with_inflight),
        ("urb: a client that never reads replies (storage READ stream) -> server stops "
         "reading, RSS bounded", row_never_reads),
        ("urb: a client that never reads replies (URBs completing at once) -> server stops "
         "reading, RSS bounded", row_never_reads_sync),
    ]
    return r


def run(tap, build, workdir, only_rows=None):
    srv = Server(build, workdir, "hostile", extra=["--handshake-timeout", "2"]).start()
    ctx = Ctx(srv)
    honest = Honest(srv.port)
    honest.start()
    honest.ready.wait(120)
    try:
        tap.ok(not honest.errors and honest.ready.is_set(), "hostile: honest session on 99-4 started",
               "; ".join(honest.errors))
        last = honest.count
        for name, fn in rows():
            if only_rows and not any(o in name for o in only_rows):
                continue
            t0 = time.monotonic()
            ctx.mark = len(srv.log())
            ok = tap.run(f"hostile {name}", fn, ctx)
            # After every row: the honest session progressed and the server lives.
            # A safety net only: progress is normally seen within milliseconds.
            deadline = time.monotonic() + 60
            while honest.count <= last and time.monotonic() < deadline and not honest.errors:
                time.sleep(0.01)
            problems = []
            if honest.count <= last:
                problems.append(f"honest session made no progress ({honest.count} URBs)")
            if honest.errors:
                problems.append("honest session failed: " + "; ".join(honest.errors))
            if not srv.alive():
                problems.append(f"server died:\n{srv.tail()}")
            last = honest.count
            if problems:
                tap.ok(False, f"hostile {name}: honest session and server unaffected",
                       "\n".join(problems))
                if not srv.alive() or honest.errors:
                    break
            note = getattr(ctx, "srv_peak_note", None)
            ctx.srv_peak_note = None
            if note and ok:
                tap.comment(note)
            elif note:
                if "at once" in name:
                    tap.bug("backpressure does not bound memory: a client that never reads its "
                            "replies is read forever when its URBs complete at once.\n"
                            "Sent on 99-3: CMD_SUBMIT ep 0 IN GET_DESCRIPTOR(CONFIGURATION), "
                            "wLength = transfer_buffer_length = 65535, pipelined, unique "
                            "seqnums, no reply read.\n"
                            "uw_server.c: handle_urb_hdr() pauses only if s->inflight > 0 and "
                            "over_budget() only if s->mem >= max_bytes && s->inflight > 0; "
                            "completed URBs whose replies wait in the output queue keep their "
                            "buffers (s->mem) but inflight drops to 0, so reading resumes and "
                            "s->mem grows past the 64 MiB budget without limit.\n"
                            + note)
            if time.monotonic() - t0 > 1:
                tap.comment(f"  point {tap.n}: {time.monotonic() - t0:.1f}s; honest session at "
                            f"{honest.count} URBs")
    finally:
        honest.stop_flag = True
        honest.join(15)
        tap.ok(not honest.errors and not honest.is_alive() and honest.count > 0,
               f"hostile: honest session on 99-4 unaffected throughout ({honest.count} URBs)",
               "; ".join(honest.errors) or ("still running" if honest.is_alive() else ""))
        problems = srv.stop()
        tap.ok(not problems, "hostile: server exits 0 on SIGTERM, no sanitizer report",
               "\n".join(problems))
