"""`roadnode iri` through its real interface: file formats, JSON contract, errors and exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest

SOREL = "profiles/sorel/profile_1.txt"


def test_json_contract_and_values(cli, shared_data):
    r = cli("iri", str(shared_data / SOREL), "--segment", "100", "--json")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    obj = json.loads(lines[0])
    assert isinstance(obj["iri_m_per_km"], float)
    e = np.loadtxt(shared_data / "profiles/sorel/expected/p1_start478.0_seg100_m0.txt")
    full = [s for s in obj["segments"] if not s["partial"]]
    for s, row in zip(full, e):
        assert set(s) >= {"start_m", "end_m", "iri_m_per_km"}
        assert s["start_m"] == pytest.approx(row[0]) and s["end_m"] == pytest.approx(row[1])
        assert s["iri_m_per_km"] == pytest.approx(row[2], rel=0.005)


def test_table_output_and_plot(cli, shared_data, tmp_path):
    png = tmp_path / "iri.png"
    r = cli("iri", str(shared_data / SOREL), "--segment", "20", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    assert "overall IRI" in r.stdout and "478.00" in r.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_irregular_profile_says_it_was_resampled(cli, shared_data):
    r = cli("iri", str(shared_data / "profiles/sorel/profile_2.txt"), "--json")
    obj = json.loads(r.stdout)
    assert obj["resampled"]["from"] == "irregular"
    assert 0.25 / obj["resampled"]["dx_m"] == pytest.approx(round(0.25 / obj["resampled"]["dx_m"]))


def test_csv_with_header_and_mm_units(cli, shared_data, tmp_path):
    p = np.loadtxt(shared_data / SOREL)
    f = tmp_path / "p.csv"
    f.write_text("distance_m,elevation_mm\n" + "\n".join(f"{d},{z * 1000:.4f}" for d, z in p))
    ref = json.loads(cli("iri", str(shared_data / SOREL), "--json").stdout)
    bad = cli("iri", str(f), "--json")  # mm read as metres: warned, not refused
    assert bad.returncode == 0 and "millimetres" in bad.stderr
    good = json.loads(cli("iri", str(f), "--units", "mm", "--json").stdout)
    assert good["format"] == "csv"
    assert good["iri_m_per_km"] == pytest.approx(ref["iri_m_per_km"], rel=1e-6)


def test_erd_file(cli, shared_data, tmp_path):
    p = np.loadtxt(shared_data / SOREL)
    f = tmp_path / "p.erd"
    head = [
        "ERD-FILE   DATA",
        f"    2 {len(p)}    1    1    0.25  {p[0, 0]}",
        "TITLE = sorel profile_1 as ERD",
        "XUNITS = m",
        "UNITS = mm, mm",
        "SCALFACT = 1, 1",
        "LABELS = Left, Right",
        "END",
    ]
    f.write_text("\n".join(head + [f"{z * 1000:.4f} {z * 1000:.4f}" for z in p[:, 1]]) + "\n")
    ref = json.loads(cli("iri", str(shared_data / SOREL), "--json").stdout)
    got = json.loads(cli("iri", str(f), "--json").stdout)
    assert got["format"] == "erd"
    assert got["iri_m_per_km"] == pytest.approx(ref["iri_m_per_km"], rel=1e-5)


@pytest.mark.parametrize(
    "content, msg",
    [
        ("0 1\n1 1\n2 1\n", "at least 11 m"),
        ("0 1\n1 1\n1 1\n" + "".join(f"{i} 1\n" for i in range(2, 200)), "must increase"),
        ("0 1\n0.25 \n" + "".join(f"{i} 1\n" for i in range(1, 200)), "expected two columns"),
        ("0 1\n0.25 abc\n", "not a number"),
        ("0 1\n0.25 nan\n", "not a finite number"),
        ("ERD\n1E309 100 1 1 0.25\nEND\n0\n", "not a finite number"),  # found by the fuzz test in CI
        ("ERD\n1 100 1 1 inf\nEND\n0\n", "not a finite number"),
    ],
)
def test_bad_input_is_one_line_exit_2(cli, tmp_path, content, msg):
    f = tmp_path / "bad.txt"
    f.write_text(content)
    r = cli("iri", str(f))
    assert r.returncode == 2
    assert msg in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_unreadable_files_exit_2(cli, tmp_path):
    r = cli("iri", str(tmp_path / "missing.txt"))
    assert r.returncode == 2 and "no such file" in r.stderr
    b = tmp_path / "bin.dat"
    b.write_bytes(bytes(range(256)) * 4)
    r = cli("iri", str(b))
    assert r.returncode == 2 and "binary" in r.stderr


def test_a_gap_splits_the_profile_and_is_reported(cli, shared_data, tmp_path):
    """1,750 m without points is missing road: segments over it get no IRI and the gap is listed
    (it used to be bridged by a straight line and scored as perfectly smooth road)."""
    p = np.loadtxt(shared_data / SOREL)
    d0 = p[:, 0] - p[0, 0]
    f = tmp_path / "gap.txt"
    f.write_text("".join(f"{d:.2f} {z}\n" for d, z in p[:, :2].tolist())
                 + "".join(f"{d + d0[-1] + 1750.25 + p[0, 0]:.2f} {z}\n" for d, z in zip(d0, p[:, 1])))
    r = cli("iri", str(f), "--segment", "100", "--json")
    assert r.returncode == 0, r.stderr
    o = json.loads(r.stdout)
    (g,) = o["gaps"]
    assert g["length_m"] == pytest.approx(1750.25)
    crossing = [s for s in o["segments"] if s["start_m"] < g["end_m"] and s["end_m"] > g["start_m"]]
    assert crossing and all(s["gap"] and s["iri_m_per_km"] is None for s in crossing)
    measured = [s for s in o["segments"] if not s["gap"] and not s["partial"]]
    assert measured and all(s["iri_m_per_km"] > 0.5 for s in measured)
    ref = json.loads(cli("iri", str(shared_data / SOREL), "--json").stdout)
    assert o["iri_m_per_km"] == pytest.approx(ref["iri_m_per_km"], rel=0.05)  # both pieces: same road
    human = cli("iri", str(f))
    assert "gap: no profile from" in human.stdout and "n/a" in human.stdout


def test_a_third_column_is_ignored_with_a_warning(cli, shared_data, tmp_path):
    p = np.loadtxt(shared_data / SOREL)
    f = tmp_path / "three.txt"
    f.write_text("".join(f"{d} {z} {z + 1}\n" for d, z in p[:, :2].tolist()))
    r = cli("iri", str(f), "--json")
    assert r.returncode == 0
    assert "1 column(s) after the second ignored" in r.stderr and len(r.stderr.splitlines()) == 1
    ref = json.loads(cli("iri", str(shared_data / SOREL), "--json").stdout)
    assert json.loads(r.stdout)["iri_m_per_km"] == ref["iri_m_per_km"]
    assert json.loads(r.stdout)["ignored_columns"] == 1
