"""Offline runs of the firmware's measuring pipeline (rnfw.pipeline) over a scenario's tape,
batch by batch as the node's main loop sees them (one FIFO drain per 50 ms, GPS bytes delivered
when fully received):

- ``run_golden``: the pipeline under CPython, the host golden model of the fixed-point arithmetic;
- ``run_firmware``: the same pipeline on MicroPython (ESP32 heap), for `roadnode estimate`.

Both read the tape with the same reader (roadnode.mpy.lib.tape) and batch it with
rnfw.pipeline.run_batches, so the node's output must equal the golden model bit for bit.
"""

from __future__ import annotations

import json
import tempfile
from array import array
from pathlib import Path

from roadnode.errors import InputError
from roadnode.mpy import runtime
from roadnode.mpy.build import compiled_firmware
from roadnode.mpy.fwimport import fw
from roadnode.scenario.fileformat import Scenario
from roadnode.sim.tape import readers, write_tape

SCRIPT = Path(__file__).resolve().parents[1] / "mpy" / "scripts" / "estimate.py"
SEG_KEYS = ("seg_index", "segment_length_m", "lat_e7", "lon_e7", "iri_cmkm", "rms_cg", "peak_dg", "speed_kmh", "flags")
EVT_KEYS = ("kind", "peak_dg", "lat_e7", "lon_e7", "dist_m", "speed_kmh")


def config_for(sc: Scenario, settings: dict | None = None) -> dict:
    """The node's validated config for a run over ``sc``: the scenario's ODR, range, segment
    length and mount under ``settings`` (a bad setting is an InputError)."""
    C = fw("config")
    base = {"segment_length_m": int(sc.meta["segment_m"]), "odr_hz": int(sc.meta["imu"]["odr_hz"]),
            "accel_range_g": int(sc.meta["imu"]["range_g"]), "mount": sc.meta["mount"]}
    try:
        return C.validate({**base, **(settings or {})})
    except C.ConfigError as e:
        raise InputError(str(e)) from None


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
    the estimator class (roadnode.accuracy.reference.FloatEstimator = the float64 reference)."""
    P = fw("pipeline")
    cfg = config_for(sc, settings)
    imu, gps = readers(sc)
    odr, period, lsb = imu.odr_hz, imu.period_ms, imu.lsb_per_g
    pipe = P.Pipeline(cfg, odr, period, lsb)
    if impl is not None:
        pipe.est = impl(cfg, odr, period, lsb)
    segs, events = [], []
    samples = array("h", bytes(2 * 3 * 128))
    for _ in P.run_batches(pipe, imu, gps, samples, bytearray(256)):
        c, e = pipe.est.closed, pipe.est.events
        segs += drain(c)
        events += drain(e)
    return {"segments": segs, "events": events}


def run_firmware(sc: Scenario, settings: dict | None = None) -> dict:
    """The same pipeline on MicroPython with the ESP32 heap."""
    cfg = config_for(sc, settings)
    with tempfile.TemporaryDirectory() as td:
        d = Path(td)
        tape = write_tape(sc, d / "drive.tape")
        (d / "config.json").write_text(json.dumps(cfg))
        proc = runtime.run([str(SCRIPT), str(tape), str(d / "config.json")], timeout=3600,
                           path=[compiled_firmware()])
    segs, events = [], []
    for line in proc.stdout.decode().splitlines():
        f = line.split("\t")
        if f[0] == "S":
            segs.append(tuple(int(x) for x in f[1:]))
        elif f[0] == "E":
            events.append(tuple(int(x) for x in f[1:]))
    return {"segments": segs, "events": events, "config": cfg}
