"""The dashboard in a real browser: headless Chromium (Debian's package, driven by Playwright) against
`roadnode serve`, itself over a `roadnode collect` fed through a real MQTT broker by three host-side
nodes sending real packets (tests/web_helpers.py). The map draws one coloured line per stretch of
/api/roads, a popup opens on click, the date filter re-queries; the fleet table lists every device
with its state and refreshes itself; a device page draws its four charts; no console errors.
Screenshots: out/map.png, out/fleet.png, out/device.png (linked from the README)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

import web_helpers as W
from fleet_helpers import Collect, Node, wait

OUT = Path(__file__).resolve().parents[2] / "out"
ENTRY = [sys.executable, "-c", "from roadnode.cli import entry; entry()"]


def _chromium() -> str | None:
    for p in (os.environ.get("ROADNODE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if p and os.access(p, os.X_OK):
            return p
    return None


CHROMIUM = _chromium()
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: install the Debian package `chromium` (.ci/run does)"),
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[dev]')"),
]


def api(base: str, path: str):
    with urllib.request.urlopen(base + path.lstrip("/"), timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory):
    """The plan's packets through broker -> `roadnode collect` -> SQLite, as nodes send them."""
    from roadnode.fleet.broker import Broker

    db = tmp_path_factory.mktemp("webui") / "fleet.db"
    devices = W.plan()
    with Broker() as broker:
        col = Collect(broker.url, f"sqlite:///{db}", "--client-id", "c-webui")
        try:
            for dev, d in devices.items():
                node = Node(broker, dev, will=d.offline).start()
                for _, payload, _ in W.batches(d):
                    node.up(payload)
                node.wait_acked(W.EPOCH, len(d.packets) - 1)
                if d.live:
                    node.status(d.live["payload"], retain=True).wait_for_publish(10)
                if d.offline:
                    node.vanish()  # the broker publishes its will: offline
                else:
                    node.stop()
            from roadnode.fleet.fleet import fleet_status
            from roadnode.fleet.store import Store

            st = Store(f"sqlite:///{db}")
            try:
                import time

                wait(lambda: {r["device_id"]: r["state"] for r in fleet_status(st, time.time())}
                     == {501: "online", 502: "online", 503: "offline"}, 30, "the three devices' states")
            finally:
                st.close()
        finally:
            col.stop()
    return db, devices


@pytest.fixture(scope="module")
def server(fleet_db):
    p = subprocess.Popen(ENTRY + ["serve", "--db", f"sqlite:///{fleet_db[0]}", "--port", "0", "--json",
                                  "--refresh", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line, p.stderr.read()
        yield json.loads(line)["url"]
    finally:
        p.terminate()
        assert p.wait(30) == 0


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page whose console errors and uncaught exceptions are collected in page.errors."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    pg = ctx.new_page()
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"page error: {e}"))
    pg.on("requestfailed", lambda r: pg.errors.append(f"request failed: {r.url}"))
    yield pg
    ctx.close()


def _ready(pg):
    pg.wait_for_selector("body[data-state=ready]", timeout=30_000)


def test_map_draws_every_stretch_coloured_popup_and_date_filter(page, server):
    roads = api(server, "/api/roads")
    events = api(server, "/api/events")
    colours = {c["name"]: c["color"] for c in roads["classes"]}
    assert len(roads["features"]) > 30
    page.goto(server)
    _ready(page)
    lines = page.locator("path.rn-stretch")
    assert lines.count() == len(roads["features"])
    # each line in its class's colour, as many per class as /api/roads has
    strokes = lines.evaluate_all("els => els.map(e => e.getAttribute('stroke'))")
    want = sorted(colours[f["properties"]["iri_class"]] for f in roads["features"])
    assert sorted(strokes) == want and len(set(strokes)) == 4
    assert page.locator("path.rn-network").count() > 10  # the shipped roads, faint, underneath
    assert page.locator("path.rn-event").count() == len(events["features"]) > 0
    assert page.locator("path.rn-device").count() == 3
    assert page.locator(".rn-legend").inner_text().count("m/km") >= 1
    # a popup on click: the stretch's figures
    # (a stretch whose middle nothing covers: a device marker or the other direction may lie on some)
    xy = page.evaluate("""() => {
        for (const p of document.querySelectorAll('path.rn-stretch')) {
            const r = p.getBoundingClientRect(), x = r.x + r.width / 2, y = r.y + r.height / 2;
            if (document.elementFromPoint(x, y) === p) return [x, y];
        }
        return null; }""")
    assert xy, "every stretch is covered"
    page.mouse.click(*xy)
    popup = page.locator(".leaflet-popup-content")
    popup.wait_for(timeout=10_000)
    text = popup.inner_text()
    for word in ("IRI median", "p25", "passes", "vehicles", "last pass"):
        assert word in text
    OUT.mkdir(exist_ok=True)
    page.locator(".leaflet-popup-close-button").click()
    page.screenshot(path=str(OUT / "map.png"))
    # the date filter re-queries /api/roads: nothing after tomorrow, everything again for all dates
    import datetime as dt

    tomorrow = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).date().isoformat()
    page.fill("#rn-since", tomorrow)
    page.click("#rn-filter button[type=submit]")
    page.wait_for_function("document.querySelectorAll('path.rn-stretch').length === 0", timeout=10_000)
    assert api(server, f"/api/roads?since={tomorrow}")["features"] == []
    _ready(page)
    page.click("#rn-clear")
    page.wait_for_function(f"document.querySelectorAll('path.rn-stretch').length === {len(roads['features'])}",
                           timeout=10_000)
    assert page.errors == []


def test_fleet_table_lists_every_device_with_its_state_and_refreshes(page, server, fleet_db):
    fleet = api(server, "/api/fleet")["devices"]
    page.goto(server + "fleet")
    _ready(page)
    rows = page.locator("#rn-fleet tbody tr.rn-row")
    assert rows.count() == len(fleet_db[1]) == len(fleet)
    got = rows.evaluate_all("rs => rs.map(r => [Number(r.dataset.device), r.dataset.state])")
    assert got == [[r["device_id"], r["state"]] for r in fleet]  # problems first, as /api/fleet
    assert got[0] == [503, "offline"]
    assert "reboots" in rows.nth([d for d, _ in got].index(502)).inner_text()
    page.wait_for_selector("body[data-refreshes='3']", timeout=20_000)  # refreshing by itself (--refresh 1)
    assert rows.count() == len(fleet)
    page.screenshot(path=str(OUT / "fleet.png"), full_page=True)
    with page.expect_navigation():
        page.click("#rn-fleet a[href='/devices/502']")
    assert page.url.endswith("/devices/502")
    _ready(page)
    assert page.errors == []


def test_device_page_draws_its_charts_and_segments(page, server, fleet_db):
    dev = api(server, "/api/devices/503")
    assert len(dev["vitals"]) >= 6
    page.goto(server + "devices/503")
    _ready(page)
    plots = page.locator(".js-plotly-plot")
    assert plots.count() == 4
    for i in range(4):
        # each chart drew its traces: a line with as many points as heartbeats
        n = plots.nth(i).evaluate("el => el.data[0].x.length")
        assert n == len(dev["vitals"])
        assert plots.nth(i).locator(".scatterlayer .trace path.js-line").count() >= 1
    assert page.locator("#rn-state").inner_text() == "offline"
    segs = page.locator("#rn-segments tbody tr.rn-seg")
    assert segs.count() == min(100, len(fleet_db[1][503].segments))
    OUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUT / "device.png"))
    assert page.errors == []


def test_unknown_device_page_is_a_404(page, server):
    r = page.goto(server + "devices/999")
    assert r.status == 404 and "device 999" in page.inner_text("#rn-error-message")


def test_static_map_page_opens_from_disk(page, server, fleet_db, tmp_path):
    """out/map.html as the demo writes it: opened as a file, no server, every request blocked but file:."""
    from roadnode.fleet.store import Store
    from roadnode.web import write_map

    store = Store(f"sqlite:///{fleet_db[0]}")
    try:
        path = write_map(store, tmp_path / "map.html")
    finally:
        store.close()
    asked = []
    page.route("**/*", lambda r: (asked.append(r.request.url), r.continue_() if r.request.url.startswith("file:")
                                  else r.abort()))
    page.goto(path.as_uri())
    _ready(page)
    assert page.locator("path.rn-stretch").count() == len(api(server, "/api/roads")["features"])
    assert page.locator("path.rn-event").count() == len(api(server, "/api/events")["features"])
    assert asked == [path.as_uri()] and page.errors == []
