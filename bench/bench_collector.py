"""The collector at fleet scale: 1,000 simulated nodes' packet streams, faster than real time, through
a real broker (Mosquitto where installed) into `roadnode collect` (a subprocess, as deployed) on SQLite
and on PostgreSQL (a server this script starts in a temporary folder, fsync on).

Each simulated node behaves as the firmware's uplink does (docs/uplink.md): its packets (a segment
every 7.2 s at 50 km/h, an event and a heartbeat a minute: real batches and packets built with the
firmware's codec) are released on its drive's clock sped up ``--speedup`` times, sent in batches of up
to ``--batch`` packets, at most 4 batches in flight, forgotten only on the collector's
acknowledgement, sent again after 30 s without one. Publishers share a few MQTT connections (the
broker and the collector cannot tell: topics carry the device id).

Prints per database: packets, offered and ingest packets/s, end-to-end latency (a packet released on
the node -> its acknowledgement back) p50/p95/max, duplicates on the wire, lost and duplicated in
the store. Exit 1 when anything is lost or duplicated or the ingest rate is below --floor.

    python bench/bench_collector.py [--nodes 1000] [--minutes 10] [--speedup 60] [--db sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from roadnode.fleet.broker import Broker
from roadnode.fleet.pgserver import PgServer, pg_bindir
from roadnode.fleet.store import Store
from roadnode.mpy.fwimport import fw

P = fw("packet")
B = fw("batch")
PD = fw("packet_decode")
ENTRY = [sys.executable, "-c", "from roadnode.cli import entry; entry()"]
IN_FLIGHT = 4
RESEND_S = 30.0


def node_stream(dev: int, minutes: float, rng) -> tuple[list[float], list[bytes]]:
    """(release times in drive seconds, packets) of one node's drive."""
    t, out = [], []
    buf = bytearray(80)
    lat, lon = 48.0 + rng.random(), 17.0 + rng.random()
    seq = idx = 0
    off = rng.random() * 7.2
    for k in range(int(minutes * 60 / 7.2)):  # segments
        ts = off + k * 7.2
        n = P.encode_segment(buf, seq, dev, idx, 100, round(lat * 1e7), round((lon + k * 0.00135) * 1e7),
                             int(rng.integers(100, 900)), 40, 30, 50, 0)
        t.append(ts)
        out.append(bytes(buf[:n]))
        seq, idx = seq + 1, idx + 1
    st = [0] * 28
    for m in range(int(minutes)):  # a heartbeat and an event a minute
        st[0], st[19] = m * 60, 60
        n = P.encode_status(buf, seq, dev, st)
        t.append(off + m * 60 + 30)
        out.append(bytes(buf[:n]))
        n = P.encode_event(buf, seq + 1, dev, 1, 45, round(lat * 1e7), round(lon * 1e7), m * 830, 50, m * 30)
        t.append(off + m * 60 + 45)
        out.append(bytes(buf[:n]))
        seq += 2
    order = sorted(range(len(t)), key=t.__getitem__)
    return [t[i] for i in order], [out[i] for i in order]


class SimNode:
    def __init__(self, dev, times, pkts):
        self.dev, self.times, self.pkts = dev, times, pkts
        self.released = 0  # packets released so far (seq < released)
        self.next = 0  # next seq to send
        self.acked = -1
        self.flight: list[tuple[int, float]] = []  # (last seq of the batch, sent at)
        self.ack_t = np.full(len(pkts), np.nan)
        self.rel_t = np.full(len(pkts), np.nan)


class Publisher(threading.Thread):
    """One MQTT connection carrying many simulated nodes."""

    def __init__(self, k, nodes, broker, speedup, batch, t0):
        super().__init__(daemon=True)
        self.nodes = {n.dev: n for n in nodes}
        self.speedup, self.batch, self.t0 = speedup, batch, t0
        self.lock = threading.Lock()
        self.resent = 0
        self.sub = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{k}")
        c.max_inflight_messages_set(0)  # (the 4 batches per node are the window, as on the node)
        c.max_queued_messages_set(0)
        c.on_message = self._ack
        c.on_connect = lambda cl, *a: cl.subscribe([(f"roadnode/{d}/ack", 1) for d in self.nodes])
        c.on_subscribe = lambda *a: self.sub.set()
        c.connect(broker.host, broker.port, keepalive=60)
        c.loop_start()
        self.client = c
        self.done = threading.Event()

    def _ack(self, c, u, m):
        now = time.monotonic()
        dev = int(m.topic.split("/")[1])
        _, upto = B.decode_ack(m.payload)
        n = self.nodes[dev]
        with self.lock:
            if upto > n.acked:
                n.ack_t[n.acked + 1:upto + 1] = now
                n.acked = upto
                n.flight = [f for f in n.flight if f[0] > upto]

    def run(self):
        nodes = list(self.nodes.values())
        hdr = bytearray(B.HDR)
        while True:
            now = time.monotonic()
            drive = (now - self.t0) * self.speedup
            busy = False
            for n in nodes:
                with self.lock:
                    while n.released < len(n.times) and n.times[n.released] <= drive:
                        n.rel_t[n.released] = now
                        n.released += 1
                    if n.flight and now - n.flight[0][1] > RESEND_S:  # no ack for 30 s: from the oldest again
                        n.next, n.flight = n.acked + 1, []
                        self.resent += 1
                    while len(n.flight) < IN_FLIGHT and n.next < n.released:
                        first = n.next
                        last = min(n.released, first + self.batch) - 1
                        B.put_header(hdr, 77, n.acked + 1, first, last - first + 1)
                        payload = bytes(hdr) + b"".join(bytes([len(p)]) + p for p in n.pkts[first:last + 1])
                        self.client.publish(f"roadnode/{n.dev}/up", payload, qos=1)
                        n.flight.append((last, now))
                        n.next = last + 1
                    busy |= n.acked < len(n.pkts) - 1
            if not busy:
                self.done.set()
                return
            time.sleep(0.005)


def _worker(k: int, devs: list[int], a, host: str, port: int, t0: float, out) -> None:
    """A publishing process: its share of the nodes over its share of the connections."""
    from types import SimpleNamespace

    nodes = [SimNode(d, *node_stream(d, a.minutes, np.random.default_rng([a.seed, d]))) for d in devs]
    per = max(1, a.publishers // a.procs)
    b = SimpleNamespace(host=host, port=port)
    pubs = [Publisher(f"{k}-{i}", nodes[i::per], b, a.speedup, a.batch, t0) for i in range(per)]
    for p in pubs:
        p.sub.wait(30)
    for p in pubs:
        p.start()
    deadline = t0 + a.minutes * 60 / a.speedup + a.timeout
    for p in pubs:
        p.done.wait(max(0.0, deadline - time.monotonic()))
    out.put(([(n.dev, n.rel_t, n.ack_t) for n in nodes], sum(p.resent for p in pubs)))
    for p in pubs:
        p.client.loop_stop()
        p.client.disconnect()


def run(kind: str, db_url: str, broker: Broker, a) -> dict:
    import multiprocessing as mp

    devs = list(range(1000, 1000 + a.nodes))
    packets = {d: node_stream(d, a.minutes, np.random.default_rng([a.seed, d]))[1] for d in devs}
    total = sum(len(v) for v in packets.values())
    col = subprocess.Popen(ENTRY + ["collect", "--broker", broker.url, "--db", db_url, "--json", "--stats-every", "1",
                                    "--client-id", f"bench-{kind}"],
                           stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    json.loads(col.stdout.readline())
    while not json.loads(col.stdout.readline()).get("connected"):
        pass
    seen = []
    threading.Thread(target=lambda: seen.extend(json.loads(x) for x in col.stdout), daemon=True).start()
    t0 = time.monotonic() + 3.0  # (CLOCK_MONOTONIC: one clock for every process of the machine)
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(k, devs[k::a.procs], a, broker.host, broker.port, t0, out))
             for k in range(a.procs)]
    for p in procs:
        p.start()
    res = [out.get(timeout=a.minutes * 60 / a.speedup + a.timeout + 120) for _ in procs]
    for p in procs:
        p.join(60)
    t_end = time.monotonic()
    col.send_signal(2)
    col.wait(60)
    time.sleep(0.5)
    last = seen[-1] if seen else {}
    rel = np.concatenate([r for ns, _ in res for _, r, _ in ns])
    ack = np.concatenate([x for ns, _ in res for _, _, x in ns])
    got = ~np.isnan(ack)
    lat = (ack - rel)[got]
    store = Store(db_url)
    rows = store.packets()
    if kind == "sqlite":
        f = Path(db_url.split(":///", 1)[1])
        size = sum(p.stat().st_size for p in f.parent.glob(f.name + "*"))
    else:
        size = store._tx(lambda: store._x("SELECT pg_database_size(current_database())").fetchone()[0])
    store.close()
    want = {(d, s): p for d, pk in packets.items() for s, p in enumerate(pk)}
    have: dict = {}
    for dev, ep, seq, _, data in rows:
        have.setdefault((dev, seq), []).append(data)
    lost = sum(1 for k, p in want.items() if k not in have or have[k][0] != p)
    dup = sum(len(v) - 1 for v in have.values())
    span = np.nanmax(ack) - np.nanmin(rel) if got.any() else float("nan")
    return {"db": kind, "nodes": a.nodes, "packets": total, "acked": int(got.sum()), "stored": len(rows),
            "offered_per_s": total / (a.minutes * 60 / a.speedup), "ingest_per_s": got.sum() / span,
            "latency_ms": {q: float(np.percentile(lat, p) * 1000) for q, p in (("p50", 50), ("p95", 95), ("max", 100))}
            if len(lat) else {}, "wire_duplicates": last.get("duplicates"), "transactions": last.get("transactions"),
            "node_resends": sum(n for _, n in res), "lost": lost, "duplicated": dup,
            "messages": last.get("batches"), "bytes_per_packet": size / max(1, len(rows)),
            "messages_per_s": (last.get("batches") or 0) / span,
            "seconds": t_end - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--minutes", type=float, default=10, help="each node's drive (default 10)")
    ap.add_argument("--speedup", type=float, default=60, help="drive time / real time (default 60)")
    ap.add_argument("--batch", type=int, default=40, help="packets per batch at most (the node's 1 KB: ~40)")
    ap.add_argument("--publishers", type=int, default=20, help="MQTT connections carrying the nodes")
    ap.add_argument("--procs", type=int, default=4, help="publishing processes (the connections split among them)")
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--floor", type=float, default=5000.0)
    ap.add_argument("--timeout", type=float, default=300.0, help="s past the drive's end to wait for the last ack")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    kinds = [k.strip() for k in a.db.split(",") if k.strip()]
    ok = True
    with Broker() as broker, tempfile.TemporaryDirectory() as d:
        print(f"broker: {broker.kind}; {a.nodes} nodes x {a.minutes:g} min of driving at {a.speedup:g}x real time, "
              f"batches of up to {a.batch}", flush=True)
        for kind in kinds:
            if kind == "postgresql":
                if not pg_bindir():
                    print("postgresql: not installed, skipped")
                    continue
                pg = PgServer(fsync=True).start()
                url = pg.url
            else:
                pg, url = None, "sqlite:///" + str(Path(d) / "bench.db")
            try:
                r = run(kind, url, broker, a)
            finally:
                if pg:
                    pg.close()
            L = r["latency_ms"]
            print(f"{kind}: {r['packets']} packets from {r['nodes']} nodes; offered {r['offered_per_s']:.0f}/s, "
                  f"ingest {r['ingest_per_s']:.0f} packets/s; latency p50 {L.get('p50', float('nan')):.0f} ms, "
                  f"p95 {L.get('p95', float('nan')):.0f} ms, max {L.get('max', float('nan')):.0f} ms; "
                  f"{r['messages']} messages ({r['messages_per_s']:.0f}/s) in {r['transactions']} transactions; "
                  f"database {r['bytes_per_packet']:.0f} B/packet; lost {r['lost']}, duplicated {r['duplicated']} "
                  f"(wire duplicates {r['wire_duplicates']}, node resends {r['node_resends']})", flush=True)
            ok &= r["lost"] == 0 and r["duplicated"] == 0 and r["acked"] == r["packets"]
            if r["offered_per_s"] < a.floor:  # (a latency run: it cannot show more than is offered)
                print(f"  (offered below the {a.floor:.0f}/s floor: the rate is not checked)")
            else:
                ok &= r["ingest_per_s"] >= a.floor
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
