"""Body-mount calibration: the gain that makes the node's estimate match a reference drive.

Drive a stretch whose IRI is known (here: a scenario's truth; in the field: a profiler survey),
run the node's pipeline with body_gain = 1, and take the gain that makes the mean estimated IRI
equal the mean true IRI over the segments the node could measure."""

from __future__ import annotations

from roadnode.errors import InputError
from roadnode.estimator.golden import run_golden
from roadnode.scenario.fileformat import Scenario

_UNMEASURED = 0x01 | 0x02 | 0x04 | 0x80


def calibrate_body_gain(sc: Scenario, settings: dict | None = None) -> float:
    s = {**(settings or {}), "mount": "body", "body_gain": 1.0}
    segs = run_golden(sc, s)["segments"]
    truth = {i: t["true_iri_m_per_km"] for i, t in enumerate(sc.segments)}
    pairs = [(x[4] / 100, truth[x[0]]) for x in segs if x[4] != 0xFFFF and not x[8] & _UNMEASURED and x[0] in truth]
    if len(pairs) < 3:
        raise InputError(f"reference drive has only {len(pairs)} measurable segments; need at least 3")
    return round(sum(t for _, t in pairs) / sum(e for e, _ in pairs), 3)
