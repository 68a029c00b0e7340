"""`roadnode fleet roads`: three simulated vehicles (different vehicles, speeds and seeds) over the
same road, measured by the node's own pipeline (the host golden model: bit for bit the firmware's),
sent as real batches through a real broker to `roadnode collect`: each stretch's median is within
10% of the road's true IRI there. And the grouping's rules on made-up segments."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fleet_helpers import Collect, Node, fleet
from roadnode.accuracy.golden import run_golden
from roadnode.fleet.roads import confidence, geojson, road_stretches
from roadnode.models.geo import destination, distance_m
from roadnode.mpy.fwimport import fw
from roadnode.scenario import make_scenario

P = fw("packet")
PD = fw("packet_decode")
LENGTH = 1500.0
VEHICLES = [("sedan", 1, 60), ("suv", 2, 50), ("van", 3, 70)]


@pytest.fixture(scope="module")
def drives(tmp_path_factory):
    """Three drives over one road profile; per drive its segment packets and the scenario."""
    first = make_scenario(iso_class="C", length_m=LENGTH + 20, seed=11)
    road = tmp_path_factory.mktemp("road") / "road.csv"
    np.savetxt(road, np.column_stack([first.road_x_m, first.road_z_m]), delimiter=",",
               header="distance_m,elevation_m", comments="")
    out = []
    for dev, (veh, seed, kmh) in enumerate(VEHICLES, start=401):
        sc = make_scenario(profile_path=str(road), length_m=LENGTH, speed_kmh=kmh, vehicle=veh, seed=seed)
        pkts = []
        for i, t in enumerate(run_golden(sc)["segments"]):
            buf = bytearray(64)
            n = P.encode_segment(buf, i, dev, *t[:9])
            pkts.append(bytes(buf[:n]))
        out.append((dev, sc, pkts))
    return out


@pytest.mark.slow
def test_three_vehicles_give_the_true_iri_per_stretch(drives, mqtt_broker, tmp_path):
    db = "sqlite:///" + str(tmp_path / "fleet.db")
    col = Collect(mqtt_broker.url, db, "--client-id", f"c-{tmp_path.name}")
    try:
        for dev, _, pkts in drives:
            node = Node(mqtt_broker, dev).start()
            for i in range(0, len(pkts), 4):
                node.send(77, i, pkts[i:i + 4])
            node.wait_acked(77, len(pkts) - 1)
            node.stop()
    finally:
        col.stop()
    gj = tmp_path / "roads.geojson"
    lines = fleet("roads", "--db", db, "--geojson", str(gj))
    stretches, summary = [x for x in lines if x["type"] == "stretch"], lines[-1]
    flagged = sum(1 for _, _, pk in drives for p in pk if {"stopped", "gps_lost", "below_min_speed", "partial",
                                                            "clipping", "fifo_overflow"} & set(PD.decode(p)["flags"]))
    assert summary["segments"] == sum(len(pk) for _, _, pk in drives)
    assert summary["left_out"]["flagged"] == flagged > 0
    full = [s for s in stretches if s["n_passes"] == 3]
    assert len(full) >= 8, stretches
    sc = drives[0][1]
    errs = []
    for s in full:
        assert s["n_vehicles"] == 3 and s["confidence"] == "low"
        # the stretch's line, back to distances along the road; the true IRI of the segments within
        d0, d1 = (float(sc.truth_pos_m[np.argmin(distance_m(sc.truth_lat, sc.truth_lon, *p))]) for p in (s["start"], s["end"]))
        truth = [t["true_iri_m_per_km"] for t in sc.segments if d0 - 15 <= (t["start_m"] + t["end_m"]) / 2 <= d1 + 15]
        assert truth, (s, d0, d1)
        errs.append(s["median_iri_m_per_km"] / np.mean(truth) - 1)
        assert s["p25"] <= s["median_iri_m_per_km"] <= s["p75"]
    print(f"\n{len(full)} stretches of 3 passes: median error {100 * np.median(np.abs(errs)):.1f}%, "
          f"worst {100 * np.max(np.abs(errs)):+.1f}%")
    assert max(abs(e) for e in errs) < 0.10, errs
    fc = json.loads(gj.read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == len(stretches)
    g = fc["features"][0]["geometry"]
    assert g["type"] == "LineString" and g["coordinates"][0][0] == pytest.approx(stretches[0]["start"][1])


def _seg(dev, idx, lat, lon, iri=3.0, flags=(), epoch=1, seq=None, t=100.0):
    return {"device_id": dev, "epoch": epoch, "seq": idx if seq is None else seq, "seg_index": idx,
            "segment_length_m": 100, "lat": lat, "lon": lon, "iri_m_per_km": iri, "flags": list(flags),
            "received_at": t}


def _drive(dev, heading, n=6, iri=3.0, start=(48.15, 17.10), **kw):
    lat, lon = destination(start[0], start[1], heading, np.arange(n) * 100.0)
    return [_seg(dev, i, round(float(a), 5), round(float(b), 5), iri=iri, **kw) for i, (a, b) in enumerate(zip(lat, lon))]


def test_directions_apart_headings_from_neighbours_flagged_counted():
    east = _drive(1, 90.0, iri=2.0) + _drive(2, 90.0, iri=2.2) + _drive(3, 90.0, iri=2.4)
    far = destination(48.15, 17.10, 90.0, 500.0)
    west = _drive(4, 270.0, iri=5.0, start=(float(far[0]), float(far[1])))  # the other side of the road
    west[2]["flags"] = ["gps_lost"]
    r = road_stretches(east + west)
    ways = {s["direction"] for s in r["stretches"]}
    assert ways == {"E", "W"}
    for s in r["stretches"]:
        if s["direction"] == "W":
            assert s["n_passes"] == 1 and s["confidence"] == "none" and s["median_iri_m_per_km"] == 5.0
        else:
            assert 85 < s["heading_deg"] < 95
    e3 = [s for s in r["stretches"] if s["direction"] == "E" and s["n_passes"] == 3]
    assert e3 and all(s["median_iri_m_per_km"] == 2.2 and s["p25"] == 2.1 and s["p75"] == 2.3 for s in e3)
    assert r["left_out"] == {"flagged": 1, "no_iri": 0, "no_position": 0, "no_heading": 0}
    # the last segment of a trip: heading from the one before, end 100 m on
    last = [s for s in r["stretches"] if s["direction"] == "E"][-1]
    assert last["end"][1] > last["start"][1]
    assert all(f["geometry"]["type"] == "LineString" for f in geojson(r)["features"])


def test_trips_and_lonely_segments():
    # a device's second trip over the same road (seg_index starts again): two passes
    a = _drive(1, 0.0)
    b = [dict(s, seq=s["seq"] + 10) for s in _drive(1, 0.0)]
    r = road_stretches(a + b)
    assert all(s["n_passes"] == 2 and s["n_vehicles"] == 1 for s in r["stretches"])
    # one segment alone has no heading; no position, no IRI: left out and counted
    r = road_stretches([_seg(9, 0, 48.1, 17.1), _seg(9, 5, None, None), _seg(9, 9, 48.2, 17.2, iri=None)])
    assert r["stretches"] == [] and r["left_out"] == {"flagged": 0, "no_iri": 1, "no_position": 1, "no_heading": 1}


@pytest.mark.parametrize("n,veh,spread,want", [(2, 2, 0.0, "none"), (3, 3, 0.1, "low"), (6, 1, 0.1, "low"),
                                               (6, 3, 0.1, "medium"), (12, 4, 0.1, "high"), (12, 4, 0.6, "low")])
def test_confidence(n, veh, spread, want):
    assert confidence(n, veh, 2.0, 2.0 - spread, 2.0 + spread) == want
