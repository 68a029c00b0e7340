"""A road network with a roughness per road: GeoJSON LineStrings (see docs/roads.md) loaded into a
graph of junctions, each road's own surface profile, and its true IRI per ~100 m stretch and
direction.

A road's profile is a property of the road (its ISO 8608 class, its ``profile_seed`` and its
features), generated once on the 0.01 m grid the scenarios use: every vehicle that drives a stretch
drives the same elevations, mirrored in the opposite direction. That is what lets a fleet's median
over many passes be judged against one truth per stretch.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from roadnode.errors import InputError
from roadnode.models.geo import along_polyline, bearing_deg, polyline_lengths, to_local_m
from roadnode.science.iri import segment_iri
from roadnode.science.roads import ISO_CLASSES, Feature, apply_features, iso8608_profile, parse_feature
from roadnode.userfiles import read_input

DX = 0.01  # m: the scenarios' road grid (roadnode.scenario.build.ROAD_DX)
STRETCH_M = 100.0  # a road is judged in stretches of this length from its start
NETWORKS = ("town",)  # shipped with the package (roadnode/data/roads/NAME.geojson)
ROAD_CLASSES = "ABCDE"
DIRECTIONS = ("forward", "reverse")  # along the LineString as drawn, or against it


@dataclass
class Road:
    """One road: its line, ISO class, speed and features; its profile is made from profile_seed on demand."""

    road_id: str
    name: str
    iso_class: str
    speed_kmh: float
    kind: str
    profile_seed: int
    features: list[Feature]
    lat: np.ndarray
    lon: np.ndarray
    along_m: np.ndarray  # distance along the road at each vertex (great circle), from 0
    _profile: tuple | None = field(default=None, repr=False)
    _truth: dict = field(default_factory=dict, repr=False)

    @property
    def length_m(self) -> float:
        """The road's length along its line."""
        return float(self.along_m[-1])

    @property
    def n_grid(self) -> int:
        """Samples of the profile: the road from 0 to its length on the DX grid."""
        return int(round(self.length_m / DX)) + 1

    def profile(self) -> tuple[np.ndarray, np.ndarray]:
        """Distance (0, DX, ...) and elevation (m) of the road as drawn, features included; cached."""
        if self._profile is None:
            n = self.n_grid
            x, z = iso8608_profile((n - 1) * DX, dx=DX, iso_class=self.iso_class, seed=self.profile_seed)
            z = apply_features(x, z, self.features)
            self._profile = (x, z)
        return self._profile

    def point(self, along_m):
        """lat, lon, heading (deg, as drawn) at distances along the road."""
        return along_polyline(self.lat, self.lon, self.along_m, along_m)

    def stretch_edges(self) -> np.ndarray:
        """Stretch boundaries along the road: every STRETCH_M from 0; a last piece shorter than half a
        stretch joins the one before (stretches run 50–150 m)."""
        grid_len = (self.n_grid - 1) * DX
        k = max(1, int(round(grid_len / STRETCH_M)))
        return np.r_[np.arange(k) * STRETCH_M, grid_len]

    def true_iri(self, direction: str, from_m: float, to_m: float) -> float:
        """True IRI (m/km) of the road between two distances along it, driven in ``direction``.

        The quarter car starts at the road's start in that direction (ASTM E1926's 11 m lead-in), as
        a profiler surveying the road would; a vehicle that arrives from another road carries some
        motion in with it, which fades within the first tens of metres."""
        x, z = self.profile()
        lo, hi = sorted((float(from_m), float(to_m)))
        if direction == "reverse":
            z = z[::-1]
            lo, hi = x[-1] - hi, x[-1] - lo
        elif direction != "forward":
            raise InputError(f"direction must be forward or reverse, got {direction!r}")
        return float(segment_iri(x, z, [lo, hi])[0].iri_m_per_km)

    def stretch_truth(self, direction: str) -> list[dict]:
        """The road's stretches in one direction with their true IRI, in driving order."""
        if direction not in self._truth:
            x, z = self.profile()
            e = self.stretch_edges()
            if direction == "reverse":
                iri = [s.iri_m_per_km for s in segment_iri(x, z[::-1], x[-1] - e[::-1])][::-1]
            else:
                iri = [s.iri_m_per_km for s in segment_iri(x, z, e)]
            out = []
            for i, (a, b) in enumerate(zip(e[:-1], e[1:])):
                s, t = (a, b) if direction == "forward" else (b, a)
                la, lo, _ = self.point([s, t])
                out.append({"road_id": self.road_id, "name": self.name, "iso_class": self.iso_class,
                            "direction": direction, "stretch": i, "stretch_id": f"{self.road_id}/{i}/{direction[0]}",
                            "from_m": float(s), "to_m": float(t), "true_iri_m_per_km": float(iri[i]),
                            "start_lat": float(la[0]), "start_lon": float(lo[0]),
                            "end_lat": float(la[1]), "end_lon": float(lo[1]),
                            "heading_deg": float(bearing_deg(la[0], lo[0], la[1], lo[1]))})
            if direction == "reverse":
                out = out[::-1]
            self._truth[direction] = out
        return [dict(s) for s in self._truth[direction]]

    def geojson(self) -> dict:
        """The road as a GeoJSON LineString Feature."""
        return {"type": "Feature",
                "properties": {"road_id": self.road_id, "name": self.name, "iso_class": self.iso_class,
                               "speed_kmh": self.speed_kmh, "kind": self.kind, "profile_seed": self.profile_seed,
                               "features": [f"{f.kind}@{f.position_m:g}:len={f.length_m:g},h={f.height_m:g}"
                                            for f in self.features]},
                "geometry": {"type": "LineString",
                             "coordinates": [[float(a), float(b)] for a, b in zip(self.lon, self.lat)]}}


@dataclass
class Place:
    """A named junction where trips start (the depot) or go to."""

    name: str
    kind: str  # "depot" or "destination"
    node: tuple


class RoadNetwork:
    """Roads, places, and the graph (networkx MultiGraph) whose nodes are junctions and road ends
    (keyed by rounded coordinates) and whose edges are the pieces of road between them."""

    def __init__(self, name: str, roads: list[Road], places: list[Place], graph):
        self.name = name
        self.roads = {r.road_id: r for r in roads}
        self.places = places
        self.graph = graph

    @property
    def depot(self) -> Place:
        """The place every trip starts from."""
        return next(p for p in self.places if p.kind == "depot")

    @property
    def destinations(self) -> list[Place]:
        """The places trips go to."""
        return [p for p in self.places if p.kind == "destination"]

    def is_connected(self) -> bool:
        """Whether every junction can be reached from every other."""
        import networkx as nx

        return nx.is_connected(self.graph)

    def stretch_truth(self) -> list[dict]:
        """Every stretch of every road in both directions, with its true IRI."""
        return [s for r in self.roads.values() for d in DIRECTIONS for s in r.stretch_truth(d)]

    def locate(self, lat: float, lon: float, heading_deg: float | None = None, max_m: float = 30.0):
        """(road_id, distance along it, direction, offset m) of the road nearest a position, or None
        when none lies within ``max_m``. With a heading, roads crossing at an angle over 45° are
        passed over (at a junction the road the vehicle drives wins) and the direction follows it."""
        best = None
        for r in self.roads.values():
            e, n = to_local_m(r.lat, r.lon, lat, lon)  # the point is the origin
            ax, ay, bx, by = e[:-1], n[:-1], e[1:], n[1:]
            dx, dy = bx - ax, by - ay
            ll = dx * dx + dy * dy
            u = np.clip(-(ax * dx + ay * dy) / np.where(ll > 0, ll, 1.0), 0.0, 1.0)
            px, py = ax + u * dx, ay + u * dy
            dist = np.hypot(px, py)
            for i in np.argsort(dist)[:3]:
                if dist[i] > max_m:
                    break
                leg_hdg = float(bearing_deg(r.lat[i], r.lon[i], r.lat[i + 1], r.lon[i + 1]))
                direction = "forward"
                if heading_deg is not None:
                    diff = abs((heading_deg - leg_hdg + 180.0) % 360.0 - 180.0)
                    if 45.0 < diff < 135.0:
                        continue
                    direction = "forward" if diff <= 45.0 else "reverse"
                along = float(r.along_m[i] + u[i] * (r.along_m[i + 1] - r.along_m[i]))
                if best is None or dist[i] < best[3]:
                    best = (r.road_id, along, direction, float(dist[i]))
                break
        return best

    def geojson(self) -> dict:
        """All roads as a GeoJSON FeatureCollection."""
        return {"type": "FeatureCollection", "name": self.name,
                "features": [r.geojson() for r in self.roads.values()]}


def network_path(name_or_path) -> Path:
    """The file of a shipped network (``town``) or a path to one."""
    if str(name_or_path) in NETWORKS:
        return Path(str(resources.files("roadnode") / "data" / "roads" / f"{name_or_path}.geojson"))
    return Path(name_or_path)


_CACHE: dict = {}


def load_network(name_or_path="town") -> RoadNetwork:
    """Load and check a network file (shipped name or path); the shipped ones are cached."""
    p = network_path(name_or_path)
    if not p.exists() and not p.suffix:
        raise InputError(f"network {str(name_or_path)!r}: not a shipped network ({', '.join(NETWORKS)}) nor a file")
    key = str(p.resolve()) if p.exists() else str(p)
    if str(name_or_path) in NETWORKS and key in _CACHE:
        return _CACHE[key]
    net = _parse(p)
    if str(name_or_path) in NETWORKS:
        _CACHE[key] = net
    return net


def _node_key(lat: float, lon: float) -> tuple:
    return (round(float(lat), 6), round(float(lon), 6))


def _parse(p: Path) -> RoadNetwork:
    import networkx as nx

    raw = read_input(p, "road network file", 64 << 20)
    try:
        obj = json.loads(raw.decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: not a GeoJSON road network ({type(e).__name__})") from None
    if not isinstance(obj, dict) or obj.get("type") != "FeatureCollection" or not isinstance(obj.get("features"), list):
        raise InputError(f"{p}: not a road network (a GeoJSON FeatureCollection of roads; docs/roads.md)")
    roads: list[Road] = []
    places: list[Place] = []
    for n, f in enumerate(obj["features"], 1):
        g = (f or {}).get("geometry") or {}
        props = (f or {}).get("properties") or {}
        if g.get("type") == "Point":
            lon, lat = g["coordinates"][:2]
            places.append(Place(str(props.get("name", f"place {n}")), str(props.get("place", "destination")),
                                _node_key(lat, lon)))
            continue
        if g.get("type") != "LineString":
            raise InputError(f"{p}: feature {n} is a {g.get('type')}; roads are LineStrings, places Points")
        roads.append(_road(p, n, props, g.get("coordinates")))
    ids = [r.road_id for r in roads]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise InputError(f"{p}: road_id {sorted(dup)[0]!r} is used by more than one road")
    if not roads:
        raise InputError(f"{p}: no roads (LineString features) in the network")
    # junctions: vertices shared by two roads (or met twice by one, as a ring's start and end), and road ends
    seen: dict[tuple, int] = {}
    for r in roads:
        for k in {_node_key(a, b) for a, b in zip(r.lat, r.lon)}:
            seen[k] = seen.get(k, 0) + 1
    graph = nx.MultiGraph()
    for r in roads:
        keys = [_node_key(a, b) for a, b in zip(r.lat, r.lon)]
        idx = [i for i, k in enumerate(keys) if i in (0, len(keys) - 1) or seen[k] > 1 or keys.count(k) > 1]
        for i in idx:
            graph.add_node(keys[i], lat=float(r.lat[i]), lon=float(r.lon[i]))
        for i, j in zip(idx[:-1], idx[1:]):
            a, b = int(round(r.along_m[i] / DX)), int(round(r.along_m[j] / DX))
            graph.add_edge(keys[i], keys[j], key=f"{r.road_id}:{i}", road_id=r.road_id, i0=a, i1=b,
                           u=keys[i], length=(b - a) * DX, time=(b - a) * DX / (r.speed_kmh / 3.6))
    for pl in places:
        if pl.node not in graph:
            raise InputError(f"{p}: place {pl.name!r} is not at a junction or road end")
    return RoadNetwork(str(obj.get("name") or p.stem), roads, places, graph)


def _road(p: Path, n: int, props: dict, coords) -> Road:
    where = f"{p}: road {n}"
    rid = props.get("road_id")
    if not isinstance(rid, str) or not rid or "/" in rid:
        raise InputError(f"{where}: road_id must be a non-empty text without '/'")
    where = f"{p}: road {rid!r}"
    cls = str(props.get("iso_class", "")).upper()
    if cls not in ROAD_CLASSES or cls not in ISO_CLASSES:
        raise InputError(f"{where}: iso_class must be one of {', '.join(ROAD_CLASSES)}, got {props.get('iso_class')!r}")
    speed = props.get("speed_kmh", 50)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 5 <= speed <= 130:
        raise InputError(f"{where}: speed_kmh must be 5–130, got {speed!r}")
    seed = props.get("profile_seed", zlib.crc32(rid.encode()))
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InputError(f"{where}: profile_seed must be a whole number 0–2^63-1, got {seed!r}")
    if not isinstance(coords, list) or not all(isinstance(c, list) and len(c) >= 2 for c in coords):
        raise InputError(f"{where}: coordinates must be a list of [longitude, latitude]")
    try:
        lon, lat = np.array([c[:2] for c in coords], float).T
    except (TypeError, ValueError):
        raise InputError(f"{where}: coordinates must be numbers") from None
    if len(lat) < 2 or not (np.isfinite(lat).all() and np.isfinite(lon).all()) or (np.abs(lat) > 85).any() \
            or (np.abs(lon) > 180).any():
        raise InputError(f"{where}: needs 2 or more valid [longitude, latitude] points")
    along = polyline_lengths(lat, lon)
    if (np.diff(along) <= 0.01).any():
        raise InputError(f"{where}: two consecutive points are the same")
    specs = props.get("features") or []
    if not isinstance(specs, list):
        raise InputError(f"{where}: features must be a list of specs like 'pothole@250'")
    feats = []
    for s in specs:
        f = parse_feature(str(s))
        if not 0 <= f.position_m <= along[-1] - f.length_m:
            raise InputError(f"{where}: feature {s!r} lies outside the road (0–{along[-1]:.0f} m)")
        feats.append(f)
    return Road(rid, str(props.get("name", rid)), cls, float(speed), str(props.get("kind", "")), seed, feats,
                lat, lon, along)
