"""Every CLI command against a table of bad inputs: exit code, one line on stderr, no traceback, and
no file touched that should not be (hashes of every file in the work folder before and after).

The table runs the console entry point in-process (``roadnode.cli.main``: the same code the
``roadnode`` script runs, minus the interpreter start); an uncaught exception fails the case. The
cases that need a real process (a file-size limit standing in for a full disk) use a subprocess.
"""

from __future__ import annotations

import base64
import hashlib
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from roadnode.cli import main
from roadnode.mpy.fwimport import fw
from roadnode.scenario import load_scenario, make_scenario, save_scenario


# ---- the work folder: valid inputs, special files, and a scenario per kind of damage ----------

def _profile_text(n=800, dx=0.25, x0=0.0) -> str:
    z = np.random.default_rng(1).normal(0, 0.002, n).cumsum()
    return "".join(f"{x0 + i * dx:.3f} {v:.6f}\n" for i, v in enumerate(z))


def _scenario_variants(sc, d: Path) -> None:
    """Write copies of a valid scenario damaged in the ways the loader must catch."""

    def variant(name, meta=None, **arrays):
        a = dict(sc.arrays)
        a.update(arrays)
        m = dict(sc.meta) if meta is None else meta
        save_scenario(type(sc)(m, a), d / name)

    raw = (d / "good.npz").read_bytes()
    flipped = bytearray(raw)
    flipped[len(raw) // 2] ^= 0x10  # inside a compressed array: bad CRC / zlib error
    (d / "flipped.npz").write_bytes(bytes(flipped))
    (d / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    variant("short_imu.npz", imu_counts=sc.imu_counts[:100])
    off = sc.gps_offsets.copy()
    off[1:-1] = off[1:-1][::-1]
    variant("reversed_offsets.npz", gps_offsets=off)
    counts = sc.imu_counts.astype(float)
    counts[5, 2] = np.nan
    variant("nan_counts.npz", imu_counts=counts)
    variant("nan_time.npz", imu_t_s=np.where(np.arange(len(sc.imu_t_s)) == 7, np.nan, sc.imu_t_s))
    variant("short_truth.npz", truth_lat=sc.truth_lat[:-3])
    variant("zero_baud.npz", meta={**sc.meta, "gps": {**sc.meta["gps"], "baud": 0}})
    variant("nan_length.npz", meta={**sc.meta, "length_m": float("nan")})
    variant("no_imu_meta.npz", meta={k: v for k, v in sc.meta.items() if k != "imu"})
    np.savez(d / "other.npz", a=np.arange(3))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "good.txt").write_text(_profile_text())
    (d / "empty.txt").write_text("")
    (d / "one_point.txt").write_text("0 0\n")
    (d / "binary.bin").write_bytes(bytes(range(256)) * 8)
    (d / "unicode.txt").write_text("Straße ½ ∞\nüber 1\n")
    (d / "mixed_cols.txt").write_text("0 0\n0.25 0 1\n0.5 0\n")
    (d / "huge_span.txt").write_text("0 0\n0.05 0\n1e9 0\n")  # 2e10 points at 0.05 m
    (d / "huge_gap.txt").write_text(_profile_text() + _profile_text(x0=1e9))
    (d / "gap.txt").write_text(_profile_text() + _profile_text(x0=1950.0))
    (d / "nan.txt").write_text("0 0\n0.25 nan\n0.5 0\n")
    # route files (scenario make --route-file)
    line = [[17.1077, 48.1486], [17.1117, 48.1486], [17.1117, 48.1516]]
    (d / "route.geojson").write_text(f'{{"type": "LineString", "coordinates": {line}}}')
    (d / "text.geojson").write_text("a route, honest\n")
    (d / "point.geojson").write_text('{"type": "Feature", "geometry": {"type": "Point", "coordinates": [17.1, 48.1]}}')
    (d / "multi.geojson").write_text(f'{{"type": "MultiLineString", "coordinates": [{line}, {line}]}}')
    (d / "one_point.geojson").write_text('{"type": "LineString", "coordinates": [[17.1, 48.1], [17.1, 48.1]]}')
    (d / "latlon.geojson").write_text('{"type": "LineString", "coordinates": [[48.1, 17.1], [48.1, 117.2]]}')
    (d / "empty.gpx").write_text('<?xml version="1.0"?><gpx version="1.1" creator="x"><wpt lat="48" lon="17"/></gpx>')
    (d / "broken.gpx").write_text('<?xml version="1.0"?><gpx version="1.1"><trk><trkseg><trkpt lat="48"')
    sc = make_scenario(iso_class="C", length_m=60, speed_kmh=50, seed=3)
    save_scenario(sc, d / "good.npz")
    _scenario_variants(sc, d)
    (d / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (d / "odd.hex").write_text("abc\n")
    line = fw("packet_decode").encode_request(1, 5, 7, 2, b"xy")  # b"#" + base64 + b"\n"
    (d / "request.hex").write_text(base64.b64decode(bytes(line[1:]).strip()).hex() + "\n")
    os.mkfifo(d / "fifo")
    os.mkfifo(d / "fifo.npz")
    os.mkfifo(d / "fifo.png")
    (d / "adir.png").mkdir()
    (d / "adir.npz").mkdir()
    (d / "afile").write_text("not a folder\n")
    # as root, a device node like /dev/full (the same device) that a regression could only destroy
    # here; without root /dev/full itself cannot be replaced
    dev = "/dev/full"
    try:
        os.mknod(d / "devfull.npz", stat.S_IFCHR | 0o666, os.makedev(1, 7))
        dev = str(d / "devfull.npz")
    except PermissionError:
        pass
    for name in ("full.png", "full.npz", "full.bin"):  # links to a device: written through = refused
        os.symlink(dev, d / name)
    return d


def _snapshot(d: Path) -> dict:
    out = {}
    for p in sorted(d.rglob("*")):
        st = os.lstat(p)
        if stat.S_ISREG(st.st_mode):
            out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[p.name] = stat.S_IFMT(st.st_mode)  # FIFOs, links, folders stay what they were
    return out


class _Hung(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hung()


def _run(capsys, args, limit_s=120) -> tuple[int, str, str]:
    """main(args) in-process; a command that blocks (reading a FIFO) fails after ``limit_s``."""
    capsys.readouterr()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit_s)
    try:
        code = main(list(args))
    except _Hung:
        pytest.fail(f"roadnode {' '.join(args)} still running after {limit_s} s (blocked on a special file?)")
    except BaseException as e:  # what would be a traceback for the user
        pytest.fail(f"roadnode {' '.join(args)} raised {type(e).__name__}: {str(e)[:300]}")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    o = capsys.readouterr()
    return code, o.out, o.err


SC = "good.npz"
BAD_SCENARIOS = ["flipped.npz", "truncated.npz", "short_imu.npz", "reversed_offsets.npz", "nan_counts.npz",
                 "nan_time.npz", "short_truth.npz", "zero_baud.npz", "nan_length.npz", "no_imu_meta.npz",
                 "other.npz", "junk.npz", "empty.txt", "binary.bin", "fifo", "adir.npz", "/dev/zero",
                 "missing.npz"]

# (argv with {d} for the work folder, expected exit code, text expected in the message)
CASES = [
    # iri: profiles
    ("iri {d}/empty.txt", 2, "no profile points"),
    ("iri {d}/one_point.txt", 2, "only 1 points"),
    ("iri {d}/binary.bin", 2, "binary"),
    ("iri {d}/unicode.txt", 2, "not a number"),
    ("iri {d}/mixed_cols.txt", 2, "columns"),
    ("iri {d}/nan.txt", 2, "not a finite number"),
    ("iri {d}/huge_span.txt", 2, "limit"),
    ("iri {d}/huge_gap.txt", 2, "segments (limit"),
    ("iri {d}/fifo", 2, "not a regular file"),
    ("iri /dev/zero", 2, "not a regular file"),
    ("iri {d}/missing.txt", 2, "no such file"),
    ("iri {d}", 2, "directory"),
    # iri: options
    ("iri {d}/good.txt --segment 1e-9", 2, "segments (limit"),
    ("iri {d}/gap.txt --segment 1e-9", 2, "segments (limit"),
    ("iri {d}/good.txt --segment 0", 2, "segment length"),
    ("iri {d}/good.txt --segment -5", 2, "segment length"),
    ("iri {d}/good.txt --segment nan", 2, "segment length"),
    ("iri {d}/good.txt --segment inf", 2, "segment length"),
    ("iri {d}/good.txt --start nan", 2, "start"),
    ("iri {d}/good.txt --start 1e12", 2, "outside the profile"),
    ("iri {d}/good.txt --units furlongs", 2, "--units"),
    # iri: outputs
    ("iri {d}/good.txt --plot {d}/x.txt", 2, "unknown image type"),
    ("iri {d}/good.txt --plot {d}/noext", 2, "unknown image type"),
    ("iri {d}/good.txt --plot {d}/full.png", 2, "not a regular file"),
    ("iri {d}/good.txt --plot {d}/fifo.png", 2, "not a regular file"),
    ("iri {d}/good.txt --plot {d}/adir.png", 2, "directory"),
    ("iri {d}/good.txt --plot {d}/nofolder/x.png", 2, "does not exist"),
    ("iri {d}/good.txt --plot /proc/roadnode-x.png", 2, "plot"),
    ("iri {d}/good.txt --plot ''", 2, "unknown image type"),
    # scenario make
    ("scenario make --iso-class C --odr-hz 0 -o {d}/new.npz", 2, "ODR"),
    ("scenario make --iso-class C --odr-hz -200 -o {d}/new.npz", 2, "ODR"),
    ("scenario make --iso-class C --odr-hz nan -o {d}/new.npz", 2, "ODR"),
    ("scenario make --iso-class C --gps-baud 0 -o {d}/new.npz", 2, "baud"),
    ("scenario make --iso-class C --gps-hz 0 -o {d}/new.npz", 2, "GPS rate"),
    ("scenario make --iso-class C --seed -1 -o {d}/new.npz", 2, "seed"),
    ("scenario make --iso-class C --length-m 1e9 -o {d}/new.npz", 2, "length"),
    ("scenario make --iso-class C --speed-kmh nan -o {d}/new.npz", 2, "speed"),
    ("scenario make --iso-class C --stop-at nan -o {d}/new.npz", 2, "stop"),
    ("scenario make --iso-class C --route nan,0,0 -o {d}/new.npz", 2, "latitude"),
    ("scenario make --iso-class C --route 48,17,inf -o {d}/new.npz", 2, "heading"),
    ("scenario make --profile {d}/gap.txt -o {d}/new.npz", 2, "gap"),
    ("scenario make --iso-class C --route-file {d}/text.geojson -o {d}/new.npz", 2, "not a GeoJSON or GPX route (not JSON"),
    ("scenario make --iso-class C --route-file {d}/binary.bin -o {d}/new.npz", 2, "binary content"),
    ("scenario make --iso-class C --route-file {d}/point.geojson -o {d}/new.npz", 2, "no LineString in the GeoJSON (found Point)"),
    ("scenario make --iso-class C --route-file {d}/multi.geojson -o {d}/new.npz", 2, "MultiLineString is not one route"),
    ("scenario make --iso-class C --route-file {d}/one_point.geojson -o {d}/new.npz", 2, "at least 2 distinct points"),
    ("scenario make --iso-class C --route-file {d}/latlon.geojson -o {d}/new.npz", 2, "not a valid latitude/longitude"),
    ("scenario make --iso-class C --route-file {d}/empty.gpx -o {d}/new.npz", 2, "GPX has no track or route"),
    ("scenario make --iso-class C --route-file {d}/broken.gpx -o {d}/new.npz", 2, "not a readable GPX file"),
    ("scenario make --iso-class C --route-file {d}/fifo -o {d}/new.npz", 2, "not a regular file"),
    ("scenario make --iso-class C --route-file {d}/missing.gpx -o {d}/new.npz", 2, "no such file"),
    ("scenario make --iso-class C --route-file {d}/route.geojson --length-m 5000 -o {d}/new.npz", 2, "longer than the route"),
    ("scenario make --iso-class C --route-file {d}/route.geojson --route 48,17,0 -o {d}/new.npz", 2, "not both"),
    ("scenario make --network {d}/route.geojson -o {d}/new.npz", 2, "not a road network"),
    ("scenario make --profile {d}/binary.bin -o {d}/new.npz", 2, "binary"),
    ("scenario make --profile {d}/fifo -o {d}/new.npz", 2, "not a regular file"),
    ("scenario make --iso-class C --vehicle {d}/binary.bin -o {d}/new.npz", 2, "vehicle"),
    ("scenario make --iso-class C -o ''", 2, "empty file name"),
    ("scenario make --iso-class C -o {d}/devfull.npz", 2, "not a regular file"),
    ("scenario make --iso-class C -o {d}/full.npz", 2, "not a regular file"),
    ("scenario make --iso-class C -o {d}/fifo.npz", 2, "not a regular file"),
    ("scenario make --iso-class C -o {d}/adir.npz", 2, "directory"),
    ("scenario make --iso-class C -o {d}/nofolder/x.npz", 2, "does not exist"),
    ("scenario make --iso-class C -o /proc/roadnode-x.npz", 2, "scenario"),
    # scenario show (bad files are below), plot target
    ("scenario show {d}/" + SC + " --plot {d}/x.txt", 2, "unknown image type"),
    ("scenario show {d}/" + SC + " --plot {d}/full.png", 2, "not a regular file"),
    # decode
    ("decode " + "ab" * 200, 1, ""),  # > 255 characters: still a hex string (a CRC error, exit 1)
    ("decode " + "g" * 300, 2, "neither a file nor a hex string"),
    ("decode abc", 2, "odd number of digits"),
    ("decode ''", 2, "neither a file nor a hex string"),
    ("decode {d}/odd.hex", 2, "odd number of digits"),
    ("decode {d}/empty.txt", 2, "no packets found"),
    ("decode {d}/fifo", 2, "not a regular file"),
    ("decode /dev/zero", 2, "not a regular file"),
    ("decode {d}", 2, "directory"),
    ("decode {d}/request.hex --json", 0, ""),  # a request packet: its arguments as hex, not bytes
    ("decode Straße", 2, "neither a file nor a hex string"),
    # monitor: the options are checked before the port is opened
    ("monitor --port /dev/null --record /nonexistent/r.bin", 2, "does not exist"),
    ("monitor --port /dev/null --record {d}/full.bin", 2, "not a regular file"),
    ("monitor --port /dev/null --record {d}/adir.npz", 2, "directory"),
    ("monitor --port /dev/null --record {d}/fifo", 2, "not a regular file"),
    ("monitor --port /dev/null --duration 0", 2, "--duration"),
    ("monitor --port /dev/null --duration -1", 2, "--duration"),
    ("monitor --port /dev/null --duration nan", 2, "--duration"),
    # estimate --set
    ("estimate {d}/" + SC + " --set body_gain=nan", 2, "not a finite number"),
    ("estimate {d}/" + SC + " --set body_gain=inf", 2, "not a finite number"),
    ("estimate {d}/" + SC + " --set body_gain", 2, "KEY=VALUE"),
    ("estimate {d}/" + SC + " --set warp=9", 2, "unknown key"),
    # demo
    ("demo --out-dir {d}/afile", 2, "afile"),
    ("demo --out-dir /proc/roadnode-x", 2, "--out-dir"),
    ("demo --vehicles 0 --out-dir {d}/demo", 2, "vehicles"),
    ("demo --vehicles 1e3 --out-dir {d}/demo", 2, "vehicles"),
    ("demo --minutes 0 --out-dir {d}/demo", 2, "minutes"),
    ("demo --minutes nan --out-dir {d}/demo", 2, "minutes"),
    ("demo --seed -1 --out-dir {d}/demo", 2, "seed"),
    ("demo --serve --port 70000 --out-dir {d}/demo", 2, "port"),
    # usage
    ("iri", 2, "Missing argument"),
    ("nonsense", 2, "No such command"),
] + [
    (f"{cmd} {f if f.startswith('/') else '{d}/' + f}", 2, "")
    for cmd in ("scenario show", "estimate", "sim run", "replay --port /dev/null")
    for f in BAD_SCENARIOS
]


def _argv(spec: str, d: Path) -> list[str]:
    import shlex

    return shlex.split(spec.replace("{d}", str(d)))


@pytest.mark.parametrize("spec,code,msg", CASES, ids=[c[0][:60] for c in CASES])
def test_bad_input(work, capsys, spec, code, msg):
    if "devfull" in spec and not (work / "devfull.npz").exists():
        pytest.skip("creating a device node needs root")
    before = _snapshot(work)
    got, out, err = _run(capsys, _argv(spec, work))
    assert got == code, f"exit {got}, stderr: {err!r}"
    assert "Traceback" not in err and "Traceback" not in out
    if code == 2:
        lines = err.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert msg in lines[0], lines[0]
    after = _snapshot(work)
    assert after == before, "files in the work folder changed"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_bad_scenarios_name_the_fault(work, capsys):
    """A damaged scenario is refused on load with what is wrong, not accepted with nonsense results."""
    want = {
        "flipped.npz": "not a readable scenario",
        "short_imu.npz": "imu_counts has shape (100, 3)",
        "reversed_offsets.npz": "gps_offsets goes backwards",
        "nan_counts.npz": "imu_counts",
        "nan_time.npz": "imu_t_s holds a value that is not a finite number",
        "short_truth.npz": "truth_lat has",
        "zero_baud.npz": "gps.baud",
        "nan_length.npz": "length_m",
        "fifo": "not a regular file",
    }
    for f, m in want.items():
        got, _, err = _run(capsys, ["scenario", "show", str(work / f)])
        assert got == 2 and m in err, (f, err)


def test_scenario_written_through_a_symlink_keeps_the_link(tmp_path, capsys):
    target = tmp_path / "real.npz"
    target.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(target.name)
    got, _, err = _run(capsys, ["scenario", "make", "--iso-class", "B", "--length-m", "40", "-o", str(link)])
    assert got == 0, err
    assert link.is_symlink() and os.readlink(link) == target.name
    assert load_scenario(target).meta["length_m"] == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npz", "real.npz"]  # no temporary left


def _limited(limit: int):
    """A child whose files cannot grow past ``limit`` bytes: writes fail with EFBIG as on a full disk."""

    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


@pytest.mark.slow
@pytest.mark.parametrize("what", ["iri --plot", "scenario make -o", "scenario show --plot"])
def test_a_failed_write_is_reported_and_leaves_the_old_file(work, tmp_path, what):
    out = tmp_path / ("old.png" if "plot" in what else "old.npz")
    out.write_bytes(b"previous content")
    argv = {
        "iri --plot": ["iri", str(work / "good.txt"), "--plot", str(out)],
        "scenario make -o": ["scenario", "make", "--iso-class", "C", "--length-m", "40", "-o", str(out)],
        "scenario show --plot": ["scenario", "show", str(work / SC), "--plot", str(out)],
    }[what]
    r = subprocess.run([sys.executable, "-c", "from roadnode.cli import entry; entry()", *argv],
                       capture_output=True, text=True, timeout=600, preexec_fn=_limited(4096))
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.splitlines()) == 1
    assert "cannot write" in r.stderr and "too large" in r.stderr.lower()
    assert out.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no half file, no temporary
