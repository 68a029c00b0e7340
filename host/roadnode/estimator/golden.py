"""Host golden model: the firmware's own estimator module run under CPython on a scenario's raw
streams, batch by batch as the node's main loop would see them (GPS bytes delivered by their time,
one FIFO drain per DRAIN_MS). The fixed-point arithmetic is the firmware's, so the node's output
must equal this bit for bit."""

from __future__ import annotations

import numpy as np

from roadnode.mpy.fwimport import fw
from roadnode.scenario.fileformat import Scenario

DRAIN_MS = 50


def run_golden(sc: Scenario, settings: dict | None = None, drain_ms: int = DRAIN_MS, impl=None) -> dict:
    """``impl``: an estimator class with the firmware's interface (default: the firmware's own;
    roadnode.estimator.reference.FloatEstimator gives the float64 reference on the same batches)."""
    E = fw("estimator")
    N = fw("nmea")
    C = fw("config")
    cfg = C.validate({"segment_length_m": int(sc.meta["segment_m"]), **(settings or {})})
    odr = int(sc.meta["imu"]["odr_hz"])
    period = 1000 // odr
    lsb = int(sc.meta["imu"]["lsb_per_g"])
    est = (impl or E.Estimator)(cfg, odr, period, lsb)
    gps = N.NmeaParser()
    sent = sc.gps_sentences()
    us_per_byte = 10e6 / sc.meta["gps"]["baud"]
    counts = sc.imu_counts
    t_imu = sc.imu_t_s
    segs, events = [], []
    si = 0
    fix_t = None
    i = 0
    t = 0.0
    from array import array

    buf = array("h", bytes(2 * 3 * 256))
    while i < len(counts):
        t += drain_ms / 1000.0
        while si < len(sent) and sent[si][0] + len(sent[si][1]) * us_per_byte / 1e6 <= t:
            gps.feed(sent[si][1])
            si += 1
            if gps.fix_valid and gps.fixes:
                fix_t = t
        j = int(np.searchsorted(t_imu, t, side="right"))
        n = j - i
        if n > 0:
            buf[: 3 * n] = array("h", counts[i:j].ravel().tolist())
        ok = fix_t is not None and t - fix_t < 2.5
        est.add(buf, n, gps.speed_mmps if ok else 0, ok, gps.lat_e7, gps.lon_e7)
        segs += est.closed
        events += est.events
        del est.closed[:]
        del est.events[:]
        i = j
    return {"segments": segs, "events": events}
