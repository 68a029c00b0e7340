# Runs on MicroPython: the firmware's measuring pipeline over a scenario's recorded streams.
# Usage: micropython estimate.py TAPE_DIR CONFIG_JSON ODR PERIOD_MS LSB BAUD
# Prints "S" lines (segments) and "E" lines (events) as tab-separated integers.
import sys
import json
from array import array

from rnfw import config
from rnfw.pipeline import Pipeline, run_batches

tape_dir, config_path, odr, period, lsb, baud = sys.argv[1:7]
period = int(period)
cfg, _ = config.load(config_path)


class ImuReader:
    """int16 counts x, y, z per sample, at period_ms spacing from t = 0."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.i = 0
        self.raw = bytearray(6 * 128)

    def read_until(self, t_ms, out):
        want = (t_ms // period + 1) - self.i  # samples with time <= t
        if want > 128:
            want = 128
        if want <= 0:
            return 0
        k = self.f.readinto(memoryview(self.raw)[: 6 * want])
        if not k:
            return -1
        n = k // 6
        r = self.raw
        for j in range(3 * n):
            v = r[2 * j] | (r[2 * j + 1] << 8)
            out[j] = v - 65536 if v & 0x8000 else v
        self.i += n
        return n


class GpsReader:
    """Records of u32 t_us (first byte), u16 length, bytes; a byte is there once fully received."""

    def __init__(self, path, baud):
        self.f = open(path, "rb")
        self.us_per_byte = 10000000 // baud
        self.hdr = bytearray(6)
        self.cur = b""
        self.t = 0
        self.pos = 0
        self.eof = False
        self._next()

    def _next(self):
        if self.f.readinto(self.hdr) != 6:
            self.eof = True
            return
        h = self.hdr
        self.t = h[0] | (h[1] << 8) | (h[2] << 16) | (h[3] << 24)
        n = h[4] | (h[5] << 8)
        self.cur = self.f.read(n)
        self.pos = 0

    def read_until(self, t_ms, out):
        o = 0
        t_us = t_ms * 1000
        while not self.eof and o < len(out):
            avail = (t_us - self.t) // self.us_per_byte + 1
            if avail <= self.pos:
                break
            if avail > len(self.cur):
                avail = len(self.cur)
            while self.pos < avail and o < len(out):
                out[o] = self.cur[self.pos]
                o += 1
                self.pos += 1
            if self.pos >= len(self.cur):
                self._next()
        return o


pipe = Pipeline(cfg, int(odr), period, int(lsb))
samples = array("h", bytes(2 * 3 * 128))
gbuf = bytearray(256)
out = sys.stdout
for t in run_batches(pipe, ImuReader(tape_dir + "/imu16.bin"), GpsReader(tape_dir + "/gps.bin", int(baud)), samples, gbuf):
    q = pipe.est.closed
    while q.n:
        o = q.first()
        out.write("S\t" + "\t".join(str(q.buf[o + i]) for i in range(10)) + "\n")
        q.pop()
    q = pipe.est.events
    while q.n:
        o = q.first()
        out.write("E\t" + "\t".join(str(q.buf[o + i]) for i in range(6)) + "\n")
        q.pop()
