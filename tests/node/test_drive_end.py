"""The end of a drive reaches the collector: standing still for `stop_close_s`, or the supply showing
the ignition off, closes the open segment (flagged partial) instead of leaving it open for ever.

Through the real firmware on the simulated board (run_scenario = `roadnode sim run`), and the same
segments from the offline path (`roadnode estimate`): the rule lives in rnfw.pipeline, shared."""

from __future__ import annotations

import numpy as np
import pytest

from roadnode.scenario import make_scenario
from roadnode.scenario.speed import Stop
from roadnode.sim.faults import parse_fault
from roadnode.sim.offline import run_scenario

STOP_AT_M, DWELL_S = 350.0, 40.0


@pytest.fixture(scope="module")
def drive():
    return make_scenario(iso_class="B", length_m=600, stops=[Stop(STOP_AT_M, DWELL_S)], seed=1)


def _stop_window(sc) -> tuple[float, float]:
    """Drive seconds when the vehicle stands at the stop (first and last truth sample at rest there)."""
    t, x, v = sc.truth_t_s, sc.truth_pos_m, sc.truth_speed_mps
    at = np.flatnonzero((np.abs(x - STOP_AT_M) < 0.5) & (v < 0.05))
    return float(t[at[0]]), float(t[at[-1]])


def _segs(r):
    return [p for p in r["packets"] if p["type"] == "segment"]


def test_standing_closes_the_open_segment_as_partial_and_the_drive_goes_on(drive, monkeypatch):
    monkeypatch.setenv("RNSIM_CPU_RATIO", "0")  # compared with the offline path bit for bit
    r = run_scenario(drive, settings={"stop_close_s": 10})
    segs = _segs(r)
    part = [s for s in segs if "partial" in s["flags"]]
    assert len(part) == 1, [(s["seg_index"], s["flags"]) for s in segs]
    p = part[0]
    assert p["seg_index"] == int(STOP_AT_M // 100)  # the segment the vehicle stood in
    assert [s["seg_index"] for s in segs[: p["seg_index"]]] == list(range(p["seg_index"]))
    after = [s for s in segs if s["seg_index"] > p["seg_index"]]
    assert after and "partial" not in after[0]["flags"]  # measuring went on after the stop
    # without the rule (a stop shorter than stop_close_s) the same drive has no partial segment
    r2 = run_scenario(drive, settings={"stop_close_s": 3600})
    assert not [s for s in _segs(r2) if "partial" in s["flags"]]

    # the offline path (roadnode estimate: rnfw.pipeline on the host) closes the same segments
    from roadnode.accuracy.golden import run_firmware
    from roadnode.accuracy.report import segment_record

    off = [segment_record(t) for t in run_firmware(drive, {"stop_close_s": 10})["segments"]]
    assert [(s["seg_index"], s["flags"], s["iri_m_per_km"]) for s in off] == \
           [(s["seg_index"], s["flags"], s["iri_m_per_km"]) for s in segs]


def test_ignition_off_closes_the_segment_at_once(drive, monkeypatch):
    monkeypatch.setenv("RNSIM_CPU_RATIO", "0")
    t0, t1 = _stop_window(drive)
    assert t1 - t0 > 30
    faults = parse_fault(f"ignition_off@{t0 + 5:.1f}:20")
    r = run_scenario(drive, settings={"stop_close_s": 3600, "ignition_off_mv": 13000, "heartbeat_s": 10},
                     faults=faults)
    part = [s for s in _segs(r) if "partial" in s["flags"]]
    assert len(part) == 1 and part[0]["seg_index"] == int(STOP_AT_M // 100), part
    # the supply the heartbeats saw: ~14.2 V running, ~12.4 V during the fault
    mv = [h["supply_mv"] for h in r["packets"] if h["type"] == "status"]
    assert max(mv) == pytest.approx(14200, rel=0.02) and min(mv) == pytest.approx(12400, rel=0.02), mv
    # a node not configured for it (ignition_off_mv 0) ignores the supply
    r = run_scenario(drive, settings={"stop_close_s": 3600}, faults=faults)
    assert not [s for s in _segs(r) if "partial" in s["flags"]]
