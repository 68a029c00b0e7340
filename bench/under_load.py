"""Run the test suite (or any command) several times in a row with every core kept busy.

The tests wait on conditions, never on wall-clock windows, so they must pass on a loaded machine:
this is how that is checked (issue 10: 3 runs in a row with the cores busy).

    python bench/under_load.py [--runs 3] [--load-per-core 1] [-- COMMAND ...]

Default command: the README's test command (`python -m pytest -n 4 -q`). Prints one line per run
(exit code, time, the runner's closing line) and "green N/N under load"; exits 1 unless all passed.
The load is plain busy-loop processes at normal priority, stopped when the runs end.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time


def _spin(stop_at: float) -> None:
    x = 0
    while time.monotonic() < stop_at:  # bounded: never outlives the bench by more than its limit
        x += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--load-per-core", type=int, default=1, help="busy processes per core")
    ap.add_argument("--limit-s", type=float, default=3600, help="the load stops after this at the latest")
    ap.add_argument("command", nargs="*", help="command to run (after --)")
    a = ap.parse_args()
    cmd = a.command or [sys.executable, "-m", "pytest", "-n", "4", "-q", "-p", "no:cacheprovider"]
    n = (os.cpu_count() or 1) * a.load_per_core
    stop_at = time.monotonic() + a.limit_s
    load = [mp.Process(target=_spin, args=(stop_at,), daemon=True) for _ in range(n)]
    for p in load:
        p.start()
    print(f"load: {n} busy processes on {os.cpu_count()} cores; command: {' '.join(cmd)}", flush=True)
    green = 0
    try:
        for i in range(a.runs):
            t0 = time.monotonic()
            r = subprocess.run(cmd, capture_output=True, text=True)
            tail = [ln for ln in r.stdout.strip().splitlines() if ln.strip()][-1:] or [""]
            green += r.returncode == 0
            print(f"run {i + 1}: exit {r.returncode} in {time.monotonic() - t0:.0f} s  {tail[0]}", flush=True)
            if r.returncode != 0:
                failed = [ln for ln in r.stdout.splitlines() if ln.startswith(("FAILED", "ERROR"))]
                for ln in failed[:20]:
                    print("   ", ln)
    finally:
        for p in load:
            p.terminate()
        for p in load:
            p.join(5)
    print(f"green {green}/{a.runs} under load")
    return 0 if green == a.runs else 1


if __name__ == "__main__":
    sys.exit(main())
