"""A small fleet for the dashboard's tests: three vehicles over overlapping roads of the shipped town
network (both directions of Bridge Street, High Street, the Ring Road, Castle Lane, Old Mill Road), three trips each two days
apart (1, 3, 5 May 2024), sending real packets made with the firmware's codec: segments with each stretch's true IRI
(a few per cent of noise) at its start position, potholes where the roads have them, heartbeats
with vitals that change (heap going down, a watchdog reboot, a queue growing, GPS lost), one
vehicle whose link died (its last will: offline).

`plan()` says what each device sends and when; `fill(store)` stores it through the Store's public
ingest (Parser -> Store.ingest) with those times; `publish(broker)` sends it through a real broker
to a running `roadnode collect`, as nodes would."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from roadnode.fleet.messages import Parser
from roadnode.mpy.fwimport import fw
from roadnode.roads import load_network

B = fw("batch")
P = fw("packet")
PD = fw("packet_decode")
T0 = dt.datetime(2024, 5, 1, 8, 0, tzinfo=dt.timezone.utc).timestamp()
DAY = 86400.0
EPOCH = 7
BATCH = 8
FLAG_BELOW_MIN_SPEED = 1
RESETS = fw("packet").RESET_REASONS

# device -> its route: (road, direction) driven in this order on each trip
ROUTES = {
    501: [("bridge-st", "forward"), ("high-st", "forward"), ("ring", "forward")],
    502: [("bridge-st", "forward"), ("castle-lane", "reverse")],
    503: [("bridge-st", "reverse"), ("mill-rd", "forward")],
}
TRIPS = (T0, T0 + 2 * DAY, T0 + 4 * DAY)  # three trips per vehicle: 1, 3 and 5 May 2024, 08:00 UTC
RING_STRETCHES = 12  # of the 6.3 km ring, the first 1.2 km


@dataclass
class Device:
    device_id: int
    packets: list = field(default_factory=list)  # (time, packet bytes, decoded-ish facts)
    segments: list = field(default_factory=list)  # dicts: seq, time, lat, lon, iri, flags, road, truth
    events: list = field(default_factory=list)
    heartbeats: list = field(default_factory=list)  # dicts of the vitals sent
    live: dict | None = None  # the last heartbeat sent on the status topic (None: its will instead)
    offline: bool = False


def _stretches(road, direction):
    s = road.stretch_truth(direction)
    if road.road_id == "ring":
        s = s[:RING_STRETCHES]
    return s


def _status_packet(dev, seq, v: dict) -> bytes:
    vals = dict.fromkeys(PD.STATUS_FIELDS, 0)
    vals.update(v)
    buf = bytearray(80)
    n = P.encode_status(buf, seq & 0xFFFF, dev, [vals[k] for k in PD.STATUS_FIELDS])
    return bytes(buf[:n])


def _vitals(dev: int, trip: int, k: int, n: int, uptime: int) -> dict:
    """Heartbeat k of n in a trip: heap slowly going down; device 502 rebooted by its watchdog before
    its second trip; device 503's queue grows from its second trip on and its GPS is lost at the end of
    its last trip."""
    heap = 52000 - 300 * (trip * n + k) - 1000 * (dev - 501)
    v = dict(uptime_s=uptime, fw_major=0, fw_minor=4, fw_patch=0, reset_reason=RESETS.index("power_on"),
             unexpected_reboots=0, free_heap=heap + 1500, min_free_heap=heap, gps_fix=1, gps_sats=8,
             gps_hdop_c=110, flags=0b1100, heartbeat_s=60, queue_depth=2, link=2 | (3 << 2), last_ack_s=1)
    if dev == 502 and trip >= 1:
        v.update(reset_reason=RESETS.index("watchdog"), unexpected_reboots=1)
    if dev == 503 and trip >= 1:
        v.update(queue_depth=5 + 7 * (k + n * (trip - 1)))
        if trip == len(TRIPS) - 1 and k == n - 1:
            v.update(gps_fix=0, gps_sats=0, flags=0b1000)
    return v


def plan() -> dict[int, Device]:
    """What each device sends, with times (seconds since the epoch, from 1 May 2024)."""
    net = load_network("town")
    rng = np.random.default_rng(14)
    out = {}
    for dev, route in ROUTES.items():
        d = Device(dev)
        seq = 0
        for trip, t_start in enumerate(TRIPS):
            t = t_start + 60 * (dev - 501)
            idx = 0
            stretches = [(net.roads[r], s) for r, way in route for s in _stretches(net.roads[r], way)]
            n_hb = 3
            hb_every = max(1, len(stretches) // n_hb)
            for i, (road, s) in enumerate(stretches):
                if i and road is not stretches[i - 1][0]:
                    idx = 0  # the roads of a route do not join up: each is a trip of its own (seg_index anew)
                if i % hb_every == 0 and i // hb_every < n_hb:
                    v = _vitals(dev, trip, i // hb_every, n_hb, uptime=int(t - t_start) + 30)
                    pk = _status_packet(dev, seq, v)
                    d.packets.append((t, pk))
                    d.heartbeats.append({"seq": seq, "time": t, **v})
                    seq += 1
                iri = s["true_iri_m_per_km"] * (1 + rng.normal(0, 0.03))
                flags = FLAG_BELOW_MIN_SPEED if (trip == 0 and i == 3) else 0  # one slow segment per vehicle
                speed = 12 if flags else int(road.speed_kmh)
                buf = bytearray(64)
                n = P.encode_segment(buf, seq & 0xFFFF, dev, idx, 100, round(s["start_lat"] * 1e7),
                                     round(s["start_lon"] * 1e7), round(iri * 100), 40, 30, speed, flags)
                d.packets.append((t, bytes(buf[:n])))
                d.segments.append({"seq": seq, "time": t, "lat": s["start_lat"], "lon": s["start_lon"], "iri": iri,
                                   "flags": flags, "road": road.road_id, "direction": s["direction"],
                                   "truth": s["true_iri_m_per_km"], "stretch_id": s["stretch_id"]})
                seq += 1
                idx += 1
                # the road's potholes and bumps, where this stretch holds them
                lo, hi = sorted((s["from_m"], s["to_m"]))
                for f in road.features:
                    if f.kind in ("pothole", "bump") and lo <= f.position_m < hi:
                        la, lon, _ = road.point([f.position_m])
                        buf = bytearray(64)
                        kind = PD.EVENT_KINDS.index(f.kind)
                        n = P.encode_event(buf, seq & 0xFFFF, dev, kind, 35, round(float(la[0]) * 1e7),
                                           round(float(lon[0]) * 1e7), int(idx * 100), speed, int(t) % 86400 // 2)
                        d.packets.append((t, bytes(buf[:n])))
                        d.events.append({"seq": seq, "time": t, "kind": f.kind, "lat": float(la[0]),
                                         "lon": float(lon[0])})
                        seq += 1
                t += 100 / (road.speed_kmh / 3.6)
        d.offline = dev == 503
        _received(d)
        if not d.offline:
            last = dict(d.heartbeats[-1])
            t_live = d.packets[-1][0] + 5
            last["uptime_s"] += int(t_live - last["time"])  # the node's clock runs on
            d.live = {**last, "time": t_live, "payload": _status_packet(dev, seq, {
                k: v for k, v in last.items() if k not in ("seq", "time", "received")})}
        out[dev] = d
    return out


def batches(d: Device):
    """(receive time, batch payload, first seq) of a device's packets: BATCH at a time, never across
    two trips; a batch is received when its last packet was made."""
    i = 0
    while i < len(d.packets):
        j = i + 1
        while j < len(d.packets) and j - i < BATCH and d.packets[j][0] - d.packets[j - 1][0] < 3600:
            j += 1
        chunk = d.packets[i:j]
        h = bytearray(B.HDR)
        B.put_header(h, EPOCH, 0, i, len(chunk))
        yield chunk[-1][0], bytes(h) + b"".join(bytes([len(p)]) + p for _, p in chunk), i
        i = j


def _received(d: Device) -> None:
    """Each segment, event and heartbeat gains ``received``: when its batch reached the collector."""
    at = {}
    for t, payload, first in batches(d):
        for k in range(first, first + payload[13]):
            at[k] = t
    for x in (*d.segments, *d.events, *d.heartbeats):
        x["received"] = at[x["seq"]]


def fill(store, devices: dict[int, Device] | None = None) -> dict[int, Device]:
    """Store the plan through Store.ingest, as the collector would (its parser, its times)."""
    devices = devices or plan()
    parser = Parser()
    for dev, d in devices.items():
        for t, payload, _ in batches(d):
            up, rejects = parser.parse(f"roadnode/{dev}/up", payload, t)
            assert up is not None and not rejects, rejects
            store.ingest([up])
        if d.live:
            st, _ = parser.parse(f"roadnode/{dev}/status", d.live["payload"], d.live["time"])
            store.ingest(statuses=[st])
        if d.offline:
            st, _ = parser.parse(f"roadnode/{dev}/status", b"offline", d.packets[-1][0] + 5)
            store.ingest(statuses=[st])
    return devices


def last_time(devices: dict[int, Device]) -> float:
    return max(d.packets[-1][0] for d in devices.values())
