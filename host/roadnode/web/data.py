"""What the dashboard shows, as JSON-ready dicts: the same payloads serve the live pages (/api/...)
and the static map page (`roadnode.web.static`). The answers come from `roadnode.fleet` (fleet
status, road stretches) and `roadnode.web.queries`; this module adds the IRI classes, GeoJSON and
the request parameters' checking.
"""

from __future__ import annotations

import math
import threading
import time

from roadnode.errors import InputError
from roadnode.fleet.fleet import SEGMENT_KEYS, fleet_status, iso, parse_time
from roadnode.fleet.roads import geojson, road_stretches
from roadnode.fleet.store import Store
from roadnode.web import queries

# IRI classes of a paved road, m/km (docs/dashboard.md "Road condition classes" gives the sources):
# (name, lower bound inclusive, upper bound exclusive, colour on the map)
IRI_CLASSES = (
    ("good", 0.0, 4.0, "#1a9641"),
    ("fair", 4.0, 6.0, "#e6b800"),
    ("poor", 6.0, 10.0, "#f46d43"),
    ("bad", 10.0, math.inf, "#b2182b"),
)


def iri_class(iri: float | None) -> str | None:
    """The IRI class name for a value (None for no value)."""
    if iri is None or not math.isfinite(iri):
        return None
    for name, lo, hi, _ in IRI_CLASSES:
        if lo <= iri < hi:
            return name
    return IRI_CLASSES[0][0] if iri < 0 else IRI_CLASSES[-1][0]


def classes_json() -> list[dict]:
    """The IRI classes with their ranges and colours, for the map's legend."""
    return [{"name": n, "min": lo, "max": None if math.isinf(hi) else hi, "color": c} for n, lo, hi, c in IRI_CLASSES]


# ---- request parameters ---------------------------------------------------------------------------------
def time_param(value: str | None, name: str, now: float | None = None) -> float | None:
    """ISO 8601 (a date alone: its midnight UTC), Unix seconds or an age (2h, 7d); None if absent."""
    if value is None or not value.strip():
        return None
    try:
        return parse_time(value, now)
    except InputError as e:
        raise InputError(f"{name}: {e}") from None


def int_param(value: str | None, name: str, lo: int, hi: int, default: int | None = None) -> int | None:
    """A query parameter as an int in lo..hi (``default`` if absent); InputError otherwise."""
    if value is None or not value.strip():
        return default
    try:
        v = int(value)
    except ValueError:
        raise InputError(f"{name} {value!r}: expected a whole number") from None
    if not lo <= v <= hi:
        raise InputError(f"{name} {v}: expected {lo}..{hi}")
    return v


def window(since: float | None, until: float | None) -> None:
    """InputError unless since comes before until."""
    if since is not None and until is not None and until <= since:
        raise InputError("until must be after since")


# ---- payloads --------------------------------------------------------------------------------------------
class RoadsCache:
    """The roads query reads every segment: its answer is kept until a segment is added (or for
    ``ttl`` seconds at most) per (since, until)."""

    def __init__(self, ttl: float = 30.0, size: int = 16):
        self.ttl, self.size = ttl, size
        self._lock = threading.Lock()
        self._d: dict = {}

    def get(self, store: Store, since, until) -> dict:
        """The roads GeoJSON for the window, from the cache while still valid."""
        n = store.count("segments")
        key = (since, until)
        with self._lock:
            hit = self._d.get(key)
            if hit and hit[0] == n and time.monotonic() - hit[1] < self.ttl:
                return hit[2]
        fc = roads(store, since, until)
        with self._lock:
            if len(self._d) >= self.size:
                self._d.pop(next(iter(self._d)))
            self._d[key] = (n, time.monotonic(), fc)
        return fc


def roads(store: Store, since: float | None = None, until: float | None = None) -> dict:
    """`fleet roads` as a GeoJSON FeatureCollection; each stretch's properties gain ``iri_class``;
    the collection carries the summary (segments, left_out) and the class table as foreign members."""
    window(since, until)
    segs = store.segments(since=since)
    if until is not None:
        segs = [s for s in segs if s["received_at"] < until]
    r = road_stretches(segs)
    fc = geojson(r)
    for f in fc["features"]:
        f["properties"]["iri_class"] = iri_class(f["properties"]["median_iri_m_per_km"])
    fc.update(segments=r["segments"], left_out=r["left_out"], resolution=r["resolution"], classes=classes_json(),
              since=iso(since), until=iso(until))
    return fc


def events(store: Store, device_id=None, since=None, until=None, limit: int = 5000) -> dict:
    """Potholes and bumps as GeoJSON points (those without a position are counted, not drawn)."""
    window(since, until)
    evs = queries.events(store, device_id, since, until, limit)
    feats = []
    for e in evs:
        if e["lat"] is None:
            continue
        props = {k: e[k] for k in ("device_id", "epoch", "seq", "kind", "peak_g", "dist_m", "speed_kmh")}
        props["time"] = iso(e["received_at"])
        feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [e["lon"], e["lat"]]},
                      "properties": props})
    return {"type": "FeatureCollection", "features": feats, "without_position": len(evs) - len(feats)}


def fleet(store: Store, now: float | None = None) -> dict:
    """`fleet status` rows (problems first), each with its last known position."""
    now = time.time() if now is None else now
    rows = fleet_status(store, now)
    pos = queries.last_positions(store)
    for r in rows:
        p = pos.get(r["device_id"])
        r["last_position"] = None if p is None else {"lat": p["lat"], "lon": p["lon"], "time": iso(p["time_s"])}
    return {"generated_at": iso(now), "devices": rows}


def positions(fleet_payload: dict) -> dict:
    """Each device's last position as GeoJSON points (from a `fleet` payload)."""
    feats = []
    for r in fleet_payload["devices"]:
        p = r.get("last_position")
        if p:
            feats.append({"type": "Feature", "geometry": {"type": "Point", "coordinates": [p["lon"], p["lat"]]},
                          "properties": {"device_id": r["device_id"], "state": r["state"], "time": p["time"],
                                         "problems": r["problems"]}})
    return {"type": "FeatureCollection", "features": feats}


class UnknownDevice(InputError):
    """No such device in the database (HTTP 404)."""


def check_device(store: Store, device_id: int) -> None:
    """UnknownDevice unless the store has heard of the device."""
    if device_id not in queries.device_ids(store):
        raise UnknownDevice(f"device {device_id}: not in the database")


def device(store: Store, device_id: int, now: float | None = None, since=None, limit: int = 2000) -> dict:
    """One device: its `fleet status` row, its heartbeats over time (vitals), its last position."""
    check_device(store, device_id)
    f = fleet(store, now)
    row = next((r for r in f["devices"] if r["device_id"] == device_id), None)
    vit = queries.heartbeats(store, device_id, since, limit)
    for v in vit:
        v["time"], v["received"] = iso(v.pop("time_s")), iso(v.pop("received_s"))
    return {"device_id": device_id, "status": row, "vitals": vit,
            "last_position": row["last_position"] if row else None}


def segments(store: Store, device_id=None, since=None, limit: int = 500) -> dict:
    """The newest ``limit`` segments as `fleet segments` prints them (device, epoch, seq order)."""
    if device_id is not None:
        check_device(store, device_id)
    segs = queries.recent_segments(store, device_id, since, limit)
    return {"segments": [{**{k: s[k] for k in SEGMENT_KEYS}, "time": iso(s["received_at"])} for s in segs],
            "limit": limit}


def network() -> dict:
    """The shipped road network (faint grey under the stretches when there are no tiles)."""
    from roadnode.roads import load_network

    return load_network("town").geojson()
