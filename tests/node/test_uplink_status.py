"""Issue 12: `roadnode status` shows a node's queue and link while the uplink works and while the
network is gone: a simulated board running the deployed firmware with `uplink=mqtt` on a drive, a
real broker and the collector; an outage through the board's API in the middle."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from roadnode.usb import flash as F
from roadnode.usb.link import NodeLink
from roadnode.fleet.broker import Broker
from roadnode.fleet.collector import Collector, Store
from roadnode.scenario import make_scenario
from roadnode.sim.board import SimBoard
from roadnode.sim.tape import write_tapes

DEV = 7


def _status(port: str) -> dict:
    r = subprocess.run([sys.executable, "-m", "roadnode.cli", "status", "--port", port, "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _until(port: str, cond, what: str, timeout: float = 240) -> dict:
    end = time.monotonic() + timeout
    while True:
        st = _status(port)
        if cond(st):
            return st
        assert time.monotonic() < end, f"{what}: last status {st}"
        time.sleep(1)


@pytest.mark.slow
def test_status_shows_the_queue_and_the_link_through_an_outage(tmp_path):
    sc = make_scenario(iso_class="B", length_m=3000, speed_kmh=60, seed=2)
    write_tapes(sc, tmp_path / "tape")
    with Broker() as br:
        store = Store(str(tmp_path / "fleet.db"))
        col = Collector(br.url, store).start()
        try:
            with SimBoard(flash_dir=tmp_path / "flash", tape_dir=tmp_path / "tape", realtime=True,
                          gps_baud=sc.meta["gps"]["baud"]) as b:
                assert F.flash_board(b.port, device_id=DEV).ok
                with NodeLink(b.port) as link:
                    link.config_set({"heartbeat_s": 10, "gps_baud": sc.meta["gps"]["baud"], "uplink": "mqtt",
                                     "wifi_ssid": "depot", "wifi_password": "roadnode", "mqtt_host": "127.0.0.1",
                                     "mqtt_port": br.port})
                first = _status(b.port)
                assert first["last_ack_s"] is None or first["last_ack_s"] < 600, first  # never acked: null
                up = _until(b.port, lambda s: s["mqtt"] == "up" and s["wifi"] == "up", "the link comes up")
                print(f"\nup: {up['wifi']}/{up['mqtt']}, queue {up['queue_depth']}, last ack {up['last_ack_s']} s")
                b.net_outage("assoc")
                down = _until(b.port, lambda s: s["wifi"] != "up" and s["queue_depth"] > 0,
                              "the outage shows and packets wait")
                print(f"outage: {down['wifi']}/{down['mqtt']}, queue {down['queue_depth']}")
                b.net_restore()
                back = _until(b.port, lambda s: s["mqtt"] == "up" and s["queue_depth"] == 0
                              and s["last_ack_s"] is not None and s["last_ack_s"] < 30, "the backlog is delivered")
                print(f"back: {back['wifi']}/{back['mqtt']}, queue {back['queue_depth']}, "
                      f"{back['reconnects']} reconnects")
                r = subprocess.run([sys.executable, "-m", "roadnode.cli", "status", "--port", b.port],
                                   capture_output=True, text=True, timeout=120)
                assert r.returncode == 0 and "WiFi / MQTT" in r.stdout and "queue" in r.stdout, r.stdout
        finally:
            col.stop()
    assert back["reconnects"] >= 1 and down["queue_depth"] > 0
    assert len(store.packets(DEV)) >= down["queue_depth"]
    store.close()
