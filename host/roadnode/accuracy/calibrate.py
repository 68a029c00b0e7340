"""Body-mount calibration: the gain that makes the node's estimate match a reference drive.

Drive a stretch whose IRI is known (a scenario's truth, or in the field a profiler survey given
per segment), run the node's pipeline with body_gain = 1, and take the gain that makes the mean
estimated IRI equal the mean reference IRI over the segments the node could measure."""

from __future__ import annotations

import math

from roadnode.errors import InputError
from roadnode.accuracy.golden import run_golden
from roadnode.scenario.fileformat import Scenario

UNMEASURED = 0x01 | 0x02 | 0x04 | 0x80  # below min speed, stopped, GPS lost, IMU fault
_NA = 0xFFFF


def reference_of(sc: Scenario, reference=None) -> dict[int, float]:
    """{segment index: reference IRI m/km}: ``reference`` as a mapping or a sequence by segment index
    (None/NaN where unknown), or the scenario's own truth when it is None."""
    if reference is None:
        reference = [s["true_iri_m_per_km"] for s in sc.segments]
    items = reference.items() if hasattr(reference, "items") else enumerate(reference)
    out = {}
    for i, v in items:
        if v is None:
            continue
        v = float(v)
        if math.isfinite(v) and v > 0:
            out[int(i)] = v
    return out


def measured_pairs(segments, ref: dict[int, float]) -> list[tuple[float, float, float]]:
    """(estimated IRI, reference IRI, speed km/h) of the segments the node measured (an IRI, no
    flag that voids it) and the reference covers."""
    return [(s[4] / 100.0, ref[s[0]], float(s[7])) for s in segments
            if s[4] != _NA and not s[8] & UNMEASURED and s[0] in ref]


def calibrate_body_gain(sc: Scenario, settings: dict | None = None, reference=None) -> float:
    """body_gain for a body-mounted node: mean reference IRI / mean estimate with gain 1 (see module)."""
    s = {**(settings or {}), "mount": "body", "body_gain": 1.0}
    return gain_of(measured_pairs(run_golden(sc, s)["segments"], reference_of(sc, reference)))


def gain_of(pairs) -> float:
    """body_gain from measured_pairs() made with gain 1: mean reference / mean estimate (at least 3)."""
    if len(pairs) < 3:
        raise InputError(f"reference drive has only {len(pairs)} measurable segments; need at least 3")
    return round(sum(t for _, t, _ in pairs) / sum(e for e, _, _ in pairs), 3)
