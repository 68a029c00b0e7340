"""Event detection on simulated drives with known features (the firmware's code, golden model).

Potholes (0.6 m x 50 mm) on ISO classes A-C at 40-80 km/h; speed humps (3.7 m x 75 mm) where they
are built, on A-B roads at 30-50 km/h. An event matches a feature of its kind within 6 m.
Also counts events on feature-free A/B roads (should be none). Usage: python bench/eval_events.py [N]
The preset sedan only: events on random vehicles at 20-110 km/h (and none below min_speed_kmh) are
part of bench/eval_accuracy.py.
"""

import sys

import numpy as np

from roadnode.accuracy.golden import run_golden
from roadnode.accuracy.report import match_events
from roadnode.scenario import make_scenario
from roadnode.science.roads import parse_feature


def drives(n):
    """(class, km/h, scenario, features) of ``n`` preset-sedan drives with potholes and humps."""
    rng = np.random.default_rng(0)
    for k in range(n):
        humps = k % 2 == 0
        cls = "AB"[k % 2 // 1 if humps else k % 2] if humps else "ABC"[k % 3]
        spd = [30, 40, 50][k % 3] if humps else [40, 60, 80][k % 3]
        feats, pos = [], 150
        while pos < 950:
            kind = "bump" if humps and rng.integers(2) else "pothole"
            feats.append(parse_feature(f"{kind}@{pos}"))
            pos += int(rng.integers(80, 160))
        yield cls, spd, make_scenario(iso_class=cls, length_m=1000, speed_kmh=spd, seed=100 + k, features=feats), feats


def score(n=12, verbose=False):
    """Precision and recall over ``drives(n)``, and events on feature-free smooth roads."""
    tp = fp = fn = 0
    for cls, spd, sc, feats in drives(n):
        a, b, c = match_events(run_golden(sc)["events"], feats)
        tp, fp, fn = tp + a, fp + b, fn + c
        if verbose and (b or c):
            print(f"class {cls} at {spd} km/h: {b} false, {c} missed")
    smooth = sum(len(run_golden(make_scenario(iso_class=c, length_m=1000, speed_kmh=s, seed=7))["events"])
                 for c in "AB" for s in (50, 90))
    return {"tp": tp, "fp": fp, "fn": fn, "precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn),
            "events_on_smooth_roads": smooth}


if __name__ == "__main__":
    r = score(int(sys.argv[1]) if len(sys.argv) > 1 else 12, verbose=True)
    print(f"precision {100 * r['precision']:.1f}%  recall {100 * r['recall']:.1f}%  (tp {r['tp']}, fp {r['fp']}, "
          f"fn {r['fn']}); events on 4 km of smooth roads: {r['events_on_smooth_roads']}")
