"""Write a scenario's raw streams as the tapes the simulated hardware plays (sim/mpy/dev_tape.py)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from roadnode.scenario.fileformat import Scenario


def write_tapes(sc: Scenario, out_dir) -> dict:
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    rng = sc.meta["imu"]["range_g"]
    # counts at the scenario's range -> g/16384 units (the models rescale to the configured range)
    v = sc.imu_counts.astype(np.int32) * (rng // 2)
    (d / "imu.bin").write_bytes(v.astype("<i4").tobytes())
    parts = []
    for t, s in sc.gps_sentences():
        parts.append(struct.pack("<IH", int(round(t * 1e6)), len(s)) + s)
    (d / "gps.bin").write_bytes(b"".join(parts))
    return {"imu": str(d / "imu.bin"), "gps": str(d / "gps.bin"), "odr_hz": sc.meta["imu"]["odr_hz"],
            "range_g": rng, "part": sc.meta["imu"]["part"], "baud": sc.meta["gps"]["baud"],
            "duration_s": sc.meta["duration_s"]}
