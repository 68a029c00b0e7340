"""A simulated board kept running for other tools to talk to (`roadnode sim serve`): started with
its drive, faults and network, optionally flashed and configured as a technician would, then run
until stopped, with an optional power cut. The CLI only prints what this returns."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

from roadnode.errors import InputError

DEFAULT_AP = {"ssid": "depot", "key": "roadnode"}


def wifi_aps(spec: str | None) -> list | None:
    """``SSID[:KEY]`` -> the simulated access points (None: the default, depot/roadnode)."""
    if not spec:
        return None
    ssid, _, key = spec.partition(":")
    return [{"ssid": ssid, "key": key}]


def parse_hostport(spec: str, default_port: int = 1883) -> tuple[str, int]:
    """``HOST[:PORT]`` -> (host, port)."""
    host, sep, port = spec.rpartition(":")
    if not sep:
        host, port = spec, str(default_port)
    try:
        p = int(port)
    except ValueError:
        p = -1
    if not host or not 0 < p < 65536:
        raise InputError(f"{spec!r}: expected HOST:PORT")
    return host, p


def mqtt_settings(broker: str, aps: list | None) -> dict:
    """The node's config for sending to ``broker`` (HOST:PORT) through the simulated access point."""
    host, port = parse_hostport(broker)
    ap = (aps or [DEFAULT_AP])[0]
    return {"uplink": "mqtt", "mqtt_host": host, "mqtt_port": port, "wifi_ssid": ap["ssid"],
            "wifi_password": ap["key"]}


class ServedBoard:
    """A started SimBoard and what came with it (the scenario's tapes in a temporary folder)."""

    def __init__(self, board: str, scenario_file: str | None = None, flash_dir: str | None = None, baud: int = 0,
                 realtime: bool = False, faults: tuple[str, ...] = (), net_outages: tuple[str, ...] = (),
                 wifi: str | None = None):
        from roadnode.sim.board import SimBoard
        from roadnode.sim.faults import parse_fault, parse_net_outage

        self.name = board
        self.gps_baud = 9600
        self._tmp = None
        tape = None
        if scenario_file:
            from roadnode.scenario import load_scenario
            from roadnode.sim.tape import write_tapes

            sc = load_scenario(scenario_file)
            self._tmp = tempfile.TemporaryDirectory(prefix="roadnode-tape-")
            write_tapes(sc, Path(self._tmp.name))
            tape = self._tmp.name
            self.gps_baud = sc.meta["gps"]["baud"]
        fl = {}
        for f in faults:
            fl.update(parse_fault(f))
        self.aps = wifi_aps(wifi)
        self.tape = tape
        try:
            self.board = SimBoard(board=board, flash_dir=flash_dir, tape_dir=tape, gps_baud=self.gps_baud, baud=baud,
                                  realtime=realtime, faults=fl, wifi=self.aps,
                                  net_outages=[parse_net_outage(o) for o in net_outages]).start()
        except BaseException:
            self._cleanup()
            raise
        self.baud = baud

    def info(self) -> dict:
        """Port (native USB: a stable by-id style link; the tty behind it changes at each reset),
        board, flash folder, pacing baud, USB kind."""
        b = self.board
        return {"port": b.port, "board": self.name, "flash": str(b.flash_dir), "baud": self.baud or None, "usb": b.usb}

    def prepare(self, deploy: bool, settings: dict, broker: str | None = None) -> str | None:
        """As a technician would: `roadnode flash` (``deploy``), then `roadnode config set`;
        ``broker``: the node sends there (uplink mqtt). A line saying what was done, or None."""
        from roadnode.usb.link import NodeLink
        from roadnode.errors import DeviceError

        settings = dict(settings)
        if broker:
            settings = {**mqtt_settings(broker, self.aps), **settings}
        if deploy:
            from roadnode.usb.flash import flash_board

            if self.tape and "gps_baud" not in settings:
                settings["gps_baud"] = self.gps_baud  # the recorded GPS talks at the scenario's baud
            time.sleep(0.3)  # the board's REPL up
            r = flash_board(self.board.port, device_id=settings.pop("device_id", None))
            if not r.ok:
                raise DeviceError(f"deploy failed: {r.error}")
            if settings:
                with NodeLink(self.board.port) as link:
                    link.config_set(settings)
            return f"firmware {r.version} flashed ({r.board}); the node is running"
        if broker:  # the firmware already on this flash gets the broker
            with NodeLink(self.board.port) as link:
                link.config_set(settings)
            return f"the node sends to {broker} (uplink mqtt)"
        return None

    def run(self, stopped: Callable[[], bool], power_cut: float | None = None,
            on_cut: Callable[[], None] | None = None) -> None:
        """Keep the board running until ``stopped()``; the power cut ``power_cut`` wall-clock
        seconds from now (``on_cut`` told)."""
        t0 = time.monotonic()
        while not stopped():
            time.sleep(0.1)
            if power_cut is not None and time.monotonic() - t0 >= power_cut:
                if on_cut:
                    on_cut()
                self.board.power_cut()
                power_cut = None

    def stop(self) -> None:
        """Stop the board and remove the tapes."""
        try:
            self.board.stop()
        finally:
            self._cleanup()

    def _cleanup(self) -> None:
        if self._tmp:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
