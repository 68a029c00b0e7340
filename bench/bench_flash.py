"""Deploy speed on the simulated board paced at 115200 baud: `roadnode flash` (full, then no change)
against mpremote copying the same files (`mpremote fs cp -r`, which skips unchanged files by hash).

    python bench/bench_flash.py [--baud 115200]

Prints the times and the ratios (floors: 3x for a full deploy, 10x for a no-change redeploy).
Our times include what mpremote does not do: detection, verification of every hash on the board,
the atomic switch, the restart and waiting for the node's first heartbeat.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roadnode.usb.flash import flash_board
from roadnode.sim.board import SimBoard


def mpremote_copy(port: str, tree: Path) -> float:
    names = sorted(p.name for p in tree.iterdir())
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "mpremote", "connect", port, "fs", "cp", "-r", *names, ":"],
                       cwd=tree, capture_output=True, text=True, timeout=600)
    dt = time.monotonic() - t
    if r.returncode != 0:
        raise SystemExit(f"mpremote failed: {r.stderr}")
    return dt


def image_tree(port: str, d: Path) -> None:
    """The files `roadnode flash` put on a board, as a local tree for mpremote to copy."""
    from roadnode.usb.flash import build_image

    info = {"mpy": 2822, "machine": "Generic ESP32 module with ESP32"}  # the simulated board (x64, v6.3)
    img = build_image(info, "esp32-devkitc-mpu6050-neo6m", {"device_id": 9})
    for p, b in img.slot.items():
        f = d / "fw" / "a" / p
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b)
    for n, b in img.root.items():
        (d / n).write_bytes(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baud", type=int, default=115200)
    a = ap.parse_args()
    res = {}
    with SimBoard(baud=a.baud, realtime=True) as b:
        time.sleep(0.5)
        r1 = flash_board(b.port, device_id=9)
        r2 = flash_board(b.port, device_id=9)
        assert r1.ok and r2.ok, (r1.error, r2.error)
        res["roadnode full"], res["roadnode no-change"] = r1.seconds, r2.seconds
        sent = r1.bytes_sent
    with SimBoard(baud=a.baud, realtime=True) as b, tempfile.TemporaryDirectory() as d:
        time.sleep(0.5)
        image_tree(b.port, Path(d))
        size = sum(f.stat().st_size for f in Path(d).rglob("*") if f.is_file())
        res["mpremote full"] = mpremote_copy(b.port, Path(d))
        res["mpremote no-change"] = mpremote_copy(b.port, Path(d))
    print(f"simulated board at {a.baud} baud; firmware image {size} B ({sent} B on the wire for roadnode, compressed)")
    for k, v in res.items():
        print(f"  {k:22s} {v:6.2f} s")
    full = res["mpremote full"] / res["roadnode full"]
    same = res["mpremote no-change"] / res["roadnode no-change"]
    print(f"full deploy:      {full:5.1f}x faster than mpremote (floor 3x)")
    print(f"no-change deploy: {same:5.1f}x faster than mpremote (floor 10x)")


if __name__ == "__main__":
    main()
