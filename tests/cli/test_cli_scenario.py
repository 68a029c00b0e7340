"""`roadnode scenario make|show` through the real CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from roadnode.models.geo import distance_m
from roadnode.scenario import load_scenario
from roadnode.science.iri import segment_iri


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    import subprocess
    import sys

    d = tmp_path_factory.mktemp("sc")
    f = d / "a.npz"
    args = ["scenario", "make", "--iso-class", "C", "--length-m", "400", "--seed", "5", "--feature", "pothole@150",
            "--stop-at", "250:4", "--gps-dropout", "20:24", "--odr-hz", "200", "--route", "48.0,17.0,30", "-o", str(f)]
    r = subprocess.run([sys.executable, "-m", "roadnode.cli", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return f, args


def test_make_writes_consistent_truth(made):
    f, _ = made
    sc = load_scenario(f)
    m = sc.meta
    assert m["format"] == "roadnode-scenario" and m["version"] == 1
    # IMU: one int16 triple per ODR tick over the whole drive
    assert sc.imu_counts.dtype == np.int16 and sc.imu_counts.shape[1] == 3
    assert len(sc.imu_t_s) == pytest.approx(m["duration_s"] * 200, abs=2)
    # truth IRI equals the IRI of the stored road over the same segments
    segs = segment_iri(sc.road_x_m, sc.road_z_m, np.r_[sc.seg_start_m, sc.seg_end_m[-1]])
    np.testing.assert_allclose([s.iri_m_per_km for s in segs], sc.seg_true_iri)
    # the stop is there: speed reaches 0 near 250 m and stays for ~4 s
    stopped = sc.truth_speed_mps < 0.01
    assert 3.5 <= stopped[sc.truth_t_s > 5].sum() / 100 <= 5.0
    assert abs(np.median(sc.truth_pos_m[stopped & (sc.truth_t_s > 5)]) - 250) < 0.5
    # positions follow the heading; the last fix lies ~400 m from the origin
    assert distance_m(48.0, 17.0, sc.truth_lat[-1], sc.truth_lon[-1]) == pytest.approx(sc.truth_pos_m[-1], rel=1e-3)
    # GPS dropout: RMC status V between 20 and 24 s
    rmc = [(t, s) for t, s in sc.gps_sentences() if s[3:6] == b"RMC"]
    assert all(s.split(b",")[2] == b"V" for t, s in rmc if 20.05 < t < 24)
    assert any(s.split(b",")[2] == b"A" for t, s in rmc if t > 25)
    assert m["features"][0]["kind"] == "pothole" and m["features"][0]["position_m"] == 150


def test_deterministic_for_a_seed(made, tmp_path, cli):
    f, args = made
    g = tmp_path / "b.npz"
    r = cli(*args[:-1], str(g))
    assert r.returncode == 0, r.stderr
    assert g.read_bytes() == f.read_bytes()
    h = tmp_path / "c.npz"
    args2 = list(args[:-1]) + [str(h)]
    args2[args2.index("--seed") + 1] = "6"
    assert cli(*args2).returncode == 0
    assert h.read_bytes() != f.read_bytes()


def test_show_json_and_plot(made, cli, tmp_path):
    f, _ = made
    png = tmp_path / "s.png"
    r = cli("scenario", "show", str(f), "--json", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["length_m"] == 400 and obj["duration_s"] > 400 / (60 / 3.6)
    assert [s["start_m"] for s in obj["segments"]] == [0, 100, 200, 300]
    assert all(s["true_iri_m_per_km"] > 2 for s in obj["segments"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    r = cli("scenario", "show", str(f))
    assert "true IRI per segment" in r.stdout and "pothole" in r.stdout


def test_profile_and_speed_csv(cli, shared_data, tmp_path):
    sp = tmp_path / "speed.csv"
    sp.write_text("time_s,speed_kmh\n0,0\n10,50\n20,50\n25,0\n30,0\n35,40\n200,40\n")
    out = tmp_path / "p.npz"
    r = cli("scenario", "make", "--profile", str(shared_data / "profiles/sorel/profile_1.txt"), "--speed-profile",
            str(sp), "--vehicle", "truck", "--mount", "body", "--imu", "icm42688", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    obj = json.loads(r.stdout)
    assert obj["length_m"] == pytest.approx(544.0) and obj["vehicle"] == "truck" and obj["imu"]["part"] == "icm42688"
    assert obj["stopped_s"] >= 5


@pytest.mark.parametrize(
    "args, msg",
    [
        (["--iso-class", "C", "--profile", "x.txt"], "exactly one of"),
        ([], "exactly one of"),
        (["--profile", "/nope.txt"], "no such file"),
        (["--iso-class", "C", "--vehicle", "tank"], "unknown vehicle"),
        (["--iso-class", "C", "--feature", "crater@5"], "unknown feature"),
        (["--iso-class", "C", "--speed-profile", "/nope.csv"], "cannot read speed profile"),
        (["--iso-class", "C", "--gps-hz", "10", "--gps-baud", "4800"], "baud"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(cli, tmp_path, args, msg):
    r = cli("scenario", "make", *args, "--length-m", "100", "-o", str(tmp_path / "x.npz"))
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and "Traceback" not in r.stderr


def test_show_rejects_non_scenarios(cli, tmp_path):
    f = tmp_path / "junk.npz"
    f.write_bytes(b"not a zip")
    r = cli("scenario", "show", str(f))
    assert r.returncode == 2 and "not a readable scenario" in r.stderr
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    r = cli("scenario", "show", str(tmp_path / "other.npz"))
    assert r.returncode == 2 and "not a roadnode scenario" in r.stderr
