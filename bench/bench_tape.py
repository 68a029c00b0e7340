"""Cost of reading a tape (roadnode/mpy/lib/tape.py), per IMU sample, where it is read:

- the simulated board's IMU source (sim/mpy/dev_tape.ImuTape.next, once per ODR tick, on the unix
  port): the simulator pays it for every sample of a `sim run` or `sim serve` drive;
- `estimate`'s batches (ImuReader.read_until, 10 samples per 50 ms batch, on the unix port);
- the golden model's input under CPython (both readers through rnfw.pipeline.run_batches with a
  pipeline that does nothing), and writing the tape from the scenario (roadnode.sim.tape).

Minimum of 5 runs each (noise only adds). Usage: python bench/bench_tape.py
"""

import tempfile
import time
from array import array
from pathlib import Path

from roadnode.mpy import runtime
from roadnode.mpy.fwimport import fw
from roadnode.paths import SIM_MPY_DIR
from roadnode.scenario import make_scenario
from roadnode.sim.tape import readers, tape_bytes, write_tapes

MP = r"""
import utime, dev_tape, tape
from array import array
P = %r
v = array('i', (0, 0, 0))
out = array('h', bytes(6 * 128))
best_next = best_batch = 1 << 60
for r in range(5):
    t = dev_tape.ImuTape(P)
    n = t.samples
    t0 = utime.ticks_us()
    for i in range(n):
        t.next(v)
    best_next = min(best_next, utime.ticks_diff(utime.ticks_us(), t0))
    t.f.close()
    t = tape.ImuReader(P)
    ms = 0
    t0 = utime.ticks_us()
    while t.read_until(ms, out) >= 0:
        ms += 50
    best_batch = min(best_batch, utime.ticks_diff(utime.ticks_us(), t0))
    t.f.close()
print(n, best_next, best_batch)
"""


class _Null:
    def feed_gps(self, *a):
        pass

    def feed_imu(self, *a):
        pass


def main():
    sc = make_scenario(iso_class="C", length_m=3000, speed_kmh=60, seed=3)
    with tempfile.TemporaryDirectory() as d:
        info = write_tapes(sc, Path(d))
        out = runtime.run_code(MP % info["tape"], path=[SIM_MPY_DIR], timeout=600).stdout.split()
    n, t_next, t_batch = map(int, out)
    print(f"tape: {n} samples at {sc.meta['imu']['odr_hz']} Hz, {len(sc.gps_t_s)} GPS sentences")
    print(f"unix port, simulated IMU source (ImuTape.next): {1000 * t_next / n:.0f} ns per sample")
    print(f"unix port, estimate's batches (ImuReader.read_until): {1000 * t_batch / n:.0f} ns per sample")
    P = fw("pipeline")
    best_w = best_r = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        tape_bytes(sc)
        best_w = min(best_w, time.perf_counter() - t0)
        imu, gps = readers(sc)
        t0 = time.perf_counter()
        for _ in P.run_batches(_Null(), imu, gps, array("h", bytes(768)), bytearray(256)):
            pass
        best_r = min(best_r, time.perf_counter() - t0)
    print(f"CPython, writing the tape (tape_bytes): {1000 * best_w:.1f} ms")
    print(f"CPython, golden model's input (both readers, run_batches): {1e9 * best_r / n:.0f} ns per sample")


if __name__ == "__main__":
    main()
