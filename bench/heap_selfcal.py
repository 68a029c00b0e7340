"""Heap, CPU and timing of the node's self-calibration (rnfw.selfcal). CPU: each of its steps timed
on the unix port and scaled to an ESP32 by the pystone ratio the simulated board uses
(roadnode.mpy.runtime.cpu_ratio): per batch (10 samples), per 512-sample window (one every 256
samples), per evaluation
of the fit. Heap, on the simulated board: the same
5 km drive of an unseen vehicle (random_vehicle(42), 30-110 km/h with stops) run with self_cal off
and on, console uplink; prints the firmware's lowest free heap and live heap while measuring, the
samples lost (FIFO overflows: the fit's passes must not starve the IMU drain) and when the node
first reported its identified settings.

    python bench/heap_selfcal.py
"""

from __future__ import annotations


CPU = """
import time, math
from array import array
from rnfw import selfcal, sc_fit
s = selfcal.SelfCal(200)
for c in range(3):
    s.cnt[c] = 10
    s.vs[c] = 150.0
    for j in range(len(s.K)):
        s.acc[c * len(s.K) + j] = 10.0
F = sc_fit.Fit(s)
q = [math.log((6.283 * 12) ** 2), math.log(7.5), math.log(6.283 * 1.4), math.log(0.3), math.log(0.15)]
b = array('h', [0, 0, 2048] * 10)
u = array('i', [0, 0, 0, 0, 0, 4096, 2048])
t0 = time.ticks_us()
for i in range(500):
    b[2] = 2048 + i % 50
    s.add(b, 10, u, 16000, True)
    s.full = False
    s.T[0] = 0
t1 = time.ticks_us()
for i in range(512):  # a rough-road-like window (no impact: the spectrum is computed)
    s.x[i] = (i * 7919) % 2001 - 1000
t1 = time.ticks_us()
for i in range(5):  # a full window: weighted (in add, as it fills), then its spectrum (step)
    s.imp = selfcal.prep(s.x, s.h, s.w)
    s.full = True
    s._window()
t2 = time.ticks_us()
for i in range(40):
    q[4] += 0.0001
    F._res(q, F.r)
t3 = time.ticks_us()
for i in range(40):
    q[0] += 0.0001
    F._res(q, F.r)
t4 = time.ticks_us()
print((t1 - t0) / 500, (t2 - t1) / 5, (t3 - t2) / 40, (t4 - t3) / 40)
"""


def cpu() -> None:
    """Per-step costs scaled to an ESP32 (ms) and the share of its CPU they take."""
    from roadnode.mpy import runtime
    from roadnode.mpy.build import compiled_firmware

    batch, win, ev_new, ev_cached = map(float, runtime.run_code(CPU, path=[compiled_firmware()]).stdout.split())
    r = runtime.cpu_ratio()
    print(f"ESP32 time (unix us x {r:.0f}): per 50 ms batch {batch * r / 1000:.2f} ms ({batch * r / 500:.2f}%), "
          f"per window (one every 1.28 s: they overlap by half) {win * r / 1000:.1f} ms ({win * r / 12800:.2f}%), per fit evaluation "
          f"{ev_new * r / 1000:.0f} ms (new contact length) / {ev_cached * r / 1000:.0f} ms (cached): "
          f"one every 4th pass = {ev_new * r / 2000:.0f}% / {ev_cached * r / 2000:.0f}% while a fit runs")


def main() -> None:
    cpu()
    from roadnode.models.vehicle import random_vehicle
    from roadnode.scenario import make_scenario
    from roadnode.scenario.build import mixed_iso_road
    from roadnode.scenario.speed import varied_limits
    from roadnode.sim.offline import run_scenario

    v = random_vehicle(42)
    road = mixed_iso_road([(c, 1250.0) for c in "BCDC"], seed=142)
    limits, stops = varied_limits(5000.0, 142)
    sc = make_scenario(road=road, length_m=5000.0, speed_limits=limits, stops=stops, vehicle=v, seed=142)
    print(f"drive: {sc.meta['duration_s']:.0f} s; true wheel hop {v.wheel_hop_hz():.1f} Hz")
    for on in ("off", "on"):
        r = run_scenario(sc, settings={"heartbeat_s": 10, "self_cal": on})
        h = r["heap"]
        fw_total = h["total"] - h["sim"]
        hb = [p for p in r["packets"] if p["type"] == "status"]
        first = next((p for p in hb if p["self_cal"]["state"] == "identified"), None)
        when = f"identified at uptime {first['uptime_s']} s: {first['self_cal']}" if first else "not identified"
        print(f"self_cal {on:3}: min free {h['min_free']} B, live heap at the end {fw_total - h['free']} B of "
              f"{fw_total}; lowest free in heartbeats {min(p['free_heap'] for p in hb)} B; "
              f"overflows {h['overflows']}, lost {h['lost']}; {when}")


if __name__ == "__main__":
    main()
