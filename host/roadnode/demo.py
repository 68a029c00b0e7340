"""The whole system on one machine, with simulated vehicles: what `roadnode demo` runs.

N vehicles drive overlapping routes over the shipped town network (roadnode.roads), each on its own
simulated board running the unchanged firmware (MicroPython, the ESP32's heap, register-level IMU,
NMEA UART, the ESP32 network API) with the MQTT uplink; `roadnode collect` (a real subprocess, with
its embedded broker on a free loopback port) stores what they send in SQLite and acknowledges it
after the commit. Then the fleet's answers are read back from that database: the fleet table, the
road stretches with their true IRI beside, a static map page and a JSON summary.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from roadnode.errors import RoadnodeError

# a municipal fleet: service vans, refuse trucks, a pool car; cycled over the vehicles
VEHICLES = ("van", "truck", "suv", "sedan")
DEVICE_BASE = 101  # device ids 101, 102, ...
WIFI = {"wifi_ssid": "depot", "wifi_password": "roadnode"}  # the simulated access point's (sim/mpy/network.py)


class DemoError(RoadnodeError):
    """The demo's chain did not deliver (exit 1: a check failed)."""
    exit_code = 1


class _Collector:
    """`roadnode collect --json` with its own embedded broker on a free loopback port."""

    def __init__(self, db_url: str):
        from roadnode.fleet.broker import free_port

        port = free_port()
        cmd = [sys.executable, "-m", "roadnode.cli", "collect", "--listen", f"127.0.0.1:{port}", "--db", db_url,
               "--json", "--stats-every", "0.5"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.port = port
        self.lines: list[dict] = []
        self.err: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()
        self.wait(lambda: self.stats().get("connected"), 60, "the collector's broker")

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                x = json.loads(line)
            except ValueError:
                continue
            with self._changed:
                self.lines.append(x)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def stats(self) -> dict:
        """The collector's latest stats line ({} before the first)."""
        s = [x for x in self.lines if x.get("type") in ("stats", "stopped")]
        return s[-1] if s else {}

    def wait(self, cond, timeout: float, what: str) -> None:
        """Wait until ``cond()`` holds; DemoError if the collector exits or ``timeout`` passes."""
        end = time.monotonic() + timeout
        with self._changed:
            while not cond():
                if self.proc.poll() is not None:
                    raise DemoError(f"roadnode collect exited {self.proc.returncode}: {''.join(self.err)[-500:].strip()}")
                left = end - time.monotonic()
                if left <= 0:
                    raise DemoError(f"timed out waiting for {what}")
                self._changed.wait(min(left, 1.0))

    def stop(self) -> dict:
        """SIGTERM: the collector commits what it holds, acknowledges it, and exits 0."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise DemoError("roadnode collect did not stop within 60 s of SIGTERM") from None
        return self.stats()


def _drive(k: int, n: int, minutes: float, seed: int, port: int) -> dict:
    """Vehicle k: its scenario over the network and the firmware's run over it, uplinking to ``port``."""
    from roadnode.mpy.fwimport import fw
    from roadnode.roads import network_scenario
    from roadnode.sim.offline import run_scenario

    vehicle = VEHICLES[k % len(VEHICLES)]
    sc = network_scenario(k, n, minutes=minutes, vehicle=vehicle, seed=seed * 1000 + k)
    dev = DEVICE_BASE + k
    # self-calibration on, as for any axle-mounted node on a vehicle nobody calibrated (README)
    cfg = {"device_id": dev, "heartbeat_s": 10, "uplink": "mqtt", "mqtt_host": "127.0.0.1", "mqtt_port": port,
           "self_cal": "on", **WIFI}
    # the vehicle is parked at the depot afterwards, engine on: the node closes the drive's last
    # segment after stop_close_s and delivers what it still holds
    linger = fw("config").defaults()["stop_close_s"] + 20
    run = run_scenario(sc, settings=cfg, linger_s=linger)
    return {"device_id": dev, "vehicle": vehicle, "length_m": round(sc.meta["length_m"]),
            "duration_s": round(float(sc.meta.get("duration_s") or 0)), "stretches": sc.meta.get("stretches", []),
            "net": run["net"], "heap": run["heap"]}


def _truth_for(stretch: dict, net) -> dict | None:
    """The true IRI of the road under a fleet stretch: the road and distances at its entry and exit
    (found by position and heading), integrated over that piece of road in that direction."""
    a = net.locate(stretch["start"][0], stretch["start"][1], stretch["heading_deg"])
    b = net.locate(stretch["end"][0], stretch["end"][1], stretch["heading_deg"])
    if a is None or b is None or a[0] != b[0] or abs(b[1] - a[1]) < 20:
        return None
    road = net.roads[a[0]]
    return {"road": road.name, "true_iri_m_per_km": round(road.true_iri(a[2], a[1], b[1]), 3)}


def run_demo(out_dir: Path, vehicles: int = 3, minutes: float = 5.0, seed: int = 1, progress=None) -> dict:
    """Drive, collect, answer. ``progress(text)`` is told each stage. Returns everything the CLI shows
    and writes: {"devices", "fleet", "roads", "worst", "files", "figures"}."""
    from roadnode.fleet.fleet import fleet_status
    from roadnode.fleet.roads import road_stretches
    from roadnode.fleet.store import Store
    from roadnode.roads import load_network
    from roadnode.web.static import write_map

    say = progress or (lambda s: None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    db_path = out_dir / "fleet.db"
    for suffix in ("", "-wal", "-shm"):  # the demo's own database: each run starts empty
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    db_url = f"sqlite:///{db_path}"
    t0 = time.monotonic()
    say("starting roadnode collect (embedded broker, SQLite)")
    col = _Collector(db_url)
    try:
        say(f"{vehicles} vehicles driving the town network on simulated boards ({minutes:g} min each)")
        with ThreadPoolExecutor(max_workers=max(1, min(vehicles, os.cpu_count() or 1))) as ex:
            runs = list(ex.map(lambda k: _drive(k, vehicles, minutes, seed, col.port), range(vehicles)))
        drive_s = time.monotonic() - t0
    finally:
        st = col.stop()
    say("reading the fleet's answers")
    store = Store(db_url)
    try:
        fleet = fleet_status(store, time.time())
        segs = store.segments()
        roads = road_stretches(segs)
        map_path = write_map(store, out_dir / "map.html")
    finally:
        store.close()
    net = load_network("town")
    for s in roads["stretches"]:
        s.update(_truth_for(s, net) or {"road": None, "true_iri_m_per_km": None})
    judged = [s for s in roads["stretches"] if s["confidence"] != "none"]
    worst = sorted(judged, key=lambda s: -s["median_iri_m_per_km"])[:8]
    errs = [abs(s["median_iri_m_per_km"] / s["true_iri_m_per_km"] - 1) for s in judged if s.get("true_iri_m_per_km")]
    figures = {"vehicles": vehicles, "minutes": minutes, "seed": seed, "wall_s": round(time.monotonic() - t0, 1),
               "drive_wall_s": round(drive_s, 1), "segments_stored": len(segs),
               "packets_stored": st.get("stored"), "duplicates_on_the_wire": st.get("duplicates"),
               "stretches": len(roads["stretches"]), "stretches_judged": len(judged),
               "median_abs_error_vs_truth": round(sorted(errs)[len(errs) // 2], 4) if errs else None}
    summary = {"figures": figures, "devices": [{k: v for k, v in r.items() if k != "stretches"} for r in runs],
               "fleet": fleet, "roads": roads, "worst": worst,
               "files": {"db": str(db_path), "map": str(map_path), "fleet": str(out_dir / "fleet.json")}}
    tmp = out_dir / "fleet.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, out_dir / "fleet.json")
    return summary


@contextmanager
def dashboard(db_path: str, port: int = 8080):
    """The dashboard (what `roadnode serve` serves) on a demo's database, on 127.0.0.1:``port``
    (0: a free one): the server, not yet running (its .url, then .run() until interrupted)."""
    from roadnode.fleet.store import Store
    from roadnode.web.app import create_app
    from roadnode.web.server import Server

    store = Store(f"sqlite:///{db_path}")
    try:
        yield Server(create_app(store), "127.0.0.1", port)
    finally:
        store.close()
