"""Routes that follow roads: `scenario make --route-file` (GeoJSON, GPX), the shipped road network
and the fleet's trips over it (roadnode.roads)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from roadnode.models.geo import bearing_deg, distance_m, polyline_lengths, to_local_m
from roadnode.roads import load_network, network_scenario
from roadnode.roads.trips import trip_pieces
from roadnode.scenario import load_scenario
from roadnode.science.iri import segment_iri

ROOT = Path(__file__).resolve().parents[2]
# a drive through a small town: east, a right angle north, then north-west (lat, lon)
POINTS = [(48.1486, 17.1077), (48.1486, 17.1117), (48.1516, 17.1117), (48.1530, 17.1087)]


def _geojson(path: Path, points=POINTS, wrap="Feature") -> Path:
    line = {"type": "LineString", "coordinates": [[lon, lat] for lat, lon in points]}
    obj = {"type": "Feature", "properties": {"name": "test"}, "geometry": line}
    if wrap == "FeatureCollection":
        obj = {"type": "FeatureCollection", "features": [obj]}
    path.write_text(json.dumps(line if wrap == "geometry" else obj))
    return path


def _gpx(path: Path, points=POINTS, kind="trk") -> Path:
    """A GPX track in two segments (joined when read) or a GPX route of the same points."""
    if kind == "trk":
        segs = [points[:2], points[2:]]
        body = "<trk><name>t</name>" + "".join(
            "<trkseg>" + "".join(f'<trkpt lat="{a}" lon="{b}"/>' for a, b in seg) + "</trkseg>" for seg in segs) + "</trk>"
    else:
        body = "<rte>" + "".join(f'<rtept lat="{a}" lon="{b}"/>' for a, b in points) + "</rte>"
    path.write_text(f'<?xml version="1.0"?><gpx version="1.1" creator="test" '
                    f'xmlns="http://www.topografix.com/GPX/1/1">{body}</gpx>')
    return path


def _make(cli, out: Path, *args):
    r = cli("scenario", "make", *args, "--seed", "3", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), load_scenario(out)


def _rmc(sc):
    """(t, lat, lon, course or None) of each RMC with a fix."""
    out = []
    for t, s in sc.gps_sentences():
        f = s.decode().split("*")[0].split(",")
        if f[0].endswith("RMC") and f[2] == "A":
            lat = int(f[3][:2]) + float(f[3][2:]) / 60
            lon = int(f[5][:3]) + float(f[5][3:]) / 60
            out.append((t, lat, lon, float(f[8]) if f[8] else None))
    return out


def _off_line_m(lat, lon, points=POINTS):
    """Distance (m) from each position to the polyline, and the leg it is nearest."""
    pl = np.array(points)
    lat, lon = np.atleast_1d(lat), np.atleast_1d(lon)
    dist, legs = [], []
    for a, b in zip(lat, lon):
        e, n = to_local_m(pl[:, 0], pl[:, 1], a, b)
        dx, dy = np.diff(e), np.diff(n)
        u = np.clip(-(e[:-1] * dx + n[:-1] * dy) / (dx * dx + dy * dy), 0, 1)
        d = np.hypot(e[:-1] + u * dx, n[:-1] + u * dy)
        dist.append(d.min())
        legs.append(int(np.argmin(d)))
    return np.array(dist), np.array(legs)


@pytest.fixture(scope="module")
def geo_drive(tmp_path_factory, cli):
    d = tmp_path_factory.mktemp("route")
    return _make(cli, d / "g.npz", "--iso-class", "B", "--route-file", str(_geojson(d / "r.geojson")))


@pytest.mark.slow
def test_geojson_route_positions_and_headings_follow_the_line(geo_drive):
    summary, sc = geo_drive
    s = polyline_lengths(*np.array(POINTS).T)
    assert summary["length_m"] == pytest.approx(s[-1], abs=0.01)  # the drive is the route's length
    assert summary["route"]["kind"] == "polyline" and summary["route"]["points"] == 4
    # truth: on the line to the millimetre, ending at the last point
    off, _ = _off_line_m(sc.truth_lat[::50], sc.truth_lon[::50])
    assert off.max() < 0.01
    assert distance_m(sc.truth_lat[-1], sc.truth_lon[-1], *POINTS[-1]) < 0.5
    # the receiver's fixes: on the line within its 1.5 m noise
    fixes = _rmc(sc)
    assert len(fixes) > 200
    t, la, lo, crs = map(np.array, zip(*[(a, b, c, d if d is not None else np.nan) for a, b, c, d in fixes]))
    off, leg = _off_line_m(la, lo)
    assert np.median(off) < 2.0 and off.max() < 8.0, (np.median(off), off.max())
    # every leg driven, in order, and the course is the leg's bearing away from the corners
    legs_brg = bearing_deg(*np.array(POINTS[:-1]).T, *np.array(POINTS[1:]).T)
    pos = np.interp(t, sc.truth_t_s, sc.truth_pos_m)
    mid = np.all(np.abs(pos[:, None] - s[None, 1:-1]) > 15, axis=1) & np.isfinite(crs) & (off < 8)
    true_leg = np.searchsorted(s, pos, side="right") - 1
    assert set(true_leg[mid]) == {0, 1, 2} and (np.diff(true_leg) >= 0).all()
    diff = np.abs((crs[mid] - legs_brg[true_leg[mid]] + 180) % 360 - 180)
    assert diff.max() < 0.5, diff.max()
    assert np.allclose(sc.truth_heading_deg[sc.truth_pos_m < s[1] - 1], legs_brg[0], atol=0.01)
    # the right-angle corner (north at 300 m) is taken slower than the cruise
    at_corner = np.abs(sc.truth_pos_m - s[1]) < 3
    assert sc.truth_speed_mps[at_corner].max() * 3.6 < 35 and sc.truth_speed_mps.max() * 3.6 > 55


@pytest.mark.slow
def test_gpx_track_and_route_drive_the_same_line(geo_drive, cli, tmp_path):
    _, sc = geo_drive
    for kind in ("trk", "rte"):
        s, g = _make(cli, tmp_path / f"{kind}.npz", "--iso-class", "B", "--route-file",
                     str(_gpx(tmp_path / f"{kind}.gpx", kind=kind)))
        assert s["length_m"] == pytest.approx(sc.meta["length_m"], abs=1e-6)
        np.testing.assert_allclose(g.truth_lat, sc.truth_lat, atol=1e-9)
        np.testing.assert_allclose(g.truth_lon, sc.truth_lon, atol=1e-9)
        np.testing.assert_allclose(g.route_lat, np.array(POINTS)[:, 0])


@pytest.mark.slow
def test_length_m_cuts_the_route_and_profile_and_stops_fit(cli, tmp_path, shared_data):
    f = _geojson(tmp_path / "r.geojson", wrap="FeatureCollection")
    s, sc = _make(cli, tmp_path / "a.npz", "--iso-class", "C", "--route-file", str(f), "--length-m", "450",
                  "--stop-at", "200:3")
    assert s["length_m"] == 450 and abs(sc.truth_pos_m[-1] - 450) < 0.2
    off, leg = _off_line_m(sc.truth_lat[-1], sc.truth_lon[-1])
    assert off[0] < 0.01 and leg[0] == 1  # 450 m in: on the second leg
    assert (sc.truth_speed_mps[np.abs(sc.truth_pos_m - 200) < 0.5] < 0.01).any()
    # a measured profile laid along the route: the profile is longer than the route here
    s, _ = _make(cli, tmp_path / "p.npz", "--profile", str(shared_data / "profiles/sorel/profile_1.txt"),
                 "--route-file", str(_geojson(tmp_path / "g.geojson", wrap="geometry")), "--length-m", "500")
    assert s["length_m"] == 500


@pytest.mark.parametrize("name, content, msg", [
    ("two.geojson", {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[17.1, 48.1], [17.11, 48.1]]}}] * 2},
     "holds 2 LineStrings"),
    ("two.gpx", "<gpx version='1.1'><trk><trkseg><trkpt lat='48' lon='17'/><trkpt lat='48.01' lon='17'/></trkseg>"
                "</trk><trk><trkseg><trkpt lat='48' lon='17'/></trkseg></trk></gpx>", "holds 2 tracks"),
    ("short.geojson", {"type": "LineString", "coordinates": [[17.1, 48.1], [17.1001, 48.1]]}, "only 7.4 m long"),
    ("text.geojson", {"type": "LineString", "coordinates": [[17.1, 48.1], ["a", 48.1]]}, "coordinate 2"),
])
def test_more_bad_route_files(cli, tmp_path, name, content, msg):
    f = tmp_path / name
    f.write_text(content if isinstance(content, str) else json.dumps(content))
    r = cli("scenario", "make", "--iso-class", "C", "--route-file", str(f), "-o", str(tmp_path / "x.npz"))
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "x.npz").exists()


def test_profile_shorter_than_the_route_is_refused(cli, tmp_path):
    prof = tmp_path / "p.txt"
    prof.write_text("".join(f"{i * 0.25:.2f} 0\n" for i in range(400)))  # 100 m
    r = cli("scenario", "make", "--profile", str(prof), "--route-file", str(_geojson(tmp_path / "r.geojson")),
            "-o", str(tmp_path / "x.npz"))
    assert r.returncode == 2 and "profile is only 99.8 m long" in r.stderr, r.stderr


def test_scenarios_without_the_route_arrays_still_load(tmp_path):
    """Files written before routes had no heading or polyline arrays."""
    from roadnode.scenario import make_scenario, save_scenario

    sc = make_scenario(iso_class="B", length_m=60, speed_kmh=40, seed=2)
    assert np.allclose(sc.truth_heading_deg, 90.0) and "route_lat" not in sc.arrays
    old = type(sc)(sc.meta, {k: v for k, v in sc.arrays.items() if k != "truth_heading_deg"})
    save_scenario(old, tmp_path / "old.npz")
    back = load_scenario(tmp_path / "old.npz")
    assert "truth_heading_deg" not in back.arrays and back.meta["route"]["heading_deg"] == 90.0
    np.testing.assert_array_equal(back.truth_lat, sc.truth_lat)


# ---- the shipped network --------------------------------------------------------------------

def test_shipped_network_loads_is_connected_and_is_what_its_script_makes(tmp_path):
    net = load_network("town")
    assert net.is_connected() and len(net.roads) >= 10
    kinds = {r.kind for r in net.roads.values()}
    assert {"street", "avenue", "ring", "rural"} <= kinds
    assert {r.iso_class for r in net.roads.values()} == set("ABCDE")
    assert any(r.features for r in net.roads.values())
    assert net.depot and len(net.destinations) >= 3
    # the ring is a closed road; the old town's grid has 25 crossings
    ring = net.roads["ring"]
    assert ring.lat[0] == ring.lat[-1] and 6000 < ring.length_m < 6600
    town = [nd for nd, a in net.graph.nodes(data=True)
            if np.hypot(*to_local_m(a["lat"], a["lon"], 48.1486, 17.1077)) < 600]
    # 25 grid points: 4 corners, 8 T-junctions on the edges, 9 crossings inside + 4 where the avenues run on
    assert len(town) == 25
    assert sorted(net.graph.degree(nd) for nd in town) == [2] * 4 + [3] * 8 + [4] * 13
    # within a few km of the default scenario origin
    for r in net.roads.values():
        e, n = to_local_m(r.lat, r.lon, 48.1486, 17.1077)
        assert np.hypot(e, n).max() < 6000
    out = tmp_path / "town.geojson"
    subprocess.run([sys.executable, str(ROOT / "tools/make_town_roads.py"), "-o", str(out)], check=True,
                   capture_output=True)
    shipped = ROOT / "host/roadnode/data/roads/town.geojson"
    assert out.read_bytes() == shipped.read_bytes(), "the shipped network differs from tools/make_town_roads.py's"


def test_stretch_truth_is_a_property_of_the_road():
    net = load_network("town")
    r = net.roads["depot-rd"]
    fwd, rev = r.stretch_truth("forward"), r.stretch_truth("reverse")
    assert len(fwd) == len(rev) == 11 and [s["stretch"] for s in rev] == list(range(10, -1, -1))
    assert all(50 <= abs(s["to_m"] - s["from_m"]) <= 150 for s in fwd)
    # the same numbers as the IRI of the road's own profile, forward and mirrored
    x, z = r.profile()
    s = fwd[3]
    assert s["true_iri_m_per_km"] == pytest.approx(segment_iri(x, z, [s["from_m"], s["to_m"]])[0].iri_m_per_km, rel=0.02)
    assert r.true_iri("reverse", 300, 400) == pytest.approx(rev[-4]["true_iri_m_per_km"], rel=0.02)
    # class A ring smoother than class C depot road smoother than the class E track
    mean = {k: np.mean([t["true_iri_m_per_km"] for t in net.roads[k].stretch_truth("forward")])
            for k in ("ring", "depot-rd", "quarry-track")}
    assert mean["ring"] < mean["depot-rd"] < mean["quarry-track"]
    # locating a point on a stretch gives that road, the distance along it and the direction
    mid = fwd[5]
    la, lo, hdg = r.point((mid["from_m"] + mid["to_m"]) / 2)
    hit = net.locate(float(la), float(lo), float(hdg) + 180)
    assert hit[0] == "depot-rd" and hit[1] == pytest.approx(550, abs=0.5) and hit[2] == "reverse"


def test_trips_overlap_in_both_directions():
    net = load_network("town")
    passes: dict = {}
    for k in range(3):
        for p in trip_pieces(net, k, 3, 5000):
            lo, hi = sorted((p.i0, p.i1))
            for st in net.roads[p.road_id].stretch_truth(p.direction):
                a, b = sorted((st["from_m"], st["to_m"]))
                if lo * 0.01 - 1e-6 <= a and b <= hi * 0.01 + 1e-6:
                    passes.setdefault(st["stretch_id"], set()).add(k)
    both = {sid[:-2] for sid, ks in passes.items() if len(ks) == 3 and sid.endswith("/f")} & \
           {sid[:-2] for sid, ks in passes.items() if len(ks) == 3 and sid.endswith("/r")}
    assert len(both) >= 8, "all three vehicles should drive the same road stretches both ways"
    assert {sid.split("/")[0] for sid in passes} - {"depot-rd"}, "and the vehicles should go different ways too"


@pytest.fixture(scope="module")
def fleet():
    return [network_scenario(k, 3, length_m=2600, seed=k, vehicle=v, odr_hz=100)
            for k, v in ((0, "sedan"), (1, "van"))]


@pytest.mark.slow
def test_two_vehicles_get_the_same_road_on_a_shared_stretch(fleet):
    net = load_network("town")
    _, road_z = net.roads["depot-rd"].profile()
    a, b = fleet
    sa = {s["stretch_id"]: s for s in a.meta["stretches"]}
    sb = {s["stretch_id"]: s for s in b.meta["stretches"]}
    shared = sorted(set(sa) & set(sb))
    assert {f"depot-rd/{i}/{d}" for i in range(11) for d in "fr"} <= set(shared)

    def z_of(sc, st):
        i0, i1 = (int(round(st[k] / 0.01)) for k in ("route_start_m", "route_end_m"))
        z = sc.road_z_m[i0 : i1 + 1]
        return z - z[0]

    for sid in ("depot-rd/4/r", "depot-rd/7/f"):
        za, zb = z_of(a, sa[sid]), z_of(b, sb[sid])
        np.testing.assert_array_equal(za, zb)  # the same surface for both vehicles, sample for sample
    # driven against the drawn direction it is the road mirrored: vehicle 0 outward = vehicle 1 homeward, reversed
    za, zb = z_of(a, sa["depot-rd/4/r"]), z_of(b, sb["depot-rd/4/f"])
    np.testing.assert_allclose(za, zb[::-1] - zb[-1], atol=1e-12)
    st = sa["depot-rd/4/f"]
    ref = road_z[int(round(st["from_m"] / 0.01)) : int(round(st["to_m"] / 0.01)) + 1]
    np.testing.assert_allclose(z_of(a, st), ref - ref[0], atol=1e-12)
    # the same true IRI in both scenarios, and it is the IRI of what each vehicle drove there
    for sid in shared:
        assert sa[sid]["true_iri_m_per_km"] == sb[sid]["true_iri_m_per_km"]
        for sc, st in ((a, sa[sid]), (b, sb[sid])):
            driven = segment_iri(sc.road_x_m, sc.road_z_m, [st["route_start_m"], st["route_end_m"]])[0].iri_m_per_km
            assert driven == pytest.approx(st["true_iri_m_per_km"], rel=0.03), sid
    # the two directions are different profiles with (nearly) the same roughness
    assert sa["depot-rd/4/f"]["true_iri_m_per_km"] != sa["depot-rd/4/r"]["true_iri_m_per_km"]
    assert sa["depot-rd/4/f"]["true_iri_m_per_km"] == pytest.approx(sa["depot-rd/4/r"]["true_iri_m_per_km"], rel=0.25)


@pytest.mark.slow
def test_a_network_drive_follows_its_roads(fleet):
    net = load_network("town")
    sc = fleet[1]
    assert sc.meta["length_m"] == pytest.approx(2600, abs=0.02) and sc.meta["route"]["network"] == "town"
    # every truth position lies on the road its piece names, at the distance along it
    for p in sc.meta["route"]["pieces"]:
        r = net.roads[p["road_id"]]
        sel = (sc.truth_pos_m > p["route_start_m"] + 1) & (sc.truth_pos_m < p["route_end_m"] - 1)
        along = p["from_m"] + np.sign(p["to_m"] - p["from_m"]) * (sc.truth_pos_m[sel] - p["route_start_m"])
        la, lo, _ = r.point(along)
        e, n = to_local_m(la, lo, sc.truth_lat[sel], sc.truth_lon[sel])
        assert np.hypot(e, n).max() < 0.05
    # the U-turns (destination and depot) are stops; the heading turns round there
    for p in sc.meta["route"]["pieces"][1:]:
        prev = [q for q in sc.meta["route"]["pieces"] if q["route_end_m"] == p["route_start_m"]][0]
        if prev["road_id"] == p["road_id"] and prev["direction"] != p["direction"]:
            near = np.abs(sc.truth_pos_m - p["route_start_m"]) < 0.5
            assert sc.truth_speed_mps[near].min() < 0.01
    h = sc.truth_heading_deg
    assert abs((h[sc.truth_pos_m < 500][-1] - h[-1] + 180) % 360 - 180) > 170  # out west, home east


@pytest.mark.slow
def test_network_cli(cli, tmp_path):
    out = tmp_path / "v.npz"
    r = cli("scenario", "make", "--network", "town", "--vehicle-index", "2", "--vehicles", "3", "--minutes", "1.5",
            "--odr-hz", "100", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert 80 <= s["duration_s"] <= 100  # 1.5 minutes, give or take the correction's rounding
    assert s["route"]["vehicle_index"] == 2 and s["stretches"][0]["road_id"] == "depot-rd"
    assert s["road"]["network"] == "town"
    r = cli("scenario", "show", str(out))
    assert r.returncode == 0 and "road stretches driven" in r.stdout and "Depot Road" in r.stdout


@pytest.mark.parametrize("args, msg", [
    (["--network", "town", "--iso-class", "C"], "leave out --iso-class"),
    (["--network", "town", "--route-file", "x.geojson"], "leave out --route-file"),
    (["--network", "town", "--vehicles", "3", "--vehicle-index", "3"], "--vehicle-index must be 0–2"),
    (["--network", "town", "--minutes", "2", "--length-m", "900"], "one of --length-m or --minutes"),
    (["--network", "town", "--minutes", "0.1"], "minutes must be"),
    (["--network", "atlantis"], "not a shipped network"),
    (["--iso-class", "C", "--minutes", "3"], "only with --network"),
])
def test_network_cli_refuses(cli, tmp_path, args, msg):
    r = cli("scenario", "make", *args, "-o", str(tmp_path / "x.npz"))
    assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

