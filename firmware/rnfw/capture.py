"""The capture stream (`roadnode capture`, docs/protocol.md): the raw IMU batches and GPS UART bytes
exactly as the main loop hands them to the pipeline, sent to the host while the node goes on
measuring (segments, events and uplink as always).

Loaded only while a capture runs (rnfw.console starts it at the boot after a `capture start`) and
unloaded when it stops, so a node that is not capturing pays nothing for it. Each record is a reply
packet (status DATA, request id 0) in a COBS frame, built in buffers made once: nothing is allocated
per batch. The per-byte work (samples to bytes, CRC-16, COBS) is viper: in plain bytecode it cost
an ESP32 most of a 50 ms pass at 200 Hz, in viper ~2 ms (python bench/bench_capture.py).
Records: kind u8 (bit 7: more parts of this batch follow), record count u16 (the host sees a lost
frame), the pass time u32 (ms since the IMU's first sample), then
  1 IMU: lost samples u16, int16 x, y, z per sample (at most 25 per record)
  2 GPS: the UART bytes read in this pass (at most 153 per record)
  3 timing the estimator uses: odr_hz u16, period_ms u8, lsb_per_g u16 (first, and after a change)
  4 end: why u8 (1 the host went silent for _LEASE_MS, 2 asked to stop)
"""

import struct

import micropython
from micropython import const

import rnfw

_DATA = const(6)  # reply status of a stream record (rnfw.protocol.DATA)
_HDR = const(16)  # packet header 6 + reply fields 3 + record header 7
_MAX = const(160)  # payload bytes per record: the console's reply size
_PER = const(25)  # IMU samples per record: 7 + 2 + 25 * 6 = 159
_LEASE_MS = const(10000)  # (rnfw.console's): silent this long, the host is gone
_MASK = const(0x3FFFFFFF)
_IMU = const(1)
_GPS = const(2)
_HEAD = const(3)
_END = const(4)
_PARTS = const(0x80)  # kind bit: more parts of this batch follow


@micropython.viper
def _frame(p: ptr8, n: int, e: ptr8) -> int:
    """CRC-16/CCITT-FALSE of p[:n] appended at p[n:n + 2] (rnfw.crc), then p[:n + 2] COBS-encoded
    (rnfw.cobs) into e between two 0x00; returns the frame's length."""
    c = 0xFFFF
    i = 0
    while i < n:
        c ^= p[i] << 8
        j = 0
        while j < 8:
            if c & 0x8000:
                c = ((c << 1) ^ 0x1021) & 0xFFFF
            else:
                c = (c << 1) & 0xFFFF
            j += 1
        i += 1
    p[n] = c & 0xFF
    p[n + 1] = c >> 8
    n += 2
    e[0] = 0
    k = 1  # where the current block's code goes
    o = 2
    c = 1
    i = 0
    while i < n:
        b = p[i]
        if b == 0:
            e[k] = c
            k = o
            o += 1
            c = 1
        else:
            e[o] = b
            o += 1
            c += 1
            if c == 0xFF:
                e[k] = c
                k = o
                o += 1
                c = 1
        i += 1
    e[k] = c
    e[o] = 0
    return o + 1


@micropython.viper
def _put(s: ptr16, i: int, k: int, p: ptr8, o: int):
    """k int16 values s[i:i + k] as little-endian bytes at p[o:]."""
    e = i + k
    while i < e:
        v = s[i]
        p[o] = v & 0xFF
        p[o + 1] = (v >> 8) & 0xFF
        o += 2
        i += 1


@micropython.viper
def _copy(b: ptr8, i: int, m: int, p: ptr8, o: int):
    """b[i:i + m] to p[o:] (a slice would allocate)."""
    e = i + m
    while i < e:
        p[o] = b[i]
        o += 1
        i += 1


class Capture:
    """Sends what the main loop feeds the pipeline (imu(), gps()); stops itself when the host has
    been silent for _LEASE_MS (a capture never fills the node's RAM or its USB FIFO for nobody)."""

    def __init__(self, console):
        self.con = console
        self.node = console.node
        self.out = console.link.out
        self.pkt = bytearray(_HDR + _MAX)
        self.buf = bytearray(_HDR + _MAX + 8)  # the COBS frame: + 1 code byte per 254, 2 delimiters
        self.n = 0  # records sent (u16, wraps)
        self.t0 = 0  # node ms of the host's last word (the boot counts as one)
        self.odr = self.period_ms = self.lsb = 0  # the timing last reported

    def _send(self, kind, t, k):
        """The record whose k data bytes are in pkt[_HDR:], as a COBS frame on the console."""
        node = self.node
        node.seq = s = (node.seq + 1) & 0xFFFF
        d = node.cfg["device_id"]
        p = self.pkt
        struct.pack_into("<BHHBBBBBHI", p, 0, 0x14, s, d & 0xFFFF, d >> 16, 0, _DATA, k + 7, kind, self.n, t)
        self.n = (self.n + 1) & 0xFFFF
        self.out.write(self.buf, _frame(p, _HDR + k, self.buf))

    def imu(self, s, n, now, lost):
        """A drained batch: n samples of s (x, y, z) at pass time now, lost samples before it."""
        if (now - self.t0) & _MASK > _LEASE_MS:
            self.stop(1)
            return
        e = self.node.pipe.est
        p = self.pkt
        if e.odr != self.odr or e.period_ms != self.period_ms or e.lsb != self.lsb:
            self.odr, self.period_ms, self.lsb = e.odr, e.period_ms, e.lsb
            struct.pack_into("<HBH", p, _HDR, e.odr, e.period_ms, e.lsb)
            self._send(_HEAD, now, 5)
        if lost > 0xFFFF:
            lost = 0xFFFF
        i = 0
        while True:
            k = n - i
            if k > _PER:
                k = _PER
            p[_HDR] = lost & 0xFF
            p[_HDR + 1] = lost >> 8
            lost = 0  # counted once, in the batch's first record
            _put(s, 3 * i, 3 * k, p, _HDR + 2)
            i += k
            self._send(_IMU | _PARTS if i < n else _IMU, now, 2 + 6 * k)
            if i >= n:
                return

    def gps(self, b, k, now):
        """k UART bytes of b read at pass time now."""
        p = self.pkt
        i = 0
        while i < k:
            m = k - i
            if m > _MAX - 7:
                m = _MAX - 7
            _copy(b, i, m, p, _HDR)
            i += m
            self._send(_GPS, now, m)

    def stop(self, why):
        """The last record says why; the stream and this module leave the heap."""
        self.pkt[_HDR] = why
        self._send(_END, self.node.ms, 1)
        self.con.cap = None
        rnfw.unload("capture")
