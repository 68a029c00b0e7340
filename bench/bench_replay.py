"""Replay throughput: a scenario streamed to the node on the simulated board paced at 115200 baud
(as a USB-UART bridge), with the protocol's flow control. Prints frames, time and the real-time
factor (> 1: the replay runs faster than the drive took).

    python bench/bench_replay.py [--baud 115200] [--length 600]
"""

from __future__ import annotations

import argparse
import time

from roadnode.usb.flash import flash_board
from roadnode.usb.replay import replay
from roadnode.scenario.build import make_scenario
from roadnode.sim.board import SimBoard


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--length", type=float, default=600)
    a = ap.parse_args()
    sc = make_scenario(iso_class="C", length_m=a.length, speed_kmh=60, seed=4)
    with SimBoard(baud=a.baud, realtime=True) as b:
        time.sleep(0.5)
        assert flash_board(b.port).ok
        r = replay(b.port, sc)
    print(f"{a.length:.0f} m drive, {sc.meta['duration_s']:.1f} s of data at {sc.meta['imu']['odr_hz']} Hz, link {a.baud} baud:")
    print(f"  {r['frames']} frames in {r['seconds']:.2f} s = {r['realtime_factor']:.2f}x real time, "
          f"{len(r['segments'])} segments, {r['bad_frames']} bad frames")


if __name__ == "__main__":
    main()
