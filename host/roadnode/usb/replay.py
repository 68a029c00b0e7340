"""Replay: hardware-in-the-loop on a real node. The host streams a scenario's raw IMU samples and
NMEA bytes over the console; the node runs them through its normal pipeline (a replay source it
switches to on command, rnfw.console) and sends its packets back.

The batches are cut exactly as the node's main loop drains its FIFO and UART (the firmware's own
rnfw.pipeline.run_batches, run here with a recorder in place of the pipeline), so the replayed
output equals the simulated-hardware run and the host golden model bit for bit.
Flow control: every frame is answered and at most the node's window of line bytes is unanswered,
so nothing overflows the node's 260-byte console buffer at any baud.
"""

from __future__ import annotations

import json
import struct
import time
from array import array
from typing import Callable

from roadnode.errors import DeviceError
from roadnode.mpy.fwimport import fw
from roadnode.scenario.fileformat import Scenario
from roadnode.sim.tape import readers


class _Recorder:
    """Stands in for rnfw.pipeline.Pipeline: records what the main loop would feed it."""

    def __init__(self):
        self.out: list[tuple] = []

    def feed_gps(self, data, n, now_ms):
        """Record the GPS bytes the node was fed, with its clock."""
        self.out.append(("gps", now_ms, bytes(data[:n])))

    def feed_imu(self, samples, n, now_ms, lost=0, imu_fault=False):
        """Record the IMU samples the node was fed, with its clock."""
        self.out.append(("imu", now_ms, list(samples[: 3 * n])))


def batches(sc: Scenario):
    """("gps", t_ms, bytes) and ("imu", t_ms, [x, y, z, ...]) in the order the node feeds them:
    the scenario's tape through the reader the golden model and `estimate` use."""
    P = fw("pipeline")
    imu, gps = readers(sc)
    rec = _Recorder()
    for _ in P.run_batches(rec, imu, gps, array("h", bytes(2 * 3 * 128)), bytearray(256)):
        yield from rec.out
        rec.out.clear()


def frames(sc: Scenario, args_max: int):
    """(cmd, args) requests for the whole scenario."""
    Pr = fw("protocol")
    per = (args_max - 5) // 6  # samples per IMU part
    for kind, t, data in batches(sc):
        if kind == "gps":
            for i in range(0, len(data), args_max - 4):
                yield Pr.REPLAY_GPS, struct.pack("<I", t) + data[i : i + args_max - 4]
        else:
            n = len(data) // 3
            parts = range(0, max(n, 1), per)
            for j, i in enumerate(parts):
                chunk = data[3 * i : 3 * min(i + per, n)]
                more = 1 if j < len(parts) - 1 else 0
                yield Pr.REPLAY_IMU, struct.pack("<IB", t, more) + struct.pack(f"<{len(chunk)}h", *chunk)


def replay(port: str, sc: Scenario, settings: dict | None = None, baud: int = 115200,
           progress: Callable[[float], None] | None = None) -> dict:
    """{"segments": [...], "events": [...], "frames": n, "seconds": s, "realtime_factor": x}."""
    from roadnode.usb.link import NodeLink
    from roadnode.accuracy.golden import config_for

    C = fw("config")
    Pr = fw("protocol")
    cfg = config_for(sc, settings)
    d = C.defaults()
    diff = {k: v for k, v in cfg.items() if v != d[k] and k != "device_id"}
    imu, _ = readers(sc)
    odr, period, lsb = imu.odr_hz, imu.period_ms, imu.lsb_per_g
    segs, events = [], []

    def collect(p):
        """Keep the segments and events the node sends back (its other packets are not the result)."""
        if p["type"] == "segment":
            segs.append(p)
        elif p["type"] == "event":
            events.append(p)

    t0 = time.monotonic()
    n = 0
    total_ms = sc.meta["duration_s"] * 1000
    with NodeLink(port, baud, timeout=5.0, on_packet=collect) as link:
        start = json.loads(link.call(Pr.REPLAY_START, json.dumps(
            {"odr_hz": odr, "period_ms": period, "lsb_per_g": lsb, "settings": diff}, separators=(",", ":")).encode()))
        window = start["window"]
        link.wait_boot()  # the node restarts into replay mode: a clean start, as from power-on
        st = link.ping()
        if not st.get("replay"):
            raise DeviceError(f"{port}: the node did not enter replay mode: {st.get('config_error') or 'no reason given'}")
        inflight: dict[int, int] = {}  # request id -> line bytes, until acknowledged

        def wait_while(busy):
            """Collect acknowledgements while busy() (10 s without one: the node is gone)."""
            deadline = time.monotonic() + 10
            while busy():
                link.pump(0.02)
                for req in [q for q in inflight if q in link.replies]:
                    r = link.replies.pop(req)
                    inflight.pop(req)
                    deadline = time.monotonic() + 10
                    if r["status"] != Pr.OK:
                        raise DeviceError(f"{port}: the node refused replay data: "
                                          f"{bytes(r['payload']).decode(errors='replace')}")
                if time.monotonic() > deadline:
                    raise DeviceError(f"{port}: {len(inflight)} replay frames were never acknowledged")

        for cmd, args in frames(sc, Pr.ARGS_MAX):
            line_len = 1 + 4 * ((len(args) + 10 + 2) // 3) + 1
            wait_while(lambda: inflight and sum(inflight.values()) + line_len > window)
            req = link.send(cmd, args)
            inflight[req] = link.last_len
            n += 1
            if cmd == Pr.REPLAY_IMU:
                last_t = struct.unpack_from("<I", args)[0]
                if progress and n % 20 == 0:
                    progress(min(last_t / total_ms, 1.0))
        wait_while(lambda: inflight)
        link.call(Pr.REPLAY_END)  # the node restarts and measures live again
        bad = link.bad_frames
    dt = time.monotonic() - t0
    if progress:
        progress(1.0)
    return {"segments": segs, "events": events, "frames": n, "seconds": round(dt, 2),
            "realtime_factor": round(sc.meta["duration_s"] / dt, 2) if dt else None, "bad_frames": bad,
            "config": cfg}
