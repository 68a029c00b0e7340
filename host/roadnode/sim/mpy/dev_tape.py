"""Scenario tapes as hardware inputs: IMU samples for the register models, NMEA bytes for the UART.

imu tape: int32 little-endian x, y, z per sample in g/16384 units, one per ODR tick.
gps tape: records of u32 t_us (first byte on the wire), u16 length, bytes; byte i of a sentence
arrives at t_us + i * 10e6 / baud (10 bits per byte), so the UART sees realistic pacing.
Both read the file in small blocks: the tapes never sit in the ESP32-sized heap.
"""

import struct


class ImuTape:
    _N = 32

    def __init__(self, path):
        self.f = open(path, "rb")
        self.buf = bytearray(12 * self._N)
        self.n = 0
        self.i = 0
        self.done = False
        self.samples = 0

    def next(self, v):
        if self.i >= self.n:
            k = self.f.readinto(self.buf)
            self.n = (k or 0) // 12
            self.i = 0
            if self.n == 0:  # tape over: the sensor sits still (1 g up)
                self.done = True
                v[0] = 0
                v[1] = 0
                v[2] = 16384
                return
        b = self.buf
        o = self.i * 12
        for k in range(3):
            x = b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)
            if x & 0x80000000:
                x -= 0x100000000
            v[k] = x
            o += 4
        self.i += 1
        self.samples += 1


class GpsTape:
    def __init__(self, path, baud):
        self.f = open(path, "rb")
        self.us_per_byte = 10000000 // baud
        self.cur = bytearray(128)
        self.cur_len = 0
        self.cur_t = 0
        self.pos = 0  # bytes of the current sentence already delivered
        self._hdr = bytearray(6)
        self.eof = False
        self._load()

    def _load(self):
        if self.f.readinto(self._hdr) != 6:
            self.eof = True
            self.cur_len = 0
            return
        self.cur_t, n = struct.unpack("<IH", self._hdr)
        if n > len(self.cur):
            self.cur = bytearray(n)
        self.f.readinto(memoryview(self.cur)[:n])
        self.cur_len = n
        self.pos = 0

    def _arrived(self, now_us):
        import simhw

        t0 = simhw.stream_t0_us
        if t0 is None:
            return 0
        # scenario time, whole milliseconds: the ESP32's UART driver hands bytes over in chunks
        # (FIFO threshold / rx timeout), and offline runs use the same millisecond grid
        now_us = (now_us - t0) // 1000 * 1000
        if self.eof or now_us < self.cur_t:
            return 0

        f = simhw.faults
        if f.get("gps_silent_from", -1) <= now_us < f.get("gps_silent", -1):
            # the receiver is silent (antenna cable, power): its bytes never come
            self.pos = self.cur_len
            self._load()
            return 0
        k = (now_us - self.cur_t) // self.us_per_byte + 1
        return min(k, self.cur_len) - self.pos

    def any(self, now_us):
        return max(0, self._arrived(now_us))

    def read_into(self, buf, now_us, nbytes):
        import simhw

        f = simhw.faults
        t0 = simhw.stream_t0_us or 0
        if f.get("gps_garbage_from", -1) <= now_us - t0 < f.get("gps_garbage", -1) and nbytes > 8:
            # line noise / a loose connector: bytes that are not NMEA, mixed into the stream
            self._lcg = (getattr(self, "_lcg", 12345) * 1103515245 + 12345) & 0x7FFFFFFF
            for i in range(8):
                buf[i] = (self._lcg >> (i * 3)) & 0xFF
            return 8 + self.read_into(memoryview(buf)[8:], now_us, nbytes - 8)
        o = 0
        while o < nbytes and not self.eof:
            k = self._arrived(now_us)
            if k <= 0:
                break
            k = min(k, nbytes - o)
            for i in range(k):
                buf[o + i] = self.cur[self.pos + i]
            o += k
            self.pos += k
            if self.pos >= self.cur_len:
                self._load()
        return o
