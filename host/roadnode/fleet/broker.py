"""A real MQTT broker process on 127.0.0.1 for tests and the demo.

Mosquitto where it is installed (the Debian package; CI installs it when it can), otherwise the
embedded broker amqtt from PyPI, started as a subprocess of this Python so the tests still run
with Python alone. ``ROADNODE_BROKER=mosquitto|amqtt`` forces one. Anonymous clients, loopback
only, every file (config, log, Mosquitto's persistence) in a private temporary folder, which
survives stop()/start() so a restart on the same port keeps Mosquitto's sessions and retained
messages (amqtt keeps them in memory only: a restart loses them).

    with Broker() as b:          # started, ready for MQTT CONNECT
        b.url, b.port, b.kind
        b.stop(); b.start()      # a broker restart on the same port
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from roadnode.errors import RoadnodeError

KINDS = ("mosquitto", "amqtt")


class BrokerError(RoadnodeError):
    """The broker could not be started (its own log is in the message)."""


def mosquitto_path() -> str | None:
    """The Mosquitto executable, or None when it is not installed."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(p, os.X_OK):
            return p
    return None


def default_kind() -> str:
    """The broker to start: $ROADNODE_BROKER if set, else mosquitto when installed, else amqtt."""
    forced = os.environ.get("ROADNODE_BROKER", "").strip().lower()
    if forced:
        if forced not in KINDS:
            raise BrokerError(f"ROADNODE_BROKER={forced!r}: expected one of {', '.join(KINDS)}")
        return forced
    return "mosquitto" if mosquitto_path() else "amqtt"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server about to bind it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# CONNECT: protocol MQTT 3.1.1, clean session, keepalive 10 s, client id "roadnode-probe"
_PROBE = bytes([0x10, 26, 0, 4]) + b"MQTT" + bytes([4, 2, 0, 10, 0, 14]) + b"roadnode-probe"


def mqtt_ready(host: str, port: int, timeout: float = 2.0) -> bool:
    """True when host:port answers an MQTT CONNECT with an accepting CONNACK."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(_PROBE)
            got = b""
            while len(got) < 4:
                chunk = s.recv(4 - len(got))
                if not chunk:
                    return False
                got += chunk
            s.sendall(b"\xe0\x00")  # DISCONNECT
            return got[0] == 0x20 and got[3] == 0
    except OSError:
        return False


class Broker:
    """A real MQTT broker process (mosquitto or amqtt) on 127.0.0.1, for tests and the demo."""

    def __init__(self, port: int = 0, kind: str | None = None, ready_timeout: float = 30.0, host: str = "127.0.0.1"):
        self.kind = kind or default_kind()
        if self.kind not in KINDS:
            raise BrokerError(f"unknown broker kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if self.kind == "mosquitto" and not mosquitto_path():
            raise BrokerError("mosquitto is not installed (apt-get install mosquitto, or use amqtt)")
        self.host = host
        self.port = port or free_port()
        self.ready_timeout = ready_timeout
        self._dir: Path | None = None
        self._proc: subprocess.Popen | None = None
        atexit.register(self.stop)  # never leave a broker behind a crashed test run

    @property
    def url(self) -> str:
        """The mqtt:// URL clients connect to."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The broker process's id (None when not started)."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """Whether the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _command(self) -> list[str]:
        d = self._dir
        if self.kind == "mosquitto":
            conf = d / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} {self.host}\n"
                "allow_anonymous true\n"
                "persistence true\n"
                f"persistence_location {d}/\n"
                "set_tcp_nodelay true\n"
                # the collector takes every node's batches (up to 4 in flight each) and acknowledges
                # them after its commit: Mosquitto's defaults (20 in flight, 1000 queued per client)
                # would throttle it and drop the rest (docs/fleet.md)
                "max_inflight_messages 1000\nmax_queued_messages 100000\n"
                "log_dest stderr\n"
                "log_type error\nlog_type warning\n"
                # started as root, Mosquitto would switch to the user 'mosquitto', who cannot
                # write the private folder: stay who we are
                f"user {getpass.getuser()}\n"
            )
            return [mosquitto_path(), "-c", str(conf)]
        conf = d / "amqtt.json"
        conf.write_text(json.dumps({
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }))
        # through run_amqtt below, not amqtt's own script: that one keeps running after its
        # listener failed to bind, so a taken port would only show as a timeout
        return [sys.executable, "-m", "roadnode.fleet.broker", str(conf)]

    def _log_tail(self) -> str:
        try:
            return (self._dir / "broker.log").read_text(errors="replace")[-2000:].strip()
        except OSError:
            return ""

    def start(self) -> "Broker":
        """Start (again, on the same port) and return once it accepts an MQTT CONNECT."""
        if self.running:
            return self
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix=f"roadnode-{self.kind}-"))
        log = open(self._dir / "broker.log", "ab")
        try:
            self._proc = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                          cwd=self._dir, start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                raise BrokerError(f"{self.kind} exited with {code} on port {self.port}: {self._log_tail()}")
            if mqtt_ready(self.host, self.port, timeout=0.5):
                break
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"{self.kind} did not accept MQTT on port {self.port} within "
                                  f"{self.ready_timeout:.0f} s: {self._log_tail()}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """SIGTERM (Mosquitto saves its sessions), then kill after 10 s."""
        p, self._proc = self._proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(10)

    def close(self) -> None:
        """Stop and remove the private folder."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> "Broker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Broker({self.kind} {self.url}{'' if self.running else ', stopped'})"


def run_amqtt(config_file: str) -> int:
    """Run amqtt with a JSON config until killed; exit status 1 when it cannot start."""
    from amqtt.broker import Broker as Amqtt
    from amqtt.errors import BrokerError as AmqttError

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def serve() -> None:
        """Run amqtt with the config file until the process is terminated."""
        broker = Amqtt(json.loads(Path(config_file).read_text()))
        await broker.start()
        await asyncio.Event().wait()  # until SIGTERM

    try:
        asyncio.run(serve())
    except AmqttError as e:
        print(f"amqtt: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_amqtt(sys.argv[1]))
