"""A long drive through the whole uplink chain (issue 12): the firmware on the simulated board with
`--uplink mqtt`, a real broker (Mosquitto where installed, else amqtt) and the collector (SQLite),
with outages of every kind lasting minutes and power cuts; then the store is compared with what
the node measured (the same drive and cuts on the console uplink). Prints the counts.

    python bench/uplink_drive.py [--minutes 30] [--outages 5] [--cuts 3] [--seed 12] [--collect]

--collect (issue 13): the store is `roadnode collect` (a subprocess) and the segments are read back
with `roadnode fleet segments`; they must equal, once each, `roadnode estimate`'s segments of the same
drive (with --cuts 0: a power cut restarts the node's trip, which the offline path does not model)
or the node's own record of the drive with the same cuts (with --cuts 0 the drive ends standing 2
minutes inside the recording, instead of lingering after it, so that estimate sees the end too).

Exit 1 when a segment or event is missing, stored twice or differs.
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
    ap.add_argument("--collect", action="store_true", help="through `roadnode collect` and `roadnode fleet segments`")
    a = ap.parse_args()
    os.environ.setdefault("RNSIM_CPU_RATIO", "0")  # the two runs measure alike (the comparison)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_uplink_e2e import _close, _key, _measured  # one definition of "the same measurement"

    from roadnode.fleet.broker import Broker
    from roadnode.fleet.collector import Collector, Store
    from roadnode.mpy.fwimport import fw
    from roadnode.scenario import make_scenario
    from roadnode.sim.faults import parse_net_outage
    from roadnode.sim.offline import run_scenario

    PD = fw("packet_decode")
    t0 = time.monotonic()
    speed = 50.0
    length = a.minutes * 60 * speed / 3.6
    linger = 120
    stops = ()
    if a.collect and not a.cuts:  # compared with roadnode estimate: the drive ends standing 2 minutes
        # within the recording (estimate sees it), not lingering after it
        from roadnode.scenario.speed import Stop

        stops, linger = [Stop(length - 5, 120)], 0
    sc = make_scenario(iso_class="C", length_m=length, speed_kmh=speed, seed=a.seed, stops=stops)
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
    ref = run_scenario(sc, settings=settings, power_cuts=cuts, linger_s=linger)
    want = _measured(ref["packets"])
    with tempfile.TemporaryDirectory() as d, Broker() as b:
        db = str(Path(d) / "fleet.db")
        if a.collect:
            import json
            import signal
            import subprocess

            entry = [sys.executable, "-c", "from roadnode.cli import entry; entry()"]
            proc = subprocess.Popen(entry + ["collect", "--broker", b.url, "--db", "sqlite:///" + db, "--json",
                                             "--stats-every", "5"], stdout=subprocess.PIPE, text=True)
            json.loads(proc.stdout.readline())
            while not json.loads(proc.stdout.readline()).get("connected"):
                pass
        else:
            store = Store(db)
            col = Collector(b.url, store).start()
            col.connected.wait(20)
        cfg = {**settings, "uplink": "mqtt", "wifi_ssid": "depot", "wifi_password": "roadnode",
               "mqtt_host": "127.0.0.1", "mqtt_port": b.port}
        r = run_scenario(sc, settings=cfg, faults={"net": [parse_net_outage(o) for o in outages]},
                         power_cuts=cuts, linger_s=linger)
        if a.collect:
            store = Store(db)
            store.settled(42, timeout=30)
            proc.send_signal(signal.SIGTERM)
            last = [json.loads(x) for x in proc.stdout][-1]
            proc.wait(60)
            col = type("Col", (), {"duplicates": last["duplicates"]})
            fleet = subprocess.run(entry + ["fleet", "segments", "--db", "sqlite:///" + db, "--json"],
                                   capture_output=True, text=True, check=True).stdout
            fleet_segs = [json.loads(x) for x in fleet.splitlines()]
            if not cuts:  # against `roadnode estimate` of the same drive
                from roadnode.scenario import save_scenario

                save_scenario(sc, Path(d) / "drive.npz")
                est = subprocess.run(entry + ["estimate", str(Path(d) / "drive.npz"), "--json"] +
                                     [x for k, v in settings.items() for x in ("--set", f"{k}={v}")],
                                     capture_output=True, text=True, check=True).stdout
                ref_segs, against = [x for x in map(json.loads, est.splitlines()) if x.get("type") == "segment"], \
                    "roadnode estimate"
            else:
                ref_segs, against = [w for w in want if w["type"] == "segment"], "the node's own record"
        else:
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
    if a.collect:
        k = [(x["seg_index"], tuple(x["flags"]), x["lat"], x["lon"]) for x in fleet_segs]
        kw = [(x["seg_index"], tuple(x["flags"]), x["lat"], x["lon"]) for x in ref_segs]
        twice = len(k) - len(set(k))
        close = _close([{**x, "type": "segment"} for x in fleet_segs], ref_segs) if k == kw else ["differ"]
        print(f"roadnode fleet segments: {len(fleet_segs)}; {against}: {len(ref_segs)} segments; "
              f"{'equal' if k == kw and not close else 'DIFFERENT'}, stored twice {twice}")
        ok &= k == kw and not close and twice == 0
        bad = bad or close
    print("OK" if ok else f"FAILED: {(missing or dup or bad)[:3]}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
