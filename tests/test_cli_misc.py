"""Top-level CLI behaviour: help, version, demo (the README's main job)."""

from __future__ import annotations

import json


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


def test_demo_runs_and_writes_outputs(cli, tmp_path):
    r = cli("demo", "--length-m", "300", "--out-dir", str(tmp_path), "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert len(obj["segments"]) == 3 and all(s["true_iri_m_per_km"] > 0 for s in obj["segments"])
    # every segment reported, the drive's last one too (closed, as partial if it was short, while the
    # vehicle stood after the drive: it used to stay open for ever)
    assert all(s["device"] for s in obj["segments"]), obj["segments"]
    assert (tmp_path / "demo.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "demo_scenario.npz").exists()
