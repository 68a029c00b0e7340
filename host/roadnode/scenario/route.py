"""Routes a drive follows: a polyline from a GeoJSON LineString or a GPX track, or a path over the
road network (roadnode.roads), with where the driver must slow down or turn round.

A route is vertices (lat, lon) and each vertex's distance along the drive. The road profile is laid
along that distance and the GPS positions and headings come from it (roadnode.models.geo).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from roadnode.errors import InputError
from roadnode.models.geo import along_polyline, bearing_deg, polyline_lengths
from roadnode.scenario.speed import Stop
from roadnode.userfiles import read_input

MAX_ROUTE_BYTES = 64 << 20  # a day's 1 Hz track is a few MB of GPX
MIN_ROUTE_M = 20.0
TURN_WINDOW_M = 10.0  # headings are compared this far before and after a vertex (GPS tracks jitter)
UTURN_DEG = 150.0  # a turn this sharp is a U-turn: the vehicle stops to make it
UTURN_DWELL_S = 2.0
CORNER_DEG = 30.0  # below this a bend is driven at cruise speed
CORNER_KMH = (50.0, 25.0)  # speed limit at a 30° and at a 90°-or-sharper corner (kept above the
#                            node's 15 km/h minimum speed, so a corner does not void its segment)


@dataclass
class Route:
    """A polyline to drive, with the distance along the drive at each vertex."""

    lat: np.ndarray
    lon: np.ndarray
    vertex_m: np.ndarray  # distance along the drive at each vertex, from 0, increasing
    source: str
    # target speeds by distance (start_m, km/h), e.g. per road of the network; None: one cruise speed
    speed_limits: list[tuple[float, float]] | None = None
    extra: dict = field(default_factory=dict)  # what built it (network, pieces) for the scenario meta

    @property
    def length_m(self) -> float:
        """Length of the drive along the route (m)."""
        return float(self.vertex_m[-1])

    def at(self, d):
        """lat, lon, heading (deg) at distances ``d`` along the route."""
        return along_polyline(self.lat, self.lon, self.vertex_m, d)

    def turns(self) -> list[tuple[float, float]]:
        """[(distance_m, turn angle 0–180°)] at vertices where the heading changes by CORNER_DEG or more
        across ±TURN_WINDOW_M; a bend drawn with many vertices counts once, at its sharpest vertex."""
        s = self.vertex_m
        inner = s[1:-1]
        if not len(inner):
            return []
        w = TURN_WINDOW_M
        la0, lo0, _ = self.at(np.maximum(inner - w, 0.0))
        la1, lo1, _ = self.at(inner)
        la2, lo2, _ = self.at(np.minimum(inner + w, s[-1]))
        h1 = bearing_deg(la0, lo0, la1, lo1)
        h2 = bearing_deg(la1, lo1, la2, lo2)
        ang = np.abs((h2 - h1 + 180.0) % 360.0 - 180.0)
        keep = (ang >= CORNER_DEG) & (inner - w > 0) & (inner + w < s[-1])
        out: list[tuple[float, float]] = []
        for d, a in zip(inner[keep], ang[keep]):
            if out and d - out[-1][0] < 2 * w:
                if a > out[-1][1]:
                    out[-1] = (float(d), float(a))
                continue
            out.append((float(d), float(a)))
        return out

    def driving_constraints(self, length_m: float) -> tuple[list[Stop], list[tuple[float, float]]]:
        """Stops (U-turns) and slow points (position, max m/s) for the speed profile within the drive."""
        stops, slow = [], []
        for d, a in self.turns():
            if d >= length_m:
                break
            if a >= UTURN_DEG:
                stops.append(Stop(d, UTURN_DWELL_S))
            else:
                v = np.interp(a, [CORNER_DEG, 90.0], CORNER_KMH)
                slow.append((d, float(v) / 3.6))
        return stops, slow

    def meta(self) -> dict:
        """The route's record for the scenario's meta (start, heading, length, source)."""
        lat, lon, hdg = self.at(0.0)
        return {"kind": "polyline", "source": self.source, "lat": float(self.lat[0]), "lon": float(self.lon[0]),
                "heading_deg": float(hdg), "length_m": self.length_m, "points": int(len(self.lat)), **self.extra}


def route_from_points(points, source: str, where: str | None = None) -> Route:
    """A Route from [(lat, lon), ...]; repeated points are dropped; ``where`` names the input in errors."""
    where = where or source
    pts = np.asarray(points, float).reshape(-1, 2)
    if len(pts) and not np.isfinite(pts).all():
        i = int(np.argmax(~np.isfinite(pts).all(axis=1)))
        raise InputError(f"{where}: point {i + 1} is not a finite latitude/longitude")
    bad = (np.abs(pts[:, 0]) > 85) | (np.abs(pts[:, 1]) > 180)
    if bad.any():
        i = int(np.argmax(bad))
        raise InputError(f"{where}: point {i + 1} ({pts[i, 0]:g}, {pts[i, 1]:g}) is not a valid latitude/longitude "
                         "(latitude within ±85°, longitude ±180°)")
    if len(pts):
        s = polyline_lengths(pts[:, 0], pts[:, 1])
        keep = np.r_[True, np.diff(s) > 1e-3]
        pts = pts[keep]
    if len(pts) < 2:
        raise InputError(f"{where}: a route needs at least 2 distinct points, found {len(pts)}")
    s = polyline_lengths(pts[:, 0], pts[:, 1])
    if s[-1] < MIN_ROUTE_M:
        raise InputError(f"{where}: route is only {s[-1]:.1f} m long (need >= {MIN_ROUTE_M:g} m)")
    return Route(pts[:, 0].copy(), pts[:, 1].copy(), s, source)


def read_route_file(path) -> Route:
    """A route from a GeoJSON LineString (geometry, Feature or FeatureCollection holding exactly one)
    or a GPX file (its one track, segments joined; else its one route)."""
    p = Path(path)
    raw = read_input(p, "route file", MAX_ROUTE_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{p}: not a GeoJSON or GPX route (binary content)") from None
    head = text.lstrip()
    if head.startswith("<"):
        pts = _gpx_points(text, p)
    else:
        try:
            obj = json.loads(text)
        except ValueError as e:
            raise InputError(f"{p}: not a GeoJSON or GPX route (not JSON: {_short(e)})") from None
        pts = _geojson_points(obj, p)
    return route_from_points(pts, p.name, str(p))


def _geojson_points(obj, p: Path):
    geoms: list = []

    def collect(o):
        """Gather the coordinates of any GeoJSON object, recursing into collections."""
        if not isinstance(o, dict):
            return
        t = o.get("type")
        if t == "FeatureCollection":
            for f in o.get("features") or []:
                collect(f)
        elif t == "Feature":
            collect(o.get("geometry"))
        elif t == "GeometryCollection":
            for g in o.get("geometries") or []:
                collect(g)
        elif isinstance(t, str):
            geoms.append(o)

    collect(obj)
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        raise InputError(f"{p}: not GeoJSON (no \"type\" at the top level)")
    kinds = [g.get("type") for g in geoms]
    if "MultiLineString" in kinds:
        raise InputError(f"{p}: a MultiLineString is not one route (its parts need not join); "
                         "give one LineString")
    lines = [g for g in geoms if g.get("type") == "LineString"]
    if not lines:
        found = ", ".join(sorted(set(map(str, kinds)))) or "nothing"
        raise InputError(f"{p}: no LineString in the GeoJSON (found {found})")
    if len(lines) > 1:
        raise InputError(f"{p}: holds {len(lines)} LineStrings; a route is one (join them or give one per file)")
    coords = lines[0].get("coordinates")
    if not isinstance(coords, list):
        raise InputError(f"{p}: the LineString has no coordinates list")
    pts = []
    for i, c in enumerate(coords):
        ok = (isinstance(c, list) and len(c) >= 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in c[:2]))
        if not ok:
            raise InputError(f"{p}: coordinate {i + 1} is {_short(c)}, expected [longitude, latitude]")
        pts.append((float(c[1]), float(c[0])))  # GeoJSON gives longitude first
    return pts


def _gpx_points(text: str, p: Path):
    import gpxpy
    import gpxpy.gpx

    try:
        g = gpxpy.parse(text)
    except (gpxpy.gpx.GPXException, ValueError) as e:
        raise InputError(f"{p}: not a readable GPX file ({_short(e)})") from None
    tracks = [t for t in g.tracks if any(s.points for s in t.segments)]
    routes = [r for r in g.routes if r.points]
    if len(tracks) > 1:
        raise InputError(f"{p}: GPX holds {len(tracks)} tracks; a route is one")
    if tracks:
        return [(q.latitude, q.longitude) for s in tracks[0].segments for q in s.points]
    if len(routes) > 1:
        raise InputError(f"{p}: GPX holds {len(routes)} routes; a route is one")
    if routes:
        return [(q.latitude, q.longitude) for q in routes[0].points]
    raise InputError(f"{p}: GPX has no track or route with points")


def _short(e) -> str:
    s = " ".join(str(e).split())
    return s[:80] + ("..." if len(s) > 80 else "")
