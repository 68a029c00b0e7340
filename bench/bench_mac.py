"""Cost of sealing one MQTT message on the node (rnfw.auth.seal: u32 counter + HMAC-SHA256 tag, 8
bytes kept) on the MicroPython unix port, scaled to the ESP32 by the pystone ratio measured in the
same run (runtime.unix_speed(): unix pystones / ESP32_PYSTONES, 1,730), as a share of the node's
50 ms main-loop pass. Sealing happens once per message (a batch of up to ~19 packets, or a
heartbeat), never per sample. hashlib.sha256 is C on both ports, so the pystone ratio (a Python
bytecode figure) overstates the ESP32's share of the C part: the figure is an upper estimate.

    python bench/bench_mac.py            # 500-byte batch and a 52-byte heartbeat
"""

import tempfile

from roadnode.mpy import runtime
from roadnode.mpy.build import compiled_firmware

PASS_MS = 50.0
CODE = r"""
import time
from rnfw import auth
d = %r
with open(d + '/key.bin', 'wb') as f:
    f.write(bytes(range(16)))
auth.load(d)
for size in (500, 52):
    m = bytearray(size + 12)
    best = 1e9
    for r in range(5):
        n = 300
        t = time.ticks_us()
        for i in range(n):
            auth.seal(m, size)
        best = min(best, time.ticks_diff(time.ticks_us(), t) / n)
    print(size, best)
"""


def main() -> None:
    stones, _ = runtime.unix_speed()
    ratio = stones / runtime.ESP32_PYSTONES
    with tempfile.TemporaryDirectory() as d:
        out = runtime.run_code(CODE % d, path=[compiled_firmware()]).stdout.decode().split()
    print(f"unix port: {stones:.0f} pystones/s; ESP32 {runtime.ESP32_PYSTONES}: scale x{ratio:.1f}")
    for i in range(0, len(out), 2):
        size, us = int(out[i]), float(out[i + 1])
        esp = us * ratio
        print(f"seal of a {size}-byte message: {us:.1f} us on the unix port -> ~{esp / 1000:.2f} ms on the ESP32 "
              f"= {100 * esp / 1000 / PASS_MS:.2f}% of one 50 ms pass (once per message, not per sample)")


if __name__ == "__main__":
    main()
