"""Cost of the node's whole measuring path per IMU sample, on the MicroPython unix port:
FIFO bytes in (driver burst read + big-endian decode) -> estimator kernel (viper) -> bins ->
Golden Car -> segments and events out. The I2C bus is a stand-in that hands over FIFO bytes
already in RAM, as the ESP32's I2C peripheral does; the simulated IMU's own cost is left out.

ESP32 estimate = unix cost x 70 (pystone: ESP32 ~1,730, unix port here ~120,000; GUIDE §2).
Floors (issue 4): <= 5% of the ESP32 at 200 Hz, <= 15% at 1 kHz.
"""

import subprocess
import sys

from roadnode.mpy import runtime
from roadnode.mpy.build import compiled_firmware

CODE = r"""
import time
from array import array
from rnfw import config, pipeline, imu
ODR = %d
class FifoBus:
    # MPU-6050 registers as the driver reads them: status, count, then FIFO bytes
    def __init__(self, nrec):
        self.data = bytearray(6 * 170)
        for i in range(170):
            v = (i * 37) %% 2000 - 1000
            for k, x in enumerate((v, -v, 2048 + v // 4)):
                x &= 0xFFFF
                self.data[6 * i + 2 * k] = x >> 8
                self.data[6 * i + 2 * k + 1] = x & 255
        self.nrec = nrec
        self.pos = 0
    def readfrom_mem_into(self, addr, reg, buf):
        n = len(buf)
        if reg == 0x3A:
            buf[0] = 1
        elif reg == 0x72:
            c = 6 * self.nrec
            buf[0] = c >> 8
            buf[1] = c & 255
        elif reg == 0x75:
            buf[0] = 0x68
        else:
            p = self.pos
            buf[:] = self.data[p:p + n] if p + n <= len(self.data) else self.data[:n]
            self.pos = (p + n) %% (len(self.data) - 96)
    def writeto_mem(self, addr, reg, buf):
        pass
per = ODR // 20  # samples per 50 ms pass
bus = FifoBus(per)
d = imu.detect(bus, 0x68)
d.configure(ODR, 16, 0)
cfg = config.defaults()
p = pipeline.Pipeline(cfg, d.odr_hz, d.period_ms, d.lsb_per_g)
p.gps.fix_valid = True; p.gps.fixes = 1; p.gps.speed_mmps = 22222; p._fix_ms = 0
out = array('h', bytes(2 * 3 * 128))
N = 40000 // per
segs = 0
t0 = time.ticks_us()
for i in range(N):
    n = d.read(out)
    p.feed_imu(out, n, 0)
    q = p.est.closed
    while q.n:
        q.pop()
        segs += 1
t1 = time.ticks_us()
print(N * per, time.ticks_diff(t1, t0), segs)
"""


def pystone_ratio():
    return 120_000 / 1_730  # ~70, the GUIDE's figures for this machine and the ESP32


def main():
    path = [compiled_firmware()]
    for odr in (200, 1000):
        out = runtime.run_code(CODE % odr, path=path).stdout.decode().split()
        n, us, segs = int(out[0]), int(out[1]), int(out[2])
        per_sample = us / n
        esp32_us = per_sample * pystone_ratio()
        share = esp32_us * odr / 1e6 * 100
        floor = 5 if odr == 200 else 15
        print(f"ODR {odr} Hz: {n} samples, {segs} segments; unix port {per_sample:.2f} us/sample; "
              f"ESP32 estimate {esp32_us:.0f} us/sample = {share:.1f}% CPU (floor {floor}%: "
              f"{'met' if share <= floor else 'NOT met'})")


if __name__ == "__main__":
    main()
