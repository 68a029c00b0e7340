"""Capture: record a drive from a running node as a scenario without truth (`roadnode capture`).

The node streams what its main loop feeds the pipeline (rnfw.capture: each IMU batch drained from
the FIFO, as counts, and the GPS UART bytes read, both with the pass time) over the console while it
goes on measuring. The capture starts with a restart, so the stream holds everything the pipeline
saw since the boot and offline runs on the file (`estimate`, `replay`, `sim run`, `calibrate`) start
where the node started. The host sends a byte every second: a node whose host went away stops
streaming after 10 s.

The file is the scenario format (roadnode.scenario.fileformat) with `meta.truth` false and empty
truth arrays: IMU samples on the ODR grid the estimator uses (sample k at k * period_ms), and the
GPS bytes of each pass as one chunk timed so that its last byte arrives at the start of the pass's
50 ms slot (byte i of a chunk at t0 + i * 10/baud s, as the offline runs and the simulated UART
deliver them): offline runs feed each chunk in the batch where the node fed it. The IMU batches are
cut offline at the slot's start; a live pass that started a sample period late or more (an ESP32's
poll oversleeps up to a 10 ms tick; the simulated board charges the firmware's CPU time) drained a
sample or two more into that batch: such batches are counted (`off_grid_batches`), and the node's
live IRI then differs from offline runs on the file by about a percent. docs/protocol.md has the
record layout and the byte budget; docs/calibration.md the workflow.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from roadnode.usb.link import NodeLink
from roadnode.errors import DeviceError
from roadnode.mpy.fwimport import fw
from roadnode.paths import BOARDS_DIR

BOOT_S = 30.0  # a restarted node streams within this
STALL_S = 15.0  # no record for this long: the stream is over
RENEW_S = 1.0  # the host says it is still there this often (a newline; the node's lease: 10 s)
_IMU, _GPS, _HEAD, _END = 1, 2, 3, 4
END_REASONS = {1: "the node heard nothing from the host for 10 s", 2: "stopped"}
_SECRET = ("wifi_password", "mqtt_password")


@dataclass
class Recording:
    """What the stream brought, in order; build() turns it into a scenario."""

    odr_hz: int = 0
    period_ms: int = 0
    lsb_per_g: int = 0
    imu: list = field(default_factory=list)  # int16 arrays (k, 3), one per record
    batches: list = field(default_factory=list)  # (t_ms, samples, lost) per drained batch
    gps: list = field(default_factory=list)  # [t_ms, bytes] per pass
    records: int = 0
    lost_records: int = 0
    timing_changes: int = 0
    ended: str | None = None
    last_t_ms: int = 0
    _cnt: int = -1
    _part: int = 0
    _lost: int = 0
    _samples: int = 0

    def feed(self, p: bytes) -> None:
        """One stream record (a DATA reply's payload)."""
        if len(p) < 7:
            self.lost_records += 1
            return
        kind, more = p[0] & 0x7F, p[0] & 0x80
        cnt, t = struct.unpack_from("<HI", p, 1)
        if self._cnt >= 0 and cnt != (self._cnt + 1) & 0xFFFF:
            self.lost_records += (cnt - self._cnt - 1) & 0xFFFF
        self._cnt = cnt
        self.records += 1
        self.last_t_ms = max(self.last_t_ms, t)
        if kind == _HEAD:
            odr, period, lsb = struct.unpack_from("<HBH", p, 7)
            if self.odr_hz and (odr, period, lsb) != (self.odr_hz, self.period_ms, self.lsb_per_g):
                self.timing_changes += 1
            self.odr_hz, self.period_ms, self.lsb_per_g = odr, period, lsb
        elif kind == _IMU:
            lost = struct.unpack_from("<H", p, 7)[0]
            s = np.frombuffer(p[9 : 9 + (len(p) - 9) // 6 * 6], dtype="<i2").reshape(-1, 3)
            self.imu.append(s.astype(np.int16))
            self._part += len(s)
            self._lost += lost  # (the node puts it in a batch's first record)
            if not more:
                self.batches.append((t, self._part, self._lost))
                self._samples += self._part
                self._part = self._lost = 0
        elif kind == _GPS:
            if self.gps and self.gps[-1][0] == t:
                self.gps[-1][1] += p[7:]
            else:
                self.gps.append([t, bytes(p[7:])])
        elif kind == _END:
            self.ended = END_REASONS.get(p[7] if len(p) > 7 else 0, "ended")

    @property
    def samples(self) -> int:
        """IMU samples in the complete batches so far."""
        return self._samples

    @property
    def seconds(self) -> float:
        """Drive time recorded so far (samples at the ODR)."""
        return self.samples / self.odr_hz if self.odr_hz else 0.0


class _CaptureLink(NodeLink):
    """NodeLink whose DATA replies (stream records) go to ``sink`` instead of the replies table."""

    sink: Callable[[bytes], None] = staticmethod(lambda p: None)

    def _decode(self, raw: bytes):
        d = super()._decode(raw)
        if d is not None and d["type"] == "reply" and d["status"] == self.P.DATA:
            self.sink(bytes(d["payload"]))
            return {"type": "capture"}  # (handed to on_packet, which ignores it)
        return d


def _length_m(gps: list, baud: int) -> float:
    """Distance driven by the GPS's own speed (the node's NMEA parser), for the file's meta."""
    N = fw("nmea").NmeaParser()
    dist, last_t, v = 0.0, None, 0.0
    for t, b in gps:
        if last_t is not None:
            dist += v * (t - last_t) / 1000.0
        N.feed(b, len(b))
        v = N.speed_mmps / 1000.0 if N.fix_valid else 0.0
        last_t = t
    return dist


def build(rec: Recording, info: dict) -> "Scenario":  # noqa: F821
    """The recording as a scenario without truth (see module)."""
    from roadnode.scenario.fileformat import FORMAT, VERSION, Scenario

    if not rec.odr_hz or not rec.batches:
        raise DeviceError(f"{info['port']}: no IMU data came from the node (is its IMU working? `roadnode status`)")
    cfg = info["config"]
    # (the parts of a batch cut short by the end are left out)
    counts = np.concatenate(rec.imu)[: rec.samples] if rec.imu else np.zeros((0, 3), np.int16)
    n = len(counts)
    period = rec.period_ms
    baud = info["gps_baud"]
    upb = 10_000_000 // baud  # microseconds per byte on the GPS UART
    # batches the node cut off the estimator's grid (sample k at k * period ms, a pass every 50 ms):
    # a pass that started a sample period or more late (see module)
    off_grid, total = 0, 0
    for t, k, _ in rec.batches:
        total += k
        if total != min((t - t % 50) // period + 1, n):
            off_grid += 1
    t_s, offs, data, prev = [], [0], bytearray(), 0
    for t, b in rec.gps:
        # the chunk's last byte arrives at the start of the pass's 50 ms slot: the offline runs
        # deliver it in the same batch as the node's pass did (a pass a few ms late included)
        t0 = max((t - t % 50) * 1000 - (len(b) - 1) * upb, prev)
        prev = t0
        t_s.append(t0 / 1e6)
        data += b
        offs.append(len(data))
    rmc = sum(b.count(b"RMC,") for _, b in rec.gps)
    dur = n / rec.odr_hz
    e = np.zeros(0)
    arrays = {
        "imu_t_s": np.arange(n) * (period / 1000.0), "imu_counts": counts,
        "gps_t_s": np.array(t_s, dtype=float), "gps_offsets": np.array(offs, dtype=np.int64),
        "gps_bytes": np.frombuffer(bytes(data), dtype=np.uint8).copy(),
        "road_x_m": e, "road_z_m": e, "truth_t_s": e, "truth_pos_m": e, "truth_speed_mps": e, "truth_lat": e,
        "truth_lon": e, "truth_vert_acc": e, "seg_start_m": e, "seg_end_m": e, "seg_true_iri": e,
    }
    range_g = int(cfg["accel_range_g"])
    meta = {
        "format": FORMAT, "version": VERSION, "generator": "roadnode capture", "truth": False,
        "length_m": max(round(_length_m(rec.gps, baud), 2), 0.01), "duration_s": dur,
        "segment_m": int(cfg["segment_length_m"]), "seed": 0, "road": {}, "speed": {},
        "vehicle": {"name": "captured"}, "mount": cfg["mount"],
        "imu": {"part": info["imu_part"], "range_g": range_g, "odr_hz": rec.odr_hz, "lsb_per_g": rec.lsb_per_g,
                "aaf_hz": cfg.get("aaf_hz", 0)},
        "gps": {"rate_hz": max(round(rmc / dur, 2), 0.1) if dur else 1.0, "baud": baud},
        "route": {}, "features": [],
        "capture": {"port": info["port"], "board": info["board"], "fw": info["fw"], "device_id": cfg["device_id"],
                    "config": {k: v for k, v in cfg.items() if k not in _SECRET},
                    "records": rec.records, "lost_records": rec.lost_records,
                    "lost_samples": int(sum(b[2] for b in rec.batches)), "off_grid_batches": off_grid,
                    "timing_changes": rec.timing_changes, "ended": rec.ended or "stopped"},
    }
    return Scenario(meta, arrays)


def capture(port: str, out_path, duration_s: float | None = None, baud: int = 115200,
            progress: Callable[[Recording], None] | None = None, stop=None) -> dict:
    """Record the node on ``port`` into ``out_path`` (a scenario .npz) for ``duration_s`` seconds
    of drive (the node's clock), or until ``stop`` (a threading.Event) is set or the node ends the
    stream. What was recorded is kept whatever ends it. Returns the summary `--json` prints."""
    from roadnode.scenario.fileformat import save_scenario
    from roadnode.userfiles import output_path

    out = output_path(out_path, "capture file")  # refused before anything is asked of the node
    rec = Recording()
    with _CaptureLink(port, baud, timeout=5.0) as link:
        link.sink = rec.feed
        packets: list[dict] = []  # what the node sent meanwhile on the console (segments, events)
        link.on_packet = lambda d: packets.append(d) if d["type"] in ("segment", "event") else None
        P = link.P
        who = link.ping()
        if who.get("replay"):
            raise DeviceError(f"{port}: the node is replaying a drive; wait for it to end")
        cfg = link.config_get()
        bfile = BOARDS_DIR / f"{who.get('board', '')}.json"
        bd = json.loads(bfile.read_text()) if who.get("board") and bfile.is_file() else {}
        info = {"port": port, "board": who.get("board"), "fw": who.get("fw"), "config": cfg,
                "imu_part": bd.get("imu", {}).get("part", "unknown"),
                "gps_baud": int(cfg.get("gps_baud") or bd.get("gps", {}).get("baud") or 9600)}
        link.call(P.CAPTURE, b"\x01")  # the node restarts, streaming from its boot
        t0 = time.monotonic()
        renew, renew_t = 0.0, 0
        while not rec.odr_hz and (stop is None or not stop.is_set()):  # its first record: the boot is
            # done (a newline meanwhile says "still here")
            if time.monotonic() - t0 > BOOT_S:
                raise DeviceError(f"{port}: the node did not come back streaming within {BOOT_S:.0f} s "
                                  f"after its restart ({rec.ended or 'no capture records'})")
            if time.monotonic() >= renew:
                link.s.write(b"\n")
                renew = time.monotonic() + 0.2
            link.pump(0.05)
        del packets[:]  # what came before this boot is not the capture's
        seen, seen_at = rec.records, time.monotonic()
        try:
            while rec.ended is None and (stop is None or not stop.is_set()):
                if duration_s is not None and rec.seconds >= duration_s:
                    break
                now = time.monotonic()
                if rec.records != seen:
                    seen, seen_at = rec.records, now
                elif now - seen_at > STALL_S:  # a reset ends the stream without an end record
                    rec.ended = f"no records for {STALL_S:.0f} s (did the node reset?)"
                    break
                if now >= renew or rec.last_t_ms >= renew_t:  # every second of either clock
                    link.s.write(b"\n")  # a byte: "still here" (a request would delay the node's pass)
                    renew, renew_t = now + RENEW_S, rec.last_t_ms + 1000 * RENEW_S
                link.pump(0.05)
                if progress:
                    progress(rec)
        except DeviceError as e:  # the port failed for good: what was captured is still written
            rec.ended = f"the port failed: {e}"
        finally:
            if rec.ended is None:  # stop the stream; its last record says so
                try:
                    link.send(P.CAPTURE, b"\x00")
                    end = time.monotonic() + 2.0
                    while rec.ended is None and time.monotonic() < end:
                        link.pump(0.05)
                except (OSError, DeviceError):
                    pass
    if duration_s is not None and rec.odr_hz:  # exactly the duration asked for, cut at a batch end
        keep, total = [], 0
        for b in rec.batches:
            if total >= duration_s * rec.odr_hz:
                break
            keep.append(b)
            total += b[1]
        rec.batches = keep
        rec._samples = total
        counts = np.concatenate(rec.imu)[:total] if rec.imu else np.zeros((0, 3), np.int16)
        rec.imu = [counts]
        last_t = keep[-1][0] if keep else 0
        rec.gps = [g for g in rec.gps if g[0] <= last_t]
    sc = build(rec, info)
    save_scenario(sc, out)
    c = sc.meta["capture"]
    return {"file": str(Path(out)), "seconds": round(sc.meta["duration_s"], 3), "samples": int(len(sc.imu_counts)),
            "gps_bytes": int(len(sc.gps_bytes)), "odr_hz": rec.odr_hz, "length_m": sc.meta["length_m"],
            "records": c["records"], "lost_records": c["lost_records"], "lost_samples": c["lost_samples"],
            "off_grid_batches": c["off_grid_batches"], "ended": c["ended"], "wall_s": round(time.monotonic() - t0, 2),
            "node_segments": [p for p in packets if p["type"] == "segment"],
            "node_events": [p for p in packets if p["type"] == "event"]}
