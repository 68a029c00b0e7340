"""Fit a vehicle's node settings from one drive over a stretch of known roughness.

API (used by `roadnode calibrate` and bench/eval_accuracy.py):

    fit_settings(drive_scenario, reference_iri_per_segment, mount, settings=None) -> dict
        drive_scenario: a Scenario (simulated, or a capture: raw IMU samples + GPS bytes; no truth
            needed); reference_iri_per_segment: the reference IRI (m/km) of the drive's segments, a
            sequence by segment index or a {segment index: IRI} mapping, None/NaN where unknown
            (None as a whole: the scenario's own truth); mount: "axle" or "body"; settings: node
            settings the fit starts from and keeps (segment length, min speed, ...).
        Returns the fitted settings only, ready for `config set`:
            axle: {"wheel_hop_hz": float (0.1 Hz steps), "wheel_damping": float (0.001 steps)}
            body: {"body_gain": float (0.001 steps)}, plus "body_speed_exp" (0.01 steps) when the
                drive's measured segments span speeds at least 1.4x apart (e.g. 40 and 70 km/h)
        Raises roadnode.errors.InputError when fewer than 3 segments are both measured by the node
        and covered by the reference.

    score_settings(drive_scenario, reference_iri_per_segment, settings) -> dict
        {"n", "median_abs_err_pct", "p90_abs_err_pct", "bias_pct"} of the node's IRI with these
        settings against the reference, on the segments the node measured (for before/after).

Method. Axle: the node reconstructs the road from the axle with the inverse of a one-mass wheel-hop
resonance (docs/estimator.md, step 3); the fit chooses its frequency and damping by least squares
of log(estimate / reference) over the measured segments, running the firmware's own pipeline (the
golden model) for each candidate: coarse searches along each setting over the accepted range, then
Nelder-Mead (scipy) from the best point (~50 runs of the pipeline over the drive). Body: the node
scales its estimate by (v / 80 km/h)^body_speed_exp (the suspension filters more of the road the
faster the car goes, and how much more depends on the vehicle); over a drive at several speeds the
exponent is corrected by the least-squares slope of log(reference / estimate) on log(v / 80 km/h),
then body_gain = mean reference / mean estimate with that exponent
(roadnode.accuracy.calibrate.gain_of): one run of the pipeline, two when the exponent is fitted. The axle fit and the
slope are log-scale so a segment reading 10% high weighs as much as one reading 10% low.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from roadnode.errors import InputError
from roadnode.accuracy.calibrate import gain_of, measured_pairs, reference_of
from roadnode.accuracy.golden import run_golden
from roadnode.scenario.fileformat import Scenario

HOP_RANGE = (5.0, 25.0)  # the config's accepted ranges (firmware/rnfw/config.py)
DAMPING_RANGE = (0.05, 1.0)
GAIN_RANGE = (0.05, 20.0)
SPEED_EXP_RANGE = (-2.0, 2.0)
_SPEED_SPAN = 1.4  # the body's speed exponent is fitted only on a drive whose speeds span this ratio
_GRID_HOP = (6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 19.0, 22.0)
_GRID_DAMPING = (0.08, 0.15, 0.25, 0.4, 0.65)
MIN_SEGMENTS = 3


def _pairs(sc: Scenario, ref: dict[int, float], settings: dict) -> list[tuple[float, float, float]]:
    return measured_pairs(run_golden(sc, settings)["segments"], ref)


def _stats(pairs) -> dict:
    if not pairs:
        return {"n": 0, "median_abs_err_pct": None, "p90_abs_err_pct": None, "bias_pct": None}
    e = np.array([100.0 * (est / ref - 1.0) for est, ref, _ in pairs])
    return {"n": len(e), "median_abs_err_pct": round(float(np.median(np.abs(e))), 2),
            "p90_abs_err_pct": round(float(np.percentile(np.abs(e), 90)), 2), "bias_pct": round(float(np.mean(e)), 2)}


def score_settings(drive_scenario: Scenario, reference_iri_per_segment, settings: dict | None = None) -> dict:
    """The node's error against the reference with these settings (see module)."""
    ref = reference_of(drive_scenario, reference_iri_per_segment)
    return _stats(_pairs(drive_scenario, ref, dict(settings or {})))


def _fit_axle(sc: Scenario, ref: dict[int, float], base: dict) -> dict:
    cache: dict[tuple[float, float], float] = {}

    def cost(hop: float, damping: float) -> float:
        """Mean squared log error of the estimates against the reference for these axle parameters (cached;
        penalised outside the accepted ranges)."""
        key = (round(float(np.clip(hop, *HOP_RANGE)), 1), round(float(np.clip(damping, *DAMPING_RANGE)), 3))
        if key not in cache:
            p = _pairs(sc, ref, {**base, "wheel_hop_hz": key[0], "wheel_damping": key[1]})
            if len(p) < MIN_SEGMENTS:
                raise InputError(f"reference drive has only {len(p)} measurable segments; need at least {MIN_SEGMENTS}")
            r = np.log([max(est, 1e-3) / r for est, r, _ in p])
            cache[key] = float(np.mean(r * r))
        # outside the accepted ranges the cost rises, so the search stays inside them
        return cache[key] + 10.0 * (max(0.0, HOP_RANGE[0] - hop, hop - HOP_RANGE[1])
                                    + max(0.0, DAMPING_RANGE[0] - damping, damping - DAMPING_RANGE[1]))

    # coarse: the frequency at a middling damping, then the damping at the best frequency, then
    # the frequency again at that damping (the two trade off: ~20 runs instead of a 40-point grid)
    d0 = 0.25
    h0 = min(_GRID_HOP, key=lambda h: cost(h, d0))
    d0 = min(_GRID_DAMPING, key=lambda d: cost(h0, d))
    h0 = min(_GRID_HOP, key=lambda h: cost(h, d0))
    optimize.minimize(lambda p: cost(p[0], p[1]), [h0, d0], method="Nelder-Mead",
                      options={"initial_simplex": [[h0, d0], [h0 + 1.5, d0], [h0, d0 * 1.4]],
                               "xatol": 0.05, "fatol": 1e-5, "maxfev": 30})
    best = min(cache.items(), key=lambda kv: kv[1])[0]  # the best point evaluated (grid or search)
    return {"wheel_hop_hz": best[0], "wheel_damping": best[1]}


def fit_settings(drive_scenario: Scenario, reference_iri_per_segment, mount: str, settings: dict | None = None) -> dict:
    """The vehicle's fitted settings from one reference drive (see module for arguments and method)."""
    if mount not in ("axle", "body"):
        raise InputError(f"mount must be axle or body, got {mount!r}")
    ref = reference_of(drive_scenario, reference_iri_per_segment)
    if len(ref) < MIN_SEGMENTS:
        raise InputError(f"the reference covers only {len(ref)} segments; need at least {MIN_SEGMENTS}")
    base = {**(settings or {}), "mount": mount}
    if mount == "body":
        return _fit_body(drive_scenario, ref, base)
    return _fit_axle(drive_scenario, ref, base)


def _fit_body(sc: Scenario, ref: dict[int, float], base: dict) -> dict:
    """body_gain, and body_speed_exp when the drive spans enough speeds (see module)."""
    from roadnode.mpy.fwimport import fw

    p0 = float(base.get("body_speed_exp", fw("config").defaults()["body_speed_exp"]))
    base = {**base, "body_gain": 1.0}
    pairs = _pairs(sc, ref, base)
    gain_of(pairs)  # (enough segments, before the slope)
    out = {}
    v = np.array([kmh for _, _, kmh in pairs])
    if v.min() > 0 and v.max() / v.min() >= _SPEED_SPAN:
        y = np.log([r / max(est, 1e-3) for est, r, _ in pairs])
        slope = float(np.polyfit(np.log(v / 80.0), y, 1)[0])
        out["body_speed_exp"] = round(float(np.clip(p0 + slope, *SPEED_EXP_RANGE)), 2)
        pairs = _pairs(sc, ref, {**base, **out})  # the estimates with that exponent
    return {"body_gain": float(np.clip(gain_of(pairs), *GAIN_RANGE)), **out}
