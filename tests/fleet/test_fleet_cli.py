"""`roadnode fleet status` through the real chain: nodes with a last will on a real broker,
`roadnode collect`, then the CLI: online / unknown / offline, vitals, problems first."""

from __future__ import annotations

import subprocess
import time

import pytest

from fleet_helpers import ENTRY, Collect, Node, fleet, seg, status, wait


@pytest.mark.slow
def test_fleet_status_states_vitals_and_problems_first(mqtt_broker, tmp_path):
    db = "sqlite:///" + str(tmp_path / "fleet.db")
    col = Collect(mqtt_broker.url, db, "--client-id", f"c-{tmp_path.name}")
    a, b, c = (Node(mqtt_broker, d, will=True).start() for d in (301, 302, 303))
    try:
        a.send(1, 0, [seg(301, 0, 0), seg(301, 1, 1), status(301, 2, uptime=30)])
        a.wait_acked(1, 2)
        a.status(status(301, queue_depth=5))
        col.wait_stats(lambda s: s["statuses"] >= 1)
        # its queue grows (the uplink is not keeping up); it has identified its vehicle (self_cal)
        a.status(status(301, queue_depth=9, self_cal=(3, 80, 118, 60, 70, 75)))
        # an IMU fault, a watchdog reset, and a 10-minute heartbeat
        b.status(status(302, flags=0b1110, reboots=2, reset=3, heartbeat_s=600))
        c.status(status(303, uptime=500))
        col.wait_stats(lambda s: s["statuses"] >= 4)
        c.vanish()  # its link dies: the broker publishes its will
        col.wait_stats(lambda s: s["statuses"] >= 5, what="the last will")
    finally:
        a.stop()
        b.stop()
        col.stop()
    now = time.time()
    mine = (301, 302, 303)
    rows = [r for r in fleet("status", "--db", db) if r["device_id"] in mine]
    assert [r["device_id"] for r in rows] == [303, 302, 301], "problems first: offline, faults, queue growing"
    r = {x["device_id"]: x for x in rows}
    assert [r[d]["state"] for d in mine] == ["online", "online", "offline"]
    assert r[301]["segments_total"] == 2 and r[301]["last_segment_at"] and r[301]["queue_depth"] == 9
    assert r[301]["queue_growing"] and r[301]["problems"] == ["queue_growing"]
    assert r[301]["fw_version"] == "0.4.0" and r[301]["uptime_s"] == 60 and r[301]["min_free_heap"] == 40000
    assert r[302]["imu_fault"] and r[302]["unexpected_reboots"] == 2 and r[302]["reset_reason"] == "watchdog"
    assert r[302]["problems"][:2] == ["imu_fault", "reboots"] and r[302]["gps_fix"] == 1
    assert r[303]["uptime_s"] == 500, "the last heartbeat is kept beside the will"
    assert r[301]["self_cal"] == {"state": "identified", "windows": 80, "wheel_hop_hz": 11.8, "wheel_damping": 0.3,
                                  "body_hz": 1.4, "mass_ratio": 7.5}, r[301]["self_cal"]
    assert r[302]["self_cal"] is None, "a heartbeat without the fields (before 0.4's self-calibration)"
    for d in mine:
        assert r[d]["last_seen"].endswith("Z")
    # nothing heard for max(3 heartbeats, 10 min): unknown; a will stays offline
    later = {x["device_id"]: x["state"] for x in fleet("status", "--db", db, "--at", str(now + 700))}
    assert [later[d] for d in mine] == ["unknown", "online", "offline"]
    later = {x["device_id"]: x["state"] for x in fleet("status", "--db", db, "--at", str(now + 1900))}
    assert [later[d] for d in mine] == ["unknown", "unknown", "offline"]
    p = subprocess.run(ENTRY + ["fleet", "status", "--db", db], capture_output=True, text=True, timeout=120,
                       env={"COLUMNS": "250", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if any(f" {d} " in ln for d in mine)]
    assert [next(d for d in mine if f" {d} " in ln) for ln in lines] == [303, 302, 301]
    assert "identified 11.8 Hz" in lines[2], lines[2]


def test_fleet_segments_since(mqtt_broker, tmp_path):
    db = "sqlite:///" + str(tmp_path / "fleet.db")
    col = Collect(mqtt_broker.url, db, "--client-id", f"c-{tmp_path.name}")
    n = Node(mqtt_broker, 311).start()
    try:
        n.send(1, 0, [seg(311, 0, 0)])
        n.wait_acked(1, 0)
        wait(lambda: fleet("segments", "--db", db), 20)
        t = fleet("segments", "--db", db)[0]["time"]
        n.send(1, 1, [seg(311, 1, 1)])
        n.wait_acked(1, 1)
    finally:
        n.stop()
        col.stop()
    assert [s["seq"] for s in fleet("segments", "--db", db)] == [0, 1]
    import datetime as dt

    after = dt.datetime.fromisoformat(t.replace("Z", "+00:00")) + dt.timedelta(milliseconds=1)
    newer = fleet("segments", "--db", db, "--since", after.isoformat())
    assert [s["seq"] for s in newer] == [1]
    assert fleet("segments", "--db", db, "--since", "1h") == fleet("segments", "--db", db)
