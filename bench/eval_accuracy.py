"""Accuracy of the on-device estimator (the firmware's fixed-point code, run as the host golden
model) against the true profile IRI on simulated drives: axle mount, MPU-6050 and ICM-42688-P,
30-110 km/h, ISO classes A-D, sedan/suv/van/truck, 100 m segments.

Segments the node flags as not measurable (below minimum speed, stopped, GPS lost, IMU fault) are
left out, as a fleet tool would. Prints median and 90th-percentile |error| overall and by group.
Usage: python bench/eval_accuracy.py [--quick]
"""

import itertools
import sys

import numpy as np

from roadnode.estimator.golden import run_golden
from roadnode.models.vehicle import PRESETS
from roadnode.scenario import make_scenario

EXCLUDE = 0x01 | 0x02 | 0x04 | 0x80


def vehicle_settings(name):
    v = PRESETS[name]
    return {"wheel_hop_hz": round(v.wheel_hop_hz(), 1), "wheel_damping": round(v.cs / (2 * np.sqrt((v.ks + v.kt) * v.mu)), 2)}


def main():
    quick = "--quick" in sys.argv
    classes = "ABCD"
    vehicles = ["sedan", "suv", "van", "truck"]
    speeds = [30, 50, 80, 110] if not quick else [50, 90]
    imus = ["mpu6050", "icm42688"]
    rows = []
    for k, (cls, veh, spd, imu) in enumerate(itertools.product(classes, vehicles, speeds, imus)):
        if quick and k % 3:
            continue
        sc = make_scenario(iso_class=cls, length_m=800, speed_kmh=spd, vehicle=veh, imu=imu, seed=1000 + k)
        r = run_golden(sc, settings=vehicle_settings(veh))
        truth = {i: s["true_iri_m_per_km"] for i, s in enumerate(sc.segments)}
        for s in r["segments"]:
            if s[8] & EXCLUDE or s[4] == 0xFFFF or s[0] not in truth:
                continue
            err = s[4] / 100 / truth[s[0]] - 1
            rows.append((cls, veh, spd, imu, err))
    e = np.array([r[4] for r in rows])
    a = np.abs(e)
    print(f"segments: {len(e)}  median |err| {100 * np.median(a):.1f}%  p90 {100 * np.percentile(a, 90):.1f}%  "
          f"mean signed {100 * np.mean(e):+.1f}%")
    for idx, name in ((0, "class"), (1, "vehicle"), (2, "speed"), (3, "imu")):
        for key in sorted({r[idx] for r in rows}, key=str):
            sel = np.array([abs(r[4]) for r in rows if r[idx] == key])
            sg = np.array([r[4] for r in rows if r[idx] == key])
            print(f"  {name} {key}: median {100 * np.median(sel):.1f}%  p90 {100 * np.percentile(sel, 90):.1f}%  "
                  f"bias {100 * np.mean(sg):+.1f}%  (n={len(sel)})")


if __name__ == "__main__":
    main()
