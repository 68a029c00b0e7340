"""Time to build a 10 km drive scenario at 200 Hz (issue 2 floor: under a minute)."""

import tempfile
import time
from pathlib import Path

from roadnode.scenario import make_scenario, save_scenario


def main():
    t0 = time.perf_counter()
    sc = make_scenario(iso_class="C", length_m=10_000, speed_kmh=60, odr_hz=200, seed=1)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        save_scenario(sc, Path(d) / "s.npz")
    t2 = time.perf_counter()
    n = len(sc.imu_t_s)
    print(f"10 km at 200 Hz: {sc.meta['duration_s']:.0f} s of driving, {n:,} IMU samples, {len(sc.gps_t_s):,} NMEA sentences")
    print(f"build {t1 - t0:.2f} s + write {t2 - t1:.2f} s = {t2 - t0:.2f} s "
          f"({n / (t2 - t0):,.0f} IMU samples/s); floor 60 s: {'met' if t2 - t0 < 60 else 'NOT met'}")


if __name__ == "__main__":
    main()
