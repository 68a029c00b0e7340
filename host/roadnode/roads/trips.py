"""Fleet drives over the road network: vehicle k of N leaves the depot, drives towards its
destination by the quickest roads, turns round and comes back, then sets out again, until its drive
is as long as asked.

Every trip starts on the depot's road, so all vehicles share it, in both directions; the quickest
paths to different destinations then share the avenues and the ring for part of the way. Each
vehicle's road is the concatenation of the roads' own profiles (mirrored where a road is driven
against its drawn direction), so a stretch is the same surface for every vehicle that drives it.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from roadnode.errors import InputError
from roadnode.roads.network import DX, RoadNetwork, load_network
from roadnode.scenario.route import Route

MIN_LEG_M = 50.0  # a trip's outward leg shorter than this is not started
MAX_NETWORK_DRIVE_M = 200_000.0
LEAD_OUT_M = 20.0  # road past the drive's end (the scenario builder wants it, as for an ISO road)


@dataclass
class Piece:
    """One road driven from grid index i0 to i1 (i1 < i0: against the drawn direction)."""

    road_id: str
    i0: int
    i1: int

    @property
    def n(self) -> int:
        """Grid steps driven on the road."""
        return abs(self.i1 - self.i0)

    @property
    def direction(self) -> str:
        """forward along the road's drawn direction, or reverse."""
        return "forward" if self.i1 > self.i0 else "reverse"


def _path_pieces(net: RoadNetwork, src, dst) -> list[Piece]:
    """The quickest path (by each road's speed) between two nodes, as pieces of road."""
    import networkx as nx

    nodes = nx.shortest_path(net.graph, src, dst, weight="time")
    out: list[Piece] = []
    for a, b in zip(nodes[:-1], nodes[1:]):
        e = min(net.graph.get_edge_data(a, b).values(), key=lambda d: (d["time"], d["road_id"]))
        i0, i1 = (e["i0"], e["i1"]) if e["u"] == a else (e["i1"], e["i0"])
        if out and out[-1].road_id == e["road_id"] and out[-1].i1 == i0 and (i1 > i0) == (out[-1].i1 > out[-1].i0):
            out[-1] = Piece(e["road_id"], out[-1].i0, i1)  # straight on along the same road
        else:
            out.append(Piece(e["road_id"], i0, i1))
    return out


def _take(pieces: list[Piece], n: int) -> list[Piece]:
    """The first ``n`` grid steps of a path (the last piece cut short where needed)."""
    out = []
    for p in pieces:
        if n <= 0:
            break
        k = min(n, p.n)
        step = 1 if p.i1 > p.i0 else -1
        out.append(Piece(p.road_id, p.i0, p.i0 + step * k))
        n -= k
    return out


def trip_pieces(net: RoadNetwork, k: int, n: int, length_m: float) -> list[Piece]:
    """Vehicle ``k`` of ``n``: trips out and back from the depot, its i-th towards destination
    (k + i n) mod D, each outward leg at most half the drive still to go; ``length_m`` in all."""
    try:
        k, n = operator.index(k), operator.index(n)
    except TypeError:
        raise InputError(f"vehicle index and count must be whole numbers, got {k!r} of {n!r}") from None
    if not 0 <= k < n:
        raise InputError(f"vehicle index must be 0–{n - 1} for {n} vehicles, got {k}")
    if not 2 * MIN_LEG_M <= length_m <= MAX_NETWORK_DRIVE_M:
        raise InputError(f"a drive over the network must be {2 * MIN_LEG_M:g} m–200 km, got {length_m:g} m")
    dests = net.destinations
    if not dests:
        raise InputError(f"network {net.name!r} has no destinations")
    left = int(round(length_m / DX))
    pieces: list[Piece] = []
    i = 0
    while left * DX >= 2 * MIN_LEG_M:
        dest = dests[(k + i * n) % len(dests)]
        path = _path_pieces(net, net.depot.node, dest.node)
        total = sum(p.n for p in path)
        if total == 0:
            raise InputError(f"destination {dest.name!r} of network {net.name!r} is the depot itself")
        out = _take(path, min(total, left // 2))
        pieces += out + [Piece(p.road_id, p.i1, p.i0) for p in reversed(out)]
        left -= 2 * sum(p.n for p in out)
        i += 1
    return pieces


def pieces_route(net: RoadNetwork, pieces: list[Piece], source: str) -> tuple[Route, list[dict]]:
    """The polyline of a path of pieces (each road's vertices, scaled to its grid length) and the
    pieces' positions along the drive."""
    lat, lon, vm = [], [], []
    spans = []
    s0 = 0
    for p in pieces:
        r = net.roads[p.road_id]
        a, b = p.i0 * DX, p.i1 * DX
        inner = [i for i, d in enumerate(r.along_m) if min(a, b) < d < max(a, b)]
        if p.i1 < p.i0:
            inner = inner[::-1]
        along = np.r_[a, r.along_m[inner], b]
        la, lo, _ = r.point(along)
        d = s0 * DX + np.abs(along - a)
        d[-1] = (s0 + p.n) * DX
        start = 1 if lat else 0  # a piece starts where the one before ended
        lat += list(la[start:])
        lon += list(lo[start:])
        vm += list(d[start:])
        spans.append({"road_id": p.road_id, "direction": p.direction, "from_m": a, "to_m": b,
                      "route_start_m": s0 * DX, "route_end_m": (s0 + p.n) * DX})
        s0 += p.n
    vm = np.array(vm)
    keep = np.r_[True, np.diff(vm) > 1e-6]  # a vertex that coincides with a piece's end is one vertex
    route = Route(np.array(lat)[keep], np.array(lon)[keep], vm[keep], source)
    limits = []
    for sp in spans:
        v = net.roads[sp["road_id"]].speed_kmh
        if not limits or limits[-1][1] != v:
            limits.append((sp["route_start_m"], v))
    route.speed_limits = limits
    return route, spans


def pieces_profile(net: RoadNetwork, pieces: list[Piece], lead_out_m: float = LEAD_OUT_M) -> tuple[np.ndarray, np.ndarray]:
    """The road under the drive: each piece's samples of its road's profile (reversed against the
    drawn direction), shifted to join the piece before without a step; past the end, the last
    ``lead_out_m`` mirrored (the road goes on, as roughly as before)."""
    zs = []
    for p in pieces:
        _, z = net.roads[p.road_id].profile()
        seg = z[p.i0 : p.i1 + 1] if p.i1 > p.i0 else z[p.i1 : p.i0 + 1][::-1]
        if zs:
            seg = seg - seg[0] + zs[-1][-1]
            seg = seg[1:]
        zs.append(seg)
    z = np.concatenate(zs)
    m = int(round(lead_out_m / DX))
    tail = z[-1] - (z[-2 : -m - 2 : -1] - z[-1]) if len(z) > m + 1 else np.full(m, z[-1])
    z = np.r_[z, tail]
    return DX * np.arange(len(z)), z


def route_stretches(net: RoadNetwork, spans: list[dict], length_m: float) -> list[dict]:
    """The road stretches a drive covers whole within ``length_m``, in driving order, each with
    where it lies along the drive and its true IRI (a property of the road, the same for every
    vehicle)."""
    out = []
    for sp in spans:
        r = net.roads[sp["road_id"]]
        lo, hi = sorted((sp["from_m"], sp["to_m"]))
        for st in r.stretch_truth(sp["direction"]):
            a, b = sorted((st["from_m"], st["to_m"]))
            if a < lo - 1e-6 or b > hi + 1e-6:
                continue
            rs = sp["route_start_m"] + abs(st["from_m"] - sp["from_m"])
            re = sp["route_start_m"] + abs(st["to_m"] - sp["from_m"])
            if re > length_m + 1e-6:
                continue
            out.append({**st, "route_start_m": round(rs, 2), "route_end_m": round(re, 2)})
    return out


def fleet_route(k: int, n: int, length_m: float, network="town") -> tuple[Route, list[Piece], list[dict]]:
    """Vehicle ``k`` of ``n``: its route over the network (a Route for the scenario builder), its
    pieces of road and their spans along the drive."""
    net = network if isinstance(network, RoadNetwork) else load_network(network)
    pieces = trip_pieces(net, k, n, length_m)
    route, spans = pieces_route(net, pieces, f"network {net.name}, vehicle {k} of {n}")
    return route, pieces, spans


def network_scenario(k: int, n: int, *, network="town", length_m: float | None = None, minutes: float | None = None,
                     speed_kmh: float | None = None, seed: int = 0, progress=None, **kw):
    """A scenario of vehicle ``k`` of ``n`` driving the network for ``length_m`` or about
    ``minutes`` (at the roads' speeds, or ``speed_kmh`` everywhere); the rest of the keyword
    arguments go to make_scenario (vehicle, mount, imu, gps_* ...). Its meta gains ``network``
    and ``stretches``: the road stretches it drives whole, with their true IRI."""
    from roadnode.scenario import make_scenario
    from roadnode.scenario import speed as speedmod

    net = network if isinstance(network, RoadNetwork) else load_network(network)
    if (length_m is None) == (minutes is None):
        raise InputError("give one of a length or minutes for a drive over the network")
    if minutes is not None:
        if not 0.5 <= minutes <= 600:
            raise InputError(f"minutes must be 0.5–600, got {minutes:g}")
        # the drive's length for that time: guess, build the route and its speed profile, correct
        target = minutes * 60.0
        length_m = target * 40 / 3.6
        for _ in range(3):
            route, _, _ = fleet_route(k, n, length_m, net)
            stops, slow = route.driving_constraints(length_m)
            t, x, _ = speedmod.cruise_profile(length_m, speed_kmh or 50.0, stops, seed=seed,
                                             start_dwell_s=kw.get("start_dwell_s", 6.0),
                                             limits=None if speed_kmh else route.speed_limits, slow=slow)
            length_m = float(np.clip(length_m * target / t[-1], 2 * MIN_LEG_M, MAX_NETWORK_DRIVE_M))
    route, pieces, spans = fleet_route(k, n, length_m, net)
    if speed_kmh is not None:
        route.speed_limits = None
    length_m = route.length_m
    x, z = pieces_profile(net, pieces)
    route.extra = {"network": net.name, "vehicle_index": k, "vehicles": n, "pieces": spans}
    road_src = {"network": net.name, "roads": sorted({p.road_id for p in pieces})}
    sc = make_scenario(road=(x, z, road_src), route_line=route, length_m=length_m,
                       speed_kmh=speed_kmh or 50.0, seed=seed, progress=progress, **kw)
    sc.meta["stretches"] = route_stretches(net, spans, length_m)
    return sc
