"""Top-level CLI behaviour: help, version, demo (the README's main job)."""

from __future__ import annotations

import json
import re
import sqlite3

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

    want = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["version"]
    r = cli("--version")
    assert r.returncode == 0 and r.stdout.split()[-1] == want == fw("version").VERSION_STR


def test_unknown_command_is_usage_error(cli):
    r = cli("frobnicate")
    assert r.returncode == 2 and "No such command" in r.stderr


@pytest.mark.slow
def test_demo_runs_the_whole_chain_and_writes_outputs(cli, tmp_path):
    """The README's main job, smaller: vehicles on simulated boards running the firmware, MQTT to the
    collector's embedded broker, `roadnode collect` into SQLite; the fleet's answers and the files."""
    r = cli("demo", "--vehicles", "2", "--minutes", "2", "--out-dir", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj == json.loads((tmp_path / "fleet.json").read_text())
    f = obj["figures"]
    # every device in the fleet table, with what it measured stored once
    assert sorted(d["device_id"] for d in obj["fleet"]) == [101, 102]
    assert all(d["segments_total"] > 5 and d["fw_version"] for d in obj["fleet"]), obj["fleet"]
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