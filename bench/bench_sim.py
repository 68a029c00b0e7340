"""Virtual-time speed of the simulated board: a 10-minute drive at 200 Hz ODR through the full node
(firmware main loop, drivers on register models, NMEA UART, packets, the CPU charged at the ESP32's
speed). Floor (issue 17): 300x real time.

Printed for each of several runs and as the best: board seconds per wall second, and per second of
CPU the simulation used (the interpreter's user + system time: what the figure would be on a
machine to itself; a busy machine lowers the wall figure, hardly this one). The set-up (pystone
figure, flash image, provisioning) is in both; the pystone figure is measured once, before.

    python bench/bench_sim.py [--runs 3]
"""

import argparse
import os
import time

from roadnode.mpy import runtime
from roadnode.scenario import make_scenario
from roadnode.sim.offline import run_scenario


def main():
    """Drive the board a few times; print each run and the best."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="drives (default 3)")
    a = ap.parse_args()
    sc = make_scenario(iso_class="C", length_m=9800, speed_kmh=60, odr_hz=200, seed=5)
    runtime.unix_speed()  # once per process, as every run in a test session shares it
    board_s = sc.meta["duration_s"]
    walls, cpus = [], []
    for _ in range(a.runs):
        c0 = os.times()
        t0 = time.perf_counter()
        r = run_scenario(sc)
        dt = time.perf_counter() - t0
        c1 = os.times()
        cpu = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)
        walls.append(dt)
        cpus.append(cpu)
        segs = sum(p["type"] == "segment" for p in r["packets"])
        print(f"drive {board_s:.0f} s of board time at 200 Hz ({r['heap']['produced']:,} IMU samples, "
              f"{segs} segments): {dt:.1f} s wall = {board_s / dt:.0f}x real time; "
              f"{cpu:.2f} s CPU = {board_s / cpu:.0f}x per CPU second")
    best_wall, best_cpu = board_s / min(walls), board_s / min(cpus)
    print(f"best of {a.runs}: {best_wall:.0f}x real time (wall), {best_cpu:.0f}x per CPU second; "
          f"floor 300x: {'met' if best_wall >= 300 else 'NOT met'} (wall), "
          f"{'met' if best_cpu >= 300 else 'NOT met'} (CPU)")


if __name__ == "__main__":
    main()
