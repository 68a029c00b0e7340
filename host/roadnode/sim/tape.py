"""The host's one tape writer: a scenario's raw streams as the tape every reader plays.

The layout and its reader are roadnode.mpy.lib.tape (MicroPython-compatible, docs/tapes.md); the
golden model and replay read the bytes from memory, `roadnode estimate`, `sim run` and the
simulated board (sim/mpy/dev_tape.py) from a file.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from roadnode.mpy.lib import tape as T
from roadnode.scenario.fileformat import Scenario


def header(odr_hz: int, range_g: int, lsb_per_g: int, baud: int, samples: int, gps_bytes: int) -> bytes:
    """A tape's 24 header bytes (layout: roadnode.mpy.lib.tape.HEADER)."""
    return struct.pack(T.HEADER, T.MAGIC, T.VERSION, range_g, odr_hz, lsb_per_g, 0, baud, samples, gps_bytes)


def record(t_us: int, data: bytes) -> bytes:
    """One GPS record: the sentence ``data`` whose first byte went on the wire at ``t_us``."""
    return struct.pack(T.RECORD, t_us, len(data)) + data


def _records(sc: Scenario) -> bytes:
    """Every sentence as ``record`` makes it, at numpy speed (a long drive has 10^5 sentences)."""
    off = np.asarray(sc.gps_offsets, dtype=np.int64)
    n = len(off) - 1
    lens = np.diff(off)
    head = np.zeros(n, dtype=[("t", "<u8"), ("n", "<u2")])
    head["t"] = np.rint(np.asarray(sc.gps_t_s, dtype=np.float64) * 1e6)
    head["n"] = lens
    out = np.empty(T.RECORD_SIZE * n + int(off[-1]), dtype=np.uint8)
    start = off[:-1] + T.RECORD_SIZE * np.arange(n)  # where each record begins
    out[(start[:, None] + np.arange(T.RECORD_SIZE)).ravel()] = head.view(np.uint8)
    out[np.arange(off[-1]) + T.RECORD_SIZE * (np.repeat(np.arange(n), lens) + 1)] = sc.gps_bytes[: off[-1]]
    return out.tobytes()


def tape_bytes(sc: Scenario) -> bytes:
    """The whole tape of ``sc``: header, int16 counts as the IMU gave them, timed GPS sentences."""
    imu = sc.meta["imu"]
    counts = np.ascontiguousarray(sc.imu_counts, dtype="<i2")
    gps = _records(sc)
    head = header(int(imu["odr_hz"]), int(imu["range_g"]), int(imu["lsb_per_g"]), int(sc.meta["gps"]["baud"]),
                    len(counts), len(gps))
    return head + counts.tobytes() + gps


def write_tape(sc: Scenario, path) -> Path:
    """Write the tape of ``sc`` to ``path`` (for `roadnode estimate` on MicroPython)."""
    p = Path(path)
    p.write_bytes(tape_bytes(sc))
    return p


def write_tapes(sc: Scenario, out_dir) -> dict:
    """A tape folder for the simulated board (``out_dir``/drive.tape: SimBoard's tape_dir,
    run_node.py's TAPE_DIR); returns the path and what the board needs to know of the drive."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    p = write_tape(sc, d / T.FILE)
    return {"tape": str(p), "odr_hz": sc.meta["imu"]["odr_hz"], "range_g": sc.meta["imu"]["range_g"],
            "part": sc.meta["imu"]["part"], "baud": sc.meta["gps"]["baud"], "duration_s": sc.meta["duration_s"]}


def readers(sc: Scenario):
    """(ImuReader, GpsReader) over the tape of ``sc`` held in memory: the golden model's and
    replay's input, the same bytes `estimate` and the simulated board read from a file."""
    data = tape_bytes(sc)
    return T.ImuReader(data), T.GpsReader(data)
