"""A long drive through the whole uplink chain (issue 12): the firmware on the simulated board with
`--uplink mqtt`, a real broker (Mosquitto where installed, else amqtt) and the collector (SQLite),
with outages of every kind lasting minutes and power cuts; then the store is compared with what
the node measured (the same drive and cuts on the console uplink). Prints the counts.

    python bench/uplink_drive.py [--minutes 30] [--outages 5] [--cuts 3] [--seed 12]

Exit 1 when a segment or event is missing, stored twice or differs. The MQTT node does not fit the
ESP32 heap on the 64-bit unix port yet (tests/test_uplink_heap.py): it runs with RNSIM_HEAP_EXTRA.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--outages", type=int, default=5)
    ap.add_argument("--cuts", type=int, default=3)
    ap.add_argument("--seed", type=int, default=12)
    a = ap.parse_args()
    os.environ.setdefault("RNSIM_CPU_RATIO", "0")  # the two runs measure alike (the comparison)
    os.environ.setdefault("RNSIM_HEAP_EXTRA", "32768")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_uplink_e2e import _close, _key, _measured  # one definition of "the same measurement"

    from roadnode.fleet.broker import Broker
    from roadnode.fleet.collector import Collector, Store
    from roadnode.mpy.fwimport import fw
    from roadnode.scenario import make_scenario
    from roadnode.sim.offline import parse_net_outage, run_scenario

    PD = fw("packet_decode")
    t0 = time.monotonic()
    speed = 50.0
    sc = make_scenario(iso_class="C", length_m=a.minutes * 60 * speed / 3.6, speed_kmh=speed, seed=a.seed)
    dur = sc.meta["duration_s"]
    # outages of 1-5 minutes spread over the drive, kinds in turn; power cuts between them
    kinds = ["assoc", "reset", "blackhole", "unreachable", "refused"]
    span = dur / (a.outages + 1)
    # 1, 2, 3, 4, 5 minutes (shorter on a drive too short for them: at most 60% of the gap)
    outages = [f"{(i + 0.5) * span:.0f}:{(i + 0.5) * span + min(60 * (1 + i % 5), 0.6 * span):.0f}:{kinds[i % 5]}"
               for i in range(a.outages)]
    cuts = [(i + 1) * dur / (a.cuts + 1) + 7 for i in range(a.cuts)]
    settings = {"device_id": 42, "heartbeat_s": 60, "stop_close_s": 30}
    print(f"drive: {dur / 60:.1f} min, {sc.meta['length_m'] / 1000:.1f} km; outages {outages}; cuts at "
          f"{[round(c) for c in cuts]} s (built in {time.monotonic() - t0:.0f} s)", flush=True)
    ref = run_scenario(sc, settings=settings, power_cuts=cuts, linger_s=120)
    want = _measured(ref["packets"])
    with tempfile.TemporaryDirectory() as d, Broker() as b:
        store = Store(str(Path(d) / "fleet.db"))
        col = Collector(b.url, store).start()
        col.connected.wait(20)
        cfg = {**settings, "uplink": "mqtt", "wifi_ssid": "depot", "wifi_password": "roadnode",
               "mqtt_host": "127.0.0.1", "mqtt_port": b.port}
        r = run_scenario(sc, settings=cfg, faults={"net": [parse_net_outage(o) for o in outages]},
                         power_cuts=cuts, linger_s=120)
        store.settled(42, timeout=30)
        col.stop()
        rows = store.packets(42)
        store.close()
    got = [PD.decode(x[4]) for x in rows]
    measured = _measured(got)
    seqs = [x[2] for x in rows]
    dup = [k for k, c in Counter(_key(m) for m in measured).items() if c > 1]
    gaps = len(seqs) and seqs != list(range(seqs[0], seqs[0] + len(seqs)))
    missing = [k for k in (_key(w) for w in want) if k not in {_key(m) for m in measured}]
    hb = [p for p in got if p["type"] == "status"]
    print(f"node measured {len(want)} segments+events over {r['boots']} boots; store: {len(rows)} packets, "
          f"{len(measured)} segments+events, {len(hb)} heartbeats; missing {len(missing)}, stored twice "
          f"{len(dup)}, seq gaps {'yes' if gaps else 'none'}; duplicates on the wire {col.duplicates}; "
          f"net {r['net']}; {time.monotonic() - t0:.0f} s")
    bad = _close(measured, want) if not missing and len(measured) == len(want) else ["counts differ"]
    ok = not missing and not dup and not gaps and not bad and len(measured) == len(want)
    print("OK" if ok else f"FAILED: {(missing or dup or bad)[:3]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
