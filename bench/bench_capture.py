"""`roadnode capture`'s cost on the node and on the USB link: the firmware's capture stream
(rnfw.capture) run on the MicroPython unix port for a minute of passes at 200 Hz and 1 kHz, with a
typical GPS (5 Hz RMC + GGA, ~140 bytes a fix) and a GPS link kept full at 38400 baud (the worst).
Prints the bytes per second on the console against 115200 baud (11,520 B/s, 8N1) and the CPU per
50 ms pass, scaled to an ESP32 by the pystone ratio measured in the same run.

    python bench/bench_capture.py
"""

from __future__ import annotations

import sys

from roadnode.mpy import runtime
from roadnode.mpy.build import compiled_firmware

CODE = r"""
import sys, time
from array import array
from rnfw import capture
odr, gps_per_s = int(sys.argv[1]), int(sys.argv[2])
class E: pass
E.odr = odr; E.period_ms = 1000 // odr; E.lsb = 2048
class P: est = E()
class N: seq = 0; cfg = {"device_id": 7}; pipe = P(); ms = 0
class Sink:
    n = 0
    def write(self, b, k):
        self.n += k
        return k
class L: out = Sink()
class C: node = N(); link = L(); cap = None
c = capture.Capture(C())
k = odr // 20
s = array("h", [(i * 2731) % 20000 - 10000 for i in range(3 * 64)])
g = bytearray(b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n" * 4)
passes = 1200  # a minute
carry = 0
t0 = time.ticks_us()
for i in range(passes):
    now = 50 * (i + 1)
    c.t0 = now  # the host is there
    carry += gps_per_s
    m = carry // 20
    carry -= 20 * m
    if m:
        c.gps(g, m, now)
    c.imu(s, k, now, 0)
t = time.ticks_diff(time.ticks_us(), t0)
print(L.out.n, t)
"""


def main() -> int:
    ratio = runtime.cpu_ratio()
    fwd = compiled_firmware()
    link = 115200 / 10
    print(f"pystone ratio ESP32/unix port this run: {ratio:.1f}")
    for odr in (200, 1000):
        for label, gps in (("typical GPS (5 Hz RMC+GGA)", 700), ("GPS link full at 38400 baud", 3840)):
            best = None
            for _ in range(3):
                p = runtime.run(["-c", CODE, str(odr), str(gps)], path=[fwd], timeout=120)
                n, us = (int(x) for x in p.stdout.split())
                best = us if best is None else min(best, us)
            bps = n / 60
            per_pass = best / 1200
            esp = per_pass * ratio
            print(f"{odr:5d} Hz, {label:28s}: {bps:7.0f} B/s = {100 * bps / link:5.1f}% of 115200 baud; "
                  f"{per_pass:6.1f} us per pass here, ~{esp / 1000:5.2f} ms of an ESP32 = "
                  f"{100 * esp / 50000:4.1f}% of a 50 ms pass")
    return 0


if __name__ == "__main__":
    sys.exit(main())
