"""`roadnode fleet roads`: many passes of many vehicles over the same road -> one roughness figure
per stretch of road and direction, with a confidence.

A segment packet carries its start position, not its heading nor its end: both come from the same
device's next segment of the same trip (its start is this one's end; the last segment of a trip takes
its heading from the one before and its end from its length along that heading). A trip is a run
of a device's segments with consecutive ``seg_index`` in its queue's order.

Each segment is placed by its midpoint in an H3 cell (resolution 10 by default: hexagons ~130 m
across, so a stretch is about one 100 m segment) and by its heading in one of 8 directions (45°
each), so the two sides of a road are apart. Per stretch every pass (a trip of a device) gives one
value, the mean IRI of its segments there; the stretch reports the median and quartiles over passes.
Segments with a quality flag (low speed, stopped, GPS lost, FIFO overflow, clipping, partial, IMU
fault) or without IRI or position are left out and counted.

Confidence: ``none`` below 3 passes; ``low`` with 3-4 passes, one vehicle only, or quartiles wider
than half the median; ``high`` from 10 passes of 3 or more vehicles with quartiles within a quarter
of the median; ``medium`` otherwise.
"""

from __future__ import annotations

import math

import numpy as np

from roadnode.fleet.fleet import iso

LEFT_OUT_FLAGS = ("below_min_speed", "stopped", "gps_lost", "fifo_overflow", "clipping", "partial", "imu_fault")
DIRECTIONS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
DEFAULT_RES = 10
MIN_PASSES = 3


def bearing(lat1, lon1, lat2, lon2) -> float:
    """Initial great-circle bearing, degrees clockwise from north."""
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def _trips(segs: list[dict]):
    """Segments of each device in queue order, cut into trips (consecutive seg_index)."""
    by_dev: dict = {}
    for s in segs:
        by_dev.setdefault(s["device_id"], []).append(s)
    for dev, ss in by_dev.items():
        ss.sort(key=lambda s: (s["epoch"], s["seq"]))
        trip: list = []
        n = 0
        for s in ss:
            if trip and (s["epoch"] != trip[-1]["epoch"] or s["seg_index"] != trip[-1]["seg_index"] + 1):
                yield (dev, n), trip
                trip, n = [], n + 1
            trip.append(s)
        if trip:
            yield (dev, n), trip


def place(segs: list[dict]) -> list[dict]:
    """Each segment with ``pass`` (device, trip), ``heading_deg``, ``end_lat``/``end_lon``, ``mid``."""
    from roadnode.models.geo import destination

    out = []
    for key, trip in _trips(segs):
        for i, s in enumerate(trip):
            s = {**s, "pass": key, "heading_deg": None, "end_lat": None, "end_lon": None, "mid": None}
            nxt = trip[i + 1] if i + 1 < len(trip) else None
            prv = trip[i - 1] if i > 0 else None
            if s["lat"] is not None:
                if nxt is not None and nxt["lat"] is not None and (nxt["lat"], nxt["lon"]) != (s["lat"], s["lon"]):
                    s["heading_deg"] = bearing(s["lat"], s["lon"], nxt["lat"], nxt["lon"])
                    s["end_lat"], s["end_lon"] = nxt["lat"], nxt["lon"]
                elif prv is not None and prv["lat"] is not None and (prv["lat"], prv["lon"]) != (s["lat"], s["lon"]):
                    s["heading_deg"] = bearing(prv["lat"], prv["lon"], s["lat"], s["lon"])
                    la, lo = destination(s["lat"], s["lon"], s["heading_deg"], s["segment_length_m"])
                    s["end_lat"], s["end_lon"] = float(la), float(lo)
                if s["end_lat"] is not None:
                    s["mid"] = ((s["lat"] + s["end_lat"]) / 2, (s["lon"] + s["end_lon"]) / 2)
            out.append(s)
    return out


def direction(heading: float) -> str:
    """A compass heading in degrees as one of eight directions."""
    return DIRECTIONS[int(((heading + 22.5) % 360.0) // 45.0)]


def confidence(n_passes: int, n_vehicles: int, median: float, p25: float, p75: float) -> str:
    """How far a segment's IRI can be trusted, from its passes, vehicles and spread (p75-p25)/median."""
    if n_passes < MIN_PASSES:
        return "none"
    spread = (p75 - p25) / median if median > 0 else math.inf
    if n_passes < 5 or n_vehicles < 2 or spread > 0.5:
        return "low"
    if n_passes >= 10 and n_vehicles >= 3 and spread <= 0.25:
        return "high"
    return "medium"


def road_stretches(segs: list[dict], res: int = DEFAULT_RES) -> dict:
    """{"stretches": [...], "left_out": {reason: n}, "segments": n, "resolution": res}; stretches in
    the order their first segment was stored (along the first vehicle's drive)."""
    import h3

    left = {"flagged": 0, "no_iri": 0, "no_position": 0, "no_heading": 0}
    groups: dict = {}
    order: dict = {}
    for s in place(segs):
        if set(s["flags"]) & set(LEFT_OUT_FLAGS):
            left["flagged"] += 1
            continue
        if s["iri_m_per_km"] is None:
            left["no_iri"] += 1
            continue
        if s["lat"] is None:
            left["no_position"] += 1
            continue
        if s["mid"] is None:
            left["no_heading"] += 1
            continue
        key = (h3.latlng_to_cell(s["mid"][0], s["mid"][1], res), direction(s["heading_deg"]))
        groups.setdefault(key, []).append(s)
        order.setdefault(key, (s["device_id"], s["epoch"], s["seq"]))
    stretches = []
    for key in sorted(groups, key=order.get):
        cell, way = key
        ss = groups[key]
        passes: dict = {}
        for s in ss:
            passes.setdefault(s["pass"], []).append(s)
        vals = np.array([np.mean([s["iri_m_per_km"] for s in p]) for p in passes.values()])
        p25, med, p75 = (float(v) for v in np.percentile(vals, [25, 50, 75]))
        n_veh = len({d for d, _ in passes})
        # the stretch's line: the passes' mean entry (first segment's start) and exit (last one's end)
        ends = [(min(p, key=lambda s: s["seg_index"]), max(p, key=lambda s: s["seg_index"])) for p in passes.values()]
        a = (float(np.mean([f["lat"] for f, _ in ends])), float(np.mean([f["lon"] for f, _ in ends])))
        b = (float(np.mean([e["end_lat"] for _, e in ends])), float(np.mean([e["end_lon"] for _, e in ends])))
        hx = np.mean([math.sin(math.radians(s["heading_deg"])) for s in ss])
        hy = np.mean([math.cos(math.radians(s["heading_deg"])) for s in ss])
        stretches.append({
            "cell": cell, "direction": way, "heading_deg": round(math.degrees(math.atan2(hx, hy)) % 360.0, 1),
            "median_iri_m_per_km": round(med, 3), "p25": round(p25, 3), "p75": round(p75, 3),
            "n_passes": len(passes), "n_vehicles": n_veh, "n_segments": len(ss),
            "last_pass": iso(max(s["received_at"] for s in ss)),
            "confidence": confidence(len(passes), n_veh, med, p25, p75),
            "start": [round(a[0], 6), round(a[1], 6)], "end": [round(b[0], 6), round(b[1], 6)],
        })
    return {"stretches": stretches, "left_out": left, "segments": len(segs), "resolution": res}


def geojson(result: dict) -> dict:
    """A FeatureCollection: a LineString per stretch (entry to exit, GeoJSON's lon/lat order)."""
    feats = []
    for s in result["stretches"]:
        props = {k: v for k, v in s.items() if k not in ("start", "end")}
        line = [[s["start"][1], s["start"][0]], [s["end"][1], s["end"][0]]]
        feats.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": line}, "properties": props})
    return {"type": "FeatureCollection", "features": feats}
