"""Issue 13's "must show", on a shorter drive than bench/uplink_drive.py --collect's 30 minutes: the
unchanged firmware on the simulated board with `--uplink mqtt`, its sockets real, through network
outages of every kind (and, in the second test, power cuts) to a real broker and `roadnode collect`
(a subprocess, SQLite); then `roadnode fleet segments` is compared with what the node measured:

- without power cuts: with `roadnode estimate` (the node's pipeline run offline over the same
  recorded drive), every segment once;
- with power cuts: a cut restarts the node's trip (its segments restart at index 0), which the
  offline path does not model: with the node's own record of the same drive with the same cuts on
  its console uplink (as tests/fleet/test_uplink_e2e.py), every segment once."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from fleet_helpers import ENTRY, Collect, fleet, wait
from roadnode.fleet.broker import Broker
from roadnode.fleet.store import Store
from roadnode.scenario import make_scenario, save_scenario
from roadnode.scenario.speed import Stop
from roadnode.sim.faults import parse_net_outage
from roadnode.sim.offline import run_scenario
from test_uplink_e2e import OUTAGES, _close

DEV = 43
SETTINGS = {"device_id": DEV, "heartbeat_s": 30, "stop_close_s": 20}
CUTS = [60.0, 122.0, 255.0]
LENGTH = 4000.0


def _key(s: dict) -> tuple:
    return (s["seg_index"], tuple(s["flags"]), s["lat"], s["lon"])


def _drive_through_collect(sc, tmp_path, n_segments: int, cuts=(), linger_s=0.0) -> list[dict]:
    """The MQTT node's drive into `roadnode collect`; `fleet segments --json` afterwards."""
    path = tmp_path / "fleet.db"
    db = "sqlite:///" + str(path)
    with Broker() as b:
        col = Collect(b.url, db)
        try:
            cfg = {**SETTINGS, "uplink": "mqtt", "wifi_ssid": "depot", "wifi_password": "roadnode",
                   "mqtt_host": "127.0.0.1", "mqtt_port": b.port}
            r = run_scenario(sc, settings=cfg, faults={"net": [parse_net_outage(o) for o in OUTAGES]},
                             power_cuts=cuts, linger_s=linger_s)
            assert r["boots"] == len(cuts) + 1 and r["net"]["links_lost"] > 0, r["net"]
            # the node has stopped; what it sent last may still be on its way
            store = Store(db)
            try:
                wait(lambda: store.count("segments") >= n_segments, 30, f"{n_segments} segments stored")
            finally:
                store.close()
        finally:
            st = col.stop()
    print(f"\ncollector: {st['stored']} packets stored in {st['batches']} batches, {st['duplicates']} duplicates "
          f"on the wire; net {r['net']}")
    return fleet("segments", "--db", db, "--device", str(DEV))


@pytest.mark.slow
def test_outage_drive_through_collect_equals_roadnode_estimate(tmp_path, monkeypatch):
    monkeypatch.setenv("RNSIM_CPU_RATIO", "0")  # measuring as the offline path does, bit for bit
    # the drive ends standing 60 s (the node closes its last segment, the offline path too, within
    # the recording), the backlog of the last outage delivered meanwhile
    sc = make_scenario(iso_class="C", length_m=LENGTH, speed_kmh=50, seed=12, stops=[Stop(LENGTH - 5, 60)])
    f = tmp_path / "drive.npz"
    save_scenario(sc, f)
    p = subprocess.run(ENTRY + ["estimate", str(f), "--json"] + [a for k, v in SETTINGS.items()
                                                                  for a in ("--set", f"{k}={v}")],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    want = [x for x in map(json.loads, p.stdout.splitlines()) if x.get("type") == "segment"]
    got = _drive_through_collect(sc, tmp_path, len(want))
    dup = [k for k, c in Counter(map(_key, got)).items() if c > 1]
    assert not dup, f"stored twice: {dup[:3]}"
    assert [_key(g) for g in got] == [_key(w) for w in want], "fleet segments differ from roadnode estimate"
    assert not _close(got, want), _close(got, want)
    assert len(want) == LENGTH // 100 and [g["seq"] for g in got] == sorted(g["seq"] for g in got)


@pytest.mark.slow
def test_power_cut_drive_through_collect_equals_the_nodes_own_record(tmp_path, monkeypatch):
    monkeypatch.setenv("RNSIM_CPU_RATIO", "0")
    sc = make_scenario(iso_class="C", length_m=LENGTH, speed_kmh=50, seed=12)
    ref = run_scenario(sc, settings=SETTINGS, power_cuts=CUTS, linger_s=60)
    want = [p for p in ref["packets"] if p["type"] == "segment"]
    assert ref["boots"] == 4 and len({w["seg_index"] for w in want}) < len(want)  # trips restarted
    got = _drive_through_collect(sc, tmp_path, len(want), cuts=CUTS, linger_s=60)
    dup = [k for k, c in Counter((g["epoch"], g["seq"]) for g in got).items() if c > 1]
    assert not dup
    assert [_key(g) for g in got] == [_key(w) for w in want], "fleet segments differ from what the node measured"
    assert not _close(got, want), _close(got, want)
