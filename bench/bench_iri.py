"""Throughput of the IRI core: vectorised filter vs the per-sample reference loop.

Prints profile points per second on 100 km at 0.05 m (2 million points) and the speed-up over
the plain Python recursion (timed on a shorter piece), measured in the same run.
Floor (issue 2): 20 million points/s for the core.
"""

import time

import numpy as np

from roadnode.science.iri import rectified_slope, rectified_slope_loop
from roadnode.science.roads import iso8608_profile


def best(f, n=3):
    t = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        t.append(time.perf_counter() - t0)
    return min(t)


def main():
    dx = 0.05
    _, z = iso8608_profile(100_000.0, dx=dx, iso_class="C", seed=1)
    n = len(z)
    t_core = best(lambda: rectified_slope(z, dx))
    short = z[:100_000]
    t_loop = best(lambda: rectified_slope_loop(short, dx), n=1) * (n / len(short))
    core = n / t_core
    loop = n / t_loop
    print(f"profile: 100 km at {dx} m = {n:,} points")
    print(f"core (lfilter): {core / 1e6:.1f} Mpts/s ({t_core * 1e3:.0f} ms)")
    print(f"per-sample loop: {loop / 1e6:.2f} Mpts/s")
    print(f"ratio: {core / loop:.0f}x; floor 20 Mpts/s: {'met' if core >= 20e6 else 'NOT met'}")


if __name__ == "__main__":
    main()
