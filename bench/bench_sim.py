"""Virtual-time speed of the simulated board: a 10-minute drive at 200 Hz ODR through the full node
(firmware main loop, drivers on register models, NMEA UART, packets). Floor (issue 5): under 60 s."""

import time

from roadnode.scenario import make_scenario
from roadnode.sim.offline import run_scenario


def main():
    sc = make_scenario(iso_class="C", length_m=9800, speed_kmh=60, odr_hz=200, seed=5)
    t0 = time.perf_counter()
    r = run_scenario(sc)
    dt = time.perf_counter() - t0
    segs = sum(p["type"] == "segment" for p in r["packets"])
    print(f"drive {sc.meta['duration_s']:.0f} s of board time at 200 Hz ({r['heap']['produced']:,} IMU samples, "
          f"{segs} segments) in {dt:.1f} s: {sc.meta['duration_s'] / dt:.0f}x real time; "
          f"floor 60 s: {'met' if dt < 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
