"""`roadnode fleet status` and `fleet segments`: how every device is, what every device measured.

A device's state: ``offline`` when its last will (or a disconnect: the payload ``offline`` on its
status topic) is the newest thing heard of it; ``unknown`` when nothing was heard from it for
max(3 heartbeat intervals, 10 minutes) (or never: only a retained message of unknown age);
``online`` otherwise. Its vitals come from its newest heartbeat: the live one on its status topic,
else the newest one queued in its batches.
"""

from __future__ import annotations

import datetime as dt
import re

from roadnode.errors import InputError
from roadnode.fleet.store import Store
from roadnode.mpy.fwimport import fw

UNKNOWN_AFTER_S = 600.0
UNEXPECTED_RESETS = ("watchdog", "crash", "brownout")
# how the human table sorts: the first problem a device has decides its place
PROBLEM_ORDER = ("offline", "imu_fault", "safe_mode", "boot_error", "reboots", "queue_growing", "queue_dropped",
                 "unknown", "no_gps_fix", "rejected")


def iso(t: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC with milliseconds (None for no time)."""
    if t is None or t <= 0:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(s: str, now: float | None = None) -> float:
    """ISO 8601 (UTC when no zone is given), Unix seconds, or an age: 30s, 15m, 2h, 7d (before now)."""
    import time

    s = s.strip()
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd])", s)
    if m:
        k = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return (time.time() if now is None else now) - float(m.group(1)) * k
    try:
        return float(s)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"time {s!r}: expected ISO 8601 (2024-05-01T12:00:00Z), Unix seconds or an age (2h)") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return t.timestamp()


def device_state(online, last_seen, heartbeat_s, now: float) -> str:
    """online, offline (its last will) or unknown (silent for three heartbeats, UNKNOWN_AFTER_S at least, or
    never heard)."""
    if online == 0:
        return "offline"
    if last_seen is None or last_seen <= 0:
        return "unknown"
    if now - last_seen > max(3 * (heartbeat_s or 60), UNKNOWN_AFTER_S):
        return "unknown"
    return "online"


def fleet_status(store: Store, now: float) -> list[dict]:
    """One dict per device, problems first (PROBLEM_ORDER), then by device id."""
    PD = fw("packet_decode")
    rows = []
    for d in store.devices():
        hb, src = None, None
        for data, where in ((d.get("status"), "live" if (d.get("status_at") or 0) > 0 else "retained"),
                            (d.get("heartbeat"), "queued")):
            if data is not None:
                try:
                    hb, src = PD.decode(data), where
                    break
                except PD.PacketError:
                    continue
        hb = hb or {}
        flags = hb.get("flags", [])
        qd, prev = hb.get("queue_depth"), d.get("prev_queue_depth")
        r = {
            "device_id": d["device_id"],
            "state": device_state(d.get("online"), d.get("last_seen"), hb.get("heartbeat_s"), now),
            "last_seen": iso(d.get("last_seen")),
            "fw_version": hb.get("fw_version"),
            "uptime_s": hb.get("uptime_s"),
            "reset_reason": hb.get("reset_reason"),
            "unexpected_reboots": hb.get("unexpected_reboots"),
            "min_free_heap": hb.get("min_free_heap"),
            "queue_depth": qd,
            "queue_dropped": hb.get("queue_dropped"),
            "queue_growing": bool(src == "live" and qd and prev is not None and qd > prev),
            "gps_fix": hb.get("gps_fix"),
            "imu_fault": "imu_fault" in flags,
            "safe_mode": "safe_mode" in flags,
            "boot_error": hb.get("boot_error"),
            "wifi": hb.get("wifi"),
            "mqtt": hb.get("mqtt"),
            "reconnects": hb.get("reconnects"),
            "last_ack_s": hb.get("last_ack_s"),
            "heartbeat_s": hb.get("heartbeat_s"),
            "heartbeat_from": src,
            # {state, windows, wheel_hop_hz, ...} (docs/packets.md); None from nodes before 0.4
            "self_cal": hb.get("self_cal"),
            "segments_total": d.get("segments_total", 0),
            "last_segment_at": iso(d.get("last_segment_at")),
            "rejected": d.get("rejected", 0),
            "auth_failures": d.get("auth_failures", 0),  # refused by the seal's check (docs/security.md)
            "replays": d.get("replays", 0),
            "rate_limited": d.get("rate_limited", 0),
        }
        p = []
        if r["state"] == "offline":
            p.append("offline")
        if r["imu_fault"]:
            p.append("imu_fault")
        if r["safe_mode"]:
            p.append("safe_mode")
        if r["boot_error"] not in (None, "none"):
            p.append("boot_error")
        if (r["unexpected_reboots"] or 0) > 0 or r["reset_reason"] in UNEXPECTED_RESETS:
            p.append("reboots")
        if r["queue_growing"]:
            p.append("queue_growing")
        if r["queue_dropped"]:
            p.append("queue_dropped")
        if r["state"] == "unknown":
            p.append("unknown")
        if hb and not r["gps_fix"]:
            p.append("no_gps_fix")
        if r["rejected"]:
            p.append("rejected")
        r["problems"] = p
        rows.append(r)
    rows.sort(key=lambda r: (min((PROBLEM_ORDER.index(x) for x in r["problems"]), default=len(PROBLEM_ORDER)),
                             r["device_id"]))
    return rows


SEGMENT_KEYS = ("device_id", "epoch", "seq", "seg_index", "start_m", "end_m", "segment_length_m", "iri_m_per_km",
                "rms_g", "peak_g", "speed_kmh", "flags", "lat", "lon")


def segment_records(store: Store, device_id: int | None = None, since: float | None = None) -> list[dict]:
    """Stored segments as `fleet segments` prints them; ``time`` is when the collector received the
    segment (the packet carries no time)."""
    return [{**{k: s[k] for k in SEGMENT_KEYS}, "time": iso(s["received_at"])}
            for s in store.segments(device_id, since)]
