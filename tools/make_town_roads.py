"""Generate the shipped road network host/roadnode/data/roads/town.geojson (an invented town).

    python tools/make_town_roads.py [-o host/roadnode/data/roads/town.geojson]

The town is drawn in metres east/north of its centre (48.1486 N, 17.1077 E) and written as
GeoJSON (longitude, latitude; 6 decimals, ~0.1 m). Every junction is a vertex of each road that
meets there, with the very same coordinates: that is how roadnode.roads.network finds junctions.
Deterministic: running it again gives the same file. See docs/roads.md for the schema and the map.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

LAT0, LON0 = 48.1486, 17.1077
M_PER_DEG = math.radians(1.0) * 6371008.8
OUT = Path(__file__).resolve().parents[1] / "host/roadnode/data/roads/town.geojson"

GRID = (-400, -200, 0, 200, 400)  # the old town: a 4 x 4 block grid, 200 m blocks
RING_R = 1000.0  # the ring road's radius
RING_STEP_DEG = 7.5  # ring vertices (130 m chords); junctions fall on multiples of 45°


def ll(e: float, n: float) -> list[float]:
    """Metres east/north of the centre -> [lon, lat] (equirectangular; the design, not a survey)."""
    lat = LAT0 + n / M_PER_DEG
    lon = LON0 + e / (M_PER_DEG * math.cos(math.radians(LAT0)))
    return [round(lon, 6), round(lat, 6)]


def ring_point(deg: float) -> tuple[float, float]:
    """Point of the ring at a compass bearing from the centre (0 = north, 90 = east)."""
    a = math.radians(deg)
    return RING_R * math.sin(a), RING_R * math.cos(a)


def road(road_id, name, iso_class, speed_kmh, kind, pts, seed, features=()):
    return {
        "type": "Feature",
        "properties": {"road_id": road_id, "name": name, "iso_class": iso_class, "speed_kmh": speed_kmh,
                       "kind": kind, "profile_seed": seed, "features": list(features)},
        "geometry": {"type": "LineString", "coordinates": [ll(e, n) for e, n in pts]},
    }


def place(name, kind, e, n):
    return {"type": "Feature", "properties": {"place": kind, "name": name},
            "geometry": {"type": "Point", "coordinates": ll(e, n)}}


def build() -> dict:
    feats = []
    seed = iter(range(101, 1000))
    # the two avenues cross the old town and run on to the ring
    ew_names = {-400: "Mill Street", -200: "Church Street", 200: "School Street", 400: "Garden Street"}
    ns_names = {-400: "Linden Row", -200: "Castle Lane", 200: "Brewery Lane", 400: "Orchard Row"}
    feats.append(road("bridge-st", "Bridge Street", "B", 50, "avenue",
                      [(-RING_R, 0)] + [(x, 0) for x in GRID] + [(RING_R, 0)], next(seed),
                      ["pothole@820", "joint@1240"]))
    feats.append(road("high-st", "High Street", "B", 50, "avenue",
                      [(0, -RING_R)] + [(0, y) for y in GRID] + [(0, RING_R)], next(seed),
                      ["bump@1150:len=3.7,h=0.07"]))
    classes = "CBCB"
    for i, (y, name) in enumerate(ew_names.items()):
        f = ["bump@500:len=3.7,h=0.075"] if name == "School Street" else []
        feats.append(road(name.lower().replace(" ", "-"), name, classes[i], 40, "street",
                          [(x, y) for x in GRID], next(seed), f))
    for i, (x, name) in enumerate(ns_names.items()):
        f = ["pothole@260:len=0.8,h=0.06"] if name == "Castle Lane" else []
        feats.append(road(name.lower().replace(" ", "-"), name, classes[::-1][i], 40, "street",
                          [(x, y) for y in GRID], next(seed), f))
    ring = [ring_point(k * RING_STEP_DEG) for k in range(int(360 / RING_STEP_DEG))]
    feats.append(road("ring", "Ring Road", "A", 70, "ring", ring + [ring[0]], next(seed)))
    # the bus depot lies west of town: every trip starts and ends on Depot Road
    w = ring_point(270)
    feats.append(road("depot-rd", "Depot Road", "C", 50, "access",
                      [w, (w[0] - 400, 30), (w[0] - 800, 40), (w[0] - 1100, 20)], next(seed),
                      ["pothole@350", "bump@900:len=3.7,h=0.07"]))
    ne = ring_point(45)
    feats.append(road("hill-rd", "Hill Road", "C", 60, "rural",
                      [ne, (ne[0] + 500, ne[1] + 450), (ne[0] + 900, ne[1] + 1100), (ne[0] + 1500, ne[1] + 1400),
                       (ne[0] + 2100, ne[1] + 1500)], next(seed), ["pothole@1700:len=0.7,h=0.05"]))
    s = ring_point(180)
    feats.append(road("mill-rd", "Old Mill Road", "D", 60, "rural",
                      [s, (s[0] + 150, s[1] - 600), (s[0] - 100, s[1] - 1300), (s[0] + 50, s[1] - 2000)], next(seed),
                      ["pothole@900", "pothole@1500:len=0.9,h=0.06"]))
    se = ring_point(135)
    feats.append(road("quarry-track", "Quarry Track", "E", 40, "rural",
                      [se, (se[0] + 400, se[1] - 300), (se[0] + 700, se[1] - 800)], next(seed)))
    feats.append(place("Bus depot", "depot", *(w[0] - 1100, 20)))
    feats.append(place("Hill village", "destination", ne[0] + 2100, ne[1] + 1500))
    feats.append(place("Market square", "destination", 0, 0))
    feats.append(place("Old mill", "destination", s[0] + 50, s[1] - 2000))
    feats.append(place("East gate", "destination", *ring_point(90)))
    feats.append(place("North gate", "destination", *ring_point(0)))
    return {"type": "FeatureCollection", "name": "town",
            "description": "An invented town (roadnode's own): a 4x4 block grid, a ring road, rural roads and "
                           "a bus depot; roughness per road as ISO 8608 class and features. "
                           "Made by tools/make_town_roads.py; see docs/roads.md.",
            "features": feats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args()
    text = json.dumps(build(), indent=1) + "\n"
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(text):,} bytes)")


if __name__ == "__main__":
    main()
