"""Mutation check: do the tests fail when the code is wrong?

Applies each small deliberate bug below (sign flips, off-by-ones, dropped checks, scaling errors)
to a private copy of the checkout, one at a time, runs the tests that cover that code, and counts
the mutation killed when they fail. Prints one line per mutation and the kill ratio; exits 1 when
the ratio is under the floor (90%) or a mutation no longer applies (the code moved: update it).

    python bench/mutation.py [--only SUBSTRING] [--list] [--json] [--floor 0.9]

The checkout itself is never touched: the copy is imported first (PYTHONPATH), compiles its own
firmware (content-hashed build cache) and reads the shared data through ROADNODE_SHARED.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Mutation:
    name: str
    path: str  # file in the checkout
    old: str  # exact text, must occur exactly once
    new: str
    tests: tuple[str, ...]  # pytest node ids or files that should catch it


M = Mutation
MUTATIONS = [
    # --- firmware: parsers, codecs ---------------------------------------------------------------
    M("nmea: lowercase hex digit off by one", "firmware/rnfw/nmea.py", "return c - 87", "return c - 86",
      ("tests/firmware/test_nmea.py",)),
    M("nmea: uppercase hex digit off by one", "firmware/rnfw/nmea.py", "return c - 55", "return c - 54",
      ("tests/firmware/test_nmea.py",)),
    M("nmea: checksum not compared", "firmware/rnfw/nmea.py", "h1 = _hex(buf[n - 2])", "h1 = -1 if 0 else _hex(buf[n - 2]) & 0",
      ("tests/firmware/test_nmea.py",)),
    M("crc16: wrong polynomial", "firmware/rnfw/crc.py", "((crc << 1) ^ 0x1021)", "((crc << 1) ^ 0x1023)",
      ("tests/firmware/test_packet.py",)),
    M("crc16: wrong initial value", "firmware/rnfw/crc.py", "def crc16(data, n=-1, crc=0xFFFF):",
      "def crc16(data, n=-1, crc=0xFFFE):", ("tests/firmware/test_packet.py",)),
    M("packet: saturation one too high", "firmware/rnfw/packet.py", "def _sat(v, hi):\n",
      "def _sat(v, hi):\n    hi += 1\n", ("tests/firmware/test_packet.py",)),
    M("protocol: request CRC not checked", "firmware/rnfw/protocol.py", "crc16(", "(lambda *a: 0)(",
      ("tests/firmware/test_protocol.py",)),
    # --- road science (host) ---------------------------------------------------------------------
    M("iri: 11 m initialisation one sample long", "host/roadnode/science/iri.py",
      "n = min(int(round(init_m / dx)), len(elev) - 1)", "n = min(int(round(init_m / dx)) + 1, len(elev) - 1)",
      ("tests/host/test_iri.py",)),
    M("iri: 11 m initialisation one sample short", "host/roadnode/science/iri.py",
      "n = min(int(round(init_m / dx)), len(elev) - 1)", "n = min(int(round(init_m / dx)) - 1, len(elev) - 1)",
      ("tests/host/test_iri.py",)),
    M("iri: suspension spring 1% off", "host/roadnode/science/iri.py", "K2 = 63.3", "K2 = 63.3 * 1.01",
      ("tests/host/test_iri.py",)),
    M("iri: damper sign", "host/roadnode/science/iri.py", "[-k2, -c, k2, c],", "[-k2, c, k2, -c],",
      ("tests/host/test_iri.py",)),
    M("iri: reference speed 79 km/h", "host/roadnode/science/iri.py", "V_REF = 80.0 / 3.6", "V_REF = 79.0 / 3.6",
      ("tests/host/test_iri.py",)),
    M("iri: 250 mm base one sample longer", "host/roadnode/science/iri.py", "k = int(round(BASE_M / dx))",
      "k = int(round(BASE_M / dx)) + 1", ("tests/host/test_iri.py",)),
    # --- firmware: estimator, node ---------------------------------------------------------------
    M("golden car (node): one ST coefficient off", "firmware/rnfw/golden_car.py", "65314, 5723,", "65314, 5724,",
      ("tests/firmware/test_estimator.py", "tests/firmware/test_golden_car_table.py")),  # the table's own check: one LSB
    M("golden car (node): wheel-hop w^2 scale", "firmware/rnfw/golden_car.py", "return 39478 * f * f // 100000",
      "return 39478 * f * f // 104000", ("tests/firmware/test_estimator.py",)),
    M("estimator: final IRI scale +4%", "firmware/rnfw/estimator.py", "return (mean + 50) // 100",
      "return (mean * 26 // 25 + 50) // 100",
      ("tests/firmware/test_estimator.py::test_median_signed_error_is_tightly_bounded_over_many_segments",)),
    M("estimator: acceleration scale ka -4%", "firmware/rnfw/estimator.py", "S[_KA] = ka\n", "S[_KA] = ka * 24 // 25\n",
      ("tests/firmware/test_estimator.py::test_median_signed_error_is_tightly_bounded_over_many_segments",)),
    M("estimator: Golden Car output +4% (twin)", "firmware/rnfw/est_twin.py", "rs = gc_step_py(x, c, s)",
      "rs = gc_step_py(x, c, s) * 26 // 25",
      ("tests/firmware/test_estimator.py::test_median_signed_error_is_tightly_bounded_over_many_segments",)),
    M("estimator: Golden Car output +4% (viper)", "firmware/rnfw/est_viper.py", "            rs = 0 - rs\n",
      "            rs = 0 - rs\n        rs = rs * 26 // 25\n", ("tests/firmware/test_estimator.py",)),
    M("config: minimum not enforced", "firmware/rnfw/config.py", "    if value < lo:\n", "    if value < lo and 0:\n",
      ("tests/node/test_node_requests.py", "tests/firmware/test_estimator.py")),
    M("imu mpu6050: samples byte order swapped", "firmware/rnfw/imu_mpu6050.py", "out[j] = (src[b] << 8) | src[b + 1]",
      "out[j] = (src[b + 1] << 8) | src[b]", ("tests/firmware/test_imu_drivers.py",)),
    M("imu mpu6050: one record short per burst", "firmware/rnfw/imu_mpu6050.py", "nrec = count // _REC",
      "nrec = count // _REC - 1", ("tests/firmware/test_imu_drivers.py",)),
    # --- host tools ------------------------------------------------------------------------------
    M("flash: on-board verification skipped", "host/roadnode/usb/flash.py", "    if _d != %(DIGEST)r:\n        _bad.append('slot')",
      "    if False:\n        _bad.append('slot')", ("tests/cli/test_flash.py",)),
    M("decoder: segment peak scale", "firmware/rnfw/packet_decode.py", '"peak_g": peak / 10.0, "speed_kmh"',
      '"peak_g": peak / 100.0, "speed_kmh"', ("tests/firmware/test_packet.py",)),
    M("roads: PSD amplitude without the factor 2", "host/roadnode/science/roads.py",
      "amp[band] = np.sqrt(2.0 * gd_n0", "amp[band] = np.sqrt(1.0 * gd_n0",
      ("tests/host/test_roads_vehicle.py",)),
    M("vehicle model: tyre force on the wrong state", "host/roadnode/models/vehicle.py",
      "b = np.array([[0.0], [0.0], [0.0], [v.kt / v.mu]])", "b = np.array([[0.0], [v.kt / v.mu], [0.0], [0.0]])",
      ("tests/host/test_roads_vehicle.py",)),
]


def _copy_checkout(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    for f in files:
        if not f or not (ROOT / f).is_file():
            continue
        (dst / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, dst / f)


def _env(copy: Path) -> dict:
    from roadnode.paths import SHARED_DATA_DIR

    env = dict(os.environ)
    env["PYTHONPATH"] = str(copy / "host") + os.pathsep + env.get("PYTHONPATH", "")
    env["ROADNODE_SHARED"] = str(SHARED_DATA_DIR.parent)
    env.pop("ROADNODE_ROOT", None)
    return env


def _pytest(copy: Path, tests, timeout=900, show=False) -> int:
    # slow tests are left out (-m): each mutation names tests that catch it quickly
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-o", "addopts=", "-m", "not slow",
           *tests]
    try:
        r = subprocess.run(cmd, cwd=copy, env=_env(copy), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1
    if show and r.returncode:
        print("\n".join(r.stdout.strip().splitlines()[-15:]), file=sys.stderr)
    return r.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="run the mutations whose name contains this")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--json", action="store_true", help="one JSON object per mutation, then a summary")
    ap.add_argument("--floor", type=float, default=0.9)
    a = ap.parse_args()
    muts = [m for m in MUTATIONS if not a.only or a.only in m.name]
    if a.list:
        for m in muts:
            print(f"{m.name:55s} {m.path}  ->  {' '.join(m.tests)}")
        return 0
    killed = survived = stale = 0
    with tempfile.TemporaryDirectory(prefix="roadnode-mut-") as d:
        copy = Path(d)
        _copy_checkout(copy)
        base = sorted({t for m in muts for t in m.tests})
        if _pytest(copy, base, show=True) != 0:
            print(f"the unmutated tests fail ({' '.join(base)}): fix them first", file=sys.stderr)
            return 2
        for m in muts:
            f = copy / m.path
            src = f.read_text()
            if src.count(m.old) != 1:
                stale += 1
                verdict, secs = "STALE (text not found exactly once)", 0.0
            else:
                f.write_text(src.replace(m.old, m.new))
                t0 = time.monotonic()
                rc = _pytest(copy, m.tests)
                secs = time.monotonic() - t0
                f.write_text(src)
                if rc in (0, 5):  # 5: pytest selected no test (a wrong test id counts as not caught)
                    survived += 1
                    verdict = "SURVIVED" if rc == 0 else "SURVIVED (no test ran)"
                else:
                    killed += 1
                    verdict = "killed" if rc == 1 else f"killed (pytest exit {rc})"
            if a.json:
                print(json.dumps({"mutation": m.name, "path": m.path, "verdict": verdict.split()[0].lower(),
                                  "seconds": round(secs, 1)}))
            else:
                print(f"{verdict:10s} {secs:6.1f} s  {m.name}  [{m.path}]", flush=True)
    total = killed + survived + stale
    ratio = killed / total if total else 0.0
    summary = {"mutations": total, "killed": killed, "survived": survived, "stale": stale,
               "kill_ratio": round(ratio, 3)}
    print(json.dumps(summary) if a.json else
          f"kill ratio: {killed}/{total} = {ratio:.0%} (survived {survived}, stale {stale}; floor {a.floor:.0%})")
    return 0 if ratio >= a.floor and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
