"""The node's millisecond clock wraps at 2^30 (12.4 days): beyond it an ESP32 int would be a heap big
int. A node that has run that long keeps its heartbeats, passes and segments across the wrap."""

from __future__ import annotations

import pytest

from roadnode.scenario import make_scenario
from roadnode.sim.offline import run_scenario

WRAP = 1 << 30


@pytest.fixture(scope="module")
def drive():
    return make_scenario(iso_class="C", length_m=500, speed_kmh=60, seed=11)


def _run(drive, monkeypatch, start_ms):
    with monkeypatch.context() as m:
        m.setenv("RNSIM_NODE_MS", str(start_ms))
        # CPU charging off: both runs must cut the very same batches, so the wrap alone is compared
        m.setenv("RNSIM_CPU_RATIO", "0")
        return run_scenario(drive, settings={"heartbeat_s": 10, "device_id": 7})


def test_a_node_running_for_12_days_keeps_measuring_across_the_clock_wrap(drive, monkeypatch):
    fresh = _run(drive, monkeypatch, 0)
    # the clock wraps 12 s into the drive (started on the 50 ms grid, as a fresh node's clock is)
    start = (WRAP - 12_000) // 50 * 50
    old = _run(drive, monkeypatch, start)
    for r in (fresh, old):
        assert not [p for p in r["packets"] if p["type"] == "error"], r["stderr"][-500:]
    # the clock wrapped and stayed an ESP32 small int (on the unix port ints are 63-bit: check the value)
    assert 0 <= old["heap"]["node_ms"] < start and old["heap"]["node_ms"] < WRAP
    hb = [p for p in old["packets"] if p["type"] == "status"]
    # heartbeats every 10 s of uptime, straight through the wrap (uptime is its own counter)
    assert [h["uptime_s"] for h in hb] == list(range(0, 10 * len(hb), 10)) and len(hb) >= 3
    assert hb[-1]["fifo_overflows"] == 0 and hb[-1]["samples_lost"] == 0
    # the same segments as a node that just started: the wrap costs no sample and no bin
    seg = lambda r: [(s["seg_index"], s["iri_m_per_km"], s["flags"]) for s in r["packets"] if s["type"] == "segment"]
    assert seg(old) == seg(fresh) and len(seg(fresh)) >= 4
