"""Turn pipeline output into the JSON records tools print, and score it against the truth.

Segment and event tuples are passed through the firmware's own packet encoder and decoder, so
the field names (and units, and rounding) are exactly those of the packets a node sends."""

from __future__ import annotations

import numpy as np

from roadnode.mpy.fwimport import fw

# flags that mean "this segment could not be measured properly"; such segments are not scored
UNSCORED = {"below_min_speed", "stopped", "gps_lost", "imu_fault"}


def segment_record(t, device_id: int = 0, seq: int = 0) -> dict:
    """A segment tuple as the collector would store it: encoded and decoded by the firmware's own packet code."""
    P = fw("packet")
    buf = bytearray(64)
    n = P.encode_segment(buf, seq, device_id, *t[:9])
    d = fw("packet_decode").decode(bytes(buf[:n]))
    rec = {k: d[k] for k in ("type", "seg_index", "start_m", "end_m", "iri_m_per_km", "flags", "rms_g", "peak_g",
                             "speed_kmh", "lat", "lon", "segment_length_m")}
    if len(t) > 9:
        rec["samples"] = t[9]  # IMU samples in the segment (the estimator's count; not in the packet)
    return rec


def event_record(t, device_id: int = 0, seq: int = 0) -> dict:
    """An event tuple as the collector would store it: encoded and decoded by the firmware's own packet code."""
    P = fw("packet")
    buf = bytearray(64)
    n = P.encode_event(buf, seq, device_id, *t, 0)
    d = fw("packet_decode").decode(bytes(buf[:n]))
    return {k: d[k] for k in ("type", "kind", "dist_m", "peak_g", "speed_kmh", "lat", "lon")}


def score(segments: list[dict], truth: list[dict]) -> dict:
    """Compare device segments with the true IRI of the same stretch (by segment index/distance)."""
    by_start = {round(t["start_m"]): t["true_iri_m_per_km"] for t in truth}
    errs = []
    for s in segments:
        tv = by_start.get(round(s["start_m"]))
        if s["iri_m_per_km"] is None or tv is None or UNSCORED & set(s["flags"]):
            continue
        errs.append(100.0 * (s["iri_m_per_km"] / tv - 1))
    a = np.abs(errs)
    return {
        "type": "summary",
        "segments": len(segments),
        "scored": len(errs),
        "median_abs_err_pct": float(np.median(a)) if len(a) else None,
        "p90_abs_err_pct": float(np.percentile(a, 90)) if len(a) else None,
        "mean_err_pct": float(np.mean(errs)) if len(errs) else None,
    }


def match_events(events, features, tol_m: float = 6.0) -> tuple[int, int, int]:
    """(true positives, false positives, missed) of event tuples (kind, peak, lat, lon, dist_m,
    speed) against scenario features (dicts or Feature objects) of the same kind within tol_m of
    the feature's middle."""
    truth = []
    for f in features:
        d = f if isinstance(f, dict) else f.as_dict()
        truth.append((d["kind"], d["position_m"] + d["length_m"] / 2))
    used: set[int] = set()
    tp = fp = 0
    for e in events:
        kind = ("bump", "pothole")[e[0]]
        m = [i for i, (k, x) in enumerate(truth) if k == kind and abs(x - e[4]) <= tol_m and i not in used]
        if m:
            used.add(m[0])
            tp += 1
        else:
            fp += 1
    return tp, fp, len(truth) - len(used)
