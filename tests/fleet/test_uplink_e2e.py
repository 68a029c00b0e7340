"""Issue 12 end to end: the unchanged firmware on the simulated board (`roadnode sim run` with
`--uplink mqtt`), its sockets real, through a real broker to the collector (roadnode.fleet.collector:
SQLite, acknowledgement after the commit), with network outages of every kind and power cuts.

What the node measured is known from the same drive with the same power cuts on the console uplink
(the measuring does not depend on the network: RNSIM_CPU_RATIO=0 here, bit for bit); the store
must hold exactly that, once: every segment and event, no duplicate, no gap in the queue's seqs."""

from __future__ import annotations

from collections import Counter

import pytest

from roadnode.fleet.broker import Broker
from roadnode.fleet.collector import Collector, Store
from roadnode.mpy.fwimport import fw
from roadnode.scenario import make_scenario
from roadnode.sim.faults import parse_net_outage
from roadnode.sim.offline import run_scenario

PD = fw("packet_decode")
DEV = 42
SETTINGS = {"device_id": DEV, "heartbeat_s": 30, "stop_close_s": 20}
# (drive seconds) one outage of each kind, and three power cuts: during an outage, right after one,
# and while the backlog is being delivered
OUTAGES = ["25:70", "95:120:reset", "135:175:blackhole", "190:215:unreachable", "230:250:refused"]
CUTS = [60.0, 122.0, 255.0]


@pytest.fixture(scope="module")
def drive():
    return make_scenario(iso_class="C", length_m=4000, speed_kmh=50, seed=12)


def _key(d: dict) -> tuple:
    """A segment or event by what it is: which segment (its flags, where) or which event. Its figures
    are compared apart (_close): the network's real round trips move a pass now and then, and a batch
    cut elsewhere changes the last digit of an IRI."""
    if d["type"] == "segment":
        return ("segment", d["seg_index"], tuple(d["flags"]), d["lat"], d["lon"])
    return ("event", d["kind"], d["dist_m"], d["lat"], d["lon"])


def _close(got: list[dict], want: list[dict]) -> list[str]:
    bad = []
    for g, w in zip(got, want):
        for k in ("iri_m_per_km", "rms_g", "peak_g"):
            a, b = g.get(k), w.get(k)
            if (a is None) != (b is None) or (a is not None and abs(a - b) > 0.03 * abs(b) + 0.02):
                bad.append(f"{_key(g)} {k} {a} != {b}")
    return bad


def _measured(packets: list[dict]) -> list[dict]:
    return [p for p in packets if p["type"] in ("segment", "event")]


@pytest.mark.slow
def test_drive_through_outages_and_power_cuts_arrives_whole_and_once(drive, tmp_path, monkeypatch):
    monkeypatch.setenv("RNSIM_CPU_RATIO", "0")
    ref = run_scenario(drive, settings=SETTINGS, power_cuts=CUTS, linger_s=60)
    want = _measured(ref["packets"])
    assert ref["boots"] == 4 and len(want) > 30

    with Broker() as b:
        store = Store(str(tmp_path / "fleet.db"))
        col = Collector(b.url, store).start()
        assert col.connected.wait(20)
        cfg = {**SETTINGS, "uplink": "mqtt", "wifi_ssid": "depot", "wifi_password": "roadnode",
               "mqtt_host": "127.0.0.1", "mqtt_port": b.port}
        r = run_scenario(drive, settings=cfg, faults={"net": [parse_net_outage(o) for o in OUTAGES]},
                         power_cuts=CUTS, linger_s=60)
        store.settled(DEV)  # the node has stopped; what it sent last may still be on its way
        col.stop()
        rows = store.packets(DEV)
        store.close()

    assert r["boots"] == 4 and not r["packets"], "an MQTT node sends nothing on its console"
    epochs = {e for _, e, *_ in rows}
    assert len(epochs) == 1, "one queue across power cuts"
    seqs = [s for _, _, s, _, _ in rows]
    got = [PD.decode(d) for *_, d in rows]
    measured = _measured(got)
    hb = [p for p in got if p["type"] == "status"]
    dup = [k for k, c in Counter(_key(m) for m in measured).items() if c > 1]
    print(f"\nstore: {len(rows)} packets ({len(measured)} segments+events, {len(hb)} heartbeats), "
          f"seqs {seqs[0]}..{seqs[-1]}; node measured {len(want)} segments+events over {r['boots']} boots; "
          f"collector: {col.batches} batches, {col.duplicates} duplicates on the wire; net: {r['net']}")
    assert not dup, f"stored twice: {dup[:3]}"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a gap in the queue's seqs: packets lost"
    assert [_key(m) for m in measured] == [_key(w) for w in want], "the store differs from what the node measured"
    assert not _close(measured, want), _close(measured, want)
    # every boot's heartbeat arrived (power-on after each cut), and the link was lost and regained
    assert sum(1 for h in hb if h["uptime_s"] == 0) == 4
    assert all(h["reset_reason"] == "power_on" for h in hb if h["uptime_s"] == 0)
    last = hb[-1]
    assert last["mqtt"] == "up" and last["wifi"] == "up" and last["queue_dropped"] == 0, last
    assert col.duplicates > 0 or r["net"]["links_lost"] > 0  # the faults really hit the link
