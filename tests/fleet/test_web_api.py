"""`roadnode serve`'s JSON API and pages through Flask's test client, over a SQLite store filled with
real packets (tests/web_helpers.py: three vehicles over the shipped town network); the static map
page; the `serve` command's address, signals and errors as a real subprocess."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest

import web_helpers as W
from roadnode.fleet.fleet import fleet_status, iso, segment_records
from roadnode.fleet.roads import road_stretches
from roadnode.fleet.store import Store
from roadnode.roads import load_network
from roadnode.web import create_app, write_map
from roadnode.web.data import IRI_CLASSES, iri_class

ENTRY = [sys.executable, "-c", "from roadnode.cli import entry; entry()"]


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("web") / "fleet.db"
    store = Store("sqlite:///" + str(path))
    devices = W.fill(store)
    yield store, devices, path
    store.close()


@pytest.fixture(scope="module")
def now(fleet_db):
    return W.last_time(fleet_db[1]) + 60.0


@pytest.fixture(scope="module")
def client(fleet_db, now):
    return create_app(fleet_db[0], clock=lambda: now).test_client()


def get(client, url, status=200):
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.data[:300])
    return r.get_json() if r.is_json or r.mimetype == "application/geo+json" else r


def test_roads_are_the_fleet_roads_query_with_iri_classes(client, fleet_db):
    store, devices, _ = fleet_db
    fc = get(client, "/api/roads")
    want = road_stretches(store.segments())
    assert fc["type"] == "FeatureCollection"
    assert len(fc["features"]) == len(want["stretches"]) > 30
    assert fc["left_out"] == want["left_out"] and fc["left_out"]["flagged"] == len(devices)  # one slow segment each
    assert fc["segments"] == sum(len(d.segments) for d in devices.values())
    for f, s in zip(fc["features"], want["stretches"]):
        p = f["properties"]
        assert p["median_iri_m_per_km"] == s["median_iri_m_per_km"] and p["n_passes"] == s["n_passes"]
        assert f["geometry"]["coordinates"] == [s["start"][::-1], s["end"][::-1]]
        lo, hi = next((lo, hi) for n, lo, hi, _ in IRI_CLASSES if n == p["iri_class"])
        assert lo <= p["median_iri_m_per_km"] < hi
    # per road, the stretches' medians have the class of the road's true IRI: the ring (ISO A) good, the
    # avenues (B) fair, Castle Lane (C) poor, Old Mill Road (D) bad
    net = load_network("town")
    per_road: dict = {}
    for f in fc["features"]:
        p = f["properties"]
        (lon0, lat0), (lon1, lat1) = f["geometry"]["coordinates"]
        hit = net.locate((lat0 + lat1) / 2, (lon0 + lon1) / 2, p["heading_deg"])
        assert hit is not None, f
        per_road.setdefault(hit[0], []).append(p["median_iri_m_per_km"])
    seen = set()
    for road, medians in per_road.items():
        truth = [s["truth"] for d in devices.values() for s in d.segments if s["road"] == road]
        assert iri_class(float(np.median(medians))) == iri_class(float(np.median(truth))), road
        seen.add(iri_class(float(np.median(truth))))
    assert seen == {"good", "fair", "poor", "bad"}


def test_roads_date_filter(client, fleet_db):
    store, devices, _ = fleet_db
    every = get(client, "/api/roads")
    # 3 and 5 May only: two of the three trips
    later = get(client, "/api/roads?since=2024-05-02")
    assert later["segments"] == sum(1 for d in devices.values() for s in d.segments if s["received"] >= W.T0 + W.DAY)
    assert max(f["properties"]["n_passes"] for f in later["features"]) < max(
        f["properties"]["n_passes"] for f in every["features"])
    assert min(f["properties"]["last_pass"] for f in later["features"]) >= "2024-05-02"
    # 1 May only
    first = get(client, "/api/roads?until=2024-05-02T00:00:00Z")
    assert first["segments"] == sum(1 for d in devices.values() for s in d.segments if s["received"] < W.T0 + W.DAY)
    assert all(f["properties"]["last_pass"] < "2024-05-02" for f in first["features"])
    assert first["segments"] + later["segments"] == every["segments"]
    # an age and Unix seconds work too; nothing in a window gives an empty collection
    assert get(client, f"/api/roads?since={W.T0 + 3 * W.DAY:.0f}")["segments"] < later["segments"]
    assert get(client, "/api/roads?since=2024-06-01")["features"] == []
    # bad windows are 400s with a JSON reason
    assert "since" in get(client, "/api/roads?since=yesterday", 400)["error"]
    assert get(client, "/api/roads?since=2024-05-03&until=2024-05-02", 400)["status"] == 400


def test_fleet_is_fleet_status_with_last_positions(client, fleet_db, now):
    store, devices, _ = fleet_db
    j = get(client, "/api/fleet")
    rows = j["devices"]
    want = fleet_status(store, now)
    assert [r["device_id"] for r in rows] == [r["device_id"] for r in want]
    assert [{k: v for k, v in r.items() if k != "last_position"} for r in rows] == want
    states = {r["device_id"]: r for r in rows}
    assert rows[0]["device_id"] == 503 and states[503]["state"] == "offline"  # problems first
    assert states[502]["unexpected_reboots"] == 1 and "reboots" in states[502]["problems"]
    assert states[501]["state"] == "online" and states[501]["problems"] == []
    for dev, d in devices.items():
        last = d.segments[-1]
        p = states[dev]["last_position"]
        assert (p["lat"], p["lon"]) == pytest.approx((last["lat"], last["lon"]), abs=2e-5)
        assert p["time"] == iso(last["received"])
    pos = get(client, "/api/positions")
    assert sorted(f["properties"]["device_id"] for f in pos["features"]) == sorted(devices)


def test_device_vitals_history(client, fleet_db):
    _, devices, _ = fleet_db
    for dev, d in devices.items():
        j = get(client, f"/api/devices/{dev}")
        assert j["status"]["device_id"] == dev
        vit = j["vitals"]
        queued = [v for v in vit if v["source"] == "queued"]
        assert [v["seq"] for v in queued] == [h["seq"] for h in d.heartbeats]
        assert [v["min_free_heap"] for v in queued] == [h["min_free_heap"] for h in d.heartbeats]
        assert [v["queue_depth"] for v in queued] == [h["queue_depth"] for h in d.heartbeats]
        assert [v["gps_fix"] for v in queued] == [h["gps_fix"] for h in d.heartbeats]
        assert [v["time"] for v in vit] == sorted(v["time"] for v in vit)
        # when made, estimated from the uptime: between when it was made (to the second) and received
        for v, h in zip(queued, d.heartbeats):
            assert iso(h["time"] - 1) < v["time"] <= v["received"] == iso(h["received"]), (v, h)
        live = [v for v in vit if v["source"] == "live"]
        assert len(live) == (0 if d.offline else 1)
        if live:
            assert live[0]["uptime_s"] == d.live["uptime_s"]
    # the reboot shows in 502's history; 503's queue grows and its GPS fix goes
    v502 = get(client, "/api/devices/502")["vitals"]
    assert v502[0]["unexpected_reboots"] == 0 and v502[-1]["unexpected_reboots"] == 1
    assert v502[-1]["reset_reason"] == "watchdog"
    v503 = get(client, "/api/devices/503")["vitals"]
    assert v503[-1]["queue_depth"] > v503[3]["queue_depth"] > 0 and v503[-1]["gps_fix"] == 0
    assert len(get(client, "/api/devices/503?limit=2")["vitals"]) == 2
    # unknown device 404, not a device id 400
    assert get(client, "/api/devices/999", 404)["error"].startswith("device 999")
    assert get(client, "/api/devices/abc", 400)["status"] == 400
    assert get(client, "/api/devices/16777216", 400)["status"] == 400


def test_segments_newest_first_limit(client, fleet_db):
    store, devices, _ = fleet_db
    j = get(client, "/api/segments?device=501&limit=5")
    assert j["segments"] == segment_records(store, 501)[-5:]
    assert [s["seq"] for s in j["segments"]] == [s["seq"] for s in devices[501].segments[-5:]]
    every = get(client, "/api/segments?limit=100000")["segments"]
    assert every == segment_records(store)
    since = get(client, "/api/segments?device=502&since=2024-05-04")["segments"]
    assert [s["seq"] for s in since] == [s["seq"] for s in devices[502].segments if s["received"] >= W.T0 + 3 * W.DAY]
    assert get(client, "/api/segments?device=999", 404)["status"] == 404
    assert "limit" in get(client, "/api/segments?device=501&limit=0", 400)["error"]
    assert "limit" in get(client, "/api/segments?limit=ten", 400)["error"]


def test_events_as_points(client, fleet_db):
    _, devices, _ = fleet_db
    fc = get(client, "/api/events")
    want = sorted((dev, e["seq"], e["kind"]) for dev, d in devices.items() for e in d.events)
    got = sorted((f["properties"]["device_id"], f["properties"]["seq"], f["properties"]["kind"]) for f in fc["features"])
    assert got == want and {k for _, _, k in want} == {"pothole", "bump"}
    for f in fc["features"]:
        e = next(e for e in devices[f["properties"]["device_id"]].events if e["seq"] == f["properties"]["seq"])
        assert f["geometry"]["coordinates"] == pytest.approx([e["lon"], e["lat"]], abs=2e-5)
    one = get(client, "/api/events?device=503&until=2024-05-02")
    assert sorted(f["properties"]["seq"] for f in one["features"]) == [
        e["seq"] for e in devices[503].events if e["received"] < W.T0 + W.DAY]


def test_errors_are_json_under_api(client):
    j = get(client, "/api/nothing-here", 404)
    assert j["status"] == 404 and j["error"]
    r = client.post("/api/fleet")
    assert r.status_code == 405 and r.get_json()["status"] == 405
    r = client.get("/devices/999")
    assert r.status_code == 404 and "device 999" in r.get_data(as_text=True)


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href"):
            if a.get(k):
                self.refs.append((tag, a[k]))


def _refs(html: str) -> list:
    p = _Refs()
    p.feed(html)
    return p.refs


def test_pages_and_their_assets_are_served_locally(client):
    for url in ("/", "/fleet", "/devices/501"):
        html = get(client, url).get_data(as_text=True)
        refs = _refs(html)
        assert refs
        for tag, ref in refs:
            if ref.startswith("data:") or ref.startswith("#"):
                continue
            assert ref.startswith("/"), (url, ref)  # nothing from another host (no CDN)
            if tag in ("script", "link"):
                assert client.get(ref).status_code == 200, ref
    js = client.get("/assets/plotly.min.js")
    assert js.status_code == 200 and len(js.data) > 1_000_000 and b"plotly" in js.data[:2000].lower()
    assert b"Leaflet" in client.get("/assets/leaflet/leaflet.js").data[:500]


def test_static_map_page_is_self_contained(fleet_db, client, tmp_path):
    store = fleet_db[0]
    path = write_map(store, tmp_path / "out" / "map.html")  # (its folder made)
    html = path.read_text()
    # nothing to fetch: no external script or stylesheet, Leaflet and the data inlined
    assert [r for r in _refs(html) if not r[1].startswith("data:")] == []
    assert "L.map(" in html and "leaflet-container" in html
    data = json.loads(re.search(r'<script id="rn-data" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert len(data["roads"]["features"]) == len(get(client, "/api/roads")["features"])
    assert len(data["events"]["features"]) == len(get(client, "/api/events")["features"])
    assert len(data["network"]["features"]) == len(load_network("town").roads)
    assert "url(images/" not in html  # Leaflet's images as data: URIs


# ---- the `serve` command --------------------------------------------------------------------------------
def _serve(db_path, *args):
    return subprocess.Popen(ENTRY + ["serve", "--db", f"sqlite:///{db_path}", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _first_line(p) -> dict:
    line = p.stdout.readline()
    assert line, p.stderr.read()
    return json.loads(line)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_serve_prints_its_url_answers_and_stops_on_signals(fleet_db, sig, code):
    import urllib.request

    p = _serve(fleet_db[2], "--port", "0", "--json")
    try:
        head = _first_line(p)
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", head["url"]) and head["db"] == f"sqlite:///{fleet_db[2]}"
        with urllib.request.urlopen(head["url"] + "api/fleet", timeout=30) as r:
            assert sorted(d["device_id"] for d in json.load(r)["devices"]) == [501, 502, 503]
        p.send_signal(sig)
        assert p.wait(30) == code
        # nothing listens there any more
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(head["url"].rsplit(":", 1)[1].strip("/"))), timeout=10)
    finally:
        p.kill()
        p.wait()


def test_serve_port_in_use_and_bad_options(fleet_db, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run(ENTRY + ["serve", "--db", f"sqlite:///{fleet_db[2]}", "--port", str(port)],
                           capture_output=True, text=True, timeout=60)
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("\n") == 1 and "in use" in r.stderr and r.stdout == ""
    r = subprocess.run(ENTRY + ["serve", "--db", f"sqlite:///{tmp_path}/none.db"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "no collector database" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "none.db").exists()
    r = subprocess.run(ENTRY + ["serve", "--db", f"sqlite:///{fleet_db[2]}", "--tiles", "https://example.org/t.png"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--tiles" in r.stderr


def test_postgresql_store_gives_the_same_answers(pg_server, fleet_db, now, client):
    """The dashboard's own queries (events, vitals, positions) in PostgreSQL's dialect too."""
    pg = Store(pg_server.create_db("web_api"))
    try:
        W.fill(pg, fleet_db[1])
        c = create_app(pg, clock=lambda: now).test_client()
        for url in ("/api/fleet", "/api/roads", "/api/events", "/api/devices/502", "/api/devices/503",
                    "/api/segments?device=501&limit=7", "/api/positions"):
            assert get(c, url) == get(client, url), url
        assert get(c, "/api/devices/999", 404)["status"] == 404
    finally:
        pg.close()


def test_tiles_are_optional_and_configured(fleet_db, now):
    tiles = "https://tiles.example.org/{z}/{x}/{y}.png"
    html = create_app(fleet_db[0], tiles=tiles, clock=lambda: now).test_client().get("/").get_data(as_text=True)
    cfg = json.loads(re.search(r'<script id="rn-config" type="application/json">(.*?)</script>', html, re.S).group(1))
    assert cfg["tiles"] == tiles and [c["name"] for c in cfg["classes"]] == ["good", "fair", "poor", "bad"]
    plain = create_app(fleet_db[0], clock=lambda: now).test_client().get("/").get_data(as_text=True)
    assert '"tiles":null' in plain and "example.org" not in plain
