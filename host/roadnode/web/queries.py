"""Read-only questions the dashboard asks of the collector's database that `roadnode.fleet.store`
does not answer (yet): events for the map's markers, a device's heartbeats over time, each device's
last known position.

They run through the Store's own connection, lock and dialect (``?`` placeholders and ``{REAL}``
types work on SQLite and PostgreSQL alike), inside its transactions, and never write.
"""

from __future__ import annotations

from roadnode.fleet.store import Store, flag_names
from roadnode.mpy.fwimport import fw

# (epoch, seq) as one sortable number, as Store.devices() orders a device's packets
_KEY = "epoch * 1073741824 + seq"


def _rows(store: Store, q: str, args=()) -> list[tuple]:
    return store.query(q, args)


def _where(device_id=None, since=None, until=None, prefix="") -> tuple[str, list]:
    cond, a = [], []
    if device_id is not None:
        cond.append(f"{prefix}device_id = ?")
        a.append(device_id)
    if since is not None:
        cond.append(f"{prefix}received_at >= ?")
        a.append(since)
    if until is not None:
        cond.append(f"{prefix}received_at < ?")
        a.append(until)
    return (" WHERE " + " AND ".join(cond)) if cond else "", a


def events(store: Store, device_id: int | None = None, since: float | None = None, until: float | None = None,
           limit: int = 5000) -> list[dict]:
    """Stored events (potholes, bumps), newest ``limit`` of them, in (device, epoch, seq) order."""
    w, a = _where(device_id, since, until)
    rows = _rows(store, "SELECT device_id, epoch, seq, kind, peak_g, lat, lon, dist_m, speed_kmh, received_at "
                        f"FROM events{w} ORDER BY received_at DESC, device_id, epoch DESC, seq DESC LIMIT ?",
                 [*a, int(limit)])
    keys = ("device_id", "epoch", "seq", "kind", "peak_g", "lat", "lon", "dist_m", "speed_kmh", "received_at")
    return sorted((dict(zip(keys, r)) for r in rows), key=lambda e: (e["device_id"], e["epoch"], e["seq"]))


def device_ids(store: Store) -> set[int]:
    """Every device the database knows of (devices row, or any stored packet)."""
    return {r[0] for r in _rows(store, "SELECT device_id FROM devices UNION SELECT DISTINCT device_id FROM packets")}


def heartbeats(store: Store, device_id: int, since: float | None = None, limit: int = 2000) -> list[dict]:
    """A device's heartbeats over time, oldest first: the ones queued in its batches (packets of
    type status, decoded with the firmware's codec) and the newest live one from its status topic.

    The packet carries no clock time, and queued heartbeats may arrive long after they were made
    (a backlog after an outage), so ``time_s`` is an estimate of when it was made: per boot (a run
    of rising uptime in queue order), the boot's start is taken as the least (received - uptime) of
    its heartbeats — the one least delayed — and each heartbeat's time is that start plus its uptime;
    a boot ended before the next one started (a backlog delivered at once moves the earlier boots
    back in time). ``received_s`` is when the collector got it."""
    PD = fw("packet_decode")
    w, a = _where(device_id, None, None)
    rows = _rows(store, f"SELECT epoch, seq, data, received_at FROM packets{w} AND type = 'status' "
                        f"ORDER BY {_KEY} DESC LIMIT ?", [*a, int(limit)])
    out = []
    for epoch, seq, data, t in reversed(rows):
        try:
            d = PD.decode(bytes(data))
        except PD.PacketError:
            continue
        out.append(_vitals(d, t, "queued", epoch, seq))
    live = _rows(store, "SELECT status, status_at FROM devices WHERE device_id = ?", [device_id])
    if live and live[0][0] is not None and (live[0][1] or 0) > 0:
        try:
            d = PD.decode(bytes(live[0][0]))
        except PD.PacketError:
            d = None
        if d is not None and not (out and out[-1]["uptime_s"] == d["uptime_s"]):
            out.append(_vitals(d, live[0][1], "live", None, None))
    boots: list[list[dict]] = []
    for v in out:
        if not boots or v["uptime_s"] < boots[-1][-1]["uptime_s"]:
            boots.append([])
        boots[-1].append(v)
    nxt = None  # a boot ended before the next one began: newest first, each bounds the one before
    for boot in reversed(boots):
        start = min(b["received_s"] - b["uptime_s"] for b in boot)
        if nxt is not None:
            start = min(start, nxt - boot[-1]["uptime_s"])
        for b in boot:
            b["time_s"] = start + b["uptime_s"]
        nxt = boot[0]["time_s"] - boot[0]["uptime_s"]
    out.sort(key=lambda v: v["time_s"])
    return [v for v in out if since is None or v["time_s"] >= since]


def _vitals(d: dict, t: float, source: str, epoch, seq) -> dict:
    return {"received_s": t, "time_s": None, "source": source, "epoch": epoch, "seq": seq, "uptime_s": d["uptime_s"],
            "fw_version": d["fw_version"], "reset_reason": d["reset_reason"],
            "unexpected_reboots": d["unexpected_reboots"], "free_heap": d["free_heap"],
            "min_free_heap": d["min_free_heap"], "queue_depth": d.get("queue_depth"),
            "queue_dropped": d.get("queue_dropped"), "gps_fix": d["gps_fix"], "gps_sats": d["gps_sats"],
            "imu_fault": "imu_fault" in d["flags"]}


def last_positions(store: Store) -> dict[int, dict]:
    """Per device, the position of its newest segment that has one (lat, lon, received_at)."""
    rows = _rows(store, f"SELECT s.device_id, s.lat, s.lon, s.received_at FROM segments s JOIN (SELECT device_id, "
                        f"MAX({_KEY}) AS k FROM segments WHERE lat IS NOT NULL GROUP BY device_id) m "
                        f"ON m.device_id = s.device_id AND s.{_KEY.replace('seq', 's.seq')} = m.k")
    return {d: {"lat": la, "lon": lo, "time_s": t} for d, la, lo, t in rows}


def recent_segments(store: Store, device_id: int | None = None, since: float | None = None,
                    limit: int = 500) -> list[dict]:
    """The newest ``limit`` segments (of one device or all) in (device, epoch, seq) order, as dicts
    like Store.segments() gives (flags as names), without reading the whole table."""
    w, a = _where(device_id, since, None)
    rows = _rows(store, f"SELECT {', '.join(SEGMENT_COLUMNS)} FROM segments{w} ORDER BY received_at DESC, "
                        f"{_KEY} DESC LIMIT ?", [*a, int(limit)])
    out = []
    for r in rows:
        d = dict(zip(SEGMENT_COLUMNS, r))
        d["flags"] = flag_names(d["flags"])
        out.append(d)
    return sorted(out, key=lambda s: (s["device_id"], s["epoch"], s["seq"]))


SEGMENT_COLUMNS = ("device_id", "epoch", "seq", "seg_index", "segment_length_m", "start_m", "end_m", "lat", "lon",
                   "iri_m_per_km", "rms_g", "peak_g", "speed_kmh", "flags", "received_at")
