"""Top-level CLI behaviour: help, version, demo (the README's main job)."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import urllib.request

import pytest


def test_help_lists_every_command(cli):
    r = cli("--help")
    assert r.returncode == 0
    for c in ("iri", "scenario", "nmea", "decode", "demo"):
        assert c in r.stdout


def test_version(cli):
    """The CLI, the package metadata and the firmware say the same version (one release number)."""
    import tomllib
    from pathlib import Path

    from roadnode.mpy.fwimport import fw

    want = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]["version"]
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.split()[-1] == want == fw("version").VERSION_STR


def test_unknown_command_is_usage_error(cli):
    r = cli("frobnicate")
    assert r.returncode == 2 and "No such command" in r.stderr


@pytest.mark.slow
def test_demo_runs_the_whole_chain_writes_outputs_and_serves(tmp_path):
    """The README's main job, smaller: vehicles on simulated boards running the firmware, MQTT to the
    collector's embedded broker, `roadnode collect` into SQLite; the fleet's answers, the files, and
    the dashboard kept up with --serve until SIGTERM."""
    p = subprocess.Popen([sys.executable, "-m", "roadnode.cli", "demo", "--vehicles", "2", "--minutes", "2",
                          "--out-dir", str(tmp_path), "--json", "--serve", "--port", "0"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        obj = json.loads(p.stdout.readline())  # the summary, then the dashboard's address
        served = json.loads(p.stdout.readline())
        with urllib.request.urlopen(served["url"] + "api/fleet", timeout=30) as resp:
            api = json.load(resp)
    finally:
        p.terminate()  # SIGTERM: the dashboard stops cleanly
        _, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert served["url"].startswith("http://127.0.0.1:") and served["db"].endswith("fleet.db")
    assert sorted(d["device_id"] for d in api["devices"]) == [101, 102]
    assert obj == json.loads((tmp_path / "fleet.json").read_text())
    f = obj["figures"]
    # every device in the fleet table, with what it measured stored once
    assert sorted(d["device_id"] for d in obj["fleet"]) == [101, 102]
    assert all(d["segments_total"] > 5 and d["fw_version"] for d in obj["fleet"]), obj["fleet"]
    # the nodes run with self-calibration on (an axle mount on vehicles nobody calibrated): the
    # fleet table carries what their heartbeats say of it
    assert all(d["self_cal"] and d["self_cal"]["state"] in ("learning", "identified")
               for d in obj["fleet"]), obj["fleet"]
    assert f["segments_stored"] == sum(d["segments_total"] for d in obj["fleet"])
    db = sqlite3.connect(tmp_path / "fleet.db")
    keys = db.execute("SELECT device_id, epoch, seq FROM segments").fetchall()
    assert len(keys) == len(set(keys)) == f["segments_stored"]
    # the two vans share the depot's road: stretches with both vehicles on them, the truth beside
    both = [s for s in obj["roads"]["stretches"] if s["n_vehicles"] == 2]
    assert both and all(s["true_iri_m_per_km"] for s in both if s["road"])
    html = (tmp_path / "map.html").read_text()
    # one page that opens from disk: Leaflet inlined, nothing fetched from elsewhere
    assert "L.map(" in html or "L.map (" in html, "no Leaflet map in the page"
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?(https?:)?//""", html, re.I)
    assert html.count('"Feature"') >= len(obj["roads"]["stretches"])