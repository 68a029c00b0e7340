"""Offline runs of the firmware's measuring pipeline (rnfw.pipeline) over a scenario's recorded
streams, batch by batch as the node's main loop sees them (one FIFO drain per 50 ms, GPS bytes
delivered when fully received):

- ``run_golden``: the pipeline under CPython, the host golden model of the fixed-point arithmetic;
- ``run_firmware``: the same pipeline on MicroPython (ESP32 heap), for `roadnode estimate`.

Both go through rnfw.pipeline.run_batches, so batching is one piece of code; the node's output
must equal the golden model bit for bit.
"""

from __future__ import annotations

import json
import tempfile
from array import array
from pathlib import Path

import numpy as np

from roadnode.errors import InputError
from roadnode.mpy import runtime
from roadnode.mpy.build import compiled_firmware
from roadnode.mpy.fwimport import fw
from roadnode.scenario.fileformat import Scenario

SCRIPT = Path(__file__).resolve().parents[1] / "mpy" / "scripts" / "estimate.py"
SEG_KEYS = ("seg_index", "segment_length_m", "lat_e7", "lon_e7", "iri_cmkm", "rms_cg", "peak_dg", "speed_kmh", "flags")
EVT_KEYS = ("kind", "peak_dg", "lat_e7", "lon_e7", "dist_m", "speed_kmh")


def config_for(sc: Scenario, settings: dict | None = None) -> dict:
    C = fw("config")
    base = {"segment_length_m": int(sc.meta["segment_m"]), "odr_hz": int(sc.meta["imu"]["odr_hz"]),
            "accel_range_g": int(sc.meta["imu"]["range_g"]), "mount": sc.meta["mount"]}
    try:
        return C.validate({**base, **(settings or {})})
    except C.ConfigError as e:
        raise InputError(str(e)) from None


def _timing(sc: Scenario):
    odr = int(sc.meta["imu"]["odr_hz"])
    return odr, 1000 // odr, int(sc.meta["imu"]["lsb_per_g"])


class _HostImu:
    def __init__(self, counts, period):
        self.c = counts
        self.i = 0
        self.p = period

    def read_until(self, t_ms, out):
        if self.i >= len(self.c):
            return -1
        want = min(t_ms // self.p + 1 - self.i, 128)
        if want <= 0:
            return 0
        blk = self.c[self.i : self.i + want]
        n = len(blk)
        out[: 3 * n] = array("h", blk.ravel().tolist())
        self.i += n
        return n


class _HostGps:
    def __init__(self, sc):
        self.sent = sc.gps_sentences()
        self.us_per_byte = 10_000_000 // sc.meta["gps"]["baud"]
        self.k = 0
        self.pos = 0

    def read_until(self, t_ms, out):
        o = 0
        t_us = t_ms * 1000
        while self.k < len(self.sent) and o < len(out):
            t0 = int(round(self.sent[self.k][0] * 1e6))
            cur = self.sent[self.k][1]
            avail = min((t_us - t0) // self.us_per_byte + 1, len(cur))
            if avail <= self.pos:
                break
            while self.pos < avail and o < len(out):
                out[o] = cur[self.pos]
                o += 1
                self.pos += 1
            if self.pos >= len(cur):
                self.k += 1
                self.pos = 0
        return o


def drain(q) -> list[tuple]:
    """Records from an estimator output queue (the firmware's fixed ring, or a list)."""
    if isinstance(q, list):
        out = list(q)
        q.clear()
        return out
    out = []
    while q.n:
        o = q.first()
        out.append(tuple(q.buf[o : o + q.w]))
        q.pop()
    return out


def run_golden(sc: Scenario, settings: dict | None = None, impl=None) -> dict:
    """{"segments": [tuple], "events": [tuple]} from the pipeline under CPython. ``impl`` swaps
    the estimator class (roadnode.estimator.reference.FloatEstimator = the float64 reference)."""
    P = fw("pipeline")
    cfg = config_for(sc, settings)
    odr, period, lsb = _timing(sc)
    pipe = P.Pipeline(cfg, odr, period, lsb)
    if impl is not None:
        pipe.est = impl(cfg, odr, period, lsb)
    segs, events = [], []
    samples = array("h", bytes(2 * 3 * 128))
    for _ in P.run_batches(pipe, _HostImu(sc.imu_counts, period), _HostGps(sc), samples, bytearray(256)):
        c, e = pipe.est.closed, pipe.est.events
        segs += drain(c)
        events += drain(e)
    return {"segments": segs, "events": events}


def write_tapes(sc: Scenario, d: Path) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / "imu16.bin").write_bytes(np.ascontiguousarray(sc.imu_counts, dtype="<i2").tobytes())
    parts = [int(round(t * 1e6)).to_bytes(4, "little") + len(s).to_bytes(2, "little") + s for t, s in sc.gps_sentences()]
    (d / "gps.bin").write_bytes(b"".join(parts))


def run_firmware(sc: Scenario, settings: dict | None = None) -> dict:
    """The same pipeline on MicroPython with the ESP32 heap."""
    cfg = config_for(sc, settings)
    odr, period, lsb = _timing(sc)
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        write_tapes(sc, d)
        (d / "config.json").write_text(json.dumps(cfg))
        proc = runtime.run([str(SCRIPT), str(d), str(d / "config.json"), str(odr), str(period), str(lsb),
                            str(sc.meta["gps"]["baud"])], timeout=3600, path=[compiled_firmware()])
    segs, events = [], []
    for line in proc.stdout.decode().splitlines():
        f = line.split("\t")
        if f[0] == "S":
            segs.append(tuple(int(x) for x in f[1:]))
        elif f[0] == "E":
            events.append(tuple(int(x) for x in f[1:]))
    return {"segments": segs, "events": events, "config": cfg}
