"""`roadnode calibrate`: the settings of a vehicle the node was not tuned for, fitted on a simulated
drive with the reference from the road's true profile, make the node's error on the reference
smaller; `--json` has exactly settings/before/after; `--port` applies them on the (simulated) node;
the two reference forms align with the drive alike; bad inputs are one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from roadnode.accuracy import calibration as C
from roadnode.scenario import make_scenario, save_scenario

SCORE_KEYS = {"n", "median_abs_err_pct", "p90_abs_err_pct", "bias_pct"}


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "roadnode.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _profile_csv(sc, path, upto=None):
    x, z = sc.road_x_m, sc.road_z_m
    keep = x <= upto if upto is not None else np.ones(len(x), bool)
    np.savetxt(path, np.c_[x[keep], z[keep]], delimiter=",", header="distance_m,elevation_m", comments="",
               fmt="%.5f")
    return path


@pytest.fixture(scope="module")
def truck(tmp_path_factory):
    """A truck (the node's defaults are a car's) on 400 m of class C road, 50 m segments."""
    d = tmp_path_factory.mktemp("cal")
    sc = make_scenario(iso_class="C", length_m=400, speed_kmh=60, seed=11, vehicle="truck", segment_m=50)
    save_scenario(sc, d / "truck.npz")
    return sc, d


@pytest.mark.slow
def test_calibrate_fits_a_truck_better_and_applies_the_settings_on_the_node(truck, tmp_path):
    from roadnode.usb.flash import flash_board
    from roadnode.sim.board import SimBoard

    sc, d = truck
    prof = _profile_csv(sc, d / "profile.csv")
    with SimBoard(flash_dir=tmp_path / "flash") as b:
        assert flash_board(b.port, device_id=4).ok
        assert cli("config", "set", "self_cal=on", "--port", b.port).returncode == 0
        r = cli("calibrate", str(d / "truck.npz"), "--reference-profile", str(prof), "--json", "--port", b.port)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert set(got) == {"settings", "before", "after"}
        assert set(got["before"]) == set(got["after"]) == SCORE_KEYS
        s = got["settings"]
        assert set(s) == {"wheel_hop_hz", "wheel_damping"}
        assert s != {"wheel_hop_hz": 11.0, "wheel_damping": 0.3}  # not the defaults it started from
        before, after = got["before"], got["after"]
        assert after["n"] == before["n"] >= 6
        assert after["median_abs_err_pct"] < before["median_abs_err_pct"]
        assert abs(after["bias_pct"]) < abs(before["bias_pct"])
        # the node took them (config show reads them back from the node)
        shown = cli("config", "show", "--port", b.port, "--json")
        assert shown.returncode == 0, shown.stderr
        cfg = json.loads(shown.stdout)
        assert cfg["wheel_hop_hz"] == pytest.approx(s["wheel_hop_hz"]) and cfg["wheel_damping"] == pytest.approx(
            s["wheel_damping"])
        assert cfg["self_cal"] == "off"  # the technician's fit stays: the node's own would replace it


def test_a_profile_and_an_iri_csv_give_the_same_reference_where_the_drive_starts_inside_them(truck, tmp_path):
    sc, _ = truck
    # a survey from chainage 1000 m, the drive starting 120 m into it (flat road before): --start-m 1120
    x = np.r_[np.arange(0, 120, 0.01), sc.road_x_m + 120] + 1000
    z = np.r_[np.zeros(12000), sc.road_z_m]
    np.savetxt(tmp_path / "p.csv", np.c_[x, z], delimiter=",", header="distance_m,elevation_m", comments="", fmt="%.5f")
    ref = C.reference_from_profile(tmp_path / "p.csv", sc, start_m=1120.0)
    truth = {i: v for i, v in enumerate(sc.seg_true_iri) if v == v}
    assert sorted(ref) == sorted(truth)
    # the same road as the truth's; only the first segment's lead-in differs (flat road before it)
    assert all(ref[i] == pytest.approx(truth[i], rel=1e-4) for i in ref if i)
    assert ref[0] == pytest.approx(truth[0], rel=0.2)
    # and by default the drive starts where the reference does: here on the flat lead-in, not the road
    assert C.reference_from_profile(tmp_path / "p.csv", sc)[3] != pytest.approx(truth[3], rel=0.01)
    rows = "\n".join(f"{1120 + a:.1f},{b + 1120:.1f},{v:.6f}"
                     for a, b, v in zip(sc.seg_start_m, sc.seg_end_m, sc.seg_true_iri))
    (tmp_path / "iri.csv").write_text("start_m,end_m,iri_m_per_km\n" + rows + "\n")
    ref2 = C.reference_from_csv(tmp_path / "iri.csv", sc)  # its first row is the drive's start
    assert ref2 == pytest.approx({i: float(v) for i, v in truth.items()}, abs=1e-5)
    assert C.reference_from_csv(tmp_path / "iri.csv", sc, start_m=1020.0).keys() == {i + 2 for i in truth}


@pytest.mark.slow
def test_a_body_mount_gets_its_gain(tmp_path):
    sc = make_scenario(iso_class="C", length_m=400, speed_kmh=60, seed=12, vehicle="van", mount="body",
                       segment_m=50)
    save_scenario(sc, tmp_path / "body.npz")
    rows = "\n".join(f"{a:.1f},{v:.6f}" for a, v in zip(sc.seg_start_m, sc.seg_true_iri))
    (tmp_path / "iri.csv").write_text("start_m,iri\n" + rows + "\n")
    r = cli("calibrate", str(tmp_path / "body.npz"), "--reference-iri", str(tmp_path / "iri.csv"), "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert set(got["settings"]) == {"body_gain"} and got["settings"]["body_gain"] != 1.0
    assert abs(got["after"]["bias_pct"]) < abs(got["before"]["bias_pct"])


def test_the_settings_of_a_captured_drive_are_the_nodes_measuring_ones():
    sc = make_scenario(iso_class="B", length_m=100, speed_kmh=40, seed=1)
    sc.meta["capture"] = {"config": {"device_id": 3, "uplink": "mqtt", "mqtt_host": "x", "wifi_ssid": "a",
                                     "wheel_hop_hz": 9.5, "segment_length_m": 50, "mount": "axle"}}
    assert C.drive_settings(sc) == {"wheel_hop_hz": 9.5, "segment_length_m": 50, "mount": "axle"}
    assert C.segment_m(sc, C.drive_settings(sc)) == 50.0


@pytest.mark.parametrize("case", ["missing", "bad_row", "bad_header", "short_csv", "short_profile", "both", "neither",
                                  "off_grid"])
def test_bad_inputs_are_one_line_and_exit_2(truck, tmp_path, case):
    sc, d = truck
    drive = str(d / "truck.npz")
    good = "\n".join(f"{a:.1f},{v:.6f}" for a, v in zip(sc.seg_start_m, sc.seg_true_iri))
    csv = tmp_path / "iri.csv"
    args = {
        "missing": [str(tmp_path / "nope.npz"), "--reference-iri", str(csv)],
        "bad_row": [drive, "--reference-iri", str(csv)],
        "bad_header": [drive, "--reference-iri", str(csv)],
        "short_csv": [drive, "--reference-iri", str(csv)],
        "short_profile": [drive, "--reference-profile", str(tmp_path / "p.csv")],
        "both": [drive, "--reference-iri", str(csv), "--reference-profile", str(tmp_path / "p.csv")],
        "neither": [drive],
        "off_grid": [drive, "--reference-iri", str(csv)],
    }[case]
    text = {"bad_row": "start_m,iri_m_per_km\n0,8.1\n50,eight\n", "bad_header": "distance,roughness\n0,8\n",
            "short_csv": "start_m,iri_m_per_km\n" + "\n".join(good.splitlines()[:3]) + "\n",
            "off_grid": "start_m,iri_m_per_km\n0,8\n37,8\n"}.get(case, "start_m,iri_m_per_km\n" + good + "\n")
    csv.write_text(text)
    _profile_csv(sc, tmp_path / "p.csv", upto=250.0)
    r = cli("calibrate", *args, "--json")
    assert r.returncode == 2, (case, r.returncode, r.stderr)
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and not r.stdout, (case, r.stderr)
    want = {"missing": "nope.npz", "bad_row": "line 3", "bad_header": "header", "short_csv": "whole drive",
            "short_profile": "whole drive", "both": "one reference", "neither": "one reference",
            "off_grid": "line 3"}[case]
    assert want in r.stderr, (case, r.stderr)
