"""Speed of `roadnode iri` and of the CLI's start-up, each against its yardstick in the same run.

1. Core: profile points per second of the IRI core on 100 km at 0.05 m (2 million points) and the
   speed-up over the plain per-sample recursion (timed on a shorter piece). Floor (issue 2): 20 Mpts/s.
2. End to end (issue 17): `roadnode iri FILE --json` and `roadnode iri FILE` (the table) on an
   800,001-point CSV, each a fresh process, against a plain numpy script (np.loadtxt +
   scipy.signal.lfilter) on the same file. Runs are interleaved (script, json, table, script, ...) so
   that machine noise hits all alike; the min and the median of each are printed and the ratios of
   both. Floor: ratio <= 1.0.
3. `roadnode --help`: min and median of fresh processes beside `python -c pass`. Floor 0.3 s.

    python bench/bench_iri.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from roadnode.science.iri import rectified_slope, rectified_slope_loop
from roadnode.science.roads import iso8608_profile

# What a user would write without roadnode: the same Golden Car, the 250 mm slope, one lfilter call.
PLAIN_SCRIPT = """\
import sys
import numpy as np
from scipy.linalg import expm
from scipy.signal import lfilter, ss2tf

d, z = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1, unpack=True)
dx = d[1] - d[0]
k = int(round(0.25 / dx))
k1, k2, c, mu, v = 653.0, 63.3, 6.0, 0.15, 80 / 3.6
a = np.array([[0, 1, 0, 0], [-k2, -c, k2, c], [0, 0, 0, 1], [k2 / mu, c / mu, -(k1 + k2) / mu, -c / mu]])
b = np.array([0, 0, 0, k1 / mu])
st = expm(a * dx / v)
pr = np.linalg.solve(a, (st - np.eye(4)) @ b)
out = np.array([1.0, 0.0, -1.0, 0.0])
num, den = ss2tf(st, pr.reshape(4, 1), (out @ st).reshape(1, 4), np.array([[out @ pr]]))
y = lfilter(num[0], den, (z[k:] - z[:-k]) / 0.25)
print(np.mean(np.abs(y)) * 1000)
"""


def best(f, n=3):
    """Shortest of n timings of f(), wall and process CPU (noise only adds)."""
    wall, cpu = [], []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        f()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return min(wall), min(cpu)


def run(cmd) -> tuple[float, float, str]:
    """Wall time and CPU time (user + system) of one fresh process, and its stdout. CPU time hardly
    moves when other work shares the machine; wall time is what a user waits. A failure stops the
    bench: a figure of a command that did not do its job would mean nothing."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if p.returncode != 0:
            sys.exit(f"{' '.join(map(str, cmd))} failed ({p.returncode}): {err.read().decode()[-300:]}")
        return dt, usage.ru_utime + usage.ru_stime, out.read().decode()


def roadnode_cmd() -> list[str]:
    """The installed console script beside this interpreter (what users run), else ``-m``."""
    script = Path(sys.executable).with_name("roadnode")
    return [str(script)] if script.exists() else [sys.executable, "-m", "roadnode.cli"]


def core():
    """Issue 2's figure: the IRI core alone, in-process (CPU time counts BLAS's threads too)."""
    dx = 0.05
    _, z = iso8608_profile(100_000.0, dx=dx, iso_class="C", seed=1)
    n = len(z)
    t_core, c_core = best(lambda: rectified_slope(z, dx), n=5)
    short = z[:100_000]
    t_loop = best(lambda: rectified_slope_loop(short, dx), n=1)[0] * (n / len(short))
    pts, loop = n / t_core, n / t_loop
    print(f"core: 100 km at {dx} m = {n:,} points: {pts / 1e6:.1f} Mpts/s wall ({t_core * 1e3:.0f} ms), "
          f"{n / c_core / 1e6:.1f} Mpts/s CPU; per-sample loop {loop / 1e6:.2f} Mpts/s; {pts / loop:.0f}x; "
          f"floor 20 Mpts/s: {'met' if pts >= 20e6 else 'NOT met'}")


def summary(name, times, cpu):
    """One line of min/median wall and min CPU."""
    return (f"{name}: wall min {min(times):.3f} s, median {statistics.median(times):.3f} s; "
            f"CPU min {min(cpu):.3f} s")


def end_to_end(runs: int, tmp: Path):
    """Issue 17's ratio: fresh processes of roadnode iri and of the plain script, interleaved."""
    dx = 0.05
    d, z = iso8608_profile(40_000.0, dx=dx, iso_class="C", seed=1)
    csv = tmp / "profile_800k.csv"
    with open(csv, "w") as f:
        f.write("distance_m,elevation_m\n")
        np.savetxt(f, np.column_stack([d, z]), fmt=["%.2f", "%.6f"], delimiter=",")
    script = tmp / "plain_iri.py"
    script.write_text(PLAIN_SCRIPT)
    rn = roadnode_cmd()
    cmds = {"plain script": [sys.executable, str(script), str(csv)],
            "roadnode iri --json": rn + ["iri", str(csv), "--json"],
            "roadnode iri (table)": rn + ["iri", str(csv)]}
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    outs = {}
    for _ in range(runs):
        for k, cmd in cmds.items():
            dt, c, outs[k] = run(cmd)
            times[k].append(dt)
            cpu[k].append(c)
    plain_iri = float(outs["plain script"])
    ours = json.loads(outs["roadnode iri --json"])["iri_m_per_km"]
    print(f"end to end on {len(d):,} points ({csv.stat().st_size / 1e6:.1f} MB CSV), {runs} interleaved runs each; "
          f"overall IRI {ours:.4f} (roadnode) vs {plain_iri:.4f} (plain script, no 11 m start-up)")
    base, base_cpu = times["plain script"], cpu["plain script"]
    print("  " + summary("plain script (np.loadtxt + lfilter)", base, base_cpu))
    for k in list(cmds)[1:]:
        t = times[k]
        r_min, r_med = min(t) / min(base), statistics.median(t) / statistics.median(base)
        r_cpu = min(cpu[k]) / min(base_cpu)
        print(f"  {summary(k, t, cpu[k])}")
        print(f"    ratio to the script: {r_min:.2f} (wall min), {r_med:.2f} (wall median), {r_cpu:.2f} (CPU min); "
              f"floor 1.0: {'met' if max(r_min, r_med) <= 1.0 else 'NOT met'}")


def help_start_up(runs: int):
    """`roadnode --help` beside the bare interpreter's start-up."""
    rn = roadnode_cmd()
    cmds = {"python -c pass": [sys.executable, "-c", "pass"], "roadnode --help": rn + ["--help"]}
    times: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(runs):
        for k, cmd in cmds.items():
            dt, c, _ = run(cmd)
            times[k].append(dt)
            cpu[k].append(c)
    t = times["roadnode --help"]
    print(f"start-up: {summary('roadnode --help', t, cpu['roadnode --help'])}; interpreter alone: wall min "
          f"{min(times['python -c pass']):.3f} s; floor 0.3 s: {'met' if statistics.median(t) < 0.3 else 'NOT met'}")


def main():
    """Print the three figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7, help="fresh processes per command (default 7)")
    a = ap.parse_args()
    core()
    with tempfile.TemporaryDirectory() as tmp:
        end_to_end(a.runs, Path(tmp))
    help_start_up(max(a.runs, 10))


if __name__ == "__main__":
    main()
