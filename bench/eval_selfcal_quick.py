"""Self-calibration on vehicles never seen (quick evaluation until bench/eval_accuracy.py covers it).

Per random quarter-car vehicle (roadnode.models.vehicle.random_vehicle, seeds 5000+ that no test
uses): a first 3 km drive (ISO classes B-D in stretches, 30-110 km/h with stops) from which the
vehicle is identified from its own axle acceleration twice: by the float prototype
(roadnode.accuracy.selfcal) and by the node's own self-calibration (rnfw.selfcal in the
firmware's pipeline under CPython, its last fit over all the drive's windows); then a second 4 km
drive (classes A-D, other seeds) measured by the firmware's pipeline (golden model) four ways:
default settings (no calibration), the two-mass inverse with the prototype's settings, with the
node's, and with the vehicle's true settings. Segments the node flags as not
measurable are left out. Prints per-vehicle rows and the totals: median/p90 |error|, signed bias
per vehicle, and the trend of error with speed (% per 10 km/h, least squares).

Usage: python bench/eval_selfcal_quick.py [N_VEHICLES] (default 12)
"""

import sys

import numpy as np

from roadnode.accuracy.golden import run_golden
from roadnode.accuracy.selfcal import identify, node_pipeline, true_settings
from roadnode.models.vehicle import random_vehicle
from roadnode.scenario import make_scenario
from roadnode.scenario.build import mixed_iso_road
from roadnode.scenario.speed import varied_limits

EXCLUDE = 0x01 | 0x02 | 0x04 | 0x80


def drive(v, seed, classes, length_m):
    """A drive of ``length_m`` over ISO stretches of ``classes`` at varied speeds with stops."""
    n = len(classes)
    road = mixed_iso_road([(c, length_m / n) for c in classes], seed=seed)
    limits, stops = varied_limits(length_m, seed)
    return make_scenario(road=road, length_m=length_m, speed_limits=limits, stops=stops, vehicle=v, seed=seed,
                         imu="mpu6050" if seed % 2 else "icm42688")


def node_identify(sc):
    """The node's self-calibration over the drive (the firmware's pipeline with self_cal on), its
    last fit taken over all the windows; (settings, windows)."""
    pipe = node_pipeline(sc)
    s = pipe.sc
    while s.fit is not None:
        s.step(pipe.est)
    s.due = s.nw
    s.step(pipe.est)
    while s.fit is not None:
        s.step(pipe.est)
    return s.cur, s.nw


def errors(sc, settings):
    """[(error, speed km/h)] of the measured segments."""
    truth = [s["true_iri_m_per_km"] for s in sc.segments]
    return [(s[4] / 100 / truth[s[0]] - 1, s[7]) for s in run_golden(sc, settings)["segments"]
            if not s[8] & EXCLUDE and s[4] != 0xFFFF and s[0] < len(truth)]


def summary(rows):
    """median |e|, p90 |e|, bias spread, speed trend (%/10 km/h)."""
    e = np.array([r[0] for r in rows])
    sp = np.array([r[1] for r in rows], float)
    trend = np.polyfit(sp, e, 1)[0] * 10 if len(e) > 2 else float("nan")
    return 100 * np.median(np.abs(e)), 100 * np.percentile(np.abs(e), 90), 100 * np.mean(e), 100 * trend


def main():
    nv = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    allr = {"default": [], "selfcal": [], "node": [], "true": []}
    bias = {k: [] for k in allr}
    print(f"{'vehicle':10} {'true hop/damp/body/rho':24} {'prototype':24} {'node':24} | bias default / prototype / node / true")
    for k in range(nv):
        v = random_vehicle(5000 + k)
        learn = drive(v, 7000 + k, "BCDC", 3000.0)
        ident = identify(learn)
        ev = drive(v, 9000 + k, "ABCD", 4000.0)
        st = ident.settings()
        nd, nw = node_identify(learn)
        res = {"default": errors(ev, {}), "selfcal": errors(ev, st), "node": errors(ev, nd or {}),
               "true": errors(ev, true_settings(v))}
        t = true_settings(v)
        for key, r in res.items():
            allr[key] += r
            bias[key].append(100 * np.mean([x[0] for x in r]))
        fmt = lambda d: f"{d['wheel_hop_hz']:.1f}/{d['wheel_damping']:.2f}/{d['body_hz']:.2f}/{d['mass_ratio']:.1f}"  # noqa: E731
        print(f"{v.name:10} {fmt(t):24} {fmt(st):24} {fmt(nd) if nd else 'none':24} | {bias['default'][-1]:+6.1f}% "
              f"{bias['selfcal'][-1]:+6.1f}% {bias['node'][-1]:+6.1f}% {bias['true'][-1]:+6.1f}%  "
              f"({len(res['selfcal'])} segments, {ident.windows} / {nw} windows)", flush=True)
    for key, rows in allr.items():
        med, p90, mean, trend = summary(rows)
        b = np.array(bias[key])
        print(f"{key:8}: {len(rows)} segments  median |err| {med:.1f}%  p90 {p90:.1f}%  mean {mean:+.1f}%  "
              f"vehicle bias {b.min():+.1f}..{b.max():+.1f}% (within 4%: {np.sum(np.abs(b) <= 4)}/{len(b)})  "
              f"speed trend {trend:+.2f}%/10 km/h")


if __name__ == "__main__":
    main()
