"""`roadnode calibrate`: a vehicle's node settings from one drive over a reference section.

The reference is what a profiler measured: the profile itself (any format `roadnode iri` reads) or
the IRI per segment (a CSV). It is aligned with the drive by distance: the drive's distance 0 (the
node's distance from its GPS, where its first segment starts) is at the reference's distance
``start_m`` (its own chainage; default: its start, the profile's first point or the CSV's first
row). Segment k of the drive covers [k L, (k + 1) L) of drive distance (L:
the node's segment_length_m when it drove) and gets the reference IRI over that stretch. The fit
itself is roadnode.accuracy.fit (the firmware's own pipeline over the drive, for each candidate).
docs/calibration.md has the workflow.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from roadnode.errors import InputError
from roadnode.scenario.fileformat import Scenario
from roadnode.science.profile_io import number

# node settings that say nothing about the measuring (identity, uplink, timing of the loop): not
# passed to the fit, whose runs use the drive's own
_NOT_MEASURING = ("device_id", "uplink", "lora_dr", "heartbeat_s", "wdt_timeout_ms", "gps_baud", "ignition_off_mv")
COVER_TOLERANCE_M = 1.0  # a reference may end this much before the drive (GPS distance is not exact)


def drive_settings(sc: Scenario) -> dict:
    """The node settings the drive was measured with: a capture's node config (measuring keys), or
    nothing for a simulated drive (its runs use the defaults and the scenario's own)."""
    cfg = (sc.meta.get("capture") or {}).get("config") or {}
    return {k: v for k, v in cfg.items()
            if k not in _NOT_MEASURING and not k.startswith(("wifi_", "mqtt_"))}


def segment_m(sc: Scenario, settings: dict | None = None) -> float:
    """The drive's segment length (what the fit's runs close segments at)."""
    return float((settings or {}).get("segment_length_m") or sc.meta["segment_m"])


def _check_cover(sc: Scenario, covered: float, seg: float, what: str) -> int:
    """The number of whole drive segments; refuses a reference that ends before the drive."""
    length = float(sc.meta["length_m"])
    if covered + COVER_TOLERANCE_M < length:
        raise InputError(f"{what} covers {max(covered, 0.0):.0f} m from the drive's start, the drive is "
                         f"{length:.0f} m: the reference must cover the whole drive (see --start-m)")
    return int(length // seg)


def reference_from_profile(path, sc: Scenario, start_m: float | None = None, units: str = "m",
                           settings: dict | None = None) -> dict[int, float]:
    """{segment index: IRI m/km} of a measured profile over the drive's segments (see module)."""
    from roadnode.science.iri import segment_iri
    from roadnode.science.profile_io import read_profile

    prof = read_profile(path, units=units)
    d, z = prof.distance_m, prof.elevation_m
    if len(d) < 2:
        raise InputError(f"{path}: a reference profile needs at least 2 points")
    seg = segment_m(sc, settings)
    origin = float(d[0]) if start_m is None else float(start_m)
    if origin < d[0] or origin >= d[-1]:
        raise InputError(f"{path}: the drive's start ({origin:g} m) is outside the reference profile "
                         f"({d[0]:g} to {d[-1]:g} m)")
    n = _check_cover(sc, float(d[-1]) - origin, seg, f"{path}: the reference profile")
    if n < 1:
        raise InputError(f"the drive is shorter than one segment ({seg:.0f} m): nothing to calibrate on")
    edges = origin + seg * np.arange(n + 1)
    out = {}
    for i, s in enumerate(segment_iri(d, z, edges)):
        if s.iri_m_per_km == s.iri_m_per_km and not s.gap:  # a gap in the profile: no reference there
            out[i] = float(s.iri_m_per_km)
    return out


def reference_from_csv(path, sc: Scenario, start_m: float | None = None,
                       settings: dict | None = None) -> dict[int, float]:
    """{segment index: IRI m/km} from a CSV of the reference's IRI per segment: a header naming
    `start_m` and `iri_m_per_km` (or `iri`), `end_m` optional; a row's start_m (the reference's
    chainage) less ``start_m`` (default: the first row's) must fall on a drive segment's start.
    Empty IRI: not known there."""
    from roadnode.userfiles import read_input

    raw = read_input(path, "reference IRI file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV file") from None
    rows = list(csv.reader(io.StringIO(text)))
    rows = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path}: empty reference IRI file")
    head = [c.strip().lower() for c in rows[0][1]]
    iri_col = next((head.index(k) for k in ("iri_m_per_km", "iri") if k in head), None)
    if "start_m" not in head or iri_col is None:
        raise InputError(f"{path} line {rows[0][0]}: the header must name start_m and iri_m_per_km "
                         f"(got {', '.join(head) or 'nothing'})")
    s_col = head.index("start_m")
    e_col = head.index("end_m") if "end_m" in head else None
    seg = segment_m(sc, settings)
    out: dict[int, float] = {}
    end = -math.inf
    for line, r in rows[1:]:
        def num(col, what, blank_ok=False):
            """Column ``col`` of the row as a finite number (None if blank and ``blank_ok``); InputError naming
            the line otherwise."""
            v = r[col].strip() if col < len(r) else ""
            if v == "" and blank_ok:
                return None
            return number(v, f"{path} line {line}: {what}")

        s = num(s_col, "start_m")
        if start_m is None:
            start_m = s
        s -= start_m
        iri = num(iri_col, "IRI", blank_ok=True)
        e = num(e_col, "end_m") - start_m if e_col is not None else s + seg
        k = round(s / seg)
        if abs(s - k * seg) > 0.5 or k < 0:
            raise InputError(f"{path} line {line}: start_m {s + start_m:g} is not on a drive segment's start "
                             f"({seg:g} m segments from {start_m:g} m)")
        if iri is not None:
            if iri <= 0:
                raise InputError(f"{path} line {line}: IRI {iri:g} m/km: an IRI is positive")
            if k in out:
                raise InputError(f"{path} line {line}: a second row for the segment at {s + start_m:g} m")
            out[k] = iri
        end = max(end, e)
    if not out:
        raise InputError(f"{path}: no reference IRI in the file")
    _check_cover(sc, end, seg, f"{path}: the reference IRI")
    return out


def calibrate(sc: Scenario, reference: dict[int, float], mount: str | None = None) -> dict:
    """{"settings": fitted, "before": score, "after": score} on the reference (see fit)."""
    from roadnode.accuracy.fit import fit_settings, score_settings

    mount = mount or sc.meta["mount"]
    base = {**drive_settings(sc), "mount": mount}
    fitted = fit_settings(sc, reference, mount, settings=base)
    before = score_settings(sc, reference, base)
    after = score_settings(sc, reference, {**base, **fitted})
    return {"settings": fitted, "before": before, "after": after}
